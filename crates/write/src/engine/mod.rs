//! The write engines behind one interface: paths are inside the volume's
//! filesystem, already resolved by the read side (no symlink in any
//! directory component).

pub(crate) mod ext;
pub(crate) mod fat;

use rescue_guest::GuestPath;
use rescue_io::Result;

use crate::ops::NewFile;

/// The operations one filesystem engine offers.
pub(crate) trait Engine {
    /// Replaces the contents of the existing regular file `path`, keeping
    /// its inode; `set` also changes its mode and owner.
    fn write_file(&mut self, path: &GuestPath, data: &[u8], set: Option<NewFile>) -> Result<()>;
    /// Creates regular file `name` in directory `dir`.
    fn create_file(
        &mut self,
        dir: &GuestPath,
        name: &[u8],
        data: &[u8],
        attrs: NewFile,
    ) -> Result<()>;
    /// `chmod`.
    fn chmod(&mut self, path: &GuestPath, mode: u32) -> Result<()>;
    /// `chown`; `None` keeps the current id.
    fn chown(&mut self, path: &GuestPath, uid: Option<u32>, gid: Option<u32>) -> Result<()>;
    /// `mkdir`.
    fn mkdir(&mut self, dir: &GuestPath, name: &[u8], attrs: NewFile) -> Result<()>;
    /// `ln -s`.
    fn symlink(
        &mut self,
        dir: &GuestPath,
        name: &[u8],
        target: &[u8],
        uid: u32,
        gid: u32,
    ) -> Result<()>;
    /// `rm` / `rmdir`.
    fn remove(&mut self, dir: &GuestPath, name: &[u8]) -> Result<()>;
    /// `mv` inside this filesystem.
    fn rename(
        &mut self,
        from_dir: &GuestPath,
        from_name: &[u8],
        to_dir: &GuestPath,
        to_name: &[u8],
    ) -> Result<()>;
    /// Flushes and releases the filesystem.
    fn close(self: Box<Self>) -> Result<()>;
}
