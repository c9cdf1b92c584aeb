//! Writing qcow2 images through `qcow2-rs`, one whole cluster at a time.
//!
//! `qcow2-rs` allocates clusters, updates L2 tables and refcounts, and
//! copies compressed clusters on write. We hand it only whole clusters:
//! a partial write is completed with the cluster's current content read
//! through our own read path (which handles zero, compressed and backing
//! clusters), so `qcow2-rs` never has to read a backing file; its engine
//! is told there is none, and unallocated clusters are simply allocated.
//! Backing files are never written.
//!
//! Where `qcow2-rs` would go wrong we step in, with its caches flushed and
//! emptied first so that it rereads what we change on disk:
//!
//! - a zero cluster that keeps its host cluster (zero flag and an offset,
//!   as a guest's write-zeroes leaves it) would be remapped and its host
//!   cluster leaked: we write the data in place and clear the flag;
//! - rewriting a compressed cluster whose data ends exactly on a cluster
//!   boundary frees one cluster too many: we add one reference to that
//!   cluster beforehand, so the net change is right;
//! - growing the refcount table would rewrite the header in qcow2-rs's own
//!   version-3 form: we refuse before a write could need it, and the I/O
//!   object refuses any header write.
//!
//! After any `qcow2-rs` failure the image is unusable ("poisoned"): its
//! in-memory tables may disagree with the file, so nothing more is
//! written, and the undo log restores the file.
//!
//! This module must never write a partial cluster through `qcow2-rs`, never
//! write to a backing file, and never continue after `qcow2-rs` failed.

use std::cell::{Cell, RefCell};
use std::panic::{catch_unwind, AssertUnwindSafe};
use std::path::Path;
use std::rc::Rc;
use std::sync::Arc;

use futures::executor::block_on;
use qcow2_rs::error::Qcow2Error;
use qcow2_rs::meta::{Mapping, MappingSource};

use super::header::{self, L1_OFFSET_MASK};
use super::io::{IoState, PastEof};
use super::{build_dev, canonical, open_backing, read_header, Engine, Qcow2Image};
use crate::{BlockRead, BlockWrite, Device, Error, ErrorKind, Result};

/// Autoclear feature bits live at this header offset (version 3).
const AUTOCLEAR_OFFSET: u64 = 88;
/// Refcount table entries: bits 9..=63 are the refcount block offset.
const REFTABLE_OFFSET_MASK: u64 = 0xffff_ffff_ffff_fe00;
/// L2 entry bit 0: the cluster reads as zeros.
const L2_ZERO_FLAG: u64 = 1;

/// The write side of a [`Qcow2Image`] opened writable.
pub(crate) struct Writer {
    /// The host file (the undo journal).
    pub(crate) host: Arc<dyn BlockWrite>,
    /// Whether the autoclear feature bits were cleared (first write).
    autoclear_cleared: Cell<bool>,
    /// Why the image may no longer be written, after a failure.
    poisoned: RefCell<Option<String>>,
}

