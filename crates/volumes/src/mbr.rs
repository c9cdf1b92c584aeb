//! DOS/MBR partition tables: primary partitions and the EBR chain of
//! logical partitions inside extended partitions, numbered as Linux does.
//!
//! The EBR chain is a linked list on disk, so a hostile or damaged disk can
//! make it loop: every EBR sector is visited at most once and the chain
//! length is capped. This module never writes and never trusts an LBA it did
//! not check against the disk size.

use std::collections::HashSet;

use rescue_io::{BlockRead, Error, ErrorKind, Result};

use crate::bytes::{le32, u8_at};
use crate::{Diagnostic, PartSpec, VolumeKind};

/// MBR and EBR sectors are 512 bytes; LBAs in them count 512-byte sectors.
const SECTOR: u64 = 512;
/// Offset of the four partition entries.
const ENTRIES_OFFSET: usize = 446;
/// Most EBRs we follow: Linux follows at most 100 links without a data
/// partition; real disks have a handful.
const MAX_EBRS: usize = 128;
/// Highest partition number Linux gives (disk_max_parts is 256).
const MAX_PARTITION_NUMBER: u32 = 255;

/// Partition type of a GPT protective MBR entry.
pub(crate) const PROTECTIVE_TYPE: u8 = 0xee;

/// One 16-byte partition entry.
#[derive(Debug, Clone, Copy)]
pub(crate) struct Entry {
    /// 0x80 for active, 0x00 otherwise (anything else is not a valid MBR).
    pub boot: u8,
    /// Partition type id.
    pub ptype: u8,
    /// First sector, relative to the table's reference point.
    pub start_lba: u32,
    /// Length in sectors.
    pub sectors: u32,
}

impl Entry {
    fn is_extended(&self) -> bool {
        matches!(self.ptype, 0x05 | 0x0f | 0x85)
    }
}

/// The four entries of an MBR or EBR sector.
pub(crate) fn entries(sector: &[u8]) -> [Entry; 4] {
    std::array::from_fn(|i| {
        let off = ENTRIES_OFFSET + 16 * i;
        Entry {
            boot: u8_at(sector, off),
            ptype: u8_at(sector, off + 4),
            start_lba: le32(sector, off + 8),
            sectors: le32(sector, off + 12),
        }
    })
}

/// True when the sector ends with the 0x55 0xAA boot signature.
pub(crate) fn has_boot_signature(sector: &[u8]) -> bool {
    u8_at(sector, 510) == 0x55 && u8_at(sector, 511) == 0xaa
}

/// True for a (possibly hybrid) protective MBR: Linux treats any 0xEE entry
/// as "this disk is GPT".
pub(crate) fn is_protective(sector0: &[u8]) -> bool {
    has_boot_signature(sector0) && entries(sector0).iter().any(|e| e.ptype == PROTECTIVE_TYPE)
}

/// True when sector 0 is shaped like an MBR: boot signature and valid boot
/// flags (as libblkid checks before believing a DOS table).
pub(crate) fn looks_like_mbr(sector0: &[u8]) -> bool {
    has_boot_signature(sector0)
        && entries(sector0)
            .iter()
            .all(|e| e.boot == 0 || e.boot == 0x80)
}

/// True when at least one entry is in use (non-zero size).
pub(crate) fn has_partitions(sector0: &[u8]) -> bool {
    entries(sector0).iter().any(|e| e.sectors != 0)
}

/// The disk signature (identifier) at offset 440.
pub(crate) fn disk_signature(sector0: &[u8]) -> u32 {
    le32(sector0, 440)
}

/// A decoded MBR.
#[derive(Debug, Clone)]
pub(crate) struct MbrTable {
    /// Disk signature.
    pub signature: u32,
    /// Volumes: primary (non-extended) then logical partitions.
    pub partitions: Vec<PartSpec>,
}

