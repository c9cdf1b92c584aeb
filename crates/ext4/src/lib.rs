//! ext2/3/4 support for rescue-disk: jbd2 journal replay without writing.
//!
//! A crash-consistent snapshot of a running VM almost always has a dirty
//! journal: the newest metadata (and, with `data=journal`, data) lives only
//! in the log. [`replay`] performs the recovery the kernel performs at mount
//! time, the way `e2fsck -E journal_only` does it, but into an in-memory
//! copy-on-write [`ReplayOverlay`]: readers see the filesystem as it will
//! be after recovery, and the disk is never written.
//!
//! The same computation is available as a [`ReplayPlan`] (the blocks to
//! write, in a crash-safe order, plus the final superblock) so the write
//! engine can replay into the device itself through its undo journal
//! ([`ReplayPlan::write_into`]).
//!
//! Code map: `superblock` validates the ext4 superblock; `inode` finds the
//! journal inode and maps its blocks (extents or ext3 indirect blocks);
//! `journal` decodes jbd2 and runs the kernel's three recovery passes;
//! `overlay` serves reads; `crc` holds CRC-32C and the kernel's `crc32_be`.
//!
//! Invariants: this crate reads only through `rescue_io`, and writes only in
//! [`ReplayPlan::write_into`], to a device the caller opened for writing.
//! Guest bytes are hostile: no panic, no unbounded allocation (memory is
//! proportional to the journal's log, which is bounded by the filesystem
//! size), no loop that a corrupt log can make endless.

mod bytes;
mod crc;
mod inode;
mod journal;
mod mem;
mod overlay;
mod recover;
mod superblock;

use std::sync::Arc;

use rescue_io::{BlockRead, BlockWrite, Device};
use tracing::debug;

pub use mem::MemDevice;
pub use overlay::ReplayOverlay;
pub use recover::{recover_in_place, RecoveryReport};
pub use rescue_io::{Error, ErrorKind, Result};

use inode::{map_blocks, read_inode, FileMap, InodeInfo, MapError};
use journal::{Journal, JournalSuperblock};
use superblock::{Superblock, INCOMPAT_JOURNAL_DEV, JNL_BACKUP_BLOCKS};

/// A filesystem after journal replay.
#[derive(Debug, Clone)]
pub struct Replayed {
    /// The replayed view ([`ReplayOverlay`]), or the original device when
    /// the journal did not need recovery.
    pub device: Device,
    /// Complete transactions replayed.
    pub transactions: u32,
    /// Journaled blocks applied (a block logged by several transactions
    /// counts each time, as the kernel counts).
    pub blocks_replayed: u64,
    /// Journaled blocks skipped because a revoke record cancelled them.
    pub blocks_revoked: u64,
    /// What the replay noticed, for the user (one sentence each).
    pub notes: Vec<String>,
}

/// Where the new contents of one block come from.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum WriteSource {
    /// A copy in the journal: disk block `block_number` of the same device.
    /// If `escaped`, its first four bytes must be replaced by the jbd2 magic
    /// number (`0xc03b3998`, big-endian) that the kernel escaped.
    Journal {
        /// Disk block number (in filesystem blocks) of the journal copy.
        block_number: u64,
        /// The copy's first four bytes were zeroed by the logger.
        escaped: bool,
    },
    /// Contents rebuilt in memory (the superblocks): exactly one block.
    Bytes(Arc<[u8]>),
}

/// One block to write when replaying into the device.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PlannedWrite {
    /// Filesystem block number to overwrite.
    pub block_number: u64,
    /// Its new contents.
    pub source: WriteSource,
}

impl PlannedWrite {
    /// The block's new contents, reading the journal copy from `fs` (the
    /// device the plan was made from) when needed.
    pub fn read_bytes(&self, fs: &dyn BlockRead, block_size: u32) -> Result<Vec<u8>> {
        match &self.source {
            WriteSource::Bytes(b) => Ok(b.to_vec()),
            WriteSource::Journal {
                block_number,
                escaped,
            } => {
                let mut buf = vec![0u8; block_size as usize];
                fs.read_exact_at(block_number * u64::from(block_size), &mut buf)?;
                if *escaped {
                    bytes::put(&mut buf, 0, &journal::MAGIC.to_be_bytes());
                }
                Ok(buf)
            }
        }
    }
}

