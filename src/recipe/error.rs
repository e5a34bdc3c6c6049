//! Errors of reading and applying recipes.

use std::path::PathBuf;

use thiserror::Error;

/// What can be wrong with a recipe. Every variant that comes from the file
/// names the line (1-based) it comes from.
#[derive(Debug, Error)]
#[non_exhaustive]
pub enum RecipeError {
    /// The file could not be read.
    #[error("cannot read recipe {path}: {source}")]
    Read {
        /// The file.
        path: PathBuf,
        /// The underlying error.
        #[source]
        source: std::io::Error,
    },
    /// Not valid TOML, an unknown key, a missing key or a value of the wrong type.
    #[error("recipe line {line}: {message}")]
    Syntax {
        /// 1-based line (0 when the parser gave no position).
        line: usize,
        /// The parser's message.
        message: String,
    },
    /// A method whose parameters are out of range.
    #[error("recipe line {line}: {message}")]
    BadValue {
        /// 1-based line of the method.
        line: usize,
        /// What is wrong and the valid range.
        message: String,
    },
    /// A layer pattern that does not compile.
    #[error("recipe line {line}: bad pattern `{pattern}`: {message}")]
    BadPattern {
        /// 1-based line of the pattern.
        line: usize,
        /// The pattern.
        pattern: String,
        /// The compiler's message.
        message: String,
    },
    /// An `--include`/`--exclude` pattern that selects no weight matrix.
    #[error("{flag} `{pattern}` {detail}; `squish inspect MODEL` lists the matrices")]
    UnmatchedFlag {
        /// The flag.
        flag: &'static str,
        /// The pattern.
        pattern: String,
        /// Why.
        detail: String,
    },
    /// Compressing one layer failed; names the layer and the pass.
    #[error("layer `{layer}`, {stage}: {source}")]
    Layer {
        /// The tensor name.
        layer: String,
        /// `pass `name`` or, for a bad weight matrix, the input check.
        stage: String,
        /// What went wrong.
        #[source]
        source: Box<crate::SquishError>,
    },
    /// A pattern that selects no weight matrix of the model.
    #[error("recipe line {line}: pattern `{pattern}` {detail}")]
    Unmatched {
        /// 1-based line of the pattern.
        line: usize,
        /// The pattern.
        pattern: String,
        /// Why (matches nothing, or only what earlier rules took).
        detail: String,
    },
    /// A data-aware method (GPTQ, SparseGPT, Wanda) selected for a layer
    /// with no calibration data.
    #[error("{rule}: `{method}` needs calibration data for layer `{layer}`, and none was given; pass `--calibration FILE` (a text file of sentences, with a BERT-family model directory) or a `[calibration]` section, or use a data-free method (e.g. int4 instead of gptq, magnitude instead of sparsegpt or wanda)")]
    NeedsCalibration {
        /// Where the method comes from (`recipe line N`, `[default]`, a flag).
        rule: String,
        /// The method.
        method: String,
        /// The tensor.
        layer: String,
    },
    /// A method key that is missing, conflicts with another, or is out of range.
    #[error("recipe key `{key}` ({value}): {rule}")]
    Key {
        /// The key.
        key: &'static str,
        /// The value given, or "missing" / "given".
        value: String,
        /// The rule it breaks, and what to write instead.
        rule: &'static str,
    },
}

impl RecipeError {
    /// A [`Key`](RecipeError::Key) error, ready to return: every check of a
    /// recipe's method keys fails this one way.
    pub(crate) fn key(
        key: &'static str,
        value: impl ToString,
        rule: &'static str,
    ) -> crate::SquishError {
        crate::SquishError::from(RecipeError::Key {
            key,
            value: value.to_string(),
            rule,
        })
    }

    /// A failure of `pipeline` on layer `layer`, from
    /// [`Pipeline::run_staged`](crate::pipeline::Pipeline): the stage is the
    /// pass that failed, or the input check when `pass` is `None`; `context`
    /// (e.g. a sweep's setting) goes before it.
    pub(crate) fn in_layer(
        layer: &str,
        context: &str,
        pipeline: &crate::pipeline::Pipeline,
        (pass, source): (Option<String>, crate::SquishError),
    ) -> Self {
        let stage = match pass {
            Some(pass) => format!("{context}pass `{pass}`"),
            None => format!(
                "{context}checking the weights before `{}`",
                pipeline.pass_names()
            ),
        };
        RecipeError::Layer {
            layer: layer.to_string(),
            stage,
            source: Box::new(source),
        }
    }
}
