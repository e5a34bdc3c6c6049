//! `squish compress --recipe R --calibration FILE`: data-aware methods
//! (gptq, sparsegpt, wanda, awq) with calibration sentences; typed errors
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

/// Runs `squish compress MODEL --recipe RECIPE --calibration SENTENCES -o
/// DIR/o.squish --quiet`, with the first `sentences` lines of the shipped
/// corpus; returns the output path and stdout (after checking success).
fn compress_calibrated(
    dir: &std::path::Path,
    model: &std::path::Path,
    recipe_text: &str,
    sentences: usize,
) -> (std::path::PathBuf, String) {
    let recipe = dir.join("r.toml");
    std::fs::write(&recipe, recipe_text).unwrap();
    let text = include_str!("../../data/english/devils_dictionary.txt");
    let lines = dir.join("s.txt");
    std::fs::write(
        &lines,
        text.lines().take(sentences).collect::<Vec<_>>().join("\n"),
    )
    .unwrap();
    let out = dir.join("o.squish");
    let o = squish(&[
        "compress",
        model.to_str().unwrap(),
        "--recipe",
        recipe.to_str().unwrap(),
        "--calibration",
        lines.to_str().unwrap(),
        "-o",
        out.to_str().unwrap(),
        "--quiet",
    ]);
    assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
    (out, String::from_utf8_lossy(&o.stdout).into_owned())
}

#[test]
fn minilm_with_calibration_sentences() {
    let Some(model) = minilm_dir() else { return };
    let dir = tempfile::tempdir().unwrap();
    let (out, stdout) = compress_calibrated(
        dir.path(),
        &model,
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
        200,
    );
    for method in ["gptq int4 sym group-128", "sparsegpt 2:4", "wanda 50%"] {
        assert!(stdout.contains(method), "{method}:\n{stdout}");
    }
    assert!(out.exists());
}

#[test]
fn minilm_awq_recipe_then_embed_matches_the_library() {
    use squish::io::{CompressedModel, Entry};
    use squish::nn::{Activations, SentenceEncoder};
    use squish::parallel::Sequential;
    let Some(model) = minilm_dir() else { return };
    let dir = tempfile::tempdir().unwrap();
    let (out, stdout) = compress_calibrated(
        dir.path(),
        &model,
        r#"
[calibration]
samples = 16
seed = 1
max_tokens = 64

[[rule]]
pattern = "encoder.layer.0.attention.*.weight"
pipeline = [{ method = "awq", bits = 4, granularity = "per-group", group_size = 128, gptq = true }]

[[rule]]
pattern = "encoder.layer.[01].*.dense.weight"
pipeline = [{ method = "awq", bits = 4, granularity = "per-group", group_size = 128 }]
"#,
        64,
    );
    assert!(stdout.contains("awq + gptq int4 sym group-128"), "{stdout}");
    assert!(stdout.contains("awq int4 sym group-128"), "{stdout}");
    // The scales are stored next to the matrices.
    let c = CompressedModel::load(&out).unwrap();
    let scales = c
        .iter()
        .filter(|(n, e)| n.ends_with(".input_scale") && matches!(e, Entry::Plain(_)))
        .count();
    assert!(scales >= 4, "{scales} input scales");
    // `squish embed` on the container equals the library loading it.
    let probe = [
        "Patience is a minor form of despair.",
        "A bore is a person who talks when you wish him to listen.",
        "The cat sat on the mat.",
    ];
    let mut args = vec![
        "embed",
        "--model",
        model.to_str().unwrap(),
        "--container",
        out.to_str().unwrap(),
    ];
    args.extend(probe);
    let o = squish(&args);
    assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
    let cli: Vec<Vec<f32>> = String::from_utf8_lossy(&o.stdout)
        .lines()
        .map(|l| l.split(' ').map(|v| v.parse().unwrap()).collect())
        .collect();
    let lib = SentenceEncoder::load_container(
        &out,
        model.join("config.json"),
        model.join("tokenizer.json"),
        Activations::Float,
    )
    .unwrap()
    .embed(&probe, &Sequential)
    .unwrap();
    let dense = SentenceEncoder::load_dir(&model)
        .unwrap()
        .embed(&probe, &Sequential)
        .unwrap();
    assert_eq!(cli.len(), probe.len());
    for (i, row) in cli.iter().enumerate() {
        assert_eq!(row.len(), lib.ncols());
        for (j, v) in row.iter().enumerate() {
            assert!(
                (v - lib[[i, j]]).abs() <= 1e-6,
                "{i},{j}: {v} vs {}",
                lib[[i, j]]
            );
        }
        let cos = lib.row(i).dot(&dense.row(i));
        assert!(cos > 0.95, "sentence {i}: cosine to the dense model {cos}");
    }
}
