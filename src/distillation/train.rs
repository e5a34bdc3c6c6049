//! Teacher → student training.

use ndarray::{concatenate, Array2, ArrayView2, AsArray, Axis, Ix2};

use super::DistillationError;
use super::{hint_loss_and_grad, Distiller, Hint, Teacher};
use crate::data::Dataset;
use crate::error::{Result, SquishError};
use crate::training::{Dense, Gradients, Masks, Mlp, TrainReport, Trainer};

/// Rows per teacher forward pass (bounds the memory of a large teacher).
const TEACHER_CHUNK: usize = 2048;

/// `f` on `x` in chunks of rows, concatenated; checks `cols` columns out.
pub fn teacher_outputs<'a>(
    x: impl AsArray<'a, f32, Ix2>,
    cols: Option<usize>,
    f: &dyn Fn(ArrayView2<f32>) -> Result<Array2<f32>>,
) -> Result<Array2<f32>> {
    let x: ArrayView2<'a, f32> = x.into();
    let mut parts = Vec::new();
    for chunk in x.axis_chunks_iter(Axis(0), TEACHER_CHUNK) {
        let out = f(chunk)?;
        if out.nrows() != chunk.nrows() || cols.is_some_and(|c| c != out.ncols()) {
            return Err(SquishError::shape(
                "teacher output",
                format!(
                    "[{}, {}]",
                    chunk.nrows(),
                    cols.map_or("any".into(), |c| c.to_string())
                ),
                format!("{:?}", out.dim()),
            ));
        }
        parts.push(out);
    }
    let views: Vec<_> = parts.iter().map(|p| p.view()).collect();
    concatenate(Axis(0), &views)
        .map_err(|e| SquishError::inconsistent("teacher output", e.to_string()))
}

/// Trains `student` on `data` with `distiller` against `teacher`'s logits.
///
/// The teacher is fixed, so its logits for every training row are computed
/// once up front; each batch then costs only the student's forward and
/// backward passes.
pub fn distill(
    trainer: &Trainer,
    student: &mut Mlp<f32>,
    teacher: &dyn Teacher,
    distiller: &dyn Distiller,
    data: &Dataset,
) -> Result<TrainReport> {
    check(student, data)?;
    let t = teacher_outputs(data.x(), Some(data.classes()), &|x| teacher.logits(x))?;
    trainer.fit_objective(
        student,
        data.len(),
        Masks::none(student.layers().len()),
        &mut |net, idx| distill_batch(net, data, &t, distiller, idx),
    )
}

/// The distillation loss of `net` on the rows `rows` of `data` against the
/// teacher's logits `t` (one row per data row), and its gradient.
pub(crate) fn distill_batch(
    net: &Mlp<f32>,
    data: &Dataset,
    t: &Array2<f32>,
    distiller: &dyn Distiller,
    rows: &[usize],
) -> Result<(f64, Gradients<f32>)> {
    let (x, y) = data.rows(rows);
    let tb = t.select(Axis(0), rows);
    let trace = net.trace(x.view())?;
    let (loss, g) = distiller.loss_and_grad(trace.logits.view(), tb.view(), &y)?;
    Ok((loss, net.backward(&trace, g.view(), &[])?))
}

/// As [`distill`], plus a FitNets hint: the student's hidden layer
/// `hint.student_layer()`, through `projection` (trained alongside with the
/// trainer's optimizer), is regressed onto the teacher's hidden layer
/// `hint.teacher_layer()`. The projection exists only for training; the
/// student does not need it afterwards.
pub fn distill_with_hint(
    trainer: &Trainer,
    student: &mut Mlp<f32>,
    teacher: &dyn Teacher,
    distiller: &dyn Distiller,
    hint: &Hint,
    projection: &mut Dense<f32>,
    data: &Dataset,
) -> Result<TrainReport> {
    check(student, data)?;
    let sl = hint.student_layer();
    let hidden = student.layers().len() - 1;
    if sl >= hidden {
        return Err(DistillationError::StudentLayer { layer: sl, hidden }.into());
    }
    if projection.inputs() != student.layers()[sl].outputs() {
        return Err(SquishError::shape(
            "hint projection",
            format!(
                "{} inputs (student layer {sl} width)",
                student.layers()[sl].outputs()
            ),
            format!("{}", projection.inputs()),
        ));
    }
    let t = teacher_outputs(data.x(), Some(data.classes()), &|x| teacher.logits(x))?;
    let tl = hint.teacher_layer();
    let feats = teacher_outputs(data.x(), Some(projection.outputs()), &|x| {
        teacher.features(x, tl)
    })?;
    let mut popt = trainer.optimizer().state::<f32>();
    let w = hint.weight() as f32;
    trainer.fit_objective(
        student,
        data.len(),
        Masks::none(student.layers().len()),
        &mut |net, idx| {
            let (x, y) = data.rows(idx);
            let tb = t.select(Axis(0), idx);
            let fb = feats.select(Axis(0), idx);
            let trace = net.trace(x.view())?;
            let (kd, g) = distiller.loss_and_grad(trace.logits.view(), tb.view(), &y)?;
            let (hl, dh, dp) =
                hint_loss_and_grad(projection, trace.inputs[sl + 1].view(), fb.view())?;
            let mut hidden_grads = vec![None; sl + 1];
            hidden_grads[sl] = Some(dh * w);
            let grads = net.backward(&trace, g.view(), &hidden_grads)?;
            let dp = Gradients {
                layers: vec![crate::training::DenseGrad {
                    w: dp.w * w,
                    b: dp.b * w,
                }],
            };
            popt.step(std::slice::from_mut(projection), &dp)?;
            Ok((kd + hint.weight() * hl, grads))
        },
    )
}

fn check(student: &Mlp<f32>, data: &Dataset) -> Result<()> {
    if data.features() != student.inputs() || data.classes() != student.outputs() {
        return Err(SquishError::shape(
            "distillation data",
            format!(
                "{} features, {} classes",
                student.inputs(),
                student.outputs()
            ),
            format!("{} features, {} classes", data.features(), data.classes()),
        ));
    }
    Ok(())
}
