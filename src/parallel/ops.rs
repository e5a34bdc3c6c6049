//! Deterministic building blocks on top of any [`ParallelExecutor`].

use std::ops::Range;
use std::sync::Mutex;

use super::ParallelExecutor;

/// `f(0), …, f(n−1)` computed on `exec`, returned in index order.
pub fn map<T, F>(exec: &dyn ParallelExecutor, n: usize, f: F) -> Vec<T>
where
    T: Send,
    F: Fn(usize) -> T + Sync,
{
    let slots: Vec<Mutex<Option<T>>> = (0..n).map(|_| Mutex::new(None)).collect();
    exec.run(n, &|i| {
        let v = f(i);
        *slots[i].lock().expect("a task panicked") = Some(v);
    });
    slots
        .into_iter()
        .map(|s| {
            s.into_inner()
                .expect("a task panicked")
                .expect("every task ran")
        })
        .collect()
}

/// Splits `data` into chunks of `chunk` elements (the last may be shorter)
/// and calls `f(chunk_index, chunk)` for each on `exec`.
///
/// Chunk boundaries depend only on `chunk`, never on the thread count.
pub fn for_each_chunk_mut<T, F>(exec: &dyn ParallelExecutor, data: &mut [T], chunk: usize, f: F)
where
    T: Send,
    F: Fn(usize, &mut [T]) + Sync,
{
    let chunk = chunk.max(1);
    let chunks: Vec<Mutex<&mut [T]>> = data.chunks_mut(chunk).map(Mutex::new).collect();
    exec.run(chunks.len(), &|i| {
        let mut c = chunks[i].lock().expect("a task panicked");
        f(i, &mut c);
    });
}

/// Rows per task so that each task holds about `target_elems` elements of
/// work; at least 1. Depends only on the problem, so it keeps results
/// independent of the thread count.
pub fn rows_per_task(row_len: usize, target_elems: usize) -> usize {
    (target_elems / row_len.max(1)).max(1)
}

/// Even boundaries of `n` items into `parts` parts: part `i` is
/// `i·n/parts .. (i+1)·n/parts`.
pub fn even_ranges(n: usize, parts: usize) -> Vec<Range<usize>> {
    (0..parts)
        .map(|i| i * n / parts..(i + 1) * n / parts)
        .collect()
}
