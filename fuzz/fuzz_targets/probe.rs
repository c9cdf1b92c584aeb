//! Filesystem probes (ext, FAT, XFS, btrfs, swap, LUKS, LVM2 PV).
#![no_main]
libfuzzer_sys::fuzz_target!(|data: &[u8]| rescue_volumes::fuzz_probe(data));
