//! Raw image files and block devices: the bytes of the file are the disk.
//!
//! A read-only open uses `O_RDONLY` and can never write. A read-write open
//! (only [`crate::open_writable`] makes one, below its undo journal) writes
//! with `pwrite`, flushes with `fdatasync`, and lets a regular file grow
//! (qcow2 images allocate at their end); a block device never grows.

use std::fs::File;
use std::io::{Seek, SeekFrom};
use std::os::unix::fs::{FileExt, FileTypeExt, MetadataExt};
use std::path::Path;
use std::sync::atomic::{AtomicU64, Ordering};

use crate::{BlockRead, BlockWrite, Error, ErrorKind, Result, SourceKind};

/// `EPERM`: an immutable or append-only file, or a sealed one.
const EPERM: i32 = 1;
/// `EROFS`: a read-only filesystem.
const EROFS: i32 = 30;

/// A raw image file or a block device.
#[derive(Debug)]
pub struct RawFile {
    file: File,
    name: String,
    /// Current size: a writable regular file grows when written past its end.
    size_in_bytes: AtomicU64,
    source: SourceKind,
    writable: bool,
}

/// What identifies the host object behind a path, to tell later whether a
/// path still names the same file (undo logs record it).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct Identity {
    pub(crate) dev: u64,
    pub(crate) ino: u64,
    /// For block devices: the device number; 0 for files.
    pub(crate) rdev: u64,
}

impl RawFile {
    /// Opens `path` read-only. Directories, sockets and the like are refused.
    ///
    /// The size of a block device comes from the device itself (seeking to
    /// its end), not from `stat`, which reports 0 for devices.
    pub fn open_read_only(path: &Path) -> Result<Self> {
        Self::open_impl(path, false)
    }

