//! Opening a target for writing, with its undo journal underneath.
//!
//! The host file is opened read-write and locked, wrapped in an
//! [`UndoFile`] (which saves every byte before it is overwritten), and the
//! guest-visible device is built on top: the undo file itself for raw
//! images and block devices, a writable [`Qcow2Image`] over it for qcow2.
//!
//! This module must never hand out a writable device without an undo log
//! under it, and never leave an undo log behind for a session that could
//! not start.

use std::fmt;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use crate::{
    sniff, BlockWrite, Device, Format, OpenOptions, Qcow2Image, Qcow2Summary, RawFile, Result,
    SourceKind, UndoFile, UndoOptions, UndoSummary,
};

/// A target opened for writing, with what we learnt while opening it.
pub struct Writable {
    /// The writable disk as the guest sees it. Every write lands in the
    /// target only after its original bytes are in the undo log.
    pub device: Arc<dyn BlockWrite>,
    /// Detected or forced container format.
    pub format: Format,
    /// File or block device.
    pub source: SourceKind,
    /// The path that was opened.
    pub path: PathBuf,
    /// For qcow2: the chain of backing files, nearest first (never written).
    pub backing_chain: Vec<PathBuf>,
    /// For qcow2: header facts worth showing the user.
    pub qcow2: Option<Qcow2Summary>,
    /// The undo log of this session.
    pub undo_path: PathBuf,
    /// The run id of this session (part of the undo log's name).
    pub run_id: String,
    undo: Arc<UndoFile>,
}

impl fmt::Debug for Writable {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Writable")
            .field("format", &self.format)
            .field("source", &self.source)
            .field("path", &self.path)
            .field("undo_path", &self.undo_path)
            .finish_non_exhaustive()
    }
}

impl Writable {
    /// The same device, for readers (filesystem code reads and writes the
    /// same disk).
    pub fn readable(&self) -> Device {
        Arc::clone(&self.device) as Device
    }

    /// Modifications of the host file so far (writes, zeroings, growth).
    pub fn target_writes(&self) -> u64 {
        self.undo.target_writes()
    }

    /// Ends the session successfully: flushes the device (for qcow2, its
    /// L2 and refcount tables), syncs the host file, and appends the commit
    /// record to the undo log. Later writes through clones of `device` are
    /// refused.
    pub fn commit(self) -> Result<UndoSummary> {
        self.device.flush()?;
        self.undo.commit()
    }
}

/// Opens `path` for writing, sniffing raw vs. qcow2 unless forced, with an
/// undo log in `undo.dir`. qcow2 images that cannot be written safely
/// (internal snapshots, dirty, bitmaps, ...) are refused with the reason
/// and the way out; read-only files with advice on permissions.
pub fn open_writable(path: &Path, options: OpenOptions, undo: UndoOptions) -> Result<Writable> {
    let raw = RawFile::open_read_write(path)?;
    let source = raw.source_kind();
    let format = match options.format {
        Some(f) => f,
        None => sniff(&raw)?,
    };
    let undo_file = Arc::new(UndoFile::create(
        raw,
        path,
        format,
        format == Format::Qcow2,
        &undo,
    )?);
    let undo_path = undo_file.log_path().to_owned();
    let run_id = undo_file.run_id().to_owned();
    match format {
        Format::Raw => Ok(Writable {
            device: Arc::clone(&undo_file) as Arc<dyn BlockWrite>,
            format,
            source,
            path: path.to_owned(),
            backing_chain: Vec::new(),
            qcow2: None,
            undo_path,
            run_id,
            undo: undo_file,
        }),
        Format::Qcow2 => {
            let host = Arc::clone(&undo_file) as Arc<dyn BlockWrite>;
            let image = match Qcow2Image::open_writable(host, path) {
                Ok(image) => image,
                Err(e) => {
                    undo_file.discard_if_unused();
                    return Err(e);
                }
            };
            let summary = image.summary();
            let backing_chain = image.backing_chain();
            // Shared, not sent across threads: see `Device`.
            #[allow(clippy::arc_with_non_send_sync)]
            let device: Arc<dyn BlockWrite> = Arc::new(image);
            Ok(Writable {
                device,
                format,
                source,
                path: path.to_owned(),
                backing_chain,
                qcow2: Some(summary),
                undo_path,
                run_id,
                undo: undo_file,
            })
        }
    }
}
