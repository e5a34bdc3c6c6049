//! AVX-512 inner loops (x86-64 only; callers check the CPU at run time).
//!
//! Every function here has a portable twin in `portable.rs` computing the
//! same sums (in a different order); both are tested against the reference.

use std::arch::x86_64::*;

use super::portable::ColIndex;

/// Loads 16 column indices as i32 lanes.
///
/// # Safety
/// `p..p+16` must be readable; AVX-512F must be available.
pub(super) trait Lanes: ColIndex {
    /// Loads 16 indices from `p` as i32 lanes.
    ///
    /// # Safety
    /// `p..p+16` must be readable; AVX-512F must be available.
    unsafe fn load16(p: *const Self) -> __m512i;
}

impl Lanes for u16 {
    /// # Safety
    /// As [`Lanes::load16`].
    #[inline]
    #[target_feature(enable = "avx512f")]
    unsafe fn load16(p: *const u16) -> __m512i {
        // SAFETY: `p..p+16` is readable (the caller's contract).
        _mm512_cvtepu16_epi32(unsafe { _mm256_loadu_si256(p as *const __m256i) })
    }
}

impl Lanes for u32 {
    /// # Safety
    /// As [`Lanes::load16`].
    #[inline]
    #[target_feature(enable = "avx512f")]
    unsafe fn load16(p: *const u32) -> __m512i {
        // SAFETY: `p..p+16` is readable (the caller's contract).
        unsafe { _mm512_loadu_si512(p as *const __m512i) }
    }
}

#[inline]
fn tail_mask(rem: usize) -> __mmask16 {
    if rem >= 16 {
        0xffff
    } else {
        ((1u32 << rem) - 1) as __mmask16
    }
}

/// `Σ_k vals[k] · x[idx[k]]` with 16-lane gathers.
///
/// # Safety
/// AVX-512F must be available; every index must be below `x.len()` and
/// below 2^31; `idx.len() == vals.len()`.
#[target_feature(enable = "avx512f")]
pub(super) unsafe fn gather_dot<I: Lanes>(idx: &[I], vals: &[f32], x: &[f32]) -> f32 {
    // SAFETY: the caller upholds this function's `# Safety` contract.
    unsafe {
        debug_assert_eq!(idx.len(), vals.len());
        let n = idx.len();
        let (ip, vp, xp) = (idx.as_ptr(), vals.as_ptr(), x.as_ptr());
        let mut a0 = _mm512_setzero_ps();
        let mut a1 = _mm512_setzero_ps();
        let mut k = 0;
        while k + 32 <= n {
            let g0 = _mm512_i32gather_ps::<4>(I::load16(ip.add(k)), xp);
            let g1 = _mm512_i32gather_ps::<4>(I::load16(ip.add(k + 16)), xp);
            a0 = _mm512_fmadd_ps(_mm512_loadu_ps(vp.add(k)), g0, a0);
            a1 = _mm512_fmadd_ps(_mm512_loadu_ps(vp.add(k + 16)), g1, a1);
            k += 32;
        }
        while k < n {
            let rem = n - k;
            let m = tail_mask(rem);
            // Pad the index tail with zeros (a valid index) to load 16 lanes.
            let mut buf = [I::ZERO; 16];
            buf[..rem.min(16)].copy_from_slice(&idx[k..k + rem.min(16)]);
            let g =
                _mm512_mask_i32gather_ps::<4>(_mm512_setzero_ps(), m, I::load16(buf.as_ptr()), xp);
            a0 = _mm512_fmadd_ps(_mm512_maskz_loadu_ps(m, vp.add(k)), g, a0);
            k += 16;
        }
        _mm512_reduce_add_ps(_mm512_add_ps(a0, a1))
    }
}

