//! `system.missing-files`: packaged files deleted or emptied under the
//! directories a system needs to run (`/usr/bin`, `/usr/sbin`, `/usr/lib*`
//! and their usrmerge aliases), from the guest's own dpkg database.
//!
//! Presence is checked for every packaged file in those directories, from
//! one listing per directory; emptiness for the programs in the bin
//! directories (one inode lookup each); cost grows with the number of
//! directories and programs, not with file sizes. Digests are verified for the few files without which
//! nothing runs (the dynamic loader, libc, the shells, sshd, init), which
//! keeps the check fast while catching a truncated or replaced core file.
//!
//! Must never: trust the host's package database, or read any file without
//! a size cap.

use md5::{Digest, Md5};
use rescue_guest::{GuestPath, MAX_CONFIG_FILE_BYTES, MAX_DIR_ENTRIES};
use rescue_io::ErrorKind;

use crate::edit::{Edit, Repair};
use crate::{
    guest_db, Area, CheckFailure, CheckInfo, CheckResult, Context, Evidence, Finding, Severity,
};

pub(crate) const MISSING_FILES: CheckInfo = CheckInfo {
    id: "system.missing-files",
    area: Area::Boot,
    symptom: "\"command not found\", services FAILED at boot, nothing runs when the loader or libc is gone",
    looks_at: "files of installed dpkg packages under /usr/bin, /usr/sbin, /usr/lib*, and the usrmerge links",
};

const INFO: &str = "/var/lib/dpkg/info";
/// Directories whose packaged files must be present.
const WATCHED: &[&str] = &[
    "usr/bin/",
    "usr/sbin/",
    "usr/lib/",
    "usr/lib64/",
    "usr/libexec/",
    "bin/",
    "sbin/",
    "lib/",
    "lib64/",
];
/// Files whose digest is verified, by file name.
const CRITICAL: &[&str] = &[
    "ld-linux-x86-64.so.2",
    "ld-linux-aarch64.so.1",
    "libc.so.6",
    "bash",
    "dash",
    "sh",
    "sshd",
    "systemd",
    "init",
    "login",
    "mount",
];
/// Largest file whose digest is computed.
const MAX_DIGEST_BYTES: u64 = 64 * 1024 * 1024;
/// Missing paths listed per package in the evidence.
const MAX_LISTED: usize = 10;
/// The usrmerge aliases a merged-/usr system needs.
const USRMERGE: &[(&str, &str)] = &[
    ("/bin", "usr/bin"),
    ("/sbin", "usr/sbin"),
    ("/lib", "usr/lib"),
    ("/lib64", "usr/lib64"),
];

struct Package {
    name: String,
    arch: Option<String>,
    multi_arch_same: bool,
}

/// Installed packages from the dpkg status file (stanzas with
/// `Status: install ok installed`).
fn installed(status: &str) -> Vec<Package> {
    guest_db::stanzas(status)
        .filter(|s| s.is_installed())
        .filter_map(|s| {
            Some(Package {
                name: s.field("Package")?.to_owned(),
                arch: s.field("Architecture").map(str::to_owned),
                multi_arch_same: s.field("Multi-Arch") == Some("same"),
            })
        })
        .collect()
}

fn read_optional(ctx: &Context<'_>, path: &str) -> Result<Option<Vec<u8>>, rescue_io::Error> {
    match ctx
        .guest
        .read_file(&GuestPath::new(path), MAX_CONFIG_FILE_BYTES)
    {
        Ok(b) => Ok(Some(b)),
        Err(e) if e.kind() == ErrorKind::NotFound => Ok(None),
        Err(e) => Err(e),
    }
}

fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

/// Directories whose files are also checked for being empty (programs):
/// looking up each file's inode costs a directory search, so the large
/// library directories are checked for presence from one listing only.
const SIZE_CHECKED: &[&str] = &["/usr/bin/", "/usr/sbin/", "/bin/", "/sbin/"];

/// Directory listings, each read once: name sets by directory path, `None`
/// for a directory that cannot be listed (missing).
#[derive(Default)]
struct Listings(std::collections::HashMap<String, Option<std::collections::HashSet<Vec<u8>>>>);

impl Listings {
    /// Whether `path` has an entry in its parent directory's listing.
    fn contains(&mut self, ctx: &Context<'_>, path: &str) -> bool {
        let (dir, name) = path.rsplit_once('/').unwrap_or(("", path));
        let dir = if dir.is_empty() { "/" } else { dir };
        let names = self.0.entry(dir.to_owned()).or_insert_with(|| {
            ctx.guest
                .read_dir(&GuestPath::new(dir), MAX_DIR_ENTRIES)
                .ok()
                .map(|entries| entries.into_iter().map(|e| e.name).collect())
        });
        names.as_ref().is_some_and(|n| n.contains(name.as_bytes()))
    }
}

