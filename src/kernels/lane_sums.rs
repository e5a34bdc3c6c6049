//! Sixteen accumulators' lane sums at once, with the bits of sixteen
//! `_mm512_reduce_add_ps` calls.
//!
//! `_mm512_reduce_add_ps` sums a register's lanes by a fixed tree: lane `l`
//! with `l + 8`, then `l + 4`, `l + 2`, `l + 1` (the portable kernels' tree,
//! see [`tile`](super::tile)). Reducing a register block's accumulators one
//! at a time costs about eight instructions each; the transposed network
//! here adds the same pairs (f32 addition is commutative, so only the
//! pairing sets the bits) for sixteen of them in 15 additions and 30
//! shuffles. On short rows the reductions are a fifth of a register
//! block's work (2:4 rows of 384 columns).

#[cfg(target_arch = "x86_64")]
use std::arch::x86_64::*;

/// `out[i] = _mm512_reduce_add_ps(v[i])`, bit for bit.
///
/// # Safety
/// AVX-512F is available; inlined into a caller with the feature.
#[cfg(all(test, target_arch = "x86_64"))]
#[inline(always)]
pub(crate) unsafe fn lane_sums16(v: [__m512; 16]) -> [f32; 16] {
    // SAFETY: AVX-512F (the contract).
    unsafe {
        let mut e = [0.0f32; 16];
        _mm512_storeu_ps(e.as_mut_ptr(), lane_sums16_packed(v));
        std::array::from_fn(|i| e[4 * (i % 4) + i / 4])
    }
}

/// [`lane_sums16`] as one register: element `4L + m` holds accumulator
/// `4m + L`'s sum.
///
/// # Safety
/// AVX-512F is available; inlined into a caller with the feature.
#[cfg(target_arch = "x86_64")]
#[inline(always)]
unsafe fn lane_sums16_packed(v: [__m512; 16]) -> __m512 {
    // SAFETY: AVX-512F (the contract).
    unsafe {
        // Lane l + lane l + 8, two accumulators per register: 128-bit lanes
        // [a₀ + a₂, a₁ + a₃, b₀ + b₂, b₁ + b₃].
        let t: [__m512; 8] = std::array::from_fn(|i| {
            let (a, b) = (v[2 * i], v[2 * i + 1]);
            _mm512_add_ps(
                _mm512_shuffle_f32x4::<0x44>(a, b),
                _mm512_shuffle_f32x4::<0xEE>(a, b),
            )
        });
        // + lane l + 4: four accumulators, one per 128-bit lane.
        let q: [__m512; 4] = std::array::from_fn(|j| {
            let (a, b) = (t[2 * j], t[2 * j + 1]);
            _mm512_add_ps(
                _mm512_shuffle_f32x4::<0x88>(a, b),
                _mm512_shuffle_f32x4::<0xDD>(a, b),
            )
        });
        // + lane l + 2: in 128-bit lane L, [xₗ, xₗ, yₗ, yₗ] partial pairs of
        // accumulators 8k + L (x) and 8k + 4 + L (y).
        let r: [__m512; 2] = std::array::from_fn(|k| {
            let (a, b) = (q[2 * k], q[2 * k + 1]);
            _mm512_add_ps(
                _mm512_shuffle_ps::<0x44>(a, b),
                _mm512_shuffle_ps::<0xEE>(a, b),
            )
        });
        // + lane l + 1: element 4L + m is accumulator 4m + L's sum.
        _mm512_add_ps(
            _mm512_shuffle_ps::<0x88>(r[0], r[1]),
            _mm512_shuffle_ps::<0xDD>(r[0], r[1]),
        )
    }
}

/// `res[r][c] = _mm512_reduce_add_ps(acc[r][c])` bit for bit for a register
/// block, times `scales[r]` where given (one rounding more, as a multiply
/// after the sum): a full block of sixteen through `lane_sums16`'s network
/// (the scales in one multiply of its register), others one register at a
/// time.
///
/// # Safety
/// AVX-512F is available; inlined into a caller with the feature.
#[cfg(target_arch = "x86_64")]
#[inline(always)]
pub(crate) unsafe fn reduce_block<const RR: usize, const CC: usize>(
    acc: &[[__m512; CC]; RR],
    res: &mut [[f32; CC]; RR],
    scales: Option<[f32; RR]>,
) {
    // SAFETY: AVX-512F (the contract).
    unsafe {
        if RR * CC == 16 {
            let mut s = lane_sums16_packed(std::array::from_fn(|i| acc[i / CC][i % CC]));
            if let Some(sc) = scales {
                // Element 4L + m is accumulator i = 4m + L, row i / CC.
                let mut f = [0.0f32; 16];
                for (e, f) in f.iter_mut().enumerate() {
                    *f = sc[(4 * (e % 4) + e / 4) / CC];
                }
                s = _mm512_mul_ps(s, _mm512_loadu_ps(f.as_ptr()));
            }
            let mut e = [0.0f32; 16];
            _mm512_storeu_ps(e.as_mut_ptr(), s);
            for (r, res) in res.iter_mut().enumerate() {
                for (c, res) in res.iter_mut().enumerate() {
                    let i = r * CC + c;
                    *res = e[4 * (i % 4) + i / 4];
                }
            }
        } else {
            for (r, (acc, res)) in acc.iter().zip(res.iter_mut()).enumerate() {
                for (&a, res) in acc.iter().zip(res.iter_mut()) {
                    let v = _mm512_reduce_add_ps(a);
                    *res = match scales {
                        Some(sc) => v * sc[r],
                        None => v,
                    };
                }
            }
        }
    }
}

#[cfg(all(test, target_arch = "x86_64"))]
mod tests {
    use super::*;

    /// Values of very different magnitudes, so that any other pairing of
    /// the additions rounds differently.
    #[test]
    fn equals_sixteen_reductions_bit_for_bit() {
        if !std::arch::is_x86_feature_detected!("avx512f") {
            return;
        }
        let mut s = 0x9E37_79B9_7F4A_7C15u64;
        for _ in 0..200 {
            let vals: Vec<f32> = (0..256)
                .map(|_| {
                    s ^= s << 13;
                    s ^= s >> 7;
                    s ^= s << 17;
                    let m = (s >> 40) as f32 / (1u64 << 24) as f32 - 0.5;
                    m * 2f32.powi((s % 40) as i32 - 20)
                })
                .collect();
            // SAFETY: AVX-512F was detected.
            unsafe {
                let v: [__m512; 16] =
                    std::array::from_fn(|i| _mm512_loadu_ps(vals[16 * i..].as_ptr()));
                let want: [u32; 16] = std::array::from_fn(|i| _mm512_reduce_add_ps(v[i]).to_bits());
                let got = check(v).map(f32::to_bits);
                assert_eq!(got, want);
            }
        }
    }

    #[target_feature(enable = "avx512f")]
    fn check(v: [__m512; 16]) -> [f32; 16] {
        // SAFETY: this function's feature.
        unsafe { lane_sums16(v) }
    }
}
