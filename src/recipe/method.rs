//! The method registry: every compression method a recipe can name, and the
//! one place where a method becomes pipeline passes.
//!
//! Adding a method is one variant of [`MethodSpec`] (its TOML parameters)
//! and one arm in [`MethodSpec::append`] (its checked builder).

use serde::Deserialize;

use crate::error::Result;
use crate::pipeline::Pipeline;
use crate::pruning::Magnitude;
use crate::quantization::{Binary, IntQuantizer, Ternary};

/// Which values share one quantization scale.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum GranularitySpec {
    /// One scale for the tensor.
    PerTensor,
    /// One scale per row (output channel).
    #[default]
    PerRow,
    /// One scale per `group_size` consecutive values.
    PerGroup,
}

/// Parameters of integer quantization in a recipe.
#[derive(Clone, Debug, Default, PartialEq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct IntSpec {
    /// `per-tensor`, `per-row` (default) or `per-group`.
    #[serde(default)]
    pub granularity: GranularitySpec,
    /// Values per group, required with `per-group`.
    pub group_size: Option<usize>,
    /// Symmetric codes (default true).
    pub symmetric: Option<bool>,
}

/// One method of a recipe pipeline, as written in TOML:
/// `{ method = "magnitude", sparsity = 0.5 }`, `{ method = "int8" }`,
/// `{ method = "int4", granularity = "per-group", group_size = 64 }`,
/// `{ method = "binary" }`, `{ method = "ternary" }`.
#[derive(Clone, Debug, PartialEq, Deserialize)]
#[serde(tag = "method", rename_all = "kebab-case", deny_unknown_fields)]
pub enum MethodSpec {
    /// Unstructured magnitude pruning to a sparsity in [0, 1).
    Magnitude {
        /// Fraction of weights zeroed.
        sparsity: f64,
    },
    /// 8-bit integer quantization.
    Int8(IntSpec),
    /// 4-bit integer quantization.
    Int4(IntSpec),
    /// Sign bits with a scale per row.
    Binary {},
    /// {−α, 0, +α} with a scale per row.
    Ternary {},
    // Low rank, k-means sharing, N:M and structured pruning land here: one
    // variant each, plus one arm in `append`.
}

fn int(bits: u8, s: &IntSpec) -> Result<IntQuantizer> {
    let mut p = IntQuantizer::params(bits).symmetric(s.symmetric.unwrap_or(true));
    p = match (s.granularity, s.group_size) {
        (GranularitySpec::PerTensor, None) => p.per_tensor(),
        (GranularitySpec::PerRow, None) => p.per_row(),
        (GranularitySpec::PerGroup, Some(g)) => p.per_group(g),
        (GranularitySpec::PerGroup, None) => {
            return Err(crate::SquishError::invalid(
                "group_size",
                "missing",
                "granularity = \"per-group\" needs group_size = N",
            ))
        }
        (_, Some(g)) => {
            return Err(crate::SquishError::invalid(
                "group_size",
                g,
                "only allowed with granularity = \"per-group\"",
            ))
        }
    };
    p.check()
}

impl MethodSpec {
    /// Appends this method's pass(es) to `pipeline`, checking its parameters.
    ///
    /// This is the registry: one arm per method.
    pub fn append(&self, pipeline: Pipeline) -> Result<Pipeline> {
        Ok(match self {
            MethodSpec::Magnitude { sparsity } => {
                pipeline.prune(Magnitude::params(*sparsity).check()?)
            }
            MethodSpec::Int8(s) => pipeline.quantize(int(8, s)?),
            MethodSpec::Int4(s) => pipeline.quantize(int(4, s)?),
            MethodSpec::Binary {} => pipeline.quantize(Binary),
            MethodSpec::Ternary {} => pipeline.quantize(Ternary),
        })
    }

    /// Checks the parameters without building a pipeline.
    pub fn check(&self) -> Result<()> {
        self.append(Pipeline::new()).map(|_| ())
    }

    /// A pipeline of `methods` in order.
    pub fn pipeline(methods: &[MethodSpec]) -> Result<Pipeline> {
        methods.iter().try_fold(Pipeline::new(), |p, m| m.append(p))
    }
}
