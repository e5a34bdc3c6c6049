//! Streaming writers: a model or a container written a tensor at a time,
//! in bounded memory, to one file or to shards with an index, finished
//! atomically.
//!
//! A container file is a safetensors file whose data follow in the order the
//! entries were pushed, its header padded to a size set by the entries'
//! original names, dtypes and shapes (`HeaderReserve`), exactly as
//! [`CompressedModel::to_bytes`](super::CompressedModel::to_bytes) lays it
//! out. A single-file [`ContainerWriter`] told its entries in advance
//! ([`ContainerWriter::plan_entries`], which streaming compression does)
//! writes each tensor's bytes once, straight behind the header's space, and
//! at the end writes the header over that space. Otherwise, and for plain
//! models (whose data follow safetensors' order, dtype then name, as
//! [`Model::save`](super::Model::save) writes), the bytes go to a data file
//! next to the output first and are copied behind the header at the end (in
//! the kernel where the OS can: `copy_file_range` on Linux). Either way the
//! file is byte for byte the file the in-memory path writes, while memory
//! holds one tensor at a time. Output goes to temporary files that are
//! synced and renamed into place only at [`finish`](ContainerWriter::finish);
//! an error or a writer dropped unfinished leaves nothing behind.

use std::collections::{BTreeMap, HashMap, HashSet};
use std::fs::File;
use std::io::{Seek, SeekFrom, Write};
use std::path::{Path, PathBuf};

use safetensors::Dtype;
use tempfile::NamedTempFile;

use super::atomic::{HeaderReserve, Named, OwnedView};
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

/// One tensor in the current file's data.
struct Part {
    name: String,
    dtype: Dtype,
    shape: Vec<usize>,
    at: u64,
    len: u64,
}

/// The shared machinery: data file, shard cut, header, atomic finish.
struct Core {
    dir: PathBuf,
    /// `Some(path)`: one file; `None`: shards and an index in `dir`.
    single: Option<PathBuf>,
    max_shard: u64,
    /// Plain safetensors in safetensors' order (dtype, then name), as
    /// [`Model::save`](super::Model::save) writes; else a container, its
    /// data in the order pushed.
    sorted: bool,
    /// The current file's data, from offset `start` on; created with the
    /// file's first tensor.
    data: Option<NamedTempFile>,
    /// Where the current file's data starts: the header space set aside
    /// for it when the entries were told in advance (the file is then
    /// finished in place), else 0 (the data is copied behind the header).
    start: u64,
    data_len: u64,
    parts: Vec<Part>,
    finished: Vec<(NamedTempFile, Vec<String>)>,
    names: HashSet<String>,
    data_bytes: u64,
}

fn temp_in(dir: &Path) -> Result<NamedTempFile, FileError> {
    super::atomic::output_temp(dir)
}

fn parent_of(path: &Path) -> PathBuf {
    match path.parent() {
        Some(d) if !d.as_os_str().is_empty() => d.to_path_buf(),
        _ => PathBuf::from("."),
    }
}

/// Renames a synced temporary file to `path` (with the permissions of the
/// file it replaces, or those of a new file of the user).
fn persist(tmp: NamedTempFile, path: &Path) -> Result<(), FileError> {
    super::atomic::keep_mode(tmp.path(), path)?;
    tmp.persist(path)
        .map_err(|e| FileError::io("rename a temporary file to", path, e.error))?;
    Ok(())
}

/// Starts the disk write of `len` bytes at `at` without waiting for it, so
/// the final fsync finds little left to do (Linux; elsewhere nothing).
fn start_writeback(file: &File, at: u64, len: u64) {
    #[cfg(target_os = "linux")]
    {
        use std::os::fd::AsRawFd;
        // SAFETY: a valid open descriptor; the call only schedules the
        // writing of pages already in the page cache, it touches no memory
        // of this process. Best effort: an error here resurfaces at fsync.
        unsafe {
            libc::sync_file_range(
                file.as_raw_fd(),
                at as libc::off64_t,
                len as libc::off64_t,
                libc::SYNC_FILE_RANGE_WRITE,
            );
        }
    }
    #[cfg(not(target_os = "linux"))]
    let _ = (file, at, len);
}

