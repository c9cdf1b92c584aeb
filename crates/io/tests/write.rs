//! The write side judged against qemu and against the original bytes.
//!
//! Every image is made by `qemu-img`/`qemu-io` at test time. The same
//! deterministic random writes go through our writable device and into a
//! raw reference file; then `qemu-img check` must find no errors and no
//! leaks, `qemu-img compare` must find the image identical to the
//! reference, and `undo` must give back a file whose SHA-256 equals the
//! original's. Crash tests abort a child process before every single
//! target write in turn (`RESCUE_DISK_FAULT_AFTER_WRITES`) and undo after
//! each.

mod common;

use std::fs;
use std::io::Write as _;
use std::os::unix::fs::FileExt;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::Instant;

use common::*;
use rescue_io::{
    find_undo_logs, open_writable, undo, BlockWrite, CommitCheck, ErrorKind, Format, OpenOptions,
    UndoLogState, UndoMode, UndoOptions, FAULT_ENV,
};
use sha2::{Digest, Sha256};

// ---------------------------------------------------------------- helpers

fn is_root() -> bool {
    use std::os::unix::fs::MetadataExt;
    fs::metadata("/proc/self")
        .map(|m| m.uid() == 0)
        .unwrap_or(false)
}

fn sha256_file(path: &Path) -> String {
    let bytes = fs::read(path).unwrap();
    Sha256::digest(&bytes)
        .iter()
        .map(|b| format!("{b:02x}"))
        .collect()
}

/// One write of the deterministic sequence: offset, length, fill seed.
#[derive(Debug, Clone, Copy)]
struct Op {
    offset: u64,
    len: usize,
    seed: u64,
}

/// Writes of varying sizes and positions: tiny, sector-sized, cluster
/// sized and aligned, crossing clusters, large, and at the very end.
fn write_ops(size: u64, count: usize, seed: u64) -> Vec<Op> {
    let mut rng = XorShift(seed);
    let mut ops = Vec::new();
    for i in 0..count {
        let r = rng.next();
        let len: usize = match i % 6 {
            0 => 1 + (r % 17) as usize,
            1 => 512,
            2 => 4096,
            3 => 65536,
            4 => 1 + (r % 200_000) as usize,
            _ => 3000 + (r % 9000) as usize,
        };
        let len = len.min(size as usize);
        let offset = match i % 7 {
            // Cluster aligned.
            0 => (rng.next() % size) & !0xffff,
            // The last bytes of the disk.
            1 => size - len as u64,
            _ => rng.next() % (size - len as u64 + 1),
        };
        let offset = offset.min(size - len as u64);
        ops.push(Op {
            offset,
            len,
            seed: rng.next() | 1,
        });
    }
    ops
}

fn op_bytes(op: &Op) -> Vec<u8> {
    let mut rng = XorShift(op.seed);
    // Half the writes are compressible, some all zeros.
    match op.seed % 4 {
        0 => vec![0u8; op.len],
        1 => (0..op.len).map(|i| (i / 64) as u8).collect(),
        _ => (0..op.len).map(|_| rng.next() as u8).collect(),
    }
}

/// Applies `ops` to `dev`, flushing now and then so that metadata writes
/// interleave with data writes; and to the raw reference `reference`.
fn apply(dev: &dyn BlockWrite, reference: Option<&Path>, ops: &[Op]) {
    let reference = reference.map(|r| fs::OpenOptions::new().write(true).open(r).unwrap());
    for (i, op) in ops.iter().enumerate() {
        let bytes = op_bytes(op);
        dev.write_all_at(op.offset, &bytes)
            .unwrap_or_else(|e| panic!("write {i} ({op:?}): {e}"));
        if let Some(r) = &reference {
            r.write_all_at(&bytes, op.offset).unwrap();
        }
        if i % 9 == 8 {
            dev.flush()
                .unwrap_or_else(|e| panic!("flush after write {i}: {e}"));
        }
    }
}

/// `qemu-img check` must report no errors and no leaks.
fn assert_qemu_check_clean(image: &Path) {
    let out = Command::new("qemu-img")
        .args(["check", s(image)])
        .output()
        .unwrap();
    let text = format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(
        out.status.success() && text.contains("No errors were found") && !text.contains("leak"),
        "qemu-img check {}: status {:?}:\n{text}",
        image.display(),
        out.status.code()
    );
}

/// `qemu-img compare` must say the guest sees the reference's bytes.
fn assert_qemu_identical(image: &Path, format: &str, reference: &Path) {
    let out = Command::new("qemu-img")
        .args(["compare", "-f", format, "-F", "raw", s(image), s(reference)])
        .output()
        .unwrap();
    let text = format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(
        out.status.success() && text.contains("Images are identical"),
        "qemu-img compare {} {}:\n{text}",
        image.display(),
        reference.display()
    );
}

fn undo_opts(dir: &Path) -> UndoOptions {
    UndoOptions::new(dir.join("undo"))
}

/// The image kinds under test.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Kind {
    Raw,
    Qcow2,
    Qcow2Small,
    Compressed,
    CompressedSmall,
    V2,
    ZeroAlloc,
    RawBacking,
    Qcow2Backing,
}

const DISK: usize = (6 << 20) + 3 * 512;

