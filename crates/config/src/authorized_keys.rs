//! `~/.ssh/authorized_keys`: a lossless line model read the way sshd reads
//! it, and the checks that explain why a key is silently ignored.
//!
//! Each line goes through the steps of OpenSSH's `auth_check_authkey_line()`
//! (auth2-pubkeyfile.c; auth2-pubkey.c before 9.x):
//!
//! 1. leading spaces/tabs are skipped; empty lines and `#` lines are ignored;
//! 2. `sshkey_read()` is tried on the line: a known key type name, blanks,
//!    a base64 blob (whose decoder skips white space, so a trailing `\r` is
//!    harmless) that must decode to a key of the same type;
//! 3. if that fails, the line is taken to start with options: they are
//!    skipped (quote-aware; an unterminated quote is "invalid key option
//!    string") and `sshkey_read()` is tried again; a second failure means
//!    the line is not a key and is skipped without a word in the logs;
//! 4. the options are parsed by `sshauthopt_parse()` (auth-options.c, since
//!    OpenSSH 7.7). A failure is logged only at debug level as
//!    "%s: bad key options: %s" (`file:line`, reason) and the line is
//!    skipped. OpenSSH 7.6 and older logged "Bad options in %.100s file,
//!    line %lu: %.50s" with `logit()` and refused the key.
//!
//! Key blobs are decoded and their wire structure checked (type string,
//! key fields, RSA size, curve names, certificate layout, no trailing
//! bytes); signatures and EC points are not verified (no cryptography
//! here). `from="…"` is evaluated with OpenSSH's `match_host_and_ip()`
//! semantics, `expiry-time` against a caller-supplied clock.
//!
//! Edits are by span: join a key wrapped over several lines, strip `\r` and
//! a UTF-8 BOM, comment a line out with a reason, append a key. This module
//! never does I/O and never panics on any input.

use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};

use serde::Serialize;

use crate::text;
use crate::{Diagnostic, Span};

/// The key types OpenSSH knows (`keyimpls[]` in sshkey.c).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, schemars::JsonSchema)]
#[serde(rename_all = "snake_case")]
pub enum KeyAlgorithm {
    /// RSA (`ssh-rsa`; `rsa-sha2-256`/`-512` name the same key type).
    Rsa,
    /// DSA (`ssh-dss`): refused by default since OpenSSH 7.0, removed in 10.0.
    Dss,
    /// ECDSA on NIST P-256.
    EcdsaP256,
    /// ECDSA on NIST P-384.
    EcdsaP384,
    /// ECDSA on NIST P-521.
    EcdsaP521,
    /// Ed25519.
    Ed25519,
    /// FIDO ECDSA P-256 (`sk-ecdsa-sha2-nistp256@openssh.com`, and its
    /// webauthn variant).
    SkEcdsaP256,
    /// FIDO Ed25519 (`sk-ssh-ed25519@openssh.com`).
    SkEd25519,
    /// XMSS (`ssh-xmss@openssh.com`): experimental, compiled out by default.
    Xmss,
}

/// A key type name as it may appear at the start of a key.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, schemars::JsonSchema)]
pub struct KeyType {
    /// The name as written (`ssh-ed25519`, `ssh-rsa-cert-v01@openssh.com`…).
    pub name: &'static str,
    /// The algorithm.
    pub algorithm: KeyAlgorithm,
    /// True for `-cert-v01@openssh.com` certificate types.
    pub certificate: bool,
    /// The type string stored inside the blob (`rsa-sha2-256` keys carry
    /// `ssh-rsa`).
    pub blob_name: &'static str,
}

const fn kt(
    name: &'static str,
    algorithm: KeyAlgorithm,
    certificate: bool,
    blob_name: &'static str,
) -> KeyType {
    KeyType {
        name,
        algorithm,
        certificate,
        blob_name,
    }
}

/// Every key type name `sshkey_read()` accepts (OpenSSH 9.x).
pub const KEY_TYPES: &[KeyType] = &[
    kt("ssh-ed25519", KeyAlgorithm::Ed25519, false, "ssh-ed25519"),
    kt(
        "ssh-ed25519-cert-v01@openssh.com",
        KeyAlgorithm::Ed25519,
        true,
        "ssh-ed25519-cert-v01@openssh.com",
    ),
    kt(
        "sk-ssh-ed25519@openssh.com",
        KeyAlgorithm::SkEd25519,
        false,
        "sk-ssh-ed25519@openssh.com",
    ),
    kt(
        "sk-ssh-ed25519-cert-v01@openssh.com",
        KeyAlgorithm::SkEd25519,
        true,
        "sk-ssh-ed25519-cert-v01@openssh.com",
    ),
    kt(
        "ecdsa-sha2-nistp256",
        KeyAlgorithm::EcdsaP256,
        false,
        "ecdsa-sha2-nistp256",
    ),
    kt(
        "ecdsa-sha2-nistp256-cert-v01@openssh.com",
        KeyAlgorithm::EcdsaP256,
        true,
        "ecdsa-sha2-nistp256-cert-v01@openssh.com",
    ),
    kt(
        "ecdsa-sha2-nistp384",
        KeyAlgorithm::EcdsaP384,
        false,
        "ecdsa-sha2-nistp384",
    ),
    kt(
        "ecdsa-sha2-nistp384-cert-v01@openssh.com",
        KeyAlgorithm::EcdsaP384,
        true,
        "ecdsa-sha2-nistp384-cert-v01@openssh.com",
    ),
    kt(
        "ecdsa-sha2-nistp521",
        KeyAlgorithm::EcdsaP521,
        false,
        "ecdsa-sha2-nistp521",
    ),
    kt(
        "ecdsa-sha2-nistp521-cert-v01@openssh.com",
        KeyAlgorithm::EcdsaP521,
        true,
        "ecdsa-sha2-nistp521-cert-v01@openssh.com",
    ),
    kt(
        "sk-ecdsa-sha2-nistp256@openssh.com",
        KeyAlgorithm::SkEcdsaP256,
        false,
        "sk-ecdsa-sha2-nistp256@openssh.com",
    ),
    kt(
        "sk-ecdsa-sha2-nistp256-cert-v01@openssh.com",
        KeyAlgorithm::SkEcdsaP256,
        true,
        "sk-ecdsa-sha2-nistp256-cert-v01@openssh.com",
    ),
    kt(
        "webauthn-sk-ecdsa-sha2-nistp256@openssh.com",
        KeyAlgorithm::SkEcdsaP256,
        false,
        "sk-ecdsa-sha2-nistp256@openssh.com",
    ),
    kt(
        "webauthn-sk-ecdsa-sha2-nistp256-cert-v01@openssh.com",
        KeyAlgorithm::SkEcdsaP256,
        true,
        "sk-ecdsa-sha2-nistp256-cert-v01@openssh.com",
    ),
    kt("ssh-rsa", KeyAlgorithm::Rsa, false, "ssh-rsa"),
    kt(
        "ssh-rsa-cert-v01@openssh.com",
        KeyAlgorithm::Rsa,
        true,
        "ssh-rsa-cert-v01@openssh.com",
    ),
    kt("rsa-sha2-256", KeyAlgorithm::Rsa, false, "ssh-rsa"),
    kt("rsa-sha2-512", KeyAlgorithm::Rsa, false, "ssh-rsa"),
    kt(
        "rsa-sha2-256-cert-v01@openssh.com",
        KeyAlgorithm::Rsa,
        true,
        "ssh-rsa-cert-v01@openssh.com",
    ),
    kt(
        "rsa-sha2-512-cert-v01@openssh.com",
        KeyAlgorithm::Rsa,
        true,
        "ssh-rsa-cert-v01@openssh.com",
    ),
    kt("ssh-dss", KeyAlgorithm::Dss, false, "ssh-dss"),
    kt(
        "ssh-dss-cert-v01@openssh.com",
        KeyAlgorithm::Dss,
        true,
        "ssh-dss-cert-v01@openssh.com",
    ),
    kt(
        "ssh-xmss@openssh.com",
        KeyAlgorithm::Xmss,
        false,
        "ssh-xmss@openssh.com",
    ),
    kt(
        "ssh-xmss-cert-v01@openssh.com",
        KeyAlgorithm::Xmss,
        true,
        "ssh-xmss-cert-v01@openssh.com",
    ),
];

/// Looks a key type name up (exact, case-sensitive, as `peek_type_nid()`).
pub fn key_type(name: &str) -> Option<&'static KeyType> {
    KEY_TYPES.iter().find(|k| k.name == name)
}

// ---------------------------------------------------------------------------
// Base64 (b64_pton) and the SSH wire format

fn b64_value(c: u8) -> Option<u8> {
    match c {
        b'A'..=b'Z' => Some(c - b'A'),
        b'a'..=b'z' => Some(c - b'a' + 26),
        b'0'..=b'9' => Some(c - b'0' + 52),
        b'+' => Some(62),
        b'/' => Some(63),
        _ => None,
    }
}

fn c_isspace(b: u8) -> bool {
    matches!(b, b' ' | b'\t' | b'\n' | b'\x0b' | b'\x0c' | b'\r')
}

/// Decodes base64 exactly as OpenSSH's `b64_pton()`: white space anywhere
/// is skipped, padding must be complete and followed only by white space,
/// and the unused bits of the last character must be zero.
pub fn b64_decode(src: &[u8]) -> Option<Vec<u8>> {
    let mut out = Vec::with_capacity(src.len() / 4 * 3 + 3);
    let mut state = 0u8;
    let mut i = 0;
    let mut pad = false;
    while i < src.len() {
        let ch = src[i];
        i += 1;
        if c_isspace(ch) {
            continue;
        }
        if ch == b'=' {
            pad = true;
            break;
        }
        let v = b64_value(ch)?;
        match state {
            0 => {
                out.push(v << 2);
                state = 1;
            }
            1 => {
                *out.last_mut()? |= v >> 4;
                out.push((v & 0x0f) << 4);
                state = 2;
            }
            2 => {
                *out.last_mut()? |= v >> 2;
                out.push((v & 0x03) << 6);
                state = 3;
            }
            _ => {
                *out.last_mut()? |= v;
                state = 0;
            }
        }
    }
    if pad {
        match state {
            0 | 1 => return None,
            2 => {
                // Skip white space, then a second `=` is required.
                while i < src.len() && c_isspace(src[i]) {
                    i += 1;
                }
                if src.get(i) != Some(&b'=') {
                    return None;
                }
                i += 1;
            }
            _ => {}
        }
        while i < src.len() {
            if !c_isspace(src[i]) {
                return None;
            }
            i += 1;
        }
        // The partial byte holding the unused bits must be zero.
        if out.last() != Some(&0) {
            return None;
        }
        out.pop();
    } else if state != 0 {
        return None;
    }
    Some(out)
}

