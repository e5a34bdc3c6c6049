//! `squish`: compress, inspect, decompress and sweep safetensors models.

mod grid;
#[cfg(feature = "mpi")]
mod mpi;
mod plan;
mod plot;
mod serving;
mod stream;
mod table;

use std::path::{Path, PathBuf};
use std::process::ExitCode;

use clap::{Args, Parser, Subcommand};
use indicatif::{ProgressBar, ProgressStyle};
use squish::io::{check_output, CompressedModel, FileError, Model, OutputKind};
use squish::parallel::{ParallelExecutor, ThreadPool};
use squish::recipe::{
    compress_model_calibrated, families, sweep, IntSpec, KMeansSpec, LowRankSpec, MethodSpec,
    ModelCalibration, Recipe,
};
use squish::{Result, SquishError};

/// Compress neural-network weights and multiply them without decompressing.
#[derive(Parser)]
#[command(name = "squish", version, about)]
struct Cli {
    /// Worker threads (default: one per core).
    #[arg(long, global = true)]
    threads: Option<usize>,
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// Compress a safetensors model into a squish container.
    Compress(CompressArgs),
    /// Show what a container (or a plain safetensors file) holds.
    Inspect {
        /// A squish container or a safetensors model: a file, an index or a directory of shards.
        file: PathBuf,
    },
    /// Write the dequantized model as plain safetensors (original names, shapes, dtypes).
    Decompress {
        /// A squish container: a file, an index or a directory of shards.
        file: PathBuf,
        /// Output safetensors file (a directory with --shard-size).
        #[arg(short, long)]
        output: PathBuf,
        /// Replace the output even when it is the input or a file squish did not write.
        #[arg(long, alias = "overwrite")]
        force: bool,
        /// Dtype of the float tensors: original, f32, f16 or bf16.
        #[arg(long, default_value = "original")]
        dtype: String,
        /// Write Hugging Face shards of at most this size (e.g. 2GB) and an
        /// index into the directory given by --output.
        #[arg(long, value_name = "SIZE", value_parser = stream::parse_size)]
        shard_size: Option<u64>,
    },
    /// Error against bits per weight for each method family, as a table and an SVG plot.
    Sweep {
        /// A safetensors model.
        model: PathBuf,
        /// Glob selecting the layers to measure (`*` matches any characters).
        #[arg(long, default_value = "*")]
        layer: String,
        /// Where to write the rate–distortion plot.
        #[arg(long, default_value = "sweep.svg")]
        plot: PathBuf,
        /// Replace the plot file even when squish did not write it.
        #[arg(long, alias = "overwrite")]
        force: bool,
    },
    /// Embed sentences with a sentence encoder (model directory or container).
    Embed(serving::EmbedArgs),
    /// Throughput and latency of a sentence encoder, dense against compressed.
    ServeBench(serving::ServeBenchArgs),
    /// Per-layer sensitivity and the candidate per layer that fits a byte
    /// budget best, written as a TOML recipe for `squish compress --recipe`.
    Plan(plan::PlanArgs),
}

