//! `cargo xtask`: developer tasks for rescue-disk.
//!
//! ```text
//! cargo xtask fixtures [LAYOUT...]   build fixture images (all by default)
//! cargo xtask demo                   write fixtures/demo/demo.qcow2
//! cargo xtask determinism            build everything twice, compare hashes
//! cargo xtask standins               regenerate the binary stand-ins of the trees
//! cargo xtask md5sums                recompute the dpkg digests of the Debian tree
//! cargo xtask bench                  time `inspect` on a 20 GiB guest (docs/PERFORMANCE.md)
//! cargo xtask bench-write [RUNS]     time replacing /etc/fstab in that guest, five ways (root)
//! cargo xtask man [DIR]              man pages and shell completions (default target/dist)
//! cargo xtask real-guest ...         real Debian 12 guest: build (root), boot under qemu + ssh
//! ```
//!
//! Must never: modify committed files except through `demo`, `standins`
//! and `md5sums`, which exist for that purpose.

mod bench_write;

use std::io::Read;
use std::path::Path;
use std::time::Instant;

use anyhow::{bail, Context, Result};

const USAGE: &str = "usage: cargo xtask <command>

commands:
  fixtures [LAYOUT...]  build fixture images into <target>/fixtures (all layouts by default)
  demo                  build the committed demo image fixtures/demo/demo.qcow2
  determinism           build every layout and the demo twice, compare sha256
  standins              regenerate the binary stand-ins in fixtures/trees
  md5sums               recompute dpkg md5sums/conffile digests of fixtures/trees/debian12
  bench [RUNS]          build the 20 GiB big-debian guest and time release `inspect` on it
  bench-write [RUNS]    time replacing /etc/fstab in big-debian: put, debugfs -w, loop mounts (root)
  man [DIR]             write man pages (DIR/man1) and completions (DIR/completions); DIR defaults to <target>/dist
  real-guest build|boot|tools  real Debian 12 guest image (mmdebstrap, root) and qemu+ssh boots (`real-guest help`)";

fn main() {
    if let Err(e) = run() {
        eprintln!("error: {e:#}");
        std::process::exit(2);
    }
}

fn run() -> Result<()> {
    let args: Vec<String> = std::env::args().skip(1).collect();
    match args.first().map(String::as_str) {
        Some("fixtures") => fixtures(&args[1..]),
        Some("demo") => demo(),
        Some("determinism") => determinism(),
        Some("standins") => standins(),
        Some("md5sums") => md5sums(),
        Some("bench") => bench(args.get(1).map(String::as_str)),
        Some("bench-write") => bench_write::run(args.get(1).map(String::as_str)),
        Some("man") => man(args.get(1).map(String::as_str)),
        Some("real-guest") => xtask::real_guest::cli(&args[1..]),
        Some("-h" | "--help" | "help") | None => {
            println!("{USAGE}");
            Ok(())
        }
        Some(other) => bail!("unknown command {other:?}\n\n{USAGE}"),
    }
}

fn fixtures(names: &[String]) -> Result<()> {
    let started = Instant::now();
    let list: Vec<&str> = if names.is_empty() {
        xtask::layouts().to_vec()
    } else {
        names.iter().map(String::as_str).collect()
    };
    for layout in list {
        let missing = xtask::missing_tools(layout);
        if !missing.is_empty() {
            bail!(
                "fixture layout {layout} cannot be built here: missing {}",
                missing.join(", ")
            );
        }
        let raw = xtask::fixture(layout, xtask::Format::Raw)?;
        let qcow2 = xtask::fixture(layout, xtask::Format::Qcow2)?;
        println!("{layout}: {} {}", raw.display(), qcow2.display());
    }
    println!("done in {:.1}s", started.elapsed().as_secs_f64());
    Ok(())
}

fn demo() -> Result<()> {
    let dest = xtask::fixtures_source_dir().join("demo/demo.qcow2");
    let started = Instant::now();
    xtask::build_demo(&dest)?;
    let size = std::fs::metadata(&dest)?.len();
    println!(
        "wrote {} ({} KiB, sha256 {}) in {:.1}s",
        dest.display(),
        size / 1024,
        xtask::sha256_file(&dest)?,
        started.elapsed().as_secs_f64()
    );
    Ok(())
}

