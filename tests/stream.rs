//! Sharded checkpoints and streaming compression: the streamed container
//! against the in-memory path (byte for byte) and against compressing each
//! tensor alone, hostile shard sets, half-precision exports, and a ≥ 1 GB
//! bf16 model in several shards.

use std::path::{Path, PathBuf};

use half::bf16;
use squish::io::{
    export_dequantized, CompressedModel, ContainerWriter, Dtype, Entry, ExportDtype, FileError,
    Model, ModelWriter, ShardError, ShardedModel, Tensor, INDEX_NAME,
};
use squish::parallel::{Sequential, ThreadPool};
use squish::recipe::{compress_model, Recipe, StreamCompression};
use squish::SquishError;

/// Deterministic values spread like weights (xorshift, uniform in ±scale).
fn values(n: usize, seed: u64, scale: f32) -> Vec<f32> {
    let mut s = seed.wrapping_mul(0x9E37_79B9_7F4A_7C15) | 1;
    (0..n)
        .map(|_| {
            s ^= s << 13;
            s ^= s >> 7;
            s ^= s << 17;
            ((s >> 40) as f32 / (1u64 << 24) as f32 * 2.0 - 1.0) * scale
        })
        .collect()
}

fn float(dtype: Dtype, shape: &[usize], seed: u64) -> Tensor {
    let n = shape.iter().product();
    Tensor::float(dtype, shape.to_vec(), values(n, seed, 0.5)).unwrap()
}

/// A small model with every kind of tensor: bf16/f16/f32 matrices, a conv
/// kernel, vectors, an integer buffer.
fn small_model() -> Model {
    let mut m = Model::new();
    m.insert("embed.weight", float(Dtype::BF16, &[64, 32], 1))
        .unwrap();
    for l in 0..3 {
        m.insert(
            format!("h.{l}.attn.q.weight"),
            float(Dtype::BF16, &[32, 32], 10 + l),
        )
        .unwrap();
        m.insert(
            format!("h.{l}.mlp.up.weight"),
            float(Dtype::F16, &[64, 32], 20 + l),
        )
        .unwrap();
        m.insert(format!("h.{l}.norm"), float(Dtype::BF16, &[32], 30 + l))
            .unwrap();
    }
    m.insert("conv.weight", float(Dtype::F32, &[8, 4, 3, 3], 40))
        .unwrap();
    let ids: Vec<u8> = (0..16i64).flat_map(|i| i.to_le_bytes()).collect();
    m.insert(
        "position_ids",
        Tensor::raw(Dtype::I64, vec![16], ids).unwrap(),
    )
    .unwrap();
    // As a file holds it: values rounded to each tensor's dtype.
    Model::from_bytes(&m.to_bytes().unwrap()).unwrap()
}

const MIXED: &str = r#"
[[rule]]
pattern = "*.attn.*"
pipeline = [{ method = "magnitude", sparsity = 0.5 }, { method = "int8" }]

[[rule]]
pattern = "*.mlp.*"
pipeline = [{ method = "int4", granularity = "per-group", group_size = 16 }]

[[rule]]
pattern = "embed.*"
pipeline = []

[[rule]]
pattern = "conv.*"
pipeline = [{ method = "lowrank", rank = 3 }, { method = "int8" }]

[default]
pipeline = [{ method = "int8", granularity = "per-row" }]
"#;

/// Splits `m` into `parts` shards with a Hugging Face index in `dir`.
fn write_sharded(m: &Model, dir: &Path, parts: usize) -> Vec<PathBuf> {
    let names: Vec<&str> = m.iter().map(|(n, _)| n).collect();
    let per = names.len().div_ceil(parts);
    let mut map = serde_json::Map::new();
    let mut files = Vec::new();
    for (i, chunk) in names.chunks(per).enumerate() {
        let file = format!("model-{:05}-of-{parts:05}.safetensors", i + 1);
        let mut shard = Model::new();
        for &n in chunk {
            shard.insert(n, m.get(n).unwrap().clone()).unwrap();
            map.insert(n.to_string(), file.clone().into());
        }
        shard.save(dir.join(&file)).unwrap();
        files.push(dir.join(file));
    }
    let index = serde_json::json!({"metadata": {"total_size": 0}, "weight_map": map});
    std::fs::write(dir.join(INDEX_NAME), index.to_string()).unwrap();
    files
}

