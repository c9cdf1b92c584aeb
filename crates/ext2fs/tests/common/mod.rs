//! Shared helpers for the libext2fs binding tests: making images with the
//! real e2fsprogs tools, opening them through the block layer, a
//! deterministic PRNG, and the oracles (`e2fsck -fn`, batched `debugfs`
//! reads) that judge what our writes left on disk.
//!
//! A test that needs a missing tool (or root, for the kernel-built big
//! directory) skips with a message, or fails when `RESCUE_REQUIRE_TOOLS=1`.

#![allow(dead_code)]

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::process::{Command, Output, Stdio};
use std::sync::Arc;

use rescue_io::{BlockRead, BlockWrite, RawFile};

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

pub fn require_tools() -> bool {
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

/// The e2fsprogs tools every test here needs.
pub fn have_e2fsprogs(test: &str) -> bool {
    have_tools(test, &["mke2fs", "e2fsck", "debugfs"])
}

/// True when running as root with loop devices and the kernel ext4
/// driver. Otherwise skips, or fails under `RESCUE_REQUIRE_TOOLS=1`.
pub fn have_kernel_ext4(test: &str) -> bool {
    if !have_tools(test, &["losetup", "mount", "umount"]) {
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
        panic!("{test}: needs root, loop devices and kernel ext4 (RESCUE_REQUIRE_TOOLS=1)");
    }
    eprintln!("SKIP {test}: needs root, /dev/loop-control and ext4 in /proc/filesystems");
    false
}

/// Runs a command and returns its output whatever its status.
pub fn try_run(prog: &str, args: &[&str]) -> Output {
    let exe = find_tool(prog).unwrap_or_else(|| PathBuf::from(prog));
    Command::new(exe)
        .args(args)
        .env("PATH", path_env())
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .output()
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

pub fn text(out: &Output) -> String {
    format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    )
}

/// Makes a sparse image of `size_mib` MiB at `path` with `mke2fs args`.
pub fn mkfs(path: &Path, size_mib: u64, args: &[&str]) {
    let _ = std::fs::remove_file(path);
    let f = std::fs::File::create(path).unwrap();
    f.set_len(size_mib << 20).unwrap();
    drop(f);
    let mut all = vec!["-q", "-F"];
    all.extend_from_slice(args);
    all.push(path.to_str().unwrap());
    run("mke2fs", &all);
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

/// Opens an image read-write through the block layer.
pub fn open_dev(path: &Path) -> Arc<dyn BlockWrite> {
    Arc::new(RawFile::open_read_write(path).unwrap())
}

/// `e2fsck -fn`: exit status and output.
pub fn e2fsck(image: &Path) -> (i32, String) {
    let o = try_run("e2fsck", &["-fn", image.to_str().unwrap()]);
    (o.status.code().unwrap_or(-1), text(&o))
}

/// Runs `debugfs -w -R cmd` on `image` (for setting up refusal cases).
pub fn debugfs_w(image: &Path, cmd: &str) -> String {
    text(&run("debugfs", &["-w", "-R", cmd, image.to_str().unwrap()]))
}

/// Runs read-only `debugfs -R cmd` and returns stdout.
pub fn debugfs(image: &Path, cmd: &str) -> String {
    String::from_utf8_lossy(&run("debugfs", &["-R", cmd, image.to_str().unwrap()]).stdout)
        .into_owned()
}

/// Runs many read-only debugfs commands in one process and returns the
/// output of each, in order (split on the `debugfs: cmd` echo lines).
pub fn debugfs_batch(image: &Path, scratch: &Path, cmds: &[String]) -> Vec<String> {
    let file = scratch.join("debugfs.cmds");
    std::fs::write(&file, cmds.join("\n") + "\n").unwrap();
    let out = run(
        "debugfs",
        &["-f", file.to_str().unwrap(), image.to_str().unwrap()],
    );
    let stdout = String::from_utf8_lossy(&out.stdout).into_owned();
    let mut parts: Vec<String> = Vec::new();
    for line in stdout.split_inclusive('\n') {
        if line.starts_with("debugfs: ") {
            parts.push(String::new());
        } else if let Some(last) = parts.last_mut() {
            last.push_str(line);
        }
    }
    assert_eq!(
        parts.len(),
        cmds.len(),
        "debugfs output did not split into one part per command:\n{stdout}\n{}",
        String::from_utf8_lossy(&out.stderr)
    );
    parts
}

/// Fields of a `debugfs stat` output.
#[derive(Debug, Default, Clone, PartialEq, Eq)]
pub struct DebugfsStat {
    pub kind: String,
    pub mode: u32,
    pub flags: u32,
    pub uid: u32,
    pub gid: u32,
    pub size: u64,
    pub links: u32,
    /// name -> (seconds field hex, extra field hex), e.g. "mtime".
    pub times: BTreeMap<String, (u32, Option<u32>)>,
    pub fast_link: Option<String>,
}

fn field_after<'a>(text: &'a str, key: &str) -> Option<&'a str> {
    let i = text.find(key)?;
    text[i + key.len()..].split_whitespace().next()
}

