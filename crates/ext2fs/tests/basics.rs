//! Hand-written scenarios for the safe API, each judged by e2fsprogs:
//! `e2fsck -fn` must find nothing and `debugfs` must read back what we
//! wrote (contents, modes, 32-bit owners, times, xattrs, links).

mod common;

use common::*;
use rescue_ext2fs::{ErrorKind, FileType, Fs, Timestamp, ROOT_INO};

fn fresh(dir: &std::path::Path, args: &[&str]) -> std::path::PathBuf {
    let img = dir.join("fs.img");
    mkfs(&img, 32, args);
    img
}

fn assert_clean(img: &std::path::Path) {
    let (code, out) = e2fsck(img);
    assert_eq!(code, 0, "e2fsck -fn:\n{out}");
}

#[test]
fn create_read_replace_keep_inode_links_and_xattrs() {
    if !have_e2fsprogs("create_read_replace") {
        return;
    }
    let tmp = tempfile::tempdir_in("/tmp").unwrap();
    let img = fresh(tmp.path(), &["-t", "ext4"]);
    let mut fs = Fs::open(open_dev(&img), "fs.img").unwrap();
    assert!(!fs.bitmaps_loaded());
    let etc = fs.mkdir(ROOT_INO, b"etc", 0o755, 0, 0).unwrap();
    let f = fs
        .create_file(etc, b"shadow", b"root:x:0:\n", 0o640, 100_000, 70_001)
        .unwrap();
    fs.set_xattr(f, "security.selinux", b"system_u:object_r:shadow_t:s0\0")
        .unwrap();
    fs.hard_link(f, ROOT_INO, b"shadow-link").unwrap();
    let big: Vec<u8> = (0..200_000u32).map(|i| (i % 251) as u8).collect();
    fs.write_file(f, &big).unwrap();
    assert_eq!(fs.read_file(f, 1 << 20).unwrap(), big);
    assert_eq!(fs.read_file(f, 10).unwrap_err().kind(), ErrorKind::TooLarge);
    fs.write_file(f, b"short\n").unwrap();
    fs.symlink(etc, b"fast", b"/usr/lib/os-release", 0, 0)
        .unwrap();
    let slow_target = vec![b'x'; 300];
    let slow = fs.symlink(etc, b"slow", &slow_target, 7, 8).unwrap();
    assert_eq!(fs.read_link(slow).unwrap(), slow_target);
    assert_eq!(fs.lookup(b"/etc/shadow").unwrap(), Some(f));
    assert_eq!(fs.lookup(b"/etc//./shadow").unwrap(), Some(f));
    assert_eq!(fs.lookup(b"/etc/missing").unwrap(), None);
    let st = fs.stat(f).unwrap();
    assert_eq!((st.uid, st.gid, st.links, st.size), (100_000, 70_001, 2, 6));
    assert_eq!(st.file_type(), FileType::Regular);
    assert_eq!(st.permissions(), 0o640);
    fs.set_times(
        f,
        Timestamp::new(1_000_000_000, 5),
        Timestamp::new(4_000_000_000, 123_456_789),
    )
    .unwrap();
    let st = fs.stat(f).unwrap();
    assert_eq!(st.mtime, Timestamp::new(4_000_000_000, 123_456_789));
    assert_eq!(st.atime, Timestamp::new(1_000_000_000, 5));
    fs.close().unwrap();

    assert_clean(&img);
    assert_eq!(debugfs(&img, "cat /shadow-link"), "short\n");
    let s = parse_stat(&debugfs(&img, "stat /etc/shadow"));
    assert_eq!((s.uid, s.gid, s.links, s.mode), (100_000, 70_001, 2, 0o640));
    // 4e9 s needs the epoch bits: low word 4e9 - 2^32 as u32 = 4e9, extra
    // = nsec << 2 | 1 (one epoch).
    assert_eq!(
        s.times["mtime"],
        (4_000_000_000u32, Some((123_456_789 << 2) | 1))
    );
    let names = parse_ea_names(&debugfs(&img, "ea_list /etc/shadow"));
    assert_eq!(names, vec!["security.selinux".to_string()]);
    assert_eq!(
        parse_stat(&debugfs(&img, "stat /etc/fast"))
            .fast_link
            .as_deref(),
        Some("/usr/lib/os-release")
    );
    assert_eq!(debugfs(&img, "cat /etc/slow").as_bytes(), &slow_target[..]);
}

