//! `/etc/fstab`: a lossless line model with decoded fields.
//!
//! Every byte of the input is kept: [`Fstab::render`] returns the original
//! bytes until an edit is made, and every field carries its [`Span`] so later
//! edits replace exactly one field. Fields are split on blanks as
//! libmount does, and the octal escapes of fstab(5) (`\040` space, `\011` tab,
//! `\012` newline, `\134` backslash, any `\NNN`) are decoded.
//!
//! Garbage never fails: the document comes back with [`Diagnostic`]s naming
//! the line. This module must never do I/O and never resolve anything against
//! the host (that is the guest crate's job, against the guest's own disk).

use serde::Serialize;

use crate::text::{self, is_blank};
use crate::{Diagnostic, Span};

/// A parsed fstab.
#[derive(Debug, Clone, Serialize, schemars::JsonSchema)]
pub struct Fstab {
    #[serde(skip)]
    source: Vec<u8>,
    /// Every line of the file, in order.
    pub lines: Vec<Line>,
    /// Problems found, with line numbers.
    pub diagnostics: Vec<Diagnostic>,
}

/// One physical line of the file.
#[derive(Debug, Clone, Serialize, schemars::JsonSchema)]
pub struct Line {
    /// 1-based line number.
    pub number: usize,
    /// The line's bytes without its newline.
    pub span: Span,
    /// What the line holds.
    pub kind: LineKind,
}

/// Classification of a line.
#[derive(Debug, Clone, Serialize, schemars::JsonSchema)]
#[serde(tag = "type", rename_all = "snake_case")]
pub enum LineKind {
    /// Empty or only blanks.
    Blank,
    /// First non-blank byte is `#`.
    Comment,
    /// A mount entry with at least the three mandatory fields.
    Entry(Box<Entry>),
    /// Fields that do not form an entry (fewer than three).
    Invalid {
        /// The fields that were there.
        fields: Vec<Field>,
    },
}

/// One blank-separated field.
#[derive(Debug, Clone, Serialize, schemars::JsonSchema)]
pub struct Field {
    /// Where the field is in the file (escaped form).
    pub span: Span,
    /// The field with octal escapes decoded (lossy UTF-8).
    pub value: String,
}

/// A mount entry: `spec file vfstype [options [freq [passno]]]`.
#[derive(Debug, Clone, Serialize, schemars::JsonSchema)]
pub struct Entry {
    /// First field: what to mount.
    pub spec: Field,
    /// Second field: where (the mount point; `none` or `swap` for swap).
    pub file: Field,
    /// Third field: filesystem type.
    pub vfstype: Field,
    /// Fourth field, if present.
    pub options: Option<Field>,
    /// Fifth field, if present.
    pub freq: Option<Field>,
    /// Sixth field, if present.
    pub passno: Option<Field>,
    /// Fields beyond the sixth (libmount ignores them; we report them).
    pub extra: Vec<Field>,
}

impl Entry {
    /// The classified source of this entry.
    pub fn source(&self) -> Source {
        classify_source(&self.spec.value, &self.vfstype.value)
    }

    /// The mount point as written (decoded).
    pub fn mount_point(&self) -> &str {
        &self.file.value
    }

    /// The filesystem type as written.
    pub fn fstype(&self) -> &str {
        &self.vfstype.value
    }

    /// The mount options, split on commas; `defaults` when the field is absent.
    pub fn options(&self) -> Vec<&str> {
        match &self.options {
            Some(f) => f.value.split(',').filter(|o| !o.is_empty()).collect(),
            None => vec!["defaults"],
        }
    }

    /// True when the option `name` (or `name=…`) is present.
    pub fn has_option(&self, name: &str) -> bool {
        self.options()
            .iter()
            .any(|o| *o == name || o.strip_prefix(name).is_some_and(|r| r.starts_with('=')))
    }

    /// The dump frequency: 0 when absent, `None` when not a number.
    pub fn freq(&self) -> Option<u32> {
        numeric(self.freq.as_ref())
    }

