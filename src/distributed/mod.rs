//! Beyond one machine: compression, calibration, training and serving over
//! several processes (ranks), on MPI.
//!
//! A [`Communicator`] is a group of ranks: [`SingleProcess`] (one process,
//! no MPI), [`LocalComm`] (threads standing in for ranks, for tests), and,
//! with the `mpi` feature, `MpiComm` (processes started by `mpirun`, over
//! the system's MPI library). A [`Cluster`] pairs it with the thread
//! executor each rank uses inside itself. On top:
//!
//! - **task parallel** ([`compress_model`], [`compress_to_file`]): each rank
//!   compresses a share of the layers balanced by [`layer_cost`]; the
//!   container, byte-identical to one process's, is assembled on rank 0 or,
//!   for a file, written by every rank at offsets derived from an exchange
//!   of sizes (no tensor crosses the network);
//! - **data parallel** ([`batch_gradient`], [`fit`], [`distill`]): every
//!   batch is cut into fixed shards, ranks compute their shards' gradients,
//!   and [`allreduce_items`] sums them by a fixed tree, so weights and
//!   losses are bit-identical for any number of ranks;
//! - **calibration** ([`reduce_chunks`], [`gram`]): f64 partial sums per
//!   fixed chunk of calibration data, reduced the same way;
//! - **model parallel** ([`RankRowSplit`]): a layer's rows split over the
//!   ranks, each holding only its compressed slice, outputs gathered.
//!
//! A failure on one rank (an error or a panic in its share) is sent along
//! with the data, so every rank returns the same
//! [`DistributedError::RankFailed`] and no rank waits forever. Bytes on the
//! wire and a cost model: `docs/distributed.md`.

mod calibration;
mod comm;
mod compress;
mod error;
mod local;
#[cfg(feature = "mpi")]
mod mpi;
mod reduce;
mod serve;
mod train;
mod wire;

pub use calibration::{column_norms, gram, reduce_chunks};
pub use comm::{tag, Cluster, Communicator, Metered, SingleProcess};
pub use compress::{
    assign_by_cost, compress_model, compress_to_file, layer_cost, FileReport, WritePhases,
};
pub use error::DistributedError;
pub use local::LocalComm;
#[cfg(feature = "mpi")]
pub use mpi::MpiComm;
pub use reduce::{allreduce_items, owned_items};
pub use serve::RankRowSplit;
pub use train::{add_loss_grad, batch_gradient, distill, fit, teacher_logits, ShardObjective};
pub use wire::{from_bytes, to_bytes, Reader, Wire};