#[derive(Args)]
struct CompressArgs {
    /// A safetensors model: a file, an index (`model.safetensors.index.json`) or a directory of shards.
    model: PathBuf,
    /// TOML recipe: layer patterns mapped to pipelines.
    #[arg(long, conflicts_with_all = ["int8", "int4", "binary", "ternary", "kmeans", "prune", "rank_energy", "include", "exclude"])]
    recipe: Option<PathBuf>,
    /// Output container (a directory with --shard-size).
    #[arg(short, long)]
    output: PathBuf,
    /// Memory budget in MiB for the tensors in flight (read, widened to f32,
    /// being compressed); the model itself may be far larger.
    #[arg(long, value_name = "MIB", default_value_t = squish::recipe::DEFAULT_BUDGET >> 20)]
    memory_budget: usize,
    /// Write container shards of at most this size (e.g. 2GB) and a Hugging
    /// Face index into the directory given by --output.
    #[arg(long, value_name = "SIZE", value_parser = stream::parse_size)]
    shard_size: Option<u64>,
    /// Replace the output even when it is the input (or a link to it) or a
    /// file that is not a squish container.
    #[arg(long, alias = "overwrite")]
    force: bool,
    /// Quick recipe: compress only the matrices whose name matches this glob
    /// (repeatable; `*` matches any characters, dots included).
    #[arg(long, value_name = "GLOB")]
    include: Vec<String>,
    /// Quick recipe: keep the matrices whose name matches this glob as they
    /// are (repeatable; wins over --include), e.g. `--exclude '*embeddings*'`.
    #[arg(long, value_name = "GLOB")]
    exclude: Vec<String>,
    /// Quick recipe: magnitude-prune every matrix to this sparsity first.
    #[arg(long, value_name = "SPARSITY")]
    prune: Option<f64>,
    /// Quick recipe: factor every matrix to the rank keeping this fraction of
    /// Σσ² first (the quantizer flags then quantize both factors).
    #[arg(long, value_name = "ENERGY", conflicts_with = "prune")]
    rank_energy: Option<f64>,
    /// Quick recipe: int8 per row.
    #[arg(long, group = "quant")]
    int8: bool,
    /// Quick recipe: int4 per row.
    #[arg(long, group = "quant")]
    int4: bool,
    /// Quick recipe: binary (sign × per-row scale).
    #[arg(long, group = "quant")]
    binary: bool,
    /// Quick recipe: ternary.
    #[arg(long, group = "quant")]
    ternary: bool,
    /// Quick recipe: k-means weight sharing with K shared values per matrix.
    #[arg(long, group = "quant", value_name = "K")]
    kmeans: Option<usize>,
    /// Calibration sentences, one per line, for the data-aware methods of
    /// the recipe (gptq, sparsegpt, wanda, awq); MODEL must then be a BERT-family
    /// directory (config.json, tokenizer.json, model.safetensors). Wins over
    /// the recipe's `[calibration] file`.
    #[arg(long, value_name = "FILE")]
    calibration: Option<PathBuf>,
    /// Do not draw a progress bar.
    #[arg(long)]
    quiet: bool,
}

fn pool(threads: Option<usize>) -> Result<ThreadPool> {
    match threads {
        Some(n) => ThreadPool::new(n),
        None => ThreadPool::all_cores(),
    }
}

fn quick_recipe(a: &CompressArgs) -> Result<Recipe> {
    let mut methods = Vec::new();
    if let Some(e) = a.rank_energy {
        methods.push(MethodSpec::LowRank(LowRankSpec {
            energy: Some(e),
            ..LowRankSpec::default()
        }));
    }
    if let Some(s) = a.prune {
        methods.push(MethodSpec::Magnitude { sparsity: s });
    }
    if a.int8 {
        methods.push(MethodSpec::Int8(IntSpec::default()));
    } else if a.int4 {
        methods.push(MethodSpec::Int4(IntSpec::default()));
    } else if a.binary {
        methods.push(MethodSpec::Binary {});
    } else if a.ternary {
        methods.push(MethodSpec::Ternary {});
    } else if let Some(k) = a.kmeans {
        methods.push(MethodSpec::KMeans(KMeansSpec {
            k: Some(k),
            ..KMeansSpec::default()
        }));
    }
    if methods.is_empty() {
        return Err(SquishError::invalid(
            "recipe",
            "none",
            "pass --recipe FILE or quick flags (--int8, --int4, --binary, --ternary, --kmeans K, --prune S, --rank-energy E)",
        ));
    }
    let include: Vec<&str> = a.include.iter().map(String::as_str).collect();
    let exclude: Vec<&str> = a.exclude.iter().map(String::as_str).collect();
    Recipe::selected(methods, &include, &exclude)
}