/// Makes the image of `kind` in `dir`; returns it, its qemu format name,
/// and the backing files (which must never change).
fn make_image(dir: &Path, kind: Kind) -> (PathBuf, &'static str, Vec<PathBuf>) {
    let raw = dir.join("source.raw");
    fs::write(&raw, disk_bytes(DISK, 11)).unwrap();
    let img = dir.join("disk.img");
    let convert = |opts: &[&str]| {
        let mut args = vec!["convert", "-f", "raw", "-O", "qcow2"];
        args.extend_from_slice(opts);
        args.extend_from_slice(&[s(&raw), s(&img)]);
        qemu_img(&args);
    };
    match kind {
        Kind::Raw => {
            fs::rename(&raw, &img).unwrap();
            (img, "raw", Vec::new())
        }
        Kind::Qcow2 => {
            convert(&[]);
            (img, "qcow2", Vec::new())
        }
        Kind::Qcow2Small => {
            convert(&["-o", "cluster_size=4096"]);
            (img, "qcow2", Vec::new())
        }
        Kind::Compressed => {
            convert(&["-c"]);
            (img, "qcow2", Vec::new())
        }
        Kind::CompressedSmall => {
            convert(&["-c", "-o", "cluster_size=4096"]);
            (img, "qcow2", Vec::new())
        }
        Kind::V2 => {
            convert(&["-o", "compat=0.10"]);
            (img, "qcow2", Vec::new())
        }
        Kind::ZeroAlloc => {
            // Zero clusters that keep their host cluster (zero flag and an
            // offset), as guests' write-zeroes leave them.
            convert(&[]);
            run(
                "qemu-io",
                &[
                    "-f",
                    "qcow2",
                    "-c",
                    "write -z 0 2M",
                    "-c",
                    "write -z 4M 256k",
                    s(&img),
                ],
            );
            (img, "qcow2", Vec::new())
        }
        Kind::RawBacking | Kind::Qcow2Backing => {
            let (base, fmt) = if kind == Kind::RawBacking {
                (raw.clone(), "raw")
            } else {
                let base = dir.join("base.qcow2");
                qemu_img(&["convert", "-f", "raw", "-O", "qcow2", s(&raw), s(&base)]);
                (base, "qcow2")
            };
            // 1 MiB larger than its backing file: that tail reads as zeros.
            qemu_img(&[
                "create",
                "-f",
                "qcow2",
                "-b",
                s(&base),
                "-F",
                fmt,
                s(&img),
                &(DISK + (1 << 20)).to_string(),
            ]);
            run(
                "qemu-io",
                &[
                    "-f",
                    "qcow2",
                    "-c",
                    "write -P 0xab 64k 4k",
                    "-c",
                    "write -z 1M 64k",
                    "-c",
                    "write -P 0xcd 200k 3k",
                    s(&img),
                ],
            );
            (img, "qcow2", vec![base])
        }
    }
}

/// The guest-visible bytes, as a raw reference file.
fn reference_of(image: &Path, format: &str, dir: &Path) -> PathBuf {
    let r = dir.join("reference.raw");
    qemu_img(&["convert", "-f", format, "-O", "raw", s(image), s(&r)]);
    r
}

/// The whole write/check/compare/undo round for one kind of image.
fn round_trip(kind: Kind) {
    if !have("qemu-img") || !have("qemu-io") {
        return;
    }
    let dir = tempfile::tempdir().unwrap();
    let (img, format, backing) = make_image(dir.path(), kind);
    let reference = reference_of(&img, format, dir.path());
    let original = sha256_file(&img);
    let original_len = fs::metadata(&img).unwrap().len();
    let backing_sums: Vec<String> = backing.iter().map(|b| sha256_file(b)).collect();

    let w = open_writable(&img, OpenOptions::default(), undo_opts(dir.path()))
        .unwrap_or_else(|e| panic!("{kind:?}: open_writable: {e}"));
    assert_eq!(w.format.name(), format);
    assert_eq!(w.backing_chain, backing);
    let size = w.device.size_in_bytes();
    assert_eq!(size, fs::metadata(&reference).unwrap().len());
    let ops = write_ops(size, 40, 0x5eed ^ kind as u64);
    apply(&*w.device, Some(&reference), &ops);
    // Reads through the same device see the writes.
    let mut got = vec![0u8; size as usize];
    w.readable().read_exact_at(0, &mut got).unwrap();
    assert!(
        got == fs::read(&reference).unwrap(),
        "{kind:?}: reading back through the writable device differs from the reference"
    );
    let undo_path = w.undo_path.clone();
    let summary = w
        .commit()
        .unwrap_or_else(|e| panic!("{kind:?}: commit: {e}"));
    assert!(summary.ranges_saved > 0 && summary.target_writes >= ops.len() as u64);
    eprintln!("{kind:?}: {summary:?}");

    if format == "qcow2" {
        assert_qemu_check_clean(&img);
    }
    assert_qemu_identical(&img, format, &reference);
    // Our own read-only open accepts what we wrote.
    let opened = rescue_io::open(&img, OpenOptions::default()).unwrap();
    let mut again = vec![0u8; size as usize];
    opened.device.read_exact_at(0, &mut again).unwrap();
    assert!(
        again == got,
        "{kind:?}: reopening read-only reads other bytes"
    );
    drop(opened);
    for (b, sum) in backing.iter().zip(&backing_sums) {
        assert_eq!(
            &sha256_file(b),
            sum,
            "{kind:?}: backing file {} changed",
            b.display()
        );
    }

    // The newest log of the target is this one, committed.
    let logs = find_undo_logs(&dir.path().join("undo"), &img).unwrap();
    assert_eq!(logs.len(), 1);
    assert_eq!(logs[0].path, undo_path);
    assert_eq!(logs[0].state, UndoLogState::Committed);
    assert!(logs[0].identity_matches);

    // A dry run changes nothing.
    let before = sha256_file(&img);
    let dry = undo(
        &undo_path,
        &img,
        UndoMode {
            dry_run: true,
            force: false,
        },
    )
    .unwrap();
    assert!(dry.dry_run && !dry.verified);
    assert_eq!(sha256_file(&img), before);

    let report = undo(&undo_path, &img, UndoMode::default()).unwrap();
    assert_eq!(report.commit, CommitCheck::Unchanged);
    assert!(report.verified && report.ranges_restored > 0, "{report:?}");
    let shown = report.to_string();
    assert!(
        shown.contains("restored") && shown.contains("verified") && !shown.contains('\n'),
        "{shown}"
    );
    assert_eq!(
        report.resized,
        summary.final_size != original_len,
        "{report:?}"
    );
    assert_eq!(fs::metadata(&img).unwrap().len(), original_len);
    assert_eq!(
        sha256_file(&img),
        original,
        "{kind:?}: undo did not restore the file"
    );
    let logs = find_undo_logs(&dir.path().join("undo"), &img).unwrap();
    assert_eq!(logs[0].state, UndoLogState::Undone);

    // Undoing again finds everything original and writes nothing.
    let again = undo(&undo_path, &img, UndoMode::default()).unwrap();
    assert!(again.previously_undone && again.ranges_restored == 0 && !again.resized);
    assert_eq!(sha256_file(&img), original);
}

#[test]
fn raw_round_trip() {
    round_trip(Kind::Raw);
}

#[test]
fn qcow2_round_trip() {
    round_trip(Kind::Qcow2);
}

#[test]
fn qcow2_4k_clusters_round_trip() {
    round_trip(Kind::Qcow2Small);
}

#[test]
fn compressed_qcow2_round_trip() {
    round_trip(Kind::Compressed);
}

#[test]
fn compressed_4k_qcow2_round_trip() {
    round_trip(Kind::CompressedSmall);
}

#[test]
fn qcow2_v2_round_trip() {
    round_trip(Kind::V2);
}

