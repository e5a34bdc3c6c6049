//! [`DeepCompression`]: the three stages of Han et al. (2016) on an [`Mlp`].

use ndarray::Array2;
use rand::rngs::StdRng;
use rand::seq::SliceRandom;
use rand::SeedableRng;

use super::DeepError;
use super::HuffmanCsr;
use crate::compression::sharing::{Init, KMeans};
use crate::data::Dataset;
use crate::error::{Result, SquishError};
use crate::matrix::CompressedMatrix;
use crate::pass::Quantizer;
use crate::pruning::{Magnitude, Pruner, Schedule};
use crate::training::{finetune_centroids, CompressedMlp, Masks, Mlp, Optimizer, Trainer};

/// Unchecked hyperparameters of [`DeepCompression`].
#[derive(Clone, Debug, PartialEq)]
pub struct DeepCompressionParams {
    density: Vec<f64>,
    bits: Vec<u8>,
    prune_epochs: usize,
    updates_per_epoch: usize,
    finetune_epochs: usize,
    centroid_epochs: usize,
    batch_size: usize,
    lr: f64,
    finetune_lr: f64,
    centroid_lr: f64,
    seed: u64,
}

/// Deep Compression of an MLP (Han et al. 2016), stage by stage:
///
/// 1. **Prune** ([`prune`](Self::prune)): gradual magnitude pruning on Zhu &
///    Gupta's cubic schedule, each layer to its own density, with masked
///    (Adam) fine-tuning between mask updates and after the last one.
/// 2. **Share** ([`share`](Self::share), [`finetune`](Self::finetune)):
///    k-means (linear init) over each layer's surviving weights, `2^bits`
///    centroids, then the centroids (and biases) fine-tuned by the sum of
///    their members' gradients.
/// 3. **Huffman** ([`encode`](Self::encode)): relative positions and
///    codebook indices Huffman coded ([`HuffmanCsr`]).
///
/// Every stage's model is a [`CompressedMlp`] whose exact storage is known.
///
/// ```
/// use squish::compression::deep::DeepCompression;
/// use squish::data::digits;
/// use squish::training::{Mlp, Trainer};
/// let d = digits()?;
/// let mut mlp = Mlp::params(&[64, 32, 10]).seed(1).check()?;
/// Trainer::params().epochs(10).check()?.fit(&mut mlp, &d.train)?;
/// let dc = DeepCompression::params(&[0.3, 0.5], &[4, 4]).prune_epochs(2).check()?;
/// let out = dc.run(&mlp, &d.train)?;
/// assert!(out.coded_bytes() * 6 < out.dense_bytes);
/// assert!(out.shared.accuracy_on(d.test.x(), d.test.y(), &squish::prelude::Sequential)? > 0.7);
/// # Ok::<(), squish::SquishError>(())
/// ```
#[derive(Clone, Debug, PartialEq)]
pub struct DeepCompression {
    p: DeepCompressionParams,
}

/// The models of every stage.
#[derive(Clone, Debug, PartialEq)]
pub struct DeepCompressionOutput {
    /// Exact bytes of the dense f32 model (weights, biases, headers).
    pub dense_bytes: usize,
    /// Stage 1: CSR, f32 values.
    pub pruned: CompressedMlp,
    /// Stage 2: CSR, codebook values, centroids fine-tuned.
    pub shared: CompressedMlp,
    /// Stage 3: the stored form of each layer of `shared`.
    pub coded: Vec<HuffmanCsr>,
    /// The pruning masks.
    pub masks: Masks,
}

impl DeepCompressionOutput {
    /// Exact bytes of the Huffman-coded model: every layer's
    /// [`HuffmanCsr::storage`] plus the f32 biases.
    pub fn coded_bytes(&self) -> usize {
        self.coded
            .iter()
            .map(|c| c.storage().total())
            .sum::<usize>()
            + self
                .shared
                .biases()
                .iter()
                .map(|b| b.len() * 4)
                .sum::<usize>()
    }
}

/// Exact bytes of a dense f32 model: each weight matrix's storage report
/// (values and header) plus the f32 biases.
pub fn dense_bytes(mlp: &Mlp<f32>) -> Result<usize> {
    let mut n = 0;
    for l in mlp.layers() {
        n += CompressedMatrix::from_dense(l.weight())?.storage().total() + l.bias().len() * 4;
    }
    Ok(n)
}

