//! A container laid out from its entries' sizes alone, and written by
//! several processes at once.
//!
//! Each entry is encoded where it was computed ([`EncodedEntry`]); only its
//! metadata ([`EntryMeta`]: component names, dtypes, shapes, byte lengths
//! and the description) is needed to build the header and every
//! component's offset ([`layout`]), the same header and offsets
//! [`CompressedModel::save`](super::CompressedModel::save) writes. So the
//! ranks of a distributed run exchange sizes, not bytes: each writes its own
//! entries with positioned writes into one temporary file
//! ([`write_parts`]), and one of them renames it into place
//! ([`SharedOutput`]). The file is byte for byte the one-process file.

use std::collections::{HashMap, HashSet};
use std::fs::{File, OpenOptions};
use std::path::{Path, PathBuf};

use safetensors::Dtype;
use tempfile::NamedTempFile;

use super::atomic::{ordered_header, HeaderReserve, Named};
use super::codec;
use super::container::parse_dtype;
use super::description::{ContainerDesc, EntryDesc, DESCRIPTION_KEY, FORMAT_VERSION, VERSION_KEY};
use super::{CompressedTensor, FileError, Tensor, COMPONENT_SEPARATOR};

/// One component tensor of an entry, as the header lists it.
#[derive(Clone, Debug, PartialEq)]
pub(crate) struct PartMeta {
    /// Its name in the file (`fc.weight::values`, or the entry's own name).
    pub name: String,
    /// Its dtype in the file.
    pub dtype: Dtype,
    /// Its shape in the file.
    pub shape: Vec<usize>,
    /// Its length in bytes.
    pub len: u64,
}

/// What the header needs of one entry: its components, in checksum order,
/// and its description.
#[derive(Clone, Debug, PartialEq)]
pub(crate) struct EntryMeta {
    /// The components.
    pub parts: Vec<PartMeta>,
    /// The description (name, dtype, shape, CRC, method, matrix).
    pub desc: EntryDesc,
}

/// One entry encoded for the file: its metadata and its components' bytes
/// (`bytes[i]` belongs to `meta.parts[i]`).
#[derive(Debug)]
pub(crate) struct EncodedEntry {
    /// The metadata.
    pub meta: EntryMeta,
    /// The components' bytes.
    pub bytes: Vec<Vec<u8>>,
}

impl EncodedEntry {
    /// A compressed matrix, as `CompressedModel::save` encodes it.
    pub fn compressed(name: &str, t: &CompressedTensor) -> Self {
        let mut views: Vec<Named> = Vec::new();
        let prefix = format!("{name}{COMPONENT_SEPARATOR}");
        let matrix = codec::encode(t.matrix(), &prefix, &mut views);
        Self::of(
            name,
            views,
            t.dtype(),
            t.shape(),
            Some(t.method().to_string()),
            Some(matrix),
        )
    }

    /// A tensor stored as it is.
    pub fn plain(name: &str, t: &Tensor) -> Self {
        let view = super::atomic::OwnedView {
            dtype: t.dtype(),
            shape: t.shape().to_vec(),
            bytes: t.to_bytes(),
        };
        Self::of(
            name,
            vec![(name.to_string(), view)],
            t.dtype(),
            t.shape(),
            None,
            None,
        )
    }

    fn of(
        name: &str,
        views: Vec<Named>,
        dtype: Dtype,
        shape: &[usize],
        method: Option<String>,
        matrix: Option<super::description::MatrixDesc>,
    ) -> Self {
        let mut h = crc32fast::Hasher::new();
        views.iter().for_each(|(_, v)| h.update(&v.bytes));
        let mut parts = Vec::with_capacity(views.len());
        let mut bytes = Vec::with_capacity(views.len());
        for (n, v) in views {
            parts.push(PartMeta {
                name: n,
                dtype: v.dtype,
                shape: v.shape,
                len: v.bytes.len() as u64,
            });
            bytes.push(v.bytes);
        }
        EncodedEntry {
            meta: EntryMeta {
                parts,
                desc: EntryDesc {
                    name: name.to_string(),
                    dtype: dtype.to_string(),
                    shape: shape.to_vec(),
                    crc32: h.finalize(),
                    method,
                    matrix,
                },
            },
            bytes,
        }
    }
}

/// Where everything goes in the file.
#[derive(Clone, Debug, PartialEq)]
pub(crate) struct Layout {
    /// The header: its length (8 bytes) and its JSON, padded to 8 bytes.
    pub header: Vec<u8>,
    /// `offsets[e][p]`: the file offset of component `p` of entry `e`.
    pub offsets: Vec<Vec<u64>>,
    /// The file's length.
    pub len: u64,
}

