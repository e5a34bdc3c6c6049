//! Lloyd's algorithm on a sorted histogram.
//!
//! With the values sorted, the nearest-centroid assignment is `k − 1` binary
//! searches for the midpoints between neighbouring centroids, and the update
//! is one prefix-sum difference per cluster: an iteration costs
//! O(k log n) instead of the O(n·k) of the textbook algorithm.

use super::{Clustering, Histogram};

/// Runs Lloyd's algorithm from `init` (any order; sorted internally) for at
/// most `max_iter` centroid updates, stopping when the assignment no longer
/// changes.
///
/// The SSE never increases: the assignment step moves each value to its
/// nearest centroid and the update step moves each centroid to its cluster's
/// mean. An empty cluster's centroid is moved onto the value that is worst
/// served (largest weighted error), which can only lower the SSE.
pub fn lloyd(hist: &Histogram, init: Vec<f64>, max_iter: usize) -> Clustering {
    let mut c = init;
    c.sort_by(f64::total_cmp);
    let mut bounds = hist.assign(&c);
    let mut history = vec![hist.partition_cost(&bounds, &c)];
    let mut iterations = 0;
    while iterations < max_iter {
        iterations += 1;
        update(hist, &bounds, &mut c);
        let next = hist.assign(&c);
        history.push(hist.partition_cost(&next, &c));
        if next == bounds {
            break;
        }
        bounds = next;
    }
    let sse = *history.last().expect("at least one entry");
    let bounds = hist.assign(&c);
    Clustering {
        centroids: c,
        bounds,
        sse,
        iterations,
        sse_history: history,
    }
}

/// Centroids to their clusters' means; empty clusters onto the worst-served values.
fn update(hist: &Histogram, bounds: &[usize], c: &mut [f64]) {
    let mut empty = Vec::new();
    for (t, w) in bounds.windows(2).enumerate() {
        if w[1] > w[0] {
            c[t] = hist.segment_mean(w[0], w[1]);
        } else {
            empty.push(t);
        }
    }
    if !empty.is_empty() {
        // The worst-served value of a cluster is one of its two ends.
        let v = hist.values();
        let mut cands: Vec<(f64, f64)> = Vec::new();
        for (t, w) in bounds.windows(2).enumerate() {
            if w[1] > w[0] {
                for i in [w[0], w[1] - 1] {
                    let x = v[i] as f64;
                    cands.push((hist.weight(i) * (x - c[t]).powi(2), x));
                }
            }
        }
        cands.sort_by(|a, b| b.0.total_cmp(&a.0).then(a.1.total_cmp(&b.1)));
        let mut cands = cands.into_iter().filter(|&(e, _)| e > 0.0);
        for t in empty {
            let taken: Vec<f64> = c.to_vec();
            match cands.by_ref().find(|&(_, x)| !taken.contains(&x)) {
                Some((_, x)) => c[t] = x,
                None => break,
            }
        }
    }
    c.sort_by(f64::total_cmp);
}
