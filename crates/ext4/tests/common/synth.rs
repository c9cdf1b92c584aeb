//! Synthetic jbd2 logs written into a real `mkfs.ext4` image.
//!
//! The kernel decides for itself what it logs; these helpers write exactly
//! the log a test needs (escaped blocks, 32/64-bit tags, checksum v1/v2/v3,
//! async commit, revokes, wrap-around, corrupt commits, hostile shapes),
//! following the on-disk format in the kernel's `include/linux/jbd2.h`.
//! Results are judged by `e2fsck -E journal_only`, not by this code.
//! CRCs here are plain bitwise implementations, independent of the crate's.

use std::path::Path;

use super::{read_file, run, stdout, try_run_env};

pub const MAGIC: u32 = 0xc03b_3998;
pub const COMPAT_CHECKSUM: u32 = 0x1;
pub const INCOMPAT_REVOKE: u32 = 0x1;
pub const INCOMPAT_64BIT: u32 = 0x2;
pub const INCOMPAT_ASYNC_COMMIT: u32 = 0x4;
pub const INCOMPAT_CSUM_V2: u32 = 0x8;
pub const INCOMPAT_CSUM_V3: u32 = 0x10;

pub fn crc32c_bitwise(mut crc: u32, data: &[u8]) -> u32 {
    for &b in data {
        crc ^= u32::from(b);
        for _ in 0..8 {
            crc = if crc & 1 != 0 {
                (crc >> 1) ^ 0x82f6_3b78
            } else {
                crc >> 1
            };
        }
    }
    crc
}

pub fn crc32_be_bitwise(mut crc: u32, data: &[u8]) -> u32 {
    for &b in data {
        crc ^= u32::from(b) << 24;
        for _ in 0..8 {
            crc = if crc & 0x8000_0000 != 0 {
                (crc << 1) ^ 0x04c1_1db7
            } else {
                crc << 1
            };
        }
    }
    crc
}

fn put32(b: &mut [u8], off: usize, v: u32) {
    b[off..off + 4].copy_from_slice(&v.to_be_bytes());
}

/// How a transaction's commit block is written.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Commit {
    Good,
    /// No commit block: the transaction is incomplete.
    Missing,
    /// A commit block whose checksum does not match.
    BadChecksum,
    /// A commit block whose header is intact but whose tail (beyond the
    /// 64-byte header) was torn: only the kernel's partial check passes.
    TornTail,
}

/// One synthetic transaction.
#[derive(Debug, Clone)]
pub struct Txn {
    /// Filesystem block -> new contents (one block each).
    pub blocks: Vec<(u64, Vec<u8>)>,
    pub revokes: Vec<u64>,
    pub commit: Commit,
    /// Commit time (`h_commit_sec`); increasing in a real log.
    pub commit_sec: u64,
}

impl Txn {
    pub fn new(blocks: Vec<(u64, Vec<u8>)>) -> Txn {
        Txn {
            blocks,
            revokes: Vec::new(),
            commit: Commit::Good,
            commit_sec: 0,
        }
    }
}

/// An image made by mkfs.ext4 with direct access to its journal.
pub struct Synth {
    pub image: Vec<u8>,
    pub bs: usize,
    /// Disk block of each journal block.
    pub journal: Vec<u64>,
    pub compat: u32,
    pub incompat: u32,
    /// `j_last`: where the log wraps.
    pub last: u64,
}

