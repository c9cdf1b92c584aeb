//! The bootloader: how this disk boots and which kernel it boots by default.
//!
//! BIOS: a GPT "BIOS boot" partition and GRUB's boot code in sector 0. EFI:
//! the system partition's `/EFI/<vendor>/` loaders and the stub `grub.cfg`
//! that `configfile`s the real one, resolved through `search --fs-uuid`
//! against this disk's volumes. Then the main `grub.cfg`, `grubenv`, BLS
//! entries and `/etc/default/grub`, and the entry GRUB boots by default.
//!
//! Read-only, and every problem is a diagnostic: a broken bootloader is what
//! the user needs to hear about, not a reason to stop inspecting.

use std::collections::BTreeMap;

use rescue_config::bls::BlsEntry;
use rescue_config::default_grub::DefaultGrub;
use rescue_config::grub_cfg::{
    self, BootCommand, DefaultOrigin, GrubCfg, GrubDevice, MenuItem, MenuKind,
};
use rescue_config::grubenv::GrubEnv;
use rescue_config::os_release::Family;
use rescue_config::version::blscfg_cmp;
use rescue_io::{Device, ErrorKind};
use rescue_volumes::{Diagnostic, VolumeKind};
use serde::Serialize;

use crate::assemble::Assembly;
use crate::fs::{MAX_CONFIG_FILE_BYTES, MAX_DIR_ENTRIES};
use crate::kernels::{version_from_kernel_name, Kernel};
use crate::path::GuestPath;

/// GPT type of the EFI system partition.
pub const ESP_TYPE_GUID: &str = "c12a7328-f81f-11d2-ba4b-00a0c93ec93b";
/// GPT type of the BIOS boot partition (GRUB's core.img on GPT disks).
pub const BIOS_BOOT_TYPE_GUID: &str = "21686148-6449-6e6f-744e-656564454649";
/// BLS entries read at most.
const MAX_BLS_ENTRIES: usize = 1000;
/// Largest BLS entry file read.
const MAX_BLS_BYTES: u64 = 64 * 1024;
/// `/EFI/<dir>` directories examined on the ESP.
const MAX_EFI_DIRS: usize = 64;

/// Everything known about how the disk boots.
#[derive(Debug, Clone, Serialize, schemars::JsonSchema)]
pub struct Bootloader {
    /// Legacy BIOS boot.
    pub bios: BiosBoot,
    /// UEFI boot, when the disk has an EFI system partition.
    pub efi: Option<Efi>,
    /// The main grub.cfg.
    pub grub_cfg: Option<GrubCfgInfo>,
    /// The GRUB environment block next to it.
    pub grubenv: Option<GrubEnvInfo>,
    /// `/etc/default/grub`.
    pub default_grub: Option<DefaultGrubInfo>,
    /// BLS entries in `/boot/loader/entries`, in the order GRUB lists them.
    pub bls_entries: Vec<BlsInfo>,
    /// The entry GRUB boots when nobody touches the keyboard.
    pub default_entry: Option<DefaultEntry>,
}

/// What sector 0 holds.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, schemars::JsonSchema)]
#[serde(rename_all = "snake_case")]
pub enum MbrBootCode {
    /// GRUB's boot.img.
    Grub,
    /// All zeros: nothing boots from BIOS.
    Empty,
    /// Some other boot code.
    Other,
    /// Sector 0 could not be read.
    Unreadable,
}

/// Legacy BIOS boot facts.
#[derive(Debug, Clone, Serialize, schemars::JsonSchema)]
pub struct BiosBoot {
    /// The GPT BIOS boot partition, if any.
    pub bios_boot_partition: Option<String>,
    /// That partition's first sector is all zeros (GRUB was never installed there).
    pub bios_boot_partition_empty: Option<bool>,
    /// What the boot code area of sector 0 holds.
    pub mbr_boot_code: MbrBootCode,
}

/// The EFI system partition.
#[derive(Debug, Clone, Serialize, schemars::JsonSchema)]
pub struct Efi {
    /// The ESP volume.
    pub esp_volume: String,
    /// Each `/EFI/<dir>/`.
    pub vendors: Vec<EfiVendor>,
}

