//! FAT volumes (the EFI system partition) through `fatfs`, read-only.
//!
//! `fatfs` wants `Read + Write + Seek`; our stream refuses every write, and
//! the filesystem is opened without access-time updates so it never tries.
//! Lookups walk directories ourselves with a bounded number of entries, so a
//! cyclic cluster chain in a directory cannot loop forever; file reads are
//! bounded by the size in the directory entry, checked against a cap first.

use std::cell::Cell;
use std::collections::VecDeque;
use std::io::{self, Read, Seek, SeekFrom, Write};
use std::rc::Rc;

use fatfs::{FileSystem, FsOptions};
use rescue_io::{Device, Error, ErrorKind, Result};

use crate::fs::{guarded, too_large, DirEntry, FileType, GuestFs, Metadata, MAX_DIR_ENTRIES};
use crate::path::GuestPath;

/// Bytes one operation may read before we call the filesystem corrupt. A
/// directory whose cluster chain loops through deleted entries would
/// otherwise keep `fatfs` reading forever inside a single iterator step.
const READ_BUDGET_BYTES: u64 = 256 * 1024 * 1024;

/// Bytes per cached chunk of the volume.
const CHUNK_BYTES: u64 = 64 * 1024;
/// Chunks kept (2 MiB).
const CACHE_CHUNKS: usize = 32;

/// A read-only seekable stream over a device, with a small chunk cache and
/// a read budget shared with the [`FatFs`] that resets it per operation.
struct DeviceStream {
    device: Device,
    pos: u64,
    budget: Rc<Cell<u64>>,
    cache: VecDeque<(u64, Vec<u8>)>,
}

impl DeviceStream {
    /// The cached chunk holding `pos`, read on a miss. `fatfs` reads a few
    /// bytes at a time (directory entries, FAT cells); going to the device,
    /// possibly a qcow2 image, for each of those is very slow.
    fn chunk(&mut self, index: u64) -> io::Result<&[u8]> {
        if let Some(i) = self.cache.iter().position(|(k, _)| *k == index) {
            // Move to the front: most recently used.
            if let Some(entry) = self.cache.remove(i) {
                self.cache.push_front(entry);
            }
        } else {
            let start = index * CHUNK_BYTES;
            let len = CHUNK_BYTES.min(self.device.size_in_bytes().saturating_sub(start));
            let mut data = vec![0u8; usize::try_from(len).unwrap_or(0)];
            self.device
                .read_exact_at(start, &mut data)
                .map_err(io::Error::other)?;
            if self.cache.len() >= CACHE_CHUNKS {
                self.cache.pop_back();
            }
            self.cache.push_front((index, data));
        }
        Ok(self.cache.front().map(|(_, d)| d.as_slice()).unwrap_or(&[]))
    }
}

impl Read for DeviceStream {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        let size = self.device.size_in_bytes();
        let left = size.saturating_sub(self.pos);
        let want = usize::try_from(left).unwrap_or(usize::MAX).min(buf.len());
        if want == 0 {
            return Ok(0);
        }
        let left_budget = self.budget.get();
        if left_budget < want as u64 {
            return Err(io::Error::other(
                "read budget exhausted: a cluster chain probably loops; the filesystem is corrupt, run fsck.fat",
            ));
        }
        // Serve from one chunk; `Read` may return fewer bytes than asked.
        let pos = self.pos;
        let chunk = self.chunk(pos / CHUNK_BYTES)?;
        // OK: pos % CHUNK_BYTES < CHUNK_BYTES, which fits usize.
        let offset = (pos % CHUNK_BYTES) as usize;
        let avail = chunk.get(offset..).unwrap_or(&[]);
        let n = want.min(avail.len());
        if n == 0 {
            return Ok(0);
        }
        buf[..n].copy_from_slice(&avail[..n]);
        self.budget.set(left_budget - n as u64);
        self.pos += n as u64;
        Ok(n)
    }
}

impl Write for DeviceStream {
    fn write(&mut self, _buf: &[u8]) -> io::Result<usize> {
        Err(io::Error::new(
            io::ErrorKind::PermissionDenied,
            "the FAT volume is opened read-only",
        ))
    }