#[test]
fn qcow2_with_allocated_zero_clusters_round_trip() {
    round_trip(Kind::ZeroAlloc);
}

#[test]
fn qcow2_over_raw_backing_round_trip() {
    round_trip(Kind::RawBacking);
}

#[test]
fn qcow2_over_qcow2_backing_round_trip() {
    round_trip(Kind::Qcow2Backing);
}

// ------------------------------------------------------------ crash tests

/// Environment variables of the child role (the test binary re-executed).
const CHILD_ENV: &str = "RESCUE_IO_TEST_CHILD";

/// Runs this test binary as a child doing `role` with `args`, optionally
/// with the fault hook set. Core dumps are disabled for the abort.
fn child(role: &str, args: &[&Path], fault: Option<u64>) -> std::process::Output {
    let exe = std::env::current_exe().unwrap();
    let mut c = Command::new("sh");
    c.arg("-c")
        .arg("ulimit -c 0; exec \"$0\" \"$@\"")
        .arg(&exe)
        .args(["--exact", "child_role", "--nocapture", "--test-threads=1"])
        .env(CHILD_ENV, role)
        .env(
            "RESCUE_IO_TEST_ARGS",
            args.iter().map(|p| s(p)).collect::<Vec<_>>().join("\n"),
        )
        .env_remove(FAULT_ENV);
    if let Some(n) = fault {
        c.env(FAULT_ENV, n.to_string());
    }
    c.output().unwrap()
}

/// Not a test of its own: the body of child processes.
#[test]
fn child_role() {
    let Ok(role) = std::env::var(CHILD_ENV) else {
        return;
    };
    let args: Vec<PathBuf> = std::env::var("RESCUE_IO_TEST_ARGS")
        .unwrap()
        .lines()
        .map(PathBuf::from)
        .collect();
    match role.as_str() {
        // args: image, undo dir. Prints the number of target writes.
        "session" => {
            let w = open_writable(&args[0], OpenOptions::default(), UndoOptions::new(&args[1]))
                .unwrap();
            let size = w.device.size_in_bytes();
            apply(&*w.device, None, &write_ops(size, 36, 77));
            let summary = w.commit().unwrap();
            println!("TARGET_WRITES={}", summary.target_writes);
        }
        // args: undo log, target.
        "undo" => {
            let r = undo(&args[0], &args[1], UndoMode::default()).unwrap();
            println!("RESTORED={}", r.ranges_restored);
        }
        // args: image, undo dir. Prints the error.
        "open" => match open_writable(&args[0], OpenOptions::default(), UndoOptions::new(&args[1]))
        {
            Ok(_) => println!("OPENED"),
            Err(e) => println!("ERROR={e}"),
        },
        other => panic!("unknown child role {other}"),
    }
    std::io::stdout().flush().unwrap();
}

fn stdout_value(out: &std::process::Output, key: &str) -> Option<String> {
    // The test harness prints "test child_role ... " before our output.
    let needle = format!("{key}=");
    String::from_utf8_lossy(&out.stdout)
        .lines()
        .find_map(|l| l.find(&needle).map(|at| l[at + needle.len()..].to_owned()))
}

/// For every N, a session crashing before target write N+1 is undone to
/// the original bytes.
fn crash_case(kind: Kind) {
    if !have("qemu-img") || !have("qemu-io") {
        return;
    }
    let dir = tempfile::tempdir().unwrap();
    let (pristine, format, _) = make_image(dir.path(), kind);
    let original = sha256_file(&pristine);
    let work = dir.path().join("work.img");
    let undo_dir = dir.path().join("undo");

    // A complete session, to count its target writes.
    fs::copy(&pristine, &work).unwrap();
    let out = child("session", &[&work, &undo_dir], None);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let total: u64 = stdout_value(&out, "TARGET_WRITES")
        .unwrap()
        .parse()
        .unwrap();
    assert!(total >= 36, "only {total} target writes");
    if format == "qcow2" {
        assert_qemu_check_clean(&work);
    }
    let started = Instant::now();
    for n in 0..=total {
        fs::remove_dir_all(&undo_dir).ok();
        fs::copy(&pristine, &work).unwrap();
        let out = child("session", &[&work, &undo_dir], Some(n));
        if n < total {
            assert!(
                !out.status.success() && stdout_value(&out, "TARGET_WRITES").is_none(),
                "N={n}: the child did not crash: {}",
                String::from_utf8_lossy(&out.stderr)
            );
        } else {
            assert!(
                out.status.success(),
                "N={n}: {}",
                String::from_utf8_lossy(&out.stderr)
            );
        }
        let logs = find_undo_logs(&undo_dir, &work).unwrap();
        assert_eq!(logs.len(), 1, "N={n}");
        let expected_state = if n < total {
            UndoLogState::NotCommitted
        } else {
            UndoLogState::Committed
        };
        assert_eq!(logs[0].state, expected_state, "N={n}");
        let report = undo(&logs[0].path, &work, UndoMode::default())
            .unwrap_or_else(|e| panic!("N={n}: undo: {e}"));
        assert!(report.verified);
        assert_eq!(
            report.commit == CommitCheck::Absent,
            n < total,
            "N={n}: {report:?}"
        );
        assert_eq!(sha256_file(&work), original, "N={n}: not restored");
    }
    eprintln!(
        "{kind:?}: {} crash points undone in {:.1?}",
        total + 1,
        started.elapsed()
    );
}

#[test]
fn crash_at_every_write_of_a_qcow2_session_is_undone() {
    // Compressed 64 KiB clusters: allocation, copy-on-write of compressed
    // clusters, refcount updates and frees, in about a hundred writes.
    crash_case(Kind::Compressed);
}

/// The same with 4 KiB clusters: several hundred crash points (about a
/// minute); run with RESCUE_IO_HEAVY=1.
#[test]
fn crash_at_every_write_of_a_4k_cluster_qcow2_session_is_undone() {
    if std::env::var("RESCUE_IO_HEAVY").as_deref() != Ok("1") {
        eprintln!("skipping: set RESCUE_IO_HEAVY=1 to run");
        return;
    }
    crash_case(Kind::Qcow2Small);
}

#[test]
fn crash_at_every_write_of_a_raw_session_is_undone() {
    crash_case(Kind::Raw);
}

