//! `squish compress` and `squish decompress` on sharded models (issue #19):
//! streamed under a memory budget, sharded output with an index, half
//! precision out, and the output guards on directories.

mod common;
use common::*;
use std::path::Path;

use squish::io::{CompressedModel, Dtype, Model, ModelWriter, ShardedModel, Tensor, INDEX_NAME};
use squish::parallel::Sequential;
use squish::recipe::{compress_model, Recipe};

/// f32 rounded to the nearest bf16 (ties to even), for finite values.
fn round_bf16(x: f32) -> f32 {
    let b = x.to_bits();
    f32::from_bits(b.wrapping_add(0x7fff + ((b >> 16) & 1)) & 0xffff_0000)
}

fn s(p: &Path) -> &str {
    p.to_str().unwrap()
}

/// A bf16 model of four 96×64 matrices and their biases in shards of at
/// most 16 KiB (one matrix each) with an index.
fn sharded_model(dir: &Path) -> Model {
    let mut w = ModelWriter::sharded(dir, 16 << 10).unwrap();
    let mut m = Model::new();
    for l in 0..4 {
        let v: Vec<f32> = (0..96 * 64)
            .map(|i| (((i * 37 + l * 11) % 101) as f32 - 50.0) / 64.0)
            .collect();
        let t = Tensor::float(Dtype::BF16, vec![96, 64], v).unwrap();
        let b = Tensor::float(Dtype::BF16, vec![96], vec![0.5 + l as f32; 96]).unwrap();
        for (name, t) in [(format!("l{l}.weight"), t), (format!("l{l}.bias"), b)] {
            w.push(&name, &t).unwrap();
            m.insert(name, t).unwrap();
        }
    }
    assert!(w.finish().unwrap().files.len() >= 4);
    m
}

#[test]
fn sharded_models_compress_and_decompress_in_shards() {
    let dir = tempfile::tempdir().unwrap();
    let model_dir = dir.path().join("model");
    let model = sharded_model(&model_dir);
    let out = dir.path().join("out");
    // The directory, a 1 MiB budget, container shards of at most 8 KB.
    let table = ok(&[
        "compress",
        s(&model_dir),
        "--int8",
        "--memory-budget",
        "1",
        "--shard-size",
        "8KB",
        "-o",
        s(&out),
        "--quiet",
    ]);
    assert!(table.contains("total (4 matrices)"), "{table}");
    assert!(table.contains("BF16"), "{table}");
    assert!(table.contains("with 4 tensors kept"), "{table}");
    assert!(
        table.contains("shards and") && table.contains(INDEX_NAME),
        "{table}"
    );
    let recipe = Recipe::from_toml("[default]\npipeline = [{ method = \"int8\" }]").unwrap();
    // The model as read back from its shards (their order, not insertion order).
    let back = ShardedModel::open(&model_dir).unwrap().to_model().unwrap();
    assert_eq!(back.len(), model.len());
    let whole = compress_model(&back, &recipe, &Sequential, &|_| {}).unwrap();
    let got = CompressedModel::open(&out).unwrap();
    assert!(got == whole.model, "streamed shards differ from in memory");
    assert!(ShardedModel::open(&out).unwrap().shards().len() > 1);

    // The index as input, one container file out: the same entries.
    let single = dir.path().join("m.squish");
    ok(&[
        "compress",
        s(&model_dir.join(INDEX_NAME)),
        "--int8",
        "-o",
        s(&single),
        "--quiet",
    ]);
    assert!(CompressedModel::load(&single).unwrap() == whole.model);
    // Inspect lists a sharded container as one.
    let inspect = ok(&["inspect", s(&out)]);
    assert!(inspect.contains("l3.weight"), "{inspect}");

    // Back to bf16 shards with an index; each value is the dequantized one
    // rounded to bf16.
    let dense = dir.path().join("dense");
    let said = ok(&[
        "decompress",
        s(&out),
        "--dtype",
        "bf16",
        "--shard-size",
        "16KB",
        "-o",
        s(&dense),
    ]);
    assert!(said.contains("shards and"), "{said}");
    let exported = ShardedModel::open(&dense).unwrap();
    assert!(exported.shards().len() > 1);
    let exported = exported.to_model().unwrap();
    for (name, t) in whole.model.decompress().iter() {
        let e = exported.get(name).unwrap();
        assert_eq!((e.dtype(), e.shape()), (Dtype::BF16, t.shape()), "{name}");
        let want: Vec<f32> = t.as_f32().unwrap().iter().map(|&x| round_bf16(x)).collect();
        assert_eq!(e.as_f32().unwrap(), &want[..], "{name}");
    }
    // A rerun replaces squish's own shards; f32 and f16 work too.
    ok(&[
        "decompress",
        s(&out),
        "--dtype",
        "f32",
        "--shard-size",
        "16KB",
        "-o",
        s(&dense),
    ]);
    let f32s = ShardedModel::open(&dense).unwrap().to_model().unwrap();
    assert_eq!(f32s.get("l0.weight").unwrap().dtype(), Dtype::F32);
    let one = dir.path().join("half.safetensors");
    ok(&["decompress", s(&single), "--dtype", "f16", "-o", s(&one)]);
    assert_eq!(
        Model::load(&one).unwrap().get("l0.bias").unwrap().dtype(),
        Dtype::F16
    );
    let err = fails(&["decompress", s(&single), "--dtype", "int3", "-o", s(&one)]);
    assert!(err.contains("int3"), "{err}");
}

