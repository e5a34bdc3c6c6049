//! Task-parallel compression across ranks: each rank compresses a share of
//! the layers, balanced by estimated cost.
//!
//! [`compress_model`] gathers the result on rank 0. [`compress_to_file`]
//! moves no tensor at all: each rank encodes its own entries, the ranks
//! exchange only their sizes and descriptions, every rank derives the same
//! header and offsets from them, and each writes its entries with
//! positioned writes into one temporary file that rank 0 syncs and renames
//! into place: byte for byte the file
//! [`CompressedModel::save`](crate::io::CompressedModel::save) writes in one
//! process.

use std::path::{Path, PathBuf};
use std::time::Instant;

use ndarray::ArrayView2;

use super::reduce::{guarded, Failure, Status};
use super::wire::{from_bytes, to_bytes, Reader, Wire};
use super::{Cluster, DistributedError};
use crate::error::Result;
use crate::io::description::EntryDesc;
use crate::io::layout::{layout, write_parts, EncodedEntry, EntryMeta, PartMeta, SharedOutput};
use crate::io::{CompressedModel, CompressedTensor, Dtype, Entry, Model, Tensor};
use crate::metrics::ErrorMetrics;
use crate::parallel::{Sequential, TaskRunner, TaskSpec};
use crate::pipeline::Pipeline;
use crate::recipe::{file_bytes, Choice, Compressed, LayerReport, MethodSpec, Recipe};

/// Estimated cost of compressing a `rows × cols` matrix with `methods`, in
/// units of about 5 ns on one core (measured on all-MiniLM-L6-v2): every
/// stage of a pipeline, the input included, is decoded and measured against
/// the weights (4 units a weight); k-means adds about 4 units a weight, an
/// SVD about `min(rows, cols)/4`.
///
/// ```
/// use squish::distributed::layer_cost;
/// use squish::recipe::{IntSpec, MethodSpec};
/// let int8 = [MethodSpec::Int8(IntSpec::default())];
/// assert_eq!(layer_cost(&int8, 100, 10), 8 * 1000);
/// assert_eq!(layer_cost(&int8, 200, 10), 2 * layer_cost(&int8, 100, 10));
/// ```
pub fn layer_cost(methods: &[MethodSpec], rows: usize, cols: usize) -> u64 {
    let n = (rows as u64).saturating_mul(cols as u64);
    let per_weight: u64 = 4 + methods
        .iter()
        .map(|m| match m {
            MethodSpec::LowRank(_) => 4 + rows.min(cols) as u64 / 4,
            MethodSpec::KMeans(_) => 8,
            _ => 4,
        })
        .sum::<u64>();
    n.saturating_mul(per_weight)
}

/// Assigns tasks of the given costs to `ranks` ranks, largest first, each
/// to the least loaded rank so far (the lowest rank on ties): the LPT rule,
/// within 4/3 of the best makespan. Deterministic.
///
/// ```
/// use squish::distributed::assign_by_cost;
/// // 5 → rank 0; 4, 4 → rank 1 (load 4, then 8); 1 → rank 0 (load 5 < 8).
/// assert_eq!(assign_by_cost(&[5, 1, 4, 4], 2), vec![0, 0, 1, 1]);
/// ```
pub fn assign_by_cost(costs: &[u64], ranks: usize) -> Vec<usize> {
    let ranks = ranks.max(1);
    let mut order: Vec<usize> = (0..costs.len()).collect();
    order.sort_by(|&a, &b| costs[b].cmp(&costs[a]).then(a.cmp(&b)));
    let mut load = vec![0u64; ranks];
    let mut owner = vec![0usize; costs.len()];
    for i in order {
        let r = (0..ranks)
            .min_by_key(|&r| (load[r], r))
            .expect("at least one rank");
        load[r] = load[r].saturating_add(costs[i]);
        owner[i] = r;
    }
    owner
}

/// Estimated cost of storing a tensor as it is (copied and checksummed):
/// one unit a value.
fn plain_cost(t: &Tensor) -> u64 {
    t.shape().iter().map(|&d| d as u64).product::<u64>().max(1)
}

