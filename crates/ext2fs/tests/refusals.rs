//! What the binding refuses or reports, each set up with the real tools:
//! a journal needing recovery, immutable and append-only inodes and
//! directories, features we do not write, bad names, symlinks in paths,
//! failing devices, and corrupt superblocks, group descriptors and
//! directories. Refusals must leave the image byte-for-byte unchanged and
//! every error must be one line, never a panic.

mod common;

use std::path::{Path, PathBuf};

use common::*;
use rescue_ext2fs::{Error, ErrorKind, Fs, Ino, Timestamp, ROOT_INO};

/// An ext4 image with /etc/f (a file), /d (a directory with /d/x) and
/// /lnk -> /etc, made by debugfs.
fn populated(dir: &Path, args: &[&str]) -> PathBuf {
    let img = dir.join("fs.img");
    mkfs(&img, 32, args);
    let src = dir.join("src.txt");
    std::fs::write(&src, b"hello\n").unwrap();
    let cmds = dir.join("setup.cmds");
    std::fs::write(
        &cmds,
        format!(
            "mkdir /etc\nwrite {0} /etc/f\nmkdir /d\nwrite {0} /d/x\nsymlink /lnk /etc\n",
            src.display()
        ),
    )
    .unwrap();
    run(
        "debugfs",
        &["-w", "-f", cmds.to_str().unwrap(), img.to_str().unwrap()],
    );
    img
}

fn open(img: &Path) -> rescue_ext2fs::Result<Fs> {
    Fs::open(open_dev(img), "fs.img")
}

fn one_line(e: &Error) -> String {
    let s = e.to_string();
    assert!(!s.contains('\n'), "error message is not one line: {s:?}");
    s
}

fn assert_refused<T: std::fmt::Debug>(r: rescue_ext2fs::Result<T>, needle: &str) {
    let e = r.expect_err("expected a refusal");
    let s = one_line(&e);
    assert_eq!(e.kind(), ErrorKind::Refused, "{s}");
    assert!(s.contains(needle), "message {s:?} lacks {needle:?}");
}

fn digest(img: &Path) -> Vec<u8> {
    std::fs::read(img).unwrap()
}

#[test]
fn needs_recovery_is_refused_without_writing() {
    if !have_e2fsprogs("needs_recovery") {
        return;
    }
    let tmp = tempfile::tempdir_in("/tmp").unwrap();
    let img = populated(tmp.path(), &["-t", "ext4"]);
    debugfs_w(&img, "feature needs_recovery");
    let before = digest(&img);
    assert_refused(open(&img), "replay the journal");
    assert!(digest(&img) == before, "a refused open changed the image");
}

#[test]
fn refused_features_name_themselves() {
    if !have_e2fsprogs("refused_features") {
        return;
    }
    for (feature, needle) in [
        ("bigalloc", "bigalloc"),
        ("quota", "quota"),
        ("inline_data", "inline_data"),
        ("mmp", "mmp"),
        ("ea_inode", "ea_inode"),
        ("project", "project"),
    ] {
        let tmp = tempfile::tempdir_in("/tmp").unwrap();
        let img = tmp.path().join("fs.img");
        let mut args = vec!["-t", "ext4", "-O", feature];
        if feature == "project" {
            args.extend(["-I", "256"]);
        }
        mkfs(&img, 64, &args);
        let before = digest(&img);
        assert_refused(open(&img), needle);
        assert!(
            digest(&img) == before,
            "{feature}: a refused open changed the image"
        );
    }
}

#[test]
fn unknown_feature_bits_are_refused() {
    if !have_e2fsprogs("unknown_features") {
        return;
    }
    let tmp = tempfile::tempdir_in("/tmp").unwrap();
    let img = populated(tmp.path(), &["-t", "ext4"]);
    // An ro_compat bit nobody defines yet (bit 30).
    debugfs_w(&img, "ssv feature_ro_compat 0x40000000");
    let e = open(&img).unwrap_err();
    assert_eq!(e.kind(), ErrorKind::Refused, "{e}");
    one_line(&e);
}

