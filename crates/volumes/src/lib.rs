//! Volume discovery: what is on a disk, without trusting any of it.
//!
//! [`discover`] takes an opened device and returns the partition table, the
//! volumes (partitions, LVM2 linear logical volumes, or the whole disk) and
//! what each volume holds ([`Probe`]). Every offset and length read from the
//! disk is checked before use; damage becomes an [`Error`] naming the
//! structure and offset, or a [`Diagnostic`] when we can carry on (for
//! example a corrupt primary GPT with a valid backup).
//!
//! This crate reads only through `rescue_io` and never writes. Discovery
//! reads metadata only (partition tables, PV labels and metadata areas,
//! superblocks): a few dozen KiB whatever the disk size, never volume data.
//!
//! Code map: `gpt` and `mbr` decode partition tables, `lvm` maps
//! LVM2 linear logical volumes (with its own metadata text parser), `probe`
//! identifies volume contents like blkid, `linear` concatenates device
//! ranges for multi-segment LVs.

mod bytes;
mod crc;
mod gpt;
mod linear;
mod lvm;
mod mbr;
mod mem;
mod probe;

use std::sync::Arc;

use rescue_io::{BlockRead, Device, Slice};
use serde::Serialize;

#[doc(hidden)]
pub use gpt::known_type_names as gpt_type_names;
pub use linear::{LinearDevice, LinearSegment};
pub use mem::MemDisk;
pub use rescue_io::{Error, ErrorKind, Result};

/// Everything discovered on one disk.
#[derive(Debug, Clone, Serialize, schemars::JsonSchema)]
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

impl Default for Disk {
    /// A disk with nothing on it (the stand-in for a mounted directory tree,
    /// whose disk is not examined).
    fn default() -> Self {
        Disk {
            table: PartitionTable::None,
            volumes: Vec::new(),
            volume_groups: Vec::new(),
            diagnostics: Vec::new(),
        }
    }
}

/// The partition table found on the disk.
#[derive(Debug, Clone, Serialize, schemars::JsonSchema)]
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
#[derive(Debug, Clone, Serialize, schemars::JsonSchema)]
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
    /// Where the volume's bytes lie on the disk, in volume order (one
    /// extent for a partition, one per segment for an LV): the write side
    /// rebuilds the volume over the writable disk from these
    /// ([`rescue_io::MappedDevice`]).
    #[serde(skip)]
    pub extents: Vec<rescue_io::Extent>,
}

/// Kind-specific fields of a volume.
#[derive(Debug, Clone, Serialize, schemars::JsonSchema)]
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
#[derive(Debug, Clone, Default, Serialize, schemars::JsonSchema)]
pub struct Probe {
    /// The content type, using blkid's names (`ext4`, `vfat`, `xfs`,
    /// `btrfs`, `swap`, `LVM2_member`, `crypto_LUKS`), or `None` if unknown.
    pub fstype: Option<String>,
    /// The UUID as blkid prints it (FAT: `ABCD-1234`).
    pub uuid: Option<String>,
    /// The label, if set.
    pub label: Option<String>,
    /// blkid's `VERSION`: `FAT12`/`FAT16`/`FAT32` for vfat, `1`/`2` for
    /// LUKS, `1` for swap, `LVM2 001` for a PV, `1.0` (revision) for ext.
    pub version: Option<String>,
    /// ext2/3/4 details.
    pub ext: Option<ExtInfo>,
}

/// Superblock facts of an ext2/3/4 filesystem.
#[derive(Debug, Clone, Default, Serialize, schemars::JsonSchema)]
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
    /// Blocks reserved for root (`s_r_blocks_count`): ordinary users get
    /// "No space left on device" once free blocks fall to this.
    pub reserved_blocks_count: u64,
    /// First inode of the orphan list (`s_last_orphan`); non-zero when files
    /// deleted while open were not cleaned up (the kernel finishes that at
    /// the next mount or e2fsck does).
    pub orphan_list_head: u32,
    /// The first error the kernel recorded, if any.
    pub first_error: Option<ExtError>,
    /// The most recent error the kernel recorded, if any.
    pub last_error: Option<ExtError>,
}

/// An error recorded by the kernel in an ext4 superblock (what `dumpe2fs -h`
/// prints as "First error …" / "Last error …").
#[derive(Debug, Clone, PartialEq, Eq, Serialize, schemars::JsonSchema)]
pub struct ExtError {
    /// When, in seconds since the epoch.
    pub time_unix_seconds: u32,
    /// The kernel function that reported it (e.g. `ext4_lookup`).
    pub function: String,
    /// Source line in that function.
    pub line: u32,
    /// Inode concerned (0 if none).
    pub inode: u32,
    /// Block concerned (0 if none).
    pub block: u64,
}

