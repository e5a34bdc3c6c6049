//! Deep Compression end to end on the bundled digits (64-100-10): exact
//! sizes against an independent hand count, a lossless Huffman stage, and
//! accuracy after compression near the dense model's.

use ndarray::{array, Array2};
use squish::compression::deep::{dense_bytes, DeepCompression, HuffmanCsr, CODED_HEADER_BYTES};
use squish::compression::sharing::KMeans;
use squish::data::digits;
use squish::matrix::{CompressedMatrix, Structure, Values, METADATA_BYTES};
use squish::prelude::*;
use squish::training::{Mlp, Optimizer, Trainer};

/// Bytes of a CSR f32 layer counted by hand: header, u32 row pointer, u16
/// columns, f32 values.
fn hand_csr_f32(rows: usize, nnz: usize) -> usize {
    METADATA_BYTES + 4 * (rows + 1) + 2 * nnz + 4 * nnz
}

/// Bytes of a CSR codebook layer counted by hand: indices packed at `bits`.
fn hand_csr_codebook(rows: usize, nnz: usize, k: usize, bits: usize) -> usize {
    METADATA_BYTES + 4 * (rows + 1) + 2 * nnz + (nnz * bits).div_ceil(8) + 4 * k
}

/// Canonical Huffman code lengths by the textbook pairing of the two
/// smallest weights (independent of the crate's coder), and the total coded
/// bits of `counts`. Zero counts get no code; a lone symbol gets 1 bit.
fn huffman_bits(counts: &[u64]) -> u64 {
    let mut nodes: Vec<(u64, Vec<usize>)> = counts
        .iter()
        .enumerate()
        .filter(|(_, &c)| c > 0)
        .map(|(s, &c)| (c, vec![s]))
        .collect();
    if nodes.len() == 1 {
        return counts.iter().sum();
    }
    let mut depth = vec![0u64; counts.len()];
    while nodes.len() > 1 {
        nodes.sort_by_key(|n| std::cmp::Reverse(n.0));
        let (ca, sa) = nodes.pop().unwrap();
        let (cb, sb) = nodes.pop().unwrap();
        for &s in sa.iter().chain(&sb) {
            depth[s] += 1;
        }
        nodes.push((ca + cb, [sa, sb].concat()));
    }
    counts.iter().zip(&depth).map(|(c, d)| c * d).sum()
}

fn trained() -> (squish::data::Split, Mlp) {
    let d = digits().unwrap();
    let mut mlp: Mlp = Mlp::params(&[64, 100, 10]).seed(3).check().unwrap();
    Trainer::params()
        .epochs(25)
        .batch_size(32)
        .seed(3)
        .optimizer(Optimizer::adam(2e-3).check().unwrap())
        .check()
        .unwrap()
        .fit(&mut mlp, &d.train)
        .unwrap();
    (d, mlp)
}

