//! Journal replay on filesystems made dirty by the real kernel.
//!
//! Each test formats an image with mkfs.ext4, mounts it through a loop
//! device, writes files, `sync`s and copies the image while it is still
//! mounted: the copy has `needs_recovery` set and a live journal, exactly
//! like a crash-consistent VM snapshot. Our in-memory replay is then judged
//! by three oracles:
//!
//! * `e2fsck -E journal_only` on another copy: the images must be identical
//!   except for the superblock's write time, lifetime-writes counter and
//!   checksum (e2fsck stamps its own run into them);
//! * `e2fsck -fn` on the image written out from our overlay: clean;
//! * the kernel itself: mounting a dirty copy (the kernel replays) and our
//!   result must show the same files, contents and metadata; and the files
//!   the workload wrote (fixed inputs) read back through `debugfs rdump`,
//!   including the one changed just before the copy.
//!
//! Needs root, loop devices and the kernel ext4 driver.

mod common;

use std::collections::BTreeMap;
use std::os::unix::fs::MetadataExt;
use std::path::Path;
use std::sync::Arc;

use common::dirty::{make_dirty, put, Dirty, Expected, Profile, DEFAULT};
use common::*;
use rescue_ext4::{plan_replay, replay, ErrorKind, ReplayPlan, WriteSource};
use rescue_io::{BlockRead, Device};

/// Contents and metadata of every file under a mounted tree.
fn snapshot(root: &Path) -> BTreeMap<String, String> {
    let mut out = BTreeMap::new();
    for (rel, contents) in tree(root) {
        let path = root.join(rel.trim_end_matches(['/', '@']));
        let md = std::fs::symlink_metadata(&path).unwrap();
        let digest = contents.iter().fold(0xcbf2_9ce4_8422_2325u64, |h, &b| {
            (h ^ u64::from(b)).wrapping_mul(0x100_0000_01b3)
        });
        out.insert(
            rel,
            format!(
                "mode {:o} uid {} gid {} size {} nlink {} mtime {}.{:09} ctime {}.{:09} ino {} fnv {digest:016x}",
                md.mode(),
                md.uid(),
                md.gid(),
                md.size(),
                md.nlink(),
                md.mtime(),
                md.mtime_nsec(),
                md.ctime(),
                md.ctime_nsec(),
                md.ino()
            ),
        );
    }
    out
}

/// Mounts `image` read-only (the kernel replays a dirty journal) and
/// returns its snapshot.
fn kernel_view(image: &Path, dir: &Path, fstype: &str) -> BTreeMap<String, String> {
    let m = Mounted::new(image, dir, fstype, "ro");
    let s = snapshot(&m.dir);
    m.unmount();
    s
}

/// Our replay of `dirty`, written out to `ours`.
fn our_replay(dirty: &Path, ours: &Path) -> ReplayPlan {
    let dev = open(dirty);
    assert!(
        rescue_ext4::needs_recovery(&*dev).unwrap(),
        "the copy must be dirty"
    );
    let plan = plan_replay(&*dev).unwrap().expect("needs recovery");
    let replayed = replay(dev).unwrap();
    assert_eq!(replayed.transactions, plan.transactions);
    write_out(&*replayed.device, ours);
    plan
}