/// Encodes bytes as base64 with padding.
pub fn b64_encode(data: &[u8]) -> String {
    const ALPHABET: &[u8; 64] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";
    let mut out = String::with_capacity(data.len().div_ceil(3) * 4);
    for chunk in data.chunks(3) {
        let b = [
            chunk[0],
            *chunk.get(1).unwrap_or(&0),
            *chunk.get(2).unwrap_or(&0),
        ];
        let n = (u32::from(b[0]) << 16) | (u32::from(b[1]) << 8) | u32::from(b[2]);
        for k in 0..4 {
            if k <= chunk.len() {
                out.push(char::from(ALPHABET[((n >> (18 - 6 * k)) & 63) as usize]));
            } else {
                out.push('=');
            }
        }
    }
    out
}

/// A reader over SSH wire data (RFC 4251 strings, integers, mpints).
struct Wire<'a> {
    data: &'a [u8],
    pos: usize,
}

impl<'a> Wire<'a> {
    fn u32(&mut self) -> Option<u32> {
        let b = self.data.get(self.pos..self.pos.checked_add(4)?)?;
        self.pos += 4;
        Some(u32::from_be_bytes([b[0], b[1], b[2], b[3]]))
    }

    fn u64(&mut self) -> Option<u64> {
        let hi = u64::from(self.u32()?);
        let lo = u64::from(self.u32()?);
        Some((hi << 32) | lo)
    }

    fn string(&mut self) -> Option<&'a [u8]> {
        let len = usize::try_from(self.u32()?).ok()?;
        let end = self.pos.checked_add(len)?;
        let s = self.data.get(self.pos..end)?;
        self.pos = end;
        Some(s)
    }

    /// `sshbuf_get_bignum2()`: at most 2048 bytes of magnitude, not
    /// negative. Returns the number of significant bits.
    fn mpint(&mut self) -> Result<u32, KeyError> {
        let s = self.string().ok_or(KeyError::InvalidFormat)?;
        if s.len() > 2049 || (s.len() == 2049 && s[0] != 0) {
            return Err(KeyError::BignumTooLarge);
        }
        if s.first().is_some_and(|&b| b & 0x80 != 0) {
            return Err(KeyError::BignumNegative);
        }
        let s = match s.iter().position(|&b| b != 0) {
            Some(i) => &s[i..],
            None => &[][..],
        };
        let bits = match s.first() {
            None => 0,
            Some(&b) => (s.len() as u32 - 1) * 8 + (8 - b.leading_zeros()),
        };
        Ok(bits)
    }

    fn remaining(&self) -> usize {
        self.data.len().saturating_sub(self.pos)
    }
}

/// Why a key blob is not a key OpenSSH can load.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, schemars::JsonSchema)]
#[serde(tag = "type", rename_all = "snake_case")]
pub enum KeyError {
    /// The type name at the start of the key is not one OpenSSH knows.
    UnknownType {
        /// The name as written.
        name: String,
    },
    /// Nothing after the type name.
    MissingBlob,
    /// The blob is not valid base64.
    Base64,
    /// The blob's wire structure is broken or has trailing bytes.
    InvalidFormat,
    /// The type inside the blob differs from the one written before it.
    TypeMismatch {
        /// The type string inside the blob.
        blob_type: String,
    },
    /// An ECDSA key whose curve does not match its type.
    CurveMismatch,
    /// An RSA modulus below OpenSSH's minimum (1024 bits since 7.6, 768
    /// before).
    RsaTooSmall {
        /// The modulus size.
        bits: u32,
    },
    /// An RSA modulus above 16384 bits.
    RsaTooLarge {
        /// The modulus size.
        bits: u32,
    },
    /// An mpint larger than OpenSSH accepts.
    BignumTooLarge,
    /// A negative mpint.
    BignumNegative,
    /// A certificate whose type is neither user (1) nor host (2).
    CertUnknownType,
}

impl KeyError {
    /// A one-line lowercase description.
    pub fn message(&self) -> String {
        match self {
            KeyError::UnknownType { name } => format!("unknown key type {name:?}"),
            KeyError::MissingBlob => "no key data after the key type".into(),
            KeyError::Base64 => {
                "the key data is not valid base64 (truncated, wrapped or damaged?)".into()
            }
            KeyError::InvalidFormat => {
                "the key data does not decode to a valid key (truncated or damaged?)".into()
            }
            KeyError::TypeMismatch { blob_type } => {
                format!("the key data is a {blob_type:?} key, not the type written before it")
            }
            KeyError::CurveMismatch => "the ECDSA key's curve does not match its type".into(),
            KeyError::RsaTooSmall { bits } => {
                format!("{bits}-bit RSA key: OpenSSH 7.6+ refuses RSA keys under 1024 bits")
            }
            KeyError::RsaTooLarge { bits } => {
                format!("{bits}-bit RSA key is larger than OpenSSH accepts")
            }
            KeyError::BignumTooLarge => "a key number is larger than OpenSSH accepts".into(),
            KeyError::BignumNegative => "a key number is negative".into(),
            KeyError::CertUnknownType => "certificate of unknown type".into(),
        }
    }
}

/// What a decoded certificate says (signature not verified).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, schemars::JsonSchema)]
pub struct CertInfo {
    /// 1 = user, 2 = host.
    pub cert_type: u32,
    /// Serial number.
    pub serial: u64,
    /// Key id.
    pub key_id: String,
    /// Valid principals.
    pub principals: Vec<String>,
    /// Start of validity (seconds since the epoch).
    pub valid_after: u64,
    /// End of validity (seconds since the epoch; `u64::MAX` = forever).
    pub valid_before: u64,
}

/// What a key blob holds.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, schemars::JsonSchema)]
pub struct KeyInfo {
    /// The algorithm.
    pub algorithm: KeyAlgorithm,
    /// Key size in bits (RSA/DSA modulus; fixed for EC and Ed25519).
    pub bits: u32,
    /// The FIDO application string of security-key types.
    pub application: Option<String>,
    /// Certificate fields for certificate types.
    pub cert: Option<CertInfo>,
}

fn lossy(b: &[u8]) -> String {
    String::from_utf8_lossy(b).into_owned()
}

/// Parses the public key fields of `alg` (after the type string and, for
/// certificates, the nonce).
fn key_fields(
    w: &mut Wire<'_>,
    alg: KeyAlgorithm,
    type_name: &str,
) -> Result<(u32, Option<String>), KeyError> {
    let curve = |t: &str| -> &'static str {
        if t.contains("nistp384") {
            "nistp384"
        } else if t.contains("nistp521") {
            "nistp521"
        } else {
            "nistp256"
        }
    };
    match alg {
        KeyAlgorithm::Rsa => {
            let _e = w.mpint()?;
            let n = w.mpint()?;
            if n < 1024 {
                return Err(KeyError::RsaTooSmall { bits: n });
            }
            if n > 16384 {
                return Err(KeyError::RsaTooLarge { bits: n });
            }
            Ok((n, None))
        }
        KeyAlgorithm::Dss => {
            let p = w.mpint()?;
            for _ in 0..3 {
                w.mpint()?;
            }
            Ok((p, None))
        }
        KeyAlgorithm::EcdsaP256
        | KeyAlgorithm::EcdsaP384
        | KeyAlgorithm::EcdsaP521
        | KeyAlgorithm::SkEcdsaP256 => {
            let c = w.string().ok_or(KeyError::InvalidFormat)?;
            let want = curve(type_name);
            if c != want.as_bytes() {
                return Err(KeyError::CurveMismatch);
            }
            let (len, bits) = match want {
                "nistp384" => (97, 384),
                "nistp521" => (133, 521),
                _ => (65, 256),
            };
            let q = w.string().ok_or(KeyError::InvalidFormat)?;
            if q.len() != len || q[0] != 0x04 {
                return Err(KeyError::InvalidFormat);
            }
            let app = if alg == KeyAlgorithm::SkEcdsaP256 {
                Some(lossy(w.string().ok_or(KeyError::InvalidFormat)?))
            } else {
                None
            };
            Ok((bits, app))
        }
        KeyAlgorithm::Ed25519 | KeyAlgorithm::SkEd25519 => {
            let pk = w.string().ok_or(KeyError::InvalidFormat)?;
            if pk.len() != 32 {
                return Err(KeyError::InvalidFormat);
            }
            let app = if alg == KeyAlgorithm::SkEd25519 {
                Some(lossy(w.string().ok_or(KeyError::InvalidFormat)?))
            } else {
                None
            };
            Ok((256, app))
        }
        KeyAlgorithm::Xmss => {
            let _name = w.string().ok_or(KeyError::InvalidFormat)?;
            let _pk = w.string().ok_or(KeyError::InvalidFormat)?;
            Ok((0, None))
        }
    }
}

