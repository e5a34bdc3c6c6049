//! [`ShardedModel`]: a checkpoint split over several safetensors files
//! (Hugging Face's `model-00001-of-00003.safetensors` … with a
//! `model.safetensors.index.json`), read as one model, a tensor at a time.

use std::collections::{BTreeMap, HashMap, HashSet};
use std::fs::File;
use std::io::{Read, Seek, SeekFrom};
use std::path::{Component, Path, PathBuf};

use safetensors::{Dtype, SafeTensorError, SafeTensors};
use serde::Deserialize;

use super::model::open;
use super::precision::widen_into;
use super::tensor::is_float;
use super::{FileError, Model, ShardError, Tensor};
use crate::error::Result;

/// The name Hugging Face gives the index of a sharded checkpoint.
pub const INDEX_NAME: &str = "model.safetensors.index.json";

/// Bytes read from disk at a time: one block is widened to f32 while the
/// next is read, so a tensor never exists twice in its file dtype.
const BLOCK: usize = 4 << 20;

/// Where one tensor of a sharded model lives.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct TensorMeta {
    name: String,
    dtype: Dtype,
    shape: Vec<usize>,
    shard: usize,
    /// Absolute byte range in the shard file.
    begin: u64,
    end: u64,
}

impl TensorMeta {
    /// The tensor's name.
    pub fn name(&self) -> &str {
        &self.name
    }

    /// Its dtype on disk.
    pub fn dtype(&self) -> Dtype {
        self.dtype
    }

    /// Its shape on disk.
    pub fn shape(&self) -> &[usize] {
        &self.shape
    }

    /// Index of its shard in [`ShardedModel::shards`].
    pub fn shard(&self) -> usize {
        self.shard
    }

    /// Bytes on disk.
    pub fn bytes(&self) -> u64 {
        self.end - self.begin
    }

    /// Number of elements.
    pub fn numel(&self) -> usize {
        self.shape.iter().product()
    }

    /// True for a float tensor of rank ≥ 2 with elements: what
    /// [`Tensor::matrix`] views as a weight matrix.
    pub fn is_matrix(&self) -> bool {
        is_float(self.dtype) && self.shape.len() >= 2 && self.numel() > 0
    }
}

/// A model read across its shards: names, shapes and dtypes of every tensor
/// from the headers alone, the data read a tensor at a time when asked.
///
/// [`open`](Self::open) takes a single `.safetensors` file, an index
/// (`*.safetensors.index.json`), or a directory holding either (an index if
/// there is one, else every `*.safetensors` file in it, in name order).
/// Every shard header is checked against the index and the file's length
/// before anything is read; a missing shard, a tensor in two shards, a
/// header that disagrees with the index, a truncated shard or a shard path
/// outside the index's directory is a [`ShardError`] naming file and tensor.
///
/// Tensors come in model order: shards in name order, and each shard's
/// tensors in the order of their bytes (what [`Model::load`] gives for one
/// file). Reading is a bounded copy through a small buffer, never a mapping
/// of the data, so the process's resident memory holds only the tensors in use.
///
/// ```
/// use squish::io::{Dtype, Model, ShardedModel, Tensor};
/// let dir = tempfile::tempdir()?;
/// let mut a = Model::new();
/// a.insert("fc1.weight", Tensor::float(Dtype::BF16, vec![2, 2], vec![1.0, 2.0, 3.0, 4.0])?)?;
/// a.save(dir.path().join("model-00001-of-00002.safetensors"))?;
/// let mut b = Model::new();
/// b.insert("fc2.weight", Tensor::float(Dtype::F16, vec![1, 2], vec![0.5, -1.0])?)?;
/// b.save(dir.path().join("model-00002-of-00002.safetensors"))?;
///
/// let m = ShardedModel::open(dir.path())?;
/// let names: Vec<&str> = m.tensors().iter().map(|t| t.name()).collect();
/// assert_eq!(names, ["fc1.weight", "fc2.weight"]);
/// assert_eq!(m.read(&m.tensors()[1])?.as_f32().unwrap(), &[0.5, -1.0]);
/// # Ok::<(), Box<dyn std::error::Error>>(())
/// ```
#[derive(Clone, Debug)]
pub struct ShardedModel {
    shards: Vec<PathBuf>,
    tensors: Vec<TensorMeta>,
    metadata: BTreeMap<String, String>,
}

