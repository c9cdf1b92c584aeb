//! Journal recovery written into the device (`recover_in_place`), judged by
//! e2fsck on filesystems made dirty by the real kernel.
//!
//! Each profile formats an image, mounts it through a loop device, writes,
//! `syncfs`es, then makes more changes that only `fsync` commits (so they
//! live nowhere but in the journal) and copies the image while it is still
//! mounted: a crash-consistent snapshot with `needs_recovery` set. Then:
//!
//! * `recover_in_place` on one copy (opened with `RawFile::open_read_write`)
//!   and `e2fsck -y -E journal_only` (journal replay only, no check) on
//!   another must leave the same bytes everywhere except four superblock
//!   fields that e2fsck stamps with its own run (see [`E2FSCK_STAMPS`]); all
//!   files are also compared through `debugfs rdump`;
//! * `e2fsck -fn` is clean on our result, `dumpe2fs -h` shows
//!   `needs_recovery` gone and the log empty, and the files hold what the
//!   workload wrote, including the last change (absent from the dirty copy
//!   without replay);
//! * a second call is a no-op.
//!
//! Refusals, with nothing written and the advised way out checked to work:
//! fast-commit data in the journal, a commit block that fails its checksum,
//! and a journaled block that fails its checksum.
//!
//! Needs root, loop devices and the kernel ext4 driver.

mod common;

use std::path::Path;

use common::dirty::{fsync, make_dirty, mkfs, Profile, DEFAULT};
use common::*;
use rescue_ext4::{plan_replay, recover_in_place, ErrorKind, RecoveryReport, WriteSource};
use rescue_io::RawFile;

/// Superblock bytes (offsets inside the primary superblock at byte 1024)
/// where `e2fsck -E journal_only` writes something different from the
/// replay itself, and why:
///
/// * `s_wtime` (0x30, 4 bytes) and `s_wtime_hi` (0x274, 1 byte): e2fsck
///   stamps the time of its own run when it writes the superblock back;
///   the replay carries the time of the kernel's last superblock write;
/// * `s_kbytes_written` (0x178, 8 bytes): e2fsck adds the kilobytes its own
///   run wrote (the replayed blocks and superblocks) to the lifetime
///   counter; the kernel's value is what the filesystem itself wrote;
/// * `s_checksum` (0x3fc, 4 bytes): the CRC-32C over the superblock, which
///   covers the fields above (only with `metadata_csum`).
///
/// Everything else, including the journal superblock (`s_start` 0,
/// `s_sequence` advanced, `s_errno` 0) and the backup superblocks (neither
/// side rewrites them), must be identical.
const E2FSCK_STAMPS: &[(&str, u64, u64)] = &[
    ("s_wtime", 0x30, 4),
    ("s_kbytes_written", 0x178, 8),
    ("s_wtime_hi", 0x274, 1),
    ("s_checksum", 0x3fc, 4),
];

/// The superblock field holding byte `at` of the image, if it is one of
/// [`E2FSCK_STAMPS`].
fn stamp_field(at: u64) -> Option<&'static str> {
    E2FSCK_STAMPS
        .iter()
        .find(|&&(_, off, len)| at >= 1024 + off && at < 1024 + off + len)
        .map(|&(name, _, _)| name)
}

/// Every byte offset where `a` and `b` differ.
fn raw_diffs(a: &Path, b: &Path) -> Vec<u64> {
    let (x, y) = (read_file(a), read_file(b));
    assert_eq!(x.len(), y.len(), "image sizes differ");
    x.iter()
        .zip(&y)
        .enumerate()
        .filter(|(_, (p, q))| p != q)
        .map(|(i, _)| i as u64)
        .collect()
}

/// `dumpe2fs -h` of `image`.
fn dumpe2fs(image: &Path) -> String {
    stdout(&run("dumpe2fs", &["-h", image.to_str().unwrap()]))
}

fn header_field<'a>(dump: &'a str, key: &str) -> &'a str {
    dump.lines()
        .find_map(|l| l.strip_prefix(key))
        .unwrap_or_else(|| panic!("dumpe2fs shows no {key:?}:\n{dump}"))
        .trim()
}

