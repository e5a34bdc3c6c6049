//! Paired tests over seeds: is one training recipe better than another on
//! the same seeds, or is the difference noise?

use crate::error::{Result, SquishError};

/// The result of [`paired_t_test`].
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct PairedTest {
    /// Number of pairs.
    pub n: usize,
    /// Mean of `a[i] − b[i]`.
    pub mean_diff: f64,
    /// Sample standard deviation of the differences (n − 1 in the denominator).
    pub sd_diff: f64,
    /// The t statistic `mean / (sd / √n)`.
    pub t: f64,
    /// Degrees of freedom, n − 1.
    pub df: f64,
    /// Two-sided p-value.
    pub p_value: f64,
}

/// Student's paired t-test of `a` against `b` (e.g. accuracies of two
/// recipes on the same seeds): H₀ is a zero mean difference.
///
/// ```
/// use squish::distillation::paired_t_test;
/// let a = [0.872, 0.869, 0.875, 0.871, 0.874];
/// let b = [0.866, 0.866, 0.868, 0.869, 0.867];
/// let t = paired_t_test(&a, &b).unwrap();
/// assert!(t.mean_diff > 0.0 && t.p_value < 0.01);
/// ```
pub fn paired_t_test(a: &[f64], b: &[f64]) -> Result<PairedTest> {
    let d = diffs(a, b)?;
    if d.len() < 2 {
        return Err(SquishError::invalid(
            "pairs",
            d.len(),
            "a paired t-test needs at least 2 pairs",
        ));
    }
    let n = d.len() as f64;
    let mean = d.iter().sum::<f64>() / n;
    let var = d.iter().map(|x| (x - mean).powi(2)).sum::<f64>() / (n - 1.0);
    let sd = var.sqrt();
    let df = n - 1.0;
    let (t, p) = if sd == 0.0 {
        // Identical differences: certain if non-zero, no evidence if zero.
        if mean == 0.0 {
            (0.0, 1.0)
        } else {
            (mean.signum() * f64::INFINITY, 0.0)
        }
    } else {
        let t = mean / (sd / n.sqrt());
        (t, 2.0 * student_t_sf(t.abs(), df))
    };
    Ok(PairedTest {
        n: d.len(),
        mean_diff: mean,
        sd_diff: sd,
        t,
        df,
        p_value: p.min(1.0),
    })
}

/// The exact two-sided sign test of `a` against `b`: under H₀ each non-tied
/// pair is `a > b` with probability ½. Ties are dropped; with no untied
/// pair the p-value is 1.
///
/// ```
/// use squish::distillation::sign_test;
/// // 5 of 5 pairs favour a: p = 2·(1/2)⁵.
/// assert!((sign_test(&[2.0; 5], &[1.0; 5]).unwrap() - 0.0625).abs() < 1e-12);
/// ```
pub fn sign_test(a: &[f64], b: &[f64]) -> Result<f64> {
    let d = diffs(a, b)?;
    let pos = d.iter().filter(|&&x| x > 0.0).count();
    let neg = d.iter().filter(|&&x| x < 0.0).count();
    let n = pos + neg;
    if n == 0 {
        return Ok(1.0);
    }
    let k = pos.min(neg);
    // 2·P(X ≤ k), X ~ Binomial(n, ½), summed in f64 with exact binomials.
    let mut c = 1.0f64; // C(n, 0)
    let mut tail = 0.0;
    for i in 0..=k {
        if i > 0 {
            c = c * (n - i + 1) as f64 / i as f64;
        }
        tail += c;
    }
    Ok((2.0 * tail / 2f64.powi(n as i32)).min(1.0))
}

fn diffs(a: &[f64], b: &[f64]) -> Result<Vec<f64>> {
    if a.len() != b.len() {
        return Err(SquishError::shape(
            "paired samples",
            format!("{} values in b (one per value of a)", a.len()),
            format!("{}", b.len()),
        ));
    }
    if let Some((index, &v)) = a.iter().chain(b).enumerate().find(|(_, v)| !v.is_finite()) {
        return Err(SquishError::NonFinite {
            what: "paired samples",
            index,
            value: v as f32,
        });
    }
    Ok(a.iter().zip(b).map(|(x, y)| x - y).collect())
}

/// `P(T > t)` for Student's t with `df` degrees of freedom, from the
/// regularized incomplete beta function: `½·I_{df/(df+t²)}(df/2, ½)` for t ≥ 0.
pub fn student_t_sf(t: f64, df: f64) -> f64 {
    if t.is_nan() || df.is_nan() || df <= 0.0 {
        return f64::NAN;
    }
    let tail = 0.5 * incomplete_beta(df / (df + t * t), df / 2.0, 0.5);
    if t >= 0.0 {
        tail
    } else {
        1.0 - tail
    }
}

