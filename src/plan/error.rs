//! Errors of sensitivity measurement and budget planning.

use thiserror::Error;

/// What can go wrong while planning a byte budget. Every variant says which
/// budget is reachable, or what to change.
#[derive(Debug, Error, Clone, PartialEq)]
#[non_exhaustive]
pub enum PlanError {
    /// No layers, or a layer with an empty candidate list.
    #[error("nothing to plan: {what}; give every layer at least one candidate")]
    NoCandidates {
        /// Which list is empty.
        what: String,
    },
    /// Every candidate of a layer failed (e.g. 2:4 on a row length not divisible by 4).
    #[error("layer `{layer}` has no feasible candidate ({reason}); add a candidate that fits it, e.g. `keep f32`")]
    NoFeasibleCandidate {
        /// The layer.
        layer: String,
        /// Why its candidates failed (the first error).
        reason: String,
    },
    /// The budget is below the smallest mix of candidates.
    #[error("budget of {budget} bytes is below the smallest reachable mix ({min} bytes); raise the budget to at least {min} bytes or add smaller candidates")]
    BudgetTooSmall {
        /// The budget asked for.
        budget: u64,
        /// The smallest total the candidates reach.
        min: u64,
    },
    /// The budget is at or above the uncompressed model: nothing to plan.
    #[error("budget of {budget} bytes is not below the uncompressed size ({dense} bytes); any budget in [{min}, {dense}) bytes can be planned")]
    BudgetAboveDense {
        /// The budget asked for.
        budget: u64,
        /// Dense f32 bytes of the planned layers.
        dense: u64,
        /// The smallest total the candidates reach.
        min: u64,
    },
    /// A budget string that does not parse.
    #[error("cannot read budget `{text}`: write bytes (`12000000`, `12MB`, `11.4MiB`) or bits per weight (`4.5bpw`)")]
    BadBudget {
        /// The text given.
        text: String,
    },
    /// A distortion or byte count that is not a finite number.
    #[error("layer `{layer}`, candidate `{candidate}`: distortion {value} is not finite; check the evaluator")]
    NonFiniteDistortion {
        /// The layer.
        layer: String,
        /// The candidate.
        candidate: String,
        /// The value.
        value: f64,
    },
    /// A grid too fine for the budget (the DP table would not fit in memory).
    #[error("byte grid of {grid} gives {cells} cells; use a grid of at least {suggest} bytes")]
    GridTooFine {
        /// Grid size in bytes.
        grid: u64,
        /// Number of cells it gives.
        cells: u64,
        /// A grid that fits.
        suggest: u64,
    },
}
