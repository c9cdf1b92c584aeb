//! Hostile and broken targets: each must give one clear line on stderr,
//! exit 2, no panic, no hang and bounded memory — or, where the damage is
//! survivable (a corrupt primary GPT), a report that says what was used.

mod support;

use std::fs;
use std::io::{Seek, SeekFrom, Write};
use std::path::{Path, PathBuf};
use std::process::Command;

use support::*;
use xtask::Format;

fn scratch(layout: &str, format: Format) -> Option<(tempfile::TempDir, PathBuf)> {
    if !layout_available(layout) {
        return None;
    }
    Some(xtask::scratch_copy(layout, format).expect("scratch copy of fixture"))
}

fn patch(path: &Path, offset: u64, bytes: &[u8]) {
    let mut f = fs::OpenOptions::new().write(true).open(path).unwrap();
    f.seek(SeekFrom::Start(offset)).unwrap();
    f.write_all(bytes).unwrap();
}

fn read_at(path: &Path, offset: u64, len: usize) -> Vec<u8> {
    use std::os::unix::fs::FileExt;
    let mut buf = vec![0u8; len];
    fs::File::open(path)
        .unwrap()
        .read_exact_at(&mut buf, offset)
        .unwrap();
    buf
}

fn path_str(p: &Path) -> &str {
    p.to_str().unwrap()
}

#[test]
fn missing_file() {
    let dir = tempfile::tempdir().unwrap();
    let p = dir.path().join("nope.qcow2");
    run_limited(&["inspect", path_str(&p)]).assert_clean_error(&["nope.qcow2", "no such file"]);
}

#[test]
fn empty_file() {
    let dir = tempfile::tempdir().unwrap();
    let p = dir.path().join("empty.raw");
    fs::write(&p, b"").unwrap();
    run_limited(&["inspect", path_str(&p)]).assert_clean_error(&["empty.raw", "empty"]);
}

#[test]
fn directory() {
    let dir = tempfile::tempdir().unwrap();
    run_limited(&["inspect", path_str(dir.path())]).assert_clean_error(&["directory"]);
}

#[test]
fn random_bytes() {
    let dir = tempfile::tempdir().unwrap();
    let p = dir.path().join("noise.raw");
    let mut state: u64 = 0x9e37_79b9_7f4a_7c15;
    let bytes: Vec<u8> = (0..4 << 20)
        .map(|_| {
            state ^= state << 13;
            state ^= state >> 7;
            state ^= state << 17;
            state as u8
        })
        .collect();
    fs::write(&p, bytes).unwrap();
    run_limited(&["inspect", path_str(&p)])
        .assert_clean_error(&["noise.raw", "no partition table"]);
}

#[test]
fn truncated_raw_image_partition_beyond_end() {
    let Some((_dir, p)) = scratch("gpt-debian", Format::Raw) else {
        return;
    };
    // The root partition (p1) spans 20 MiB..66 MiB: cut the disk at 40 MiB.
    fs::OpenOptions::new()
        .write(true)
        .open(&p)
        .unwrap()
        .set_len(40 << 20)
        .unwrap();
    run_limited(&["inspect", path_str(&p)]).assert_clean_error(&[
        "partition 1",
        "beyond the end of the disk",
        "0x",
    ]);
}

#[test]
fn truncated_qcow2_image() {
    let Some((_dir, p)) = scratch("gpt-debian", Format::Qcow2) else {
        return;
    };
    let len = fs::metadata(&p).unwrap().len();
    fs::OpenOptions::new()
        .write(true)
        .open(&p)
        .unwrap()
        .set_len(len / 2)
        .unwrap();
    run_limited(&["inspect", path_str(&p)]).assert_clean_error(&["gpt-debian.qcow2", "0x"]);
}

