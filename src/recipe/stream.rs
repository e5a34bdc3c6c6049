//! Streaming model compression: a recipe applied to a model larger than
//! memory, a few tensors at a time under a memory budget, as an iterator a
//! program drives or straight into a container file.

use std::collections::VecDeque;
use std::sync::Mutex;

use super::{Choice, LayerReport, Recipe, RecipeError};
use crate::error::{Result, SquishError};
use crate::io::{
    CompressedTensor, ContainerWriter, Entry, ShardedModel, Tensor, TensorMeta, Written,
};
use crate::matrix::aligned::{Aligned, LINE};
use crate::metrics::sum_squares;
use crate::parallel::{map, pipeline_working_set, ParallelExecutor, Sequential};
use crate::pipeline::Pipeline;

/// The memory budget when none is set: 1 GiB of estimated working set
/// ([`pipeline_working_set`], which overestimates: int8 of a model of
/// 4096² matrices peaks near 60 % of it).
pub const DEFAULT_BUDGET: usize = 1 << 30;

/// Unchecked settings of a [`StreamCompression`].
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct StreamParams {
    budget: usize,
}

impl StreamParams {
    /// Bytes of estimated working set in flight at once (tensors read,
    /// widened to f32 and being compressed): at least 1 MiB. A single
    /// tensor whose estimate exceeds the budget is still compressed, alone.
    pub fn budget_bytes(mut self, bytes: usize) -> Self {
        self.budget = bytes;
        self
    }

    /// Checks the settings.
    pub fn check(self) -> Result<StreamCompression> {
        if self.budget < 1 << 20 {
            return Err(SquishError::invalid(
                "budget_bytes",
                self.budget,
                "the memory budget must be at least 1 MiB (1048576 bytes)",
            ));
        }
        Ok(StreamCompression {
            budget: self.budget,
        })
    }
}

/// Compression of a model tensor by tensor, in bounded memory.
///
/// Tensors are read in model order (see [`ShardedModel`]) into batches whose
/// estimated working set ([`pipeline_working_set`] for a matrix, twice its
/// f32 size for a tensor kept as it is) fits two thirds of the budget; a
/// batch's matrices are compressed in parallel on the executor, one task
/// each, while one more task reads the next batch, and the results come out
/// in model order. Peak memory is set by the budget and the
/// largest tensor, not by the size of the model. Every matrix gets exactly
/// what [`compress_model`](super::compress_model) gives it, whatever the
/// budget or the executor, and [`compress_to`](Self::compress_to) writes the
/// same container bytes as compressing in memory and saving.
///
/// ```
/// use squish::io::{CompressedModel, ContainerWriter, Dtype, Model, ShardedModel, Tensor};
/// use squish::parallel::Sequential;
/// use squish::recipe::{compress_model, Recipe, StreamCompression};
/// let dir = tempfile::tempdir()?;
/// let mut m = Model::new();
/// let w: Vec<f32> = (0..64 * 32).map(|i| ((i * 37 % 101) as f32 - 50.0) / 50.0).collect();
/// m.insert("fc.weight", Tensor::float(Dtype::BF16, vec![64, 32], w)?)?;
/// m.insert("fc.bias", Tensor::float(Dtype::BF16, vec![64], vec![0.25; 64])?)?;
/// m.save(dir.path().join("model.safetensors"))?;
///
/// let recipe = Recipe::from_toml("[default]\npipeline = [{ method = \"int8\" }]")?;
/// let src = ShardedModel::open(dir.path())?;
/// let stream = StreamCompression::params().budget_bytes(8 << 20).check()?;
/// // As an iterator: one result per tensor, in model order.
/// for t in stream.stream(&src, &recipe, &Sequential)? {
///     let t = t?;
///     println!("{} {:?}", t.name, t.layer.map(|l| l.ratio()));
/// }
/// // Or straight into a container: the same bytes as the in-memory path.
/// let out = dir.path().join("model.squish");
/// stream.compress_to(&src, &recipe, &Sequential, ContainerWriter::create(&out)?, &mut |_| {})?;
/// let whole = compress_model(&Model::load(dir.path().join("model.safetensors"))?, &recipe, &Sequential, &|_| {})?;
/// assert_eq!(std::fs::read(&out)?, whole.model.to_bytes()?);
/// # Ok::<(), Box<dyn std::error::Error>>(())
/// ```
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct StreamCompression {
    budget: usize,
}

