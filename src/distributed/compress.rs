//! Task-parallel compression across ranks: each rank compresses a share of
//! the layers, balanced by estimated cost; rank 0 assembles the container,
//! byte-identical to [`recipe::compress_model`](crate::recipe::compress_model)
//! in one process, and writes it.

use std::path::Path;

use ndarray::ArrayView2;

use super::reduce::{guarded, Failure, Status};
use super::wire::{from_bytes, to_bytes, Reader, Wire};
use super::{Cluster, DistributedError};
use crate::error::Result;
use crate::io::{CompressedModel, CompressedTensor, Entry, Model};
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

/// One compressed layer as it travels to rank 0.
struct LayerOut {
    report: LayerReport,
    tensor: CompressedTensor,
}

impl Wire for LayerOut {
    fn encode(&self, out: &mut Vec<u8>) {
        let r = &self.report;
        r.name.encode(out);
        r.shape.encode(out);
        r.method.encode(out);
        r.bytes_before.encode(out);
        r.bytes_f32.encode(out);
        r.bytes_after.encode(out);
        r.error.rel_frobenius.encode(out);
        r.error.max_abs.encode(out);
        r.error.sqnr_db.encode(out);
        // The matrix travels as a one-entry container: the file format's
        // own exact, validated encoding.
        let mut m = CompressedModel::new();
        m.insert_compressed(r.name.clone(), self.tensor.clone())
            .expect("a fresh container takes any name");
        let bytes = m.to_bytes().expect("an in-memory container encodes");
        bytes.len().encode(out);
        out.extend_from_slice(&bytes);
    }

    fn decode(input: &mut Reader<'_>) -> Result<Self> {
        let name = String::decode(input)?;
        let report = LayerReport {
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
            name,
        };
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

fn compress_one(
    name: &str,
    t: &crate::io::Tensor,
    w: ArrayView2<f32>,
    p: &Pipeline,
) -> Result<LayerOut> {
    let out = p.run_on(w, &Sequential)?;
    let report = LayerReport::of_run(name, t.shape(), file_bytes(t), &out);
    let method = report.method.clone();
    let tensor = CompressedTensor::new(out.matrix, t.dtype(), t.shape().to_vec(), method)?;
    Ok(LayerOut { report, tensor })
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
/// order) and its rank. Collective.
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
    run(cluster, model, recipe, None)
}

/// [`compress_model`], then rank 0 writes the container to `output`
/// (atomically: `output` is either untouched or complete). No file is
/// written if any rank failed; every rank returns the same error. Returns
/// the result on rank 0, `None` elsewhere. Collective.
pub fn compress_to_file(
    cluster: &Cluster<'_>,
    model: &Model,
    recipe: &Recipe,
    output: &Path,
) -> Result<Option<Compressed>> {
    run(cluster, model, recipe, Some(output))
}

fn run(
    cluster: &Cluster<'_>,
    model: &Model,
    recipe: &Recipe,
    output: Option<&Path>,
) -> Result<Option<Compressed>> {
    let (rank, size) = (cluster.rank(), cluster.size());
    let mut matrices: Vec<(&str, &crate::io::Tensor, ArrayView2<f32>)> = Vec::new();
    let mut others = Vec::new();
    for (name, t) in model.iter() {
        match t.matrix() {
            Some(m) => matrices.push((name, t, m)),
            None => others.push(name),
        }
    }
    // The plan is computed alike on every rank (a bad recipe fails alike).
    let names: Vec<&str> = matrices.iter().map(|(n, _, _)| *n).collect();
    let choices = recipe.plan(&names, &others)?;
    let mut pipelines: Vec<Option<Pipeline>> = Vec::with_capacity(matrices.len());
    for &c in &choices {
        let p = if c == Choice::Keep {
            None
        } else {
            Some(recipe.pipeline(c)?).filter(|p| !p.is_empty())
        };
        pipelines.push(p);
    }
    let jobs: Vec<usize> = (0..matrices.len())
        .filter(|&i| pipelines[i].is_some())
        .collect();
    let costs: Vec<u64> = jobs
        .iter()
        .map(|&i| {
            let w = matrices[i].2;
            layer_cost(recipe.methods(choices[i]), w.nrows(), w.ncols())
        })
        .collect();
    let owners = assign_by_cost(&costs, size);
    let mine: Vec<usize> = (0..jobs.len()).filter(|&j| owners[j] == rank).collect();
    let specs: Vec<TaskSpec> = mine
        .iter()
        .map(|&j| TaskSpec::new(matrices[jobs[j]].0, costs[j] as usize))
        .collect();
    let outcomes = TaskRunner::default().run(
        cluster.exec(),
        &specs,
        |k| {
            let i = jobs[mine[k]];
            let (name, t, w) = matrices[i];
            let p = pipelines[i].as_ref().expect("a job has a pipeline");
            Ok(guarded(rank, name, || compress_one(name, t, w, p)))
        },
        None,
    );
    let results: Vec<(usize, Status<LayerOut>)> = mine
        .iter()
        .zip(outcomes)
        .map(|(&j, o)| {
            let s = o
                .result
                .unwrap_or_else(|e| Err(Failure::new(rank, &o.name, &e)));
            (j, s)
        })
        .collect();

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
                .and_then(|()| assemble(model, &jobs, &matrices, slots))
                .and_then(|c| match output {
                    Some(path) => c
                        .model
                        .save(path)
                        .map_err(|e| Failure::new(0, format!("writing {}", path.display()), &e))
                        .map(|()| c),
                    None => Ok(c),
                })
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
    model: &Model,
    jobs: &[usize],
    matrices: &[(&str, &crate::io::Tensor, ArrayView2<f32>)],
    slots: Vec<Option<Status<LayerOut>>>,
) -> Status<Compressed> {
    let mut by_matrix: Vec<Option<Status<LayerOut>>> = (0..matrices.len()).map(|_| None).collect();
    for (j, s) in slots.into_iter().enumerate() {
        let s =
            s.ok_or_else(|| Failure::new(0, matrices[jobs[j]].0, &"no rank sent this layer"))?;
        by_matrix[jobs[j]] = Some(s);
    }
    let mut result = Compressed {
        model: CompressedModel::new(),
        layers: Vec::new(),
    };
    let plain = |r: &mut Compressed, name: &str, t: &crate::io::Tensor| {
        r.model
            .insert_plain(name, t.clone())
            .map_err(|e| Failure::new(0, name, &e))
    };
    let mut next = by_matrix.into_iter();
    for (name, t) in model.iter() {
        if t.matrix().is_none() {
            plain(&mut result, name, t)?;
            continue;
        }
        match next.next().expect("one slot per matrix") {
            None => plain(&mut result, name, t)?,
            Some(s) => {
                let out = s?;
                result.layers.push(out.report);
                result
                    .model
                    .insert_compressed(name, out.tensor)
                    .map_err(|e| Failure::new(0, name, &e))?;
            }
        }
    }
    Ok(result)
}
