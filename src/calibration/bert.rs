//! [`Calibratable`] for the [`BertEncoder`]: its 6 linear layers per encoder
//! layer under their Hugging Face names
//! (`encoder.layer.{i}.attention.self.query`, `….key`, `….value`,
//! `….attention.output.dense`, `….intermediate.dense`, `….output.dense`);
//! one input is a packed [`TokenBatch`].
//!
//! Stages: query/key/value (one input), then the attention output, the
//! feed-forward up- and down-projections.

use std::collections::BTreeSet;

use ndarray::{Array2, ArrayView2};

use super::Calibratable;
use crate::error::{Result, SquishError};
use crate::io::{CompressedModel, CompressedTensor, Dtype, Entry, Tensor};
use crate::nn::math::gelu_in_place;
use crate::nn::{attend, BertEncoder, BertLayer, Linear, TokenBatch};
use crate::parallel::ParallelExecutor;
use crate::pass::check_input_scales;
use crate::quantization::scale_rows;

/// The six linear-layer suffixes, in forward order.
pub const BERT_LINEARS: [&str; 6] = BertLayer::LINEAR_NAMES;

fn name(layer: usize, k: usize) -> String {
    format!("encoder.layer.{layer}.{}", BERT_LINEARS[k])
}

fn parse(enc: &BertEncoder, full: &str) -> Result<(usize, usize)> {
    let bad = || {
        SquishError::invalid(
            "layer name",
            full,
            format!(
                "BERT linear layers are encoder.layer.{{0..{}}}.{{{}}}",
                enc.layers().len(),
                BERT_LINEARS.join(", ")
            ),
        )
    };
    let rest = full.strip_prefix("encoder.layer.").ok_or_else(bad)?;
    let (i, suffix) = rest.split_once('.').ok_or_else(bad)?;
    let i: usize = i.parse().map_err(|_| bad())?;
    let k = BERT_LINEARS
        .iter()
        .position(|s| *s == suffix)
        .ok_or_else(bad)?;
    if i >= enc.layers().len() {
        return Err(bad());
    }
    Ok((i, k))
}

fn linear_mut(enc: &mut BertEncoder, i: usize, k: usize) -> &mut Linear {
    let l = &mut enc.layers_mut()[i];
    match k {
        0 => &mut l.attention.query,
        1 => &mut l.attention.key,
        2 => &mut l.attention.value,
        3 => &mut l.attention.output,
        4 => &mut l.intermediate,
        _ => &mut l.output,
    }
}

/// Replaces a layer's weight by a compressed matrix (served by its own
/// kernel), keeping the bias.
pub fn set_compressed(
    enc: &mut BertEncoder,
    name: &str,
    m: crate::matrix::CompressedMatrix,
) -> Result<()> {
    set_compressed_scaled(enc, name, m, None)
}

/// [`set_compressed`] with per-input factors the layer multiplies its
/// input by first (AWQ's `1/s`, [`Linear::with_input_scale`]).
pub fn set_compressed_scaled(
    enc: &mut BertEncoder,
    name: &str,
    m: crate::matrix::CompressedMatrix,
    input_scale: Option<&[f32]>,
) -> Result<()> {
    let (i, k) = parse(enc, name)?;
    let l = linear_mut(enc, i, k);
    let mut new = Linear::compressed(m, l.bias().cloned())?;
    if let Some(f) = input_scale {
        new = new.with_input_scale(ndarray::Array1::from(f.to_vec()))?;
    }
    *l = new;
    Ok(())
}

impl Calibratable for BertEncoder {
    type Input = TokenBatch;

    fn stages(&self) -> Vec<Vec<String>> {
        (0..self.layers().len())
            .flat_map(|i| {
                [
                    vec![name(i, 0), name(i, 1), name(i, 2)],
                    vec![name(i, 3)],
                    vec![name(i, 4)],
                    vec![name(i, 5)],
                ]
            })
            .collect()
    }

    fn weight(&self, full: &str) -> Result<Array2<f32>> {
        let (i, k) = parse(self, full)?;
        Ok(self.layers()[i].linears()[k].dense_weight())
    }

    fn set_weight(&mut self, full: &str, w: ArrayView2<f32>) -> Result<()> {
        let (i, k) = parse(self, full)?;
        let l = linear_mut(self, i, k);
        *l = Linear::dense(w.to_owned(), l.bias().cloned())?;
        Ok(())
    }

