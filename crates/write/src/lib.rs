//! The write side of rescue-disk: changes to files inside a guest disk,
//! addressed by guest path, made without root through the undo journal.
//!
//! A [`Session`] opens a target for writing (`rescue_io::open_writable`:
//! every byte of the host file or device that is overwritten is first saved
//! to a host-side undo file), discovers its volumes over the writable view,
//! and applies [`Op`]s one at a time. For each operation the guest is
//! assembled afresh from the current bytes (the read side: mount table from
//! the guest's fstab, symlinks resolved inside the guest), the guest path is
//! resolved to a volume and a path inside its filesystem, and the engine of
//! that filesystem makes the change and is closed again before the next
//! operation:
//!
//! - ext2/3/4 through e2fsprogs' libext2fs (`rescue-ext2fs`), after the
//!   journal has been replayed into the device when it needs recovery
//!   (`rescue_ext4::recover_in_place`, the recovery `e2fsck` performs);
//! - FAT (the EFI system partition) through `fatfs`
//!   (`rescue_guest::fat_write`).
//!
//! [`plan`] turns the repairs `check` proposes (`rescue_checks::Edit`) into
//! operations; [`record`] makes the operations that leave a copy of every
//! rewritten file and a manifest inside the guest.
//!
//! Invariants: nothing here writes except through the engines over a
//! [`rescue_io::MappedDevice`] built from the volume's own extents, so a
//! write cannot leave the volume it is meant for; an operation either
//! completes or fails before its engine is closed, and the undo file always
//! covers every byte written.

mod engine;
mod ops;
pub mod plan;
pub mod record;
mod session;

pub use ops::{Change, NewFile, Op};
pub use session::{Session, SessionOptions, Summary};

pub use rescue_io::{Error, ErrorKind, Result};