impl Qcow2Image {
    /// Opens the qcow2 image in `host` (a writable host file, normally the
    /// undo journal) for reading and writing; `path` names it, to resolve
    /// backing files, which are opened read-only.
    ///
    /// Refused, with the reason and the way out: internal snapshots, the
    /// dirty flag, persistent bitmaps, refcounts narrower than 8 bits, and
    /// everything reading refuses (encryption, external data files,
    /// extended L2, zstd, unknown incompatible features, corruption).
    pub fn open_writable(host: Arc<dyn BlockWrite>, path: &Path) -> Result<Self> {
        let name = path.display().to_string();
        let source: Device = Arc::clone(&host) as Device;
        let header = read_header(&*source).map_err(|e| e.with_path(name.clone()))?;
        header::check_writable(&header).map_err(|e| e.with_path(name.clone()))?;
        header::check_l1_table(&*source, &header).map_err(|e| e.with_path(name.clone()))?;
        header::check_refcount_table(&*source, &header).map_err(|e| e.with_path(name.clone()))?;
        let mut visited = vec![canonical(path)];
        let (backing, backing_chain) = match &header.backing_file {
            Some(backing_name) => {
                let (device, chain) = open_backing(
                    path,
                    backing_name,
                    header.backing_format.as_deref(),
                    &mut visited,
                )?;
                (Some(device), chain)
            }
            None => (None, Vec::new()),
        };
        let engine = if header.virtual_size_in_bytes > 0 {
            let state = Rc::new(IoState::default());
            let dev = build_dev(&source, &header, &name, &state, Some(Arc::clone(&host)))?;
            Some(Engine {
                source,
                dev: RefCell::new(Some(dev)),
                state,
            })
        } else {
            None
        };
        tracing::debug!(image = %name, backing_files = backing_chain.len(), "opened qcow2 image for writing");
        Ok(Qcow2Image {
            name,
            header,
            engine,
            backing,
            backing_chain,
            inflated: RefCell::new(Vec::new()),
            writer: Some(Writer {
                host,
                autoclear_cleared: Cell::new(false),
                poisoned: RefCell::new(None),
            }),
        })
    }

    /// Whether this image was opened writable.
    pub fn is_writable(&self) -> bool {
        self.writer.is_some()
    }

    /// Marks the image unusable after `error` and drops `qcow2-rs`'s device,
    /// discarding its unflushed tables (see [`dispose`]).
    pub(super) fn poison(&self, engine: &Engine, error: &Error) {
        if let Some(w) = &self.writer {
            let mut p = w.poisoned.borrow_mut();
            if p.is_none() {
                *p = Some(error.to_string());
            }
        }
        let dev = engine
            .dev
            .try_borrow_mut()
            .ok()
            .and_then(|mut slot| slot.take());
        if let Some(dev) = dev {
            dispose(&engine.state, dev);
        }
    }

    /// The error for an image whose `qcow2-rs` device is gone.
    pub(super) fn unusable(&self) -> Error {
        let poisoned = self
            .writer
            .as_ref()
            .and_then(|w| w.poisoned.borrow().clone());
        let detail = match poisoned {
            Some(why) => format!(
                "an earlier write failed ({why}); the image's tables may disagree with the file, so nothing more is written to it; restore it with `rescue-disk undo {}`",
                self.name
            ),
            None => "an earlier metadata read failed and the tables could not be reloaded; reopen the image".to_owned(),
        };
        Error::new(ErrorKind::Io, "using qcow2 image")
            .with_path(self.name.clone())
            .with_detail(detail)
    }

    fn writer(&self) -> Result<&Writer> {
        let Some(w) = &self.writer else {
            return Err(Error::new(ErrorKind::Unsupported, "writing")
                .with_path(self.describe())
                .with_detail("the image was opened read-only"));
        };
        if w.poisoned.borrow().is_some() {
            return Err(self.unusable());
        }
        Ok(w)
    }

    /// Runs `f` on `qcow2-rs`'s device; any failure or panic poisons the
    /// image. `what` names the operation for messages.
    fn with_dev<T>(
        &self,
        engine: &Engine,
        what: &str,
        guest_offset: u64,
        f: impl FnOnce(
            &qcow2_rs::dev::Qcow2Dev<super::io::ImageIo>,
        ) -> std::result::Result<T, Qcow2Error>,
    ) -> Result<T> {
        let result = {
            let dev = engine.dev.borrow();
            let Some(dev) = dev.as_ref() else {
                return Err(self.unusable());
            };
            engine.state.take_failure();
            // Compressed clusters read for copy-on-write may end in a
            // partial sector past the end of the file, as when reading.
            engine.state.past_eof.set(PastEof::CompressedTail);
            let r = catch_unwind(AssertUnwindSafe(|| f(dev)));
            engine.state.past_eof.set(PastEof::Error);
            r
        };
        let error = match result {
            Ok(Ok(v)) => return Ok(v),
            Ok(Err(e)) => match engine.state.take_failure() {
                Some(failure) => failure.into_error(
                    what,
                    &self.name,
                    guest_offset,
                    engine.source.size_in_bytes(),
                ),
                None => Error::new(ErrorKind::Io, format!("writing qcow2 {what}"))
                    .with_path(self.name.clone())
                    .with_detail(format!(
                        "qcow2-rs failed for guest offset {guest_offset:#x}: {e}"
                    )),
            },
            Err(_) => Error::new(ErrorKind::Io, format!("writing qcow2 {what}"))
                .with_path(self.name.clone())
                .with_detail(format!(
                    "qcow2-rs panicked for guest offset {guest_offset:#x}"
                )),
        };
        self.poison(engine, &error);
        Err(error)
    }

