//! Mutation tests for every parser of untrusted bytes: valid samples made by
//! the real tools (sgdisk, sfdisk, mkfs.*, mkswap, cryptsetup, pvcreate) or
//! written down from real LVM output, mutated a few thousand times with a
//! deterministic xorshift generator and fed to the `fuzz_*` entry points.
//! The only expectation is the design rule: no panic, no hang, whatever the
//! bytes. For GPT, checksums are also repaired after mutating so the `gpt`
//! crate itself sees hostile but self-consistent headers, and it must never
//! have to be caught panicking.

mod common;

use std::ops::Range;
use std::path::Path;
use std::sync::Arc;

use common::*;
use rescue_volumes::{
    discover, fuzz_discover, fuzz_gpt, fuzz_lvm_metadata, fuzz_lvm_pv, fuzz_mbr, fuzz_probe,
    MemDisk,
};

const ROUNDS: usize = 3000;

/// Mutates `data` in place inside `hot` ranges (or anywhere), returning
/// the original bytes to restore.
fn mutate(rng: &mut XorShift, data: &mut [u8], hot: &[Range<usize>]) -> Vec<(usize, u8)> {
    let mut undo = Vec::new();
    let edits = 1 + rng.below(8) as usize;
    for _ in 0..edits {
        let range = if hot.is_empty() || rng.below(8) == 0 {
            0..data.len()
        } else {
            hot[rng.below(hot.len() as u64) as usize].clone()
        };
        if range.is_empty() {
            continue;
        }
        let pos = range.start + rng.below((range.end - range.start) as u64) as usize;
        let interesting: [u64; 8] = [0, 1, 0x7f, 0x80, 0xffff, 0x7fff_ffff, 0xffff_ffff, u64::MAX];
        let bytes: Vec<u8> = match rng.below(4) {
            0 => vec![rng.next() as u8],
            1 => vec![data[pos] ^ (1 << rng.below(8))],
            2 => interesting[rng.below(8) as usize].to_le_bytes()[..4].to_vec(),
            _ => interesting[rng.below(8) as usize].to_le_bytes().to_vec(),
        };
        for (i, b) in bytes.into_iter().enumerate() {
            if let Some(slot) = data.get_mut(pos + i) {
                undo.push((pos + i, *slot));
                *slot = b;
            }
        }
    }
    undo
}

fn restore(data: &mut [u8], undo: Vec<(usize, u8)>) {
    for (pos, b) in undo.into_iter().rev() {
        data[pos] = b;
    }
}

/// Standard CRC-32, written independently of the crate.
fn crc32(data: &[u8]) -> u32 {
    let mut crc = 0xffff_ffffu32;
    for &b in data {
        crc ^= u32::from(b);
        for _ in 0..8 {
            crc = if crc & 1 != 0 {
                (crc >> 1) ^ 0xedb8_8320
            } else {
                crc >> 1
            };
        }
    }
    !crc
}

/// Recomputes the entry-array and header CRCs of the GPT header at `lba`
/// (512-byte sectors) so a mutated header still passes checksum checks.
fn fix_gpt_crcs(data: &mut [u8], lba: usize) {
    let h = lba * 512;
    if data.len() < h + 512 {
        return;
    }
    let le32 = |d: &[u8], o: usize| u32::from_le_bytes(d[o..o + 4].try_into().unwrap());
    let entries_lba = u64::from_le_bytes(data[h + 72..h + 80].try_into().unwrap());
    let len = u64::from(le32(data, h + 80)) * u64::from(le32(data, h + 84));
    if let Some(start) = entries_lba.checked_mul(512) {
        if len <= 1 << 20 && start.saturating_add(len) <= data.len() as u64 {
            let crc = crc32(&data[start as usize..(start + len) as usize]);
            data[h + 88..h + 92].copy_from_slice(&crc.to_le_bytes());
        }
    }
    let size = (le32(data, h + 12) as usize).clamp(92, 512);
    data[h + 16..h + 20].fill(0);
    let crc = crc32(&data[h..h + size]);
    data[h + 16..h + 20].copy_from_slice(&crc.to_le_bytes());
}

