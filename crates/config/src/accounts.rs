//! `/etc/passwd`, `/etc/shadow`, `/etc/group` and `/etc/gshadow`: lossless
//! documents read the way glibc's `files` NSS service reads them.
//!
//! What a record means is decided by the same rules as glibc's
//! `nss_files` parsers (`files-pwd.c`, `files-spwd.c`, `files-grp.c`,
//! `files-sgrp.c`), because that is what `getpwnam`/`getspnam`/
//! `getgrouplist` return to sshd and PAM:
//!
//! - leading white space of a line is skipped; empty lines and lines whose
//!   first non-blank byte is `#` are ignored (glibc accepts comments, but
//!   shadow-utils' `pwck`/`grpck` call them invalid entries);
//! - a line that does not parse (a non-numeric uid, a shadow line that stops
//!   after the password, a `\r` after the last shadow number) is skipped and
//!   the lookup goes on with the next line;
//! - numbers are read with `strtoul` (leading blanks and a sign allowed,
//!   `-1` wraps to 2^64-1) and a value above 4294967295 makes glibc 2.36
//!   reject the line (older glibc clamped it); shadow day counts go through
//!   `(int)`, so 4294967295 reads as -1 ("not set");
//! - the passwd shell and the group member list take the rest of the line,
//!   colons included; a `\r` before the newline stays in the value;
//! - `+`/`-` (NIS compat) lines are kept and reported, never looked up;
//! - the first valid entry with a name wins (`getpwnam`), duplicates are
//!   reported.
//!
//! On top of that, each file is checked the way shadow-utils' `pwck -r` and
//! `grpck -r` check it (exactly 7/9/4/4 colon-separated fields, numeric ids)
//! so findings can say "pwck would report this line".
//!
//! Edits are made by span: only the bytes of the changed field (or the new
//! line) change, and the document is parsed again. This module never does
//! I/O, never computes password hashes (callers pass a ready crypt string)
//! and never panics on any input.

use std::collections::HashMap;

use serde::Serialize;

use crate::text;
use crate::{Diagnostic, Span};

/// A field of a record: where it is and what it says.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, schemars::JsonSchema)]
pub struct Field {
    /// The field's bytes in the file (without separators).
    pub span: Span,
    /// The field's bytes as text (lossy UTF-8).
    pub value: String,
}

/// What one physical line of an account file holds.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, schemars::JsonSchema)]
#[serde(tag = "type", rename_all = "snake_case")]
pub enum LineKind {
    /// Empty or only white space (glibc skips it; `pwck` calls it invalid).
    Blank,
    /// First non-blank byte is `#` (glibc skips it; `pwck` calls it invalid).
    Comment,
    /// A valid entry; the number is its index in the file's entry list.
    Entry {
        /// Index into the typed entry list (`Passwd::entries` …).
        index: usize,
    },
    /// A NIS compat line (`+`, `+name`, `-name`, `+@netgroup`): only
    /// `compat` in nsswitch.conf honours it; the `files` service never
    /// returns it for a lookup by name or id, but its group lines still
    /// count in `getgrouplist`.
    Nis {
        /// The name field, sign included.
        name: String,
        /// Index into the typed entry list when glibc parses the line.
        index: Option<usize>,
    },
    /// A line glibc skips because it does not parse.
    Invalid {
        /// Why glibc rejects it.
        reason: String,
    },
}

/// One physical line of an account file.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, schemars::JsonSchema)]
pub struct Line {
    /// 1-based line number.
    pub number: usize,
    /// The line's bytes, without the newline.
    pub span: Span,
    /// What the line holds.
    pub kind: LineKind,
    /// True when shadow-utils (`pwck -r`/`grpck -r`) would call this line an
    /// invalid entry: wrong number of fields, non-numeric ids, a blank or a
    /// comment line. NIS lines are never strict-invalid.
    pub strict_invalid: bool,
    /// True when the name on this line is used by more than one line
    /// (`pwck`/`grpck` report every such line as a duplicate).
    pub duplicate: bool,
}

// ---------------------------------------------------------------------------
// glibc parsing primitives

/// `isspace` in the C locale.
fn c_isspace(b: u8) -> bool {
    matches!(b, b' ' | b'\t' | b'\n' | b'\x0b' | b'\x0c' | b'\r')
}

/// How glibc's nss_files reads a number field: `strtoul(s, &end, 10)`
/// (leading white space, an optional sign, decimal digits; a `-` negates
/// modulo 2^64; overflow gives `ULONG_MAX`), and then the value must fit in
/// 32 bits. Returns `None` when no digits were found (glibc sees
/// `endp == line`), `Some((None, used))` when the number is out of range
/// (glibc 2.36 rejects the line; older releases clamped such values to
/// 4294967295), and `Some((Some(v), used))` otherwise.
pub(crate) fn c_strtou32(s: &[u8]) -> Option<(Option<u32>, usize)> {
    let mut i = 0;
    while i < s.len() && c_isspace(s[i]) {
        i += 1;
    }
    let mut negative = false;
    if let Some(&c) = s.get(i) {
        if c == b'+' || c == b'-' {
            negative = c == b'-';
            i += 1;
        }
    }
    let digits_start = i;
    let mut value: u64 = 0;
    let mut overflow = false;
    while let Some(&c) = s.get(i) {
        if !c.is_ascii_digit() {
            break;
        }
        match value
            .checked_mul(10)
            .and_then(|v| v.checked_add(u64::from(c - b'0')))
        {
            Some(v) => value = v,
            None => overflow = true,
        }
        i += 1;
    }
    if i == digits_start {
        return None;
    }
    let ulong = if overflow {
        u64::MAX
    } else if negative {
        value.wrapping_neg()
    } else {
        value
    };
    Some((u32::try_from(ulong).ok(), i))
}

/// A cursor over one record, mirroring the `STRING_FIELD`/`INT_FIELD`
/// macros of glibc's `files-parse.c`. Positions are absolute file offsets.
struct Cursor<'a> {
    data: &'a [u8],
    pos: usize,
    end: usize,
}

impl<'a> Cursor<'a> {
    fn at_end(&self) -> bool {
        self.pos >= self.end
    }

    fn byte(&self) -> Option<u8> {
        if self.pos < self.end {
            self.data.get(self.pos).copied()
        } else {
            None
        }
    }

    fn field(&self, start: usize, end: usize) -> Field {
        let span = Span::new(start, end);
        Field {
            span,
            value: text::lossy(span.slice(self.data)).0,
        }
    }

    /// `STRING_FIELD(var, ISCOLON, 0)`: up to the next colon, which is
    /// consumed.
    fn string_field(&mut self) -> Field {
        let start = self.pos;
        while self.byte().is_some_and(|b| b != b':') {
            self.pos += 1;
        }
        let f = self.field(start, self.pos);
        if self.byte() == Some(b':') {
            self.pos += 1;
        }
        f
    }

    /// The rest of the line (`pw_shell = line`).
    fn rest(&mut self) -> Field {
        let start = self.pos;
        self.pos = self.end;
        self.field(start, self.end)
    }

    /// `INT_FIELD(var, ISCOLON, 0, 10, )`: a number that must be followed by
    /// a colon or the end of the line. `None` makes the whole line invalid.
    fn int_field(&mut self) -> Option<(u32, Field)> {
        let start = self.pos;
        let (v, used) = c_strtou32(self.data.get(self.pos..self.end).unwrap_or(&[]))?;
        let v = v?;
        self.pos += used;
        let f = self.field(start, self.pos);
        match self.byte() {
            Some(b':') => self.pos += 1,
            None => {}
            Some(_) => return None,
        }
        Some((v, f))
    }

    /// An id field: `INT_FIELD` for ordinary entries, `INT_FIELD_MAYBE_NULL`
    /// with default 0 for NIS compat entries.
    fn id_field(&mut self, nis: bool) -> Option<(u32, Field)> {
        if nis {
            self.int_field_maybe_null(true)
                .map(|(v, f)| (v.unwrap_or(0), f))
        } else {
            self.int_field()
        }
    }

    /// `INT_FIELD_MAYBE_NULL(var, term, 0, 10, conv, default)`: an empty
    /// field gives `default`, but the line must not end right here.
    /// `colon_terminates` is false for the shadow flag field (`FALSEP`).
    fn int_field_maybe_null(&mut self, colon_terminates: bool) -> Option<(Option<u32>, Field)> {
        if self.at_end() {
            return None;
        }
        let start = self.pos;
        let parsed = c_strtou32(self.data.get(self.pos..self.end).unwrap_or(&[]));
        let value = match parsed {
            Some((Some(v), used)) => {
                self.pos += used;
                Some(v)
            }
            Some((None, _)) => return None,
            None => None,
        };
        let f = self.field(start, self.pos);
        match self.byte() {
            Some(b':') if colon_terminates => self.pos += 1,
            None => {}
            Some(_) => return None,
        }
        // The field as written ends at the next colon (for the span).
        Some((value, f))
    }
}