#[test]
fn error_state_is_reported_not_refused() {
    if !have_e2fsprogs("error_state") {
        return;
    }
    let tmp = tempfile::tempdir_in("/tmp").unwrap();
    let img = populated(tmp.path(), &["-t", "ext4"]);
    debugfs_w(&img, "ssv state 2");
    let mut fs = open(&img).unwrap();
    assert!(
        fs.warnings()
            .iter()
            .any(|w| w.contains("errors") && w.contains("e2fsck")),
        "{:?}",
        fs.warnings()
    );
    let f = fs.lookup(b"/etc/f").unwrap().unwrap();
    fs.write_file(f, b"changed\n").unwrap();
    fs.close().unwrap();
    assert_eq!(debugfs(&img, "cat /etc/f"), "changed\n");
}

/// Every change to `ino` or to entries of `dir` that must be refused.
fn all_changes_refused(fs: &mut Fs, dir: Ino, name: &[u8], ino: Ino, needle: &str) {
    assert_refused(fs.write_file(ino, b"x"), needle);
    assert_refused(fs.set_mode(ino, 0o600), needle);
    assert_refused(fs.set_owner(ino, 1, 1), needle);
    assert_refused(
        fs.set_times(ino, Timestamp::new(1, 0), Timestamp::new(1, 0)),
        needle,
    );
    assert_refused(fs.set_xattr(ino, "user.k", b"v"), needle);
    assert_refused(fs.remove_xattr(ino, "user.k"), needle);
    assert_refused(fs.unlink(dir, name), needle);
    assert_refused(fs.rename(dir, name, ROOT_INO, b"moved"), needle);
    assert_refused(fs.hard_link(ino, ROOT_INO, b"again"), needle);
}

#[test]
fn immutable_and_append_only_files_are_not_changed() {
    if !have_e2fsprogs("immutable_files") {
        return;
    }
    for (flag, needle) in [
        (0x10, "immutable (chattr +i)"),
        (0x20, "append-only (chattr +a)"),
    ] {
        let tmp = tempfile::tempdir_in("/tmp").unwrap();
        let img = populated(tmp.path(), &["-t", "ext4"]);
        // Keep the extents flag (0x80000) of the file.
        debugfs_w(
            &img,
            &format!("set_inode_field /etc/f flags {:#x}", 0x80000 | flag),
        );
        let before = digest(&img);
        let mut fs = open(&img).unwrap();
        let etc = fs.lookup(b"/etc").unwrap().unwrap();
        let f = fs.lookup(b"/etc/f").unwrap().unwrap();
        all_changes_refused(&mut fs, etc, b"f", f, needle);
        // Reading is fine.
        assert_eq!(fs.read_file(f, 100).unwrap(), b"hello\n");
        let e = fs.write_file(f, b"x").unwrap_err().to_string();
        assert!(e.contains("/etc/f"), "the message names the path: {e}");
        fs.close().unwrap();
        assert!(digest(&img) == before, "refused changes modified the image");
    }
}

#[test]
fn entries_of_immutable_or_append_only_directories_are_not_changed() {
    if !have_e2fsprogs("immutable_dirs") {
        return;
    }
    for (flag, needle) in [(0x10, "immutable"), (0x20, "append-only")] {
        let tmp = tempfile::tempdir_in("/tmp").unwrap();
        let img = populated(tmp.path(), &["-t", "ext4"]);
        debugfs_w(
            &img,
            &format!("set_inode_field /d flags {:#x}", 0x80000 | flag),
        );
        let before = digest(&img);
        let mut fs = open(&img).unwrap();
        let d = fs.lookup(b"/d").unwrap().unwrap();
        let x = fs.lookup(b"/d/x").unwrap().unwrap();
        let etc = fs.lookup(b"/etc").unwrap().unwrap();
        assert_refused(fs.create_file(d, b"new", b"", 0o644, 0, 0), needle);
        assert_refused(fs.mkdir(d, b"new", 0o755, 0, 0), needle);
        assert_refused(fs.symlink(d, b"new", b"/x", 0, 0), needle);
        assert_refused(fs.unlink(d, b"x"), needle);
        assert_refused(fs.rename(d, b"x", ROOT_INO, b"x"), needle);
        assert_refused(fs.rename(etc, b"f", d, b"f"), needle);
        assert_refused(fs.hard_link(x, d, b"x2"), needle);
        assert_refused(fs.set_mode(d, 0o700), needle);
        // The file inside is not itself protected.
        fs.close().unwrap();
        assert!(digest(&img) == before, "refused changes modified the image");
        let mut fs = open(&img).unwrap();
        fs.write_file(x, b"inside\n").unwrap();
        fs.close().unwrap();
        let (code, out) = e2fsck(&img);
        assert_eq!(code, 0, "{out}");
    }
}

