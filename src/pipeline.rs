//! [`Pipeline`]: an ordered list of passes, with a report per stage.

use std::fmt;

use ndarray::ArrayView2;

use crate::error::Result;
use crate::matrix::{CompressedMatrix, StorageReport};
use crate::metrics::ErrorMetrics;
use crate::parallel::{ParallelExecutor, Sequential, TaskRunner};
use crate::pass::{CompressionPass, Prune, Quantize};
use crate::pruning::Pruner;
use crate::quantization::Quantizer;

/// Passes applied in order to a weight matrix.
///
/// ```
/// use ndarray::Array2;
/// use squish::prelude::*;
/// let w = Array2::from_shape_fn((64, 64), |(i, j)| ((i * 7 + j * 3) % 11) as f32 - 5.0);
/// let pipeline = Pipeline::new()
///     .prune(Magnitude::params(0.5).check().unwrap())
///     .quantize(IntQuantizer::params(8).per_row().check().unwrap());
/// let out = pipeline.run(w.view()).unwrap();
/// assert_eq!(out.matrix.structure().kind(), "csr");
/// assert_eq!(out.matrix.encoding(), "int8");
/// assert_eq!(out.report.stages.len(), 3); // input, prune, quantize
/// println!("{}", out.report);
/// ```
#[derive(Default)]
pub struct Pipeline {
    passes: Vec<Box<dyn CompressionPass>>,
}

/// The result of running a pipeline on one matrix.
#[derive(Clone, Debug)]
pub struct PipelineOutput {
    /// The compressed matrix after the last pass.
    pub matrix: CompressedMatrix,
    /// One row per stage, the input first.
    pub report: PipelineReport,
}

/// Storage and error after each stage; errors are against the original W.
#[derive(Clone, Debug, Default)]
pub struct PipelineReport {
    /// The input (dense f32) first, then one entry per pass.
    pub stages: Vec<StageReport>,
}

/// Storage and error of the matrix after one stage.
#[derive(Clone, Debug)]
pub struct StageReport {
    /// The pass name ("dense f32" for the input).
    pub method: String,
    /// Structure after the stage.
    pub structure: &'static str,
    /// Value encoding after the stage.
    pub encoding: &'static str,
    /// Exact storage.
    pub storage: StorageReport,
    /// Error against the original matrix.
    pub error: ErrorMetrics,
}

impl StageReport {
    /// Measures `m` against the original `w`.
    pub fn measure(method: String, w: ArrayView2<f32>, m: &CompressedMatrix) -> Result<Self> {
        Ok(StageReport {
            method,
            structure: m.structure().kind(),
            encoding: m.encoding(),
            storage: m.storage(),
            error: ErrorMetrics::between(w, m.to_dense().view())?,
        })
    }
}

impl Pipeline {
    /// An empty pipeline.
    pub fn new() -> Self {
        Self::default()
    }

    /// Appends a pass.
    pub fn then(mut self, pass: impl CompressionPass + 'static) -> Self {
        self.passes.push(Box::new(pass));
        self
    }

    /// Appends a quantizer.
    pub fn quantize(self, q: impl Quantizer + 'static) -> Self {
        self.then(Quantize(q))
    }

    /// Appends a pruner.
    pub fn prune(self, p: impl Pruner + 'static) -> Self {
        self.then(Prune(p))
    }

    /// Number of passes.
    pub fn len(&self) -> usize {
        self.passes.len()
    }

    /// True when there are no passes.
    pub fn is_empty(&self) -> bool {
        self.passes.is_empty()
    }

    /// Runs every pass on `w`, on one thread.
    pub fn run(&self, w: ArrayView2<f32>) -> Result<PipelineOutput> {
        self.run_with(w, &Sequential)
    }

    /// Runs every pass on `w`; passes may use `exec`.
    pub fn run_with(
        &self,
        w: ArrayView2<f32>,
        exec: &dyn ParallelExecutor,
    ) -> Result<PipelineOutput> {
        let mut m = CompressedMatrix::from_dense(w)?;
        let mut report = PipelineReport::default();
        // The input stage is w itself: its error is exactly zero, no need to measure it.
        report.stages.push(StageReport {
            method: "dense f32".into(),
            structure: m.structure().kind(),
            encoding: m.encoding(),
            storage: m.storage(),
            error: ErrorMetrics {
                rel_frobenius: 0.0,
                max_abs: 0.0,
                sqnr_db: f64::INFINITY,
            },
        });
        for pass in &self.passes {
            m = pass.apply(&m, exec)?;
            report
                .stages
                .push(StageReport::measure(pass.name(), w, &m)?);
        }
        Ok(PipelineOutput { matrix: m, report })
    }

    /// Runs the pipeline on each named matrix, one task per matrix on
    /// `exec` (largest first, no memory bound); results come back in input
    /// order, each with its own outcome. For a memory budget or progress
    /// events use [`TaskRunner::compress_layers`](crate::parallel::TaskRunner::compress_layers).
    pub fn run_named<'a>(
        &self,
        layers: &[(String, ArrayView2<'a, f32>)],
        exec: &dyn ParallelExecutor,
    ) -> Vec<(String, Result<PipelineOutput>)> {
        TaskRunner::default()
            .compress_layers(self, layers, exec, None)
            .into_iter()
            .map(|o| (o.name, o.result))
            .collect()
    }
}

impl fmt::Display for PipelineReport {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        writeln!(
            f,
            "{:<28} {:<10} {:<9} {:>12} {:>8} {:>7} {:>10} {:>10} {:>9}",
            "stage",
            "structure",
            "encoding",
            "bytes",
            "bits/w",
            "ratio",
            "rel.err",
            "max.abs",
            "SQNR dB"
        )?;
        for s in &self.stages {
            writeln!(
                f,
                "{:<28} {:<10} {:<9} {:>12} {:>8.3} {:>6.2}x {:>10.3e} {:>10.3e} {:>9.1}",
                s.method,
                s.structure,
                s.encoding,
                s.storage.total(),
                s.storage.bits_per_weight(),
                s.storage.ratio(),
                s.error.rel_frobenius,
                s.error.max_abs,
                s.error.sqnr_db
            )?;
        }
        Ok(())
    }
}
