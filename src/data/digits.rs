//! The UCI handwritten digits, carried inside the crate.

use ndarray::Array2;

use super::{DataError, Dataset, Split};
use crate::error::Result;

/// The scikit-learn copy of the UCI digits (BSD-3; see `data/digits/README.md`).
static DIGITS_CSV_GZ: &[u8] = include_bytes!("../../data/digits/digits.csv.gz");

/// Rows in the training part of the writer split; the other 360 rows are the
/// test part.
pub const DIGITS_TRAIN_ROWS: usize = 1437;

const ROWS: usize = 1797;
const FEATURES: usize = 64;

/// The UCI handwritten digits: 1797 8×8 images of the digits 0–9, with
/// pixels scaled from 0..=16 to [0, 1].
///
/// The split is by writer, as scikit-learn's examples use it: the first 1437
/// rows train, the last 360 test (the writers of the two parts differ, so the
/// test accuracy measures generalisation to new handwriting).
///
/// ```
/// let d = squish::data::digits().unwrap();
/// assert_eq!((d.train.len(), d.test.len()), (1437, 360));
/// assert_eq!(d.train.features(), 64);
/// ```
pub fn digits() -> Result<Split> {
    let text = gunzip(DIGITS_CSV_GZ)?;
    let text = std::str::from_utf8(&text)
        .map_err(|e| DataError::malformed("digits.csv", format!("not UTF-8: {e}")))?;
    let (x, y) = parse_csv(text)?;
    let train_x = x.slice(ndarray::s![..DIGITS_TRAIN_ROWS, ..]).to_owned();
    let test_x = x.slice(ndarray::s![DIGITS_TRAIN_ROWS.., ..]).to_owned();
    Ok(Split {
        train: Dataset::new(train_x, y[..DIGITS_TRAIN_ROWS].to_vec(), 10)?,
        test: Dataset::new(test_x, y[DIGITS_TRAIN_ROWS..].to_vec(), 10)?,
    })
}

pub(crate) fn gunzip(bytes: &[u8]) -> Result<Vec<u8>, DataError> {
    use std::io::Read;
    let mut out = Vec::new();
    flate2::read::GzDecoder::new(bytes)
        .read_to_end(&mut out)
        .map_err(|e| DataError::malformed("gzip stream", e.to_string()))?;
    Ok(out)
}

/// 64 pixel counts (0..=16) and a label (0..=9) per line.
fn parse_csv(text: &str) -> Result<(Array2<f32>, Vec<usize>), DataError> {
    let mut x = Vec::with_capacity(ROWS * FEATURES);
    let mut y = Vec::with_capacity(ROWS);
    for (line_no, line) in text.lines().filter(|l| !l.trim().is_empty()).enumerate() {
        let fields: Vec<&str> = line.split(',').collect();
        if fields.len() != FEATURES + 1 {
            return Err(DataError::malformed(
                "digits.csv",
                format!(
                    "line {} has {} fields, expected {}",
                    line_no + 1,
                    fields.len(),
                    FEATURES + 1
                ),
            ));
        }
        for f in &fields[..FEATURES] {
            let v: f32 = f.trim().parse().map_err(|_| {
                DataError::malformed(
                    "digits.csv",
                    format!("line {}: bad pixel {f:?}", line_no + 1),
                )
            })?;
            if !(0.0..=16.0).contains(&v) {
                return Err(DataError::malformed(
                    "digits.csv",
                    format!("line {}: pixel {v} outside 0..=16", line_no + 1),
                ));
            }
            x.push(v / 16.0);
        }
        let label: f32 = fields[FEATURES].trim().parse().map_err(|_| {
            DataError::malformed("digits.csv", format!("line {}: bad label", line_no + 1))
        })?;
        if !(0.0..=9.0).contains(&label) || label.fract() != 0.0 {
            return Err(DataError::malformed(
                "digits.csv",
                format!("line {}: label {label} is not a digit", line_no + 1),
            ));
        }
        y.push(label as usize);
    }
    if y.len() != ROWS {
        return Err(DataError::malformed(
            "digits.csv",
            format!("{} rows, expected {ROWS}", y.len()),
        ));
    }
    let x = Array2::from_shape_vec((ROWS, FEATURES), x).expect("row count checked");
    Ok((x, y))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn csv_errors_are_typed() {
        assert!(parse_csv("1,2,3\n").is_err());
        let mut line = vec!["0"; 64].join(",");
        line.push_str(",12");
        assert!(parse_csv(&line).is_err()); // label 12
        let bad = format!("17,{}", vec!["0"; 64].join(","));
        assert!(parse_csv(&bad).is_err()); // pixel 17
        assert!(gunzip(b"not gzip").is_err());
    }
}
