//! The encoder's building blocks against direct f64 computations, and a
//! small random BERT against an f64 implementation written here.

use ndarray::{Array1, Array2};
use rand::{rngs::StdRng, Rng, SeedableRng};
use squish::io::Model;
use squish::matrix::CompressedMatrix;
use squish::nn::{
    attend, gelu, mean_pool_normalize, Activations, BertConfig, BertEncoder, LayerNorm, Linear,
    TokenBatch, Weights,
};
use squish::parallel::{Sequential, ThreadPool};
use squish::prelude::*;

mod common;
use common::bert::{
    bert_f64, build, erf_f64, layer_norm_f64, masked_attention_f64, model_f64, tiny_config,
};

fn random(rows: usize, cols: usize, seed: u64) -> Array2<f32> {
    let mut rng = StdRng::seed_from_u64(seed);
    Array2::from_shape_fn((rows, cols), |_| rng.random_range(-1.0f32..1.0))
}

fn max_abs_diff(a: &Array2<f32>, b: &Array2<f64>) -> f64 {
    a.iter()
        .zip(b.iter())
        .map(|(&x, &y)| (x as f64 - y).abs())
        .fold(0.0, f64::max)
}

fn linear_f64(x: &Array2<f32>, w: &Array2<f32>, b: &[f32]) -> Array2<f64> {
    Array2::from_shape_fn((x.nrows(), w.nrows()), |(i, j)| {
        b[j] as f64
            + (0..x.ncols())
                .map(|t| x[[i, t]] as f64 * w[[j, t]] as f64)
                .sum::<f64>()
    })
}

#[test]
fn linear_dense_and_compressed_match_f64() {
    let (x, w) = (random(37, 96, 1), random(70, 96, 2));
    let b: Vec<f32> = (0..70).map(|j| j as f32 * 0.01 - 0.3).collect();
    let dense = Linear::dense(w.clone(), Some(Array1::from(b.clone()))).unwrap();
    let y = dense.forward(x.view(), &Sequential).unwrap();
    assert!(max_abs_diff(&y, &linear_f64(&x, &w, &b)) < 1e-4);

    let q = IntQuantizer::params(8)
        .check()
        .unwrap()
        .quantize(&CompressedMatrix::from_dense(w.view()).unwrap())
        .unwrap();
    let wq = q.to_dense();
    let lin = Linear::compressed(q.clone(), Some(Array1::from(b.clone()))).unwrap();
    let y = lin.forward(x.view(), &ThreadPool::new(2).unwrap()).unwrap();
    assert!(max_abs_diff(&y, &linear_f64(&x, &wq, &b)) < 1e-4);

    // int8 × int8: activations rounded too, within |Δy| ≤ Σ|ŵ|·scale_x/2.
    let lin = Linear::with_activations(q, Some(Array1::from(b.clone())), Activations::DynamicInt8)
        .unwrap();
    assert_eq!(lin.form(), "int8 × int8 dynamic");
    let y = lin.forward(x.view(), &Sequential).unwrap();
    let r = linear_f64(&x, &wq, &b);
    for i in 0..x.nrows() {
        let sx = x.row(i).iter().fold(0.0f32, |m, v| m.max(v.abs())) as f64 / 127.0;
        for j in 0..w.nrows() {
            let bound = wq.row(j).iter().map(|v| v.abs() as f64).sum::<f64>() * sx / 2.0;
            assert!((y[[i, j]] as f64 - r[[i, j]]).abs() <= bound + 1e-4);
        }
    }
    assert!(Linear::dense(w, Some(Array1::zeros(3))).is_err());
}

