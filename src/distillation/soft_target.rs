//! Hinton et al. (2015) soft-target distillation loss.

use std::sync::Mutex;

use ndarray::{Array2, ArrayView2, AsArray, Ix2};

use super::fast_exp::{dot_diff, exp_shifted, max};
use super::DistillationError;
use super::Distiller;
use crate::error::{Result, SquishError};
use crate::kernels::multiversion;
use crate::parallel::{for_each_chunk_mut, rows_per_task, ParallelExecutor, Sequential};
use crate::training::{log_softmax, softmax, softmax_cross_entropy, Scalar};

/// Unchecked [`SoftTarget`].
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct SoftTargetParams {
    temperature: f64,
    alpha: f64,
}

/// Hinton et al.'s distillation loss, averaged over the batch:
///
/// `L = α·T²·KL(softmax(t/T) ‖ softmax(s/T)) + (1 − α)·CE(softmax(s), y)`
///
/// with student logits `s`, teacher logits `t`, temperature `T` and labels
/// `y`. The T² keeps the soft term's gradient scale independent of `T`. The
/// gradient with respect to `s` is
/// `[α·T·(softmax(s/T) − softmax(t/T)) + (1 − α)·(softmax(s) − onehot(y))] / batch`.
///
/// ```
/// use ndarray::array;
/// use squish::distillation::{Distiller, SoftTarget};
/// let kd = SoftTarget::params(4.0).alpha(0.9).check().unwrap();
/// let s = array![[1.0f32, 2.0, 0.5]];
/// let (loss, _) = kd.loss_and_grad(s.view(), s.view(), &[1]).unwrap();
/// // student = teacher: only the hard-label term remains
/// let ce = -(2.0f64 - (1f64.exp() + 2f64.exp() + 0.5f64.exp()).ln());
/// assert!((loss - 0.1 * ce).abs() < 1e-5);
/// ```
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct SoftTarget {
    temperature: f64,
    alpha: f64,
}

impl SoftTarget {
    /// Starts a builder at temperature `T` with α = 0.9.
    pub fn params(temperature: f64) -> SoftTargetParams {
        SoftTargetParams {
            temperature,
            alpha: 0.9,
        }
    }

    /// The temperature T.
    pub fn temperature(&self) -> f64 {
        self.temperature
    }

    /// The soft-target weight α.
    pub fn alpha(&self) -> f64 {
        self.alpha
    }

    /// Old name of [`loss_and_grad_on`](Self::loss_and_grad_on).
    #[deprecated(
        since = "0.2.0",
        note = "renamed `loss_and_grad_on`: `_on` takes an executor"
    )]
    pub fn loss_and_grad_with(
        &self,
        student: ArrayView2<f32>,
        teacher: ArrayView2<f32>,
        labels: &[usize],
        exec: &dyn ParallelExecutor,
    ) -> Result<(f64, Array2<f32>)> {
        self.loss_and_grad_on(student, teacher, labels, exec)
    }

    /// [`loss_and_grad`](Distiller::loss_and_grad) with rows spread over
    /// `exec`; the result does not depend on the executor.
    pub fn loss_and_grad_on<'a>(
        &self,
        student: impl AsArray<'a, f32, Ix2>,
        teacher: impl AsArray<'a, f32, Ix2>,
        labels: &[usize],
        exec: &dyn ParallelExecutor,
    ) -> Result<(f64, Array2<f32>)> {
        let student: ArrayView2<'a, f32> = student.into();
        let teacher: ArrayView2<'a, f32> = teacher.into();
        check_inputs(student, teacher, labels)?;
        if self.alpha == 0.0 {
            // Only the hard labels remain: the very code plain training runs,
            // so KD at α = 0 is plain training bit for bit.
            return softmax_cross_entropy(student, labels);
        }
        let (b, c) = student.dim();
        let s = student.as_standard_layout();
        let t = teacher.as_standard_layout();
        let (s, t) = (
            s.as_slice().expect("standard"),
            t.as_slice().expect("standard"),
        );
        let mut grad = vec![0.0f32; b * c];
        let rows = rows_per_task(c, 1 << 15);
        let tasks = b.div_ceil(rows);
        let losses: Vec<Mutex<f64>> = (0..tasks).map(|_| Mutex::new(0.0)).collect();
        let k = Kernel {
            inv_t: (1.0 / self.temperature) as f32,
            t: self.temperature as f32,
            alpha: self.alpha as f32,
            scale: 1.0 / b as f32,
            c,
        };
        for_each_chunk_mut(exec, &mut grad, rows * c, |task, g| {
            let r0 = task * rows;
            let n = g.len() / c;
            let range = r0 * c..(r0 + n) * c;
            let loss = k.rows(&s[range.clone()], &t[range], &labels[r0..r0 + n], g);
            *losses[task].lock().expect("a task panicked") = loss;
        });
        let total: f64 = losses
            .into_iter()
            .map(|m| m.into_inner().expect("a task panicked"))
            .sum();
        let grad = Array2::from_shape_vec((b, c), grad).expect("sized b·c");
        Ok((total / b as f64, grad))
    }
}

