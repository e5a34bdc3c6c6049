//! [`Planner`]: the candidate per layer that minimises predicted distortion
//! within a byte budget, written out as an explicit recipe.

use std::fmt;

use super::knapsack::{self, Item};
use super::{Budget, PlanError, SensitivityTable};
use crate::error::Result;
use crate::recipe::Recipe;

/// What the planner minimises.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub enum Objective {
    /// The sum of the measured output distortions of each layer's choice
    /// (first order: small perturbations of different layers add up).
    #[default]
    Distortion,
    /// The sum of the cheap layer-output errors (no model evaluations).
    Proxy,
}

/// Unchecked planner settings; [`check`](PlannerParams::check) validates them.
#[derive(Clone, Debug)]
pub struct PlannerParams {
    budget: Budget,
    grid: Option<u64>,
    objective: Objective,
}

/// A checked planner.
#[derive(Clone, Debug)]
pub struct Planner {
    params: PlannerParams,
}

impl Planner {
    /// Settings for a budget (bytes or bits per weight).
    pub fn params(budget: Budget) -> PlannerParams {
        PlannerParams {
            budget,
            grid: None,
            objective: Objective::Distortion,
        }
    }
}

impl PlannerParams {
    /// DP resolution in bytes (`1` = exact; default: 2^16 cells over the budget).
    pub fn grid(mut self, bytes: u64) -> Self {
        self.grid = Some(bytes);
        self
    }

    /// What to minimise.
    pub fn objective(mut self, o: Objective) -> Self {
        self.objective = o;
        self
    }

    /// Validates the settings.
    pub fn check(self) -> Result<Planner> {
        let bad = match self.budget {
            Budget::Bytes(0) => true,
            Budget::BitsPerWeight(b) => !(b.is_finite() && b > 0.0),
            Budget::Bytes(_) => false,
        };
        if bad {
            return Err(PlanError::BadBudget {
                text: format!("{:?}", self.budget),
            }
            .into());
        }
        if self.grid == Some(0) {
            return Err(PlanError::GridTooFine {
                grid: 0,
                cells: u64::MAX,
                suggest: 1,
            }
            .into());
        }
        Ok(Planner { params: self })
    }
}

/// The planned choice per layer, its bytes and its predicted distortion.
#[derive(Clone, Debug)]
pub struct Plan {
    /// Budget in bytes.
    pub budget: u64,
    /// `(layer name, candidate index, candidate name)` per layer.
    pub choices: Vec<(String, usize, String)>,
    /// Total bytes of the choice.
    pub bytes: u64,
    /// Dense f32 bytes of the planned layers.
    pub dense_bytes: u64,
    /// Weights of the planned layers.
    pub weights: usize,
    /// Predicted total distortion (the objective).
    pub predicted: f64,
    /// Lower bound on the optimum (the gap is at most `predicted - lower_bound`).
    pub lower_bound: f64,
    recipe_rules: Vec<(String, String)>,
}

impl Planner {
    /// Chooses one candidate per layer of `table`.
    pub fn plan(&self, table: &SensitivityTable) -> Result<Plan> {
        let weights: usize = table.weights.iter().sum();
        let budget = self.params.budget.bytes(weights);
        let dense = table.dense_bytes();
        // Items per layer, remembering which candidate each is.
        let mut items = Vec::with_capacity(table.layers.len());
        let mut index = Vec::with_capacity(table.layers.len());
        for (l, row) in table.cells.iter().enumerate() {
            let (mut it, mut ix) = (Vec::new(), Vec::new());
            for (c, cell) in row.iter().enumerate() {
                if let Ok(m) = cell {
                    let cost = match self.params.objective {
                        Objective::Distortion => m.distortion,
                        Objective::Proxy => m.proxy,
                    };
                    it.push(Item {
                        bytes: m.bytes,
                        distortion: cost,
                    });
                    ix.push(c);
                }
            }
            if it.is_empty() {
                let reason = row
                    .iter()
                    .find_map(|c| c.as_ref().err().cloned())
                    .unwrap_or_else(|| "no candidates".into());
                return Err(PlanError::NoFeasibleCandidate {
                    layer: table.layers[l].clone(),
                    reason,
                }
                .into());
            }
            items.push(it);
            index.push(ix);
        }
        let min: u64 = items
            .iter()
            .map(|it| it.iter().map(|i| i.bytes).min().unwrap_or(0))
            .sum();
        if budget >= dense {
            return Err(PlanError::BudgetAboveDense { budget, dense, min }.into());
        }
        let s = knapsack::solve(&items, budget, self.params.grid)?;
        let choice: Vec<usize> = s
            .choice
            .iter()
            .enumerate()
            .map(|(l, &i)| index[l][i])
            .collect();
        Ok(Plan::from_choice(
            table,
            budget,
            &choice,
            s.distortion,
            s.lower_bound,
        ))
    }
}

