//! `squish compress --recipe R --calibration FILE`: data-aware methods
//! (gptq, sparsegpt, wanda) with calibration sentences; typed errors
//! without them. The all-MiniLM-L6-v2 part needs `SQUISH_MINILM_DIR`
//! (fails in CI without it, skips otherwise).

mod common;
use common::{minilm_dir, squish};

const MODEL: &str = concat!(
    env!("CARGO_MANIFEST_DIR"),
    "/../tests/data/silero_vad_16k.safetensors"
);

#[test]
fn data_aware_recipe_without_calibration_is_refused() {
    let dir = tempfile::tempdir().unwrap();
    let recipe = dir.path().join("r.toml");
    std::fs::write(
        &recipe,
        "[default]\npipeline = [{ method = \"gptq\", bits = 4 }]\n",
    )
    .unwrap();
    let out = dir.path().join("o.squish");
    let o = squish(&[
        "compress",
        MODEL,
        "--recipe",
        recipe.to_str().unwrap(),
        "-o",
        out.to_str().unwrap(),
    ]);
    assert!(!o.status.success());
    let err = String::from_utf8_lossy(&o.stderr);
    assert!(
        err.contains("needs calibration data") && err.contains("[default]"),
        "{err}"
    );
    assert!(!out.exists());
    // Sentences for a model that is not a BERT directory: said so.
    let sentences = dir.path().join("s.txt");
    std::fs::write(&sentences, "One sentence.\nAnother one.\n").unwrap();
    let o = squish(&[
        "compress",
        MODEL,
        "--recipe",
        recipe.to_str().unwrap(),
        "--calibration",
        sentences.to_str().unwrap(),
        "-o",
        out.to_str().unwrap(),
    ]);
    assert!(!o.status.success());
    let err = String::from_utf8_lossy(&o.stderr);
    assert!(err.contains("BERT-family model directory"), "{err}");
    // --calibration needs --recipe.
    let o = squish(&[
        "compress",
        MODEL,
        "--int8",
        "--calibration",
        sentences.to_str().unwrap(),
        "-o",
        out.to_str().unwrap(),
    ]);
    assert!(!o.status.success());
}

#[test]
fn minilm_with_calibration_sentences() {
    let Some(model) = minilm_dir() else { return };
    let dir = tempfile::tempdir().unwrap();
    let recipe = dir.path().join("r.toml");
    std::fs::write(
        &recipe,
        r#"
[calibration]
samples = 16
seed = 1

[[rule]]
pattern = "encoder.layer.*.attention.self.*"
pipeline = [{ method = "gptq", bits = 4, granularity = "per-group", group_size = 128 }]

[[rule]]
pattern = "encoder.layer.*.intermediate.dense.weight"
pipeline = [{ method = "sparsegpt", n = 2, m = 4 }]

[[rule]]
pattern = "encoder.layer.*.output.dense.weight"
pipeline = [{ method = "wanda", sparsity = 0.5 }]
"#,
    )
    .unwrap();
    let text = include_str!("../../data/english/devils_dictionary.txt");
    let sentences = dir.path().join("s.txt");
    std::fs::write(
        &sentences,
        text.lines().take(200).collect::<Vec<_>>().join("\n"),
    )
    .unwrap();
    let out = dir.path().join("o.squish");
    let o = squish(&[
        "compress",
        model.to_str().unwrap(),
        "--recipe",
        recipe.to_str().unwrap(),
        "--calibration",
        sentences.to_str().unwrap(),
        "-o",
        out.to_str().unwrap(),
        "--quiet",
    ]);
    let stdout = String::from_utf8_lossy(&o.stdout);
    assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
    for method in ["gptq int4 sym group-128", "sparsegpt 2:4", "wanda 50%"] {
        assert!(stdout.contains(method), "{method}:\n{stdout}");
    }
    assert!(out.exists());
}
