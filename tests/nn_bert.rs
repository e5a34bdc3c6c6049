//! all-MiniLM-L6-v2 served by squish against sentence-transformers' own
//! embeddings (tests/data/minilm_reference.json, made by
//! scripts/minilm_reference.py), compressed against decoded, and typed errors
//! for bad input.
//!
//! The model is found through `SQUISH_MINILM_DIR`; without it these tests
//! fail when `CI` is set and skip (saying why) otherwise.

use std::path::PathBuf;

use ndarray::Array2;
use serde_json::Value;
use squish::io::{Model, Tensor};
use squish::nn::{
    sentences_from_bytes, Activations, BertConfig, BertEncoder, NnError, SentenceEncoder,
    SentenceTokenizer, Weights,
};
use squish::parallel::{Sequential, ThreadPool};
use squish::recipe::{compress_model, Recipe};
use squish::SquishError;

fn model_dir() -> Option<PathBuf> {
    match std::env::var_os("SQUISH_MINILM_DIR") {
        Some(d) if PathBuf::from(&d).join("model.safetensors").exists() => Some(d.into()),
        _ if std::env::var_os("CI").is_some() => {
            panic!("SQUISH_MINILM_DIR is not set to the all-MiniLM-L6-v2 model directory (CI must install it: .ci/minilm.sh)")
        }
        _ => {
            eprintln!("skipped: set SQUISH_MINILM_DIR to the all-MiniLM-L6-v2 model directory to run this test");
            None
        }
    }
}

fn fixture() -> Vec<(String, Vec<u32>, Vec<f32>)> {
    let v: Value = serde_json::from_str(include_str!("data/minilm_reference.json")).unwrap();
    v["sentences"]
        .as_array()
        .unwrap()
        .iter()
        .map(|s| {
            let ids = s["ids"].as_array().unwrap().iter().map(|i| i.as_u64().unwrap() as u32).collect();
            let e = s["embedding"].as_array().unwrap().iter().map(|x| x.as_f64().unwrap() as f32).collect();
            (s["text"].as_str().unwrap().to_string(), ids, e)
        })
        .collect()
}

#[test]
fn tokenizer_and_embeddings_match_sentence_transformers() {
    let Some(dir) = model_dir() else { return };
    let fx = fixture();
    let enc = SentenceEncoder::load_dir(&dir).unwrap();
    let texts: Vec<&str> = fx.iter().map(|f| f.0.as_str()).collect();
    let ids = enc.tokenizer().encode_all(&texts, &Sequential).unwrap();
    for (got, f) in ids.iter().zip(&fx) {
        assert_eq!(got, &f.1, "token ids of {:?}", f.0);
    }
    assert!(ids.iter().any(|i| i.len() == 256), "the fixture checks truncation at 256");
    let pool = ThreadPool::new(2).unwrap();
    for batch in [1, 4, 32] {
        let e = enc.clone().with_batch_size(batch).unwrap().embed(&texts, &pool).unwrap();
        let mut worst = 0.0f32;
        for (row, f) in e.rows().into_iter().zip(&fx) {
            for (a, b) in row.iter().zip(&f.2) {
                worst = worst.max((a - b).abs());
            }
        }
        assert!(worst <= 1e-4, "batch {batch}: max abs difference {worst}");
    }
}

#[test]
fn embeddings_are_bit_identical_across_thread_counts() {
    let Some(dir) = model_dir() else { return };
    let enc = SentenceEncoder::load_dir(&dir).unwrap();
    let corpus = include_str!("../data/english/devils_dictionary.txt");
    let sents: Vec<&str> = corpus.lines().take(40).collect();
    let base = enc.embed(&sents, &Sequential).unwrap();
    for t in [2, 3] {
        assert_eq!(enc.embed(&sents, &ThreadPool::new(t).unwrap()).unwrap(), base, "{t} threads");
    }
}

fn max_abs(a: &Array2<f32>, b: &Array2<f32>) -> f32 {
    a.iter().zip(b.iter()).map(|(x, y)| (x - y).abs()).fold(0.0, f32::max)
}

