//! GPTQ (Frantar et al., 2022): integer quantization that minimises the
//! layer-output error on calibration data, not the weight error.
//!
//! For each row `w` of `W` and calibration Hessian `H = XᵀX`, GPTQ quantizes
//! the columns one at a time and, after rounding column `k`, moves the
//! columns still free by the optimal-brain-surgeon update
//! `w[k+1..] −= (w_k − q_k)/U_kk · U[k, k+1..]`, with `U` the upper Cholesky
//! factor of `(H + λI)⁻¹`. The update is applied lazily: inside a block of
//! `block` columns immediately, to the rest of the row once per block as one
//! matrix product. Rows are independent, so the work is split into fixed
//! chunks of rows (same result on any executor).

use ndarray::{s, Array2, ArrayView2, AsArray, Ix2};

use super::integer::pack_nibbles;
use super::slice_ops::{quantize_scalar, Grid};
use super::Calibration;
use crate::error::{check_finite, check_non_empty, Result, SquishError};
use crate::matrix::{
    check_obs_inputs, obs_sweep, CompressedMatrix, Granularity, InverseHessian, ObsColumns,
    PackedBits, QuantParams, RowLayout, Structure, Values,
};
use crate::parallel::{map, ParallelExecutor};
use crate::pass::{DataAware, LayerStats};

/// Rows per task: fixed, so the split does not depend on the thread count.
const ROWS_PER_TASK: usize = 64;

/// Unchecked hyperparameters of [`Gptq`]; [`check`](Self::check) validates them.
#[derive(Clone, Debug, PartialEq)]
pub struct GptqParams {
    bits: u8,
    symmetric: bool,
    granularity: Granularity,
    calibration: Calibration,
    damp: f64,
    block: usize,
    act_order: bool,
    static_groups: bool,
}

/// A checked GPTQ quantizer.
///
/// Codes and parameters follow [`IntQuantizer`](super::IntQuantizer)
/// exactly (round half away from zero, symmetric or asymmetric grid, range
/// by [`Calibration`]), so with `H = I` GPTQ returns round-to-nearest's
/// codes. 3-bit codes (`−3..=3` symmetric, `−4..=3` asymmetric) are stored
/// in the int4 container, so every int4 kernel serves them.
///
/// Group parameters: without activation order, a group's range is taken
/// from the (already updated) weights when its first column is reached,
/// as in the reference code; per-row ranges, and groups with
/// [`static_groups`](GptqParams::static_groups), come from the original
/// weights. With [`act_order`](GptqParams::act_order) (columns in order of
/// decreasing `H_jj`) and no static groups, a group's range is taken when
/// the first of its columns is reached, so groups stay contiguous in the
/// stored row as squish's encodings need.
///
/// ```
/// use ndarray::{Array2, array};
/// use squish::parallel::Sequential;
/// use squish::quantization::Gptq;
/// let w = array![[0.9f32, -0.35, 0.2, 0.05], [0.1, 0.7, -0.6, 0.3]];
/// // Inputs 0 and 1 are strongly correlated.
/// let x = array![[1.0f64, 0.9, 0.0, 0.1], [0.5, 0.6, 1.0, 0.0], [-1.0, -1.1, 0.2, 0.3]];
/// let h = x.t().dot(&x);
/// let q = Gptq::params(4).check().unwrap();
/// let out = q.quantize(w.view(), h.view(), &Sequential).unwrap();
/// assert_eq!(out.matrix.encoding(), "int4");
/// assert!(out.loss >= 0.0);
/// ```
#[derive(Clone, Debug, PartialEq)]
pub struct Gptq {
    params: GptqParams,
}

/// What GPTQ returns: the quantized matrix and the OBS loss estimate.
#[derive(Clone, Debug)]
pub struct GptqOutput {
    /// Dense int8 or int4 (int3 codes in the int4 container).
    pub matrix: CompressedMatrix,
    /// `½ Σ (w_k − q_k)² / U_kk²` over all rows and columns: the increase of
    /// the calibration objective GPTQ predicts.
    pub loss: f64,
}

