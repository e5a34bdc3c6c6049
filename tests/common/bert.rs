//! A tiny random BERT for the tests: its configuration, the layout of its
//! tensors, and BERT's forward pass in f64, written from the Hugging Face
//! definitions (independent of `squish::nn`).

use std::collections::BTreeMap;

use ndarray::Array2;
use squish::io::{Dtype, Model, Tensor};
use squish::nn::BertConfig;

/// Two layers, hidden 32, 4 heads, intermediate 64, a 50-token vocabulary.
pub fn tiny_config() -> BertConfig {
    BertConfig::from_json(
        r#"{"hidden_size": 32, "num_attention_heads": 4, "num_hidden_layers": 2,
        "intermediate_size": 64, "layer_norm_eps": 1e-12, "max_position_embeddings": 16,
        "vocab_size": 50, "type_vocab_size": 2, "hidden_act": "gelu"}"#,
    )
    .unwrap()
}

/// A BERT of shape `config`: every tensor in a fixed order (the order the
/// builders draw their random numbers in), with `values(name, len, scale,
/// offset)` giving its `len` values (about `uniform(-1, 1)·scale + offset`).
pub fn build(
    config: &BertConfig,
    mut values: impl FnMut(&str, usize, f32, f32) -> Vec<f32>,
) -> Model {
    let (h, i) = (config.hidden_size, config.intermediate_size);
    let mut layout: Vec<(String, Vec<usize>, f32, f32)> = vec![
        (
            "embeddings.word_embeddings.weight".into(),
            vec![config.vocab_size, h],
            1.0,
            0.0,
        ),
        (
            "embeddings.position_embeddings.weight".into(),
            vec![config.max_position_embeddings, h],
            0.5,
            0.0,
        ),
        (
            "embeddings.token_type_embeddings.weight".into(),
            vec![config.type_vocab_size, h],
            0.5,
            0.0,
        ),
        ("embeddings.LayerNorm.weight".into(), vec![h], 0.1, 1.0),
        ("embeddings.LayerNorm.bias".into(), vec![h], 0.1, 0.0),
    ];
    for l in 0..config.num_hidden_layers {
        let p = format!("encoder.layer.{l}");
        for n in [
            "attention.self.query",
            "attention.self.key",
            "attention.self.value",
            "attention.output.dense",
        ] {
            layout.push((format!("{p}.{n}.weight"), vec![h, h], 0.4, 0.0));
            layout.push((format!("{p}.{n}.bias"), vec![h], 0.1, 0.0));
        }
        layout.push((
            format!("{p}.intermediate.dense.weight"),
            vec![i, h],
            0.4,
            0.0,
        ));
        layout.push((format!("{p}.intermediate.dense.bias"), vec![i], 0.1, 0.0));
        layout.push((format!("{p}.output.dense.weight"), vec![h, i], 0.3, 0.0));
        layout.push((format!("{p}.output.dense.bias"), vec![h], 0.1, 0.0));
        for n in ["attention.output.LayerNorm", "output.LayerNorm"] {
            layout.push((format!("{p}.{n}.weight"), vec![h], 0.1, 1.0));
            layout.push((format!("{p}.{n}.bias"), vec![h], 0.1, 0.0));
        }
    }
    let mut m = Model::new();
    for (name, shape, scale, offset) in layout {
        let data = values(&name, shape.iter().product(), scale, offset);
        m.insert(name, Tensor::float(Dtype::F32, shape, data).unwrap())
            .unwrap();
    }
    m
}

/// Every (f32) tensor of `m` in f64, by name.
pub fn model_f64(m: &Model) -> BTreeMap<String, Vec<f64>> {
    m.iter()
        .map(|(n, t)| {
            let v = t.as_f32().unwrap().iter().map(|&v| v as f64).collect();
            (n.to_string(), v)
        })
        .collect()
}

/// LayerNorm of every row of `x`, gain `g`, bias `b`.
pub fn layer_norm_f64<T: Copy + Into<f64>>(
    x: &Array2<f64>,
    g: &[T],
    b: &[T],
    eps: f64,
) -> Array2<f64> {
    let mut y = x.clone();
    for mut r in y.rows_mut() {
        let n = r.len() as f64;
        let mean = r.sum() / n;
        let var = r.iter().map(|v| (v - mean).powi(2)).sum::<f64>() / n;
        for (j, v) in r.iter_mut().enumerate() {
            *v = (*v - mean) / (var + eps).sqrt() * g[j].into() + b[j].into();
        }
    }
    y
}