/// A crash in the middle of undo is finished by running undo again.
#[test]
fn crash_during_undo_is_finished_by_undo() {
    if !have("qemu-img") || !have("qemu-io") {
        return;
    }
    let dir = tempfile::tempdir().unwrap();
    let (pristine, _, _) = make_image(dir.path(), Kind::Qcow2);
    let original = sha256_file(&pristine);
    let work = dir.path().join("work.img");
    let undo_dir = dir.path().join("undo");
    let mut n = 0;
    loop {
        fs::remove_dir_all(&undo_dir).ok();
        fs::copy(&pristine, &work).unwrap();
        let w = open_writable(&work, OpenOptions::default(), UndoOptions::new(&undo_dir)).unwrap();
        let size = w.device.size_in_bytes();
        apply(&*w.device, None, &write_ops(size, 12, 5));
        let log = w.undo_path.clone();
        w.commit().unwrap();
        let out = child("undo", &[&log, &work], Some(n));
        let finished = out.status.success();
        let report = undo(&log, &work, UndoMode::default())
            .unwrap_or_else(|e| panic!("N={n}: second undo: {e}"));
        assert_eq!(sha256_file(&work), original, "N={n}");
        if finished {
            assert!(report.previously_undone && report.ranges_restored == 0);
            break;
        }
        assert!(!report.previously_undone);
        n += 1;
        assert!(n < 10_000);
    }
    assert!(n > 3, "undo made only {n} writes");
}

// --------------------------------------------------------------- refusals

fn open_err(img: &Path, undo_dir: &Path) -> rescue_io::Error {
    match open_writable(img, OpenOptions::default(), UndoOptions::new(undo_dir)) {
        Ok(w) => panic!("{} opened for writing: {w:?}", img.display()),
        Err(e) => e,
    }
}

/// No undo log is left behind by a refused open.
fn assert_no_logs(undo_dir: &Path) {
    let n = fs::read_dir(undo_dir).map(|d| d.count()).unwrap_or(0);
    assert_eq!(n, 0, "a refused open left an undo log");
}

#[test]
fn qcow2_with_internal_snapshot_is_refused() {
    if !have("qemu-img") {
        return;
    }
    let dir = tempfile::tempdir().unwrap();
    let (img, _, _) = make_image(dir.path(), Kind::Qcow2);
    qemu_img(&["snapshot", "-c", "s1", s(&img)]);
    let sum = sha256_file(&img);
    let undo_dir = dir.path().join("undo");
    let e = open_err(&img, &undo_dir);
    assert_err(
        &e,
        ErrorKind::Unsupported,
        &["internal snapshot", "qemu-img snapshot -d"],
    );
    assert_no_logs(&undo_dir);
    assert_eq!(sha256_file(&img), sum);
}

#[test]
fn dirty_qcow2_is_refused() {
    if !have("qemu-img") {
        return;
    }
    let dir = tempfile::tempdir().unwrap();
    let (img, _, _) = make_image(dir.path(), Kind::Qcow2);
    // Bit 0 of the big-endian incompatible_features at offset 72.
    let f = fs::OpenOptions::new()
        .read(true)
        .write(true)
        .open(&img)
        .unwrap();
    let mut b = [0u8; 1];
    f.read_exact_at(&mut b, 79).unwrap();
    f.write_all_at(&[b[0] | 1], 79).unwrap();
    drop(f);
    let undo_dir = dir.path().join("undo");
    let e = open_err(&img, &undo_dir);
    assert_err(
        &e,
        ErrorKind::Unsupported,
        &["dirty", "qemu-img check -r all"],
    );
    assert_no_logs(&undo_dir);
}

#[test]
fn encrypted_qcow2_is_refused() {
    if !have("qemu-img") {
        return;
    }
    let dir = tempfile::tempdir().unwrap();
    let img = dir.path().join("enc.qcow2");
    qemu_img(&[
        "create",
        "-f",
        "qcow2",
        "--object",
        "secret,id=sec0,data=x",
        "-o",
        "encrypt.format=luks,encrypt.key-secret=sec0",
        s(&img),
        "8M",
    ]);
    let undo_dir = dir.path().join("undo");
    let e = open_err(&img, &undo_dir);
    assert_err(
        &e,
        ErrorKind::Unsupported,
        &["LUKS-encrypted", "not supported"],
    );
    assert_no_logs(&undo_dir);
}

#[test]
fn qcow2_with_bitmaps_is_refused() {
    if !have("qemu-img") {
        return;
    }
    let dir = tempfile::tempdir().unwrap();
    let (img, _, _) = make_image(dir.path(), Kind::Qcow2);
    qemu_img(&["bitmap", "--add", s(&img), "b0"]);
    let undo_dir = dir.path().join("undo");
    let e = open_err(&img, &undo_dir);
    assert_err(
        &e,
        ErrorKind::Unsupported,
        &["bitmaps", "qemu-img bitmap --remove"],
    );
}

/// A file the user may not write is refused with advice, before any undo
/// log exists. Root ignores file modes, so as root the attempt runs as
/// `nobody` through setpriv.
#[test]
fn read_only_image_file_is_refused() {
    use std::os::unix::fs::PermissionsExt;
    let dir = tempfile::tempdir().unwrap();
    fs::set_permissions(dir.path(), fs::Permissions::from_mode(0o755)).unwrap();
    let img = dir.path().join("ro.img");
    fs::write(&img, disk_bytes(1 << 20, 3)).unwrap();
    fs::set_permissions(&img, fs::Permissions::from_mode(0o444)).unwrap();
    let undo_dir = dir.path().join("undo");
    let message = if is_root() {
        if !have("setpriv") {
            return;
        }
        // The test binary lives under target/, which nobody may not read.
        let exe = dir.path().join("write-test");
        fs::copy(std::env::current_exe().unwrap(), &exe).unwrap();
        fs::set_permissions(&exe, fs::Permissions::from_mode(0o755)).unwrap();
        let out = Command::new("setpriv")
            .args(["--reuid=65534", "--regid=65534", "--clear-groups", "--"])
            .arg(&exe)
            .args(["--exact", "child_role", "--nocapture", "--test-threads=1"])
            .env(CHILD_ENV, "open")
            .env(
                "RESCUE_IO_TEST_ARGS",
                format!("{}\n{}", s(&img), s(&undo_dir)),
            )
            .output()
            .expect("setpriv (util-linux)");
        assert!(
            out.status.success(),
            "{}",
            String::from_utf8_lossy(&out.stderr)
        );
        stdout_value(&out, "ERROR").unwrap_or_else(|| {
            panic!(
                "nobody could open a 0444 root file for writing: {}",
                String::from_utf8_lossy(&out.stdout)
            )
        })
    } else {
        open_err(&img, &undo_dir).to_string()
    };
    assert!(
        message.contains("is read-only") && message.contains("copy it or fix permissions"),
        "{message}"
    );
    assert_no_logs(&undo_dir);
}

