//! LVM2 physical volume label, as blkid reports it: `TYPE=LVM2_member`, the
//! PV UUID in LVM's 6-4-4-4-4-4-6 groups and `VERSION=LVM2 001`.
//!
//! blkid looks for the `LVM2 001` type string in sector 1 or 2 and then
//! takes the `LABELONE` label from the first or second sector of that
//! 1 KiB block; the label's sector number and checksum must match. Never
//! reads beyond the first 2 KiB.

use rescue_io::Result;

use super::{found, Reader};
use crate::bytes::span;
use crate::lvm::label::parse_label_sector;
use crate::Probe;

/// Probes for an LVM2 PV label.
pub(crate) fn probe(r: &mut Reader<'_>, _warnings: &mut Vec<String>) -> Result<Option<Probe>> {
    for (magic_sector, label_sectors) in [(1u64, [0u64, 1]), (2, [2, 3])] {
        let Some(magic) = r.get(magic_sector * 512 + 24, 8)? else {
            continue;
        };
        if magic != b"LVM2 001" {
            continue;
        }
        for s in label_sectors {
            let Some(sector) = r.get(s * 512, 512)? else {
                break;
            };
            if span(&sector, 0, 8) != b"LABELONE" {
                continue;
            }
            // blkid judges only the first LABELONE of the block.
            if let Ok(Some(label)) = parse_label_sector(&sector, s) {
                return Ok(Some(found(
                    "LVM2_member",
                    Some(label.pv_uuid()),
                    None,
                    Some("LVM2 001".into()),
                )));
            }
            break;
        }
    }
    Ok(None)
}
