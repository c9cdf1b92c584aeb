//! Discovery on real disk images built with the real tools (sgdisk, sfdisk,
//! fdisk, mkfs.*, mkswap, cryptsetup), judged against the real oracles:
//! `sfdisk --json` and `partx` for the table, `blkid -p -o export` for every
//! volume's content, `dumpe2fs -h` for the ext superblock facts.

mod common;

use std::path::{Path, PathBuf};

use common::*;
use rescue_volumes::{discover, Disk, PartitionTable, Volume, VolumeKind};

/// Builds the filesystem each test partition holds, into a file of the
/// partition's size, then copies it into the image.
#[derive(Clone, Copy, Debug)]
enum Fs {
    Vfat16,
    Vfat32,
    Vfat4k,
    Ext4,
    Ext4k,
    Ext3,
    Ext2,
    Swap,
    Xfs,
    Btrfs,
    Luks2,
    Luks1,
    Empty,
}

impl Fs {
    fn tools(self) -> &'static [&'static str] {
        match self {
            Fs::Vfat16 | Fs::Vfat32 | Fs::Vfat4k => &["mkfs.vfat"],
            Fs::Ext4 | Fs::Ext4k | Fs::Ext3 | Fs::Ext2 => &["mke2fs", "dumpe2fs"],
            Fs::Swap => &["mkswap"],
            Fs::Xfs => &["mkfs.xfs"],
            Fs::Btrfs => &["mkfs.btrfs"],
            Fs::Luks2 | Fs::Luks1 => &["cryptsetup"],
            Fs::Empty => &[],
        }
    }

    /// Makes the filesystem file; returns its path (None for `Empty`).
    fn make(self, dir: &Path, n: u32, size: u64) -> Option<PathBuf> {
        let name = format!("fs{n}.img");
        let uuid = format!("{n:08x}-1111-4222-8333-444455556666");
        let p = match self {
            Fs::Empty => return None,
            Fs::Vfat16 => mkfs_file(
                dir,
                &name,
                size,
                "mkfs.vfat",
                &["-F", "16", "-n", "EFI", "-i", "1234ABCD"],
            ),
            Fs::Vfat32 => mkfs_file(
                dir,
                &name,
                size,
                "mkfs.vfat",
                &["-F", "32", "-s", "1", "-n", "DATA32", "-i", "0badcafe"],
            ),
            Fs::Vfat4k => mkfs_file(
                dir,
                &name,
                size,
                "mkfs.vfat",
                &["-S", "4096", "-n", "ESP4K"],
            ),
            Fs::Ext4 => mkfs_file(
                dir,
                &name,
                size,
                "mke2fs",
                &[
                    "-q",
                    "-t",
                    "ext4",
                    "-U",
                    &uuid,
                    "-L",
                    "root",
                    "-M",
                    "/",
                    "-E",
                    "hash_seed=3cfc1ba6-1111-4222-8333-444455556666",
                ],
            ),
            Fs::Ext4k => mkfs_file(
                dir,
                &name,
                size,
                "mke2fs",
                &[
                    "-q", "-t", "ext4", "-b", "4096", "-U", &uuid, "-L", "root4k",
                ],
            ),
            Fs::Ext3 => mkfs_file(
                dir,
                &name,
                size,
                "mke2fs",
                &["-q", "-t", "ext3", "-U", &uuid, "-L", "e3"],
            ),
            Fs::Ext2 => mkfs_file(
                dir,
                &name,
                size,
                "mke2fs",
                &["-q", "-t", "ext2", "-U", &uuid, "-L", "e2 label"],
            ),
            Fs::Swap => mkfs_file(dir, &name, size, "mkswap", &["-U", &uuid, "-L", "swap"]),
            Fs::Xfs => mkfs_file(
                dir,
                &name,
                size,
                "mkfs.xfs",
                &["-q", "-m", &format!("uuid={uuid}"), "-L", "xfsvol"],
            ),
            Fs::Btrfs => mkfs_file(
                dir,
                &name,
                size,
                "mkfs.btrfs",
                &["-q", "-U", &uuid, "-L", "btr"],
            ),
            Fs::Luks2 | Fs::Luks1 => {
                let key = dir.join("key");
                std::fs::write(&key, b"not a secret").unwrap();
                let path = dir.join(&name);
                sparse(&path, size);
                let mut args = vec![
                    "luksFormat",
                    "-q",
                    "--key-file",
                    key.to_str().unwrap(),
                    "--uuid",
                    &uuid,
                ];
                match self {
                    Fs::Luks2 => args.extend([
                        "--type",
                        "luks2",
                        "--pbkdf",
                        "pbkdf2",
                        "--pbkdf-force-iterations",
                        "1000",
                        "--label",
                        "cryptroot",
                    ]),
                    _ => args.extend(["--type", "luks1", "--pbkdf-force-iterations", "1000"]),
                }
                args.push(path.to_str().unwrap());
                run("cryptsetup", &args);
                path
            }
        };
        Some(p)
    }
}

