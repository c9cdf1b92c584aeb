//! GPT headers and entry arrays (primary and backup, 512/4096-byte sectors).
#![no_main]
libfuzzer_sys::fuzz_target!(|data: &[u8]| rescue_volumes::fuzz_gpt(data));
