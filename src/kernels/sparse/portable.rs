//! Portable inner loops: plain Rust, any CPU. The AVX-512 loops in
//! `avx512.rs` compute the same sums and are tested against the same
//! reference.

/// A CSR column index type (u16 or u32).
pub(super) trait ColIndex: Copy + Send + Sync + 'static {
    /// As usize.
    fn at(self) -> usize;
}

impl ColIndex for u16 {
    #[inline(always)]
    fn at(self) -> usize {
        self as usize
    }
}

impl ColIndex for u32 {
    #[inline(always)]
    fn at(self) -> usize {
        self as usize
    }
}

/// One scalar load the compiler may not merge into a gather (it would:
/// eight loads at indexed addresses look to it like one `vgatherdps`).
///
/// # Safety
/// `p` is valid for reads.
#[inline(always)]
pub(super) unsafe fn load(p: *const f32) -> f32 {
    // SAFETY: the caller's contract.
    unsafe { p.read_volatile() }
}

/// Column index `k` of `idx`, by one scalar load: eight consecutive
/// indices otherwise became a vector load and eight `vpextrd` moves to
/// general registers (two µops each), which bounded the loops of 4 and 8
/// lanes (CSR 384 × 384 at batch 2 on a Zen 5: 0.86 → 0.95–1.07× dense
/// f32).
///
/// # Safety
/// `k < idx.len()`.
#[inline(always)]
pub(super) unsafe fn index<I: ColIndex>(idx: &[I], k: usize) -> usize {
    // SAFETY: the caller's contract.
    unsafe { idx.as_ptr().add(k).read_volatile().at() }
}

/// Eight partial sums folded pairwise: one fixed order.
#[inline]
pub(super) fn fold8(a: [f32; 8]) -> f32 {
    ((a[0] + a[4]) + (a[1] + a[5])) + ((a[2] + a[6]) + (a[3] + a[7]))
}

/// `Σ_k vals[k] · x[idx[k]]`.
pub(super) fn gather_dot<I: ColIndex>(idx: &[I], vals: &[f32], x: &[f32]) -> f32 {
    let mut acc = [0.0f32; 8];
    let mut ic = idx.chunks_exact(8);
    let mut vc = vals.chunks_exact(8);
    for (i8, v8) in (&mut ic).zip(&mut vc) {
        for l in 0..8 {
            acc[l] += v8[l] * x[i8[l].at()];
        }
    }
    for (l, (&i, &v)) in ic.remainder().iter().zip(vc.remainder()).enumerate() {
        acc[l] += v * x[i.at()];
    }
    fold8(acc)
}

/// Lanes per tile of [`scatter_lanes`] (every `xᵀ` stride is a multiple).
pub(super) const LANES: usize = 4;

/// `out[b] = Σ_k vals[k] · xt[idx[k]·stride + b]` for `b < out.len() ≤
/// LANES`, `xt` offset to the tile (holding [`LANES`] lanes a column):
/// each lane the multiply-adds and sums of [`gather_dot`] (eight partial
/// sums, `k mod 8`, folded by the same tree), so an output has the bits of
/// batch 1. (One running sum per output waited on every add: batch 2–8
/// ran at 0.2–0.6× dense f32 without AVX-512.)
#[inline(always)]
pub(super) fn scatter_lanes<I: ColIndex>(
    idx: &[I],
    vals: &[f32],
    xt: &[f32],
    stride: usize,
    out: &mut [f32],
) {
    // The lanes in use only (batch 2 reads 2 of the 4): the same sums.
    match out.len() {
        1 => lanes::<I, 1>(idx, vals, xt, stride, out),
        2 => lanes::<I, 2>(idx, vals, xt, stride, out),
        _ => lanes::<I, LANES>(idx, vals, xt, stride, out),
    }
}

/// [`scatter_lanes`] on `W` lanes.
#[inline(always)]
fn lanes<I: ColIndex, const W: usize>(
    idx: &[I],
    vals: &[f32],
    xt: &[f32],
    stride: usize,
    out: &mut [f32],
) {
    let mut acc = [[0.0f32; W]; 8];
    let col = |i: I| -> &[f32; W] {
        let j = i.at() * stride;
        xt[j..j + W].try_into().expect("W lanes")
    };
    let mut ic = idx.chunks_exact(8);
    let mut vc = vals.chunks_exact(8);
    for (i8, v8) in (&mut ic).zip(&mut vc) {
        for l in 0..8 {
            let x = col(i8[l]);
            for b in 0..W {
                acc[l][b] += v8[l] * x[b];
            }
        }
    }
    for (l, (&i, &v)) in ic.remainder().iter().zip(vc.remainder()).enumerate() {
        let x = col(i);
        for b in 0..W {
            acc[l][b] += v * x[b];
        }
    }
    for (b, o) in out.iter_mut().enumerate() {
        *o = fold8(std::array::from_fn(|l| acc[l][b]));
    }
}

