//! Extended attributes (`security.selinux`, `user.*`, POSIX ACLs) through
//! libext2fs' xattr handle API, which places them in the inode body or the
//! shared xattr block and keeps checksums and reference counts right.
//!
//! POSIX ACLs (`system.posix_acl_access`/`_default`) are exchanged in the
//! kernel's xattr format (what `getfattr` shows); libext2fs converts. The
//! owner, group, mask and other entries come back with id 0 (the kernel
//! shows 0xffffffff there; both mean "no id").

use std::ffi::{c_char, c_int, c_void, CStr, CString};
use std::panic::{catch_unwind, AssertUnwindSafe};

use crate::error::{ErrorKind, Result};
use crate::fs::Fs;
use crate::inode::Ino;
use crate::sys;

/// Largest xattr value Linux accepts.
pub const MAX_XATTR_VALUE: usize = 65536;

const PREFIXES: &[&str] = &["user.", "trusted.", "security."];
const FULL_NAMES: &[&str] = &["system.posix_acl_access", "system.posix_acl_default"];

/// An open libext2fs xattr handle, closed on drop.
struct Handle(*mut sys::ext2_xattr_handle);

impl Drop for Handle {
    fn drop(&mut self) {
        if !self.0.is_null() {
            // SAFETY: the handle came from ext2fs_xattrs_open and is closed
            // exactly once (closing frees memory; it never writes).
            unsafe { sys::ext2fs_xattrs_close(&mut self.0) };
        }
    }
}

// SAFETY: only ext2fs_xattrs_iterate calls this, with `data` pointing to
// the Vec we passed and `name` a NUL-terminated string (or null).
unsafe extern "C" fn collect_name(
    name: *mut c_char,
    _value: *mut c_char,
    _value_len: usize,
    data: *mut c_void,
) -> c_int {
    if name.is_null() || data.is_null() {
        return 0;
    }
    let r = catch_unwind(AssertUnwindSafe(|| {
        // SAFETY: `data` is our Vec<Vec<u8>>, alive during the iteration;
        // `name` is a NUL-terminated string owned by the handle.
        unsafe {
            let names = &mut *(data as *mut Vec<Vec<u8>>);
            names.push(CStr::from_ptr(name).to_bytes().to_vec());
        }
    }));
    if r.is_err() {
        sys::XATTR_ABORT as c_int
    } else {
        0
    }
}

impl Fs {
    fn xattr_name(&self, name: &str, op: &str) -> Result<CString> {
        let known = FULL_NAMES.contains(&name)
            || PREFIXES.iter().any(|p| {
                name.len() > p.len() && name.starts_with(p) && name.len() - p.len() <= 255
            });
        if !known {
            return Err(self.err(
                ErrorKind::InvalidInput,
                op,
                format!(
                    "unsupported extended attribute name '{name}': use user.*, trusted.*, \
                     security.* (1 to 255 bytes after the prefix) or a POSIX ACL name"
                ),
            ));
        }
        CString::new(name).map_err(|_| {
            self.err(
                ErrorKind::InvalidInput,
                op,
                "the attribute name contains a NUL byte",
            )
        })
    }

    /// Opens and reads the xattrs of `ino`; `None` when the filesystem has
    /// no xattr support at all.
    fn open_xattrs(&self, ino: Ino, op: &str) -> Result<Option<Handle>> {
        let mut h = Handle(std::ptr::null_mut());
        // SAFETY: `raw` is live; `h.0` is a valid out pointer; the handle
        // is closed by `Handle`'s drop.
        let rc = unsafe { sys::ext2fs_xattrs_open(self.raw(), ino, &mut h.0) };
        if rc == sys::EXT2_ET_MISSING_EA_FEATURE as sys::errcode_t {
            self.take_device_error();
            return Ok(None);
        }
        self.check(rc, op)?;
        // SAFETY: `h.0` is an open handle.
        let rc = unsafe { sys::ext2fs_xattrs_read(h.0) };
        self.check(rc, op)?;
        Ok(Some(h))
    }

