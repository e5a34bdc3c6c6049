//! What the `calibrate_*` examples share: the methods compared (as recipe
//! method lines, so each row is what a recipe writes), the command-line
//! choices (`--only NAME`, `--method TOML`, `--one-shot`), and the timed
//! compression of a whole model with one method.
//!
//! Not an example itself (a folder with `mod.rs`): `mod calibration_common;`.
//! Each example uses a part of it.
#![allow(dead_code)]

use std::time::Instant;

use ndarray::Array2;
use squish::calibration::{compress, Calibratable, CalibratedModel, Mode, SparseGptQuantPass};
use squish::prelude::*;
use squish::pruning::SparseGpt;
use squish::quantization::Gptq;
use squish::recipe::{MethodSpec, Recipe};

/// Round-to-nearest int3 group-128 (GPTQ's grid with H = I; the int
/// quantizers stop at 4 bits): the data-free baseline of GPTQ int3.
#[derive(Debug)]
struct Rtn3;

impl CompressionPass for Rtn3 {
    fn name(&self) -> String {
        "rtn int3 g128".into()
    }
    fn apply(
        &self,
        m: &CompressedMatrix,
        exec: &dyn ParallelExecutor,
    ) -> squish::Result<CompressedMatrix> {
        let w = m.to_dense();
        let eye = Array2::<f64>::eye(w.ncols());
        Ok(Gptq::params(3)
            .per_group(128)
            .check()?
            .quantize(w.view(), eye.view(), exec)?
            .matrix)
    }
}

const G128: &str = r#"granularity = "per-group", group_size = 128"#;

/// A method of the comparison: a row label and how to build its pipeline.
pub struct Method {
    pub name: String,
    /// Recipe method lines (`{ method = ... }`), or a special pipeline.
    recipe: Option<String>,
    special: Option<fn() -> squish::Result<Pipeline>>,
}

impl Method {
    fn recipe(name: &str, line: String) -> Self {
        Method {
            name: name.into(),
            recipe: Some(line),
            special: None,
        }
    }

    /// No compression (the dense f32 row of a table).
    pub fn dense() -> Self {
        Method {
            name: "dense f32".into(),
            recipe: None,
            special: None,
        }
    }

    /// A fresh pipeline (pipelines hold boxed passes, so one per layer).
    pub fn pipeline(&self) -> squish::Result<Pipeline> {
        match (&self.recipe, self.special) {
            (Some(line), _) => {
                let r = Recipe::from_toml(&format!("[default]\npipeline = [{line}]\n"))?;
                MethodSpec::pipeline(r.default_methods().unwrap_or(&[]))
            }
            (None, Some(f)) => f(),
            (None, None) => Ok(Pipeline::new()),
        }
    }
}

