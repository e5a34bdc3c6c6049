//! The crate's error type.
//!
//! Every fallible function in squish returns [`Result<T>`](Result). Each family
//! of methods keeps its own error enum and [`SquishError`] wraps it, so a
//! caller can match on the family (linfa's pattern) or just print the message.

use thiserror::Error;

use crate::data::DataError;

/// Result alias used across the crate.
pub type Result<T, E = SquishError> = std::result::Result<T, E>;

/// Everything that can go wrong in squish.
///
/// Messages say what was wrong *and* what to do about it.
#[derive(Debug, Error)]
#[non_exhaustive]
pub enum SquishError {
    /// A weight or input holds NaN or ±Inf.
    #[error("{what} holds a non-finite value ({value}) at flat index {index}; clean or clip the tensor first")]
    NonFinite {
        /// Which tensor.
        what: &'static str,
        /// Flat (row-major) index of the first offending element.
        index: usize,
        /// The offending value.
        value: f32,
    },
    /// A tensor with no elements, where one with elements is needed.
    #[error("{what} is empty (shape {rows}x{cols}); pass a matrix with at least one element")]
    Empty {
        /// Which tensor.
        what: &'static str,
        /// Rows.
        rows: usize,
        /// Columns.
        cols: usize,
    },
    /// Operand shapes do not fit together.
    #[error("shape mismatch in {op}: expected {expected}, got {got}")]
    ShapeMismatch {
        /// The operation.
        op: &'static str,
        /// What was expected.
        expected: String,
        /// What was given.
        got: String,
    },
    /// A hyperparameter outside its valid range, rejected before any work.
    ///
    /// The families report their own parameters through their typed enums
    /// ([`SquishError::Quantization`], [`SquishError::Pruning`], ...); this
    /// variant is left for code outside them (see [`SquishError::invalid`]).
    #[error("invalid parameter `{name}` = {value}: {reason}")]
    InvalidParameter {
        /// Parameter name.
        name: &'static str,
        /// The rejected value, as text.
        value: String,
        /// The valid range or rule.
        reason: String,
    },
    /// A pass was asked to work on a representation it cannot take.
    #[error("cannot apply {pass} to a {structure} matrix with {encoding} values: {hint}")]
    Incompatible {
        /// The pass.
        pass: String,
        /// The input's structure.
        structure: &'static str,
        /// The input's value encoding.
        encoding: &'static str,
        /// What to do instead.
        hint: &'static str,
    },
    /// Parts given to a constructor disagree with each other.
    #[error("inconsistent {what}: {detail}")]
    Inconsistent {
        /// Which object.
        what: &'static str,
        /// What disagrees.
        detail: String,
    },
    /// A structure or value encoding built from parts that do not fit its rules.
    #[error(transparent)]
    Matrix(#[from] crate::matrix::MatrixError),
    /// An error of the quantization family.
    #[error(transparent)]
    Quantization(#[from] crate::quantization::QuantizationError),
    /// An error of the weight-sharing family (k-means, Huffman coding).
    #[error(transparent)]
    Sharing(#[from] crate::compression::sharing::SharingError),
    /// An error of the deep-compression family.
    #[error(transparent)]
    Deep(#[from] crate::compression::deep::DeepError),
    /// An error of the distillation family.
    #[error(transparent)]
    Distillation(#[from] crate::distillation::DistillationError),
    /// An error of the training engine.
    #[error(transparent)]
    Training(#[from] crate::training::TrainingError),
    /// An operating-system I/O error (reading or writing a file).
    #[error("I/O error: {0}; check the path and its permissions")]
    Io(#[from] std::io::Error),
    /// A pruning-specific error.
    #[error(transparent)]
    Pruning(#[from] crate::pruning::PruningError),
    /// A dataset could not be read.
    #[error(transparent)]
    Data(#[from] DataError),
    /// A parallel run failed (a task panicked).
    #[error(transparent)]
    Parallel(#[from] crate::parallel::ParallelError),
    /// Reading or writing a model file failed.
    #[error(transparent)]
    File(#[from] crate::io::FileError),
    /// A recipe is malformed or does not fit the model.
    #[error(transparent)]
    Recipe(#[from] crate::recipe::RecipeError),
    /// An error of the low-rank family (rank selection, SVD backends).
    #[error(transparent)]
    LowRank(#[from] crate::compression::lowrank::LowRankError),
    /// The calibration Hessian of a data-aware method is unusable.
    #[error(transparent)]
    Hessian(#[from] crate::matrix::HessianError),
    /// Calibration data or statistics are missing or unusable.
    #[error(transparent)]
    Calibration(#[from] crate::pass::CalibrationError),
    /// Sensitivity measurement or budget planning failed.
    #[error(transparent)]
    Plan(#[from] crate::plan::PlanError),
    /// Building or running a network (encoder weights, tokenizer, input).
    #[error(transparent)]
    Nn(#[from] crate::nn::NnError),
    /// A run over several ranks failed (on this rank or another).
    #[error(transparent)]
    Distributed(#[from] crate::distributed::DistributedError),
}

impl SquishError {
    /// Shorthand for [`SquishError::InvalidParameter`], for code outside the
    /// crate's families (a user's closure, the command line). The crate's own
    /// functions return their family's typed error instead.
    pub fn invalid(name: &'static str, value: impl ToString, reason: impl Into<String>) -> Self {
        SquishError::InvalidParameter {
            name,
            value: value.to_string(),
            reason: reason.into(),
        }
    }

    /// Shorthand for [`SquishError::Inconsistent`].
    pub fn inconsistent(what: &'static str, detail: impl Into<String>) -> Self {
        SquishError::Inconsistent {
            what,
            detail: detail.into(),
        }
    }

    /// Shorthand for [`SquishError::ShapeMismatch`].
    pub fn shape(op: &'static str, expected: impl Into<String>, got: impl Into<String>) -> Self {
        SquishError::ShapeMismatch {
            op,
            expected: expected.into(),
            got: got.into(),
        }
    }
}

/// Checks that every element is finite; reports the first one that is not.
///
/// The check is a branch-free fold, which vectorizes (an early-exit search
/// goes one element at a time); only a failing input is read a second time,
/// to find the position.
pub fn check_finite<'a>(
    what: &'static str,
    values: impl IntoIterator<Item = &'a f32, IntoIter: Clone>,
) -> Result<()> {
    let values = values.into_iter();
    if values.clone().fold(true, |ok, v| ok & v.is_finite()) {
        return Ok(());
    }
    match values.enumerate().find(|(_, v)| !v.is_finite()) {
        Some((index, &value)) => Err(SquishError::NonFinite { what, index, value }),
        None => Ok(()),
    }
}

/// [`check_finite`] for a slice, the test at the CPU's widest vectors
/// (AVX2 where detected): a kernel's input is checked on every product
/// (7 % of a 100 × 300 product at batch 8 with the generic fold).
pub(crate) fn check_finite_slice(what: &'static str, values: &[f32]) -> Result<()> {
    /// The largest magnitude's bits below an infinity's in chunks of 256
    /// (a check per chunk: a plain fold of `u32::max` vectorizes).
    #[inline(always)]
    fn finite(s: &[f32]) -> bool {
        s.chunks(256)
            .all(|c| c.iter().fold(0u32, |m, v| m.max(v.to_bits() & 0x7FFF_FFFF)) < 0x7F80_0000)
    }
    /// # Safety
    /// AVX2 is available.
    #[cfg(target_arch = "x86_64")]
    #[target_feature(enable = "avx2")]
    unsafe fn finite_avx2(s: &[f32]) -> bool {
        finite(s)
    }
    #[cfg(target_arch = "x86_64")]
    let ok = if std::arch::is_x86_feature_detected!("avx2") {
        // SAFETY: AVX2 was detected.
        unsafe { finite_avx2(values) }
    } else {
        finite(values)
    };
    #[cfg(not(target_arch = "x86_64"))]
    let ok = finite(values);
    if ok {
        return Ok(());
    }
    check_finite(what, values)
}

/// Checks that a matrix shape has at least one element.
pub fn check_non_empty(what: &'static str, rows: usize, cols: usize) -> Result<()> {
    if rows == 0 || cols == 0 {
        Err(SquishError::Empty { what, rows, cols })
    } else {
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The slice check agrees with the generic one on every kind of value
    /// (extremes, signed zero, subnormals, ±Inf, NaNs with payloads) at
    /// every position around its chunks, and names the first bad index.
    #[test]
    fn the_slice_check_finds_what_the_fold_finds() {
        let bad = [
            f32::NAN,
            -f32::NAN,
            f32::INFINITY,
            f32::NEG_INFINITY,
            f32::from_bits(0x7F80_0001),
        ];
        let good = [
            0.0,
            -0.0,
            f32::MAX,
            f32::MIN,
            f32::MIN_POSITIVE,
            1e-45,
            -1e-45,
        ];
        for n in [0, 1, 15, 16, 255, 256, 257, 600] {
            let base: Vec<f32> = (0..n).map(|k| good[k % good.len()]).collect();
            assert!(check_finite_slice("x", &base).is_ok(), "{n}");
            for at in [0, n / 2, n.saturating_sub(1), 255, 256] {
                if at >= n {
                    continue;
                }
                for &b in &bad {
                    let mut v = base.clone();
                    v[at] = b;
                    v[n - 1] = if at == n - 1 { b } else { f32::NAN };
                    match check_finite_slice("x", &v) {
                        Err(SquishError::NonFinite { index, .. }) => assert_eq!(index, at),
                        other => panic!("{n} at {at}: {other:?}"),
                    }
                }
            }
        }
    }
}
