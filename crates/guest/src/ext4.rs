//! ext2/3/4 volumes through `ext4-view`, read-only.
//!
//! `ext4-view` allocates a file's whole `i_size` when reading it (and a
//! symlink's, when its target is stored in blocks), so every read here checks
//! the inode's size against a cap first: a corrupt `i_size` becomes an error
//! naming the path and the claimed size, never an allocation. A filesystem
//! whose journal needs replaying and that `ext4-view` cannot read without it
//! is refused with a message naming the volume. Nothing here writes.

use ext4_view::{Ext4, Ext4Error, Ext4Read};
use rescue_io::{Device, Error, ErrorKind, Result};

use crate::ext4_raw;
use crate::fs::{guarded, too_large, DirEntry, FileType, GuestFs, Metadata, MAX_LINK_TARGET_BYTES};
use crate::path::GuestPath;

/// Byte offset of the primary superblock.
const SUPERBLOCK_START_BYTE: u64 = 1024;
/// Offset of `s_feature_incompat` inside the superblock.
const S_FEATURE_INCOMPAT: u64 = 0x60;
/// `INCOMPAT_RECOVERY`: the journal must be replayed.
const INCOMPAT_RECOVERY: u32 = 0x4;
/// `INCOMPAT_64BIT`: block counts have a high half.
const INCOMPAT_64BIT: u32 = 0x80;
/// Block groups accepted: `ext4-view` reserves memory for every group
/// descriptor up front, so a forged count must not reach it. 2^20 groups is
/// 128 TiB with 4 KiB blocks.
const MAX_BLOCK_GROUPS: u64 = 1 << 20;

/// Adapts a block-layer device to `ext4-view`'s reader trait.
struct DeviceReader {
    device: Device,
}

impl Ext4Read for DeviceReader {
    fn read(
        &mut self,
        start_byte: u64,
        dst: &mut [u8],
    ) -> std::result::Result<(), Box<dyn std::error::Error + Send + Sync>> {
        self.device
            .read_exact_at(start_byte, dst)
            .map_err(|e| Box::new(e) as _)
    }
}

/// An opened ext2/3/4 filesystem.
pub struct Ext4Fs {
    fs: Ext4,
    device: Device,
    volume_id: String,
    fs_type: String,
}

impl std::fmt::Debug for Ext4Fs {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Ext4Fs")
            .field("volume_id", &self.volume_id)
            .field("fs_type", &self.fs_type)
            .finish()
    }
}

impl Ext4Fs {
    /// Opens the filesystem on `device` (the bytes of volume `volume_id`).
    /// `fs_type` is the probed name (`ext2`, `ext3`, `ext4`) used in messages.
    pub fn open(volume_id: &str, fs_type: &str, device: Device) -> Result<Ext4Fs> {
        check_geometry(volume_id, &device)?;
        let needs_recovery = read_incompat(&device).is_some_and(|f| f & INCOMPAT_RECOVERY != 0);
        let reader = DeviceReader {
            device: device.clone(),
        };
        let loaded = guarded("opening ext4 filesystem", volume_id, || {
            Ext4::load(Box::new(reader)).map_err(|e| map_load_error(e, volume_id, needs_recovery))
        })?;
        Ok(Ext4Fs {
            fs: loaded,
            device,
            volume_id: volume_id.to_owned(),
            fs_type: fs_type.to_owned(),
        })
    }

    fn ext_path<'a>(&self, path: &'a GuestPath) -> Result<ext4_view::Path<'a>> {
        ext4_view::Path::try_from(path.as_bytes()).map_err(|e| {
            Error::new(ErrorKind::NotFound, "looking up")
                .with_path(format!("{path} on {}", self.volume_id))
                .with_detail(format!("not a valid ext4 path: {e}"))
        })
    }

    fn err(&self, e: Ext4Error, op: &str, path: &GuestPath) -> Error {
        let what = format!("{path} on {}", self.volume_id);
        if matches!(e, Ext4Error::Corrupt(_)) {
            // ext4-view refuses an inode whose size needs more than 2^32
            // blocks without saying which size; find and name it.
            if let Some((inode_path, size)) = ext4_raw::impossible_size(&self.device, path) {
                return Error::new(ErrorKind::Corrupt, op.to_owned()).with_path(what).with_detail(format!(
                    "the inode of {inode_path} claims {size} bytes, more than an ext4 file can hold; the filesystem is probably corrupt: run e2fsck"
                ));
            }
        }
        map_error(e, op, &what)
    }
}

