//! The block layer of rescue-disk.
//!
//! Everything rescue-disk knows about a disk comes through [`BlockRead`]: a
//! positional, exact-length read of a device of known size. Raw image files,
//! block devices, qcow2 images (through `qcow2-rs`, behind our own header
//! validation) and slices of any of them (partitions, LVM extents) all
//! implement it, so the layers above never care where bytes come from.
//!
//! Writing is a separate capability ([`BlockWrite`]) that a read-only open
//! never yields: `inspect` and `check` cannot write even by mistake. Only
//! [`open_writable`] yields one, and every byte it lets a caller overwrite
//! is first saved in an undo log ([`undo`] gives the target back).
//!
//! This crate must never interpret partition tables or filesystems, and must
//! never trust a size or offset it did not check against the real file size.

mod error;
mod mapped;
mod qcow2;
mod raw;
mod slice;
pub mod stats;
pub mod time;
mod undo;
mod writable;

use std::fmt;
use std::path::{Path, PathBuf};
use std::sync::Arc;

pub use error::{Error, ErrorKind, Result};
pub use mapped::{Extent, MappedDevice};
#[doc(hidden)]
pub use qcow2::fuzz_qcow2_header;
pub use qcow2::Qcow2Image;
pub use raw::RawFile;
pub use slice::Slice;
#[doc(hidden)]
pub use undo::fuzz_undo_log;
pub use undo::{
    default_undo_dir, find_undo_logs, undo, CommitCheck, UndoFile, UndoLogInfo, UndoLogState,
    UndoMode, UndoOptions, UndoReport, UndoSummary, FAULT_ENV, UNDO_DIR_ENV, UNDO_EXTENSION,
};
pub use writable::{open_writable, Writable};

/// Read capability of a disk-like object.
///
/// Implementations read exactly `dst.len()` bytes or fail; a short read is an
/// error of kind [`ErrorKind::Truncated`], never zero-filled data.
pub trait BlockRead: fmt::Debug {
    /// Size of the device in bytes, as seen by the guest.
    fn size_in_bytes(&self) -> u64;

    /// Reads exactly `dst.len()` bytes starting at `start_byte`.
    fn read_exact_at(&self, start_byte: u64, dst: &mut [u8]) -> Result<()>;

    /// A short human description for messages, e.g. `disk.qcow2 (qcow2)`.
    fn describe(&self) -> String;
}

/// Write capability. Only [`open_writable`] hands one out.
pub trait BlockWrite: BlockRead {
    /// Writes all of `src` at `start_byte`.
    fn write_all_at(&self, start_byte: u64, src: &[u8]) -> Result<()>;
    /// Makes previous writes durable (for qcow2: metadata included).
    fn flush(&self) -> Result<()>;
    /// Writes `len` zero bytes at `start_byte`. Host files may grow instead
    /// of writing zeros past their end.
    fn write_zeroes_at(&self, start_byte: u64, len: u64) -> Result<()> {
        const CHUNK: u64 = 1 << 20;
        let zeros = vec![0u8; len.min(CHUNK) as usize];
        let mut done = 0;
        while done < len {
            let n = (len - done).min(CHUNK);
            let at = start_byte.checked_add(done).ok_or_else(|| {
                Error::new(ErrorKind::Unsupported, "writing zeros")
                    .with_path(self.describe())
                    .with_detail("the range reaches beyond 2^64 bytes")
            })?;
            self.write_all_at(at, &zeros[..n as usize])?;
            done += n;
        }
        Ok(())
    }
}

/// A shared, type-erased writable device.
pub type WritableDevice = Arc<dyn BlockWrite>;

/// A shared, type-erased readable device.
pub type Device = Arc<dyn BlockRead>;

/// Container format of an image file.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Format {
    /// Bytes of the file are the bytes of the disk (also block devices).
    Raw,
    /// QEMU copy-on-write v2/v3.
    Qcow2,
}

impl Format {
    /// Lower-case name as used on the command line and in JSON.
    pub fn name(self) -> &'static str {
        match self {
            Format::Raw => "raw",
            Format::Qcow2 => "qcow2",
        }
    }
}

impl fmt::Display for Format {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.name())
    }
}

/// What kind of host object a target is.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum SourceKind {
    /// A regular file.
    File,
    /// A block device such as `/dev/sdb`.
    BlockDevice,
}

/// An opened target with what we learnt while opening it.
#[derive(Debug, Clone)]
pub struct Opened {
    /// The readable disk as the guest sees it.
    pub device: Device,
    /// Detected or forced container format.
    pub format: Format,
    /// File or block device.
    pub source: SourceKind,
    /// The path that was opened.
    pub path: PathBuf,
    /// For qcow2: the chain of backing files, nearest first.
    pub backing_chain: Vec<PathBuf>,
    /// For qcow2: header facts worth showing the user.
    pub qcow2: Option<Qcow2Summary>,
}

/// Facts from a qcow2 header that matter to an operator.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Qcow2Summary {
    /// 2 or 3.
    pub version: u32,
    /// Cluster size in bytes.
    pub cluster_size_in_bytes: u64,
    /// The image holds internal snapshots (writes would be refused).
    pub has_internal_snapshots: bool,
    /// The dirty bit is set (lazy refcounts were not flushed).
    pub is_dirty: bool,
}

/// Options for opening a target.
#[derive(Clone, Copy, Debug, Default)]
pub struct OpenOptions {
    /// Force a format instead of sniffing it from the magic bytes.
    pub format: Option<Format>,
}

/// The first four bytes of every qcow image.
pub const QCOW_MAGIC: [u8; 4] = *b"QFI\xfb";

/// Opens `path` read-only, sniffing raw vs. qcow2 unless forced.
pub fn open(path: &Path, options: OpenOptions) -> Result<Opened> {
    let raw = RawFile::open_read_only(path)?;
    let source = raw.source_kind();
    let format = match options.format {
        Some(f) => f,
        None => sniff(&raw)?,
    };
    match format {
        Format::Raw => Ok(Opened {
            device: Arc::new(raw),
            format,
            source,
            path: path.to_owned(),
            backing_chain: Vec::new(),
            qcow2: None,
        }),
        Format::Qcow2 => {
            let image = Qcow2Image::open(raw, path)?;
            let backing_chain = image.backing_chain();
            let summary = image.summary();
            // Devices are shared, not sent across threads (`Device` carries
            // no `Send`/`Sync` bound); a qcow2 image is `!Sync` inside.
            #[allow(clippy::arc_with_non_send_sync)]
            let device: Device = Arc::new(image);
            Ok(Opened {
                device,
                format,
                source,
                path: path.to_owned(),
                backing_chain,
                qcow2: Some(summary),
            })
        }
    }
}

/// Decides raw vs. qcow2 from the first bytes. An empty file is an error:
/// there is no disk to inspect.
pub fn sniff(dev: &dyn BlockRead) -> Result<Format> {
    let size = dev.size_in_bytes();
    if size == 0 {
        return Err(Error::new(ErrorKind::Empty, "sniffing image format")
            .with_detail("the file is empty (0 bytes): there is no disk in it")
            .with_path(dev.describe()));
    }
    if size < 4 {
        return Ok(Format::Raw);
    }
    let mut magic = [0u8; 4];
    dev.read_exact_at(0, &mut magic)?;
    Ok(if magic == QCOW_MAGIC {
        Format::Qcow2
    } else {
        Format::Raw
    })
}