/// One `/EFI/<dir>/` directory.
#[derive(Debug, Clone, Serialize, schemars::JsonSchema)]
pub struct EfiVendor {
    /// Path on the ESP, e.g. `/EFI/debian`.
    pub dir: String,
    /// File names in it.
    pub files: Vec<String>,
    /// A GRUB EFI binary is there (`grubx64.efi`, `grubaa64.efi`, …).
    pub grub: bool,
    /// A shim is there (`shimx64.efi`, …).
    pub shim: bool,
    /// Its `grub.cfg`, if any.
    pub grub_cfg: Option<EfiGrubCfg>,
}

/// A `grub.cfg` on the ESP.
#[derive(Debug, Clone, Serialize, schemars::JsonSchema)]
pub struct EfiGrubCfg {
    /// Path on the ESP.
    pub path: String,
    /// A stub: no menu of its own, only a `configfile` to the real one.
    pub stub: bool,
    /// The file it `configfile`s, resolved against this disk.
    pub configfile: Option<FileRef>,
    /// Remarks.
    pub notes: Vec<String>,
}

/// A file on one of this disk's volumes.
#[derive(Debug, Clone, Serialize, schemars::JsonSchema)]
pub struct FileRef {
    /// The volume, when it could be resolved.
    pub volume_id: Option<String>,
    /// Path on that volume.
    pub path: String,
    /// Where the guest sees it, when the volume is mounted.
    pub guest_path: Option<String>,
    /// Whether it exists (`None` when it could not be checked).
    pub exists: Option<bool>,
    /// Why it could not be resolved or checked.
    pub note: Option<String>,
}

/// The main grub.cfg.
#[derive(Debug, Clone, Serialize, schemars::JsonSchema)]
pub struct GrubCfgInfo {
    /// The volume holding it.
    pub volume_id: String,
    /// Path on that volume.
    pub path: String,
    /// Where the guest sees it.
    pub guest_path: Option<String>,
    /// How it was found (`efi stub`, `/boot/grub/grub.cfg`, …).
    pub found_via: String,
    /// Uses `blscfg` (entries come from BLS files).
    pub blscfg: bool,
    /// The menu as GRUB builds it (BLS entries inserted where `blscfg` runs).
    pub menu: Vec<MenuItem>,
    /// Parse problems.
    pub diagnostics: Vec<rescue_config::Diagnostic>,
}

/// The GRUB environment block.
#[derive(Debug, Clone, Serialize, schemars::JsonSchema)]
pub struct GrubEnvInfo {
    /// The volume holding it.
    pub volume_id: String,
    /// Path on that volume.
    pub path: String,
    /// Where the guest sees it.
    pub guest_path: Option<String>,
    /// `saved_entry`.
    pub saved_entry: Option<String>,
    /// `next_entry` (a one-time default).
    pub next_entry: Option<String>,
    /// Every other variable.
    pub other: BTreeMap<String, String>,
    /// Size/header problems.
    pub diagnostics: Vec<rescue_config::Diagnostic>,
}

/// `/etc/default/grub`.
#[derive(Debug, Clone, Serialize, schemars::JsonSchema)]
pub struct DefaultGrubInfo {
    /// Guest path.
    pub path: String,
    /// `GRUB_DEFAULT`.
    pub grub_default: Option<String>,
    /// `GRUB_CMDLINE_LINUX`.
    pub cmdline_linux: Option<String>,
    /// `GRUB_CMDLINE_LINUX_DEFAULT`.
    pub cmdline_linux_default: Option<String>,
    /// `GRUB_ENABLE_BLSCFG`.
    pub enable_blscfg: Option<String>,
    /// Parse problems.
    pub diagnostics: Vec<rescue_config::Diagnostic>,
}

