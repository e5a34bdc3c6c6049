//! Exact storage accounting.

use std::fmt;

/// One part of a compressed matrix's storage.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum Component {
    /// The encoded values (f32 words, integer codes, sign bits, codebook indices).
    Values,
    /// Positions of the stored values: CSR row pointers and column indices,
    /// N:M in-group positions, kept-row ids.
    Indices,
    /// Quantization scales (f32).
    Scales,
    /// Quantization zero-points (one byte each).
    ZeroPoints,
    /// Codebook centroids (f32).
    Codebook,
    /// Fixed header: shape, structure and encoding tags and parameters.
    Metadata,
}

impl Component {
    /// All components, in report order.
    pub const ALL: [Component; 6] = [
        Component::Values,
        Component::Indices,
        Component::Scales,
        Component::ZeroPoints,
        Component::Codebook,
        Component::Metadata,
    ];

    /// Lower-case name.
    pub fn name(self) -> &'static str {
        match self {
            Component::Values => "values",
            Component::Indices => "indices",
            Component::Scales => "scales",
            Component::ZeroPoints => "zero-points",
            Component::Codebook => "codebook",
            Component::Metadata => "metadata",
        }
    }
}

/// Bytes a compressed matrix needs, by component, against dense f32.
///
/// Bit-packed parts are counted at their packed size rounded up to whole
/// bytes; every stored matrix pays [`METADATA_BYTES`] of header.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct StorageReport {
    elements: usize,
    bytes: [usize; 6],
}

/// Header bytes per stored matrix: shape (2 × u32), structure tag and
/// parameters (4 bytes), encoding tag and parameters (4 bytes).
pub const METADATA_BYTES: usize = 16;

impl StorageReport {
    /// An empty report for a matrix of `elements` weights.
    pub fn new(elements: usize) -> Self {
        StorageReport {
            elements,
            bytes: [0; 6],
        }
    }

    /// Adds bytes to a component.
    pub fn add(&mut self, c: Component, bytes: usize) {
        self.bytes[c as usize] += bytes;
    }

    /// Adds every component of another report (e.g. a low-rank factor).
    pub fn absorb(&mut self, other: &StorageReport) {
        for c in Component::ALL {
            self.add(c, other.get(c));
        }
    }

    /// Bytes of one component.
    pub fn get(&self, c: Component) -> usize {
        self.bytes[c as usize]
    }

    /// Total bytes.
    pub fn total(&self) -> usize {
        self.bytes.iter().sum()
    }

    /// Number of weights of the logical matrix.
    pub fn elements(&self) -> usize {
        self.elements
    }

    /// Bytes of the same matrix as dense f32.
    pub fn dense_bytes(&self) -> usize {
        self.elements * 4
    }

    /// Dense bytes over compressed bytes.
    pub fn ratio(&self) -> f64 {
        self.dense_bytes() as f64 / self.total() as f64
    }

    /// Total bits per logical weight.
    pub fn bits_per_weight(&self) -> f64 {
        self.total() as f64 * 8.0 / self.elements as f64
    }
}

impl fmt::Display for StorageReport {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "{} B ({:.2} bits/weight, {:.2}x vs f32):",
            self.total(),
            self.bits_per_weight(),
            self.ratio()
        )?;
        for c in Component::ALL {
            if self.get(c) > 0 {
                write!(f, " {} {}", c.name(), self.get(c))?;
            }
        }
        Ok(())
    }
}
