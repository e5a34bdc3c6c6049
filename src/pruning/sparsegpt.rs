//! SparseGPT (Frantar & Alistarh, 2023): pruning that reconstructs the
//! surviving weights so the layer output on calibration data stays close.
//!
//! The columns are visited in blocks of `block`. At the start of a block the
//! mask is chosen from the OBS saliency `w² / U_kk²` of the block's current
//! (already updated) weights; then each column is fixed (pruned weights to
//! 0, kept ones optionally rounded by a quantizer) and the error is spread
//! over the columns still free through the upper Cholesky factor `U` of
//! `(H + λI)⁻¹`, exactly as in GPTQ.
//!
//! Unlike the reference code, which compares saliencies over all rows of a
//! block, each row prunes its own share of every block (`⌊s·n⌋` weights a
//! row in all, the "per output" comparison group Wanda found better): rows
//! stay independent, so the work splits into fixed chunks of rows and the
//! result does not depend on the executor.

use ndarray::{s, Array2, ArrayView2, AsArray, Ix2};

use super::magnitude::check_sparsity;
use super::PruningError;
use crate::error::{Result, SquishError};
use crate::matrix::{
    check_obs_inputs, index_bits, obs_sweep, CompressedMatrix, InverseHessian, ObsColumns,
    PackedBits, RowLayout, Structure, Values, NM,
};
use crate::parallel::{map, ParallelExecutor};
use crate::pass::{DataAware, LayerStats};

/// Rows per task: fixed, so the split does not depend on the thread count.
const ROWS_PER_TASK: usize = 64;

/// Which weights SparseGPT removes.
#[derive(Clone, Copy, Debug, PartialEq)]
pub enum SparsityPattern {
    /// A fraction `s ∈ [0, 1)` of every row, anywhere (output CSR).
    Unstructured(f64),
    /// `n` kept in every `m` consecutive inputs (output N:M).
    NM {
        /// Kept per group.
        n: usize,
        /// Group length.
        m: usize,
    },
}

/// Unchecked hyperparameters of [`SparseGpt`].
#[derive(Clone, Debug, PartialEq)]
pub struct SparseGptParams {
    pattern: SparsityPattern,
    damp: f64,
    block: usize,
    act_order: bool,
}

/// A checked SparseGPT pruner.
///
/// ```
/// use ndarray::array;
/// use squish::parallel::Sequential;
/// use squish::pruning::SparseGpt;
/// let w = array![[0.9f32, -0.35, 0.2, 0.05], [0.1, 0.7, -0.6, 0.3]];
/// let x = array![[1.0f64, 0.9, 0.0, 0.1], [0.5, 0.6, 1.0, 0.0], [-1.0, -1.1, 0.2, 0.3]];
/// let h = x.t().dot(&x);
/// let p = SparseGpt::nm(2, 4).check().unwrap();
/// let out = p.prune(w.view(), h.view(), &Sequential).unwrap();
/// assert_eq!(out.matrix.structure().kind(), "n:m");
/// let d = out.matrix.to_dense();
/// assert!(d.outer_iter().all(|r| r.iter().filter(|&&v| v != 0.0).count() <= 2));
/// ```
#[derive(Clone, Debug, PartialEq)]
pub struct SparseGpt {
    params: SparseGptParams,
}

/// The pruned (and reconstructed) matrix and the OBS loss estimate.
#[derive(Clone, Debug)]
pub struct SparseGptOutput {
    /// CSR (unstructured) or N:M, f32 values.
    pub matrix: CompressedMatrix,
    /// `½ Σ (w_k − q_k)² / U_kk²`: the predicted increase of the objective.
    pub loss: f64,
}

/// A rounding of kept weights for joint sparsity + quantization: `(row,
/// column, value) ↦ value on the grid`.
pub type Rounder<'a> = &'a (dyn Fn(usize, usize, f32) -> f32 + Sync);

impl SparseGpt {
    /// Unstructured sparsity `s` (blocks of 128, 1 % dampening).
    pub fn unstructured(sparsity: f64) -> SparseGptParams {
        SparseGptParams {
            pattern: SparsityPattern::Unstructured(sparsity),
            damp: 0.01,
            block: 128,
            act_order: false,
        }
    }

