//! Journal replay on logs written by the test itself into real mkfs.ext4
//! images, judged by `e2fsck -E journal_only` on the same bytes.
//!
//! This covers the formats the running kernel does not produce on demand
//! (32-bit tags, checksum v1 and v2, async commit, escaped blocks, revokes
//! across transactions, a log that wraps, corrupt commits) and hostile
//! journals (loops, impossible sizes, tags pointing anywhere). Needs
//! mkfs.ext4, debugfs and e2fsck, not root.

mod common;

use std::path::Path;
use std::sync::Arc;

use common::synth::*;
use common::*;
use rescue_ext4::{plan_replay, replay, ErrorKind, MemDevice, ReplayPlan};
use rescue_io::Device;

const TOOLS: &[&str] = &["mkfs.ext4", "debugfs", "e2fsck"];

fn mem(image: &[u8]) -> Device {
    #[allow(clippy::arc_with_non_send_sync)]
    let d: Device = Arc::new(MemDevice::new(image.to_vec(), "synthetic.img"));
    d
}

/// Replays `s` with our code and with e2fsck, asserts identical results
/// (except the volatile superblock fields), `e2fsck -fn` clean on ours, and
/// returns our plan.
fn replay_matches_e2fsck(dir: &Path, name: &str, s: &Synth) -> ReplayPlan {
    let dirty = dir.join(format!("{name}.dirty.img"));
    s.save(&dirty);
    let dev = mem(&s.image);
    let plan = plan_replay(&*dev)
        .unwrap_or_else(|e| panic!("{name}: {e}"))
        .expect("needs recovery");
    let ours = dir.join(format!("{name}.ours.img"));
    let replayed = replay(dev).unwrap();
    write_out(&*replayed.device, &ours);
    // Replaying into a copy of the device gives the overlay's bytes.
    let copy = MemDevice::new(s.image.clone(), "copy");
    plan.write_into(&copy).unwrap();
    assert!(
        copy.to_vec() == read_file(&ours),
        "{name}: write_into differs from the overlay"
    );
    let theirs = dir.join(format!("{name}.e2fsck.img"));
    e2fsck_replay(&dirty, &theirs);
    let diffs = diff_images(&ours, &theirs);
    if !diffs.is_empty() && std::env::var("KEEP").is_ok() {
        let keep = std::env::temp_dir().join(format!("ext4-{name}"));
        std::fs::create_dir_all(&keep).unwrap();
        for f in [&dirty, &ours, &theirs] {
            std::fs::copy(f, keep.join(f.file_name().unwrap())).unwrap();
        }
    }
    assert!(
        diffs.is_empty(),
        "{name}: our replay differs from e2fsck's at {} byte(s), first at {:#x} (block {}); notes {:?}",
        diffs.len(),
        diffs[0],
        diffs[0] / s.bs as u64,
        plan.notes
    );
    plan
}

/// Blocks near the end of the filesystem: plain data blocks, unused.
fn targets(s: &Synth, n: u64) -> Vec<u64> {
    let end = s.blocks_count();
    (0..n).map(|i| end - 2 - i).collect()
}

fn block_of(byte: u8, bs: usize, magic_first: bool) -> Vec<u8> {
    let mut b: Vec<u8> = (0..bs).map(|i| byte ^ (i as u8).wrapping_mul(31)).collect();
    if magic_first {
        b[..4].copy_from_slice(&MAGIC.to_be_bytes());
    }
    b
}

/// Three-plus transactions exercising escapes, several descriptors per
/// transaction, rewrites and revokes that do and do not cancel writes.
fn standard_log(s: &Synth) -> (Vec<Txn>, Vec<(u64, Vec<u8>)>) {
    let t = targets(s, 5);
    let bs = s.bs;
    let (a, b, c, d, e) = (t[0], t[1], t[2], t[3], t[4]);
    let txn1 = Txn::new(vec![
        (a, block_of(1, bs, false)),
        (b, block_of(2, bs, true)),
        (c, block_of(3, bs, false)),
        (e, block_of(4, bs, false)),
    ]);
    let mut txn2 = Txn::new(vec![(b, block_of(5, bs, false))]);
    txn2.revokes = vec![c];
    let mut txn3 = Txn::new(vec![(d, block_of(6, bs, true))]);
    txn3.revokes = vec![a, e];
    // Written again after its revoke: this copy must survive.
    let txn4 = Txn::new(vec![(e, block_of(7, bs, false))]);
    let expect = vec![
        (b, block_of(5, bs, false)),
        (d, block_of(6, bs, true)),
        (e, block_of(7, bs, false)),
    ];
    (vec![txn1, txn2, txn3, txn4], expect)
}

