//! `squish plan`: per-layer sensitivity and a byte-budget plan written as a recipe.

use std::path::{Path, PathBuf};

use clap::Args;
use indicatif::{ProgressBar, ProgressStyle};
use ndarray::ArrayView2;
use plotters::prelude::*;
use squish::io::{check_output, FileError, Model, OutputKind};
use squish::nn::{
    sentences_from_bytes, BertConfig, BertEncoder, SentenceTokenizer, Weights, DEFAULT_MAX_TOKENS,
};
use squish::parallel::ParallelExecutor;
use squish::plan::{
    bert_linear_weights, default_candidates, measure, Budget, Candidate, EncoderCosine, Evaluator,
    Layer, MixEvaluator, Plan, Planner, RefineParams, SensitivityTable, WeightError,
};
use squish::{Result, SquishError};

#[derive(Args)]
pub struct PlanArgs {
    /// A safetensors model, or a Hugging Face BERT directory (config.json,
    /// model.safetensors, tokenizer.json).
    model: PathBuf,
    /// Budget over the planned layers: bytes (`12MB`, `11.4MiB`, `9000000`)
    /// or bits per weight (`4.5bpw`).
    #[arg(long)]
    budget: String,
    /// Calibration sentences, one per line (with a BERT directory: the
    /// sensitivity is then the drop of embedding cosine on them; without, the
    /// data-free weight error is used).
    #[arg(long)]
    calibration: Option<PathBuf>,
    /// Calibration sentences used (the first N lines).
    #[arg(long, default_value_t = 64)]
    samples: usize,
    /// Glob selecting the layers to plan (default: every weight matrix; for a
    /// BERT directory its encoder linear layers).
    #[arg(long)]
    layer: Option<String>,
    /// Where to write the planned recipe.
    #[arg(short, long, default_value = "planned.toml")]
    output: PathBuf,
    /// Also write the per-layer sensitivity plot (distortion against bytes).
    #[arg(long)]
    svg: Option<PathBuf>,
    /// After the summed plan, evaluate up to N whole mixes to refine it
    /// (local search on the measured distortion; 0 = the summed plan).
    #[arg(long, default_value_t = 0)]
    refine: usize,
    /// Do not draw a progress bar.
    #[arg(long)]
    quiet: bool,
    /// Replace an existing output that squish did not write.
    #[arg(long)]
    force: bool,
}

fn io_err(path: &Path, e: impl std::fmt::Display) -> SquishError {
    SquishError::invalid("path", path.display(), e.to_string())
}

fn bar(total: usize, quiet: bool) -> ProgressBar {
    let b = if quiet {
        ProgressBar::hidden()
    } else {
        ProgressBar::new(total as u64)
    };
    b.set_style(
        ProgressStyle::with_template("{bar:30} {pos}/{len} sensitivity runs, ETA {eta}")
            .expect("a valid template"),
    );
    b
}

/// Measures the table, plans, and refines the plan when asked.
fn measure_and_plan(
    a: &PlanArgs,
    planner: &Planner,
    layers: &[Layer],
    candidates: &[Candidate],
    eval: &(impl Evaluator + MixEvaluator),
    exec: &dyn ParallelExecutor,
) -> Result<(SensitivityTable, Plan)> {
    let b = bar(layers.len() * candidates.len(), a.quiet);
    let table = measure(layers, candidates, eval, exec, &|d, _| {
        b.set_position(d as u64)
    })?;
    b.finish_and_clear();
    let plan = planner.plan(&table)?;
    if a.refine == 0 {
        return Ok((table, plan));
    }
    let params = RefineParams {
        max_evaluations: a.refine,
        ..RefineParams::default()
    };
    let r = planner.refine(&table, layers, &plan, eval, params, exec)?;
    println!(
        "refined: measured distortion {:.6} (summed plan) → {:.6} (from {}, {} moves in {} mix evaluations)",
        r.planner_measured, r.measured, r.start, r.accepted, r.evaluations
    );
    Ok((table, r.plan))
}

