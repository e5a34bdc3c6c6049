//! Per-layer sensitivity: what each candidate costs in bytes and in output
//! quality when only that layer is compressed.

use ndarray::{Array2, ArrayView2};

use super::{Candidate, PlanError};
use crate::error::Result;
use crate::matrix::CompressedMatrix;
use crate::parallel::{map, ParallelExecutor, Sequential};
use crate::recipe::MethodSpec;

/// Measures how much a model's *output* degrades when one layer is replaced
/// by a compressed form (the others untouched). The sentence encoder uses
/// one minus the mean embedding cosine; an MLP the rise in cross-entropy.
pub trait Evaluator: Sync {
    /// Output distortion with layer `layer` (index into the planned layers)
    /// replaced by `m`; 0 means unchanged.
    fn distortion(&self, layer: usize, m: &CompressedMatrix) -> Result<f64>;
}

/// One layer to plan: its name, weight and (optionally) the inputs it sees
/// on calibration data, for the cheap proxy.
#[derive(Clone, Debug)]
pub struct Layer<'a> {
    /// Tensor name (written into the planned recipe).
    pub name: String,
    /// The weight, `[out, in]`.
    pub weight: ArrayView2<'a, f32>,
    /// Calibration inputs `[samples, in]`; without them the proxy is the
    /// weight's relative error.
    pub inputs: Option<ArrayView2<'a, f32>>,
}

/// One layer × candidate measurement.
#[derive(Clone, Debug, PartialEq)]
pub struct Measurement {
    /// Exact stored bytes from the storage report.
    pub bytes: u64,
    /// Layer-output error ‖XWᵀ − XŴᵀ‖_F / ‖XWᵀ‖_F on the calibration inputs
    /// (or ‖W − Ŵ‖_F / ‖W‖_F without inputs).
    pub proxy: f64,
    /// The evaluator's output distortion.
    pub distortion: f64,
}

/// Every layer × candidate, with the failures (a candidate that cannot take
/// a layer, such as 2:4 on a row length not divisible by 4) kept as text.
#[derive(Clone, Debug)]
pub struct SensitivityTable {
    /// Layer names, in order.
    pub layers: Vec<String>,
    /// Weights per layer.
    pub weights: Vec<usize>,
    /// The candidates, in order.
    pub candidates: Vec<Candidate>,
    /// `cells[layer][candidate]`.
    pub cells: Vec<Vec<std::result::Result<Measurement, String>>>,
}

fn relative_error(reference: ArrayView2<f32>, approx: ArrayView2<f32>) -> f64 {
    let (mut num, mut den) = (0.0f64, 0.0f64);
    for (a, b) in reference.iter().zip(approx) {
        num += (*a as f64 - *b as f64).powi(2);
        den += (*a as f64).powi(2);
    }
    if den > 0.0 {
        (num / den).sqrt()
    } else {
        num.sqrt()
    }
}

/// Compresses `layer` with `methods` and measures it.
fn measure_one(
    layer: &Layer,
    index: usize,
    methods: &[MethodSpec],
    reference_out: Option<&Array2<f32>>,
    eval: &dyn Evaluator,
) -> Result<Measurement> {
    let out = MethodSpec::pipeline(methods)?.run_on(layer.weight, &Sequential)?;
    let bytes = out.report.stages.last().map_or(0, |s| s.storage.total()) as u64;
    let proxy = match (layer.inputs, reference_out) {
        (Some(x), Some(y)) => {
            let y_hat = out.matrix.matmul_on(x, &Sequential)?;
            relative_error(y.view(), y_hat.view())
        }
        _ => relative_error(layer.weight, out.matrix.to_dense().view()),
    };
    let distortion = eval.distortion(index, &out.matrix)?;
    Ok(Measurement {
        bytes,
        proxy,
        distortion,
    })
}