#[test]
fn unlink_rename_and_rmdir() {
    if !have_e2fsprogs("unlink_rename_and_rmdir") {
        return;
    }
    let tmp = tempfile::tempdir_in("/tmp").unwrap();
    let img = fresh(tmp.path(), &["-t", "ext4"]);
    let mut fs = Fs::open(open_dev(&img), "fs.img").unwrap();
    let a = fs.mkdir(ROOT_INO, b"a", 0o755, 0, 0).unwrap();
    let b = fs.mkdir(ROOT_INO, b"b", 0o700, 0, 0).unwrap();
    let sub = fs.mkdir(a, b"sub", 0o755, 0, 0).unwrap();
    let f = fs
        .create_file(a, b"f", &vec![7u8; 10_000], 0o644, 0, 0)
        .unwrap();
    fs.set_xattr(f, "user.big", &vec![1u8; 800]).unwrap(); // xattr block
    let e = fs.set_xattr(f, "user.huge", &vec![1u8; 3000]).unwrap_err();
    assert_eq!(e.kind(), ErrorKind::NoSpace, "{e}");
    let g = fs.create_file(b, b"g", b"gee", 0o600, 0, 0).unwrap();
    // Replace b/g with a/f, move a/sub into b, then remove what is left.
    fs.rename(a, b"f", b, b"g").unwrap();
    assert_eq!(fs.lookup(b"/b/g").unwrap(), Some(f));
    assert_eq!(fs.stat(g).unwrap().links, 0, "the replaced file is freed");
    fs.rename(a, b"sub", b, b"sub2").unwrap();
    assert_eq!(fs.lookup(b"/b/sub2/..").unwrap(), Some(b));
    assert_eq!(fs.stat(a).unwrap().links, 2);
    assert_eq!(fs.stat(b).unwrap().links, 3);
    let e = fs.rename(ROOT_INO, b"b", sub, b"loop").unwrap_err();
    assert_eq!(e.kind(), ErrorKind::InvalidInput, "{e}");
    assert_eq!(
        fs.unlink(ROOT_INO, b"b").unwrap_err().kind(),
        ErrorKind::DirectoryNotEmpty
    );
    fs.unlink(b, b"sub2").unwrap();
    fs.unlink(b, b"g").unwrap();
    fs.unlink(ROOT_INO, b"b").unwrap();
    fs.close().unwrap();
    assert_clean(&img);
    let root = parse_ls_p(&debugfs(&img, "ls -p /"));
    assert!(root.contains_key(b"a".as_slice()) && !root.contains_key(b"b".as_slice()));
}

/// A POSIX ACL in the kernel's xattr format (version 2, then tag, perm,
/// id); the owner/group/mask/other entries carry id 0.
fn acl(entries: &[(u16, u16, u32)]) -> Vec<u8> {
    let mut v = 2u32.to_le_bytes().to_vec();
    for (tag, perm, id) in entries {
        v.extend_from_slice(&tag.to_le_bytes());
        v.extend_from_slice(&perm.to_le_bytes());
        v.extend_from_slice(&id.to_le_bytes());
    }
    v
}

#[test]
fn posix_acls_round_trip_and_malformed_ones_are_rejected() {
    if !have_e2fsprogs("posix_acls") {
        return;
    }
    let tmp = tempfile::tempdir_in("/tmp").unwrap();
    let img = fresh(tmp.path(), &["-t", "ext4"]);
    let mut fs = Fs::open(open_dev(&img), "fs.img").unwrap();
    let f = fs.create_file(ROOT_INO, b"f", b"x", 0o640, 0, 0).unwrap();
    let a = acl(&[
        (0x01, 6, 0),
        (0x02, 4, 1000),
        (0x04, 4, 0),
        (0x10, 4, 0),
        (0x20, 0, 0),
    ]);
    fs.set_xattr(f, "system.posix_acl_access", &a).unwrap();
    assert_eq!(
        fs.get_xattr(f, "system.posix_acl_access").unwrap(),
        Some(a.clone())
    );
    let e = fs
        .set_xattr(f, "system.posix_acl_default", b"\x01junk")
        .unwrap_err();
    assert_eq!(e.kind(), ErrorKind::InvalidInput, "{e}");
    fs.close().unwrap();
    assert_clean(&img);
    let names = parse_ea_names(&debugfs(&img, "ea_list /f"));
    assert_eq!(names, vec!["system.posix_acl_access".to_string()]);
}

