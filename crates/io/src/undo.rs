//! The undo journal: every byte a write session overwrites is saved first.
//!
//! [`UndoFile`] wraps the writable host file (raw image, qcow2 file or
//! block device) and sits below qcow2, so that `undo` gives back the
//! target file byte for byte, qcow2 metadata and growth included. Before a
//! range is overwritten for the first time in the session, its original
//! bytes (whole 4 KiB blocks, clipped to the original size) are appended
//! to a host-side undo log and the log is `fdatasync`ed; only then is the
//! target written (write-ahead). Bytes beyond the original size are not
//! saved: the original size is in the log header and `undo` truncates.
//! [`UndoFile::commit`] flushes the target and appends the hash of every
//! saved range as the session left it, so that [`undo`] can tell whether
//! the target changed since (e.g. the VM booted from it).
//!
//! Test hook: with the environment variable
//! `RESCUE_DISK_FAULT_AFTER_WRITES=N`, this module aborts the process
//! (`std::process::abort`, a simulated crash) right before the (N+1)-th
//! modification of a target, by a write session or by `undo`. Crash tests
//! use it; it has no other purpose.
//!
//! This module must never modify the target before the original bytes are
//! durable in the log, never save a block twice, and never write to a
//! target whose identity does not match its log.

mod log;
mod restore;

use std::collections::HashSet;
use std::fs::File;
use std::os::unix::fs::{DirBuilderExt, FileExt, OpenOptionsExt};
use std::path::{Path, PathBuf};
use std::sync::{Mutex, MutexGuard};
use std::time::{SystemTime, UNIX_EPOCH};

pub use self::log::UndoLogState;
pub use self::restore::{find_undo_logs, undo, CommitCheck, UndoLogInfo, UndoMode, UndoReport};

use self::log::{Commit, CommitEntry, LogHeader, BLOCK, MAX_RECORD_DATA};
use crate::{BlockRead, BlockWrite, Error, ErrorKind, Format, RawFile, Result, SourceKind};

/// Environment variable of the crash-test hook (see the module docs).
pub const FAULT_ENV: &str = "RESCUE_DISK_FAULT_AFTER_WRITES";
/// Environment variable naming the undo directory (read by
/// [`default_undo_dir`]).
pub const UNDO_DIR_ENV: &str = "RESCUE_DISK_UNDO_DIR";
/// File name extension of undo logs.
pub const UNDO_EXTENSION: &str = "undo";

/// Where and under which name a write session keeps its undo log.
#[derive(Debug, Clone)]
pub struct UndoOptions {
    /// Directory of undo logs; created (mode 0700) if missing.
    pub dir: PathBuf,
    /// Identifier of the run; generated from the time and pid when `None`.
    /// Letters, digits, `.`, `_` and `-` only.
    pub run_id: Option<String>,
}

impl UndoOptions {
    /// Logs in `dir`, with a generated run id.
    pub fn new(dir: impl Into<PathBuf>) -> Self {
        UndoOptions {
            dir: dir.into(),
            run_id: None,
        }
    }
}

/// What a committed write session saved.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct UndoSummary {
    /// The undo log.
    pub undo_path: PathBuf,
    /// Identifier of the run.
    pub run_id: String,
    /// Ranges of original bytes saved.
    pub ranges_saved: u64,
    /// Original bytes saved.
    pub bytes_saved: u64,
    /// Modifications of the target (writes, zeroings, size changes).
    pub target_writes: u64,
    /// Size of the target before the session.
    pub original_size: u64,
    /// Size of the target after the session.
    pub final_size: u64,
    /// Size of the undo log.
    pub log_bytes: u64,
}

impl std::fmt::Display for UndoSummary {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(
            f,
            "undo log {} (run {}): {} ranges ({} bytes) saved before {} target writes; undo with `rescue-disk undo`",
            self.undo_path.display(),
            self.run_id,
            self.ranges_saved,
            self.bytes_saved,
            self.target_writes
        )
    }
}

