//! A "knowledge distillation network" in the original sense: the teacher's
//! outputs become extra inputs of a small student.

use ndarray::{concatenate, Array1, Array2, ArrayView2, AsArray, Axis, Ix2};

use super::{teacher_outputs, Teacher};
use crate::data::Dataset;
use crate::error::{Result, SquishError};
use crate::training::{Mlp, TrainReport, Trainer};

/// Which teacher output the student reads.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum FeatureSource {
    /// The teacher's logits.
    Logits,
    /// The activation output of teacher hidden layer `l` (as [`Mlp::hidden`]).
    Hidden(usize),
}

impl FeatureSource {
    /// The teacher's output for `x` (computed in chunks).
    pub fn compute<'a>(
        &self,
        teacher: &dyn Teacher,
        x: impl AsArray<'a, f32, Ix2>,
    ) -> Result<Array2<f32>> {
        let x: ArrayView2<'a, f32> = x.into();
        match *self {
            FeatureSource::Logits => teacher_outputs(x, None, &|x| teacher.logits(x)),
            FeatureSource::Hidden(l) => teacher_outputs(x, None, &|x| teacher.features(x, l)),
        }
    }
}

/// A student whose input is the raw features concatenated with a teacher
/// output that is already at hand when it serves (e.g. cached by an upstream
/// system that ran the teacher once). The extra features are standardised
/// with the training set's mean and standard deviation.
///
/// It pays when the cached output is cheaper to fetch than to recompute and
/// carries what the student could not learn itself; it does not when serving
/// would have to run the teacher anyway (the teacher's cost then counts), or
/// when the cache is stale (computed on other inputs than those served).
///
/// ```
/// use squish::data::digits;
/// use squish::distillation::{FeatureSource, FeatureStudent};
/// use squish::training::{Mlp, Optimizer, Trainer};
/// let d = digits()?;
/// let t = Trainer::params().epochs(10).optimizer(Optimizer::adam(3e-3).check()?).check()?;
/// let mut teacher = Mlp::params(&[64, 64, 10]).seed(1).check()?;
/// t.fit(&mut teacher, &d.train)?;
/// let (s, _) = FeatureStudent::fit(&t, &[], 2, &teacher, FeatureSource::Logits, &d.train)?;
/// let cached = FeatureSource::Logits.compute(&teacher, d.test.x())?;
/// assert!(s.accuracy(d.test.x(), cached.view(), d.test.y())? > 0.8);
/// # Ok::<(), squish::SquishError>(())
/// ```
#[derive(Clone, Debug, PartialEq)]
pub struct FeatureStudent {
    student: Mlp<f32>,
    source: FeatureSource,
    mean: Array1<f32>,
    inv_std: Array1<f32>,
}

impl FeatureStudent {
    /// Trains a student `[features + extra, hidden…, classes]` (He-initialised
    /// from `seed`) with `trainer` on `data`, its extra input the teacher's
    /// `source` output.
    pub fn fit(
        trainer: &Trainer,
        hidden: &[usize],
        seed: u64,
        teacher: &dyn Teacher,
        source: FeatureSource,
        data: &Dataset,
    ) -> Result<(FeatureStudent, TrainReport)> {
        let f = source.compute(teacher, data.x())?;
        let n = f.nrows() as f32;
        let mean = f.sum_axis(Axis(0)) / n;
        let var = (&f - &mean).mapv(|v| v * v).sum_axis(Axis(0)) / n;
        // Constant features (e.g. dead ReLUs) are left unscaled.
        let inv_std = var.mapv(|v| if v > 1e-12 { 1.0 / v.sqrt() } else { 1.0 });
        let mut sizes = vec![data.features() + f.ncols()];
        sizes.extend_from_slice(hidden);
        sizes.push(data.classes());
        let mut student = Mlp::params(&sizes).seed(seed).check()?;
        let mut s = FeatureStudent {
            student: student.clone(),
            source,
            mean,
            inv_std,
        };
        let x = s.augment(data.x(), f.view())?;
        let aug = Dataset::new(x, data.y().to_vec(), data.classes())?;
        let report = trainer.fit(&mut student, &aug)?;
        s.student = student;
        Ok((s, report))
    }

    /// The teacher output this student reads.
    pub fn source(&self) -> FeatureSource {
        self.source
    }

    /// The student network (its input is `[x, standardised features]`).
    pub fn student(&self) -> &Mlp<f32> {
        &self.student
    }

    /// `[x, (features − mean)/std]`.
    pub fn augment<'a>(
        &self,
        x: impl AsArray<'a, f32, Ix2>,
        features: impl AsArray<'a, f32, Ix2>,
    ) -> Result<Array2<f32>> {
        let x: ArrayView2<'a, f32> = x.into();
        let features: ArrayView2<'a, f32> = features.into();
        if features.nrows() != x.nrows() || features.ncols() != self.mean.len() {
            return Err(SquishError::shape(
                "teacher features",
                format!("[{}, {}]", x.nrows(), self.mean.len()),
                format!("{:?}", features.dim()),
            ));
        }
        let f = (&features - &self.mean) * &self.inv_std;
        concatenate(Axis(1), &[x, f.view()])
            .map_err(|e| SquishError::inconsistent("feature input", e.to_string()))
    }

    /// Logits from `x` and the cached teacher `features` of the same rows.
    pub fn forward<'a>(
        &self,
        x: impl AsArray<'a, f32, Ix2>,
        features: impl AsArray<'a, f32, Ix2>,
    ) -> Result<Array2<f32>> {
        self.student.forward(self.augment(x, features)?.view())
    }

    /// Classification accuracy.
    pub fn accuracy<'a>(
        &self,
        x: impl AsArray<'a, f32, Ix2>,
        features: impl AsArray<'a, f32, Ix2>,
        labels: &[usize],
    ) -> Result<f64> {
        self.student
            .accuracy(self.augment(x, features)?.view(), labels)
    }
}