    /// The fsck pass number: 0 when absent, `None` when not a number.
    pub fn passno(&self) -> Option<u32> {
        numeric(self.passno.as_ref())
    }

    /// True for swap entries.
    pub fn is_swap(&self) -> bool {
        self.vfstype.value == "swap"
    }
}

fn numeric(f: Option<&Field>) -> Option<u32> {
    match f {
        None => Some(0),
        Some(f) => f.value.parse().ok(),
    }
}

/// Which tag a `TAG=value` source or a `/dev/disk/by-*` link names.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, schemars::JsonSchema)]
#[serde(rename_all = "snake_case")]
pub enum Tag {
    /// Filesystem UUID (`UUID=`, `/dev/disk/by-uuid/`).
    Uuid,
    /// Filesystem label (`LABEL=`, `/dev/disk/by-label/`).
    Label,
    /// Partition UUID (`PARTUUID=`, `/dev/disk/by-partuuid/`).
    PartUuid,
    /// Partition name (`PARTLABEL=`, `/dev/disk/by-partlabel/`).
    PartLabel,
    /// Hardware id (`ID=`, `/dev/disk/by-id/`).
    Id,
}

/// What the first field of an entry refers to.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, schemars::JsonSchema)]
#[serde(tag = "type", rename_all = "snake_case")]
pub enum Source {
    /// A tag (`UUID=…`) or the udev link for it (`/dev/disk/by-uuid/…`).
    Tag {
        /// The tag.
        tag: Tag,
        /// The value, with quotes removed and udev `\xHH` escapes decoded.
        value: String,
        /// True when written as a `/dev/disk/by-*/` path.
        by_path: bool,
    },
    /// Any other `/dev/…` path (`/dev/sda1`, `/dev/mapper/vg-root`, …).
    Device {
        /// The path as written.
        path: String,
    },
    /// A network source: `host:/path` (NFS) or `//server/share` (CIFS), or a
    /// network filesystem type.
    Network {
        /// The source as written.
        source: String,
    },
    /// A pseudo filesystem (`proc`, `tmpfs`, `none`, …): nothing to resolve.
    Pseudo {
        /// The source as written.
        source: String,
    },
    /// An absolute path that is not under `/dev` (a swap file, a bind mount).
    Path {
        /// The path as written.
        path: String,
    },
    /// Anything else.
    Other {
        /// The source as written.
        source: String,
    },
}

/// Filesystem types that never have a block device behind them.
pub const PSEUDO_FSTYPES: &[&str] = &[
    "proc",
    "sysfs",
    "tmpfs",
    "devtmpfs",
    "devpts",
    "ramfs",
    "cgroup",
    "cgroup2",
    "securityfs",
    "debugfs",
    "tracefs",
    "efivarfs",
    "mqueue",
    "hugetlbfs",
    "configfs",
    "fusectl",
    "pstore",
    "bpf",
    "binfmt_misc",
    "autofs",
    "rpc_pipefs",
    "nfsd",
    "selinuxfs",
    "usbfs",
    "overlay",
    "none",
];

/// Filesystem types reached over the network.
pub const NETWORK_FSTYPES: &[&str] = &[
    "nfs",
    "nfs4",
    "cifs",
    "smb3",
    "smbfs",
    "sshfs",
    "fuse.sshfs",
    "glusterfs",
    "fuse.glusterfs",
    "ceph",
    "fuse.ceph",
    "davfs",
    "fuse.s3fs",
    "9p",
    "ocfs2",
    "gfs2",
    "lustre",
    "afs",
    "ncpfs",
];

