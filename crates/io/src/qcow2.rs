//! qcow2 images through `qcow2-rs`, behind our own header validation.
//!
//! Placeholder: implemented in the qcow2 work item.

use std::path::{Path, PathBuf};

use crate::{BlockRead, Error, RawFile, Result};

/// An opened, validated qcow2 image (read side).
#[derive(Debug)]
pub struct Qcow2Image {
    _raw: RawFile,
}

impl Qcow2Image {
    /// Validates the header and opens the image and its backing chain.
    pub fn open(raw: RawFile, path: &Path) -> Result<Self> {
        let _ = raw;
        Err(Error::unsupported("opening qcow2 image", "not implemented yet").with_path(path.display().to_string()))
    }

    /// Backing files, nearest first.
    pub fn backing_chain(&self) -> Vec<PathBuf> {
        Vec::new()
    }
}

impl BlockRead for Qcow2Image {
    fn size_in_bytes(&self) -> u64 {
        0
    }
    fn read_exact_at(&self, _start_byte: u64, _dst: &mut [u8]) -> Result<()> {
        unimplemented!()
    }
    fn describe(&self) -> String {
        String::new()
    }
}