impl SoftTargetParams {
    /// Weight α of the soft-target term (1 − α goes to the hard labels).
    pub fn alpha(mut self, alpha: f64) -> Self {
        self.alpha = alpha;
        self
    }

    /// Validates: T > 0 and finite, α in [0, 1].
    pub fn check(self) -> Result<SoftTarget> {
        if !(self.temperature > 0.0 && self.temperature.is_finite()) {
            return Err(DistillationError::Temperature(self.temperature).into());
        }
        if !(0.0..=1.0).contains(&self.alpha) {
            return Err(DistillationError::Alpha(self.alpha).into());
        }
        Ok(SoftTarget {
            temperature: self.temperature,
            alpha: self.alpha,
        })
    }
}

impl Distiller for SoftTarget {
    fn name(&self) -> String {
        format!("soft targets T={} α={}", self.temperature, self.alpha)
    }

    fn loss_and_grad(
        &self,
        student: ArrayView2<f32>,
        teacher: ArrayView2<f32>,
        labels: &[usize],
    ) -> Result<(f64, Array2<f32>)> {
        self.loss_and_grad_on(student, teacher, labels, &Sequential)
    }
}

fn check_inputs<F: Scalar>(
    student: ArrayView2<F>,
    teacher: ArrayView2<F>,
    labels: &[usize],
) -> Result<()> {
    if student.dim() != teacher.dim() {
        return Err(SquishError::shape(
            "distillation logits",
            format!(
                "teacher logits of shape {:?} (as the student's)",
                student.dim()
            ),
            format!("{:?}", teacher.dim()),
        ));
    }
    crate::training::loss_check_labels(student, labels)?;
    if let Some((index, v)) = teacher.iter().enumerate().find(|(_, v)| !v.is_finite()) {
        return Err(SquishError::NonFinite {
            what: "teacher logits",
            index,
            value: v.to_f32().unwrap_or(f32::NAN),
        });
    }
    Ok(())
}

/// The per-row kernel, compiled for AVX-512 and AVX2 when the CPU has them.
struct Kernel {
    inv_t: f32,
    t: f32,
    alpha: f32,
    scale: f32,
    c: usize,
}

multiversion! {
    /// [`Kernel::rows`] compiled per tier.
    fn rows_best(k: &Kernel, s: &[f32], t: &[f32], y: &[usize], g: &mut [f32]) -> f64 => rows_any;
}

#[inline(always)]
fn rows_any(k: &Kernel, s: &[f32], t: &[f32], y: &[usize], g: &mut [f32]) -> f64 {
    k.rows_body(s, t, y, g)
}

impl Kernel {
    /// Fills `g` for these rows; returns the sum of their losses.
    fn rows(&self, s: &[f32], t: &[f32], y: &[usize], g: &mut [f32]) -> f64 {
        rows_best(self, s, t, y, g)
    }

