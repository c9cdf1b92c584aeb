//! Algorithm names each OpenSSH release accepts in `Ciphers`, `MACs`,
//! `KexAlgorithms`, `GSSAPIKexAlgorithms`, the key-type lists
//! (`PubkeyAcceptedAlgorithms`, `HostKeyAlgorithms`, …) and
//! `AuthenticationMethods`, and the list validators sshd runs on them.
//!
//! The tables assume the build every distribution ships: OpenSSL with ECC
//! and NIST P-521, security-key support, no XMSS, and (before 10.0) DSA.
//! Pure functions; no I/O, no panics.

use super::matching::match_pattern_list;
use super::version::{Distro, Target};

/// Cipher names `ciphers_valid()` accepts.
pub(crate) fn cipher_names(t: &Target) -> Vec<&'static str> {
    let mut v = vec!["3des-cbc"];
    if t.before(7, 6) {
        v.extend([
            "blowfish-cbc",
            "cast128-cbc",
            "arcfour",
            "arcfour128",
            "arcfour256",
        ]);
    }
    v.extend(["aes128-cbc", "aes192-cbc", "aes256-cbc"]);
    if t.before(8, 5) {
        v.push("rijndael-cbc@lysator.liu.se");
    }
    v.extend([
        "aes128-ctr",
        "aes192-ctr",
        "aes256-ctr",
        "aes128-gcm@openssh.com",
        "aes256-gcm@openssh.com",
        "chacha20-poly1305@openssh.com",
    ]);
    v
}

/// MAC names `mac_valid()` accepts.
pub(crate) fn mac_names(t: &Target) -> Vec<&'static str> {
    let mut v = vec![
        "hmac-sha1",
        "hmac-sha1-96",
        "hmac-sha2-256",
        "hmac-sha2-512",
        "hmac-md5",
        "hmac-md5-96",
        "umac-64@openssh.com",
        "umac-128@openssh.com",
        "hmac-sha1-etm@openssh.com",
        "hmac-sha1-96-etm@openssh.com",
        "hmac-sha2-256-etm@openssh.com",
        "hmac-sha2-512-etm@openssh.com",
        "hmac-md5-etm@openssh.com",
        "hmac-md5-96-etm@openssh.com",
        "umac-64-etm@openssh.com",
        "umac-128-etm@openssh.com",
    ];
    if t.before(7, 6) {
        v.extend([
            "hmac-ripemd160",
            "hmac-ripemd160@openssh.com",
            "hmac-ripemd160-etm@openssh.com",
        ]);
    }
    v
}

/// Key-exchange names `kex_names_valid()` accepts.
pub(crate) fn kex_names(t: &Target) -> Vec<&'static str> {
    let mut v = vec![
        "diffie-hellman-group1-sha1",
        "diffie-hellman-group14-sha1",
        "diffie-hellman-group14-sha256",
        "diffie-hellman-group16-sha512",
        "diffie-hellman-group18-sha512",
        "diffie-hellman-group-exchange-sha1",
        "diffie-hellman-group-exchange-sha256",
        "ecdh-sha2-nistp256",
        "ecdh-sha2-nistp384",
        "ecdh-sha2-nistp521",
        "curve25519-sha256",
        "curve25519-sha256@libssh.org",
    ];
    if t.at_least(8, 0) && t.before(8, 5) {
        v.push("sntrup4591761x25519-sha512@tinyssh.org");
    }
    if t.at_least(8, 5) {
        v.push("sntrup761x25519-sha512@openssh.com");
    }
    if t.at_least(9, 9) {
        v.extend(["sntrup761x25519-sha512", "mlkem768x25519-sha256"]);
    } else if t.at_least(9, 2) && t.distro == Distro::Debian {
        // Debian 12 backported the name without the suffix (seen in
        // `ssh -Q kex` of openssh 1:9.2p1-2+deb12u10).
        v.push("sntrup761x25519-sha512");
    }
    v
}

/// GSSAPI key-exchange names the distributions' GSSAPI patch accepts.
pub(crate) fn gss_kex_names() -> &'static [&'static str] {
    &[
        "gss-gex-sha1-",
        "gss-group1-sha1-",
        "gss-group14-sha1-",
        "gss-group14-sha256-",
        "gss-group16-sha512-",
        "gss-nistp256-sha256-",
        "gss-curve25519-sha256-",
    ]
}