/// As root, modes do not stop writes, but an immutable attribute and a
/// read-only mount do: both are refused with advice.
#[test]
fn immutable_file_and_read_only_mount_are_refused() {
    if !is_root() || !have("chattr") || !have("mount") {
        eprintln!("skipping: needs root, chattr and mount");
        return;
    }
    let dir = tempfile::tempdir().unwrap();
    let img = dir.path().join("i.img");
    fs::write(&img, disk_bytes(1 << 20, 8)).unwrap();
    let undo_dir = dir.path().join("undo");
    if Command::new("chattr")
        .args(["+i", s(&img)])
        .status()
        .unwrap()
        .success()
    {
        let result = open_writable(&img, OpenOptions::default(), UndoOptions::new(&undo_dir));
        run("chattr", &["-i", s(&img)]);
        let e = result.unwrap_err();
        assert_err(
            &e,
            ErrorKind::PermissionDenied,
            &["is read-only", "copy it or fix permissions", "chattr -i"],
        );
    } else {
        eprintln!("skipping the immutable case: chattr +i is not supported here");
    }
    let mnt = dir.path().join("ro");
    fs::create_dir(&mnt).unwrap();
    let bound = Command::new("mount")
        .args(["--bind", s(dir.path()), s(&mnt)])
        .status()
        .unwrap()
        .success();
    if !bound {
        eprintln!("skipping the read-only mount case: bind mounts are not allowed here");
        return;
    }
    let remounted = Command::new("mount")
        .args(["-o", "remount,bind,ro", s(&mnt)])
        .status()
        .unwrap()
        .success();
    let result = open_writable(
        &mnt.join("i.img"),
        OpenOptions::default(),
        UndoOptions::new(&undo_dir),
    );
    run("umount", &[s(&mnt)]);
    assert!(remounted, "remounting the bind mount read-only failed");
    let e = result.unwrap_err();
    assert_err(
        &e,
        ErrorKind::PermissionDenied,
        &["is read-only", "read-only filesystem", "copy it"],
    );
    assert_no_logs(&undo_dir);
}

/// Undo refuses a target that changed after the commit (the VM booted
/// from it), unless forced: in saved ranges, and in clusters the session
/// appended to a qcow2 file.
#[test]
fn undo_refuses_a_target_changed_since_commit() {
    if !have("qemu-img") || !have("qemu-io") {
        return;
    }
    for case in ["raw", "qcow2", "empty qcow2"] {
        let dir = tempfile::tempdir().unwrap();
        let (img, format) = match case {
            "raw" => (make_image(dir.path(), Kind::Raw).0, "raw"),
            "qcow2" => (make_image(dir.path(), Kind::Qcow2).0, "qcow2"),
            _ => {
                let img = dir.path().join("empty.qcow2");
                qemu_img(&["create", "-f", "qcow2", s(&img), "8M"]);
                (img, "qcow2")
            }
        };
        let original = sha256_file(&img);
        let w = open_writable(&img, OpenOptions::default(), undo_opts(dir.path())).unwrap();
        w.device.write_all_at(8192, b"rescued").unwrap();
        w.device.write_all_at(3 << 20, &[7u8; 70_000]).unwrap();
        let log = w.undo_path.clone();
        w.commit().unwrap();
        // The "VM" writes where the session wrote, through qemu.
        run(
            "qemu-io",
            &["-f", format, "-c", "write -P 0x99 3M 4k", s(&img)],
        );
        let changed = sha256_file(&img);
        let e = undo(&log, &img, UndoMode::default()).unwrap_err();
        assert_err(
            &e,
            ErrorKind::Conflict,
            &["changed after the write session committed", "--force"],
        );
        assert_eq!(sha256_file(&img), changed, "{case}: a refused undo wrote");
        let r = undo(
            &log,
            &img,
            UndoMode {
                force: true,
                dry_run: false,
            },
        )
        .unwrap();
        assert!(
            matches!(r.commit, CommitCheck::ChangedForced { .. }),
            "{r:?}"
        );
        assert_eq!(sha256_file(&img), original, "{case}");
    }
}

/// Unknown autoclear feature bits are cleared on the first write, as the
/// specification asks; undo puts them back.
#[test]
fn autoclear_bits_are_cleared_by_writing() {
    if !have("qemu-img") {
        return;
    }
    let dir = tempfile::tempdir().unwrap();
    let (img, _, _) = make_image(dir.path(), Kind::Qcow2);
    let f = fs::OpenOptions::new()
        .read(true)
        .write(true)
        .open(&img)
        .unwrap();
    f.write_all_at(&(1u64 << 5).to_be_bytes(), 88).unwrap();
    let original = sha256_file(&img);
    let w = open_writable(&img, OpenOptions::default(), undo_opts(dir.path())).unwrap();
    w.device.write_all_at(1 << 20, b"x").unwrap();
    let log = w.undo_path.clone();
    w.commit().unwrap();
    let mut b = [0u8; 8];
    f.read_exact_at(&mut b, 88).unwrap();
    assert_eq!(u64::from_be_bytes(b), 0);
    assert_qemu_check_clean(&img);
    undo(&log, &img, UndoMode::default()).unwrap();
    assert_eq!(sha256_file(&img), original);
}

/// A write that could make qcow2-rs grow the refcount table (which would
/// rewrite the header in its own form) is refused before anything is
/// written; writes in place still work.
#[test]
fn qcow2_that_outgrows_its_refcount_table_is_refused() {
    if !have("qemu-img") || !have("qemu-io") {
        return;
    }
    let dir = tempfile::tempdir().unwrap();
    let img = dir.path().join("full.qcow2");
    // 4 KiB clusters: one refcount table cluster describes 4 GiB of file.
    qemu_img(&[
        "create",
        "-f",
        "qcow2",
        "-o",
        "cluster_size=4096",
        s(&img),
        "8G",
    ]);
    run(
        "qemu-io",
        &["-f", "qcow2", "-c", "write -P 0x42 0 64k", s(&img)],
    );
    // Unused space at the end of the file, as preallocation leaves it.
    fs::OpenOptions::new()
        .write(true)
        .open(&img)
        .unwrap()
        .set_len(4 << 30)
        .unwrap();
    let original = sha256_file_sparse(&img);
    let w = open_writable(&img, OpenOptions::default(), undo_opts(dir.path())).unwrap();
    w.device.write_all_at(4096, b"in place").unwrap();
    let e = w.device.write_all_at(1 << 30, b"new cluster").unwrap_err();
    assert_err(
        &e,
        ErrorKind::Unsupported,
        &["refcount table", "qemu-img convert"],
    );
    // The image is still usable after that refusal.
    w.device.write_all_at(8192, b"again").unwrap();
    let log = w.undo_path.clone();
    let summary = w.commit().unwrap();
    assert_eq!(summary.final_size, 4 << 30);
    assert_qemu_check_clean(&img);
    undo(&log, &img, UndoMode::default()).unwrap();
    assert_eq!(sha256_file_sparse(&img), original);
}

