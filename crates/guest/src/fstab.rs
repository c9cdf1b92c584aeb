//! Resolving the guest's `/etc/fstab` against the volumes of *this* disk.
//!
//! Every identifier (`UUID=`, `LABEL=`, `PARTUUID=`, `PARTLABEL=`, the
//! `/dev/disk/by-*` links, LVM names, kernel device names) is matched only
//! against the [`Disk`] we were given: never against the host's devices,
//! whose names and UUIDs mean nothing for the guest. Kernel names such as
//! `/dev/sda1` are unstable; they are matched by partition number as a guess
//! and flagged.

use rescue_config::fstab::{Entry, Fstab, Source, Tag};
use rescue_volumes::{Disk, Volume, VolumeKind};
use serde::Serialize;

/// One fstab entry and what it refers to on this disk.
#[derive(Debug, Clone, Serialize, schemars::JsonSchema)]
pub struct FstabLine {
    /// 1-based line number in `/etc/fstab`.
    pub line: usize,
    /// First field, decoded.
    pub source: String,
    /// Second field, decoded.
    pub mount_point: String,
    /// Third field.
    pub fstype: String,
    /// Options, split on commas.
    pub options: Vec<String>,
    /// Dump field (`None` when not a number).
    pub dump: Option<u32>,
    /// Pass field (`None` when not a number).
    pub pass: Option<u32>,
    /// True for swap entries.
    pub swap: bool,
    /// The source names a kernel device (`/dev/sdb1`, `/dev/nvme0n1p2`, …)
    /// whose name can change between boots.
    pub unstable_device_name: bool,
    /// What the source refers to on this disk.
    pub resolution: Resolution,
}

/// The outcome of resolving one fstab source.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, schemars::JsonSchema)]
#[serde(tag = "status", rename_all = "snake_case")]
pub enum Resolution {
    /// A volume of this disk carries the identifier.
    Resolved {
        /// The volume.
        volume_id: String,
        /// What matched (`uuid`, `label`, `partuuid`, `partlabel`, `lvm`).
        via: String,
        /// Remarks (duplicate UUIDs, filesystem type mismatch, …).
        notes: Vec<String>,
    },
    /// An unstable kernel device name, matched by partition number only.
    Guessed {
        /// The volume at that position on this disk.
        volume_id: String,
        /// Why this is a guess.
        notes: Vec<String>,
    },
    /// No volume of this disk carries the identifier.
    NotFound {
        /// Why, in one line.
        reason: String,
    },
    /// The identifier cannot be checked offline (hardware ids, `/dev/dm-0`, …).
    Unresolvable {
        /// Why, in one line.
        reason: String,
    },
    /// A pseudo filesystem (`proc`, `tmpfs`, …): nothing to resolve.
    Pseudo,
    /// A network filesystem.
    Network,
    /// A file or directory in the guest (swap file, bind mount source).
    GuestPath {
        /// The path.
        path: String,
    },
}

impl Resolution {
    /// The volume this resolves (or is guessed) to.
    pub fn volume_id(&self) -> Option<&str> {
        match self {
            Resolution::Resolved { volume_id, .. } | Resolution::Guessed { volume_id, .. } => {
                Some(volume_id)
            }
            _ => None,
        }
    }
}

/// A kernel device name split into disk and partition number.
#[derive(Debug, Clone, PartialEq, Eq)]
struct KernelName {
    /// `sda`, `vdb`, `xvda`, `nvme0n1`, `mmcblk0`, `hda`.
    disk: String,
    /// Partition number, if any.
    partition: Option<u32>,
}

/// Names the first disk of a VM has under the usual drivers.
const FIRST_DISK_NAMES: &[&str] = &["sda", "vda", "xvda", "hda", "nvme0n1", "mmcblk0"];

