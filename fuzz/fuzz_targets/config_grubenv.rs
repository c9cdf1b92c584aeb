//! Lossless grubenv parser of rescue-config.
#![no_main]
libfuzzer_sys::fuzz_target!(|data: &[u8]| rescue_config::grubenv::fuzz_grubenv(data));
