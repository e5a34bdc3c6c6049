//! The BERT family: configuration, weights by Hugging Face name, encoder.

mod config;
mod encoder;
mod load;

pub use config::BertConfig;
pub use encoder::{BertEncoder, BertLayer};
pub use load::Weights;
