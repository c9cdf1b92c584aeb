//! The on-disk format of undo logs, and a hostile-tolerant reader for it.
//!
//! All integers are little-endian. A log is a header followed by records:
//!
//! ```text
//! header  "rescue-disk undo" version:u32 header_len:u32 original_size:u64
//!         source:u8 format:u8 run_id_len:u16 path_len:u32 dev:u64 ino:u64
//!         rdev:u64 started_at:u64 block_size:u32 0:u32 run_id path
//!         sha256(all of the above)
//! record  "RDrc" kind:u32 payload_len:u64 payload sha256(magic..payload)
//! DATA    count:u32 0:u32 count*(offset:u64 len:u64 sha256) bytes...
//! COMMIT  final_size:u64 committed_at:u64 sha256(bytes past the
//!         original size) count:u64 count*(offset:u64 len:u64 sha256-as-left)
//! UNDONE  undone_at:u64
//! ```
//!
//! Records are appended one at a time and each is made durable before the
//! target is touched, so only the last record can be torn by a crash; a
//! torn last record is ignored (its target write never happened). Any
//! other damage is an error naming the record and its offset.
//!
//! This module must never allocate more than the log file holds, never
//! accept extents that overlap or lie beyond the recorded original size,
//! and never trust bytes whose checksum it has not verified.

use std::collections::BTreeMap;
use std::ffi::OsStr;
use std::fs::File;
use std::os::unix::ffi::OsStrExt;
use std::os::unix::fs::FileExt;
use std::path::{Path, PathBuf};

use sha2::{Digest, Sha256};

use crate::raw::Identity;
use crate::{Error, ErrorKind, Format, Result, SourceKind};

/// First bytes of every undo log.
pub(crate) const MAGIC: &[u8; 16] = b"rescue-disk undo";
/// Format version written and understood.
pub(crate) const VERSION: u32 = 1;
/// Granularity of saved ranges.
pub(crate) const BLOCK: u64 = 4096;
/// Largest amount of original bytes in one DATA record.
pub(crate) const MAX_RECORD_DATA: u64 = 4 << 20;

const FIXED_HEADER_LEN: usize = 80;
const MAX_RUN_ID_LEN: usize = 128;
const MAX_PATH_LEN: usize = 4096;
const RECORD_MAGIC: [u8; 4] = *b"RDrc";
const RECORD_HEADER_LEN: u64 = 16;
const CHECKSUM_LEN: u64 = 32;
const ENTRY_LEN: u64 = 48;
/// COMMIT payload before its entries.
const COMMIT_FIXED: u64 = 56;
const KIND_DATA: u32 = 1;
const KIND_COMMIT: u32 = 2;
const KIND_UNDONE: u32 = 3;
/// Largest DATA payload: its entries (at most one per block) and bytes.
const MAX_DATA_PAYLOAD: u64 = 8 + ENTRY_LEN * (MAX_RECORD_DATA / BLOCK) + MAX_RECORD_DATA;
/// A bad record header this close to the end of the file can be the start
/// of a torn append (at most one record is in flight).
const TORN_WINDOW: u64 = RECORD_HEADER_LEN + MAX_DATA_PAYLOAD + CHECKSUM_LEN;

/// SHA-256 of `data`.
pub(crate) fn sha256(data: &[u8]) -> [u8; 32] {
    Sha256::digest(data).into()
}

/// Lower-case hex, for messages.
pub(crate) fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

/// What the header of an undo log says.
#[derive(Debug, Clone)]
pub(crate) struct LogHeader {
    pub(crate) original_size: u64,
    pub(crate) source: SourceKind,
    pub(crate) format: Format,
    pub(crate) identity: Identity,
    pub(crate) started_at: u64,
    pub(crate) run_id: String,
    pub(crate) target_path: PathBuf,
    /// Length of the encoded header: where the first record starts.
    pub(crate) len: u64,
}