/// Builds one partition spec, refusing ranges beyond the disk.
fn spec(
    number: u32,
    e: &Entry,
    start_sector: u64,
    signature: u32,
    logical: bool,
    disk_size: u64,
) -> Result<PartSpec> {
    let op = format!("checking partition {number}");
    let start_byte = start_sector.checked_mul(SECTOR).ok_or_else(|| {
        Error::corrupt(
            op.clone(),
            format!("start sector {start_sector} overflows a byte offset"),
        )
    })?;
    let size_in_bytes = u64::from(e.sectors) * SECTOR;
    check_fits(&op, start_byte, size_in_bytes, disk_size)?;
    Ok(PartSpec {
        id: format!("p{number}"),
        kind: VolumeKind::MbrPartition {
            number,
            type_id: format!("{:#04x}", e.ptype),
            logical,
            bootable: e.boot == 0x80,
            partuuid: format!("{signature:08x}-{number:02x}"),
        },
        start_byte,
        size_in_bytes,
    })
}

/// The partition-beyond-the-end error shared by primary, extended and
/// logical partitions.
fn check_fits(op: &str, start_byte: u64, size_in_bytes: u64, disk_size: u64) -> Result<()> {
    let end = start_byte.checked_add(size_in_bytes);
    if end.is_some_and(|end| end <= disk_size) {
        return Ok(());
    }
    let end_text = end
        .map(|e| format!("{e:#x}"))
        .unwrap_or_else(|| "beyond 2^64".into());
    Err(Error::new(ErrorKind::Corrupt, op).with_offset(start_byte).with_detail(format!(
        "ends at {end_text} beyond the end of the disk ({disk_size:#x}); the image may be truncated: check its size or restore it completely"
    )))
}

/// Reads the MBR in `sector0` (already read from `disk`) and the EBR chains
/// of its extended partitions.
pub(crate) fn read(
    disk: &dyn BlockRead,
    sector0: &[u8],
    diags: &mut Vec<Diagnostic>,
) -> Result<MbrTable> {
    let disk_size = disk.size_in_bytes();
    let signature = disk_signature(sector0);
    let primaries = entries(sector0);
    let mut partitions = Vec::new();
    let mut extended = Vec::new();
    for (slot, e) in primaries.iter().enumerate() {
        if e.sectors == 0 {
            continue;
        }
        // OK: slot < 4.
        let number = slot as u32 + 1;
        if e.is_extended() {
            // The container is checked like any partition but is not a volume.
            let op = format!("checking partition {number}");
            let start_byte = u64::from(e.start_lba) * SECTOR;
            check_fits(&op, start_byte, u64::from(e.sectors) * SECTOR, disk_size)?;
            extended.push(*e);
            continue;
        }
        partitions.push(spec(
            number,
            e,
            u64::from(e.start_lba),
            signature,
            false,
            disk_size,
        )?);
    }
    let mut next_number = 5u32;
    for ext in extended {
        read_logical(
            disk,
            &ext,
            signature,
            &mut next_number,
            &mut partitions,
            diags,
        )?;
    }
    Ok(MbrTable {
        signature,
        partitions,
    })
}

