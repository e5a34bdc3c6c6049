//! [`HuffmanCsr`]: Deep Compression's stored form of a pruned, shared matrix:
//! Huffman-coded relative positions and Huffman-coded codebook indices.

use super::DeepError;
use crate::compression::sharing::{BitStream, HuffmanCode, HuffmanCodebook};
use crate::error::{Result, SquishError};
use crate::matrix::{
    ColIndices, Component, CompressedMatrix, Csr, RowLayout, StorageReport, Structure, Values,
    METADATA_BYTES,
};

/// Bytes of the extra header of a [`HuffmanCsr`]: the number of position
/// symbols and the span, as two u32.
pub const CODED_HEADER_BYTES: usize = 8;

/// Spans tried by [`HuffmanCsr::encode`].
const SPANS: [u32; 10] = [8, 16, 32, 64, 128, 256, 512, 1024, 2048, 4096];

/// A CSR matrix with codebook values, stored as in Deep Compression (Han et
/// al. 2016, §2 and §4): the positions of the stored weights in the
/// row-major flattened matrix as *relative* indices (the number of zeros
/// since the previous stored weight), and the codebook indices, each stream
/// Huffman coded.
///
/// A gap of at least `span` zeros is written as filler symbols `span` (each
/// "skip `span` positions") followed by the remainder, so the position
/// alphabet is `0..=span`; the paper used fixed 5-bit gaps with zero-weight
/// fillers, a filler here costs no codebook index. Row pointers are not
/// stored: rows follow from the flattened positions.
///
/// A storage form: [`decode`](Self::decode) gives back the computable
/// matrix, bit for bit.
///
/// ```
/// use ndarray::Array2;
/// use squish::prelude::*;
/// use squish::compression::deep::HuffmanCsr;
/// let w = Array2::from_shape_fn((32, 48), |(i, j)| ((i * 7 + j * 13) % 23) as f32 - 11.0);
/// let m = Pipeline::new()
///     .prune(Magnitude::params(0.8).check()?)
///     .quantize(KMeans::params(8).check()?)
///     .run(w.view())?
///     .matrix;
/// let h = HuffmanCsr::encode(&m)?;
/// assert_eq!(h.decode()?, m);
/// assert!(h.storage().total() < m.storage().total());
/// # Ok::<(), squish::SquishError>(())
/// ```
#[derive(Clone, Debug, PartialEq)]
pub struct HuffmanCsr {
    rows: usize,
    cols: usize,
    span: u32,
    symbols: usize,
    gap_code: HuffmanCode,
    gaps: BitStream,
    values: HuffmanCodebook,
    centroids: usize,
}

/// Relative-position symbols of flattened positions `pos` (increasing) with
/// filler symbol `span`.
fn gap_symbols(pos: &[u64], span: u32) -> Vec<u32> {
    let mut out = Vec::with_capacity(pos.len() + pos.len() / 8);
    let mut next = 0u64;
    for &p in pos {
        let mut g = p - next;
        while g >= span as u64 {
            out.push(span);
            g -= span as u64;
        }
        out.push(g as u32);
        next = p + 1;
    }
    out
}

/// Exact bytes of the coded position stream plus its code table.
fn gap_bytes(pos: &[u64], span: u32) -> Result<usize> {
    let sym = gap_symbols(pos, span);
    let code = HuffmanCode::from_symbols(&sym, span as usize + 1)?;
    let mut counts = vec![0u64; span as usize + 1];
    for &s in &sym {
        counts[s as usize] += 1;
    }
    Ok(code.coded_bits(&counts).div_ceil(8) as usize + code.table_bytes())
}

impl HuffmanCsr {
    /// Codes `m` (CSR structure, codebook values) with the span among 8,
    /// 16, …, 4096 that gives the fewest bytes.
    pub fn encode(m: &CompressedMatrix) -> Result<Self> {
        let (csr, _) = parts(m)?;
        let pos = positions(m.cols(), csr);
        let mut best = (usize::MAX, SPANS[0]);
        if !pos.is_empty() {
            for span in SPANS {
                let b = gap_bytes(&pos, span)?;
                if b < best.0 {
                    best = (b, span);
                }
            }
        }
        Self::encode_with_span(m, best.1)
    }

    /// Codes `m` with a given span (≥ 1; at most 65 535 so that the code
    /// table stays small).
    pub fn encode_with_span(m: &CompressedMatrix, span: u32) -> Result<Self> {
        if !(1..=65_535).contains(&span) {
            return Err(DeepError::Span(span).into());
        }
        let (csr, cb) = parts(m)?;
        let pos = positions(m.cols(), csr);
        let sym = gap_symbols(&pos, span);
        let gap_code = if sym.is_empty() {
            HuffmanCode::from_counts(&[1])?
        } else {
            HuffmanCode::from_symbols(&sym, span as usize + 1)?
        };
        let gaps = gap_code.encode(&sym)?;
        Ok(HuffmanCsr {
            rows: m.rows(),
            cols: m.cols(),
            span,
            symbols: sym.len(),
            gap_code,
            gaps,
            values: cb.huffman()?,
            centroids: cb.centroids().len(),
        })
    }

