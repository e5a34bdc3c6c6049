//! Canonical Huffman coding of symbol streams (codebook indices, sparse index
//! gaps): Deep Compression's third stage.
//!
//! Codes are canonical, so a code is stored as one length byte per symbol of
//! the alphabet; the stream is written MSB-first. The average code length `L`
//! satisfies `H ≤ L < H + 1` for the empirical entropy `H`.

use std::cmp::Reverse;
use std::collections::BinaryHeap;

use super::SharingError;
use crate::error::{Result, SquishError};

/// Longest code supported (a Huffman code is longer only for total counts
/// above about 10^11).
pub const MAX_CODE_LEN: u8 = 56;

/// Bits for a fast first-level decode table.
const TABLE_BITS: u32 = 11;

/// A coded bit stream: `bits` bits, MSB-first in `bytes`.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct BitStream {
    bytes: Vec<u8>,
    bits: u64,
}

impl BitStream {
    /// Number of coded bits (exact).
    pub fn bits(&self) -> u64 {
        self.bits
    }

    /// The bytes (`ceil(bits / 8)`, last byte zero-padded).
    pub fn bytes(&self) -> &[u8] {
        &self.bytes
    }

    /// Rebuilds a stream from bytes, checking the length.
    pub fn from_bytes(bytes: Vec<u8>, bits: u64) -> Result<Self> {
        if bytes.len() as u64 != bits.div_ceil(8) {
            return Err(SquishError::inconsistent(
                "bit stream",
                format!(
                    "{bits} bits need {} bytes, got {}",
                    bits.div_ceil(8),
                    bytes.len()
                ),
            ));
        }
        Ok(BitStream { bytes, bits })
    }
}

/// A canonical prefix code over the alphabet `0..n`.
///
/// ```
/// use squish::compression::sharing::HuffmanCode;
/// let symbols = [0u32, 0, 0, 0, 1, 1, 2, 3];
/// let code = HuffmanCode::from_symbols(&symbols, 4).unwrap();
/// let stream = code.encode(&symbols).unwrap();
/// assert_eq!(stream.bits(), 4 + 2 * 2 + 3 + 3); // lengths 1, 2, 3, 3
/// assert_eq!(code.decode(&stream, symbols.len()).unwrap(), symbols);
/// ```
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct HuffmanCode {
    lengths: Vec<u8>,
    codes: Vec<u64>,
    /// Per length `l`: first canonical code, index into `sorted`, count.
    first: Vec<u64>,
    offset: Vec<usize>,
    count: Vec<usize>,
    /// Symbols ordered by (length, symbol).
    sorted: Vec<u32>,
    /// `table[prefix] = (symbol, length)` for codes of ≤ TABLE_BITS bits (length 0: miss).
    table: Vec<(u32, u8)>,
}

impl HuffmanCode {
    /// The Huffman code of symbol counts (`counts.len()` is the alphabet
    /// size). Symbols of count 0 get no code; a single used symbol gets a
    /// 1-bit code.
    pub fn from_counts(counts: &[u64]) -> Result<Self> {
        let used: Vec<usize> = (0..counts.len()).filter(|&s| counts[s] > 0).collect();
        if used.is_empty() {
            return Err(SharingError::EmptyAlphabet.into());
        }
        let mut lengths = vec![0u8; counts.len()];
        if used.len() == 1 {
            lengths[used[0]] = 1;
            return Self::from_lengths(lengths);
        }
        // Heap of (count, node id); ties broken by id, so the code is deterministic.
        let mut parent = vec![usize::MAX; 2 * used.len() - 1];
        let mut heap: BinaryHeap<Reverse<(u64, usize)>> = used
            .iter()
            .enumerate()
            .map(|(n, &s)| Reverse((counts[s], n)))
            .collect();
        let mut next = used.len();
        while heap.len() > 1 {
            let Reverse((ca, a)) = heap.pop().expect("two nodes");
            let Reverse((cb, b)) = heap.pop().expect("two nodes");
            parent[a] = next;
            parent[b] = next;
            heap.push(Reverse((ca + cb, next)));
            next += 1;
        }
        // Depth of each node, from the root (the last node) down.
        let mut depth = vec![0u32; parent.len()];
        for n in (0..parent.len() - 1).rev() {
            depth[n] = depth[parent[n]] + 1;
        }
        for (n, &s) in used.iter().enumerate() {
            if depth[n] > MAX_CODE_LEN as u32 {
                return Err(SharingError::CodeTooLong {
                    len: depth[n],
                    max: MAX_CODE_LEN,
                }
                .into());
            }
            lengths[s] = depth[n] as u8;
        }
        Self::from_lengths(lengths)
    }

