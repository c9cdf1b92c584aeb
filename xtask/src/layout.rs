//! The image layouts: which tree, which partition table, which volumes at
//! which offsets, with which fixed identifiers, and the code that builds
//! each of them into a raw image.
//!
//! | layout       | disk                                                        | tree     |
//! |--------------|-------------------------------------------------------------|----------|
//! | `gpt-debian` | GPT: p14 BIOS boot, p15 ESP (FAT16), p1 ext4 root (last)     | debian12 |
//! | `mbr-rhel`   | MBR: p1 ext4 `/boot` (active), p2 ext4 `/`                   | rhel9    |
//! | `whole-ext4` | ext4 on the whole disk, no partition table                  | debian12 |
//! | `lvm-rhel`   | MBR: p1 ext4 `/boot`, p2 LVM PV: vg0/root (2 segments), vg0/swap | rhel9 |
//! | `overlay`    | qcow2 overlay on `gpt-debian.qcow2`, `/etc/hostname` changed | debian12 |
//!
//! Must never: pick an identifier at random, or read anything from the host
//! that could end up in an image.

use std::path::Path;

use anyhow::{bail, Context, Result};
use serde::Serialize;

use crate::disk::{self, GptPart, MIB, SECTOR};
use crate::fs_build::{self, Ext4Spec, FatSpec};
use crate::lvm::{self, LvSpec, Segment, VgSpec};
use crate::tree::{StagedTree, Tokens};

/// All layouts, in build order (`overlay` needs `gpt-debian`).
pub const LAYOUTS: [&str; 5] = [
    "gpt-debian",
    "mbr-rhel",
    "whole-ext4",
    "lvm-rhel",
    "overlay",
];

/// Layouts built only on request (`cargo xtask bench`), never by the tests:
/// `big-debian` is `gpt-debian` on a 20 GiB disk whose root fills it.
pub const BENCH_LAYOUTS: [&str; 1] = ["big-debian"];

/// Virtual size of the `big-debian` benchmark disk.
pub const BIG_DISK_BYTES: u64 = 20 << 30;

/// True for every layout this module can build.
pub fn is_known(layout: &str) -> bool {
    LAYOUTS.contains(&layout) || BENCH_LAYOUTS.contains(&layout)
}

/// The layout an `overlay` image is layered on.
pub const OVERLAY_BASE: &str = "gpt-debian";

/// Identity of a volume, as the expect files name it.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
#[serde(tag = "kind", rename_all = "kebab-case")]
pub enum VolumeId {
    /// A partition of the disk's partition table.
    Partition {
        /// Partition number (1-based, as Linux names it: sda1, sda14).
        number: u32,
    },
    /// A logical volume of an LVM volume group.
    Lv {
        /// Volume group name.
        vg: String,
        /// Logical volume name.
        lv: String,
    },
    /// A filesystem on the whole disk.
    WholeDisk,
}

/// A volume as built.
#[derive(Clone, Debug)]
pub struct BuiltVolume {
    /// Identity.
    pub id: VolumeId,
    /// Byte ranges (absolute offset in the disk, length) holding the volume,
    /// in order; one range except for multi-segment LVs.
    pub extents: Vec<(u64, u64)>,
    /// Guest mount point of the filesystem on it (`/`, `/boot`, ...), or
    /// `swap`, or `None` (BIOS boot partition, LVM PV).
    pub mount: Option<String>,
    /// For LVs: the PV offset and the placement reported by LVM.
    pub(crate) lv: Option<(u64, lvm::LvPlacement)>,
}

impl BuiltVolume {
    /// Total size in bytes.
    pub fn size_bytes(&self) -> u64 {
        self.extents.iter().map(|e| e.1).sum()
    }

    fn partition(number: u32, first_sector: u64, sectors: u64, mount: Option<&str>) -> Self {
        BuiltVolume {
            id: VolumeId::Partition { number },
            extents: vec![(first_sector * SECTOR, sectors * SECTOR)],
            mount: mount.map(str::to_string),
            lv: None,
        }
    }
}

