//! Host private key parsing (OpenSSH and PEM formats) as sshd loads them.
#![no_main]
libfuzzer_sys::fuzz_target!(|data: &[u8]| rescue_checks::fuzz_private_key(data));
