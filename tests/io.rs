//! Files: safetensors in and out, the compressed container, hostile input.

mod common;

use common::*;
use ndarray::Array2;
use squish::io::{CompressedModel, CompressedTensor, Dtype, Entry, FileError, Model, Tensor};
use squish::SquishError;

fn bits(a: &Array2<f32>) -> Vec<u32> {
    a.iter().map(|x| x.to_bits()).collect()
}

fn file_err(r: squish::Result<CompressedModel>) -> FileError {
    match r {
        Err(SquishError::File(e)) => e,
        Err(e) => panic!("expected a FileError, got {e:?}"),
        Ok(_) => panic!("expected an error, the file loaded"),
    }
}

#[test]
fn every_structure_and_encoding_round_trips_bit_for_bit() {
    let model = container();
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("m.squish");
    model.save(&path).unwrap();
    let back = CompressedModel::load(&path).unwrap();
    assert_eq!(back.len(), model.len());
    let x = random(3, 20, 9);
    let x_wide = random(2, 70_000, 10);
    let mut checked = 0;
    for ((n1, e1), (n2, e2)) in model.iter().zip(back.iter()) {
        assert_eq!(n1, n2);
        assert_eq!(e1, e2, "{n1}");
        let (Entry::Compressed(a), Entry::Compressed(b)) = (e1, e2) else {
            continue;
        };
        let (ma, mb) = (a.matrix(), b.matrix());
        assert_eq!(
            ma.structure().kind(),
            mb.structure().kind(),
            "{}",
            a.method()
        );
        assert_eq!(ma.encoding(), mb.encoding(), "{}", a.method());
        assert_eq!(ma.storage(), mb.storage(), "{}", a.method());
        assert_eq!(bits(&ma.to_dense()), bits(&mb.to_dense()), "{}", a.method());
        let x = if ma.cols() == 20 { &x } else { &x_wide };
        let (ya, yb) = (ma.matmul(x.view()).unwrap(), mb.matmul(x.view()).unwrap());
        assert_eq!(bits(&ya), bits(&yb), "{}", a.method());
        // The loaded matrix multiplies in compressed form like the reference.
        let yr = mb.matmul_reference(x.view()).unwrap();
        for (p, q) in yb.iter().zip(yr.iter()) {
            assert!((p - q).abs() <= 1e-4 * (1.0 + q.abs()), "{}", a.method());
        }
        checked += 1;
    }
    // 5 stored structures × 9 encodings + low rank.
    assert_eq!(checked, 5 * 9 + 1);
    // Saving what was loaded gives an equal container again.
    assert_eq!(
        CompressedModel::from_bytes(&back.to_bytes().unwrap()).unwrap(),
        model
    );
}

#[test]
fn container_opens_as_plain_safetensors_with_typed_components() {
    let bytes = container().to_bytes().unwrap();
    let plain = Model::from_bytes(&bytes).unwrap();
    // int8 codes are I8, packed bits U8, CSR u32 indices U32, scales F32.
    let layer = |i: usize, part: &str| plain.get(&format!("layer{i}.weight::{part}")).unwrap();
    assert_eq!(layer(1, "values").dtype(), Dtype::I8);
    assert_eq!(layer(1, "scales").dtype(), Dtype::F32);
    assert_eq!(layer(3, "values").dtype(), Dtype::U8);
    assert_eq!(layer(9, "row_ptr").dtype(), Dtype::U32);
    assert_eq!(layer(9, "col_idx").dtype(), Dtype::U16);
    assert_eq!(layer(18, "col_idx").dtype(), Dtype::U32);
    assert_eq!(layer(45, "a.values").dtype(), Dtype::I8);
    assert_eq!(layer(45, "b.col_idx").dtype(), Dtype::U16);
    assert_eq!(
        plain.get("bias").unwrap().as_f32().unwrap(),
        &[1.0, 2.0, 3.0]
    );
    assert_eq!(plain.metadata()["squish.version"], "1");
}