    /// Writes one whole cluster (or the partial last cluster of the disk).
    fn write_cluster(
        &self,
        engine: &Engine,
        w: &Writer,
        cluster_start: u64,
        data: &[u8],
    ) -> Result<()> {
        self.inflated
            .borrow_mut()
            .retain(|(c, _)| *c != cluster_start);
        let mapping = self.mapping(engine, cluster_start)?;
        match mapping.source {
            MappingSource::DataFile if mapping.copied => {
                self.check_host_cluster(w, cluster_start, mapping.cluster_offset.unwrap_or(0))?;
            }
            MappingSource::DataFile => return Err(self.not_copied(cluster_start, &mapping)),
            MappingSource::Zero => {
                if let Some(host) = mapping.cluster_offset {
                    if !mapping.copied {
                        return Err(self.not_copied(cluster_start, &mapping));
                    }
                    self.check_host_cluster(w, cluster_start, host)?;
                    return self.write_preallocated_zero(engine, w, cluster_start, host, data);
                }
                self.check_room(w)?;
            }
            MappingSource::Compressed => {
                self.check_compressed(w, cluster_start, &mapping)?;
                self.check_room(w)?;
                self.protect_compressed_neighbour(engine, w, cluster_start, &mapping)?;
            }
            MappingSource::Unallocated | MappingSource::Backing => self.check_room(w)?,
        }
        self.with_dev(engine, "data cluster", cluster_start, |dev| {
            block_on(dev.write_at(data, cluster_start))
        })
    }

    /// A host cluster about to be written in place must be aligned, lie
    /// inside the file, and not be the header or a top-level table (a
    /// corrupt L2 entry must not make us overwrite metadata).
    fn check_host_cluster(&self, w: &Writer, cluster_start: u64, host: u64) -> Result<()> {
        let h = &self.header;
        let cs = h.cluster_size_in_bytes();
        let l1_end = h.l1_table_offset + u64::from(h.l1_entries) * 8;
        let rt_end =
            h.refcount_table_offset + (u64::from(h.refcount_table_clusters) << h.cluster_bits);
        let overlaps = |start: u64, end: u64| host < end && start < host + cs;
        let why = if host < cs || !host.is_multiple_of(cs) {
            Some("is the header or not aligned to the cluster size")
        } else if host
            .checked_add(cs)
            .is_none_or(|end| end > w.host.size_in_bytes())
        {
            Some("lies beyond the end of the file")
        } else if overlaps(h.l1_table_offset, l1_end) || overlaps(h.refcount_table_offset, rt_end) {
            Some("overlaps the L1 or refcount table")
        } else {
            None
        };
        match why {
            None => Ok(()),
            Some(why) => Err(Error::corrupt(
                "writing qcow2 image",
                format!(
                    "the L2 entry for guest offset {cluster_start:#x} points to host offset {host:#x}, which {why}: the image is corrupt; check it with `qemu-img check` and repair a copy with `qemu-img check -r all`"
                ),
            )
            .with_path(self.name.clone())),
        }
    }

