//! Peak memory and throughput of streaming int8 compression on a generated
//! sharded bf16 model larger than the budget.
//!
//! ```text
//! cargo run --release --example stream_memory -- [GB[,GB...]] [DIR] [BUDGET_MIB]
//! ```
//!
//! For each size (default 4), writes a bf16 model of about GB gigabytes as
//! 1 GiB shards with a Hugging Face index in DIR (default a temporary
//! directory), then, in the same run:
//! 1. the rate at which the shard files are read from disk (8 MiB reads,
//!    page cache dropped first with `posix_fadvise(DONTNEED)`), and again
//!    warm (files in the page cache);
//! 2. int8 per-row compression of the model into one container with
//!    `StreamCompression::compress_to` (what `squish compress` runs), in a
//!    child process (so its `VmHWM`, the peak resident memory, is its own),
//!    cold and warm; each prints its VmHWM, CPU time and GB/s of model data,
//!    end to end and until the last tensor reached the writer (the rest is
//!    the writer's last tensor, the header written over its reserved space,
//!    and the final fsync);
//! 3. the disk's write rate with fsync for a file of the container's size,
//!    which bounds the end-to-end rate (int8 output is half the bf16 input).
//!
//! Everything generated is removed at the end (`SQUISH_KEEP=1` keeps the
//! models and reuses them in a later run).

use std::fs::File;
use std::io::{Read, Write};
use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::Instant;

use squish::io::{ContainerWriter, Dtype, ModelWriter, ShardedModel, Tensor};
use squish::parallel::ThreadPool;
use squish::recipe::{Recipe, StreamCompression};

fn values(n: usize, seed: u64) -> Vec<f32> {
    let mut s = seed.wrapping_mul(0x9E37_79B9_7F4A_7C15) | 1;
    (0..n)
        .map(|_| {
            s ^= s << 13;
            s ^= s >> 7;
            s ^= s << 17;
            ((s >> 40) as f32 / (1u64 << 24) as f32 * 2.0 - 1.0) * 0.05
        })
        .collect()
}

/// A bf16 model of `gb` GB: 4096×4096 matrices and a norm per layer.
fn generate(dir: &Path, gb: f64) -> squish::Result<u64> {
    let mut w = ModelWriter::sharded(dir, 1 << 30)?;
    let n = 4096usize;
    let per = (n * n * 2) as f64;
    let layers = (gb * 1e9 / per).ceil() as usize;
    for l in 0..layers {
        let t = Tensor::float(Dtype::BF16, vec![n, n], values(n * n, l as u64))?;
        w.push(&format!("layers.{l}.weight"), &t)?;
        w.push(
            &format!("layers.{l}.norm"),
            &Tensor::float(Dtype::BF16, vec![n], vec![1.0; n])?,
        )?;
    }
    Ok(w.finish()?.data_bytes)
}

/// Drops the page cache of `path` (clean pages only; the files are synced).
fn drop_cache(path: &Path) {
    #[cfg(target_os = "linux")]
    {
        use std::os::fd::AsRawFd;
        if let Ok(f) = File::open(path) {
            // SAFETY: a valid open descriptor; advice only, no memory is touched.
            unsafe {
                libc::posix_fadvise(f.as_raw_fd(), 0, 0, libc::POSIX_FADV_DONTNEED);
            }
        }
    }
}

fn read_all(files: &[PathBuf]) -> (u64, f64) {
    let t0 = Instant::now();
    let mut buf = vec![0u8; 8 << 20];
    let mut total = 0u64;
    for p in files {
        let mut f = File::open(p).expect("shard opens");
        loop {
            let n = f.read(&mut buf).expect("shard reads");
            if n == 0 {
                break;
            }
            total += n as u64;
        }
    }
    (total, t0.elapsed().as_secs_f64())
}

