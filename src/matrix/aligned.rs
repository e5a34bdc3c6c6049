//! Buffers the kernels read a register at a time, on 64-byte boundaries.
//!
//! A `Vec` of a few hundred KiB or more comes from `mmap` 16 bytes past a
//! page boundary, so every 64-byte load of it straddles two cache lines.
//! On a Zen 5 the dense kernel on such a copy of a 384 × 384 matrix ran at
//! 0.76–0.80× the same kernel on an aligned one at batch 1–2 (issue #20).
//! Stored f32 values, the panels, decoded copies and spread copies are
//! therefore [`Aligned`].

use aligned_vec::{AVec, ConstAlign};

/// One cache line (and one AVX-512 register).
pub(crate) const LINE: usize = 64;

/// A vector whose first element starts a cache line.
pub(crate) type Aligned<T> = AVec<T, ConstAlign<LINE>>;

/// `len` copies of `value`, aligned. (Written by a plain loop over the
/// allocation: `AVec`'s iterator and `resize` paths write one element and
/// length at a time, 10 % of a small product's time.)
pub(crate) fn filled<T: Copy>(value: T, len: usize) -> Aligned<T> {
    let mut v: Aligned<T> = AVec::with_capacity(LINE, len);
    let p = v.as_mut_ptr();
    for i in 0..len {
        // SAFETY: `i < len ≤ capacity`; `T: Copy` has no drop to skip.
        unsafe { p.add(i).write(value) };
    }
    // SAFETY: the first `len` elements were written above.
    unsafe { v.set_len(len) };
    v
}

/// A copy of `v`, aligned.
pub(crate) fn from_slice<T: Clone>(v: &[T]) -> Aligned<T> {
    AVec::from_slice(LINE, v)
}

/// Whether `v` starts a cache line.
pub(crate) fn starts_line<T>(v: &[T]) -> bool {
    (v.as_ptr() as usize).is_multiple_of(LINE)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn starts_a_line_at_every_size() {
        for len in [0, 1, 17, 100_000, 300_000] {
            let v = filled(1.5f32, len);
            assert_eq!(v.len(), len);
            assert!(v.iter().all(|&x| x == 1.5));
            if len > 0 {
                assert_eq!(v.as_ptr() as usize % LINE, 0, "len {len}");
            }
        }
        let v = from_slice(&vec![2.0f32; 300_001]);
        assert_eq!((v.len(), v.as_ptr() as usize % LINE), (300_001, 0));
    }

    /// A dense matrix's stored values, which the kernels read 16 at a time.
    #[test]
    fn stored_f32_values_start_a_line() {
        use crate::matrix::{CompressedMatrix, Values};
        let w = ndarray::Array2::from_shape_fn((384, 384), |(i, j)| (i + j) as f32);
        let m = CompressedMatrix::from_dense(w.view()).unwrap();
        let Some(Values::F32(v)) = m.values() else {
            panic!("dense f32 values")
        };
        assert_eq!(v.data().as_ptr() as usize % LINE, 0);
        assert_eq!(v.data(), w.as_slice().unwrap());
    }
}