    /// The compressed data of a cluster about to be copied must lie in the
    /// file (its last sector may end past it) and not start in the header.
    fn check_compressed(&self, w: &Writer, cluster_start: u64, mapping: &Mapping) -> Result<()> {
        let (Some(offset), Some(len)) = (mapping.cluster_offset, mapping.compressed_length) else {
            return Ok(());
        };
        let inside = offset >= self.header.cluster_size_in_bytes()
            && offset
                .checked_add(len as u64)
                .is_some_and(|end| end <= w.host.size_in_bytes() + 512);
        if inside {
            return Ok(());
        }
        Err(Error::corrupt(
            "writing qcow2 image",
            format!(
                "the compressed data of guest offset {cluster_start:#x} ({len} bytes at host offset {offset:#x}) does not lie inside the file: the image is corrupt; repair a copy with `qemu-img check -r all`"
            ),
        )
        .with_path(self.name.clone()))
    }

    fn not_copied(&self, cluster_start: u64, mapping: &Mapping) -> Error {
        Error::corrupt(
            "writing qcow2 image",
            format!(
                "the L2 entry for guest offset {cluster_start:#x} (host offset {:#x}) lacks the COPIED flag, so the cluster may be shared and cannot be written in place; check the image with `qemu-img check` and repair a copy with `qemu-img check -r all`",
                mapping.cluster_offset.unwrap_or(0)
            ),
        )
        .with_path(self.name.clone())
    }

    /// Flushes `qcow2-rs`'s tables and empties its caches, so that changes
    /// we make to the file are read back. Rebuilds the device if the
    /// caches would not empty.
    fn quiesce(&self, engine: &Engine, w: &Writer) -> Result<()> {
        self.with_dev(engine, "metadata", 0, |dev| block_on(dev.shrink_caches()))?;
        let empty = engine
            .dev
            .borrow()
            .as_ref()
            .is_some_and(|d| d.l2_cache_is_empty() && d.refblock_cache_is_empty());
        if !empty {
            let fresh = build_dev(
                &engine.source,
                &self.header,
                &self.name,
                &engine.state,
                Some(Arc::clone(&w.host)),
            )?;
            // The old device was flushed: dropping it is safe.
            let old = engine.dev.borrow_mut().replace(fresh);
            drop(old);
        }
        Ok(())
    }

    /// Reads a big-endian integer of `N` bytes at `offset` of the host file.
    fn read_be<const N: usize>(&self, w: &Writer, offset: u64) -> Result<u64> {
        let mut b = [0u8; N];
        w.host.read_exact_at(offset, &mut b)?;
        Ok(b.iter().fold(0u64, |v, &x| (v << 8) | u64::from(x)))
    }

    /// A zero cluster that owns a host cluster: write the data there, then
    /// clear the zero flag in the L2 table (data first).
    fn write_preallocated_zero(
        &self,
        engine: &Engine,
        w: &Writer,
        cluster_start: u64,
        host: u64,
        data: &[u8],
    ) -> Result<()> {
        self.quiesce(engine, w)?;
        let cb = u64::from(self.header.cluster_bits);
        let l2_bits = cb - 3;
        let l1_index = cluster_start >> (cb + l2_bits);
        let l2_index = (cluster_start >> cb) & ((1 << l2_bits) - 1);
        let l1_entry = self.read_be::<8>(w, self.header.l1_table_offset + l1_index * 8)?;
        let l2_table = l1_entry & L1_OFFSET_MASK;
        let entry_at = l2_table + l2_index * 8;
        let entry = if l2_table == 0 {
            None
        } else {
            Some(self.read_be::<8>(w, entry_at)?)
        };
        let Some(entry) = entry.filter(|e| e & L2_ZERO_FLAG != 0 && e & L1_OFFSET_MASK == host)
        else {
            let error = Error::corrupt(
                "writing qcow2 image",
                format!(
                    "the L2 entry for guest offset {cluster_start:#x} changed under rescue-disk"
                ),
            )
            .with_path(self.name.clone());
            self.poison(engine, &error);
            return Err(error);
        };
        w.host.write_all_at(host, data)?;
        w.host.flush()?;
        w.host
            .write_all_at(entry_at, &(entry & !L2_ZERO_FLAG).to_be_bytes())
    }

