//! Little helpers to decode integers, strings and GUIDs from on-disk byte
//! buffers.
//!
//! Every accessor is total: a field that lies (partly) outside the buffer
//! reads as zero / empty instead of panicking. Callers size their buffers for
//! the structures they decode, so this only matters for hostile or truncated
//! input, where "zero" then fails the caller's own validation.

/// The bytes `off .. off + len` of `buf`, or an empty slice when out of range.
pub(crate) fn span(buf: &[u8], off: usize, len: usize) -> &[u8] {
    off.checked_add(len)
        .and_then(|end| buf.get(off..end))
        .unwrap_or(&[])
}

/// A fixed-size array copied from `buf`, zero-filled when out of range.
pub(crate) fn array<const N: usize>(buf: &[u8], off: usize) -> [u8; N] {
    let mut out = [0u8; N];
    let s = span(buf, off, N);
    if s.len() == N {
        out.copy_from_slice(s);
    }
    out
}

/// One byte, zero when out of range.
pub(crate) fn u8_at(buf: &[u8], off: usize) -> u8 {
    buf.get(off).copied().unwrap_or(0)
}

/// Little-endian u16.
pub(crate) fn le16(buf: &[u8], off: usize) -> u16 {
    u16::from_le_bytes(array(buf, off))
}

/// Little-endian u32.
pub(crate) fn le32(buf: &[u8], off: usize) -> u32 {
    u32::from_le_bytes(array(buf, off))
}

/// Little-endian u64.
pub(crate) fn le64(buf: &[u8], off: usize) -> u64 {
    u64::from_le_bytes(array(buf, off))
}

/// Big-endian u16.
pub(crate) fn be16(buf: &[u8], off: usize) -> u16 {
    u16::from_be_bytes(array(buf, off))
}

/// Big-endian u32.
pub(crate) fn be32(buf: &[u8], off: usize) -> u32 {
    u32::from_be_bytes(array(buf, off))
}

/// Big-endian u64.
pub(crate) fn be64(buf: &[u8], off: usize) -> u64 {
    u64::from_be_bytes(array(buf, off))
}

/// A NUL-terminated string field of at most `len` bytes, decoded lossily.
pub(crate) fn c_string(buf: &[u8], off: usize, len: usize) -> String {
    let field = span(buf, off, len);
    let end = field.iter().position(|&b| b == 0).unwrap_or(field.len());
    String::from_utf8_lossy(&field[..end]).into_owned()
}

/// A label the way blkid stores one: up to the first NUL, trailing
/// whitespace removed, `None` when nothing is left.
pub(crate) fn blkid_label(raw: &[u8]) -> Option<String> {
    let end = raw.iter().position(|&b| b == 0).unwrap_or(raw.len());
    let mut s = &raw[..end];
    while let Some((last, rest)) = s.split_last() {
        if last.is_ascii_whitespace() {
            s = rest;
        } else {
            break;
        }
    }
    if s.is_empty() {
        None
    } else {
        Some(String::from_utf8_lossy(s).into_owned())
    }
}

/// A big-endian ("network order") 16-byte UUID as blkid prints it, or `None`
/// when it is all zeros (blkid omits empty UUIDs).
pub(crate) fn uuid_string(raw: [u8; 16]) -> Option<String> {
    if raw == [0u8; 16] {
        return None;
    }
    Some(uuid::Uuid::from_bytes(raw).hyphenated().to_string())
}

/// A GPT-style mixed-endian GUID (first three fields little-endian), lower
/// case and hyphenated.
pub(crate) fn guid_string(raw: [u8; 16]) -> String {
    uuid::Uuid::from_bytes_le(raw).hyphenated().to_string()
}

/// True when `start .. start + len` lies inside a device of `size` bytes.
pub(crate) fn fits(start: u64, len: u64, size: u64) -> bool {
    start.checked_add(len).is_some_and(|end| end <= size)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn out_of_range_reads_are_zero() {
        let b = [1u8, 2, 3];
        assert_eq!(le32(&b, 0), 0);
        assert_eq!(le16(&b, 1), 0x0302);
        assert_eq!(le64(&b, usize::MAX), 0);
        assert_eq!(span(&b, usize::MAX, 2), &[] as &[u8]);
    }

    #[test]
    fn labels_are_trimmed_like_blkid() {
        assert_eq!(blkid_label(b"EFI        "), Some("EFI".to_string()));
        assert_eq!(blkid_label(b"root\0junk"), Some("root".to_string()));
        assert_eq!(blkid_label(b"   \0"), None);
    }

    #[test]
    fn guids_are_mixed_endian() {
        // The EFI System type GUID as it is stored on disk.
        let raw = [
            0x28, 0x73, 0x2a, 0xc1, 0x1f, 0xf8, 0xd2, 0x11, 0xba, 0x4b, 0x00, 0xa0, 0xc9, 0x3e,
            0xc9, 0x3b,
        ];
        assert_eq!(guid_string(raw), "c12a7328-f81f-11d2-ba4b-00a0c93ec93b");
    }
}
