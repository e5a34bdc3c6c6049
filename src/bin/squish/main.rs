//! `squish`: compress, inspect, decompress and sweep safetensors models.

#[cfg(feature = "mpi")]
mod mpi;
mod plot;
mod table;

use std::path::{Path, PathBuf};
use std::process::ExitCode;

use clap::{Args, Parser, Subcommand};
use indicatif::{ProgressBar, ProgressStyle};
use squish::io::{CompressedModel, FileError, Model};
use squish::parallel::{ParallelExecutor, ThreadPool};
use squish::recipe::{compress_model, families, sweep, IntSpec, LowRankSpec, MethodSpec, Recipe};
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
        /// A squish container or a safetensors model.
        file: PathBuf,
    },
    /// Write the dequantized model as plain safetensors (original names, shapes, dtypes).
    Decompress {
        /// A squish container.
        file: PathBuf,
        /// Output safetensors file.
        #[arg(short, long)]
        output: PathBuf,
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
    },
}

#[derive(Args)]
struct CompressArgs {
    /// A safetensors model.
    model: PathBuf,
    /// TOML recipe: layer patterns mapped to pipelines.
    #[arg(long, conflicts_with_all = ["int8", "int4", "binary", "ternary", "prune", "rank_energy"])]
    recipe: Option<PathBuf>,
    /// Output container.
    #[arg(short, long)]
    output: PathBuf,
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
    }
    if methods.is_empty() {
        return Err(SquishError::invalid(
            "recipe",
            "none",
            "pass --recipe FILE or quick flags (--int8, --int4, --binary, --ternary, --prune S, --rank-energy E)",
        ));
    }
    Recipe::uniform(methods)
}

fn compress(a: &CompressArgs, exec: &dyn ParallelExecutor) -> Result<()> {
    let recipe = match &a.recipe {
        Some(p) => Recipe::load(p)?,
        None => quick_recipe(a)?,
    };
    let model = Model::load(&a.model)?;
    // Started by mpirun: the ranks share the layers (feature `mpi`).
    #[cfg(feature = "mpi")]
    if squish::distributed::MpiComm::launched() {
        return mpi::compress(&model, &recipe, &a.output, exec);
    }
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
    let out = compress_model(&model, &recipe, exec, &|name| {
        bar.set_message(name.to_string());
        bar.inc(1);
    })?;
    bar.finish_and_clear();
    out.model.save(&a.output)?;
    print!("{}", table::layers(&out, &model));
    println!("wrote {}", a.output.display());
    Ok(())
}

fn inspect(file: &Path) -> Result<()> {
    match CompressedModel::load(file) {
        Ok(m) => {
            print!("{}", table::container(&m));
            Ok(())
        }
        Err(SquishError::File(FileError::NotAContainer { .. })) => {
            print!("{}", table::model(&Model::load(file)?));
            Ok(())
        }
        Err(e) => Err(e),
    }
}

fn run_sweep(
    model: &Path,
    layer: &str,
    plot_path: &Path,
    exec: &dyn ParallelExecutor,
) -> Result<()> {
    let m = Model::load(model)?;
    let glob = globset::Glob::new(layer)
        .map_err(|e| SquishError::invalid("--layer", layer, e.kind().to_string()))?
        .compile_matcher();
    let layers: Vec<(String, ndarray::ArrayView2<f32>)> = m
        .iter()
        .filter(|(n, _)| glob.is_match(n))
        .filter_map(|(n, t)| Some((n.to_string(), t.matrix()?)))
        .collect();
    if layers.is_empty() {
        return Err(SquishError::invalid(
            "--layer",
            layer,
            "selects no weight matrix (float tensor of rank ≥ 2); `squish inspect MODEL` lists them",
        ));
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
        Command::Decompress { file, output } => CompressedModel::load(file)
            .and_then(|m| m.decompress().save(output))
            .map(|()| println!("wrote {}", output.display())),
        Command::Sweep { model, layer, plot } => run_sweep(model, layer, plot, &exec),
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
