//! Lane-wise reductions that compile to SIMD, around the crate's one fast
//! `exp` ([`exp_neg`], in `crate::math`).
//!
//! Float reductions do not auto-vectorise (addition is not associative), so
//! sums and maxima run over [`LANES`] independent partial results.

pub(crate) use crate::math::{exp_neg, LANES};

#[inline(always)]
pub(crate) fn max(xs: &[f32]) -> f32 {
    let mut acc = [f32::NEG_INFINITY; LANES];
    let mut chunks = xs.chunks_exact(LANES);
    for c in &mut chunks {
        for (a, &v) in acc.iter_mut().zip(c) {
            *a = if v > *a { v } else { *a };
        }
    }
    let mut m = chunks
        .remainder()
        .iter()
        .fold(f32::NEG_INFINITY, |a, &b| a.max(b));
    for a in acc {
        m = m.max(a);
    }
    m
}

#[inline(always)]
fn sum_lanes(acc: [f32; LANES], rest: f32) -> f32 {
    acc.iter().sum::<f32>() + rest
}

/// `out[i] = exp(x[i]·scale − shift)`; returns `Σ out`.
#[inline(always)]
pub(crate) fn exp_shifted(x: &[f32], scale: f32, shift: f32, out: &mut [f32]) -> f32 {
    let mut acc = [0.0f32; LANES];
    let mut xc = x.chunks_exact(LANES);
    let mut oc = out.chunks_exact_mut(LANES);
    for (xs, os) in (&mut xc).zip(&mut oc) {
        for ((o, &v), a) in os.iter_mut().zip(xs).zip(acc.iter_mut()) {
            *o = exp_neg(v * scale - shift);
            *a += *o;
        }
    }
    let mut rest = 0.0;
    for (o, &v) in oc.into_remainder().iter_mut().zip(xc.remainder()) {
        *o = exp_neg(v * scale - shift);
        rest += *o;
    }
    sum_lanes(acc, rest)
}

/// `Σ p[i]·(t[i] − s[i])`.
#[inline(always)]
pub(crate) fn dot_diff(p: &[f32], t: &[f32], s: &[f32]) -> f32 {
    let mut acc = [0.0f32; LANES];
    let (mut pc, mut tc, mut sc) = (
        p.chunks_exact(LANES),
        t.chunks_exact(LANES),
        s.chunks_exact(LANES),
    );
    for ((ps, ts), ss) in (&mut pc).zip(&mut tc).zip(&mut sc) {
        for (((a, &p), &t), &s) in acc.iter_mut().zip(ps).zip(ts).zip(ss) {
            *a += p * (t - s);
        }
    }
    let rest = pc
        .remainder()
        .iter()
        .zip(tc.remainder())
        .zip(sc.remainder())
        .map(|((&p, &t), &s)| p * (t - s))
        .sum::<f32>();
    sum_lanes(acc, rest)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn exp_matches_std() {
        let mut worst = 0.0f64;
        for i in 0..200_000 {
            let x = -(i as f32) * 4.3e-4; // 0 … −86
            let (a, b) = (exp_neg(x) as f64, (x as f64).exp());
            worst = worst.max((a - b).abs() / b);
        }
        assert!(worst < 5e-7, "worst relative error {worst}");
        assert!(exp_neg(-1000.0) < 1e-37);
        assert_eq!(exp_neg(0.0), 1.0);
    }

    #[test]
    fn reductions_match_plain_loops() {
        let xs: Vec<f32> = (0..37)
            .map(|i| ((i * 7919) % 101) as f32 / 10.0 - 5.0)
            .collect();
        assert_eq!(
            max(&xs),
            xs.iter().fold(f32::NEG_INFINITY, |a, &b| a.max(b))
        );
        let mut out = vec![0.0; xs.len()];
        let m = max(&xs);
        let s = exp_shifted(&xs, 1.0, m, &mut out);
        let want: f64 = xs.iter().map(|&x| ((x - m) as f64).exp()).sum();
        assert!((s as f64 - want).abs() < 1e-5 * want);
        let d = dot_diff(&xs, &out, &xs);
        let want: f64 = xs
            .iter()
            .zip(&out)
            .map(|(&p, &t)| p as f64 * (t - p) as f64)
            .sum();
        assert!((d as f64 - want).abs() < 1e-4 * want.abs().max(1.0));
    }
}
