//! Lossless os_release parser of rescue-config.
#![no_main]
libfuzzer_sys::fuzz_target!(|data: &[u8]| rescue_config::os_release::fuzz_os_release(data));
