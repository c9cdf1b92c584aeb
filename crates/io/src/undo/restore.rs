//! `undo`: writing the saved original bytes back, and finding undo logs.
//!
//! Undo is idempotent, hence crash-safe: it only ever writes original
//! bytes and the original size, so running it again after a crash
//! finishes the job. Before writing it checks that the target is the file
//! the log was recorded for and, when the session committed, that every
//! saved range still holds either what the session left or the original
//! (a partial earlier undo); anything else means the target was used since
//! and is refused unless forced. After writing it syncs, re-reads every
//! range and verifies it against the hash recorded before the session.
//!
//! This module must never write a byte the log's checksums do not vouch
//! for, and never write to a target of another identity.

use std::path::{Path, PathBuf};

use super::log::{self, ParsedLog, UndoLogState};
use super::{fault_limit, fault_point, now, utc_stamp, UNDO_EXTENSION};
use crate::raw::Identity;
use crate::{BlockRead, BlockWrite, Error, ErrorKind, Format, RawFile, Result, SourceKind};

/// How to run [`undo`].
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct UndoMode {
    /// Restore even though the target changed since the session committed,
    /// or was replaced by another file at the same path.
    pub force: bool,
    /// Check everything and report what would be restored, writing nothing.
    pub dry_run: bool,
}

/// What the commit record said about the target before undo wrote.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum CommitCheck {
    /// No commit record: the session crashed or was interrupted; there was
    /// nothing to compare the target with.
    Absent,
    /// The target held what the session left (or, after an interrupted
    /// undo, the original bytes).
    Unchanged,
    /// The target had changed since; restored anyway because of `force`.
    ChangedForced {
        /// Saved ranges whose content was neither the session's nor the
        /// original.
        ranges_changed: u64,
    },
}

/// What [`undo`] did (or, in a dry run, would do).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct UndoReport {
    /// The undo log used.
    pub undo_path: PathBuf,
    /// The target restored.
    pub target: PathBuf,
    /// Run id of the session undone.
    pub run_id: String,
    /// Image format the session wrote through.
    pub format: Format,
    /// Saved ranges in the log.
    pub ranges_total: u64,
    /// Ranges written back (the others already held their original bytes).
    pub ranges_restored: u64,
    /// Bytes written back.
    pub bytes_restored: u64,
    /// Size of the target before undo.
    pub size_before: u64,
    /// Size of the target before the session, and after undo.
    pub original_size: u64,
    /// Whether undo changed the size of the target (cut what the session
    /// appended).
    pub resized: bool,
    /// Whether the log had a commit record (absent: the session crashed),
    /// and what comparing with it showed.
    pub commit: CommitCheck,
    /// Whether an earlier undo of this log had completed.
    pub previously_undone: bool,
    /// A torn last record (crash while appending it) was ignored; its
    /// target write never happened.
    pub torn_tail_ignored: bool,
    /// Nothing was written.
    pub dry_run: bool,
    /// Every range was re-read after the sync and matched the hash of its
    /// original bytes, and the size matched (false in a dry run).
    pub verified: bool,
}

impl std::fmt::Display for UndoReport {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let verb = if self.dry_run {
            "would restore"
        } else {
            "restored"
        };
        write!(
            f,
            "{verb} {} from {} (run {}, {}): {} of {} saved ranges ({} bytes) written back",
            self.target.display(),
            self.undo_path.display(),
            self.run_id,
            self.format,
            self.ranges_restored,
            self.ranges_total,
            self.bytes_restored
        )?;
        if self.resized {
            write!(
                f,
                ", size {} -> {} bytes",
                self.size_before, self.original_size
            )?;
        }
        match self.commit {
            CommitCheck::Absent if self.previously_undone => {}
            CommitCheck::Absent => f.write_str(
                "; the session had not committed (it crashed or was interrupted), so there was nothing to compare the target with",
            )?,
            CommitCheck::Unchanged => f.write_str("; the target was as the session left it")?,
            CommitCheck::ChangedForced { ranges_changed } => write!(
                f,
                "; the target had changed since the session ({ranges_changed} regions differed): restored anyway (--force)"
            )?,
        }
        if self.previously_undone {
            f.write_str("; this log had been undone before")?;
        }
        if self.torn_tail_ignored {
            f.write_str(
                "; a torn last record (crash while saving it, before its write) was ignored",
            )?;
        }
        if self.verified {
            f.write_str("; verified: every range matches its original bytes")?;
        }
        Ok(())
    }
}

