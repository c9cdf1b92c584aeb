//! The FAT write engine against the real tools: images made by `mkfs.vfat`
//! and populated with mtools, random operation sequences (deterministic
//! PRNG) applied through [`FatWriter`] and mirrored in a model, then
//! `fsck.fat -n` must be silent and clean, `mdir` must list exactly the
//! model's names and `mtype` must read back exactly the model's bytes.
//! Also: an ESP inside a GPT disk image, refusals of corrupt volumes
//! (nothing written), a failing device (dirty bit left set) and random
//! corruption (no panic).
//!
//! A missing tool fails the test when `RESCUE_REQUIRE_TOOLS=1`, and skips it
//! (with a message) otherwise. `RESCUE_FAT_WRITE_ROUNDS=n` runs n seeds per
//! FAT type instead of one.

use std::collections::{BTreeMap, BTreeSet};
use std::fs;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;

use rescue_guest::fat_write::{FatKind, FatWriter};
use rescue_io::{BlockRead, BlockWrite, Error, ErrorKind, RawFile, Result};

const TOOLS: &[&str] = &[
    "mkfs.vfat",
    "fsck.fat",
    "mcopy",
    "mmd",
    "mdir",
    "mtype",
    "mdel",
];

fn have_tools(tools: &[&str]) -> bool {
    let missing: Vec<&str> = tools
        .iter()
        .copied()
        .filter(|t| {
            Command::new("sh")
                .arg("-c")
                .arg(format!("command -v {t}"))
                .output()
                .map(|o| !o.status.success())
                .unwrap_or(true)
        })
        .collect();
    if missing.is_empty() {
        return true;
    }
    if std::env::var("RESCUE_REQUIRE_TOOLS").as_deref() == Ok("1") {
        panic!("required tools missing: {missing:?}");
    }
    eprintln!("skipping: tools missing: {missing:?}");
    false
}

