//! `squish embed` and `squish serve-bench`: a sentence encoder served from
//! dense or compressed weights.

use std::io::Read;
use std::path::{Path, PathBuf};
use std::time::Instant;

use clap::Args;
use squish::io::Model;
use squish::nn::{
    fidelity, sentences_from_bytes, Activations, BertConfig, BertEncoder, EncoderForm,
    SentenceEncoder, SentenceTokenizer, TokenBatch, DEFAULT_MAX_TOKENS, FORMS,
};
use squish::parallel::ParallelExecutor;
use squish::{Result, SquishError};

/// Arguments of `squish embed`.
#[derive(Args)]
pub struct EmbedArgs {
    /// Model directory (config.json, tokenizer.json, and model.safetensors
    /// unless --container is given).
    #[arg(long)]
    model: PathBuf,
    /// A squish container with the model's compressed weights (served compressed).
    #[arg(long)]
    container: Option<PathBuf>,
    /// Run int8 layers as int8 × int8 with dynamic per-token activations.
    #[arg(long)]
    int8_activations: bool,
    /// Read sentences from this file, one per line (`-` for stdin). Without
    /// sentences or a file, stdin is read.
    #[arg(long)]
    file: Option<PathBuf>,
    /// Print the cosine similarity table instead of the embeddings.
    #[arg(long)]
    similarity: bool,
    /// Sentences per packed batch.
    #[arg(long, default_value_t = 32)]
    batch_size: usize,
    /// Sentences to embed.
    sentences: Vec<String>,
}

fn read_input(a: &EmbedArgs) -> Result<Vec<String>> {
    let read_err = |p: &Path, e: std::io::Error| {
        SquishError::invalid("--file", p.display(), format!("cannot read it: {e}"))
    };
    let bytes = match (&a.file, a.sentences.is_empty()) {
        (Some(p), _) if p.as_os_str() != "-" => std::fs::read(p).map_err(|e| read_err(p, e))?,
        (Some(_), _) | (None, true) => {
            let mut b = Vec::new();
            std::io::stdin()
                .read_to_end(&mut b)
                .map_err(|e| read_err(Path::new("-"), e))?;
            b
        }
        (None, false) => return Ok(a.sentences.clone()),
    };
    let mut s = a.sentences.clone();
    s.extend(sentences_from_bytes(&bytes)?);
    Ok(s)
}

fn encoder(a: &EmbedArgs) -> Result<SentenceEncoder> {
    let tok = a.model.join("tokenizer.json");
    let cfg = a.model.join("config.json");
    let mode = if a.int8_activations {
        Activations::DynamicInt8
    } else {
        Activations::Float
    };
    let enc = match &a.container {
        Some(c) => SentenceEncoder::load_container(c, cfg, tok, mode)?,
        None => SentenceEncoder::load_dir(&a.model)?,
    };
    enc.with_batch_size(a.batch_size)
}

/// `squish embed`.
pub fn embed(a: &EmbedArgs, exec: &dyn ParallelExecutor) -> Result<()> {
    let sentences = read_input(a)?;
    let enc = encoder(a)?;
    let e = enc.embed(&sentences, exec)?;
    if a.similarity {
        let n = sentences.len();
        println!("cosine similarity ({n} sentences)");
        for (i, s) in sentences.iter().enumerate() {
            let short: String = s.chars().take(40).collect();
            println!("[{i:>3}] {short}");
        }
        print!("     ");
        (0..n).for_each(|j| print!(" {j:>6}"));
        println!();
        for i in 0..n {
            print!("[{i:>3}]");
            (0..n).for_each(|j| print!(" {:>6.3}", e.row(i).dot(&e.row(j))));
            println!();
        }
    } else {
        for row in e.rows() {
            let v: Vec<String> = row.iter().map(|x| format!("{x:.6}")).collect();
            println!("{}", v.join(" "));
        }
    }
    Ok(())
}

