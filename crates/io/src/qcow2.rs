//! qcow2 images through `qcow2-rs`, behind our own header validation.
//!
//! Opening an image: we read and validate the header, its extensions and
//! the whole reachable L1 table ourselves ([`header`]), then hand `qcow2-rs`
//! a canonical header synthesised from the validated fields and our own
//! read-only I/O object ([`io`]). Reading: for each cluster we ask
//! `qcow2-rs` for the mapping; zero and unallocated clusters are zeros,
//! clusters left to the backing file are read from our own backing
//! [`Device`] (raw or qcow2 alike), and data or compressed clusters go
//! through `qcow2-rs`'s `read_at`, one cluster at a time, with 512-byte
//! aligned bounce buffers for unaligned requests.
//!
//! Writing ([`write`]) goes through the same `qcow2-rs` device, over the
//! undo journal's host file; backing files are never written.
//!
//! This module must never write to an image not opened writable, never
//! return bytes it could not read (a truncated image is an error, not
//! zeros), never return ciphertext, and never hand `qcow2-rs` anything it
//! has not validated.

mod header;
mod io;
mod write;

use std::cell::RefCell;
use std::ffi::OsStr;
use std::fmt;
use std::os::unix::ffi::OsStrExt;
use std::path::{Path, PathBuf};
use std::rc::Rc;
use std::sync::Arc;

use futures::executor::block_on;
use qcow2_rs::dev::{Qcow2Dev, Qcow2DevParams};
use qcow2_rs::error::Qcow2Error;
use qcow2_rs::meta::{Mapping, MappingSource, Qcow2Header};

use self::header::Header;
use self::io::{ImageIo, IoState, PastEof};
use crate::{sniff, BlockRead, Device, Error, ErrorKind, Format, RawFile, Result};

/// Longest backing chain we follow (backing files below the top image).
const MAX_BACKING_DEPTH: usize = 16;
/// Memory `qcow2-rs` may use to cache L2 table slices of one image. 4 KiB
/// slices of 512 entries: 4 MiB covers 32 GiB of guest data with 64 KiB
/// clusters, far more than an inspection touches.
const L2_CACHE_BYTES: usize = 4 << 20;
/// The sector size `qcow2-rs` requires offsets and lengths to be aligned to.
const SECTOR: u64 = 512;

/// An opened, validated qcow2 image (read side) with its backing chain.
pub struct Qcow2Image {
    name: String,
    header: Header,
    engine: Option<Engine>,
    backing: Option<Device>,
    backing_chain: Vec<PathBuf>,
    /// Recently inflated compressed clusters, newest last: a filesystem
    /// reads a cluster's blocks one by one, and inflating the whole cluster
    /// for each block would dominate the cost of compressed images.
    inflated: RefCell<Vec<(u64, Rc<Vec<u8>>)>>,
    /// The host file of an image opened writable (see [`write`]).
    writer: Option<write::Writer>,
}

/// Bytes of inflated compressed clusters kept (the oldest go first).
const INFLATED_CACHE_BYTES: u64 = 8 << 20;

/// The `qcow2-rs` device and the state shared with its I/O object. Absent
/// for a zero-sized image, for which `qcow2-rs` would panic.
struct Engine {
    source: Device,
    /// `None` after a metadata read failed and the device could not be
    /// rebuilt: `qcow2-rs` may have cached a zero-filled table by then.
    dev: RefCell<Option<Qcow2Dev<ImageIo>>>,
    state: Rc<IoState>,
}

impl fmt::Debug for Qcow2Image {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Qcow2Image")
            .field("name", &self.name)
            .field("header", &self.header)
            .field("backing_chain", &self.backing_chain)
            .finish_non_exhaustive()
    }
}

impl Qcow2Image {
    /// Validates the header and opens the image and its backing chain.
    ///
    /// Backing files are resolved relative to the directory of the image
    /// that names them (as qemu does) and opened read-only.
    pub fn open(raw: RawFile, path: &Path) -> Result<Self> {
        let name = path.display().to_string();
        let mut visited = vec![canonical(path)];
        Self::open_layer(Arc::new(raw), name, Some(path), &mut visited)
    }

