//! [`Pipeline`]: an ordered list of passes, with a report per stage.

use std::fmt;

use ndarray::{ArrayView2, AsArray, Ix2};

use crate::error::{Result, SquishError};
use crate::matrix::aligned::Aligned;
use crate::matrix::{CompressedMatrix, StorageReport};
use crate::metrics::{ErrorMetrics, ErrorSums};
use crate::parallel::{ParallelExecutor, Progress, Sequential, TaskOutcome, TaskRunner, TaskSpec};
use crate::pass::{CalibratedPass, CompressionPass, DataFree, LayerStats};

/// A pipeline's output, or the stage that failed (`None`: the input check;
/// else the pass's name) and its error.
pub(crate) type StagedResult =
    std::result::Result<PipelineOutput, (Option<String>, crate::SquishError)>;

/// Passes applied in order to a weight matrix.
///
/// ```
/// use ndarray::Array2;
/// use squish::prelude::*;
/// let w = Array2::from_shape_fn((64, 64), |(i, j)| ((i * 7 + j * 3) % 11) as f32 - 5.0);
/// let pipeline = Pipeline::new()
///     .prune(Magnitude::params(0.5).check().unwrap())
///     .quantize(IntQuantizer::params(8).per_row().check().unwrap());
/// let out = pipeline.run(&w).unwrap();
/// assert_eq!(out.matrix.structure().kind(), "csr");
/// assert_eq!(out.matrix.encoding(), "int8");
/// assert_eq!(out.report.stages.len(), 3); // input, prune, quantize
/// println!("{}", out.report);
/// ```
///
/// Data-aware passes ([`DataAware`](crate::pass::DataAware): GPTQ,
/// SparseGPT, Wanda) join with [`data_aware`](Self::data_aware) and read the
/// layer's calibration statistics, given to
/// [`run_calibrated`](Self::run_calibrated):
///
/// ```
/// use ndarray::Array2;
/// use squish::pass::LayerStats;
/// use squish::prelude::*;
/// use squish::quantization::Gptq;
/// let w = Array2::from_shape_fn((8, 16), |(i, j)| ((i * 7 + j * 3) % 11) as f32 / 11.0 - 0.5);
/// let x = Array2::from_shape_fn((64, 16), |(i, j)| ((i * j + 1) % 5) as f32 - 2.0);
/// let mut stats = LayerStats::new(16);
/// stats.accumulate(x.view())?;
/// let p = Pipeline::new().data_aware(Gptq::params(4).per_group(8).check()?);
/// assert!(p.needs_data());
/// let out = p.run_calibrated("fc1", &w, Some(&stats), &Sequential)?;
/// assert_eq!(out.matrix.encoding(), "int4");
/// // Without statistics: a typed error naming the pass and the layer.
/// assert!(p.run(&w).is_err());
/// # Ok::<(), squish::SquishError>(())
/// ```
#[derive(Default)]
pub struct Pipeline {
    passes: Vec<Box<dyn CalibratedPass>>,
}

impl fmt::Debug for Pipeline {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_list()
            .entries(self.passes.iter().map(|p| p.name()))
            .finish()
    }
}

/// The result of running a pipeline on one matrix.
#[derive(Clone, Debug)]
pub struct PipelineOutput {
    /// The compressed matrix after the last pass.
    pub matrix: CompressedMatrix,
    /// One row per stage, the input first.
    pub report: PipelineReport,
    /// Per-input factors the layer's input is multiplied by before
    /// [`matrix`](Self::matrix), when a pass moved a scale into it (AWQ
    /// stores `Q(W·diag(s))` and `1/s` here): the layer computes
    /// `(x ⊙ input_scale)·matrixᵀ`. Saved as the `{layer}.input_scale`
    /// tensor of a container, which the serving encoder applies.
    pub input_scale: Option<Vec<f32>>,
}