#[test]
fn every_tag_format_and_checksum_version_matches_e2fsck() {
    if !have_tools(
        "every_tag_format_and_checksum_version_matches_e2fsck",
        TOOLS,
    ) {
        return;
    }
    let dir = tempfile::tempdir().unwrap();
    let formats: &[(&str, u32, u32)] = &[
        ("plain32", 0, INCOMPAT_REVOKE),
        ("plain64", 0, INCOMPAT_REVOKE | INCOMPAT_64BIT),
        ("v1-32", COMPAT_CHECKSUM, INCOMPAT_REVOKE),
        ("v1-64", COMPAT_CHECKSUM, INCOMPAT_REVOKE | INCOMPAT_64BIT),
        ("v2-32", 0, INCOMPAT_REVOKE | INCOMPAT_CSUM_V2),
        (
            "v2-64",
            0,
            INCOMPAT_REVOKE | INCOMPAT_CSUM_V2 | INCOMPAT_64BIT,
        ),
        ("v3-32", 0, INCOMPAT_REVOKE | INCOMPAT_CSUM_V3),
        (
            "v3-64",
            0,
            INCOMPAT_REVOKE | INCOMPAT_CSUM_V3 | INCOMPAT_64BIT,
        ),
        (
            "v3-64-async",
            0,
            INCOMPAT_REVOKE | INCOMPAT_CSUM_V3 | INCOMPAT_64BIT | INCOMPAT_ASYNC_COMMIT,
        ),
    ];
    for block_size in ["1024", "4096"] {
        let base = Synth::from_mkfs(dir.path(), 16 << 20, &["-b", block_size, "-J", "size=4"]);
        for &(name, compat, incompat) in formats {
            let name = format!("{name}-{block_size}");
            let mut s = Synth {
                image: base.image.clone(),
                bs: base.bs,
                journal: base.journal.clone(),
                compat: 0,
                incompat: 0,
                last: base.last,
            };
            s.set_features(compat, incompat);
            let (txns, expect) = standard_log(&s);
            // Two tags per descriptor: transaction 1 needs two descriptors.
            s.write_log(1, 7, &txns, 2);
            let plan = replay_matches_e2fsck(dir.path(), &name, &s);
            assert_eq!(plan.transactions, 4, "{name}");
            assert_eq!(plan.first_transaction, 7, "{name}");
            assert_eq!(plan.next_sequence, 12, "{name}");
            // a (txn 1) and c (txn 1) and e (txn 1) are revoked.
            assert_eq!(plan.blocks_revoked, 3, "{name}");
            assert_eq!(plan.blocks_replayed, 4, "{name}");
            let escaped = plan.writes.iter().filter(|w| {
                matches!(
                    w.source,
                    rescue_ext4::WriteSource::Journal { escaped: true, .. }
                )
            });
            assert_eq!(escaped.count(), 1, "{name}: the magic-first block of txn 3");
            let dev = mem(&s.image);
            let replayed = replay(dev).unwrap();
            for (block, data) in &expect {
                let mut got = vec![0u8; s.bs];
                replayed
                    .device
                    .read_exact_at(block * s.bs as u64, &mut got)
                    .unwrap();
                assert_eq!(&got, data, "{name}: block {block}");
            }
        }
    }
}

#[test]
fn log_wrapping_round_the_journal_end_matches_e2fsck() {
    if !have_tools("log_wrapping_round_the_journal_end_matches_e2fsck", TOOLS) {
        return;
    }
    let dir = tempfile::tempdir().unwrap();
    for incompat in [
        INCOMPAT_REVOKE | INCOMPAT_CSUM_V3 | INCOMPAT_64BIT,
        INCOMPAT_REVOKE,
    ] {
        let mut s = Synth::from_mkfs(dir.path(), 16 << 20, &["-b", "4096", "-J", "size=4"]);
        s.set_features(0, incompat);
        let (txns, _) = standard_log(&s);
        let start = s.last - 4;
        let end = s.write_log(start, 0xffff_fffe, &txns, 2);
        assert!(end < start, "the synthetic log must wrap");
        let plan = replay_matches_e2fsck(dir.path(), &format!("wrap-{incompat:x}"), &s);
        assert!(plan.log_wrapped);
        assert_eq!(plan.transactions, 4);
        // Sequence numbers wrapped past 2^32 too.
        assert_eq!(plan.next_sequence, 3);
    }
}

