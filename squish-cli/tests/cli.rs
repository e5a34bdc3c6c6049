//! The `squish` binary on the committed Silero VAD model (MIT, see
//! tests/data/silero_vad_16k.LICENSE).

mod common;
use common::*;
use std::path::Path;

use squish::io::{CompressedModel, Entry, Model};

const MODEL: &str = concat!(
    env!("CARGO_MANIFEST_DIR"),
    "/../tests/data/silero_vad_16k.safetensors"
);
const RECIPE: &str = concat!(env!("CARGO_MANIFEST_DIR"), "/../tests/data/silero_vad.toml");

#[test]
fn compress_inspect_decompress_the_real_model() {
    let dir = tempfile::tempdir().unwrap();
    let out = dir.path().join("vad.squish");
    let out_s = out.to_str().unwrap();
    let table = ok(&["compress", MODEL, "--recipe", RECIPE, "-o", out_s]);
    // One row per compressed matrix with its method, then the total.
    for (layer, method) in [
        ("conv1.weight", "int4 sym group-32"),
        ("conv4.weight", "int4 sym group-32"),
        ("lstm_cell.weight_ih", "magnitude 50% → int8 sym per-row"),
        ("final_conv.weight", "int8 sym per-row"),
    ] {
        let row = table
            .lines()
            .find(|l| l.starts_with(layer))
            .unwrap_or_else(|| panic!("{table}"));
        assert!(row.contains(method), "{row}");
    }
    assert!(
        !table.contains("stft_conv"),
        "the recipe keeps the STFT basis:\n{table}"
    );
    assert!(table.contains("total (7 matrices)"), "{table}");

    // The container holds what the recipe says; the kept tensor is exact.
    let original = Model::load(MODEL).unwrap();
    let c = CompressedModel::load(&out).unwrap();
    assert_eq!(c.len(), original.len());
    assert!(
        matches!(c.get("stft_conv.weight"), Some(Entry::Plain(t)) if Some(t) == original.get("stft_conv.weight"))
    );
    let Some(Entry::Compressed(lstm)) = c.get("lstm_cell.weight_hh") else {
        panic!()
    };
    assert_eq!(
        (lstm.matrix().structure().kind(), lstm.matrix().encoding()),
        ("csr", "int8")
    );
    let Some(Entry::Compressed(conv)) = c.get("conv1.weight") else {
        panic!()
    };
    assert_eq!(conv.shape(), &[128, 129, 3]);
    assert_eq!(conv.matrix().shape(), (128, 387));
    // Smaller than the original file.
    let (a, b) = (
        std::fs::metadata(MODEL).unwrap().len(),
        std::fs::metadata(&out).unwrap().len(),
    );
    assert!(b * 2 < a, "{b} vs {a}");

    let inspect = ok(&["inspect", out_s]);
    assert!(inspect.contains("csr 50% int8"), "{inspect}");
    assert!(inspect.contains("storage by component"), "{inspect}");
    let plain = ok(&["inspect", MODEL]);
    assert!(
        plain.contains("plain safetensors model, 15 tensors"),
        "{plain}"
    );

    let dense = dir.path().join("dense.safetensors");
    ok(&["decompress", out_s, "-o", dense.to_str().unwrap()]);
    let d = Model::load(&dense).unwrap();
    let want = c.decompress();
    assert_eq!(d.len(), want.len());
    for (name, t) in want.iter() {
        assert!(d.get(name) == Some(t), "{name} differs after decompress");
    }
    for (name, t) in original.iter() {
        let e = d.get(name).unwrap();
        assert_eq!((e.dtype(), e.shape()), (t.dtype(), t.shape()), "{name}");
    }
}

