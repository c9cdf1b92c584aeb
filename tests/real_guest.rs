//! Slow suite with a REAL Debian 12 guest: the image `cargo xtask
//! real-guest build` makes with `mmdebstrap`, `grub-install` and
//! `update-grub`, booted under `qemu-system-x86_64` (TCG) and entered with
//! `ssh`; and `rescue-disk inspect --json` on that image judged against
//! what the running guest and the real tools (`sfdisk`, `blkid`, `debugfs`,
//! `dpkg-query`) say.
//!
//! Opt-in: runs only with `RESCUE_SLOW_TESTS=1` (and then fails, never
//! skips, when the image cannot be built: root, mmdebstrap and qemu are
//! needed; see fixtures/real-guest/README.md). Minutes, not seconds: keep
//! it out of `.ci/run`.
//!
//! Must never: modify the cached image (every boot here uses
//! `snapshot=on`), or boot two guests at once (two TCG guests on two
//! shared cores would only time out).

mod support;

use std::io::{Read, Seek, SeekFrom};
use std::path::Path;
use std::process::Command;
use std::sync::{Mutex, OnceLock};

use serde_json::Value;
use support::*;
use xtask::real_guest::{self, BootOptions, BootResult, Image};
use xtask::Format;

/// What the guest is asked once it lets root in: kernel, systemd state,
/// the UUID of the filesystem really mounted at /.
const FACTS_COMMAND: &str = "uname -r; systemctl is-system-running || true; findmnt -n -o UUID /";

/// GPT type GUID of a BIOS boot partition, as sfdisk prints it.
const BIOS_BOOT_TYPE: &str = "21686148-6449-6E6F-744E-656564454649";

fn enabled(test: &str) -> bool {
    if real_guest::slow_tests_enabled() {
        return true;
    }
    eprintln!(
        "SKIPPED {test}: slow real-guest suite; set {}=1 to run it (root; builds the image with mmdebstrap on first use)",
        real_guest::SLOW_TESTS_ENV
    );
    false
}

/// The built image (built on first use, minutes).
fn image() -> &'static Image {
    static IMAGE: OnceLock<Image> = OnceLock::new();
    IMAGE.get_or_init(|| {
        real_guest::ensure_built().unwrap_or_else(|e| panic!("building the real guest: {e:#}"))
    })
}

/// One guest at a time.
static BOOTS: Mutex<()> = Mutex::new(());

/// Boots the cached image in `format` (writes discarded), runs
/// [`FACTS_COMMAND`], and insists that root got in.
fn boot(format: Format) -> BootResult {
    let image = image();
    let _one = BOOTS.lock().unwrap_or_else(|p| p.into_inner());
    let mut o = BootOptions::new(image.path(format), format);
    o.snapshot = true;
    o.command = FACTS_COMMAND.to_string();
    o.private_key = image.private_key.clone();
    let r = real_guest::boot(&o).expect("running qemu");
    eprintln!(
        "{} boot: ssh after {:.1}s, {:.1}s with poweroff",
        format.extension(),
        r.seconds,
        r.total_seconds
    );
    assert!(
        r.ssh_ok,
        "{}: no ssh login as root after {:.1}s: {}\nserial log {} ends with:\n{}\nqemu: {}",
        image.path(format).display(),
        r.seconds,
        r.last_ssh_error,
        r.serial_log.display(),
        r.serial_log_tail,
        r.qemu_output.trim()
    );
    r
}

/// The raw image's boot, shared by the tests that need `uname -r`.
fn raw_boot() -> &'static BootResult {
    static BOOT: OnceLock<BootResult> = OnceLock::new();
    BOOT.get_or_init(|| boot(Format::Raw))
}

/// Lines of the guest's answer to [`FACTS_COMMAND`]: (uname -r, state,
/// UUID of /).
fn facts(r: &BootResult) -> (String, String, String) {
    let lines: Vec<&str> = r.output.lines().map(str::trim).collect();
    assert_eq!(
        lines.len(),
        3,
        "unexpected answer to {FACTS_COMMAND:?}:\n{}\nstderr:\n{}",
        r.output,
        r.command_stderr
    );
    (lines[0].into(), lines[1].into(), lines[2].into())
}

fn tool(name: &str) -> Command {
    xtask::tools::cmd(name).unwrap_or_else(|e| panic!("{e:#}"))
}

fn tool_stdout(c: &mut Command) -> String {
    xtask::tools::stdout(c).unwrap_or_else(|e| panic!("{e:#}"))
}

