//! The record `fix` leaves inside the guest: under
//! `/var/lib/rescue-disk/<run-id>/`, a copy of every file it rewrote (at
//! its guest path below `files/`) and `manifest.json` listing each change
//! with the sha256 of the contents before and after, so whoever logs in to
//! the repaired VM can see what was changed and put a file back by hand.
//!
//! The host-side undo file remains the authority for `undo`; this record is
//! for the people inside the guest. It is written through the same session,
//! so `undo` removes it too.

use rescue_guest::{Guest, GuestPath};
use serde::Serialize;
use sha2::{Digest, Sha256};

use crate::ops::{NewFile, Op};
use crate::plan::PlannedOp;

/// Where the records of every run live in the guest.
pub const RECORD_DIR: &str = "/var/lib/rescue-disk";

/// `manifest.json`.
#[derive(Debug, Serialize)]
pub struct Manifest<'a> {
    /// Always `rescue-disk/guest-record`.
    pub schema: &'static str,
    /// Incremented on incompatible changes.
    pub schema_version: u32,
    /// Version of rescue-disk.
    pub tool_version: &'a str,
    /// The run id, as in the host-side undo file's name.
    pub run_id: &'a str,
    /// When the repair ran (UTC, seconds since the epoch).
    pub time_unix_seconds: u64,
    /// What was repaired, in order.
    pub changes: Vec<Entry>,
}

/// One change in the manifest.
#[derive(Debug, Serialize)]
pub struct Entry {
    /// The operation (`write /etc/fstab (233 bytes)`, `chmod 0700 /root/.ssh`).
    pub op: String,
    /// Guest path.
    pub path: String,
    /// sha256 of the contents before (rewritten files).
    pub sha256_before: Option<String>,
    /// sha256 of the contents after (rewritten files).
    pub sha256_after: Option<String>,
    /// The copy of the old contents, relative to the record directory.
    pub backup: Option<String>,
    /// Mode or owner before a mode or owner change.
    pub was: Option<String>,
}

fn hex(data: &[u8]) -> String {
    Sha256::digest(data)
        .iter()
        .map(|b| format!("{b:02x}"))
        .collect()
}

fn path_of(op: &Op) -> &GuestPath {
    match op {
        Op::WriteFile { path, .. }
        | Op::Chmod { path, .. }
        | Op::Chown { path, .. }
        | Op::Mkdir { path, .. }
        | Op::Symlink { path, .. }
        | Op::Remove { path } => path,
        Op::Rename { from, .. } => from,
    }
}

/// The operations that write the record of `applied` (in the order to
/// apply them): missing directories, one backup per rewritten file, then
/// the manifest. `None` when the guest has no `/var/lib` to put it in.
pub fn ops(
    guest: &Guest,
    run_id: &str,
    tool_version: &str,
    time_unix_seconds: u64,
    applied: &[PlannedOp],
) -> Option<Vec<Op>> {
    if !guest
        .metadata(&GuestPath::new("/var/lib"))
        .is_ok_and(|m| m.is_dir())
    {
        return None;
    }
    let base = GuestPath::new(format!("{RECORD_DIR}/{run_id}"));
    let private = NewFile::root(0o700);
    let mut out = Vec::new();
    let mut made: Vec<GuestPath> = Vec::new();
    let mut mkdir_p = |out: &mut Vec<Op>, dir: &GuestPath| {
        let mut chain = Vec::new();
        let mut cur = Some(dir.clone());
        while let Some(d) = cur {
            if d.is_root() || made.contains(&d) || guest.metadata(&d).is_ok() {
                break;
            }
            cur = d.parent();
            chain.push(d);
        }
        for d in chain.into_iter().rev() {
            made.push(d.clone());
            out.push(Op::Mkdir {
                path: d,
                attrs: private,
            });
        }
    };
    mkdir_p(&mut out, &base);
    let mut changes = Vec::new();
    for p in applied {
        let path = path_of(&p.op);
        let mut entry = Entry {
            op: p.op.describe(),
            path: path.to_string(),
            sha256_before: None,
            sha256_after: None,
            backup: None,
            was: p.was.clone(),
        };
        if let (Op::WriteFile { data, .. }, Some(before)) = (&p.op, &p.before) {
            entry.sha256_before = Some(hex(before));
            entry.sha256_after = Some(hex(data));
            let rel = format!("files{path}");
            let copy = base.join(rel.as_bytes());
            if let Some(parent) = copy.parent() {
                mkdir_p(&mut out, &parent);
            }
            out.push(Op::WriteFile {
                path: copy,
                data: before.clone(),
                create: NewFile::root(0o600),
                set: None,
            });
            entry.backup = Some(rel);
        }
        changes.push(entry);
    }
    let manifest = Manifest {
        schema: "rescue-disk/guest-record",
        schema_version: 1,
        tool_version,
        run_id,
        time_unix_seconds,
        changes,
    };
    let mut json = serde_json::to_vec_pretty(&manifest).unwrap_or_default();
    json.push(b'\n');
    out.push(Op::WriteFile {
        path: base.join(b"manifest.json"),
        data: json,
        create: NewFile::root(0o600),
        set: None,
    });
    Some(out)
}