#[test]
fn quick_flags_and_errors() {
    let dir = tempfile::tempdir().unwrap();
    let out = dir.path().join("q.squish");
    let table = ok(&[
        "compress",
        MODEL,
        "--prune",
        "0.5",
        "--int8",
        "-o",
        out.to_str().unwrap(),
        "--quiet",
    ]);
    assert!(table.contains("total (8 matrices)"), "{table}");
    assert!(table.contains("stft_conv.weight"), "{table}");

    // A recipe whose pattern matches nothing: non-zero exit, the line named.
    let bad = dir.path().join("bad.toml");
    std::fs::write(
        &bad,
        "[[rule]]\npattern = \"encoder.*\"\npipeline = [{ method = \"int8\" }]\n",
    )
    .unwrap();
    let o = squish(&[
        "compress",
        MODEL,
        "--recipe",
        bad.to_str().unwrap(),
        "-o",
        out.to_str().unwrap(),
    ]);
    assert!(!o.status.success());
    let err = String::from_utf8_lossy(&o.stderr);
    assert!(err.contains("line 2") && err.contains("encoder.*"), "{err}");
    // No method at all.
    let o = squish(&["compress", MODEL, "-o", out.to_str().unwrap()]);
    assert!(!o.status.success());
    // A damaged container.
    let mut bytes = std::fs::read(&out).unwrap();
    let n = bytes.len();
    bytes[n - 5] ^= 0xff;
    let broken = dir.path().join("broken.squish");
    std::fs::write(&broken, bytes).unwrap();
    let o = squish(&["inspect", broken.to_str().unwrap()]);
    assert!(!o.status.success());
    assert!(
        String::from_utf8_lossy(&o.stderr).contains("checksum"),
        "{}",
        String::from_utf8_lossy(&o.stderr)
    );
}

#[test]
fn sweep_prints_a_table_and_writes_an_svg() {
    let dir = tempfile::tempdir().unwrap();
    let svg = dir.path().join("rd.svg");
    let table = ok(&[
        "sweep",
        MODEL,
        "--layer",
        "lstm_cell.weight_*",
        "--plot",
        svg.to_str().unwrap(),
    ]);
    assert!(
        table.contains("layers: lstm_cell.weight_ih, lstm_cell.weight_hh"),
        "{table}"
    );
    // int8 beats int4 beats binary on error; bits per weight in the other order.
    let row = |s: &str| -> (f64, f64) {
        let l = table.lines().find(|l| l.contains(s)).unwrap();
        let f: Vec<&str> = l.split_whitespace().collect();
        let n = f.len();
        (f[n - 3].parse().unwrap(), f[n - 2].parse().unwrap())
    };
    let (b8, e8) = row("int8 per-row");
    let (b4, e4) = row("int4 per-row");
    let (b1, e1) = row("binary");
    assert!(b8 > b4 && b4 > b1, "{table}");
    assert!(e8 < e4 && e4 < e1, "{table}");
    assert!(
        (b8 - (8.0 + 32.0 / 128.0 + 16.0 * 8.0 / (512.0 * 128.0))).abs() < 1e-3,
        "{b8}"
    );

    let text = std::fs::read_to_string(Path::new(&svg)).unwrap();
    assert!(
        text.starts_with("<svg") && text.trim_end().ends_with("</svg>"),
        "{}",
        &text[..100]
    );
    for family in [
        "integer (per row / per group)",
        "binary / ternary",
        "magnitude pruning (f32 CSR)",
        "pruning + int8",
        "low rank by energy + int8",
        "k-means sharing (per tensor)",
    ] {
        assert!(text.contains(family), "legend lacks {family}");
    }
    assert!(text.matches("<polyline").count() >= 6);
    // A pattern that selects no matrix is an error.
    let o = squish(&[
        "sweep",
        MODEL,
        "--layer",
        "nothing*",
        "--plot",
        svg.to_str().unwrap(),
    ]);
    assert!(!o.status.success());
}

