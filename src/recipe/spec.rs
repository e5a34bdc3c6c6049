//! The TOML parameters of each method and their checked builders.
//!
//! Every spec denies unknown keys; [`build`](IntSpec::build) turns it into
//! the family's checked object, rejecting combinations that make no sense
//! (say, a `seed` without a randomized SVD) rather than ignoring them.

use serde::Deserialize;

use crate::compression::lowrank::{LowRank, RandomizedSvd, RankSelection};
use crate::compression::sharing::{Init, KMeans};
use crate::error::Result;
use crate::matrix::Granularity;
use crate::pruning::{NMPruner, SparseGpt, SparsityPattern, Structured, WandaPass};
use crate::quantization::{Calibration, Gptq, IntQuantizer};
use crate::recipe::RecipeError;

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

impl GranularitySpec {
    /// The granularity with its group size: `group_size` is required with
    /// `per-group` and refused otherwise.
    pub fn with(self, group_size: Option<usize>) -> Result<Granularity> {
        match (self, group_size) {
            (GranularitySpec::PerTensor, None) => Ok(Granularity::PerTensor),
            (GranularitySpec::PerRow, None) => Ok(Granularity::PerRow),
            (GranularitySpec::PerGroup, Some(g)) => Ok(Granularity::PerGroup(g)),
            (GranularitySpec::PerGroup, None) => Err(RecipeError::key(
                "group_size",
                "missing",
                "granularity = \"per-group\" needs group_size = N",
            )),
            (_, Some(g)) => Err(RecipeError::key(
                "group_size",
                g,
                "only allowed with granularity = \"per-group\"",
            )),
        }
    }
}

/// How the clip range of integer quantization is chosen:
/// `calibration = "minmax"`, `{ percentile = 99.9 }` or `"mse"`.
#[derive(Clone, Copy, Debug, PartialEq, Deserialize)]
#[serde(rename_all = "lowercase", deny_unknown_fields)]
pub enum CalibrationSpec {
    /// The observed range (the default).
    MinMax,
    /// Clip the tails at this percentile, in (50, 100].
    Percentile(f32),
    /// The clip ratio that minimizes the squared error (64 candidates).
    Mse,
}

impl CalibrationSpec {
    /// The quantizer's calibration.
    pub fn calibration(self) -> Calibration {
        match self {
            CalibrationSpec::MinMax => Calibration::MinMax,
            CalibrationSpec::Percentile(p) => Calibration::Percentile(p),
            CalibrationSpec::Mse => Calibration::mse(),
        }
    }
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
    /// Range calibration (default min-max).
    pub calibration: Option<CalibrationSpec>,
}

impl IntSpec {
    /// The checked `bits`-bit quantizer.
    pub fn build(&self, bits: u8) -> Result<IntQuantizer> {
        let mut p = IntQuantizer::params(bits).symmetric(self.symmetric.unwrap_or(true));
        p = match self.granularity.with(self.group_size)? {
            Granularity::PerTensor => p.per_tensor(),
            Granularity::PerRow => p.per_row(),
            Granularity::PerGroup(g) => p.per_group(g),
        };
        if let Some(c) = self.calibration {
            p = p.calibration(c.calibration());
        }
        p.check()
    }
}

/// Parameters of the low-rank pass: exactly one rank rule (`rank`,
/// `energy`, `rel_error`, `ratio` or `bytes`), and optionally
/// `randomized = true` with `oversampling`, `power_iters` and `seed`.
#[derive(Clone, Debug, Default, PartialEq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct LowRankSpec {
    /// A fixed rank.
    pub rank: Option<usize>,
    /// Keep this fraction of Σσ², in (0, 1].
    pub energy: Option<f64>,
    /// Smallest rank with ‖W − AB‖/‖W‖ at most this, in (0, 1).
    pub rel_error: Option<f64>,
    /// Largest rank whose f32 factors compress at least this much.
    pub ratio: Option<f64>,
    /// Largest rank whose f32 factors fit in this many bytes.
    pub bytes: Option<usize>,
    /// Randomized SVD instead of the exact one (default false).
    pub randomized: Option<bool>,
    /// Extra sketch columns of the randomized SVD (default 10).
    pub oversampling: Option<usize>,
    /// Power iterations of the randomized SVD (default 2).
    pub power_iters: Option<usize>,
    /// Seed of the randomized SVD (default 0).
    pub seed: Option<u64>,
}

