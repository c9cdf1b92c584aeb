//! Installed kernels and whether each can boot.
//!
//! Kernels are gathered from `/boot` (`vmlinuz-*`, `initrd.img-*`,
//! `initramfs-*.img`, `initrd-*`), `/lib/modules/*` (through the guest's
//! `/lib -> usr/lib` link) and BLS entries, all read through the guest view.
//! A kernel is complete when its vmlinuz and initrd are present and
//! non-empty and its modules directory is present and non-empty. Rescue
//! kernels (`0-rescue-*`, made by dracut without host-only mode) carry every
//! driver inside their initramfs and have no modules directory: for them
//! only the kernel image and initrd are required.

use std::collections::{BTreeMap, BTreeSet};

use rescue_config::os_release::Family;
use rescue_config::version::vercmp;
use rescue_io::ErrorKind;
use rescue_volumes::Diagnostic;
use serde::Serialize;

use crate::boot::BlsInfo;
use crate::fs::MAX_DIR_ENTRIES;
use crate::guest::Guest;
use crate::path::GuestPath;

/// Kernel versions examined at most (a hostile /boot could list thousands).
const MAX_KERNELS: usize = 1000;

/// One kernel file.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, schemars::JsonSchema)]
pub struct KernelFile {
    /// Guest path.
    pub path: String,
    /// Size in bytes (after following symlinks).
    pub size_in_bytes: u64,
}

/// One installed kernel version.
#[derive(Debug, Clone, Serialize, schemars::JsonSchema)]
pub struct Kernel {
    /// Version string (`6.1.0-28-amd64`, `5.14.0-362.el9.x86_64`).
    pub version: String,
    /// A rescue kernel (`0-rescue-<machine-id>`): it boots from a generic
    /// initramfs and has no modules directory.
    pub rescue: bool,
    /// The kernel image, if present.
    pub vmlinuz: Option<KernelFile>,
    /// The initial ramdisk, if present.
    pub initrd: Option<KernelFile>,
    /// Guest path of `/lib/modules/<version>`, if present.
    pub modules_dir: Option<String>,
    /// Ids of BLS entries that boot this version.
    pub bls_entries: Vec<String>,
    /// Everything needed to boot is present and non-empty.
    pub complete: bool,
    /// What is missing or empty, one line each.
    pub missing: Vec<String>,
}

fn diag(subject: &str, message: impl Into<String>) -> Diagnostic {
    Diagnostic {
        subject: subject.to_owned(),
        message: message.into(),
    }
}

/// The version in a kernel image name, if it is one.
pub fn version_from_kernel_name(name: &str) -> Option<&str> {
    let v = name
        .strip_prefix("vmlinuz-")
        .or_else(|| name.strip_prefix("vmlinux-"))?;
    (!v.is_empty()).then_some(v)
}

/// The version in an initrd name, if it is one (kdump and fallback images
/// are not the boot initrd).
fn version_from_initrd_name(name: &str) -> Option<&str> {
    let v = if let Some(v) = name.strip_prefix("initrd.img-") {
        v
    } else if let Some(v) = name
        .strip_prefix("initramfs-")
        .and_then(|v| v.strip_suffix(".img"))
    {
        if v.ends_with("kdump") || v.ends_with("-fallback") {
            return None;
        }
        v
    } else if let Some(v) = name.strip_prefix("initrd-") {
        v.strip_suffix(".img").unwrap_or(v)
    } else {
        return None;
    };
    (!v.is_empty()).then_some(v)
}

/// Initrd names to look for, in the family's preferred order.
fn initrd_names(version: &str, family: Family) -> Vec<String> {
    let debian = format!("initrd.img-{version}");
    let rhel = format!("initramfs-{version}.img");
    let suse = format!("initrd-{version}");
    match family {
        Family::Rhel => vec![rhel, debian, suse],
        Family::Suse => vec![suse, rhel, debian],
        _ => vec![debian, rhel, suse],
    }
}

fn stat_file(guest: &Guest, path: &GuestPath) -> Result<Option<KernelFile>, String> {
    match guest.metadata(path) {
        Ok(m) if m.is_file() => Ok(Some(KernelFile {
            path: path.to_string(),
            size_in_bytes: m.size_in_bytes,
        })),
        Ok(_) => Err(format!("{path} is not a regular file")),
        Err(e) if e.kind() == ErrorKind::NotFound => Ok(None),
        Err(e) => Err(e.to_string()),
    }
}

