//! GUID partition tables, read through the `gpt` crate behind our own checks.
//!
//! The `gpt` crate asserts on valid tables whose entry size is not 128, trusts
//! sizes it reads (an absurd entry count allocates without bound) and never
//! falls back to the backup entry array. So this module validates both header
//! copies itself first (signature, header size, header and entry-array CRCs,
//! entry size and count caps, locations inside the disk), picks the copy to
//! trust, and only then lets the crate parse the entries, inside
//! `catch_unwind` as a last line of defence. When the crate cannot be used
//! for a case (entry size other than 128, header size other than 92, or a
//! crate failure) the already-validated entry array is decoded here.
//!
//! Logical block sizes 512 and 4096 are both probed. This module never
//! writes: the `Write` side of the adapter handed to the crate always fails.

use std::collections::BTreeMap;
use std::io::{self, Read, Seek, SeekFrom, Write};
use std::panic::{catch_unwind, AssertUnwindSafe};

use rescue_io::{BlockRead, Error, ErrorKind, Result};

use crate::bytes::{array, fits, guid_string, le32, le64, span};
use crate::crc::crc32;
use crate::{Diagnostic, PartSpec, VolumeKind};

/// Signature at the start of every GPT header.
const SIGNATURE: &[u8; 8] = b"EFI PART";
/// Size of the header fields defined by UEFI 2.x.
const MIN_HEADER_SIZE: u32 = 92;
/// The classic entry size, the only one the `gpt` crate accepts.
const CRATE_ENTRY_SIZE: u32 = 128;
/// Largest entry size we accept (UEFI allows 128 * 2^n).
const MAX_ENTRY_SIZE: u32 = 4096;
/// Largest entry array we read: 8192 classic entries. Real tables hold 16 KiB.
const MAX_ENTRY_ARRAY_BYTES: u64 = 1 << 20;
/// The logical block sizes probed, in order.
const BLOCK_SIZES: [u64; 2] = [512, 4096];

/// One used GPT entry, decoded.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct GptEntry {
    /// 1-based index in the entry array (the Linux partition number).
    pub number: u32,
    /// Partition type GUID, lower case.
    pub type_guid: String,
    /// Unique partition GUID, lower case.
    pub part_guid: String,
    /// First LBA (inclusive).
    pub first_lba: u64,
    /// Last LBA (inclusive).
    pub last_lba: u64,
    /// Partition name (PARTLABEL).
    pub name: String,
}

/// A GPT we decided to trust.
#[derive(Debug, Clone)]
pub(crate) struct GptTable {
    /// Disk GUID, lower case.
    pub disk_guid: String,
    /// Logical block size the table was found with.
    pub logical_block_size: u64,
    /// True when the backup header/array was used.
    pub used_backup: bool,
    /// First and last LBA partitions may use, from the trusted header.
    pub usable_lbas: (u64, u64),
    /// Used entries, by number.
    pub entries: Vec<GptEntry>,
}

/// Result of looking for a GPT.
#[derive(Debug)]
pub(crate) enum GptOutcome {
    /// A usable table.
    Found(GptTable),
    /// No GPT signature anywhere we looked.
    NotFound,
    /// Signatures exist but neither copy can be trusted.
    Broken(Error),
}

/// A decoded, self-consistent header (not yet checked against the disk).
#[derive(Debug, Clone)]
struct Header {
    revision: u32,
    header_size: u32,
    header_crc: u32,
    my_lba: u64,
    alternate_lba: u64,
    first_usable: u64,
    last_usable: u64,
    disk_guid: [u8; 16],
    entries_lba: u64,
    num_entries: u32,
    entry_size: u32,
    entries_crc: u32,
}

impl Header {
    fn entry_array_bytes(&self) -> u64 {
        u64::from(self.num_entries) * u64::from(self.entry_size)
    }
}

/// One header copy with its validated entry array.
#[derive(Debug, Clone)]
struct Copy {
    header: Header,
    entries: Vec<u8>,
}

