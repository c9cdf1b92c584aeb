//! Locating an inode and mapping its logical blocks to disk blocks.
//!
//! Used for the journal inode: the group descriptor gives the inode table,
//! the inode's `i_block` holds either an extent tree (ext4) or the classic
//! direct/indirect block pointers (ext3). The result is a compact list of
//! runs, so even a 40 GiB journal costs a few bytes per extent.
//!
//! Every block number is checked to lie inside the filesystem, extent trees
//! are walked with a depth cap and a node budget, and index and leaf entries
//! must be strictly increasing, so a hostile tree can neither loop nor blow
//! up. This module reads through `rescue_io` and must never write.

use rescue_io::{BlockRead, Error, Result};

use crate::bytes::{le16, le32};
use crate::superblock::{Superblock, INCOMPAT_64BIT, INCOMPAT_META_BG};

const EXTENT_MAGIC: u16 = 0xf30a;
/// The kernel's limit (`EXT4_MAX_EXTENT_DEPTH`).
const MAX_EXTENT_DEPTH: u16 = 5;
/// Largest initialised extent; longer lengths mark uninitialised extents.
const EXT_INIT_MAX_LEN: u32 = 32768;

pub(crate) const INODE_FLAG_EXTENTS: u32 = 0x0008_0000;
const INODE_FLAG_ENCRYPT: u32 = 0x0000_0800;
const S_IFMT: u16 = 0xf000;
const S_IFREG: u16 = 0x8000;

/// One contiguous piece of a file: `len` blocks from `logical` live at `physical`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct Run {
    pub logical: u64,
    pub physical: u64,
    pub len: u64,
}

/// Logical-to-physical map of a file covering blocks `0 .. len_in_blocks`
/// without holes.
#[derive(Debug, Clone, Default)]
pub(crate) struct FileMap {
    runs: Vec<Run>,
    /// `(physical, len)` of every run, sorted by physical block.
    by_physical: Vec<(u64, u64)>,
    len_in_blocks: u64,
}

impl FileMap {
    /// Physical block of logical block `logical`, if mapped.
    pub(crate) fn physical(&self, logical: u64) -> Option<u64> {
        if logical >= self.len_in_blocks {
            return None;
        }
        let i = self.runs.partition_point(|r| r.logical <= logical);
        let run = self.runs.get(i.checked_sub(1)?)?;
        let delta = logical - run.logical;
        (delta < run.len).then(|| run.physical + delta)
    }

    /// Number of blocks mapped (the file length in blocks).
    pub(crate) fn len_in_blocks(&self) -> u64 {
        self.len_in_blocks
    }

    /// Whether physical block `block` belongs to the file.
    pub(crate) fn contains_physical(&self, block: u64) -> bool {
        let i = self.by_physical.partition_point(|&(p, _)| p <= block);
        i.checked_sub(1)
            .and_then(|i| self.by_physical.get(i))
            .is_some_and(|&(p, len)| block - p < len)
    }

    /// Builds a map from runs, merging neighbours and checking that they
    /// cover `0 .. len_in_blocks` exactly.
    fn from_runs(mut runs: Vec<Run>, len_in_blocks: u64) -> Result<FileMap, String> {
        runs.sort_by_key(|r| r.logical);
        let mut merged: Vec<Run> = Vec::with_capacity(runs.len());
        let mut next = 0u64;
        for r in runs {
            if r.logical != next {
                return Err(if r.logical > next {
                    format!("logical block {next} is not mapped (a hole)")
                } else {
                    format!("logical block {} is mapped twice", r.logical)
                });
            }
            next = r.logical + r.len;
            match merged.last_mut() {
                Some(last) if last.physical + last.len == r.physical => last.len += r.len,
                _ => merged.push(r),
            }
        }
        if next < len_in_blocks {
            return Err(format!("logical block {next} is not mapped (a hole)"));
        }
        let mut by_physical: Vec<(u64, u64)> = merged.iter().map(|r| (r.physical, r.len)).collect();
        by_physical.sort_unstable();
        // Two logical blocks sharing a disk block would make the log
        // overwrite itself; e2fsck calls such blocks multiply-claimed.
        for w in by_physical.windows(2) {
            if w[0].0 + w[0].1 > w[1].0 {
                return Err(format!("disk block {} is mapped twice", w[1].0));
            }
        }
        Ok(FileMap {
            runs: merged,
            by_physical,
            len_in_blocks,
        })
    }
}

