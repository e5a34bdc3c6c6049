//! Fixed-width unsigned integers packed LSB-first into bytes.

use crate::error::{Result, SquishError};
use crate::matrix::MatrixError;

/// `len` unsigned integers of `width` bits (1..=16), packed LSB-first.
///
/// Element `i` occupies bits `i*width .. (i+1)*width` of the byte stream, so
/// the storage is exactly `ceil(len * width / 8)` bytes. Width 4 puts the even
/// element in the low nibble, width 1 puts element `i` in bit `i % 8` of byte
/// `i / 8`: the layouts the fast kernels read directly.
///
/// ```
/// use squish::matrix::PackedBits;
/// let p = PackedBits::pack(5, &[0, 31, 7, 16]).unwrap();
/// assert_eq!(p.bytes().len(), 3); // 20 bits
/// assert_eq!(p.unpack(), vec![0, 31, 7, 16]);
/// ```
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct PackedBits {
    width: u8,
    len: usize,
    bytes: Vec<u8>,
}

impl PackedBits {
    /// Packs `values`, each of which must fit in `width` bits.
    pub fn pack(width: u8, values: &[u16]) -> Result<Self> {
        if !(1..=16).contains(&width) {
            return Err(MatrixError::PackWidth(width).into());
        }
        let mut p = PackedBits::zeros(width, values.len());
        let limit = 1u32 << width;
        for (i, &v) in values.iter().enumerate() {
            if u32::from(v) >= limit {
                return Err(MatrixError::PackedValueTooWide { value: v, width }.into());
            }
            p.set(i, v);
        }
        Ok(p)
    }

    /// `len` zeros of `width` bits. Panics if `width` is not in 1..=16 (internal use).
    pub(crate) fn zeros(width: u8, len: usize) -> Self {
        assert!((1..=16).contains(&width));
        let nbytes = (len * width as usize).div_ceil(8);
        PackedBits {
            width,
            len,
            bytes: vec![0; nbytes],
        }
    }

    /// Rebuilds from raw bytes (e.g. read from a file), checking the length.
    pub fn from_bytes(width: u8, len: usize, bytes: Vec<u8>) -> Result<Self> {
        if !(1..=16).contains(&width) {
            return Err(MatrixError::PackWidth(width).into());
        }
        let need = len
            .checked_mul(width as usize)
            .map(|b| b.div_ceil(8))
            .ok_or_else(|| SquishError::inconsistent("packed bits", "length overflows"))?;
        if bytes.len() != need {
            return Err(SquishError::inconsistent(
                "packed bits",
                format!(
                    "{len} values of {width} bits need {need} bytes, got {}",
                    bytes.len()
                ),
            ));
        }
        Ok(PackedBits { width, len, bytes })
    }

    /// Bits per element.
    pub fn width(&self) -> u8 {
        self.width
    }

    /// Number of elements.
    pub fn len(&self) -> usize {
        self.len
    }

    /// True when there are no elements.
    pub fn is_empty(&self) -> bool {
        self.len == 0
    }

    /// The packed bytes.
    pub fn bytes(&self) -> &[u8] {
        &self.bytes
    }

    /// Element `i`.
    #[inline]
    pub fn get(&self, i: usize) -> u16 {
        let w = self.width as usize;
        let bit = i * w;
        let byte = bit / 8;
        let shift = bit % 8;
        // Up to 16 + 7 bits span at most 3 bytes.
        let mut word = 0u32;
        for k in 0..3 {
            if let Some(&b) = self.bytes.get(byte + k) {
                word |= (b as u32) << (8 * k);
            }
        }
        ((word >> shift) & ((1u32 << w) - 1)) as u16
    }

    /// Sets element `i` (the value must fit; checked in debug builds).
    #[inline]
    pub(crate) fn set(&mut self, i: usize, v: u16) {
        let w = self.width as usize;
        debug_assert!((v as u32) < (1u32 << w));
        let bit = i * w;
        for k in 0..w {
            let b = bit + k;
            let mask = 1u8 << (b % 8);
            if (v >> k) & 1 == 1 {
                self.bytes[b / 8] |= mask;
            } else {
                self.bytes[b / 8] &= !mask;
            }
        }
    }

    /// All elements, unpacked.
    pub fn unpack(&self) -> Vec<u16> {
        (0..self.len).map(|i| self.get(i)).collect()
    }
}

/// Bits needed to index `k` distinct symbols: `ceil(log2 k)`, at least 1.
pub fn index_bits(k: usize) -> u8 {
    if k <= 2 {
        1
    } else {
        (usize::BITS - (k - 1).leading_zeros()) as u8
    }
}
