//! Streaming writers: a model or a container written a tensor at a time,
//! in bounded memory, to one file or to shards with an index, finished
//! atomically.
//!
//! Each tensor's bytes are appended to a spill file next to the output as
//! soon as they exist. When a file is finished its header is built (the
//! same header [`CompressedModel::save`] or [`Model::save`] writes: tensors
//! ordered by dtype then name, keys sorted, padded to 8 bytes) and the data
//! is copied from the spill in that order (in the kernel where the OS can:
//! `copy_file_range` on Linux). So the streamed file is byte for byte the
//! file the in-memory path writes, while memory holds one tensor at a time.
//! Output goes to temporary files that are synced and renamed into place
//! only at [`finish`](ContainerWriter::finish); an error or a writer dropped
//! unfinished leaves nothing behind.

use std::collections::{BTreeMap, HashMap, HashSet};
use std::fs::File;
use std::io::{Seek, SeekFrom, Write};
use std::path::{Path, PathBuf};

use safetensors::tensor::{Metadata, TensorInfo};
use safetensors::Dtype;
use tempfile::NamedTempFile;

use super::atomic::{canonical_header, Named, OwnedView};
use super::codec;
use super::description::{ContainerDesc, EntryDesc, DESCRIPTION_KEY, FORMAT_VERSION, VERSION_KEY};
use super::sharded::INDEX_NAME;
use super::{Entry, FileError, Tensor, COMPONENT_SEPARATOR};
use crate::error::Result;

/// What a finished writer wrote.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Written {
    /// The safetensors files, in order.
    pub files: Vec<PathBuf>,
    /// The index, for sharded output.
    pub index: Option<PathBuf>,
    /// Bytes of tensor data over all files.
    pub data_bytes: u64,
}

/// One tensor in the spill file.
struct Part {
    name: String,
    dtype: Dtype,
    shape: Vec<usize>,
    at: u64,
    len: u64,
}

/// The shared machinery: spill, shard cut, header, atomic finish.
struct Core {
    dir: PathBuf,
    /// `Some(path)`: one file; `None`: shards and an index in `dir`.
    single: Option<PathBuf>,
    max_shard: u64,
    spill: NamedTempFile,
    spill_len: u64,
    parts: Vec<Part>,
    finished: Vec<(NamedTempFile, Vec<String>)>,
    names: HashSet<String>,
    data_bytes: u64,
}

fn temp_in(dir: &Path) -> Result<NamedTempFile, FileError> {
    tempfile::Builder::new()
        .prefix(".squish-")
        .suffix(".tmp")
        .tempfile_in(dir)
        .map_err(|e| FileError::io("create a temporary file in", dir, e))
}

fn parent_of(path: &Path) -> PathBuf {
    match path.parent() {
        Some(d) if !d.as_os_str().is_empty() => d.to_path_buf(),
        _ => PathBuf::from("."),
    }
}

/// Renames a synced temporary file to `path` (rw-r--r--, or the permissions
/// of the file it replaces).
fn persist(tmp: NamedTempFile, path: &Path) -> Result<(), FileError> {
    #[cfg(unix)]
    {
        let perms = match std::fs::metadata(path) {
            Ok(m) => m.permissions(),
            Err(_) => std::os::unix::fs::PermissionsExt::from_mode(0o644),
        };
        std::fs::set_permissions(tmp.path(), perms)
            .map_err(|e| FileError::io("set permissions of", tmp.path(), e))?;
    }
    tmp.persist(path)
        .map_err(|e| FileError::io("rename a temporary file to", path, e.error))?;
    Ok(())
}

impl Core {
    fn new(single: Option<PathBuf>, dir: PathBuf, max_shard: u64) -> Result<Self, FileError> {
        if single.is_none() {
            std::fs::create_dir_all(&dir).map_err(|e| FileError::io("create", &dir, e))?;
        }
        Ok(Core {
            spill: temp_in(&dir)?,
            dir,
            single,
            max_shard: max_shard.max(1),
            spill_len: 0,
            parts: Vec::new(),
            finished: Vec::new(),
            names: HashSet::new(),
            data_bytes: 0,
        })
    }

    /// True when `len` more bytes belong in a new shard.
    fn full(&self, len: u64) -> bool {
        !self.parts.is_empty() && self.spill_len.saturating_add(len) > self.max_shard
    }

