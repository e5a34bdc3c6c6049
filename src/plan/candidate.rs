//! [`Candidate`]: one way to store a layer, as a recipe pipeline.

use serde::Deserialize;

use crate::error::Result;
use crate::recipe::{MethodSpec, RecipeError};

/// A named pipeline the planner may choose for a layer. An empty pipeline
/// keeps the layer as it is.
///
/// ```
/// use squish::plan::Candidate;
/// let c = Candidate::parse("int4 g128", r#"[{ method = "int4", granularity = "per-group", group_size = 128 }]"#)?;
/// assert_eq!(c.methods().len(), 1);
/// assert!(Candidate::keep().methods().is_empty());
/// # Ok::<(), squish::SquishError>(())
/// ```
#[derive(Clone, Debug, PartialEq)]
pub struct Candidate {
    name: String,
    methods: Vec<MethodSpec>,
    /// The TOML array it was parsed from, written back into planned recipes.
    toml: String,
}

#[derive(Deserialize)]
struct PipelineOnly {
    pipeline: Vec<MethodSpec>,
}

impl Candidate {
    /// The layer kept as it is (dense f32).
    pub fn keep() -> Self {
        Candidate {
            name: "keep f32".into(),
            methods: Vec::new(),
            toml: "[]".into(),
        }
    }

    /// A candidate from a TOML array of methods, as a recipe writes them:
    /// `[{ method = "nm", n = 2, m = 4 }, { method = "int8" }]`.
    pub fn parse(name: impl Into<String>, methods_toml: &str) -> Result<Self> {
        let p: PipelineOnly =
            toml::from_str(&format!("pipeline = {methods_toml}")).map_err(|e| {
                RecipeError::Syntax {
                    line: 0,
                    message: format!(
                        "candidate pipeline `{methods_toml}`: {}",
                        e.message().trim()
                    ),
                }
            })?;
        for m in &p.pipeline {
            m.check()?;
        }
        Ok(Candidate {
            name: name.into(),
            methods: p.pipeline,
            toml: methods_toml.trim().to_string(),
        })
    }

    /// The name shown in tables and recipes.
    pub fn name(&self) -> &str {
        &self.name
    }

    /// The methods, in order (empty: keep).
    pub fn methods(&self) -> &[MethodSpec] {
        &self.methods
    }

    /// The methods as a TOML inline array, as the recipe writer emits them.
    pub fn methods_toml(&self) -> &str {
        &self.toml
    }
}

/// The default candidate set: keep f32, int8 per row, int4 per group of 32
/// and 128, 2:4 + int8, 50 % magnitude + int8, ternary, k-means with 8, 16,
/// 32 and 64 centroids, and low rank keeping 95 % / 80 % of the energy with
/// int8 factors. Calibration-aware methods join when calibration data is given.
pub fn default_candidates() -> Vec<Candidate> {
    const SET: [(&str, &str); 13] = [
        ("keep f32", "[]"),
        (
            "int8 per-row",
            r#"[{ method = "int8", granularity = "per-row" }]"#,
        ),
        (
            "int4 g32",
            r#"[{ method = "int4", granularity = "per-group", group_size = 32 }]"#,
        ),
        (
            "int4 g128",
            r#"[{ method = "int4", granularity = "per-group", group_size = 128 }]"#,
        ),
        (
            "2:4 + int8",
            r#"[{ method = "nm", n = 2, m = 4 }, { method = "int8", granularity = "per-row" }]"#,
        ),
        (
            "50% + int8",
            r#"[{ method = "magnitude", sparsity = 0.5 }, { method = "int8", granularity = "per-row" }]"#,
        ),
        ("ternary", r#"[{ method = "ternary" }]"#),
        ("kmeans 8", r#"[{ method = "kmeans", k = 8 }]"#),
        ("kmeans 16", r#"[{ method = "kmeans", k = 16 }]"#),
        ("kmeans 32", r#"[{ method = "kmeans", k = 32 }]"#),
        ("kmeans 64", r#"[{ method = "kmeans", k = 64 }]"#),
        (
            "rank e.95 + int8",
            r#"[{ method = "lowrank", energy = 0.95 }, { method = "int8", granularity = "per-row" }]"#,
        ),
        (
            "rank e.80 + int8",
            r#"[{ method = "lowrank", energy = 0.8 }, { method = "int8", granularity = "per-row" }]"#,
        ),
    ];
    SET.iter()
        .map(|(n, t)| Candidate::parse(*n, t).expect("the default set parses"))
        .collect()
}
