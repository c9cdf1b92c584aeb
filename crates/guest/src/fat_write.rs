//! Writing to a FAT12/16/32 volume (the EFI system partition) through
//! `fatfs` 0.3, offline, over a [`BlockWrite`] device.
//!
//! `fatfs` 0.3.6 does the allocation, the long and short names and the
//! FSInfo bookkeeping. Its write side has defects that `fsck.fat -n`
//! reports, and this module repairs or avoids each of them:
//!
//! * every directory it creates has a long-name entry in front of its `.`
//!   and `..` entries, whatever the directory's name ("Expected a valid '.'
//!   entry in this slot"), and `..` holds the root's cluster on FAT32 where
//!   it must be 0: the new directory's first cluster is rewritten with plain
//!   `.` and `..` entries;
//! * moving a directory to another parent leaves its `..` pointing at the
//!   old parent: it is rewritten;
//! * a new cluster for the FAT32 root directory is not zeroed, so the stale
//!   bytes after the new entries read as garbage entries: they are zeroed;
//! * renaming to a name that differs only in case does nothing: the rename
//!   goes through a temporary name;
//! * without its `chrono` feature every timestamp is 1980-00-00: a UTC clock
//!   is supplied (FAT stores local time; an offline host cannot know the
//!   guest's zone).
//!
//! Long names work, for files and for directories, once these are repaired
//! (the tests check both with `fsck.fat -n` and mtools).
//!
//! `fatfs` trusts what it reads: an out-of-range cluster number makes it
//! panic (debug builds) or write outside the volume's data, and a
//! cross-linked chain makes a truncation free another file's clusters. So
//! [`FatWriter::open`] checks the whole volume first — boot sector, FAT
//! copies identical, every directory and cluster chain in range, without
//! loops or shared clusters, `.`/`..` in place — and refuses a volume that
//! is not clean. Every change is checked for space before anything is
//! written, so a full volume fails without half-done work. Calls into
//! `fatfs` still run under `catch_unwind` as a last resort: after a panic or
//! an I/O error in the middle of a change the writer refuses further work
//! and leaves the dirty bit set, so that the next `fsck.fat` looks.

use std::cell::{Cell, RefCell};
use std::collections::VecDeque;
use std::io::{self, Read, Seek, SeekFrom, Write};
use std::panic::{catch_unwind, AssertUnwindSafe};
use std::rc::Rc;
use std::sync::Arc;
use std::time::{SystemTime, UNIX_EPOCH};

use fatfs::{Date, DateTime, FileSystem, FsOptions, Time, TimeProvider};
use rescue_io::{BlockWrite, Error, ErrorKind, Result};

use crate::path::GuestPath;

/// Bytes per cached chunk of the volume.
const CHUNK_BYTES: u64 = 64 * 1024;
/// Chunks kept (2 MiB).
const CACHE_CHUNKS: usize = 32;
/// Largest FAT read into memory for the consistency check (16 M clusters
/// on FAT32, far more than any EFI system partition has).
const MAX_FAT_BYTES: u64 = 64 * 1024 * 1024;
/// A FAT directory holds at most 65536 entries of 32 bytes.
const MAX_DIR_BYTES: u64 = 65536 * 32;
/// Directory nesting accepted.
const MAX_DEPTH: usize = 64;
/// Size of a directory entry.
const ENTRY: usize = 32;
/// Largest file FAT can hold.
const MAX_FILE_BYTES: u64 = u32::MAX as u64;

const ATTR_VOLUME: u8 = 0x08;
const ATTR_DIR: u8 = 0x10;
const ATTR_LFN: u8 = 0x0F;
const DOT: [u8; 11] = *b".          ";
const DOTDOT: [u8; 11] = *b"..         ";

/// The FAT variant.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum FatKind {
    /// FAT12.
    Fat12,
    /// FAT16.
    Fat16,
    /// FAT32.
    Fat32,
}

impl FatKind {
    fn eoc_min(self) -> u32 {
        match self {
            FatKind::Fat12 => 0xFF8,
            FatKind::Fat16 => 0xFFF8,
            FatKind::Fat32 => 0x0FFF_FFF8,
        }
    }

    fn bad(self) -> u32 {
        match self {
            FatKind::Fat12 => 0xFF7,
            FatKind::Fat16 => 0xFFF7,
            FatKind::Fat32 => 0x0FFF_FFF7,
        }
    }

    /// Entry `cluster` of a FAT held in `fat` (`None` past its end).
    fn entry(self, fat: &[u8], cluster: u32) -> Option<u32> {
        let c = cluster as usize;
        match self {
            FatKind::Fat12 => {
                let off = c + c / 2;
                let b = fat.get(off..off + 2)?;
                let v = u16::from_le_bytes([b[0], b[1]]);
                Some(u32::from(if c & 1 == 1 { v >> 4 } else { v & 0xFFF }))
            }
            FatKind::Fat16 => {
                let b = fat.get(2 * c..2 * c + 2)?;
                Some(u32::from(u16::from_le_bytes([b[0], b[1]])))
            }
            FatKind::Fat32 => {
                let b = fat.get(4 * c..4 * c + 4)?;
                Some(u32::from_le_bytes([b[0], b[1], b[2], b[3]]) & 0x0FFF_FFFF)
            }
        }
    }

    /// Byte range in the FAT holding entry `cluster`.
    fn entry_span(self, cluster: u32) -> (u64, usize) {
        let c = u64::from(cluster);
        match self {
            FatKind::Fat12 => (c + c / 2, 2),
            FatKind::Fat16 => (2 * c, 2),
            FatKind::Fat32 => (4 * c, 4),
        }
    }
}

/// Layout of the volume, from its boot sector, checked against what `fatfs`
/// computes so the two agree.
#[derive(Clone, Debug)]
struct Geometry {
    kind: FatKind,
    cluster_bytes: u64,
    fat_offset: u64,
    fat_bytes: u64,
    fats: u64,
    /// FAT12/16: the fixed root directory area.
    root_offset: u64,
    root_bytes: u64,
    /// FAT32: first cluster of the root directory.
    root_cluster: u32,
    data_offset: u64,
    /// Data clusters; valid cluster numbers are `2..clusters + 2`.
    clusters: u32,
    /// Byte of the boot sector holding the dirty flag.
    flags_offset: u64,
    dirty: bool,
}

