//! Operations on guest paths, as the file commands and `fix` request them.

use rescue_guest::GuestPath;
use serde::Serialize;

/// Attributes of a file or directory that an operation creates.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
pub struct NewFile {
    /// Permission bits (`0o7777` mask).
    pub mode: u32,
    /// Owner.
    pub uid: u32,
    /// Group.
    pub gid: u32,
}

impl NewFile {
    /// A root-owned file with `mode`.
    pub fn root(mode: u32) -> NewFile {
        NewFile {
            mode,
            uid: 0,
            gid: 0,
        }
    }
}

/// One change to the guest.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Op {
    /// Replace the contents of `path` (following a final symlink, as a
    /// shell redirection does), keeping its inode, or create it with
    /// `create` when it does not exist. `set` also applies mode/owner to an
    /// existing file.
    WriteFile {
        /// Guest path.
        path: GuestPath,
        /// New contents.
        data: Vec<u8>,
        /// Attributes if the file is created.
        create: NewFile,
        /// Also set these attributes on an existing file.
        set: Option<NewFile>,
    },
    /// `chmod` (follows a final symlink).
    Chmod {
        /// Guest path.
        path: GuestPath,
        /// Permission bits (`0o7777` mask).
        mode: u32,
    },
    /// `chown` (follows a final symlink); `None` keeps the current value.
    Chown {
        /// Guest path.
        path: GuestPath,
        /// New owner.
        uid: Option<u32>,
        /// New group.
        gid: Option<u32>,
    },
    /// `mkdir` (the parent must exist).
    Mkdir {
        /// Guest path.
        path: GuestPath,
        /// Attributes of the new directory.
        attrs: NewFile,
    },
    /// `ln -s target path`.
    Symlink {
        /// Where the link is created.
        path: GuestPath,
        /// What it points to, stored as given.
        target: Vec<u8>,
        /// Owner of the link.
        uid: u32,
        /// Group of the link.
        gid: u32,
    },
    /// `rm` of a file or symlink, or `rmdir` of an empty directory (a final
    /// symlink is removed, not followed).
    Remove {
        /// Guest path.
        path: GuestPath,
    },
    /// `mv` within one filesystem.
    Rename {
        /// Existing path.
        from: GuestPath,
        /// New path (an existing non-directory there is replaced).
        to: GuestPath,
    },
}

impl Op {
    /// One line for reports: `write /etc/fstab (412 bytes)`.
    pub fn describe(&self) -> String {
        match self {
            Op::WriteFile { path, data, .. } => format!("write {path} ({} bytes)", data.len()),
            Op::Chmod { path, mode } => format!("chmod {mode:04o} {path}"),
            Op::Chown { path, uid, gid } => format!(
                "chown {}:{} {path}",
                uid.map_or("-".into(), |u| u.to_string()),
                gid.map_or("-".into(), |g| g.to_string())
            ),
            Op::Mkdir { path, attrs } => format!("mkdir -m {:04o} {path}", attrs.mode),
            Op::Symlink { path, target, .. } => {
                format!("ln -s {} {path}", String::from_utf8_lossy(target))
            }
            Op::Remove { path } => format!("rm {path}"),
            Op::Rename { from, to } => format!("mv {from} {to}"),
        }
    }
}

/// What one applied operation did.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Change {
    /// The operation as one line.
    pub op: String,
    /// The volume written (`p2`, `lvm/vg0/root`).
    pub volume: String,
    /// The path inside that volume's filesystem.
    pub volume_path: String,
}
