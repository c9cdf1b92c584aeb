//! `cargo xtask bench-write [RUNS]`: the time to replace `/etc/fstab` in the
//! 20 GiB `big-debian` guest (docs/PERFORMANCE.md), by `rescue-disk put`
//! (qcow2 and raw, and its `undo`), by `debugfs -w` (raw), by a kernel loop
//! mount of the raw image, and by a loop mount of the qcow2 exported through
//! `qemu-storage-daemon` over FUSE.
//!
//! Every run works on a fresh sparse copy of the fixture in a temporary
//! directory, and every result is verified before it counts: `e2fsck -fn`
//! on the root volume, the new contents read back by `debugfs`, the inode
//! kept where the method promises it, `qemu-img check` for qcow2, and after
//! `undo` a `qemu-img compare` against the pristine fixture.
//!
//! Must never: touch the fixtures themselves, leave a mount, loop device or
//! daemon behind (guards undo them on every error path), or report a time
//! for a write that did not verify.

use std::fs;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use anyhow::{bail, ensure, Context, Result};
use xtask::{tools, Format};

/// The guest file replaced.
const GUEST_PATH: &str = "/etc/fstab";
/// Size of the replacement fstab.
const NEW_FSTAB_LEN: usize = 300;

/// Runs the benchmark: `runs` runs of every variant (default 10).
pub fn run(runs: Option<&str>) -> Result<()> {
    let runs: usize = runs
        .map(str::parse)
        .transpose()
        .context("RUNS must be a number")?
        .unwrap_or(10)
        .max(1);
    ensure!(
        tools::is_root(),
        "bench-write needs root: it loop-mounts the guest (mount -o loop) and exports the qcow2 \
         over FUSE with qemu-storage-daemon; run `cargo xtask bench-write` as root"
    );
    for tool in [
        "qemu-img",
        "qemu-storage-daemon",
        "debugfs",
        "e2fsck",
        "mount",
        "umount",
        "losetup",
        "cp",
        "kill",
    ] {
        tools::cmd(tool)?;
    }
    ensure!(
        Path::new("/dev/fuse").exists(),
        "/dev/fuse is missing: load the fuse module (modprobe fuse) for the qemu-storage-daemon variant"
    );

    let started = Instant::now();
    let raw = xtask::fixture("big-debian", Format::Raw)?;
    let qcow2 = xtask::fixture("big-debian", Format::Qcow2)?;
    let expect = xtask::expect("big-debian")?;
    let root = expect["volumes"]
        .as_array()
        .and_then(|v| v.iter().find(|v| v["mount_point"] == "/"))
        .context("big-debian.expect.json has no volume mounted at /")?;
    let start = root["start_byte"]
        .as_u64()
        .context("root volume without start_byte")?;
    let size = root["size_bytes"]
        .as_u64()
        .context("root volume without size_bytes")?;
    println!(
        "big-debian ready in {:.1}s; root volume at byte {start}, {size} bytes",
        started.elapsed().as_secs_f64()
    );

    let bin = build_release()?;
    let work = tempfile::Builder::new()
        .prefix("bench-write-")
        .tempdir()
        .context("creating a scratch directory")?;
    let b = Bench::new(work.path(), bin, raw, qcow2, start, size)?;
    println!(
        "scratch directory {} (commands below run there); new fstab {} bytes; {runs} runs each",
        b.work.display(),
        b.new_fstab.len()
    );

    b.put_and_undo(Format::Qcow2, runs)?;
    b.put_and_undo(Format::Raw, runs)?;
    b.debugfs(runs)?;
    b.loop_mount_raw(runs)?;
    b.qsd_loop_mount_qcow2(runs)?;
    Ok(())
}

/// Builds the release binary the way `cargo xtask bench` does.
fn build_release() -> Result<PathBuf> {
    let root = xtask::fixtures_source_dir()
        .parent()
        .context("workspace root")?
        .to_path_buf();
    let status = Command::new(std::env::var("CARGO").unwrap_or_else(|_| "cargo".into()))
        .args(["build", "--release", "--quiet", "-p", "rescue-disk"])
        .current_dir(&root)
        .status()
        .context("starting cargo build")?;
    ensure!(
        status.success(),
        "cargo build --release -p rescue-disk failed"
    );
    Ok(xtask::target_dir().join("release/rescue-disk"))
}