/// The undo directory to use when the caller names none:
/// `$RESCUE_DISK_UNDO_DIR` if set, else `/var/lib/rescue-disk/undo` for
/// root, else `$XDG_STATE_HOME/rescue-disk/undo` or
/// `~/.local/state/rescue-disk/undo`.
pub fn default_undo_dir() -> PathBuf {
    if let Some(dir) = std::env::var_os(UNDO_DIR_ENV).filter(|d| !d.is_empty()) {
        return PathBuf::from(dir);
    }
    if is_root() {
        return PathBuf::from("/var/lib/rescue-disk/undo");
    }
    let state_home = std::env::var_os("XDG_STATE_HOME")
        .map(PathBuf::from)
        .filter(|p| p.is_absolute())
        .or_else(|| {
            std::env::var_os("HOME")
                .map(PathBuf::from)
                .filter(|p| p.is_absolute())
                .map(|h| h.join(".local/state"))
        });
    match state_home {
        Some(dir) => dir.join("rescue-disk/undo"),
        None => std::env::temp_dir().join("rescue-disk-undo"),
    }
}

fn is_root() -> bool {
    use std::os::unix::fs::MetadataExt;
    std::fs::metadata("/proc/self")
        .map(|m| m.uid() == 0)
        .unwrap_or(false)
}

/// Seconds since the epoch.
pub(crate) fn now() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_secs())
        .unwrap_or(0)
}

/// `YYYYMMDDTHHMMSSZ` for a Unix time.
pub(crate) fn utc_stamp(secs: u64) -> String {
    let t = crate::time::utc(i64::try_from(secs).unwrap_or(i64::MAX));
    format!(
        "{:04}{:02}{:02}T{:02}{:02}{:02}Z",
        t.year, t.month, t.day, t.hour, t.minute, t.second
    )
}

/// The fault hook's limit, read once per session.
pub(crate) fn fault_limit() -> Option<u64> {
    std::env::var(FAULT_ENV).ok()?.trim().parse().ok()
}

/// Aborts the process if the crash-test hook says so (see module docs).
pub(crate) fn fault_point(limit: Option<u64>, done: u64) {
    if limit.is_some_and(|n| done >= n) {
        eprintln!(
            "{FAULT_ENV}: simulating a crash before target write {}",
            done + 1
        );
        std::process::abort();
    }
}

/// SHA-256 of bytes `[start, end)` of `dev`, read in 1 MiB pieces.
pub(crate) fn sha256_range(dev: &dyn BlockRead, start: u64, end: u64) -> Result<[u8; 32]> {
    use sha2::{Digest, Sha256};
    let mut hasher = Sha256::new();
    let mut buf = vec![0u8; (end.saturating_sub(start)).min(1 << 20) as usize];
    let mut pos = start;
    while pos < end {
        let n = (end - pos).min(buf.len() as u64) as usize;
        dev.read_exact_at(pos, &mut buf[..n])?;
        hasher.update(&buf[..n]);
        pos += n as u64;
    }
    Ok(hasher.finalize().into())
}

/// A file name made of safe characters.
fn sanitize(name: &str) -> String {
    let s: String = name
        .chars()
        .map(|c| {
            if c.is_ascii_alphanumeric() || matches!(c, '.' | '_' | '-') {
                c
            } else {
                '_'
            }
        })
        .take(80)
        .collect();
    let s = s.trim_start_matches('.').to_owned();
    if s.is_empty() {
        "target".to_owned()
    } else {
        s
    }
}

fn check_run_id(id: &str) -> Result<()> {
    let ok = !id.is_empty()
        && id.len() <= 64
        && id
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || matches!(c, '.' | '_' | '-'))
        && !id.starts_with('.');
    if ok {
        Ok(())
    } else {
        Err(Error::new(ErrorKind::Unsupported, "creating undo log").with_detail(format!(
            "run id {id:?} is not allowed: use 1 to 64 letters, digits, '.', '_' or '-', not starting with '.'"
        )))
    }
}