#[test]
fn compressed_encoder_equals_encoder_on_decoded_weights() {
    let Some(dir) = model_dir() else { return };
    let config = BertConfig::load(dir.join("config.json")).unwrap();
    let model = Model::load(dir.join("model.safetensors")).unwrap();
    let tok = SentenceTokenizer::from_file(dir.join("tokenizer.json"), 256).unwrap();
    let corpus = include_str!("../data/english/devils_dictionary.txt");
    let sents: Vec<&str> = corpus.lines().skip(200).take(24).collect();
    let pool = ThreadPool::new(2).unwrap();
    let ids = tok.encode_all(&sents, &pool).unwrap();
    for recipe in [
        r#"[[rule]]
pattern = "encoder.*.weight"
pipeline = [{ method = "int8" }]"#,
        r#"[[rule]]
pattern = "encoder.*.weight"
pipeline = [{ method = "int4", granularity = "per-group", group_size = 32 }]"#,
        r#"[[rule]]
pattern = "encoder.*.weight"
pipeline = [{ method = "nm", n = 2, m = 4 }]"#,
    ] {
        let recipe = Recipe::from_toml(recipe).unwrap();
        let c = compress_model(&model, &recipe, &pool, &|_| {}).unwrap();
        assert_eq!(c.layers.len(), 36, "all 36 encoder linear weights compressed");
        let compressed =
            BertEncoder::from_weights(config.clone(), Weights::Container(&c.model), Activations::Float).unwrap();
        assert!(compressed.linears().all(|l| !l.form().starts_with("dense f32")));
        let decoded = c.model.decompress();
        let dense = BertEncoder::from_weights(config.clone(), Weights::Dense(&decoded), Activations::Float).unwrap();
        let a = SentenceEncoder::new(tok.clone(), compressed, 8).unwrap().embed_ids(&ids, &pool).unwrap();
        let b = SentenceEncoder::new(tok.clone(), dense, 8).unwrap().embed_ids(&ids, &pool).unwrap();
        let d = max_abs(&a, &b);
        assert!(d < 1e-4, "compressed vs decoded: max abs {d}");
    }
}

fn nn_err(e: SquishError) -> NnError {
    match e {
        SquishError::Nn(e) => e,
        other => panic!("expected an nn error, got {other}"),
    }
}

#[test]
fn bad_input_gets_typed_errors() {
    let Some(dir) = model_dir() else { return };
    let config = BertConfig::load(dir.join("config.json")).unwrap();
    let model = Model::load(dir.join("model.safetensors")).unwrap();

    // A missing tensor.
    let mut partial = Model::new();
    for (n, t) in model.iter().filter(|(n, _)| !n.contains("layer.3.intermediate.dense.weight")) {
        partial.insert(n, t.clone()).unwrap();
    }
    let e = BertEncoder::from_weights(config.clone(), Weights::Dense(&partial), Activations::Float).unwrap_err();
    assert!(matches!(nn_err(e), NnError::MissingTensor { ref name } if name == "encoder.layer.3.intermediate.dense.weight"));

    // A config that does not match the weights' shapes.
    let mut wrong = config.clone();
    wrong.intermediate_size = 1024;
    let e = BertEncoder::from_weights(wrong, Weights::Dense(&model), Activations::Float).unwrap_err();
    assert!(matches!(nn_err(e), NnError::TensorShape { .. }));

    // A non-float tensor where a matrix belongs.
    let mut raw = Model::new();
    for (n, t) in model.iter() {
        let t = if n == "embeddings.token_type_embeddings.weight" {
            Tensor::raw(squish::io::Dtype::I32, t.shape().to_vec(), vec![0; t.shape().iter().product::<usize>() * 4]).unwrap()
        } else {
            t.clone()
        };
        raw.insert(n, t).unwrap();
    }
    let e = BertEncoder::from_weights(config.clone(), Weights::Dense(&raw), Activations::Float).unwrap_err();
    assert!(matches!(nn_err(e), NnError::TensorForm { .. }));

    // Heads that do not divide the hidden size.
    let src = std::fs::read_to_string(dir.join("config.json")).unwrap();
    let e = BertConfig::from_json(&src.replace("\"num_attention_heads\": 12", "\"num_attention_heads\": 7")).unwrap_err();
    assert!(matches!(nn_err(e), NnError::Config { field: "num_attention_heads", .. }));

    // Missing and malformed tokenizer.json.
    let e = SentenceTokenizer::from_file(dir.join("no-such-tokenizer.json"), 256).unwrap_err();
    assert!(matches!(nn_err(e), NnError::Tokenizer { .. }));
    let tmp = tempfile::tempdir().unwrap();
    let bad = tmp.path().join("tokenizer.json");
    std::fs::write(&bad, "{\"model\": 3").unwrap();
    assert!(matches!(nn_err(SentenceTokenizer::from_file(&bad, 256).unwrap_err()), NnError::Tokenizer { .. }));

    // Empty batch, empty sentence, non-UTF-8 input.
    let enc = SentenceEncoder::load_dir(&dir).unwrap();
    let none: [&str; 0] = [];
    assert!(matches!(nn_err(enc.embed(&none, &Sequential).unwrap_err()), NnError::EmptyBatch));
    assert!(matches!(nn_err(enc.embed(&["fine", "  "], &Sequential).unwrap_err()), NnError::EmptySentence { index: 1 }));
    let e = sentences_from_bytes(b"good line\nbad \xc3\x28 line\n").unwrap_err();
    assert!(matches!(nn_err(e), NnError::NotUtf8 { index: 1, offset: 4 }));
}