impl Core {
    fn new(
        single: Option<PathBuf>,
        dir: PathBuf,
        max_shard: u64,
        sorted: bool,
    ) -> Result<Self, FileError> {
        if single.is_none() {
            std::fs::create_dir_all(&dir).map_err(|e| FileError::io("create", &dir, e))?;
        }
        Ok(Core {
            // Created now so that an unwritable directory fails at once.
            data: Some(temp_in(&dir)?),
            dir,
            single,
            max_shard: max_shard.max(1),
            sorted,
            start: 0,
            data_len: 0,
            parts: Vec::new(),
            finished: Vec::new(),
            names: HashSet::new(),
            data_bytes: 0,
        })
    }

    /// Sets the data of the file to come `start` bytes in (its header's
    /// space), for a single file to which nothing was written yet.
    fn set_start(&mut self, start: u64) {
        if self.single.is_some() && self.parts.is_empty() && self.finished.is_empty() {
            self.start = start;
        }
    }

    /// True when `len` more bytes belong in a new shard.
    fn full(&self, len: u64) -> bool {
        !self.parts.is_empty() && self.data_len.saturating_add(len) > self.max_shard
    }

    fn append(&mut self, v: &Named) -> Result<(), FileError> {
        if !self.names.insert(v.0.clone()) {
            return Err(FileError::DuplicateName { name: v.0.clone() });
        }
        let data = match &mut self.data {
            Some(d) => d,
            None => self.data.insert(temp_in(&self.dir)?),
        };
        let path = data.path().to_path_buf();
        let io = |e| FileError::io("write", &path, e);
        let at = self.start + self.data_len;
        let mut f = data.as_file();
        if self.data_len == 0 {
            f.seek(SeekFrom::Start(at)).map_err(io)?;
        }
        f.write_all(&v.1.bytes).map_err(io)?;
        let len = v.1.bytes.len() as u64;
        if self.start > 0 {
            // Written in place: on its way to the disk now.
            start_writeback(f, at, len);
        }
        self.parts.push(Part {
            name: v.0.clone(),
            dtype: v.1.dtype,
            shape: v.1.shape.clone(),
            at: self.data_len,
            len,
        });
        self.data_len += len;
        self.data_bytes += len;
        Ok(())
    }

    /// Finishes the current file as a synced temporary file: its header
    /// (padded to `reserve` bytes where that fits) written over the space
    /// set aside for it when that space is exactly its size, else written
    /// to a new file followed by a copy of the data in header order.
    fn close(
        &mut self,
        metadata: Option<HashMap<String, String>>,
        reserve: u64,
    ) -> Result<(), FileError> {
        let parts = std::mem::take(&mut self.parts);
        let mut order: Vec<usize> = (0..parts.len()).collect();
        if self.sorted {
            // safetensors' order: dtype (widest first), then name.
            order.sort_by(|&a, &b| {
                parts[b]
                    .dtype
                    .cmp(&parts[a].dtype)
                    .then_with(|| parts[a].name.cmp(&parts[b].name))
            });
        }
        let layout: Vec<_> = order
            .iter()
            .map(|&i| {
                let p = &parts[i];
                (p.name.as_str(), p.dtype, &p.shape[..], p.len as usize)
            })
            .collect();
        let head = super::atomic::ordered_header(&layout, metadata, reserve)?;
        let data = match self.data.take() {
            Some(d) => d,
            None => temp_in(&self.dir)?,
        };
        let start = std::mem::replace(&mut self.start, 0);
        self.data_len = 0;
        let out = if !self.sorted && start > 0 && head.len() as u64 == start {
            // The data is in place behind the space set aside: write the
            // header over that space, and the file is complete.
            let io = |e| FileError::io("write", data.path(), e);
            let mut f = data.as_file();
            f.seek(SeekFrom::Start(0)).map_err(io)?;
            f.write_all(&head).map_err(io)?;
            f.sync_all().map_err(io)?;
            data
        } else {
            let out = temp_in(&self.dir)?;
            let io = |e| FileError::io("write", out.path(), e);
            let mut dst = out.as_file();
            dst.write_all(&head).map_err(io)?;
            let mut src: &File = data.as_file();
            for &i in &order {
                let p = &parts[i];
                src.seek(SeekFrom::Start(start + p.at)).map_err(io)?;
                let n =
                    std::io::copy(&mut std::io::Read::take(src, p.len), &mut dst).map_err(io)?;
                if n != p.len {
                    return Err(io(std::io::ErrorKind::UnexpectedEof.into()));
                }
            }
            dst.sync_all().map_err(io)?;
            out
        };
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
    /// The header space of the current file's entries so far.
    reserve: HeaderReserve,
    logical: HashSet<String>,
}

impl ContainerWriter {
    /// A writer of one container file at `path`.
    pub fn create(path: impl AsRef<Path>) -> Result<Self> {
        let path = path.as_ref().to_path_buf();
        Ok(ContainerWriter {
            core: Core::new(Some(path.clone()), parent_of(&path), u64::MAX, false)?,
            descs: Vec::new(),
            reserve: HeaderReserve::default(),
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
            core: Core::new(None, dir, max_shard_bytes, false)?,
            descs: Vec::new(),
            reserve: HeaderReserve::default(),
            logical: HashSet::new(),
        })
    }