/// `sfdisk --json` of the raw image: (number, start byte, type) of every
/// partition.
fn sfdisk_partitions(raw: &Path) -> Vec<(u32, u64, String)> {
    let v: Value =
        serde_json::from_str(&tool_stdout(tool("sfdisk").arg("--json").arg(raw))).unwrap();
    let t = &v["partitiontable"];
    assert_eq!(t["label"], "gpt");
    let sector = t["sectorsize"].as_u64().unwrap();
    let raw_name = raw.to_str().unwrap();
    t["partitions"]
        .as_array()
        .unwrap()
        .iter()
        .map(|p| {
            let number = p["node"].as_str().unwrap()[raw_name.len()..]
                .parse()
                .unwrap();
            (
                number,
                p["start"].as_u64().unwrap() * sector,
                p["type"].as_str().unwrap().to_owned(),
            )
        })
        .collect()
}

/// `blkid -p` of the filesystem at `offset` of the raw image (empty when
/// blkid finds nothing there: exit status 2).
fn blkid_at(raw: &Path, offset: u64) -> Vec<(String, String)> {
    let out = tool("blkid")
        .args(["-p", "-o", "export", "-O"])
        .arg(offset.to_string())
        .arg(raw)
        .output()
        .expect("running blkid");
    match out.status.code() {
        Some(0) => {}
        Some(2) => return Vec::new(),
        _ => panic!(
            "blkid -p -O {offset} {}: {}: {}",
            raw.display(),
            out.status,
            String::from_utf8_lossy(&out.stderr)
        ),
    }
    String::from_utf8_lossy(&out.stdout)
        .lines()
        .filter_map(|l| l.split_once('='))
        .map(|(k, v)| (k.to_owned(), v.to_owned()))
        .collect()
}

/// What the real tools say about the image, independently of rescue-disk.
struct Oracle {
    root_partition: u32,
    bios_boot_partition: u32,
    bios_boot_nonzero: bool,
    mbr_has_grub: bool,
    /// Kernel versions of the installed `linux-image-<version>` packages,
    /// from `dpkg-query --admindir` on the image's dpkg database.
    dpkg_kernels: Vec<String>,
    os_release: String,
    hostname: String,
    fstab_entries: usize,
    grub_cfg: String,
}

fn oracle() -> &'static Oracle {
    static ORACLE: OnceLock<Oracle> = OnceLock::new();
    ORACLE.get_or_init(|| {
        let raw = &image().raw;
        let parts = sfdisk_partitions(raw);
        let root = parts
            .iter()
            .find(|(_, start, _)| {
                blkid_at(raw, *start)
                    .iter()
                    .any(|(k, v)| k == "UUID" && v == real_guest::ROOT_FS_UUID)
            })
            .expect("blkid finds the recipe's root UUID on a partition");
        let bios = parts
            .iter()
            .find(|p| p.2.eq_ignore_ascii_case(BIOS_BOOT_TYPE))
            .expect("sfdisk lists a BIOS boot partition");
        // The MBR's boot code and the start of the BIOS boot partition,
        // where grub-install puts boot.img and core.img.
        let mut f = std::fs::File::open(raw).unwrap();
        let mut mbr = vec![0u8; 440];
        f.read_exact(&mut mbr).unwrap();
        let mut core = vec![0u8; 64 * 1024];
        f.seek(SeekFrom::Start(bios.1)).unwrap();
        f.read_exact(&mut core).unwrap();

        // debugfs reads the root filesystem in place (`image?offset=`).
        let fs = format!("{}?offset={}", raw.display(), root.1);
        let cat = |guest_path: &str| {
            tool_stdout(
                tool("debugfs")
                    .arg("-R")
                    .arg(format!("cat {guest_path}"))
                    .arg(&fs),
            )
        };
        let admin = tempfile::tempdir().unwrap();
        std::fs::create_dir(admin.path().join("info")).unwrap();
        std::fs::create_dir(admin.path().join("updates")).unwrap();
        std::fs::write(admin.path().join("status"), cat("/var/lib/dpkg/status")).unwrap();
        let dpkg = tool_stdout(
            tool("dpkg-query")
                .arg(format!("--admindir={}", admin.path().display()))
                .args([
                    "-W",
                    "-f",
                    "${db:Status-Abbrev}\t${Package}\n",
                    "linux-image-*",
                ]),
        );
        let installed: Vec<&str> = dpkg
            .lines()
            .filter_map(|l| l.split_once('\t'))
            .filter(|(s, _)| s.trim() == "ii")
            .map(|(_, p)| p)
            .collect();
        let mut dpkg_kernels = real_guest::kernel_of_packages(installed);
        dpkg_kernels.sort();
        let fstab_entries = cat("/etc/fstab")
            .lines()
            .filter(|l| !l.trim().is_empty() && !l.trim_start().starts_with('#'))
            .count();
        Oracle {
            root_partition: root.0,
            bios_boot_partition: bios.0,
            bios_boot_nonzero: core.iter().any(|&b| b != 0),
            mbr_has_grub: mbr.windows(4).any(|w| w == b"GRUB"),
            dpkg_kernels,
            os_release: cat("/usr/lib/os-release"),
            hostname: cat("/etc/hostname").trim().to_owned(),
            fstab_entries,
            grub_cfg: cat("/boot/grub/grub.cfg"),
        }
    })
}

