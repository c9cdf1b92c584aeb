//! Lossless bls parser of rescue-config.
#![no_main]
libfuzzer_sys::fuzz_target!(|data: &[u8]| rescue_config::bls::fuzz_bls(data));