/// SHA-256 of a large sparse file, reading only its data extents.
fn sha256_file_sparse(path: &Path) -> String {
    // The file is 4 GiB of mostly holes: hash the first 1 MiB and the size.
    let f = fs::File::open(path).unwrap();
    let mut head = vec![0u8; 1 << 20];
    f.read_exact_at(&mut head, 0).unwrap();
    let mut h = Sha256::new();
    h.update(&head);
    h.update(f.metadata().unwrap().len().to_le_bytes());
    h.finalize().iter().map(|b| format!("{b:02x}")).collect()
}

#[test]
fn undo_refuses_another_file() {
    let dir = tempfile::tempdir().unwrap();
    let a = dir.path().join("a.img");
    let b = dir.path().join("b.img");
    fs::write(&a, disk_bytes(1 << 20, 1)).unwrap();
    fs::write(&b, disk_bytes(1 << 20, 1)).unwrap();
    let w = open_writable(&a, OpenOptions::default(), undo_opts(dir.path())).unwrap();
    w.device.write_all_at(100, b"x").unwrap();
    let log = w.undo_path.clone();
    w.commit().unwrap();
    let sum_b = sha256_file(&b);
    for force in [false, true] {
        let e = undo(
            &log,
            &b,
            UndoMode {
                force,
                dry_run: false,
            },
        )
        .unwrap_err();
        assert_err(
            &e,
            ErrorKind::Conflict,
            &["was recorded for", "a.img", "not this file"],
        );
    }
    assert_eq!(sha256_file(&b), sum_b);
    // The same path with another inode (the file was replaced): force only.
    let original_a = disk_bytes(1 << 20, 1);
    let replaced = dir.path().join("a.new");
    fs::copy(&a, &replaced).unwrap();
    fs::rename(&replaced, &a).unwrap();
    let e = undo(&log, &a, UndoMode::default()).unwrap_err();
    assert_err(&e, ErrorKind::Conflict, &["replaced", "--force"]);
    undo(
        &log,
        &a,
        UndoMode {
            force: true,
            dry_run: false,
        },
    )
    .unwrap();
    assert!(fs::read(&a).unwrap() == original_a);
    // Nothing is listed for b.
    assert!(find_undo_logs(&dir.path().join("undo"), &b)
        .unwrap()
        .is_empty());
}

/// A torn last record (crash while appending it) is ignored; damage in the
/// middle of the log is an error naming the record and its offset.
#[test]
fn undo_log_torn_tail_and_damage() {
    let dir = tempfile::tempdir().unwrap();
    let img = dir.path().join("t.img");
    let bytes = disk_bytes(2 << 20, 9);
    fs::write(&img, &bytes).unwrap();
    let w = open_writable(&img, OpenOptions::default(), undo_opts(dir.path())).unwrap();
    w.device.write_all_at(0, &[1u8; 5000]).unwrap();
    w.device.write_all_at(1 << 20, &[2u8; 10]).unwrap();
    let log = w.undo_path.clone();
    drop(w); // no commit: a crashed session
    let clean_log = fs::read(&log).unwrap();
    // The target as the crashed session left it.
    let crashed = || {
        let f = fs::OpenOptions::new().write(true).open(&img).unwrap();
        f.write_all_at(&[1u8; 5000], 0).unwrap();
        f.write_all_at(&[2u8; 10], 1 << 20).unwrap();
    };

    // A record header announcing more bytes than follow.
    let mut torn = clean_log.clone();
    torn.extend_from_slice(b"RDrc");
    torn.extend_from_slice(&1u32.to_le_bytes());
    torn.extend_from_slice(&100_000u64.to_le_bytes());
    torn.extend_from_slice(&[0xaa; 300]);
    fs::write(&log, &torn).unwrap();
    let r = undo(&log, &img, UndoMode::default()).unwrap();
    assert!(
        r.torn_tail_ignored && r.commit == CommitCheck::Absent && r.ranges_restored == 2,
        "{r:?}"
    );
    assert!(fs::read(&img).unwrap() == bytes);

    // Zeros where the last record was being appended.
    let mut zeros = clean_log.clone();
    zeros.extend_from_slice(&[0u8; 4096]);
    fs::write(&log, &zeros).unwrap();
    crashed();
    let r = undo(&log, &img, UndoMode::default()).unwrap();
    assert!(r.torn_tail_ignored && r.ranges_restored == 2, "{r:?}");
    assert!(fs::read(&img).unwrap() == bytes);

    // A flipped byte in the first record, with a second record after it.
    let mut damaged = clean_log.clone();
    let header_len = u32::from_le_bytes(clean_log[20..24].try_into().unwrap()) as usize;
    damaged[header_len + 200] ^= 0x40;
    fs::write(&log, &damaged).unwrap();
    crashed();
    let e = undo(
        &log,
        &img,
        UndoMode {
            force: true,
            dry_run: false,
        },
    )
    .unwrap_err();
    assert_err(&e, ErrorKind::Corrupt, &["record 0", "checksum", "damaged"]);
    assert_eq!(e.offset(), Some(header_len as u64));

    // Not an undo log at all.
    fs::write(&log, b"hello").unwrap();
    let e = undo(&log, &img, UndoMode::default()).unwrap_err();
    assert_eq!(e.kind(), ErrorKind::Corrupt);
}

