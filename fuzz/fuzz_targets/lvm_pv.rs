//! LVM2 PV label, metadata area header and circular text buffer.
#![no_main]
libfuzzer_sys::fuzz_target!(|data: &[u8]| rescue_volumes::fuzz_lvm_pv(data));
