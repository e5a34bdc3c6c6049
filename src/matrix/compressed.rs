//! [`CompressedMatrix`]: a structure and its encoded values.

use ndarray::{Array2, ArrayView2, AsArray, Ix2};

use super::aligned::Aligned;
use super::storage::{Component, StorageReport, METADATA_BYTES};
use super::structure::{ColIndices, Csr, KeptRows, LowRank, Structure};
use super::{RowLayout, Values};
use crate::error::{check_finite, check_non_empty, Result, SquishError};
use crate::matrix::MatrixError;
use crate::parallel::Sequential;

/// A weight matrix of shape `[out, in]` (PyTorch's layout) in compressed form.
///
/// It reports its exact storage, decodes back to dense, and multiplies a batch
/// `x` of shape `[batch, in]` as `y = x · Wᵀ` without becoming dense.
///
/// # `matmul(x)` is `x · Wᵀ`, PyTorch's `Linear`, not ndarray's `dot`
///
/// [`matmul`](Self::matmul) takes activations `x` of shape `[batch, in]` and
/// returns `[batch, out]`, as `torch.nn.functional.linear(x, W)` does. With
/// ndarray the same product is `x.dot(&w.t())`, **not** `w.dot(&x)`:
///
/// ```
/// use ndarray::array;
/// use squish::matrix::CompressedMatrix;
/// let w = array![[1.0f32, 2.0, 3.0], [4.0, 5.0, 6.0]]; // [out = 2, in = 3]
/// let x = array![[1.0f32, 0.0, -1.0]]; // [batch = 1, in = 3]
/// let m = CompressedMatrix::from_dense(&w)?; // anything ndarray can view
/// assert_eq!(m.matmul(&x)?, x.dot(&w.t())); // [1, 2] = x · Wᵀ
/// # Ok::<(), squish::SquishError>(())
/// ```
///
/// ```
/// use ndarray::array;
/// use squish::matrix::CompressedMatrix;
/// let w = array![[1.0f32, 0.0, -2.0], [0.5, 3.0, 0.0]];
/// let m = CompressedMatrix::from_dense(w.view()).unwrap();
/// let x = array![[1.0f32, 1.0, 1.0]];
/// assert_eq!(m.matmul(x.view()).unwrap(), array![[-1.0f32, 3.5]]);
/// assert_eq!(m.storage().total(), 6 * 4 + 16);
/// ```
#[derive(Clone, Debug, PartialEq)]
pub struct CompressedMatrix {
    rows: usize,
    cols: usize,
    structure: Structure,
    /// `None` exactly when the structure is low rank.
    values: Option<Values>,
}