    fn forward_capturing(
        &self,
        batch: &TokenBatch,
        wanted: &BTreeSet<String>,
        capture: &mut dyn FnMut(&str, ArrayView2<f32>) -> Result<()>,
        exec: &dyn ParallelExecutor,
    ) -> Result<()> {
        let last = (0..self.layers().len())
            .rev()
            .find(|&i| (0..6).any(|k| wanted.contains(&name(i, k))));
        let Some(last) = last else { return Ok(()) };
        let mut x = self.embed_tokens(batch, exec)?;
        for (i, layer) in self.layers().iter().enumerate().take(last + 1) {
            let att = &layer.attention;
            for k in 0..3 {
                capture(&name(i, k), x.view())?;
            }
            let q = att.query.forward(x.view(), exec)?;
            let kk = att.key.forward(x.view(), exec)?;
            let v = att.value.forward(x.view(), exec)?;
            let ctx = attend(
                q.view(),
                kk.view(),
                v.view(),
                batch.segments(),
                att.heads(),
                exec,
            )?;
            capture(&name(i, 3), ctx.view())?;
            let mut a = att.output.forward(ctx.view(), exec)?;
            layer
                .attention_norm
                .add_forward_in_place(&mut a, x.view(), exec);
            capture(&name(i, 4), a.view())?;
            let mut h = layer.intermediate.forward(a.view(), exec)?;
            gelu_in_place(h.as_slice_mut().expect("owned"));
            capture(&name(i, 5), h.view())?;
            let mut o = layer.output.forward(h.view(), exec)?;
            layer
                .output_norm
                .add_forward_in_place(&mut o, a.view(), exec);
            x = o;
        }
        Ok(())
    }
}

/// Folds the per-input scales AWQ stored for `attention.output.dense` into
/// the rows and bias of `attention.self.value`, in a container: attention's
/// context is a per-head weighted sum of the value vectors (weights from
/// query and key only), so dividing value's output channel `j` by `s_j`
/// divides the context's channel `j` by `s_j`, exactly what the stored
/// scale did. Returns the new container and the number of layers folded;
/// the value weight must be dense f32, or int8/int4 per row or per group
/// ([`scale_rows`]: its scales are multiplied, the codes kept).
///
/// The other linear layers keep their stored scale: in a post-norm encoder
/// (BERT) query/key/value and `intermediate.dense` read a LayerNorm output
/// that is also the residual, so folding into that LayerNorm's γ and β would
/// change the residual branch; `output.dense` reads GELU's output, which does
/// not commute with a per-channel scale.
pub fn fold_bert_input_scales(model: &CompressedModel) -> Result<(CompressedModel, usize)> {
    const SCALED: &str = "attention.output.dense.input_scale";
    let mut folds: Vec<(String, Vec<f32>)> = Vec::new();
    for (name, e) in model.iter() {
        let Some(prefix) = name.strip_suffix(SCALED) else {
            continue;
        };
        let Entry::Plain(t) = e else {
            return Err(SquishError::invalid(
                "input scale",
                name,
                "a stored input scale is a plain f32 vector",
            ));
        };
        let f = t.as_f32().ok_or_else(|| {
            SquishError::invalid("input scale", name, "a stored input scale is an f32 vector")
        })?;
        check_input_scales(f)?;
        folds.push((format!("{prefix}attention.self.value"), f.to_vec()));
    }
    let factors = |name: &str| -> Option<(&[f32], bool)> {
        folds.iter().find_map(|(v, f)| {
            if name.strip_prefix(v.as_str()) == Some(".weight") {
                Some((f.as_slice(), true))
            } else if name.strip_prefix(v.as_str()) == Some(".bias") {
                Some((f.as_slice(), false))
            } else {
                None
            }
        })
    };
    let mut out = CompressedModel::new();
    let mut done = 0;
    for (name, e) in model.iter() {
        if name.ends_with(SCALED) {
            continue;
        }
        match (factors(name), e) {
            (None, Entry::Plain(t)) => out.insert_plain(name, t.clone())?,
            (None, Entry::Compressed(ct)) => out.insert_compressed(name, (**ct).clone())?,
            (Some((f, true)), Entry::Compressed(ct)) => {
                let m = scale_rows(ct.matrix(), f)?;
                let ct = CompressedTensor::new(
                    m,
                    ct.dtype(),
                    ct.shape().to_vec(),
                    format!("{} + folded input scale", ct.method()),
                )?;
                out.insert_compressed(name, ct)?;
                done += 1;
            }
            (Some((f, is_weight)), Entry::Plain(t)) => {
                let v = t.as_f32().ok_or_else(|| {
                    SquishError::invalid("value layer", name, "an f32 tensor to fold into")
                })?;
                let cols = if is_weight { v.len() / f.len() } else { 1 };
                if v.len() != cols * f.len() {
                    return Err(SquishError::shape(
                        "folding an input scale",
                        format!("{} rows", f.len()),
                        format!("{:?}", t.shape()),
                    ));
                }
                let data: Vec<f32> = v
                    .iter()
                    .enumerate()
                    .map(|(k, &x)| x * f[k / cols])
                    .collect();
                out.insert_plain(name, Tensor::float(Dtype::F32, t.shape().to_vec(), data)?)?;
                done += usize::from(is_weight);
            }
            (Some(_), Entry::Compressed(_)) => {
                return Err(SquishError::invalid(
                    "value bias",
                    name,
                    "a plain vector to fold an input scale into",
                ))
            }
        }
    }
    Ok((out, done))
}