impl std::fmt::Display for UndoLogInfo {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let state = match self.state {
            UndoLogState::Committed => "committed",
            UndoLogState::NotCommitted => "not committed (crashed or interrupted)",
            UndoLogState::Undone => "undone",
        };
        write!(
            f,
            "{} run {} started {} ({}, {state}, {} bytes)",
            self.path.display(),
            self.run_id,
            utc_stamp(self.started_at),
            self.format,
            self.log_bytes
        )?;
        if !self.identity_matches {
            f.write_str(" [recorded for another file at this path]")?;
        }
        Ok(())
    }
}

/// One undo log found for a target.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct UndoLogInfo {
    /// The log file.
    pub path: PathBuf,
    /// Run id of the session.
    pub run_id: String,
    /// Target path recorded in the log.
    pub target_path: PathBuf,
    /// When the session started (seconds since the epoch).
    pub started_at: u64,
    /// Image format of the session.
    pub format: Format,
    /// Size of the target before the session.
    pub original_size: u64,
    /// Committed, crashed, or already undone.
    pub state: UndoLogState,
    /// DATA records in the log.
    pub data_records: u64,
    /// Size of the log in bytes.
    pub log_bytes: u64,
    /// Whether the target path names the same file (device and inode, or
    /// device number) as when the session ran.
    pub identity_matches: bool,
}

/// Undo logs in `dir` recorded for `target_path`, newest first. A log
/// matches when it names the same file (identity) or the same canonical
/// path. Files that are not readable undo logs are skipped with a warning.
pub fn find_undo_logs(dir: &Path, target_path: &Path) -> Result<Vec<UndoLogInfo>> {
    let dir_name = dir.display().to_string();
    let entries = match std::fs::read_dir(dir) {
        Ok(e) => e,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(Vec::new()),
        Err(e) => return Err(Error::io("listing undo logs in", e).with_path(dir_name)),
    };
    let canonical = std::fs::canonicalize(target_path).unwrap_or_else(|_| target_path.to_owned());
    let identity = RawFile::open_read_only(target_path)
        .and_then(|r| r.identity())
        .ok();
    let mut found = Vec::new();
    for entry in entries {
        let entry =
            entry.map_err(|e| Error::io("listing undo logs in", e).with_path(dir_name.clone()))?;
        let path = entry.path();
        if path.extension().is_none_or(|e| e != UNDO_EXTENSION) {
            continue;
        }
        let info = (|| -> Result<Option<UndoLogInfo>> {
            let (file, file_len) = log::open_log(&path)?;
            let header = log::read_header(&file, &path, file_len)?;
            let identity_matches =
                identity.is_some_and(|i| same_identity(&i, &header.identity, header.source));
            if !identity_matches && header.target_path != canonical {
                return Ok(None);
            }
            let (state, data_records) = log::scan(&file, &path, &header, file_len)?;
            Ok(Some(UndoLogInfo {
                path: path.clone(),
                run_id: header.run_id,
                target_path: header.target_path,
                started_at: header.started_at,
                format: header.format,
                original_size: header.original_size,
                state,
                data_records,
                log_bytes: file_len,
                identity_matches,
            }))
        })();
        match info {
            Ok(Some(info)) => found.push(info),
            Ok(None) => {}
            Err(e) => tracing::warn!(log = %path.display(), "skipping unreadable undo log: {e}"),
        }
    }
    found.sort_by(|a, b| {
        b.started_at
            .cmp(&a.started_at)
            .then_with(|| b.run_id.cmp(&a.run_id))
            .then_with(|| b.path.cmp(&a.path))
    });
    Ok(found)
}

fn same_identity(now: &Identity, logged: &Identity, source: SourceKind) -> bool {
    match source {
        SourceKind::File => now.dev == logged.dev && now.ino == logged.ino && now.rdev == 0,
        SourceKind::BlockDevice => now.rdev == logged.rdev && now.rdev != 0,
    }
}

