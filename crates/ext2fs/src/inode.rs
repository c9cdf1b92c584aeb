//! Inode fields as ext2/3/4 store them: 32-bit uid/gid split into low and
//! high halves, 34-bit seconds plus nanoseconds in the "extra" time fields
//! of large inodes, file type bits of the mode, and the [`Stat`] we hand out.

use std::time::{SystemTime, UNIX_EPOCH};

use crate::sys;

/// An inode number.
pub type Ino = u32;

/// The root directory's inode number.
pub const ROOT_INO: Ino = sys::EXT2_ROOT_INO;

/// The on-disk (libext2fs in-memory) form of a large inode.
pub(crate) type RawInode = sys::ext2_inode_large;

/// Size of the fixed part of every inode.
pub(crate) const GOOD_OLD_INODE_SIZE: usize = sys::EXT2_GOOD_OLD_INODE_SIZE as usize;

/// A point in time as ext4 stores it: seconds since the epoch (may be
/// negative) and nanoseconds. Inodes of 128 bytes keep only 32-bit seconds
/// and no nanoseconds.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash, Default)]
pub struct Timestamp {
    /// Seconds since 1970-01-01 UTC.
    pub secs: i64,
    /// Nanoseconds, 0..1_000_000_000.
    pub nsec: u32,
}

impl Timestamp {
    /// A timestamp from seconds and nanoseconds.
    pub const fn new(secs: i64, nsec: u32) -> Self {
        Timestamp { secs, nsec }
    }

    /// The current time of the host.
    pub fn now() -> Self {
        match SystemTime::now().duration_since(UNIX_EPOCH) {
            Ok(d) => Timestamp {
                secs: i64::try_from(d.as_secs()).unwrap_or(i64::MAX),
                nsec: d.subsec_nanos(),
            },
            Err(_) => Timestamp::default(),
        }
    }
}

/// The type of an inode, from the top bits of its mode.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum FileType {
    /// A regular file.
    Regular,
    /// A directory.
    Directory,
    /// A symbolic link.
    Symlink,
    /// A character device node.
    CharDevice,
    /// A block device node.
    BlockDevice,
    /// A named pipe.
    Fifo,
    /// A Unix socket.
    Socket,
    /// Anything else (a corrupt mode, or a directory entry without a type).
    Unknown,
}

impl FileType {
    /// The type encoded in `mode` (the `S_IFMT` bits).
    pub fn from_mode(mode: u16) -> Self {
        match u32::from(mode) & 0o170000 {
            sys::LINUX_S_IFREG => FileType::Regular,
            sys::LINUX_S_IFDIR => FileType::Directory,
            sys::LINUX_S_IFLNK => FileType::Symlink,
            sys::LINUX_S_IFCHR => FileType::CharDevice,
            sys::LINUX_S_IFBLK => FileType::BlockDevice,
            sys::LINUX_S_IFIFO => FileType::Fifo,
            sys::LINUX_S_IFSOCK => FileType::Socket,
            _ => FileType::Unknown,
        }
    }

    /// The type stored in a directory entry (`EXT2_FT_*`).
    pub(crate) fn from_dirent_code(code: u8) -> Self {
        match u32::from(code) {
            sys::EXT2_FT_REG_FILE => FileType::Regular,
            sys::EXT2_FT_DIR => FileType::Directory,
            sys::EXT2_FT_SYMLINK => FileType::Symlink,
            sys::EXT2_FT_CHRDEV => FileType::CharDevice,
            sys::EXT2_FT_BLKDEV => FileType::BlockDevice,
            sys::EXT2_FT_FIFO => FileType::Fifo,
            sys::EXT2_FT_SOCK => FileType::Socket,
            _ => FileType::Unknown,
        }
    }

    /// The `EXT2_FT_*` code for directory entries.
    pub(crate) fn dirent_code(self) -> u8 {
        (match self {
            FileType::Regular => sys::EXT2_FT_REG_FILE,
            FileType::Directory => sys::EXT2_FT_DIR,
            FileType::Symlink => sys::EXT2_FT_SYMLINK,
            FileType::CharDevice => sys::EXT2_FT_CHRDEV,
            FileType::BlockDevice => sys::EXT2_FT_BLKDEV,
            FileType::Fifo => sys::EXT2_FT_FIFO,
            FileType::Socket => sys::EXT2_FT_SOCK,
            FileType::Unknown => sys::EXT2_FT_UNKNOWN,
        }) as u8
    }
}