#[test]
fn gpt_mutations_never_panic_and_never_reach_a_crate_panic() {
    if !have_tools("gpt_mutations", &["sgdisk"]) {
        return;
    }
    let dir = tempfile::tempdir().unwrap();
    let img = dir.path().join("gpt.img");
    sparse(&img, 256 * 1024);
    run(
        "sgdisk",
        &[
            "-a",
            "1",
            "-n1:34:+64K",
            "-t1:ef00",
            "-c1:EFI",
            "-n2:0:+64K",
            "-t2:8300",
            img.to_str().unwrap(),
        ],
    );
    let mut data = std::fs::read(&img).unwrap();
    let n = data.len();
    let hot = [
        0..512,
        512..604,
        1024..1024 + 3 * 128,
        n - 512..n - 420,
        n - 33 * 512..n - 33 * 512 + 3 * 128,
    ];
    let mut rng = XorShift(0x6a09_e667_f3bc_c908);
    for round in 0..ROUNDS {
        let saved = data.clone();
        mutate(&mut rng, &mut data, &hot);
        if round % 2 == 0 {
            fix_gpt_crcs(&mut data, 1);
        }
        if round % 3 == 0 {
            fix_gpt_crcs(&mut data, n / 512 - 1);
        }
        fuzz_gpt(&data);
        if let Ok(disk) = discover(Arc::new(MemDisk::new(data.clone(), "mutant"))) {
            for d in &disk.diagnostics {
                assert!(
                    !d.message.contains("panicked"),
                    "round {round}: {}",
                    d.message
                );
            }
        }
        // The CRC repairs are not in the undo list: restore everything.
        data.copy_from_slice(&saved);
    }
}

#[test]
fn mbr_mutations_never_panic() {
    if !have_tools("mbr_mutations", &["sfdisk"]) {
        return;
    }
    let dir = tempfile::tempdir().unwrap();
    let img = dir.path().join("mbr.img");
    sparse(&img, 512 * 1024);
    let script = "label: dos\nlabel-id: 0xdeadbeef\nstart=8,size=64,type=83,bootable\nstart=80,size=800,type=5\nstart=96,size=64,type=83\nstart=176,size=64,type=82\nstart=256,size=64,type=83\n";
    run_with(
        "sfdisk",
        &["-q", "--no-reread", img.to_str().unwrap()],
        Some(script.as_bytes()),
        &[],
    );
    let (_, parts) = sfdisk_parts(&sfdisk_json(&img));
    assert_eq!(parts.iter().filter(|p| p.number >= 5).count(), 3);
    let mut data = std::fs::read(&img).unwrap();
    // The MBR and every EBR (the sectors holding a 0x55aa signature).
    let hot: Vec<Range<usize>> = (0..data.len() / 512)
        .filter(|s| data[s * 512 + 510..s * 512 + 512] == [0x55, 0xaa])
        .map(|s| s * 512 + 440..s * 512 + 512)
        .collect();
    assert!(hot.len() >= 4, "MBR + 3 EBRs expected");
    let mut rng = XorShift(0xbb67_ae85_84ca_a73b);
    for _ in 0..ROUNDS {
        let undo = mutate(&mut rng, &mut data, &hot);
        fuzz_mbr(&data);
        fuzz_discover(&data[..(64 * 1024).min(data.len())]);
        restore(&mut data, undo);
    }
}

/// Metadata text as LVM 2.03 writes it (captured from `pvcreate` +
/// `vgcreate` + `lvcreate` + `lvextend` in this project's test setup).
const LVM_TEXT: &str = r#"vgt {
id = "LWxAIP-8XS2-Q0wY-T7mv-KJtp-gtc9-bWfdTn"
seqno = 4
format = "lvm2"
status = ["RESIZEABLE", "READ", "WRITE"]
flags = []
extent_size = 8192
max_lv = 0
max_pv = 0
metadata_copies = 0

