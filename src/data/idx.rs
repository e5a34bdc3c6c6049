//! The idx format of the MNIST family of datasets.
//!
//! A file is a 4-byte magic (`0, 0, type, ndims`), `ndims` big-endian u32
//! dimensions, then the data in row-major order. Only unsigned bytes (type
//! `0x08`) occur in MNIST and Fashion-MNIST, so only they are accepted.

use std::path::Path;

use super::digits::gunzip;
use super::DataError;
use crate::error::Result;

/// An idx array of unsigned bytes.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct IdxArray {
    /// Dimensions, outermost first.
    pub dims: Vec<usize>,
    /// The elements, row-major.
    pub data: Vec<u8>,
}

/// Parses an (uncompressed) idx buffer of unsigned bytes.
///
/// ```
/// use squish::data::parse_idx;
/// // two 1×3 rows
/// let bytes = [0, 0, 8, 2, 0, 0, 0, 2, 0, 0, 0, 3, 1, 2, 3, 4, 5, 6];
/// let a = parse_idx(&bytes).unwrap();
/// assert_eq!(a.dims, vec![2, 3]);
/// assert_eq!(a.data, vec![1, 2, 3, 4, 5, 6]);
/// ```
pub fn parse_idx(bytes: &[u8]) -> Result<IdxArray> {
    Ok(parse(bytes)?)
}

fn parse(bytes: &[u8]) -> Result<IdxArray, DataError> {
    let bad = |d: String| DataError::malformed("idx data", d);
    if bytes.len() < 4 {
        return Err(bad(format!(
            "{} bytes, too short for the header",
            bytes.len()
        )));
    }
    if bytes[0] != 0 || bytes[1] != 0 {
        return Err(bad(format!(
            "magic starts {:#04x} {:#04x}, expected 0 0",
            bytes[0], bytes[1]
        )));
    }
    if bytes[2] != 0x08 {
        return Err(bad(format!(
            "element type {:#04x} is not supported (only unsigned bytes, 0x08)",
            bytes[2]
        )));
    }
    let ndims = bytes[3] as usize;
    if ndims == 0 {
        return Err(bad("zero dimensions".into()));
    }
    let header = 4 + 4 * ndims;
    if bytes.len() < header {
        return Err(bad(format!(
            "{} bytes, too short for {ndims} dimensions",
            bytes.len()
        )));
    }
    let dims: Vec<usize> = bytes[4..header]
        .chunks_exact(4)
        .map(|c| u32::from_be_bytes([c[0], c[1], c[2], c[3]]) as usize)
        .collect();
    let count = dims
        .iter()
        .try_fold(1usize, |acc, &d| acc.checked_mul(d))
        .ok_or_else(|| bad(format!("dimensions {dims:?} overflow")))?;
    let body = &bytes[header..];
    if body.len() != count {
        return Err(bad(format!(
            "dimensions {dims:?} need {count} bytes of data, found {}",
            body.len()
        )));
    }
    Ok(IdxArray {
        dims,
        data: body.to_vec(),
    })
}

/// Reads and parses a gzip-compressed idx file.
pub fn read_idx_gz(path: &Path) -> Result<IdxArray> {
    let raw = std::fs::read(path).map_err(|source| DataError::Io {
        path: path.to_path_buf(),
        source,
    })?;
    Ok(parse(&gunzip(&raw)?)?)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn header(kind: u8, dims: &[u32]) -> Vec<u8> {
        let mut b = vec![0, 0, kind, dims.len() as u8];
        for d in dims {
            b.extend(d.to_be_bytes());
        }
        b
    }

    #[test]
    fn parses_three_dims() {
        let mut b = header(8, &[2, 2, 3]);
        b.extend(0..12u8);
        let a = parse_idx(&b).unwrap();
        assert_eq!(a.dims, vec![2, 2, 3]);
        assert_eq!(a.data, (0..12).collect::<Vec<u8>>());
    }

    #[test]
    fn rejects_malformed_buffers() {
        assert!(parse_idx(&[0, 0]).is_err());
        assert!(parse_idx(&[1, 0, 8, 1, 0, 0, 0, 0]).is_err()); // magic
        let mut f32_kind = header(0x0D, &[1]);
        f32_kind.extend([0; 4]);
        assert!(parse_idx(&f32_kind).is_err()); // element type
        assert!(parse_idx(&header(8, &[])).is_err()); // no dims
        assert!(parse_idx(&[0, 0, 8, 2, 0, 0, 0, 1]).is_err()); // truncated header
        let mut short = header(8, &[2, 3]);
        short.extend([1, 2, 3]);
        assert!(parse_idx(&short).is_err()); // truncated body
        let mut long = header(8, &[1]);
        long.extend([1, 2]);
        assert!(parse_idx(&long).is_err()); // trailing bytes
    }

    #[test]
    fn missing_file_is_io_error() {
        let e = read_idx_gz(Path::new("/nonexistent/squish/x.gz")).unwrap_err();
        assert!(matches!(e, crate::SquishError::Data(DataError::Io { .. })));
    }
}
