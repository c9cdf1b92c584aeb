//! Shared helpers for the journal replay tests: running the real tools
//! (mkfs.ext4, losetup, mount, e2fsck, debugfs), making dirty filesystems
//! with the real kernel, and the oracles that judge our replay.
//!
//! A test that needs a missing tool (or root, for loop mounts) skips with a
//! message, or fails when `RESCUE_REQUIRE_TOOLS=1` is set. Every mount and
//! loop device is released by a guard, even when a test fails.

#![allow(dead_code)]

pub mod dirty;
pub mod synth;

use std::collections::BTreeMap;
use std::fs::File;
use std::io::{Read, Write};
use std::os::unix::fs::FileExt;
use std::path::{Path, PathBuf};
use std::process::{Command, Output, Stdio};
use std::sync::Arc;

use rescue_io::{BlockRead, Device};

/// PATH with the sbin directories where the tools live.
fn path_env() -> String {
    let base = std::env::var("PATH").unwrap_or_default();
    format!("{base}:/usr/local/sbin:/usr/sbin:/sbin")
}

fn find_tool(name: &str) -> Option<PathBuf> {
    path_env()
        .split(':')
        .map(|d| Path::new(d).join(name))
        .find(|p| p.is_file())
}

fn require_tools() -> bool {
    std::env::var("RESCUE_REQUIRE_TOOLS").is_ok_and(|v| v == "1")
}

/// True when all `tools` are installed. Otherwise skips (prints why and
/// returns false) or, under `RESCUE_REQUIRE_TOOLS=1`, fails the test.
pub fn have_tools(test: &str, tools: &[&str]) -> bool {
    let missing: Vec<_> = tools.iter().filter(|t| find_tool(t).is_none()).collect();
    if missing.is_empty() {
        return true;
    }
    if require_tools() {
        panic!("{test}: required tools missing: {missing:?} (RESCUE_REQUIRE_TOOLS=1)");
    }
    eprintln!("SKIP {test}: tools missing: {missing:?}");
    false
}

/// True when running as root with loop devices and a kernel ext4 driver.
/// Otherwise skips, or fails under `RESCUE_REQUIRE_TOOLS=1`.
pub fn have_kernel_ext4(test: &str) -> bool {
    if !have_tools(
        test,
        &[
            "mkfs.ext4",
            "losetup",
            "mount",
            "umount",
            "e2fsck",
            "debugfs",
            "dumpe2fs",
        ],
    ) {
        return false;
    }
    let status = std::fs::read_to_string("/proc/self/status").unwrap_or_default();
    let uid = status
        .lines()
        .find_map(|l| l.strip_prefix("Uid:"))
        .and_then(|l| l.split_whitespace().nth(1))
        .unwrap_or("1");
    let ext4 = std::fs::read_to_string("/proc/filesystems")
        .unwrap_or_default()
        .lines()
        .any(|l| l.split_whitespace().last() == Some("ext4"));
    if uid == "0" && Path::new("/dev/loop-control").exists() && ext4 {
        return true;
    }
    if require_tools() {
        panic!(
            "{test}: needs root, loop devices and the kernel ext4 driver (RESCUE_REQUIRE_TOOLS=1)"
        );
    }
    eprintln!("SKIP {test}: needs root, /dev/loop-control and ext4 in /proc/filesystems");
    false
}

/// Runs a command and returns its output whatever its status.
pub fn try_run(prog: &str, args: &[&str]) -> Output {
    try_run_env(prog, args, &[])
}

pub fn try_run_env(prog: &str, args: &[&str], envs: &[(&str, &str)]) -> Output {
    let exe = find_tool(prog).unwrap_or_else(|| PathBuf::from(prog));
    let mut cmd = Command::new(exe);
    cmd.args(args)
        .env("PATH", path_env())
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped());
    for (k, v) in envs {
        cmd.env(k, v);
    }
    cmd.output()
        .unwrap_or_else(|e| panic!("spawning {prog}: {e}"))
}