impl Geometry {
    fn parse(boot: &[u8], volume_bytes: u64) -> std::result::Result<Geometry, String> {
        let u16_at = |o: usize| u16::from_le_bytes([boot[o], boot[o + 1]]);
        let u32_at =
            |o: usize| u32::from_le_bytes([boot[o], boot[o + 1], boot[o + 2], boot[o + 3]]);
        if boot.len() < 512 || boot[510..512] != [0x55, 0xAA] {
            return Err(
                "no boot sector signature (55 AA at byte 510): this is not a FAT volume".into(),
            );
        }
        let bps = u64::from(u16_at(11));
        let spc = u64::from(boot[13]);
        let reserved = u64::from(u16_at(14));
        let fats = u64::from(boot[16]);
        let root_entries = u64::from(u16_at(17));
        let total16 = u64::from(u16_at(19));
        let spf16 = u64::from(u16_at(22));
        let total32 = u64::from(u32_at(32));
        if !bps.is_power_of_two() || !(512..=4096).contains(&bps) {
            return Err(format!(
                "bytes per sector {bps} is not 512, 1024, 2048 or 4096"
            ));
        }
        if !spc.is_power_of_two() || spc > 128 {
            return Err(format!(
                "sectors per cluster {spc} is not a power of two up to 128"
            ));
        }
        if reserved == 0 || fats == 0 {
            return Err("no reserved sectors or no FAT".into());
        }
        let is_fat32 = spf16 == 0;
        let (spf, root_cluster, flags_offset) = if is_fat32 {
            let spf32 = u64::from(u32_at(36));
            let ext_flags = u16_at(40);
            let version = u16_at(42);
            let root_cluster = u32_at(44);
            let fsinfo = u64::from(u16_at(48));
            let backup = u64::from(u16_at(50));
            if root_entries != 0 || total16 != 0 || spf32 == 0 || version != 0 {
                return Err("inconsistent FAT32 boot sector fields".into());
            }
            if fsinfo >= reserved || backup >= reserved {
                return Err(
                    "the FSInfo or backup boot sector lies outside the reserved area".into(),
                );
            }
            if ext_flags & 0x80 != 0 {
                return Err(
                    "FAT mirroring is disabled (one active FAT): not supported for writing".into(),
                );
            }
            (spf32, root_cluster, 0x41)
        } else {
            if root_entries == 0 {
                return Err("a FAT12/16 volume without root directory entries".into());
            }
            (spf16, 0, 0x25)
        };
        if (total16 == 0) == (total32 == 0) {
            return Err("both or neither of the 16- and 32-bit sector counts are set".into());
        }
        let total = total16.max(total32);
        let root_bytes = root_entries * ENTRY as u64;
        let root_sectors = root_bytes.div_ceil(bps);
        let first_data = reserved + fats * spf + root_sectors;
        if total <= first_data {
            return Err("the sector count leaves no room for data".into());
        }
        if total * bps > volume_bytes {
            return Err(format!(
                "the filesystem claims {} bytes but the volume has {volume_bytes}: the partition is truncated",
                total * bps
            ));
        }
        // fatfs computes this product in 32 bits.
        if spf * bps * 8 > u64::from(u32::MAX) {
            return Err("the FAT is implausibly large".into());
        }
        let clusters = (total - first_data) / spc;
        let kind = if clusters < 4085 {
            FatKind::Fat12
        } else if clusters < 65525 {
            FatKind::Fat16
        } else {
            FatKind::Fat32
        };
        if is_fat32 != (kind == FatKind::Fat32) {
            return Err(format!(
                "{clusters} clusters do not match the FAT{} layout of the boot sector",
                if is_fat32 { "32" } else { "12/16" }
            ));
        }
        let bits = match kind {
            FatKind::Fat12 => 12,
            FatKind::Fat16 => 16,
            FatKind::Fat32 => 32,
        };
        if spf * bps * 8 / bits < clusters + 2 {
            return Err("the FAT is too small for the number of clusters".into());
        }
        // OK: total < 2^32 sectors bounds every cluster count below.
        let clusters = u32::try_from(clusters).map_err(|_| "too many clusters".to_string())?;
        if kind == FatKind::Fat32 && clusters > 0x0FFF_FFF4 {
            return Err("too many clusters for FAT32".into());
        }
        if kind == FatKind::Fat32 && !(2..clusters + 2).contains(&root_cluster) {
            return Err(format!(
                "root directory cluster {root_cluster} is out of range"
            ));
        }
        let flags = boot[flags_offset];
        Ok(Geometry {
            kind,
            cluster_bytes: bps * spc,
            fat_offset: reserved * bps,
            fat_bytes: spf * bps,
            fats,
            root_offset: (reserved + fats * spf) * bps,
            root_bytes,
            root_cluster,
            data_offset: first_data * bps,
            clusters,
            flags_offset: flags_offset as u64,
            dirty: flags & 1 != 0,
        })
    }

    fn valid_cluster(&self, c: u32) -> bool {
        c >= 2 && c - 2 < self.clusters
    }

    fn cluster_offset(&self, c: u32) -> u64 {
        self.data_offset + u64::from(c - 2) * self.cluster_bytes
    }

    fn root(&self) -> DirLoc {
        match self.kind {
            FatKind::Fat32 => DirLoc::Chain(self.root_cluster),
            _ => DirLoc::FixedRoot,
        }
    }

    /// The cluster a `..` entry names for directory `loc` (0 for the root).
    fn dotdot_cluster(&self, loc: DirLoc) -> u32 {
        match loc {
            DirLoc::FixedRoot => 0,
            DirLoc::Chain(c) if self.kind == FatKind::Fat32 && c == self.root_cluster => 0,
            DirLoc::Chain(c) => c,
        }
    }
}

/// The volume's bytes, with a small write-through chunk cache shared by the
/// `fatfs` stream and this module's own reads and repairs.
struct Disk {
    dev: Arc<dyn BlockWrite>,
    size: u64,
    cache: RefCell<VecDeque<(u64, Vec<u8>)>>,
    /// Set after a failed change: nothing more is written, so `fatfs`
    /// cannot clear the dirty bit on drop.
    sealed: Cell<bool>,
}

impl Disk {
    fn range_error(&self, op: &str, off: u64, len: usize) -> Error {
        Error::new(ErrorKind::Truncated, op.to_owned())
            .with_path(self.dev.describe())
            .with_offset(off)
            .with_detail(format!(
                "{len} bytes past the end of the {}-byte FAT volume",
                self.size
            ))
    }

    fn read(&self, off: u64, dst: &mut [u8]) -> Result<()> {
        let end = off
            .checked_add(dst.len() as u64)
            .filter(|&e| e <= self.size)
            .ok_or_else(|| self.range_error("reading", off, dst.len()))?;
        let mut pos = off;
        let mut done = 0usize;
        while pos < end {
            let index = pos / CHUNK_BYTES;
            // OK: the remainder is below CHUNK_BYTES.
            let in_chunk = (pos % CHUNK_BYTES) as usize;
            let mut cache = self.cache.borrow_mut();
            if let Some(i) = cache.iter().position(|(k, _)| *k == index) {
                if let Some(entry) = cache.remove(i) {
                    cache.push_front(entry);
                }
            } else {
                let start = index * CHUNK_BYTES;
                let len = CHUNK_BYTES.min(self.size - start);
                let mut data = vec![0u8; usize::try_from(len).unwrap_or(0)];
                self.dev.read_exact_at(start, &mut data)?;
                cache.push_front((index, data));
                cache.truncate(CACHE_CHUNKS);
            }
            let chunk = cache.front().map(|(_, d)| d.as_slice()).unwrap_or(&[]);
            let avail = chunk.get(in_chunk..).unwrap_or(&[]);
            let n = avail.len().min(dst.len() - done);
            if n == 0 {
                return Err(self.range_error("reading", pos, dst.len() - done));
            }
            dst[done..done + n].copy_from_slice(&avail[..n]);
            done += n;
            pos += n as u64;
        }
        Ok(())
    }

    fn write(&self, off: u64, src: &[u8]) -> Result<()> {
        if self.sealed.get() {
            return Err(Error::new(ErrorKind::Unsupported, "writing")
                .with_path(self.dev.describe())
                .with_detail("an earlier change failed; the volume is left as it is with its dirty bit set: run fsck.fat on it"));
        }
        let end = off
            .checked_add(src.len() as u64)
            .filter(|&e| e <= self.size)
            .ok_or_else(|| self.range_error("writing", off, src.len()))?;
        self.dev.write_all_at(off, src)?;
        for (index, data) in self.cache.borrow_mut().iter_mut() {
            let start = *index * CHUNK_BYTES;
            let stop = start + data.len() as u64;
            let (a, b) = (off.max(start), end.min(stop));
            if a < b {
                // OK: offsets inside one chunk and inside `src` fit usize.
                let dst = &mut data[(a - start) as usize..(b - start) as usize];
                dst.copy_from_slice(&src[(a - off) as usize..(b - off) as usize]);
            }
        }
        Ok(())
    }

    fn read_vec(&self, off: u64, len: u64) -> Result<Vec<u8>> {
        let mut v = vec![0u8; usize::try_from(len).unwrap_or(0)];
        self.read(off, &mut v)?;
        Ok(v)
    }
}

/// The seekable stream `fatfs` works on.
struct Stream {
    disk: Rc<Disk>,
    pos: u64,
}

