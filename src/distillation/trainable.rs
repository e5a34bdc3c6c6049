//! [`Trainable`]: one compressed weight matrix seen as trainable parameters
//! that keep its structure and encoding.

use ndarray::{Array2, ArrayView2};

use crate::error::{Result, SquishError};
use crate::matrix::{
    CodebookScope, CompressedMatrix, F32Values, PackedBits, QuantParams, RowLayout, Structure,
    Values,
};
use crate::quantization::{Binary, IntQuantizer, Quantizer, Ternary};
use crate::training::with_centroids;

/// How quantized values are re-encoded after each update (the forward pass
/// of the straight-through estimator).
#[derive(Clone, Debug)]
pub(crate) enum Requant {
    /// Integer codes on the matrix's own, fixed scales and zero-points: the
    /// grid never moves, only which point of it each weight takes.
    Int(IntQuantizer, QuantParams),
    /// `α·sign(θ)`, α = mean|θ| per row (recomputed, as XNOR-Net does).
    Binary,
    /// `{−α, 0, +α}` with the TWN threshold (recomputed).
    Ternary,
}

impl Requant {
    fn apply(&self, v: &F32Values) -> Result<Values> {
        match self {
            Requant::Int(q, p) => q.quantize_with_params(v, p),
            Requant::Binary => Binary.quantize_values(v),
            Requant::Ternary => Ternary.quantize_values(v),
        }
    }
}

/// The parameters of one stored (non-low-rank) matrix.
// One per layer: the size difference between variants costs nothing.
#[allow(clippy::large_enum_variant)]
#[derive(Clone, Debug)]
pub(crate) enum Kind {
    /// f32 values trained as they are.
    Free,
    /// Quantized values: latent f32 copies `θ`, forward on `Q(θ)`, gradient
    /// applied to `θ` as if `∂Q/∂θ = 1`.
    Ste(Requant),
    /// Codebook values: the centroids are the parameters; `member[k]` is the
    /// centroid (flat, across codebooks) of stored value `k`.
    Codebook {
        template: CompressedMatrix,
        member: Vec<u32>,
    },
    /// Binary values with trained per-row scales (XNOR-Net's α made a
    /// parameter, as LSQ does for step sizes): forward `α_i·sign(θ)`,
    /// `∂L/∂α_i = Σ_j ∂L/∂W_ij·sign(θ_ij)` (exact), and the straight-through
    /// `∂L/∂θ = ∂L/∂W` where `|θ| ≤ clip·α_i`, 0 outside (BinaryConnect's
    /// hard-tanh window, relative to the row's scale); after each update `θ`
    /// is clamped into that window and `α` to `≥ 0`. The scales are a second
    /// parameter slice.
    SignScale { scales: Vec<f32>, clip: f32 },
}

/// A compressed matrix as trainable parameters. Training changes values
/// (f32 values, latent copies of quantized values, centroids, low-rank
/// factors), never positions, codes layout, ranks or encodings, so
/// [`to_matrix`](Self::to_matrix) gives back the same structure and storage.
#[allow(clippy::large_enum_variant)]
#[derive(Clone, Debug)]
pub(crate) enum Trainable {
    Stored(Stored),
    LowRank {
        a: Box<Trainable>,
        b: Box<Trainable>,
    },
}

/// The parameters of a matrix with stored values (any structure but low
/// rank), and what it takes to rebuild the matrix from them.
#[derive(Clone, Debug)]
pub(crate) struct Stored {
    shape: (usize, usize),
    structure: Structure,
    layout: RowLayout,
    /// Flat index `row·cols + col` of each stored value; `None` for a
    /// dense structure (the identity).
    pos: Option<Vec<u32>>,
    kind: Kind,
    /// The parameters: stored values (Free, Ste) or centroids (Codebook).
    theta: Vec<f32>,
}