/// Attention on a padded `[batch·len, hidden]` layout with a padding mask:
/// key `j` of row `b` is visible when `j < lens[b]`.
pub fn masked_attention_f64(
    q: &Array2<f64>,
    k: &Array2<f64>,
    v: &Array2<f64>,
    len: usize,
    lens: &[usize],
    heads: usize,
) -> Array2<f64> {
    let hidden = q.ncols();
    let d = hidden / heads;
    let mut y = Array2::zeros(q.dim());
    for (b, &n) in lens.iter().enumerate() {
        for h in 0..heads {
            let cols = h * d..(h + 1) * d;
            for i in 0..n {
                let qi = b * len + i;
                let s: Vec<f64> = (0..len)
                    .map(|j| {
                        if j >= n {
                            return f64::NEG_INFINITY;
                        }
                        cols.clone()
                            .map(|c| q[[qi, c]] * k[[b * len + j, c]])
                            .sum::<f64>()
                            / (d as f64).sqrt()
                    })
                    .collect();
                let m = s.iter().cloned().fold(f64::NEG_INFINITY, f64::max);
                let e: Vec<f64> = s.iter().map(|x| (x - m).exp()).collect();
                let z: f64 = e.iter().sum();
                for c in cols.clone() {
                    y[[qi, c]] = (0..len).map(|j| e[j] / z * v[[b * len + j, c]]).sum();
                }
            }
        }
    }
    y
}

/// The error function by its Taylor series (f64 accuracy for |x| ≤ 5).
pub fn erf_f64(x: f64) -> f64 {
    if x.abs() > 5.0 {
        return x.signum();
    }
    let (mut term, mut s) = (x, x);
    for n in 1..200 {
        term *= -x * x / n as f64;
        s += term / (2 * n + 1) as f64;
    }
    s * 2.0 / std::f64::consts::PI.sqrt()
}

/// BERT in f64 on one sequence, from tensors by name (a [`model_f64`]);
/// a linear layer with a stored `{layer}.input_scale` multiplies its input
/// by it. Returns the mean-pooled, L2-normalized embedding.
pub fn bert_f64(t: &BTreeMap<String, Vec<f64>>, c: &BertConfig, ids: &[u32]) -> Vec<f64> {
    let (h, n) = (c.hidden_size, ids.len());
    let get = |name: &str| t.get(name).unwrap_or_else(|| panic!("{name}"));
    let ln = |x: &Array2<f64>, p: &str| {
        layer_norm_f64(
            x,
            get(&format!("{p}.weight")),
            get(&format!("{p}.bias")),
            c.layer_norm_eps,
        )
    };
    let lin = |x: &Array2<f64>, p: &str| {
        let (w, b) = (get(&format!("{p}.weight")), get(&format!("{p}.bias")));
        let k = x.ncols();
        let f = t.get(&format!("{p}.input_scale"));
        Array2::from_shape_fn((x.nrows(), b.len()), |(i, j)| {
            b[j] + (0..k)
                .map(|q| x[[i, q]] * f.map_or(1.0, |f| f[q]) * w[j * k + q])
                .sum::<f64>()
        })
    };
    let (word, pos, typ) = (
        get("embeddings.word_embeddings.weight"),
        get("embeddings.position_embeddings.weight"),
        get("embeddings.token_type_embeddings.weight"),
    );
    let mut x = Array2::from_shape_fn((n, h), |(i, j)| {
        word[ids[i] as usize * h + j] + pos[i * h + j] + typ[j]
    });
    x = ln(&x, "embeddings.LayerNorm");
    for l in 0..c.num_hidden_layers {
        let p = format!("encoder.layer.{l}");
        let q = lin(&x, &format!("{p}.attention.self.query"));
        let k = lin(&x, &format!("{p}.attention.self.key"));
        let v = lin(&x, &format!("{p}.attention.self.value"));
        let ctx = masked_attention_f64(&q, &k, &v, n, &[n], c.num_attention_heads);
        let a = ln(
            &(lin(&ctx, &format!("{p}.attention.output.dense")) + &x),
            &format!("{p}.attention.output.LayerNorm"),
        );
        let mut inter = lin(&a, &format!("{p}.intermediate.dense"));
        inter.mapv_inplace(|v| 0.5 * v * (1.0 + erf_f64(v / 2f64.sqrt())));
        x = ln(
            &(lin(&inter, &format!("{p}.output.dense")) + &a),
            &format!("{p}.output.LayerNorm"),
        );
    }
    let mean: Vec<f64> = (0..h).map(|j| x.column(j).sum() / n as f64).collect();
    let norm = mean.iter().map(|v| v * v).sum::<f64>().sqrt();
    mean.iter().map(|v| v / norm).collect()
}