fn compress(a: &CompressArgs, exec: &dyn ParallelExecutor) -> Result<()> {
    if let (Some(file), None) = (&a.calibration, &a.recipe) {
        return Err(SquishError::invalid(
            "--calibration",
            file.display(),
            "calibration data is for the data-aware methods of a recipe (gptq, sparsegpt, wanda, awq); pass --recipe FILE (the quick flags are data-free)",
        ));
    }
    let recipe = match &a.recipe {
        Some(p) => Recipe::load(p)?,
        None => quick_recipe(a)?,
    };
    // Started by mpirun: the ranks share the layers (feature `mpi`).
    #[cfg(feature = "mpi")]
    if squish::distributed::MpiComm::launched() {
        let mut inputs = vec![a.model.as_path()];
        inputs.extend(a.recipe.as_deref());
        check_output(&a.output, &inputs, OutputKind::Container, a.force)?;
        let model = Model::load(&a.model)?;
        if model.is_container() {
            return Err(FileError::IsAContainer {
                what: a.model.display().to_string(),
            }
            .into());
        }
        return mpi::compress(&model, &a.model, &recipe, &a.output, exec);
    }
    if recipe.needs_calibration() {
        return compress_calibrated(a, &recipe, exec);
    }
    let out = stream::Output {
        path: &a.output,
        shard_size: a.shard_size,
        force: a.force,
    };
    let extra: Vec<&Path> = a.recipe.iter().map(PathBuf::as_path).collect();
    stream::compress(
        &a.model,
        &extra,
        &recipe,
        &out,
        stream::budget_bytes(a.memory_budget)?,
        a.quiet,
        exec,
    )
}

/// `compress` for a recipe with data-aware methods (gptq, sparsegpt,
/// wanda): the whole model in memory, calibrated on the sentences of
/// `--calibration` or the recipe's `[calibration] file`.
fn compress_calibrated(
    a: &CompressArgs,
    recipe: &Recipe,
    exec: &dyn ParallelExecutor,
) -> Result<()> {
    let calibration_file = a
        .calibration
        .clone()
        .or_else(|| recipe.calibration().and_then(|c| c.file.clone()));
    let mut inputs = vec![a.model.as_path()];
    inputs.extend(a.recipe.as_deref());
    inputs.extend(calibration_file.as_deref());
    check_output(&a.output, &inputs, OutputKind::Container, a.force)?;
    // A Hugging Face model directory: its model.safetensors.
    let single = a.model.join("model.safetensors");
    let model_path = if a.model.is_dir() && single.is_file() {
        single
    } else {
        a.model.clone()
    };
    let model = Model::load(&model_path)?;
    if model.is_container() {
        return Err(FileError::IsAContainer {
            what: a.model.display().to_string(),
        }
        .into());
    }
    let calibration = match &calibration_file {
        Some(file) if recipe.needs_calibration() => {
            calibrate(&a.model, &model, recipe, file, exec)?
        }
        _ => ModelCalibration::default(),
    };
    let n = model.iter().filter(|(_, t)| t.matrix().is_some()).count();
    let bar = if a.quiet {
        ProgressBar::hidden()
    } else {
        ProgressBar::new(n as u64)
    };
    bar.set_style(
        ProgressStyle::with_template("{bar:30} {pos}/{len} layers {msg}")
            .expect("a valid template"),
    );
    let out = compress_model_calibrated(&model, recipe, &calibration, exec, &|name| {
        bar.set_message(name.to_string());
        bar.inc(1);
    })?;
    bar.finish_and_clear();
    out.model.save(&a.output)?;
    let size = |p: &Path| std::fs::metadata(p).map_or(0, |m| m.len());
    let files = table::Files {
        input: size(&model_path),
        output: size(&a.output),
    };
    print!("{}", table::layers(&out, &model, &files));
    println!("wrote {}", a.output.display());
    Ok(())
}

