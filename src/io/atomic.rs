//! Atomic safetensors writes: a temporary file in the target's directory,
//! fsync, rename, fsync of the directory.

use std::collections::HashMap;
use std::fs::File;
use std::path::Path;

use safetensors::{Dtype, View};

use super::FileError;

/// One tensor to write: dtype, shape and little-endian bytes.
pub(crate) struct OwnedView {
    pub dtype: Dtype,
    pub shape: Vec<usize>,
    pub bytes: Vec<u8>,
}

impl View for &OwnedView {
    fn dtype(&self) -> Dtype {
        self.dtype
    }
    fn shape(&self) -> &[usize] {
        &self.shape
    }
    fn data(&self) -> std::borrow::Cow<'_, [u8]> {
        std::borrow::Cow::Borrowed(&self.bytes)
    }
    fn data_len(&self) -> usize {
        self.bytes.len()
    }
}

/// A tensor with its name in the file.
pub(crate) type Named = (String, OwnedView);

/// Serializes `tensors` to bytes (for tests, fuzzing and in-memory use).
pub(crate) fn to_bytes(
    tensors: &[Named],
    metadata: Option<HashMap<String, String>>,
) -> Result<Vec<u8>, FileError> {
    let mut bytes = safetensors::serialize(tensors.iter().map(|(n, v)| (n.as_str(), v)), metadata)?;
    canonical_header(&mut bytes);
    Ok(bytes)
}

/// Rewrites the JSON header with its keys sorted, so the same model always
/// gives the same bytes (safetensors writes its metadata map in hash order).
/// The entries and their offsets are unchanged, so the header keeps its length.
pub(crate) fn canonical_header(bytes: &mut [u8]) {
    let n = u64::from_le_bytes(bytes[..8].try_into().expect("8 bytes")) as usize;
    let value: serde_json::Value =
        serde_json::from_slice(&bytes[8..8 + n]).expect("safetensors wrote valid JSON");
    // serde_json's map is ordered by key (no `preserve_order`).
    let sorted = serde_json::to_vec(&value).expect("a JSON value serializes");
    assert!(sorted.len() <= n, "same entries, same compact length");
    bytes[8..8 + sorted.len()].copy_from_slice(&sorted);
    bytes[8 + sorted.len()..8 + n].fill(b' ');
}

/// Models whose original tensors hold at least this many bytes get a
/// container header padded to [`HeaderReserve::bytes`], so a streaming
/// writer that knows the tensors to come can write each one once, in place
/// behind the reserved header (see [`ContainerWriter`](super::ContainerWriter)).
/// Smaller containers keep the smallest header (their copy is cheap).
pub(crate) const RESERVE_FROM: u64 = 128 << 20;

/// The header space a container sets aside, from its entries' original
/// names, dtypes and shapes only (never from the compressed data), so the
/// in-memory path and a streaming writer told the entries in advance agree
/// on it. A sum: the order of the entries does not matter.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub(crate) struct HeaderReserve {
    logical: u128,
    estimate: u64,
}

impl HeaderReserve {
    /// Counts one entry: its original name, dtype and shape.
    pub fn add(&mut self, name: &str, dtype: Dtype, shape: &[usize]) {
        let numel = shape
            .iter()
            .fold(1u128, |a, &d| a.saturating_mul(d as u128));
        self.logical = self
            .logical
            .saturating_add(numel.saturating_mul(dtype.bitsize() as u128) / 8);
        // Generous for one entry's share of the header: its components'
        // names, dtypes, shapes and offsets, and its escaped description
        // (an int8 matrix takes about 500 bytes plus three times its name).
        let e = 2048 + 8 * name.len() as u64 + 32 * shape.len() as u64;
        self.estimate = self.estimate.saturating_add(e);
    }

    /// Where the data starts (header and its 8-byte length included), or 0
    /// for the smallest header: a multiple of 4096 for models of at least
    /// [`RESERVE_FROM`] bytes.
    pub fn bytes(&self) -> u64 {
        if self.logical < RESERVE_FROM as u128 {
            return 0;
        }
        self.estimate.saturating_add(4096).next_multiple_of(4096)
    }
}

/// A container's header: 8-byte length, then the JSON (keys sorted) of
/// `parts` (name, dtype, shape, data length), whose data follow in the
/// order given, padded with spaces to a multiple of 8 and, when it fits, to
/// `reserve` bytes in all.
pub(crate) fn ordered_header(
    parts: &[(&str, Dtype, &[usize], usize)],
    metadata: Option<HashMap<String, String>>,
    reserve: u64,
) -> Result<Vec<u8>, FileError> {
    let mut infos = Vec::with_capacity(parts.len());
    let mut offset = 0usize;
    for &(name, dtype, shape, len) in parts {
        let end = offset + len;
        infos.push((
            name.to_string(),
            safetensors::tensor::TensorInfo {
                dtype,
                shape: shape.to_vec(),
                data_offsets: (offset, end),
            },
        ));
        offset = end;
    }
    let meta = safetensors::tensor::Metadata::new(metadata, infos)?;
    // serde_json's map is ordered by key (no `preserve_order`).
    let value = serde_json::to_value(&meta).expect("string keys serialize");
    let mut json = serde_json::to_vec(&value).expect("a JSON value serializes");
    let n = json
        .len()
        .next_multiple_of(8)
        .max(reserve.saturating_sub(8) as usize);
    json.resize(n, b' ');
    let mut head = Vec::with_capacity(8 + n);
    head.extend_from_slice(&(n as u64).to_le_bytes());
    head.extend_from_slice(&json);
    Ok(head)
}