/// One BLS entry file.
#[derive(Debug, Clone, Serialize, schemars::JsonSchema)]
pub struct BlsInfo {
    /// Guest path of the file.
    pub file: String,
    /// The id GRUB uses (file name without `.conf`).
    pub id: String,
    /// `title`.
    pub title: Option<String>,
    /// `version`.
    pub version: Option<String>,
    /// `linux`, as written.
    pub linux: Option<String>,
    /// `initrd` paths, as written.
    pub initrd: Vec<String>,
    /// `options`, joined.
    pub options: String,
    /// Guest path of the kernel image.
    pub linux_guest_path: Option<String>,
    /// Guest paths of the initrds (variables such as `$tuned_initrd` skipped).
    pub initrd_guest_paths: Vec<String>,
    /// Parse problems.
    pub diagnostics: Vec<rescue_config::Diagnostic>,
}

impl BlsInfo {
    /// The kernel version: `version`, else from the `linux` file name.
    pub fn kernel_version(&self) -> Option<String> {
        self.version.clone().or_else(|| {
            let l = self.linux.as_deref()?;
            version_from_kernel_name(l.rsplit('/').next()?).map(str::to_owned)
        })
    }
}

/// The entry GRUB boots by default.
#[derive(Debug, Clone, Serialize, schemars::JsonSchema)]
pub struct DefaultEntry {
    /// The default spec GRUB uses (index, title, id or `>` path).
    pub spec: String,
    /// Where the spec came from.
    pub origin: DefaultOrigin,
    /// grub.cfg line of the `set default` used.
    pub set_at_line: Option<usize>,
    /// Menu indices down to the entry.
    pub menu_path: Vec<usize>,
    /// Titles down to the entry.
    pub titles: Vec<String>,
    /// The entry's title.
    pub title: String,
    /// The entry's id (for BLS entries, the entry file's id).
    pub id: Option<String>,
    /// The entry is a BLS entry.
    pub bls: bool,
    /// The kernel path as the entry names it.
    pub linux: Option<String>,
    /// The kernel command line after the kernel path, with `$var`/`${var}`
    /// arguments expanded from grubenv (BLS entries use `$kernelopts`).
    pub cmdline: Vec<String>,
    /// grub.cfg line of the entry's `linux` command (`None` for BLS entries,
    /// whose options live in the entry file or in grubenv).
    pub cmdline_line: Option<usize>,
    /// The initrd paths as the entry names them.
    pub initrd: Vec<String>,
    /// The kernel version booted.
    pub kernel_version: Option<String>,
    /// Whether that kernel is complete (`None` when not among the installed kernels).
    pub kernel_complete: Option<bool>,
    /// Fallbacks and remarks.
    pub notes: Vec<String>,
}

fn diag(subject: impl Into<String>, message: impl Into<String>) -> Diagnostic {
    Diagnostic {
        subject: subject.into(),
        message: message.into(),
    }
}

fn mbr_boot_code(device: &Device) -> MbrBootCode {
    let mut sector = [0u8; 440];
    if device.read_exact_at(0, &mut sector).is_err() {
        return MbrBootCode::Unreadable;
    }
    if sector.iter().all(|&b| b == 0) {
        MbrBootCode::Empty
    } else if sector.windows(4).any(|w| w == b"GRUB") {
        MbrBootCode::Grub
    } else {
        MbrBootCode::Other
    }
}

fn bios(asm: &Assembly<'_>, device: &Device) -> BiosBoot {
    let disk = asm.volumes.disk();
    let part = disk.volumes.iter().find(|v| {
        matches!(&v.kind, VolumeKind::GptPartition { type_guid, .. } if type_guid.eq_ignore_ascii_case(BIOS_BOOT_TYPE_GUID))
    });
    let empty = part.map(|p| {
        let mut s = [0u8; 512];
        p.device.read_exact_at(0, &mut s).is_ok() && s.iter().all(|&b| b == 0)
    });
    BiosBoot {
        bios_boot_partition: part.map(|p| p.id.clone()),
        bios_boot_partition_empty: empty,
        mbr_boot_code: mbr_boot_code(device),
    }
}

