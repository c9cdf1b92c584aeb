//! The guest: which volume is the root, what OS it is, what boots it.
//!
//! Reads guest filesystems (ext2/3/4 through `ext4-view`, FAT through
//! `fatfs`) via the block layer only. Guest data is hostile: sizes are checked
//! before anything is read into memory, symlinks are resolved inside the
//! guest, and every identifier in the guest's fstab is resolved against the
//! volumes of *this* disk, never the host's devices. Nothing here writes,
//! except [`fat_write`], the FAT engine of the write side, which writes only
//! to the `BlockWrite` it is handed (the ESP volume of a write session).
//!
//! Entry points: [`assemble`] builds the [`Guest`] view (root + fstab mounts)
//! that later checks read through; [`inspect`] identifies the guest and
//! returns a serialisable [`GuestReport`].

mod assemble;
pub mod boot;
mod ext4;
mod ext4_raw;
mod fat;
pub mod fat_write;
mod fs;
pub mod fstab;
#[doc(hidden)]
pub mod fuzz;
mod guest;
mod host_dir;
pub mod kernels;
mod path;
mod volume_fs;

use rescue_config::os_release::{Family, OsRelease};
use rescue_config::shell::{ShellDoc, ShellOptions};
use rescue_io::{Device, ErrorKind, Result};
use rescue_volumes::{Diagnostic, Disk};
use serde::Serialize;

pub use assemble::{assemble, assemble_tree, Assembly, MountInfo, RootCandidate, RootChoice};
pub use boot::Bootloader;
pub use ext4::Ext4Fs;
pub use fat::FatFs;
pub use fs::{
    DirEntry, FileType, GuestFs, Metadata, MAX_CONFIG_FILE_BYTES, MAX_DIR_ENTRIES,
    MAX_LINK_TARGET_BYTES, MAX_SYMLINK_HOPS,
};
pub use fstab::{FstabLine, Resolution};
pub use guest::{Guest, Mount, Resolved};
pub use host_dir::HostDirFs;
pub use kernels::Kernel;
pub use path::GuestPath;
pub use volume_fs::{open_volume, readable_fstype, VolumeFs};

/// Version of the [`GuestReport`] JSON shape; bump on any incompatible change.
pub const REPORT_SCHEMA_VERSION: u32 = 1;

/// What `inspect` found out about the guest.
#[derive(Debug, Clone, Serialize, schemars::JsonSchema)]
pub struct GuestReport {
    /// [`REPORT_SCHEMA_VERSION`].
    pub schema_version: u32,
    /// The root filesystem, if one was found.
    pub root: Option<RootChoice>,
    /// Every volume considered as the root.
    pub root_candidates: Vec<RootCandidate>,
    /// The distribution, from os-release.
    pub os: Option<OsInfo>,
    /// `/etc/hostname`.
    pub hostname: Option<String>,
    /// The guest's `/etc/fstab`, each line resolved against this disk.
    pub fstab: Vec<FstabLine>,
    /// The guest's filesystems as assembled (root and fstab sub-mounts).
    pub mounts: Vec<MountInfo>,
    /// Installed kernels, newest first.
    pub kernels: Vec<Kernel>,
    /// How the disk boots.
    pub bootloader: Bootloader,
    /// Non-fatal problems found while identifying the guest.
    pub diagnostics: Vec<Diagnostic>,
}

/// The distribution as os-release describes it.
#[derive(Debug, Clone, Serialize, schemars::JsonSchema)]
pub struct OsInfo {
    /// Guest path of the file read.
    pub source: String,
    /// `ID` (`linux` when unset).
    pub id: String,
    /// `ID_LIKE`, split.
    pub id_like: Vec<String>,
    /// `NAME`.
    pub name: Option<String>,
    /// `PRETTY_NAME`.
    pub pretty_name: Option<String>,
    /// `VERSION_ID`.
    pub version_id: Option<String>,
    /// `VERSION_CODENAME`.
    pub version_codename: Option<String>,
    /// Broad family.
    pub family: Family,
}

fn diag(subject: impl Into<String>, message: impl Into<String>) -> Diagnostic {
    Diagnostic {
        subject: subject.into(),
        message: message.into(),
    }
}

fn read_os(guest: &Guest, diags: &mut Vec<Diagnostic>) -> Result<Option<OsInfo>> {
    for path in ["/etc/os-release", "/usr/lib/os-release"] {
        let Some(bytes) = assemble::read_identity_file(guest, path, diags)? else {
            continue;
        };
        let o = OsRelease::parse(&bytes);
        for d in &o.doc.diagnostics {
            diags.push(diag(format!("{path} line {}", d.line), d.message.clone()));
        }
        let get = |k: &str| o.get(k).map(str::to_owned);
        return Ok(Some(OsInfo {
            source: path.to_owned(),
            id: o.id().to_owned(),
            id_like: o.id_like().into_iter().map(str::to_owned).collect(),
            name: get("NAME"),
            pretty_name: get("PRETTY_NAME"),
            version_id: get("VERSION_ID"),
            version_codename: get("VERSION_CODENAME"),
            family: o.family(),
        }));
    }
    Ok(None)
}

