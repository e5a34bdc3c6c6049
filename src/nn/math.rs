//! Element-wise math of the encoder (exp, erf, GELU) in branch-free forms
//! that compile to SIMD, and lane-wise reductions.
//!
//! Float sums do not auto-vectorise (addition is not associative), so they
//! run over [`LANES`] independent partial sums combined in a fixed order.
//! Polynomials use `mul_add` (one rounding; a fused multiply-add on the
//! AVX2 and AVX-512 copies, the same bits in software elsewhere).

pub(crate) use crate::math::{exp_neg, LANES};

/// The error function, Abramowitz & Stegun 7.1.26 (|error| ≤ 1.5e−7).
#[inline(always)]
pub fn erf(x: f32) -> f32 {
    const P: f32 = 0.327_591_1;
    const A: [f32; 5] = [
        0.254_829_6,
        -0.284_496_74,
        1.421_413_8,
        -1.453_152_1,
        1.061_405_4,
    ];
    let a = x.abs();
    let t = 1.0 / P.mul_add(a, 1.0);
    let poly = A[4]
        .mul_add(t, A[3])
        .mul_add(t, A[2])
        .mul_add(t, A[1])
        .mul_add(t, A[0])
        * t;
    let y = (-poly).mul_add(exp_neg(-a * a), 1.0);
    y.copysign(x)
}

/// GELU in the exact (erf) form BERT uses: `x·(1 + erf(x/√2))/2`.
///
/// ```
/// use squish::nn::gelu;
/// assert!((gelu(1.0) - 0.841_344_7).abs() < 1e-6);
/// assert_eq!(gelu(0.0), 0.0);
/// ```
#[inline(always)]
pub fn gelu(x: f32) -> f32 {
    0.5 * x * (1.0 + erf(x * std::f32::consts::FRAC_1_SQRT_2))
}

crate::kernels::multiversion! {
    /// Applies [`gelu`] to every element in place (AVX-512 or AVX2 when the
    /// CPU has them: the same operations, so the same bits).
    ///
    /// ```
    /// let mut x = [1.0f32, 0.0, -1.0];
    /// squish::nn::gelu_in_place(&mut x);
    /// assert_eq!(x, [squish::nn::gelu(1.0), 0.0, squish::nn::gelu(-1.0)]);
    /// ```
    pub fn gelu_in_place(xs: &mut [f32]) => gelu_generic;
}

#[inline(always)]
fn gelu_generic(xs: &mut [f32]) {
    xs.iter_mut().for_each(|x| *x = gelu(*x));
}

/// `Σ x[i]` over [`LANES`] partial sums.
#[inline(always)]
pub(crate) fn sum(xs: &[f32]) -> f32 {
    let mut acc = [0.0f32; LANES];
    let mut c = xs.chunks_exact(LANES);
    for ch in &mut c {
        acc.iter_mut().zip(ch).for_each(|(a, &v)| *a += v);
    }
    fold(acc, |a, b| a + b) + c.remainder().iter().sum::<f32>()
}

/// The [`LANES`] partial results combined pairwise (a fixed tree: lane
/// `i` with lane `i + w` for w = 8, 4, 2, 1), which compiles to a few
/// vector shuffles instead of a chain of 15 scalar steps.
#[inline(always)]
pub(crate) fn fold(mut acc: [f32; LANES], f: impl Fn(f32, f32) -> f32) -> f32 {
    let mut w = LANES / 2;
    while w > 0 {
        for i in 0..w {
            acc[i] = f(acc[i], acc[i + w]);
        }
        w /= 2;
    }
    acc[0]
}

/// `max x[i]` (−∞ for an empty slice).
#[inline(always)]
pub(crate) fn max(xs: &[f32]) -> f32 {
    let mut acc = [f32::NEG_INFINITY; LANES];
    let mut c = xs.chunks_exact(LANES);
    for ch in &mut c {
        acc.iter_mut()
            .zip(ch)
            .for_each(|(a, &v)| *a = if v > *a { v } else { *a });
    }
    let m = fold(acc, |a, b| if b > a { b } else { a });
    c.remainder().iter().fold(m, |m, &v| m.max(v))
}

#[cfg(test)]
mod tests {
    use super::*;

    /// erf by its Maclaurin series in f64 (converges fast for |x| ≤ 3),
    /// 1 beyond.
    fn erf_f64(x: f64) -> f64 {
        if x.abs() > 5.0 {
            return x.signum();
        }
        let mut term = x;
        let mut s = x;
        for n in 1..200 {
            term *= -x * x / n as f64;
            s += term / (2 * n + 1) as f64;
        }
        s * 2.0 / std::f64::consts::PI.sqrt()
    }

    #[test]
    fn erf_and_gelu_match_f64_series() {
        for i in -400..=400 {
            let x = i as f64 / 80.0;
            let e = erf_f64(x);
            assert!((erf(x as f32) as f64 - e).abs() < 4e-7, "erf({x})");
            let g = 0.5 * x * (1.0 + erf_f64(x / 2f64.sqrt()));
            assert!(
                (gelu(x as f32) as f64 - g).abs() < 1e-6 * (1.0 + x.abs()),
                "gelu({x})"
            );
        }
    }

    #[test]
    fn exp_matches_std() {
        for i in 0..=1000 {
            let x = -(i as f32) / 20.0;
            let r = (x as f64).exp();
            assert!(((exp_neg(x) as f64) - r).abs() <= 3e-7 * r, "exp({x})");
        }
    }

    #[test]
    fn reductions_match_naive() {
        let v: Vec<f32> = (0..37).map(|i| (i as f32 * 0.37).sin()).collect();
        let s: f64 = v.iter().map(|&x| x as f64).sum();
        assert!((sum(&v) as f64 - s).abs() < 1e-5);
        assert_eq!(max(&v), v.iter().cloned().fold(f32::MIN, f32::max));
    }
}
