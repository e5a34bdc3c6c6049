//! AVX-512 inner loops (x86-64 only; callers check the CPU at run time).
//!
//! Every function here has a portable twin in `portable.rs` computing the
//! same sums (in a different order); both are tested against the reference.

use std::arch::x86_64::*;
use std::ops::Range;

use super::portable::{index, load, ColIndex};

#[inline]
fn tail_mask(rem: usize) -> __mmask16 {
    if rem >= 16 {
        0xffff
    } else {
        ((1u32 << rem) - 1) as __mmask16
    }
}

/// The outputs of the stored rows `rows` of a CSR-like matrix (row `i`'s
/// values and columns at `row_ptr[i]..row_ptr[i + 1]`), `batch` outputs a
/// row, in one call (at 40 stored values a row, per-row overhead is a good
/// part of the work):
///
/// * batch 1: `out[i] = Σ_k vals[k] · x[idx[k]]`, `x` the input vector:
///   indexed scalar loads and fused multiply-adds into eight accumulators
///   (`k mod 8`), summed by a fixed tree. Scalar on purpose: a 16-lane
///   gather costs this CPU (Zen 4) about 45 cycles where 16 scalar loads
///   take about 6 (384 × 384 with 10 % kept: 15 µs gathered, 7 µs here;
///   dense 10 µs).
/// * larger batches: `x` is `xᵀ` padded to `stride` lanes (4, 8, or a
///   multiple of 16), and each stored value adds `v · xᵀ[idx]` to one of
///   eight lane vectors (`k mod 8`) per tile of 4, 8 or 16 lanes, summed by
///   the same tree lane by lane: **each output has the bits of batch 1, at
///   every batch size** (data-parallel shards and micro-batches give the
///   bits of the whole batch).
///
/// # Safety
/// AVX-512 F/VL and FMA must be available; `row_ptr` holds `rows.end + 1`
/// offsets; `idx` and `vals` hold exactly the stored values of `rows`
/// (from offset `row_ptr[rows.start]` on); every index is below the input's
/// columns and `x` holds them (`stride` lanes each; `stride == 1` at batch
/// 1); `out.len() == rows.len() · batch`.
#[target_feature(enable = "avx512f,avx512vl,fma")]
#[allow(clippy::too_many_arguments)]
pub(super) unsafe fn csr_rows<I: ColIndex>(
    row_ptr: &[u32],
    idx: &[I],
    vals: &[f32],
    rows: Range<usize>,
    x: *const f32,
    stride: usize,
    batch: usize,
    out: &mut [f32],
) {
    debug_assert_eq!(out.len(), rows.len() * batch);
    let n = Stored {
        row_ptr,
        first: row_ptr[rows.start] as usize,
        idx,
        vals,
    };
    // SAFETY: the caller upholds this function's `# Safety` contract.
    unsafe {
        match (batch, stride) {
            (1, _) => {
                for (i, o) in rows.zip(out.iter_mut()) {
                    *o = dot_scalar(n.row(i), x);
                }
            }
            (_, 4) => lanes4(&n, rows, x, stride, batch, out),
            (_, 8) => lanes8(&n, rows, x, stride, batch, out),
            _ => lanes16(&n, rows, x, stride, batch, out),
        }
    }
}

/// A block of a CSR-like matrix's stored rows (`idx` and `vals` start at
/// stored value `first`, the block's first row's).
struct Stored<'a, I> {
    row_ptr: &'a [u32],
    first: usize,
    idx: &'a [I],
    vals: &'a [f32],
}

impl<'a, I: ColIndex> Stored<'a, I> {
    /// Row `i`'s columns and values.
    #[inline(always)]
    fn row(&self, i: usize) -> (&'a [I], &'a [f32]) {
        let (a, e) = (
            self.row_ptr[i] as usize - self.first,
            self.row_ptr[i + 1] as usize - self.first,
        );
        (&self.idx[a..e], &self.vals[a..e])
    }
}