#[test]
fn corrupt_primary_gpt_header_uses_backup() {
    let Some((_dir, p)) = scratch("gpt-debian", Format::Raw) else {
        return;
    };
    let healthy = inspect_json(&p);
    // Flip a byte of the primary header's disk GUID: its CRC no longer matches.
    let mut b = read_at(&p, 0x200 + 0x38, 1);
    b[0] ^= 0xff;
    patch(&p, 0x200 + 0x38, &b);
    let report = inspect_json(&p);
    assert_eq!(report["partition_table"]["used_backup"], true);
    assert_eq!(
        report["volumes"], healthy["volumes"],
        "same volumes from the backup"
    );
    let diags = report["diagnostics"].to_string();
    assert!(
        diags.contains("0x200"),
        "diagnostic names the corrupt header's offset: {diags}"
    );
}

#[test]
fn corrupt_primary_gpt_entry_array_uses_backup() {
    let Some((_dir, p)) = scratch("gpt-debian", Format::Raw) else {
        return;
    };
    let healthy = inspect_json(&p);
    let mut b = read_at(&p, 0x400 + 0x20, 8);
    for x in &mut b {
        *x ^= 0x5a;
    }
    patch(&p, 0x400 + 0x20, &b);
    let report = inspect_json(&p);
    assert_eq!(report["partition_table"]["used_backup"], true);
    assert_eq!(report["volumes"], healthy["volumes"]);
    assert!(report["diagnostics"].to_string().contains("0x400"));
}

fn qcow2_u64(p: &Path, offset: u64) -> u64 {
    u64::from_be_bytes(read_at(p, offset, 8).try_into().unwrap())
}

#[test]
fn corrupt_qcow2_header() {
    let Some((_dir, p)) = scratch("gpt-debian", Format::Qcow2) else {
        return;
    };
    patch(&p, 4, &99u32.to_be_bytes());
    run_limited(&["inspect", path_str(&p)]).assert_clean_error(&["qcow2", "version", "99"]);
}

#[test]
fn corrupt_qcow2_l1_table() {
    let Some((_dir, p)) = scratch("gpt-debian", Format::Qcow2) else {
        return;
    };
    // Header field l1_table_offset is at byte 40; make entry 0 point far
    // beyond the end of the file (keeping the "copied" flag bit 63).
    let l1 = qcow2_u64(&p, 40);
    patch(&p, l1, &((1u64 << 63) | (1u64 << 40)).to_be_bytes());
    run_limited(&["inspect", path_str(&p)]).assert_clean_error(&["l1", "0x"]);
}

#[test]
fn encrypted_qcow2() {
    let dir = tempfile::tempdir().unwrap();
    let p = dir.path().join("secret.qcow2");
    let status = Command::new("qemu-img")
        .args([
            "create",
            "-q",
            "-f",
            "qcow2",
            "--object",
            "secret,id=sec0,data=hunter2",
        ])
        .args([
            "-o",
            "encrypt.format=luks,encrypt.key-secret=sec0,encrypt.iter-time=10",
        ])
        .arg(&p)
        .arg("16M")
        .status()
        .expect("qemu-img");
    assert!(status.success());
    run_limited(&["inspect", path_str(&p)]).assert_clean_error(&["secret.qcow2", "encrypted"]);
}

/// LVM's metadata checksum (CRC-32 with its own initial value).
fn lvm_crc(data: &[u8]) -> u32 {
    let mut crc: u32 = 0xf597_a6cf;
    for &byte in data {
        crc ^= u32::from(byte);
        for _ in 0..8 {
            let lsb = crc & 1;
            crc >>= 1;
            if lsb != 0 {
                crc ^= 0xedb8_8320;
            }
        }
    }
    crc
}