/// Extends a numeric field's span to the whole field as written (up to the
/// next colon or end), for edits and display.
fn whole_field(data: &[u8], f: Field, end: usize) -> Field {
    let mut e = f.span.end;
    while e < end && data.get(e).is_some_and(|&b| b != b':') {
        e += 1;
    }
    let span = Span::new(f.span.start, e);
    Field {
        span,
        value: text::lossy(span.slice(data)).0,
    }
}

/// Counts the colon-separated fields of a line (shadow-utils' view).
fn colon_fields(bytes: &[u8]) -> Vec<&[u8]> {
    bytes.split(|&b| b == b':').collect()
}

/// shadow-utils' numeric id check: decimal digits only, fits 32 bits.
/// shadow-utils' `get_uid`/`get_gid`: `strtoll` must consume the whole
/// field (leading white space and a sign allowed) and the value must fit a
/// 32-bit id.
fn strict_id(field: &[u8]) -> bool {
    let mut i = 0;
    while i < field.len() && c_isspace(field[i]) {
        i += 1;
    }
    let mut negative = false;
    if let Some(&c) = field.get(i) {
        if c == b'+' || c == b'-' {
            negative = c == b'-';
            i += 1;
        }
    }
    let digits = &field[i.min(field.len())..];
    if digits.is_empty() || !digits.iter().all(u8::is_ascii_digit) {
        return false;
    }
    match std::str::from_utf8(digits)
        .ok()
        .and_then(|d| d.parse::<u64>().ok())
    {
        Some(0) => true,
        Some(v) => !negative && v <= u64::from(u32::MAX),
        None => false,
    }
}

/// The shared line walk: classifies blank/comment lines, hands the record
/// part of each other line to `parse`, and computes strict validity and
/// duplicates.
struct Walk {
    lines: Vec<Line>,
    diagnostics: Vec<Diagnostic>,
}

/// What a record parser returns: the entry's name and either the entry or
/// the reason glibc rejects the line.
enum Parsed<T> {
    Entry(String, T),
    Invalid(String),
}

fn walk<T>(
    data: &[u8],
    what: &str,
    strict: impl Fn(&[u8], &LineKind) -> bool,
    mut parse: impl FnMut(&mut Cursor<'_>, usize) -> Parsed<T>,
    entries: &mut Vec<T>,
) -> Walk {
    let mut lines = Vec::new();
    let mut diagnostics = Vec::new();
    let mut first_line_of: HashMap<String, usize> = HashMap::new();
    let mut names: Vec<Option<String>> = Vec::new();
    for raw in text::lines(data) {
        let bytes = raw.content.slice(data);
        let number = raw.number;
        if std::str::from_utf8(bytes).is_err() {
            diagnostics.push(Diagnostic::new(
                number,
                "line is not valid utf-8; names are compared byte for byte",
            ));
        }
        let skip = bytes.iter().take_while(|&&b| c_isspace(b)).count();
        let start = raw.content.start + skip;
        let rest = bytes.get(skip..).unwrap_or(&[]);
        let mut name_for_dup = None;
        let kind = if rest.is_empty() {
            LineKind::Blank
        } else if rest[0] == b'#' {
            diagnostics.push(Diagnostic::new(
                number,
                format!(
                    "comment line: glibc skips it, but pwck/grpck report an invalid {what} entry"
                ),
            ));
            LineKind::Comment
        } else {
            if skip > 0 {
                diagnostics.push(Diagnostic::new(
                    number,
                    "leading white space before the name: glibc skips it, shadow-utils does not",
                ));
            }
            let mut cur = Cursor {
                data,
                pos: start,
                end: raw.content.end,
            };
            let nis_name = {
                let end = rest.iter().position(|&b| b == b':').unwrap_or(rest.len());
                let n = text::lossy(&rest[..end]).0;
                is_nis_name(&n).then_some(n)
            };
            match (parse(&mut cur, number), nis_name) {
                (Parsed::Entry(_, entry), Some(name)) => {
                    diagnostics.push(Diagnostic::new(
                        number,
                        format!(
                            "NIS compat entry {name:?}: honoured only with 'compat' in /etc/nsswitch.conf; the files service ignores it"
                        ),
                    ));
                    entries.push(entry);
                    LineKind::Nis {
                        name,
                        index: Some(entries.len() - 1),
                    }
                }
                (Parsed::Invalid(_), Some(name)) => {
                    diagnostics.push(Diagnostic::new(
                        number,
                        format!("NIS compat entry {name:?} that glibc cannot parse"),
                    ));
                    LineKind::Nis { name, index: None }
                }
                (Parsed::Entry(name, entry), None) => {
                    name_for_dup = Some(name.clone());
                    if let Some(&first) = first_line_of.get(&name) {
                        diagnostics.push(Diagnostic::new(
                            number,
                            format!(
                                "duplicate {what} entry {name:?} (first on line {first}); lookups by name use the first"
                            ),
                        ));
                    } else {
                        first_line_of.insert(name, number);
                    }
                    entries.push(entry);
                    LineKind::Entry {
                        index: entries.len() - 1,
                    }
                }
                (Parsed::Invalid(reason), None) => {
                    diagnostics.push(Diagnostic::new(
                        number,
                        format!("{what} line ignored by glibc: {reason}"),
                    ));
                    // pwck/grpck still see the name for duplicate checks.
                    let name_end = rest.iter().position(|&b| b == b':').unwrap_or(rest.len());
                    name_for_dup = Some(text::lossy(&rest[..name_end]).0);
                    LineKind::Invalid { reason }
                }
            }
        };
        if bytes.last() == Some(&b'\r') && !matches!(kind, LineKind::Blank | LineKind::Comment) {
            diagnostics.push(Diagnostic::new(
                number,
                "line ends with a carriage return (CRLF file): glibc keeps the \\r in the last field",
            ));
        }
        let is_nis = matches!(kind, LineKind::Nis { .. });
        let strict_invalid = !is_nis && !strict(bytes, &kind);
        names.push(if is_nis { None } else { name_for_dup });
        lines.push(Line {
            number,
            span: raw.content,
            kind,
            strict_invalid,
            duplicate: false,
        });
    }
    // pwck/grpck flag every line of a name that appears more than once.
    let mut count: HashMap<&str, usize> = HashMap::new();
    for n in names.iter().flatten() {
        *count.entry(n.as_str()).or_default() += 1;
    }
    for (line, n) in lines.iter_mut().zip(&names) {
        if let Some(n) = n {
            line.duplicate = count.get(n.as_str()).is_some_and(|&c| c > 1);
        }
    }
    Walk { lines, diagnostics }
}

/// True for a NIS compat name (`+…`/`-…`).
fn is_nis_name(name: &str) -> bool {
    name.starts_with('+') || name.starts_with('-')
}

/// Rejects values that would break the colon/newline structure.
fn check_value(what: &str, value: &str) -> Result<(), String> {
    if value.contains([':', '\n', '\r', '\0']) {
        return Err(format!(
            "{what} {value:?} contains a colon, newline or NUL and cannot be stored"
        ));
    }
    Ok(())
}

/// Replaces `span` in `source` with `with`, returning the new bytes and the
/// span of the replacement.
fn splice(source: &[u8], span: Span, with: &[u8]) -> (Vec<u8>, Span) {
    let start = span.start.min(source.len());
    let end = span.end.clamp(start, source.len());
    let mut out = Vec::with_capacity(source.len() - (end - start) + with.len());
    out.extend_from_slice(&source[..start]);
    out.extend_from_slice(with);
    out.extend_from_slice(&source[end..]);
    (out, Span::new(start, start + with.len()))
}

/// Appends `line` (without newline) as a new last line, adding the missing
/// newline of the previous last line first.
fn append_line(source: &[u8], line: &str) -> (Vec<u8>, Span) {
    let mut out = source.to_vec();
    if !out.is_empty() && out.last() != Some(&b'\n') {
        out.push(b'\n');
    }
    let start = out.len();
    out.extend_from_slice(line.as_bytes());
    out.push(b'\n');
    (out, Span::new(start, start + line.len()))
}

// ---------------------------------------------------------------------------
// Password fields

/// A crypt(3) hash scheme, recognised by its prefix as libxcrypt does.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, schemars::JsonSchema)]
#[serde(rename_all = "snake_case")]
pub enum CryptScheme {
    /// `$y$`: yescrypt (default on Debian 11+, Ubuntu 22.04+, Fedora 35+).
    Yescrypt,
    /// `$gy$`: GOST yescrypt.
    GostYescrypt,
    /// `$7$`: scrypt.
    Scrypt,
    /// `$2a$`, `$2b$`, `$2x$`, `$2y$`: bcrypt.
    Bcrypt,
    /// `$6$`: SHA-512 crypt (RHEL/CentOS 6–9 default).
    Sha512,
    /// `$5$`: SHA-256 crypt.
    Sha256,
    /// `$sha1$`: NetBSD SHA-1 crypt.
    Sha1,
    /// `$md5$` / `$md5,`: Sun MD5 crypt.
    SunMd5,
    /// `$1$`: MD5 crypt.
    Md5,
    /// `$3$`: NT hash.
    Nt,
    /// `_` + 19 characters: BSDi extended DES.
    BsdiDes,
    /// 13 characters of `[./0-9A-Za-z]`: traditional DES.
    Des,
    /// 13+11·k characters: bigcrypt.
    BigCrypt,
}

impl CryptScheme {
    /// The scheme's prefix or a short description.
    pub fn prefix(self) -> &'static str {
        match self {
            CryptScheme::Yescrypt => "$y$",
            CryptScheme::GostYescrypt => "$gy$",
            CryptScheme::Scrypt => "$7$",
            CryptScheme::Bcrypt => "$2b$",
            CryptScheme::Sha512 => "$6$",
            CryptScheme::Sha256 => "$5$",
            CryptScheme::Sha1 => "$sha1$",
            CryptScheme::SunMd5 => "$md5$",
            CryptScheme::Md5 => "$1$",
            CryptScheme::Nt => "$3$",
            CryptScheme::BsdiDes => "_",
            CryptScheme::Des => "des",
            CryptScheme::BigCrypt => "bigcrypt",
        }
    }

    /// True when glibc's own crypt (without libxcrypt, e.g. RHEL 7) can
    /// verify it: DES, MD5, SHA-256 and SHA-512 only.
    pub fn supported_by_glibc_crypt(self) -> bool {
        matches!(
            self,
            CryptScheme::Des | CryptScheme::Md5 | CryptScheme::Sha256 | CryptScheme::Sha512
        )
    }
}

