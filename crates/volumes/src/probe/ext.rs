//! ext2/ext3/ext4 superblock (magic 0xEF53 at byte 1024 + 0x38).
//!
//! The type is chosen exactly like blkid: `jbd` for an external journal,
//! `ext4dev` for test filesystems, `ext4` when a feature beyond ext3's set is
//! present, `ext3` with a journal, `ext2` otherwise. The superblock facts
//! (counts, features as `dumpe2fs` names them, state) fill [`ExtInfo`]; a
//! block size exponent out of range leaves them out with a warning.

use rescue_io::Result;

use super::{found, Reader};
use crate::bytes::{array, blkid_label, c_string, le16, le32, le64, span, u8_at, uuid_string};
use crate::{ExtInfo, Probe};

const SUPERBLOCK_OFFSET: u64 = 1024;
const MAGIC: u16 = 0xef53;

const COMPAT_HAS_JOURNAL: u32 = 0x0004;
const INCOMPAT_FILETYPE: u32 = 0x0002;
const INCOMPAT_RECOVER: u32 = 0x0004;
const INCOMPAT_JOURNAL_DEV: u32 = 0x0008;
const INCOMPAT_META_BG: u32 = 0x0010;
const INCOMPAT_64BIT: u32 = 0x0080;
const RO_COMPAT_SPARSE_SUPER: u32 = 0x0001;
const RO_COMPAT_LARGE_FILE: u32 = 0x0002;
const RO_COMPAT_BTREE_DIR: u32 = 0x0004;
const FLAGS_TEST_FILESYS: u32 = 0x0004;

/// Features ext2 and ext3 understand (blkid's `EXT[23]_FEATURE_*_SUPP`).
const EXT2_RO_SUPP: u32 = RO_COMPAT_SPARSE_SUPER | RO_COMPAT_LARGE_FILE | RO_COMPAT_BTREE_DIR;
const EXT2_INCOMPAT_SUPP: u32 = INCOMPAT_FILETYPE | INCOMPAT_META_BG;
const EXT3_RO_SUPP: u32 = EXT2_RO_SUPP;
const EXT3_INCOMPAT_SUPP: u32 = INCOMPAT_FILETYPE | INCOMPAT_RECOVER | INCOMPAT_META_BG;

/// Largest valid `s_log_block_size`: 64 KiB blocks.
const MAX_LOG_BLOCK_SIZE: u32 = 6;

/// Feature names as libe2p prints them (first name wins for aliases).
const COMPAT_NAMES: &[(u32, &str)] = &[
    (0x0001, "dir_prealloc"),
    (0x0002, "imagic_inodes"),
    (0x0004, "has_journal"),
    (0x0008, "ext_attr"),
    (0x0010, "resize_inode"),
    (0x0020, "dir_index"),
    (0x0040, "lazy_bg"),
    (0x0100, "snapshot_bitmap"),
    (0x0200, "sparse_super2"),
    (0x0400, "fast_commit"),
    (0x0800, "stable_inodes"),
    (0x1000, "orphan_file"),
];
const INCOMPAT_NAMES: &[(u32, &str)] = &[
    (0x0001, "compression"),
    (0x0002, "filetype"),
    (0x0004, "needs_recovery"),
    (0x0008, "journal_dev"),
    (0x0010, "meta_bg"),
    (0x0040, "extent"),
    (0x0080, "64bit"),
    (0x0100, "mmp"),
    (0x0200, "flex_bg"),
    (0x0400, "ea_inode"),
    (0x1000, "dirdata"),
    (0x2000, "metadata_csum_seed"),
    (0x4000, "large_dir"),
    (0x8000, "inline_data"),
    (0x10000, "encrypt"),
    (0x20000, "casefold"),
];
const RO_COMPAT_NAMES: &[(u32, &str)] = &[
    (0x0001, "sparse_super"),
    (0x0002, "large_file"),
    (0x0008, "huge_file"),
    (0x0010, "uninit_bg"),
    (0x0020, "dir_nlink"),
    (0x0040, "extra_isize"),
    (0x0100, "quota"),
    (0x0200, "bigalloc"),
    (0x0400, "metadata_csum"),
    (0x0800, "replica"),
    (0x1000, "read-only"),
    (0x2000, "project"),
    (0x4000, "shared_blocks"),
    (0x8000, "verity"),
    (0x10000, "orphan_present"),
];

/// Feature names in `dumpe2fs` order: compat, incompat, ro_compat, each by
/// bit; unknown bits as `FEATURE_C12` like libe2p.
pub(crate) fn feature_names(compat: u32, incompat: u32, ro_compat: u32) -> Vec<String> {
    let mut out = Vec::new();
    for (mask, names, letter) in [
        (compat, COMPAT_NAMES, 'C'),
        (incompat, INCOMPAT_NAMES, 'I'),
        (ro_compat, RO_COMPAT_NAMES, 'R'),
    ] {
        for bit in 0..32u32 {
            let m = 1u32 << bit;
            if mask & m == 0 {
                continue;
            }
            match names.iter().find(|(v, _)| *v == m) {
                Some((_, name)) => out.push((*name).to_string()),
                None => out.push(format!("FEATURE_{letter}{bit}")),
            }
        }
    }
    out
}