/// One LVM2 volume group.
#[derive(Debug, Clone, Serialize, schemars::JsonSchema)]
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
#[derive(Debug, Clone, Serialize, schemars::JsonSchema)]
pub struct Diagnostic {
    /// The structure concerned, e.g. `gpt header`, `p3`, `lvm/vg0/data`.
    pub subject: String,
    /// What happened, in one line.
    pub message: String,
}

/// A partition found in a table, before it is probed.
#[derive(Debug, Clone)]
pub(crate) struct PartSpec {
    pub id: String,
    pub kind: VolumeKind,
    pub start_byte: u64,
    pub size_in_bytes: u64,
}

/// Discovers the partition table, volumes and their contents on `disk`.
///
/// Reads only metadata. Damage we can work around (a corrupt primary GPT
/// with a good backup, an unreadable volume, an LV that cannot be mapped)
/// ends up in [`Disk::diagnostics`] or [`VolumeGroup::unmapped`]; damage that
/// makes the layout untrustworthy (a partition beyond the end of the disk,
/// both GPT copies corrupt, LVM metadata pointing outside its PV) is an
/// [`ErrorKind::Corrupt`] error. A disk with nothing recognisable on it is
/// `Ok` with [`PartitionTable::None`] and no volumes: the caller decides
/// whether that is an error.
pub fn discover(disk: Device) -> Result<Disk> {
    let mut diagnostics = Vec::new();
    let (table, specs, whole) = layout(&*disk, &mut diagnostics)?;
    let mut volumes = Vec::with_capacity(specs.len() + 1);
    if let Some(probe) = whole {
        volumes.push(Volume {
            id: "disk".into(),
            kind: VolumeKind::WholeDisk,
            start_byte: 0,
            size_in_bytes: disk.size_in_bytes(),
            probe,
            device: disk.clone(),
            extents: vec![rescue_io::Extent {
                volume_start: 0,
                disk_start: 0,
                len: disk.size_in_bytes(),
            }],
        });
    }
    for spec in specs {
        let name = format!("{} {}", disk.describe(), spec.id);
        // `Device` is `Arc<dyn BlockRead>` by rescue_io's design, without Send/Sync.
        #[allow(clippy::arc_with_non_send_sync)]
        let device: Device = Arc::new(Slice::new(
            disk.clone(),
            spec.start_byte,
            spec.size_in_bytes,
            name,
        )?);
        let probe = probe_with_diagnostics(&spec.id, &device, &mut diagnostics);
        volumes.push(Volume {
            id: spec.id,
            kind: spec.kind,
            start_byte: spec.start_byte,
            size_in_bytes: spec.size_in_bytes,
            probe,
            device,
            extents: vec![rescue_io::Extent {
                volume_start: 0,
                disk_start: spec.start_byte,
                len: spec.size_in_bytes,
            }],
        });
    }
    let (volume_groups, lvs) = lvm::discover(&volumes, &mut diagnostics)?;
    volumes.extend(lvs);
    Ok(Disk {
        table,
        volumes,
        volume_groups,
        diagnostics,
    })
}

/// Identifies what `dev` holds (filesystem, swap, PV, LUKS), like
/// `blkid -p`. Reads a few KiB.
pub fn probe_volume(dev: &dyn BlockRead) -> Result<Probe> {
    Ok(probe::probe(dev)?.probe)
}

/// Probes a volume; a read failure or a corrupt superblock becomes a
/// diagnostic about `subject` instead of failing discovery.
pub(crate) fn probe_with_diagnostics(
    subject: &str,
    dev: &Device,
    diags: &mut Vec<Diagnostic>,
) -> Probe {
    match probe::probe(&**dev) {
        Ok(outcome) => {
            diags.extend(outcome.warnings.into_iter().map(|message| Diagnostic {
                subject: subject.to_string(),
                message,
            }));
            outcome.probe
        }
        Err(e) => {
            diags.push(Diagnostic {
                subject: subject.to_string(),
                message: format!("probing the volume's content: {e}; its type is left unknown"),
            });
            Probe::default()
        }
    }
}