impl Plan {
    /// The plan that takes candidate `choice[l]` for layer `l` of `table`.
    pub(crate) fn from_choice(
        table: &SensitivityTable,
        budget: u64,
        choice: &[usize],
        predicted: f64,
        lower_bound: f64,
    ) -> Plan {
        let bytes = choice
            .iter()
            .enumerate()
            .map(|(l, &c)| table.cells[l][c].as_ref().map_or(0, |m| m.bytes))
            .sum();
        let choices: Vec<(String, usize, String)> = choice
            .iter()
            .enumerate()
            .map(|(l, &c)| {
                (
                    table.layers[l].clone(),
                    c,
                    table.candidates[c].name().to_string(),
                )
            })
            .collect();
        let recipe_rules = choices
            .iter()
            .map(|(layer, c, _)| {
                (
                    layer.clone(),
                    table.candidates[*c].methods_toml().to_string(),
                )
            })
            .collect();
        Plan {
            budget,
            choices,
            bytes,
            dense_bytes: table.dense_bytes(),
            weights: table.weights.iter().sum(),
            predicted,
            lower_bound,
            recipe_rules,
        }
    }

    /// The candidate index chosen for each layer.
    pub fn choice(&self) -> Vec<usize> {
        self.choices.iter().map(|(_, c, _)| *c).collect()
    }
}

impl Plan {
    /// Bits per weight of the planned layers.
    pub fn bits_per_weight(&self) -> f64 {
        8.0 * self.bytes as f64 / self.weights as f64
    }

    /// An explicit TOML recipe: one rule per layer, matched by its exact
    /// name; layers not planned are kept as they are.
    pub fn to_toml(&self) -> String {
        let mut s = format!(
            "{}: {} of {} bytes budget ({:.3} bits per weight), predicted distortion {:.6} (optimum ≥ {:.6}).\n",
            crate::io::PLAN_MARKER,
            self.bytes,
            self.budget,
            self.bits_per_weight(),
            self.predicted,
            self.lower_bound
        );
        for ((layer, _, name), (_, methods)) in self.choices.iter().zip(&self.recipe_rules) {
            s += &format!(
                "\n# {name}\n[[rule]]\nregex = '{}'\npipeline = {methods}\n",
                regex::escape(layer)
            );
        }
        s
    }

    /// The planned recipe, parsed and checked.
    pub fn recipe(&self) -> Result<Recipe> {
        Recipe::from_toml(&self.to_toml())
    }
}

impl fmt::Display for Plan {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        writeln!(f, "{:<48} candidate", "layer")?;
        for (layer, _, name) in &self.choices {
            writeln!(f, "{layer:<48} {name}")?;
        }
        write!(
            f,
            "total {} bytes of {} budget ({:.3} bpw, dense {} bytes); predicted distortion {:.6}, optimum ≥ {:.6}",
            self.bytes,
            self.budget,
            self.bits_per_weight(),
            self.dense_bytes,
            self.predicted,
            self.lower_bound
        )
    }
}
