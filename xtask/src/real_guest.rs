//! A real Debian 12 guest for the slow suites (`RESCUE_SLOW_TESTS=1`).
//!
//! `mmdebstrap` builds a bookworm root from the Debian mirror configured on
//! this machine; the builder turns it into a 2 GiB sparse GPT disk (BIOS
//! boot partition + ext4 root) and installs GRUB for BIOS with the guest's
//! own `grub-install` and `update-grub`, run in a chroot on a loop device.
//! [`boot_and_ssh`] boots an image under `qemu-system-x86_64` (TCG, user
//! mode networking) and proves with `ssh` that it boots and lets root in.
//!
//! Recipe: `fixtures/real-guest/` (package list, overlay files). The result
//! is cached in `<target dir>/real-guest/` under a recipe hash, because
//! `mmdebstrap` takes minutes. The throwaway SSH key pair is generated
//! there and never committed.
//!
//! Must never: touch the host's disks or any loop device but the one it
//! attaches (and always detaches); leave a mount behind on an exit path it
//! controls; delete a directory under which something is still mounted;
//! give qemu any network but user-mode networking with its forward bound
//! to 127.0.0.1; leave a qemu process running after it returns.

use std::collections::BTreeMap;
use std::fs::{self, File, OpenOptions};
use std::io::{Read, Seek, SeekFrom, Write};
use std::os::unix::fs::{OpenOptionsExt, PermissionsExt};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, ExitStatus, Stdio};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use anyhow::{bail, ensure, Context, Result};
use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};

use crate::{disk, tools, Format};

/// Environment variable that enables the slow suites (value `1`).
pub const SLOW_TESTS_ENV: &str = "RESCUE_SLOW_TESTS";
/// Debian suite of the guest.
pub const SUITE: &str = "bookworm";
/// Virtual size of the guest disk.
pub const DISK_SIZE_BYTES: u64 = 2 << 30;
/// GPT disk GUID.
pub const DISK_GUID: &str = "7d4f2b1e-6c3a-4e58-9b0d-1f2e3a4b5c6d";
/// Number of the BIOS boot partition (type EF02, GRUB's core.img).
pub const BIOS_BOOT_PARTITION: u32 = 1;
/// PARTUUID of the BIOS boot partition.
pub const BIOS_BOOT_PARTUUID: &str = "3c8e1a5f-0b2d-4f67-a9c1-5e7d3b2a1f04";
/// Number of the root partition (type 8304, ext4).
pub const ROOT_PARTITION: u32 = 2;
/// PARTUUID of the root partition.
pub const ROOT_PARTUUID: &str = "9a2b4c6d-8e0f-4a1b-b3c5-d7e9f1a3b5c7";
/// UUID of the root ext4 filesystem (`/etc/fstab` and `root=` use it).
pub const ROOT_FS_UUID: &str = "c41d2e8f-5a7b-4c93-8e1f-0b6d4a2c9e57";
/// Host name of the guest (`fixtures/real-guest/overlay/etc/hostname`).
pub const HOSTNAME: &str = "rescue-real-guest";
/// Command [`boot_and_ssh`] callers run when they have nothing better.
pub const DEFAULT_COMMAND: &str = "uname -r; systemctl is-system-running || true";
/// Bound on the wait for SSH. A TCG boot takes 20-60 s on an idle host;
/// two shared cores under a parallel build are much slower.
pub const DEFAULT_BOOT_TIMEOUT: Duration = Duration::from_secs(240);

/// File stem of the images in [`dir`].
const IMAGE_STEM: &str = "debian12";
/// First and last sector of the BIOS boot partition (1 MiB at 1 MiB).
const BIOS_BOOT_SECTORS: (u64, u64) = (2048, 4095);
/// First sector of the root partition (2 MiB); it runs to the disk's end.
const ROOT_FIRST_SECTOR: u64 = 4096;
/// Output kept from one guest command or tool (bytes).
const MAX_CAPTURE_BYTES: u64 = 1 << 20;
/// Lines of the serial log returned in [`BootResult::serial_log_tail`].
const SERIAL_TAIL_LINES: usize = 40;
/// ssh's connect (and banner) timeout while waiting for the guest: slirp
/// accepts the host side at once, so an unbooted guest shows as a banner
/// timeout, and this bounds how late a booted guest is noticed.
const PROBE_CONNECT_TIMEOUT: Duration = Duration::from_secs(5);
/// ssh's connect timeout once the guest answered (a loaded host is slow).
const COMMAND_CONNECT_TIMEOUT: Duration = Duration::from_secs(30);
/// Consecutive "Permission denied" answers after which the wait for SSH
/// ends early: the guest is up and refuses the key.
const REFUSALS_BEFORE_GIVING_UP: u32 = 3;
/// The chroot's PATH: the guest's own tools only.
const CHROOT_PATH: &str = "/usr/sbin:/usr/bin:/sbin:/bin";

// ---------------------------------------------------------------- paths

/// `<target dir>/real-guest/`: images, key pair, logs.
pub fn dir() -> PathBuf {
    crate::target_dir().join("real-guest")
}

/// The committed recipe: `fixtures/real-guest/`.
pub fn recipe_dir() -> PathBuf {
    crate::fixtures_source_dir().join("real-guest")
}

/// Where the built image in `format` lives (it may not exist yet).
pub fn image_path(format: Format) -> PathBuf {
    dir().join(format!("{IMAGE_STEM}.{}", format.extension()))
}

/// The throwaway private key whose public half is root's authorized key.
pub fn private_key_path() -> PathBuf {
    dir().join("id_ed25519")
}

fn public_key_path() -> PathBuf {
    dir().join("id_ed25519.pub")
}

fn stamp_path() -> PathBuf {
    dir().join(format!("{IMAGE_STEM}.stamp"))
}

fn info_path() -> PathBuf {
    dir().join(format!("{IMAGE_STEM}.build.json"))
}

fn build_log_path() -> PathBuf {
    dir().join(format!("{IMAGE_STEM}.build.log"))
}

/// True when the slow suites are enabled (`RESCUE_SLOW_TESTS=1`).
pub fn slow_tests_enabled() -> bool {
    std::env::var(SLOW_TESTS_ENV).is_ok_and(|v| v == "1")
}

// ---------------------------------------------------------------- host tools

/// A host tool the real guest needs and the Debian package shipping it.
struct HostTool {
    name: &'static str,
    package: &'static str,
}

/// Everything `build` and `boot` run on the host.
const HOST_TOOLS: &[HostTool] = &[
    HostTool {
        name: "mmdebstrap",
        package: "mmdebstrap",
    },
    HostTool {
        name: "qemu-system-x86_64",
        package: "qemu-system-x86",
    },
    HostTool {
        name: "qemu-img",
        package: "qemu-utils",
    },
    HostTool {
        name: "ssh",
        package: "openssh-client",
    },
    HostTool {
        name: "ssh-keygen",
        package: "openssh-client",
    },
    HostTool {
        name: "sgdisk",
        package: "gdisk",
    },
    HostTool {
        name: "sfdisk",
        package: "fdisk",
    },
    HostTool {
        name: "mkfs.ext4",
        package: "e2fsprogs",
    },
    HostTool {
        name: "e2fsck",
        package: "e2fsprogs",
    },
    HostTool {
        name: "losetup",
        package: "mount",
    },
    HostTool {
        name: "mount",
        package: "mount",
    },
    HostTool {
        name: "umount",
        package: "mount",
    },
    HostTool {
        name: "chroot",
        package: "coreutils",
    },
    HostTool {
        name: "partx",
        package: "util-linux",
    },
    HostTool {
        name: "mknod",
        package: "coreutils",
    },
];

/// Packages qemu must come from bookworm-backports for: the preinstalled
/// `qemu-utils` is 10.0 from there, and `qemu-system-x86` must match it.
const BACKPORTS_PACKAGES: [&str; 2] = ["qemu-system-x86", "qemu-utils"];

/// Debian packages whose tools are missing on this host (sorted, unique).
pub fn missing_packages() -> Vec<&'static str> {
    let mut v: Vec<&'static str> = HOST_TOOLS
        .iter()
        .filter(|t| tools::find(t.name).is_none())
        .map(|t| t.package)
        .collect();
    v.sort_unstable();
    v.dedup();
    v
}