impl LogHeader {
    pub(crate) fn encode(&self) -> Vec<u8> {
        let run_id = self.run_id.as_bytes();
        let path = self.target_path.as_os_str().as_bytes();
        let total = FIXED_HEADER_LEN + run_id.len() + path.len() + CHECKSUM_LEN as usize;
        let mut b = Vec::with_capacity(total);
        b.extend_from_slice(MAGIC);
        b.extend_from_slice(&VERSION.to_le_bytes());
        b.extend_from_slice(&(total as u32).to_le_bytes());
        b.extend_from_slice(&self.original_size.to_le_bytes());
        b.push(match self.source {
            SourceKind::File => 1,
            SourceKind::BlockDevice => 2,
        });
        b.push(match self.format {
            Format::Raw => 1,
            Format::Qcow2 => 2,
        });
        b.extend_from_slice(&(run_id.len() as u16).to_le_bytes());
        b.extend_from_slice(&(path.len() as u32).to_le_bytes());
        b.extend_from_slice(&self.identity.dev.to_le_bytes());
        b.extend_from_slice(&self.identity.ino.to_le_bytes());
        b.extend_from_slice(&self.identity.rdev.to_le_bytes());
        b.extend_from_slice(&self.started_at.to_le_bytes());
        b.extend_from_slice(&(BLOCK as u32).to_le_bytes());
        b.extend_from_slice(&0u32.to_le_bytes());
        debug_assert_eq!(b.len(), FIXED_HEADER_LEN);
        b.extend_from_slice(run_id);
        b.extend_from_slice(path);
        let sum = sha256(&b);
        b.extend_from_slice(&sum);
        b
    }

    /// Checks that a header about to be written fits the format's limits.
    pub(crate) fn check_limits(&self) -> Result<()> {
        let path_len = self.target_path.as_os_str().len();
        if self.run_id.len() > MAX_RUN_ID_LEN || path_len > MAX_PATH_LEN {
            return Err(Error::new(ErrorKind::Unsupported, "creating undo log").with_detail(
                format!(
                    "the run id ({} bytes) or target path ({path_len} bytes) is too long for an undo log (at most {MAX_RUN_ID_LEN} and {MAX_PATH_LEN})",
                    self.run_id.len()
                ),
            ));
        }
        Ok(())
    }
}

fn le32(b: &[u8], at: usize) -> u32 {
    let mut a = [0u8; 4];
    a.copy_from_slice(&b[at..at + 4]);
    u32::from_le_bytes(a)
}

fn le64(b: &[u8], at: usize) -> u64 {
    let mut a = [0u8; 8];
    a.copy_from_slice(&b[at..at + 8]);
    u64::from_le_bytes(a)
}

fn corrupt(path: &Path, offset: u64, detail: impl Into<String>) -> Error {
    Error::corrupt("reading undo log", detail)
        .with_path(path.display().to_string())
        .with_offset(offset)
}

/// Reads exactly `buf.len()` bytes at `offset` of the log.
fn read_at(file: &File, path: &Path, offset: u64, buf: &mut [u8]) -> Result<()> {
    crate::stats::record_read(buf.len());
    file.read_exact_at(buf, offset).map_err(|e| {
        Error::io("reading undo log", e)
            .with_path(path.display().to_string())
            .with_offset(offset)
    })
}

/// Opens a log and returns it with its length.
pub(crate) fn open_log(path: &Path) -> Result<(File, u64)> {
    let name = path.display().to_string();
    let file = File::open(path).map_err(|e| {
        let err = Error::io("opening undo log", e).with_path(name.clone());
        if err.kind() == ErrorKind::NotFound {
            err.with_detail(
                "no such undo log; list the logs of a target with `rescue-disk undo --list TARGET`",
            )
        } else {
            err
        }
    })?;
    let meta = file
        .metadata()
        .map_err(|e| Error::io("reading undo log", e).with_path(name.clone()))?;
    if !meta.is_file() {
        return Err(Error::new(ErrorKind::NotADisk, "reading undo log")
            .with_path(name)
            .with_detail("not a regular file"));
    }
    Ok((file, meta.len()))
}

