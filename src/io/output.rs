//! Guarding output paths: never replace an input, never overwrite a file
//! that squish did not write, unless asked to.
//!
//! Writes are atomic (a temporary file renamed over the target), so the
//! danger is not a torn file but the *right* file replaced: `-o` naming the
//! model being compressed, or an unrelated file of the user's.

use std::io::Read;
use std::path::Path;

use super::description::VERSION_KEY;
use super::FileError;

/// Metadata key `squish decompress` writes into its safetensors output, so a
/// later run knows the file is its own to replace.
pub const DECOMPRESSED_KEY: &str = "squish.decompressed";

/// Marker comment near the top of the SVG plots squish writes.
pub const SVG_MARKER: &str = "<!-- written by squish -->";

/// First words of the recipes `squish plan` writes.
pub const PLAN_MARKER: &str = "# Planned by squish";

/// What squish may replace at an output path without being forced.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum OutputKind {
    /// A squish container (header metadata holds `squish.version`).
    Container,
    /// A safetensors file written by `squish decompress`.
    Decompressed,
    /// An SVG plot holding [`SVG_MARKER`] in its first KiB.
    Plot,
    /// A recipe written by `squish plan`, holding [`PLAN_MARKER`] in its
    /// first KiB.
    Plan,
}

impl OutputKind {
    /// True when `path` holds a file of this kind (read from its first bytes
    /// or header only).
    pub fn matches(self, path: &Path) -> bool {
        match self {
            OutputKind::Container => header_has_key(path, VERSION_KEY),
            OutputKind::Decompressed => header_has_key(path, DECOMPRESSED_KEY),
            OutputKind::Plot => head_contains(path, SVG_MARKER.as_bytes()),
            OutputKind::Plan => head_contains(path, PLAN_MARKER.as_bytes()),
        }
    }

    fn describe(self) -> &'static str {
        match self {
            OutputKind::Container => "a squish container",
            OutputKind::Decompressed => "a model written by `squish decompress`",
            OutputKind::Plot => "a plot written by squish",
            OutputKind::Plan => "a recipe written by `squish plan`",
        }
    }
}

/// Checks that writing `output` loses nothing, unless `force` (pass it only
/// for an explicit overwrite flag such as the CLI's `--force`):
///
/// - `output` must not be any of `inputs` — compared by device and inode on
///   Unix, so symlinks and hard links to an input are caught too
///   ([`FileError::OutputIsInput`]);
/// - an existing `output` must be a file of kind `kind`, one squish wrote
///   ([`FileError::OutputExists`]).
///
/// ```
/// use squish::io::{check_output, FileError, OutputKind};
/// use squish::SquishError;
/// let dir = tempfile::tempdir()?;
/// let model = dir.path().join("m.safetensors");
/// std::fs::write(&model, b"weights")?;
/// let err = check_output(&model, &[&model], OutputKind::Container, false).unwrap_err();
/// assert!(matches!(err, SquishError::File(FileError::OutputIsInput { .. })));
/// check_output(&dir.path().join("m.squish"), &[&model], OutputKind::Container, false)?;
/// # Ok::<(), Box<dyn std::error::Error>>(())
/// ```
pub fn check_output(
    output: &Path,
    inputs: &[&Path],
    kind: OutputKind,
    force: bool,
) -> crate::Result<()> {
    let Some(out_meta) = existing_output(output, inputs, force)? else {
        return Ok(());
    };
    if out_meta.is_file() && kind.matches(output) {
        return Ok(());
    }
    Err(FileError::OutputExists {
        path: output.to_path_buf(),
        expected: kind.describe(),
    }
    .into())
}

/// What the output checks start from: `None` (nothing to check) with
/// `force` or when nothing is at `path` (or a dangling link: nothing to
/// lose); otherwise `path`'s metadata, once `path` is known not to be one of
/// `inputs`.
fn existing_output(
    path: &Path,
    inputs: &[&Path],
    force: bool,
) -> crate::Result<Option<std::fs::Metadata>> {
    if force {
        return Ok(None);
    }
    let Ok(meta) = std::fs::metadata(path) else {
        return Ok(None);
    };
    refuse_if_input(path, &meta, inputs)?;
    Ok(Some(meta))
}

/// `FileError::OutputIsInput` when `path` (with metadata `meta`) is one of
/// `inputs`.
fn refuse_if_input(path: &Path, meta: &std::fs::Metadata, inputs: &[&Path]) -> crate::Result<()> {
    for input in inputs {
        if let Ok(in_meta) = std::fs::metadata(input) {
            if same_file(path, meta, input, &in_meta) {
                return Err(FileError::OutputIsInput {
                    output: path.to_path_buf(),
                    input: input.to_path_buf(),
                }
                .into());
            }
        }
    }
    Ok(())
}

