//! Any bytes given to the plain safetensors loader: an error or a model,
//! never a panic.
#![no_main]

use libfuzzer_sys::fuzz_target;
use squish::io::Model;

fuzz_target!(|data: &[u8]| {
    let _ = Model::from_bytes(data);
});
