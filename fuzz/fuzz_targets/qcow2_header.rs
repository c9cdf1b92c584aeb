//! qcow2 header, extensions and L1 validation, then reads through qcow2-rs.
#![no_main]
libfuzzer_sys::fuzz_target!(|data: &[u8]| rescue_io::fuzz_qcow2_header(data));
