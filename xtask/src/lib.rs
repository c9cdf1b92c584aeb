//! Fixture factory shared by `cargo xtask` and the test suites.
//!
//! Realistic guest trees committed under `fixtures/trees/` are built into
//! disk images with the real tools (`mkfs.ext4 -d`, `debugfs`, `sgdisk`,
//! `sfdisk`, `mkfs.vfat` + `mcopy`, `pvcreate` + `vgcfgrestore`, `mkswap`,
//! `qemu-img`), deterministically, into `<target dir>/fixtures/`. Next to
//! every image, `<layout>.expect.json` records what the oracles (`blkid`,
//! `sfdisk --json`, `lvs`) and the recipe say a correct reader must find.
//! See `fixtures/README.md` for the index of fixtures.
//!
//! Tests use [`fixture`], [`expect`], [`missing_tools`] and
//! [`build_custom`] (broken variants for checks).
//!
//! Must never: touch the host's disks, LVM state or loop devices beyond
//! the ones it creates (and always releases); write outside the target
//! directory (and `fixtures/demo/` for `cargo xtask demo`).

#![forbid(unsafe_code)]

pub mod disk;
pub mod docs;
pub mod dpkg;
pub mod expect;
pub mod fs_build;
pub mod layout;
pub mod lvm;
pub mod real_guest;
pub mod standins;
pub mod tools;
pub mod tree;

use std::collections::HashSet;
use std::fs::{self, File};
use std::path::{Path, PathBuf};
use std::sync::Mutex;

use anyhow::{bail, ensure, Context, Result};
use serde_json::Value;
use sha2::{Digest, Sha256};

pub use layout::{VolumeId, LAYOUTS};
pub use tree::{Meta, StagedTree};

/// Every timestamp in every fixture: 2024-12-01 00:00:00 UTC.
pub const FIXTURE_EPOCH: u64 = 1_733_011_200;

/// Image format of a fixture.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Format {
    /// Raw disk image (`.raw`), sparse.
    Raw,
    /// qcow2 image (`.qcow2`) converted from the raw one by `qemu-img`.
    Qcow2,
}

impl Format {
    /// File extension without the dot.
    pub fn extension(self) -> &'static str {
        match self {
            Format::Raw => "raw",
            Format::Qcow2 => "qcow2",
        }
    }
}

/// Names of all fixture layouts (see [`layout`]).
pub fn layouts() -> &'static [&'static str] {
    &LAYOUTS
}

/// The repository's `fixtures/` directory (the recipes).
pub fn fixtures_source_dir() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .parent()
        // OK to unwrap-or: xtask/ always has a parent (the workspace root).
        .unwrap_or(Path::new(".."))
        .join("fixtures")
}

/// Cargo's target directory: `CARGO_TARGET_DIR` when set, else the
/// workspace's `target/`.
pub fn target_dir() -> PathBuf {
    match std::env::var_os("CARGO_TARGET_DIR") {
        Some(d) if !d.is_empty() => {
            let p = PathBuf::from(d);
            if p.is_absolute() {
                p
            } else {
                std::env::current_dir().unwrap_or_default().join(p)
            }
        }
        _ => fixtures_source_dir()
            .parent()
            .unwrap_or(Path::new(".."))
            .join("target"),
    }
}

/// Where built fixtures go: `<target dir>/fixtures/`.
pub fn output_dir() -> PathBuf {
    target_dir().join("fixtures")
}

/// True when `RESCUE_REQUIRE_TOOLS=1`: a test that lacks a tool must fail
/// instead of skipping.
pub fn require_tools() -> bool {
    std::env::var("RESCUE_REQUIRE_TOOLS").is_ok_and(|v| v == "1")
}

/// Tools (and privileges) building `layout` needs that this machine lacks.
/// Empty when the layout can be built. Unknown layouts report themselves.
pub fn missing_tools(layout: &str) -> Vec<&'static str> {
    if !layout::is_known(layout) {
        return vec!["(unknown layout)"];
    }
    let mut missing: Vec<&'static str> = tools::needed_by(layout)
        .iter()
        .copied()
        .filter(|t| tools::find(t).is_none())
        .collect();
    if layout == "lvm-rhel" && !tools::is_root() {
        missing.push("root privileges (losetup for LVM metadata)");
    }
    missing
}