/// blkid's choice of type for an ext superblock, or `None` when none of its
/// ext probers accepts the feature set.
fn blkid_type(compat: u32, incompat: u32, ro_compat: u32, flags: u32) -> Option<&'static str> {
    if incompat & INCOMPAT_JOURNAL_DEV != 0 {
        return Some("jbd");
    }
    if flags & FLAGS_TEST_FILESYS != 0 {
        return Some("ext4dev");
    }
    if ro_compat & !EXT3_RO_SUPP != 0 || incompat & !EXT3_INCOMPAT_SUPP != 0 {
        return Some("ext4");
    }
    if compat & COMPAT_HAS_JOURNAL != 0 {
        return Some("ext3");
    }
    if ro_compat & !EXT2_RO_SUPP == 0 && incompat & !EXT2_INCOMPAT_SUPP == 0 {
        return Some("ext2");
    }
    None
}

/// Probes for an ext2/3/4 superblock.
pub(crate) fn probe(r: &mut Reader<'_>, warnings: &mut Vec<String>) -> Result<Option<Probe>> {
    let Some(sb) = r.get(SUPERBLOCK_OFFSET, 1024)? else {
        return Ok(None);
    };
    if le16(&sb, 0x38) != MAGIC {
        return Ok(None);
    }
    let compat = le32(&sb, 0x5c);
    let incompat = le32(&sb, 0x60);
    let ro_compat = le32(&sb, 0x64);
    let flags = le32(&sb, 0x160);
    let Some(fstype) = blkid_type(compat, incompat, ro_compat, flags) else {
        warnings.push(format!(
            "ext superblock at offset {SUPERBLOCK_OFFSET:#x}: the feature set (compat {compat:#x}, incompat {incompat:#x}, ro_compat {ro_compat:#x}) matches no ext variant"
        ));
        return Ok(None);
    };
    let label = if u8_at(&sb, 0x78) != 0 {
        blkid_label(span(&sb, 0x78, 16))
    } else {
        None
    };
    let version = format!("{}.{}", le32(&sb, 0x4c), le16(&sb, 0x3e));
    let mut probe = found(fstype, uuid_string(array(&sb, 0x68)), label, Some(version));
    if fstype == "jbd" {
        return Ok(Some(probe));
    }
    let log_block_size = le32(&sb, 0x18);
    if log_block_size > MAX_LOG_BLOCK_SIZE {
        warnings.push(format!(
            "ext superblock at offset {SUPERBLOCK_OFFSET:#x}: block size exponent {log_block_size} is out of range 0..={MAX_LOG_BLOCK_SIZE}; the superblock is corrupt (e2fsck -b can use a backup superblock)"
        ));
        return Ok(Some(probe));
    }
    let wide = incompat & INCOMPAT_64BIT != 0;
    let with_hi = |lo: u32, hi_off: usize| -> u64 {
        let hi = if wide {
            u64::from(le32(&sb, hi_off))
        } else {
            0
        };
        (hi << 32) | u64::from(lo)
    };
    let state = le16(&sb, 0x3a);
    let error_count = le32(&sb, 0x194);
    let last_mounted = c_string(&sb, 0x88, 64);
    probe.ext = Some(ExtInfo {
        block_size: 1024u32 << log_block_size,
        blocks_count: with_hi(le32(&sb, 0x04), 0x150),
        free_blocks_count: with_hi(le32(&sb, 0x0c), 0x158),
        inodes_count: le32(&sb, 0x00),
        free_inodes_count: le32(&sb, 0x10),
        features: feature_names(compat, incompat, ro_compat),
        clean: state & 1 != 0,
        needs_recovery: incompat & INCOMPAT_RECOVER != 0,
        has_errors: state & 2 != 0 || error_count > 0,
        error_count,
        last_mounted: if last_mounted.is_empty() {
            None
        } else {
            Some(last_mounted)
        },
        reserved_blocks_count: with_hi(le32(&sb, 0x08), 0x154),
        orphan_list_head: le32(&sb, 0xe8),
        first_error: recorded_error(&sb, 0x198, 0x19c, 0x1a0, 0x1a8, 0x1c8),
        last_error: recorded_error(&sb, 0x1cc, 0x1d0, 0x1d8, 0x1e0, 0x1d4),
    });
    Ok(Some(probe))
}

/// An error the kernel recorded in the superblock (`s_first_error_*` or
/// `s_last_error_*`), or `None` when its time field is zero.
fn recorded_error(
    sb: &[u8],
    time_off: usize,
    ino_off: usize,
    block_off: usize,
    func_off: usize,
    line_off: usize,
) -> Option<crate::ExtError> {
    let time = le32(sb, time_off);
    (time != 0).then(|| crate::ExtError {
        time_unix_seconds: time,
        function: c_string(sb, func_off, 32),
        line: le32(sb, line_off),
        inode: le32(sb, ino_off),
        block: le64(sb, block_off),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn types_follow_blkid() {
        // ext2: filetype + sparse_super + large_file only.
        assert_eq!(blkid_type(0x38, 0x2, 0x3, 0), Some("ext2"));
        // ext3: plus has_journal.
        assert_eq!(blkid_type(0x3c, 0x2, 0x3, 0), Some("ext3"));
        // ext4: extents.
        assert_eq!(blkid_type(0x3c, 0x42, 0x3, 0), Some("ext4"));
        // ext4 without a journal is still ext4.
        assert_eq!(blkid_type(0x38, 0x2c2, 0x7b, 0), Some("ext4"));
        // needs_recovery without a journal: no blkid prober accepts it.
        assert_eq!(blkid_type(0x38, 0x6, 0x3, 0), None);
        assert_eq!(blkid_type(0, 0x8, 0, 0), Some("jbd"));
    }

    #[test]
    fn unknown_features_are_named_like_libe2p() {
        assert_eq!(
            feature_names(0x80, 0, 0x4),
            vec!["FEATURE_C7", "FEATURE_R2"]
        );
        assert_eq!(
            feature_names(0x4, 0x40, 0x10),
            vec!["has_journal", "extent", "uninit_bg"]
        );
    }
}
