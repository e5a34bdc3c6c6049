//! Matrices of every structure × encoding, and header surgery for hostile files.
#![allow(dead_code)]

pub mod bert;

use ndarray::Array2;
use rand::{rngs::StdRng, Rng, SeedableRng};
use serde_json::Value;
use squish::io::{CompressedModel, CompressedTensor, Dtype};
use squish::matrix::{
    index_bits, CodebookScope, CompressedMatrix, PackedBits, RowLayout, Structure, Values, NM,
};
use squish::quantization::{Binary, IntQuantizer, Quantizer, Ternary};

pub fn random(rows: usize, cols: usize, seed: u64) -> Array2<f32> {
    let mut rng = StdRng::seed_from_u64(seed);
    Array2::from_shape_fn((rows, cols), |_| rng.random_range(-1.0f32..1.0))
}

/// Codebook values for any f32 values: k levels spread over the row (or
/// tensor) range, each value to its nearest level.
fn codebook(v: &Values, k: usize, scope: CodebookScope) -> squish::Result<Values> {
    let layout = v.layout().clone();
    let data = v.decode();
    let books = match scope {
        CodebookScope::PerTensor => 1,
        CodebookScope::PerRow => layout.rows(),
    };
    let mut centroids = Vec::new();
    for b in 0..books {
        let hi = match scope {
            CodebookScope::PerTensor => data.iter().fold(0.1f32, |a, x| a.max(x.abs())),
            CodebookScope::PerRow => data[layout.range(b)]
                .iter()
                .fold(0.1f32, |a, x| a.max(x.abs())),
        };
        centroids.extend((0..k).map(|i| -hi + 2.0 * hi * i as f32 / (k - 1) as f32));
    }
    let mut idx = Vec::with_capacity(data.len());
    for r in 0..layout.rows() {
        let cb = match scope {
            CodebookScope::PerTensor => &centroids[..k],
            CodebookScope::PerRow => &centroids[r * k..(r + 1) * k],
        };
        for &x in &data[layout.range(r)] {
            let best = (0..k)
                .min_by(|&a, &b| (cb[a] - x).abs().total_cmp(&(cb[b] - x).abs()))
                .unwrap();
            idx.push(best as u16);
        }
    }
    Values::codebook(
        layout,
        k,
        scope,
        centroids,
        PackedBits::pack(index_bits(k), &idx)?,
    )
}

/// Every encoding applied to `m` (which holds f32 values).
pub fn encodings(m: &CompressedMatrix) -> Vec<(String, CompressedMatrix)> {
    let q = |b,
             f: fn(
        squish::quantization::IntQuantizerParams,
    ) -> squish::quantization::IntQuantizerParams| {
        f(IntQuantizer::params(b))
            .check()
            .unwrap()
            .quantize(m)
            .unwrap()
    };
    vec![
        ("f32".into(), m.clone()),
        ("int8 per-row".into(), q(8, |p| p.per_row())),
        (
            "int8 group-5 asym".into(),
            q(8, |p| p.per_group(5).symmetric(false)),
        ),
        ("int4 per-tensor".into(), q(4, |p| p.per_tensor())),
        (
            "int4 group-3 asym".into(),
            q(4, |p| p.per_group(3).symmetric(false)),
        ),
        ("binary".into(), Binary.quantize(m).unwrap()),
        ("ternary".into(), Ternary.quantize(m).unwrap()),
        (
            "codebook k=5 per-tensor".into(),
            m.map_values(&|v| codebook(v, 5, CodebookScope::PerTensor))
                .unwrap(),
        ),
        (
            "codebook k=4 per-row".into(),
            m.map_values(&|v| codebook(v, 4, CodebookScope::PerRow))
                .unwrap(),
        ),
    ]
}

/// A 2:4 N:M matrix keeping the two largest of every four.
pub fn nm_2_4(w: &Array2<f32>) -> CompressedMatrix {
    let (rows, cols) = w.dim();
    let mut pos = Vec::new();
    let mut vals = Vec::new();
    for r in 0..rows {
        for g in 0..cols / 4 {
            let mut ids: Vec<usize> = (0..4).collect();
            ids.sort_by(|&a, &b| w[[r, g * 4 + b]].abs().total_cmp(&w[[r, g * 4 + a]].abs()));
            let mut keep = [ids[0], ids[1]];
            keep.sort();
            for p in keep {
                pos.push(p as u16);
                vals.push(w[[r, g * 4 + p]]);
            }
        }
    }
    let s = NM::new(rows, cols, 2, 4, PackedBits::pack(2, &pos).unwrap()).unwrap();
    let v = Values::f32(
        RowLayout::Uniform {
            rows,
            len: cols / 2,
        },
        vals,
    )
    .unwrap();
    CompressedMatrix::from_parts(rows, cols, Structure::NM(s), v).unwrap()
}

