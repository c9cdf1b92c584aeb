//! Boot Loader Specification entry files (`/boot/loader/entries/*.conf`).
//!
//! `key value` lines: `title`, `version`, `linux`, `initrd` (may repeat),
//! `options` (may repeat), `grub_users`, `grub_class`, … Comments start with
//! `#`. Lossless; never fails, never does I/O.

use serde::Serialize;

use crate::text::{self, is_blank};
use crate::{Diagnostic, Span};

/// A parsed BLS entry.
#[derive(Debug, Clone, Serialize, schemars::JsonSchema)]
pub struct BlsEntry {
    #[serde(skip)]
    source: Vec<u8>,
    /// `key value` lines in order.
    pub fields: Vec<BlsField>,
    /// Problems found.
    pub diagnostics: Vec<Diagnostic>,
}

/// One `key value` line.
#[derive(Debug, Clone, Serialize, schemars::JsonSchema)]
pub struct BlsField {
    /// 1-based line number.
    pub line: usize,
    /// The key.
    pub key: String,
    /// Span of the key.
    pub key_span: Span,
    /// The value, with surrounding blanks removed.
    pub value: String,
    /// Span of the value.
    pub value_span: Span,
}

impl BlsEntry {
    /// Parses an entry file. Never fails.
    pub fn parse(data: &[u8]) -> BlsEntry {
        let mut fields = Vec::new();
        let mut diagnostics = Vec::new();
        for raw in text::lines(data) {
            let end = raw.content.end;
            let mut end_trim = end;
            while end_trim > raw.content.start
                && data
                    .get(end_trim - 1)
                    .is_some_and(|&b| is_blank(b) || b == b'\r')
            {
                end_trim -= 1;
            }
            let start = text::skip_blanks(data, raw.content.start, end_trim);
            if start >= end_trim || data.get(start) == Some(&b'#') {
                continue;
            }
            let mut key_end = start;
            while key_end < end_trim && !data.get(key_end).is_some_and(|&b| is_blank(b)) {
                key_end += 1;
            }
            let vstart = text::skip_blanks(data, key_end, end_trim);
            let (key, kv) = text::lossy(Span::new(start, key_end).slice(data));
            let (value, vv) = text::lossy(Span::new(vstart, end_trim).slice(data));
            if !kv || !vv {
                diagnostics.push(Diagnostic::new(raw.number, "line is not valid utf-8"));
            }
            if vstart >= end_trim {
                diagnostics.push(Diagnostic::new(
                    raw.number,
                    format!("key {key:?} has no value"),
                ));
            }
            fields.push(BlsField {
                line: raw.number,
                key,
                key_span: Span::new(start, key_end),
                value,
                value_span: Span::new(vstart, end_trim),
            });
        }
        BlsEntry {
            source: data.to_vec(),
            fields,
            diagnostics,
        }
    }

    /// The bytes of the document.
    pub fn render(&self) -> Vec<u8> {
        self.source.clone()
    }

    /// The first value of `key`.
    pub fn get(&self, key: &str) -> Option<&str> {
        self.fields
            .iter()
            .find(|f| f.key == key)
            .map(|f| f.value.as_str())
    }

    /// All values of `key`, in order.
    pub fn get_all(&self, key: &str) -> Vec<&str> {
        self.fields
            .iter()
            .filter(|f| f.key == key)
            .map(|f| f.value.as_str())
            .collect()
    }

    /// `title`.
    pub fn title(&self) -> Option<&str> {
        self.get("title")
    }

    /// `version`.
    pub fn version(&self) -> Option<&str> {
        self.get("version")
    }

    /// `linux`.
    pub fn linux(&self) -> Option<&str> {
        self.get("linux")
    }

    /// Every `initrd` value, each possibly listing several blank-separated paths.
    pub fn initrds(&self) -> Vec<&str> {
        self.get_all("initrd")
            .into_iter()
            .flat_map(|v| v.split_whitespace())
            .collect()
    }

    /// All `options` lines joined with a space, as the spec concatenates them.
    pub fn options(&self) -> String {
        self.get_all("options").join(" ")
    }
}

/// Fuzz entry point.
#[doc(hidden)]
pub fn fuzz_bls(data: &[u8]) {
    let e = BlsEntry::parse(data);
    assert_eq!(e.render(), data);
    let _ = (e.title(), e.version(), e.linux(), e.initrds(), e.options());
}

#[cfg(test)]
mod tests {
    use super::*;

    /// As kernel-install writes it on RHEL 9.
    const RHEL: &[u8] =
        b"title Red Hat Enterprise Linux (5.14.0-362.8.1.el9_3.x86_64) 9.3 (Plow)\n\
version 5.14.0-362.8.1.el9_3.x86_64\n\
linux /vmlinuz-5.14.0-362.8.1.el9_3.x86_64\n\
initrd /initramfs-5.14.0-362.8.1.el9_3.x86_64.img $tuned_initrd\n\
options root=UUID=7e1e0d5a-1111-4e4e-9e9e-123456789abc ro crashkernel=1G-4G:192M $tuned_params\n\
grub_users $grub_users\n\
grub_arg --unrestricted\n\
grub_class rhel\n";

    #[test]
    fn rhel_entry() {
        let e = BlsEntry::parse(RHEL);
        assert_eq!(e.render(), RHEL);
        assert_eq!(
            e.title(),
            Some("Red Hat Enterprise Linux (5.14.0-362.8.1.el9_3.x86_64) 9.3 (Plow)")
        );
        assert_eq!(e.version(), Some("5.14.0-362.8.1.el9_3.x86_64"));
        assert_eq!(e.linux(), Some("/vmlinuz-5.14.0-362.8.1.el9_3.x86_64"));
        assert_eq!(
            e.initrds(),
            vec![
                "/initramfs-5.14.0-362.8.1.el9_3.x86_64.img",
                "$tuned_initrd"
            ]
        );
        assert!(e.options().starts_with("root=UUID=7e1e0d5a"));
        assert_eq!(e.get("grub_class"), Some("rhel"));
        assert!(e.diagnostics.is_empty());
        let odd = BlsEntry::parse(b"# c\n  title   spaced  out \t\r\ninitrd a\ninitrd b\nlonely\n");
        assert_eq!(odd.title(), Some("spaced  out"));
        assert_eq!(odd.initrds(), vec!["a", "b"]);
        assert_eq!(odd.diagnostics.len(), 1);
        assert_eq!(odd.diagnostics[0].line, 5);
    }

    #[test]
    fn mutations_never_panic() {
        crate::text::mutate_and_run(RHEL, 3000, 0xb15, fuzz_bls);
    }
}
