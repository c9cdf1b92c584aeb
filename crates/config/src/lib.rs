//! Lossless parsers for guest configuration files.
//!
//! Every parser here takes bytes and returns a document plus diagnostics; it
//! never fails and never does I/O. Unchanged documents render back
//! byte-identically, so later edits touch only the spans they change.
//!
//! The bytes come from a guest disk and are hostile: parsers must never
//! panic, never loop without consuming input, and never allocate more than a
//! small multiple of their input. Each has a `fuzz_<name>` entry point that a
//! mutation test drives.

pub mod accounts;
pub mod authorized_keys;
pub mod bls;
pub mod default_grub;
pub mod firewall;
pub mod fstab;
pub mod grub_cfg;
pub mod grubenv;
pub mod os_release;
pub mod shell;
pub mod sshd;
pub mod tcp_wrappers;
mod text;
pub mod version;

use serde::Serialize;

/// A problem found while parsing, tied to a 1-based line number.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, schemars::JsonSchema)]
pub struct Diagnostic {
    /// 1-based line number in the parsed file (0 when it concerns the whole file).
    pub line: usize,
    /// What is wrong, in one lowercase line.
    pub message: String,
}

impl Diagnostic {
    pub(crate) fn new(line: usize, message: impl Into<String>) -> Self {
        Diagnostic {
            line,
            message: message.into(),
        }
    }
}

/// A byte range `start..end` in the parsed file.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, schemars::JsonSchema)]
pub struct Span {
    /// Offset of the first byte.
    pub start: usize,
    /// Offset one past the last byte.
    pub end: usize,
}

impl Span {
    /// The span `start..end`.
    pub fn new(start: usize, end: usize) -> Self {
        Span { start, end }
    }

    /// Length in bytes.
    pub fn len(&self) -> usize {
        self.end.saturating_sub(self.start)
    }

    /// True for an empty span.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// The bytes of this span in `source`, or an empty slice if it does not fit.
    pub fn slice<'a>(&self, source: &'a [u8]) -> &'a [u8] {
        source.get(self.start..self.end).unwrap_or(&[])
    }
}
