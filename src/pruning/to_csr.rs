//! Magnitude pruning straight to CSR, on an executor.
//!
//! Two passes over the weights: [`Selection::smallest_on`] finds the cut
//! (a sampled bracket, then one counting pass), and fixed blocks of rows
//! write their surviving column indices and values by branch-free
//! compaction; the blocks are then joined in order. No keep-mask, no dense
//! copy of a dense input. Block boundaries depend only on the shape, so the
//! matrix is the same for any executor.

use std::sync::Arc;

use super::select::Selection;
use crate::error::Result;
use crate::kernels::multiversion;
use crate::matrix::{
    ColIndices, CompressedMatrix, Csr, F32Values, MatrixError, RowLayout, Structure, Values,
};
use crate::parallel::{for_each_chunk_mut, map, rows_per_task, ParallelExecutor};

/// Elements per task (whole rows).
const TASK_ELEMS: usize = 1 << 16;

#[inline(always)]
fn key(v: f32) -> u32 {
    v.to_bits() & 0x7fff_ffff
}

/// The row-major values of `rows × cols` with the selection `sel` removed,
/// as CSR with f32 values. `data` is finite (it comes from a checked matrix).
pub(crate) fn csr_without(
    rows: usize,
    cols: usize,
    data: &[f32],
    sel: &Selection,
    exec: &dyn ParallelExecutor,
) -> Result<CompressedMatrix> {
    debug_assert_eq!(data.len(), rows * cols);
    let rpt = rows_per_task(cols, TASK_ELEMS);
    let blocks = rows.div_ceil(rpt);
    let range = |b: usize| b * rpt * cols..((b + 1) * rpt).min(rows) * cols;
    let t = sel.threshold_key();
    let nothing = sel.count() == 0;
    // Where ties are split, how many threshold-equal elements precede each block.
    let tie_start: Option<Vec<usize>> = (!nothing && sel.splits_ties()).then(|| {
        let eq = map(exec, blocks, |b| {
            data[range(b)].iter().filter(|&&v| key(v) == t).count()
        });
        let mut acc = 0;
        eq.iter()
            .map(|&e| {
                let s = acc;
                acc += e;
                s
            })
            .collect()
    });
    let parts = map(exec, blocks, |b| {
        let block = &data[range(b)];
        let mut counts = Vec::with_capacity(block.len() / cols);
        let mut idx: Vec<u32> = Vec::new();
        let mut vals: Vec<f32> = Vec::new();
        let (mut si, mut sv) = (vec![0u32; cols], vec![0.0f32; cols]);
        let mut ties_left = tie_start.as_ref().map(|s| sel.ties().saturating_sub(s[b]));
        for row in block.chunks_exact(cols) {
            let n = match (nothing, ties_left.as_mut()) {
                (true, _) => compact_all(row, &mut si, &mut sv),
                (false, None) => compact_above(row, t, &mut si, &mut sv),
                (false, Some(left)) => compact_ties(row, t, left, &mut si, &mut sv),
            };
            idx.extend_from_slice(&si[..n]);
            vals.extend_from_slice(&sv[..n]);
            counts.push(n);
        }
        (counts, idx, vals)
    });
    let nnz: usize = parts.iter().map(|p| p.2.len()).sum();
    if u32::try_from(nnz).is_err() {
        return Err(MatrixError::CsrTooManyValues(nnz).into());
    }
    let mut row_ptr = Vec::with_capacity(rows + 1);
    row_ptr.push(0u32);
    let mut acc = 0u32;
    for (counts, _, _) in &parts {
        for &c in counts {
            acc += c as u32;
            row_ptr.push(acc);
        }
    }
    // Join the blocks in order, each block's slot written on `exec`.
    let starts: Vec<usize> = parts
        .iter()
        .scan(0usize, |s, p| {
            let a = *s;
            *s += p.2.len();
            Some(a)
        })
        .collect();
    let mut values = vec![0.0f32; nnz];
    join(exec, &mut values, &starts, |b| &parts[b].2[..], |&v| v);
    let col_idx = if cols <= 1 << 16 {
        let mut ci = vec![0u16; nnz];
        join(exec, &mut ci, &starts, |b| &parts[b].1[..], |&j| j as u16);
        ColIndices::U16(ci)
    } else {
        let mut ci = vec![0u32; nnz];
        join(exec, &mut ci, &starts, |b| &parts[b].1[..], |&j| j);
        ColIndices::U32(ci)
    };
    let row_ptr: Arc<[u32]> = row_ptr.into();
    let csr = Csr {
        row_ptr: row_ptr.clone(),
        col_idx,
    };
    let values = Values::F32(F32Values {
        layout: RowLayout::Ragged(row_ptr),
        data: crate::matrix::aligned::from_slice(&values),
        prepacked: Default::default(),
    });
    CompressedMatrix::from_parts(rows, cols, Structure::Csr(csr), values)
}

