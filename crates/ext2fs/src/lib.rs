//! rescue-disk's binding to e2fsprogs' libext2fs: writes to ext2/3/4
//! filesystems that live inside any [`rescue_io::BlockWrite`] device.
//!
//! * [`sys`] (private) holds bindgen output generated once and committed
//!   (`gen-sys.sh` regenerates it); building needs no libclang or `-dev`
//!   package: `build.rs` links `libext2fs.so.2` and `libcom_err.so.2`
//!   dynamically by soname (both LGPL).
//! * `io` is a custom libext2fs io_manager: every block libext2fs reads or
//!   writes goes through the device (write-through, no host file opened).
//! * [`Fs`] is the safe API: look up paths without following symlinks,
//!   stat, read files and links, change mode/owner/times, replace contents
//!   in place, create files/directories/symlinks/hard links, unlink,
//!   rename, and manage extended attributes.
//!
//! Policy (see [`Fs::open`]): a journal that needs recovery, features we
//! do not write safely and inconsistent group descriptors are refused at
//! open; an "errors" state is reported ([`Fs::warnings`]), not refused.
//! Immutable and append-only inodes, and entries of such directories, are
//! never changed; encrypted and casefolded directories are not touched.
//!
//! An [`Fs`] stays on the thread that opened it (libext2fs state and the
//! device are not shared across threads):
//!
//! ```compile_fail
//! fn needs_send<T: Send>() {}
//! needs_send::<rescue_ext2fs::Fs>();
//! ```
//!
//! Nothing here panics on a corrupt filesystem: libext2fs reports errors,
//! which come back as [`Error`] (one line: operation, object, filesystem,
//! libext2fs message, and the device's own error when the device failed).

#![warn(unsafe_op_in_unsafe_fn)]

mod dir;
mod error;
mod fs;
mod fuzz;
mod inode;
mod io;
mod sys;
mod xattr;

pub use error::{Error, ErrorKind, Result};
pub use fs::{DirEntry, Fs, MAX_DIR_ENTRIES, MAX_NAME_LEN};
#[doc(hidden)]
pub use fuzz::fuzz_open_and_write;
pub use inode::{FileType, Ino, Stat, Timestamp, ROOT_INO};
pub use xattr::MAX_XATTR_VALUE;