/// Decodes a key blob the way `sshkey_from_blob()` does and checks that
/// its type agrees with `stated` (the name written before it).
pub fn parse_blob(blob: &[u8], stated: &KeyType) -> Result<KeyInfo, KeyError> {
    let mut w = Wire { data: blob, pos: 0 };
    let name = w.string().ok_or(KeyError::InvalidFormat)?;
    let name = std::str::from_utf8(name).map_err(|_| KeyError::InvalidFormat)?;
    let Some(inner) = key_type(name) else {
        return Err(KeyError::TypeMismatch {
            blob_type: name.to_owned(),
        });
    };
    // sshkey_read compares key types: `rsa-sha2-256` vs a `ssh-rsa` blob
    // is the same type; a plain key vs its certificate is not.
    if inner.algorithm != stated.algorithm || inner.certificate != stated.certificate {
        return Err(KeyError::TypeMismatch {
            blob_type: name.to_owned(),
        });
    }
    if inner.certificate {
        w.string().ok_or(KeyError::InvalidFormat)?; // nonce
    }
    let (bits, application) = key_fields(&mut w, inner.algorithm, name)?;
    let cert = if inner.certificate {
        let serial = w.u64().ok_or(KeyError::InvalidFormat)?;
        let cert_type = w.u32().ok_or(KeyError::InvalidFormat)?;
        let key_id = lossy(w.string().ok_or(KeyError::InvalidFormat)?);
        let principals_blob = w.string().ok_or(KeyError::InvalidFormat)?;
        let valid_after = w.u64().ok_or(KeyError::InvalidFormat)?;
        let valid_before = w.u64().ok_or(KeyError::InvalidFormat)?;
        for _ in 0..3 {
            w.string().ok_or(KeyError::InvalidFormat)?; // critical, extensions, reserved
        }
        let signature_key = w.string().ok_or(KeyError::InvalidFormat)?;
        w.string().ok_or(KeyError::InvalidFormat)?; // signature
        if cert_type != 1 && cert_type != 2 {
            return Err(KeyError::CertUnknownType);
        }
        // The CA key must itself be a plain key.
        let mut sw = Wire {
            data: signature_key,
            pos: 0,
        };
        let ca_name = sw.string().ok_or(KeyError::InvalidFormat)?;
        let ca = std::str::from_utf8(ca_name)
            .ok()
            .and_then(key_type)
            .filter(|k| !k.certificate)
            .ok_or(KeyError::InvalidFormat)?;
        key_fields(&mut sw, ca.algorithm, ca.name)?;
        if sw.remaining() != 0 {
            return Err(KeyError::InvalidFormat);
        }
        let mut pw = Wire {
            data: principals_blob,
            pos: 0,
        };
        let mut principals = Vec::new();
        while pw.remaining() > 0 {
            principals.push(lossy(pw.string().ok_or(KeyError::InvalidFormat)?));
        }
        Some(CertInfo {
            cert_type,
            serial,
            key_id,
            principals,
            valid_after,
            valid_before,
        })
    } else {
        None
    };
    if w.remaining() != 0 {
        return Err(KeyError::InvalidFormat);
    }
    Ok(KeyInfo {
        algorithm: inner.algorithm,
        bits,
        application,
        cert,
    })
}

// ---------------------------------------------------------------------------
// Options

/// The options `sshauthopt_parse()` knows, with the OpenSSH release that
/// introduced each.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, schemars::JsonSchema)]
#[serde(rename_all = "kebab-case")]
pub enum OptionName {
    /// `restrict` (7.2).
    Restrict,
    /// `cert-authority` (5.4).
    CertAuthority,
    /// `[no-]port-forwarding` (`no-` form ancient; positive 7.2).
    PortForwarding,
    /// `[no-]agent-forwarding`.
    AgentForwarding,
    /// `[no-]x11-forwarding`.
    X11Forwarding,
    /// `[no-]touch-required` (8.2).
    TouchRequired,
    /// `[no-]verify-required` (8.4).
    VerifyRequired,
    /// `[no-]pty`.
    Pty,
    /// `[no-]user-rc` (4.9).
    UserRc,
    /// `command="…"`.
    Command,
    /// `principals="…"` (5.6).
    Principals,
    /// `from="…"`.
    From,
    /// `expiry-time="…"` (7.7).
    ExpiryTime,
    /// `environment="NAME=value"` (honoured only with PermitUserEnvironment).
    Environment,
    /// `permitopen="host:port"`.
    PermitOpen,
    /// `permitlisten="[host:]port"` (7.8).
    PermitListen,
    /// `tunnel="n"` (4.3).
    Tunnel,
}

impl OptionName {
    /// The option's name as sshd spells it (without `no-`).
    pub fn as_str(self) -> &'static str {
        match self {
            OptionName::Restrict => "restrict",
            OptionName::CertAuthority => "cert-authority",
            OptionName::PortForwarding => "port-forwarding",
            OptionName::AgentForwarding => "agent-forwarding",
            OptionName::X11Forwarding => "x11-forwarding",
            OptionName::TouchRequired => "touch-required",
            OptionName::VerifyRequired => "verify-required",
            OptionName::Pty => "pty",
            OptionName::UserRc => "user-rc",
            OptionName::Command => "command",
            OptionName::Principals => "principals",
            OptionName::From => "from",
            OptionName::ExpiryTime => "expiry-time",
            OptionName::Environment => "environment",
            OptionName::PermitOpen => "permitopen",
            OptionName::PermitListen => "permitlisten",
            OptionName::Tunnel => "tunnel",
        }
    }

    /// The first OpenSSH release (major, minor) that accepts the option in
    /// the form used (`negated` for the `no-` form of a flag).
    pub fn since(self, negated: bool) -> (u32, u32) {
        match self {
            OptionName::Restrict => (7, 2),
            OptionName::CertAuthority => (5, 4),
            OptionName::PortForwarding
            | OptionName::AgentForwarding
            | OptionName::X11Forwarding
            | OptionName::Pty => {
                if negated {
                    (1, 0)
                } else {
                    (7, 2)
                }
            }
            OptionName::UserRc => {
                if negated {
                    (4, 9)
                } else {
                    (7, 2)
                }
            }
            OptionName::TouchRequired => (8, 2),
            OptionName::VerifyRequired => (8, 4),
            OptionName::Principals => (5, 6),
            OptionName::ExpiryTime => (7, 7),
            OptionName::PermitListen => (7, 8),
            OptionName::Tunnel => (4, 3),
            OptionName::Command
            | OptionName::From
            | OptionName::Environment
            | OptionName::PermitOpen => (1, 0),
        }
    }
}

/// One parsed option.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, schemars::JsonSchema)]
pub struct KeyOption {
    /// The option as written (name, `=`, quoted value).
    pub span: Span,
    /// Which option.
    pub name: OptionName,
    /// True for the `no-` form of a flag.
    pub negated: bool,
    /// The value with `\"` unescaped, for `name="value"` options.
    pub value: Option<String>,
}

/// The result of parsing an options field.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, schemars::JsonSchema)]
pub struct Options {
    /// The options field as written.
    pub span: Span,
    /// The options parsed before any error.
    pub items: Vec<KeyOption>,
    /// sshd's reason when the field does not parse (the `errstr` of
    /// `sshauthopt_parse()`: "unknown key option", "missing end quote",
    /// "invalid expires time", …), with the byte offset where it stopped.
    pub error: Option<OptionsError>,
}

/// Why sshd rejects an options field.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, schemars::JsonSchema)]
pub struct OptionsError {
    /// sshd's reason, verbatim.
    pub reason: String,
    /// Where parsing stopped (absolute offset in the file).
    pub offset: usize,
}

impl Options {
    /// The value of the first option `name`.
    pub fn get(&self, name: OptionName) -> Option<&KeyOption> {
        self.items.iter().find(|o| o.name == name)
    }

    /// True when the flag `name` is present and not negated.
    pub fn has(&self, name: OptionName) -> bool {
        self.items.iter().any(|o| o.name == name && !o.negated)
    }
}

fn starts_with_ci(s: &[u8], prefix: &str) -> bool {
    s.len() >= prefix.len() && s[..prefix.len()].eq_ignore_ascii_case(prefix.as_bytes())
}

/// `opt_flag()`: case-insensitive prefix match, optional `no-`.
fn opt_flag(s: &[u8], name: &str, allow_negate: bool) -> Option<(bool, usize)> {
    let mut i = 0;
    let mut negated = false;
    if allow_negate && starts_with_ci(s, "no-") {
        i = 3;
        negated = true;
    }
    starts_with_ci(&s[i..], name).then(|| (negated, i + name.len()))
}

/// `opt_match()`: `name=` case-insensitively.
fn opt_match(s: &[u8], name: &str) -> Option<usize> {
    (starts_with_ci(s, name) && s.get(name.len()) == Some(&b'=')).then_some(name.len() + 1)
}

/// `opt_dequote()`: a `"`-quoted value where only `\"` is an escape.
/// Returns the value and the bytes consumed.
fn opt_dequote(s: &[u8]) -> Result<(String, usize), &'static str> {
    if s.first() != Some(&b'"') {
        return Err("missing start quote");
    }
    let mut out = Vec::new();
    let mut i = 1;
    while i < s.len() && s[i] != b'"' {
        if s[i] == b'\\' && s.get(i + 1) == Some(&b'"') {
            i += 1;
        }
        out.push(s[i]);
        i += 1;
    }
    if i >= s.len() {
        return Err("missing end quote");
    }
    Ok((lossy(&out), i + 1))
}

/// `a2port()` without /etc/services: a number 0–65535 (0 fails later).
fn a2port(s: &str) -> Option<u32> {
    s.parse::<u32>().ok().filter(|&p| p <= 65535)
}

/// `handle_permit()`'s syntax check of a permitopen/permitlisten value.
fn check_permit(value: &str, allow_bare_port: bool) -> Result<(), &'static str> {
    let owned;
    let v = if allow_bare_port && !value.contains(':') {
        owned = format!("*:{value}");
        owned.as_str()
    } else {
        value
    };
    // hpdelim2: `[host]:port` or `host:port` / `host/port`.
    let (host, rest) = if let Some(stripped) = v.strip_prefix('[') {
        let Some(close) = stripped.find(']') else {
            return Err("invalid permission hostname");
        };
        let after = &stripped[close + 1..];
        match after.chars().next() {
            None => (v, None),
            Some(':') | Some('/') => (&v[..close + 2], Some(&after[1..])),
            Some(_) => return Err("invalid permission hostname"),
        }
    } else {
        match v.find([':', '/']) {
            Some(i) => (&v[..i], Some(&v[i + 1..])),
            None => (v, None),
        }
    };
    if host.len() >= 1025 {
        return Err("invalid permission hostname");
    }
    match rest {
        Some("*") => Ok(()),
        Some(p) if a2port(p).is_some_and(|p| p > 0) => Ok(()),
        // A service name would be resolved through /etc/services; accept
        // the common ones.
        Some("ssh" | "http" | "https" | "smtp" | "domain") => Ok(()),
        _ => Err("invalid permission port"),
    }
}

/// `a2tun()`: `any` or 0–0x7fffffff... (SSH_TUNID_MAX = 0x7ffffffd).
fn valid_tun(s: &str) -> bool {
    s.eq_ignore_ascii_case("any") || s.parse::<u64>().ok().is_some_and(|n| n <= 0x7fff_fffd)
}

