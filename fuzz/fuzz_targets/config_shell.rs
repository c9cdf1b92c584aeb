//! Lossless shell parser of rescue-config.
#![no_main]
libfuzzer_sys::fuzz_target!(|data: &[u8]| rescue_config::shell::fuzz_shell(data));