/// Makes every filesystem of `layout`, places it at its partition (found
/// through the sfdisk oracle) and returns the files by partition number.
fn fill(
    dir: &Path,
    img: &Path,
    sector: u64,
    parts: &[OraclePart],
    layout: &[(u32, Fs)],
) -> Vec<(u32, Fs, Option<PathBuf>)> {
    let mut out = Vec::new();
    for &(n, fs) in layout {
        let p = parts
            .iter()
            .find(|p| p.number == n)
            .unwrap_or_else(|| panic!("sfdisk has no partition {n}"));
        let file = fs.make(dir, n, p.sectors * sector);
        if let Some(f) = &file {
            place(img, p.start_sector * sector, f);
        }
        out.push((n, fs, file));
    }
    out
}

fn tools_for(test: &str, base: &[&str], layout: &[(u32, Fs)]) -> bool {
    let mut all: Vec<&str> = base.to_vec();
    all.extend(["blkid", "sfdisk", "partx"]);
    for (_, fs) in layout {
        all.extend(fs.tools());
    }
    have_tools(test, &all)
}

fn volume<'a>(disk: &'a Disk, id: &str) -> &'a Volume {
    disk.volumes
        .iter()
        .find(|v| v.id == id)
        .unwrap_or_else(|| panic!("no volume {id} in {:?}", ids(disk)))
}

fn ids(disk: &Disk) -> Vec<&str> {
    disk.volumes.iter().map(|v| v.id.as_str()).collect()
}

/// Checks every partition against sfdisk (layout, type, GUID, name) and
/// partx (PARTUUID as libblkid computes it).
fn assert_partitions_eq_oracles(disk: &Disk, img: &Path, sector: u64, parts: &[OraclePart]) {
    let partx = partx_uuids(img);
    let ours: Vec<&Volume> = disk
        .volumes
        .iter()
        .filter(|v| v.id.starts_with('p'))
        .collect();
    let theirs: Vec<&OraclePart> = parts
        .iter()
        .filter(|p| !matches!(p.ptype.as_str(), "5" | "f" | "85"))
        .collect();
    assert_eq!(
        ours.iter().map(|v| v.id.clone()).collect::<Vec<_>>(),
        theirs
            .iter()
            .map(|p| format!("p{}", p.number))
            .collect::<Vec<_>>(),
        "partition numbers"
    );
    for (v, p) in ours.iter().zip(theirs) {
        let what = &v.id;
        assert_eq!(v.start_byte, p.start_sector * sector, "{what}: start");
        assert_eq!(v.size_in_bytes, p.sectors * sector, "{what}: size");
        match &v.kind {
            VolumeKind::GptPartition {
                number,
                type_guid,
                partuuid,
                partlabel,
                ..
            } => {
                assert_eq!(*number, p.number);
                assert_eq!(type_guid, &p.ptype.to_lowercase(), "{what}: type");
                assert_eq!(Some(partuuid.to_uppercase()), p.uuid, "{what}: uuid");
                assert_eq!(partlabel, p.name.as_deref().unwrap_or(""), "{what}: name");
                assert_eq!(&partx[&p.number], partuuid, "{what}: PARTUUID per partx");
            }
            VolumeKind::MbrPartition {
                number,
                type_id,
                bootable,
                partuuid,
                logical,
            } => {
                assert_eq!(*number, p.number);
                assert_eq!(
                    u8::from_str_radix(type_id.trim_start_matches("0x"), 16).unwrap(),
                    u8::from_str_radix(&p.ptype, 16).unwrap(),
                    "{what}: type"
                );
                assert_eq!(*bootable, p.bootable, "{what}: bootable");
                assert_eq!(*logical, p.number >= 5, "{what}: logical");
                assert_eq!(&partx[&p.number], partuuid, "{what}: PARTUUID per partx");
            }
            other => panic!("{what}: unexpected kind {other:?}"),
        }
        // The volume's device reads exactly the partition's bytes.
        assert_eq!(v.device.size_in_bytes(), v.size_in_bytes);
    }
}

