//! `/etc/hosts.allow` and `/etc/hosts.deny` (hosts_access(5)), read the way
//! Debian's libwrap 7.6.q reads them, and the access decision for a daemon.
//!
//! How libwrap reads a table (`table_match()` and `xgets()`):
//!
//! - logical lines are read into a 2048-byte buffer; a backslash right
//!   before the newline joins the next physical line (also for comments:
//!   the next line becomes part of the comment);
//! - a logical line that does not end in a newline — the last line of a
//!   file without a final newline, or one too long for the buffer — stops
//!   the table with an error: in hosts.allow nothing more is granted, and
//!   in hosts.deny every client still unmatched is denied (checked with
//!   Debian's `tcpdmatch`);
//! - a NUL byte truncates what was read (`strlen`);
//! - a line whose first byte is `#`, or made only of blanks, is skipped; a
//!   `#` after leading blanks does not start a comment;
//! - `daemon_list : client_list [: option : option …]`, split at colons
//!   outside `[...]`; lists split on `, \t\r\n`; `EXCEPT` nests;
//! - the options of a matching rule run in order and can decide themselves:
//!   `allow`, `deny`, `twist`; a bad option (unknown name, missing or
//!   extra value, `allow`/`deny`/`twist` not last, an empty option) makes
//!   libwrap deny the client.
//!
//! The decision: the first rule of hosts.allow matching (daemon, client)
//! grants, else the first of hosts.deny denies, else access is granted.
//!
//! This module never does I/O and never resolves names: host names and
//! netgroups are inputs or "unknown". It never panics on any input.

use std::net::IpAddr;

use serde::Serialize;

use crate::text;
use crate::{Diagnostic, Span};

/// libwrap's logical line buffer (`BUFLEN`).
const BUFLEN: usize = 2048;

/// What a physical line is part of.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, schemars::JsonSchema)]
#[serde(tag = "type", rename_all = "snake_case")]
pub enum TwLineKind {
    /// Empty or blanks only.
    Blank,
    /// Part of a comment (a logical line starting with `#`).
    Comment,
    /// The first line of a rule.
    Rule {
        /// Index into [`HostsAccess::rules`].
        index: usize,
    },
    /// A later physical line of a rule or comment joined by a backslash.
    Continuation {
        /// The line the logical line starts on.
        first_line: usize,
    },
    /// A line without a `:`: libwrap warns and skips it.
    NoSeparator,
    /// The line where libwrap stops reading with an error.
    Stop {
        /// Why.
        reason: String,
    },
    /// A line after the stop: never read.
    Unread,
}

/// One physical line.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, schemars::JsonSchema)]
pub struct TwLine {
    /// 1-based line number.
    pub number: usize,
    /// The line's bytes, without the newline.
    pub span: Span,
    /// What it is.
    pub kind: TwLineKind,
}

/// One access rule.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, schemars::JsonSchema)]
pub struct Rule {
    /// The line the rule starts on.
    pub first_line: usize,
    /// The line it ends on (after backslash continuations).
    pub last_line: usize,
    /// The physical lines' bytes.
    pub span: Span,
    /// Daemon patterns, in order (`EXCEPT` included).
    pub daemons: Vec<String>,
    /// Client patterns, in order (`EXCEPT` included).
    pub clients: Vec<String>,
    /// The option field after the second colon, as written.
    pub options: Option<String>,
}

/// Where libwrap stops reading a table.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, schemars::JsonSchema)]
pub struct Stop {
    /// The line it stops on.
    pub line: usize,
    /// Why.
    pub reason: String,
}

/// A parsed hosts.allow or hosts.deny.
#[derive(Debug, Clone, Serialize, schemars::JsonSchema)]
pub struct HostsAccess {
    #[serde(skip)]
    source: Vec<u8>,
    /// Every physical line.
    pub lines: Vec<TwLine>,
    /// Rules in order.
    pub rules: Vec<Rule>,
    /// Where libwrap stops with an error, if it does.
    pub stop: Option<Stop>,
    /// Problems found.
    pub diagnostics: Vec<Diagnostic>,
}

/// Splits at the first `delim` outside `[...]` (libwrap's `split_at()`).
fn split_at(s: &[u8], delim: u8) -> Option<(&[u8], &[u8])> {
    let mut bracket: i64 = 0;
    for (i, &c) in s.iter().enumerate() {
        match c {
            b'[' => bracket += 1,
            b']' => bracket -= 1,
            _ if bracket == 0 && c == delim => return Some((&s[..i], &s[i + 1..])),
            _ => {}
        }
    }
    None
}

fn tokens(s: &[u8]) -> Vec<String> {
    s.split(|&c| matches!(c, b',' | b' ' | b'\t' | b'\r' | b'\n'))
        .filter(|t| !t.is_empty())
        .map(|t| String::from_utf8_lossy(t).into_owned())
        .collect()
}

