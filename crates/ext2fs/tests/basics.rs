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
    assert_eq!(
        fs.read_file(f, 10).unwrap_err().kind(),
        ErrorKind::TooLarge
    );
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
    fs.set_times(f, Timestamp::new(1_000_000_000, 5), Timestamp::new(4_000_000_000, 123_456_789))
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
    assert_eq!(s.times["mtime"], (4_000_000_000u32, Some((123_456_789 << 2) | 1)));
    let names = parse_ea_names(&debugfs(&img, "ea_list /etc/shadow"));
    assert_eq!(names, vec!["security.selinux".to_string()]);
    assert_eq!(
        parse_stat(&debugfs(&img, "stat /etc/fast")).fast_link.as_deref(),
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
    let f = fs.create_file(a, b"f", &vec![7u8; 10_000], 0o644, 0, 0).unwrap();
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
    assert_eq!(fs.unlink(ROOT_INO, b"b").unwrap_err().kind(), ErrorKind::DirectoryNotEmpty);
    fs.unlink(b, b"sub2").unwrap();
    fs.unlink(b, b"g").unwrap();
    fs.unlink(ROOT_INO, b"b").unwrap();
    fs.close().unwrap();
    assert_clean(&img);
    let root = parse_ls_p(&debugfs(&img, "ls -p /"));
    assert!(root.contains_key(b"a".as_slice()) && !root.contains_key(b"b".as_slice()));
}
