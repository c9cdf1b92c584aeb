//! An in-memory disk, for fuzz entry points and tests.
//!
//! It behaves exactly like a raw image of the same bytes: exact reads only,
//! a read past the end is a `Truncated` error, never zero-filled data.

use std::borrow::Cow;

use rescue_io::{BlockRead, Error, ErrorKind, Result};

/// A disk whose bytes live in memory (borrowed or owned).
#[derive(Debug, Clone)]
pub struct MemDisk<'a> {
    bytes: Cow<'a, [u8]>,
    name: String,
}

impl<'a> MemDisk<'a> {
    /// A disk made of `bytes`.
    pub fn new(bytes: impl Into<Cow<'a, [u8]>>, name: impl Into<String>) -> Self {
        MemDisk {
            bytes: bytes.into(),
            name: name.into(),
        }
    }
}

impl BlockRead for MemDisk<'_> {
    fn size_in_bytes(&self) -> u64 {
        self.bytes.len() as u64
    }

    fn read_exact_at(&self, start_byte: u64, dst: &mut [u8]) -> Result<()> {
        let range = usize::try_from(start_byte)
            .ok()
            .and_then(|s| s.checked_add(dst.len()).map(|e| s..e))
            .and_then(|r| self.bytes.get(r));
        match range {
            Some(src) => {
                dst.copy_from_slice(src);
                Ok(())
            }
            None => Err(Error::new(ErrorKind::Truncated, "reading")
                .with_path(self.name.clone())
                .with_offset(start_byte)
                .with_detail(format!(
                    "{} bytes requested past the end of the disk",
                    dst.len()
                ))),
        }
    }

    fn describe(&self) -> String {
        self.name.clone()
    }
}
