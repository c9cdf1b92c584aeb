//! The ext2/3/4 superblock: the fields journal replay needs, validated.
//!
//! Only geometry and journal fields are decoded. Everything is checked
//! against the device size before any other structure is located from it.
//! This module reads through `rescue_io` and must never write.

use rescue_io::{BlockRead, Error, ErrorKind, Result};

use crate::bytes::{le16, le32, put};
use crate::crc::crc32c;

/// Byte offset of the primary superblock.
pub(crate) const SUPERBLOCK_OFFSET: u64 = 1024;
/// Size of the superblock structure.
pub(crate) const SUPERBLOCK_SIZE: usize = 1024;

const MAGIC: u16 = 0xef53;

pub(crate) const COMPAT_HAS_JOURNAL: u32 = 0x4;
pub(crate) const COMPAT_SPARSE_SUPER2: u32 = 0x200;
pub(crate) const INCOMPAT_RECOVER: u32 = 0x4;
pub(crate) const INCOMPAT_JOURNAL_DEV: u32 = 0x8;
pub(crate) const INCOMPAT_META_BG: u32 = 0x10;
pub(crate) const INCOMPAT_64BIT: u32 = 0x80;
pub(crate) const RO_COMPAT_SPARSE_SUPER: u32 = 0x1;
pub(crate) const RO_COMPAT_METADATA_CSUM: u32 = 0x400;

/// `s_state` bits.
pub(crate) const STATE_VALID: u16 = 0x1;
pub(crate) const STATE_ERROR: u16 = 0x2;

/// `s_jnl_backup_type` value meaning `s_jnl_blocks` holds the journal
/// inode's `i_block` array and size.
pub(crate) const JNL_BACKUP_BLOCKS: u8 = 1;

// Field offsets inside the superblock (see the kernel's `struct ext4_super_block`).
const OFF_INODES_COUNT: usize = 0x00;
const OFF_BLOCKS_COUNT_LO: usize = 0x04;
const OFF_FIRST_DATA_BLOCK: usize = 0x14;
const OFF_LOG_BLOCK_SIZE: usize = 0x18;
const OFF_BLOCKS_PER_GROUP: usize = 0x20;
const OFF_INODES_PER_GROUP: usize = 0x28;
const OFF_MAGIC: usize = 0x38;
pub(crate) const OFF_STATE: usize = 0x3a;
const OFF_REV_LEVEL: usize = 0x4c;
const OFF_INODE_SIZE: usize = 0x58;
const OFF_FEATURE_COMPAT: usize = 0x5c;
pub(crate) const OFF_FEATURE_INCOMPAT: usize = 0x60;
const OFF_FEATURE_RO_COMPAT: usize = 0x64;
const OFF_JOURNAL_UUID: usize = 0xd0;
const OFF_JOURNAL_INUM: usize = 0xe0;
const OFF_JOURNAL_DEV: usize = 0xe4;
const OFF_JNL_BACKUP_TYPE: usize = 0xfd;
const OFF_DESC_SIZE: usize = 0xfe;
const OFF_FIRST_META_BG: usize = 0x104;
const OFF_JNL_BLOCKS: usize = 0x10c;
const OFF_BLOCKS_COUNT_HI: usize = 0x150;
const OFF_CHECKSUM_TYPE: usize = 0x175;
const OFF_BACKUP_BGS: usize = 0x24c;
pub(crate) const OFF_CHECKSUM: usize = 0x3fc;

/// A validated superblock.
#[derive(Debug, Clone)]
pub(crate) struct Superblock {
    pub block_size: u32,
    pub blocks_count: u64,
    pub first_data_block: u32,
    pub blocks_per_group: u32,
    pub inodes_per_group: u32,
    pub inode_size: u32,
    /// Size of one group descriptor (32 without the 64bit feature).
    pub desc_size: u32,
    pub group_count: u64,
    pub compat: u32,
    pub incompat: u32,
    pub ro_compat: u32,
    pub journal_inum: u32,
    pub journal_dev: u32,
    pub journal_uuid: [u8; 16],
    pub jnl_backup_type: u8,
    /// `s_jnl_blocks`: 15 words of `i_block`, then `i_size_high`, `i_size`.
    pub jnl_blocks: [u32; 17],
    pub first_meta_bg: u32,
    pub backup_bgs: [u32; 2],
}

impl Superblock {
    /// Reads and validates the primary superblock of `dev`.
    pub(crate) fn read(dev: &dyn BlockRead) -> Result<Superblock> {
        let mut raw = vec![0u8; SUPERBLOCK_SIZE];
        if dev.size_in_bytes() < SUPERBLOCK_OFFSET + SUPERBLOCK_SIZE as u64 {
            return Err(Error::new(ErrorKind::Truncated, "reading ext4 superblock")
                .with_path(dev.describe())
                .with_offset(SUPERBLOCK_OFFSET)
                .with_detail(
                    "the volume is smaller than 2 KiB: there is no ext2/3/4 filesystem in it",
                ));
        }
        dev.read_exact_at(SUPERBLOCK_OFFSET, &mut raw)?;
        Self::parse(raw, dev.size_in_bytes()).map_err(|detail| {
            Error::corrupt("reading ext4 superblock", detail)
                .with_path(dev.describe())
                .with_offset(SUPERBLOCK_OFFSET)
        })
    }