    fn flush(&mut self) -> io::Result<()> {
        Ok(())
    }
}

impl Seek for DeviceStream {
    fn seek(&mut self, pos: SeekFrom) -> io::Result<u64> {
        let new = match pos {
            SeekFrom::Start(p) => Some(p),
            SeekFrom::End(d) => self.device.size_in_bytes().checked_add_signed(d),
            SeekFrom::Current(d) => self.pos.checked_add_signed(d),
        };
        match new {
            Some(p) => {
                self.pos = p;
                Ok(p)
            }
            None => Err(io::Error::new(
                io::ErrorKind::InvalidInput,
                "seek out of range",
            )),
        }
    }
}

/// An opened FAT12/16/32 filesystem.
pub struct FatFs {
    fs: FileSystem<DeviceStream>,
    volume_id: String,
    budget: Rc<Cell<u64>>,
}

impl std::fmt::Debug for FatFs {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("FatFs")
            .field("volume_id", &self.volume_id)
            .finish()
    }
}

/// What a lookup found.
enum Found<'a> {
    Root,
    Entry(fatfs::DirEntry<'a, DeviceStream>),
}

impl FatFs {
    /// Opens the FAT filesystem on `device` (the bytes of volume `volume_id`).
    pub fn open(volume_id: &str, device: Device) -> Result<FatFs> {
        let budget = Rc::new(Cell::new(READ_BUDGET_BYTES));
        let stream = DeviceStream {
            device,
            pos: 0,
            budget: budget.clone(),
            cache: VecDeque::new(),
        };
        let fs = guarded("opening FAT filesystem", volume_id, || {
            FileSystem::new(stream, FsOptions::new().update_accessed_date(false)).map_err(|e| {
                Error::new(ErrorKind::Corrupt, "opening")
                    .with_path(format!("FAT filesystem on {volume_id}"))
                    .with_detail(format!("{e}; run fsck.fat -n to check it"))
            })
        })?;
        Ok(FatFs {
            fs,
            volume_id: volume_id.to_owned(),
            budget,
        })
    }

    /// Starts a new operation with a full read budget.
    fn begin(&self, extra_bytes: u64) {
        self.budget
            .set(READ_BUDGET_BYTES.saturating_add(extra_bytes));
    }

    fn what(&self, path: &GuestPath) -> String {
        format!("{path} on {}", self.volume_id)
    }

    /// Walks `path` one component at a time, matching names without regard
    /// to ASCII case as FAT does, over at most [`MAX_DIR_ENTRIES`] entries
    /// per directory.
    fn lookup(&self, path: &GuestPath) -> Result<Found<'_>> {
        let comps: Vec<&[u8]> = path.components().collect();
        if comps.is_empty() {
            return Ok(Found::Root);
        }
        let mut dir = self.fs.root_dir();
        for (i, comp) in comps.iter().enumerate() {
            let name = String::from_utf8_lossy(comp);
            let mut found = None;
            for entry in dir.iter().take(MAX_DIR_ENTRIES) {
                let entry = entry.map_err(|e| {
                    Error::new(ErrorKind::Corrupt, "looking up")
                        .with_path(self.what(path))
                        .with_detail(e.to_string())
                })?;
                let long = entry.file_name();
                if long.eq_ignore_ascii_case(&name)
                    || long.to_lowercase() == name.to_lowercase()
                    || entry.short_file_name().eq_ignore_ascii_case(&name)
                {
                    found = Some(entry);
                    break;
                }
            }
            let Some(entry) = found else {
                return Err(Error::new(ErrorKind::NotFound, "looking up")
                    .with_path(self.what(path))
                    .with_detail("no such file or directory"));
            };
            if i + 1 == comps.len() {
                return Ok(Found::Entry(entry));
            }
            if !entry.is_dir() {
                return Err(Error::new(ErrorKind::NotFound, "looking up")
                    .with_path(self.what(path))
                    .with_detail("a component is not a directory"));
            }
            dir = entry.to_dir();
        }
        Ok(Found::Root)
    }
}