/// int8 × int8 layers with an input scale and a bias: at every batch size
/// (below 6 rows the unfused path, from 6 on the fused quantize + panel
/// kernel on VNNI machines) the output equals, bit for bit, the reference
/// integer GEMM on `quantize_activations(x ⊙ m)` plus the bias, on 1 and 2
/// threads; a non-finite input is a typed error on both paths.
#[test]
fn int8_linear_with_input_scale_equals_the_reference_gemm_bit_for_bit() {
    use squish::kernels::quant::int8_gemm::gemm_reference;
    use squish::matrix::{Granularity, Values};
    use squish::quantization::quantize_activations;
    let pool = ThreadPool::new(2).unwrap();
    for (ci, &(out, cols)) in [(70usize, 96usize), (40, 384), (33, 130), (16, 4)]
        .iter()
        .enumerate()
    {
        let w = random(out, cols, 40 + ci as u64);
        let b: Vec<f32> = (0..out).map(|j| j as f32 * 0.01 - 0.3).collect();
        let m: Vec<f32> = (0..cols).map(|k| 0.25 + (k % 7) as f32 * 0.3).collect();
        for g in [Granularity::PerRow, Granularity::PerGroup(32)] {
            let p = IntQuantizer::params(8);
            let p = match g {
                Granularity::PerGroup(g) => p.per_group(g),
                _ => p.per_row(),
            };
            let q = p
                .check()
                .unwrap()
                .quantize(&CompressedMatrix::from_dense(w.view()).unwrap())
                .unwrap();
            let Some(Values::Int8(v)) = q.values() else {
                panic!()
            };
            let lin = Linear::with_activations(
                q.clone(),
                Some(Array1::from(b.clone())),
                Activations::DynamicInt8,
            )
            .unwrap()
            .with_input_scale(Array1::from(m.clone()))
            .unwrap();
            for batch in [1usize, 5, 6, 7, 13, 40] {
                let mut x = random(batch, cols, 90 + batch as u64) * 3.0;
                if batch > 6 {
                    x.row_mut(3).fill(0.0); // scale 0
                    x[[4, 0]] = 0.5 / m[0]; // near a rounding tie
                }
                let xm = &x * &Array1::from(m.clone()).view().insert_axis(ndarray::Axis(0));
                let mut r = gemm_reference(v, &quantize_activations(xm.view()).unwrap());
                for mut row in r.rows_mut() {
                    row.iter_mut().zip(&b).for_each(|(y, &c)| *y += c);
                }
                let y = lin.forward(x.view(), &pool).unwrap();
                assert_eq!(y, r, "{out}x{cols} {g:?} batch {batch}");
                assert_eq!(lin.forward(x.view(), &Sequential).unwrap(), r);
                x[[batch - 1, cols - 1]] = f32::NAN;
                assert!(lin.forward(x.view(), &pool).is_err(), "NaN, batch {batch}");
            }
        }
    }
}

#[test]
fn layer_norm_with_residual_matches_f64() {
    let (x, res) = (random(20, 384, 3), random(20, 384, 4));
    let g: Vec<f32> = (0..384)
        .map(|j| 1.0 + (j as f32 * 0.1).sin() * 0.2)
        .collect();
    let b: Vec<f32> = (0..384).map(|j| (j as f32 * 0.3).cos() * 0.1).collect();
    let ln = LayerNorm::new(Array1::from(g.clone()), Array1::from(b.clone()), 1e-12).unwrap();
    let mut y = x.clone();
    ln.add_forward_in_place(&mut y, res.view(), &Sequential);
    let sum = (&x + &res).mapv(|v| v as f64);
    assert!(max_abs_diff(&y, &layer_norm_f64(&sum, &g, &b, 1e-12)) < 2e-5);
    assert!(LayerNorm::new(Array1::ones(3), Array1::ones(4), 1e-5).is_err());
    assert!(LayerNorm::new(Array1::ones(3), Array1::ones(3), 0.0).is_err());
}

#[test]
fn packed_attention_equals_padding_mask_attention_in_f64() {
    let (len, lens, hidden, heads) = (9, [9usize, 4, 1, 7], 48, 4);
    let rows = len * lens.len();
    let (q, k, v) = (
        random(rows, hidden, 5),
        random(rows, hidden, 6),
        random(rows, hidden, 7),
    );
    let segments: Vec<_> = lens
        .iter()
        .enumerate()
        .map(|(b, &n)| b * len..b * len + n)
        .collect();
    let y = attend(
        q.view(),
        k.view(),
        v.view(),
        &segments,
        heads,
        &ThreadPool::new(2).unwrap(),
    )
    .unwrap();
    let f = |a: &Array2<f32>| a.mapv(|x| x as f64);
    let r = masked_attention_f64(&f(&q), &f(&k), &f(&v), len, &lens, heads);
    for (b, &n) in lens.iter().enumerate() {
        for i in 0..len {
            for c in 0..hidden {
                let got = y[[b * len + i, c]] as f64;
                let want = if i < n { r[[b * len + i, c]] } else { 0.0 };
                assert!(
                    (got - want).abs() < 1e-5,
                    "row {b},{i} col {c}: {got} vs {want}"
                );
            }
        }
    }
    assert!(attend(q.view(), k.view(), v.view(), &segments, 5, &Sequential).is_err());
}

#[test]
fn gelu_and_pooling_match_f64() {
    for i in -300..=300 {
        let x = i as f64 / 50.0;
        let want = 0.5 * x * (1.0 + erf_f64(x / 2f64.sqrt()));
        assert!((gelu(x as f32) as f64 - want).abs() < 1e-6 * (1.0 + x.abs()));
    }
    let h = random(10, 16, 8);
    let segs = [0..3, 3..4, 4..10];
    let e = mean_pool_normalize(h.view(), &segs);
    for (s, seg) in segs.iter().enumerate() {
        let mean: Vec<f64> = (0..16)
            .map(|c| seg.clone().map(|t| h[[t, c]] as f64).sum::<f64>() / seg.len() as f64)
            .collect();
        let norm = mean.iter().map(|m| m * m).sum::<f64>().sqrt();
        for c in 0..16 {
            assert!((e[[s, c]] as f64 - mean[c] / norm).abs() < 1e-6);
        }
    }
}

