//! Shared helpers for the volume discovery tests: running the real tools
//! that build images (sgdisk, sfdisk, mkfs.*, cryptsetup, LVM) and the
//! oracles that judge our results (sfdisk --json, partx, blkid -p,
//! dumpe2fs).
//!
//! A test that needs a missing tool (or root, for loop devices) skips with a
//! message, or fails when `RESCUE_REQUIRE_TOOLS=1` is set.

#![allow(dead_code)]

use std::collections::HashMap;
use std::fs::{File, OpenOptions};
use std::io::{Read, Seek, SeekFrom, Write};
use std::os::unix::fs::FileExt;
use std::path::{Path, PathBuf};
use std::process::{Command, Output, Stdio};
use std::sync::Arc;

use rescue_io::{BlockRead, Device};

pub const MIB: u64 = 1 << 20;

/// PATH with the sbin directories where mkfs tools live.
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

/// True when running as root (loop devices). Otherwise skips, or fails under
/// `RESCUE_REQUIRE_TOOLS=1`.
pub fn have_root(test: &str) -> bool {
    let status = std::fs::read_to_string("/proc/self/status").unwrap_or_default();
    let uid = status
        .lines()
        .find_map(|l| l.strip_prefix("Uid:"))
        .and_then(|l| l.split_whitespace().nth(1))
        .unwrap_or("1");
    if uid == "0" && Path::new("/dev/loop-control").exists() {
        return true;
    }
    if require_tools() {
        panic!("{test}: needs root and loop devices (RESCUE_REQUIRE_TOOLS=1)");
    }
    eprintln!("SKIP {test}: needs root and /dev/loop-control");
    false
}

/// Runs `prog args...` (with `stdin` if given) and returns its output,
/// failing the test when it does not succeed.
pub fn run_with(prog: &str, args: &[&str], stdin: Option<&[u8]>, envs: &[(&str, &str)]) -> Output {
    let out = try_run(prog, args, stdin, envs);
    assert!(
        out.status.success(),
        "{prog} {args:?} failed ({}):\nstdout: {}\nstderr: {}",
        out.status,
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    out
}

/// Runs a command and returns its output whatever its status.
pub fn try_run(prog: &str, args: &[&str], stdin: Option<&[u8]>, envs: &[(&str, &str)]) -> Output {
    let exe = find_tool(prog).unwrap_or_else(|| PathBuf::from(prog));
    let mut cmd = Command::new(exe);
    cmd.args(args)
        .env("PATH", path_env())
        .stdin(if stdin.is_some() {
            Stdio::piped()
        } else {
            Stdio::null()
        });
    cmd.stdout(Stdio::piped()).stderr(Stdio::piped());
    for (k, v) in envs {
        cmd.env(k, v);
    }
    let mut child = cmd
        .spawn()
        .unwrap_or_else(|e| panic!("spawning {prog}: {e}"));
    if let Some(input) = stdin {
        // OK to unwrap: stdin was piped just above.
        let mut pipe = child.stdin.take().unwrap();
        pipe.write_all(input).unwrap();
    }
    child.wait_with_output().unwrap()
}

/// Runs a command without stdin and extra environment.
pub fn run(prog: &str, args: &[&str]) -> Output {
    run_with(prog, args, None, &[])
}

/// Creates a sparse file of `size` bytes.
pub fn sparse(path: &Path, size: u64) {
    let f = File::create(path).unwrap();
    f.set_len(size).unwrap();
}

/// Copies `src` into `image` at byte `offset`, skipping zero blocks so the
/// image stays sparse.
pub fn place(image: &Path, offset: u64, src: &Path) {
    let mut input = File::open(src).unwrap();
    let out = OpenOptions::new().write(true).open(image).unwrap();
    let mut buf = vec![0u8; 1 << 16];
    let mut pos = 0u64;
    loop {
        let n = input.read(&mut buf).unwrap();
        if n == 0 {
            break;
        }
        if buf[..n].iter().any(|&b| b != 0) {
            out.write_all_at(&buf[..n], offset + pos).unwrap();
        }
        pos += n as u64;
    }
}

/// Overwrites bytes of a file.
pub fn patch(path: &Path, offset: u64, bytes: &[u8]) {
    let f = OpenOptions::new().write(true).open(path).unwrap();
    f.write_all_at(bytes, offset).unwrap();
}

/// Reads bytes of a file.
pub fn read_at(path: &Path, offset: u64, len: usize) -> Vec<u8> {
    let mut f = File::open(path).unwrap();
    f.seek(SeekFrom::Start(offset)).unwrap();
    let mut buf = vec![0u8; len];
    f.read_exact(&mut buf).unwrap();
    buf
}

/// Opens an image file read-only through the block layer.
pub fn open(path: &Path) -> Device {
    rescue_io::open(path, rescue_io::OpenOptions::default())
        .unwrap()
        .device
}

/// `blkid -p -o export` of `size` bytes at `offset` of `file`, as a map.
/// Empty when blkid finds nothing (exit status 2).
pub fn blkid(file: &Path, offset: u64, size: u64) -> HashMap<String, String> {
    let f = file.to_str().unwrap();
    let (o, s) = (offset.to_string(), size.to_string());
    let out = try_run(
        "blkid",
        &["-p", "-o", "export", "-O", &o, "-S", &s, f],
        None,
        &[],
    );
    match out.status.code() {
        Some(0) => parse_export(&String::from_utf8_lossy(&out.stdout)),
        Some(2) => HashMap::new(),
        _ => panic!(
            "blkid on {f} at {o} failed: {}",
            String::from_utf8_lossy(&out.stderr)
        ),
    }
}

/// Parses `KEY=value` lines, undoing blkid's backslash escapes.
pub fn parse_export(text: &str) -> HashMap<String, String> {
    let mut map = HashMap::new();
    for line in text.lines() {
        if let Some((k, v)) = line.split_once('=') {
            let mut value = String::new();
            let mut chars = v.chars();
            while let Some(c) = chars.next() {
                if c == '\\' {
                    if let Some(n) = chars.next() {
                        value.push(n);
                    }
                } else {
                    value.push(c);
                }
            }
            map.insert(k.to_string(), value);
        }
    }
    map
}

/// `sfdisk --json` of `file`.
pub fn sfdisk_json(file: &Path) -> serde_json::Value {
    let out = run("sfdisk", &["--json", file.to_str().unwrap()]);
    serde_json::from_slice(&out.stdout).unwrap()
}

/// One partition as the oracles see it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct OraclePart {
    pub number: u32,
    pub start_sector: u64,
    pub sectors: u64,
    /// sfdisk's type: a GUID (upper case) or a hex MBR id like `83`.
    pub ptype: String,
    pub bootable: bool,
    /// GPT partition GUID (sfdisk), upper case.
    pub uuid: Option<String>,
    pub name: Option<String>,
}