/// What building a layout produced besides the raw image.
pub struct BuildOutput {
    /// Every volume of the disk.
    pub volumes: Vec<BuiltVolume>,
    /// Firmware the disk is set up to boot with (`bios`, `uefi`).
    pub firmware: Vec<&'static str>,
    /// `pvs`/`lvs` JSON reports for LVM layouts.
    pub lvm_reports: Option<(serde_json::Value, serde_json::Value)>,
}

// Fixed identifiers. Different for every layout so that a test can never
// match a volume of one fixture with the expectations of another.
mod ids {
    pub const GPT_DISK: &str = "5f3e8c2a-7b41-4d9e-a6c3-1e2d3c4b5a60";
    pub const GPT_P1: &str = "0c9a7e55-3b1d-4f6a-9e8b-2d7c6a5b4e31";
    pub const GPT_P14: &str = "1d8b6f44-2a0c-4e59-8d7a-3c6b5a4d3f20";
    pub const GPT_P15: &str = "2e7a5d33-190b-4d48-bc69-4b5a4c3e2f1d";
    pub const GPT_ROOT_FS: &str = "6a1c3d7e-92b4-4c5f-8e1d-7f0a2b3c4d5e";
    pub const GPT_ROOT_SEED: &str = "0f1e2d3c-4b5a-4968-8776-a5b4c3d2e1f0";
    pub const GPT_ESP_VOLID: &str = "4A3B2C1D";

    pub const MBR_LABEL_ID: &str = "0x8c2f4e1a";
    pub const MBR_BOOT_FS: &str = "3b9d2f10-6c5e-4a7b-9d8c-0e1f2a3b4c5d";
    pub const MBR_BOOT_SEED: &str = "1a2b3c4d-5e6f-4a8b-9c0d-e1f2a3b4c5d6";
    pub const MBR_ROOT_FS: &str = "7c4e1a92-5d3f-4b6a-8c9d-1e2f3a4b5c6d";
    pub const MBR_ROOT_SEED: &str = "2b3c4d5e-6f7a-4b9c-8d1e-f2a3b4c5d6e7";

    pub const WHOLE_FS: &str = "8d5f2b63-4e1a-4c7b-9a8d-2f3e4a5b6c7d";
    pub const WHOLE_SEED: &str = "3c4d5e6f-7a8b-4c0d-9e2f-a3b4c5d6e7f8";

    pub const LVM_LABEL_ID: &str = "0x9d3e5f2b";
    pub const LVM_BOOT_FS: &str = "4c0e3a21-7d6f-4b8c-ae9d-1f2a3b4c5d6e";
    pub const LVM_BOOT_SEED: &str = "4d5e6f7a-8b9c-4d1e-8f3a-b4c5d6e7f8a9";
    pub const LVM_ROOT_FS: &str = "9e6a3c74-5f2b-4d8c-9b1e-3a4b5c6d7e8f";
    pub const LVM_ROOT_SEED: &str = "5e6f7a8b-9c0d-4e2f-9a4b-c5d6e7f8a9b0";
    pub const LVM_SWAP: &str = "a1b2c3d4-e5f6-4a7b-8c9d-0e1f2a3b4c5d";
    pub const LVM_PV: &str = "rEsCuE-pv00-0000-0000-0000-0000-000001";
    pub const LVM_VG: &str = "rEsCuE-vg00-0000-0000-0000-0000-000001";
    pub const LVM_LV_ROOT: &str = "rEsCuE-lv00-0000-0000-0000-0000-000001";
    pub const LVM_LV_SWAP: &str = "rEsCuE-lv00-0000-0000-0000-0000-000002";
}

/// The committed tree a layout is built from.
pub fn tree_of(layout: &str) -> Result<&'static str> {
    Ok(match layout {
        "gpt-debian" | "whole-ext4" | "overlay" | "big-debian" => "debian12",
        "mbr-rhel" | "lvm-rhel" => "rhel9",
        other => bail!(
            "unknown fixture layout {other:?}; known: {}",
            LAYOUTS.join(", ")
        ),
    })
}

fn some(s: impl Into<String>) -> Option<String> {
    Some(s.into())
}

