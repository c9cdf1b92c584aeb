//! MBR and the EBR chain of logical partitions.
#![no_main]
libfuzzer_sys::fuzz_target!(|data: &[u8]| rescue_volumes::fuzz_mbr(data));