/// For tests: `Ok(true)` when `layout` can be built here; `Ok(false)` after
/// printing why it is skipped; an error (test failure) when tools are
/// missing and [`require_tools`] is set.
pub fn available_or_skip(layout: &str) -> Result<bool> {
    let missing = missing_tools(layout);
    if missing.is_empty() {
        return Ok(true);
    }
    let msg = format!(
        "fixture layout {layout} cannot be built here: missing {}",
        missing.join(", ")
    );
    if require_tools() {
        bail!("{msg} (RESCUE_REQUIRE_TOOLS=1)");
    }
    eprintln!("SKIPPED: {msg}");
    Ok(false)
}

/// Path of fixture `layout` in `format`, building it first if its recipe
/// changed (or it was never built). Safe to call from parallel tests.
pub fn fixture(layout: &str, format: Format) -> Result<PathBuf> {
    let out = ensure_fixture(layout)?;
    Ok(out.join(format!("{layout}.{}", format.extension())))
}

/// The expect document of `layout` (see [`expect`] for the schema),
/// building the fixture first if needed.
pub fn expect(layout: &str) -> Result<Value> {
    let out = ensure_fixture(layout)?;
    let p = out.join(format!("{layout}.expect.json"));
    let text = fs::read_to_string(&p).with_context(|| format!("reading {}", p.display()))?;
    serde_json::from_str(&text).with_context(|| format!("parsing {}", p.display()))
}

/// Layouts checked up to date by this process (skip re-hashing).
static FRESH: Mutex<Option<HashSet<String>>> = Mutex::new(None);

fn ensure_fixture(layout: &str) -> Result<PathBuf> {
    ensure!(
        layout::is_known(layout),
        "unknown fixture layout {layout:?}; known: {}",
        LAYOUTS.join(", ")
    );
    let out = output_dir();
    if FRESH
        .lock()
        .map(|s| s.as_ref().is_some_and(|s| s.contains(layout)))
        .unwrap_or(false)
    {
        return Ok(out);
    }
    fs::create_dir_all(&out).with_context(|| format!("creating {}", out.display()))?;
    let lock_path = out.join(".lock");
    let lock =
        File::create(&lock_path).with_context(|| format!("creating {}", lock_path.display()))?;
    // Parallel test processes wait here instead of building the same image.
    lock.lock()
        .with_context(|| format!("locking {}", lock_path.display()))?;
    let result = ensure_built_locked(layout, &out);
    drop(lock);
    result?;
    if let Ok(mut s) = FRESH.lock() {
        s.get_or_insert_with(HashSet::new)
            .insert(layout.to_string());
    }
    Ok(out)
}

fn outputs(layout: &str) -> [String; 3] {
    [
        format!("{layout}.raw"),
        format!("{layout}.qcow2"),
        format!("{layout}.expect.json"),
    ]
}

fn ensure_built_locked(layout: &str, out: &Path) -> Result<()> {
    if layout == "overlay" {
        ensure_built_locked(layout::OVERLAY_BASE, out)?;
    }
    let hash = recipe_hash(layout)?;
    let stamp = out.join(format!("{layout}.stamp"));
    let fresh = fs::read_to_string(&stamp).is_ok_and(|s| s.trim() == hash)
        && outputs(layout).iter().all(|f| out.join(f).exists());
    if fresh {
        return Ok(());
    }
    let _ = fs::remove_file(&stamp);
    let started = std::time::Instant::now();
    build_layout(layout, out)?;
    fs::write(&stamp, format!("{hash}\n"))?;
    eprintln!(
        "built fixture {layout} in {:.1}s into {}",
        started.elapsed().as_secs_f64(),
        out.display()
    );
    Ok(())
}

/// Source files of this crate: part of every recipe hash, so that a change
/// of the building code rebuilds the fixtures.
const CODE: [&str; 10] = [
    include_str!("lib.rs"),
    include_str!("disk.rs"),
    include_str!("dpkg.rs"),
    include_str!("expect.rs"),
    include_str!("fs_build.rs"),
    include_str!("layout.rs"),
    include_str!("lvm.rs"),
    include_str!("standins.rs"),
    include_str!("tools.rs"),
    include_str!("tree.rs"),
];

/// A digest of everything a layout is made of: its tree, manifest,
/// mke2fs.conf, the building code, and for `overlay` its base.
pub fn recipe_hash(layout: &str) -> Result<String> {
    let mut h = Sha256::new();
    h.update(format!("layout {layout}\0"));
    for c in CODE {
        h.update(c.as_bytes());
    }
    let tree = layout::tree_of(layout)?;
    let root = tree::trees_dir().join(tree);
    for f in tree::walk_recipe(tree)? {
        h.update(format!("{}\0{}\0{}\0", f.path, f.is_dir, f.executable));
        if !f.is_dir {
            let p = root.join(&f.path);
            h.update(fs::read(&p).with_context(|| format!("reading {}", p.display()))?);
        }
    }
    for extra in [
        tree::trees_dir().join(format!("{tree}.meta")),
        fixtures_source_dir().join("mke2fs.conf"),
    ] {
        h.update(fs::read(&extra).with_context(|| format!("reading {}", extra.display()))?);
    }
    if layout == "overlay" {
        h.update(recipe_hash(layout::OVERLAY_BASE)?);
    }
    Ok(hex(&h.finalize()))
}

