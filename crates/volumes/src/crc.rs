//! The two CRC-32 variants found in volume metadata.
//!
//! GPT uses the standard CRC-32 (IEEE 802.3, reflected, init and final xor
//! `0xffffffff`). LVM2 uses the same polynomial with its own initial value
//! (`0xf597a6cf`) and no final xor. Both are pure functions of their input.

/// Reflected CRC-32 table for polynomial 0xedb88320, built at compile time.
const TABLE: [u32; 256] = {
    let mut table = [0u32; 256];
    let mut i = 0;
    while i < 256 {
        let mut c = i as u32;
        let mut k = 0;
        while k < 8 {
            c = if c & 1 != 0 {
                0xedb8_8320 ^ (c >> 1)
            } else {
                c >> 1
            };
            k += 1;
        }
        table[i] = c;
        i += 1;
    }
    table
};

/// Continues a raw (no pre/post conditioning) reflected CRC-32 over `data`.
pub(crate) fn update(mut crc: u32, data: &[u8]) -> u32 {
    for &b in data {
        crc = TABLE[((crc ^ u32::from(b)) & 0xff) as usize] ^ (crc >> 8);
    }
    crc
}

/// Standard CRC-32 as used by GPT headers and entry arrays.
pub(crate) fn crc32(data: &[u8]) -> u32 {
    !update(0xffff_ffff, data)
}

/// The initial value LVM2 feeds its checksum (`INITIAL_CRC` in lvm2).
pub(crate) const LVM_INITIAL_CRC: u32 = 0xf597_a6cf;

/// LVM2's `calc_crc(INITIAL_CRC, data)`.
pub(crate) fn lvm_crc(data: &[u8]) -> u32 {
    update(LVM_INITIAL_CRC, data)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn standard_check_value() {
        // The CRC-32 "check" value from the CRC catalogue.
        assert_eq!(crc32(b"123456789"), 0xcbf4_3926);
    }

    #[test]
    fn lvm_crc_continues() {
        let whole = lvm_crc(b"hello world");
        let split = update(lvm_crc(b"hello "), b"world");
        assert_eq!(whole, split);
    }
}
