//! Containers split over shards: loading them as one
//! [`CompressedModel`], and the dequantized export a shard at a time.

use std::path::Path;

use super::stream::{ModelWriter, Written};
use super::{CompressedModel, Entry, ExportDtype, ShardedModel};
use crate::error::Result;

impl CompressedModel {
    /// Opens a container written whole ([`save`](Self::save)) or in shards
    /// ([`ContainerWriter::sharded`](super::ContainerWriter::sharded)): a
    /// container file, its index, or the directory holding them. The index
    /// is checked against every shard's header first (see
    /// [`ShardedModel::open`]); entries come in shard order.
    ///
    /// ```
    /// use squish::io::{CompressedModel, ContainerWriter, Dtype, Tensor};
    /// let dir = tempfile::tempdir()?;
    /// let mut w = ContainerWriter::sharded(dir.path(), 8)?;
    /// w.push_plain("a", &Tensor::float(Dtype::F32, vec![2], vec![1.0, 2.0])?)?;
    /// w.push_plain("b", &Tensor::float(Dtype::F32, vec![2], vec![3.0, 4.0])?)?;
    /// assert_eq!(w.finish()?.files.len(), 2);
    /// let m = CompressedModel::open(dir.path())?;
    /// assert_eq!(m.iter().map(|(n, _)| n).collect::<Vec<_>>(), ["a", "b"]);
    /// # Ok::<(), Box<dyn std::error::Error>>(())
    /// ```
    pub fn open(path: impl AsRef<Path>) -> Result<Self> {
        let shards = ShardedModel::open(path.as_ref())?;
        if let [one] = shards.shards() {
            return Self::load(one);
        }
        let mut model = CompressedModel::new();
        for s in shards.shards() {
            for (name, e) in CompressedModel::load(s)?.iter() {
                match e {
                    Entry::Compressed(c) => model.insert_compressed(name, (**c).clone())?,
                    Entry::Plain(t) => model.insert_plain(name, t.clone())?,
                }
            }
        }
        Ok(model)
    }
}

/// Writes the dequantized model of the container at `src` (a file, an index
/// or a directory of shards) to `out`, one container shard in memory at a
/// time, every float tensor in `dtype`: original names and shapes, so any
/// safetensors consumer loads it.
///
/// ```
/// use squish::io::{export_dequantized, CompressedModel, Dtype, ExportDtype, Model, ModelWriter, Tensor};
/// let dir = tempfile::tempdir()?;
/// let mut c = CompressedModel::new();
/// c.insert_plain("w", Tensor::float(Dtype::F32, vec![2, 2], vec![1.0, 2.0, 3.0, 1.0 / 3.0])?)?;
/// c.save(dir.path().join("c.squish"))?;
/// let out = ModelWriter::create(dir.path().join("w.safetensors"))?;
/// export_dequantized(dir.path().join("c.squish"), out, ExportDtype::BF16)?;
/// let m = Model::load(dir.path().join("w.safetensors"))?;
/// assert_eq!(m.get("w").unwrap().dtype(), Dtype::BF16);
/// # Ok::<(), Box<dyn std::error::Error>>(())
/// ```
pub fn export_dequantized(
    src: impl AsRef<Path>,
    mut out: ModelWriter,
    dtype: ExportDtype,
) -> Result<Written> {
    let shards = ShardedModel::open(src.as_ref())?;
    for s in shards.shards() {
        let part = CompressedModel::load(s)?;
        for (name, e) in part.iter() {
            let t = match e {
                Entry::Compressed(c) => c.to_tensor(),
                Entry::Plain(t) => t.clone(),
            };
            out.push(name, &dtype.apply(t))?;
        }
    }
    out.finish()
}