/// Parses an options field like `sshauthopt_parse()` (OpenSSH 7.7+).
/// `line` starts at the options and may run on to the end of the line
/// (parsing stops at the first blank between options, as in sshd); `base`
/// is its absolute offset (for spans).
pub fn parse_options(line: &[u8], base: usize) -> Options {
    let field = line;
    let field_end = advance_past_options(line).unwrap_or(line.len());
    let mut items = Vec::new();
    let mut i = 0usize;
    let mut seen_command = false;
    let mut seen_principals = false;
    let mut seen_from = false;
    let mut n_env = 0usize;
    let mut n_permit = [0usize; 2];
    let fail = |items: Vec<KeyOption>, reason: &str, at: usize| Options {
        span: Span::new(base, base + field_end),
        items,
        error: Some(OptionsError {
            reason: reason.to_owned(),
            offset: base + at,
        }),
    };
    const FLAGS: &[(&str, bool, OptionName)] = &[
        ("restrict", false, OptionName::Restrict),
        ("cert-authority", false, OptionName::CertAuthority),
        ("port-forwarding", true, OptionName::PortForwarding),
        ("agent-forwarding", true, OptionName::AgentForwarding),
        ("x11-forwarding", true, OptionName::X11Forwarding),
        ("touch-required", true, OptionName::TouchRequired),
        ("verify-required", true, OptionName::VerifyRequired),
        ("pty", true, OptionName::Pty),
        ("user-rc", true, OptionName::UserRc),
    ];
    const VALUED: &[(&str, OptionName)] = &[
        ("command", OptionName::Command),
        ("principals", OptionName::Principals),
        ("from", OptionName::From),
        ("expiry-time", OptionName::ExpiryTime),
        ("environment", OptionName::Environment),
        ("permitopen", OptionName::PermitOpen),
        ("permitlisten", OptionName::PermitListen),
        ("tunnel", OptionName::Tunnel),
    ];
    while i < field.len() && field[i] != b' ' && field[i] != b'\t' {
        let start = i;
        let rest = &field[i..];
        let mut matched = false;
        for &(name, neg, which) in FLAGS {
            if let Some((negated, used)) = opt_flag(rest, name, neg) {
                i += used;
                items.push(KeyOption {
                    span: Span::new(base + start, base + i),
                    name: which,
                    negated,
                    value: None,
                });
                matched = true;
                break;
            }
        }
        if !matched {
            for &(name, which) in VALUED {
                let Some(used) = opt_match(rest, name) else {
                    continue;
                };
                i += used;
                let (value, used) = match opt_dequote(&field[i..]) {
                    Ok(v) => v,
                    Err(e) => return fail(items, e, i),
                };
                i += used;
                let err = match which {
                    OptionName::Command if seen_command => Some("multiple \"command\" clauses"),
                    OptionName::Principals if seen_principals => {
                        Some("multiple \"principals\" clauses")
                    }
                    OptionName::From if seen_from => Some("multiple \"from\" clauses"),
                    OptionName::ExpiryTime
                        if parse_absolute_time(&value).is_none_or(|t| t == 0) =>
                    {
                        Some("invalid expires time")
                    }
                    OptionName::Environment => {
                        n_env += 1;
                        if n_env > 1025 {
                            Some("too many environment strings")
                        } else {
                            match value.split_once('=') {
                                Some((n, _))
                                    if !n.is_empty()
                                        && n.bytes()
                                            .all(|b| b.is_ascii_alphanumeric() || b == b'_') =>
                                {
                                    None
                                }
                                _ => Some("invalid environment string"),
                            }
                        }
                    }
                    OptionName::PermitOpen | OptionName::PermitListen => {
                        let k = usize::from(which == OptionName::PermitListen);
                        n_permit[k] += 1;
                        if n_permit[k] > 4097 {
                            Some("too many permission directives")
                        } else {
                            check_permit(&value, which == OptionName::PermitListen).err()
                        }
                    }
                    OptionName::Tunnel if !valid_tun(&value) => Some("invalid tun device"),
                    _ => None,
                };
                if let Some(e) = err {
                    return fail(items, e, start);
                }
                match which {
                    OptionName::Command => seen_command = true,
                    OptionName::Principals => seen_principals = true,
                    OptionName::From => seen_from = true,
                    _ => {}
                }
                items.push(KeyOption {
                    span: Span::new(base + start, base + i),
                    name: which,
                    negated: false,
                    value: Some(value),
                });
                break;
            }
        }
        match field.get(i) {
            None | Some(b' ') | Some(b'\t') => break,
            Some(b',') => {
                i += 1;
                if i >= field.len() {
                    return fail(items, "unexpected end-of-options", i);
                }
            }
            Some(_) => return fail(items, "unknown key option", i),
        }
    }
    Options {
        span: Span::new(base, base + field_end),
        items,
        error: None,
    }
}

/// Days since 1970-01-01 of a proleptic Gregorian date (month 1–12; day
/// may overflow the month, as `mktime` normalises it).
fn days_from_civil(y: i64, m: i64, d: i64) -> i64 {
    let y = if m <= 2 { y - 1 } else { y };
    let era = y.div_euclid(400);
    let yoe = y - era * 400;
    let mp = (m + 9) % 12;
    let doy = (153 * mp + 2) / 5 + d - 1;
    let doe = yoe * 365 + yoe / 4 - yoe / 100 + doy;
    era * 146_097 + doe - 719_468
}

/// OpenSSH's `parse_absolute_time()`: `YYYYMMDD[HHMM[SS]]`, optionally
/// followed by `Z` or `UTC` for UTC. Without the suffix sshd uses the
/// server's local time zone, which an offline check cannot know: the value
/// is then read as UTC (off by at most the zone offset). Returns seconds
/// since the epoch.
pub fn parse_absolute_time(s: &str) -> Option<i64> {
    let mut t = s;
    if t.len() > 1 && (t.ends_with('Z') || t.ends_with('z')) {
        t = &t[..t.len() - 1];
    } else if t.len() > 3 && t.as_bytes()[t.len() - 3..].eq_ignore_ascii_case(b"UTC") {
        t = &t[..t.len() - 3];
    }
    if !matches!(t.len(), 8 | 12 | 14) || !t.bytes().all(|b| b.is_ascii_digit()) {
        return None;
    }
    let num = |a: usize, b: usize| -> i64 { t[a..b].parse().unwrap_or(-1) };
    let (y, mo, d) = (num(0, 4), num(4, 6), num(6, 8));
    let (h, mi, sec) = match t.len() {
        12 => (num(8, 10), num(10, 12), 0),
        14 => (num(8, 10), num(10, 12), num(12, 14)),
        _ => (0, 0, 0),
    };
    // strptime's ranges.
    if !(1..=12).contains(&mo) || !(1..=31).contains(&d) || h > 23 || mi > 59 || sec > 61 {
        return None;
    }
    Some(days_from_civil(y, mo, d) * 86_400 + h * 3600 + mi * 60 + sec)
}

// ---------------------------------------------------------------------------
// from= (match_host_and_ip)

/// `match_pattern()`: `*` and `?` wildcards, byte-wise.
pub fn match_pattern(s: &[u8], pattern: &[u8]) -> bool {
    // Iterative wildcard matching with backtracking to the last `*`:
    // linear in practice and never recursive.
    let (mut si, mut pi) = (0usize, 0usize);
    let mut star: Option<(usize, usize)> = None;
    while si < s.len() {
        if pi < pattern.len() && (pattern[pi] == b'?' || pattern[pi] == s[si]) {
            si += 1;
            pi += 1;
        } else if pi < pattern.len() && pattern[pi] == b'*' {
            star = Some((pi, si));
            pi += 1;
        } else if let Some((sp, ss)) = star {
            pi = sp + 1;
            si = ss + 1;
            star = Some((sp, ss + 1));
        } else {
            return false;
        }
    }
    while pi < pattern.len() && pattern[pi] == b'*' {
        pi += 1;
    }
    pi == pattern.len()
}

/// `match_pattern_list()`: comma-separated patterns, `!` negates. Returns
/// 1 (positive match), 0 (none) or -1 (a negated pattern matched), and the
/// deciding pattern.
fn match_pattern_list(s: &[u8], list: &[u8], dolower: bool) -> (i32, Option<String>) {
    let mut got_positive = None;
    let mut i = 0;
    while i < list.len() {
        let negated = list[i] == b'!';
        if negated {
            i += 1;
        }
        let start = i;
        while i < list.len() && list[i] != b',' {
            i += 1;
        }
        let sub = &list[start..i];
        // OpenSSH copies the subpattern into a 1024-byte buffer; a longer
        // one makes the whole list fail to match.
        if sub.len() >= 1023 {
            return (0, None);
        }
        if i < list.len() {
            i += 1;
        }
        let sub: Vec<u8> = if dolower {
            sub.to_ascii_lowercase()
        } else {
            sub.to_vec()
        };
        if match_pattern(s, &sub) {
            let shown = format!("{}{}", if negated { "!" } else { "" }, lossy(&sub));
            if negated {
                return (-1, Some(shown));
            }
            got_positive.get_or_insert(shown);
        }
    }
    match got_positive {
        Some(p) => (1, Some(p)),
        None => (0, None),
    }
}

/// glibc `inet_aton`: 1–4 parts, each decimal, octal (`0…`) or hex (`0x…`).
fn inet_aton(s: &str) -> Option<Ipv4Addr> {
    let parts: Vec<&str> = s.split('.').collect();
    if parts.is_empty() || parts.len() > 4 {
        return None;
    }
    let mut vals = Vec::with_capacity(4);
    for p in &parts {
        let v = if let Some(h) = p.strip_prefix("0x").or_else(|| p.strip_prefix("0X")) {
            if h.is_empty() {
                0
            } else {
                u64::from_str_radix(h, 16).ok()?
            }
        } else if p.len() > 1 && p.starts_with('0') {
            u64::from_str_radix(&p[1..], 8).ok()?
        } else {
            if p.is_empty() || !p.bytes().all(|b| b.is_ascii_digit()) {
                return None;
            }
            p.parse::<u64>().ok()?
        };
        vals.push(v);
    }
    let (last, head) = vals.split_last()?;
    if head.iter().any(|&v| v > 255) {
        return None;
    }
    let rest_bits = 8 * (4 - head.len() as u32);
    if *last >= (1u64 << rest_bits) {
        return None;
    }
    let mut n: u64 = 0;
    for (k, v) in head.iter().enumerate() {
        n |= v << (24 - 8 * k as u32);
    }
    n |= last;
    Some(Ipv4Addr::from(u32::try_from(n).ok()?))
}

/// `addr_pton()` (getaddrinfo with AI_NUMERICHOST).
fn addr_pton(s: &str) -> Option<IpAddr> {
    if let Some(v4) = inet_aton(s) {
        return Some(IpAddr::V4(v4));
    }
    let core = s.split_once('%').map_or(s, |(a, _)| a);
    core.parse::<Ipv6Addr>().ok().map(IpAddr::V6)
}