/// Checks every volume's probe against blkid on the same bytes, and ext
/// facts against dumpe2fs.
fn assert_probes_eq_blkid(disk: &Disk, img: &Path, files: &[(u32, Fs, Option<PathBuf>)]) {
    for v in disk.volumes.iter().filter(|v| v.id.starts_with('p')) {
        let b = blkid(img, v.start_byte, v.size_in_bytes);
        assert_probe_eq_blkid(&v.id, &v.probe, &b);
    }
    for (n, fs, file) in files {
        let v = volume(disk, &format!("p{n}"));
        if matches!(fs, Fs::Ext4 | Fs::Ext4k | Fs::Ext3 | Fs::Ext2) {
            let ext = v
                .probe
                .ext
                .as_ref()
                .unwrap_or_else(|| panic!("p{n}: no ext info"));
            assert_ext_eq_dumpe2fs(&v.id, ext, &dumpe2fs(file.as_ref().unwrap()));
        } else {
            assert!(v.probe.ext.is_none(), "p{n}: ext info on {fs:?}");
        }
        if matches!(fs, Fs::Empty) {
            assert_eq!(v.probe.fstype, None, "p{n}");
        } else {
            assert!(v.probe.fstype.is_some(), "p{n}: {fs:?} not recognised");
        }
    }
}

