//! `/etc/fstab` checks: the lines that drop a boot into emergency mode.
//!
//! systemd-fstab-generator turns every line into a mount unit that
//! `local-fs.target` requires unless the line says `nofail`; a device that
//! never appears times out after 90 s and the boot ends in "Welcome to
//! emergency mode". Lines are resolved against the volumes of this disk only
//! (by `rescue_guest`), so "not found" means "not on this disk".

use rescue_config::fstab::{
    Entry, Field, Fstab, Line, LineKind, Source, NETWORK_FSTYPES, PSEUDO_FSTYPES,
};
use rescue_guest::{FstabLine, GuestPath, Resolution};

use crate::edit::{Edit, Repair};
use crate::{Area, CheckInfo, CheckResult, Context, Evidence, Finding, FstabMode, Severity};

const FSTAB: &str = "/etc/fstab";

pub(crate) const UNSTABLE_DEVICE: CheckInfo = CheckInfo {
    id: "fstab.unstable-device",
    area: Area::Boot,
    symptom: "\"Welcome to emergency mode\" after a reboot or re-attach",
    looks_at: "fstab lines naming /dev/sdX, /dev/vdX, /dev/xvdX, /dev/nvmeXnYpZ",
};

pub(crate) const MISSING_SOURCE: CheckInfo = CheckInfo {
    id: "fstab.missing-source",
    area: Area::Boot,
    symptom: "\"Welcome to emergency mode\"; \"Dependency failed for <mount point>\"",
    looks_at: "UUID=, LABEL=, PARTUUID=, PARTLABEL= that no volume of this disk carries",
};

pub(crate) const SYNTAX: CheckInfo = CheckInfo {
    id: "fstab.syntax",
    area: Area::Boot,
    symptom: "\"Welcome to emergency mode\"; \"parse error\" in the journal",
    looks_at: "too few fields, non-numeric dump/pass, unknown filesystem type, missing mount point",
};

pub(crate) const NETWORK: CheckInfo = CheckInfo {
    id: "fstab.network",
    area: Area::Boot,
    symptom: "the boot hangs waiting for a network filesystem",
    looks_at: "nfs/cifs/… lines without _netdev or nofail",
};

/// Filesystem types the Linux kernel (or a FUSE helper) mounts, beyond the
/// pseudo and network ones. An fstab type outside all three lists cannot be
/// mounted by a stock kernel.
const DISK_FSTYPES: &[&str] = &[
    "ext2",
    "ext3",
    "ext4",
    "ext4dev",
    "xfs",
    "btrfs",
    "vfat",
    "msdos",
    "fat",
    "exfat",
    "ntfs",
    "ntfs3",
    "ntfs-3g",
    "fuse.ntfs-3g",
    "iso9660",
    "udf",
    "squashfs",
    "erofs",
    "f2fs",
    "jfs",
    "reiserfs",
    "nilfs2",
    "hfs",
    "hfsplus",
    "zfs",
    "bcachefs",
    "swap",
    "auto",
    "virtiofs",
    "fuse",
    "minix",
    "ufs",
    "cramfs",
    "romfs",
    "zonefs",
];

/// Every fstab entry with its resolution (joined by line number).
fn entries<'a>(ctx: &'a Context<'_>) -> Vec<(&'a Line, &'a Entry, Option<&'a FstabLine>)> {
    let Some(fstab) = ctx.fstab else {
        return Vec::new();
    };
    fstab
        .lines
        .iter()
        .filter_map(|l| match &l.kind {
            LineKind::Entry(e) => Some((
                l,
                e.as_ref(),
                ctx.report.fstab.iter().find(|f| f.line == l.number),
            )),
            _ => None,
        })
        .collect()
}

fn line_text(fstab: &Fstab, line: &Line) -> String {
    String::from_utf8_lossy(fstab.line_bytes(line)).into_owned()
}