pub fn plan(a: &PlanArgs, exec: &dyn ParallelExecutor) -> Result<()> {
    let planner = Planner::params(a.budget.parse::<Budget>()?).check()?;
    let candidates = default_candidates();
    let is_dir = a.model.is_dir();
    let model_file = if is_dir {
        a.model.join("model.safetensors")
    } else {
        a.model.clone()
    };
    // Before the sweep (minutes): the plan and the plot replace no input and
    // no file of the user's.
    let mut inputs = vec![model_file.as_path()];
    inputs.extend(a.calibration.as_deref());
    check_output(&a.output, &inputs, OutputKind::Plan, a.force)?;
    if let Some(svg) = &a.svg {
        inputs.push(&a.output);
        check_output(svg, &inputs, OutputKind::Plot, a.force)?;
    }
    let model = Model::load(&model_file)?;
    // A container's tensors are already compressed (or stored plain):
    // planning them would measure the wrong weights. As compress and sweep.
    if model.is_container() {
        return Err(FileError::IsAContainer {
            what: a.model.display().to_string(),
        }
        .into());
    }
    let glob = a
        .layer
        .as_deref()
        .map(|g| {
            globset::Glob::new(g)
                .map(|g| g.compile_matcher())
                .map_err(|e| SquishError::invalid("--layer", g, e.kind().to_string()))
        })
        .transpose()?;
    let selected = |n: &str| glob.as_ref().is_none_or(|g| g.is_match(n));

    let (table, plan) = match (&a.calibration, is_dir) {
        (Some(cal), true) => {
            let text = std::fs::read(cal).map_err(|e| io_err(cal, e))?;
            let mut sentences = sentences_from_bytes(&text)?;
            sentences.truncate(a.samples.max(1));
            let config = BertConfig::load(a.model.join("config.json"))?;
            let tokenizer =
                SentenceTokenizer::from_file(a.model.join("tokenizer.json"), DEFAULT_MAX_TOKENS)?;
            let dense = BertEncoder::from_weights(
                config,
                Weights::Dense(&model),
                squish::nn::Activations::Float,
            )?;
            let named: Vec<(usize, String, ndarray::Array2<f32>)> = bert_linear_weights(&dense)
                .into_iter()
                .enumerate()
                .filter(|(_, (n, _))| selected(n))
                .map(|(i, (n, w))| (i, n, w))
                .collect();
            let eval = EncoderCosine::new(&tokenizer, &dense, &sentences, exec)?;
            // The evaluator indexes all encoder linears; map plan order to them.
            struct Subset<'a>(&'a EncoderCosine<'a>, Vec<usize>);
            impl Evaluator for Subset<'_> {
                fn distortion(
                    &self,
                    layer: usize,
                    m: &squish::matrix::CompressedMatrix,
                ) -> Result<f64> {
                    self.0.distortion(self.1[layer], m)
                }
            }
            impl MixEvaluator for Subset<'_> {
                fn mix_distortion(
                    &self,
                    mix: &[Option<&squish::matrix::CompressedMatrix>],
                ) -> Result<f64> {
                    let mut all = vec![None; self.1.iter().max().map_or(0, |m| m + 1)];
                    for (m, &i) in mix.iter().zip(&self.1) {
                        all[i] = *m;
                    }
                    self.0.mix_distortion(&all)
                }
            }
            let subset = Subset(&eval, named.iter().map(|(i, _, _)| *i).collect());
            let layers: Vec<Layer> = named
                .iter()
                .map(|(_, n, w)| Layer {
                    name: n.clone(),
                    weight: w.view(),
                    inputs: None,
                })
                .collect();
            measure_and_plan(a, &planner, &layers, &candidates, &subset, exec)?
        }
        _ => {
            let mats: Vec<(String, ArrayView2<f32>)> = model
                .iter()
                .filter(|(n, _)| selected(n))
                .filter_map(|(n, t)| Some((n.to_string(), t.matrix()?)))
                .collect();
            if mats.is_empty() {
                return Err(crate::no_weight_matrix(&a.model, a.layer.as_deref()));
            }
            let eval = WeightError::new(mats.iter().map(|(_, w)| *w).collect());
            let layers: Vec<Layer> = mats
                .iter()
                .map(|(n, w)| Layer {
                    name: n.clone(),
                    weight: *w,
                    inputs: None,
                })
                .collect();
            measure_and_plan(a, &planner, &layers, &candidates, &eval, exec)?
        }
    };
    plan.recipe()?; // the written recipe parses and checks
    squish::io::write_atomic(&a.output, plan.to_toml().as_bytes())?;
    println!("{plan}");
    println!("wrote {}", a.output.display());
    if let Some(svg) = &a.svg {
        sensitivity_svg(svg, &table)?;
        println!("wrote {}", svg.display());
    }
    Ok(())
}

/// Distortion (log scale) against bytes, one line per layer.
fn sensitivity_svg(path: &Path, t: &SensitivityTable) -> Result<()> {
    let err = |e: &dyn std::fmt::Display| SquishError::invalid("plot", "svg", e.to_string());
    let mut svg = String::new();
    {
        let root = SVGBackend::with_string(&mut svg, (900, 560)).into_drawing_area();
        root.fill(&WHITE).map_err(|e| err(&e))?;
        let pts: Vec<(usize, f64, f64)> = t
            .cells
            .iter()
            .enumerate()
            .flat_map(|(l, row)| {
                row.iter()
                    .filter_map(move |c| c.as_ref().ok().map(|m| (l, m.bytes as f64, m.distortion)))
            })
            .filter(|p| p.2 > 0.0)
            .collect();
        let (xmax, lo, hi) = pts
            .iter()
            .fold((1.0f64, 1.0f64, 1e-12f64), |(x, lo, hi), p| {
                (x.max(p.1), lo.min(p.2), hi.max(p.2))
            });
        let mut chart = ChartBuilder::on(&root)
            .caption(
                "per-layer sensitivity: distortion vs bytes",
                ("sans-serif", 20),
            )
            .margin(12)
            .x_label_area_size(40)
            .y_label_area_size(70)
            .build_cartesian_2d(
                (1.0..xmax * 1.2).log_scale(),
                (lo / 2.0..hi * 2.0).log_scale(),
            )
            .map_err(|e| err(&e))?;
        chart
            .configure_mesh()
            .x_desc("bytes of the layer")
            .y_desc("output distortion (layer alone compressed)")
            .draw()
            .map_err(|e| err(&e))?;
        for l in 0..t.layers.len() {
            let color = Palette99::pick(l).to_rgba();
            let mut xy: Vec<(f64, f64)> = pts
                .iter()
                .filter(|p| p.0 == l)
                .map(|p| (p.1, p.2))
                .collect();
            xy.sort_by(|a, b| a.0.total_cmp(&b.0));
            chart
                .draw_series(xy.iter().map(|&p| Circle::new(p, 3, color.filled())))
                .map_err(|e| err(&e))?;
            chart
                .draw_series(LineSeries::new(xy, color.stroke_width(1)))
                .map_err(|e| err(&e))?;
        }
        root.present().map_err(|e| err(&e))?;
    }
    crate::plot::write_svg(path, svg)
}