/// Inode number, mode and owner of a guest file, as `debugfs stat` shows them.
#[derive(Debug, Clone, PartialEq, Eq)]
struct InodeFacts {
    inode: u64,
    mode: String,
    uid: u64,
    gid: u64,
}

impl std::fmt::Display for InodeFacts {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(
            f,
            "inode {}, mode {}, owner {}:{}",
            self.inode, self.mode, self.uid, self.gid
        )
    }
}

/// Wall-clock samples of one measurement, in milliseconds.
#[derive(Default)]
struct Samples(Vec<f64>);

impl Samples {
    fn push(&mut self, d: Duration) {
        self.0.push(d.as_secs_f64() * 1000.0);
    }

    /// `median X ms (min A, max B)`.
    fn summary(&self) -> String {
        let mut v = self.0.clone();
        v.sort_by(f64::total_cmp);
        if v.is_empty() {
            return "no runs".into();
        }
        let n = v.len();
        let median = if n % 2 == 1 {
            v[n / 2]
        } else {
            (v[n / 2 - 1] + v[n / 2]) / 2.0
        };
        format!(
            "median {median:.1} ms (min {:.1}, max {:.1}) over {n} runs",
            v[0],
            v[n - 1]
        )
    }
}

/// A value that should be the same on every run; reports a range if not.
#[derive(Default)]
struct Constant(Vec<u64>);

impl Constant {
    fn show(&self) -> String {
        let min = self.0.iter().min().copied().unwrap_or(0);
        let max = self.0.iter().max().copied().unwrap_or(0);
        if min == max {
            min.to_string()
        } else {
            format!("{min}..{max}")
        }
    }
}

struct Bench {
    work: PathBuf,
    bin: PathBuf,
    raw_fixture: PathBuf,
    qcow2_fixture: PathBuf,
    start: u64,
    size: u64,
    new_fstab: Vec<u8>,
    original: InodeFacts,
}

impl Bench {
    fn new(
        work: &Path,
        bin: PathBuf,
        raw_fixture: PathBuf,
        qcow2_fixture: PathBuf,
        start: u64,
        size: u64,
    ) -> Result<Bench> {
        let mut b = Bench {
            work: work.to_path_buf(),
            bin,
            raw_fixture,
            qcow2_fixture,
            start,
            size,
            new_fstab: Vec::new(),
            original: InodeFacts {
                inode: 0,
                mode: String::new(),
                uid: 0,
                gid: 0,
            },
        };
        let fixture = b.raw_fixture.clone();
        let old = b.guest_file(&fixture)?;
        b.original = b.stat(&fixture)?;
        b.new_fstab = new_fstab(&old);
        fs::write(b.work.join("new-fstab"), &b.new_fstab).context("writing new-fstab")?;
        Ok(b)
    }

    /// `IMAGE?offset=START`: the root volume, as e2fsprogs tools name it.
    fn volume_spec(&self, image: &Path) -> String {
        format!("{}?offset={}", image.display(), self.start)
    }

    fn fixture(&self, format: Format) -> &Path {
        match format {
            Format::Raw => &self.raw_fixture,
            Format::Qcow2 => &self.qcow2_fixture,
        }
    }

    /// A fresh sparse copy of the fixture, `big.raw` or `big.qcow2` in the
    /// scratch directory (the file name the printed commands use).
    fn fresh_copy(&self, format: Format) -> Result<PathBuf> {
        let to = self.work.join(format!("big.{}", format.extension()));
        if to.exists() {
            fs::remove_file(&to).with_context(|| format!("removing {}", to.display()))?;
        }
        tools::run(
            tools::cmd("cp")?
                .arg("--sparse=always")
                .arg(self.fixture(format))
                .arg(&to),
        )?;
        Ok(to)
    }

