//! XFS superblock (`XFSB` at byte 0), validated like blkid's
//! `xfs_verify_sb` so a stray magic is not taken for a filesystem.

use rescue_io::Result;

use super::{found, Reader};
use crate::bytes::{array, be16, be32, be64, blkid_label, span, u8_at, uuid_string};
use crate::Probe;

fn valid(sb: &[u8]) -> bool {
    let blocksize = u64::from(be32(sb, 4));
    let dblocks = be64(sb, 8);
    let rextsize = u64::from(be32(sb, 80));
    let agblocks = u64::from(be32(sb, 84));
    let agcount = u64::from(be32(sb, 88));
    let sectsize = u64::from(be16(sb, 102));
    let inodesize = u64::from(be16(sb, 104));
    let blocklog = u64::from(u8_at(sb, 120));
    let sectlog = u64::from(u8_at(sb, 121));
    let inodelog = u64::from(u8_at(sb, 122));
    let inopblog = u64::from(u8_at(sb, 123));
    let imax_pct = u8_at(sb, 127);
    let rtext_bytes = rextsize * blocksize;
    agcount != 0
        && (512..=32768).contains(&sectsize)
        && (9..=15).contains(&sectlog)
        && sectsize == 1 << sectlog
        && (512..=65536).contains(&blocksize)
        && (9..=16).contains(&blocklog)
        && blocksize == 1 << blocklog
        && (256..=2048).contains(&inodesize)
        && (8..=11).contains(&inodelog)
        && inodesize == 1 << inodelog
        && blocklog.checked_sub(inodelog) == Some(inopblog)
        && (4096..=1 << 30).contains(&rtext_bytes)
        && imax_pct <= 100
        && dblocks != 0
        && dblocks <= agcount * agblocks
        && dblocks >= (agcount - 1) * agblocks + 64
}

/// Probes for an XFS superblock.
pub(crate) fn probe(r: &mut Reader<'_>, _warnings: &mut Vec<String>) -> Result<Option<Probe>> {
    let Some(sb) = r.get(0, 512)? else {
        return Ok(None);
    };
    if span(&sb, 0, 4) != b"XFSB" || !valid(&sb) {
        return Ok(None);
    }
    let label = if u8_at(&sb, 108) != 0 {
        blkid_label(span(&sb, 108, 12))
    } else {
        None
    };
    Ok(Some(found("xfs", uuid_string(array(&sb, 32)), label, None)))
}
