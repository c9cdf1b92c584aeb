//! The guest view: a mount table of guest filesystems and path resolution
//! across it.
//!
//! Every path is resolved here, component by component, inside the guest:
//! symlinks (relative or absolute) are followed against the guest's own
//! mount table, `..` never climbs above the guest root, and a chain of more
//! than [`MAX_SYMLINK_HOPS`] links is an error. Nothing here ever looks at
//! the host's filesystem.

use std::rc::Rc;

use rescue_io::{Error, ErrorKind, Result};

use crate::fs::{DirEntry, GuestFs, Metadata, MAX_LINK_TARGET_BYTES, MAX_SYMLINK_HOPS};
use crate::path::GuestPath;

/// Components processed while resolving one path, symlink expansions
/// included; bounds the work on pathological link trees.
const MAX_RESOLVE_STEPS: usize = 4096;

/// One mounted filesystem.
#[derive(Debug, Clone)]
pub struct Mount {
    /// Where it is mounted in the guest.
    pub mount_point: GuestPath,
    /// The volume id (`p2`, `lvm/vg0/root`).
    pub volume_id: String,
    /// The filesystem.
    pub fs: Rc<dyn GuestFs>,
}

/// A resolved guest path.
#[derive(Debug, Clone)]
pub struct Resolved {
    /// The path with every symlink, `.` and `..` resolved.
    pub canonical: GuestPath,
    /// Index of the mount holding it in [`Guest::mounts`].
    pub mount: usize,
    /// The path inside that mount's filesystem.
    pub relative: GuestPath,
    /// `lstat` of the final component.
    pub metadata: Metadata,
}

/// The guest's filesystems assembled into one tree.
#[derive(Debug, Clone, Default)]
pub struct Guest {
    mounts: Vec<Mount>,
}

impl Guest {
    /// A guest with no filesystems: every lookup fails with "not found".
    pub fn empty() -> Guest {
        Guest { mounts: Vec::new() }
    }

    /// A guest whose root filesystem is `fs`.
    pub fn with_root(fs: Rc<dyn GuestFs>) -> Guest {
        let volume_id = fs.volume_id().to_owned();
        Guest {
            mounts: vec![Mount {
                mount_point: GuestPath::root(),
                volume_id,
                fs,
            }],
        }
    }

    /// Mounts `fs` at `mount_point`. A later mount on the same point hides
    /// the earlier one, as in Linux.
    pub fn mount(&mut self, mount_point: GuestPath, fs: Rc<dyn GuestFs>) -> Result<()> {
        if !mount_point.is_normal() {
            return Err(Error::new(ErrorKind::Unsupported, "mounting")
                .with_path(mount_point.to_string())
                .with_detail("mount points with '.' or '..' components are not supported"));
        }
        let volume_id = fs.volume_id().to_owned();
        self.mounts.push(Mount {
            mount_point,
            volume_id,
            fs,
        });
        Ok(())
    }

    /// The mounts, in the order they were added.
    pub fn mounts(&self) -> &[Mount] {
        &self.mounts
    }

    /// The mount holding `path` (already canonical): the longest mount point
    /// that is a prefix, the latest one on ties.
    fn mount_for(&self, path: &GuestPath) -> Option<(usize, GuestPath)> {
        let mut best: Option<(usize, usize)> = None;
        for (i, m) in self.mounts.iter().enumerate() {
            if path.starts_with(&m.mount_point) {
                let depth = m.mount_point.components().count();
                if best.is_none_or(|(_, d)| depth >= d) {
                    best = Some((i, depth));
                }
            }
        }
        let (i, _) = best?;
        let rel = path.strip_prefix(&self.mounts[i].mount_point)?;
        Some((i, rel))
    }

    fn lstat_canonical(&self, path: &GuestPath) -> Result<(usize, GuestPath, Metadata)> {
        let Some((i, rel)) = self.mount_for(path) else {
            return Err(Error::new(ErrorKind::NotFound, "resolving")
                .with_path(path.to_string())
                .with_detail("no guest filesystem is mounted there"));
        };
        let meta = self.mounts[i].fs.symlink_metadata(&rel)?;
        Ok((i, rel, meta))
    }

