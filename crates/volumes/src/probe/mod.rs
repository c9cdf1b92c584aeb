//! Content identification: which filesystem or container a volume holds,
//! with blkid's names, UUID and label formats and blkid's precedence, so
//! results equal `blkid -p -o export`.
//!
//! Probers only read superblocks: the first 8 KiB are read once and shared,
//! anything else is a small targeted read, and a per-volume budget stops a
//! hostile filesystem (say, a FAT32 root directory chain) from turning
//! probing into a scan. Probers never write and never panic on any bytes.

mod btrfs;
mod ext;
mod fat;
mod luks;
mod lvm2;
mod swap;
mod xfs;

use rescue_io::{BlockRead, Result};

use crate::bytes::fits;
use crate::Probe;

/// Bytes read up front: covers the LVM label sectors, LUKS, XFS, the ext
/// superblock, FAT boot sectors and the 4 KiB-page swap signature.
const HEAD_BYTES: u64 = 8192;
/// Most bytes all probers together may read beyond the head.
const BUDGET_BYTES: usize = 96 * 1024;

/// Cached, budgeted reads from the volume being probed.
pub(crate) struct Reader<'a> {
    dev: &'a dyn BlockRead,
    size: u64,
    head: Vec<u8>,
    spent: usize,
}

impl<'a> Reader<'a> {
    /// Reads the head of `dev`.
    pub(crate) fn new(dev: &'a dyn BlockRead) -> Result<Self> {
        let size = dev.size_in_bytes();
        let head_len = size.min(HEAD_BYTES) as usize;
        let mut head = vec![0u8; head_len];
        dev.read_exact_at(0, &mut head)?;
        Ok(Reader {
            dev,
            size,
            head,
            spent: 0,
        })
    }

    /// Size of the volume.
    pub(crate) fn size(&self) -> u64 {
        self.size
    }

    /// `len` bytes at `off`, or `None` when they lie beyond the volume or
    /// the read budget is spent.
    pub(crate) fn get(&mut self, off: u64, len: usize) -> Result<Option<Vec<u8>>> {
        if !fits(off, len as u64, self.size) {
            return Ok(None);
        }
        if fits(off, len as u64, self.head.len() as u64) {
            // OK: the range was just checked against the head length.
            return Ok(Some(self.head[off as usize..off as usize + len].to_vec()));
        }
        if self.spent.saturating_add(len) > BUDGET_BYTES {
            return Ok(None);
        }
        self.spent += len;
        let mut buf = vec![0u8; len];
        self.dev.read_exact_at(off, &mut buf)?;
        Ok(Some(buf))
    }

    /// True when `magic` is at `off`.
    pub(crate) fn has(&mut self, off: u64, magic: &[u8]) -> Result<bool> {
        Ok(self.get(off, magic.len())?.is_some_and(|b| b == magic))
    }
}

/// What probing found, plus problems worth a diagnostic.
#[derive(Debug, Default)]
pub(crate) struct Outcome {
    pub probe: Probe,
    pub warnings: Vec<String>,
}

type Prober = fn(&mut Reader<'_>, &mut Vec<String>) -> Result<Option<Probe>>;

/// Probers in blkid's order: containers (LVM, LUKS) first, then
/// filesystems; the first match wins.
const PROBERS: &[Prober] = &[
    lvm2::probe,
    luks::probe,
    fat::probe,
    swap::probe_swsuspend,
    swap::probe,
    xfs::probe,
    ext::probe,
    btrfs::probe,
];

/// Identifies what `dev` holds.
pub(crate) fn probe(dev: &dyn BlockRead) -> Result<Outcome> {
    let mut reader = Reader::new(dev)?;
    let mut warnings = Vec::new();
    for prober in PROBERS {
        if let Some(probe) = prober(&mut reader, &mut warnings)? {
            return Ok(Outcome { probe, warnings });
        }
    }
    Ok(Outcome {
        probe: Probe::default(),
        warnings,
    })
}

/// True when sector 0 of `dev` is a valid FAT boot sector (the MBR reader
/// uses this to avoid taking a FAT filesystem for a partition table).
pub(crate) fn is_vfat(dev: &dyn BlockRead) -> Result<bool> {
    let mut reader = Reader::new(dev)?;
    Ok(fat::probe(&mut reader, &mut Vec::new())?.is_some())
}

/// A probe result with just the type, UUID, label and version set.
pub(crate) fn found(
    fstype: &str,
    uuid: Option<String>,
    label: Option<String>,
    version: Option<String>,
) -> Probe {
    Probe {
        fstype: Some(fstype.to_string()),
        uuid,
        label,
        version,
        ext: None,
    }
}