/// Every oracle on one dirty image.
fn verify(d: &Dirty, fstype: &str, what: &str) -> ReplayPlan {
    let ours = d.dir.join("ours.img");
    let plan = our_replay(&d.dirty, &ours);
    assert!(
        plan.transactions > 0,
        "{what}: the copy should hold committed transactions"
    );
    eprintln!(
        "{what}: {} transactions, {} blocks replayed, {} revoked ({} revoke records), {} log blocks, wrapped {}",
        plan.transactions, plan.blocks_replayed, plan.blocks_revoked, plan.revoke_records,
        plan.log_blocks_scanned, plan.log_wrapped
    );

    // (a) identical to e2fsck's replay but for the volatile superblock fields.
    let theirs = d.dir.join("e2fsck.img");
    e2fsck_replay(&d.dirty, &theirs);
    let diffs = diff_images(&ours, &theirs);
    assert!(
        diffs.is_empty(),
        "{what}: {} byte(s) differ from e2fsck -E journal_only, first at {:#x}",
        diffs.len(),
        diffs[0]
    );

    // Replaying into a copy of the device writes exactly the same bytes.
    let written = d.dir.join("written.img");
    copy_sparse(&d.dirty, &written);
    let rw = rescue_io::RawFile::open_read_write(&written).unwrap();
    plan.write_into(&rw).unwrap();
    drop(rw);
    assert!(
        read_file(&written) == read_file(&ours),
        "{what}: write_into differs from the overlay"
    );

    // (b) e2fsck -fn finds nothing wrong.
    let (code, out) = e2fsck_check(&ours);
    assert_eq!(code, 0, "{what}: e2fsck -fn on our replay:\n{out}");

    // (c) the files the workload wrote, including the last change.
    let dumped = rdump(&ours, &d.dir.join("rdump"));
    assert_eq!(
        dumped.keys().collect::<Vec<_>>(),
        d.expected.keys().collect::<Vec<_>>(),
        "{what}: file list"
    );
    for (k, v) in &d.expected {
        assert!(dumped[k] == *v, "{what}: contents of {k}");
    }

    // The journal mattered: without replay, last.txt is not the new one.
    let cat = try_run(
        "debugfs",
        &["-R", "cat /last.txt", d.dirty.to_str().unwrap()],
    );
    assert_ne!(
        cat.stdout, d.expected["last.txt"],
        "{what}: the dirty copy already had the change"
    );

    // The kernel's own replay shows the same files with the same metadata.
    let kernel_copy = d.dir.join("kernel.img");
    copy_sparse(&d.dirty, &kernel_copy);
    let kernel = kernel_view(&kernel_copy, &d.dir.join("kmnt"), fstype);
    let mine = kernel_view(&ours, &d.dir.join("omnt"), fstype);
    assert_eq!(kernel, mine, "{what}: kernel replay vs ours");
    // After a read-only mount the kernel leaves the journal's sequence at
    // the transaction after the last one it replayed: the same as ours.
    assert_eq!(
        journal_sequence(&kernel_copy),
        plan.next_sequence,
        "{what}: replay extent"
    );
    plan
}

/// The journal superblock's `s_sequence`, from `dumpe2fs -h`.
fn journal_sequence(image: &Path) -> u32 {
    let out = stdout(&run("dumpe2fs", &["-h", image.to_str().unwrap()]));
    let line = out
        .lines()
        .find(|l| l.starts_with("Journal sequence:"))
        .unwrap_or_else(|| panic!("dumpe2fs shows no journal sequence:\n{out}"));
    let hex = line.rsplit("0x").next().unwrap().trim();
    u32::from_str_radix(hex, 16).unwrap()
}

fn profile_test(p: &Profile) -> Option<ReplayPlan> {
    if !have_kernel_ext4(p.name) {
        return None;
    }
    let d = make_dirty(p);
    Some(verify(&d, p.fstype, p.name))
}

#[test]
fn ext4_default_metadata_csum_64bit() {
    let Some(plan) = profile_test(&DEFAULT) else {
        return;
    };
    // rm -rf of a directory whose blocks were journaled earlier in the log.
    assert!(plan.revoke_records > 0, "revoke records expected");
    assert!(plan.blocks_revoked > 0, "revoked blocks expected");
}

#[test]
fn ext4_without_metadata_csum() {
    profile_test(&Profile {
        name: "ext4-nocsum",
        mkfs: &["-b", "4096", "-O", "^metadata_csum,uninit_bg"],
        ..DEFAULT
    });
}

#[test]
fn ext4_journal_checksum_v1() {
    // Without metadata_csum, `journal_checksum` makes the kernel use
    // checksum v1 (COMPAT_CHECKSUM, crc32_be over each transaction).
    profile_test(&Profile {
        name: "ext4-jcsum-v1",
        mkfs: &["-b", "4096", "-O", "^metadata_csum,uninit_bg"],
        mount: "journal_checksum",
        ..DEFAULT
    });
}