/// The writable host file of a write session, journaling what it overwrites.
pub struct UndoFile {
    target: RawFile,
    /// Whether writes may go past the original end (qcow2 images grow; a
    /// raw disk does not).
    growable: bool,
    original_size: u64,
    log_path: PathBuf,
    run_id: String,
    fault_limit: Option<u64>,
    state: Mutex<State>,
}

struct State {
    log: File,
    log_len: u64,
    /// Indexes of the 4 KiB blocks already saved.
    saved: HashSet<u64>,
    /// Saved ranges in log order.
    extents: Vec<(u64, u64)>,
    bytes_saved: u64,
    target_writes: u64,
    committed: bool,
    /// Set when the log could not be appended to: nothing more may be written.
    broken: Option<String>,
}

impl std::fmt::Debug for UndoFile {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("UndoFile")
            .field("target", &self.target.name())
            .field("log", &self.log_path)
            .field("original_size", &self.original_size)
            .finish_non_exhaustive()
    }
}

impl UndoFile {
    /// Starts a session on `target` (opened read-write): locks it, creates
    /// the undo log in `options.dir` and makes its header durable.
    /// `growable` lets writes extend a regular file (qcow2).
    pub fn create(
        target: RawFile,
        path: &Path,
        format: Format,
        growable: bool,
        options: &UndoOptions,
    ) -> Result<Self> {
        const OP: &str = "creating undo log";
        if !target.is_writable() {
            return Err(Error::new(ErrorKind::Unsupported, OP)
                .with_path(target.name().to_owned())
                .with_detail("the target was opened read-only"));
        }
        target.lock_exclusive()?;
        target.check_not_in_use()?;
        let identity = target.identity()?;
        let original_size = target.size_in_bytes();
        let start = SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .unwrap_or_default();
        let started_at = start.as_secs();
        let target_path = std::fs::canonicalize(path).unwrap_or_else(|_| path.to_owned());
        let run_id = match &options.run_id {
            Some(id) => {
                check_run_id(id)?;
                id.clone()
            }
            // The nanoseconds make ids of one second sort in start order
            // (`find_undo_logs` orders by start time, then run id).
            None => format!(
                "{}-{:09}-p{}",
                utc_stamp(started_at),
                start.subsec_nanos(),
                std::process::id()
            ),
        };
        let dir = &options.dir;
        let dir_name = dir.display().to_string();
        std::fs::DirBuilder::new()
            .recursive(true)
            .mode(0o700)
            .create(dir)
            .map_err(|e| {
                Error::io(OP, e).with_path(dir_name.clone()).with_detail(
                    "cannot create the undo directory; pass a writable one with --undo-dir",
                )
            })?;
        let base = sanitize(
            &target_path
                .file_name()
                .map(|n| n.to_string_lossy().into_owned())
                .unwrap_or_default(),
        );
        let mut header = LogHeader {
            original_size,
            source: target.source_kind(),
            format,
            identity,
            started_at,
            run_id: run_id.clone(),
            target_path,
            len: 0,
        };
        header.check_limits()?;
        // A run id given twice, or two sessions in one second: add a suffix.
        let mut attempt = 0u32;
        let (log, log_path, run_id) = loop {
            let id = if attempt == 0 {
                run_id.clone()
            } else {
                format!("{run_id}-{attempt}")
            };
            let log_path = dir.join(format!("{base}.{id}.{UNDO_EXTENSION}"));
            match std::fs::OpenOptions::new()
                .read(true)
                .write(true)
                .create_new(true)
                .mode(0o600)
                .open(&log_path)
            {
                Ok(f) => break (f, log_path, id),
                Err(e) if e.kind() == std::io::ErrorKind::AlreadyExists && attempt < 1000 => {
                    attempt += 1;
                }
                Err(e) => {
                    return Err(Error::io(OP, e)
                        .with_path(log_path.display().to_string())
                        .with_detail("pass a writable undo directory with --undo-dir"))
                }
            }
        };
        header.run_id = run_id.clone();
        let bytes = header.encode();
        let log_name = log_path.display().to_string();
        let durable = (|| -> std::io::Result<()> {
            crate::stats::record_write(bytes.len());
            log.write_all_at(&bytes, 0)?;
            crate::stats::record_sync();
            log.sync_data()?;
            // The log's directory entry must survive a crash too.
            crate::stats::record_sync();
            File::open(dir)?.sync_all()
        })();
        if let Err(e) = durable {
            let _ = std::fs::remove_file(&log_path);
            return Err(Error::io(OP, e).with_path(log_name));
        }
        tracing::debug!(log = %log_path.display(), target = %target.name(), "undo log created");
        Ok(UndoFile {
            target,
            growable,
            original_size,
            log_path,
            run_id,
            fault_limit: fault_limit(),
            state: Mutex::new(State {
                log,
                log_len: bytes.len() as u64,
                saved: HashSet::new(),
                extents: Vec::new(),
                bytes_saved: 0,
                target_writes: 0,
                committed: false,
                broken: None,
            }),
        })
    }

