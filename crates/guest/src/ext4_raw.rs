//! A minimal raw ext2/3/4 inode walker, used only to explain a refusal.
//!
//! When `ext4-view` rejects an inode as corrupt (for example an `i_size` so
//! large that the file would need more than 2^32 blocks), its error does not
//! say which size the inode claims. This walks the path with plain reads of
//! the superblock, group descriptors, inode table and directory blocks to
//! find the first inode on the path whose size is impossible, so the error
//! can name it. Best effort: any inconsistency returns `None`. Every read is
//! bounded; this module never allocates from an on-disk length unchecked and
//! never recurses.

use rescue_io::Device;

use crate::path::GuestPath;

const SUPERBLOCK_START_BYTE: u64 = 1024;
const EXT4_MAGIC: u16 = 0xef53;
const INCOMPAT_64BIT: u32 = 0x80;
const INCOMPAT_INLINE_DATA: u32 = 0x8000;
const EXTENTS_FL: u32 = 0x80000;
const EXTENT_MAGIC: u16 = 0xf30a;
/// Directory blocks scanned per directory.
const MAX_DIR_BLOCKS: usize = 4096;
/// Extent tree depth accepted (ext4 uses at most 5).
const MAX_EXTENT_DEPTH: u16 = 5;
/// Path components walked.
const MAX_COMPONENTS: usize = 256;
/// Extent tree nodes read per directory.
const MAX_EXTENT_NODES: usize = 1024;

struct Sb {
    block_size: u64,
    inodes_per_group: u32,
    inodes_count: u32,
    inode_size: u64,
    first_data_block: u64,
    desc_size: u64,
    is_64bit: bool,
}

fn le16(b: &[u8], at: usize) -> Option<u16> {
    Some(u16::from_le_bytes(b.get(at..at + 2)?.try_into().ok()?))
}

fn le32(b: &[u8], at: usize) -> Option<u32> {
    Some(u32::from_le_bytes(b.get(at..at + 4)?.try_into().ok()?))
}

fn read(device: &Device, start_byte: u64, len: u64) -> Option<Vec<u8>> {
    // Callers pass at most a block (64 KiB) or a superblock.
    if len > 64 * 1024 {
        return None;
    }
    let mut buf = vec![0u8; usize::try_from(len).ok()?];
    device.read_exact_at(start_byte, &mut buf).ok()?;
    Some(buf)
}

fn superblock(device: &Device) -> Option<Sb> {
    let b = read(device, SUPERBLOCK_START_BYTE, 1024)?;
    if le16(&b, 0x38)? != EXT4_MAGIC {
        return None;
    }
    let log = le32(&b, 0x18)?;
    if log > 6 {
        return None;
    }
    let block_size = 1024u64 << log;
    let rev = le32(&b, 0x4c)?;
    let inode_size = if rev == 0 {
        128
    } else {
        u64::from(le16(&b, 0x58)?)
    };
    let incompat = le32(&b, 0x60)?;
    let is_64bit = incompat & INCOMPAT_64BIT != 0;
    let desc_size = if is_64bit {
        u64::from(le16(&b, 0xfe)?)
    } else {
        32
    };
    let inodes_per_group = le32(&b, 0x28)?;
    if incompat & INCOMPAT_INLINE_DATA != 0
        || inodes_per_group == 0
        || !(128..=block_size).contains(&inode_size)
        || !(32..=1024).contains(&desc_size)
    {
        return None;
    }
    Some(Sb {
        block_size,
        inodes_per_group,
        inodes_count: le32(&b, 0x0)?,
        inode_size,
        first_data_block: u64::from(le32(&b, 0x14)?),
        desc_size,
        is_64bit,
    })
}

fn inode(device: &Device, sb: &Sb, ino: u32) -> Option<Vec<u8>> {
    if ino == 0 || ino > sb.inodes_count {
        return None;
    }
    let group = u64::from((ino - 1) / sb.inodes_per_group);
    let index = u64::from((ino - 1) % sb.inodes_per_group);
    let gdt_start = sb
        .first_data_block
        .checked_add(1)?
        .checked_mul(sb.block_size)?;
    let desc = read(
        device,
        gdt_start.checked_add(group.checked_mul(sb.desc_size)?)?,
        sb.desc_size,
    )?;
    let mut table = u64::from(le32(&desc, 0x8)?);
    if sb.is_64bit && sb.desc_size >= 64 {
        table |= u64::from(le32(&desc, 0x28)?) << 32;
    }
    let at = table
        .checked_mul(sb.block_size)?
        .checked_add(index.checked_mul(sb.inode_size)?)?;
    read(device, at, sb.inode_size.min(256))
}

