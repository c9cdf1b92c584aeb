//! [`Fs`]: an ext2/3/4 filesystem opened read-write through libext2fs over
//! a [`rescue_io::BlockWrite`] device, and the small safe operations the
//! repair commands need (look up, read, change metadata, replace contents,
//! create, remove and rename entries).
//!
//! Every operation reads the inodes it changes right before changing them
//! and writes them back with libext2fs (which keeps checksums right); no
//! inode copy is kept across a libext2fs call that may itself write it.

use std::collections::HashMap;
use std::ffi::{c_char, c_int, c_uint, c_void, CStr, CString};
use std::rc::Rc;
use std::sync::{Arc, Mutex, Once};

use rescue_io::BlockWrite;

use crate::dir::{self, DirVisit};
use crate::error::{Error, ErrorKind, Result};
use crate::inode::{self, FileType, Ino, RawInode, Stat, TimeField, Timestamp, ROOT_INO};
use crate::io::{ChannelState, Registration};
use crate::sys;

/// Longest name of a directory entry.
pub const MAX_NAME_LEN: usize = 255;

/// Most entries [`Fs::read_dir`] returns before giving up (a bound against
/// corrupt or hostile directories).
pub const MAX_DIR_ENTRIES: usize = 1 << 20;

/// Deepest directory nesting we walk (lookups, loop checks in rename).
const MAX_DEPTH: usize = 4096;

/// An entry of a directory listing.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct DirEntry {
    /// The entry's name (raw bytes, never `.` or `..`).
    pub name: Vec<u8>,
    /// The inode it links to.
    pub ino: Ino,
    /// The type recorded in the entry (`Unknown` without the `filetype`
    /// feature).
    pub file_type: FileType,
}

/// An open ext2/3/4 filesystem. Not `Send`: libext2fs state and the device
/// stay on the thread that opened them.
///
/// Opening reads the superblock and group descriptors only; the block and
/// inode bitmaps are read before the first operation that allocates or
/// frees something. [`Fs::close`] (or dropping) writes the superblock,
/// group descriptors and bitmaps back if they changed, then flushes the
/// device.
pub struct Fs {
    /// Non-null for every `Fs` a caller can reach: only `close` (which
    /// consumes the value) and the failure path of `open` null it.
    raw: sys::ext2_filsys,
    chan: Rc<ChannelState>,
    name: String,
    bitmaps_loaded: bool,
    /// Guest paths we learnt (lookups, creations), for messages only.
    paths: HashMap<Ino, Vec<u8>>,
    warnings: Vec<String>,
}

// --- feature policy -------------------------------------------------------

const FEATURE_INCOMPAT_OK: u32 = sys::EXT2_FEATURE_INCOMPAT_FILETYPE
    | sys::EXT2_FEATURE_INCOMPAT_META_BG
    | sys::EXT3_FEATURE_INCOMPAT_EXTENTS
    | sys::EXT4_FEATURE_INCOMPAT_64BIT
    | sys::EXT4_FEATURE_INCOMPAT_FLEX_BG
    | sys::EXT4_FEATURE_INCOMPAT_CSUM_SEED
    | sys::EXT4_FEATURE_INCOMPAT_LARGEDIR
    // Checked per inode: we refuse to touch encrypted or casefolded ones.
    | sys::EXT4_FEATURE_INCOMPAT_ENCRYPT
    | sys::EXT4_FEATURE_INCOMPAT_CASEFOLD;

const FEATURE_RO_COMPAT_OK: u32 = sys::EXT2_FEATURE_RO_COMPAT_SPARSE_SUPER
    | sys::EXT2_FEATURE_RO_COMPAT_LARGE_FILE
    | sys::EXT4_FEATURE_RO_COMPAT_HUGE_FILE
    | sys::EXT4_FEATURE_RO_COMPAT_GDT_CSUM
    | sys::EXT4_FEATURE_RO_COMPAT_DIR_NLINK
    | sys::EXT4_FEATURE_RO_COMPAT_EXTRA_ISIZE
    | sys::EXT4_FEATURE_RO_COMPAT_METADATA_CSUM
    // Checked per inode: we refuse to change verity-protected contents.
    | sys::EXT4_FEATURE_RO_COMPAT_VERITY
    | sys::EXT4_FEATURE_RO_COMPAT_ORPHAN_PRESENT;

/// Known features we refuse, with their names.
const REFUSED_INCOMPAT: &[(u32, &str)] = &[
    (sys::EXT2_FEATURE_INCOMPAT_COMPRESSION, "compression"),
    (
        sys::EXT4_FEATURE_INCOMPAT_MMP,
        "mmp (multi-mount protection)",
    ),
    (sys::EXT4_FEATURE_INCOMPAT_EA_INODE, "ea_inode"),
    (sys::EXT4_FEATURE_INCOMPAT_DIRDATA, "dirdata"),
    (sys::EXT4_FEATURE_INCOMPAT_INLINE_DATA, "inline_data"),
];

const REFUSED_RO_COMPAT: &[(u32, &str)] = &[
    (sys::EXT4_FEATURE_RO_COMPAT_HAS_SNAPSHOT, "has_snapshot"),
    (sys::EXT4_FEATURE_RO_COMPAT_BIGALLOC, "bigalloc"),
    (sys::EXT4_FEATURE_RO_COMPAT_REPLICA, "replica"),
    (sys::EXT4_FEATURE_RO_COMPAT_READONLY, "read-only"),
    (sys::EXT4_FEATURE_RO_COMPAT_SHARED_BLOCKS, "shared_blocks"),
];

// --- com_err --------------------------------------------------------------

/// `error_message` formats unknown codes into a static buffer: serialise.
static ERROR_MESSAGE: Mutex<()> = Mutex::new(());

fn init_error_table() {
    static INIT: Once = Once::new();
    INIT.call_once(|| {
        // SAFETY: registers libext2fs' static com_err table; idempotent and
        // run once.
        unsafe { sys::initialize_ext2_error_table() };
    });
}

/// The libext2fs/com_err text for `code` (errno values included).
pub(crate) fn message_of(code: sys::errcode_t) -> String {
    init_error_table();
    let _guard = ERROR_MESSAGE.lock().unwrap_or_else(|e| e.into_inner());
    // SAFETY: error_message returns a pointer to a NUL-terminated static
    // string (or its static buffer, which the lock protects); we copy it
    // before releasing the lock.
    let text = unsafe {
        let p = sys::error_message(code);
        if p.is_null() {
            return format!("error {code}");
        }
        CStr::from_ptr(p).to_string_lossy().into_owned()
    };
    text
}

fn code_kind(code: sys::errcode_t) -> ErrorKind {
    let c = code as u32;
    match code {
        28 => return ErrorKind::NoSpace,      // ENOSPC
        22 => return ErrorKind::InvalidInput, // EINVAL (e.g. a malformed ACL)
        _ => {}
    }
    match c {
        sys::EXT2_ET_FILE_NOT_FOUND => ErrorKind::NotFound,
        sys::EXT2_ET_DIR_EXISTS | sys::EXT2_ET_FILE_EXISTS => ErrorKind::AlreadyExists,
        sys::EXT2_ET_NO_DIRECTORY => ErrorKind::NotADirectory,
        sys::EXT2_ET_BLOCK_ALLOC_FAIL
        | sys::EXT2_ET_INODE_ALLOC_FAIL
        | sys::EXT2_ET_DIR_NO_SPACE
        | sys::EXT2_ET_EA_NO_SPACE
        | sys::EXT2_ET_DIR_NO_SPACE_FOR_CSUM => ErrorKind::NoSpace,
        sys::EXT2_ET_FILE_TOO_BIG => ErrorKind::TooLarge,
        sys::EXT2_ET_INVALID_ARGUMENT => ErrorKind::InvalidInput,
        sys::EXT2_ET_UNSUPP_FEATURE | sys::EXT2_ET_RO_UNSUPP_FEATURE => ErrorKind::Refused,
        sys::EXT2_ET_BAD_MAGIC
        | sys::EXT2_ET_CORRUPT_SUPERBLOCK
        | sys::EXT2_ET_SB_CSUM_INVALID
        | sys::EXT2_ET_DIR_CORRUPTED
        | sys::EXT2_ET_DIR_CSUM_INVALID
        | sys::EXT2_ET_INODE_CSUM_INVALID
        | sys::EXT2_ET_EXTENT_CSUM_INVALID
        | sys::EXT2_ET_EXT_ATTR_CSUM_INVALID
        | sys::EXT2_ET_BLOCK_BITMAP_CSUM_INVALID
        | sys::EXT2_ET_INODE_BITMAP_CSUM_INVALID
        | sys::EXT2_ET_BAD_DESC_SIZE
        | sys::EXT2_ET_GDESC_BAD_BLOCK_MAP
        | sys::EXT2_ET_GDESC_BAD_INODE_MAP
        | sys::EXT2_ET_GDESC_BAD_INODE_TABLE
        | sys::EXT2_ET_GDESC_READ
        | sys::EXT2_ET_BAD_INODE_NUM
        | sys::EXT2_ET_EXTENT_HEADER_BAD
        | sys::EXT2_ET_EXTENT_INDEX_BAD
        | sys::EXT2_ET_EXTENT_LEAF_BAD
        | sys::EXT2_ET_BAD_EA_HEADER
        | sys::EXT2_ET_BAD_EA_BLOCK_NUM
        | sys::EXT2_ET_EA_BAD_NAME_LEN
        | sys::EXT2_ET_EA_BAD_VALUE_SIZE
        | sys::EXT2_ET_EA_BAD_VALUE_OFFSET
        | sys::EXT2_ET_EA_INODE_CORRUPTED
        | sys::EXT2_ET_FILESYSTEM_CORRUPTED
        | sys::EXT2_ET_TOOSMALL
        | sys::EXT2_ET_REV_TOO_HIGH
        | sys::EXT2_ET_UNEXPECTED_BLOCK_SIZE => ErrorKind::Corrupt,
        _ => ErrorKind::Other,
    }
}

/// Shows a guest name or path in a message (lossy UTF-8, no control chars).
pub(crate) fn show(bytes: &[u8]) -> String {
    String::from_utf8_lossy(bytes)
        .chars()
        .map(|c| if c.is_control() { '?' } else { c })
        .collect()
}

fn join(parent: &[u8], name: &[u8]) -> Vec<u8> {
    let mut p = parent.to_vec();
    if !p.ends_with(b"/") {
        p.push(b'/');
    }
    p.extend_from_slice(name);
    p
}

/// A buffer allocated by libext2fs with malloc, freed on drop.
struct CBuf(*mut c_char);

impl Drop for CBuf {
    fn drop(&mut self) {
        if !self.0.is_null() {
            // SAFETY: the pointer came from libext2fs' ext2fs_get_mem
            // (malloc) and is freed exactly once, here.
            unsafe { sys::free(self.0 as *mut c_void) };
        }
    }
}

