//! FAT12/16/32 (`vfat`), decided and labelled exactly like blkid 2.38:
//! magic strings (or a bare jump instruction plus sanity checks), the boot
//! sector sanity checks of `fat_valid_superblock`, `VERSION` from the
//! cluster count, `UUID` from the volume serial as `XXXX-XXXX`, and `LABEL`
//! only from the volume-label entry of the root directory (the boot-sector
//! label is blkid's separate `LABEL_FATBOOT`, which `LABEL=` in fstab does
//! not use).
//!
//! The root directory search reads in 4 KiB steps, stops at the end-of-
//! directory marker and is bounded by the reader's budget, so a hostile
//! cluster chain cannot make it scan.

use rescue_io::Result;

use super::{found, Reader};
use crate::bytes::{blkid_label, le16, le32, span, u8_at};
use crate::Probe;

const FAT12_MAX: u64 = 0xff4;
const FAT16_MAX: u64 = 0xfff4;
const FAT32_MAX: u64 = 0x0fff_fff6;
const ATTR_VOLUME_ID: u8 = 0x08;
const ATTR_DIR: u8 = 0x10;
const ATTR_LONG_NAME: u8 = 0x0f;
const ATTR_MASK: u8 = 0x3f;
const ENTRY_FREE: u8 = 0xe5;
/// How many clusters of a FAT32 root directory blkid follows.
const MAX_ROOT_CLUSTERS: u32 = 99;
/// Root directory bytes read per step.
const DIR_STEP: u64 = 4096;

/// blkid's magics, in its order: (magic, offset).
const MAGICS: [(&[u8], usize); 9] = [
    (b"MSWIN", 0x52),
    (b"FAT32   ", 0x52),
    (b"MSDOS", 0x36),
    (b"FAT16   ", 0x36),
    (b"FAT12   ", 0x36),
    (b"FAT     ", 0x36),
    (b"\xeb", 0),
    (b"\xe9", 0),
    (b"\x55\xaa", 0x1fe),
];

/// Geometry accepted by `fat_valid_superblock`.
struct Geometry {
    cluster_count: u64,
    fat_size: u64,
}

fn valid_superblock(bs: &[u8], weak_magic: bool) -> Option<Geometry> {
    if weak_magic {
        // Old floppies carry a boot signature; JFS and HPFS put a FAT-like
        // pseudo boot sector in front of themselves.
        if span(bs, 0x1fe, 2) != b"\x55\xaa" {
            return None;
        }
        let magic = span(bs, 0x36, 8);
        if magic == b"JFS     " || magic == b"HPFS    " {
            return None;
        }
    }
    let fats = u64::from(u8_at(bs, 0x10));
    let reserved = u64::from(le16(bs, 0x0e));
    let media = u8_at(bs, 0x15);
    let cluster_size = u8_at(bs, 0x0d);
    let sector_size = u64::from(le16(bs, 0x0b));
    if fats == 0
        || reserved == 0
        || !(media >= 0xf8 || media == 0xf0)
        || !cluster_size.is_power_of_two()
    {
        return None;
    }
    if !sector_size.is_power_of_two() || !(512..=4096).contains(&sector_size) {
        return None;
    }
    let dir_entries = u64::from(le16(bs, 0x11));
    let mut sect_count = u64::from(le16(bs, 0x13));
    if sect_count == 0 {
        sect_count = u64::from(le32(bs, 0x20));
    }
    let fat16_length = le16(bs, 0x16);
    let fat32_length = le32(bs, 0x24);
    let fat_length = if fat16_length != 0 {
        u64::from(fat16_length)
    } else {
        u64::from(fat32_length)
    };
    let fat_size = fat_length * fats;
    let dir_size = (dir_entries * 32).div_ceil(sector_size);
    let meta = reserved + fat_size + dir_size;
    let cluster_count = sect_count.checked_sub(meta)? / u64::from(cluster_size);
    let max_count = if fat16_length == 0 && fat32_length != 0 {
        FAT32_MAX
    } else if cluster_count > FAT12_MAX {
        FAT16_MAX
    } else {
        FAT12_MAX
    };
    if cluster_count > max_count {
        return None;
    }
    // BitLocker volumes look like FAT to these checks.
    if span(bs, 3, 8) == b"-FVE-FS-" {
        return None;
    }
    Some(Geometry {
        cluster_count,
        fat_size,
    })
}