fn has_needs_recovery(image: &Path) -> bool {
    let dump = dumpe2fs(image);
    header_field(&dump, "Filesystem features:")
        .split_whitespace()
        .any(|f| f == "needs_recovery")
}

fn recover(image: &Path) -> rescue_io::Result<RecoveryReport> {
    let dev = RawFile::open_read_write(image).unwrap();
    recover_in_place(&dev)
}

/// Every check on one profile.
fn profile_test(p: &Profile) {
    if !have_kernel_ext4(p.name) {
        return;
    }
    let d = make_dirty(p);
    let what = p.name;
    assert!(
        has_needs_recovery(&d.dirty),
        "{what}: the copy must be dirty"
    );

    if p.magic_file {
        let plan = plan_replay(&*open(&d.dirty)).unwrap().unwrap();
        assert!(
            plan.writes
                .iter()
                .any(|w| matches!(w.source, WriteSource::Journal { escaped: true, .. })),
            "{what}: the magic-first data block must be logged escaped"
        );
    }
    let ours = d.dir.join("ours.img");
    copy_sparse(&d.dirty, &ours);
    let report = recover(&ours).unwrap();
    eprintln!("{what}: {report:?}");
    assert!(report.recovered && report.transactions > 0, "{what}");
    assert!(!report.has_errors, "{what}");

    let theirs = d.dir.join("e2fsck.img");
    e2fsck_replay(&d.dirty, &theirs);
    let diffs = raw_diffs(&ours, &theirs);
    let unexplained: Vec<u64> = diffs
        .iter()
        .copied()
        .filter(|&at| stamp_field(at).is_none())
        .collect();
    assert!(
        unexplained.is_empty(),
        "{what}: {} byte(s) differ from e2fsck -E journal_only outside its stamps, first at {:#x}",
        unexplained.len(),
        unexplained[0]
    );
    let fields: std::collections::BTreeSet<&str> =
        diffs.iter().filter_map(|&at| stamp_field(at)).collect();
    eprintln!("{what}: e2fsck differs only in {fields:?}");
    // The stamps aside, every file reads the same on both.
    let mine = rdump(&ours, &d.dir.join("rdump-ours"));
    assert!(
        mine == rdump(&theirs, &d.dir.join("rdump-e2fsck")),
        "{what}: files differ from e2fsck's replay"
    );

    let (code, out) = e2fsck_check(&ours);
    assert_eq!(code, 0, "{what}: e2fsck -fn on our recovery:\n{out}");
    assert!(
        !has_needs_recovery(&ours),
        "{what}: needs_recovery still set"
    );
    assert_eq!(header_field(&dumpe2fs(&ours), "Journal start:"), "0");

    assert_eq!(
        mine.keys().collect::<Vec<_>>(),
        d.expected.keys().collect::<Vec<_>>(),
        "{what}: file list"
    );
    for (k, v) in &d.expected {
        assert!(mine[k] == *v, "{what}: contents of {k}");
    }
    // The journal mattered: the dirty copy alone has the old last.txt.
    let cat = try_run(
        "debugfs",
        &["-R", "cat /last.txt", d.dirty.to_str().unwrap()],
    );
    assert_ne!(cat.stdout, d.expected["last.txt"], "{what}");

    // Recovering again finds nothing to do and writes nothing.
    let before = read_file(&ours);
    let again = recover(&ours).unwrap();
    assert!(!again.recovered && again.blocks_written == 0, "{what}");
    assert!(read_file(&ours) == before, "{what}: a second call wrote");
}

#[test]
fn ext4_with_metadata_csum() {
    profile_test(&DEFAULT);
}

#[test]
fn ext4_without_metadata_csum() {
    profile_test(&Profile {
        name: "ext4-no-metadata-csum",
        mkfs: &["-b", "4096", "-O", "^metadata_csum,uninit_bg"],
        ..DEFAULT
    });
}