/// Byte ranges where two files differ, merged when closer than 4 KiB.
fn diff_ranges(a: &Path, b: &Path) -> Result<Vec<(u64, u64)>> {
    let mut fa = std::fs::File::open(a)?;
    let mut fb = std::fs::File::open(b)?;
    let (mut ba, mut bb) = (vec![0u8; 1 << 16], vec![0u8; 1 << 16]);
    let mut ranges: Vec<(u64, u64)> = Vec::new();
    let mut pos = 0u64;
    loop {
        let na = read_full(&mut fa, &mut ba)?;
        let nb = read_full(&mut fb, &mut bb)?;
        let n = na.max(nb);
        if n == 0 {
            break;
        }
        for i in 0..n {
            if ba.get(i).filter(|_| i < na) != bb.get(i).filter(|_| i < nb) {
                let at = pos + i as u64;
                match ranges.last_mut() {
                    Some(r) if at <= r.1 + 4096 => r.1 = at,
                    _ => ranges.push((at, at)),
                }
            }
        }
        pos += n as u64;
    }
    Ok(ranges)
}

fn read_full(f: &mut std::fs::File, buf: &mut [u8]) -> Result<usize> {
    let mut n = 0;
    while n < buf.len() {
        let k = f.read(&mut buf[n..])?;
        if k == 0 {
            break;
        }
        n += k;
    }
    Ok(n)
}

fn determinism() -> Result<()> {
    let parent = xtask::output_dir().join("custom");
    std::fs::create_dir_all(&parent)?;
    let a = tempfile::Builder::new()
        .prefix("determinism-a-")
        .tempdir_in(&parent)?;
    let b = tempfile::Builder::new()
        .prefix("determinism-b-")
        .tempdir_in(&parent)?;
    let mut times = Vec::new();
    for dir in [a.path(), b.path()] {
        let started = Instant::now();
        for layout in xtask::layouts() {
            if !xtask::missing_tools(layout).is_empty() {
                println!(
                    "{layout}: skipped (missing {})",
                    xtask::missing_tools(layout).join(", ")
                );
                continue;
            }
            xtask::build_layout(layout, dir).with_context(|| format!("building {layout}"))?;
        }
        xtask::build_demo(&dir.join("demo.qcow2"))?;
        times.push(started.elapsed().as_secs_f64());
    }
    println!("build times: {:.1}s and {:.1}s", times[0], times[1]);
    let mut all_same = true;
    let mut files: Vec<String> = Vec::new();
    for layout in xtask::layouts() {
        for ext in ["raw", "qcow2", "expect.json"] {
            files.push(format!("{layout}.{ext}"));
        }
    }
    files.push("demo.qcow2".into());
    for f in files {
        let (pa, pb) = (a.path().join(&f), b.path().join(&f));
        if !pa.exists() {
            continue;
        }
        let (ha, hb) = (xtask::sha256_file(&pa)?, xtask::sha256_file(&pb)?);
        if ha == hb {
            println!("identical  {f}  {ha}");
        } else {
            all_same = false;
            let ranges = diff_ranges(&pa, &pb)?;
            let shown: Vec<String> = ranges
                .iter()
                .take(8)
                .map(|(s, e)| format!("{s:#x}..={e:#x}"))
                .collect();
            println!(
                "DIFFERENT  {f}  {} range(s): {}{}",
                ranges.len(),
                shown.join(", "),
                if ranges.len() > 8 { ", ..." } else { "" }
            );
        }
    }
    if !all_same {
        println!("note: lvm-rhel differs by design: LVM writes creation_time, the host name and the loop device into its metadata text (PV metadata area, first MiB of the PV)");
    }
    Ok(())
}

