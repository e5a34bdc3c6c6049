//! Named compressed forms of an encoder's linear layers, as recipes: what the
//! command line, the benches, the example and `docs/serving.md` compare.

use super::{Activations, BertConfig, BertEncoder, SmoothQuant, TokenBatch, Weights};
use crate::error::{Result, SquishError};
use crate::io::Model;
use crate::parallel::ParallelExecutor;
use crate::recipe::{compress_model, Recipe};

/// One way to compress all encoder linear weights (`encoder.*.weight`:
/// the 36 matrices of a 6-layer BERT; embeddings and norms stay f32).
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct EncoderForm {
    /// Short name (`int8`, `int8-dynamic`, …).
    pub name: &'static str,
    /// What it is, in words.
    pub about: &'static str,
    /// The pipeline, as a TOML array of methods (empty: dense f32).
    pub pipeline: &'static str,
    /// How int8 layers multiply.
    pub activations: Activations,
    /// SmoothQuant's `alpha` per input (`[query/key/value, attention output,
    /// intermediate, output]`, see [`SmoothQuant`]) when the form is
    /// calibrated: the weights are smoothed on calibration sentences before
    /// the recipe.
    pub smooth: Option<[Option<f32>; 4]>,
}

/// Every form, dense first.
pub const FORMS: &[EncoderForm] = &[
    float("dense", "dense f32 (streamed rows, or packed GEMM by shape)", ""),
    float("int8", "int8 per-row, weight-only", INT8),
    dynamic("int8-dynamic", "int8 per-row × int8 dynamic per-token activations", INT8),
    smoothed(
        "int8-smooth",
        "SmoothQuant (alpha 0.7, 128 calibration sentences) + int8 per-row × int8 dynamic per-token",
        INT8,
    ),
    smoothed(
        "int8-smooth-g128",
        "SmoothQuant + int8 group-128 × int8 dynamic per-token",
        INT8_G128,
    ),
    smoothed(
        "int8-smooth-g64",
        "SmoothQuant + int8 group-64 × int8 dynamic per-token",
        r#"[{ method = "int8", granularity = "per-group", group_size = 64 }]"#,
    ),
    dynamic("int8-g128-dynamic", "int8 group-128 × int8 dynamic per-token", INT8_G128),
    float(
        "int4-g32",
        "int4 group-32",
        r#"[{ method = "int4", granularity = "per-group", group_size = 32 }]"#,
    ),
    float("int4-g128", "int4 group-128", INT4_G128),
    dynamic(
        "int4-g128-dynamic",
        "int4 group-128 × int8 dynamic per-token (VNNI, nibbles unpacked in registers)",
        INT4_G128,
    ),
    float("2:4", "2:4 semi-structured pruning", r#"[{ method = "nm", n = 2, m = 4 }]"#),
    float(
        "2:4-int8",
        "2:4 semi-structured pruning + int8 per-row, weight-only",
        r#"[{ method = "nm", n = 2, m = 4 }, { method = "int8" }]"#,
    ),
    float(
        "2:4-int4-g64",
        "2:4 + int4 per group of 64 stored values (128 inputs), weight-only",
        r#"[{ method = "nm", n = 2, m = 4 }, { method = "int4", granularity = "per-group", group_size = 64 }]"#,
    ),
    float(
        "magnitude-50",
        "50 % magnitude pruning (CSR)",
        r#"[{ method = "magnitude", sparsity = 0.5 }]"#,
    ),
    float(
        "kmeans-16",
        "k-means weight sharing, 16 levels",
        r#"[{ method = "kmeans", bits = 4 }]"#,
    ),
    float(
        "rank-90",
        "low rank keeping 90 % of the energy",
        r#"[{ method = "lowrank", energy = 0.9 }]"#,
    ),
];

/// The pipelines several forms share.
const INT8: &str = r#"[{ method = "int8" }]"#;
const INT8_G128: &str = r#"[{ method = "int8", granularity = "per-group", group_size = 128 }]"#;
const INT4_G128: &str = r#"[{ method = "int4", granularity = "per-group", group_size = 128 }]"#;

/// A form whose layers multiply f32 activations (int8 weights are widened).
const fn float(name: &'static str, about: &'static str, pipeline: &'static str) -> EncoderForm {
    EncoderForm {
        name,
        about,
        pipeline,
        activations: Activations::Float,
        smooth: None,
    }
}

/// A form whose int8 and int4 layers quantize their activations per token.
const fn dynamic(name: &'static str, about: &'static str, pipeline: &'static str) -> EncoderForm {
    EncoderForm {
        activations: Activations::DynamicInt8,
        ..float(name, about, pipeline)
    }
}

/// [`dynamic`], on weights smoothed by SmoothQuant first (`alpha` 0.7 at
/// every input).
const fn smoothed(name: &'static str, about: &'static str, pipeline: &'static str) -> EncoderForm {
    EncoderForm {
        smooth: Some([Some(0.7); 4]),
        ..dynamic(name, about, pipeline)
    }
}

impl EncoderForm {
    /// The form called `name`.
    ///
    /// ```
    /// use squish::nn::EncoderForm;
    /// assert!(EncoderForm::named("int8-dynamic").unwrap().recipe().unwrap().is_some());
    /// assert!(EncoderForm::named("dense").unwrap().recipe().unwrap().is_none());
    /// assert!(EncoderForm::named("int3").is_err());
    /// ```
    pub fn named(name: &str) -> Result<EncoderForm> {
        FORMS
            .iter()
            .copied()
            .find(|f| f.name == name)
            .ok_or_else(|| {
                let all: Vec<&str> = FORMS.iter().map(|f| f.name).collect();
                SquishError::invalid("form", name, format!("known forms: {}", all.join(", ")))
            })
    }

    /// The recipe compressing `encoder.*.weight` (`None` for dense).
    pub fn recipe(&self) -> Result<Option<Recipe>> {
        if self.pipeline.is_empty() {
            return Ok(None);
        }
        Recipe::from_toml(&format!(
            "[[rule]]\npattern = \"encoder.*.weight\"\npipeline = {}\n",
            self.pipeline
        ))
        .map(Some)
    }

    /// The encoder of `model` in this form: its recipe applied (one task per
    /// matrix on `exec`), compressed matrices kept compressed. A calibrated
    /// form ([`smooth`](Self::smooth)) needs [`build_calibrated`](Self::build_calibrated).
    pub fn build(
        &self,
        config: &BertConfig,
        model: &Model,
        exec: &dyn ParallelExecutor,
    ) -> Result<BertEncoder> {
        self.build_calibrated(config, model, &[], exec)
    }

    /// [`build`](Self::build), smoothing the weights first on `calibration`
    /// (token batches that should not overlap the sentences evaluated) when
    /// the form asks for it; other forms ignore `calibration`.
    pub fn build_calibrated(
        &self,
        config: &BertConfig,
        model: &Model,
        calibration: &[TokenBatch],
        exec: &dyn ParallelExecutor,
    ) -> Result<BertEncoder> {
        let smoothed;
        let model = match self.smooth {
            None => model,
            Some(alphas) => {
                let sq = SmoothQuant::params().alphas(alphas).check()?;
                smoothed = sq.apply(config, model, calibration, exec)?;
                &smoothed
            }
        };
        match self.recipe()? {
            None => {
                BertEncoder::from_weights(config.clone(), Weights::Dense(model), Activations::Float)
            }
            Some(r) => {
                let c = compress_model(model, &r, exec, &|_| {})?;
                BertEncoder::from_weights(
                    config.clone(),
                    Weights::Container(&c.model),
                    self.activations,
                )
            }
        }
    }
}
