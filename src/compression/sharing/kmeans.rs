//! [`KMeans`]: checked hyperparameters, fitting, and the codebook [`Quantizer`].

use std::sync::Arc;

use super::optimal::optimal_bounded;
use super::SharingError;
use super::{lloyd, optimal_with_layer, Clustering, DpLayer, Histogram, Init};
use crate::error::{check_finite, Result, SquishError};
use crate::matrix::{index_bits, CodebookScope, F32Values, PackedBits, Values};
use crate::parallel::{map, ParallelExecutor, Sequential};
use crate::pass::Quantizer;

/// How the centroids are found.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Method {
    /// Lloyd's algorithm on the sorted histogram (a local optimum).
    Lloyd {
        /// Initial centroids.
        init: Init,
        /// At most this many centroid updates.
        max_iter: usize,
    },
    /// The exact optimum by dynamic programming (see [`optimal`](super::optimal())).
    Optimal,
}

/// Unchecked hyperparameters of a [`KMeans`]; [`check`](Self::check) validates them.
#[derive(Clone, Debug, PartialEq)]
pub struct KMeansParams {
    k: usize,
    method: Method,
    scope: CodebookScope,
    importance: Option<Arc<[f32]>>,
    dp_memory: usize,
    dp_layer: DpLayer,
    dp_bound: bool,
}

/// Weight sharing by 1-D k-means: `k` shared values (a codebook) and an index
/// of `ceil(log2 k)` bits per weight.
///
/// As a [`Quantizer`] it re-encodes f32 values of any structure into
/// [`Values::Codebook`]; on a pruned (CSR) matrix only the stored non-zeros
/// are clustered — Deep Compression's prune → share.
///
/// **Fewer distinct values than `k`.** [`fit`](Self::fit) rejects it
/// ([`SharingError::TooFewDistinct`](super::SharingError::TooFewDistinct)). The quantizer instead stores
/// the distinct values exactly (zero error) and pads the codebook to `k` by
/// repeating the largest one; a codebook with no values at all (an empty CSR
/// row under [`per_row`](KMeansParams::per_row)) is all zeros.
///
/// ```
/// use ndarray::Array2;
/// use squish::prelude::*;
/// use squish::compression::sharing::KMeans;
///
/// let w = Array2::from_shape_fn((64, 64), |(i, j)| ((i * 37 + j * 11) % 101) as f32 / 50.0 - 1.0);
/// let out = Pipeline::new()
///     .prune(Magnitude::params(0.75).check()?)
///     .quantize(KMeans::params(16).optimal().check()?)
///     .run(w.view())?;
/// assert_eq!(out.matrix.structure().kind(), "csr");
/// assert_eq!(out.matrix.encoding(), "codebook");
/// let x = Array2::<f32>::ones((2, 64));
/// let y = out.matrix.matmul(x.view())?;
/// assert!((&y - &out.matrix.matmul_reference(x.view())?).iter().all(|d| d.abs() < 1e-3));
/// # Ok::<(), squish::SquishError>(())
/// ```
#[derive(Clone, Debug, PartialEq)]
pub struct KMeans {
    p: KMeansParams,
}

/// Default backtracking budget of the exact DP (bytes).
pub const DEFAULT_DP_MEMORY: usize = 256 << 20;

impl KMeans {
    /// Starts a builder for `k` centroids: Lloyd from the [`Init::Coarse`]
    /// init (the optimum of a 4096-point summary; at most 300 updates), one
    /// codebook per tensor.
    pub fn params(k: usize) -> KMeansParams {
        KMeansParams {
            k,
            method: Method::Lloyd {
                init: Init::Coarse,
                max_iter: 300,
            },
            scope: CodebookScope::PerTensor,
            importance: None,
            dp_memory: DEFAULT_DP_MEMORY,
            dp_layer: DpLayer::DivideAndConquer,
            dp_bound: true,
        }
    }

    /// Centroids per codebook.
    pub fn k(&self) -> usize {
        self.p.k
    }

    /// The method.
    pub fn method(&self) -> Method {
        self.p.method
    }

    /// Clusters `values` (weight 1 each). Errors on empty input, NaN/Inf, or
    /// fewer than `k` distinct values.
    pub fn fit(&self, values: &[f32]) -> Result<Clustering> {
        self.fit_histogram(&Histogram::new(values)?)
    }

    /// Clusters `values` minimizing Σ importance·(x − c)². Values of zero
    /// importance do not count (they still get their nearest centroid when encoded).
    pub fn fit_weighted(&self, values: &[f32], importance: &[f32]) -> Result<Clustering> {
        self.fit_histogram(&Histogram::weighted(values, importance)?)
    }