    /// The same body without target features (also what non-x86 runs).
    #[cfg(test)]
    pub(crate) fn rows_portable(&self, s: &[f32], t: &[f32], y: &[usize], g: &mut [f32]) -> f64 {
        self.rows_body(s, t, y, g)
    }

    #[inline(always)]
    fn rows_body(&self, s: &[f32], t: &[f32], y: &[usize], g: &mut [f32]) -> f64 {
        let c = self.c;
        let mut p = vec![0.0f32; c];
        let mut r = vec![0.0f32; c];
        let hard = self.alpha < 1.0;
        let soft = self.alpha > 0.0;
        let same_t = self.t == 1.0;
        let mut total = 0.0f64;
        for (((s, t), &label), g) in s
            .chunks_exact(c)
            .zip(t.chunks_exact(c))
            .zip(y)
            .zip(g.chunks_exact_mut(c))
        {
            let smax = max(s);
            let mut loss = 0.0f64;
            // Soft term: q = softmax(s/T) into g, p = softmax(t/T).
            let (mut sq, mut sp) = (1.0f32, 1.0f32);
            if soft {
                let ms = smax * self.inv_t;
                let mt = max(t) * self.inv_t;
                sq = exp_shifted(s, self.inv_t, ms, g);
                sp = exp_shifted(t, self.inv_t, mt, &mut p);
                // KL = Σ p̂·(t − s)/T + (ms − mt) + ln Sq − ln Sp
                let kl = dot_diff(&p, t, s) as f64 / sp as f64 * self.inv_t as f64
                    + (ms as f64 - mt as f64)
                    + (sq as f64).ln()
                    - (sp as f64).ln();
                loss += self.alpha as f64 * (self.t as f64).powi(2) * kl;
            }
            // Hard term: softmax(s) (shares q when T = 1).
            let mut sr = 1.0f32;
            if hard {
                if soft && same_t {
                    r.copy_from_slice(g);
                    sr = sq;
                } else {
                    sr = exp_shifted(s, 1.0, smax, &mut r);
                }
                let ce = -((s[label] - smax) as f64 - (sr as f64).ln());
                loss += (1.0 - self.alpha as f64) * ce;
            }
            let a = self.alpha * self.t * self.scale;
            let h = (1.0 - self.alpha) * self.scale;
            let (iq, ip, ir) = (1.0 / sq, 1.0 / sp, 1.0 / sr);
            match (soft, hard) {
                (true, true) => {
                    for ((g, &p), &r) in g.iter_mut().zip(&p).zip(&r) {
                        *g = a * (*g * iq - p * ip) + h * (r * ir);
                    }
                }
                (true, false) => {
                    for (g, &p) in g.iter_mut().zip(&p) {
                        *g = a * (*g * iq - p * ip);
                    }
                }
                (false, _) => {
                    for (g, &r) in g.iter_mut().zip(&r) {
                        *g = h * (r * ir);
                    }
                }
            }
            if hard {
                g[label] -= h;
            }
            total += loss;
        }
        total
    }
}