#[test]
fn rank_energy_quick_flag_factors_every_matrix() {
    let dir = tempfile::tempdir().unwrap();
    let out = dir.path().join("lr.squish");
    let out_s = out.to_str().unwrap();
    let table = ok(&[
        "compress",
        MODEL,
        "--rank-energy",
        "0.9",
        "--int8",
        "-o",
        out_s,
        "--quiet",
    ]);
    let row = table
        .lines()
        .find(|l| l.starts_with("lstm_cell.weight_hh"))
        .unwrap_or_else(|| panic!("{table}"));
    assert!(row.contains("low-rank energy 0.9"), "{row}");
    assert!(table.contains("total (8 matrices)"), "{table}");
    let c = CompressedModel::load(&out).unwrap();
    let Some(Entry::Compressed(lstm)) = c.get("lstm_cell.weight_hh") else {
        panic!()
    };
    let squish::matrix::Structure::LowRank(lr) = lstm.matrix().structure() else {
        panic!("{}", lstm.matrix().structure().kind())
    };
    assert_eq!((lr.a().encoding(), lr.b().encoding()), ("int8", "int8"));
    // Energy 0.9 without quantization bounds the error by sqrt(1 − 0.9).
    let table = ok(&[
        "compress",
        MODEL,
        "--rank-energy",
        "0.9",
        "-o",
        out_s,
        "--quiet",
    ]);
    let original = Model::load(MODEL).unwrap();
    let c = CompressedModel::load(&out).unwrap();
    for (name, e) in c.iter() {
        let Entry::Compressed(m) = e else { continue };
        let w = original.get(name).unwrap().matrix().unwrap();
        let d = m.matrix().to_dense();
        let (mut n, mut s) = (0.0f64, 0.0f64);
        for (&a, &b) in w.iter().zip(d.iter()) {
            n += (a as f64 - b as f64).powi(2);
            s += (a as f64).powi(2);
        }
        assert!((n / s).sqrt() <= 0.1f64.sqrt() + 1e-4, "{name}\n{table}");
    }
    // Out of range, or combined with pruning: errors.
    let o = squish(&["compress", MODEL, "--rank-energy", "1.5", "-o", out_s]);
    assert!(!o.status.success());
    assert!(
        String::from_utf8_lossy(&o.stderr).contains("energy"),
        "{}",
        String::from_utf8_lossy(&o.stderr)
    );
    let o = squish(&[
        "compress",
        MODEL,
        "--rank-energy",
        "0.9",
        "--prune",
        "0.5",
        "-o",
        out_s,
    ]);
    assert!(!o.status.success());
}

#[test]
fn plan_writes_a_recipe_that_compress_runs_and_refine_never_loses() {
    let dir = tempfile::tempdir().unwrap();
    let recipe = dir.path().join("planned.toml");
    let r = recipe.to_str().unwrap();
    let measured = |out: &str| -> (f64, f64) {
        let l = out.lines().find(|l| l.starts_with("refined:")).unwrap();
        let nums: Vec<f64> = l
            .split_whitespace()
            .filter_map(|w| w.parse().ok())
            .collect();
        (nums[0], nums[1])
    };
    let out = ok(&[
        "plan", MODEL, "--budget", "4bpw", "--quiet", "--refine", "12", "-o", r,
    ]);
    let (summed, refined) = measured(&out);
    assert!(refined <= summed, "{out}");
    let text = std::fs::read_to_string(&recipe).unwrap();
    assert!(text.contains("[[rule]]"), "{text}");
    // The planned recipe compresses the model within the budget.
    let c = dir.path().join("m.squish");
    ok(&["compress", MODEL, "--recipe", r, "-o", c.to_str().unwrap()]);
    assert!(CompressedModel::load(&c).is_ok());
    // A budget that cannot be met says what can.
    let o = squish(&["plan", MODEL, "--budget", "0.01bpw", "--quiet", "-o", r]);
    assert!(!o.status.success());
    assert!(
        String::from_utf8_lossy(&o.stderr).contains("smallest reachable mix"),
        "{}",
        String::from_utf8_lossy(&o.stderr)
    );
}