fn standins() -> Result<()> {
    let trees = xtask::tree::trees_dir();
    let mut n = 0;
    for s in xtask::standins::all() {
        let p = trees.join(s.tree).join(&s.path);
        if std::fs::read(&p).ok().as_deref() != Some(&s.bytes[..]) {
            if let Some(d) = p.parent() {
                std::fs::create_dir_all(d)?;
            }
            std::fs::write(&p, &s.bytes).with_context(|| format!("writing {}", p.display()))?;
            println!("wrote {}", p.display());
            n += 1;
        }
    }
    println!("{n} stand-in(s) updated");
    Ok(())
}

fn md5sums() -> Result<()> {
    let dir = tempfile::tempdir()?;
    let staged = xtask::StagedTree::stage(
        "debian12",
        xtask::layout::tokens("gpt-debian")?,
        &dir.path().join("stage"),
    )?;
    let committed = xtask::tree::trees_dir().join("debian12");
    let n = xtask::dpkg::refresh(&committed, staged.root())?;
    println!("{n} digest(s) updated in {}", committed.display());
    let again = xtask::StagedTree::stage(
        "debian12",
        xtask::layout::tokens("gpt-debian")?,
        &dir.path().join("check"),
    )?;
    let problems = xtask::dpkg::check(again.root())?;
    for p in &problems {
        println!("still inconsistent: {p}");
    }
    Ok(())
}

/// Times `rescue-disk inspect --json` (release build) on the 20 GiB
/// `big-debian` guest as raw and qcow2, and reports the bytes it read.
/// A benchmark, not a test: it prints figures for docs/PERFORMANCE.md.
fn bench(runs: Option<&str>) -> Result<()> {
    let runs: usize = runs.map(str::parse).transpose()?.unwrap_or(20).max(1);
    let started = Instant::now();
    let raw = xtask::fixture("big-debian", xtask::Format::Raw)?;
    let qcow2 = xtask::fixture("big-debian", xtask::Format::Qcow2)?;
    println!(
        "big-debian ready in {:.1}s",
        started.elapsed().as_secs_f64()
    );
    let root = xtask::fixtures_source_dir()
        .parent()
        .context("workspace root")?
        .to_path_buf();
    let status =
        std::process::Command::new(std::env::var("CARGO").unwrap_or_else(|_| "cargo".into()))
            .args(["build", "--release", "--quiet", "-p", "rescue-disk"])
            .current_dir(&root)
            .status()?;
    if !status.success() {
        bail!("cargo build --release failed");
    }
    let bin = xtask::target_dir().join("release/rescue-disk");
    for image in [&raw, &qcow2] {
        let virtual_size = {
            let out = std::process::Command::new("qemu-img")
                .args(["info", "--output=json"])
                .arg(image)
                .output()?;
            let v: serde_json::Value = serde_json::from_slice(&out.stdout)?;
            v["virtual-size"].as_u64().unwrap_or(0)
        };
        let mut times = Vec::with_capacity(runs);
        let mut read_line = String::new();
        for _ in 0..runs {
            let t = Instant::now();
            let out = std::process::Command::new(&bin)
                .args(["-v", "inspect", "--json"])
                .arg(image)
                .env("NO_COLOR", "1")
                .output()?;
            times.push(t.elapsed().as_secs_f64() * 1000.0);
            if !out.status.success() {
                bail!("inspect failed: {}", String::from_utf8_lossy(&out.stderr));
            }
            read_line = String::from_utf8_lossy(&out.stderr)
                .lines()
                .find(|l| l.contains("bytes from the host"))
                .unwrap_or("")
                .trim()
                .to_string();
        }
        times.sort_by(f64::total_cmp);
        println!(
            "{}: virtual {} GiB, file {} MiB; inspect --json over {runs} runs: min {:.1} ms, median {:.1} ms, max {:.1} ms; {read_line}",
            image.file_name().unwrap_or_default().to_string_lossy(),
            virtual_size >> 30,
            std::fs::metadata(image)?.len() >> 20,
            times[0],
            times[times.len() / 2],
            times[times.len() - 1],
        );
    }
    Ok(())
}

fn man(dir: Option<&str>) -> Result<()> {
    let dir = dir
        .map(std::path::PathBuf::from)
        .unwrap_or_else(|| xtask::target_dir().join("dist"));
    for f in xtask::docs::generate(&dir)? {
        println!("{}", f.display());
    }
    Ok(())
}