    /// Opens one image of a chain. `path` is `None` when the bytes do not
    /// come from a file (fuzzing): the backing file is then not opened and
    /// reads as zeros. `visited` holds the canonical paths of the images
    /// above this one, to detect loops.
    fn open_layer(
        source: Device,
        name: String,
        path: Option<&Path>,
        visited: &mut Vec<PathBuf>,
    ) -> Result<Self> {
        let header = read_header(&*source).map_err(|e| e.with_path(name.clone()))?;
        header::check_l1_table(&*source, &header).map_err(|e| e.with_path(name.clone()))?;
        if header.dirty {
            tracing::warn!(
                image = %name,
                "qcow2 image is marked dirty (not cleanly closed); its refcounts may be stale, which does not affect reading, but run `qemu-img check -r all` before writing to it"
            );
        }
        let engine = if header.virtual_size_in_bytes > 0 {
            let state = Rc::new(IoState::default());
            let dev = build_dev(&source, &header, &name, &state, None)?;
            Some(Engine {
                source,
                dev: RefCell::new(Some(dev)),
                state,
            })
        } else {
            None
        };
        let (backing, backing_chain) = match (&header.backing_file, path) {
            (Some(backing_name), Some(path)) => {
                let (device, chain) = open_backing(
                    path,
                    backing_name,
                    header.backing_format.as_deref(),
                    visited,
                )?;
                (Some(device), chain)
            }
            _ => (None, Vec::new()),
        };
        tracing::debug!(
            image = %name,
            version = header.version,
            virtual_size = header.virtual_size_in_bytes,
            cluster_size = header.cluster_size_in_bytes(),
            snapshots = header.nb_snapshots,
            backing_files = backing_chain.len(),
            "opened qcow2 image"
        );
        Ok(Qcow2Image {
            name,
            header,
            engine,
            backing,
            backing_chain,
            inflated: RefCell::new(Vec::new()),
            writer: None,
        })
    }

    /// The header facts reported to the operator.
    pub fn summary(&self) -> crate::Qcow2Summary {
        crate::Qcow2Summary {
            version: self.version(),
            cluster_size_in_bytes: self.cluster_size_in_bytes(),
            has_internal_snapshots: self.has_internal_snapshots(),
            is_dirty: self.is_dirty(),
        }
    }

    /// Backing files, nearest first, as resolved paths.
    pub fn backing_chain(&self) -> Vec<PathBuf> {
        self.backing_chain.clone()
    }

    /// Size of the disk as the guest sees it, in bytes.
    pub fn virtual_size(&self) -> u64 {
        self.header.virtual_size_in_bytes
    }

    /// Cluster size of this image (not of its backing files), in bytes.
    pub fn cluster_size_in_bytes(&self) -> u64 {
        self.header.cluster_size_in_bytes()
    }

    /// qcow2 format version: 2 (qemu `compat=0.10`) or 3 (`compat=1.1`).
    pub fn version(&self) -> u32 {
        self.header.version
    }

    /// Whether the image holds internal snapshots (`qemu-img snapshot -l`).
    /// Reading the active layer is fine; the write side refuses such
    /// images, since `qcow2-rs` would corrupt the snapshots.
    pub fn has_internal_snapshots(&self) -> bool {
        self.header.nb_snapshots > 0
    }

    /// Whether qemu left the image marked dirty (not cleanly closed, with
    /// lazy refcounts). Readable; refcounts may need `qemu-img check -r`.
    pub fn is_dirty(&self) -> bool {
        self.header.dirty
    }

