//! The per-volume filesystems on real images: ext4 through ext4-view and FAT
//! through fatfs, read-only and bounded.

mod common;

use common::*;
use rescue_guest::{FileType, GuestFs, GuestPath};
use rescue_volumes::VolumeKind;

#[test]
fn ext4_metadata_listing_and_caps() {
    if !have_tools(&["mkfs.ext4", "blkid", "debugfs"]) {
        return;
    }
    let dir = tempdir();
    let d = dir.path();
    let tree = d.join("tree");
    write(&tree, "etc/ssh/sshd_config", "PermitRootLogin no\n");
    write(&tree, "big", vec![b'x'; 70_000]);
    link(&tree, "rel", "etc/ssh");
    let long_target = format!("/{}", "d/".repeat(40));
    link(&tree, "longlink", &long_target);
    for i in 0..50 {
        write(&tree, &format!("many/f{i:03}"), "");
    }
    std::os::unix::fs::PermissionsExt::set_mode(
        &mut std::fs::metadata(tree.join("etc/ssh/sshd_config"))
            .unwrap()
            .permissions(),
        0o600,
    );
    std::fs::set_permissions(
        tree.join("etc/ssh/sshd_config"),
        std::os::unix::fs::PermissionsExt::from_mode(0o600),
    )
    .unwrap();
    let img = d.join("fs.img");
    mkfs_ext4(
        &img,
        &tree,
        16,
        "11111111-2222-4333-8444-555555555555",
        "t",
        &[],
    );
    let v = volume("p1", mbr(1, "0x83"), &img);
    let fs = rescue_guest::open_volume(&v).unwrap();
    assert_eq!(fs.fs_type(), "ext4");

    let m = fs
        .symlink_metadata(&GuestPath::new("/etc/ssh/sshd_config"))
        .unwrap();
    assert_eq!(m.file_type, FileType::Regular);
    assert_eq!(m.mode, 0o600);
    assert_eq!(m.size_in_bytes, 19);
    // debugfs is the oracle for owner and mode.
    let stat = run(std::process::Command::new("debugfs")
        .args(["-R", "stat /etc/ssh/sshd_config"])
        .arg(&img));
    assert!(stat.contains("Mode:  0600"), "{stat}");
    assert!(stat.contains(&format!("User: {:>5}", m.uid)), "{stat}");

    assert!(fs
        .symlink_metadata(&GuestPath::new("/rel"))
        .unwrap()
        .is_symlink());
    assert_eq!(fs.read_link(&GuestPath::new("/rel")).unwrap(), b"etc/ssh");
    assert_eq!(
        fs.read_link(&GuestPath::new("/longlink")).unwrap(),
        long_target.as_bytes()
    );
    assert_eq!(
        fs.read_file(&GuestPath::new("/big"), 70_000).unwrap().len(),
        70_000
    );
    let e = fs.read_file(&GuestPath::new("/big"), 69_999).unwrap_err();
    assert!(
        e.to_string().contains("70000 bytes") && e.to_string().contains("/big on p1"),
        "{e}"
    );
    let list = fs.read_dir(&GuestPath::new("/many"), 1000).unwrap();
    assert_eq!(list.len(), 50);
    let e = fs.read_dir(&GuestPath::new("/many"), 10).unwrap_err();
    assert!(e.to_string().contains("more than 10 entries"), "{e}");
    let nf = fs.symlink_metadata(&GuestPath::new("/nope")).unwrap_err();
    assert_eq!(nf.kind(), rescue_io::ErrorKind::NotFound);

    // Through the guest view, the relative link resolves inside the guest.
    let g = rescue_guest::Guest::with_root(fs);
    assert_eq!(
        g.read_file(&GuestPath::new("/rel/sshd_config"), 100)
            .unwrap(),
        b"PermitRootLogin no\n"
    );
    assert_eq!(
        g.resolve(&GuestPath::new("/rel/../ssh/./sshd_config"), true)
            .unwrap()
            .canonical,
        GuestPath::new("/etc/ssh/sshd_config")
    );
    assert_eq!(
        g.resolve(&GuestPath::new("/../../etc"), true)
            .unwrap()
            .canonical,
        GuestPath::new("/etc")
    );
}

