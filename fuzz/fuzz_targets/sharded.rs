//! Any bytes as a sharded checkpoint (an index and two shards in a
//! directory) given to the sharded reader, the streaming int8 compressor and
//! the sharded container loader: errors or results, never a panic, and
//! nothing left behind but what the writer finished.
#![no_main]

use libfuzzer_sys::fuzz_target;
use squish::io::{CompressedModel, ContainerWriter, ShardedModel};
use squish::parallel::Sequential;
use squish::recipe::{Recipe, StreamCompression};

fuzz_target!(|data: &[u8]| {
    if data.len() < 2 {
        return;
    }
    // [index length: u16 LE][index JSON][shard 1 | shard 2, split in half]
    let n = (u16::from_le_bytes([data[0], data[1]]) as usize).min(data.len() - 2);
    let (index, rest) = data[2..].split_at(n);
    let (a, b) = rest.split_at(rest.len() / 2);
    let dir = tempfile::tempdir().expect("a temporary directory");
    let d = dir.path();
    std::fs::write(d.join("model.safetensors.index.json"), index).unwrap();
    std::fs::write(d.join("model-00001-of-00002.safetensors"), a).unwrap();
    std::fs::write(d.join("model-00002-of-00002.safetensors"), b).unwrap();

    let _ = CompressedModel::open(d);
    let Ok(src) = ShardedModel::open(d) else {
        return;
    };
    for t in src.tensors() {
        let _ = src.read(t);
    }
    let recipe = Recipe::from_toml("[default]\npipeline = [{ method = \"int8\" }]").unwrap();
    let out = d.join("out");
    let Ok(w) = ContainerWriter::sharded(&out, 4096) else {
        return;
    };
    let s = StreamCompression::default();
    if s.compress_to(&src, &recipe, &Sequential, w, &mut |_| {}).is_ok() {
        // What the streaming writer finished must load back.
        CompressedModel::open(&out).expect("a streamed container loads");
    }
});