/// Values of the recipe's `@TOKEN@` placeholders for a layout.
pub fn tokens(layout: &str) -> Result<Tokens> {
    let mut t = Tokens::new();
    match layout {
        "gpt-debian" | "overlay" | "big-debian" => {
            t.insert("ROOT_UUID", some(ids::GPT_ROOT_FS));
            t.insert("ROOT_SOURCE", some(format!("PARTUUID={}", ids::GPT_P1)));
            t.insert(
                "ESP_UUID",
                some(format!(
                    "{}-{}",
                    &ids::GPT_ESP_VOLID[..4],
                    &ids::GPT_ESP_VOLID[4..]
                )),
            );
            t.insert("GRUB_PARTMOD", some("part_gpt"));
            t.insert("GRUB_HINT", some("hd0,gpt1"));
            t.insert("GRUB_BAREMETAL_HINT", some("ahci0,gpt1"));
        }
        "whole-ext4" => {
            t.insert("ROOT_UUID", some(ids::WHOLE_FS));
            t.insert("ROOT_SOURCE", some(format!("UUID={}", ids::WHOLE_FS)));
            t.insert("ESP_UUID", None);
            t.insert("GRUB_PARTMOD", None);
            t.insert("GRUB_HINT", some("hd0"));
            t.insert("GRUB_BAREMETAL_HINT", some("ahci0"));
        }
        "mbr-rhel" => {
            t.insert("ROOT_UUID", some(ids::MBR_ROOT_FS));
            t.insert("BOOT_UUID", some(ids::MBR_BOOT_FS));
            t.insert("ROOT_SOURCE", some(format!("UUID={}", ids::MBR_ROOT_FS)));
            t.insert("ROOT_DEVICE", some(format!("UUID={}", ids::MBR_ROOT_FS)));
            t.insert("SWAP_SOURCE", None);
            t.insert("ROOT_LVM_ARGS", some(""));
            t.insert("GRUB_PARTMOD", some("part_msdos"));
            t.insert("GRUB_HINT", some("hd0,msdos1"));
            t.insert("GRUB_BAREMETAL_HINT", some("ahci0,msdos1"));
        }
        "lvm-rhel" => {
            t.insert("ROOT_UUID", some(ids::LVM_ROOT_FS));
            t.insert("BOOT_UUID", some(ids::LVM_BOOT_FS));
            t.insert("ROOT_SOURCE", some("/dev/mapper/vg0-root"));
            t.insert("ROOT_DEVICE", some("/dev/mapper/vg0-root"));
            t.insert("SWAP_SOURCE", some("/dev/mapper/vg0-swap"));
            t.insert(
                "ROOT_LVM_ARGS",
                some("resume=/dev/mapper/vg0-swap rd.lvm.lv=vg0/root rd.lvm.lv=vg0/swap "),
            );
            t.insert("GRUB_PARTMOD", some("part_msdos"));
            t.insert("GRUB_HINT", some("hd0,msdos1"));
            t.insert("GRUB_BAREMETAL_HINT", some("ahci0,msdos1"));
        }
        other => bail!(
            "unknown fixture layout {other:?}; known: {}",
            LAYOUTS.join(", ")
        ),
    }
    Ok(t)
}

/// Layout-specific edits made right after staging, before any variant
/// edit: what the layout cannot hold is removed here.
pub fn prepare(layout: &str, staged: &mut StagedTree, work: &Path) -> Result<()> {
    match layout {
        // No ESP on a whole-disk filesystem: keep the empty mount point.
        "whole-ext4" => staged.move_contents("boot/efi", &work.join("discarded-esp")),
        "overlay" => staged.write("etc/hostname", "debian-overlay\n"),
        _ => Ok(()),
    }
}