    /// `n` of every `m` kept (2:4 for sparse tensor cores).
    pub fn nm(n: usize, m: usize) -> SparseGptParams {
        SparseGptParams {
            pattern: SparsityPattern::NM { n, m },
            damp: 0.01,
            block: 128,
            act_order: false,
        }
    }

    /// The pattern.
    pub fn pattern(&self) -> SparsityPattern {
        self.params.pattern
    }

    /// Short description, e.g. `"sparsegpt 50%"` or `"sparsegpt 2:4"`.
    pub fn name(&self) -> String {
        let order = if self.params.act_order {
            " act-order"
        } else {
            ""
        };
        match self.params.pattern {
            SparsityPattern::Unstructured(s) => format!("sparsegpt {:.0}%{order}", s * 100.0),
            SparsityPattern::NM { n, m } => format!("sparsegpt {n}:{m}{order}"),
        }
    }

    /// Prunes `w` (`[out, in]`) against the calibration Hessian `h` (`[in, in]`).
    pub fn prune<'a>(
        &self,
        w: impl AsArray<'a, f32, Ix2>,
        h: impl AsArray<'a, f64, Ix2>,
        exec: &dyn ParallelExecutor,
    ) -> Result<SparseGptOutput> {
        let w: ArrayView2<'a, f32> = w.into();
        let h: ArrayView2<'a, f64> = h.into();
        self.prune_rounded(w, h, exec, &|_, _, v| v)
    }

    /// Joint sparsity and quantization: kept weights are replaced by
    /// `round(row, col, value)` as they are fixed, and the rounding error is
    /// compensated like the pruning error. The values come back in f32 (on
    /// the grid); re-encode them with the same quantizer parameters.
    pub fn prune_rounded<'a>(
        &self,
        w: impl AsArray<'a, f32, Ix2>,
        h: impl AsArray<'a, f64, Ix2>,
        exec: &dyn ParallelExecutor,
        round: Rounder<'_>,
    ) -> Result<SparseGptOutput> {
        let w: ArrayView2<'a, f32> = w.into();
        let h: ArrayView2<'a, f64> = h.into();
        check_obs_inputs("SparseGPT", w, h)?;
        let (rows, n) = w.dim();
        let mut block = self.params.block;
        if let SparsityPattern::NM { m, .. } = self.params.pattern {
            if !n.is_multiple_of(m) {
                return Err(PruningError::GroupLength { m, cols: n }.into());
            }
            // Groups never straddle a block.
            block = block.div_ceil(m) * m;
        }
        // Processing order: natural, or decreasing H_jj (N:M: whole groups
        // by decreasing Σ H_jj, so every group stays contiguous).
        let perm: Option<Vec<usize>> = self.params.act_order.then(|| {
            let m = match self.params.pattern {
                SparsityPattern::NM { m, .. } => m,
                SparsityPattern::Unstructured(_) => 1,
            };
            let weight = |g: usize| (g * m..(g + 1) * m).map(|j| h[[j, j]]).sum::<f64>();
            let mut groups: Vec<usize> = (0..n / m).collect();
            groups.sort_by(|&a, &b| weight(b).total_cmp(&weight(a)).then(a.cmp(&b)));
            groups.iter().flat_map(|&g| g * m..(g + 1) * m).collect()
        });
        let ih = InverseHessian::new(h, self.params.damp, perm.as_deref())?;
        let order: Vec<usize> = perm.unwrap_or_else(|| (0..n).collect());
        let upper = ih.upper();
        let upper = upper.as_standard_layout();
        let dead: Vec<bool> = order.iter().map(|&j| ih.dead()[j]).collect();
        let round_p = |r: usize, k: usize, v: f32| round(r, order[k], v);
        let tasks = rows.div_ceil(ROWS_PER_TASK);
        let parts = map(exec, tasks, |t| {
            let r0 = t * ROWS_PER_TASK;
            let r1 = (r0 + ROWS_PER_TASK).min(rows);
            let wc = w.slice(s![r0..r1, ..]);
            let wp = Array2::from_shape_fn((r1 - r0, n), |(r, k)| wc[[r, order[k]]]);
            self.run(wp, r0, upper.view(), &dead, block, &round_p)
        });
        let mut q = Array2::<f32>::zeros((rows, n));
        let mut keep = Array2::<bool>::from_elem((rows, n), false);
        let mut loss = 0.0;
        for (t, (qc, kc, l)) in parts.into_iter().enumerate() {
            let r0 = t * ROWS_PER_TASK;
            for (k, &j) in order.iter().enumerate() {
                for r in 0..qc.nrows() {
                    q[[r0 + r, j]] = qc[[r, k]];
                    keep[[r0 + r, j]] = kc[[r, k]];
                }
            }
            loss += l;
        }
        let matrix = match self.params.pattern {
            SparsityPattern::Unstructured(_) => {
                CompressedMatrix::csr_from_mask(q.view(), keep.view())?
            }
            SparsityPattern::NM { n: keep_n, m } => nm_from_mask(q.view(), keep.view(), keep_n, m)?,
        };
        Ok(SparseGptOutput {
            matrix,
            loss: loss / 2.0,
        })
    }

    /// One chunk of rows, its columns in processing order.
    fn run(
        &self,
        mut wp: Array2<f32>,
        r0: usize,
        u: ArrayView2<f32>,
        dead: &[bool],
        block: usize,
        round: Rounder<'_>,
    ) -> (Array2<f32>, Array2<bool>, f64) {
        let (rc, n) = wp.dim();
        for (j, _) in dead.iter().enumerate().filter(|(_, &d)| d) {
            wp.column_mut(j).fill(0.0);
        }
        let mut cols = Masks {
            pattern: self.params.pattern,
            keep: Array2::<bool>::from_elem((rc, n), true),
            order: Vec::with_capacity(block),
            score: vec![0.0f32; block],
            r0,
            round,
        };
        let loss = obs_sweep(&mut wp, u, block, &mut cols);
        (wp, cols.keep, loss)
    }
}

