//! The fuzz entry point `fuzz_journal` on thousands of deterministic
//! mutations of a valid dirty filesystem (a real mkfs.ext4 image with a
//! synthetic checksum-v3 log), and on random garbage: it must never panic,
//! hang or allocate without bound, whatever the bytes.

mod common;

use common::synth::*;
use common::{have_tools, XorShift};
use rescue_ext4::fuzz_journal;

fn sample(dir: &std::path::Path) -> (Synth, Vec<u64>) {
    let mut s = Synth::from_mkfs(dir, 3 << 20, &["-b", "1024", "-J", "size=1", "-N", "64"]);
    s.set_features(0, INCOMPAT_REVOKE | INCOMPAT_CSUM_V3 | INCOMPAT_64BIT);
    let end = s.blocks_count();
    let bs = s.bs;
    let mut magic = vec![7u8; bs];
    magic[..4].copy_from_slice(&MAGIC.to_be_bytes());
    let mut t2 = Txn::new(vec![(end - 3, vec![2; bs])]);
    t2.revokes = vec![end - 2];
    let txns = vec![
        Txn::new(vec![
            (end - 2, vec![1; bs]),
            (end - 3, magic),
            (end - 4, vec![3; bs]),
        ]),
        t2,
        Txn::new(vec![(end - 5, vec![4; bs])]),
    ];
    let log_end = s.write_log(1, 42, &txns, 2);
    // Journal superblock plus the live log.
    let mut region = vec![s.journal[0]];
    region.extend((1..=log_end).map(|i| s.journal[i as usize]));
    (s, region)
}

#[test]
fn fuzz_journal_survives_mutations_of_a_dirty_image() {
    if !have_tools(
        "fuzz_journal_survives_mutations_of_a_dirty_image",
        &["mkfs.ext4", "debugfs"],
    ) {
        return;
    }
    let dir = tempfile::tempdir().unwrap();
    let (s, region) = sample(dir.path());
    // The unmutated sample replays.
    let plan = rescue_ext4::plan_replay(&rescue_ext4::MemDevice::new(s.image.clone(), "sample"))
        .unwrap()
        .unwrap();
    assert_eq!(plan.transactions, 3);
    let bs = s.bs as u64;
    let mut rng = XorShift(0xdead_beef);
    let started = std::time::Instant::now();
    let mut outcomes = std::collections::BTreeMap::new();
    for _ in 0..3000 {
        let mut data = s.image.clone();
        for _ in 0..1 + rng.below(6) {
            let at = match rng.below(10) {
                // The journal superblock and log: headers and tags mostly.
                0..=6 => {
                    let block = region[rng.below(region.len() as u64) as usize];
                    let within = if rng.below(2) == 0 {
                        rng.below(80)
                    } else {
                        rng.below(bs)
                    };
                    block * bs + within
                }
                // The ext4 superblock, group descriptors, inode table.
                7 | 8 => 1024 + rng.below(16 * 1024),
                _ => rng.below(data.len() as u64),
            } as usize;
            data[at] = match rng.below(4) {
                0 => 0,
                1 => 0xff,
                2 => data[at] ^ (1 << rng.below(8)),
                _ => rng.next() as u8,
            };
        }
        let dev = rescue_ext4::MemDevice::new(data.clone(), "mutated");
        let outcome = match rescue_ext4::plan_replay(&dev) {
            Ok(Some(p)) => format!("replayed {}", p.transactions),
            Ok(None) => "clean".into(),
            Err(e) => format!("{:?}", e.kind()),
        };
        *outcomes.entry(outcome).or_insert(0u32) += 1;
        fuzz_journal(&data);
    }
    eprintln!("mutation outcomes: {outcomes:?}");
    assert!(
        outcomes.len() >= 4,
        "mutations should reach several outcomes: {outcomes:?}"
    );
    // Truncations of the sample.
    for len in [
        0,
        1,
        1023,
        1024,
        2047,
        2048,
        4096,
        65536,
        s.image.len() / 2,
        s.image.len() - 1,
    ] {
        fuzz_journal(&s.image[..len]);
    }
    assert!(
        started.elapsed().as_secs() < 300,
        "fuzzing took {:?}",
        started.elapsed()
    );
}

#[test]
fn fuzz_journal_survives_garbage() {
    let mut rng = XorShift(42);
    for i in 0..2000 {
        let len = rng.below(12 * 1024) as usize;
        let mut data = rng.bytes(len);
        // Half of them look like an ext4 superblock with needs_recovery and
        // a journal, so the parser gets past the first checks.
        if i % 2 == 0 && data.len() >= 2048 {
            data[1024 + 0x38..1024 + 0x3a].copy_from_slice(&0xef53u16.to_le_bytes());
            data[1024 + 0x18..1024 + 0x1c].copy_from_slice(&0u32.to_le_bytes());
            data[1024 + 0x04..1024 + 0x08].copy_from_slice(&((len / 1024) as u32).to_le_bytes());
            data[1024 + 0x14..1024 + 0x18].copy_from_slice(&1u32.to_le_bytes());
            data[1024 + 0x5c] |= 0x4;
            data[1024 + 0x60] = 0x4;
            data[1024 + 0x64..1024 + 0x68].fill(0);
            data[1024 + 0xe0..1024 + 0xe4].copy_from_slice(&8u32.to_le_bytes());
        }
        fuzz_journal(&data);
    }
}