    /// Reads `dst.len()` bytes at `start_byte`, all inside one cluster.
    fn read_in_cluster(&self, engine: &Engine, start_byte: u64, dst: &mut [u8]) -> Result<()> {
        let cluster_size = self.header.cluster_size_in_bytes();
        let cluster_start = start_byte & !(cluster_size - 1);
        let mapping = self.mapping(engine, cluster_start)?;
        match mapping.source {
            // A writable engine knows no backing file (see
            // `Header::canonical_bytes`): unallocated means "ask the backing".
            MappingSource::Unallocated if self.header.backing_file.is_some() => {
                self.read_backing(start_byte, dst)
            }
            MappingSource::Zero | MappingSource::Unallocated => {
                dst.fill(0);
                Ok(())
            }
            MappingSource::Backing => self.read_backing(start_byte, dst),
            MappingSource::DataFile => {
                let host = mapping.cluster_offset.unwrap_or(0);
                if !host.is_multiple_of(cluster_size) {
                    return Err(Error::corrupt(
                        "reading qcow2 L2 table",
                        format!(
                            "the L2 entry for guest offset {cluster_start:#x} points to host offset {host:#x}, which is not aligned to the cluster size ({cluster_size:#x}): the image is corrupt"
                        ),
                    )
                    .with_path(self.name.clone()));
                }
                self.read_through_qcow2_rs(engine, start_byte, dst, false)
            }
            MappingSource::Compressed => {
                self.read_compressed(engine, cluster_start, start_byte, dst)
            }
        }
    }

    /// Reads from a compressed cluster, inflating it once and keeping it in
    /// a small cache.
    fn read_compressed(
        &self,
        engine: &Engine,
        cluster_start: u64,
        start_byte: u64,
        dst: &mut [u8],
    ) -> Result<()> {
        let offset = (start_byte - cluster_start) as usize;
        let cached = self
            .inflated
            .borrow()
            .iter()
            .find(|(c, _)| *c == cluster_start)
            .map(|(_, d)| Rc::clone(d));
        let data = match cached {
            Some(d) => d,
            None => {
                let cluster_size = self.header.cluster_size_in_bytes();
                // The last cluster may extend past the end of the disk.
                let len =
                    cluster_size.min(self.header.virtual_size_in_bytes - cluster_start) as usize;
                let mut buf = vec![0u8; len];
                self.read_through_qcow2_rs(engine, cluster_start, &mut buf, true)?;
                let d = Rc::new(buf);
                let mut cache = self.inflated.borrow_mut();
                let keep = (INFLATED_CACHE_BYTES / cluster_size).max(1) as usize;
                if cache.len() >= keep {
                    cache.remove(0);
                }
                cache.push((cluster_start, Rc::clone(&d)));
                d
            }
        };
        let Some(src) = data.get(offset..offset + dst.len()) else {
            return Err(
                Error::new(ErrorKind::Truncated, "reading qcow2 compressed cluster")
                    .with_path(self.name.clone())
                    .with_offset(start_byte),
            );
        };
        dst.copy_from_slice(src);
        Ok(())
    }

    /// The mapping of the cluster at guest offset `cluster_start`.
    fn mapping(&self, engine: &Engine, cluster_start: u64) -> Result<Mapping> {
        let result = {
            let dev = engine.dev.borrow();
            let Some(dev) = dev.as_ref() else {
                return Err(self.unusable());
            };
            engine.state.take_failure();
            block_on(dev.get_mapping(cluster_start))
        };
        result.map_err(|e| {
            let error = engine_error(
                &engine.state,
                e,
                "L2 table",
                &self.name,
                cluster_start,
                &engine.source,
            );
            if self.writer.is_some() {
                // Rebuilding would drop metadata not yet flushed.
                self.poison(engine, &error);
                return error;
            }
            // qcow2-rs marks a table slice as loaded before reading it, so a
            // failed read would leave zeros in its cache: start afresh.
            let fresh = build_dev(
                &engine.source,
                &self.header,
                &self.name,
                &engine.state,
                None,
            )
            .ok();
            *engine.dev.borrow_mut() = fresh;
            error
        })
    }