fn is_crypt64(b: u8) -> bool {
    b.is_ascii_alphanumeric() || b == b'.' || b == b'/'
}

/// Identifies the scheme of a crypt string, or `None` when it cannot be the
/// output of crypt(3) (so no password can ever match it).
pub fn crypt_scheme(hash: &str) -> Option<CryptScheme> {
    let b = hash.as_bytes();
    if let Some(rest) = hash.strip_prefix('$') {
        let id_end = rest.find(['$', ','])?;
        let scheme = match &rest[..id_end] {
            "y" => CryptScheme::Yescrypt,
            "gy" => CryptScheme::GostYescrypt,
            "7" => CryptScheme::Scrypt,
            "2a" | "2b" | "2x" | "2y" => CryptScheme::Bcrypt,
            "6" => CryptScheme::Sha512,
            "5" => CryptScheme::Sha256,
            "sha1" => CryptScheme::Sha1,
            "md5" => CryptScheme::SunMd5,
            "1" => CryptScheme::Md5,
            "3" => CryptScheme::Nt,
            _ => return None,
        };
        // A real hash has a salt/hash part after the id and only crypt
        // characters plus the separators its scheme uses.
        let body = &rest[id_end + 1..];
        let ok = !body.is_empty()
            && body
                .bytes()
                .all(|c| is_crypt64(c) || c == b'$' || c == b'=' || c == b',');
        let ok = ok
            && match scheme {
                // `$6$[rounds=N$]salt$86 chars`
                CryptScheme::Sha512 => sha_crypt_ok(body, 86),
                CryptScheme::Sha256 => sha_crypt_ok(body, 43),
                CryptScheme::Md5 => body.split('$').nth(1).is_some_and(|h| h.len() == 22),
                CryptScheme::Bcrypt => body.len() == 56,
                _ => true,
            };
        return ok.then_some(scheme);
    }
    if b.first() == Some(&b'_') {
        return (b.len() == 20 && b[1..].iter().all(|&c| is_crypt64(c)))
            .then_some(CryptScheme::BsdiDes);
    }
    if b.iter().all(|&c| is_crypt64(c)) {
        if b.len() == 13 {
            return Some(CryptScheme::Des);
        }
        if b.len() > 13 && (b.len() - 13).is_multiple_of(11) {
            return Some(CryptScheme::BigCrypt);
        }
    }
    None
}

fn sha_crypt_ok(body: &str, hash_len: usize) -> bool {
    let mut parts: Vec<&str> = body.split('$').collect();
    if parts.first().is_some_and(|p| p.starts_with("rounds=")) {
        parts.remove(0);
    }
    parts.len() == 2 && parts[0].len() <= 16 && parts[1].len() == hash_len
}

/// How a password field (shadow's second field, or passwd's when there is
/// no shadow entry) reads to sshd, PAM and shadow-utils.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, schemars::JsonSchema)]
#[serde(tag = "type", rename_all = "snake_case")]
pub enum PasswordKind {
    /// Empty: no password at all. Password login then needs
    /// `PermitEmptyPasswords yes` (and `nullok` in PAM).
    Empty,
    /// `x` (in passwd): the real field is in /etc/shadow.
    ShadowPointer,
    /// A crypt hash a password can match.
    Hash {
        /// The scheme.
        scheme: CryptScheme,
    },
    /// `!` followed by the rest: locked by `passwd -l`/`usermod -L`
    /// (`!!` is RHEL's "never set, locked"; `!*` Debian's locked system
    /// account).
    Locked {
        /// What is left after the leading `!`.
        rest: Box<PasswordKind>,
    },
    /// Anything else (`*`, `*LK*`, `NP`, `LOCKED`, a truncated hash): no
    /// password can match it, but it is not a lock marker on Linux.
    NoPassword {
        /// The field as written.
        raw: String,
    },
}

/// The Linux build of OpenSSH's `LOCKED_PASSWD_PREFIX` (configure.ac,
/// `*-*-linux*`): an account whose password starts with it is locked for
/// sshd when `UsePAM no`. No `LOCKED_PASSWD_STRING` (`*` on HP-UX, `*LK*`
/// on Solaris/IRIX) or `LOCKED_PASSWD_SUBSTR` is defined on Linux, so `*`
/// alone does not lock an account for sshd there.
pub const SSHD_LINUX_LOCKED_PREFIX: &str = "!";

impl PasswordKind {
    /// Classifies a password field.
    pub fn classify(raw: &str) -> PasswordKind {
        if raw.is_empty() {
            return PasswordKind::Empty;
        }
        if raw == "x" {
            return PasswordKind::ShadowPointer;
        }
        if let Some(rest) = raw.strip_prefix('!') {
            return PasswordKind::Locked {
                rest: Box::new(PasswordKind::classify_inner(rest)),
            };
        }
        PasswordKind::classify_inner(raw)
    }

    fn classify_inner(raw: &str) -> PasswordKind {
        if raw.is_empty() {
            return PasswordKind::Empty;
        }
        if let Some(rest) = raw.strip_prefix('!') {
            return PasswordKind::Locked {
                rest: Box::new(PasswordKind::classify_inner(rest)),
            };
        }
        match crypt_scheme(raw) {
            Some(scheme) => PasswordKind::Hash { scheme },
            None => PasswordKind::NoPassword {
                raw: raw.to_owned(),
            },
        }
    }

    /// True when a typed password could ever match (password
    /// authentication can work).
    pub fn password_can_match(&self) -> bool {
        matches!(self, PasswordKind::Hash { .. })
    }

    /// True for a `!`-prefixed (locked) field.
    pub fn is_locked(&self) -> bool {
        matches!(self, PasswordKind::Locked { .. })
    }
}

/// The lock decision of OpenSSH's `platform_locked_account()` (before 9.0:
/// inline in `allowed_user()`), Linux build, on the password field sshd
/// reads (shadow's when `getspnam` finds the user, else passwd's): a
/// non-empty field starting with `!` is locked. Applied only when
/// `UsePAM no`; with PAM, a locked password does not stop public-key
/// logins. Log line: "User %s not allowed because account is locked".
pub fn sshd_password_locked(field: &str) -> bool {
    !field.is_empty() && field.starts_with(SSHD_LINUX_LOCKED_PREFIX)
}

// ---------------------------------------------------------------------------
// passwd

/// One valid `/etc/passwd` entry.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, schemars::JsonSchema)]
pub struct PasswdEntry {
    /// 1-based line number.
    pub line: usize,
    /// A NIS compat (`+`/`-`) entry: never returned by lookups.
    pub nis: bool,
    /// Login name.
    pub name: Field,
    /// Password field (`x` when shadowed).
    pub password: Field,
    /// The uid as glibc reads it (clamped to 32 bits).
    pub uid: u32,
    /// The uid field as written.
    pub uid_field: Field,
    /// The primary gid as glibc reads it.
    pub gid: u32,
    /// The gid field as written.
    pub gid_field: Field,
    /// GECOS (comment) field; empty when the line stops early.
    pub gecos: Field,
    /// Home directory; empty when the line stops early.
    pub home: Field,
    /// Login shell: the rest of the line (colons and a trailing `\r`
    /// included); empty means `/bin/sh`.
    pub shell: Field,
}

impl PasswdEntry {
    /// The login name.
    pub fn name(&self) -> &str {
        &self.name.value
    }

