//! Any bytes given to the recipe parser: a typed error or a recipe, never a
//! panic; a recipe that parses plans every layer name and builds its
//! pipelines (or fails with a typed error).
#![no_main]

use libfuzzer_sys::fuzz_target;
use squish::recipe::{Choice, Recipe};

const LAYERS: [&str; 5] = [
    "embeddings.word_embeddings.weight",
    "encoder.layer.0.attention.self.query.weight",
    "encoder.layer.0.intermediate.dense.weight",
    "conv1.weight",
    "pooler.dense.weight",
];

fuzz_target!(|data: &[u8]| {
    let Ok(src) = std::str::from_utf8(data) else {
        return;
    };
    let Ok(recipe) = Recipe::from_toml(src) else {
        return;
    };
    let _ = recipe.plan(&LAYERS, &["encoder.layer.0.output.LayerNorm.bias"]);
    for name in LAYERS {
        let c = recipe.choose(name);
        let _ = recipe.pipeline(c);
        if let Choice::Rule(i) = c {
            assert!(recipe.rules()[i].matches(name));
        }
    }
});
