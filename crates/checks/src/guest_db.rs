//! Small readers of the guest's own system databases shared by several
//! checks: dpkg's status file and systemd's unit enablement links.
//!
//! Must never: consult the host's package database or systemd.

use rescue_guest::{GuestPath, MAX_CONFIG_FILE_BYTES, MAX_DIR_ENTRIES};
use rescue_io::ErrorKind;

use crate::Context;

/// Where dpkg keeps the state of every package.
pub(crate) const DPKG_STATUS: &str = "/var/lib/dpkg/status";

/// Directories systemd loads unit files from, most specific first.
pub(crate) const UNIT_DIRS: &[&str] = &[
    "/etc/systemd/system",
    "/usr/lib/systemd/system",
    "/lib/systemd/system",
];

/// The guest's dpkg status file as text, `None` when there is none.
pub(crate) fn dpkg_status(ctx: &Context<'_>) -> Result<Option<String>, rescue_io::Error> {
    match ctx
        .guest
        .read_file(&GuestPath::new(DPKG_STATUS), MAX_CONFIG_FILE_BYTES)
    {
        Ok(b) => Ok(Some(String::from_utf8_lossy(&b).into_owned())),
        Err(e) if e.kind() == ErrorKind::NotFound => Ok(None),
        Err(e) => Err(e),
    }
}

/// One package stanza of the dpkg status file.
#[derive(Clone, Copy)]
pub(crate) struct Stanza<'a>(&'a str);

impl<'a> Stanza<'a> {
    /// The value of field `name` (`Package`, `Version`, …), trimmed.
    pub(crate) fn field(&self, name: &str) -> Option<&'a str> {
        self.0.lines().find_map(|l| {
            l.strip_prefix(name)
                .and_then(|r| r.strip_prefix(':'))
                .map(str::trim)
        })
    }

    /// `Status: install ok installed`.
    pub(crate) fn is_installed(&self) -> bool {
        self.field("Status")
            .is_some_and(|s| s.ends_with(" installed"))
    }
}

/// Every stanza of a dpkg status file.
pub(crate) fn stanzas(status: &str) -> impl Iterator<Item = Stanza<'_>> {
    status.split("\n\n").map(Stanza)
}

/// The stanza of package `name`, installed or not.
pub(crate) fn package<'a>(status: &'a str, name: &str) -> Option<Stanza<'a>> {
    stanzas(status).find(|s| s.field("Package") == Some(name))
}

/// The `/etc/systemd/system/*.wants/<unit>` link that enables `unit` (what
/// `systemctl enable` makes), if there is one. Masking is not considered.
pub(crate) fn wants_link(ctx: &Context<'_>, unit: &str) -> Option<String> {
    let entries = ctx
        .guest
        .read_dir(&GuestPath::new("/etc/systemd/system"), MAX_DIR_ENTRIES)
        .ok()?;
    entries
        .iter()
        .map(|e| e.name_lossy())
        .filter(|n| n.ends_with(".wants"))
        .map(|n| format!("/etc/systemd/system/{n}/{unit}"))
        .find(|p| ctx.guest.symlink_metadata(&GuestPath::new(p)).is_ok())
}

#[cfg(test)]
mod tests {
    use super::{package, stanzas};

    #[test]
    fn stanzas_and_fields() {
        let s = "Package: a\nStatus: install ok installed\nVersion: 1:9.2p1-2\n\nPackage: b\nStatus: deinstall ok config-files\n";
        assert_eq!(
            package(s, "a").and_then(|p| p.field("Version")),
            Some("1:9.2p1-2")
        );
        assert!(package(s, "a").unwrap().is_installed());
        assert!(!package(s, "b").unwrap().is_installed());
        assert!(package(s, "c").is_none());
        assert_eq!(stanzas(s).count(), 2);
    }
}
