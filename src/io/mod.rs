//! Models in files: safetensors in and out, and the compressed container.
//!
//! - [`Model`] loads a safetensors file (memory-mapped): f32, f16, bf16 and
//!   f64 tensors become f32; other dtypes are carried byte for byte. A float
//!   tensor of rank ≥ 2 is a weight matrix: [`Tensor::matrix`] views
//!   `[out, d1, …]` as `[out, d1·…]`, and saving restores the shape.
//! - [`CompressedModel`] holds [`CompressedMatrix`](crate::matrix::CompressedMatrix)es
//!   in a container that is itself a safetensors file (typed component
//!   tensors, a versioned JSON description, a CRC-32 per tensor), so it
//!   loads back bit for bit and multiplies without decoding.
//!   [`CompressedModel::decompress`] exports the dequantized model with the
//!   original names, shapes and dtypes.
//! - Every write is atomic: temporary file, fsync, rename.
//! - Models larger than memory: [`ShardedModel`] reads a checkpoint split
//!   over shards (Hugging Face's index format) a tensor at a time;
//!   [`ContainerWriter`] and [`ModelWriter`] write a tensor at a time, to one
//!   file (the same bytes as the in-memory path) or to shards with an index.

mod atomic;
mod codec;
mod container;
mod container_shards;
pub mod description;
mod error;
pub(crate) mod layout;
mod matrix_file;
mod model;
mod output;
mod precision;
mod shard_error;
mod sharded;
mod stream;
mod tensor;

pub use atomic::write_atomic;
pub use container::{CompressedModel, CompressedTensor, Entry, COMPONENT_SEPARATOR};
pub use container_shards::export_dequantized;
pub use error::FileError;
pub use model::Model;
pub use output::{
    check_output, check_output_dir, OutputKind, DECOMPRESSED_KEY, PLAN_MARKER, SVG_MARKER,
};
pub use precision::ExportDtype;
pub use shard_error::ShardError;
pub use sharded::{ShardedModel, TensorMeta, INDEX_NAME};
pub use stream::{ContainerWriter, ModelWriter, Written};
pub use tensor::{is_float, shape_string, Dtype, Tensor, TensorData};
