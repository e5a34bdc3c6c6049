//! Regression tests for the command-line defects of issue #20: outputs that
//! overwrite inputs or foreign files, misleading sizes and ratios, layer
//! selection for the quick flags, containers given as models, table layout
//! and plot permissions. Each one failed before its fix.

mod common;
use common::*;
use std::path::{Path, PathBuf};

use squish::io::{Dtype, Model, Tensor};

const MODEL: &str = concat!(
    env!("CARGO_MANIFEST_DIR"),
    "/../tests/data/silero_vad_16k.safetensors"
);

fn s(p: &Path) -> &str {
    p.to_str().unwrap()
}

fn copy_model(dir: &Path) -> PathBuf {
    let m = dir.join("m.safetensors");
    std::fs::copy(MODEL, &m).unwrap();
    m
}

#[test]
fn output_resolving_to_the_input_is_refused() {
    let dir = tempfile::tempdir().unwrap();
    let m = copy_model(dir.path());
    let original = std::fs::read(&m).unwrap();
    let link = dir.path().join("link.safetensors");
    let hard = dir.path().join("hard.safetensors");
    #[cfg(unix)]
    std::os::unix::fs::symlink(&m, &link).unwrap();
    #[cfg(not(unix))]
    std::fs::copy(&m, &link).unwrap();
    std::fs::hard_link(&m, &hard).unwrap();
    for out in [&m, &link, &hard] {
        let err = fails(&["compress", s(&m), "--int8", "-o", s(out), "--quiet"]);
        assert!(
            err.contains("is the input") && err.contains("--force"),
            "{err}"
        );
        assert_eq!(
            std::fs::read(&m).unwrap(),
            original,
            "{out:?} clobbered the model"
        );
    }
    // decompress c -o c likewise.
    let c = dir.path().join("c.squish");
    ok(&["compress", s(&m), "--int8", "-o", s(&c), "--quiet"]);
    let container = std::fs::read(&c).unwrap();
    let err = fails(&["decompress", s(&c), "-o", s(&c)]);
    assert!(err.contains("is the input"), "{err}");
    assert_eq!(std::fs::read(&c).unwrap(), container);
    // An explicit --force replaces the input, as asked.
    ok(&[
        "compress",
        s(&m),
        "--int8",
        "-o",
        s(&m),
        "--quiet",
        "--force",
    ]);
    assert_ne!(std::fs::read(&m).unwrap(), original);
}

#[test]
fn existing_files_that_squish_did_not_write_are_kept() {
    let dir = tempfile::tempdir().unwrap();
    let m = copy_model(dir.path());
    let notes = dir.path().join("notes.txt");
    std::fs::write(&notes, "my notes").unwrap();
    for args in [
        vec!["compress", s(&m), "--int8", "-o", s(&notes), "--quiet"],
        vec![
            "sweep",
            s(&m),
            "--layer",
            "final_conv*",
            "--plot",
            s(&notes),
        ],
    ] {
        let err = fails(&args);
        assert!(err.contains("exists") && err.contains("--force"), "{err}");
        assert_eq!(std::fs::read_to_string(&notes).unwrap(), "my notes");
    }
    // Our own outputs are replaced on a rerun without --force.
    let c = dir.path().join("c.squish");
    let d = dir.path().join("d.safetensors");
    for _ in 0..2 {
        ok(&["compress", s(&m), "--int4", "-o", s(&c), "--quiet"]);
        ok(&["decompress", s(&c), "-o", s(&d)]);
    }
    // A model that is not ours is not replaced by decompress.
    let err = fails(&["decompress", s(&c), "-o", s(&m)]);
    assert!(err.contains("exists"), "{err}");
    ok(&["decompress", s(&c), "-o", s(&notes), "--force"]);
}

#[test]
fn a_container_given_to_compress_is_refused() {
    let dir = tempfile::tempdir().unwrap();
    let c = dir.path().join("c.squish");
    ok(&["compress", MODEL, "--int8", "-o", s(&c), "--quiet"]);
    let err = fails(&[
        "compress",
        s(&c),
        "--int8",
        "-o",
        s(&dir.path().join("again.squish")),
    ]);
    assert!(err.contains("is a squish container"), "{err}");
    let err = fails(&["sweep", s(&c), "--plot", s(&dir.path().join("p.svg"))]);
    assert!(err.contains("is a squish container"), "{err}");
}

