//! qcow2 reading judged against qemu: every image is made by `qemu-img` /
//! `qemu-io` at test time, and what we read must equal what
//! `qemu-img convert -O raw` (or the raw input) says the disk holds.
//! Hostile variants are made by editing real images at known header
//! offsets; each must give a precise error kind and message, never a panic.

mod common;

use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::Instant;

use common::*;
use rescue_io::{open, BlockRead, ErrorKind, Format, OpenOptions, Qcow2Image, RawFile};

// ---------------------------------------------------------------- helpers

fn write_raw(path: &Path, size: usize, seed: u64) -> Vec<u8> {
    let bytes = disk_bytes(size, seed);
    std::fs::write(path, &bytes).unwrap();
    bytes
}

fn open_image(path: &Path) -> rescue_io::Result<Qcow2Image> {
    Qcow2Image::open(RawFile::open_read_only(path)?, path)
}

fn read_all(dev: &dyn BlockRead) -> Vec<u8> {
    let size = dev.size_in_bytes() as usize;
    let mut out = vec![0u8; size];
    for (i, chunk) in out.chunks_mut(1 << 20).enumerate() {
        dev.read_exact_at((i << 20) as u64, chunk)
            .unwrap_or_else(|e| panic!("reading chunk {i}: {e}"));
    }
    out
}

/// What qemu says the guest sees.
fn qemu_raw(image: &Path, dir: &Path) -> Vec<u8> {
    let out = dir.join("oracle.raw");
    qemu_img(&["convert", "-O", "raw", s(image), s(&out)]);
    let bytes = std::fs::read(&out).unwrap();
    std::fs::remove_file(&out).unwrap();
    bytes
}

fn assert_same(ours: &[u8], theirs: &[u8], what: &str) {
    assert_eq!(ours.len(), theirs.len(), "{what}: size differs");
    if let Some(i) = ours.iter().zip(theirs).position(|(a, b)| a != b) {
        panic!(
            "{what}: first difference at byte {i:#x}: ours {:#04x}, qemu {:#04x}",
            ours[i], theirs[i]
        );
    }
}

/// Unaligned reads at odd offsets and lengths, some crossing clusters.
fn check_odd_reads(dev: &dyn BlockRead, expected: &[u8], what: &str) {
    let size = expected.len() as u64;
    let mut rng = XorShift(7);
    let mut cases: Vec<(u64, usize)> = vec![
        (0, 1),
        (1, 511),
        (511, 2),
        (4095, 4098),
        (65535, 3),
        (65536 - 700, 1401),
        (size - 1, 1),
        (size - 4097, 4097),
    ];
    for _ in 0..200 {
        let start = rng.next() % size;
        let len = (rng.next() % 200_000).min(size - start) as usize;
        cases.push((start, len));
    }
    for (start, len) in cases {
        let mut buf = vec![0u8; len];
        dev.read_exact_at(start, &mut buf)
            .unwrap_or_else(|e| panic!("{what}: read {len} at {start:#x}: {e}"));
        assert!(
            buf == expected[start as usize..start as usize + len],
            "{what}: read {len} at {start:#x} differs"
        );
    }
}

fn patch(path: &Path, at: u64, bytes: &[u8]) {
    use std::os::unix::fs::FileExt;
    let f = std::fs::OpenOptions::new().write(true).open(path).unwrap();
    f.write_all_at(bytes, at).unwrap();
}

fn header_u64(path: &Path, at: usize) -> u64 {
    let b = std::fs::read(path).unwrap();
    u64::from_be_bytes(b[at..at + 8].try_into().unwrap())
}

/// Error of opening `path` with format sniffing, as the CLI would.
fn open_err(path: &Path) -> rescue_io::Error {
    match open(path, OpenOptions::default()) {
        Ok(o) => panic!(
            "{} opened but should not have: {:?}",
            path.display(),
            o.format
        ),
        Err(e) => e,
    }
}

