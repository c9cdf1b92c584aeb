//! The two CRC-32 variants ext4 and jbd2 use.
//!
//! * CRC-32C (Castagnoli, reflected polynomial 0x82f63b78): ext4 metadata
//!   checksums and jbd2 checksum v2/v3. The kernel's `crc32c(seed, ...)`
//!   applies no pre- or post-inversion, so neither does [`crc32c`]: callers
//!   pass `!0` as the seed where the on-disk format says so.
//! * CRC-32 "big endian" (MSB first, polynomial 0x04c11db7, no reflection,
//!   no final xor): jbd2 checksum v1 (`JBD2_FEATURE_COMPAT_CHECKSUM`), the
//!   kernel's `crc32_be`.
//!
//! Pure functions of their input; tables are built at compile time.

/// Byte table for CRC-32C (reflected polynomial 0x82f63b78).
const CRC32C: [u32; 256] = {
    let mut t = [0u32; 256];
    let mut i = 0;
    while i < 256 {
        let mut c = i as u32;
        let mut k = 0;
        while k < 8 {
            c = if c & 1 != 0 {
                0x82f6_3b78 ^ (c >> 1)
            } else {
                c >> 1
            };
            k += 1;
        }
        t[i] = c;
        i += 1;
    }
    t
};

/// Byte table for MSB-first CRC-32 (polynomial 0x04c11db7).
const CRC32_BE: [u32; 256] = {
    let mut t = [0u32; 256];
    let mut i = 0;
    while i < 256 {
        let mut c = (i as u32) << 24;
        let mut k = 0;
        while k < 8 {
            c = if c & 0x8000_0000 != 0 {
                (c << 1) ^ 0x04c1_1db7
            } else {
                c << 1
            };
            k += 1;
        }
        t[i] = c;
        i += 1;
    }
    t
};

/// Continues a raw CRC-32C (no inversions) from `crc` over `data`.
///
/// A plain byte-at-a-time table loop: journals are megabytes, and this is
/// fast enough even in unoptimised test builds (fancier slicing is not).
pub(crate) fn crc32c(mut crc: u32, data: &[u8]) -> u32 {
    for &b in data {
        crc = CRC32C[((crc ^ u32::from(b)) & 0xff) as usize] ^ (crc >> 8);
    }
    crc
}

/// Continues the kernel's `crc32_be` from `crc` over `data`.
pub(crate) fn crc32_be(mut crc: u32, data: &[u8]) -> u32 {
    for &b in data {
        crc = (crc << 8) ^ CRC32_BE[(((crc >> 24) ^ u32::from(b)) & 0xff) as usize];
    }
    crc
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn standard_check_values() {
        // CRC-32C check value (with the usual inversions around the raw CRC).
        assert_eq!(!crc32c(!0, b"123456789"), 0xe306_9283);
        // CRC-32/MPEG-2 = crc32_be with seed !0 and no final xor.
        assert_eq!(crc32_be(!0, b"123456789"), 0x0376_e6e7);
    }

    #[test]
    fn crc32c_continues_across_pieces() {
        let data: Vec<u8> = (0..1000u32).map(|i| (i * 7 + 3) as u8).collect();
        for len in [0, 1, 7, 8, 9, 63, 1000] {
            let (a, b) = data[..len].split_at(len / 3);
            assert_eq!(crc32c(crc32c(5, a), b), crc32c(5, &data[..len]));
        }
    }
}