/// Stand-in for GRUB's `boot.img` in the first 440 bytes of the disk: a
/// jump and the strings GRUB's MBR code carries, so that a reader can tell
/// "GRUB is installed for BIOS boot" without executing anything.
fn write_grub_boot_code(raw: &Path) -> Result<()> {
    use std::io::{Seek, SeekFrom, Write};
    let mut code = [0u8; 440];
    code[..3].copy_from_slice(&[0xeb, 0x63, 0x90]);
    let strings = b"GRUB \0Geom\0Hard Disk\0Read\0 Error\r\n\0";
    code[0x17f..0x17f + strings.len()].copy_from_slice(strings);
    let mut f = std::fs::OpenOptions::new().write(true).open(raw)?;
    f.seek(SeekFrom::Start(0))?;
    f.write_all(&code)?;
    Ok(())
}

/// Builds `layout` from an already staged (and possibly edited) tree into
/// the raw image `raw`, using `work` for intermediate files.
/// `root_debugfs` are extra debugfs commands for the root filesystem.
pub fn build_raw(
    layout: &str,
    staged: &StagedTree,
    raw: &Path,
    work: &Path,
    root_debugfs: &[String],
) -> Result<BuildOutput> {
    match layout {
        "gpt-debian" | "overlay" => gpt_debian(staged, raw, work, root_debugfs, 64 * MIB),
        "big-debian" => gpt_debian(staged, raw, work, root_debugfs, BIG_DISK_BYTES),
        "whole-ext4" => whole_ext4(staged, raw, work, root_debugfs),
        "mbr-rhel" => mbr_rhel(staged, raw, work, root_debugfs),
        "lvm-rhel" => lvm_rhel(staged, raw, work, root_debugfs),
        other => bail!(
            "unknown fixture layout {other:?}; known: {}",
            LAYOUTS.join(", ")
        ),
    }
}

/// Builds an ext4 image of guest directory `mount` ("" for `/`), whose
/// contents were moved to `host_dir` (or still are in the staged root).
fn ext4_of(
    staged: &StagedTree,
    host_dir: &Path,
    mount: &str,
    spec: &Ext4Spec,
    out: &Path,
    extra: &[String],
) -> Result<()> {
    let inodes = staged.inodes_in(host_dir, mount)?;
    let root_meta = if mount.is_empty() {
        crate::tree::Meta::root(0o755)
    } else {
        staged.meta(mount)?
    };
    fs_build::build_ext4(out, spec, host_dir, &inodes, root_meta, extra)
        .with_context(|| format!("building the ext4 filesystem for /{mount}"))
}

fn gpt_debian(
    staged: &StagedTree,
    raw: &Path,
    work: &Path,
    root_debugfs: &[String],
    disk_bytes: u64,
) -> Result<BuildOutput> {
    let total_sectors = disk_bytes / SECTOR;
    let last_usable = total_sectors - 34;
    let (p14, p15, p1) = (
        (2048u64, 8191u64),
        (8192u64, 40959u64),
        (40960u64, last_usable),
    );

    let esp_dir = work.join("esp");
    staged.move_contents("boot/efi", &esp_dir)?;
    let esp_img = work.join("esp.img");
    let esp_sectors = p15.1 - p15.0 + 1;
    fs_build::build_fat(
        &esp_img,
        &FatSpec {
            volume_id: ids::GPT_ESP_VOLID.into(),
            label: None,
            size_bytes: esp_sectors * SECTOR,
            fat_bits: 16,
        },
        &esp_dir,
    )?;
    let root_img = work.join("root.img");
    let root_sectors = p1.1 - p1.0 + 1;
    ext4_of(
        staged,
        staged.root(),
        "",
        &Ext4Spec {
            uuid: ids::GPT_ROOT_FS.into(),
            hash_seed: ids::GPT_ROOT_SEED.into(),
            label: None,
            size_bytes: root_sectors * SECTOR,
        },
        &root_img,
        root_debugfs,
    )?;

    disk::create_sparse(raw, disk_bytes)?;
    disk::write_gpt(
        raw,
        ids::GPT_DISK,
        &[
            GptPart {
                number: 14,
                first_sector: p14.0,
                last_sector: Some(p14.1),
                type_code: "EF02",
                guid: ids::GPT_P14,
                name: "",
            },
            GptPart {
                number: 15,
                first_sector: p15.0,
                last_sector: Some(p15.1),
                type_code: "EF00",
                guid: ids::GPT_P15,
                name: "",
            },
            GptPart {
                number: 1,
                first_sector: p1.0,
                last_sector: Some(p1.1),
                type_code: "8304",
                guid: ids::GPT_P1,
                name: "",
            },
        ],
    )?;
    write_grub_boot_code(raw)?;
    disk::place(&esp_img, raw, p15.0 * SECTOR)?;
    disk::place(&root_img, raw, p1.0 * SECTOR)?;
    Ok(BuildOutput {
        volumes: vec![
            BuiltVolume::partition(1, p1.0, root_sectors, Some("/")),
            BuiltVolume::partition(14, p14.0, p14.1 - p14.0 + 1, None),
            BuiltVolume::partition(15, p15.0, esp_sectors, Some("/boot/efi")),
        ],
        firmware: vec!["bios", "uefi"],
        lvm_reports: None,
    })
}