impl Read for Stream {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        let left = self.disk.size.saturating_sub(self.pos);
        let to_chunk_end = CHUNK_BYTES - self.pos % CHUNK_BYTES;
        let n = usize::try_from(left.min(to_chunk_end))
            .unwrap_or(usize::MAX)
            .min(buf.len());
        if n == 0 {
            return Ok(0);
        }
        self.disk
            .read(self.pos, &mut buf[..n])
            .map_err(io::Error::other)?;
        self.pos += n as u64;
        Ok(n)
    }
}

impl Write for Stream {
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        self.disk.write(self.pos, buf).map_err(io::Error::other)?;
        self.pos += buf.len() as u64;
        Ok(buf.len())
    }

    fn flush(&mut self) -> io::Result<()> {
        Ok(())
    }
}

impl Seek for Stream {
    fn seek(&mut self, pos: SeekFrom) -> io::Result<u64> {
        let new = match pos {
            SeekFrom::Start(p) => Some(p),
            SeekFrom::End(d) => self.disk.size.checked_add_signed(d),
            SeekFrom::Current(d) => self.pos.checked_add_signed(d),
        };
        let p =
            new.ok_or_else(|| io::Error::new(io::ErrorKind::InvalidInput, "seek out of range"))?;
        self.pos = p;
        Ok(p)
    }
}

/// Timestamps for `fatfs`: the host's clock in UTC, clamped to FAT's
/// 1980–2107 range.
#[derive(Debug)]
struct UtcClock;

static UTC_CLOCK: UtcClock = UtcClock;

/// Date and time of `secs` seconds after the Unix epoch, in UTC.
fn fat_date_time(secs: i64) -> DateTime {
    let t = rescue_io::time::utc(secs);
    let (year, month, day, hour, min, sec) = if t.year < 1980 {
        (1980, 1, 1, 0, 0, 0)
    } else if t.year > 2107 {
        (2107, 12, 31, 23, 59, 59)
    } else {
        (t.year, t.month, t.day, t.hour, t.minute, t.second)
    };
    // OK: every value was clamped into FAT's ranges above.
    DateTime {
        date: Date {
            year: year as u16,
            month: month as u16,
            day: day as u16,
        },
        time: Time {
            hour: hour as u16,
            min: min as u16,
            sec: sec as u16,
            millis: 0,
        },
    }
}

impl TimeProvider for UtcClock {
    fn get_current_date(&self) -> Date {
        self.get_current_date_time().date
    }

    fn get_current_date_time(&self) -> DateTime {
        let secs = SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .map(|d| i64::try_from(d.as_secs()).unwrap_or(i64::MAX))
            .unwrap_or(0);
        fat_date_time(secs)
    }
}

/// Where a directory's entries live.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum DirLoc {
    /// The fixed root directory area of FAT12/16.
    FixedRoot,
    /// A cluster chain starting here.
    Chain(u32),
}

/// One live directory entry as `fatfs` sees it.
#[derive(Clone, Debug)]
struct RawEntry {
    /// `fatfs`' `file_name()`: the long name, else the short name with the
    /// NT lower-case flags applied.
    name: String,
    /// The short name as `fatfs` compares it (`NAME.EXT`).
    short: String,
    sfn: [u8; 11],
    attr: u8,
    cluster: u32,
    size: u32,
    /// The 32 bytes of the short entry.
    raw: [u8; ENTRY],
    /// Slot index of the short entry in its directory.
    slot: usize,
}

impl RawEntry {
    fn is_dir(&self) -> bool {
        self.attr & ATTR_DIR != 0
    }

    fn is_dot(&self) -> bool {
        self.sfn == DOT || self.sfn == DOTDOT
    }

    /// True when `fatfs` would take `name` for this entry (its `eq_name`).
    fn answers_to(&self, folded: &str) -> bool {
        fold(&self.name) == folded || fold(&self.short) == folded
    }
}

/// Case folding as `fatfs` compares names (Unicode upper case).
fn fold(s: &str) -> String {
    s.chars().flat_map(char::to_uppercase).collect()
}

/// The long name being assembled, following `fatfs`' rules exactly so both
/// agree on every entry's name.
#[derive(Default)]
struct LongName {
    buf: Vec<u16>,
    checksum: u8,
    index: u8,
}

impl LongName {
    fn clear(&mut self) {
        self.buf.clear();
        self.index = 0;
    }

    fn process(&mut self, e: &[u8]) {
        let order = e[0];
        let index = order & 0x1F;
        if index == 0 {
            self.clear();
            return;
        }
        if order & 0x40 != 0 {
            self.index = index;
            self.checksum = e[13];
            self.buf.resize(usize::from(index) * 13, 0);
        } else if self.index == 0 || index != self.index - 1 || e[13] != self.checksum {
            self.clear();
            return;
        } else {
            self.index -= 1;
        }
        let pos = 13 * usize::from(index - 1);
        let units = e[1..11]
            .chunks(2)
            .chain(e[14..26].chunks(2))
            .chain(e[28..32].chunks(2))
            .map(|b| u16::from_le_bytes([b[0], b[1]]));
        for (slot, u) in self.buf[pos..pos + 13].iter_mut().zip(units) {
            *slot = u;
        }
    }

    fn finish(&mut self, sfn: &[u8; 11]) -> Option<String> {
        if self.index == 0 {
            return None;
        }
        if lfn_checksum(sfn) != self.checksum || self.index != 1 {
            return None;
        }
        let mut len = self.buf.len();
        while len > 0 && (self.buf[len - 1] == 0 || self.buf[len - 1] == 0xFFFF) {
            len -= 1;
        }
        Some(String::from_utf16_lossy(&self.buf[..len]))
    }
}

fn lfn_checksum(sfn: &[u8; 11]) -> u8 {
    sfn.iter()
        .fold(0u8, |s, &b| (s >> 1).wrapping_add(s << 7).wrapping_add(b))
}

/// `NAME.EXT` from the 11 raw bytes, bytes above 0x7F shown as U+FFFD as
/// `fatfs`' default code page converter does.
fn short_display(sfn: &[u8; 11], lower_base: bool, lower_ext: bool) -> String {
    let mut raw = *sfn;
    if raw[0] == 0x05 {
        raw[0] = 0xE5;
    }
    let part = |bytes: &[u8], lower: bool| -> String {
        let len = bytes.iter().rposition(|&b| b != b' ').map_or(0, |p| p + 1);
        bytes[..len]
            .iter()
            .map(|&b| {
                let c = if b <= 0x7F { b as char } else { '\u{FFFD}' };
                if lower {
                    c.to_ascii_lowercase()
                } else {
                    c
                }
            })
            .collect()
    };
    let base = part(&raw[..8], lower_base);
    let ext = part(&raw[8..], lower_ext);
    if ext.is_empty() {
        base
    } else {
        format!("{base}.{ext}")
    }
}

/// The live entries of a directory's bytes, in order, as `fatfs` iterates
/// them (deleted entries and volume labels skipped, `.`/`..` included).
fn parse_dir(bytes: &[u8], kind: FatKind) -> Vec<RawEntry> {
    let mut out = Vec::new();
    let mut lfn = LongName::default();
    for (slot, e) in bytes.chunks_exact(ENTRY).enumerate() {
        if e[0] == 0 {
            break;
        }
        if e[0] == 0xE5 {
            lfn.clear();
            continue;
        }
        let attr = e[11];
        if attr & ATTR_LFN == ATTR_LFN {
            lfn.process(e);
            continue;
        }
        if attr & ATTR_VOLUME != 0 {
            lfn.clear();
            continue;
        }
        let mut sfn = [0u8; 11];
        sfn.copy_from_slice(&e[..11]);
        let long = lfn.finish(&sfn);
        lfn = LongName::default();
        let hi = if kind == FatKind::Fat32 {
            u32::from(u16::from_le_bytes([e[20], e[21]]))
        } else {
            0
        };
        let lo = u32::from(u16::from_le_bytes([e[26], e[27]]));
        let mut raw = [0u8; ENTRY];
        raw.copy_from_slice(e);
        let short = short_display(&sfn, false, false);
        let name = match long {
            Some(l) if !l.is_empty() => l,
            _ => short_display(&sfn, e[12] & 0x08 != 0, e[12] & 0x10 != 0),
        };
        out.push(RawEntry {
            name,
            short,
            sfn,
            attr,
            cluster: (hi << 16) | lo,
            size: u32::from_le_bytes([e[28], e[29], e[30], e[31]]),
            raw,
            slot,
        });
    }
    out
}