#[test]
fn gpt_disk_matches_sfdisk_partx_and_blkid() {
    let layout = [
        (2, Fs::Vfat16),
        (3, Fs::Ext4),
        (4, Fs::Swap),
        (5, Fs::Xfs),
        (6, Fs::Btrfs),
        (7, Fs::Luks2),
        (8, Fs::Ext3),
        (9, Fs::Ext2),
        (10, Fs::Vfat32),
        (12, Fs::Luks1),
        (13, Fs::Empty),
    ];
    if !tools_for(
        "gpt_disk_matches_sfdisk_partx_and_blkid",
        &["sgdisk"],
        &layout,
    ) {
        return;
    }
    let dir = tempfile::tempdir().unwrap();
    let img = dir.path().join("gpt.img");
    sparse(&img, 760 * MIB);
    #[rustfmt::skip]
    run("sgdisk", &[
        "-U", "0c0ffee0-1234-4321-8888-0123456789ab",
        "-n1:2048:+1M", "-t1:ef02", "-c1:bios",
        "-n2:0:+64M", "-t2:ef00", "-c2:EFI System Partition", "-u2:11111111-aaaa-4bbb-8ccc-000000000002",
        "-n3:0:+64M", "-t3:8304", "-c3:root",
        "-n4:0:+48M", "-t4:8200", "-c4:swap",
        "-n5:0:+300M", "-t5:8300",
        "-n6:0:+128M", "-t6:8302", "-c6:home",
        "-n7:0:+24M", "-t7:8309", "-c7:crypt",
        "-n8:0:+16M", "-t8:8300",
        "-n9:0:+16M", "-t9:8300", "-c9:n\u{e9}e",
        "-n10:0:+64M", "-t10:0700",
        "-n12:0:+16M", "-t12:8300",
        "-n13:0:+4M", "-t13:8e00",
        img.to_str().unwrap(),
    ]);
    let json = sfdisk_json(&img);
    let (sector, parts) = sfdisk_parts(&json);
    let files = fill(dir.path(), &img, sector, &parts, &layout);

    let disk = discover(open(&img)).unwrap();
    assert!(disk.diagnostics.is_empty(), "{:?}", disk.diagnostics);
    match &disk.table {
        PartitionTable::Gpt {
            disk_guid,
            logical_block_size,
            used_backup,
        } => {
            assert_eq!(
                Some(disk_guid.to_uppercase()),
                json["partitiontable"]["id"].as_str().map(str::to_string)
            );
            assert_eq!(u64::from(*logical_block_size), sector);
            assert!(!used_backup);
        }
        other => panic!("expected GPT, got {other:?}"),
    }
    let whole = blkid(&img, 0, std::fs::metadata(&img).unwrap().len());
    assert_eq!(whole.get("PTTYPE").map(String::as_str), Some("gpt"));
    assert_partitions_eq_oracles(&disk, &img, sector, &parts);
    assert_probes_eq_blkid(&disk, &img, &files);
    // Partition 11 is unused: numbers follow the entry index.
    assert!(!ids(&disk).contains(&"p11"));
    assert!(disk.volume_groups.is_empty());
}

#[test]
fn gpt_type_names_are_sfdisk_names() {
    if !have_tools("gpt_type_names_are_sfdisk_names", &["sfdisk"]) {
        return;
    }
    let out = run("sfdisk", &["--label", "gpt", "-T"]);
    let text = String::from_utf8_lossy(&out.stdout);
    for (guid, name) in rescue_volumes::gpt_type_names() {
        let line = text
            .lines()
            .find(|l| l.trim_start().to_lowercase().starts_with(guid))
            .unwrap_or_else(|| panic!("sfdisk does not know {guid}"));
        assert_eq!(line.trim_start()[36..].trim(), *name, "{guid}");
    }
}

#[test]
fn mbr_with_logical_partitions_matches_sfdisk_partx_and_blkid() {
    let layout = [
        (1, Fs::Vfat16),
        (2, Fs::Ext4),
        (5, Fs::Ext2),
        (6, Fs::Swap),
        (7, Fs::Xfs),
        (8, Fs::Empty),
    ];
    if !tools_for("mbr_with_logical_partitions", &[], &layout) {
        return;
    }
    let dir = tempfile::tempdir().unwrap();
    let img = dir.path().join("mbr.img");
    sparse(&img, 520 * MIB);
    let script = "label: dos\nlabel-id: 0x1234abcd\n,32MiB,c,*\n,32MiB,83\n,,5\n,32MiB,83\n,48MiB,82\n,300MiB,83\n,8MiB,8e\n";
    run_with(
        "sfdisk",
        &["-q", img.to_str().unwrap()],
        Some(script.as_bytes()),
        &[],
    );
    let json = sfdisk_json(&img);
    let (sector, parts) = sfdisk_parts(&json);
    assert!(
        parts.iter().filter(|p| p.number >= 5).count() >= 2,
        "need logical partitions: {parts:?}"
    );
    let files = fill(dir.path(), &img, sector, &parts, &layout);

    let disk = discover(open(&img)).unwrap();
    assert!(disk.diagnostics.is_empty(), "{:?}", disk.diagnostics);
    match &disk.table {
        PartitionTable::Mbr { disk_signature } => {
            assert_eq!(
                Some(disk_signature.as_str()),
                json["partitiontable"]["id"].as_str()
            );
        }
        other => panic!("expected MBR, got {other:?}"),
    }
    assert_partitions_eq_oracles(&disk, &img, sector, &parts);
    assert_probes_eq_blkid(&disk, &img, &files);
    // The extended container itself is not a volume.
    assert!(!ids(&disk).contains(&"p3"));
}

