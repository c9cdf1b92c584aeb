//! FAT reading through fatfs behind our guards.
#![no_main]
libfuzzer_sys::fuzz_target!(|data: &[u8]| rescue_guest::fuzz::fuzz_fat(data));