/// Measures every layer × candidate as independent tasks on `exec` (the
/// slow part of planning: one model evaluation per cell). `progress` is
/// called with the number of finished cells and the total.
///
/// The table does not depend on the executor.
pub fn measure(
    layers: &[Layer],
    candidates: &[Candidate],
    eval: &dyn Evaluator,
    exec: &dyn ParallelExecutor,
    progress: &(dyn Fn(usize, usize) + Sync),
) -> Result<SensitivityTable> {
    if layers.is_empty() || candidates.is_empty() {
        return Err(PlanError::NoCandidates {
            what: if layers.is_empty() {
                "no layers".into()
            } else {
                "an empty candidate list".into()
            },
        }
        .into());
    }
    let references: Vec<Option<Array2<f32>>> = map(exec, layers.len(), |l| {
        layers[l].inputs.map(|x| x.dot(&layers[l].weight.t()))
    });
    let total = layers.len() * candidates.len();
    let done = std::sync::atomic::AtomicUsize::new(0);
    let flat = map(exec, total, |t| {
        let (l, c) = (t / candidates.len(), t % candidates.len());
        let r = measure_one(
            &layers[l],
            l,
            candidates[c].methods(),
            references[l].as_ref(),
            eval,
        );
        progress(
            done.fetch_add(1, std::sync::atomic::Ordering::Relaxed) + 1,
            total,
        );
        r
    });
    let mut cells: Vec<Vec<_>> = (0..layers.len()).map(|_| Vec::new()).collect();
    for (t, r) in flat.into_iter().enumerate() {
        let r = match r {
            Ok(m) if !m.distortion.is_finite() => {
                return Err(PlanError::NonFiniteDistortion {
                    layer: layers[t / candidates.len()].name.clone(),
                    candidate: candidates[t % candidates.len()].name().to_string(),
                    value: m.distortion,
                }
                .into())
            }
            Ok(m) => Ok(m),
            Err(e) => Err(e.to_string()),
        };
        cells[t / candidates.len()].push(r);
    }
    Ok(SensitivityTable {
        layers: layers.iter().map(|l| l.name.clone()).collect(),
        weights: layers.iter().map(|l| l.weight.len()).collect(),
        candidates: candidates.to_vec(),
        cells,
    })
}

/// Spearman rank correlation of two equally long samples (average ranks for ties).
pub fn spearman(a: &[f64], b: &[f64]) -> f64 {
    fn ranks(v: &[f64]) -> Vec<f64> {
        let mut idx: Vec<usize> = (0..v.len()).collect();
        idx.sort_by(|&i, &j| v[i].total_cmp(&v[j]));
        let mut r = vec![0.0; v.len()];
        let mut i = 0;
        while i < idx.len() {
            let mut j = i;
            while j + 1 < idx.len() && v[idx[j + 1]] == v[idx[i]] {
                j += 1;
            }
            let avg = (i + j) as f64 / 2.0 + 1.0;
            for k in i..=j {
                r[idx[k]] = avg;
            }
            i = j + 1;
        }
        r
    }
    let (ra, rb) = (ranks(a), ranks(b));
    let n = a.len() as f64;
    let (ma, mb) = (ra.iter().sum::<f64>() / n, rb.iter().sum::<f64>() / n);
    let cov: f64 = ra.iter().zip(&rb).map(|(x, y)| (x - ma) * (y - mb)).sum();
    let va: f64 = ra.iter().map(|x| (x - ma).powi(2)).sum();
    let vb: f64 = rb.iter().map(|y| (y - mb).powi(2)).sum();
    if va == 0.0 || vb == 0.0 {
        return 0.0;
    }
    cov / (va * vb).sqrt()
}

impl SensitivityTable {
    /// How well the proxy ranks the candidates of each layer compared with
    /// the real output distortion: Spearman's ρ per layer (over the
    /// candidates that ran).
    pub fn proxy_rank_agreement(&self) -> Vec<f64> {
        self.cells
            .iter()
            .map(|row| {
                let ok: Vec<&Measurement> = row.iter().filter_map(|c| c.as_ref().ok()).collect();
                let p: Vec<f64> = ok.iter().map(|m| m.proxy).collect();
                let d: Vec<f64> = ok.iter().map(|m| m.distortion).collect();
                spearman(&p, &d)
            })
            .collect()
    }

    /// Dense f32 bytes of the planned layers.
    pub fn dense_bytes(&self) -> u64 {
        self.weights.iter().map(|&w| 4 * w as u64).sum()
    }

    /// A plain-text table: one line per layer × candidate.
    pub fn to_text(&self) -> String {
        let mut s = format!(
            "{:<44} {:<18} {:>12} {:>10} {:>12}\n",
            "layer", "candidate", "bytes", "proxy", "distortion"
        );
        for (l, row) in self.cells.iter().enumerate() {
            for (c, cell) in row.iter().enumerate() {
                let name = self.candidates[c].name();
                match cell {
                    Ok(m) => {
                        s += &format!(
                            "{:<44} {:<18} {:>12} {:>10.5} {:>12.6}\n",
                            self.layers[l], name, m.bytes, m.proxy, m.distortion
                        )
                    }
                    Err(e) => s += &format!("{:<44} {:<18} failed: {e}\n", self.layers[l], name),
                }
            }
        }
        s
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn spearman_known_values() {
        assert!((spearman(&[1.0, 2.0, 3.0], &[10.0, 20.0, 30.0]) - 1.0).abs() < 1e-12);
        assert!((spearman(&[1.0, 2.0, 3.0], &[3.0, 2.0, 1.0]) + 1.0).abs() < 1e-12);
        // d² = 0,1,1,1,1 → ρ = 1 − 6·4/(5·24) = 0.8.
        let r = spearman(&[1.0, 2.0, 3.0, 4.0, 5.0], &[1.0, 3.0, 2.0, 5.0, 4.0]);
        assert!((r - 0.8).abs() < 1e-12, "{r}");
    }
}