impl Fs {
    /// Opens the ext2/3/4 filesystem on `dev` for reading and writing.
    /// `name` is how messages call it (e.g. `/dev/sda1` or `vda2`).
    ///
    /// Refused (with the reason and the way out): a journal that needs
    /// replaying, an external journal device, features we do not write
    /// safely (`bigalloc`, `inline_data`, `ea_inode`, `mmp`, `quota`,
    /// `project`, `compression`, `dirdata`, `has_snapshot`, `replica`,
    /// `shared_blocks`, the `read-only` feature, unknown bits), a Hurd
    /// filesystem, and inconsistent group descriptors.
    ///
    /// A filesystem marked "contains errors" or not cleanly unmounted is
    /// opened anyway (repairing broken guests is the point); see
    /// [`Fs::warnings`].
    pub fn open(dev: Arc<dyn BlockWrite>, name: &str) -> Result<Fs> {
        init_error_table();
        let chan = ChannelState::new(dev);
        let mut raw: sys::ext2_filsys = std::ptr::null_mut();
        let flags = sys::EXT2_FLAG_RW | sys::EXT2_FLAG_64BITS | sys::EXT2_FLAG_SKIP_MMP;
        let rc = {
            let _registration = Registration::new(&chan);
            // The name is registered above so our open callback finds the
            // device; on failure ext2fs_open2 frees what it allocated.
            // SAFETY: valid C string; the manager table lives in `chan`,
            // which every channel keeps alive; `raw` is a valid out pointer.
            unsafe {
                sys::ext2fs_open2(
                    chan.name().as_ptr(),
                    std::ptr::null(),
                    flags as c_int,
                    0,
                    0,
                    chan.manager_ptr(),
                    &mut raw,
                )
            }
        };
        let device = chan.take_error();
        if rc != 0 || raw.is_null() {
            let mut detail = message_of(rc);
            match code_kind(rc) {
                ErrorKind::Corrupt => detail.push_str(
                    "; this does not look like a healthy ext2/3/4 filesystem: check that \
                     this is the right partition, or run `e2fsck -f` on it",
                ),
                ErrorKind::Refused => detail.push_str(
                    "; the filesystem uses features this libext2fs does not know; change it \
                     from inside the guest",
                ),
                _ => {}
            }
            return Err(
                Error::new(code_kind(rc), "opening ext2/3/4 filesystem", name, detail)
                    .with_code(rc)
                    .with_device(device),
            );
        }
        let mut fs = Fs {
            raw,
            chan,
            name: name.to_owned(),
            bitmaps_loaded: false,
            paths: HashMap::from([(ROOT_INO, b"/".to_vec())]),
            warnings: Vec::new(),
        };
        if let Err(e) = fs.check_policy().and_then(|()| fs.check_descriptors()) {
            fs.abandon();
            return Err(e);
        }
        Ok(fs)
    }

    fn sb(&self) -> &sys::ext2_super_block {
        // SAFETY: `raw` is live (non-null for every reachable `Fs`) and
        // libext2fs keeps `super` allocated at a fixed address while open;
        // callers copy fields out instead of holding this across calls.
        unsafe { &*(*self.raw).super_ }
    }

    fn blocksize(&self) -> u32 {
        // SAFETY: `raw` is live (see `sb`).
        unsafe { (*self.raw).blocksize }
    }

    fn group_count(&self) -> u32 {
        // SAFETY: `raw` is live (see `sb`).
        unsafe { (*self.raw).group_desc_count }
    }

    /// Bytes per on-disk inode.
    fn inode_size(&self) -> usize {
        let sb = self.sb();
        if sb.s_rev_level == sys::EXT2_GOOD_OLD_REV {
            inode::GOOD_OLD_INODE_SIZE
        } else {
            usize::from(sb.s_inode_size)
        }
    }

    fn first_ino(&self) -> Ino {
        let sb = self.sb();
        if sb.s_rev_level == sys::EXT2_GOOD_OLD_REV {
            sys::EXT2_GOOD_OLD_FIRST_INO
        } else {
            sb.s_first_ino
        }
    }

    fn has_incompat(&self, bit: u32) -> bool {
        self.sb().s_feature_incompat & bit != 0
    }

    fn has_ro_compat(&self, bit: u32) -> bool {
        self.sb().s_feature_ro_compat & bit != 0
    }

    pub(crate) fn refuse(&self, op: &str, detail: impl Into<String>) -> Error {
        Error::new(ErrorKind::Refused, op, &self.name, detail)
    }

    fn check_policy(&mut self) -> Result<()> {
        let op = "opening ext2/3/4 filesystem";
        let sb = *self.sb();
        let incompat = sb.s_feature_incompat;
        let ro = sb.s_feature_ro_compat;
        if incompat & sys::EXT3_FEATURE_INCOMPAT_RECOVER != 0 {
            return Err(self.refuse(
                op,
                "the journal needs recovery (needs_recovery is set: the guest was not shut \
                 down cleanly); replay the journal first, e.g. `e2fsck -E journal_only` on \
                 the partition or boot the guest once, then retry",
            ));
        }
        if incompat & sys::EXT3_FEATURE_INCOMPAT_JOURNAL_DEV != 0 {
            return Err(self.refuse(
                op,
                "this is an external journal device, not a filesystem; pick the partition \
                 that holds the filesystem",
            ));
        }
        let way_out = "make this change from inside the guest (boot it, or chroot from a \
                       rescue system) instead";
        for &(bit, name) in REFUSED_INCOMPAT {
            if incompat & bit != 0 {
                return Err(self.refuse(
                    op,
                    format!("the filesystem uses the {name} feature, which rescue-disk does not write safely; {way_out}"),
                ));
            }
        }
        for &(bit, name) in REFUSED_RO_COMPAT {
            if ro & bit != 0 {
                return Err(self.refuse(
                    op,
                    format!("the filesystem uses the {name} feature, which rescue-disk does not write safely; {way_out}"),
                ));
            }
        }
        for (bit, name) in [
            (sys::EXT4_FEATURE_RO_COMPAT_QUOTA, "quota"),
            (sys::EXT4_FEATURE_RO_COMPAT_PROJECT, "project"),
        ] {
            if ro & bit != 0 {
                return Err(self.refuse(
                    op,
                    format!(
                        "the filesystem keeps {name} accounting, which rescue-disk cannot update; \
                         {way_out}, or turn it off with `tune2fs -O ^{name}` and back on with \
                         `tune2fs -O {name}` (which recounts) after the repair"
                    ),
                ));
            }
        }
        let unknown_incompat =
            incompat & !(FEATURE_INCOMPAT_OK | sys::EXT3_FEATURE_INCOMPAT_RECOVER);
        if unknown_incompat != 0 {
            return Err(self.refuse(
                op,
                format!("the filesystem uses unknown incompatible features ({unknown_incompat:#x}); {way_out}"),
            ));
        }
        let unknown_ro = ro & !FEATURE_RO_COMPAT_OK;
        if unknown_ro != 0 {
            return Err(self.refuse(
                op,
                format!("the filesystem uses unknown read-only-compatible features ({unknown_ro:#x}); {way_out}"),
            ));
        }
        if sb.s_creator_os == sys::EXT2_OS_HURD {
            return Err(self.refuse(
                op,
                format!(
                    "this filesystem was made for GNU Hurd, whose inode layout differs; {way_out}"
                ),
            ));
        }
        if u32::from(sb.s_state) & sys::EXT2_ERROR_FS != 0 {
            self.warn(
                "the filesystem is marked as containing errors (the kernel found a problem); \
                 run `e2fsck -f` on it after the repair",
            );
        } else if u32::from(sb.s_state) & sys::EXT2_VALID_FS == 0 {
            self.warn(
                "the filesystem was not cleanly unmounted; run `e2fsck -f` on it after the repair",
            );
        }
        Ok(())
    }

    fn warn(&mut self, text: &str) {
        tracing::warn!(fs = %self.name, "{text}");
        self.warnings.push(text.to_owned());
    }

    /// Problems found at open that did not stop us (error state, unclean
    /// unmount), one sentence each.
    pub fn warnings(&self) -> &[String] {
        &self.warnings
    }

    fn check_descriptors(&self) -> Result<()> {
        let op = "checking group descriptors";
        // SAFETY: `raw` is a live handle; ext2fs_check_desc only reads the
        // in-memory descriptors and allocates a temporary bitmap.
        let rc = unsafe { sys::ext2fs_check_desc(self.raw) };
        if rc != 0 {
            let _ = self.chan.take_error();
            return Err(Error::new(
                ErrorKind::Corrupt,
                op,
                &self.name,
                format!(
                    "{} (libext2fs error {rc}); the group descriptors are damaged: run `e2fsck -f` \
                     (it can use a backup superblock) before changing files",
                    message_of(rc)
                ),
            )
            .with_code(rc));
        }
        for group in 0..self.group_count() {
            // SAFETY: `group` < group_desc_count; the call only reads.
            let ok = unsafe { sys::ext2fs_group_desc_csum_verify(self.raw, group) };
            if ok == 0 {
                return Err(Error::new(
                    ErrorKind::Corrupt,
                    op,
                    &self.name,
                    format!(
                        "the checksum of group descriptor {group} is wrong; run `e2fsck -f` \
                         before changing files"
                    ),
                ));
            }
        }
        Ok(())
    }

    /// Frees the handle without writing anything (used when refusing).
    fn abandon(&mut self) {
        if self.raw.is_null() {
            return;
        }
        // SAFETY: `raw` is live; ext2fs_free releases it and closes the
        // channel without flushing; we null it so nothing uses it again.
        unsafe { sys::ext2fs_free(self.raw) };
        self.raw = std::ptr::null_mut();
        let _ = self.chan.take_error();
    }

    /// Writes back what changed (superblock, group descriptors, bitmaps),
    /// releases libext2fs and flushes the device.
    pub fn close(mut self) -> Result<()> {
        self.close_inner()
    }

    fn close_inner(&mut self) -> Result<()> {
        if self.raw.is_null() {
            return Ok(());
        }
        let raw = std::mem::replace(&mut self.raw, std::ptr::null_mut());
        // SAFETY: `raw` is live and, having been taken out of `self`, is used
        // for nothing else; ext2fs_close2 flushes if dirty and frees it on
        // success.
        let rc = unsafe { sys::ext2fs_close2(raw, 0) };
        let device = self.chan.take_error();
        if rc != 0 {
            // SAFETY: on failure ext2fs_close2 did not free the handle.
            unsafe { sys::ext2fs_free(raw) };
            let _ = self.chan.take_error();
            return Err(Error::new(
                code_kind(rc),
                "writing back superblock, group descriptors and bitmaps",
                &self.name,
                format!("{} (libext2fs error {rc})", message_of(rc)),
            )
            .with_code(rc)
            .with_device(device));
        }
        if self.chan.wrote() {
            self.chan.device().flush().map_err(|e| {
                Error::new(
                    ErrorKind::Device,
                    "flushing",
                    &self.name,
                    "the device failed",
                )
                .with_device(Some(e))
            })?;
        }
        Ok(())
    }

