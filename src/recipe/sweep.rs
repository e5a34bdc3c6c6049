//! Rate–distortion sweep: error against bits per weight for each method
//! family on chosen layers.

use ndarray::ArrayView2;

use super::{IntSpec, KMeansSpec, LowRankSpec, MethodSpec, RecipeError};
use crate::error::Result;
use crate::parallel::{map, ParallelExecutor, Sequential};

/// A family of methods and the settings to sweep, from cheapest to most bits.
#[derive(Clone, Debug)]
pub struct Family {
    /// Name shown in the table and the plot legend.
    pub name: &'static str,
    /// `(setting label, pipeline)` pairs.
    pub settings: Vec<(String, Vec<MethodSpec>)>,
}

/// One measured point: a family's setting over all chosen layers.
#[derive(Clone, Debug, PartialEq)]
pub struct SweepPoint {
    /// Family name.
    pub family: &'static str,
    /// Setting label.
    pub setting: String,
    /// Total stored bits over total weights.
    pub bits_per_weight: f64,
    /// ‖W − Ŵ‖_F / ‖W‖_F over all chosen layers together.
    pub rel_error: f64,
    /// 10·log10(‖W‖² / ‖W − Ŵ‖²) over all chosen layers (dB).
    pub sqnr_db: f64,
}

fn int(g: Option<usize>) -> IntSpec {
    match g {
        None => IntSpec::default(),
        Some(g) => IntSpec {
            granularity: super::GranularitySpec::PerGroup,
            group_size: Some(g),
            ..IntSpec::default()
        },
    }
}

/// The method families this build can sweep.
pub fn families() -> Vec<Family> {
    let sparsities = [0.5, 0.7, 0.8, 0.9, 0.95];
    let energies = [0.5, 0.8, 0.9, 0.95];
    vec![
        Family {
            name: "integer (per row / per group)",
            settings: vec![
                ("int4 per-row".into(), vec![MethodSpec::Int4(int(None))]),
                (
                    "int4 group-32".into(),
                    vec![MethodSpec::Int4(int(Some(32)))],
                ),
                ("int8 per-row".into(), vec![MethodSpec::Int8(int(None))]),
            ],
        },
        Family {
            name: "binary / ternary",
            settings: vec![
                ("binary".into(), vec![MethodSpec::Binary {}]),
                ("ternary".into(), vec![MethodSpec::Ternary {}]),
            ],
        },
        Family {
            name: "magnitude pruning (f32 CSR)",
            settings: sparsities
                .iter()
                .rev()
                .map(|&s| {
                    (
                        format!("prune {:.0}%", s * 100.0),
                        vec![MethodSpec::Magnitude { sparsity: s }],
                    )
                })
                .collect(),
        },
        Family {
            name: "pruning + int8",
            settings: sparsities
                .iter()
                .rev()
                .map(|&s| {
                    (
                        format!("prune {:.0}% + int8", s * 100.0),
                        vec![
                            MethodSpec::Magnitude { sparsity: s },
                            MethodSpec::Int8(int(None)),
                        ],
                    )
                })
                .collect(),
        },
        Family {
            name: "low rank by energy + int8",
            settings: energies
                .iter()
                .map(|&e| {
                    (
                        format!("energy {e} + int8"),
                        vec![
                            MethodSpec::LowRank(LowRankSpec {
                                energy: Some(e),
                                ..LowRankSpec::default()
                            }),
                            MethodSpec::Int8(int(None)),
                        ],
                    )
                })
                .collect(),
        },
        Family {
            name: "k-means sharing (per tensor)",
            settings: (2..=5)
                .map(|b| {
                    (
                        format!("k-means {b} bits"),
                        vec![MethodSpec::KMeans(KMeansSpec {
                            bits: Some(b),
                            ..KMeansSpec::default()
                        })],
                    )
                })
                .collect(),
        },
    ]
}

/// Runs every setting of every family on every layer (one task per setting
/// and layer on `exec`) and aggregates per setting. The result does not
/// depend on the executor. An error raised while compressing a layer is a
/// [`RecipeError::Layer`] naming the layer, the setting and the pass.
pub fn sweep(
    families: &[Family],
    layers: &[(String, ArrayView2<f32>)],
    exec: &dyn ParallelExecutor,
) -> Result<Vec<SweepPoint>> {
    let settings: Vec<(&'static str, &str, &[MethodSpec])> = families
        .iter()
        .flat_map(|f| {
            f.settings
                .iter()
                .map(move |(l, m)| (f.name, l.as_str(), m.as_slice()))
        })
        .collect();
    let n = layers.len();
    let signal: Vec<f64> = layers
        .iter()
        .map(|(_, w)| w.iter().map(|&x| (x as f64) * (x as f64)).sum())
        .collect();
    // (bits, weights, noise energy) per (setting, layer).
    let cells = map(exec, settings.len() * n, |t| -> Result<(f64, f64, f64)> {
        let (s, l) = (t / n, t % n);
        let (family, setting, specs) = settings[s];
        let p = MethodSpec::pipeline(specs)?;
        // An error names the layer, the setting and the pass (issue #20).
        let out = p
            .run_staged(&layers[l].0, layers[l].1, None, &Sequential)
            .map_err(|e| {
                RecipeError::in_layer(&layers[l].0, &format!("{family} {setting}, "), &p, e)
            })?;
        let last = out.report.stages.last().expect("the input stage");
        Ok((
            last.storage.total() as f64 * 8.0,
            last.storage.elements() as f64,
            last.error.rel_frobenius.powi(2) * signal[l],
        ))
    });
    let mut cells = cells.into_iter();
    let mut points = Vec::with_capacity(settings.len());
    for (family, setting, _) in &settings {
        let (mut bits, mut weights, mut noise) = (0.0, 0.0, 0.0);
        for _ in 0..n {
            let (b, w, e) = cells.next().expect("one cell per task")?;
            bits += b;
            weights += w;
            noise += e;
        }
        let total: f64 = signal.iter().sum();
        points.push(SweepPoint {
            family,
            setting: setting.to_string(),
            bits_per_weight: bits / weights,
            rel_error: if total > 0.0 {
                (noise / total).sqrt()
            } else {
                0.0
            },
            sqnr_db: if noise > 0.0 {
                10.0 * (total / noise).log10()
            } else {
                f64::INFINITY
            },
        });
    }
    Ok(points)
}
