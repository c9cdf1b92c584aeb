//! jbd2: the journal superblock, the log, and the three recovery passes.
//!
//! This follows the kernel's `fs/jbd2/recovery.c` (shared with e2fsck's
//! `e2fsck/recovery.c`): PASS_SCAN walks the log from `s_start` to find the
//! last complete transaction and validate checksums, PASS_REVOKE collects
//! revoke records with the sequence that revoked them, PASS_REPLAY applies
//! every tagged block not revoked by the same or a later transaction.
//! Instead of writing, the replay records *where* each block's new contents
//! live in the journal, so the caller can overlay them in memory or write
//! them out later.
//!
//! Hostile journals: every block number is bounds-checked, the scan may not
//! read more blocks than the journal holds (a log that runs round the ring
//! forever is an error, not a hang), memory is proportional to the log
//! length. This module must never write and never panic.

use std::collections::{BTreeMap, HashMap, HashSet};

use rescue_io::{BlockRead, Error, ErrorKind, Result};
use tracing::debug;

use crate::bytes::{be16, be32, be64, le16, le32, put};
use crate::crc::{crc32_be, crc32c};
use crate::inode::FileMap;

/// jbd2 refuses journals shorter than this (`JBD2_MIN_JOURNAL_BLOCKS`).
pub(crate) const MIN_JOURNAL_BLOCKS: u64 = 1024;
/// Fast-commit area size when `s_num_fc_blks` is 0.
const DEFAULT_FAST_COMMIT_BLOCKS: u64 = 256;

pub(crate) const MAGIC: u32 = 0xc03b_3998;
const BLOCKTYPE_DESCRIPTOR: u32 = 1;
const BLOCKTYPE_COMMIT: u32 = 2;
const BLOCKTYPE_SUPERBLOCK_V1: u32 = 3;
const BLOCKTYPE_SUPERBLOCK_V2: u32 = 4;
const BLOCKTYPE_REVOKE: u32 = 5;

pub(crate) const COMPAT_CHECKSUM: u32 = 0x1;
pub(crate) const INCOMPAT_REVOKE: u32 = 0x1;
pub(crate) const INCOMPAT_64BIT: u32 = 0x2;
pub(crate) const INCOMPAT_ASYNC_COMMIT: u32 = 0x4;
pub(crate) const INCOMPAT_CSUM_V2: u32 = 0x8;
pub(crate) const INCOMPAT_CSUM_V3: u32 = 0x10;
pub(crate) const INCOMPAT_FAST_COMMIT: u32 = 0x20;
const KNOWN_INCOMPAT: u32 = INCOMPAT_REVOKE
    | INCOMPAT_64BIT
    | INCOMPAT_ASYNC_COMMIT
    | INCOMPAT_CSUM_V2
    | INCOMPAT_CSUM_V3
    | INCOMPAT_FAST_COMMIT;

pub(crate) const FLAG_ESCAPE: u32 = 1;
pub(crate) const FLAG_SAME_UUID: u32 = 2;
pub(crate) const FLAG_LAST_TAG: u32 = 8;

const CHECKSUM_TYPE_CRC32: u8 = 1;
const CHECKSUM_TYPE_CRC32C: u8 = 4;

/// `sizeof(struct commit_header)` (60 bytes of fields, padded to 8).
const COMMIT_HEADER_SIZE: usize = 64;

/// Fast-commit tag that opens a fast commit (`EXT4_FC_TAG_HEAD`).
const FC_TAG_HEAD: u16 = 0x0009;

// Journal superblock field offsets (big-endian fields).
pub(crate) const JSB_SEQUENCE: usize = 0x18;
pub(crate) const JSB_START: usize = 0x1c;
pub(crate) const JSB_ERRNO: usize = 0x20;
const JSB_CHECKSUM: usize = 0xfc;
/// The journal superblock structure is 1024 bytes whatever the block size.
const JSB_SIZE: usize = 1024;

/// Transaction IDs compare modulo 2^32 (`tid_gt`).
pub(crate) fn tid_gt(x: u32, y: u32) -> bool {
    (x.wrapping_sub(y) as i32) > 0
}

