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
/// one it replaces; a new file gets `rw-r--r--` like any other output, not
/// the owner-only mode of temporary files.
///
/// ```
/// let dir = tempfile::tempdir()?;
/// let p = dir.path().join("plot.svg");
/// squish::io::write_atomic(&p, b"<svg/>")?;
/// assert_eq!(std::fs::read(&p)?, b"<svg/>");
/// # #[cfg(unix)]
/// # {
/// use std::os::unix::fs::PermissionsExt;
/// assert_eq!(std::fs::metadata(&p)?.permissions().mode() & 0o777, 0o644);
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
    // Keep the permissions of the file we replace; a new file gets rw-r--r--
    // (temporary files default to owner-only).
    #[cfg(unix)]
    let perms = match std::fs::metadata(path) {
        Ok(m) => m.permissions(),
        Err(_) => std::os::unix::fs::PermissionsExt::from_mode(0o644),
    };
    let tmp = tempfile::Builder::new()
        .prefix(".squish-")
        .suffix(".tmp")
        .tempfile_in(dir)
        .map_err(|e| FileError::io("create a temporary file in", dir, e))?;
    // `tmp` owns the name and removes the file if anything below fails.
    {
        use std::io::Write;
        let mut f = tmp.as_file();
        f.write_all(bytes)
            .and_then(|_| f.sync_all())
            .map_err(|e| FileError::io("write", tmp.path(), e))?;
    }
    #[cfg(unix)]
    std::fs::set_permissions(tmp.path(), perms)
        .map_err(|e| FileError::io("set permissions of", tmp.path(), e))?;
    tmp.persist(path)
        .map_err(|e| FileError::io("rename a temporary file to", path, e.error))?;
    // Best effort: not every platform can open a directory for syncing.
    if let Ok(d) = File::open(dir) {
        let _ = d.sync_all();
    }
    Ok(())
}