/// Parses `fdisk -b 4096 -l -o Device,Start,Sectors,Type-UUID,UUID,Name`.
fn fdisk_4k_parts(img: &Path) -> (String, Vec<OraclePart>) {
    let out = run(
        "fdisk",
        &[
            "-b",
            "4096",
            "-l",
            "-o",
            "Device,Start,Sectors,Type-UUID,UUID,Name",
            img.to_str().unwrap(),
        ],
    );
    let text = String::from_utf8_lossy(&out.stdout).into_owned();
    let id = text
        .lines()
        .find_map(|l| l.strip_prefix("Disk identifier: "))
        .unwrap()
        .trim()
        .to_string();
    let name = img.to_str().unwrap();
    let parts = text
        .lines()
        .filter(|l| l.starts_with(name))
        .map(|l| {
            let f: Vec<&str> = l.split_whitespace().collect();
            let number: u32 = f[0][name.len()..].parse().unwrap();
            OraclePart {
                number,
                start_sector: f[1].parse().unwrap(),
                sectors: f[2].parse().unwrap(),
                ptype: f[3].to_string(),
                bootable: false,
                uuid: Some(f[4].to_string()),
                name: f.get(5).map(|s| s.to_string()),
            }
        })
        .collect();
    (id, parts)
}

#[test]
fn gpt_with_4096_byte_sectors_made_by_fdisk() {
    let layout = [(1, Fs::Vfat4k), (2, Fs::Ext4k)];
    if !tools_for(
        "gpt_with_4096_byte_sectors_made_by_fdisk",
        &["fdisk"],
        &layout,
    ) {
        return;
    }
    let dir = tempfile::tempdir().unwrap();
    let img = dir.path().join("4kn.img");
    sparse(&img, 96 * MIB);
    // g: new GPT; n 1: 32 MiB; t 1 1: EFI System; n 2: the rest; w.
    let script = "g\nn\n1\n\n+32M\nt\n1\nn\n2\n\n\nw\n";
    run_with(
        "fdisk",
        &["-b", "4096", img.to_str().unwrap()],
        Some(script.as_bytes()),
        &[],
    );
    // The primary header sits in the second 4 KiB block.
    assert_eq!(read_at(&img, 4096, 8), b"EFI PART");
    let (id, parts) = fdisk_4k_parts(&img);
    let files = fill(dir.path(), &img, 4096, &parts, &layout);

    let disk = discover(open(&img)).unwrap();
    assert!(disk.diagnostics.is_empty(), "{:?}", disk.diagnostics);
    match &disk.table {
        PartitionTable::Gpt {
            disk_guid,
            logical_block_size,
            used_backup,
        } => {
            assert_eq!(disk_guid.to_uppercase(), id);
            assert_eq!(*logical_block_size, 4096);
            assert!(!used_backup);
        }
        other => panic!("expected GPT, got {other:?}"),
    }
    assert_eq!(disk.volumes.len(), 2);
    for (v, p) in disk.volumes.iter().zip(&parts) {
        assert_eq!(v.start_byte, p.start_sector * 4096, "{}", v.id);
        assert_eq!(v.size_in_bytes, p.sectors * 4096, "{}", v.id);
        let VolumeKind::GptPartition {
            type_guid,
            partuuid,
            ..
        } = &v.kind
        else {
            panic!()
        };
        assert_eq!(type_guid.to_uppercase(), p.ptype);
        assert_eq!(Some(partuuid.to_uppercase()), p.uuid);
    }
    assert_probes_eq_blkid(&disk, &img, &files);

    // Corrupting the 4Kn primary header falls back to the backup in the
    // last 4 KiB block.
    patch(&img, 4096 + 60, &[0xff]);
    let disk2 = discover(open(&img)).unwrap();
    assert!(matches!(
        disk2.table,
        PartitionTable::Gpt {
            used_backup: true,
            logical_block_size: 4096,
            ..
        }
    ));
    assert_eq!(
        disk2
            .volumes
            .iter()
            .map(|v| (v.start_byte, v.size_in_bytes))
            .collect::<Vec<_>>(),
        disk.volumes
            .iter()
            .map(|v| (v.start_byte, v.size_in_bytes))
            .collect::<Vec<_>>()
    );
}

