//! The transposes around the row-block kernels: a batch of inputs to `xᵀ`
//! (the sparse kernels read one column of the batch a load) and `yᵀ`,
//! built a weight row at a time, back to `y`.
//!
//! On AVX-512, 16 × 16 blocks go through registers (16 loads, 64
//! shuffles, 16 stores; masked at the edges); other CPUs use plain loops.
//! Both move the same values. At CSR 384 × 384, batch 16, the strided
//! iterators this replaces took longer than the sparse product itself.

use ndarray::{Array2, ArrayView2};

/// `out[j·stride + i] = a[i·cols + j]` for `a` `[rows, cols]` row-major
/// (`stride ≥ rows`; what `out` holds between the rows is left as it is).
///
/// # Panics
/// When `a` holds fewer than `rows · cols` values or `out` fewer than
/// `(cols − 1)·stride + rows`.
pub(crate) fn transpose(a: &[f32], (rows, cols): (usize, usize), out: &mut [f32], stride: usize) {
    if rows == 0 || cols == 0 {
        return;
    }
    assert!(stride >= rows && a.len() >= rows * cols && out.len() >= (cols - 1) * stride + rows);
    // SAFETY: `out` holds every element written (checked above).
    unsafe { transpose_to(a, (rows, cols), out.as_mut_ptr(), stride) }
}

/// [`transpose`] into memory that other threads may be writing between the
/// rows (the columns of other tasks' blocks of `y`).
///
/// # Safety
/// `a` holds `rows · cols` values; `out` is valid for writes of
/// `out[j·stride + i]` for `i < rows`, `j < cols`, which no one else reads
/// or writes meanwhile; `stride ≥ rows`.
pub(crate) unsafe fn transpose_to(
    a: &[f32],
    (rows, cols): (usize, usize),
    out: *mut f32,
    stride: usize,
) {
    if rows == 0 || cols == 0 {
        return;
    }
    debug_assert!(stride >= rows && a.len() >= rows * cols);
    #[cfg(target_arch = "x86_64")]
    if std::arch::is_x86_feature_detected!("avx512f") {
        // SAFETY: AVX-512F was detected; the caller's contract.
        unsafe { blocks_avx512(a, (rows, cols), out, stride) };
        return;
    }
    // SAFETY: the caller's contract.
    unsafe { plain(a, (rows, cols), out, stride) };
}

/// `aᵀ`, owned, in standard layout.
pub(crate) fn transposed(a: ArrayView2<f32>) -> Array2<f32> {
    let a = a.as_standard_layout();
    transposed_slice(a.as_slice().expect("standard layout"), a.dim())
}

/// `aᵀ` `[cols, rows]` for `a` `[rows, cols]` row-major, taking `a`'s
/// buffer as it is when one side is 1 (the kernels' `yᵀ` at batch 1).
pub(crate) fn transposed_vec(a: Vec<f32>, (rows, cols): (usize, usize)) -> Array2<f32> {
    if rows == 1 || cols == 1 {
        return Array2::from_shape_vec((cols, rows), a).expect("one row or column");
    }
    transposed_slice(&a, (rows, cols))
}

/// `aᵀ` `[cols, rows]` for `a` `[rows, cols]` row-major, in a new buffer.
fn transposed_slice(a: &[f32], (rows, cols): (usize, usize)) -> Array2<f32> {
    let mut out = vec![0.0f32; rows * cols];
    transpose(a, (rows, cols), &mut out, rows);
    Array2::from_shape_vec((cols, rows), out).expect("sizes match")
}

/// [`transpose`] by loops (CPUs without AVX-512): over the short side when
/// it is at most 8 long, else in blocks of 16 × 16 so that `out`'s lines
/// are filled while in cache.
///
/// # Safety
/// As [`transpose_to`].
unsafe fn plain(a: &[f32], (rows, cols): (usize, usize), out: *mut f32, stride: usize) {
    const B: usize = 16;
    // SAFETY: every `(i, j)` written has `i < rows`, `j < cols` (the
    // caller's contract).
    let put = |i: usize, j: usize, v: f32| unsafe { out.add(j * stride + i).write(v) };
    if rows <= 8 {
        for (i, row) in a.chunks_exact(cols).take(rows).enumerate() {
            for (j, &v) in row.iter().enumerate() {
                put(i, j, v);
            }
        }
        return;
    }
    if cols <= 8 {
        for j in 0..cols {
            for i in 0..rows {
                put(i, j, a[i * cols + j]);
            }
        }
        return;
    }
    for i0 in (0..rows).step_by(B) {
        let i1 = (i0 + B).min(rows);
        for j0 in (0..cols).step_by(B) {
            for j in j0..(j0 + B).min(cols) {
                for i in i0..i1 {
                    put(i, j, a[i * cols + j]);
                }
            }
        }
    }
}