/// The `apt-get` command lines that install `packages` (qemu from
/// bookworm-backports, the rest from bookworm).
pub fn install_commands(packages: &[&str]) -> Vec<Vec<String>> {
    let base = ["apt-get", "install", "-y", "--no-install-recommends"];
    let (bpo, plain): (Vec<&str>, Vec<&str>) = packages
        .iter()
        .partition(|p| BACKPORTS_PACKAGES.contains(p));
    let mut cmds = Vec::new();
    for (list, backports) in [(bpo, true), (plain, false)] {
        if list.is_empty() {
            continue;
        }
        let mut c: Vec<String> = base.iter().map(|s| s.to_string()).collect();
        if backports {
            c.push("-t".into());
            c.push(format!("{SUITE}-backports"));
        }
        c.extend(list.iter().map(|s| s.to_string()));
        cmds.push(c);
    }
    cmds
}

/// True when an apt source for `<SUITE>-backports` is configured.
fn backports_configured() -> bool {
    let want = format!("{SUITE}-backports");
    apt_sources().iter().any(|s| s.suites.contains(&want))
}

/// Human instructions for installing what is missing.
pub fn install_instructions(packages: &[&str]) -> String {
    let mut s = String::new();
    if packages.iter().any(|p| BACKPORTS_PACKAGES.contains(p)) && !backports_configured() {
        s.push_str(&format!(
            "  # add {SUITE}-backports to /etc/apt/sources.list.d/, e.g.\n  #   deb {} {SUITE}-backports main\n  apt-get update\n",
            mirrors().debian
        ));
    }
    for c in install_commands(packages) {
        s.push_str("  ");
        s.push_str(&c.join(" "));
        s.push('\n');
    }
    s
}

/// Installs the missing packages with apt (root). Adds a
/// `<SUITE>-backports` source on the configured Debian mirror first when
/// none exists, because qemu must come from there.
pub fn install_missing() -> Result<()> {
    let missing = missing_packages();
    if missing.is_empty() {
        return Ok(());
    }
    ensure!(
        tools::is_root(),
        "installing {} needs root; run as root or install them yourself:\n{}",
        missing.join(" "),
        install_instructions(&missing)
    );
    if missing.iter().any(|p| BACKPORTS_PACKAGES.contains(p)) && !backports_configured() {
        let file = format!("/etc/apt/sources.list.d/{SUITE}-backports.sources");
        let text = format!(
            "# Added by `cargo xtask real-guest build --install` (rescue-disk):\n# qemu-system-x86 must match qemu-utils from {SUITE}-backports.\nTypes: deb\nURIs: {}\nSuites: {SUITE}-backports\nComponents: main\nSigned-By: /usr/share/keyrings/debian-archive-keyring.gpg\n",
            mirrors().debian
        );
        println!("writing {file}");
        fs::write(&file, text).with_context(|| format!("writing {file}"))?;
        run_visible(tools::cmd("apt-get")?.arg("update"))?;
    }
    for c in install_commands(&missing) {
        println!("running: {}", c.join(" "));
        let mut cmd = tools::cmd(&c[0])?;
        cmd.args(&c[1..]).env("DEBIAN_FRONTEND", "noninteractive");
        run_visible(&mut cmd)?;
    }
    let still = missing_packages();
    ensure!(
        still.is_empty(),
        "installing host tools: still missing {}",
        still.join(" ")
    );
    Ok(())
}

/// Runs a command with its output on the terminal.
fn run_visible(c: &mut Command) -> Result<()> {
    let line = format!("{c:?}");
    let status = c
        .stdin(Stdio::null())
        .status()
        .with_context(|| format!("starting {line}"))?;
    ensure!(status.success(), "running {line}: {status}");
    Ok(())
}

// ---------------------------------------------------------------- mirrors

/// One apt source: its URIs and suites.
struct AptSource {
    uris: Vec<String>,
    suites: Vec<String>,
}

/// The sources configured in `/etc/apt/sources.list` and
/// `/etc/apt/sources.list.d/*.{list,sources}` (disabled ones skipped).
fn apt_sources() -> Vec<AptSource> {
    let mut out = Vec::new();
    let mut files = vec![PathBuf::from("/etc/apt/sources.list")];
    if let Ok(rd) = fs::read_dir("/etc/apt/sources.list.d") {
        let mut more: Vec<PathBuf> = rd.filter_map(|e| e.ok().map(|e| e.path())).collect();
        more.sort();
        files.extend(more);
    }
    for f in files {
        let Ok(text) = fs::read_to_string(&f) else {
            continue;
        };
        match f.extension().and_then(|e| e.to_str()) {
            Some("list") => out.extend(parse_one_line_sources(&text)),
            Some("sources") => out.extend(parse_deb822_sources(&text)),
            _ => {}
        }
    }
    out
}

fn parse_one_line_sources(text: &str) -> Vec<AptSource> {
    let mut out = Vec::new();
    for line in text.lines() {
        let line = line.split('#').next().unwrap_or("");
        let mut words = line.split_whitespace();
        if words.next() != Some("deb") {
            continue;
        }
        // Skip an options block `[arch=amd64 signed-by=...]`.
        let mut w: Vec<&str> = words.collect();
        if w.first().is_some_and(|x| x.starts_with('[')) {
            match w.iter().position(|x| x.ends_with(']')) {
                Some(end) => {
                    w.drain(..=end);
                }
                None => continue,
            }
        }
        if let [uri, suite, ..] = w[..] {
            out.push(AptSource {
                uris: vec![uri.to_string()],
                suites: vec![suite.to_string()],
            });
        }
    }
    out
}

fn parse_deb822_sources(text: &str) -> Vec<AptSource> {
    let mut out = Vec::new();
    for stanza in text.split("\n\n") {
        let mut fields: BTreeMap<String, String> = BTreeMap::new();
        for line in stanza.lines() {
            if line.starts_with('#') {
                continue;
            }
            if let Some((k, v)) = line.split_once(':') {
                if !k.starts_with(' ') {
                    fields.insert(k.trim().to_ascii_lowercase(), v.trim().to_string());
                }
            }
        }
        let words = |k: &str| -> Vec<String> {
            fields
                .get(k)
                .map(|v| v.split_whitespace().map(str::to_string).collect())
                .unwrap_or_default()
        };
        if !words("types").iter().any(|t| t == "deb")
            || fields.get("enabled").is_some_and(|v| v == "no")
        {
            continue;
        }
        out.push(AptSource {
            uris: words("uris"),
            suites: words("suites"),
        });
    }
    out
}

/// Debian mirrors the guest is built from.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Mirrors {
    /// Main archive (`bookworm`, `bookworm-updates`).
    pub debian: String,
    /// Security archive (`bookworm-security`).
    pub security: String,
}

/// The mirrors this machine's apt uses for bookworm and bookworm-security
/// (deb.debian.org when none is configured).
pub fn mirrors() -> Mirrors {
    let sources = apt_sources();
    let find = |suite: &str| {
        sources
            .iter()
            .find(|s| s.suites.iter().any(|x| x == suite))
            .and_then(|s| s.uris.first().cloned())
    };
    Mirrors {
        debian: find(SUITE).unwrap_or_else(|| "http://deb.debian.org/debian".into()),
        security: find(&format!("{SUITE}-security"))
            .unwrap_or_else(|| "http://deb.debian.org/debian-security".into()),
    }
}

// ---------------------------------------------------------------- recipe

/// The guest's package list (`fixtures/real-guest/packages`).
pub fn packages() -> Result<Vec<String>> {
    let p = recipe_dir().join("packages");
    let text = fs::read_to_string(&p).with_context(|| format!("reading {}", p.display()))?;
    let list: Vec<String> = text
        .lines()
        .map(|l| l.split('#').next().unwrap_or("").trim())
        .filter(|l| !l.is_empty())
        .map(str::to_string)
        .collect();
    for p in &list {
        ensure!(
            p.chars()
                .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || "+-.".contains(c)),
            "package list: {p:?} is not a Debian package name"
        );
    }
    Ok(list)
}

/// Files of the recipe directory that shape the image (all but README),
/// as sorted paths relative to [`recipe_dir`].
fn recipe_files() -> Result<Vec<PathBuf>> {
    fn walk(base: &Path, rel: &Path, out: &mut Vec<PathBuf>) -> Result<()> {
        let d = base.join(rel);
        let mut entries: Vec<_> = fs::read_dir(&d)
            .with_context(|| format!("reading {}", d.display()))?
            .collect::<std::io::Result<_>>()?;
        entries.sort_by_key(|e| e.file_name());
        for e in entries {
            let r = rel.join(e.file_name());
            let t = e.file_type()?;
            if t.is_symlink() {
                bail!("recipe {}: symlinks are not allowed", r.display());
            } else if t.is_dir() {
                walk(base, &r, out)?;
            } else {
                out.push(r);
            }
        }
        Ok(())
    }
    let mut out = Vec::new();
    walk(&recipe_dir(), Path::new(""), &mut out)?;
    out.retain(|p| p != Path::new("README.md"));
    Ok(out)
}

