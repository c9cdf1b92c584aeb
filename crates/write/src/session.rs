//! A write session on one target: open through the undo journal, apply
//! operations by guest path, commit.

use std::collections::BTreeSet;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use rescue_guest::{Guest, GuestPath};
use rescue_io::{BlockWrite, Device, Error, ErrorKind, Format, MappedDevice, Result};
use rescue_volumes::Disk;
use serde::Serialize;

use crate::engine::{self, Engine};
use crate::ops::{Change, Op};

/// How to open a target for writing.
#[derive(Debug, Clone)]
pub struct SessionOptions {
    /// Force the container format instead of sniffing it.
    pub format: Option<Format>,
    /// Directory of the host-side undo files.
    pub undo_dir: PathBuf,
}

/// What a committed session did.
#[derive(Debug, Clone, Serialize)]
pub struct Summary {
    /// The operations applied, in order.
    pub changes: Vec<Change>,
    /// Volumes whose journal was replayed into the device first.
    pub journals_replayed: Vec<String>,
    /// The host-side undo file (`rescue-disk undo` restores from it);
    /// `None` when nothing was written (the empty log is removed, so that
    /// `undo` never picks a session that changed nothing).
    pub undo_file: Option<PathBuf>,
    /// Byte ranges of the target saved in it.
    pub saved_ranges: u64,
    /// Bytes of the target saved in it.
    pub saved_bytes: u64,
}

/// An open write session. Dropping it without [`Session::commit`] leaves an
/// undo file without its commit record, which `undo` handles like a crash.
pub struct Session {
    writable: rescue_io::Writable,
    disk: Disk,
    replayed: BTreeSet<String>,
    changes: Vec<Change>,
}

impl std::fmt::Debug for Session {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Session")
            .field("changes", &self.changes)
            .finish_non_exhaustive()
    }
}

/// Where an operation lands, found before anything is written.
enum Place {
    /// An existing object: its path inside the volume.
    Existing(GuestPath),
    /// A name in a directory (the directory's path inside the volume).
    Entry { dir: GuestPath, name: Vec<u8> },
}

impl Session {
    /// Opens `target` (an image file or block device) for writing.
    pub fn open(target: &Path, options: &SessionOptions) -> Result<Session> {
        if std::fs::metadata(target).is_ok_and(|m| m.is_dir()) {
            return Err(Error::new(ErrorKind::Unsupported, "opening for writing")
                .with_path(target.display().to_string())
                .with_detail(
                    "this is a directory (a guest tree mounted on the host): change its files \
                     directly there; the write engine works on image files and block devices",
                ));
        }
        let writable = rescue_io::open_writable(
            target,
            rescue_io::OpenOptions {
                format: options.format,
            },
            rescue_io::UndoOptions::new(&options.undo_dir),
        )?;
        let device: Device = writable.device.clone();
        let disk = rescue_volumes::discover(device)?;
        Ok(Session {
            writable,
            disk,
            replayed: BTreeSet::new(),
            changes: Vec::new(),
        })
    }

    /// The run id (also in the undo file's name).
    pub fn run_id(&self) -> &str {
        &self.writable.run_id
    }

    /// The volumes of the target.
    pub fn disk(&self) -> &Disk {
        &self.disk
    }

    /// The writable view of the whole disk.
    pub fn device(&self) -> Arc<dyn BlockWrite> {
        self.writable.device.clone()
    }

    /// The guest as it is now on the disk (read side).
    pub fn guest(&self) -> Result<Guest> {
        Ok(rescue_guest::assemble(&self.disk)?.guest)
    }

    /// Applies one operation. Nothing is written when it fails before its
    /// engine starts; a failure inside the engine is reported with what was
    /// being done (the undo file covers any bytes already written).
    pub fn apply(&mut self, op: &Op) -> Result<Change> {
        let guest = self.guest()?;
        let (volume_id, places) = locate(&guest, op)?;
        drop(guest);
        let mut engine = self.engine(&volume_id)?;
        let result = run(&mut *engine, op, &places);
        let closed = engine.close();
        result?;
        closed?;
        let volume_path = match &places[0] {
            Place::Existing(p) => p.to_string(),
            Place::Entry { dir, name } => dir.join(name).to_string(),
        };
        let change = Change {
            op: op.describe(),
            volume: volume_id,
            volume_path,
        };
        tracing::info!(op = %change.op, volume = %change.volume, "applied");
        self.changes.push(change.clone());
        Ok(change)
    }