/// debugfs prints 32-bit ids with `%d`: ids above 2^31 come out negative.
fn id(s: &str) -> u32 {
    s.parse::<i64>().map(|v| v as u32).unwrap_or(u32::MAX)
}

pub fn parse_stat(text: &str) -> DebugfsStat {
    let mut s = DebugfsStat {
        kind: field_after(text, "Type:").unwrap_or("").to_string(),
        mode: u32::from_str_radix(field_after(text, "Mode:").unwrap_or("0"), 8).unwrap_or(0),
        flags: u32::from_str_radix(
            field_after(text, "Flags:")
                .unwrap_or("0x0")
                .trim_start_matches("0x"),
            16,
        )
        .unwrap_or(0),
        uid: id(field_after(text, "User:").unwrap_or("0")),
        gid: id(field_after(text, "Group:").unwrap_or("0")),
        size: field_after(text, "Size:")
            .unwrap_or("0")
            .parse()
            .unwrap_or(0),
        links: field_after(text, "Links:")
            .unwrap_or("0")
            .parse()
            .unwrap_or(0),
        ..Default::default()
    };
    for line in text.lines() {
        let l = line.trim_start();
        for name in ["ctime", "atime", "mtime", "crtime"] {
            if let Some(rest) = l.strip_prefix(&format!("{name}: 0x")) {
                let v = rest.split_whitespace().next().unwrap_or("");
                let (a, b) = match v.split_once(":") {
                    Some((a, b)) => (a, Some(b)),
                    None => (v, None),
                };
                let secs = u32::from_str_radix(a, 16).unwrap_or(0);
                let extra = b.and_then(|b| u32::from_str_radix(b, 16).ok());
                s.times.insert(name.to_string(), (secs, extra));
            }
        }
        if let Some(rest) = l.strip_prefix("Fast link dest: \"") {
            s.fast_link = Some(rest.trim_end().trim_end_matches('"').to_string());
        }
    }
    s
}

/// Entries of `debugfs ls -p` output: name -> (ino, mode, uid, gid).
pub fn parse_ls_p(text: &str) -> BTreeMap<Vec<u8>, (u32, u32, u32, u32)> {
    let mut out = BTreeMap::new();
    for line in text.lines() {
        // /ino/mode/uid/gid/name/size/
        let Some(rest) = line.strip_prefix('/') else {
            continue;
        };
        let f: Vec<&str> = rest.splitn(5, '/').collect();
        if f.len() < 5 {
            continue;
        }
        // "name/size/" (size empty for directories)
        let Some((name, _size)) = f[4].strip_suffix('/').and_then(|s| s.rsplit_once('/')) else {
            continue;
        };
        // Empty slots (inode 0) of e.g. lost+found are listed too.
        if name == "." || name == ".." || f[0] == "0" {
            continue;
        }
        out.insert(
            name.as_bytes().to_vec(),
            (
                f[0].parse().unwrap_or(0),
                u32::from_str_radix(f[1], 8).unwrap_or(0),
                id(f[2]),
                id(f[3]),
            ),
        );
    }
    out
}

/// Names listed by `debugfs ea_list`.
pub fn parse_ea_names(text: &str) -> Vec<String> {
    text.lines()
        .filter_map(|l| {
            let l = l.strip_prefix("  ")?;
            let (name, rest) = l.split_once(" (")?;
            rest.contains(')').then(|| name.to_string())
        })
        .collect()
}

/// Deterministic PRNG (splitmix64): tests print the seed on failure.
#[derive(Clone, Debug)]
pub struct Rng(pub u64);

impl Rng {
    pub fn next(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9e37_79b9_7f4a_7c15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
        z ^ (z >> 31)
    }