fn le_model() -> Model {
    let mut m = Model::new();
    let w = random(6, 2 * 3 * 3, 5);
    m.insert(
        "conv.weight",
        Tensor::float(Dtype::F32, vec![6, 2, 3, 3], w.iter().copied().collect()).unwrap(),
    )
    .unwrap();
    let h = random(4, 8, 6);
    m.insert(
        "fc16.weight",
        Tensor::float(Dtype::F16, vec![4, 8], h.iter().copied().collect()).unwrap(),
    )
    .unwrap();
    m.insert(
        "fcbf.weight",
        Tensor::float(Dtype::BF16, vec![4, 8], h.iter().copied().collect()).unwrap(),
    )
    .unwrap();
    m.insert(
        "norm",
        Tensor::float(Dtype::F32, vec![8], vec![0.5; 8]).unwrap(),
    )
    .unwrap();
    let ids: Vec<u8> = (0i64..5).flat_map(|i| i.to_le_bytes()).collect();
    m.insert(
        "position_ids",
        Tensor::raw(Dtype::I64, vec![1, 5], ids).unwrap(),
    )
    .unwrap();
    m.set_metadata("format", "pt");
    m
}

#[test]
fn safetensors_load_converts_floats_and_carries_the_rest() {
    let m = le_model();
    let dir = tempfile::tempdir().unwrap();
    let p = dir.path().join("model.safetensors");
    m.save(&p).unwrap();
    let back = Model::load(&p).unwrap();
    assert_eq!(
        back.metadata().get("format").map(String::as_str),
        Some("pt")
    );
    // f16 / bf16 widen to the nearest representable values (half's rounding).
    let f16 = back.get("fc16.weight").unwrap();
    let src = random(4, 8, 6);
    for (a, b) in f16.as_f32().unwrap().iter().zip(src.iter()) {
        assert_eq!(*a, half::f16::from_f32(*b).to_f32());
    }
    let bf = back.get("fcbf.weight").unwrap();
    for (a, b) in bf.as_f32().unwrap().iter().zip(src.iter()) {
        assert_eq!(*a, half::bf16::from_f32(*b).to_f32());
        assert!((a - b).abs() <= b.abs() / 128.0);
    }
    // The conv kernel is a [out, in·kh·kw] matrix and keeps its shape.
    let conv = back.get("conv.weight").unwrap();
    assert_eq!(conv.shape(), &[6, 2, 3, 3]);
    assert_eq!(conv.matrix().unwrap().dim(), (6, 18));
    assert!(back.get("norm").unwrap().matrix().is_none());
    // int64 carried byte for byte.
    assert_eq!(back.get("position_ids"), m.get("position_ids"));
    // A second save of the loaded model gives the same tensors.
    let again = Model::from_bytes(&back.to_bytes().unwrap()).unwrap();
    assert_eq!(again, back);
}

#[test]
fn export_restores_names_shapes_dtypes_and_decoded_values() {
    let m = Model::from_bytes(&le_model().to_bytes().unwrap()).unwrap();
    let recipe = squish::recipe::Recipe::from_toml(
        "[default]\npipeline = [{ method = \"int4\", granularity = \"per-group\", group_size = 4 }]\n",
    )
    .unwrap();
    let c = squish::recipe::compress_model(&m, &recipe, &squish::parallel::Sequential, &|_| {})
        .unwrap();
    let dir = tempfile::tempdir().unwrap();
    let cp = dir.path().join("c.squish");
    c.model.save(&cp).unwrap();
    let loaded = CompressedModel::load(&cp).unwrap();
    let out = dir.path().join("dense.safetensors");
    loaded.decompress().save(&out).unwrap();
    let dense = Model::load(&out).unwrap();
    let names: Vec<&str> = dense.iter().map(|(n, _)| n).collect();
    let orig: Vec<&str> = m.iter().map(|(n, _)| n).collect();
    assert_eq!(names, orig);
    for (name, t) in m.iter() {
        let d = dense.get(name).unwrap();
        assert_eq!(d.dtype(), t.dtype(), "{name}");
        assert_eq!(d.shape(), t.shape(), "{name}");
        match loaded.get(name).unwrap() {
            Entry::Compressed(ct) => {
                // The exported values are the decoded matrix, rounded to the dtype.
                let dec = ct.matrix().to_dense();
                for (a, b) in d.as_f32().unwrap().iter().zip(dec.iter()) {
                    let want = match t.dtype() {
                        Dtype::F16 => half::f16::from_f32(*b).to_f32(),
                        Dtype::BF16 => half::bf16::from_f32(*b).to_f32(),
                        _ => *b,
                    };
                    assert_eq!(a.to_bits(), want.to_bits(), "{name}");
                }
            }
            Entry::Plain(p) => assert_eq!(p, d),
        }
    }
    assert_eq!(dense.get("conv.weight").unwrap().shape(), &[6, 2, 3, 3]);
}