    /// Writes back the superblock, group descriptors and bitmaps now (as
    /// `close` would) and flushes the device, keeping the filesystem open.
    pub fn flush(&mut self) -> Result<()> {
        self.live("flushing")?;
        // SAFETY: `raw` is live.
        let rc = unsafe { sys::ext2fs_flush(self.raw) };
        self.check(rc, "flushing")?;
        self.chan.device().flush().map_err(|e| {
            Error::new(
                ErrorKind::Device,
                "flushing",
                &self.name,
                "the device failed",
            )
            .with_device(Some(e))
        })
    }

    fn live(&self, op: &str) -> Result<()> {
        if self.raw.is_null() {
            return Err(Error::new(
                ErrorKind::Other,
                op,
                &self.name,
                "the filesystem is closed",
            ));
        }
        Ok(())
    }

    /// Turns a libext2fs return code into a result, with the device error
    /// stored by our io callbacks if any.
    pub(crate) fn check(&self, rc: sys::errcode_t, op: impl AsRef<str>) -> Result<()> {
        let device = self.chan.take_error();
        if rc == 0 {
            return Ok(());
        }
        let kind = code_kind(rc);
        let mut detail = format!("{} (libext2fs error {rc})", message_of(rc));
        match kind {
            ErrorKind::Corrupt => {
                detail.push_str("; the filesystem is damaged here: run `e2fsck -f` on it first")
            }
            ErrorKind::NoSpace if rc == sys::EXT2_ET_EA_NO_SPACE as sys::errcode_t => detail
                .push_str(
                    "; all extended attributes of an inode must fit in the inode and one block",
                ),
            ErrorKind::NoSpace => detail.push_str("; free some space in the filesystem first"),
            _ => {}
        }
        Err(Error::new(kind, op.as_ref(), &self.name, detail)
            .with_code(rc)
            .with_device(device))
    }

    pub(crate) fn err(
        &self,
        kind: ErrorKind,
        op: impl AsRef<str>,
        detail: impl Into<String>,
    ) -> Error {
        Error::new(kind, op.as_ref(), &self.name, detail)
    }

    pub(crate) fn raw(&self) -> sys::ext2_filsys {
        self.raw
    }

    /// "/etc/passwd (inode 12)" or "inode 12".
    pub(crate) fn ino_desc(&self, ino: Ino) -> String {
        match self.paths.get(&ino) {
            Some(p) => format!("{} (inode {ino})", show(p)),
            None => format!("inode {ino}"),
        }
    }

    /// "/etc/passwd" or "'passwd' in directory inode 5".
    pub(crate) fn entry_desc(&self, parent: Ino, name: &[u8]) -> String {
        match self.paths.get(&parent) {
            Some(p) => show(&join(p, name)),
            None => format!("'{}' in directory inode {parent}", show(name)),
        }
    }

    fn remember(&mut self, parent: Ino, name: &[u8], ino: Ino) {
        if let Some(p) = self.paths.get(&parent) {
            let path = join(p, name);
            self.paths.insert(ino, path);
        }
    }

    // --- inodes -----------------------------------------------------------

    fn check_ino(&self, ino: Ino, op: &str) -> Result<()> {
        self.live(op)?;
        if ino == 0 || ino > self.sb().s_inodes_count {
            return Err(self.err(
                ErrorKind::InvalidInput,
                op,
                format!(
                    "inode {ino} does not exist (the filesystem has {} inodes)",
                    self.sb().s_inodes_count
                ),
            ));
        }
        Ok(())
    }

    pub(crate) fn read_raw(&self, ino: Ino, op: &str) -> Result<RawInode> {
        self.check_ino(ino, op)?;
        // SAFETY: ext2_inode_large is plain integers and integer unions, for
        // which all-zero is valid.
        let mut inode: RawInode = unsafe { std::mem::zeroed() };
        // SAFETY: `raw` is live; the buffer is a whole ext2_inode_large and
        // we pass its size, so libext2fs copies at most that many bytes.
        let rc = unsafe {
            sys::ext2fs_read_inode_full(
                self.raw,
                ino,
                &mut inode as *mut RawInode as *mut sys::ext2_inode,
                std::mem::size_of::<RawInode>() as c_int,
            )
        };
        self.check(rc, op)?;
        Ok(inode)
    }

    pub(crate) fn write_raw(&mut self, ino: Ino, inode: &mut RawInode, op: &str) -> Result<()> {
        self.check_ino(ino, op)?;
        // SAFETY: `raw` is live; the buffer is a whole ext2_inode_large of
        // the stated size. libext2fs merges it with the rest of a larger
        // on-disk inode (in-inode xattrs) and sets the checksum.
        let rc = unsafe {
            sys::ext2fs_write_inode_full(
                self.raw,
                ino,
                inode as *mut RawInode as *mut sys::ext2_inode,
                std::mem::size_of::<RawInode>() as c_int,
            )
        };
        self.check(rc, op)
    }

    /// Reads, changes and writes back one inode.
    pub(crate) fn modify(
        &mut self,
        ino: Ino,
        op: &str,
        f: impl FnOnce(&mut RawInode, usize),
    ) -> Result<()> {
        let mut inode = self.read_raw(ino, op)?;
        f(&mut inode, self.inode_size());
        self.write_raw(ino, &mut inode, op)
    }

    /// Writes a brand-new inode: the whole on-disk inode is zeroed first,
    /// so nothing of a previous owner (old in-inode xattrs) survives.
    fn write_fresh(&mut self, ino: Ino, inode: &RawInode, op: &str) -> Result<()> {
        self.check_ino(ino, op)?;
        let size = self.inode_size();
        let bytes = size.max(std::mem::size_of::<RawInode>());
        let mut buf = vec![0u64; bytes.div_ceil(8)];
        let ptr = buf.as_mut_ptr() as *mut RawInode;
        // SAFETY: `buf` is 8-aligned (u64) and at least
        // size_of::<RawInode>() bytes, so `ptr` is valid for one RawInode.
        unsafe { ptr.write(*inode) };
        if size > inode::GOOD_OLD_INODE_SIZE {
            let extra = (std::mem::size_of::<RawInode>() - inode::GOOD_OLD_INODE_SIZE)
                .min(size - inode::GOOD_OLD_INODE_SIZE) as u16;
            // SAFETY: as above; a field write within the buffer.
            unsafe { (*ptr).i_extra_isize = extra };
        }
        // SAFETY: `raw` is live and the buffer holds `size` bytes (the full
        // on-disk inode), which is what we tell libext2fs.
        let rc = unsafe {
            sys::ext2fs_write_inode_full(self.raw, ino, ptr as *mut sys::ext2_inode, size as c_int)
        };
        self.check(rc, op)
    }

    /// A template for a new inode: type and permissions, owner, one link,
    /// all four times `now`, extents header when the filesystem has extents.
    fn template(
        &self,
        ino: Ino,
        mode: u32,
        uid: u32,
        gid: u32,
        now: Timestamp,
        extents: bool,
    ) -> RawInode {
        // SAFETY: all-zero is a valid ext2_inode_large (plain integers).
        let mut inode: RawInode = unsafe { std::mem::zeroed() };
        inode.i_mode = mode as u16;
        inode::set_owner(&mut inode, uid, gid);
        inode.i_links_count = 1;
        // Full-size extra area so the nanosecond and crtime fields exist;
        // write_fresh trims it to what the on-disk inode holds.
        let size = self.inode_size();
        if size > inode::GOOD_OLD_INODE_SIZE {
            inode.i_extra_isize = (std::mem::size_of::<RawInode>() - inode::GOOD_OLD_INODE_SIZE)
                .min(size - inode::GOOD_OLD_INODE_SIZE) as u16;
        }
        for f in [
            TimeField::Atime,
            TimeField::Mtime,
            TimeField::Ctime,
            TimeField::Crtime,
        ] {
            inode::set_time(&mut inode, size, f, now);
        }
        inode.i_generation = generation(ino, now);
        if extents && self.has_incompat(sys::EXT3_FEATURE_INCOMPAT_EXTENTS) {
            inode.i_flags |= sys::EXT4_EXTENTS_FL;
            // An empty extent tree root: magic 0xf30a, 0 entries, room for
            // 4, depth 0, generation 0 (little-endian header in i_block).
            inode.i_block[0] = 0xf30a;
            inode.i_block[1] = 4;
            inode.i_block[2] = 0;
        }
        inode
    }

    fn ensure_bitmaps(&mut self, op: &str) -> Result<()> {
        if self.bitmaps_loaded {
            return Ok(());
        }
        self.live(op)?;
        // SAFETY: `raw` is live; reads the block and inode bitmaps into
        // memory (a no-op for any already loaded).
        let rc = unsafe { sys::ext2fs_read_bitmaps(self.raw) };
        self.check(rc, format!("{op}: reading the allocation bitmaps"))?;
        self.bitmaps_loaded = true;
        Ok(())
    }

    /// Refuses changes to an inode that must not change: reserved inodes,
    /// free inodes, immutable/append-only, encrypted, xattr inodes.
    fn check_changeable(&self, ino: Ino, inode: &RawInode, op: &str) -> Result<()> {
        let what = self.ino_desc(ino);
        if ino != ROOT_INO && ino < self.first_ino() {
            return Err(self.refuse(
                op,
                format!("{what} is reserved for the filesystem's own use (journal, resize, ...)"),
            ));
        }
        if inode.i_links_count == 0 {
            return Err(self.err(
                ErrorKind::NotFound,
                op,
                format!("{what} is not in use (no links)"),
            ));
        }
        let flags = inode.i_flags;
        if flags & sys::EXT2_IMMUTABLE_FL != 0 {
            return Err(self.refuse(
                op,
                format!(
                    "{what} is immutable (chattr +i); remove the flag inside the guest or with \
                     `chattr -i` on a mounted copy"
                ),
            ));
        }
        if flags & sys::EXT2_APPEND_FL != 0 {
            return Err(self.refuse(
                op,
                format!(
                    "{what} is append-only (chattr +a); remove the flag inside the guest or \
                     with `chattr -a` on a mounted copy"
                ),
            ));
        }
        if flags & sys::EXT4_ENCRYPT_FL != 0 {
            return Err(self.refuse(
                op,
                format!("{what} is encrypted (fscrypt); change it from inside the guest with the key unlocked"),
            ));
        }
        if flags & sys::EXT4_INLINE_DATA_FL != 0 {
            return Err(self.refuse(
                op,
                format!("{what} keeps its data inline, which rescue-disk does not write"),
            ));
        }
        if flags & sys::EXT4_EA_INODE_FL != 0 {
            return Err(self.refuse(
                op,
                format!("{what} holds an extended attribute value, not a file"),
            ));
        }
        Ok(())
    }