/// A real small qcow2 (64 KiB clusters) with data in its first clusters.
fn small_image(dir: &Path, name: &str) -> PathBuf {
    let raw = dir.join(format!("{name}.raw"));
    write_raw(&raw, 1 << 20, 99);
    let img = dir.join(name);
    qemu_img(&["convert", "-f", "raw", "-O", "qcow2", s(&raw), s(&img)]);
    img
}

// ------------------------------------------------------------ conversions

#[test]
fn converted_images_read_back_the_raw_bytes() {
    if !have("qemu-img") {
        return;
    }
    let dir = tempfile::tempdir().unwrap();
    let raw = dir.path().join("disk.raw");
    // Not a multiple of the cluster size: the last cluster is partial.
    let expected = write_raw(&raw, (5 << 20) + 3 * 512, 1);
    let variants: [(&str, &[&str], u32, u64); 5] = [
        ("default", &[], 3, 65536),
        ("4k-clusters", &["-o", "cluster_size=4096"], 3, 4096),
        ("compressed", &["-c"], 3, 65536),
        ("compressed-4k", &["-c", "-o", "cluster_size=4096"], 3, 4096),
        ("v2", &["-o", "compat=0.10"], 2, 65536),
    ];
    for (name, extra, version, cluster) in variants {
        let img = dir.path().join(format!("{name}.qcow2"));
        let mut args = vec!["convert", "-f", "raw", "-O", "qcow2"];
        args.extend_from_slice(extra);
        args.extend_from_slice(&[s(&raw), s(&img)]);
        qemu_img(&args);
        if extra.contains(&"-c") {
            let map = qemu_img(&["map", "--output=json", s(&img)]);
            assert!(
                map.contains("\"compressed\": true"),
                "{name}: qemu wrote no compressed cluster: {map}"
            );
        }
        let image = open_image(&img).unwrap_or_else(|e| panic!("{name}: {e}"));
        assert_eq!(image.version(), version, "{name}");
        assert_eq!(image.cluster_size_in_bytes(), cluster, "{name}");
        assert_eq!(image.virtual_size(), expected.len() as u64, "{name}");
        assert!(image.backing_chain().is_empty());
        assert_same(&read_all(&image), &expected, name);
        check_odd_reads(&image, &expected, name);

        // Through the generic entry point, with sniffing.
        let opened = open(&img, OpenOptions::default()).unwrap();
        assert_eq!(opened.format, Format::Qcow2);
        assert_same(&read_all(&*opened.device), &expected, name);
    }
}

// ---------------------------------------------------------- backing files

/// Writes into `top` with qemu-io: a data cluster, a zero cluster over
/// backing data, a sub-cluster write (copy-on-write from the backing file)
/// and a write past the end of a smaller backing file.
fn scribble(top: &Path) {
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
            "-c",
            "write -P 0xef 4352k 8k",
            s(top),
        ],
    );
}

fn overlay_case(backing_format: &str) {
    if !have("qemu-img") || !have("qemu-io") {
        return;
    }
    let dir = tempfile::tempdir().unwrap();
    let raw = dir.path().join("base.raw");
    let base_bytes = write_raw(&raw, 4 << 20, 2);
    let base = if backing_format == "qcow2" {
        let base = dir.path().join("base.qcow2");
        qemu_img(&["convert", "-f", "raw", "-O", "qcow2", s(&raw), s(&base)]);
        base
    } else {
        raw.clone()
    };
    let top = dir.path().join("top.qcow2");
    // The overlay is 1 MiB larger than its backing file: that tail reads as zeros.
    qemu_img(&[
        "create",
        "-f",
        "qcow2",
        "-b",
        s(&base),
        "-F",
        backing_format,
        s(&top),
        "5M",
    ]);
    scribble(&top);
    let expected = qemu_raw(&top, dir.path());
    assert_eq!(
        &expected[..64 << 10],
        &base_bytes[..64 << 10],
        "oracle sanity"
    );

    let opened = open(&top, OpenOptions::default()).unwrap();
    assert_eq!(opened.backing_chain, vec![base.clone()]);
    assert_same(&read_all(&*opened.device), &expected, backing_format);
    check_odd_reads(&*opened.device, &expected, backing_format);

    // Without the backing-format extension the format is sniffed. Renaming
    // the extension's type makes every reader (qemu included) skip it.
    let bytes = std::fs::read(&top).unwrap();
    let ext = bytes
        .windows(4)
        .position(|w| w == [0xe2, 0x79, 0x2a, 0xca])
        .expect("backing format extension");
    patch(&top, ext as u64, &[0x0b, 0xad, 0xf0, 0x0d]);
    let image = open_image(&top).unwrap();
    assert_same(&read_all(&image), &expected, "sniffed backing format");
}