#[test]
fn ext3() {
    profile_test(&Profile {
        name: "ext3",
        mkfs: &["-t", "ext3", "-b", "4096"],
        fstype: "ext3",
        ..DEFAULT
    });
}

#[test]
fn ext4_data_journal_with_escaped_blocks() {
    profile_test(&Profile {
        name: "ext4-data-journal",
        mount: "data=journal",
        magic_file: true,
        ..DEFAULT
    });
}

/// `recover_in_place` on a copy of `image` must fail with `kind` and a
/// message holding each of `words`, and leave every byte as it was.
fn assert_refused(image: &Path, kind: ErrorKind, words: &[&str]) {
    let before = read_file(image);
    let err = recover(image).expect_err("recovery must be refused");
    let msg = err.to_string();
    assert_eq!(err.kind(), kind, "{msg}");
    for w in words {
        assert!(msg.contains(w), "{msg:?} lacks {w:?}");
    }
    assert!(!msg.contains('\n'), "{msg:?}");
    assert!(read_file(image) == before, "a refused recovery wrote");
    assert!(has_needs_recovery(image));
}

/// The advised way out: `e2fsck -fy` on a copy repairs it for good.
fn assert_e2fsck_fy_repairs(image: &Path, copy: &Path) {
    copy_sparse(image, copy);
    let o = try_run("e2fsck", &["-fy", copy.to_str().unwrap()]);
    assert!(
        matches!(o.status.code(), Some(0 | 1)),
        "e2fsck -fy: {}",
        stdout(&o)
    );
    let (code, out) = e2fsck_check(copy);
    assert_eq!(code, 0, "after e2fsck -fy:\n{out}");
    assert!(!has_needs_recovery(copy));
}

/// `debugfs logdump -a` of `image`.
fn logdump(image: &Path) -> String {
    stdout(&run(
        "debugfs",
        &["-R", "logdump -a", image.to_str().unwrap()],
    ))
}

/// Byte offset on disk of journal block `n` (`debugfs bmap <8> n`).
fn journal_block_offset(image: &Path, n: u64) -> u64 {
    let cmd = format!("bmap <8> {n}");
    let out = stdout(&run("debugfs", &["-R", &cmd, image.to_str().unwrap()]));
    out.trim().parse::<u64>().unwrap() * 4096
}

fn flip(image: &Path, offset: u64) {
    let mut b = read_file(image);
    b[offset as usize] ^= 0xff;
    std::fs::write(image, b).unwrap();
}

/// The number after `key` in `line` ("... at block 8" -> 8 for "block ").
fn number_after(line: &str, key: &str) -> u64 {
    let rest = &line[line.rfind(key).unwrap() + key.len()..];
    rest.split(|c: char| !c.is_ascii_digit())
        .next()
        .unwrap()
        .parse()
        .unwrap()
}

#[test]
fn corrupt_commit_or_logged_block_is_refused() {
    let name = "corrupt_commit_or_logged_block_is_refused";
    if !have_kernel_ext4(name) {
        return;
    }
    let d = make_dirty(&DEFAULT);
    let log = logdump(&d.dirty);
    let commits: Vec<&str> = log
        .lines()
        .filter(|l| l.contains("type 2 (commit block)"))
        .collect();
    assert!(commits.len() >= 2, "need two transactions:\n{log}");

    // The second commit block's header fails its checksum (byte 0x39 is in
    // its commit time, which the v3 checksum covers).
    let bad_commit = d.dir.join("bad-commit.img");
    copy_sparse(&d.dirty, &bad_commit);
    let seq = number_after(commits[1], "sequence ");
    let at = journal_block_offset(&bad_commit, number_after(commits[1], "at block "));
    flip(&bad_commit, at + 0x39);
    let plan = plan_replay(&*open(&bad_commit)).unwrap().unwrap();
    assert_eq!(plan.failed_commit, Some(seq as u32));
    assert_refused(
        &bad_commit,
        ErrorKind::Corrupt,
        &[
            &format!("transaction {seq}"),
            "commit block",
            "nothing was written",
            "e2fsck -fy",
            "copy",
        ],
    );
    assert_e2fsck_fy_repairs(&bad_commit, &d.dir.join("bad-commit.fixed.img"));

    // A block logged by the first transaction fails its tag checksum.
    let bad_block = d.dir.join("bad-block.img");
    copy_sparse(&d.dirty, &bad_block);
    let logged = log
        .lines()
        .find(|l| l.contains("logged at journal block"))
        .unwrap_or_else(|| panic!("no logged block:\n{log}"));
    let at = journal_block_offset(&bad_block, number_after(logged, "journal block "));
    flip(&bad_block, at + 100);
    let plan = plan_replay(&*open(&bad_block)).unwrap().unwrap();
    assert!(plan.needs_full_check && plan.failed_commit.is_none());
    assert_refused(
        &bad_block,
        ErrorKind::Corrupt,
        &["checksums", "nothing was written", "e2fsck -fy", "copy"],
    );
    assert_e2fsck_fy_repairs(&bad_block, &d.dir.join("bad-block.fixed.img"));
}