#[test]
fn atomic_save_replaces_whole_files_and_failed_saves_keep_the_old_one() {
    let dir = tempfile::tempdir().unwrap();
    let p = dir.path().join("m.squish");
    let model = container();
    model.save(&p).unwrap();
    let first = std::fs::read(&p).unwrap();
    #[cfg(unix)]
    {
        use std::os::unix::fs::PermissionsExt;
        let mode = std::fs::metadata(&p).unwrap().permissions().mode() & 0o777;
        let other = tempfile::tempdir().unwrap();
        let plain = other.path().join("plain");
        std::fs::write(&plain, b"").unwrap();
        let usual = std::fs::metadata(&plain).unwrap().permissions().mode() & 0o777;
        assert_eq!(
            mode, usual,
            "a new file has the user's usual mode, not the temporary file's 0600"
        );
        std::fs::set_permissions(&p, std::fs::Permissions::from_mode(0o640)).unwrap();
        model.save(&p).unwrap();
        let mode = std::fs::metadata(&p).unwrap().permissions().mode() & 0o777;
        assert_eq!(mode, 0o640, "a replaced file keeps its permissions");
    }
    // A save that fails (two tensors under one name) leaves the file as it was
    // and no temporary file behind.
    let mut bad = container();
    let clash = Tensor::float(Dtype::F32, vec![1], vec![0.0]).unwrap();
    bad.insert_plain("layer0.weight::values", clash).unwrap();
    assert!(matches!(
        bad.save(&p),
        Err(SquishError::File(FileError::DuplicateName { .. }))
    ));
    assert_eq!(std::fs::read(&p).unwrap(), first);
    let entries: Vec<_> = std::fs::read_dir(dir.path()).unwrap().collect();
    assert_eq!(entries.len(), 1);
    // Saving into a missing directory is an I/O error naming the path.
    let err = model
        .save(dir.path().join("no/such/dir/m.squish"))
        .unwrap_err();
    assert!(
        matches!(err, SquishError::File(FileError::Io { .. })),
        "{err}"
    );
}

#[test]
fn hostile_truncated_file() {
    let bytes = container().to_bytes().unwrap();
    for cut in [0, 5, 8, 100, bytes.len() / 2, bytes.len() - 1] {
        let e = file_err(CompressedModel::from_bytes(&bytes[..cut]));
        assert!(matches!(e, FileError::Safetensors(_)), "cut {cut}: {e}");
    }
    let dir = tempfile::tempdir().unwrap();
    let p = dir.path().join("short.squish");
    std::fs::write(&p, &bytes[..bytes.len() - 3]).unwrap();
    assert!(matches!(
        file_err(CompressedModel::load(&p)),
        FileError::Safetensors(_)
    ));
    assert!(matches!(
        file_err(CompressedModel::load(dir.path().join("missing"))),
        FileError::Io { .. }
    ));
}

