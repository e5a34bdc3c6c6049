//! Recipes: first-match order, default, and every error with its line.

use squish::recipe::{Choice, MethodSpec, Recipe, RecipeError};
use squish::SquishError;

fn err(src: &str) -> RecipeError {
    match Recipe::from_toml(src) {
        Err(SquishError::Recipe(e)) => e,
        Err(e) => panic!("expected a RecipeError, got {e}"),
        Ok(_) => panic!("expected an error for\n{src}"),
    }
}

const RECIPE: &str = r#"# comment
[[rule]]
pattern = "lstm*.weight_ih"
pipeline = [{ method = "int8" }]

[[rule]]
pattern = "lstm*"
pipeline = [{ method = "magnitude", sparsity = 0.5 }, { method = "int4", granularity = "per-group", group_size = 32 }]

[[rule]]
regex = 'conv[0-9]+\.weight'
pipeline = []

[default]
pipeline = [{ method = "ternary" }]
"#;

#[test]
fn first_match_wins_then_default() {
    let r = Recipe::from_toml(RECIPE).unwrap();
    assert_eq!(r.rules().len(), 3);
    assert_eq!(
        r.rules().iter().map(|r| r.line()).collect::<Vec<_>>(),
        vec![3, 7, 11]
    );
    assert_eq!(r.choose("lstm_cell.weight_ih"), Choice::Rule(0));
    assert_eq!(r.choose("lstm_cell.weight_hh"), Choice::Rule(1));
    assert_eq!(r.choose("conv12.weight"), Choice::Rule(2));
    // Regexes match the whole name.
    assert_eq!(r.choose("xconv1.weight"), Choice::Default);
    assert_eq!(r.choose("conv1.weights"), Choice::Default);
    assert_eq!(r.methods(Choice::Default), &[MethodSpec::Ternary {}]);
    assert_eq!(r.methods(Choice::Rule(1)).len(), 2);
    assert!(r.methods(Choice::Rule(2)).is_empty());
    // Without a default, unmatched layers are kept.
    let r = Recipe::from_toml("[[rule]]\npattern = \"a*\"\npipeline = [{ method = \"binary\" }]\n")
        .unwrap();
    assert_eq!(r.choose("b"), Choice::Keep);
    assert_eq!(
        r.plan(&["a1", "b"], &[]).unwrap(),
        vec![Choice::Rule(0), Choice::Keep]
    );
}

#[test]
fn syntax_errors_name_their_line() {
    let e = err("[[rule]]\npattern = \"x\"\npipeline = [{ method = \"int8\" }]\ncolour = 3\n");
    assert!(matches!(e, RecipeError::Syntax { line: 4, .. }), "{e}");
    assert!(e.to_string().contains("colour"), "{e}");
    let e = err("[default]\npipeline = [\n  { method = \"int8\", bitz = 3 },\n]\n");
    assert!(matches!(e, RecipeError::Syntax { line: 3, .. }), "{e}");
    let e = err("[default]\npipeline = [\n\n  { method = \"quantum\" },\n]\n");
    assert!(matches!(e, RecipeError::Syntax { line: 4, .. }), "{e}");
    assert!(e.to_string().contains("quantum"), "{e}");
    let e = err("[default]\npipeline = [{ method = \"magnitude\", sparsity = \"half\" }]\n");
    assert!(matches!(e, RecipeError::Syntax { line: 2, .. }), "{e}");
    let e = err("[default\n");
    assert!(matches!(e, RecipeError::Syntax { line: 1, .. }), "{e}");
    let e = err("\n\n[[rule]]\npipeline = []\n");
    assert!(matches!(e, RecipeError::Syntax { line: 4, .. }), "{e}");
    let e = err("[[rule]]\npattern = \"a\"\nregex = \"a\"\npipeline = []\n");
    assert!(matches!(e, RecipeError::Syntax { line: 4, .. }), "{e}");
}

#[test]
fn bad_values_and_patterns_name_their_line() {
    let e = err("[default]\npipeline = [\n  { method = \"int8\" },\n  { method = \"magnitude\", sparsity = 1.5 },\n]\n");
    assert!(matches!(e, RecipeError::BadValue { line: 4, .. }), "{e}");
    assert!(e.to_string().contains("sparsity"), "{e}");
    let e = err("[default]\npipeline = [{ method = \"int4\", granularity = \"per-group\" }]\n");
    assert!(matches!(e, RecipeError::BadValue { line: 2, .. }), "{e}");
    let e = err("[default]\npipeline = [{ method = \"int4\", granularity = \"per-group\", group_size = 0 }]\n");
    assert!(matches!(e, RecipeError::BadValue { line: 2, .. }), "{e}");
    let e = err("[default]\npipeline = [{ method = \"int8\", group_size = 8 }]\n");
    assert!(matches!(e, RecipeError::BadValue { line: 2, .. }), "{e}");
    let e = err("\n[[rule]]\npattern = \"a[\"\npipeline = []\n");
    assert!(matches!(e, RecipeError::BadPattern { line: 3, .. }), "{e}");
    let e = err("[[rule]]\nregex = \"(\"\npipeline = []\n");
    assert!(matches!(e, RecipeError::BadPattern { line: 2, .. }), "{e}");
}

