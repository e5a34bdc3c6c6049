//! `squish embed` and `squish serve-bench` on all-MiniLM-L6-v2
//! (`SQUISH_MINILM_DIR`; fails in CI without it, skips otherwise).

use std::io::Write;
use std::path::PathBuf;
use std::process::{Command, Output, Stdio};

fn model_dir() -> Option<PathBuf> {
    match std::env::var_os("SQUISH_MINILM_DIR") {
        Some(d) if PathBuf::from(&d).join("model.safetensors").exists() => Some(d.into()),
        _ if std::env::var_os("CI").is_some() => {
            panic!("SQUISH_MINILM_DIR is not set to the all-MiniLM-L6-v2 model directory (.ci/minilm.sh)")
        }
        _ => {
            eprintln!("skipped: set SQUISH_MINILM_DIR to run this test");
            None
        }
    }
}

fn squish(args: &[&str], stdin: Option<&[u8]>) -> Output {
    let mut child = Command::new(env!("CARGO_BIN_EXE_squish"))
        .args(["--threads", "2"])
        .args(args)
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("the binary runs");
    let mut input = child.stdin.take().unwrap();
    input.write_all(stdin.unwrap_or(b"")).unwrap();
    drop(input);
    child.wait_with_output().unwrap()
}

#[test]
fn embed_prints_embeddings_and_similarities() {
    let Some(dir) = model_dir() else { return };
    let d = dir.to_str().unwrap();
    let out = squish(
        &[
            "embed",
            "--model",
            d,
            "A cat sat on the mat.",
            "Bonds fell sharply.",
        ],
        None,
    );
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let text = String::from_utf8(out.stdout).unwrap();
    let rows: Vec<Vec<f64>> = text
        .lines()
        .map(|l| l.split(' ').map(|v| v.parse().unwrap()).collect())
        .collect();
    assert_eq!(rows.len(), 2);
    assert!(rows.iter().all(|r| r.len() == 384));
    let norm: f64 = rows[0].iter().map(|v| v * v).sum::<f64>().sqrt();
    assert!((norm - 1.0).abs() < 1e-4, "unit norm, got {norm}");

    let out = squish(
        &["embed", "--model", d, "--similarity", "--file", "-"],
        Some(b"A cat sat.\nA cat sat.\n"),
    );
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let text = String::from_utf8(out.stdout).unwrap();
    assert!(text.contains(" 1.000"), "{text}");
}

#[test]
fn embed_rejects_bad_input_with_clear_messages() {
    let Some(dir) = model_dir() else { return };
    let d = dir.to_str().unwrap();
    let out = squish(&["embed", "--model", d], Some(b"fine\n\xff\xfe\n"));
    assert!(!out.status.success());
    assert!(String::from_utf8_lossy(&out.stderr).contains("UTF-8"));
    let out = squish(&["embed", "--model", d], Some(b"\n  \n"));
    assert!(!out.status.success());
    assert!(String::from_utf8_lossy(&out.stderr).contains("batch is empty"));
    let out = squish(
        &["embed", "--model", "/nonexistent-model-dir", "hello"],
        None,
    );
    assert!(!out.status.success());
    assert!(String::from_utf8_lossy(&out.stderr).contains("tokenizer"));
}

#[test]
fn serve_bench_reports_throughput_and_fidelity() {
    let Some(dir) = model_dir() else { return };
    let out = squish(
        &[
            "serve-bench",
            "--sentences",
            concat!(
                env!("CARGO_MANIFEST_DIR"),
                "/../data/english/devils_dictionary.txt"
            ),
            "--model",
            dir.to_str().unwrap(),
            "--count",
            "16",
            "--passes",
            "1",
            "--batch-sizes",
            "1,8",
            "--forms",
            "int8-dynamic",
            "--fidelity",
        ],
        None,
    );
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let text = String::from_utf8(out.stdout).unwrap();
    assert!(
        text.contains("int8-dynamic") && text.contains("sent/s") && text.contains("recall@10"),
        "{text}"
    );
}