#[test]
fn sharded_outputs_never_replace_inputs_or_foreign_shards() {
    let dir = tempfile::tempdir().unwrap();
    let model_dir = dir.path().join("model");
    sharded_model(&model_dir);
    let before: Vec<_> = ShardedModel::open(&model_dir)
        .unwrap()
        .shards()
        .iter()
        .map(|p| std::fs::read(p).unwrap())
        .collect();
    // Into the model's own directory: the output is the input.
    let err = fails(&[
        "compress",
        s(&model_dir),
        "--int8",
        "--shard-size",
        "8KB",
        "-o",
        s(&model_dir),
        "--quiet",
    ]);
    assert!(err.contains("input"), "{err}");
    // A directory holding someone else's shards is kept.
    let foreign = dir.path().join("foreign");
    sharded_model(&foreign);
    let err = fails(&[
        "compress",
        s(&model_dir),
        "--int8",
        "--shard-size",
        "8KB",
        "-o",
        s(&foreign),
        "--quiet",
    ]);
    assert!(err.contains("model-00001-of-"), "{err}");
    // One file over a shard of the input.
    let shard = ShardedModel::open(&model_dir).unwrap().shards()[0].clone();
    let err = fails(&[
        "compress",
        s(&model_dir),
        "--int8",
        "-o",
        s(&shard),
        "--quiet",
    ]);
    assert!(err.contains("input"), "{err}");
    let after: Vec<_> = ShardedModel::open(&model_dir)
        .unwrap()
        .shards()
        .iter()
        .map(|p| std::fs::read(p).unwrap())
        .collect();
    assert_eq!(before, after);
    // Nothing was left behind in the refused directory.
    let temps = std::fs::read_dir(&foreign)
        .unwrap()
        .filter(|e| {
            e.as_ref()
                .unwrap()
                .file_name()
                .to_string_lossy()
                .starts_with(".squish-")
        })
        .count();
    assert_eq!(temps, 0);
    // A budget below 1 MiB is a typed error naming the setting.
    let err = fails(&[
        "compress",
        s(&model_dir),
        "--int8",
        "--memory-budget",
        "0",
        "-o",
        s(&dir.path().join("x.squish")),
    ]);
    assert!(err.contains("budget"), "{err}");
}
