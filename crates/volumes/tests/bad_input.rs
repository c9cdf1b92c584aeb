//! Damaged and hostile disks: corrupt GPT copies, truncated images, looping
//! EBR chains, random bytes. Each must give the backup, a diagnostic, or a
//! one-line error naming the structure and offset; never a panic or a hang.

mod common;

use std::path::Path;
use std::sync::Arc;

use common::*;
use rescue_volumes::{discover, Disk, ErrorKind, MemDisk, PartitionTable};

/// A 64 MiB GPT disk with three partitions (ext4 on the second), made by
/// sgdisk; returns the image and sfdisk's view of it.
fn gpt_image(dir: &Path) -> (std::path::PathBuf, Vec<OraclePart>) {
    let img = dir.join("gpt.img");
    sparse(&img, 64 * MIB);
    run(
        "sgdisk",
        &[
            "-n1:0:+8M",
            "-t1:ef00",
            "-c1:EFI",
            "-n2:0:+32M",
            "-t2:8300",
            "-c2:root",
            "-n3:0:0",
            "-t3:8200",
            img.to_str().unwrap(),
        ],
    );
    let (sector, parts) = sfdisk_parts(&sfdisk_json(&img));
    assert_eq!(sector, 512);
    let ext = mkfs_file(
        dir,
        "root.img",
        parts[1].sectors * 512,
        "mke2fs",
        &["-q", "-t", "ext4", "-L", "root"],
    );
    place(&img, parts[1].start_sector * 512, &ext);
    (img, parts)
}

fn layout(disk: &Disk) -> Vec<(String, u64, u64)> {
    disk.volumes
        .iter()
        .map(|v| (v.id.clone(), v.start_byte, v.size_in_bytes))
        .collect()
}

fn oracle_layout(parts: &[OraclePart]) -> Vec<(String, u64, u64)> {
    parts
        .iter()
        .map(|p| {
            (
                format!("p{}", p.number),
                p.start_sector * 512,
                p.sectors * 512,
            )
        })
        .collect()
}

#[test]
fn corrupt_primary_gpt_header_uses_the_backup() {
    if !have_tools(
        "corrupt_primary_gpt_header",
        &["sgdisk", "sfdisk", "mke2fs"],
    ) {
        return;
    }
    let dir = tempfile::tempdir().unwrap();
    let (img, parts) = gpt_image(dir.path());
    let before = discover(open(&img)).unwrap();
    assert_eq!(layout(&before), oracle_layout(&parts));
    // Flip one byte of the disk GUID in LBA 1: the header CRC no longer
    // matches.
    let b = read_at(&img, 512 + 60, 1);
    patch(&img, 512 + 60, &[b[0] ^ 0x01]);
    let disk = discover(open(&img)).unwrap();
    assert!(
        matches!(
            disk.table,
            PartitionTable::Gpt {
                used_backup: true,
                ..
            }
        ),
        "{:?}",
        disk.table
    );
    assert_eq!(layout(&disk), oracle_layout(&parts));
    assert_eq!(disk.volumes[1].probe.label.as_deref(), Some("root"));
    let d = disk
        .diagnostics
        .iter()
        .find(|d| d.subject == "gpt primary header")
        .expect("diagnostic");
    assert!(
        d.message.contains("offset 0x200") && d.message.contains("crc32"),
        "{}",
        d.message
    );
    // libfdisk falls back to the backup too and sees the same partitions.
    let (_, after) = sfdisk_parts(&sfdisk_json(&img));
    assert_eq!(oracle_layout(&after), oracle_layout(&parts));
}

#[test]
fn corrupt_primary_gpt_entry_array_uses_the_backup() {
    if !have_tools(
        "corrupt_primary_gpt_entry_array",
        &["sgdisk", "sfdisk", "mke2fs"],
    ) {
        return;
    }
    let dir = tempfile::tempdir().unwrap();
    let (img, parts) = gpt_image(dir.path());
    // Change the first LBA of entry 2 in the primary array (LBA 2).
    let off = 1024 + 128 + 32;
    let b = read_at(&img, off, 1);
    patch(&img, off, &[b[0] ^ 0x40]);
    let disk = discover(open(&img)).unwrap();
    assert!(
        matches!(
            disk.table,
            PartitionTable::Gpt {
                used_backup: true,
                ..
            }
        ),
        "{:?}",
        disk.table
    );
    assert_eq!(layout(&disk), oracle_layout(&parts));
    let d = disk
        .diagnostics
        .iter()
        .find(|d| d.subject == "gpt primary entry array")
        .expect("diagnostic");
    assert!(
        d.message.contains("offset 0x400") && d.message.contains("crc32 mismatch"),
        "{}",
        d.message
    );
}