/// Why a header copy could not be used.
#[derive(Debug, Clone)]
enum CopyError {
    /// Nothing that looks like a GPT header.
    NoSignature { offset: u64 },
    /// The header itself is damaged.
    BadHeader { offset: u64, why: String },
    /// The header is fine but its entry array is damaged.
    BadArray { offset: u64, why: String },
}

impl CopyError {
    fn describe(&self, which: &str) -> String {
        match self {
            CopyError::NoSignature { offset } => {
                format!(
                    "reading GPT {which} header at offset {offset:#x}: no \"EFI PART\" signature"
                )
            }
            CopyError::BadHeader { offset, why } => {
                format!("reading GPT {which} header at offset {offset:#x}: {why}")
            }
            CopyError::BadArray { offset, why } => {
                format!("reading GPT {which} partition entry array at offset {offset:#x}: {why}")
            }
        }
    }

    fn subject(&self, which: &str) -> String {
        match self {
            CopyError::BadArray { .. } => format!("gpt {which} entry array"),
            _ => format!("gpt {which} header"),
        }
    }
}

/// Decodes and self-checks a header from one logical block.
fn parse_header(block: &[u8]) -> std::result::Result<Header, String> {
    if span(block, 0, 8) != SIGNATURE {
        return Err("no \"EFI PART\" signature".into());
    }
    let header_size = le32(block, 12);
    if header_size < MIN_HEADER_SIZE || header_size as usize > block.len() {
        return Err(format!(
            "header size {header_size} is outside {MIN_HEADER_SIZE}..={} bytes",
            block.len()
        ));
    }
    let stored_crc = le32(block, 16);
    let mut copy = span(block, 0, header_size as usize).to_vec();
    if let Some(field) = copy.get_mut(16..20) {
        field.fill(0);
    }
    let computed = crc32(&copy);
    if computed != stored_crc {
        return Err(format!(
            "header crc32 mismatch (stored {stored_crc:#010x}, computed {computed:#010x})"
        ));
    }
    let h = Header {
        revision: le32(block, 8),
        header_size,
        header_crc: stored_crc,
        my_lba: le64(block, 24),
        alternate_lba: le64(block, 32),
        first_usable: le64(block, 40),
        last_usable: le64(block, 48),
        disk_guid: array(block, 56),
        entries_lba: le64(block, 72),
        num_entries: le32(block, 80),
        entry_size: le32(block, 84),
        entries_crc: le32(block, 88),
    };
    let size_ok = h.entry_size >= CRATE_ENTRY_SIZE
        && h.entry_size <= MAX_ENTRY_SIZE
        && h.entry_size.is_multiple_of(CRATE_ENTRY_SIZE)
        && (h.entry_size / CRATE_ENTRY_SIZE).is_power_of_two();
    if !size_ok {
        return Err(format!(
            "partition entry size {} is not 128 * 2^n (up to {MAX_ENTRY_SIZE})",
            h.entry_size
        ));
    }
    if h.entry_array_bytes() > MAX_ENTRY_ARRAY_BYTES {
        return Err(format!(
            "{} entries of {} bytes exceed the {MAX_ENTRY_ARRAY_BYTES}-byte limit for an entry array",
            h.num_entries, h.entry_size
        ));
    }
    if h.first_usable > h.last_usable {
        return Err(format!(
            "first usable LBA {} is after last usable LBA {}",
            h.first_usable, h.last_usable
        ));
    }
    Ok(h)
}