fn whole_ext4(
    staged: &StagedTree,
    raw: &Path,
    _work: &Path,
    root_debugfs: &[String],
) -> Result<BuildOutput> {
    const DISK_BYTES: u64 = 48 * MIB;
    ext4_of(
        staged,
        staged.root(),
        "",
        &Ext4Spec {
            uuid: ids::WHOLE_FS.into(),
            hash_seed: ids::WHOLE_SEED.into(),
            label: Some("debian-root".into()),
            size_bytes: DISK_BYTES,
        },
        raw,
        root_debugfs,
    )?;
    Ok(BuildOutput {
        volumes: vec![BuiltVolume {
            id: VolumeId::WholeDisk,
            extents: vec![(0, DISK_BYTES)],
            mount: Some("/".into()),
            lv: None,
        }],
        firmware: vec![],
        lvm_reports: None,
    })
}

/// `/boot` as p1 (20 MiB from sector 2048, active) and a second partition
/// up to the end, the way Anaconda lays out a BIOS disk.
fn rhel_boot_and_rest(
    staged: &StagedTree,
    raw: &Path,
    work: &Path,
    disk_bytes: u64,
    label_id: &str,
    second_type: &str,
    boot: (&str, &str),
) -> Result<(u64, u64, u64)> {
    let (boot_start, boot_sectors) = (2048u64, 40960u64);
    let second_start = boot_start + boot_sectors;
    let second_sectors = disk_bytes / SECTOR - second_start;
    let boot_dir = work.join("boot");
    staged.move_contents("boot", &boot_dir)?;
    let boot_img = work.join("boot.img");
    ext4_of(
        staged,
        &boot_dir,
        "boot",
        &Ext4Spec {
            uuid: boot.0.into(),
            hash_seed: boot.1.into(),
            label: Some("boot".into()),
            size_bytes: boot_sectors * SECTOR,
        },
        &boot_img,
        &[],
    )?;
    disk::create_sparse(raw, disk_bytes)?;
    disk::write_sfdisk(
        raw,
        &format!(
            "label: dos\nlabel-id: {label_id}\nunit: sectors\n\nstart={boot_start}, size={boot_sectors}, type=83, bootable\nstart={second_start}, size={second_sectors}, type={second_type}\n"
        ),
    )?;
    write_grub_boot_code(raw)?;
    disk::place(&boot_img, raw, boot_start * SECTOR)?;
    Ok((boot_start, second_start, second_sectors))
}

fn mbr_rhel(
    staged: &StagedTree,
    raw: &Path,
    work: &Path,
    root_debugfs: &[String],
) -> Result<BuildOutput> {
    const DISK_BYTES: u64 = 64 * MIB;
    let (boot_start, root_start, root_sectors) = rhel_boot_and_rest(
        staged,
        raw,
        work,
        DISK_BYTES,
        ids::MBR_LABEL_ID,
        "83",
        (ids::MBR_BOOT_FS, ids::MBR_BOOT_SEED),
    )?;
    let root_img = work.join("root.img");
    ext4_of(
        staged,
        staged.root(),
        "",
        &Ext4Spec {
            uuid: ids::MBR_ROOT_FS.into(),
            hash_seed: ids::MBR_ROOT_SEED.into(),
            label: Some("root".into()),
            size_bytes: root_sectors * SECTOR,
        },
        &root_img,
        root_debugfs,
    )?;
    disk::place(&root_img, raw, root_start * SECTOR)?;
    Ok(BuildOutput {
        volumes: vec![
            BuiltVolume::partition(1, boot_start, root_start - boot_start, Some("/boot")),
            BuiltVolume::partition(2, root_start, root_sectors, Some("/")),
        ],
        firmware: vec!["bios"],
        lvm_reports: None,
    })
}