    /// The code of a symbol stream over the alphabet `0..alphabet`.
    pub fn from_symbols(symbols: &[u32], alphabet: usize) -> Result<Self> {
        let mut counts = vec![0u64; alphabet];
        for &s in symbols {
            let c = counts.get_mut(s as usize).ok_or_else(|| {
                SquishError::from(SharingError::SymbolOutOfRange {
                    symbol: s,
                    alphabet,
                })
            })?;
            *c += 1;
        }
        Self::from_counts(&counts)
    }

    /// The canonical code with these lengths (0 = no code). Checks that the
    /// lengths are at most [`MAX_CODE_LEN`] and satisfy Kraft's inequality.
    pub fn from_lengths(lengths: Vec<u8>) -> Result<Self> {
        if let Some(&l) = lengths.iter().find(|&&l| l > MAX_CODE_LEN) {
            return Err(SharingError::CodeTooLong {
                len: l.into(),
                max: MAX_CODE_LEN,
            }
            .into());
        }
        let kraft: f64 = lengths
            .iter()
            .filter(|&&l| l > 0)
            .map(|&l| (-(l as f64)).exp2())
            .sum();
        if kraft > 1.0 + 1e-12 || kraft == 0.0 {
            return Err(SquishError::inconsistent(
                "Huffman code",
                format!("lengths violate Kraft's inequality (sum 2^-l = {kraft})"),
            ));
        }
        let maxlen = *lengths.iter().max().expect("non-empty") as usize;
        let mut count = vec![0usize; maxlen + 1];
        for &l in &lengths {
            if l > 0 {
                count[l as usize] += 1;
            }
        }
        let mut sorted: Vec<u32> = (0..lengths.len() as u32)
            .filter(|&s| lengths[s as usize] > 0)
            .collect();
        sorted.sort_by_key(|&s| (lengths[s as usize], s));
        let mut first = vec![0u64; maxlen + 1];
        let mut offset = vec![0usize; maxlen + 1];
        let (mut code, mut off) = (0u64, 0usize);
        for l in 1..=maxlen {
            first[l] = code;
            offset[l] = off;
            code = (code + count[l] as u64) << 1;
            off += count[l];
        }
        let mut codes = vec![0u64; lengths.len()];
        for l in 1..=maxlen {
            for (r, &s) in sorted[offset[l]..offset[l] + count[l]].iter().enumerate() {
                codes[s as usize] = first[l] + r as u64;
            }
        }
        let mut table = vec![(0u32, 0u8); 1 << TABLE_BITS];
        for &s in &sorted {
            let l = lengths[s as usize] as u32;
            if l <= TABLE_BITS {
                let base = (codes[s as usize] << (TABLE_BITS - l)) as usize;
                for e in &mut table[base..base + (1 << (TABLE_BITS - l))] {
                    *e = (s, l as u8);
                }
            }
        }
        Ok(HuffmanCode {
            lengths,
            codes,
            first,
            offset,
            count,
            sorted,
            table,
        })
    }

    /// Alphabet size.
    pub fn alphabet(&self) -> usize {
        self.lengths.len()
    }

    /// Code length of every symbol (0 = no code).
    pub fn lengths(&self) -> &[u8] {
        &self.lengths
    }

    /// Bytes to store the code: one length byte per symbol of the alphabet.
    pub fn table_bytes(&self) -> usize {
        self.lengths.len()
    }

    /// Exact coded size in bits of a stream with these symbol counts.
    pub fn coded_bits(&self, counts: &[u64]) -> u64 {
        counts
            .iter()
            .zip(&self.lengths)
            .map(|(&c, &l)| c * l as u64)
            .sum()
    }

