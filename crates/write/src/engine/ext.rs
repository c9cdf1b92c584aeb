//! The ext2/3/4 engine, over `rescue_ext2fs::Fs` (e2fsprogs' libext2fs).
//! Paths are looked up without following symlinks (the read side resolved
//! them already); a symlink met on the way is an error from the binding.

use std::sync::Arc;

use rescue_ext2fs::{ErrorKind as ExtKind, Fs, Ino};
use rescue_guest::GuestPath;
use rescue_io::{BlockWrite, Error, ErrorKind, Result};

use super::Engine;
use crate::ops::NewFile;

struct Ext {
    fs: Fs,
    name: String,
}

/// The binding's error as the block layer's (same one-line message).
fn conv(e: rescue_ext2fs::Error) -> Error {
    let kind = match e.kind() {
        ExtKind::NotFound | ExtKind::NotADirectory => ErrorKind::NotFound,
        ExtKind::Corrupt => ErrorKind::Corrupt,
        ExtKind::Device => ErrorKind::Io,
        ExtKind::AlreadyExists | ExtKind::DirectoryNotEmpty => ErrorKind::Conflict,
        _ => ErrorKind::Unsupported,
    };
    Error::new(kind, e.to_string())
}

/// Opens the ext2/3/4 filesystem on `dev` (its journal already replayed).
pub(crate) fn open(dev: Arc<dyn BlockWrite>, name: &str) -> Result<Box<dyn Engine>> {
    let fs = Fs::open(dev, name).map_err(conv)?;
    for w in fs.warnings() {
        tracing::warn!("{name}: {w}");
    }
    Ok(Box::new(Ext {
        fs,
        name: name.to_owned(),
    }))
}

/// A mode as the binding takes it.
fn mode16(mode: u32) -> Result<u16> {
    u16::try_from(mode)
        .ok()
        .filter(|m| *m <= 0o7777)
        .ok_or_else(|| {
            Error::new(ErrorKind::Unsupported, "setting mode")
                .with_detail(format!("{mode:o} is not a permission mode (0 to 7777)"))
        })
}

impl Ext {
    fn ino(&mut self, path: &GuestPath) -> Result<Ino> {
        self.fs
            .lookup(path.as_bytes())
            .map_err(conv)?
            .ok_or_else(|| {
                Error::new(ErrorKind::NotFound, "looking up")
                    .with_path(format!("{path} on {}", self.name))
                    .with_detail("no such file or directory")
            })
    }
}

impl Engine for Ext {
    fn write_file(&mut self, path: &GuestPath, data: &[u8], set: Option<NewFile>) -> Result<()> {
        let ino = self.ino(path)?;
        self.fs.write_file(ino, data).map_err(conv)?;
        if let Some(a) = set {
            self.fs.set_mode(ino, mode16(a.mode)?).map_err(conv)?;
            self.fs.set_owner(ino, a.uid, a.gid).map_err(conv)?;
        }
        Ok(())
    }

    fn create_file(
        &mut self,
        dir: &GuestPath,
        name: &[u8],
        data: &[u8],
        attrs: NewFile,
    ) -> Result<()> {
        let parent = self.ino(dir)?;
        let mode = mode16(attrs.mode)?;
        self.fs
            .create_file(parent, name, data, mode, attrs.uid, attrs.gid)
            .map_err(conv)?;
        Ok(())
    }

    fn chmod(&mut self, path: &GuestPath, mode: u32) -> Result<()> {
        let ino = self.ino(path)?;
        let mode = mode16(mode)?;
        self.fs.set_mode(ino, mode).map_err(conv)
    }

    fn chown(&mut self, path: &GuestPath, uid: Option<u32>, gid: Option<u32>) -> Result<()> {
        let ino = self.ino(path)?;
        let st = self.fs.stat(ino).map_err(conv)?;
        self.fs
            .set_owner(ino, uid.unwrap_or(st.uid), gid.unwrap_or(st.gid))
            .map_err(conv)
    }

    fn mkdir(&mut self, dir: &GuestPath, name: &[u8], attrs: NewFile) -> Result<()> {
        let parent = self.ino(dir)?;
        let mode = mode16(attrs.mode)?;
        self.fs
            .mkdir(parent, name, mode, attrs.uid, attrs.gid)
            .map_err(conv)?;
        Ok(())
    }

    fn symlink(
        &mut self,
        dir: &GuestPath,
        name: &[u8],
        target: &[u8],
        uid: u32,
        gid: u32,
    ) -> Result<()> {
        let parent = self.ino(dir)?;
        self.fs
            .symlink(parent, name, target, uid, gid)
            .map_err(conv)?;
        Ok(())
    }

    fn remove(&mut self, dir: &GuestPath, name: &[u8]) -> Result<()> {
        let parent = self.ino(dir)?;
        self.fs.unlink(parent, name).map_err(conv)
    }

    fn rename(
        &mut self,
        from_dir: &GuestPath,
        from_name: &[u8],
        to_dir: &GuestPath,
        to_name: &[u8],
    ) -> Result<()> {
        let a = self.ino(from_dir)?;
        let b = self.ino(to_dir)?;
        self.fs.rename(a, from_name, b, to_name).map_err(conv)
    }

    fn close(self: Box<Self>) -> Result<()> {
        self.fs.close().map_err(conv)
    }
}
