//! A bounded randomized mutation test of the container loader (what the
//! cargo-fuzz target in fuzz/ does without a time limit): real container
//! bytes corrupted in many seeded ways must give a typed error or a valid
//! model, never a panic, and no single allocation far beyond the file size.

mod common;

use std::alloc::{GlobalAlloc, Layout, System};
use std::sync::atomic::{AtomicUsize, Ordering};

use rand::{rngs::StdRng, Rng, SeedableRng};
use squish::io::CompressedModel;

struct Tracking;
static LARGEST: AtomicUsize = AtomicUsize::new(0);

unsafe impl GlobalAlloc for Tracking {
    unsafe fn alloc(&self, l: Layout) -> *mut u8 {
        LARGEST.fetch_max(l.size(), Ordering::Relaxed);
        unsafe { System.alloc(l) }
    }
    unsafe fn dealloc(&self, p: *mut u8, l: Layout) {
        unsafe { System.dealloc(p, l) }
    }
    unsafe fn realloc(&self, p: *mut u8, l: Layout, n: usize) -> *mut u8 {
        LARGEST.fetch_max(n, Ordering::Relaxed);
        unsafe { System.realloc(p, l, n) }
    }
}

#[global_allocator]
static GLOBAL: Tracking = Tracking;

fn mutate(rng: &mut StdRng, src: &[u8]) -> Vec<u8> {
    let mut b = src.to_vec();
    let header_end = 8 + u64::from_le_bytes(src[..8].try_into().unwrap()) as usize;
    for _ in 0..rng.random_range(1..4) {
        match rng.random_range(0..7) {
            // Flip a bit anywhere.
            0 => {
                let i = rng.random_range(0..b.len());
                b[i] ^= 1 << rng.random_range(0..8);
            }
            // Flip a bit in the header (JSON: names, shapes, offsets, description).
            1 => {
                let i = rng.random_range(8..header_end.min(b.len()).max(9));
                if i < b.len() {
                    b[i] ^= 1 << rng.random_range(0..8);
                }
            }
            // Replace a digit in the header by another: sizes and counts that lie.
            2 => {
                let digits: Vec<usize> = (8..header_end.min(b.len()))
                    .filter(|&i| b[i].is_ascii_digit())
                    .collect();
                if let Some(&i) = digits.get(rng.random_range(0..digits.len().max(1))) {
                    b[i] = b'0' + rng.random_range(0..10);
                }
            }
            // Make a number in the header much longer (huge declared shapes).
            3 => {
                let digits: Vec<usize> = (8..header_end.min(b.len()))
                    .filter(|&i| b[i].is_ascii_digit())
                    .collect();
                if let Some(&i) = digits.get(rng.random_range(0..digits.len().max(1))) {
                    let extra = vec![b'9'; rng.random_range(1..12)];
                    b.splice(i..i, extra);
                    let n = u64::from_le_bytes(b[..8].try_into().unwrap());
                    let grown = b.len() - src.len();
                    b[..8].copy_from_slice(&(n + grown as u64).to_le_bytes());
                }
            }
            // Truncate.
            4 => {
                let n = rng.random_range(0..b.len());
                b.truncate(n);
            }
            // Overwrite the header length.
            5 => {
                let v: u64 = rng.random();
                b[..8].copy_from_slice(&(v % (2 * src.len() as u64)).to_le_bytes());
            }
            // Random bytes over a data run.
            _ => {
                let i = rng.random_range(header_end.min(b.len() - 1)..b.len());
                let len = rng.random_range(1..16).min(b.len() - i);
                rng.fill(&mut b[i..i + len]);
            }
        }
        if b.len() < 8 {
            break;
        }
    }
    b
}

fn run(src: &[u8], seed: u64, cases: usize) -> (usize, usize) {
    let mut rng = StdRng::seed_from_u64(seed);
    let (mut ok, mut err) = (0, 0);
    for case in 0..cases {
        let b = mutate(&mut rng, src);
        LARGEST.store(0, Ordering::Relaxed);
        let r = std::panic::catch_unwind(|| CompressedModel::from_bytes(&b).map(|m| m.len()));
        let largest = LARGEST.load(Ordering::Relaxed);
        match r {
            Ok(Ok(_)) => ok += 1,
            Ok(Err(e)) => {
                assert!(!e.to_string().is_empty());
                err += 1;
            }
            Err(_) => panic!("seed {seed} case {case}: the loader panicked"),
        }
        // Decoding copies each component once; nothing may be sized by a
        // declared count the bytes do not back.
        assert!(
            largest <= 4 * src.len() + (1 << 20),
            "seed {seed} case {case}: allocated {largest} bytes for a {}-byte file",
            b.len()
        );
    }
    (ok, err)
}

#[test]
fn mutated_containers_give_typed_errors_never_panics() {
    let bytes = common::container().to_bytes().unwrap();
    let (ok, err) = run(&bytes, 7, 3000);
    assert!(err > 2500, "{ok} loaded, {err} rejected");
}

#[test]
fn mutated_real_model_container() {
    let model = squish::io::Model::load(concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/tests/data/silero_vad_16k.safetensors"
    ))
    .unwrap();
    let recipe = squish::recipe::Recipe::from_toml(include_str!("data/silero_vad.toml")).unwrap();
    let c = squish::recipe::compress_model(&model, &recipe, &squish::parallel::Sequential, &|_| {})
        .unwrap();
    let bytes = c.model.to_bytes().unwrap();
    run(&bytes, 11, 300);
}