#[test]
fn overlay_on_qcow2_backing_matches_qemu() {
    overlay_case("qcow2");
}

#[test]
fn overlay_on_raw_backing_matches_qemu() {
    overlay_case("raw");
}

#[test]
fn relative_backing_resolves_against_the_image_directory() {
    if !have("qemu-img") || !have("qemu-io") {
        return;
    }
    let dir = tempfile::tempdir().unwrap();
    std::fs::create_dir_all(dir.path().join("a")).unwrap();
    std::fs::create_dir_all(dir.path().join("b")).unwrap();
    let raw = dir.path().join("a/base.raw");
    write_raw(&raw, 2 << 20, 3);
    let mid = dir.path().join("a/mid.qcow2");
    let top = dir.path().join("b/top.qcow2");
    // mid names "base.raw" (its own directory), top names "../a/mid.qcow2".
    qemu_img(&[
        "create",
        "-f",
        "qcow2",
        "-b",
        "base.raw",
        "-F",
        "raw",
        s(&mid),
    ]);
    run(
        "qemu-io",
        &["-f", "qcow2", "-c", "write -P 0x42 128k 64k", s(&mid)],
    );
    qemu_img(&[
        "create",
        "-f",
        "qcow2",
        "-b",
        "../a/mid.qcow2",
        "-F",
        "qcow2",
        s(&top),
    ]);
    run(
        "qemu-io",
        &["-f", "qcow2", "-c", "write -P 0x24 0 4k", s(&top)],
    );
    let expected = qemu_raw(&top, dir.path());

    // Open the top through a path relative to the test's cwd (which is not
    // the image directory), so that resolving against the cwd would fail.
    let cwd = std::env::current_dir().unwrap();
    let ups = "../".repeat(cwd.components().count() - 1);
    let relative = PathBuf::from(format!("{ups}{}", top.strip_prefix("/").unwrap().display()));
    assert!(relative.is_relative());
    let opened = open(&relative, OpenOptions::default()).unwrap();
    let chain: Vec<PathBuf> = opened
        .backing_chain
        .iter()
        .map(|p| std::fs::canonicalize(p).unwrap())
        .collect();
    assert_eq!(
        chain,
        vec![
            std::fs::canonicalize(&mid).unwrap(),
            std::fs::canonicalize(&raw).unwrap()
        ]
    );
    assert_same(&read_all(&*opened.device), &expected, "relative chain");
}

#[test]
fn missing_backing_file_is_a_clear_error() {
    if !have("qemu-img") {
        return;
    }
    let dir = tempfile::tempdir().unwrap();
    let base = small_image(dir.path(), "base.qcow2");
    let top = dir.path().join("top.qcow2");
    qemu_img(&[
        "create",
        "-f",
        "qcow2",
        "-b",
        "base.qcow2",
        "-F",
        "qcow2",
        s(&top),
    ]);
    std::fs::remove_file(&base).unwrap();
    let e = open_err(&top);
    assert_err(
        &e,
        ErrorKind::NotFound,
        &[
            "top.qcow2",
            "base.qcow2",
            "copy or attach",
            "qemu-img convert",
        ],
    );
}

