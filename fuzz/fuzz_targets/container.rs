//! Any bytes given to the container loader: a typed error or a model, never
//! a panic; a model that loads must save and load back equal. Equality is
//! bitwise for stored tensors (`Tensor`'s `PartialEq`), so a kept tensor
//! holding NaN still equals its reloaded self.
#![no_main]

use libfuzzer_sys::fuzz_target;
use squish::io::CompressedModel;

fuzz_target!(|data: &[u8]| {
    if let Ok(m) = CompressedModel::from_bytes(data) {
        let bytes = m.to_bytes().expect("a loaded model saves");
        let back = CompressedModel::from_bytes(&bytes).expect("a saved model loads");
        assert_eq!(back, m);
    }
});
