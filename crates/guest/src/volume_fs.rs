//! Opening the filesystem of a volume, once.
//!
//! Maps a volume's probed type to a [`GuestFs`] implementation (ext2/3/4 and
//! FAT through the image engine) and caches the result, including failures,
//! so a corrupt volume is examined once and reported once. XFS and btrfs are
//! refused with a pointer to the kernel engine.

use std::cell::RefCell;
use std::collections::HashMap;
use std::rc::Rc;

use rescue_io::{Error, ErrorKind, Result};
use rescue_volumes::{Disk, Volume};

use crate::ext4::Ext4Fs;
use crate::fat::FatFs;
use crate::fs::GuestFs;
use crate::guest::Guest;
use crate::path::GuestPath;

/// True for filesystem types the image engine can read.
pub fn readable_fstype(fstype: &str) -> bool {
    matches!(fstype, "ext2" | "ext3" | "ext4" | "vfat")
}

/// Opens the filesystem on `volume` according to its probe.
pub fn open_volume(volume: &Volume) -> Result<Rc<dyn GuestFs>> {
    let fstype = volume.probe.fstype.as_deref().unwrap_or("");
    match fstype {
        "ext2" | "ext3" | "ext4" => {
            // A crash-consistent snapshot has a dirty journal: read the
            // filesystem the kernel would see after recovery, replayed into
            // a copy-on-write overlay (the disk is never written).
            let device = if volume.probe.ext.as_ref().is_some_and(|e| e.needs_recovery) {
                let replayed = rescue_ext4::replay(volume.device.clone()).map_err(|e| {
                    Error::new(e.kind(), "replaying the journal")
                        .with_path(format!("ext filesystem on {}", volume.id))
                        .with_detail(e.to_string())
                })?;
                tracing::info!(
                    "{}: replayed {} journal transaction(s), {} block(s), in memory",
                    volume.id,
                    replayed.transactions,
                    replayed.blocks_replayed
                );
                replayed.device
            } else {
                volume.device.clone()
            };
            Ok(Rc::new(Ext4Fs::open(&volume.id, fstype, device)?))
        }
        "vfat" => Ok(Rc::new(FatFs::open(&volume.id, volume.device.clone())?)),
        "xfs" | "btrfs" => Err(Error::new(ErrorKind::Unsupported, "opening")
            .with_path(format!("{fstype} filesystem on {}", volume.id))
            .with_detail(format!(
                "{fstype} cannot be read by the image engine: use --engine kernel (later)"
            ))),
        "" => Err(Error::new(ErrorKind::Unsupported, "opening")
            .with_path(format!("volume {}", volume.id))
            .with_detail("no filesystem was recognised on it")),
        other => Err(Error::new(ErrorKind::Unsupported, "opening")
            .with_path(format!("{other} volume {}", volume.id))
            .with_detail(format!("{other} is not a filesystem rescue-disk can read"))),
    }
}

/// An opened filesystem, or the kind and message of why it could not be.
type Opened = std::result::Result<Rc<dyn GuestFs>, (ErrorKind, String)>;

/// Filesystems of one disk's volumes, opened on first use.
pub struct VolumeFs<'d> {
    disk: &'d Disk,
    cache: RefCell<HashMap<String, Opened>>,
}

impl std::fmt::Debug for VolumeFs<'_> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("VolumeFs")
            .field("opened", &self.cache.borrow().len())
            .finish()
    }
}

impl<'d> VolumeFs<'d> {
    /// A cache over `disk`'s volumes.
    pub fn new(disk: &'d Disk) -> Self {
        VolumeFs {
            disk,
            cache: RefCell::new(HashMap::new()),
        }
    }

    /// The disk.
    pub fn disk(&self) -> &'d Disk {
        self.disk
    }

    /// The volume with `id`.
    pub fn volume(&self, id: &str) -> Option<&'d Volume> {
        self.disk.volumes.iter().find(|v| v.id == id)
    }

    /// The filesystem of volume `id`, opened once.
    pub fn open(&self, id: &str) -> Result<Rc<dyn GuestFs>> {
        if let Some(r) = self.cache.borrow().get(id) {
            return r.clone().map_err(|(kind, msg)| Error::new(kind, msg));
        }
        let r = match self.volume(id) {
            Some(v) => open_volume(v),
            None => {
                Err(Error::new(ErrorKind::NotFound, "opening").with_path(format!("volume {id}")))
            }
        };
        let cached = match &r {
            Ok(fs) => Ok(fs.clone()),
            Err(e) => Err((e.kind(), e.to_string())),
        };
        self.cache.borrow_mut().insert(id.to_owned(), cached);
        r
    }

    /// Reads `path` inside volume `id` alone (symlinks resolved within that
    /// filesystem), at most `max_bytes`.
    pub fn read_file(&self, id: &str, path: &GuestPath, max_bytes: u64) -> Result<Vec<u8>> {
        Guest::with_root(self.open(id)?).read_file(path, max_bytes)
    }

    /// True when `path` exists inside volume `id` alone.
    pub fn exists(&self, id: &str, path: &GuestPath) -> Result<bool> {
        Guest::with_root(self.open(id)?).exists(path)
    }
}