/// Where `fatfs` 0.3 puts `n` new entries in a directory holding `bytes`:
/// the first run of `n` deleted slots, else the first end slot (everything
/// after it is taken as free, past the end the directory grows).
fn free_slot(bytes: &[u8], n: usize) -> usize {
    let mut first_free = 0;
    let mut run = 0;
    let slots = bytes.len() / ENTRY;
    for i in 0..=slots {
        let first = bytes.get(i * ENTRY).copied().unwrap_or(0);
        if first == 0 {
            return if run == 0 { i } else { first_free };
        }
        if first == 0xE5 {
            if run == 0 {
                first_free = i;
            }
            run += 1;
            if run == n {
                return first_free;
            }
        } else {
            run = 0;
        }
    }
    slots
}

/// A directory's bytes and where they are on the volume.
struct DirContent {
    loc: DirLoc,
    chain: Vec<u32>,
    bytes: Vec<u8>,
}

/// A name checked for use as a new FAT name, with why not.
fn check_new_name(name: &[u8]) -> std::result::Result<&str, String> {
    let s = std::str::from_utf8(name)
        .map_err(|_| "the name is not UTF-8; FAT long names are UTF-16".to_string())?;
    if s.is_empty() || s == "." || s == ".." {
        return Err("not a usable file name".into());
    }
    if s.len() > 255 || s.encode_utf16().count() > 255 {
        return Err("longer than FAT's 255-character limit".into());
    }
    if s.starts_with(' ') || s.ends_with(' ') || s.ends_with('.') {
        return Err("FAT names cannot start with a space or end with a space or a dot (other systems strip them)".into());
    }
    for c in s.chars() {
        let ok = c.is_ascii_alphanumeric()
            || ('\u{80}'..='\u{FFFF}').contains(&c)
            || "$%'-_@~`!(){}. +,;=[]^#&".contains(c);
        if !ok {
            return Err(format!(
                "{c:?} is not allowed in FAT names (not allowed: control characters and \\ / : * ? \" < > |)"
            ));
        }
    }
    Ok(s)
}

/// A writable FAT filesystem on one volume (normally the EFI system
/// partition). Paths are absolute inside the volume and matched without
/// regard to case, as FAT does. Nothing is written until a change is asked
/// for; [`FatWriter::close`] ends with a clean unmount (dirty bit clear).
pub struct FatWriter {
    fs: Option<FileSystem<Stream>>,
    disk: Rc<Disk>,
    geo: Geometry,
    volume: String,
    /// Why the writer refuses further work, after a change failed midway.
    poisoned: RefCell<Option<String>>,
}

impl std::fmt::Debug for FatWriter {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("FatWriter")
            .field("volume", &self.volume)
            .field("kind", &self.geo.kind)
            .finish()
    }
}

/// What [`FatWriter::open`] learnt while checking the volume.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct FatSummary {
    /// FAT12, FAT16 or FAT32.
    pub kind: FatKind,
    /// Bytes per cluster.
    pub cluster_bytes: u64,
    /// Data clusters.
    pub clusters: u32,
    /// Free clusters, counted in the FAT.
    pub free_clusters: u32,
}

/// The consistency check run before the first write.
struct Checker<'a> {
    geo: &'a Geometry,
    disk: &'a Disk,
    volume: &'a str,
    fat: Vec<u8>,
    used: Vec<bool>,
}

impl Checker<'_> {
    fn corrupt(&self, what: impl std::fmt::Display) -> Error {
        Error::corrupt(
            "checking FAT volume before writing",
            format!("{what}; nothing was written: repair it with fsck.fat -a (on a copy first) and retry"),
        )
        .with_path(self.volume.to_owned())
    }

    /// Follows a chain from `first`, claiming its clusters.
    fn chain(&mut self, first: u32, path: &str, max_clusters: u64) -> Result<Vec<u32>> {
        let geo = self.geo;
        let mut out = Vec::new();
        let mut c = first;
        loop {
            if !geo.valid_cluster(c) {
                return Err(self.corrupt(format!("{path}: cluster {c} is out of range")));
            }
            // OK: valid_cluster bounds c below clusters + 2 = used.len().
            if self.used[c as usize] {
                return Err(self.corrupt(format!(
                    "{path}: cluster {c} is also used elsewhere (cross-linked or looping chain)"
                )));
            }
            self.used[c as usize] = true;
            out.push(c);
            if out.len() as u64 > max_clusters {
                return Err(
                    self.corrupt(format!("{path}: the cluster chain is longer than allowed"))
                );
            }
            let next = geo.kind.entry(&self.fat, c).unwrap_or(0);
            if next >= geo.kind.eoc_min() {
                return Ok(out);
            }
            if next == geo.kind.bad() {
                return Err(self.corrupt(format!("{path}: the chain runs into a bad cluster")));
            }
            if next == 0 {
                return Err(self.corrupt(format!("{path}: the chain runs into free cluster {c}")));
            }
            c = next;
        }
    }

    fn run(&mut self) -> Result<u32> {
        let geo = self.geo;
        // Every FAT copy must match the first: fatfs writes changes to all
        // of them and fsck.fat compares them.
        let copy = |i: u64| geo.fat_offset + i * geo.fat_bytes;
        let dev = self.disk.dev.as_ref();
        self.fat = read_direct(dev, copy(0), geo.fat_bytes)?;
        for i in 1..geo.fats {
            if read_direct(dev, copy(i), geo.fat_bytes)? != self.fat {
                return Err(self.corrupt(format!("FAT copy {} differs from the first", i + 1)));
            }
        }
        let max_dir_clusters = (MAX_DIR_BYTES / geo.cluster_bytes).max(1);
        let mut stack: Vec<(DirLoc, String, usize)> = vec![(geo.root(), String::new(), 0)];
        while let Some((loc, path, depth)) = stack.pop() {
            let shown = if path.is_empty() { "/" } else { &path };
            let bytes = match loc {
                DirLoc::FixedRoot => self.disk.read_vec(geo.root_offset, geo.root_bytes)?,
                DirLoc::Chain(first) => {
                    let chain = self.chain(first, shown, max_dir_clusters)?;
                    let mut bytes = Vec::with_capacity(chain.len() * geo.cluster_bytes as usize);
                    for c in chain {
                        bytes.extend(
                            self.disk
                                .read_vec(geo.cluster_offset(c), geo.cluster_bytes)?,
                        );
                    }
                    bytes
                }
            };
            let entries = parse_dir(&bytes, geo.kind);
            let is_root = path.is_empty();
            if !is_root {
                let ok = |i: usize, name: &[u8; 11]| {
                    entries
                        .get(i)
                        .is_some_and(|e| e.slot == i && &e.sfn == name && e.is_dir())
                };
                if !ok(0, &DOT) || !ok(1, &DOTDOT) {
                    return Err(self.corrupt(format!(
                        "{shown}: the first two entries are not '.' and '..'"
                    )));
                }
            }
            for e in entries.iter().filter(|e| !e.is_dot()) {
                let child = format!("{path}/{}", e.name);
                if e.name.contains('/') || e.name.contains('\0') {
                    return Err(self.corrupt(format!("{child}: a name with '/' or NUL")));
                }
                if e.is_dir() {
                    if depth + 1 > MAX_DEPTH {
                        return Err(self.corrupt(format!(
                            "{child}: directories nest deeper than {MAX_DEPTH}"
                        )));
                    }
                    if !geo.valid_cluster(e.cluster) {
                        return Err(self.corrupt(format!(
                            "{child}: directory cluster {} is out of range",
                            e.cluster
                        )));
                    }
                    stack.push((DirLoc::Chain(e.cluster), child, depth + 1));
                } else if e.cluster != 0 {
                    let need = u64::from(e.size).div_ceil(geo.cluster_bytes);
                    let chain = self.chain(e.cluster, &child, u64::from(geo.clusters))?;
                    if (chain.len() as u64) < need {
                        return Err(self.corrupt(format!(
                            "{child}: {} bytes in {} clusters of {} bytes",
                            e.size,
                            chain.len(),
                            geo.cluster_bytes
                        )));
                    }
                } else if e.size != 0 {
                    return Err(self.corrupt(format!("{child}: {} bytes but no clusters", e.size)));
                }
            }
        }
        let free = (2..geo.clusters + 2)
            .filter(|&c| geo.kind.entry(&self.fat, c) == Some(0))
            .count();
        Ok(u32::try_from(free).unwrap_or(u32::MAX))
    }
}

