//! Vectorized operations on one slice of weights that share a parameter set:
//! range, quantization to codes, and quantization error.
//!
//! Each operation is written once as plain Rust and compiled three times:
//! for AVX-512, for AVX2 (chosen at run time with `is_x86_feature_detected!`)
//! and for the baseline target. The compiler vectorizes the loops; the
//! arithmetic is the same in all three, so results are bit-identical.

use crate::kernels::multiversion;

/// An integer grid: codes `qmin..=qmax`, and whether zero-points are used.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) struct Grid {
    pub qmin: i32,
    pub qmax: i32,
    pub symmetric: bool,
}

impl Grid {
    /// The grid of `bits`-bit codes (bits ∈ {4, 8}).
    pub fn new(bits: u8, symmetric: bool) -> Self {
        let half = 1i32 << (bits - 1);
        let qmin = if symmetric { -(half - 1) } else { -half };
        Grid {
            qmin,
            qmax: half - 1,
            symmetric,
        }
    }

    /// Scale and zero-point covering `[lo, hi]` (widened to contain 0).
    /// A zero range gives scale 0, which decodes to exact zeros.
    ///
    /// Every code of the grid decodes to a finite value: near `f32::MAX`
    /// the scale is lowered until `(q − z)·s` fits in f32 for all q (the
    /// extreme weights then clip by at most one code step).
    #[inline]
    pub fn scale_zero_point(&self, lo: f32, hi: f32) -> (f32, i8) {
        let (lo, hi) = (lo.min(0.0), hi.max(0.0));
        let (s, z) = if self.symmetric {
            (lo.abs().max(hi) / self.qmax as f32, 0)
        } else {
            // Each bound divided first: `hi − lo` overflows for ±f32::MAX.
            let span = (self.qmax - self.qmin) as f32;
            let s = hi / span - lo / span;
            let z = if s > 0.0 {
                (self.qmin as f32 - lo / s)
                    .round()
                    .clamp(self.qmin as f32, self.qmax as f32)
            } else {
                0.0
            };
            (s, z as i8)
        };
        (self.decodable(s, z as i32), z)
    }

    /// `s`, lowered when a code of this grid would decode to ±Inf under
    /// zero-point `z`.
    #[inline]
    fn decodable(&self, s: f32, z: i32) -> f32 {
        let reach = (self.qmax - z).max(z - self.qmin) as f32;
        if (reach * s).is_finite() {
            return s;
        }
        let mut s = f32::MAX / reach;
        while !(reach * s).is_finite() {
            s = s.next_down();
        }
        s
    }
}

multiversion! {
    /// `(min, max)` of a slice; `(0, 0)` when empty.
    pub(crate) fn min_max(x: &[f32]) -> (f32, f32) => min_max_generic;
}

multiversion! {
    /// Codes of `x` under scale `s` and zero-point `z`: round half away from
    /// zero of `w·(1/s)`, plus `z`, clamped to the grid. Scale 0 gives `z`.
    pub(crate) fn quantize(x: &[f32], s: f32, z: i32, g: Grid, out: &mut [i8]) => quantize_generic;
}

multiversion! {
    /// Σ (w − ŵ)² in f64 for the codes `quantize` would give.
    pub(crate) fn sq_error(x: &[f32], s: f32, z: i32, g: Grid) -> f64 => sq_error_generic;
}

const LANES: usize = 16;

#[inline(always)]
fn min_max_generic(x: &[f32]) -> (f32, f32) {
    let Some(&first) = x.first() else {
        return (0.0, 0.0);
    };
    let mut lo = [first; LANES];
    let mut hi = [first; LANES];
    let chunks = x.chunks_exact(LANES);
    let tail = chunks.remainder();
    for c in chunks {
        for l in 0..LANES {
            // Plain comparisons (not f32::min) vectorize to vminps/vmaxps;
            // inputs are finite so NaN handling does not matter.
            lo[l] = if c[l] < lo[l] { c[l] } else { lo[l] };
            hi[l] = if c[l] > hi[l] { c[l] } else { hi[l] };
        }
    }
    let (mut l, mut h) = (first, first);
    for &v in lo.iter().chain(tail) {
        l = l.min(v);
    }
    for &v in hi.iter().chain(tail) {
        h = h.max(v);
    }
    (l, h)
}

/// Multiplier for `w ↦ w / s`: `1/s`, or `None` when that overflows
/// (subnormal scales), in which case callers divide.
#[inline(always)]
fn reciprocal(s: f32) -> Option<f32> {
    let inv = 1.0 / s;
    inv.is_finite().then_some(inv)
}