    /// Flushes everything and completes the undo file. A session that
    /// wrote nothing removes its (empty) undo file.
    pub fn commit(self) -> Result<Summary> {
        let wrote = self.writable.target_writes() > 0;
        let undo = self.writable.commit()?;
        let undo_file = if wrote {
            Some(undo.undo_path)
        } else {
            std::fs::remove_file(&undo.undo_path).map_err(|e| {
                Error::io("removing the empty undo file", e)
                    .with_path(undo.undo_path.display().to_string())
            })?;
            None
        };
        Ok(Summary {
            changes: self.changes,
            journals_replayed: self.replayed.into_iter().collect(),
            undo_file,
            saved_ranges: undo.ranges_saved,
            saved_bytes: undo.bytes_saved,
        })
    }

    /// Opens the write engine of one volume, replaying its journal into the
    /// device first when it needs recovery.
    fn engine(&mut self, volume_id: &str) -> Result<Box<dyn Engine>> {
        let volume = self
            .disk
            .volumes
            .iter()
            .find(|v| v.id == volume_id)
            .ok_or_else(|| {
                Error::new(ErrorKind::NotFound, "opening volume for writing")
                    .with_path(volume_id.to_owned())
            })?;
        let name = format!("{} {}", self.writable.device.describe(), volume.id);
        // Devices are shared, never sent across threads (rescue_io's design).
        #[allow(clippy::arc_with_non_send_sync)]
        let dev: Arc<dyn BlockWrite> = Arc::new(MappedDevice::new(
            self.writable.device.clone(),
            volume.extents.clone(),
            name.clone(),
        )?);
        let fstype = volume.probe.fstype.as_deref().unwrap_or("");
        match fstype {
            "ext2" | "ext3" | "ext4" => {
                if rescue_ext4::needs_recovery(&*dev)? {
                    let report = rescue_ext4::recover_in_place(&*dev)?;
                    tracing::info!(
                        volume = volume_id,
                        transactions = report.transactions,
                        blocks = report.blocks_written,
                        "journal replayed into the device"
                    );
                    self.replayed.insert(volume_id.to_owned());
                }
                engine::ext::open(dev, &name)
            }
            "vfat" => engine::fat::open(dev, &name),
            "" => Err(
                Error::new(ErrorKind::Unsupported, "opening volume for writing")
                    .with_path(name)
                    .with_detail("no filesystem was recognised on this volume"),
            ),
            other => Err(
                Error::new(ErrorKind::Unsupported, "opening volume for writing")
                    .with_path(name)
                    .with_detail(format!(
                        "{other} is not written by the image engine (ext2/3/4 and FAT are); \
                     mount the volume on a rescue VM and change it there"
                    )),
            ),
        }
    }
}

/// Runs `op` on an engine at the places [`locate`] found.
fn run(engine: &mut dyn Engine, op: &Op, places: &[Place]) -> Result<()> {
    match (op, places) {
        (Op::WriteFile { data, set, .. }, [Place::Existing(p)]) => engine.write_file(p, data, *set),
        (Op::WriteFile { data, create, .. }, [Place::Entry { dir, name }]) => {
            engine.create_file(dir, name, data, *create)
        }
        (Op::Chmod { mode, .. }, [Place::Existing(p)]) => engine.chmod(p, *mode),
        (Op::Chown { uid, gid, .. }, [Place::Existing(p)]) => engine.chown(p, *uid, *gid),
        (Op::Mkdir { attrs, .. }, [Place::Entry { dir, name }]) => engine.mkdir(dir, name, *attrs),
        (
            Op::Symlink {
                target, uid, gid, ..
            },
            [Place::Entry { dir, name }],
        ) => engine.symlink(dir, name, target, *uid, *gid),
        (Op::Remove { .. }, [Place::Entry { dir, name }]) => engine.remove(dir, name),
        (
            Op::Rename { .. },
            [Place::Entry {
                dir: from_dir,
                name: from_name,
            }, Place::Entry {
                dir: to_dir,
                name: to_name,
            }],
        ) => engine.rename(from_dir, from_name, to_dir, to_name),
        _ => Err(Error::new(ErrorKind::Unsupported, "applying")
            .with_detail(format!("internal: no plan for {}", op.describe()))),
    }
}