    /// Checks that entries of directory `dir` may be added, removed or
    /// renamed; returns its inode.
    fn check_dir_changeable(&self, dir: Ino, op: &str) -> Result<RawInode> {
        let inode = self.read_raw(dir, op)?;
        if FileType::from_mode(inode.i_mode) != FileType::Directory {
            return Err(self.err(
                ErrorKind::NotADirectory,
                op,
                format!("{} is not a directory", self.ino_desc(dir)),
            ));
        }
        self.check_changeable(dir, &inode, op)?;
        if inode.i_flags & sys::EXT4_CASEFOLD_FL != 0 {
            return Err(self.refuse(
                op,
                format!(
                    "{} is case-insensitive (casefold), whose name hashing rescue-disk does not \
                     write; change it from inside the guest",
                    self.ino_desc(dir)
                ),
            ));
        }
        Ok(inode)
    }

    /// Checks that `dir` is a directory we may search.
    fn check_dir_searchable(&self, dir: Ino, op: &str) -> Result<RawInode> {
        let inode = self.read_raw(dir, op)?;
        if FileType::from_mode(inode.i_mode) != FileType::Directory {
            return Err(self.err(
                ErrorKind::NotADirectory,
                op,
                format!("{} is not a directory", self.ino_desc(dir)),
            ));
        }
        if inode.i_flags & sys::EXT4_ENCRYPT_FL != 0 {
            return Err(self.refuse(
                op,
                format!(
                    "{} is encrypted (fscrypt): its names are not readable without the key",
                    self.ino_desc(dir)
                ),
            ));
        }
        if inode.i_flags & sys::EXT4_INLINE_DATA_FL != 0 {
            return Err(self.refuse(
                op,
                format!("{} keeps its entries inline", self.ino_desc(dir)),
            ));
        }
        Ok(inode)
    }

    fn check_name(&self, name: &[u8], op: &str) -> Result<CString> {
        let bad = |why: &str| {
            self.err(
                ErrorKind::InvalidInput,
                op,
                format!("invalid file name '{}': {why}", show(name)),
            )
        };
        if name.is_empty() {
            return Err(bad("it is empty"));
        }
        if name == b"." || name == b".." {
            return Err(bad("'.' and '..' cannot be created, removed or renamed"));
        }
        if name.contains(&b'/') {
            return Err(bad("it contains '/'; pass a single path component"));
        }
        if name.len() > MAX_NAME_LEN {
            return Err(bad(&format!(
                "it is {} bytes long, the limit is {MAX_NAME_LEN}",
                name.len()
            )));
        }
        CString::new(name).map_err(|_| bad("it contains a NUL byte"))
    }

    // --- looking things up ----------------------------------------------

    /// The inode `name` links to in directory `dir`, if any.
    fn lookup_in(&self, dir: Ino, name: &[u8], op: &str) -> Result<Option<Ino>> {
        if name.len() > MAX_NAME_LEN {
            return Ok(None);
        }
        let mut ino: sys::ext2_ino_t = 0;
        // SAFETY: `raw` is live; the name pointer and length describe a
        // valid byte slice (no NUL terminator needed); `ino` is a valid out
        // pointer; a null block buffer makes libext2fs allocate its own.
        let rc = unsafe {
            sys::ext2fs_lookup(
                self.raw,
                dir,
                name.as_ptr() as *const c_char,
                name.len() as c_int,
                std::ptr::null_mut(),
                &mut ino,
            )
        };
        if rc == sys::EXT2_ET_FILE_NOT_FOUND as sys::errcode_t {
            let _ = self.chan.take_error();
            return Ok(None);
        }
        self.check(rc, op)?;
        Ok(Some(ino))
    }

    /// Resolves an absolute path inside this filesystem without following
    /// symbolic links: a symlink (or any non-directory) in an intermediate
    /// component is an error naming it; a symlink as the last component is
    /// returned as itself. `Ok(None)` when a component does not exist.
    pub fn lookup(&mut self, path: &[u8]) -> Result<Option<Ino>> {
        let op = format!("looking up {}", show(path));
        self.live(&op)?;
        if !path.starts_with(b"/") {
            return Err(self.err(
                ErrorKind::InvalidInput,
                &op,
                "the path must be absolute (start with '/') inside the filesystem",
            ));
        }
        let comps: Vec<&[u8]> = path
            .split(|&b| b == b'/')
            .filter(|c| !c.is_empty() && *c != b".")
            .collect();
        if comps.len() > MAX_DEPTH {
            return Err(self.err(ErrorKind::InvalidInput, &op, "the path is too deep"));
        }
        let mut cur = ROOT_INO;
        let mut cur_path: Vec<u8> = b"/".to_vec();
        for (i, comp) in comps.iter().enumerate() {
            self.check_dir_searchable(cur, &op).map_err(|e| {
                if e.kind() == ErrorKind::NotADirectory {
                    self.err(
                        ErrorKind::NotADirectory,
                        &op,
                        format!("{} is not a directory", show(&cur_path)),
                    )
                } else {
                    e
                }
            })?;
            let Some(next) = self.lookup_in(cur, comp, &op)? else {
                return Ok(None);
            };
            cur_path = if *comp == b".." {
                // Only for messages: drop the last component.
                let mut p = cur_path.clone();
                if let Some(pos) = p.iter().rposition(|&b| b == b'/') {
                    p.truncate(pos.max(1));
                }
                p
            } else {
                join(&cur_path, comp)
            };
            self.paths.entry(next).or_insert_with(|| cur_path.clone());
            if i + 1 < comps.len() {
                let inode = self.read_raw(next, &op)?;
                match FileType::from_mode(inode.i_mode) {
                    FileType::Directory => {}
                    FileType::Symlink => {
                        return Err(self.err(
                            ErrorKind::SymlinkInPath,
                            &op,
                            format!(
                                "{} is a symbolic link; resolve it (inside the guest's root) \
                                 and look up the resulting path",
                                show(&cur_path)
                            ),
                        ))
                    }
                    _ => {
                        return Err(self.err(
                            ErrorKind::NotADirectory,
                            &op,
                            format!("{} is not a directory", show(&cur_path)),
                        ))
                    }
                }
            }
            cur = next;
        }
        Ok(Some(cur))
    }

    /// Type, permissions, owner, size, links, times and flags of `ino`.
    pub fn stat(&mut self, ino: Ino) -> Result<Stat> {
        let op = format!("reading {}", self.ino_desc(ino));
        let inode = self.read_raw(ino, &op)?;
        Ok(inode::stat_of(ino, &inode, self.inode_size()))
    }