fn lvm_rhel(
    staged: &StagedTree,
    raw: &Path,
    work: &Path,
    root_debugfs: &[String],
) -> Result<BuildOutput> {
    const DISK_BYTES: u64 = 96 * MIB;
    const EXTENT: u64 = 4 * MIB;
    let (boot_start, pv_start, pv_sectors) = rhel_boot_and_rest(
        staged,
        raw,
        work,
        DISK_BYTES,
        ids::LVM_LABEL_ID,
        "8e",
        (ids::LVM_BOOT_FS, ids::LVM_BOOT_SEED),
    )?;
    // root was extended after swap was created, as `lvextend` does on a
    // real system: two segments around the swap LV.
    let vg = VgSpec {
        name: "vg0",
        uuid: ids::LVM_VG,
        pv_uuid: ids::LVM_PV,
        extent_bytes: EXTENT,
        pe_start_bytes: MIB,
        lvs: vec![
            LvSpec {
                name: "root",
                uuid: ids::LVM_LV_ROOT,
                segments: vec![
                    Segment {
                        lv_start_extent: 0,
                        pv_start_extent: 0,
                        extent_count: 8,
                    },
                    Segment {
                        lv_start_extent: 8,
                        pv_start_extent: 12,
                        extent_count: 4,
                    },
                ],
            },
            LvSpec {
                name: "swap",
                uuid: ids::LVM_LV_SWAP,
                segments: vec![Segment {
                    lv_start_extent: 0,
                    pv_start_extent: 8,
                    extent_count: 4,
                }],
            },
        ],
    };
    let pv_offset = pv_start * SECTOR;
    let report = lvm::create(raw, pv_offset, pv_sectors * SECTOR, &vg)?;
    let lv = |name: &str| {
        report
            .lvs
            .iter()
            .find(|l| l.name == name)
            .cloned()
            .with_context(|| format!("lvs did not report vg0/{name}"))
    };
    let (root_lv, swap_lv) = (lv("root")?, lv("swap")?);

    let root_img = work.join("root.img");
    ext4_of(
        staged,
        staged.root(),
        "",
        &Ext4Spec {
            uuid: ids::LVM_ROOT_FS.into(),
            hash_seed: ids::LVM_ROOT_SEED.into(),
            label: None,
            size_bytes: root_lv.size_bytes,
        },
        &root_img,
        root_debugfs,
    )?;
    lvm::place_in_lv(&root_img, raw, pv_offset, &root_lv)?;
    let swap_img = work.join("swap.img");
    fs_build::build_swap(&swap_img, ids::LVM_SWAP, swap_lv.size_bytes)?;
    lvm::place_in_lv(&swap_img, raw, pv_offset, &swap_lv)?;

    let lv_volume = |p: &lvm::LvPlacement, mount: &str| BuiltVolume {
        id: VolumeId::Lv {
            vg: "vg0".into(),
            lv: p.name.clone(),
        },
        extents: p
            .pv_ranges
            .iter()
            .map(|&(s, l)| (pv_offset + s, l))
            .collect(),
        mount: Some(mount.into()),
        lv: Some((pv_offset, p.clone())),
    };
    Ok(BuildOutput {
        volumes: vec![
            BuiltVolume::partition(1, boot_start, pv_start - boot_start, Some("/boot")),
            BuiltVolume::partition(2, pv_start, pv_sectors, None),
            lv_volume(&root_lv, "/"),
            lv_volume(&swap_lv, "swap"),
        ],
        firmware: vec!["bios"],
        lvm_reports: Some((report.pvs_json, report.lvs_json)),
    })
}