/// One tensor of the model, as every rank plans it.
struct Item<'m> {
    name: &'m str,
    tensor: &'m Tensor,
    /// The matrix and its pipeline, when the recipe compresses it.
    work: Option<(ArrayView2<'m, f32>, Pipeline)>,
    cost: u64,
}

/// The plan, the same on every rank (a bad recipe fails alike): every
/// tensor in model order, with what to do with it and its cost.
fn plan<'m>(model: &'m Model, recipe: &Recipe) -> Result<Vec<Item<'m>>> {
    let mut names = Vec::new();
    let mut others = Vec::new();
    for (name, t) in model.iter() {
        match t.matrix() {
            Some(_) => names.push(name),
            None => others.push(name),
        }
    }
    let mut choices = recipe.plan(&names, &others)?.into_iter();
    let mut items = Vec::with_capacity(model.len());
    for (name, t) in model.iter() {
        let work = match t.matrix() {
            None => None,
            Some(w) => {
                let c = choices.next().expect("one choice per matrix");
                let p = if c == Choice::Keep {
                    None
                } else {
                    Some(recipe.pipeline(c)?).filter(|p| !p.is_empty())
                };
                p.map(|p| {
                    let cost = layer_cost(recipe.methods(c), w.nrows(), w.ncols());
                    (w, p, cost)
                })
            }
        };
        items.push(match work {
            Some((w, p, cost)) => Item {
                name,
                tensor: t,
                work: Some((w, p)),
                cost,
            },
            None => Item {
                name,
                tensor: t,
                work: None,
                cost: plain_cost(t),
            },
        });
    }
    Ok(items)
}