fn os_release_value(text: &str, key: &str) -> Option<String> {
    text.lines()
        .find_map(|l| l.strip_prefix(&format!("{key}=")))
        .map(|v| v.trim().trim_matches('"').to_owned())
}

#[test]
fn real_guest_boots_and_lets_root_in() {
    if !enabled("real_guest_boots_and_lets_root_in") {
        return;
    }
    let r = raw_boot();
    let (uname, state, root_uuid) = facts(r);
    assert_eq!(r.command_status, Some(0), "{}", r.command_stderr);
    assert_eq!(
        vec![uname.clone()],
        oracle().dpkg_kernels,
        "the running kernel is the one installed package"
    );
    assert_eq!(uname, image().info.kernel_version);
    assert_eq!(
        state,
        "running",
        "systemctl is-system-running; serial log {}",
        r.serial_log.display()
    );
    assert_eq!(
        root_uuid,
        real_guest::ROOT_FS_UUID,
        "filesystem mounted at /"
    );
    assert!(r.powered_off, "the guest did not power off within 90 s");
}

#[test]
fn real_guest_qcow2_boots_too() {
    if !enabled("real_guest_qcow2_boots_too") {
        return;
    }
    let r = boot(Format::Qcow2);
    let (uname, state, _) = facts(&r);
    assert_eq!(uname, image().info.kernel_version);
    assert_eq!(state, "running");
}