#[test]
fn ext4_journal_async_commit() {
    profile_test(&Profile {
        name: "ext4-async",
        mkfs: &["-b", "4096", "-O", "^metadata_csum,uninit_bg"],
        mount: "journal_async_commit,data=writeback",
        ..DEFAULT
    });
}

#[test]
fn ext3_indirect_journal_32bit_tags() {
    profile_test(&Profile {
        name: "ext3",
        mkfs: &["-t", "ext3", "-b", "4096"],
        fstype: "ext3",
        ..DEFAULT
    });
}

#[test]
fn ext4_1k_blocks() {
    profile_test(&Profile {
        name: "ext4-1k",
        mkfs: &["-b", "1024"],
        ..DEFAULT
    });
}

#[test]
fn ext4_without_64bit() {
    profile_test(&Profile {
        name: "ext4-no64bit",
        mkfs: &["-b", "4096", "-O", "^64bit"],
        ..DEFAULT
    });
}

#[test]
fn ext4_data_journal_escaped_blocks() {
    let p = Profile {
        name: "ext4-data-journal",
        mount: "data=journal",
        magic_file: true,
        ..DEFAULT
    };
    let Some(plan) = profile_test(&p) else { return };
    let escaped = plan
        .writes
        .iter()
        .filter(|w| matches!(w.source, WriteSource::Journal { escaped: true, .. }))
        .count();
    assert!(
        escaped > 0,
        "the magic-first data block must be logged escaped"
    );
}

#[test]
fn small_journal_wrapping_log() {
    let name = "small-journal-wrap";
    if !have_kernel_ext4(name) {
        return;
    }
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path().to_path_buf();
    let dir = dir.as_path();
    let image = dir.join("live.img");
    std::fs::File::create(&image)
        .unwrap()
        .set_len(64 << 20)
        .unwrap();
    run(
        "mkfs.ext4",
        &[
            "-q",
            "-F",
            "-b",
            "4096",
            "-J",
            "size=4",
            image.to_str().unwrap(),
        ],
    );
    let m = Mounted::new(&image, &dir.join("mnt"), "ext4", "");
    let mut exp = Expected::new();
    let mut rng = XorShift(7);
    let dirty = dir.join("dirty.img");
    let mut found = false;
    // Keep committing until a snapshot catches the live log straddling the
    // end of the 1024-block journal.
    for round in 0..150 {
        let d = format!("d{round:03}");
        std::fs::create_dir(m.path(&d)).unwrap();
        exp.insert(format!("{d}/"), Vec::new());
        for i in 0..8 {
            put(&mut exp, &m, &format!("{d}/f{i}"), rng.bytes(100 + i * 10));
        }
        put(
            &mut exp,
            &m,
            "last.txt",
            format!("round {round}\n").into_bytes(),
        );
        // fsync only: the metadata stays in the journal until checkpointed.
        let files: Vec<String> = (0..8)
            .map(|i| m.path(&format!("{d}/f{i}")).to_str().unwrap().to_string())
            .chain(
                [m.path("last.txt"), m.path(&d), m.dir.clone()]
                    .iter()
                    .map(|p| p.to_str().unwrap().to_string()),
            )
            .collect();
        run(
            "sync",
            &files.iter().map(String::as_str).collect::<Vec<_>>(),
        );
        copy_sparse(&image, &dirty);
        let plan = plan_replay(&*open(&dirty)).unwrap();
        if plan.is_some_and(|p| p.log_wrapped && p.transactions > 1) {
            found = true;
            break;
        }
    }
    m.unmount();
    assert!(found, "no snapshot caught a wrapped log");
    let d = Dirty {
        _dir: tmp,
        dir: dir.to_path_buf(),
        dirty,
        expected: exp,
    };
    let plan = verify(&d, "ext4", name);
    assert!(plan.log_wrapped);
}

