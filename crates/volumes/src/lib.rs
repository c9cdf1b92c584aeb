//! Volume discovery: what is on a disk, without trusting any of it.
//!
//! [`discover`] takes an opened device and returns the partition table, the
//! volumes (partitions, LVM2 linear logical volumes, or the whole disk) and
//! what each volume holds ([`Probe`]). Every offset and length read from the
//! disk is checked before use; damage becomes an [`Error`] naming the
//! structure and offset, or a [`Diagnostic`] when we can carry on (for
//! example a corrupt primary GPT with a valid backup).
//!
//! This crate reads only through `rescue_io` and never writes.

use rescue_io::Device;
use serde::Serialize;

pub use rescue_io::{Error, ErrorKind, Result};

/// Everything discovered on one disk.
#[derive(Debug, Clone, Serialize)]
pub struct Disk {
    /// The partition table, if any.
    pub table: PartitionTable,
    /// Volumes in disk order: partitions (primary then logical), then LVM
    /// logical volumes; or the whole disk when it holds a filesystem directly.
    pub volumes: Vec<Volume>,
    /// LVM2 volume groups found on the physical volumes of this disk.
    pub volume_groups: Vec<VolumeGroup>,
    /// Problems we worked around (backup GPT used, unreadable volume, …).
    pub diagnostics: Vec<Diagnostic>,
}

/// The partition table found on the disk.
#[derive(Debug, Clone, Serialize)]
#[serde(tag = "type", rename_all = "lowercase")]
pub enum PartitionTable {
    /// GUID partition table.
    Gpt {
        /// Disk GUID, lower-case hyphenated.
        disk_guid: String,
        /// Logical block size the table was found with: 512 or 4096.
        logical_block_size: u32,
        /// True when the primary header or entry array was damaged and the
        /// backup copy was used.
        used_backup: bool,
    },
    /// DOS/MBR partition table.
    Mbr {
        /// Disk signature (the "disk identifier" fdisk prints), e.g. `0x1234abcd`.
        disk_signature: String,
    },
    /// No partition table: the filesystem (or PV) starts at byte 0.
    None,
}

/// One volume: a partition, an LVM logical volume or the whole disk.
#[derive(Debug, Clone, Serialize)]
pub struct Volume {
    /// Stable short id used in reports: `p1`, `p5`, `lvm/vg0/root`, `disk`.
    pub id: String,
    /// What kind of volume this is, with its table-specific fields.
    pub kind: VolumeKind,
    /// First byte of the volume on the disk (for LVs: of the first segment).
    pub start_byte: u64,
    /// Length in bytes.
    pub size_in_bytes: u64,
    /// What the volume holds.
    pub probe: Probe,
    /// Readable view of exactly this volume's bytes.
    #[serde(skip)]
    pub device: Device,
}

/// Kind-specific fields of a volume.
#[derive(Debug, Clone, Serialize)]
#[serde(tag = "type", rename_all = "snake_case")]
pub enum VolumeKind {
    /// A GPT partition.
    GptPartition {
        /// Partition number as Linux counts it (1-based).
        number: u32,
        /// Partition type GUID, lower-case hyphenated.
        type_guid: String,
        /// Human name of the type when known ("EFI System", "BIOS boot", …).
        type_name: Option<String>,
        /// Unique partition GUID (what `PARTUUID=` names), lower case.
        partuuid: String,
        /// Partition name (what `PARTLABEL=` names).
        partlabel: String,
    },
    /// An MBR partition, primary (1-4) or logical (5+).
    MbrPartition {
        /// Partition number as Linux counts it.
        number: u32,
        /// The one-byte type id, e.g. `0x83`.
        type_id: String,
        /// True for logical partitions inside an extended partition.
        logical: bool,
        /// Active (boot) flag.
        bootable: bool,
        /// `PARTUUID=` form for MBR: `<signature>-<nn>`.
        partuuid: String,
    },
    /// An LVM2 logical volume (linear segments only).
    LogicalVolume {
        /// Volume group name.
        vg: String,
        /// Logical volume name.
        lv: String,
        /// LV UUID as LVM prints it.
        lv_uuid: String,
    },
    /// The whole disk with no partition table.
    WholeDisk,
}

/// What a volume holds, identified from its own magic numbers.
#[derive(Debug, Clone, Default, Serialize)]
pub struct Probe {
    /// The content type, using blkid's names (`ext4`, `vfat`, `xfs`,
    /// `btrfs`, `swap`, `LVM2_member`, `crypto_LUKS`), or `None` if unknown.
    pub fstype: Option<String>,
    /// The UUID as blkid prints it (FAT: `ABCD-1234`).
    pub uuid: Option<String>,
    /// The label, if set.
    pub label: Option<String>,
    /// FAT variant: `FAT12`, `FAT16` or `FAT32` (blkid's SEC_TYPE/VERSION).
    pub version: Option<String>,
    /// ext2/3/4 details.
    pub ext: Option<ExtInfo>,
}

/// Superblock facts of an ext2/3/4 filesystem.
#[derive(Debug, Clone, Default, Serialize)]
pub struct ExtInfo {
    /// Block size in bytes.
    pub block_size: u32,
    /// Total blocks.
    pub blocks_count: u64,
    /// Free blocks as recorded in the superblock.
    pub free_blocks_count: u64,
    /// Total inodes.
    pub inodes_count: u32,
    /// Free inodes as recorded in the superblock.
    pub free_inodes_count: u32,
    /// Feature names as `dumpe2fs` prints them (`has_journal`, `extent`, …).
    pub features: Vec<String>,
    /// `s_state` has the "cleanly unmounted" bit.
    pub clean: bool,
    /// The journal must be replayed before the filesystem is consistent.
    pub needs_recovery: bool,
    /// The superblock records errors (state bit or error count).
    pub has_errors: bool,
    /// `s_error_count`.
    pub error_count: u32,
    /// Last directory the filesystem was mounted on, if recorded.
    pub last_mounted: Option<String>,
}

/// One LVM2 volume group.
#[derive(Debug, Clone, Serialize)]
pub struct VolumeGroup {
    /// VG name.
    pub name: String,
    /// VG UUID as LVM prints it.
    pub uuid: String,
    /// Extent size in bytes.
    pub extent_size_in_bytes: u64,
    /// Ids of the volumes holding this VG's physical volumes.
    pub physical_volumes: Vec<String>,
    /// LVs that could not be mapped (not linear, missing PV, …), with why.
    pub unmapped: Vec<Diagnostic>,
}

/// A problem found and worked around, or a volume we could not read.
#[derive(Debug, Clone, Serialize)]
pub struct Diagnostic {
    /// The structure concerned, e.g. `gpt header`, `p3`, `lvm/vg0/data`.
    pub subject: String,
    /// What happened, in one line.
    pub message: String,
}

/// Discovers the partition table, volumes and their contents on `disk`.
pub fn discover(disk: Device) -> Result<Disk> {
    let _ = disk;
    Err(Error::unsupported("discovering volumes", "not implemented yet"))
}
