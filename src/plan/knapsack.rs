//! The multiple-choice knapsack behind the planner: one option per layer,
//! the least total distortion within a byte budget.
//!
//! Solved exactly by dynamic programming over a byte grid (Sinha & Zoltners'
//! formulation): each layer's bytes above its smallest option are rounded
//! *up* to whole grid cells, so the chosen mix never exceeds the budget, and
//! with a grid of one byte the result is the exact optimum. A Lagrangian
//! relaxation gives a lower bound on the true optimum, so the remaining gap
//! of a coarse grid is reported, never hidden.

use super::PlanError;

/// One option of one layer.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct Item {
    /// Exact bytes of the layer in this form.
    pub bytes: u64,
    /// Predicted distortion it adds to the model's output.
    pub distortion: f64,
}

/// The chosen option per layer.
#[derive(Clone, Debug, PartialEq)]
pub struct Solution {
    /// Index of the chosen item, one per layer.
    pub choice: Vec<usize>,
    /// Total bytes of the choice (≤ the budget).
    pub bytes: u64,
    /// Total distortion of the choice (sum in layer order).
    pub distortion: f64,
    /// A lower bound on the best total distortion within the budget
    /// (Lagrangian relaxation); `distortion - lower_bound` bounds the gap.
    pub lower_bound: f64,
    /// The byte grid the DP used (1 = exact).
    pub grid: u64,
}

/// Largest DP row: 2^20 cells (the choice table is `layers × cells` bytes).
const MAX_CELLS: u64 = 1 << 20;
/// Default resolution: 2^16 cells over the budget above the smallest mix.
const DEFAULT_CELLS: u64 = 1 << 16;

/// Chooses one item per layer minimising the summed distortion with total
/// bytes ≤ `budget`. `grid` is the DP's byte resolution (`None`: fine enough
/// for 2^16 cells; `Some(1)`: exact).
///
/// ```
/// use squish::plan::knapsack::{solve, Item};
/// let it = |bytes, distortion| Item { bytes, distortion };
/// let layers = vec![
///     vec![it(100, 0.0), it(50, 0.5), it(25, 2.0)],
///     vec![it(100, 0.0), it(50, 0.1), it(25, 0.2)],
/// ];
/// let s = solve(&layers, 100, Some(1))?;
/// assert_eq!(s.choice, vec![1, 1]); // 50 + 50 bytes, distortion 0.6
/// let s = solve(&layers, 75, Some(1))?;
/// assert_eq!(s.choice, vec![1, 2]); // the cheap layer takes the cut
/// # Ok::<(), squish::plan::PlanError>(())
/// ```
pub fn solve(layers: &[Vec<Item>], budget: u64, grid: Option<u64>) -> Result<Solution, PlanError> {
    if layers.is_empty() {
        return Err(PlanError::NoCandidates {
            what: "no layers".into(),
        });
    }
    for (l, items) in layers.iter().enumerate() {
        if items.is_empty() {
            return Err(PlanError::NoCandidates {
                what: format!("layer {l} has no candidates"),
            });
        }
        if let Some(it) = items.iter().find(|it| !it.distortion.is_finite()) {
            return Err(PlanError::NonFiniteDistortion {
                layer: l.to_string(),
                candidate: format!("{} bytes", it.bytes),
                value: it.distortion,
            });
        }
    }
    let mins: Vec<u64> = layers
        .iter()
        .map(|items| items.iter().map(|it| it.bytes).min().unwrap_or(0))
        .collect();
    let min_total: u64 = mins.iter().sum();
    if min_total > budget {
        return Err(PlanError::BudgetTooSmall {
            budget,
            min: min_total,
        });
    }
    let slack = budget - min_total;
    let grid = grid.unwrap_or_else(|| slack.div_ceil(DEFAULT_CELLS)).max(1);
    let cells = slack / grid;
    if cells >= MAX_CELLS {
        return Err(PlanError::GridTooFine {
            grid,
            cells: cells + 1,
            suggest: slack.div_ceil(MAX_CELLS - 1),
        });
    }
    let width = cells as usize + 1;

    // best[c]: least distortion of the layers so far within c cells above
    // their minimum; choice[l * width + c]: the item layer l takes there.
    let mut best = vec![0.0f64; width];
    let mut next = vec![f64::INFINITY; width];
    let mut choice = vec![u16::MAX; layers.len() * width];
    for (l, items) in layers.iter().enumerate() {
        next.fill(f64::INFINITY);
        let row = &mut choice[l * width..(l + 1) * width];
        for (i, it) in items.iter().enumerate() {
            let w = (it.bytes - mins[l]).div_ceil(grid);
            if w > cells {
                continue;
            }
            let w = w as usize;
            for c in w..width {
                let v = best[c - w] + it.distortion;
                // Strict `<`: ties keep the earlier item, so results are reproducible.
                if v < next[c] {
                    next[c] = v;
                    row[c] = i as u16;
                }
            }
        }
        std::mem::swap(&mut best, &mut next);
    }

    // Walk back from the full budget.
    let mut c = width - 1;
    let mut picks = vec![0usize; layers.len()];
    for l in (0..layers.len()).rev() {
        let i = choice[l * width + c] as usize;
        picks[l] = i;
        c -= (layers[l][i].bytes - mins[l]).div_ceil(grid) as usize;
    }
    let bytes = picks.iter().zip(layers).map(|(&i, it)| it[i].bytes).sum();
    let distortion = picks
        .iter()
        .zip(layers)
        .fold(0.0, |acc, (&i, it)| acc + it[i].distortion);
    Ok(Solution {
        choice: picks,
        bytes,
        distortion,
        lower_bound: lagrangian_bound(layers, budget).min(distortion),
        grid,
    })
}

