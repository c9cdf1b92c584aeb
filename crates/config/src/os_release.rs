//! `/etc/os-release` and `/usr/lib/os-release` (os-release(5)).
//!
//! `KEY=value` lines with shell quoting but no expansion. Lossless through
//! [`ShellDoc`]; never fails, never does I/O.

use serde::Serialize;

use crate::shell::{ShellDoc, ShellOptions};

/// A parsed os-release file.
#[derive(Debug, Clone, Serialize, schemars::JsonSchema)]
pub struct OsRelease {
    /// The underlying document (spans, diagnostics).
    pub doc: ShellDoc,
}

/// Broad distribution family, from `ID` and `ID_LIKE`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, schemars::JsonSchema)]
#[serde(rename_all = "snake_case")]
pub enum Family {
    /// Debian, Ubuntu and derivatives (dpkg, update-grub, initrd.img-*).
    Debian,
    /// RHEL, CentOS, Fedora, Rocky, Alma, Oracle (rpm, BLS, initramfs-*.img).
    Rhel,
    /// SUSE and openSUSE.
    Suse,
    /// Arch Linux and derivatives.
    Arch,
    /// Anything else.
    Other,
}

impl OsRelease {
    /// Parses os-release bytes. Never fails.
    pub fn parse(data: &[u8]) -> OsRelease {
        OsRelease {
            doc: ShellDoc::parse(
                data,
                ShellOptions {
                    expand: false,
                    only_assignments: true,
                },
            ),
        }
    }

    /// The bytes of the document.
    pub fn render(&self) -> Vec<u8> {
        self.doc.render()
    }

    /// The value of `key`, if set.
    pub fn get(&self, key: &str) -> Option<&str> {
        self.doc.get(key)
    }

    /// `ID`, defaulting to `linux` as os-release(5) specifies.
    pub fn id(&self) -> &str {
        self.get("ID").filter(|v| !v.is_empty()).unwrap_or("linux")
    }

    /// `ID_LIKE`, split on whitespace.
    pub fn id_like(&self) -> Vec<&str> {
        self.get("ID_LIKE")
            .map(|v| v.split_whitespace().collect())
            .unwrap_or_default()
    }

    /// The family derived from `ID`, then `ID_LIKE` in order.
    pub fn family(&self) -> Family {
        std::iter::once(self.id())
            .chain(self.id_like())
            .map(family_of)
            .find(|f| *f != Family::Other)
            .unwrap_or(Family::Other)
    }
}

fn family_of(id: &str) -> Family {
    match id {
        "debian" | "ubuntu" | "linuxmint" | "raspbian" | "kali" | "pop" | "devuan" => {
            Family::Debian
        }
        "rhel" | "centos" | "fedora" | "rocky" | "almalinux" | "ol" | "amzn" | "scientific"
        | "eurolinux" | "virtuozzo" | "cloudlinux" | "navy" => Family::Rhel,
        "suse" | "opensuse" | "sles" | "sled" | "opensuse-leap" | "opensuse-tumbleweed" => {
            Family::Suse
        }
        "arch" | "manjaro" | "endeavouros" => Family::Arch,
        _ => Family::Other,
    }
}

/// Fuzz entry point.
#[doc(hidden)]
pub fn fuzz_os_release(data: &[u8]) {
    let o = OsRelease::parse(data);
    assert_eq!(o.render(), data);
    let _ = (o.id(), o.id_like(), o.family());
}

#[cfg(test)]
mod tests {
    use super::*;

    const DEBIAN: &[u8] = b"PRETTY_NAME=\"Debian GNU/Linux 12 (bookworm)\"\n\
NAME=\"Debian GNU/Linux\"\n\
VERSION_ID=\"12\"\n\
VERSION=\"12 (bookworm)\"\n\
VERSION_CODENAME=bookworm\n\
ID=debian\n\
HOME_URL=\"https://www.debian.org/\"\n";

    const ROCKY: &[u8] = b"NAME=\"Rocky Linux\"\nVERSION=\"9.3 (Blue Onyx)\"\nID=\"rocky\"\nID_LIKE=\"rhel centos fedora\"\nVERSION_ID=\"9.3\"\nPRETTY_NAME='Rocky Linux 9.3 (Blue Onyx)'\n";

    #[test]
    fn debian_and_rocky() {
        let d = OsRelease::parse(DEBIAN);
        assert_eq!(d.render(), DEBIAN);
        assert_eq!(d.id(), "debian");
        assert_eq!(d.get("PRETTY_NAME"), Some("Debian GNU/Linux 12 (bookworm)"));
        assert_eq!(d.get("VERSION_CODENAME"), Some("bookworm"));
        assert_eq!(d.family(), Family::Debian);
        assert!(d.doc.diagnostics.is_empty());
        let r = OsRelease::parse(ROCKY);
        assert_eq!(r.id(), "rocky");
        assert_eq!(r.id_like(), vec!["rhel", "centos", "fedora"]);
        assert_eq!(r.family(), Family::Rhel);
        assert_eq!(r.get("PRETTY_NAME"), Some("Rocky Linux 9.3 (Blue Onyx)"));
        let u = OsRelease::parse(b"ID=mydistro\nID_LIKE=\"ubuntu debian\"\n");
        assert_eq!(u.family(), Family::Debian);
        let e = OsRelease::parse(b"garbage line\nNAME=x\n");
        assert_eq!(e.id(), "linux");
        assert_eq!(e.family(), Family::Other);
        assert_eq!(e.doc.diagnostics.len(), 1);
        assert_eq!(e.doc.diagnostics[0].line, 1);
    }

    #[test]
    fn mutations_never_panic() {
        crate::text::mutate_and_run(ROCKY, 3000, 0x05e1ea5e, fuzz_os_release);
    }
}