/// Arguments of `squish serve-bench`.
#[derive(Args)]
pub struct ServeBenchArgs {
    /// Model directory (config.json, model.safetensors, tokenizer.json).
    #[arg(long)]
    model: PathBuf,
    /// Sentences, one per line.
    #[arg(long, default_value = "data/english/devils_dictionary.txt")]
    sentences: PathBuf,
    /// Skip this many lines first (the default skips the calibration lines).
    #[arg(long, default_value_t = 512)]
    skip: usize,
    /// Number of sentences.
    #[arg(long, default_value_t = 512)]
    count: usize,
    /// Batch sizes, comma-separated.
    #[arg(long, value_delimiter = ',', default_value = "1,32")]
    batch_sizes: Vec<usize>,
    /// Forms to compare, comma-separated (dense always runs first).
    #[arg(
        long,
        value_delimiter = ',',
        default_value = "int8,int8-dynamic,int4-g32"
    )]
    forms: Vec<String>,
    /// Timed passes over all sentences per batch size (the best is reported).
    #[arg(long, default_value_t = 3)]
    passes: usize,
    /// Multiply compressed weights with their own kernels at every batch
    /// size (default: decoded tiles into the packed GEMM from 16 rows up).
    #[arg(long)]
    native_kernels: bool,
    /// Also report fidelity to dense (mean/min cosine, recall@10) per form.
    #[arg(long)]
    fidelity: bool,
    /// Calibration sentences for calibrated forms (int8-smooth): the first
    /// this many lines, which must lie before --skip.
    #[arg(long, default_value_t = 128)]
    calibration: usize,
    /// SmoothQuant's alpha for calibrated forms (default: the form's own):
    /// one value for every input, or four for [query/key/value, attention
    /// output, intermediate, output], `-` leaving that input unsmoothed.
    #[arg(long, value_delimiter = ',')]
    smooth_alpha: Vec<String>,
}

fn parse_alphas(v: &[String]) -> Result<[Option<f32>; 4]> {
    let bad = || {
        SquishError::invalid(
            "--smooth-alpha",
            v.join(","),
            "give one alpha, or four (query/key/value, attention output, intermediate, output; `-` for none)",
        )
    };
    let one = |s: &String| -> Result<Option<f32>> {
        if s == "-" {
            return Ok(None);
        }
        s.parse::<f32>().map(Some).map_err(|_| bad())
    };
    match v.len() {
        1 => Ok([one(&v[0])?; 4]),
        4 => Ok([one(&v[0])?, one(&v[1])?, one(&v[2])?, one(&v[3])?]),
        _ => Err(bad()),
    }
}

fn percentile(sorted: &[f64], p: f64) -> f64 {
    let i = ((sorted.len() as f64 - 1.0) * p).round() as usize;
    sorted[i.min(sorted.len() - 1)]
}

