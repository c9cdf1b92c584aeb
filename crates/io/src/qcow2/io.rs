//! The `Qcow2IoOps` through which `qcow2-rs` reads the image file.
//!
//! Reads go to our own [`BlockRead`] device (a [`crate::RawFile`] doing
//! positional reads), so a read past the end of the file is an error of
//! kind [`ErrorKind::Truncated`] with its offset, never zeros with `Ok` as
//! `qcow2-rs`'s own I/O engines give on a truncated image.
//!
//! This module must never write: every write-side operation fails.

use std::cell::{Cell, RefCell};
use std::rc::Rc;

use qcow2_rs::error::Qcow2Result;
use qcow2_rs::ops::Qcow2IoOps;

use crate::{Device, Error, ErrorKind};

/// What the last failed read was, kept so that the caller can report our
/// own rich error instead of `qcow2-rs`'s string.
#[derive(Debug)]
pub(crate) struct Failure {
    pub(crate) host_offset: u64,
    pub(crate) len: usize,
    pub(crate) error: Error,
}

/// How reads past the end of the file are treated: see [`ImageIo`].
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub(crate) enum PastEof {
    /// An error of kind [`ErrorKind::Truncated`]: data must exist.
    #[default]
    Error,
    /// Zeros for the last partial sector of a compressed cluster.
    CompressedTail,
    /// Zeros for the part of a metadata table beyond the end of the file.
    TableTail,
}

/// State shared between the image and the I/O object owned by `qcow2-rs`.
#[derive(Debug, Default)]
pub(crate) struct IoState {
    /// Set only around the reads that may legitimately pass the end of file.
    pub(crate) past_eof: Cell<PastEof>,
    pub(crate) last_failure: RefCell<Option<Failure>>,
}

impl IoState {
    pub(crate) fn take_failure(&self) -> Option<Failure> {
        self.last_failure.borrow_mut().take()
    }
}

/// Read-only I/O for `qcow2-rs` over one of our devices.
///
/// Two exceptions to "past EOF is an error", each enabled by the image
/// only around the read concerned ([`IoState::past_eof`]):
///
/// - The descriptor of a compressed cluster counts whole 512-byte sectors,
///   so its last sector may extend past the end of a file that is not
///   sector aligned; qemu reads that tail as zeros. Only a read that starts
///   inside the file and ends less than 512 bytes past it is zero-filled;
///   a compressed stream really cut by truncation then fails to inflate.
/// - `qcow2-rs` loads the L1 table rounded up to 512 bytes and the refcount
///   table in whole clusters, but qemu writes only the entries in use, so a
///   fresh image ends right after its L1 entries. The declared L1 entries
///   are checked to lie inside the file; the padding beyond is zeros, as
///   qemu reads it. The refcount table is never used for reading.
pub(crate) struct ImageIo {
    pub(crate) source: Device,
    pub(crate) state: Rc<IoState>,
}

impl ImageIo {
    fn read(&self, offset: u64, buf: &mut [u8]) -> crate::Result<()> {
        let file_size = self.source.size_in_bytes();
        let end = offset.checked_add(buf.len() as u64);
        let zero_tail = match self.state.past_eof.get() {
            PastEof::Error => false,
            PastEof::CompressedTail => {
                offset < file_size
                    && end.is_some_and(|end| end > file_size && end - file_size < 512)
            }
            PastEof::TableTail => end.is_some_and(|end| end > file_size),
        };
        if zero_tail {
            // OK to cast: the part inside the file is shorter than buf.
            let avail = file_size.saturating_sub(offset).min(buf.len() as u64) as usize;
            if avail > 0 {
                self.source.read_exact_at(offset, &mut buf[..avail])?;
            }
            buf[avail..].fill(0);
            return Ok(());
        }
        self.source.read_exact_at(offset, buf)
    }
}

fn read_only() -> qcow2_rs::error::Qcow2Error {
    "rescue-disk opened this qcow2 image read-only"
        .to_owned()
        .into()
}

impl Qcow2IoOps for ImageIo {
    async fn read_to(&self, offset: u64, buf: &mut [u8]) -> Qcow2Result<usize> {
        match self.read(offset, buf) {
            Ok(()) => Ok(buf.len()),
            Err(error) => {
                let message = error.to_string();
                *self.state.last_failure.borrow_mut() = Some(Failure {
                    host_offset: offset,
                    len: buf.len(),
                    error,
                });
                Err(message.into())
            }
        }
    }

    async fn write_from(&self, _offset: u64, _buf: &[u8]) -> Qcow2Result<()> {
        Err(read_only())
    }

    async fn fallocate(&self, _offset: u64, _len: usize, _flags: u32) -> Qcow2Result<()> {
        Err(read_only())
    }

    async fn fsync(&self, _offset: u64, _len: usize, _flags: u32) -> Qcow2Result<()> {
        Err(read_only())
    }
}

impl Failure {
    /// Our error for a failed read of `what` on behalf of guest offset
    /// `guest_offset` of image `name`.
    pub(crate) fn into_error(
        self,
        what: &str,
        name: &str,
        guest_offset: u64,
        file_size: u64,
    ) -> Error {
        if self.error.kind() == ErrorKind::Truncated {
            Error::new(ErrorKind::Truncated, format!("reading qcow2 {what}"))
                .with_path(name.to_owned())
                .with_offset(self.host_offset)
                .with_detail(format!(
                    "{} bytes for guest offset {guest_offset:#x} lie beyond the end of the file ({file_size:#x}): the image is truncated; recover the complete file, or salvage what remains with `qemu-img convert`",
                    self.len
                ))
        } else {
            self.error
        }
    }
}