/// Flat dense index of every stored value of a non-low-rank matrix.
fn positions(m: &CompressedMatrix, layout: &RowLayout) -> Result<Option<Vec<u32>>> {
    let cols = m.cols();
    if u32::try_from(m.rows() * cols).is_err() {
        return Err(SquishError::invalid(
            "matrix size",
            m.rows() * cols,
            "recovery indexes weights with u32; split the layer",
        ));
    }
    let mut pos = Vec::with_capacity(layout.total());
    for i in 0..layout.rows() {
        for (p, k) in layout.range(i).enumerate() {
            let (row, col) = match m.structure() {
                Structure::Dense => return Ok(None),
                Structure::Csr(c) => (i, c.col_idx().get(k)),
                Structure::NM(s) => (i, (p / s.n()) * s.m() + s.positions().get(k) as usize),
                Structure::KeptRows(kr) => (kr.rows()[i] as usize, p),
                Structure::LowRank(_) => unreachable!("low rank is handled by the caller"),
            };
            pos.push((row * cols + col) as u32);
        }
    }
    Ok(Some(pos))
}

impl Trainable {
    /// The parameters of `m`, starting exactly at its stored values.
    pub(crate) fn from_matrix(m: &CompressedMatrix) -> Result<Self> {
        if let Structure::LowRank(lr) = m.structure() {
            return Ok(Trainable::LowRank {
                a: Box::new(Self::from_matrix(lr.a())?),
                b: Box::new(Self::from_matrix(lr.b())?),
            });
        }
        let values = m.values().expect("stored structures hold values");
        let layout = values.layout().clone();
        let pos = positions(m, &layout)?;
        let (kind, theta) = match values {
            Values::F32(v) => (Kind::Free, v.data().to_vec()),
            Values::Int8(v) => (Kind::Ste(int_requant(8, v.params())?), values.decode()),
            Values::Int4(v) => (Kind::Ste(int_requant(4, v.params())?), values.decode()),
            Values::Binary(_) => (Kind::Ste(Requant::Binary), values.decode()),
            Values::Ternary(_) => (Kind::Ste(Requant::Ternary), values.decode()),
            Values::Codebook(cb) => {
                let k = cb.k();
                let mut member = Vec::with_capacity(layout.total());
                for i in 0..layout.rows() {
                    let book = match cb.scope() {
                        CodebookScope::PerTensor => 0,
                        CodebookScope::PerRow => i,
                    };
                    for flat in layout.range(i) {
                        member.push((book * k + cb.indices().get(flat) as usize) as u32);
                    }
                }
                let kind = Kind::Codebook {
                    template: m.clone(),
                    member,
                };
                (kind, cb.centroids().to_vec())
            }
        };
        Ok(Trainable::Stored(Stored {
            shape: m.shape(),
            structure: m.structure().clone(),
            layout,
            pos,
            kind,
            theta,
        }))
    }

    /// As [`from_matrix`](Self::from_matrix), with the latent copies of
    /// quantized values taken from `latent` (`[rows, cols]`, e.g. the dense
    /// weights `m` was quantized from) instead of the decoded values. Checked:
    /// `latent` must encode to exactly `m`, so training still starts from the
    /// compressed weights; it only keeps the finer latent state. Other
    /// encodings ignore `latent`.
    pub(crate) fn from_matrix_with_latent(
        m: &CompressedMatrix,
        latent: ArrayView2<f32>,
    ) -> Result<Self> {
        let mut t = Self::from_matrix(m)?;
        if latent.dim() != m.shape() {
            return Err(SquishError::shape(
                "latent weights",
                format!("{:?}", m.shape()),
                format!("{:?}", latent.dim()),
            ));
        }
        let Trainable::Stored(s) = &mut t else {
            return Ok(t);
        };
        if let Kind::Ste(_) = s.kind {
            let l = latent.as_standard_layout();
            let l = l.as_slice().expect("standard layout");
            s.theta = (0..s.theta.len()).map(|k| l[s.flat(k)]).collect();
            if t.to_matrix()? != *m {
                return Err(SquishError::inconsistent(
                    "latent weights",
                    "they do not encode to this compressed layer; pass the weights it was quantized from",
                ));
            }
        }
        Ok(t)
    }