#[test]
fn gpt_with_4096_byte_sectors_made_by_sgdisk_on_a_4k_loop_device() {
    if !have_tools("gpt_4k_sgdisk_loop", &["sgdisk", "sfdisk", "losetup"])
        || !have_root("gpt_4k_sgdisk_loop")
    {
        return;
    }
    let dir = tempfile::tempdir().unwrap();
    let img = dir.path().join("4kn-loop.img");
    sparse(&img, 64 * MIB);
    let json = {
        let lo = Loop::attach(&img, 0, 0, 4096);
        run(
            "sgdisk",
            &[
                "-n1:0:+8M",
                "-t1:ef00",
                "-c1:EFI",
                "-n2:0:0",
                "-t2:8300",
                "-c2:root",
                &lo.dev,
            ],
        );
        // sfdisk reads the sector size from the 4Kn loop device.
        sfdisk_json(Path::new(&lo.dev))
    };
    let (sector, parts) = sfdisk_parts(&json);
    assert_eq!(sector, 4096);
    let disk = discover(open(&img)).unwrap();
    assert!(
        matches!(
            disk.table,
            PartitionTable::Gpt {
                logical_block_size: 4096,
                used_backup: false,
                ..
            }
        ),
        "{:?}",
        disk.table
    );
    assert_eq!(disk.volumes.len(), parts.len());
    for (v, p) in disk.volumes.iter().zip(&parts) {
        assert_eq!(v.start_byte, p.start_sector * 4096);
        assert_eq!(v.size_in_bytes, p.sectors * 4096);
        let VolumeKind::GptPartition {
            partuuid,
            partlabel,
            ..
        } = &v.kind
        else {
            panic!()
        };
        assert_eq!(Some(partuuid.to_uppercase()), p.uuid);
        assert_eq!(Some(partlabel.clone()), p.name);
    }
}

#[test]
fn whole_disk_filesystems_have_no_table() {
    let fss = [Fs::Ext4, Fs::Xfs, Fs::Vfat32, Fs::Btrfs, Fs::Luks2];
    let mut tools = vec!["blkid"];
    for fs in fss {
        tools.extend(fs.tools());
    }
    if !have_tools("whole_disk_filesystems_have_no_table", &tools) {
        return;
    }
    let dir = tempfile::tempdir().unwrap();
    for (i, fs) in fss.into_iter().enumerate() {
        let size = if matches!(fs, Fs::Xfs) {
            300 * MIB
        } else {
            130 * MIB
        };
        let img = fs.make(dir.path(), i as u32, size).unwrap();
        let disk = discover(open(&img)).unwrap();
        assert!(
            matches!(disk.table, PartitionTable::None),
            "{fs:?}: {:?}",
            disk.table
        );
        assert_eq!(ids(&disk), ["disk"], "{fs:?}");
        assert!(matches!(disk.volumes[0].kind, VolumeKind::WholeDisk));
        assert_eq!(disk.volumes[0].size_in_bytes, size);
        assert_probe_eq_blkid(
            &format!("{fs:?}"),
            &disk.volumes[0].probe,
            &blkid(&img, 0, size),
        );
    }
}