/// Classifies a decoded spec field given the entry's filesystem type.
pub fn classify_source(spec: &str, fstype: &str) -> Source {
    let unquote = |v: &str| -> String {
        let v = v
            .strip_prefix('"')
            .and_then(|v| v.strip_suffix('"'))
            .unwrap_or(v);
        let v = v
            .strip_prefix('\'')
            .and_then(|v| v.strip_suffix('\''))
            .unwrap_or(v);
        v.to_owned()
    };
    const TAGS: &[(&str, Tag)] = &[
        ("UUID=", Tag::Uuid),
        ("LABEL=", Tag::Label),
        ("PARTUUID=", Tag::PartUuid),
        ("PARTLABEL=", Tag::PartLabel),
        ("ID=", Tag::Id),
    ];
    for (prefix, tag) in TAGS {
        if let Some(v) = spec.strip_prefix(prefix) {
            return Source::Tag {
                tag: *tag,
                value: unquote(v),
                by_path: false,
            };
        }
    }
    const LINKS: &[(&str, Tag)] = &[
        ("/dev/disk/by-uuid/", Tag::Uuid),
        ("/dev/disk/by-label/", Tag::Label),
        ("/dev/disk/by-partuuid/", Tag::PartUuid),
        ("/dev/disk/by-partlabel/", Tag::PartLabel),
        ("/dev/disk/by-id/", Tag::Id),
    ];
    for (prefix, tag) in LINKS {
        if let Some(v) = spec.strip_prefix(prefix) {
            return Source::Tag {
                tag: *tag,
                value: decode_udev(v),
                by_path: true,
            };
        }
    }
    if spec.starts_with("/dev/") {
        return Source::Device {
            path: spec.to_owned(),
        };
    }
    if spec.starts_with("//") || NETWORK_FSTYPES.contains(&fstype) {
        return Source::Network {
            source: spec.to_owned(),
        };
    }
    if let Some((host, path)) = spec.split_once(':') {
        if !host.is_empty() && !host.contains('/') && path.starts_with('/') {
            return Source::Network {
                source: spec.to_owned(),
            };
        }
    }
    if PSEUDO_FSTYPES.contains(&fstype) || PSEUDO_FSTYPES.contains(&spec) {
        return Source::Pseudo {
            source: spec.to_owned(),
        };
    }
    if spec.starts_with('/') {
        return Source::Path {
            path: spec.to_owned(),
        };
    }
    Source::Other {
        source: spec.to_owned(),
    }
}

/// Decodes udev's `\xHH` escapes used in `/dev/disk/by-label/` names.
fn decode_udev(v: &str) -> String {
    let b = v.as_bytes();
    let mut out = Vec::with_capacity(b.len());
    let mut i = 0;
    while i < b.len() {
        if b[i] == b'\\' && b.get(i + 1) == Some(&b'x') {
            let hex = b
                .get(i + 2..i + 4)
                .and_then(|h| std::str::from_utf8(h).ok());
            if let Some(byte) = hex.and_then(|h| u8::from_str_radix(h, 16).ok()) {
                out.push(byte);
                i += 4;
                continue;
            }
        }
        out.push(b[i]);
        i += 1;
    }
    String::from_utf8_lossy(&out).into_owned()
}

/// Decodes fstab's octal escapes (`\NNN`). A backslash not followed by three
/// octal digits stays as it is, like libmount does.
pub fn decode_octal(raw: &[u8]) -> Vec<u8> {
    let mut out = Vec::with_capacity(raw.len());
    let mut i = 0;
    while i < raw.len() {
        if raw[i] == b'\\' {
            if let Some(d) = raw.get(i + 1..i + 4) {
                if d.iter().all(|c| (b'0'..=b'7').contains(c)) {
                    let v = u32::from(d[0] - b'0') * 64
                        + u32::from(d[1] - b'0') * 8
                        + u32::from(d[2] - b'0');
                    if let Ok(byte) = u8::try_from(v) {
                        out.push(byte);
                        i += 4;
                        continue;
                    }
                }
            }
        }
        out.push(raw[i]);
        i += 1;
    }
    out
}