impl Gptq {
    /// Starts a builder for `bits`-bit codes (3, 4 or 8): symmetric, per
    /// row, min-max ranges, 1 % dampening, blocks of 128, natural order.
    pub fn params(bits: u8) -> GptqParams {
        GptqParams {
            bits,
            symmetric: true,
            granularity: Granularity::PerRow,
            calibration: Calibration::MinMax,
            damp: 0.01,
            block: 128,
            act_order: false,
            static_groups: false,
        }
    }

    /// Short description, e.g. `"gptq int4 sym group-128"`.
    pub fn name(&self) -> String {
        let p = &self.params;
        let g = match p.granularity {
            Granularity::PerGroup(g) => format!("group-{g}"),
            _ => "per-row".into(),
        };
        let sym = if p.symmetric { "sym" } else { "asym" };
        let order = if p.act_order { " act-order" } else { "" };
        format!("gptq int{} {sym} {g}{order}", p.bits)
    }

    /// Quantizes `w` (`[out, in]`) against the calibration Hessian `h`
    /// (`[in, in]`, `XᵀX` summed over samples; its scale does not matter).
    /// Work is spread over `exec`; the result does not depend on it.
    pub fn quantize<'a>(
        &self,
        w: impl AsArray<'a, f32, Ix2>,
        h: impl AsArray<'a, f64, Ix2>,
        exec: &dyn ParallelExecutor,
    ) -> Result<GptqOutput> {
        let w: ArrayView2<'a, f32> = w.into();
        let h: ArrayView2<'a, f64> = h.into();
        let p = &self.params;
        check_obs_inputs("GPTQ", w, h)?;
        let (rows, n) = w.dim();
        let perm: Option<Vec<usize>> = p.act_order.then(|| {
            let mut idx: Vec<usize> = (0..n).collect();
            // Decreasing H_jj; ties keep the original order.
            idx.sort_by(|&a, &b| h[[b, b]].total_cmp(&h[[a, a]]).then(a.cmp(&b)));
            idx
        });
        let ih = InverseHessian::new(h, p.damp, perm.as_deref())?;
        let order: Vec<usize> = perm.unwrap_or_else(|| (0..n).collect());
        let g = match p.granularity {
            Granularity::PerGroup(g) => g.min(n),
            _ => n,
        };
        let groups = n.div_ceil(g);
        let grid = Grid::new(p.bits, p.symmetric);
        let upper = ih.upper();
        let upper = upper.as_standard_layout();
        let dead = ih.dead();
        // Static ranges come from the original weights (dead inputs zeroed).
        let fixed_ranges = p.granularity == Granularity::PerRow || p.static_groups;
        let tasks = rows.div_ceil(ROWS_PER_TASK);
        let parts = map(exec, tasks, |t| {
            let r0 = t * ROWS_PER_TASK;
            let r1 = (r0 + ROWS_PER_TASK).min(rows);
            let chunk = Chunk {
                gptq: p,
                grid,
                g,
                groups,
                order: &order,
                dead,
                upper: upper.view(),
            };
            chunk.run(w.slice(s![r0..r1, ..]), fixed_ranges)
        });
        let mut codes = Vec::with_capacity(rows * n);
        let mut scales = Vec::with_capacity(rows * groups);
        let mut zps = Vec::with_capacity(rows * groups);
        let mut loss = 0.0;
        for part in parts {
            codes.extend(part.codes);
            for (s, z) in part.params {
                scales.push(s);
                zps.push(z);
            }
            loss += part.loss;
        }
        Ok(GptqOutput {
            matrix: self.assemble(rows, n, codes, scales, zps)?,
            loss: loss / 2.0,
        })
    }

    /// Round-to-nearest on GPTQ's grid: exactly the codes and parameters
    /// [`quantize`](Self::quantize) returns with `H = I` (no updates), without
    /// factoring `H` (the inner quantizer of [`Awq`](super::Awq)'s search;
    /// the only data-free int3 quantizer).
    ///
    /// ```
    /// use ndarray::{array, Array2};
    /// use squish::parallel::Sequential;
    /// use squish::quantization::Gptq;
    /// let w = array![[0.9f32, -0.35, 0.2, 0.05], [0.1, 0.7, -0.6, 0.3]];
    /// let q = Gptq::params(3).per_group(2).check()?;
    /// let eye = Array2::<f64>::eye(4);
    /// assert_eq!(q.round_to_nearest(w.view())?, q.quantize(w.view(), eye.view(), &Sequential)?.matrix);
    /// # Ok::<(), squish::SquishError>(())
    /// ```
    pub fn round_to_nearest<'a>(&self, w: impl AsArray<'a, f32, Ix2>) -> Result<CompressedMatrix> {
        let w: ArrayView2<'a, f32> = w.into();
        let p = &self.params;
        let (rows, n) = w.dim();
        check_non_empty("weight matrix", rows, n)?;
        check_finite("weight matrix", w.iter())?;
        let g = match p.granularity {
            Granularity::PerGroup(g) => g.min(n),
            _ => n,
        };
        let grid = Grid::new(p.bits, p.symmetric);
        let mut codes = Vec::with_capacity(rows * n);
        let groups = n.div_ceil(g);
        let mut scales = Vec::with_capacity(rows * groups);
        let mut zps = Vec::with_capacity(rows * groups);
        let mut buf = vec![0.0f32; n];
        for row in w.rows() {
            buf.iter_mut().zip(row).for_each(|(b, &v)| *b = v);
            for c in buf.chunks(g) {
                let (lo, hi) = p.calibration.range(c, grid);
                let (s, z) = grid.scale_zero_point(lo, hi);
                codes.extend(
                    c.iter()
                        .map(|&x| quantize_scalar(x, s, z as i32, grid) as i8),
                );
                scales.push(s);
                zps.push(z);
            }
        }
        self.assemble(rows, n, codes, scales, zps)
    }

    /// The dense int8/int4 matrix of `codes` (row-major) and one
    /// `(scale, zero point)` per row and group.
    fn assemble(
        &self,
        rows: usize,
        n: usize,
        codes: Vec<i8>,
        scales: Vec<f32>,
        zps: Vec<i8>,
    ) -> Result<CompressedMatrix> {
        let p = &self.params;
        let g = match p.granularity {
            Granularity::PerGroup(g) => g.min(n),
            _ => n,
        };
        let groups = n.div_ceil(g);
        let layout = RowLayout::Uniform { rows, len: n };
        let granularity = match p.granularity {
            Granularity::PerGroup(_) if groups > 1 => Granularity::PerGroup(g),
            _ => Granularity::PerRow,
        };
        let qp = QuantParams::new(&layout, granularity, scales, (!p.symmetric).then_some(zps))?;
        let values = match p.bits {
            8 => Values::int8(layout, codes, qp)?,
            _ => {
                let len = codes.len();
                let packed = PackedBits::from_bytes(4, len, pack_nibbles(&codes))?;
                Values::int4(layout, packed, qp)?
            }
        };
        CompressedMatrix::from_parts(rows, n, Structure::Dense, values)
    }

    /// The code width (3, 4 or 8).
    pub fn bits(&self) -> u8 {
        self.params.bits
    }
}