/// Reads the header copy at `lba` and its entry array, checking both.
fn read_copy(disk: &dyn BlockRead, lba: u64, lb: u64) -> std::result::Result<Copy, CopyError> {
    let size = disk.size_in_bytes();
    let Some(offset) = lba.checked_mul(lb).filter(|&o| fits(o, lb, size)) else {
        return Err(CopyError::NoSignature {
            offset: lba.saturating_mul(lb),
        });
    };
    let mut block = vec![0u8; lb as usize];
    if let Err(e) = disk.read_exact_at(offset, &mut block) {
        return Err(CopyError::BadHeader {
            offset,
            why: e.to_string(),
        });
    }
    if span(&block, 0, 8) != SIGNATURE {
        return Err(CopyError::NoSignature { offset });
    }
    let header = parse_header(&block).map_err(|why| CopyError::BadHeader { offset, why })?;
    if header.my_lba != lba {
        return Err(CopyError::BadHeader {
            offset,
            why: format!(
                "the header says it is at LBA {} but was read from LBA {lba}",
                header.my_lba
            ),
        });
    }
    if header.entries_lba == lba {
        return Err(CopyError::BadHeader {
            offset,
            why: format!("the partition entry array would overlap the header at LBA {lba}"),
        });
    }
    let array_len = header.entry_array_bytes();
    let array_offset = header.entries_lba.checked_mul(lb);
    let Some(array_offset) = array_offset.filter(|&o| fits(o, array_len, size)) else {
        return Err(CopyError::BadHeader {
            offset,
            why: format!(
                "its partition entry array at LBA {} ({array_len} bytes) lies beyond the end of the disk ({size:#x})",
                header.entries_lba
            ),
        });
    };
    // OK: array_len <= MAX_ENTRY_ARRAY_BYTES (1 MiB) was checked by parse_header.
    let mut entries = vec![0u8; array_len as usize];
    if let Err(e) = disk.read_exact_at(array_offset, &mut entries) {
        return Err(CopyError::BadArray {
            offset: array_offset,
            why: e.to_string(),
        });
    }
    let computed = crc32(&entries);
    if computed != header.entries_crc {
        return Err(CopyError::BadArray {
            offset: array_offset,
            why: format!(
                "crc32 mismatch (stored {:#010x}, computed {computed:#010x})",
                header.entries_crc
            ),
        });
    }
    Ok(Copy { header, entries })
}

/// Both copies as found with one logical block size.
struct Candidate {
    lb: u64,
    primary: std::result::Result<Copy, CopyError>,
    backup: std::result::Result<Copy, CopyError>,
}

impl Candidate {
    fn has_signature(&self) -> bool {
        let sig = |r: &std::result::Result<Copy, CopyError>| {
            !matches!(r, Err(CopyError::NoSignature { .. }))
        };
        sig(&self.primary) || sig(&self.backup)
    }

    fn usable(&self) -> bool {
        self.primary.is_ok() || self.backup.is_ok()
    }
}

/// Reads primary and backup copies for block size `lb`.
fn candidate(disk: &dyn BlockRead, lb: u64) -> Candidate {
    let size = disk.size_in_bytes();
    let primary = read_copy(disk, 1, lb);
    let last_lba = (size / lb).saturating_sub(1);
    // The primary names where its backup is; a disk that was grown keeps the
    // backup there. Otherwise the backup sits in the last LBA.
    let mut backup_lbas = Vec::with_capacity(2);
    if let Ok(p) = &primary {
        if p.header.alternate_lba > 1 && p.header.alternate_lba <= last_lba {
            backup_lbas.push(p.header.alternate_lba);
        }
    }
    if last_lba > 1 && !backup_lbas.contains(&last_lba) {
        backup_lbas.push(last_lba);
    }
    let mut backup = Err(CopyError::NoSignature {
        offset: last_lba.saturating_mul(lb),
    });
    for lba in backup_lbas {
        let attempt = read_copy(disk, lba, lb);
        if attempt.is_ok() {
            backup = attempt;
            break;
        }
        // Keep the most telling failure: a damaged header beats no signature.
        if matches!(backup, Err(CopyError::NoSignature { .. })) {
            backup = attempt;
        }
    }
    Candidate {
        lb,
        primary,
        backup,
    }
}