/// Follows one extended partition's EBR chain the way Linux's
/// `parse_extended` does, with loop detection.
fn read_logical(
    disk: &dyn BlockRead,
    ext: &Entry,
    signature: u32,
    next_number: &mut u32,
    out: &mut Vec<PartSpec>,
    diags: &mut Vec<Diagnostic>,
) -> Result<()> {
    let disk_size = disk.size_in_bytes();
    let first_sector = u64::from(ext.start_lba);
    let first_size = u64::from(ext.sectors);
    let mut this_sector = first_sector;
    let mut this_size = first_size;
    let mut visited = HashSet::new();
    loop {
        if *next_number > MAX_PARTITION_NUMBER {
            diags.push(Diagnostic {
                subject: "mbr".into(),
                message: format!("more than {MAX_PARTITION_NUMBER} partitions; the rest of the EBR chain is ignored"),
            });
            return Ok(());
        }
        if !visited.insert(this_sector) || visited.len() > MAX_EBRS {
            diags.push(Diagnostic {
                subject: "mbr".into(),
                message: format!(
                    "reading the extended partition chain at offset {:#x}: the EBR chain loops or is longer than {MAX_EBRS} links; the rest of it is ignored",
                    this_sector.saturating_mul(SECTOR)
                ),
            });
            return Ok(());
        }
        let Some(ebr_offset) = this_sector
            .checked_mul(SECTOR)
            .filter(|&o| crate::bytes::fits(o, SECTOR, disk_size))
        else {
            diags.push(Diagnostic {
                subject: "mbr".into(),
                message: format!(
                    "reading an extended boot record at sector {this_sector}: it lies beyond the end of the disk; the rest of the chain is ignored"
                ),
            });
            return Ok(());
        };
        let mut ebr = [0u8; 512];
        disk.read_exact_at(ebr_offset, &mut ebr)?;
        if !has_boot_signature(&ebr) {
            // Linux stops silently here; an empty extended partition has an
            // all-zero first EBR.
            if ebr_offset != first_sector * SECTOR {
                diags.push(Diagnostic {
                    subject: "mbr".into(),
                    message: format!(
                        "reading the extended boot record at offset {ebr_offset:#x}: no 0x55aa signature; the rest of the chain is ignored"
                    ),
                });
            }
            return Ok(());
        }
        let ents = entries(&ebr);
        for (i, e) in ents.iter().enumerate() {
            if e.sectors == 0 || e.is_extended() {
                continue;
            }
            let offs = u64::from(e.start_lba);
            let size = u64::from(e.sectors);
            let Some(next) = this_sector.checked_add(offs) else {
                continue;
            };
            // The 3rd and 4th entries sometimes hold garbage: Linux only
            // believes them when they lie inside the extended partition.
            if i >= 2 {
                let inside = offs + size <= this_size
                    && next >= first_sector
                    && next + size <= first_sector + first_size;
                if !inside {
                    continue;
                }
            }
            if *next_number > MAX_PARTITION_NUMBER {
                break;
            }
            out.push(spec(*next_number, e, next, signature, true, disk_size)?);
            *next_number += 1;
        }
        let Some(link) = ents.iter().find(|e| e.sectors != 0 && e.is_extended()) else {
            return Ok(());
        };
        // Links are relative to the start of the outermost extended partition.
        this_sector = first_sector + u64::from(link.start_lba);
        this_size = u64::from(link.sectors);
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::mem::MemDisk;

    fn put_entry(sector: &mut [u8], slot: usize, boot: u8, ptype: u8, start: u32, len: u32) {
        let off = ENTRIES_OFFSET + 16 * slot;
        sector[off] = boot;
        sector[off + 4] = ptype;
        sector[off + 8..off + 12].copy_from_slice(&start.to_le_bytes());
        sector[off + 12..off + 16].copy_from_slice(&len.to_le_bytes());
    }

    #[test]
    fn ebr_chain_pointing_to_itself_stops() {
        let mut disk = vec![0u8; 64 * 512];
        put_entry(&mut disk[..512], 0, 0x80, 0x83, 2, 4);
        put_entry(&mut disk[..512], 1, 0, 0x05, 8, 40);
        disk[510] = 0x55;
        disk[511] = 0xaa;
        // EBR at sector 8: one logical partition, link back to itself.
        let ebr = &mut disk[8 * 512..9 * 512];
        put_entry(ebr, 0, 0, 0x83, 1, 2);
        put_entry(ebr, 1, 0, 0x05, 0, 10);
        ebr[510] = 0x55;
        ebr[511] = 0xaa;
        let sector0 = disk[..512].to_vec();
        let mem = MemDisk::new(disk, "mem");
        let mut diags = Vec::new();
        let t = read(&mem, &sector0, &mut diags).unwrap();
        assert_eq!(t.partitions.len(), 2);
        assert_eq!(t.partitions[1].id, "p5");
        assert!(
            diags.iter().any(|d| d.message.contains("loops")),
            "{diags:?}"
        );
    }
}