fn check_inspect(format: Format) {
    let image = image();
    let path = image.path(format);
    let report = inspect_json(path);
    let o = oracle();
    let (uname, _, _) = facts(raw_boot());
    let what = path.display().to_string();

    assert_eq!(report["target"]["format"], format.extension(), "{what}");
    let g = &report["guest"];
    let root_id = format!("p{}", o.root_partition);
    assert_eq!(
        g["root"]["volume_id"],
        root_id.as_str(),
        "{what}: root volume"
    );
    let root_vol = report["volumes"]
        .as_array()
        .unwrap()
        .iter()
        .find(|v| v["id"] == root_id.as_str())
        .unwrap_or_else(|| panic!("{what}: no volume {root_id}"));
    assert_eq!(root_vol["probe"]["uuid"], real_guest::ROOT_FS_UUID);
    assert_eq!(root_vol["probe"]["fstype"], "ext4");

    assert_eq!(
        g["os"]["id"].as_str(),
        os_release_value(&o.os_release, "ID").as_deref()
    );
    assert_eq!(g["os"]["id"], "debian");
    assert_eq!(
        g["os"]["version_id"].as_str(),
        os_release_value(&o.os_release, "VERSION_ID").as_deref()
    );
    assert_eq!(g["os"]["version_id"], "12");
    assert_eq!(g["hostname"].as_str(), Some(o.hostname.as_str()));

    // Kernels: exactly the dpkg-installed ones, complete, equal to uname.
    let kernels = g["kernels"].as_array().unwrap();
    let mut versions: Vec<String> = kernels
        .iter()
        .filter(|k| k["rescue"] == false)
        .map(|k| k["version"].as_str().unwrap().to_owned())
        .collect();
    versions.sort();
    assert_eq!(versions, o.dpkg_kernels, "{what}: kernels vs dpkg-query");
    assert_eq!(versions, vec![uname.clone()], "{what}: kernels vs uname -r");
    for k in kernels {
        assert_eq!(k["complete"], true, "{what}: {k:#}");
        assert_eq!(k["missing"], serde_json::json!([]), "{what}: {k:#}");
    }

    // Bootloader: GRUB for BIOS, in the BIOS boot partition and the MBR.
    let b = &g["bootloader"];
    assert!(
        o.mbr_has_grub && o.bios_boot_nonzero,
        "oracle: GRUB not on the disk?"
    );
    assert_eq!(
        b["bios"]["bios_boot_partition"],
        format!("p{}", o.bios_boot_partition).as_str(),
        "{what}"
    );
    assert_eq!(b["bios"]["bios_boot_partition_empty"], false, "{what}");
    assert_eq!(b["bios"]["mbr_boot_code"], "grub", "{what}");
    assert_eq!(b["grub_cfg"]["path"], "/boot/grub/grub.cfg", "{what}");
    assert_eq!(b["grub_cfg"]["volume_id"], root_id.as_str(), "{what}");
    let d = &b["default_entry"];
    assert_eq!(d["kernel_version"], uname.as_str(), "{what}: {d:#}");
    assert_eq!(d["kernel_complete"], true, "{what}: {d:#}");
    let linux = d["linux"].as_str().unwrap();
    assert_eq!(linux, format!("/boot/vmlinuz-{uname}"));
    assert!(
        o.grub_cfg.contains(&format!(
            "linux\t{linux} root=UUID={}",
            real_guest::ROOT_FS_UUID
        )) || o.grub_cfg.contains(&format!(
            "linux {linux} root=UUID={}",
            real_guest::ROOT_FS_UUID
        )),
        "grub.cfg on the disk has no linux line for {linux} with root=UUID"
    );

    // fstab: every line resolves, / to the root volume.
    let fstab = g["fstab"].as_array().unwrap();
    assert_eq!(fstab.len(), o.fstab_entries, "{what}: fstab entries");
    for e in fstab {
        assert_eq!(e["resolution"]["status"], "resolved", "{what}: {e:#}");
    }
    let root_line = fstab
        .iter()
        .find(|e| e["mount_point"] == "/")
        .unwrap_or_else(|| panic!("{what}: no fstab line for /"));
    assert_eq!(root_line["resolution"]["volume_id"], root_id.as_str());
    assert_eq!(
        root_line["source"],
        format!("UUID={}", real_guest::ROOT_FS_UUID).as_str()
    );
    assert_eq!(report["diagnostics"], serde_json::json!([]), "{what}");
    assert_eq!(g["diagnostics"], serde_json::json!([]), "{what}");
}

#[test]
fn inspect_reads_the_real_guest_raw() {
    if !enabled("inspect_reads_the_real_guest_raw") {
        return;
    }
    check_inspect(Format::Raw);
}

#[test]
fn inspect_reads_the_real_guest_qcow2() {
    if !enabled("inspect_reads_the_real_guest_qcow2") {
        return;
    }
    check_inspect(Format::Qcow2);
}

/// `check` on a real, healthy Debian 12 that boots and lets root in: the
/// catalogue must find nothing wrong (no false positives on a real guest).
#[test]
fn check_finds_nothing_wrong_on_the_real_guest() {
    if !enabled("check_finds_nothing_wrong_on_the_real_guest") {
        return;
    }
    for format in [Format::Raw, Format::Qcow2] {
        let path = image().path(format);
        let run = run(&["check", "--json", path.to_str().unwrap()]);
        assert_eq!(run.code, 0, "{}\n{}", run.stdout, run.stderr);
        let report = run.json();
        assert_eq!(report["findings"], Value::Array(vec![]), "{report:#}");
        assert_eq!(report["errors"], Value::Array(vec![]), "{report:#}");
    }
}

