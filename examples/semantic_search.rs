//! Semantic search with all-MiniLM-L6-v2 served from compressed weights.
//!
//! Compresses the 36 encoder linear weights to int8 by a recipe, embeds a
//! corpus of 256 sentences (public-domain, `data/english`) with the dense and
//! the compressed encoder, answers a few queries with both, and prints size,
//! speed and fidelity side by side.
//!
//! ```text
//! SQUISH_MINILM_DIR=/path/to/all-MiniLM-L6-v2 cargo run --release --example semantic_search
//! ```

use std::path::PathBuf;
use std::time::Instant;

use ndarray::{Array2, ArrayView1};
use squish::io::Model;
use squish::nn::{fidelity, Activations, BertConfig, BertEncoder, SentenceEncoder, SentenceTokenizer, Weights};
use squish::parallel::ThreadPool;
use squish::recipe::{compress_model, Recipe};

const RECIPE: &str = r#"
# every encoder linear weight: int8 per row; embeddings and norms stay f32
[[rule]]
pattern = "encoder.*.weight"
pipeline = [{ method = "int8" }]
"#;

fn top(e: &Array2<f32>, q: ArrayView1<f32>, k: usize) -> Vec<(usize, f32)> {
    let mut s: Vec<(usize, f32)> = e.rows().into_iter().map(|r| r.dot(&q)).enumerate().collect();
    s.sort_by(|a, b| b.1.total_cmp(&a.1));
    s.truncate(k);
    s
}

fn main() -> squish::Result<()> {
    let Some(dir) = std::env::var_os("SQUISH_MINILM_DIR").map(PathBuf::from) else {
        if std::env::var_os("CI").is_some() {
            panic!("SQUISH_MINILM_DIR must point to all-MiniLM-L6-v2 in CI (.ci/minilm.sh)");
        }
        eprintln!("set SQUISH_MINILM_DIR to the all-MiniLM-L6-v2 model directory (see .ci/minilm.sh)");
        return Ok(());
    };
    let pool = ThreadPool::new(2)?;
    let config = BertConfig::load(dir.join("config.json"))?;
    let model = Model::load(dir.join("model.safetensors"))?;
    let tok = SentenceTokenizer::from_file(dir.join("tokenizer.json"), 256)?;

    let recipe = Recipe::from_toml(RECIPE)?;
    let packed = compress_model(&model, &recipe, &pool, &|_| {})?;
    let dense = SentenceEncoder::from_model(tok.clone(), config.clone(), &model)?;
    let int8 = SentenceEncoder::new(
        tok,
        BertEncoder::from_weights(config, Weights::Container(&packed.model), Activations::DynamicInt8)?,
        32,
    )?;

    let corpus: Vec<&str> = include_str!("../data/english/devils_dictionary.txt")
        .lines()
        .skip(512)
        .take(256)
        .collect();
    let queries = [
        "Politicians only care about money.",
        "A doctor who cannot cure his patients.",
        "Marriage is a form of slavery.",
    ];
    println!("{:<24} {:>10} {:>12}", "encoder", "weights MB", "sentences/s");
    let mut embs = Vec::new();
    for (name, enc) in [("dense f32", &dense), ("int8 × int8 dynamic", &int8)] {
        let t = Instant::now();
        let e = enc.embed(&corpus, &pool)?;
        let rate = corpus.len() as f64 / t.elapsed().as_secs_f64();
        println!("{name:<24} {:>10.1} {rate:>12.1}", enc.encoder().bytes() as f64 / 1e6);
        embs.push(e);
    }
    let f = fidelity(embs[0].view(), embs[1].view(), 10);
    println!(
        "int8 vs dense on {} sentences: mean cosine {:.5}, min {:.5}, recall@10 {:.3}",
        corpus.len(),
        f.mean_cosine,
        f.min_cosine,
        f.recall_at_k
    );
    for q in queries {
        println!("\nquery: {q}");
        for (name, enc, e) in [("dense", &dense, &embs[0]), ("int8 ", &int8, &embs[1])] {
            let qe = enc.embed(&[q], &pool)?;
            for (i, s) in top(e, qe.row(0), 2) {
                let text: String = corpus[i].chars().take(90).collect();
                println!("  {name} {s:.3}  {text}");
            }
        }
    }
    Ok(())
}