#[test]
fn stages_sizes_round_trip_and_accuracy() {
    let (d, mlp) = trained();
    let (tx, ty) = (d.test.x(), d.test.y());
    let dense_acc = mlp.accuracy(tx, ty).unwrap();
    assert!(dense_acc > 0.85, "dense {dense_acc}");

    let dc = DeepCompression::params(&[0.2, 0.5], &[5, 4])
        .prune_epochs(6)
        .finetune_epochs(6)
        .centroid_epochs(3)
        .batch_size(32)
        .seed(3)
        .check()
        .unwrap();
    let out = dc.run(&mlp, &d.train).unwrap();

    // Dense bytes by hand: weights and biases as f32, a header per matrix.
    assert_eq!(
        out.dense_bytes,
        4 * (64 * 100 + 100 + 100 * 10 + 10) + 2 * METADATA_BYTES
    );
    assert_eq!(out.dense_bytes, dense_bytes(&mlp).unwrap());

    // Stage 1: exactly ⌈density·n⌉ weights kept, sizes by hand.
    let nnz = [6400 - (0.8f64 * 6400.0) as usize, 1000 - 500];
    let bias_bytes = 4 * (100 + 10);
    let mut hand1 = bias_bytes;
    let mut hand2 = bias_bytes;
    for (l, (m, &(rows, k, bits))) in out
        .pruned
        .layers()
        .iter()
        .zip(&[(100usize, 32usize, 5usize), (10, 16, 4)])
        .enumerate()
    {
        let Structure::Csr(c) = m.structure() else {
            panic!("layer {l} is not CSR")
        };
        assert_eq!(c.nnz(), nnz[l], "layer {l}");
        assert_eq!(m.storage().total(), hand_csr_f32(rows, nnz[l]));
        hand1 += hand_csr_f32(rows, nnz[l]);
        let s = &out.shared.layers()[l];
        assert_eq!(
            s.storage().total(),
            hand_csr_codebook(rows, nnz[l], k, bits)
        );
        hand2 += hand_csr_codebook(rows, nnz[l], k, bits);
        // The pruned weights are the masked ones, and they are zero.
        let w = m.to_dense();
        let mask = out.masks.layer(l).unwrap();
        assert!(w
            .iter()
            .zip(mask.iter())
            .all(|(&v, &keep)| keep || v == 0.0));
    }
    assert_eq!(out.pruned.bytes(), hand1);
    assert_eq!(out.shared.bytes(), hand2);

    // Stage 3: lossless, and its bytes match a hand count with an
    // independent Huffman length computation.
    let mut hand3 = bias_bytes;
    for (c, m) in out.coded.iter().zip(out.shared.layers()) {
        assert_eq!(&c.decode().unwrap(), m.op());
        let (Structure::Csr(csr), Some(Values::Codebook(cb))) = (m.structure(), m.values()) else {
            panic!("stage 2 layers are CSR codebook")
        };
        // Flattened relative positions with fillers of `span`.
        let span = c.span() as u64;
        let mut gap_counts = vec![0u64; span as usize + 1];
        let mut next = 0u64;
        for (i, w) in csr.row_ptr().windows(2).enumerate() {
            for k in w[0] as usize..w[1] as usize {
                let p = (i * m.cols() + csr.col_idx().get(k)) as u64;
                let mut g = p - next;
                while g >= span {
                    gap_counts[span as usize] += 1;
                    g -= span;
                }
                gap_counts[g as usize] += 1;
                next = p + 1;
            }
        }
        let mut idx_counts = vec![0u64; cb.k()];
        for k in 0..cb.indices().len() {
            idx_counts[cb.indices().get(k) as usize] += 1;
        }
        let (gb, ib) = (huffman_bits(&gap_counts), huffman_bits(&idx_counts));
        assert_eq!(c.position_bits(), gb);
        assert_eq!(c.index_bits(), ib);
        let hand = METADATA_BYTES
            + CODED_HEADER_BYTES
            + gb.div_ceil(8) as usize
            + (span as usize + 1)
            + ib.div_ceil(8) as usize
            + cb.k() * 5; // f32 centroid + one code-length byte each
        assert_eq!(c.storage().total(), hand);
        hand3 += hand;
    }
    assert_eq!(out.coded_bytes(), hand3);
    assert!(out.coded_bytes() < out.shared.bytes());
    assert!(out.shared.bytes() < out.pruned.bytes());
    assert!(out.dense_bytes as f64 / out.coded_bytes() as f64 > 8.0);

    // Accuracy after compression (through the compressed kernels) stays near dense.
    let acc = |m: &squish::training::CompressedMlp| m.accuracy_on(tx, ty, &Sequential).unwrap();
    let (a1, a2) = (acc(&out.pruned), acc(&out.shared));
    assert!(a1 > dense_acc - 0.05, "pruned {a1} vs dense {dense_acc}");
    assert!(a2 > dense_acc - 0.05, "shared {a2} vs dense {dense_acc}");
}