impl DataAware for Gptq {
    fn name(&self) -> String {
        Gptq::name(self)
    }

    fn compress(
        &self,
        w: ArrayView2<f32>,
        stats: &LayerStats,
        exec: &dyn ParallelExecutor,
    ) -> Result<CompressedMatrix> {
        Ok(self.quantize(w, stats.hessian(), exec)?.matrix)
    }
}

/// The shared, read-only inputs of one chunk of rows.
struct Chunk<'a> {
    gptq: &'a GptqParams,
    grid: Grid,
    g: usize,
    groups: usize,
    /// `order[k]`: the original column at position `k`.
    order: &'a [usize],
    dead: &'a [bool],
    upper: ArrayView2<'a, f32>,
}

struct ChunkOut {
    codes: Vec<i8>,
    params: Vec<(f32, i8)>,
    loss: f64,
}

impl Chunk<'_> {
    fn range_params(&self, x: &[f32]) -> (f32, i8) {
        let (lo, hi) = self.gptq.calibration.range(x, self.grid);
        self.grid.scale_zero_point(lo, hi)
    }

    fn run(&self, w: ArrayView2<f32>, fixed_ranges: bool) -> ChunkOut {
        let (rc, n) = w.dim();
        let (g, groups) = (self.g, self.groups);
        // Original weights with dead inputs zeroed, in the original order.
        let mut orig = w.to_owned();
        for (j, _) in self.dead.iter().enumerate().filter(|(_, &d)| d) {
            orig.column_mut(j).fill(0.0);
        }
        let mut params: Vec<Option<(f32, i8)>> = vec![None; rc * groups];
        if fixed_ranges {
            for r in 0..rc {
                let row = orig.row(r);
                let row = row.as_slice().expect("owned rows are contiguous");
                for (k, c) in row.chunks(g).enumerate() {
                    params[r * groups + k] = Some(self.range_params(c));
                }
            }
        }
        // Working copy in the processing order.
        let mut wp = Array2::from_shape_fn((rc, n), |(r, k)| orig[[r, self.order[k]]]);
        let mut position = vec![0usize; n];
        for (k, &j) in self.order.iter().enumerate() {
            position[j] = k;
        }
        let mut cols = GptqColumns {
            chunk: self,
            params,
            position,
            codes: vec![0i8; rc * n],
            buf: vec![0.0f32; g],
        };
        let loss = obs_sweep(&mut wp, self.upper, self.gptq.block, &mut cols);
        let GptqColumns {
            params,
            codes: codes_p,
            ..
        } = cols;
        let mut codes = vec![0i8; rc * n];
        for r in 0..rc {
            for (k, &j) in self.order.iter().enumerate() {
                codes[r * n + j] = codes_p[r * n + k];
            }
        }
        ChunkOut {
            codes,
            params: params
                .into_iter()
                .map(|p| p.expect("every group ran"))
                .collect(),
            loss,
        }
    }
}