fn is_esp(kind: &VolumeKind) -> bool {
    match kind {
        VolumeKind::GptPartition { type_guid, .. } => type_guid.eq_ignore_ascii_case(ESP_TYPE_GUID),
        VolumeKind::MbrPartition { type_id, .. } => {
            type_id.eq_ignore_ascii_case("0xef") || type_id.eq_ignore_ascii_case("ef")
        }
        _ => false,
    }
}

/// Resolves a GRUB file name from a stub against this disk.
fn resolve_grub_path(asm: &Assembly<'_>, esp: &str, target: &grub_cfg::GrubPath) -> FileRef {
    let disk = asm.volumes.disk();
    let path = target.path.clone();
    let (volume, note) = match &target.device {
        GrubDevice::FsUuid { uuid } => {
            match disk.volumes.iter().find(|v| {
                v.probe
                    .uuid
                    .as_deref()
                    .is_some_and(|u| u.eq_ignore_ascii_case(uuid))
            }) {
                Some(v) => (Some(v.id.clone()), None),
                None => (
                    None,
                    Some(format!(
                        "no filesystem on this disk has UUID {uuid}: GRUB will drop to its prompt"
                    )),
                ),
            }
        }
        GrubDevice::Label { label } => match disk
            .volumes
            .iter()
            .find(|v| v.probe.label.as_deref() == Some(label.as_str()))
        {
            Some(v) => (Some(v.id.clone()), None),
            None => (
                None,
                Some(format!("no filesystem on this disk has label {label:?}")),
            ),
        },
        GrubDevice::Current => (Some(esp.to_owned()), None),
        GrubDevice::Named { name } => {
            let n = name.rsplit(',').next().and_then(|p| {
                p.trim_start_matches(|c: char| c.is_ascii_alphabetic())
                    .parse::<u32>()
                    .ok()
            });
            let v = n.and_then(|n| {
                disk.volumes.iter().find(|v| {
                    matches!(&v.kind, VolumeKind::GptPartition { number, .. } | VolumeKind::MbrPartition { number, .. } if *number == n)
                })
            });
            match v {
                Some(v) => (
                    Some(v.id.clone()),
                    Some(format!(
                        "({name}) is a firmware device name; guessed {} by partition number",
                        v.id
                    )),
                ),
                None => (
                    None,
                    Some(format!("({name}) does not name a partition of this disk")),
                ),
            }
        }
        GrubDevice::File { file } => {
            let v = disk.volumes.iter().find(|v| {
                asm.volumes
                    .exists(&v.id, &GuestPath::new(file))
                    .unwrap_or(false)
            });
            match v {
                Some(v) => (Some(v.id.clone()), None),
                None => (
                    None,
                    Some(format!("no readable volume of this disk holds {file}")),
                ),
            }
        }
    };
    let Some(volume_id) = volume else {
        return FileRef {
            volume_id: None,
            path,
            guest_path: None,
            exists: None,
            note,
        };
    };
    let gp = GuestPath::new(&path);
    let (exists, note) = match asm.volumes.exists(&volume_id, &gp) {
        Ok(e) => (Some(e), note),
        Err(e) => (None, Some(e.to_string())),
    };
    FileRef {
        guest_path: asm
            .guest
            .guest_path_of(&volume_id, &gp)
            .map(|p| p.to_string()),
        volume_id: Some(volume_id),
        path,
        exists,
        note,
    }
}