/// One logical line as `xgets()` assembles it.
struct Logical {
    text: Vec<u8>,
    first_line: usize,
    last_line: usize,
}

/// Reads logical lines like `xgets()` with a `BUFLEN` buffer. Returns the
/// lines; a final element without `\n` is where libwrap stops.
fn logical_lines(data: &[u8]) -> Vec<Logical> {
    let mut out = Vec::new();
    let mut pos = 0usize;
    let mut line_no = 1usize;
    while pos < data.len() {
        let first_line = line_no;
        let mut buf: Vec<u8> = Vec::new();
        let mut len = BUFLEN;
        loop {
            if pos >= data.len() || len <= 1 {
                break;
            }
            // fgets(ptr, len): up to len-1 bytes, stopping after a newline.
            let max = len - 1;
            let avail = &data[pos..];
            let take = match avail.iter().take(max).position(|&b| b == b'\n') {
                Some(i) => i + 1,
                None => avail.len().min(max),
            };
            let chunk = &avail[..take];
            pos += take;
            if chunk.last() == Some(&b'\n') {
                line_no += 1;
            }
            // strlen() stops at a NUL: the rest of the chunk is lost.
            let got = chunk.iter().position(|&b| b == 0).unwrap_or(chunk.len());
            let kept = &chunk[..got];
            if got >= 1 && kept[got - 1] == b'\n' {
                if got >= 2 && kept[got - 2] == b'\\' {
                    buf.extend_from_slice(&kept[..got - 2]);
                    len -= got - 2;
                    continue;
                }
                buf.extend_from_slice(kept);
                break;
            }
            buf.extend_from_slice(kept);
            len -= got;
        }
        let ended_at = if buf.last() == Some(&b'\n') {
            line_no - 1
        } else {
            line_no
        };
        let complete = buf.last() == Some(&b'\n');
        out.push(Logical {
            text: buf,
            first_line,
            last_line: ended_at.max(first_line),
        });
        if !complete {
            break;
        }
    }
    out
}

impl HostsAccess {
    /// Parses hosts.allow/hosts.deny bytes. Never fails.
    pub fn parse(data: &[u8]) -> HostsAccess {
        let raw = text::lines(data);
        let mut lines: Vec<TwLine> = raw
            .iter()
            .map(|r| TwLine {
                number: r.number,
                span: r.content,
                kind: TwLineKind::Unread,
            })
            .collect();
        let mut rules = Vec::new();
        let mut diagnostics = Vec::new();
        let mut stop = None;
        let span_of = |first: usize, last: usize| -> Span {
            let s = raw
                .get(first.saturating_sub(1))
                .map_or(0, |l| l.content.start);
            let e = raw.get(last.saturating_sub(1)).map_or(s, |l| l.content.end);
            Span::new(s, e.max(s))
        };
        for l in logical_lines(data) {
            let set = |lines: &mut Vec<TwLine>, n: usize, k: TwLineKind| {
                if let Some(x) = lines.get_mut(n.wrapping_sub(1)) {
                    x.kind = k;
                }
            };
            for n in l.first_line + 1..=l.last_line {
                set(
                    &mut lines,
                    n,
                    TwLineKind::Continuation {
                        first_line: l.first_line,
                    },
                );
            }
            if l.text.last() != Some(&b'\n') {
                let too_long = l.text.len() + 1 >= BUFLEN;
                let reason = if too_long {
                    "line too long for libwrap's 2048-byte buffer".to_owned()
                } else {
                    "missing newline at the end of the file".to_owned()
                };
                diagnostics.push(Diagnostic::new(
                    l.first_line,
                    format!("{reason}: libwrap stops reading this file with an error here (in hosts.deny every client not yet matched is denied)"),
                ));
                set(
                    &mut lines,
                    l.first_line,
                    TwLineKind::Stop {
                        reason: reason.clone(),
                    },
                );
                stop = Some(Stop {
                    line: l.first_line,
                    reason,
                });
                break;
            }
            let t = &l.text;
            if t.contains(&0) {
                diagnostics.push(Diagnostic::new(
                    l.first_line,
                    "NUL byte: libwrap drops the rest of the line",
                ));
            }
            if t[0] == b'#' {
                set(&mut lines, l.first_line, TwLineKind::Comment);
                if l.last_line > l.first_line {
                    diagnostics.push(Diagnostic::new(
                        l.first_line,
                        format!(
                            "comment ends with a backslash: lines {}-{} are part of the comment",
                            l.first_line + 1,
                            l.last_line
                        ),
                    ));
                }
                continue;
            }
            if t.iter().all(|&c| matches!(c, b' ' | b'\t' | b'\r' | b'\n')) {
                set(&mut lines, l.first_line, TwLineKind::Blank);
                continue;
            }
            let Some((daemons, rest)) = split_at(t, b':') else {
                diagnostics.push(Diagnostic::new(
                    l.first_line,
                    "missing \":\" separator: libwrap skips the line",
                ));
                set(&mut lines, l.first_line, TwLineKind::NoSeparator);
                continue;
            };
            let (clients, options) = match split_at(rest, b':') {
                Some((c, o)) => (c, Some(o)),
                None => (rest, None),
            };
            let first_non_blank = t.iter().position(|&c| c != b' ' && c != b'\t');
            if first_non_blank.is_some_and(|i| i > 0 && t[i] == b'#') {
                diagnostics.push(Diagnostic::new(
                    l.first_line,
                    "'#' after leading blanks does not start a comment: libwrap reads this line as a rule",
                ));
            }
            let options = options.map(|o| {
                let o = o.strip_suffix(b"\n").unwrap_or(o);
                String::from_utf8_lossy(o).into_owned()
            });
            let rule = Rule {
                first_line: l.first_line,
                last_line: l.last_line,
                span: span_of(l.first_line, l.last_line),
                daemons: tokens(daemons),
                clients: tokens(clients),
                options,
            };
            if let Some(o) = &rule.options {
                if let Err(e) = parse_options(o) {
                    diagnostics.push(Diagnostic::new(
                        l.first_line,
                        format!(
                            "option error ({e}): libwrap denies every client this rule matches"
                        ),
                    ));
                }
            }
            if rule.daemons.is_empty() {
                diagnostics.push(Diagnostic::new(
                    l.first_line,
                    "empty daemon list: the rule never matches",
                ));
            }
            if rule.clients.is_empty() {
                diagnostics.push(Diagnostic::new(
                    l.first_line,
                    "empty client list: the rule never matches",
                ));
            }
            rules.push(rule);
            set(
                &mut lines,
                l.first_line,
                TwLineKind::Rule {
                    index: rules.len() - 1,
                },
            );
        }
        // Lines logical_lines never reached stay Unread; whitespace-only
        // files have no logical lines at all.
        HostsAccess {
            source: data.to_vec(),
            lines,
            rules,
            stop,
            diagnostics,
        }
    }