/// The partitions of `sfdisk --json`, with their numbers from the node
/// names, plus the table's sector size.
pub fn sfdisk_parts(json: &serde_json::Value) -> (u64, Vec<OraclePart>) {
    let pt = &json["partitiontable"];
    let sector = pt["sectorsize"].as_u64().unwrap_or(512);
    let parts = pt["partitions"]
        .as_array()
        .map(|a| a.as_slice())
        .unwrap_or_default()
        .iter()
        .map(|p| {
            let node = p["node"].as_str().unwrap();
            let digits: String = node
                .chars()
                .rev()
                .take_while(|c| c.is_ascii_digit())
                .collect();
            let number: u32 = digits.chars().rev().collect::<String>().parse().unwrap();
            OraclePart {
                number,
                start_sector: p["start"].as_u64().unwrap(),
                sectors: p["size"].as_u64().unwrap(),
                ptype: p["type"].as_str().unwrap().to_string(),
                bootable: p["bootable"].as_bool().unwrap_or(false),
                uuid: p["uuid"].as_str().map(str::to_string),
                name: p["name"].as_str().map(str::to_string),
            }
        })
        .collect();
    (sector, parts)
}

/// `partx` rows: partition number -> libblkid's PARTUUID.
pub fn partx_uuids(file: &Path) -> HashMap<u32, String> {
    let out = run(
        "partx",
        &["-g", "-P", "-o", "NR,UUID", file.to_str().unwrap()],
    );
    let mut map = HashMap::new();
    for line in String::from_utf8_lossy(&out.stdout).lines() {
        let fields = parse_pairs(line);
        if let (Some(nr), Some(uuid)) = (fields.get("NR"), fields.get("UUID")) {
            map.insert(nr.parse().unwrap(), uuid.clone());
        }
    }
    map
}