#[test]
fn backing_loops_are_refused() {
    if !have("qemu-img") {
        return;
    }
    let dir = tempfile::tempdir().unwrap();
    small_image(dir.path(), "c.qcow2");
    let a = dir.path().join("a.qcow2");
    let b = dir.path().join("b.qcow2");
    qemu_img(&[
        "create",
        "-f",
        "qcow2",
        "-b",
        "c.qcow2",
        "-F",
        "qcow2",
        s(&a),
    ]);
    qemu_img(&[
        "create",
        "-f",
        "qcow2",
        "-b",
        "a.qcow2",
        "-F",
        "qcow2",
        s(&b),
    ]);
    let name_at = header_u64(&a, 8);
    // a -> b -> a: rewrite a's backing name "c.qcow2" to "b.qcow2".
    patch(&a, name_at, b"b");
    assert_err(&open_err(&a), ErrorKind::Corrupt, &["b.qcow2", "loops"]);
    assert_err(&open_err(&b), ErrorKind::Corrupt, &["loops"]);
    // a -> a.
    patch(&a, name_at, b"a");
    assert_err(&open_err(&a), ErrorKind::Corrupt, &["a.qcow2", "loops"]);
}

#[test]
fn overly_deep_backing_chain_is_refused() {
    if !have("qemu-img") {
        return;
    }
    let dir = tempfile::tempdir().unwrap();
    small_image(dir.path(), "l0.qcow2");
    for i in 1..=17 {
        let prev = format!("l{}.qcow2", i - 1);
        let this = dir.path().join(format!("l{i}.qcow2"));
        qemu_img(&[
            "create",
            "-f",
            "qcow2",
            "-b",
            &prev,
            "-F",
            "qcow2",
            "-u",
            s(&this),
            "1M",
        ]);
    }
    // 16 backing files are fine, 17 are not.
    let ok = open(&dir.path().join("l16.qcow2"), OpenOptions::default()).unwrap();
    assert_eq!(ok.backing_chain.len(), 16);
    assert_err(
        &open_err(&dir.path().join("l17.qcow2")),
        ErrorKind::Unsupported,
        &["deeper than 16", "qemu-img convert"],
    );
}

// ------------------------------------------------------------- bad inputs

#[test]
fn empty_file_is_refused() {
    let dir = tempfile::tempdir().unwrap();
    let p = dir.path().join("empty.qcow2");
    std::fs::write(&p, b"").unwrap();
    assert_err(&open_err(&p), ErrorKind::Empty, &["empty"]);
    let forced = open(
        &p,
        OpenOptions {
            format: Some(Format::Qcow2),
        },
    )
    .unwrap_err();
    assert_err(&forced, ErrorKind::Empty, &["empty.qcow2", "empty"]);
}