fn listing(dir: &Path) -> Vec<String> {
    let mut v: Vec<String> = std::fs::read_dir(dir)
        .unwrap()
        .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
        .collect();
    v.sort();
    v
}

#[test]
fn streamed_container_is_byte_identical_to_the_in_memory_one() {
    let dir = tempfile::tempdir().unwrap();
    let model = small_model();
    let path = dir.path().join("model.safetensors");
    model.save(&path).unwrap();
    let pool = ThreadPool::new(2).unwrap();
    for recipe in [
        Recipe::from_toml(MIXED).unwrap(),
        Recipe::from_toml("[default]\npipeline = [{ method = \"int8\" }]").unwrap(),
    ] {
        let whole = compress_model(&Model::load(&path).unwrap(), &recipe, &Sequential, &|_| {})
            .unwrap()
            .model
            .to_bytes()
            .unwrap();
        let src = ShardedModel::open(&path).unwrap();
        // Budgets from one tensor per batch to all at once, on 1 and 2 threads.
        for budget in [1 << 20, 64 << 20] {
            for exec in [
                &Sequential as &dyn squish::parallel::ParallelExecutor,
                &pool,
            ] {
                let out = dir.path().join("out.squish");
                let s = StreamCompression::params()
                    .budget_bytes(budget)
                    .check()
                    .unwrap();
                s.compress_to(
                    &src,
                    &recipe,
                    exec,
                    ContainerWriter::create(&out).unwrap(),
                    &mut |_| {},
                )
                .unwrap();
                assert!(std::fs::read(&out).unwrap() == whole, "budget {budget}");
            }
        }
    }
    assert_eq!(listing(dir.path()), ["model.safetensors", "out.squish"]);
}

#[test]
fn sharded_input_reads_as_one_model_and_sharded_output_loads_back() {
    let dir = tempfile::tempdir().unwrap();
    let model = small_model();
    let src_dir = dir.path().join("src");
    std::fs::create_dir(&src_dir).unwrap();
    write_sharded(&model, &src_dir, 3);
    let src = ShardedModel::open(&src_dir).unwrap();
    assert_eq!(src.shards().len(), 3);
    // Same tensors as the model (shard order = the order they were split in).
    let back = src.to_model().unwrap();
    assert_eq!(back.len(), model.len());
    for (n, t) in model.iter() {
        assert!(back.get(n) == Some(t), "{n}");
    }
    // Via the index file too.
    assert_eq!(
        ShardedModel::open(src_dir.join(INDEX_NAME))
            .unwrap()
            .tensors(),
        src.tensors()
    );

    let recipe = Recipe::from_toml(MIXED).unwrap();
    let whole = compress_model(&back, &recipe, &Sequential, &|_| {}).unwrap();
    let out_dir = dir.path().join("out");
    let summary = StreamCompression::default()
        .compress_to(
            &src,
            &recipe,
            &ThreadPool::new(2).unwrap(),
            ContainerWriter::sharded(&out_dir, 4096).unwrap(),
            &mut |_| {},
        )
        .unwrap();
    assert!(summary.written.files.len() > 1, "{:?}", summary.written);
    assert!(CompressedModel::open(&out_dir).unwrap() == whole.model);
    assert_eq!(summary.totals(), whole.totals(&back));
    assert_eq!(summary.layers.len(), whole.layers.len());

    // The dequantized export, sharded, in bf16: Hugging Face's layout, and
    // each tensor the container's dequantized values rounded to bf16.
    let exp_dir = dir.path().join("export");
    let w = export_dequantized(
        &out_dir,
        ModelWriter::sharded(&exp_dir, 8192).unwrap(),
        ExportDtype::BF16,
    )
    .unwrap();
    assert!(w.files.len() > 1);
    let exported = ShardedModel::open(&exp_dir).unwrap().to_model().unwrap();
    for (n, t) in whole.model.decompress().iter() {
        let e = exported.get(n).unwrap();
        assert_eq!(e.shape(), t.shape(), "{n}");
        if let Some(v) = t.as_f32() {
            assert_eq!(e.dtype(), Dtype::BF16, "{n}");
            let want: Vec<f32> = v.iter().map(|&x| bf16::from_f32(x).to_f32()).collect();
            assert!(e.as_f32().unwrap() == &want[..], "{n}");
        } else {
            assert!(e == t, "{n}");
        }
    }
}