    /// The entries of directory `ino` (without `.` and `..`).
    pub fn read_dir(&mut self, ino: Ino) -> Result<Vec<DirEntry>> {
        let op = format!("listing {}", self.ino_desc(ino));
        self.check_dir_searchable(ino, &op)?;
        let mut entries = Vec::new();
        let mut too_many = false;
        self.iterate_dir(ino, 0, &op, &mut |d: &mut dir::Dirent<'_>| {
            if d.kind() != dir::DirentKind::Other {
                return DirVisit::Continue;
            }
            if entries.len() >= MAX_DIR_ENTRIES {
                too_many = true;
                return DirVisit::Stop;
            }
            entries.push(DirEntry {
                name: d.name().to_vec(),
                ino: d.ino(),
                file_type: FileType::from_dirent_code(d.file_type()),
            });
            DirVisit::Continue
        })?;
        if too_many {
            return Err(self.err(
                ErrorKind::TooLarge,
                &op,
                format!("the directory has more than {MAX_DIR_ENTRIES} entries"),
            ));
        }
        Ok(entries)
    }

    /// Runs `visit` on every entry of directory `dir` (libext2fs'
    /// dir_iterate2 with `flags`).
    fn iterate_dir(
        &self,
        dir: Ino,
        flags: u32,
        op: &str,
        visit: &mut dyn FnMut(&mut dir::Dirent<'_>) -> DirVisit,
    ) -> Result<()> {
        let mut state = dir::IterState::new(visit);
        // SAFETY: `raw` is live; the callback is our trampoline and
        // `state` outlives the call; libext2fs allocates its own buffer.
        let rc = unsafe {
            sys::ext2fs_dir_iterate2(
                self.raw,
                dir,
                flags as c_int,
                std::ptr::null_mut(),
                Some(dir::trampoline),
                state.as_priv(),
            )
        };
        self.check(rc, op)?;
        if let Some(why) = state.failure() {
            return Err(self.err(ErrorKind::Corrupt, op, why));
        }
        Ok(())
    }

    /// The contents of regular file `ino`; an error (kind `TooLarge`) if it
    /// is larger than `max_bytes`.
    pub fn read_file(&mut self, ino: Ino, max_bytes: u64) -> Result<Vec<u8>> {
        let op = format!("reading {}", self.ino_desc(ino));
        let inode = self.read_raw(ino, &op)?;
        if FileType::from_mode(inode.i_mode) != FileType::Regular {
            return Err(self.err(ErrorKind::InvalidInput, &op, "not a regular file"));
        }
        if inode.i_flags & sys::EXT4_ENCRYPT_FL != 0 {
            return Err(self.refuse(&op, "the file is encrypted (fscrypt)"));
        }
        let size = inode::size(&inode);
        if size > max_bytes {
            return Err(self.err(
                ErrorKind::TooLarge,
                &op,
                format!("the file is {size} bytes, more than the limit of {max_bytes}"),
            ));
        }
        self.read_contents(ino, size, &op)
    }

    /// Reads `size` bytes of `ino` through libext2fs' file API (holes read
    /// as zeros).
    fn read_contents(&self, ino: Ino, size: u64, op: &str) -> Result<Vec<u8>> {
        let len = usize::try_from(size)
            .map_err(|_| self.err(ErrorKind::TooLarge, op, "the file does not fit in memory"))?;
        let mut data = vec![0u8; len];
        if len == 0 {
            return Ok(data);
        }
        let mut file: sys::ext2_file_t = std::ptr::null_mut();
        // SAFETY: `raw` is live; a null inode makes libext2fs read it;
        // `file` is a valid out pointer.
        let rc =
            unsafe { sys::ext2fs_file_open2(self.raw, ino, std::ptr::null_mut(), 0, &mut file) };
        self.check(rc, op)?;
        let mut done = 0usize;
        let mut result = Ok(());
        while done < len {
            let want = (len - done).min(1 << 20) as c_uint;
            let mut got: c_uint = 0;
            // SAFETY: `file` is open; the destination is the unfilled tail
            // of `data`, at least `want` bytes long.
            let rc = unsafe {
                sys::ext2fs_file_read(
                    file,
                    data[done..].as_mut_ptr() as *mut c_void,
                    want,
                    &mut got,
                )
            };
            if let Err(e) = self.check(rc, op) {
                result = Err(e);
                break;
            }
            if got == 0 || got > want {
                result = Err(self.err(
                    ErrorKind::Corrupt,
                    op,
                    format!("the file ended after {done} of {len} bytes; run `e2fsck -f`"),
                ));
                break;
            }
            done += got as usize;
        }
        // SAFETY: `file` is open and closed exactly once here.
        let rc = unsafe { sys::ext2fs_file_close(file) };
        result?;
        self.check(rc, op)?;
        Ok(data)
    }

    /// The target of symbolic link `ino` (fast or slow).
    pub fn read_link(&mut self, ino: Ino) -> Result<Vec<u8>> {
        let op = format!("reading the symbolic link {}", self.ino_desc(ino));
        let inode = self.read_raw(ino, &op)?;
        if FileType::from_mode(inode.i_mode) != FileType::Symlink {
            return Err(self.err(ErrorKind::InvalidInput, &op, "not a symbolic link"));
        }
        if inode.i_flags & sys::EXT4_ENCRYPT_FL != 0 {
            return Err(self.refuse(&op, "the link is encrypted (fscrypt)"));
        }
        let size = inode::size(&inode);
        if size == 0 || size >= u64::from(self.blocksize()) {
            return Err(self.err(
                ErrorKind::Corrupt,
                &op,
                format!("the link target length {size} is impossible; run `e2fsck -f`"),
            ));
        }
        // Fast symlinks keep the target in i_block and own no data block
        // (an xattr block does not count).
        let ea_sectors = if inode.i_file_acl != 0 {
            u64::from(self.blocksize() / 512)
        } else {
            0
        };
        let data_sectors = inode::raw_blocks(&inode).saturating_sub(ea_sectors);
        let ib = std::mem::size_of_val(&inode.i_block) as u64;
        if size < ib && data_sectors == 0 {
            let bytes: Vec<u8> = inode.i_block.iter().flat_map(|w| w.to_le_bytes()).collect();
            return Ok(bytes[..size as usize].to_vec());
        }
        self.read_contents(ino, size, &op)
    }

    // --- metadata ----------------------------------------------------------

    /// Sets the permission bits (07777) of `ino`, keeping its type; updates
    /// ctime.
    pub fn set_mode(&mut self, ino: Ino, mode: u16) -> Result<()> {
        let op = format!("changing the mode of {}", self.ino_desc(ino));
        if mode & !0o7777 != 0 {
            return Err(self.err(
                ErrorKind::InvalidInput,
                &op,
                format!("mode {mode:#o} has bits outside 07777; pass permission bits only"),
            ));
        }
        let inode = self.read_raw(ino, &op)?;
        self.check_changeable(ino, &inode, &op)?;
        let now = Timestamp::now();
        self.modify(ino, &op, |i, size| {
            i.i_mode = (i.i_mode & !0o7777) | mode;
            inode::set_time(i, size, TimeField::Ctime, now);
        })
    }

    /// Sets owner and group (full 32 bits); updates ctime.
    pub fn set_owner(&mut self, ino: Ino, uid: u32, gid: u32) -> Result<()> {
        let op = format!("changing the owner of {}", self.ino_desc(ino));
        let inode = self.read_raw(ino, &op)?;
        self.check_changeable(ino, &inode, &op)?;
        let now = Timestamp::now();
        self.modify(ino, &op, |i, size| {
            inode::set_owner(i, uid, gid);
            inode::set_time(i, size, TimeField::Ctime, now);
        })
    }

    /// Sets access and modification times; ctime becomes now.
    pub fn set_times(&mut self, ino: Ino, atime: Timestamp, mtime: Timestamp) -> Result<()> {
        let op = format!("changing the times of {}", self.ino_desc(ino));
        let inode = self.read_raw(ino, &op)?;
        self.check_changeable(ino, &inode, &op)?;
        let now = Timestamp::now();
        self.modify(ino, &op, |i, size| {
            inode::set_time(i, size, TimeField::Atime, atime);
            inode::set_time(i, size, TimeField::Mtime, mtime);
            inode::set_time(i, size, TimeField::Ctime, now);
        })
    }

    /// Sets the ctime of `ino` to `now` (after xattr changes).
    pub(crate) fn touch_ctime(&mut self, ino: Ino, op: &str) -> Result<()> {
        let now = Timestamp::now();
        self.modify(ino, op, |i, size| {
            inode::set_time(i, size, TimeField::Ctime, now)
        })
    }

    // --- contents ----------------------------------------------------------

    /// Replaces the contents of regular file `ino` with `data`, keeping the
    /// inode (so hard links, xattrs and SELinux labels stay): frees all its
    /// blocks, writes the new data, sets the size, mtime and ctime.
    ///
    /// Not atomic: a write that cannot fit is refused before anything
    /// changes (kind `NoSpace`), but a device failure midway can leave the
    /// file truncated or partly written (the filesystem stays consistent).
    pub fn write_file(&mut self, ino: Ino, data: &[u8]) -> Result<()> {
        let op = format!("writing {}", self.ino_desc(ino));
        let inode = self.read_raw(ino, &op)?;
        if FileType::from_mode(inode.i_mode) != FileType::Regular {
            return Err(self.err(ErrorKind::InvalidInput, &op, "not a regular file"));
        }
        self.check_changeable(ino, &inode, &op)?;
        if inode.i_flags & sys::EXT4_VERITY_FL != 0 {
            return Err(self.refuse(
                &op,
                "the file is protected by fs-verity and cannot be changed in place; replace it \
                 from inside the guest",
            ));
        }
        self.ensure_bitmaps(&op)?;
        self.check_room(data.len() as u64, self.blocks_held(&inode), 0, &op)?;
        self.truncate_all(ino, &op)?;
        self.write_contents(ino, data, &op)?;
        let now = Timestamp::now();
        self.modify(ino, &op, |i, size| {
            inode::set_time(i, size, TimeField::Mtime, now);
            inode::set_time(i, size, TimeField::Ctime, now);
        })
    }

    /// Free blocks according to the group descriptors (which libext2fs
    /// keeps current as we allocate and free).
    pub fn free_blocks(&self) -> u64 {
        (0..self.group_count())
            // SAFETY: `raw` is live and `g` < group_desc_count.
            .map(|g| u64::from(unsafe { sys::ext2fs_bg_free_blocks_count(self.raw, g) }))
            .sum()
    }

    /// Blocks needed to store `bytes` of file data, with a generous
    /// allowance for indirect or extent tree blocks (none for up to 4
    /// blocks: 4 extents fit in the inode, 12 direct block pointers too).
    fn blocks_for(&self, bytes: u64) -> u64 {
        let bs = u64::from(self.blocksize());
        let data = bytes.div_ceil(bs);
        if data <= 4 {
            return data;
        }
        data + data / (bs / 4) + 2
    }

    /// Data blocks `inode` holds that punching would give back (its xattr
    /// block, possibly shared, is not among them).
    fn blocks_held(&self, inode: &RawInode) -> u64 {
        let bs = u64::from(self.blocksize());
        let raw = inode::raw_blocks(inode);
        let blocks = if inode.i_flags & 0x0004_0000 != 0 {
            raw // EXT4_HUGE_FILE_FL: counted in filesystem blocks
        } else {
            raw * 512 / bs
        };
        blocks.saturating_sub(u64::from(inode.i_file_acl != 0))
    }

    /// Refuses, before changing anything, a write of `bytes` that cannot
    /// fit even after `reclaimable` blocks are freed: a full disk must not
    /// leave a config file truncated.
    fn check_room(&self, bytes: u64, reclaimable: u64, extra: u64, op: &str) -> Result<()> {
        let need = self.blocks_for(bytes) + extra;
        let have = self.free_blocks() + reclaimable;
        if need > have {
            return Err(self.err(
                ErrorKind::NoSpace,
                op,
                format!(
                    "the filesystem is full: {need} blocks of {} bytes are needed, {have} are \
                     available; free some space in it first (nothing was changed)",
                    self.blocksize()
                ),
            ));
        }
        Ok(())
    }

    /// Frees every data block of `ino` and sets its size to 0.
    fn truncate_all(&mut self, ino: Ino, op: &str) -> Result<()> {
        self.unmap_last_fs_block(ino, op)?;
        let mut inode = self.read_raw(ino, op)?;
        self.punch_all(ino, &mut inode, op)?;
        self.modify(ino, op, |i, _| inode::set_size(i, 0))
    }

    /// Frees all data blocks (and extent tree blocks) of `ino`, whose
    /// current inode is `inode`; libext2fs writes the inode back.
    fn punch_all(&mut self, ino: Ino, inode: &mut RawInode, op: &str) -> Result<()> {
        // SAFETY: `raw` is live; `inode` is a whole ext2_inode_large, of
        // which libext2fs uses the leading ext2_inode part.
        let valid = unsafe {
            sys::ext2fs_inode_has_valid_blocks2(
                self.raw,
                inode as *mut RawInode as *mut sys::ext2_inode,
            )
        };
        if valid == 0 {
            return Ok(());
        }
        // SAFETY: as above; punch frees logical blocks 0..=max and writes
        // the (leading part of the) inode back itself.
        let rc = unsafe {
            sys::ext2fs_punch(
                self.raw,
                ino,
                inode as *mut RawInode as *mut sys::ext2_inode,
                std::ptr::null_mut(),
                0,
                !0,
            )
        };
        self.check(rc, op)
    }

    /// Works around a libext2fs bug (1.46.6 to 1.47.3; Debian bookworm has
    /// 1.47.0): `ext2fs_punch` refuses to free an extent that ends at the
    /// last block of the filesystem (an off-by-one check), after having
    /// already removed the extent from the tree, which leaks its blocks.
    /// Before punching we cut that one block off its extent ourselves.
    fn unmap_last_fs_block(&mut self, ino: Ino, op: &str) -> Result<()> {
        let inode = self.read_raw(ino, op)?;
        if inode.i_flags & sys::EXT4_EXTENTS_FL == 0 {
            return Ok(()); // block-mapped files are freed block by block
        }
        // SAFETY: `raw` is live and `super` valid (see `sb`).
        let blocks = unsafe { sys::ext2fs_blocks_count((*self.raw).super_) };
        let Some(last) = blocks.checked_sub(1) else {
            return Ok(());
        };
        let mut handle: sys::ext2_extent_handle_t = std::ptr::null_mut();
        // SAFETY: `raw` is live; a null inode makes libext2fs read it into
        // the handle; `handle` is a valid out pointer.
        let rc =
            unsafe { sys::ext2fs_extent_open2(self.raw, ino, std::ptr::null_mut(), &mut handle) };
        self.check(rc, op)?;
        let result = self.cut_last_block(handle, last, op);
        // SAFETY: `handle` is open and freed exactly once, here.
        unsafe { sys::ext2fs_extent_free(handle) };
        if !result? {
            return Ok(());
        }
        // SAFETY: `raw` is live with bitmaps loaded (callers free blocks
        // only after ensure_bitmaps); `last` < blocks_count.
        unsafe { sys::ext2fs_block_alloc_stats2(self.raw, last, -1) };
        let mut inode = self.read_raw(ino, op)?;
        // SAFETY: `raw` is live; `inode` is a whole inode.
        let rc = unsafe {
            sys::ext2fs_iblk_sub_blocks(
                self.raw,
                &mut inode as *mut RawInode as *mut sys::ext2_inode,
                1,
            )
        };
        self.check(rc, op)?;
        self.write_raw(ino, &mut inode, op)
    }

    /// Finds the leaf extent mapping physical block `last` and shortens
    /// (or deletes) it; true when it did.
    fn cut_last_block(
        &self,
        handle: sys::ext2_extent_handle_t,
        last: u64,
        op: &str,
    ) -> Result<bool> {
        // SAFETY: ext2fs_extent is plain integers; zero is valid.
        let mut ext: sys::ext2fs_extent = unsafe { std::mem::zeroed() };
        let mut op_code = sys::EXT2_EXTENT_ROOT;
        // Every node of a sane tree is visited once; bound it anyway.
        for _ in 0..(1u64 << 32) {
            // SAFETY: `handle` is open; `ext` is a valid out pointer.
            let rc = unsafe { sys::ext2fs_extent_get(handle, op_code as c_int, &mut ext) };
            if rc == sys::EXT2_ET_EXTENT_NO_NEXT as sys::errcode_t {
                let _ = self.chan.take_error();
                return Ok(false);
            }
            self.check(rc, op)?;
            op_code = sys::EXT2_EXTENT_NEXT;
            let is_leaf = ext.e_flags & sys::EXT2_EXTENT_FLAGS_LEAF != 0;
            if !is_leaf
                || ext.e_len == 0
                || ext.e_pblk.checked_add(u64::from(ext.e_len) - 1) != Some(last)
            {
                continue;
            }
            let rc = if ext.e_len > 1 {
                ext.e_len -= 1;
                // SAFETY: `handle` is positioned at this extent; replacing
                // it with a shorter one keeps its start (parents unchanged).
                unsafe { sys::ext2fs_extent_replace(handle, 0, &mut ext) }
            } else {
                // SAFETY: `handle` is positioned at this extent; deleting
                // it frees emptied tree blocks itself.
                unsafe { sys::ext2fs_extent_delete(handle, 0) }
            };
            self.check(rc, op)?;
            return Ok(true);
        }
        Err(self.err(
            ErrorKind::Corrupt,
            op,
            "the extent tree does not end; run `e2fsck -f`",
        ))
    }

    /// Writes `data` from offset 0 through libext2fs' file API (which
    /// allocates blocks and updates size and block counts).
    fn write_contents(&mut self, ino: Ino, data: &[u8], op: &str) -> Result<()> {
        if data.is_empty() {
            return Ok(());
        }
        let mut file: sys::ext2_file_t = std::ptr::null_mut();
        // SAFETY: `raw` is live; a null inode makes libext2fs read it;
        // `file` is a valid out pointer.
        let rc = unsafe {
            sys::ext2fs_file_open2(
                self.raw,
                ino,
                std::ptr::null_mut(),
                sys::EXT2_FILE_WRITE as c_int,
                &mut file,
            )
        };
        self.check(rc, op)?;
        let mut result = Ok(());
        for chunk in data.chunks(1 << 20) {
            let mut written: c_uint = 0;
            // SAFETY: `file` is open; the source is `chunk`, whose length we
            // pass.
            let rc = unsafe {
                sys::ext2fs_file_write(
                    file,
                    chunk.as_ptr() as *const c_void,
                    chunk.len() as c_uint,
                    &mut written,
                )
            };
            if let Err(e) = self.check(rc, op) {
                result = Err(e);
                break;
            }
            if written as usize != chunk.len() {
                result = Err(self.err(ErrorKind::Other, op, "libext2fs wrote less than asked"));
                break;
            }
        }
        // SAFETY: `file` is open and closed exactly once; closing flushes
        // the last block and writes the inode.
        let rc = unsafe { sys::ext2fs_file_close(file) };
        result?;
        self.check(rc, op)
    }

    // --- creating ----------------------------------------------------------

    /// Validates a new entry `name` in `parent`: a good name, a directory
    /// we may change, and no existing entry of that name.
    fn prepare_new_entry(&mut self, parent: Ino, name: &[u8], op: &str) -> Result<CString> {
        let cname = self.check_name(name, op)?;
        self.check_dir_changeable(parent, op)?;
        if self.lookup_in(parent, name, op)?.is_some() {
            return Err(self.err(
                ErrorKind::AlreadyExists,
                op,
                format!("{} already exists", self.entry_desc(parent, name)),
            ));
        }
        Ok(cname)
    }

    fn new_inode(&mut self, parent: Ino, mode: u32, op: &str) -> Result<Ino> {
        let mut ino: sys::ext2_ino_t = 0;
        // SAFETY: `raw` is live with bitmaps loaded (callers ensure it); a
        // null map means the filesystem's inode bitmap.
        let rc = unsafe {
            sys::ext2fs_new_inode(
                self.raw,
                parent,
                mode as c_int,
                std::ptr::null_mut(),
                &mut ino,
            )
        };
        self.check(rc, op)?;
        Ok(ino)
    }

    fn inode_alloc_stats(&mut self, ino: Ino, delta: i32, is_dir: bool) {
        // SAFETY: `raw` is live with bitmaps loaded; `ino` is in range (it
        // came from ext2fs_new_inode or a directory entry we read).
        unsafe { sys::ext2fs_inode_alloc_stats2(self.raw, ino, delta, c_int::from(is_dir)) };
    }

    /// Adds entry `name` -> `ino` to `dir`, growing a linear directory by
    /// a block when it is full (htree directories grow themselves).
    fn add_entry(
        &mut self,
        dir: Ino,
        name: &CString,
        ino: Ino,
        ft: FileType,
        op: &str,
    ) -> Result<()> {
        let flags = c_int::from(ft.dirent_code());
        // SAFETY: `raw` is live (bitmaps loaded by the caller); `name` is a
        // NUL-terminated string without '/' of at most 255 bytes.
        let rc = unsafe { sys::ext2fs_link(self.raw, dir, name.as_ptr(), ino, flags) };
        if rc != sys::EXT2_ET_DIR_NO_SPACE as sys::errcode_t {
            return self.check(rc, op);
        }
        let _ = self.chan.take_error();
        let dir_inode = self.read_raw(dir, op)?;
        if dir_inode.i_flags & sys::EXT2_INDEX_FL != 0 {
            return Err(self.err(
                ErrorKind::NoSpace,
                op,
                format!(
                    "the hashed directory {} is full at its maximum depth; enable large_dir \
                     (`tune2fs -O large_dir`) or remove entries",
                    self.ino_desc(dir)
                ),
            ));
        }
        // SAFETY: `raw` is live with bitmaps loaded.
        let rc = unsafe { sys::ext2fs_expand_dir(self.raw, dir) };
        self.check(rc, op)?;
        // SAFETY: as for the first ext2fs_link call.
        let rc = unsafe { sys::ext2fs_link(self.raw, dir, name.as_ptr(), ino, flags) };
        self.check(rc, op)
    }

    /// mtime and ctime of a directory whose entries changed.
    fn touch_dir(&mut self, dir: Ino, op: &str) -> Result<()> {
        let now = Timestamp::now();
        self.modify(dir, op, |i, size| {
            inode::set_time(i, size, TimeField::Mtime, now);
            inode::set_time(i, size, TimeField::Ctime, now);
        })
    }

    /// Adds `delta` (+1/-1) to a directory's link count, honouring
    /// `dir_nlink` (a count of 1 means "too many to count").
    fn adjust_dir_links(&mut self, dir: Ino, delta: i32, op: &str) -> Result<()> {
        let dir_nlink = self.has_ro_compat(sys::EXT4_FEATURE_RO_COMPAT_DIR_NLINK);
        self.modify(dir, op, |i, _| {
            let n = i.i_links_count;
            if delta > 0 {
                if n == 1 && dir_nlink {
                    // stays "many"
                } else if u32::from(n) + 1 >= sys::EXT2_LINK_MAX {
                    i.i_links_count = if dir_nlink { 1 } else { n };
                } else {
                    i.i_links_count = n + 1;
                }
            } else if n > 2 {
                i.i_links_count = n - 1;
            }
        })
    }

    /// Refuses adding a subdirectory to a directory at the link limit.
    fn check_room_for_subdir(&self, dir_inode: &RawInode, dir: Ino, op: &str) -> Result<()> {
        let dir_nlink = self.has_ro_compat(sys::EXT4_FEATURE_RO_COMPAT_DIR_NLINK);
        if !dir_nlink && u32::from(dir_inode.i_links_count) + 1 >= sys::EXT2_LINK_MAX {
            return Err(self.err(
                ErrorKind::NoSpace,
                op,
                format!(
                    "{} has too many subdirectories (link count limit)",
                    self.ino_desc(dir)
                ),
            ));
        }
        Ok(())
    }

    /// Creates regular file `name` in `parent` with `data`, permission
    /// bits `mode` (07777) and owner `uid`:`gid`. Returns the new inode.
    pub fn create_file(
        &mut self,
        parent: Ino,
        name: &[u8],
        data: &[u8],
        mode: u16,
        uid: u32,
        gid: u32,
    ) -> Result<Ino> {
        let op = format!("creating {}", self.entry_desc(parent, name));
        self.check_mode(mode, &op)?;
        let cname = self.prepare_new_entry(parent, name, &op)?;
        self.ensure_bitmaps(&op)?;
        self.check_room(data.len() as u64, 0, 0, &op)?;
        let ftype = sys::LINUX_S_IFREG | u32::from(mode);
        let ino = self.new_inode(parent, ftype, &op)?;
        let now = Timestamp::now();
        let template = self.template(ino, ftype, uid, gid, now, true);
        self.write_fresh(ino, &template, &op)?;
        self.inode_alloc_stats(ino, 1, false);
        if let Err(e) = self.add_entry(parent, &cname, ino, FileType::Regular, &op) {
            self.discard_inode(ino, &op);
            return Err(e);
        }
        self.remember(parent, name, ino);
        self.touch_dir(parent, &op)?;
        // The directory may have grown into the space the data needed.
        if let Err(e) = self
            .check_room(data.len() as u64, 0, 0, &op)
            .and_then(|()| self.write_contents(ino, data, &op))
        {
            self.undo_create(parent, &cname, ino, &op);
            return Err(e);
        }
        Ok(ino)
    }

    fn check_mode(&self, mode: u16, op: &str) -> Result<()> {
        if mode & !0o7777 != 0 {
            return Err(self.err(
                ErrorKind::InvalidInput,
                op,
                format!("mode {mode:#o} has bits outside 07777; pass permission bits only"),
            ));
        }
        Ok(())
    }

    /// Best-effort undo of a created and linked file whose data could not
    /// be written: removes the entry and frees the inode.
    fn undo_create(&mut self, parent: Ino, name: &CString, ino: Ino, op: &str) {
        // SAFETY: `raw` is live; `name` is NUL-terminated.
        let rc = unsafe { sys::ext2fs_unlink(self.raw, parent, name.as_ptr(), ino, 0) };
        if let Err(e) = self.check(rc, op) {
            tracing::warn!(fs = %self.name, "undoing the creation of inode {ino} failed: {e}");
            return;
        }
        self.discard_inode(ino, op);
    }

    /// Best-effort undo of a half-created inode (its entry could not be
    /// added): frees its blocks and the inode. Errors are only logged; the
    /// caller reports the original failure.
    fn discard_inode(&mut self, ino: Ino, op: &str) {
        if let Err(e) = self.release_inode(ino, op) {
            tracing::warn!(fs = %self.name, "undoing the creation of inode {ino} failed: {e}");
        }
    }

    /// Drops the last link of `ino`: frees its xattr block, data blocks
    /// and the inode itself, and records the deletion time.
    fn release_inode(&mut self, ino: Ino, op: &str) -> Result<()> {
        self.unmap_last_fs_block(ino, op)?;
        let mut inode = self.read_raw(ino, op)?;
        let is_dir = FileType::from_mode(inode.i_mode) == FileType::Directory;
        // SAFETY: `raw` is live with bitmaps loaded; `inode` is a whole
        // ext2_inode_large; libext2fs drops the xattr block reference
        // (freeing it at refcount 0) and updates the in-memory inode only.
        let rc = unsafe { sys::ext2fs_free_ext_attr(self.raw, ino, &mut inode) };
        self.check(rc, op)?;
        self.punch_all(ino, &mut inode, op)?;
        let now = Timestamp::now();
        inode.i_links_count = 0;
        // Like e2fsprogs: a deletion time is never mistaken for an inode
        // number (orphan list links share the field).
        inode.i_dtime = (now.secs as u32).max(self.sb().s_inodes_count);
        inode::set_size(&mut inode, 0);
        inode::set_time(&mut inode, self.inode_size(), TimeField::Ctime, now);
        self.write_raw(ino, &mut inode, op)?;
        self.inode_alloc_stats(ino, -1, is_dir);
        self.paths.remove(&ino);
        Ok(())
    }

    /// Creates directory `name` in `parent` with permission bits `mode` and
    /// owner `uid`:`gid`. Returns the new inode.
    pub fn mkdir(
        &mut self,
        parent: Ino,
        name: &[u8],
        mode: u16,
        uid: u32,
        gid: u32,
    ) -> Result<Ino> {
        let op = format!("creating directory {}", self.entry_desc(parent, name));
        self.check_mode(mode, &op)?;
        let cname = self.prepare_new_entry(parent, name, &op)?;
        let parent_inode = self.read_raw(parent, &op)?;
        self.check_room_for_subdir(&parent_inode, parent, &op)?;
        self.ensure_bitmaps(&op)?;
        let ftype = sys::LINUX_S_IFDIR | u32::from(mode);
        let ino = self.new_inode(parent, ftype, &op)?;
        let now = Timestamp::now();
        let mut template = self.template(ino, ftype, uid, gid, now, true);
        template.i_links_count = 2;
        // Allocate the first directory block near the inode.
        // SAFETY: `raw` is live; `template` is a whole inode (read only).
        let goal = unsafe {
            sys::ext2fs_find_inode_goal(
                self.raw,
                ino,
                &mut template as *mut RawInode as *mut sys::ext2_inode,
                0,
            )
        };
        let mut blk: sys::blk64_t = 0;
        // SAFETY: `raw` is live with bitmaps loaded; null map = the
        // filesystem's block bitmap; `blk` is a valid out pointer.
        let rc = unsafe { sys::ext2fs_new_block2(self.raw, goal, std::ptr::null_mut(), &mut blk) };
        self.check(rc, &op)?;
        let mut block = CBuf(std::ptr::null_mut());
        // SAFETY: `raw` is live; libext2fs mallocs a block-sized buffer
        // holding "." and ".." (and the checksum tail) into `block.0`,
        // which CBuf frees.
        let rc = unsafe { sys::ext2fs_new_dir_block(self.raw, ino, parent, &mut block.0) };
        self.check(rc, &op)?;
        inode::set_size(&mut template, u64::from(self.blocksize()));
        // SAFETY: `raw` is live; `template` is a whole inode.
        let rc = unsafe {
            sys::ext2fs_iblk_set(
                self.raw,
                &mut template as *mut RawInode as *mut sys::ext2_inode,
                1,
            )
        };
        self.check(rc, &op)?;
        let extents = template.i_flags & sys::EXT4_EXTENTS_FL != 0;
        if !extents {
            template.i_block = [0; 15];
            template.i_block[0] = blk as u32;
        }
        self.write_fresh(ino, &template, &op)?;
        // SAFETY: `raw` is live; `block.0` is the block-sized buffer from
        // ext2fs_new_dir_block; libext2fs sets the checksum and writes it.
        let rc =
            unsafe { sys::ext2fs_write_dir_block4(self.raw, blk, block.0 as *mut c_void, 0, ino) };
        self.check(rc, &op)?;
        if extents {
            let mut inode = self.read_raw(ino, &op)?;
            let mut handle: sys::ext2_extent_handle_t = std::ptr::null_mut();
            // SAFETY: `raw` is live; `inode` (a whole ext2_inode_large,
            // which outlives the handle) holds the empty extent root we
            // wrote; `handle` is a valid out pointer.
            let rc = unsafe {
                sys::ext2fs_extent_open2(
                    self.raw,
                    ino,
                    &mut inode as *mut RawInode as *mut sys::ext2_inode,
                    &mut handle,
                )
            };
            self.check(rc, &op)?;
            // SAFETY: `handle` is open; maps logical block 0 to `blk` and
            // writes the inode; then the handle is freed exactly once.
            let rc = unsafe {
                let rc = sys::ext2fs_extent_set_bmap(handle, 0, blk, 0);
                sys::ext2fs_extent_free(handle);
                rc
            };
            self.check(rc, &op)?;
        }
        // SAFETY: `raw` is live with bitmaps loaded; `blk` came from
        // ext2fs_new_block2.
        unsafe { sys::ext2fs_block_alloc_stats2(self.raw, blk, 1) };
        self.inode_alloc_stats(ino, 1, true);
        if let Err(e) = self.add_entry(parent, &cname, ino, FileType::Directory, &op) {
            self.discard_inode(ino, &op);
            return Err(e);
        }
        self.remember(parent, name, ino);
        self.adjust_dir_links(parent, 1, &op)?;
        self.touch_dir(parent, &op)?;
        Ok(ino)
    }

    /// Creates symbolic link `name` in `parent` pointing to `target`, owned
    /// by `uid`:`gid` (mode 0777 like every Linux symlink).
    pub fn symlink(
        &mut self,
        parent: Ino,
        name: &[u8],
        target: &[u8],
        uid: u32,
        gid: u32,
    ) -> Result<Ino> {
        let op = format!("creating symbolic link {}", self.entry_desc(parent, name));
        if target.is_empty() || target.len() >= self.blocksize() as usize {
            return Err(self.err(
                ErrorKind::InvalidInput,
                &op,
                format!(
                    "a link target must be 1 to {} bytes, not {}",
                    self.blocksize() - 1,
                    target.len()
                ),
            ));
        }
        let ctarget = CString::new(target).map_err(|_| {
            self.err(
                ErrorKind::InvalidInput,
                &op,
                "the link target contains a NUL byte",
            )
        })?;
        let cname = self.prepare_new_entry(parent, name, &op)?;
        self.ensure_bitmaps(&op)?;
        let ino = self.new_inode(parent, sys::LINUX_S_IFLNK | 0o777, &op)?;
        // SAFETY: `raw` is live with bitmaps loaded; a null name means "do
        // not link" (we link below, growing the directory if needed);
        // `ctarget` is NUL-terminated and shorter than a block.
        let rc = unsafe {
            sys::ext2fs_symlink(self.raw, parent, ino, std::ptr::null(), ctarget.as_ptr())
        };
        self.check(rc, &op)?;
        let now = Timestamp::now();
        let generation = generation(ino, now);
        self.modify(ino, &op, |i, size| {
            inode::set_owner(i, uid, gid);
            for f in [
                TimeField::Atime,
                TimeField::Mtime,
                TimeField::Ctime,
                TimeField::Crtime,
            ] {
                inode::set_time(i, size, f, now);
            }
            i.i_generation = generation;
        })?;
        if let Err(e) = self.add_entry(parent, &cname, ino, FileType::Symlink, &op) {
            self.discard_inode(ino, &op);
            return Err(e);
        }
        self.remember(parent, name, ino);
        self.touch_dir(parent, &op)?;
        Ok(ino)
    }

    /// Adds another name `name` in `parent` for the existing non-directory
    /// `ino` (a hard link).
    pub fn hard_link(&mut self, ino: Ino, parent: Ino, name: &[u8]) -> Result<()> {
        let op = format!(
            "linking {} as {}",
            self.ino_desc(ino),
            self.entry_desc(parent, name)
        );
        let inode = self.read_raw(ino, &op)?;
        self.check_changeable(ino, &inode, &op)?;
        let ft = FileType::from_mode(inode.i_mode);
        if ft == FileType::Directory {
            return Err(self.err(
                ErrorKind::IsADirectory,
                &op,
                "directories cannot be hard-linked",
            ));
        }
        if u32::from(inode.i_links_count) + 1 >= sys::EXT2_LINK_MAX {
            return Err(self.err(ErrorKind::NoSpace, &op, "the file has too many links"));
        }
        let cname = self.prepare_new_entry(parent, name, &op)?;
        self.ensure_bitmaps(&op)?;
        self.add_entry(parent, &cname, ino, ft, &op)?;
        let now = Timestamp::now();
        self.modify(ino, &op, |i, size| {
            i.i_links_count += 1;
            inode::set_time(i, size, TimeField::Ctime, now);
        })?;
        self.touch_dir(parent, &op)
    }

    // --- removing and renaming --------------------------------------------

    fn dir_is_empty(&self, dir: Ino, op: &str) -> Result<bool> {
        let mut empty = true;
        self.iterate_dir(dir, 0, op, &mut |d: &mut dir::Dirent<'_>| {
            if d.kind() == dir::DirentKind::Other && d.ino() != 0 {
                empty = false;
                return DirVisit::Stop;
            }
            DirVisit::Continue
        })?;
        Ok(empty)
    }

    /// Points the existing entry `name` of `dir` at `ino` (type `ft`).
    fn retarget_entry(
        &mut self,
        dir: Ino,
        name: &[u8],
        ino: Ino,
        ft: FileType,
        op: &str,
    ) -> Result<()> {
        let filetype = self.has_incompat(sys::EXT2_FEATURE_INCOMPAT_FILETYPE);
        let mut found = false;
        self.iterate_dir(dir, 0, op, &mut |d: &mut dir::Dirent<'_>| {
            if d.name() != name {
                return DirVisit::Continue;
            }
            d.set_ino(ino);
            if filetype {
                d.set_file_type(ft.dirent_code());
            }
            found = true;
            DirVisit::ChangedStop
        })?;
        if !found {
            return Err(self.err(
                ErrorKind::NotFound,
                op,
                format!(
                    "{} vanished while being replaced",
                    self.entry_desc(dir, name)
                ),
            ));
        }
        Ok(())
    }

    /// Removes one link of `ino` (already unlinked from its directory):
    /// directories lose both their links, others one; frees the inode at 0.
    fn drop_link(&mut self, ino: Ino, op: &str) -> Result<()> {
        let inode = self.read_raw(ino, op)?;
        let is_dir = FileType::from_mode(inode.i_mode) == FileType::Directory;
        if is_dir || inode.i_links_count <= 1 {
            return self.release_inode(ino, op);
        }
        let now = Timestamp::now();
        self.modify(ino, op, |i, size| {
            i.i_links_count -= 1;
            inode::set_time(i, size, TimeField::Ctime, now);
        })
    }

    /// Removes entry `name` from `parent`: a file, symlink or other
    /// non-directory (freeing it when this was its last link), or an empty
    /// directory.
    pub fn unlink(&mut self, parent: Ino, name: &[u8]) -> Result<()> {
        let op = format!("removing {}", self.entry_desc(parent, name));
        let cname = self.check_name(name, &op)?;
        self.check_dir_changeable(parent, &op)?;
        let Some(ino) = self.lookup_in(parent, name, &op)? else {
            return Err(self.err(
                ErrorKind::NotFound,
                &op,
                format!("{} does not exist", self.entry_desc(parent, name)),
            ));
        };
        let inode = self.read_raw(ino, &op)?;
        self.check_changeable(ino, &inode, &op)?;
        let is_dir = FileType::from_mode(inode.i_mode) == FileType::Directory;
        if is_dir && !self.dir_is_empty(ino, &op)? {
            return Err(self.err(
                ErrorKind::DirectoryNotEmpty,
                &op,
                "the directory is not empty; remove its entries first",
            ));
        }
        self.ensure_bitmaps(&op)?;
        // SAFETY: `raw` is live; `cname` is NUL-terminated; removes the
        // entry that has this name and inode.
        let rc = unsafe { sys::ext2fs_unlink(self.raw, parent, cname.as_ptr(), ino, 0) };
        self.check(rc, &op)?;
        if is_dir {
            self.adjust_dir_links(parent, -1, &op)?;
        }
        self.touch_dir(parent, &op)?;
        self.drop_link(ino, &op)
    }

    /// True when `dir` is `ancestor` or inside it (walking `..`).
    fn is_within(&self, dir: Ino, ancestor: Ino, op: &str) -> Result<bool> {
        let mut cur = dir;
        for _ in 0..MAX_DEPTH {
            if cur == ancestor {
                return Ok(true);
            }
            if cur == ROOT_INO {
                return Ok(false);
            }
            match self.lookup_in(cur, b"..", op)? {
                Some(up) if up != cur => cur = up,
                _ => return Ok(false),
            }
        }
        Err(self.err(
            ErrorKind::Corrupt,
            op,
            "the directory tree loops or is too deep; run `e2fsck -f`",
        ))
    }

    /// Renames `old_parent/old_name` to `new_parent/new_name`, replacing an
    /// existing non-directory target (or an empty directory when moving a
    /// directory), and fixing `..` of a directory that changes parent.
    pub fn rename(
        &mut self,
        old_parent: Ino,
        old_name: &[u8],
        new_parent: Ino,
        new_name: &[u8],
    ) -> Result<()> {
        let op = format!(
            "renaming {} to {}",
            self.entry_desc(old_parent, old_name),
            self.entry_desc(new_parent, new_name)
        );
        let old_c = self.check_name(old_name, &op)?;
        let new_c = self.check_name(new_name, &op)?;
        self.check_dir_changeable(old_parent, &op)?;
        let new_parent_inode = self.check_dir_changeable(new_parent, &op)?;
        let Some(src) = self.lookup_in(old_parent, old_name, &op)? else {
            return Err(self.err(
                ErrorKind::NotFound,
                &op,
                format!("{} does not exist", self.entry_desc(old_parent, old_name)),
            ));
        };
        let src_inode = self.read_raw(src, &op)?;
        self.check_changeable(src, &src_inode, &op)?;
        if old_parent == new_parent && old_name == new_name {
            return Ok(());
        }
        let src_type = FileType::from_mode(src_inode.i_mode);
        let is_dir = src_type == FileType::Directory;
        let moves_dir = is_dir && old_parent != new_parent;
        if moves_dir && self.is_within(new_parent, src, &op)? {
            return Err(self.err(
                ErrorKind::InvalidInput,
                &op,
                "a directory cannot be moved inside itself",
            ));
        }
        let dst = self.lookup_in(new_parent, new_name, &op)?;
        if dst == Some(src) {
            // Two names of the same inode: rename(2) does nothing.
            return Ok(());
        }
        if let Some(d) = dst {
            let d_inode = self.read_raw(d, &op)?;
            self.check_changeable(d, &d_inode, &op)?;
            let d_is_dir = FileType::from_mode(d_inode.i_mode) == FileType::Directory;
            match (is_dir, d_is_dir) {
                (true, false) => {
                    return Err(self.err(
                        ErrorKind::NotADirectory,
                        &op,
                        format!(
                            "{} exists and is not a directory",
                            self.entry_desc(new_parent, new_name)
                        ),
                    ))
                }
                (false, true) => {
                    return Err(self.err(
                        ErrorKind::IsADirectory,
                        &op,
                        format!(
                            "{} exists and is a directory",
                            self.entry_desc(new_parent, new_name)
                        ),
                    ))
                }
                (true, true) if !self.dir_is_empty(d, &op)? => {
                    return Err(self.err(
                        ErrorKind::DirectoryNotEmpty,
                        &op,
                        format!(
                            "{} exists and is not empty",
                            self.entry_desc(new_parent, new_name)
                        ),
                    ))
                }
                _ => {}
            }
        } else if moves_dir {
            self.check_room_for_subdir(&new_parent_inode, new_parent, &op)?;
        }
        self.ensure_bitmaps(&op)?;
        // 1. The new name points at the source (replacing in place keeps
        //    the target name present at every step).
        match dst {
            Some(_) => self.retarget_entry(new_parent, new_name, src, src_type, &op)?,
            None => self.add_entry(new_parent, &new_c, src, src_type, &op)?,
        }
        // 2. The old name goes.
        // SAFETY: `raw` is live; `old_c` is NUL-terminated; removes the
        // entry with this name and inode.
        let rc = unsafe { sys::ext2fs_unlink(self.raw, old_parent, old_c.as_ptr(), src, 0) };
        self.check(rc, &op)?;
        // 3. Directory bookkeeping: `..` and parents' link counts.
        if moves_dir {
            self.retarget_entry(src, b"..", new_parent, FileType::Directory, &op)?;
            self.adjust_dir_links(old_parent, -1, &op)?;
            if dst.is_none() {
                self.adjust_dir_links(new_parent, 1, &op)?;
            }
        } else if is_dir && dst.is_some() {
            // The replaced directory's ".." no longer counts.
            self.adjust_dir_links(new_parent, -1, &op)?;
        }
        // 4. The replaced target loses its link.
        if let Some(d) = dst {
            self.drop_link(d, &op)?;
        }
        let now = Timestamp::now();
        self.modify(src, &op, |i, size| {
            inode::set_time(i, size, TimeField::Ctime, now)
        })?;
        self.touch_dir(old_parent, &op)?;
        if new_parent != old_parent {
            self.touch_dir(new_parent, &op)?;
        }
        self.paths.remove(&src);
        self.remember(new_parent, new_name, src);
        Ok(())
    }

    /// The ext2/3/4 block size in bytes.
    pub fn block_size(&self) -> u32 {
        self.blocksize()
    }

    /// Whether the block and inode bitmaps have been read (they are read
    /// lazily, before the first allocation or free).
    pub fn bitmaps_loaded(&self) -> bool {
        self.bitmaps_loaded
    }

    /// The name messages use for this filesystem.
    pub fn name(&self) -> &str {
        &self.name
    }

    pub(crate) fn check_xattr_target(&self, ino: Ino, op: &str, changing: bool) -> Result<()> {
        let inode = self.read_raw(ino, op)?;
        if changing {
            self.check_changeable(ino, &inode, op)?;
        }
        Ok(())
    }

    pub(crate) fn ensure_bitmaps_for(&mut self, op: &str) -> Result<()> {
        self.ensure_bitmaps(op)
    }

    pub(crate) fn take_device_error(&self) {
        let _ = self.chan.take_error();
    }
}

impl Drop for Fs {
    fn drop(&mut self) {
        if let Err(e) = self.close_inner() {
            tracing::error!(fs = %self.name, "closing the filesystem failed: {e}");
        }
    }
}

impl std::fmt::Debug for Fs {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Fs")
            .field("name", &self.name)
            .field("open", &!self.raw.is_null())
            .field("bitmaps_loaded", &self.bitmaps_loaded)
            .finish()
    }
}

/// A generation number for a new inode (any value works; vary it like the
/// kernel does so NFS handles of reused inode numbers differ).
fn generation(ino: Ino, now: Timestamp) -> u32 {
    let mut x = (now.secs as u64)
        ^ (u64::from(now.nsec) << 32)
        ^ u64::from(ino).wrapping_mul(0x9e37_79b9_7f4a_7c15);
    x ^= x >> 33;
    x = x.wrapping_mul(0xff51_afd7_ed55_8ccd);
    x ^= x >> 33;
    x as u32
}