#[test]
fn clean_filesystem_is_a_no_op() {
    let name = "clean_filesystem_is_a_no_op";
    if !have_kernel_ext4(name) {
        return;
    }
    let tmp = tempfile::tempdir().unwrap();
    let image = tmp.path().join("clean.img");
    std::fs::File::create(&image)
        .unwrap()
        .set_len(64 << 20)
        .unwrap();
    run("mkfs.ext4", &["-q", "-F", image.to_str().unwrap()]);
    let m = Mounted::new(&image, &tmp.path().join("mnt"), "ext4", "");
    write(&m.path("a"), b"hello");
    m.unmount();
    let dev = open(&image);
    assert!(!rescue_ext4::needs_recovery(&*dev).unwrap());
    assert!(plan_replay(&*dev).unwrap().is_none());
    let r = replay(dev.clone()).unwrap();
    assert!(Arc::ptr_eq(&r.device, &dev));
    assert_eq!(
        (r.transactions, r.blocks_replayed, r.blocks_revoked),
        (0, 0, 0)
    );
}

/// `debugfs logdump` lines "Found expected sequence N, type 2 (commit
/// block) at block B" -> (N, B).
fn commit_blocks(image: &Path) -> Vec<(u32, u64)> {
    let out = stdout(&run("debugfs", &["-R", "logdump", image.to_str().unwrap()]));
    out.lines()
        .filter(|l| l.contains("type 2 (commit block)"))
        .map(|l| {
            let seq = l
                .split("sequence ")
                .nth(1)
                .unwrap()
                .split(',')
                .next()
                .unwrap();
            let block = l.rsplit(' ').next().unwrap();
            (seq.parse().unwrap(), block.parse().unwrap())
        })
        .collect()
}

/// Disk byte offset of journal block `n` (via `debugfs bmap`).
fn journal_block_offset(image: &Path, n: u64, block_size: u64) -> u64 {
    let cmd = format!("bmap <8> {n}");
    let out = stdout(&run("debugfs", &["-R", &cmd, image.to_str().unwrap()]));
    out.trim().parse::<u64>().unwrap() * block_size
}

fn flip(image: &Path, offset: u64) {
    use std::os::unix::fs::FileExt;
    let f = std::fs::OpenOptions::new()
        .read(true)
        .write(true)
        .open(image)
        .unwrap();
    let mut b = [0u8; 1];
    f.read_exact_at(&mut b, offset).unwrap();
    b[0] ^= 0xff;
    f.write_all_at(&b, offset).unwrap();
}