physical_volumes {

pv0 {
id = "0pA7zf-OJBH-Zntm-oI7Z-Y2wR-FlVx-aci7MT"
device = "/dev/loop0"

status = ["ALLOCATABLE"]
flags = []
dev_size = 131072
pe_start = 2048
pe_count = 15
}
}

logical_volumes {

root {
id = "crHGcZ-fg8p-lPHK-gD2z-SWMM-dQrK-sLaTST"
status = ["READ", "WRITE", "VISIBLE"]
flags = []
creation_time = 1795263262
creation_host = "vm"
segment_count = 2

segment1 {
start_extent = 0
extent_count = 2

type = "striped"
stripe_count = 1

stripes = [
"pv0", 0
]
}
segment2 {
start_extent = 2
extent_count = 1

type = "striped"
stripe_count = 1

stripes = [
"pv0", 3
]
}
}
}

}
# Generated by LVM2 version 2.03.16(2) (2022-05-18): Sat Nov 21 12:14:22 2026

contents = "Text Format Volume Group"
version = 1

description = "Write from lvextend -L +4M vgt/root."

creation_host = "vm"	# Linux vm 6.18.44 #1 SMP x86_64
creation_time = 1795263262	# Sat Nov 21 12:14:22 2026
"#;

#[test]
fn lvm_metadata_text_mutations_never_panic() {
    let mut data = LVM_TEXT.as_bytes().to_vec();
    let mut rng = XorShift(0x3c6e_f372_fe94_f82b);
    for _ in 0..ROUNDS * 2 {
        let undo = mutate(&mut rng, &mut data, &[]);
        fuzz_lvm_metadata(&data);
        // Structural mutations: cut the text anywhere, or repeat a slice.
        let cut = rng.below(data.len() as u64) as usize;
        fuzz_lvm_metadata(&data[..cut]);
        let a = rng.below(data.len() as u64) as usize;
        let b = a + rng.below((data.len() - a) as u64) as usize;
        let mut spliced = data[..b].to_vec();
        spliced.extend_from_slice(&data[a..]);
        fuzz_lvm_metadata(&spliced);
        restore(&mut data, undo);
    }
    // Deep nesting and long arrays stay bounded.
    fuzz_lvm_metadata("a{".repeat(100_000).as_bytes());
    fuzz_lvm_metadata(format!("a = [{}]", "1,".repeat(300_000)).as_bytes());
}

#[test]
fn lvm_pv_mutations_never_panic() {
    if !have_tools(
        "lvm_pv_mutations",
        &["losetup", "pvcreate", "vgcreate", "lvcreate"],
    ) || !have_root("lvm_pv_mutations")
    {
        return;
    }
    let dir = tempfile::tempdir().unwrap();
    let img = dir.path().join("pv.img");
    sparse(&img, 16 * MIB);
    {
        let lo = Loop::attach(&img, 0, 0, 512);
        let lvm = Lvm::new(&dir.path().join("lvm"), &[&lo.dev]);
        lvm.run("pvcreate", &["-q", &lo.dev]);
        lvm.run("vgcreate", &["-q", "vgf", &lo.dev]);
        lvm.run(
            "lvcreate",
            &["-q", "-an", "-Zn", "-L", "4M", "-n", "lv", "vgf"],
        );
    }
    // Label, metadata area header and text all live in the first MiB.
    let mut data = read_at(&img, 0, 1 << 20);
    let text_start = data.windows(4).position(|w| w == b"vgf ").unwrap();
    let hot = [512..1024, 4096..4096 + 64, text_start..text_start + 1500];
    let mut rng = XorShift(0xa54f_f53a_5f1d_36f1);
    for _ in 0..ROUNDS {
        let undo = mutate(&mut rng, &mut data, &hot);
        fuzz_lvm_pv(&data);
        fuzz_probe(&data[..8192]);
        restore(&mut data, undo);
    }
    // The sample came from a valid PV with one linear LV.
    let disk = discover(open(&img)).unwrap();
    let ids: Vec<_> = disk.volumes.iter().map(|v| v.id.as_str()).collect();
    assert_eq!(ids, ["disk", "lvm/vgf/lv"]);
}