/// GPTQ's decisions in the shared OBS sweep: a group's range when its
/// first column is reached (unless fixed), then round to the grid.
struct GptqColumns<'a, 'c> {
    chunk: &'c Chunk<'a>,
    /// Range parameters per (row, group), set when first needed.
    params: Vec<Option<(f32, i8)>>,
    /// `position[j]`: where original column `j` is processed.
    position: Vec<usize>,
    /// Codes in the processing order.
    codes: Vec<i8>,
    buf: Vec<f32>,
}

impl ObsColumns for GptqColumns<'_, '_> {
    fn column(&mut self, k: usize, w: &Array2<f32>, _u: ArrayView2<f32>) {
        let c = self.chunk;
        let (g, n) = (c.g, c.order.len());
        let grp = c.order[k] / g;
        if self.params[grp].is_some() {
            return;
        }
        // First column of this group reached: range from the current
        // (updated) weights of the whole group.
        let cols = grp * g..((grp + 1) * g).min(n);
        for r in 0..w.nrows() {
            let row = w.row(r);
            let x = &mut self.buf[..cols.len()];
            for (v, col) in x.iter_mut().zip(cols.clone()) {
                *v = row[self.position[col]];
            }
            self.params[r * c.groups + grp] = Some(c.range_params(x));
        }
    }