/// Expects a sharded-checkpoint error whose message names `file` and `tensor`.
fn expect_shard_error(r: squish::Result<impl std::fmt::Debug>, file: &str, tensor: &str) {
    let e = r.expect_err("a hostile shard set must fail");
    assert!(
        matches!(e, SquishError::File(FileError::Shard(_))),
        "not a shard error: {e:?}"
    );
    let msg = e.to_string();
    assert!(
        msg.contains(file) && msg.contains(tensor),
        "{msg:?} should name {file} and {tensor}"
    );
}

#[test]
fn hostile_shard_sets_give_typed_errors_and_leave_no_output() {
    let model = small_model();
    let recipe = Recipe::from_toml("[default]\npipeline = [{ method = \"int8\" }]").unwrap();
    let case = |edit: &dyn Fn(&Path, &[PathBuf]), file: &str, tensor: &str| {
        let dir = tempfile::tempdir().unwrap();
        let files = write_sharded(&model, dir.path(), 3);
        edit(dir.path(), &files);
        let before = listing(dir.path());
        expect_shard_error(ShardedModel::open(dir.path()), file, tensor);
        expect_shard_error(CompressedModel::open(dir.path()), file, tensor);
        assert_eq!(listing(dir.path()), before, "nothing written");
    };
    let index = |dir: &Path| -> serde_json::Value {
        serde_json::from_slice(&std::fs::read(dir.join(INDEX_NAME)).unwrap()).unwrap()
    };
    let save_index = |dir: &Path, v: &serde_json::Value| {
        std::fs::write(dir.join(INDEX_NAME), v.to_string()).unwrap()
    };

    // The index names a shard that is not there.
    case(
        &|dir, _| {
            let mut v = index(dir);
            v["weight_map"]["h.0.norm"] = "model-00009-of-00009.safetensors".into();
            save_index(dir, &v);
        },
        "model-00009-of-00009.safetensors",
        "h.0.norm",
    );
    // A path that escapes the directory.
    case(
        &|dir, _| {
            let mut v = index(dir);
            v["weight_map"]["conv.weight"] = "../elsewhere.safetensors".into();
            save_index(dir, &v);
        },
        "../elsewhere.safetensors",
        "conv.weight",
    );
    case(
        &|dir, _| {
            let mut v = index(dir);
            v["weight_map"]["conv.weight"] = "/etc/passwd".into();
            save_index(dir, &v);
        },
        "/etc/passwd",
        "conv.weight",
    );
    // The index places a tensor in a shard whose header does not hold it.
    case(
        &|dir, _| {
            let mut v = index(dir);
            v["weight_map"]["h.0.norm"] = "model-00003-of-00003.safetensors".into();
            save_index(dir, &v);
        },
        "model-00003-of-00003.safetensors",
        "h.0.norm",
    );
    // The same tensor in two shards (the second shard gains a copy).
    case(
        &|_, files| {
            let mut last = Model::load(&files[2]).unwrap();
            last.insert("embed.weight", model.get("embed.weight").unwrap().clone())
                .unwrap();
            last.save(&files[2]).unwrap();
        },
        "model-00003-of-00003.safetensors",
        "embed.weight",
    );
    // A shard holding a tensor the index does not list.
    case(
        &|_, files| {
            let mut last = Model::load(&files[2]).unwrap();
            last.insert("stray", float(Dtype::F32, &[2], 1)).unwrap();
            last.save(&files[2]).unwrap();
        },
        "model-00003-of-00003.safetensors",
        "stray",
    );
    // A truncated shard: the error names the tensor that runs past the end
    // (the last in the file: ShardedModel lists a shard's tensors by offset).
    let scratch = tempfile::tempdir().unwrap();
    let first = write_sharded(&model, scratch.path(), 3).remove(0);
    let last = ShardedModel::open(&first)
        .unwrap()
        .tensors()
        .last()
        .unwrap()
        .name()
        .to_string();
    case(
        &|_, files| {
            let bytes = std::fs::read(&files[0]).unwrap();
            std::fs::write(&files[0], &bytes[..bytes.len() - 5]).unwrap();
        },
        "model-00001-of-00003.safetensors",
        &last,
    );

    // A shard that disappears between open and compression: typed error, no output.
    let dir = tempfile::tempdir().unwrap();
    let files = write_sharded(&model, dir.path(), 3);
    let src = ShardedModel::open(dir.path()).unwrap();
    std::fs::remove_file(&files[2]).unwrap();
    let out = dir.path().join("out.squish");
    let r = StreamCompression::default().compress_to(
        &src,
        &recipe,
        &Sequential,
        ContainerWriter::create(&out).unwrap(),
        &mut |_| {},
    );
    let e = r.expect_err("the shard is gone");
    assert!(
        matches!(
            e,
            SquishError::File(FileError::Shard(ShardError::Read { .. }))
        ),
        "{e:?}"
    );
    assert!(e.to_string().contains("model-00003-of-00003.safetensors"));
    assert!(!listing(dir.path())
        .iter()
        .any(|n| n.starts_with('.') || n == "out.squish"));
}

