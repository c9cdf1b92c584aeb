//! Test helpers: build real filesystem images with the real tools and wrap
//! them in hand-built `Disk`/`Volume` values (volume discovery is another
//! crate's job; probes come from `blkid -p`, the oracle).
//!
//! A missing tool fails the test when `RESCUE_REQUIRE_TOOLS=1`, and skips it
//! (with a message) otherwise.

#![allow(dead_code)]

use std::fs;
use std::os::unix::fs::symlink;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::Arc;

use rescue_io::{Device, RawFile, Slice};
use rescue_volumes::{Disk, PartitionTable, Probe, Volume, VolumeKind};

/// True when every tool is on PATH; panics instead when tools are required.
pub fn have_tools(tools: &[&str]) -> bool {
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

/// Runs a command, panicking with its output on failure.
pub fn run(cmd: &mut Command) -> String {
    let out = cmd
        .output()
        .unwrap_or_else(|e| panic!("running {cmd:?}: {e}"));
    assert!(
        out.status.success(),
        "{cmd:?} failed: {}\n{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8_lossy(&out.stdout).into_owned()
}

/// Writes `content` at `rel` under `root`, creating parents.
pub fn write(root: &Path, rel: &str, content: impl AsRef<[u8]>) {
    let p = root.join(rel.trim_start_matches('/'));
    fs::create_dir_all(p.parent().unwrap()).unwrap();
    fs::write(p, content).unwrap();
}

/// Creates directory `rel` under `root`.
pub fn mkdir(root: &Path, rel: &str) {
    fs::create_dir_all(root.join(rel.trim_start_matches('/'))).unwrap();
}

/// Creates symlink `rel` -> `target` under `root`.
pub fn link(root: &Path, rel: &str, target: &str) {
    let p = root.join(rel.trim_start_matches('/'));
    fs::create_dir_all(p.parent().unwrap()).unwrap();
    symlink(target, p).unwrap();
}

/// `mkfs.ext4 -d tree` into a new image of `size_mib`.
pub fn mkfs_ext4(img: &Path, tree: &Path, size_mib: u32, uuid: &str, label: &str, extra: &[&str]) {
    run(Command::new("mkfs.ext4")
        .env("E2FSPROGS_FAKE_TIME", "1700000000")
        .args([
            "-q",
            "-F",
            "-U",
            uuid,
            "-L",
            label,
            "-E",
            "hash_seed=4a0f1c2e-3b4d-4e5f-8a9b-0c1d2e3f4a5b",
        ])
        .args(extra)
        .arg("-d")
        .arg(tree)
        .arg(img)
        .arg(format!("{size_mib}M")));
}

/// `mkfs.vfat` a new image and copy `files` (`(path on FAT, content)`) with mtools.
pub fn mkfs_vfat(
    dir: &Path,
    img: &Path,
    size_kib: u32,
    volid: &str,
    label: &str,
    files: &[(&str, &[u8])],
) {
    let _ = fs::remove_file(img);
    run(Command::new("mkfs.vfat")
        .args(["-C", "-i", volid, "-n", label])
        .arg(img)
        .arg(size_kib.to_string()));
    for (i, (dest, content)) in files.iter().enumerate() {
        let src = dir.join(format!("vfat-src-{i}"));
        fs::write(&src, content).unwrap();
        let mut parent = String::new();
        let comps: Vec<&str> = dest.trim_start_matches('/').split('/').collect();
        for c in &comps[..comps.len() - 1] {
            parent.push('/');
            parent.push_str(c);
            let _ = Command::new("mmd")
                .env("MTOOLS_SKIP_CHECK", "1")
                .arg("-i")
                .arg(img)
                .arg(format!("::{parent}"))
                .output();
        }
        run(Command::new("mcopy")
            .env("MTOOLS_SKIP_CHECK", "1")
            .arg("-i")
            .arg(img)
            .arg(&src)
            .arg(format!("::{dest}")));
    }
}

/// The probe of an image or device as `blkid -p -o export` reports it.
pub fn blkid_probe(path: &Path, offset: Option<u64>) -> Probe {
    let mut cmd = Command::new("blkid");
    cmd.args(["-p", "-o", "export"]);
    if let Some(o) = offset {
        cmd.arg("-O").arg(o.to_string());
    }
    let out = cmd.arg(path).output().unwrap();
    let text = String::from_utf8_lossy(&out.stdout);
    let get = |k: &str| {
        text.lines()
            .find_map(|l| l.strip_prefix(&format!("{k}=")))
            .map(str::to_owned)
    };
    Probe {
        fstype: get("TYPE"),
        uuid: get("UUID"),
        label: get("LABEL"),
        version: get("VERSION"),
        ext: None,
    }
}

/// Opens a whole image file as a device.
pub fn device(path: &Path) -> Device {
    Arc::new(RawFile::open_read_only(path).unwrap())
}

/// A volume over a whole image file, probed by blkid.
pub fn volume(id: &str, kind: VolumeKind, img: &Path) -> Volume {
    let dev = device(img);
    Volume {
        id: id.to_owned(),
        kind,
        start_byte: 0,
        size_in_bytes: dev.size_in_bytes(),
        probe: blkid_probe(img, None),
        extents: vec![rescue_io::Extent {
            volume_start: 0,
            disk_start: 0,
            len: dev.size_in_bytes(),
        }],
        device: dev,
    }
}

/// An MBR partition kind.
pub fn mbr(number: u32, type_id: &str) -> VolumeKind {
    VolumeKind::MbrPartition {
        number,
        type_id: type_id.to_owned(),
        logical: false,
        bootable: false,
        partuuid: format!("1234abcd-{number:02}"),
    }
}

/// A disk of hand-built volumes without a partition table of its own.
pub fn disk(volumes: Vec<Volume>) -> Disk {
    Disk {
        table: PartitionTable::Mbr {
            disk_signature: "0x1234abcd".into(),
        },
        volumes,
        volume_groups: vec![],
        diagnostics: vec![],
    }
}

/// One partition as `sfdisk --json` reports it.
#[derive(Debug, Clone)]
pub struct SfPart {
    pub number: u32,
    pub start_byte: u64,
    pub size_in_bytes: u64,
    pub type_guid: String,
    pub partuuid: String,
    pub name: String,
}

/// Reads a GPT disk's partitions from `sfdisk --json` (the oracle).
pub fn sfdisk_parts(img: &Path) -> Vec<SfPart> {
    let out = run(Command::new("sfdisk").arg("--json").arg(img));
    let v: serde_json::Value = serde_json::from_str(&out).unwrap();
    let sector = v["partitiontable"]["sectorsize"].as_u64().unwrap_or(512);
    v["partitiontable"]["partitions"]
        .as_array()
        .unwrap()
        .iter()
        .map(|p| {
            let node = p["node"].as_str().unwrap();
            let number: u32 = node
                .rsplit(|c: char| !c.is_ascii_digit())
                .next()
                .unwrap()
                .parse()
                .unwrap();
            SfPart {
                number,
                start_byte: p["start"].as_u64().unwrap() * sector,
                size_in_bytes: p["size"].as_u64().unwrap() * sector,
                type_guid: p["type"].as_str().unwrap().to_lowercase(),
                partuuid: p["uuid"].as_str().unwrap_or("").to_lowercase(),
                name: p["name"].as_str().unwrap_or("").to_owned(),
            }
        })
        .collect()
}

/// Copies `src` into `disk` at `offset`.
pub fn dd(disk: &Path, src: &Path, offset: u64) {
    run(Command::new("dd")
        .arg(format!("if={}", src.display()))
        .arg(format!("of={}", disk.display()))
        .args(["bs=64k", "conv=notrunc", "oflag=seek_bytes", "status=none"])
        .arg(format!("seek={offset}")));
}

/// Volumes for every GPT partition of `img`, as slices of the disk device,
/// with sfdisk's numbers, GUIDs and names and blkid's probe of each.
#[allow(clippy::arc_with_non_send_sync)] // `Device` is an `Arc` by the io crate's design
pub fn gpt_volumes(img: &Path) -> (Device, Vec<Volume>) {
    let dev = device(img);
    let vols = sfdisk_parts(img)
        .into_iter()
        .map(|p| {
            let slice = Slice::new(
                dev.clone(),
                p.start_byte,
                p.size_in_bytes,
                format!("p{}", p.number),
            )
            .unwrap();
            Volume {
                id: format!("p{}", p.number),
                kind: VolumeKind::GptPartition {
                    number: p.number,
                    type_guid: p.type_guid,
                    type_name: None,
                    partuuid: p.partuuid,
                    partlabel: p.name,
                },
                start_byte: p.start_byte,
                size_in_bytes: p.size_in_bytes,
                probe: blkid_probe(img, Some(p.start_byte)),
                device: Arc::new(slice),
                extents: vec![rescue_io::Extent {
                    volume_start: 0,
                    disk_start: p.start_byte,
                    len: p.size_in_bytes,
                }],
            }
        })
        .collect();
    (dev, vols)
}

/// A scratch directory.
pub fn tempdir() -> tempfile::TempDir {
    tempfile::tempdir().unwrap()
}

/// The path of `name` in `dir`.
pub fn at(dir: &Path, name: &str) -> PathBuf {
    dir.join(name)
}