/// [`transpose`] in blocks of 16 × 16 through registers; blocks at the
/// edges (and whole matrices with a side below 16, such as a batch of 4
/// inputs) with masked loads and stores: a plain loop moved the 300 × 4
/// transposes of a CSR product at 100 × 300, batch 4, in a quarter of its
/// time.
///
/// # Safety
/// AVX-512F is available; as [`transpose_to`].
#[cfg(target_arch = "x86_64")]
#[target_feature(enable = "avx512f")]
unsafe fn blocks_avx512(a: &[f32], (rows, cols): (usize, usize), out: *mut f32, stride: usize) {
    use std::arch::x86_64::*;
    let (ap, op) = (a.as_ptr(), out);
    let mask = |n: usize| -> __mmask16 {
        if n >= 16 {
            !0
        } else {
            (1u16 << n) - 1
        }
    };
    for i0 in (0..rows).step_by(16) {
        let (nr, rmask) = ((rows - i0).min(16), mask(rows - i0));
        for j0 in (0..cols).step_by(16) {
            let (nc, cmask) = ((cols - j0).min(16), mask(cols - j0));
            // SAFETY: rows i0..i0 + nr and columns j0..j0 + nc lie in `a`
            // and, transposed, in `out` (the caller's checked sizes); the
            // masks keep every access to them.
            unsafe {
                let r: [__m512; 16] = std::array::from_fn(|k| {
                    if k < nr {
                        _mm512_maskz_loadu_ps(cmask, ap.add((i0 + k) * cols + j0))
                    } else {
                        _mm512_setzero_ps()
                    }
                });
                // Per 128-bit lane L: t[2k] = rows 2k, 2k + 1 at columns
                // 4L, 4L + 1 interleaved; t[2k + 1] at 4L + 2, 4L + 3.
                let t: [__m512; 16] = std::array::from_fn(|k| {
                    if k % 2 == 0 {
                        _mm512_unpacklo_ps(r[k], r[k + 1])
                    } else {
                        _mm512_unpackhi_ps(r[k - 1], r[k])
                    }
                });
                // u[4g + c], lane L: rows 4g..4g + 4 at column 4L + c.
                let pd = _mm512_castps_pd;
                let u: [__m512; 16] = std::array::from_fn(|k| {
                    let (g, c) = (k / 4, k % 4);
                    let (x, y) = (pd(t[4 * g + c / 2]), pd(t[4 * g + 2 + c / 2]));
                    _mm512_castpd_ps(if c % 2 == 0 {
                        _mm512_unpacklo_pd(x, y)
                    } else {
                        _mm512_unpackhi_pd(x, y)
                    })
                });
                // Column 4L + c: lane L of u[c], u[4 + c], u[8 + c], u[12 + c].
                for c in 0..4 {
                    let v0 = _mm512_shuffle_f32x4::<0b01_00_01_00>(u[c], u[4 + c]);
                    let v1 = _mm512_shuffle_f32x4::<0b11_10_11_10>(u[c], u[4 + c]);
                    let v2 = _mm512_shuffle_f32x4::<0b01_00_01_00>(u[8 + c], u[12 + c]);
                    let v3 = _mm512_shuffle_f32x4::<0b11_10_11_10>(u[8 + c], u[12 + c]);
                    let col = [
                        _mm512_shuffle_f32x4::<0b10_00_10_00>(v0, v2),
                        _mm512_shuffle_f32x4::<0b11_01_11_01>(v0, v2),
                        _mm512_shuffle_f32x4::<0b10_00_10_00>(v1, v3),
                        _mm512_shuffle_f32x4::<0b11_01_11_01>(v1, v3),
                    ];
                    for (l, v) in col.into_iter().enumerate() {
                        if 4 * l + c < nc {
                            let o = op.add((j0 + 4 * l + c) * stride + i0);
                            _mm512_mask_storeu_ps(o, rmask, v);
                        }
                    }
                }
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Every shape class (below, at and around 16, short sides of at most
    /// 8) and padded strides, against the definition; padding untouched.
    #[test]
    fn matches_the_definition() {
        for (rows, cols) in [
            (1, 5),
            (3, 40),
            (4, 300),
            (300, 4),
            (2, 17),
            (8, 9),
            (9, 8),
            (16, 16),
            (17, 33),
            (32, 16),
            (40, 70),
            (100, 300),
            (384, 16),
        ] {
            for pad in [0, 3, 16] {
                let stride = rows + pad;
                let a: Vec<f32> = (0..rows * cols).map(|k| k as f32 + 0.5).collect();
                // The dispatched path (AVX-512 where there is one), and the
                // plain loops that other CPUs take.
                let mut fast = vec![-1.0f32; cols * stride];
                transpose(&a, (rows, cols), &mut fast, stride);
                let mut slow = vec![-1.0f32; cols * stride];
                // SAFETY: `slow` holds `cols · stride` values.
                unsafe { plain(&a, (rows, cols), slow.as_mut_ptr(), stride) };
                for out in [&fast, &slow] {
                    for j in 0..cols {
                        for k in 0..stride {
                            let want = if k < rows { a[k * cols + j] } else { -1.0 };
                            assert_eq!(out[j * stride + k], want, "{rows}x{cols}+{pad} at {j},{k}");
                        }
                    }
                }
            }
        }
    }
}