    /// Binary layers (also as low-rank factors) switch to trained per-row
    /// scales ([`Kind::SignScale`]), starting at the scales `m` stores, so
    /// the network is unchanged until the first update; other layers are
    /// left as they are. `m` must be the matrix `self` was built from.
    pub(crate) fn learn_binary_scales(&mut self, m: &CompressedMatrix, clip: f32) -> Result<()> {
        match (self, m.structure()) {
            (Trainable::LowRank { a, b }, Structure::LowRank(lr)) => {
                a.learn_binary_scales(lr.a(), clip)?;
                b.learn_binary_scales(lr.b(), clip)
            }
            (Trainable::Stored(Stored { kind, .. }), s) if !matches!(s, Structure::LowRank(_)) => {
                if let (Kind::Ste(Requant::Binary), Some(Values::Binary(v))) = (&*kind, m.values())
                {
                    *kind = Kind::SignScale {
                        scales: v.scales().to_vec(),
                        clip,
                    };
                }
                Ok(())
            }
            _ => Err(SquishError::inconsistent(
                "binary scales",
                "the matrix is not the one these parameters were built from",
            )),
        }
    }

    /// Keeps the parameters in their valid region after an update: for
    /// [`Kind::SignScale`], `α ≥ 0` and `|θ| ≤ clip·α` per row. Other kinds
    /// have no constraint.
    pub(crate) fn project(&mut self) {
        match self {
            Trainable::LowRank { a, b } => {
                a.project();
                b.project();
            }
            Trainable::Stored(Stored {
                layout,
                kind: Kind::SignScale { scales, clip },
                theta,
                ..
            }) => {
                for (i, a) in scales.iter_mut().enumerate() {
                    *a = a.max(0.0);
                    if clip.is_finite() {
                        let lim = *clip * *a;
                        for t in &mut theta[layout.range(i)] {
                            *t = t.clamp(-lim, lim);
                        }
                    }
                }
            }
            Trainable::Stored(_) => {}
        }
    }

    /// The decoded weight the forward pass uses (`Q(θ)` for quantized values).
    pub(crate) fn weight(&self) -> Result<Array2<f32>> {
        match self {
            Trainable::LowRank { a, b } => Ok(a.weight()?.dot(&b.weight()?)),
            Trainable::Stored(s) => s.weight(),
        }
    }

    /// ∂L/∂(each parameter slice, in [`slices_mut`](Self::slices_mut)
    /// order) from the dense weight gradient `dw = ∂L/∂W`.
    pub(crate) fn grads(&self, dw: ArrayView2<f32>) -> Result<Vec<Vec<f32>>> {
        match self {
            Trainable::LowRank { a, b } => {
                // W = A·B: ∂L/∂A = ∂L/∂W·Bᵀ, ∂L/∂B = Aᵀ·∂L/∂W.
                let (wa, wb) = (a.weight()?, b.weight()?);
                let mut g = a.grads(dw.dot(&wb.t()).view())?;
                g.extend(b.grads(wa.t().dot(&dw).view())?);
                Ok(g)
            }
            Trainable::Stored(s) => s.grads(dw),
        }
    }

    /// The parameter slices the optimizer updates.
    pub(crate) fn slices_mut(&mut self) -> Vec<&mut [f32]> {
        match self {
            Trainable::LowRank { a, b } => {
                let mut s = a.slices_mut();
                s.extend(b.slices_mut());
                s
            }
            Trainable::Stored(Stored {
                theta,
                kind: Kind::SignScale { scales, .. },
                ..
            }) => vec![theta.as_mut_slice(), scales.as_mut_slice()],
            Trainable::Stored(s) => vec![s.theta.as_mut_slice()],
        }
    }

    /// The compressed matrix these parameters encode: same structure,
    /// encoding and storage as the matrix they started from.
    pub(crate) fn to_matrix(&self) -> Result<CompressedMatrix> {
        match self {
            Trainable::LowRank { a, b } => {
                CompressedMatrix::low_rank(a.to_matrix()?, b.to_matrix()?)
            }
            Trainable::Stored(s) => s.to_matrix(),
        }
    }
}