impl LowRankSpec {
    /// The rank rule: exactly one of the five keys.
    pub fn selection(&self) -> Result<RankSelection> {
        let rules = [
            self.rank.map(RankSelection::Fixed),
            self.energy.map(RankSelection::Energy),
            self.rel_error.map(RankSelection::RelativeError),
            self.ratio.map(RankSelection::CompressionRatio),
            self.bytes.map(RankSelection::ByteBudget),
        ];
        let mut given = rules.into_iter().flatten();
        match (given.next(), given.next()) {
            (Some(s), None) => Ok(s),
            (None, _) => Err(RecipeError::key(
                "rank rule",
                "missing",
                "low rank needs one of rank, energy, rel_error, ratio or bytes",
            )),
            (Some(_), Some(_)) => Err(RecipeError::key(
                "rank rule",
                "several",
                "give exactly one of rank, energy, rel_error, ratio or bytes",
            )),
        }
    }

    /// The checked pass.
    pub fn build(&self) -> Result<LowRank> {
        let params = LowRank::params(self.selection()?);
        if self.randomized.unwrap_or(false) {
            // The rank rule decides the rank.
            let mut r = RandomizedSvd::settings();
            if let Some(p) = self.oversampling {
                r = r.oversampling(p);
            }
            if let Some(q) = self.power_iters {
                r = r.power_iterations(q);
            }
            if let Some(s) = self.seed {
                r = r.seed(s);
            }
            return params.randomized(r).check();
        }
        refuse_given(
            &[
                ("oversampling", self.oversampling.is_some()),
                ("power_iters", self.power_iters.is_some()),
                ("seed", self.seed.is_some()),
            ],
            "given",
            "only allowed with randomized = true",
        )?;
        params.check()
    }
}

/// Initial centroids of Lloyd's algorithm.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Deserialize)]
pub enum InitSpec {
    /// The optimum of a 4096-point summary (the default).
    #[default]
    #[serde(rename = "coarse")]
    Coarse,
    /// Centroid density ∝ p^(1/3).
    #[serde(rename = "companding")]
    Companding,
    /// Evenly spaced over the value range.
    #[serde(rename = "linear")]
    Linear,
    /// At the quantiles.
    #[serde(rename = "density")]
    Density,
    /// Seeded k-means++.
    #[serde(rename = "kmeans++")]
    KMeansPlusPlus,
}

/// Parameters of k-means weight sharing: exactly one of `k` or `bits`
/// (k = 2^bits), then `init` (`linear`, `density`, `kmeans++` with `seed`)
/// and `max_iter` for Lloyd's algorithm, or `optimal = true` for the exact
/// dynamic program; `per_row = true` for one codebook per row.
#[derive(Clone, Debug, Default, PartialEq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct KMeansSpec {
    /// Centroids per codebook, 2..=65536.
    pub k: Option<usize>,
    /// Index bits per weight, 1..=16 (k = 2^bits).
    pub bits: Option<u32>,
    /// Lloyd's initial centroids (default linear).
    pub init: Option<InitSpec>,
    /// At most this many Lloyd updates (default 300).
    pub max_iter: Option<usize>,
    /// The exact optimum by dynamic programming instead of Lloyd.
    pub optimal: Option<bool>,
    /// One codebook per row instead of one per tensor.
    pub per_row: Option<bool>,
    /// Seed of the k-means++ initialization (default 0).
    pub seed: Option<u64>,
}