/// A resolved path: the entries of each component.
struct Resolved {
    /// The directory holding the last component (the root for `/`).
    parent: DirLoc,
    /// The entry of the last component; `None` for the root.
    entry: Option<RawEntry>,
    /// The `fatfs` path (unambiguous names joined by `/`).
    fatfs_path: String,
    /// The directory clusters along the way, root first, including the
    /// last component when it is a directory.
    dirs: Vec<DirLoc>,
}

impl FatWriter {
    /// Opens the FAT filesystem on `dev` (volume `name`, for messages) for
    /// writing, after checking the whole volume. Refuses a volume whose
    /// dirty bit is set, whose structure is inconsistent, or that `fatfs`
    /// cannot handle; nothing is written by opening.
    pub fn open(dev: Arc<dyn BlockWrite>, name: &str) -> Result<FatWriter> {
        let what = || format!("FAT filesystem on {name}");
        let op = "opening for writing";
        let disk = Rc::new(Disk {
            size: dev.size_in_bytes(),
            dev,
            cache: RefCell::new(VecDeque::new()),
            sealed: Cell::new(false),
        });
        if disk.size < 512 {
            return Err(Error::new(ErrorKind::Corrupt, op)
                .with_path(what())
                .with_detail("the volume is smaller than one sector: not a FAT filesystem"));
        }
        let boot = disk.read_vec(0, 512)?;
        let geo = Geometry::parse(&boot, disk.size).map_err(|d| {
            Error::new(ErrorKind::Corrupt, op)
                .with_path(what())
                .with_detail(format!("{d}; check it with fsck.fat -n"))
        })?;
        if geo.dirty {
            return Err(Error::new(ErrorKind::Unsupported, op)
                .with_path(what())
                .with_detail("the dirty bit is set (the volume was not cleanly unmounted): check and repair it with fsck.fat -a first, then retry"));
        }
        if geo.fat_bytes > MAX_FAT_BYTES {
            return Err(Error::new(ErrorKind::Unsupported, op)
                .with_path(what())
                .with_detail(format!(
                    "the FAT is {} bytes, more than the {MAX_FAT_BYTES} this tool checks in memory; an EFI system partition is far smaller",
                    geo.fat_bytes
                )));
        }
        let mut checker = Checker {
            geo: &geo,
            disk: &disk,
            volume: name,
            fat: Vec::new(),
            // OK: fat_bytes <= MAX_FAT_BYTES bounds clusters.
            used: vec![false; geo.clusters as usize + 2],
        };
        checker.run()?;
        let stream = Stream {
            disk: disk.clone(),
            pos: 0,
        };
        let options = FsOptions::new()
            .update_accessed_date(false)
            .time_provider(&UTC_CLOCK);
        let fs = match catch_unwind(AssertUnwindSafe(|| FileSystem::new(stream, options))) {
            Ok(Ok(fs)) => fs,
            Ok(Err(e)) => {
                return Err(Error::new(ErrorKind::Corrupt, op)
                    .with_path(what())
                    .with_detail(format!("{e}; check it with fsck.fat -n")))
            }
            Err(_) => {
                return Err(Error::new(ErrorKind::Corrupt, op)
                    .with_path(what())
                    .with_detail(
                        "the FAT library failed on this boot sector; check it with fsck.fat -n",
                    ))
            }
        };
        Ok(FatWriter {
            fs: Some(fs),
            disk,
            geo,
            volume: name.to_owned(),
            poisoned: RefCell::new(None),
        })
    }

    /// Layout and free space of the volume.
    pub fn summary(&self) -> Result<FatSummary> {
        Ok(FatSummary {
            kind: self.geo.kind,
            cluster_bytes: self.geo.cluster_bytes,
            clusters: self.geo.clusters,
            free_clusters: self.free_clusters()?,
        })
    }

    fn what(&self, path: &GuestPath) -> String {
        format!("{path} on {}", self.volume)
    }

    fn err(&self, kind: ErrorKind, op: &str, path: &GuestPath, detail: impl Into<String>) -> Error {
        Error::new(kind, op.to_owned())
            .with_path(self.what(path))
            .with_detail(detail)
    }

    fn fs(&self, op: &str, path: &GuestPath) -> Result<&FileSystem<Stream>> {
        if let Some(why) = self.poisoned.borrow().as_ref() {
            return Err(self.err(ErrorKind::Unsupported, op, path, format!("refused: {why}")));
        }
        self.fs
            .as_ref()
            .ok_or_else(|| self.err(ErrorKind::Unsupported, op, path, "the volume is closed"))
    }

    /// Runs a change; a failure or panic inside it leaves the volume
    /// possibly half-changed, so the writer refuses further work and keeps
    /// the dirty bit set.
    fn change<T>(
        &self,
        op: &str,
        path: &GuestPath,
        f: impl FnOnce(&FileSystem<Stream>) -> io::Result<T>,
    ) -> Result<T> {
        let fs = self.fs(op, path)?;
        let failure = match catch_unwind(AssertUnwindSafe(|| f(fs))) {
            Ok(Ok(v)) => return Ok(v),
            Ok(Err(e)) => e.to_string(),
            Err(_) => "the FAT library panicked".to_owned(),
        };
        Err(self.poison(op, path, failure))
    }

    fn poison(&self, op: &str, path: &GuestPath, failure: String) -> Error {
        self.disk.sealed.set(true);
        let advice =
            "the volume may be inconsistent and its dirty bit stays set: run fsck.fat -a on it";
        *self.poisoned.borrow_mut() = Some(format!(
            "an earlier change ({op} {}) failed midway; {advice}",
            self.what(path)
        ));
        self.err(
            ErrorKind::Io,
            op,
            path,
            format!("failed midway ({failure}); {advice}"),
        )
    }

    /// A raw repair after a change; failures poison like the change itself.
    fn repair(&self, op: &str, path: &GuestPath, f: impl FnOnce() -> Result<()>) -> Result<()> {
        f().map_err(|e| self.poison(op, path, e.to_string()))
    }

    /// The next cluster after `c`, `None` at the end of the chain.
    fn next_cluster(&self, c: u32) -> Result<Option<u32>> {
        let (off, len) = self.geo.kind.entry_span(c);
        let mut b = [0u8; 4];
        self.disk.read(self.geo.fat_offset + off, &mut b[..len])?;
        let v = match self.geo.kind {
            FatKind::Fat12 => {
                let v = u16::from_le_bytes([b[0], b[1]]);
                u32::from(if c & 1 == 1 { v >> 4 } else { v & 0xFFF })
            }
            FatKind::Fat16 => u32::from(u16::from_le_bytes([b[0], b[1]])),
            FatKind::Fat32 => u32::from_le_bytes(b) & 0x0FFF_FFFF,
        };
        Ok((v < self.geo.kind.bad()).then_some(v))
    }

