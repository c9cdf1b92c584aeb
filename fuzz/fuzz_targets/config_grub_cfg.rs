//! Lossless grub_cfg parser of rescue-config.
#![no_main]
libfuzzer_sys::fuzz_target!(|data: &[u8]| rescue_config::grub_cfg::fuzz_grub_cfg(data));
