//! Directory iteration through libext2fs' `ext2fs_dir_iterate2`: a C
//! trampoline that hands each entry, bounds-checked, to a Rust closure
//! which may read it or point it at another inode.

use std::ffi::{c_char, c_int, c_void};
use std::marker::PhantomData;
use std::panic::{catch_unwind, AssertUnwindSafe};
use std::ptr::{addr_of, addr_of_mut};

use crate::sys;

/// What the visitor wants next.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum DirVisit {
    /// Go on with the next entry.
    Continue,
    /// Stop iterating.
    Stop,
    /// The entry was changed: write its block back, then stop.
    ChangedStop,
}

/// Which entry of the directory this is.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum DirentKind {
    /// `.`
    Dot,
    /// `..`
    DotDot,
    /// Any other entry.
    Other,
}

/// One directory entry inside libext2fs' block buffer, valid only during
/// the visitor call (the lifetime ties it there).
pub(crate) struct Dirent<'a> {
    ptr: *mut sys::ext2_dir_entry,
    name: &'a [u8],
    kind: DirentKind,
    _buf: PhantomData<&'a mut [u8]>,
}

impl Dirent<'_> {
    pub(crate) fn kind(&self) -> DirentKind {
        self.kind
    }

    pub(crate) fn name(&self) -> &[u8] {
        self.name
    }

    pub(crate) fn ino(&self) -> u32 {
        // SAFETY: `ptr` points to an entry whose 8-byte header lies inside
        // the block buffer (checked by the trampoline) for the lifetime of
        // `self`; unaligned reads avoid assuming the entry's alignment.
        unsafe { addr_of!((*self.ptr).inode).read_unaligned() }
    }

    /// The `EXT2_FT_*` type in the high byte of `name_len`.
    pub(crate) fn file_type(&self) -> u8 {
        // SAFETY: as in `ino`.
        let raw = unsafe { addr_of!((*self.ptr).name_len).read_unaligned() };
        (raw >> 8) as u8
    }

    pub(crate) fn set_ino(&mut self, ino: u32) {
        // SAFETY: as in `ino`; libext2fs' buffer is writable and it writes
        // the block back when we return DIRENT_CHANGED.
        unsafe { addr_of_mut!((*self.ptr).inode).write_unaligned(ino) }
    }

    pub(crate) fn set_file_type(&mut self, ft: u8) {
        // SAFETY: as in `set_ino`.
        unsafe {
            let p = addr_of_mut!((*self.ptr).name_len);
            let raw = p.read_unaligned();
            p.write_unaligned((raw & 0xff) | (u16::from(ft) << 8));
        }
    }
}

type Visitor<'v> = dyn FnMut(&mut Dirent<'_>) -> DirVisit + 'v;

/// The private data the trampoline receives.
pub(crate) struct IterState<'v> {
    visit: &'v mut Visitor<'v>,
    failure: Option<String>,
}

impl<'v> IterState<'v> {
    pub(crate) fn new(visit: &'v mut Visitor<'v>) -> Self {
        IterState {
            visit,
            failure: None,
        }
    }

    pub(crate) fn as_priv(&mut self) -> *mut c_void {
        self as *mut IterState<'v> as *mut c_void
    }

    /// Why iteration was aborted by us, if it was (corrupt entry, panic).
    pub(crate) fn failure(&self) -> Option<String> {
        self.failure.clone()
    }
}

// SAFETY: only ext2fs_dir_iterate2 calls this, with `priv_data` from
// `IterState::as_priv` (alive for the whole iteration) and `dirent` inside
// a `blocksize`-byte buffer at `offset`.
pub(crate) unsafe extern "C" fn trampoline(
    _dir: sys::ext2_ino_t,
    entry: c_int,
    dirent: *mut sys::ext2_dir_entry,
    offset: c_int,
    blocksize: c_int,
    _buf: *mut c_char,
    priv_data: *mut c_void,
) -> c_int {
    let abort = sys::DIRENT_ABORT as c_int;
    if priv_data.is_null() {
        return abort;
    }
    // SAFETY: `priv_data` is the IterState we passed, alive and not
    // otherwise borrowed during the iteration.
    let state = unsafe { &mut *(priv_data as *mut IterState<'_>) };
    if dirent.is_null() || offset < 0 || blocksize <= 0 || offset.saturating_add(8) > blocksize {
        state.failure = Some("a directory entry lies outside its block; run `e2fsck -f`".into());
        return abort;
    }
    // SAFETY: the 8-byte header is inside the buffer (checked above).
    let name_len = unsafe { addr_of!((*dirent).name_len).read_unaligned() } & 0xff;
    let name_len = usize::from(name_len);
    // libext2fs validated rec_len against the block; this check is what
    // keeps our slice inside the buffer.
    if offset as usize + 8 + name_len > blocksize as usize {
        state.failure = Some("a directory entry's name overruns its block; run `e2fsck -f`".into());
        return abort;
    }
    // SAFETY: the name bytes follow the header and lie inside the buffer
    // (checked above); the buffer outlives this call.
    let name = unsafe { std::slice::from_raw_parts((dirent as *const u8).add(8), name_len) };
    let kind = match entry as u32 {
        sys::DIRENT_DOT_FILE => DirentKind::Dot,
        sys::DIRENT_DOT_DOT_FILE => DirentKind::DotDot,
        _ => DirentKind::Other,
    };
    let mut d = Dirent {
        ptr: dirent,
        name,
        kind,
        _buf: PhantomData,
    };
    match catch_unwind(AssertUnwindSafe(|| (state.visit)(&mut d))) {
        Ok(DirVisit::Continue) => 0,
        Ok(DirVisit::Stop) => abort,
        Ok(DirVisit::ChangedStop) => abort | sys::DIRENT_CHANGED as c_int,
        Err(_) => {
            state.failure = Some("internal error while reading a directory (a bug)".into());
            abort
        }
    }
}
