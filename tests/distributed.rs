//! The distributed scenarios with threads standing in for ranks
//! ([`LocalComm`]), at 1, 2, 3 and 4 ranks: no MPI needed. `tests/mpi.rs`
//! runs the same scenarios under `mpirun` with the `mpi` feature.

mod distributed_cases;

use std::sync::Arc;

use squish::distributed::{Cluster, Communicator, LocalComm};
use squish::parallel::{Sequential, ThreadPool};

/// Runs `f` on `ranks` threads, one per rank; returns each rank's result.
fn on_ranks<T: Send>(
    ranks: usize,
    f: impl Fn(&Cluster<'_>, Arc<dyn Communicator>) -> T + Sync,
) -> Vec<T> {
    let comms: Vec<Arc<dyn Communicator>> = LocalComm::group(ranks)
        .unwrap()
        .into_iter()
        .map(|c| Arc::new(c) as Arc<dyn Communicator>)
        .collect();
    std::thread::scope(|s| {
        let hs: Vec<_> = comms
            .iter()
            .map(|c| {
                let f = &f;
                s.spawn(move || {
                    let pool = ThreadPool::new(2).unwrap();
                    let exec: &dyn squish::parallel::ParallelExecutor = if c.rank() % 2 == 0 {
                        &Sequential
                    } else {
                        &pool
                    };
                    f(&Cluster::new(c.as_ref(), exec), Arc::clone(c))
                })
            })
            .collect();
        hs.into_iter()
            .map(|h| h.join().expect("rank panicked"))
            .collect()
    })
}

fn same_everywhere(
    name: &str,
    f: impl Fn(&Cluster<'_>, Arc<dyn Communicator>) -> squish::Result<u32> + Sync,
) {
    let mut first = None;
    for ranks in 1..=4 {
        let out: Vec<u32> = on_ranks(ranks, &f)
            .into_iter()
            .map(|r| r.unwrap_or_else(|e| panic!("{name} at {ranks} ranks: {e}")))
            .collect();
        assert!(
            out.iter().all(|&d| d == out[0]),
            "{name}: ranks disagree at {ranks}: {out:?}"
        );
        let d = *first.get_or_insert(out[0]);
        assert_eq!(out[0], d, "{name}: {ranks} ranks differ from 1 rank");
    }
}

#[test]
fn reduction_tree_is_the_one_process_tree() {
    same_everywhere("reduce", |c, _| distributed_cases::reduce(c));
}

#[test]
fn compressed_container_is_byte_identical() {
    let dir = tempfile::tempdir().unwrap();
    same_everywhere("compress", |c, _| {
        distributed_cases::compress(c, dir.path())
    });
}

#[test]
fn a_failing_rank_fails_every_rank_and_writes_nothing() {
    let dir = tempfile::tempdir().unwrap();
    same_everywhere("compress_failure", |c, _| {
        distributed_cases::compress_failure(c, dir.path())
    });
}

#[test]
fn data_parallel_training_is_bit_identical() {
    same_everywhere("train", |c, _| distributed_cases::train(c));
}

#[test]
fn data_parallel_distillation_is_bit_identical() {
    same_everywhere("distill", |c, _| distributed_cases::distill(c));
}

#[test]
fn calibration_statistics_are_identical() {
    same_everywhere("calibration", |c, _| distributed_cases::calibration(c));
}

#[test]
fn row_split_mlp_serves_the_same_outputs() {
    same_everywhere("serve", distributed_cases::serve);
}

#[test]
fn split_communicators_reduce_within_their_group() {
    same_everywhere("split", |c, _| distributed_cases::split(c));
}

#[test]
fn layers_are_balanced_by_cost() {
    use squish::distributed::assign_by_cost;
    // One big layer and many small ones: the big one gets a rank to itself.
    let mut costs = vec![100u64];
    costs.extend(std::iter::repeat_n(10, 10));
    let owner = assign_by_cost(&costs, 2);
    let load = |r| {
        costs
            .iter()
            .zip(&owner)
            .filter(|(_, &o)| o == r)
            .map(|(c, _)| c)
            .sum::<u64>()
    };
    assert_eq!((load(0), load(1)), (100, 100));
    assert_eq!(owner[0], 0);
    // Against brute force on small cases: LPT is within 4/3 of optimal.
    let mut rng = 12345u64;
    for _ in 0..200 {
        let n = 1 + (rng % 8) as usize;
        let costs: Vec<u64> = (0..n)
            .map(|_| {
                rng = rng
                    .wrapping_mul(6364136223846793005)
                    .wrapping_add(1442695040888963407);
                1 + (rng >> 33) % 50
            })
            .collect();
        let owner = assign_by_cost(&costs, 3);
        let span = (0..3)
            .map(|r| {
                costs
                    .iter()
                    .zip(&owner)
                    .filter(|(_, &o)| o == r)
                    .map(|(c, _)| c)
                    .sum::<u64>()
            })
            .max()
            .unwrap();
        let best = (0..3usize.pow(n as u32))
            .map(|mut code| {
                let mut l = [0u64; 3];
                for c in &costs {
                    l[code % 3] += c;
                    code /= 3;
                }
                *l.iter().max().unwrap()
            })
            .min()
            .unwrap();
        assert!(3 * span <= 4 * best, "{costs:?}: {span} vs best {best}");
    }
}