impl CompressedMatrix {
    /// A dense f32 matrix (an owned array, a reference to one, or a view);
    /// rejects empty matrices and NaN/Inf.
    pub fn from_dense<'a>(w: impl AsArray<'a, f32, Ix2>) -> Result<Self> {
        let w: ArrayView2<'a, f32> = w.into();
        let (rows, cols) = w.dim();
        check_non_empty("weight matrix", rows, cols)?;
        let data: Vec<f32> = w.iter().copied().collect();
        check_finite("weight matrix", &data)?;
        let values = Values::f32(RowLayout::Uniform { rows, len: cols }, data)?;
        Ok(CompressedMatrix {
            rows,
            cols,
            structure: Structure::Dense,
            values: Some(values),
        })
    }

    /// [`from_dense`](Self::from_dense) of `rows × cols` row-major values,
    /// without copying them.
    pub(crate) fn from_dense_vec(rows: usize, cols: usize, data: Aligned<f32>) -> Result<Self> {
        check_non_empty("weight matrix", rows, cols)?;
        if data.len() != rows * cols {
            return Err(SquishError::shape(
                "weight matrix",
                format!("{rows}×{cols} = {} values", rows * cols),
                format!("{} values", data.len()),
            ));
        }
        check_finite("weight matrix", &data[..])?;
        // Checked above: the length fits the layout and every value is finite.
        let values = Values::F32(super::values::F32Values {
            layout: RowLayout::Uniform { rows, len: cols },
            data,
            prepacked: Default::default(),
        });
        Ok(CompressedMatrix {
            rows,
            cols,
            structure: Structure::Dense,
            values: Some(values),
        })
    }

    /// The row-major values of a dense f32 matrix, given back.
    pub(crate) fn into_dense_data(self) -> Option<Aligned<f32>> {
        match (self.structure, self.values) {
            (Structure::Dense, Some(Values::F32(v))) => Some(v.data),
            _ => None,
        }
    }

    /// The row-major values of a dense f32 matrix.
    pub(crate) fn dense_data(&self) -> Option<&[f32]> {
        match (&self.structure, &self.values) {
            (Structure::Dense, Some(Values::F32(v))) => Some(&v.data),
            _ => None,
        }
    }

    /// Assembles a matrix from a (non-low-rank) structure and values, checking
    /// that the values' layout is the one the structure stores.
    pub fn from_parts(
        rows: usize,
        cols: usize,
        structure: Structure,
        values: Values,
    ) -> Result<Self> {
        check_non_empty("compressed matrix", rows, cols)?;
        let layout = structure.value_layout(rows, cols).ok_or_else(|| {
            SquishError::inconsistent(
                "compressed matrix",
                "use CompressedMatrix::low_rank for factors",
            )
        })?;
        if &layout != values.layout() {
            return Err(SquishError::inconsistent(
                "compressed matrix",
                format!(
                    "{} structure stores {} values in {} rows; the values have {} in {} rows",
                    structure.kind(),
                    layout.total(),
                    layout.rows(),
                    values.len(),
                    values.layout().rows()
                ),
            ));
        }
        Ok(CompressedMatrix {
            rows,
            cols,
            structure,
            values: Some(values),
        })
    }

    /// W = A·B from two factors of shapes `[out, r]` and `[r, in]`; an
    /// error when the factors' product could leave f32 (finite factors can
    /// still multiply to infinity: a hostile file, issue #20).
    pub fn low_rank(a: CompressedMatrix, b: CompressedMatrix) -> Result<Self> {
        if a.cols != b.rows {
            return Err(SquishError::shape(
                "low-rank factors",
                format!("B with {} rows", a.cols),
                format!("B with {} rows", b.rows),
            ));
        }
        check_product_finite(&a, &b)?;
        Ok(CompressedMatrix {
            rows: a.rows,
            cols: b.cols,
            structure: Structure::LowRank(Box::new(LowRank { a, b })),
            values: None,
        })
    }

    /// CSR matrix holding the entries of `w` where `keep` is true (f32 values).
    pub fn csr_from_mask<'a>(
        w: impl AsArray<'a, f32, Ix2>,
        keep: impl AsArray<'a, bool, Ix2>,
    ) -> Result<Self> {
        let w: ArrayView2<'a, f32> = w.into();
        let keep: ArrayView2<'a, bool> = keep.into();
        let (rows, cols) = w.dim();
        check_non_empty("weight matrix", rows, cols)?;
        if keep.dim() != w.dim() {
            return Err(SquishError::shape(
                "mask",
                format!("{rows}x{cols}"),
                format!("{:?}", keep.dim()),
            ));
        }
        let mut row_ptr = Vec::with_capacity(rows + 1);
        let mut cols_idx = Vec::new();
        let mut data = Vec::new();
        row_ptr.push(0u32);
        for (wr, kr) in w.outer_iter().zip(keep.outer_iter()) {
            for (j, (&v, &k)) in wr.iter().zip(kr.iter()).enumerate() {
                if k {
                    cols_idx.push(j);
                    data.push(v);
                }
            }
            row_ptr.push(
                u32::try_from(data.len())
                    .map_err(|_| SquishError::from(MatrixError::CsrTooManyValues(data.len())))?,
            );
        }
        check_finite("weight matrix", &data)?;
        let csr = Csr::new(rows, cols, row_ptr, ColIndices::for_cols(cols, cols_idx)?)?;
        let values = Values::f32(RowLayout::Ragged(csr.row_ptr.clone()), data)?;
        Self::from_parts(rows, cols, Structure::Csr(csr), values)
    }

    /// A kept-rows matrix: the rows of `w` listed in `kept` (increasing).
    pub fn kept_rows<'a>(w: impl AsArray<'a, f32, Ix2>, kept: Vec<u32>) -> Result<Self> {
        let w: ArrayView2<'a, f32> = w.into();
        let (rows, cols) = w.dim();
        check_non_empty("weight matrix", rows, cols)?;
        let k = KeptRows::new(rows, kept)?;
        let mut data = Vec::with_capacity(k.rows.len() * cols);
        for &r in &k.rows {
            data.extend(w.row(r as usize).iter().copied());
        }
        let values = Values::f32(
            RowLayout::Uniform {
                rows: k.rows.len(),
                len: cols,
            },
            data,
        )?;
        Self::from_parts(rows, cols, Structure::KeptRows(k), values)
    }

    /// Number of rows (outputs).
    pub fn rows(&self) -> usize {
        self.rows
    }

    /// Number of columns (inputs).
    pub fn cols(&self) -> usize {
        self.cols
    }

    /// `(rows, cols)`.
    pub fn shape(&self) -> (usize, usize) {
        (self.rows, self.cols)
    }

    /// The structure.
    pub fn structure(&self) -> &Structure {
        &self.structure
    }

    /// The stored values (`None` for low rank: see its factors).
    pub fn values(&self) -> Option<&Values> {
        self.values.as_ref()
    }

    /// Name of the value encoding ("factored" for low rank).
    pub fn encoding(&self) -> &'static str {
        self.values.as_ref().map_or("factored", Values::kind)
    }

    /// Exact storage by component.
    pub fn storage(&self) -> StorageReport {
        let mut r = StorageReport::new(self.rows * self.cols);
        r.add(Component::Metadata, METADATA_BYTES);
        self.structure.account(&mut r);
        if let Some(v) = &self.values {
            v.account(&mut r);
        }
        r
    }

    /// Decodes logical row `i` of W into `out` (length `cols`).
    pub fn decode_row(&self, i: usize, out: &mut [f32]) {
        debug_assert_eq!(out.len(), self.cols);
        let values = self.values.as_ref();
        match &self.structure {
            Structure::Dense => values.unwrap().decode_row(i, out),
            Structure::Csr(c) => {
                out.fill(0.0);
                let v = values.unwrap();
                let r = v.layout().range(i);
                let mut buf = vec![0.0; r.len()];
                v.decode_row(i, &mut buf);
                for (k, x) in r.zip(buf) {
                    out[c.col_idx.get(k)] = x;
                }
            }
            Structure::NM(s) => {
                out.fill(0.0);
                let v = values.unwrap();
                let r = v.layout().range(i);
                let mut buf = vec![0.0; r.len()];
                v.decode_row(i, &mut buf);
                for (t, (k, x)) in r.zip(buf).enumerate() {
                    let group = t / s.n;
                    out[group * s.m + s.positions.get(k) as usize] = x;
                }
            }
            Structure::KeptRows(k) => match k.rows.binary_search(&(i as u32)) {
                Ok(pos) => values.unwrap().decode_row(pos, out),
                Err(_) => out.fill(0.0),
            },
            Structure::LowRank(lr) => {
                let r = lr.rank();
                let mut a_row = vec![0.0; r];
                lr.a.decode_row(i, &mut a_row);
                let mut b_row = vec![0.0; self.cols];
                out.fill(0.0);
                for (t, &a) in a_row.iter().enumerate() {
                    lr.b.decode_row(t, &mut b_row);
                    out.iter_mut().zip(&b_row).for_each(|(o, &b)| *o += a * b);
                }
            }
        }
    }

    /// The dense matrix this represents.
    pub fn to_dense(&self) -> Array2<f32> {
        let mut w = Array2::zeros((self.rows, self.cols));
        for (i, mut row) in w.outer_iter_mut().enumerate() {
            self.decode_row(i, row.as_slice_mut().expect("fresh arrays are contiguous"));
        }
        w
    }

    // `matmul` and `matmul_with` (the fastest kernel for each pair) are
    // defined with the kernel dispatch, in `crate::kernels`, above the core.

    /// `y = x · Wᵀ` through the plain reference kernel (decodes one row of W
    /// at a time). Every fast kernel is tested against this.
    pub fn matmul_reference<'a>(&self, x: impl AsArray<'a, f32, Ix2>) -> Result<Array2<f32>> {
        let x = x.into();
        self.check_input(x)?;
        Ok(super::reference::matmul(self, x, &Sequential))
    }

    /// Checks a matmul input: `[batch, cols]`, batch ≥ 1, finite.
    pub(crate) fn check_input(&self, x: ArrayView2<f32>) -> Result<()> {
        if x.ncols() != self.cols {
            return Err(SquishError::shape(
                "matmul x·Wᵀ",
                format!("x with {} columns", self.cols),
                format!("x of shape {}x{}", x.nrows(), x.ncols()),
            ));
        }
        check_non_empty("matmul input", x.nrows(), x.ncols())?;
        // A contiguous input is checked as a slice (vectorized).
        match x.as_slice() {
            Some(s) => crate::error::check_finite_slice("matmul input", s),
            None => check_finite("matmul input", x.iter()),
        }
    }

    /// Replaces the stored values through `f`, keeping the structure; for low
    /// rank, applies `f` to each factor. `f` must return values with the same
    /// layout.
    pub fn map_values(&self, f: &dyn Fn(&Values) -> Result<Values>) -> Result<Self> {
        match &self.structure {
            Structure::LowRank(lr) => Self::low_rank(lr.a.map_values(f)?, lr.b.map_values(f)?),
            s => {
                let v = f(self.values.as_ref().expect("stored structures hold values"))?;
                Self::from_parts(self.rows, self.cols, s.clone(), v)
            }
        }
    }
}