/// Everything journal recovery would write, computed without writing.
#[derive(Debug, Clone)]
pub struct ReplayPlan {
    /// Filesystem block size in bytes.
    pub block_size: u32,
    /// Blocks to write, in this order: the replayed blocks (ascending block
    /// number, each with its final contents), then the journal superblock
    /// (log emptied: `s_start` 0, `s_sequence` advanced), then the block
    /// holding the ext4 superblock (`needs_recovery` cleared). A crash
    /// anywhere in this sequence leaves a filesystem that recovers again.
    pub writes: Vec<PlannedWrite>,
    /// Number of the leading `writes` entries that are replayed blocks.
    pub replayed_writes: usize,
    /// The final 1024-byte ext4 superblock (also inside the last write).
    pub superblock: Vec<u8>,
    /// Complete transactions replayed.
    pub transactions: u32,
    /// First transaction in the log (`s_sequence` before replay).
    pub first_transaction: u32,
    /// The journal superblock's new `s_sequence`.
    pub next_sequence: u32,
    /// Journaled blocks applied (kernel's `nr_replays`).
    pub blocks_replayed: u64,
    /// Journaled blocks skipped because of revoke records (`nr_revoke_hits`).
    pub blocks_revoked: u64,
    /// Revoke records read in replayed transactions.
    pub revoke_records: u64,
    /// Journal blocks read by the scan.
    pub log_blocks_scanned: u64,
    /// The live log wraps round the end of the journal.
    pub log_wrapped: bool,
    /// Recovery hit an error that e2fsck reports (data block checksum
    /// failures): the result is what e2fsck leaves, and a full `e2fsck -f`
    /// is needed; the kernel would refuse to mount.
    pub needs_full_check: bool,
    /// A commit block failed its checksum (without async_commit): the
    /// kernel refuses to mount ("journal transaction N is corrupt"); like
    /// e2fsck, this plan replays the transactions before it and marks the
    /// filesystem as having errors. A writer may prefer to refuse.
    pub failed_commit: Option<u32>,
    /// What the replay noticed, for the user.
    pub notes: Vec<String>,
}

impl ReplayPlan {
    /// Replays into `dev`, which must hold the same bytes the plan was made
    /// from (journal copies are read from it). Writes the replayed blocks,
    /// flushes, then the journal superblock, flushes, then the ext4
    /// superblock, flushes: the order e2fsck uses, so a crash at any point
    /// leaves a filesystem whose journal still recovers.
    pub fn write_into(&self, dev: &dyn BlockWrite) -> Result<()> {
        let bs = u64::from(self.block_size);
        for (i, w) in self.writes.iter().enumerate() {
            let bytes = w.read_bytes(dev, self.block_size)?;
            dev.write_all_at(w.block_number * bs, &bytes)?;
            if i + 1 >= self.replayed_writes {
                dev.flush()?;
            }
        }
        dev.flush()
    }
}

/// Whether the filesystem's journal needs recovery (`needs_recovery` set).
///
/// Fails if `fs` holds no valid ext2/3/4 superblock.
pub fn needs_recovery(fs: &dyn BlockRead) -> Result<bool> {
    Ok(Superblock::read(fs)?.needs_recovery())
}

