//! Lossless fstab parser of rescue-config.
#![no_main]
libfuzzer_sys::fuzz_target!(|data: &[u8]| rescue_config::fstab::fuzz_fstab(data));