impl Synth {
    /// Runs `mkfs.ext4 -q -F ARGS` on a sparse file of `size` bytes in `dir`
    /// and maps the journal with `debugfs -R 'stat <8>'`.
    pub fn from_mkfs(dir: &Path, size: u64, args: &[&str]) -> Synth {
        let path = dir.join("synth-mkfs.img");
        let f = std::fs::File::create(&path).unwrap();
        f.set_len(size).unwrap();
        drop(f);
        let mut full = vec!["-q", "-F"];
        full.extend_from_slice(args);
        full.push(path.to_str().unwrap());
        let out = try_run_env("mkfs.ext4", &full, &[("E2FSPROGS_FAKE_TIME", "1700000000")]);
        assert!(
            out.status.success(),
            "mkfs.ext4 {full:?}: {}",
            String::from_utf8_lossy(&out.stderr)
        );
        let image = read_file(&path);
        let bs =
            1024usize << u32::from_le_bytes(image[1024 + 0x18..1024 + 0x1c].try_into().unwrap());
        let stat = stdout(&run("debugfs", &["-R", "stat <8>", path.to_str().unwrap()]));
        let journal = parse_debugfs_blocks(&stat);
        assert!(journal.len() >= 1024, "journal map from debugfs: {stat}");
        let mut s = Synth {
            image,
            bs,
            journal,
            compat: 0,
            incompat: 0,
            last: 0,
        };
        s.last = u64::from(s.jsb_u32(0x10));
        let _ = std::fs::remove_file(&path);
        s
    }

    pub fn jsb_offset(&self) -> usize {
        self.journal[0] as usize * self.bs
    }

    pub fn jsb_u32(&self, off: usize) -> u32 {
        let o = self.jsb_offset() + off;
        u32::from_be_bytes(self.image[o..o + 4].try_into().unwrap())
    }

    pub fn set_jsb_u32(&mut self, off: usize, v: u32) {
        let o = self.jsb_offset() + off;
        put32(&mut self.image, o, v);
        self.fix_jsb_checksum();
    }

    fn uuid(&self) -> [u8; 16] {
        let o = self.jsb_offset() + 0x30;
        self.image[o..o + 16].try_into().unwrap()
    }

    fn seed(&self) -> u32 {
        crc32c_bitwise(!0, &self.uuid())
    }

    fn csum_v2or3(&self) -> bool {
        self.incompat & (INCOMPAT_CSUM_V2 | INCOMPAT_CSUM_V3) != 0
    }

    /// Sets the journal feature words (and the checksum type they imply).
    pub fn set_features(&mut self, compat: u32, incompat: u32) {
        self.compat = compat;
        self.incompat = incompat;
        let o = self.jsb_offset();
        put32(&mut self.image, o + 0x24, compat);
        put32(&mut self.image, o + 0x28, incompat);
        self.image[o + 0x50] = if self.csum_v2or3() { 4 } else { 0 };
        self.fix_jsb_checksum();
    }

    pub fn fix_jsb_checksum(&mut self) {
        let o = self.jsb_offset();
        if self.incompat & (INCOMPAT_CSUM_V2 | INCOMPAT_CSUM_V3) != 0 {
            put32(&mut self.image, o + 0xfc, 0);
            let c = crc32c_bitwise(!0, &self.image[o..o + 1024]);
            put32(&mut self.image, o + 0xfc, c);
        }
    }

    /// Sets or clears `needs_recovery` in the ext4 superblock.
    pub fn set_needs_recovery(&mut self, on: bool) {
        let off = 1024 + 0x60;
        let mut v = u32::from_le_bytes(self.image[off..off + 4].try_into().unwrap());
        if on {
            v |= 4;
        } else {
            v &= !4;
        }
        self.image[off..off + 4].copy_from_slice(&v.to_le_bytes());
        self.fix_fs_checksum();
    }

    pub fn fix_fs_checksum(&mut self) {
        let ro = u32::from_le_bytes(self.image[1024 + 0x64..1024 + 0x68].try_into().unwrap());
        if ro & 0x400 != 0 {
            let c = crc32c_bitwise(!0, &self.image[1024..1024 + 0x3fc]);
            self.image[1024 + 0x3fc..1024 + 0x400].copy_from_slice(&c.to_le_bytes());
        }
    }