fn not_found(e: &Error) -> bool {
    e.kind() == ErrorKind::NotFound
}

/// The parent directory of `path` (symlinks followed) and the final name.
fn entry(guest: &Guest, path: &GuestPath) -> Result<(usize, GuestPath, Vec<u8>)> {
    let (Some(parent), Some(name)) = (path.parent(), path.file_name()) else {
        return Err(Error::new(ErrorKind::Unsupported, "resolving")
            .with_path(path.to_string())
            .with_detail("the guest's root directory cannot be created, removed or renamed"));
    };
    if name == b"." || name == b".." {
        return Err(Error::new(ErrorKind::Unsupported, "resolving")
            .with_path(path.to_string())
            .with_detail("the last component must be a name, not . or .."));
    }
    let dir = guest.resolve(&parent, true)?;
    if !dir.metadata.is_dir() {
        return Err(Error::new(ErrorKind::NotFound, "resolving")
            .with_path(path.to_string())
            .with_detail(format!("{} is not a directory", dir.canonical)));
    }
    Ok((dir.mount, dir.relative, name.to_vec()))
}

/// Finds, with the read side, the volume and the places `op` acts on.
fn locate(guest: &Guest, op: &Op) -> Result<(String, Vec<Place>)> {
    let volume = |mount: usize| guest.mounts()[mount].volume_id.clone();
    match op {
        Op::WriteFile { path, .. } => match guest.resolve(path, true) {
            Ok(r) if r.metadata.is_file() => {
                Ok((volume(r.mount), vec![Place::Existing(r.relative)]))
            }
            Ok(r) => Err(Error::new(ErrorKind::Unsupported, "writing")
                .with_path(path.to_string())
                .with_detail(
                    format!(
                        "{} is a {:?}, not a regular file",
                        r.canonical, r.metadata.file_type
                    )
                    .to_lowercase(),
                )),
            Err(e) if not_found(&e) => {
                if let Ok(link) = guest.resolve(path, false) {
                    return Err(Error::new(ErrorKind::NotFound, "writing")
                        .with_path(path.to_string())
                        .with_detail(format!(
                            "{} is a symlink whose target does not exist; write to the target's path, or remove the link first",
                            link.canonical
                        )));
                }
                let (mount, dir, name) = entry(guest, path)?;
                Ok((volume(mount), vec![Place::Entry { dir, name }]))
            }
            Err(e) => Err(e),
        },
        Op::Chmod { path, .. } | Op::Chown { path, .. } => {
            let r = guest.resolve(path, true)?;
            Ok((volume(r.mount), vec![Place::Existing(r.relative)]))
        }
        Op::Mkdir { path, .. } | Op::Symlink { path, .. } => {
            match guest.resolve(path, false) {
                Ok(r) => {
                    return Err(Error::new(ErrorKind::Unsupported, "creating")
                        .with_path(path.to_string())
                        .with_detail(format!("{} already exists", r.canonical)))
                }
                Err(e) if not_found(&e) => {}
                Err(e) => return Err(e),
            }
            let (mount, dir, name) = entry(guest, path)?;
            Ok((volume(mount), vec![Place::Entry { dir, name }]))
        }
        Op::Remove { path } => {
            let (mount, dir, name) = entry(guest, path)?;
            let target = guest.resolve(path, false)?;
            if target.mount != mount {
                return Err(Error::new(ErrorKind::Unsupported, "removing")
                    .with_path(path.to_string())
                    .with_detail("it is a mount point of another guest filesystem"));
            }
            Ok((volume(mount), vec![Place::Entry { dir, name }]))
        }
        Op::Rename { from, to } => {
            let (m1, d1, n1) = entry(guest, from)?;
            let (m2, d2, n2) = entry(guest, to)?;
            guest.resolve(from, false)?;
            if guest.mounts()[m1].volume_id != guest.mounts()[m2].volume_id {
                return Err(Error::new(ErrorKind::Unsupported, "renaming")
                    .with_path(from.to_string())
                    .with_detail(format!(
                        "{to} is on another filesystem; copy it with `get` and `put` instead"
                    )));
            }
            Ok((
                volume(m1),
                vec![
                    Place::Entry { dir: d1, name: n1 },
                    Place::Entry { dir: d2, name: n2 },
                ],
            ))
        }
    }
}
