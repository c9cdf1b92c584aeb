//! The FAT write engine: whole-volume validation, then writes.
#![no_main]
libfuzzer_sys::fuzz_target!(|data: &[u8]| rescue_guest::fuzz::fuzz_fat_write(data));