/// `plan` measured a container's tensors as plain weights (a plan of the
/// already-compressed model's leftovers, exit 0): it refuses it like
/// `compress` and `sweep`, and writes no recipe.
#[test]
fn a_container_given_to_plan_is_refused() {
    let dir = tempfile::tempdir().unwrap();
    let c = dir.path().join("c.squish");
    ok(&["compress", MODEL, "--int8", "-o", s(&c), "--quiet"]);
    let out = dir.path().join("planned.toml");
    let err = fails(&["plan", s(&c), "--budget", "4bpw", "--quiet", "-o", s(&out)]);
    assert!(err.contains("is a squish container"), "{err}");
    assert!(!out.exists(), "a recipe was written for a container");
}

/// The table part of `text` (up to the first blank or prose line) has its
/// right-aligned column `title` ending in the same place on every row, the
/// total included.
fn assert_aligned(text: &str, title: &str) {
    let lines: Vec<Vec<char>> = text
        .lines()
        .take_while(|l| !l.is_empty() && !l.contains(": "))
        .filter(|l| !l.starts_with("---"))
        .map(|l| l.chars().collect())
        .collect();
    let header: String = lines[0].iter().collect();
    let end = header[..header.find(title).unwrap()].chars().count() + title.chars().count();
    for l in &lines {
        let row: String = l.iter().collect();
        assert!(
            l.len() >= end && l[end - 1] != ' ' && l.get(end).is_none_or(|c| *c == ' '),
            "column `{title}` misaligned in {row:?}:\n{text}"
        );
    }
}

#[test]
fn f16_sizes_are_the_files_own_bytes_and_ratios_are_labelled() {
    // bf16 is counted like f16: two bytes a weight in the file.
    for (dtype, label) in [(Dtype::F16, "F16"), (Dtype::BF16, "BF16")] {
        half_sizes_are_the_files_own_bytes(dtype, label);
    }
}

fn half_sizes_are_the_files_own_bytes(dtype: Dtype, label: &str) {
    let dir = tempfile::tempdir().unwrap();
    let p = dir.path().join("half.safetensors");
    let mut m = Model::new();
    let w: Vec<f32> = (0..64 * 64)
        .map(|i| ((i % 37) as f32 - 18.0) / 32.0)
        .collect();
    m.insert(
        "a.very.long.layer.name.for.the.table.weight",
        Tensor::float(dtype, vec![64, 64], w).unwrap(),
    )
    .unwrap();
    m.insert(
        "a.bias",
        Tensor::float(dtype, vec![64], vec![0.5; 64]).unwrap(),
    )
    .unwrap();
    m.save(&p).unwrap();
    let out = dir.path().join("half.squish");
    let table = ok(&["compress", s(&p), "--int8", "-o", s(&out), "--quiet"]);
    let row = table
        .lines()
        .find(|l| l.starts_with("a.very.long"))
        .unwrap_or_else(|| panic!("{table}"));
    // 64·64 f16 weights are 8 KiB in the file; int8 per row is 4096 + 256 B.
    assert!(row.contains(label), "{row}");
    assert!(row.contains("8.0 KiB") && row.contains("4.3 KiB"), "{row}");
    assert!(row.contains("1.88x"), "{row}");
    assert!(!table.contains("3.76x smaller than the file"), "{table}");
    // Both ratios, labelled: the matrices and the whole files.
    let input = std::fs::metadata(&p).unwrap().len() as f64;
    let output = std::fs::metadata(&out).unwrap().len() as f64;
    assert!(table.contains("smaller than the file"), "{table}");
    assert!(table.contains("than f32"), "{table}");
    let files = table.lines().find(|l| l.starts_with("files:")).unwrap();
    assert!(
        files.contains(&format!("{:.2}x smaller", input / output)),
        "{files} vs {input} / {output}"
    );
    for col in ["before", "after", "ratio", "SQNR dB"] {
        assert_aligned(&table, col);
    }
    let inspect = ok(&["inspect", s(&out)]);
    assert_aligned(&inspect, "bytes");
    assert!(inspect.contains("1.88x smaller; 3.75x vs f32"), "{inspect}");
}

