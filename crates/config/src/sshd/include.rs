//! `Include` without I/O: the caller supplies file contents and glob
//! expansion through [`IncludeSource`]; the analysis resolves patterns like
//! sshd (relative to `/etc/ssh`, results sorted like glob(3)), keeps sshd's
//! include cache semantics and its recursion limit, and adds its own caps
//! on size and work so a hostile guest cannot exhaust memory or time.
//!
//! This file must never touch the host filesystem; [`MemorySource`] is an
//! in-memory implementation for tests and for callers that pre-read files.

use std::collections::BTreeMap;

use super::matching::glob_component_match;

/// Where included files come from. Paths are guest paths (absolute, as
/// sshd would see them); the implementation maps them into the guest.
pub trait IncludeSource {
    /// The contents of `path`, or why it cannot be read (sshd then exits
    /// with `perror(path)`, e.g. "No such file or directory").
    fn read(&self, path: &str) -> Result<Vec<u8>, String>;
    /// The paths matching the glob(3) `pattern` (absolute). Order does not
    /// matter: the analysis sorts them as glob(3) does.
    fn glob(&self, pattern: &str) -> Vec<String>;
}

/// Caps that keep the analysis bounded on hostile input (a 2 GiB
/// sshd_config, include bombs). sshd has no such caps (only its recursion
/// depth); when one is hit the analysis says so (`complete == false`) and
/// the affected part is not analysed. Memory use stays within a few hundred
/// bytes per processed line.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Limits {
    /// Largest single file analysed (the main file included).
    pub max_file_bytes: usize,
    /// Total bytes read through `Include`s.
    pub max_total_bytes: usize,
    /// Number of distinct files read.
    pub max_files: usize,
    /// Lines processed in total, counting re-parses of cached includes.
    pub max_lines: usize,
}

impl Default for Limits {
    fn default() -> Self {
        Limits {
            max_file_bytes: 16 << 20,
            max_total_bytes: 64 << 20,
            max_files: 1024,
            max_lines: 200_000,
        }
    }
}

/// sshd's `SSHDIR`, against which relative `Include` paths resolve.
pub const SSHDIR: &str = "/etc/ssh";

/// sshd's recursion limit for `Include` (`SERVCONF_MAX_DEPTH`).
pub const MAX_DEPTH: usize = 16;

/// The pattern sshd globs for an `Include` argument: absolute and `~`
/// paths as written, anything else under `/etc/ssh/`.
pub fn include_pattern(arg: &str) -> String {
    if arg.starts_with('/') || arg.starts_with('~') {
        arg.to_owned()
    } else {
        format!("{SSHDIR}/{arg}")
    }
}

/// An in-memory guest filesystem for [`IncludeSource`].
#[derive(Debug, Clone, Default)]
pub struct MemorySource {
    files: BTreeMap<String, Vec<u8>>,
}

impl MemorySource {
    /// An empty source.
    pub fn new() -> Self {
        Self::default()
    }

    /// Adds (or replaces) the file at absolute `path`.
    pub fn insert(&mut self, path: &str, contents: impl Into<Vec<u8>>) {
        self.files.insert(path.to_owned(), contents.into());
    }
}

impl IncludeSource for MemorySource {
    fn read(&self, path: &str) -> Result<Vec<u8>, String> {
        self.files
            .get(path)
            .cloned()
            .ok_or_else(|| "No such file or directory".to_owned())
    }

    fn glob(&self, pattern: &str) -> Vec<String> {
        let pcomps: Vec<&str> = pattern.split('/').collect();
        self.files
            .keys()
            .filter(|path| {
                let comps: Vec<&str> = path.split('/').collect();
                comps.len() == pcomps.len()
                    && comps
                        .iter()
                        .zip(&pcomps)
                        .all(|(c, p)| glob_component_match(p.as_bytes(), c.as_bytes()))
            })
            .cloned()
            .collect()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn patterns_resolve_like_sshd() {
        assert_eq!(
            include_pattern("sshd_config.d/*.conf"),
            "/etc/ssh/sshd_config.d/*.conf"
        );
        assert_eq!(include_pattern("/etc/x"), "/etc/x");
        assert_eq!(include_pattern("~/x"), "~/x");
    }

    #[test]
    fn memory_source_globs() {
        let mut m = MemorySource::new();
        m.insert("/etc/ssh/sshd_config.d/b.conf", "x");
        m.insert("/etc/ssh/sshd_config.d/a.conf", "y");
        m.insert("/etc/ssh/sshd_config.d/.h.conf", "z");
        let mut g = m.glob("/etc/ssh/sshd_config.d/*.conf");
        g.sort();
        assert_eq!(
            g,
            [
                "/etc/ssh/sshd_config.d/a.conf",
                "/etc/ssh/sshd_config.d/b.conf"
            ]
        );
        assert!(m.read("/nope").is_err());
    }
}