impl Stored {
    /// Where stored value `k` sits in the row-major dense matrix.
    #[inline]
    fn flat(&self, k: usize) -> usize {
        match &self.pos {
            None => k,
            Some(pos) => pos[k] as usize,
        }
    }

    fn weight(&self) -> Result<Array2<f32>> {
        let (layout, theta) = (&self.layout, &self.theta);
        let stored: Vec<f32> = match &self.kind {
            Kind::Free => theta.clone(),
            Kind::Ste(q) => q.apply(&f32_values(layout, theta)?)?.decode(),
            Kind::Codebook { member, .. } => member.iter().map(|&c| theta[c as usize]).collect(),
            Kind::SignScale { scales, .. } => {
                let mut v = vec![0.0f32; theta.len()];
                for (i, &a) in scales.iter().enumerate() {
                    for k in layout.range(i) {
                        v[k] = if theta[k] >= 0.0 { a } else { -a };
                    }
                }
                v
            }
        };
        let mut w = Array2::zeros(self.shape);
        let out = w.as_slice_mut().expect("fresh arrays are contiguous");
        match &self.pos {
            None => out.copy_from_slice(&stored),
            Some(pos) => {
                for (&p, v) in pos.iter().zip(stored) {
                    out[p as usize] = v;
                }
            }
        }
        Ok(w)
    }

    fn grads(&self, dw: ArrayView2<f32>) -> Result<Vec<Vec<f32>>> {
        if dw.dim() != self.shape {
            return Err(SquishError::shape(
                "weight gradient",
                format!("{:?}", self.shape),
                format!("{:?}", dw.dim()),
            ));
        }
        let dw = dw.as_standard_layout();
        let d = dw.as_slice().expect("standard layout");
        let gather = |k: usize| d[self.flat(k)];
        let (layout, theta) = (&self.layout, &self.theta);
        Ok(vec![match &self.kind {
            Kind::Free | Kind::Ste(_) => (0..theta.len()).map(gather).collect(),
            Kind::Codebook { member, .. } => {
                // A centroid's gradient is the sum over the weights sharing it.
                let mut g = vec![0.0f32; theta.len()];
                for (k, &c) in member.iter().enumerate() {
                    g[c as usize] += gather(k);
                }
                g
            }
            Kind::SignScale { scales, clip } => {
                let mut gt = vec![0.0f32; theta.len()];
                let mut ga = vec![0.0f32; scales.len()];
                for (i, &a) in scales.iter().enumerate() {
                    let lim = *clip * a;
                    // Summed in f64: rows are up to a few thousand long.
                    let mut sum = 0.0f64;
                    for k in layout.range(i) {
                        let g = gather(k);
                        let t = theta[k];
                        sum += if t >= 0.0 { g as f64 } else { -(g as f64) };
                        if !clip.is_finite() || t.abs() <= lim {
                            gt[k] = g;
                        }
                    }
                    ga[i] = sum as f32;
                }
                return Ok(vec![gt, ga]);
            }
        }])
    }

    fn to_matrix(&self) -> Result<CompressedMatrix> {
        let values = match &self.kind {
            Kind::Free => Values::f32(self.layout.clone(), self.theta.clone())?,
            Kind::Ste(q) => q.apply(&f32_values(&self.layout, &self.theta)?)?,
            Kind::Codebook { template, .. } => return with_centroids(template, self.theta.clone()),
            Kind::SignScale { scales, .. } => {
                let signs: Vec<u16> = self.theta.iter().map(|&t| u16::from(t >= 0.0)).collect();
                Values::binary(
                    self.layout.clone(),
                    PackedBits::pack(1, &signs)?,
                    scales.clone(),
                )?
            }
        };
        let (rows, cols) = self.shape;
        CompressedMatrix::from_parts(rows, cols, self.structure.clone(), values)
    }
}