/// The fields of an inode that mapping needs.
#[derive(Debug, Clone)]
pub(crate) struct InodeInfo {
    pub mode: u16,
    pub links_count: u16,
    pub flags: u32,
    pub size_in_bytes: u64,
    /// The 60 bytes of `i_block`.
    pub i_block: [u8; 60],
}

impl InodeInfo {
    fn parse(raw: &[u8]) -> InodeInfo {
        let mut i_block = [0u8; 60];
        if let Some(src) = raw.get(40..100) {
            i_block.copy_from_slice(src);
        }
        InodeInfo {
            mode: le16(raw, 0),
            links_count: le16(raw, 26),
            flags: le32(raw, 32),
            size_in_bytes: u64::from(le32(raw, 4)) | (u64::from(le32(raw, 108)) << 32),
            i_block,
        }
    }

    /// A synthetic inode made from the superblock's `s_jnl_blocks` backup.
    pub(crate) fn from_journal_backup(sb: &Superblock) -> InodeInfo {
        let mut i_block = [0u8; 60];
        for (i, w) in sb.jnl_blocks[..15].iter().enumerate() {
            i_block[4 * i..4 * i + 4].copy_from_slice(&w.to_le_bytes());
        }
        // The backup does not record the inode flags; an extent header is
        // recognisable by its magic, exactly as ext4 lays it out in i_block.
        let flags = if le16(&i_block, 0) == EXTENT_MAGIC {
            INODE_FLAG_EXTENTS
        } else {
            0
        };
        InodeInfo {
            mode: S_IFREG | 0o600,
            links_count: 1,
            flags,
            size_in_bytes: u64::from(sb.jnl_blocks[16]) | (u64::from(sb.jnl_blocks[15]) << 32),
            i_block,
        }
    }

    /// Why this inode cannot be a journal, if it cannot (e2fsck's checks).
    pub(crate) fn journal_defect(&self, block_size: u32) -> Option<String> {
        if self.links_count == 0 {
            return Some("it has no links (deleted)".into());
        }
        if self.mode & S_IFMT != S_IFREG {
            return Some(format!("it is not a regular file (mode {:#o})", self.mode));
        }
        if self.flags & INODE_FLAG_ENCRYPT != 0 {
            return Some("it is marked encrypted".into());
        }
        let blocks = self.size_in_bytes / u64::from(block_size);
        if blocks < crate::journal::MIN_JOURNAL_BLOCKS {
            return Some(format!(
                "its size ({} bytes) is below the jbd2 minimum of {} blocks",
                self.size_in_bytes,
                crate::journal::MIN_JOURNAL_BLOCKS
            ));
        }
        None
    }
}

/// Byte offset of group descriptor `group`.
fn group_desc_offset(sb: &Superblock, group: u64) -> Option<u64> {
    let bs = u64::from(sb.block_size);
    let desc_size = u64::from(sb.desc_size);
    let per_block = bs / desc_size;
    let desc_block_index = group / per_block;
    let first_meta_bg = u64::from(sb.first_meta_bg);
    let block = if sb.incompat & INCOMPAT_META_BG != 0 && desc_block_index >= first_meta_bg {
        // meta_bg: the descriptor block of a meta group lives in the first
        // group of that meta group, right after its superblock backup.
        let first_group = desc_block_index.checked_mul(per_block)?;
        let group_start = first_group
            .checked_mul(u64::from(sb.blocks_per_group))?
            .checked_add(u64::from(sb.first_data_block))?;
        group_start + u64::from(sb.group_has_super(first_group))
    } else {
        u64::from(sb.first_data_block) + 1 + desc_block_index
    };
    if block >= sb.blocks_count {
        return None;
    }
    Some(block * bs + (group % per_block) * desc_size)
}