/// max over λ ≥ 0 of Σ_l min_i (d_i + λ·b_i) − λ·B: a lower bound on the
/// optimum of the multiple-choice knapsack (weak duality).
fn lagrangian_bound(layers: &[Vec<Item>], budget: u64) -> f64 {
    let dual = |lambda: f64| -> (f64, f64) {
        let mut value = -lambda * budget as f64;
        let mut used = 0.0;
        for items in layers {
            let best = items
                .iter()
                .min_by(|a, b| {
                    let va = a.distortion + lambda * a.bytes as f64;
                    let vb = b.distortion + lambda * b.bytes as f64;
                    va.total_cmp(&vb).then(a.bytes.cmp(&b.bytes))
                })
                .expect("checked non-empty");
            value += best.distortion + lambda * best.bytes as f64;
            used += best.bytes as f64;
        }
        // `used - budget` is a subgradient of the concave dual.
        (value, used - budget as f64)
    };
    let (v0, g0) = dual(0.0);
    if g0 <= 0.0 {
        return v0; // the unconstrained optimum fits: the bound is tight
    }
    let mut hi = 1e-12;
    while dual(hi).1 > 0.0 && hi < 1e30 {
        hi *= 4.0;
    }
    let (mut lo, mut best) = (0.0, v0);
    for _ in 0..200 {
        let mid = 0.5 * (lo + hi);
        let (v, g) = dual(mid);
        best = f64::max(best, v);
        if g > 0.0 {
            lo = mid;
        } else {
            hi = mid;
        }
    }
    best.max(dual(hi).0).max(dual(lo).0)
}

#[cfg(test)]
mod tests {
    use super::*;
    use rand::{rngs::StdRng, Rng, SeedableRng};

    fn brute(layers: &[Vec<Item>], budget: u64) -> Option<f64> {
        let mut idx = vec![0usize; layers.len()];
        let mut best: Option<f64> = None;
        loop {
            let bytes: u64 = idx.iter().zip(layers).map(|(&i, l)| l[i].bytes).sum();
            if bytes <= budget {
                let d = idx
                    .iter()
                    .zip(layers)
                    .fold(0.0, |a, (&i, l)| a + l[i].distortion);
                best = Some(best.map_or(d, |b: f64| b.min(d)));
            }
            let mut l = 0;
            loop {
                if l == layers.len() {
                    return best;
                }
                idx[l] += 1;
                if idx[l] < layers[l].len() {
                    break;
                }
                idx[l] = 0;
                l += 1;
            }
        }
    }