    fn fix(&mut self, r: usize, k: usize, x: f32) -> f32 {
        let c = self.chunk;
        let n = c.order.len();
        let grp = c.order[k] / c.g;
        let (s, z) = self.params[r * c.groups + grp].expect("set when the column began");
        let code = quantize_scalar(x, s, z as i32, c.grid);
        self.codes[r * n + k] = code as i8;
        (code - z as i32) as f32 * s
    }
}

impl GptqParams {
    /// Symmetric (zero-point 0, default) or asymmetric codes.
    pub fn symmetric(mut self, symmetric: bool) -> Self {
        self.symmetric = symmetric;
        self
    }

    /// One scale per row (default).
    pub fn per_row(mut self) -> Self {
        self.granularity = Granularity::PerRow;
        self
    }

    /// One scale per group of `g` consecutive inputs of a row.
    pub fn per_group(mut self, g: usize) -> Self {
        self.granularity = Granularity::PerGroup(g);
        self
    }

    /// How each range is chosen (min-max default; [`Calibration::mse`]
    /// searches the clip ratio that minimises the group's weight error).
    pub fn calibration(mut self, c: Calibration) -> Self {
        self.calibration = c;
        self
    }

    /// Dampening: `λ = frac · mean(diag H)` is added to the diagonal (0.01 default).
    pub fn damp(mut self, frac: f64) -> Self {
        self.damp = frac;
        self
    }

    /// Columns per lazy block update (128 default; does not change the result
    /// beyond float rounding).
    pub fn block(mut self, block: usize) -> Self {
        self.block = block;
        self
    }

    /// Quantize columns in order of decreasing `H_jj` ("act-order").
    pub fn act_order(mut self, on: bool) -> Self {
        self.act_order = on;
        self
    }

    /// Group ranges from the original weights, before any update.
    pub fn static_groups(mut self, on: bool) -> Self {
        self.static_groups = on;
        self
    }