    /// Opens `path` for reading and writing. A file or device the caller may
    /// not write (permissions, read-only filesystem, immutable attribute) is
    /// refused with [`ErrorKind::PermissionDenied`] and advice.
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
            .map_err(|e| {
                if writable {
                    open_for_writing_error(&name, e)
                } else {
                    Error::io("opening", e).with_path(name.clone())
                }
            })?;
        let size_in_bytes = match source {
            SourceKind::File => meta.len(),
            SourceKind::BlockDevice => (&file).seek(SeekFrom::End(0)).map_err(|e| {
                Error::io("reading the size of block device", e).with_path(name.clone())
            })?,
        };
        Ok(RawFile {
            file,
            name,
            size_in_bytes: AtomicU64::new(size_in_bytes),
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

    /// Whether this was opened for writing.
    pub fn is_writable(&self) -> bool {
        self.writable
    }

    /// Device and inode of the open file (not of whatever the path names now).
    pub(crate) fn identity(&self) -> Result<Identity> {
        let meta = self
            .file
            .metadata()
            .map_err(|e| Error::io("reading the metadata of", e).with_path(self.name.clone()))?;
        Ok(Identity {
            dev: meta.dev(),
            ino: meta.ino(),
            rdev: match self.source {
                SourceKind::File => 0,
                SourceKind::BlockDevice => meta.rdev(),
            },
        })
    }

    /// Takes an exclusive advisory lock (`flock`) so that two rescue-disk
    /// processes never write or undo the same target at once.
    pub(crate) fn lock_exclusive(&self) -> Result<()> {
        match self.file.try_lock() {
            Ok(()) => Ok(()),
            Err(std::fs::TryLockError::WouldBlock) => Err(Error::new(
                ErrorKind::Conflict,
                "locking",
            )
            .with_path(self.name.clone())
            .with_detail(
                "the target is locked by another write session or undo of rescue-disk; wait for it to finish",
            )),
            Err(std::fs::TryLockError::Error(e)) => {
                Err(Error::io("locking", e).with_path(self.name.clone()))
            }
        }
    }

    /// Refuses a target another program holds open through qemu's image
    /// locks (open file description locks on bytes 100..300, taken by
    /// qemu, qemu-img, qemu-nbd...): a VM running from a disk must not be
    /// written under its feet. Filesystems without such locks pass.
    pub(crate) fn check_not_in_use(&self) -> Result<()> {
        use nix::fcntl::{fcntl, FcntlArg};
        use nix::libc;
        let mut probe = libc::flock {
            l_type: libc::F_WRLCK as libc::c_short,
            l_whence: libc::SEEK_SET as libc::c_short,
            l_start: 100,
            l_len: 200,
            l_pid: 0,
        };
        match fcntl(&self.file, FcntlArg::F_OFD_GETLK(&mut probe)) {
            Ok(_) if probe.l_type == libc::F_UNLCK as libc::c_short => Ok(()),
            Ok(_) => Err(Error::new(ErrorKind::Conflict, "locking")
                .with_path(self.name.clone())
                .with_detail(
                    "the image is open in a qemu process (a VM running from it, qemu-nbd or qemu-img holds its lock); shut that down first, or work on a copy",
                )),
            // No OFD locks on this filesystem: nothing to learn.
            Err(_) => Ok(()),
        }
    }

    /// Grows a regular file to `len` bytes (the new bytes read as zeros).
    /// Never shrinks; a block device cannot grow.
    pub(crate) fn extend_to(&self, len: u64) -> Result<()> {
        self.check_writable()?;
        let size = self.size_in_bytes.load(Ordering::Acquire);
        if len <= size {
            return Ok(());
        }
        if self.source == SourceKind::BlockDevice {
            return Err(self.past_device_end(size, len));
        }
        crate::stats::record_write(0);
        self.file.set_len(len).map_err(|e| {
            Error::io("extending", e)
                .with_path(self.name.clone())
                .with_offset(len)
        })?;
        self.size_in_bytes.fetch_max(len, Ordering::AcqRel);
        Ok(())
    }

    /// Sets the size of a regular file to exactly `len` (undo truncates
    /// what a session appended).
    pub(crate) fn set_len(&self, len: u64) -> Result<()> {
        self.check_writable()?;
        if self.source == SourceKind::BlockDevice {
            let size = self.size_in_bytes.load(Ordering::Acquire);
            if size == len {
                return Ok(());
            }
            return Err(Error::new(ErrorKind::Unsupported, "resizing")
                .with_path(self.name.clone())
                .with_detail(format!(
                    "a block device cannot change size (it has {size} bytes, {len} wanted)"
                )));
        }
        crate::stats::record_write(0);
        self.file.set_len(len).map_err(|e| {
            Error::io("truncating", e)
                .with_path(self.name.clone())
                .with_offset(len)
        })?;
        self.size_in_bytes.store(len, Ordering::Release);
        Ok(())
    }

    /// `fsync`: data and metadata (size) durable.
    pub(crate) fn sync_all(&self) -> Result<()> {
        crate::stats::record_sync();
        self.file
            .sync_all()
            .map_err(|e| Error::io("flushing", e).with_path(self.name.clone()))
    }

    fn check_writable(&self) -> Result<()> {
        if self.writable {
            Ok(())
        } else {
            Err(Error::new(ErrorKind::Unsupported, "writing")
                .with_path(self.name.clone())
                .with_detail("the target was opened read-only"))
        }
    }

    fn past_device_end(&self, size: u64, end: u64) -> Error {
        Error::new(ErrorKind::Unsupported, "writing")
            .with_path(self.name.clone())
            .with_offset(end)
            .with_detail(format!(
                "the block device ends at {size:#x} and cannot grow; give the image more room (a larger device or logical volume)"
            ))
    }
}

/// The error for a target that cannot be opened for writing.
fn open_for_writing_error(name: &str, e: std::io::Error) -> Error {
    let detail = match (e.kind(), e.raw_os_error()) {
        (_, Some(EPERM)) => format!(
            "{name} is read-only (writing is not permitted: an immutable or append-only attribute? see `lsattr`); copy it or fix permissions (`chattr -i`) and try again"
        ),
        (_, Some(EROFS)) => format!(
            "{name} is read-only (it lies on a read-only filesystem); copy it to a writable filesystem or fix permissions (remount read-write) and try again"
        ),
        (std::io::ErrorKind::PermissionDenied, _) => format!(
            "{name} is read-only for this user (permission denied); copy it or fix permissions (e.g. `chmod u+w`), or run as a user who may write it"
        ),
        _ => return Error::io("opening for writing", e).with_path(name.to_owned()),
    };
    Error::io("opening for writing", e)
        .with_kind(ErrorKind::PermissionDenied)
        .with_path(name.to_owned())
        .with_detail(detail)
}

impl BlockRead for RawFile {
    fn size_in_bytes(&self) -> u64 {
        self.size_in_bytes.load(Ordering::Acquire)
    }

    fn read_exact_at(&self, start_byte: u64, dst: &mut [u8]) -> Result<()> {
        let size = self.size_in_bytes();
        let end = start_byte.checked_add(dst.len() as u64);
        if end.is_none_or(|end| end > size) {
            return Err(Error::new(ErrorKind::Truncated, "reading")
                .with_path(self.name.clone())
                .with_offset(start_byte)
                .with_detail(format!(
                    "{} bytes requested but the file ends at {size:#x}",
                    dst.len(),
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
        self.check_writable()?;
        let Some(end) = start_byte.checked_add(src.len() as u64) else {
            return Err(Error::new(ErrorKind::Unsupported, "writing")
                .with_path(self.name.clone())
                .with_offset(start_byte)
                .with_detail("the write reaches beyond 2^64 bytes"));
        };
        let size = self.size_in_bytes();
        if self.source == SourceKind::BlockDevice && end > size {
            return Err(self.past_device_end(size, end));
        }
        crate::stats::record_write(src.len());
        self.file.write_all_at(src, start_byte).map_err(|e| {
            Error::io("writing", e)
                .with_path(self.name.clone())
                .with_offset(start_byte)
        })?;
        self.size_in_bytes.fetch_max(end, Ordering::AcqRel);
        Ok(())
    }

    fn flush(&self) -> Result<()> {
        self.check_writable()?;
        crate::stats::record_sync();
        self.file
            .sync_data()
            .map_err(|e| Error::io("flushing", e).with_path(self.name.clone()))
    }
}
