//! FitNets-style hint (feature) distillation.

use ndarray::{Array2, ArrayView2, AsArray, Ix2};
use rand::rngs::StdRng;
use rand::SeedableRng;

use super::DistillationError;
use crate::error::{Result, SquishError};
use crate::training::{half_squared_error, Dense, DenseGrad, Mlp, Scalar};

/// Unchecked [`Hint`].
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct HintParams {
    student_layer: usize,
    teacher_layer: usize,
    weight: f64,
}

/// A FitNets hint (Romero et al. 2015): the output of student hidden layer
/// `student_layer`, mapped by a learned linear projection (the regressor),
/// is pulled towards the output of teacher hidden layer `teacher_layer` by
/// `weight · ½·mean‖P(h_s) − h_t‖²`. The teacher's intermediate features
/// guide the student's.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct Hint {
    student_layer: usize,
    teacher_layer: usize,
    weight: f64,
}

impl Hint {
    /// Hint from teacher hidden layer `teacher_layer` to student hidden layer
    /// `student_layer` (0-based, as [`Mlp::hidden`]), weight 1.
    pub fn params(student_layer: usize, teacher_layer: usize) -> HintParams {
        HintParams {
            student_layer,
            teacher_layer,
            weight: 1.0,
        }
    }

    /// The guided student layer.
    pub fn student_layer(&self) -> usize {
        self.student_layer
    }

    /// The hint teacher layer.
    pub fn teacher_layer(&self) -> usize {
        self.teacher_layer
    }

    /// The weight of the hint loss.
    pub fn weight(&self) -> f64 {
        self.weight
    }

    /// A fresh regressor from the student's guided layer width to
    /// `teacher_width`, He-initialised from `seed`. Checks the layer exists.
    pub fn projection(
        &self,
        student: &Mlp<f32>,
        teacher_width: usize,
        seed: u64,
    ) -> Result<Dense<f32>> {
        let hidden = student.layers().len() - 1;
        if self.student_layer >= hidden {
            return Err(DistillationError::StudentLayer {
                layer: self.student_layer,
                hidden,
            }
            .into());
        }
        if teacher_width == 0 {
            return Err(DistillationError::ZeroTeacherWidth.into());
        }
        let width = student.layers()[self.student_layer].outputs();
        Ok(Dense::he(
            width,
            teacher_width,
            &mut StdRng::seed_from_u64(seed),
        ))
    }
}

impl HintParams {
    /// The weight of the hint loss (default 1).
    pub fn weight(mut self, w: f64) -> Self {
        self.weight = w;
        self
    }

    /// Validates: weight ≥ 0 and finite.
    pub fn check(self) -> Result<Hint> {
        if !(self.weight >= 0.0 && self.weight.is_finite()) {
            return Err(DistillationError::HintWeight(self.weight).into());
        }
        Ok(Hint {
            student_layer: self.student_layer,
            teacher_layer: self.teacher_layer,
            weight: self.weight,
        })
    }
}

/// `½·mean over rows ‖P(h_s) − h_t‖²` with `P = projection`, and its
/// gradients with respect to `h_s` and to the projection's parameters.
pub fn hint_loss_and_grad<'a, F: Scalar>(
    projection: &Dense<F>,
    h_s: impl AsArray<'a, F, Ix2>,
    h_t: impl AsArray<'a, F, Ix2>,
) -> Result<(f64, Array2<F>, DenseGrad<F>)> {
    let h_s: ArrayView2<'a, F> = h_s.into();
    let h_t: ArrayView2<'a, F> = h_t.into();
    if h_s.ncols() != projection.inputs()
        || h_t.ncols() != projection.outputs()
        || h_s.nrows() != h_t.nrows()
    {
        return Err(SquishError::shape(
            "hint features",
            format!(
                "student [b, {}] and teacher [b, {}] with the same b",
                projection.inputs(),
                projection.outputs()
            ),
            format!("{:?} and {:?}", h_s.dim(), h_t.dim()),
        ));
    }
    let r = projection.forward(h_s);
    let (loss, g) = half_squared_error(r.view(), h_t)?;
    let (dp, dh) = projection.backward(h_s, g.view(), true);
    Ok((loss, dh.expect("asked for the input gradient"), dp))
}