/// Runs a command, failing the test unless it succeeds.
pub fn run(prog: &str, args: &[&str]) -> Output {
    let out = try_run(prog, args);
    assert!(
        out.status.success(),
        "{prog} {args:?} failed ({}):\nstdout: {}\nstderr: {}",
        out.status,
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    out
}

pub fn stdout(out: &Output) -> String {
    String::from_utf8_lossy(&out.stdout).into_owned()
}

/// Opens an image file read-only through the block layer.
pub fn open(path: &Path) -> Device {
    rescue_io::open(path, rescue_io::OpenOptions::default())
        .unwrap()
        .device
}

/// Writes every byte of `dev` to `path`, leaving zero chunks sparse.
pub fn write_out(dev: &dyn BlockRead, path: &Path) {
    let f = File::create(path).unwrap();
    let size = dev.size_in_bytes();
    f.set_len(size).unwrap();
    let mut buf = vec![0u8; 1 << 16];
    let mut pos = 0u64;
    while pos < size {
        let n = (size - pos).min(buf.len() as u64) as usize;
        dev.read_exact_at(pos, &mut buf[..n]).unwrap();
        if buf[..n].iter().any(|&b| b != 0) {
            f.write_all_at(&buf[..n], pos).unwrap();
        }
        pos += n as u64;
    }
}

pub fn read_file(path: &Path) -> Vec<u8> {
    let mut v = Vec::new();
    File::open(path).unwrap().read_to_end(&mut v).unwrap();
    v
}

/// Copies a file keeping holes.
pub fn copy_sparse(from: &Path, to: &Path) {
    run(
        "cp",
        &[
            "--sparse=always",
            from.to_str().unwrap(),
            to.to_str().unwrap(),
        ],
    );
}

/// A loop device with a mounted filesystem; unmounted and detached on drop.
pub struct Mounted {
    pub dev: String,
    pub dir: PathBuf,
    mounted: bool,
}

impl Mounted {
    /// Attaches `image` to a loop device and mounts it on `dir` with
    /// `fstype` and `options` (may be empty).
    pub fn new(image: &Path, dir: &Path, fstype: &str, options: &str) -> Mounted {
        std::fs::create_dir_all(dir).unwrap();
        let out = run("losetup", &["-f", "--show", image.to_str().unwrap()]);
        let dev = stdout(&out).trim().to_string();
        let mut m = Mounted {
            dev,
            dir: dir.to_path_buf(),
            mounted: false,
        };
        let mut args = vec!["-t", fstype];
        if !options.is_empty() {
            args.extend(["-o", options]);
        }
        args.extend([m.dev.as_str(), dir.to_str().unwrap()]);
        run("mount", &args);
        m.mounted = true;
        m
    }

    /// Unmounts now (the drop would too), failing the test on error.
    pub fn unmount(mut self) {
        self.mounted = false;
        run("umount", &[self.dir.to_str().unwrap()]);
    }

    pub fn path(&self, rel: &str) -> PathBuf {
        self.dir.join(rel)
    }
}

impl Drop for Mounted {
    fn drop(&mut self) {
        if self.mounted {
            let dir = self.dir.to_str().unwrap_or_default().to_string();
            if !try_run("umount", &[&dir]).status.success() {
                // Never leave a mount behind: detach it lazily.
                let _ = try_run("umount", &["-l", &dir]);
            }
        }
        let _ = try_run("losetup", &["-d", &self.dev]);
    }
}

/// `sync -f DIR`: syncfs of the filesystem mounted on `dir` only. A global
/// `sync` would also flush the filesystems of tests running in parallel and
/// write their journaled metadata home behind their backs.
pub fn syncfs(dir: &Path) {
    run("sync", &["-f", dir.to_str().unwrap()]);
}

/// Writes `data` to `path` and fsyncs nothing (the caller syncs).
pub fn write(path: &Path, data: &[u8]) {
    let mut f = File::create(path).unwrap();
    f.write_all(data).unwrap();
}

/// Deterministic pseudo-random numbers for contents and mutations.
pub struct XorShift(pub u64);

impl XorShift {
    pub fn next(&mut self) -> u64 {
        let mut x = self.0;
        x ^= x << 13;
        x ^= x >> 7;
        x ^= x << 17;
        self.0 = x;
        x
    }

    pub fn below(&mut self, n: u64) -> u64 {
        if n == 0 {
            0
        } else {
            self.next() % n
        }
    }

    pub fn bytes(&mut self, len: usize) -> Vec<u8> {
        (0..len).map(|_| self.next() as u8).collect()
    }
}

/// Runs `e2fsck -y -E journal_only` on a copy of `dirty` (the oracle
/// replay) and returns the copy's path. (`-f` must not be given: with it
/// e2fsck goes on to a full check.)
pub fn e2fsck_replay(dirty: &Path, out: &Path) -> Output {
    copy_sparse(dirty, out);
    let o = try_run(
        "e2fsck",
        &["-y", "-E", "journal_only", out.to_str().unwrap()],
    );
    // 0: fine; 1: errors corrected (a journal that recorded an error).
    assert!(
        matches!(o.status.code(), Some(0 | 1)),
        "e2fsck -E journal_only failed: {}\n{}",
        stdout(&o),
        String::from_utf8_lossy(&o.stderr)
    );
    o
}

/// `e2fsck -fn`: exit status and output.
pub fn e2fsck_check(image: &Path) -> (i32, String) {
    let o = try_run("e2fsck", &["-fn", image.to_str().unwrap()]);
    (
        o.status.code().unwrap_or(-1),
        format!("{}{}", stdout(&o), String::from_utf8_lossy(&o.stderr)),
    )
}

/// Superblock bytes that e2fsck's replay legitimately sets differently:
/// the write time (`s_wtime`, `s_wtime_hi`), the lifetime write counter
/// (`s_kbytes_written`, which counts e2fsck's own I/O) and the checksum that
/// covers them.
pub const SUPERBLOCK_VOLATILE: &[(u64, u64)] = &[(0x30, 4), (0x274, 1), (0x178, 8), (0x3fc, 4)];

/// Byte offsets (absolute) where `a` and `b` differ, except the volatile
/// superblock fields.
pub fn diff_images(a: &Path, b: &Path) -> Vec<u64> {
    let (fa, fb) = (File::open(a).unwrap(), File::open(b).unwrap());
    let size = fa.metadata().unwrap().len();
    assert_eq!(size, fb.metadata().unwrap().len(), "image sizes differ");
    let mut ba = vec![0u8; 1 << 16];
    let mut bb = vec![0u8; 1 << 16];
    let mut diffs = Vec::new();
    let mut pos = 0u64;
    while pos < size {
        let n = (size - pos).min(ba.len() as u64) as usize;
        fa.read_exact_at(&mut ba[..n], pos).unwrap();
        fb.read_exact_at(&mut bb[..n], pos).unwrap();
        if ba[..n] != bb[..n] {
            for i in 0..n {
                if ba[i] != bb[i] {
                    let at = pos + i as u64;
                    let volatile = SUPERBLOCK_VOLATILE
                        .iter()
                        .any(|&(off, len)| at >= 1024 + off && at < 1024 + off + len);
                    if !volatile {
                        diffs.push(at);
                    }
                }
            }
        }
        pos += n as u64;
    }
    diffs
}

/// Every regular file and symlink under `dir` (relative path -> contents),
/// and every directory (contents empty, path ending in `/`).
pub fn tree(dir: &Path) -> BTreeMap<String, Vec<u8>> {
    fn walk(base: &Path, dir: &Path, out: &mut BTreeMap<String, Vec<u8>>) {
        let mut entries: Vec<_> = std::fs::read_dir(dir)
            .unwrap()
            .map(|e| e.unwrap())
            .collect();
        entries.sort_by_key(|e| e.file_name());
        for e in entries {
            let p = e.path();
            let rel = p.strip_prefix(base).unwrap().to_str().unwrap().to_string();
            if rel == "lost+found" {
                continue;
            }
            let ft = e.file_type().unwrap();
            if ft.is_dir() {
                out.insert(format!("{rel}/"), Vec::new());
                walk(base, &p, out);
            } else if ft.is_symlink() {
                let target = std::fs::read_link(&p).unwrap();
                out.insert(
                    format!("{rel}@"),
                    target.to_str().unwrap().as_bytes().to_vec(),
                );
            } else {
                out.insert(rel, read_file(&p));
            }
        }
    }
    let mut out = BTreeMap::new();
    walk(dir, dir, &mut out);
    out
}

/// `debugfs -R 'rdump / DIR'` of an unmounted image into `dir`.
pub fn rdump(image: &Path, dir: &Path) -> BTreeMap<String, Vec<u8>> {
    std::fs::create_dir_all(dir).unwrap();
    let cmd = format!("rdump / {}", dir.to_str().unwrap());
    run("debugfs", &["-R", &cmd, image.to_str().unwrap()]);
    // rdump of "/" creates DIR/<root name>; the root's name is empty, so the
    // files land directly in DIR.
    tree(dir)
}

/// `debugfs -R 'ls -l DIR'`-style metadata of every inode in the tree:
/// path -> "mode uid gid size mtime" from `debugfs stat`.
pub fn metadata(image: &Path, paths: &[String]) -> BTreeMap<String, String> {
    let mut out = BTreeMap::new();
    for p in paths {
        let clean = p.trim_end_matches(['/', '@']);
        let cmd = format!("stat \"/{clean}\"");
        let o = run("debugfs", &["-R", &cmd, image.to_str().unwrap()]);
        let text = stdout(&o);
        let keep: Vec<&str> = text
            .lines()
            .filter(|l| {
                l.starts_with("Inode:")
                    || l.starts_with("User:")
                    || l.contains("mtime:")
                    || l.starts_with("Links:")
            })
            .collect();
        out.insert(p.clone(), keep.join("\n"));
    }
    out
}

/// A wrapper counting the bytes read through it.
#[derive(Debug)]
pub struct Counting {
    pub inner: Device,
    pub bytes: std::sync::atomic::AtomicU64,
}

impl Counting {
    #[allow(clippy::arc_with_non_send_sync)]
    pub fn new(inner: Device) -> Arc<Counting> {
        Arc::new(Counting {
            inner,
            bytes: 0.into(),
        })
    }

    pub fn total(&self) -> u64 {
        self.bytes.load(std::sync::atomic::Ordering::Relaxed)
    }
}

impl BlockRead for Counting {
    fn size_in_bytes(&self) -> u64 {
        self.inner.size_in_bytes()
    }

    fn read_exact_at(&self, start_byte: u64, dst: &mut [u8]) -> rescue_io::Result<()> {
        self.bytes
            .fetch_add(dst.len() as u64, std::sync::atomic::Ordering::Relaxed);
        self.inner.read_exact_at(start_byte, dst)
    }

    fn describe(&self) -> String {
        self.inner.describe()
    }
}