#[test]
fn undo_logs_are_listed_newest_first() {
    let dir = tempfile::tempdir().unwrap();
    let img = dir.path().join("l.img");
    fs::write(&img, disk_bytes(1 << 20, 4)).unwrap();
    let undo_dir = dir.path().join("undo");
    let mut paths = Vec::new();
    for (i, id) in ["run-a", "run-b", "run-c"].iter().enumerate() {
        let w = open_writable(
            &img,
            OpenOptions::default(),
            UndoOptions {
                dir: undo_dir.clone(),
                run_id: Some((*id).to_owned()),
            },
        )
        .unwrap();
        w.device.write_all_at(4096 * i as u64, b"abc").unwrap();
        paths.push(w.undo_path.clone());
        if i < 2 {
            w.commit().unwrap();
        }
    }
    undo(&paths[0], &img, UndoMode::default()).unwrap();
    let logs = find_undo_logs(&undo_dir, &img).unwrap();
    let ids: Vec<&str> = logs.iter().map(|l| l.run_id.as_str()).collect();
    assert_eq!(ids, ["run-c", "run-b", "run-a"]);
    assert_eq!(logs[0].state, UndoLogState::NotCommitted);
    assert_eq!(logs[1].state, UndoLogState::Committed);
    assert_eq!(logs[2].state, UndoLogState::Undone);
    assert!(logs[0]
        .path
        .file_name()
        .unwrap()
        .to_str()
        .unwrap()
        .starts_with("l.img.run-c"));
    // A bad run id is refused.
    let e = open_writable(
        &img,
        OpenOptions::default(),
        UndoOptions {
            dir: undo_dir.clone(),
            run_id: Some("../x".to_owned()),
        },
    )
    .unwrap_err();
    assert!(e.to_string().contains("run id"), "{e}");
}

fn be64(b: &[u8], at: usize) -> u64 {
    u64::from_be_bytes(b[at..at + 8].try_into().unwrap())
}

/// An L2 entry pointing at the L1 table must not make us overwrite it.
#[test]
fn corrupt_l2_entry_does_not_overwrite_metadata() {
    if !have("qemu-img") {
        return;
    }
    let dir = tempfile::tempdir().unwrap();
    let (img, _, _) = make_image(dir.path(), Kind::Qcow2);
    let b = fs::read(&img).unwrap();
    let l1 = be64(&b, 40);
    let l2 = be64(&b, l1 as usize) & 0x00ff_ffff_ffff_fe00;
    let f = fs::OpenOptions::new().write(true).open(&img).unwrap();
    f.write_all_at(&((1u64 << 63) | l1).to_be_bytes(), l2)
        .unwrap();
    let sum = sha256_file(&img);
    let w = open_writable(&img, OpenOptions::default(), undo_opts(dir.path())).unwrap();
    let e = w.device.write_all_at(0, &[0x66; 65536]).unwrap_err();
    assert_err(
        &e,
        ErrorKind::Corrupt,
        &["overlaps the L1 or refcount table", "qemu-img check"],
    );
    drop(w);
    assert_eq!(sha256_file(&img), sum, "something was written");
}

/// Mutated images (header, L1, L2 and refcount tables) opened for writing
/// and written to: errors are fine, panics and unrestorable files are not.
#[test]
fn writing_mutated_images_never_panics_and_undo_restores_them() {
    if !have("qemu-img") {
        return;
    }
    let dir = tempfile::tempdir().unwrap();
    let raw = dir.path().join("m.raw");
    fs::write(&raw, disk_bytes(1 << 20, 12)).unwrap();
    let base = dir.path().join("m.qcow2");
    qemu_img(&[
        "convert",
        "-c",
        "-f",
        "raw",
        "-O",
        "qcow2",
        "-o",
        "cluster_size=4096",
        s(&raw),
        s(&base),
    ]);
    let pristine = fs::read(&base).unwrap();
    // The metadata clusters: header, L1, refcount table, refcount blocks
    // and L2 tables.
    let cluster = |off: u64| (off & !4095) as usize;
    let mut meta = vec![
        0,
        cluster(be64(&pristine, 40)),
        cluster(be64(&pristine, 48)),
    ];
    let l1 = be64(&pristine, 40) as usize;
    for i in 0..be64(&pristine, 32) as usize >> 32 {
        let e = be64(&pristine, l1 + 8 * i) & 0x00ff_ffff_ffff_fe00;
        if e != 0 {
            meta.push(e as usize);
        }
    }
    let rt = be64(&pristine, 48) as usize;
    for i in 0..512 {
        let e = be64(&pristine, rt + 8 * i) & !511;
        if e != 0 {
            meta.push(e as usize);
        }
    }
    let img = dir.path().join("work.qcow2");
    let mut rng = XorShift(0xfeed_beef);
    let (mut opened, mut written) = (0, 0);
    for round in 0..150 {
        let mut data = pristine.clone();
        for _ in 0..1 + rng.next() % 3 {
            let c = meta[(rng.next() % meta.len() as u64) as usize];
            let at = if c == 0 {
                (rng.next() % 128) as usize
            } else {
                c + (rng.next() % 4096) as usize
            };
            if at < data.len() {
                data[at] ^= 1 << (rng.next() % 8);
            }
        }
        fs::write(&img, &data).unwrap();
        let undo_dir = dir.path().join(format!("undo{round}"));
        let Ok(w) = open_writable(&img, OpenOptions::default(), UndoOptions::new(&undo_dir)) else {
            continue;
        };
        opened += 1;
        let size = w.device.size_in_bytes();
        let mut ok = true;
        for mut op in write_ops(size, 6, rng.next()) {
            op.len = op.len.min(9000);
            if w.device.write_all_at(op.offset, &op_bytes(&op)).is_err() {
                ok = false;
                break;
            }
        }
        let log = w.undo_path.clone();
        if !ok {
            drop(w);
        } else if w.commit().is_ok() {
            written += 1;
        }
        let r = undo(
            &log,
            &img,
            UndoMode {
                force: true,
                dry_run: false,
            },
        )
        .unwrap_or_else(|e| panic!("round {round}: undo: {e}"));
        assert!(r.verified);
        assert!(
            fs::read(&img).unwrap() == data,
            "round {round}: not restored"
        );
    }
    eprintln!("{opened} of 150 mutated images opened, {written} fully written");
    assert!(
        opened > 30 && written > 10,
        "{opened} opened, {written} written"
    );
}

