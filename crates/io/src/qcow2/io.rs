//! The `Qcow2IoOps` through which `qcow2-rs` reads and writes the image file.
//!
//! Reads go to our own [`BlockRead`] device (a [`crate::RawFile`] doing
//! positional reads), so a read past the end of the file is an error of
//! kind [`ErrorKind::Truncated`] with its offset, never zeros with `Ok` as
//! `qcow2-rs`'s own I/O engines give on a truncated image.
//!
//! Writes exist only for an image opened writable, and go to its
//! [`BlockWrite`] host file (the undo journal). "Discards" of new clusters
//! become zeroing there (growing the file past its end), so every cluster
//! `qcow2-rs` allocates lies wholly inside the file.
//!
//! This module must never write without a writer, and never let `qcow2-rs`
//! rewrite the header: its serialiser writes a version-3 header without
//! our extensions or backing file name.

use std::cell::{Cell, RefCell};
use std::rc::Rc;
use std::sync::Arc;

use qcow2_rs::error::Qcow2Result;
use qcow2_rs::ops::Qcow2IoOps;

use crate::{BlockWrite, Device, Error, ErrorKind};

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
    /// Set while a device that failed is disposed of: its writes are
    /// dropped (see `write::dispose`).
    pub(crate) discard_writes: Cell<bool>,
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
    /// The host file, for an image opened writable.
    pub(crate) writer: Option<Arc<dyn BlockWrite>>,
    /// Size of the header cluster, which `qcow2-rs` must never write.
    pub(crate) header_cluster: u64,
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

impl ImageIo {
    /// Records our error for the caller and hands `qcow2-rs` its message.
    fn fail<T>(&self, offset: u64, len: usize, error: Error) -> Qcow2Result<T> {
        let message = error.to_string();
        *self.state.last_failure.borrow_mut() = Some(Failure {
            host_offset: offset,
            len,
            error,
        });
        Err(message.into())
    }

    fn writer(&self, offset: u64, len: usize) -> Result<&Arc<dyn BlockWrite>, Error> {
        let Some(writer) = &self.writer else {
            return Err(Error::new(ErrorKind::Unsupported, "writing qcow2 image")
                .with_path(self.source.describe())
                .with_detail("rescue-disk opened this qcow2 image read-only"));
        };
        if offset < self.header_cluster && len > 0 {
            return Err(Error::new(ErrorKind::Unsupported, "writing qcow2 image")
                .with_path(self.source.describe())
                .with_offset(offset)
                .with_detail("qcow2-rs tried to rewrite the image header (to grow the refcount table), which rescue-disk does not allow; nothing was written there; undo this session and write to a copy made with `qemu-img convert -O qcow2 -o cluster_size=65536 in.qcow2 out.qcow2`"));
        }
        Ok(writer)
    }
}

impl Qcow2IoOps for ImageIo {
    async fn read_to(&self, offset: u64, buf: &mut [u8]) -> Qcow2Result<usize> {
        match self.read(offset, buf) {
            Ok(()) => Ok(buf.len()),
            Err(error) => self.fail(offset, buf.len(), error),
        }
    }

    async fn write_from(&self, offset: u64, buf: &[u8]) -> Qcow2Result<()> {
        if self.state.discard_writes.get() {
            return Ok(());
        }
        let result = self
            .writer(offset, buf.len())
            .and_then(|w| w.write_all_at(offset, buf));
        match result {
            Ok(()) => Ok(()),
            Err(error) => self.fail(offset, buf.len(), error),
        }
    }

    async fn fallocate(&self, offset: u64, len: usize, _flags: u32) -> Qcow2Result<()> {
        if self.state.discard_writes.get() {
            return Ok(());
        }
        // Every use in qcow2-rs means "this new cluster must read as zeros".
        let result = self
            .writer(offset, len)
            .and_then(|w| w.write_zeroes_at(offset, len as u64));
        match result {
            Ok(()) => Ok(()),
            Err(error) => self.fail(offset, len, error),
        }
    }

    async fn fsync(&self, offset: u64, len: usize, _flags: u32) -> Qcow2Result<()> {
        if self.state.discard_writes.get() {
            return Ok(());
        }
        let result = match &self.writer {
            Some(w) => w.flush(),
            None => Err(Error::new(ErrorKind::Unsupported, "flushing qcow2 image")
                .with_path(self.source.describe())
                .with_detail("rescue-disk opened this qcow2 image read-only")),
        };
        match result {
            Ok(()) => Ok(()),
            Err(error) => self.fail(offset, len, error),
        }
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