    /// The home directory as written.
    pub fn home(&self) -> &str {
        &self.home.value
    }

    /// The shell sshd executes: `/bin/sh` when the field is empty
    /// (`_PATH_BSHELL` in OpenSSH's `allowed_user()`).
    pub fn effective_shell(&self) -> &str {
        if self.shell.value.is_empty() {
            "/bin/sh"
        } else {
            &self.shell.value
        }
    }

    /// The password field's classification.
    pub fn password_kind(&self) -> PasswordKind {
        PasswordKind::classify(&self.password.value)
    }
}

/// Shells that exist only to refuse logins. sshd itself accepts them (they
/// are executable) and the session then ends at once; reporting them is the
/// caller's choice.
pub const NOLOGIN_SHELLS: &[&str] = &[
    "/sbin/nologin",
    "/usr/sbin/nologin",
    "/bin/false",
    "/usr/bin/false",
    "/bin/true",
    "/usr/bin/true",
    "/bin/sync",
    "/sbin/shutdown",
    "/sbin/halt",
];

/// A parsed `/etc/passwd`.
#[derive(Debug, Clone, Serialize, schemars::JsonSchema)]
pub struct Passwd {
    #[serde(skip)]
    source: Vec<u8>,
    /// Every physical line.
    pub lines: Vec<Line>,
    /// Valid entries in file order.
    pub entries: Vec<PasswdEntry>,
    /// Problems found.
    pub diagnostics: Vec<Diagnostic>,
}

fn parse_passwd_record(cur: &mut Cursor<'_>, line: usize) -> Parsed<PasswdEntry> {
    let name = cur.string_field();
    let nis = is_nis_name(&name.value);
    let empty = cur.field(cur.pos, cur.pos);
    if nis && cur.at_end() {
        // glibc: a bare `+`/`-name` line; every other field is empty.
        return Parsed::Entry(
            name.value.clone(),
            PasswdEntry {
                line,
                nis,
                name,
                password: empty.clone(),
                uid: 0,
                uid_field: empty.clone(),
                gid: 0,
                gid_field: empty.clone(),
                gecos: empty.clone(),
                home: empty.clone(),
                shell: empty,
            },
        );
    }
    let password = cur.string_field();
    let Some((uid, uid_field)) = cur.id_field(nis) else {
        return Parsed::Invalid(
            "the uid field is missing, not a number or above 4294967295".into(),
        );
    };
    let Some((gid, gid_field)) = cur.id_field(nis) else {
        return Parsed::Invalid(
            "the gid field is missing, not a number or above 4294967295".into(),
        );
    };
    let gecos = cur.string_field();
    let home = cur.string_field();
    let shell = cur.rest();
    Parsed::Entry(
        name.value.clone(),
        PasswdEntry {
            line,
            nis,
            name,
            password,
            uid,
            uid_field,
            gid,
            gid_field,
            gecos,
            home,
            shell,
        },
    )
}

fn strict_passwd(bytes: &[u8], _: &LineKind) -> bool {
    let f = colon_fields(bytes);
    f.len() == 7 && strict_id(f[2]) && strict_id(f[3])
}

impl Passwd {
    /// Parses passwd bytes. Never fails.
    pub fn parse(data: &[u8]) -> Passwd {
        let mut entries = Vec::new();
        let w = walk(
            data,
            "passwd",
            strict_passwd,
            parse_passwd_record,
            &mut entries,
        );
        let mut doc = Passwd {
            source: data.to_vec(),
            lines: w.lines,
            entries,
            diagnostics: w.diagnostics,
        };
        doc.extra_checks();
        doc
    }

    fn extra_checks(&mut self) {
        let mut diags = Vec::new();
        for e in &self.entries {
            for (what, f, v) in [("uid", &e.uid_field, e.uid), ("gid", &e.gid_field, e.gid)] {
                if f.value.parse::<u32>().ok() != Some(v) {
                    diags.push(Diagnostic::new(
                        e.line,
                        format!("{what} {:?} is not a plain number: glibc reads {v}, shadow-utils rejects it", f.value),
                    ));
                }
            }
            if e.name.value.is_empty() {
                diags.push(Diagnostic::new(e.line, "entry with an empty user name"));
            }
            if e.home.value.is_empty() {
                diags.push(Diagnostic::new(
                    e.line,
                    "no home directory: the line has fewer than 7 fields or an empty home",
                ));
            }
        }
        self.diagnostics.extend(diags);
        self.diagnostics.sort_by_key(|d| d.line);
    }

    /// The bytes of the document; identical to the input until an edit.
    pub fn render(&self) -> Vec<u8> {
        self.source.clone()
    }

    /// `getpwnam(name)` through the files service: the first valid entry.
    pub fn get(&self, name: &str) -> Option<&PasswdEntry> {
        self.entries.iter().find(|e| !e.nis && e.name.value == name)
    }

    /// `getpwuid(uid)` through the files service: the first valid entry.
    pub fn get_by_uid(&self, uid: u32) -> Option<&PasswdEntry> {
        self.entries.iter().find(|e| !e.nis && e.uid == uid)
    }

    /// Replaces the password field of `user` (for systems without shadow
    /// entries). `hash` must already be a crypt string (or `x`).
    pub fn set_password(&mut self, user: &str, hash: &str) -> Result<Span, String> {
        check_value("password hash", hash)?;
        let span = self
            .get(user)
            .map(|e| e.password.span)
            .ok_or_else(|| format!("no user {user:?} in passwd"))?;
        Ok(self.replace(span, hash.as_bytes()))
    }

    /// Appends `name:x:uid:gid:gecos:home:shell`. Refuses a name that is
    /// already present.
    pub fn append_user(&mut self, user: &NewUser<'_>) -> Result<Span, String> {
        for (what, v) in [
            ("user name", user.name),
            ("gecos", user.gecos),
            ("home", user.home),
            ("shell", user.shell),
        ] {
            check_value(what, v)?;
        }
        if user.name.is_empty() || is_nis_name(user.name) {
            return Err(format!("invalid user name {:?}", user.name));
        }
        if self.get(user.name).is_some() {
            return Err(format!("user {:?} already exists in passwd", user.name));
        }
        let line = format!(
            "{}:x:{}:{}:{}:{}:{}",
            user.name, user.uid, user.gid, user.gecos, user.home, user.shell
        );
        let (bytes, span) = append_line(&self.source, &line);
        *self = Passwd::parse(&bytes);
        Ok(span)
    }

    fn replace(&mut self, span: Span, with: &[u8]) -> Span {
        let (bytes, new) = splice(&self.source, span, with);
        *self = Passwd::parse(&bytes);
        new
    }
}

/// A user to add with [`Passwd::append_user`].
#[derive(Debug, Clone, Copy)]
pub struct NewUser<'a> {
    /// Login name.
    pub name: &'a str,
    /// uid.
    pub uid: u32,
    /// Primary gid.
    pub gid: u32,
    /// GECOS field.
    pub gecos: &'a str,
    /// Home directory.
    pub home: &'a str,
    /// Login shell.
    pub shell: &'a str,
}

// ---------------------------------------------------------------------------
// shadow

/// One valid `/etc/shadow` entry. Day counts are days since 1970-01-01;
/// `None` is glibc's -1 ("not set": an empty field, or 4294967295).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, schemars::JsonSchema)]
pub struct ShadowEntry {
    /// 1-based line number.
    pub line: usize,
    /// A NIS compat (`+`/`-`) entry: never returned by lookups.
    pub nis: bool,
    /// Login name.
    pub name: Field,
    /// Encrypted password field.
    pub password: Field,
    /// Day of the last password change (0 forces a change).
    pub last_change: Option<i64>,
    /// Minimum days between changes.
    pub min_days: Option<i64>,
    /// Maximum password age in days.
    pub max_days: Option<i64>,
    /// Warning period in days.
    pub warn_days: Option<i64>,
    /// Days after expiry during which the password still works.
    pub inactive_days: Option<i64>,
    /// Day on which the account expires.
    pub expire_day: Option<i64>,
    /// The reserved flag field (glibc's `sp_flag`), `None` when empty.
    pub flag: Option<u32>,
    /// Every colon-separated field as written (for spans).
    pub fields: Vec<Field>,
}

/// What pam_unix's account stage (`check_shadow_expiry`) answers for a
/// user; used by sshd when `UsePAM yes`, for every authentication method.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, schemars::JsonSchema)]
#[serde(rename_all = "snake_case")]
pub enum PamAccount {
    /// Access allowed.
    Success,
    /// `PAM_ACCT_EXPIRED`: the account expired (today >= expire day).
    AccountExpired,
    /// `PAM_AUTHTOK_EXPIRED`: the password expired and the inactivity
    /// period is over.
    PasswordExpiredInactive,
    /// `PAM_NEW_AUTHTOK_REQD`: the password must be changed (last change 0
    /// or older than max days). sshd lets the user in only to change it,
    /// which needs a terminal; non-interactive logins fail.
    NewPasswordRequired,
    /// `PAM_AUTHINFO_UNAVAIL`: passwd says `x` but there is no (valid)
    /// shadow entry; pam_unix refuses the account.
    ShadowEntryMissing,
}

