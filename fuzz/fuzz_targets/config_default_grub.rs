//! Lossless default_grub parser of rescue-config.
#![no_main]
libfuzzer_sys::fuzz_target!(|data: &[u8]| rescue_config::default_grub::fuzz_default_grub(data));