    fn append(&mut self, v: &Named) -> Result<(), FileError> {
        if !self.names.insert(v.0.clone()) {
            return Err(FileError::DuplicateName { name: v.0.clone() });
        }
        let path = self.spill.path().to_path_buf();
        self.spill
            .as_file_mut()
            .write_all(&v.1.bytes)
            .map_err(|e| FileError::io("write", path, e))?;
        let len = v.1.bytes.len() as u64;
        self.parts.push(Part {
            name: v.0.clone(),
            dtype: v.1.dtype,
            shape: v.1.shape.clone(),
            at: self.spill_len,
            len,
        });
        self.spill_len += len;
        self.data_bytes += len;
        Ok(())
    }

    /// Writes the current shard (header, then data in header order) to a
    /// synced temporary file and empties the spill.
    fn close(&mut self, metadata: Option<HashMap<String, String>>) -> Result<(), FileError> {
        let parts = std::mem::take(&mut self.parts);
        // safetensors' order: dtype (widest first), then name.
        let mut order: Vec<usize> = (0..parts.len()).collect();
        order.sort_by(|&a, &b| {
            parts[b]
                .dtype
                .cmp(&parts[a].dtype)
                .then_with(|| parts[a].name.cmp(&parts[b].name))
        });
        let mut infos = Vec::with_capacity(parts.len());
        let mut offset = 0usize;
        for &i in &order {
            let p = &parts[i];
            let end = offset + p.len as usize;
            infos.push((
                p.name.clone(),
                TensorInfo {
                    dtype: p.dtype,
                    shape: p.shape.clone(),
                    data_offsets: (offset, end),
                },
            ));
            offset = end;
        }
        let meta = Metadata::new(metadata, infos)?;
        let mut json = serde_json::to_string(&meta)
            .expect("string keys serialize")
            .into_bytes();
        json.resize(json.len().next_multiple_of(8), b' ');
        let mut head = (json.len() as u64).to_le_bytes().to_vec();
        head.extend_from_slice(&json);
        canonical_header(&mut head);

        let out = temp_in(&self.dir)?;
        let io = |e| FileError::io("write", out.path(), e);
        let mut dst = out.as_file();
        dst.write_all(&head).map_err(io)?;
        let mut src: &File = self.spill.as_file();
        for &i in &order {
            let p = &parts[i];
            src.seek(SeekFrom::Start(p.at)).map_err(io)?;
            let n = std::io::copy(&mut std::io::Read::take(src, p.len), &mut dst).map_err(io)?;
            if n != p.len {
                return Err(io(std::io::ErrorKind::UnexpectedEof.into()));
            }
        }
        dst.sync_all().map_err(io)?;
        self.spill
            .as_file()
            .set_len(0)
            .and_then(|_| self.spill.as_file_mut().seek(SeekFrom::Start(0)))
            .map_err(|e| FileError::io("truncate", self.spill.path(), e))?;
        self.spill_len = 0;
        let names = parts.into_iter().map(|p| p.name).collect();
        self.finished.push((out, names));
        Ok(())
    }

    /// Renames every finished file into place (shards first, the index
    /// last); on failure removes what it already renamed.
    fn finish(self) -> Result<Written, FileError> {
        let Core {
            dir,
            single,
            finished,
            data_bytes,
            ..
        } = self;
        if let Some(path) = single {
            let (tmp, _) = finished.into_iter().next().expect("one file closed");
            persist(tmp, &path)?;
            sync_dir(&dir);
            return Ok(Written {
                files: vec![path],
                index: None,
                data_bytes,
            });
        }
        let n = finished.len();
        let mut weight_map = BTreeMap::new();
        let mut plan = Vec::with_capacity(n);
        for (i, (tmp, names)) in finished.into_iter().enumerate() {
            let file = format!("model-{:05}-of-{n:05}.safetensors", i + 1);
            for name in names {
                weight_map.insert(name, file.clone());
            }
            plan.push((tmp, dir.join(file)));
        }
        let index = serde_json::json!({
            "metadata": { "total_size": data_bytes },
            "weight_map": weight_map,
        });
        let index_tmp = temp_in(&dir)?;
        let text = serde_json::to_vec_pretty(&index).expect("JSON values serialize");
        {
            let mut f = index_tmp.as_file();
            f.write_all(&text)
                .and_then(|_| f.write_all(b"\n"))
                .and_then(|_| f.sync_all())
                .map_err(|e| FileError::io("write", index_tmp.path(), e))?;
        }
        let mut done: Vec<PathBuf> = Vec::with_capacity(n);
        let index_path = dir.join(INDEX_NAME);
        let steps = plan
            .into_iter()
            .chain(std::iter::once((index_tmp, index_path.clone())));
        for (tmp, path) in steps {
            if let Err(e) = persist(tmp, &path) {
                for p in &done {
                    let _ = std::fs::remove_file(p);
                }
                return Err(e);
            }
            done.push(path);
        }
        done.pop();
        sync_dir(&dir);
        Ok(Written {
            files: done,
            index: Some(index_path),
            data_bytes,
        })
    }
}

