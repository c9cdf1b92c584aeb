//! jbd2 journal scan, revoke and replay over a small filesystem image.
#![no_main]
libfuzzer_sys::fuzz_target!(|data: &[u8]| rescue_ext4::fuzz_journal(data));
