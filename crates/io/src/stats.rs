//! Process-wide counters of the bytes read from and written to host files.
//!
//! "Cost depends on what is touched, not on disk size" is a promise we
//! measure: `rescue-disk -v` reports these counters, and the benchmarks in
//! docs/PERFORMANCE.md quote them.

use std::sync::atomic::{AtomicU64, Ordering};

static READS: AtomicU64 = AtomicU64::new(0);
static BYTES: AtomicU64 = AtomicU64::new(0);
static WRITES: AtomicU64 = AtomicU64::new(0);
static WRITTEN: AtomicU64 = AtomicU64::new(0);
static SYNCS: AtomicU64 = AtomicU64::new(0);

/// Reads issued to host files (image files, backing files, devices).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct ReadStats {
    /// Number of positional reads.
    pub reads: u64,
    /// Bytes requested by those reads.
    pub bytes: u64,
}

pub(crate) fn record_read(len: usize) {
    READS.fetch_add(1, Ordering::Relaxed);
    BYTES.fetch_add(len as u64, Ordering::Relaxed);
}

/// The counters so far.
pub fn read_stats() -> ReadStats {
    ReadStats {
        reads: READS.load(Ordering::Relaxed),
        bytes: BYTES.load(Ordering::Relaxed),
    }
}

/// Writes issued to host files: targets and undo logs alike.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct WriteStats {
    /// Number of positional writes (and size changes).
    pub writes: u64,
    /// Bytes written.
    pub bytes: u64,
    /// `fsync`/`fdatasync` calls.
    pub syncs: u64,
}

pub(crate) fn record_write(len: usize) {
    WRITES.fetch_add(1, Ordering::Relaxed);
    WRITTEN.fetch_add(len as u64, Ordering::Relaxed);
}

pub(crate) fn record_sync() {
    SYNCS.fetch_add(1, Ordering::Relaxed);
}

/// The write counters so far.
pub fn write_stats() -> WriteStats {
    WriteStats {
        writes: WRITES.load(Ordering::Relaxed),
        bytes: WRITTEN.load(Ordering::Relaxed),
        syncs: SYNCS.load(Ordering::Relaxed),
    }
}