#[test]
fn patterns_that_select_nothing_name_their_line() {
    let r = Recipe::from_toml(RECIPE).unwrap();
    let matrices = ["lstm_cell.weight_ih", "lstm_cell.weight_hh", "fc.weight"];
    let e = r.plan(&matrices, &["conv1.bias"]).unwrap_err();
    let SquishError::Recipe(RecipeError::Unmatched {
        line,
        ref pattern,
        ref detail,
    }) = e
    else {
        panic!("{e}")
    };
    assert_eq!((line, pattern.as_str()), (11, "conv[0-9]+\\.weight"));
    assert!(detail.contains("matches no tensor"), "{detail}");
    // Only non-matrix tensors match.
    let r2 = Recipe::from_toml("[[rule]]\npattern = \"*.bias\"\npipeline = []\n").unwrap();
    let e = r2.plan(&["fc.weight"], &["fc.bias"]).unwrap_err();
    assert!(
        e.to_string().contains("line 2") && e.to_string().contains("fc.bias"),
        "{e}"
    );
    // Shadowed by an earlier rule.
    let r3 = Recipe::from_toml(
        "[[rule]]\npattern = \"*\"\npipeline = []\n[[rule]]\npattern = \"fc*\"\npipeline = []\n",
    )
    .unwrap();
    let e = r3.plan(&["fc.weight"], &[]).unwrap_err();
    assert!(
        matches!(
            e,
            SquishError::Recipe(RecipeError::Unmatched { line: 5, .. })
        ),
        "{e}"
    );
    assert!(e.to_string().contains("line 2"), "{e}");
}

#[test]
fn recipe_compresses_a_model_deterministically_across_thread_counts() {
    use squish::io::{Dtype, Entry, Model, Tensor};
    use squish::parallel::{Sequential, ThreadPool};
    let mut m = Model::new();
    for (i, name) in [
        "lstm_cell.weight_ih",
        "lstm_cell.weight_hh",
        "conv1.weight",
        "fc.weight",
    ]
    .iter()
    .enumerate()
    {
        let data: Vec<f32> = (0..64 * 12)
            .map(|k| ((k * 37 + i * 11) % 101) as f32 / 50.0 - 1.0)
            .collect();
        m.insert(
            *name,
            Tensor::float(Dtype::F32, vec![64, 4, 3], data).unwrap(),
        )
        .unwrap();
    }
    m.insert(
        "conv1.bias",
        Tensor::float(Dtype::F32, vec![64], vec![0.1; 64]).unwrap(),
    )
    .unwrap();
    let r = Recipe::from_toml(RECIPE).unwrap();
    let seq = squish::recipe::compress_model(&m, &r, &Sequential, &|_| {}).unwrap();
    let pool = ThreadPool::new(2).unwrap();
    let par = squish::recipe::compress_model(&m, &r, &pool, &|_| {}).unwrap();
    assert_eq!(seq.model, par.model);
    let kinds: Vec<(String, String)> = seq
        .model
        .iter()
        .map(|(n, e)| {
            let k = match e {
                Entry::Compressed(c) => format!(
                    "{} {}",
                    c.matrix().structure().kind(),
                    c.matrix().encoding()
                ),
                Entry::Plain(_) => "plain".into(),
            };
            (n.to_string(), k)
        })
        .collect();
    let want = [
        ("lstm_cell.weight_ih", "dense int8"),
        ("lstm_cell.weight_hh", "csr int4"),
        ("conv1.weight", "plain"),
        ("fc.weight", "dense ternary"),
        ("conv1.bias", "plain"),
    ];
    for ((n, k), (wn, wk)) in kinds.iter().zip(want) {
        assert_eq!((n.as_str(), k.as_str()), (wn, wk));
    }
    assert_eq!(seq.layers.len(), 3);
    assert_eq!(seq.layers[1].method, "magnitude 50% → int4 sym group-32");
    // The report's error is the measured error of the stored matrix.
    let Some(Entry::Compressed(c)) = seq.model.get("fc.weight") else {
        panic!()
    };
    let w = m.get("fc.weight").unwrap().matrix().unwrap();
    let e = squish::metrics::ErrorMetrics::between(w, c.matrix().to_dense().view()).unwrap();
    assert_eq!(e, seq.layers[2].error);
}