/// The partition table and partitions of `disk`, or the whole-disk probe
/// when there is no table.
fn layout(
    disk: &dyn BlockRead,
    diags: &mut Vec<Diagnostic>,
) -> Result<(PartitionTable, Vec<PartSpec>, Option<Probe>)> {
    let size = disk.size_in_bytes();
    let mut sector0 = [0u8; 512];
    if size >= 512 {
        disk.read_exact_at(0, &mut sector0)?;
    }
    let gpt_table = |diags: &mut Vec<Diagnostic>,
                     t: gpt::GptTable|
     -> Result<(PartitionTable, Vec<PartSpec>, Option<Probe>)> {
        let specs = gpt::partitions(&t, size, diags)?;
        let table = PartitionTable::Gpt {
            disk_guid: t.disk_guid,
            logical_block_size: t.logical_block_size as u32,
            used_backup: t.used_backup,
        };
        Ok((table, specs, None))
    };
    if mbr::is_protective(&sector0) {
        return match gpt::read(disk, diags) {
            gpt::GptOutcome::Found(t) => gpt_table(diags, t),
            gpt::GptOutcome::Broken(e) => Err(e),
            gpt::GptOutcome::NotFound => Err(Error::new(ErrorKind::Corrupt, "reading GPT").with_offset(512).with_detail(
                "the protective MBR (type 0xee) announces a GPT but there is no GPT header at LBA 1 or at the last LBA, with 512- or 4096-byte sectors; rebuild the table (gdisk recovery, testdisk) or restore the disk",
            )),
        };
    }
    // Without a protective MBR a GPT is only a candidate: keep what its
    // reader noticed aside until we know it is used.
    let mut gpt_diags = Vec::new();
    let gpt_outcome = gpt::read(disk, &mut gpt_diags);
    let is_fat = size >= 512 && probe::is_vfat(disk)?;
    if mbr::looks_like_mbr(&sector0) && mbr::has_partitions(&sector0) && !is_fat {
        if let gpt::GptOutcome::Found(_) = gpt_outcome {
            diags.push(Diagnostic {
                subject: "gpt".into(),
                message: "a GPT was found but the MBR is not protective (no 0xee entry); the MBR is used, as Linux does".into(),
            });
        }
        let t = mbr::read(disk, &sector0, diags)?;
        let table = PartitionTable::Mbr {
            disk_signature: format!("{:#010x}", t.signature),
        };
        return Ok((table, t.partitions, None));
    }
    if let gpt::GptOutcome::Found(t) = gpt_outcome {
        diags.append(&mut gpt_diags);
        diags.push(Diagnostic {
            subject: "mbr".into(),
            message: "the GPT has no protective MBR (no 0xee entry in sector 0); the GPT is used"
                .into(),
        });
        return gpt_table(diags, t);
    }
    let whole = if size > 0 {
        match probe::probe(disk) {
            Ok(outcome) => {
                diags.extend(outcome.warnings.into_iter().map(|message| Diagnostic {
                    subject: "disk".into(),
                    message,
                }));
                outcome.probe
            }
            Err(e) => {
                diags.push(Diagnostic {
                    subject: "disk".into(),
                    message: format!("probing the whole disk: {e}; its type is left unknown"),
                });
                Probe::default()
            }
        }
    } else {
        Probe::default()
    };
    if whole.fstype.is_some() {
        return Ok((PartitionTable::None, Vec::new(), Some(whole)));
    }
    if mbr::looks_like_mbr(&sector0) && !is_fat {
        // An MBR with no partitions: a table, but nothing in it.
        let table = PartitionTable::Mbr {
            disk_signature: format!("{:#010x}", mbr::disk_signature(&sector0)),
        };
        return Ok((table, Vec::new(), None));
    }
    Ok((PartitionTable::None, Vec::new(), None))
}

/// Fuzz entry point: GPT detection and decoding on arbitrary disk bytes.
#[doc(hidden)]
pub fn fuzz_gpt(data: &[u8]) {
    let disk = MemDisk::new(data, "fuzz");
    let mut diags = Vec::new();
    if let gpt::GptOutcome::Found(t) = gpt::read(&disk, &mut diags) {
        let _ = gpt::partitions(&t, disk.size_in_bytes(), &mut diags);
    }
}

/// Fuzz entry point: MBR and EBR chain decoding on arbitrary disk bytes.
#[doc(hidden)]
pub fn fuzz_mbr(data: &[u8]) {
    let disk = MemDisk::new(data, "fuzz");
    let mut sector0 = [0u8; 512];
    if disk.read_exact_at(0, &mut sector0).is_ok() {
        let _ = mbr::read(&disk, &sector0, &mut Vec::new());
    }
}

/// Fuzz entry point: the LVM2 metadata text parser and VG model.
#[doc(hidden)]
pub fn fuzz_lvm_metadata(data: &[u8]) {
    if let Ok(root) = lvm::text::parse(data) {
        let _ = lvm::vg::from_text(&root);
    }
}

/// Fuzz entry point: LVM2 PV label and metadata area decoding on arbitrary
/// PV bytes.
#[doc(hidden)]
pub fn fuzz_lvm_pv(data: &[u8]) {
    let pv = MemDisk::new(data, "fuzz");
    if let Ok(Some(label)) = lvm::label::read_label(&pv) {
        for (start, size) in label.metadata_areas {
            if let Ok(Some(text)) = lvm::label::read_metadata(&pv, start, size) {
                fuzz_lvm_metadata(&text.text);
            }
        }
    }
}

/// Fuzz entry point: content probing on arbitrary volume bytes.
#[doc(hidden)]
pub fn fuzz_probe(data: &[u8]) {
    let _ = probe::probe(&MemDisk::new(data, "fuzz"));
}

/// Fuzz entry point: the whole discovery on arbitrary disk bytes.
#[doc(hidden)]
pub fn fuzz_discover(data: &[u8]) {
    let _ = discover(Arc::new(MemDisk::new(data.to_vec(), "fuzz")));
}
