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
use crate::nn::math::gelu_in_place;
use crate::nn::{attend, BertEncoder, BertLayer, Linear, TokenBatch};
use crate::parallel::ParallelExecutor;

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
    let (i, k) = parse(enc, name)?;
    let l = linear_mut(enc, i, k);
    *l = Linear::compressed(m, l.bias().cloned())?;
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
