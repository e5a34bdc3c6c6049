//! Real datasets for training and measuring compressed models.
//!
//! - [`digits`]: the UCI handwritten digits (1797 8×8 images), carried inside
//!   the crate, split by writer.
//! - [`fashion_mnist`]: Fashion-MNIST (70 000 28×28 images) read from the
//!   Debian package `dataset-fashion-mnist` when it is installed.
//! - [`parse_idx`]: the idx format (LeCun's MNIST files) the loader reads.

mod dataset;
mod digits;
mod error;
mod fashion;
mod idx;

pub use dataset::{Dataset, Split};
pub use digits::{digits, DIGITS_TRAIN_ROWS};
pub use error::DataError;
pub use fashion::{fashion_mnist, fashion_mnist_from, FASHION_MNIST_DIR};
pub use idx::{parse_idx, read_idx_gz, IdxArray};