/// The line with `field` replaced by `replacement` (spans are file offsets).
fn replace_field(fstab: &Fstab, line: &Line, field: &Field, replacement: &str) -> String {
    let bytes = fstab.line_bytes(line);
    let start = field
        .span
        .start
        .saturating_sub(line.span.start)
        .min(bytes.len());
    let end = field
        .span
        .end
        .saturating_sub(line.span.start)
        .clamp(start, bytes.len());
    let mut out = String::from_utf8_lossy(&bytes[..start]).into_owned();
    out.push_str(replacement);
    out.push_str(&String::from_utf8_lossy(&bytes[end..]));
    out
}

/// The line with `add` appended to its options (creating the field, and
/// the dump/pass fields it needs, when absent).
fn add_options(fstab: &Fstab, line: &Line, entry: &Entry, add: &[&str]) -> String {
    let missing: Vec<&str> = add
        .iter()
        .copied()
        .filter(|o| !entry.has_option(o))
        .collect();
    match &entry.options {
        Some(f) => {
            let mut opts = f.value.clone();
            for o in &missing {
                opts.push(',');
                opts.push_str(o);
            }
            replace_field(fstab, line, f, &rescue_config::fstab::encode_octal(&opts))
        }
        None => {
            let mut text = line_text(fstab, line).trim_end().to_owned();
            text.push_str("\tdefaults");
            for o in &missing {
                text.push(',');
                text.push_str(o);
            }
            text
        }
    }
}

/// The line commented out, with the reason on the line above.
fn comment_out(fstab: &Fstab, line: &Line, reason: &str) -> String {
    format!("# rescue-disk: {reason}\n# {}", line_text(fstab, line))
}

fn edit(fstab: &Fstab, line: &Line, after: String) -> Edit {
    Edit::EditLine {
        path: FSTAB.to_owned(),
        line: line.number,
        before: line_text(fstab, line),
        after,
    }
}

fn volume_uuid(ctx: &Context<'_>, volume_id: &str) -> Option<String> {
    ctx.disk
        .volumes
        .iter()
        .find(|v| v.id == volume_id)
        .and_then(|v| v.probe.uuid.clone())
}

fn evidence(fstab: &Fstab, line: &Line) -> Evidence {
    Evidence::line(FSTAB, line.number, line_text(fstab, line))
}

/// The repair for a line whose device will not be there: `nofail` or a
/// comment, as the user chose.
fn neutralise(
    ctx: &Context<'_>,
    fstab: &Fstab,
    line: &Line,
    entry: &Entry,
    reason: &str,
) -> Repair {
    match ctx.options.fstab_mode {
        FstabMode::Nofail => Repair {
            summary: format!(
                "add nofail to line {} so boot continues without {}",
                line.number, entry.spec.value
            ),
            edits: vec![edit(
                fstab,
                line,
                add_options(fstab, line, entry, &["nofail"]),
            )],
            manual: None,
        },
        FstabMode::Comment => Repair {
            summary: format!("comment out line {} ({reason})", line.number),
            edits: vec![edit(fstab, line, comment_out(fstab, line, reason))],
            manual: None,
        },
    }
}

fn is_essential(mount_point: &str) -> bool {
    matches!(mount_point, "/" | "/usr" | "/boot")
}