/// ln Γ(x) for x > 0 (Lanczos, g = 7, 9 terms; ≈ 1e-15 relative).
fn ln_gamma(x: f64) -> f64 {
    const G: [f64; 9] = [
        0.999_999_999_999_809_9,
        676.520_368_121_885_1,
        -1_259.139_216_722_402_8,
        771.323_428_777_653_1,
        -176.615_029_162_140_6,
        12.507_343_278_686_905,
        -0.138_571_095_265_720_12,
        9.984_369_578_019_572e-6,
        1.505_632_735_149_311_6e-7,
    ];
    if x < 0.5 {
        // Reflection: Γ(x)Γ(1−x) = π / sin(πx).
        let pi = std::f64::consts::PI;
        return (pi / (pi * x).sin()).ln() - ln_gamma(1.0 - x);
    }
    let x = x - 1.0;
    let mut a = G[0];
    let t = x + 7.5;
    for (i, &g) in G.iter().enumerate().skip(1) {
        a += g / (x + i as f64);
    }
    0.5 * (2.0 * std::f64::consts::PI).ln() + (x + 0.5) * t.ln() - t + a.ln()
}

/// The regularized incomplete beta `I_x(a, b)` by its continued fraction
/// (modified Lentz), using the symmetry `I_x(a,b) = 1 − I_{1−x}(b,a)` where
/// the fraction converges slowly.
fn incomplete_beta(x: f64, a: f64, b: f64) -> f64 {
    if x <= 0.0 {
        return 0.0;
    }
    if x >= 1.0 {
        return 1.0;
    }
    let front =
        (ln_gamma(a + b) - ln_gamma(a) - ln_gamma(b) + a * x.ln() + b * (1.0 - x).ln()).exp();
    if x < (a + 1.0) / (a + b + 2.0) {
        front * beta_fraction(x, a, b) / a
    } else {
        1.0 - front * beta_fraction(1.0 - x, b, a) / b
    }
}

fn beta_fraction(x: f64, a: f64, b: f64) -> f64 {
    const TINY: f64 = 1e-300;
    let mut c = 1.0;
    let mut d = 1.0 - (a + b) * x / (a + 1.0);
    if d.abs() < TINY {
        d = TINY;
    }
    d = 1.0 / d;
    let mut h = d;
    for m in 1..500 {
        let m = m as f64;
        for num in [
            m * (b - m) * x / ((a + 2.0 * m - 1.0) * (a + 2.0 * m)),
            -(a + m) * (a + b + m) * x / ((a + 2.0 * m) * (a + 2.0 * m + 1.0)),
        ] {
            d = 1.0 + num * d;
            if d.abs() < TINY {
                d = TINY;
            }
            c = 1.0 + num / c;
            if c.abs() < TINY {
                c = TINY;
            }
            d = 1.0 / d;
            h *= d * c;
        }
        if (d * c - 1.0).abs() < 1e-15 {
            break;
        }
    }
    h
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn t_tail_matches_closed_forms_and_tables() {
        // df = 1 (Cauchy): P(T > t) = ½ − atan(t)/π.
        for t in [0.0f64, 0.3, 1.0, 2.5, 10.0] {
            let want = 0.5 - f64::atan(t) / std::f64::consts::PI;
            assert!((student_t_sf(t, 1.0) - want).abs() < 1e-12, "df 1, t {t}");
        }
        // df = 2: P(T > t) = ½ − t / (2·√(2 + t²)).
        for t in [0.1f64, 1.0, 4.0] {
            let want = 0.5 - t / (2.0 * (2.0 + t * t).sqrt());
            assert!((student_t_sf(t, 2.0) - want).abs() < 1e-12, "df 2, t {t}");
        }
        // Table critical values (two-sided): t(0.05, 4) = 2.776445,
        // t(0.01, 4) = 4.604095, t(0.05, 9) = 2.262157.
        for (t, df, p) in [
            (2.776445, 4.0, 0.05),
            (4.604095, 4.0, 0.01),
            (2.262157, 9.0, 0.05),
        ] {
            assert!(
                (2.0 * student_t_sf(t, df) - p).abs() < 1e-6,
                "t {t} df {df}"
            );
        }
        assert!((student_t_sf(-1.0, 1.0) - 0.75).abs() < 1e-12);
    }

    #[test]
    fn paired_test_on_a_textbook_example() {
        // Differences 1, 2, 3, 4, 5: mean 3, sd √2.5, t = 3/(√2.5/√5) = 4.2426, df 4,
        // two-sided p = 0.0132356 (scipy.stats.ttest_rel).
        let a = [2.0, 4.0, 6.0, 8.0, 10.0];
        let b = [1.0, 2.0, 3.0, 4.0, 5.0];
        let r = paired_t_test(&a, &b).unwrap();
        assert!((r.t - 4.242_640_687).abs() < 1e-8);
        assert!((r.p_value - 0.013_235_6).abs() < 1e-6, "{}", r.p_value);
        let z = paired_t_test(&b, &b).unwrap();
        assert_eq!(z.p_value, 1.0);
        assert!(paired_t_test(&a, &b[..4]).is_err());
        assert!(paired_t_test(&a[..1], &b[..1]).is_err());
    }

    #[test]
    fn sign_test_is_binomial() {
        // 1 of 6 against: 2·(1 + 6)/64.
        let a = [1.0, 1.0, 1.0, 1.0, 1.0, 0.0, 0.5];
        let b = [0.0, 0.0, 0.0, 0.0, 0.0, 1.0, 0.5];
        assert!((sign_test(&a, &b).unwrap() - 14.0 / 64.0).abs() < 1e-15);
        assert_eq!(sign_test(&b, &b).unwrap(), 1.0);
    }
}
