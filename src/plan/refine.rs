//! Refining a plan on the measured distortion of the whole mix.
//!
//! The planner's objective adds up per-layer distortions measured one layer
//! at a time. That first-order model ranks mixes well while each layer's
//! distortion is small; when every layer is compressed hard (about 3 bits
//! per weight on a sentence encoder) the errors interact and the sum can
//! prefer a mix that is worse in fact than a uniform recipe of the same
//! bytes. [`Planner::refine`] therefore starts from the best *measured* of
//! the planner's solution and every uniform choice that fits the budget, and
//! improves it by local search: moves ranked by the table's prediction,
//! accepted only when the measured distortion of the whole mix falls.

use super::{Layer, Plan, PlanError, Planner, SensitivityTable};
use crate::error::Result;
use crate::matrix::CompressedMatrix;
use crate::parallel::{map, ParallelExecutor, Sequential};
use crate::recipe::MethodSpec;

/// Measures how much a model's output degrades with *several* layers
/// replaced at once, for [`Planner::refine`].
pub trait MixEvaluator: Sync {
    /// Output distortion with layer `l` replaced by `mix[l]` (`None` keeps
    /// it uncompressed); 0 means unchanged.
    fn mix_distortion(&self, mix: &[Option<&CompressedMatrix>]) -> Result<f64>;
}

/// Settings of the local search.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct RefineParams {
    /// Most whole-mix evaluations, the starting points included.
    pub max_evaluations: usize,
    /// Moves evaluated per round (the best predicted ones not tried yet).
    pub moves_per_round: usize,
}

impl Default for RefineParams {
    fn default() -> Self {
        RefineParams {
            max_evaluations: 64,
            moves_per_round: 4,
        }
    }
}

/// A refined plan and how it was found.
#[derive(Clone, Debug)]
pub struct Refined {
    /// The refined plan (`predicted` is the table's sum for its choice).
    pub plan: Plan,
    /// Measured distortion of the whole mix.
    pub measured: f64,
    /// Measured distortion of the planner's own solution.
    pub planner_measured: f64,
    /// Where the search started: `"planner"` or `"uniform <candidate>"`.
    pub start: String,
    /// Whole-mix evaluations spent.
    pub evaluations: usize,
    /// Moves accepted after the start.
    pub accepted: usize,
}

/// One layer's choice changed to another candidate.
#[derive(Clone, Copy, Debug)]
struct Step {
    layer: usize,
    to: usize,
}