/// Parses `KEY="value" KEY2='value'` (partx -P, lvs --nameprefixes).
pub fn parse_pairs(line: &str) -> HashMap<String, String> {
    let mut map = HashMap::new();
    let mut rest = line.trim();
    while let Some(eq) = rest.find('=') {
        let key = rest[..eq].trim().to_string();
        let after = &rest[eq + 1..];
        let Some(quote) = after.chars().next().filter(|c| *c == '"' || *c == '\'') else {
            break;
        };
        let body = &after[1..];
        let end = body.find(quote).unwrap_or(body.len());
        map.insert(key, body[..end].to_string());
        rest = body.get(end + 1..).unwrap_or("");
    }
    map
}

/// Asserts that our probe of a volume says what blkid says about the same
/// bytes (TYPE, UUID, LABEL, VERSION).
pub fn assert_probe_eq_blkid(
    what: &str,
    probe: &rescue_volumes::Probe,
    blkid: &HashMap<String, String>,
) {
    assert_eq!(
        probe.fstype.as_deref(),
        blkid.get("TYPE").map(String::as_str),
        "{what}: TYPE (blkid: {blkid:?})"
    );
    assert_eq!(
        probe.uuid.as_deref(),
        blkid.get("UUID").map(String::as_str),
        "{what}: UUID (blkid: {blkid:?})"
    );
    assert_eq!(
        probe.label.as_deref(),
        blkid.get("LABEL").map(String::as_str),
        "{what}: LABEL (blkid: {blkid:?})"
    );
    assert_eq!(
        probe.version.as_deref(),
        blkid.get("VERSION").map(String::as_str),
        "{what}: VERSION (blkid: {blkid:?})"
    );
}

/// Fields of `dumpe2fs -h` ("Key:   value").
pub fn dumpe2fs(file: &Path) -> HashMap<String, String> {
    let out = run("dumpe2fs", &["-h", file.to_str().unwrap()]);
    let mut map = HashMap::new();
    for line in String::from_utf8_lossy(&out.stdout).lines() {
        if let Some((k, v)) = line.split_once(':') {
            map.insert(k.trim().to_string(), v.trim().to_string());
        }
    }
    map
}

/// Asserts that `ExtInfo` matches `dumpe2fs -h` of the same filesystem.
pub fn assert_ext_eq_dumpe2fs(
    what: &str,
    ext: &rescue_volumes::ExtInfo,
    d: &HashMap<String, String>,
) {
    let num = |k: &str| -> u64 {
        d.get(k)
            .unwrap_or_else(|| panic!("{what}: dumpe2fs has no {k}"))
            .parse()
            .unwrap()
    };
    assert_eq!(
        u64::from(ext.block_size),
        num("Block size"),
        "{what}: block size"
    );
    assert_eq!(ext.blocks_count, num("Block count"), "{what}: block count");
    assert_eq!(
        ext.free_blocks_count,
        num("Free blocks"),
        "{what}: free blocks"
    );
    assert_eq!(
        u64::from(ext.inodes_count),
        num("Inode count"),
        "{what}: inode count"
    );
    assert_eq!(
        u64::from(ext.free_inodes_count),
        num("Free inodes"),
        "{what}: free inodes"
    );
    let features: Vec<&str> = d["Filesystem features"].split_whitespace().collect();
    assert_eq!(ext.features, features, "{what}: features");
    let state = &d["Filesystem state"];
    assert_eq!(
        ext.clean,
        state.split_whitespace().next() == Some("clean"),
        "{what}: clean vs state {state:?}"
    );
    assert_eq!(
        ext.has_errors,
        state.contains("with errors") || d.contains_key("FS Error count"),
        "{what}: errors vs {state:?}"
    );
    let errors = d
        .get("FS Error count")
        .map(|v| v.parse::<u32>().unwrap())
        .unwrap_or(0);
    assert_eq!(ext.error_count, errors, "{what}: error count");
    assert_eq!(
        ext.needs_recovery,
        features.contains(&"needs_recovery"),
        "{what}: needs_recovery"
    );
    let mounted = d
        .get("Last mounted on")
        .filter(|v| v.as_str() != "<not available>");
    assert_eq!(ext.last_mounted.as_ref(), mounted, "{what}: last mounted");
}