/// SparseGPT's decisions in the shared OBS sweep: masks by the saliency
/// `w² / U_kk²` of the current weights (unstructured: each block's, when it
/// starts; N:M: each group's, when its first column is reached), pruned
/// weights to 0, kept ones through the rounder.
struct Masks<'a> {
    pattern: SparsityPattern,
    keep: Array2<bool>,
    order: Vec<usize>,
    score: Vec<f32>,
    /// First row of the chunk (for the rounder).
    r0: usize,
    round: Rounder<'a>,
}

impl Masks<'_> {
    /// Prunes, in every row, the `count` least salient weights of each run
    /// of `step` columns in `b..e`.
    fn select(
        &mut self,
        b: usize,
        e: usize,
        step: usize,
        count: usize,
        w: &Array2<f32>,
        u: ArrayView2<f32>,
    ) {
        for r in 0..w.nrows() {
            for k in b..e {
                let (x, d) = (w[[r, k]], u[[k, k]]);
                self.score[k - b] = x * x / (d * d);
            }
            for lo in (b..e).step_by(step) {
                self.order.clear();
                self.order.extend(lo..(lo + step).min(e));
                // Ascending (saliency, position): the first ones go.
                let score = &self.score;
                self.order.sort_unstable_by(|&a, &c| {
                    score[a - b].total_cmp(&score[c - b]).then(a.cmp(&c))
                });
                for &k in &self.order[..count] {
                    self.keep[[r, k]] = false;
                }
            }
        }
    }
}

impl ObsColumns for Masks<'_> {
    fn block(&mut self, b: usize, e: usize, w: &Array2<f32>, u: ArrayView2<f32>) {
        if let SparsityPattern::Unstructured(s) = self.pattern {
            // Cumulative targets ⌊s·e⌋ − ⌊s·b⌋: each row ends with exactly
            // ⌊s·n⌋ pruned weights.
            let cut = |c: usize| (s * c as f64).floor() as usize;
            self.select(b, e, e - b, cut(e) - cut(b), w, u);
        }
    }

    fn column(&mut self, k: usize, w: &Array2<f32>, u: ArrayView2<f32>) {
        if let SparsityPattern::NM { n, m } = self.pattern {
            if k.is_multiple_of(m) {
                self.select(k, k + m, m, m - n, w, u);
            }
        }
    }

    fn fix(&mut self, r: usize, k: usize, x: f32) -> f32 {
        if self.keep[[r, k]] {
            (self.round)(self.r0 + r, k, x)
        } else {
            0.0
        }
    }
}

impl DataAware for SparseGpt {
    fn name(&self) -> String {
        SparseGpt::name(self)
    }

