//! Finding the root filesystem and assembling the guest's mount table.
//!
//! The root is the volume holding `/etc/os-release` (or
//! `/usr/lib/os-release`) and `/etc/fstab`; among several, the one whose own
//! fstab mounts it at `/` wins, then disk order. The mount table is the root
//! plus the fstab entries that resolve to readable volumes of this disk.
//! Only the guest's files and this disk's volumes are consulted.

use rescue_config::fstab::Fstab;
use rescue_io::{ErrorKind, Result};
use rescue_volumes::{Diagnostic, Disk};
use serde::Serialize;

use std::rc::Rc;

use crate::fs::{GuestFs, MAX_CONFIG_FILE_BYTES};
use crate::fstab::{resolve_fstab, FstabLine, Resolution};
use crate::guest::Guest;
use crate::path::GuestPath;
use crate::volume_fs::VolumeFs;

/// A volume considered as the root filesystem.
#[derive(Debug, Clone, Serialize, schemars::JsonSchema)]
pub struct RootCandidate {
    /// The volume.
    pub volume_id: String,
    /// Its filesystem type.
    pub fstype: Option<String>,
    /// The image engine could open it.
    pub readable: bool,
    /// `/etc/os-release` or `/usr/lib/os-release` is present.
    pub has_os_release: bool,
    /// `/etc/fstab` is present.
    pub has_fstab: bool,
    /// The volume its own fstab's `/` line resolves to, if any.
    pub fstab_root: Option<String>,
    /// Why it could not be read or was not chosen.
    pub note: Option<String>,
}

/// The chosen root.
#[derive(Debug, Clone, Serialize, schemars::JsonSchema)]
pub struct RootChoice {
    /// The root volume.
    pub volume_id: String,
    /// Why it was chosen.
    pub reason: String,
}

/// One filesystem of the assembled guest.
#[derive(Debug, Clone, Serialize, schemars::JsonSchema)]
pub struct MountInfo {
    /// Where it is mounted.
    pub mount_point: String,
    /// The volume.
    pub volume_id: String,
    /// Its filesystem type.
    pub fstype: String,
    /// The fstab line that mounts it (`None` for the root found by probing).
    pub fstab_line: Option<usize>,
}

/// The assembled guest and everything learnt on the way.
#[derive(Debug)]
pub struct Assembly<'d> {
    /// The guest view (empty when no root was found).
    pub guest: Guest,
    /// Filesystems of the disk's volumes, opened on demand.
    pub volumes: VolumeFs<'d>,
    /// The chosen root, if any.
    pub root: Option<RootChoice>,
    /// Every volume considered.
    pub root_candidates: Vec<RootCandidate>,
    /// The root's parsed fstab.
    pub fstab: Option<Fstab>,
    /// The root's fstab entries, resolved against this disk.
    pub fstab_lines: Vec<FstabLine>,
    /// The mount table.
    pub mounts: Vec<MountInfo>,
    /// Non-fatal problems.
    pub diagnostics: Vec<Diagnostic>,
}

fn diag(subject: impl Into<String>, message: impl Into<String>) -> Diagnostic {
    Diagnostic {
        subject: subject.into(),
        message: message.into(),
    }
}

/// Reads a file that identifies the guest. A missing file is `None`; any
/// other failure (a corrupt inode, a symlink loop) is an error, because a
/// guest whose identity cannot be read cannot be inspected honestly.
/// A symlink that dangles inside the guest (possibly pointing at something
/// that exists only on the host) counts as missing, with a diagnostic.
pub(crate) fn read_identity_file(
    guest: &Guest,
    path: &str,
    diags: &mut Vec<Diagnostic>,
) -> Result<Option<Vec<u8>>> {
    let gp = GuestPath::new(path);
    match guest.read_file(&gp, MAX_CONFIG_FILE_BYTES) {
        Ok(b) => Ok(Some(b)),
        Err(e) if e.kind() == ErrorKind::NotFound => {
            if guest.symlink_metadata(&gp).is_ok_and(|m| m.is_symlink()) {
                diags.push(diag(path, e.to_string()));
            }
            Ok(None)
        }
        Err(e) => Err(e),
    }
}

struct Probe {
    index: usize,
    has_os_release: bool,
    has_fstab: bool,
}