    /// `qcow2-rs` frees the clusters from the start of the compressed data
    /// to the cluster containing its end *offset*; when the data ends on a
    /// cluster boundary that is one cluster too many. Add one reference to
    /// that cluster first, so that the net change is zero.
    fn protect_compressed_neighbour(
        &self,
        engine: &Engine,
        w: &Writer,
        cluster_start: u64,
        mapping: &Mapping,
    ) -> Result<()> {
        let (Some(offset), Some(len)) = (mapping.cluster_offset, mapping.compressed_length) else {
            return Ok(());
        };
        let cs = self.header.cluster_size_in_bytes();
        let end = offset + len as u64;
        if !end.is_multiple_of(cs) {
            return Ok(());
        }
        self.quiesce(engine, w)?;
        let refuse = |why: &str| {
            Error::unsupported(
                "writing qcow2 image",
                format!(
                    "the compressed cluster at guest offset {cluster_start:#x} cannot be rewritten safely ({why}); write to a copy made with `qemu-img convert -O qcow2 in.qcow2 out.qcow2`"
                ),
            )
            .with_path(self.name.clone())
        };
        let order = self.header.refcount_order;
        let rb_entries = (cs * 8) >> order;
        let cluster = end / cs;
        let rt_index = cluster / rb_entries;
        let rt_entries = (u64::from(self.header.refcount_table_clusters) * cs) / 8;
        if rt_index >= rt_entries {
            return Err(refuse("its neighbour lies beyond the refcount table"));
        }
        let rt_entry = self.read_be::<8>(w, self.header.refcount_table_offset + rt_index * 8)?;
        let block = rt_entry & REFTABLE_OFFSET_MASK;
        if block == 0 {
            return Err(refuse("its neighbour has no refcount block"));
        }
        let width = 1u64 << (order - 3);
        let at = block + (cluster % rb_entries) * width;
        let value = match width {
            1 => self.read_be::<1>(w, at)?,
            2 => self.read_be::<2>(w, at)?,
            4 => self.read_be::<4>(w, at)?,
            _ => self.read_be::<8>(w, at)?,
        };
        let max = if width == 8 {
            u64::MAX
        } else {
            (1u64 << (8 * width)) - 1
        };
        if value == max {
            return Err(refuse("its neighbour's refcount is at its maximum"));
        }
        let bytes = (value + 1).to_be_bytes();
        w.host.write_all_at(at, &bytes[8 - width as usize..])
    }

    /// Refuses a write that could make `qcow2-rs` grow the refcount table.
    fn check_room(&self, w: &Writer) -> Result<()> {
        let cs = u128::from(self.header.cluster_size_in_bytes());
        let rb_entries = (cs * 8) >> self.header.refcount_order;
        let rt_entries = u128::from(self.header.refcount_table_clusters) * cs / 8;
        let coverage = rt_entries * rb_entries * cs;
        let size = u128::from(w.host.size_in_bytes());
        // A write allocates at most a data cluster, an L2 table and a
        // refcount block.
        if size + 4 * cs > coverage {
            return Err(Error::unsupported(
                "writing qcow2 image",
                format!(
                    "the image file ({size} bytes) would outgrow what its refcount table describes ({coverage} bytes), and rescue-disk cannot grow that table; write to a copy made with `qemu-img convert -O qcow2 -o cluster_size=65536 in.qcow2 out.qcow2`"
                ),
            )
            .with_path(self.name.clone()));
        }
        Ok(())
    }

