//! `rescue-disk inspect`: open read-only, discover, identify, render.

use std::path::PathBuf;

use anyhow::{bail, Context, Result};
use rescue_guest::{GuestReport, Resolution};
use rescue_io::{Format, OpenOptions, Opened, SourceKind};
use rescue_volumes::{Diagnostic, Disk, PartitionTable, Volume, VolumeGroup, VolumeKind};
use serde::Serialize;

use crate::style::Style;
use crate::Outcome;
use rescue_disk::cli::{ImageFormat, InspectArgs, TargetArgs};

/// Name of the JSON document type, see docs/schema/inspect.v1.json.
pub const SCHEMA: &str = "rescue-disk/inspect";
/// Bump on any incompatible change of the JSON shape.
pub const SCHEMA_VERSION: u32 = 1;

/// The `rescue-disk inspect --json` document: what is on a disk and which
/// guest it holds. Keys are stable within a schema version.
#[derive(Debug, Serialize, schemars::JsonSchema)]
#[schemars(title = "rescue-disk inspect report, schema version 1")]
pub struct InspectReport<'a> {
    /// Always `rescue-disk/inspect`.
    schema: &'static str,
    /// Incremented on any incompatible change; this document describes 1.
    schema_version: u32,
    /// Version of rescue-disk that wrote the report.
    tool_version: &'static str,
    /// The opened target.
    target: TargetReport,
    /// The partition table found on the disk.
    partition_table: &'a PartitionTable,
    /// Partitions, LVM logical volumes, or the whole disk.
    volumes: &'a [Volume],
    /// LVM2 volume groups with physical volumes on this disk.
    volume_groups: &'a [VolumeGroup],
    /// The guest operating system found on the volumes.
    guest: &'a GuestReport,
    /// Problems worked around while discovering volumes.
    diagnostics: &'a [Diagnostic],
}

/// The target as opened.
#[derive(Debug, Serialize, schemars::JsonSchema)]
struct TargetReport {
    /// The path given on the command line.
    path: PathBuf,
    /// `file` or `block_device`.
    source: &'static str,
    /// `raw` or `qcow2`.
    format: &'static str,
    /// Size of the disk as the guest sees it (qcow2: the virtual size).
    size_in_bytes: u64,
    /// qcow2 backing files, nearest first.
    backing_chain: Vec<PathBuf>,
    /// qcow2 header facts; null for raw targets.
    qcow2: Option<Qcow2Report>,
}

/// Facts from the qcow2 header.
#[derive(Debug, Serialize, schemars::JsonSchema)]
struct Qcow2Report {
    /// qcow2 version, 2 or 3.
    version: u32,
    /// Cluster size in bytes.
    cluster_size_in_bytes: u64,
    /// The image holds internal snapshots.
    has_internal_snapshots: bool,
    /// The dirty bit is set (refcounts may be stale; reading is safe).
    dirty: bool,
}

/// Opens the target read-only as the user asked.
pub fn open_target(args: &TargetArgs) -> Result<Opened> {
    let format = args.format.map(|f| match f {
        ImageFormat::Raw => Format::Raw,
        ImageFormat::Qcow2 => Format::Qcow2,
    });
    Ok(rescue_io::open(&args.target, OpenOptions { format })?)
}

/// Runs `inspect`.
pub fn run(args: &InspectArgs, style: &Style) -> Result<Outcome> {
    let path = args.target.target.display().to_string();
    if std::fs::metadata(&args.target.target).is_ok_and(|m| m.is_dir()) {
        bail!(
            "{path} is a directory, not a disk image or block device: inspect reads disks; \
             to diagnose a guest tree you mounted yourself, run `rescue-disk check {path}`"
        );
    }
    let opened = open_target(&args.target)?;
    let disk = rescue_volumes::discover(opened.device.clone())
        .with_context(|| format!("discovering volumes on {path}"))?;
    if disk.volumes.is_empty() && matches!(disk.table, PartitionTable::None) {
        bail!(
            "no partition table or known filesystem found on {path}: check that this is the right \
             disk; an image in another container format must be converted first (qemu-img convert -O raw)"
        );
    }
    let guest = rescue_guest::inspect(&opened.device, &disk)
        .with_context(|| format!("identifying the guest on {path}"))?;
    let report = InspectReport {
        schema: SCHEMA,
        schema_version: SCHEMA_VERSION,
        tool_version: env!("CARGO_PKG_VERSION"),
        target: TargetReport {
            path: opened.path.clone(),
            source: match opened.source {
                SourceKind::File => "file",
                SourceKind::BlockDevice => "block_device",
            },
            format: opened.format.name(),
            size_in_bytes: opened.device.size_in_bytes(),
            backing_chain: opened.backing_chain.clone(),
            qcow2: opened.qcow2.map(|q| Qcow2Report {
                version: q.version,
                cluster_size_in_bytes: q.cluster_size_in_bytes,
                has_internal_snapshots: q.has_internal_snapshots,
                dirty: q.is_dirty,
            }),
        },
        partition_table: &disk.table,
        volumes: &disk.volumes,
        volume_groups: &disk.volume_groups,
        guest: &guest,
        diagnostics: &disk.diagnostics,
    };
    crate::print_report(args.json, &report, || render_human(&report, &disk, style))?;
    Ok(Outcome::Ok)
}