fn parse_kernel_name(path: &str) -> Option<KernelName> {
    let name = path.strip_prefix("/dev/")?;
    let digits_at = |s: &str| s.find(|c: char| c.is_ascii_digit()).unwrap_or(s.len());
    for prefix in ["nvme", "mmcblk"] {
        if let Some(rest) = name.strip_prefix(prefix) {
            // nvme0n1p2 / mmcblk0p1: the partition follows a 'p'.
            let (disk_part, part) = match rest.rfind('p') {
                Some(i) if prefix == "mmcblk" || rest[..i].contains('n') => {
                    (&rest[..i], Some(&rest[i + 1..]))
                }
                _ => (rest, None),
            };
            let ok = |s: &str| !s.is_empty() && s.bytes().all(|b| b.is_ascii_digit() || b == b'n');
            if !ok(disk_part) {
                return None;
            }
            let partition = match part {
                Some(p) => Some(p.parse().ok()?),
                None => None,
            };
            return Some(KernelName {
                disk: format!("{prefix}{disk_part}"),
                partition,
            });
        }
    }
    for prefix in ["xvd", "sd", "vd", "hd"] {
        if let Some(rest) = name.strip_prefix(prefix) {
            let split = digits_at(rest);
            let (letters, digits) = rest.split_at(split);
            if letters.is_empty() || !letters.bytes().all(|b| b.is_ascii_lowercase()) {
                return None;
            }
            let partition = if digits.is_empty() {
                None
            } else {
                Some(digits.parse().ok()?)
            };
            return Some(KernelName {
                disk: format!("{prefix}{letters}"),
                partition,
            });
        }
    }
    None
}

/// Splits a device-mapper name `vg-lv` where `--` stands for a literal `-`.
fn split_mapper_name(name: &str) -> Option<(String, String)> {
    let b = name.as_bytes();
    let mut i = 0;
    while i < b.len() {
        if b[i] == b'-' {
            if b.get(i + 1) == Some(&b'-') {
                i += 2;
                continue;
            }
            let vg = name[..i].replace("--", "-");
            let lv = name[i + 1..].replace("--", "-");
            if vg.is_empty() || lv.is_empty() {
                return None;
            }
            return Some((vg, lv));
        }
        i += 1;
    }
    None
}

fn partition_number(v: &Volume) -> Option<u32> {
    match &v.kind {
        VolumeKind::GptPartition { number, .. } | VolumeKind::MbrPartition { number, .. } => {
            Some(*number)
        }
        _ => None,
    }
}

/// Context for resolving kernel device names: which name this disk had.
#[derive(Debug, Clone, Default)]
pub struct DiskNaming {
    /// The kernel name of this disk in the guest, learnt from the `/` line
    /// (`/dev/vda2` with the root on partition 2 → `vda`).
    pub this_disk: Option<String>,
}

/// Resolves one source against `disk`.
pub fn resolve_source(
    disk: &Disk,
    source: &Source,
    fstype: &str,
    naming: &DiskNaming,
) -> Resolution {
    match source {
        Source::Tag { tag, value, .. } => resolve_tag(disk, *tag, value),
        Source::Device { path } => resolve_device(disk, path, naming),
        Source::Network { .. } => Resolution::Network,
        Source::Pseudo { .. } => Resolution::Pseudo,
        Source::Path { path } => Resolution::GuestPath { path: path.clone() },
        Source::Other { source } => {
            if fstype == "swap" || source.is_empty() {
                Resolution::Unresolvable {
                    reason: format!("{source:?} is not a device, tag or path"),
                }
            } else {
                Resolution::Unresolvable {
                    reason: format!(
                        "{source:?} is not a device, tag or path this tool understands"
                    ),
                }
            }
        }
    }
}

fn matches_of(disk: &Disk, pred: impl Fn(&Volume) -> bool) -> Vec<&Volume> {
    disk.volumes.iter().filter(|v| pred(v)).collect()
}

fn resolved(found: Vec<&Volume>, via: &str, what: &str) -> Option<Resolution> {
    let first = found.first()?;
    let mut notes = Vec::new();
    if found.len() > 1 {
        let ids: Vec<&str> = found.iter().map(|v| v.id.as_str()).collect();
        notes.push(format!(
            "{} volumes carry {what} ({}); Linux mounts whichever it finds first",
            found.len(),
            ids.join(", ")
        ));
    }
    Some(Resolution::Resolved {
        volume_id: first.id.clone(),
        via: via.to_owned(),
        notes,
    })
}