impl Default for StreamCompression {
    fn default() -> Self {
        StreamCompression {
            budget: DEFAULT_BUDGET,
        }
    }
}

/// One tensor out of a [`CompressStream`].
#[derive(Clone, Debug)]
pub struct StreamedTensor {
    /// The tensor's name.
    pub name: String,
    /// Compressed, or kept as it was (in its own dtype).
    pub entry: Entry,
    /// What compression did, for a compressed matrix.
    pub layer: Option<LayerReport>,
    /// Bytes read from the model file for this tensor.
    pub bytes_read: u64,
    /// Σw² of the original values (for a compressed matrix), so totals can
    /// be formed without the original model.
    pub signal: f64,
}

/// What [`StreamCompression::compress_to`] did.
#[derive(Clone, Debug)]
pub struct StreamSummary {
    /// One report per compressed matrix, in model order.
    pub layers: Vec<LayerReport>,
    /// Tensors stored as they were.
    pub kept: usize,
    /// Bytes of tensor data read.
    pub bytes_read: u64,
    /// The files written.
    pub written: Written,
    signal: Vec<f64>,
}

impl StreamSummary {
    /// Totals over all compressed matrices: (bytes before, bytes after,
    /// relative error of the concatenated weights), as
    /// [`Compressed::totals`](super::Compressed::totals) gives.
    pub fn totals(&self) -> (usize, usize, f64) {
        super::apply::layer_totals(self.layers.iter().zip(self.signal.iter().copied()))
    }
}

impl StreamCompression {
    /// Starts a builder with the default budget ([`DEFAULT_BUDGET`]).
    pub fn params() -> StreamParams {
        StreamParams {
            budget: DEFAULT_BUDGET,
        }
    }

    /// The memory budget in bytes.
    pub fn budget(&self) -> usize {
        self.budget
    }

