//! The TOML parameters of each method and their checked builders.
//!
//! Every spec denies unknown keys; [`build`](IntSpec::build) turns it into
//! the family's checked object, rejecting combinations that make no sense
//! (say, a `seed` without a randomized SVD) rather than ignoring them.

use serde::Deserialize;

use crate::compression::lowrank::{LowRank, RandomizedSvd, RankSelection};
use crate::compression::sharing::{Init, KMeans};
use crate::error::{Result, SquishError};
use crate::pruning::Structured;
use crate::quantization::{Calibration, IntQuantizer};
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
        p = match (self.granularity, self.group_size) {
            (GranularitySpec::PerTensor, None) => p.per_tensor(),
            (GranularitySpec::PerRow, None) => p.per_row(),
            (GranularitySpec::PerGroup, Some(g)) => p.per_group(g),
            (GranularitySpec::PerGroup, None) => {
                return Err(SquishError::from(RecipeError::Key {
                    key: "group_size",
                    value: "missing".to_string(),
                    rule: "granularity = \"per-group\" needs group_size = N",
                }))
            }
            (_, Some(g)) => {
                return Err(SquishError::from(RecipeError::Key {
                    key: "group_size",
                    value: g.to_string(),
                    rule: "only allowed with granularity = \"per-group\"",
                }))
            }
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
            (None, _) => Err(SquishError::from(RecipeError::Key {
                key: "rank rule",
                value: "missing".to_string(),
                rule: "low rank needs one of rank, energy, rel_error, ratio or bytes",
            })),
            (Some(_), Some(_)) => Err(SquishError::from(RecipeError::Key {
                key: "rank rule",
                value: "several".to_string(),
                rule: "give exactly one of rank, energy, rel_error, ratio or bytes",
            })),
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
        for (name, given) in [
            ("oversampling", self.oversampling.is_some()),
            ("power_iters", self.power_iters.is_some()),
            ("seed", self.seed.is_some()),
        ] {
            if given {
                return Err(SquishError::from(RecipeError::Key {
                    key: name,
                    value: "given".to_string(),
                    rule: "only allowed with randomized = true",
                }));
            }
        }
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
            (None, Some(b)) => Err(SquishError::from(RecipeError::Key {
                key: "bits",
                value: b.to_string(),
                rule: "k-means indices have 1..=16 bits",
            })),
            (None, None) => Err(SquishError::from(RecipeError::Key {
                key: "k",
                value: "missing".to_string(),
                rule: "k-means needs k = N or bits = B",
            })),
            (Some(_), Some(_)) => Err(SquishError::from(RecipeError::Key {
                key: "bits",
                value: "with k".to_string(),
                rule: "give k or bits, not both",
            })),
        }
    }

    /// The checked quantizer.
    pub fn build(&self) -> Result<KMeans> {
        let mut p = KMeans::params(self.k()?);
        if self.optimal.unwrap_or(false) {
            for (name, given) in [
                ("init", self.init.is_some()),
                ("max_iter", self.max_iter.is_some()),
                ("seed", self.seed.is_some()),
            ] {
                if given {
                    return Err(SquishError::from(RecipeError::Key {
                        key: name,
                        value: "given".to_string(),
                        rule: "Lloyd's setting; not allowed with optimal = true",
                    }));
                }
            }
            p = p.optimal();
        } else {
            let init = match (self.init.unwrap_or_default(), self.seed) {
                (InitSpec::KMeansPlusPlus, seed) => Init::KMeansPlusPlus {
                    seed: seed.unwrap_or(0),
                },
                (_, Some(_)) => {
                    return Err(SquishError::from(RecipeError::Key {
                        key: "seed",
                        value: "given".to_string(),
                        rule: "only allowed with init = \"kmeans++\"",
                    }))
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