impl ShadowEntry {
    /// The login name.
    pub fn name(&self) -> &str {
        &self.name.value
    }

    /// The password field's classification.
    pub fn password_kind(&self) -> PasswordKind {
        PasswordKind::classify(&self.password.value)
    }

    /// OpenSSH's `auth_shadow_acctexpired()`, applied by sshd itself when
    /// `UsePAM no`: expired when `expire_day - today < 0`. Note that
    /// pam_unix uses `today >= expire_day`, one day earlier. Log line:
    /// "Account %s has expired".
    pub fn sshd_account_expired(&self, today_days: i64) -> bool {
        match self.expire_day {
            None => false,
            Some(e) => e.saturating_sub(today_days) < 0,
        }
    }

    /// OpenSSH's `auth_shadow_pwexpired()`: checked only for password
    /// authentication with `UsePAM no`; forces a password change.
    pub fn sshd_password_expired(&self, today_days: i64) -> bool {
        match (self.last_change, self.max_days) {
            (Some(0), _) => true,
            (_, None) => false,
            (last, Some(max)) => {
                // glibc's -1 for an empty last-change field takes part in
                // the sum, as in OpenSSH.
                let last = last.unwrap_or(-1);
                last.saturating_add(max).saturating_sub(today_days) < 0
            }
        }
    }

    /// pam_unix's `check_shadow_expiry()`.
    pub fn pam_account(&self, today_days: i64) -> PamAccount {
        let cur = today_days;
        let expire = self.expire_day.unwrap_or(-1);
        if self.expire_day.is_some() && cur >= expire {
            return PamAccount::AccountExpired;
        }
        let lstchg = self.last_change.unwrap_or(-1);
        if lstchg == 0 {
            return PamAccount::NewPasswordRequired;
        }
        if cur < lstchg {
            return PamAccount::Success;
        }
        let max = self.max_days.unwrap_or(-1);
        let inact = self.inactive_days.unwrap_or(-1);
        let age = cur.saturating_sub(lstchg);
        if age > max
            && age > inact
            && age > max.saturating_add(inact)
            && self.max_days.is_some()
            && self.inactive_days.is_some()
        {
            return PamAccount::PasswordExpiredInactive;
        }
        if age > max && self.max_days.is_some() {
            return PamAccount::NewPasswordRequired;
        }
        PamAccount::Success
    }
}

/// pam_unix's account decision for a user: `shadow` is the user's valid
/// shadow entry, if any. A passwd password of `x` (or `##name`) without a
/// shadow entry is refused; otherwise no shadow entry means success.
pub fn pam_unix_account(
    passwd: &PasswdEntry,
    shadow: Option<&ShadowEntry>,
    today_days: i64,
) -> PamAccount {
    match shadow {
        Some(s) => s.pam_account(today_days),
        None => {
            let pw = passwd.password.value.as_str();
            if pw == "x" || pw.strip_prefix("##") == Some(passwd.name()) {
                PamAccount::ShadowEntryMissing
            } else {
                PamAccount::Success
            }
        }
    }
}

/// The password field sshd checks for the lock marker: shadow's when
/// `getspnam` finds the user, else passwd's.
pub fn sshd_password_field<'a>(
    passwd: &'a PasswdEntry,
    shadow: Option<&'a ShadowEntry>,
) -> &'a str {
    match shadow {
        Some(s) => &s.password.value,
        None => &passwd.password.value,
    }
}

/// Why sshd with `UsePAM no` refuses an account before any key is tried
/// (`allowed_user()`), or `None`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, schemars::JsonSchema)]
#[serde(tag = "type", rename_all = "snake_case")]
pub enum SshdAccountRefusal {
    /// The account expired: "Account %s has expired" (and, since OpenSSH
    /// 9.0, also "User %s not allowed because account is locked").
    Expired {
        /// The expire day.
        expire_day: i64,
    },
    /// The password field starts with `!`: "User %s not allowed because
    /// account is locked".
    Locked {
        /// The password field.
        field: String,
    },
}

/// sshd's account checks for `UsePAM no` (Linux build).
pub fn sshd_no_pam_refusal(
    passwd: &PasswdEntry,
    shadow: Option<&ShadowEntry>,
    today_days: i64,
) -> Option<SshdAccountRefusal> {
    if let Some(s) = shadow {
        if s.sshd_account_expired(today_days) {
            return Some(SshdAccountRefusal::Expired {
                expire_day: s.expire_day.unwrap_or(-1),
            });
        }
    }
    let field = sshd_password_field(passwd, shadow);
    if sshd_password_locked(field) {
        return Some(SshdAccountRefusal::Locked {
            field: field.to_owned(),
        });
    }
    None
}

/// A parsed `/etc/shadow`.
#[derive(Debug, Clone, Serialize, schemars::JsonSchema)]
pub struct Shadow {
    #[serde(skip)]
    source: Vec<u8>,
    /// Every physical line.
    pub lines: Vec<Line>,
    /// Valid entries in file order.
    pub entries: Vec<ShadowEntry>,
    /// Problems found.
    pub diagnostics: Vec<Diagnostic>,
}

/// `(long int)(int)` of glibc's shadow conversion, with -1 as `None`.
fn shadow_day(v: Option<u32>) -> Option<i64> {
    let v = v?;
    // Reinterpreting the u32 as i32 is exactly glibc's `(int)` cast.
    let i = i64::from(v as i32);
    (i != -1).then_some(i)
}

fn parse_shadow_record(cur: &mut Cursor<'_>, line: usize) -> Parsed<ShadowEntry> {
    let line_end = cur.end;
    let name = cur.string_field();
    let nis = is_nis_name(&name.value);
    if nis && cur.at_end() {
        let empty = cur.field(cur.pos, cur.pos);
        return Parsed::Entry(
            name.value.clone(),
            ShadowEntry {
                line,
                nis,
                name: name.clone(),
                password: empty,
                last_change: None,
                min_days: None,
                max_days: None,
                warn_days: None,
                inactive_days: None,
                expire_day: None,
                flag: None,
                fields: vec![name],
            },
        );
    }
    let password = cur.string_field();
    let mut fields = vec![name.clone(), password.clone()];
    let mut nums: [Option<u32>; 6] = [None; 6];
    let mut flag = None;
    const NAMES: [&str; 6] = [
        "last change",
        "minimum age",
        "maximum age",
        "warning",
        "inactive",
        "expire",
    ];
    for (i, slot) in nums.iter_mut().enumerate().take(3) {
        match cur.int_field_maybe_null(true) {
            Some((v, f)) => {
                *slot = v;
                fields.push(whole_field(cur.data, f, line_end));
            }
            None => {
                return Parsed::Invalid(format!(
                    "the {} field is missing, not a number or out of range",
                    NAMES[i]
                ))
            }
        }
    }
    while cur.byte().is_some_and(c_isspace) {
        cur.pos += 1;
    }
    if !cur.at_end() {
        for (i, slot) in nums.iter_mut().enumerate().skip(3) {
            match cur.int_field_maybe_null(true) {
                Some((v, f)) => {
                    *slot = v;
                    fields.push(whole_field(cur.data, f, line_end));
                }
                None => {
                    return Parsed::Invalid(format!(
                        "the {} field is missing, not a number or out of range",
                        NAMES[i]
                    ))
                }
            }
        }
        if !cur.at_end() {
            match cur.int_field_maybe_null(false) {
                Some((v, f)) => {
                    flag = v;
                    fields.push(f);
                }
                None => return Parsed::Invalid(
                    "the reserved (flag) field is not a number (a trailing \\r or extra field?)"
                        .into(),
                ),
            }
        }
    }
    Parsed::Entry(
        name.value.clone(),
        ShadowEntry {
            line,
            nis,
            name,
            password,
            last_change: shadow_day(nums[0]),
            min_days: shadow_day(nums[1]),
            max_days: shadow_day(nums[2]),
            warn_days: shadow_day(nums[3]),
            inactive_days: shadow_day(nums[4]),
            expire_day: shadow_day(nums[5]),
            flag,
            fields,
        },
    )
}

/// Debian's shadow-utils reads shadow lines with glibc's `sgetspent`, so
/// its notion of a valid line is glibc's (on the raw line).
fn strict_shadow(_: &[u8], kind: &LineKind) -> bool {
    matches!(kind, LineKind::Entry { .. })
}

impl Shadow {
    /// Parses shadow bytes. Never fails.
    pub fn parse(data: &[u8]) -> Shadow {
        let mut entries = Vec::new();
        let w = walk(
            data,
            "shadow",
            strict_shadow,
            parse_shadow_record,
            &mut entries,
        );
        Shadow {
            source: data.to_vec(),
            lines: w.lines,
            entries,
            diagnostics: w.diagnostics,
        }
    }

