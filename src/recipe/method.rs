//! The method registry: every compression method a recipe can name, and the
//! one place where a method becomes pipeline passes.
//!
//! Adding a method is one variant of [`MethodSpec`] (its TOML parameters)
//! and one arm in [`MethodSpec::append`] (its checked builder); parameters
//! beyond a couple of numbers get a spec struct in `spec.rs`.

use serde::Deserialize;

use super::{
    AwqSpec, GptqSpec, IntSpec, KMeansSpec, LowRankSpec, SparseGptSpec, StructuredSpec, WandaSpec,
};
use crate::error::Result;
use crate::pipeline::Pipeline;
use crate::pruning::{Magnitude, NMPruner};
use crate::quantization::{Binary, Ternary};

/// One method of a recipe pipeline, as written in TOML:
/// `{ method = "magnitude", sparsity = 0.5 }`, `{ method = "int8" }`,
/// `{ method = "int4", granularity = "per-group", group_size = 64 }`,
/// `{ method = "binary" }`, `{ method = "ternary" }`,
/// `{ method = "lowrank", energy = 0.95 }`, `{ method = "kmeans", bits = 4 }`,
/// `{ method = "nm", n = 2, m = 4 }`,
/// `{ method = "structured", sparsity = 0.25, axis = "rows" }`; and the
/// data-aware methods, which read the layer's calibration statistics:
/// `{ method = "gptq", bits = 4, granularity = "per-group", group_size = 128 }`,
/// `{ method = "sparsegpt", sparsity = 0.5 }` or `{ method = "sparsegpt", n = 2, m = 4 }`,
/// `{ method = "wanda", sparsity = 0.5 }`,
/// `{ method = "awq", bits = 4, granularity = "per-group", group_size = 128 }`
/// (add `gptq = true` for GPTQ on the scaled weight).
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
    /// Low rank W ≈ A·B by a truncated SVD (put it first: a later
    /// quantizer quantizes each factor).
    #[serde(rename = "lowrank", alias = "low-rank")]
    LowRank(LowRankSpec),
    /// Weight sharing by 1-D k-means: a codebook and an index per weight.
    #[serde(rename = "kmeans", alias = "k-means")]
    KMeans(KMeansSpec),
    /// N:M semi-structured pruning: keep `n` of every `m` consecutive inputs.
    #[serde(rename = "nm", alias = "n:m")]
    NM {
        /// Values kept per group.
        n: usize,
        /// Group length (must divide the row length).
        m: usize,
    },
    /// Structured pruning of whole rows or columns by their Ln norm.
    Structured(StructuredSpec),
    /// GPTQ: integer quantization minimising the layer-output error on
    /// calibration data (data-aware).
    Gptq(GptqSpec),
    /// SparseGPT: pruning with OBS reconstruction of the kept weights
    /// (data-aware).
    #[serde(rename = "sparsegpt", alias = "sparse-gpt")]
    SparseGpt(SparseGptSpec),
    /// Wanda: pruning by `|W_ij|·‖X_j‖` (data-aware).
    Wanda(WandaSpec),
    /// AWQ: per-input scales searched on calibration data, then integer
    /// quantization of `W·diag(s)`; the layer keeps `1/s` as its input
    /// scale (data-aware).
    Awq(AwqSpec),
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
            MethodSpec::Int8(s) => pipeline.quantize(s.build(8)?),
            MethodSpec::Int4(s) => pipeline.quantize(s.build(4)?),
            MethodSpec::Binary {} => pipeline.quantize(Binary),
            MethodSpec::Ternary {} => pipeline.quantize(Ternary),
            MethodSpec::LowRank(s) => pipeline.then(s.build()?),
            MethodSpec::KMeans(s) => pipeline.quantize(s.build()?),
            MethodSpec::NM { n, m } => pipeline.prune(NMPruner::params(*n, *m).check()?),
            MethodSpec::Structured(s) => pipeline.prune(s.build()?),
            MethodSpec::Gptq(s) => pipeline.data_aware(s.build()?),
            MethodSpec::SparseGpt(s) => pipeline.data_aware(s.build()?),
            MethodSpec::Wanda(s) => pipeline.data_aware(s.build()?),
            MethodSpec::Awq(s) => pipeline.data_aware(s.build()?),
        })
    }

    /// Whether the method reads calibration statistics.
    pub fn needs_data(&self) -> bool {
        self.append(Pipeline::new()).is_ok_and(|p| p.needs_data())
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
