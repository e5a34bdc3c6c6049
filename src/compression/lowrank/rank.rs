//! [`RankSelection`]: how many singular triplets to keep.

use super::LowRankError;
use crate::error::Result;
use crate::matrix::METADATA_BYTES;

/// Rule that picks the rank r of W ≈ A·B.
///
/// | rule | picks |
/// |---|---|
/// | `Fixed(r)` | r itself (1 ≤ r ≤ min(m, n)) |
/// | `Energy(e)` | smallest r with Σ_{i≤r} σᵢ² ≥ e·Σσ², e ∈ (0, 1] |
/// | `RelativeError(ε)` | smallest r with ‖W − W_r‖_F ≤ ε·‖W‖_F, ε ∈ (0, 1) |
/// | `CompressionRatio(c)` | largest r with dense bytes / factored bytes ≥ c |
/// | `ByteBudget(b)` | largest r whose factors fit in b bytes |
///
/// Storage counts both f32 factors and the headers of the three matrices
/// (see [`factored_bytes`]); the last two rules are capped at min(m, n).
///
/// ```
/// use squish::compression::lowrank::RankSelection;
/// let sigma = [4.0f32, 3.0, 2.0, 1.0]; // σ² = 16, 9, 4, 1; Σ = 30
/// let r = RankSelection::Energy(0.8).select_from_spectrum(4, 4, &sigma).unwrap();
/// assert_eq!(r, 2); // 25/30 ≥ 0.8 > 16/30
/// assert!(RankSelection::Fixed(0).check().is_err());
/// ```
#[derive(Clone, Copy, Debug, PartialEq)]
pub enum RankSelection {
    /// Exactly this rank.
    Fixed(usize),
    /// Smallest rank keeping this fraction of the energy Σσ².
    Energy(f64),
    /// Smallest rank whose relative Frobenius error is at most this.
    RelativeError(f64),
    /// Largest rank whose f32 factors compress at least this much.
    CompressionRatio(f64),
    /// Largest rank whose f32 factors fit in this many bytes.
    ByteBudget(usize),
}

/// Bytes of a rank-`r` factorization of an `m × n` matrix with f32 factors:
/// A (`m × r`) and B (`r × n`) plus one header each for A, B and the
/// low-rank matrix, exactly what [`StorageReport`](crate::matrix::StorageReport) counts.
///
/// ```
/// use squish::compression::lowrank::factored_bytes;
/// assert_eq!(factored_bytes(100, 100, 12), 48 + 4 * 12 * 200);
/// ```
pub fn factored_bytes(m: usize, n: usize, r: usize) -> usize {
    3 * METADATA_BYTES + 4 * r * (m + n)
}

impl RankSelection {
    /// Checks the parameter alone (no matrix needed).
    pub fn check(&self) -> Result<()> {
        match *self {
            RankSelection::Fixed(0) => Err(LowRankError::ZeroRank.into()),
            RankSelection::Energy(e) if !(e > 0.0 && e <= 1.0) => {
                Err(LowRankError::EnergyOutOfRange(e).into())
            }
            RankSelection::RelativeError(eps) if !(eps > 0.0 && eps < 1.0) => {
                Err(LowRankError::ErrorTargetOutOfRange(eps).into())
            }
            RankSelection::CompressionRatio(c) if !(c > 0.0 && c.is_finite()) => {
                Err(LowRankError::InvalidRatio(c).into())
            }
            _ => Ok(()),
        }
    }

    /// The rank when the shape alone decides it (fixed, ratio, budget);
    /// `None` for the spectrum-based rules.
    pub fn rank_for_shape(&self, m: usize, n: usize) -> Result<Option<usize>> {
        self.check()?;
        let max = m.min(n);
        let largest_within = |bytes: usize| -> Option<usize> {
            // factored_bytes(r) ≤ bytes  ⇔  r ≤ (bytes − headers) / (4(m + n)).
            let r = bytes.checked_sub(3 * METADATA_BYTES)? / (4 * (m + n));
            (r >= 1).then_some(r.min(max))
        };
        match *self {
            RankSelection::Fixed(r) if r > max => Err(LowRankError::RankTooLarge {
                rank: r,
                max,
                rows: m,
                cols: n,
            }
            .into()),
            RankSelection::Fixed(r) => Ok(Some(r)),
            RankSelection::CompressionRatio(c) => {
                let dense = 4.0 * (m * n) as f64;
                // Largest byte count whose ratio is still ≥ c.
                let bytes = (dense / c).floor();
                let r = if bytes >= usize::MAX as f64 {
                    Some(max)
                } else {
                    largest_within(bytes as usize)
                };
                r.map(Some).ok_or_else(|| {
                    LowRankError::UnreachableRatio {
                        ratio: c,
                        best: dense / factored_bytes(m, n, 1) as f64,
                        rows: m,
                        cols: n,
                    }
                    .into()
                })
            }
            RankSelection::ByteBudget(b) => largest_within(b).map(Some).ok_or_else(|| {
                LowRankError::UnreachableBudget {
                    budget: b,
                    min_bytes: factored_bytes(m, n, 1),
                }
                .into()
            }),
            RankSelection::Energy(_) | RankSelection::RelativeError(_) => Ok(None),
        }
    }

    /// The rank for an `m × n` matrix with the complete singular spectrum
    /// `sigma` (non-increasing, `min(m, n)` values).
    pub fn select_from_spectrum(&self, m: usize, n: usize, sigma: &[f32]) -> Result<usize> {
        let total: f64 = sigma.iter().map(|&s| (s as f64).powi(2)).sum();
        Ok(self
            .select(m, n, sigma, total, true)?
            .expect("a complete spectrum always decides"))
    }

    /// The rank given the leading singular values `sigma` and the total
    /// energy ‖W‖_F². `complete` says `sigma` is the whole spectrum; when it
    /// is not and the leading values do not reach the target, returns `None`
    /// (compute more of the spectrum).
    pub(crate) fn select(
        &self,
        m: usize,
        n: usize,
        sigma: &[f32],
        total: f64,
        complete: bool,
    ) -> Result<Option<usize>> {
        if let Some(r) = self.rank_for_shape(m, n)? {
            return Ok(Some(r));
        }
        let target = match *self {
            RankSelection::Energy(e) => e * total,
            RankSelection::RelativeError(eps) => (1.0 - eps * eps) * total,
            _ => unreachable!("shape-decided rules returned above"),
        };
        let mut kept = 0.0f64;
        for (i, &s) in sigma.iter().enumerate() {
            kept += (s as f64).powi(2);
            if kept >= target {
                return Ok(Some(i + 1));
            }
        }
        // Round-off can leave Σσ² a hair below the total: the whole spectrum
        // always reaches any target.
        Ok((complete || sigma.len() >= m.min(n)).then_some(sigma.len().max(1)))
    }
}