/// Every structure (f32 values), including CSR with u32 indices and nested low rank.
pub fn structures() -> Vec<(String, CompressedMatrix)> {
    let w = random(12, 20, 1);
    let keep = w.mapv(|x| x.abs() > 0.5);
    let wide = random(2, 70_000, 2);
    let wide_keep = wide.mapv(|x| x.abs() > 0.999);
    let a = CompressedMatrix::from_dense(random(12, 3, 3).view()).unwrap();
    let b_dense = random(3, 20, 4);
    let b =
        CompressedMatrix::csr_from_mask(b_dense.view(), b_dense.mapv(|x| x > 0.0).view()).unwrap();
    let b = Ternary.quantize(&b).unwrap();
    let a = IntQuantizer::params(8)
        .check()
        .unwrap()
        .quantize(&a)
        .unwrap();
    vec![
        (
            "dense".into(),
            CompressedMatrix::from_dense(w.view()).unwrap(),
        ),
        (
            "csr u16".into(),
            CompressedMatrix::csr_from_mask(w.view(), keep.view()).unwrap(),
        ),
        (
            "csr u32".into(),
            CompressedMatrix::csr_from_mask(wide.view(), wide_keep.view()).unwrap(),
        ),
        ("n:m 2:4".into(), nm_2_4(&w)),
        (
            "kept rows".into(),
            CompressedMatrix::kept_rows(w.view(), vec![0, 3, 4, 11]).unwrap(),
        ),
        (
            "low rank [int8 dense, ternary csr]".into(),
            CompressedMatrix::low_rank(a, b).unwrap(),
        ),
    ]
}

/// Every structure × encoding (low rank once, with its mixed factors).
pub fn all_matrices() -> Vec<(String, CompressedMatrix)> {
    let mut out = Vec::new();
    for (s, m) in structures() {
        if m.values().is_none() {
            out.push((s, m));
            continue;
        }
        for (e, q) in encodings(&m) {
            out.push((format!("{s} / {e}"), q));
        }
    }
    out
}

/// A container holding every structure × encoding plus a plain tensor.
pub fn container() -> CompressedModel {
    let mut model = CompressedModel::new();
    for (i, (label, m)) in all_matrices().into_iter().enumerate() {
        let shape = vec![m.rows(), m.cols()];
        let t = CompressedTensor::new(m, Dtype::F32, shape, label).unwrap();
        model
            .insert_compressed(format!("layer{i}.weight"), t)
            .unwrap();
    }
    let bias = squish::io::Tensor::float(Dtype::F32, vec![3], vec![1.0, 2.0, 3.0]).unwrap();
    model.insert_plain("bias", bias).unwrap();
    model
}

/// Splits safetensors bytes into (header JSON, data).
pub fn split(bytes: &[u8]) -> (Value, Vec<u8>) {
    let n = u64::from_le_bytes(bytes[..8].try_into().unwrap()) as usize;
    let header: Value = serde_json::from_slice(&bytes[8..8 + n]).unwrap();
    (header, bytes[8 + n..].to_vec())
}

/// Joins a header and data back into safetensors bytes.
pub fn join(header: &Value, data: &[u8]) -> Vec<u8> {
    let h = serde_json::to_vec(header).unwrap();
    let mut out = (h.len() as u64).to_le_bytes().to_vec();
    out.extend(h);
    out.extend(data);
    out
}

/// Rewrites the container description with `f`.
pub fn edit_description(bytes: &[u8], f: impl FnOnce(&mut Value)) -> Vec<u8> {
    let (mut header, data) = split(bytes);
    let meta = header["__metadata__"]["squish.description"]
        .as_str()
        .unwrap()
        .to_string();
    let mut desc: Value = serde_json::from_str(&meta).unwrap();
    f(&mut desc);
    header["__metadata__"]["squish.description"] = Value::String(desc.to_string());
    join(&header, &data)
}

/// Byte range of tensor `name` within the whole file.
pub fn tensor_range(bytes: &[u8], name: &str) -> std::ops::Range<usize> {
    let n = u64::from_le_bytes(bytes[..8].try_into().unwrap()) as usize;
    let (header, _) = split(bytes);
    let off = &header[name]["data_offsets"];
    let (a, b) = (
        off[0].as_u64().unwrap() as usize,
        off[1].as_u64().unwrap() as usize,
    );
    8 + n + a..8 + n + b
}