/// Restores the target of the undo log at `undo_path` to its state before
/// the session, byte for byte, and verifies it. See the module docs.
pub fn undo(undo_path: &Path, target_path: &Path, mode: UndoMode) -> Result<UndoReport> {
    let parsed = log::parse(undo_path)?;
    let target_name = target_path.display().to_string();
    let target = if mode.dry_run {
        RawFile::open_read_only(target_path)?
    } else {
        RawFile::open_read_write(target_path)?
    };
    if !mode.dry_run {
        target.lock_exclusive()?;
        target.check_not_in_use()?;
    }
    check_identity(&parsed, &target, target_path, mode)?;
    let header = &parsed.header;
    let size_before = target.size_in_bytes();
    let logged = header.target_path.display().to_string();

    // Where each range stands: original, as the session left it, or other.
    let mut to_restore = Vec::new();
    let mut changed = 0u64;
    for (i, extent) in parsed.extents.iter().enumerate() {
        let current = read_current(&target, extent.offset, extent.len)?;
        let hash = current.as_deref().map(log::sha256);
        if hash == Some(extent.sha256) {
            continue;
        }
        let as_left = match (&parsed.commit, hash) {
            (Some(c), Some(h)) => c.entries[i].sha256 == h,
            _ => false,
        };
        if !as_left {
            changed += 1;
        }
        to_restore.push(extent);
    }
    // What the session appended must be as it left it too (a VM writes
    // to clusters the session allocated), unless undo already cut it.
    let size_ok = match &parsed.commit {
        Some(c) if size_before == c.final_size && c.final_size > header.original_size => {
            let tail = super::sha256_range(&target, header.original_size, c.final_size)?;
            if tail != c.tail_sha256 {
                changed += 1;
            }
            true
        }
        Some(c) => size_before == c.final_size || size_before == header.original_size,
        None => true,
    };
    let commit = match (&parsed.commit, parsed.undone_at) {
        // An undo completed before: every range must still be original.
        (_, Some(at)) => {
            if to_restore.is_empty() && size_before == header.original_size {
                if parsed.commit.is_some() {
                    CommitCheck::Unchanged
                } else {
                    CommitCheck::Absent
                }
            } else if mode.force {
                CommitCheck::ChangedForced {
                    ranges_changed: to_restore.len() as u64,
                }
            } else {
                return Err(changed_error(
                    target_path,
                    &format!(
                        "it was already restored by an undo at {}, and has changed since",
                        utc_stamp(at)
                    ),
                    to_restore.len() as u64,
                    parsed.extents.len(),
                ));
            }
        }
        (None, None) => CommitCheck::Absent,
        (Some(c), None) => {
            if changed == 0 && size_ok {
                CommitCheck::Unchanged
            } else if mode.force {
                CommitCheck::ChangedForced {
                    ranges_changed: changed,
                }
            } else {
                let size_note = if size_ok {
                    String::new()
                } else {
                    format!(
                        " (its size is {size_before} bytes; the session left {})",
                        c.final_size
                    )
                };
                return Err(changed_error(
                    target_path,
                    &format!(
                        "it changed after the write session committed at {}{size_note}: it was probably used since (e.g. the VM booted from it)",
                        utc_stamp(c.committed_at)
                    ),
                    changed,
                    parsed.extents.len(),
                ));
            }
        }
    };

    let resize = size_before != header.original_size;
    if resize && header.source == SourceKind::BlockDevice {
        return Err(Error::new(ErrorKind::Conflict, "undoing")
            .with_path(target_name)
            .with_detail(format!(
                "the block device has {size_before} bytes but the log says {}: it is not the device the session wrote",
                header.original_size
            )));
    }
    if size_before < header.original_size && !mode.force {
        return Err(changed_error(
            target_path,
            &format!(
                "it is smaller ({size_before} bytes) than before the session ({} bytes), which no session does",
                header.original_size
            ),
            0,
            parsed.extents.len(),
        ));
    }
    let bytes_restored: u64 = to_restore.iter().map(|e| e.len).sum();
    let mut report = UndoReport {
        undo_path: undo_path.to_owned(),
        target: target_path.to_owned(),
        run_id: header.run_id.clone(),
        format: header.format,
        ranges_total: parsed.extents.len() as u64,
        ranges_restored: to_restore.len() as u64,
        bytes_restored,
        size_before,
        original_size: header.original_size,
        resized: resize,
        commit,
        previously_undone: parsed.undone_at.is_some(),
        torn_tail_ignored: parsed.torn_tail_at.is_some(),
        dry_run: mode.dry_run,
        verified: false,
    };
    if mode.dry_run {
        return Ok(report);
    }
    tracing::debug!(log = %undo_path.display(), target = %target_name, logged = %logged, ranges = to_restore.len(), "undoing");

    // Write back; every step is idempotent.
    let limit = fault_limit();
    let mut writes = 0u64;
    for extent in &to_restore {
        let bytes = log::read_extent(&parsed.file, undo_path, extent)?;
        fault_point(limit, writes);
        writes += 1;
        target.write_all_at(extent.offset, &bytes)?;
    }
    if resize {
        fault_point(limit, writes);
        target.set_len(header.original_size)?;
    }
    target.sync_all()?;

    // Verify from the file.
    verify(&parsed, &target, target_path)?;
    report.verified = true;
    mark_undone(&parsed, undo_path);
    Ok(report)
}

