//! Huffman-coded codebook indices: exact storage of the entropy-coded form.

use super::huffman::{entropy_bits, symbol_counts, BitStream, HuffmanCode};
use super::kmeans::pack;
use crate::error::{Result, SquishError};
use crate::matrix::{
    index_bits, CodebookValues, Component, CompressedMatrix, StorageReport, Structure, Values,
    METADATA_BYTES,
};

/// Codebook values whose index stream is Huffman coded (a storage form:
/// [`decode`](Self::decode) it back to [`CodebookValues`] to compute with it).
///
/// Storage: the coded stream (`ceil(bits / 8)` bytes) counts as values; the
/// centroids and the code table (one length byte per centroid index) count
/// as codebook.
#[derive(Clone, Debug, PartialEq)]
pub struct HuffmanCodebook {
    base: CodebookValues,
    code: HuffmanCode,
    stream: BitStream,
    entropy: f64,
}

impl CodebookValues {
    /// The Huffman-coded form of these values (lossless; see [`HuffmanCodebook`]).
    pub fn huffman(&self) -> Result<HuffmanCodebook> {
        let sym: Vec<u32> = self.indices.unpack().into_iter().map(u32::from).collect();
        let counts = symbol_counts(&sym, self.k);
        let mut base = self.clone();
        base.indices = pack(index_bits(self.k), &[]);
        // Derived data of the old indices goes with them.
        base.prepacked = Default::default();
        if sym.is_empty() {
            // Nothing to code: an empty stream and an empty (all-zero) table.
            let code = HuffmanCode::from_counts(&[1])?;
            let stream = code.encode(&[])?;
            return Ok(HuffmanCodebook {
                base,
                code,
                stream,
                entropy: 0.0,
            });
        }
        let code = HuffmanCode::from_counts(&counts)?;
        let stream = code.encode(&sym)?;
        Ok(HuffmanCodebook {
            base,
            code,
            stream,
            entropy: entropy_bits(&counts),
        })
    }
}

impl HuffmanCodebook {
    /// The code.
    pub fn code(&self) -> &HuffmanCode {
        &self.code
    }

    /// Exact number of coded index bits.
    pub fn coded_bits(&self) -> u64 {
        self.stream.bits()
    }

    /// Empirical entropy of the indices, bits per index.
    pub fn entropy_bits_per_index(&self) -> f64 {
        self.entropy
    }

    /// Number of coded indices.
    pub fn len(&self) -> usize {
        self.base.layout.total()
    }

    /// True when no index is coded.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// Bytes of the code table (one length byte per centroid index).
    pub fn table_bytes(&self) -> usize {
        self.base.k
    }

    /// The original codebook values (lossless).
    pub fn decode(&self) -> Result<CodebookValues> {
        let idx: Vec<u16> = self
            .code
            .decode(&self.stream, self.len())?
            .into_iter()
            .map(|s| s as u16)
            .collect();
        let mut v = self.base.clone();
        v.indices = pack(index_bits(v.k), &idx);
        v.prepacked = Default::default();
        Ok(v)
    }

    fn account(&self, r: &mut StorageReport) {
        r.add(Component::Values, self.stream.bytes().len());
        r.add(
            Component::Codebook,
            self.base.centroids.len() * 4 + self.table_bytes(),
        );
    }
}

/// A codebook matrix with Huffman-coded indices — Deep Compression's full
/// prune → share → Huffman form. A storage form: [`decode`](Self::decode)
/// gives back the computable matrix.
///
/// ```
/// use ndarray::Array2;
/// use squish::prelude::*;
/// use squish::compression::sharing::{HuffmanMatrix, KMeans};
/// let w = Array2::from_shape_fn((32, 32), |(i, j)| ((i * 5 + j * 3) % 17) as f32 - 8.0);
/// let m = Pipeline::new()
///     .prune(Magnitude::params(0.5).check()?)
///     .quantize(KMeans::params(4).check()?)
///     .run(w.view())?
///     .matrix;
/// let h = HuffmanMatrix::encode(&m)?;
/// assert!(h.storage().total() <= m.storage().total() + 4);
/// assert_eq!(h.decode()?, m);
/// # Ok::<(), squish::SquishError>(())
/// ```
#[derive(Clone, Debug, PartialEq)]
pub struct HuffmanMatrix {
    rows: usize,
    cols: usize,
    structure: Structure,
    values: HuffmanCodebook,
}

impl HuffmanMatrix {
    /// Huffman-codes the indices of a codebook matrix (any stored structure).
    pub fn encode(m: &CompressedMatrix) -> Result<Self> {
        match m.values() {
            Some(Values::Codebook(v)) => Ok(HuffmanMatrix {
                rows: m.rows(),
                cols: m.cols(),
                structure: m.structure().clone(),
                values: v.huffman()?,
            }),
            other => Err(SquishError::Incompatible {
                pass: "Huffman coding".into(),
                structure: m.structure().kind(),
                encoding: other.map_or("factored", Values::kind),
                hint: "Huffman coding applies to codebook values; share weights first (and code each low-rank factor separately)",
            }),
        }
    }

    /// The coded values.
    pub fn values(&self) -> &HuffmanCodebook {
        &self.values
    }

    /// Exact storage: header, structure, coded indices, centroids and code table.
    pub fn storage(&self) -> StorageReport {
        let mut r = StorageReport::new(self.rows * self.cols);
        r.add(Component::Metadata, METADATA_BYTES);
        self.structure.account(&mut r);
        self.values.account(&mut r);
        r
    }

    /// The computable matrix (lossless).
    pub fn decode(&self) -> Result<CompressedMatrix> {
        CompressedMatrix::from_parts(
            self.rows,
            self.cols,
            self.structure.clone(),
            Values::Codebook(self.values.decode()?),
        )
    }
}