    pub fn blocks_count(&self) -> u64 {
        u64::from(u32::from_le_bytes(
            self.image[1028..1032].try_into().unwrap(),
        ))
    }

    /// Filesystem block `n`.
    pub fn block(&self, n: u64) -> &[u8] {
        &self.image[n as usize * self.bs..(n as usize + 1) * self.bs]
    }

    fn log_block_mut(&mut self, pos: u64) -> &mut [u8] {
        let phys = self.journal[pos as usize] as usize;
        &mut self.image[phys * self.bs..(phys + 1) * self.bs]
    }

    fn tag_bytes(&self) -> usize {
        if self.incompat & INCOMPAT_CSUM_V3 != 0 {
            return 16;
        }
        let mut s = 12;
        if self.incompat & INCOMPAT_CSUM_V2 != 0 {
            s += 2;
        }
        if self.incompat & INCOMPAT_64BIT != 0 {
            s
        } else {
            s - 4
        }
    }

    /// Writes `txns` as a log starting at journal block `start` with first
    /// sequence `seq`, then a zero block ending the log; points the journal
    /// superblock at it and sets `needs_recovery`. Returns the position
    /// after the log. `max_tags` caps tags per descriptor block.
    pub fn write_log(&mut self, start: u64, seq: u32, txns: &[Txn], max_tags: usize) -> u64 {
        let first = u64::from(self.jsb_u32(0x14));
        let last = self.last;
        let wrap = |p: u64| if p >= last { p - (last - first) } else { p };
        let bs = self.bs;
        let seed = self.seed();
        let uuid = self.uuid();
        let tag_bytes = self.tag_bytes();
        let tail = if self.csum_v2or3() { 4 } else { 0 };
        let mut pos = start;
        for (i, t) in txns.iter().enumerate() {
            let sequence = seq.wrapping_add(i as u32);
            let mut crc_v1 = !0u32;
            let header = |kind: u32| {
                let mut b = vec![0u8; bs];
                put32(&mut b, 0, MAGIC);
                put32(&mut b, 4, kind);
                put32(&mut b, 8, sequence);
                b
            };
            if !t.revokes.is_empty() {
                let rec = if self.incompat & INCOMPAT_64BIT != 0 {
                    8
                } else {
                    4
                };
                let mut b = header(5);
                let mut off = 16;
                for &r in &t.revokes {
                    if rec == 8 {
                        b[off..off + 8].copy_from_slice(&r.to_be_bytes());
                    } else {
                        put32(&mut b, off, r as u32);
                    }
                    off += rec;
                }
                put32(&mut b, 12, off as u32);
                if tail > 0 {
                    let c = crc32c_bitwise(seed, &b);
                    put32(&mut b, bs - 4, c);
                }
                self.log_block_mut(pos).copy_from_slice(&b);
                pos = wrap(pos + 1);
            }
            let room = (bs - 12 - tail - 16) / tag_bytes;
            for chunk in t.blocks.chunks(max_tags.min(room).max(1)) {
                let mut d = header(1);
                let mut off = 12;
                let mut logged = Vec::new();
                for (k, (target, data)) in chunk.iter().enumerate() {
                    let mut data = data.clone();
                    let mut flags = 0u32;
                    if data[..4] == MAGIC.to_be_bytes() {
                        data[..4].fill(0);
                        flags |= 1;
                    }
                    if k > 0 {
                        flags |= 2;
                    }
                    if k + 1 == chunk.len() {
                        flags |= 8;
                    }
                    let csum = crc32c_bitwise(crc32c_bitwise(seed, &sequence.to_be_bytes()), &data);
                    let tag = &mut d[off..off + tag_bytes];
                    put32(tag, 0, *target as u32);
                    if self.incompat & INCOMPAT_CSUM_V3 != 0 {
                        put32(tag, 4, flags);
                        put32(tag, 8, (*target >> 32) as u32);
                        put32(tag, 12, csum);
                    } else {
                        if self.incompat & INCOMPAT_CSUM_V2 != 0 {
                            tag[4..6].copy_from_slice(&(csum as u16).to_be_bytes());
                        }
                        tag[6..8].copy_from_slice(&(flags as u16).to_be_bytes());
                        if self.incompat & INCOMPAT_64BIT != 0 {
                            put32(tag, 8, (*target >> 32) as u32);
                        }
                    }
                    off += tag_bytes;
                    if k == 0 {
                        d[off..off + 16].copy_from_slice(&uuid);
                        off += 16;
                    }
                    logged.push(data);
                }
                if tail > 0 {
                    let c = crc32c_bitwise(seed, &d);
                    put32(&mut d, bs - 4, c);
                }
                crc_v1 = crc32_be_bitwise(crc_v1, &d);
                self.log_block_mut(pos).copy_from_slice(&d);
                pos = wrap(pos + 1);
                for data in logged {
                    crc_v1 = crc32_be_bitwise(crc_v1, &data);
                    self.log_block_mut(pos).copy_from_slice(&data);
                    pos = wrap(pos + 1);
                }
            }
            if t.commit == Commit::Missing {
                break;
            }
            let mut c = header(2);
            if self.compat & COMPAT_CHECKSUM != 0 {
                c[12] = 1;
                c[13] = 4;
                put32(&mut c, 16, crc_v1);
            }
            c[0x30..0x38]
                .copy_from_slice(&t.commit_sec.max(1_700_000_000 + i as u64).to_be_bytes());
            if self.csum_v2or3() {
                let v = crc32c_bitwise(seed, &c);
                put32(&mut c, 16, v);
            }
            if t.commit == Commit::BadChecksum {
                // Inside h_chksum[0]: wrong for checksum v1 (which covers the
                // other blocks) and v2/v3 (which cover this one) alike.
                c[19] ^= 0x5a;
            }
            if t.commit == Commit::TornTail {
                c[0x200] ^= 0x5a;
            }
            self.log_block_mut(pos).copy_from_slice(&c);
            pos = wrap(pos + 1);
        }
        self.log_block_mut(pos).fill(0);
        self.set_jsb_u32(0x18, seq);
        self.set_jsb_u32(0x1c, start as u32);
        self.set_needs_recovery(true);
        pos
    }