/// Searches `entries` directory entries at `offset` for the volume label.
/// `Ok(None)` also when the directory cannot be read (as blkid).
fn search_label(r: &mut Reader<'_>, offset: u64, entries: u64) -> Result<Option<Vec<u8>>> {
    let total = entries * 32;
    let mut done = 0u64;
    while done < total {
        let step = (total - done).min(DIR_STEP);
        let Some(start) = offset.checked_add(done) else {
            return Ok(None);
        };
        let Some(chunk) = r.get(start, step as usize)? else {
            return Ok(None);
        };
        for ent in chunk.chunks_exact(32) {
            // OK to index: chunks_exact(32) yields whole 32-byte entries.
            let first = ent[0];
            if first == 0 {
                return Ok(None);
            }
            let attr = ent[11];
            let cluster_high = le16(ent, 20);
            let cluster_low = le16(ent, 26);
            if first == ENTRY_FREE
                || cluster_high != 0
                || cluster_low != 0
                || attr & ATTR_MASK == ATTR_LONG_NAME
            {
                continue;
            }
            if attr & (ATTR_VOLUME_ID | ATTR_DIR) == ATTR_VOLUME_ID {
                let mut name = ent[..11].to_vec();
                if name[0] == 0x05 {
                    name[0] = 0xe5;
                }
                return Ok(Some(name));
            }
        }
        done += step;
    }
    Ok(None)
}

/// Probes for a FAT boot sector.
pub(crate) fn probe(r: &mut Reader<'_>, _warnings: &mut Vec<String>) -> Result<Option<Probe>> {
    let Some(bs) = r.get(0, 512)? else {
        return Ok(None);
    };
    let Some((magic, _)) = MAGICS
        .iter()
        .find(|(m, off)| span(&bs, *off, m.len()) == *m)
    else {
        return Ok(None);
    };
    let Some(geo) = valid_superblock(&bs, magic.len() <= 2) else {
        return Ok(None);
    };
    let sector_size = u64::from(le16(&bs, 0x0b));
    let reserved = u64::from(le16(&bs, 0x0e));
    let cluster_size = u64::from(u8_at(&bs, 0x0d));
    let mut vol_label = None;
    let mut serial = None;
    let mut version = None;
    if le16(&bs, 0x16) != 0 {
        let root_start = (reserved + geo.fat_size) * sector_size;
        let root_entries = u64::from(le16(&bs, 0x11));
        vol_label = search_label(r, root_start, root_entries)?;
        if matches!(u8_at(&bs, 0x26), 0x28 | 0x29) {
            serial = Some(span(&bs, 0x27, 4).to_vec());
        }
        if geo.cluster_count < FAT12_MAX {
            version = Some("FAT12");
        } else if geo.cluster_count < FAT16_MAX {
            version = Some("FAT16");
        }
    } else if le32(&bs, 0x24) != 0 {
        let fat32_length = u64::from(le32(&bs, 0x24));
        let cluster_bytes = cluster_size * sector_size;
        let start_data_sect = reserved + geo.fat_size;
        let fat_entries = fat32_length * sector_size / 4;
        let mut next = u64::from(le32(&bs, 0x2c));
        let mut loops = 0;
        while next != 0 && next < fat_entries && loops < MAX_ROOT_CLUSTERS {
            loops += 1;
            let Some(cluster_index) = next.checked_sub(2) else {
                break;
            };
            let dir_off = (start_data_sect + cluster_index * cluster_size) * sector_size;
            if let Some(label) = search_label(r, dir_off, cluster_bytes / 32)? {
                vol_label = Some(label);
                break;
            }
            let Some(entry) = r.get(reserved * sector_size + next * 4, 4)? else {
                break;
            };
            next = u64::from(le32(&entry, 0) & 0x0fff_ffff);
        }
        version = Some("FAT32");
        serial = Some(span(&bs, 0x43, 4).to_vec());
        // FAT32 must have a valid FSInfo signature, or zeros.
        let fsinfo_sect = u64::from(le16(&bs, 0x30));
        if fsinfo_sect != 0 {
            let Some(fsinfo) = r.get(fsinfo_sect * sector_size, 512)? else {
                return Ok(None);
            };
            let sig1 = span(&fsinfo, 0, 4);
            let sig2 = span(&fsinfo, 484, 4);
            if sig1 != b"RRaA" && sig1 != b"RRdA" && sig1 != [0u8; 4] {
                return Ok(None);
            }
            if sig2 != b"rrAa" && sig2 != [0u8; 4] {
                return Ok(None);
            }
        }
    }
    // OK to index: only 4-byte serials pass the filter.
    let uuid = serial
        .filter(|s| s.len() == 4)
        .map(|s| format!("{:02X}{:02X}-{:02X}{:02X}", s[3], s[2], s[1], s[0]));
    let label = vol_label.and_then(|l| blkid_label(&l));
    Ok(Some(found(
        "vfat",
        uuid,
        label,
        version.map(str::to_string),
    )))
}