impl KMeansSpec {
    /// Centroids per codebook.
    pub fn k(&self) -> Result<usize> {
        match (self.k, self.bits) {
            (Some(k), None) => Ok(k),
            (None, Some(b)) if (1..=16).contains(&b) => Ok(1 << b),
            (None, Some(b)) => Err(RecipeError::key(
                "bits",
                b,
                "k-means indices have 1..=16 bits",
            )),
            (None, None) => Err(RecipeError::key(
                "k",
                "missing",
                "k-means needs k = N or bits = B",
            )),
            (Some(_), Some(_)) => Err(RecipeError::key(
                "bits",
                "with k",
                "give k or bits, not both",
            )),
        }
    }

    /// The checked quantizer.
    pub fn build(&self) -> Result<KMeans> {
        let mut p = KMeans::params(self.k()?);
        if self.optimal.unwrap_or(false) {
            refuse_given(
                &[
                    ("init", self.init.is_some()),
                    ("max_iter", self.max_iter.is_some()),
                    ("seed", self.seed.is_some()),
                ],
                "given",
                "Lloyd's setting; not allowed with optimal = true",
            )?;
            p = p.optimal();
        } else {
            let init = match (self.init.unwrap_or_default(), self.seed) {
                (InitSpec::KMeansPlusPlus, seed) => Init::KMeansPlusPlus {
                    seed: seed.unwrap_or(0),
                },
                (_, Some(_)) => {
                    return Err(RecipeError::key(
                        "seed",
                        "given",
                        "only allowed with init = \"kmeans++\"",
                    ))
                }
                (InitSpec::Companding, None) => Init::Companding,
                (InitSpec::Coarse, None) => Init::Coarse,
                (InitSpec::Linear, None) => Init::Linear,
                (InitSpec::Density, None) => Init::Density,
            };
            p = p.lloyd(init);
            if let Some(n) = self.max_iter {
                p = p.max_iter(n);
            }
        }
        if self.per_row.unwrap_or(false) {
            p = p.per_row();
        }
        p.check()
    }
}

/// Which slices structured pruning removes.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum AxisSpec {
    /// Output rows (the default): a kept-rows matrix.
    #[default]
    Rows,
    /// Input columns: CSR without them.
    #[serde(alias = "columns")]
    Cols,
}

/// Parameters of structured pruning: `sparsity` in [0, 1), the norm
/// exponent `p` > 0 (default 2; `inf` for the max norm) and `axis`.
#[derive(Clone, Debug, PartialEq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct StructuredSpec {
    /// Fraction of rows (or columns) removed.
    pub sparsity: f64,
    /// Norm exponent (default 2).
    pub p: Option<f64>,
    /// `rows` (default) or `cols`.
    #[serde(default)]
    pub axis: AxisSpec,
}

impl StructuredSpec {
    /// The checked pruner.
    pub fn build(&self) -> Result<Structured> {
        let p = Structured::params(self.sparsity).norm(self.p.unwrap_or(2.0));
        match self.axis {
            AxisSpec::Rows => p.rows(),
            AxisSpec::Cols => p.columns(),
        }
        .check()
    }
}

/// Parameters of GPTQ in a recipe: `bits` (3, 4 or 8), `granularity` and
/// `group_size` as for `int4`, `symmetric`, `calibration` (`"minmax"` or
/// `"mse"`), `damp` (0.01), `block` (128), `act_order`, `static_groups`.
#[derive(Clone, Debug, PartialEq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct GptqSpec {
    /// Code width: 3, 4 or 8.
    pub bits: u8,
    /// `per-row` (default) or `per-group`.
    #[serde(default)]
    pub granularity: GranularitySpec,
    /// Inputs per group, required with `per-group`.
    pub group_size: Option<usize>,
    /// Symmetric codes (default true).
    pub symmetric: Option<bool>,
    /// Range of each group or row (default min-max).
    pub calibration: Option<CalibrationSpec>,
    /// Dampening fraction of the mean diagonal of `H` (default 0.01).
    pub damp: Option<f64>,
    /// Columns per lazy block update (default 128).
    pub block: Option<usize>,
    /// Columns in order of decreasing `H_jj` (default false).
    pub act_order: Option<bool>,
    /// Group ranges from the original weights (default false).
    pub static_groups: Option<bool>,
}