fn run(cmd: &mut Command) -> Vec<u8> {
    let out = cmd
        .output()
        .unwrap_or_else(|e| panic!("running {cmd:?}: {e}"));
    assert!(
        out.status.success(),
        "{cmd:?} failed: {}\n{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    out.stdout
}

/// An mtools command on `image` (`img@@offset` when the volume is inside a
/// disk image).
fn mtool(tool: &str, image: &str) -> Command {
    let mut c = Command::new(tool);
    c.arg("-i").arg(image);
    c
}

/// xorshift64*: deterministic and good enough to pick operations.
struct Rng(u64);

impl Rng {
    fn next(&mut self) -> u64 {
        self.0 ^= self.0 >> 12;
        self.0 ^= self.0 << 25;
        self.0 ^= self.0 >> 27;
        self.0.wrapping_mul(0x2545_F491_4F6C_DD1D)
    }

    fn below(&mut self, n: usize) -> usize {
        (self.next() % n as u64) as usize
    }

    fn chance(&mut self, percent: u64) -> bool {
        self.next() % 100 < percent
    }

    fn bytes(&mut self, n: usize) -> Vec<u8> {
        (0..n).map(|_| (self.next() >> 24) as u8).collect()
    }
}

/// The expected tree: path as `mdir` shows it -> contents (`None` for a
/// directory). The root is not in the map.
#[derive(Clone, Default)]
struct Model(BTreeMap<String, Option<Vec<u8>>>);

fn parent_of(p: &str) -> &str {
    match p.rfind('/') {
        Some(0) | None => "/",
        Some(i) => &p[..i],
    }
}

fn join(dir: &str, name: &str) -> String {
    if dir == "/" {
        format!("/{name}")
    } else {
        format!("{dir}/{name}")
    }
}

impl Model {
    fn is_dir(&self, p: &str) -> bool {
        p == "/" || matches!(self.0.get(p), Some(None))
    }

    /// The stored path that `p` names, matched without regard to case.
    fn lookup(&self, p: &str) -> Option<String> {
        let mut cur = "/".to_string();
        for comp in p.split('/').filter(|c| !c.is_empty()) {
            if !self.is_dir(&cur) {
                return None;
            }
            let found = self.0.keys().find(|k| {
                parent_of(k) == cur && k[k.rfind('/').unwrap() + 1..].eq_ignore_ascii_case(comp)
            })?;
            cur = found.clone();
        }
        Some(cur)
    }

    fn children(&self, dir: &str) -> Vec<String> {
        self.0
            .keys()
            .filter(|k| parent_of(k) == dir)
            .cloned()
            .collect()
    }

    /// Directories, root included.
    fn dirs(&self) -> Vec<String> {
        let mut v = vec!["/".to_string()];
        v.extend(
            self.0
                .iter()
                .filter(|(_, c)| c.is_none())
                .map(|(k, _)| k.clone()),
        );
        v
    }

    fn files(&self) -> Vec<String> {
        self.0
            .iter()
            .filter(|(_, c)| c.is_some())
            .map(|(k, _)| k.clone())
            .collect()
    }

    /// Resolves the parent of `p` and its last name; `None` when the parent
    /// does not exist or is a file.
    fn parent_and_name(&self, p: &str) -> Option<(String, String)> {
        let parent = self.lookup(parent_of(p))?;
        if !self.is_dir(&parent) {
            return None;
        }
        Some((parent, p[p.rfind('/').unwrap() + 1..].to_string()))
    }

    fn write_file(&mut self, p: &str, data: &[u8]) -> bool {
        let Some((parent, name)) = self.parent_and_name(p) else {
            return false;
        };
        match self.lookup(&join(&parent, &name)) {
            Some(existing) if self.is_dir(&existing) => false,
            Some(existing) => {
                self.0.insert(existing, Some(data.to_vec()));
                true
            }
            None => {
                self.0.insert(join(&parent, &name), Some(data.to_vec()));
                true
            }
        }
    }

    fn create_dir(&mut self, p: &str) -> bool {
        let Some((parent, name)) = self.parent_and_name(p) else {
            return false;
        };
        match self.lookup(&join(&parent, &name)) {
            Some(existing) => self.is_dir(&existing),
            None => {
                self.0.insert(join(&parent, &name), None);
                true
            }
        }
    }

    fn remove(&mut self, p: &str) -> bool {
        let Some(actual) = self.lookup(p) else {
            return false;
        };
        if actual == "/" || (self.is_dir(&actual) && !self.children(&actual).is_empty()) {
            return false;
        }
        self.0.remove(&actual);
        true
    }

    fn rename(&mut self, from: &str, to: &str) -> bool {
        let Some(src) = self.lookup(from) else {
            return false;
        };
        if src == "/" {
            return false;
        }
        let Some((parent, name)) = self.parent_and_name(to) else {
            return false;
        };
        if self.is_dir(&src) && (parent == src || parent.starts_with(&format!("{src}/"))) {
            return false;
        }
        let dst = join(&parent, &name);
        if let Some(existing) = self.lookup(&dst) {
            if existing != src {
                return false;
            }
        }
        let moved: Vec<(String, Option<Vec<u8>>)> = self
            .0
            .iter()
            .filter(|(k, _)| *k == &src || k.starts_with(&format!("{src}/")))
            .map(|(k, v)| (k.clone(), v.clone()))
            .collect();
        for (k, _) in &moved {
            self.0.remove(k);
        }
        for (k, v) in moved {
            self.0.insert(format!("{dst}{}", &k[src.len()..]), v);
        }
        true
    }
}

const NAMES: &[&str] = &[
    "BOOTX64.EFI",
    "grubx64.efi",
    "shimx64.efi",
    "grub.cfg",
    "BOOT",
    "debian",
    "ubuntu",
    "Microsoft",
    "fbx64.efi",
    "BOOTX64.CSV",
    "Long Directory Name",
    "grub.cfg.bak",
    "x",
    "a.b.c",
    "kernel-6.1.0-13-amd64.efi",
    "README.TXT",
    "ABCDEFGH.IJK",
    "abcdefghi.txt",
    "My Boot Files",
    "old",
    "a name that needs three long-name entries.conf",
];

/// Flips the case of some letters so lookups are exercised case-blind.
fn mangle_case(rng: &mut Rng, p: &str) -> String {
    p.chars()
        .map(|c| {
            if rng.chance(30) {
                if c.is_ascii_lowercase() {
                    c.to_ascii_uppercase()
                } else {
                    c.to_ascii_lowercase()
                }
            } else {
                c
            }
        })
        .collect()
}

fn random_data(rng: &mut Rng, cluster: usize) -> Vec<u8> {
    let len = match rng.below(10) {
        0 => 0,
        1..=3 => rng.below(200),
        4..=5 => cluster,
        6..=8 => rng.below(4 * cluster) + 1,
        _ => rng.below(200_000),
    };
    rng.bytes(len)
}

/// An existing path (`existing_percent` of the time) or a new name under a
/// random directory.
fn random_path(rng: &mut Rng, model: &Model, existing_percent: u64) -> String {
    let files: Vec<String> = model.0.keys().cloned().collect();
    let p = if rng.chance(existing_percent) && !files.is_empty() {
        files[rng.below(files.len())].clone()
    } else {
        let dirs = model.dirs();
        let dir = &dirs[rng.below(dirs.len())];
        join(dir, NAMES[rng.below(NAMES.len())])
    };
    mangle_case(rng, &p)
}

/// What a run of random operations exercised, so that a test cannot pass
/// by accident of a seed that does nothing interesting.
#[derive(Debug, Default)]
struct Stats {
    /// Successful and refused operations by kind.
    done: BTreeMap<&'static str, (usize, usize)>,
    /// Directories moved to another parent.
    dir_moves: usize,
    /// Renames that changed only the case of a name.
    case_renames: usize,
}

impl Stats {
    fn count(&mut self, kind: &'static str, ok: bool) {
        let e = self.done.entry(kind).or_default();
        if ok {
            e.0 += 1;
        } else {
            e.1 += 1;
        }
    }

    /// Every kind of operation both succeeded and was refused, and the
    /// directory-moving and case-changing renames happened.
    fn assert_covered(&self) {
        for kind in ["write_file", "create_dir", "remove", "rename"] {
            let (ok, refused) = self.done.get(kind).copied().unwrap_or_default();
            assert!(
                ok > 0 && refused > 0,
                "{kind}: {ok} done, {refused} refused: {self:?}"
            );
        }
        assert!(self.dir_moves > 0 && self.case_renames > 0, "{self:?}");
    }
}

/// Applies `ops` random operations to both the writer and the model,
/// checking that each succeeds exactly when the model says it should.
fn random_ops(w: &FatWriter, model: &mut Model, rng: &mut Rng, ops: usize, stats: &mut Stats) {
    let cluster = w.summary().unwrap().cluster_bytes as usize;
    for i in 0..ops {
        let (kind, what, expected, got): (&str, String, bool, Result<()>) = match rng.below(10) {
            0..=3 => {
                let p = random_path(rng, model, 50);
                let data = random_data(rng, cluster);
                let mut expected = model.clone().write_file(&p, &data);
                let old_len = model
                    .lookup(&p)
                    .and_then(|k| model.0[&k].as_ref().map(Vec::len));
                let free = w.summary().unwrap().free_clusters as usize * cluster;
                let got = w.write_file(p.as_bytes(), &data);
                if let Err(e) = &got {
                    // The model does not count clusters: a refusal for
                    // space must be right about it.
                    if e.to_string().contains("not enough space") {
                        let have = old_len.unwrap_or(0).div_ceil(cluster) * cluster;
                        assert!(data.len() + 2 * cluster > free + have, "{e}");
                        expected = false;
                    }
                }
                if got.is_ok() {
                    model.write_file(&p, &data);
                }
                let what = format!("write_file {p} ({} bytes)", data.len());
                ("write_file", what, expected, got)
            }
            4..=5 => {
                let p = random_path(rng, model, 20);
                let expected = model.clone().create_dir(&p);
                let got = w.create_dir(p.as_bytes());
                if got.is_ok() {
                    model.create_dir(&p);
                }
                ("create_dir", format!("create_dir {p}"), expected, got)
            }
            6..=7 => {
                let p = random_path(rng, model, 90);
                let expected = model.clone().remove(&p);
                let got = w.remove(p.as_bytes());
                if got.is_ok() {
                    model.remove(&p);
                }
                ("remove", format!("remove {p}"), expected, got)
            }
            _ => {
                let from = random_path(rng, model, 100);
                let to = if rng.chance(25) {
                    // Same place, other case: FAT keeps one entry.
                    mangle_case(rng, &model.lookup(&from).unwrap_or(from.clone()))
                } else {
                    random_path(rng, model, 20)
                };
                let expected = model.clone().rename(&from, &to);
                let got = w.rename(from.as_bytes(), to.as_bytes());
                if got.is_ok() {
                    let src = model.lookup(&from).unwrap();
                    if model.is_dir(&src)
                        && model.lookup(parent_of(&to)) != Some(parent_of(&src).to_string())
                    {
                        stats.dir_moves += 1;
                    }
                    let dst = model.lookup(&to);
                    if dst.as_deref() == Some(src.as_str())
                        && !src.ends_with(&to[to.rfind('/').unwrap() + 1..])
                    {
                        stats.case_renames += 1;
                    }
                    model.rename(&from, &to);
                }
                ("rename", format!("rename {from} -> {to}"), expected, got)
            }
        };
        stats.count(
            match kind {
                "write_file" => "write_file",
                "create_dir" => "create_dir",
                "remove" => "remove",
                _ => "rename",
            },
            got.is_ok(),
        );
        match (&got, expected) {
            (Ok(()), true) => {}
            (Err(e), false) => {
                let msg = e.to_string();
                assert!(!msg.contains('\n'), "multi-line message: {msg}");
                assert!(msg.contains(" on "), "message names no path: {msg}");
            }
            _ => panic!("op {i} {what}: model expects success={expected}, got {got:?}"),
        }
    }
}

/// `fsck.fat -n` on `volume_file` must report nothing but its banner and
/// summary, and exit 0.
fn assert_fsck_clean(volume_file: &Path) {
    let out = Command::new("fsck.fat")
        .arg("-n")
        .arg(volume_file)
        .output()
        .unwrap();
    let text =
        String::from_utf8_lossy(&out.stdout).into_owned() + &String::from_utf8_lossy(&out.stderr);
    let lines: Vec<&str> = text.lines().filter(|l| !l.trim().is_empty()).collect();
    assert!(
        out.status.success() && lines.len() == 2 && !text.contains("Dirty"),
        "fsck.fat -n {}:\n{text}",
        volume_file.display()
    );
}

/// `mdir` lists exactly the model, and `mtype` reads back every file.
fn assert_tools_agree(image: &str, model: &Model) {
    let out = run(mtool("mdir", image).args(["-/", "-a", "-b", "::/"]));
    let listed: BTreeSet<String> = String::from_utf8_lossy(&out)
        .lines()
        .filter(|l| !l.is_empty())
        .map(|l| l.trim_start_matches("::").to_string())
        .collect();
    let expected: BTreeSet<String> = model
        .0
        .iter()
        .map(|(k, v)| {
            if v.is_none() {
                format!("{k}/")
            } else {
                k.clone()
            }
        })
        .collect();
    assert_eq!(
        listed,
        expected,
        "mdir vs model: only listed {:?}, only expected {:?}",
        listed.difference(&expected).collect::<Vec<_>>(),
        expected.difference(&listed).collect::<Vec<_>>()
    );
    for f in model.files() {
        let got = run(mtool("mtype", image).arg(format!("::{f}")));
        let want = model.0[&f].as_ref().unwrap();
        assert!(
            &got == want,
            "mtype {f}: {} bytes, model has {}",
            got.len(),
            want.len()
        );
    }
}

fn open_rw(path: &Path) -> Arc<dyn BlockWrite> {
    Arc::new(RawFile::open_read_write(path).unwrap())
}

/// The ESP tree of a Debian guest, plus junk written and deleted so that
/// free clusters hold stale bytes (as on a used volume).
fn populate(dir: &Path, image: &str, rng: &mut Rng) -> Model {
    let mut model = Model::default();
    let files: &[(&str, Vec<u8>)] = &[
        ("/EFI/debian/grub.cfg", b"search.fs_uuid 1234 root\nset prefix=($root)'/boot/grub'\nconfigfile $prefix/grub.cfg\n".to_vec()),
        ("/EFI/debian/shimx64.efi", rng.bytes(3000)),
        ("/EFI/debian/grubx64.efi", rng.bytes(9000)),
        ("/EFI/debian/BOOTX64.CSV", b"shimx64.efi,debian,,This is the boot entry for debian\n".to_vec()),
        ("/EFI/BOOT/BOOTX64.EFI", rng.bytes(3000)),
        ("/EFI/BOOT/fbx64.efi", rng.bytes(1500)),
    ];
    for d in ["/EFI", "/EFI/debian", "/EFI/BOOT"] {
        run(mtool("mmd", image).arg(format!("::{d}")));
        model.0.insert(d.to_string(), None);
    }
    for (i, (dest, content)) in files.iter().enumerate() {
        let src = dir.join(format!("src-{i}"));
        fs::write(&src, content).unwrap();
        run(mtool("mcopy", image).arg(&src).arg(format!("::{dest}")));
        model.0.insert(dest.to_string(), Some(content.clone()));
    }
    let junk = dir.join("junk");
    fs::write(&junk, rng.bytes(300_000)).unwrap();
    run(mtool("mcopy", image).arg(&junk).arg("::/junk.bin"));
    run(mtool("mdel", image).arg("::/junk.bin"));
    model
}

/// Empty files with long names in the root: on FAT32 with 512-byte
/// clusters the root directory has to grow, into a free cluster that holds
/// stale bytes (see [`forget_next_free`]).
fn grow_root(w: &FatWriter, model: &mut Model) {
    for i in 0..8 {
        let p = format!("/root file number {i}.txt");
        w.write_file(p.as_bytes(), b"").unwrap();
        model.write_file(&p, b"");
    }
}

/// Marks the FAT32 FSInfo "next free cluster" hint unknown (a legal value),
/// so that allocation starts from the beginning again and reuses clusters
/// that hold stale bytes, as on a long-used volume. `fatfs` otherwise only
/// moves forward into clusters `mkfs` left zeroed.
fn forget_next_free(img: &Path) {
    let mut b = fs::read(img).unwrap();
    if u16::from_le_bytes([b[22], b[23]]) != 0 {
        return; // FAT12/16: no FSInfo
    }
    let bps = usize::from(u16::from_le_bytes([b[11], b[12]]));
    let fsinfo = usize::from(u16::from_le_bytes([b[48], b[49]])) * bps;
    b[fsinfo + 492..fsinfo + 496].copy_from_slice(&u32::MAX.to_le_bytes());
    fs::write(img, b).unwrap();
}

fn mkfs(img: &Path, args: &[&str], size_kib: u32) {
    let _ = fs::remove_file(img);
    run(Command::new("mkfs.vfat")
        .args(["-C", "-i", "1234ABCD", "-n", "EFISYS"])
        .args(args)
        .arg(img)
        .arg(size_kib.to_string()));
}

fn rounds() -> u64 {
    std::env::var("RESCUE_FAT_WRITE_ROUNDS")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(1)
}

/// Two sessions of random operations per seed on a fresh image, each
/// closed and checked with the tools; the second session reopens what the
/// first wrote (so our own output passes our own consistency check).
fn random_sessions(args: &[&str], size_kib: u32, kind: FatKind, seed: u64) {
    if !have_tools(TOOLS) {
        return;
    }
    for round in 0..rounds() {
        let tmp = tempfile::tempdir().unwrap();
        let img = tmp.path().join("esp.img");
        mkfs(&img, args, size_kib);
        let image = img.to_str().unwrap().to_string();
        let mut rng = Rng(seed.wrapping_add(round.wrapping_mul(0x9E37_79B9_7F4A_7C15)) | 1);
        let mut model = populate(tmp.path(), &image, &mut rng);
        forget_next_free(&img);
        assert_fsck_clean(&img);
        let mut stats = Stats::default();
        for session in 0..2 {
            let w = FatWriter::open(open_rw(&img), "esp").unwrap();
            assert_eq!(w.summary().unwrap().kind, kind);
            if session == 0 {
                grow_root(&w, &mut model);
            }
            random_ops(&w, &mut model, &mut rng, 70, &mut stats);
            w.close().unwrap();
            eprintln!(
                "seed {seed} round {round} session {session}: {} entries",
                model.0.len()
            );
            assert_fsck_clean(&img);
            assert_tools_agree(&image, &model);
        }
        eprintln!("{stats:?}");
        stats.assert_covered();
    }
}

#[test]
fn random_operations_fat12() {
    random_sessions(&["-F", "12", "-s", "2"], 4000, FatKind::Fat12, 12);
}

#[test]
fn random_operations_fat16() {
    random_sessions(&["-F", "16", "-s", "2"], 32768, FatKind::Fat16, 16);
}

#[test]
fn random_operations_fat32() {
    // 512-byte clusters: the root directory grows often, into clusters
    // that hold stale bytes.
    random_sessions(&["-F", "32", "-s", "1"], 40960, FatKind::Fat32, 32);
}

/// A window of a device, writable: the ESP partition of a disk image.
#[derive(Debug)]
struct Window {
    inner: Arc<dyn BlockWrite>,
    start: u64,
    len: u64,
}

impl Window {
    fn check(&self, off: u64, len: usize) -> Result<u64> {
        let end = off.checked_add(len as u64).filter(|&e| e <= self.len);
        match end {
            Some(_) => Ok(self.start + off),
            None => Err(Error::new(ErrorKind::Truncated, "window access").with_offset(off)),
        }
    }
}

impl BlockRead for Window {
    fn size_in_bytes(&self) -> u64 {
        self.len
    }

    fn read_exact_at(&self, off: u64, dst: &mut [u8]) -> Result<()> {
        let abs = self.check(off, dst.len())?;
        self.inner.read_exact_at(abs, dst)
    }

    fn describe(&self) -> String {
        format!("window at {} of {}", self.start, self.inner.describe())
    }
}

impl BlockWrite for Window {
    fn write_all_at(&self, off: u64, src: &[u8]) -> Result<()> {
        let abs = self.check(off, src.len())?;
        self.inner.write_all_at(abs, src)
    }

    fn flush(&self) -> Result<()> {
        self.inner.flush()
    }
}

#[test]
fn esp_partition_inside_gpt_disk() {
    if !have_tools(TOOLS) || !have_tools(&["sgdisk"]) {
        return;
    }
    let tmp = tempfile::tempdir().unwrap();
    let esp = tmp.path().join("esp.img");
    let esp_kib = 40960u64;
    mkfs(&esp, &["-F", "32", "-s", "1"], esp_kib as u32);
    let mut rng = Rng(0xE5F1);
    let mut model = populate(tmp.path(), esp.to_str().unwrap(), &mut rng);
    forget_next_free(&esp);
    let disk = tmp.path().join("disk.img");
    let start = 1024 * 1024u64;
    let len = esp_kib * 1024;
    let total = start + len + 1024 * 1024;
    fs::File::create(&disk).unwrap().set_len(total).unwrap();
    run(Command::new("sgdisk")
        .args(["-n", &format!("1:2048:+{}K", esp_kib), "-t", "1:ef00"])
        .arg(&disk));
    let mut bytes = fs::read(&disk).unwrap();
    bytes[start as usize..(start + len) as usize].copy_from_slice(&fs::read(&esp).unwrap());
    fs::write(&disk, &bytes).unwrap();
    let outside = |b: &[u8]| {
        let mut v = b[..start as usize].to_vec();
        v.extend_from_slice(&b[(start + len) as usize..]);
        v
    };
    let before = outside(&bytes);

    // Devices are shared, not sent across threads (no `Send` bound).
    #[allow(clippy::arc_with_non_send_sync)]
    let dev = Arc::new(Window {
        inner: open_rw(&disk),
        start,
        len,
    });
    let w = FatWriter::open(dev, "p1").unwrap();
    let mut stats = Stats::default();
    grow_root(&w, &mut model);
    random_ops(&w, &mut model, &mut rng, 60, &mut stats);
    w.close().unwrap();

    let after = fs::read(&disk).unwrap();
    assert!(outside(&after) == before, "bytes outside the ESP changed");
    let extracted = tmp.path().join("extracted.img");
    fs::write(&extracted, &after[start as usize..(start + len) as usize]).unwrap();
    assert_fsck_clean(&extracted);
    assert_tools_agree(&format!("{}@@{start}", disk.display()), &model);
    run(Command::new("sgdisk").arg("-v").arg(&disk));
}

/// A small FAT16 image with two files in the root and one directory, and
/// the byte offsets of its structures.
struct Small {
    _tmp: tempfile::TempDir,
    img: PathBuf,
    fat: u64,
    fat_bytes: u64,
    root: u64,
}

fn small() -> Small {
    let tmp = tempfile::tempdir().unwrap();
    let img = tmp.path().join("small.img");
    mkfs(&img, &["-F", "16", "-s", "1"], 8192);
    let image = img.to_str().unwrap().to_string();
    for (name, len) in [("A.TXT", 3000usize), ("B.TXT", 3000)] {
        let src = tmp.path().join(name);
        fs::write(&src, vec![b'a'; len]).unwrap();
        run(mtool("mcopy", &image).arg(&src).arg(format!("::/{name}")));
    }
    run(mtool("mmd", &image).arg("::/DIR"));
    let b = fs::read(&img).unwrap();
    let u16_at = |o: usize| u64::from(u16::from_le_bytes([b[o], b[o + 1]]));
    let bps = u16_at(11);
    let fat = u16_at(14) * bps;
    let fat_bytes = u16_at(22) * bps;
    let root = fat + u64::from(b[16]) * fat_bytes;
    Small {
        _tmp: tmp,
        img,
        fat,
        fat_bytes,
        root,
    }
}

impl Small {
    /// Byte offset of the root entry whose short name is `sfn`.
    fn entry(&self, sfn: &[u8; 11]) -> usize {
        let b = fs::read(&self.img).unwrap();
        (0..512)
            .map(|i| self.root as usize + i * 32)
            .find(|&o| &b[o..o + 11] == sfn)
            .unwrap()
    }

    fn patch(&self, at: u64, bytes: &[u8]) {
        let mut b = fs::read(&self.img).unwrap();
        b[at as usize..at as usize + bytes.len()].copy_from_slice(bytes);
        fs::write(&self.img, b).unwrap();
    }

    /// Opening must fail with a message containing each of `words`, and
    /// write nothing.
    fn assert_refused(&self, words: &[&str]) {
        let before = fs::read(&self.img).unwrap();
        let err = FatWriter::open(open_rw(&self.img), "esp").unwrap_err();
        let msg = err.to_string();
        for w in words {
            assert!(msg.contains(w), "{msg:?} lacks {w:?}");
        }
        assert!(!msg.contains('\n'));
        assert!(
            fs::read(&self.img).unwrap() == before,
            "a refused open wrote"
        );
    }
}

#[test]
fn refuses_dirty_and_corrupt_volumes() {
    if !have_tools(TOOLS) {
        return;
    }
    // Dirty bit (FAT16: byte 0x25).
    let s = small();
    s.patch(0x25, &[1]);
    s.assert_refused(&["dirty", "fsck.fat"]);

    // B.TXT cross-linked onto A.TXT's first cluster.
    let s = small();
    let a = s.entry(b"A       TXT");
    let a_cluster = fs::read(&s.img).unwrap()[a + 26..a + 28].to_vec();
    s.patch(s.entry(b"B       TXT") as u64 + 26, &a_cluster);
    s.assert_refused(&["cross-linked", "/B.TXT", "fsck.fat -a"]);

    // A cluster number past the end of the volume.
    let s = small();
    s.patch(
        s.entry(b"A       TXT") as u64 + 26,
        &0xFFF0u16.to_le_bytes(),
    );
    s.assert_refused(&["/A.TXT", "out of range"]);

    // A chain that loops onto itself, in both FAT copies.
    let s = small();
    let a = s.entry(b"A       TXT");
    let b = fs::read(&s.img).unwrap();
    let first = u16::from_le_bytes([b[a + 26], b[a + 27]]);
    for copy in 0..2 {
        s.patch(
            s.fat + copy * s.fat_bytes + 2 * u64::from(first),
            &first.to_le_bytes(),
        );
    }
    s.assert_refused(&["/A.TXT", "loop"]);

    // FAT copies that differ.
    let s = small();
    s.patch(s.fat + s.fat_bytes + 100, &[0x55]);
    s.assert_refused(&["FAT copy 2 differs"]);

    // A directory without its '.' entry first (as fatfs 0.3 leaves them).
    let s = small();
    let d = s.entry(b"DIR        ");
    let b = fs::read(&s.img).unwrap();
    let cluster = u64::from(u16::from_le_bytes([b[d + 26], b[d + 27]]));
    let data = s.root + 512 * 32;
    let cluster_bytes = u64::from(b[13]) * 512;
    s.patch(
        data + (cluster - 2) * cluster_bytes,
        &[0x41, b'.', 0, 0, 0, 0, 0, 0, 0, 0, 0, 0x0F],
    );
    s.assert_refused(&["/DIR", "'.' and '..'"]);

    // Not a FAT volume at all.
    let s = small();
    s.patch(510, &[0, 0]);
    s.assert_refused(&["boot sector signature"]);
}

#[test]
fn refusals_name_the_path_and_change_nothing() {
    if !have_tools(TOOLS) {
        return;
    }
    let s = small();
    let image = s.img.to_str().unwrap().to_string();
    let w = FatWriter::open(open_rw(&s.img), "esp").unwrap();
    let cases: Vec<(Result<()>, &[&str])> = vec![
        (
            w.create_dir(b"/DIR/a:b"),
            &["/DIR/a:b on esp", "not allowed"],
        ),
        (w.write_file(b"/DIR/x.", b"x"), &["/DIR/x.", "end with"]),
        (w.write_file(b"/DIR/\xff", b"x"), &["UTF-8"]),
        (
            w.write_file(b"/NOPE/x", b"x"),
            &["/NOPE/x", "/NOPE does not exist"],
        ),
        (
            w.write_file(b"/A.TXT/x", b"x"),
            &["/A.TXT/x", "not a directory"],
        ),
        (w.write_file(b"/dir", b"x"), &["/dir", "is a directory"]),
        (w.create_dir(b"/a.txt"), &["/a.txt", "file of that name"]),
        (w.remove(b"/"), &["root"]),
        (w.rename(b"/DIR", b"/dir/sub"), &["/DIR", "into itself"]),
        (w.rename(b"/A.TXT", b"/b.txt"), &["/A.TXT", "exists"]),
        (
            w.write_file(b"/big", &vec![7u8; 9 * 1024 * 1024]),
            &["/big", "not enough space"],
        ),
        (w.write_file(b"/../x", b"x"), &["'..'"]),
    ];
    for (got, words) in cases {
        let msg = got.expect_err("expected a refusal").to_string();
        for word in words {
            assert!(msg.contains(word), "{msg:?} lacks {word:?}");
        }
    }
    w.create_dir(b"/DIR/SUB").unwrap();
    w.write_file(b"/DIR/SUB/f", b"f").unwrap();
    let e = w.remove(b"/dir").unwrap_err().to_string();
    assert!(e.contains("not empty"), "{e}");
    w.close().unwrap();
    assert_fsck_clean(&s.img);
    let mut model = Model::default();
    model.0.insert("/A.TXT".into(), Some(vec![b'a'; 3000]));
    model.0.insert("/B.TXT".into(), Some(vec![b'a'; 3000]));
    model.0.insert("/DIR".into(), None);
    model.0.insert("/DIR/SUB".into(), None);
    model.0.insert("/DIR/SUB/f".into(), Some(b"f".to_vec()));
    assert_tools_agree(&image, &model);
}

/// A device whose writes start failing after a number of them.
#[derive(Debug)]
struct Failing {
    inner: Arc<dyn BlockWrite>,
    writes_left: AtomicUsize,
}

impl BlockRead for Failing {
    fn size_in_bytes(&self) -> u64 {
        self.inner.size_in_bytes()
    }

    fn read_exact_at(&self, off: u64, dst: &mut [u8]) -> Result<()> {
        self.inner.read_exact_at(off, dst)
    }

    fn describe(&self) -> String {
        "failing device".into()
    }
}

impl BlockWrite for Failing {
    fn write_all_at(&self, off: u64, src: &[u8]) -> Result<()> {
        let left = self.writes_left.load(Ordering::SeqCst);
        if left == 0 {
            return Err(Error::new(ErrorKind::Io, "writing").with_detail("injected failure"));
        }
        self.writes_left.store(left - 1, Ordering::SeqCst);
        self.inner.write_all_at(off, src)
    }

    fn flush(&self) -> Result<()> {
        self.inner.flush()
    }
}

#[test]
fn failure_midway_leaves_dirty_bit_and_refuses_more() {
    if !have_tools(TOOLS) {
        return;
    }
    let s = small();
    #[allow(clippy::arc_with_non_send_sync)]
    let dev = Arc::new(Failing {
        inner: open_rw(&s.img),
        writes_left: AtomicUsize::new(4),
    });
    let w = FatWriter::open(dev, "esp").unwrap();
    let e = w
        .write_file(b"/DIR/new.bin", &vec![1u8; 20_000])
        .unwrap_err();
    assert!(e.to_string().contains("fsck.fat -a"), "{e}");
    let e = w.create_dir(b"/OTHER").unwrap_err();
    assert!(e.to_string().contains("refused"), "{e}");
    assert!(w.close().is_err());
    let b = fs::read(&s.img).unwrap();
    assert_eq!(b[0x25] & 1, 1, "the dirty bit must stay set");
    let out = Command::new("fsck.fat")
        .arg("-n")
        .arg(&s.img)
        .output()
        .unwrap();
    assert!(String::from_utf8_lossy(&out.stdout).contains("Dirty bit"));
}

#[test]
fn random_corruption_never_panics() {
    if !have_tools(TOOLS) {
        return;
    }
    let tmp = tempfile::tempdir().unwrap();
    let base = tmp.path().join("base.img");
    mkfs(&base, &["-F", "12", "-s", "1"], 1024);
    let mut rng = Rng(0xC0FFEE);
    populate(tmp.path(), base.to_str().unwrap(), &mut rng);
    let pristine = fs::read(&base).unwrap();
    let img = tmp.path().join("bad.img");
    let (mut opened, mut refused, mut midway) = (0, 0, 0);
    for _ in 0..60 * rounds() {
        let mut b = pristine.clone();
        // Boot sector, FATs, root directory and the first directory
        // clusters all sit in the first 32 KiB.
        for _ in 0..1 + rng.below(8) {
            let at = rng.below(32 * 1024);
            b[at] = (rng.next() >> 16) as u8;
        }
        fs::write(&img, &b).unwrap();
        match FatWriter::open(open_rw(&img), "esp") {
            Ok(w) => {
                opened += 1;
                for _ in 0..10 {
                    let p = join("/EFI", NAMES[rng.below(NAMES.len())]);
                    let len = rng.below(3000);
                    for r in [
                        w.write_file(p.as_bytes(), &rng.bytes(len)),
                        w.create_dir(b"/EFI/new"),
                        w.rename(p.as_bytes(), b"/moved"),
                        w.remove(b"/EFI/debian/grub.cfg"),
                    ] {
                        if let Err(e) = r {
                            let msg = e.to_string();
                            assert!(!msg.contains('\n'));
                            if msg.contains("failed midway") {
                                midway += 1;
                            }
                        }
                    }
                }
                let _ = w.close();
            }
            Err(e) => {
                refused += 1;
                assert!(!e.to_string().contains('\n'));
            }
        }
    }
    eprintln!(
        "corrupted images: {opened} opened, {refused} refused, {midway} changes failed midway"
    );
    assert!(refused > 0);
}