/// The part of this file that shapes the image: everything above the
/// boot section (constants, recipe, build). Editing the boot helper or the
/// CLI does not rebuild the image.
fn build_code() -> &'static str {
    const SOURCE: &str = include_str!("real_guest.rs");
    // Spelt in two pieces so that this line is not the marker itself.
    let marker = concat!(
        "// ",
        "---------------------------------------------------------------- boot"
    );
    match SOURCE.find(marker) {
        Some(end) => &SOURCE[..end],
        None => SOURCE,
    }
}

/// Digest of everything the image is made of: the build code (see
/// `build_code`), the recipe files, the suite and the public key. The
/// mirror's contents are not in it: `build --force` picks up new packages.
pub fn recipe_hash(public_key: &str) -> Result<String> {
    let mut h = Sha256::new();
    h.update(format!("real-guest\0{SUITE}\0{DISK_SIZE_BYTES}\0"));
    h.update(build_code());
    let base = recipe_dir();
    for rel in recipe_files()? {
        let p = base.join(&rel);
        h.update(format!("\0{}\0", rel.display()));
        h.update(fs::read(&p).with_context(|| format!("reading {}", p.display()))?);
    }
    h.update(b"\0");
    h.update(public_key.trim());
    Ok(crate::hex(&h.finalize()))
}

// ---------------------------------------------------------------- cache

/// Facts recorded when the image was built (`debian12.build.json`).
#[derive(Clone, Debug, Serialize, Deserialize)]
pub struct BuildInfo {
    /// [`recipe_hash`] of the build.
    pub recipe_hash: String,
    /// Wall-clock seconds the build took.
    pub build_seconds: f64,
    /// Mirrors `mmdebstrap` used.
    pub mirrors: Mirrors,
    /// The one installed kernel (`linux-image-<version>` package name).
    pub kernel_version: String,
    /// Installed packages and versions, from the guest's dpkg database.
    pub packages: BTreeMap<String, String>,
    /// Bytes allocated on the host by the raw image (it is sparse).
    pub raw_allocated_bytes: u64,
    /// Size of the qcow2 image in bytes.
    pub qcow2_bytes: u64,
}

/// The built guest.
#[derive(Clone, Debug)]
pub struct Image {
    /// Raw image (2 GiB, sparse).
    pub raw: PathBuf,
    /// The same disk as qcow2.
    pub qcow2: PathBuf,
    /// Private key that logs in as root.
    pub private_key: PathBuf,
    /// What the build recorded.
    pub info: BuildInfo,
}

impl Image {
    /// Path of the image in `format`.
    pub fn path(&self, format: Format) -> &Path {
        match format {
            Format::Raw => &self.raw,
            Format::Qcow2 => &self.qcow2,
        }
    }
}

/// The cached image if it is present and its recipe is unchanged.
pub fn cached() -> Result<Option<Image>> {
    let Ok(public_key) = fs::read_to_string(public_key_path()) else {
        return Ok(None);
    };
    if !private_key_path().exists() {
        return Ok(None);
    }
    let hash = recipe_hash(&public_key)?;
    let fresh = fs::read_to_string(stamp_path()).is_ok_and(|s| s.trim() == hash)
        && image_path(Format::Raw).exists()
        && image_path(Format::Qcow2).exists();
    if !fresh {
        return Ok(None);
    }
    let text = fs::read_to_string(info_path())
        .with_context(|| format!("reading {}", info_path().display()))?;
    let info: BuildInfo = serde_json::from_str(&text)
        .with_context(|| format!("parsing {}", info_path().display()))?;
    Ok(Some(Image {
        raw: image_path(Format::Raw),
        qcow2: image_path(Format::Qcow2),
        private_key: private_key_path(),
        info,
    }))
}

/// The image, built first when missing or stale (root, minutes). Safe to
/// call from parallel processes: they wait on a lock file.
pub fn ensure_built() -> Result<Image> {
    build(false)
}

/// Builds the image unless a fresh one is cached (`force` rebuilds).
pub fn build(force: bool) -> Result<Image> {
    let d = dir();
    fs::create_dir_all(&d).with_context(|| format!("creating {}", d.display()))?;
    let lock_path = d.join(".lock");
    let lock =
        File::create(&lock_path).with_context(|| format!("creating {}", lock_path.display()))?;
    lock.lock()
        .with_context(|| format!("locking {}", lock_path.display()))?;
    if !force {
        if let Some(image) = cached()? {
            return Ok(image);
        }
    }
    build_locked()
}

fn build_locked() -> Result<Image> {
    ensure!(
        tools::is_root(),
        "building the real guest needs root (mmdebstrap, losetup, mount, chroot); run `cargo xtask real-guest build` as root"
    );
    let missing = missing_packages();
    ensure!(
        missing.is_empty(),
        "building the real guest: missing Debian packages {}; install them with\n{}or run `cargo xtask real-guest build --install`",
        missing.join(" "),
        install_instructions(&missing)
    );
    remove_stale_work_dirs()?;
    ensure_key()?;
    let public_key = fs::read_to_string(public_key_path())?;
    let hash = recipe_hash(&public_key)?;
    let _ = fs::remove_file(stamp_path());
    let started = Instant::now();
    let work = dir().join(format!(".build-{}", std::process::id()));
    fs::create_dir(&work).with_context(|| format!("creating {}", work.display()))?;
    let mut log = BuildLog::create(&build_log_path())?;
    let built = build_in(&work, &public_key, &mut log).and_then(|(raw, qcow2, mut info)| {
        info.recipe_hash = hash.clone();
        info.build_seconds = started.elapsed().as_secs_f64();
        for (from, to) in [
            (raw, image_path(Format::Raw)),
            (qcow2, image_path(Format::Qcow2)),
        ] {
            fs::rename(&from, &to)
                .with_context(|| format!("moving {} to {}", from.display(), to.display()))?;
        }
        fs::write(info_path(), serde_json::to_string_pretty(&info)? + "\n")
            .with_context(|| format!("writing {}", info_path().display()))?;
        // The stamp last: an interrupted build is never taken as fresh.
        fs::write(stamp_path(), format!("{hash}\n"))
            .with_context(|| format!("writing {}", stamp_path().display()))?;
        Ok(info)
    });
    // The work directory goes only when nothing is mounted under it.
    let removed = remove_work_dir(&work);
    let info = match (built, removed) {
        (Ok(info), Ok(())) => info,
        (Ok(_), Err(e)) => return Err(e),
        (Err(e), Ok(())) => return Err(e.context(log.hint())),
        (Err(e), Err(e2)) => {
            return Err(e.context(format!("{}; also: {e2:#}", log.hint())));
        }
    };
    Ok(Image {
        raw: image_path(Format::Raw),
        qcow2: image_path(Format::Qcow2),
        private_key: private_key_path(),
        info,
    })
}

/// Generates the throwaway ed25519 key pair when missing.
fn ensure_key() -> Result<()> {
    let key = private_key_path();
    if key.exists() && public_key_path().exists() {
        return Ok(());
    }
    let _ = fs::remove_file(&key);
    let _ = fs::remove_file(public_key_path());
    tools::run(
        tools::cmd("ssh-keygen")?
            .args([
                "-q",
                "-t",
                "ed25519",
                "-N",
                "",
                "-C",
                "root@rescue-real-guest",
                "-f",
            ])
            .arg(&key),
    )?;
    fs::set_permissions(&key, fs::Permissions::from_mode(0o600))?;
    Ok(())
}

/// A log of every command of one build (`debian12.build.log`).
struct BuildLog {
    path: PathBuf,
    file: File,
}

impl BuildLog {
    fn create(path: &Path) -> Result<BuildLog> {
        let file = File::create(path).with_context(|| format!("creating {}", path.display()))?;
        Ok(BuildLog {
            path: path.to_path_buf(),
            file,
        })
    }

    fn hint(&self) -> String {
        format!(
            "building the real guest (full log: {})",
            self.path.display()
        )
    }

    /// Runs `c`, logging its command line and output; fails on non-zero
    /// exit with the tail of its stderr.
    fn run(&mut self, c: &mut Command) -> Result<String> {
        let line = format!("{c:?}");
        let _ = writeln!(self.file, "$ {line}");
        let out = c
            .stdin(Stdio::null())
            .output()
            .with_context(|| format!("starting {line}"))?;
        let _ = self.file.write_all(&out.stdout);
        let _ = self.file.write_all(&out.stderr);
        let _ = writeln!(self.file, "# {}", out.status);
        if !out.status.success() {
            let err = String::from_utf8_lossy(&out.stderr);
            let tail: Vec<&str> = err.lines().rev().take(15).collect();
            let tail: Vec<&str> = tail.into_iter().rev().collect();
            bail!("running {line}: {}:\n{}", out.status, tail.join("\n"));
        }
        String::from_utf8(out.stdout).with_context(|| format!("output of {line} is not UTF-8"))
    }
}