    /// The bytes of the document; identical to the input until an edit.
    pub fn render(&self) -> Vec<u8> {
        self.source.clone()
    }

    /// Comments out the rule starting on `first_line`: a `# rescue-disk:
    /// <reason>` line goes above it and each of its physical lines gets a
    /// leading `#`.
    pub fn comment_out(&mut self, first_line: usize, reason: &str) -> Result<Span, String> {
        if reason.contains(['\n', '\r']) {
            return Err("the reason must be a single line".into());
        }
        let rule = self
            .rules
            .iter()
            .find(|r| r.first_line == first_line)
            .ok_or_else(|| format!("no rule starts on line {first_line}"))?
            .clone();
        let raw = text::lines(&self.source);
        let mut out = Vec::with_capacity(self.source.len() + reason.len() + 32);
        let start = rule.span.start;
        out.extend_from_slice(&self.source[..start]);
        out.extend_from_slice(format!("# rescue-disk: {reason}\n").as_bytes());
        let mut cursor = start;
        for l in raw
            .iter()
            .filter(|l| l.number >= rule.first_line && l.number <= rule.last_line)
        {
            out.extend_from_slice(&self.source[cursor..l.content.start]);
            out.push(b'#');
            cursor = l.content.start;
        }
        out.extend_from_slice(&self.source[cursor..]);
        let end = start + (out.len() - self.source.len()) + rule.span.len();
        *self = HostsAccess::parse(&out);
        Ok(Span::new(start, end))
    }

    /// Adds the missing newline at the end of the file (which otherwise
    /// makes libwrap stop with an error on the last line).
    pub fn ensure_final_newline(&mut self) -> bool {
        if self.source.is_empty() || self.source.last() == Some(&b'\n') {
            return false;
        }
        let mut out = self.source.clone();
        out.push(b'\n');
        *self = HostsAccess::parse(&out);
        true
    }
}

// ---------------------------------------------------------------------------
// Options (process_options)

/// What a rule's options do when it matches.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, schemars::JsonSchema)]
#[serde(rename_all = "snake_case")]
pub enum OptionEffect {
    /// No decision: the table's own (grant in hosts.allow, deny in
    /// hosts.deny).
    TableDefault,
    /// `allow`: grant.
    Allow,
    /// `deny`: deny.
    Deny,
    /// `twist`: the connection is handed to a command; the real daemon
    /// never runs (for sshd: the login fails).
    Twist,
}