    /// Reads a data or compressed cluster piece through `qcow2-rs`.
    fn read_through_qcow2_rs(
        &self,
        engine: &Engine,
        start_byte: u64,
        dst: &mut [u8],
        compressed: bool,
    ) -> Result<()> {
        // qcow2-rs wants 512-byte aligned offset and length; the piece lies
        // inside one cluster and the virtual size is a multiple of 512, so
        // the aligned range does too.
        let aligned_start = start_byte & !(SECTOR - 1);
        let end = start_byte + dst.len() as u64;
        let aligned_end = end.next_multiple_of(SECTOR);
        let aligned = aligned_start == start_byte && aligned_end == end;
        let mut bounce = if aligned {
            Vec::new()
        } else {
            vec![0u8; (aligned_end - aligned_start) as usize]
        };
        let buf: &mut [u8] = if aligned { &mut *dst } else { &mut bounce };
        // A corrupt compressed stream may inflate to less than a cluster;
        // what it leaves must be zeros, not stale memory.
        buf.fill(0);
        engine.state.past_eof.set(if compressed {
            PastEof::CompressedTail
        } else {
            PastEof::Error
        });
        let result = {
            let dev = engine.dev.borrow();
            dev.as_ref().map(|dev| {
                engine.state.take_failure();
                block_on(dev.read_at(buf, aligned_start))
            })
        };
        engine.state.past_eof.set(PastEof::Error);
        let what = if compressed {
            "compressed cluster"
        } else {
            "data cluster"
        };
        match result {
            None => Err(self.unusable()),
            Some(Ok(count)) if count == buf.len() => {
                if !aligned {
                    // OK to index: start_byte - aligned_start < 512 and the
                    // bounce buffer covers the whole piece.
                    let skip = (start_byte - aligned_start) as usize;
                    dst.copy_from_slice(&bounce[skip..skip + dst.len()]);
                }
                Ok(())
            }
            Some(Ok(count)) => Err(Error::new(ErrorKind::Io, format!("reading qcow2 {what}"))
                .with_path(self.name.clone())
                .with_detail(format!(
                    "qcow2-rs returned {count} of {} bytes for guest offset {aligned_start:#x}",
                    buf.len()
                ))),
            Some(Err(e)) => {
                let error = engine_error(
                    &engine.state,
                    e,
                    what,
                    &self.name,
                    aligned_start,
                    &engine.source,
                );
                if self.writer.is_some() {
                    // qcow2-rs may have cached a table it failed to read.
                    self.poison(engine, &error);
                }
                Err(error)
            }
        }
    }

    /// Reads a piece that this layer leaves to its backing file. Bytes
    /// beyond the end of the backing file read as zeros, as in qemu when an
    /// overlay is larger than its backing file.
    fn read_backing(&self, start_byte: u64, dst: &mut [u8]) -> Result<()> {
        let Some(backing) = &self.backing else {
            dst.fill(0);
            return Ok(());
        };
        let backing_size = backing.size_in_bytes();
        let inside = backing_size
            .saturating_sub(start_byte)
            .min(dst.len() as u64) as usize;
        let (head, tail) = dst.split_at_mut(inside);
        if !head.is_empty() {
            backing.read_exact_at(start_byte, head)?;
        }
        tail.fill(0);
        Ok(())
    }
}

impl BlockRead for Qcow2Image {
    fn size_in_bytes(&self) -> u64 {
        self.header.virtual_size_in_bytes
    }

    fn read_exact_at(&self, start_byte: u64, dst: &mut [u8]) -> Result<()> {
        let size = self.header.virtual_size_in_bytes;
        let end = start_byte.checked_add(dst.len() as u64);
        if end.is_none_or(|end| end > size) {
            return Err(Error::new(ErrorKind::Truncated, "reading")
                .with_path(self.describe())
                .with_offset(start_byte)
                .with_detail(format!(
                    "{} bytes requested but the virtual disk ends at {size:#x}",
                    dst.len()
                )));
        }
        if dst.is_empty() {
            return Ok(());
        }
        let Some(engine) = &self.engine else {
            // Unreachable: a zero-sized image admits only empty reads.
            return Ok(());
        };
        let cluster_size = self.header.cluster_size_in_bytes();
        let mut pos = start_byte;
        let mut rest = dst;
        while !rest.is_empty() {
            let cluster_end = (pos & !(cluster_size - 1)) + cluster_size;
            let piece_len = (cluster_end - pos).min(rest.len() as u64) as usize;
            let (piece, tail) = rest.split_at_mut(piece_len);
            self.read_in_cluster(engine, pos, piece)?;
            pos += piece_len as u64;
            rest = tail;
        }
        Ok(())
    }