/// The decoded journal superblock. Feature words are zero for a v1 superblock.
#[derive(Debug, Clone)]
pub(crate) struct JournalSuperblock {
    pub block_size: u32,
    pub maxlen: u32,
    pub first: u32,
    pub sequence: u32,
    pub start: u32,
    pub errno: i32,
    pub compat: u32,
    pub incompat: u32,
    pub uuid: [u8; 16],
    pub num_fc_blocks: u32,
}

impl JournalSuperblock {
    /// Decodes and validates (as e2fsck's `e2fsck_journal_load` does) the
    /// first 1024 bytes of journal block 0.
    pub(crate) fn parse(raw: &[u8]) -> Result<JournalSuperblock, (ErrorKind, String)> {
        let corrupt = |d: String| (ErrorKind::Corrupt, d);
        let unsupported = |d: String| (ErrorKind::Unsupported, d);
        if raw.len() < JSB_SIZE {
            return Err(corrupt(
                "the journal block is shorter than a superblock".into(),
            ));
        }
        if be32(raw, 0) != MAGIC {
            return Err(corrupt(format!(
                "bad magic {:#010x} (expected 0xc03b3998): the journal inode does not hold a journal",
                be32(raw, 0)
            )));
        }
        let version = match be32(raw, 4) {
            BLOCKTYPE_SUPERBLOCK_V1 => 1,
            BLOCKTYPE_SUPERBLOCK_V2 => 2,
            t @ (BLOCKTYPE_DESCRIPTOR | BLOCKTYPE_COMMIT | BLOCKTYPE_REVOKE) => {
                return Err(corrupt(format!(
                    "block type {t} (a log block) where the superblock should be"
                )))
            }
            t => {
                return Err(unsupported(format!(
                    "unknown journal superblock type {t}; only v1 (3) and v2 (4) exist"
                )))
            }
        };
        let (compat, incompat, ro_compat) = if version >= 2 {
            (be32(raw, 0x24), be32(raw, 0x28), be32(raw, 0x2c))
        } else {
            (0, 0, 0)
        };
        let mut uuid = [0u8; 16];
        uuid.copy_from_slice(&raw[0x30..0x40]);
        let sb = JournalSuperblock {
            block_size: be32(raw, 0x0c),
            maxlen: be32(raw, 0x10),
            first: be32(raw, 0x14),
            sequence: be32(raw, JSB_SEQUENCE),
            start: be32(raw, JSB_START),
            errno: be32(raw, JSB_ERRNO) as i32,
            compat,
            incompat,
            uuid,
            num_fc_blocks: be32(raw, 0x54),
        };
        if version >= 2 {
            let nr_users = be32(raw, 0x40);
            if nr_users > 1 {
                return Err(unsupported(format!(
                    "the journal is shared by {nr_users} filesystems; shared journals are not supported"
                )));
            }
        }
        if incompat & !KNOWN_INCOMPAT != 0 {
            return Err(unsupported(format!(
                "unknown incompatible journal features {:#x}",
                incompat & !KNOWN_INCOMPAT
            )));
        }
        if ro_compat != 0 {
            return Err(unsupported(format!(
                "unknown read-only-compatible journal features {ro_compat:#x}"
            )));
        }
        if sb.csum_v2or3() {
            if incompat & INCOMPAT_CSUM_V2 != 0 && incompat & INCOMPAT_CSUM_V3 != 0 {
                return Err(corrupt("both checksum v2 and v3 are set".into()));
            }
            if compat & COMPAT_CHECKSUM != 0 {
                return Err(corrupt("checksum v1 and v2/v3 are both set".into()));
            }
            let kind = raw[0x50];
            if kind != CHECKSUM_TYPE_CRC32C {
                return Err(corrupt(format!(
                    "checksum type {kind} where checksum v2/v3 requires 4 (crc32c)"
                )));
            }
            let stored = be32(raw, JSB_CHECKSUM);
            let computed = superblock_checksum(raw);
            if stored != computed {
                return Err(corrupt(format!(
                    "journal superblock checksum mismatch (stored {stored:#010x}, computed {computed:#010x})"
                )));
            }
        }
        Ok(sb)
    }