#[test]
fn bad_names_and_modes_are_invalid_input() {
    if !have_e2fsprogs("bad_names") {
        return;
    }
    let tmp = tempfile::tempdir_in("/tmp").unwrap();
    let img = populated(tmp.path(), &["-t", "ext4"]);
    let before = digest(&img);
    let mut fs = open(&img).unwrap();
    let long = vec![b'a'; 256];
    for name in [&b""[..], b".", b"..", b"a/b", b"a\0b", &long] {
        for e in [
            fs.create_file(ROOT_INO, name, b"", 0o644, 0, 0)
                .unwrap_err(),
            fs.mkdir(ROOT_INO, name, 0o755, 0, 0).unwrap_err(),
            fs.symlink(ROOT_INO, name, b"/x", 0, 0).unwrap_err(),
            fs.unlink(ROOT_INO, name).unwrap_err(),
            fs.rename(ROOT_INO, b"etc", ROOT_INO, name).unwrap_err(),
        ] {
            assert_eq!(e.kind(), ErrorKind::InvalidInput, "{e}");
            one_line(&e);
        }
    }
    let e = fs
        .create_file(ROOT_INO, b"m", b"", 0o170644, 0, 0)
        .unwrap_err();
    assert_eq!(e.kind(), ErrorKind::InvalidInput, "{e}");
    let e = fs
        .symlink(ROOT_INO, b"s", &vec![b'x'; 4096], 0, 0)
        .unwrap_err();
    assert_eq!(e.kind(), ErrorKind::InvalidInput, "{e}");
    let e = fs.set_xattr(ROOT_INO, "bogus.name", b"").unwrap_err();
    assert_eq!(e.kind(), ErrorKind::InvalidInput, "{e}");
    let e = fs.lookup(b"relative/path").unwrap_err();
    assert_eq!(e.kind(), ErrorKind::InvalidInput, "{e}");
    let e = fs.stat(0).unwrap_err();
    assert_eq!(e.kind(), ErrorKind::InvalidInput, "{e}");
    let e = fs.stat(u32::MAX).unwrap_err();
    assert_eq!(e.kind(), ErrorKind::InvalidInput, "{e}");
    // Reserved inodes (the journal) are never changed.
    assert_refused(fs.set_mode(8, 0o600), "reserved");
    fs.close().unwrap();
    assert!(digest(&img) == before);
}

#[test]
fn symlinks_in_paths_are_not_followed() {
    if !have_e2fsprogs("symlinks_in_paths") {
        return;
    }
    let tmp = tempfile::tempdir_in("/tmp").unwrap();
    let img = populated(tmp.path(), &["-t", "ext4"]);
    let mut fs = open(&img).unwrap();
    let e = fs.lookup(b"/lnk/f").unwrap_err();
    assert_eq!(e.kind(), ErrorKind::SymlinkInPath);
    assert!(one_line(&e).contains("/lnk is a symbolic link"), "{e}");
    let lnk = fs.lookup(b"/lnk").unwrap().unwrap();
    assert_eq!(fs.read_link(lnk).unwrap(), b"/etc");
    let e = fs.lookup(b"/etc/f/x").unwrap_err();
    assert_eq!(e.kind(), ErrorKind::NotADirectory);
    assert!(one_line(&e).contains("/etc/f is not a directory"), "{e}");
    assert_eq!(
        fs.lookup(b"/etc/../d/x").unwrap(),
        fs.lookup(b"/d/x").unwrap()
    );
    assert_eq!(fs.lookup(b"/nope/x").unwrap(), None);
}