fn efi(asm: &Assembly<'_>, diags: &mut Vec<Diagnostic>) -> Option<Efi> {
    let disk = asm.volumes.disk();
    let esps: Vec<_> = disk.volumes.iter().filter(|v| is_esp(&v.kind)).collect();
    let esp = esps.first()?;
    if esps.len() > 1 {
        diags.push(diag(
            "efi",
            format!(
                "{} EFI system partitions; only {} is examined",
                esps.len(),
                esp.id
            ),
        ));
    }
    let mut out = Efi {
        esp_volume: esp.id.clone(),
        vendors: Vec::new(),
    };
    let fs = match asm.volumes.open(&esp.id) {
        Ok(fs) => fs,
        Err(e) => {
            diags.push(diag(
                &esp.id,
                format!("the EFI system partition cannot be read: {e}"),
            ));
            return Some(out);
        }
    };
    let g = crate::guest::Guest::with_root(fs);
    let efi_dir = GuestPath::new("/EFI");
    let dirs = match g.read_dir(&efi_dir, MAX_DIR_ENTRIES) {
        Ok(d) => d,
        Err(e) => {
            diags.push(diag(
                &esp.id,
                format!("the EFI system partition has no readable /EFI directory: {e}"),
            ));
            return Some(out);
        }
    };
    if dirs.len() > MAX_EFI_DIRS {
        diags.push(diag(
            &esp.id,
            format!("more than {MAX_EFI_DIRS} directories in /EFI; only the first are examined"),
        ));
    }
    for d in dirs.into_iter().take(MAX_EFI_DIRS) {
        let dir = efi_dir.join(&d.name);
        let files: Vec<String> = match g.read_dir(&dir, MAX_DIR_ENTRIES) {
            Ok(f) => f.into_iter().map(|e| e.name_lossy()).collect(),
            Err(_) => continue, // not a directory
        };
        let has = |names: &[&str]| {
            files
                .iter()
                .any(|f| names.iter().any(|n| f.eq_ignore_ascii_case(n)))
        };
        let grub = has(&[
            "grubx64.efi",
            "grubaa64.efi",
            "grubia32.efi",
            "grubriscv64.efi",
        ]);
        let shim = has(&["shimx64.efi", "shimaa64.efi", "shimia32.efi"]);
        let cfg_name = files
            .iter()
            .find(|f| f.eq_ignore_ascii_case("grub.cfg"))
            .cloned();
        let grub_cfg = cfg_name.map(|name| {
            let path = dir.join(&name);
            let mut notes = Vec::new();
            match g.read_file(&path, MAX_CONFIG_FILE_BYTES) {
                Ok(bytes) => {
                    let cfg = GrubCfg::parse(&bytes);
                    let top: Vec<_> = cfg.configfiles.iter().filter(|c| !c.in_menu).collect();
                    let stub = cfg.menu.is_empty() && !top.is_empty();
                    let configfile = top.last().map(|c| match &c.target {
                        Some(t) => resolve_grub_path(asm, &esp.id, t),
                        None => FileRef {
                            volume_id: None,
                            path: c.raw.clone(),
                            guest_path: None,
                            exists: None,
                            note: Some(format!(
                                "cannot expand {}: variables {} are set by GRUB at boot",
                                c.raw,
                                c.unresolved.join(", ")
                            )),
                        },
                    });
                    for d in &cfg.diagnostics {
                        notes.push(format!("line {}: {}", d.line, d.message));
                    }
                    EfiGrubCfg {
                        path: path.to_string(),
                        stub,
                        configfile,
                        notes,
                    }
                }
                Err(e) => {
                    notes.push(e.to_string());
                    EfiGrubCfg {
                        path: path.to_string(),
                        stub: false,
                        configfile: None,
                        notes,
                    }
                }
            }
        });
        out.vendors.push(EfiVendor {
            dir: dir.to_string(),
            files,
            grub,
            shim,
            grub_cfg,
        });
    }
    Some(out)
}

/// Reads a file on `volume_id` at `path`, through the guest when that
/// volume is mounted (so links across mounts resolve), else on the volume alone.
fn read_on(
    asm: &Assembly<'_>,
    volume_id: &str,
    path: &GuestPath,
    max: u64,
) -> rescue_io::Result<Vec<u8>> {
    match asm.guest.guest_path_of(volume_id, path) {
        Some(gp) => asm.guest.read_file(&gp, max),
        None => asm.volumes.read_file(volume_id, path, max),
    }
}

struct MainCfg {
    volume_id: String,
    path: GuestPath,
    found_via: String,
    cfg: GrubCfg,
}

