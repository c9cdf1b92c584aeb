//! LUKS1/LUKS2 encrypted volumes: identified only (type, UUID, LUKS2 label,
//! version), never opened. The LUKS2 secondary headers are looked at when
//! the primary magic is gone, as blkid does.

use rescue_io::Result;

use super::{found, Reader};
use crate::bytes::{be16, blkid_label, span};
use crate::Probe;

const MAGIC: &[u8; 6] = b"LUKS\xba\xbe";
const MAGIC_SECONDARY: &[u8; 6] = b"SKUL\xba\xbe";
/// Where LUKS2 may keep its secondary header.
const SECONDARY_OFFSETS: [u64; 9] = [
    0x4000, 0x8000, 0x10000, 0x20000, 0x40000, 0x80000, 0x100000, 0x200000, 0x400000,
];
/// Bytes of the binary header we decode.
const HEADER_BYTES: usize = 512;

fn attributes(h: &[u8]) -> Probe {
    let version = be16(h, 6);
    // Both versions keep the UUID string at offset 168; LUKS2 adds a label.
    let uuid = blkid_label(span(h, 168, 40));
    let label = if version == 2 {
        blkid_label(span(h, 24, 48))
    } else {
        None
    };
    found("crypto_LUKS", uuid, label, Some(version.to_string()))
}

/// Probes for a LUKS header.
pub(crate) fn probe(r: &mut Reader<'_>, _warnings: &mut Vec<String>) -> Result<Option<Probe>> {
    if let Some(h) = r.get(0, HEADER_BYTES)? {
        if span(&h, 0, 6) == MAGIC {
            return Ok(Some(attributes(&h)));
        }
    }
    for off in SECONDARY_OFFSETS {
        if r.has(off, MAGIC_SECONDARY)? {
            if let Some(h) = r.get(off, HEADER_BYTES)? {
                return Ok(Some(attributes(&h)));
            }
        }
    }
    Ok(None)
}