    /// The undo log of this session.
    pub fn log_path(&self) -> &Path {
        &self.log_path
    }

    /// The run id of this session.
    pub fn run_id(&self) -> &str {
        &self.run_id
    }

    /// Size of the target when the session started.
    pub fn original_size(&self) -> u64 {
        self.original_size
    }

    /// File or block device.
    pub fn source_kind(&self) -> SourceKind {
        self.target.source_kind()
    }

    fn lock(&self) -> MutexGuard<'_, State> {
        self.state.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// Removes the log of a session that wrote nothing (a failed open).
    pub(crate) fn discard_if_unused(&self) {
        let st = self.lock();
        if st.target_writes == 0 && st.extents.is_empty() {
            let _ = std::fs::remove_file(&self.log_path);
        }
    }

    fn check_open(&self, st: &State) -> Result<()> {
        if st.committed {
            return Err(Error::new(ErrorKind::Unsupported, "writing")
                .with_path(self.target.name().to_owned())
                .with_detail(
                    "the write session was already committed; open the target again to write more",
                ));
        }
        if let Some(why) = &st.broken {
            return Err(Error::new(ErrorKind::Io, "writing")
                .with_path(self.target.name().to_owned())
                .with_detail(format!(
                    "the undo log {} could not be written ({why}), so nothing more is written to the target; restore it with `rescue-disk undo {}`",
                    self.log_path.display(),
                    self.target.name()
                )));
        }
        Ok(())
    }

    /// Checks a write of `[start, end)` against the size rules.
    fn check_range(&self, start: u64, len: u64) -> Result<u64> {
        let end = start.checked_add(len).ok_or_else(|| {
            Error::new(ErrorKind::Unsupported, "writing")
                .with_path(self.target.name().to_owned())
                .with_offset(start)
                .with_detail("the write reaches beyond 2^64 bytes")
        })?;
        if !self.growable && end > self.original_size {
            return Err(Error::new(ErrorKind::Truncated, "writing")
                .with_path(self.target.name().to_owned())
                .with_offset(start)
                .with_detail(format!(
                    "{len} bytes would go past the end of the disk ({:#x})",
                    self.original_size
                )));
        }
        Ok(end)
    }