#[derive(Deserialize)]
struct IndexFile {
    #[serde(default)]
    metadata: Option<serde_json::Map<String, serde_json::Value>>,
    weight_map: BTreeMap<String, String>,
}

/// One parsed shard header.
struct Header {
    tensors: Vec<TensorMeta>,
    metadata: BTreeMap<String, String>,
}

/// Asks the OS to start reading `len` bytes at `at` of `file` into the page
/// cache now, so the disk works through the whole tensor while the blocks
/// already read are widened (Linux; elsewhere nothing). Page cache is not
/// the process's memory.
fn will_need(file: &File, at: u64, len: u64) {
    #[cfg(target_os = "linux")]
    {
        use std::os::fd::AsRawFd;
        // SAFETY: a valid open descriptor; advice only, no memory of this
        // process is touched. Best effort: an error only loses the advice.
        unsafe {
            libc::posix_fadvise(
                file.as_raw_fd(),
                at as libc::off_t,
                len as libc::off_t,
                libc::POSIX_FADV_WILLNEED,
            );
        }
    }
    #[cfg(not(target_os = "linux"))]
    let _ = (file, at, len);
}

fn is_index(p: &Path) -> bool {
    p.file_name()
        .and_then(|n| n.to_str())
        .is_some_and(|n| n.ends_with(".safetensors.index.json"))
}

fn list_dir(dir: &Path) -> Result<Vec<PathBuf>, FileError> {
    let mut out = Vec::new();
    let rd = std::fs::read_dir(dir).map_err(|e| FileError::io("list", dir, e))?;
    for e in rd {
        let e = e.map_err(|e| FileError::io("list", dir, e))?;
        out.push(e.path());
    }
    out.sort();
    Ok(out)
}

/// True for a relative path made only of plain names (no `..`, no root).
fn stays_inside(p: &Path) -> bool {
    p.components().all(|c| matches!(c, Component::Normal(_))) && p.components().next().is_some()
}

/// Reads and checks the header of the shard at `path`; `shard` is its index.
fn read_header(path: &Path, shard: usize, first_tensor: &str) -> Result<Header, FileError> {
    let bytes = open(path).map_err(|e| match e {
        FileError::Io { source, .. } => ShardError::MissingShard {
            shard: path.to_path_buf(),
            tensor: first_tensor.to_string(),
            source,
        }
        .into(),
        e => e,
    })?;
    let bad = |source| ShardError::BadShard {
        shard: path.to_path_buf(),
        source,
    };
    // Only the header's pages are touched; the data stays on disk.
    let (n, meta) = match SafeTensors::read_metadata(&bytes) {
        Ok(x) => x,
        Err(SafeTensorError::MetadataIncompleteBuffer) => {
            return Err(truncation(path, &bytes)
                .unwrap_or_else(|| bad(SafeTensorError::MetadataIncompleteBuffer).into()))
        }
        Err(e) => return Err(bad(e).into()),
    };
    let start = 8 + n as u64;
    let tensors = meta
        .offset_keys()
        .into_iter()
        .map(|name| {
            let info = meta.info(&name).expect("offset_keys lists known tensors");
            TensorMeta {
                dtype: info.dtype,
                shape: info.shape.clone(),
                shard,
                begin: start + info.data_offsets.0 as u64,
                end: start + info.data_offsets.1 as u64,
                name,
            }
        })
        .collect();
    let metadata = meta
        .metadata()
        .as_ref()
        .map(|m| m.iter().map(|(k, v)| (k.clone(), v.clone())).collect())
        .unwrap_or_default();
    Ok(Header { tensors, metadata })
}