/// Looks for a GPT with 512- and 4096-byte logical blocks and decodes the
/// trusted copy. Problems worked around are pushed onto `diags`.
pub(crate) fn read(disk: &dyn BlockRead, diags: &mut Vec<Diagnostic>) -> GptOutcome {
    let size = disk.size_in_bytes();
    let mut broken: Option<Candidate> = None;
    let mut chosen: Option<Candidate> = None;
    for lb in BLOCK_SIZES {
        // Protective MBR + header + at least one entry block.
        if size < lb.saturating_mul(3) {
            continue;
        }
        let c = candidate(disk, lb);
        if c.usable() {
            chosen = Some(c);
            break;
        }
        if c.has_signature() && broken.is_none() {
            broken = Some(c);
        }
    }
    let Some(c) = chosen else {
        return match broken {
            None => GptOutcome::NotFound,
            Some(c) => {
                let p = c
                    .primary
                    .as_ref()
                    .err()
                    .map(|e| e.describe("primary"))
                    .unwrap_or_default();
                let b = c
                    .backup
                    .as_ref()
                    .err()
                    .map(|e| e.describe("backup"))
                    .unwrap_or_default();
                GptOutcome::Broken(
                    Error::new(ErrorKind::Corrupt, "reading GPT")
                        .with_offset(c.lb)
                        .with_detail(format!(
                            "both copies are unusable ({p}; {b}); rebuild the table (gdisk recovery, testdisk) or restore the disk from a backup"
                        )),
                )
            }
        };
    };
    let lb = c.lb;
    let (copy, used_backup) = match (&c.primary, &c.backup) {
        (Ok(p), backup) => {
            if let Err(e) = backup {
                diags.push(Diagnostic {
                    subject: e.subject("backup"),
                    message: format!(
                        "{}; the primary copy is used (writing the table again with gdisk rebuilds the backup)",
                        e.describe("backup")
                    ),
                });
            }
            (p.clone(), false)
        }
        (Err(e), Ok(b)) => {
            let backup_offset = b.header.my_lba.saturating_mul(lb);
            diags.push(Diagnostic {
                subject: e.subject("primary"),
                message: format!(
                    "{}; the backup copy at offset {backup_offset:#x} is used (gdisk can rewrite the primary from it)",
                    e.describe("primary")
                ),
            });
            (b.clone(), true)
        }
        // OK: `usable()` guarantees one copy is Ok; keep a total match anyway.
        (Err(_), Err(e)) => {
            return GptOutcome::Broken(Error::corrupt("reading GPT", e.describe("backup")))
        }
    };
    let own = decode_entries(&copy.header, &copy.entries);
    let entries = if copy.header.entry_size == CRATE_ENTRY_SIZE
        && copy.header.header_size == MIN_HEADER_SIZE
    {
        match entries_via_crate(disk, lb, &copy, used_backup) {
            Ok(from_crate) => {
                if from_crate != own {
                    diags.push(Diagnostic {
                        subject: "gpt entries".into(),
                        message: "the gpt crate and the built-in decoder disagree about the partition entries; the crate's result is used".into(),
                    });
                }
                from_crate
            }
            Err(why) => {
                diags.push(Diagnostic {
                    subject: "gpt entries".into(),
                    message: format!("the gpt crate could not read the validated table ({why}); the entries were decoded directly"),
                });
                own
            }
        }
    } else {
        // The crate asserts on entry sizes other than 128 and checks a
        // header CRC over 92 bytes only: decode these valid tables here.
        own
    };
    GptOutcome::Found(GptTable {
        disk_guid: guid_string(copy.header.disk_guid),
        logical_block_size: lb,
        used_backup,
        usable_lbas: (copy.header.first_usable, copy.header.last_usable),
        entries,
    })
}

/// Decodes the used entries of a validated entry array.
fn decode_entries(header: &Header, array: &[u8]) -> Vec<GptEntry> {
    let size = header.entry_size as usize;
    let mut out = Vec::new();
    for (i, entry) in array.chunks_exact(size).enumerate() {
        let type_raw: [u8; 16] = crate::bytes::array(entry, 0);
        if type_raw == [0u8; 16] {
            continue;
        }
        let name_units: Vec<u16> = span(entry, 56, 72)
            .chunks_exact(2)
            // OK to index: chunks_exact(2) yields 2-byte chunks.
            .map(|c| u16::from_le_bytes([c[0], c[1]]))
            .take_while(|&u| u != 0)
            .collect();
        out.push(GptEntry {
            // OK: i < num_entries, a u32.
            number: u32::try_from(i + 1).unwrap_or(u32::MAX),
            type_guid: guid_string(type_raw),
            part_guid: guid_string(array_16(entry, 16)),
            first_lba: le64(entry, 32),
            last_lba: le64(entry, 40),
            name: String::from_utf16_lossy(&name_units),
        });
    }
    out
}