/// Replays the journal of the ext3/ext4 filesystem on `fs` into memory.
///
/// Returns `fs` itself when no recovery is needed. Refuses (with an error
/// naming the way out) external journals, shared journals, unknown journal
/// features, fast-commit data and corrupt journals.
pub fn replay(fs: Device) -> Result<Replayed> {
    let Some(plan) = plan_replay(&*fs)? else {
        return Ok(Replayed {
            device: fs,
            transactions: 0,
            blocks_replayed: 0,
            blocks_revoked: 0,
            notes: Vec::new(),
        });
    };
    let overlay = ReplayOverlay::new(fs, &plan);
    // `Device` carries no Send/Sync bound by rescue_io's design.
    #[allow(clippy::arc_with_non_send_sync)]
    let device: Device = Arc::new(overlay);
    Ok(Replayed {
        device,
        transactions: plan.transactions,
        blocks_replayed: plan.blocks_replayed,
        blocks_revoked: plan.blocks_revoked,
        notes: plan.notes,
    })
}

/// Computes what journal recovery would write, or `None` when the
/// filesystem does not need recovery.
///
/// Like the kernel, a log is only replayed when `needs_recovery` is set (a
/// non-empty log without it is noted by e2fsck and ignored by the kernel).
pub fn plan_replay(fs: &dyn BlockRead) -> Result<Option<ReplayPlan>> {
    let sb = Superblock::read(fs)?;
    let path = fs.describe();
    if sb.incompat & INCOMPAT_JOURNAL_DEV != 0 {
        return Err(Error::unsupported(
            "reading ext4 superblock",
            "this volume is an external jbd2 journal device, not a filesystem; \
             replay happens when the filesystem that uses it is checked",
        )
        .with_path(path));
    }
    if !sb.needs_recovery() {
        return Ok(None);
    }
    if !sb.has_journal() {
        return Err(Error::corrupt(
            "reading ext4 superblock",
            "needs_recovery is set but the filesystem has no journal (has_journal is clear); \
             run `e2fsck` on a copy, which clears the flag",
        )
        .with_path(path));
    }
    if sb.journal_inum == 0 {
        let uuid: String = sb.journal_uuid.iter().map(|b| format!("{b:02x}")).collect();
        return Err(Error::unsupported(
            "opening journal",
            format!(
                "the journal lives on an external device (journal UUID {uuid}, device number \
                 {:#x}); external journals are not supported: attach that device and use the \
                 kernel engine, or run `e2fsck -E journal_only -j JOURNAL_DEVICE` on a copy",
                sb.journal_dev
            ),
        )
        .with_path(path));
    }
    let mut notes = Vec::new();
    let journal = open_journal(fs, &sb, &mut notes)?;
    let rec = journal::recover(&journal)?;
    notes.extend(rec.notes.iter().cloned());

    let bs = sb.block_size;
    let mut writes: Vec<PlannedWrite> = rec
        .blocks
        .iter()
        .map(|(&block, logged)| PlannedWrite {
            block_number: block,
            source: WriteSource::Journal {
                block_number: logged.physical,
                escaped: logged.escaped,
            },
        })
        .collect();
    let replayed_writes = writes.len();

    // The journal superblock as e2fsck leaves it: log empty, sequence
    // advanced past every transaction that may still be in the log, error
    // cleared (it is carried over to the filesystem state below).
    // After a failed recovery (data block checksum errors) e2fsck leaves
    // s_sequence as it was (it skips updating j_tail_sequence).
    let next_sequence = if rec.block_errors > 0 {
        rec.start_transaction
    } else {
        rec.end_transaction.wrapping_add(1)
    };
    let jsb_physical = journal.physical(0)?;
    let mut jsb_block = journal.read(0)?;
    bytes::put(
        &mut jsb_block,
        journal::JSB_SEQUENCE,
        &next_sequence.to_be_bytes(),
    );
    bytes::put(&mut jsb_block, journal::JSB_START, &0u32.to_be_bytes());
    bytes::put(&mut jsb_block, journal::JSB_ERRNO, &0u32.to_be_bytes());
    journal::update_superblock_checksum(&mut jsb_block, &journal.sb);
    writes.push(PlannedWrite {
        block_number: jsb_physical,
        source: overlay::bytes(jsb_block),
    });

    // The ext4 superblock, starting from its replayed copy if the log had one.
    let (sb_block, sb_offset) = sb.superblock_location();
    let mut block = match rec.blocks.get(&sb_block) {
        Some(logged) => PlannedWrite {
            block_number: sb_block,
            source: WriteSource::Journal {
                block_number: logged.physical,
                escaped: logged.escaped,
            },
        }
        .read_bytes(fs, bs)?,
        None => {
            let mut b = vec![0u8; bs as usize];
            fs.read_exact_at(sb_block * u64::from(bs), &mut b)?;
            b
        }
    };
    let sb_bytes = &mut block[sb_offset..sb_offset + superblock::SUPERBLOCK_SIZE];
    let incompat = bytes::le32(sb_bytes, superblock::OFF_FEATURE_INCOMPAT);
    bytes::put(
        sb_bytes,
        superblock::OFF_FEATURE_INCOMPAT,
        &(incompat & !superblock::INCOMPAT_RECOVER).to_le_bytes(),
    );
    let mut state = bytes::le16(sb_bytes, superblock::OFF_STATE);
    let needs_full_check = rec.block_errors > 0;
    if needs_full_check {
        state &= !superblock::STATE_VALID;
    }
    if rec.failed_commit.is_some() || journal.sb.errno != 0 {
        state |= superblock::STATE_ERROR;
        if journal.sb.errno != 0 {
            notes.push(format!(
                "the journal recorded error {} from the last mount: the filesystem is marked as \
                 having errors, as e2fsck and the kernel do; run `e2fsck -f`",
                journal.sb.errno
            ));
        }
    }
    bytes::put(sb_bytes, superblock::OFF_STATE, &state.to_le_bytes());
    superblock::update_checksum(sb_bytes);
    let final_superblock = sb_bytes.to_vec();
    if let Err(why) = Superblock::parse(final_superblock.clone(), fs.size_in_bytes()) {
        notes.push(format!(
            "the superblock replayed from the journal does not validate: {why}"
        ));
    }
    writes.push(PlannedWrite {
        block_number: sb_block,
        source: overlay::bytes(block),
    });

    if rec.transactions > 0 {
        notes.insert(
            0,
            format!(
                "replayed {} journal transaction(s) ({}..{}): {} block(s) written, {} revoked",
                rec.transactions,
                rec.start_transaction,
                rec.end_transaction.wrapping_sub(1),
                rec.replays,
                rec.revoke_hits
            ),
        );
    } else {
        notes.insert(
            0,
            "needs_recovery was set but the journal held no complete transaction".to_string(),
        );
    }
    debug!(writes = writes.len(), "journal replay plan ready");
    Ok(Some(ReplayPlan {
        block_size: bs,
        writes,
        replayed_writes,
        superblock: final_superblock,
        transactions: rec.transactions,
        first_transaction: rec.start_transaction,
        next_sequence,
        blocks_replayed: rec.replays,
        blocks_revoked: rec.revoke_hits,
        revoke_records: rec.revokes,
        log_blocks_scanned: rec.log_blocks_read,
        log_wrapped: rec.wrapped,
        needs_full_check,
        failed_commit: rec.failed_commit,
        notes,
    }))
}