/// `addr_pton_cidr()`: `Ok((addr, len))`, `Err(true)` for a hard error
/// (bad mask length, host bits set), `Err(false)` when not an address.
fn addr_pton_cidr(p: &str) -> Result<(IpAddr, u32), bool> {
    if p.len() >= 64 {
        return Err(false);
    }
    let (a, mask) = match p.split_once('/') {
        Some((a, m)) => {
            let m = m.trim_start_matches(|c: char| c.is_ascii_whitespace());
            let m = m.strip_prefix('+').unwrap_or(m);
            if m.is_empty() || !m.bytes().all(|b| b.is_ascii_digit()) {
                return Err(false);
            }
            (a, Some(m.parse::<u64>().map_err(|_| false)?))
        }
        None => (p, None),
    };
    let addr = addr_pton(a).ok_or(false)?;
    let max = if addr.is_ipv4() { 32 } else { 128 };
    let len = mask.unwrap_or(max);
    if len > max {
        return Err(true);
    }
    let len = len as u32;
    if !host_bits_zero(addr, len) {
        return Err(true);
    }
    Ok((addr, len))
}

fn addr_bits(a: IpAddr) -> (u128, u32) {
    match a {
        IpAddr::V4(v) => (u128::from(u32::from(v)), 32),
        IpAddr::V6(v) => (u128::from(v), 128),
    }
}

fn host_bits_zero(a: IpAddr, len: u32) -> bool {
    let (bits, width) = addr_bits(a);
    let host = width - len;
    host == 0 || bits & ((1u128 << host) - 1) == 0
}

fn net_match(a: IpAddr, net: IpAddr, len: u32) -> bool {
    let (x, wx) = addr_bits(a);
    let (y, wy) = addr_bits(net);
    if wx != wy {
        return false;
    }
    let host = wx - len;
    if host >= 128 {
        return true;
    }
    (x >> host) == (y >> host)
}

/// OpenSSH's `addr_match_list()`: 1 match, 0 none, -1 negated match, -2
/// error (an empty entry, a bad mask). With the deciding pattern.
fn addr_match_list(addr: IpAddr, list: &str) -> (i32, Option<String>) {
    let text = addr.to_string();
    let mut ret = (0, None);
    for entry in list.split(',') {
        let (neg, cp) = match entry.strip_prefix('!') {
            Some(c) => (true, c),
            None => (false, entry),
        };
        if cp.is_empty() {
            return (-2, Some(entry.to_owned()));
        }
        let hit = match addr_pton_cidr(cp) {
            Err(true) => return (-2, Some(entry.to_owned())),
            Ok((net, len)) => net_match(addr, net, len),
            Err(false) => match_pattern(text.as_bytes(), cp.as_bytes()),
        };
        if hit {
            if neg {
                return (-1, Some(entry.to_owned()));
            }
            ret = (1, Some(entry.to_owned()));
        }
    }
    ret
}

/// The verdict of a `from="…"` list for one client.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, schemars::JsonSchema)]
#[serde(tag = "type", rename_all = "snake_case")]
pub enum FromVerdict {
    /// A pattern admits the client.
    Allowed {
        /// The pattern that matched.
        pattern: String,
    },
    /// A negated pattern (`!…`) matches the client.
    Denied {
        /// The negated pattern.
        pattern: String,
    },
    /// No pattern matches the client.
    NoMatch,
    /// The list is invalid for sshd ("invalid from criteria": an empty
    /// entry, a mask longer than the address, host bits set in a CIDR):
    /// every client is refused.
    Invalid {
        /// The offending entry.
        pattern: String,
    },
}

impl FromVerdict {
    /// True when sshd lets the key be used.
    pub fn allows(&self) -> bool {
        matches!(self, FromVerdict::Allowed { .. })
    }
}

/// A client as sshd sees it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Client<'a> {
    /// The client's address (an IPv4-mapped IPv6 address counts as IPv4).
    pub ip: IpAddr,
    /// The client's host name when `UseDNS yes` resolved one; `None`
    /// means sshd uses the address text as the name (`UseDNS no`, the
    /// default since OpenSSH 6.8).
    pub host: Option<&'a str>,
}

/// OpenSSH's `match_host_and_ip()` for a `from=` list.
pub fn match_from(patterns: &str, client: &Client<'_>) -> FromVerdict {
    let ip = match client.ip {
        IpAddr::V6(v6) => v6.to_ipv4_mapped().map_or(client.ip, IpAddr::V4),
        v4 => v4,
    };
    let (mip, mip_pat) = addr_match_list(ip, patterns);
    if mip == -2 {
        return FromVerdict::Invalid {
            pattern: mip_pat.unwrap_or_default(),
        };
    }
    if mip == -1 {
        return FromVerdict::Denied {
            pattern: mip_pat.unwrap_or_default(),
        };
    }
    let host = client
        .host
        .map(str::to_ascii_lowercase)
        .unwrap_or_else(|| ip.to_string());
    let (mhost, host_pat) = match_pattern_list(host.as_bytes(), patterns.as_bytes(), true);
    if mhost == -1 {
        return FromVerdict::Denied {
            pattern: host_pat.unwrap_or_default(),
        };
    }
    if mhost == 0 && mip == 0 {
        return FromVerdict::NoMatch;
    }
    FromVerdict::Allowed {
        pattern: mip_pat.or(host_pat).unwrap_or_default(),
    }
}

// ---------------------------------------------------------------------------
// The document

/// A key line sshd can read.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, schemars::JsonSchema)]
pub struct KeyEntry {
    /// The options field, when the line has one.
    pub options: Option<Options>,
    /// The key type name as written.
    pub key_type: String,
    /// Where the key type is.
    pub key_type_span: Span,
    /// The base64 blob as written.
    pub blob_span: Span,
    /// What the blob decodes to.
    pub info: KeyInfo,
    /// The comment after the key, if any (a trailing `\r` excluded).
    pub comment: Option<String>,
}

impl KeyEntry {
    /// True when the key line's options are rejected by sshd (the key is
    /// then skipped).
    pub fn options_error(&self) -> Option<&OptionsError> {
        self.options.as_ref().and_then(|o| o.error.as_ref())
    }

    fn opts(&self) -> Option<&Options> {
        self.options.as_ref()
    }
}

/// Why sshd will not use a key line for a login.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, schemars::JsonSchema)]
#[serde(tag = "type", rename_all = "snake_case")]
pub enum Refusal {
    /// The options do not parse ("bad key options: <reason>").
    BadOptions {
        /// sshd's reason.
        reason: String,
    },
    /// `cert-authority`: the line only accepts certificates signed by it.
    CertAuthorityOnly,
    /// The line holds a certificate, which never matches a login key.
    CertificateLine,
    /// `principals=` without `cert-authority`: "principals on non-CA key".
    PrincipalsOnNonCa,
    /// `expiry-time` is in the past: "entry expired at …".
    Expired {
        /// The expiry as written.
        expiry: String,
        /// Seconds since the epoch (read as UTC).
        at_unix: i64,
    },
    /// `from=` excludes the client.
    From {
        /// The list as written.
        patterns: String,
        /// What the list says for this client.
        verdict: FromVerdict,
    },
    /// An option the guest's OpenSSH is too old for (it rejects the line as
    /// bad options).
    UnsupportedOption {
        /// The option as written.
        option: String,
        /// The release that introduced it.
        since: (u32, u32),
    },
}

impl Refusal {
    /// A one-line lowercase description.
    pub fn message(&self) -> String {
        match self {
            Refusal::BadOptions { reason } => format!("sshd rejects the options: {reason} (logged at debug level as \"bad key options\")"),
            Refusal::CertAuthorityOnly => "marked cert-authority: it admits certificates signed by this key, not the key itself".into(),
            Refusal::CertificateLine => "the line holds a certificate; authorized_keys needs the plain key or a cert-authority CA key".into(),
            Refusal::PrincipalsOnNonCa => "principals= without cert-authority: sshd refuses the key (\"principals on non-CA key\")".into(),
            Refusal::Expired { expiry, .. } => format!("expiry-time {expiry:?} has passed"),
            Refusal::From { patterns, verdict } => match verdict {
                FromVerdict::Invalid { pattern } => {
                    format!("from=\"{patterns}\" is invalid for sshd at {pattern:?}: every client is refused")
                }
                FromVerdict::Denied { pattern } => format!("from=\"{patterns}\" excludes the client ({pattern})"),
                _ => format!("from=\"{patterns}\" does not include the client"),
            },
            Refusal::UnsupportedOption { option, since } => {
                format!("option {option:?} needs OpenSSH {}.{} or later", since.0, since.1)
            }
        }
    }
}

impl KeyEntry {
    /// Everything that stops sshd from accepting this line for a plain-key
    /// login from `client` at `now_unix` (seconds since the epoch).
    /// `openssh` is the guest's OpenSSH version when known (older releases
    /// reject newer options). An empty list means the key is usable.
    pub fn refusals(
        &self,
        client: &Client<'_>,
        now_unix: i64,
        openssh: Option<(u32, u32)>,
    ) -> Vec<Refusal> {
        let mut out = Vec::new();
        if let Some(e) = self.options_error() {
            out.push(Refusal::BadOptions {
                reason: e.reason.clone(),
            });
            return out;
        }
        if let (Some(v), Some(o)) = (openssh, self.opts()) {
            for item in &o.items {
                let since = item.name.since(item.negated);
                if v < since {
                    let prefix = if item.negated { "no-" } else { "" };
                    out.push(Refusal::UnsupportedOption {
                        option: format!("{prefix}{}", item.name.as_str()),
                        since,
                    });
                }
            }
            if !out.is_empty() {
                return out;
            }
        }
        if self.info.cert.is_some() {
            out.push(Refusal::CertificateLine);
        }
        let Some(o) = self.opts() else {
            return out;
        };
        if o.has(OptionName::CertAuthority) {
            out.push(Refusal::CertAuthorityOnly);
        }
        // auth_authorise_keyopts order: expiry, principals, from.
        let expiry = o
            .items
            .iter()
            .filter(|i| i.name == OptionName::ExpiryTime)
            .filter_map(|i| {
                i.value
                    .as_deref()
                    .and_then(|v| parse_absolute_time(v).map(|t| (v, t)))
            })
            .min_by_key(|(_, t)| *t);
        if let Some((v, t)) = expiry {
            if t < now_unix {
                out.push(Refusal::Expired {
                    expiry: v.to_owned(),
                    at_unix: t,
                });
            }
        }
        if o.get(OptionName::Principals).is_some() && !o.has(OptionName::CertAuthority) {
            out.push(Refusal::PrincipalsOnNonCa);
        }
        if let Some(from) = o.get(OptionName::From).and_then(|f| f.value.as_deref()) {
            let verdict = match_from(from, client);
            if !verdict.allows() {
                out.push(Refusal::From {
                    patterns: from.to_owned(),
                    verdict,
                });
            }
        }
        out
    }
}