fn array_16(buf: &[u8], off: usize) -> [u8; 16] {
    crate::bytes::array(buf, off)
}

/// Read-only `Read + Seek` view of a device for the `gpt` crate. Its `Write`
/// side always fails, so the crate cannot change the disk whatever it does.
struct CrateIo<'a> {
    disk: &'a dyn BlockRead,
    pos: u64,
}

impl std::fmt::Debug for CrateIo<'_> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "CrateIo({}, pos {})", self.disk.describe(), self.pos)
    }
}

impl Read for CrateIo<'_> {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        let size = self.disk.size_in_bytes();
        if self.pos >= size || buf.is_empty() {
            return Ok(0);
        }
        let n = (size - self.pos).min(buf.len() as u64) as usize;
        self.disk
            .read_exact_at(self.pos, &mut buf[..n])
            .map_err(|e| io::Error::other(e.to_string()))?;
        self.pos += n as u64;
        Ok(n)
    }
}

impl Seek for CrateIo<'_> {
    fn seek(&mut self, pos: SeekFrom) -> io::Result<u64> {
        let size = self.disk.size_in_bytes();
        let new = match pos {
            SeekFrom::Start(n) => Some(n),
            SeekFrom::End(d) => size.checked_add_signed(d),
            SeekFrom::Current(d) => self.pos.checked_add_signed(d),
        };
        let new =
            new.ok_or_else(|| io::Error::new(io::ErrorKind::InvalidInput, "seek out of range"))?;
        self.pos = new;
        Ok(new)
    }
}

impl Write for CrateIo<'_> {
    fn write(&mut self, _buf: &[u8]) -> io::Result<usize> {
        Err(io::Error::new(
            io::ErrorKind::PermissionDenied,
            "volume discovery never writes",
        ))
    }

    fn flush(&mut self) -> io::Result<()> {
        Err(io::Error::new(
            io::ErrorKind::PermissionDenied,
            "volume discovery never writes",
        ))
    }
}

/// The crate's header type, built from a header we validated.
fn crate_header(h: &Header) -> gpt::header::Header {
    gpt::header::Header {
        signature: "EFI PART".to_string(),
        revision: ((h.revision >> 16) as u16, (h.revision & 0xffff) as u16),
        header_size_le: h.header_size,
        crc32: h.header_crc,
        reserved: 0,
        current_lba: h.my_lba,
        backup_lba: h.alternate_lba,
        first_usable: h.first_usable,
        last_usable: h.last_usable,
        disk_guid: uuid::Uuid::from_bytes_le(h.disk_guid),
        part_start: h.entries_lba,
        num_parts: h.num_entries,
        part_size: h.entry_size,
        crc32_parts: h.entries_crc,
    }
}