    /// Clusters a prepared histogram.
    pub fn fit_histogram(&self, hist: &Histogram) -> Result<Clustering> {
        let k = self.p.k;
        if hist.len() < k {
            return Err(SharingError::TooFewDistinct {
                k,
                distinct: hist.len(),
            }
            .into());
        }
        Ok(match self.p.method {
            Method::Lloyd { init, max_iter } => lloyd(hist, init.centroids(hist, k), max_iter),
            Method::Optimal if self.p.dp_bound => {
                optimal_bounded(hist, k, self.p.dp_memory, self.p.dp_layer)
            }
            Method::Optimal => optimal_with_layer(hist, k, self.p.dp_memory, self.p.dp_layer),
        })
    }

    /// Old name of [`quantize_values_on`](Self::quantize_values_on).
    #[deprecated(
        since = "0.2.0",
        note = "renamed `quantize_values_on`: `_on` takes an executor"
    )]
    pub fn quantize_values_with(
        &self,
        values: &F32Values,
        exec: &dyn ParallelExecutor,
    ) -> Result<Values> {
        self.quantize_values_on(values, exec)
    }

    /// Encodes f32 values as a codebook, spreading per-row codebooks over `exec`.
    /// The result does not depend on the executor.
    pub fn quantize_values_on(
        &self,
        values: &F32Values,
        exec: &dyn ParallelExecutor,
    ) -> Result<Values> {
        let layout = &values.layout;
        let data = values.data();
        if let Some(imp) = &self.p.importance {
            if imp.len() != data.len() {
                return Err(SquishError::shape(
                    "k-means importance",
                    format!("{} importances (one per stored value)", data.len()),
                    format!("{}", imp.len()),
                ));
            }
        }
        let ranges: Vec<_> = match self.p.scope {
            CodebookScope::PerTensor => std::iter::once(0..data.len()).collect(),
            CodebookScope::PerRow => (0..layout.rows()).map(|i| layout.range(i)).collect(),
        };
        let books = map(exec, ranges.len(), |b| {
            let r = ranges[b].clone();
            let imp = self.p.importance.as_ref().map(|w| &w[r.clone()]);
            self.codebook_for(&data[r], imp)
        });
        let k = self.p.k;
        let books = books.into_iter().collect::<Result<Vec<_>>>()?;
        // Nearest centroids on `exec`: fixed chunks of one codebook's values,
        // or one task per row's codebook.
        let idx: Vec<u16> = if let [book] = &books[..] {
            map(exec, data.len().div_ceil(CHUNK), |c| {
                let mut out = Vec::with_capacity(CHUNK);
                assign(
                    book,
                    &data[c * CHUNK..((c + 1) * CHUNK).min(data.len())],
                    &mut out,
                );
                out
            })
            .concat()
        } else {
            map(exec, books.len(), |b| {
                let mut out = Vec::with_capacity(ranges[b].len());
                assign(&books[b], &data[ranges[b].clone()], &mut out);
                out
            })
            .concat()
        };
        let width = index_bits(k);
        // CHUNK indices of any width fill whole bytes: chunks pack separately.
        let bytes = map(exec, idx.len().div_ceil(CHUNK), |c| {
            pack_bytes(width, &idx[c * CHUNK..((c + 1) * CHUNK).min(idx.len())])
        })
        .concat();
        let packed = PackedBits::from_bytes(width, idx.len(), bytes).expect("length matches");
        Values::codebook(layout.clone(), k, self.p.scope, books.concat(), packed)
    }

    /// The sorted f32 codebook (length `k`) for one run of values.
    fn codebook_for(&self, data: &[f32], importance: Option<&[f32]>) -> Result<Vec<f32>> {
        let k = self.p.k;
        if data.is_empty() {
            return Ok(vec![0.0; k]);
        }
        let hist = match importance {
            Some(w) if w.iter().any(|&w| w > 0.0) => Histogram::weighted(data, w)?,
            _ => Histogram::new(data)?,
        };
        let mut c = if hist.len() <= k {
            hist.values().to_vec()
        } else {
            self.fit_histogram(&hist)?.centroids_f32()
        };
        c.sort_by(f32::total_cmp);
        let last = *c.last().expect("non-empty");
        c.resize(k, last);
        Ok(c)
    }
}

/// Appends, for each value, the index of its nearest centroid in the sorted
/// `book` (a value halfway between two goes to the upper one).
pub(crate) fn assign(book: &[f32], data: &[f32], out: &mut Vec<u16>) {
    let mids: Vec<f64> = book
        .windows(2)
        .map(|w| 0.5 * (w[0] as f64 + w[1] as f64))
        .collect();
    out.extend(
        data.iter()
            .map(|&x| mids.partition_point(|&m| m <= x as f64) as u16),
    );
}