// ---------------------------------------------------------------- build

/// Builds raw + qcow2 in `work`; returns their paths and the facts.
fn build_in(
    work: &Path,
    public_key: &str,
    log: &mut BuildLog,
) -> Result<(PathBuf, PathBuf, BuildInfo)> {
    let rootfs = work.join("rootfs");
    let m = mirrors();
    let mut c = tools::cmd("mmdebstrap")?;
    c.args(["--mode=root", "--format=directory", "--variant=minbase"])
        .arg(format!("--include={}", packages()?.join(",")))
        .arg("--aptopt=Acquire::Retries \"3\"")
        .arg(SUITE)
        .arg(&rootfs)
        .arg(format!("deb {} {SUITE} main", m.debian))
        .arg(format!("deb {} {SUITE}-updates main", m.debian))
        .arg(format!("deb {} {SUITE}-security main", m.security));
    eprintln!(
        "real-guest: mmdebstrap {SUITE} from {} (a few minutes)",
        m.debian
    );
    log.run(&mut c)?;

    customize(&rootfs, public_key, log)?;
    let packages = installed_packages(&rootfs, log)?;
    let kernel_version = the_kernel(&packages)?;
    for f in [
        format!("boot/vmlinuz-{kernel_version}"),
        format!("boot/initrd.img-{kernel_version}"),
    ] {
        ensure!(rootfs.join(&f).is_file(), "the guest root lacks /{f}");
    }

    eprintln!("real-guest: making the disk");
    let raw = work.join(format!("{IMAGE_STEM}.raw"));
    disk::create_sparse(&raw, DISK_SIZE_BYTES)?;
    disk::write_gpt(
        &raw,
        DISK_GUID,
        &[
            disk::GptPart {
                number: BIOS_BOOT_PARTITION,
                first_sector: BIOS_BOOT_SECTORS.0,
                last_sector: Some(BIOS_BOOT_SECTORS.1),
                type_code: "EF02",
                guid: BIOS_BOOT_PARTUUID,
                name: "",
            },
            disk::GptPart {
                number: ROOT_PARTITION,
                first_sector: ROOT_FIRST_SECTOR,
                last_sector: None,
                type_code: "8304",
                guid: ROOT_PARTUUID,
                name: "",
            },
        ],
    )?;
    let (root_start_bytes, root_size_bytes) = partition_extent(&raw, ROOT_PARTITION)?;
    let fs_image = work.join("root.ext4");
    // Whole 4 KiB blocks: mkfs uses the file's size.
    disk::create_sparse(&fs_image, root_size_bytes / 4096 * 4096)?;
    log.run(
        tools::cmd("mkfs.ext4")?
            .args(["-q", "-F", "-U", ROOT_FS_UUID, "-d"])
            .arg(&rootfs)
            .arg(&fs_image),
    )?;
    disk::place(&fs_image, &raw, root_start_bytes)?;
    fs::remove_file(&fs_image)?;

    eprintln!("real-guest: installing GRUB (grub-install, update-grub in a chroot)");
    install_grub(&raw, work, &kernel_version, log)?;

    let qcow2 = work.join(format!("{IMAGE_STEM}.qcow2"));
    log.run(
        tools::cmd("qemu-img")?
            .args(["convert", "-f", "raw", "-O", "qcow2"])
            .arg(&raw)
            .arg(&qcow2),
    )?;
    let info = BuildInfo {
        recipe_hash: String::new(),
        build_seconds: 0.0,
        mirrors: m,
        kernel_version,
        packages,
        raw_allocated_bytes: allocated_bytes(&raw)?,
        qcow2_bytes: fs::metadata(&qcow2)?.len(),
    };
    Ok((raw, qcow2, info))
}

/// Host bytes allocated to a (sparse) file.
fn allocated_bytes(p: &Path) -> Result<u64> {
    use std::os::unix::fs::MetadataExt;
    Ok(fs::metadata(p)?.blocks().saturating_mul(512))
}

/// Start and size in bytes of partition `number`, from `sfdisk --json`.
fn partition_extent(image: &Path, number: u32) -> Result<(u64, u64)> {
    let out = tools::stdout(tools::cmd("sfdisk")?.arg("--json").arg(image))?;
    let v: serde_json::Value = serde_json::from_str(&out).context("parsing sfdisk --json")?;
    let t = &v["partitiontable"];
    let sector = t["sectorsize"].as_u64().unwrap_or(512);
    let suffix = number.to_string();
    for p in t["partitions"]
        .as_array()
        .context("sfdisk: no partitions")?
    {
        let node = p["node"].as_str().unwrap_or("");
        // Nodes are the image path plus the number: `debian12.raw2`.
        let tail = node.strip_prefix(&*image.to_string_lossy()).unwrap_or("");
        if tail == suffix {
            let start = p["start"].as_u64().context("sfdisk: partition start")?;
            let size = p["size"].as_u64().context("sfdisk: partition size")?;
            return Ok((
                start
                    .checked_mul(sector)
                    .context("partition start overflows")?,
                size.checked_mul(sector)
                    .context("partition size overflows")?,
            ));
        }
    }
    bail!(
        "sfdisk does not list partition {number} of {}",
        image.display()
    )
}

/// Writes the recipe's overlay, fstab and root's key into the root, and
/// enables systemd-networkd.
fn customize(rootfs: &Path, public_key: &str, log: &mut BuildLog) -> Result<()> {
    let overlay = recipe_dir().join("overlay");
    for rel in recipe_files()? {
        let Ok(inside) = rel.strip_prefix("overlay") else {
            continue;
        };
        let bytes = fs::read(overlay.join(inside))?;
        write_guest_file(rootfs, inside, &bytes, 0o644)?;
    }
    let fstab = format!(
        "# /etc/fstab: static file system information.\n#\n# <file system> <mount point> <type> <options> <dump> <pass>\nUUID={ROOT_FS_UUID} / ext4 rw,discard,errors=remount-ro 0 1\n"
    );
    write_guest_file(rootfs, Path::new("etc/fstab"), fstab.as_bytes(), 0o644)?;
    let ssh_dir = rootfs.join("root/.ssh");
    ensure_plain_dirs(rootfs, Path::new("root/.ssh"))?;
    fs::set_permissions(&ssh_dir, fs::Permissions::from_mode(0o700))?;
    write_guest_file(
        rootfs,
        Path::new("root/.ssh/authorized_keys"),
        format!("{}\n", public_key.trim()).as_bytes(),
        0o600,
    )?;
    log.run(chroot(rootfs)?.args(["systemctl", "enable", "systemd-networkd.service"]))?;
    Ok(())
}

/// Creates the directories of `rel` under `root`, refusing symlinks (the
/// root comes from mmdebstrap, but a link must never lead a write out).
fn ensure_plain_dirs(root: &Path, rel: &Path) -> Result<()> {
    let mut p = root.to_path_buf();
    for comp in rel.components() {
        p.push(comp);
        match fs::symlink_metadata(&p) {
            Ok(m) if m.file_type().is_symlink() => {
                bail!("writing into the guest root: {} is a symlink", p.display())
            }
            Ok(m) if m.is_dir() => {}
            Ok(_) => bail!(
                "writing into the guest root: {} is not a directory",
                p.display()
            ),
            Err(_) => fs::create_dir(&p).with_context(|| format!("creating {}", p.display()))?,
        }
    }
    Ok(())
}

/// Replaces `root/rel` (a file or link) by a regular file with `bytes`.
fn write_guest_file(root: &Path, rel: &Path, bytes: &[u8], mode: u32) -> Result<()> {
    if let Some(parent) = rel.parent() {
        ensure_plain_dirs(root, parent)?;
    }
    let p = root.join(rel);
    if fs::symlink_metadata(&p).is_ok() {
        fs::remove_file(&p).with_context(|| format!("replacing {}", p.display()))?;
    }
    let mut f = OpenOptions::new()
        .write(true)
        .create_new(true)
        .mode(mode)
        .open(&p)
        .with_context(|| format!("creating {}", p.display()))?;
    f.write_all(bytes)?;
    fs::set_permissions(&p, fs::Permissions::from_mode(mode))?;
    Ok(())
}

/// `chroot ROOT` with a clean environment: the guest's tools, C locale.
fn chroot(root: &Path) -> Result<Command> {
    let mut c = tools::cmd("chroot")?;
    c.env_clear()
        .env("PATH", CHROOT_PATH)
        .env("LC_ALL", "C")
        .env("HOME", "/root")
        .env("DEBIAN_FRONTEND", "noninteractive")
        .arg(root);
    Ok(c)
}