    /// The bytes of the document; identical to the input until an edit.
    pub fn render(&self) -> Vec<u8> {
        self.source.clone()
    }

    /// `getspnam(name)` through the files service.
    pub fn get(&self, name: &str) -> Option<&ShadowEntry> {
        self.entries.iter().find(|e| !e.nis && e.name.value == name)
    }

    /// Sets the password field of `user` to `hash` (an already computed
    /// crypt string, e.g. `$6$salt$…`). Only the field's bytes change.
    pub fn set_password(&mut self, user: &str, hash: &str) -> Result<Span, String> {
        check_value("password hash", hash)?;
        let span = self
            .get(user)
            .map(|e| e.password.span)
            .ok_or_else(|| format!("no user {user:?} in shadow"))?;
        Ok(self.replace(span, hash.as_bytes()))
    }

    /// Like `usermod -L`: prepends `!` unless the field already starts
    /// with one.
    pub fn lock(&mut self, user: &str) -> Result<Span, String> {
        let e = self
            .get(user)
            .ok_or_else(|| format!("no user {user:?} in shadow"))?;
        if e.password.value.starts_with('!') {
            return Ok(e.password.span);
        }
        let at = Span::new(e.password.span.start, e.password.span.start);
        Ok(self.replace(at, b"!"))
    }

    /// Like `usermod -U`: removes one leading `!`. Refuses when that would
    /// leave an empty password (shadow-utils refuses too: it would make a
    /// passwordless account).
    pub fn unlock(&mut self, user: &str) -> Result<Span, String> {
        let e = self
            .get(user)
            .ok_or_else(|| format!("no user {user:?} in shadow"))?;
        let v = &e.password.value;
        if !v.starts_with('!') {
            return Ok(e.password.span);
        }
        if v.len() == 1 {
            return Err(format!(
                "unlocking {user:?} would leave an empty password; set a password instead"
            ));
        }
        let at = Span::new(e.password.span.start, e.password.span.start + 1);
        Ok(self.replace(at, b""))
    }

    /// Appends `name:password:last_change:0:99999:7:::`, refusing an
    /// existing name.
    pub fn append_entry(
        &mut self,
        name: &str,
        password: &str,
        last_change_days: Option<i64>,
    ) -> Result<Span, String> {
        check_value("user name", name)?;
        check_value("password", password)?;
        if name.is_empty() || is_nis_name(name) {
            return Err(format!("invalid user name {name:?}"));
        }
        if self.get(name).is_some() {
            return Err(format!("user {name:?} already exists in shadow"));
        }
        let last = last_change_days.map(|d| d.to_string()).unwrap_or_default();
        let line = format!("{name}:{password}:{last}:0:99999:7:::");
        let (bytes, span) = append_line(&self.source, &line);
        *self = Shadow::parse(&bytes);
        Ok(span)
    }

    fn replace(&mut self, span: Span, with: &[u8]) -> Span {
        let (bytes, new) = splice(&self.source, span, with);
        *self = Shadow::parse(&bytes);
        new
    }
}

// ---------------------------------------------------------------------------
// group

/// One valid `/etc/group` entry.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, schemars::JsonSchema)]
pub struct GroupEntry {
    /// 1-based line number.
    pub line: usize,
    /// A NIS compat (`+`/`-`) entry: never returned by lookups, but counted
    /// by `getgrouplist`.
    pub nis: bool,
    /// Group name.
    pub name: Field,
    /// Password field.
    pub password: Field,
    /// gid as glibc reads it.
    pub gid: u32,
    /// The gid field as written.
    pub gid_field: Field,
    /// The member list field as written (rest of the line).
    pub members_field: Field,
    /// Members as glibc splits them: on commas, leading white space of each
    /// name skipped, empty names dropped, trailing bytes (a `\r`) kept.
    pub members: Vec<String>,
}

impl GroupEntry {
    /// The group name.
    pub fn name(&self) -> &str {
        &self.name.value
    }

    /// True when `user` is listed as a member.
    pub fn has_member(&self, user: &str) -> bool {
        self.members.iter().any(|m| m == user)
    }
}

/// glibc's trailing list parser (`parse_list` in files-parse.c).
fn glibc_list(s: &str) -> Vec<String> {
    s.split(',')
        .map(|m| m.trim_start_matches(|c: char| c.is_ascii() && c_isspace(c as u8)))
        .filter(|m| !m.is_empty())
        .map(str::to_owned)
        .collect()
}

fn parse_group_record(cur: &mut Cursor<'_>, line: usize) -> Parsed<GroupEntry> {
    let name = cur.string_field();
    let nis = is_nis_name(&name.value);
    if nis && cur.at_end() {
        let empty = cur.field(cur.pos, cur.pos);
        return Parsed::Entry(
            name.value.clone(),
            GroupEntry {
                line,
                nis,
                name,
                password: empty.clone(),
                gid: 0,
                gid_field: empty.clone(),
                members_field: empty,
                members: Vec::new(),
            },
        );
    }
    let password = cur.string_field();
    let Some((gid, gid_field)) = cur.id_field(nis) else {
        return Parsed::Invalid(
            "the gid field is missing, not a number or above 4294967295".into(),
        );
    };
    let members_field = cur.rest();
    let members = glibc_list(&members_field.value);
    Parsed::Entry(
        name.value.clone(),
        GroupEntry {
            line,
            nis,
            name,
            password,
            gid,
            gid_field,
            members_field,
            members,
        },
    )
}

fn strict_group(bytes: &[u8], _: &LineKind) -> bool {
    let f = colon_fields(bytes);
    f.len() == 4 && strict_id(f[2])
}

/// A parsed `/etc/group`.
#[derive(Debug, Clone, Serialize, schemars::JsonSchema)]
pub struct Group {
    #[serde(skip)]
    source: Vec<u8>,
    /// Every physical line.
    pub lines: Vec<Line>,
    /// Valid entries in file order.
    pub entries: Vec<GroupEntry>,
    /// Problems found.
    pub diagnostics: Vec<Diagnostic>,
}

impl Group {
    /// Parses group bytes. Never fails.
    pub fn parse(data: &[u8]) -> Group {
        let mut entries = Vec::new();
        let w = walk(
            data,
            "group",
            strict_group,
            parse_group_record,
            &mut entries,
        );
        Group {
            source: data.to_vec(),
            lines: w.lines,
            entries,
            diagnostics: w.diagnostics,
        }
    }

    /// The bytes of the document; identical to the input until an edit.
    pub fn render(&self) -> Vec<u8> {
        self.source.clone()
    }

    /// `getgrnam(name)` through the files service.
    pub fn get(&self, name: &str) -> Option<&GroupEntry> {
        self.entries.iter().find(|e| !e.nis && e.name.value == name)
    }

    /// `getgrgid(gid)` through the files service: the first valid entry.
    pub fn get_by_gid(&self, gid: u32) -> Option<&GroupEntry> {
        self.entries.iter().find(|e| !e.nis && e.gid == gid)
    }

    /// `getgrouplist(user, primary_gid)` through the files service: the
    /// primary gid first, then the gid of every parsed group line (NIS
    /// compat lines included, as glibc's `files` initgroups does) listing
    /// `user` as a member, in file order; a gid listed twice appears twice.
    pub fn group_list(&self, user: &str, primary_gid: u32) -> Vec<u32> {
        let mut out = vec![primary_gid];
        for e in &self.entries {
            if e.gid != primary_gid && e.has_member(user) {
                out.push(e.gid);
            }
        }
        out
    }

    /// The group names sshd matches `AllowGroups`/`DenyGroups` against
    /// (`ga_init()`): each gid of [`Group::group_list`] mapped through
    /// `getgrgid`; gids without a group are dropped.
    pub fn group_names(&self, user: &str, primary_gid: u32) -> Vec<String> {
        let by_gid = self.first_by_gid();
        self.group_list(user, primary_gid)
            .into_iter()
            .filter_map(|g| by_gid.get(&g).map(|e| e.name.value.clone()))
            .collect()
    }

    /// `getgrgid` for every gid at once (the first valid entry wins).
    fn first_by_gid(&self) -> HashMap<u32, &GroupEntry> {
        let mut m = HashMap::new();
        for e in self.entries.iter().filter(|e| !e.nis) {
            m.entry(e.gid).or_insert(e);
        }
        m
    }

    /// Appends `name:x:gid:members`, refusing an existing name.
    pub fn append_group(&mut self, name: &str, gid: u32, members: &[&str]) -> Result<Span, String> {
        check_value("group name", name)?;
        for m in members {
            check_value("member", m)?;
            if m.contains(',') {
                return Err(format!("member {m:?} contains a comma"));
            }
        }
        if name.is_empty() || is_nis_name(name) {
            return Err(format!("invalid group name {name:?}"));
        }
        if self.get(name).is_some() {
            return Err(format!("group {name:?} already exists"));
        }
        let line = format!("{name}:x:{gid}:{}", members.join(","));
        let (bytes, span) = append_line(&self.source, &line);
        *self = Group::parse(&bytes);
        Ok(span)
    }
}