/// Why a non-blank, non-comment line is not a key for sshd.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, schemars::JsonSchema)]
#[serde(tag = "type", rename_all = "snake_case")]
pub enum NotAKey {
    /// An options field with an unterminated quote: sshd logs "invalid key
    /// option string" at error level.
    UnterminatedQuote,
    /// No key could be read (neither at the start nor after options).
    Unreadable {
        /// Why the most key-like attempt failed.
        error: KeyError,
    },
    /// The line continues a key wrapped from an earlier line.
    Continuation {
        /// The line the key starts on.
        first_line: usize,
    },
}

/// What a line holds.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, schemars::JsonSchema)]
#[serde(tag = "type", rename_all = "snake_case")]
pub enum KeyLineKind {
    /// Empty or blanks only.
    Blank,
    /// A `#` comment.
    Comment,
    /// A key sshd reads.
    Key(Box<KeyEntry>),
    /// A line sshd skips silently.
    NotAKey(NotAKey),
}

/// One physical line.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, schemars::JsonSchema)]
pub struct KeyLine {
    /// 1-based line number.
    pub number: usize,
    /// The line's bytes, without the newline.
    pub span: Span,
    /// What it holds.
    pub kind: KeyLineKind,
    /// True when the line ends with `\r` (CRLF).
    pub crlf: bool,
}

/// A key split over several lines (a paste into a terminal that wrapped).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, schemars::JsonSchema)]
pub struct WrappedKey {
    /// The line the key starts on.
    pub first_line: usize,
    /// The last line holding a piece of it.
    pub last_line: usize,
}

/// A parsed authorized_keys file.
#[derive(Debug, Clone, Serialize, schemars::JsonSchema)]
pub struct AuthorizedKeys {
    #[serde(skip)]
    source: Vec<u8>,
    /// Every physical line.
    pub lines: Vec<KeyLine>,
    /// Keys wrapped over several lines that join into a valid key.
    pub wrapped: Vec<WrappedKey>,
    /// The file starts with a UTF-8 byte order mark.
    pub bom: bool,
    /// The file uses `\r` alone as line separator (only the first "line"
    /// is read by sshd).
    pub cr_only: bool,
    /// Problems found, each tied to a line.
    pub diagnostics: Vec<Diagnostic>,
}

/// The outcome of reading a key at `pos` (`sshkey_read()`).
fn read_key(data: &[u8], pos: usize, end: usize) -> Result<(KeyEntry, usize), KeyError> {
    let line = &data[pos..end];
    let type_len = line.iter().position(|&b| b == b' ' || b == b'\t');
    let Some(type_len) = type_len else {
        // sshd sees the newline here; a type with nothing after it fails.
        let name = lossy(line).trim_end().to_owned();
        return Err(if key_type(&name).is_some() {
            KeyError::MissingBlob
        } else {
            KeyError::UnknownType { name }
        });
    };
    let name = lossy(&line[..type_len]);
    let Some(kt) = key_type(&name) else {
        return Err(KeyError::UnknownType { name });
    };
    let mut i = type_len;
    while i < line.len() && (line[i] == b' ' || line[i] == b'\t') {
        i += 1;
    }
    if i >= line.len() || line[i..].iter().all(|&b| b == b'\r') {
        return Err(KeyError::MissingBlob);
    }
    let blob_start = i;
    while i < line.len() && line[i] != b' ' && line[i] != b'\t' {
        i += 1;
    }
    let blob_text = &line[blob_start..i];
    let blob = b64_decode(blob_text).ok_or(KeyError::Base64)?;
    let info = parse_blob(&blob, kt)?;
    while i < line.len() && (line[i] == b' ' || line[i] == b'\t') {
        i += 1;
    }
    let comment_bytes = &line[i..];
    let comment_bytes = comment_bytes.strip_suffix(b"\r").unwrap_or(comment_bytes);
    let comment = (!comment_bytes.is_empty()).then(|| lossy(comment_bytes));
    // The blob span excludes a trailing `\r` that b64_pton skipped.
    let mut blob_end = pos + i;
    while blob_end > pos + blob_start && matches!(data[blob_end - 1], b' ' | b'\t' | b'\r') {
        blob_end -= 1;
    }
    Ok((
        KeyEntry {
            options: None,
            key_type: kt.name.to_owned(),
            key_type_span: Span::new(pos, pos + type_len),
            blob_span: Span::new(pos + blob_start, blob_end),
            info,
            comment,
        },
        i,
    ))
}

/// `sshkey_advance_past_options()`: the end of the options field, or
/// `None` for an unterminated quote.
fn advance_past_options(line: &[u8]) -> Option<usize> {
    let mut quoted = false;
    let mut i = 0;
    while i < line.len() && (quoted || (line[i] != b' ' && line[i] != b'\t')) {
        if line[i] == b'\\' && line.get(i + 1) == Some(&b'"') {
            i += 1;
        } else if line[i] == b'"' {
            quoted = !quoted;
        }
        i += 1;
    }
    if i >= line.len() && quoted {
        None
    } else {
        Some(i.min(line.len()))
    }
}

/// Classifies one line the way `auth_check_authkey_line()` does.
fn classify(data: &[u8], start: usize, end: usize) -> KeyLineKind {
    let line = &data[start..end];
    let skip = line
        .iter()
        .take_while(|&&b| b == b' ' || b == b'\t')
        .count();
    let rest = &line[skip..];
    // sshd does not skip a lone `\r`, but it holds no key either.
    if rest.is_empty() || rest == b"\r" {
        return KeyLineKind::Blank;
    }
    if rest[0] == b'#' {
        return KeyLineKind::Comment;
    }
    let pos = start + skip;
    let first_err = match read_key(data, pos, end) {
        Ok((entry, _)) => return KeyLineKind::Key(Box::new(entry)),
        Err(e) => e,
    };
    let Some(opt_len) = advance_past_options(rest) else {
        return KeyLineKind::NotAKey(NotAKey::UnterminatedQuote);
    };
    let mut k = skip + opt_len;
    while k < line.len() && (line[k] == b' ' || line[k] == b'\t') {
        k += 1;
    }
    match read_key(data, start + k, end) {
        Ok((mut entry, _)) => {
            entry.options = Some(parse_options(rest, pos));
            KeyLineKind::Key(Box::new(entry))
        }
        Err(second) => {
            // Report the error of the attempt that got further: a known
            // type after options beats an unknown first word.
            let error = match (&first_err, &second) {
                (KeyError::UnknownType { .. }, KeyError::UnknownType { .. }) => first_err,
                (KeyError::UnknownType { .. }, _) => second,
                _ => first_err,
            };
            KeyLineKind::NotAKey(NotAKey::Unreadable { error })
        }
    }
}

fn is_b64_piece(b: &[u8]) -> bool {
    let t = b.strip_suffix(b"\r").unwrap_or(b);
    let t = trim_blanks(t);
    // The piece is base64 (padding allowed), optionally followed by a
    // comment after a blank.
    let word_end = t
        .iter()
        .position(|&c| c == b' ' || c == b'\t')
        .unwrap_or(t.len());
    let word = &t[..word_end];
    word.len() >= 4 && word.iter().all(|&c| b64_value(c).is_some() || c == b'=')
}

fn trim_blanks(b: &[u8]) -> &[u8] {
    let s = b.iter().take_while(|&&c| c == b' ' || c == b'\t').count();
    let e = b.len()
        - b[s..]
            .iter()
            .rev()
            .take_while(|&&c| c == b' ' || c == b'\t')
            .count();
    &b[s..e.max(s)]
}

/// How many continuation lines a wrapped key may span, and how long the
/// joined text may get: bounds the search on hostile input.
const MAX_WRAP_LINES: usize = 64;
const MAX_WRAP_BYTES: usize = 64 * 1024;

impl AuthorizedKeys {
    /// Parses authorized_keys bytes. Never fails.
    pub fn parse(data: &[u8]) -> AuthorizedKeys {
        let bom = data.starts_with(b"\xef\xbb\xbf");
        let has_lf = data.contains(&b'\n');
        let cr_only = !has_lf && data.iter().filter(|&&b| b == b'\r').count() > 1;
        let raw = text::lines(data);
        let mut lines: Vec<KeyLine> = raw
            .iter()
            .map(|r| {
                let bytes = r.content.slice(data);
                KeyLine {
                    number: r.number,
                    span: r.content,
                    kind: classify(data, r.content.start, r.content.end),
                    crlf: bytes.last() == Some(&b'\r'),
                }
            })
            .collect();
        let wrapped = find_wrapped(data, &mut lines);
        let mut doc = AuthorizedKeys {
            source: data.to_vec(),
            lines,
            wrapped,
            bom,
            cr_only,
            diagnostics: Vec::new(),
        };
        doc.diagnose();
        doc
    }