    /// Shape `(rows, cols)`.
    pub fn shape(&self) -> (usize, usize) {
        (self.rows, self.cols)
    }

    /// The filler span of the position stream.
    pub fn span(&self) -> u32 {
        self.span
    }

    /// Number of stored weights.
    pub fn nnz(&self) -> usize {
        self.values.len()
    }

    /// Exact coded bits of the position stream.
    pub fn position_bits(&self) -> u64 {
        self.gaps.bits()
    }

    /// Exact coded bits of the codebook-index stream.
    pub fn index_bits(&self) -> u64 {
        self.values.coded_bits()
    }

    /// Exact storage. Metadata: the matrix header plus
    /// [`CODED_HEADER_BYTES`]; indices: the coded position stream and its
    /// code table (one length byte per symbol `0..=span`); values: the coded
    /// codebook indices; codebook: f32 centroids and their code table (one
    /// byte per centroid index).
    pub fn storage(&self) -> StorageReport {
        let mut r = StorageReport::new(self.rows * self.cols);
        r.add(Component::Metadata, METADATA_BYTES + CODED_HEADER_BYTES);
        r.add(
            Component::Indices,
            self.gaps.bytes().len() + self.gap_code.table_bytes(),
        );
        r.add(Component::Values, self.index_bits().div_ceil(8) as usize);
        r.add(
            Component::Codebook,
            self.centroids * 4 + self.values.table_bytes(),
        );
        r
    }

    /// The computable CSR matrix with codebook values (lossless).
    pub fn decode(&self) -> Result<CompressedMatrix> {
        let sym = self.gap_code.decode(&self.gaps, self.symbols)?;
        let total = (self.rows * self.cols) as u64;
        let mut row_ptr = vec![0u32; self.rows + 1];
        let mut cols = Vec::with_capacity(self.nnz());
        let mut pos = 0u64;
        for s in sym {
            if s == self.span {
                pos += self.span as u64;
                continue;
            }
            pos += s as u64;
            if pos >= total {
                return Err(SquishError::inconsistent(
                    "Huffman CSR",
                    "a position lies past the end of the matrix",
                ));
            }
            let (i, j) = (
                (pos / self.cols as u64) as usize,
                (pos % self.cols as u64) as usize,
            );
            row_ptr[i + 1] += 1;
            cols.push(j);
            pos += 1;
        }
        for i in 0..self.rows {
            row_ptr[i + 1] += row_ptr[i];
        }
        if cols.len() != self.nnz() {
            return Err(SquishError::inconsistent(
                "Huffman CSR",
                format!("{} positions for {} stored weights", cols.len(), self.nnz()),
            ));
        }
        let csr = Csr::new(
            self.rows,
            self.cols,
            row_ptr,
            ColIndices::for_cols(self.cols, cols)?,
        )?;
        let mut v = self.values.decode()?;
        v.layout = RowLayout::Ragged(csr.row_ptr.clone());
        v.prepacked = Default::default();
        CompressedMatrix::from_parts(
            self.rows,
            self.cols,
            Structure::Csr(csr),
            Values::Codebook(v),
        )
    }
}

fn parts(m: &CompressedMatrix) -> Result<(&Csr, &crate::matrix::CodebookValues)> {
    match (m.structure(), m.values()) {
        (Structure::Csr(c), Some(Values::Codebook(v))) => Ok((c, v)),
        (s, v) => Err(SquishError::Incompatible {
            pass: "Huffman CSR coding".into(),
            structure: s.kind(),
            encoding: v.map_or("factored", Values::kind),
            hint: "prune (CSR) and share weights (k-means codebook) first",
        }),
    }
}

/// Row-major flattened positions of the stored values.
fn positions(cols: usize, csr: &Csr) -> Vec<u64> {
    let mut pos = Vec::with_capacity(csr.nnz());
    for (i, w) in csr.row_ptr().windows(2).enumerate() {
        for k in w[0] as usize..w[1] as usize {
            pos.push((i * cols + csr.col_idx().get(k)) as u64);
        }
    }
    pos
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn gaps_and_fillers() {
        // positions 0, 3, 20 with span 8: 0 | 2 | 8 8 0  (16 zeros then the value)
        assert_eq!(gap_symbols(&[0, 3, 20], 8), vec![0, 2, 8, 8, 0]);
        assert_eq!(gap_symbols(&[7], 8), vec![7]);
        assert_eq!(gap_symbols(&[8], 8), vec![8, 0]);
    }
}