/// A low-rank + int8 layer is described as such (not "factored"), and a
/// long method chain and layer name keep the table's columns aligned.
#[test]
fn low_rank_int8_layers_say_so_and_long_methods_fit() {
    let dir = tempfile::tempdir().unwrap();
    let p = dir.path().join("lr.safetensors");
    let mut m = Model::new();
    let w: Vec<f32> = (0..96 * 80)
        .map(|i| (((i / 80) * (i % 80)) % 29) as f32 / 29.0 - 0.5)
        .collect();
    m.insert(
        "encoder.layer.0.attention.output.dense.weight",
        Tensor::float(Dtype::F32, vec![96, 80], w).unwrap(),
    )
    .unwrap();
    m.save(&p).unwrap();
    // A long chain: percentile-clipped, group-wise int8 of both factors.
    let recipe = dir.path().join("r.toml");
    std::fs::write(
        &recipe,
        r#"[default]
pipeline = [
  { method = "lowrank", energy = 0.9 },
  { method = "int8", granularity = "per-group", group_size = 16, calibration = { percentile = 99.9 } },
]
"#,
    )
    .unwrap();
    let out = dir.path().join("lr.squish");
    let table = ok(&[
        "compress",
        s(&p),
        "--recipe",
        s(&recipe),
        "-o",
        s(&out),
        "--quiet",
    ]);
    let row = table
        .lines()
        .find(|l| l.starts_with("encoder.layer.0"))
        .unwrap_or_else(|| panic!("{table}"));
    assert!(
        row.contains("low-rank energy 0.9 faer → int8 sym group-16"),
        "{row}"
    );
    for col in ["before", "after", "ratio", "SQNR dB"] {
        assert_aligned(&table, col);
    }
    let inspect = ok(&["inspect", s(&out)]);
    assert!(inspect.contains("factors dense int8"), "{inspect}");
    assert!(!inspect.contains("factored"), "{inspect}");
    assert_aligned(&inspect, "bytes");
    // The library's report of the same pipeline.
    let w = ndarray::Array2::from_shape_fn((96, 80), |(i, j)| ((i * j) % 29) as f32 / 29.0 - 0.5);
    use squish::prelude::*;
    let r = Pipeline::new()
        .then(LowRank::params(RankSelection::Energy(0.9)).check().unwrap())
        .quantize(IntQuantizer::params(8).check().unwrap())
        .run(w.view())
        .unwrap();
    assert_eq!(r.report.stages.last().unwrap().encoding, "int8 A·B");
}

#[test]
fn sizes_of_a_few_mib_print_in_mib() {
    let dir = tempfile::tempdir().unwrap();
    let p = dir.path().join("big.safetensors");
    let mut m = Model::new();
    let w: Vec<f32> = (0..1200 * 1100)
        .map(|i| ((i % 97) as f32 - 48.0) / 64.0)
        .collect();
    m.insert("w", Tensor::float(Dtype::F32, vec![1200, 1100], w).unwrap())
        .unwrap();
    m.save(&p).unwrap();
    let table = ok(&[
        "compress",
        s(&p),
        "--int8",
        "-o",
        s(&dir.path().join("b.squish")),
        "--quiet",
    ]);
    // 5.28e6 bytes: 5.0 MiB, not "5156.3 KiB".
    assert!(table.contains("5.0 MiB"), "{table}");
    assert!(!table.contains("5156"), "{table}");
    assert_aligned(&table, "after");
}

#[test]
fn quick_flags_take_include_and_exclude_patterns_and_kmeans() {
    let dir = tempfile::tempdir().unwrap();
    let out = dir.path().join("q.squish");
    let o = s(&out);
    let table = ok(&[
        "compress",
        MODEL,
        "--int8",
        "--exclude",
        "stft*",
        "--exclude",
        "conv*",
        "-o",
        o,
        "--quiet",
        "--force",
    ]);
    assert!(table.contains("total (3 matrices)"), "{table}");
    assert!(
        !table.contains("stft_conv") && !table.contains("conv1"),
        "{table}"
    );
    let table = ok(&[
        "compress",
        MODEL,
        "--int4",
        "--include",
        "lstm*",
        "--exclude",
        "*weight_hh",
        "-o",
        o,
        "--quiet",
    ]);
    assert!(table.contains("total (1 matrices)"), "{table}");
    assert!(table.contains("lstm_cell.weight_ih"), "{table}");
    let err = fails(&[
        "compress",
        MODEL,
        "--int8",
        "--exclude",
        "nothing*",
        "-o",
        o,
    ]);
    assert!(
        err.contains("--exclude") && err.contains("nothing*"),
        "{err}"
    );
    let table = ok(&[
        "compress",
        MODEL,
        "--kmeans",
        "16",
        "--include",
        "final_conv*",
        "-o",
        o,
        "--quiet",
    ]);
    let row = table
        .lines()
        .find(|l| l.starts_with("final_conv.weight"))
        .unwrap_or_else(|| panic!("{table}"));
    assert!(row.contains("k-means"), "{row}");
}