    /// Contents of the guest file in the raw image `raw`, read by debugfs.
    fn guest_file(&self, raw: &Path) -> Result<Vec<u8>> {
        let out = tools::run(
            tools::cmd("debugfs")?
                .env("DEBUGFS_PAGER", "__none__")
                .arg("-R")
                .arg(format!("cat {GUEST_PATH}"))
                .arg(self.volume_spec(raw)),
        )?;
        Ok(out.stdout)
    }

    fn stat(&self, raw: &Path) -> Result<InodeFacts> {
        let out = tools::stdout(
            tools::cmd("debugfs")?
                .env("DEBUGFS_PAGER", "__none__")
                .arg("-R")
                .arg(format!("stat {GUEST_PATH}"))
                .arg(self.volume_spec(raw)),
        )?;
        parse_stat(&out).with_context(|| format!("parsing `debugfs stat {GUEST_PATH}`:\n{out}"))
    }

    /// Checks the image after a write: qcow2 consistency, `e2fsck -fn` on
    /// the root volume, the new contents, and (when `same_inode`) that the
    /// file kept its inode, mode and owner. Returns the file's inode facts.
    fn verify(&self, image: &Path, format: Format, same_inode: bool) -> Result<InodeFacts> {
        let converted;
        let raw = match format {
            Format::Raw => image,
            Format::Qcow2 => {
                tools::run(
                    tools::cmd("qemu-img")?
                        .args(["check", "-f", "qcow2"])
                        .arg(image),
                )
                .context("qemu-img check after the write")?;
                converted = self.work.join("verify.raw");
                if converted.exists() {
                    fs::remove_file(&converted)?;
                }
                tools::run(
                    tools::cmd("qemu-img")?
                        .args(["convert", "-f", "qcow2", "-O", "raw"])
                        .arg(image)
                        .arg(&converted),
                )?;
                &converted
            }
        };
        let result = self.verify_raw(raw, same_inode);
        if raw != image {
            let _ = fs::remove_file(raw);
        }
        result.with_context(|| format!("verifying {} after the write", image.display()))
    }

    fn verify_raw(&self, raw: &Path, same_inode: bool) -> Result<InodeFacts> {
        let out = tools::cmd("e2fsck")?
            .arg("-fn")
            .arg(self.volume_spec(raw))
            .stdin(Stdio::null())
            .output()
            .context("starting e2fsck")?;
        if !out.status.success() {
            bail!(
                "e2fsck -fn {} found problems ({}):\n{}{}",
                self.volume_spec(raw),
                out.status,
                String::from_utf8_lossy(&out.stdout),
                String::from_utf8_lossy(&out.stderr)
            );
        }
        let got = self.guest_file(raw)?;
        ensure!(
            got == self.new_fstab,
            "{GUEST_PATH} does not hold the new contents ({} bytes read back, {} expected)",
            got.len(),
            self.new_fstab.len()
        );
        let facts = self.stat(raw)?;
        if same_inode {
            ensure!(
                facts == self.original,
                "{GUEST_PATH} was not replaced in place: before {}, after {facts}",
                self.original
            );
        }
        Ok(facts)
    }

    /// No loop device may still be attached to `image`.
    fn no_loop_left(&self, image: &Path) -> Result<()> {
        let out = tools::stdout(tools::cmd("losetup")?.arg("-j").arg(image))?;
        ensure!(
            out.trim().is_empty(),
            "a loop device is still attached to {}: {out}",
            image.display()
        );
        Ok(())
    }

