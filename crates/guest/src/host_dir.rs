//! A guest tree the operator already mounted (`rescue-disk check /mnt/vm1`).
//!
//! Every lookup is an `openat2(2)` relative to the tree's root with
//! `RESOLVE_IN_ROOT | RESOLVE_NO_SYMLINKS | RESOLVE_NO_MAGICLINKS`: the
//! kernel refuses to follow any symlink, so `..` cannot climb above the root
//! and an absolute symlink in the guest can never reach a host file.
//! [`crate::Guest`] follows the guest's symlinks itself, inside the guest,
//! exactly as it does for filesystems inside images.
//!
//! Must never: open a path any other way than through `openat2` below the
//! root, follow a symlink in the kernel, or write.

use std::fs::File;
use std::io::Read;
use std::os::fd::{AsFd, OwnedFd};
use std::path::Path;

use nix::errno::Errno;
use nix::fcntl::{openat2, OFlag, OpenHow, ResolveFlag};
use nix::sys::stat::{fstat, FileStat, Mode, SFlag};
use rescue_io::{Error, ErrorKind, Result};

use crate::fs::{DirEntry, FileType, GuestFs, Metadata, MAX_LINK_TARGET_BYTES};
use crate::path::GuestPath;

/// A directory tree on the host, read as a guest filesystem.
#[derive(Debug)]
pub struct HostDirFs {
    root: OwnedFd,
    name: String,
    volume_id: String,
}

fn errno_error(op: &str, path: String, e: Errno) -> Error {
    Error::io(op, std::io::Error::from_raw_os_error(e as i32)).with_path(path)
}

impl HostDirFs {
    /// Opens `dir` as the root of a guest tree.
    pub fn open(dir: &Path) -> Result<Self> {
        let name = dir.display().to_string();
        let root = nix::fcntl::open(
            dir,
            OFlag::O_PATH | OFlag::O_DIRECTORY | OFlag::O_CLOEXEC,
            Mode::empty(),
        )
        .map_err(|e| errno_error("opening the guest tree", name.clone(), e))?;
        Ok(HostDirFs {
            root,
            volume_id: "tree".to_owned(),
            name,
        })
    }

    fn rel(&self, path: &GuestPath) -> Vec<u8> {
        // `openat2` wants a relative path; "." names the root itself.
        let bytes = path
            .as_bytes()
            .strip_prefix(b"/")
            .unwrap_or(path.as_bytes());
        if bytes.is_empty() {
            b".".to_vec()
        } else {
            bytes.to_vec()
        }
    }

    fn open_at(&self, path: &GuestPath, flags: OFlag, op: &str) -> Result<OwnedFd> {
        let rel = self.rel(path);
        let how = OpenHow::new()
            .flags(flags | OFlag::O_NOFOLLOW | OFlag::O_CLOEXEC)
            .resolve(
                ResolveFlag::RESOLVE_IN_ROOT
                    | ResolveFlag::RESOLVE_NO_SYMLINKS
                    | ResolveFlag::RESOLVE_NO_MAGICLINKS,
            );
        openat2(self.root.as_fd(), rel.as_slice(), how).map_err(|e| {
            let err = errno_error(op, format!("{path} in {}", self.name), e);
            match e {
                // A symlink in a middle component: the guest resolver should
                // have followed it; say so rather than "not found".
                Errno::ELOOP => err.with_detail("a symlink was met where none was expected"),
                Errno::ENOSYS => err.with_detail("this kernel has no openat2(2) (Linux 5.6 or newer is needed for mounted trees)"),
                _ => err,
            }
        })
    }
}

fn metadata_of(st: &FileStat) -> Metadata {
    let kind = SFlag::from_bits_truncate(st.st_mode & SFlag::S_IFMT.bits());
    let file_type = match kind {
        SFlag::S_IFDIR => FileType::Directory,
        SFlag::S_IFLNK => FileType::Symlink,
        SFlag::S_IFCHR => FileType::CharDevice,
        SFlag::S_IFBLK => FileType::BlockDevice,
        SFlag::S_IFIFO => FileType::Fifo,
        SFlag::S_IFSOCK => FileType::Socket,
        _ => FileType::Regular,
    };
    Metadata {
        file_type,
        mode: st.st_mode & 0o7777,
        uid: st.st_uid,
        gid: st.st_gid,
        size_in_bytes: u64::try_from(st.st_size).unwrap_or(0),
        modified_unix_seconds: Some(st.st_mtime),
    }
}