impl PipelineOutput {
    /// The weight the layer effectively applies, as dense f32: the decoded
    /// matrix, times the input scale by column when there is one.
    pub fn effective_weight(&self) -> ndarray::Array2<f32> {
        let mut w = self.matrix.to_dense();
        if let Some(m) = &self.input_scale {
            for mut row in w.rows_mut() {
                row.iter_mut().zip(m).for_each(|(v, &f)| *v *= f);
            }
        }
        w
    }
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
    pub fn measure<'a>(
        method: String,
        w: impl AsArray<'a, f32, Ix2>,
        m: &CompressedMatrix,
    ) -> Result<Self> {
        let w: ArrayView2<'a, f32> = w.into();
        Self::measure_scaled(method, w, m, None)
    }

    /// Measures the effective weight of `m` served with per-input factors
    /// `input_scale` (each decoded column times its factor) against `w`.
    pub fn measure_scaled<'a>(
        method: String,
        w: impl AsArray<'a, f32, Ix2>,
        m: &CompressedMatrix,
        input_scale: Option<&[f32]>,
    ) -> Result<Self> {
        let w: ArrayView2<'a, f32> = w.into();
        Ok(StageReport {
            method,
            structure: m.structure().kind(),
            encoding: report_encoding(m),
            storage: m.storage(),
            error: measure_rows(w, m, input_scale)?.metrics(),
        })
    }
}

/// The error sums of `m` (columns times `input_scale` when given) against
/// `w`, one decoded row of `m` at a time (no dense copy of `m`): the same
/// bits as [`ErrorMetrics::between`]`(w, m.to_dense())`.
fn measure_rows(
    w: ArrayView2<f32>,
    m: &CompressedMatrix,
    input_scale: Option<&[f32]>,
) -> Result<ErrorSums> {
    if w.dim() != m.shape() {
        return Err(SquishError::shape(
            "error metrics",
            format!("{:?}", w.dim()),
            format!("{:?}", m.shape()),
        ));
    }
    let mut sums = ErrorSums::default();
    let mut row = vec![0.0f32; m.cols()];
    for (i, wi) in w.rows().into_iter().enumerate() {
        m.decode_row(i, &mut row);
        if let Some(f) = input_scale {
            row.iter_mut().zip(f).for_each(|(v, &f)| *v *= f);
        }
        match wi.as_slice() {
            Some(a) => sums.add(a, &row),
            None => sums.add(&wi.to_vec(), &row),
        }
    }
    Ok(sums)
}

/// The encoding a report shows: a low-rank matrix's is its factors' (the
/// matrix itself says "factored").
fn report_encoding(m: &CompressedMatrix) -> &'static str {
    let crate::matrix::Structure::LowRank(lr) = m.structure() else {
        return m.encoding();
    };
    match (lr.a().encoding(), lr.b().encoding()) {
        ("f32", "f32") => "f32 A·B",
        ("int8", "int8") => "int8 A·B",
        ("int4", "int4") => "int4 A·B",
        ("binary", "binary") => "binary A·B",
        ("ternary", "ternary") => "ternary A·B",
        ("codebook", "codebook") => "codebook A·B",
        _ => "mixed A·B",
    }
}

impl Pipeline {
    /// An empty pipeline.
    pub fn new() -> Self {
        Self::default()
    }

    /// Appends a pass.
    pub fn then(self, pass: impl CompressionPass + 'static) -> Self {
        self.data_aware(DataFree(pass))
    }

    /// Appends a pass that reads calibration statistics (any
    /// [`DataAware`](crate::pass::DataAware) method, or a [`DataFree`] pass).
    pub fn data_aware(mut self, pass: impl CalibratedPass + 'static) -> Self {
        self.passes.push(Box::new(pass));
        self
    }

    /// Whether any pass reads calibration statistics.
    pub fn needs_data(&self) -> bool {
        self.passes.iter().any(|p| p.needs_data())
    }