    /// Resolves `path` inside the guest. With `follow_final`, a final
    /// symlink is followed too (`stat`); otherwise it is returned (`lstat`).
    pub fn resolve(&self, path: &GuestPath, follow_final: bool) -> Result<Resolved> {
        let mut done: Vec<Vec<u8>> = Vec::new();
        let mut todo: Vec<Vec<u8>> = path.components().rev().map(|c| c.to_vec()).collect();
        let mut hops = 0usize;
        let mut steps = 0usize;
        let mut last_link: Option<(GuestPath, Vec<u8>)> = None;
        let root_meta = || -> Result<Resolved> {
            let (mount, relative, metadata) = self.lstat_canonical(&GuestPath::root())?;
            Ok(Resolved {
                canonical: GuestPath::root(),
                mount,
                relative,
                metadata,
            })
        };
        let mut current: Option<Resolved> = None;
        while let Some(comp) = todo.pop() {
            steps += 1;
            if steps > MAX_RESOLVE_STEPS {
                return Err(Error::new(ErrorKind::Corrupt, "resolving")
                    .with_path(path.to_string())
                    .with_detail("the path expands to too many components through symlinks"));
            }
            if comp == b"." {
                continue;
            }
            if comp == b".." {
                done.pop();
                current = None;
                continue;
            }
            let candidate = GuestPath::new(
                done.iter()
                    .chain(std::iter::once(&comp))
                    .cloned()
                    .collect::<Vec<_>>()
                    .join(&b'/'),
            );
            let (mount, relative, metadata) = match self.lstat_canonical(&candidate) {
                Ok(x) => x,
                Err(e) if e.kind() == ErrorKind::NotFound => {
                    let mut err = Error::new(ErrorKind::NotFound, "resolving")
                        .with_path(format!("{path} in the guest"));
                    err = match &last_link {
                        Some((link, target)) => err.with_detail(format!(
                            "{link} is a symlink to {}, and {candidate} does not exist in the guest",
                            String::from_utf8_lossy(target)
                        )),
                        None => err.with_detail(format!("{candidate} does not exist")),
                    };
                    return Err(err);
                }
                Err(e) => return Err(e),
            };
            let is_last = todo.is_empty();
            if metadata.is_symlink() && (!is_last || follow_final) {
                hops += 1;
                if hops > MAX_SYMLINK_HOPS {
                    return Err(Error::new(ErrorKind::Corrupt, "resolving")
                        .with_path(format!("{path} in the guest"))
                        .with_detail(format!(
                            "more than {MAX_SYMLINK_HOPS} symlinks to follow (a symlink loop?), last at {candidate}"
                        )));
                }
                let target = self.mounts[mount].fs.read_link(&relative)?;
                if target.is_empty() || target.len() as u64 > MAX_LINK_TARGET_BYTES {
                    return Err(Error::new(ErrorKind::Corrupt, "resolving")
                        .with_path(format!("{candidate} in the guest"))
                        .with_detail("the symlink target is empty or too long; the filesystem is probably corrupt"));
                }
                if target.first() == Some(&b'/') {
                    // Absolute: from the guest root, never the host's.
                    done.clear();
                }
                for c in target.split(|&b| b == b'/').filter(|c| !c.is_empty()).rev() {
                    todo.push(c.to_vec());
                }
                last_link = Some((candidate, target));
                current = None;
                continue;
            }
            if !is_last && !metadata.is_dir() {
                return Err(Error::new(ErrorKind::NotFound, "resolving")
                    .with_path(format!("{path} in the guest"))
                    .with_detail(format!("{candidate} is not a directory")));
            }
            done.push(comp);
            current = Some(Resolved {
                canonical: candidate,
                mount,
                relative,
                metadata,
            });
        }
        match current {
            Some(r) => Ok(r),
            None => {
                // Ended on the root, or on a `..`/symlink that led to a
                // directory already walked: look the canonical path up again.
                let canonical = GuestPath::new(done.join(&b'/'));
                if canonical.is_root() {
                    return root_meta();
                }
                let (mount, relative, metadata) = self.lstat_canonical(&canonical)?;
                Ok(Resolved {
                    canonical,
                    mount,
                    relative,
                    metadata,
                })
            }
        }
    }

    /// `stat`: metadata after following every symlink.
    pub fn metadata(&self, path: &GuestPath) -> Result<Metadata> {
        Ok(self.resolve(path, true)?.metadata)
    }

    /// `lstat`: metadata of the final component itself.
    pub fn symlink_metadata(&self, path: &GuestPath) -> Result<Metadata> {
        Ok(self.resolve(path, false)?.metadata)
    }

    /// True when `path` resolves; other errors (corruption, loops) propagate.
    pub fn exists(&self, path: &GuestPath) -> Result<bool> {
        match self.resolve(path, true) {
            Ok(_) => Ok(true),
            Err(e) if e.kind() == ErrorKind::NotFound => Ok(false),
            Err(e) => Err(e),
        }
    }

    /// Lists directory `path` (following symlinks), at most `max_entries`.
    pub fn read_dir(&self, path: &GuestPath, max_entries: usize) -> Result<Vec<DirEntry>> {
        let r = self.resolve(path, true)?;
        if !r.metadata.is_dir() {
            return Err(Error::new(ErrorKind::NotFound, "listing")
                .with_path(format!("{path} in the guest"))
                .with_detail("not a directory"));
        }
        let mut entries = self.mounts[r.mount].fs.read_dir(&r.relative, max_entries)?;
        entries.sort_by(|a, b| a.name.cmp(&b.name));
        Ok(entries)
    }

    /// The target of symlink `path` (its parents are resolved, it is not).
    pub fn read_link(&self, path: &GuestPath) -> Result<Vec<u8>> {
        let r = self.resolve(path, false)?;
        self.mounts[r.mount].fs.read_link(&r.relative)
    }

    /// Reads regular file `path` (following symlinks), at most `max_bytes`.
    pub fn read_file(&self, path: &GuestPath, max_bytes: u64) -> Result<Vec<u8>> {
        let r = self.resolve(path, true)?;
        self.mounts[r.mount].fs.read_file(&r.relative, max_bytes)
    }

    /// Which volume and in-volume path `path` resolves to.
    pub fn locate(&self, path: &GuestPath) -> Result<(String, GuestPath)> {
        let r = self.resolve(path, true)?;
        Ok((self.mounts[r.mount].volume_id.clone(), r.relative))
    }

    /// The guest path under which `relative` on `volume_id` is visible, if
    /// that volume is mounted (the first, outermost mount of it).
    pub fn guest_path_of(&self, volume_id: &str, relative: &GuestPath) -> Option<GuestPath> {
        let m = self.mounts.iter().find(|m| m.volume_id == volume_id)?;
        Some(m.mount_point.join(relative.as_bytes()))
    }
}