/// Finds the root, resolves its fstab and mounts what it can.
pub fn assemble(disk: &Disk) -> Result<Assembly<'_>> {
    let volumes = VolumeFs::new(disk);
    let mut diagnostics = Vec::new();
    let mut candidates = Vec::new();
    let mut probes = Vec::new();
    let mut open_errors = Vec::new();
    for v in &disk.volumes {
        let fstype = v.probe.fstype.clone();
        let cand = |readable, note: Option<String>| RootCandidate {
            volume_id: v.id.clone(),
            fstype: fstype.clone(),
            readable,
            has_os_release: false,
            has_fstab: false,
            fstab_root: None,
            note,
        };
        match fstype.as_deref() {
            Some("ext2" | "ext3" | "ext4") => match volumes.open(&v.id) {
                Ok(fs) => {
                    let g = Guest::with_root(fs);
                    // Present unless the lookup says "not found": a corrupt
                    // inode is still a file that is there (and is reported
                    // when it is read).
                    let present = |p: &str| match g.symlink_metadata(&GuestPath::new(p)) {
                        Ok(_) => true,
                        Err(e) => e.kind() != ErrorKind::NotFound,
                    };
                    let has_os_release =
                        present("/etc/os-release") || present("/usr/lib/os-release");
                    let has_fstab = present("/etc/fstab");
                    if has_os_release || has_fstab {
                        probes.push(Probe {
                            index: candidates.len(),
                            has_os_release,
                            has_fstab,
                        });
                        let mut c = cand(true, None);
                        c.has_os_release = has_os_release;
                        c.has_fstab = has_fstab;
                        candidates.push(c);
                    }
                }
                Err(e) => {
                    candidates.push(cand(false, Some(e.to_string())));
                    diagnostics.push(diag(&v.id, e.to_string()));
                    open_errors.push(e);
                }
            },
            Some(t @ ("xfs" | "btrfs")) => {
                candidates.push(cand(
                    false,
                    Some(format!("{t} root: use --engine kernel (later)")),
                ));
            }
            _ => {}
        }
    }

    // Read and resolve the fstab of every full candidate.
    let full: Vec<&Probe> = probes
        .iter()
        .filter(|p| p.has_os_release && p.has_fstab)
        .collect();
    let pool: Vec<&Probe> = if full.is_empty() {
        probes.iter().collect()
    } else {
        full
    };
    let mut fstabs: Vec<(usize, Result<Option<Fstab>>, Vec<Diagnostic>)> = Vec::new();
    for p in &pool {
        let id = candidates[p.index].volume_id.clone();
        let mut read_diags = Vec::new();
        let read = volumes.open(&id).and_then(|fs| {
            read_identity_file(&Guest::with_root(fs), "/etc/fstab", &mut read_diags)
        });
        let parsed = read.map(|o| o.map(|b| Fstab::parse(&b)));
        if let Ok(Some(f)) = &parsed {
            let lines = resolve_fstab(disk, f, Some(&id));
            let root_line = lines.iter().find(|l| l.mount_point == "/");
            candidates[p.index].fstab_root = root_line
                .and_then(|l| l.resolution.volume_id())
                .map(str::to_owned);
        }
        fstabs.push((p.index, parsed, read_diags));
    }
    let self_rooted =
        |i: usize| candidates[i].fstab_root.as_deref() == Some(candidates[i].volume_id.as_str());
    let chosen = fstabs
        .iter()
        .position(|(i, _, _)| self_rooted(*i))
        .or(if fstabs.is_empty() { None } else { Some(0) });

    let Some(chosen) = chosen else {
        // No readable root. If an ext volume failed to open and nothing else
        // could be the root, that failure is the answer.
        let unreadable_other = candidates.iter().any(|c| {
            !c.readable
                && c.note
                    .as_deref()
                    .is_some_and(|n| n.contains("--engine kernel"))
        });
        if !unreadable_other {
            if let Some(e) = open_errors.into_iter().next() {
                return Err(e);
            }
        }
        diagnostics.push(diag(
            "root",
            "no readable Linux root filesystem (with /etc/os-release and /etc/fstab) on this disk",
        ));
        return Ok(Assembly {
            guest: Guest::empty(),
            volumes,
            root: None,
            root_candidates: candidates,
            fstab: None,
            fstab_lines: Vec::new(),
            mounts: Vec::new(),
            diagnostics,
        });
    };
    let (root_index, fstab_result, read_diags) = fstabs.remove(chosen);
    let root_id = candidates[root_index].volume_id.clone();
    let fstab = fstab_result?;
    diagnostics.extend(read_diags);
    let reason = if self_rooted(root_index) {
        "holds /etc/os-release and /etc/fstab, and its fstab mounts it at /".to_owned()
    } else if candidates[root_index].has_os_release && candidates[root_index].has_fstab {
        "holds /etc/os-release and /etc/fstab".to_owned()
    } else if candidates[root_index].has_os_release {
        diagnostics.push(diag(&root_id, "the root has no /etc/fstab"));
        "holds /etc/os-release (no /etc/fstab)".to_owned()
    } else {
        diagnostics.push(diag(&root_id, "the root has no os-release file"));
        "holds /etc/fstab (no os-release)".to_owned()
    };
    let others: Vec<&str> = fstabs
        .iter()
        .map(|(i, _, _)| candidates[*i].volume_id.as_str())
        .collect();
    if !others.is_empty() {
        diagnostics.push(diag(
            "root",
            format!(
                "several volumes look like a Linux root ({root_id}, {}); using {root_id} {}",
                others.join(", "),
                if self_rooted(root_index) {
                    "because its fstab mounts it at /"
                } else {
                    "(first in disk order)"
                }
            ),
        ));
    }
    for (i, c) in candidates.iter_mut().enumerate() {
        if i != root_index && c.readable && c.note.is_none() {
            c.note = Some(format!("not chosen: {root_id} is the root"));
        }
    }

    let root_fs = volumes.open(&root_id)?;
    let mut guest = Guest::with_root(root_fs.clone());
    let mut mounts = vec![MountInfo {
        mount_point: "/".to_owned(),
        volume_id: root_id.clone(),
        fstype: root_fs.fs_type().to_owned(),
        fstab_line: None,
    }];
    let fstab_lines = match &fstab {
        Some(f) => resolve_fstab(disk, f, Some(&root_id)),
        None => Vec::new(),
    };
    if let Some(f) = &fstab {
        for d in &f.diagnostics {
            diagnostics.push(diag(
                format!("/etc/fstab line {}", d.line),
                d.message.clone(),
            ));
        }
    }
    for l in &fstab_lines {
        let Some(volume_id) = l.resolution.volume_id() else {
            continue;
        };
        if l.swap || l.options.iter().any(|o| o == "bind") {
            continue;
        }
        let mp = GuestPath::new(&l.mount_point);
        if !l.mount_point.starts_with('/') {
            continue;
        }
        if mp.is_root() {
            if volume_id != root_id {
                diagnostics.push(diag(
                    format!("/etc/fstab line {}", l.line),
                    format!(
                        "fstab mounts {volume_id} at / but the root filesystem found is {root_id}"
                    ),
                ));
            } else if let Some(m) = mounts.first_mut() {
                m.fstab_line = Some(l.line);
            }
            continue;
        }
        match volumes.open(volume_id) {
            Ok(fs) => {
                let fstype = fs.fs_type().to_owned();
                match guest.mount(mp, fs) {
                    Ok(()) => mounts.push(MountInfo {
                        mount_point: l.mount_point.clone(),
                        volume_id: volume_id.to_owned(),
                        fstype,
                        fstab_line: Some(l.line),
                    }),
                    Err(e) => {
                        diagnostics.push(diag(format!("/etc/fstab line {}", l.line), e.to_string()))
                    }
                }
            }
            Err(e) => diagnostics.push(diag(
                format!("/etc/fstab line {}", l.line),
                format!("{} is not mounted in the guest view: {e}", l.mount_point),
            )),
        }
    }
    Ok(Assembly {
        guest,
        volumes,
        root: Some(RootChoice {
            volume_id: root_id,
            reason,
        }),
        root_candidates: candidates,
        fstab,
        fstab_lines,
        mounts,
        diagnostics,
    })
}

