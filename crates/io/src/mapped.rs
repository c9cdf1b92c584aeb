//! A writable view of a volume: byte ranges of a disk laid end to end.
//!
//! Discovery reads volumes through read-only [`crate::Slice`]s and LVM
//! concatenations; the write side needs the same windows over the writable
//! disk. Every volume therefore carries its [`Extent`]s (where each piece of
//! the volume lies on the disk), and [`MappedDevice`] rebuilds the window
//! over any [`BlockWrite`]. Construction checks the extents against the
//! disk, so a write can never leave the ranges the volume owns.

use std::sync::Arc;

use crate::{BlockRead, BlockWrite, Error, ErrorKind, Result};

/// `len` bytes of a volume starting at `volume_start` lie on the disk at
/// `disk_start`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Extent {
    /// Offset inside the volume.
    pub volume_start: u64,
    /// Offset on the disk.
    pub disk_start: u64,
    /// Length in bytes.
    pub len: u64,
}

/// A volume seen through its extents over a writable disk.
#[derive(Debug)]
pub struct MappedDevice {
    disk: Arc<dyn BlockWrite>,
    extents: Vec<Extent>,
    size_in_bytes: u64,
    name: String,
}

impl MappedDevice {
    /// Builds the view. The extents must follow each other from volume
    /// offset 0 without gaps and lie inside `disk`; anything else is
    /// [`ErrorKind::Corrupt`] naming the extent.
    pub fn new(
        disk: Arc<dyn BlockWrite>,
        extents: Vec<Extent>,
        name: impl Into<String>,
    ) -> Result<Self> {
        let name = name.into();
        let disk_size = disk.size_in_bytes();
        let mut next = 0u64;
        for (i, e) in extents.iter().enumerate() {
            let inside = e
                .disk_start
                .checked_add(e.len)
                .is_some_and(|end| end <= disk_size);
            if e.volume_start != next || !inside {
                return Err(Error::new(ErrorKind::Corrupt, "mapping volume for writing")
                    .with_path(name)
                    .with_offset(e.disk_start)
                    .with_detail(format!(
                        "extent {} ({} bytes at volume offset {:#x}) does not follow the previous one or reaches beyond the end of the disk ({disk_size:#x})",
                        i + 1,
                        e.len,
                        e.volume_start
                    )));
            }
            next = next.checked_add(e.len).ok_or_else(|| {
                Error::new(ErrorKind::Corrupt, "mapping volume for writing")
                    .with_path(name.clone())
                    .with_detail("the extents add up to more than 2^64 bytes")
            })?;
        }
        Ok(MappedDevice {
            disk,
            extents,
            size_in_bytes: next,
            name,
        })
    }

    /// Splits `[start, start+len)` of the volume into disk pieces and calls
    /// `f(disk_offset, range_in_buffer)` for each.
    fn for_each_piece(
        &self,
        start: u64,
        len: usize,
        op: &'static str,
        mut f: impl FnMut(u64, std::ops::Range<usize>) -> Result<()>,
    ) -> Result<()> {
        let end = start.checked_add(len as u64);
        if end.is_none_or(|end| end > self.size_in_bytes) {
            return Err(Error::new(ErrorKind::Truncated, op)
                .with_path(self.name.clone())
                .with_offset(start)
                .with_detail(format!("{len} bytes go past the end of the volume")));
        }
        let mut done = 0usize;
        // Extents are few (one per partition, a handful per LV): a scan is fine.
        for e in &self.extents {
            if done == len {
                break;
            }
            let pos = start + done as u64;
            if pos < e.volume_start || pos >= e.volume_start + e.len {
                continue;
            }
            let within = pos - e.volume_start;
            // OK to cast: bounded by the remaining buffer length.
            let n = (e.len - within).min((len - done) as u64) as usize;
            f(e.disk_start + within, done..done + n)?;
            done += n;
        }
        debug_assert_eq!(done, len);
        Ok(())
    }
}

impl BlockRead for MappedDevice {
    fn size_in_bytes(&self) -> u64 {
        self.size_in_bytes
    }

    fn read_exact_at(&self, start_byte: u64, dst: &mut [u8]) -> Result<()> {
        let len = dst.len();
        self.for_each_piece(start_byte, len, "reading", |at, r| {
            self.disk.read_exact_at(at, &mut dst[r])
        })
    }

    fn describe(&self) -> String {
        self.name.clone()
    }
}

impl BlockWrite for MappedDevice {
    fn write_all_at(&self, start_byte: u64, src: &[u8]) -> Result<()> {
        self.for_each_piece(start_byte, src.len(), "writing", |at, r| {
            self.disk.write_all_at(at, &src[r])
        })
    }

    fn flush(&self) -> Result<()> {
        self.disk.flush()
    }
}