fn vmhwm_kib() -> u64 {
    std::fs::read_to_string("/proc/self/status")
        .ok()
        .and_then(|s| {
            s.lines()
                .find(|l| l.starts_with("VmHWM:"))
                .and_then(|l| l.split_whitespace().nth(1)?.parse().ok())
        })
        .unwrap_or(0)
}

/// User + system CPU seconds of this process so far.
fn cpu_secs() -> f64 {
    // SAFETY: getrusage fills the struct it is given.
    let mut u: libc::rusage = unsafe { std::mem::zeroed() };
    unsafe { libc::getrusage(libc::RUSAGE_SELF, &mut u) };
    let t = |v: libc::timeval| v.tv_sec as f64 + v.tv_usec as f64 * 1e-6;
    t(u.ru_utime) + t(u.ru_stime)
}

/// The child: compress, then report time and peak memory.
fn child(model: &Path, out: &Path, budget_mib: usize) -> squish::Result<()> {
    let recipe = Recipe::from_toml("[default]\npipeline = [{ method = \"int8\" }]")?;
    let exec = ThreadPool::all_cores()?;
    let stream = StreamCompression::params()
        .budget_bytes(budget_mib << 20)
        .check()?;
    let t0 = Instant::now();
    let src = ShardedModel::open(model)?;
    // What `squish compress` runs; the last tensor handed to the writer
    // marks the end of reading and compressing, the rest is the writer
    // finishing (its last tensor, the header, fsync).
    let mut last = 0.0;
    let summary = stream.compress_to(
        &src,
        &recipe,
        &exec,
        ContainerWriter::create(out)?,
        &mut |_| last = t0.elapsed().as_secs_f64(),
    )?;
    let secs = t0.elapsed().as_secs_f64();
    println!(
        "child bytes_read {} written {} secs {secs:.3} compressed_at {last:.3} vmhwm_kib {} cpu {:.2}",
        summary.bytes_read,
        summary.written.data_bytes,
        vmhwm_kib(),
        cpu_secs()
    );
    Ok(())
}

/// Writes `bytes` bytes to a new file at `path` with an fsync: the disk's
/// rate for writes like the container's. Removes the file.
fn write_rate(path: &Path, bytes: u64) -> f64 {
    let buf = vec![0x5au8; 8 << 20];
    let t0 = Instant::now();
    let mut f = File::create(path).expect("a scratch file");
    let mut done = 0u64;
    while done < bytes {
        let n = (bytes - done).min(buf.len() as u64) as usize;
        f.write_all(&buf[..n]).expect("the scratch file writes");
        done += n as u64;
    }
    f.sync_all().expect("the scratch file syncs");
    let secs = t0.elapsed().as_secs_f64();
    drop(f);
    std::fs::remove_file(path).ok();
    bytes as f64 / 1e9 / secs
}