/// What [`crate::Fs::stat`] reports about an inode.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Stat {
    /// The inode number.
    pub ino: Ino,
    /// Type and permission bits (`S_IFMT | 07777`).
    pub mode: u16,
    /// Owner, all 32 bits.
    pub uid: u32,
    /// Group, all 32 bits.
    pub gid: u32,
    /// Size in bytes.
    pub size: u64,
    /// Hard link count (for directories: 2 + subdirectories, or 1 when the
    /// `dir_nlink` feature stopped counting).
    pub links: u16,
    /// Last access.
    pub atime: Timestamp,
    /// Last content change.
    pub mtime: Timestamp,
    /// Last inode change.
    pub ctime: Timestamp,
    /// Creation time, when the inode is large enough to store it.
    pub crtime: Option<Timestamp>,
    /// Inode flags (`chattr` flags and internal ones such as extents).
    pub flags: u32,
}

impl Stat {
    /// The inode type.
    pub fn file_type(&self) -> FileType {
        FileType::from_mode(self.mode)
    }

    /// The permission bits (07777).
    pub fn permissions(&self) -> u16 {
        self.mode & 0o7777
    }
}

/// The timestamps of an inode.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum TimeField {
    Atime,
    Mtime,
    Ctime,
    Crtime,
}

impl TimeField {
    /// End offset (in the inode) of the extra field this time needs, and
    /// whether the seconds themselves live in the extra area (crtime).
    fn extra_end(self) -> (usize, bool) {
        match self {
            TimeField::Ctime => (136, false),
            TimeField::Mtime => (140, false),
            TimeField::Atime => (144, false),
            TimeField::Crtime => (152, true),
        }
    }
}

/// True when the inode's extra area reaches byte `end` of the inode.
fn extra_covers(inode: &RawInode, inode_size: usize, end: usize) -> bool {
    inode_size > GOOD_OLD_INODE_SIZE
        && end <= inode_size
        && end <= std::mem::size_of::<RawInode>()
        && GOOD_OLD_INODE_SIZE + usize::from(inode.i_extra_isize) >= end
}

fn decode(lo: u32, extra: Option<u32>) -> Timestamp {
    let base = i64::from(lo as i32);
    match extra {
        Some(x) => Timestamp {
            secs: base + (i64::from(x & 3) << 32),
            nsec: x >> 2,
        },
        None => Timestamp {
            secs: base,
            nsec: 0,
        },
    }
}

fn encode(t: Timestamp, with_extra: bool) -> (u32, u32) {
    if !with_extra {
        let secs = t.secs.clamp(i64::from(i32::MIN), i64::from(i32::MAX));
        return (secs as i32 as u32, 0);
    }
    // Two epoch bits extend the signed 32-bit range by 3 * 2^32 seconds.
    let secs = t
        .secs
        .clamp(i64::from(i32::MIN), (3i64 << 32) + i64::from(i32::MAX));
    let lo = secs as i32;
    let epoch = ((secs - i64::from(lo)) >> 32) as u32 & 3;
    (lo as u32, epoch | (t.nsec.min(999_999_999) << 2))
}

/// Reads one timestamp; `None` only for a crtime the inode cannot hold.
pub(crate) fn get_time(inode: &RawInode, inode_size: usize, field: TimeField) -> Option<Timestamp> {
    let (end, in_extra) = field.extra_end();
    let has_extra = extra_covers(inode, inode_size, end);
    let (lo, extra) = match field {
        TimeField::Atime => (inode.i_atime, inode.i_atime_extra),
        TimeField::Mtime => (inode.i_mtime, inode.i_mtime_extra),
        TimeField::Ctime => (inode.i_ctime, inode.i_ctime_extra),
        TimeField::Crtime => (inode.i_crtime, inode.i_crtime_extra),
    };
    if in_extra && !has_extra {
        return None;
    }
    Some(decode(lo, has_extra.then_some(extra)))
}