    fn diagnose(&mut self) {
        let mut d = Vec::new();
        if self.bom {
            d.push(Diagnostic::new(
                1,
                "the file starts with a UTF-8 byte order mark: sshd does not read the first line as a key",
            ));
        }
        if self.cr_only {
            d.push(Diagnostic::new(
                1,
                "lines end with a bare carriage return: sshd reads the whole file as one line and only the first key can work",
            ));
        }
        let crlf = self.lines.iter().filter(|l| l.crlf).count();
        if crlf > 0 {
            let first = self.lines.iter().find(|l| l.crlf).map_or(1, |l| l.number);
            d.push(Diagnostic::new(
                first,
                format!(
                    "{crlf} line(s) end with CRLF: OpenSSH's base64 decoder skips the \\r, so keys still load, but comments and some tools see it"
                ),
            ));
        }
        for w in &self.wrapped {
            d.push(Diagnostic::new(
                w.first_line,
                format!(
                    "key wrapped over lines {}-{}: sshd reads each line separately and ignores the key",
                    w.first_line, w.last_line
                ),
            ));
        }
        for l in &self.lines {
            match &l.kind {
                KeyLineKind::NotAKey(NotAKey::UnterminatedQuote) => d.push(Diagnostic::new(
                    l.number,
                    "unterminated quote in the options: sshd logs \"invalid key option string\" and skips the line",
                )),
                KeyLineKind::NotAKey(NotAKey::Unreadable { error })
                    if !self.wrapped.iter().any(|w| w.first_line == l.number) =>
                {
                    d.push(Diagnostic::new(
                        l.number,
                        format!("not a key for sshd ({}); the line is skipped silently", error.message()),
                    ));
                }
                KeyLineKind::Key(k) => {
                    if let Some(e) = k.options_error() {
                        d.push(Diagnostic::new(
                            l.number,
                            format!(
                                "bad key options: {} (OpenSSH 7.7+ logs this at debug level only; 7.6 and older log \"Bad options in … file, line {}\"); the key is ignored",
                                e.reason, l.number
                            ),
                        ));
                    }
                    if k.info.algorithm == KeyAlgorithm::Dss {
                        d.push(Diagnostic::new(
                            l.number,
                            "ssh-dss key: refused by default since OpenSSH 7.0 and unsupported since 10.0",
                        ));
                    }
                    if k.info.cert.is_some() {
                        d.push(Diagnostic::new(
                            l.number,
                            "a certificate in authorized_keys never matches; add the CA key with cert-authority instead",
                        ));
                    }
                }
                _ => {}
            }
        }
        d.sort_by_key(|x| x.line);
        self.diagnostics = d;
    }

    /// The bytes of the document; identical to the input until an edit.
    pub fn render(&self) -> Vec<u8> {
        self.source.clone()
    }

    /// The key lines with their line numbers.
    pub fn keys(&self) -> impl Iterator<Item = (usize, &KeyEntry)> {
        self.lines.iter().filter_map(|l| match &l.kind {
            KeyLineKind::Key(k) => Some((l.number, k.as_ref())),
            _ => None,
        })
    }

    /// The keys sshd would accept for a plain-key login from `client` at
    /// `now_unix`, with line numbers.
    pub fn usable_keys(
        &self,
        client: &Client<'_>,
        now_unix: i64,
        openssh: Option<(u32, u32)>,
    ) -> Vec<usize> {
        self.keys()
            .filter(|(_, k)| k.refusals(client, now_unix, openssh).is_empty())
            .map(|(n, _)| n)
            .collect()
    }

    fn line(&self, number: usize) -> Option<&KeyLine> {
        self.lines.iter().find(|l| l.number == number)
    }

    fn reparse(&mut self, bytes: Vec<u8>) {
        *self = AuthorizedKeys::parse(&bytes);
    }

    /// Joins the wrapped key starting on `first_line` into one line: the
    /// line breaks and the blanks around them are removed.
    pub fn join_wrapped(&mut self, first_line: usize) -> Result<Span, String> {
        let w = self
            .wrapped
            .iter()
            .find(|w| w.first_line == first_line)
            .cloned()
            .ok_or_else(|| format!("no wrapped key starts on line {first_line}"))?;
        let mut out = Vec::with_capacity(self.source.len());
        let first = self.line(w.first_line).ok_or("line vanished")?.span;
        let last = self.line(w.last_line).ok_or("line vanished")?.span;
        out.extend_from_slice(&self.source[..first.start]);
        let start = out.len();
        for n in w.first_line..=w.last_line {
            let l = self.line(n).ok_or("line vanished")?;
            let mut b = l.span.slice(&self.source);
            b = b.strip_suffix(b"\r").unwrap_or(b);
            if n == w.first_line {
                b = &b[..b.len()
                    - b.iter()
                        .rev()
                        .take_while(|&&c| c == b' ' || c == b'\t')
                        .count()];
            } else {
                b = trim_blanks(b);
                // A comment on a continuation line needs its blank back.
                if let Some(sp) = b.iter().position(|&c| c == b' ' || c == b'\t') {
                    out.extend_from_slice(&b[..sp]);
                    out.push(b' ');
                    out.extend_from_slice(trim_blanks(&b[sp..]));
                    continue;
                }
            }
            out.extend_from_slice(b);
        }
        let end = out.len();
        out.extend_from_slice(&self.source[last.end..]);
        self.reparse(out);
        Ok(Span::new(start, end))
    }

    /// Removes every `\r` that ends a line, and a final one.
    pub fn strip_cr(&mut self) -> usize {
        let mut out = Vec::with_capacity(self.source.len());
        let mut removed = 0;
        for (i, &b) in self.source.iter().enumerate() {
            if b == b'\r' && matches!(self.source.get(i + 1), Some(b'\n') | None) {
                removed += 1;
                continue;
            }
            out.push(b);
        }
        if removed > 0 {
            self.reparse(out);
        }
        removed
    }

    /// Removes a leading UTF-8 byte order mark. Returns whether one was
    /// there.
    pub fn strip_bom(&mut self) -> bool {
        if !self.bom {
            return false;
        }
        let out = self.source[3..].to_vec();
        self.reparse(out);
        true
    }

    /// Comments line `number` out: a `# rescue-disk: <reason>` line is
    /// inserted above it and the line itself gets a leading `#`.
    pub fn comment_out(&mut self, number: usize, reason: &str) -> Result<Span, String> {
        if reason.contains(['\n', '\r']) {
            return Err("the reason must be a single line".into());
        }
        let l = self
            .line(number)
            .ok_or_else(|| format!("no line {number}"))?;
        if matches!(l.kind, KeyLineKind::Blank | KeyLineKind::Comment) {
            return Err(format!("line {number} is not a key line"));
        }
        let at = l.span.start;
        let eol = if l.crlf { "\r\n" } else { "\n" };
        let insert = format!("# rescue-disk: {reason}{eol}#");
        let mut out = self.source.clone();
        out.splice(at..at, insert.bytes());
        self.reparse(out);
        Ok(Span::new(at, at + insert.len()))
    }

    /// Appends a key line (`[options ]type base64 [comment]`), adding the
    /// missing newline of the last line first. The line must be a key sshd
    /// reads, with options that parse.
    pub fn append_key(&mut self, key_line: &str) -> Result<Span, String> {
        let line = key_line.trim_end_matches(['\n', '\r']);
        if line.contains(['\n', '\r']) {
            return Err("the key must be a single line".into());
        }
        let probe = AuthorizedKeys::parse(line.as_bytes());
        match probe.lines.first().map(|l| &l.kind) {
            Some(KeyLineKind::Key(k)) if k.options_error().is_none() && k.info.cert.is_none() => {}
            Some(KeyLineKind::Key(k)) if k.info.cert.is_some() => {
                return Err("a certificate cannot be used as an authorized key".into())
            }
            Some(KeyLineKind::Key(k)) => {
                return Err(format!(
                    "the key's options do not parse: {}",
                    k.options_error().map(|e| e.reason.as_str()).unwrap_or("")
                ))
            }
            Some(KeyLineKind::NotAKey(NotAKey::Unreadable { error })) => {
                return Err(error.message())
            }
            _ => return Err("not a public key line".into()),
        }
        let mut out = self.source.clone();
        if !out.is_empty() && out.last() != Some(&b'\n') {
            out.push(b'\n');
        }
        let start = out.len();
        out.extend_from_slice(line.as_bytes());
        out.push(b'\n');
        self.reparse(out);
        Ok(Span::new(start, start + line.len()))
    }
}

/// Finds keys wrapped over several lines: a line starting with a known
/// key type whose key data does not decode, followed by lines of bare
/// base64, which together form a valid key. A join is only tried where a
/// key can end (a piece with padding or a comment, or the last piece of
/// the run), so each line is classified a bounded number of times.
fn find_wrapped(data: &[u8], lines: &mut [KeyLine]) -> Vec<WrappedKey> {
    let mut out = Vec::new();
    let mut i = 0;
    while i < lines.len() {
        let is_candidate = matches!(
            &lines[i].kind,
            KeyLineKind::NotAKey(NotAKey::Unreadable { error })
                if !matches!(error, KeyError::UnknownType { .. })
        );
        if !is_candidate {
            i += 1;
            continue;
        }
        // The run of base64 pieces after the candidate.
        let mut run_end = i + 1;
        while run_end < lines.len()
            && run_end - i <= MAX_WRAP_LINES
            && is_b64_piece(lines[run_end].span.slice(data))
        {
            run_end += 1;
        }
        let mut joined: Vec<u8> = {
            let b = lines[i].span.slice(data);
            let b = b.strip_suffix(b"\r").unwrap_or(b);
            b[..b.len()
                - b.iter()
                    .rev()
                    .take_while(|&&c| c == b' ' || c == b'\t')
                    .count()]
                .to_vec()
        };
        let mut found = None;
        for (j, line) in lines.iter().enumerate().take(run_end).skip(i + 1) {
            if joined.len() > MAX_WRAP_BYTES {
                break;
            }
            let piece = line.span.slice(data);
            let t = trim_blanks(piece.strip_suffix(b"\r").unwrap_or(piece));
            let has_comment = t.iter().any(|&c| c == b' ' || c == b'\t');
            match t.iter().position(|&c| c == b' ' || c == b'\t') {
                Some(sp) => {
                    joined.extend_from_slice(&t[..sp]);
                    joined.push(b' ');
                    joined.extend_from_slice(trim_blanks(&t[sp..]));
                }
                None => joined.extend_from_slice(t),
            }
            let may_end = has_comment || t.ends_with(b"=") || j + 1 == run_end;
            if may_end && matches!(classify(&joined, 0, joined.len()), KeyLineKind::Key(_)) {
                found = Some(j);
                break;
            }
            if has_comment {
                break;
            }
        }
        match found {
            Some(last) => {
                out.push(WrappedKey {
                    first_line: lines[i].number,
                    last_line: lines[last].number,
                });
                let first_line = lines[i].number;
                for l in &mut lines[i + 1..=last] {
                    l.kind = KeyLineKind::NotAKey(NotAKey::Continuation { first_line });
                }
                i = last + 1;
            }
            None => i = run_end.max(i + 1),
        }
    }
    out
}