#[test]
fn hostile_header_lies_about_sizes_and_offsets() {
    let bytes = container().to_bytes().unwrap();
    // Header length beyond the file.
    let mut b = bytes.clone();
    b[..8].copy_from_slice(&(bytes.len() as u64 * 2).to_le_bytes());
    assert!(matches!(
        file_err(CompressedModel::from_bytes(&b)),
        FileError::Safetensors(_)
    ));
    b[..8].copy_from_slice(&u64::MAX.to_le_bytes());
    assert!(matches!(
        file_err(CompressedModel::from_bytes(&b)),
        FileError::Safetensors(_)
    ));
    // A tensor whose offsets run past the data, or whose shape disagrees.
    let (mut h, data) = split(&bytes);
    h["bias"]["data_offsets"][1] = serde_json::json!(1u64 << 40);
    assert!(matches!(
        file_err(CompressedModel::from_bytes(&join(&h, &data))),
        FileError::Safetensors(_)
    ));
    let (mut h, data) = split(&bytes);
    h["bias"]["shape"] = serde_json::json!([1u64 << 62, 1u64 << 62]);
    assert!(matches!(
        file_err(CompressedModel::from_bytes(&join(&h, &data))),
        FileError::Safetensors(_)
    ));
}

#[test]
fn hostile_huge_declared_shape() {
    let bytes = container().to_bytes().unwrap();
    for rows in [1u64 << 40, u64::MAX] {
        let b = edit_description(&bytes, |d| {
            d["tensors"][0]["matrix"]["rows"] = serde_json::json!(rows)
        });
        let e = file_err(CompressedModel::from_bytes(&b));
        assert!(
            matches!(
                e,
                FileError::TooLarge { .. } | FileError::Description { .. }
            ),
            "{e}"
        );
    }
    // Large but representable: the components do not hold that many values.
    let b = edit_description(&bytes, |d| {
        d["tensors"][0]["matrix"]["rows"] = serde_json::json!(1u64 << 30);
        d["tensors"][0]["matrix"]["cols"] = serde_json::json!(1u64 << 30);
    });
    let e = file_err(CompressedModel::from_bytes(&b));
    assert!(matches!(e, FileError::BadComponent { .. }), "{e}");
    // A packed encoding declaring more values than its bytes hold.
    let b = edit_description(&bytes, |d| {
        d["tensors"][3]["matrix"]["rows"] = serde_json::json!(1u64 << 31)
    });
    let e = file_err(CompressedModel::from_bytes(&b));
    assert!(matches!(e, FileError::Invalid { .. }), "{e}");
    // The original shape disagreeing with the matrix.
    let b = edit_description(&bytes, |d| {
        d["tensors"][0]["shape"] = serde_json::json!([1u64 << 33, 1u64 << 33])
    });
    let e = file_err(CompressedModel::from_bytes(&b));
    assert!(matches!(e, FileError::Invalid { .. }), "{e}");
}

#[test]
fn hostile_bad_checksum() {
    let bytes = container().to_bytes().unwrap();
    let mut b = bytes.clone();
    let r = tensor_range(&bytes, "layer1.weight::values");
    b[r.start + 3] ^= 0x10;
    let e = file_err(CompressedModel::from_bytes(&b));
    assert!(
        matches!(e, FileError::Checksum { ref tensor, .. } if tensor == "layer1.weight"),
        "{e}"
    );
    let b = edit_description(&bytes, |d| {
        let c = d["tensors"][2]["crc32"].as_u64().unwrap();
        d["tensors"][2]["crc32"] = serde_json::json!(c ^ 1);
    });
    assert!(matches!(
        file_err(CompressedModel::from_bytes(&b)),
        FileError::Checksum { .. }
    ));
    // Plain tensors are checksummed too.
    let mut b = bytes.clone();
    let r = tensor_range(&bytes, "bias");
    b[r.start] ^= 1;
    assert!(matches!(
        file_err(CompressedModel::from_bytes(&b)),
        FileError::Checksum { .. }
    ));
}

