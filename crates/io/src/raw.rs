//! Raw image files and block devices: the bytes of the file are the disk.

use std::fs::File;
use std::io::{Seek, SeekFrom};
use std::os::unix::fs::{FileExt, FileTypeExt};
use std::path::Path;

use crate::{BlockRead, BlockWrite, Error, ErrorKind, Result, SourceKind};

/// A raw image file or a block device.
#[derive(Debug)]
pub struct RawFile {
    file: File,
    name: String,
    size_in_bytes: u64,
    source: SourceKind,
    writable: bool,
}

impl RawFile {
    /// Opens `path` read-only. Directories, sockets and the like are refused.
    ///
    /// The size of a block device comes from the device itself (seeking to
    /// its end), not from `stat`, which reports 0 for devices.
    pub fn open_read_only(path: &Path) -> Result<Self> {
        Self::open_impl(path, false)
    }

    /// Opens `path` for reading and writing.
    pub fn open_read_write(path: &Path) -> Result<Self> {
        Self::open_impl(path, true)
    }

    fn open_impl(path: &Path, writable: bool) -> Result<Self> {
        let name = path.display().to_string();
        let meta = std::fs::metadata(path).map_err(|e| {
            let err = Error::io("opening", e).with_path(name.clone());
            match err.kind() {
                ErrorKind::NotFound => err.with_detail("no such file or device; check the path"),
                _ => err,
            }
        })?;
        let ft = meta.file_type();
        let source = if ft.is_file() {
            SourceKind::File
        } else if ft.is_block_device() {
            SourceKind::BlockDevice
        } else if ft.is_dir() {
            return Err(Error::new(ErrorKind::NotADisk, "opening")
                .with_path(name)
                .with_detail("this is a directory, not a disk image or block device"));
        } else {
            return Err(Error::new(ErrorKind::NotADisk, "opening")
                .with_path(name)
                .with_detail("not a regular file or block device"));
        };
        let file = std::fs::OpenOptions::new()
            .read(true)
            .write(writable)
            .open(path)
            .map_err(|e| Error::io("opening", e).with_path(name.clone()))?;
        let size_in_bytes = match source {
            SourceKind::File => meta.len(),
            SourceKind::BlockDevice => (&file).seek(SeekFrom::End(0)).map_err(|e| {
                Error::io("reading the size of block device", e).with_path(name.clone())
            })?,
        };
        Ok(RawFile {
            file,
            name,
            size_in_bytes,
            source,
            writable,
        })
    }

    /// File or block device.
    pub fn source_kind(&self) -> SourceKind {
        self.source
    }

    /// The path as given, for messages.
    pub fn name(&self) -> &str {
        &self.name
    }
}

impl BlockRead for RawFile {
    fn size_in_bytes(&self) -> u64 {
        self.size_in_bytes
    }

    fn read_exact_at(&self, start_byte: u64, dst: &mut [u8]) -> Result<()> {
        let end = start_byte.checked_add(dst.len() as u64);
        if end.is_none_or(|end| end > self.size_in_bytes) {
            return Err(Error::new(ErrorKind::Truncated, "reading")
                .with_path(self.name.clone())
                .with_offset(start_byte)
                .with_detail(format!(
                    "{} bytes requested but the file ends at {:#x}",
                    dst.len(),
                    self.size_in_bytes
                )));
        }
        crate::stats::record_read(dst.len());
        self.file.read_exact_at(dst, start_byte).map_err(|e| {
            Error::io("reading", e)
                .with_path(self.name.clone())
                .with_offset(start_byte)
        })
    }

    fn describe(&self) -> String {
        self.name.clone()
    }
}

impl BlockWrite for RawFile {
    fn write_all_at(&self, start_byte: u64, src: &[u8]) -> Result<()> {
        if !self.writable {
            return Err(Error::new(ErrorKind::Unsupported, "writing")
                .with_path(self.name.clone())
                .with_detail("the target was opened read-only"));
        }
        self.file.write_all_at(src, start_byte).map_err(|e| {
            Error::io("writing", e)
                .with_path(self.name.clone())
                .with_offset(start_byte)
        })
    }

    fn flush(&self) -> Result<()> {
        self.file
            .sync_data()
            .map_err(|e| Error::io("flushing", e).with_path(self.name.clone()))
    }
}
