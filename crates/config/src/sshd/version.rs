//! Which OpenSSH the guest runs: release numbers, distribution patches, and
//! the rule table the rest of this module applies for them.
//!
//! Versions come from the guest's package database (`1:9.2p1-2+deb12u3`,
//! `8.7p1-38.el9`) or from the banner string in its `sshd` binary
//! (`OpenSSH_9.2p1 Debian-2+deb12u3`). Parsing never fails loudly: anything
//! unreadable yields `None` and the caller decides. This file must never do
//! I/O.

use serde::Serialize;

/// An OpenSSH release: `major.minor` plus the portable patch level (`p1`).
#[derive(
    Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, schemars::JsonSchema,
)]
pub struct OpensshVersion {
    /// Major release number (`9` in 9.2p1).
    pub major: u32,
    /// Minor release number (`2` in 9.2p1).
    pub minor: u32,
    /// Portable patch level (`1` in 9.2p1; 0 when absent).
    pub patch: u32,
}

impl OpensshVersion {
    /// The release `major.minor` with patch level 1.
    pub const fn new(major: u32, minor: u32) -> Self {
        OpensshVersion {
            major,
            minor,
            patch: 1,
        }
    }

    /// Parses a version as found in the wild: `9.2p1`, `9.2`, `OpenSSH_9.2p1`,
    /// `OpenSSH_9.2p1 Debian-2+deb12u3`, a Debian package version
    /// `1:9.2p1-2+deb12u3`, or an RPM one `8.7p1-38.el9`.
    pub fn parse(text: &str) -> Option<Self> {
        let mut s = text.trim();
        if let Some(rest) = s.strip_prefix("OpenSSH_") {
            s = rest;
        }
        // A Debian epoch (`1:`) comes before the upstream version.
        if let Some((epoch, rest)) = s.split_once(':') {
            if !epoch.is_empty() && epoch.bytes().all(|b| b.is_ascii_digit()) {
                s = rest;
            }
        }
        let b = s.as_bytes();
        let mut i = 0usize;
        let major = take_number(b, &mut i)?;
        if b.get(i) != Some(&b'.') {
            return None;
        }
        i += 1;
        let minor = take_number(b, &mut i)?;
        let mut patch = 0;
        if b.get(i) == Some(&b'p') {
            i += 1;
            patch = take_number(b, &mut i).unwrap_or(0);
        }
        // What follows must be a separator, not more version digits.
        match b.get(i) {
            None | Some(b'-' | b' ' | b',' | b'+' | b'~' | b'_') => {}
            Some(_) => return None,
        }
        Some(OpensshVersion {
            major,
            minor,
            patch,
        })
    }

    /// Same as [`OpensshVersion::parse`]; named for readability where a
    /// package version (with epoch and distribution revision) is passed.
    pub fn from_package_version(text: &str) -> Option<Self> {
        Self::parse(text)
    }

    /// True when this release is `major.minor` or newer (patch ignored).
    pub fn at_least(&self, major: u32, minor: u32) -> bool {
        (self.major, self.minor) >= (major, minor)
    }

    fn release(&self) -> (u32, u32) {
        (self.major, self.minor)
    }
}

impl std::fmt::Display for OpensshVersion {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{}.{}p{}", self.major, self.minor, self.patch)
    }
}

fn take_number(b: &[u8], i: &mut usize) -> Option<u32> {
    let start = *i;
    let mut v: u32 = 0;
    while let Some(&c) = b.get(*i) {
        if !c.is_ascii_digit() {
            break;
        }
        v = v.checked_mul(10)?.checked_add(u32::from(c - b'0'))?;
        *i += 1;
    }
    (*i > start).then_some(v)
}

/// Whose build of OpenSSH it is: distributions add keywords with patches.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, schemars::JsonSchema)]
#[serde(rename_all = "snake_case")]
pub enum Distro {
    /// Plain portable OpenSSH (built with PAM, Kerberos and GSSAPI like the
    /// distributions, so those keywords are supported).
    Upstream,
    /// Debian and its derivatives (Ubuntu): GSSAPI key exchange patch,
    /// `DebianBanner`, `PermitBlacklistedKeys` (deprecated).
    Debian,
    /// RHEL, CentOS, Alma, Rocky, Fedora: GSSAPI key exchange patch,
    /// `GSSAPIEnablek5users`, `KerberosUseKuserok`.
    Rhel,
}

impl Distro {
    /// Guesses the family from a package version string (`+deb12u3`,
    /// `ubuntu`, `.el9`, `.fc39`), or from an os-release `ID`/`ID_LIKE` word.
    pub fn guess(text: &str) -> Distro {
        let t = text.to_ascii_lowercase();
        let words: Vec<&str> = t
            .split(|c: char| !c.is_ascii_alphanumeric())
            .filter(|w| !w.is_empty())
            .collect();
        let has = |f: &dyn Fn(&str) -> bool| words.iter().any(|w| f(w));
        if has(&|w| {
            w == "debian"
                || w == "ubuntu"
                || w.starts_with("deb") && w[3..].starts_with(|c: char| c.is_ascii_digit())
                || w.contains("ubuntu")
        }) {
            return Distro::Debian;
        }
        let rhel_word = |w: &str| {
            matches!(w, "rhel" | "fedora" | "centos" | "rocky" | "almalinux")
                || (w.len() > 2
                    && (w.starts_with("el") || w.starts_with("fc"))
                    && w[2..].starts_with(|c: char| c.is_ascii_digit()))
        };
        if has(&rhel_word) {
            return Distro::Rhel;
        }
        Distro::Upstream
    }
}