impl Planner {
    /// Improves `plan` (from [`plan`](Planner::plan) on `table`) by local
    /// search on the measured distortion of the whole mix, within the same
    /// budget. `layers` are the layers `table` was measured on (their
    /// weights are compressed again, once per layer × candidate used).
    ///
    /// Deterministic: the same inputs give the same plan at any thread
    /// count (candidate moves are evaluated in parallel on `exec`, chosen in
    /// a fixed order).
    ///
    /// ```
    /// use ndarray::Array2;
    /// use squish::matrix::CompressedMatrix;
    /// use squish::parallel::Sequential;
    /// use squish::plan::*;
    ///
    /// // A model whose output error is the *square* of the summed weight
    /// // errors: far from additive, so the planner's sum misleads it.
    /// struct Squared(Vec<Array2<f32>>);
    /// impl Squared {
    ///     fn err(&self, l: usize, m: &CompressedMatrix) -> f64 {
    ///         let d = m.to_dense();
    ///         self.0[l].iter().zip(d.iter()).map(|(a, b)| ((a - b) as f64).powi(2)).sum()
    ///     }
    /// }
    /// impl Evaluator for Squared {
    ///     fn distortion(&self, l: usize, m: &CompressedMatrix) -> squish::Result<f64> {
    ///         Ok(self.err(l, m).powi(2))
    ///     }
    /// }
    /// impl MixEvaluator for Squared {
    ///     fn mix_distortion(&self, mix: &[Option<&CompressedMatrix>]) -> squish::Result<f64> {
    ///         let s: f64 = mix.iter().enumerate().map(|(l, m)| m.map_or(0.0, |m| self.err(l, m))).sum();
    ///         Ok(s * s)
    ///     }
    /// }
    /// let ws: Vec<Array2<f32>> = (0..3)
    ///     .map(|k| Array2::from_shape_fn((32, 32), |(i, j)| (((i * 7 + j * 13 + k) % 31) as f32 - 15.0) / 15.0))
    ///     .collect();
    /// let layers: Vec<Layer> = ws.iter().enumerate()
    ///     .map(|(i, w)| Layer { name: format!("l{i}.weight"), weight: w.view(), inputs: None })
    ///     .collect();
    /// let candidates = vec![
    ///     Candidate::parse("int8", r#"[{ method = "int8", granularity = "per-row" }]"#)?,
    ///     Candidate::parse("int4", r#"[{ method = "int4", granularity = "per-row" }]"#)?,
    /// ];
    /// let eval = Squared(ws.clone());
    /// let table = measure(&layers, &candidates, &eval, &Sequential, &|_, _| {})?;
    /// let planner = Planner::params(Budget::BitsPerWeight(6.5)).check()?;
    /// let plan = planner.plan(&table)?;
    /// let refined = planner.refine(&table, &layers, &plan, &eval, RefineParams::default(), &Sequential)?;
    /// assert!(refined.measured <= refined.planner_measured);
    /// assert!(refined.plan.bytes <= plan.budget);
    /// # Ok::<(), squish::SquishError>(())
    /// ```
    pub fn refine(
        &self,
        table: &SensitivityTable,
        layers: &[Layer],
        plan: &Plan,
        eval: &dyn MixEvaluator,
        params: RefineParams,
        exec: &dyn ParallelExecutor,
    ) -> Result<Refined> {
        if layers.len() != table.layers.len()
            || layers.iter().zip(&table.layers).any(|(l, n)| &l.name != n)
        {
            return Err(PlanError::NoCandidates {
                what: "layers that differ from the sensitivity table's".into(),
            }
            .into());
        }
        let (n, budget) = (table.layers.len(), plan.budget);
        let cell = |l: usize, c: usize| table.cells[l][c].as_ref().ok();
        let bytes_of = |choice: &[usize]| -> u64 {
            choice
                .iter()
                .enumerate()
                .map(|(l, &c)| cell(l, c).map_or(u64::MAX / 4, |m| m.bytes))
                .sum()
        };
        let predicted_of = |choice: &[usize]| -> f64 {
            choice
                .iter()
                .enumerate()
                .map(|(l, &c)| cell(l, c).map_or(f64::INFINITY, |m| m.distortion))
                .sum()
        };

        // Compressed forms, made on first use and kept.
        let mut cache: Vec<Vec<Option<CompressedMatrix>>> =
            (0..n).map(|_| vec![None; table.candidates.len()]).collect();
        let fill = |cache: &mut Vec<Vec<Option<CompressedMatrix>>>,
                    choices: &[Vec<usize>]|
         -> Result<()> {
            let mut need: Vec<(usize, usize)> = choices
                .iter()
                .flat_map(|ch| ch.iter().copied().enumerate())
                .filter(|&(l, c)| cache[l][c].is_none())
                .collect();
            need.sort_unstable();
            need.dedup();
            let made = map(exec, need.len(), |k| {
                let (l, c) = need[k];
                compress(layers[l].weight, table.candidates[c].methods())
            });
            for ((l, c), m) in need.into_iter().zip(made) {
                cache[l][c] = Some(m?);
            }
            Ok(())
        };
        let measure_all =
            |cache: &[Vec<Option<CompressedMatrix>>], choices: &[Vec<usize>]| -> Result<Vec<f64>> {
                let r = map(exec, choices.len(), |k| {
                    let mix: Vec<Option<&CompressedMatrix>> = choices[k]
                        .iter()
                        .enumerate()
                        .map(|(l, &c)| {
                            if table.candidates[c].methods().is_empty() {
                                None
                            } else {
                                cache[l][c].as_ref()
                            }
                        })
                        .collect();
                    eval.mix_distortion(&mix)
                });
                r.into_iter()
                    .map(|d| {
                        let d = d?;
                        if d.is_finite() {
                            Ok(d)
                        } else {
                            Err(PlanError::NonFiniteDistortion {
                                layer: "(whole mix)".into(),
                                candidate: "(refinement)".into(),
                                value: d,
                            }
                            .into())
                        }
                    })
                    .collect()
            };

        // Starting points: the planner's solution, then each uniform choice
        // that every layer can take within the budget.
        let mut starts: Vec<(String, Vec<usize>)> = vec![("planner".into(), plan.choice())];
        for c in 0..table.candidates.len() {
            let uniform = vec![c; n];
            if (0..n).all(|l| cell(l, c).is_some()) && bytes_of(&uniform) <= budget {
                starts.push((format!("uniform {}", table.candidates[c].name()), uniform));
            }
        }
        let start_choices: Vec<Vec<usize>> = starts.iter().map(|(_, c)| c.clone()).collect();
        fill(&mut cache, &start_choices)?;
        let measured = measure_all(&cache, &start_choices)?;
        let mut evaluations = measured.len();
        let best = (0..measured.len())
            .min_by(|&a, &b| measured[a].total_cmp(&measured[b]).then(a.cmp(&b)))
            .expect("the planner's solution is a start");
        let planner_measured = measured[0];
        let (start, mut current) = starts.swap_remove(best);
        let mut current_measured = measured[best];
        let mut tried: std::collections::HashSet<Vec<usize>> = start_choices.into_iter().collect();
        let mut accepted = 0;

        while evaluations < params.max_evaluations {
            let mut moves = neighbours(table, &current, budget, &bytes_of, &predicted_of);
            moves.retain(|m| !tried.contains(m));
            moves.truncate(
                params
                    .moves_per_round
                    .max(1)
                    .min(params.max_evaluations - evaluations),
            );
            if moves.is_empty() {
                break;
            }
            fill(&mut cache, &moves)?;
            let d = measure_all(&cache, &moves)?;
            evaluations += d.len();
            tried.extend(moves.iter().cloned());
            let k = (0..d.len())
                .min_by(|&a, &b| d[a].total_cmp(&d[b]).then(a.cmp(&b)))
                .expect("at least one move");
            if d[k] < current_measured {
                current = moves.swap_remove(k);
                current_measured = d[k];
                accepted += 1;
            }
        }
        let predicted = predicted_of(&current);
        Ok(Refined {
            plan: Plan::from_choice(table, budget, &current, predicted, plan.lower_bound),
            measured: current_measured,
            planner_measured,
            start,
            evaluations,
            accepted,
        })
    }
}