/// Byte counts the way operators read them: `512 B`, `3 MiB`, `20.5 GiB`.
pub fn human_size(bytes: u64) -> String {
    const UNITS: [&str; 6] = ["B", "KiB", "MiB", "GiB", "TiB", "PiB"];
    let mut value = bytes as f64;
    let mut unit = 0;
    while value >= 1024.0 && unit + 1 < UNITS.len() {
        value /= 1024.0;
        unit += 1;
    }
    if unit == 0 || value.fract() == 0.0 {
        format!("{value:.0} {}", UNITS[unit])
    } else {
        format!("{value:.1} {}", UNITS[unit])
    }
}

fn volume_type(v: &Volume) -> String {
    match &v.kind {
        VolumeKind::GptPartition {
            type_name,
            type_guid,
            ..
        } => type_name.clone().unwrap_or_else(|| type_guid.clone()),
        VolumeKind::MbrPartition {
            type_id, logical, ..
        } => {
            let name = mbr_type_name(type_id).map(|n| format!("{n} ({type_id})"));
            let name = name.unwrap_or_else(|| type_id.clone());
            if *logical {
                format!("{name}, logical")
            } else {
                name
            }
        }
        VolumeKind::LogicalVolume { .. } => "LVM logical volume".to_owned(),
        VolumeKind::WholeDisk => "whole disk".to_owned(),
    }
}

/// Names fdisk gives the MBR partition types a Linux VM disk carries.
fn mbr_type_name(type_id: &str) -> Option<&'static str> {
    Some(match type_id {
        "0x83" => "Linux",
        "0x82" => "Linux swap",
        "0x8e" => "Linux LVM",
        "0xfd" => "Linux raid",
        "0xef" => "EFI System",
        "0x05" | "0x0f" | "0x85" => "Extended",
        "0x0b" | "0x0c" => "W95 FAT32",
        "0x07" => "HPFS/NTFS/exFAT",
        "0xee" => "GPT protective",
        _ => return None,
    })
}

