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
    EncoderForm {
        name: "dense",
        about: "dense f32 (packed GEMM)",
        pipeline: "",
        activations: Activations::Float,
        smooth: None,
    },
    EncoderForm {
        name: "int8",
        about: "int8 per-row, weight-only",
        pipeline: r#"[{ method = "int8" }]"#,
        activations: Activations::Float,
        smooth: None,
    },
    EncoderForm {
        name: "int8-dynamic",
        about: "int8 per-row × int8 dynamic per-token activations",
        pipeline: r#"[{ method = "int8" }]"#,
        activations: Activations::DynamicInt8,
        smooth: None,
    },
    EncoderForm {
        name: "int8-smooth",
        about: "SmoothQuant (alpha 0.5, 128 calibration sentences) + int8 per-row × int8 dynamic per-token",
        pipeline: r#"[{ method = "int8" }]"#,
        activations: Activations::DynamicInt8,
        smooth: Some([Some(0.7); 4]),
    },
    EncoderForm {
        name: "int8-smooth-g128",
        about: "SmoothQuant + int8 group-128 × int8 dynamic per-token",
        pipeline: r#"[{ method = "int8", granularity = "per-group", group_size = 128 }]"#,
        activations: Activations::DynamicInt8,
        smooth: Some([Some(0.7); 4]),
    },
    EncoderForm {
        name: "int8-smooth-g64",
        about: "SmoothQuant + int8 group-64 × int8 dynamic per-token",
        pipeline: r#"[{ method = "int8", granularity = "per-group", group_size = 64 }]"#,
        activations: Activations::DynamicInt8,
        smooth: Some([Some(0.7); 4]),
    },
    EncoderForm {
        name: "int8-g128-dynamic",
        about: "int8 group-128 × int8 dynamic per-token",
        pipeline: r#"[{ method = "int8", granularity = "per-group", group_size = 128 }]"#,
        activations: Activations::DynamicInt8,
        smooth: None,
    },
    EncoderForm {
        name: "int4-g32",
        about: "int4 group-32",
        pipeline: r#"[{ method = "int4", granularity = "per-group", group_size = 32 }]"#,
        activations: Activations::Float,
        smooth: None,
    },
    EncoderForm {
        name: "int4-g128",
        about: "int4 group-128",
        pipeline: r#"[{ method = "int4", granularity = "per-group", group_size = 128 }]"#,
        activations: Activations::Float,
        smooth: None,
    },
    EncoderForm {
        name: "int4-g128-dynamic",
        about: "int4 group-128 × int8 dynamic per-token (VNNI, nibbles unpacked in registers)",
        pipeline: r#"[{ method = "int4", granularity = "per-group", group_size = 128 }]"#,
        activations: Activations::DynamicInt8,
        smooth: None,
    },
    EncoderForm {
        name: "2:4",
        about: "2:4 semi-structured pruning",
        pipeline: r#"[{ method = "nm", n = 2, m = 4 }]"#,
        activations: Activations::Float,
        smooth: None,
    },
    EncoderForm {
        name: "magnitude-50",
        about: "50 % magnitude pruning (CSR)",
        pipeline: r#"[{ method = "magnitude", sparsity = 0.5 }]"#,
        activations: Activations::Float,
        smooth: None,
    },
    EncoderForm {
        name: "kmeans-16",
        about: "k-means weight sharing, 16 levels",
        pipeline: r#"[{ method = "kmeans", bits = 4 }]"#,
        activations: Activations::Float,
        smooth: None,
    },
    EncoderForm {
        name: "rank-90",
        about: "low rank keeping 90 % of the energy",
        pipeline: r#"[{ method = "lowrank", energy = 0.9 }]"#,
        activations: Activations::Float,
        smooth: None,
    },
];

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
