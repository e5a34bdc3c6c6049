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

/// Writes each `(offset, bytes)` into the existing file at `path`, which
/// every writer first sets to its final length `len`; then, if `sync`,
/// flushes its data to the device (for a writer whose writes another
/// process will rename into place).
///
/// On Linux the whole file-system blocks of each contiguous run of parts go
/// around the page cache (`O_DIRECT`, through one reused aligned buffer):
/// buffered writes into one file serialize on its inode lock, and filling
/// tens of megabytes of new page cache costs more than the compression of a
/// layer; the unaligned ends of each run (under a block each) are written
/// through the page cache. Where the file system refuses direct I/O, all of
/// it goes through the page cache. The bytes in the file are the same.
pub(crate) fn write_parts(
    path: &Path,
    parts: &[(u64, &[u8])],
    len: u64,
    sync: bool,
) -> Result<(), FileError> {
    let io = |e| FileError::io("write", path, e);
    let f = OpenOptions::new().write(true).open(path).map_err(io)?;
    // Every writer sets the final length: no write extends the file, and
    // the length never exceeds `len` (no part reaches past it).
    if f.metadata().map_err(io)?.len() != len {
        f.set_len(len).map_err(io)?;
    }
    let mut direct = Direct::open(path);
    for run in runs(parts) {
        let (start, end) = (run.start, run.end());
        let (a, b) = match &direct {
            Some(d) => d.interior(start, end),
            None => (end, end),
        };
        // The unaligned head and tail through the page cache, the aligned
        // middle directly.
        if a > start || b < end {
            run.write_range(&f, start, a.min(end)).map_err(io)?;
            run.write_range(&f, b.max(a), end).map_err(io)?;
        }
        if b > a {
            let done = match &mut direct {
                Some(d) => d.write(&run, a, b).map_err(io)?,
                None => false,
            };
            if !done {
                direct = None;
                run.write_range(&f, a, b).map_err(io)?;
            }
        }
    }
    if sync {
        f.sync_data().map_err(io)?;
    }
    Ok(())
}

/// Consecutive parts that follow each other in the file.
struct Run<'a> {
    start: u64,
    slices: Vec<&'a [u8]>,
}

impl Run<'_> {
    fn end(&self) -> u64 {
        self.start + self.slices.iter().map(|s| s.len() as u64).sum::<u64>()
    }

    /// Copies the run's bytes from file offset `from` on into `dst`.
    fn copy_into(&self, from: u64, dst: &mut [u8]) {
        let mut skip = (from - self.start) as usize;
        let mut filled = 0;
        for s in &self.slices {
            if filled == dst.len() {
                break;
            }
            if skip >= s.len() {
                skip -= s.len();
                continue;
            }
            let n = (s.len() - skip).min(dst.len() - filled);
            dst[filled..filled + n].copy_from_slice(&s[skip..skip + n]);
            filled += n;
            skip = 0;
        }
    }

    /// Writes the run's bytes in `[from, to)` at their offsets.
    fn write_range(&self, f: &File, from: u64, to: u64) -> std::io::Result<()> {
        let mut at = self.start;
        for s in &self.slices {
            let end = at + s.len() as u64;
            let (a, b) = (at.max(from), end.min(to));
            if a < b {
                write_at(f, &s[(a - at) as usize..(b - at) as usize], a)?;
            }
            at = end;
        }
        Ok(())
    }
}

/// `parts` sorted by offset, merged into runs.
fn runs<'a>(parts: &[(u64, &'a [u8])]) -> Vec<Run<'a>> {
    let mut sorted: Vec<(u64, &[u8])> = parts.iter().copied().filter(|p| !p.1.is_empty()).collect();
    sorted.sort_by_key(|p| p.0);
    let mut out: Vec<Run<'a>> = Vec::new();
    for (at, bytes) in sorted {
        match out.last_mut() {
            Some(r) if r.end() == at => r.slices.push(bytes),
            _ => out.push(Run {
                start: at,
                slices: vec![bytes],
            }),
        }
    }
    out
}

/// The file opened for direct I/O, and an aligned buffer to write from.
struct Direct {
    file: File,
    /// Alignment of offsets, lengths and memory: the file system's block
    /// and the memory page, whichever is larger.
    align: u64,
    buf: Vec<u8>,
}

/// Bytes per direct write.
const DIRECT_CHUNK: usize = 4 << 20;

