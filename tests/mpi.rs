//! The distributed scenarios under MPI: `cargo test --features mpi --test
//! mpi` runs them as a world of one; `.ci/mpi.sh` runs the same binary under
//! `mpirun -np 2` and `-np 3`. Every rank checks its results against
//! one-process references; rank 0 prints one digest per scenario, which must
//! be the same for every rank count, and the exit status is non-zero if any
//! check failed on any rank.

mod distributed_cases;

use std::process::ExitCode;
use std::sync::Arc;

use squish::distributed::{from_bytes, to_bytes, Cluster, Communicator, MpiComm};
use squish::parallel::Sequential;

fn main() -> ExitCode {
    // `--write-model PATH [--nan]`: write the scenarios' model (with a NaN
    // in layer1.weight) for the CLI checks of .ci/mpi.sh, without MPI.
    let args: Vec<String> = std::env::args().collect();
    if let Some(i) = args.iter().position(|a| a == "--write-model") {
        let m = if args.iter().any(|a| a == "--nan") {
            distributed_cases::nan_model()
        } else {
            distributed_cases::test_model()
        };
        m.save(&args[i + 1]).expect("write the model");
        return ExitCode::SUCCESS;
    }
    let world = MpiComm::world().expect("MPI starts");
    let comm: Arc<dyn Communicator> = world.clone();
    // Rank 0 makes a fresh directory; everyone uses it (one machine here;
    // on a cluster it would be a shared file system).
    let mut dir = Vec::new();
    let tmp = if world.rank() == 0 {
        let t = tempfile::tempdir().expect("a temporary directory");
        dir = t.path().to_string_lossy().into_owned().into_bytes();
        Some(t)
    } else {
        None
    };
    world.broadcast(0, &mut dir).expect("broadcast");
    let dir = std::path::PathBuf::from(String::from_utf8(dir).expect("a path"));
    let cluster = Cluster::new(world.as_ref(), &Sequential);
    let mut failed = false;
    for (name, outcome) in run(&cluster, comm, &dir) {
        let mine: Result<u32, String> = outcome;
        let line = match &mine {
            Ok(d) => format!("{d:08x}"),
            Err(e) => format!("FAILED {e}"),
        };
        // Compare every rank's digest.
        let all = world.all_gather(&to_bytes(&line)).expect("all_gather");
        let all: Vec<String> = all
            .iter()
            .map(|b| from_bytes(b).expect("a string"))
            .collect();
        let agree = all.iter().all(|l| *l == all[0]) && mine.is_ok();
        failed |= !agree || all.iter().any(|l| l.starts_with("FAILED"));
        if world.rank() == 0 {
            println!(
                "{name} np={} {} {}",
                world.size(),
                all[0],
                if agree { "agree" } else { "DISAGREE" }
            );
            if !agree {
                for (r, l) in all.iter().enumerate() {
                    println!("  rank {r}: {l}");
                }
            }
        }
    }
    drop(tmp);
    if failed {
        ExitCode::FAILURE
    } else {
        ExitCode::SUCCESS
    }
}

fn run(
    cluster: &Cluster<'_>,
    comm: Arc<dyn Communicator>,
    dir: &std::path::Path,
) -> Vec<(&'static str, Result<u32, String>)> {
    // A panicking check must not leave the other ranks waiting: catch it.
    let guard = |f: &dyn Fn() -> squish::Result<u32>| -> Result<u32, String> {
        match std::panic::catch_unwind(std::panic::AssertUnwindSafe(f)) {
            Ok(Ok(d)) => Ok(d),
            Ok(Err(e)) => Err(e.to_string()),
            Err(p) => Err(p
                .downcast_ref::<String>()
                .cloned()
                .or_else(|| p.downcast_ref::<&str>().map(|s| s.to_string()))
                .unwrap_or_else(|| "panic".into())),
        }
    };
    vec![
        ("reduce", guard(&|| distributed_cases::reduce(cluster))),
        (
            "compress",
            guard(&|| distributed_cases::compress(cluster, dir)),
        ),
        (
            "compress_failure",
            guard(&|| distributed_cases::compress_failure(cluster, dir)),
        ),
        ("train", guard(&|| distributed_cases::train(cluster))),
        ("distill", guard(&|| distributed_cases::distill(cluster))),
        (
            "calibration",
            guard(&|| distributed_cases::calibration(cluster)),
        ),
        (
            "serve",
            guard(&|| distributed_cases::serve(cluster, comm.clone())),
        ),
        ("split", guard(&|| distributed_cases::split(cluster))),
    ]
}