pub(crate) fn unstable_device(ctx: &Context<'_>) -> CheckResult {
    let Some(fstab) = ctx.fstab else {
        return Ok(Vec::new());
    };
    let mut out = Vec::new();
    for (line, entry, resolved) in entries(ctx) {
        let Some(resolved) = resolved.filter(|r| r.unstable_device_name) else {
            continue;
        };
        let mount = entry.mount_point();
        let subject = format!("{FSTAB} line {}", line.number);
        let target = resolved
            .resolution
            .volume_id()
            .and_then(|v| volume_uuid(ctx, v).map(|u| (v, u)));
        if !ctx.disk_known {
            out.push(
                Finding::new(
                    &UNSTABLE_DEVICE,
                    if entry.has_option("nofail") { Severity::Info } else { Severity::Warning },
                    subject,
                    format!(
                        "{} names a kernel device, and device names change when disks are added, removed or re-attached",
                        entry.spec.value
                    ),
                )
                .evidence(evidence(fstab, line))
                .repair(Some(Repair {
                    summary: "name the filesystem by UUID=".into(),
                    edits: Vec::new(),
                    manual: Some(format!(
                        "run `rescue-disk check` on the disk itself to get the UUID, or `blkid {}` on the VM",
                        entry.spec.value
                    )),
                })),
            );
            continue;
        }
        let finding = match (&resolved.resolution, target) {
            (_, Some((volume, uuid))) => {
                let how = match &resolved.resolution {
                    Resolution::Guessed { notes, .. } => {
                        format!("; today it is {volume} ({})", notes.join("; "))
                    }
                    _ => format!("; today it is {volume}"),
                };
                Finding::new(
                    &UNSTABLE_DEVICE,
                    if entry.has_option("nofail") { Severity::Info } else { Severity::Warning },
                    subject,
                    format!(
                        "{} names a kernel device, and device names change when disks are added, removed or re-attached{how}",
                        entry.spec.value
                    ),
                )
                .repair(Some(Repair {
                    summary: format!("name the filesystem by UUID={uuid} (the one now at {volume})"),
                    edits: vec![edit(fstab, line, replace_field(fstab, line, &entry.spec, &format!("UUID={uuid}")))],
                    manual: None,
                }))
            }
            (res, None) => {
                let why = match res {
                    Resolution::NotFound { reason } => reason.clone(),
                    _ => "no filesystem with a UUID is at that position on this disk".to_owned(),
                };
                let already_nofail = entry.has_option("nofail");
                // With nofail, local-fs.target only wants the mount: boot
                // goes on without it, so what remains is information.
                let severity = if already_nofail {
                    Severity::Info
                } else if entry.is_swap() {
                    Severity::Warning
                } else {
                    Severity::Error
                };
                let f = Finding::new(
                    &UNSTABLE_DEVICE,
                    severity,
                    subject,
                    format!("{} names a kernel device that is not on this disk: {why}", entry.spec.value),
                )
                .symptom(if already_nofail {
                    format!(
                        "boot continues without {mount} (nofail); the log shows \"Dependency failed for {mount}\""
                    )
                } else {
                    format!(
                        "\"Welcome to emergency mode\"; \"Timed out waiting for device {}\"; \"Dependency failed for {mount}\"",
                        entry.spec.value
                    )
                });
                if already_nofail {
                    f
                } else if is_essential(mount) {
                    f.repair(Some(Repair {
                        summary: format!("{mount} cannot be mounted with nofail; point it at the right filesystem by hand"),
                        edits: Vec::new(),
                        manual: Some(format!("edit line {} of {FSTAB} to name the filesystem that holds {mount} by UUID=", line.number)),
                    }))
                } else {
                    f.repair(Some(neutralise(
                        ctx,
                        fstab,
                        line,
                        entry,
                        "device not on this disk",
                    )))
                }
            }
        };
        out.push(finding.evidence(evidence(fstab, line)));
    }
    Ok(out)
}

/// The volume that holds the root filesystem, and its UUID.
fn root_uuid(ctx: &Context<'_>) -> Option<(String, String)> {
    let root = ctx.report.root.as_ref()?;
    volume_uuid(ctx, &root.volume_id).map(|u| (root.volume_id.clone(), u))
}

/// A volume that looks like a separate /boot: an ext filesystem that is not
/// the root and not named by any other fstab line, holding kernels at its top.
fn boot_candidate(ctx: &Context<'_>) -> Option<(String, String)> {
    let root = ctx.report.root.as_ref().map(|r| r.volume_id.as_str());
    let used: Vec<&str> = ctx
        .report
        .fstab
        .iter()
        .filter_map(|f| f.resolution.volume_id())
        .collect();
    let mut candidates = ctx.disk.volumes.iter().filter(|v| {
        Some(v.id.as_str()) != root
            && !used.contains(&v.id.as_str())
            && v.probe
                .fstype
                .as_deref()
                .is_some_and(|t| t.starts_with("ext"))
    });
    let first = candidates.next()?;
    if candidates.next().is_some() {
        return None;
    }
    first.probe.uuid.clone().map(|u| (first.id.clone(), u))
}

