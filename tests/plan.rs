//! The byte-budget planner end to end: measured bytes equal the planned
//! bytes, the written recipe reproduces the plan, and bad budgets are typed.

use ndarray::Array2;
use rand::{rngs::StdRng, Rng, SeedableRng};
use squish::io::{Dtype, Model, Tensor};
use squish::matrix::CompressedMatrix;
use squish::parallel::{Sequential, ThreadPool};
use squish::plan::{
    default_candidates, measure, Budget, Candidate, Layer, PlanError, Planner, WeightError,
};
use squish::recipe::compress_model;
use squish::SquishError;

fn weights() -> Vec<Array2<f32>> {
    let mut rng = StdRng::seed_from_u64(5);
    [(64, 96), (32, 64), (48, 32)]
        .iter()
        .enumerate()
        .map(|(k, &(r, c))| {
            // Layers of different scales and shapes, so their sensitivities differ.
            let s = [1.0f32, 0.1, 3.0][k];
            Array2::from_shape_fn((r, c), |_| s * rng.random_range(-1.0f32..1.0))
        })
        .collect()
}

fn layers(ws: &[Array2<f32>]) -> Vec<Layer<'_>> {
    ws.iter()
        .enumerate()
        .map(|(i, w)| Layer {
            name: format!("blocks.{i}.weight"),
            weight: w.view(),
            inputs: None,
        })
        .collect()
}

#[test]
fn planned_recipe_reproduces_planned_bytes() {
    let ws = weights();
    let ls = layers(&ws);
    let eval = WeightError::new(ws.iter().map(|w| w.view()).collect());
    let cands = default_candidates();
    let table = measure(&ls, &cands, &eval, &Sequential, &|_, _| {}).unwrap();
    // The table does not depend on the executor.
    let pool = ThreadPool::new(2).unwrap();
    let again = measure(&ls, &cands, &eval, &pool, &|_, _| {}).unwrap();
    assert_eq!(format!("{:?}", table.cells), format!("{:?}", again.cells));

    let mut model = Model::new();
    for (l, w) in ls.iter().zip(&ws) {
        model
            .insert(
                l.name.clone(),
                Tensor::float(
                    Dtype::F32,
                    vec![w.nrows(), w.ncols()],
                    w.iter().copied().collect(),
                )
                .unwrap(),
            )
            .unwrap();
    }
    for bpw in [3.0, 5.0, 9.0] {
        let plan = Planner::params(Budget::BitsPerWeight(bpw))
            .check()
            .unwrap()
            .plan(&table)
            .unwrap();
        assert!(plan.bytes <= plan.budget);
        let out = compress_model(&model, &plan.recipe().unwrap(), &Sequential, &|_| {}).unwrap();
        // Every planned layer is stored in exactly the bytes the table measured
        // (kept layers are stored plain, 4 bytes a weight, without a header).
        let mut total = 0u64;
        for (name, c, _) in &plan.choices {
            let bytes = out
                .layers
                .iter()
                .find(|r| &r.name == name)
                .map(|r| r.bytes_after as u64);
            let l = ls.iter().position(|l| &l.name == name).unwrap();
            let expect = table.cells[l][*c].as_ref().unwrap().bytes;
            match bytes {
                Some(b) => assert_eq!(b, expect, "{name}"),
                None => assert!(cands[*c].methods().is_empty(), "{name} kept"),
            }
            total += expect;
        }
        assert_eq!(total, plan.bytes);
        // A larger budget never predicts more distortion.
        if bpw > 3.0 {
            let tighter = Planner::params(Budget::BitsPerWeight(bpw - 2.0))
                .check()
                .unwrap()
                .plan(&table)
                .unwrap();
            assert!(plan.predicted <= tighter.predicted);
        }
    }
}

#[test]
fn budgets_out_of_reach_say_what_is_reachable() {
    let ws = weights();
    let ls = layers(&ws);
    let eval = WeightError::new(ws.iter().map(|w| w.view()).collect());
    let table = measure(&ls, &default_candidates(), &eval, &Sequential, &|_, _| {}).unwrap();
    let plan = |b| Planner::params(b).check().unwrap().plan(&table);
    match plan(Budget::Bytes(100)) {
        Err(SquishError::Plan(PlanError::BudgetTooSmall { budget, min })) => {
            assert_eq!(budget, 100);
            assert!(min > 100);
            // The reported minimum is reachable.
            assert!(plan(Budget::Bytes(min)).is_ok());
        }
        other => panic!("{other:?}"),
    }
    assert!(matches!(
        plan(Budget::BitsPerWeight(32.0)),
        Err(SquishError::Plan(PlanError::BudgetAboveDense { .. }))
    ));
    assert!(Planner::params(Budget::Bytes(0)).check().is_err());
    assert!(Planner::params(Budget::BitsPerWeight(f64::NAN))
        .check()
        .is_err());
}

#[test]
fn a_layer_no_candidate_fits_is_named() {
    // 2:4 needs a row length divisible by 4: a 6-column layer has no candidate.
    let w = Array2::from_shape_fn((8, 6), |(i, j)| (i * 6 + j) as f32 / 48.0 - 0.5);
    let ls = vec![Layer {
        name: "odd.weight".into(),
        weight: w.view(),
        inputs: None,
    }];
    let only = vec![Candidate::parse("2:4", r#"[{ method = "nm", n = 2, m = 4 }]"#).unwrap()];
    let eval = WeightError::new(vec![w.view()]);
    let table = measure(&ls, &only, &eval, &Sequential, &|_, _| {}).unwrap();
    match Planner::params(Budget::Bytes(100))
        .check()
        .unwrap()
        .plan(&table)
    {
        Err(SquishError::Plan(PlanError::NoFeasibleCandidate { layer, .. })) => {
            assert_eq!(layer, "odd.weight")
        }
        other => panic!("{other:?}"),
    }
    assert!(matches!(
        measure(&ls, &[], &eval, &Sequential, &|_, _| {}),
        Err(SquishError::Plan(PlanError::NoCandidates { .. }))
    ));
    let _ = CompressedMatrix::from_dense(w.view()).unwrap();
}
