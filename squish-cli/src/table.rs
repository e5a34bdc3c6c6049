//! Plain-text tables for the CLI.

use std::fmt::Write;

use squish::io::{shape_string, CompressedModel, Entry, Model};
use squish::matrix::{Component, CompressedMatrix, StorageReport, Structure};
use squish::recipe::{Compressed, LayerReport, SweepPoint};

use crate::grid::{self, Align, Grid};

fn human(bytes: usize) -> String {
    grid::human(bytes as u64)
}

fn db(x: f64) -> String {
    if x.is_infinite() {
        "exact".into()
    } else {
        format!("{x:.1}")
    }
}

/// Sizes of the input file and of the container written, for the
/// file-level ratio under the table.
pub struct Files {
    pub input: u64,
    pub output: u64,
}

/// The per-layer table `squish compress` prints, with a total, then the
/// whole files compared (from an in-memory compression, as under MPI).
#[cfg_attr(not(feature = "mpi"), allow(dead_code))]
pub fn layers(c: &Compressed, original: &Model, files: &Files) -> String {
    let dtype = |name: &str| {
        original
            .get(name)
            .map_or(String::new(), |t| t.dtype().to_string())
    };
    let kept = c.model.len() - c.layers.len();
    layer_rows(&c.layers, &dtype, c.totals(original), kept, files)
}

/// [`layers`] from the reports alone (what a streamed compression keeps):
/// `dtype` names a layer's dtype in the input, `totals` is (bytes before,
/// bytes after, relative error), `kept` counts the tensors stored as they were.
pub fn layer_rows(
    layers: &[LayerReport],
    dtype: &dyn Fn(&str) -> String,
    totals: (usize, usize, f64),
    kept: usize,
    files: &Files,
) -> String {
    let mut g = Grid::new(&[
        ("layer", Align::Left),
        ("shape", Align::Left),
        ("dtype", Align::Left),
        ("method", Align::Left),
        ("before", Align::Right),
        ("after", Align::Right),
        ("ratio", Align::Right),
        ("rel.err", Align::Right),
        ("SQNR dB", Align::Right),
    ]);
    for l in layers {
        g.row(vec![
            l.name.clone(),
            shape_string(&l.shape),
            dtype(&l.name),
            l.method.clone(),
            human(l.bytes_before),
            human(l.bytes_after),
            format!("{:.2}x", l.ratio()),
            format!("{:.3e}", l.error.rel_frobenius),
            db(l.error.sqnr_db),
        ]);
    }
    let (before, after, rel) = totals;
    g.total(vec![
        format!("total ({} matrices)", layers.len()),
        String::new(),
        String::new(),
        String::new(),
        human(before),
        human(after),
        format!("{:.2}x", before as f64 / after.max(1) as f64),
        format!("{rel:.3e}"),
        db(if rel > 0.0 {
            -20.0 * rel.log10()
        } else {
            f64::INFINITY
        }),
    ]);
    let mut s = g.render();
    let f32_bytes: usize = layers.iter().map(|l| l.bytes_f32).sum();
    let _ = writeln!(
        s,
        "matrices: {} in the input file ({} as f32) -> {} compressed: {:.2}x smaller than the file, {:.2}x than f32",
        human(before),
        human(f32_bytes),
        human(after),
        before as f64 / after.max(1) as f64,
        f32_bytes as f64 / after.max(1) as f64,
    );
    let _ = writeln!(
        s,
        "files: input {} -> container {}: {:.2}x smaller (with {kept} tensors kept as they were and the header)",
        human(files.input as usize),
        human(files.output as usize),
        files.input as f64 / files.output.max(1) as f64,
    );
    s
}

fn describe(m: &CompressedMatrix) -> String {
    match m.structure() {
        Structure::LowRank(lr) => {
            let (a, b) = (describe(lr.a()), describe(lr.b()));
            if a == b {
                format!("low-rank r={}, factors {a}", lr.rank())
            } else {
                format!("low-rank r={}, A {a}, B {b}", lr.rank())
            }
        }
        Structure::NM(s) => format!("{}:{} {}", s.n(), s.m(), m.encoding()),
        Structure::Csr(c) => format!(
            "csr {:.0}% {}",
            100.0 * (1.0 - c.nnz() as f64 / (m.rows() * m.cols()) as f64),
            m.encoding()
        ),
        s => format!("{} {}", s.kind(), m.encoding()),
    }
}