/// Builds one probe sample with a real tool; `None` when the tool is
/// missing (already reported).
fn sample(
    dir: &Path,
    name: &str,
    size: u64,
    prog: &str,
    args: &[&str],
    keep: usize,
) -> Option<Vec<u8>> {
    if !have_tools(&format!("probe_mutations({name})"), &[prog]) {
        return None;
    }
    let path = mkfs_file(dir, name, size, prog, args);
    Some(read_at(&path, 0, keep))
}

/// A single hot range.
fn hot_range(r: Range<usize>) -> Vec<Range<usize>> {
    vec![r]
}

/// A named probe sample with the byte ranges worth mutating.
type Sample = (&'static str, Vec<u8>, Vec<Range<usize>>);

#[test]
fn probe_mutations_never_panic() {
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();
    let mut samples: Vec<Sample> = Vec::new();
    let mut push = |name: &'static str, s: Option<Vec<u8>>, hot: Vec<Range<usize>>| {
        if let Some(bytes) = s {
            samples.push((name, bytes, hot));
        }
    };
    push(
        "ext4",
        sample(
            d,
            "ext4",
            4 * MIB,
            "mke2fs",
            &["-q", "-t", "ext4", "-L", "x"],
            64 * 1024,
        ),
        hot_range(1024..2048),
    );
    push(
        "vfat12",
        sample(d, "vfat12", 2 * MIB, "mkfs.vfat", &["-n", "EFI"], 64 * 1024),
        vec![0..512, 512..16384],
    );
    push(
        "vfat32",
        sample(
            d,
            "vfat32",
            40 * MIB,
            "mkfs.vfat",
            &["-F", "32", "-n", "BIG"],
            2 * MIB as usize,
        ),
        vec![0..512, 512..2048],
    );
    push(
        "swap",
        sample(d, "swap", MIB, "mkswap", &["-L", "sw"], 64 * 1024),
        vec![1024..1600, 4080..4096],
    );
    push(
        "xfs",
        sample(
            d,
            "xfs",
            300 * MIB,
            "mkfs.xfs",
            &["-q", "-L", "x"],
            64 * 1024,
        ),
        hot_range(0..256),
    );
    push(
        "btrfs",
        sample(
            d,
            "btrfs",
            128 * MIB,
            "mkfs.btrfs",
            &["-q", "-L", "b"],
            2 * MIB as usize,
        ),
        hot_range(0x10000..0x10400),
    );
    if have_tools("probe_mutations(luks)", &["cryptsetup"]) {
        let key = d.join("key");
        std::fs::write(&key, b"k").unwrap();
        let path = d.join("luks");
        sparse(&path, 20 * MIB);
        run(
            "cryptsetup",
            &[
                "luksFormat",
                "-q",
                "--type",
                "luks2",
                "--pbkdf",
                "pbkdf2",
                "--pbkdf-force-iterations",
                "1000",
                "--key-file",
                key.to_str().unwrap(),
                path.to_str().unwrap(),
            ],
        );
        push(
            "luks2",
            Some(read_at(&path, 0, 64 * 1024)),
            vec![0..512, 0x4000..0x4200],
        );
    }
    for (name, mut data, hot) in samples {
        assert!(
            rescue_volumes::probe_volume(&MemDisk::new(&data[..], name))
                .unwrap()
                .fstype
                .is_some(),
            "{name} sample not recognised"
        );
        let mut rng = XorShift(0x510e_527f_ade6_82d1 ^ name.len() as u64);
        for _ in 0..ROUNDS {
            let undo = mutate(&mut rng, &mut data, &hot);
            fuzz_probe(&data);
            restore(&mut data, undo);
        }
        // Whole-disk discovery of the small samples too.
        if data.len() <= 64 * 1024 {
            for _ in 0..200 {
                let undo = mutate(&mut rng, &mut data, &hot);
                fuzz_discover(&data);
                restore(&mut data, undo);
            }
        }
    }
}