/// Lower-case hex of a digest.
pub fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

/// Edits allowed on a variant before it is built (see [`build_custom`]).
pub struct Customize {
    tree: StagedTree,
    root_debugfs: Vec<String>,
}

impl Customize {
    /// The staged guest tree (templates already substituted, so the real
    /// UUIDs can be read and rewritten).
    pub fn tree(&mut self) -> &mut StagedTree {
        &mut self.tree
    }

    /// Queues a debugfs command for the root filesystem, run after it is
    /// built (e.g. `ssv state 2`, `sif /etc/fstab size 0x7fffffffffff`).
    pub fn root_fs_debugfs(&mut self, command: impl Into<String>) {
        self.root_debugfs.push(command.into());
    }
}

/// A variant image built by [`build_custom`]; its directory is removed on
/// drop.
pub struct Custom {
    dir: tempfile::TempDir,
    name: String,
    /// The raw image.
    pub raw: PathBuf,
    /// The expect document of the variant (oracles run on the variant).
    pub expect: Value,
}

impl Custom {
    /// Directory holding the variant's files.
    pub fn dir(&self) -> &Path {
        self.dir.path()
    }

    /// Converts the variant to qcow2 (once) and returns its path.
    pub fn qcow2(&self) -> Result<PathBuf> {
        let q = self.dir.path().join(format!("{}.qcow2", self.name));
        if !q.exists() {
            to_qcow2(&self.raw, &q, false)?;
        }
        Ok(q)
    }
}

/// Builds a variant of `layout` named `name` after `edit` changed its
/// staged tree (and maybe queued debugfs commands for the root fs). The
/// result lives in a fresh directory under `<target dir>/fixtures/custom/`
/// and is rebuilt on every call (a few seconds), so tests may modify it.
pub fn build_custom(
    name: &str,
    layout: &str,
    edit: impl FnOnce(&mut Customize) -> Result<()>,
) -> Result<Custom> {
    tree::check_rel_path(name)?;
    ensure!(
        !name.contains('/'),
        "variant name {name:?} must be a plain file name"
    );
    ensure!(
        layout != "overlay",
        "variants of the overlay layout are not supported; use gpt-debian"
    );
    let parent = output_dir().join("custom");
    fs::create_dir_all(&parent)?;
    let dir = tempfile::Builder::new()
        .prefix(&format!("{name}-"))
        .tempdir_in(&parent)
        .with_context(|| format!("creating a directory under {}", parent.display()))?;
    let raw = dir.path().join(format!("{name}.raw"));
    let expect = build_image(layout, layout, &raw, dir.path(), Some(Box::new(edit)))?;
    fs::write(
        dir.path().join(format!("{name}.expect.json")),
        serde_json::to_string_pretty(&expect)? + "\n",
    )?;
    Ok(Custom {
        dir,
        name: name.to_string(),
        raw,
        expect,
    })
}

/// A sparse copy of fixture `layout` in `format` inside a fresh temporary
/// directory, for tests that write to the image. For `overlay` in qcow2
/// the backing file is copied too (the relative link keeps working).
pub fn scratch_copy(layout: &str, format: Format) -> Result<(tempfile::TempDir, PathBuf)> {
    let src = fixture(layout, format)?;
    let dir = tempfile::tempdir()?;
    let mut files = vec![src.clone()];
    if layout == "overlay" && format == Format::Qcow2 {
        files.push(fixture(layout::OVERLAY_BASE, Format::Qcow2)?);
    }
    for f in &files {
        let to = dir
            .path()
            .join(f.file_name().context("fixture without a file name")?);
        tools::run(tools::cmd("cp")?.arg("--sparse=always").arg(f).arg(&to))?;
    }
    let p = dir
        .path()
        .join(src.file_name().context("fixture without a file name")?);
    Ok((dir, p))
}

type Edit<'a> = Box<dyn FnOnce(&mut Customize) -> Result<()> + 'a>;