/// Reads inode number `ino` (1-based).
pub(crate) fn read_inode(dev: &dyn BlockRead, sb: &Superblock, ino: u32) -> Result<InodeInfo> {
    let op = format!("reading inode {ino}");
    let corrupt = |detail: String| Error::corrupt(op.clone(), detail).with_path(dev.describe());
    let ipg = u64::from(sb.inodes_per_group);
    if ino == 0 || u64::from(ino) > sb.group_count * ipg {
        return Err(corrupt(format!(
            "inode number {ino} is outside 1..={}",
            sb.group_count * ipg
        )));
    }
    let group = u64::from(ino - 1) / ipg;
    let index = u64::from(ino - 1) % ipg;
    let desc_off = group_desc_offset(sb, group).ok_or_else(|| {
        corrupt(format!(
            "the descriptor of block group {group} lies beyond the end of the filesystem"
        ))
    })?;
    let mut desc = vec![0u8; sb.desc_size as usize];
    dev.read_exact_at(desc_off, &mut desc)?;
    let mut table = u64::from(le32(&desc, 8));
    if sb.incompat & INCOMPAT_64BIT != 0 && sb.desc_size >= 64 {
        table |= u64::from(le32(&desc, 0x28)) << 32;
    }
    let table_blocks = (ipg * u64::from(sb.inode_size)).div_ceil(u64::from(sb.block_size));
    if table == 0
        || table
            .checked_add(table_blocks)
            .is_none_or(|end| end > sb.blocks_count)
    {
        return Err(corrupt(format!(
            "block group {group}'s inode table at block {table} (descriptor at offset {desc_off:#x}) \
             is outside the filesystem"
        )));
    }
    let offset = table * u64::from(sb.block_size) + index * u64::from(sb.inode_size);
    let mut raw = vec![0u8; sb.inode_size as usize];
    dev.read_exact_at(offset, &mut raw)?;
    Ok(InodeInfo::parse(&raw))
}

/// Maps logical blocks `0 .. len_in_blocks` of `inode`.
///
/// Fails with a description of the defect (hole, block outside the
/// filesystem, malformed tree). Reads at most the tree's index/indirect
/// blocks, never file data.
pub(crate) fn map_blocks(
    dev: &dyn BlockRead,
    sb: &Superblock,
    inode: &InodeInfo,
    len_in_blocks: u64,
) -> Result<FileMap, MapError> {
    let mut runs = Vec::new();
    if inode.flags & INODE_FLAG_EXTENTS != 0 {
        let mut walker = ExtentWalker {
            dev,
            sb,
            len_in_blocks,
            runs: &mut runs,
            // A tree covering `len_in_blocks` blocks needs at most one leaf
            // per extent plus its index nodes; anything beyond is hostile.
            node_budget: len_in_blocks.saturating_add(64),
        };
        walker.node(&inode.i_block, MAX_EXTENT_DEPTH, 0, u64::from(u32::MAX) + 1)?;
    } else {
        map_indirect(dev, sb, &inode.i_block, len_in_blocks, &mut runs)?;
    }
    FileMap::from_runs(runs, len_in_blocks).map_err(MapError::Corrupt)
}

/// Why a block map could not be built: corrupt metadata or an I/O error.
#[derive(Debug)]
pub(crate) enum MapError {
    Corrupt(String),
    Io(Error),
}

impl From<Error> for MapError {
    fn from(e: Error) -> Self {
        MapError::Io(e)
    }
}

struct ExtentWalker<'a> {
    dev: &'a dyn BlockRead,
    sb: &'a Superblock,
    len_in_blocks: u64,
    runs: &'a mut Vec<Run>,
    node_budget: u64,
}