/// The methods of the comparison tables, data-free baseline first in each
/// group.
pub fn methods() -> Vec<Method> {
    let m = |name: &str, line: &str| Method::recipe(name, line.replace("G128", G128));
    let gptq = |bits: u8, better: bool| {
        let extra = if better {
            r#", act_order = true, calibration = "mse""#
        } else {
            ""
        };
        format!("{{ method = \"gptq\", bits = {bits}, {G128}{extra} }}")
    };
    let awq =
        |bits: u8, refine: &str| format!("{{ method = \"awq\", bits = {bits}, {G128}{refine} }}");
    let plus = ", gptq = true";
    let plus_best = r#", gptq = true, act_order = true, calibration = "mse""#;
    vec![
        m("RTN int4 g128", r#"{ method = "int4", G128 }"#),
        Method::recipe("GPTQ int4 g128", gptq(4, false)),
        Method::recipe("GPTQ int4 g128 act-order+mse", gptq(4, true)),
        Method::recipe("AWQ int4 g128", awq(4, "")),
        Method::recipe("AWQ+GPTQ int4 g128", awq(4, plus)),
        Method::recipe("AWQ+GPTQ int4 g128 act-order+mse", awq(4, plus_best)),
        Method::recipe(
            "AWQ(GPTQ search) int4 g128 act-order+mse",
            awq(4, &format!("{plus_best}, search = \"gptq\", grid = 10")),
        ),
        Method {
            name: "RTN int3 g128".into(),
            recipe: None,
            special: Some(|| Ok(Pipeline::new().then(Rtn3))),
        },
        Method::recipe("GPTQ int3 g128", gptq(3, false)),
        Method::recipe("GPTQ int3 g128 act-order+mse", gptq(3, true)),
        Method::recipe("AWQ int3 g128", awq(3, "")),
        Method::recipe("AWQ+GPTQ int3 g128", awq(3, plus)),
        Method::recipe("AWQ+GPTQ int3 g128 act-order+mse", awq(3, plus_best)),
        Method::recipe(
            "AWQ(GPTQ search) int3 g128 act-order+mse",
            awq(3, &format!("{plus_best}, search = \"gptq\", grid = 10")),
        ),
        m(
            "magnitude 50%",
            r#"{ method = "magnitude", sparsity = 0.5 }"#,
        ),
        m("Wanda 50%", r#"{ method = "wanda", sparsity = 0.5 }"#),
        m(
            "SparseGPT 50%",
            r#"{ method = "sparsegpt", sparsity = 0.5 }"#,
        ),
        m("magnitude 2:4", r#"{ method = "nm", n = 2, m = 4 }"#),
        m("Wanda 2:4", r#"{ method = "wanda", n = 2, m = 4 }"#),
        m("SparseGPT 2:4", r#"{ method = "sparsegpt", n = 2, m = 4 }"#),
        Method {
            name: "SparseGPT 2:4 + int4 g64 (joint)".into(),
            recipe: None,
            special: Some(|| {
                Ok(Pipeline::new().data_aware(SparseGptQuantPass {
                    sparsegpt: SparseGpt::nm(2, 4).check()?,
                    bits: 4,
                    group: Some(64),
                }))
            }),
        },
    ]
}

/// The command line: `--only TEXT` (methods whose name contains it),
/// `--method TOML` (repeatable: recipe method lines instead of the table),
/// `--one-shot` (statistics from the uncompressed model instead of
/// sequential calibration), `--targets` (sequential towards the
/// uncompressed model's outputs), `--flag VALUE` for the example's own flags.
pub struct Args {
    args: Vec<String>,
}

impl Args {
    pub fn parse() -> Self {
        Args {
            args: std::env::args().collect(),
        }
    }

    /// The value after `--name`.
    pub fn value(&self, name: &str) -> Option<&str> {
        let i = self.args.iter().position(|a| a == name)?;
        self.args.get(i + 1).map(String::as_str)
    }

    /// Whether `--name` is given.
    pub fn flag(&self, name: &str) -> bool {
        self.args.iter().any(|a| a == name)
    }

    /// Calibration mode.
    pub fn mode(&self) -> Mode {
        if self.flag("--one-shot") {
            Mode::OneShot
        } else if self.flag("--targets") {
            Mode::SequentialTargets
        } else {
            Mode::Sequential
        }
    }

    /// The methods to run.
    pub fn methods(&self) -> Vec<Method> {
        let given: Vec<Method> = self
            .args
            .windows(2)
            .filter(|p| p[0] == "--method")
            .map(|p| Method::recipe(&p[1], p[1].clone()))
            .collect();
        if !given.is_empty() {
            return given;
        }
        let only = self.value("--only").map(str::to_lowercase);
        methods()
            .into_iter()
            .filter(|m| {
                only.as_ref()
                    .is_none_or(|o| m.name.to_lowercase().contains(o.as_str()))
            })
            .collect()
    }
}

/// Compresses every layer of a copy of `base` with `method`, calibrated on
/// `inputs` in `mode`: the compressed layers, the model holding their
/// decoded weights, and the seconds taken (calibration included).
pub fn run<M: Calibratable + Clone>(
    base: &M,
    inputs: &[M::Input],
    method: &Method,
    mode: Mode,
    exec: &dyn ParallelExecutor,
) -> squish::Result<(CalibratedModel, M, f64)> {
    method.pipeline()?; // a bad --method fails here, not as a skipped layer
    let t = Instant::now();
    let mut model = base.clone();
    let out = compress(&mut model, inputs, &|_| method.pipeline().ok(), mode, exec)?;
    Ok((out, model, t.elapsed().as_secs_f64()))
}