/// Lets the `gpt` crate decode the entries of the copy we validated: the
/// whole-disk open for the primary, the entry reader with the backup header
/// otherwise (the crate has no fallback to the backup array of its own).
fn entries_via_crate(
    disk: &dyn BlockRead,
    lb: u64,
    copy: &Copy,
    use_backup: bool,
) -> std::result::Result<Vec<GptEntry>, String> {
    let lbs = if lb == 4096 {
        gpt::disk::LogicalBlockSize::Lb4096
    } else {
        gpt::disk::LogicalBlockSize::Lb512
    };
    let expected_guid = uuid::Uuid::from_bytes_le(copy.header.disk_guid);
    let outcome = catch_unwind(AssertUnwindSafe(
        || -> std::result::Result<BTreeMap<u32, gpt::partition::Partition>, String> {
            let mut io = CrateIo { disk, pos: 0 };
            if use_backup {
                let header = crate_header(&copy.header);
                gpt::partition::file_read_partitions(&mut io, &header, lbs)
                    .map_err(|e| e.to_string())
            } else {
                let gdisk = gpt::GptConfig::new()
                    .writable(false)
                    .logical_block_size(lbs)
                    .open_from_device(io)
                    .map_err(|e| e.to_string())?;
                let header = gdisk.primary_header().map_err(|e| e.to_string())?;
                if header.disk_guid != expected_guid || header.part_start != copy.header.entries_lba
                {
                    return Err("it read a different header than the validated primary".to_string());
                }
                Ok(gdisk.partitions().clone())
            }
        },
    ));
    let map = match outcome {
        Ok(r) => r?,
        Err(panic) => {
            let msg = panic
                .downcast_ref::<&str>()
                .map(|s| s.to_string())
                .or_else(|| panic.downcast_ref::<String>().cloned())
                .unwrap_or_else(|| "unknown panic".to_string());
            return Err(format!("the gpt crate panicked: {msg}"));
        }
    };
    Ok(map
        .into_iter()
        .filter(|(_, p)| p.is_used())
        .map(|(number, p)| GptEntry {
            number,
            type_guid: p.part_type_guid.guid.hyphenated().to_string(),
            part_guid: p.part_guid.hyphenated().to_string(),
            first_lba: p.first_lba,
            last_lba: p.last_lba,
            name: p.name,
        })
        .collect())
}

/// Turns the trusted table into volume specs, refusing partitions that do
/// not fit the disk.
pub(crate) fn partitions(
    table: &GptTable,
    disk_size: u64,
    diags: &mut Vec<Diagnostic>,
) -> Result<Vec<PartSpec>> {
    let lb = table.logical_block_size;
    let mut out = Vec::with_capacity(table.entries.len());
    for e in &table.entries {
        let op = format!("checking partition {}", e.number);
        let start_byte = e.first_lba.checked_mul(lb).ok_or_else(|| {
            Error::corrupt(
                op.clone(),
                format!(
                    "first LBA {} overflows a byte offset; the entry is corrupt",
                    e.first_lba
                ),
            )
        })?;
        if e.last_lba < e.first_lba {
            return Err(Error::new(ErrorKind::Corrupt, op)
                .with_offset(start_byte)
                .with_detail(format!(
                    "its last LBA {} is before its first LBA {}; the partition entry is corrupt",
                    e.last_lba, e.first_lba
                )));
        }
        let end_byte = (e.last_lba - e.first_lba)
            .checked_add(1)
            .and_then(|n| n.checked_mul(lb))
            .and_then(|len| start_byte.checked_add(len));
        let Some(end_byte) = end_byte.filter(|&end| end <= disk_size) else {
            let end_text = end_byte
                .map(|e| format!("{e:#x}"))
                .unwrap_or_else(|| "beyond 2^64".into());
            return Err(Error::new(ErrorKind::Corrupt, op).with_offset(start_byte).with_detail(format!(
                "ends at {end_text} beyond the end of the disk ({disk_size:#x}); the image may be truncated: check its size or restore it completely"
            )));
        };
        let (first_usable, last_usable) = table.usable_lbas;
        if e.first_lba < first_usable || e.last_lba > last_usable {
            diags.push(Diagnostic {
                subject: format!("p{}", e.number),
                message: format!(
                    "partition {} (LBA {}..={}) lies outside the usable area LBA {first_usable}..={last_usable} recorded in the GPT header",
                    e.number, e.first_lba, e.last_lba
                ),
            });
        }
        let type_name = type_name(&e.type_guid).map(str::to_string);
        out.push(PartSpec {
            id: format!("p{}", e.number),
            kind: VolumeKind::GptPartition {
                number: e.number,
                type_guid: e.type_guid.clone(),
                type_name,
                partuuid: e.part_guid.clone(),
                partlabel: e.name.clone(),
            },
            start_byte,
            size_in_bytes: end_byte - start_byte,
        });
    }
    Ok(out)
}