/// The layout of the container holding `entries` in this order (model
/// order): the header `CompressedModel::save` writes (the same
/// [`ordered_header`] and [`HeaderReserve`]: components in model order, each
/// entry's in the codec's order, keys sorted) and each component's offset
/// after it. Fails on a component name used twice.
pub(crate) fn layout(entries: &[EntryMeta]) -> Result<Layout, FileError> {
    let mut seen = HashSet::new();
    let mut reserve = HeaderReserve::default();
    let mut parts = Vec::new();
    for m in entries {
        let dtype = parse_dtype(&m.desc.dtype).ok_or_else(|| {
            FileError::description(format!(
                "tensor `{}`: unknown dtype {:?}",
                m.desc.name, m.desc.dtype
            ))
        })?;
        reserve.add(&m.desc.name, dtype, &m.desc.shape);
        for part in &m.parts {
            if !seen.insert(part.name.as_str()) {
                return Err(FileError::DuplicateName {
                    name: part.name.clone(),
                });
            }
            parts.push((
                part.name.as_str(),
                part.dtype,
                &part.shape[..],
                part.len as usize,
            ));
        }
    }
    let desc = ContainerDesc {
        tensors: entries.iter().map(|m| m.desc.clone()).collect(),
    };
    let json = serde_json::to_string(&desc).expect("descriptions serialize");
    let meta = HashMap::from([
        (VERSION_KEY.to_string(), FORMAT_VERSION.to_string()),
        (DESCRIPTION_KEY.to_string(), json),
    ]);
    let header = ordered_header(&parts, Some(meta), reserve.bytes())?;
    let mut at = header.len() as u64;
    let offsets = entries
        .iter()
        .map(|m| {
            m.parts
                .iter()
                .map(|p| {
                    let o = at;
                    at += p.len;
                    o
                })
                .collect()
        })
        .collect();
    Ok(Layout {
        header,
        offsets,
        len: at,
    })
}

/// Writes each `(offset, bytes)` into the existing file at `path` with
/// positioned writes; then, if `sync`, flushes its data to the device (for
/// a writer whose writes another process will rename into place).
pub(crate) fn write_parts(
    path: &Path,
    parts: &[(u64, &[u8])],
    sync: bool,
) -> Result<(), FileError> {
    let io = |e| FileError::io("write", path, e);
    let f = OpenOptions::new().write(true).open(path).map_err(io)?;
    for &(at, bytes) in parts {
        write_at(&f, bytes, at).map_err(io)?;
    }
    if sync {
        f.sync_data().map_err(io)?;
    }
    Ok(())
}

#[cfg(unix)]
fn write_at(f: &File, bytes: &[u8], at: u64) -> std::io::Result<()> {
    std::os::unix::fs::FileExt::write_all_at(f, bytes, at)
}

#[cfg(not(unix))]
fn write_at(mut f: &File, bytes: &[u8], at: u64) -> std::io::Result<()> {
    use std::io::{Seek, SeekFrom, Write};
    f.seek(SeekFrom::Start(at))?;
    f.write_all(bytes)
}

/// An output file written by several processes: a temporary file next to
/// the target (which every writer opens by [`path`](Self::path)), synced
/// and renamed over the target by [`finish`](Self::finish). Dropped
/// unfinished, it removes the temporary file: the target is untouched.
#[derive(Debug)]
pub(crate) struct SharedOutput {
    tmp: NamedTempFile,
    target: PathBuf,
}

impl SharedOutput {
    /// Creates the (empty) temporary file in `target`'s directory.
    pub fn create(target: &Path) -> Result<Self, FileError> {
        let dir = match target.parent() {
            Some(d) if !d.as_os_str().is_empty() => d,
            _ => Path::new("."),
        };
        let tmp = tempfile::Builder::new()
            .prefix(".squish-")
            .suffix(".tmp")
            .tempfile_in(dir)
            .map_err(|e| FileError::io("create a temporary file in", dir, e))?;
        Ok(SharedOutput {
            tmp,
            target: target.to_path_buf(),
        })
    }

    /// The temporary file every writer writes into.
    pub fn path(&self) -> &Path {
        self.tmp.path()
    }