/// Every entry of `A·B`, and every partial sum a kernel forms on the way,
/// is at most `Σ_k |A_ik|·|B_kj| ≤ ‖A_i‖·‖Bʲ‖` (Cauchy–Schwarz): when the
/// largest row norm of `A` times the largest column norm of `B` (in f64)
/// stays within f32, the product does; otherwise the sums `Σ_k |A_ik||B_kj|`
/// themselves decide (an f64 product, only in that rare case).
fn check_product_finite(a: &CompressedMatrix, b: &CompressedMatrix) -> Result<()> {
    let (a, b) = (a.to_dense().mapv(f64::from), b.to_dense().mapv(f64::from));
    let norm = |v: ndarray::ArrayView1<f64>| v.dot(&v).sqrt();
    let ra = a.rows().into_iter().map(norm).fold(0.0, f64::max);
    let cb = b.columns().into_iter().map(norm).fold(0.0, f64::max);
    if ra * cb <= f32::MAX as f64 {
        return Ok(());
    }
    let worst = a
        .mapv(f64::abs)
        .dot(&b.mapv(f64::abs))
        .fold(0.0f64, |m, &v| m.max(v));
    if worst <= f32::MAX as f64 {
        return Ok(());
    }
    Err(SquishError::inconsistent(
        "low-rank factors",
        format!("entries of A·B reach up to {worst:e} in magnitude, beyond f32's range"),
    ))
}