/// Reads and verifies the header.
pub(crate) fn read_header(file: &File, path: &Path, file_len: u64) -> Result<LogHeader> {
    let incomplete = || {
        corrupt(
            path,
            0,
            "the undo log header is incomplete: the session stopped before it wrote anything to the target, so there is nothing to undo; delete this log",
        )
    };
    if file_len < FIXED_HEADER_LEN as u64 {
        if file_len == 0 || read_prefix_is_magic(file, path, file_len)? {
            return Err(incomplete());
        }
        return Err(corrupt(
            path,
            0,
            "this is not a rescue-disk undo log (bad magic)",
        ));
    }
    let mut fixed = [0u8; FIXED_HEADER_LEN];
    read_at(file, path, 0, &mut fixed)?;
    if &fixed[..16] != MAGIC {
        return Err(corrupt(
            path,
            0,
            "this is not a rescue-disk undo log (bad magic)",
        ));
    }
    let version = le32(&fixed, 16);
    if version != VERSION {
        return Err(Error::new(ErrorKind::Unsupported, "reading undo log")
            .with_path(path.display().to_string())
            .with_offset(16)
            .with_detail(format!(
                "undo log format version {version} is not supported (this rescue-disk writes version {VERSION}); use the rescue-disk release that wrote it"
            )));
    }
    let header_len = le32(&fixed, 20) as usize;
    let run_id_len = usize::from(u16::from_le_bytes([fixed[34], fixed[35]]));
    let path_len = le32(&fixed, 36) as usize;
    if run_id_len > MAX_RUN_ID_LEN
        || path_len > MAX_PATH_LEN
        || header_len != FIXED_HEADER_LEN + run_id_len + path_len + CHECKSUM_LEN as usize
    {
        return Err(corrupt(
            path,
            20,
            "the undo log header has inconsistent lengths",
        ));
    }
    if header_len as u64 > file_len {
        return Err(incomplete());
    }
    let mut b = vec![0u8; header_len];
    read_at(file, path, 0, &mut b)?;
    let body = header_len - CHECKSUM_LEN as usize;
    if sha256(&b[..body]) != b[body..] {
        // The header is written and synced before any record: a bad
        // checksum with records after it is damage, without is a crash.
        if file_len == header_len as u64 {
            return Err(incomplete());
        }
        return Err(corrupt(
            path,
            0,
            "the undo log header checksum does not match: the log is damaged",
        ));
    }
    let source = match b[32] {
        1 => SourceKind::File,
        2 => SourceKind::BlockDevice,
        other => return Err(corrupt(path, 32, format!("unknown target kind {other}"))),
    };
    let format = match b[33] {
        1 => Format::Raw,
        2 => Format::Qcow2,
        other => return Err(corrupt(path, 33, format!("unknown image format {other}"))),
    };
    let block = le32(&b, 72);
    if u64::from(block) != BLOCK {
        return Err(corrupt(
            path,
            72,
            format!("block size {block} is not {BLOCK}"),
        ));
    }
    let run_id_bytes = &b[FIXED_HEADER_LEN..FIXED_HEADER_LEN + run_id_len];
    let run_id = String::from_utf8_lossy(run_id_bytes).into_owned();
    let path_bytes = &b[FIXED_HEADER_LEN + run_id_len..FIXED_HEADER_LEN + run_id_len + path_len];
    Ok(LogHeader {
        original_size: le64(&b, 24),
        source,
        format,
        identity: Identity {
            dev: le64(&b, 40),
            ino: le64(&b, 48),
            rdev: le64(&b, 56),
        },
        started_at: le64(&b, 64),
        run_id,
        target_path: PathBuf::from(OsStr::from_bytes(path_bytes)),
        len: header_len as u64,
    })
}

fn read_prefix_is_magic(file: &File, path: &Path, file_len: u64) -> Result<bool> {
    let n = (file_len as usize).min(MAGIC.len());
    let mut b = vec![0u8; n];
    read_at(file, path, 0, &mut b)?;
    Ok(MAGIC.starts_with(&b))
}

/// One saved range: original bytes of the target.
#[derive(Debug, Clone)]
pub(crate) struct SavedExtent {
    pub(crate) offset: u64,
    pub(crate) len: u64,
    pub(crate) sha256: [u8; 32],
    /// Where the bytes lie in the log.
    pub(crate) data_pos: u64,
}

/// One entry of the commit record: a saved range as the session left it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct CommitEntry {
    pub(crate) offset: u64,
    pub(crate) len: u64,
    pub(crate) sha256: [u8; 32],
}

/// The commit record.
#[derive(Debug, Clone)]
pub(crate) struct Commit {
    pub(crate) final_size: u64,
    pub(crate) committed_at: u64,
    /// Hash of what the session appended (original to final size).
    pub(crate) tail_sha256: [u8; 32],
    pub(crate) entries: Vec<CommitEntry>,
}

/// A fully read and verified log.
#[derive(Debug)]
pub(crate) struct ParsedLog {
    pub(crate) header: LogHeader,
    pub(crate) extents: Vec<SavedExtent>,
    pub(crate) commit: Option<Commit>,
    /// When an undo last completed, if one did.
    pub(crate) undone_at: Option<u64>,
    /// Offset of an ignored torn last record.
    pub(crate) torn_tail_at: Option<u64>,
    pub(crate) file_len: u64,
    pub(crate) file: File,
}