    fn random_instance(rng: &mut StdRng) -> Vec<Vec<Item>> {
        let n = rng.random_range(1..6);
        (0..n)
            .map(|_| {
                let c = rng.random_range(1..6);
                (0..c)
                    .map(|_| Item {
                        bytes: rng.random_range(1..200),
                        distortion: rng.random_range(0.0..1.0),
                    })
                    .collect()
            })
            .collect()
    }

    #[test]
    fn exact_grid_matches_brute_force_on_random_instances() {
        let mut rng = StdRng::seed_from_u64(7);
        let mut solved = 0;
        for _ in 0..400 {
            let layers = random_instance(&mut rng);
            let total_max: u64 = layers
                .iter()
                .map(|l| l.iter().map(|i| i.bytes).max().unwrap())
                .sum();
            let budget = rng.random_range(1..=total_max + 10);
            match (brute(&layers, budget), solve(&layers, budget, Some(1))) {
                (Some(opt), Ok(s)) => {
                    assert_eq!(s.distortion, opt, "{layers:?} budget {budget}");
                    assert!(s.bytes <= budget);
                    assert!(s.lower_bound <= opt + 1e-9);
                    solved += 1;
                }
                (None, Err(PlanError::BudgetTooSmall { min, .. })) => assert!(min > budget),
                (b, s) => panic!("brute {b:?} vs dp {s:?}"),
            }
        }
        assert!(solved >= 100, "only {solved} feasible instances");
    }

    #[test]
    fn coarse_grid_stays_feasible_and_bounded() {
        let mut rng = StdRng::seed_from_u64(11);
        for _ in 0..200 {
            let layers = random_instance(&mut rng);
            let min: u64 = layers
                .iter()
                .map(|l| l.iter().map(|i| i.bytes).min().unwrap())
                .sum();
            let budget = min + rng.random_range(0..300);
            let opt = brute(&layers, budget).unwrap();
            let s = solve(&layers, budget, Some(rng.random_range(2..40))).unwrap();
            assert!(s.bytes <= budget);
            assert!(s.distortion >= opt);
            assert!(s.lower_bound <= opt + 1e-9);
        }
    }

    #[test]
    fn hundred_layers_fifteen_candidates_under_a_second() {
        let mut rng = StdRng::seed_from_u64(3);
        let layers: Vec<Vec<Item>> = (0..100)
            .map(|_| {
                (0..15)
                    .map(|_| Item {
                        bytes: rng.random_range(10_000..4_000_000),
                        distortion: rng.random_range(0.0..1.0),
                    })
                    .collect()
            })
            .collect();
        let budget: u64 = 100 * 1_500_000;
        let t = std::time::Instant::now();
        let s = solve(&layers, budget, None).unwrap();
        let secs = t.elapsed().as_secs_f64();
        assert!(s.bytes <= budget);
        // The dual bound can be loose by one layer's worth; the grid adds little to that.
        assert!(
            s.distortion - s.lower_bound <= 1.0,
            "gap {}",
            s.distortion - s.lower_bound
        );
        assert!(secs < 1.0, "took {secs} s");
    }

    #[test]
    fn bad_inputs_are_typed() {
        let it = |bytes| Item {
            bytes,
            distortion: 0.0,
        };
        assert!(matches!(
            solve(&[], 10, None),
            Err(PlanError::NoCandidates { .. })
        ));
        assert!(matches!(
            solve(&[vec![]], 10, None),
            Err(PlanError::NoCandidates { .. })
        ));
        assert_eq!(
            solve(&[vec![it(8), it(4)], vec![it(9)]], 12, None),
            Err(PlanError::BudgetTooSmall {
                budget: 12,
                min: 13
            })
        );
        let nan = vec![vec![Item {
            bytes: 1,
            distortion: f64::NAN,
        }]];
        assert!(matches!(
            solve(&nan, 10, None),
            Err(PlanError::NonFiniteDistortion { .. })
        ));
        assert!(matches!(
            solve(&[vec![it(0), it(u64::MAX / 2)]], u64::MAX / 2, Some(1)),
            Err(PlanError::GridTooFine { .. })
        ));
    }
}