/// What `squish inspect` prints for a container.
pub fn container(m: &CompressedModel) -> String {
    let mut g = Grid::new(&[
        ("tensor", Align::Left),
        ("dtype", Align::Left),
        ("shape", Align::Left),
        ("stored as", Align::Left),
        ("bytes", Align::Right),
        ("bits/w", Align::Right),
        ("vs dtype", Align::Right),
        ("method", Align::Left),
    ]);
    let mut total = StorageReport::new(0);
    let (mut original, mut f32_bytes, mut plain) = (0usize, 0usize, 0usize);
    for (name, e) in m.iter() {
        let r = e.storage();
        match e {
            Entry::Compressed(c) => {
                total.absorb(&r);
                // The matrix in its original dtype, as the input file held it.
                let before = r.elements() * c.dtype().bitsize() / 8;
                original += before;
                f32_bytes += r.dense_bytes();
                g.row(vec![
                    name.to_string(),
                    c.dtype().to_string(),
                    shape_string(c.shape()),
                    describe(c.matrix()),
                    human(r.total()),
                    format!("{:.3}", r.bits_per_weight()),
                    format!("{:.2}x", before as f64 / r.total().max(1) as f64),
                    c.method().to_string(),
                ]);
            }
            Entry::Plain(t) => {
                plain += r.total();
                g.row(vec![
                    name.to_string(),
                    t.dtype().to_string(),
                    shape_string(t.shape()),
                    "as is".into(),
                    human(r.total()),
                    String::new(),
                    String::new(),
                    "-".into(),
                ]);
            }
        }
    }
    let mut s = g.render();
    let _ = writeln!(
        s,
        "\ncompressed matrices: {} in their original dtypes -> {} ({:.2}x smaller; {:.2}x vs f32); tensors kept as is: {}",
        human(original),
        human(total.total()),
        original as f64 / total.total().max(1) as f64,
        f32_bytes as f64 / total.total().max(1) as f64,
        human(plain)
    );
    let _ = write!(s, "storage by component:");
    for c in Component::ALL {
        if total.get(c) > 0 {
            let _ = write!(
                s,
                " {} {} ({:.1}%)",
                c.name(),
                human(total.get(c)),
                100.0 * total.get(c) as f64 / total.total() as f64
            );
        }
    }
    s.push('\n');
    s
}

/// What `squish inspect` prints for a plain safetensors model.
pub fn model(m: &Model) -> String {
    let mut s = format!("plain safetensors model, {} tensors\n", m.len());
    let mut g = Grid::new(&[
        ("tensor", Align::Left),
        ("dtype", Align::Left),
        ("shape", Align::Left),
        ("bytes", Align::Right),
        ("matrix", Align::Left),
    ]);
    for (name, t) in m.iter() {
        g.row(vec![
            name.to_string(),
            t.dtype().to_string(),
            shape_string(t.shape()),
            human(t.shape().iter().product::<usize>() * t.dtype().bitsize() / 8),
            t.matrix()
                .map_or("-".to_string(), |v| format!("{}×{}", v.nrows(), v.ncols())),
        ]);
    }
    s.push_str(&g.render());
    s
}

/// The sweep table.
pub fn sweep(layers: &[&str], points: &[SweepPoint]) -> String {
    let mut s = format!("layers: {}\n", layers.join(", "));
    let mut g = Grid::new(&[
        ("family", Align::Left),
        ("setting", Align::Left),
        ("bits/w", Align::Right),
        ("rel.err", Align::Right),
        ("SQNR dB", Align::Right),
    ]);
    for p in points {
        g.row(vec![
            p.family.to_string(),
            p.setting.clone(),
            format!("{:.3}", p.bits_per_weight),
            format!("{:.3e}", p.rel_error),
            db(p.sqnr_db),
        ]);
    }
    s.push_str(&g.render());
    s
}