/// Installed packages and versions, from the guest's own dpkg-query.
fn installed_packages(rootfs: &Path, log: &mut BuildLog) -> Result<BTreeMap<String, String>> {
    let out = log.run(chroot(rootfs)?.args([
        "dpkg-query",
        "-W",
        "-f",
        "${db:Status-Abbrev}\t${Package}\t${Version}\n",
    ]))?;
    Ok(out
        .lines()
        .filter_map(|l| {
            let mut f = l.split('\t');
            let (status, name, version) = (f.next()?, f.next()?, f.next()?);
            (status.trim() == "ii").then(|| (name.to_string(), version.to_string()))
        })
        .collect())
}

/// The kernel version of the one installed `linux-image-<version>`
/// package (meta packages such as `linux-image-cloud-amd64` have no digit
/// after the prefix).
pub fn kernel_of_packages<'a>(names: impl IntoIterator<Item = &'a str>) -> Vec<String> {
    names
        .into_iter()
        .filter_map(|n| n.strip_prefix("linux-image-"))
        .filter(|v| v.starts_with(|c: char| c.is_ascii_digit()) && !v.ends_with("-unsigned"))
        .map(str::to_string)
        .collect()
}

fn the_kernel(packages: &BTreeMap<String, String>) -> Result<String> {
    let k = kernel_of_packages(packages.keys().map(String::as_str));
    match &k[..] {
        [one] => Ok(one.clone()),
        _ => bail!(
            "the guest has {} kernel packages ({k:?}); the recipe wants exactly one",
            k.len()
        ),
    }
}

/// Attaches the image, mounts its root with a private /dev, /proc and
/// /sys, and runs the guest's `grub-install` and `update-grub`. Everything
/// is released in reverse order on every path.
fn install_grub(raw: &Path, work: &Path, kernel_version: &str, log: &mut BuildLog) -> Result<()> {
    let mnt = work.join("mnt");
    fs::create_dir(&mnt)?;
    let mut att = Attached::attach(raw, log)?;
    let result = grub_steps(&mut att, &mnt, kernel_version, log);
    let released = att.release(log);
    result?;
    released
}

fn grub_steps(
    att: &mut Attached,
    mnt: &Path,
    kernel_version: &str,
    log: &mut BuildLog,
) -> Result<()> {
    let disk_name = att.name()?.to_string();
    let root_part = format!("{disk_name}p{ROOT_PARTITION}");
    let boot_part = format!("{disk_name}p{BIOS_BOOT_PARTITION}");
    att.mount(log, &[Path::new("/dev").join(&root_part).as_os_str()], mnt)?;
    // A private /dev: only the nodes GRUB needs, and the by-uuid link that
    // makes update-grub write root=UUID= (10_linux tests that the link
    // exists; there is no udev here to make it).
    let dev = mnt.join("dev");
    att.mount(
        log,
        &[
            "-t".as_ref(),
            "tmpfs".as_ref(),
            "-o".as_ref(),
            "mode=0755,size=8m".as_ref(),
            "tmpfs".as_ref(),
        ],
        &dev,
    )?;
    for (name, kind, mode, major_minor) in [
        ("null", "c", "0666", "1:3".to_string()),
        ("zero", "c", "0666", "1:5".to_string()),
        ("full", "c", "0666", "1:7".to_string()),
        ("random", "c", "0666", "1:8".to_string()),
        ("urandom", "c", "0666", "1:9".to_string()),
        (disk_name.as_str(), "b", "0600", sysfs_dev(&disk_name)?),
        (boot_part.as_str(), "b", "0600", sysfs_dev(&boot_part)?),
        (root_part.as_str(), "b", "0600", sysfs_dev(&root_part)?),
    ] {
        let (major, minor) = major_minor
            .split_once(':')
            .context("sysfs dev is not MAJOR:MINOR")?;
        log.run(
            tools::cmd("mknod")?
                .args(["-m", mode])
                .arg(dev.join(name))
                .args([kind, major, minor]),
        )?;
    }
    std::os::unix::fs::symlink("/proc/self/fd", dev.join("fd"))?;
    fs::create_dir_all(dev.join("disk/by-uuid"))?;
    fs::create_dir_all(dev.join("disk/by-partuuid"))?;
    std::os::unix::fs::symlink(
        format!("../../{root_part}"),
        dev.join("disk/by-uuid").join(ROOT_FS_UUID),
    )?;
    std::os::unix::fs::symlink(
        format!("../../{root_part}"),
        dev.join("disk/by-partuuid").join(ROOT_PARTUUID),
    )?;
    att.mount(
        log,
        &["-t".as_ref(), "proc".as_ref(), "proc".as_ref()],
        &mnt.join("proc"),
    )?;
    att.mount(
        log,
        &["-t".as_ref(), "sysfs".as_ref(), "sysfs".as_ref()],
        &mnt.join("sys"),
    )?;

    log.run(
        chroot(mnt)?
            .args(["grub-install", "--target=i386-pc"])
            .arg(format!("/dev/{disk_name}")),
    )?;
    log.run(chroot(mnt)?.arg("update-grub"))?;
    let cfg =
        fs::read_to_string(mnt.join("boot/grub/grub.cfg")).context("reading the new grub.cfg")?;
    ensure!(
        cfg.contains(&format!("root=UUID={ROOT_FS_UUID}"))
            && cfg.contains(&format!("/boot/vmlinuz-{kernel_version}")),
        "update-grub wrote a grub.cfg without root=UUID={ROOT_FS_UUID} and /boot/vmlinuz-{kernel_version}; see boot/grub/grub.cfg in the build log"
    );
    Ok(())
}

/// `MAJOR:MINOR` of block device `name` from sysfs.
fn sysfs_dev(name: &str) -> Result<String> {
    let p = Path::new("/sys/class/block").join(name).join("dev");
    Ok(fs::read_to_string(&p)
        .with_context(|| format!("reading {}", p.display()))?
        .trim()
        .to_string())
}

/// The loop device and mounts of one build, released in reverse order.
struct Attached {
    loop_dev: Option<PathBuf>,
    mounts: Vec<PathBuf>,
}

impl Attached {
    /// `losetup --find --show --partscan`, then waits for the partition
    /// nodes (devtmpfs makes them; there is no udev to wait for), adding
    /// them with `partx --add` when the kernel did not.
    fn attach(image: &Path, log: &mut BuildLog) -> Result<Attached> {
        let out = log.run(
            tools::cmd("losetup")?
                .args(["--find", "--show", "--partscan"])
                .arg(image),
        )?;
        let dev = PathBuf::from(out.trim());
        ensure!(
            dev.starts_with("/dev") && dev.to_string_lossy().contains("loop"),
            "losetup printed {:?}, not a loop device",
            out.trim()
        );
        let att = Attached {
            loop_dev: Some(dev.clone()),
            mounts: Vec::new(),
        };
        let part = PathBuf::from(format!("{}p{ROOT_PARTITION}", dev.display()));
        if !wait_for(&part, Duration::from_secs(2)) {
            // A kernel without the GPT parser (CONFIG_EFI_PARTITION unset,
            // as on this project's Firecracker hosts) scans nothing; partx
            // reads the table in userspace and adds the partitions with
            // BLKPG. They go away with the loop device.
            log.run(tools::cmd("partx")?.arg("--add").arg(&dev))?;
        }
        // `att` detaches the device when dropped on the error path.
        ensure!(
            wait_for(&part, Duration::from_secs(10)),
            "attaching {}: the partitions of {} did not appear, not even after partx --add",
            image.display(),
            dev.display()
        );
        Ok(att)
    }

    /// `loop7` for `/dev/loop7`.
    fn name(&self) -> Result<&str> {
        self.loop_dev
            .as_deref()
            .and_then(|p| p.file_name())
            .and_then(|n| n.to_str())
            .context("no loop device attached")
    }

    /// `mount ARGS TARGET`, remembered for release.
    fn mount(
        &mut self,
        log: &mut BuildLog,
        args: &[&std::ffi::OsStr],
        target: &Path,
    ) -> Result<()> {
        log.run(tools::cmd("mount")?.args(args).arg(target))?;
        self.mounts.push(target.to_path_buf());
        Ok(())
    }