    fn compress(
        &self,
        w: ArrayView2<f32>,
        stats: &LayerStats,
        exec: &dyn ParallelExecutor,
    ) -> Result<CompressedMatrix> {
        Ok(self.prune(w, stats.hessian(), exec)?.matrix)
    }
}

/// The N:M structure holding the kept entries of `q` (exactly `n` kept in
/// every group of `m`, as `keep` says).
pub fn nm_from_mask<'a>(
    q: impl AsArray<'a, f32, Ix2>,
    keep: impl AsArray<'a, bool, Ix2>,
    n: usize,
    m: usize,
) -> Result<CompressedMatrix> {
    let q: ArrayView2<'a, f32> = q.into();
    let keep: ArrayView2<'a, bool> = keep.into();
    let (rows, cols) = q.dim();
    if keep.dim() != q.dim() || !cols.is_multiple_of(m) {
        return Err(SquishError::shape(
            "N:M mask",
            format!("a {rows}x{cols} mask, {m} dividing {cols}"),
            format!("{:?}", keep.dim()),
        ));
    }
    let mut pos = Vec::with_capacity(rows * cols / m * n);
    let mut values = Vec::with_capacity(rows * cols / m * n);
    for (qr, kr) in q.outer_iter().zip(keep.outer_iter()) {
        for g in (0..cols).step_by(m) {
            if (0..m).filter(|&p| kr[g + p]).count() != n {
                return Err(SquishError::inconsistent(
                    "N:M mask",
                    format!("every group of {m} must keep exactly {n}"),
                ));
            }
            for p in 0..m {
                if kr[g + p] {
                    pos.push(p as u16);
                    values.push(qr[g + p]);
                }
            }
        }
    }
    let positions = PackedBits::pack(index_bits(m), &pos)?;
    let nm = NM::new(rows, cols, n, m, positions)?;
    let layout = RowLayout::Uniform {
        rows,
        len: cols / m * n,
    };
    CompressedMatrix::from_parts(rows, cols, Structure::NM(nm), Values::f32(layout, values)?)
}

impl SparseGptParams {
    /// Dampening: `λ = frac · mean(diag H)` is added to the diagonal (0.01 default).
    pub fn damp(mut self, frac: f64) -> Self {
        self.damp = frac;
        self
    }

    /// Columns per mask selection and lazy update (128 default; rounded up
    /// to a multiple of `m` for N:M).
    pub fn block(mut self, block: usize) -> Self {
        self.block = block;
        self
    }

    /// Visit the columns in order of decreasing `H_jj` (for N:M, whole
    /// groups of `m` in order of decreasing `Σ H_jj`, positions kept), as
    /// GPTQ's act-order: the inputs that matter most are fixed first, while
    /// the most columns are still free to absorb their error.
    pub fn act_order(mut self, on: bool) -> Self {
        self.act_order = on;
        self
    }