fn f32_values(layout: &RowLayout, data: &[f32]) -> Result<F32Values> {
    match Values::f32(layout.clone(), data.to_vec())? {
        Values::F32(v) => Ok(v),
        _ => unreachable!("Values::f32 builds f32 values"),
    }
}

/// The integer quantizer that re-rounds onto `params`' own grid.
fn int_requant(bits: u8, params: &QuantParams) -> Result<Requant> {
    let q = IntQuantizer::params(bits).symmetric(params.zero_points().is_none());
    let q = match params.granularity() {
        crate::matrix::Granularity::PerTensor => q.per_tensor(),
        crate::matrix::Granularity::PerRow => q.per_row(),
        crate::matrix::Granularity::PerGroup(g) => q.per_group(g),
    }
    .check()?;
    Ok(Requant::Int(q, params.clone()))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::compression::lowrank::{LowRank, RankSelection};
    use crate::parallel::Sequential;
    use crate::pass::CompressionPass;
    use ndarray::Array2;

    fn w(r: usize, c: usize) -> Array2<f32> {
        Array2::from_shape_fn((r, c), |(i, j)| {
            (((i * 31 + j * 17) % 23) as f32 - 11.0) / 10.0
        })
    }

    /// Every form round-trips exactly: the parameters start at the stored
    /// values, and encoding them again gives the same matrix.
    /// The linear test loss `L = Σ G ⊙ W` of the gradient tests (`∂L/∂W = G`).
    fn linear_loss(t: &Trainable, g: &Array2<f32>) -> f64 {
        let wt = t.weight().unwrap();
        wt.iter()
            .zip(g.iter())
            .map(|(a, b)| (*a as f64) * (*b as f64))
            .sum()
    }

    /// `∂L/∂(slice s)[k]` of [`linear_loss`] by a central difference of step `h`.
    fn central_difference(t: &Trainable, g: &Array2<f32>, s: usize, k: usize, h: f32) -> f64 {
        let mut up = t.clone();
        up.slices_mut()[s][k] += h;
        let mut dn = t.clone();
        dn.slices_mut()[s][k] -= h;
        (linear_loss(&up, g) - linear_loss(&dn, g)) / (2.0 * h as f64)
    }

    #[test]
    fn every_form_starts_at_and_returns_its_own_matrix() {
        let dense = CompressedMatrix::from_dense(w(6, 10).view()).unwrap();
        let keep = w(6, 10).mapv(|v| v.abs() > 0.4);
        let forms = vec![
            dense.clone(),
            CompressedMatrix::csr_from_mask(w(6, 10).view(), keep.view()).unwrap(),
            IntQuantizer::params(8)
                .per_row()
                .check()
                .unwrap()
                .quantize(&dense)
                .unwrap(),
            IntQuantizer::params(4)
                .per_group(4)
                .check()
                .unwrap()
                .quantize(&dense)
                .unwrap(),
            Binary.quantize(&dense).unwrap(),
            Ternary.quantize(&dense).unwrap(),
            LowRank::params(RankSelection::Fixed(2))
                .check()
                .unwrap()
                .apply(&dense, &Sequential)
                .unwrap(),
        ];
        for m in forms {
            let t = Trainable::from_matrix(&m).unwrap();
            let back = t.to_matrix().unwrap();
            assert_eq!(back.structure(), m.structure(), "{}", m.encoding());
            assert_eq!(back.storage(), m.storage());
            let (a, b) = (t.weight().unwrap(), m.to_dense());
            for (x, y) in a.iter().zip(b.iter()) {
                assert!((x - y).abs() <= 1e-6 * y.abs().max(1.0), "{}", m.encoding());
            }
        }
    }

    /// The factor gradients of W = A·B against finite differences of the
    /// linear test loss L = Σ G ⊙ W (exact up to rounding).
    #[test]
    fn low_rank_gradients_match_finite_differences() {
        let dense = CompressedMatrix::from_dense(w(5, 7).view()).unwrap();
        let m = LowRank::params(RankSelection::Fixed(3))
            .check()
            .unwrap()
            .apply(&dense, &Sequential)
            .unwrap();
        let g = Array2::from_shape_fn((5, 7), |(i, j)| ((i + 2 * j) % 5) as f32 - 2.0);
        let t = Trainable::from_matrix(&m).unwrap();
        let grads = t.grads(g.view()).unwrap();
        assert_eq!(grads.len(), 2);
        let h = 1e-2f32;
        for (s, gs) in grads.iter().enumerate() {
            for (k, &gk) in gs.iter().enumerate() {
                let num = central_difference(&t, &g, s, k, h);
                assert!(
                    (num - gk as f64).abs() < 1e-3,
                    "slice {s} [{k}]: {num} vs {gk}"
                );
            }
        }
    }

    /// Learned binary scales: the parameters start at the stored signs and
    /// scales (the matrix round-trips exactly); `∂L/∂α` matches finite
    /// differences of `L = Σ G ⊙ W` (exact: `W` is linear in `α` while no
    /// sign flips); `∂L/∂θ` is `G` inside the window `|θ| ≤ clip·α` and 0
    /// outside; `project` clamps `θ` into the window and `α` to ≥ 0.
    #[test]
    fn learned_binary_scales_gradients_and_window() {
        let dense = CompressedMatrix::from_dense(w(4, 9).view()).unwrap();
        let m = Binary.quantize(&dense).unwrap();
        let mut t = Trainable::from_matrix_with_latent(&m, w(4, 9).view()).unwrap();
        t.learn_binary_scales(&m, 1.5).unwrap();
        assert_eq!(t.to_matrix().unwrap(), m);
        assert_eq!(t.weight().unwrap(), m.to_dense());
        let g = Array2::from_shape_fn((4, 9), |(i, j)| ((3 * i + j) % 7) as f32 - 3.0);
        let grads = t.grads(g.view()).unwrap();
        assert_eq!(grads.len(), 2);
        let alpha = match t.to_matrix().unwrap().values().unwrap() {
            Values::Binary(v) => v.scales().to_vec(),
            _ => unreachable!(),
        };
        let h = 1e-2f32;
        for (i, &gi) in grads[1].iter().enumerate() {
            let num = central_difference(&t, &g, 1, i, h);
            assert!((num - gi as f64).abs() < 1e-3, "α[{i}]: {num} vs {gi}");
        }
        let lat = w(4, 9);
        let mut outside = 0;
        for ((k, &gt), (&l, &gk)) in grads[0].iter().enumerate().zip(lat.iter().zip(g.iter())) {
            let a = alpha[k / 9];
            if l.abs() <= 1.5 * a {
                assert_eq!(gt, gk, "θ[{k}] inside the window");
            } else {
                assert_eq!(gt, 0.0, "θ[{k}] outside the window");
                outside += 1;
            }
        }
        assert!(
            outside > 0,
            "the test matrix has weights outside the window"
        );
        let mut p = t.clone();
        p.slices_mut()[1][0] = -1.0;
        p.project();
        let s = p.slices_mut();
        assert_eq!(s[1][0], 0.0);
        assert!(s[0][..9].iter().all(|&v| v == 0.0));
        for (k, &v) in s[0].iter().enumerate().skip(9) {
            assert!(v.abs() <= 1.5 * alpha[k / 9], "θ[{k}] clamped");
        }
    }

    #[test]
    fn codebook_gradient_sums_members() {
        use crate::matrix::PackedBits;
        let layout = RowLayout::Uniform { rows: 2, len: 2 };
        let idx = PackedBits::pack(1, &[0, 1, 1, 1]).unwrap();
        let v =
            Values::codebook(layout, 2, CodebookScope::PerTensor, vec![-1.0, 1.0], idx).unwrap();
        let m = CompressedMatrix::from_parts(2, 2, Structure::Dense, v).unwrap();
        let t = Trainable::from_matrix(&m).unwrap();
        let g = t
            .grads(ndarray::array![[1.0f32, 2.0], [3.0, 4.0]].view())
            .unwrap();
        assert_eq!(g, vec![vec![1.0, 9.0]]);
    }
}