fn compress(w: ndarray::ArrayView2<f32>, methods: &[MethodSpec]) -> Result<CompressedMatrix> {
    Ok(MethodSpec::pipeline(methods)?
        .run_on(w, &Sequential)?
        .matrix)
}

/// Feasible neighbours of `current`, best predicted first: one layer moved
/// to another candidate, or one layer moved up and another moved down to
/// pay for it (the cheapest payment in predicted distortion).
fn neighbours(
    table: &SensitivityTable,
    current: &[usize],
    budget: u64,
    bytes_of: &dyn Fn(&[usize]) -> u64,
    predicted_of: &dyn Fn(&[usize]) -> f64,
) -> Vec<Vec<usize>> {
    let n = current.len();
    let steps: Vec<Step> = (0..n)
        .flat_map(|layer| {
            (0..table.candidates.len())
                .filter(move |&to| to != current[layer])
                .map(move |to| Step { layer, to })
        })
        .filter(|s| table.cells[s.layer][s.to].is_ok())
        .collect();
    let apply = |steps: &[Step]| {
        let mut c = current.to_vec();
        for s in steps {
            c[s.layer] = s.to;
        }
        c
    };
    let mut out: Vec<(f64, Vec<usize>)> = Vec::new();
    for (i, a) in steps.iter().enumerate() {
        let one = apply(&[*a]);
        if bytes_of(&one) <= budget {
            out.push((predicted_of(&one), one));
            continue;
        }
        // Pay for `a` with the downgrade of another layer that costs least.
        let paid = steps
            .iter()
            .enumerate()
            .filter(|(j, b)| *j != i && b.layer != a.layer)
            .map(|(_, b)| apply(&[*a, *b]))
            .filter(|c| bytes_of(c) <= budget)
            .map(|c| (predicted_of(&c), c))
            .min_by(|x, y| x.0.total_cmp(&y.0).then_with(|| x.1.cmp(&y.1)));
        if let Some(p) = paid {
            out.push(p);
        }
    }
    out.sort_by(|x, y| x.0.total_cmp(&y.0).then_with(|| x.1.cmp(&y.1)));
    out.dedup_by(|x, y| x.1 == y.1);
    out.into_iter().map(|(_, c)| c).collect()
}