    fn put_and_undo(&self, format: Format, runs: usize) -> Result<()> {
        let name = format!("big.{}", format.extension());
        let mut put = Samples::default();
        let mut undo = Samples::default();
        let mut read_bytes = Constant::default();
        let mut reads = Constant::default();
        let mut undo_size = Constant::default();
        for i in 0..runs {
            let image = self.fresh_copy(format)?;
            let undo_dir = self.work.join(format!("undo-{}-{i}", format.extension()));
            fs::create_dir(&undo_dir)?;
            let mut c = Command::new(&self.bin);
            c.args(["-v", "put", &name, "new-fstab", GUEST_PATH])
                .current_dir(&self.work)
                .env("RESCUE_DISK_UNDO_DIR", &undo_dir)
                .env("NO_COLOR", "1")
                .stdin(Stdio::null());
            let t = Instant::now();
            let out = c.output().context("starting rescue-disk put")?;
            put.push(t.elapsed());
            ensure!(
                out.status.success(),
                "rescue-disk put failed ({}): {}",
                out.status,
                String::from_utf8_lossy(&out.stderr)
            );
            let (bytes, n) = parse_read_stats(&String::from_utf8_lossy(&out.stderr))
                .context("rescue-disk -v did not report the bytes it read from the host")?;
            read_bytes.0.push(bytes);
            reads.0.push(n);
            let logs: Vec<PathBuf> = fs::read_dir(&undo_dir)?
                .map(|e| e.map(|e| e.path()))
                .collect::<std::io::Result<_>>()?;
            ensure!(
                logs.len() == 1,
                "expected one undo file in {}, found {}",
                undo_dir.display(),
                logs.len()
            );
            undo_size.0.push(fs::metadata(&logs[0])?.len());
            self.verify(&image, format, true)?;

            let mut c = Command::new(&self.bin);
            c.args(["undo", &name])
                .current_dir(&self.work)
                .env("RESCUE_DISK_UNDO_DIR", &undo_dir)
                .env("NO_COLOR", "1")
                .stdin(Stdio::null());
            let t = Instant::now();
            let out = c.output().context("starting rescue-disk undo")?;
            undo.push(t.elapsed());
            ensure!(
                out.status.success(),
                "rescue-disk undo failed ({}): {}",
                out.status,
                String::from_utf8_lossy(&out.stderr)
            );
            let fmt = format.extension();
            tools::run(
                tools::cmd("qemu-img")?
                    .args(["compare", "-f", fmt, "-F", fmt])
                    .arg(self.fixture(format))
                    .arg(&image),
            )
            .context("after `rescue-disk undo` the guest differs from the fixture")?;
            fs::remove_dir_all(&undo_dir)?;
        }
        println!(
            "put {fmt}: `RESCUE_DISK_UNDO_DIR=undo-N {bin} -v put {name} new-fstab {GUEST_PATH}`: {}; \
             read {} bytes from the host in {} reads; undo file {} bytes; verified",
            put.summary(),
            read_bytes.show(),
            reads.show(),
            undo_size.show(),
            fmt = format.extension(),
            bin = self.bin.display(),
        );
        println!(
            "undo {fmt}: `RESCUE_DISK_UNDO_DIR=undo-N {bin} undo {name}`: {}; guest identical to the fixture (qemu-img compare)",
            undo.summary(),
            fmt = format.extension(),
            bin = self.bin.display(),
        );
        Ok(())
    }

    fn debugfs(&self, runs: usize) -> Result<()> {
        let script = self.work.join("debugfs-cmds");
        fs::write(
            &script,
            format!("rm {GUEST_PATH}\nwrite new-fstab {GUEST_PATH}\n"),
        )?;
        let spec = format!("big.raw?offset={}", self.start);
        let mut times = Samples::default();
        let mut after = None;
        for _ in 0..runs {
            let image = self.fresh_copy(Format::Raw)?;
            let mut c = tools::cmd("debugfs")?;
            c.args(["-w", "-f", "debugfs-cmds", &spec])
                .current_dir(&self.work)
                .env("DEBUGFS_PAGER", "__none__")
                .stdin(Stdio::null());
            let t = Instant::now();
            let out = c.output().context("starting debugfs")?;
            times.push(t.elapsed());
            ensure!(
                out.status.success(),
                "debugfs -w failed ({}): {}",
                out.status,
                String::from_utf8_lossy(&out.stderr)
            );
            after = Some(self.verify(&image, Format::Raw, false)?);
        }
        println!(
            "debugfs raw: `debugfs -w -f debugfs-cmds {spec}` (debugfs-cmds: `rm {GUEST_PATH}` / `write new-fstab {GUEST_PATH}`): {}; \
             verified; file before {}, after {}",
            times.summary(),
            self.original,
            after.map(|f| f.to_string()).unwrap_or_default(),
        );
        Ok(())
    }

