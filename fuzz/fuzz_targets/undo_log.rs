//! The undo log reader (`rescue-disk undo` trusts nothing it reads back).
#![no_main]
libfuzzer_sys::fuzz_target!(|data: &[u8]| rescue_io::fuzz_undo_log(data));