#[test]
fn bad_commit_checksums_end_the_log_like_e2fsck() {
    if !have_tools("bad_commit_checksums_end_the_log_like_e2fsck", TOOLS) {
        return;
    }
    let dir = tempfile::tempdir().unwrap();
    // name, compat, incompat, error flag set afterwards. With checksum v1
    // and async_commit the kernel still records a failed commit when the
    // next commit block is reached (`j_failed_commit` in the v1 branch).
    let cases: &[(&str, u32, u32, bool)] = &[
        (
            "v3-sync",
            0,
            INCOMPAT_REVOKE | INCOMPAT_CSUM_V3 | INCOMPAT_64BIT,
            true,
        ),
        (
            "v3-async",
            0,
            INCOMPAT_REVOKE | INCOMPAT_CSUM_V3 | INCOMPAT_64BIT | INCOMPAT_ASYNC_COMMIT,
            false,
        ),
        ("v1", COMPAT_CHECKSUM, INCOMPAT_REVOKE, true),
        (
            "v1-async",
            COMPAT_CHECKSUM,
            INCOMPAT_REVOKE | INCOMPAT_ASYNC_COMMIT,
            true,
        ),
    ];
    for &(name, compat, incompat, error_flag) in cases {
        let mut s = Synth::from_mkfs(dir.path(), 16 << 20, &["-b", "4096", "-J", "size=4"]);
        s.set_features(compat, incompat);
        let (mut txns, _) = standard_log(&s);
        txns[1].commit = Commit::BadChecksum;
        s.write_log(1, 100, &txns, 8);
        let plan = replay_matches_e2fsck(dir.path(), name, &s);
        // Only the transaction before the bad commit is replayed.
        assert_eq!(plan.transactions, 1, "{name}: {:?}", plan.notes);
        let state = u16::from_le_bytes([plan.superblock[0x3a], plan.superblock[0x3b]]);
        assert_eq!(state & 2 != 0, error_flag, "{name}: error flag");
    }
}

#[test]
fn torn_commit_tail_is_accepted_like_the_kernel() {
    if !have_tools("torn_commit_tail_is_accepted_like_the_kernel", TOOLS) {
        return;
    }
    let dir = tempfile::tempdir().unwrap();
    let mut s = Synth::from_mkfs(dir.path(), 16 << 20, &["-J", "size=4"]);
    s.set_features(0, INCOMPAT_REVOKE | INCOMPAT_CSUM_V3 | INCOMPAT_64BIT);
    let (mut txns, _) = standard_log(&s);
    txns[1].commit = Commit::TornTail;
    s.write_log(1, 1, &txns, 8);
    let plan = plan_replay(&*mem(&s.image)).unwrap().unwrap();
    // Recent kernels accept the commit (e2fsprogs 1.47.0 stops at it; the
    // kernel-mount comparison is in tests/kernel.rs).
    assert_eq!(plan.transactions, 4);
    assert_eq!(plan.failed_commit, None);
    assert!(
        plan.notes.iter().any(|n| n.contains("torn")),
        "{:?}",
        plan.notes
    );
}

#[test]
fn incomplete_transaction_is_not_replayed() {
    if !have_tools("incomplete_transaction_is_not_replayed", TOOLS) {
        return;
    }
    let dir = tempfile::tempdir().unwrap();
    let mut s = Synth::from_mkfs(dir.path(), 16 << 20, &["-J", "size=4"]);
    s.set_features(0, INCOMPAT_REVOKE | INCOMPAT_CSUM_V3 | INCOMPAT_64BIT);
    let (mut txns, _) = standard_log(&s);
    txns[3].commit = Commit::Missing;
    s.write_log(1, 1, &txns, 8);
    let plan = replay_matches_e2fsck(dir.path(), "incomplete", &s);
    assert_eq!(plan.transactions, 3);
    assert_eq!(plan.next_sequence, 5);
}