    fn mount_cp_umount(&self, image: &Path, mnt: &Path) -> Result<()> {
        let mut m = LoopMount::mount(image, mnt, self.start, self.size)?;
        tools::run(
            tools::cmd("cp")?
                .arg(self.work.join("new-fstab"))
                .arg(mnt.join(GUEST_PATH.trim_start_matches('/'))),
        )?;
        m.unmount()
    }

    fn loop_mount_raw(&self, runs: usize) -> Result<()> {
        let mnt = self.work.join("mnt");
        fs::create_dir_all(&mnt)?;
        let mut times = Samples::default();
        for _ in 0..runs {
            let image = self.fresh_copy(Format::Raw)?;
            let t = Instant::now();
            self.mount_cp_umount(&image, &mnt)?;
            times.push(t.elapsed());
            self.no_loop_left(&image)?;
            self.verify(&image, Format::Raw, true)?;
        }
        println!(
            "loop mount raw: `mount -o loop,offset={},sizelimit={} big.raw mnt && cp new-fstab mnt{GUEST_PATH} && umount mnt`: {}; verified",
            self.start,
            self.size,
            times.summary()
        );
        Ok(())
    }

    fn qsd_loop_mount_qcow2(&self, runs: usize) -> Result<()> {
        let mnt = self.work.join("mnt");
        fs::create_dir_all(&mnt)?;
        let export = self.work.join("export.raw");
        let mut total = Samples::default();
        let mut ready = Samples::default();
        let mut stop = Samples::default();
        let virtual_size = fs::metadata(&self.raw_fixture)?.len();
        for _ in 0..runs {
            let image = self.fresh_copy(Format::Qcow2)?;
            fs::write(&export, b"")?;
            let t = Instant::now();
            let mut qsd = Qsd::start(&self.work, "big.qcow2", "export.raw")?;
            qsd.wait_ready(virtual_size)?;
            ready.push(t.elapsed());
            self.mount_cp_umount(&export, &mnt)?;
            self.no_loop_left(&export)?;
            let s = Instant::now();
            qsd.stop()?;
            stop.push(s.elapsed());
            total.push(t.elapsed());
            self.verify(&image, Format::Qcow2, true)?;
        }
        let _ = fs::remove_file(&export);
        println!(
            "qemu-storage-daemon + loop mount qcow2: `qemu-storage-daemon --blockdev driver=file,node-name=f,filename=big.qcow2 \
             --blockdev driver=qcow2,node-name=q,file=f --export type=fuse,id=e,node-name=q,mountpoint=export.raw,writable=on &` \
             (wait for the export), `mount -o loop,offset={},sizelimit={} export.raw mnt && cp new-fstab mnt{GUEST_PATH} && umount mnt`, \
             `kill -TERM` + wait: {}; export ready after {}; stop {}; verified",
            self.start,
            self.size,
            total.summary(),
            ready.summary(),
            stop.summary(),
        );
        Ok(())
    }
}

/// The replacement fstab: the fixture's own lines, a tmpfs line, and a
/// comment padding it to [`NEW_FSTAB_LEN`] bytes.
fn new_fstab(old: &[u8]) -> Vec<u8> {
    let mut v = old.to_vec();
    if !v.is_empty() && !v.ends_with(b"\n") {
        v.push(b'\n');
    }
    v.extend_from_slice(b"tmpfs /tmp tmpfs defaults,nosuid,nodev 0 0\n");
    let comment = b"# replaced by cargo xtask bench-write ";
    if v.len() + comment.len() + 1 < NEW_FSTAB_LEN {
        v.extend_from_slice(comment);
        v.resize(NEW_FSTAB_LEN - 1, b'-');
        v.push(b'\n');
    }
    v
}