/// Outputs get the user's usual permissions: those of a file `touch`
/// creates under the same umask (`rw-rw-rw-` less it), under two umasks
/// (a fixed `rw-r--r--` fails the second), for the plot, a container and a
/// decompressed model; a replaced output keeps its own.
#[cfg(unix)]
#[test]
fn outputs_get_the_permissions_of_the_users_new_files() {
    use std::os::unix::fs::PermissionsExt;
    let mode = |p: &Path| std::fs::metadata(p).unwrap().permissions().mode() & 0o777;
    for umask in ["022", "007"] {
        let dir = tempfile::tempdir().unwrap();
        let (svg, c, d, plain) = (
            dir.path().join("plot.svg"),
            dir.path().join("m.squish"),
            dir.path().join("d.safetensors"),
            dir.path().join("plain"),
        );
        // `sh` sets the umask, then runs the command in its place.
        let run = |args: &[&str]| {
            let out = std::process::Command::new("sh")
                .args(["-c", &format!("umask {umask} && exec \"$0\" \"$@\"")])
                .arg(env!("CARGO_BIN_EXE_squish"))
                .args(args)
                .output()
                .unwrap();
            assert!(
                out.status.success(),
                "{args:?}: {}",
                String::from_utf8_lossy(&out.stderr)
            );
        };
        run(&["sweep", MODEL, "--layer", "final_conv*", "--plot", s(&svg)]);
        run(&["compress", MODEL, "--int8", "-o", s(&c), "--quiet"]);
        run(&["decompress", s(&c), "-o", s(&d)]);
        let out = std::process::Command::new("sh")
            .args(["-c", &format!("umask {umask} && touch \"$0\"")])
            .arg(&plain)
            .output()
            .unwrap();
        assert!(out.status.success());
        let want = mode(&plain);
        assert_eq!(want, 0o666 & !u32::from_str_radix(umask, 8).unwrap());
        for p in [&svg, &c, &d] {
            assert_eq!(mode(p), want, "{} under umask {umask}", p.display());
        }
        // A replaced plot keeps the mode its owner gave it.
        std::fs::set_permissions(&svg, std::fs::Permissions::from_mode(0o600)).unwrap();
        run(&["sweep", MODEL, "--layer", "final_conv*", "--plot", s(&svg)]);
        assert_eq!(mode(&svg), 0o600);
    }
}

/// A model with a clean layer `enc.ok.weight` and a layer `enc.bad.weight`
/// holding one NaN, saved in `dir`.
fn nan_model(dir: &Path) -> PathBuf {
    let p = dir.join("nan.safetensors");
    let mut m = Model::new();
    let mut w = vec![0.25f32; 8 * 8];
    w[13] = f32::NAN;
    m.insert(
        "enc.ok.weight",
        Tensor::float(Dtype::F32, vec![8, 8], vec![0.5; 64]).unwrap(),
    )
    .unwrap();
    m.insert(
        "enc.bad.weight",
        Tensor::float(Dtype::F32, vec![8, 8], w).unwrap(),
    )
    .unwrap();
    m.save(&p).unwrap();
    p
}

/// Issue #20: an error raised while a layer is being compressed names the
/// layer and the pass, in `sweep` as in `compress`.
#[test]
fn sweep_errors_name_the_layer_and_the_pass() {
    let dir = tempfile::tempdir().unwrap();
    let p = nan_model(dir.path());
    let err = fails(&["sweep", s(&p), "--plot", s(&dir.path().join("p.svg"))]);
    assert!(err.contains("enc.bad.weight"), "{err}");
    assert!(err.contains("NaN"), "{err}");
    assert!(
        err.contains("pass `") || err.contains("checking the weights"),
        "{err}"
    );
    assert!(!dir.path().join("p.svg").exists());
}