/// The oldest release whose rules are modelled.
pub const OLDEST: OpensshVersion = OpensshVersion::new(7, 4);
/// The newest release whose rules are modelled.
pub const NEWEST: OpensshVersion = OpensshVersion::new(10, 0);

/// The sshd build whose behaviour is emulated: requested version, the
/// release whose rules are applied, and the distribution.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, schemars::JsonSchema)]
pub struct Target {
    /// The version asked for.
    pub requested: OpensshVersion,
    /// The release whose rules are applied (clamped to the modelled range).
    pub rules: OpensshVersion,
    /// The distribution whose patches are applied.
    pub distro: Distro,
    /// Why `rules` differs from `requested`, if it does.
    pub note: Option<String>,
}

impl Target {
    /// Rules for `version` as built by `distro`. Versions outside the
    /// modelled range use the nearest modelled release, and say so in `note`.
    pub fn new(version: OpensshVersion, distro: Distro) -> Target {
        let (rules, note) = if version.release() < OLDEST.release() {
            (
                OLDEST,
                Some(format!(
                    "openssh {version} is older than the oldest modelled release {OLDEST}; its rules are used"
                )),
            )
        } else if version.release() > NEWEST.release() {
            (
                NEWEST,
                Some(format!(
                    "openssh {version} is newer than the newest modelled release {NEWEST}; its rules are used"
                )),
            )
        } else {
            (version, None)
        };
        Target {
            requested: version,
            rules,
            distro,
            note,
        }
    }

    /// True when the applied rules are those of `major.minor` or newer.
    pub fn at_least(&self, major: u32, minor: u32) -> bool {
        self.rules.at_least(major, minor)
    }

    /// True when the applied rules are older than `major.minor`.
    pub fn before(&self, major: u32, minor: u32) -> bool {
        !self.at_least(major, minor)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_versions_from_every_source() {
        let v = |s: &str| OpensshVersion::parse(s);
        assert_eq!(
            v("9.2p1"),
            Some(OpensshVersion {
                major: 9,
                minor: 2,
                patch: 1
            })
        );
        assert_eq!(
            v("9.2"),
            Some(OpensshVersion {
                major: 9,
                minor: 2,
                patch: 0
            })
        );
        assert_eq!(v("1:9.2p1-2+deb12u3"), Some(OpensshVersion::new(9, 2)));
        assert_eq!(v("8.7p1-38.el9"), Some(OpensshVersion::new(8, 7)));
        assert_eq!(
            v("OpenSSH_8.9p1 Ubuntu-3ubuntu0.10"),
            Some(OpensshVersion::new(8, 9))
        );
        assert_eq!(v("1:7.4p1-21.el7"), Some(OpensshVersion::new(7, 4)));
        assert_eq!(
            v("10.0p2"),
            Some(OpensshVersion {
                major: 10,
                minor: 0,
                patch: 2
            })
        );
        assert_eq!(v(""), None);
        assert_eq!(v("x9.2"), None);
        assert_eq!(v("9"), None);
        assert_eq!(v("9.2x"), None);
        assert_eq!(v("99999999999.1"), None);
        assert_eq!(OpensshVersion::new(9, 2).to_string(), "9.2p1");
    }

    #[test]
    fn distro_guess() {
        assert_eq!(Distro::guess("1:9.2p1-2+deb12u3"), Distro::Debian);
        assert_eq!(Distro::guess("1:8.9p1-3ubuntu0.10"), Distro::Debian);
        assert_eq!(Distro::guess("8.7p1-38.el9"), Distro::Rhel);
        assert_eq!(Distro::guess("9.3p1-1.fc39"), Distro::Rhel);
        assert_eq!(Distro::guess("rhel centos fedora"), Distro::Rhel);
        assert_eq!(Distro::guess("9.6p1"), Distro::Upstream);
    }

    #[test]
    fn clamping_is_reported() {
        let t = Target::new(OpensshVersion::new(6, 6), Distro::Rhel);
        assert_eq!(t.rules, OLDEST);
        assert!(t.note.as_deref().unwrap_or("").contains("older"));
        let t = Target::new(OpensshVersion::new(11, 0), Distro::Upstream);
        assert_eq!(t.rules, NEWEST);
        assert!(t.note.as_deref().unwrap_or("").contains("newer"));
        let t = Target::new(OpensshVersion::new(9, 2), Distro::Debian);
        assert!(t.note.is_none());
        assert!(t.at_least(9, 2) && t.before(9, 3));
    }
}