/// Dense dot product with eight partial sums.
pub(super) fn dot(a: &[f32], b: &[f32]) -> f32 {
    let mut acc = [0.0f32; 8];
    let mut ac = a.chunks_exact(8);
    let mut bc = b.chunks_exact(8);
    for (a8, b8) in (&mut ac).zip(&mut bc) {
        for l in 0..8 {
            acc[l] += a8[l] * b8[l];
        }
    }
    for (l, (&x, &y)) in ac.remainder().iter().zip(bc.remainder()).enumerate() {
        acc[l] += x * y;
    }
    fold8(acc)
}

/// Column indices of one N:M row: decodes `count` packed positions starting
/// at element `start` of `bytes` (`width` bits each, LSB-first) into
/// `group · m + position`.
pub(super) fn nm_columns(
    bytes: &[u8],
    width: u8,
    start: usize,
    n: usize,
    m: usize,
    out: &mut [u32],
) {
    let w = width as usize;
    let mask = (1u32 << w) - 1;
    if (start * w).is_multiple_of(8) {
        // Whole bytes of 8/w positions each (the 2:4, 1:2 and 4:16 layouts).
        let bytes = &bytes[start * w / 8..];
        match w {
            1 => return decode_bytes::<1>(bytes, n, m, out),
            2 => return decode_bytes::<2>(bytes, n, m, out),
            4 => return decode_bytes::<4>(bytes, n, m, out),
            8 => return decode_bytes::<8>(bytes, n, m, out),
            _ => {}
        }
    }
    let mut bit = start * w;
    let (mut t, mut base) = (0usize, 0u32);
    for o in out.iter_mut() {
        let byte = bit / 8;
        // Up to 16 + 7 bits span at most three bytes.
        let mut word = bytes[byte] as u32;
        if let Some(&b) = bytes.get(byte + 1) {
            word |= (b as u32) << 8;
        }
        if let Some(&b) = bytes.get(byte + 2) {
            word |= (b as u32) << 16;
        }
        *o = base + ((word >> (bit % 8)) & mask);
        bit += w;
        t += 1;
        if t == n {
            t = 0;
            base += m as u32;
        }
    }
}

/// [`nm_columns`] for widths dividing 8, from a byte boundary.
fn decode_bytes<const W: usize>(bytes: &[u8], n: usize, m: usize, out: &mut [u32]) {
    let mask = (1u32 << W) - 1;
    let (mut t, mut base) = (0usize, 0u32);
    for (o, &byte) in out.chunks_mut(8 / W).zip(bytes) {
        for (s, oo) in o.iter_mut().enumerate() {
            *oo = base + ((byte as u32 >> (s * W)) & mask);
            t += 1;
            if t == n {
                t = 0;
                base += m as u32;
            }
        }
    }
}

/// `out[j] = book[index[start + j]]` for packed indices of `width` bits
/// (LSB-first in `bytes`): one 4-byte read per index (fewer near the end).
pub(super) fn lookup(bytes: &[u8], width: usize, start: usize, book: &[f32], out: &mut [f32]) {
    let mask = (1u32 << width) - 1;
    let mut bit = start * width;
    for o in out.iter_mut() {
        let byte = bit / 8;
        // Up to 16 + 7 bits span at most three bytes.
        let word = match bytes.get(byte..byte + 4) {
            Some(b) => u32::from_le_bytes([b[0], b[1], b[2], b[3]]),
            None => bytes[byte..]
                .iter()
                .enumerate()
                .fold(0u32, |acc, (k, &b)| acc | (b as u32) << (8 * k)),
        };
        *o = book[((word >> (bit % 8)) & mask) as usize];
        bit += width;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Every lane of [`scatter_lanes`] has the bits of [`gather_dot`] on
    /// its input column, for 1 to 4 lanes and any length.
    #[test]
    fn lanes_have_the_bits_of_batch_1() {
        let cols = 37;
        let stride = 8;
        let xt: Vec<f32> = (0..cols * stride)
            .map(|t| ((t * 7919) % 101) as f32 / 13.0 - 3.0)
            .collect();
        for n in [0, 1, 7, 8, 9, 23] {
            let idx: Vec<u32> = (0..n).map(|k| ((k * 5 + 3) % cols) as u32).collect();
            let vals: Vec<f32> = (0..n).map(|k| (k as f32 * 0.37).sin()).collect();
            for w in 1..=LANES {
                for t0 in [0, 3] {
                    let mut out = vec![f32::NAN; w];
                    scatter_lanes(&idx, &vals, &xt[t0..], stride, &mut out);
                    for (b, o) in out.iter().enumerate() {
                        let x: Vec<f32> = (0..cols).map(|j| xt[j * stride + t0 + b]).collect();
                        let want = gather_dot(&idx, &vals, &x);
                        assert_eq!(o.to_bits(), want.to_bits(), "n {n} w {w} lane {b}");
                    }
                }
            }
        }
    }
}