    /// Validates: bits ∈ {3, 4, 8}, per-row or per-group ≥ 1, block ≥ 1,
    /// dampening finite and ≥ 0, calibration parameters.
    pub fn check(self) -> Result<Gptq> {
        self.calibration.check()?;
        if !matches!(self.bits, 3 | 4 | 8) {
            return Err(SquishError::invalid(
                "bits",
                self.bits,
                "GPTQ supports 3, 4 and 8 bits",
            ));
        }
        match self.granularity {
            Granularity::PerGroup(0) => {
                return Err(SquishError::invalid("group size", 0, "must be at least 1"))
            }
            Granularity::PerTensor => {
                return Err(SquishError::invalid(
                    "granularity",
                    "per-tensor",
                    "GPTQ quantizes per row or per group",
                ))
            }
            _ => {}
        }
        crate::matrix::check_obs_knobs(self.block, self.damp)?;
        Ok(Gptq { params: self })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::matrix::obs_testing::{correlated_x, inverse, objective, random};
    use crate::parallel::{Sequential, ThreadPool};
    use crate::quantization::{IntQuantizer, Quantizer};
    use rand::{Rng, SeedableRng};
    use rand_chacha::ChaCha8Rng;

    fn rtn(
        w: &Array2<f32>,
        bits: u8,
        sym: bool,
        group: Option<usize>,
        cal: Calibration,
    ) -> Array2<f32> {
        let p = IntQuantizer::params(bits).symmetric(sym).calibration(cal);
        let p = match group {
            Some(g) => p.per_group(g),
            None => p.per_row(),
        };
        let m = CompressedMatrix::from_dense(w.view()).unwrap();
        p.check().unwrap().quantize(&m).unwrap().to_dense()
    }

    /// `p` per group of `g` inputs when `group` is `Some(g)`.
    fn grouped(p: GptqParams, group: Option<usize>) -> GptqParams {
        match group {
            Some(g) => p.per_group(g),
            None => p,
        }
    }

    /// GPTQ with `p` of `w` against `h`, decoded.
    fn gptq(p: GptqParams, w: &Array2<f32>, h: &Array2<f64>) -> Array2<f32> {
        let out = p.check().unwrap().quantize(w.view(), h.view(), &Sequential);
        out.unwrap().matrix.to_dense()
    }

    #[test]
    fn identity_hessian_is_round_to_nearest() {
        let w = random(70, 48, 1);
        let h = Array2::<f64>::eye(48);
        for bits in [4u8, 8] {
            for sym in [true, false] {
                for group in [None, Some(16), Some(20)] {
                    for cal in [Calibration::MinMax, Calibration::mse()] {
                        let p = Gptq::params(bits).symmetric(sym).calibration(cal).block(7);
                        assert_eq!(
                            gptq(grouped(p, group), &w, &h),
                            rtn(&w, bits, sym, group, cal),
                            "{bits} {sym} {group:?} {cal:?}"
                        );
                    }
                }
            }
        }
    }

    #[test]
    fn int3_identity_is_naive_rounding() {
        let w = random(5, 32, 2);
        let h = Array2::<f64>::eye(32);
        let out = Gptq::params(3)
            .per_group(8)
            .check()
            .unwrap()
            .quantize(w.view(), h.view(), &Sequential)
            .unwrap();
        assert_eq!(out.matrix.encoding(), "int4");
        let got = out.matrix.to_dense();
        for r in 0..5 {
            for g in 0..4 {
                let cols = g * 8..g * 8 + 8;
                let m = cols.clone().map(|c| w[[r, c]].abs()).fold(0.0f32, f32::max);
                let s = m / 3.0;
                for c in cols {
                    let q = (w[[r, c]] * (1.0 / s)).round().clamp(-3.0, 3.0) * s;
                    assert_eq!(got[[r, c]], q);
                }
            }
        }
    }

    #[test]
    fn diagonal_hessian_updates_vanish() {
        let w = random(9, 40, 3);
        let mut rng = ChaCha8Rng::seed_from_u64(4);
        let h = Array2::from_diag(&ndarray::Array1::from_shape_fn(40, |_| {
            rng.random_range(0.1..5.0f64)
        }));
        for act in [false, true] {
            for stat in [false, true] {
                let out = Gptq::params(4)
                    .per_group(8)
                    .act_order(act)
                    .static_groups(stat)
                    .check()
                    .unwrap()
                    .quantize(w.view(), h.view(), &Sequential)
                    .unwrap();
                assert_eq!(
                    out.matrix.to_dense(),
                    rtn(&w, 4, true, Some(8), Calibration::MinMax)
                );
            }
        }
    }

    #[test]
    fn obs_never_worse_than_rtn_on_correlated_inputs() {
        for seed in 0..24u64 {
            let n = 32 + (seed as usize % 3) * 16;
            let w = random(24, n, 100 + seed);
            let x = correlated_x(4 * n, n, 200 + seed);
            let h = x.t().dot(&x);
            for (bits, group) in [(4u8, None), (3, Some(16)), (8, None), (4, Some(16))] {
                let p = grouped(Gptq::params(bits).act_order(seed % 2 == 0), group);
                let g = objective(&w, &gptq(p.clone(), &w, &h), &h);
                let reference = if bits == 3 {
                    // RTN at 3 bits = GPTQ with H = I.
                    gptq(p, &w, &Array2::<f64>::eye(n))
                } else {
                    rtn(&w, bits, true, group, Calibration::MinMax)
                };
                let r = objective(&w, &reference, &h);
                assert!(
                    g <= r,
                    "seed {seed} bits {bits} group {group:?}: gptq {g} > rtn {r}"
                );
            }
        }
    }

    /// Optimal brain quantizer (Frantar & Alistarh, 2022) in f64: after each
    /// column, the inverse Hessian of the remaining columns is downdated
    /// explicitly (no Cholesky), the form GPTQ is derived from.
    fn obq_reference(w: &Array2<f32>, h: &Array2<f64>, damp: f64) -> Array2<f32> {
        let n = h.nrows();
        let mean = (0..n).map(|j| h[[j, j]]).sum::<f64>() / n as f64;
        let hd = h + &(Array2::<f64>::eye(n) * (damp * mean));
        let hinv0 = inverse(&hd);
        let mut out = Array2::<f32>::zeros(w.dim());
        for r in 0..w.nrows() {
            let mut row: Vec<f64> = w.row(r).iter().map(|&v| v as f64).collect();
            let s = w.row(r).iter().fold(0.0f32, |a, v| a.max(v.abs())) / 7.0;
            let mut hinv = hinv0.clone();
            for k in 0..n {
                let q = ((row[k] as f32 * (1.0 / s)).round().clamp(-7.0, 7.0) * s) as f64;
                out[[r, k]] = q as f32;
                let e = (row[k] - q) / hinv[[k, k]];
                for j in k + 1..n {
                    row[j] -= e * hinv[[k, j]];
                }
                let hk = hinv.row(k).to_owned();
                let d = hk[k];
                for a in k..n {
                    for b in k..n {
                        hinv[[a, b]] -= hk[a] * hk[b] / d;
                    }
                }
            }
        }
        out
    }

    #[test]
    fn matches_explicit_obs_reference() {
        let n = 24;
        let w = random(16, n, 7);
        let x = correlated_x(100, n, 8);
        let h = x.t().dot(&x);
        let got = Gptq::params(4)
            .block(5)
            .check()
            .unwrap()
            .quantize(w.view(), h.view(), &Sequential)
            .unwrap();
        let got = got.matrix.to_dense();
        let want = obq_reference(&w, &h, 0.01);
        let same = got.iter().zip(want.iter()).filter(|(a, b)| a == b).count();
        assert!(
            same as f64 >= 0.98 * got.len() as f64,
            "{same} of {}",
            got.len()
        );
        let (og, ow) = (objective(&w, &got, &h), objective(&w, &want, &h));
        assert!((og - ow).abs() <= 0.02 * ow, "{og} vs {ow}");
    }

    #[test]
    fn same_result_on_any_executor_and_safe_on_bad_hessians() {
        let n = 64;
        let w = random(150, n, 9);
        let x = correlated_x(20, n, 10); // fewer samples than inputs: singular H
        let mut h = x.t().dot(&x);
        for k in 0..n {
            h[[5, k]] = 0.0; // a dead input
            h[[k, 5]] = 0.0;
        }
        let q = Gptq::params(4)
            .per_group(32)
            .symmetric(false)
            .act_order(true)
            .check()
            .unwrap();
        let a = q.quantize(w.view(), h.view(), &Sequential).unwrap();
        let b = q
            .quantize(w.view(), h.view(), &ThreadPool::new(3).unwrap())
            .unwrap();
        assert_eq!(a.matrix, b.matrix);
        assert_eq!(a.loss.to_bits(), b.loss.to_bits());
        let d = a.matrix.to_dense();
        assert!(d.iter().all(|v| v.is_finite()));
        assert!(d.column(5).iter().all(|&v| v == 0.0));
        let mut bad = h.clone();
        bad[[3, 3]] = f64::INFINITY;
        assert!(matches!(
            q.quantize(w.view(), bad.view(), &Sequential).unwrap_err(),
            SquishError::Hessian(_)
        ));
        assert!(Gptq::params(4)
            .damp(0.0)
            .check()
            .unwrap()
            .quantize(w.view(), h.view(), &Sequential)
            .is_err());
        assert!(Gptq::params(5).check().is_err());
        assert!(Gptq::params(4).per_group(0).check().is_err());
        assert!(q
            .quantize(w.view(), Array2::<f64>::eye(3).view(), &Sequential)
            .is_err());
    }
}