#[test]
fn truncated_image_reads_fail_with_the_offset() {
    if !have("qemu-img") {
        return;
    }
    let dir = tempfile::tempdir().unwrap();
    let raw = dir.path().join("disk.raw");
    let expected = write_raw(&raw, 4 << 20, 4);
    let img = dir.path().join("disk.qcow2");
    qemu_img(&["convert", "-f", "raw", "-O", "qcow2", s(&raw), s(&img)]);
    // The oracle: where qemu put each guest range.
    let map = qemu_img(&["map", "--output=json", s(&img)]);
    // (guest offset, host offset) of every allocated 64 KiB cluster.
    let clusters: Vec<(u64, u64)> = map
        .lines()
        .filter(|l| l.contains("\"offset\""))
        .flat_map(|l| {
            let field = |name: &str| -> u64 {
                let at = l.find(&format!("\"{name}\": ")).unwrap() + name.len() + 4;
                l[at..]
                    .split(|c: char| !c.is_ascii_digit())
                    .next()
                    .unwrap()
                    .parse()
                    .unwrap()
            };
            let (start, length, host) = (field("start"), field("length"), field("offset"));
            (0..length / 65536).map(move |k| (start + k * 65536, host + k * 65536))
        })
        .collect();
    let file_len = std::fs::metadata(&img).unwrap().len();
    // Cut in the middle of a data cluster about half way through the file.
    let (start, host) = *clusters
        .iter()
        .find(|&&(_, host)| host >= file_len / 2)
        .expect("a data cluster");
    let cut = host + 32 * 1024;
    std::fs::OpenOptions::new()
        .write(true)
        .open(&img)
        .unwrap()
        .set_len(cut)
        .unwrap();

    let image = open_image(&img).expect("metadata precedes data: the image still opens");
    // The surviving half of the cut cluster still reads.
    let mut half = vec![0u8; 32 * 1024];
    image.read_exact_at(start, &mut half).unwrap();
    assert!(half == expected[start as usize..start as usize + half.len()]);
    // Its second half is gone: an error with the host offset, never zeros.
    let mut buf = vec![0u8; 4096];
    let e = image
        .read_exact_at(start + 32 * 1024, &mut buf)
        .unwrap_err();
    assert_err(
        &e,
        ErrorKind::Truncated,
        &["disk.qcow2", "truncated", &format!("{:#x}", cut)],
    );
    assert_eq!(e.offset(), Some(cut));
    // A later cluster that lies wholly beyond the cut.
    let (later, later_host) = *clusters
        .iter()
        .find(|&&(_, h)| h > cut)
        .expect("a later cluster");
    let e = image.read_exact_at(later, &mut buf).unwrap_err();
    assert_eq!(e.kind(), ErrorKind::Truncated);
    assert_eq!(e.offset(), Some(later_host));
}

/// Copies a real image and applies `edit` to its bytes.
fn edited(dir: &Path, name: &str, edit: impl FnOnce(&mut Vec<u8>)) -> PathBuf {
    let src = dir.join("good.qcow2");
    if !src.exists() {
        small_image(dir, "good.qcow2");
    }
    let mut bytes = std::fs::read(&src).unwrap();
    edit(&mut bytes);
    let p = dir.join(name);
    std::fs::write(&p, bytes).unwrap();
    p
}

fn put32(b: &mut [u8], at: usize, v: u32) {
    b[at..at + 4].copy_from_slice(&v.to_be_bytes());
}

fn put64(b: &mut [u8], at: usize, v: u64) {
    b[at..at + 8].copy_from_slice(&v.to_be_bytes());
}

fn get64(b: &[u8], at: usize) -> u64 {
    u64::from_be_bytes(b[at..at + 8].try_into().unwrap())
}

