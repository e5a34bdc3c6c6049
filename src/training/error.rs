//! [`TrainingError`]: what can go wrong in the training engine.

use thiserror::Error;

/// Errors of the training engine (networks, optimizers, losses, the trainer),
/// wrapped by [`SquishError::Training`](crate::SquishError::Training).
#[derive(Debug, Error, Clone, PartialEq)]
#[non_exhaustive]
pub enum TrainingError {
    /// A layer index the network does not have.
    #[error("{what} {layer} does not exist: the network has {count} of them; pass an index in 0..{count}")]
    NoSuchLayer {
        /// What was indexed ("layer", "hidden layer", "pruned layer", ...).
        what: &'static str,
        /// The index asked for.
        layer: usize,
        /// How many there are.
        count: usize,
    },
    /// Layer sizes that do not describe a network.
    #[error("layer sizes {sizes:?}: {reason}")]
    Sizes {
        /// The sizes given.
        sizes: Vec<usize>,
        /// What is wrong and what to pass.
        reason: &'static str,
    },
    /// A network built from no layer.
    #[error("a network needs at least one layer; pass a non-empty list of layers")]
    NoLayers,
    /// More hidden-layer gradients than the network has hidden layers.
    #[error("{given} hidden-layer gradients given, but the network has {hidden} hidden layers; pass at most {hidden}")]
    HiddenGradients {
        /// Gradients given.
        given: usize,
        /// Hidden layers of the network.
        hidden: usize,
    },
    /// A class label outside `0..classes`.
    #[error("label {label} is outside 0..{classes}; labels index the logit columns (did the data and the network's output size disagree?)")]
    Label {
        /// The label.
        label: usize,
        /// The number of classes (logit columns).
        classes: usize,
    },
    /// A learning rate, ε or regularization strength out of range.
    #[error("{name} = {value} {rule}")]
    Hyperparameter {
        /// Which hyperparameter.
        name: &'static str,
        /// The value given.
        value: f64,
        /// The valid range, and a typical value.
        rule: &'static str,
    },
    /// A count that must be at least 1 is 0.
    #[error("{0} is 0; pass at least 1")]
    Zero(&'static str),
    /// A gradual-pruning schedule that ends before it starts.
    #[error("pruning schedule ends at step {end}, not after its start {start}; pass end > start")]
    ScheduleEnd {
        /// First step.
        start: usize,
        /// Last step.
        end: usize,
    },
    /// Gradual pruning of no layer.
    #[error("gradual pruning names no layer; pass at least one layer index")]
    NoPrunedLayers,
}

/// [`TrainingError::NoSuchLayer`] unless `layer` is a hidden layer of a
/// network of `layers` layers (every layer but the last).
pub(crate) fn check_hidden_layer(layer: usize, layers: usize) -> crate::error::Result<()> {
    if layer + 1 >= layers {
        return Err(TrainingError::NoSuchLayer {
            what: "hidden layer",
            layer,
            count: layers - 1,
        }
        .into());
    }
    Ok(())
}