/// Human names of common partition types, as `sfdisk` prints them.
const TYPE_NAMES: &[(&str, &str)] = &[
    ("c12a7328-f81f-11d2-ba4b-00a0c93ec93b", "EFI System"),
    (
        "024dee41-33e7-11d3-9d69-0008c781f39f",
        "MBR partition scheme",
    ),
    ("21686148-6449-6e6f-744e-656564454649", "BIOS boot"),
    ("9e1a2d38-c612-4316-aa26-8b49521e5a8b", "PowerPC PReP boot"),
    ("e3c9e316-0b5c-4db8-817d-f92df00215ae", "Microsoft reserved"),
    (
        "ebd0a0a2-b9e5-4433-87c0-68b6b72699c7",
        "Microsoft basic data",
    ),
    (
        "de94bba4-06d1-4d40-a16a-bfd50179d6ac",
        "Windows recovery environment",
    ),
    ("0657fd6d-a4ab-43c4-84e5-0933c84b4f4f", "Linux swap"),
    ("0fc63daf-8483-4772-8e79-3d69d8477de4", "Linux filesystem"),
    ("3b8f8425-20e0-4f3b-907f-1a25a76f98e8", "Linux server data"),
    ("44479540-f297-41b2-9af7-d131d5f0458a", "Linux root (x86)"),
    (
        "4f68bce3-e8cd-4db1-96e7-fbcaf984b709",
        "Linux root (x86-64)",
    ),
    ("69dad710-2ce4-4e3c-b16c-21a1d49abed3", "Linux root (ARM)"),
    (
        "b921b045-1df0-41c3-af44-4c6f280d3fae",
        "Linux root (ARM-64)",
    ),
    ("993d8d3d-f80e-4225-855a-9daf8ed7ea97", "Linux root (IA-64)"),
    (
        "c31c45e6-3f39-412e-80fb-4809c4980599",
        "Linux root (PPC64LE)",
    ),
    (
        "72ec70a6-cf74-40e6-bd49-4bda08e8f224",
        "Linux root (RISC-V-64)",
    ),
    ("5eead9a9-fe09-4a1e-a1d7-520d00531306", "Linux root (S390X)"),
    ("8da63339-0007-60c0-c436-083ac8230908", "Linux reserved"),
    ("933ac7e1-2eb4-4f13-b844-0e14e2aef915", "Linux home"),
    ("a19d880f-05fc-4d3b-a006-743f0f84911e", "Linux RAID"),
    ("e6d6d379-f507-44c2-a23c-238f2a3df928", "Linux LVM"),
    (
        "4d21b016-b534-45c2-a9fb-5c16e091fd2d",
        "Linux variable data",
    ),
    (
        "7ec6f557-3bc5-4aca-b293-16ef5df639d1",
        "Linux temporary data",
    ),
    ("75250d76-8cc6-458e-bd66-bd47cc81a812", "Linux /usr (x86)"),
    (
        "8484680c-9521-48c6-9c11-b0720656f69e",
        "Linux /usr (x86-64)",
    ),
    (
        "b0e01050-ee5f-4390-949a-9101b17104e9",
        "Linux /usr (ARM-64)",
    ),
    (
        "2c7357ed-ebd2-46d9-aec1-23d437ec2bf5",
        "Linux root verity (x86-64)",
    ),
    (
        "bc13c2ff-59e6-4262-a352-b275fd6f7172",
        "Linux extended boot",
    ),
    ("516e7cb4-6ecf-11d6-8ff8-00022d09712b", "FreeBSD data"),
    ("83bd6b9d-7f41-11dc-be0b-001560b84f0f", "FreeBSD boot"),
    ("48465300-0000-11aa-aa11-00306543ecac", "Apple HFS/HFS+"),
    ("7c3457ef-0000-11aa-aa11-00306543ecac", "Apple APFS"),
];

/// The `sfdisk` name of a GPT type GUID (lower case), when known.
pub(crate) fn type_name(type_guid: &str) -> Option<&'static str> {
    TYPE_NAMES
        .iter()
        .find(|(g, _)| *g == type_guid)
        .map(|(_, n)| *n)
}

/// All known type names, for the test that checks them against `sfdisk`.
#[doc(hidden)]
pub fn known_type_names() -> &'static [(&'static str, &'static str)] {
    TYPE_NAMES
}
