//! LVM2 on-disk structures: the PV label (`LABELONE` / `LVM2 001` in one of
//! the first four sectors), the PV header with its data and metadata area
//! lists, the metadata area header (`mda_header`) and the metadata text it
//! points to, including the circular-buffer wrap.
//!
//! Every offset and size comes from the disk, so each is checked against the
//! sector, the metadata area and the device before it is used; checksums are
//! verified. Nothing here writes.

use rescue_io::BlockRead;

use crate::bytes::{fits, le32, le64, span};
use crate::crc::{lvm_crc, update};

/// LVM sectors are 512 bytes.
pub(crate) const SECTOR: u64 = 512;
/// The label may sit in any of the first four sectors.
const LABEL_SCAN_SECTORS: u64 = 4;
/// Size of the metadata area header.
const MDA_HEADER_SIZE: u64 = 512;
/// Magic of a metadata area header (`FMTT_MAGIC`).
const FMTT_MAGIC: &[u8; 16] = b" LVM2 x[5A%r0N*>";
/// Bit in `raw_locn.flags` marking an area LVM was told to ignore.
const RAW_LOCN_IGNORED: u32 = 1;
/// Largest metadata text we read. LVM's default metadata area is 1 MiB and
/// the text of even large VGs is far smaller.
pub(crate) const MAX_METADATA_TEXT: u64 = 1 << 20;

/// A decoded PV label and header.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct PvLabel {
    /// Sector (0-3) holding the label.
    pub label_sector: u64,
    /// PV UUID as stored: 32 characters without hyphens.
    pub pv_uuid_raw: String,
    /// Device size recorded by pvcreate, in bytes.
    pub device_size: u64,
    /// Data areas (offset, size) in bytes from the PV start.
    pub data_areas: Vec<(u64, u64)>,
    /// Metadata areas (offset, size) in bytes from the PV start.
    pub metadata_areas: Vec<(u64, u64)>,
}

impl PvLabel {
    /// The PV UUID as LVM prints it.
    pub fn pv_uuid(&self) -> String {
        format_lvm_uuid(&self.pv_uuid_raw)
    }
}

/// Formats a 32-character LVM id in LVM's 6-4-4-4-4-4-6 groups.
pub(crate) fn format_lvm_uuid(raw: &str) -> String {
    let mut out = String::with_capacity(raw.len() + 6);
    for (i, c) in raw.chars().enumerate() {
        if matches!(i, 6 | 10 | 14 | 18 | 22 | 26) {
            out.push('-');
        }
        out.push(c);
    }
    out
}

/// Decodes the label in one 512-byte sector `s` (the `sector_xl` field must
/// name that sector). `Ok(None)` when there is no label there.
pub(crate) fn parse_label_sector(sector: &[u8], s: u64) -> Result<Option<PvLabel>, String> {
    if span(sector, 0, 8) != b"LABELONE" {
        return Ok(None);
    }
    if span(sector, 24, 8) != b"LVM2 001" {
        return Err(format!(
            "label in sector {s} has type {:?}, not \"LVM2 001\"",
            String::from_utf8_lossy(span(sector, 24, 8))
        ));
    }
    let sector_xl = le64(sector, 8);
    if sector_xl != s {
        return Err(format!(
            "label in sector {s} says it belongs in sector {sector_xl}"
        ));
    }
    let stored = le32(sector, 16);
    let computed = lvm_crc(span(sector, 20, 512 - 20));
    if stored != computed {
        return Err(format!(
            "label checksum mismatch in sector {s} (stored {stored:#010x}, computed {computed:#010x})"
        ));
    }
    let offset_xl = le32(sector, 20) as usize;
    // pv_header: 32-byte uuid, 8-byte size, then at least the two list
    // terminators (16 bytes each).
    if offset_xl < 32 || offset_xl + 32 + 8 + 32 > 512 {
        return Err(format!(
            "pv header offset {offset_xl} lies outside the label sector"
        ));
    }
    let uuid_bytes = span(sector, offset_xl, 32);
    if !uuid_bytes.iter().all(|b| b.is_ascii_graphic()) {
        return Err("the pv uuid holds non-printable bytes".into());
    }
    let pv_uuid_raw = String::from_utf8_lossy(uuid_bytes).into_owned();
    let device_size = le64(sector, offset_xl + 32);
    let mut pos = offset_xl + 40;
    let mut lists: [Vec<(u64, u64)>; 2] = [Vec::new(), Vec::new()];
    for list in &mut lists {
        loop {
            if pos + 16 > 512 {
                return Err("pv header area lists run past the end of the label sector".into());
            }
            let offset = le64(sector, pos);
            let size = le64(sector, pos + 8);
            pos += 16;
            if offset == 0 {
                break;
            }
            list.push((offset, size));
        }
    }
    let [data_areas, metadata_areas] = lists;
    Ok(Some(PvLabel {
        label_sector: s,
        pv_uuid_raw,
        device_size,
        data_areas,
        metadata_areas,
    }))
}