/// Runs the calibration sentences of `file` through the BERT-family model
/// in `model_path` (a directory, or a file next to its config.json).
fn calibrate(
    model_path: &Path,
    model: &Model,
    recipe: &Recipe,
    file: &Path,
    exec: &dyn ParallelExecutor,
) -> Result<ModelCalibration> {
    let dir = if model_path.is_dir() {
        model_path
    } else {
        model_path.parent().unwrap_or(Path::new("."))
    };
    for needed in ["config.json", "tokenizer.json"] {
        if !dir.join(needed).is_file() {
            return Err(SquishError::invalid(
                "--calibration",
                file.display(),
                format!(
                    "calibration sentences need a BERT-family model directory, and {} has no {needed}; pass the Hugging Face model directory as MODEL, or use data-free methods",
                    dir.display()
                ),
            ));
        }
    }
    let text = std::fs::read(file).map_err(|e| {
        SquishError::invalid("--calibration", file.display(), format!("cannot read: {e}"))
    })?;
    let sentences = squish::nn::sentences_from_bytes(&text)?;
    squish::calibration::calibrate_bert(model, dir, recipe, &sentences, exec)
}

fn inspect(file: &Path) -> Result<()> {
    match CompressedModel::open(file) {
        Ok(m) => {
            print!("{}", table::container(&m));
            Ok(())
        }
        Err(SquishError::File(FileError::NotAContainer { .. })) if stream::is_sharded(file) => {
            stream::inspect_sharded(file)
        }
        Err(SquishError::File(FileError::NotAContainer { .. })) => {
            print!("{}", table::model(&Model::load(file)?));
            Ok(())
        }
        Err(e) => Err(e),
    }
}

/// The error for a selection of no weight matrix: it names `--layer` when
/// the user gave one, and the model when it holds none.
pub(crate) fn no_weight_matrix(model: &Path, layer: Option<&str>) -> SquishError {
    match layer {
        Some(l) => SquishError::invalid(
            "--layer",
            l,
            "selects no weight matrix (float tensor of rank ≥ 2); `squish inspect MODEL` lists them",
        ),
        None => SquishError::invalid(
            "model",
            model.display(),
            "holds no weight matrix (float tensor of rank ≥ 2) to measure",
        ),
    }
}

fn run_sweep(
    model: &Path,
    layer: &str,
    plot_path: &Path,
    force: bool,
    exec: &dyn ParallelExecutor,
) -> Result<()> {
    check_output(plot_path, &[model], OutputKind::Plot, force)?;
    let m = Model::load(model)?;
    if m.is_container() {
        return Err(FileError::IsAContainer {
            what: model.display().to_string(),
        }
        .into());
    }
    let glob = globset::Glob::new(layer)
        .map_err(|e| SquishError::invalid("--layer", layer, e.kind().to_string()))?
        .compile_matcher();
    let layers: Vec<(String, ndarray::ArrayView2<f32>)> = m
        .iter()
        .filter(|(n, _)| glob.is_match(n))
        .filter_map(|(n, t)| Some((n.to_string(), t.matrix()?)))
        .collect();
    if layers.is_empty() {
        // `*` is the default: then the model, not the option, is at fault.
        return Err(no_weight_matrix(model, Some(layer).filter(|l| *l != "*")));
    }
    let fams = families();
    let points = sweep(&fams, &layers, exec)?;
    let names: Vec<&str> = layers.iter().map(|(n, _)| n.as_str()).collect();
    print!("{}", table::sweep(&names, &points));
    plot::rate_distortion(plot_path, &points)?;
    println!("wrote {}", plot_path.display());
    Ok(())
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    let result = pool(cli.threads).and_then(|exec| match &cli.command {
        Command::Compress(a) => compress(a, &exec),
        Command::Inspect { file } => inspect(file),
        Command::Decompress {
            file,
            output,
            force,
            dtype,
            shard_size,
        } => stream::decompress(
            file,
            &stream::Output {
                path: output,
                shard_size: *shard_size,
                force: *force,
            },
            dtype,
        ),
        Command::Sweep {
            model,
            layer,
            plot,
            force,
        } => run_sweep(model, layer, plot, *force, &exec),
        Command::Embed(a) => serving::embed(a, &exec),
        Command::ServeBench(a) => serving::serve_bench(a, &exec),
        Command::Plan(a) => plan::plan(a, &exec),
    });
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            // Messages already include their causes.
            eprintln!("error: {e}");
            ExitCode::FAILURE
        }
    }
}