impl ExtentWalker<'_> {
    /// Walks one node; its entries must cover logical blocks inside
    /// `lo .. hi` (the range the parent index gave it). `depth_limit` is the
    /// depth this node may claim at most.
    fn node(&mut self, node: &[u8], depth_limit: u16, lo: u64, hi: u64) -> Result<(), MapError> {
        self.node_budget = self
            .node_budget
            .checked_sub(1)
            .ok_or_else(|| MapError::Corrupt("the extent tree has too many nodes".into()))?;
        if le16(node, 0) != EXTENT_MAGIC {
            return Err(MapError::Corrupt(format!(
                "bad extent header magic {:#06x}",
                le16(node, 0)
            )));
        }
        let entries = u64::from(le16(node, 2));
        let max = u64::from(le16(node, 4));
        let depth = le16(node, 6);
        let capacity = (node.len() as u64 - 12) / 12;
        if max > capacity || entries > max {
            return Err(MapError::Corrupt(format!(
                "extent node claims {entries} entries of at most {max}, room for {capacity}"
            )));
        }
        if depth > depth_limit {
            return Err(MapError::Corrupt(format!(
                "extent node depth {depth} where at most {depth_limit} is possible"
            )));
        }
        let mut prev_start: Option<u64> = None;
        for i in 0..entries as usize {
            let e = &node[12 + 12 * i..24 + 12 * i];
            let start = u64::from(le32(e, 0));
            if prev_start.is_some_and(|p| start <= p) || start < lo || start >= hi {
                return Err(MapError::Corrupt(format!(
                    "extent entries out of order at logical block {start}"
                )));
            }
            prev_start = Some(start);
            // Nothing past the part of the file we need.
            if start >= self.len_in_blocks {
                break;
            }
            if depth == 0 {
                let raw_len = u32::from(le16(e, 4));
                // Uninitialised extents (length above 32768) still map their
                // blocks; jbd2 reads them like any other.
                let len = u64::from(if raw_len > EXT_INIT_MAX_LEN {
                    raw_len - EXT_INIT_MAX_LEN
                } else {
                    raw_len
                });
                let physical = u64::from(le32(e, 8)) | (u64::from(le16(e, 6)) << 32);
                if len == 0 {
                    return Err(MapError::Corrupt(format!(
                        "zero-length extent at logical block {start}"
                    )));
                }
                if start + len > hi {
                    return Err(MapError::Corrupt(format!(
                        "extent at logical block {start} overlaps the next one"
                    )));
                }
                check_range(self.sb, physical, len)?;
                let len = len.min(self.len_in_blocks - start);
                self.runs.push(Run {
                    logical: start,
                    physical,
                    len,
                });
            } else {
                let child = u64::from(le32(e, 4)) | (u64::from(le16(e, 8)) << 32);
                check_range(self.sb, child, 1)?;
                // The child covers up to the next index entry's start.
                let next_start = if i + 1 < entries as usize {
                    u64::from(le32(&node[24 + 12 * i..], 0))
                } else {
                    hi
                };
                let child_hi = next_start.clamp(start + 1, hi);
                let mut buf = vec![0u8; self.sb.block_size as usize];
                self.dev
                    .read_exact_at(child * u64::from(self.sb.block_size), &mut buf)?;
                self.node(&buf, depth - 1, start, child_hi)?;
            }
        }
        Ok(())
    }
}

/// Checks that blocks `start .. start + len` lie inside the filesystem and
/// not on the primary superblock.
fn check_range(sb: &Superblock, start: u64, len: u64) -> Result<(), MapError> {
    let inside = start > u64::from(sb.first_data_block)
        && start
            .checked_add(len)
            .is_some_and(|end| end <= sb.blocks_count);
    if inside {
        Ok(())
    } else {
        Err(MapError::Corrupt(format!(
            "blocks {start}..+{len} lie outside the filesystem's data area (1..{})",
            sb.blocks_count
        )))
    }
}

