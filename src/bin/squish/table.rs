//! Plain-text tables for the CLI.

use std::fmt::Write;

use squish::io::{shape_string, CompressedModel, Entry, Model};
use squish::matrix::{Component, CompressedMatrix, StorageReport, Structure};
use squish::recipe::{Compressed, LayerReport, SweepPoint};

fn human(bytes: usize) -> String {
    if bytes >= 10 << 20 {
        format!("{:.1} MiB", bytes as f64 / (1 << 20) as f64)
    } else if bytes >= 10 << 10 {
        format!("{:.1} KiB", bytes as f64 / 1024.0)
    } else {
        format!("{bytes} B")
    }
}

fn db(x: f64) -> String {
    if x.is_infinite() {
        "exact".into()
    } else {
        format!("{x:.1}")
    }
}

/// The per-layer table `squish compress` prints, with a total.
#[allow(dead_code)]
pub fn layers(c: &Compressed, original: &Model) -> String {
    layer_table(
        &c.layers,
        c.model.len() - c.layers.len(),
        c.totals(original),
    )
}

/// The per-layer table from reports, the number of tensors kept and the
/// totals (bytes before, bytes after, relative error).
pub fn layer_table(layers: &[LayerReport], kept: usize, totals: (usize, usize, f64)) -> String {
    let w = layers
        .iter()
        .map(|l| l.name.len())
        .max()
        .unwrap_or(5)
        .max(5);
    let m = layers
        .iter()
        .map(|l| l.method.chars().count())
        .max()
        .unwrap_or(6)
        .max(6);
    let mut s = String::new();
    let _ = writeln!(
        s,
        "{:<w$}  {:<12}  {:<m$}  {:>10}  {:>10}  {:>7}  {:>9}  {:>8}",
        "layer", "shape", "method", "before", "after", "ratio", "rel.err", "SQNR dB"
    );
    for l in layers {
        let _ = writeln!(
            s,
            "{:<w$}  {:<12}  {:<m$}  {:>10}  {:>10}  {:>6.2}x  {:>9.3e}  {:>8}",
            l.name,
            shape_string(&l.shape),
            l.method,
            human(l.bytes_before),
            human(l.bytes_after),
            l.ratio(),
            l.error.rel_frobenius,
            db(l.error.sqnr_db)
        );
    }
    let (before, after, rel) = totals;
    let _ = writeln!(
        s,
        "{:<w$}  {:<12}  {:<m$}  {:>10}  {:>10}  {:>6.2}x  {:>9.3e}  {:>8}",
        format!("total ({} matrices)", layers.len()),
        "",
        format!("+{kept} tensors kept as they were"),
        human(before),
        human(after),
        before as f64 / after.max(1) as f64,
        rel,
        db(if rel > 0.0 {
            -20.0 * rel.log10()
        } else {
            f64::INFINITY
        })
    );
    s
}

fn describe(m: &CompressedMatrix) -> String {
    match m.structure() {
        Structure::LowRank(lr) => format!(
            "low-rank r={} [A: {}, B: {}]",
            lr.rank(),
            describe(lr.a()),
            describe(lr.b())
        ),
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
    let w = m.iter().map(|(n, _)| n.len()).max().unwrap_or(6).max(6);
    let mut s = String::new();
    let _ = writeln!(
        s,
        "{:<w$}  {:<5}  {:<12}  {:<28}  {:>10}  {:>7}  {:>7}  method",
        "tensor", "dtype", "shape", "stored as", "bytes", "bits/w", "ratio"
    );
    let mut total = StorageReport::new(0);
    let (mut dense, mut plain) = (0usize, 0usize);
    for (name, e) in m.iter() {
        let r = e.storage();
        match e {
            Entry::Compressed(c) => {
                total.absorb(&r);
                dense += r.dense_bytes();
                let _ = writeln!(
                    s,
                    "{:<w$}  {:<5}  {:<12}  {:<28}  {:>10}  {:>7.3}  {:>6.2}x  {}",
                    name,
                    c.dtype().to_string(),
                    shape_string(c.shape()),
                    describe(c.matrix()),
                    human(r.total()),
                    r.bits_per_weight(),
                    r.ratio(),
                    c.method()
                );
            }
            Entry::Plain(t) => {
                plain += r.total();
                let _ = writeln!(
                    s,
                    "{:<w$}  {:<5}  {:<12}  {:<28}  {:>10}  {:>7}  {:>7}  -",
                    name,
                    t.dtype().to_string(),
                    shape_string(t.shape()),
                    "as is",
                    human(r.total()),
                    "",
                    ""
                );
            }
        }
    }
    let _ = writeln!(
        s,
        "\ncompressed matrices: {} -> {} ({:.2}x); tensors kept as is: {}",
        human(dense),
        human(total.total()),
        dense as f64 / total.total().max(1) as f64,
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
    let w = m.iter().map(|(n, _)| n.len()).max().unwrap_or(6).max(6);
    let mut s = format!("plain safetensors model, {} tensors\n", m.len());
    let _ = writeln!(
        s,
        "{:<w$}  {:<5}  {:<14}  {:>10}  matrix",
        "tensor", "dtype", "shape", "bytes"
    );
    for (name, t) in m.iter() {
        let _ = writeln!(
            s,
            "{:<w$}  {:<5}  {:<14}  {:>10}  {}",
            name,
            t.dtype().to_string(),
            shape_string(t.shape()),
            human(t.to_bytes().len()),
            t.matrix()
                .map_or("-".to_string(), |v| format!("{}×{}", v.nrows(), v.ncols()))
        );
    }
    s
}

/// The sweep table.
pub fn sweep(layers: &[&str], points: &[SweepPoint]) -> String {
    let mut s = format!("layers: {}\n", layers.join(", "));
    // Columns as wide as their longest entry.
    let width = |f: &dyn Fn(&SweepPoint) -> &str, title: &str| {
        points
            .iter()
            .map(|p| f(p).chars().count())
            .chain([title.len()])
            .max()
            .unwrap_or(0)
    };
    let wf = width(&|p| p.family, "family");
    let ws = width(&|p| p.setting.as_str(), "setting");
    let _ = writeln!(
        s,
        "{:<wf$}  {:<ws$}  {:>7}  {:>9}  {:>8}",
        "family", "setting", "bits/w", "rel.err", "SQNR dB"
    );
    for p in points {
        let _ = writeln!(
            s,
            "{:<wf$}  {:<ws$}  {:>7.3}  {:>9.3e}  {:>8}",
            p.family,
            p.setting,
            p.bits_per_weight,
            p.rel_error,
            db(p.sqnr_db)
        );
    }
    s
}