    /// The clusters of the chain from `first`, bounded and checked.
    fn chain(&self, first: u32) -> Result<Vec<u32>> {
        let mut out = Vec::new();
        let mut c = first;
        loop {
            if !self.geo.valid_cluster(c) || out.len() as u64 > u64::from(self.geo.clusters) {
                return Err(Error::corrupt(
                    "following a cluster chain",
                    format!("cluster {c} is out of range or the chain loops; run fsck.fat"),
                )
                .with_path(self.volume.clone()));
            }
            out.push(c);
            match self.next_cluster(c)? {
                Some(n) => c = n,
                None => return Ok(out),
            }
        }
    }

    fn read_dir(&self, loc: DirLoc) -> Result<DirContent> {
        match loc {
            DirLoc::FixedRoot => Ok(DirContent {
                loc,
                chain: Vec::new(),
                bytes: self
                    .disk
                    .read_vec(self.geo.root_offset, self.geo.root_bytes)?,
            }),
            DirLoc::Chain(first) => {
                let chain = self.chain(first)?;
                if chain.len() as u64 * self.geo.cluster_bytes > MAX_DIR_BYTES {
                    return Err(Error::corrupt(
                        "reading a directory",
                        "larger than FAT allows (65536 entries); run fsck.fat",
                    )
                    .with_path(self.volume.clone()));
                }
                let mut bytes = Vec::new();
                for &c in &chain {
                    bytes.extend(
                        self.disk
                            .read_vec(self.geo.cluster_offset(c), self.geo.cluster_bytes)?,
                    );
                }
                Ok(DirContent { loc, chain, bytes })
            }
        }
    }

    /// The first live entry (not `.`/`..`) that answers to `name`.
    fn find(content: &DirContent, kind: FatKind, name: &str) -> Option<RawEntry> {
        let folded = fold(name);
        parse_dir(&content.bytes, kind)
            .into_iter()
            .find(|e| !e.is_dot() && e.answers_to(&folded))
    }

    /// A name for `entry` that `fatfs` resolves to it and nothing before
    /// it: its long name, else its short name.
    fn fatfs_name(&self, content: &DirContent, entry: &RawEntry) -> Result<String> {
        let entries = parse_dir(&content.bytes, self.geo.kind);
        for candidate in [&entry.name, &entry.short] {
            let folded = fold(candidate);
            let first = entries.iter().find(|e| e.answers_to(&folded));
            if first.is_some_and(|e| e.slot == entry.slot) {
                return Ok(candidate.clone());
            }
        }
        Err(Error::corrupt(
            "resolving a name",
            format!(
                "{} collides with another entry's long or short name in its directory; run fsck.fat",
                entry.name
            ),
        )
        .with_path(self.volume.clone()))
    }