/// [`check_output`] for sharded output into the directory `dir` (what
/// [`ContainerWriter::sharded`](super::ContainerWriter::sharded) and
/// [`ModelWriter::sharded`](super::ModelWriter::sharded) write), unless
/// `force`:
///
/// - `dir` must not be an input, and no file the writers may replace in it
///   (`model.safetensors.index.json`, `model-*-of-*.safetensors`) may be an
///   input ([`FileError::OutputIsInput`]);
/// - an existing `dir` must be a directory, and every existing shard in it a
///   file of kind `kind` ([`FileError::OutputExists`] names the first other).
///
/// ```
/// use squish::io::{check_output_dir, FileError, OutputKind};
/// use squish::SquishError;
/// let dir = tempfile::tempdir()?;
/// let shard = dir.path().join("model-00001-of-00001.safetensors");
/// std::fs::write(&shard, b"someone else's weights")?;
/// // Compressing that model into its own directory would replace it.
/// let err = check_output_dir(dir.path(), &[&shard], OutputKind::Container, false).unwrap_err();
/// assert!(matches!(err, SquishError::File(FileError::OutputIsInput { .. })));
/// check_output_dir(&dir.path().join("out"), &[&shard], OutputKind::Container, false)?;
/// # Ok::<(), Box<dyn std::error::Error>>(())
/// ```
pub fn check_output_dir(
    dir: &Path,
    inputs: &[&Path],
    kind: OutputKind,
    force: bool,
) -> crate::Result<()> {
    let Some(dir_meta) = existing_output(dir, inputs, force)? else {
        return Ok(());
    };
    if !dir_meta.is_dir() {
        return Err(FileError::OutputExists {
            path: dir.to_path_buf(),
            expected: "a directory (for shards)",
        }
        .into());
    }
    let entries = std::fs::read_dir(dir).map_err(|e| FileError::io("list", dir, e))?;
    let mut replaceable = Vec::new();
    for e in entries {
        let path = e.map_err(|e| FileError::io("list", dir, e))?.path();
        let Some(name) = path.file_name().and_then(|n| n.to_str()) else {
            continue;
        };
        if name == super::INDEX_NAME || is_shard_name(name) {
            replaceable.push(path);
        }
    }
    replaceable.sort();
    for path in &replaceable {
        if let Ok(meta) = std::fs::metadata(path) {
            refuse_if_input(path, &meta, inputs)?;
        }
    }
    for path in &replaceable {
        let name = path.file_name().and_then(|n| n.to_str()).unwrap_or("");
        if name != super::INDEX_NAME && !(path.is_file() && kind.matches(path)) {
            return Err(FileError::OutputExists {
                path: path.clone(),
                expected: kind.describe(),
            }
            .into());
        }
    }
    Ok(())
}

/// True for `model-NNNNN-of-NNNNN.safetensors`, the shard names the writers use.
fn is_shard_name(name: &str) -> bool {
    let Some(rest) = name
        .strip_prefix("model-")
        .and_then(|r| r.strip_suffix(".safetensors"))
    else {
        return false;
    };
    match rest.split_once("-of-") {
        Some((a, b)) => {
            !a.is_empty()
                && !b.is_empty()
                && a.bytes().all(|c| c.is_ascii_digit())
                && b.bytes().all(|c| c.is_ascii_digit())
        }
        None => false,
    }
}

#[cfg(unix)]
fn same_file(_: &Path, a: &std::fs::Metadata, _: &Path, b: &std::fs::Metadata) -> bool {
    use std::os::unix::fs::MetadataExt;
    a.dev() == b.dev() && a.ino() == b.ino()
}

#[cfg(not(unix))]
fn same_file(a: &Path, _: &std::fs::Metadata, b: &Path, _: &std::fs::Metadata) -> bool {
    match (std::fs::canonicalize(a), std::fs::canonicalize(b)) {
        (Ok(a), Ok(b)) => a == b,
        _ => false,
    }
}

fn head_contains(path: &Path, needle: &[u8]) -> bool {
    let mut head = Vec::with_capacity(1024);
    std::fs::File::open(path)
        .and_then(|f| f.take(1024).read_to_end(&mut head))
        .is_ok()
        && head.windows(needle.len()).any(|w| w == needle)
}

/// True when `path` is a safetensors file whose header metadata has `key`.
/// Reads only the header (at most 100 MB, safetensors' own limit).
fn header_has_key(path: &Path, key: &str) -> bool {
    let Ok(mut f) = std::fs::File::open(path) else {
        return false;
    };
    let mut len = [0u8; 8];
    if f.read_exact(&mut len).is_err() {
        return false;
    }
    let n = u64::from_le_bytes(len);
    if n > 100_000_000 {
        return false;
    }
    let mut header = vec![0u8; n as usize];
    if f.read_exact(&mut header).is_err() {
        return false;
    }
    let Ok(v) = serde_json::from_slice::<serde_json::Value>(&header) else {
        return false;
    };
    v.get("__metadata__").and_then(|m| m.get(key)).is_some()
}