/// A loop device over part of a file, detached on drop.
pub struct Loop {
    pub dev: String,
}

impl Loop {
    /// Attaches `file` bytes `offset .. offset + size` (whole file when
    /// `size` is 0) with the given logical sector size.
    pub fn attach(file: &Path, offset: u64, size: u64, sector_size: u32) -> Loop {
        let (o, s, b) = (
            offset.to_string(),
            size.to_string(),
            sector_size.to_string(),
        );
        let mut args = vec!["-f", "--show", "-b", &b, "-o", &o];
        if size > 0 {
            args.extend(["--sizelimit", &s]);
        }
        args.push(file.to_str().unwrap());
        let out = run("losetup", &args);
        Loop {
            dev: String::from_utf8_lossy(&out.stdout).trim().to_string(),
        }
    }
}

impl Drop for Loop {
    fn drop(&mut self) {
        let _ = try_run("losetup", &["-d", &self.dev], None, &[]);
    }
}

/// Runs LVM commands restricted to `devices`, without device-mapper, udev,
/// backups, or any state outside `system_dir`.
pub struct Lvm {
    config: String,
    system_dir: PathBuf,
}

impl Lvm {
    pub fn new(system_dir: &Path, devices: &[&str]) -> Lvm {
        std::fs::create_dir_all(system_dir).unwrap();
        let accept: Vec<String> = devices.iter().map(|d| format!("\"a|^{d}$|\"")).collect();
        let config = format!(
            "devices {{ filter=[{}, \"r|.*|\"] use_devicesfile=0 obtain_device_list_from_udev=0 }} \
             activation {{ udev_sync=0 udev_rules=0 }} backup {{ backup=0 archive=0 }}",
            accept.join(",")
        );
        Lvm {
            config,
            system_dir: system_dir.to_path_buf(),
        }
    }

    /// Runs one LVM command with our configuration; `--driverloaded n`
    /// keeps it away from device-mapper.
    pub fn run(&self, cmd: &str, args: &[&str]) -> String {
        let mut full = vec!["--config", &self.config, "--driverloaded", "n"];
        full.extend_from_slice(args);
        let out = run_with(
            cmd,
            &full,
            None,
            &[
                ("LVM_SYSTEM_DIR", self.system_dir.to_str().unwrap()),
                ("LVM_SUPPRESS_FD_WARNINGS", "1"),
            ],
        );
        String::from_utf8_lossy(&out.stdout).into_owned()
    }
}

/// A device wrapper counting the bytes read through it.
#[derive(Debug)]
pub struct Counting {
    pub inner: Device,
    pub bytes: std::sync::atomic::AtomicU64,
    pub reads: std::sync::atomic::AtomicU64,
}

impl Counting {
    // `Device` is `Arc<dyn BlockRead>` by rescue_io's design, without Send/Sync.
    #[allow(clippy::arc_with_non_send_sync)]
    pub fn new(inner: Device) -> Arc<Counting> {
        Arc::new(Counting {
            inner,
            bytes: 0.into(),
            reads: 0.into(),
        })
    }
}

impl BlockRead for Counting {
    fn size_in_bytes(&self) -> u64 {
        self.inner.size_in_bytes()
    }

    fn read_exact_at(&self, start_byte: u64, dst: &mut [u8]) -> rescue_io::Result<()> {
        use std::sync::atomic::Ordering;
        self.bytes.fetch_add(dst.len() as u64, Ordering::Relaxed);
        self.reads.fetch_add(1, Ordering::Relaxed);
        self.inner.read_exact_at(start_byte, dst)
    }

    fn describe(&self) -> String {
        self.inner.describe()
    }
}

/// Makes a filesystem image file of `size` bytes with `mkfs` arguments
/// (the file path is appended), or with a custom command.
pub fn mkfs_file(dir: &Path, name: &str, size: u64, prog: &str, args: &[&str]) -> PathBuf {
    let path = dir.join(name);
    sparse(&path, size);
    let mut full: Vec<&str> = args.to_vec();
    full.push(path.to_str().unwrap());
    run_with(prog, &full, None, &[("E2FSPROGS_FAKE_TIME", "1700000000")]);
    path
}

/// Deterministic pseudo-random numbers for corruptions and mutations.
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
}
