//! all-MiniLM-L6-v2 sentence embeddings: dense f32 against compressed forms,
//! at batch 1 and batch 32 (packed, length-sorted), on 2 threads.
//!
//! Needs the model (`SQUISH_MINILM_DIR`, see `.ci/minilm.sh`); without it the
//! bench prints why and measures nothing. Sentences: lines 513–576 of
//! `data/english/devils_dictionary.txt` (64 sentences; the evaluation split).
//! Compare with PyTorch in the same sitting:
//!
//! ```text
//! SQUISH_MINILM_DIR=/path/to/model cargo bench --bench serving_bert -- --warm-up-time 2 --measurement-time 5
//! python3 ../shared/peers/torch_minilm.py /path/to/model tests/data/minilm_eval_sentences.json 2
//! ```

use std::hint::black_box;

use criterion::{criterion_group, criterion_main, BenchmarkId, Criterion, Throughput};
use squish::io::Model;
use squish::nn::{BertConfig, EncoderForm, SentenceEncoder, SentenceTokenizer, TokenBatch};
use squish::parallel::ThreadPool;

const FORMS: [&str; 5] = [
    "dense",
    "int8",
    "int8-dynamic",
    "int8-smooth-g128",
    "int4-g32",
];

fn bench(c: &mut Criterion) {
    let Some(dir) = std::env::var_os("SQUISH_MINILM_DIR").map(std::path::PathBuf::from) else {
        eprintln!("serving_bert: set SQUISH_MINILM_DIR to the all-MiniLM-L6-v2 directory; nothing measured");
        return;
    };
    let pool = ThreadPool::new(2).unwrap();
    let config = BertConfig::load(dir.join("config.json")).unwrap();
    let model = Model::load(dir.join("model.safetensors")).unwrap();
    let tok = SentenceTokenizer::from_file(dir.join("tokenizer.json"), 256).unwrap();
    let corpus = include_str!("../data/english/devils_dictionary.txt");
    let sents: Vec<&str> = corpus.lines().skip(512).take(64).collect();
    let ids = tok.encode_all(&sents, &pool).unwrap();
    // SmoothQuant calibrates on the first 128 lines (outside the evaluation split).
    let calib: Vec<&str> = corpus.lines().take(128).collect();
    let calib = tok.encode_all(&calib, &pool).unwrap();
    let calib: Vec<TokenBatch> = calib
        .chunks(32)
        .map(|c| TokenBatch::new(c).unwrap())
        .collect();
    let mut g = c.benchmark_group("minilm_embed_64_sentences");
    g.sample_size(10);
    g.throughput(Throughput::Elements(sents.len() as u64));
    for name in FORMS {
        let form = EncoderForm::named(name).unwrap();
        let enc = form
            .build_calibrated(&config, &model, &calib, &pool)
            .unwrap();
        for batch in [1usize, 32] {
            let server = SentenceEncoder::new(tok.clone(), enc.clone(), batch).unwrap();
            g.bench_with_input(
                BenchmarkId::new(name, format!("batch{batch}")),
                &ids,
                |b, ids| b.iter(|| black_box(server.embed_ids(ids, &pool).unwrap())),
            );
        }
    }
    g.finish();
}

criterion_group!(benches, bench);
criterion_main!(benches);
