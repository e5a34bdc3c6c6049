//! Spend bytes where they matter: per-layer sensitivity and a byte-budget
//! planner that writes the recipe.
//!
//! 1. [`measure`] compresses each layer alone with each [`Candidate`] and
//!    records its exact bytes, a cheap proxy (layer-output error on
//!    calibration inputs) and the real output distortion from an
//!    [`Evaluator`] (a [`SensitivityTable`]).
//! 2. A [`Planner`] picks one candidate per layer minimising the summed
//!    distortion within a [`Budget`]: a multiple-choice knapsack solved
//!    exactly by DP over a byte grid ([`knapsack`]), with a Lagrangian lower
//!    bound that reports any gap the grid leaves.
//! 3. Where the per-layer distortions are too large to add up,
//!    [`Planner::refine`] improves the plan by local search on the measured
//!    distortion of the whole mix ([`MixEvaluator`]).
//! 4. The [`Plan`] becomes an explicit TOML [`Recipe`](crate::recipe::Recipe)
//!    that `squish compress` runs like any other.
//!
//! ```
//! use ndarray::Array2;
//! use squish::matrix::CompressedMatrix;
//! use squish::parallel::Sequential;
//! use squish::plan::{measure, Budget, Candidate, Evaluator, Layer, Planner};
//!
//! // Distortion = the weight's relative error, scaled per layer.
//! struct Weighted(Vec<Array2<f32>>, Vec<f64>);
//! impl Evaluator for Weighted {
//!     fn distortion(&self, l: usize, m: &CompressedMatrix) -> squish::Result<f64> {
//!         let d = m.to_dense();
//!         let err: f64 = self.0[l].iter().zip(d.iter()).map(|(a, b)| ((a - b) as f64).powi(2)).sum();
//!         Ok(self.1[l] * err)
//!     }
//! }
//! let ws: Vec<Array2<f32>> = (0..2)
//!     .map(|k| Array2::from_shape_fn((64, 64), |(i, j)| (((i * 7 + j * 13 + k) % 31) as f32 - 15.0) / 15.0))
//!     .collect();
//! let layers: Vec<Layer> = ws.iter().enumerate()
//!     .map(|(i, w)| Layer { name: format!("layer{i}.weight"), weight: w.view(), inputs: None })
//!     .collect();
//! let candidates = vec![
//!     Candidate::keep(),
//!     Candidate::parse("int8", r#"[{ method = "int8", granularity = "per-row" }]"#)?,
//!     Candidate::parse("int4", r#"[{ method = "int4", granularity = "per-row" }]"#)?,
//! ];
//! let eval = Weighted(ws.clone(), vec![100.0, 1.0]); // layer 0 is 100× as sensitive
//! let table = measure(&layers, &candidates, &eval, &Sequential, &|_, _| {})?;
//! let plan = Planner::params(Budget::BitsPerWeight(7.0)).check()?.plan(&table)?;
//! assert_eq!(plan.choices[0].2, "int8"); // the sensitive layer keeps more bits
//! assert_eq!(plan.choices[1].2, "int4");
//! let recipe = plan.recipe()?;           // an explicit recipe, one rule per layer
//! assert_eq!(recipe.rules().len(), 2);
//! # Ok::<(), squish::SquishError>(())
//! ```

mod budget;
mod candidate;
mod error;
mod evaluators;
pub mod knapsack;
mod planner;
mod refine;
mod sensitivity;

pub use budget::Budget;
pub use candidate::{default_candidates, Candidate};
pub use error::PlanError;
pub use evaluators::{
    bert_linear_mut, bert_linear_weights, mean_cosine, EncoderCosine, WeightError, BERT_LINEARS,
};
pub use planner::{Objective, Plan, Planner, PlannerParams};
pub use refine::{MixEvaluator, RefineParams, Refined};
pub use sensitivity::{measure, spearman, Evaluator, Layer, Measurement, SensitivityTable};