    fn describe(&self) -> String {
        format!("{} (qcow2)", self.name)
    }
}

/// Canonical form of `path` for loop detection; the path itself if it
/// cannot be resolved.
fn canonical(path: &Path) -> PathBuf {
    std::fs::canonicalize(path).unwrap_or_else(|_| path.to_owned())
}

/// Reads the first cluster (at most 2 MiB) and validates the header in it.
fn read_header(source: &dyn BlockRead) -> Result<Header> {
    let file_size = source.size_in_bytes();
    if file_size == 0 {
        return Err(Error::new(ErrorKind::Empty, "reading qcow2 header")
            .with_detail("the file is empty (0 bytes): there is no disk in it"));
    }
    let prefix_len = file_size.min(4096) as usize;
    let mut buf = vec![0u8; prefix_len];
    source.read_exact_at(0, &mut buf)?;
    let cluster_size = header::peek_cluster_size(&buf, file_size)?;
    let first_len = cluster_size.min(file_size) as usize;
    if first_len > buf.len() {
        buf = vec![0u8; first_len];
        source.read_exact_at(0, &mut buf)?;
    }
    header::parse_header(&buf, file_size)
}

/// A `qcow2-rs` device over `source`, with its L1 and refcount tables
/// loaded; writable through `writer` if given.
fn build_dev(
    source: &Device,
    header: &Header,
    name: &str,
    state: &Rc<IoState>,
    writer: Option<Arc<dyn crate::BlockWrite>>,
) -> Result<Qcow2Dev<ImageIo>> {
    const OP: &str = "preparing qcow2 metadata";
    let read_only = writer.is_none();
    let canonical = header.canonical_bytes(read_only);
    let qheader = Qcow2Header::from_buf(&canonical)
        .map_err(|e| Error::corrupt(OP, e.to_string()).with_path(name.to_owned()))?;
    // 512-byte I/O granularity, default refcount cache, bounded L2 cache of
    // 4 KiB slices, no O_DIRECT.
    let params = Qcow2DevParams::new(9, None, Some((12, L2_CACHE_BYTES)), read_only, false);
    let io = ImageIo {
        source: Arc::clone(source),
        writer,
        header_cluster: header.cluster_size_in_bytes(),
        state: Rc::clone(state),
    };
    let dev = Qcow2Dev::new(Path::new(name), qheader, &params, io)
        .map_err(|e| Error::corrupt(OP, e.to_string()).with_path(name.to_owned()))?;
    state.past_eof.set(PastEof::TableTail);
    state.take_failure();
    let loaded = block_on(dev.qcow2_prep_io());
    state.past_eof.set(PastEof::Error);
    loaded.map_err(|e| engine_error(state, e, "L1 and refcount tables", name, 0, source))?;
    Ok(dev)
}

/// Our error for a `qcow2-rs` failure: the I/O error our I/O object saw if
/// there was one, else corruption described by `qcow2-rs`.
fn engine_error(
    state: &IoState,
    e: Qcow2Error,
    what: &str,
    name: &str,
    guest_offset: u64,
    source: &Device,
) -> Error {
    match state.take_failure() {
        Some(failure) => failure.into_error(what, name, guest_offset, source.size_in_bytes()),
        None => Error::corrupt(
            format!("reading qcow2 {what}"),
            format!("for guest offset {guest_offset:#x}: {e}"),
        )
        .with_path(name.to_owned()),
    }
}

