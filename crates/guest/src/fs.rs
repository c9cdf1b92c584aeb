//! The read-only filesystem abstraction behind the guest view.
//!
//! A [`GuestFs`] is one filesystem (one volume). Its methods take paths
//! relative to that filesystem's root and never follow symlinks themselves:
//! [`crate::Guest`] resolves symlinks across the mount table, inside the
//! guest. Implementations must check sizes before allocating, bound every
//! listing, and never write.

use std::panic::{catch_unwind, AssertUnwindSafe};

use rescue_io::{Error, ErrorKind, Result};
use serde::Serialize;

use crate::path::GuestPath;

/// Largest configuration file read into memory (fstab, grub.cfg, …).
pub const MAX_CONFIG_FILE_BYTES: u64 = 16 * 1024 * 1024;
/// Largest directory listing returned.
pub const MAX_DIR_ENTRIES: usize = 100_000;
/// Symlinks followed while resolving one path (Linux's limit).
pub const MAX_SYMLINK_HOPS: usize = 40;
/// Longest symlink target read (Linux's PATH_MAX).
pub const MAX_LINK_TARGET_BYTES: u64 = 4096;

/// The type of a file.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, schemars::JsonSchema)]
#[serde(rename_all = "snake_case")]
pub enum FileType {
    /// Regular file.
    Regular,
    /// Directory.
    Directory,
    /// Symbolic link.
    Symlink,
    /// Character device.
    CharDevice,
    /// Block device.
    BlockDevice,
    /// Named pipe.
    Fifo,
    /// Unix socket.
    Socket,
}

/// What `lstat` says about a file.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, schemars::JsonSchema)]
pub struct Metadata {
    /// File type.
    pub file_type: FileType,
    /// Permission bits including setuid/setgid/sticky (`0o7777` mask).
    pub mode: u32,
    /// Owner.
    pub uid: u32,
    /// Group.
    pub gid: u32,
    /// Size as recorded in the inode or directory entry (may be a lie on a
    /// corrupt filesystem: check it before allocating).
    pub size_in_bytes: u64,
    /// Modification time in seconds since the epoch, when known.
    pub modified_unix_seconds: Option<i64>,
}

impl Metadata {
    /// True for directories.
    pub fn is_dir(&self) -> bool {
        self.file_type == FileType::Directory
    }

    /// True for regular files.
    pub fn is_file(&self) -> bool {
        self.file_type == FileType::Regular
    }

    /// True for symlinks.
    pub fn is_symlink(&self) -> bool {
        self.file_type == FileType::Symlink
    }
}

/// One directory entry (`.` and `..` are never returned).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DirEntry {
    /// The name as stored.
    pub name: Vec<u8>,
    /// The type from the directory entry, when recorded.
    pub file_type: Option<FileType>,
}

impl DirEntry {
    /// The name as lossy UTF-8.
    pub fn name_lossy(&self) -> String {
        String::from_utf8_lossy(&self.name).into_owned()
    }
}

/// A read-only filesystem of one guest volume.
///
/// Paths are relative to this filesystem's root and must contain no
/// symlinks except possibly in the final component, which is never followed.
pub trait GuestFs: std::fmt::Debug {
    /// The filesystem type as blkid names it (`ext4`, `vfat`, …).
    fn fs_type(&self) -> &str;

    /// The id of the volume this filesystem is on (`p2`, `lvm/vg0/root`).
    fn volume_id(&self) -> &str;

    /// Metadata of `path` without following a final symlink.
    fn symlink_metadata(&self, path: &GuestPath) -> Result<Metadata>;

    /// The entries of directory `path`; an error when there are more than
    /// `max_entries`.
    fn read_dir(&self, path: &GuestPath, max_entries: usize) -> Result<Vec<DirEntry>>;

    /// The target of symlink `path` (at most [`MAX_LINK_TARGET_BYTES`]).
    fn read_link(&self, path: &GuestPath) -> Result<Vec<u8>>;

    /// The contents of regular file `path`; an error naming the claimed size
    /// when it is larger than `max_bytes`. Nothing larger is ever allocated.
    fn read_file(&self, path: &GuestPath, max_bytes: u64) -> Result<Vec<u8>>;
}

/// The error for a file whose recorded size is above the cap.
pub(crate) fn too_large(
    volume: &str,
    path: &GuestPath,
    size_in_bytes: u64,
    max_bytes: u64,
    fs_type: &str,
) -> Error {
    let advice = if fs_type.starts_with("ext") {
        "the filesystem is probably corrupt: run e2fsck"
    } else {
        "the filesystem is probably corrupt: run fsck"
    };
    Error::new(ErrorKind::Corrupt, "reading")
        .with_path(format!("{path} on {volume}"))
        .with_detail(format!(
            "the inode claims {size_in_bytes} bytes, more than the {max_bytes}-byte limit for files read into memory; {advice}"
        ))
}

/// Runs a call into a filesystem library, turning a panic on hostile data
/// into a corruption error. The libraries promise not to panic; this keeps a
/// broken promise from taking the whole inspection down.
pub(crate) fn guarded<T>(op: &str, volume: &str, f: impl FnOnce() -> Result<T>) -> Result<T> {
    match catch_unwind(AssertUnwindSafe(f)) {
        Ok(r) => r,
        Err(_) => Err(Error::corrupt(
            op.to_owned(),
            "the filesystem library failed on malformed data; run fsck",
        )
        .with_path(volume.to_owned())),
    }
}