/// Encodes a record around `payload`.
pub(crate) fn encode_record(kind: u32, payload: &[u8]) -> Vec<u8> {
    let mut b = Vec::with_capacity(payload.len() + (RECORD_HEADER_LEN + CHECKSUM_LEN) as usize);
    b.extend_from_slice(&RECORD_MAGIC);
    b.extend_from_slice(&kind.to_le_bytes());
    b.extend_from_slice(&(payload.len() as u64).to_le_bytes());
    b.extend_from_slice(payload);
    let sum = sha256(&b);
    b.extend_from_slice(&sum);
    b
}

/// A DATA record holding original bytes `(offset, bytes)`.
pub(crate) fn data_record(extents: &[(u64, Vec<u8>)]) -> Vec<u8> {
    let data: usize = extents.iter().map(|(_, d)| d.len()).sum();
    let mut p = Vec::with_capacity(8 + extents.len() * ENTRY_LEN as usize + data);
    p.extend_from_slice(&(extents.len() as u32).to_le_bytes());
    p.extend_from_slice(&0u32.to_le_bytes());
    for (offset, bytes) in extents {
        p.extend_from_slice(&offset.to_le_bytes());
        p.extend_from_slice(&(bytes.len() as u64).to_le_bytes());
        p.extend_from_slice(&sha256(bytes));
    }
    for (_, bytes) in extents {
        p.extend_from_slice(bytes);
    }
    encode_record(KIND_DATA, &p)
}

/// The COMMIT record.
pub(crate) fn commit_record(commit: &Commit) -> Vec<u8> {
    let mut p =
        Vec::with_capacity(COMMIT_FIXED as usize + commit.entries.len() * ENTRY_LEN as usize);
    p.extend_from_slice(&commit.final_size.to_le_bytes());
    p.extend_from_slice(&commit.committed_at.to_le_bytes());
    p.extend_from_slice(&commit.tail_sha256);
    p.extend_from_slice(&(commit.entries.len() as u64).to_le_bytes());
    for e in &commit.entries {
        p.extend_from_slice(&e.offset.to_le_bytes());
        p.extend_from_slice(&e.len.to_le_bytes());
        p.extend_from_slice(&e.sha256);
    }
    encode_record(KIND_COMMIT, &p)
}

/// The UNDONE record.
pub(crate) fn undone_record(at: u64) -> Vec<u8> {
    encode_record(KIND_UNDONE, &at.to_le_bytes())
}

/// How a record header reads.
enum Head {
    Record {
        kind: u32,
        payload_len: u64,
    },
    /// Not a record header (garbage or zeros).
    Bad(String),
}

fn read_head(file: &File, path: &Path, pos: u64) -> Result<Head> {
    let mut h = [0u8; RECORD_HEADER_LEN as usize];
    read_at(file, path, pos, &mut h)?;
    if h[..4] != RECORD_MAGIC {
        return Ok(Head::Bad("bad record magic".to_owned()));
    }
    let kind = le32(&h, 4);
    let payload_len = le64(&h, 8);
    let cap = match kind {
        KIND_DATA => MAX_DATA_PAYLOAD,
        KIND_COMMIT => u64::MAX,
        KIND_UNDONE => 8,
        other => return Ok(Head::Bad(format!("unknown record kind {other}"))),
    };
    if payload_len > cap {
        return Ok(Head::Bad(format!(
            "record length {payload_len} exceeds the limit of its kind"
        )));
    }
    Ok(Head::Record { kind, payload_len })
}