fn sync_dir(dir: &Path) {
    // Best effort: not every platform can open a directory for syncing.
    if let Ok(d) = File::open(dir) {
        let _ = d.sync_all();
    }
}

fn crc(parts: &[Named]) -> u32 {
    let mut h = crc32fast::Hasher::new();
    for (_, v) in parts {
        h.update(&v.bytes);
    }
    h.finalize()
}

/// The components and the description of one container entry, as
/// [`CompressedModel::save`](super::CompressedModel::save) lays them out.
fn encode_entry(name: &str, e: &Entry) -> (Vec<Named>, EntryDesc) {
    let mut views: Vec<Named> = Vec::new();
    let (dtype, shape, method, matrix) = match e {
        Entry::Compressed(c) => {
            let prefix = format!("{name}{COMPONENT_SEPARATOR}");
            let d = codec::encode(c.matrix(), &prefix, &mut views);
            (
                c.dtype(),
                c.shape().to_vec(),
                Some(c.method().to_string()),
                Some(d),
            )
        }
        Entry::Plain(t) => {
            views.push((name.to_string(), plain_view(t)));
            (t.dtype(), t.shape().to_vec(), None, None)
        }
    };
    let desc = EntryDesc {
        name: name.to_string(),
        dtype: dtype.to_string(),
        shape,
        crc32: crc(&views),
        method,
        matrix,
    };
    (views, desc)
}

fn plain_view(t: &Tensor) -> OwnedView {
    OwnedView {
        dtype: t.dtype(),
        shape: t.shape().to_vec(),
        bytes: t.to_bytes(),
    }
}

/// Writes a squish container a tensor at a time: the streaming form of
/// [`CompressedModel::save`](super::CompressedModel::save), giving the same
/// bytes for the same entries, or shards of at most a given size with a
/// Hugging Face index (each shard a container of whole tensors; load them
/// with [`CompressedModel::open`](super::CompressedModel::open)).
///
/// ```
/// use ndarray::Array2;
/// use squish::io::{CompressedModel, CompressedTensor, ContainerWriter, Dtype, Tensor};
/// use squish::prelude::*;
/// let w = Array2::from_shape_fn((16, 8), |(i, j)| (i as f32 - j as f32) / 8.0);
/// let q = Pipeline::new().quantize(IntQuantizer::params(8).per_row().check()?).run(w.view())?.matrix;
/// let t = CompressedTensor::new(q, Dtype::BF16, vec![16, 8], "int8")?;
/// let bias = Tensor::float(Dtype::BF16, vec![16], vec![0.5; 16])?;
///
/// let dir = tempfile::tempdir()?;
/// let path = dir.path().join("m.squish");
/// let mut out = ContainerWriter::create(&path)?;
/// out.push_compressed("fc.weight", &t)?;
/// out.push_plain("fc.bias", &bias)?;
/// out.finish()?;
///
/// let mut whole = CompressedModel::new();
/// whole.insert_compressed("fc.weight", t)?;
/// whole.insert_plain("fc.bias", bias)?;
/// assert_eq!(std::fs::read(&path)?, whole.to_bytes()?); // byte for byte
/// # Ok::<(), Box<dyn std::error::Error>>(())
/// ```
pub struct ContainerWriter {
    core: Core,
    descs: Vec<EntryDesc>,
    logical: HashSet<String>,
}

impl ContainerWriter {
    /// A writer of one container file at `path`.
    pub fn create(path: impl AsRef<Path>) -> Result<Self> {
        let path = path.as_ref().to_path_buf();
        Ok(ContainerWriter {
            core: Core::new(Some(path.clone()), parent_of(&path), u64::MAX)?,
            descs: Vec::new(),
            logical: HashSet::new(),
        })
    }

    /// A writer of shards of at most `max_shard_bytes` of data each (a
    /// single tensor larger than that gets a shard of its own) into `dir`,
    /// created if missing: `model-00001-of-0000N.safetensors` … and
    /// `model.safetensors.index.json`.
    pub fn sharded(dir: impl AsRef<Path>, max_shard_bytes: u64) -> Result<Self> {
        let dir = dir.as_ref().to_path_buf();
        Ok(ContainerWriter {
            core: Core::new(None, dir, max_shard_bytes)?,
            descs: Vec::new(),
            logical: HashSet::new(),
        })
    }