#[test]
fn ext_state_follows_dumpe2fs() {
    if !have_tools(
        "ext_state_follows_dumpe2fs",
        &["mke2fs", "debugfs", "dumpe2fs", "blkid"],
    ) {
        return;
    }
    let dir = tempfile::tempdir().unwrap();
    let img = Fs::Ext4.make(dir.path(), 1, 64 * MIB).unwrap();
    // Record errors, a dirty state and a journal needing recovery, the way
    // a crashed guest leaves them.
    for cmd in [
        "ssv state 2",
        "ssv error_count 7",
        "feature needs_recovery",
        "ssv last_mounted /sysroot",
    ] {
        run("debugfs", &["-w", "-R", cmd, img.to_str().unwrap()]);
    }
    let disk = discover(open(&img)).unwrap();
    let ext = disk.volumes[0].probe.ext.as_ref().unwrap();
    assert!(!ext.clean && ext.has_errors && ext.needs_recovery);
    assert_eq!(ext.error_count, 7);
    assert_ext_eq_dumpe2fs("dirty ext4", ext, &dumpe2fs(&img));
    assert_probe_eq_blkid(
        "dirty ext4",
        &disk.volumes[0].probe,
        &blkid(&img, 0, 64 * MIB),
    );
}

#[test]
fn metadata_only_is_read_on_a_large_sparse_disk() {
    if !have_tools("metadata_only_is_read", &["sgdisk", "mke2fs"]) {
        return;
    }
    let dir = tempfile::tempdir().unwrap();
    let img = dir.path().join("big.img");
    sparse(&img, 20 << 30);
    run(
        "sgdisk",
        &[
            "-n1:0:+100M",
            "-t1:ef00",
            "-n2:0:0",
            "-t2:8300",
            img.to_str().unwrap(),
        ],
    );
    let json = sfdisk_json(&img);
    let (sector, parts) = sfdisk_parts(&json);
    let root = &parts[1];
    // mke2fs straight into the image at the partition's offset.
    let offset = format!("offset={}", root.start_sector * sector);
    let blocks = (root.sectors * sector / 4096).to_string();
    run(
        "mke2fs",
        &[
            "-q",
            "-t",
            "ext4",
            "-E",
            &offset,
            img.to_str().unwrap(),
            &blocks,
        ],
    );
    let counting = common::Counting::new(open(&img));
    let start = std::time::Instant::now();
    let disk = discover(counting.clone()).unwrap();
    let elapsed = start.elapsed();
    assert_eq!(disk.volumes[1].probe.fstype.as_deref(), Some("ext4"));
    let bytes = counting.bytes.load(std::sync::atomic::Ordering::Relaxed);
    let reads = counting.reads.load(std::sync::atomic::Ordering::Relaxed);
    eprintln!("discovery of a 20 GiB GPT disk: {bytes} bytes in {reads} reads, {elapsed:?}");
    assert!(bytes < 128 * 1024, "read {bytes} bytes");
}

#[test]
fn empty_mbr_is_a_table_without_volumes() {
    if !have_tools("empty_mbr", &["sfdisk"]) {
        return;
    }
    let dir = tempfile::tempdir().unwrap();
    let img = dir.path().join("empty-mbr.img");
    sparse(&img, 8 * MIB);
    run_with(
        "sfdisk",
        &["-q", img.to_str().unwrap()],
        Some(b"label: dos\nlabel-id: 0x00c0ffee\n"),
        &[],
    );
    let json = sfdisk_json(&img);
    assert!(json["partitiontable"]["partitions"]
        .as_array()
        .is_none_or(|a| a.is_empty()));
    let disk = discover(open(&img)).unwrap();
    match &disk.table {
        PartitionTable::Mbr { disk_signature } => assert_eq!(
            Some(disk_signature.as_str()),
            json["partitiontable"]["id"].as_str()
        ),
        other => panic!("expected MBR, got {other:?}"),
    }
    assert!(disk.volumes.is_empty());
}
