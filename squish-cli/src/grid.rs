//! A plain-text table whose columns are as wide as their widest cell, the
//! total row included, so nothing overflows and every row lines up.

/// How a column's cells sit in its width.
#[derive(Clone, Copy, PartialEq, Eq)]
pub enum Align {
    Left,
    Right,
}

/// Rows of cells under a header; a rule line may separate the last row.
pub struct Grid {
    header: Vec<String>,
    align: Vec<Align>,
    rows: Vec<Vec<String>>,
    total: Option<Vec<String>>,
}

impl Grid {
    pub fn new(columns: &[(&str, Align)]) -> Self {
        Grid {
            header: columns.iter().map(|(h, _)| h.to_string()).collect(),
            align: columns.iter().map(|(_, a)| *a).collect(),
            rows: Vec::new(),
            total: None,
        }
    }

    pub fn row(&mut self, cells: Vec<String>) {
        debug_assert_eq!(cells.len(), self.header.len());
        self.rows.push(cells);
    }

    /// A last row under a rule.
    pub fn total(&mut self, cells: Vec<String>) {
        debug_assert_eq!(cells.len(), self.header.len());
        self.total = Some(cells);
    }

    pub fn render(&self) -> String {
        let all = || {
            std::iter::once(&self.header)
                .chain(&self.rows)
                .chain(self.total.as_ref())
        };
        let widths: Vec<usize> = (0..self.header.len())
            .map(|c| all().map(|r| r[c].chars().count()).max().unwrap_or(0))
            .collect();
        let line = |cells: &[String]| {
            let mut s = String::new();
            for (c, cell) in cells.iter().enumerate() {
                if c > 0 {
                    s.push_str("  ");
                }
                let pad = widths[c] - cell.chars().count();
                match self.align[c] {
                    Align::Left => {
                        s.push_str(cell);
                        s.extend(std::iter::repeat_n(' ', pad));
                    }
                    Align::Right => {
                        s.extend(std::iter::repeat_n(' ', pad));
                        s.push_str(cell);
                    }
                }
            }
            let mut s = s.trim_end().to_string();
            s.push('\n');
            s
        };
        let mut out = line(&self.header);
        for r in &self.rows {
            out.push_str(&line(r));
        }
        if let Some(t) = &self.total {
            let width = widths.iter().sum::<usize>() + 2 * (widths.len() - 1);
            out.push_str(&"-".repeat(width));
            out.push('\n');
            out.push_str(&line(t));
        }
        out
    }
}

/// A byte count for people: B below 1 KiB, KiB below 1 MiB, MiB below 1 GiB.
pub fn human(bytes: u64) -> String {
    const K: f64 = 1024.0;
    let b = bytes as f64;
    if bytes < 1 << 10 {
        format!("{bytes} B")
    } else if bytes < 1 << 20 {
        format!("{:.1} KiB", b / K)
    } else if bytes < 1 << 30 {
        format!("{:.1} MiB", b / (K * K))
    } else {
        format!("{:.2} GiB", b / (K * K * K))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sizes_pick_the_unit_of_their_range() {
        assert_eq!(human(1023), "1023 B");
        assert_eq!(human(8192), "8.0 KiB");
        assert_eq!(human(5_310_000), "5.1 MiB");
        assert_eq!(human(12 << 20), "12.0 MiB");
        assert_eq!(human(3 << 30), "3.00 GiB");
    }

    #[test]
    fn columns_fit_their_widest_cell_including_the_total() {
        let mut g = Grid::new(&[("name", Align::Left), ("bytes", Align::Right)]);
        g.row(vec!["a".into(), "1 B".into()]);
        g.row(vec!["a-much-longer-name".into(), "10.0 KiB".into()]);
        g.total(vec![
            "total (2 matrices, 3 tensors)".into(),
            "10.0 KiB".into(),
        ]);
        let s = g.render();
        let lines: Vec<&str> = s.lines().collect();
        // Right-aligned cells end in the same column on every row.
        let end = lines[0].len();
        for l in lines.iter().filter(|l| !l.starts_with('-')) {
            assert_eq!(l.chars().count(), end, "{s}");
        }
    }
}
