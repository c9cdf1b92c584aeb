//! From the repairs `check` proposes to the operations a session applies.
//!
//! Line edits of one file (from several findings) are combined into one
//! new file content with `rescue_checks::edit::apply_line_edits`, which
//! refuses stale or overlapping edits. Mode and owner changes check that the
//! file still has the mode or owner the check saw. Everything is computed
//! from the guest as it is now, before anything is written, so a stale plan
//! fails without touching the disk.

use std::collections::BTreeMap;

use rescue_checks::edit::{apply_line_edits, Edit};
use rescue_guest::{Guest, GuestPath};
use rescue_io::{Error, ErrorKind, Result};

use crate::ops::{NewFile, Op};

/// Largest configuration file `fix` rewrites.
pub const MAX_EDITED_FILE_BYTES: u64 = 16 << 20;

/// One operation with the file contents before and after, for diffs and the
/// manifest.
#[derive(Debug, Clone)]
pub struct PlannedOp {
    /// What to do.
    pub op: Op,
    /// For file rewrites: the current contents.
    pub before: Option<Vec<u8>>,
    /// For mode and owner changes: the value now (`mode 0777`, `owner 0:0`).
    pub was: Option<String>,
}

fn stale(path: &str, what: String) -> Error {
    Error::new(ErrorKind::Unsupported, "planning repair")
        .with_path(path.to_owned())
        .with_detail(format!(
            "{what}; the disk changed since the check: run `rescue-disk check` again"
        ))
}

/// Turns `edits` (in the order given) into operations on `guest`. Line
/// edits and grubenv changes of one file become one write, placed where the
/// file's first edit was.
pub fn plan(guest: &Guest, edits: &[&Edit]) -> Result<Vec<PlannedOp>> {
    let mut lines: BTreeMap<&str, Vec<(usize, &str, &str)>> = BTreeMap::new();
    let mut grubenv: BTreeMap<&str, Vec<(&str, &str)>> = BTreeMap::new();
    for e in edits {
        match e {
            Edit::EditLine {
                path,
                line,
                before,
                after,
            } => lines
                .entry(path)
                .or_default()
                .push((*line, before.as_str(), after.as_str())),
            Edit::SetGrubenv { path, key, value } => grubenv
                .entry(path)
                .or_default()
                .push((key.as_str(), value.as_str())),
            _ => {}
        }
    }
    let mut out = Vec::new();
    let mut written: Vec<&str> = Vec::new();
    for e in edits {
        let path = e.path();
        let gpath = GuestPath::new(path);
        match e {
            Edit::EditLine { .. } | Edit::SetGrubenv { .. } => {
                if written.contains(&path) {
                    continue;
                }
                written.push(path);
                let before = guest.read_file(&gpath, MAX_EDITED_FILE_BYTES)?;
                let mut data = before.clone();
                if let Some(l) = lines.get(path) {
                    data =
                        apply_line_edits(&data, l).map_err(|err| stale(path, err.to_string()))?;
                }
                if let Some(vars) = grubenv.get(path) {
                    for (key, value) in vars {
                        data = rescue_config::grubenv::GrubEnv::parse(&data)
                            .with_var(key, value)
                            .map_err(|err| {
                                Error::new(ErrorKind::Unsupported, "planning repair")
                                    .with_path(path.to_owned())
                                    .with_detail(err)
                            })?;
                    }
                }
                out.push(PlannedOp {
                    op: Op::WriteFile {
                        path: gpath,
                        data,
                        create: NewFile::root(0o644),
                        set: None,
                    },
                    before: Some(before),
                    was: None,
                });
            }
            Edit::SetMode { from, to, .. } => {
                let meta = guest.metadata(&gpath)?;
                if meta.mode != *from && meta.mode != *to {
                    return Err(stale(
                        path,
                        format!("its mode is {:04o}, the check saw {from:04o}", meta.mode),
                    ));
                }
                out.push(PlannedOp {
                    op: Op::Chmod {
                        path: gpath,
                        mode: *to,
                    },
                    before: None,
                    was: Some(format!("mode {:04o}", meta.mode)),
                });
            }
            Edit::SetOwner {
                from_uid,
                from_gid,
                to_uid,
                to_gid,
                ..
            } => {
                let meta = guest.metadata(&gpath)?;
                let now = (meta.uid, meta.gid);
                if now != (*from_uid, *from_gid) && now != (*to_uid, *to_gid) {
                    return Err(stale(
                        path,
                        format!(
                            "it is owned by {}:{}, the check saw {from_uid}:{from_gid}",
                            now.0, now.1
                        ),
                    ));
                }
                out.push(PlannedOp {
                    op: Op::Chown {
                        path: gpath,
                        uid: Some(*to_uid),
                        gid: Some(*to_gid),
                    },
                    before: None,
                    was: Some(format!("owner {}:{}", now.0, now.1)),
                });
            }
            Edit::Unlink { .. } => out.push(PlannedOp {
                op: Op::Remove { path: gpath },
                before: None,
                was: None,
            }),
            Edit::CreateSymlink { target, .. } => out.push(PlannedOp {
                op: Op::Symlink {
                    path: gpath,
                    target: target.as_bytes().to_vec(),
                    uid: 0,
                    gid: 0,
                },
                before: None,
                was: None,
            }),
            Edit::CreateDir { mode, uid, gid, .. } => out.push(PlannedOp {
                op: Op::Mkdir {
                    path: gpath,
                    attrs: NewFile {
                        mode: *mode,
                        uid: *uid,
                        gid: *gid,
                    },
                },
                before: None,
                was: None,
            }),
        }
    }
    Ok(out)
}