    /// Saves the original bytes of every not yet saved block of
    /// `[start, end)` (clipped to the original size), durably.
    fn save_originals(&self, st: &mut State, start: u64, end: u64) -> Result<()> {
        let end = end.min(self.original_size);
        if start >= end {
            return Ok(());
        }
        // Runs of unsaved blocks, as (offset, end) clipped to the size.
        let mut runs: Vec<(u64, u64)> = Vec::new();
        for block in start / BLOCK..end.div_ceil(BLOCK) {
            if st.saved.contains(&block) {
                continue;
            }
            let b_start = block * BLOCK;
            let b_end = (b_start + BLOCK).min(self.original_size);
            match runs.last_mut() {
                Some(run) if run.1 == b_start && run.1 - run.0 < MAX_RECORD_DATA => run.1 = b_end,
                _ => runs.push((b_start, b_end)),
            }
        }
        if runs.is_empty() {
            return Ok(());
        }
        let mut pending: Vec<(u64, Vec<u8>)> = Vec::new();
        let mut pending_bytes = 0u64;
        for (offset, run_end) in runs {
            // OK to allocate: a run is at most MAX_RECORD_DATA bytes.
            let mut buf = vec![0u8; (run_end - offset) as usize];
            self.target.read_exact_at(offset, &mut buf)?;
            if pending_bytes + buf.len() as u64 > MAX_RECORD_DATA {
                self.append_data(st, std::mem::take(&mut pending))?;
                pending_bytes = 0;
            }
            pending_bytes += buf.len() as u64;
            pending.push((offset, buf));
        }
        self.append_data(st, pending)
    }

    /// Appends one DATA record and makes it durable; marks its blocks saved.
    fn append_data(&self, st: &mut State, extents: Vec<(u64, Vec<u8>)>) -> Result<()> {
        if extents.is_empty() {
            return Ok(());
        }
        let record = log::data_record(&extents);
        self.append(st, &record)?;
        for (offset, bytes) in &extents {
            let len = bytes.len() as u64;
            for block in offset / BLOCK..(offset + len).div_ceil(BLOCK) {
                st.saved.insert(block);
            }
            st.extents.push((*offset, len));
            st.bytes_saved += len;
        }
        Ok(())
    }

    /// Appends `record` to the log and `fdatasync`s it. On failure the log
    /// is cut back and the session refuses further writes.
    fn append(&self, st: &mut State, record: &[u8]) -> Result<()> {
        crate::stats::record_write(record.len());
        let result = st.log.write_all_at(record, st.log_len).and_then(|()| {
            crate::stats::record_sync();
            st.log.sync_data()
        });
        match result {
            Ok(()) => {
                st.log_len += record.len() as u64;
                Ok(())
            }
            Err(e) => {
                let _ = st.log.set_len(st.log_len);
                st.broken = Some(e.to_string());
                Err(Error::io("appending to undo log", e)
                    .with_path(self.log_path.display().to_string())
                    .with_detail(
                        "the target was not written; free space in the undo directory or pass another with --undo-dir",
                    ))
            }
        }
    }

    /// Counts one target modification, after the crash-test hook.
    fn before_target_write(&self, st: &mut State) {
        fault_point(self.fault_limit, st.target_writes);
        st.target_writes += 1;
    }

    /// Ends the session: flushes the target, then appends the hash of every
    /// saved range as left by the session, and the final size. Further
    /// writes are refused.
    pub fn commit(&self) -> Result<UndoSummary> {
        let mut st = self.lock();
        self.check_open(&st)?;
        self.target.sync_all()?;
        let mut entries = Vec::with_capacity(st.extents.len());
        for &(offset, len) in &st.extents {
            // OK to allocate: saved ranges are at most MAX_RECORD_DATA bytes.
            let mut buf = vec![0u8; len as usize];
            self.target.read_exact_at(offset, &mut buf)?;
            entries.push(CommitEntry {
                offset,
                len,
                sha256: log::sha256(&buf),
            });
        }
        let final_size = self.target.size_in_bytes();
        let tail_sha256 = sha256_range(&self.target, self.original_size, final_size)?;
        let record = log::commit_record(&Commit {
            final_size,
            committed_at: now(),
            tail_sha256,
            entries,
        });
        self.append(&mut st, &record)?;
        st.committed = true;
        Ok(UndoSummary {
            undo_path: self.log_path.clone(),
            run_id: self.run_id.clone(),
            ranges_saved: st.extents.len() as u64,
            bytes_saved: st.bytes_saved,
            target_writes: st.target_writes,
            original_size: self.original_size,
            final_size,
            log_bytes: st.log_len,
        })
    }

