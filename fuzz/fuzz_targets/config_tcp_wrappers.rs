//! hosts.allow / hosts.deny parsing and evaluation.
#![no_main]
libfuzzer_sys::fuzz_target!(|data: &[u8]| rescue_config::tcp_wrappers::fuzz_tcp_wrappers(data));
