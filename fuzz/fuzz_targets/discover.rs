//! Whole-disk discovery: partition tables, LVM and probes together.
#![no_main]
libfuzzer_sys::fuzz_target!(|data: &[u8]| rescue_volumes::fuzz_discover(data));