    /// Decodes and checks `raw` (1024 bytes) for a device of `device_size` bytes.
    pub(crate) fn parse(raw: Vec<u8>, device_size: u64) -> Result<Superblock, String> {
        if raw.len() != SUPERBLOCK_SIZE {
            return Err(format!("superblock is {} bytes, expected 1024", raw.len()));
        }
        let magic = le16(&raw, OFF_MAGIC);
        if magic != MAGIC {
            return Err(format!(
                "bad magic {magic:#06x} (expected 0xef53): this is not an ext2/3/4 filesystem"
            ));
        }
        let log_block_size = le32(&raw, OFF_LOG_BLOCK_SIZE);
        // ext4 supports 1 KiB .. 64 KiB blocks.
        if log_block_size > 6 {
            return Err(format!(
                "s_log_block_size {log_block_size} gives a block size above 64 KiB"
            ));
        }
        let block_size = 1024u32 << log_block_size;
        let compat = le32(&raw, OFF_FEATURE_COMPAT);
        let incompat = le32(&raw, OFF_FEATURE_INCOMPAT);
        let ro_compat = le32(&raw, OFF_FEATURE_RO_COMPAT);
        let mut blocks_count = u64::from(le32(&raw, OFF_BLOCKS_COUNT_LO));
        if incompat & INCOMPAT_64BIT != 0 {
            blocks_count |= u64::from(le32(&raw, OFF_BLOCKS_COUNT_HI)) << 32;
        }
        let first_data_block = le32(&raw, OFF_FIRST_DATA_BLOCK);
        if first_data_block > 1 || u64::from(first_data_block) >= blocks_count {
            return Err(format!(
                "s_first_data_block {first_data_block} is impossible for {blocks_count} blocks"
            ));
        }
        let fs_bytes = blocks_count.checked_mul(u64::from(block_size));
        if fs_bytes.is_none_or(|b| b > device_size) {
            return Err(format!(
                "the filesystem claims {blocks_count} blocks of {block_size} bytes but the \
                 volume holds only {device_size} bytes: the image is truncated"
            ));
        }
        let bits_per_block = block_size * 8;
        let blocks_per_group = le32(&raw, OFF_BLOCKS_PER_GROUP);
        if blocks_per_group == 0 || blocks_per_group > bits_per_block {
            return Err(format!(
                "s_blocks_per_group {blocks_per_group} is not in 1..={bits_per_block}"
            ));
        }
        let inodes_per_group = le32(&raw, OFF_INODES_PER_GROUP);
        if inodes_per_group == 0 || inodes_per_group > bits_per_block {
            return Err(format!(
                "s_inodes_per_group {inodes_per_group} is not in 1..={bits_per_block}"
            ));
        }
        let inode_size = if le32(&raw, OFF_REV_LEVEL) == 0 {
            128
        } else {
            u32::from(le16(&raw, OFF_INODE_SIZE))
        };
        if inode_size < 128 || !inode_size.is_power_of_two() || inode_size > block_size {
            return Err(format!("s_inode_size {inode_size} is invalid"));
        }
        let desc_size = if incompat & INCOMPAT_64BIT != 0 {
            let d = u32::from(le16(&raw, OFF_DESC_SIZE));
            if !(64..=1024).contains(&d) || !d.is_power_of_two() || d > block_size {
                return Err(format!(
                    "s_desc_size {d} is invalid for a 64bit filesystem (must be a power of two, 64..1024)"
                ));
            }
            d
        } else {
            32
        };
        let group_count =
            (blocks_count - u64::from(first_data_block)).div_ceil(u64::from(blocks_per_group));
        let inodes_count = u64::from(le32(&raw, OFF_INODES_COUNT));
        if inodes_count > group_count * u64::from(inodes_per_group) {
            return Err(format!(
                "s_inodes_count {inodes_count} exceeds {group_count} groups of {inodes_per_group} inodes"
            ));
        }
        if ro_compat & RO_COMPAT_METADATA_CSUM != 0 {
            let checksum_type = raw[OFF_CHECKSUM_TYPE];
            if checksum_type != 1 {
                return Err(format!(
                    "s_checksum_type {checksum_type} is unknown (only 1, crc32c, exists)"
                ));
            }
            let stored = le32(&raw, OFF_CHECKSUM);
            let computed = checksum(&raw);
            if stored != computed {
                return Err(format!(
                    "superblock checksum mismatch (stored {stored:#010x}, computed {computed:#010x}); \
                     the kernel refuses such a filesystem: run `e2fsck` on a copy, it can use a backup superblock"
                ));
            }
        }
        let mut journal_uuid = [0u8; 16];
        journal_uuid.copy_from_slice(&raw[OFF_JOURNAL_UUID..OFF_JOURNAL_UUID + 16]);
        let mut jnl_blocks = [0u32; 17];
        for (i, w) in jnl_blocks.iter_mut().enumerate() {
            *w = le32(&raw, OFF_JNL_BLOCKS + 4 * i);
        }
        Ok(Superblock {
            block_size,
            blocks_count,
            first_data_block,
            blocks_per_group,
            inodes_per_group,
            inode_size,
            desc_size,
            group_count,
            compat,
            incompat,
            ro_compat,
            journal_inum: le32(&raw, OFF_JOURNAL_INUM),
            journal_dev: le32(&raw, OFF_JOURNAL_DEV),
            journal_uuid,
            jnl_backup_type: raw[OFF_JNL_BACKUP_TYPE],
            jnl_blocks,
            first_meta_bg: le32(&raw, OFF_FIRST_META_BG),
            backup_bgs: [le32(&raw, OFF_BACKUP_BGS), le32(&raw, OFF_BACKUP_BGS + 4)],
        })
    }