pub(crate) fn missing_source(ctx: &Context<'_>) -> CheckResult {
    let Some(fstab) = ctx.fstab else {
        return Ok(Vec::new());
    };
    let mut out = Vec::new();
    for (line, entry, resolved) in entries(ctx) {
        let Some(resolved) = resolved else { continue };
        let Resolution::NotFound { reason } = &resolved.resolution else {
            continue;
        };
        if !matches!(entry.source(), Source::Tag { .. }) || resolved.unstable_device_name {
            continue;
        }
        let mount = entry.mount_point();
        let already_nofail = entry.has_option("nofail");
        let mut f = Finding::new(
            &MISSING_SOURCE,
            // With nofail, boot goes on without the filesystem.
            if already_nofail { Severity::Info } else { Severity::Error },
            format!("{FSTAB} line {}", line.number),
            format!("{} is not on this disk: {reason}", entry.spec.value),
        )
        .symptom(if already_nofail {
            format!("boot continues without {mount} (nofail); the log shows \"Dependency failed for {mount}\"")
        } else if entry.is_swap() {
            format!("\"Dependency failed for /dev/disk/by-…\" for swap; boot continues without swap ({})", entry.spec.value)
        } else {
            format!("\"Welcome to emergency mode\"; \"Timed out waiting for device\"; \"Dependency failed for {mount}\"")
        })
        .evidence(evidence(fstab, line));
        let repoint = match mount {
            "/" => root_uuid(ctx),
            "/boot" => boot_candidate(ctx),
            _ => None,
        };
        f = match (repoint, is_essential(mount)) {
            (Some((volume, uuid)), _) => f.repair(Some(Repair {
                summary: format!(
                    "point {mount} at UUID={uuid}, the filesystem on {volume} that holds it"
                ),
                edits: vec![edit(
                    fstab,
                    line,
                    replace_field(fstab, line, &entry.spec, &format!("UUID={uuid}")),
                )],
                manual: None,
            })),
            (None, true) => f.repair(Some(Repair {
                summary: format!("{mount} cannot be skipped; find the filesystem that holds it"),
                edits: Vec::new(),
                manual: Some(format!(
                    "edit line {} of {FSTAB} to name the filesystem holding {mount}",
                    line.number
                )),
            })),
            (None, false) if already_nofail => f,
            (None, false) => f.repair(Some(neutralise(
                ctx,
                fstab,
                line,
                entry,
                "its filesystem is not on this disk",
            ))),
        };
        out.push(f);
    }
    Ok(out)
}

pub(crate) fn syntax(ctx: &Context<'_>) -> CheckResult {
    let Some(fstab) = ctx.fstab else {
        return Ok(Vec::new());
    };
    let mut out = Vec::new();
    for line in &fstab.lines {
        let subject = format!("{FSTAB} line {}", line.number);
        match &line.kind {
            LineKind::Invalid { fields } => {
                out.push(
                    Finding::new(
                        &SYNTAX,
                        Severity::Error,
                        subject,
                        format!("the line has {} field(s); an fstab entry needs at least 3 (source, mount point, type)", fields.len()),
                    )
                    .evidence(evidence(fstab, line))
                    .repair(Some(Repair {
                        summary: format!("comment out line {}", line.number),
                        edits: vec![edit(fstab, line, comment_out(fstab, line, "not a valid fstab entry"))],
                        manual: None,
                    })),
                );
            }
            LineKind::Entry(entry) => out.extend(entry_syntax(ctx, fstab, line, entry)?),
            LineKind::Blank | LineKind::Comment => {}
        }
    }
    Ok(out)
}