/// The plain soft-target loss and gradient, in any float type, from
/// [`softmax`] and [`log_softmax`]: what the fast kernel is tested against,
/// and what the f64 gradient checks differentiate.
pub fn soft_target_reference<'a, F: Scalar>(
    student: impl AsArray<'a, F, Ix2>,
    teacher: impl AsArray<'a, F, Ix2>,
    labels: &[usize],
    temperature: f64,
    alpha: f64,
) -> Result<(f64, Array2<F>)> {
    let student: ArrayView2<'a, F> = student.into();
    let teacher: ArrayView2<'a, F> = teacher.into();
    check_inputs(student, teacher, labels)?;
    let tt = F::of(temperature);
    let b = student.nrows() as f64;
    let q = softmax(student, tt);
    let p = softmax(teacher, tt);
    let lq = log_softmax(student, tt);
    let lp = log_softmax(teacher, tt);
    let ls = log_softmax(student, F::one());
    let mut loss = 0.0;
    for i in 0..student.nrows() {
        let kl: f64 = (0..student.ncols())
            .map(|j| p[[i, j]].f64() * (lp[[i, j]].f64() - lq[[i, j]].f64()))
            .sum();
        let ce = -ls[[i, labels[i]]].f64();
        loss += alpha * temperature * temperature * kl + (1.0 - alpha) * ce;
    }
    let mut grad =
        (&q - &p) * F::of(alpha * temperature) + ls.mapv(|v| v.exp()) * F::of(1.0 - alpha);
    for (i, &l) in labels.iter().enumerate() {
        grad[[i, l]] -= F::of(1.0 - alpha);
    }
    grad.mapv_inplace(|v| v / F::of(b));
    Ok((loss / b, grad))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::parallel::ThreadPool;

    fn logits(b: usize, c: usize, seed: u64) -> Array2<f32> {
        Array2::from_shape_fn((b, c), |(i, j)| {
            let h = (i as u64 * 2654435761 + j as u64 * 40503 + seed * 97) % 1000;
            h as f32 / 100.0 - 5.0
        })
    }

    #[test]
    fn fast_kernel_matches_reference_on_every_path() {
        let (b, c) = (37, 23);
        let (s, t) = (logits(b, c, 1), logits(b, c, 2));
        let y: Vec<usize> = (0..b).map(|i| (i * 7) % c).collect();
        for &(tt, alpha) in &[(1.0, 1.0), (1.0, 0.5), (4.0, 0.9), (2.5, 0.0), (0.5, 1.0)] {
            let kd = SoftTarget::params(tt).alpha(alpha).check().unwrap();
            let (l_ref, g_ref) = soft_target_reference(
                s.mapv(f64::from).view(),
                t.mapv(f64::from).view(),
                &y,
                tt,
                alpha,
            )
            .unwrap();
            let (l, g) = kd.loss_and_grad(s.view(), t.view(), &y).unwrap();
            assert!(
                (l - l_ref).abs() <= 1e-5 * l_ref.abs().max(1.0),
                "T={tt} α={alpha}: {l} vs {l_ref}"
            );
            for (a, r) in g.iter().zip(g_ref.iter()) {
                assert!(
                    (*a as f64 - r).abs() <= 1e-6 + 1e-4 * r.abs(),
                    "T={tt} α={alpha}"
                );
            }
            // The portable path (no target features) gives the same numbers.
            let k = Kernel {
                inv_t: (1.0 / tt) as f32,
                t: tt as f32,
                alpha: alpha as f32,
                scale: 1.0 / b as f32,
                c,
            };
            let mut gp = vec![0.0; b * c];
            let lp = k.rows_portable(s.as_slice().unwrap(), t.as_slice().unwrap(), &y, &mut gp)
                / b as f64;
            assert!((lp - l_ref).abs() <= 1e-5 * l_ref.abs().max(1.0));
            for (a, r) in gp.iter().zip(g_ref.iter()) {
                assert!((*a as f64 - r).abs() <= 1e-6 + 1e-4 * r.abs());
            }
        }
    }

    #[test]
    fn executor_does_not_change_the_result() {
        let (b, c) = (300, 200);
        let (s, t) = (logits(b, c, 3), logits(b, c, 4));
        let y: Vec<usize> = (0..b).map(|i| i % c).collect();
        let kd = SoftTarget::params(3.0).alpha(0.7).check().unwrap();
        let a = kd.loss_and_grad(s.view(), t.view(), &y).unwrap();
        let p = kd
            .loss_and_grad_on(s.view(), t.view(), &y, &ThreadPool::new(2).unwrap())
            .unwrap();
        assert_eq!(a.0.to_bits(), p.0.to_bits());
        assert_eq!(a.1, p.1);
    }
}
