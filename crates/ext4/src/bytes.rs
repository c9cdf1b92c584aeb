//! Fixed-width integer reads from on-disk structures.
//!
//! Every helper returns 0 for an out-of-range offset instead of panicking:
//! callers only read fields inside buffers whose size they checked (a
//! superblock, an inode, one filesystem block), so a zero here can only come
//! from a bug, never from disk contents. This module must never panic.

/// Big-endian u16 at `off`.
pub(crate) fn be16(b: &[u8], off: usize) -> u16 {
    field::<2>(b, off).map_or(0, u16::from_be_bytes)
}

/// Big-endian u32 at `off`.
pub(crate) fn be32(b: &[u8], off: usize) -> u32 {
    field::<4>(b, off).map_or(0, u32::from_be_bytes)
}

/// Big-endian u64 at `off`.
pub(crate) fn be64(b: &[u8], off: usize) -> u64 {
    field::<8>(b, off).map_or(0, u64::from_be_bytes)
}

/// Little-endian u16 at `off`.
pub(crate) fn le16(b: &[u8], off: usize) -> u16 {
    field::<2>(b, off).map_or(0, u16::from_le_bytes)
}

/// Little-endian u32 at `off`.
pub(crate) fn le32(b: &[u8], off: usize) -> u32 {
    field::<4>(b, off).map_or(0, u32::from_le_bytes)
}

/// Writes `bytes` at `off` if they fit; a no-op otherwise (see module doc).
pub(crate) fn put(b: &mut [u8], off: usize, bytes: &[u8]) {
    if let Some(dst) = off
        .checked_add(bytes.len())
        .and_then(|end| b.get_mut(off..end))
    {
        dst.copy_from_slice(bytes);
    }
}

fn field<const N: usize>(b: &[u8], off: usize) -> Option<[u8; N]> {
    let end = off.checked_add(N)?;
    b.get(off..end)?.try_into().ok()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reads_and_out_of_range() {
        let b = [1u8, 2, 3, 4, 5, 6, 7, 8];
        assert_eq!(be32(&b, 0), 0x0102_0304);
        assert_eq!(le32(&b, 0), 0x0403_0201);
        assert_eq!(be16(&b, 6), 0x0708);
        assert_eq!(be64(&b, 1), 0);
        assert_eq!(le16(&b, usize::MAX), 0);
        let mut m = [0u8; 4];
        put(&mut m, 2, &[9, 9, 9]);
        assert_eq!(m, [0; 4]);
        put(&mut m, 2, &[9, 9]);
        assert_eq!(m, [0, 0, 9, 9]);
    }
}