/// One model size: generate, read cold, compress cold, write rate, read
/// warm, compress warm.
fn measure(dir: &Path, gb: f64, budget_mib: usize, keep: bool) -> squish::Result<()> {
    let model = dir.join(format!("model-{gb}gb"));
    let out = dir.join(format!("model-{gb}gb.squish"));
    let t0 = Instant::now();
    // SQUISH_KEEP=1: reuse a model left by an earlier run and leave it behind.
    let bytes = if keep && model.join(squish::io::INDEX_NAME).is_file() {
        ShardedModel::open(&model)?.data_bytes()
    } else {
        generate(&model, gb)?
    };
    println!(
        "== {:.2} GB of bf16 ready in {:.1} s",
        bytes as f64 / 1e9,
        t0.elapsed().as_secs_f64()
    );
    let shards = ShardedModel::open(&model)?.shards().to_vec();
    let load = std::fs::read_to_string("/proc/loadavg").unwrap_or_default();
    println!("load average: {}", load.trim());

    let run_child = |label: &str| {
        let o = Command::new(std::env::current_exe().expect("this program"))
            .args(["--child"])
            .arg(&model)
            .arg(&out)
            .arg(budget_mib.to_string())
            .output()
            .expect("the child runs");
        assert!(
            o.status.success(),
            "child failed: {}",
            String::from_utf8_lossy(&o.stderr)
        );
        let line = String::from_utf8_lossy(&o.stdout).into_owned();
        let field = |k: &str| -> f64 {
            let mut it = line.split_whitespace();
            while let Some(w) = it.next() {
                if w == k {
                    return it.next().and_then(|v| v.parse().ok()).unwrap_or(f64::NAN);
                }
            }
            f64::NAN
        };
        let (read, written, secs, at, hwm, cpu) = (
            field("bytes_read"),
            field("written"),
            field("secs"),
            field("compressed_at"),
            field("vmhwm_kib"),
            field("cpu"),
        );
        println!("{label}: {}", line.trim());
        println!(
            "{label}: int8 compress {:.2} GB in {secs:.2} s = {:.2} GB/s end to end ({:.2} GB/s until the last tensor is handed to the writer at {at:.2} s), {:.1} CPU-s/GB, output {:.2} GB, VmHWM {:.0} MiB (budget {budget_mib} MiB)",
            read / 1e9,
            read / 1e9 / secs,
            read / 1e9 / at,
            cpu / (read / 1e9),
            written / 1e9,
            hwm / 1024.0
        );
        (read / 1e9 / secs, read / 1e9 / at, written)
    };

    for p in &shards {
        drop_cache(p);
    }
    let (n, secs) = read_all(&shards);
    let cold_read = n as f64 / 1e9 / secs;
    println!(
        "cold: read {:.2} GB in {secs:.2} s = {cold_read:.2} GB/s",
        n as f64 / 1e9
    );
    for p in &shards {
        drop_cache(p);
    }
    let (cold, cold_at, written) = run_child("cold");
    std::fs::remove_file(&out).ok();
    println!(
        "cold: compress / read = {:.0}% end to end, {:.0}% until the writer's final sync",
        100.0 * cold / cold_read,
        100.0 * cold_at / cold_read
    );
    let wr = write_rate(&dir.join("scratch.bin"), written as u64);
    println!(
        "disk: wrote {:.2} GB (the container's size) with fsync at {wr:.2} GB/s: int8 output is half the input, so writing alone caps compression at {:.2} GB/s of input",
        written / 1e9,
        2.0 * wr
    );

    let _ = read_all(&shards);
    let (n, secs) = read_all(&shards);
    let warm_read = n as f64 / 1e9 / secs;
    println!(
        "warm: read {:.2} GB in {secs:.2} s = {warm_read:.2} GB/s",
        n as f64 / 1e9
    );
    let (warm, warm_at, _) = run_child("warm");
    std::fs::remove_file(&out).ok();
    println!(
        "warm: compress / read = {:.0}% end to end, {:.0}% until the writer's final sync",
        100.0 * warm / warm_read,
        100.0 * warm_at / warm_read
    );
    if !keep {
        std::fs::remove_dir_all(&model).ok();
    }
    Ok(())
}

fn main() -> squish::Result<()> {
    let args: Vec<String> = std::env::args().collect();
    if args.get(1).map(String::as_str) == Some("--child") {
        return child(
            Path::new(&args[2]),
            Path::new(&args[3]),
            args[4].parse().expect("budget"),
        );
    }
    let sizes: Vec<f64> = args.get(1).map_or(vec![4.0], |s| {
        s.split(',').map(|g| g.parse().expect("GB")).collect()
    });
    let tmp;
    let dir = match args.get(2) {
        Some(d) => PathBuf::from(d),
        None => {
            tmp = tempfile::tempdir().expect("a temporary directory");
            tmp.path().to_path_buf()
        }
    };
    let budget_mib: usize = args
        .get(3)
        .map_or(squish::recipe::DEFAULT_BUDGET >> 20, |s| {
            s.parse().expect("MiB")
        });
    let keep = std::env::var_os("SQUISH_KEEP").is_some();
    for gb in sizes {
        measure(&dir, gb, budget_mib, keep)?;
    }
    Ok(())
}