    /// Appends an entry (compressed or plain).
    pub fn push(&mut self, name: &str, entry: &Entry) -> Result<()> {
        if !self.logical.insert(name.to_string()) {
            return Err(FileError::DuplicateName {
                name: name.to_string(),
            }
            .into());
        }
        let (views, desc) = encode_entry(name, entry);
        let len: u64 = views.iter().map(|(_, v)| v.bytes.len() as u64).sum();
        if self.core.full(len) {
            self.close()?;
        }
        for v in &views {
            self.core.append(v)?;
        }
        self.descs.push(desc);
        Ok(())
    }

    /// Appends a compressed matrix.
    pub fn push_compressed(&mut self, name: &str, t: &super::CompressedTensor) -> Result<()> {
        self.push(name, &Entry::Compressed(Box::new(t.clone())))
    }

    /// Appends a tensor kept as it is.
    pub fn push_plain(&mut self, name: &str, t: &Tensor) -> Result<()> {
        self.push(name, &Entry::Plain(t.clone()))
    }

    /// Bytes of data written so far.
    pub fn data_bytes(&self) -> u64 {
        self.core.data_bytes
    }

    fn close(&mut self) -> Result<(), FileError> {
        let desc = ContainerDesc {
            tensors: std::mem::take(&mut self.descs),
        };
        let json = serde_json::to_string(&desc).expect("descriptions serialize");
        let meta = HashMap::from([
            (VERSION_KEY.to_string(), FORMAT_VERSION.to_string()),
            (DESCRIPTION_KEY.to_string(), json),
        ]);
        self.core.close(Some(meta))
    }

    /// Writes the header(s), syncs and renames everything into place.
    pub fn finish(mut self) -> Result<Written> {
        if !self.descs.is_empty() || self.core.finished.is_empty() {
            self.close()?;
        }
        Ok(self.core.finish()?)
    }
}

/// Writes a plain safetensors model a tensor at a time: the streaming form
/// of [`Model::save`](super::Model::save) (same bytes), or Hugging Face
/// shards with an index, e.g. for dequantized exports of large models.
///
/// ```
/// use squish::io::{Dtype, Model, ModelWriter, ShardedModel, Tensor};
/// let dir = tempfile::tempdir()?;
/// let mut out = ModelWriter::sharded(dir.path(), 16)?;
/// for i in 0..3 {
///     out.push(&format!("layer{i}.weight"), &Tensor::float(Dtype::F16, vec![2, 4], vec![i as f32; 8])?)?;
/// }
/// let written = out.finish()?;
/// assert_eq!(written.files.len(), 3); // 16 bytes each: one tensor a shard
/// let back = ShardedModel::open(dir.path())?.to_model()?;
/// assert_eq!(back.len(), 3);
/// # Ok::<(), Box<dyn std::error::Error>>(())
/// ```
pub struct ModelWriter {
    core: Core,
    metadata: BTreeMap<String, String>,
}

impl ModelWriter {
    /// A writer of one safetensors file at `path`.
    pub fn create(path: impl AsRef<Path>) -> Result<Self> {
        let path = path.as_ref().to_path_buf();
        Ok(ModelWriter {
            core: Core::new(Some(path.clone()), parent_of(&path), u64::MAX)?,
            metadata: BTreeMap::new(),
        })
    }

    /// A writer of Hugging Face shards of at most `max_shard_bytes` of data
    /// each into `dir` (see [`ContainerWriter::sharded`]).
    pub fn sharded(dir: impl AsRef<Path>, max_shard_bytes: u64) -> Result<Self> {
        Ok(ModelWriter {
            core: Core::new(None, dir.as_ref().to_path_buf(), max_shard_bytes)?,
            metadata: BTreeMap::new(),
        })
    }

    /// Sets a free-form `__metadata__` entry (written into every shard).
    pub fn set_metadata(&mut self, key: impl Into<String>, value: impl Into<String>) {
        self.metadata.insert(key.into(), value.into());
    }

    /// Appends a tensor in its own dtype.
    pub fn push(&mut self, name: &str, t: &Tensor) -> Result<()> {
        let view = (name.to_string(), plain_view(t));
        if self.core.full(view.1.bytes.len() as u64) {
            self.close()?;
        }
        Ok(self.core.append(&view)?)
    }

    fn close(&mut self) -> Result<(), FileError> {
        let meta = (!self.metadata.is_empty()).then(|| {
            self.metadata
                .iter()
                .map(|(k, v)| (k.clone(), v.clone()))
                .collect()
        });
        self.core.close(meta)
    }

    /// Writes the header(s), syncs and renames everything into place.
    pub fn finish(mut self) -> Result<Written> {
        if !self.core.parts.is_empty() || self.core.finished.is_empty() {
            self.close()?;
        }
        Ok(self.core.finish()?)
    }
}