#[test]
fn both_gpt_copies_corrupt_is_an_error() {
    if !have_tools("both_gpt_copies_corrupt", &["sgdisk", "sfdisk", "mke2fs"]) {
        return;
    }
    let dir = tempfile::tempdir().unwrap();
    let (img, _) = gpt_image(dir.path());
    let size = std::fs::metadata(&img).unwrap().len();
    patch(&img, 512 + 60, &[0xaa, 0x55]);
    patch(&img, size - 512 + 60, &[0xaa, 0x55]);
    let err = discover(open(&img)).unwrap_err();
    assert_eq!(err.kind(), ErrorKind::Corrupt);
    let msg = err.to_string();
    eprintln!("both copies corrupt: {msg}");
    assert!(
        msg.contains("primary header at offset 0x200") && msg.contains("backup header"),
        "{msg}"
    );
    assert!(!msg.contains('\n'));

    // Wiping both headers leaves a protective MBR announcing a lost GPT.
    patch(&img, 512, &[0u8; 512]);
    patch(&img, size - 512, &[0u8; 512]);
    let err = discover(open(&img)).unwrap_err();
    assert_eq!(err.kind(), ErrorKind::Corrupt);
    eprintln!("lost GPT: {err}");
    assert!(err.to_string().contains("protective MBR"), "{err}");
}

#[test]
fn partition_beyond_the_end_of_a_truncated_image_is_an_error() {
    if !have_tools("partition_beyond_the_end", &["sgdisk", "sfdisk", "mke2fs"]) {
        return;
    }
    let dir = tempfile::tempdir().unwrap();
    let (img, parts) = gpt_image(dir.path());
    let f = std::fs::OpenOptions::new().write(true).open(&img).unwrap();
    f.set_len(60 * MIB).unwrap();
    let err = discover(open(&img)).unwrap_err();
    assert_eq!(err.kind(), ErrorKind::Corrupt);
    let msg = err.to_string();
    let start = format!("{:#x}", parts[2].start_sector * 512);
    assert!(msg.contains("partition 3") && msg.contains(&start), "{msg}");
    assert!(
        msg.contains("beyond the end of the disk (0x3c00000)") && msg.contains("truncated"),
        "{msg}"
    );
    assert!(!msg.contains('\n'));
    eprintln!("truncated GPT: {msg}");
}

#[test]
fn mbr_partition_beyond_the_end_is_an_error() {
    if !have_tools("mbr_partition_beyond_the_end", &["sfdisk"]) {
        return;
    }
    let dir = tempfile::tempdir().unwrap();
    let img = dir.path().join("mbr.img");
    sparse(&img, 64 * MIB);
    run_with(
        "sfdisk",
        &["-q", img.to_str().unwrap()],
        Some(b"label: dos\n,16MiB,83\n,,5\n,16MiB,83\n,,83\n"),
        &[],
    );
    let (_, parts) = sfdisk_parts(&sfdisk_json(&img));
    let f = std::fs::OpenOptions::new().write(true).open(&img).unwrap();
    f.set_len(40 * MIB).unwrap();
    let err = discover(open(&img)).unwrap_err();
    let msg = err.to_string();
    // The extended container is checked first: it reaches the old end too.
    let ext = parts.iter().find(|p| p.ptype == "5").unwrap();
    assert!(
        msg.contains(&format!(
            "partition {} at offset {:#x}",
            ext.number,
            ext.start_sector * 512
        )),
        "{msg}"
    );
    assert_eq!(err.kind(), ErrorKind::Corrupt);
}