/// Key and signature type names `sshkey_type_from_name()` knows, with
/// whether each is a certificate type.
pub(crate) fn key_names(t: &Target) -> Vec<(&'static str, bool)> {
    let dsa = t.before(10, 0);
    let mut v = vec![
        ("ssh-ed25519", false),
        ("ssh-ed25519-cert-v01@openssh.com", true),
    ];
    if t.at_least(8, 2) {
        v.extend([
            ("sk-ssh-ed25519@openssh.com", false),
            ("sk-ssh-ed25519-cert-v01@openssh.com", true),
        ]);
    }
    v.extend([
        ("ecdsa-sha2-nistp256", false),
        ("ecdsa-sha2-nistp256-cert-v01@openssh.com", true),
        ("ecdsa-sha2-nistp384", false),
        ("ecdsa-sha2-nistp384-cert-v01@openssh.com", true),
        ("ecdsa-sha2-nistp521", false),
        ("ecdsa-sha2-nistp521-cert-v01@openssh.com", true),
    ]);
    if t.at_least(8, 2) {
        v.extend([
            ("sk-ecdsa-sha2-nistp256@openssh.com", false),
            ("sk-ecdsa-sha2-nistp256-cert-v01@openssh.com", true),
        ]);
    }
    if t.at_least(8, 4) {
        v.push(("webauthn-sk-ecdsa-sha2-nistp256@openssh.com", false));
    }
    if dsa {
        v.extend([("ssh-dss", false), ("ssh-dss-cert-v01@openssh.com", true)]);
    }
    v.extend([
        ("ssh-rsa", false),
        ("ssh-rsa-cert-v01@openssh.com", true),
        ("rsa-sha2-256", false),
        ("rsa-sha2-512", false),
    ]);
    if t.at_least(7, 8) {
        v.extend([
            ("rsa-sha2-256-cert-v01@openssh.com", true),
            ("rsa-sha2-512-cert-v01@openssh.com", true),
        ]);
    }
    v
}

/// Short key type names accepted case-insensitively for plain keys.
fn key_short_names(t: &Target) -> Vec<&'static str> {
    let mut v = vec!["RSA", "ECDSA", "ED25519"];
    if t.before(10, 0) {
        v.push("DSA");
    }
    if t.at_least(8, 2) {
        v.extend(["ECDSA-SK", "ED25519-SK"]);
    }
    v
}

/// Splits like `strsep(",")` and stops at the first empty element, as
/// every sshd list validator does.
fn elements(names: &[u8]) -> impl Iterator<Item = &[u8]> {
    names.split(|&b| b == b',').take_while(|p| !p.is_empty())
}

/// `ciphers_valid()`.
pub(crate) fn ciphers_valid(t: &Target, names: &[u8]) -> bool {
    if names.is_empty() {
        return false;
    }
    let known = cipher_names(t);
    elements(names).all(|p| known.iter().any(|k| k.as_bytes() == p))
}

/// `mac_valid()`.
pub(crate) fn mac_valid(t: &Target, names: &[u8]) -> bool {
    if names.is_empty() {
        return false;
    }
    let known = mac_names(t);
    elements(names).all(|p| known.iter().any(|k| k.as_bytes() == p))
}

/// `kex_names_valid()`: `Err(name)` carries the first unknown name, which
/// sshd logs as `Unsupported KEX algorithm "%.100s"` before failing.
pub(crate) fn kex_names_valid(t: &Target, names: &[u8]) -> Result<(), Option<Vec<u8>>> {
    if names.is_empty() {
        return Err(None);
    }
    let known = kex_names(t);
    // The distributions' GSSAPI patch makes kex_alg_by_name() also accept
    // anything that starts with a GSSAPI key-exchange name.
    let gss = t.distro != Distro::Upstream;
    for p in elements(names) {
        if !(known.iter().any(|k| k.as_bytes() == p) || gss && is_gss_kex(p)) {
            return Err(Some(p.to_vec()));
        }
    }
    Ok(())
}

fn is_gss_kex(p: &[u8]) -> bool {
    gss_kex_names().iter().any(|k| p.starts_with(k.as_bytes()))
}