fn render_human(r: &InspectReport<'_>, disk: &Disk, style: &Style) -> String {
    use std::fmt::Write as _;
    let mut s = String::new();
    let t = &r.target;
    let _ = write!(
        s,
        "{}: {} {}",
        t.path.display(),
        t.format,
        human_size(t.size_in_bytes)
    );
    if let Some(q) = &t.qcow2 {
        let _ = write!(
            s,
            " (qcow2 v{}, {} clusters",
            q.version,
            human_size(q.cluster_size_in_bytes)
        );
        if q.has_internal_snapshots {
            s.push_str(", internal snapshots");
        }
        if q.dirty {
            s.push_str(", dirty");
        }
        s.push(')');
    }
    s.push('\n');
    for b in &t.backing_chain {
        let _ = writeln!(s, "  backing file: {}", b.display());
    }
    let table = match r.partition_table {
        PartitionTable::Gpt {
            disk_guid,
            logical_block_size,
            used_backup,
        } => {
            let mut x = format!("GPT, disk GUID {disk_guid}, {logical_block_size}-byte sectors");
            if *used_backup {
                x.push_str(&style.warn(" (primary table damaged: backup used)"));
            }
            x
        }
        PartitionTable::Mbr { disk_signature } => format!("MBR, disk identifier {disk_signature}"),
        PartitionTable::None => "none (filesystem or PV on the whole disk)".to_owned(),
    };
    let _ = writeln!(s, "Partition table: {table}");

    let _ = writeln!(s, "\n{}", style.heading("Volumes"));
    let mut rows = vec![[
        "ID".to_owned(),
        "START".to_owned(),
        "SIZE".to_owned(),
        "TYPE".to_owned(),
        "CONTENT".to_owned(),
        "UUID".to_owned(),
        "LABEL".to_owned(),
    ]];
    for v in &disk.volumes {
        let content = match (&v.probe.fstype, &v.probe.version) {
            (Some(fs), Some(ver)) if fs == "vfat" => format!("{fs} {ver}"),
            (Some(fs), _) => fs.clone(),
            (None, _) => "-".to_owned(),
        };
        rows.push([
            v.id.clone(),
            human_size(v.start_byte),
            human_size(v.size_in_bytes),
            volume_type(v),
            content,
            v.probe.uuid.clone().unwrap_or_else(|| "-".to_owned()),
            v.probe.label.clone().unwrap_or_else(|| "-".to_owned()),
        ]);
    }
    s.push_str(&table_text(&rows, "  "));
    for v in &disk.volumes {
        if let Some(ext) = &v.probe.ext {
            let mut notes = Vec::new();
            if ext.needs_recovery {
                notes.push(style.warn("journal needs recovery"));
            }
            if ext.has_errors {
                notes.push(style.bad(&format!(
                    "errors recorded ({} so far): run e2fsck",
                    ext.error_count
                )));
            }
            if !ext.clean && !ext.needs_recovery {
                notes.push(style.warn("not cleanly unmounted"));
            }
            let free = ext
                .free_blocks_count
                .saturating_mul(u64::from(ext.block_size));
            let _ = writeln!(
                s,
                "  {}: {} free of {}, {} inodes free{}",
                v.id,
                human_size(free),
                human_size(ext.blocks_count.saturating_mul(u64::from(ext.block_size))),
                ext.free_inodes_count,
                if notes.is_empty() {
                    String::new()
                } else {
                    format!("; {}", notes.join("; "))
                }
            );
        }
    }
    for vg in &r.volume_groups.to_vec() {
        let _ = writeln!(
            s,
            "  LVM volume group {} ({}), extent {}, on {}",
            vg.name,
            vg.uuid,
            human_size(vg.extent_size_in_bytes),
            vg.physical_volumes.join(", ")
        );
        for d in &vg.unmapped {
            let _ = writeln!(s, "    {}: {}", d.subject, style.warn(&d.message));
        }
    }

    let g = r.guest;
    let _ = writeln!(s, "\n{}", style.heading("Guest"));
    match &g.root {
        Some(root) => {
            let _ = writeln!(s, "  root:       {} ({})", root.volume_id, root.reason);
        }
        None => {
            let _ = writeln!(
                s,
                "  root:       {}",
                style.warn("no root filesystem found on this disk")
            );
            for c in &g.root_candidates {
                if let Some(note) = &c.note {
                    let _ = writeln!(s, "              {}: {note}", c.volume_id);
                }
            }
        }
    }
    if let Some(os) = &g.os {
        let name = os
            .pretty_name
            .clone()
            .or_else(|| os.name.clone())
            .unwrap_or_else(|| os.id.clone());
        let _ = writeln!(
            s,
            "  os:         {name} (id {}, family {:?})",
            os.id, os.family
        );
    }
    if let Some(h) = &g.hostname {
        let _ = writeln!(s, "  hostname:   {h}");
    }
    let default_version = g
        .bootloader
        .default_entry
        .as_ref()
        .and_then(|d| d.kernel_version.clone());
    for (i, k) in g.kernels.iter().enumerate() {
        let label = if i == 0 {
            "  kernels:    "
        } else {
            "              "
        };
        let state = if k.complete {
            style.good("complete")
        } else {
            style.bad(&format!("INCOMPLETE: {}", k.missing.join("; ")))
        };
        let mut extra = String::new();
        if default_version.as_deref() == Some(k.version.as_str()) {
            extra.push_str(" (default)");
        }
        if k.rescue {
            extra.push_str(" (rescue)");
        }
        let _ = writeln!(s, "{label}{} {state}{extra}", k.version);
    }
    s.push_str(&render_boot(g, style));

    if !g.fstab.is_empty() {
        let _ = writeln!(s, "  fstab:");
        for l in &g.fstab {
            let (target, warn) = match &l.resolution {
                Resolution::Resolved {
                    volume_id,
                    via,
                    notes,
                } => {
                    let mut x = format!("{volume_id} (by {via})");
                    for n in notes {
                        x.push_str("; ");
                        x.push_str(n);
                    }
                    (x, false)
                }
                Resolution::Guessed { volume_id, notes } => {
                    (format!("{volume_id}? {}", notes.join("; ")), true)
                }
                Resolution::NotFound { reason } => (format!("NOT ON THIS DISK: {reason}"), true),
                Resolution::Unresolvable { reason } => (format!("cannot check: {reason}"), true),
                Resolution::Pseudo => ("pseudo filesystem".to_owned(), false),
                Resolution::Network => ("network filesystem".to_owned(), false),
                Resolution::GuestPath { path } => (format!("guest path {path}"), false),
            };
            let mut target = if warn { style.warn(&target) } else { target };
            if l.unstable_device_name {
                target.push_str(&style.warn(" [unstable device name]"));
            }
            let _ = writeln!(
                s,
                "    line {:<3} {} {} {} -> {target}",
                l.line, l.source, l.mount_point, l.fstype
            );
        }
    }

    let diags: Vec<&Diagnostic> = r.diagnostics.iter().chain(g.diagnostics.iter()).collect();
    if !diags.is_empty() {
        let _ = writeln!(s, "\n{}", style.heading("Diagnostics"));
        for d in diags {
            let _ = writeln!(s, "  {}: {}", d.subject, d.message);
        }
    }
    s
}

