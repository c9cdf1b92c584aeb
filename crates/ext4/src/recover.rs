//! Journal recovery written into the device itself: the in-place
//! counterpart of [`crate::replay`], for the write engine.
//!
//! [`recover_in_place`] plans the kernel's recovery ([`crate::plan_replay`])
//! and writes it with [`crate::ReplayPlan::write_into`] (replayed blocks,
//! then the emptied journal superblock, then the ext4 superblock without
//! `needs_recovery`, flushing between the steps, so a crash midway leaves a
//! journal that still recovers). It refuses, before writing anything, what
//! e2fsck would only half-fix: a commit block that fails its checksum and
//! journaled blocks that fail theirs. `plan_replay` already refuses
//! fast-commit data, external and shared journals and corrupt journals,
//! each with its way out.

use rescue_io::{BlockWrite, Error, ErrorKind, Result};

use crate::superblock::{OFF_STATE, STATE_ERROR};
use crate::{needs_recovery, plan_replay};

/// What [`recover_in_place`] did.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RecoveryReport {
    /// False when the journal needed no recovery: nothing was written.
    pub recovered: bool,
    /// Complete transactions replayed.
    pub transactions: u32,
    /// First transaction in the log (`s_sequence` before recovery).
    pub first_transaction: u32,
    /// The journal superblock's new `s_sequence`.
    pub next_sequence: u32,
    /// Journaled blocks applied (a block logged by several transactions
    /// counts each time, as the kernel counts).
    pub blocks_replayed: u64,
    /// Journaled blocks skipped because a revoke record cancelled them.
    pub blocks_revoked: u64,
    /// Filesystem blocks written (replayed blocks plus the two superblocks).
    pub blocks_written: usize,
    /// The superblock now says the filesystem has errors (the journal
    /// recorded an error from the last mount): run `e2fsck -f`.
    pub has_errors: bool,
    /// What the recovery noticed, one sentence each.
    pub notes: Vec<String>,
}

/// Recovers the journal of the ext3/ext4 filesystem on `dev` into `dev`,
/// as the kernel does at mount time and `e2fsck -E journal_only` does.
///
/// A filesystem without `needs_recovery` is left untouched
/// (`recovered: false`). Refuses, writing nothing, when a commit block or a
/// journaled block fails its checksum (the kernel would refuse to mount;
/// `e2fsck -fy` on a copy replays what it can and repairs the rest), and
/// whatever [`plan_replay`] refuses (fast-commit data, external journals,
/// corrupt journals). Checks afterwards that `needs_recovery` is clear.
pub fn recover_in_place(dev: &dyn BlockWrite) -> Result<RecoveryReport> {
    let op = "recovering the journal in place";
    let Some(plan) = plan_replay(dev)? else {
        return Ok(RecoveryReport {
            recovered: false,
            transactions: 0,
            first_transaction: 0,
            next_sequence: 0,
            blocks_replayed: 0,
            blocks_revoked: 0,
            blocks_written: 0,
            has_errors: false,
            notes: Vec::new(),
        });
    };
    let way_out = "nothing was written; run `e2fsck -fy` on a copy of the image (it replays \
                   what it can and repairs the rest) and continue with that copy";
    if let Some(tid) = plan.failed_commit {
        return Err(Error::new(ErrorKind::Corrupt, op)
            .with_path(dev.describe())
            .with_detail(format!(
                "the commit block of journal transaction {tid} fails its checksum, so the \
                 kernel would refuse to mount; {way_out}"
            )));
    }
    if plan.needs_full_check {
        return Err(Error::new(ErrorKind::Corrupt, op)
            .with_path(dev.describe())
            .with_detail(format!(
                "journaled blocks fail their checksums, so the kernel would refuse to mount; \
                 {way_out}"
            )));
    }
    plan.write_into(dev)?;
    if needs_recovery(dev)? {
        return Err(Error::new(ErrorKind::Io, op)
            .with_path(dev.describe())
            .with_detail(
                "needs_recovery is still set after writing the recovery: the device did not \
                 keep the writes; check the host storage",
            ));
    }
    let state = u16::from_le_bytes([
        plan.superblock.get(OFF_STATE).copied().unwrap_or(0),
        plan.superblock.get(OFF_STATE + 1).copied().unwrap_or(0),
    ]);
    Ok(RecoveryReport {
        recovered: true,
        transactions: plan.transactions,
        first_transaction: plan.first_transaction,
        next_sequence: plan.next_sequence,
        blocks_replayed: plan.blocks_replayed,
        blocks_revoked: plan.blocks_revoked,
        blocks_written: plan.writes.len(),
        has_errors: state & STATE_ERROR != 0,
        notes: plan.notes,
    })
}