/// A random BERT of the given shape, as a safetensors-style model (each
/// tensor from its own seed, `seed + 1`, `seed + 2`, … in layout order).
pub fn tiny_bert(config: &BertConfig, seed: u64) -> Model {
    let mut s = seed;
    build(config, |_, n, scale, offset| {
        s += 1;
        random(1, n, s)
            .mapv(|v| v * scale + offset)
            .into_raw_vec_and_offset()
            .0
    })
}

#[test]
fn tiny_bert_matches_f64_bert_and_is_deterministic() {
    let c = tiny_config();
    let m = tiny_bert(&c, 10);
    let enc = BertEncoder::from_weights(c.clone(), Weights::Dense(&m), Activations::Float).unwrap();
    let seqs = vec![
        vec![1u32, 5, 9, 2],
        vec![1, 7, 2],
        vec![1, 49, 48, 47, 46, 45, 44, 43, 2],
        vec![3],
    ];
    let batch = TokenBatch::new(&seqs).unwrap();
    let e = enc.embed(&batch, &Sequential).unwrap();
    for (s, ids) in seqs.iter().enumerate() {
        let want = bert_f64(&model_f64(&m), &c, ids);
        for (j, w) in want.iter().enumerate() {
            assert!(
                (e[[s, j]] as f64 - w).abs() < 2e-5,
                "seq {s} dim {j}: {} vs {w}",
                e[[s, j]]
            );
        }
    }
    for threads in [2, 3] {
        let p = ThreadPool::new(threads).unwrap();
        assert_eq!(enc.embed(&batch, &p).unwrap(), e, "{threads} threads");
    }
    // Out-of-vocabulary ids and over-long sequences are typed errors.
    assert!(enc
        .embed(&TokenBatch::new(&[vec![50u32]]).unwrap(), &Sequential)
        .is_err());
    assert!(enc
        .embed(&TokenBatch::new(&[vec![1u32; 17]]).unwrap(), &Sequential)
        .is_err());
    assert!(TokenBatch::new::<Vec<u32>>(&[]).is_err());
    assert!(TokenBatch::new(&[vec![1u32], vec![]]).is_err());
}

/// SmoothQuant moves factors between activations and weights without
/// changing the function: the smoothed tiny BERT, served in f32, still
/// matches the f64 BERT of the original weights; every smoothed layer got
/// `input_scale = 1/s` with `W·diag(s)` stored.
#[test]
fn smoothed_bert_computes_the_same_function() {
    use squish::nn::{SmoothQuant, INPUT_SCALE};
    let c = tiny_config();
    let m = tiny_bert(&c, 11);
    let seqs = vec![vec![1u32, 5, 9, 2], vec![1, 7, 2, 30, 31]];
    let calib = [TokenBatch::new(&seqs).unwrap()];
    let sq = SmoothQuant::params().alpha(0.7).check().unwrap();
    let sm = sq.apply(&c, &m, &calib, &Sequential).unwrap();
    for name in ["query", "key", "value"] {
        let base = format!("encoder.layer.1.attention.self.{name}");
        let inv = sm
            .get(&format!("{base}.{INPUT_SCALE}"))
            .unwrap()
            .as_f32()
            .unwrap();
        let w0 = m.get(&format!("{base}.weight")).unwrap().matrix().unwrap();
        let w1 = sm.get(&format!("{base}.weight")).unwrap().matrix().unwrap();
        for ((i, j), &v) in w1.indexed_iter() {
            let back = v as f64 * inv[j] as f64;
            assert!((back - w0[[i, j]] as f64).abs() <= 1e-6 * (1.0 + w0[[i, j]].abs() as f64));
        }
    }
    let enc =
        BertEncoder::from_weights(c.clone(), Weights::Dense(&sm), Activations::Float).unwrap();
    let e = enc.embed(&calib[0], &Sequential).unwrap();
    for (s, ids) in seqs.iter().enumerate() {
        for (j, w) in bert_f64(&model_f64(&m), &c, ids).iter().enumerate() {
            assert!((e[[s, j]] as f64 - w).abs() < 5e-5, "seq {s} dim {j}");
        }
    }
    assert!(SmoothQuant::params().alpha(-0.1).check().is_err());
    assert!(sq.apply(&c, &m, &[], &Sequential).is_err());
}