/// Encodes a value for an fstab field: blanks, newlines and backslashes
/// become octal escapes.
pub fn encode_octal(value: &str) -> String {
    let mut out = String::with_capacity(value.len());
    for c in value.chars() {
        match c {
            ' ' => out.push_str("\\040"),
            '\t' => out.push_str("\\011"),
            '\n' => out.push_str("\\012"),
            '\\' => out.push_str("\\134"),
            c => out.push(c),
        }
    }
    out
}

impl Fstab {
    /// Parses fstab bytes. Never fails.
    pub fn parse(data: &[u8]) -> Fstab {
        let mut lines = Vec::new();
        let mut diagnostics = Vec::new();
        for raw in text::lines(data) {
            let bytes = raw.content.slice(data);
            let number = raw.number;
            if std::str::from_utf8(bytes).is_err() {
                diagnostics.push(Diagnostic::new(
                    number,
                    "line is not valid utf-8; fields are shown with replacement characters",
                ));
            }
            let first = bytes.iter().position(|&b| !is_blank(b) && b != b'\r');
            let kind = match first {
                None => LineKind::Blank,
                Some(i) if bytes[i] == b'#' => LineKind::Comment,
                Some(_) => parse_fields(data, raw.content, number, &mut diagnostics),
            };
            lines.push(Line {
                number,
                span: raw.content,
                kind,
            });
        }
        Fstab {
            source: data.to_vec(),
            lines,
            diagnostics,
        }
    }

    /// The bytes of the document; identical to the input when nothing changed.
    pub fn render(&self) -> Vec<u8> {
        self.source.clone()
    }

    /// The entries in file order, with their line numbers.
    pub fn entries(&self) -> impl Iterator<Item = (usize, &Entry)> {
        self.lines.iter().filter_map(|l| match &l.kind {
            LineKind::Entry(e) => Some((l.number, e.as_ref())),
            _ => None,
        })
    }

    /// The original bytes of a line (without its newline).
    pub fn line_bytes(&self, line: &Line) -> &[u8] {
        line.span.slice(&self.source)
    }
}

fn parse_fields(data: &[u8], span: Span, number: usize, diags: &mut Vec<Diagnostic>) -> LineKind {
    let mut fields = Vec::new();
    let mut pos = span.start;
    let end = span.end;
    while pos < end {
        pos = text::skip_blanks(data, pos, end);
        if pos >= end {
            break;
        }
        let start = pos;
        while pos < end && !data.get(pos).is_some_and(|&b| is_blank(b)) {
            pos += 1;
        }
        let mut raw = Span::new(start, pos).slice(data);
        // A CRLF file leaves `\r` on the last field; it is not part of the value.
        if pos == end && raw.last() == Some(&b'\r') {
            raw = &raw[..raw.len() - 1];
        }
        if raw.is_empty() {
            continue;
        }
        let (value, _) = text::lossy(&decode_octal(raw));
        fields.push(Field {
            span: Span::new(start, start + raw.len()),
            value,
        });
    }
    if fields.len() < 3 {
        diags.push(Diagnostic::new(
            number,
            format!(
                "too few fields ({}): an entry needs at least source, mount point and filesystem type",
                fields.len()
            ),
        ));
        return LineKind::Invalid { fields };
    }
    let mut it = fields.into_iter();
    // OK to unwrap: the length was checked to be at least 3 above.
    let spec = it.next().unwrap_or_else(empty_field);
    let file = it.next().unwrap_or_else(empty_field);
    let vfstype = it.next().unwrap_or_else(empty_field);
    let options = it.next();
    let freq = it.next();
    let passno = it.next();
    let extra: Vec<Field> = it.collect();
    if !extra.is_empty() {
        diags.push(Diagnostic::new(
            number,
            format!(
                "{} field(s) after the sixth are ignored; a comment must start its own line",
                extra.len()
            ),
        ));
    }
    for (name, f) in [("dump", &freq), ("pass", &passno)] {
        if let Some(f) = f {
            if f.value.parse::<u32>().is_err() {
                diags.push(Diagnostic::new(
                    number,
                    format!("{name} field {:?} is not a number", f.value),
                ));
            }
        }
    }
    if !vfstype.value.is_empty()
        && vfstype.value != "swap"
        && !file.value.starts_with('/')
        && file.value != "none"
    {
        diags.push(Diagnostic::new(
            number,
            format!("mount point {:?} is not an absolute path", file.value),
        ));
    }
    LineKind::Entry(Box::new(Entry {
        spec,
        file,
        vfstype,
        options,
        freq,
        passno,
        extra,
    }))
}