/// Refuses a superblock whose geometry does not fit the volume before
/// `ext4-view` sizes its tables from it. Anything we cannot read here is left
/// for `ext4-view` to report.
fn check_geometry(volume_id: &str, device: &Device) -> Result<()> {
    let mut sb = [0u8; 1024];
    if device
        .read_exact_at(SUPERBLOCK_START_BYTE, &mut sb)
        .is_err()
    {
        return Ok(());
    }
    let le32 = |at: usize| u32::from_le_bytes([sb[at], sb[at + 1], sb[at + 2], sb[at + 3]]);
    if u16::from_le_bytes([sb[0x38], sb[0x39]]) != 0xef53 || le32(0x18) > 6 || le32(0x20) == 0 {
        return Ok(());
    }
    let block_size = 1024u64 << le32(0x18);
    let mut blocks = u64::from(le32(0x4));
    if le32(0x60) & INCOMPAT_64BIT != 0 {
        blocks |= u64::from(le32(0x150)) << 32;
    }
    let claimed = blocks.checked_mul(block_size);
    let corrupt = |detail: String| {
        Err(Error::new(ErrorKind::Corrupt, "opening")
            .with_path(format!("ext4 filesystem on {volume_id}"))
            .with_offset(SUPERBLOCK_START_BYTE)
            .with_detail(detail))
    };
    if claimed.is_none_or(|c| c > device.size_in_bytes()) {
        return corrupt(format!(
            "the superblock claims {blocks} blocks of {block_size} bytes but the volume has {} bytes (Linux refuses this too); the image may be truncated or the superblock corrupt: run e2fsck",
            device.size_in_bytes()
        ));
    }
    let groups = blocks
        .saturating_sub(u64::from(le32(0x14)))
        .div_ceil(u64::from(le32(0x20)));
    if groups > MAX_BLOCK_GROUPS {
        return corrupt(format!(
            "the superblock claims {groups} block groups, more than the {MAX_BLOCK_GROUPS} the image engine reads; the superblock is probably corrupt: run e2fsck"
        ));
    }
    Ok(())
}

fn read_incompat(device: &Device) -> Option<u32> {
    let mut b = [0u8; 4];
    device
        .read_exact_at(SUPERBLOCK_START_BYTE + S_FEATURE_INCOMPAT, &mut b)
        .ok()?;
    Some(u32::from_le_bytes(b))
}

fn map_load_error(e: Ext4Error, volume_id: &str, needs_recovery: bool) -> Error {
    let what = format!("ext4 filesystem on {volume_id}");
    match e {
        Ext4Error::Incompatible(i) if needs_recovery => Error::new(ErrorKind::Unsupported, "opening")
            .with_path(what)
            .with_detail(format!(
                "journal needs recovery (the filesystem was not cleanly unmounted) and this journal cannot be read without replaying it ({i}); replay it with e2fsck on a copy of the image, journal replay in rescue-disk comes later"
            )),
        other => map_error(other, "opening", &what),
    }
}

/// Maps an `ext4-view` error to ours, keeping corrupt / unsupported / I/O apart.
fn map_error(e: Ext4Error, op: &str, what: &str) -> Error {
    let (kind, detail) = match &e {
        Ext4Error::NotFound => (ErrorKind::NotFound, "no such file or directory".to_owned()),
        Ext4Error::NotADirectory => (
            ErrorKind::NotFound,
            "a component is not a directory".to_owned(),
        ),
        Ext4Error::IsADirectory => (ErrorKind::Unsupported, "is a directory".to_owned()),
        Ext4Error::IsASpecialFile => (ErrorKind::Unsupported, "is a special file".to_owned()),
        Ext4Error::Corrupt(c) => (
            ErrorKind::Corrupt,
            format!("{c}; the filesystem is probably corrupt: run e2fsck"),
        ),
        Ext4Error::Incompatible(i) => (
            ErrorKind::Unsupported,
            format!("{i}; use --engine kernel (later)"),
        ),
        Ext4Error::Encrypted => (
            ErrorKind::Unsupported,
            "the file is encrypted (fscrypt)".to_owned(),
        ),
        Ext4Error::Io(inner) => (ErrorKind::Io, inner.to_string()),
        other => (ErrorKind::Corrupt, other.to_string()),
    };
    Error::new(kind, op.to_owned())
        .with_path(what.to_owned())
        .with_detail(detail)
}