/// Stages, edits, builds and checks one image. `layout` selects the tree
/// and disk layout, `expect_layout` is the name recorded in the expect
/// document. Returns the expect document; the raw image is at `raw`.
fn build_image(
    layout: &str,
    expect_layout: &str,
    raw: &Path,
    dir: &Path,
    edit: Option<Edit<'_>>,
) -> Result<Value> {
    let work = tempfile::Builder::new()
        .prefix(".work-")
        .tempdir_in(dir)
        .context("creating a work directory")?;
    let staged = StagedTree::stage(
        layout::tree_of(layout)?,
        layout::tokens(layout)?,
        &work.path().join("stage"),
    )?;
    let mut c = Customize {
        tree: staged,
        root_debugfs: Vec::new(),
    };
    layout::prepare(layout, &mut c.tree, work.path())?;
    if let Some(edit) = edit {
        edit(&mut c).context("editing the staged tree of the variant")?;
    }
    let firmware: &[&str] = match layout {
        "gpt-debian" | "overlay" | "big-debian" => &["bios", "uefi"],
        "whole-ext4" => &[],
        _ => &["bios"],
    };
    let facts = expect::GuestFacts::read(&c.tree, firmware)?;
    let built = layout::build_raw(layout, &c.tree, raw, work.path(), &c.root_debugfs)
        .with_context(|| format!("building the {layout} image"))?;
    expect::compute(expect_layout, raw, &built, facts, work.path())
}

fn to_qcow2(raw: &Path, qcow2: &Path, compress: bool) -> Result<()> {
    let mut c = tools::cmd("qemu-img")?;
    c.args(["convert", "-f", "raw", "-O", "qcow2"]);
    if compress {
        c.arg("-c");
    }
    c.arg(raw).arg(qcow2);
    tools::run(&mut c)?;
    Ok(())
}

/// Builds `layout` into `out` (raw, qcow2, expect.json), replacing what was
/// there only once everything succeeded. For `overlay`, `out` must already
/// hold `gpt-debian.qcow2`.
pub fn build_layout(layout: &str, out: &Path) -> Result<()> {
    ensure!(
        layout::is_known(layout),
        "unknown fixture layout {layout:?}; known: {}",
        LAYOUTS.join(", ")
    );
    let missing = missing_tools(layout);
    ensure!(
        missing.is_empty(),
        "cannot build fixture {layout}: missing {}",
        missing.join(", ")
    );
    let staging = tempfile::Builder::new()
        .prefix(&format!(".{layout}-"))
        .tempdir_in(out)
        .context("creating a staging directory")?;
    let raw = staging.path().join(format!("{layout}.raw"));
    let expect = build_image(layout, layout, &raw, staging.path(), None)?;
    let qcow2 = staging.path().join(format!("{layout}.qcow2"));
    if layout == "overlay" {
        build_overlay(out, staging.path(), layout)?;
    } else {
        to_qcow2(&raw, &qcow2, false)?;
    }
    let expect_path = staging.path().join(format!("{layout}.expect.json"));
    fs::write(&expect_path, serde_json::to_string_pretty(&expect)? + "\n")?;
    for f in outputs(layout) {
        fs::rename(staging.path().join(&f), out.join(&f))
            .with_context(|| format!("moving {f} into {}", out.display()))?;
    }
    Ok(())
}

/// Cluster size of the qcow2 images qemu-img creates by default.
const QCOW2_CLUSTER: u64 = 64 * 1024;