    /// Modifications of the target so far.
    pub fn target_writes(&self) -> u64 {
        self.lock().target_writes
    }
}

impl BlockRead for UndoFile {
    fn size_in_bytes(&self) -> u64 {
        if self.growable {
            self.target.size_in_bytes()
        } else {
            self.original_size
        }
    }

    fn read_exact_at(&self, start_byte: u64, dst: &mut [u8]) -> Result<()> {
        if !self.growable
            && start_byte
                .checked_add(dst.len() as u64)
                .is_none_or(|end| end > self.original_size)
        {
            return Err(Error::new(ErrorKind::Truncated, "reading")
                .with_path(self.target.name().to_owned())
                .with_offset(start_byte)
                .with_detail(format!(
                    "{} bytes requested but the disk ends at {:#x}",
                    dst.len(),
                    self.original_size
                )));
        }
        self.target.read_exact_at(start_byte, dst)
    }

    fn describe(&self) -> String {
        self.target.describe()
    }
}

impl BlockWrite for UndoFile {
    fn write_all_at(&self, start_byte: u64, src: &[u8]) -> Result<()> {
        let mut st = self.lock();
        self.check_open(&st)?;
        let end = self.check_range(start_byte, src.len() as u64)?;
        if src.is_empty() {
            return Ok(());
        }
        self.save_originals(&mut st, start_byte, end)?;
        self.before_target_write(&mut st);
        self.target.write_all_at(start_byte, src)
    }

    fn flush(&self) -> Result<()> {
        let st = self.lock();
        self.check_open(&st)?;
        self.target.flush()
    }

    /// Zeros inside the current file are written (after saving what they
    /// replace); zeros past its end are made by growing the file.
    fn write_zeroes_at(&self, start_byte: u64, len: u64) -> Result<()> {
        let mut st = self.lock();
        self.check_open(&st)?;
        let end = self.check_range(start_byte, len)?;
        if len == 0 {
            return Ok(());
        }
        let size = self.target.size_in_bytes();
        let inside_end = end.min(size);
        if start_byte < inside_end {
            self.save_originals(&mut st, start_byte, inside_end)?;
            self.before_target_write(&mut st);
            let zeros = vec![0u8; (inside_end - start_byte).min(1 << 20) as usize];
            let mut pos = start_byte;
            while pos < inside_end {
                let n = (inside_end - pos).min(zeros.len() as u64) as usize;
                self.target.write_all_at(pos, &zeros[..n])?;
                pos += n as u64;
            }
        }
        if end > size {
            self.before_target_write(&mut st);
            self.target.extend_to(end)?;
        }
        Ok(())
    }
}

/// Fuzz entry point: `data` is an undo log. It is written to a scratch file
/// (the reader works on files) and read both ways `undo` reads logs: the
/// full parse that verifies every checksum, and the listing scan. Never a
/// panic and no allocation beyond the file's size, whatever the bytes.
#[doc(hidden)]
pub fn fuzz_undo_log(data: &[u8]) {
    let path = std::env::temp_dir().join(format!("rescue-fuzz-undo-{}.undo", std::process::id()));
    if std::fs::write(&path, data).is_err() {
        return;
    }
    let _ = log::parse(&path);
    if let Ok((file, len)) = log::open_log(&path) {
        if let Ok(header) = log::read_header(&file, &path, len) {
            let _ = log::scan(&file, &path, &header, len);
        }
    }
    let _ = std::fs::remove_file(&path);
}
