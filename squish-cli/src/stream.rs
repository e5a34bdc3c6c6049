//! `squish inspect` on sharded checkpoints (a directory or an HF index).

use std::fmt::Write;
use std::path::Path;

use squish::io::{shape_string, ShardedModel};
use squish::Result;

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
