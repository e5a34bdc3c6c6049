//! Global magnitude pruning: one threshold over several named matrices.

use std::collections::HashSet;

use ndarray::{Array2, ArrayView2};

use super::magnitude::{check_matrix, check_sparsity};
use super::select::{prune_count, Selection};
use super::PruningError;
use crate::error::Result;
use crate::matrix::CompressedMatrix;

/// Unchecked hyperparameters of a [`Global`] pruner.
#[derive(Clone, Debug, PartialEq)]
pub struct GlobalParams {
    sparsity: f64,
    min_density: f64,
}

/// Prunes the `⌊s·N⌋` smallest `|w|` over all `N` weights of a set of named
/// matrices at once, like `torch.nn.utils.prune.global_unstructured` with L1:
/// layers with many small weights lose more.
///
/// **Ties**: the matrices are taken in the order given, each flattened
/// row-major; among equal magnitudes the earlier position in that
/// concatenation is pruned first. Global pruning of matrices with equal
/// column counts therefore equals [`Magnitude`](super::Magnitude) on their
/// vertical stack.
///
/// **Minimum density** `d`: each layer keeps at least `⌈d·nₗ⌉` weights. The
/// result is what pruning weights one by one in the global order would give,
/// skipping layers that reached their floor; if the floors leave fewer than
/// `⌊s·N⌋` prunable weights, every layer ends at its floor and the achieved
/// sparsity is below the target.
///
/// ```
/// use ndarray::array;
/// use squish::pruning::Global;
/// let a = array![[0.1f32, 0.2], [0.3, 0.4]];
/// let b = array![[5.0f32, 6.0], [7.0, 0.05]];
/// let g = Global::params(0.5).check().unwrap();
/// let masks = g.masks(&[("a", a.view()), ("b", b.view())]).unwrap();
/// assert_eq!(masks[0].1, array![[false, false], [false, true]]);
/// assert_eq!(masks[1].1, array![[true, true], [true, false]]);
/// // With a 50% floor, layer a keeps two weights and b pays the difference.
/// let g = Global::params(0.5).min_density(0.5).check().unwrap();
/// let masks = g.masks(&[("a", a.view()), ("b", b.view())]).unwrap();
/// assert_eq!(masks[0].1, array![[false, false], [true, true]]);
/// assert_eq!(masks[1].1, array![[false, true], [true, false]]);
/// ```
#[derive(Clone, Debug, PartialEq)]
pub struct Global {
    sparsity: f64,
    min_density: f64,
}

impl Global {
    /// Starts a builder for overall sparsity `s`.
    pub fn params(sparsity: f64) -> GlobalParams {
        GlobalParams {
            sparsity,
            min_density: 0.0,
        }
    }

    /// Target overall sparsity.
    pub fn sparsity(&self) -> f64 {
        self.sparsity
    }

    /// Keep-masks (`true` = keep) for every named matrix, in the given order.
    pub fn masks(&self, layers: &[(&str, ArrayView2<f32>)]) -> Result<Vec<(String, Array2<bool>)>> {
        self.masks_from_scores(layers)
    }

    /// Like [`masks`](Self::masks) with importance scores (non-negative,
    /// one matrix per layer) in place of `|w|`.
    pub fn masks_from_scores(
        &self,
        layers: &[(&str, ArrayView2<f32>)],
    ) -> Result<Vec<(String, Array2<bool>)>> {
        if layers.is_empty() {
            return Err(PruningError::NoLayers.into());
        }
        let mut seen = HashSet::new();
        for (name, w) in layers {
            if !seen.insert(*name) {
                return Err(PruningError::DuplicateName(name.to_string()).into());
            }
            check_matrix("weight matrix", *w)?;
        }
        let owned: Vec<_> = layers.iter().map(|(_, w)| w.as_standard_layout()).collect();
        let data: Vec<&[f32]> = owned
            .iter()
            .map(|w| w.as_slice().expect("standard layout"))
            .collect();
        let per_layer = self.prune_counts(&data);
        Ok(layers
            .iter()
            .zip(&data)
            .zip(per_layer)
            .map(|(((name, w), d), c)| {
                let mut keep = vec![true; d.len()];
                Selection::smallest(&[d], c).write_keep(&[d], &mut [&mut keep]);
                let keep = Array2::from_shape_vec(w.dim(), keep).expect("sizes match");
                (name.to_string(), keep)
            })
            .collect())
    }

    /// Prunes every named matrix (f32 values on a dense or CSR structure) to
    /// CSR with the global masks.
    pub fn prune(
        &self,
        layers: &[(&str, &CompressedMatrix)],
    ) -> Result<Vec<(String, CompressedMatrix)>> {
        let dense = layers
            .iter()
            .map(|(_, m)| crate::pass::prunable_dense("global magnitude", m))
            .collect::<Result<Vec<_>>>()?;
        let views: Vec<(&str, ArrayView2<f32>)> = layers
            .iter()
            .zip(&dense)
            .map(|((n, _), w)| (*n, w.view()))
            .collect();
        self.masks(&views)?
            .into_iter()
            .zip(&dense)
            .map(|((name, keep), w)| {
                Ok((
                    name,
                    CompressedMatrix::csr_from_mask(w.view(), keep.view())?,
                ))
            })
            .collect()
    }

    /// How many weights each layer loses: the global selection, with layers
    /// that would go below their floor fixed at the floor and the rest
    /// re-selected among the others (at most one round per layer).
    fn prune_counts(&self, data: &[&[f32]]) -> Vec<usize> {
        let total: usize = data.iter().map(|d| d.len()).sum();
        let caps: Vec<usize> = data
            .iter()
            .map(|d| d.len() - min_keep(self.min_density, d.len()))
            .collect();
        let mut counts = vec![0usize; data.len()];
        let mut fixed = vec![false; data.len()];
        let mut remaining = prune_count(self.sparsity, total);
        loop {
            let active: Vec<usize> = (0..data.len()).filter(|&l| !fixed[l]).collect();
            if active.is_empty() {
                return counts;
            }
            let segs: Vec<&[f32]> = active.iter().map(|&l| data[l]).collect();
            let sel = Selection::smallest(&segs, remaining);
            let got = sel.per_segment(&segs);
            let over: Vec<usize> = active
                .iter()
                .zip(&got)
                .filter(|(&l, &c)| c > caps[l])
                .map(|(&l, _)| l)
                .collect();
            if over.is_empty() {
                for (&l, c) in active.iter().zip(got) {
                    counts[l] = c;
                }
                return counts;
            }
            for l in over {
                fixed[l] = true;
                counts[l] = caps[l];
                remaining = remaining.saturating_sub(caps[l]);
            }
        }
    }
}

/// `⌈d·n⌉`, with the same tolerance as [`prune_count`].
fn min_keep(d: f64, n: usize) -> usize {
    let x = d * n as f64;
    let r = x.round();
    let c = if (x - r).abs() <= 1e-9 * x.max(1.0) {
        r
    } else {
        x.ceil()
    };
    (c.max(0.0) as usize).min(n)
}

impl GlobalParams {
    /// Each layer keeps at least this fraction of its weights (default 0).
    pub fn min_density(mut self, d: f64) -> Self {
        self.min_density = d;
        self
    }

    /// Validates: sparsity in [0, 1), minimum density in [0, 1].
    pub fn check(self) -> Result<Global> {
        check_sparsity(self.sparsity)?;
        if !(0.0..=1.0).contains(&self.min_density) {
            return Err(PruningError::MinDensity(self.min_density).into());
        }
        Ok(Global {
            sparsity: self.sparsity,
            min_density: self.min_density,
        })
    }
}