/// Reads the whole log, verifying every checksum.
pub(crate) fn parse(path: &Path) -> Result<ParsedLog> {
    let (file, file_len) = open_log(path)?;
    let header = read_header(&file, path, file_len)?;
    let mut extents: Vec<SavedExtent> = Vec::new();
    // start -> end of every saved extent, to refuse overlaps.
    let mut covered: BTreeMap<u64, u64> = BTreeMap::new();
    let mut commit: Option<(Commit, u64, u64)> = None;
    let mut undone_at = None;
    let mut torn_tail_at = None;
    let mut pos = header.len;
    let mut index = 0u64;
    while pos < file_len {
        let remaining = file_len - pos;
        let what = format!("record {index}");
        if remaining < RECORD_HEADER_LEN {
            torn_tail_at = Some(pos);
            break;
        }
        let (kind, payload_len) = match read_head(&file, path, pos)? {
            Head::Record { kind, payload_len } => (kind, payload_len),
            Head::Bad(why) => {
                if remaining <= TORN_WINDOW {
                    torn_tail_at = Some(pos);
                    break;
                }
                return Err(corrupt(
                    path,
                    pos,
                    format!("{what}: {why}, and {remaining} bytes follow: the undo log is damaged"),
                ));
            }
        };
        let total = RECORD_HEADER_LEN
            .checked_add(payload_len)
            .and_then(|t| t.checked_add(CHECKSUM_LEN));
        let Some(total) = total.filter(|&t| t <= remaining) else {
            // Runs past the end of the file: the append was cut short.
            torn_tail_at = Some(pos);
            break;
        };
        // OK to allocate: total <= remaining bytes of the file.
        let mut rec = vec![0u8; total as usize];
        read_at(&file, path, pos, &mut rec)?;
        let body = (total - CHECKSUM_LEN) as usize;
        if sha256(&rec[..body]) != rec[body..] {
            if pos + total == file_len {
                torn_tail_at = Some(pos);
                break;
            }
            return Err(corrupt(
                path,
                pos,
                format!(
                    "{what}: checksum mismatch in the middle of the log: the undo log is damaged"
                ),
            ));
        }
        let payload = &rec[RECORD_HEADER_LEN as usize..body];
        let payload_pos = pos + RECORD_HEADER_LEN;
        match kind {
            KIND_DATA => {
                if commit.is_some() || undone_at.is_some() {
                    return Err(corrupt(
                        path,
                        pos,
                        format!("{what}: saved data after the end of the session"),
                    ));
                }
                decode_data(
                    path,
                    &header,
                    payload,
                    payload_pos,
                    &what,
                    &mut covered,
                    &mut extents,
                )?;
            }
            KIND_COMMIT => {
                if commit.is_some() {
                    return Err(corrupt(
                        path,
                        pos,
                        format!("{what}: a second commit record"),
                    ));
                }
                let c = decode_commit(path, payload, pos, &what)?;
                commit = Some((c, index, pos));
            }
            _ => {
                undone_at = Some(le64(payload, 0));
            }
        }
        pos += total;
        index += 1;
    }
    let commit = match commit {
        Some((c, index, at)) => {
            let matches = c.entries.len() == extents.len()
                && c.entries
                    .iter()
                    .zip(&extents)
                    .all(|(c, e)| c.offset == e.offset && c.len == e.len);
            if !matches {
                return Err(corrupt(
                    path,
                    at,
                    format!("record {index}: the commit record lists other ranges than the log saved: the undo log is damaged"),
                ));
            }
            Some(c)
        }
        None => None,
    };
    Ok(ParsedLog {
        header,
        extents,
        commit,
        undone_at,
        torn_tail_at,
        file_len,
        file,
    })
}

fn decode_data(
    path: &Path,
    header: &LogHeader,
    p: &[u8],
    payload_pos: u64,
    what: &str,
    covered: &mut BTreeMap<u64, u64>,
    extents: &mut Vec<SavedExtent>,
) -> Result<()> {
    let bad = |d: String| corrupt(path, payload_pos, format!("{what}: {d}"));
    if p.len() < 8 {
        return Err(bad("DATA record too short".to_owned()));
    }
    let count = u64::from(le32(p, 0));
    let table_end = count
        .checked_mul(ENTRY_LEN)
        .and_then(|t| t.checked_add(8))
        .filter(|&t| t <= p.len() as u64 && count > 0)
        .ok_or_else(|| bad(format!("{count} entries do not fit the record")))?;
    let mut data_at = table_end;
    for i in 0..count as usize {
        let e = 8 + i * ENTRY_LEN as usize;
        let offset = le64(p, e);
        let len = le64(p, e + 8);
        let mut sum = [0u8; 32];
        sum.copy_from_slice(&p[e + 16..e + 48]);
        let end = offset.checked_add(len);
        let sane = offset.is_multiple_of(BLOCK)
            && len > 0
            && len <= MAX_RECORD_DATA
            && end.is_some_and(|end| {
                end <= header.original_size
                    && (len.is_multiple_of(BLOCK) || end == header.original_size)
            });
        if !sane {
            return Err(bad(format!(
                "saved range {len} bytes at {offset:#x} is not block aligned or lies beyond the original size {:#x}",
                header.original_size
            )));
        }
        let end = offset + len;
        let before = covered.range(..end).next_back();
        if before.is_some_and(|(_, &e)| e > offset) {
            return Err(bad(format!(
                "saved range at {offset:#x} overlaps one saved earlier"
            )));
        }
        let data_end = data_at
            .checked_add(len)
            .filter(|&d| d <= p.len() as u64)
            .ok_or_else(|| bad("the saved bytes run past the record".to_owned()))?;
        if sha256(&p[data_at as usize..data_end as usize]) != sum {
            return Err(bad(format!(
                "the saved bytes of the range at {offset:#x} do not match their checksum"
            )));
        }
        covered.insert(offset, end);
        extents.push(SavedExtent {
            offset,
            len,
            sha256: sum,
            data_pos: payload_pos + data_at,
        });
        data_at = data_end;
    }
    if data_at != p.len() as u64 {
        return Err(bad("the record has trailing bytes".to_owned()));
    }
    Ok(())
}