fn size_of(inode: &[u8]) -> Option<u64> {
    Some(u64::from(le32(inode, 0x4)?) | (u64::from(le32(inode, 0x6c)?) << 32))
}

/// Physical data blocks of a directory inode (bounded).
fn blocks(device: &Device, sb: &Sb, inode: &[u8]) -> Option<Vec<u64>> {
    let flags = le32(inode, 0x20)?;
    let i_block = inode.get(0x28..0x28 + 60)?;
    let mut out = Vec::new();
    if flags & EXTENTS_FL == 0 {
        // Block map: the twelve direct blocks are enough for the small
        // directories on a path to a config file.
        for i in 0..12 {
            let b = le32(i_block, i * 4)?;
            if b != 0 {
                out.push(u64::from(b));
            }
        }
        return Some(out);
    }
    // Extent tree, walked with an explicit stack of nodes.
    let mut stack: Vec<(Vec<u8>, u16)> = vec![(i_block.to_vec(), u16::MAX)];
    let mut nodes = 0usize;
    while let Some((node, parent_depth)) = stack.pop() {
        nodes += 1;
        if nodes > MAX_EXTENT_NODES {
            return Some(out);
        }
        if le16(&node, 0)? != EXTENT_MAGIC {
            return None;
        }
        let entries = le16(&node, 2)?;
        let depth = le16(&node, 6)?;
        if depth > MAX_EXTENT_DEPTH
            || (parent_depth != u16::MAX && depth.checked_add(1)? != parent_depth)
        {
            return None;
        }
        for e in 0..usize::from(entries) {
            let at = 12 + e * 12;
            if depth == 0 {
                let len = u64::from(le16(&node, at + 4)? & 0x7fff);
                let start =
                    (u64::from(le16(&node, at + 6)?) << 32) | u64::from(le32(&node, at + 8)?);
                for i in 0..len {
                    if out.len() >= MAX_DIR_BLOCKS {
                        return Some(out);
                    }
                    out.push(start.checked_add(i)?);
                }
            } else {
                let child =
                    (u64::from(le16(&node, at + 8)?) << 32) | u64::from(le32(&node, at + 4)?);
                let child_node = read(device, child.checked_mul(sb.block_size)?, sb.block_size)?;
                stack.push((child_node, depth));
            }
        }
    }
    Some(out)
}

fn lookup(device: &Device, sb: &Sb, dir: &[u8], name: &[u8]) -> Option<u32> {
    for b in blocks(device, sb, dir)? {
        let block = read(device, b.checked_mul(sb.block_size)?, sb.block_size)?;
        let mut pos = 0usize;
        while pos + 8 <= block.len() {
            let ino = le32(&block, pos)?;
            let rec_len = usize::from(le16(&block, pos + 4)?);
            let name_len = usize::from(*block.get(pos + 6)?);
            if rec_len < 8 {
                break;
            }
            if ino != 0 && block.get(pos + 8..pos + 8 + name_len) == Some(name) {
                return Some(ino);
            }
            pos += rec_len;
        }
    }
    None
}

/// The first component of `path` (from the filesystem root) whose inode
/// claims more bytes than an ext4 file can hold, with that size.
pub(crate) fn impossible_size(device: &Device, path: &GuestPath) -> Option<(GuestPath, u64)> {
    let sb = superblock(device)?;
    let max_size = sb.block_size.checked_mul(u64::from(u32::MAX))?;
    let mut ino = 2u32;
    let mut walked = GuestPath::root();
    for comp in path.components().take(MAX_COMPONENTS) {
        let dir = inode(device, &sb, ino)?;
        ino = lookup(device, &sb, &dir, comp)?;
        walked = walked.join(comp);
        let node = inode(device, &sb, ino)?;
        let size = size_of(&node)?;
        if size > max_size {
            return Some((walked, size));
        }
    }
    None
}