/// ext2/3 block pointers: 12 direct, then single, double and triple
/// indirect blocks of little-endian u32 pointers.
fn map_indirect(
    dev: &dyn BlockRead,
    sb: &Superblock,
    i_block: &[u8; 60],
    len_in_blocks: u64,
    runs: &mut Vec<Run>,
) -> Result<(), MapError> {
    let per_block = u64::from(sb.block_size / 4);
    let mut logical = 0u64;
    for i in 0..12 {
        if logical >= len_in_blocks {
            return Ok(());
        }
        push_block(sb, runs, logical, u64::from(le32(i_block, 4 * i)))?;
        logical += 1;
    }
    for (level, slot) in [(1u32, 12usize), (2, 13), (3, 14)] {
        if logical >= len_in_blocks {
            return Ok(());
        }
        let ptr = u64::from(le32(i_block, 4 * slot));
        indirect(
            dev,
            sb,
            ptr,
            level,
            &mut logical,
            len_in_blocks,
            per_block,
            runs,
        )?;
    }
    if logical < len_in_blocks {
        return Err(MapError::Corrupt(format!(
            "the file is larger than the indirect block scheme can map ({logical} blocks)"
        )));
    }
    Ok(())
}

#[allow(clippy::too_many_arguments)]
fn indirect(
    dev: &dyn BlockRead,
    sb: &Superblock,
    ptr: u64,
    level: u32,
    logical: &mut u64,
    len_in_blocks: u64,
    per_block: u64,
    runs: &mut Vec<Run>,
) -> Result<(), MapError> {
    if ptr == 0 {
        return Err(MapError::Corrupt(format!(
            "logical block {logical} is not mapped (a hole in the indirect blocks)"
        )));
    }
    check_range(sb, ptr, 1)?;
    let mut buf = vec![0u8; sb.block_size as usize];
    dev.read_exact_at(ptr * u64::from(sb.block_size), &mut buf)?;
    for i in 0..per_block as usize {
        if *logical >= len_in_blocks {
            return Ok(());
        }
        let child = u64::from(le32(&buf, 4 * i));
        if level == 1 {
            push_block(sb, runs, *logical, child)?;
            *logical += 1;
        } else {
            indirect(
                dev,
                sb,
                child,
                level - 1,
                logical,
                len_in_blocks,
                per_block,
                runs,
            )?;
        }
    }
    Ok(())
}

fn push_block(
    sb: &Superblock,
    runs: &mut Vec<Run>,
    logical: u64,
    physical: u64,
) -> Result<(), MapError> {
    if physical == 0 {
        return Err(MapError::Corrupt(format!(
            "logical block {logical} is not mapped (a hole)"
        )));
    }
    check_range(sb, physical, 1)?;
    match runs.last_mut() {
        Some(last)
            if last.logical + last.len == logical && last.physical + last.len == physical =>
        {
            last.len += 1
        }
        _ => runs.push(Run {
            logical,
            physical,
            len: 1,
        }),
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn file_map_lookup_and_holes() {
        let runs = vec![
            Run {
                logical: 4,
                physical: 100,
                len: 4,
            },
            Run {
                logical: 0,
                physical: 50,
                len: 4,
            },
        ];
        let m = FileMap::from_runs(runs, 8).unwrap();
        assert_eq!(m.physical(0), Some(50));
        assert_eq!(m.physical(3), Some(53));
        assert_eq!(m.physical(4), Some(100));
        assert_eq!(m.physical(7), Some(103));
        assert_eq!(m.physical(8), None);
        assert!(m.contains_physical(101));
        assert!(!m.contains_physical(54));
        let hole = vec![Run {
            logical: 1,
            physical: 5,
            len: 3,
        }];
        assert!(FileMap::from_runs(hole, 4).unwrap_err().contains("hole"));
        let short = vec![Run {
            logical: 0,
            physical: 5,
            len: 3,
        }];
        assert!(FileMap::from_runs(short, 4).unwrap_err().contains("hole"));
        let twice = vec![
            Run {
                logical: 0,
                physical: 5,
                len: 3,
            },
            Run {
                logical: 2,
                physical: 9,
                len: 3,
            },
        ];
        assert!(FileMap::from_runs(twice, 4).unwrap_err().contains("twice"));
    }
}