    // `prune` and `quantize` (a pruner or quantizer as a pass) are defined
    // with their adapters, in the pruning and quantization families.

    /// Number of passes.
    pub fn len(&self) -> usize {
        self.passes.len()
    }

    /// True when there are no passes.
    pub fn is_empty(&self) -> bool {
        self.passes.is_empty()
    }

    /// The pass names joined by " → ", as reports print them.
    pub fn pass_names(&self) -> String {
        let names: Vec<String> = self.passes.iter().map(|p| p.name()).collect();
        names.join(" → ")
    }

    /// Runs every pass on `w` (anything ndarray can view: `&Array2`,
    /// `ArrayView2`, ...), on one thread.
    pub fn run<'a>(&self, w: impl AsArray<'a, f32, Ix2>) -> Result<PipelineOutput> {
        self.run_on(w, &Sequential)
    }

    /// Old name of [`run_on`](Self::run_on).
    #[deprecated(since = "0.2.0", note = "renamed `run_on`: `_on` takes an executor")]
    pub fn run_with(
        &self,
        w: ArrayView2<f32>,
        exec: &dyn ParallelExecutor,
    ) -> Result<PipelineOutput> {
        self.run_on(w, exec)
    }

    /// Runs every pass on `w`; passes may use `exec` (the result does not
    /// depend on it).
    pub fn run_on<'a>(
        &self,
        w: impl AsArray<'a, f32, Ix2>,
        exec: &dyn ParallelExecutor,
    ) -> Result<PipelineOutput> {
        self.run_calibrated("weight", w, None, exec)
    }

    /// Runs every pass on weight `w` of layer `layer`, data-aware passes
    /// with the layer's calibration statistics `stats` (a data-aware pass
    /// without them fails with
    /// [`CalibrationError::MissingStats`](crate::pass::CalibrationError::MissingStats)).
    pub fn run_calibrated<'a>(
        &self,
        layer: &str,
        w: impl AsArray<'a, f32, Ix2>,
        stats: Option<&LayerStats>,
        exec: &dyn ParallelExecutor,
    ) -> Result<PipelineOutput> {
        self.run_staged(layer, w.into(), stats, exec)
            .map_err(|(_, e)| e)
    }

    /// [`run_calibrated`](Self::run_calibrated), and on failure the stage
    /// that failed: `None` for the input check, else the pass's name.
    pub(crate) fn run_staged(
        &self,
        layer: &str,
        w: ArrayView2<f32>,
        stats: Option<&LayerStats>,
        exec: &dyn ParallelExecutor,
    ) -> StagedResult {
        let m = CompressedMatrix::from_dense(w).map_err(|e| (None, e))?;
        let (report, out, input_scale) = self.run_passes(layer, &m, w, stats, exec)?;
        Ok(PipelineOutput {
            matrix: out.unwrap_or(m),
            report,
            input_scale,
        })
    }

    /// [`run_on`](Self::run_on) for `rows × cols` row-major values owned by
    /// the caller: no copy of the input is made, and the values are given
    /// back (for reuse as a buffer) unless the input check rejected them.
    /// Failures carry their stage, as [`run_staged`](Self::run_staged)'s.
    pub(crate) fn run_vec(
        &self,
        layer: &str,
        rows: usize,
        cols: usize,
        data: Aligned<f32>,
        exec: &dyn ParallelExecutor,
    ) -> (StagedResult, Option<Aligned<f32>>) {
        let m = match CompressedMatrix::from_dense_vec(rows, cols, data) {
            Ok(m) => m,
            Err(e) => return (Err((None, e)), None),
        };
        let w = ArrayView2::from_shape((rows, cols), m.dense_data().expect("a dense f32 matrix"))
            .expect("rows × cols values");
        let result = self.run_passes(layer, &m, w, None, exec);
        match result {
            Ok((report, Some(out), input_scale)) => (
                Ok(PipelineOutput {
                    matrix: out,
                    report,
                    input_scale,
                }),
                m.into_dense_data(),
            ),
            Ok((report, None, _)) => (
                Ok(PipelineOutput {
                    matrix: m,
                    report,
                    input_scale: None,
                }),
                None,
            ),
            Err(e) => (Err(e), m.into_dense_data()),
        }
    }

    /// The report of every stage, the matrix after the last pass (`None`
    /// when there is no pass: the input is the output) and the per-input
    /// factors passes moved into it (their product, when several did).
    #[allow(clippy::type_complexity)]
    fn run_passes(
        &self,
        layer: &str,
        input: &CompressedMatrix,
        w: ArrayView2<f32>,
        stats: Option<&LayerStats>,
        exec: &dyn ParallelExecutor,
    ) -> std::result::Result<
        (PipelineReport, Option<CompressedMatrix>, Option<Vec<f32>>),
        (Option<String>, crate::SquishError),
    > {
        let mut report = PipelineReport::default();
        // The input stage is w itself: its error is exactly zero, no need to measure it.
        report.stages.push(StageReport {
            method: "dense f32".into(),
            structure: input.structure().kind(),
            encoding: input.encoding(),
            storage: input.storage(),
            error: ErrorMetrics {
                rel_frobenius: 0.0,
                max_abs: 0.0,
                sqnr_db: f64::INFINITY,
            },
        });
        let mut m: Option<CompressedMatrix> = None;
        let mut scale: Option<Vec<f32>> = None;
        for pass in &self.passes {
            let staged = |e| (Some(pass.name()), e);
            let next = pass
                .apply_scaled(layer, m.as_ref().unwrap_or(input), stats, exec)
                .map_err(staged)?;
            if let Some(f) = next.input_scale {
                scale = Some(match scale {
                    None => f,
                    Some(old) => old.iter().zip(&f).map(|(a, b)| a * b).collect(),
                });
            }
            report.stages.push(
                StageReport::measure_scaled(pass.name(), w, &next.matrix, scale.as_deref())
                    .map_err(staged)?,
            );
            m = Some(next.matrix);
        }
        Ok((report, m, scale))
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
            "{:<28} {:<10} {:<13} {:>12} {:>8} {:>7} {:>10} {:>10} {:>9}",
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
                "{:<28} {:<10} {:<13} {:>12} {:>8.3} {:>6.2}x {:>10.3e} {:>10.3e} {:>9.1}",
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

// Task-parallel compression of many layers: the pipeline-specific use of
// the generic task runner (kept here so that `parallel` knows no pipeline).
impl TaskRunner {
    /// Compresses every named layer with `pipeline`, one task per layer
    /// (largest first, each on one thread), costed by
    /// [`pipeline_working_set`]. Outcomes come back in input order and are
    /// the same as running the layers one by one.
    pub fn compress_layers(
        &self,
        pipeline: &Pipeline,
        layers: &[(String, ArrayView2<'_, f32>)],
        exec: &dyn ParallelExecutor,
        progress: Option<Progress<'_>>,
    ) -> Vec<TaskOutcome<PipelineOutput>> {
        let specs: Vec<TaskSpec> = layers
            .iter()
            .map(|(name, w)| {
                TaskSpec::new(
                    name.clone(),
                    pipeline_working_set(w.nrows(), w.ncols(), pipeline.len()),
                )
            })
            .collect();
        self.run(
            exec,
            &specs,
            |i| pipeline.run_on(layers[i].1, &Sequential),
            progress,
        )
    }
}

/// An estimate of the peak bytes a pipeline of `passes` passes needs on a
/// `rows × cols` f32 matrix: the input copy, the decoded copy each report
/// takes, and one intermediate per pass, at 4 bytes a weight, plus a mask.
pub fn pipeline_working_set(rows: usize, cols: usize, passes: usize) -> usize {
    let n = rows.saturating_mul(cols);
    n.saturating_mul(4 * (3 + passes) + 1)
}