fn entry_syntax(
    ctx: &Context<'_>,
    fstab: &Fstab,
    line: &Line,
    entry: &Entry,
) -> Result<Vec<Finding>, rescue_io::Error> {
    let mut out = Vec::new();
    let subject = format!("{FSTAB} line {}", line.number);
    let comment = |reason: &str| Repair {
        summary: format!("comment out line {}", line.number),
        edits: vec![edit(fstab, line, comment_out(fstab, line, reason))],
        manual: None,
    };
    for (name, field) in [("dump", &entry.freq), ("pass", &entry.passno)] {
        if let Some(f) = field.as_ref().filter(|f| f.value.parse::<u32>().is_err()) {
            out.push(
                Finding::new(
                    &SYNTAX,
                    Severity::Error,
                    subject.clone(),
                    format!("the {name} field {:?} is not a number", f.value),
                )
                .evidence(evidence(fstab, line))
                .repair(Some(comment(&format!("non-numeric {name} field")))),
            );
        }
    }
    let fstype = entry.fstype();
    let known = fstype.split(',').all(|t| {
        DISK_FSTYPES.contains(&t)
            || PSEUDO_FSTYPES.contains(&t)
            || NETWORK_FSTYPES.contains(&t)
            || t.starts_with("fuse.")
            || t == "bind"
    });
    if !known {
        out.push(
            Finding::new(
                &SYNTAX,
                Severity::Error,
                subject.clone(),
                format!("filesystem type {fstype:?} is not one Linux can mount"),
            )
            .evidence(evidence(fstab, line))
            .repair(Some(if entry.has_option("nofail") {
                comment(&format!("unknown filesystem type {fstype}"))
            } else {
                neutralise(
                    ctx,
                    fstab,
                    line,
                    entry,
                    &format!("unknown filesystem type {fstype}"),
                )
            })),
        );
    }
    let mount = entry.mount_point();
    if entry.is_swap() || mount == "none" {
        return Ok(out);
    }
    if !mount.starts_with('/') {
        out.push(
            Finding::new(
                &SYNTAX,
                Severity::Error,
                subject,
                format!("mount point {mount:?} is not an absolute path"),
            )
            .evidence(evidence(fstab, line))
            .repair(Some(comment("mount point is not an absolute path"))),
        );
        return Ok(out);
    }
    // A missing mount point: systemd creates it at boot on a writable
    // parent, but a read-only parent or a non-directory makes the mount fail.
    match ctx.guest.metadata(&GuestPath::new(mount)) {
        Ok(m) if m.is_dir() => {}
        Ok(m) => out.push(
            Finding::new(
                &SYNTAX,
                Severity::Error,
                subject,
                format!(
                    "mount point {mount} exists but is a {:?}, not a directory",
                    m.file_type
                ),
            )
            .evidence(evidence(fstab, line)),
        ),
        Err(e) if e.kind() == rescue_io::ErrorKind::NotFound => out.push(
            Finding::new(
                &SYNTAX,
                Severity::Warning,
                subject,
                format!("mount point {mount} does not exist in the guest"),
            )
            .symptom(format!(
                "\"Failed to mount {mount}\" when its parent directory is read-only"
            ))
            .evidence(evidence(fstab, line))
            .repair(Some(Repair {
                summary: format!("create the directory {mount} (0755 root)"),
                edits: vec![Edit::CreateDir {
                    path: mount.to_owned(),
                    mode: 0o755,
                    uid: 0,
                    gid: 0,
                }],
                manual: None,
            })),
        ),
        Err(e) => return Err(e),
    }
    Ok(out)
}

pub(crate) fn network(ctx: &Context<'_>) -> CheckResult {
    let Some(fstab) = ctx.fstab else {
        return Ok(Vec::new());
    };
    let mut out = Vec::new();
    for (line, entry, _) in entries(ctx) {
        let networked = NETWORK_FSTYPES.contains(&entry.fstype())
            || matches!(entry.source(), Source::Network { .. });
        if !networked || (entry.has_option("_netdev") && entry.has_option("nofail")) {
            continue;
        }
        let missing: Vec<&str> = ["nofail", "_netdev"]
            .into_iter()
            .filter(|o| !entry.has_option(o))
            .collect();
        out.push(
            Finding::new(
                &NETWORK,
                if entry.has_option("nofail") { Severity::Info } else { Severity::Warning },
                format!("{FSTAB} line {}", line.number),
                format!(
                    "{} on {} is a network filesystem without {}: an unreachable server holds up the boot",
                    entry.spec.value,
                    entry.mount_point(),
                    missing.join(" or ")
                ),
            )
            .evidence(evidence(fstab, line))
            .repair(Some(Repair {
                summary: format!("add {} to line {}", missing.join(","), line.number),
                edits: vec![edit(fstab, line, add_options(fstab, line, entry, &missing))],
                manual: None,
            })),
        );
    }
    Ok(out)
}