/// Finds the journal inode, maps it and loads the journal superblock,
/// falling back to the superblock's `s_jnl_blocks` copy of the inode's
/// block map when the inode itself is unusable (as e2fsck does).
fn open_journal<'a>(
    fs: &'a dyn BlockRead,
    sb: &Superblock,
    notes: &mut Vec<String>,
) -> Result<Journal<'a>> {
    let ino = sb.journal_inum;
    let op = format!("opening journal inode {ino}");
    let primary = read_inode(fs, sb, ino).and_then(|inode| load(fs, sb, &inode, &op));
    match primary {
        Ok(j) => Ok(j),
        Err(e) if e.kind() == ErrorKind::Corrupt && sb.jnl_backup_type == JNL_BACKUP_BLOCKS => {
            let backup = InodeInfo::from_journal_backup(sb);
            let j = load(fs, sb, &backup, &format!("{op} (superblock backup copy)")).map_err(
                |backup_err| {
                    Error::corrupt(
                        op.clone(),
                        format!("{e}; the superblock's backup copy fails too: {backup_err}"),
                    )
                    .with_path(fs.describe())
                },
            )?;
            notes.push(format!(
                "the journal inode is unusable ({e}); its backup in the superblock \
                 (s_jnl_blocks) was used, as e2fsck does"
            ));
            Ok(j)
        }
        Err(e) => Err(e),
    }
}