impl GptqSpec {
    /// The checked GPTQ quantizer.
    pub fn build(&self) -> Result<Gptq> {
        let mut p = Gptq::params(self.bits).symmetric(self.symmetric.unwrap_or(true));
        p = match self.granularity.with(self.group_size)? {
            Granularity::PerRow => p.per_row(),
            Granularity::PerGroup(g) => p.per_group(g),
            Granularity::PerTensor => {
                return Err(RecipeError::key(
                    "granularity",
                    "per-tensor",
                    "GPTQ quantizes per row or per group",
                ))
            }
        };
        if let Some(c) = self.calibration {
            p = p.calibration(c.calibration());
        }
        if let Some(d) = self.damp {
            p = p.damp(d);
        }
        if let Some(b) = self.block {
            p = p.block(b);
        }
        p.act_order(self.act_order.unwrap_or(false))
            .static_groups(self.static_groups.unwrap_or(false))
            .check()
    }
}

/// Parameters of AWQ in a recipe: the quantizer's `bits` (3, 4 or 8),
/// `granularity` + `group_size`, `symmetric` (default true) and
/// `calibration`; `grid` (exponents tried, default 20); `gptq = true` to
/// quantize the scaled weight with GPTQ instead of round-to-nearest, with
/// GPTQ's `damp`, `block`, `act_order`, `static_groups` (refused without it).
///
/// ```
/// use squish::recipe::Recipe;
/// let r = Recipe::from_toml(r#"
/// [default]
/// pipeline = [{ method = "awq", bits = 4, granularity = "per-group", group_size = 128, gptq = true }]
/// "#)?;
/// assert!(r.needs_calibration());
/// assert!(Recipe::from_toml("[default]\npipeline = [{ method = \"awq\", bits = 4, damp = 0.1 }]").is_err());
/// # Ok::<(), squish::SquishError>(())
/// ```
#[derive(Clone, Debug, Default, PartialEq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct AwqSpec {
    /// Code width: 3, 4 or 8.
    pub bits: u8,
    /// `per-row` (default) or `per-group`.
    #[serde(default)]
    pub granularity: GranularitySpec,
    /// Inputs per group, required with `per-group`.
    pub group_size: Option<usize>,
    /// Symmetric codes (default true).
    pub symmetric: Option<bool>,
    /// Range of each group or row (default min-max).
    pub calibration: Option<CalibrationSpec>,
    /// Exponents `α = k / grid` tried (default 20).
    pub grid: Option<usize>,
    /// GPTQ on the scaled weight after the search (default false).
    pub gptq: Option<bool>,
    /// How candidate scales are scored: `"rtn"` (round-to-nearest, the
    /// paper; default) or `"gptq"` (GPTQ on each candidate; implies
    /// `gptq = true`, `grid` GPTQ runs per layer).
    pub search: Option<AwqSearchSpec>,
    /// GPTQ's dampening fraction (with `gptq = true`).
    pub damp: Option<f64>,
    /// GPTQ's block (with `gptq = true`).
    pub block: Option<usize>,
    /// GPTQ's activation order (with `gptq = true`).
    pub act_order: Option<bool>,
    /// GPTQ's static groups (with `gptq = true`).
    pub static_groups: Option<bool>,
}

/// How AWQ scores its candidate scales: `search = "rtn"` or `"gptq"`.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum AwqSearchSpec {
    /// Round-to-nearest on the quantizer's grid (the paper).
    #[default]
    Rtn,
    /// GPTQ on each candidate scaled weight.
    Gptq,
}

