//! [`Budget`]: total bytes, or bits per weight.

use std::str::FromStr;

use super::PlanError;

/// How many bytes the planned layers may take in all.
///
/// ```
/// use squish::plan::Budget;
/// assert_eq!("4.5bpw".parse::<Budget>().unwrap(), Budget::BitsPerWeight(4.5));
/// assert_eq!("12MB".parse::<Budget>().unwrap(), Budget::Bytes(12_000_000));
/// assert_eq!("1KiB".parse::<Budget>().unwrap(), Budget::Bytes(1024));
/// assert_eq!(Budget::BitsPerWeight(4.0).bytes(1000), 500);
/// ```
#[derive(Clone, Copy, Debug, PartialEq)]
pub enum Budget {
    /// Total bytes of the planned layers (headers and scales included).
    Bytes(u64),
    /// Bits per weight over the planned layers.
    BitsPerWeight(f64),
}

impl Budget {
    /// The budget in bytes for `weights` weights.
    pub fn bytes(self, weights: usize) -> u64 {
        match self {
            Budget::Bytes(b) => b,
            Budget::BitsPerWeight(bpw) => (bpw * weights as f64 / 8.0).floor() as u64,
        }
    }
}

impl FromStr for Budget {
    type Err = PlanError;

    fn from_str(s: &str) -> Result<Self, PlanError> {
        let bad = || PlanError::BadBudget {
            text: s.to_string(),
        };
        let t = s.trim();
        let lower = t.to_ascii_lowercase();
        if let Some(num) = lower.strip_suffix("bpw") {
            let v: f64 = num.trim().parse().map_err(|_| bad())?;
            return if v.is_finite() && v > 0.0 {
                Ok(Budget::BitsPerWeight(v))
            } else {
                Err(bad())
            };
        }
        let units: [(&str, f64); 7] = [
            ("kib", 1024.0),
            ("mib", 1024.0 * 1024.0),
            ("gib", 1024.0 * 1024.0 * 1024.0),
            ("kb", 1e3),
            ("mb", 1e6),
            ("gb", 1e9),
            ("b", 1.0),
        ];
        let (num, scale) = units
            .iter()
            .find_map(|(u, f)| lower.strip_suffix(u).map(|n| (n, *f)))
            .unwrap_or((lower.as_str(), 1.0));
        let v: f64 = num.trim().parse().map_err(|_| bad())?;
        // Under half a byte rounds to a budget of 0, which the planner
        // would reject as `Bytes(0)`, not as the text the user wrote.
        let bytes = (v * scale).round();
        if !v.is_finite() || bytes < 1.0 {
            return Err(bad());
        }
        Ok(Budget::Bytes(bytes as u64))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_and_rejects() {
        assert_eq!("3bpw".parse::<Budget>(), Ok(Budget::BitsPerWeight(3.0)));
        assert_eq!(" 2.5 MiB ".parse::<Budget>(), Ok(Budget::Bytes(2_621_440)));
        assert_eq!("777".parse::<Budget>(), Ok(Budget::Bytes(777)));
        // "0.1b" rounded to `Bytes(0)`, rejected later as "`Bytes(0)`".
        for bad in ["", "abc", "-1MB", "0bpw", "NaNbpw", "infMB", "0.1b", "0.4"] {
            assert!(bad.parse::<Budget>().is_err(), "{bad}");
        }
    }
}