/// `kex_gss_names_valid()` of the GSSAPI patch: same contract as
/// [`kex_names_valid`].
pub(crate) fn gss_kex_names_valid(names: &[u8]) -> Result<(), Option<Vec<u8>>> {
    if names.is_empty() {
        return Err(None);
    }
    for p in elements(names) {
        if !is_gss_kex(p) {
            return Err(Some(p.to_vec()));
        }
    }
    Ok(())
}

/// `sshkey_names_valid2(names, allow_wildcard = 1, plain_only)`.
pub(crate) fn key_names_valid(t: &Target, names: &[u8], plain_only: bool) -> bool {
    if names.is_empty() {
        return false;
    }
    let known = key_names(t);
    let short = key_short_names(t);
    for p in elements(names) {
        let exact = known.iter().find(|(k, _)| k.as_bytes() == p);
        let by_short = short.iter().any(|s| s.as_bytes().eq_ignore_ascii_case(p));
        match (exact, by_short) {
            (Some((_, cert)), _) => {
                if plain_only && *cert {
                    return false;
                }
            }
            (None, true) => {}
            (None, false) => {
                // Wildcards: accepted when any key type matches, positively
                // or negatively.
                if !known
                    .iter()
                    .any(|(k, _)| match_pattern_list(k.as_bytes(), p, false) != 0)
                {
                    return false;
                }
            }
        }
    }
    true
}

/// Names `auth2_methods_valid()` accepts (`gssapi-with-mic` needs GSSAPI,
/// which every modelled build has).
pub(crate) const AUTH_METHODS: &[&str] = &[
    "none",
    "publickey",
    "gssapi-with-mic",
    "password",
    "keyboard-interactive",
    "hostbased",
];

/// `auth2_methods_valid(list, 0)`: `Err` carries the error sshd logs.
pub(crate) fn auth_methods_valid(list: &[u8]) -> Result<(), Vec<u8>> {
    if list.is_empty() {
        return Err(b"empty authentication method list".to_vec());
    }
    for m in list.split(|&b| b == b',') {
        let name = m.split(|&b| b == b':').next().unwrap_or(m);
        if !AUTH_METHODS.iter().any(|a| a.as_bytes() == name) {
            let mut e = b"Unknown authentication method \"".to_vec();
            e.extend_from_slice(name);
            e.extend_from_slice(b"\" in list");
            return Err(e);
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::super::version::OpensshVersion;
    use super::*;

    fn t(a: u32, b: u32) -> Target {
        Target::new(OpensshVersion::new(a, b), Distro::Debian)
    }

    #[test]
    fn lists() {
        let v92 = t(9, 2);
        assert!(ciphers_valid(
            &v92,
            b"aes128-ctr,chacha20-poly1305@openssh.com"
        ));
        assert!(!ciphers_valid(&v92, b"arcfour"));
        assert!(ciphers_valid(&t(7, 4), b"arcfour"));
        assert!(ciphers_valid(&v92, b"aes128-ctr,,junk"));
        assert!(!ciphers_valid(&v92, b""));
        assert!(!ciphers_valid(&v92, b"none"));
        assert!(mac_valid(&v92, b"hmac-sha2-256"));
        assert!(!mac_valid(&v92, b"hmac-ripemd160"));
        assert_eq!(kex_names_valid(&v92, b"curve25519-sha256"), Ok(()));
        assert_eq!(
            kex_names_valid(&v92, b"curve25519-sha256,bogus"),
            Err(Some(b"bogus".to_vec()))
        );
        assert!(key_names_valid(&v92, b"ssh-ed25519,rsa-sha2-*", false));
        assert!(key_names_valid(&v92, b"RSA,ed25519", false));
        assert!(!key_names_valid(&v92, b"yes", false));
        assert!(!key_names_valid(&t(10, 0), b"ssh-dss", false));
        assert!(!key_names_valid(
            &v92,
            b"ssh-rsa-cert-v01@openssh.com",
            true
        ));
        assert!(auth_methods_valid(b"publickey,password").is_ok());
        assert!(auth_methods_valid(b"publickey:x").is_ok());
        assert!(auth_methods_valid(b"yes").is_err());
        assert!(gss_kex_names_valid(b"gss-gex-sha1-,gss-group14-sha1-").is_ok());
        assert!(gss_kex_names_valid(b"yes").is_err());
    }
}