/// Fuzz entry point: parses, checks the round trip, evaluates every key
/// and runs the edits.
#[doc(hidden)]
pub fn fuzz_authorized_keys(data: &[u8]) {
    let doc = AuthorizedKeys::parse(data);
    assert_eq!(doc.render(), data);
    let client = Client {
        ip: IpAddr::V4(Ipv4Addr::new(192, 0, 2, 10)),
        host: None,
    };
    for (_, k) in doc.keys() {
        assert!(k.blob_span.end <= data.len());
        let _ = k.refusals(&client, 1_700_000_000, Some((7, 4)));
        if let Some(o) = &k.options {
            for i in &o.items {
                if let Some(v) = &i.value {
                    let _ = match_from(v, &client);
                    let _ = parse_absolute_time(v);
                }
            }
        }
    }
    let mut d = doc.clone();
    d.strip_bom();
    d.strip_cr();
    if let Some(w) = doc.wrapped.first() {
        let mut d2 = doc.clone();
        let _ = d2.join_wrapped(w.first_line);
    }
    if let Some(l) = doc.lines.first() {
        let mut d3 = doc.clone();
        let _ = d3.comment_out(l.number, "fuzz");
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const ED: &str = "AAAAC3NzaC1lZDI1NTE5AAAAIAXc+Wo1NhJaj5FCW2pkz9jQhJjegW1P5zktr0L0j+eC";

    fn ip(s: &str) -> Client<'static> {
        Client {
            ip: s.parse().unwrap(),
            host: None,
        }
    }

    #[test]
    fn base64_like_b64_pton() {
        assert_eq!(b64_decode(b"AAAA").unwrap(), vec![0, 0, 0]);
        assert_eq!(b64_decode(b"QQ==").unwrap(), b"A");
        assert_eq!(b64_decode(b"QUI=").unwrap(), b"AB");
        assert_eq!(b64_decode(b"QU\r\nI=\n").unwrap(), b"AB");
        assert!(b64_decode(b"QQ=").is_none());
        assert!(b64_decode(b"QR==").is_none(), "unused bits must be zero");
        assert!(b64_decode(b"QUJ").is_none());
        assert!(b64_decode(b"Q").is_none());
        assert!(b64_decode(b"QQ==x").is_none());
        assert_eq!(b64_encode(b"AB"), "QUI=");
        for n in 0..20u8 {
            let v: Vec<u8> = (0..n).collect();
            assert_eq!(b64_decode(b64_encode(&v).as_bytes()).unwrap(), v);
        }
    }

    #[test]
    fn options_grammar() {
        let o = parse_options(
            br#"no-pty,command="echo \"hi\", there",from="10.0.0.0/8,!10.1.2.3""#,
            0,
        );
        assert!(o.error.is_none(), "{o:?}");
        assert_eq!(o.items.len(), 3);
        assert!(o.items[0].negated && o.items[0].name == OptionName::Pty);
        assert_eq!(o.items[1].value.as_deref(), Some("echo \"hi\", there"));
        let err = |s: &str| parse_options(s.as_bytes(), 0).error.map(|e| e.reason);
        assert_eq!(err("bogus").as_deref(), Some("unknown key option"));
        assert_eq!(
            err("restrict,").as_deref(),
            Some("unexpected end-of-options")
        );
        assert_eq!(err("command=x").as_deref(), Some("missing start quote"));
        assert_eq!(err("command=\"x").as_deref(), Some("missing end quote"));
        assert_eq!(
            err("from=\"a\",from=\"b\"").as_deref(),
            Some("multiple \"from\" clauses")
        );
        assert_eq!(
            err("expiry-time=\"2020\"").as_deref(),
            Some("invalid expires time")
        );
        assert_eq!(
            err("environment=\"1-x=y\"").as_deref(),
            Some("invalid environment string")
        );
        assert_eq!(
            err("permitopen=\"host\"").as_deref(),
            Some("invalid permission port")
        );
        assert_eq!(err("permitlisten=\"8080\""), None);
        assert_eq!(err("tunnel=\"x\"").as_deref(), Some("invalid tun device"));
        assert_eq!(err("NO-PTY,Restrict"), None, "case-insensitive");
        assert_eq!(err("ptyx").as_deref(), Some("unknown key option"));
        assert_eq!(err("no-restrict").as_deref(), Some("unknown key option"));
    }

    #[test]
    fn from_patterns() {
        let v = |p: &str, c: &str| match_from(p, &ip(c));
        assert!(v("10.0.0.0/8", "10.1.2.3").allows());
        assert_eq!(
            v("10.0.0.0/8,!10.1.2.3", "10.1.2.3"),
            FromVerdict::Denied {
                pattern: "!10.1.2.3".into()
            }
        );
        assert_eq!(
            v("192.168.1.5/24", "192.168.1.5"),
            FromVerdict::Invalid {
                pattern: "192.168.1.5/24".into()
            }
        );
        assert_eq!(
            v("10.0.0.1,", "10.0.0.1"),
            FromVerdict::Invalid { pattern: "".into() }
        );
        assert!(v("10.0.0.*", "10.0.0.7").allows());
        assert_eq!(v("*.example.com", "10.0.0.7"), FromVerdict::NoMatch);
        assert!(match_from(
            "*.EXAMPLE.com",
            &Client {
                ip: "10.0.0.7".parse().unwrap(),
                host: Some("a.example.com")
            }
        )
        .allows());
        assert!(v("2001:db8::/32", "2001:db8::1").allows());
        assert!(v("127.1", "127.0.0.1").allows(), "inet_aton short form");
        assert!(v("10.0.0.0/8", "::ffff:10.0.0.1").allows());
        assert_eq!(
            v("10.0.0.0/33", "10.0.0.1"),
            FromVerdict::Invalid {
                pattern: "10.0.0.0/33".into()
            }
        );
    }

    #[test]
    fn lines_and_refusals() {
        let text = format!(
            "# keys\n\nssh-ed25519 {ED} alice@laptop\nfrom=\"10.0.0.0/8\" ssh-ed25519 {ED} office\r\nbogus-type {ED}\nrestrict,bad ssh-ed25519 {ED}\ncommand=\"x ssh-ed25519 {ED}\nexpiry-time=\"20200101\" ssh-ed25519 {ED}\n"
        );
        let doc = AuthorizedKeys::parse(text.as_bytes());
        assert_eq!(doc.render(), text.as_bytes());
        let keys: Vec<usize> = doc.keys().map(|(n, _)| n).collect();
        assert_eq!(keys, vec![3, 4, 6, 8]);
        assert!(matches!(
            doc.lines[4].kind,
            KeyLineKind::NotAKey(NotAKey::Unreadable {
                error: KeyError::UnknownType { .. }
            })
        ));
        assert!(matches!(
            doc.lines[6].kind,
            KeyLineKind::NotAKey(NotAKey::UnterminatedQuote)
        ));
        let now = 1_700_000_000;
        assert_eq!(doc.usable_keys(&ip("10.9.9.9"), now, None), vec![3, 4]);
        assert_eq!(doc.usable_keys(&ip("192.0.2.1"), now, None), vec![3]);
        assert!(doc.lines[3].crlf);
        let (_, k) = doc.keys().nth(1).unwrap();
        assert_eq!(k.comment.as_deref(), Some("office"));
        let (_, k) = doc.keys().nth(3).unwrap();
        assert!(matches!(
            k.refusals(&ip("10.0.0.1"), now, None)[0],
            Refusal::Expired { .. }
        ));
        let (_, k) = doc.keys().nth(2).unwrap();
        assert_eq!(k.options_error().unwrap().reason, "unknown key option");
        // expiry-time came with OpenSSH 7.7.
        let (_, k) = doc.keys().nth(3).unwrap();
        assert!(matches!(
            k.refusals(&ip("10.0.0.1"), now, Some((7, 6)))[0],
            Refusal::UnsupportedOption { since: (7, 7), .. }
        ));
    }

    #[test]
    fn wrapped_bom_and_edits() {
        let (a, b) = ED.split_at(30);
        let text = format!("\u{feff}ssh-ed25519 {ED} first\nssh-ed25519 {a}\n{b} wrapped@host\n");
        let mut doc = AuthorizedKeys::parse(text.as_bytes());
        assert!(doc.bom);
        assert!(matches!(doc.lines[0].kind, KeyLineKind::NotAKey(_)));
        assert_eq!(
            doc.wrapped,
            vec![WrappedKey {
                first_line: 2,
                last_line: 3
            }]
        );
        doc.join_wrapped(2).unwrap();
        assert!(doc.strip_bom());
        assert_eq!(
            doc.render(),
            format!("ssh-ed25519 {ED} first\nssh-ed25519 {ED} wrapped@host\n").as_bytes()
        );
        assert_eq!(doc.keys().count(), 2);
        doc.comment_out(1, "unknown key").unwrap();
        assert_eq!(doc.keys().count(), 1);
        assert!(doc
            .render()
            .starts_with(b"# rescue-disk: unknown key\n#ssh-ed25519"));
        let span = doc.append_key(&format!("ssh-ed25519 {ED} new")).unwrap();
        assert_eq!(
            span.slice(&doc.render()),
            format!("ssh-ed25519 {ED} new").as_bytes()
        );
        assert!(doc.append_key("ssh-ed25519 AAAA").is_err());
        let mut crlf =
            AuthorizedKeys::parse(format!("ssh-ed25519 {ED}\r\nssh-ed25519 {ED}\r").as_bytes());
        assert_eq!(crlf.strip_cr(), 2);
        assert_eq!(
            crlf.render(),
            format!("ssh-ed25519 {ED}\nssh-ed25519 {ED}").as_bytes()
        );
    }

    #[test]
    fn absolute_time() {
        assert_eq!(parse_absolute_time("19700101"), Some(0));
        assert_eq!(parse_absolute_time("19700102Z"), Some(86_400));
        assert_eq!(parse_absolute_time("202001010000UTC"), Some(1_577_836_800));
        assert_eq!(parse_absolute_time("20200101000001"), Some(1_577_836_801));
        assert_eq!(parse_absolute_time("20201301"), None);
        assert_eq!(parse_absolute_time("2020010"), None);
    }

    #[test]
    fn mutations_never_panic() {
        let text = format!(
            "\u{feff}# c\nfrom=\"10.0.0.0/8,!10.1.*\",command=\"a\\\"b\",expiry-time=\"20300101Z\" ssh-ed25519 {ED} x\r\nssh-ed25519 {}\n{}\nssh-rsa AAAAB3NzaC1yc2EAAAADAQABAAAAgQC7 y\n",
            &ED[..20],
            &ED[20..]
        );
        crate::text::mutate_and_run(text.as_bytes(), 4000, 0xa17e_0001, fuzz_authorized_keys);
    }
}