    /// The journal needs replaying before the filesystem is consistent.
    pub(crate) fn needs_recovery(&self) -> bool {
        self.incompat & INCOMPAT_RECOVER != 0
    }

    /// The filesystem has a journal (internal or external).
    pub(crate) fn has_journal(&self) -> bool {
        self.compat & COMPAT_HAS_JOURNAL != 0
    }

    /// Whether block group `group` holds a superblock backup (and so, with
    /// meta_bg, where its descriptor block sits).
    pub(crate) fn group_has_super(&self, group: u64) -> bool {
        if group == 0 {
            return true;
        }
        if self.compat & COMPAT_SPARSE_SUPER2 != 0 {
            return self.backup_bgs.iter().any(|&b| u64::from(b) == group);
        }
        if group <= 1 || self.ro_compat & RO_COMPAT_SPARSE_SUPER == 0 {
            return true;
        }
        if group & 1 == 0 {
            return false;
        }
        [3u64, 5, 7].iter().any(|&base| is_power_of(group, base))
    }

    /// Block number of the block holding the primary superblock, and the
    /// superblock's offset inside it.
    pub(crate) fn superblock_location(&self) -> (u64, usize) {
        let bs = u64::from(self.block_size);
        (SUPERBLOCK_OFFSET / bs, (SUPERBLOCK_OFFSET % bs) as usize)
    }
}

fn is_power_of(mut n: u64, base: u64) -> bool {
    while n > 1 && n.is_multiple_of(base) {
        n /= base;
    }
    n == 1
}

/// The ext4 superblock checksum: raw CRC-32C seeded with `!0` over the
/// bytes before `s_checksum`.
pub(crate) fn checksum(raw: &[u8]) -> u32 {
    crc32c(!0, raw.get(..OFF_CHECKSUM).unwrap_or(raw))
}

/// Recomputes `s_checksum` of a 1024-byte superblock if metadata_csum is on.
pub(crate) fn update_checksum(raw: &mut [u8]) {
    if le32(raw, OFF_FEATURE_RO_COMPAT) & RO_COMPAT_METADATA_CSUM != 0 {
        let c = checksum(raw);
        put(raw, OFF_CHECKSUM, &c.to_le_bytes());
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sparse_super_groups() {
        let mut raw = vec![0u8; 1024];
        put(&mut raw, OFF_MAGIC, &MAGIC.to_le_bytes());
        put(&mut raw, OFF_BLOCKS_COUNT_LO, &100_000u32.to_le_bytes());
        put(&mut raw, OFF_BLOCKS_PER_GROUP, &8192u32.to_le_bytes());
        put(&mut raw, OFF_INODES_PER_GROUP, &2048u32.to_le_bytes());
        put(
            &mut raw,
            OFF_FEATURE_RO_COMPAT,
            &RO_COMPAT_SPARSE_SUPER.to_le_bytes(),
        );
        let sb = Superblock::parse(raw, 1 << 30).unwrap();
        let with: Vec<u64> = (0..60).filter(|&g| sb.group_has_super(g)).collect();
        assert_eq!(with, vec![0, 1, 3, 5, 7, 9, 25, 27, 49]);
        assert_eq!(sb.group_count, 13);
    }

    #[test]
    fn rejects_truncated_and_garbage() {
        let mut raw = vec![0u8; 1024];
        assert!(Superblock::parse(raw.clone(), 1 << 30)
            .unwrap_err()
            .contains("magic"));
        put(&mut raw, OFF_MAGIC, &MAGIC.to_le_bytes());
        put(&mut raw, OFF_BLOCKS_COUNT_LO, &100_000u32.to_le_bytes());
        put(&mut raw, OFF_BLOCKS_PER_GROUP, &8192u32.to_le_bytes());
        put(&mut raw, OFF_INODES_PER_GROUP, &2048u32.to_le_bytes());
        assert!(Superblock::parse(raw.clone(), 1 << 20)
            .unwrap_err()
            .contains("truncated"));
        put(&mut raw, OFF_LOG_BLOCK_SIZE, &30u32.to_le_bytes());
        assert!(Superblock::parse(raw, 1 << 40)
            .unwrap_err()
            .contains("64 KiB"));
    }
}
