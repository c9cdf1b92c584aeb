//! Linux swap areas (`SWAPSPACE2` / `SWAP-SPACE` at the end of the first
//! page, for page sizes 4 KiB to 64 KiB) and hibernation images on swap
//! (`swsuspend`), with blkid's checks on the version-1 header.

use rescue_io::Result;

use super::{found, Reader};
use crate::bytes::{array, blkid_label, le32, span, u8_at, uuid_string};
use crate::Probe;

/// Offsets of the signature: page size minus 10, for 4, 8, 16, 32, 64 KiB.
const SIGNATURE_OFFSETS: [u64; 5] = [0xff6, 0x1ff6, 0x3ff6, 0x7ff6, 0xfff6];
/// blkid ignores swap signatures on devices smaller than 10 pages.
const MIN_SIZE: u64 = 10 * 4096;
/// TuxOnIce keeps a valid swap header: blkid says "not swap" then.
const TOI_MAGIC: &[u8; 8] = b"\xed\xc3\x02\xe9\x98\x56\xe5\x0c";

/// Decodes the version-1 header at byte 1024. `None` when blkid would
/// reject it.
fn header_info(
    r: &mut Reader<'_>,
    check_version: bool,
) -> Result<Option<(Option<String>, Option<String>)>> {
    let Some(h) = r.get(1024, 512)? else {
        return Ok(None);
    };
    if check_version {
        let version = le32(&h, 0);
        if version != 1 && version.swap_bytes() != 1 {
            return Ok(None);
        }
        if le32(&h, 4) == 0 {
            return Ok(None);
        }
    }
    // blkid only trusts UUID and label when this padding is clean.
    let padding = 44;
    if le32(&h, padding + 32 * 4) != 0 || le32(&h, padding + 33 * 4) != 0 {
        return Ok(Some((None, None)));
    }
    let label = if u8_at(&h, 28) != 0 {
        blkid_label(span(&h, 28, 16))
    } else {
        None
    };
    Ok(Some((uuid_string(array(&h, 12)), label)))
}

/// Probes for a swap signature.
pub(crate) fn probe(r: &mut Reader<'_>, _warnings: &mut Vec<String>) -> Result<Option<Probe>> {
    if r.size() < MIN_SIZE {
        return Ok(None);
    }
    for off in SIGNATURE_OFFSETS {
        let Some(sig) = r.get(off, 10)? else { break };
        let v1 = sig == b"SWAPSPACE2";
        if !v1 && sig != b"SWAP-SPACE" {
            continue;
        }
        if r.has(0, TOI_MAGIC)? {
            return Ok(None);
        }
        if !v1 {
            return Ok(Some(found("swap", None, None, Some("0".into()))));
        }
        return Ok(
            header_info(r, true)?.map(|(uuid, label)| found("swap", uuid, label, Some("1".into())))
        );
    }
    Ok(None)
}

/// Probes for a hibernation image written over a swap area.
pub(crate) fn probe_swsuspend(
    r: &mut Reader<'_>,
    _warnings: &mut Vec<String>,
) -> Result<Option<Probe>> {
    if r.size() < MIN_SIZE {
        return Ok(None);
    }
    if r.has(0, TOI_MAGIC)? {
        return Ok(
            header_info(r, false)?.map(|(u, l)| found("swsuspend", u, l, Some("tuxonice".into())))
        );
    }
    const KINDS: [(&[u8], &str); 4] = [
        (b"S1SUSPEND", "s1suspend"),
        (b"S2SUSPEND", "s2suspend"),
        (b"ULSUSPEND", "ulsuspend"),
        (b"LINHIB0001", "linhib0001"),
    ];
    for off in SIGNATURE_OFFSETS {
        let Some(sig) = r.get(off, 10)? else { break };
        for (magic, version) in KINDS {
            if span(&sig, 0, magic.len()) == magic {
                return Ok(header_info(r, false)?
                    .map(|(u, l)| found("swsuspend", u, l, Some(version.into()))));
            }
        }
    }
    Ok(None)
}
