//! Mutation tests of the guest's on-disk readers: real images from
//! mkfs.ext4 -d and mkfs.vfat + mcopy, with their metadata blocks mutated by
//! a deterministic PRNG, fed to the fuzz entry points. Passing means: no
//! panic escaped, no hang, no abort from an unbounded allocation.

mod common;

use common::*;
use rescue_guest::fuzz::{fuzz_ext4, fuzz_fat};

struct XorShift(u64);

impl XorShift {
    fn next(&mut self) -> u64 {
        self.0 ^= self.0 << 13;
        self.0 ^= self.0 >> 7;
        self.0 ^= self.0 << 17;
        self.0
    }
    fn below(&mut self, n: usize) -> usize {
        (self.next() % n as u64) as usize
    }
}

/// Mutates bytes in `data[..region]` (where the metadata lives) `rounds` times.
fn mutate(data: &[u8], region: usize, rounds: usize, seed: u64, f: fn(&[u8])) {
    let mut rng = XorShift(seed);
    let region = region.min(data.len());
    let mut work = data.to_vec();
    for _ in 0..rounds {
        work.copy_from_slice(data);
        for _ in 0..1 + rng.below(16) {
            let i = rng.below(region);
            work[i] = match rng.below(4) {
                0 => 0xff,
                1 => 0,
                _ => rng.next() as u8,
            };
        }
        f(&work);
    }
}

#[test]
fn ext4_metadata_mutations() {
    if !have_tools(&["mkfs.ext4"]) {
        return;
    }
    let dir = tempdir();
    let d = dir.path();
    let tree = d.join("tree");
    write(&tree, "etc/fstab", "UUID=x / ext4 defaults 0 1\n");
    write(&tree, "usr/lib/os-release", "ID=debian\n");
    link(&tree, "etc/os-release", "../usr/lib/os-release");
    link(&tree, "lib", "usr/lib");
    write(&tree, "usr/lib/modules/6.1.0-28-amd64/modules.dep", "x\n");
    write(
        &tree,
        "boot/grub/grub.cfg",
        "set default=0\nmenuentry 'x' {\n linux /vmlinuz\n}\n",
    );
    let img = d.join("fs.img");
    // Small, with metadata checksums off so mutations reach the parsers
    // instead of stopping at a checksum.
    mkfs_ext4(
        &img,
        &tree,
        2,
        "11111111-2222-4333-8444-555555555555",
        "t",
        &["-O", "^metadata_csum", "-N", "64"],
    );
    let data = std::fs::read(&img).unwrap();
    fuzz_ext4(&data);
    mutate(&data, 96 * 1024, 3000, 0x0e47_1234_5678_9abc, fuzz_ext4);
}

#[test]
fn fat_metadata_mutations() {
    if !have_tools(&["mkfs.vfat", "mcopy", "mmd"]) {
        return;
    }
    let dir = tempdir();
    let d = dir.path();
    let img = d.join("esp.img");
    mkfs_vfat(
        d,
        &img,
        1024,
        "ABCD1234",
        "EFI",
        &[
            ("/EFI/debian/grub.cfg", b"configfile /x\n"),
            ("/EFI/debian/grubx64.efi", &[7u8; 3000]),
        ],
    );
    let data = std::fs::read(&img).unwrap();
    fuzz_fat(&data);
    mutate(&data, 32 * 1024, 3000, 0xfa7_fa7_fa7, fuzz_fat);
}