/// Finds the installed kernels, newest first.
pub fn find_kernels(
    guest: &Guest,
    family: Family,
    bls: &[BlsInfo],
    diags: &mut Vec<Diagnostic>,
) -> Vec<Kernel> {
    let boot = GuestPath::new("/boot");
    let mut versions: BTreeSet<String> = BTreeSet::new();
    let mut initrd_by_version: BTreeMap<String, Vec<String>> = BTreeMap::new();
    match guest.read_dir(&boot, MAX_DIR_ENTRIES) {
        Ok(entries) => {
            for e in entries {
                let name = e.name_lossy();
                if let Some(v) = version_from_kernel_name(&name) {
                    versions.insert(v.to_owned());
                } else if let Some(v) = version_from_initrd_name(&name) {
                    initrd_by_version
                        .entry(v.to_owned())
                        .or_default()
                        .push(name.clone());
                    versions.insert(v.to_owned());
                }
            }
        }
        Err(e) if e.kind() == ErrorKind::NotFound => {
            diags.push(diag("/boot", "the guest has no /boot directory"))
        }
        Err(e) => diags.push(diag("/boot", e.to_string())),
    }
    let modules = GuestPath::new("/lib/modules");
    let mut module_dirs = BTreeSet::new();
    match guest.read_dir(&modules, MAX_DIR_ENTRIES) {
        Ok(entries) => {
            for e in entries {
                module_dirs.insert(e.name_lossy());
            }
        }
        Err(e) if e.kind() == ErrorKind::NotFound => diags.push(diag(
            "/lib/modules",
            "the guest has no /lib/modules directory",
        )),
        Err(e) => diags.push(diag("/lib/modules", e.to_string())),
    }
    versions.extend(module_dirs.iter().cloned());
    let mut bls_by_version: BTreeMap<String, Vec<&BlsInfo>> = BTreeMap::new();
    for b in bls {
        if let Some(v) = b.kernel_version() {
            versions.insert(v.clone());
            bls_by_version.entry(v).or_default().push(b);
        }
    }
    if versions.len() > MAX_KERNELS {
        diags.push(diag(
            "/boot",
            format!("more than {MAX_KERNELS} kernel versions; only the first are examined"),
        ));
    }

    let mut kernels: Vec<Kernel> = versions
        .into_iter()
        .take(MAX_KERNELS)
        .map(|version| {
            let rescue = version.starts_with("0-rescue");
            let entries = bls_by_version.get(&version).cloned().unwrap_or_default();
            let mut missing = Vec::new();

            // vmlinuz: the BLS path when an entry names one, else /boot/vmlinuz-<v>.
            let vmlinuz_path = entries
                .iter()
                .find_map(|b| b.linux_guest_path.clone())
                .map(GuestPath::new)
                .unwrap_or_else(|| boot.join(format!("vmlinuz-{version}")));
            let vmlinuz = match stat_file(guest, &vmlinuz_path) {
                Ok(Some(f)) => {
                    if f.size_in_bytes == 0 {
                        missing.push(format!("kernel image {} is empty", f.path));
                    }
                    Some(f)
                }
                Ok(None) => {
                    missing.push(format!("kernel image {vmlinuz_path} is missing"));
                    None
                }
                Err(e) => {
                    missing.push(format!("kernel image cannot be read: {e}"));
                    None
                }
            };

            // initrd: the BLS path first, then the names found in /boot, then
            // the family's usual names.
            let mut paths: Vec<GuestPath> = entries
                .iter()
                .flat_map(|b| b.initrd_guest_paths.iter().map(GuestPath::new))
                .collect();
            paths.extend(
                initrd_by_version
                    .get(&version)
                    .into_iter()
                    .flatten()
                    .map(|n| boot.join(n)),
            );
            paths.extend(
                initrd_names(&version, family)
                    .into_iter()
                    .map(|n| boot.join(n)),
            );
            let expected = paths
                .first()
                .cloned()
                .unwrap_or_else(|| boot.join(format!("initrd.img-{version}")));
            let mut initrd = None;
            let mut initrd_error = None;
            for p in &paths {
                match stat_file(guest, p) {
                    Ok(Some(f)) => {
                        initrd = Some(f);
                        break;
                    }
                    Ok(None) => {}
                    Err(e) => initrd_error = initrd_error.or(Some(e)),
                }
            }
            match (&initrd, initrd_error) {
                (Some(f), _) if f.size_in_bytes == 0 => {
                    missing.push(format!("initrd {} is empty", f.path))
                }
                (Some(_), _) => {}
                (None, Some(e)) => missing.push(format!("initrd cannot be read: {e}")),
                (None, None) => missing.push(format!("initrd {expected} is missing")),
            }

            let mdir = modules.join(&version);
            let modules_dir = if module_dirs.contains(&version) {
                match guest.read_dir(&mdir, MAX_DIR_ENTRIES) {
                    Ok(list) if list.is_empty() => {
                        missing.push(format!("modules directory {mdir} is empty"));
                        Some(mdir.to_string())
                    }
                    Ok(_) => Some(mdir.to_string()),
                    Err(e) => {
                        missing.push(format!("modules directory {mdir} cannot be read: {e}"));
                        None
                    }
                }
            } else {
                if !rescue {
                    missing.push(format!("modules directory {mdir} is missing"));
                }
                None
            };

            Kernel {
                complete: missing.is_empty(),
                version,
                rescue,
                vmlinuz,
                initrd,
                modules_dir,
                bls_entries: entries.iter().map(|b| b.id.clone()).collect(),
                missing,
            }
        })
        .collect();
    kernels.sort_by(|a, b| vercmp(&b.version, &a.version));
    kernels
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names() {
        assert_eq!(
            version_from_kernel_name("vmlinuz-6.1.0-28-amd64"),
            Some("6.1.0-28-amd64")
        );
        assert_eq!(version_from_kernel_name("vmlinuz"), None);
        assert_eq!(version_from_kernel_name("vmlinuz-"), None);
        assert_eq!(
            version_from_initrd_name("initrd.img-6.1.0-28-amd64"),
            Some("6.1.0-28-amd64")
        );
        assert_eq!(
            version_from_initrd_name("initramfs-5.14.0-362.el9.x86_64.img"),
            Some("5.14.0-362.el9.x86_64")
        );
        assert_eq!(
            version_from_initrd_name("initramfs-5.14.0-362.el9.x86_64kdump.img"),
            None
        );
        assert_eq!(
            version_from_initrd_name("initrd-5.14.21-150400.24.46-default"),
            Some("5.14.21-150400.24.46-default")
        );
        assert_eq!(version_from_initrd_name("initrd.img"), None);
    }
}
