//! An in-memory volume, for the fuzz entry point and tests.
//!
//! It behaves like a raw image of the same bytes: exact reads only, a read
//! past the end is a `Truncated` error, never zero-filled data. Writes (for
//! testing [`crate::ReplayPlan::write_into`]) stay inside the buffer.

use std::sync::Mutex;

use rescue_io::{BlockRead, BlockWrite, Error, ErrorKind, Result};

/// A volume whose bytes live in memory.
#[derive(Debug)]
pub struct MemDevice {
    bytes: Mutex<Vec<u8>>,
    size_in_bytes: u64,
    name: String,
}

impl MemDevice {
    /// A volume made of `bytes`.
    pub fn new(bytes: Vec<u8>, name: impl Into<String>) -> Self {
        MemDevice {
            size_in_bytes: bytes.len() as u64,
            bytes: Mutex::new(bytes),
            name: name.into(),
        }
    }

    /// A copy of the current contents.
    pub fn to_vec(&self) -> Vec<u8> {
        self.lock().clone()
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, Vec<u8>> {
        // A poisoned lock only means another thread panicked mid-copy; the
        // bytes are still a valid buffer.
        self.bytes.lock().unwrap_or_else(|e| e.into_inner())
    }

    fn range(&self, start_byte: u64, len: usize) -> Result<std::ops::Range<usize>> {
        usize::try_from(start_byte)
            .ok()
            .and_then(|s| s.checked_add(len).map(|e| s..e))
            .filter(|r| r.end as u64 <= self.size_in_bytes)
            .ok_or_else(|| {
                Error::new(ErrorKind::Truncated, "reading")
                    .with_path(self.name.clone())
                    .with_offset(start_byte)
                    .with_detail(format!("{len} bytes requested past the end of the volume"))
            })
    }
}

impl BlockRead for MemDevice {
    fn size_in_bytes(&self) -> u64 {
        self.size_in_bytes
    }

    fn read_exact_at(&self, start_byte: u64, dst: &mut [u8]) -> Result<()> {
        let r = self.range(start_byte, dst.len())?;
        dst.copy_from_slice(&self.lock()[r]);
        Ok(())
    }

    fn describe(&self) -> String {
        self.name.clone()
    }
}

impl BlockWrite for MemDevice {
    fn write_all_at(&self, start_byte: u64, src: &[u8]) -> Result<()> {
        let r = self.range(start_byte, src.len())?;
        self.lock()[r].copy_from_slice(src);
        Ok(())
    }

    fn flush(&self) -> Result<()> {
        Ok(())
    }
}