impl AwqSpec {
    /// The checked AWQ pass.
    pub fn build(&self) -> Result<crate::quantization::Awq> {
        let gptq_search = self.search == Some(AwqSearchSpec::Gptq);
        if gptq_search && self.gptq == Some(false) {
            return Err(RecipeError::key(
                "gptq",
                "false",
                "search = \"gptq\" quantizes with GPTQ; drop gptq = false",
            ));
        }
        let refine = self.gptq.unwrap_or(false) || gptq_search;
        if !refine {
            refuse_given(
                &[
                    ("damp", self.damp.is_some()),
                    ("block", self.block.is_some()),
                    ("act_order", self.act_order.is_some()),
                    ("static_groups", self.static_groups.is_some()),
                ],
                "set",
                "a GPTQ knob: only with gptq = true (AWQ alone rounds to nearest)",
            )?;
        }
        let gptq = GptqSpec {
            bits: self.bits,
            granularity: self.granularity,
            group_size: self.group_size,
            symmetric: self.symmetric,
            calibration: self.calibration,
            damp: self.damp,
            block: self.block,
            act_order: self.act_order,
            static_groups: self.static_groups,
        }
        .build()?;
        crate::quantization::Awq::params(gptq)
            .grid(self.grid.unwrap_or(20))
            .gptq(refine)
            .gptq_search(gptq_search)
            .check()
    }
}

/// Refuses the first key of `keys` that is given (`(name, given)`, in
/// order) with a [`RecipeError::Key`] of `value` and `rule`: a setting that
/// only applies with another key is an error, never silently ignored.
fn refuse_given(keys: &[(&'static str, bool)], value: &str, rule: &'static str) -> Result<()> {
    match keys.iter().find(|(_, given)| *given) {
        Some(&(key, _)) => Err(RecipeError::key(key, value, rule)),
        None => Ok(()),
    }
}

/// A sparsity pattern in a recipe: `sparsity = s` (unstructured, per row)
/// or `n = N, m = M` (N kept in every M consecutive inputs), not both.
fn pattern(sparsity: Option<f64>, n: Option<usize>, m: Option<usize>) -> Result<SparsityPattern> {
    match (sparsity, n, m) {
        (Some(s), None, None) => Ok(SparsityPattern::Unstructured(s)),
        (None, Some(n), Some(m)) => Ok(SparsityPattern::NM { n, m }),
        (None, None, None) => Err(RecipeError::key(
            "sparsity",
            "missing",
            "give sparsity = S (unstructured) or n = N, m = M (N:M)",
        )),
        _ => Err(RecipeError::key(
            "sparsity",
            "with n/m",
            "give sparsity = S, or both n and m, not a mix",
        )),
    }
}

/// Parameters of SparseGPT in a recipe: `sparsity` or `n` and `m`, then
/// `damp` (0.01), `block` (128) and `act_order` (false).
#[derive(Clone, Debug, Default, PartialEq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct SparseGptSpec {
    /// Fraction of every row removed, in [0, 1).
    pub sparsity: Option<f64>,
    /// Kept per group (N:M).
    pub n: Option<usize>,
    /// Group length (N:M).
    pub m: Option<usize>,
    /// Dampening fraction of the mean diagonal of `H` (default 0.01).
    pub damp: Option<f64>,
    /// Columns per mask selection and lazy update (default 128).
    pub block: Option<usize>,
    /// Columns (N:M: groups) in order of decreasing `H_jj` (default false).
    pub act_order: Option<bool>,
}

impl SparseGptSpec {
    /// The checked SparseGPT pruner.
    pub fn build(&self) -> Result<SparseGpt> {
        let mut p = match pattern(self.sparsity, self.n, self.m)? {
            SparsityPattern::Unstructured(s) => SparseGpt::unstructured(s),
            SparsityPattern::NM { n, m } => SparseGpt::nm(n, m),
        };
        if let Some(d) = self.damp {
            p = p.damp(d);
        }
        if let Some(b) = self.block {
            p = p.block(b);
        }
        p.act_order(self.act_order.unwrap_or(false)).check()
    }
}

/// Parameters of Wanda in a recipe: `sparsity` or `n` and `m`.
#[derive(Clone, Debug, Default, PartialEq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct WandaSpec {
    /// Fraction of every row removed, in [0, 1).
    pub sparsity: Option<f64>,
    /// Kept per group (N:M).
    pub n: Option<usize>,
    /// Group length (N:M).
    pub m: Option<usize>,
}