    /// Unmounts in reverse order, then detaches the loop device. Stops at
    /// the first mount that will not go (everything below it stays, and
    /// the caller must not delete the directories).
    fn release(&mut self, log: &mut BuildLog) -> Result<()> {
        while let Some(m) = self.mounts.last() {
            let m = m.clone();
            let mut last_err = None;
            for attempt in 0..5 {
                if attempt > 0 {
                    std::thread::sleep(Duration::from_secs(1));
                }
                match log.run(tools::cmd("umount")?.arg(&m)) {
                    Ok(_) => {
                        last_err = None;
                        break;
                    }
                    Err(e) => last_err = Some(e),
                }
            }
            if let Some(e) = last_err {
                return Err(e.context(format!(
                    "unmounting {}; still mounted: {}",
                    m.display(),
                    self.mounts
                        .iter()
                        .map(|p| p.display().to_string())
                        .collect::<Vec<_>>()
                        .join(", ")
                )));
            }
            self.mounts.pop();
        }
        if let Some(dev) = self.loop_dev.take() {
            if let Err(e) = log.run(tools::cmd("losetup")?.arg("-d").arg(&dev)) {
                self.loop_dev = Some(dev);
                return Err(e);
            }
        }
        Ok(())
    }
}

impl Drop for Attached {
    fn drop(&mut self) {
        if self.mounts.is_empty() && self.loop_dev.is_none() {
            return;
        }
        // Last resort (an early `?`): release without a log.
        if let Ok(mut log) = BuildLog::create(&dir().join("release.log")) {
            if let Err(e) = self.release(&mut log) {
                eprintln!("real-guest: releasing after an error failed: {e:#}");
            }
        }
    }
}

/// Waits until `p` exists; false after `timeout`.
fn wait_for(p: &Path, timeout: Duration) -> bool {
    let deadline = Instant::now() + timeout;
    while !p.exists() {
        if Instant::now() > deadline {
            return false;
        }
        std::thread::sleep(Duration::from_millis(100));
    }
    true
}

/// Mount points (from /proc/self/mountinfo) at or under `dir`.
fn mounts_under(dir: &Path) -> Result<Vec<PathBuf>> {
    let text =
        fs::read_to_string("/proc/self/mountinfo").context("reading /proc/self/mountinfo")?;
    let dir = fs::canonicalize(dir).unwrap_or_else(|_| dir.to_path_buf());
    Ok(text
        .lines()
        .filter_map(|l| l.split(' ').nth(4))
        .map(|m| PathBuf::from(unescape_mountinfo(m)))
        .filter(|m| m.starts_with(&dir))
        .collect())
}

/// Undoes mountinfo's octal escapes (`\040` for a space).
fn unescape_mountinfo(s: &str) -> String {
    let b = s.as_bytes();
    let mut out = Vec::with_capacity(b.len());
    let mut i = 0;
    while i < b.len() {
        if b[i] == b'\\' && i + 3 < b.len() {
            let oct = &b[i + 1..i + 4];
            if oct.iter().all(|c| (b'0'..=b'7').contains(c)) {
                let v = oct
                    .iter()
                    .fold(0u32, |acc, c| acc * 8 + u32::from(c - b'0'));
                if let Ok(v) = u8::try_from(v) {
                    out.push(v);
                    i += 4;
                    continue;
                }
            }
        }
        out.push(b[i]);
        i += 1;
    }
    String::from_utf8_lossy(&out).into_owned()
}

/// Removes a work directory, unless something is still mounted under it.
fn remove_work_dir(work: &Path) -> Result<()> {
    if !work.exists() {
        return Ok(());
    }
    let mounted = mounts_under(work)?;
    ensure!(
        mounted.is_empty(),
        "not removing {}: still mounted under it: {}; unmount them (umount), detach the loop device (losetup -d), then delete it",
        work.display(),
        mounted
            .iter()
            .map(|p| p.display().to_string())
            .collect::<Vec<_>>()
            .join(", ")
    );
    fs::remove_dir_all(work).with_context(|| format!("removing {}", work.display()))
}

/// Removes work directories of earlier, interrupted builds.
fn remove_stale_work_dirs() -> Result<()> {
    for e in fs::read_dir(dir())? {
        let e = e?;
        if e.file_name().to_string_lossy().starts_with(".build-") {
            remove_work_dir(&e.path())?;
        }
    }
    Ok(())
}

// ---------------------------------------------------------------- boot

/// How to boot an image (see [`boot`]).
#[derive(Clone, Debug)]
pub struct BootOptions {
    /// The disk image.
    pub image: PathBuf,
    /// Its format.
    pub format: Format,
    /// Shell command run as root over SSH once it answers.
    pub command: String,
    /// Bound on the wait for SSH.
    pub timeout: Duration,
    /// Writes go to a temporary overlay (`snapshot=on`), not the image.
    pub snapshot: bool,
    /// Private key for root.
    pub private_key: PathBuf,
    /// Guest memory.
    pub memory_mib: u32,
    /// Guest CPUs.
    pub cpus: u32,
}

impl BootOptions {
    /// Defaults: [`DEFAULT_COMMAND`], [`DEFAULT_BOOT_TIMEOUT`], writes go
    /// to the image, the real guest's key, 1 GiB, 2 CPUs.
    pub fn new(image: &Path, format: Format) -> BootOptions {
        BootOptions {
            image: image.to_path_buf(),
            format,
            command: DEFAULT_COMMAND.to_string(),
            timeout: DEFAULT_BOOT_TIMEOUT,
            snapshot: false,
            private_key: private_key_path(),
            memory_mib: 1024,
            cpus: 2,
        }
    }
}

/// What one boot showed.
#[derive(Clone, Debug)]
pub struct BootResult {
    /// SSH let root in before the timeout.
    pub ssh_ok: bool,
    /// Stdout of the command (empty when SSH failed).
    pub output: String,
    /// Stderr of the command.
    pub command_stderr: String,
    /// Exit code of the command (`None`: not run, or timed out).
    pub command_status: Option<i32>,
    /// Seconds from starting qemu to the first successful SSH login (or
    /// to giving up).
    pub seconds: f64,
    /// Seconds from starting qemu until it was gone (powered off or
    /// killed).
    pub total_seconds: f64,
    /// The last SSH error (e.g. `Permission denied (publickey)` or
    /// `Connection closed`): why login failed when it did.
    pub last_ssh_error: String,
    /// The last lines of the serial console ("emergency mode", panics).
    pub serial_log_tail: String,
    /// The full serial log (kept in `<target>/real-guest/logs/`).
    pub serial_log: PathBuf,
    /// qemu's own stdout and stderr.
    pub qemu_output: String,
    /// qemu exited by itself after `poweroff` (not killed).
    pub powered_off: bool,
}

/// Boots `image` under qemu (TCG), waits at most `timeout` for SSH as root
/// with the real guest's key, runs `cmd`, powers off. The guest writes to
/// the image (boot a copy to keep one pristine; see [`boot`] for
/// `snapshot`). `Ok` with `ssh_ok == false` when the guest did not let
/// root in; `Err` only when qemu could not be run at all.
pub fn boot_and_ssh(
    image: &Path,
    format: Format,
    cmd: &str,
    timeout: Duration,
) -> Result<BootResult> {
    let mut o = BootOptions::new(image, format);
    o.command = cmd.to_string();
    o.timeout = timeout;
    boot(&o)
}

/// qemu, killed when dropped if still running.
struct Qemu {
    child: Child,
}

impl Drop for Qemu {
    fn drop(&mut self) {
        if let Ok(None) = self.child.try_wait() {
            let _ = self.child.kill();
        }
        let _ = self.child.wait();
    }
}

/// A free TCP port on 127.0.0.1 (closed again before qemu binds it).
fn free_port() -> Result<u16> {
    let l = std::net::TcpListener::bind("127.0.0.1:0").context("finding a free local port")?;
    Ok(l.local_addr()?.port())
}

/// `ssh` to root on the forwarded port, ignoring the user's config, agent
/// and known hosts.
fn ssh(key: &Path, port: u16, connect_timeout: Duration) -> Result<Command> {
    let mut c = tools::cmd("ssh")?;
    c.env_remove("SSH_AUTH_SOCK")
        .args(["-F", "/dev/null", "-i"])
        .arg(key)
        .args([
            "-o",
            "IdentitiesOnly=yes",
            "-o",
            "StrictHostKeyChecking=no",
            "-o",
            "UserKnownHostsFile=/dev/null",
            "-o",
            "BatchMode=yes",
            "-o",
            "LogLevel=ERROR",
            "-o",
        ])
        .arg(format!(
            "ConnectTimeout={}",
            connect_timeout.as_secs().max(1)
        ))
        .arg("-p")
        .arg(port.to_string())
        .arg("root@127.0.0.1");
    Ok(c)
}

/// Output of a command run under a deadline.
struct Timed {
    status: Option<ExitStatus>,
    stdout: String,
    stderr: String,
}

