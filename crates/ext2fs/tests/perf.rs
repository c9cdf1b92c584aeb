//! Cost of a small repair on a big filesystem: on a sparse 20 GiB ext4
//! image, opening and changing one inode must read a few kilobytes (no
//! bitmaps), and replacing one small file must stay in the milliseconds
//! (bitmaps are the only thing read that grows with the disk). Prints the
//! measured times and byte counts; `e2fsck -fn` judges the result.

mod common;

use std::time::{Duration, Instant};

use common::*;
use rescue_ext2fs::Fs;

#[test]
fn small_changes_on_a_20_gib_filesystem_are_cheap() {
    measure("perf_20g", &["-t", "ext4", "-b", "4096"]);
}

/// Without group descriptor checksums no group is "uninitialised": every
/// bitmap block is read, the worst case for the first allocation.
#[test]
fn small_changes_on_a_20_gib_filesystem_without_uninit_groups() {
    measure(
        "perf_20g_all_bitmaps",
        &[
            "-t",
            "ext4",
            "-b",
            "4096",
            "-O",
            "^metadata_csum,^uninit_bg",
        ],
    );
}

fn measure(name: &str, mkfs_args: &[&str]) {
    if !have_e2fsprogs(name) {
        return;
    }
    let tmp = tempfile::tempdir_in("/tmp").unwrap();
    let img = tmp.path().join("big.img");
    mkfs(&img, 20 << 10, mkfs_args);
    let src = tmp.path().join("hostname");
    std::fs::write(&src, b"old-name\n").unwrap();
    let cmds = tmp.path().join("cmds");
    std::fs::write(
        &cmds,
        format!("mkdir /etc\nwrite {} /etc/hostname\n", src.display()),
    )
    .unwrap();
    run(
        "debugfs",
        &["-w", "-f", cmds.to_str().unwrap(), img.to_str().unwrap()],
    );

    // 1. Metadata only: open, look up, chmod, close.
    let dev = Faulty::new(open_dev(&img));
    let t = Instant::now();
    let mut fs = Fs::open(dev.clone(), "big").unwrap();
    let open_time = t.elapsed();
    let open_read = dev.bytes_read.get();
    let f = fs.lookup(b"/etc/hostname").unwrap().unwrap();
    fs.set_mode(f, 0o600).unwrap();
    assert!(!fs.bitmaps_loaded(), "a chmod must not read the bitmaps");
    fs.close().unwrap();
    let chmod_time = t.elapsed();
    let chmod_read = dev.bytes_read.get();

    // 2. Replace one small file: bitmaps are read once (the first write).
    let dev = Faulty::new(open_dev(&img));
    let t = Instant::now();
    let mut fs = Fs::open(dev.clone(), "big").unwrap();
    let f = fs.lookup(b"/etc/hostname").unwrap().unwrap();
    let before = (t.elapsed(), dev.bytes_read.get());
    let t1 = Instant::now();
    fs.write_file(f, b"new-name\n").unwrap();
    let first_write = (t1.elapsed(), dev.bytes_read.get() - before.1);
    let t2 = Instant::now();
    let r2 = dev.bytes_read.get();
    fs.write_file(f, b"newer-name\n").unwrap();
    let second_write = (t2.elapsed(), dev.bytes_read.get() - r2);
    fs.close().unwrap();
    let replace_time = t.elapsed();

    eprintln!(
        "{name}: 20 GiB ext4: open {open_time:?} ({open_read} bytes read); open+lookup+chmod+close \
         {chmod_time:?} ({chmod_read} bytes read)"
    );
    eprintln!(
        "{name}: 20 GiB ext4: open+lookup+write_file+close {replace_time:?}; first write_file (reads \
         bitmaps) {:?} / {} bytes read; second write_file {:?} / {} bytes read; \
         => ext2fs_read_bitmaps about {:?} and {} bytes",
        first_write.0,
        first_write.1,
        second_write.0,
        second_write.1,
        first_write.0.saturating_sub(second_write.0),
        first_write.1.saturating_sub(second_write.1),
    );
    assert!(chmod_read < 256 << 10, "a chmod read {chmod_read} bytes");
    assert!(
        first_write.1 < 16 << 20,
        "replacing a small file read {} bytes",
        first_write.1
    );
    // Generous bounds (debug builds, shared CI cores); typical is a few ms.
    assert!(chmod_time < Duration::from_secs(2), "{chmod_time:?}");
    assert!(replace_time < Duration::from_secs(5), "{replace_time:?}");

    let (code, out) = e2fsck(&img);
    assert_eq!(code, 0, "{out}");
    assert_eq!(debugfs(&img, "cat /etc/hostname"), "newer-name\n");
}
