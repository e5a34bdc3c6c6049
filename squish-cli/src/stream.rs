//! Whole-model commands on models larger than memory: `squish compress`
//! streamed a few tensors at a time under a memory budget with a bytes/s
//! progress bar, `squish decompress` back to safetensors (shards), and
//! `squish inspect` on sharded checkpoints (a directory or an HF index).

use std::fmt::Write;
use std::path::{Path, PathBuf};

use indicatif::{ProgressBar, ProgressStyle};
use squish::io::description::VERSION_KEY;
use squish::io::{
    check_output, check_output_dir, export_dequantized, shape_string, ContainerWriter, ExportDtype,
    FileError, ModelWriter, OutputKind, ShardedModel, Written, DECOMPRESSED_KEY,
};
use squish::parallel::ParallelExecutor;
use squish::recipe::{Recipe, StreamCompression};
use squish::{Result, SquishError};

use crate::table;

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

/// A bar over `total` bytes with bytes/s and ETA (hidden when `quiet`).
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

/// A budget in MiB as bytes, checked.
pub fn budget_bytes(mib: usize) -> Result<usize> {
    // Checked here too, so the error names the flag, not the library's
    // `budget_bytes` parameter.
    if mib == 0 {
        return Err(SquishError::invalid(
            "--memory-budget",
            mib,
            "the budget for tensors in flight must be at least 1 MiB",
        ));
    }
    mib.checked_mul(1 << 20).ok_or_else(|| {
        SquishError::invalid(
            "--memory-budget",
            mib,
            "a budget in MiB that fits in memory",
        )
    })
}

/// Where `squish compress` or `decompress` writes: one file, or shards of at
/// most a size into a directory.
pub struct Output<'a> {
    pub path: &'a Path,
    pub shard_size: Option<u64>,
    pub force: bool,
}

impl Output<'_> {
    /// Refuses an output that is an input (or would replace one) or a file
    /// squish did not write, unless forced.
    fn check(&self, inputs: &[&Path], kind: OutputKind) -> Result<()> {
        match self.shard_size {
            Some(_) => check_output_dir(self.path, inputs, kind, self.force),
            None => check_output(self.path, inputs, kind, self.force),
        }
    }
}

/// Every file a model or container at `path` is read from: the path itself,
/// and its shards (and index) when it is sharded.
fn input_files(path: &Path, src: &ShardedModel) -> Vec<PathBuf> {
    let mut files = vec![path.to_path_buf()];
    files.extend(src.shards().iter().cloned());
    if path.is_dir() {
        let index = path.join(squish::io::INDEX_NAME);
        if index.is_file() {
            files.push(index);
        }
    }
    files
}

fn file_size(p: &Path) -> u64 {
    std::fs::metadata(p).map_or(0, |m| m.len())
}

fn wrote(w: &Written, output: &Path) {
    match &w.index {
        Some(index) => println!("wrote {} shards and {}", w.files.len(), index.display()),
        None => println!("wrote {}", output.display()),
    }
}

/// `squish compress`: reads the model (a file, an index or a directory of
/// shards) a few tensors at a time under `budget` bytes and writes one
/// container or shards of at most `--shard-size` bytes; prints the
/// per-layer table.
pub fn compress(
    model: &Path,
    extra_inputs: &[&Path],
    recipe: &Recipe,
    out: &Output,
    budget: usize,
    quiet: bool,
    exec: &dyn ParallelExecutor,
) -> Result<()> {
    let stream = StreamCompression::params().budget_bytes(budget).check()?;
    let src = ShardedModel::open(model)?;
    let files = input_files(model, &src);
    let mut inputs: Vec<&Path> = files.iter().map(PathBuf::as_path).collect();
    inputs.extend_from_slice(extra_inputs);
    out.check(&inputs, OutputKind::Container)?;
    if src.metadata().contains_key(VERSION_KEY) {
        return Err(FileError::IsAContainer {
            what: model.display().to_string(),
        }
        .into());
    }
    let writer = match out.shard_size {
        Some(max) => ContainerWriter::sharded(out.path, max)?,
        None => ContainerWriter::create(out.path)?,
    };
    let bar = bar(src.data_bytes(), quiet);
    let summary = stream.compress_to(&src, recipe, exec, writer, &mut |t| {
        bar.set_message(t.name.clone());
        bar.inc(t.bytes_read);
    })?;
    bar.finish_and_clear();
    let dtype = |name: &str| {
        src.get(name)
            .map_or(String::new(), |t| t.dtype().to_string())
    };
    let sizes = table::Files {
        input: src.shards().iter().map(|p| file_size(p)).sum(),
        output: summary
            .written
            .files
            .iter()
            .chain(&summary.written.index)
            .map(|p| file_size(p))
            .sum(),
    };
    print!(
        "{}",
        table::layer_rows(
            &summary.layers,
            &dtype,
            summary.totals(),
            summary.kept,
            &sizes
        )
    );
    wrote(&summary.written, out.path);
    Ok(())
}

/// `squish decompress`: the dequantized model with every float tensor in
/// `dtype`, one container shard in memory at a time, to one file or to
/// shards; marked as squish's own so a rerun may replace it.
pub fn decompress(file: &Path, out: &Output, dtype: &str) -> Result<()> {
    let dtype: ExportDtype = dtype.parse()?;
    let src = ShardedModel::open(file)?;
    let files = input_files(file, &src);
    let inputs: Vec<&Path> = files.iter().map(PathBuf::as_path).collect();
    out.check(&inputs, OutputKind::Decompressed)?;
    let mut writer = match out.shard_size {
        Some(max) => ModelWriter::sharded(out.path, max)?,
        None => ModelWriter::create(out.path)?,
    };
    writer.set_metadata(DECOMPRESSED_KEY, "1");
    // The library's error names neither the file nor the command to use.
    let w = export_dequantized(file, writer, dtype).map_err(|e| match e {
        SquishError::File(squish::io::FileError::NotAContainer { .. }) => SquishError::invalid(
            "FILE",
            file.display(),
            "is a plain safetensors model, not a squish container: `squish compress` makes one",
        ),
        e => e,
    })?;
    wrote(&w, out.path);
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

/// True when `path` names shards rather than one file.
pub fn is_sharded(path: &Path) -> bool {
    path.is_dir()
        || path
            .file_name()
            .and_then(|n| n.to_str())
            .is_some_and(|n| n.ends_with(".index.json"))
}
