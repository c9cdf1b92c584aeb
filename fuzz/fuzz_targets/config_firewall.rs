//! iptables-save, nftables, ufw and firewalld parsers.
#![no_main]
libfuzzer_sys::fuzz_target!(|data: &[u8]| rescue_config::firewall::fuzz_firewall(data));
