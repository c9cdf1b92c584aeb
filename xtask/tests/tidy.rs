//! Tidy checks run as ordinary tests: formatting, where `unsafe` may live,
//! module docs on every file, and an architecture document that names every
//! crate. They keep the project's written rules true without a reviewer.

use std::path::{Path, PathBuf};
use std::process::Command;

fn workspace_root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .parent()
        .unwrap()
        .to_path_buf()
}

/// Rust sources tracked by git (or new and not ignored), outside `target`.
fn rust_files() -> Vec<PathBuf> {
    let root = workspace_root();
    let out = Command::new("git")
        .args([
            "ls-files",
            "--cached",
            "--others",
            "--exclude-standard",
            "*.rs",
        ])
        .current_dir(&root)
        .output()
        .expect("git ls-files");
    assert!(out.status.success());
    String::from_utf8(out.stdout)
        .unwrap()
        .lines()
        .map(|l| root.join(l))
        .filter(|p| p.exists())
        .collect()
}

#[test]
fn code_is_formatted() {
    let out = Command::new(std::env::var("CARGO").unwrap_or_else(|_| "cargo".into()))
        .args(["fmt", "--all", "--check"])
        .current_dir(workspace_root())
        .output()
        .expect("cargo fmt");
    assert!(
        out.status.success(),
        "run `cargo fmt --all`:\n{}",
        String::from_utf8_lossy(&out.stdout)
    );
}

/// Crates allowed to contain `unsafe`: the privileged-syscall crate and the
/// libext2fs binding (neither exists yet), each block with `// SAFETY:`.
const UNSAFE_ALLOWED: &[&str] = &["crates/sys/", "crates/ext2fs/"];

#[test]
fn unsafe_only_where_allowed_and_justified() {
    let root = workspace_root();
    let mut bad = Vec::new();
    for file in rust_files() {
        let rel = file
            .strip_prefix(&root)
            .unwrap()
            .to_string_lossy()
            .into_owned();
        if rel.starts_with("xtask/tests/tidy.rs") {
            continue;
        }
        let text = std::fs::read_to_string(&file).unwrap();
        let lines: Vec<&str> = text.lines().collect();
        for (i, line) in lines.iter().enumerate() {
            let code = line.split("//").next().unwrap_or("");
            let is_unsafe = ["unsafe {", "unsafe fn", "unsafe impl", "unsafe extern"]
                .iter()
                .any(|k| code.contains(k));
            if !is_unsafe {
                continue;
            }
            if !UNSAFE_ALLOWED.iter().any(|a| rel.starts_with(a)) {
                bad.push(format!(
                    "{rel}:{}: unsafe outside {UNSAFE_ALLOWED:?}",
                    i + 1
                ));
            } else if !lines[i.saturating_sub(3)..i]
                .iter()
                .any(|l| l.contains("SAFETY:"))
            {
                bad.push(format!(
                    "{rel}:{}: unsafe without a // SAFETY: comment",
                    i + 1
                ));
            }
        }
    }
    assert!(bad.is_empty(), "{}", bad.join("\n"));
}

#[test]
fn every_rust_file_says_what_it_is_for() {
    let root = workspace_root();
    let missing: Vec<String> = rust_files()
        .into_iter()
        .filter(|f| {
            let text = std::fs::read_to_string(f).unwrap();
            !text.lines().take(5).any(|l| l.starts_with("//!"))
        })
        .map(|f| f.strip_prefix(&root).unwrap().display().to_string())
        .collect();
    assert!(
        missing.is_empty(),
        "files without a //! module doc:\n{}",
        missing.join("\n")
    );
}

#[test]
fn architecture_document_names_every_crate() {
    let root = workspace_root();
    let doc = std::fs::read_to_string(root.join("docs/ARCHITECTURE.md")).unwrap();
    for entry in std::fs::read_dir(root.join("crates")).unwrap() {
        let name = entry.unwrap().file_name().to_string_lossy().into_owned();
        assert!(
            doc.contains(&format!("`crates/{name}`")),
            "docs/ARCHITECTURE.md does not describe crates/{name}"
        );
    }
}