#[test]
fn corrupt_data_block_is_skipped_and_forces_a_full_check_like_e2fsck() {
    if !have_tools(
        "corrupt_data_block_is_skipped_and_forces_a_full_check_like_e2fsck",
        TOOLS,
    ) {
        return;
    }
    let dir = tempfile::tempdir().unwrap();
    let mut s = Synth::from_mkfs(dir.path(), 16 << 20, &["-J", "size=4"]);
    s.set_features(0, INCOMPAT_REVOKE | INCOMPAT_CSUM_V3 | INCOMPAT_64BIT);
    let (txns, _) = standard_log(&s);
    s.write_log(1, 1, &txns, 8);
    // Journal block 3 holds txn 1's second data block (b): spoil it.
    let phys = s.journal[3] as usize;
    s.image[phys * s.bs + 100] ^= 0xff;
    let plan = replay_matches_e2fsck(dir.path(), "bad-data", &s);
    assert!(plan.needs_full_check);
    let state = u16::from_le_bytes([plan.superblock[0x3a], plan.superblock[0x3b]]);
    assert_eq!(state & 1, 0, "the valid flag is cleared, as e2fsck does");
}

#[test]
fn superblock_in_the_log_is_replayed_then_cleaned() {
    if !have_tools("superblock_in_the_log_is_replayed_then_cleaned", TOOLS) {
        return;
    }
    let dir = tempfile::tempdir().unwrap();
    for bs in ["1024", "4096"] {
        let mut s = Synth::from_mkfs(
            dir.path(),
            16 << 20,
            &["-b", bs, "-J", "size=4", "-O", "metadata_csum,64bit"],
        );
        s.set_features(0, INCOMPAT_REVOKE | INCOMPAT_CSUM_V3 | INCOMPAT_64BIT);
        let sb_block = if s.bs == 1024 { 1 } else { 0 };
        let mut logged = s.block(sb_block).to_vec();
        let at = if s.bs == 1024 { 0 } else { 1024 };
        logged[at + 0x78..at + 0x78 + 8].copy_from_slice(b"replayed");
        // The kernel logs the superblock with needs_recovery set.
        logged[at + 0x60] |= 4;
        let c = crc32c_bitwise(!0, &logged[at..at + 0x3fc]);
        logged[at + 0x3fc..at + 0x400].copy_from_slice(&c.to_le_bytes());
        s.write_log(1, 1, &[Txn::new(vec![(sb_block, logged)])], 8);
        let plan = replay_matches_e2fsck(dir.path(), &format!("sb-{bs}"), &s);
        assert_eq!(&plan.superblock[0x78..0x80], b"replayed");
        assert_eq!(plan.superblock[0x60] & 4, 0);
        // Written twice: the replayed copy first, the cleaned one last.
        assert_eq!(plan.writes.first().unwrap().block_number, sb_block);
        assert_eq!(plan.writes.last().unwrap().block_number, sb_block);
    }
}

#[test]
fn clean_and_empty_logs() {
    if !have_tools("clean_and_empty_logs", TOOLS) {
        return;
    }
    let dir = tempfile::tempdir().unwrap();
    let s = Synth::from_mkfs(dir.path(), 16 << 20, &["-J", "size=4"]);
    let dev = mem(&s.image);
    assert!(!rescue_ext4::needs_recovery(&*dev).unwrap());
    let r = replay(dev.clone()).unwrap();
    assert!(
        Arc::ptr_eq(&r.device, &dev),
        "a clean filesystem is returned as is"
    );
    assert_eq!((r.transactions, r.blocks_replayed), (0, 0));
    // needs_recovery with an empty log (s_start 0): only the flags change,
    // and the sequence moves on by one, as e2fsck does.
    let mut s = s;
    s.set_needs_recovery(true);
    let plan = replay_matches_e2fsck(dir.path(), "empty-log", &s);
    assert_eq!(plan.transactions, 0);
    assert_eq!(plan.replayed_writes, 0);
    assert_eq!(plan.next_sequence, s.jsb_u32(0x18) + 1);
}

