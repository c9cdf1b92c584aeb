//! The error type of the libext2fs binding: one line naming the operation,
//! the object (guest path or inode), the filesystem, and why — with the
//! libext2fs error code and the block layer's own error when there is one.

use std::fmt;

/// Result alias of this crate.
pub type Result<T, E = Error> = std::result::Result<T, E>;

/// Broad classes of failure, for callers that pick advice or exit codes.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum ErrorKind {
    /// A name or inode that should exist does not.
    NotFound,
    /// The name to create already exists.
    AlreadyExists,
    /// A directory was needed (a path component, a parent).
    NotADirectory,
    /// A directory was given where it is not allowed.
    IsADirectory,
    /// A directory to remove or replace still has entries.
    DirectoryNotEmpty,
    /// A path component is a symbolic link; the caller must resolve it.
    SymlinkInPath,
    /// The caller passed something invalid (a bad name, mode, path).
    InvalidInput,
    /// We refuse on purpose (immutable inode, journal needs replay, a
    /// feature we do not write safely); the message says the way out.
    Refused,
    /// The filesystem is inconsistent (bad checksum, corrupt structure).
    Corrupt,
    /// No free blocks or inodes, or a directory/xattr area is full.
    NoSpace,
    /// A size limit was exceeded (file larger than the caller's limit).
    TooLarge,
    /// The block device failed; see [`Error::device_error`].
    Device,
    /// Any other libext2fs failure.
    Other,
}

/// An error from this crate. `Display` is a single line.
#[derive(Debug)]
pub struct Error {
    inner: Box<Inner>,
}

#[derive(Debug)]
struct Inner {
    kind: ErrorKind,
    op: String,
    fs: String,
    detail: String,
    code: Option<i64>,
    device: Option<rescue_io::Error>,
}

impl Error {
    /// A new error for `op` (e.g. "creating /etc/foo") on filesystem `fs`.
    pub(crate) fn new(
        kind: ErrorKind,
        op: impl Into<String>,
        fs: impl Into<String>,
        detail: impl Into<String>,
    ) -> Self {
        Error {
            inner: Box::new(Inner {
                kind,
                op: op.into(),
                fs: fs.into(),
                detail: detail.into(),
                code: None,
                device: None,
            }),
        }
    }

    pub(crate) fn with_code(mut self, code: i64) -> Self {
        self.inner.code = Some(code);
        self
    }

    pub(crate) fn with_device(mut self, device: Option<rescue_io::Error>) -> Self {
        if device.is_some() {
            self.inner.kind = ErrorKind::Device;
        }
        self.inner.device = device;
        self
    }

    /// The class of failure.
    pub fn kind(&self) -> ErrorKind {
        self.inner.kind
    }

    /// The libext2fs (com_err) error code, when libext2fs reported one.
    pub fn code(&self) -> Option<i64> {
        self.inner.code
    }

    /// The block layer's error behind this one, when the device failed.
    pub fn device_error(&self) -> Option<&rescue_io::Error> {
        self.inner.device.as_ref()
    }
}

impl fmt::Display for Error {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let i = &self.inner;
        write!(f, "{} on {}: {}", i.op, i.fs, i.detail)?;
        if let Some(dev) = &i.device {
            write!(f, ": {dev}")?;
        }
        Ok(())
    }
}

impl std::error::Error for Error {
    fn source(&self) -> Option<&(dyn std::error::Error + 'static)> {
        self.inner.device.as_ref().map(|e| e as _)
    }
}
