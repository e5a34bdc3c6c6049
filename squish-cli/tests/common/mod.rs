//! Helpers shared by the command-line tests: run the built `squish` binary.
// Each test crate uses the part it needs.
#![allow(dead_code)]

use std::process::{Command, Output};

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