/// Opens the backing file `backing_name` of the image at `image_path`.
/// Returns the device and the chain of resolved paths, nearest first.
fn open_backing(
    image_path: &Path,
    backing_name: &[u8],
    backing_format: Option<&str>,
    visited: &mut Vec<PathBuf>,
) -> Result<(Device, Vec<PathBuf>)> {
    const OP: &str = "opening backing file";
    let image = image_path.display().to_string();
    let shown = String::from_utf8_lossy(backing_name).into_owned();
    if backing_name.starts_with(b"json:") || backing_name.windows(3).any(|w| w == b"://") {
        return Err(Error::unsupported(
            OP,
            format!(
                "{image} names backing file {shown:?}, a network or json: specification that rescue-disk cannot open; flatten the image with `qemu-img convert -O qcow2 {image} flat.qcow2`"
            ),
        )
        .with_path(shown));
    }
    let name = backing_name.strip_prefix(b"file:").unwrap_or(backing_name);
    let name = Path::new(OsStr::from_bytes(name));
    // Like qemu: relative names are relative to the naming image's directory.
    let resolved = if name.is_absolute() {
        name.to_owned()
    } else {
        image_path.parent().unwrap_or(Path::new("")).join(name)
    };
    let resolved_name = resolved.display().to_string();
    if visited.len() > MAX_BACKING_DEPTH {
        return Err(Error::unsupported(
            OP,
            format!(
                "the backing chain is deeper than {MAX_BACKING_DEPTH} files; flatten it with `qemu-img convert -O qcow2 top.qcow2 flat.qcow2`"
            ),
        )
        .with_path(resolved_name));
    }
    let raw = RawFile::open_read_only(&resolved).map_err(|e| {
        if e.kind() == ErrorKind::NotFound {
            Error::new(ErrorKind::NotFound, OP).with_path(resolved_name.clone()).with_detail(format!(
                "{image} needs backing file {shown:?} (looked up relative to the image's directory), which does not exist; copy or attach the backing file there, or pass a flattened image made with `qemu-img convert -O qcow2 {image} flat.qcow2` where the whole chain is available"
            ))
        } else {
            e
        }
    })?;
    let canonical_path = canonical(&resolved);
    if visited.contains(&canonical_path) {
        return Err(Error::corrupt(
            OP,
            format!(
                "{image} names backing file {shown:?}, which is already in its own backing chain: the chain loops; fix it with `qemu-img rebase -u -b <right file> -F <format> {image}`"
            ),
        )
        .with_path(resolved_name));
    }
    let format = match backing_format {
        Some("qcow2") => Format::Qcow2,
        Some("raw") => Format::Raw,
        Some(other) => {
            return Err(Error::unsupported(
                OP,
                format!(
                    "{image} says its backing file has format {other:?}; only raw and qcow2 backing files are supported; flatten the image with `qemu-img convert -O qcow2 {image} flat.qcow2`"
                ),
            )
            .with_path(resolved_name))
        }
        None => sniff(&raw)?,
    };
    match format {
        Format::Raw => Ok((Arc::new(raw), vec![resolved])),
        Format::Qcow2 => {
            visited.push(canonical_path);
            let image =
                Qcow2Image::open_layer(Arc::new(raw), resolved_name, Some(&resolved), visited)?;
            visited.pop();
            let mut chain = vec![resolved];
            chain.extend(image.backing_chain.iter().cloned());
            // Shared, never sent across threads: see `Device`.
            #[allow(clippy::arc_with_non_send_sync)]
            let device: Device = Arc::new(image);
            Ok((device, chain))
        }
    }
}

/// An in-memory file, for fuzzing the whole open and read path.
#[derive(Debug)]
struct MemFile(Vec<u8>);

impl BlockRead for MemFile {
    fn size_in_bytes(&self) -> u64 {
        self.0.len() as u64
    }

    fn read_exact_at(&self, start_byte: u64, dst: &mut [u8]) -> Result<()> {
        let end = start_byte
            .checked_add(dst.len() as u64)
            .filter(|&end| end <= self.0.len() as u64);
        let Some(end) = end else {
            return Err(Error::new(ErrorKind::Truncated, "reading")
                .with_path("memory")
                .with_offset(start_byte));
        };
        dst.copy_from_slice(&self.0[start_byte as usize..end as usize]);
        Ok(())
    }