fn resolve_tag(disk: &Disk, tag: Tag, value: &str) -> Resolution {
    let eq_ci = |a: &str, b: &str| a.eq_ignore_ascii_case(b);
    match tag {
        Tag::Uuid => {
            let found = matches_of(disk, |v| {
                v.probe.uuid.as_deref().is_some_and(|u| eq_ci(u, value))
            });
            resolved(found, "uuid", &format!("UUID {value}")).unwrap_or_else(|| {
                Resolution::NotFound {
                    reason: format!("no filesystem on this disk has UUID {value}"),
                }
            })
        }
        Tag::Label => {
            let found = matches_of(disk, |v| v.probe.label.as_deref() == Some(value));
            if let Some(r) = resolved(found, "label", &format!("label {value:?}")) {
                return r;
            }
            let near = matches_of(disk, |v| {
                v.probe.label.as_deref().is_some_and(|l| eq_ci(l, value))
            });
            let reason = match near.first() {
                Some(v) => format!(
                    "no filesystem on this disk has label {value:?}; {} has {:?} (labels are case-sensitive)",
                    v.id,
                    v.probe.label.as_deref().unwrap_or_default()
                ),
                None => format!("no filesystem on this disk has label {value:?}"),
            };
            Resolution::NotFound { reason }
        }
        Tag::PartUuid => {
            let found = matches_of(disk, |v| match &v.kind {
                VolumeKind::GptPartition { partuuid, .. }
                | VolumeKind::MbrPartition { partuuid, .. } => eq_ci(partuuid, value),
                _ => false,
            });
            resolved(found, "partuuid", &format!("PARTUUID {value}")).unwrap_or_else(|| {
                Resolution::NotFound {
                    reason: format!("no partition on this disk has PARTUUID {value}"),
                }
            })
        }
        Tag::PartLabel => {
            let found = matches_of(
                disk,
                |v| matches!(&v.kind, VolumeKind::GptPartition { partlabel, .. } if partlabel == value),
            );
            resolved(found, "partlabel", &format!("PARTLABEL {value:?}")).unwrap_or_else(|| {
                Resolution::NotFound {
                    reason: format!("no GPT partition on this disk is named {value:?}"),
                }
            })
        }
        Tag::Id => resolve_by_id(disk, value),
    }
}

fn resolve_by_id(disk: &Disk, id: &str) -> Resolution {
    if let Some(name) = id.strip_prefix("dm-name-") {
        return resolve_mapper(disk, name);
    }
    if let Some(uuids) = id.strip_prefix("dm-uuid-LVM-") {
        // VG UUID and LV UUID without dashes, concatenated.
        let found = matches_of(disk, |v| match &v.kind {
            VolumeKind::LogicalVolume { lv_uuid, .. } => {
                let lv = lv_uuid.replace('-', "");
                !lv.is_empty() && uuids.ends_with(&lv)
            }
            _ => false,
        });
        return resolved(found, "lvm", &format!("LV UUID in {id}")).unwrap_or_else(|| {
            Resolution::NotFound {
                reason: format!("no LVM logical volume on this disk matches {id}"),
            }
        });
    }
    if let Some((_, part)) = id.rsplit_once("-part") {
        if let Ok(n) = part.parse::<u32>() {
            return match disk.volumes.iter().find(|v| partition_number(v) == Some(n)) {
                Some(v) => Resolution::Guessed {
                    volume_id: v.id.clone(),
                    notes: vec![format!(
                        "{id} names a disk by its hardware serial, which an image does not carry; guessed partition {n} of this disk"
                    )],
                },
                None => Resolution::NotFound { reason: format!("this disk has no partition {n} (from {id})") },
            };
        }
    }
    Resolution::Unresolvable {
        reason: format!("{id} names a device by hardware id, which depends on the hypervisor and cannot be checked offline"),
    }
}