    pub(crate) fn csum_v2or3(&self) -> bool {
        self.incompat & (INCOMPAT_CSUM_V2 | INCOMPAT_CSUM_V3) != 0
    }

    /// Size of one descriptor tag (`journal_tag_bytes`).
    pub(crate) fn tag_bytes(&self) -> usize {
        if self.incompat & INCOMPAT_CSUM_V3 != 0 {
            return 16;
        }
        let mut size = 12;
        if self.incompat & INCOMPAT_CSUM_V2 != 0 {
            size += 2;
        }
        if self.incompat & INCOMPAT_64BIT != 0 {
            size
        } else {
            size - 4
        }
    }
}

/// CRC-32C of the 1024-byte journal superblock with `s_checksum` zeroed.
pub(crate) fn superblock_checksum(raw: &[u8]) -> u32 {
    let mut copy = raw.get(..JSB_SIZE).unwrap_or(raw).to_vec();
    put(&mut copy, JSB_CHECKSUM, &[0; 4]);
    crc32c(!0, &copy)
}

/// Recomputes the journal superblock checksum in place (v2/v3 only).
pub(crate) fn update_superblock_checksum(raw: &mut [u8], sb: &JournalSuperblock) {
    if sb.csum_v2or3() {
        let c = superblock_checksum(raw);
        put(raw, JSB_CHECKSUM, &c.to_be_bytes());
    }
}

/// An opened internal journal: its superblock and block map.
#[derive(Debug)]
pub(crate) struct Journal<'a> {
    pub dev: &'a dyn BlockRead,
    pub map: FileMap,
    pub sb: JournalSuperblock,
    pub block_size: u32,
    /// Journal blocks usable (`j_total_len`).
    pub total_len: u64,
    /// First log block (`j_first`).
    pub first: u64,
    /// One past the last log block (`j_last`): where the log wraps.
    pub last: u64,
    /// CRC-32C of the journal UUID, the seed of every v2/v3 checksum.
    pub csum_seed: u32,
    /// Filesystem size in blocks, for checking tag targets.
    pub fs_blocks: u64,
}