fn main_cfg(
    asm: &Assembly<'_>,
    efi: Option<&Efi>,
    family: Family,
    diags: &mut Vec<Diagnostic>,
) -> Option<MainCfg> {
    let mut tries: Vec<(String, GuestPath, String)> = Vec::new();
    if let Some(efi) = efi {
        for v in &efi.vendors {
            if let Some(FileRef {
                volume_id: Some(vol),
                path,
                exists: Some(true),
                ..
            }) = v.grub_cfg.as_ref().and_then(|c| c.configfile.as_ref())
            {
                tries.push((
                    vol.clone(),
                    GuestPath::new(path),
                    format!("efi stub {}/grub.cfg", v.dir),
                ));
            }
        }
    }
    let guest_paths = match family {
        Family::Rhel | Family::Suse => ["/boot/grub2/grub.cfg", "/boot/grub/grub.cfg"],
        _ => ["/boot/grub/grub.cfg", "/boot/grub2/grub.cfg"],
    };
    for p in guest_paths {
        if let Ok((vol, rel)) = asm.guest.locate(&GuestPath::new(p)) {
            tries.push((vol, rel, p.to_owned()));
        }
    }
    if let Some(efi) = efi {
        for v in &efi.vendors {
            if let Some(c) = v.grub_cfg.as_ref().filter(|c| !c.stub) {
                tries.push((
                    efi.esp_volume.clone(),
                    GuestPath::new(&c.path),
                    format!("{} on the EFI system partition", c.path),
                ));
            }
        }
    }
    for (volume_id, path, found_via) in tries {
        match read_on(asm, &volume_id, &path, MAX_CONFIG_FILE_BYTES) {
            Ok(bytes) => {
                return Some(MainCfg {
                    volume_id,
                    path,
                    found_via,
                    cfg: GrubCfg::parse(&bytes),
                })
            }
            Err(e) if e.kind() == ErrorKind::NotFound => {}
            Err(e) => diags.push(diag("grub.cfg", e.to_string())),
        }
    }
    None
}

fn read_bls(asm: &Assembly<'_>, diags: &mut Vec<Diagnostic>) -> Vec<BlsInfo> {
    let dir = GuestPath::new("/boot/loader/entries");
    let entries = match asm.guest.read_dir(&dir, MAX_DIR_ENTRIES) {
        Ok(e) => e,
        Err(e) if e.kind() == ErrorKind::NotFound => return Vec::new(),
        Err(e) => {
            diags.push(diag(dir.to_string(), e.to_string()));
            return Vec::new();
        }
    };
    // Paths in BLS entries are relative to the filesystem holding them.
    let base = asm
        .guest
        .locate(&dir)
        .ok()
        .and_then(|(vol, _)| asm.guest.guest_path_of(&vol, &GuestPath::root()))
        .unwrap_or_else(GuestPath::root);
    let mut out = Vec::new();
    for e in entries {
        let name = e.name_lossy();
        let Some(id) = name
            .strip_suffix(".conf")
            .filter(|id| !id.is_empty() && !name.starts_with('.'))
        else {
            continue;
        };
        if out.len() >= MAX_BLS_ENTRIES {
            diags.push(diag(
                dir.to_string(),
                format!("more than {MAX_BLS_ENTRIES} BLS entries; the rest are ignored"),
            ));
            break;
        }
        let file = dir.join(&e.name);
        let bytes = match asm.guest.read_file(&file, MAX_BLS_BYTES) {
            Ok(b) => b,
            Err(err) => {
                diags.push(diag(file.to_string(), err.to_string()));
                continue;
            }
        };
        let b = BlsEntry::parse(&bytes);
        let to_guest = |p: &str| base.join(p).to_string();
        let initrd: Vec<String> = b.initrds().into_iter().map(str::to_owned).collect();
        out.push(BlsInfo {
            file: file.to_string(),
            id: id.to_owned(),
            title: b.title().map(str::to_owned),
            version: b.version().map(str::to_owned),
            linux: b.linux().map(str::to_owned),
            options: b.options(),
            linux_guest_path: b.linux().filter(|l| !l.starts_with('$')).map(to_guest),
            initrd_guest_paths: initrd
                .iter()
                .filter(|i| !i.starts_with('$'))
                .map(|i| to_guest(i))
                .collect(),
            initrd,
            diagnostics: b.diagnostics.clone(),
        });
    }
    // GRUB's blscfg lists the newest first.
    out.sort_by(|a, b| blscfg_cmp(&b.id, &a.id));
    out
}

