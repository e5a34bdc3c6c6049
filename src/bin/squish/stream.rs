//! Whole-model commands on models larger than memory: streaming compress
//! with a bytes/s progress bar, sharded inspect, and the dequantized export.

use std::fmt::Write;
use std::path::{Path, PathBuf};

use indicatif::{ProgressBar, ProgressStyle};
use squish::io::{
    export_dequantized, shape_string, ContainerWriter, ExportDtype, ModelWriter, ShardedModel,
};
use squish::parallel::ParallelExecutor;
use squish::recipe::{Recipe, StreamCompression};
use squish::{Result, SquishError};

/// Parses a size such as `2GB`, `500MiB` or `1048576` into bytes.
pub fn parse_size(s: &str) -> std::result::Result<u64, String> {
    let t = s.trim();
    let split = t
        .find(|c: char| !(c.is_ascii_digit() || c == '.'))
        .unwrap_or(t.len());
    let (num, unit) = t.split_at(split);
    let n: f64 = num
        .parse()
        .map_err(|_| format!("`{s}` is not a size (e.g. 2GB, 500MiB, 1048576)"))?;
    let mult: f64 = match unit.trim().to_ascii_lowercase().as_str() {
        "" | "b" => 1.0,
        "k" | "kb" => 1e3,
        "m" | "mb" => 1e6,
        "g" | "gb" => 1e9,
        "kib" => 1024.0,
        "mib" => (1u64 << 20) as f64,
        "gib" => (1u64 << 30) as f64,
        u => {
            return Err(format!(
                "unknown size unit `{u}` (B, KB, MB, GB, KiB, MiB, GiB)"
            ))
        }
    };
    let bytes = n * mult;
    if !(bytes >= 1.0 && bytes < u64::MAX as f64) {
        return Err(format!("`{s}` must be at least one byte"));
    }
    Ok(bytes as u64)
}

fn bar(total: u64, quiet: bool) -> ProgressBar {
    let bar = if quiet {
        ProgressBar::hidden()
    } else {
        ProgressBar::new(total)
    };
    bar.set_style(
        ProgressStyle::with_template(
            "{bar:30} {binary_bytes}/{binary_total_bytes} {binary_bytes_per_sec} ETA {eta} {msg}",
        )
        .expect("a valid template"),
    );
    bar
}

/// `squish compress`: reads the model (a file, an index or a directory of
/// shards) a few tensors at a time under `budget` bytes, writes one
/// container or, with `shard`, shards of at most that many bytes.
pub fn compress(
    model: &Path,
    recipe: &Recipe,
    output: &Path,
    budget: usize,
    shard: Option<u64>,
    quiet: bool,
    exec: &dyn ParallelExecutor,
) -> Result<()> {
    let src = ShardedModel::open(model)?;
    let stream = StreamCompression::params().budget_bytes(budget).check()?;
    let out = match shard {
        Some(max) => ContainerWriter::sharded(output, max)?,
        None => ContainerWriter::create(output)?,
    };
    let bar = bar(src.data_bytes(), quiet);
    let summary = stream.compress_to(&src, recipe, exec, out, &mut |t| {
        bar.set_message(t.name.clone());
        bar.inc(t.bytes_read);
    })?;
    bar.finish_and_clear();
    print!(
        "{}",
        super::table::layer_table(&summary.layers, summary.kept, summary.totals())
    );
    match &summary.written.index {
        Some(index) => println!(
            "wrote {} shards and {}",
            summary.written.files.len(),
            index.display()
        ),
        None => println!("wrote {}", output.display()),
    }
    Ok(())
}

/// `squish inspect` on a plain model in shards: every tensor with its shard.
pub fn inspect_sharded(path: &Path) -> Result<()> {
    let m = ShardedModel::open(path)?;
    let w = m
        .tensors()
        .iter()
        .map(|t| t.name().len())
        .max()
        .unwrap_or(6)
        .max(6);
    let mut s = format!(
        "plain safetensors model, {} tensors in {} shards, {:.1} MiB of data\n",
        m.tensors().len(),
        m.shards().len(),
        m.data_bytes() as f64 / (1 << 20) as f64
    );
    let _ = writeln!(
        s,
        "{:<w$}  {:<5}  {:<14}  {:>12}  shard",
        "tensor", "dtype", "shape", "bytes"
    );
    for t in m.tensors() {
        let shard = m.shards()[t.shard()]
            .file_name()
            .map(|n| n.to_string_lossy().into_owned())
            .unwrap_or_default();
        let _ = writeln!(
            s,
            "{:<w$}  {:<5}  {:<14}  {:>12}  {}",
            t.name(),
            t.dtype().to_string(),
            shape_string(t.shape()),
            t.bytes(),
            shard
        );
    }
    print!("{s}");
    Ok(())
}

/// `squish decompress`: the dequantized model in `dtype`, one container
/// shard in memory at a time, to one file or (with `shard`) to shards.
pub fn decompress(file: &Path, output: &PathBuf, dtype: &str, shard: Option<u64>) -> Result<()> {
    let dtype: ExportDtype = dtype.parse()?;
    let out = match shard {
        Some(max) => ModelWriter::sharded(output, max)?,
        None => ModelWriter::create(output)?,
    };
    let w = export_dequantized(file, out, dtype)?;
    match w.index {
        Some(index) => println!("wrote {} shards and {}", w.files.len(), index.display()),
        None => println!("wrote {}", output.display()),
    }
    Ok(())
}

/// True when `path` names shards rather than one file.
pub fn is_sharded(path: &Path) -> bool {
    path.is_dir()
        || path
            .file_name()
            .and_then(|n| n.to_str())
            .is_some_and(|n| n.ends_with(".index.json"))
}

/// A budget in MiB as bytes, checked.
pub fn budget_bytes(mib: usize) -> Result<usize> {
    mib.checked_mul(1 << 20).ok_or_else(|| {
        SquishError::invalid(
            "--memory-budget",
            mib,
            "a budget in MiB that fits in memory",
        )
    })
}