// ---------------------------------------------------------------------------
// gshadow

/// One `/etc/gshadow` entry.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, schemars::JsonSchema)]
pub struct GshadowEntry {
    /// 1-based line number.
    pub line: usize,
    /// A NIS compat (`+`/`-`) entry: never returned by lookups.
    pub nis: bool,
    /// Group name.
    pub name: Field,
    /// Password field.
    pub password: Field,
    /// Administrators.
    pub admins: Vec<String>,
    /// Members.
    pub members: Vec<String>,
}

fn parse_gshadow_record(cur: &mut Cursor<'_>, line: usize) -> Parsed<GshadowEntry> {
    let name = cur.string_field();
    let nis = is_nis_name(&name.value);
    let password = cur.string_field();
    let admins = cur.string_field();
    let members = cur.rest();
    Parsed::Entry(
        name.value.clone(),
        GshadowEntry {
            line,
            nis,
            name,
            password,
            admins: glibc_list(&admins.value),
            members: glibc_list(&members.value),
        },
    )
}

fn strict_gshadow(bytes: &[u8], _: &LineKind) -> bool {
    colon_fields(bytes).len() == 4
}

/// A parsed `/etc/gshadow`.
#[derive(Debug, Clone, Serialize, schemars::JsonSchema)]
pub struct Gshadow {
    #[serde(skip)]
    source: Vec<u8>,
    /// Every physical line.
    pub lines: Vec<Line>,
    /// Entries in file order.
    pub entries: Vec<GshadowEntry>,
    /// Problems found.
    pub diagnostics: Vec<Diagnostic>,
}

impl Gshadow {
    /// Parses gshadow bytes. Never fails.
    pub fn parse(data: &[u8]) -> Gshadow {
        let mut entries = Vec::new();
        let w = walk(
            data,
            "gshadow",
            strict_gshadow,
            parse_gshadow_record,
            &mut entries,
        );
        Gshadow {
            source: data.to_vec(),
            lines: w.lines,
            entries,
            diagnostics: w.diagnostics,
        }
    }

    /// The bytes of the document; identical to the input until an edit.
    pub fn render(&self) -> Vec<u8> {
        self.source.clone()
    }

    /// `getsgnam(name)`: the first entry.
    pub fn get(&self, name: &str) -> Option<&GshadowEntry> {
        self.entries.iter().find(|e| !e.nis && e.name.value == name)
    }

    /// Appends `name:!::members`, refusing an existing name.
    pub fn append_group(&mut self, name: &str, members: &[&str]) -> Result<Span, String> {
        check_value("group name", name)?;
        for m in members {
            check_value("member", m)?;
        }
        if name.is_empty() || is_nis_name(name) {
            return Err(format!("invalid group name {name:?}"));
        }
        if self.get(name).is_some() {
            return Err(format!("group {name:?} already exists in gshadow"));
        }
        let line = format!("{name}:!::{}", members.join(","));
        let (bytes, span) = append_line(&self.source, &line);
        *self = Gshadow::parse(&bytes);
        Ok(span)
    }
}

// ---------------------------------------------------------------------------
// Cross-file helpers

/// The highest id in `low..=high` that neither passwd (as uid) nor group
/// (as gid) uses, searching downwards like `useradd -r` does for system
/// accounts. `None` when the range is full.
pub fn free_system_id(passwd: &Passwd, group: &Group, low: u32, high: u32) -> Option<u32> {
    let used: std::collections::HashSet<u32> = passwd
        .entries
        .iter()
        .map(|e| e.uid)
        .chain(group.entries.iter().map(|e| e.gid))
        .collect();
    (low..=high).rev().find(|id| !used.contains(id))
}

/// Users whose primary gid has no group entry, and groups listing members
/// that are not in passwd: what `pwck`/`grpck` warn about. Returned as
/// diagnostics against the passwd (first) and group (second) files.
pub fn cross_check(passwd: &Passwd, group: &Group) -> (Vec<Diagnostic>, Vec<Diagnostic>) {
    let by_gid = group.first_by_gid();
    let users: std::collections::HashSet<&str> = passwd
        .entries
        .iter()
        .filter(|e| !e.nis)
        .map(|e| e.name())
        .collect();
    let mut pw = Vec::new();
    for e in passwd.entries.iter().filter(|e| !e.nis) {
        if !by_gid.contains_key(&e.gid) {
            pw.push(Diagnostic::new(
                e.line,
                format!("user {:?}: no group with gid {}", e.name(), e.gid),
            ));
        }
    }
    let mut gr = Vec::new();
    for g in group.entries.iter().filter(|e| !e.nis) {
        for m in &g.members {
            if !users.contains(m.as_str()) {
                gr.push(Diagnostic::new(
                    g.line,
                    format!("group {:?}: member {m:?} does not exist", g.name()),
                ));
            }
        }
    }
    (pw, gr)
}

/// Fuzz entry point: parses all four formats, checks the round trip and
/// runs lookups and edits.
#[doc(hidden)]
pub fn fuzz_accounts(data: &[u8]) {
    let pw = Passwd::parse(data);
    assert_eq!(pw.render(), data);
    let sh = Shadow::parse(data);
    assert_eq!(sh.render(), data);
    let gr = Group::parse(data);
    assert_eq!(gr.render(), data);
    let gs = Gshadow::parse(data);
    assert_eq!(gs.render(), data);
    for e in &pw.entries {
        assert!(e.shell.span.end <= data.len());
        let _ = (
            e.password_kind(),
            e.effective_shell(),
            gr.group_names(e.name(), e.gid),
        );
        let s = sh.get(e.name());
        let _ = (
            pam_unix_account(e, s, 19_000),
            sshd_no_pam_refusal(e, s, 19_000),
        );
    }
    for e in &sh.entries {
        let _ = (
            e.password_kind(),
            e.pam_account(0),
            e.sshd_password_expired(i64::MAX),
        );
    }
    let _ = cross_check(&pw, &gr);
    let _ = free_system_id(&pw, &gr, 100, 999);
    if let Some(name) = sh.entries.first().map(|e| e.name().to_owned()) {
        let mut s2 = sh.clone();
        if s2.set_password(&name, "$6$salt$hash").is_ok() {
            assert!(s2.get(&name).is_some());
        }
        let _ = s2.lock(&name);
        let _ = s2.unlock(&name);
    }
    let mut p2 = pw.clone();
    let _ = p2.append_user(&NewUser {
        name: "sshd",
        uid: 74,
        gid: 74,
        gecos: "Privilege-separated SSH",
        home: "/usr/share/empty.sshd",
        shell: "/sbin/nologin",
    });
}

#[cfg(test)]
mod tests {
    use super::*;

    const PASSWD: &[u8] = b"root:x:0:0:root:/root:/bin/bash\n\
daemon:x:1:1:daemon:/usr/sbin:/usr/sbin/nologin\n\
sshd:x:105:65534::/run/sshd:/usr/sbin/nologin\n\
alice:x:1000:1000:Alice,,,:/home/alice:/bin/bash\n\
# a comment\n\
   bob:x:1001:1001::/home/bob:/bin/zsh\n\
alice:x:2000:2000::/home/alice2:/bin/sh\n\
carol:x:1x:1::/:/bin/sh\n\
dave:x:-1:99999999999::/home/dave\n\
eve:x:1003:1003\n\
+nisuser::::::\n\
+\n\
frank:x:1004:1004::/home/frank:/bin/bash:extra\n\
crlf:x:1005:1005::/home/crlf:/bin/bash\r\n";

    #[test]
    fn passwd_as_glibc_reads_it() {
        let doc = Passwd::parse(PASSWD);
        assert_eq!(doc.render(), PASSWD);
        let alice = doc.get("alice").unwrap();
        assert_eq!(alice.uid, 1000, "the first alice wins");
        assert_eq!(alice.home(), "/home/alice");
        assert_eq!(doc.get("bob").unwrap().uid, 1001, "leading blanks skipped");
        assert!(doc.get("carol").is_none(), "bad uid: line skipped");
        assert!(
            doc.get("dave").is_none(),
            "uid -1 is out of range for glibc 2.36"
        );
        let eve = doc.get("eve").unwrap();
        assert_eq!(eve.home(), "");
        assert_eq!(doc.get("frank").unwrap().shell.value, "/bin/bash:extra");
        assert_eq!(doc.get("crlf").unwrap().shell.value, "/bin/bash\r");
        assert!(doc.get("+nisuser").is_none() && doc.get("nisuser").is_none());
        assert_eq!(doc.get_by_uid(0).unwrap().name(), "root");
        let strict: Vec<usize> = doc
            .lines
            .iter()
            .filter(|l| l.strict_invalid)
            .map(|l| l.number)
            .collect();
        assert_eq!(strict, vec![5, 8, 9, 10, 13]);
        let dups: Vec<usize> = doc
            .lines
            .iter()
            .filter(|l| l.duplicate)
            .map(|l| l.number)
            .collect();
        assert_eq!(dups, vec![4, 7]);
    }