/// `squish serve-bench`.
pub fn serve_bench(a: &ServeBenchArgs, exec: &dyn ParallelExecutor) -> Result<()> {
    let bytes = std::fs::read(&a.sentences).map_err(|e| {
        SquishError::invalid(
            "--sentences",
            a.sentences.display(),
            format!("cannot read it: {e}"),
        )
    })?;
    let all = sentences_from_bytes(&bytes)?;
    if a.calibration > a.skip {
        return Err(SquishError::invalid(
            "--calibration",
            a.calibration,
            format!(
                "calibration lines must lie before the {} skipped ones",
                a.skip
            ),
        ));
    }
    let calib: Vec<String> = all.iter().take(a.calibration).cloned().collect();
    let sents: Vec<String> = all.into_iter().skip(a.skip).take(a.count).collect();
    if sents.is_empty() || a.passes == 0 || a.batch_sizes.contains(&0) {
        return Err(SquishError::invalid(
            "--skip/--count/--passes/--batch-sizes",
            format!("{} sentences", sents.len()),
            "need at least one sentence, one pass and batch sizes ≥ 1",
        ));
    }
    let config = BertConfig::load(a.model.join("config.json"))?;
    let model = Model::load(a.model.join("model.safetensors"))?;
    let tok = SentenceTokenizer::from_file(a.model.join("tokenizer.json"), DEFAULT_MAX_TOKENS)?;
    let ids = tok.encode_all(&sents, exec)?;
    let tokens: usize = ids.iter().map(Vec::len).sum();
    let calib_ids = tok.encode_all(&calib, exec)?;
    let calib_batches = calib_ids
        .chunks(32)
        .map(TokenBatch::new)
        .collect::<Result<Vec<_>>>()?;
    println!(
        "{} sentences ({} tokens, mean {:.1}), {} threads, best of {} passes",
        sents.len(),
        tokens,
        tokens as f64 / sents.len() as f64,
        exec.threads(),
        a.passes
    );
    let mut forms = vec![FORMS[0]];
    for f in &a.forms {
        let mut f = EncoderForm::named(f)?;
        if f.smooth.is_some() && !a.smooth_alpha.is_empty() {
            f.smooth = Some(parse_alphas(&a.smooth_alpha)?);
        }
        if f.name != "dense" {
            forms.push(f);
        }
    }
    println!(
        "{:<14} {:>9} {:>6} {:>10} {:>9} {:>9} {:>9} {:>9}",
        "form", "MB", "batch", "sent/s", "p50 ms", "p90 ms", "p99 ms", "vs dense"
    );
    let mut dense_rate = vec![0.0; a.batch_sizes.len()];
    let mut dense_emb = None;
    let mut fid = Vec::new();
    for form in &forms {
        let mut enc: BertEncoder = form.build_calibrated(&config, &model, &calib_batches, exec)?;
        enc.set_tiled(!a.native_kernels);
        let mb = enc.bytes() as f64 / 1e6;
        for (bi, &bs) in a.batch_sizes.iter().enumerate() {
            let server = SentenceEncoder::new(tok.clone(), enc.clone(), bs)?;
            let plan = server.plan(&ids)?;
            server.encoder().embed(&plan[0].0, exec)?; // warm-up
            let mut best = f64::INFINITY;
            let mut lat = Vec::new();
            for _ in 0..a.passes {
                let t0 = Instant::now();
                let mut l = Vec::with_capacity(plan.len());
                for (b, _) in &plan {
                    let t = Instant::now();
                    server.encoder().embed(b, exec)?;
                    l.push(t.elapsed().as_secs_f64() * 1e3);
                }
                let total = t0.elapsed().as_secs_f64();
                if total < best {
                    best = total;
                    lat = l;
                }
            }
            lat.sort_by(f64::total_cmp);
            let rate = sents.len() as f64 / best;
            if form.name == "dense" {
                dense_rate[bi] = rate;
            }
            println!(
                "{:<14} {:>9.1} {:>6} {:>10.1} {:>9.2} {:>9.2} {:>9.2} {:>8.2}x",
                form.name,
                mb,
                bs,
                rate,
                percentile(&lat, 0.5),
                percentile(&lat, 0.9),
                percentile(&lat, 0.99),
                rate / dense_rate[bi]
            );
        }
        if a.fidelity {
            let server = SentenceEncoder::new(tok.clone(), enc, 32)?;
            let e = server.embed_ids(&ids, exec)?;
            match &dense_emb {
                None => dense_emb = Some(e),
                Some(d) => fid.push((form.name, fidelity(d.view(), e.view(), 10))),
            }
        }
    }
    if a.fidelity {
        println!("\nfidelity to dense f32 ({} sentences)", sents.len());
        println!(
            "{:<14} {:>12} {:>12} {:>10}",
            "form", "mean cosine", "min cosine", "recall@10"
        );
        for (name, f) in fid {
            println!(
                "{:<14} {:>12.6} {:>12.6} {:>10.4}",
                name, f.mean_cosine, f.min_cosine, f.recall_at_k
            );
        }
    }
    Ok(())
}