/// Parses an option field like libwrap's `process_options()`: fields split
/// at unescaped `:`, `name[ =]value`, checked against the option table.
/// `Err` is the reason libwrap gives before denying the client.
pub fn parse_options(field: &str) -> Result<OptionEffect, String> {
    // (name, needs value, may have value, must be last)
    const TABLE: &[(&str, bool, bool, bool)] = &[
        ("user", true, true, false),
        ("group", true, true, false),
        ("umask", true, true, false),
        ("linger", true, true, false),
        ("keepalive", false, false, false),
        ("spawn", true, true, false),
        ("twist", true, true, true),
        ("rfc931", false, true, false),
        ("setenv", true, true, false),
        ("nice", false, true, false),
        ("severity", true, true, false),
        ("allow", false, false, true),
        ("deny", false, false, true),
        ("banners", true, true, false),
    ];
    // Split at `:` not preceded by a backslash.
    let mut parts = Vec::new();
    let mut cur = String::new();
    let mut chars = field.chars().peekable();
    while let Some(c) = chars.next() {
        if c == '\\' && chars.peek() == Some(&':') {
            cur.push(':');
            chars.next();
        } else if c == ':' {
            parts.push(std::mem::take(&mut cur));
        } else {
            cur.push(c);
        }
    }
    parts.push(cur);
    let n = parts.len();
    let mut effect = OptionEffect::TableDefault;
    for (i, p) in parts.iter().enumerate() {
        let p = p.trim_matches(|c: char| c.is_ascii_whitespace());
        let key_end = p
            .find(|c: char| c.is_ascii_whitespace() || c == '=')
            .unwrap_or(p.len());
        let key = &p[..key_end];
        let value = p[key_end..]
            .trim_start_matches(|c: char| c.is_ascii_whitespace())
            .trim_start_matches('=')
            .trim_start_matches(|c: char| c.is_ascii_whitespace());
        if key.is_empty() {
            return Err("missing option name".into());
        }
        let Some(&(name, need, may, last)) = TABLE
            .iter()
            .find(|(name, ..)| name.eq_ignore_ascii_case(key))
        else {
            return Err(format!("bad option name: \"{key}\""));
        };
        if value.is_empty() && need {
            return Err(format!("option \"{key}\" requires value"));
        }
        if !value.is_empty() && !may {
            return Err(format!("option \"{key}\" requires no value"));
        }
        if last && i + 1 < n {
            return Err(format!("option \"{key}\" must be at end"));
        }
        effect = match name {
            "allow" => OptionEffect::Allow,
            "deny" => OptionEffect::Deny,
            "twist" => OptionEffect::Twist,
            _ => effect,
        };
    }
    Ok(effect)
}

// ---------------------------------------------------------------------------
// Matching one concrete client

/// A client as libwrap sees it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct TwClient<'a> {
    /// The client address.
    pub addr: IpAddr,
    /// Its verified host name, or `None` when unknown (no reverse DNS).
    pub name: Option<&'a str>,
}