    /// Encodes `symbols`; errors on a symbol without a code.
    pub fn encode(&self, symbols: &[u32]) -> Result<BitStream> {
        let mut bytes = Vec::with_capacity(symbols.len() / 2);
        let (mut acc, mut n, mut bits) = (0u64, 0u32, 0u64);
        for &s in symbols {
            let l = *self.lengths.get(s as usize).unwrap_or(&0) as u32;
            if l == 0 {
                return Err(SharingError::NoCodeword(s).into());
            }
            // acc holds n < 8 pending bits, left-aligned at bit 63.
            acc |= self.codes[s as usize] << (64 - n - l);
            n += l;
            bits += l as u64;
            while n >= 8 {
                bytes.push((acc >> 56) as u8);
                acc <<= 8;
                n -= 8;
            }
        }
        if n > 0 {
            bytes.push((acc >> 56) as u8);
        }
        Ok(BitStream { bytes, bits })
    }

    /// Decodes `n` symbols; errors if the stream is too short or holds a bit
    /// pattern that is not a code.
    pub fn decode(&self, stream: &BitStream, n: usize) -> Result<Vec<u32>> {
        let mut out = Vec::with_capacity(n);
        let mut pos = 0u64;
        let bad = || SquishError::inconsistent("Huffman stream", "invalid or truncated code");
        let bytes = &stream.bytes;
        // Next 64 bits from bit `pos`, zero past the end.
        let peek = |pos: u64| -> u64 {
            let byte = (pos / 8) as usize;
            let mut w = 0u64;
            for k in 0..8 {
                w = (w << 8) | *bytes.get(byte + k).unwrap_or(&0) as u64;
            }
            let tail = *bytes.get(byte + 8).unwrap_or(&0) as u64;
            (w << (pos % 8)) | (tail >> (8 - pos % 8))
        };
        while out.len() < n {
            let w = peek(pos);
            let (s, l) = self.table[(w >> (64 - TABLE_BITS)) as usize];
            if l > 0 {
                out.push(s);
                pos += l as u64;
            } else {
                // Canonical decode, one bit at a time past the table.
                let mut found = None;
                for l in 1..self.count.len() {
                    let code = w >> (64 - l);
                    let f = self.first[l];
                    if code >= f && code - f < self.count[l] as u64 {
                        found = Some((self.sorted[self.offset[l] + (code - f) as usize], l));
                        break;
                    }
                }
                let (s, l) = found.ok_or_else(bad)?;
                out.push(s);
                pos += l as u64;
            }
            if pos > stream.bits {
                return Err(bad());
            }
        }
        Ok(out)
    }
}

/// Empirical entropy in bits per symbol of a count vector.
pub fn entropy_bits(counts: &[u64]) -> f64 {
    let total: u64 = counts.iter().sum();
    if total == 0 {
        return 0.0;
    }
    let t = total as f64;
    counts
        .iter()
        .filter(|&&c| c > 0)
        .map(|&c| {
            let p = c as f64 / t;
            -p * p.log2()
        })
        .sum()
}

/// Symbol counts of a stream over `0..alphabet` (symbols outside are ignored).
pub fn symbol_counts(symbols: &[u32], alphabet: usize) -> Vec<u64> {
    let mut c = vec![0u64; alphabet];
    for &s in symbols {
        if let Some(x) = c.get_mut(s as usize) {
            *x += 1;
        }
    }
    c
}

/// Column gaps of sparse rows (relative indexing): in each row the first
/// stored column `j` gives `j`, every later one `j − previous − 1`. Together
/// with the row pointer they give back the columns ([`columns_from_gaps`]).
/// Huffman-code them with [`HuffmanCode::from_symbols`].
pub fn column_gaps(row_ptr: &[u32], cols: impl Fn(usize) -> usize) -> Vec<u32> {
    let mut g = Vec::with_capacity(row_ptr.last().map_or(0, |&n| n as usize));
    for w in row_ptr.windows(2) {
        let mut next = 0usize;
        for k in w[0] as usize..w[1] as usize {
            let j = cols(k);
            g.push((j - next) as u32);
            next = j + 1;
        }
    }
    g
}

/// Inverse of [`column_gaps`].
pub fn columns_from_gaps(row_ptr: &[u32], gaps: &[u32]) -> Vec<usize> {
    let mut c = Vec::with_capacity(gaps.len());
    for w in row_ptr.windows(2) {
        let mut next = 0usize;
        for &g in &gaps[w[0] as usize..w[1] as usize] {
            let j = next + g as usize;
            c.push(j);
            next = j + 1;
        }
    }
    c
}
