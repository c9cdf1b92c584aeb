//! Consistency of the Debian tree's dpkg database with the files it
//! describes: every `info/*.md5sums` line and every `Conffiles:` digest in
//! `status` must match the (stand-in) file in the tree, and every path of
//! `info/*.list` must exist, all resolved through the tree's own symlinks
//! (`/bin/ls` is `usr/bin/ls` after usrmerge, as on a real bookworm).
//!
//! `cargo xtask md5sums` recomputes the digests after a tree edit; the
//! consistency test keeps them honest.
//!
//! Must never: resolve a guest path against the host.

use std::fs;
use std::path::Path;

use anyhow::{Context, Result};
use md5::{Digest, Md5};

use crate::tree::resolve_in_root;

fn md5_hex(bytes: &[u8]) -> String {
    crate::hex(&Md5::digest(bytes))
}

fn md5_of(root: &Path, rel: &str) -> Option<String> {
    let p = resolve_in_root(root, rel)?;
    fs::read(p).ok().map(|b| md5_hex(&b))
}

/// All problems found in the dpkg database of the tree rooted at `root`
/// (empty when consistent). Trees without `var/lib/dpkg` have none.
pub fn check(root: &Path) -> Result<Vec<String>> {
    let mut problems = Vec::new();
    let info = root.join("var/lib/dpkg/info");
    if !info.is_dir() {
        return Ok(problems);
    }
    let mut names: Vec<String> = fs::read_dir(&info)?
        .filter_map(|e| e.ok()?.file_name().into_string().ok())
        .collect();
    names.sort();
    for name in names {
        let text = fs::read_to_string(info.join(&name))
            .with_context(|| format!("reading dpkg info file {name}"))?;
        if name.ends_with(".md5sums") {
            for (i, line) in text.lines().enumerate() {
                let Some((sum, path)) = line.split_once("  ") else {
                    problems.push(format!("{name}:{}: malformed line {line:?}", i + 1));
                    continue;
                };
                match md5_of(root, path) {
                    None => problems.push(format!("{name}:{}: /{path} is missing", i + 1)),
                    Some(actual) if actual != sum => problems.push(format!(
                        "{name}:{}: /{path} has md5 {actual}, the package says {sum}",
                        i + 1
                    )),
                    Some(_) => {}
                }
            }
        } else if name.ends_with(".list") {
            for line in text.lines() {
                if resolve_in_root(root, line).is_none_or(|p| fs::symlink_metadata(p).is_err()) {
                    problems.push(format!("{name}: {line} is missing"));
                }
            }
        }
    }
    let status =
        fs::read_to_string(root.join("var/lib/dpkg/status")).context("reading dpkg status")?;
    for (path, sum) in conffiles(&status) {
        match md5_of(root, path.trim_start_matches('/')) {
            None => problems.push(format!("status: conffile {path} is missing")),
            Some(actual) if actual != sum => problems.push(format!(
                "status: conffile {path} has md5 {actual}, status says {sum}"
            )),
            Some(_) => {}
        }
    }
    Ok(problems)
}

/// (path, md5) of every `Conffiles:` entry of a status file.
fn conffiles(status: &str) -> Vec<(&str, &str)> {
    let mut out = Vec::new();
    let mut in_conffiles = false;
    for line in status.lines() {
        if line.starts_with("Conffiles:") {
            in_conffiles = true;
        } else if in_conffiles && line.starts_with(' ') {
            let mut f = line.split_whitespace();
            if let (Some(p), Some(s)) = (f.next(), f.next()) {
                out.push((p, s));
            }
        } else {
            in_conffiles = false;
        }
    }
    out
}

/// Recomputes every digest of the dpkg database of `committed` (a tree in
/// `fixtures/trees/`) from the staged copy `staged_root` (where the
/// manifest's symlinks exist). Returns the number of lines changed.
pub fn refresh(committed: &Path, staged_root: &Path) -> Result<usize> {
    let mut changed = 0;
    let info = committed.join("var/lib/dpkg/info");
    if !info.is_dir() {
        return Ok(0);
    }
    for e in fs::read_dir(&info)? {
        let p = e?.path();
        if p.extension().is_none_or(|x| x != "md5sums") {
            continue;
        }
        let text = fs::read_to_string(&p)?;
        let mut out = String::new();
        for line in text.lines() {
            let (sum, path) = line
                .split_once("  ")
                .with_context(|| format!("malformed line in {}: {line:?}", p.display()))?;
            let actual = md5_of(staged_root, path)
                .with_context(|| format!("{}: /{path} is missing from the tree", p.display()))?;
            if actual != sum {
                changed += 1;
            }
            out.push_str(&format!("{actual}  {path}\n"));
        }
        fs::write(&p, out)?;
    }
    let status_path = committed.join("var/lib/dpkg/status");
    let status = fs::read_to_string(&status_path)?;
    let mut out = String::new();
    let mut in_conffiles = false;
    for line in status.split_inclusive('\n') {
        if line.starts_with("Conffiles:") {
            in_conffiles = true;
        } else if in_conffiles && line.starts_with(' ') {
            let f: Vec<&str> = line.split_whitespace().collect();
            if let [path, sum, rest @ ..] = f.as_slice() {
                let actual = md5_of(staged_root, path.trim_start_matches('/'))
                    .with_context(|| format!("conffile {path} is missing from the tree"))?;
                if actual != *sum {
                    changed += 1;
                }
                let mut l = format!(" {path} {actual}");
                for r in rest {
                    l.push(' ');
                    l.push_str(r);
                }
                l.push('\n');
                out.push_str(&l);
                continue;
            }
        } else {
            in_conffiles = false;
        }
        out.push_str(line);
    }
    fs::write(&status_path, out)?;
    Ok(changed)
}