impl DeepCompression {
    /// Starts a builder: `density[l]` is the fraction of layer `l`'s weights
    /// kept (the paper's LeNet-300-100: 0.08, 0.09, 0.26), `bits[l]` its
    /// codebook index width (`2^bits` centroids). Defaults: 8 pruning epochs
    /// with 4 mask updates each, 4 fine-tuning epochs, 2 centroid epochs,
    /// batch 128, Adam at 1e-3 (pruning), 5e-4 (fine-tuning), 1e-4 (centroids), seed 0.
    pub fn params(density: &[f64], bits: &[u8]) -> DeepCompressionParams {
        DeepCompressionParams {
            density: density.to_vec(),
            bits: bits.to_vec(),
            prune_epochs: 8,
            updates_per_epoch: 4,
            finetune_epochs: 4,
            centroid_epochs: 2,
            batch_size: 128,
            lr: 1e-3,
            finetune_lr: 5e-4,
            centroid_lr: 1e-4,
            seed: 0,
        }
    }
}

impl DeepCompressionParams {
    /// Epochs over which the sparsity ramps up (≥ 1).
    pub fn prune_epochs(mut self, n: usize) -> Self {
        self.prune_epochs = n;
        self
    }
    /// Mask updates per pruning epoch (≥ 1): the training rows are split
    /// into this many parts, one update before each.
    pub fn updates_per_epoch(mut self, n: usize) -> Self {
        self.updates_per_epoch = n;
        self
    }
    /// Masked fine-tuning epochs after the last mask update (may be 0).
    pub fn finetune_epochs(mut self, n: usize) -> Self {
        self.finetune_epochs = n;
        self
    }
    /// Centroid fine-tuning epochs (0 keeps the k-means centroids).
    pub fn centroid_epochs(mut self, n: usize) -> Self {
        self.centroid_epochs = n;
        self
    }
    /// Mini-batch rows (≥ 1).
    pub fn batch_size(mut self, n: usize) -> Self {
        self.batch_size = n;
        self
    }
    /// Adam learning rates: while pruning, masked fine-tuning, centroids.
    pub fn learning_rates(mut self, prune: f64, finetune: f64, centroids: f64) -> Self {
        self.lr = prune;
        self.finetune_lr = finetune;
        self.centroid_lr = centroids;
        self
    }
    /// Seed of the shuffling.
    pub fn seed(mut self, seed: u64) -> Self {
        self.seed = seed;
        self
    }

    /// Validates: one density in (0, 1] and one bit width in 1..=16 per
    /// layer, epochs / updates / batch ≥ 1 (centroid and fine-tuning epochs
    /// may be 0), learning rates finite and positive.
    pub fn check(self) -> Result<DeepCompression> {
        if self.density.is_empty() || self.density.len() != self.bits.len() {
            return Err(DeepError::LayerCount {
                densities: self.density.len(),
                bits: self.bits.len(),
            }
            .into());
        }
        if let Some(&d) = self.density.iter().find(|&&d| !(d > 0.0 && d <= 1.0)) {
            return Err(DeepError::Density(d).into());
        }
        if let Some(&b) = self.bits.iter().find(|&&b| !(1..=16).contains(&b)) {
            return Err(DeepError::IndexBits(b).into());
        }
        for (name, v) in [
            ("prune epochs", self.prune_epochs),
            ("updates per epoch", self.updates_per_epoch),
            ("batch size", self.batch_size),
        ] {
            if v == 0 {
                return Err(DeepError::Zero(name).into());
            }
        }
        for (name, v) in [
            ("learning rate", self.lr),
            ("fine-tuning learning rate", self.finetune_lr),
            ("centroid learning rate", self.centroid_lr),
        ] {
            if !(v.is_finite() && v > 0.0) {
                return Err(DeepError::LearningRate { name, value: v }.into());
            }
        }
        Ok(DeepCompression { p: self })
    }
}

impl DeepCompression {
    fn check_model(&self, mlp: &Mlp<f32>) -> Result<()> {
        if mlp.layers().len() != self.p.density.len() {
            return Err(SquishError::shape(
                "deep compression",
                format!("a network of {} layers", self.p.density.len()),
                format!("{} layers", mlp.layers().len()),
            ));
        }
        Ok(())
    }

    fn trainer(&self, epochs: usize, lr: f64, seed: u64) -> Result<Trainer> {
        Trainer::params()
            .epochs(epochs)
            .batch_size(self.p.batch_size)
            .seed(seed)
            .optimizer(Optimizer::adam(lr).check()?)
            .check()
    }

