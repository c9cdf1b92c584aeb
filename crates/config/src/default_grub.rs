//! `/etc/default/grub`: the shell fragment `grub-mkconfig` sources.
//!
//! Parsed as shell assignments with `$VAR` expansion from earlier lines of
//! the same file (commands are never run). Lossless; never fails.

use serde::Serialize;

use crate::shell::{ShellDoc, ShellOptions};

/// A parsed `/etc/default/grub`.
#[derive(Debug, Clone, Serialize, schemars::JsonSchema)]
pub struct DefaultGrub {
    /// The underlying document.
    pub doc: ShellDoc,
}

impl DefaultGrub {
    /// Parses the file. Never fails.
    pub fn parse(data: &[u8]) -> DefaultGrub {
        DefaultGrub {
            doc: ShellDoc::parse(
                data,
                ShellOptions {
                    expand: true,
                    only_assignments: false,
                },
            ),
        }
    }

    /// The bytes of the document.
    pub fn render(&self) -> Vec<u8> {
        self.doc.render()
    }

    /// The value of `key` as the shell would see it.
    pub fn get(&self, key: &str) -> Option<&str> {
        self.doc.get(key)
    }

    /// `GRUB_DEFAULT` (`0`, `saved`, a title, an id or a `>` path).
    pub fn grub_default(&self) -> Option<&str> {
        self.get("GRUB_DEFAULT")
    }

    /// `GRUB_CMDLINE_LINUX`.
    pub fn cmdline_linux(&self) -> Option<&str> {
        self.get("GRUB_CMDLINE_LINUX")
    }

    /// `GRUB_CMDLINE_LINUX_DEFAULT`.
    pub fn cmdline_linux_default(&self) -> Option<&str> {
        self.get("GRUB_CMDLINE_LINUX_DEFAULT")
    }

    /// `GRUB_ENABLE_BLSCFG` is `true`.
    pub fn blscfg_enabled(&self) -> bool {
        self.get("GRUB_ENABLE_BLSCFG") == Some("true")
    }
}

/// Fuzz entry point.
#[doc(hidden)]
pub fn fuzz_default_grub(data: &[u8]) {
    let d = DefaultGrub::parse(data);
    assert_eq!(d.render(), data);
    let _ = (
        d.grub_default(),
        d.cmdline_linux(),
        d.cmdline_linux_default(),
        d.blscfg_enabled(),
    );
}

#[cfg(test)]
mod tests {
    use super::*;

    /// As Debian 12 ships it, with a `GRUB_CMDLINE_LINUX` edit.
    const DEBIAN: &[u8] = b"# If you change this file, run 'update-grub' afterwards to update\n\
# /boot/grub/grub.cfg.\n\
\n\
GRUB_DEFAULT=0\n\
GRUB_TIMEOUT=5\n\
GRUB_DISTRIBUTOR=`lsb_release -i -s 2> /dev/null || echo Debian`\n\
GRUB_CMDLINE_LINUX_DEFAULT=\"quiet\"\n\
GRUB_CMDLINE_LINUX=\"console=tty0 console=ttyS0,115200\"\n\
GRUB_CMDLINE_LINUX_DEFAULT=\"$GRUB_CMDLINE_LINUX_DEFAULT splash\"\n\
\n\
# Uncomment to disable graphical terminal (grub-pc only)\n\
#GRUB_TERMINAL=console\n";

    #[test]
    fn debian_defaults() {
        let d = DefaultGrub::parse(DEBIAN);
        assert_eq!(d.render(), DEBIAN);
        assert_eq!(d.grub_default(), Some("0"));
        assert_eq!(d.cmdline_linux(), Some("console=tty0 console=ttyS0,115200"));
        assert_eq!(d.cmdline_linux_default(), Some("quiet splash"));
        assert!(d.doc.find("GRUB_DISTRIBUTOR").unwrap().1.unevaluated);
        assert!(!d.blscfg_enabled());
        let r = DefaultGrub::parse(b"GRUB_DEFAULT=saved\nGRUB_ENABLE_BLSCFG=true\n");
        assert_eq!(r.grub_default(), Some("saved"));
        assert!(r.blscfg_enabled());
    }

    #[test]
    fn mutations_never_panic() {
        crate::text::mutate_and_run(DEBIAN, 3000, 0xdefa, fuzz_default_grub);
    }
}
