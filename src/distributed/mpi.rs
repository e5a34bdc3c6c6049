//! [`MpiComm`]: a [`Communicator`] over MPI (rsmpi and the system's MPI
//! library, e.g. Open MPI). Only with the `mpi` feature.

use std::sync::{Arc, Mutex};

use mpi::datatype::PartitionMut;
use mpi::environment::Universe;
use mpi::topology::{Color, SimpleCommunicator};
use mpi::traits::{
    Communicator as _, CommunicatorCollectives as _, Destination as _, Root as _, Source as _,
};
use mpi::Threading;

use super::{Communicator, DistributedError};
use crate::error::Result;

/// Largest piece of one MPI call (MPI counts are 32-bit).
const PIECE: usize = 1 << 30;

/// Keeps MPI initialized; MPI is finalized when the last communicator made
/// from it is dropped.
struct Session(#[allow(dead_code)] Universe);

// SAFETY: the universe is only dropped (MPI_Finalize), never used
// concurrently; MPI runs in "serialized" mode and every call below holds
// the communicator's mutex.
unsafe impl Send for Session {}
unsafe impl Sync for Session {}

/// A group of MPI processes: the world or a split of it.
///
/// Start the program under a launcher (`mpirun -np 4 PROGRAM`); a program
/// started alone is a world of one. MPI is initialized by
/// [`MpiComm::world`], once per process, in "serialized" threading mode: a
/// mutex serializes this communicator's calls, so rank-local threads may
/// share it.
///
/// ```no_run
/// use squish::distributed::{Communicator, MpiComm};
/// let world = MpiComm::world()?;
/// println!("rank {} of {}", world.rank(), world.size());
/// # Ok::<(), squish::SquishError>(())
/// ```
pub struct MpiComm {
    comm: Mutex<SimpleCommunicator>,
    rank: usize,
    size: usize,
    _session: Arc<Session>,
}

// SAFETY: every use of the raw communicator goes through the mutex, and
// MPI was initialized with at least MPI_THREAD_SERIALIZED.
unsafe impl Send for MpiComm {}
unsafe impl Sync for MpiComm {}

impl std::fmt::Debug for MpiComm {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "MpiComm(rank {} of {})", self.rank, self.size)
    }
}

impl MpiComm {
    /// Initializes MPI and returns the world. Errors if MPI was already
    /// initialized in this process (keep the first world and clone the
    /// `Arc`).
    pub fn world() -> Result<Arc<MpiComm>> {
        let (universe, level) = mpi::initialize_with_threading(Threading::Serialized).ok_or(
            DistributedError::MpiInit {
                detail: "MPI was already initialized in this process; call MpiComm::world once and share the Arc".into(),
            },
        )?;
        if level < Threading::Serialized {
            return Err(DistributedError::MpiInit {
                detail: format!("the MPI library gives threading level {level:?}; squish needs Serialized (rebuild MPI with thread support)"),
            }
            .into());
        }
        let world = universe.world();
        Ok(Arc::new(Self::wrap(world, Arc::new(Session(universe)))))
    }

    /// Whether this process was started by an MPI launcher (`mpirun`,
    /// `srun`): the launchers' environment variables are set.
    pub fn launched() -> bool {
        [
            "OMPI_COMM_WORLD_SIZE",
            "PMI_SIZE",
            "PMIX_RANK",
            "MPI_LOCALNRANKS",
        ]
        .iter()
        .any(|v| std::env::var_os(v).is_some())
    }

    fn wrap(comm: SimpleCommunicator, session: Arc<Session>) -> MpiComm {
        let (rank, size) = (comm.rank() as usize, comm.size() as usize);
        MpiComm {
            comm: Mutex::new(comm),
            rank,
            size,
            _session: session,
        }
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, SimpleCommunicator> {
        self.comm.lock().unwrap_or_else(|p| p.into_inner())
    }

    fn check_peer(&self, op: &'static str, peer: usize) -> Result<()> {
        if peer >= self.size {
            return Err(DistributedError::Communication {
                op,
                detail: format!("rank {peer} does not exist (group of {})", self.size),
            }
            .into());
        }
        Ok(())
    }
}

impl Communicator for MpiComm {
    fn rank(&self) -> usize {
        self.rank
    }

    fn size(&self) -> usize {
        self.size
    }

    fn send(&self, to: usize, tag: u16, bytes: &[u8]) -> Result<()> {
        self.check_peer("send", to)?;
        let c = self.lock();
        let p = c.process_at_rank(to as i32);
        p.send_with_tag(&(bytes.len() as u64), tag as i32);
        for piece in bytes.chunks(PIECE) {
            p.send_with_tag(piece, tag as i32);
        }
        Ok(())
    }

    fn recv(&self, from: usize, tag: u16) -> Result<Vec<u8>> {
        self.check_peer("recv", from)?;
        let c = self.lock();
        let p = c.process_at_rank(from as i32);
        let (len, _) = p.receive_with_tag::<u64>(tag as i32);
        let mut buf = vec![0u8; len as usize];
        for piece in buf.chunks_mut(PIECE) {
            p.receive_into_with_tag(piece, tag as i32);
        }
        Ok(buf)
    }

    fn all_gather(&self, mine: &[u8]) -> Result<Vec<Vec<u8>>> {
        let c = self.lock();
        let mut lens = vec![0u64; self.size];
        c.all_gather_into(&(mine.len() as u64), &mut lens[..]);
        let total: u64 = lens.iter().sum();
        if total > i32::MAX as u64 {
            return Err(DistributedError::Communication {
                op: "all_gather",
                detail: format!("{total} bytes in all; MPI counts stop at 2 GiB: gather in pieces"),
            }
            .into());
        }
        let counts: Vec<i32> = lens.iter().map(|&l| l as i32).collect();
        let displs: Vec<i32> = counts
            .iter()
            .scan(0i32, |acc, &n| {
                let d = *acc;
                *acc += n;
                Some(d)
            })
            .collect();
        let mut all = vec![0u8; total as usize];
        {
            let mut part = PartitionMut::new(&mut all[..], &counts[..], &displs[..]);
            c.all_gather_varcount_into(mine, &mut part);
        }
        Ok(counts
            .iter()
            .zip(&displs)
            .map(|(&n, &d)| all[d as usize..(d + n) as usize].to_vec())
            .collect())
    }

    fn broadcast(&self, root: usize, bytes: &mut Vec<u8>) -> Result<()> {
        self.check_peer("broadcast", root)?;
        let c = self.lock();
        let r = c.process_at_rank(root as i32);
        let mut len = bytes.len() as u64;
        r.broadcast_into(&mut len);
        bytes.resize(len as usize, 0);
        for piece in bytes.chunks_mut(PIECE) {
            r.broadcast_into(piece);
        }
        Ok(())
    }

    fn split(&self, color: u32, key: u32) -> Result<Arc<dyn Communicator>> {
        let c = self.lock();
        let sub = c
            .split_by_color_with_key(Color::with_value(color as i32), key as i32)
            .ok_or_else(|| DistributedError::Communication {
                op: "split",
                detail: "MPI returned no communicator".into(),
            })?;
        Ok(Arc::new(Self::wrap(sub, Arc::clone(&self._session))))
    }
}