/// Builds a journal from a (real or backup) journal inode.
fn load<'a>(
    fs: &'a dyn BlockRead,
    sb: &Superblock,
    inode: &InodeInfo,
    op: &str,
) -> Result<Journal<'a>> {
    let corrupt = |d: String| Error::corrupt(op.to_string(), d).with_path(fs.describe());
    if let Some(defect) = inode.journal_defect(sb.block_size) {
        return Err(corrupt(format!("the inode cannot be a journal: {defect}")));
    }
    let len_in_blocks = inode.size_in_bytes / u64::from(sb.block_size);
    if len_in_blocks > sb.blocks_count || len_in_blocks > u64::from(u32::MAX) {
        return Err(corrupt(format!(
            "the journal claims {len_in_blocks} blocks, more than the filesystem or jbd2 allows"
        )));
    }
    let map: FileMap = map_blocks(fs, sb, inode, len_in_blocks).map_err(|e| match e {
        MapError::Corrupt(d) => corrupt(format!("mapping the journal's blocks: {d}")),
        MapError::Io(e) => e,
    })?;
    let jsb_physical = map
        .physical(0)
        .ok_or_else(|| corrupt("journal block 0 is not mapped".into()))?;
    let mut raw = vec![0u8; sb.block_size as usize];
    fs.read_exact_at(jsb_physical * u64::from(sb.block_size), &mut raw)?;
    let jsb = JournalSuperblock::parse(&raw).map_err(|(kind, detail)| {
        Error::new(kind, "reading journal superblock")
            .with_path(fs.describe())
            .with_offset(jsb_physical * u64::from(sb.block_size))
            .with_detail(if kind == ErrorKind::Corrupt {
                format!("{detail}; run `e2fsck` on a copy")
            } else {
                detail
            })
    })?;
    Journal::new(fs, map, jsb, sb.block_size, sb.blocks_count).map_err(|d| {
        Error::corrupt(
            "reading journal superblock",
            format!("{d}; run `e2fsck` on a copy"),
        )
        .with_path(fs.describe())
        .with_offset(jsb_physical * u64::from(sb.block_size))
    })
}

/// Fuzz entry point: treats `data` as a small filesystem image, plans the
/// replay and reads the result. Must never panic, whatever `data` holds.
#[doc(hidden)]
pub fn fuzz_journal(data: &[u8]) {
    #[allow(clippy::arc_with_non_send_sync)]
    let dev: Device = Arc::new(MemDevice::new(data.to_vec(), "fuzz"));
    // Errors are expected outcomes here; only panics and hangs are bugs.
    let _ = exercise(dev);
}

/// Runs replay on `dev` and reads every block of the result (test and fuzz
/// helper). Returns the replay outcome.
#[doc(hidden)]
pub fn exercise(dev: Device) -> Result<Replayed> {
    let _ = needs_recovery(&*dev);
    let replayed = replay(dev)?;
    let size = replayed.device.size_in_bytes();
    let mut buf = vec![0u8; 64 * 1024];
    let mut pos = 0u64;
    while pos < size {
        let n = (size - pos).min(buf.len() as u64) as usize;
        // Odd-sized, unaligned reads exercise the overlay's block splitting.
        let n = if pos == 0 && n > 1500 { 1500 } else { n };
        replayed.device.read_exact_at(pos, &mut buf[..n])?;
        pos += n as u64;
    }
    Ok(replayed)
}