#[test]
fn looping_ebr_chain_stops_with_a_diagnostic() {
    if !have_tools("looping_ebr_chain", &["sfdisk"]) {
        return;
    }
    let dir = tempfile::tempdir().unwrap();
    let img = dir.path().join("loop.img");
    sparse(&img, 64 * MIB);
    run_with(
        "sfdisk",
        &["-q", img.to_str().unwrap()],
        Some(b"label: dos\n,8MiB,83\n,,5\n,8MiB,83\n,8MiB,83\n,8MiB,83\n"),
        &[],
    );
    let (_, parts) = sfdisk_parts(&sfdisk_json(&img));
    let ext = parts.iter().find(|p| p.ptype == "5").unwrap();
    let logical: Vec<_> = parts.iter().filter(|p| p.number >= 5).collect();
    assert_eq!(logical.len(), 3);
    // The second EBR sits just before partition 6 (sfdisk leaves 1 MiB).
    // Point its link back to the first EBR (relative offset 0).
    let first_ebr = ext.start_sector * 512;
    let second_ebr = (0..logical[1].start_sector)
        .rev()
        .map(|s| s * 512)
        .find(|&o| o > first_ebr && read_at(&img, o + 510, 2) == [0x55, 0xaa])
        .unwrap();
    let link = second_ebr + 446 + 16;
    assert_eq!(
        read_at(&img, link + 4, 1)[0],
        0x05,
        "second EBR has a link entry"
    );
    patch(&img, link + 8, &0u32.to_le_bytes());
    let start = std::time::Instant::now();
    let disk = discover(open(&img)).unwrap();
    assert!(start.elapsed().as_secs() < 5);
    let ids: Vec<_> = disk.volumes.iter().map(|v| v.id.as_str()).collect();
    assert_eq!(ids, ["p1", "p5", "p6"]);
    assert!(
        disk.diagnostics.iter().any(|d| d.message.contains("loops")),
        "{:?}",
        disk.diagnostics
    );
}

#[test]
fn random_bytes_are_no_table_and_no_volumes() {
    let mut rng = XorShift(0x9e37_79b9_7f4a_7c15);
    for size in [0usize, 1, 511, 512, 4096, 70_000, 4 << 20] {
        let mut bytes = vec![0u8; size];
        for chunk in bytes.chunks_mut(8) {
            let r = rng.next().to_le_bytes();
            chunk.copy_from_slice(&r[..chunk.len()]);
        }
        if size >= 512 {
            // A 1/65536 chance of a boot signature would make this an MBR.
            bytes[510] = 0;
        }
        let disk = discover(Arc::new(MemDisk::new(bytes, "random"))).unwrap();
        assert!(
            matches!(disk.table, PartitionTable::None),
            "size {size}: {:?}",
            disk.table
        );
        assert!(disk.volumes.is_empty(), "size {size}");
        assert!(disk.volume_groups.is_empty());
    }
}

#[test]
fn random_bytes_image_file_is_no_table() {
    let dir = tempfile::tempdir().unwrap();
    let img = dir.path().join("random.img");
    let mut rng = XorShift(42);
    let bytes: Vec<u8> = (0..1 << 20).map(|_| rng.next() as u8).collect();
    std::fs::write(&img, &bytes).unwrap();
    patch(&img, 510, &[0, 0]);
    let disk = discover(open(&img)).unwrap();
    assert!(matches!(disk.table, PartitionTable::None));
    assert!(disk.volumes.is_empty());
}

#[test]
fn gpt_without_protective_mbr_is_used_with_a_diagnostic() {
    if !have_tools(
        "gpt_without_protective_mbr",
        &["sgdisk", "sfdisk", "mke2fs"],
    ) {
        return;
    }
    let dir = tempfile::tempdir().unwrap();
    let (img, parts) = gpt_image(dir.path());
    patch(&img, 0, &[0u8; 512]);
    let disk = discover(open(&img)).unwrap();
    assert!(
        matches!(
            disk.table,
            PartitionTable::Gpt {
                used_backup: false,
                ..
            }
        ),
        "{:?}",
        disk.table
    );
    assert_eq!(layout(&disk), oracle_layout(&parts));
    assert!(
        disk.diagnostics
            .iter()
            .any(|d| d.message.contains("no protective MBR")),
        "{:?}",
        disk.diagnostics
    );
}