/// For a file shorter than its header says: the tensor whose data runs past
/// the end of the file.
fn truncation(path: &Path, bytes: &[u8]) -> Option<FileError> {
    let n = u64::from_le_bytes(bytes.get(..8)?.try_into().ok()?) as usize;
    let header: HashMap<String, serde_json::Value> =
        serde_json::from_slice(bytes.get(8..8usize.checked_add(n)?)?).ok()?;
    let len = bytes.len() as u64;
    let (tensor, end) = header
        .iter()
        .filter(|(k, _)| k.as_str() != "__metadata__")
        .filter_map(|(k, v)| {
            let end = v.get("data_offsets")?.get(1)?.as_u64()?;
            Some((k.clone(), 8 + n as u64 + end))
        })
        .filter(|&(_, end)| end > len)
        .min_by(|a, b| a.1.cmp(&b.1).then_with(|| a.0.cmp(&b.0)))?;
    Some(
        ShardError::Truncated {
            shard: path.to_path_buf(),
            tensor,
            needed: end,
            len,
        }
        .into(),
    )
}

impl ShardedModel {
    /// Opens a model file, an index, or a directory (see the type's docs).
    pub fn open(path: impl AsRef<Path>) -> Result<Self> {
        Ok(Self::open_inner(path.as_ref())?)
    }

    fn open_inner(path: &Path) -> Result<Self, FileError> {
        if path.is_dir() {
            let files = list_dir(path)?;
            let indexes: Vec<&PathBuf> = files.iter().filter(|p| is_index(p)).collect();
            match indexes.len() {
                0 => {}
                1 => return Self::from_index(indexes[0]),
                count => {
                    // Hugging Face's own name wins when others sit beside it.
                    let hf = path.join(INDEX_NAME);
                    if hf.is_file() {
                        return Self::from_index(&hf);
                    }
                    return Err(ShardError::AmbiguousIndex {
                        path: path.to_path_buf(),
                        count,
                    }
                    .into());
                }
            }
            let shards: Vec<PathBuf> = files
                .into_iter()
                .filter(|p| p.extension().is_some_and(|e| e == "safetensors") && p.is_file())
                .collect();
            if shards.is_empty() {
                return Err(ShardError::NoShards {
                    path: path.to_path_buf(),
                }
                .into());
            }
            return Self::from_shards(shards, None);
        }
        if is_index(path) {
            return Self::from_index(path);
        }
        Self::from_shards(vec![path.to_path_buf()], None)
    }

    /// The shards of an index, checked against it.
    fn from_index(index: &Path) -> Result<Self, FileError> {
        let text = std::fs::read(index).map_err(|e| FileError::io("read", index, e))?;
        let file: IndexFile = serde_json::from_slice(&text).map_err(|e| ShardError::BadIndex {
            path: index.to_path_buf(),
            detail: e.to_string(),
        })?;
        if file.weight_map.is_empty() {
            return Err(ShardError::BadIndex {
                path: index.to_path_buf(),
                detail: "`weight_map` is empty".into(),
            }
            .into());
        }
        let dir = index.parent().unwrap_or(Path::new("."));
        // shard name -> tensors the index places there
        let mut placed: BTreeMap<&str, Vec<&str>> = BTreeMap::new();
        for (t, s) in &file.weight_map {
            if !stays_inside(Path::new(s)) {
                return Err(ShardError::PathEscapes {
                    index: index.to_path_buf(),
                    shard: s.clone(),
                    tensor: t.clone(),
                }
                .into());
            }
            placed.entry(s.as_str()).or_default().push(t.as_str());
        }
        let shards: Vec<PathBuf> = placed.keys().map(|s| dir.join(s)).collect();
        let mut model = Self::from_shards(shards, Some(&placed))?;
        if let Some(m) = file.metadata {
            for (k, v) in m {
                let v = match v {
                    serde_json::Value::String(s) => s,
                    v => v.to_string(),
                };
                model.metadata.entry(k).or_insert(v);
            }
        }
        Ok(model)
    }