fn file_type(t: ext4_view::FileType) -> FileType {
    use ext4_view::FileType as T;
    match t {
        T::BlockDevice => FileType::BlockDevice,
        T::CharacterDevice => FileType::CharDevice,
        T::Directory => FileType::Directory,
        T::Fifo => FileType::Fifo,
        T::Regular => FileType::Regular,
        T::Socket => FileType::Socket,
        T::Symlink => FileType::Symlink,
    }
}

fn metadata(m: &ext4_view::Metadata) -> Metadata {
    Metadata {
        file_type: file_type(m.file_type()),
        mode: u32::from(m.mode()),
        uid: m.uid(),
        gid: m.gid(),
        size_in_bytes: m.len(),
        modified_unix_seconds: Some(m.modified().seconds()),
    }
}

impl GuestFs for Ext4Fs {
    fn fs_type(&self) -> &str {
        &self.fs_type
    }

    fn volume_id(&self) -> &str {
        &self.volume_id
    }

    fn symlink_metadata(&self, path: &GuestPath) -> Result<Metadata> {
        let p = self.ext_path(path)?;
        guarded("looking up", &self.volume_id, || {
            self.fs
                .symlink_metadata(p)
                .map(|m| metadata(&m))
                .map_err(|e| self.err(e, "looking up", path))
        })
    }

    fn read_dir(&self, path: &GuestPath, max_entries: usize) -> Result<Vec<DirEntry>> {
        let p = self.ext_path(path)?;
        guarded("listing", &self.volume_id, || {
            let iter = self
                .fs
                .read_dir(p)
                .map_err(|e| self.err(e, "listing", path))?;
            let mut out = Vec::new();
            // Count every entry read (including . and ..) so a corrupt
            // directory cannot keep us busy for long.
            let too_many = || {
                Error::new(ErrorKind::Corrupt, "listing")
                    .with_path(format!("{path} on {}", self.volume_id))
                    .with_detail(format!("more than {max_entries} entries; the directory is probably corrupt: run e2fsck"))
            };
            for (seen, entry) in iter.enumerate() {
                if seen > max_entries.saturating_add(2) {
                    return Err(too_many());
                }
                let entry = entry.map_err(|e| self.err(e, "listing", path))?;
                let name = entry.file_name().as_ref().to_vec();
                if name == b"." || name == b".." {
                    continue;
                }
                if out.len() >= max_entries {
                    return Err(too_many());
                }
                out.push(DirEntry {
                    name,
                    file_type: entry.file_type().ok().map(file_type),
                });
            }
            Ok(out)
        })
    }

    fn read_link(&self, path: &GuestPath) -> Result<Vec<u8>> {
        let meta = self.symlink_metadata(path)?;
        if !meta.is_symlink() {
            return Err(Error::new(ErrorKind::Unsupported, "reading symlink")
                .with_path(format!("{path} on {}", self.volume_id))
                .with_detail("not a symlink"));
        }
        // A long target lives in data blocks and `ext4-view` allocates its
        // i_size: check it first.
        if meta.size_in_bytes > MAX_LINK_TARGET_BYTES {
            return Err(too_large(
                &self.volume_id,
                path,
                meta.size_in_bytes,
                MAX_LINK_TARGET_BYTES,
                &self.fs_type,
            ));
        }
        let p = self.ext_path(path)?;
        guarded("reading symlink", &self.volume_id, || {
            self.fs
                .read_link(p)
                .map(|t| t.as_ref().to_vec())
                .map_err(|e| self.err(e, "reading symlink", path))
        })
    }

    fn read_file(&self, path: &GuestPath, max_bytes: u64) -> Result<Vec<u8>> {
        let meta = self.symlink_metadata(path)?;
        if !meta.is_file() {
            return Err(Error::new(ErrorKind::Unsupported, "reading")
                .with_path(format!("{path} on {}", self.volume_id))
                .with_detail(format!("not a regular file ({:?})", meta.file_type)));
        }
        if meta.size_in_bytes > max_bytes {
            return Err(too_large(
                &self.volume_id,
                path,
                meta.size_in_bytes,
                max_bytes,
                &self.fs_type,
            ));
        }
        let p = self.ext_path(path)?;
        guarded("reading", &self.volume_id, || {
            self.fs.read(p).map_err(|e| self.err(e, "reading", path))
        })
    }
}