/// A disk that qemu holds open (a VM running from it) is refused.
#[test]
fn image_open_in_qemu_is_refused() {
    if !have("qemu-img") || !have("qemu-io") {
        return;
    }
    let dir = tempfile::tempdir().unwrap();
    let (img, _, _) = make_image(dir.path(), Kind::Qcow2);
    // qemu-io in interactive mode keeps the image open (and locked) until
    // its stdin closes.
    let mut qemu = Command::new("qemu-io")
        .args(["-f", "qcow2", s(&img)])
        .stdin(std::process::Stdio::piped())
        .stdout(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    let mut stdin = qemu.stdin.take().unwrap();
    // Wait until qemu-io has opened the image: it answers a command.
    stdin.write_all(b"help\n").unwrap();
    let mut out = qemu.stdout.take().unwrap();
    let mut first = [0u8; 1];
    std::io::Read::read_exact(&mut out, &mut first).unwrap();
    let result = open_writable(&img, OpenOptions::default(), undo_opts(dir.path()));
    drop(stdin);
    qemu.wait().unwrap();
    let e = result.unwrap_err();
    assert_err(
        &e,
        ErrorKind::Conflict,
        &["open in a qemu process", "shut that down"],
    );
    assert_no_logs(&dir.path().join("undo"));
    // Once qemu is gone, writing works.
    let w = open_writable(&img, OpenOptions::default(), undo_opts(dir.path())).unwrap();
    w.device.write_all_at(0, b"ok").unwrap();
    w.commit().unwrap();
}

/// Raw disks never grow; writes past the end are refused and nothing is
/// saved or written for them.
#[test]
fn raw_writes_past_the_end_are_refused() {
    let dir = tempfile::tempdir().unwrap();
    let img = dir.path().join("r.img");
    fs::write(&img, vec![0x11u8; 10_000]).unwrap();
    let w = open_writable(
        &img,
        OpenOptions {
            format: Some(Format::Raw),
        },
        undo_opts(dir.path()),
    )
    .unwrap();
    assert_eq!(w.device.size_in_bytes(), 10_000);
    let e = w.device.write_all_at(9_999, b"ab").unwrap_err();
    assert_eq!(e.kind(), ErrorKind::Truncated);
    // The partial last block is saved clipped to the file size.
    w.device.write_all_at(9_000, &[0x22; 1000]).unwrap();
    let device = w.device.clone();
    let s = w.commit().unwrap();
    assert_eq!(
        (s.ranges_saved, s.bytes_saved, s.final_size),
        (1, 10_000 - 8192, 10_000)
    );
    // Writing after commit is refused.
    let e = device.write_all_at(0, b"late").unwrap_err();
    assert!(e.to_string().contains("already committed"), "{e}");
    // The session holds the target locked until its last handle goes.
    let log = s.undo_path.clone();
    let e = undo(&log, &img, UndoMode::default()).unwrap_err();
    assert_err(
        &e,
        ErrorKind::Conflict,
        &["locked by another write session"],
    );
    drop(device);
    undo(&log, &img, UndoMode::default()).unwrap();
    assert!(fs::read(&img).unwrap() == vec![0x11u8; 10_000]);
}

/// A loop block device: identity by device number, no size changes.
#[test]
fn block_device_round_trip() {
    if !is_root() || !have("losetup") {
        eprintln!("skipping: needs root and losetup");
        return;
    }
    let dir = tempfile::tempdir().unwrap();
    let backing = dir.path().join("dev.img");
    let bytes = disk_bytes(4 << 20, 21);
    fs::write(&backing, &bytes).unwrap();
    let dev = run("losetup", &["--find", "--show", s(&backing)])
        .trim()
        .to_owned();
    let dev_path = PathBuf::from(&dev);
    let result = std::panic::catch_unwind(|| {
        let w = open_writable(
            &dev_path,
            OpenOptions {
                format: Some(Format::Raw),
            },
            undo_opts(dir.path()),
        )
        .unwrap();
        assert_eq!(w.device.size_in_bytes(), 4 << 20);
        apply(&*w.device, None, &write_ops(4 << 20, 20, 3));
        assert!(w.device.write_all_at(4 << 20, b"x").is_err());
        let log = w.undo_path.clone();
        w.commit().unwrap();
        let logs = find_undo_logs(&dir.path().join("undo"), &dev_path).unwrap();
        assert!(logs.len() == 1 && logs[0].identity_matches);
        let r = undo(&log, &dev_path, UndoMode::default()).unwrap();
        assert!(r.verified && !r.resized);
        let mut now = vec![0u8; bytes.len()];
        fs::File::open(&dev_path)
            .unwrap()
            .read_exact_at(&mut now, 0)
            .unwrap();
        assert!(now == bytes, "block device not restored");
    });
    run("losetup", &["-d", &dev]);
    if let Err(p) = result {
        std::panic::resume_unwind(p);
    }
}

// ------------------------------------------------------------ performance

/// A few small writes to a large image cost what they touch: the time and
/// the bytes read do not depend on the 20 GiB size.
#[test]
fn small_session_on_20g_images_is_fast() {
    if !have("qemu-img") {
        return;
    }
    let dir = tempfile::tempdir().unwrap();
    let raw = dir.path().join("big.raw");
    fs::File::create(&raw).unwrap().set_len(20 << 30).unwrap();
    let qcow = dir.path().join("big.qcow2");
    qemu_img(&["create", "-f", "qcow2", s(&qcow), "20G"]);
    let qcow_small = dir.path().join("big4k.qcow2");
    qemu_img(&[
        "create",
        "-f",
        "qcow2",
        "-o",
        "cluster_size=4096",
        s(&qcow_small),
        "20G",
    ]);
    for img in [&raw, &qcow, &qcow_small] {
        let reads = rescue_io::stats::read_stats();
        let t = Instant::now();
        let w = open_writable(img, OpenOptions::default(), undo_opts(dir.path())).unwrap();
        for (i, at) in [0u64, 7 << 30, (20 << 30) - 4096, 12_345_678_901]
            .iter()
            .enumerate()
        {
            w.device.write_all_at(*at, &[i as u8 + 1; 4096]).unwrap();
        }
        let log = w.undo_path.clone();
        let summary = w.commit().unwrap();
        let session = t.elapsed();
        let t = Instant::now();
        let r = undo(&log, img, UndoMode::default()).unwrap();
        let undo_time = t.elapsed();
        let read = rescue_io::stats::read_stats().bytes - reads.bytes;
        eprintln!(
            "{}: session {session:.1?} ({} target writes, {} bytes saved, log {} bytes), undo {undo_time:.1?} ({} ranges), {read} bytes read in all",
            img.file_name().unwrap().to_string_lossy(),
            summary.target_writes,
            summary.bytes_saved,
            summary.log_bytes,
            r.ranges_restored
        );
        assert!(r.verified);
        assert!(read < 4 << 20, "{}: {read} bytes read", img.display());
        assert!(
            session.as_secs_f64() < 5.0 && undo_time.as_secs_f64() < 5.0,
            "{}: too slow",
            img.display()
        );
    }
}