impl<'a> Journal<'a> {
    /// Validates the superblock against the block map (e2fsck's and the
    /// kernel's load checks).
    pub(crate) fn new(
        dev: &'a dyn BlockRead,
        map: FileMap,
        sb: JournalSuperblock,
        block_size: u32,
        fs_blocks: u64,
    ) -> Result<Journal<'a>, String> {
        if sb.block_size != block_size {
            return Err(format!(
                "journal block size {} differs from the filesystem block size {block_size}",
                sb.block_size
            ));
        }
        let maxlen = u64::from(sb.maxlen);
        let inode_len = map.len_in_blocks();
        if maxlen > inode_len {
            return Err(format!(
                "s_maxlen {maxlen} is larger than the journal inode ({inode_len} blocks): journal too short"
            ));
        }
        let total_len = maxlen;
        let first = u64::from(sb.first);
        let mut last = maxlen;
        if sb.incompat & INCOMPAT_FAST_COMMIT != 0 {
            let fc = match sb.num_fc_blocks {
                0 => DEFAULT_FAST_COMMIT_BLOCKS,
                n => u64::from(n),
            };
            if maxlen.saturating_sub(fc) < MIN_JOURNAL_BLOCKS {
                return Err(format!(
                    "{fc} fast-commit blocks leave fewer than {MIN_JOURNAL_BLOCKS} log blocks"
                ));
            }
            last = maxlen - fc;
        }
        if first == 0 || first >= last {
            return Err(format!("s_first {first} is outside 1..{last}"));
        }
        let start = u64::from(sb.start);
        if start != 0 && (start < first || start >= last) {
            return Err(format!(
                "s_start {start} is outside the log area {first}..{last}"
            ));
        }
        let csum_seed = crc32c(!0, &sb.uuid);
        Ok(Journal {
            dev,
            map,
            sb,
            block_size,
            total_len,
            first,
            last,
            csum_seed,
            fs_blocks,
        })
    }

    /// Disk block number of journal block `index`.
    pub(crate) fn physical(&self, index: u64) -> Result<u64> {
        if index >= self.total_len {
            return Err(Error::corrupt(
                "reading journal",
                format!(
                    "journal block {index} is beyond the journal's {} blocks",
                    self.total_len
                ),
            )
            .with_path(self.dev.describe()));
        }
        self.map.physical(index).ok_or_else(|| {
            Error::corrupt(
                "reading journal",
                format!("journal block {index} is not mapped"),
            )
            .with_path(self.dev.describe())
        })
    }

    /// Reads journal block `index`.
    pub(crate) fn read(&self, index: u64) -> Result<Vec<u8>> {
        let physical = self.physical(index)?;
        let mut buf = vec![0u8; self.block_size as usize];
        self.dev
            .read_exact_at(physical * u64::from(self.block_size), &mut buf)?;
        Ok(buf)
    }

    /// The next log position after `pos`, wrapping at the end of the log area.
    fn wrap(&self, pos: u64) -> u64 {
        if pos >= self.last {
            pos - (self.last - self.first)
        } else {
            pos
        }
    }

    fn v2or3_checksum(&self, block: &[u8], zero_at: usize) -> u32 {
        let mut copy = block.to_vec();
        put(&mut copy, zero_at, &[0; 4]);
        crc32c(self.csum_seed, &copy)
    }

    /// Descriptor and revoke block tail checksum (true when not in use).
    fn tail_checksum_ok(&self, block: &[u8]) -> bool {
        if !self.sb.csum_v2or3() {
            return true;
        }
        let tail = block.len() - 4;
        be32(block, tail) == self.v2or3_checksum(block, tail)
    }

    /// Commit block checksum v2/v3 (true when not in use).
    fn commit_checksum_ok(&self, block: &[u8]) -> bool {
        if !self.sb.csum_v2or3() {
            return true;
        }
        be32(block, 16) == self.v2or3_checksum(block, 16)
    }

    /// The kernel's `jbd2_commit_block_csum_verify_partial`: the checksum
    /// of a block holding only the commit header (64 bytes, the size of
    /// `struct commit_header`), the rest zero. A commit block whose tail was
    /// torn on the way to disk still passes it, and recent kernels accept
    /// such an "incomplete commit block" (e2fsprogs 1.47.0 does not).
    fn commit_header_checksum_ok(&self, block: &[u8]) -> bool {
        if !self.sb.csum_v2or3() {
            return true;
        }
        let mut copy = vec![0u8; block.len()];
        let n = COMMIT_HEADER_SIZE.min(block.len());
        copy[..n].copy_from_slice(&block[..n]);
        put(&mut copy, 16, &[0; 4]);
        be32(block, 16) == crc32c(self.csum_seed, &copy)
    }

    /// Data block checksum against its tag (true when not in use).
    fn tag_checksum_ok(&self, tag: &Tag, sequence: u32, data: &[u8]) -> bool {
        if !self.sb.csum_v2or3() {
            return true;
        }
        let c = crc32c(crc32c(self.csum_seed, &sequence.to_be_bytes()), data);
        if self.sb.incompat & INCOMPAT_CSUM_V3 != 0 {
            tag.checksum == c
        } else {
            tag.checksum == c & 0xffff
        }
    }

    /// Tags of a descriptor block, as the kernel walks them (`count_tags`).
    fn tags(&self, block: &[u8]) -> Vec<Tag> {
        let tag_bytes = self.sb.tag_bytes();
        let size = block.len() - if self.sb.csum_v2or3() { 4 } else { 0 };
        let mut tags = Vec::new();
        let mut off = 12usize;
        while off + tag_bytes <= size {
            let t = &block[off..off + tag_bytes];
            // For tag3 the 32-bit flags word is big-endian at 4; its low half
            // is at 6, where the 16-bit flags of the older tag live.
            let flags = u32::from(be16(t, 6));
            let mut target = u64::from(be32(t, 0));
            if self.sb.incompat & INCOMPAT_64BIT != 0 {
                target |= u64::from(be32(t, 8)) << 32;
            }
            let checksum = if self.sb.incompat & INCOMPAT_CSUM_V3 != 0 {
                be32(t, 12)
            } else {
                u32::from(be16(t, 4))
            };
            tags.push(Tag {
                target,
                flags,
                checksum,
                log_block: 0,
            });
            off += tag_bytes;
            if flags & FLAG_SAME_UUID == 0 {
                off += 16;
            }
            if flags & FLAG_LAST_TAG != 0 {
                break;
            }
        }
        tags
    }
}