/// Makes `<layout>.qcow2` in `staging` an overlay of `gpt-debian.qcow2`
/// (named relatively) holding only the clusters where `<layout>.raw`
/// differs from `out/gpt-debian.raw`.
///
/// `qemu-img convert -B` cannot do this from a raw source: with qemu-img
/// 10.0 it copies every allocated cluster of the source into the overlay.
/// So the overlay is created empty with `qemu-img create -b` and the
/// differing clusters are written with `qemu-io write -s <cluster file>`.
fn build_overlay(out: &Path, staging: &Path, layout: &str) -> Result<()> {
    use std::io::Read;
    let base_qcow2 = format!("{}.qcow2", layout::OVERLAY_BASE);
    let base_raw = out.join(format!("{}.raw", layout::OVERLAY_BASE));
    ensure!(
        out.join(&base_qcow2).exists() && base_raw.exists(),
        "building {layout}: {} is missing in {}",
        base_qcow2,
        out.display()
    );
    // The relative backing name must resolve next to the overlay while
    // qemu-io writes it.
    fs::copy(out.join(&base_qcow2), staging.join(&base_qcow2))?;
    let overlay = format!("{layout}.qcow2");
    tools::run(tools::cmd("qemu-img")?.current_dir(staging).args([
        "create",
        "-q",
        "-f",
        "qcow2",
        "-b",
        &base_qcow2,
        "-F",
        "qcow2",
        &overlay,
    ]))?;
    let mut modified = File::open(staging.join(format!("{layout}.raw")))?;
    let mut base = File::open(&base_raw)?;
    ensure!(
        modified.metadata()?.len() == base.metadata()?.len(),
        "{layout}.raw and its base differ in size"
    );
    let (mut a, mut b) = (
        vec![0u8; QCOW2_CLUSTER as usize],
        vec![0u8; QCOW2_CLUSTER as usize],
    );
    let mut io = tools::cmd("qemu-io")?;
    io.current_dir(staging).args(["-f", "qcow2"]);
    let mut offset = 0u64;
    let mut writes = 0;
    loop {
        let n = modified.read(&mut a)?;
        if n == 0 {
            break;
        }
        ensure!(n == a.len(), "short read in {layout}.raw");
        base.read_exact(&mut b)?;
        if a != b {
            if a.iter().all(|&x| x == 0) {
                io.arg("-c")
                    .arg(format!("write -q -z {offset} {QCOW2_CLUSTER}"));
            } else {
                let chunk = format!("cluster-{offset}.bin");
                fs::write(staging.join(&chunk), &a)?;
                io.arg("-c")
                    .arg(format!("write -q -s {chunk} {offset} {QCOW2_CLUSTER}"));
            }
            writes += 1;
        }
        offset += QCOW2_CLUSTER;
    }
    ensure!(writes > 0, "{layout} does not differ from its base");
    io.arg(&overlay);
    tools::run(&mut io)?;
    for e in fs::read_dir(staging)? {
        let p = e?.path();
        if p.file_name()
            .and_then(|n| n.to_str())
            .is_some_and(|n| n.starts_with("cluster-"))
        {
            fs::remove_file(p)?;
        }
    }
    fs::remove_file(staging.join(&base_qcow2))?;
    Ok(())
}

/// Builds the committed demo image: `gpt-debian` with the classic broken
/// fstab line `/dev/sdb1 /data ext4 defaults 0 2` (a device name that is not
/// on this disk: emergency mode at boot), compressed qcow2, written to
/// `dest`.
pub fn build_demo(dest: &Path) -> Result<()> {
    let parent = output_dir().join("custom");
    fs::create_dir_all(&parent)?;
    let dir = tempfile::Builder::new()
        .prefix("demo-")
        .tempdir_in(&parent)?;
    let raw = dir.path().join("demo.raw");
    build_image(
        "gpt-debian",
        "demo",
        &raw,
        dir.path(),
        Some(Box::new(|c: &mut Customize| {
            c.tree()
                .append("etc/fstab", "/dev/sdb1 /data ext4 defaults 0 2\n")?;
            c.tree().mkdir("data", Meta::root(0o755))
        })),
    )?;
    let tmp = dir.path().join("demo.qcow2");
    to_qcow2(&raw, &tmp, true)?;
    if let Some(p) = dest.parent() {
        fs::create_dir_all(p)?;
    }
    fs::copy(&tmp, dest).with_context(|| format!("writing {}", dest.display()))?;
    Ok(())
}

/// Copies one volume of an expect document (`expect(..)["volumes"][i]`)
/// out of `image` (a raw image) into a new sparse file `out`, joining the
/// extents of multi-segment LVs: hand the result to `e2fsck -fn`,
/// `fsck.fat -n` or `blkid`.
pub fn extract_volume(image: &Path, volume: &Value, out: &Path) -> Result<()> {
    let extents = volume["extents"]
        .as_array()
        .context("volume without extents")?;
    let mut parts = Vec::new();
    for e in extents {
        let start = e[0].as_u64().context("extent start")?;
        let len = e[1].as_u64().context("extent length")?;
        parts.push((start, len));
    }
    let total = parts
        .iter()
        .try_fold(0u64, |acc, p| acc.checked_add(p.1))
        .context("extent lengths overflow")?;
    disk::create_sparse(out, total)?;
    let mut done = 0;
    for (start, len) in parts {
        disk::place_range(image, start, Some(len), out, done)?;
        done += len;
    }
    Ok(())
}

/// SHA-256 of a file, hex.
pub fn sha256_file(path: &Path) -> Result<String> {
    let mut f = File::open(path).with_context(|| format!("opening {}", path.display()))?;
    let mut h = Sha256::new();
    let mut buf = vec![0u8; 1 << 16];
    loop {
        let n = std::io::Read::read(&mut f, &mut buf)?;
        if n == 0 {
            break;
        }
        h.update(&buf[..n]);
    }
    Ok(hex(&h.finalize()))
}