#[test]
fn device_errors_come_back_as_errors_with_the_device_message() {
    if !have_e2fsprogs("device_errors") {
        return;
    }
    let tmp = tempfile::tempdir_in("/tmp").unwrap();
    let img = populated(tmp.path(), &["-t", "ext4", "-b", "4096"]);
    // Where is /etc/f's data? ("(0):1234" in the EXTENTS line of stat).
    let stat = debugfs(&img, "stat /etc/f");
    let block: u64 = stat
        .lines()
        .skip_while(|l| !l.starts_with("EXTENTS"))
        .nth(1)
        .and_then(|l| l.split(':').nth(1))
        .and_then(|b| b.trim().parse().ok())
        .expect("extent of /etc/f");
    let dev = Faulty::new(open_dev(&img));
    let mut fs = Fs::open(dev.clone(), "faulty").unwrap();
    let f = fs.lookup(b"/etc/f").unwrap().unwrap();
    dev.fail_reads
        .set(Some((block * 4096, block * 4096 + 4096)));
    let e = fs.read_file(f, 100).unwrap_err();
    assert_eq!(e.kind(), ErrorKind::Device, "{e}");
    assert!(e.device_error().is_some());
    let s = one_line(&e);
    assert!(
        s.contains("injected media error") && s.contains("/etc/f"),
        "{s}"
    );
    dev.fail_reads.set(None);
    assert_eq!(fs.read_file(f, 100).unwrap(), b"hello\n");

    // A failing write: an error, no panic, and closing still reports.
    dev.fail_writes.set(true);
    let e = fs.set_mode(f, 0o600).unwrap_err();
    assert_eq!(e.kind(), ErrorKind::Device, "{e}");
    assert!(one_line(&e).contains("injected write error"));
    let e = fs.write_file(f, b"new contents\n").unwrap_err();
    assert_eq!(e.kind(), ErrorKind::Device, "{e}");
    drop(fs); // must not panic even though writing back fails

    // A failing superblock read.
    let dev = Faulty::new(open_dev(&img));
    dev.fail_reads.set(Some((1024, 2048)));
    let e = Fs::open(dev, "faulty").unwrap_err();
    assert_eq!(e.kind(), ErrorKind::Device, "{e}");
    assert!(one_line(&e).contains("injected media error"));
}

fn patch(img: &Path, offset: u64, bytes: &[u8]) {
    use std::os::unix::fs::FileExt;
    let f = std::fs::OpenOptions::new().write(true).open(img).unwrap();
    f.write_all_at(bytes, offset).unwrap();
}

#[test]
fn corrupt_superblock_and_group_descriptors_give_clean_errors() {
    if !have_e2fsprogs("corrupt_metadata") {
        return;
    }
    let tmp = tempfile::tempdir_in("/tmp").unwrap();
    let base = populated(tmp.path(), &["-t", "ext4", "-b", "4096"]);
    let case = |name: &str, f: &dyn Fn(&Path)| -> Error {
        let img = tmp.path().join(format!("{name}.img"));
        copy_sparse(&base, &img);
        f(&img);
        let e = open(&img).expect_err(name);
        one_line(&e);
        e
    };
    // No magic: not an ext2/3/4 filesystem.
    let e = case("magic", &|img| patch(img, 1024 + 0x38, &[0, 0]));
    assert_eq!(e.kind(), ErrorKind::Corrupt, "{e}");
    assert!(e.to_string().contains("right partition"), "{e}");
    // Absurd block size.
    let e = case("blocksize", &|img| patch(img, 1024 + 0x18, &[40, 0, 0, 0]));
    assert!(matches!(e.kind(), ErrorKind::Corrupt), "{e}");
    // A byte of the superblock changed: its checksum no longer matches.
    let e = case("sb-csum", &|img| patch(img, 1024 + 0x78, b"X"));
    assert_eq!(e.kind(), ErrorKind::Corrupt, "{e}");
    // Group descriptor 0 (block 1 with 4 KiB blocks) garbled: checksum.
    let e = case("gd-csum", &|img| patch(img, 4096 + 8, &[0xff; 4]));
    assert_eq!(e.kind(), ErrorKind::Corrupt, "{e}");
    // A consistent (checksummed) descriptor pointing outside the disk.
    let e = case("gd-range", &|img| {
        debugfs_w(img, "set_bg 0 inode_table 0x7fffffff");
        debugfs_w(img, "set_bg 0 checksum calc");
    });
    assert_eq!(e.kind(), ErrorKind::Corrupt, "{e}");
    assert!(e.to_string().contains("e2fsck"), "{e}");
    // Truncated image: the group descriptors are past the end.
    let e = case("truncated", &|img| {
        let f = std::fs::OpenOptions::new().write(true).open(img).unwrap();
        f.set_len(2048).unwrap();
    });
    assert!(
        matches!(e.kind(), ErrorKind::Device | ErrorKind::Corrupt),
        "{e}"
    );
}