#[test]
fn lvm_metadata_pointing_outside_the_pv() {
    let Some((_dir, p)) = scratch("lvm-rhel", Format::Raw) else {
        return;
    };
    let expect = xtask::expect("lvm-rhel").unwrap();
    let pv = expect["volumes"]
        .as_array()
        .unwrap()
        .iter()
        .find(|v| v["blkid"]["TYPE"] == "LVM2_member")
        .expect("a PV in lvm-rhel");
    let pv_start = pv["start_byte"].as_u64().unwrap();
    // Label (sector 1): data area list then metadata area list, 16 bytes each.
    let label = read_at(&p, pv_start + 512, 512);
    assert_eq!(&label[..8], b"LABELONE");
    let le64 = |b: &[u8], o: usize| u64::from_le_bytes(b[o..o + 8].try_into().unwrap());
    let mut pos = u32::from_le_bytes(label[20..24].try_into().unwrap()) as usize + 40;
    while le64(&label, pos) != 0 {
        pos += 16;
    }
    let mda_start = pv_start + le64(&label, pos + 16);
    let mut header = read_at(&p, mda_start, 512);
    let (text_offset, text_len) = (le64(&header, 40), le64(&header, 48));
    let text = String::from_utf8(read_at(&p, mda_start + text_offset, text_len as usize)).unwrap();
    // Move the root LV's first segment to extent 9000 of an 18-extent PV.
    let needle = "\"pv0\", 0";
    assert!(text.contains(needle), "metadata text as expected: {text}");
    let mut edited = text
        .trim_end_matches('\0')
        .replacen(needle, "\"pv0\", 9000", 1)
        .into_bytes();
    edited.push(0);
    patch(&p, mda_start + text_offset, &edited);
    header[48..56].copy_from_slice(&(edited.len() as u64).to_le_bytes());
    header[56..60].copy_from_slice(&lvm_crc(&edited).to_le_bytes());
    let crc = lvm_crc(&header[4..512]);
    header[..4].copy_from_slice(&crc.to_le_bytes());
    patch(&p, mda_start, &header);
    run_limited(&["inspect", path_str(&p)]).assert_clean_error(&["vg0/root", "9000"]);
}

#[test]
fn huge_bogus_i_size_on_fstab() {
    if !layout_available("gpt-debian") {
        return;
    }
    let custom = xtask::build_custom("huge-isize", "gpt-debian", |c| {
        c.root_fs_debugfs("sif /etc/fstab size 0x7fffffffffff");
        Ok(())
    })
    .expect("building variant");
    run_limited(&["inspect", path_str(&custom.raw)]).assert_clean_error(&["/etc/fstab", "e2fsck"]);
}

/// `inspect` opens read-only and works without root: run it as `nobody` on
/// a read-only copy and check the image's bytes and mtime did not change.
#[test]
fn unprivileged_and_read_only() {
    let Some((dir, p)) = scratch("gpt-debian", Format::Qcow2) else {
        return;
    };
    use std::os::unix::fs::PermissionsExt;
    fs::set_permissions(dir.path(), fs::Permissions::from_mode(0o755)).unwrap();
    fs::set_permissions(&p, fs::Permissions::from_mode(0o444)).unwrap();
    let before = (
        fs::metadata(&p).unwrap().modified().unwrap(),
        xtask::sha256_file(&p).unwrap(),
    );
    let out = if is_root() {
        // The binary lives under target/, which nobody can usually read: copy it.
        let bin_copy = dir.path().join("rescue-disk");
        fs::copy(bin(), &bin_copy).unwrap();
        Command::new("setpriv")
            .args(["--reuid=65534", "--regid=65534", "--clear-groups", "--"])
            .arg(&bin_copy)
            .args(["inspect", "--json", path_str(&p)])
            .output()
            .expect("setpriv (util-linux)")
    } else {
        Command::new(bin())
            .args(["inspect", "--json", path_str(&p)])
            .output()
            .unwrap()
    };
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let after = (
        fs::metadata(&p).unwrap().modified().unwrap(),
        xtask::sha256_file(&p).unwrap(),
    );
    assert_eq!(before, after, "inspect changed the image");
}

/// `--format` overrides sniffing: a qcow2 forced to raw shows no disk, and
/// a raw image forced to qcow2 is refused for its missing magic.
#[test]
fn forced_format_is_obeyed() {
    let Some((_dir, q)) = scratch("gpt-debian", Format::Qcow2) else {
        return;
    };
    run_limited(&["inspect", "--format", "raw", path_str(&q)])
        .assert_clean_error(&["no partition table"]);
    let Some((_dir2, r)) = scratch("gpt-debian", Format::Raw) else {
        return;
    };
    run_limited(&["inspect", "--format", "qcow2", path_str(&r)])
        .assert_clean_error(&["gpt-debian.raw", "magic"]);
    let ok = run(&["inspect", "--json", "--format", "qcow2", path_str(&q)]);
    assert_eq!(ok.code, 0, "{}", ok.stderr);
}
