//! Branch-free scalar math shared by the layers above (the distillation
//! losses, the transformer runtime): one fast `exp`, written so it compiles
//! to SIMD inside the callers' lane-wise loops; row-wise updates of a
//! matrix as slices.

/// Independent partial results per lane-wise reduction (float sums do not
/// auto-vectorise: addition is not associative).
pub(crate) const LANES: usize = 16;

const LOG2E: f32 = std::f32::consts::LOG2_E;
const LN2_HI: f32 = 0.693_359_4;
const LN2_LO: f32 = -2.121_944_4e-4;
const ROUND: f32 = 12_582_912.0; // 1.5·2²³: adding and subtracting it rounds to an integer

/// `e^x` for `x ≤ 0` (Cephes' range reduction and degree-6 polynomial,
/// ≈ 2 ulp; rounding by the 1.5·2²³ trick; fused multiply-adds, which the
/// callers' AVX2/AVX-512 variants compile to FMA); inputs below −87 (and
/// NaN) give ≈ 1.6e−38 rather than 0.
#[inline(always)]
pub(crate) fn exp_neg(x: f32) -> f32 {
    // Compare-and-select (a NaN becomes −87), so that `n` below is always
    // in range.
    let x = if x >= -87.0 { x } else { -87.0 };
    let x = if x <= 0.0 { x } else { 0.0 };
    let n = (x * LOG2E + ROUND) - ROUND;
    let r = n.mul_add(-LN2_LO, n.mul_add(-LN2_HI, x));
    let mut p = 1.987_569_1e-4f32;
    p = p.mul_add(r, 1.398_2e-3);
    p = p.mul_add(r, 8.333_452e-3);
    p = p.mul_add(r, 4.166_579_6e-2);
    p = p.mul_add(r, 1.666_666_5e-1);
    p = p.mul_add(r, 0.5);
    let y = (p * r).mul_add(r, r) + 1.0;
    // SAFETY: x ∈ [−87, 0], so n ∈ [−126, 0] converts exactly.
    let n = unsafe { n.to_int_unchecked::<i32>() };
    y * f32::from_bits(((n + 127) as u32) << 23)
}

/// `f` on each row of `y` as a slice (contiguous rows: ndarray's row
/// iterators cost about 0.5 ns a value, a plain slice loop vectorizes).
pub(crate) fn for_each_row(y: &mut ndarray::Array2<f32>, mut f: impl FnMut(&mut [f32])) {
    let cols = y.ncols();
    match y.as_slice_mut() {
        Some(s) if cols > 0 => s.chunks_exact_mut(cols).for_each(f),
        Some(_) => {}
        None => {
            for mut r in y.rows_mut() {
                let mut v = r.to_vec();
                f(&mut v);
                r.assign(&ndarray::ArrayView1::from(&v));
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use ndarray::{Array2, ShapeBuilder};

    /// Rows of a standard, a transposed (no contiguous rows) and an empty
    /// matrix all get `f`, written back where they live.
    #[test]
    fn every_row_is_updated_in_place() {
        let base = Array2::from_shape_fn((3, 5), |(i, j)| (10 * i + j) as f32);
        let want = base.mapv(|v| v + 1.0);
        let mut a = base.clone();
        for_each_row(&mut a, |r| r.iter_mut().for_each(|v| *v += 1.0));
        assert_eq!(a, want);
        let mut t = Array2::zeros((3, 5).f());
        t.assign(&base);
        assert!(t.as_slice_mut().is_none());
        for_each_row(&mut t, |r| r.iter_mut().for_each(|v| *v += 1.0));
        assert_eq!(t, want);
        let mut e = Array2::<f32>::zeros((2, 0));
        for_each_row(&mut e, |_| unreachable!("no values"));
    }
}