#[test]
fn corrupt_commit_block_behaves_like_the_kernel_and_e2fsck() {
    let name = "corrupt_commit_block";
    if !have_kernel_ext4(name) {
        return;
    }
    let d = make_dirty(&DEFAULT);
    let commits = commit_blocks(&d.dirty);
    assert!(commits.len() >= 2, "need two transactions: {commits:?}");
    let clean_plan = plan_replay(&*open(&d.dirty)).unwrap().unwrap();
    let (seq, jblock) = commits[1];
    let at = journal_block_offset(&d.dirty, jblock, 4096);

    // A flipped byte in the commit header: the checksum fails. The kernel
    // refuses to mount; e2fsck replays up to that transaction and flags
    // errors. We do what e2fsck does, byte for byte.
    let bad = d.dir.join("bad-header.img");
    copy_sparse(&d.dirty, &bad);
    flip(&bad, at + 0x39);
    let ours = d.dir.join("bad-header.ours.img");
    let plan = our_replay(&bad, &ours);
    assert_eq!(plan.failed_commit, Some(seq));
    assert_eq!(plan.transactions, seq - plan.first_transaction);
    let theirs = d.dir.join("bad-header.e2fsck.img");
    e2fsck_replay(&bad, &theirs);
    let diffs = diff_images(&ours, &theirs);
    assert!(
        diffs.is_empty(),
        "{} bytes differ from e2fsck, first at {:#x}",
        diffs.len(),
        diffs[0]
    );
    let kernel_copy = d.dir.join("bad-header.kernel.img");
    copy_sparse(&bad, &kernel_copy);
    let kdir = d.dir.join("kbad");
    std::fs::create_dir_all(&kdir).unwrap();
    let lo = stdout(&run(
        "losetup",
        &["-f", "--show", kernel_copy.to_str().unwrap()],
    ));
    let lo = lo.trim().to_string();
    let mounted = try_run("mount", &["-o", "ro", &lo, kdir.to_str().unwrap()]);
    if mounted.status.success() {
        let _ = try_run("umount", &[kdir.to_str().unwrap()]);
    }
    let _ = try_run("losetup", &["-d", &lo]);
    eprintln!(
        "kernel mount of the corrupt-commit copy: {}",
        if mounted.status.success() {
            "accepted"
        } else {
            "refused (journal transaction corrupt)"
        }
    );

    // A flipped byte after the 64-byte commit header: a torn commit block,
    // which recent kernels accept; we must show what the kernel shows.
    let torn = d.dir.join("torn.img");
    copy_sparse(&d.dirty, &torn);
    flip(&torn, at + 0x200);
    let ours = d.dir.join("torn.ours.img");
    let plan = our_replay(&torn, &ours);
    assert_eq!(plan.transactions, clean_plan.transactions);
    assert_eq!(plan.failed_commit, None);
    let kernel_copy = d.dir.join("torn.kernel.img");
    copy_sparse(&torn, &kernel_copy);
    let kernel = kernel_view(&kernel_copy, &d.dir.join("ktorn"), "ext4");
    let mine = kernel_view(&ours, &d.dir.join("otorn"), "ext4");
    assert_eq!(kernel, mine, "torn commit: kernel replay vs ours");
    assert_eq!(
        journal_sequence(&kernel_copy),
        plan.next_sequence,
        "torn commit: replay extent"
    );
}