/// Values per task of the encoding (a multiple of 8, so that chunks of
/// packed indices end on whole bytes).
const CHUNK: usize = 1 << 16;

/// Packs indices LSB-first at `width` bits (the [`PackedBits`] layout).
pub(crate) fn pack(width: u8, idx: &[u16]) -> PackedBits {
    PackedBits::from_bytes(width, idx.len(), pack_bytes(width, idx)).expect("length matches")
}

/// The bytes of [`pack`].
fn pack_bytes(width: u8, idx: &[u16]) -> Vec<u8> {
    let w = width as u32;
    let mut bytes = Vec::with_capacity((idx.len() * w as usize).div_ceil(8));
    let (mut acc, mut n) = (0u64, 0u32);
    for &v in idx {
        acc |= (v as u64) << n;
        n += w;
        while n >= 8 {
            bytes.push(acc as u8);
            acc >>= 8;
            n -= 8;
        }
    }
    if n > 0 {
        bytes.push(acc as u8);
    }
    bytes
}

impl KMeansParams {
    /// Lloyd's algorithm from `init`.
    pub fn lloyd(mut self, init: Init) -> Self {
        let max_iter = match self.method {
            Method::Lloyd { max_iter, .. } => max_iter,
            Method::Optimal => 300,
        };
        self.method = Method::Lloyd { init, max_iter };
        self
    }

    /// At most `n` Lloyd updates (switches to Lloyd if the DP was chosen).
    pub fn max_iter(mut self, n: usize) -> Self {
        let init = match self.method {
            Method::Lloyd { init, .. } => init,
            Method::Optimal => Init::Coarse,
        };
        self.method = Method::Lloyd { init, max_iter: n };
        self
    }

    /// The exact optimum by dynamic programming.
    pub fn optimal(mut self) -> Self {
        self.method = Method::Optimal;
        self
    }

    /// One codebook for the whole tensor (default).
    pub fn per_tensor(mut self) -> Self {
        self.scope = CodebookScope::PerTensor;
        self
    }

    /// One codebook per stored row.
    pub fn per_row(mut self) -> Self {
        self.scope = CodebookScope::PerRow;
        self
    }

    /// Per-value importance (one per stored value, in layout order) for a
    /// weighted k-means, e.g. a diagonal Hessian or Fisher estimate.
    pub fn importance(mut self, w: Vec<f32>) -> Self {
        self.importance = Some(w.into());
        self
    }

    /// Bytes the exact DP may use for backtracking before it switches to
    /// Hirschberg's O(m)-memory scheme (default [`DEFAULT_DP_MEMORY`]).
    pub fn dp_memory(mut self, bytes: usize) -> Self {
        self.dp_memory = bytes;
        self
    }

    /// How the exact DP solves each layer (default [`DpLayer::DivideAndConquer`]).
    pub fn dp_layer(mut self, how: DpLayer) -> Self {
        self.dp_layer = how;
        self
    }

    /// Whether the exact DP first bounds where the optimal splits can lie and
    /// fills only those cells (default `true`; same optimum, see
    /// [`optimal()`](super::optimal())). `false` always runs the full DP.
    pub fn dp_bound(mut self, on: bool) -> Self {
        self.dp_bound = on;
        self
    }

    /// Validates: `2 ≤ k ≤ 65536`, `max_iter ≥ 1`, importances finite and ≥ 0.
    pub fn check(self) -> Result<KMeans> {
        if !(2..=65536).contains(&self.k) {
            return Err(SharingError::CodebookSize(self.k).into());
        }
        if let Method::Lloyd { max_iter: 0, .. } = self.method {
            return Err(SharingError::ZeroIterations.into());
        }
        if let Some(w) = &self.importance {
            check_finite("importance", w.iter())?;
            if let Some(&bad) = w.iter().find(|&&w| w < 0.0) {
                return Err(SharingError::NegativeImportance(bad).into());
            }
        }
        Ok(KMeans { p: self })
    }
}

impl Quantizer for KMeans {
    fn name(&self) -> String {
        let m = match self.p.method {
            Method::Lloyd { init, .. } => format!("lloyd {}", init.name()),
            Method::Optimal => "optimal".into(),
        };
        let s = match self.p.scope {
            CodebookScope::PerTensor => "per-tensor",
            CodebookScope::PerRow => "per-row",
        };
        format!("k-means k={} {m} {s}", self.p.k)
    }

    fn quantize_values(&self, values: &F32Values) -> Result<Values> {
        KMeans::quantize_values_on(self, values, &Sequential)
    }

    fn quantize_values_on(
        &self,
        values: &F32Values,
        exec: &dyn ParallelExecutor,
    ) -> Result<Values> {
        KMeans::quantize_values_on(self, values, exec)
    }
}