/// Runs `c` with stdout/stderr into files next to `scratch`, killing it
/// after `timeout` (`status` is then `None`).
fn run_timed(c: &mut Command, timeout: Duration, scratch: &Path) -> Result<Timed> {
    let out_p = scratch.with_extension("out");
    let err_p = scratch.with_extension("err");
    let mut child = c
        .stdin(Stdio::null())
        .stdout(File::create(&out_p)?)
        .stderr(File::create(&err_p)?)
        .spawn()
        .with_context(|| format!("starting {c:?}"))?;
    let deadline = Instant::now() + timeout;
    let status = loop {
        if let Some(s) = child.try_wait()? {
            break Some(s);
        }
        if Instant::now() >= deadline {
            let _ = child.kill();
            let _ = child.wait();
            break None;
        }
        std::thread::sleep(Duration::from_millis(100));
    };
    let t = Timed {
        status,
        stdout: read_capped(&out_p)?,
        stderr: read_capped(&err_p)?,
    };
    let _ = fs::remove_file(&out_p);
    let _ = fs::remove_file(&err_p);
    Ok(t)
}

/// A file's text, at most [`MAX_CAPTURE_BYTES`] of it.
fn read_capped(p: &Path) -> Result<String> {
    let mut buf = Vec::new();
    File::open(p)?
        .take(MAX_CAPTURE_BYTES)
        .read_to_end(&mut buf)?;
    Ok(String::from_utf8_lossy(&buf).into_owned())
}

/// The last `lines` lines of a file (from its last 64 KiB), with control
/// characters other than tab removed (the serial line carries escapes).
pub fn file_tail(p: &Path, lines: usize) -> String {
    let Ok(mut f) = File::open(p) else {
        return String::new();
    };
    let len = f.metadata().map(|m| m.len()).unwrap_or(0);
    let _ = f.seek(SeekFrom::Start(len.saturating_sub(64 * 1024)));
    let mut buf = Vec::new();
    let _ = f.take(64 * 1024).read_to_end(&mut buf);
    let text = String::from_utf8_lossy(&buf);
    let clean: Vec<String> = text.lines().map(strip_terminal_codes).collect();
    let start = clean.len().saturating_sub(lines);
    clean[start..].join("\n")
}

/// `line` without ANSI escape sequences (`ESC [ ... final`) and other
/// control characters but tab: systemd colours its status on the console.
fn strip_terminal_codes(line: &str) -> String {
    let mut out = String::with_capacity(line.len());
    let mut chars = line.chars().peekable();
    while let Some(c) = chars.next() {
        if c == '\u{1b}' {
            if chars.peek() == Some(&'[') {
                chars.next();
                // Parameters and intermediates, then one final byte.
                for d in chars.by_ref() {
                    if ('\u{40}'..='\u{7e}').contains(&d) {
                        break;
                    }
                }
            }
            continue;
        }
        if !c.is_control() || c == '\t' {
            out.push(c);
        }
    }
    out
}

/// Boots per `o`; see [`boot_and_ssh`].
pub fn boot(o: &BootOptions) -> Result<BootResult> {
    for t in ["qemu-system-x86_64", "ssh"] {
        ensure!(
            tools::find(t).is_some(),
            "booting a guest: `{t}` is not installed; install with\n{}",
            install_instructions(&missing_packages())
        );
    }
    ensure!(
        o.image.is_file(),
        "booting {}: no such image",
        o.image.display()
    );
    ensure!(
        o.private_key.is_file(),
        "booting {}: no key {}; run `cargo xtask real-guest build` first",
        o.image.display(),
        o.private_key.display()
    );
    let logs = dir().join("logs");
    fs::create_dir_all(&logs)?;
    let stamp = format!(
        "boot-{}-{}",
        SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .map(|d| d.as_millis())
            .unwrap_or(0),
        std::process::id()
    );
    let serial_log = logs.join(format!("{stamp}.serial.log"));
    let qemu_log = logs.join(format!("{stamp}.qemu.log"));
    let scratch = logs.join(format!("{stamp}.ssh"));
    let port = free_port()?;
    // qemu's option syntax doubles commas inside values.
    let image = o.image.to_string_lossy().replace(',', ",,");
    let mut drive = format!("file={image},if=virtio,format={}", o.format.extension());
    if o.snapshot {
        drive.push_str(",snapshot=on");
    }
    let mut c = tools::cmd("qemu-system-x86_64")?;
    c.args(["-machine", "q35", "-accel", "tcg"])
        .args(["-m", &o.memory_mib.to_string(), "-smp", &o.cpus.to_string()])
        .args(["-nographic", "-monitor", "none", "-no-reboot"])
        .arg("-serial")
        .arg(format!(
            "file:{}",
            serial_log.to_string_lossy().replace(',', ",,")
        ))
        .args(["-drive", &drive])
        .arg("-netdev")
        .arg(format!("user,id=n0,hostfwd=tcp:127.0.0.1:{port}-:22"))
        .args(["-device", "virtio-net-pci,netdev=n0"])
        .stdin(Stdio::null())
        .stdout(File::create(&qemu_log)?)
        .stderr(File::create(qemu_log.with_extension("err"))?);
    let started = Instant::now();
    let mut qemu = Qemu {
        child: c.spawn().context("starting qemu-system-x86_64")?,
    };
    let mut result = BootResult {
        ssh_ok: false,
        output: String::new(),
        command_stderr: String::new(),
        command_status: None,
        seconds: 0.0,
        total_seconds: 0.0,
        last_ssh_error: String::new(),
        serial_log_tail: String::new(),
        serial_log: serial_log.clone(),
        qemu_output: String::new(),
        powered_off: false,
    };
    let mut refusals = 0;
    let qemu_exited = loop {
        if let Some(s) = qemu.child.try_wait()? {
            break Some(s);
        }
        if started.elapsed() >= o.timeout {
            break None;
        }
        let left = o.timeout.saturating_sub(started.elapsed());
        let t = run_timed(
            ssh(&o.private_key, port, PROBE_CONNECT_TIMEOUT)?.arg("true"),
            left.min(Duration::from_secs(30)),
            &scratch,
        )?;
        if t.status.is_some_and(|s| s.success()) {
            result.ssh_ok = true;
            break None;
        }
        result.last_ssh_error = match t.status {
            None => "ssh timed out".to_string(),
            Some(s) => format!("{s}: {}", t.stderr.trim()),
        };
        // sshd answered and refused the key: the guest is up and will not
        // change its mind (a few answers, in case sshd was mid-start).
        if t.stderr.contains("Permission denied") {
            refusals += 1;
            if refusals >= REFUSALS_BEFORE_GIVING_UP {
                break None;
            }
        } else {
            refusals = 0;
        }
        std::thread::sleep(Duration::from_secs(1));
    };
    result.seconds = started.elapsed().as_secs_f64();
    if result.ssh_ok {
        let t = run_timed(
            ssh(&o.private_key, port, COMMAND_CONNECT_TIMEOUT)?.arg(&o.command),
            Duration::from_secs(120),
            &scratch,
        )?;
        result.output = t.stdout;
        result.command_stderr = t.stderr;
        result.command_status = t.status.and_then(|s| s.code());
        // The connection may drop as the guest goes down: ignore the result.
        let _ = run_timed(
            ssh(&o.private_key, port, COMMAND_CONNECT_TIMEOUT)?.arg("systemctl poweroff"),
            Duration::from_secs(20),
            &scratch,
        );
        let deadline = Instant::now() + Duration::from_secs(90);
        while Instant::now() < deadline {
            if qemu.child.try_wait()?.is_some() {
                result.powered_off = true;
                break;
            }
            std::thread::sleep(Duration::from_millis(250));
        }
    } else if let Some(s) = qemu_exited {
        result.last_ssh_error = format!("qemu exited ({s}) before SSH answered");
    }
    drop(qemu);
    result.total_seconds = started.elapsed().as_secs_f64();
    result.serial_log_tail = file_tail(&serial_log, SERIAL_TAIL_LINES);
    let mut q = read_capped(&qemu_log).unwrap_or_default();
    q.push_str(&read_capped(&qemu_log.with_extension("err")).unwrap_or_default());
    result.qemu_output = q;
    Ok(result)
}

/// Image format from the file's magic (`QFI\xfb` is qcow2).
pub fn sniff_format(image: &Path) -> Result<Format> {
    let mut magic = [0u8; 4];
    let mut f = File::open(image).with_context(|| format!("opening {}", image.display()))?;
    let n = f.read(&mut magic)?;
    Ok(if n == 4 && magic == *b"QFI\xfb" {
        Format::Qcow2
    } else {
        Format::Raw
    })
}

// ---------------------------------------------------------------- CLI

