//! Model parallelism across layers: a pipeline of stages fed with
//! micro-batches (GPipe's forward schedule).
//!
//! At step `t`, stage `s` works on micro-batch `t − s`; the stages of one
//! step are independent and run as tasks on the executor, so with `S` stages
//! up to `S` workers are busy once the pipeline is full.

use std::sync::Mutex;

use ndarray::{concatenate, s, Array2, ArrayView2, Axis};

use super::forward::{check_batch, check_chain, Forward};
use super::ParallelError;
use super::{ParallelExecutor, Sequential};
use crate::error::{Result, SquishError};

/// Stages applied in order, each on its own worker, over micro-batches.
///
/// Each micro-batch goes through the same stages with the same kernels as a
/// plain forward pass, so the output equals the model's own forward pass bit for
/// bit (when the stages treat rows independently, as squish's kernels do),
/// whatever the executor.
///
/// ```
/// use ndarray::Array2;
/// use squish::parallel::{Forward, LayerPipeline, Sequential, ThreadPool};
/// use squish::training::{Activation, Layer, LayerStack};
/// let w = |o: usize, i: usize| Array2::from_shape_fn((o, i), |(r, c)| ((r * 3 + c) % 5) as f32 - 2.0);
/// let stack = || LayerStack::new(vec![
///     Layer::new(w(16, 8)).activation(Activation::Relu),
///     Layer::new(w(4, 16)),
/// ]);
/// let x = Array2::from_shape_fn((10, 8), |(b, j)| (b * 8 + j) as f32 * 0.1);
/// let plain = stack()?.forward(x.view(), &Sequential)?;
/// let piped = LayerPipeline::params(stack()?).micro_batch(3).check()?;
/// assert_eq!(piped.stages(), 2);
/// assert_eq!(piped.forward(x.view(), &ThreadPool::new(2)?)?, plain);
/// # Ok::<(), squish::SquishError>(())
/// ```
pub struct LayerPipeline {
    stages: Vec<Box<dyn Forward>>,
    micro_batch: usize,
}

/// Unchecked settings of a [`LayerPipeline`].
pub struct LayerPipelineParams {
    stages: Vec<Box<dyn Forward>>,
    micro_batch: usize,
}

impl LayerPipeline {
    /// One stage per element of `stages`: a `Vec<Box<dyn Forward>>` (a stage
    /// may be several layers), or a model that converts into one, e.g. a
    /// [`LayerStack`](crate::training::LayerStack) (one stage per layer).
    /// 32 samples per micro-batch.
    pub fn params(stages: impl Into<Vec<Box<dyn Forward>>>) -> LayerPipelineParams {
        LayerPipelineParams {
            stages: stages.into(),
            micro_batch: 32,
        }
    }

    /// Arbitrary stages; the same as [`params`](Self::params).
    pub fn params_stages(stages: Vec<Box<dyn Forward>>) -> LayerPipelineParams {
        Self::params(stages)
    }

    /// Number of stages.
    pub fn stages(&self) -> usize {
        self.stages.len()
    }

    /// Samples per micro-batch.
    pub fn micro_batch(&self) -> usize {
        self.micro_batch
    }
}

impl LayerPipelineParams {
    /// Samples per micro-batch.
    pub fn micro_batch(mut self, samples: usize) -> Self {
        self.micro_batch = samples;
        self
    }

    /// Validates: at least one stage, widths that chain, micro-batches of at
    /// least one sample.
    pub fn check(self) -> Result<LayerPipeline> {
        if self.stages.is_empty() {
            return Err(SquishError::from(ParallelError::Zero {
                what: "stages",
                why: "a pipeline needs at least one stage",
            }));
        }
        if self.micro_batch == 0 {
            return Err(SquishError::from(ParallelError::Zero {
                what: "micro_batch",
                why: "a micro-batch needs at least one sample",
            }));
        }
        check_chain(self.stages.iter().map(|s| (s.in_dim(), s.out_dim())))?;
        Ok(LayerPipeline {
            stages: self.stages,
            micro_batch: self.micro_batch,
        })
    }
}

impl Forward for LayerPipeline {
    fn in_dim(&self) -> usize {
        self.stages[0].in_dim()
    }

    fn out_dim(&self) -> usize {
        self.stages[self.stages.len() - 1].out_dim()
    }

    /// Runs the wavefront schedule; an error is the one of the earliest
    /// micro-batch that failed (and the run stops at that step).
    fn forward(&self, x: ArrayView2<f32>, exec: &dyn ParallelExecutor) -> Result<Array2<f32>> {
        check_batch(x, self.in_dim())?;
        let n = x.nrows();
        let mb = self.micro_batch;
        let n_mb = n.div_ceil(mb);
        let n_st = self.stages.len();
        // acts[m]: micro-batch m's activation after the stages it has been through.
        let acts: Vec<Mutex<Option<Array2<f32>>>> = (0..n_mb).map(|_| Mutex::new(None)).collect();
        let errors: Vec<Mutex<Option<SquishError>>> = (0..n_mb).map(|_| Mutex::new(None)).collect();
        for t in 0..n_mb + n_st - 1 {
            // Stages busy at step t: s with 0 <= t - s < n_mb.
            let s_lo = t.saturating_sub(n_mb - 1);
            let s_hi = t.min(n_st - 1);
            exec.run(s_hi - s_lo + 1, &|k| {
                let st = s_lo + k;
                let m = t - st;
                let mut slot = acts[m].lock().expect("a task panicked");
                let out = match slot.take() {
                    None => {
                        let rows = m * mb..((m + 1) * mb).min(n);
                        self.stages[st].forward(x.slice(s![rows, ..]), &Sequential)
                    }
                    Some(h) => self.stages[st].forward(h.view(), &Sequential),
                };
                match out {
                    Ok(h) => *slot = Some(h),
                    Err(e) => *errors[m].lock().expect("a task panicked") = Some(e),
                }
            });
            if let Some(e) = errors
                .iter()
                .find_map(|e| e.lock().expect("a task panicked").take())
            {
                return Err(e);
            }
        }
        let outs: Vec<Array2<f32>> = acts
            .into_iter()
            .map(|a| {
                a.into_inner()
                    .expect("a task panicked")
                    .expect("every micro-batch went through every stage")
            })
            .collect();
        let views: Vec<_> = outs.iter().map(|o| o.view()).collect();
        concatenate(Axis(0), &views).map_err(|e| {
            SquishError::inconsistent("pipelined forward", format!("micro-batch outputs: {e}"))
        })
    }
}
