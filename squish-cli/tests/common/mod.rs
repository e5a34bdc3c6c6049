//! Helpers shared by the command-line tests: run the built `squish` binary.
// Each test crate uses the part it needs.
#![allow(dead_code)]

use std::io::Write;
use std::path::PathBuf;
use std::process::{Command, Output, Stdio};

/// Runs `squish --threads 2 ARGS`.
pub fn squish(args: &[&str]) -> Output {
    Command::new(env!("CARGO_BIN_EXE_squish"))
        .args(["--threads", "2"])
        .args(args)
        .output()
        .expect("the binary runs")
}

/// Runs a command that must succeed; returns its stdout.
pub fn ok(args: &[&str]) -> String {
    let out = squish(args);
    assert!(
        out.status.success(),
        "squish {args:?} failed:\n{}",
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8(out.stdout).unwrap()
}

/// Runs a command that must fail; returns its stderr.
pub fn fails(args: &[&str]) -> String {
    let out = squish(args);
    assert!(!out.status.success(), "squish {args:?} succeeded");
    String::from_utf8(out.stderr).unwrap()
}

/// Runs `squish --threads 2 ARGS` with `stdin` (or nothing) as its input.
pub fn squish_stdin(args: &[&str], stdin: Option<&[u8]>) -> Output {
    let mut child = Command::new(env!("CARGO_BIN_EXE_squish"))
        .args(["--threads", "2"])
        .args(args)
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("the binary runs");
    let mut input = child.stdin.take().unwrap();
    input.write_all(stdin.unwrap_or(b"")).unwrap();
    drop(input);
    child.wait_with_output().unwrap()
}

/// The all-MiniLM-L6-v2 directory from `SQUISH_MINILM_DIR`: fails in CI
/// without it, skips (None) otherwise.
pub fn minilm_dir() -> Option<PathBuf> {
    match std::env::var_os("SQUISH_MINILM_DIR") {
        Some(d) if PathBuf::from(&d).join("model.safetensors").exists() => Some(d.into()),
        _ if std::env::var_os("CI").is_some() => {
            panic!("SQUISH_MINILM_DIR is not set to the all-MiniLM-L6-v2 model directory (.ci/minilm.sh)")
        }
        _ => {
            eprintln!("skipped: set SQUISH_MINILM_DIR to run this test");
            None
        }
    }
}