/// Assembles a guest whose root is an already-mounted host directory tree
/// (`rescue-disk check /mnt/vm1`). The operator's mounts below the tree are
/// crossed by the kernel; the disk behind the tree is not known, so fstab
/// sources that need the disk's volumes are reported as unresolvable rather
/// than missing.
pub fn assemble_tree(disk: &Disk, root: Rc<dyn GuestFs>) -> Result<Assembly<'_>> {
    let volumes = VolumeFs::new(disk);
    let guest = Guest::with_root(root.clone());
    let mut diagnostics = Vec::new();
    let fstab =
        read_identity_file(&guest, "/etc/fstab", &mut diagnostics)?.map(|b| Fstab::parse(&b));
    let mut fstab_lines = match &fstab {
        Some(f) => resolve_fstab(disk, f, None),
        None => Vec::new(),
    };
    for l in &mut fstab_lines {
        if matches!(
            l.resolution,
            Resolution::NotFound { .. } | Resolution::Guessed { .. } | Resolution::Resolved { .. }
        ) {
            l.resolution = Resolution::Unresolvable {
                reason: "the target is a mounted directory tree: the disk's volumes are not known"
                    .to_owned(),
            };
        }
    }
    if let Some(f) = &fstab {
        for d in &f.diagnostics {
            diagnostics.push(diag(
                format!("/etc/fstab line {}", d.line),
                d.message.clone(),
            ));
        }
    }
    let volume_id = root.volume_id().to_owned();
    Ok(Assembly {
        guest,
        volumes,
        root: Some(RootChoice {
            volume_id: volume_id.clone(),
            reason: "the target is a mounted directory tree".to_owned(),
        }),
        root_candidates: Vec::new(),
        fstab,
        fstab_lines,
        mounts: vec![MountInfo {
            mount_point: "/".to_owned(),
            volume_id,
            fstype: root.fs_type().to_owned(),
            fstab_line: None,
        }],
        diagnostics,
    })
}