    /// Stage 1: prunes `mlp` in place to the layer densities, training on
    /// `data`; returns the masks (pruned weights are exactly zero).
    pub fn prune(&self, mlp: &mut Mlp<f32>, data: &Dataset) -> Result<Masks> {
        self.check_model(mlp)?;
        let parts = self.p.updates_per_epoch.min(data.len());
        let mut order: Vec<usize> = (0..data.len()).collect();
        order.shuffle(&mut StdRng::seed_from_u64(self.p.seed ^ 0x5eed));
        let chunk = data.len().div_ceil(parts);
        let subsets = order
            .chunks(chunk)
            .map(|idx| {
                let (x, y) = data.rows(idx);
                Dataset::new(x, y, data.classes())
            })
            .collect::<Result<Vec<_>>>()?;
        let updates = self.p.prune_epochs * subsets.len();
        let schedules = self
            .p
            .density
            .iter()
            .map(|&d| Schedule::cubic(1.0 - d, updates as u64).check())
            .collect::<Result<Vec<_>>>()?;
        let n = mlp.layers().len();
        let mut keep: Vec<Option<Array2<bool>>> = vec![None; n];
        for u in 0..updates {
            for l in 0..n {
                if self.p.density[l] >= 1.0 {
                    continue;
                }
                let s = schedules[l].sparsity_at((u + 1) as u64);
                let mut m = Magnitude::params(s)
                    .check()?
                    .mask(mlp.layers()[l].weight())?;
                if let Some(old) = &keep[l] {
                    m.zip_mut_with(old, |k, &o| *k &= o);
                }
                keep[l] = Some(m);
            }
            let masks = Masks::new(mlp, keep.clone())?;
            self.trainer(1, self.p.lr, self.p.seed.wrapping_add(u as u64))?
                .fit_masked(mlp, &subsets[u % subsets.len()], masks)?;
        }
        let masks = Masks::new(mlp, keep)?;
        if self.p.finetune_epochs > 0 {
            self.trainer(self.p.finetune_epochs, self.p.finetune_lr, self.p.seed)?
                .fit_masked(mlp, data, masks.clone())?;
        }
        masks.apply(mlp);
        Ok(masks)
    }

    /// The pruned model as CSR f32 layers (all weights stored where a layer has no mask).
    pub fn sparse(&self, mlp: &Mlp<f32>, masks: &Masks) -> Result<CompressedMlp> {
        self.check_model(mlp)?;
        let layers = mlp
            .layers()
            .iter()
            .enumerate()
            .map(|(l, d)| match masks.layer(l) {
                Some(k) => CompressedMatrix::csr_from_mask(d.weight(), k.view()),
                None => CompressedMatrix::csr_from_mask(
                    d.weight(),
                    Array2::from_elem(d.weight().dim(), true).view(),
                ),
            })
            .collect::<Result<Vec<_>>>()?;
        let biases = mlp.layers().iter().map(|d| d.bias().to_owned()).collect();
        CompressedMlp::from_parts(layers, biases, mlp.activation())
    }

    /// Stage 2a: k-means (linear init, as in the paper: it keeps centroids
    /// on the rare large weights; `2^bits` centroids) over each layer's
    /// stored weights.
    pub fn share(&self, sparse: &CompressedMlp) -> Result<CompressedMlp> {
        let mut out = sparse.clone();
        for (l, &b) in self.p.bits.iter().enumerate() {
            let q = KMeans::params(1usize << b).lloyd(Init::Linear).check()?;
            let w = q.quantize(&sparse.layers()[l])?;
            out.set_layer(l, w, sparse.biases()[l].clone())?;
        }
        Ok(out)
    }

    /// Stage 2b: fine-tunes the centroids and biases of `shared` on `data`
    /// (indices and storage unchanged). No-op with 0 centroid epochs.
    pub fn finetune(&self, shared: &mut CompressedMlp, data: &Dataset) -> Result<()> {
        if self.p.centroid_epochs > 0 {
            let t = self.trainer(self.p.centroid_epochs, self.p.centroid_lr, self.p.seed)?;
            finetune_centroids(&t, shared, data)?;
        }
        Ok(())
    }

    /// Stage 3: each layer of `shared` Huffman coded.
    pub fn encode(shared: &CompressedMlp) -> Result<Vec<HuffmanCsr>> {
        shared
            .layers()
            .iter()
            .map(|l| HuffmanCsr::encode(l.op()))
            .collect()
    }

    /// All three stages on a copy of `mlp`.
    pub fn run(&self, mlp: &Mlp<f32>, data: &Dataset) -> Result<DeepCompressionOutput> {
        self.check_model(mlp)?;
        let dense = dense_bytes(mlp)?;
        let mut work = mlp.clone();
        let masks = self.prune(&mut work, data)?;
        let pruned = self.sparse(&work, &masks)?;
        let mut shared = self.share(&pruned)?;
        self.finetune(&mut shared, data)?;
        let coded = Self::encode(&shared)?;
        Ok(DeepCompressionOutput {
            dense_bytes: dense,
            pruned,
            shared,
            coded,
            masks,
        })
    }
}