/// A container's bytes: [`ordered_header`] then the data in the order of
/// `tensors`.
pub(crate) fn ordered_bytes(
    tensors: &[Named],
    metadata: Option<HashMap<String, String>>,
    reserve: u64,
) -> Result<Vec<u8>, FileError> {
    let parts: Vec<_> = tensors
        .iter()
        .map(|(n, v)| (n.as_str(), v.dtype, &v.shape[..], v.bytes.len()))
        .collect();
    let mut bytes = ordered_header(&parts, metadata, reserve)?;
    let data: usize = tensors.iter().map(|(_, v)| v.bytes.len()).sum();
    bytes.reserve(data);
    for (_, v) in tensors {
        bytes.extend_from_slice(&v.bytes);
    }
    Ok(bytes)
}

/// Writes `tensors` to `path` atomically (see [`write_bytes`]).
pub(crate) fn write(
    path: &Path,
    tensors: &[Named],
    metadata: Option<HashMap<String, String>>,
) -> Result<(), FileError> {
    let bytes = to_bytes(tensors, metadata)?;
    write_bytes(path, &bytes)
}

/// Writes `bytes` to `path` so that `path` holds either its old content or
/// the complete new file, never a partial one: the data goes to a temporary
/// file in the same directory, is synced to disk, and is renamed over `path`
/// (rename is atomic within a file system); then the directory is synced so
/// the rename itself survives a crash. The file keeps the permissions of the
/// one it replaces; a new file gets those of any file the user creates
/// (`rw-rw-rw-` less the umask), not the owner-only mode of temporary
/// files.
///
/// ```
/// let dir = tempfile::tempdir()?;
/// let p = dir.path().join("plot.svg");
/// squish::io::write_atomic(&p, b"<svg/>")?;
/// assert_eq!(std::fs::read(&p)?, b"<svg/>");
/// # #[cfg(unix)]
/// # {
/// use std::os::unix::fs::PermissionsExt;
/// let plain = dir.path().join("plain.txt");
/// std::fs::write(&plain, b"")?;
/// let mode = |p: &std::path::Path| std::fs::metadata(p).map(|m| m.permissions().mode() & 0o777);
/// assert_eq!(mode(&p)?, mode(&plain)?);
/// # }
/// # Ok::<(), Box<dyn std::error::Error>>(())
/// ```
pub fn write_atomic(path: &Path, bytes: &[u8]) -> crate::Result<()> {
    Ok(write_bytes(path, bytes)?)
}

pub(crate) fn write_bytes(path: &Path, bytes: &[u8]) -> Result<(), FileError> {
    let dir = match path.parent() {
        Some(d) if !d.as_os_str().is_empty() => d,
        _ => Path::new("."),
    };
    let tmp = output_temp(dir)?;
    // `tmp` owns the name and removes the file if anything below fails.
    {
        use std::io::Write;
        let mut f = tmp.as_file();
        f.write_all(bytes)
            .and_then(|_| f.sync_all())
            .map_err(|e| FileError::io("write", tmp.path(), e))?;
    }
    keep_mode(tmp.path(), path)?;
    tmp.persist(path)
        .map_err(|e| FileError::io("rename a temporary file to", path, e.error))?;
    // Best effort: not every platform can open a directory for syncing.
    if let Ok(d) = File::open(dir) {
        let _ = d.sync_all();
    }
    Ok(())
}

/// A temporary file in `dir` that will become an output: created with the
/// mode any new file of the user gets (`rw-rw-rw-` less the process's
/// umask, which the system applies), where temporary files default to
/// owner-only (`sweep --plot` once wrote its SVG `rw-------`: issue #20).
pub(crate) fn output_temp(dir: &Path) -> Result<tempfile::NamedTempFile, FileError> {
    let mut b = tempfile::Builder::new();
    b.prefix(".squish-").suffix(".tmp");
    #[cfg(unix)]
    b.permissions(std::os::unix::fs::PermissionsExt::from_mode(0o666));
    b.tempfile_in(dir)
        .map_err(|e| FileError::io("create a temporary file in", dir, e))
}

/// Gives the temporary file `tmp` the permissions of `target`, the file it
/// is about to replace, if there is one (a new output keeps the mode
/// [`output_temp`] created it with).
pub(crate) fn keep_mode(tmp: &Path, target: &Path) -> Result<(), FileError> {
    if let Ok(m) = std::fs::metadata(target) {
        std::fs::set_permissions(tmp, m.permissions())
            .map_err(|e| FileError::io("set permissions of", tmp, e))?;
    }
    Ok(())
}
