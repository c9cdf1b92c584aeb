//! Filesystem images from staged directories, with the real tools:
//! `mkfs.ext4 -d` then `debugfs -w -f` for owners, modes and ctimes;
//! `mkfs.vfat` then `mmd`/`mcopy` for the ESP; `mkswap` for swap.
//!
//! Determinism: fixed UUID and hash seed, `E2FSPROGS_FAKE_TIME`, the
//! committed `fixtures/mke2fs.conf` instead of the host's, every inode's
//! ctime rewritten by debugfs (mkfs.ext4 copies the staging directory's
//! ctime, which nobody can set); FAT with `--invariant -i VOLID` and mtools
//! with `SOURCE_DATE_EPOCH`, entries created one by one in sorted order.
//!
//! Must never: let a failing debugfs command pass (debugfs exits 0 even
//! when a command fails, so its stderr is checked).

use std::fmt::Write as _;
use std::path::{Path, PathBuf};

use anyhow::{bail, ensure, Context, Result};

use crate::tools;
use crate::tree::{Kind, Meta};

/// Parameters of one ext4 filesystem.
#[derive(Clone, Debug)]
pub struct Ext4Spec {
    /// Filesystem UUID (`mkfs.ext4 -U`).
    pub uuid: String,
    /// Directory hash seed (`-E hash_seed=`), fixed for determinism.
    pub hash_seed: String,
    /// Volume label, if any.
    pub label: Option<String>,
    /// Size of the filesystem in bytes (rounded down to 4 KiB blocks).
    pub size_bytes: u64,
}

/// Builds an ext4 image `out` holding the contents of `src_dir`, then sets
/// owner, mode and times of every inode (`inodes`, paths relative to
/// `src_dir`) and of the root directory (`root_meta`), then runs
/// `extra_debugfs` (variants use it to break the filesystem on purpose).
pub fn build_ext4(
    out: &Path,
    spec: &Ext4Spec,
    src_dir: &Path,
    inodes: &[(String, Kind, Meta)],
    root_meta: Meta,
    extra_debugfs: &[String],
) -> Result<()> {
    let blocks = spec.size_bytes / 4096;
    ensure!(
        blocks >= 1024,
        "ext4 filesystem of {} bytes is too small",
        spec.size_bytes
    );
    // Stamp every staged inode so mkfs.ext4 copies fixed mtimes and atimes.
    let mut paths: Vec<PathBuf> = inodes.iter().map(|(p, _, _)| src_dir.join(p)).collect();
    paths.push(src_dir.to_path_buf());
    tools::touch_all(&paths, crate::FIXTURE_EPOCH)?;

    crate::disk::create_sparse(out, blocks * 4096)?;
    let mut c = tools::cmd("mkfs.ext4")?;
    c.env(
        "MKE2FS_CONFIG",
        crate::fixtures_source_dir().join("mke2fs.conf"),
    )
    .env("E2FSPROGS_FAKE_TIME", crate::FIXTURE_EPOCH.to_string())
    .args([
        "-q", "-F", "-t", "ext4", "-T", "default", "-b", "4096", "-U",
    ])
    .arg(&spec.uuid)
    .arg("-E")
    .arg(format!("hash_seed={},root_owner=0:0", spec.hash_seed));
    if let Some(label) = &spec.label {
        c.arg("-L").arg(label);
    }
    c.arg("-d").arg(src_dir).arg(out).arg(blocks.to_string());
    tools::run(&mut c)?;

    let mut script = String::new();
    let epoch = crate::FIXTURE_EPOCH;
    let mut set = |path: &str, kind: Kind, meta: Meta| {
        let type_bits = match kind {
            Kind::File => 0o100000,
            Kind::Dir => 0o040000,
            Kind::Symlink => 0o120000,
        };
        let mode = type_bits
            | if kind == Kind::Symlink {
                0o777
            } else {
                meta.mode
            };
        // OK to ignore: writing to a String cannot fail.
        let _ = writeln!(script, "sif {path} mode 0{mode:o}");
        let _ = writeln!(script, "sif {path} uid {}", meta.uid);
        let _ = writeln!(script, "sif {path} gid {}", meta.gid);
        for field in ["atime", "mtime", "ctime", "crtime"] {
            let _ = writeln!(script, "sif {path} {field} @{epoch}");
        }
    };
    set("/", Kind::Dir, root_meta);
    for (p, kind, meta) in inodes {
        crate::tree::check_rel_path(p)?;
        set(&format!("/{p}"), *kind, *meta);
    }
    for cmd in extra_debugfs {
        script.push_str(cmd);
        script.push('\n');
    }
    debugfs_script(out, &script)
}