/// Usage of `cargo xtask real-guest`.
pub const USAGE: &str = "usage: cargo xtask real-guest <command>

commands:
  build [--install] [--force]   build <target>/real-guest/debian12.{raw,qcow2} (root; cached by recipe hash);
                                --install runs apt-get for missing host tools instead of printing it
  boot [IMAGE] [--format raw|qcow2] [--timeout SECONDS] [--write] [-- COMMAND...]
                                boot IMAGE (default: the built raw image) under qemu TCG, wait for ssh as root,
                                run COMMAND (default: uname -r; systemctl is-system-running), power off;
                                writes go to a throwaway overlay unless --write
  tools                         print the apt-get commands for missing host tools";

/// `cargo xtask real-guest ARGS`.
pub fn cli(args: &[String]) -> Result<()> {
    match args.first().map(String::as_str) {
        Some("build") => cli_build(&args[1..]),
        Some("boot") => cli_boot(&args[1..]),
        Some("tools") => {
            let missing = missing_packages();
            if missing.is_empty() {
                println!("all host tools are installed");
            } else {
                print!(
                    "missing: {}\n{}",
                    missing.join(" "),
                    install_instructions(&missing)
                );
            }
            Ok(())
        }
        Some("-h" | "--help" | "help") | None => {
            println!("{USAGE}");
            Ok(())
        }
        Some(other) => bail!("unknown real-guest command {other:?}\n\n{USAGE}"),
    }
}

fn cli_build(args: &[String]) -> Result<()> {
    let (mut install, mut force) = (false, false);
    for a in args {
        match a.as_str() {
            "--install" => install = true,
            "--force" => force = true,
            other => bail!("unknown option {other:?}\n\n{USAGE}"),
        }
    }
    let missing = missing_packages();
    if !missing.is_empty() {
        if install {
            install_missing()?;
        } else {
            bail!(
                "missing host tools (Debian packages {}); install them with\n{}or rerun with --install",
                missing.join(" "),
                install_instructions(&missing)
            );
        }
    }
    let started = Instant::now();
    let was_cached = !force && cached()?.is_some();
    let image = build(force)?;
    let i = &image.info;
    if was_cached {
        println!(
            "cached (recipe {}), built earlier in {:.0}s",
            &i.recipe_hash[..12],
            i.build_seconds
        );
    } else {
        println!("built in {:.1}s", started.elapsed().as_secs_f64());
    }
    println!(
        "raw:   {} ({} GiB virtual, {} MiB allocated)",
        image.raw.display(),
        DISK_SIZE_BYTES >> 30,
        i.raw_allocated_bytes >> 20
    );
    println!(
        "qcow2: {} ({} MiB)",
        image.qcow2.display(),
        i.qcow2_bytes >> 20
    );
    println!("key:   {}", image.private_key.display());
    println!("kernel {}", i.kernel_version);
    for p in [
        format!("linux-image-{}", i.kernel_version),
        "grub-pc".into(),
        "openssh-server".into(),
        "systemd".into(),
    ] {
        println!(
            "{p} {}",
            i.packages.get(&p).map(String::as_str).unwrap_or("?")
        );
    }
    Ok(())
}

fn cli_boot(args: &[String]) -> Result<()> {
    let mut image: Option<PathBuf> = None;
    let mut format: Option<Format> = None;
    let mut timeout = DEFAULT_BOOT_TIMEOUT;
    let mut write = false;
    let mut command: Vec<String> = Vec::new();
    let mut it = args.iter();
    while let Some(a) = it.next() {
        match a.as_str() {
            "--format" => {
                format = Some(match it.next().map(String::as_str) {
                    Some("raw") => Format::Raw,
                    Some("qcow2") => Format::Qcow2,
                    other => bail!("--format wants raw or qcow2, not {other:?}"),
                })
            }
            "--timeout" => {
                let s = it.next().context("--timeout wants seconds")?;
                timeout =
                    Duration::from_secs(s.parse().with_context(|| format!("--timeout {s:?}"))?);
            }
            "--write" => write = true,
            "--" => {
                command.extend(it.by_ref().cloned());
            }
            s if s.starts_with('-') => bail!("unknown option {s:?}\n\n{USAGE}"),
            s if image.is_none() => image = Some(PathBuf::from(s)),
            s => bail!("unexpected argument {s:?} (put the command after --)"),
        }
    }
    let image = image.unwrap_or_else(|| image_path(Format::Raw));
    let format = match format {
        Some(f) => f,
        None => sniff_format(&image)?,
    };
    let mut o = BootOptions::new(&image, format);
    o.timeout = timeout;
    o.snapshot = !write;
    if !command.is_empty() {
        o.command = command.join(" ");
    }
    println!(
        "booting {} ({}, {}) under qemu TCG, waiting up to {}s for ssh",
        image.display(),
        format.extension(),
        if o.snapshot {
            "writes discarded"
        } else {
            "writes kept"
        },
        timeout.as_secs()
    );
    let r = boot(&o)?;
    if !r.ssh_ok {
        bail!(
            "no ssh login after {:.1}s: {}\nserial log {} ends with:\n{}\nqemu said: {}",
            r.seconds,
            r.last_ssh_error,
            r.serial_log.display(),
            r.serial_log_tail,
            r.qemu_output.trim()
        );
    }
    println!("ssh as root ok after {:.1}s", r.seconds);
    println!("$ {}", o.command);
    print!("{}", r.output);
    if !r.command_stderr.is_empty() {
        eprint!("{}", r.command_stderr);
    }
    println!(
        "command exit {}; {} after {:.1}s in all; serial log {}",
        r.command_status.map_or("?".into(), |c| c.to_string()),
        if r.powered_off {
            "powered off"
        } else {
            "qemu killed after the poweroff timeout"
        },
        r.total_seconds,
        r.serial_log.display()
    );
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn kernel_packages_exclude_meta_and_unsigned() {
        let k = kernel_of_packages([
            "linux-image-cloud-amd64",
            "linux-image-6.1.0-56-cloud-amd64",
            "linux-image-6.1.0-56-cloud-amd64-unsigned",
            "linux-base",
        ]);
        assert_eq!(k, vec!["6.1.0-56-cloud-amd64".to_string()]);
    }

    #[test]
    fn sources_of_both_syntaxes_are_read() {
        let one = parse_one_line_sources(
            "# c\ndeb [arch=amd64 signed-by=/k.gpg] http://m/debian bookworm main\ndeb-src http://x y z\n",
        );
        assert_eq!(one.len(), 1);
        assert_eq!(one[0].uris, ["http://m/debian"]);
        assert_eq!(one[0].suites, ["bookworm"]);
        let d = parse_deb822_sources(
            "Types: deb\n# http://snapshot\nURIs: http://a/debian\nSuites: bookworm bookworm-updates\nComponents: main\n\nTypes: deb\nEnabled: no\nURIs: http://b\nSuites: sid\n",
        );
        assert_eq!(d.len(), 1);
        assert_eq!(d[0].suites, ["bookworm", "bookworm-updates"]);
    }

    #[test]
    fn install_commands_take_qemu_from_backports() {
        let c = install_commands(&["mmdebstrap", "qemu-system-x86"]);
        assert_eq!(c.len(), 2);
        assert!(c[0]
            .join(" ")
            .ends_with("-t bookworm-backports qemu-system-x86"));
        assert!(c[1]
            .join(" ")
            .ends_with("--no-install-recommends mmdebstrap"));
    }

    #[test]
    fn build_code_stops_at_the_boot_section() {
        let code = build_code();
        assert!(code.contains("fn build_in("));
        assert!(!code.contains("fn boot_and_ssh("));
    }

    #[test]
    fn terminal_codes_are_stripped() {
        assert_eq!(
            strip_terminal_codes(
                "[\u{1b}[0;32m  OK  \u{1b}[0m] Started \u{1b}[0;1;39mssh\u{1b}[0m.\r"
            ),
            "[  OK  ] Started ssh."
        );
        assert_eq!(strip_terminal_codes("\u{1b}"), "");
        assert_eq!(strip_terminal_codes("a\u{1b}[12"), "a");
    }

    #[test]
    fn mountinfo_escapes_are_undone() {
        assert_eq!(unescape_mountinfo("/a\\040b"), "/a b");
        assert_eq!(unescape_mountinfo("/a\\04"), "/a\\04");
        assert_eq!(unescape_mountinfo("\\"), "\\");
    }

    #[test]
    fn the_recipe_parses() {
        let p = packages().unwrap();
        assert!(p.iter().any(|x| x == "openssh-server"));
        assert!(recipe_files()
            .unwrap()
            .iter()
            .any(|f| f.ends_with("80-dhcp.network")));
    }
}