    /// Clears the autoclear feature bits before the first write, as the
    /// specification asks of programs that do not know them (bitmaps, the
    /// one that matters, are refused when opening).
    fn clear_autoclear(&self, w: &Writer) -> Result<()> {
        if self.header.version >= 3
            && self.header.autoclear_features != 0
            && !w.autoclear_cleared.get()
        {
            w.host.write_all_at(AUTOCLEAR_OFFSET, &[0u8; 8])?;
            w.autoclear_cleared.set(true);
        }
        Ok(())
    }
}

impl BlockWrite for Qcow2Image {
    fn write_all_at(&self, start_byte: u64, src: &[u8]) -> Result<()> {
        let w = self.writer()?;
        let size = self.header.virtual_size_in_bytes;
        let end = start_byte.checked_add(src.len() as u64);
        if end.is_none_or(|end| end > size) {
            return Err(Error::new(ErrorKind::Truncated, "writing")
                .with_path(self.describe())
                .with_offset(start_byte)
                .with_detail(format!(
                    "{} bytes would go past the end of the virtual disk ({size:#x})",
                    src.len()
                )));
        }
        let Some(engine) = self.engine.as_ref().filter(|_| !src.is_empty()) else {
            return Ok(());
        };
        self.clear_autoclear(w)?;
        let cs = self.header.cluster_size_in_bytes();
        let mut pos = start_byte;
        let mut rest = src;
        while !rest.is_empty() {
            let cluster_start = pos & !(cs - 1);
            // The last cluster may be cut by the end of the disk (a multiple
            // of 512, as qcow2-rs requires).
            let cluster_len = cs.min(size - cluster_start) as usize;
            let in_cluster = (pos - cluster_start) as usize;
            let n = (cluster_len - in_cluster).min(rest.len());
            let (piece, tail) = rest.split_at(n);
            if in_cluster == 0 && n == cluster_len {
                self.write_cluster(engine, w, cluster_start, piece)?;
            } else {
                // OK to allocate: at most one cluster (2 MiB).
                let mut buf = vec![0u8; cluster_len];
                self.read_exact_at(cluster_start, &mut buf)?;
                buf[in_cluster..in_cluster + n].copy_from_slice(piece);
                self.write_cluster(engine, w, cluster_start, &buf)?;
            }
            pos += n as u64;
            rest = tail;
        }
        Ok(())
    }

    fn flush(&self) -> Result<()> {
        if self.writer.is_none() {
            return Ok(());
        }
        let w = self.writer()?;
        if let Some(engine) = &self.engine {
            self.with_dev(engine, "metadata", 0, |dev| block_on(dev.flush_meta()))?;
        }
        w.host.flush()
    }
}

impl Drop for Qcow2Image {
    /// `qcow2-rs` panics when a table it never flushed is dropped: flush
    /// (the caller did not commit, but the tables must match the data
    /// already written), and if that fails, leak the device instead.
    fn drop(&mut self) {
        let (Some(w), Some(engine)) = (&self.writer, &mut self.engine) else {
            return;
        };
        let Some(dev) = engine.dev.get_mut().take() else {
            return;
        };
        if dev.need_flush_meta() && w.poisoned.borrow().is_none() {
            let _ = catch_unwind(AssertUnwindSafe(|| block_on(dev.flush_meta())));
        }
        dispose(&engine.state, dev);
    }
}

/// Drops a `qcow2-rs` device whose tables may be unflushed. Its destructor
/// panics on unflushed tables, so they are first "flushed" with writes
/// discarded; if even that fails, the device is leaked. Either way it no
/// longer holds the host file (and its lock) once the image is dropped,
/// unless leaked.
fn dispose(state: &IoState, dev: qcow2_rs::dev::Qcow2Dev<super::io::ImageIo>) {
    if dev.need_flush_meta() {
        state.discard_writes.set(true);
        let flushed = catch_unwind(AssertUnwindSafe(|| block_on(dev.flush_meta())));
        state.discard_writes.set(false);
        if !flushed.is_ok_and(|r| r.is_ok()) || dev.need_flush_meta() {
            std::mem::forget(dev);
            return;
        }
    }
    drop(dev);
}