    fn describe(&self) -> String {
        "memory".to_owned()
    }
}

/// Fuzz entry point: treats `data` as a whole qcow2 file, validates its
/// header and L1 table, and if that succeeds reads a few ranges of the
/// disk through `qcow2-rs`. Must never panic, whatever the bytes.
#[doc(hidden)]
pub fn fuzz_qcow2_header(data: &[u8]) {
    let source: Device = Arc::new(MemFile(data.to_vec()));
    let Ok(image) = Qcow2Image::open_layer(source, "fuzz".to_owned(), None, &mut Vec::new()) else {
        return;
    };
    let size = image.virtual_size();
    let mut buf = vec![0u8; 64 << 10];
    for (start, len) in [
        (0, 64 << 10),
        (size / 2 + 1, 3001),
        (size.saturating_sub(700), 700),
        (4095, 2),
    ] {
        let len = len.min(size.saturating_sub(start)) as usize;
        let _ = image.read_exact_at(start, &mut buf[..len]);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const CLUSTER: usize = 4096;

    fn put32(b: &mut [u8], at: usize, v: u32) {
        b[at..at + 4].copy_from_slice(&v.to_be_bytes());
    }

    fn put64(b: &mut [u8], at: usize, v: u64) {
        b[at..at + 8].copy_from_slice(&v.to_be_bytes());
    }

    /// A small valid qcow2 v3 image written by hand: 4 KiB clusters, 1 MiB
    /// virtual size, guest cluster 0 = 0x11 bytes, cluster 1 = zero flag,
    /// cluster 3 = 0x33 bytes, a backing file name and header extensions.
    /// Layout: header, refcount table, refcount block, L1, L2, 2 data.
    fn sample() -> Vec<u8> {
        let mut f = vec![0u8; 7 * CLUSTER];
        f[0..4].copy_from_slice(b"QFI\xfb");
        put32(&mut f, 4, 3);
        put32(&mut f, 20, 12); // cluster_bits
        put64(&mut f, 24, 1 << 20); // size
        put32(&mut f, 36, 1); // l1_size
        put64(&mut f, 40, 3 * CLUSTER as u64); // l1_table_offset
        put64(&mut f, 48, CLUSTER as u64); // refcount_table_offset
        put32(&mut f, 56, 1); // refcount_table_clusters
        put32(&mut f, 96, 4); // refcount_order
        put32(&mut f, 100, 112); // header_length
                                 // Extensions: backing format "raw", then a feature name table.
        let mut at = 112;
        put32(&mut f, at, 0xe279_2aca);
        put32(&mut f, at + 4, 3);
        f[at + 8..at + 11].copy_from_slice(b"raw");
        at += 16;
        put32(&mut f, at, 0x6803_f857);
        put32(&mut f, at + 4, 48);
        f[at + 8] = 0; // incompatible
        f[at + 9] = 0; // bit 0
        f[at + 10..at + 15].copy_from_slice(b"dirty");
        at += 8 + 48;
        put32(&mut f, at, 0); // end
        at += 8;
        f[at..at + 8].copy_from_slice(b"base.raw");
        put64(&mut f, 8, at as u64);
        put32(&mut f, 16, 8);
        // Refcount table and block: clusters 0..=6 referenced once.
        put64(&mut f, CLUSTER, 2 * CLUSTER as u64);
        for i in 0..7 {
            f[2 * CLUSTER + 2 * i + 1] = 1;
        }
        // L1 -> L2 (COPIED flag), L2 entries.
        put64(&mut f, 3 * CLUSTER, (1 << 63) | (4 * CLUSTER as u64));
        put64(&mut f, 4 * CLUSTER, (1 << 63) | (5 * CLUSTER as u64));
        put64(&mut f, 4 * CLUSTER + 8, 1);
        put64(&mut f, 4 * CLUSTER + 24, (1 << 63) | (6 * CLUSTER as u64));
        f[5 * CLUSTER..6 * CLUSTER].fill(0x11);
        f[6 * CLUSTER..7 * CLUSTER].fill(0x33);
        f
    }

    fn open_mem(data: Vec<u8>) -> Result<Qcow2Image> {
        Qcow2Image::open_layer(
            Arc::new(MemFile(data)),
            "sample".to_owned(),
            None,
            &mut Vec::new(),
        )
    }

    #[test]
    fn hand_made_sample_reads_back() {
        let image = open_mem(sample()).expect("sample opens");
        assert_eq!(image.virtual_size(), 1 << 20);
        assert_eq!(image.cluster_size_in_bytes(), 4096);
        assert!(!image.is_dirty());
        assert!(!image.has_internal_snapshots());
        let mut buf = vec![0xffu8; 5 * CLUSTER];
        image.read_exact_at(0, &mut buf).unwrap();
        assert!(buf[..CLUSTER].iter().all(|&b| b == 0x11));
        assert!(buf[CLUSTER..3 * CLUSTER].iter().all(|&b| b == 0));
        assert!(buf[3 * CLUSTER..4 * CLUSTER].iter().all(|&b| b == 0x33));
        assert!(buf[4 * CLUSTER..].iter().all(|&b| b == 0));
        // Unaligned read across a cluster boundary.
        let mut odd = [0u8; 3];
        image.read_exact_at(CLUSTER as u64 - 1, &mut odd).unwrap();
        assert_eq!(odd, [0x11, 0, 0]);
        // Past the end of the virtual disk.
        let err = image.read_exact_at((1 << 20) - 1, &mut odd).unwrap_err();
        assert_eq!(err.kind(), ErrorKind::Truncated);
    }

    #[test]
    fn data_cluster_beyond_eof_is_truncated_not_zeros() {
        let mut data = sample();
        data.truncate(6 * CLUSTER + 100);
        let image = open_mem(data).expect("metadata is intact");
        let mut buf = [0u8; 512];
        let err = image
            .read_exact_at(3 * CLUSTER as u64, &mut buf)
            .unwrap_err();
        assert_eq!(err.kind(), ErrorKind::Truncated, "{err}");
        assert_eq!(err.offset(), Some(6 * CLUSTER as u64));
        // The first 100 bytes of that cluster are still there (aligned read of 512 fails).
        let mut small = [0u8; 100];
        assert!(image.read_exact_at(3 * CLUSTER as u64, &mut small).is_err());
        image.read_exact_at(0, &mut buf).unwrap();
        assert!(buf.iter().all(|&b| b == 0x11));
    }

    struct XorShift(u64);

    impl XorShift {
        fn next(&mut self) -> u64 {
            self.0 ^= self.0 << 13;
            self.0 ^= self.0 >> 7;
            self.0 ^= self.0 << 17;
            self.0
        }
    }

    #[test]
    fn fuzz_mutations_of_hand_made_sample_never_panic() {
        let base = sample();
        let mut rng = XorShift(0x9e37_79b9_7f4a_7c15);
        let mut opened = 0;
        for _ in 0..4000 {
            let mut data = base.clone();
            let edits = 1 + rng.next() % 6;
            for _ in 0..edits {
                let r = rng.next();
                let at = match r % 4 {
                    0 | 1 => (rng.next() % 128) as usize,
                    2 => 3 * CLUSTER + (rng.next() % (2 * CLUSTER as u64)) as usize,
                    _ => (rng.next() % data.len() as u64) as usize,
                };
                data[at] = if r & 0x100 != 0 {
                    data[at] ^ (1 << ((r >> 9) % 8))
                } else {
                    (r >> 16) as u8
                };
            }
            if rng.next().is_multiple_of(16) {
                let cut = (rng.next() % data.len() as u64) as usize;
                data.truncate(cut);
            }
            if open_mem(data.clone()).is_ok() {
                opened += 1;
            }
            fuzz_qcow2_header(&data);
        }
        // The mutations must not all be rejected at the magic check.
        assert!(opened > 100, "only {opened} mutated images opened");
    }
}