/// Writes one timestamp with as much precision as the inode holds. A
/// crtime the inode cannot hold is silently skipped.
pub(crate) fn set_time(inode: &mut RawInode, inode_size: usize, field: TimeField, t: Timestamp) {
    let (end, in_extra) = field.extra_end();
    let has_extra = extra_covers(inode, inode_size, end);
    if in_extra && !has_extra {
        return;
    }
    let (lo, extra) = encode(t, has_extra);
    let (lo_slot, extra_slot) = match field {
        TimeField::Atime => (&mut inode.i_atime, &mut inode.i_atime_extra),
        TimeField::Mtime => (&mut inode.i_mtime, &mut inode.i_mtime_extra),
        TimeField::Ctime => (&mut inode.i_ctime, &mut inode.i_ctime_extra),
        TimeField::Crtime => (&mut inode.i_crtime, &mut inode.i_crtime_extra),
    };
    *lo_slot = lo;
    if has_extra {
        *extra_slot = extra;
    }
}

/// The 32-bit owner.
pub(crate) fn uid(inode: &RawInode) -> u32 {
    // SAFETY: both variants of the osd2 union are plain integer structs, so
    // every bit pattern is a valid value of either; `linux2` is the layout
    // of every creator OS we accept (Hurd is refused at open).
    let high = unsafe { inode.osd2.linux2.l_i_uid_high };
    u32::from(inode.i_uid) | (u32::from(high) << 16)
}

/// The 32-bit group.
pub(crate) fn gid(inode: &RawInode) -> u32 {
    // SAFETY: as in `uid`.
    let high = unsafe { inode.osd2.linux2.l_i_gid_high };
    u32::from(inode.i_gid) | (u32::from(high) << 16)
}

/// Sets the 32-bit owner and group.
pub(crate) fn set_owner(inode: &mut RawInode, uid: u32, gid: u32) {
    inode.i_uid = uid as u16;
    inode.i_gid = gid as u16;
    // Writing a Copy union field is safe; the union stays initialised.
    inode.osd2.linux2.l_i_uid_high = (uid >> 16) as u16;
    inode.osd2.linux2.l_i_gid_high = (gid >> 16) as u16;
}

/// Size in bytes (`i_size` and `i_size_high`).
pub(crate) fn size(inode: &RawInode) -> u64 {
    u64::from(inode.i_size) | (u64::from(inode.i_size_high) << 32)
}

/// Sets the size in bytes.
pub(crate) fn set_size(inode: &mut RawInode, size: u64) {
    inode.i_size = size as u32;
    inode.i_size_high = (size >> 32) as u32;
}

/// Number of 512-byte sectors (or filesystem blocks, with `huge_file` and
/// the inode flag) the inode accounts for, as stored.
pub(crate) fn raw_blocks(inode: &RawInode) -> u64 {
    // SAFETY: as in `uid`.
    let high = unsafe { inode.osd2.linux2.l_i_blocks_hi };
    u64::from(inode.i_blocks) | (u64::from(high) << 32)
}

/// A snapshot of the inode for callers.
pub(crate) fn stat_of(ino: Ino, inode: &RawInode, inode_size: usize) -> Stat {
    let t = |f| get_time(inode, inode_size, f).unwrap_or_default();
    Stat {
        ino,
        mode: inode.i_mode,
        uid: uid(inode),
        gid: gid(inode),
        size: size(inode),
        links: inode.i_links_count,
        atime: t(TimeField::Atime),
        mtime: t(TimeField::Mtime),
        ctime: t(TimeField::Ctime),
        crtime: get_time(inode, inode_size, TimeField::Crtime),
        flags: inode.i_flags,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn times_round_trip_through_the_extra_epoch_bits() {
        for secs in [0i64, -1, 1_700_000_000, i64::from(i32::MAX) + 10, 1 << 33] {
            let t = Timestamp::new(secs, 123_456_789);
            let (lo, extra) = encode(t, true);
            assert_eq!(decode(lo, Some(extra)), t, "secs {secs}");
        }
        let (lo, _) = encode(Timestamp::new(i64::from(i32::MAX) + 10, 5), false);
        assert_eq!(decode(lo, None), Timestamp::new(i64::from(i32::MAX), 0));
    }
}