    /// Tells a single-file writer, before the first push, the entries to
    /// come: each one's name, original dtype and original shape (those of
    /// the tensor it compresses), in any order. For a large model (at least
    /// 128 MiB of original data) the writer then sets the header's space
    /// aside and writes each tensor once, in place, its disk write started
    /// at once; [`finish`](Self::finish) only writes the header and syncs.
    /// Optional: without it, on a sharded writer, after a push, or when
    /// other entries are pushed, the data is copied behind the header at
    /// `finish` instead. The bytes are the same either way.
    ///
    /// ```
    /// use squish::io::{CompressedModel, ContainerWriter, Dtype, Tensor};
    /// let t = Tensor::float(Dtype::BF16, vec![4, 2], vec![0.5; 8])?;
    /// let dir = tempfile::tempdir()?;
    /// let path = dir.path().join("m.squish");
    /// let mut out = ContainerWriter::create(&path)?;
    /// out.plan_entries([("w", Dtype::BF16, &[4usize, 2][..])]);
    /// out.push_plain("w", &t)?;
    /// out.finish()?;
    /// let mut whole = CompressedModel::new();
    /// whole.insert_plain("w", t)?;
    /// assert_eq!(std::fs::read(&path)?, whole.to_bytes()?);
    /// # Ok::<(), Box<dyn std::error::Error>>(())
    /// ```
    pub fn plan_entries<'a>(
        &mut self,
        entries: impl IntoIterator<Item = (&'a str, Dtype, &'a [usize])>,
    ) {
        let mut r = HeaderReserve::default();
        for (name, dtype, shape) in entries {
            r.add(name, dtype, shape);
        }
        self.core.set_start(r.bytes());
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
        match entry {
            Entry::Compressed(c) => self.reserve.add(name, c.dtype(), c.shape()),
            Entry::Plain(t) => self.reserve.add(name, t.dtype(), t.shape()),
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
        let reserve = std::mem::take(&mut self.reserve).bytes();
        self.core.close(Some(meta), reserve)
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
            core: Core::new(Some(path.clone()), parent_of(&path), u64::MAX, true)?,
            metadata: BTreeMap::new(),
        })
    }

    /// A writer of Hugging Face shards of at most `max_shard_bytes` of data
    /// each into `dir` (see [`ContainerWriter::sharded`]).
    pub fn sharded(dir: impl AsRef<Path>, max_shard_bytes: u64) -> Result<Self> {
        Ok(ModelWriter {
            core: Core::new(None, dir.as_ref().to_path_buf(), max_shard_bytes, true)?,
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
        self.core.close(meta, 0)
    }

    /// Writes the header(s), syncs and renames everything into place.
    pub fn finish(mut self) -> Result<Written> {
        if !self.core.parts.is_empty() || self.core.finished.is_empty() {
            self.close()?;
        }
        Ok(self.core.finish()?)
    }
}
