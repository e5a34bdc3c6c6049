//! [`BertConfig`]: the architecture numbers of a Hugging Face `config.json`.

use std::path::Path;

use serde::Deserialize;

use crate::error::Result;
use crate::nn::NnError;

/// The fields of a BERT-family `config.json` that the encoder needs.
///
/// ```
/// use squish::nn::BertConfig;
/// let c = BertConfig::from_json(r#"{"hidden_size": 384, "num_attention_heads": 12,
///   "num_hidden_layers": 6, "intermediate_size": 1536, "layer_norm_eps": 1e-12,
///   "max_position_embeddings": 512, "vocab_size": 30522, "type_vocab_size": 2,
///   "hidden_act": "gelu"}"#)?;
/// assert_eq!(c.head_dim(), 32);
/// assert!(BertConfig::from_json(r#"{"hidden_size": 384, "num_attention_heads": 5,
///   "num_hidden_layers": 6, "intermediate_size": 1536, "layer_norm_eps": 1e-12,
///   "max_position_embeddings": 512, "vocab_size": 30522, "type_vocab_size": 2}"#).is_err());
/// # Ok::<(), squish::SquishError>(())
/// ```
#[derive(Clone, Debug, PartialEq, Deserialize)]
pub struct BertConfig {
    /// Width of every token vector.
    pub hidden_size: usize,
    /// Attention heads per layer (must divide `hidden_size`).
    pub num_attention_heads: usize,
    /// Encoder layers.
    pub num_hidden_layers: usize,
    /// Width of the feed-forward layer.
    pub intermediate_size: usize,
    /// LayerNorm epsilon.
    pub layer_norm_eps: f64,
    /// Rows of the position table (longest sequence).
    pub max_position_embeddings: usize,
    /// Rows of the word table.
    pub vocab_size: usize,
    /// Rows of the token-type table.
    pub type_vocab_size: usize,
    /// Activation of the feed-forward layer (only "gelu", the erf form, is supported).
    #[serde(default = "gelu")]
    pub hidden_act: String,
    /// Only "absolute" position embeddings are supported.
    #[serde(default = "absolute")]
    pub position_embedding_type: String,
}

fn gelu() -> String {
    "gelu".into()
}

fn absolute() -> String {
    "absolute".into()
}

impl BertConfig {
    /// Parses and checks a `config.json` text.
    pub fn from_json(src: &str) -> Result<Self> {
        let c: BertConfig = serde_json::from_str(src).map_err(|e| NnError::ConfigFile {
            path: "config.json".into(),
            message: e.to_string(),
        })?;
        c.check()?;
        Ok(c)
    }

    /// Reads and checks a `config.json` file.
    pub fn load(path: impl AsRef<Path>) -> Result<Self> {
        let path = path.as_ref();
        let src = std::fs::read_to_string(path).map_err(|e| NnError::ConfigFile {
            path: path.to_path_buf(),
            message: e.to_string(),
        })?;
        let c: BertConfig = serde_json::from_str(&src).map_err(|e| NnError::ConfigFile {
            path: path.to_path_buf(),
            message: e.to_string(),
        })?;
        c.check()?;
        Ok(c)
    }

    /// Width of one attention head.
    pub fn head_dim(&self) -> usize {
        self.hidden_size / self.num_attention_heads
    }

    fn check(&self) -> Result<()> {
        let positive = [
            ("hidden_size", self.hidden_size),
            ("num_attention_heads", self.num_attention_heads),
            ("num_hidden_layers", self.num_hidden_layers),
            ("intermediate_size", self.intermediate_size),
            ("max_position_embeddings", self.max_position_embeddings),
            ("vocab_size", self.vocab_size),
            ("type_vocab_size", self.type_vocab_size),
        ];
        if let Some((field, _)) = positive.iter().find(|(_, v)| *v == 0) {
            return Err(NnError::Config {
                field,
                detail: "must be at least 1".into(),
            }
            .into());
        }
        if self.hidden_size % self.num_attention_heads != 0 {
            return Err(NnError::Config {
                field: "num_attention_heads",
                detail: format!(
                    "= {} does not divide hidden_size = {}",
                    self.num_attention_heads, self.hidden_size
                ),
            }
            .into());
        }
        if !(self.layer_norm_eps > 0.0 && self.layer_norm_eps.is_finite()) {
            return Err(NnError::Config {
                field: "layer_norm_eps",
                detail: format!("= {} must be finite and > 0", self.layer_norm_eps),
            }
            .into());
        }
        if self.hidden_act != "gelu" {
            return Err(NnError::Config {
                field: "hidden_act",
                detail: format!("= {:?}: only \"gelu\" (the erf form) is supported", self.hidden_act),
            }
            .into());
        }
        if self.position_embedding_type != "absolute" {
            return Err(NnError::Config {
                field: "position_embedding_type",
                detail: format!(
                    "= {:?}: only \"absolute\" is supported",
                    self.position_embedding_type
                ),
            }
            .into());
        }
        Ok(())
    }
}
