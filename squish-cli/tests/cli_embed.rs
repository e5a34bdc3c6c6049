//! `squish embed` and `squish serve-bench` on all-MiniLM-L6-v2
//! (`SQUISH_MINILM_DIR`; fails in CI without it, skips otherwise).

mod common;
use common::{minilm_dir, squish_stdin};

#[test]
fn embed_prints_embeddings_and_similarities() {
    let Some(dir) = minilm_dir() else { return };
    let d = dir.to_str().unwrap();
    let out = squish_stdin(
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

    let out = squish_stdin(
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
    let Some(dir) = minilm_dir() else { return };
    let d = dir.to_str().unwrap();
    let out = squish_stdin(&["embed", "--model", d], Some(b"fine\n\xff\xfe\n"));
    assert!(!out.status.success());
    assert!(String::from_utf8_lossy(&out.stderr).contains("UTF-8"));
    let out = squish_stdin(&["embed", "--model", d], Some(b"\n  \n"));
    assert!(!out.status.success());
    assert!(String::from_utf8_lossy(&out.stderr).contains("batch is empty"));
    let out = squish_stdin(
        &["embed", "--model", "/nonexistent-model-dir", "hello"],
        None,
    );
    assert!(!out.status.success());
    assert!(String::from_utf8_lossy(&out.stderr).contains("tokenizer"));
}

#[test]
fn serve_bench_reports_throughput_and_fidelity() {
    let Some(dir) = minilm_dir() else { return };
    let out = squish_stdin(
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
