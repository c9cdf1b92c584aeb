//! btrfs superblock (`_BHRfS_M` at 64 KiB + 0x40): filesystem UUID and
//! label, as blkid reports them.

use rescue_io::Result;

use super::{found, Reader};
use crate::bytes::{array, blkid_label, span, u8_at, uuid_string};
use crate::Probe;

const SUPERBLOCK_OFFSET: u64 = 0x10000;
/// blkid ignores btrfs signatures on devices smaller than this.
const MIN_SIZE: u64 = 1 << 20;
const LABEL_OFFSET: usize = 0x12b;

/// Probes for a btrfs superblock.
pub(crate) fn probe(r: &mut Reader<'_>, _warnings: &mut Vec<String>) -> Result<Option<Probe>> {
    if r.size() < MIN_SIZE || !r.has(SUPERBLOCK_OFFSET + 0x40, b"_BHRfS_M")? {
        return Ok(None);
    }
    let Some(sb) = r.get(SUPERBLOCK_OFFSET, 1024)? else {
        return Ok(None);
    };
    let label = if u8_at(&sb, LABEL_OFFSET) != 0 {
        blkid_label(span(&sb, LABEL_OFFSET, 256))
    } else {
        None
    };
    Ok(Some(found(
        "btrfs",
        uuid_string(array(&sb, 0x20)),
        label,
        None,
    )))
}