#[test]
fn corrupted_headers_are_refused_with_the_reason() {
    if !have("qemu-img") {
        return;
    }
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();
    type Edit = Box<dyn FnOnce(&mut Vec<u8>)>;
    let cases: Vec<(&str, Edit, ErrorKind, Vec<&str>)> = vec![
        (
            "version1",
            Box::new(|b| put32(b, 4, 1)),
            ErrorKind::Unsupported,
            vec!["version 1", "qemu-img convert"],
        ),
        (
            "version9",
            Box::new(|b| put32(b, 4, 9)),
            ErrorKind::Unsupported,
            vec!["version 9"],
        ),
        (
            "bits8",
            Box::new(|b| put32(b, 20, 8)),
            ErrorKind::Unsupported,
            vec!["cluster_bits 8", "0x14"],
        ),
        (
            "bits11",
            Box::new(|b| put32(b, 20, 11)),
            ErrorKind::Unsupported,
            vec!["cluster_bits 11", "cluster_size=65536"],
        ),
        (
            "bits40",
            Box::new(|b| put32(b, 20, 40)),
            ErrorKind::Unsupported,
            vec!["cluster_bits 40"],
        ),
        (
            "huge",
            Box::new(|b| put64(b, 24, 1 << 62)),
            ErrorKind::Corrupt,
            vec!["virtual size", "absurd"],
        ),
        (
            "bigger-than-l1",
            Box::new(|b| put64(b, 24, 1 << 45)),
            ErrorKind::Corrupt,
            vec!["L1 table has 1 entries"],
        ),
        (
            "hdrlen-small",
            Box::new(|b| put32(b, 100, 7)),
            ErrorKind::Corrupt,
            vec!["header_length 7"],
        ),
        (
            "hdrlen-huge",
            Box::new(|b| put32(b, 100, u32::MAX)),
            ErrorKind::Corrupt,
            vec!["header_length 4294967295"],
        ),
        (
            "l1-past-eof",
            Box::new(|b| put64(b, 40, 1 << 40)),
            ErrorKind::Corrupt,
            vec!["L1 table", "beyond the end of the file"],
        ),
        (
            "l1-unaligned",
            Box::new(|b| put64(b, 40, 0x30200)),
            ErrorKind::Corrupt,
            vec!["L1 table offset 0x30200"],
        ),
        (
            "l1-too-big",
            Box::new(|b| put32(b, 36, 1 << 24)),
            ErrorKind::Corrupt,
            vec!["32 MiB"],
        ),
        (
            "refcount-huge",
            Box::new(|b| put32(b, 56, 1 << 20)),
            ErrorKind::Corrupt,
            vec!["refcount table", "8 MiB"],
        ),
        (
            "refcount-zero",
            Box::new(|b| put32(b, 56, 0)),
            ErrorKind::Corrupt,
            vec!["refcount table has 0 clusters"],
        ),
        (
            "snapshots",
            Box::new(|b| {
                put32(b, 60, 3);
                put64(b, 64, 1 << 40);
            }),
            ErrorKind::Corrupt,
            vec!["snapshot table"],
        ),
        (
            "backing-long",
            Box::new(|b| {
                put64(b, 8, 0x200);
                put32(b, 16, 5000);
            }),
            ErrorKind::Corrupt,
            vec!["backing file name", "1023"],
        ),
        (
            "backing-outside",
            Box::new(|b| {
                put64(b, 8, 65536 - 4);
                put32(b, 16, 100);
            }),
            ErrorKind::Corrupt,
            vec!["backing file name", "first cluster"],
        ),
        (
            "refcount-order",
            Box::new(|b| put32(b, 96, 7)),
            ErrorKind::Corrupt,
            vec!["refcount_order 7"],
        ),
        (
            "unknown-feature",
            Box::new(|b| b[79] |= 1 << 5),
            ErrorKind::Unsupported,
            vec!["unknown incompatible features", "bit 5"],
        ),
        (
            "corrupt-bit",
            Box::new(|b| b[79] |= 1 << 1),
            ErrorKind::Corrupt,
            vec!["marked this image corrupt", "qemu-img check"],
        ),
        (
            "crypt-aes",
            Box::new(|b| put32(b, 32, 1)),
            ErrorKind::Unsupported,
            vec![
                "AES",
                "encrypted qcow2 images are not supported",
                "qemu-img convert",
            ],
        ),
        (
            "bad-magic",
            Box::new(|b| b[3] = 0),
            ErrorKind::Corrupt,
            vec!["bad magic"],
        ),
    ];
    for (name, edit, kind, needles) in cases {
        let p = edited(d, name, edit);
        let e = open(
            &p,
            OpenOptions {
                format: Some(Format::Qcow2),
            },
        )
        .map(|_| ())
        .unwrap_err();
        assert_err(&e, kind, &needles);
        assert!(
            e.to_string().contains(name),
            "{name}: message names the file: {e}"
        );
    }
    // A header cut short.
    let p = edited(d, "short", |b| b.truncate(90));
    assert_err(
        &open_err(&p),
        ErrorKind::Truncated,
        &["too short", "truncated"],
    );
}

