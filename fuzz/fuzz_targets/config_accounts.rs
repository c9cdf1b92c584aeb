//! passwd, shadow, group and gshadow parsers.
#![no_main]
libfuzzer_sys::fuzz_target!(|data: &[u8]| rescue_config::accounts::fuzz_accounts(data));