#[test]
fn journal_inode_backup_in_the_superblock_is_used() {
    if !have_tools("journal_inode_backup_in_the_superblock_is_used", TOOLS) {
        return;
    }
    let dir = tempfile::tempdir().unwrap();
    let mut s = Synth::from_mkfs(dir.path(), 16 << 20, &["-J", "size=4"]);
    s.set_features(0, INCOMPAT_REVOKE | INCOMPAT_CSUM_V3 | INCOMPAT_64BIT);
    let (txns, expect) = standard_log(&s);
    s.write_log(1, 1, &txns, 8);
    let good = plan_replay(&*mem(&s.image)).unwrap().unwrap();
    // Wipe inode 8's i_block (inode table location from debugfs).
    let path = dir.path().join("backup.img");
    s.save(&path);
    let out = stdout(&run("debugfs", &["-R", "imap <8>", path.to_str().unwrap()]));
    let (block, offset) = parse_imap(&out);
    let at = block as usize * s.bs + offset as usize + 40;
    s.image[at..at + 60].fill(0);
    let plan = plan_replay(&*mem(&s.image)).unwrap().unwrap();
    assert!(
        plan.notes.iter().any(|n| n.contains("s_jnl_blocks")),
        "{:?}",
        plan.notes
    );
    assert_eq!(plan.writes, good.writes);
    let r = replay(mem(&s.image)).unwrap();
    for (block, data) in &expect {
        let mut got = vec![0u8; s.bs];
        r.device
            .read_exact_at(block * s.bs as u64, &mut got)
            .unwrap();
        assert_eq!(&got, data);
    }
}

/// `debugfs imap` output: "located at block 1234, offset 0x0700".
fn parse_imap(out: &str) -> (u64, u64) {
    let rest = out.split("located at block ").nth(1).expect(out);
    let (block, rest) = rest.split_once(", offset ").unwrap();
    let offset = rest.trim().trim_start_matches("0x");
    (
        block.parse().unwrap(),
        u64::from_str_radix(offset, 16).unwrap(),
    )
}