/// `(bytes, reads)` from rescue-disk's `read N bytes from the host in M reads`.
fn parse_read_stats(stderr: &str) -> Option<(u64, u64)> {
    let line = stderr.lines().find(|l| l.contains("bytes from the host"))?;
    let words: Vec<&str> = line.split_whitespace().collect();
    let at = words.iter().position(|w| *w == "read")?;
    let bytes = words.get(at + 1)?.parse().ok()?;
    let reads = words
        .windows(2)
        .find(|w| w[1].starts_with("reads"))?
        .first()?
        .parse()
        .ok()?;
    Some((bytes, reads))
}

/// Inode, mode and owner from `debugfs -R "stat PATH"` output.
fn parse_stat(out: &str) -> Option<InodeFacts> {
    let words: Vec<&str> = out.split_whitespace().collect();
    let after = |key: &str| {
        words
            .windows(2)
            .find(|w| w[0] == key)
            .map(|w| w[1].to_string())
    };
    Some(InodeFacts {
        inode: after("Inode:")?.parse().ok()?,
        mode: after("Mode:")?,
        uid: after("User:")?.parse().ok()?,
        gid: after("Group:")?.parse().ok()?,
    })
}

/// Whether `path` is a mount point, per /proc/self/mountinfo.
fn is_mount_point(path: &Path) -> bool {
    let escaped = path
        .to_string_lossy()
        .replace('\\', "\\134")
        .replace(' ', "\\040")
        .replace('\t', "\\011")
        .replace('\n', "\\012");
    fs::read_to_string("/proc/self/mountinfo")
        .map(|t| {
            t.lines()
                .any(|l| l.split(' ').nth(4) == Some(escaped.as_str()))
        })
        .unwrap_or(false)
}

/// A kernel loop mount of the root volume; unmounted on drop if still up.
struct LoopMount {
    mnt: PathBuf,
    mounted: bool,
}

impl LoopMount {
    fn mount(image: &Path, mnt: &Path, start: u64, size: u64) -> Result<LoopMount> {
        tools::run(
            tools::cmd("mount")?
                .arg("-o")
                .arg(format!("loop,offset={start},sizelimit={size}"))
                .arg(image)
                .arg(mnt),
        )?;
        Ok(LoopMount {
            mnt: mnt.to_path_buf(),
            mounted: true,
        })
    }

    fn unmount(&mut self) -> Result<()> {
        tools::run(tools::cmd("umount")?.arg(&self.mnt))?;
        self.mounted = false;
        Ok(())
    }
}

impl Drop for LoopMount {
    fn drop(&mut self) {
        if self.mounted && is_mount_point(&self.mnt) {
            let ok = tools::cmd("umount")
                .and_then(|mut c| tools::run(c.arg(&self.mnt)))
                .is_ok();
            if !ok {
                eprintln!(
                    "cleanup: umount {} failed; lazily detaching it",
                    self.mnt.display()
                );
                let _ =
                    tools::cmd("umount").and_then(|mut c| tools::run(c.arg("-l").arg(&self.mnt)));
            }
        }
    }
}

/// A qemu-storage-daemon exporting a qcow2 as a raw file over FUSE; on
/// drop it is stopped (SIGTERM, then SIGKILL) and the export unmounted.
struct Qsd {
    child: Option<Child>,
    export: PathBuf,
    log: PathBuf,
}

impl Qsd {
    /// Starts the daemon in `dir` on `dir/IMAGE`, exporting `dir/EXPORT`
    /// (an existing regular file), with names relative to `dir` as printed.
    fn start(dir: &Path, image: &str, export: &str) -> Result<Qsd> {
        let log = dir.join("qsd.log");
        let log_file = fs::File::create(&log)?;
        let child = tools::cmd("qemu-storage-daemon")?
            .current_dir(dir)
            .arg("--blockdev")
            .arg(format!("driver=file,node-name=f,filename={image}"))
            .args(["--blockdev", "driver=qcow2,node-name=q,file=f"])
            .arg("--export")
            .arg(format!(
                "type=fuse,id=e,node-name=q,mountpoint={export},writable=on"
            ))
            .stdin(Stdio::null())
            .stdout(log_file.try_clone()?)
            .stderr(log_file)
            .spawn()
            .context("starting qemu-storage-daemon")?;
        Ok(Qsd {
            child: Some(child),
            export: dir.join(export),
            log,
        })
    }