/// Refuses a target that is not the file the log was recorded for.
fn check_identity(
    parsed: &ParsedLog,
    target: &RawFile,
    target_path: &Path,
    mode: UndoMode,
) -> Result<()> {
    let header = &parsed.header;
    let logged = header.target_path.display();
    if target.source_kind() != header.source {
        return Err(Error::new(ErrorKind::Conflict, "undoing")
            .with_path(target_path.display().to_string())
            .with_detail(format!(
                "this undo log was recorded for {logged}, a {}, but this is a {}: pass the right target",
                kind_name(header.source),
                kind_name(target.source_kind())
            )));
    }
    let identity = target.identity()?;
    if same_identity(&identity, &header.identity, header.source) {
        return Ok(());
    }
    let canonical = std::fs::canonicalize(target_path).unwrap_or_else(|_| target_path.to_owned());
    if mode.force && canonical == header.target_path {
        tracing::warn!(target = %target_path.display(), "the file was replaced since the session; restoring anyway (--force)");
        return Ok(());
    }
    let hint = if canonical == header.target_path {
        "the path is the same but the file was replaced since (another inode); if this copy holds the session's writes, pass --force"
    } else {
        "pass the target the log was recorded for"
    };
    Err(Error::new(ErrorKind::Conflict, "undoing")
        .with_path(target_path.display().to_string())
        .with_detail(format!(
            "this undo log (run {}) was recorded for {logged} (device {:#x}, inode {}), which is not this file: {hint}",
            header.run_id,
            header.identity.dev,
            header.identity.ino,
        )))
}

fn kind_name(k: SourceKind) -> &'static str {
    match k {
        SourceKind::File => "regular file",
        SourceKind::BlockDevice => "block device",
    }
}

fn changed_error(target: &Path, why: &str, ranges: u64, total: usize) -> Error {
    let counts = if ranges > 0 {
        format!(" ({ranges} of {total} saved ranges differ)")
    } else {
        String::new()
    };
    Error::new(ErrorKind::Conflict, "undoing")
        .with_path(target.display().to_string())
        .with_detail(format!(
            "refusing to restore: {why}{counts}; restoring now would mix old and new data. Inspect the target first; pass --force to restore the saved bytes anyway"
        ))
}

/// The current bytes of a range, or `None` if the file is too short.
fn read_current(target: &RawFile, offset: u64, len: u64) -> Result<Option<Vec<u8>>> {
    if offset + len > target.size_in_bytes() {
        return Ok(None);
    }
    // OK to allocate: parse checked len <= MAX_RECORD_DATA.
    let mut buf = vec![0u8; len as usize];
    target.read_exact_at(offset, &mut buf)?;
    Ok(Some(buf))
}

/// Re-reads every range and the size after the sync.
fn verify(parsed: &ParsedLog, target: &RawFile, target_path: &Path) -> Result<()> {
    let name = target_path.display().to_string();
    let size = std::fs::metadata(target_path)
        .map(|m| m.len())
        .map_err(|e| Error::io("verifying", e).with_path(name.clone()))?;
    if parsed.header.source == SourceKind::File && size != parsed.header.original_size {
        return Err(Error::new(ErrorKind::Io, "verifying")
            .with_path(name)
            .with_detail(format!(
                "after undo the file has {size} bytes, not the original {}; run undo again",
                parsed.header.original_size
            )));
    }
    for extent in &parsed.extents {
        let current = read_current(target, extent.offset, extent.len)?;
        if current.as_deref().map(log::sha256) != Some(extent.sha256) {
            return Err(Error::new(ErrorKind::Io, "verifying")
                .with_path(name)
                .with_offset(extent.offset)
                .with_detail(format!(
                    "after undo the {} bytes there do not match the original (sha256 {}); the device may be failing; run undo again",
                    extent.len,
                    log::hex(&extent.sha256)
                )));
        }
    }
    Ok(())
}

/// Appends an UNDONE record, so listings and later undos know. Failure is
/// only a warning: the target is restored either way.
fn mark_undone(parsed: &ParsedLog, undo_path: &Path) {
    use std::os::unix::fs::FileExt;
    let result = (|| -> std::io::Result<()> {
        let file = std::fs::OpenOptions::new().write(true).open(undo_path)?;
        let len = file.metadata()?.len();
        // Drop a torn tail first so that the new record is readable.
        let at = parsed.torn_tail_at.unwrap_or(parsed.file_len);
        if len != parsed.file_len {
            return Err(std::io::Error::other("the undo log changed while undoing"));
        }
        if at < len {
            file.set_len(at)?;
        }
        file.write_all_at(&log::undone_record(now()), at)?;
        file.sync_data()
    })();
    if let Err(e) = result {
        tracing::warn!(log = %undo_path.display(), "the target is restored, but marking the undo log as undone failed: {e}");
    }
}