#[test]
fn fat_reads_case_insensitively_and_bounded() {
    if !have_tools(&["mkfs.vfat", "mcopy", "mmd", "blkid"]) {
        return;
    }
    let dir = tempdir();
    let d = dir.path();
    let img = d.join("esp.img");
    let big = vec![b'g'; 50_000];
    mkfs_vfat(
        d,
        &img,
        8192,
        "ABCD1234",
        "EFI",
        &[
            ("/EFI/debian/grubx64.efi", &big),
            ("/EFI/debian/grub.cfg", b"configfile /x\n"),
        ],
    );
    let kind = VolumeKind::GptPartition {
        number: 1,
        type_guid: rescue_guest::boot::ESP_TYPE_GUID.into(),
        type_name: None,
        partuuid: "p".into(),
        partlabel: "EFI".into(),
    };
    let v = volume("p1", kind, &img);
    assert_eq!(v.probe.uuid.as_deref(), Some("ABCD-1234"), "blkid oracle");
    let fs = rescue_guest::open_volume(&v).unwrap();
    assert_eq!(fs.fs_type(), "vfat");
    let root = fs.read_dir(&GuestPath::root(), 100).unwrap();
    assert_eq!(
        root.iter().map(|e| e.name_lossy()).collect::<Vec<_>>(),
        vec!["EFI"]
    );
    let files = fs.read_dir(&GuestPath::new("/EFI/debian"), 100).unwrap();
    let mut names: Vec<String> = files.iter().map(|e| e.name_lossy()).collect();
    names.sort();
    assert_eq!(names, vec!["grub.cfg", "grubx64.efi"]);
    assert_eq!(
        fs.read_file(&GuestPath::new("/efi/DEBIAN/Grub.Cfg"), 100)
            .unwrap(),
        b"configfile /x\n"
    );
    assert_eq!(
        fs.read_file(&GuestPath::new("/EFI/debian/grubx64.efi"), 1 << 20)
            .unwrap(),
        big
    );
    let m = fs
        .symlink_metadata(&GuestPath::new("/EFI/debian/grubx64.efi"))
        .unwrap();
    assert_eq!(m.size_in_bytes, 50_000);
    assert!(fs
        .symlink_metadata(&GuestPath::new("/EFI"))
        .unwrap()
        .is_dir());
    let e = fs
        .read_file(&GuestPath::new("/EFI/debian/grubx64.efi"), 1000)
        .unwrap_err();
    assert!(e.to_string().contains("50000 bytes"), "{e}");
    assert_eq!(
        fs.symlink_metadata(&GuestPath::new("/EFI/nope"))
            .unwrap_err()
            .kind(),
        rescue_io::ErrorKind::NotFound
    );
    assert!(fs.read_link(&GuestPath::new("/EFI")).is_err());
}

#[test]
fn garbage_volumes_fail_cleanly() {
    let dir = tempdir();
    let d = dir.path();
    // Deterministic pseudo-random bytes: neither ext4 nor FAT must panic.
    let mut x: u64 = 0x9e3779b97f4a7c15;
    let mut bytes = vec![0u8; 1 << 20];
    for b in bytes.iter_mut() {
        x ^= x << 13;
        x ^= x >> 7;
        x ^= x << 17;
        *b = x as u8;
    }
    // Keep the ext4 magic so ext4-view parses further than the magic check.
    bytes[1024 + 0x38] = 0x53;
    bytes[1024 + 0x39] = 0xef;
    let img = d.join("garbage.img");
    std::fs::write(&img, &bytes).unwrap();
    let dev = device(&img);
    // Random metadata must be refused with an error, never accepted or panic.
    let ext = rescue_guest::Ext4Fs::open("p9", "ext4", dev.clone())
        .and_then(|fs| fs.read_dir(&GuestPath::root(), 100));
    let e = ext.unwrap_err();
    assert!(e.to_string().contains("p9"), "{e}");
    let fat =
        rescue_guest::FatFs::open("p9", dev).and_then(|fs| fs.read_dir(&GuestPath::root(), 100));
    let e = fat.unwrap_err();
    assert!(e.to_string().contains("p9"), "{e}");
    eprintln!("garbage: {e}");
}

/// A superblock that claims more blocks than the volume has (a truncated
/// image, or a forged count) is refused before ext4-view sizes anything
/// from it.
#[test]
fn ext4_geometry_beyond_the_volume_is_refused() {
    if !have_tools(&["mkfs.ext4", "debugfs", "blkid"]) {
        return;
    }
    let dir = tempdir();
    let d = dir.path();
    let tree = d.join("tree");
    write(&tree, "etc/fstab", "x\n");
    let img = d.join("fs.img");
    mkfs_ext4(
        &img,
        &tree,
        16,
        "11111111-2222-4333-8444-555555555555",
        "t",
        &[],
    );
    let truncated = d.join("truncated.img");
    let bytes = std::fs::read(&img).unwrap();
    std::fs::write(&truncated, &bytes[..8 << 20]).unwrap();
    let e = rescue_guest::Ext4Fs::open("p2", "ext4", device(&truncated)).unwrap_err();
    assert_eq!(e.kind(), rescue_io::ErrorKind::Corrupt);
    assert!(
        e.to_string().contains("but the volume has 8388608 bytes") && e.to_string().contains("p2"),
        "{e}"
    );

    run(std::process::Command::new("debugfs")
        .args(["-w", "-R", "ssv blocks_count 0xffffffffff"])
        .arg(&img));
    let e = rescue_guest::Ext4Fs::open("p2", "ext4", device(&img)).unwrap_err();
    assert!(e.to_string().contains("claims 1099511627775 blocks"), "{e}");
    eprintln!("forged blocks_count: {e}");
}