    fn log_text(&self) -> String {
        fs::read_to_string(&self.log).unwrap_or_default()
    }

    /// Polls until the export is mounted and shows the virtual size.
    fn wait_ready(&mut self, virtual_size: u64) -> Result<()> {
        let deadline = Instant::now() + Duration::from_secs(30);
        loop {
            if let Some(child) = self.child.as_mut() {
                if let Some(status) = child.try_wait()? {
                    self.child = None;
                    bail!(
                        "qemu-storage-daemon exited ({status}) before its export was ready: {}",
                        self.log_text()
                    );
                }
            }
            if is_mount_point(&self.export)
                && fs::metadata(&self.export).map(|m| m.len()).unwrap_or(0) == virtual_size
            {
                return Ok(());
            }
            ensure!(
                Instant::now() < deadline,
                "the FUSE export {} was not ready after 30 s: {}",
                self.export.display(),
                self.log_text()
            );
            std::thread::sleep(Duration::from_millis(1));
        }
    }

    /// SIGTERM, wait for the exit, check the export is gone.
    fn stop(&mut self) -> Result<()> {
        let Some(mut child) = self.child.take() else {
            bail!("qemu-storage-daemon is not running");
        };
        let term = tools::cmd("kill")
            .and_then(|mut c| tools::run(c.arg("-TERM").arg(child.id().to_string())));
        if let Err(e) = term {
            let _ = child.kill();
            let _ = child.wait();
            return Err(e.context("stopping qemu-storage-daemon"));
        }
        let status = child.wait()?;
        ensure!(
            status.success(),
            "qemu-storage-daemon exited with {status} after SIGTERM: {}",
            self.log_text()
        );
        ensure!(
            !is_mount_point(&self.export),
            "the FUSE export {} is still mounted after qemu-storage-daemon exited",
            self.export.display()
        );
        Ok(())
    }
}

impl Drop for Qsd {
    fn drop(&mut self) {
        if let Some(mut child) = self.child.take() {
            let _ = tools::cmd("kill")
                .and_then(|mut c| tools::run(c.arg("-TERM").arg(child.id().to_string())));
            let deadline = Instant::now() + Duration::from_secs(10);
            loop {
                match child.try_wait() {
                    Ok(Some(_)) => break,
                    Ok(None) if Instant::now() < deadline => {
                        std::thread::sleep(Duration::from_millis(10));
                    }
                    _ => {
                        eprintln!("cleanup: qemu-storage-daemon ignored SIGTERM; killing it");
                        let _ = child.kill();
                        let _ = child.wait();
                        break;
                    }
                }
            }
        }
        if is_mount_point(&self.export) {
            eprintln!(
                "cleanup: FUSE export {} still mounted; detaching it",
                self.export.display()
            );
            let _ =
                tools::cmd("umount").and_then(|mut c| tools::run(c.arg("-l").arg(&self.export)));
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn read_stats_are_parsed() {
        let err = " INFO applied op=write\n INFO read 4488516 bytes from the host in 588 reads (4.3 MiB)\n";
        assert_eq!(parse_read_stats(err), Some((4488516, 588)));
        assert_eq!(parse_read_stats("nothing"), None);
    }

    #[test]
    fn stat_is_parsed() {
        let out = "Inode: 32   Type: regular    Mode:  0644   Flags: 0x80000\n\
                   Generation: 0    Version: 0x00000000:00000000\n\
                   User:     0   Group:     0   Project:     0   Size: 442\n";
        assert_eq!(
            parse_stat(out),
            Some(InodeFacts {
                inode: 32,
                mode: "0644".into(),
                uid: 0,
                gid: 0
            })
        );
    }

    #[test]
    fn new_fstab_is_padded_and_keeps_the_old_lines() {
        let v = new_fstab(b"UUID=x / ext4 defaults 0 1\n");
        assert_eq!(v.len(), NEW_FSTAB_LEN);
        assert!(v.starts_with(b"UUID=x / ext4 defaults 0 1\ntmpfs /tmp"));
        assert!(v.ends_with(b"-\n"));
    }
}