#[test]
fn corrupted_l1_entries_are_refused() {
    if !have("qemu-img") {
        return;
    }
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();
    let l1_of = |b: &Vec<u8>| get64(b, 40) as usize;
    let p = edited(d, "l1-eof.qcow2", |b| {
        let l1 = l1_of(b);
        put64(b, l1, (1 << 63) | (1 << 40));
    });
    assert_err(
        &open_err(&p),
        ErrorKind::Corrupt,
        &["L1 entry 0", "0x10000000000", "beyond the end of the file"],
    );
    let p = edited(d, "l1-unaligned.qcow2", |b| {
        let l1 = l1_of(b);
        let entry = get64(b, l1);
        put64(b, l1, entry + 0x200);
    });
    let e = open_err(&p);
    assert_err(&e, ErrorKind::Corrupt, &["L1 entry 0", "not aligned"]);
    assert_eq!(e.offset(), Some(header_u64(&p, 40)));
}

#[test]
fn encrypted_image_is_refused() {
    if !have("qemu-img") {
        return;
    }
    let dir = tempfile::tempdir().unwrap();
    let p = dir.path().join("enc.qcow2");
    let status = Command::new("qemu-img")
        .args([
            "create",
            "-f",
            "qcow2",
            "--object",
            "secret,id=sec0,data=abc",
        ])
        .args([
            "-o",
            "encrypt.format=luks,encrypt.key-secret=sec0",
            s(&p),
            "16M",
        ])
        .output()
        .unwrap();
    if !status.status.success() {
        // This qemu-img lacks LUKS: mark a plain image as encrypted instead.
        small_image(dir.path(), "plain.qcow2");
        let mut b = std::fs::read(dir.path().join("plain.qcow2")).unwrap();
        put32(&mut b, 32, 2);
        std::fs::write(&p, b).unwrap();
    }
    assert_err(
        &open_err(&p),
        ErrorKind::Unsupported,
        &[
            "LUKS",
            "encrypted qcow2 images are not supported",
            "qemu-img convert",
        ],
    );
}

#[test]
fn unsupported_features_of_real_images_are_named() {
    if !have("qemu-img") {
        return;
    }
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();
    let cases: [(&str, &str, &[&str]); 3] = [
        (
            "zstd.qcow2",
            "compression_type=zstd",
            &["zstd", "compression_type=zlib"],
        ),
        (
            "extl2.qcow2",
            "extended_l2=on",
            &["extended L2", "extended_l2=off"],
        ),
        (
            "datafile.qcow2",
            "data_file=datafile.raw",
            &["external data file", "qemu-img convert"],
        ),
    ];
    for (name, option, needles) in cases {
        let p = d.join(name);
        let out = Command::new("qemu-img")
            .current_dir(d)
            .args(["create", "-f", "qcow2", "-o", option, name, "1M"])
            .output()
            .unwrap();
        if !out.status.success() {
            // e.g. a qemu-img built without zstd: nothing to test for it.
            eprintln!("skipping {name}: {}", String::from_utf8_lossy(&out.stderr));
            continue;
        }
        assert_err(&open_err(&p), ErrorKind::Unsupported, needles);
    }
}

#[test]
fn dirty_image_is_readable_and_reported() {
    if !have("qemu-img") || !have("qemu-io") {
        return;
    }
    let dir = tempfile::tempdir().unwrap();
    let p = dir.path().join("dirty.qcow2");
    qemu_img(&[
        "create",
        "-f",
        "qcow2",
        "-o",
        "lazy_refcounts=on",
        s(&p),
        "2M",
    ]);
    // qemu-io aborting after a write leaves the dirty bit set, as a crash would.
    let out = Command::new("qemu-io")
        .args([
            "-f",
            "qcow2",
            "-c",
            "write -P 0x5a 64k 64k",
            "-c",
            "abort",
            s(&p),
        ])
        .output()
        .unwrap();
    assert!(!out.status.success(), "qemu-io abort should kill qemu-io");
    let image = open_image(&p).unwrap();
    assert!(image.is_dirty());
    assert_same(&read_all(&image), &qemu_raw(&p, dir.path()), "dirty image");
}