impl WandaSpec {
    /// The checked Wanda pass.
    pub fn build(&self) -> Result<WandaPass> {
        let pass = match pattern(self.sparsity, self.n, self.m)? {
            SparsityPattern::Unstructured(s) => {
                crate::pruning::Magnitude::params(s).check()?;
                WandaPass {
                    sparsity: s,
                    nm: None,
                }
            }
            SparsityPattern::NM { n, m } => {
                NMPruner::params(n, m).check()?;
                WandaPass {
                    sparsity: 1.0 - n as f64 / m.max(1) as f64,
                    nm: Some((n, m)),
                }
            }
        };
        Ok(pass)
    }
}

/// How calibration statistics are collected.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum CalibrationModeSpec {
    /// Compress a stage, then calibrate the next one on the compressed
    /// model's outputs (GPTQ's order; the default).
    #[default]
    Sequential,
    /// Sequential, each layer aiming at the uncompressed model's output
    /// (it also corrects the error of the compressed layers before it).
    SequentialTargets,
    /// Statistics of every layer from the uncompressed model.
    OneShot,
}

/// The `[calibration]` section of a recipe: where the calibration inputs
/// come from and how many are used.
///
/// ```toml
/// [calibration]
/// file = "sentences.txt"  # one sentence a line (the CLI's --calibration wins)
/// samples = 128           # sentences drawn from the file (all when fewer)
/// seed = 0                # which ones: a seeded shuffle
/// max_tokens = 128        # truncation of each sentence
/// mode = "sequential"     # or "sequential-targets", "one-shot"
/// ```
#[derive(Clone, Debug, Default, PartialEq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct CalibrationSection {
    /// A text file of calibration sentences, one a line (relative paths
    /// are relative to the working directory).
    pub file: Option<std::path::PathBuf>,
    /// Sentences used, 1..=4096 (default 128).
    pub samples: Option<usize>,
    /// Seed of the draw (default 0).
    pub seed: Option<u64>,
    /// Tokens kept per sentence, 1..=512 (default: the tokenizer's).
    pub max_tokens: Option<usize>,
    /// `sequential` (default), `sequential-targets` or `one-shot`.
    #[serde(default)]
    pub mode: CalibrationModeSpec,
}

impl CalibrationSection {
    /// Default number of calibration sentences.
    pub const DEFAULT_SAMPLES: usize = 128;

    /// Checks the ranges.
    pub fn check(&self) -> Result<()> {
        if let Some(n) = self.samples {
            if !(1..=4096).contains(&n) {
                return Err(RecipeError::key(
                    "samples",
                    n,
                    "calibration uses 1..=4096 samples (128 is usual)",
                ));
            }
        }
        if let Some(t) = self.max_tokens {
            if !(1..=512).contains(&t) {
                return Err(RecipeError::key(
                    "max_tokens",
                    t,
                    "sentences keep 1..=512 tokens",
                ));
            }
        }
        Ok(())
    }

    /// The samples drawn from `all`: every one when there are at most
    /// `samples`, else `samples` of them chosen by a shuffle seeded with
    /// `seed`, kept in file order. Same seed, same draw.
    ///
    /// ```
    /// use squish::recipe::CalibrationSection;
    /// let all: Vec<u32> = (0..10).collect();
    /// let c = CalibrationSection { samples: Some(4), seed: Some(3), ..Default::default() };
    /// let a = c.draw(&all);
    /// assert_eq!(a.len(), 4);
    /// assert!(a.windows(2).all(|w| w[0] < w[1]));
    /// assert_eq!(a, c.draw(&all));
    /// assert_eq!(CalibrationSection::default().draw(&all), all);
    /// ```
    pub fn draw<T: Clone>(&self, all: &[T]) -> Vec<T> {
        use rand::seq::SliceRandom;
        use rand::SeedableRng;
        let n = self.samples.unwrap_or(Self::DEFAULT_SAMPLES);
        if all.len() <= n {
            return all.to_vec();
        }
        let mut idx: Vec<usize> = (0..all.len()).collect();
        let mut rng = rand_chacha::ChaCha8Rng::seed_from_u64(self.seed.unwrap_or(0));
        idx.shuffle(&mut rng);
        let mut pick = idx[..n].to_vec();
        pick.sort_unstable();
        pick.into_iter().map(|i| all[i].clone()).collect()
    }
}