impl Direct {
    #[cfg(target_os = "linux")]
    fn open(path: &Path) -> Option<Direct> {
        use std::os::unix::fs::{MetadataExt, OpenOptionsExt};
        let file = OpenOptions::new()
            .write(true)
            .custom_flags(libc::O_DIRECT)
            .open(path)
            .ok()?;
        // SAFETY: sysconf reads a constant of the system.
        let page = unsafe { libc::sysconf(libc::_SC_PAGESIZE) }.max(4096) as u64;
        let block = file.metadata().ok()?.blksize().max(512);
        let align = page.max(block);
        if !align.is_power_of_two() || align > DIRECT_CHUNK as u64 {
            return None;
        }
        Some(Direct {
            file,
            align,
            buf: Vec::new(),
        })
    }

    #[cfg(not(target_os = "linux"))]
    fn open(_: &Path) -> Option<Direct> {
        None
    }

    /// The whole blocks inside `[start, end)`: `(a, b)` with `a ≥ b` when
    /// there are none.
    fn interior(&self, start: u64, end: u64) -> (u64, u64) {
        let a = start.div_ceil(self.align) * self.align;
        let b = end / self.align * self.align;
        (a, b.max(a))
    }

    /// Writes the run's bytes in `[a, b)` (block-aligned) directly; `false`
    /// if the file system refused direct I/O before anything was written.
    fn write(&mut self, run: &Run<'_>, a: u64, b: u64) -> std::io::Result<bool> {
        let align = self.align as usize;
        if self.buf.is_empty() {
            self.buf = vec![0u8; DIRECT_CHUNK + align];
        }
        let skew = self.buf.as_ptr().align_offset(align);
        let mut at = a;
        while at < b {
            let n = ((b - at) as usize).min(DIRECT_CHUNK);
            let chunk = &mut self.buf[skew..skew + n];
            run.copy_into(at, chunk);
            match write_at(&self.file, chunk, at) {
                Ok(()) => {}
                Err(e) if at == a && e.kind() == std::io::ErrorKind::InvalidInput => {
                    return Ok(false)
                }
                Err(e) => return Err(e),
            }
            at += n as u64;
        }
        Ok(true)
    }
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
        let tmp = super::atomic::output_temp(dir)?;
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
    /// over the target (which keeps its permissions; a new file gets those
    /// of any new file of the user), then syncs the directory.
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
        super::atomic::keep_mode(&path, &self.target)?;
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
        write_parts(out.path(), &first, l.len, false)?;
        let mut second: Vec<(u64, &[u8])> = Vec::new();
        for e in (0..last).rev() {
            for (p, b) in encoded[e].bytes.iter().enumerate() {
                second.push((l.offsets[e][p], b));
            }
        }
        write_parts(out.path(), &second, l.len, true)?;
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
        write_parts(out.path(), &[(0, b"12345678")], 8, false)?;
        assert!(out.finish(16).is_err());
        assert!(!target.exists());
        assert_eq!(std::fs::read_dir(dir.path()).unwrap().count(), 0);
        Ok(())
    }

    /// Parts of every size (under a block, across blocks, across direct
    /// chunks), owned alternately by two writers, land at their offsets:
    /// the direct middles, the buffered ends and the runs fit together.
    #[test]
    fn parts_of_any_size_and_alignment_land_in_place() -> crate::Result<()> {
        let sizes = [
            1usize,
            4095,
            4096,
            4097,
            10,
            8191,
            3,
            9 << 20,
            12_345,
            1,
            70_000,
            4096 * 3 + 5,
        ];
        let mut at = 0u64;
        let mut parts = Vec::new();
        let mut want = Vec::new();
        for (i, &n) in sizes.iter().enumerate() {
            let bytes: Vec<u8> = (0..n).map(|k| (k * 31 + i * 7) as u8 | 1).collect();
            want.extend_from_slice(&bytes);
            parts.push((at, bytes));
            at += n as u64;
        }
        let len = at;
        let dir = tempfile::tempdir().unwrap();
        let target = dir.path().join("out.squish");
        let out = SharedOutput::create(&target)?;
        // Writer 1 owns parts 1, 2, 4, 5, 7, …; writer 0 the others (runs
        // of one and two parts), writer 1 first.
        for w in [1, 0] {
            let mine: Vec<(u64, &[u8])> = parts
                .iter()
                .enumerate()
                .filter(|(i, _)| usize::from(i % 3 != 0) == w)
                .map(|(_, (o, b))| (*o, b.as_slice()))
                .collect();
            write_parts(out.path(), &mine, len, w == 1)?;
        }
        out.finish(len)?;
        assert!(std::fs::read(&target).unwrap() == want);
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
