//! [`LocalComm`]: ranks as threads of one process, for tests and for
//! trying distributed code without MPI.

use std::collections::{HashMap, VecDeque};
use std::sync::{Arc, Condvar, Mutex};
use std::time::Duration;

use super::{Communicator, DistributedError};
use crate::error::{Result, SquishError};

/// How long a receive waits before reporting a lost peer.
const TIMEOUT: Duration = Duration::from_secs(120);

/// Messages in flight, keyed by (from, to, tag), oldest first.
type Mailboxes = HashMap<(usize, usize, u16), VecDeque<Vec<u8>>>;

#[derive(Debug, Default)]
struct Shared {
    size: usize,
    boxes: Mutex<Mailboxes>,
    arrived: Condvar,
    /// Groups made by `split`, keyed by (split number, color).
    groups: Mutex<HashMap<(u64, u32), Arc<Shared>>>,
}

/// One rank of a group of threads that talk through in-memory mailboxes,
/// with MPI's ordering rules. [`LocalComm::group`] makes the ranks; run
/// each on its own thread.
///
/// ```
/// use squish::distributed::{Communicator, LocalComm};
/// let ranks = LocalComm::group(3)?;
/// let out: Vec<Vec<Vec<u8>>> = std::thread::scope(|s| {
///     let hs: Vec<_> = ranks.iter().map(|c| s.spawn(move || c.all_gather(&[c.rank() as u8]).unwrap())).collect();
///     hs.into_iter().map(|h| h.join().unwrap()).collect()
/// });
/// assert!(out.iter().all(|o| *o == vec![vec![0], vec![1], vec![2]]));
/// # Ok::<(), squish::SquishError>(())
/// ```
#[derive(Debug)]
pub struct LocalComm {
    rank: usize,
    shared: Arc<Shared>,
    splits: Mutex<u64>,
}

impl LocalComm {
    /// `size` ranks of one group, rank `i` at index `i`.
    pub fn group(size: usize) -> Result<Vec<LocalComm>> {
        if size == 0 {
            return Err(SquishError::invalid(
                "ranks",
                0,
                "a group needs at least one rank",
            ));
        }
        let shared = Arc::new(Shared {
            size,
            ..Shared::default()
        });
        Ok((0..size)
            .map(|rank| LocalComm {
                rank,
                shared: Arc::clone(&shared),
                splits: Mutex::new(0),
            })
            .collect())
    }

    fn check_peer(&self, op: &'static str, peer: usize) -> Result<()> {
        if peer >= self.shared.size {
            return Err(DistributedError::Communication {
                op,
                detail: format!("rank {peer} does not exist (group of {})", self.shared.size),
            }
            .into());
        }
        Ok(())
    }
}

impl Communicator for LocalComm {
    fn rank(&self) -> usize {
        self.rank
    }

    fn size(&self) -> usize {
        self.shared.size
    }

    fn send(&self, to: usize, tag: u16, bytes: &[u8]) -> Result<()> {
        self.check_peer("send", to)?;
        let mut boxes = self.shared.boxes.lock().expect("mailbox lock");
        boxes
            .entry((self.rank, to, tag))
            .or_default()
            .push_back(bytes.to_vec());
        self.shared.arrived.notify_all();
        Ok(())
    }

    fn recv(&self, from: usize, tag: u16) -> Result<Vec<u8>> {
        self.check_peer("recv", from)?;
        let key = (from, self.rank, tag);
        let mut boxes = self.shared.boxes.lock().expect("mailbox lock");
        loop {
            if let Some(m) = boxes.get_mut(&key).and_then(VecDeque::pop_front) {
                return Ok(m);
            }
            let (b, timeout) = self
                .shared
                .arrived
                .wait_timeout(boxes, TIMEOUT)
                .expect("mailbox lock");
            boxes = b;
            if timeout.timed_out() {
                return Err(DistributedError::Communication {
                    op: "recv",
                    detail: format!(
                        "rank {} waited {} s for rank {from}",
                        self.rank,
                        TIMEOUT.as_secs()
                    ),
                }
                .into());
            }
        }
    }

    fn split(&self, color: u32, key: u32) -> Result<Arc<dyn Communicator>> {
        let mine = [color.to_le_bytes(), key.to_le_bytes()].concat();
        let all = self.all_gather(&mine)?;
        let parse = |b: &[u8]| {
            let c = u32::from_le_bytes(b[0..4].try_into().expect("4 bytes"));
            let k = u32::from_le_bytes(b[4..8].try_into().expect("4 bytes"));
            (c, k)
        };
        let mut members: Vec<(u32, usize)> = all
            .iter()
            .enumerate()
            .map(|(r, b)| (parse(b), r))
            .filter(|((c, _), _)| *c == color)
            .map(|((_, k), r)| (k, r))
            .collect();
        members.sort();
        let new_rank = members
            .iter()
            .position(|&(_, r)| r == self.rank)
            .expect("this rank is a member");
        let seq = {
            let mut s = self.splits.lock().expect("split counter");
            *s += 1;
            *s
        };
        let shared = Arc::clone(
            self.shared
                .groups
                .lock()
                .expect("group registry")
                .entry((seq, color))
                .or_insert_with(|| {
                    Arc::new(Shared {
                        size: members.len(),
                        ..Shared::default()
                    })
                }),
        );
        Ok(Arc::new(LocalComm {
            rank: new_rank,
            shared,
            splits: Mutex::new(0),
        }))
    }
}
