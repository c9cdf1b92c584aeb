//! Finding and running the external tools the fixtures are made with.
//!
//! The tools live in `/usr/sbin` on Debian, which is not in an ordinary
//! user's `PATH`, so they are looked up in `PATH` *and* the sbin
//! directories and always run by absolute path. Every failure names the
//! command line and carries the tool's stderr.
//!
//! Must never: run a tool through a shell, or report success for a
//! command that exited non-zero.

use std::ffi::OsStr;
use std::os::unix::fs::{MetadataExt, PermissionsExt};
use std::path::{Path, PathBuf};
use std::process::{Command, Output};

use anyhow::{bail, Context, Result};

/// Directories searched after `PATH`.
const SBIN_DIRS: [&str; 4] = ["/usr/local/sbin", "/usr/sbin", "/sbin", "/usr/bin"];

/// Absolute path of an executable named `name`, if installed.
pub fn find(name: &str) -> Option<PathBuf> {
    let path = std::env::var_os("PATH").unwrap_or_default();
    std::env::split_paths(&path)
        .chain(SBIN_DIRS.iter().map(PathBuf::from))
        .map(|d| d.join(name))
        .find(|p| {
            std::fs::metadata(p)
                .map(|m| m.is_file() && m.permissions().mode() & 0o111 != 0)
                .unwrap_or(false)
        })
}

/// A [`Command`] for tool `name`, resolved to its absolute path.
pub fn cmd(name: &str) -> Result<Command> {
    let path = find(name).with_context(|| {
        format!("finding the `{name}` tool: not installed (see fixtures/README.md for the Debian packages)")
    })?;
    let mut c = Command::new(path);
    // Tools must not pick up the caller's locale or timezone.
    c.env("LC_ALL", "C").env("TZ", "UTC");
    Ok(c)
}

fn describe(c: &Command) -> String {
    let mut s = c.get_program().to_string_lossy().into_owned();
    for a in c.get_args() {
        s.push(' ');
        s.push_str(&a.to_string_lossy());
    }
    s
}

/// Runs a command to completion; fails with its stderr when it exits
/// non-zero.
pub fn run(c: &mut Command) -> Result<Output> {
    let line = describe(c);
    let out = c
        .stdin(std::process::Stdio::null())
        .output()
        .with_context(|| format!("starting `{line}`"))?;
    if !out.status.success() {
        bail!(
            "running `{line}`: {}: {}",
            out.status,
            String::from_utf8_lossy(&out.stderr).trim()
        );
    }
    Ok(out)
}

/// Runs a command and returns its stdout as UTF-8.
pub fn stdout(c: &mut Command) -> Result<String> {
    let out = run(c)?;
    String::from_utf8(out.stdout).context("tool output is not UTF-8")
}

/// Shorthand: `run(cmd(name).args(args))`.
pub fn run_tool<I, S>(name: &str, args: I) -> Result<Output>
where
    I: IntoIterator<Item = S>,
    S: AsRef<OsStr>,
{
    run(cmd(name)?.args(args))
}

/// True when the process runs as root (needed for loop devices).
pub fn is_root() -> bool {
    std::fs::metadata("/proc/self")
        .map(|m| m.uid() == 0)
        .unwrap_or(false)
}

/// Sets access and modification time of every path (symlinks themselves,
/// not their targets) to `epoch`, via `touch -h` in batches.
pub fn touch_all(paths: &[PathBuf], epoch: u64) -> Result<()> {
    for chunk in paths.chunks(256) {
        let mut c = cmd("touch")?;
        c.arg("-h").arg("-d").arg(format!("@{epoch}")).arg("--");
        c.args(chunk);
        run(&mut c)?;
    }
    Ok(())
}

/// Tool names a layout needs (see [`crate::missing_tools`]).
pub fn needed_by(layout: &str) -> &'static [&'static str] {
    const EXT4: &[&str] = &["mkfs.ext4", "debugfs", "qemu-img", "blkid", "touch"];
    match layout {
        "gpt-debian" | "big-debian" => &[
            "mkfs.ext4",
            "debugfs",
            "qemu-img",
            "blkid",
            "touch",
            "sgdisk",
            "sfdisk",
            "mkfs.vfat",
            "mcopy",
            "mmd",
        ],
        "overlay" => &[
            "mkfs.ext4",
            "debugfs",
            "qemu-img",
            "qemu-io",
            "blkid",
            "touch",
            "sgdisk",
            "sfdisk",
            "mkfs.vfat",
            "mcopy",
            "mmd",
        ],
        "mbr-rhel" => &[
            "mkfs.ext4",
            "debugfs",
            "qemu-img",
            "blkid",
            "touch",
            "sfdisk",
        ],
        "lvm-rhel" => &[
            "mkfs.ext4",
            "debugfs",
            "qemu-img",
            "blkid",
            "touch",
            "sfdisk",
            "losetup",
            "pvcreate",
            "vgcfgrestore",
            "lvs",
            "pvs",
            "mkswap",
        ],
        _ => EXT4,
    }
}

/// Checks that `path` exists, with a message naming it.
pub fn must_exist(path: &Path) -> Result<()> {
    if !path.exists() {
        bail!("{} was not produced", path.display());
    }
    Ok(())
}