/// One descriptor tag: filesystem block `target` gets the contents of
/// journal block `log_block`.
#[derive(Debug, Clone, Copy)]
pub(crate) struct Tag {
    pub target: u64,
    pub flags: u32,
    pub checksum: u32,
    pub log_block: u64,
}

/// A transaction found by the scan.
#[derive(Debug, Clone, Default)]
struct Transaction {
    sequence: u32,
    tags: Vec<Tag>,
    /// Journal blocks holding this transaction's revoke records. They are
    /// read again in the REVOKE pass rather than kept: a log full of revoke
    /// blocks must not cost memory per record.
    revoke_blocks: Vec<u64>,
}

/// Where the new contents of a filesystem block come from.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct LoggedBlock {
    /// Disk block number of the journal block holding the contents.
    pub physical: u64,
    /// The first four bytes must be restored to the jbd2 magic.
    pub escaped: bool,
}

/// The outcome of the three passes.
#[derive(Debug, Default)]
pub(crate) struct Recovery {
    /// Filesystem block -> where its final contents live.
    pub blocks: BTreeMap<u64, LoggedBlock>,
    pub start_transaction: u32,
    /// First transaction not replayed (`info->end_transaction`).
    pub end_transaction: u32,
    pub transactions: u32,
    pub replays: u64,
    pub revoke_hits: u64,
    pub revokes: u64,
    pub log_blocks_read: u64,
    pub wrapped: bool,
    /// A commit failed its checksum without async_commit (`j_failed_commit`).
    pub failed_commit: Option<u32>,
    /// Some data blocks failed their checksum and were skipped: e2fsck
    /// reports an error and forces a full check, the kernel refuses to mount.
    pub block_errors: u64,
    pub notes: Vec<String>,
}

/// Why scanning stopped.
enum ScanEnd {
    /// Normal end of the log (or a stale block after it).
    Done,
    /// A sync commit failed its checksum: end here, remember the failure.
    FailedCommit(u32),
}

/// Runs PASS_SCAN, PASS_REVOKE and PASS_REPLAY over the log.
pub(crate) fn recover(j: &Journal<'_>) -> Result<Recovery> {
    let mut rec = Recovery {
        start_transaction: j.sb.sequence,
        end_transaction: j.sb.sequence,
        ..Recovery::default()
    };
    if j.sb.start == 0 {
        // A clean log: nothing to replay (`jbd2_journal_recover`).
        return Ok(rec);
    }
    let (txns, end) = scan(j, &mut rec)?;
    rec.end_transaction = end;
    check_fast_commit(j, end, &mut rec)?;

    // Transactions before `end` are complete and get replayed.
    let complete: Vec<&Transaction> = txns.iter().filter(|t| tid_gt(end, t.sequence)).collect();
    rec.transactions = complete.len() as u32;

    // PASS_REVOKE. Only blocks that some replayed tag names can be hit, so
    // only those are remembered: memory stays bounded by the log length.
    let tagged: HashSet<u64> = complete
        .iter()
        .flat_map(|t| t.tags.iter().map(|tag| tag.target))
        .collect();
    let mut revoked: HashMap<u64, u32> = HashMap::new();
    for t in &complete {
        for &log_block in &t.revoke_blocks {
            let block = j.read(log_block)?;
            let records = revoke_records(j, &block).map_err(|why| {
                Error::corrupt(
                    "replaying journal revoke records",
                    format!(
                        "revoke block at journal block {log_block} of transaction {}: {why}; \
                         the kernel refuses to mount: run `e2fsck` on a copy",
                        t.sequence
                    ),
                )
                .with_path(j.dev.describe())
            })?;
            for block in records {
                rec.revokes += 1;
                if !tagged.contains(&block) {
                    continue;
                }
                revoked
                    .entry(block)
                    .and_modify(|seq| {
                        if tid_gt(t.sequence, *seq) {
                            *seq = t.sequence;
                        }
                    })
                    .or_insert(t.sequence);
            }
        }
    }

    // PASS_REPLAY.
    for t in &complete {
        for tag in &t.tags {
            if revoked
                .get(&tag.target)
                .is_some_and(|&rseq| !tid_gt(t.sequence, rseq))
            {
                rec.revoke_hits += 1;
                continue;
            }
            check_target(j, t.sequence, tag)?;
            let physical = j.physical(tag.log_block)?;
            // The checksum covers the block as logged (still escaped).
            if j.sb.csum_v2or3() && !j.tag_checksum_ok(tag, t.sequence, &j.read(tag.log_block)?) {
                rec.block_errors += 1;
                continue;
            }
            rec.replays += 1;
            rec.blocks.insert(
                tag.target,
                LoggedBlock {
                    physical,
                    escaped: tag.flags & FLAG_ESCAPE != 0,
                },
            );
        }
    }
    if rec.block_errors > 0 {
        rec.notes.push(format!(
            "{} journaled block(s) failed their checksum and were not replayed: the kernel \
             would refuse to mount this filesystem; e2fsck replays the rest, as done here, \
             and then needs a full check (`e2fsck -f`)",
            rec.block_errors
        ));
    }
    debug!(
        transactions = rec.transactions,
        replays = rec.replays,
        revoke_hits = rec.revoke_hits,
        revokes = rec.revokes,
        "jbd2 recovery planned"
    );
    Ok(rec)
}