/// Writes a synthetic bf16 model of about `bytes` bytes as `shards` shards
/// (4096-wide matrices, norms and an int64 buffer), one tensor in memory at a time.
fn synthetic_bf16(dir: &Path, bytes: u64, shard_bytes: u64) -> u64 {
    let mut w = ModelWriter::sharded(dir, shard_bytes).unwrap();
    let (rows, cols) = (2048usize, 4096usize);
    let per = (rows * cols * 2) as u64;
    let layers = bytes.div_ceil(2 * per);
    let ids: Vec<u8> = (0..512i64).flat_map(|i| i.to_le_bytes()).collect();
    w.push(
        "position_ids",
        &Tensor::raw(Dtype::I64, vec![512], ids).unwrap(),
    )
    .unwrap();
    for l in 0..layers {
        for (k, part) in ["attn.qkv", "mlp.up"].iter().enumerate() {
            let t = Tensor::float(
                Dtype::BF16,
                vec![rows, cols],
                values(rows * cols, l * 2 + k as u64, 0.05),
            )
            .unwrap();
            w.push(&format!("h.{l}.{part}.weight"), &t).unwrap();
        }
        w.push(&format!("h.{l}.norm"), &float(Dtype::BF16, &[cols], l))
            .unwrap();
    }
    w.finish().unwrap().data_bytes
}

#[test]
fn a_gigabyte_of_bf16_shards_streams_tensor_by_tensor() {
    let dir = tempfile::tempdir().unwrap();
    let src_dir = dir.path().join("model");
    let total = synthetic_bf16(&src_dir, 1 << 30, 300 << 20);
    assert!(total >= 1 << 30);
    let src = ShardedModel::open(&src_dir).unwrap();
    assert!(src.shards().len() >= 3);
    let pool = ThreadPool::new(2).unwrap();
    let stream = StreamCompression::default();
    for (label, toml) in [
        ("int8", "[default]\npipeline = [{ method = \"int8\" }]"),
        (
            "mixed",
            r#"
[[rule]]
pattern = "h.0.*"
pipeline = []
[[rule]]
pattern = "*.mlp.*"
pipeline = [{ method = "int4", granularity = "per-group", group_size = 128 }]
[[rule]]
pattern = "h.1.attn.*"
pipeline = [{ method = "magnitude", sparsity = 0.75 }, { method = "int8" }]
[default]
pipeline = [{ method = "int8", granularity = "per-row" }]
"#,
        ),
    ] {
        let recipe = Recipe::from_toml(toml).unwrap();
        let out = dir.path().join(label);
        let summary = stream
            .compress_to(
                &src,
                &recipe,
                &pool,
                ContainerWriter::sharded(&out, 256 << 20).unwrap(),
                &mut |_| {},
            )
            .unwrap();
        assert_eq!(summary.bytes_read, src.data_bytes());
        let c = CompressedModel::open(&out).unwrap();
        assert_eq!(c.len(), src.tensors().len(), "{label}");
        // Each tensor against compressing it alone, from the original bytes.
        for t in src.tensors() {
            let got = c.get(t.name()).unwrap();
            let choice = recipe.choose(t.name());
            let pipeline = recipe.pipeline(choice).unwrap();
            match got {
                Entry::Compressed(ct) => {
                    assert!(
                        t.is_matrix() && !pipeline.is_empty(),
                        "{label} {}",
                        t.name()
                    );
                    let data = src.read_f32(t).unwrap();
                    let w = ndarray::ArrayView2::from_shape((t.shape()[0], t.shape()[1]), &data)
                        .unwrap();
                    let alone = pipeline.run(w).unwrap();
                    assert!(ct.matrix() == &alone.matrix, "{label} {}", t.name());
                    assert_eq!(ct.dtype(), Dtype::BF16);
                    assert_eq!(ct.shape(), t.shape());
                }
                Entry::Plain(p) => {
                    assert!(
                        !t.is_matrix() || pipeline.is_empty(),
                        "{label} {}",
                        t.name()
                    );
                    // Kept as it was: the very bytes, in the original dtype.
                    assert_eq!(p.dtype(), t.dtype());
                    assert!(
                        p.to_bytes() == src.read_bytes(t).unwrap(),
                        "{label} {}",
                        t.name()
                    );
                }
            }
        }
        std::fs::remove_dir_all(&out).unwrap();
    }
}