fn empty_field() -> Field {
    Field {
        span: Span::default(),
        value: String::new(),
    }
}

/// Fuzz entry point: parses and renders, checking the round trip.
#[doc(hidden)]
pub fn fuzz_fstab(data: &[u8]) {
    let doc = Fstab::parse(data);
    assert_eq!(doc.render(), data);
    for (_, e) in doc.entries() {
        let _ = (
            e.source(),
            e.options(),
            e.freq(),
            e.passno(),
            e.has_option("nofail"),
        );
        for f in [&e.spec, &e.file, &e.vfstype] {
            assert!(f.span.end <= data.len());
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const SAMPLE: &[u8] = b"# /etc/fstab: static file system information.\n\
#\n\
# <file system> <mount point>   <type>  <options>       <dump>  <pass>\n\
UUID=0b5a6a43-1c6e-4b55-9a8c-2c4f0a6d1e11 /               ext4    errors=remount-ro 0       1\n\
UUID=\"7E1E-2F3A\"  /boot/efi       vfat    umask=0077      0       1\n\
LABEL=my\\040data /srv/my\\040data ext4 defaults,nofail 0 2\n\
PARTUUID=1234abcd-02 /var ext4 defaults 0 2\n\
\n\
   \t\n\
/dev/disk/by-uuid/0b5a6a43-1c6e-4b55-9a8c-2c4f0a6d1e11 /mnt/x ext4 ro\n\
/dev/disk/by-label/EFI\\x20SYS /mnt/e vfat ro 0 0\n\
/dev/sdb1\t/data\text4\tdefaults\t0\t2\n\
/dev/mapper/vg--data-lv_home /home xfs defaults 0 0\n\
/swapfile none swap sw 0 0\n\
proc /proc proc defaults 0 0\n\
tmpfs /tmp tmpfs size=1G 0 0\n\
nas:/export/home /nfs nfs4 _netdev 0 0\n\
//server/share /cifs cifs credentials=/root/c 0 0\n\
broken-line-with-two fields\n\
/dev/vdb1 /x ext4 defaults zero one\n\
/dev/vdc1 /y ext4 defaults 0 0 # trailing comment\n\
PARTLABEL=root / ext4 defaults 0 1";

    #[test]
    fn round_trip_is_byte_identical() {
        let doc = Fstab::parse(SAMPLE);
        assert_eq!(doc.render(), SAMPLE);
        let crlf = b"UUID=x / ext4 defaults 0 1\r\n#c\r\n";
        let doc = Fstab::parse(crlf);
        assert_eq!(doc.render(), crlf);
        let (_, e) = doc.entries().next().unwrap();
        assert_eq!(e.passno(), Some(1));
    }

    #[test]
    fn fields_and_sources() {
        let doc = Fstab::parse(SAMPLE);
        let entries: Vec<_> = doc.entries().collect();
        let src = |i: usize| entries[i].1.source();
        assert_eq!(
            src(0),
            Source::Tag {
                tag: Tag::Uuid,
                value: "0b5a6a43-1c6e-4b55-9a8c-2c4f0a6d1e11".into(),
                by_path: false
            }
        );
        assert_eq!(
            src(1),
            Source::Tag {
                tag: Tag::Uuid,
                value: "7E1E-2F3A".into(),
                by_path: false
            }
        );
        assert_eq!(
            src(2),
            Source::Tag {
                tag: Tag::Label,
                value: "my data".into(),
                by_path: false
            }
        );
        assert_eq!(entries[2].1.mount_point(), "/srv/my data");
        assert!(entries[2].1.has_option("nofail"));
        assert_eq!(
            src(3),
            Source::Tag {
                tag: Tag::PartUuid,
                value: "1234abcd-02".into(),
                by_path: false
            }
        );
        assert_eq!(
            src(4),
            Source::Tag {
                tag: Tag::Uuid,
                value: "0b5a6a43-1c6e-4b55-9a8c-2c4f0a6d1e11".into(),
                by_path: true
            }
        );
        assert_eq!(entries[4].1.freq(), Some(0));
        assert_eq!(entries[4].1.passno(), Some(0));
        assert_eq!(
            src(5),
            Source::Tag {
                tag: Tag::Label,
                value: "EFI SYS".into(),
                by_path: true
            }
        );
        assert_eq!(
            src(6),
            Source::Device {
                path: "/dev/sdb1".into()
            }
        );
        assert_eq!(
            src(7),
            Source::Device {
                path: "/dev/mapper/vg--data-lv_home".into()
            }
        );
        assert_eq!(
            src(8),
            Source::Path {
                path: "/swapfile".into()
            }
        );
        assert!(entries[8].1.is_swap());
        assert_eq!(
            src(9),
            Source::Pseudo {
                source: "proc".into()
            }
        );
        assert_eq!(
            src(10),
            Source::Pseudo {
                source: "tmpfs".into()
            }
        );
        assert_eq!(
            src(11),
            Source::Network {
                source: "nas:/export/home".into()
            }
        );
        assert_eq!(
            src(12),
            Source::Network {
                source: "//server/share".into()
            }
        );
        assert_eq!(entries[13].1.freq(), None);
        assert_eq!(entries[13].1.passno(), None);
        assert_eq!(entries[14].1.extra.len(), 3);
        assert_eq!(
            src(15),
            Source::Tag {
                tag: Tag::PartLabel,
                value: "root".into(),
                by_path: false
            }
        );
        // Spans point at the escaped text in the file.
        let f = &entries[2].1.file;
        assert_eq!(f.span.slice(SAMPLE), b"/srv/my\\040data");
    }

    #[test]
    fn diagnostics_name_lines() {
        let doc = Fstab::parse(SAMPLE);
        let at = |n: usize| doc.diagnostics.iter().filter(|d| d.line == n).count();
        assert_eq!(at(19), 1, "{:?}", doc.diagnostics); // too few fields
        assert_eq!(at(20), 2, "{:?}", doc.diagnostics); // dump and pass
        assert_eq!(at(21), 1, "{:?}", doc.diagnostics); // extra fields
        assert_eq!(doc.diagnostics.len(), 4, "{:?}", doc.diagnostics);
        assert!(matches!(doc.lines[18].kind, LineKind::Invalid { .. }));
        let bad = Fstab::parse(b"/dev/sda1 /m\xff ext4\n");
        assert!(bad.diagnostics[0].message.contains("utf-8"));
        assert_eq!(bad.render(), b"/dev/sda1 /m\xff ext4\n");
    }

    #[test]
    fn octal_escapes() {
        assert_eq!(decode_octal(b"a\\040b\\011c\\012d\\134e"), b"a b\tc\nd\\e");
        assert_eq!(decode_octal(b"\\04"), b"\\04");
        assert_eq!(decode_octal(b"\\777"), b"\\777");
        assert_eq!(encode_octal("a b\\"), "a\\040b\\134");
        assert_eq!(
            decode_octal(encode_octal("x y\tz\n\\").as_bytes()),
            b"x y\tz\n\\"
        );
    }

    #[test]
    fn mutations_never_panic() {
        crate::text::mutate_and_run(SAMPLE, 4000, 0x5eed_f57a, fuzz_fstab);
    }
}