#[test]
fn stale_backup_gpt_on_an_mbr_disk_is_ignored() {
    if !have_tools(
        "stale_backup_gpt_on_an_mbr_disk",
        &["sgdisk", "sfdisk", "mke2fs"],
    ) {
        return;
    }
    let dir = tempfile::tempdir().unwrap();
    let (img, _) = gpt_image(dir.path());
    // Repartition as MBR the way fdisk users do: the backup GPT at the end
    // of the disk survives.
    run_with(
        "sfdisk",
        &["-q", "--wipe", "never", img.to_str().unwrap()],
        Some(b"label: dos\nlabel-id: 0x0badf00d\n,16MiB,83\n"),
        &[],
    );
    let size = std::fs::metadata(&img).unwrap().len();
    assert_eq!(
        read_at(&img, size - 512, 8),
        b"EFI PART",
        "backup GPT still there"
    );
    let json = sfdisk_json(&img);
    assert_eq!(json["partitiontable"]["label"], "dos");
    let disk = discover(open(&img)).unwrap();
    assert!(
        matches!(&disk.table, PartitionTable::Mbr { disk_signature } if disk_signature == "0x0badf00d"),
        "{:?}",
        disk.table
    );
    let (_, parts) = sfdisk_parts(&json);
    assert_eq!(layout(&disk), oracle_layout(&parts));
}

/// Standard CRC-32, written independently of the crate.
fn crc32(data: &[u8]) -> u32 {
    let mut crc = 0xffff_ffffu32;
    for &b in data {
        crc ^= u32::from(b);
        for _ in 0..8 {
            crc = if crc & 1 != 0 {
                (crc >> 1) ^ 0xedb8_8320
            } else {
                crc >> 1
            };
        }
    }
    !crc
}

#[test]
fn gpt_with_256_byte_entries_is_read_without_the_crate() {
    // UEFI allows entries of 128 * 2^n bytes; the gpt crate asserts on
    // anything but 128. Rewrite an sgdisk table with 256-byte entries.
    if !have_tools("gpt_with_256_byte_entries", &["sgdisk", "sfdisk", "mke2fs"]) {
        return;
    }
    let dir = tempfile::tempdir().unwrap();
    let (img, parts) = gpt_image(dir.path());
    let size = std::fs::metadata(&img).unwrap().len();
    for header_lba in [1, size / 512 - 1] {
        let mut h = read_at(&img, header_lba * 512, 92);
        let le = |b: &[u8], o: usize, n: usize| -> u64 {
            b[o..o + n]
                .iter()
                .rev()
                .fold(0, |a, &x| (a << 8) | u64::from(x))
        };
        let entries_lba = le(&h, 72, 8);
        let (count, esize) = (le(&h, 80, 4), le(&h, 84, 4));
        assert_eq!(esize, 128);
        let old = read_at(&img, entries_lba * 512, (count * esize) as usize);
        // Same 16 KiB: 64 entries of 256 bytes, each padded with zeros.
        let mut new = vec![0u8; old.len()];
        for i in 0..(count / 2) as usize {
            new[i * 256..i * 256 + 128].copy_from_slice(&old[i * 128..i * 128 + 128]);
        }
        assert!(
            old[(count as usize / 2) * 128..].iter().all(|&b| b == 0),
            "only the first entries are used"
        );
        patch(&img, entries_lba * 512, &new);
        h[80..84].copy_from_slice(&((count / 2) as u32).to_le_bytes());
        h[84..88].copy_from_slice(&256u32.to_le_bytes());
        h[88..92].copy_from_slice(&crc32(&new).to_le_bytes());
        h[16..20].fill(0);
        let crc = crc32(&h);
        h[16..20].copy_from_slice(&crc.to_le_bytes());
        patch(&img, header_lba * 512, &h);
    }
    // libfdisk reads such tables too and agrees.
    let (_, oracle) = sfdisk_parts(&sfdisk_json(&img));
    assert_eq!(oracle_layout(&oracle), oracle_layout(&parts));
    let disk = discover(open(&img)).unwrap();
    assert!(disk.diagnostics.is_empty(), "{:?}", disk.diagnostics);
    assert!(matches!(
        disk.table,
        PartitionTable::Gpt {
            used_backup: false,
            ..
        }
    ));
    assert_eq!(layout(&disk), oracle_layout(&parts));
    assert_eq!(disk.volumes[1].probe.label.as_deref(), Some("root"));
}