fn resolve_mapper(disk: &Disk, name: &str) -> Resolution {
    let Some((vg_name, lv_name)) = split_mapper_name(name) else {
        let reason = if name.starts_with("luks-") || name.contains("crypt") {
            format!("/dev/mapper/{name} is an encrypted (LUKS) mapping; encrypted volumes cannot be opened offline")
        } else {
            format!("/dev/mapper/{name} is not an LVM name (vg-lv) found on this disk")
        };
        return Resolution::NotFound { reason };
    };
    resolve_lv(disk, &vg_name, &lv_name)
}

fn resolve_lv(disk: &Disk, vg_name: &str, lv_name: &str) -> Resolution {
    let found = matches_of(
        disk,
        |v| matches!(&v.kind, VolumeKind::LogicalVolume { vg, lv, .. } if vg == vg_name && lv == lv_name),
    );
    resolved(found, "lvm", &format!("LV {vg_name}/{lv_name}")).unwrap_or_else(|| {
        Resolution::NotFound {
            reason: format!("no LVM logical volume {vg_name}/{lv_name} on this disk"),
        }
    })
}

fn resolve_device(disk: &Disk, path: &str, naming: &DiskNaming) -> Resolution {
    if let Some(name) = path.strip_prefix("/dev/mapper/") {
        return resolve_mapper(disk, name);
    }
    if path.starts_with("/dev/disk/by-path/") {
        return Resolution::Unresolvable {
            reason: format!("{path} names a controller port, which depends on the hypervisor"),
        };
    }
    if let Some(k) = parse_kernel_name(path) {
        return resolve_kernel_name(disk, path, &k, naming);
    }
    let rest = path.strip_prefix("/dev/").unwrap_or(path);
    let parts: Vec<&str> = rest.split('/').collect();
    if let [vg, lv] = parts.as_slice() {
        if !matches!(*vg, "disk" | "mapper" | "md" | "bcache") {
            return resolve_lv(disk, vg, lv);
        }
    }
    Resolution::Unresolvable {
        reason: format!("{path} is a kernel device name whose target cannot be known offline; use UUID= instead"),
    }
}

fn resolve_kernel_name(disk: &Disk, path: &str, k: &KernelName, naming: &DiskNaming) -> Resolution {
    let ours = match &naming.this_disk {
        Some(d) => *d == k.disk,
        None => FIRST_DISK_NAMES.contains(&k.disk.as_str()),
    };
    if !ours {
        let this = naming
            .this_disk
            .as_deref()
            .unwrap_or("the first disk (sda, vda, xvda or nvme0n1)");
        return Resolution::NotFound {
            reason: format!(
                "{path} is on another disk ({}); this disk was {this} in the guest",
                k.disk
            ),
        };
    }
    let unstable =
        format!("{path} is a kernel device name that can change between boots; use UUID= instead");
    match k.partition {
        Some(n) => match disk.volumes.iter().find(|v| partition_number(v) == Some(n)) {
            Some(v) => Resolution::Guessed {
                volume_id: v.id.clone(),
                notes: vec![
                    unstable,
                    format!("guessed partition {n} of this disk ({})", v.id),
                ],
            },
            None => Resolution::NotFound {
                reason: format!("this disk has no partition {n} (from {path})"),
            },
        },
        None => match disk
            .volumes
            .iter()
            .find(|v| matches!(v.kind, VolumeKind::WholeDisk))
        {
            Some(v) => Resolution::Guessed {
                volume_id: v.id.clone(),
                notes: vec![unstable],
            },
            None => Resolution::NotFound {
                reason: format!("{path} names the whole disk, but this disk is partitioned"),
            },
        },
    }
}

/// Learns this disk's kernel name from the `/` line when it uses one and its
/// partition number matches the root volume's.
pub fn disk_naming(disk: &Disk, fstab: &Fstab, root_volume_id: Option<&str>) -> DiskNaming {
    let root = root_volume_id.and_then(|id| disk.volumes.iter().find(|v| v.id == id));
    for (_, e) in fstab.entries() {
        if e.mount_point() != "/" {
            continue;
        }
        if let Source::Device { path } = e.source() {
            if let Some(k) = parse_kernel_name(&path) {
                let fits = match (root, k.partition) {
                    (Some(r), Some(n)) => partition_number(r) == Some(n),
                    (Some(r), None) => matches!(r.kind, VolumeKind::WholeDisk),
                    (None, _) => false,
                };
                if fits {
                    return DiskNaming {
                        this_disk: Some(k.disk),
                    };
                }
            }
        }
    }
    DiskNaming::default()
}