#[test]
fn internal_snapshots_read_the_active_layer() {
    if !have("qemu-img") || !have("qemu-io") {
        return;
    }
    let dir = tempfile::tempdir().unwrap();
    let p = small_image(dir.path(), "snap.qcow2");
    qemu_img(&["snapshot", "-c", "s1", s(&p)]);
    // Diverge the active layer from the snapshot.
    run(
        "qemu-io",
        &["-f", "qcow2", "-c", "write -P 0x77 0 96k", s(&p)],
    );
    let image = open_image(&p).unwrap();
    assert!(image.has_internal_snapshots());
    assert_same(&read_all(&image), &qemu_raw(&p, dir.path()), "active layer");

    let plain = open_image(&small_image(dir.path(), "plain.qcow2")).unwrap();
    assert!(!plain.has_internal_snapshots());
}

// --------------------------------------------------------- fuzz and speed

#[test]
fn fuzz_mutations_of_a_real_image_never_panic() {
    if !have("qemu-img") {
        return;
    }
    let dir = tempfile::tempdir().unwrap();
    let raw = dir.path().join("f.raw");
    write_raw(&raw, 256 << 10, 5);
    let img = dir.path().join("f.qcow2");
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
        s(&img),
    ]);
    let base = std::fs::read(&img).unwrap();
    rescue_io::fuzz_qcow2_header(&base);
    let l1 = get64(&base, 40) as usize;
    let mut rng = XorShift(0x1234_5678_9abc_def1);
    for _ in 0..3000 {
        let mut data = base.clone();
        for _ in 0..1 + rng.next() % 4 {
            let r = rng.next();
            let at = match r % 4 {
                0 | 1 => (rng.next() % 128) as usize,
                2 => (l1 + (rng.next() % 8192) as usize).min(data.len() - 1),
                _ => (rng.next() % data.len() as u64) as usize,
            };
            data[at] = (r >> 24) as u8;
        }
        rescue_io::fuzz_qcow2_header(&data);
    }
}

#[test]
fn opening_a_20g_image_is_fast() {
    if !have("qemu-img") {
        return;
    }
    let dir = tempfile::tempdir().unwrap();
    let p = dir.path().join("big.qcow2");
    qemu_img(&["create", "-f", "qcow2", s(&p), "20G"]);
    let t = Instant::now();
    let opened = open(&p, OpenOptions::default()).unwrap();
    let opened_at = t.elapsed();
    let mut buf = vec![0xffu8; 1 << 20];
    opened.device.read_exact_at(0, &mut buf).unwrap();
    let total = t.elapsed();
    assert!(buf.iter().all(|&b| b == 0));
    assert_eq!(opened.device.size_in_bytes(), 20 << 30);
    println!("20 GiB qcow2: open {opened_at:?}, open + read first 1 MiB {total:?}");
}

#[test]
fn failed_l2_read_does_not_leave_zeros_in_the_cache() {
    if !have("qemu-img") {
        return;
    }
    let dir = tempfile::tempdir().unwrap();
    let raw = dir.path().join("c.raw");
    let expected = write_raw(&raw, 1 << 20, 6);
    let img = dir.path().join("c.qcow2");
    qemu_img(&["convert", "-f", "raw", "-O", "qcow2", s(&raw), s(&img)]);
    let original = std::fs::read(&img).unwrap();
    let l2 = get64(&original, get64(&original, 40) as usize) & 0x00ff_ffff_ffff_fe00;
    let image = open_image(&img).unwrap();
    // The file shrinks under us (e.g. a copy still in progress), cutting the L2 table.
    std::fs::OpenOptions::new()
        .write(true)
        .open(&img)
        .unwrap()
        .set_len(l2)
        .unwrap();
    let mut buf = vec![0u8; 4096];
    let e = image.read_exact_at(0, &mut buf).unwrap_err();
    assert_err(&e, ErrorKind::Truncated, &["L2 table"]);
    // Once the file is whole again, reads must see the real data: qcow2-rs
    // would otherwise keep serving the zero-filled slice it cached.
    std::fs::write(&img, &original).unwrap();
    assert_same(&read_all(&image), &expected, "after recovery");
}