    /// The tensors of `src` compressed as `recipe` says, as an iterator in
    /// model order. The recipe is checked against the model's names first
    /// (nothing is read when it does not fit); after an error the iterator
    /// ends.
    pub fn stream<'a>(
        &self,
        src: &'a ShardedModel,
        recipe: &Recipe,
        exec: &'a dyn ParallelExecutor,
    ) -> Result<CompressStream<'a>> {
        let (mut matrices, mut others) = (Vec::new(), Vec::new());
        for t in src.tensors() {
            if t.is_matrix() {
                matrices.push(t.name());
            } else {
                others.push(t.name());
            }
        }
        let planned = recipe.plan(&matrices, &others)?;
        let pipelines: Vec<(Choice, Pipeline)> = [Choice::Default]
            .into_iter()
            .chain((0..recipe.rules().len()).map(Choice::Rule))
            .map(|c| Ok((c, recipe.pipeline(c)?)))
            .collect::<Result<_>>()?;
        let mut planned = planned.into_iter();
        let choices = src
            .tensors()
            .iter()
            .map(|t| {
                if !t.is_matrix() {
                    return None;
                }
                let c = planned.next().expect("one choice per matrix");
                let p = pipelines.iter().position(|(d, _)| *d == c)?;
                (!pipelines[p].1.is_empty()).then_some(p)
            })
            .collect();
        Ok(CompressStream {
            src,
            exec,
            budget: self.budget,
            pipelines,
            choices,
            next: 0,
            prefetched: None,
            ready: VecDeque::new(),
            failed: false,
            pool: Mutex::new(Vec::new()),
        })
    }

    /// Compresses `src` into `out`, a tensor at a time; `progress` sees each
    /// tensor as it is handed to the writer. With more than one thread in
    /// `exec` the writer runs on a thread of its own, so writing overlaps the
    /// compression of the next tensors (at most two compressed tensors wait
    /// for it). On an error nothing is left on disk.
    pub fn compress_to(
        &self,
        src: &ShardedModel,
        recipe: &Recipe,
        exec: &dyn ParallelExecutor,
        mut out: ContainerWriter,
        progress: &mut dyn FnMut(&StreamedTensor),
    ) -> Result<StreamSummary> {
        let stream = self.stream(src, recipe, exec)?;
        // Every tensor becomes one entry of its own name, dtype and shape:
        // the writer can set the header's space aside and write each once.
        out.plan_entries(
            src.tensors()
                .iter()
                .map(|t| (t.name(), t.dtype(), t.shape())),
        );
        if exec.threads() <= 1 {
            let mut failed = None;
            let tally = drive(
                stream,
                progress,
                &mut |name, entry| match out.push(&name, &entry) {
                    Ok(()) => true,
                    Err(e) => {
                        failed = Some(e);
                        false
                    }
                },
            )?;
            if let Some(e) = failed {
                return Err(e);
            }
            return tally.finish(out);
        }
        let (tx, rx) = std::sync::mpsc::sync_channel::<(String, Entry)>(1);
        std::thread::scope(|scope| {
            let writer = scope.spawn(move || -> Result<ContainerWriter> {
                for (name, entry) in rx {
                    out.push(&name, &entry)?;
                }
                Ok(out)
            });
            // A send fails only when the writer stopped on an error, returned by join.
            let tally = drive(stream, progress, &mut |name, entry| {
                tx.send((name, entry)).is_ok()
            });
            drop(tx);
            let written = writer
                .join()
                .unwrap_or_else(|p| std::panic::resume_unwind(p));
            // On an error the unfinished writer is dropped, and its temporary files with it.
            let tally = tally?;
            tally.finish(written?)
        })
    }
}

/// What [`StreamCompression::compress_to`] counts while it writes.
#[derive(Default)]
struct Tally {
    layers: Vec<LayerReport>,
    signal: Vec<f64>,
    kept: usize,
    bytes_read: u64,
}

impl Tally {
    fn finish(self, out: ContainerWriter) -> Result<StreamSummary> {
        Ok(StreamSummary {
            layers: self.layers,
            kept: self.kept,
            bytes_read: self.bytes_read,
            written: out.finish()?,
            signal: self.signal,
        })
    }
}

/// Pulls `stream` dry, handing each tensor to `progress` then to `sink`
/// (which returns false to stop early).
fn drive(
    stream: CompressStream<'_>,
    progress: &mut dyn FnMut(&StreamedTensor),
    sink: &mut dyn FnMut(String, Entry) -> bool,
) -> Result<Tally> {
    let mut tally = Tally::default();
    for t in stream {
        let t = t?;
        progress(&t);
        tally.bytes_read += t.bytes_read;
        match t.layer {
            Some(l) => {
                tally.layers.push(l);
                tally.signal.push(t.signal);
            }
            None => tally.kept += 1,
        }
        if !sink(t.name, t.entry) {
            break;
        }
    }
    Ok(tally)
}

/// The iterator of [`StreamCompression::stream`].
pub struct CompressStream<'a> {
    src: &'a ShardedModel,
    exec: &'a dyn ParallelExecutor,
    budget: usize,
    pipelines: Vec<(Choice, Pipeline)>,
    /// Per tensor: the pipeline that compresses it, `None` to keep it.
    choices: Vec<Option<usize>>,
    next: usize,
    /// The next batch (start, end, tensors), read while the last one was compressed.
    prefetched: Option<(usize, usize, Vec<Loaded>)>,
    ready: VecDeque<Result<StreamedTensor>>,
    failed: bool,
    /// f32 buffers of compressed matrices, reused by later reads (fresh
    /// allocations of tens of MiB cost more in page faults than the
    /// quantization itself).
    pool: Mutex<Vec<Aligned<f32>>>,
}

