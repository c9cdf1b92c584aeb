//! The block layer's error type: a kind, what we were doing, where, and why.

use std::fmt;

/// Result alias of this crate.
pub type Result<T, E = Error> = std::result::Result<T, E>;

/// Broad classes of failure. Callers decide exit codes and advice from these.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum ErrorKind {
    /// The path does not exist.
    NotFound,
    /// Permission denied by the host.
    PermissionDenied,
    /// The target is a directory or another object that is not a disk.
    NotADisk,
    /// The target has no bytes.
    Empty,
    /// A read went past the end of the backing file: the image is truncated.
    Truncated,
    /// On-disk structure is inconsistent or out of range.
    Corrupt,
    /// Valid, but uses something we deliberately do not support.
    Unsupported,
    /// Any other host I/O failure.
    Io,
    /// The target is not in the state the operation expects: it changed
    /// since a write session (e.g. the VM booted from it), or it is not the
    /// file an undo log was recorded for.
    Conflict,
}

/// An error with enough context to act on: operation, path, byte offset.
#[derive(Debug)]
pub struct Error {
    kind: ErrorKind,
    op: String,
    path: Option<String>,
    offset: Option<u64>,
    detail: Option<String>,
    source: Option<std::io::Error>,
}

impl Error {
    /// A new error for operation `op` (a lowercase gerund phrase such as
    /// "reading qcow2 header").
    pub fn new(kind: ErrorKind, op: impl Into<String>) -> Self {
        Error {
            kind,
            op: op.into(),
            path: None,
            offset: None,
            detail: None,
            source: None,
        }
    }

    /// Wraps a host I/O error, mapping its kind.
    pub fn io(op: impl Into<String>, source: std::io::Error) -> Self {
        let kind = match source.kind() {
            std::io::ErrorKind::NotFound => ErrorKind::NotFound,
            std::io::ErrorKind::PermissionDenied => ErrorKind::PermissionDenied,
            std::io::ErrorKind::IsADirectory => ErrorKind::NotADisk,
            std::io::ErrorKind::UnexpectedEof => ErrorKind::Truncated,
            _ => ErrorKind::Io,
        };
        Error {
            kind,
            op: op.into(),
            path: None,
            offset: None,
            detail: None,
            source: Some(source),
        }
    }

    /// A corruption error with a detail message.
    pub fn corrupt(op: impl Into<String>, detail: impl Into<String>) -> Self {
        Error::new(ErrorKind::Corrupt, op).with_detail(detail)
    }

    /// An unsupported-feature error with a detail message.
    pub fn unsupported(op: impl Into<String>, detail: impl Into<String>) -> Self {
        Error::new(ErrorKind::Unsupported, op).with_detail(detail)
    }

    /// Attaches the path (or description) of the object concerned.
    pub fn with_path(mut self, path: impl Into<String>) -> Self {
        self.path = Some(path.into());
        self
    }

    /// Attaches the byte offset concerned.
    pub fn with_offset(mut self, offset: u64) -> Self {
        self.offset = Some(offset);
        self
    }

    /// Attaches a human explanation, ideally with what to do next.
    pub fn with_detail(mut self, detail: impl Into<String>) -> Self {
        self.detail = Some(detail.into());
        self
    }

    /// Reclassifies the error (e.g. `EROFS` on open is a permission problem
    /// for the user, not an I/O failure).
    pub(crate) fn with_kind(mut self, kind: ErrorKind) -> Self {
        self.kind = kind;
        self
    }

    /// The class of failure.
    pub fn kind(&self) -> ErrorKind {
        self.kind
    }

    /// The byte offset concerned, if any.
    pub fn offset(&self) -> Option<u64> {
        self.offset
    }

    /// The human explanation, if any.
    pub fn detail(&self) -> Option<&str> {
        self.detail.as_deref()
    }
}

impl fmt::Display for Error {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.op)?;
        if let Some(path) = &self.path {
            write!(f, " {path}")?;
        }
        if let Some(offset) = self.offset {
            write!(f, " at offset {offset:#x}")?;
        }
        match (&self.detail, &self.source) {
            (Some(d), Some(s)) => write!(f, ": {d}: {s}"),
            (Some(d), None) => write!(f, ": {d}"),
            (None, Some(s)) => write!(f, ": {s}"),
            (None, None) => Ok(()),
        }
    }
}

impl std::error::Error for Error {
    fn source(&self) -> Option<&(dyn std::error::Error + 'static)> {
        self.source.as_ref().map(|e| e as _)
    }
}