    fn get_with(&self, h: &Handle, key: &CString, op: &str) -> Result<Option<Vec<u8>>> {
        let mut value: *mut c_void = std::ptr::null_mut();
        let mut len: usize = 0;
        // SAFETY: `h.0` is an open handle; `key` is NUL-terminated; on
        // success libext2fs mallocs `len` bytes at `value`, which we copy
        // and free.
        let rc = unsafe { sys::ext2fs_xattr_get(h.0, key.as_ptr(), &mut value, &mut len) };
        if rc == sys::EXT2_ET_EA_KEY_NOT_FOUND as sys::errcode_t {
            self.take_device_error();
            return Ok(None);
        }
        self.check(rc, op)?;
        if value.is_null() {
            return Ok(Some(Vec::new()));
        }
        // SAFETY: `value` holds `len` bytes allocated by libext2fs (bounded
        // by what it read from one inode/block); freed right after copying.
        let out = unsafe {
            let v = std::slice::from_raw_parts(value as *const u8, len).to_vec();
            sys::free(value);
            v
        };
        Ok(Some(out))
    }

    /// The value of xattr `name` of `ino`, if set.
    pub fn get_xattr(&mut self, ino: Ino, name: &str) -> Result<Option<Vec<u8>>> {
        let op = format!("reading attribute {name} of {}", self.ino_desc(ino));
        let key = self.xattr_name(name, &op)?;
        self.read_raw(ino, &op)?;
        let Some(h) = self.open_xattrs(ino, &op)? else {
            return Ok(None);
        };
        self.get_with(&h, &key, &op)
    }

    /// All xattrs of `ino` as (name, value), in on-disk order.
    pub fn list_xattrs(&mut self, ino: Ino) -> Result<Vec<(String, Vec<u8>)>> {
        let op = format!("listing attributes of {}", self.ino_desc(ino));
        self.read_raw(ino, &op)?;
        let Some(h) = self.open_xattrs(ino, &op)? else {
            return Ok(Vec::new());
        };
        let mut names: Vec<Vec<u8>> = Vec::new();
        // SAFETY: `h.0` is open; the callback only pushes into `names`,
        // which outlives the call.
        let rc = unsafe {
            sys::ext2fs_xattrs_iterate(
                h.0,
                Some(collect_name),
                &mut names as *mut Vec<Vec<u8>> as *mut c_void,
            )
        };
        self.check(rc, &op)?;
        let mut out = Vec::with_capacity(names.len());
        for name in names {
            let Ok(key) = CString::new(name.clone()) else {
                continue;
            };
            if let Some(v) = self.get_with(&h, &key, &op)? {
                out.push((String::from_utf8_lossy(&name).into_owned(), v));
            }
        }
        Ok(out)
    }

    /// Sets xattr `name` of `ino` to `value` (creating or replacing it);
    /// updates ctime.
    pub fn set_xattr(&mut self, ino: Ino, name: &str, value: &[u8]) -> Result<()> {
        let op = format!("setting attribute {name} of {}", self.ino_desc(ino));
        let key = self.xattr_name(name, &op)?;
        if value.len() > MAX_XATTR_VALUE {
            return Err(self.err(
                ErrorKind::TooLarge,
                &op,
                format!(
                    "the value is {} bytes; the limit is {MAX_XATTR_VALUE}",
                    value.len()
                ),
            ));
        }
        self.check_xattr_target(ino, &op, true)?;
        self.ensure_bitmaps_for(&op)?;
        let Some(h) = self.open_xattrs(ino, &op)? else {
            return Err(self.refuse(
                &op,
                "the filesystem has no extended attribute support (ext_attr feature is off)",
            ));
        };
        // SAFETY: `h.0` is open; `key` is NUL-terminated; the value
        // pointer and length describe `value`. libext2fs writes the inode
        // and xattr block itself.
        let rc = unsafe {
            sys::ext2fs_xattr_set(
                h.0,
                key.as_ptr(),
                value.as_ptr() as *const c_void,
                value.len(),
            )
        };
        self.check(rc, &op)?;
        drop(h);
        self.touch_ctime(ino, &op)
    }

    /// Removes xattr `name` of `ino`; returns whether it was set.
    pub fn remove_xattr(&mut self, ino: Ino, name: &str) -> Result<bool> {
        let op = format!("removing attribute {name} of {}", self.ino_desc(ino));
        let key = self.xattr_name(name, &op)?;
        self.check_xattr_target(ino, &op, true)?;
        self.ensure_bitmaps_for(&op)?;
        let Some(h) = self.open_xattrs(ino, &op)? else {
            return Ok(false);
        };
        if self.get_with(&h, &key, &op)?.is_none() {
            return Ok(false);
        }
        // SAFETY: `h.0` is open; `key` is NUL-terminated.
        let rc = unsafe { sys::ext2fs_xattr_remove(h.0, key.as_ptr()) };
        self.check(rc, &op)?;
        drop(h);
        self.touch_ctime(ino, &op)?;
        Ok(true)
    }
}