#[test]
fn corrupt_directory_is_an_error_not_a_panic() {
    if !have_e2fsprogs("corrupt_directory") {
        return;
    }
    let tmp = tempfile::tempdir_in("/tmp").unwrap();
    let img = populated(tmp.path(), &["-t", "ext4", "-b", "4096"]);
    let stat = debugfs(&img, "stat /d");
    let block: u64 = stat
        .lines()
        .skip_while(|l| !l.starts_with("EXTENTS"))
        .nth(1)
        .and_then(|l| l.split(':').nth(1))
        .and_then(|b| b.trim().parse().ok())
        .expect("extent of /d");
    patch(&img, block * 4096 + 24, &[0xaa; 64]);
    let mut fs = open(&img).unwrap();
    let d = fs.lookup(b"/d").unwrap().unwrap();
    let e = fs.lookup(b"/d/x").unwrap_err();
    assert_eq!(e.kind(), ErrorKind::Corrupt, "{e}");
    assert!(one_line(&e).contains("e2fsck"), "{e}");
    assert!(fs.read_dir(d).is_err());
    assert!(fs.create_file(d, b"n", b"", 0o644, 0, 0).is_err());
    assert!(fs.unlink(d, b"x").is_err());
    fs.close().unwrap();
}

/// Random byte damage in the metadata area, then a fixed script of
/// operations: whatever happens must be an `Err`, never a panic or crash.
/// Both with metadata checksums (most damage is caught at once) and
/// without (damage reaches libext2fs' deeper paths and ours).
#[test]
fn random_metadata_damage_never_panics() {
    if !have_e2fsprogs("random_damage") {
        return;
    }
    let n: u64 = std::env::var("RESCUE_EXT2FS_CASES")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(40);
    for args in [
        &["-t", "ext4", "-b", "1024"][..],
        &["-t", "ext3", "-b", "1024", "-I", "128"][..],
    ] {
        let tmp = tempfile::tempdir_in("/tmp").unwrap();
        let base = populated(tmp.path(), args);
        let mut opened = 0;
        for seed in 0..n {
            let mut r = Rng(seed);
            let img = tmp.path().join("damaged.img");
            copy_sparse(&base, &img);
            // Metadata of these small images lives in the first ~1.2 MiB.
            for _ in 0..1 + r.below(20) {
                let off = 1024 + r.below(1_200_000);
                patch(&img, off, &[r.next() as u8]);
            }
            let res = std::panic::catch_unwind(|| {
                let Ok(mut fs) = open(&img) else { return false };
                let _ = fs
                    .lookup(b"/etc/f")
                    .map(|f| f.map(|f| fs.read_file(f, 1 << 20)));
                if let Ok(Some(d)) = fs.lookup(b"/d") {
                    let _ = fs.read_dir(d);
                    let _ = fs.create_file(d, b"new", &[1u8; 5000], 0o644, 0, 0);
                    let _ = fs.unlink(d, b"x");
                    let _ = fs.mkdir(d, b"sub", 0o755, 0, 0);
                }
                if let Ok(Some(f)) = fs.lookup(b"/etc/f") {
                    let _ = fs.write_file(f, &[2u8; 9000]);
                    let _ = fs.set_xattr(f, "user.x", b"y");
                    let _ = fs.list_xattrs(f);
                }
                if let Ok(Some(l)) = fs.lookup(b"/lnk") {
                    let _ = fs.read_link(l);
                }
                let _ = fs.rename(ROOT_INO, b"etc", ROOT_INO, b"etc2");
                let _ = fs.close();
                true
            });
            match res {
                Ok(true) => opened += 1,
                Ok(false) => {}
                Err(_) => panic!("{args:?} seed {seed}: a panic on a damaged image"),
            }
        }
        eprintln!("{args:?}: {opened} of {n} damaged images opened and were worked on");
    }
}