    /// Normalises a user path; refuses `.`/`..` components and non-UTF-8.
    fn parse_path<'p>(&self, op: &str, path: &'p [u8]) -> Result<(GuestPath, Vec<&'p str>)> {
        let gp = GuestPath::new(path);
        let mut comps = Vec::new();
        for c in path.split(|&b| b == b'/').filter(|c| !c.is_empty()) {
            if c == b"." || c == b".." {
                return Err(self.err(
                    ErrorKind::Unsupported,
                    op,
                    &gp,
                    "give the path without '.' or '..' components",
                ));
            }
            let s = std::str::from_utf8(c).map_err(|_| {
                self.err(
                    ErrorKind::NotFound,
                    op,
                    &gp,
                    "the path is not UTF-8, so no FAT name matches it",
                )
            })?;
            comps.push(s);
        }
        Ok((gp, comps))
    }

    /// Walks `comps` from the root.
    fn resolve(&self, op: &str, gp: &GuestPath, comps: &[&str]) -> Result<Resolved> {
        let kind = self.geo.kind;
        let mut loc = self.geo.root();
        let mut dirs = vec![loc];
        let mut fatfs_path = String::new();
        let mut parent = loc;
        let mut last = None;
        for (i, comp) in comps.iter().enumerate() {
            let content = self.read_dir(loc)?;
            let Some(entry) = Self::find(&content, kind, comp) else {
                let shown = GuestPath::new(comps[..=i].join("/"));
                return Err(self.err(
                    ErrorKind::NotFound,
                    op,
                    gp,
                    format!("{shown} does not exist"),
                ));
            };
            if !fatfs_path.is_empty() {
                fatfs_path.push('/');
            }
            fatfs_path.push_str(&self.fatfs_name(&content, &entry)?);
            parent = loc;
            if entry.is_dir() {
                loc = DirLoc::Chain(entry.cluster);
                dirs.push(loc);
            } else if i + 1 < comps.len() {
                let shown = GuestPath::new(comps[..=i].join("/"));
                return Err(self.err(
                    ErrorKind::NotFound,
                    op,
                    gp,
                    format!("{shown} is a file, not a directory"),
                ));
            }
            last = Some(entry);
        }
        Ok(Resolved {
            parent,
            entry: last,
            fatfs_path,
            dirs,
        })
    }

    /// Resolves the parent of a path that is to be created, and checks the
    /// new name.
    fn resolve_parent<'p>(
        &self,
        op: &str,
        gp: &GuestPath,
        comps: &[&'p str],
    ) -> Result<(Resolved, &'p str)> {
        let Some((&name, parents)) = comps.split_last() else {
            return Err(self.err(
                ErrorKind::Unsupported,
                op,
                gp,
                "the root directory cannot be changed",
            ));
        };
        let parent = self.resolve(op, gp, parents)?;
        if parent.entry.as_ref().is_some_and(|e| !e.is_dir()) {
            return Err(self.err(
                ErrorKind::NotFound,
                op,
                gp,
                "the parent is a file, not a directory",
            ));
        }
        let name = check_new_name(name.as_bytes()).map_err(|why| {
            self.err(
                ErrorKind::Unsupported,
                op,
                gp,
                format!("invalid FAT name: {why}"),
            )
        })?;
        Ok((parent, name))
    }

    /// The directory a resolved path names.
    fn dir_of(res: &Resolved) -> DirLoc {
        res.dirs.last().copied().unwrap_or(DirLoc::FixedRoot)
    }

    fn free_clusters(&self) -> Result<u32> {
        // Straight from the device (the cache is write-through): a large
        // FAT would only push useful chunks out of the cache.
        let fat = read_direct(
            self.disk.dev.as_ref(),
            self.geo.fat_offset,
            self.geo.fat_bytes,
        )?;
        let free = (2..self.geo.clusters + 2)
            .filter(|&c| self.geo.kind.entry(&fat, c) == Some(0))
            .count();
        Ok(u32::try_from(free).unwrap_or(u32::MAX))
    }

    /// Clusters a new entry for `name` adds to directory `content`. Errors
    /// when the fixed root is full.
    fn entry_growth(
        &self,
        op: &str,
        gp: &GuestPath,
        content: &DirContent,
        name: &str,
    ) -> Result<u64> {
        let slots = name.encode_utf16().count().div_ceil(13) + 1;
        let end = free_slot(&content.bytes, slots) + slots;
        let have = content.bytes.len() / ENTRY;
        if end <= have {
            return Ok(0);
        }
        if content.loc == DirLoc::FixedRoot {
            return Err(self.err(
                ErrorKind::Unsupported,
                op,
                gp,
                "the root directory of this FAT12/16 volume is full: remove an entry from it or use a subdirectory",
            ));
        }
        if end as u64 * ENTRY as u64 > MAX_DIR_BYTES {
            return Err(self.err(
                ErrorKind::Unsupported,
                op,
                gp,
                "the directory is full (65536 entries)",
            ));
        }
        let per_cluster = self.geo.cluster_bytes as usize / ENTRY;
        Ok((end - have).div_ceil(per_cluster) as u64)
    }

    fn need_space(&self, op: &str, gp: &GuestPath, clusters: u64) -> Result<()> {
        if clusters == 0 {
            return Ok(());
        }
        let free = u64::from(self.free_clusters()?);
        if free < clusters {
            return Err(self.err(
                ErrorKind::Unsupported,
                op,
                gp,
                format!(
                    "not enough space: {} more bytes needed, {} free; remove files from the volume first",
                    clusters * self.geo.cluster_bytes,
                    free * self.geo.cluster_bytes
                ),
            ));
        }
        Ok(())
    }

    /// After entry `name` was added to directory `loc`, which had
    /// `old_clusters` clusters: zeroes the slots of each newly added cluster
    /// after the new entry (fatfs leaves stale bytes in new FAT32 root
    /// clusters, which would read as garbage entries).
    fn zero_growth(&self, loc: DirLoc, old_clusters: usize, name: &str) -> Result<()> {
        let DirLoc::Chain(first) = loc else {
            return Ok(());
        };
        let chain = self.chain(first)?;
        if chain.len() <= old_clusters {
            return Ok(());
        }
        let content = self.read_dir(loc)?;
        let entry = Self::find(&content, self.geo.kind, name).ok_or_else(|| {
            Error::corrupt(
                "growing a directory",
                format!("the new entry {name} is missing"),
            )
        })?;
        let end_slot = entry.slot + 1;
        let per_cluster = self.geo.cluster_bytes as usize / ENTRY;
        for (i, &c) in chain.iter().enumerate().skip(old_clusters) {
            let from = end_slot.saturating_sub(i * per_cluster).min(per_cluster);
            let zeros = vec![0u8; (per_cluster - from) * ENTRY];
            self.disk
                .write(self.geo.cluster_offset(c) + (from * ENTRY) as u64, &zeros)?;
        }
        Ok(())
    }

    /// Replaces the contents of file `path`, or creates it (its parent
    /// directory must exist). The new contents are written over the old
    /// clusters first and the chain is then cut or extended, so the file
    /// is never empty in between.
    pub fn write_file(&self, path: &[u8], data: &[u8]) -> Result<()> {
        let op = "writing";
        let (gp, comps) = self.parse_path(op, path)?;
        self.fs(op, &gp)?;
        if data.len() as u64 > MAX_FILE_BYTES {
            return Err(self.err(
                ErrorKind::Unsupported,
                op,
                &gp,
                "FAT files are at most 4 GiB - 1 byte",
            ));
        }
        let (parent, name) = self.resolve_parent(op, &gp, &comps)?;
        let dir = Self::dir_of(&parent);
        let content = self.read_dir(dir)?;
        let need = (data.len() as u64).div_ceil(self.geo.cluster_bytes);
        let (target, grow) = match Self::find(&content, self.geo.kind, name) {
            Some(e) if e.is_dir() => {
                return Err(self.err(ErrorKind::Unsupported, op, &gp, "it is a directory"));
            }
            Some(e) => {
                let have = if e.cluster == 0 {
                    0
                } else {
                    self.chain(e.cluster)?.len() as u64
                };
                let mut p = parent.fatfs_path.clone();
                if !p.is_empty() {
                    p.push('/');
                }
                p.push_str(&self.fatfs_name(&content, &e)?);
                (p, need.saturating_sub(have))
            }
            None => {
                let extra = self.entry_growth(op, &gp, &content, name)?;
                let mut p = parent.fatfs_path.clone();
                if !p.is_empty() {
                    p.push('/');
                }
                p.push_str(name);
                self.need_space(op, &gp, need + extra)?;
                self.change(op, &gp, |fs| write_contents(fs, &p, data))?;
                return self.repair(op, &gp, || self.zero_growth(dir, content.chain.len(), name));
            }
        };
        self.need_space(op, &gp, grow)?;
        self.change(op, &gp, |fs| write_contents(fs, &target, data))
    }

    /// Creates directory `path` (its parent must exist). An existing
    /// directory of that name is left as it is.
    pub fn create_dir(&self, path: &[u8]) -> Result<()> {
        let op = "creating directory";
        let (gp, comps) = self.parse_path(op, path)?;
        self.fs(op, &gp)?;
        let (parent, name) = self.resolve_parent(op, &gp, &comps)?;
        let dir = Self::dir_of(&parent);
        let content = self.read_dir(dir)?;
        match Self::find(&content, self.geo.kind, name) {
            Some(e) if e.is_dir() => return Ok(()),
            Some(_) => {
                return Err(self.err(
                    ErrorKind::Unsupported,
                    op,
                    &gp,
                    "a file of that name exists",
                ));
            }
            None => {}
        }
        let extra = self.entry_growth(op, &gp, &content, name)?;
        self.need_space(op, &gp, 1 + extra)?;
        let mut p = parent.fatfs_path.clone();
        if !p.is_empty() {
            p.push('/');
        }
        p.push_str(name);
        self.change(op, &gp, |fs| fs.root_dir().create_dir(&p).map(drop))?;
        self.repair(op, &gp, || {
            self.zero_growth(dir, content.chain.len(), name)?;
            let content = self.read_dir(dir)?;
            let entry = Self::find(&content, self.geo.kind, name)
                .ok_or_else(|| Error::corrupt("creating directory", "the new entry is missing"))?;
            if !entry.is_dir() || !self.geo.valid_cluster(entry.cluster) {
                return Err(Error::corrupt(
                    "creating directory",
                    "the new entry is not a directory",
                ));
            }
            self.write_dot_entries(&entry, self.geo.dotdot_cluster(dir))
        })
    }

    /// Rewrites the first cluster of new directory `entry` with plain `.`
    /// and `..` entries (fatfs 0.3 puts long-name entries before them).
    fn write_dot_entries(&self, entry: &RawEntry, parent_cluster: u32) -> Result<()> {
        let mut cluster = vec![0u8; self.geo.cluster_bytes as usize];
        for (i, (name, target)) in [(DOT, entry.cluster), (DOTDOT, parent_cluster)]
            .into_iter()
            .enumerate()
        {
            let e = &mut cluster[i * ENTRY..(i + 1) * ENTRY];
            e[..11].copy_from_slice(&name);
            e[11] = ATTR_DIR;
            // Creation and access times (bytes 13..20) and modification
            // time (22..26) as in the directory's own entry.
            e[13..20].copy_from_slice(&entry.raw[13..20]);
            e[22..26].copy_from_slice(&entry.raw[22..26]);
            set_cluster(e, target);
        }
        self.disk
            .write(self.geo.cluster_offset(entry.cluster), &cluster)
    }

    /// Removes file `path`, or directory `path` when it is empty.
    pub fn remove(&self, path: &[u8]) -> Result<()> {
        let op = "removing";
        let (gp, comps) = self.parse_path(op, path)?;
        self.fs(op, &gp)?;
        let res = self.resolve(op, &gp, &comps)?;
        let Some(entry) = &res.entry else {
            return Err(self.err(
                ErrorKind::Unsupported,
                op,
                &gp,
                "the root directory cannot be removed",
            ));
        };
        if entry.is_dir() {
            let content = self.read_dir(DirLoc::Chain(entry.cluster))?;
            if parse_dir(&content.bytes, self.geo.kind)
                .iter()
                .any(|e| !e.is_dot())
            {
                return Err(self.err(
                    ErrorKind::Unsupported,
                    op,
                    &gp,
                    "the directory is not empty: remove its entries first",
                ));
            }
        }
        let p = res.fatfs_path.clone();
        self.change(op, &gp, |fs| fs.root_dir().remove(&p))
    }

    /// Renames or moves `from` to `to`. The parent of `to` must exist and
    /// `to` must not (remove it first); a directory cannot move into itself.
    pub fn rename(&self, from: &[u8], to: &[u8]) -> Result<()> {
        let op = "renaming";
        let (gp, comps) = self.parse_path(op, from)?;
        let (to_gp, to_comps) = self.parse_path(op, to)?;
        self.fs(op, &gp)?;
        let src = self.resolve(op, &gp, &comps)?;
        let Some(entry) = src.entry.clone() else {
            return Err(self.err(
                ErrorKind::Unsupported,
                op,
                &gp,
                "the root directory cannot be renamed",
            ));
        };
        let detail = |d: &str| format!("to {to_gp}: {d}");
        let (dst, name) = self.resolve_parent(op, &to_gp, &to_comps)?;
        let dst_dir = Self::dir_of(&dst);
        if entry.is_dir() && dst.dirs.contains(&DirLoc::Chain(entry.cluster)) {
            return Err(self.err(
                ErrorKind::Unsupported,
                op,
                &gp,
                detail("a directory cannot move into itself"),
            ));
        }
        let content = self.read_dir(dst_dir)?;
        if let Some(existing) = Self::find(&content, self.geo.kind, name) {
            let same = dst_dir == src.parent && existing.slot == entry.slot;
            if !same {
                return Err(self.err(
                    ErrorKind::Unsupported,
                    op,
                    &gp,
                    detail("the destination exists: remove it first"),
                ));
            }
            if existing.name == name {
                return Ok(());
            }
            // Only the case changes: fatfs would see the destination as the
            // source itself and do nothing. Go through a free name.
            let tmp = (0..1000u32)
                .map(|i| format!("RDTMP{i:03}"))
                .find(|t| Self::find(&content, self.geo.kind, t).is_none())
                .ok_or_else(|| {
                    self.err(ErrorKind::Unsupported, op, &gp, "no free temporary name")
                })?;
            let mut tmp_path = dst.fatfs_path.clone();
            if !tmp_path.is_empty() {
                tmp_path.push('/');
            }
            tmp_path.push_str(&tmp);
            self.move_entry(op, &gp, &src.fatfs_path, &entry, &tmp, &dst, &tmp_path)?;
            let content = self.read_dir(dst_dir)?;
            let moved = Self::find(&content, self.geo.kind, &tmp)
                .ok_or_else(|| self.poison(op, &gp, "the temporary entry vanished".into()))?;
            let tmp_full = tmp_path.clone();
            let mut final_path = dst.fatfs_path.clone();
            if !final_path.is_empty() {
                final_path.push('/');
            }
            final_path.push_str(name);
            return self.move_entry(op, &gp, &tmp_full, &moved, name, &dst, &final_path);
        }
        let mut target = dst.fatfs_path.clone();
        if !target.is_empty() {
            target.push('/');
        }
        target.push_str(name);
        self.move_entry(op, &gp, &src.fatfs_path, &entry, name, &dst, &target)
    }

    /// One fatfs rename of `entry` (at `from`) to `name` in directory
    /// `dst` (whose fatfs path + name is `to`), with the space check and
    /// the `..` repair for a directory that changes parent.
    #[allow(clippy::too_many_arguments)]
    fn move_entry(
        &self,
        op: &str,
        gp: &GuestPath,
        from: &str,
        entry: &RawEntry,
        name: &str,
        dst: &Resolved,
        to: &str,
    ) -> Result<()> {
        let dst_dir = Self::dir_of(dst);
        let content = self.read_dir(dst_dir)?;
        let extra = self.entry_growth(op, gp, &content, name)?;
        self.need_space(op, gp, extra)?;
        self.change(op, gp, |fs| {
            let root = fs.root_dir();
            root.rename(from, &root, to)
        })?;
        self.repair(op, gp, || {
            self.zero_growth(dst_dir, content.chain.len(), name)?;
            if entry.is_dir() {
                // fatfs keeps the old `..`; point it at the new parent (a
                // no-op when the parent did not change).
                let off = self.geo.cluster_offset(entry.cluster) + ENTRY as u64;
                let mut e = [0u8; ENTRY];
                self.disk.read(off, &mut e)?;
                if e[..11] != DOTDOT {
                    return Err(Error::corrupt(
                        "renaming",
                        "the moved directory has no '..' entry",
                    ));
                }
                set_cluster(&mut e, self.geo.dotdot_cluster(dst_dir));
                self.disk.write(off, &e)?;
            }
            Ok(())
        })
    }

    /// Unmounts cleanly: FSInfo updated, dirty bit cleared, device flushed.
    /// After a failed change it flushes without clearing the dirty bit and
    /// returns that failure.
    pub fn close(mut self) -> Result<()> {
        let op = "closing";
        let gp = GuestPath::root();
        let fs = self.fs.take();
        if let Some(why) = self.poisoned.borrow().clone() {
            drop(fs);
            let _ = self.disk.dev.flush();
            return Err(self.err(ErrorKind::Io, op, &gp, why));
        }
        let Some(fs) = fs else {
            return Ok(());
        };
        match catch_unwind(AssertUnwindSafe(|| fs.unmount())) {
            Ok(Ok(())) => {}
            Ok(Err(e)) => {
                return Err(self.err(
                    ErrorKind::Io,
                    op,
                    &gp,
                    format!("{e}; run fsck.fat -a on the volume"),
                ))
            }
            Err(_) => {
                return Err(self.err(
                    ErrorKind::Io,
                    op,
                    &gp,
                    "the FAT library panicked while unmounting; run fsck.fat -a on the volume",
                ))
            }
        }
        self.disk.dev.flush()?;
        let mut flags = [0u8; 1];
        self.disk
            .dev
            .read_exact_at(self.geo.flags_offset, &mut flags)?;
        if flags[0] & 1 != 0 {
            return Err(self.err(
                ErrorKind::Io,
                op,
                &gp,
                "the dirty bit is still set after unmounting; run fsck.fat -a on the volume",
            ));
        }
        Ok(())
    }
}