fn is_unstable(source: &Source) -> bool {
    matches!(source, Source::Device { path } if parse_kernel_name(path).is_some())
}

/// Resolves one entry into a report line.
pub fn resolve_entry(disk: &Disk, line: usize, e: &Entry, naming: &DiskNaming) -> FstabLine {
    let source = e.source();
    let mut resolution = resolve_source(disk, &source, e.fstype(), naming);
    // Note a filesystem type that does not match what the volume holds.
    if let Resolution::Resolved {
        volume_id, notes, ..
    }
    | Resolution::Guessed { volume_id, notes } = &mut resolution
    {
        if let Some(v) = disk.volumes.iter().find(|v| v.id == *volume_id) {
            let want = e.fstype();
            let have = v.probe.fstype.as_deref().unwrap_or("nothing recognisable");
            let compatible = want == "auto"
                || want == have
                || (want.starts_with("ext") && have.starts_with("ext"))
                || (matches!(want, "vfat" | "msdos" | "fat") && have == "vfat");
            if !compatible {
                notes.push(format!("fstab says {want} but {volume_id} holds {have}"));
            }
        }
    }
    FstabLine {
        line,
        source: e.spec.value.clone(),
        mount_point: e.mount_point().to_owned(),
        fstype: e.fstype().to_owned(),
        options: e.options().into_iter().map(str::to_owned).collect(),
        dump: e.freq(),
        pass: e.passno(),
        swap: e.is_swap(),
        unstable_device_name: is_unstable(&source),
        resolution,
    }
}

/// Resolves every entry of `fstab` against `disk`.
pub fn resolve_fstab(disk: &Disk, fstab: &Fstab, root_volume_id: Option<&str>) -> Vec<FstabLine> {
    let naming = disk_naming(disk, fstab, root_volume_id);
    fstab
        .entries()
        .map(|(line, e)| resolve_entry(disk, line, e, &naming))
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn kernel_names() {
        let k = |p: &str| parse_kernel_name(p).map(|k| (k.disk, k.partition));
        assert_eq!(k("/dev/sda1"), Some(("sda".into(), Some(1))));
        assert_eq!(k("/dev/sdb"), Some(("sdb".into(), None)));
        assert_eq!(k("/dev/vda15"), Some(("vda".into(), Some(15))));
        assert_eq!(k("/dev/xvdf2"), Some(("xvdf".into(), Some(2))));
        assert_eq!(k("/dev/nvme0n1p2"), Some(("nvme0n1".into(), Some(2))));
        assert_eq!(k("/dev/nvme1n1"), Some(("nvme1n1".into(), None)));
        assert_eq!(k("/dev/mmcblk0p1"), Some(("mmcblk0".into(), Some(1))));
        assert_eq!(k("/dev/sdaa3"), Some(("sdaa".into(), Some(3))));
        assert_eq!(k("/dev/sd"), None);
        assert_eq!(k("/dev/sda1x"), None);
        assert_eq!(k("/dev/dm-0"), None);
        assert_eq!(k("/dev/nvme"), None);
    }

    #[test]
    fn mapper_names() {
        assert_eq!(
            split_mapper_name("vg0-root"),
            Some(("vg0".into(), "root".into()))
        );
        assert_eq!(
            split_mapper_name("my--vg-lv--data"),
            Some(("my-vg".into(), "lv-data".into()))
        );
        assert_eq!(
            split_mapper_name("rhel-swap"),
            Some(("rhel".into(), "swap".into()))
        );
        assert_eq!(split_mapper_name("nodash"), None);
        assert_eq!(split_mapper_name("-x"), None);
    }
}
