//! The copy-on-write view of a filesystem after journal replay.
//!
//! [`ReplayOverlay`] answers reads from the original device except for the
//! blocks the replay changed: those come from their copy in the journal
//! (with an escaped magic number restored) or from the few blocks rebuilt in
//! memory (the two superblocks). It holds no block contents it does not have
//! to: an entry per replayed block, bounded by the journal length.
//!
//! This module must never write to the device it wraps.

use std::collections::BTreeMap;
use std::sync::Arc;

use rescue_io::{BlockRead, Device, Error, ErrorKind, Result};

use crate::journal::MAGIC;
use crate::{ReplayPlan, WriteSource};

/// A filesystem as it reads after journal replay, without writing the disk.
#[derive(Debug)]
pub struct ReplayOverlay {
    base: Device,
    block_size: u64,
    blocks: BTreeMap<u64, WriteSource>,
}

impl ReplayOverlay {
    /// Overlays `plan` on `base`, which must be the device `plan` was made
    /// from (the plan refers to journal blocks on it).
    pub fn new(base: Device, plan: &ReplayPlan) -> ReplayOverlay {
        let mut blocks = BTreeMap::new();
        // Later writes of the same block win, as on disk.
        for w in &plan.writes {
            blocks.insert(w.block_number, w.source.clone());
        }
        ReplayOverlay {
            base,
            block_size: u64::from(plan.block_size),
            blocks,
        }
    }

    /// Number of filesystem blocks whose contents differ from the device.
    pub fn overlaid_blocks(&self) -> usize {
        self.blocks.len()
    }

    /// The device underneath.
    pub fn base(&self) -> &Device {
        &self.base
    }

    /// Reads `dst.len()` bytes at `within` of overlaid block `source`.
    fn read_overlaid(&self, source: &WriteSource, within: u64, dst: &mut [u8]) -> Result<()> {
        match source {
            WriteSource::Journal {
                block_number,
                escaped,
            } => {
                self.base
                    .read_exact_at(block_number * self.block_size + within, dst)?;
                if *escaped && within < 4 {
                    let magic = MAGIC.to_be_bytes();
                    for (i, b) in dst.iter_mut().enumerate() {
                        let at = within as usize + i;
                        if at >= 4 {
                            break;
                        }
                        *b = magic[at];
                    }
                }
                Ok(())
            }
            WriteSource::Bytes(bytes) => {
                let start = within as usize;
                let src = bytes.get(start..start + dst.len()).ok_or_else(|| {
                    Error::new(ErrorKind::Corrupt, "reading replayed block")
                        .with_detail("replayed block shorter than a filesystem block")
                })?;
                dst.copy_from_slice(src);
                Ok(())
            }
        }
    }
}

impl BlockRead for ReplayOverlay {
    fn size_in_bytes(&self) -> u64 {
        self.base.size_in_bytes()
    }

    fn read_exact_at(&self, start_byte: u64, dst: &mut [u8]) -> Result<()> {
        let end = start_byte.checked_add(dst.len() as u64);
        if end.is_none_or(|e| e > self.size_in_bytes()) {
            return Err(Error::new(ErrorKind::Truncated, "reading")
                .with_path(self.describe())
                .with_offset(start_byte)
                .with_detail(format!(
                    "read of {} bytes goes past the end of the volume",
                    dst.len()
                )));
        }
        let bs = self.block_size;
        let mut pos = start_byte;
        let mut done = 0usize;
        while done < dst.len() {
            let block = pos / bs;
            let within = pos % bs;
            let remaining = dst.len() - done;
            match self.blocks.range(block..).next() {
                Some((&b, source)) if b == block => {
                    let n = ((bs - within) as usize).min(remaining);
                    self.read_overlaid(source, within, &mut dst[done..done + n])?;
                    done += n;
                    pos += n as u64;
                }
                next => {
                    // Read straight through to the next overlaid block.
                    let limit = match next {
                        Some((&b, _)) => (b * bs - pos).min(remaining as u64) as usize,
                        None => remaining,
                    };
                    self.base.read_exact_at(pos, &mut dst[done..done + limit])?;
                    done += limit;
                    pos += limit as u64;
                }
            }
        }
        Ok(())
    }

    fn describe(&self) -> String {
        format!("{} (journal replayed in memory)", self.base.describe())
    }
}

/// Shares a plan's rebuilt block.
pub(crate) fn bytes(v: Vec<u8>) -> WriteSource {
    WriteSource::Bytes(Arc::from(v))
}
