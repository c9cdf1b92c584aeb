//! The libext2fs binding: open a guest filesystem and write to it.
#![no_main]
libfuzzer_sys::fuzz_target!(|data: &[u8]| rescue_ext2fs::fuzz_open_and_write(data));
