//! LVM2 text metadata parser.
#![no_main]
libfuzzer_sys::fuzz_target!(|data: &[u8]| rescue_volumes::fuzz_lvm_metadata(data));
