//! Element-wise math of the encoder (exp, erf, GELU) in branch-free forms
//! that compile to SIMD, and lane-wise reductions.
//!
//! Float sums do not auto-vectorise (addition is not associative), so they
//! run over [`LANES`] independent partial sums combined in a fixed order.

pub(crate) const LANES: usize = 16;

pub(crate) use crate::math::exp_neg;

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
    let t = 1.0 / (1.0 + P * a);
    let poly = ((((A[4] * t + A[3]) * t + A[2]) * t + A[1]) * t + A[0]) * t;
    let y = 1.0 - poly * exp_neg(-a * a);
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

/// Applies [`gelu`] to every element in place.
pub fn gelu_in_place(xs: &mut [f32]) {
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
    acc.iter().sum::<f32>() + c.remainder().iter().sum::<f32>()
}

/// `Σ a[i]·b[i]` over [`LANES`] partial sums.
#[inline(always)]
pub(crate) fn dot(a: &[f32], b: &[f32]) -> f32 {
    let mut acc = [0.0f32; LANES];
    let mut ca = a.chunks_exact(LANES);
    let mut cb = b.chunks_exact(LANES);
    for (x, y) in (&mut ca).zip(&mut cb) {
        for ((s, &u), &v) in acc.iter_mut().zip(x).zip(y) {
            *s += u * v;
        }
    }
    let rest: f32 = ca
        .remainder()
        .iter()
        .zip(cb.remainder())
        .map(|(u, v)| u * v)
        .sum();
    acc.iter().sum::<f32>() + rest
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
    c.remainder()
        .iter()
        .chain(acc.iter())
        .fold(f32::NEG_INFINITY, |m, &v| m.max(v))
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
        let w: Vec<f32> = (0..37).map(|i| (i as f32 * 0.11).cos()).collect();
        let s: f64 = v.iter().map(|&x| x as f64).sum();
        let d: f64 = v.iter().zip(&w).map(|(&a, &b)| a as f64 * b as f64).sum();
        assert!((sum(&v) as f64 - s).abs() < 1e-5);
        assert!((dot(&v, &w) as f64 - d).abs() < 1e-5);
        assert_eq!(max(&v), v.iter().cloned().fold(f32::MIN, f32::max));
    }
}
