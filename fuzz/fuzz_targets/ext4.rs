//! ext4 reading through ext4-view behind our geometry and size guards.
#![no_main]
libfuzzer_sys::fuzz_target!(|data: &[u8]| rescue_guest::fuzz::fuzz_ext4(data));