/// Batch 1 of [`csr_rows`] for one row. No features of its own: it is
/// inlined there (with FMA, `mul_add` is one instruction).
///
/// # Safety
/// Every index is below the length of `x`.
#[inline(always)]
unsafe fn dot_scalar<I: ColIndex>((idx, vals): (&[I], &[f32]), x: *const f32) -> f32 {
    let mut acc = [0.0f32; 8];
    let mut k = 0;
    // SAFETY: `k + l < idx.len() == vals.len()` for every read; indices are
    // below the length of `x` (the caller's contract).
    unsafe {
        while k + 8 <= idx.len() {
            for (l, a) in acc.iter_mut().enumerate() {
                let j = index(idx, k + l);
                *a = vals.get_unchecked(k + l).mul_add(load(x.add(j)), *a);
            }
            k += 8;
        }
        for (l, a) in acc.iter_mut().enumerate().take(idx.len() - k) {
            let j = index(idx, k + l);
            *a = vals.get_unchecked(k + l).mul_add(load(x.add(j)), *a);
        }
    }
    ((acc[0] + acc[4]) + (acc[1] + acc[5])) + ((acc[2] + acc[6]) + (acc[3] + acc[7]))
}

/// The lane loops of [`csr_rows`] above batch 1, one per register width:
/// scalar [`dot_scalar`] lane by lane (the same multiply-adds and tree), one
/// tile of lanes at a time.
macro_rules! lanes {
    ($(#[$doc:meta])* $name:ident, $n:literal, $zero:ident, $set1:ident, $load:ident, $fma:ident, $add:ident, $store:ident) => {
        $(#[$doc])*
        ///
        /// # Safety
        /// As [`csr_rows`], with `stride` a multiple of the lanes.
        #[inline(always)]
        unsafe fn $name<I: ColIndex>(
            n: &Stored<I>,
            rows: Range<usize>,
            xt: *const f32,
            stride: usize,
            batch: usize,
            out: &mut [f32],
        ) {
            for (i, o) in rows.zip(out.chunks_exact_mut(batch)) {
                let (idx, vals) = n.row(i);
                for t0 in (0..batch).step_by($n) {
                    // SAFETY: `k + l < idx.len() == vals.len()` for every
                    // read; each index's lanes `t0..t0 + $n` lie in `xt`
                    // (the caller's contract: `stride` a multiple of $n).
                    unsafe {
                        let xt = xt.add(t0);
                        let mut acc = [$zero(); 8];
                        let term = |k: usize, a| {
                            let j = index(idx, k);
                            $fma($set1(*vals.get_unchecked(k)), $load(xt.add(j * stride)), a)
                        };
                        let mut k = 0;
                        while k + 8 <= idx.len() {
                            for (l, a) in acc.iter_mut().enumerate() {
                                *a = term(k + l, *a);
                            }
                            k += 8;
                        }
                        for (l, a) in acc.iter_mut().enumerate().take(idx.len() - k) {
                            *a = term(k + l, *a);
                        }
                        let s = $add(
                            $add($add(acc[0], acc[4]), $add(acc[1], acc[5])),
                            $add($add(acc[2], acc[6]), $add(acc[3], acc[7])),
                        );
                        // Masked: a copy of a few floats was a call to
                        // `memmove` per row.
                        let w = (batch - t0).min($n);
                        $store(o.as_mut_ptr().add(t0), tail_mask(w) as _, s);
                    }
                }
            }
        }
    };
}

lanes!(
    /// Batches 2–4 (`xᵀ` padded to 4 lanes).
    lanes4, 4, _mm_setzero_ps, _mm_set1_ps, _mm_loadu_ps, _mm_fmadd_ps, _mm_add_ps, _mm_mask_storeu_ps
);
lanes!(
    /// Batches 5–8 (`xᵀ` padded to 8 lanes).
    lanes8, 8, _mm256_setzero_ps, _mm256_set1_ps, _mm256_loadu_ps, _mm256_fmadd_ps, _mm256_add_ps,
    _mm256_mask_storeu_ps
);
lanes!(
    /// Batches from 9 (`xᵀ` padded to a multiple of 16 lanes), 16 at a time.
    lanes16, 16, _mm512_setzero_ps, _mm512_set1_ps, _mm512_loadu_ps, _mm512_fmadd_ps,
    _mm512_add_ps, _mm512_mask_storeu_ps
);

/// Dense dot product with four 16-lane accumulators.
///
/// # Safety
/// AVX-512F must be available; `a.len() == b.len()`.
#[target_feature(enable = "avx512f")]
pub(super) unsafe fn dot(a: &[f32], b: &[f32]) -> f32 {
    // SAFETY: the caller upholds this function's `# Safety` contract.
    unsafe {
        debug_assert_eq!(a.len(), b.len());
        let n = a.len();
        let (ap, bp) = (a.as_ptr(), b.as_ptr());
        let mut acc = [_mm512_setzero_ps(); 4];
        let mut k = 0;
        while k + 64 <= n {
            for (l, s) in acc.iter_mut().enumerate() {
                let o = k + 16 * l;
                *s = _mm512_fmadd_ps(_mm512_loadu_ps(ap.add(o)), _mm512_loadu_ps(bp.add(o)), *s);
            }
            k += 64;
        }
        while k < n {
            let m = tail_mask(n - k);
            acc[0] = _mm512_fmadd_ps(
                _mm512_maskz_loadu_ps(m, ap.add(k)),
                _mm512_maskz_loadu_ps(m, bp.add(k)),
                acc[0],
            );
            k += 16;
        }
        _mm512_reduce_add_ps(_mm512_add_ps(
            _mm512_add_ps(acc[0], acc[1]),
            _mm512_add_ps(acc[2], acc[3]),
        ))
    }
}

/// One row of a 2:4 matrix times `x`: 16 stored values cover 32 columns;
/// their 2-bit positions select the matching entries of `x` with one
/// two-register permute, so no gather is needed.
///
/// `vals` holds `cols / 2` values, `pos` the row's `cols / 8` position bytes
/// (LSB-first, 2 bits each), `x` the `cols` inputs; `cols % 32 == 0`.
///
/// # Safety
/// AVX-512F must be available; the lengths must be as stated.
#[target_feature(enable = "avx512f")]
pub(super) unsafe fn dot_2of4(vals: &[f32], pos: &[u8], x: &[f32]) -> f32 {
    // SAFETY: the caller upholds this function's `# Safety` contract.
    unsafe {
        debug_assert_eq!(x.len() % 32, 0);
        debug_assert_eq!(vals.len() * 2, x.len());
        debug_assert_eq!(pos.len() * 8, x.len());
        // Lane t holds value t of the block: group t / 2, position bits 2t..2t+2.
        let shifts = _mm512_setr_epi32(0, 2, 4, 6, 8, 10, 12, 14, 16, 18, 20, 22, 24, 26, 28, 30);
        let bases = _mm512_setr_epi32(0, 0, 4, 4, 8, 8, 12, 12, 16, 16, 20, 20, 24, 24, 28, 28);
        let (vp, pp, xp) = (vals.as_ptr(), pos.as_ptr(), x.as_ptr());
        let mut a0 = _mm512_setzero_ps();
        let mut a1 = _mm512_setzero_ps();
        let blocks = x.len() / 32;
        let mut blk = 0;
        while blk + 2 <= blocks {
            a0 = step_2of4(blk, vp, pp, xp, shifts, bases, a0);
            a1 = step_2of4(blk + 1, vp, pp, xp, shifts, bases, a1);
            blk += 2;
        }
        if blk < blocks {
            a0 = step_2of4(blk, vp, pp, xp, shifts, bases, a0);
        }
        _mm512_reduce_add_ps(_mm512_add_ps(a0, a1))
    }
}

/// One 32-column block of [`dot_2of4`].
///
/// # Safety
/// As [`dot_2of4`], for block `blk`.
#[inline]
#[target_feature(enable = "avx512f")]
unsafe fn step_2of4(
    blk: usize,
    vp: *const f32,
    pp: *const u8,
    xp: *const f32,
    shifts: __m512i,
    bases: __m512i,
    acc: __m512,
) -> __m512 {
    // SAFETY: the caller upholds this function's `# Safety` contract.
    unsafe {
        let bits = (pp.add(blk * 4) as *const u32).read_unaligned();
        let p = _mm512_and_si512(
            _mm512_srlv_epi32(_mm512_set1_epi32(bits as i32), shifts),
            _mm512_set1_epi32(3),
        );
        let xs = _mm512_permutex2var_ps(
            _mm512_loadu_ps(xp.add(blk * 32)),
            _mm512_add_epi32(bases, p),
            _mm512_loadu_ps(xp.add(blk * 32 + 16)),
        );
        _mm512_fmadd_ps(_mm512_loadu_ps(vp.add(blk * 16)), xs, acc)
    }
}

/// Column indices of one 2:4 row (`pos` holds `cols / 8` bytes, `out`
/// `cols / 2` entries, `cols % 32 == 0`): 16 at a time from one u32 of
/// positions.
///
/// # Safety
/// AVX-512F must be available; the lengths must be as stated.
#[target_feature(enable = "avx512f")]
pub(super) unsafe fn columns_2of4(pos: &[u8], out: &mut [u32]) {
    // SAFETY: the caller upholds this function's `# Safety` contract.
    unsafe {
        debug_assert_eq!(pos.len() * 4, out.len());
        let shifts = _mm512_setr_epi32(0, 2, 4, 6, 8, 10, 12, 14, 16, 18, 20, 22, 24, 26, 28, 30);
        let bases = _mm512_setr_epi32(0, 0, 4, 4, 8, 8, 12, 12, 16, 16, 20, 20, 24, 24, 28, 28);
        let (pp, op) = (pos.as_ptr(), out.as_mut_ptr());
        for blk in 0..out.len() / 16 {
            let bits = (pp.add(blk * 4) as *const u32).read_unaligned();
            let p = _mm512_and_si512(
                _mm512_srlv_epi32(_mm512_set1_epi32(bits as i32), shifts),
                _mm512_set1_epi32(3),
            );
            let cols = _mm512_add_epi32(
                _mm512_add_epi32(bases, p),
                _mm512_set1_epi32(blk as i32 * 32),
            );
            _mm512_storeu_si512(op.add(blk * 16) as *mut __m512i, cols);
        }
    }
}

/// Decodes packed codebook indices (`width` ≤ 8 bits, LSB-first) 16 at a
/// time: two 8-byte loads hold 16 indices, variable shifts split them into
/// lanes, and a two-register permute (k ≤ 32) or a gather from the codebook
/// (k ≤ 256) looks them up.
struct Decoder<'a> {
    bytes: &'a [u8],
    width: usize,
    book: &'a [f32],
    steps: __m512i,
    mask: __m512i,
    last: __m512i,
    t0: __m512,
    t1: __m512,
}

impl<'a> Decoder<'a> {
    /// # Safety
    /// AVX-512F must be available; `1 ≤ width ≤ 8`; `book` is non-empty.
    #[inline]
    #[target_feature(enable = "avx512f")]
    unsafe fn new(bytes: &'a [u8], width: usize, book: &'a [f32]) -> Self {
        debug_assert!((1..=8).contains(&width) && !book.is_empty());
        let w = width as i64;
        // The first 32 centroids in two registers, zero-padded (masked loads
        // read nothing past the codebook).
        let kk = book.len().min(32);
        let p = book.as_ptr();
        // SAFETY: masked loads touch only the codebook's `kk` entries.
        let (t0, t1) = unsafe {
            (
                _mm512_maskz_loadu_ps(tail_mask(kk), p),
                _mm512_maskz_loadu_ps(tail_mask(kk.saturating_sub(16)), p.wrapping_add(16)),
            )
        };
        Decoder {
            bytes,
            width,
            book,
            steps: _mm512_setr_epi64(0, w, 2 * w, 3 * w, 4 * w, 5 * w, 6 * w, 7 * w),
            mask: _mm512_set1_epi32((1 << width) - 1),
            // Indices are below k (checked when the values are built);
            // clamping keeps even a malformed one inside the codebook.
            last: _mm512_set1_epi32(book.len() as i32 - 1),
            t0,
            t1,
        }
    }

    /// The values of indices `i..i + 16`, or `None` when their bytes reach
    /// into the last few of the buffer (decode those one by one). Indices
    /// past the caller's range decode whatever follows (the next row's).
    #[inline]
    #[target_feature(enable = "avx512f")]
    fn values(&self, i: usize) -> Option<__m512> {
        let (bit, w) = (i * self.width, self.width);
        let byte = bit / 8;
        // Indices 8..16 start `width` bytes later at the same bit offset.
        let lo = self.bytes.get(byte..byte + 8)?;
        let hi = self.bytes.get(byte + w..byte + w + 8)?;
        let lo = u64::from_le_bytes(lo.try_into().ok()?);
        let hi = u64::from_le_bytes(hi.try_into().ok()?);
        // Offset + 8 fields ≤ 7 + 56 bits for width ≤ 7; width 8 is byte aligned.
        let sh = _mm512_add_epi64(self.steps, _mm512_set1_epi64((bit % 8) as i64));
        let l = _mm512_cvtepi64_epi32(_mm512_srlv_epi64(_mm512_set1_epi64(lo as i64), sh));
        let h = _mm512_cvtepi64_epi32(_mm512_srlv_epi64(_mm512_set1_epi64(hi as i64), sh));
        let idx = _mm512_and_si512(
            _mm512_inserti64x4::<1>(_mm512_castsi256_si512(l), h),
            self.mask,
        );
        Some(if self.book.len() <= 32 {
            _mm512_permutex2var_ps(self.t0, idx, self.t1)
        } else {
            // SAFETY: clamped below `book.len()`.
            unsafe {
                _mm512_i32gather_ps::<4>(_mm512_min_epu32(idx, self.last), self.book.as_ptr())
            }
        })
    }

    /// [`values`](Self::values), falling back to one-by-one decoding (zeros
    /// past `n` lanes).
    #[inline]
    #[target_feature(enable = "avx512f")]
    fn values_or_slow(&self, i: usize, n: usize) -> __m512 {
        match self.values(i) {
            Some(v) => v,
            None => {
                let mut buf = [0.0f32; 16];
                let n = n.min(16);
                super::portable::lookup(self.bytes, self.width, i, self.book, &mut buf[..n]);
                // SAFETY: `buf` holds 16 values.
                unsafe { _mm512_loadu_ps(buf.as_ptr()) }
            }
        }
    }
}

/// Codebook values of packed indices `start..start + out.len()` (`width` ≤ 8
/// bits each, LSB-first in `bytes`), 16 at a time (see [`Decoder`]).
///
/// # Safety
/// AVX-512F must be available; `1 ≤ width ≤ 8`; `book` is non-empty; every
/// index is below `book.len()`.
#[target_feature(enable = "avx512f")]
pub(super) unsafe fn lookup16(
    bytes: &[u8],
    width: usize,
    start: usize,
    book: &[f32],
    out: &mut [f32],
) {
    // SAFETY: the caller upholds this function's `# Safety` contract.
    unsafe {
        let d = Decoder::new(bytes, width, book);
        let (n, op) = (out.len(), out.as_mut_ptr());
        let mut j = 0;
        while j < n {
            let v = d.values_or_slow(start + j, n - j);
            _mm512_mask_storeu_ps(op.add(j), tail_mask(n - j), v);
            j += 16;
        }
    }
}