fn decode_commit(path: &Path, p: &[u8], pos: u64, what: &str) -> Result<Commit> {
    let bad = |d: &str| corrupt(path, pos, format!("{what}: {d}"));
    if (p.len() as u64) < COMMIT_FIXED {
        return Err(bad("commit record too short"));
    }
    let count = le64(p, 48);
    let expected = count
        .checked_mul(ENTRY_LEN)
        .and_then(|n| n.checked_add(COMMIT_FIXED));
    if expected != Some(p.len() as u64) {
        return Err(bad("commit record length does not match its entry count"));
    }
    let mut tail_sha256 = [0u8; 32];
    tail_sha256.copy_from_slice(&p[16..48]);
    let entries = p[COMMIT_FIXED as usize..]
        .chunks_exact(ENTRY_LEN as usize)
        .map(|e| {
            let mut sum = [0u8; 32];
            sum.copy_from_slice(&e[16..48]);
            CommitEntry {
                offset: le64(e, 0),
                len: le64(e, 8),
                sha256: sum,
            }
        })
        .collect();
    Ok(Commit {
        final_size: le64(p, 0),
        committed_at: le64(p, 8),
        tail_sha256,
        entries,
    })
}

/// State of a log as far as a quick walk over its record headers shows.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum UndoLogState {
    /// The session ended with a commit record: the target was left as the
    /// session meant it.
    Committed,
    /// No commit record: the session crashed or was interrupted; the target
    /// may hold half of its writes.
    NotCommitted,
    /// `undo` completed on this log.
    Undone,
}

/// Walks the record headers without reading payloads (for listings).
/// Returns the state and the number of complete DATA records.
pub(crate) fn scan(
    file: &File,
    path: &Path,
    header: &LogHeader,
    file_len: u64,
) -> Result<(UndoLogState, u64)> {
    let mut pos = header.len;
    let mut state = UndoLogState::NotCommitted;
    let mut data_records = 0;
    while file_len - pos >= RECORD_HEADER_LEN {
        let Head::Record { kind, payload_len } = read_head(file, path, pos)? else {
            break;
        };
        let Some(next) = pos
            .checked_add(RECORD_HEADER_LEN + CHECKSUM_LEN)
            .and_then(|p| p.checked_add(payload_len))
            .filter(|&n| n <= file_len)
        else {
            break;
        };
        match kind {
            KIND_DATA => data_records += 1,
            KIND_COMMIT => state = UndoLogState::Committed,
            _ => state = UndoLogState::Undone,
        }
        pos = next;
    }
    Ok((state, data_records))
}

/// Reads the saved bytes of `extent` and checks them again.
pub(crate) fn read_extent(file: &File, path: &Path, extent: &SavedExtent) -> Result<Vec<u8>> {
    // OK to allocate: parse checked len <= MAX_RECORD_DATA.
    let mut buf = vec![0u8; extent.len as usize];
    read_at(file, path, extent.data_pos, &mut buf)?;
    if sha256(&buf) != extent.sha256 {
        return Err(corrupt(
            path,
            extent.data_pos,
            format!(
                "the saved bytes of the range at {:#x} changed since the log was read",
                extent.offset
            ),
        ));
    }
    Ok(buf)
}