/// What is wrong with one packaged file, if anything.
fn problem(
    ctx: &Context<'_>,
    listings: &mut Listings,
    path: &str,
    md5: &str,
) -> Result<Option<String>, rescue_io::Error> {
    if !listings.contains(ctx, path) {
        return Ok(Some(format!("{path} is missing")));
    }
    let name = path.rsplit('/').next().unwrap_or(path);
    let critical = CRITICAL.contains(&name);
    if !critical && !SIZE_CHECKED.iter().any(|d| path.starts_with(d)) {
        return Ok(None);
    }
    let gp = GuestPath::new(path);
    let meta = match ctx.guest.metadata(&gp) {
        Ok(m) => m,
        Err(e) if e.kind() == ErrorKind::NotFound => return Ok(Some(format!("{path} is missing"))),
        Err(e) => return Ok(Some(format!("{path} cannot be read: {e}"))),
    };
    if !meta.is_file() {
        return Ok(None);
    }
    const EMPTY_MD5: &str = "d41d8cd98f00b204e9800998ecf8427e";
    if meta.size_in_bytes == 0 && md5 != EMPTY_MD5 {
        return Ok(Some(format!("{path} is empty")));
    }
    if critical && meta.size_in_bytes <= MAX_DIGEST_BYTES {
        let data = ctx.guest.read_file(&gp, MAX_DIGEST_BYTES)?;
        let digest = hex(&Md5::digest(&data));
        if !digest.eq_ignore_ascii_case(md5) {
            return Ok(Some(format!(
                "{path} does not match its package (md5 {digest}, expected {md5})"
            )));
        }
    }
    Ok(None)
}

pub(crate) fn missing_files(ctx: &Context<'_>) -> CheckResult {
    let Some(status) = guest_db::dpkg_status(ctx)? else {
        return Err(CheckFailure::NotApplicable(
            "no dpkg database (/var/lib/dpkg/status); reading the rpm database is not implemented yet".into(),
        ));
    };
    let mut out = Vec::new();

    // usrmerge: /bin -> usr/bin and friends, when the guest has merged /usr.
    let merged = ctx
        .guest
        .symlink_metadata(&GuestPath::new("/bin"))
        .is_ok_and(|m| m.is_symlink())
        || ctx
            .guest
            .symlink_metadata(&GuestPath::new("/lib"))
            .is_ok_and(|m| m.is_symlink());
    let root_listing: Vec<String> = match ctx.guest.read_dir(&GuestPath::root(), MAX_DIR_ENTRIES) {
        Ok(l) => l.iter().map(|e| e.name_lossy()).collect(),
        Err(e) => return Err(e.into()),
    };
    if merged {
        for (link, target) in USRMERGE {
            let has_target = ctx
                .guest
                .metadata(&GuestPath::new(format!("/{target}")))
                .is_ok_and(|m| m.is_dir());
            if has_target && !root_listing.iter().any(|n| n == &link[1..]) {
                out.push(
                    Finding::new(
                        &MISSING_FILES,
                        Severity::Error,
                        (*link).to_owned(),
                        format!("the usrmerge link {link} -> {target} is missing: every program that runs {link}/… fails"),
                    )
                    .symptom(format!("\"{link}/sh: No such file or directory\"; the kernel cannot run init; services FAILED"))
                    .evidence(Evidence::fact(format!("/{target} exists, {link} does not")))
                    .repair(Some(Repair {
                        summary: format!("recreate the symlink {link} -> {target}"),
                        edits: vec![Edit::CreateSymlink { path: (*link).to_owned(), target: (*target).to_owned() }],
                        manual: None,
                    })),
                );
            }
        }
    }

    let mut listings = Listings::default();
    for pkg in installed(&status) {
        let mut names = vec![pkg.name.clone()];
        if let Some(a) = &pkg.arch {
            names.insert(
                usize::from(!pkg.multi_arch_same),
                format!("{}:{a}", pkg.name),
            );
        }
        let mut sums = None;
        for n in &names {
            if let Some(b) = read_optional(ctx, &format!("{INFO}/{n}.md5sums"))? {
                sums = Some(b);
                break;
            }
        }
        let Some(sums) = sums else { continue };
        let mut problems = Vec::new();
        for line in String::from_utf8_lossy(&sums).lines() {
            let Some((md5, path)) = line.split_once("  ") else {
                continue;
            };
            let path = path.trim_end();
            if !WATCHED.iter().any(|w| path.starts_with(w)) {
                continue;
            }
            if let Some(p) = problem(ctx, &mut listings, &format!("/{path}"), md5.trim())? {
                problems.push(p);
            }
        }
        if problems.is_empty() {
            continue;
        }
        let mut f = Finding::new(
            &MISSING_FILES,
            Severity::Error,
            format!("package {}", pkg.name),
            format!(
                "{} file(s) of package {} are missing, empty or altered",
                problems.len(),
                pkg.name
            ),
        );
        for p in problems.iter().take(MAX_LISTED) {
            f = f.evidence(Evidence::fact(p.clone()));
        }
        if problems.len() > MAX_LISTED {
            f = f.evidence(Evidence::fact(format!(
                "… and {} more",
                problems.len() - MAX_LISTED
            )));
        }
        out.push(f.repair(Some(Repair {
            summary: format!("reinstall {}", pkg.name),
            edits: Vec::new(),
            manual: Some(format!(
                "restore the files from a healthy image of the same release (fix --reference, planned), or run `apt-get install --reinstall {}` in a chroot if apt still works",
                pkg.name
            )),
        })));
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::installed;

    #[test]
    fn only_installed_packages_count() {
        let s = "Package: a\nStatus: install ok installed\nArchitecture: amd64\n\nPackage: b\nStatus: deinstall ok config-files\n\nPackage: c\nStatus: install ok installed\nMulti-Arch: same\nArchitecture: amd64\n";
        let p = installed(s);
        assert_eq!(
            p.iter().map(|p| p.name.as_str()).collect::<Vec<_>>(),
            ["a", "c"]
        );
        assert!(p[1].multi_arch_same);
    }
}