fn metadata_of(entry: &Found<'_>) -> Metadata {
    // FAT has no owners or modes: report what a default vfat mount shows
    // (root-owned, 0755), minus write bits for read-only entries.
    match entry {
        Found::Root => Metadata {
            file_type: FileType::Directory,
            mode: 0o755,
            uid: 0,
            gid: 0,
            size_in_bytes: 0,
            modified_unix_seconds: None,
        },
        Found::Entry(e) => {
            let read_only = e.attributes().contains(fatfs::FileAttributes::READ_ONLY);
            Metadata {
                file_type: if e.is_dir() {
                    FileType::Directory
                } else {
                    FileType::Regular
                },
                mode: if read_only { 0o555 } else { 0o755 },
                uid: 0,
                gid: 0,
                size_in_bytes: e.len(),
                modified_unix_seconds: None,
            }
        }
    }
}

impl GuestFs for FatFs {
    fn fs_type(&self) -> &str {
        "vfat"
    }

    fn volume_id(&self) -> &str {
        &self.volume_id
    }

    fn symlink_metadata(&self, path: &GuestPath) -> Result<Metadata> {
        self.begin(0);
        guarded("looking up", &self.volume_id, || {
            self.lookup(path).map(|f| metadata_of(&f))
        })
    }

    fn read_dir(&self, path: &GuestPath, max_entries: usize) -> Result<Vec<DirEntry>> {
        self.begin(0);
        guarded("listing", &self.volume_id, || {
            let dir = match self.lookup(path)? {
                Found::Root => self.fs.root_dir(),
                Found::Entry(e) if e.is_dir() => e.to_dir(),
                Found::Entry(_) => {
                    return Err(Error::new(ErrorKind::NotFound, "listing")
                        .with_path(self.what(path))
                        .with_detail("not a directory"))
                }
            };
            let mut out = Vec::new();
            let too_many = || {
                Error::new(ErrorKind::Corrupt, "listing")
                    .with_path(self.what(path))
                    .with_detail(format!("more than {max_entries} entries; the directory is probably corrupt: run fsck.fat"))
            };
            for (seen, entry) in dir.iter().enumerate() {
                if seen > max_entries.saturating_add(2) {
                    return Err(too_many());
                }
                let entry = entry.map_err(|e| {
                    Error::new(ErrorKind::Corrupt, "listing")
                        .with_path(self.what(path))
                        .with_detail(e.to_string())
                })?;
                let name = entry.file_name();
                if name == "." || name == ".." {
                    continue;
                }
                if out.len() >= max_entries {
                    return Err(too_many());
                }
                let file_type = Some(if entry.is_dir() {
                    FileType::Directory
                } else {
                    FileType::Regular
                });
                out.push(DirEntry {
                    name: name.into_bytes(),
                    file_type,
                });
            }
            Ok(out)
        })
    }

    fn read_link(&self, path: &GuestPath) -> Result<Vec<u8>> {
        Err(Error::new(ErrorKind::Unsupported, "reading symlink")
            .with_path(self.what(path))
            .with_detail("FAT has no symlinks"))
    }

    fn read_file(&self, path: &GuestPath, max_bytes: u64) -> Result<Vec<u8>> {
        self.begin(max_bytes);
        guarded("reading", &self.volume_id, || {
            let entry = match self.lookup(path)? {
                Found::Entry(e) if e.is_file() => e,
                _ => {
                    return Err(Error::new(ErrorKind::Unsupported, "reading")
                        .with_path(self.what(path))
                        .with_detail("not a regular file"))
                }
            };
            let size = entry.len();
            if size > max_bytes {
                return Err(too_large(&self.volume_id, path, size, max_bytes, "vfat"));
            }
            let mut out = Vec::with_capacity(usize::try_from(size).unwrap_or(0));
            entry
                .to_file()
                .take(size)
                .read_to_end(&mut out)
                .map_err(|e| Error::io("reading", e).with_path(self.what(path)))?;
            if (out.len() as u64) < size {
                return Err(Error::new(ErrorKind::Corrupt, "reading")
                    .with_path(self.what(path))
                    .with_detail(format!(
                        "the file ends after {} of {size} bytes; run fsck.fat",
                        out.len()
                    )));
            }
            Ok(out)
        })
    }
}