/// `out[b] = Σ_k vals[k] · xt[idx[k]·stride + b]` for `b < out.len() ≤ 32`,
/// where `xt` is the batch transposed (`[cols, stride]`) and already offset
/// to the batch tile. Four stored values at a time, each into its own
/// accumulators, so the FMA latency is hidden; a tile of up to 16 lanes
/// (small batches) loads one register per value, not two.
///
/// # Safety
/// AVX-512F must be available; `xt[idx·stride + b]` must be readable for
/// every index and `b < out.len()`.
#[target_feature(enable = "avx512f")]
pub(super) unsafe fn scatter_tile<I: Lanes>(
    idx: &[I],
    vals: &[f32],
    xt: *const f32,
    stride: usize,
    out: &mut [f32],
) {
    // SAFETY: the caller upholds this function's `# Safety` contract.
    unsafe {
        let w = out.len();
        debug_assert!(w <= 32);
        let m0 = tail_mask(w);
        let m1 = tail_mask(w.saturating_sub(16));
        let n = idx.len();
        let o = out.as_mut_ptr();
        let row = |k: usize| xt.add(idx.get_unchecked(k).at() * stride);
        let val = |k: usize| _mm512_set1_ps(*vals.get_unchecked(k));
        let mut a = [_mm512_setzero_ps(); 4];
        let mut k = 0;
        if w <= 16 {
            while k + 4 <= n {
                for (u, acc) in a.iter_mut().enumerate() {
                    *acc = _mm512_fmadd_ps(val(k + u), _mm512_maskz_loadu_ps(m0, row(k + u)), *acc);
                }
                k += 4;
            }
            while k < n {
                a[0] = _mm512_fmadd_ps(val(k), _mm512_maskz_loadu_ps(m0, row(k)), a[0]);
                k += 1;
            }
            let s = _mm512_add_ps(_mm512_add_ps(a[0], a[1]), _mm512_add_ps(a[2], a[3]));
            _mm512_mask_storeu_ps(o, m0, s);
            return;
        }
        let mut b = [_mm512_setzero_ps(); 4];
        while k + 4 <= n {
            for u in 0..4 {
                let (v, p) = (val(k + u), row(k + u));
                a[u] = _mm512_fmadd_ps(v, _mm512_loadu_ps(p), a[u]);
                b[u] = _mm512_fmadd_ps(v, _mm512_maskz_loadu_ps(m1, p.add(16)), b[u]);
            }
            k += 4;
        }
        while k < n {
            let (v, p) = (val(k), row(k));
            a[0] = _mm512_fmadd_ps(v, _mm512_loadu_ps(p), a[0]);
            b[0] = _mm512_fmadd_ps(v, _mm512_maskz_loadu_ps(m1, p.add(16)), b[0]);
            k += 1;
        }
        let sa = _mm512_add_ps(_mm512_add_ps(a[0], a[1]), _mm512_add_ps(a[2], a[3]));
        let sb = _mm512_add_ps(_mm512_add_ps(b[0], b[1]), _mm512_add_ps(b[2], b[3]));
        _mm512_storeu_ps(o, sa);
        _mm512_mask_storeu_ps(o.add(16), m1, sb);
    }
}

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

/// `Σ_k book[code[start + k]] · x[idx[k]]`: [`gather_dot`] on codebook
/// values decoded in registers (batch 1 of CSR × codebook).
///
/// # Safety
/// As [`gather_dot`] and [`lookup16`]; `idx` holds the row's columns,
/// whose codes start at index `start` of `bytes`.
#[target_feature(enable = "avx512f")]
pub(super) unsafe fn codebook_dot<I: Lanes>(
    idx: &[I],
    bytes: &[u8],
    width: usize,
    start: usize,
    book: &[f32],
    x: &[f32],
) -> f32 {
    // SAFETY: the caller upholds this function's `# Safety` contract.
    unsafe {
        let d = Decoder::new(bytes, width, book);
        let (n, ip, xp) = (idx.len(), idx.as_ptr(), x.as_ptr());
        let mut acc = [_mm512_setzero_ps(); 2];
        let mut k = 0;
        while k + 16 <= n {
            let v = d.values_or_slow(start + k, 16);
            let g = _mm512_i32gather_ps::<4>(I::load16(ip.add(k)), xp);
            acc[(k / 16) % 2] = _mm512_fmadd_ps(v, g, acc[(k / 16) % 2]);
            k += 16;
        }
        if k < n {
            let rem = n - k;
            let m = tail_mask(rem);
            // Pad the index tail with zeros (a valid index) to load 16 lanes.
            let mut buf = [I::ZERO; 16];
            buf[..rem].copy_from_slice(&idx[k..]);
            let v = _mm512_maskz_mov_ps(m, d.values_or_slow(start + k, rem));
            let g =
                _mm512_mask_i32gather_ps::<4>(_mm512_setzero_ps(), m, I::load16(buf.as_ptr()), xp);
            acc[(k / 16) % 2] = _mm512_fmadd_ps(v, g, acc[(k / 16) % 2]);
        }
        _mm512_reduce_add_ps(_mm512_add_ps(acc[0], acc[1]))
    }
}
