//! Helpers shared by the block layer's tests: running the real tools
//! (missing ones skip loudly, or fail under `RESCUE_REQUIRE_TOOLS=1`), a
//! deterministic PRNG, disk contents that make every kind of qcow2 cluster,
//! and error assertions.

#![allow(dead_code)]

use std::path::Path;
use std::process::Command;

use rescue_io::ErrorKind;

/// Whether `tool` is installed. Missing tools fail the test when
/// RESCUE_REQUIRE_TOOLS=1, and skip it (loudly) otherwise.
pub fn have(tool: &str) -> bool {
    let found = Command::new(tool).arg("--version").output().is_ok();
    if !found {
        if std::env::var("RESCUE_REQUIRE_TOOLS").as_deref() == Ok("1") {
            panic!("{tool} is required (RESCUE_REQUIRE_TOOLS=1) but not installed");
        }
        eprintln!("skipping: {tool} is not installed");
    }
    found
}

/// Runs a tool; its stdout, or a panic with its output on failure.
pub fn run(cmd: &str, args: &[&str]) -> String {
    let out = Command::new(cmd)
        .args(args)
        .output()
        .unwrap_or_else(|e| panic!("running {cmd}: {e}"));
    assert!(
        out.status.success(),
        "{cmd} {args:?} failed: {}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8_lossy(&out.stdout).into_owned()
}

/// `qemu-img ARGS…`.
pub fn qemu_img(args: &[&str]) -> String {
    run("qemu-img", args)
}

/// A temporary path as `&str`.
pub fn s(p: &Path) -> &str {
    p.to_str().expect("temp paths are UTF-8")
}

/// xorshift64: deterministic test data.
pub struct XorShift(pub u64);

impl XorShift {
    pub fn next(&mut self) -> u64 {
        self.0 ^= self.0 << 13;
        self.0 ^= self.0 >> 7;
        self.0 ^= self.0 << 17;
        self.0
    }
}

/// Disk content mixing random, zero, compressible and patterned 4 KiB
/// blocks, so converted images hold data, zero and compressed clusters.
pub fn disk_bytes(size: usize, seed: u64) -> Vec<u8> {
    let mut rng = XorShift(seed);
    let mut v = vec![0u8; size];
    for block in v.chunks_mut(4096) {
        match rng.next() % 5 {
            0 => block.iter_mut().for_each(|b| *b = rng.next() as u8),
            1 => {}
            2 | 3 => block
                .iter_mut()
                .for_each(|b| *b = if rng.next() & 1 == 0 { b'a' } else { b'b' }),
            _ => block.fill(0x55),
        }
    }
    v
}

/// `e` is of `kind`, its message one line containing every needle.
pub fn assert_err(e: &rescue_io::Error, kind: ErrorKind, needles: &[&str]) {
    let msg = e.to_string();
    assert_eq!(e.kind(), kind, "wrong kind for: {msg}");
    for n in needles {
        assert!(msg.contains(n), "message {msg:?} lacks {n:?}");
    }
    assert!(!msg.contains('\n'), "message is not one line: {msg:?}");
}