/// Runs `work` on this rank's share of `jobs` (indices into `items`; shares
/// by [`assign_by_cost`]), largest first on the rank's threads; returns
/// (job number, status) for each of this rank's jobs.
fn run_share<T: Send>(
    cluster: &Cluster<'_>,
    items: &[Item<'_>],
    jobs: &[usize],
    work: impl Fn(&Item<'_>) -> Result<T> + Sync,
) -> Vec<(usize, Status<T>)> {
    let rank = cluster.rank();
    let costs: Vec<u64> = jobs.iter().map(|&i| items[i].cost).collect();
    let owners = assign_by_cost(&costs, cluster.size());
    let mine: Vec<usize> = (0..jobs.len()).filter(|&j| owners[j] == rank).collect();
    let specs: Vec<TaskSpec> = mine
        .iter()
        .map(|&j| TaskSpec::new(items[jobs[j]].name, costs[j] as usize))
        .collect();
    let outcomes = TaskRunner::default().run(
        cluster.exec(),
        &specs,
        |k| {
            let item = &items[jobs[mine[k]]];
            Ok(guarded(rank, item.name, || work(item)))
        },
        None,
    );
    mine.iter()
        .zip(outcomes)
        .map(|(&j, o)| {
            let s = o
                .result
                .unwrap_or_else(|e| Err(Failure::new(rank, &o.name, &e)));
            (j, s)
        })
        .collect()
}

/// Compresses one matrix: its report and compressed tensor.
fn compress_one(item: &Item<'_>) -> Result<(LayerReport, CompressedTensor)> {
    let (w, p) = item.work.as_ref().expect("a compressed item");
    let t = item.tensor;
    let out = p.run_on(*w, &Sequential)?;
    let report = LayerReport::of_run(item.name, t.shape(), file_bytes(t), &out);
    let method = report.method.clone();
    let tensor = CompressedTensor::new(out.matrix, t.dtype(), t.shape().to_vec(), method)?;
    Ok((report, tensor))
}

impl Wire for LayerReport {
    fn encode(&self, out: &mut Vec<u8>) {
        self.name.encode(out);
        self.shape.encode(out);
        self.method.encode(out);
        self.bytes_before.encode(out);
        self.bytes_f32.encode(out);
        self.bytes_after.encode(out);
        self.error.rel_frobenius.encode(out);
        self.error.max_abs.encode(out);
        self.error.sqnr_db.encode(out);
    }

    fn decode(input: &mut Reader<'_>) -> Result<Self> {
        Ok(LayerReport {
            name: String::decode(input)?,
            shape: Vec::<usize>::decode(input)?,
            method: String::decode(input)?,
            bytes_before: usize::decode(input)?,
            bytes_f32: usize::decode(input)?,
            bytes_after: usize::decode(input)?,
            error: ErrorMetrics {
                rel_frobenius: f64::decode(input)?,
                max_abs: f64::decode(input)?,
                sqnr_db: f64::decode(input)?,
            },
        })
    }
}

/// One compressed layer as it travels to rank 0 for [`compress_model`]:
/// the report, and the matrix as a one-entry container (the file format's
/// own exact, validated encoding).
struct LayerOut {
    report: LayerReport,
    tensor: CompressedTensor,
}

impl Wire for LayerOut {
    fn encode(&self, out: &mut Vec<u8>) {
        self.report.encode(out);
        let mut m = CompressedModel::new();
        m.insert_compressed(self.report.name.clone(), self.tensor.clone())
            .expect("a fresh container takes any name");
        let bytes = m.to_bytes().expect("an in-memory container encodes");
        bytes.len().encode(out);
        out.extend_from_slice(&bytes);
    }

    fn decode(input: &mut Reader<'_>) -> Result<Self> {
        let report = LayerReport::decode(input)?;
        let n = input.count()?;
        let m = CompressedModel::from_bytes(input.take(n)?)?;
        let tensor = match m.get(&report.name) {
            Some(Entry::Compressed(t)) => (**t).clone(),
            _ => {
                return Err(DistributedError::Malformed {
                    what: "compressed layer",
                    detail: format!("no compressed tensor `{}` in the message", report.name),
                }
                .into())
            }
        };
        Ok(LayerOut { report, tensor })
    }
}

impl<T: Wire> Wire for Option<T> {
    fn encode(&self, out: &mut Vec<u8>) {
        match self {
            None => out.push(0),
            Some(v) => {
                out.push(1);
                v.encode(out);
            }
        }
    }
    fn decode(input: &mut Reader<'_>) -> Result<Self> {
        match input.take(1)?[0] {
            0 => Ok(None),
            1 => Ok(Some(T::decode(input)?)),
            b => Err(DistributedError::Malformed {
                what: "option",
                detail: format!("tag byte {b}"),
            }
            .into()),
        }
    }
}

fn malformed(what: &'static str, e: impl std::fmt::Display) -> crate::SquishError {
    DistributedError::Malformed {
        what,
        detail: e.to_string(),
    }
    .into()
}

impl Wire for PartMeta {
    fn encode(&self, out: &mut Vec<u8>) {
        self.name.encode(out);
        self.dtype.to_string().encode(out);
        self.shape.encode(out);
        self.len.encode(out);
    }
    fn decode(input: &mut Reader<'_>) -> Result<Self> {
        let name = String::decode(input)?;
        let dtype = String::decode(input)?;
        let dtype: Dtype = serde_json::from_value(serde_json::Value::String(dtype))
            .map_err(|e| malformed("dtype", e))?;
        Ok(PartMeta {
            name,
            dtype,
            shape: Vec::<usize>::decode(input)?,
            len: u64::decode(input)?,
        })
    }
}

impl Wire for EntryMeta {
    fn encode(&self, out: &mut Vec<u8>) {
        self.parts.encode(out);
        serde_json::to_string(&self.desc)
            .expect("descriptions serialize")
            .encode(out);
    }
    fn decode(input: &mut Reader<'_>) -> Result<Self> {
        let parts = Vec::<PartMeta>::decode(input)?;
        let desc: EntryDesc = serde_json::from_str(&String::decode(input)?)
            .map_err(|e| malformed("entry description", e))?;
        Ok(EntryMeta { parts, desc })
    }
}

/// Compresses `model` as `recipe` says over the ranks of `cluster`; returns
/// the result on rank 0 and `None` elsewhere.
///
/// Every rank must hold the same model and recipe (load them from a shared
/// file system). Layers are assigned by [`layer_cost`] with
/// [`assign_by_cost`]; each rank compresses its layers on its threads
/// (largest first), and sends them to rank 0, which assembles them in model
/// order. The container equals the one-process
/// [`recipe::compress_model`](crate::recipe::compress_model)'s byte for
/// byte. If any layer fails, every rank returns
/// [`DistributedError::RankFailed`] naming the first failing layer (in model
/// order) and its rank. Collective. To write the container, use
/// [`compress_to_file`], which sends no tensor.
///
/// ```
/// use ndarray::Array2;
/// use squish::distributed::{compress_model, Cluster, SingleProcess};
/// use squish::io::{Dtype, Model, Tensor};
/// use squish::parallel::Sequential;
/// use squish::recipe::{IntSpec, MethodSpec, Recipe};
/// let mut model = Model::new();
/// let w: Vec<f32> = (0..64 * 32).map(|i| ((i * 37) % 101) as f32 / 50.0 - 1.0).collect();
/// model.insert("fc.weight", Tensor::float(Dtype::F32, vec![64, 32], w)?)?;
/// let recipe = Recipe::uniform(vec![MethodSpec::Int8(IntSpec::default())])?;
/// let c = Cluster::new(&SingleProcess, &Sequential);
/// let out = compress_model(&c, &model, &recipe)?.expect("rank 0 gets the result");
/// let one = squish::recipe::compress_model(&model, &recipe, &Sequential, &|_| {})?;
/// assert_eq!(out.model.to_bytes()?, one.model.to_bytes()?);
/// # Ok::<(), squish::SquishError>(())
/// ```
pub fn compress_model(
    cluster: &Cluster<'_>,
    model: &Model,
    recipe: &Recipe,
) -> Result<Option<Compressed>> {
    let rank = cluster.rank();
    let items = plan(model, recipe)?;
    let jobs: Vec<usize> = (0..items.len())
        .filter(|&i| items[i].work.is_some())
        .collect();
    let results = run_share(cluster, &items, &jobs, |item| {
        compress_one(item).map(|(report, tensor)| LayerOut { report, tensor })
    });

    // Rank 0 gathers every rank's layers; the others send theirs.
    let comm = cluster.comm();
    let mut slots: Vec<Option<Status<LayerOut>>> = (0..jobs.len()).map(|_| None).collect();
    let sent = if rank == 0 {
        for (j, s) in results {
            slots[j] = Some(s);
        }
        None
    } else {
        Some(to_bytes(&results))
    };
    let gathered = comm.gather(0, sent.as_deref().unwrap_or(&[]))?;
    let outcome: Status<Option<Compressed>> = match gathered {
        None => Ok(None),
        Some(parts) => {
            let mut decoded = Ok(());
            for (r, bytes) in parts.iter().enumerate().skip(1) {
                match from_bytes::<Vec<(usize, Status<LayerOut>)>>(bytes) {
                    Ok(list) => list.into_iter().for_each(|(j, s)| {
                        if let Some(slot) = slots.get_mut(j) {
                            *slot = Some(s);
                        }
                    }),
                    Err(e) => {
                        decoded = Err(Failure::new(r, "sending its layers", &e));
                        break;
                    }
                }
            }
            decoded
                .and_then(|()| assemble(&items, &jobs, slots))
                .map(Some)
        }
    };
    // Everyone learns the outcome (rank 0 keeps its model).
    let mut status = match &outcome {
        Ok(_) => to_bytes(&Status::<()>::Ok(())),
        Err(f) => to_bytes(&Status::<()>::Err(f.clone())),
    };
    comm.broadcast(0, &mut status)?;
    from_bytes::<Status<()>>(&status)?.map_err(Failure::into_error)?;
    outcome.map_err(Failure::into_error)
}

fn assemble(
    items: &[Item<'_>],
    jobs: &[usize],
    slots: Vec<Option<Status<LayerOut>>>,
) -> Status<Compressed> {
    let mut by_item: Vec<Option<LayerOut>> = (0..items.len()).map(|_| None).collect();
    for (j, s) in slots.into_iter().enumerate() {
        let name = items[jobs[j]].name;
        let s = s.ok_or_else(|| Failure::new(0, name, &"no rank sent this layer"))?;
        by_item[jobs[j]] = Some(s?);
    }
    let mut result = Compressed {
        model: CompressedModel::new(),
        layers: Vec::new(),
    };
    for (item, out) in items.iter().zip(by_item) {
        let name = item.name;
        let inserted = match out {
            None => result.model.insert_plain(name, item.tensor.clone()),
            Some(out) => {
                result.layers.push(out.report);
                result.model.insert_compressed(name, out.tensor)
            }
        };
        inserted.map_err(|e| Failure::new(0, name, &e))?;
    }
    Ok(result)
}

/// Where one rank's time went in [`compress_to_file`], in seconds, phase
/// by phase. The phases after `compute` are the serial part of a run on
/// this rank (with one rank: all of it but the compression).
#[derive(Clone, Copy, Debug, Default, PartialEq)]
pub struct WritePhases {
    /// Compressing and encoding this rank's layers (and checksumming the
    /// tensors it stores as they are).
    pub compute: f64,
    /// Exchanging every entry's sizes and description with every rank
    /// (an all-gather of under a kilobyte an entry), waiting for the
    /// slowest rank included.
    pub exchange: f64,
    /// Building the header and every component's offset.
    pub layout: f64,
    /// Writing this rank's entries (rank 0: and the header) into the file.
    pub write: f64,
    /// Waiting for every rank's writes (each rank syncs its own data).
    pub collect: f64,
    /// Syncing the file, renaming it into place, telling every rank.
    pub sync: f64,
}

impl WritePhases {
    /// The sum of the phases.
    pub fn total(&self) -> f64 {
        self.compute + self.exchange + self.layout + self.write + self.collect + self.sync
    }
}

/// What [`compress_to_file`] returns on rank 0.
#[derive(Clone, Debug)]
pub struct FileReport {
    /// One report per compressed matrix, in model order.
    pub layers: Vec<LayerReport>,
    /// Tensors in the container (compressed and stored as they were).
    pub tensors: usize,
    /// Length of the file written.
    pub bytes: u64,
    /// Where rank 0's time went.
    pub phases: WritePhases,
}

impl FileReport {
    /// Totals over all layers: (bytes before as in the input file, bytes
    /// after, relative error of the concatenated weights), as
    /// [`Compressed::totals`] gives for the same run.
    pub fn totals(&self, original: &Model) -> (usize, usize, f64) {
        crate::recipe::layer_totals(self.layers.iter().map(|l| {
            let s = original
                .get(&l.name)
                .and_then(|t| t.as_f32())
                .map_or(0.0, crate::metrics::sum_squares);
            (l, s)
        }))
    }
}

/// One entry as a rank produced it: the report (compressed matrices) and
/// the encoded entry.
type Produced = (Option<LayerReport>, EncodedEntry);

/// What each rank tells every other after its compute: rank 0's temporary
/// file (its path, or why it could not be made; empty elsewhere), and for
/// each of its entries (job number) the report and metadata or the failure.
type Shares = (Status<Vec<u8>>, Vec<(usize, Status<Sent>)>);

/// What every rank learns of one entry: the report (compressed matrices)
/// and the metadata.
type Sent = (Option<LayerReport>, EntryMeta);

#[cfg(unix)]
fn path_bytes(p: &Path) -> Vec<u8> {
    use std::os::unix::ffi::OsStrExt;
    p.as_os_str().as_bytes().to_vec()
}

#[cfg(unix)]
fn bytes_path(b: &[u8]) -> PathBuf {
    use std::os::unix::ffi::OsStrExt;
    PathBuf::from(std::ffi::OsStr::from_bytes(b))
}

#[cfg(not(unix))]
fn path_bytes(p: &Path) -> Vec<u8> {
    p.to_string_lossy().into_owned().into_bytes()
}

#[cfg(not(unix))]
fn bytes_path(b: &[u8]) -> PathBuf {
    PathBuf::from(String::from_utf8_lossy(b).into_owned())
}

/// [`compress_model`], then the container goes to `output`, written
/// atomically (`output` is either untouched or complete) and byte for byte
/// the file the one-process
/// [`CompressedModel::save`](crate::io::CompressedModel::save) writes.
///
/// No tensor travels: each rank encodes its entries (layers by
/// [`layer_cost`], tensors stored as they are by size) as it computes them;
/// the ranks all-gather each entry's component sizes and description; every
/// rank derives the header and every offset from them; rank 0 writes the
/// header and each rank its own entries with positioned writes into one
/// temporary file next to `output` (so `output`'s directory must be on a
/// file system every rank sees at the same path); rank 0 syncs it and
/// renames it into place.
/// No file is left if any rank failed (a layer, or a write): every rank
/// returns the same [`DistributedError::RankFailed`]. Returns the layers'
/// reports and rank 0's time per phase on rank 0, `None` elsewhere.
/// Collective.
///
/// ```
/// use ndarray::Array2;
/// use squish::distributed::{compress_to_file, Cluster, SingleProcess};
/// use squish::io::{Dtype, Model, Tensor};
/// use squish::parallel::Sequential;
/// use squish::recipe::{IntSpec, MethodSpec, Recipe};
/// let mut model = Model::new();
/// let w: Vec<f32> = (0..64 * 32).map(|i| ((i * 37) % 101) as f32 / 50.0 - 1.0).collect();
/// model.insert("fc.weight", Tensor::float(Dtype::F32, vec![64, 32], w)?)?;
/// model.insert("fc.bias", Tensor::float(Dtype::F32, vec![64], vec![0.5; 64])?)?;
/// let recipe = Recipe::uniform(vec![MethodSpec::Int8(IntSpec::default())])?;
/// let dir = tempfile::tempdir()?;
/// let path = dir.path().join("model.squish");
/// let c = Cluster::new(&SingleProcess, &Sequential);
/// let report = compress_to_file(&c, &model, &recipe, &path)?.expect("rank 0 gets the report");
/// assert_eq!((report.layers.len(), report.tensors), (1, 2));
/// let one = squish::recipe::compress_model(&model, &recipe, &Sequential, &|_| {})?;
/// assert_eq!(std::fs::read(&path)?, one.model.to_bytes()?);
/// assert_eq!(report.bytes, std::fs::metadata(&path)?.len());
/// # Ok::<(), Box<dyn std::error::Error>>(())
/// ```
pub fn compress_to_file(
    cluster: &Cluster<'_>,
    model: &Model,
    recipe: &Recipe,
    output: &Path,
) -> Result<Option<FileReport>> {
    let t0 = Instant::now();
    let mut phases = WritePhases::default();
    let mut lap = {
        let mut last = t0;
        move || {
            let now = Instant::now();
            let dt = (now - last).as_secs_f64();
            last = now;
            dt
        }
    };
    let (rank, comm) = (cluster.rank(), cluster.comm());
    let writing = format!("writing {}", output.display());
    let items = plan(model, recipe)?;
    // Rank 0 makes the temporary file first (removed if anything fails).
    let out = (rank == 0).then(|| SharedOutput::create(output));
    let jobs: Vec<usize> = (0..items.len()).collect();
    let produced: Vec<(usize, Status<Produced>)> =
        run_share(cluster, &items, &jobs, |item| match item.work {
            Some(_) => {
                let (report, tensor) = compress_one(item)?;
                Ok((Some(report), EncodedEntry::compressed(item.name, &tensor)))
            }
            None => Ok((None, EncodedEntry::plain(item.name, item.tensor))),
        });
    phases.compute = lap();

    let temp: Status<Vec<u8>> = match &out {
        None => Ok(Vec::new()),
        Some(Ok(o)) => Ok(path_bytes(o.path())),
        Some(Err(e)) => Err(Failure::new(0, &writing, e)),
    };
    let mine: Shares = (
        temp,
        produced
            .iter()
            .map(|(j, s)| {
                let s = match s {
                    Ok((r, e)) => Ok((r.clone(), e.meta.clone())),
                    Err(f) => Err(f.clone()),
                };
                (*j, s)
            })
            .collect(),
    );
    let all = comm.all_gather(&to_bytes(&mine))?;
    phases.exchange = lap();

    // Every rank decodes the same messages, so every rank takes the same
    // branch below.
    let decided = decide(&items, &all, &writing).and_then(|(temp, reports, metas)| {
        let l = layout(&metas).map_err(|e| Failure::new(0, &writing, &e))?;
        Ok((temp, reports, l))
    });
    let (temp, reports, l) = match decided {
        Ok(v) => v,
        Err(f) => {
            // Rank 0 removes the temporary file before anyone returns (so a
            // launcher that stops the others on the first error finds
            // nothing left).
            drop(out);
            comm.broadcast(0, &mut Vec::new())?;
            return Err(f.into_error());
        }
    };
    phases.layout = lap();

    let wrote: Status<()> = guarded(rank, &writing, || {
        let mut parts: Vec<(u64, &[u8])> = Vec::new();
        if rank == 0 {
            parts.push((0, &l.header));
        }
        for (j, s) in &produced {
            let (_, e) = s.as_ref().expect("failures were reported above");
            parts.extend(
                l.offsets[*j]
                    .iter()
                    .copied()
                    .zip(e.bytes.iter().map(Vec::as_slice)),
            );
        }
        // Rank 0 syncs the whole file when it finishes; the others sync
        // their own data (on a network file system, rank 0's sync does not
        // cover other clients' writes).
        Ok(write_parts(&temp, &parts, l.len, rank != 0)?)
    });
    drop(produced);
    phases.write = lap();

    let statuses = comm.gather(0, &to_bytes(&wrote))?;
    phases.collect = lap();
    let outcome: Status<()> = match statuses {
        None => Ok(()),
        Some(all) => all
            .iter()
            .enumerate()
            .try_for_each(|(r, b)| {
                from_bytes::<Status<()>>(b)
                    .unwrap_or_else(|e| Err(Failure::new(r, "sending its write status", &e)))
            })
            .and_then(|()| match out {
                Some(Ok(o)) => o.finish(l.len).map_err(|e| Failure::new(0, &writing, &e)),
                _ => Ok(()),
            }),
    };
    let mut status = to_bytes(&outcome);
    comm.broadcast(0, &mut status)?;
    from_bytes::<Status<()>>(&status)?.map_err(Failure::into_error)?;
    phases.sync = lap();
    Ok((rank == 0).then(|| FileReport {
        layers: reports.into_iter().flatten().collect(),
        tensors: items.len(),
        bytes: l.len,
        phases,
    }))
}

/// Every entry's report (for compressed matrices) and metadata, in model
/// order, and rank 0's temporary file.
type Decided = (PathBuf, Vec<Option<LayerReport>>, Vec<EntryMeta>);

/// From every rank's [`Shares`]: rank 0's temporary file and every entry's
/// report and metadata; or the first failure (in model order; then rank 0's
/// temporary file).
fn decide(items: &[Item<'_>], all: &[Vec<u8>], writing: &str) -> Status<Decided> {
    let mut slots: Vec<Option<Status<Sent>>> = (0..items.len()).map(|_| None).collect();
    let mut temp = None;
    for (r, bytes) in all.iter().enumerate() {
        let (t, list) =
            from_bytes::<Shares>(bytes).map_err(|e| Failure::new(r, "sending its layers", &e))?;
        if r == 0 {
            temp = Some(t);
        }
        for (j, s) in list {
            if let Some(slot) = slots.get_mut(j) {
                *slot = Some(s);
            }
        }
    }
    let mut reports = Vec::with_capacity(items.len());
    let mut metas = Vec::with_capacity(items.len());
    for (s, item) in slots.into_iter().zip(items) {
        let (r, m) =
            s.unwrap_or_else(|| Err(Failure::new(0, item.name, &"no rank sent this entry")))?;
        reports.push(r);
        metas.push(m);
    }
    let temp = temp.unwrap_or_else(|| Err(Failure::new(0, writing, &"rank 0 sent nothing")))?;
    Ok((bytes_path(&temp), reports, metas))
}
