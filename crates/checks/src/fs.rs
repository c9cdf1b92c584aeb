//! Filesystem state checks: errors the kernel recorded in a superblock, and
//! a root filesystem with no room left.
//!
//! Both read only superblock facts that volume discovery already probed.

use rescue_volumes::{ExtError, ExtInfo, Volume};

use crate::edit::Repair;
use crate::{Area, CheckInfo, CheckResult, Context, Evidence, Finding, Severity};

pub(crate) const ERRORS: CheckInfo = CheckInfo {
    id: "fs.errors",
    area: Area::Boot,
    symptom: "\"UNEXPECTED INCONSISTENCY; RUN fsck MANUALLY\", emergency mode, or the filesystem remounted read-only",
    looks_at: "ext superblock state, error count, recorded errors, orphans",
};

pub(crate) const DISK_FULL: CheckInfo = CheckInfo {
    id: "boot.disk-full",
    area: Area::Boot,
    symptom: "\"No space left on device\"; services fail and the guest agent cannot add SSH keys",
    looks_at: "free blocks and inodes of the root filesystem",
};

fn describe_error(e: &ExtError) -> String {
    let mut s = format!("{} line {}", e.function, e.line);
    if e.inode != 0 {
        s.push_str(&format!(", inode {}", e.inode));
    }
    if e.block != 0 {
        s.push_str(&format!(", block {}", e.block));
    }
    s.push_str(&format!(", at unix time {}", e.time_unix_seconds));
    s
}

/// The mount point of a volume in the guest, for messages.
fn mount_of<'a>(ctx: &'a Context<'_>, v: &Volume) -> Option<&'a str> {
    ctx.report
        .mounts
        .iter()
        .find(|m| m.volume_id == v.id)
        .map(|m| m.mount_point.as_str())
}

fn fsck_repair(v: &Volume) -> Repair {
    Repair {
        summary: format!("check and repair the filesystem on {}", v.id),
        edits: Vec::new(),
        manual: Some(format!(
            "run `e2fsck -p` on {} with an undo file (`-z FILE`), or `fix --fsck` (planned)",
            v.id
        )),
    }
}

pub(crate) fn errors(ctx: &Context<'_>) -> CheckResult {
    let mut out = Vec::new();
    for v in &ctx.disk.volumes {
        let Some(ext) = &v.probe.ext else { continue };
        let name = match mount_of(ctx, v) {
            Some(m) => format!("{} ({m})", v.id),
            None => v.id.clone(),
        };
        if ext.has_errors {
            let mut f = Finding::new(
                &ERRORS,
                Severity::Error,
                format!("filesystem on {name}"),
                format!(
                    "the kernel recorded {} error(s) on this filesystem; fsck will stop the boot until it is repaired",
                    ext.error_count.max(1)
                ),
            )
            .evidence(Evidence::fact(format!(
                "superblock state: {}; error count {}",
                if ext.clean { "clean with errors" } else { "not clean with errors" },
                ext.error_count
            )));
            if let Some(e) = &ext.first_error {
                f = f.evidence(Evidence::fact(format!(
                    "first error: {}",
                    describe_error(e)
                )));
            }
            if let Some(e) = &ext.last_error {
                f = f.evidence(Evidence::fact(format!("last error: {}", describe_error(e))));
            }
            out.push(f.repair(Some(fsck_repair(v))));
        } else if ext.orphan_list_head != 0 && !ext.needs_recovery {
            out.push(
                Finding::new(
                    &ERRORS,
                    Severity::Info,
                    format!("filesystem on {name}"),
                    "files deleted while open are still on the orphan list; the next mount or e2fsck releases them",
                )
                .evidence(Evidence::fact(format!("s_last_orphan = inode {}", ext.orphan_list_head))),
            );
        }
    }
    Ok(out)
}

/// Fraction of `part` in `whole`, for messages (`0.3%`).
fn percent(part: u64, whole: u64) -> String {
    if whole == 0 {
        return "0%".into();
    }
    format!("{:.1}%", part as f64 * 100.0 / whole as f64)
}

fn full(ext: &ExtInfo) -> Option<(Severity, String)> {
    let bytes = |blocks: u64| blocks.saturating_mul(u64::from(ext.block_size));
    let free = ext.free_blocks_count;
    if free <= ext.reserved_blocks_count {
        return Some((
            Severity::Error,
            format!(
                "{} bytes free, all of it reserved for root ({} reserved): ordinary users and services get \"No space left on device\"",
                bytes(free),
                bytes(ext.reserved_blocks_count)
            ),
        ));
    }
    if ext.free_inodes_count == 0 {
        return Some((
            Severity::Error,
            "no free inodes: no file can be created".into(),
        ));
    }
    let usable = free - ext.reserved_blocks_count;
    if usable.saturating_mul(100) < ext.blocks_count {
        return Some((
            Severity::Warning,
            format!(
                "only {} of the filesystem is free for ordinary users",
                percent(usable, ext.blocks_count)
            ),
        ));
    }
    if u64::from(ext.free_inodes_count).saturating_mul(100) < u64::from(ext.inodes_count) {
        return Some((
            Severity::Warning,
            format!(
                "only {} of the inodes are free",
                percent(
                    u64::from(ext.free_inodes_count),
                    u64::from(ext.inodes_count)
                )
            ),
        ));
    }
    None
}

pub(crate) fn disk_full(ctx: &Context<'_>) -> CheckResult {
    let mut out = Vec::new();
    for m in &ctx.report.mounts {
        if !matches!(
            m.mount_point.as_str(),
            "/" | "/var" | "/boot" | "/tmp" | "/home"
        ) {
            continue;
        }
        let Some(v) = ctx.disk.volumes.iter().find(|v| v.id == m.volume_id) else {
            continue;
        };
        let Some(ext) = &v.probe.ext else { continue };
        let Some((severity, cause)) = full(ext) else {
            continue;
        };
        out.push(
            Finding::new(&DISK_FULL, severity, format!("{} on {}", m.mount_point, v.id), cause)
                .evidence(Evidence::fact(format!(
                    "{} of {} blocks free ({} reserved), {} of {} inodes free, {}-byte blocks",
                    ext.free_blocks_count,
                    ext.blocks_count,
                    ext.reserved_blocks_count,
                    ext.free_inodes_count,
                    ext.inodes_count,
                    ext.block_size
                )))
                .repair(Some(Repair {
                    summary: "free space".into(),
                    edits: Vec::new(),
                    manual: Some("delete rotated logs, package caches and archived journals (fix --free-space, planned)".into()),
                })),
        );
    }
    Ok(out)
}