/// A tensor read for a batch: a matrix's f32 values (taken by the task
/// that compresses it) and its pipeline, or a tensor kept as it is.
enum Loaded {
    Matrix(Mutex<Option<Aligned<f32>>>, usize),
    Plain(Tensor),
}

impl CompressStream<'_> {
    fn cost(&self, i: usize) -> usize {
        let t = &self.src.tensors()[i];
        match self.choices[i] {
            Some(p) => {
                let rows = t.shape()[0];
                pipeline_working_set(rows, t.numel() / rows, self.pipelines[p].1.len())
            }
            None => t.numel().saturating_mul(4).saturating_mul(2),
        }
    }

    /// End of the batch starting at `start`: tensors whose estimates sum to
    /// at most two thirds of the budget (at least one tensor). The rest of
    /// the budget covers the next batch, read (as f32, a quarter of its
    /// estimate or less) while this one is compressed.
    fn batch_end(&self, start: usize) -> usize {
        let n = self.src.tensors().len();
        let limit = self.budget / 3 * 2;
        let (mut end, mut sum) = (start, 0usize);
        while end < n {
            let c = self.cost(end);
            if end > start && sum.saturating_add(c) > limit {
                break;
            }
            sum = sum.saturating_add(c);
            end += 1;
        }
        end
    }

    /// Reads tensors `start..end` (matrices widened to f32).
    fn load(&self, start: usize, end: usize) -> Result<Vec<Loaded>> {
        let metas = &self.src.tensors()[start..end];
        (start..end)
            .zip(metas)
            .map(|(i, t)| {
                Ok(match self.choices[i] {
                    Some(p) => {
                        let mut buf = self.buffer(t.numel());
                        buf.resize(t.numel(), 0.0);
                        self.src.read_f32_into_slice(t, &mut buf)?;
                        Loaded::Matrix(Mutex::new(Some(buf)), p)
                    }
                    None => Loaded::Plain(self.src.read(t)?),
                })
            })
            .collect()
    }

    /// A buffer from the pool (the smallest that holds `n` values, else the
    /// largest), or a new one.
    fn buffer(&self, n: usize) -> Aligned<f32> {
        let mut pool = self.pool.lock().unwrap_or_else(|e| e.into_inner());
        let fits = (0..pool.len())
            .filter(|&i| pool[i].capacity() >= n)
            .min_by_key(|&i| pool[i].capacity());
        let pick = fits.or_else(|| (0..pool.len()).max_by_key(|&i| pool[i].capacity()));
        pick.map(|i| pool.swap_remove(i))
            .unwrap_or_else(|| Aligned::new(LINE))
    }

    /// Returns a buffer to the pool, which holds at most a third of the
    /// budget (the share the next batch's reads may use).
    fn give_back(&self, buf: Aligned<f32>) {
        let mut pool = self.pool.lock().unwrap_or_else(|e| e.into_inner());
        let held: usize = pool.iter().map(|b| b.capacity() * 4).sum();
        if held + buf.capacity() * 4 <= self.budget / 3 {
            pool.push(buf);
        }
    }

    /// Compresses the current batch, one task a matrix on the executor,
    /// while the next one is read (on a thread of its own when the executor
    /// has several, else as one more task); queues the batch's results in
    /// model order.
    fn fill(&mut self) -> Result<()> {
        let n = self.src.tensors().len();
        let (start, end, loaded) = match self.prefetched.take() {
            Some(b) => b,
            None => {
                let end = self.batch_end(self.next);
                (self.next, end, self.load(self.next, end)?)
            }
        };
        self.next = end;
        let next_end = if end < n { self.batch_end(end) } else { end };
        let metas = &self.src.tensors()[start..end];
        let matrices = loaded
            .iter()
            .filter(|l| matches!(l, Loaded::Matrix(..)))
            .count();
        // One matrix alone may use every worker; several run one per worker.
        let inner: &dyn ParallelExecutor = if matrices == 1 {
            self.exec
        } else {
            &Sequential
        };
        let this = &*self;
        let pipelines = &this.pipelines;
        let k = loaded.len();
        let compress = |j: usize| {
            if j == k {
                return Task::Read(this.load(end, next_end));
            }
            match &loaded[j] {
                Loaded::Matrix(data, p) => {
                    let data = data
                        .lock()
                        .unwrap_or_else(|e| e.into_inner())
                        .take()
                        .expect("one task per matrix");
                    let (r, buf) = compress_one(&metas[j], data, &pipelines[*p].1, inner);
                    if let Some(buf) = buf {
                        this.give_back(buf);
                    }
                    Task::Done(Some(r))
                }
                Loaded::Plain(_) => Task::Done(None),
            }
        };
        let reads = next_end > end;
        let (out, read) = if reads && self.exec.threads() > 1 {
            // The next batch is read on a thread of its own, so the disk
            // stays busy while every worker compresses (reading mostly
            // waits on the disk).
            std::thread::scope(|scope| {
                let reader = scope.spawn(|| compress(k));
                let out = map(self.exec, k, compress);
                let read = reader
                    .join()
                    .unwrap_or_else(|p| std::panic::resume_unwind(p));
                (out, Some(read))
            })
        } else {
            let mut out = map(self.exec, k + usize::from(reads), compress);
            let read = (out.len() > k).then(|| out.pop().expect("the read task"));
            (out, read)
        };
        for ((t, l), o) in metas.iter().zip(loaded).zip(out) {
            let item = match (l, o) {
                (Loaded::Plain(tensor), _) => Ok(StreamedTensor {
                    name: t.name().to_string(),
                    entry: Entry::Plain(tensor),
                    layer: None,
                    bytes_read: t.bytes(),
                    signal: 0.0,
                }),
                (Loaded::Matrix(..), Task::Done(Some(r))) => r,
                _ => unreachable!("one compression per matrix"),
            };
            self.ready.push_back(item);
        }
        match read {
            Some(Task::Read(Ok(next))) => self.prefetched = Some((end, next_end, next)),
            // A read error comes after the tensors before it.
            Some(Task::Read(Err(e))) => self.ready.push_back(Err(e)),
            _ => {}
        }
        Ok(())
    }
}