/// Where a container's data starts: 8 bytes of header length, then the header.
fn data_start(bytes: &[u8]) -> u64 {
    8 + u64::from_le_bytes(bytes[..8].try_into().unwrap())
}

#[test]
fn a_large_container_is_written_in_place_with_the_in_memory_bytes() {
    // 128 MiB of f32 (the size from which the header's space is set aside):
    // the streamed container is written once, behind that space.
    let dir = tempfile::tempdir().unwrap();
    let (rows, cols) = (8192usize, 4096usize);
    let mut m = Model::new();
    m.insert(
        "big.weight",
        Tensor::float(Dtype::F32, vec![rows, cols], values(rows * cols, 7, 0.05)).unwrap(),
    )
    .unwrap();
    m.insert("big.bias", float(Dtype::BF16, &[rows], 8))
        .unwrap();
    let path = dir.path().join("model.safetensors");
    m.save(&path).unwrap();
    drop(m);
    let recipe = Recipe::from_toml("[default]\npipeline = [{ method = \"int8\" }]").unwrap();
    let whole = compress_model(&Model::load(&path).unwrap(), &recipe, &Sequential, &|_| {})
        .unwrap()
        .model
        .to_bytes()
        .unwrap();
    // The header's space: one 4 KiB page plus 2 KiB and a bit per entry.
    let start = data_start(&whole);
    assert_eq!(start % 4096, 0);
    assert!((8192..=12288).contains(&start), "{start}");
    let out = dir.path().join("out.squish");
    let src = ShardedModel::open(&path).unwrap();
    let pool = ThreadPool::new(2).unwrap();
    StreamCompression::default()
        .compress_to(
            &src,
            &recipe,
            &pool,
            ContainerWriter::create(&out).unwrap(),
            &mut |_| {},
        )
        .unwrap();
    assert!(std::fs::read(&out).unwrap() == whole);
    assert_eq!(listing(dir.path()), ["model.safetensors", "out.squish"]);
}

#[test]
fn a_writer_told_other_entries_still_writes_the_in_memory_bytes() {
    // Planned for a large model, pushed a small one (and the other way):
    // the data is copied behind the header it really gets.
    let dir = tempfile::tempdir().unwrap();
    let a = float(Dtype::BF16, &[16, 8], 1);
    let b = float(Dtype::F16, &[8], 2);
    let mut whole = CompressedModel::new();
    whole.insert_plain("a", a.clone()).unwrap();
    whole.insert_plain("b", b.clone()).unwrap();
    let whole = whole.to_bytes().unwrap();
    assert_eq!(data_start(&whole) % 8, 0);
    let big = [1usize << 20, 1 << 10];
    let plans: [&[(&str, Dtype, &[usize])]; 3] = [
        &[("a", Dtype::F32, &big[..]), ("b", Dtype::F16, &[8][..])],
        &[("a", Dtype::BF16, &[16, 8][..])],
        &[],
    ];
    for plan in plans {
        let out = dir.path().join("out.squish");
        let mut w = ContainerWriter::create(&out).unwrap();
        w.plan_entries(plan.iter().copied());
        w.push_plain("a", &a).unwrap();
        w.push_plain("b", &b).unwrap();
        w.finish().unwrap();
        assert!(std::fs::read(&out).unwrap() == whole, "{plan:?}");
    }
    assert_eq!(listing(dir.path()), ["out.squish"]);
}