/// Copies part `b` (`part(b)`, converted) to `out[starts[b]..]` for every
/// part, in parallel over fixed chunks of `out`.
fn join<'a, S: 'a + Sync, T: Send + Copy>(
    exec: &dyn ParallelExecutor,
    out: &mut [T],
    starts: &[usize],
    part: impl Fn(usize) -> &'a [S] + Sync,
    conv: impl Fn(&S) -> T + Sync,
) {
    const CHUNK: usize = 1 << 18;
    for_each_chunk_mut(exec, out, CHUNK, |c, chunk| {
        let (lo, hi) = (c * CHUNK, c * CHUNK + chunk.len());
        // First part that ends after `lo`.
        let mut b = starts.partition_point(|&s| s <= lo).saturating_sub(1);
        let mut pos = lo;
        while pos < hi {
            let p = part(b);
            let (s, e) = (starts[b], starts[b] + p.len());
            let (a, z) = (pos.max(s), hi.min(e));
            if z > a {
                for (o, x) in chunk[a - lo..z - lo].iter_mut().zip(&p[a - s..z - s]) {
                    *o = conv(x);
                }
                pos = z;
            }
            b += 1;
        }
    });
}

/// Every element of the row.
fn compact_all(row: &[f32], si: &mut [u32], sv: &mut [f32]) -> usize {
    for (j, &v) in row.iter().enumerate() {
        si[j] = j as u32;
        sv[j] = v;
    }
    row.len()
}

multiversion! {
    /// Writes the column index and value of every element with `|v|` above
    /// the threshold key `t` to the front of `si` / `sv`; returns how many.
    fn compact_above(row: &[f32], t: u32, si: &mut [u32], sv: &mut [f32]) -> usize => compact_above_generic;
}

#[inline(always)]
fn compact_above_generic(row: &[f32], t: u32, si: &mut [u32], sv: &mut [f32]) -> usize {
    let (si, sv) = (&mut si[..row.len()], &mut sv[..row.len()]);
    let mut n = 0usize;
    for (j, &v) in row.iter().enumerate() {
        // Branch-free: always write, advance only past a survivor (n ≤ j).
        let n_ = n.min(row.len() - 1);
        si[n_] = j as u32;
        sv[n_] = v;
        n += (key(v) > t) as usize;
    }
    n
}

/// [`compact_above`] where the first `left` elements equal to the threshold
/// are removed too and later ones kept.
fn compact_ties(row: &[f32], t: u32, left: &mut usize, si: &mut [u32], sv: &mut [f32]) -> usize {
    let mut n = 0;
    for (j, &v) in row.iter().enumerate() {
        let k = key(v);
        let keep = if k == t {
            if *left > 0 {
                *left -= 1;
                false
            } else {
                true
            }
        } else {
            k > t
        };
        if keep {
            si[n] = j as u32;
            sv[n] = v;
            n += 1;
        }
    }
    n
}

/// The keep-mask of `data` with the selection removed, written in parallel
/// over fixed chunks (ties, when split, in one ordered pass after).
pub(crate) fn keep_without(
    data: &[f32],
    sel: &Selection,
    exec: &dyn ParallelExecutor,
) -> Vec<bool> {
    let mut keep = vec![true; data.len()];
    if sel.count() == 0 {
        return keep;
    }
    let t = sel.threshold_key();
    for_each_chunk_mut(exec, &mut keep, TASK_ELEMS, |c, k| {
        let d = &data[c * TASK_ELEMS..c * TASK_ELEMS + k.len()];
        for (kk, &v) in k.iter_mut().zip(d) {
            *kk = key(v) > t;
        }
    });
    if sel.splits_ties() {
        let mut left = sel.ties();
        for (kk, &v) in keep.iter_mut().zip(data) {
            if key(v) == t {
                if left > 0 {
                    left -= 1;
                } else {
                    *kk = true;
                }
            }
        }
    }
    keep
}