/// PASS_SCAN: finds the end of the log. Returns the transactions seen
/// (complete or not) and `end_transaction`.
fn scan(j: &Journal<'_>, rec: &mut Recovery) -> Result<(Vec<Transaction>, u32)> {
    let mut next_id = j.sb.sequence;
    let mut pos = u64::from(j.sb.start);
    let mut end: Option<u32> = None;
    let mut crc32_sum = !0u32;
    let mut need_check_commit_time = false;
    let mut last_commit_time = 0u64;
    let mut txns: Vec<Transaction> = Vec::new();
    let mut current = Transaction {
        sequence: next_id,
        ..Transaction::default()
    };
    // A real log is shorter than the ring, plus the one block that ends it.
    let budget = j.last - j.first + 1;
    let op = |id: u32| format!("scanning journal transaction {id}");
    let mut outcome = ScanEnd::Done;

    let consume = |rec: &mut Recovery, pos: &mut u64, n: u64| -> Result<()> {
        rec.log_blocks_read += n;
        if rec.log_blocks_read > budget {
            return Err(Error::corrupt(
                "scanning journal",
                format!(
                    "the log runs round the whole journal ({} blocks) without ending: \
                     the journal is corrupt; run `e2fsck` on a copy",
                    j.last - j.first
                ),
            )
            .with_path(j.dev.describe()));
        }
        let next = *pos + n;
        if next >= j.last {
            rec.wrapped = true;
        }
        *pos = j.wrap(next);
        Ok(())
    };

    loop {
        let here = pos;
        let block = j.read(here).map_err(|e| annotate(e, &op(next_id)))?;
        consume(rec, &mut pos, 1)?;
        if be32(&block, 0) != MAGIC {
            break;
        }
        let blocktype = be32(&block, 4);
        let sequence = be32(&block, 8);
        if sequence != next_id {
            break;
        }
        match blocktype {
            BLOCKTYPE_DESCRIPTOR => {
                if !j.tail_checksum_ok(&block) {
                    // Possibly a stale block from before a lazy journal
                    // init: decided at the commit block by its timestamp.
                    need_check_commit_time = true;
                    debug!(block = here, "descriptor block checksum mismatch");
                }
                let mut tags = j.tags(&block);
                if j.sb.compat & COMPAT_CHECKSUM != 0 && !need_check_commit_time && end.is_none() {
                    crc32_sum = crc32_be(crc32_sum, &block);
                    for tag in &mut tags {
                        tag.log_block = pos;
                        let data = j.read(pos).map_err(|e| annotate(e, &op(next_id)))?;
                        crc32_sum = crc32_be(crc32_sum, &data);
                        consume(rec, &mut pos, 1)?;
                    }
                } else {
                    let mut p = pos;
                    for tag in &mut tags {
                        tag.log_block = p;
                        p = j.wrap(p + 1);
                    }
                    consume(rec, &mut pos, tags.len() as u64)?;
                }
                current.tags.extend(tags);
            }
            BLOCKTYPE_COMMIT => {
                let commit_time = be64(&block, 0x30);
                if need_check_commit_time {
                    if commit_time >= last_commit_time {
                        return Err(Error::corrupt(
                            op(next_id),
                            format!(
                                "a descriptor or revoke block of transaction {next_id} fails its \
                                 checksum (commit block at journal block {here}); the kernel \
                                 refuses to mount: run `e2fsck` on a copy"
                            ),
                        )
                        .with_path(j.dev.describe()));
                    }
                    // An older commit time: stale blocks from a previous use
                    // of the journal. The log ends here.
                    rec.notes.push(format!(
                        "stale blocks found at journal block {here} (transaction {next_id}): end of log"
                    ));
                    break;
                }
                let mut checksum_error = false;
                if j.sb.compat & COMPAT_CHECKSUM != 0 {
                    if let Some(e) = end {
                        outcome = ScanEnd::FailedCommit(e);
                        break;
                    }
                    let found = be32(&block, 16);
                    let kind = block[12];
                    let size = block[13];
                    let matches = crc32_sum == found && kind == CHECKSUM_TYPE_CRC32 && size == 4;
                    let unused = kind == 0 && size == 0 && found == 0;
                    if matches || unused {
                        crc32_sum = !0;
                    } else {
                        checksum_error = true;
                    }
                }
                if !checksum_error && !j.commit_checksum_ok(&block) {
                    if j.commit_header_checksum_ok(&block) {
                        rec.notes.push(format!(
                            "the commit block of transaction {next_id} at journal block {here} \
                             is torn after its header; accepted as complete, as the kernel does \
                             (e2fsprogs 1.47.0 stops the replay there)"
                        ));
                    } else {
                        checksum_error = true;
                    }
                }
                if checksum_error {
                    if commit_time < last_commit_time {
                        rec.notes.push(format!(
                            "stale commit block at journal block {here} (transaction {next_id}): end of log"
                        ));
                        break;
                    }
                    end = Some(next_id);
                    if j.sb.incompat & INCOMPAT_ASYNC_COMMIT == 0 {
                        rec.notes.push(format!(
                            "commit block of transaction {next_id} at journal block {here} fails its \
                             checksum: the kernel refuses to mount (journal transaction corrupt); \
                             as e2fsck does, the transactions before it are replayed, later ones \
                             are not, and the filesystem is marked as having errors"
                        ));
                        outcome = ScanEnd::FailedCommit(next_id);
                        break;
                    }
                    rec.notes.push(format!(
                        "commit block of transaction {next_id} at journal block {here} fails its \
                         checksum (async_commit): that transaction and later ones are ignored"
                    ));
                }
                last_commit_time = commit_time;
                txns.push(std::mem::take(&mut current));
                next_id = next_id.wrapping_add(1);
                current.sequence = next_id;
            }
            BLOCKTYPE_REVOKE => {
                if !j.tail_checksum_ok(&block) {
                    need_check_commit_time = true;
                    debug!(block = here, "revoke block checksum mismatch");
                }
                current.revoke_blocks.push(here);
            }
            _ => break,
        }
    }
    let end = end.unwrap_or(next_id);
    if let ScanEnd::FailedCommit(id) = outcome {
        rec.failed_commit = Some(id);
    }
    debug!(
        start = j.sb.sequence,
        end,
        blocks = rec.log_blocks_read,
        "jbd2 scan done"
    );
    Ok((txns, end))
}