    /// Reads every header, then checks that no tensor is in two shards and,
    /// with an index, that each shard holds exactly the tensors the index
    /// places in it.
    fn from_shards(
        shards: Vec<PathBuf>,
        placed: Option<&BTreeMap<&str, Vec<&str>>>,
    ) -> Result<Self, FileError> {
        let expected: Vec<Option<&Vec<&str>>> = match placed {
            Some(p) => p.values().map(Some).collect(),
            None => vec![None; shards.len()],
        };
        let mut headers = Vec::with_capacity(shards.len());
        for (s, path) in shards.iter().enumerate() {
            let first = expected[s].and_then(|v| v.first()).copied().unwrap_or("");
            headers.push(read_header(path, s, first)?);
        }
        let mut seen: HashMap<&str, usize> = HashMap::new();
        for (s, h) in headers.iter().enumerate() {
            for t in &h.tensors {
                if let Some(&prev) = seen.get(t.name.as_str()) {
                    return Err(ShardError::DuplicateTensor {
                        tensor: t.name.clone(),
                        first: shards[prev].clone(),
                        second: shards[s].clone(),
                    }
                    .into());
                }
                seen.insert(&t.name, s);
            }
        }
        // Tensors the index promises but a header lacks, then the reverse.
        for (s, h) in headers.iter().enumerate() {
            let Some(want) = expected[s] else { continue };
            let have: HashSet<&str> = h.tensors.iter().map(|m| m.name.as_str()).collect();
            if let Some(t) = want.iter().find(|&&t| !have.contains(t)) {
                return Err(ShardError::HeaderMismatch {
                    shard: shards[s].clone(),
                    tensor: t.to_string(),
                    detail: "the index places it in this shard but its header has no such tensor"
                        .into(),
                }
                .into());
            }
        }
        for (s, h) in headers.iter().enumerate() {
            let Some(want) = expected[s] else { continue };
            let want: HashSet<&str> = want.iter().copied().collect();
            if let Some(extra) = h.tensors.iter().find(|t| !want.contains(t.name.as_str())) {
                return Err(ShardError::HeaderMismatch {
                    shard: shards[s].clone(),
                    tensor: extra.name.clone(),
                    detail: "the shard holds it but the index does not place it here".into(),
                }
                .into());
            }
        }
        let mut tensors = Vec::new();
        let mut metadata = BTreeMap::new();
        for h in headers {
            tensors.extend(h.tensors);
            for (k, v) in h.metadata {
                metadata.entry(k).or_insert(v);
            }
        }
        Ok(ShardedModel {
            shards,
            tensors,
            metadata,
        })
    }

    /// The shard files, in model order.
    pub fn shards(&self) -> &[PathBuf] {
        &self.shards
    }

    /// Every tensor, in model order.
    pub fn tensors(&self) -> &[TensorMeta] {
        &self.tensors
    }

    /// The tensor called `name`.
    pub fn get(&self, name: &str) -> Option<&TensorMeta> {
        self.tensors.iter().find(|t| t.name == name)
    }

    /// Bytes of tensor data over all shards.
    pub fn data_bytes(&self) -> u64 {
        self.tensors.iter().map(|t| t.bytes()).sum()
    }

    /// Free-form metadata: the shards' `__metadata__` and the index's
    /// `metadata` (the first value of a key wins).
    pub fn metadata(&self) -> &BTreeMap<String, String> {
        &self.metadata
    }

    /// Reads `t`'s bytes in blocks, calling `f(offset_in_tensor, block)`.
    fn read_blocks(
        &self,
        t: &TensorMeta,
        mut f: impl FnMut(usize, &[u8]),
    ) -> Result<(), FileError> {
        let path = &self.shards[t.shard];
        let err = |source| ShardError::Read {
            shard: path.clone(),
            tensor: t.name.clone(),
            source,
        };
        let mut file = File::open(path).map_err(err)?;
        file.seek(SeekFrom::Start(t.begin)).map_err(err)?;
        let len = t.bytes() as usize;
        will_need(&file, t.begin, len as u64);
        let mut buf = vec![0u8; BLOCK.min(len)];
        let mut done = 0;
        while done < len {
            let n = BLOCK.min(len - done);
            file.read_exact(&mut buf[..n]).map_err(err)?;
            f(done, &buf[..n]);
            done += n;
        }
        Ok(())
    }