/// The same class in `compress` (the streamed path every quick flag takes):
/// a NaN weight failed with "weight matrix holds … NaN" and no layer name.
#[test]
fn compress_errors_name_the_layer_and_the_stage() {
    let dir = tempfile::tempdir().unwrap();
    let p = nan_model(dir.path());
    let out = dir.path().join("out.squish");
    let err = fails(&["compress", s(&p), "--int8", "-o", s(&out)]);
    assert!(err.contains("enc.bad.weight"), "{err}");
    assert!(err.contains("NaN"), "{err}");
    assert!(err.contains("checking the weights before"), "{err}");
    assert!(!out.exists());
}

/// The same class of defect in `squish plan`: its recipe and plot went
/// through a plain atomic write, so `-o MODEL` replaced the model.
#[test]
fn plan_outputs_never_replace_the_model_or_a_foreign_file() {
    let dir = tempfile::tempdir().unwrap();
    let m = copy_model(dir.path());
    let original = std::fs::read(&m).unwrap();
    let plan = |out: &Path, extra: &[&str]| {
        let mut a = vec!["plan", s(&m), "--budget", "4bpw", "--quiet", "-o", s(out)];
        a.extend(extra);
        a.into_iter().map(String::from).collect::<Vec<_>>()
    };
    let args = plan(&m, &[]);
    let err = fails(&args.iter().map(String::as_str).collect::<Vec<_>>());
    assert!(err.contains("is the input"), "{err}");
    assert_eq!(std::fs::read(&m).unwrap(), original);
    // A foreign file is kept, for the recipe and for the plot.
    let notes = dir.path().join("notes.txt");
    std::fs::write(&notes, "mine").unwrap();
    let r = dir.path().join("planned.toml");
    for args in [plan(&notes, &[]), plan(&r, &["--svg", s(&notes)])] {
        let err = fails(&args.iter().map(String::as_str).collect::<Vec<_>>());
        assert!(err.contains("--force"), "{err}");
        assert_eq!(std::fs::read_to_string(&notes).unwrap(), "mine");
    }
    // Its own outputs are replaced on a rerun.
    let svg = dir.path().join("s.svg");
    for _ in 0..2 {
        let args = plan(&r, &["--svg", s(&svg)]);
        ok(&args.iter().map(String::as_str).collect::<Vec<_>>());
    }
    assert!(std::fs::read_to_string(&r)
        .unwrap()
        .starts_with(squish::io::PLAN_MARKER));
}

/// A model without a weight matrix given to `plan` or `sweep` without
/// `--layer` was blamed on the option the user never passed ("invalid
/// parameter `--layer` = *"): the error names the model instead.
#[test]
fn a_model_without_matrices_is_named_not_the_layer_option() {
    let dir = tempfile::tempdir().unwrap();
    let p = dir.path().join("biases.safetensors");
    let mut m = Model::new();
    m.insert(
        "only.bias",
        Tensor::float(Dtype::F32, vec![8], vec![0.5; 8]).unwrap(),
    )
    .unwrap();
    m.save(&p).unwrap();
    let out = dir.path().join("planned.toml");
    let svg = dir.path().join("p.svg");
    for args in [
        vec!["plan", s(&p), "--budget", "4bpw", "--quiet", "-o", s(&out)],
        vec!["sweep", s(&p), "--plot", s(&svg)],
    ] {
        let err = fails(&args);
        assert!(!err.contains("--layer"), "{err}");
        assert!(err.contains("holds no weight matrix"), "{err}");
    }
    // With --layer the option is still the one named.
    let err = fails(&["sweep", s(&p), "--layer", "x.*", "--plot", s(&svg)]);
    assert!(err.contains("--layer"), "{err}");
}

/// `--memory-budget 0` was reported as the library's parameter
/// (`budget_bytes` = 0), and `decompress` of a plain model said "not a squish
/// container ... use `Model::load`" without naming the file: each error now
/// names what the user typed.
#[test]
fn errors_name_the_flag_and_the_file_the_user_gave() {
    let dir = tempfile::tempdir().unwrap();
    let out = dir.path().join("c.squish");
    let err = fails(&[
        "compress",
        MODEL,
        "--int8",
        "--memory-budget",
        "0",
        "-o",
        s(&out),
    ]);
    assert!(err.contains("--memory-budget"), "{err}");
    assert!(!err.contains("budget_bytes"), "{err}");
    let x = dir.path().join("x.safetensors");
    let err = fails(&["decompress", MODEL, "-o", s(&x)]);
    assert!(
        err.contains(MODEL) && err.contains("squish compress"),
        "{err}"
    );
    assert!(!err.contains("Model::load"), "{err}");
    assert!(!x.exists());
}