#[test]
fn huffman_csr_hand_example_and_errors() {
    // 2 x 5, stored at flat positions 1, 3, 4, 9; k = 2 codebook.
    let w = array![[0.0f32, 1.0, 0.0, -1.0, 1.0], [0.0, 0.0, 0.0, 0.0, 1.0]];
    let keep = w.mapv(|v| v != 0.0);
    let csr = CompressedMatrix::csr_from_mask(w.view(), keep.view()).unwrap();
    let m = KMeans::params(2).check().unwrap().quantize(&csr).unwrap();
    // span 2: gaps 1 | 1 | 0 | 4 → fillers: 1, 1, 0, (2 2 0) → symbols 1 1 0 2 2 0.
    let h = HuffmanCsr::encode_with_span(&m, 2).unwrap();
    // counts {0: 2, 1: 2, 2: 2} → lengths {1, 2, 2} → 2 + 4 + 4 bits.
    assert_eq!(h.position_bits(), 10);
    // indices: three of +1 and one of −1 → 1 bit each.
    assert_eq!(h.index_bits(), 4);
    assert_eq!(
        h.storage().total(),
        METADATA_BYTES + CODED_HEADER_BYTES + 2 + 3 + 1 + 2 * 5
    );
    assert_eq!(h.decode().unwrap(), m);
    assert_eq!(h.nnz(), 4);
    assert_eq!(HuffmanCsr::encode(&m).unwrap().decode().unwrap(), m);

    // Bad input: not CSR + codebook, bad spans.
    assert!(HuffmanCsr::encode(&csr).is_err());
    let dense = CompressedMatrix::from_dense(w.view()).unwrap();
    assert!(
        HuffmanCsr::encode(&KMeans::params(2).check().unwrap().quantize(&dense).unwrap()).is_err()
    );
    assert!(HuffmanCsr::encode_with_span(&m, 0).is_err());
    assert!(HuffmanCsr::encode_with_span(&m, 70_000).is_err());

    // An all-zero pruned layer codes to nothing and decodes back.
    let z = Array2::<f32>::zeros((3, 4));
    let empty = CompressedMatrix::csr_from_mask(z.view(), z.mapv(|_| false).view()).unwrap();
    let ez = squish::training::with_centroids(
        &KMeans::params(2).check().unwrap().quantize(&empty).unwrap(),
        vec![0.0, 0.0],
    )
    .unwrap();
    let he = HuffmanCsr::encode(&ez).unwrap();
    assert_eq!(he.decode().unwrap(), ez);
}

#[test]
fn checked_params_and_model_shape() {
    assert!(DeepCompression::params(&[0.1], &[5, 5]).check().is_err());
    assert!(DeepCompression::params(&[], &[]).check().is_err());
    assert!(DeepCompression::params(&[0.0], &[5]).check().is_err());
    assert!(DeepCompression::params(&[1.5], &[5]).check().is_err());
    assert!(DeepCompression::params(&[0.5], &[0]).check().is_err());
    assert!(DeepCompression::params(&[0.5], &[17]).check().is_err());
    assert!(DeepCompression::params(&[0.5], &[5])
        .prune_epochs(0)
        .check()
        .is_err());
    assert!(DeepCompression::params(&[0.5], &[5])
        .updates_per_epoch(0)
        .check()
        .is_err());
    assert!(DeepCompression::params(&[0.5], &[5])
        .batch_size(0)
        .check()
        .is_err());
    assert!(DeepCompression::params(&[0.5], &[5])
        .learning_rates(f64::NAN, 1e-3, 1e-3)
        .check()
        .is_err());
    assert!(DeepCompression::params(&[0.5], &[5])
        .learning_rates(1e-3, 0.0, 1e-3)
        .check()
        .is_err());
    // One density per layer of the network.
    let d = digits().unwrap();
    let mlp: Mlp = Mlp::params(&[64, 16, 10]).check().unwrap();
    let dc = DeepCompression::params(&[0.5], &[4]).check().unwrap();
    assert!(dc.run(&mlp, &d.train).is_err());
}
