//! sshd_config parsing and sshd's configuration pass.
#![no_main]
libfuzzer_sys::fuzz_target!(|data: &[u8]| rescue_config::sshd::fuzz_sshd_config(data));