impl Drop for FatWriter {
    fn drop(&mut self) {
        // Without `close`, fatfs unmounts on drop (errors are only logged).
        // After a failed change the disk is sealed, so that unmount cannot
        // clear the dirty bit.
        if self.poisoned.borrow().is_some() {
            self.disk.sealed.set(true);
        }
    }
}

/// `len` bytes at `off` of `dev`, past the cache (callers bound `len`).
fn read_direct(dev: &dyn BlockWrite, off: u64, len: u64) -> Result<Vec<u8>> {
    let mut v = vec![0u8; usize::try_from(len).unwrap_or(0)];
    dev.read_exact_at(off, &mut v)?;
    Ok(v)
}

/// Overwrites from the start, then cuts the chain at the new end.
fn write_contents(fs: &FileSystem<Stream>, path: &str, data: &[u8]) -> io::Result<()> {
    let mut file = fs.root_dir().create_file(path)?;
    file.write_all(data)?;
    file.truncate()?;
    file.flush()
}

/// Stores cluster `c` in a short directory entry (high half at 20, low at 26).
fn set_cluster(e: &mut [u8], c: u32) {
    e[20..22].copy_from_slice(&((c >> 16) as u16).to_le_bytes());
    e[26..28].copy_from_slice(&(c as u16).to_le_bytes());
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn utc_dates() {
        let d = fat_date_time(0);
        assert_eq!((d.date.year, d.date.month, d.date.day), (1980, 1, 1));
        // 2024-02-29 12:34:56 UTC
        let d = fat_date_time(1_709_210_096);
        assert_eq!((d.date.year, d.date.month, d.date.day), (2024, 2, 29));
        assert_eq!((d.time.hour, d.time.min, d.time.sec), (12, 34, 56));
        let d = fat_date_time(i64::MAX / 2);
        assert_eq!(d.date.year, 2107);
    }

    #[test]
    fn names() {
        assert!(check_new_name(b"grubx64.efi").is_ok());
        assert!(check_new_name(b"Long Directory Name").is_ok());
        assert!(check_new_name(b"a:b").is_err());
        assert!(check_new_name(b"trailing.").is_err());
        assert!(check_new_name(b" lead").is_err());
        assert!(check_new_name(b"..").is_err());
        assert!(check_new_name(&[0xff, 0x41]).is_err());
        assert!(check_new_name("x".repeat(256).as_bytes()).is_err());
    }

    #[test]
    fn free_slots() {
        let mut d = vec![0u8; 8 * ENTRY];
        d[0] = b'A';
        d[ENTRY] = 0xE5;
        d[2 * ENTRY] = b'B';
        assert_eq!(free_slot(&d, 1), 1);
        assert_eq!(free_slot(&d, 2), 3);
        let full = vec![b'A'; 4 * ENTRY];
        assert_eq!(free_slot(&full, 2), 4);
    }
}