    #[test]
    fn strtou32_matches_glibc() {
        assert_eq!(c_strtou32(b"12"), Some((Some(12), 2)));
        assert_eq!(c_strtou32(b" +7x"), Some((Some(7), 3)));
        assert_eq!(c_strtou32(b"-0"), Some((Some(0), 2)));
        assert_eq!(c_strtou32(b"-1"), Some((None, 2)));
        assert_eq!(c_strtou32(b"-18446744073709551615"), Some((Some(1), 21)));
        assert_eq!(c_strtou32(b"4294967295"), Some((Some(u32::MAX), 10)));
        assert_eq!(c_strtou32(b"4294967296"), Some((None, 10)));
        assert_eq!(c_strtou32(b"99999999999999999999999"), Some((None, 23)));
        assert_eq!(c_strtou32(b""), None);
        assert_eq!(c_strtou32(b" "), None);
        assert_eq!(c_strtou32(b"-"), None);
    }

    const SHADOW: &[u8] = b"root:*:19000:0:99999:7:::\n\
alice:$6$abcdefgh$AAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA:19000:0:99999:7:::\n\
bob:!$y$j9T$salt$hash:19000:0:99999:7:::\n\
rh:!!:19000::::::\n\
old:x:1:2:3\n\
short:pw\n\
exp:$1$salt$0123456789012345678901:19000:0:99999:7::19500:\n\
crlf:*:19000:0:99999:7:::\r\n\
neg:*:4294967295:0:99999:7:::\n";

    #[test]
    fn shadow_fields_and_states() {
        let doc = Shadow::parse(SHADOW);
        assert_eq!(doc.render(), SHADOW);
        let root = doc.get("root").unwrap();
        assert_eq!(
            root.password_kind(),
            PasswordKind::NoPassword { raw: "*".into() }
        );
        assert!(
            !sshd_password_locked(&root.password.value),
            "'*' is not locked on Linux"
        );
        let alice = doc.get("alice").unwrap();
        assert_eq!(
            alice.password_kind(),
            PasswordKind::Hash {
                scheme: CryptScheme::Sha512
            }
        );
        let bob = doc.get("bob").unwrap();
        assert!(bob.password_kind().is_locked());
        assert!(sshd_password_locked(&bob.password.value));
        let rh = doc.get("rh").unwrap();
        assert!(sshd_password_locked(&rh.password.value));
        assert_eq!(rh.expire_day, None);
        let old = doc.get("old").unwrap();
        assert_eq!(old.max_days, Some(3));
        assert_eq!(old.warn_days, None);
        assert!(doc.get("short").is_none());
        let exp = doc.get("exp").unwrap();
        assert_eq!(exp.expire_day, Some(19500));
        assert!(!exp.sshd_account_expired(19500));
        assert!(exp.sshd_account_expired(19501));
        assert_eq!(exp.pam_account(19499), PamAccount::Success);
        assert_eq!(exp.pam_account(19500), PamAccount::AccountExpired);
        assert!(
            doc.get("crlf").is_none(),
            "a trailing \\r makes glibc reject the line"
        );
        assert_eq!(doc.get("neg").unwrap().last_change, None);
    }

    #[test]
    fn pam_password_ageing() {
        let doc = Shadow::parse(b"a:$1$s$0123456789012345678901:0:0:99999:7:::\nb:*:100:0:10:7:5::\nc:*:100:0:10:7:::\n");
        assert_eq!(
            doc.get("a").unwrap().pam_account(200),
            PamAccount::NewPasswordRequired
        );
        assert_eq!(
            doc.get("b").unwrap().pam_account(112),
            PamAccount::NewPasswordRequired
        );
        assert_eq!(
            doc.get("b").unwrap().pam_account(116),
            PamAccount::PasswordExpiredInactive
        );
        assert_eq!(
            doc.get("c").unwrap().pam_account(1000),
            PamAccount::NewPasswordRequired
        );
        assert!(doc.get("c").unwrap().sshd_password_expired(111));
        assert!(!doc.get("c").unwrap().sshd_password_expired(110));
    }

    #[test]
    fn crypt_schemes() {
        let sha512 = format!("$6$rounds=5000$salt${}", "a".repeat(86));
        assert_eq!(crypt_scheme(&sha512), Some(CryptScheme::Sha512));
        assert_eq!(
            crypt_scheme(
                "$y$j9T$F5Jx5fExrKuPp53xLKQ..1$X3DX6M94c7o.9agCG9G317fhZg9SqC.5i5rd.RhAtQ7"
            ),
            Some(CryptScheme::Yescrypt)
        );
        assert_eq!(
            crypt_scheme("$2b$12$abcdefghijklmnopqrstuuABCDEFGHIJKLMNOPQRSTUVWXYZ01234"),
            Some(CryptScheme::Bcrypt)
        );
        assert_eq!(
            crypt_scheme("$1$salt$0123456789012345678901"),
            Some(CryptScheme::Md5)
        );
        assert_eq!(crypt_scheme("abcdefghijklm"), Some(CryptScheme::Des));
        assert_eq!(crypt_scheme("*"), None);
        assert_eq!(crypt_scheme("$6$short"), None);
        assert_eq!(crypt_scheme("$9$x$y"), None);
        assert_eq!(
            PasswordKind::classify("!!"),
            PasswordKind::Locked {
                rest: Box::new(PasswordKind::Locked {
                    rest: Box::new(PasswordKind::Empty)
                })
            }
        );
        assert_eq!(PasswordKind::classify("x"), PasswordKind::ShadowPointer);
    }

    #[test]
    fn group_membership() {
        let data = b"root:x:0:\nadm:x:4:syslog, alice\nsudo:x:27:alice,bob\nalice:x:1000:\nwheel:x:10:bob\r\ndup:x:27:alice\nbad:x\n";
        let g = Group::parse(data);
        assert_eq!(g.render(), data);
        // glibc lists gid 27 twice (sudo and dup); names come from getgrgid.
        assert_eq!(g.group_list("alice", 1000), vec![1000, 4, 27, 27]);
        assert_eq!(
            g.group_names("alice", 1000),
            vec!["alice", "adm", "sudo", "sudo"]
        );
        // `wheel` lists "bob\r": bob is not a member.
        assert_eq!(g.group_list("bob", 1000), vec![1000, 27]);
        assert!(g.get("bad").is_none());
        assert!(g.lines[6].strict_invalid);
    }

    #[test]
    fn edits_touch_only_their_span() {
        let mut s = Shadow::parse(SHADOW);
        let before = s.render();
        let span = s.set_password("root", "$6$new$hash").unwrap();
        let after = s.render();
        assert_eq!(&after[span.start..span.end], b"$6$new$hash");
        assert_eq!(&after[..span.start], &before[..span.start]);
        assert_eq!(&after[span.end..], &before[span.start + 1..]);
        assert!(s.set_password("nobody", "x").is_err());
        assert!(s.set_password("root", "a:b").is_err());
        s.lock("alice").unwrap();
        assert!(s.get("alice").unwrap().password.value.starts_with("!$6$"));
        s.unlock("alice").unwrap();
        assert!(s.get("alice").unwrap().password.value.starts_with("$6$"));
        assert!(s.unlock("rh").is_ok());
        assert_eq!(s.get("rh").unwrap().password.value, "!");
        assert!(s.unlock("rh").is_err());

        let mut p = Passwd::parse(b"root:x:0:0:root:/root:/bin/bash");
        let span = p
            .append_user(&NewUser {
                name: "sshd",
                uid: 74,
                gid: 74,
                gecos: "Privilege-separated SSH",
                home: "/usr/share/empty.sshd",
                shell: "/sbin/nologin",
            })
            .unwrap();
        assert_eq!(
            p.render(),
            b"root:x:0:0:root:/root:/bin/bash\nsshd:x:74:74:Privilege-separated SSH:/usr/share/empty.sshd:/sbin/nologin\n"
        );
        assert_eq!(
            span.slice(&p.render()),
            &b"sshd:x:74:74:Privilege-separated SSH:/usr/share/empty.sshd:/sbin/nologin"[..]
        );
        assert_eq!(p.get("sshd").unwrap().uid, 74);
        assert!(p
            .append_user(&NewUser {
                name: "sshd",
                uid: 1,
                gid: 1,
                gecos: "",
                home: "/",
                shell: "/bin/sh"
            })
            .is_err());
        let mut g = Group::parse(b"root:x:0:\n");
        g.append_group("sshd", 74, &[]).unwrap();
        assert_eq!(g.render(), b"root:x:0:\nsshd:x:74:\n");
        assert_eq!(free_system_id(&p, &g, 70, 74), Some(73));
    }

    #[test]
    fn mutations_never_panic() {
        crate::text::mutate_and_run(PASSWD, 3000, 0xacc0_0001, fuzz_accounts);
        crate::text::mutate_and_run(SHADOW, 3000, 0xacc0_0002, fuzz_accounts);
    }
}