impl GuestFs for HostDirFs {
    fn fs_type(&self) -> &str {
        "host-directory"
    }

    fn volume_id(&self) -> &str {
        &self.volume_id
    }

    fn symlink_metadata(&self, path: &GuestPath) -> Result<Metadata> {
        let fd = self.open_at(path, OFlag::O_PATH, "looking up")?;
        let st = fstat(&fd).map_err(|e| errno_error("looking up", path.to_string(), e))?;
        Ok(metadata_of(&st))
    }

    fn read_dir(&self, path: &GuestPath, max_entries: usize) -> Result<Vec<DirEntry>> {
        let fd = self.open_at(path, OFlag::O_RDONLY | OFlag::O_DIRECTORY, "listing")?;
        let mut dir =
            nix::dir::Dir::from_fd(fd).map_err(|e| errno_error("listing", path.to_string(), e))?;
        let mut out = Vec::new();
        for entry in dir.iter() {
            let entry = entry.map_err(|e| errno_error("listing", path.to_string(), e))?;
            let name = entry.file_name().to_bytes();
            if name == b"." || name == b".." {
                continue;
            }
            if out.len() >= max_entries {
                return Err(Error::new(ErrorKind::Unsupported, "listing")
                    .with_path(path.to_string())
                    .with_detail(format!("more than {max_entries} entries")));
            }
            let file_type = entry.file_type().map(|t| match t {
                nix::dir::Type::Directory => FileType::Directory,
                nix::dir::Type::Symlink => FileType::Symlink,
                nix::dir::Type::CharacterDevice => FileType::CharDevice,
                nix::dir::Type::BlockDevice => FileType::BlockDevice,
                nix::dir::Type::Fifo => FileType::Fifo,
                nix::dir::Type::Socket => FileType::Socket,
                nix::dir::Type::File => FileType::Regular,
            });
            out.push(DirEntry {
                name: name.to_vec(),
                file_type,
            });
        }
        Ok(out)
    }

    fn read_link(&self, path: &GuestPath) -> Result<Vec<u8>> {
        let fd = self.open_at(path, OFlag::O_PATH, "reading link")?;
        // readlinkat(fd, "") reads the link an O_PATH descriptor refers to.
        let target = nix::fcntl::readlinkat(fd.as_fd(), "")
            .map_err(|e| errno_error("reading link", path.to_string(), e))?;
        let bytes = std::os::unix::ffi::OsStrExt::as_bytes(target.as_os_str()).to_vec();
        if bytes.len() as u64 > MAX_LINK_TARGET_BYTES {
            return Err(
                Error::corrupt("reading link", "link target is longer than PATH_MAX")
                    .with_path(path.to_string()),
            );
        }
        Ok(bytes)
    }

    fn read_file(&self, path: &GuestPath, max_bytes: u64) -> Result<Vec<u8>> {
        let fd = self.open_at(path, OFlag::O_RDONLY, "reading")?;
        let st = fstat(&fd).map_err(|e| errno_error("reading", path.to_string(), e))?;
        let meta = metadata_of(&st);
        if !meta.is_file() {
            return Err(Error::new(ErrorKind::NotADisk, "reading")
                .with_path(path.to_string())
                .with_detail("not a regular file"));
        }
        if meta.size_in_bytes > max_bytes {
            return Err(crate::fs::too_large(
                &self.volume_id,
                path,
                meta.size_in_bytes,
                max_bytes,
                "host",
            ));
        }
        let mut data = Vec::with_capacity(meta.size_in_bytes as usize);
        // The file may grow while we read: never take more than the cap.
        File::from(fd)
            .take(max_bytes)
            .read_to_end(&mut data)
            .map_err(|e| Error::io("reading", e).with_path(path.to_string()))?;
        Ok(data)
    }
}