fn annotate(e: Error, op: &str) -> Error {
    let kind = e.kind();
    let offset = e.offset();
    let mut out = Error::new(kind, op.to_string()).with_detail(e.to_string());
    if let Some(o) = offset {
        out = out.with_offset(o);
    }
    out
}

/// Decodes a revoke block's records (`scan_revoke_records`).
fn revoke_records<'b>(
    j: &Journal<'_>,
    block: &'b [u8],
) -> Result<impl Iterator<Item = u64> + 'b, String> {
    let csum_size = if j.sb.csum_v2or3() { 4 } else { 0 };
    let count = be32(block, 12) as usize;
    if count > block.len() - csum_size {
        return Err(format!(
            "r_count {count} exceeds the block size {}",
            block.len()
        ));
    }
    let record_len = if j.sb.incompat & INCOMPAT_64BIT != 0 {
        8
    } else {
        4
    };
    // Records run from byte 16 while a whole record fits below r_count.
    let n = count.saturating_sub(16) / record_len;
    Ok((0..n).map(move |i| {
        let off = 16 + i * record_len;
        if record_len == 4 {
            u64::from(be32(block, off))
        } else {
            be64(block, off)
        }
    }))
}

/// Refuses a tag that would overwrite a block outside the filesystem or
/// inside the journal (the kernel would write either; neither happens in a
/// journal that is not corrupt, and the latter would corrupt the log as it
/// is being read).
fn check_target(j: &Journal<'_>, sequence: u32, tag: &Tag) -> Result<()> {
    let detail = if tag.target >= j.fs_blocks {
        format!(
            "a tag at journal block {} names filesystem block {} beyond the end of the \
             filesystem ({} blocks)",
            tag.log_block, tag.target, j.fs_blocks
        )
    } else if j.map.contains_physical(tag.target) {
        format!(
            "a tag for journal block {} names block {}, which belongs to the journal itself",
            tag.log_block, tag.target
        )
    } else {
        return Ok(());
    };
    Err(
        Error::corrupt(format!("replaying journal transaction {sequence}"), detail)
            .with_path(j.dev.describe()),
    )
}