fn render_boot(g: &GuestReport, style: &Style) -> String {
    use std::fmt::Write as _;
    let mut s = String::new();
    let b = &g.bootloader;
    let mut firmware = Vec::new();
    if let Some(p) = &b.bios.bios_boot_partition {
        firmware.push(format!("BIOS (boot partition {p})"));
    } else if b.bios.mbr_boot_code == rescue_guest::boot::MbrBootCode::Grub {
        firmware.push("BIOS (GRUB in the MBR)".to_owned());
    }
    if let Some(efi) = &b.efi {
        let vendors: Vec<String> = efi
            .vendors
            .iter()
            .map(|v| {
                let mut parts = Vec::new();
                if v.shim {
                    parts.push("shim");
                }
                if v.grub {
                    parts.push("grub");
                }
                if parts.is_empty() {
                    v.dir.clone()
                } else {
                    format!("{} {}", v.dir, parts.join("+"))
                }
            })
            .collect();
        firmware.push(format!(
            "UEFI (ESP {}: {})",
            efi.esp_volume,
            vendors.join(", ")
        ));
    }
    if firmware.is_empty() {
        firmware.push(style.warn("no bootloader found"));
    }
    let _ = writeln!(s, "  boot:       {}", firmware.join("; "));
    if let Some(cfg) = &b.grub_cfg {
        let _ = writeln!(
            s,
            "  grub.cfg:   {} on {}{}",
            cfg.guest_path.as_deref().unwrap_or(&cfg.path),
            cfg.volume_id,
            if cfg.blscfg {
                " (blscfg: entries in /boot/loader/entries)"
            } else {
                ""
            }
        );
    }
    if let Some(env) = &b.grubenv {
        if let Some(saved) = &env.saved_entry {
            let _ = writeln!(s, "  grubenv:    saved_entry={saved}");
        }
    }
    if let Some(d) = &b.default_entry {
        let kernel = match (&d.kernel_version, d.kernel_complete) {
            (Some(v), Some(false)) => style.bad(&format!("{v} (INCOMPLETE)")),
            (Some(v), _) => v.clone(),
            (None, _) => "unknown kernel".to_owned(),
        };
        let _ = writeln!(
            s,
            "  default:    '{}' -> {kernel} (from {})",
            d.title, d.spec
        );
        for n in &d.notes {
            let _ = writeln!(s, "              {}", style.dim(n));
        }
    }
    s
}

/// Left-aligned columns separated by two spaces.
fn table_text(rows: &[[String; 7]], indent: &str) -> String {
    let mut widths = [0usize; 7];
    for row in rows {
        for (w, cell) in widths.iter_mut().zip(row) {
            *w = (*w).max(cell.chars().count());
        }
    }
    let mut s = String::new();
    for row in rows {
        let mut line = indent.to_owned();
        for (i, cell) in row.iter().enumerate() {
            line.push_str(cell);
            if i + 1 < row.len() {
                line.push_str(&" ".repeat(widths[i] - cell.chars().count() + 2));
            }
        }
        s.push_str(line.trim_end());
        s.push('\n');
    }
    s
}

#[cfg(test)]
mod tests {
    use super::{human_size, InspectReport};

    /// docs/schema/inspect.v1.json is generated from the report types; this
    /// fails when they drift apart. `RESCUE_BLESS=1` rewrites the file.
    #[test]
    fn json_schema_in_docs_is_up_to_date() {
        crate::assert_schema_is_current(
            &schemars::schema_for!(InspectReport<'static>),
            "inspect.v1.json",
        );
    }

    #[test]
    fn sizes_read_like_an_operator_expects() {
        assert_eq!(human_size(0), "0 B");
        assert_eq!(human_size(512), "512 B");
        assert_eq!(human_size(1 << 20), "1 MiB");
        assert_eq!(human_size(46_120_448), "44.0 MiB");
        assert_eq!(human_size(20 << 30), "20 GiB");
    }
}