    /// Writes the image to `path`.
    pub fn save(&self, path: &Path) {
        std::fs::write(path, &self.image).unwrap();
    }
}

/// Journal block -> disk block from `debugfs stat` output ("EXTENTS:" or
/// "BLOCKS:" followed by items like `(0-1023):1234-2257`, `(5):99`,
/// `(IND):300`).
pub fn parse_debugfs_blocks(stat: &str) -> Vec<u64> {
    let mut map: Vec<(u64, u64, u64)> = Vec::new();
    let mut in_blocks = false;
    for line in stat.lines() {
        if line.starts_with("EXTENTS:") || line.starts_with("BLOCKS:") {
            in_blocks = true;
            continue;
        }
        if !in_blocks {
            continue;
        }
        for item in line.split(", ") {
            let Some((l, p)) = item
                .trim()
                .strip_prefix('(')
                .and_then(|r| r.split_once("):"))
            else {
                continue;
            };
            let range = |s: &str| -> Option<(u64, u64)> {
                match s.split_once('-') {
                    Some((a, b)) => Some((a.parse().ok()?, b.parse().ok()?)),
                    None => s.parse().ok().map(|v| (v, v)),
                }
            };
            let (Some((l0, l1)), Some((p0, _))) = (range(l), range(p)) else {
                continue;
            };
            map.push((l0, p0, l1 - l0 + 1));
        }
    }
    map.sort();
    let mut out = Vec::new();
    for (l, p, n) in map {
        assert_eq!(l, out.len() as u64, "debugfs map has a gap at {l}");
        out.extend(p..p + n);
    }
    out
}