#[test]
fn hostile_unknown_version_encoding_and_missing_parts() {
    let bytes = container().to_bytes().unwrap();
    let (mut h, data) = split(&bytes);
    h["__metadata__"]["squish.version"] = serde_json::json!("2");
    let e = file_err(CompressedModel::from_bytes(&join(&h, &data)));
    assert!(
        matches!(
            e,
            FileError::UnsupportedVersion {
                found: 2,
                supported: 1
            }
        ),
        "{e}"
    );
    h["__metadata__"]["squish.version"] = serde_json::json!("one");
    assert!(matches!(
        file_err(CompressedModel::from_bytes(&join(&h, &data))),
        FileError::Description { .. }
    ));
    // An encoding this build does not know, an unknown field.
    let b = edit_description(&bytes, |d| {
        d["tensors"][1]["matrix"]["values"]["kind"] = serde_json::json!("huffman")
    });
    let e = file_err(CompressedModel::from_bytes(&b));
    assert!(
        matches!(e, FileError::Description { ref detail } if detail.contains("huffman")),
        "{e}"
    );
    let b = edit_description(&bytes, |d| d["tensors"][1]["extra"] = serde_json::json!(1));
    assert!(matches!(
        file_err(CompressedModel::from_bytes(&b)),
        FileError::Description { .. }
    ));
    // Not a container at all.
    let plain = le_model().to_bytes().unwrap();
    assert!(matches!(
        file_err(CompressedModel::from_bytes(&plain)),
        FileError::NotAContainer { .. }
    ));
    // A component renamed away, or of the wrong dtype.
    let (mut h, data) = split(&bytes);
    let v = h
        .as_object_mut()
        .unwrap()
        .remove("layer1.weight::scales")
        .unwrap();
    h["layer1.weight::renamed"] = v;
    let e = file_err(CompressedModel::from_bytes(&join(&h, &data)));
    assert!(
        matches!(e, FileError::MissingComponent { ref component, .. } if component == "layer1.weight::scales"),
        "{e}"
    );
    let (mut h, data) = split(&bytes);
    h["layer1.weight::values"]["dtype"] = serde_json::json!("U8");
    assert!(matches!(
        file_err(CompressedModel::from_bytes(&join(&h, &data))),
        FileError::BadComponent { .. }
    ));
}

#[test]
fn hostile_parts_that_pass_the_checksum_but_break_invariants() {
    // Rewrite a CSR column index so a row is no longer increasing and fix
    // the checksum: the validating constructor must refuse it.
    let model = container();
    let bytes = model.to_bytes().unwrap();
    let name = "layer9.weight";
    let Some(Entry::Compressed(t)) = model.get(name) else {
        panic!()
    };
    assert_eq!(t.matrix().structure().kind(), "csr");
    let mut b = bytes.clone();
    let r = tensor_range(&bytes, &format!("{name}::col_idx"));
    b[r.start..r.start + 4].copy_from_slice(&[5, 0, 5, 0]); // two equal u16 indices
    let parts = ["row_ptr", "col_idx", "values"];
    let mut h = crc32fast::Hasher::new();
    for p in parts {
        h.update(&b[tensor_range(&bytes, &format!("{name}::{p}"))]);
    }
    let crc = h.finalize();
    let b = edit_description(&b, |d| d["tensors"][9]["crc32"] = serde_json::json!(crc));
    let e = file_err(CompressedModel::from_bytes(&b));
    assert!(matches!(e, FileError::Invalid { .. }), "{e}");
    // A NaN in f32 values.
    let name = "layer0.weight";
    let mut b = bytes.clone();
    let r = tensor_range(&bytes, &format!("{name}::values"));
    b[r.start..r.start + 4].copy_from_slice(&f32::NAN.to_le_bytes());
    let crc = crc32fast::hash(&b[r]);
    let b = edit_description(&b, |d| d["tensors"][0]["crc32"] = serde_json::json!(crc));
    let e = file_err(CompressedModel::from_bytes(&b));
    assert!(
        matches!(e, FileError::Invalid { ref source, .. } if matches!(**source, SquishError::NonFinite { .. })),
        "{e}"
    );
}

#[test]
fn compressed_tensor_checks_its_shape() {
    let m = squish::matrix::CompressedMatrix::from_dense(random(4, 6, 1).view()).unwrap();
    assert!(CompressedTensor::new(m.clone(), Dtype::F32, vec![4, 2, 3], "").is_ok());
    assert!(CompressedTensor::new(m.clone(), Dtype::F32, vec![4, 5], "").is_err());
    assert!(CompressedTensor::new(m.clone(), Dtype::F32, vec![24], "").is_err());
    assert!(CompressedTensor::new(m, Dtype::I32, vec![4, 6], "").is_err());
}