    pub fn below(&mut self, n: u64) -> u64 {
        if n == 0 {
            0
        } else {
            self.next() % n
        }
    }

    pub fn chance(&mut self, percent: u64) -> bool {
        self.below(100) < percent
    }

    pub fn bytes(&mut self, len: usize) -> Vec<u8> {
        (0..len).map(|_| self.next() as u8).collect()
    }

    pub fn pick<'a, T>(&mut self, items: &'a [T]) -> Option<&'a T> {
        if items.is_empty() {
            None
        } else {
            Some(&items[self.below(items.len() as u64) as usize])
        }
    }
}

/// A loop device with a mounted filesystem; unmounted and detached on drop.
pub struct Mounted {
    pub dev: String,
    pub dir: PathBuf,
    mounted: bool,
}

impl Mounted {
    pub fn new(image: &Path, dir: &Path) -> Mounted {
        std::fs::create_dir_all(dir).unwrap();
        let out = run("losetup", &["-f", "--show", image.to_str().unwrap()]);
        let dev = String::from_utf8_lossy(&out.stdout).trim().to_string();
        let mut m = Mounted {
            dev,
            dir: dir.to_path_buf(),
            mounted: false,
        };
        run("mount", &["-t", "ext4", &m.dev, dir.to_str().unwrap()]);
        m.mounted = true;
        m
    }

    pub fn unmount(mut self) {
        self.mounted = false;
        run("umount", &[self.dir.to_str().unwrap()]);
    }
}

impl Drop for Mounted {
    fn drop(&mut self) {
        if self.mounted {
            let dir = self.dir.to_str().unwrap_or_default().to_string();
            if !try_run("umount", &[&dir]).status.success() {
                let _ = try_run("umount", &["-l", &dir]);
            }
        }
        let _ = try_run("losetup", &["-d", &self.dev]);
    }
}

/// A device wrapper that counts reads and can be told to fail.
#[derive(Debug)]
pub struct Faulty {
    pub inner: Arc<dyn BlockWrite>,
    /// Reads touching [start, end) fail.
    pub fail_reads: std::cell::Cell<Option<(u64, u64)>>,
    /// Writes fail when set.
    pub fail_writes: std::cell::Cell<bool>,
    pub bytes_read: std::cell::Cell<u64>,
    pub reads: std::cell::Cell<u64>,
    pub bytes_written: std::cell::Cell<u64>,
}

impl Faulty {
    pub fn new(inner: Arc<dyn BlockWrite>) -> Arc<Faulty> {
        // Devices are shared within one thread, like the project's own.
        #[allow(clippy::arc_with_non_send_sync)]
        Arc::new(Faulty {
            inner,
            fail_reads: std::cell::Cell::new(None),
            fail_writes: std::cell::Cell::new(false),
            bytes_read: std::cell::Cell::new(0),
            reads: std::cell::Cell::new(0),
            bytes_written: std::cell::Cell::new(0),
        })
    }
}

impl BlockRead for Faulty {
    fn size_in_bytes(&self) -> u64 {
        self.inner.size_in_bytes()
    }

    fn read_exact_at(&self, start: u64, dst: &mut [u8]) -> rescue_io::Result<()> {
        if let Some((a, b)) = self.fail_reads.get() {
            if start < b && start + dst.len() as u64 > a {
                return Err(rescue_io::Error::new(rescue_io::ErrorKind::Io, "reading")
                    .with_path("faulty-test-disk")
                    .with_offset(start)
                    .with_detail("injected media error"));
            }
        }
        self.reads.set(self.reads.get() + 1);
        self.bytes_read
            .set(self.bytes_read.get() + dst.len() as u64);
        self.inner.read_exact_at(start, dst)
    }

    fn describe(&self) -> String {
        "faulty-test-disk".into()
    }
}

impl BlockWrite for Faulty {
    fn write_all_at(&self, start: u64, src: &[u8]) -> rescue_io::Result<()> {
        if self.fail_writes.get() {
            return Err(rescue_io::Error::new(rescue_io::ErrorKind::Io, "writing")
                .with_path("faulty-test-disk")
                .with_offset(start)
                .with_detail("injected write error"));
        }
        self.bytes_written
            .set(self.bytes_written.get() + src.len() as u64);
        self.inner.write_all_at(start, src)
    }

    fn flush(&self) -> rescue_io::Result<()> {
        self.inner.flush()
    }
}
