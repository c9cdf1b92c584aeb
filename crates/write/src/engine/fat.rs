//! The FAT engine (the EFI system partition), over
//! `rescue_guest::fat_write::FatWriter`. FAT has no modes, owners or
//! symlinks: those operations are refused with the reason.

use std::sync::Arc;

use rescue_guest::fat_write::FatWriter;
use rescue_guest::GuestPath;
use rescue_io::{BlockWrite, Error, ErrorKind, Result};

use super::Engine;
use crate::ops::NewFile;

struct Fat {
    fs: FatWriter,
    name: String,
}

/// Opens the FAT filesystem on `dev`.
pub(crate) fn open(dev: Arc<dyn BlockWrite>, name: &str) -> Result<Box<dyn Engine>> {
    Ok(Box::new(Fat {
        fs: FatWriter::open(dev, name)?,
        name: name.to_owned(),
    }))
}

impl Fat {
    fn refuse(&self, path: &GuestPath, what: &str) -> Error {
        Error::new(ErrorKind::Unsupported, "writing FAT")
            .with_path(format!("{path} on {}", self.name))
            .with_detail(format!(
                "FAT (the EFI system partition) has no {what}; the mount options in the guest's fstab decide them"
            ))
    }
}

impl Engine for Fat {
    fn write_file(&mut self, path: &GuestPath, data: &[u8], set: Option<NewFile>) -> Result<()> {
        if set.is_some() {
            return Err(self.refuse(path, "file modes or owners"));
        }
        self.fs.write_file(path.as_bytes(), data)
    }

    fn create_file(
        &mut self,
        dir: &GuestPath,
        name: &[u8],
        data: &[u8],
        _attrs: NewFile,
    ) -> Result<()> {
        self.fs.write_file(dir.join(name).as_bytes(), data)
    }

    fn chmod(&mut self, path: &GuestPath, _mode: u32) -> Result<()> {
        Err(self.refuse(path, "file modes"))
    }

    fn chown(&mut self, path: &GuestPath, _uid: Option<u32>, _gid: Option<u32>) -> Result<()> {
        Err(self.refuse(path, "owners"))
    }

    fn mkdir(&mut self, dir: &GuestPath, name: &[u8], _attrs: NewFile) -> Result<()> {
        self.fs.create_dir(dir.join(name).as_bytes())
    }

    fn symlink(
        &mut self,
        dir: &GuestPath,
        name: &[u8],
        _target: &[u8],
        _uid: u32,
        _gid: u32,
    ) -> Result<()> {
        Err(self.refuse(&dir.join(name), "symbolic links"))
    }

    fn remove(&mut self, dir: &GuestPath, name: &[u8]) -> Result<()> {
        self.fs.remove(dir.join(name).as_bytes())
    }

    fn rename(
        &mut self,
        from_dir: &GuestPath,
        from_name: &[u8],
        to_dir: &GuestPath,
        to_name: &[u8],
    ) -> Result<()> {
        self.fs.rename(
            from_dir.join(from_name).as_bytes(),
            to_dir.join(to_name).as_bytes(),
        )
    }

    fn close(self: Box<Self>) -> Result<()> {
        self.fs.close()
    }
}
