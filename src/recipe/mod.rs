//! Recipes: which compression pipeline each layer of a model gets.
//!
//! A [`Recipe`] is a TOML file of `[[rule]]`s (a layer-name pattern and a
//! pipeline of [`MethodSpec`]s), first match wins, with a `[default]`.
//! [`compress_model`] applies it to a whole [`Model`](crate::io::Model), one
//! task per layer; [`sweep`] measures error against bits per weight for each
//! method family, the picture to look at before writing a recipe.

mod apply;
mod error;
mod method;
#[allow(clippy::module_inception)]
mod recipe;
mod recover;
mod spec;
mod stream;
mod sweep;

pub use apply::{
    compress_model, compress_model_calibrated, input_scale_name, Compressed, LayerReport,
    ModelCalibration,
};
pub(crate) use apply::{file_bytes, layer_totals};
pub use error::RecipeError;
pub use method::MethodSpec;
pub use recipe::{Choice, Recipe, Rule};
pub use recover::RecoverSpec;
pub use spec::{
    AwqSearchSpec, AwqSpec, AxisSpec, CalibrationModeSpec, CalibrationSection, CalibrationSpec,
    GptqSpec, GranularitySpec, InitSpec, IntSpec, KMeansSpec, LowRankSpec, SparseGptSpec,
    StructuredSpec, WandaSpec,
};
pub use stream::{
    CompressStream, StreamCompression, StreamParams, StreamSummary, StreamedTensor, DEFAULT_BUDGET,
};
pub use sweep::{families, sweep, Family, SweepPoint};