/// Runs a debugfs command script in write mode on `image` and fails if
/// debugfs reported any error.
pub fn debugfs_script(image: &Path, script: &str) -> Result<()> {
    let dir = tempfile::tempdir().context("creating a temporary directory")?;
    let script_path = dir.path().join("commands.debugfs");
    std::fs::write(&script_path, script)?;
    let mut c = tools::cmd("debugfs")?;
    c.env("E2FSPROGS_FAKE_TIME", crate::FIXTURE_EPOCH.to_string())
        .arg("-w")
        .arg("-f")
        .arg(&script_path)
        .arg(image);
    let out = tools::run(&mut c)?;
    let stderr = String::from_utf8_lossy(&out.stderr);
    let errors: Vec<&str> = stderr
        .lines()
        .filter(|l| !l.trim().is_empty() && !l.starts_with("debugfs "))
        .collect();
    if !errors.is_empty() {
        bail!(
            "debugfs on {} reported errors: {}",
            image.display(),
            errors.join("; ")
        );
    }
    Ok(())
}

/// Parameters of a FAT filesystem (the ESP).
#[derive(Clone, Debug)]
pub struct FatSpec {
    /// Volume serial as 8 hex digits (`mkfs.vfat -i`), shown as XXXX-XXXX.
    pub volume_id: String,
    /// Volume label, if any.
    pub label: Option<String>,
    /// Size in bytes.
    pub size_bytes: u64,
    /// FAT width (12, 16 or 32).
    pub fat_bits: u8,
}

/// Builds a FAT image `out` with the contents of `src_dir`.
pub fn build_fat(out: &Path, spec: &FatSpec, src_dir: &Path) -> Result<()> {
    crate::disk::create_sparse(out, spec.size_bytes)?;
    let mut c = tools::cmd("mkfs.vfat")?;
    // --invariant first: it would otherwise override -i.
    c.arg("--invariant")
        .arg("-i")
        .arg(&spec.volume_id)
        .arg("-F")
        .arg(spec.fat_bits.to_string());
    if let Some(label) = &spec.label {
        c.arg("-n").arg(label);
    }
    c.arg(out);
    tools::run(&mut c)?;

    let mut entries = Vec::new();
    collect(src_dir, src_dir, &mut entries)?;
    entries.sort();
    let files: Vec<PathBuf> = entries.iter().map(|(rel, _)| src_dir.join(rel)).collect();
    tools::touch_all(&files, crate::FIXTURE_EPOCH)?;
    let image_arg = out.as_os_str();
    for (rel, is_dir) in entries {
        let target = format!("::/{rel}");
        let mut c = tools::cmd(if is_dir { "mmd" } else { "mcopy" })?;
        c.env("MTOOLS_SKIP_CHECK", "1")
            .env("SOURCE_DATE_EPOCH", crate::FIXTURE_EPOCH.to_string())
            .env("MTOOLSRC", "/dev/null")
            .arg("-i")
            .arg(image_arg);
        if !is_dir {
            c.arg("-m").arg("-Q").arg(src_dir.join(&rel));
        }
        c.arg(&target);
        tools::run(&mut c)?;
    }
    Ok(())
}

fn collect(root: &Path, dir: &Path, out: &mut Vec<(String, bool)>) -> Result<()> {
    for e in std::fs::read_dir(dir).with_context(|| format!("reading {}", dir.display()))? {
        let p = e?.path();
        let md = std::fs::symlink_metadata(&p)?;
        let rel = p
            .strip_prefix(root)?
            .to_str()
            .context("non-UTF-8 ESP path")?
            .to_string();
        if md.is_dir() {
            out.push((rel, true));
            collect(root, &p, out)?;
        } else if md.is_file() {
            out.push((rel, false));
        } else {
            bail!(
                "{} cannot be stored on FAT (only files and directories)",
                p.display()
            );
        }
    }
    Ok(())
}

/// Makes a swap area image of `size_bytes` with a fixed UUID.
pub fn build_swap(out: &Path, uuid: &str, size_bytes: u64) -> Result<()> {
    crate::disk::create_sparse(out, size_bytes)?;
    tools::run(tools::cmd("mkswap")?.arg("-U").arg(uuid).arg(out))?;
    Ok(())
}