/// `w · (1/s)` (or `w / s` for subnormal `s`).
#[inline(always)]
fn scaled(w: f32, s: f32, inv: Option<f32>) -> f32 {
    match inv {
        Some(inv) => w * inv,
        None => w / s,
    }
}

#[inline(always)]
fn code(v: f32, z: i32, g: Grid) -> i32 {
    // Clamp in float (bounds are integers, so this equals clamping after
    // rounding) so the conversion never saturates.
    let lo = (g.qmin - z) as f32;
    let hi = (g.qmax - z) as f32;
    // Compare-and-select (not f32::clamp) so it vectorizes; written so that
    // a NaN would become `lo`, hence v is always in [lo, hi].
    let v = if v >= lo { v } else { lo };
    let v = if v <= hi { v } else { hi };
    round_half_away(v) + z
}

/// `v.round() as i32` (half away from zero) for |v| < 2^23, in a form that
/// vectorizes: adding the largest float below ½ with v's sign, then
/// truncating, rounds ties away and never rounds x.4999… up. Out-of-range
/// or NaN input is clamped first.
#[inline(always)]
pub(crate) fn round_half_away(v: f32) -> i32 {
    const BELOW_HALF: f32 = 0.499_999_97;
    const LIMIT: f32 = 8_388_607.0; // 2^23 - 1
    let v = if v >= -LIMIT { v } else { -LIMIT };
    let v = if v <= LIMIT { v } else { LIMIT };
    // SAFETY: v is finite and |v + ½| < 2^31, so the truncation is in range.
    unsafe { (v + BELOW_HALF.copysign(v)).to_int_unchecked::<i32>() }
}

/// The code of one value, with the same arithmetic as [`quantize`] (GPTQ
/// rounds one column at a time, each row under its own parameters).
#[inline]
pub(crate) fn quantize_scalar(w: f32, s: f32, z: i32, g: Grid) -> i32 {
    if s > 0.0 {
        code(scaled(w, s, reciprocal(s)), z, g)
    } else {
        z
    }
}

#[inline(always)]
fn quantize_generic(x: &[f32], s: f32, z: i32, g: Grid, out: &mut [i8]) {
    debug_assert_eq!(x.len(), out.len());
    if s > 0.0 {
        match reciprocal(s) {
            // Two loops so the common one has no branch and vectorizes.
            Some(inv) => {
                for (o, &w) in out.iter_mut().zip(x) {
                    *o = code(w * inv, z, g) as i8;
                }
            }
            None => {
                for (o, &w) in out.iter_mut().zip(x) {
                    *o = code(w / s, z, g) as i8;
                }
            }
        }
    } else {
        out.fill(z as i8);
    }
}

#[inline(always)]
fn sq_error_generic(x: &[f32], s: f32, z: i32, g: Grid) -> f64 {
    let mut acc = [0.0f64; 8];
    let chunks = x.chunks_exact(8);
    let tail = chunks.remainder();
    let inv = reciprocal(s);
    let err = |w: f32| -> f64 {
        let w_hat = if s > 0.0 {
            (code(scaled(w, s, inv), z, g) - z) as f32 * s
        } else {
            0.0
        };
        let d = (w - w_hat) as f64;
        d * d
    };
    for c in chunks {
        for l in 0..8 {
            acc[l] += err(c[l]);
        }
    }
    acc.iter().sum::<f64>() + tail.iter().map(|&w| err(w)).sum::<f64>()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn round_half_away_equals_f32_round() {
        let mut v = -200.0f32;
        while v <= 200.0 {
            for x in [v, v.next_up(), v.next_down()] {
                assert_eq!(round_half_away(x), x.round() as i32, "{x}");
            }
            v += 0.125;
        }
        for x in [
            0.5f32,
            -0.5,
            0.499_999_97,
            -0.499_999_97,
            1.5,
            2.5,
            -2.5,
            8_388_607.0,
        ] {
            assert_eq!(round_half_away(x), x.round() as i32, "{x}");
        }
    }

    #[test]
    fn dispatched_equals_generic() {
        let x: Vec<f32> = (0..1003)
            .map(|i| ((i * 7919) % 1000) as f32 / 37.0 - 13.0)
            .collect();
        let g = Grid::new(8, false);
        let (s, z) = g.scale_zero_point(-13.0, 14.0);
        let mut a = vec![0i8; x.len()];
        let mut b = vec![0i8; x.len()];
        quantize(&x, s, z as i32, g, &mut a);
        quantize_generic(&x, s, z as i32, g, &mut b);
        assert_eq!(a, b);
        assert_eq!(min_max(&x), min_max_generic(&x));
        assert_eq!(
            sq_error(&x, s, z as i32, g).to_bits(),
            sq_error_generic(&x, s, z as i32, g).to_bits()
        );
    }
}