/// The whole point: a real Debian 12 broken the classic ways (an fstab
/// line for a disk that is gone, `chmod 777 /root/.ssh`, a typo in
/// sshd_config) is repaired by `rescue-disk fix` alone — no root, no mount
/// — and then really boots and lets root in with its key. `undo` brings
/// back the broken image byte for byte.
#[test]
fn fix_makes_a_broken_real_guest_boot_and_let_root_in() {
    if !enabled("fix_makes_a_broken_real_guest_boot_and_let_root_in") {
        return;
    }
    let dir = tempfile::tempdir().unwrap();
    let img = dir.path().join("broken.qcow2");
    let st = Command::new("cp")
        .arg("--sparse=always")
        .arg(image().path(Format::Qcow2))
        .arg(&img)
        .status()
        .unwrap();
    assert!(st.success());
    let i = img.to_str().unwrap();
    let undo = dir.path().join("undo");
    let rd = |args: &[&str]| {
        let out = Command::new(bin())
            .args(args)
            .env("NO_COLOR", "1")
            .env("RESCUE_DISK_UNDO_DIR", &undo)
            .output()
            .unwrap();
        (
            out.status.code().unwrap_or(-1),
            String::from_utf8_lossy(&out.stdout).into_owned(),
            String::from_utf8_lossy(&out.stderr).into_owned(),
        )
    };
    // Break it with rescue-disk's own file commands.
    let (_, fstab, _) = rd(&["cat", i, "/etc/fstab"]);
    let broken_fstab = dir.path().join("fstab");
    std::fs::write(
        &broken_fstab,
        format!("{fstab}/dev/sdb1 /data ext4 defaults 0 2\n"),
    )
    .unwrap();
    let (_, sshd, _) = rd(&["cat", i, "/etc/ssh/sshd_config"]);
    let broken_sshd = dir.path().join("sshd_config");
    std::fs::write(&broken_sshd, format!("{sshd}PasswordAuthentification no\n")).unwrap();
    for args in [
        vec!["put", i, broken_fstab.to_str().unwrap(), "/etc/fstab"],
        vec![
            "put",
            i,
            broken_sshd.to_str().unwrap(),
            "/etc/ssh/sshd_config",
        ],
        vec!["chmod", i, "0777", "/root/.ssh"],
    ] {
        let (code, _, err) = rd(&args);
        assert_eq!(code, 0, "{args:?}: {err}");
    }
    let broken_sha = xtask::sha256_file(&img).unwrap();
    let (code, out, _) = rd(&["check", "--json", i]);
    assert_eq!(code, 1, "{out}");
    let report: Value = serde_json::from_str(&out).unwrap();
    let ids: Vec<&str> = report["findings"]
        .as_array()
        .unwrap()
        .iter()
        .map(|f| f["check"].as_str().unwrap())
        .collect();
    for id in ["fstab.unstable-device", "sshd.config-syntax"] {
        assert!(ids.contains(&id), "check should find {id}: {ids:?}");
    }
    // The .ssh modes are masked while sshd would not start at all.
    assert!(
        report["skipped"]
            .as_array()
            .unwrap()
            .iter()
            .any(|s| s["check"] == "ssh.home-modes"),
        "{report:#}"
    );

    // fix repairs, checks again, and repairs what the first round uncovered.
    let (code, out, err) = rd(&["fix", "--json", i]);
    assert_eq!(code, 0, "fix:\n{out}\n{err}");
    let doc: Value = serde_json::from_str(&out).unwrap();
    let fixed: Vec<&str> = doc["repairs"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|r| r["status"] == "fixed")
        .map(|r| r["check"].as_str().unwrap())
        .collect();
    for id in [
        "fstab.unstable-device",
        "sshd.config-syntax",
        "ssh.home-modes",
    ] {
        assert!(fixed.contains(&id), "fix should fix {id}: {doc:#}");
    }

    let image = image();
    let _one = BOOTS.lock().unwrap_or_else(|p| p.into_inner());
    let mut o = BootOptions::new(&img, Format::Qcow2);
    o.snapshot = true;
    // `systemctl is-system-running` would say "starting" for 90 s: with
    // nofail, systemd still waits for /dev/sdb1 in the background.
    o.command =
        "systemctl is-active ssh; stat -c %a /root/.ssh; sshd -t && echo sshd-config-ok".into();
    o.private_key = image.private_key.clone();
    let r = real_guest::boot(&o).expect("running qemu");
    assert!(
        r.ssh_ok,
        "the fixed guest did not let root in after {:.1}s: {}\nserial log {} ends with:\n{}",
        r.seconds,
        r.last_ssh_error,
        r.serial_log.display(),
        r.serial_log_tail
    );
    let lines: Vec<&str> = r.output.lines().map(str::trim).collect();
    assert_eq!(lines.len(), 3, "{}\n{}", r.output, r.command_stderr);
    assert_eq!(lines[0], "active", "serial log {}", r.serial_log.display());
    let mode = u32::from_str_radix(lines[1], 8).unwrap();
    assert_eq!(
        mode & 0o022,
        0,
        "/root/.ssh is {mode:o} in the booted guest"
    );
    assert_eq!(lines[2], "sshd-config-ok", "{}", r.command_stderr);
    eprintln!("fixed guest: ssh after {:.1}s", r.seconds);

    let (code, _, err) = rd(&["undo", i]);
    assert_eq!(code, 0, "{err}");
    assert_eq!(
        xtask::sha256_file(&img).unwrap(),
        broken_sha,
        "undo restores the broken image exactly"
    );
}