    /// Validates: sparsity in [0, 1) or 0 < n < m ≤ 65 536; block ≥ 1;
    /// dampening finite and ≥ 0.
    pub fn check(self) -> Result<SparseGpt> {
        match self.pattern {
            SparsityPattern::Unstructured(s) => check_sparsity(s)?,
            SparsityPattern::NM { n, m } => {
                if n == 0 || n >= m || m > 1 << 16 {
                    return Err(SquishError::invalid(
                        "n",
                        n,
                        format!("N:M needs 0 < N < M ≤ 65 536 (M = {m})"),
                    ));
                }
            }
        }
        crate::matrix::check_obs_knobs(self.block, self.damp)?;
        Ok(SparseGpt { params: self })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::matrix::obs_testing::{correlated_x, inverse, objective, random};
    use crate::parallel::{Sequential, ThreadPool};
    use rand::{Rng, SeedableRng};
    use rand_chacha::ChaCha8Rng;

    fn correlated_h(samples: usize, n: usize, seed: u64) -> Array2<f64> {
        let x = correlated_x(samples, n, seed);
        x.t().dot(&x)
    }

    #[test]
    fn zero_sparsity_returns_w() {
        let w = random(70, 40, 1);
        let h = correlated_h(80, 40, 2);
        let out = SparseGpt::unstructured(0.0)
            .check()
            .unwrap()
            .prune(w.view(), h.view(), &Sequential)
            .unwrap();
        assert_eq!(out.matrix.to_dense(), w);
        assert_eq!(out.loss, 0.0);
    }

    #[test]
    fn exact_counts_and_valid_nm() {
        let (rows, n) = (130, 96);
        let w = random(rows, n, 3);
        let h = correlated_h(200, n, 4);
        for s in [0.3, 0.5, 0.77] {
            let out = SparseGpt::unstructured(s)
                .block(40)
                .check()
                .unwrap()
                .prune(w.view(), h.view(), &Sequential)
                .unwrap();
            let Structure::Csr(c) = out.matrix.structure() else {
                panic!("CSR expected")
            };
            let per_row = n - (s * n as f64).floor() as usize;
            assert_eq!(c.nnz(), rows * per_row);
            assert!(c
                .row_ptr()
                .windows(2)
                .all(|p| (p[1] - p[0]) as usize == per_row));
        }
        let out = SparseGpt::nm(2, 4)
            .block(30)
            .check()
            .unwrap()
            .prune(w.view(), h.view(), &Sequential)
            .unwrap();
        assert_eq!(out.matrix.structure().kind(), "n:m");
        let d = out.matrix.to_dense();
        for row in d.outer_iter() {
            for g in row.as_slice().unwrap().chunks(4) {
                assert!(g.iter().filter(|&&v| v != 0.0).count() <= 2);
            }
        }
        assert!(SparseGpt::nm(2, 4)
            .check()
            .unwrap()
            .prune(w.slice(s![.., ..94]), h.slice(s![..94, ..94]), &Sequential)
            .is_err());
        assert!(SparseGpt::nm(4, 4).check().is_err());
        assert!(SparseGpt::unstructured(1.0).check().is_err());
    }

    #[test]
    fn reconstruction_beats_mask_only_on_correlated_inputs() {
        for seed in 0..16u64 {
            let n = 48;
            let w = random(20, n, 10 + seed);
            let h = correlated_h(150, n, 30 + seed);
            for p in [SparseGpt::unstructured(0.5), SparseGpt::nm(2, 4)] {
                let out = p
                    .clone()
                    .check()
                    .unwrap()
                    .prune(w.view(), h.view(), &Sequential)
                    .unwrap();
                let d = out.matrix.to_dense();
                // The same mask without reconstruction.
                let masked =
                    Array2::from_shape_fn(
                        w.dim(),
                        |(i, j)| if d[[i, j]] != 0.0 { w[[i, j]] } else { 0.0 },
                    );
                let (a, b) = (objective(&w, &d, &h), objective(&w, &masked, &h));
                assert!(a < b, "seed {seed}: {a} vs mask only {b}");
                // Magnitude with the same pattern (per row, or N:M).
                let mag = match p.clone().check().unwrap().pattern() {
                    SparsityPattern::NM { n: kn, m } => {
                        let keep = crate::pruning::NMPruner::params(kn, m).check().unwrap();
                        let keep = crate::pruning::Pruner::mask(&keep, w.view()).unwrap();
                        Array2::from_shape_fn(
                            w.dim(),
                            |(i, j)| if keep[[i, j]] { w[[i, j]] } else { 0.0 },
                        )
                    }
                    SparsityPattern::Unstructured(_) => Array2::from_shape_fn(w.dim(), |(i, j)| {
                        let mut v: Vec<f32> = w.row(i).iter().map(|x| x.abs()).collect();
                        v.sort_by(f32::total_cmp);
                        if w[[i, j]].abs() >= v[n / 2] {
                            w[[i, j]]
                        } else {
                            0.0
                        }
                    }),
                };
                assert!(a < objective(&w, &mag, &h), "seed {seed}");
            }
        }
    }

    /// With one block spanning the row, the mask comes from the original
    /// weights and the updates are the explicit OBS ones: compare with a
    /// naive f64 implementation that downdates H⁻¹ column by column.
    #[test]
    fn matches_explicit_obs_reference() {
        let (rows, n) = (12, 20);
        let w = random(rows, n, 5);
        let h = correlated_h(60, n, 6);
        let out = SparseGpt::unstructured(0.5)
            .block(n)
            .check()
            .unwrap()
            .prune(w.view(), h.view(), &Sequential)
            .unwrap();
        let got = out.matrix.to_dense();
        let mean = (0..n).map(|j| h[[j, j]]).sum::<f64>() / n as f64;
        let hd = &h + &(Array2::<f64>::eye(n) * (0.01 * mean));
        let mut want = Array2::<f32>::zeros((rows, n));
        for r in 0..rows {
            let mut row: Vec<f64> = w.row(r).iter().map(|&v| v as f64).collect();
            // Saliency with [(H_{k:,k:})⁻¹]_kk = U_kk².
            let mut sal: Vec<(f64, usize)> = (0..n)
                .map(|k| {
                    let sub = hd.slice(s![k.., k..]).to_owned();
                    (row[k] * row[k] / inverse(&sub)[[0, 0]], k)
                })
                .collect();
            sal.sort_by(|a, b| a.0.total_cmp(&b.0).then(a.1.cmp(&b.1)));
            let pruned: Vec<bool> = {
                let mut p = vec![false; n];
                sal[..n / 2].iter().for_each(|&(_, k)| p[k] = true);
                p
            };
            let mut hinv = inverse(&hd);
            for k in 0..n {
                let q = if pruned[k] { 0.0 } else { row[k] };
                want[[r, k]] = q as f32;
                let e = (row[k] - q) / hinv[[k, k]];
                for j in k + 1..n {
                    row[j] -= e * hinv[[k, j]];
                }
                let hk = hinv.row(k).to_owned();
                for a in k..n {
                    for b in k..n {
                        hinv[[a, b]] -= hk[a] * hk[b] / hk[k];
                    }
                }
            }
        }
        for (a, b) in got.iter().zip(want.iter()) {
            assert!((a - b).abs() < 1e-3 * (1.0 + b.abs()), "{a} vs {b}");
        }
    }

    #[test]
    fn act_order_keeps_valid_patterns_and_with_diagonal_h_changes_nothing() {
        let (rows, n) = (70, 48);
        let w = random(rows, n, 11);
        let h = correlated_h(120, n, 12);
        let mut rng = ChaCha8Rng::seed_from_u64(13);
        let diag = Array2::from_diag(&ndarray::Array1::from_shape_fn(n, |_| {
            rng.random_range(0.1..5.0f64)
        }));
        for p in [SparseGpt::nm(2, 4), SparseGpt::unstructured(0.5)] {
            let natural = p.clone().check().unwrap();
            let act = p.act_order(true).check().unwrap();
            // Diagonal H: no updates, masks by w²·H_jj in any order.
            assert_eq!(
                act.prune(w.view(), diag.view(), &Sequential)
                    .unwrap()
                    .matrix,
                natural
                    .prune(w.view(), diag.view(), &Sequential)
                    .unwrap()
                    .matrix
            );
            let out = act.prune(w.view(), h.view(), &Sequential).unwrap();
            let par = act
                .prune(w.view(), h.view(), &ThreadPool::new(3).unwrap())
                .unwrap();
            assert_eq!(out.matrix, par.matrix);
            let d = out.matrix.to_dense();
            for row in d.outer_iter() {
                assert_eq!(row.iter().filter(|&&v| v != 0.0).count(), n / 2);
                if act.name().contains("2:4") {
                    for g in row.as_slice().unwrap().chunks(4) {
                        assert_eq!(g.iter().filter(|&&v| v != 0.0).count(), 2);
                    }
                }
            }
            // Reconstruction still beats the mask alone.
            let masked =
                Array2::from_shape_fn(
                    w.dim(),
                    |(i, j)| {
                        if d[[i, j]] != 0.0 {
                            w[[i, j]]
                        } else {
                            0.0
                        }
                    },
                );
            assert!(objective(&w, &d, &h) < objective(&w, &masked, &h));
        }
    }

    #[test]
    fn same_result_on_any_executor_and_safe_on_bad_hessians() {
        let n = 64;
        let w = random(150, n, 7);
        let h = correlated_h(10, n, 8); // singular: dampening makes it usable
        let p = SparseGpt::nm(2, 4).check().unwrap();
        let a = p.prune(w.view(), h.view(), &Sequential).unwrap();
        let b = p
            .prune(w.view(), h.view(), &ThreadPool::new(3).unwrap())
            .unwrap();
        assert_eq!(a.matrix, b.matrix);
        assert!(a.matrix.to_dense().iter().all(|v| v.is_finite()));
        let mut bad = h.clone();
        bad[[0, 1]] = f64::NAN;
        assert!(matches!(
            p.prune(w.view(), bad.view(), &Sequential),
            Err(SquishError::Hessian(_))
        ));
    }
}