#[test]
fn a_full_filesystem_gives_no_space_and_stays_consistent() {
    if !have_e2fsprogs("full_filesystem") {
        return;
    }
    let tmp = tempfile::tempdir_in("/tmp").unwrap();
    let img = tmp.path().join("fs.img");
    mkfs(&img, 4, &["-t", "ext4", "-b", "1024", "-N", "64"]);
    let mut fs = Fs::open(open_dev(&img), "fs.img").unwrap();
    let f = fs
        .create_file(ROOT_INO, b"f", b"small", 0o644, 0, 0)
        .unwrap();
    let e = fs.write_file(f, &vec![0x5a; 8 << 20]).unwrap_err();
    assert_eq!(e.kind(), ErrorKind::NoSpace, "{e}");
    assert!(!e.to_string().contains('\n'));
    // Refused before anything changed: the old contents are intact.
    assert_eq!(fs.read_file(f, 100).unwrap(), b"small");
    // Inodes run out too.
    let mut last = Ok(0);
    for i in 0..100 {
        last = fs.create_file(ROOT_INO, format!("n{i}").as_bytes(), b"", 0o644, 0, 0);
        if last.is_err() {
            break;
        }
    }
    let e = last.unwrap_err();
    assert_eq!(e.kind(), ErrorKind::NoSpace, "{e}");
    // Use up every block (through the empty files just made), then
    // everything that needs a block must fail cleanly.
    for i in 0..60 {
        let left = fs.free_blocks();
        if left == 0 {
            break;
        }
        let d = if left > 4 {
            (left - 2) * 256 / 257
        } else {
            left
        };
        let n = fs.lookup(format!("/n{i}").as_bytes()).unwrap().unwrap();
        fs.write_file(n, &vec![8; (d * 1024) as usize]).unwrap();
    }
    assert_eq!(fs.free_blocks(), 0);
    let n0 = fs.lookup(b"/n0").unwrap().unwrap();
    for e in [
        fs.set_xattr(n0, "user.big", &[1; 700]).unwrap_err(),
        fs.mkdir(ROOT_INO, b"dir", 0o755, 0, 0).unwrap_err(),
        fs.symlink(ROOT_INO, b"slow", &[b'x'; 300], 0, 0)
            .unwrap_err(),
        fs.create_file(ROOT_INO, b"data", b"some data", 0o644, 0, 0)
            .unwrap_err(),
    ] {
        assert_eq!(e.kind(), ErrorKind::NoSpace, "{e}");
    }
    fs.close().unwrap();
    assert_clean(&img);
    let mut fs = Fs::open(open_dev(&img), "fs.img").unwrap();
    // Space comes back when the file shrinks.
    fs.write_file(f, b"tiny\n").unwrap();
    fs.close().unwrap();
    assert_clean(&img);
    assert_eq!(debugfs(&img, "cat /f"), "tiny\n");
}

/// libext2fs 1.47.0 cannot punch an extent ending at the filesystem's last
/// block (it drops the extent and leaks the blocks); we work around it.
/// Both shapes: a 2-block extent ending there (shortened) and a one-block
/// extent there (deleted), freed by unlink and by write_file.
#[test]
fn freeing_the_last_block_of_the_filesystem() {
    if !have_e2fsprogs("last_block") {
        return;
    }
    for final_piece in [1u64, 2] {
        let tmp = tempfile::tempdir_in("/tmp").unwrap();
        let img = tmp.path().join("fs.img");
        mkfs(&img, 4, &["-t", "ext4", "-b", "1024", "-N", "128"]);
        let last = 4 * 1024 - 1;
        let mut fs = Fs::open(open_dev(&img), "fs.img").unwrap();
        // Take the low free blocks with one big file, leaving a tail.
        let free = fs.free_blocks();
        let big = (free - 2) * 256 / 257 - 40;
        fs.create_file(
            ROOT_INO,
            b"big",
            &vec![1; (big * 1024) as usize],
            0o644,
            0,
            0,
        )
        .unwrap();
        // Fill the tail in order; the last piece lands on the last block.
        let mut pieces = Vec::new();
        loop {
            let left = fs.free_blocks();
            if left == 0 {
                break;
            }
            let k = if left == final_piece { final_piece } else { 1 };
            let name = format!("p{}", pieces.len());
            let ino = fs
                .create_file(
                    ROOT_INO,
                    name.as_bytes(),
                    &vec![3; (k * 1024) as usize],
                    0o644,
                    0,
                    0,
                )
                .unwrap_or_else(|e| panic!("{name} with {left} free: {e}"));
            pieces.push((name, ino));
        }
        fs.close().unwrap();
        assert_clean(&img);
        let icheck = debugfs(&img, &format!("icheck {last}"));
        let holder: u32 = icheck
            .lines()
            .last()
            .and_then(|l| l.split_whitespace().nth(1))
            .and_then(|v| v.parse().ok())
            .unwrap_or(0);
        let last_ino = pieces.last().unwrap().1;
        assert_eq!(
            holder, last_ino,
            "the last piece should hold the last block: {icheck}"
        );
        let mut fs = Fs::open(open_dev(&img), "fs.img").unwrap();
        // Shrinking the holder frees its extent through truncation...
        fs.write_file(last_ino, b"x").unwrap();
        fs.close().unwrap();
        assert_clean(&img);
        // ...and after refilling the same blocks, unlinking frees it too.
        let mut fs = Fs::open(open_dev(&img), "fs.img").unwrap();
        fs.write_file(last_ino, &vec![4; (final_piece * 1024) as usize])
            .unwrap();
        assert_eq!(fs.free_blocks(), 0);
        for (name, _) in &pieces {
            fs.unlink(ROOT_INO, name.as_bytes()).unwrap();
        }
        fs.close().unwrap();
        assert_clean(&img);
    }
}
