//! authorized_keys lines: options grammar and key blobs.
#![no_main]
libfuzzer_sys::fuzz_target!(|data: &[u8]| rescue_config::authorized_keys::fuzz_authorized_keys(data));
