//! A window onto part of another device: a partition or an LVM segment.

use crate::{BlockRead, Device, Error, ErrorKind, Result};

/// Bytes `start_byte .. start_byte + size_in_bytes` of a parent device.
///
/// Construction checks that the window lies inside the parent, so a
/// partition entry pointing past the end of the disk is caught here, once.
#[derive(Debug, Clone)]
pub struct Slice {
    parent: Device,
    start_byte: u64,
    size_in_bytes: u64,
    name: String,
}

impl Slice {
    /// A window of `parent`. Fails with [`ErrorKind::Corrupt`] if it does not fit.
    pub fn new(
        parent: Device,
        start_byte: u64,
        size_in_bytes: u64,
        name: impl Into<String>,
    ) -> Result<Self> {
        let name = name.into();
        let fits = start_byte
            .checked_add(size_in_bytes)
            .is_some_and(|end| end <= parent.size_in_bytes());
        if !fits {
            return Err(Error::new(ErrorKind::Corrupt, "mapping")
                .with_path(name)
                .with_offset(start_byte)
                .with_detail(format!(
                    "{size_in_bytes} bytes from {start_byte:#x} reach beyond the end of the disk ({:#x})",
                    parent.size_in_bytes()
                )));
        }
        Ok(Slice {
            parent,
            start_byte,
            size_in_bytes,
            name,
        })
    }

    /// Offset of the window in its parent.
    pub fn start_byte(&self) -> u64 {
        self.start_byte
    }
}

impl BlockRead for Slice {
    fn size_in_bytes(&self) -> u64 {
        self.size_in_bytes
    }

    fn read_exact_at(&self, start_byte: u64, dst: &mut [u8]) -> Result<()> {
        let end = start_byte.checked_add(dst.len() as u64);
        if end.is_none_or(|end| end > self.size_in_bytes) {
            return Err(Error::new(ErrorKind::Truncated, "reading")
                .with_path(self.name.clone())
                .with_offset(start_byte)
                .with_detail(format!(
                    "read of {} bytes goes past the end of the volume",
                    dst.len()
                )));
        }
        // OK: start_byte + len <= size and start + size <= parent size were checked.
        self.parent.read_exact_at(self.start_byte + start_byte, dst)
    }

    fn describe(&self) -> String {
        self.name.clone()
    }
}