    /// The bytes of `t` as they are on disk.
    pub fn read_bytes(&self, t: &TensorMeta) -> Result<Vec<u8>> {
        let mut out = vec![0u8; t.bytes() as usize];
        self.read_blocks(t, |at, b| out[at..at + b.len()].copy_from_slice(b))?;
        Ok(out)
    }

    /// The elements of the float tensor `t` widened to f32, a block at a
    /// time (peak memory: the f32 result and one 4 MiB block).
    pub fn read_f32(&self, t: &TensorMeta) -> Result<Vec<f32>> {
        let mut out = Vec::new();
        self.read_f32_into(t, &mut out)?;
        Ok(out)
    }

    /// [`read_f32`](Self::read_f32) into `out` (its old contents replaced),
    /// so one buffer serves tensor after tensor without new allocations.
    ///
    /// ```
    /// use squish::io::{Dtype, Model, ShardedModel, Tensor};
    /// let dir = tempfile::tempdir()?;
    /// let mut m = Model::new();
    /// m.insert("a", Tensor::float(Dtype::BF16, vec![2, 2], vec![1.0, 2.0, 3.0, 4.0])?)?;
    /// m.insert("b", Tensor::float(Dtype::F16, vec![3], vec![0.5, -1.0, 2.0])?)?;
    /// m.save(dir.path().join("m.safetensors"))?;
    /// let s = ShardedModel::open(dir.path())?;
    /// let mut buf = Vec::new();
    /// s.read_f32_into(&s.tensors()[0], &mut buf)?;
    /// assert_eq!(buf, [1.0, 2.0, 3.0, 4.0]);
    /// s.read_f32_into(&s.tensors()[1], &mut buf)?;
    /// assert_eq!(buf, [0.5, -1.0, 2.0]);
    /// # Ok::<(), Box<dyn std::error::Error>>(())
    /// ```
    pub fn read_f32_into(&self, t: &TensorMeta, out: &mut Vec<f32>) -> Result<()> {
        float_only(t)?;
        // Every element is overwritten below: only new ones need a value.
        out.truncate(t.numel());
        out.resize(t.numel(), 0.0);
        self.read_widened(t, out)
    }

    /// [`read_f32_into`](Self::read_f32_into) into `out` of exactly the
    /// tensor's length (an aligned buffer, for instance).
    pub(crate) fn read_f32_into_slice(&self, t: &TensorMeta, out: &mut [f32]) -> Result<()> {
        float_only(t)?;
        self.read_widened(t, out)
    }

    /// A float tensor `t` widened into `out` (its length).
    fn read_widened(&self, t: &TensorMeta, out: &mut [f32]) -> Result<()> {
        debug_assert_eq!(out.len(), t.numel());
        let width = t.dtype.bitsize() / 8;
        // BLOCK is a multiple of every float width, so no element straddles blocks.
        self.read_blocks(t, |at, b| {
            widen_into(t.dtype, b, &mut out[at / width..(at + b.len()) / width]);
        })?;
        Ok(())
    }

    /// The tensor `t`, as [`Model::load`] gives it (floats as f32).
    pub fn read(&self, t: &TensorMeta) -> Result<Tensor> {
        Ok(if is_float(t.dtype) {
            Tensor::float(t.dtype, t.shape.clone(), self.read_f32(t)?)?
        } else {
            Tensor::raw(t.dtype, t.shape.clone(), self.read_bytes(t)?)?
        })
    }

    /// The whole model in memory (for models that fit).
    pub fn to_model(&self) -> Result<Model> {
        let mut m = Model::new();
        for t in &self.tensors {
            m.insert(t.name.clone(), self.read(t)?)?;
        }
        for (k, v) in &self.metadata {
            m.set_metadata(k.clone(), v.clone());
        }
        Ok(m)
    }
}

/// The error for widening `t` to f32 when it is not a float tensor.
fn float_only(t: &TensorMeta) -> Result<()> {
    if is_float(t.dtype) {
        return Ok(());
    }
    Err(FileError::UnsupportedDtype {
        tensor: t.name.clone(),
        dtype: t.dtype.to_string(),
        hint: "only float tensors widen to f32; use read_bytes",
    }
    .into())
}