/// Hostnames are at most 64 bytes; anything past a few KiB is not one.
const MAX_HOSTNAME_FILE_BYTES: u64 = 4096;

fn read_hostname(guest: &Guest, diags: &mut Vec<Diagnostic>) -> Option<String> {
    match guest.read_file(&GuestPath::new("/etc/hostname"), MAX_HOSTNAME_FILE_BYTES) {
        Ok(bytes) => {
            let text = String::from_utf8_lossy(&bytes);
            let name = text
                .lines()
                .map(str::trim)
                .find(|l| !l.is_empty() && !l.starts_with('#'));
            return name.map(str::to_owned);
        }
        Err(e) if e.kind() == ErrorKind::NotFound => {}
        Err(e) => diags.push(diag("/etc/hostname", e.to_string())),
    }
    // RHEL 6 and older keep it in /etc/sysconfig/network.
    match guest.read_file(
        &GuestPath::new("/etc/sysconfig/network"),
        MAX_CONFIG_FILE_BYTES,
    ) {
        Ok(bytes) => ShellDoc::parse(&bytes, ShellOptions::default())
            .get("HOSTNAME")
            .filter(|h| !h.is_empty())
            .map(str::to_owned),
        Err(_) => None,
    }
}

/// The assembled guest (for reading its files) together with its report.
#[derive(Debug)]
pub struct Identified<'d> {
    /// The guest view and what was learnt assembling it.
    pub assembly: Assembly<'d>,
    /// What `inspect` reports about the guest.
    pub report: GuestReport,
}

/// Identifies the guest on `disk`. `disk_device` is the whole disk (for the
/// boot code in sector 0).
///
/// Errors only when the guest cannot be identified honestly: the root's
/// identity files (`/etc/fstab`, os-release) are unreadable (for example a
/// corrupt inode size), or the only possible root cannot be opened (a dirty
/// journal). Everything else becomes a diagnostic.
pub fn inspect(disk_device: &Device, disk: &Disk) -> Result<GuestReport> {
    Ok(identify(disk_device, disk)?.report)
}

/// Like [`inspect`], keeping the assembled guest so that checks can read
/// its files without assembling it a second time.
pub fn identify<'d>(disk_device: &Device, disk: &'d Disk) -> Result<Identified<'d>> {
    finish(assemble(disk)?, disk_device)
}

/// Identifies a guest tree the operator already mounted at `dir`. Every
/// path is resolved inside the tree (see [`HostDirFs`]); the disk behind it
/// is not examined, so `disk` is normally empty.
pub fn identify_tree<'d>(dir: &std::path::Path, disk: &'d Disk) -> Result<Identified<'d>> {
    let root: std::rc::Rc<dyn GuestFs> = std::rc::Rc::new(HostDirFs::open(dir)?);
    let no_disk: Device = std::sync::Arc::new(rescue_volumes::MemDisk::new(Vec::new(), "no disk"));
    finish(assemble_tree(disk, root)?, &no_disk)
}

fn finish<'d>(asm: Assembly<'d>, disk_device: &Device) -> Result<Identified<'d>> {
    let mut diagnostics = asm.diagnostics.clone();
    let os = read_os(&asm.guest, &mut diagnostics)?;
    let family = os.as_ref().map(|o| o.family).unwrap_or(Family::Other);
    let hostname = if asm.root.is_some() {
        read_hostname(&asm.guest, &mut diagnostics)
    } else {
        None
    };
    let bls = boot::bls_entries(&asm, &mut diagnostics);
    let kernels = if asm.root.is_some() {
        kernels::find_kernels(&asm.guest, family, &bls, &mut diagnostics)
    } else {
        Vec::new()
    };
    let bootloader = boot::inspect_boot(&asm, disk_device, family, bls, &kernels, &mut diagnostics);
    let report = GuestReport {
        schema_version: REPORT_SCHEMA_VERSION,
        root: asm.root.clone(),
        root_candidates: asm.root_candidates.clone(),
        os,
        hostname,
        fstab: asm.fstab_lines.clone(),
        mounts: asm.mounts.clone(),
        kernels,
        bootloader,
        diagnostics,
    };
    Ok(Identified {
        assembly: asm,
        report,
    })
}