/// The kernel supports ext4 fast commits; otherwise skip, or fail under
/// `RESCUE_REQUIRE_TOOLS=1`.
fn have_fast_commit(test: &str) -> bool {
    if Path::new("/sys/fs/ext4/features/fast_commit").exists() {
        return true;
    }
    if std::env::var("RESCUE_REQUIRE_TOOLS").as_deref() == Ok("1") {
        panic!("{test}: the kernel has no ext4 fast_commit support (RESCUE_REQUIRE_TOOLS=1)");
    }
    eprintln!("SKIP {test}: kernel without ext4 fast_commit");
    false
}

#[test]
fn fast_commit_data_is_refused() {
    let name = "fast_commit_data_is_refused";
    if !have_kernel_ext4(name) || !have_fast_commit(name) {
        return;
    }
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path();
    let image = dir.join("fc.img");
    mkfs(&image, &["-b", "4096", "-O", "fast_commit"]);
    let m = Mounted::new(&image, &dir.join("mnt"), "ext4", "");
    write(&m.path("a"), b"full commit\n");
    syncfs(&m.dir);
    // fsync of a small change after a full commit: a fast commit.
    write(&m.path("b"), b"fast commit\n");
    fsync(&m, &["b"]);
    let dirty = dir.join("dirty.img");
    copy_sparse(&image, &dirty);
    m.unmount();

    // The journal uses fast commits (jbd2 incompat bit 0x20, which
    // dumpe2fs 1.47.0 names FEATURE_I5) and its fast-commit area holds a
    // commit (logdump: "tag HEAD, features 0x0, tid N" ... "tag TAIL").
    let dump = dumpe2fs(&dirty);
    let features = header_field(&dump, "Journal features:");
    assert!(
        features.contains("FEATURE_I5") || features.contains("fast_commit"),
        "{dump}"
    );
    assert_ne!(header_field(&dump, "Fast commit length:"), "0", "{dump}");
    let log = stdout(&run("debugfs", &["-R", "logdump", dirty.to_str().unwrap()]));
    assert!(
        log.contains("Fast Commit Area") && log.contains("tag HEAD") && log.contains("tag TAIL"),
        "the fast-commit area should hold a commit:\n{log}"
    );
    assert_refused(
        &dirty,
        ErrorKind::Unsupported,
        &[
            "fast-commit",
            "not supported",
            "e2fsck -E journal_only",
            "copy",
        ],
    );

    // The way out named in the message works: e2fsck replays the fast
    // commit on a copy, and the file it carried is there.
    let fixed = dir.join("fixed.img");
    e2fsck_replay(&dirty, &fixed);
    assert!(!has_needs_recovery(&fixed));
    let (code, out) = e2fsck_check(&fixed);
    assert_eq!(code, 0, "{out}");
    let cat = run("debugfs", &["-R", "cat /b", fixed.to_str().unwrap()]);
    assert_eq!(cat.stdout, b"fast commit\n");
}