/// What a task of [`CompressStream::fill`] returns.
enum Task {
    Done(Option<Result<StreamedTensor>>),
    Read(Result<Vec<Loaded>>),
}

/// Compresses one matrix as [`compress_model`](super::compress_model) does;
/// gives its f32 values back for reuse.
fn compress_one(
    t: &TensorMeta,
    data: Aligned<f32>,
    pipeline: &Pipeline,
    exec: &dyn ParallelExecutor,
) -> (Result<StreamedTensor>, Option<Aligned<f32>>) {
    let rows = t.shape()[0];
    let cols = data.len() / rows;
    let signal = sum_squares(&data);
    let (out, buf) = pipeline.run_vec(t.name(), rows, cols, data, exec);
    // An error names the layer and the pass, as the in-memory path's do.
    let out = out.map_err(|e| RecipeError::in_layer(t.name(), "", pipeline, e).into());
    let result = out.and_then(|out| {
        let layer = LayerReport::of_run(t.name(), t.shape(), t.bytes() as usize, &out);
        let method = layer.method.clone();
        let ct = CompressedTensor::new(out.matrix, t.dtype(), t.shape().to_vec(), method)?;
        Ok(StreamedTensor {
            name: t.name().to_string(),
            entry: Entry::Compressed(Box::new(ct)),
            layer: Some(layer),
            bytes_read: t.bytes(),
            signal,
        })
    });
    (result, buf)
}

impl Iterator for CompressStream<'_> {
    type Item = Result<StreamedTensor>;

    fn next(&mut self) -> Option<Self::Item> {
        if self.failed {
            return None;
        }
        if self.ready.is_empty()
            && (self.prefetched.is_some() || self.next < self.src.tensors().len())
        {
            if let Err(e) = self.fill() {
                self.failed = true;
                return Some(Err(e));
            }
        }
        let item = self.ready.pop_front()?;
        if item.is_err() {
            self.failed = true;
            self.ready.clear();
        }
        Some(item)
    }
}