/// Hostile journals: each is a clear error, never a panic or a hang.
#[test]
fn hostile_journals_are_errors() {
    if !have_tools("hostile_journals_are_errors", TOOLS) {
        return;
    }
    let dir = tempfile::tempdir().unwrap();
    let fresh = || {
        let mut s = Synth::from_mkfs(dir.path(), 16 << 20, &["-J", "size=4"]);
        s.set_features(0, INCOMPAT_REVOKE | INCOMPAT_CSUM_V3 | INCOMPAT_64BIT);
        s
    };
    let expect_err = |s: &Synth, kind: ErrorKind, needle: &str| {
        let err = plan_replay(&*mem(&s.image)).expect_err(needle);
        assert_eq!(err.kind(), kind, "{err}");
        assert!(err.to_string().contains(needle), "{err}");
        // The same through the public replay entry point.
        assert!(replay(mem(&s.image)).is_err());
    };

    // s_maxlen larger than the journal inode.
    let mut s = fresh();
    s.write_log(
        1,
        1,
        &[Txn::new(vec![(targets(&s, 1)[0], vec![1; s.bs])])],
        8,
    );
    s.set_jsb_u32(0x10, u32::MAX);
    expect_err(&s, ErrorKind::Corrupt, "journal too short");

    // s_start outside the log.
    let mut s = fresh();
    s.write_log(
        1,
        1,
        &[Txn::new(vec![(targets(&s, 1)[0], vec![1; s.bs])])],
        8,
    );
    s.set_jsb_u32(0x1c, 5000);
    expect_err(&s, ErrorKind::Corrupt, "s_start");

    // Unknown incompatible feature, shared journal.
    let mut s = fresh();
    s.set_features(0, INCOMPAT_REVOKE | 0x8000);
    s.write_log(1, 1, &[], 8);
    expect_err(&s, ErrorKind::Unsupported, "unknown incompatible");
    let mut s = fresh();
    s.write_log(1, 1, &[], 8);
    s.set_jsb_u32(0x40, 2);
    expect_err(&s, ErrorKind::Unsupported, "shared");

    // A tag naming a block beyond the filesystem, and one inside the journal.
    let mut s = fresh();
    let beyond = s.blocks_count() + 10;
    s.write_log(1, 1, &[Txn::new(vec![(beyond, vec![1; s.bs])])], 8);
    expect_err(&s, ErrorKind::Corrupt, "beyond the end of the filesystem");
    let mut s = fresh();
    let inside = s.journal[500];
    s.write_log(1, 1, &[Txn::new(vec![(inside, vec![1; s.bs])])], 8);
    expect_err(&s, ErrorKind::Corrupt, "belongs to the journal itself");

    // A revoke block whose r_count exceeds the block.
    let mut s = fresh();
    let mut t = Txn::new(vec![(targets(&s, 1)[0], vec![1; s.bs])]);
    t.revokes = vec![1, 2, 3];
    s.write_log(1, 1, &[t], 8);
    let phys = s.journal[1] as usize * s.bs;
    s.image[phys + 12..phys + 16].copy_from_slice(&0x10_0000u32.to_be_bytes());
    // Checksum v3: the spoiled revoke block fails its tail checksum, which
    // with a later commit time is a checksum error (the kernel refuses).
    expect_err(&s, ErrorKind::Corrupt, "checksum");
    let mut s = fresh();
    s.set_features(0, INCOMPAT_REVOKE);
    let mut t = Txn::new(vec![(targets(&s, 1)[0], vec![1; s.bs])]);
    t.revokes = vec![1, 2, 3];
    s.write_log(1, 1, &[t], 8);
    let phys = s.journal[1] as usize * s.bs;
    s.image[phys + 12..phys + 16].copy_from_slice(&0x10_0000u32.to_be_bytes());
    expect_err(&s, ErrorKind::Corrupt, "r_count");

    // A log that never ends: every block a descriptor of the same
    // transaction whose single tag skips one block, all round the ring.
    let mut s = fresh();
    s.set_features(0, INCOMPAT_REVOKE);
    s.write_log(1, 1, &[], 8);
    let bs = s.bs;
    for pos in 1..s.last as usize {
        let phys = s.journal[pos] as usize * bs;
        let b = &mut s.image[phys..phys + bs];
        b.fill(0);
        b[..4].copy_from_slice(&MAGIC.to_be_bytes());
        b[4..8].copy_from_slice(&1u32.to_be_bytes());
        b[8..12].copy_from_slice(&1u32.to_be_bytes());
        // Tag: block 100, flags LAST_TAG (32-bit, no checksum: 8 bytes).
        b[12..16].copy_from_slice(&100u32.to_be_bytes());
        b[18..20].copy_from_slice(&8u16.to_be_bytes());
    }
    let started = std::time::Instant::now();
    expect_err(&s, ErrorKind::Corrupt, "runs round the whole journal");
    assert!(started.elapsed().as_secs() < 20);

    // A descriptor packed with the most tags a block holds, all for one
    // block and never LAST_TAG: bounded work, replayed normally.
    let mut s = fresh();
    s.set_features(0, INCOMPAT_REVOKE);
    let target = targets(&s, 1)[0];
    let blocks: Vec<(u64, Vec<u8>)> = (0..2000).map(|i| (target, vec![i as u8; s.bs])).collect();
    s.write_log(1, 1, &[Txn::new(blocks)], usize::MAX);
    let plan = plan_replay(&*mem(&s.image)).unwrap().unwrap();
    assert_eq!(plan.blocks_replayed, 2000);
    assert_eq!(plan.replayed_writes, 1);

    // External journal, journal device.
    let mut s = fresh();
    s.write_log(1, 1, &[], 8);
    s.image[1024 + 0xe0..1024 + 0xe4].fill(0);
    s.image[1024 + 0xd0] = 0x42;
    s.fix_fs_checksum();
    expect_err(&s, ErrorKind::Unsupported, "external device");
    let mut s = fresh();
    s.image[1024 + 0x60] |= 0x8;
    s.fix_fs_checksum();
    expect_err(&s, ErrorKind::Unsupported, "external jbd2 journal device");

    // Journal superblock checksum wrong.
    let mut s = fresh();
    s.write_log(1, 1, &[], 8);
    let o = s.jsb_offset() + 0xfc;
    s.image[o] ^= 1;
    expect_err(&s, ErrorKind::Corrupt, "journal superblock checksum");

    // A v1 journal superblock: feature words are ignored.
    let mut s = fresh();
    s.set_features(0, INCOMPAT_REVOKE);
    let (txns, _) = standard_log(&s);
    s.write_log(1, 1, &txns, 8);
    s.set_jsb_u32(4, 3);
    let plan = plan_replay(&*mem(&s.image)).unwrap().unwrap();
    assert_eq!(plan.transactions, 4);
}