fn bls_menu_item(b: &BlsInfo) -> MenuItem {
    let mut linux = Vec::new();
    if let Some(l) = &b.linux {
        let mut args = vec![l.clone()];
        args.extend(b.options.split_whitespace().map(str::to_owned));
        linux.push(BootCommand {
            line: 0,
            command: "linux".to_owned(),
            args,
        });
    }
    let initrd = if b.initrd.is_empty() {
        Vec::new()
    } else {
        vec![BootCommand {
            line: 0,
            command: "initrd".to_owned(),
            args: b.initrd.clone(),
        }]
    };
    MenuItem {
        kind: MenuKind::Entry,
        title: b.title.clone().unwrap_or_else(|| b.id.clone()),
        id: Some(b.id.clone()),
        line: 0,
        conditional: false,
        linux,
        initrd,
        children: Vec::new(),
    }
}

/// Inspects the bootloader. `kernels` are the installed kernels, to tell
/// whether the default one is complete.
pub fn inspect_boot(
    asm: &Assembly<'_>,
    disk_device: &Device,
    family: Family,
    bls_entries: Vec<BlsInfo>,
    kernels: &[Kernel],
    diags: &mut Vec<Diagnostic>,
) -> Bootloader {
    let bios = bios(asm, disk_device);
    let efi = efi(asm, diags);
    let main = main_cfg(asm, efi.as_ref(), family, diags);

    let mut grubenv = None;
    if let Some(m) = &main {
        let env_path = m
            .path
            .parent()
            .unwrap_or_else(GuestPath::root)
            .join("grubenv");
        match read_on(asm, &m.volume_id, &env_path, MAX_CONFIG_FILE_BYTES) {
            Ok(bytes) => {
                let env = GrubEnv::parse(&bytes);
                let other = env
                    .vars
                    .iter()
                    .filter(|v| v.key != "saved_entry" && v.key != "next_entry")
                    .map(|v| (v.key.clone(), v.value.clone()))
                    .collect();
                grubenv = Some(GrubEnvInfo {
                    volume_id: m.volume_id.clone(),
                    path: env_path.to_string(),
                    guest_path: asm
                        .guest
                        .guest_path_of(&m.volume_id, &env_path)
                        .map(|p| p.to_string()),
                    saved_entry: env.get("saved_entry").map(str::to_owned),
                    next_entry: env.get("next_entry").map(str::to_owned),
                    other,
                    diagnostics: env.diagnostics.clone(),
                });
            }
            Err(e) if e.kind() == ErrorKind::NotFound => {}
            Err(e) => diags.push(diag("grubenv", e.to_string())),
        }
    }

    let default_grub = match asm
        .guest
        .read_file(&GuestPath::new("/etc/default/grub"), MAX_CONFIG_FILE_BYTES)
    {
        Ok(bytes) => {
            let d = DefaultGrub::parse(&bytes);
            Some(DefaultGrubInfo {
                path: "/etc/default/grub".to_owned(),
                grub_default: d.grub_default().map(str::to_owned),
                cmdline_linux: d.cmdline_linux().map(str::to_owned),
                cmdline_linux_default: d.cmdline_linux_default().map(str::to_owned),
                enable_blscfg: d.get("GRUB_ENABLE_BLSCFG").map(str::to_owned),
                diagnostics: d.doc.diagnostics.clone(),
            })
        }
        Err(e) if e.kind() == ErrorKind::NotFound => None,
        Err(e) => {
            diags.push(diag("/etc/default/grub", e.to_string()));
            None
        }
    };

    let mut grub_cfg_info = None;
    let mut default_entry = None;
    if let Some(m) = main {
        let bls_items: Vec<MenuItem> = bls_entries.iter().map(bls_menu_item).collect();
        let menu = m.cfg.menu_with_bls(&bls_items);
        let blscfg = m.cfg.blscfg_line.is_some();
        if blscfg && bls_entries.is_empty() {
            diags.push(diag(
                "bootloader",
                "grub.cfg runs blscfg but /boot/loader/entries has no entries: the menu is empty",
            ));
        }
        let env_get = |k: &str| -> Option<String> {
            let g = grubenv.as_ref()?;
            match k {
                "saved_entry" => g.saved_entry.clone(),
                "next_entry" => g.next_entry.clone(),
                other => g.other.get(other).cloned(),
            }
        };
        let setting = m.cfg.effective_default(&env_get);
        if !menu.is_empty() {
            let flavor = if family == Family::Rhel {
                grub_cfg::Flavor::RedHat
            } else {
                grub_cfg::Flavor::Upstream
            };
            let choice = grub_cfg::choose_with(&menu, &setting.value, flavor);
            if let Some(item) = grub_cfg::item_at(&menu, &choice.path) {
                let linux = item.linux.first().and_then(|c| c.path()).map(str::to_owned);
                let bls = item.line == 0
                    && item
                        .id
                        .as_ref()
                        .is_some_and(|id| bls_entries.iter().any(|b| &b.id == id));
                let kernel_version = if bls {
                    bls_entries
                        .iter()
                        .find(|b| item.id.as_ref() == Some(&b.id))
                        .and_then(BlsInfo::kernel_version)
                } else {
                    linux
                        .as_deref()
                        .and_then(|l| l.rsplit('/').next())
                        .and_then(version_from_kernel_name)
                        .map(str::to_owned)
                };
                let kernel_complete = kernel_version
                    .as_ref()
                    .and_then(|v| kernels.iter().find(|k| &k.version == v))
                    .map(|k| k.complete);
                let linux_cmd = item.linux.first();
                let mut cmdline = Vec::new();
                for arg in linux_cmd
                    .map(|c| &c.args[1.min(c.args.len())..])
                    .unwrap_or(&[])
                {
                    let var = arg
                        .strip_prefix("${")
                        .and_then(|v| v.strip_suffix('}'))
                        .or_else(|| arg.strip_prefix('$'));
                    match var.map(&env_get) {
                        Some(Some(value)) => {
                            cmdline.extend(value.split_whitespace().map(str::to_owned))
                        }
                        Some(None) => {}
                        None => cmdline.push(arg.clone()),
                    }
                }
                let mut notes = setting.notes.clone();
                notes.extend(choice.notes.iter().cloned());
                default_entry = Some(DefaultEntry {
                    spec: setting.value.clone(),
                    origin: setting.origin,
                    set_at_line: setting.line,
                    menu_path: choice.path.clone(),
                    titles: choice.titles.clone(),
                    title: item.title.clone(),
                    id: item.id.clone(),
                    bls,
                    linux,
                    cmdline,
                    cmdline_line: linux_cmd.map(|c| c.line).filter(|&l| l > 0),
                    initrd: item
                        .initrd
                        .iter()
                        .flat_map(|c| c.args.iter().cloned())
                        .collect(),
                    kernel_version,
                    kernel_complete,
                    notes,
                });
            }
        }
        grub_cfg_info = Some(GrubCfgInfo {
            guest_path: asm
                .guest
                .guest_path_of(&m.volume_id, &m.path)
                .map(|p| p.to_string()),
            volume_id: m.volume_id,
            path: m.path.to_string(),
            found_via: m.found_via,
            blscfg,
            menu,
            diagnostics: m.cfg.diagnostics,
        });
    } else if asm.root.is_some() {
        diags.push(diag(
            "bootloader",
            "no grub.cfg found (looked at the EFI stub, /boot/grub and /boot/grub2)",
        ));
    }

    Bootloader {
        bios,
        efi,
        grub_cfg: grub_cfg_info,
        grubenv,
        default_grub,
        bls_entries,
        default_entry,
    }
}

/// Reads the BLS entries of the guest (before kernels, which use them).
pub fn bls_entries(asm: &Assembly<'_>, diags: &mut Vec<Diagnostic>) -> Vec<BlsInfo> {
    read_bls(asm, diags)
}