    /// Checks that the file is `len` bytes long, syncs it, and renames it
    /// over the target (which keeps its permissions; a new file gets
    /// `rw-r--r--`), then syncs the directory.
    pub fn finish(self, len: u64) -> Result<(), FileError> {
        let path = self.tmp.path().to_path_buf();
        let io = |e| FileError::io("write", &path, e);
        let f = self.tmp.as_file();
        let got = f.metadata().map_err(io)?.len();
        if got != len {
            return Err(io(std::io::Error::other(format!(
                "the writers left {got} bytes; the layout has {len}"
            ))));
        }
        f.sync_all().map_err(io)?;
        #[cfg(unix)]
        {
            let perms = match std::fs::metadata(&self.target) {
                Ok(m) => m.permissions(),
                Err(_) => std::os::unix::fs::PermissionsExt::from_mode(0o644),
            };
            std::fs::set_permissions(&path, perms)
                .map_err(|e| FileError::io("set permissions of", &path, e))?;
        }
        let dir = match self.target.parent() {
            Some(d) if !d.as_os_str().is_empty() => d.to_path_buf(),
            _ => PathBuf::from("."),
        };
        self.tmp
            .persist(&self.target)
            .map_err(|e| FileError::io("rename a temporary file to", &self.target, e.error))?;
        // Best effort: not every platform can open a directory for syncing.
        if let Ok(d) = File::open(&dir) {
            let _ = d.sync_all();
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::io::{CompressedModel, Dtype as D};
    use crate::prelude::*;
    use ndarray::Array2;

    /// Entries written in any order, by several writers, into one file give
    /// the bytes of `CompressedModel::to_bytes`.
    #[test]
    fn positioned_writes_give_the_saved_container() -> crate::Result<()> {
        let w = Array2::from_shape_fn((24, 16), |(i, j)| ((i * 7 + j * 3) % 11) as f32 - 5.0);
        let q8 = Pipeline::new()
            .quantize(IntQuantizer::params(8).per_row().check()?)
            .run(w.view())?
            .matrix;
        let sparse = Pipeline::new()
            .prune(Magnitude::params(0.5).check()?)
            .quantize(IntQuantizer::params(4).check()?)
            .run(w.view())?
            .matrix;
        let mut model = CompressedModel::new();
        model.insert_compressed(
            "b.weight",
            CompressedTensor::new(q8, D::BF16, vec![24, 16], "int8")?,
        )?;
        model.insert_plain(
            "b.bias",
            Tensor::float(D::F16, vec![3], vec![1.0, 2.0, 3.0])?,
        )?;
        model.insert_compressed(
            "a.weight",
            CompressedTensor::new(sparse, D::F32, vec![24, 4, 4], "prune → int4")?,
        )?;
        let want = model.to_bytes()?;
        let encoded: Vec<EncodedEntry> = model
            .iter()
            .map(|(n, e)| match e {
                crate::io::Entry::Compressed(c) => EncodedEntry::compressed(n, c),
                crate::io::Entry::Plain(t) => EncodedEntry::plain(n, t),
            })
            .collect();
        let metas: Vec<EntryMeta> = encoded.iter().map(|e| e.meta.clone()).collect();
        let l = layout(&metas)?;
        assert_eq!(l.len, want.len() as u64);
        let dir = tempfile::tempdir().unwrap();
        let target = dir.path().join("out.squish");
        let out = SharedOutput::create(&target)?;
        // Two "writers": the header and the last entry, then the others
        // backwards.
        let last = encoded.len() - 1;
        let mut first: Vec<(u64, &[u8])> = vec![(0, &l.header)];
        for (p, b) in encoded[last].bytes.iter().enumerate() {
            first.push((l.offsets[last][p], b));
        }
        write_parts(out.path(), &first, false)?;
        let mut second: Vec<(u64, &[u8])> = Vec::new();
        for e in (0..last).rev() {
            for (p, b) in encoded[e].bytes.iter().enumerate() {
                second.push((l.offsets[e][p], b));
            }
        }
        write_parts(out.path(), &second, true)?;
        out.finish(l.len)?;
        assert_eq!(std::fs::read(&target).unwrap(), want);
        Ok(())
    }

    /// A writer that left bytes out: nothing is renamed, nothing is left.
    #[test]
    fn a_short_file_is_not_renamed() -> crate::Result<()> {
        let dir = tempfile::tempdir().unwrap();
        let target = dir.path().join("out.squish");
        let out = SharedOutput::create(&target)?;
        write_parts(out.path(), &[(0, b"12345678")], false)?;
        assert!(out.finish(16).is_err());
        assert!(!target.exists());
        assert_eq!(std::fs::read_dir(dir.path()).unwrap().count(), 0);
        Ok(())
    }

    #[test]
    fn a_component_name_used_twice_is_an_error() {
        let t = Tensor::float(D::F32, vec![2], vec![1.0, 2.0]).unwrap();
        let e = EncodedEntry::plain("x", &t).meta;
        assert!(matches!(
            layout(&[e.clone(), e]),
            Err(FileError::DuplicateName { .. })
        ));
    }
}