/// Finds and decodes the PV label in the first four sectors of `dev`.
pub(crate) fn read_label(dev: &dyn BlockRead) -> Result<Option<PvLabel>, String> {
    let size = dev.size_in_bytes();
    let scan = (LABEL_SCAN_SECTORS * SECTOR).min(size - size % SECTOR);
    let mut buf = vec![0u8; scan as usize];
    dev.read_exact_at(0, &mut buf).map_err(|e| e.to_string())?;
    let mut first_err = None;
    for (s, sector) in buf.chunks_exact(SECTOR as usize).enumerate() {
        match parse_label_sector(sector, s as u64) {
            Ok(Some(label)) => return Ok(Some(label)),
            Ok(None) => {}
            Err(e) => {
                first_err.get_or_insert(e);
            }
        }
    }
    match first_err {
        Some(e) => Err(e),
        None => Ok(None),
    }
}

/// The current metadata text of one metadata area.
#[derive(Debug, Clone)]
pub(crate) struct MetadataText {
    /// Where the text (its first part) starts on the PV, in bytes.
    pub start_byte: u64,
    /// The text, without trailing NULs.
    pub text: Vec<u8>,
}

/// Decodes a 512-byte metadata area header; returns the first raw location
/// `(offset, size, checksum, flags)`, or `None` when the area holds no
/// metadata (an orphan PV).
pub(crate) fn parse_mda_header(
    header: &[u8],
    mda_start: u64,
) -> Result<Option<(u64, u64, u32, u32)>, String> {
    let stored = le32(header, 0);
    let computed = lvm_crc(span(header, 4, MDA_HEADER_SIZE as usize - 4));
    if span(header, 4, 16) != FMTT_MAGIC {
        return Err(format!(
            "metadata area header at offset {mda_start:#x} has no LVM2 magic"
        ));
    }
    if stored != computed {
        return Err(format!(
            "metadata area header at offset {mda_start:#x}: checksum mismatch (stored {stored:#010x}, computed {computed:#010x})"
        ));
    }
    let version = le32(header, 20);
    if version != 1 {
        return Err(format!(
            "metadata area header at offset {mda_start:#x}: unknown version {version}"
        ));
    }
    let start = le64(header, 24);
    if start != mda_start {
        return Err(format!(
            "metadata area header at offset {mda_start:#x} says it starts at {start:#x}"
        ));
    }
    let offset = le64(header, 40);
    let size = le64(header, 48);
    let checksum = le32(header, 56);
    let flags = le32(header, 60);
    if offset == 0 {
        return Ok(None);
    }
    Ok(Some((offset, size, checksum, flags)))
}

/// Reads the current metadata text of the metadata area at
/// `mda_start .. mda_start + mda_size` on `dev`.
pub(crate) fn read_metadata(
    dev: &dyn BlockRead,
    mda_start: u64,
    mda_size: u64,
) -> Result<Option<MetadataText>, String> {
    let dev_size = dev.size_in_bytes();
    if mda_size <= MDA_HEADER_SIZE || !fits(mda_start, mda_size, dev_size) {
        return Err(format!(
            "metadata area at offset {mda_start:#x} ({mda_size} bytes) does not fit the physical volume ({dev_size:#x} bytes)"
        ));
    }
    let mut header = [0u8; MDA_HEADER_SIZE as usize];
    dev.read_exact_at(mda_start, &mut header)
        .map_err(|e| e.to_string())?;
    let Some((offset, size, checksum, flags)) = parse_mda_header(&header, mda_start)? else {
        return Ok(None);
    };
    if flags & RAW_LOCN_IGNORED != 0 {
        return Ok(None);
    }
    let ring = mda_size - MDA_HEADER_SIZE;
    if offset < MDA_HEADER_SIZE
        || offset >= mda_size
        || size == 0
        || size > ring
        || size > MAX_METADATA_TEXT
    {
        return Err(format!(
            "metadata area at offset {mda_start:#x}: text location {offset:#x}+{size} lies outside the area ({mda_size} bytes) or exceeds {MAX_METADATA_TEXT} bytes"
        ));
    }
    // The text is a circular buffer after the header: it may wrap back to
    // just after the header.
    let first_len = size.min(mda_size - offset);
    let second_len = size - first_len;
    let mut text = vec![0u8; size as usize];
    let (first, second) = text.split_at_mut(first_len as usize);
    dev.read_exact_at(mda_start + offset, first)
        .map_err(|e| e.to_string())?;
    if second_len > 0 {
        dev.read_exact_at(mda_start + MDA_HEADER_SIZE, second)
            .map_err(|e| e.to_string())?;
    }
    let computed = update(update(crate::crc::LVM_INITIAL_CRC, first), second);
    if computed != checksum {
        return Err(format!(
            "metadata text at offset {:#x}: checksum mismatch (stored {checksum:#010x}, computed {computed:#010x})",
            mda_start + offset
        ));
    }
    while text.last() == Some(&0) {
        text.pop();
    }
    Ok(Some(MetadataText {
        start_byte: mda_start + offset,
        text,
    }))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn uuid_groups() {
        assert_eq!(
            format_lvm_uuid("0pA7zfOJBHZntmoI7ZY2wRFlVxaci7MT"),
            "0pA7zf-OJBH-Zntm-oI7Z-Y2wR-FlVx-aci7MT"
        );
    }
}
