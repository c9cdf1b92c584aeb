//! Shared helpers of the end-to-end tests: run the real binary, parse its
//! output, and apply the resource limits a hostile input must stay within.

#![allow(dead_code)]

pub mod checking;

use std::path::Path;
use std::process::{Command, Output};

/// Memory ceiling for one run of the binary on hostile input (address space).
pub const MEMORY_LIMIT_BYTES: u64 = 1 << 30;
/// Wall-clock ceiling for one run on hostile input.
pub const TIME_LIMIT_SECONDS: u32 = 60;

/// What one run of `rescue-disk` produced.
#[derive(Debug)]
pub struct Run {
    pub code: i32,
    pub stdout: String,
    pub stderr: String,
}

impl Run {
    fn from_output(out: Output) -> Run {
        Run {
            // A signal (e.g. an abort or the limits below) has no code: -1.
            code: out.status.code().unwrap_or(-1),
            stdout: String::from_utf8_lossy(&out.stdout).into_owned(),
            stderr: String::from_utf8_lossy(&out.stderr).into_owned(),
        }
    }

    /// The stdout parsed as JSON.
    pub fn json(&self) -> serde_json::Value {
        serde_json::from_str(&self.stdout).unwrap_or_else(|e| {
            panic!(
                "stdout is not JSON ({e}):\n{}\nstderr:\n{}",
                self.stdout, self.stderr
            )
        })
    }

    /// Asserts the run failed cleanly: exit 2, exactly one line on stderr
    /// that contains every one of `words` (case-insensitive), no panic.
    pub fn assert_clean_error(&self, words: &[&str]) {
        assert!(!self.stderr.contains("panicked"), "panic:\n{}", self.stderr);
        assert_eq!(
            self.code, 2,
            "exit code; stderr:\n{}\nstdout:\n{}",
            self.stderr, self.stdout
        );
        let lines: Vec<&str> = self.stderr.lines().collect();
        assert_eq!(
            lines.len(),
            1,
            "want one line on stderr, got:\n{}",
            self.stderr
        );
        let lower = lines[0].to_lowercase();
        for w in words {
            assert!(
                lower.contains(&w.to_lowercase()),
                "stderr lacks {w:?}: {}",
                lines[0]
            );
        }
        assert!(lines[0].starts_with("rescue-disk: error: "), "{}", lines[0]);
    }
}

/// The binary under test.
pub fn bin() -> &'static str {
    env!("CARGO_BIN_EXE_rescue-disk")
}

/// Runs `rescue-disk ARGS` with colour off.
pub fn run(args: &[&str]) -> Run {
    let out = Command::new(bin())
        .args(args)
        .env("NO_COLOR", "1")
        .env_remove("RUST_LOG")
        .output()
        .expect("running rescue-disk");
    Run::from_output(out)
}

/// Runs `rescue-disk ARGS` under an address-space limit and a timeout, as
/// a hostile image must never make it allocate without bound or hang.
pub fn run_limited(args: &[&str]) -> Run {
    let mut cmd = Command::new("timeout");
    cmd.arg(format!("{TIME_LIMIT_SECONDS}s"))
        .arg("prlimit")
        .arg(format!("--as={MEMORY_LIMIT_BYTES}"))
        .arg("--")
        .arg(bin())
        .args(args)
        .env("NO_COLOR", "1")
        .env_remove("RUST_LOG");
    let run = Run::from_output(
        cmd.output()
            .expect("running timeout/prlimit (coreutils, util-linux)"),
    );
    assert_ne!(run.code, 124, "rescue-disk hung on {args:?}");
    run
}

/// `rescue-disk inspect PATH --json`, asserting success.
pub fn inspect_json(path: &Path) -> serde_json::Value {
    let run = run(&["inspect", "--json", path.to_str().expect("utf-8 path")]);
    assert_eq!(
        run.code,
        0,
        "inspect {} failed:\n{}",
        path.display(),
        run.stderr
    );
    run.json()
}

/// True when this process runs as root.
pub fn is_root() -> bool {
    // /proc/self/status "Uid:" real uid; avoids unsafe geteuid.
    std::fs::read_to_string("/proc/self/status")
        .ok()
        .and_then(|s| {
            s.lines()
                .find(|l| l.starts_with("Uid:"))
                .and_then(|l| l.split_whitespace().nth(2).map(|u| u == "0"))
        })
        .unwrap_or(false)
}

/// Skips (or fails under RESCUE_REQUIRE_TOOLS=1) when `layout` cannot be built.
pub fn layout_available(layout: &str) -> bool {
    xtask::available_or_skip(layout).expect("fixture tools")
}