#[test]
fn revoke_records_are_in_the_test_image() {
    let name = "revoke_records_are_in_the_test_image";
    if !have_kernel_ext4(name) {
        return;
    }
    let d = make_dirty(&DEFAULT);
    let out = stdout(&run(
        "debugfs",
        &["-R", "logdump", d.dirty.to_str().unwrap()],
    ));
    assert!(
        out.contains("(revoke table)"),
        "logdump shows no revoke block:\n{out}"
    );
    let plan = plan_replay(&*open(&d.dirty)).unwrap().unwrap();
    assert!(plan.revoke_records > 0 && plan.blocks_revoked > 0);
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
fn fast_commit_data_is_refused_and_stale_fast_commits_are_ignored() {
    let name = "fast_commit";
    if !have_kernel_ext4(name) {
        return;
    }
    if !have_fast_commit(name) {
        return;
    }
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path();
    let image = dir.join("fc.img");
    std::fs::File::create(&image)
        .unwrap()
        .set_len(64 << 20)
        .unwrap();
    run(
        "mkfs.ext4",
        &[
            "-q",
            "-F",
            "-b",
            "4096",
            "-O",
            "fast_commit",
            image.to_str().unwrap(),
        ],
    );
    let m = Mounted::new(&image, &dir.join("mnt"), "ext4", "");
    write(&m.path("a"), b"full commit\n");
    syncfs(&m.dir);
    // fsync of a small change goes to the fast-commit area.
    write(&m.path("b"), b"fast commit\n");
    run("sync", &[m.path("b").to_str().unwrap()]);
    let with_fc = dir.join("with-fc.img");
    copy_sparse(&image, &with_fc);
    // A full commit afterwards makes those fast commits stale.
    write(&m.path("c"), b"after\n");
    syncfs(&m.dir);
    let stale = dir.join("stale-fc.img");
    copy_sparse(&image, &stale);
    m.unmount();

    let out = stdout(&run(
        "debugfs",
        &["-R", "logdump", with_fc.to_str().unwrap()],
    ));
    assert!(
        out.contains("tag HEAD"),
        "the fast-commit area should hold a commit:\n{out}"
    );
    let err = replay(open(&with_fc)).expect_err("fast-commit data must be refused");
    assert_eq!(err.kind(), ErrorKind::Unsupported);
    assert!(
        err.to_string()
            .contains("fast-commit journal replay is not supported"),
        "{err}"
    );

    // Stale fast commits: replay like the kernel (e2fsprogs 1.47.0 errors
    // out on them, so the kernel is the oracle here).
    let ours = dir.join("stale.ours.img");
    let plan = our_replay(&stale, &ours);
    assert!(
        plan.notes.iter().any(|n| n.contains("stale")),
        "{:?}",
        plan.notes
    );
    let (code, out) = e2fsck_check(&ours);
    assert_eq!(code, 0, "{out}");
    let kernel_copy = dir.join("stale.kernel.img");
    copy_sparse(&stale, &kernel_copy);
    let kernel = kernel_view(&kernel_copy, &dir.join("kmnt"), "ext4");
    let mine = kernel_view(&ours, &dir.join("omnt"), "ext4");
    assert_eq!(kernel, mine);
    assert!(mine.contains_key("c"));
    assert_eq!(journal_sequence(&kernel_copy), plan.next_sequence);
}

#[test]
fn replay_reads_only_the_journal() {
    let name = "replay_reads_only_the_journal";
    if !have_kernel_ext4(name) {
        return;
    }
    let d = make_dirty(&DEFAULT);
    let counting = Counting::new(open(&d.dirty));
    let dev: Device = counting.clone();
    let started = std::time::Instant::now();
    let plan = plan_replay(&*dev).unwrap().unwrap();
    let elapsed = started.elapsed();
    let bs = u64::from(plan.block_size);
    let read = counting.total();
    eprintln!(
        "replay plan of a 64 MiB image: read {read} bytes ({} log blocks scanned, {} blocks replayed) in {elapsed:?}",
        plan.log_blocks_scanned, plan.blocks_replayed
    );
    // The log once, the data blocks once more for their checksums, plus a
    // handful of blocks: superblock, descriptor, inode, journal superblock.
    let bound = (plan.log_blocks_scanned + plan.blocks_replayed + 8) * bs;
    assert!(read <= bound, "read {read} bytes, expected at most {bound}");
}

/// A device that is an in-memory image plus a few patched bytes.
#[derive(Debug)]
struct Mutated {
    base: Arc<Vec<u8>>,
    patches: Vec<(u64, u8)>,
}

impl BlockRead for Mutated {
    fn size_in_bytes(&self) -> u64 {
        self.base.len() as u64
    }

    fn read_exact_at(&self, start_byte: u64, dst: &mut [u8]) -> rescue_io::Result<()> {
        let end = start_byte as usize + dst.len();
        let src = self.base.get(start_byte as usize..end).ok_or_else(|| {
            rescue_io::Error::new(rescue_io::ErrorKind::Truncated, "reading")
                .with_offset(start_byte)
        })?;
        dst.copy_from_slice(src);
        for &(at, b) in &self.patches {
            if at >= start_byte && (at as usize) < end {
                dst[(at - start_byte) as usize] = b;
            }
        }
        Ok(())
    }

    fn describe(&self) -> String {
        "mutated.img".into()
    }
}

#[test]
fn mutated_journal_blocks_never_panic() {
    let name = "mutated_journal_blocks_never_panic";
    if !have_kernel_ext4(name) {
        return;
    }
    let d = make_dirty(&DEFAULT);
    let base = Arc::new(read_file(&d.dirty));
    let plan = plan_replay(&*open(&d.dirty)).unwrap().unwrap();
    let stat = stdout(&run(
        "debugfs",
        &["-R", "stat <8>", d.dirty.to_str().unwrap()],
    ));
    let journal = common::synth::parse_debugfs_blocks(&stat);
    let bs = 4096u64;
    let start = u64::from(u32::from_be_bytes(
        base[(journal[0] * bs) as usize + 0x1c..(journal[0] * bs) as usize + 0x20]
            .try_into()
            .unwrap(),
    ));
    // The journal superblock and the live log.
    let mut region: Vec<u64> = vec![journal[0]];
    region.extend((0..plan.log_blocks_scanned).map(|i| journal[(start + i) as usize]));
    let mut rng = XorShift(0x5eed);
    let mut outcomes = BTreeMap::<String, u32>::new();
    for _ in 0..2000 {
        let mut patches = Vec::new();
        for _ in 0..1 + rng.below(4) {
            let block = region[rng.below(region.len() as u64) as usize];
            // Mostly headers and tags, sometimes anywhere in the block.
            let within = if rng.below(3) == 0 {
                rng.below(bs)
            } else {
                rng.below(64)
            };
            let value = match rng.below(4) {
                0 => 0,
                1 => 0xff,
                _ => rng.next() as u8,
            };
            patches.push((block * bs + within, value));
        }
        #[allow(clippy::arc_with_non_send_sync)]
        let dev: Device = Arc::new(Mutated {
            base: base.clone(),
            patches,
        });
        let outcome = match plan_replay(&*dev) {
            Ok(Some(plan)) => {
                let overlay = rescue_ext4::ReplayOverlay::new(dev.clone(), &plan);
                for w in &plan.writes {
                    let mut buf = vec![0u8; plan.block_size as usize];
                    overlay
                        .read_exact_at(w.block_number * bs, &mut buf)
                        .unwrap();
                }
                format!("replayed {}", plan.transactions)
            }
            Ok(None) => "clean".to_string(),
            Err(e) => format!("{:?}", e.kind()),
        };
        *outcomes.entry(outcome).or_default() += 1;
    }
    eprintln!("mutation outcomes: {outcomes:?}");
    assert!(
        outcomes.len() > 2,
        "mutations should reach several outcomes: {outcomes:?}"
    );
}

#[test]
fn fast_commit_journal_with_a_wrapped_log() {
    let name = "fast_commit_journal_with_a_wrapped_log";
    if !have_kernel_ext4(name) || !have_fast_commit(name) {
        return;
    }
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path().to_path_buf();
    let image = dir.join("live.img");
    std::fs::File::create(&image)
        .unwrap()
        .set_len(64 << 20)
        .unwrap();
    run(
        "mkfs.ext4",
        &[
            "-q",
            "-F",
            "-b",
            "4096",
            "-J",
            "size=4",
            "-O",
            "fast_commit",
            image.to_str().unwrap(),
        ],
    );
    let m = Mounted::new(&image, &dir.join("mnt"), "ext4", "");
    let mut rng = XorShift(11);
    let dirty = dir.join("dirty.img");
    let mut found = None;
    for round in 0..150 {
        let d = format!("d{round:03}");
        std::fs::create_dir(m.path(&d)).unwrap();
        for i in 0..8 {
            write(&m.path(&format!("{d}/f{i}")), &rng.bytes(100 + i * 10));
        }
        // syncfs: full commits only, so the fast-commit area stays empty.
        syncfs(&m.dir);
        copy_sparse(&image, &dirty);
        let plan = plan_replay(&*open(&dirty)).unwrap();
        if let Some(p) = plan.filter(|p| p.log_wrapped && p.transactions > 1) {
            found = Some(p);
            break;
        }
    }
    m.unmount();
    let plan = found.expect("no snapshot caught a wrapped log");
    let ours = dir.join("ours.img");
    our_replay(&dirty, &ours);
    let (code, out) = e2fsck_check(&ours);
    assert_eq!(code, 0, "{out}");
    let kernel_copy = dir.join("kernel.img");
    copy_sparse(&dirty, &kernel_copy);
    let kernel = kernel_view(&kernel_copy, &dir.join("kmnt"), "ext4");
    let mine = kernel_view(&ours, &dir.join("omnt"), "ext4");
    assert_eq!(kernel, mine, "kernel replay vs ours");
    // The kernel replayed exactly as far as we did: after its read-only
    // mount the journal's next sequence is ours. (e2fsprogs 1.47.0 wraps
    // such a log at the end of the fast-commit area and stops one
    // transaction short, so it is not the oracle here.)
    assert_eq!(journal_sequence(&kernel_copy), plan.next_sequence);
}