/// Refuses a journal whose fast-commit area holds commits for the
/// transaction after the log: replaying those needs ext4 logic (inode and
/// extent edits) that this crate deliberately does not implement.
fn check_fast_commit(j: &Journal<'_>, end: u32, rec: &mut Recovery) -> Result<()> {
    if j.sb.incompat & INCOMPAT_FAST_COMMIT == 0 {
        return Ok(());
    }
    // The kernel places the area at j_last + 1 ..= s_maxlen.
    let fc_first = j.last + 1;
    if fc_first >= j.total_len {
        return Ok(());
    }
    let block = j.read(fc_first)?;
    if le16(&block, 0) != FC_TAG_HEAD {
        return Ok(());
    }
    let tid = le32(&block, 8);
    if tid == end {
        return Err(Error::new(ErrorKind::Unsupported, "replaying journal")
            .with_path(j.dev.describe())
            .with_detail(format!(
                "the fast-commit area holds commits for transaction {tid}: fast-commit journal \
                 replay is not supported: replay with `e2fsck -E journal_only` on a copy, or use \
                 the kernel engine"
            )));
    }
    rec.notes.push(format!(
        "the fast-commit area holds stale commits (transaction {tid}, log ends at {end}); \
         ignored as the kernel does"
    ));
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn tid_comparison_wraps() {
        assert!(tid_gt(5, 4));
        assert!(!tid_gt(4, 4));
        assert!(tid_gt(0, u32::MAX));
        assert!(!tid_gt(u32::MAX, 0));
    }

    #[test]
    fn tag_sizes_match_journal_tag_bytes() {
        let mut sb = JournalSuperblock {
            block_size: 4096,
            maxlen: 1024,
            first: 1,
            sequence: 1,
            start: 0,
            errno: 0,
            compat: 0,
            incompat: 0,
            uuid: [0; 16],
            num_fc_blocks: 0,
        };
        assert_eq!(sb.tag_bytes(), 8);
        sb.incompat = INCOMPAT_64BIT;
        assert_eq!(sb.tag_bytes(), 12);
        sb.incompat = INCOMPAT_CSUM_V2;
        assert_eq!(sb.tag_bytes(), 10);
        sb.incompat = INCOMPAT_CSUM_V2 | INCOMPAT_64BIT;
        assert_eq!(sb.tag_bytes(), 14);
        sb.incompat = INCOMPAT_CSUM_V3;
        assert_eq!(sb.tag_bytes(), 16);
    }
}