/// `match_pattern_ylo()`: `*` and `?`, case-sensitive.
fn glob(s: &[u8], p: &[u8]) -> bool {
    let (mut si, mut pi) = (0usize, 0usize);
    let mut star: Option<(usize, usize)> = None;
    while si < s.len() {
        if pi < p.len() && (p[pi] == b'?' || p[pi] == s[si]) {
            si += 1;
            pi += 1;
        } else if pi < p.len() && p[pi] == b'*' {
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
    while pi < p.len() && p[pi] == b'*' {
        pi += 1;
    }
    pi == p.len()
}

/// libwrap's `string_match()`.
fn string_match(tok: &str, s: &str) -> bool {
    if tok.contains(['*', '?']) {
        return glob(s.as_bytes(), tok.as_bytes());
    }
    if tok.starts_with('.') {
        return s.len() > tok.len()
            && s.as_bytes()[s.len() - tok.len()..].eq_ignore_ascii_case(tok.as_bytes());
    }
    if tok.eq_ignore_ascii_case("ALL") {
        return true;
    }
    if tok.eq_ignore_ascii_case("KNOWN") {
        return !s.eq_ignore_ascii_case("unknown");
    }
    if tok.ends_with('.') {
        return s.len() >= tok.len()
            && s.as_bytes()[..tok.len()].eq_ignore_ascii_case(tok.as_bytes());
    }
    tok.eq_ignore_ascii_case(s)
}

fn parse_addr(s: &str) -> Option<IpAddr> {
    let s = s
        .strip_prefix('[')
        .and_then(|x| x.strip_suffix(']'))
        .unwrap_or(s);
    s.parse().ok()
}

/// `net/mask` with a dotted mask or a prefix length, v4 or `[v6]`.
fn masked_match(net: &str, mask: &str, addr: IpAddr) -> Option<bool> {
    let net = parse_addr(net)?;
    let addr = match (net, addr) {
        (IpAddr::V4(_), IpAddr::V6(v6)) => v6.to_ipv4_mapped().map(IpAddr::V4)?,
        _ => addr,
    };
    match (net, addr) {
        (IpAddr::V4(n), IpAddr::V4(a)) => {
            let m: u32 = if mask.contains('.') {
                u32::from(mask.parse::<std::net::Ipv4Addr>().ok()?)
            } else {
                let len: u32 = mask.parse().ok()?;
                if len > 32 {
                    return None;
                }
                // libwrap computes `~0 << (32 - len)`; for /0 that shift by
                // 32 is a no-op on x86, so `/0` means a full mask and
                // matches only the network address itself (checked with
                // tcpdmatch). A dotted 0.0.0.0 mask does match everything.
                if len == 0 {
                    u32::MAX
                } else {
                    u32::MAX << (32 - len)
                }
            };
            Some(u32::from(a) & m == u32::from(n))
        }
        (IpAddr::V6(n), IpAddr::V6(a)) => {
            let len: u32 = mask.parse().ok()?;
            if len > 128 {
                return None;
            }
            let m: u128 = if len == 0 {
                0
            } else {
                u128::MAX << (128 - len)
            };
            Some(u128::from(a) & m == u128::from(n) & m)
        }
        _ => Some(false),
    }
}

/// libwrap's `host_match()` for a concrete client.
fn host_match(tok: &str, c: &TwClient<'_>) -> bool {
    let name = c.name.unwrap_or("unknown");
    let addr = c.addr.to_string();
    if tok.starts_with('@') || tok.starts_with('/') {
        // Netgroups and pattern files need the guest's NIS / files.
        return false;
    }
    if tok.eq_ignore_ascii_case("KNOWN") {
        return c.name.is_some();
    }
    if tok.eq_ignore_ascii_case("LOCAL") {
        return c.name.is_some_and(|n| !n.contains('.'));
    }
    if let Some((net, mask)) = split_at(tok.as_bytes(), b'/') {
        let net = String::from_utf8_lossy(net);
        let mask = String::from_utf8_lossy(mask);
        return masked_match(&net, &mask, c.addr).unwrap_or(false);
    }
    if tok.starts_with('[') && tok.ends_with(']') {
        return parse_addr(tok) == Some(c.addr);
    }
    let not_inaddr = tok
        .bytes()
        .any(|b| !(b.is_ascii_digit() || b == b'.' || b == b'/'));
    string_match(tok, &addr) || (not_inaddr && string_match(tok, name))
}

/// `split_at(tok + 1, '@')`: the part before and after the first `@`
/// (outside brackets) that is not the first byte.
fn split_at_sign(tok: &str) -> Option<(&str, &str)> {
    let b = tok.as_bytes();
    let mut bracket: i64 = 0;
    for (i, &c) in b.iter().enumerate().skip(1) {
        match c {
            b'[' => bracket += 1,
            b']' => bracket -= 1,
            // `@` is ASCII, so both sides are valid UTF-8.
            b'@' if bracket == 0 => return Some((&tok[..i], &tok[i + 1..])),
            _ => {}
        }
    }
    None
}

fn client_match(tok: &str, c: &TwClient<'_>) -> bool {
    match split_at_sign(tok) {
        None => host_match(tok, c),
        // sshd gives libwrap no user name: an ident lookup would be
        // needed, which we treat as "unknown".
        Some((user, host)) => host_match(host, c) && string_match(user, "unknown"),
    }
}

/// Daemon match: `Some(true/false)`, or `None` when a `daemon@host`
/// pattern depends on the server address.
fn server_match(tok: &str, daemon: &str) -> Option<bool> {
    match split_at_sign(tok) {
        None => Some(string_match(tok, daemon)),
        Some((d, host)) => {
            if !string_match(d, daemon) {
                return Some(false);
            }
            if host.eq_ignore_ascii_case("ALL") {
                Some(true)
            } else {
                None
            }
        }
    }
}

/// `list_match()` with three-valued items.
fn list_match3(list: &[String], f: &dyn Fn(&str) -> Option<bool>) -> Option<bool> {
    let mut unknown = false;
    for (i, tok) in list.iter().enumerate() {
        if tok.eq_ignore_ascii_case("EXCEPT") {
            return if unknown { None } else { Some(false) };
        }
        match f(tok) {
            Some(true) => {
                let exc = list[i + 1..]
                    .iter()
                    .position(|t| t.eq_ignore_ascii_case("EXCEPT"));
                return match exc {
                    None => Some(true),
                    Some(k) => match list_match3(&list[i + 2 + k..], f) {
                        Some(true) => {
                            if unknown {
                                None
                            } else {
                                Some(false)
                            }
                        }
                        Some(false) => Some(true),
                        None => None,
                    },
                };
            }
            Some(false) => {}
            None => unknown = true,
        }
    }
    if unknown {
        None
    } else {
        Some(false)
    }
}

/// Which file a decision comes from.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, schemars::JsonSchema)]
#[serde(rename_all = "snake_case")]
pub enum Table {
    /// /etc/hosts.allow.
    Allow,
    /// /etc/hosts.deny.
    Deny,
}

/// The decision for one concrete client.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, schemars::JsonSchema)]
pub struct Decision {
    /// True when the daemon may serve the client.
    pub granted: bool,
    /// The deciding file and line (`None`: no rule matched, default grant).
    pub by: Option<(Table, usize)>,
    /// Why, in one lowercase line.
    pub reason: String,
    /// True when a `daemon@host` pattern made the answer depend on the
    /// server address; the answer assumes it does not match.
    pub uncertain: bool,
}

/// `hosts_access()` for `daemon` and a concrete client.
pub fn hosts_access(
    allow: &HostsAccess,
    deny: &HostsAccess,
    daemon: &str,
    client: &TwClient<'_>,
) -> Decision {
    let mut uncertain = false;
    for (table, doc) in [(Table::Allow, allow), (Table::Deny, deny)] {
        for rule in &doc.rules {
            let d = list_match3(&rule.daemons, &|t| server_match(t, daemon));
            let d = match d {
                Some(v) => v,
                None => {
                    uncertain = true;
                    false
                }
            };
            if !d {
                continue;
            }
            let c = list_match3(&rule.clients, &|t| Some(client_match(t, client))).unwrap_or(false);
            if !c {
                continue;
            }
            let line = rule.first_line;
            let effect = match rule.options.as_deref().map(parse_options) {
                None => OptionEffect::TableDefault,
                Some(Ok(e)) => e,
                Some(Err(e)) => {
                    return Decision {
                        granted: false,
                        by: Some((table, line)),
                        reason: format!("option error on the matching rule: {e}"),
                        uncertain,
                    }
                }
            };
            let granted = match effect {
                OptionEffect::Allow => true,
                OptionEffect::Deny | OptionEffect::Twist => false,
                OptionEffect::TableDefault => table == Table::Allow,
            };
            return Decision {
                granted,
                by: Some((table, line)),
                reason: format!("{:?} rule on line {line} matches ({effect:?})", table)
                    .to_ascii_lowercase(),
                uncertain,
            };
        }
        if let Some(stop) = &doc.stop {
            if table == Table::Deny {
                return Decision {
                    granted: false,
                    by: Some((table, stop.line)),
                    reason: format!(
                        "libwrap stops on line {} of hosts.deny with an error: {}",
                        stop.line, stop.reason
                    ),
                    uncertain,
                };
            }
        }
    }
    Decision {
        granted: true,
        by: None,
        reason: "no rule matches: access is granted by default".into(),
        uncertain,
    }
}

// ---------------------------------------------------------------------------
// Any client

/// How much of the client population a client list covers.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, schemars::JsonSchema)]
#[serde(tag = "type", rename_all = "snake_case")]
pub enum Coverage {
    /// Every client.
    All,
    /// Every client except those matching the listed patterns.
    AllExcept {
        /// The exception patterns.
        except: Vec<String>,
    },
    /// Only clients matching the listed patterns.
    Some {
        /// The patterns.
        patterns: Vec<String>,
    },
    /// No client.
    None,
}

/// `ALL`, or a glob of only `*`. Address patterns such as
/// 0.0.0.0/0.0.0.0 cover one address family only and count as "some
/// clients".
fn token_covers_all(tok: &str) -> bool {
    tok.eq_ignore_ascii_case("ALL") || (!tok.is_empty() && tok.bytes().all(|b| b == b'*'))
}

/// The coverage of a client list for an arbitrary client.
pub fn client_coverage(list: &[String]) -> Coverage {
    let exc = list.iter().position(|t| t.eq_ignore_ascii_case("EXCEPT"));
    let (head, tail) = match exc {
        Some(i) => (&list[..i], Some(&list[i + 1..])),
        None => (list, None),
    };
    let all = head.iter().any(|t| token_covers_all(t));
    match (all, tail) {
        (true, None) => Coverage::All,
        (true, Some([])) => Coverage::All,
        (true, Some(t)) => match client_coverage(t) {
            // ALL EXCEPT ALL: nobody.
            Coverage::All => Coverage::None,
            _ => Coverage::AllExcept { except: t.to_vec() },
        },
        (false, _) if head.is_empty() => Coverage::None,
        (false, _) => Coverage::Some {
            patterns: head.to_vec(),
        },
    }
}

/// The access verdict for a daemon and an arbitrary client.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, schemars::JsonSchema)]
#[serde(tag = "type", rename_all = "snake_case")]
pub enum Access {
    /// Every client is allowed (no rule refuses any client).
    Allowed,
    /// Every client is refused by this rule, except those let in earlier by
    /// the `allowed_by` rules of hosts.allow (or hosts.deny `allow` options).
    DeniedForAll {
        /// The file of the refusing rule.
        table: Table,
        /// Its line.
        deny_line: usize,
        /// Why it refuses.
        reason: String,
        /// Earlier rules that still admit some clients: (file, line).
        allowed_by: Vec<(Table, usize)>,
    },
    /// Some clients are refused: (file, line) of each refusing rule.
    DeniedForSome {
        /// The refusing rules.
        lines: Vec<(Table, usize)>,
    },
    /// The answer depends on what the files cannot tell (a `daemon@host`
    /// pattern that refuses every client).
    Unknown {
        /// Why.
        why: String,
    },
}

/// `hosts_access()` for `daemon` and any client.
pub fn daemon_access(allow: &HostsAccess, deny: &HostsAccess, daemon: &str) -> Access {
    let mut admitted: Vec<(Table, usize)> = Vec::new();
    let mut refused: Vec<(Table, usize)> = Vec::new();
    for (table, doc) in [(Table::Allow, allow), (Table::Deny, deny)] {
        for rule in &doc.rules {
            let d = list_match3(&rule.daemons, &|t| server_match(t, daemon));
            if d == Some(false) {
                continue;
            }
            let cov = client_coverage(&rule.clients);
            if cov == Coverage::None {
                continue;
            }
            let line = rule.first_line;
            let (granted, why) = match rule.options.as_deref().map(parse_options) {
                None | Some(Ok(OptionEffect::TableDefault)) => {
                    (table == Table::Allow, String::new())
                }
                Some(Ok(OptionEffect::Allow)) => (true, String::new()),
                Some(Ok(OptionEffect::Deny)) => (false, " with the deny option".to_owned()),
                Some(Ok(OptionEffect::Twist)) => {
                    (false, " with twist (the daemon never runs)".to_owned())
                }
                Some(Err(e)) => (false, format!(" with an option error ({e})")),
            };
            let everyone = cov == Coverage::All;
            if everyone && d == Some(true) {
                if granted {
                    return if refused.is_empty() {
                        Access::Allowed
                    } else {
                        Access::DeniedForSome { lines: refused }
                    };
                }
                let file = if table == Table::Allow {
                    "hosts.allow"
                } else {
                    "hosts.deny"
                };
                return Access::DeniedForAll {
                    table,
                    deny_line: line,
                    reason: format!("{file} line {line} matches {daemon} for every client{why}"),
                    allowed_by: admitted,
                };
            }
            if everyone && !granted && d.is_none() {
                return Access::Unknown {
                    why: format!(
                        "line {line} refuses every client when the server address matches its daemon@host pattern"
                    ),
                };
            }
            if granted {
                admitted.push((table, line));
            } else {
                refused.push((table, line));
            }
        }
        if let Some(stop) = &doc.stop {
            if table == Table::Deny {
                return Access::DeniedForAll {
                    table,
                    deny_line: stop.line,
                    reason: format!(
                        "libwrap stops on hosts.deny line {} with an error ({})",
                        stop.line, stop.reason
                    ),
                    allowed_by: admitted,
                };
            }
        }
    }
    if refused.is_empty() {
        Access::Allowed
    } else {
        Access::DeniedForSome { lines: refused }
    }
}

/// [`daemon_access`] for `sshd`, the name OpenSSH's sshd passes to libwrap
/// (its `__progname`).
pub fn sshd_access(allow: &HostsAccess, deny: &HostsAccess) -> Access {
    daemon_access(allow, deny, "sshd")
}

/// Fuzz entry point: parses, checks the round trip, evaluates access and
/// runs the edits.
#[doc(hidden)]
pub fn fuzz_tcp_wrappers(data: &[u8]) {
    let doc = HostsAccess::parse(data);
    assert_eq!(doc.render(), data);
    let empty = HostsAccess::parse(b"");
    let _ = sshd_access(&doc, &doc);
    let _ = sshd_access(&empty, &doc);
    let client = TwClient {
        addr: IpAddr::V4(std::net::Ipv4Addr::new(192, 0, 2, 7)),
        name: Some("host.example.com"),
    };
    let _ = hosts_access(&doc, &empty, "sshd", &client);
    let _ = hosts_access(&empty, &doc, "sshd", &client);
    if let Some(r) = doc.rules.first() {
        let mut d = doc.clone();
        let _ = d.comment_out(r.first_line, "fuzz");
    }
    let mut d = doc.clone();
    d.ensure_final_newline();
}

#[cfg(test)]
mod tests {
    use super::*;

    fn p(s: &str) -> HostsAccess {
        HostsAccess::parse(s.as_bytes())
    }

    #[test]
    fn logical_lines_and_kinds() {
        let text = "# comment\n\nsshd: 10.0.0.1 \\\n  10.0.0.2 : spawn echo\n ALL: ALL\nnocolon\n# c \\\nsshd: ALL\nlast: x";
        let d = p(text);
        assert_eq!(d.render(), text.as_bytes());
        assert_eq!(d.rules.len(), 2);
        assert_eq!(d.rules[0].clients, vec!["10.0.0.1", "10.0.0.2"]);
        assert_eq!(d.rules[0].options.as_deref(), Some(" spawn echo"));
        assert_eq!(d.lines[3].kind, TwLineKind::Continuation { first_line: 3 });
        assert_eq!(d.lines[5].kind, TwLineKind::NoSeparator);
        assert_eq!(d.lines[7].kind, TwLineKind::Continuation { first_line: 7 });
        assert_eq!(
            d.stop,
            Some(Stop {
                line: 9,
                reason: "missing newline at the end of the file".into()
            })
        );
    }

    #[test]
    fn blanket_deny_is_found() {
        let empty = p("");
        assert!(matches!(
            sshd_access(&empty, &p("sshd: ALL\n")),
            Access::DeniedForAll { deny_line: 1, .. }
        ));
        assert!(matches!(
            sshd_access(&empty, &p("ALL: ALL\n")),
            Access::DeniedForAll { .. }
        ));
        assert!(matches!(
            sshd_access(&empty, &p("ALL EXCEPT sshd: ALL\n")),
            Access::Allowed
        ));
        assert!(matches!(
            sshd_access(&empty, &p("sshd: .evil.com\n")),
            Access::DeniedForSome { .. }
        ));
        assert!(matches!(
            sshd_access(&p("sshd: ALL\n"), &p("ALL: ALL\n")),
            Access::Allowed
        ));
        let a = sshd_access(&p("sshd: 10.0.0.0/8\n"), &p("ALL: ALL\n"));
        assert!(
            matches!(a, Access::DeniedForAll { ref allowed_by, .. } if allowed_by == &vec![(Table::Allow, 1)])
        );
        assert!(matches!(
            sshd_access(&empty, &p("# only a comment")),
            Access::DeniedForAll { .. }
        ));
        assert!(matches!(
            sshd_access(&p("sshd: ALL: deny\n"), &empty),
            Access::DeniedForAll {
                table: Table::Allow,
                ..
            }
        ));
        assert!(matches!(
            sshd_access(&p("sshd: ALL:\n"), &empty),
            Access::DeniedForAll { .. }
        ));
        assert!(matches!(
            sshd_access(&empty, &p("sshd@10.0.0.5: ALL\n")),
            Access::Unknown { .. }
        ));
        assert!(matches!(
            sshd_access(&empty, &p(" # sshd: ALL\n")),
            Access::DeniedForAll { .. }
        ));
    }

    #[test]
    fn options_table() {
        assert_eq!(
            parse_options(" spawn echo hi : allow"),
            Ok(OptionEffect::Allow)
        );
        assert_eq!(parse_options("DENY"), Ok(OptionEffect::Deny));
        assert!(parse_options("").is_err());
        assert!(parse_options("allow : deny").is_err());
        assert!(parse_options("bogus").is_err());
        assert!(parse_options("spawn").is_err());
        assert!(parse_options("allow x").is_err());
        assert_eq!(
            parse_options("spawn a\\: b"),
            Ok(OptionEffect::TableDefault)
        );
        assert_eq!(parse_options("setenv=A B"), Ok(OptionEffect::TableDefault));
    }

    #[test]
    fn comment_out_every_physical_line() {
        let mut d = p("sshd: ALL \\\n EXCEPT 10.0.0.1\nALL: ALL\n");
        d.comment_out(1, "blanket deny of sshd").unwrap();
        assert_eq!(
            d.render(),
            b"# rescue-disk: blanket deny of sshd\n#sshd: ALL \\\n# EXCEPT 10.0.0.1\nALL: ALL\n"
        );
        assert_eq!(d.rules.len(), 1);
        assert_eq!(d.rules[0].first_line, 4);
        let mut d = p("sshd: ALL");
        assert!(d.ensure_final_newline());
        assert!(d.stop.is_none());
    }

    #[test]
    fn mutations_never_panic() {
        let sample = b"# /etc/hosts.deny\nsshd: ALL EXCEPT 10.0.0.0/255.0.0.0 [::1]/128 .example.com \\\n LOCAL : spawn /bin/echo %a : deny\nALL: ALL\nsshd@192.0.2.1: KNOWN, user@host\n";
        crate::text::mutate_and_run(sample, 4000, 0x7c9d_0001, fuzz_tcp_wrappers);
    }
}
