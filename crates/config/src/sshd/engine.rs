//! Offline emulation of sshd's configuration pass (`sshd -t`): every line
//! of the main file and its `Include`s is processed the way
//! `process_server_config_line_depth()` of the target release processes it,
//! producing the messages sshd would print (byte-identical), a verdict per
//! line, and the ordered directives with their `Match` context for the
//! effective-settings replay.
//!
//! Unlike sshd, the analysis does not stop at the first fatal error: it
//! keeps going so every broken line gets a verdict, and marks the messages
//! sshd would never reach. It never does I/O (includes come through
//! [`IncludeSource`]), never panics, and is bounded by [`Limits`].

use std::rc::Rc;

use serde::Serialize;

use super::algos;
use super::include::{include_pattern, IncludeSource, Limits, MAX_DEPTH};
use super::keywords::{self, Kw, Op, MS_FLAG, TUN_MODES};
use super::lex::{self, argv_split, is_ws, strdelim, Loaded, LogicalLine};
use super::log::{cat, prec, render, Sink};
use super::matching::{addr_match_list, parse_addr, user_pattern_valid};
use super::version::Target;

/// Severity of a message sshd prints.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Serialize, schemars::JsonSchema)]
#[serde(rename_all = "snake_case")]
pub enum Level {
    /// INFO: sshd continues (deprecated or unsupported options).
    Info,
    /// error(): counted as a bad option; sshd exits at the end of the file.
    Error,
    /// fatal(): sshd exits at once.
    Fatal,
}

/// One line sshd prints while reading its configuration.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, schemars::JsonSchema)]
pub struct Message {
    /// Severity.
    pub level: Level,
    /// The text exactly as `sshd -t` prints it (without `\r\n`).
    pub text: String,
    /// The file the message is about (empty when none).
    pub file: String,
    /// 1-based physical line in `file` the message is about (0 when none).
    pub line: usize,
    /// False for messages after the first fatal one: sshd never prints them.
    pub reached: bool,
}

/// What sshd makes of one configuration line.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Serialize, schemars::JsonSchema)]
#[serde(rename_all = "snake_case")]
pub enum Status {
    /// Accepted.
    Ok,
    /// Accepted and ignored silently (`Protocol`).
    Ignored,
    /// Accepted with "Deprecated option" at INFO level.
    Deprecated,
    /// Accepted with "Unsupported option" at INFO level.
    Unsupported,
    /// Depends on something not knowable offline (DNS, /etc/services).
    Unknown,
    /// Logged as an error and counted; sshd exits at the end of the file.
    Error,
    /// sshd exits at once.
    Fatal,
}

/// The verdict for one line that holds a directive.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, schemars::JsonSchema)]
pub struct Verdict {
    /// File path as sshd names it.
    pub file: String,
    /// The line number sshd prints (differs from `physical_line` only after
    /// a NUL byte, which makes sshd join two lines).
    pub line: usize,
    /// 1-based physical line in the file (what an editor shows).
    pub physical_line: usize,
    /// The keyword as written (lossy UTF-8).
    pub keyword: String,
    /// The keyword's sshd_config(5) spelling when sshd knows it.
    pub canonical: Option<String>,
    /// The outcome.
    pub status: Status,
    /// What sshd prints for this line, in order.
    pub messages: Vec<String>,
    /// For an unknown keyword: the real keyword it is a near miss of.
    pub suggestion: Option<String>,
    /// Why the status is `Unknown`, or another remark.
    pub note: Option<String>,
}

/// One directive sshd accepted, in processing order.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, schemars::JsonSchema)]
pub struct Entry {
    /// File path as sshd names it.
    pub file: String,
    /// 1-based physical line.
    pub line: usize,
    /// sshd_config(5) spelling of the keyword as written (aliases kept).
    pub keyword: String,
    /// Lowercase name of the setting it feeds (aliases resolved).
    pub setting: String,
    /// Arguments as sshd splits them; for rest-of-line keywords
    /// (`ForceCommand`, `AuthorizedKeysCommand`, …) the single raw string.
    pub args: Vec<String>,
    /// Index into [`Analysis::match_blocks`] of the block the line is in.
    pub match_block: Option<usize>,
}

/// One `Match` criterion as written.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, schemars::JsonSchema)]
pub struct Criterion {
    /// Lowercase attribute: `all`, `user`, `group`, `host`, `address`,
    /// `localaddress`, `localport`, `rdomain`, `invalid-user`, `version`.
    pub attribute: String,
    /// Its argument (pattern list); empty for `all` and `invalid-user`.
    pub patterns: String,
}

/// A `Match` line.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, schemars::JsonSchema)]
pub struct MatchBlock {
    /// File path.
    pub file: String,
    /// 1-based physical line.
    pub line: usize,
    /// The criteria, all of which must hold.
    pub criteria: Vec<Criterion>,
    /// True when sshd applies the block without looking at the connection
    /// (`Match All`, and a lone `Match invalid-user` in 9.9), so its
    /// directives also count as global settings.
    pub always: bool,
}

/// A problem with the analysis itself (caps hit, unreadable include, loop).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, schemars::JsonSchema)]
pub struct FileDiagnostic {
    /// File path (empty when about the whole analysis).
    pub file: String,
    /// 1-based physical line (0 when none).
    pub line: usize,
    /// What happened, lowercase.
    pub message: String,
}

/// Replay events: what sshd's parser walks through, in order.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Event {
    /// Entering an included file.
    Enter,
    /// Leaving it.
    Exit,
    /// A `Match` line (index into `match_blocks`).
    Match(usize),
    /// An accepted directive (index into `entries`).
    Directive(usize),
}

/// Everything the configuration pass found.
#[derive(Debug, Clone, Serialize, schemars::JsonSchema)]
pub struct Analysis {
    /// The sshd build emulated.
    pub target: Target,
    /// Every message, in the order sshd prints them.
    pub messages: Vec<Message>,
    /// One verdict per directive line of every file read.
    pub verdicts: Vec<Verdict>,
    /// Accepted directives in processing order (includes expanded).
    pub entries: Vec<Entry>,
    /// `Match` lines referenced by entries.
    pub match_blocks: Vec<MatchBlock>,
    /// Files read, main file first.
    pub files: Vec<String>,
    /// Problems with the analysis itself.
    pub diagnostics: Vec<FileDiagnostic>,
    /// False when a cap was hit or an include could not be read, so part of
    /// the configuration was not analysed.
    pub complete: bool,
    #[serde(skip)]
    pub(crate) events: Vec<Event>,
}

impl Analysis {
    /// True when sshd would refuse to start (a fatal error, or errors that
    /// make it terminate).
    pub fn fails(&self) -> bool {
        self.messages.iter().any(|m| m.level == Level::Fatal)
    }

    /// The lines `sshd -t` prints, in order, up to the one it exits on.
    pub fn sshd_output(&self) -> Vec<String> {
        self.messages
            .iter()
            .filter(|m| m.reached)
            .map(|m| m.text.clone())
            .collect()
    }

    /// The first message that makes sshd exit, if any.
    pub fn first_fatal(&self) -> Option<&Message> {
        self.messages.iter().find(|m| m.level == Level::Fatal)
    }

    /// Verdicts that are not `Ok` (or `Ignored`).
    pub fn problems(&self) -> impl Iterator<Item = &Verdict> {
        self.verdicts
            .iter()
            .filter(|v| !matches!(v.status, Status::Ok | Status::Ignored))
    }
}

/// A file read for an include: its path and contents.
type CachedFile = (String, Rc<Vec<u8>>);

/// sshd's include cache entry.
struct IncludeItem {
    selector: String,
    file: Option<CachedFile>,
}

/// `match_cfg_line()` without a connection: whether the block applies in
/// the first pass, and its criteria; `Err` for "Bad Match condition".
type MatchResult = Result<(bool, Vec<Criterion>), ()>;

const SSHCFG_NEVERMATCH: u8 = 0x04;
const SSHCFG_MATCH_ONLY: u8 = 0x08;

/// A fatal error happened: the handler stops like sshd's fatal() would.
struct Stop;

type Flow = Result<bool, Stop>;

/// Arguments after the keyword, as the release splits them.
enum Args<'b> {
    /// strdelim() era (before 8.7): a C string and a cursor.
    Delim { s: &'b [u8], pos: Option<usize> },
    /// argv_split() era (8.7 and later).
    Argv { toks: Vec<Vec<u8>>, i: usize },
}

impl Args<'_> {
    fn next_with(&mut self, eq: bool) -> Option<Vec<u8>> {
        match self {
            Args::Delim { s, pos } => {
                let (t, n) = strdelim(s, *pos, eq);
                *pos = n;
                t.map(|t| t.value)
            }
            Args::Argv { toks, i } => {
                let r = toks.get(*i).cloned();
                if r.is_some() {
                    *i += 1;
                }
                r
            }
        }
    }

    fn next(&mut self) -> Option<Vec<u8>> {
        self.next_with(true)
    }

    fn consume(&mut self) {
        match self {
            Args::Delim { pos, .. } => *pos = None,
            Args::Argv { toks, i } => *i = toks.len(),
        }
    }

    /// argv's `ac` (0 in the strdelim era).
    fn remaining(&self) -> usize {
        match self {
            Args::Delim { .. } => 0,
            Args::Argv { toks, i } => toks.len().saturating_sub(*i),
        }
    }

    fn peek(&self) -> Option<&[u8]> {
        match self {
            Args::Delim { .. } => None,
            Args::Argv { toks, i } => toks.get(*i).map(|v| v.as_slice()),
        }
    }

    /// The strdelim era's `cp`.
    fn cp(&self) -> Option<&[u8]> {
        match self {
            Args::Delim { s, pos } => pos.map(|p| s.get(p..).unwrap_or(&[])),
            Args::Argv { .. } => None,
        }
    }
}

fn nonempty(a: &Option<Vec<u8>>) -> bool {
    a.as_ref().is_some_and(|v| !v.is_empty())
}

fn lossy(b: &[u8]) -> String {
    String::from_utf8_lossy(b).into_owned()
}

fn strcasecmp_eq(a: &[u8], b: &str) -> bool {
    a.eq_ignore_ascii_case(b.as_bytes())
}

/// C `strtonum(s, min, max)`: `Err` is "invalid", "too small" or "too large".
pub(crate) fn strtonum(s: &[u8], min: i64, max: i64) -> Result<i64, &'static str> {
    let t = std::str::from_utf8(s).map_err(|_| "invalid")?;
    let trimmed = t.trim_start_matches([' ', '\t', '\n', '\r', '\x0b', '\x0c']);
    let (neg, digits) = match trimmed.as_bytes().first() {
        Some(b'-') => (true, &trimmed[1..]),
        Some(b'+') => (false, &trimmed[1..]),
        _ => (false, trimmed),
    };
    if digits.is_empty() || !digits.bytes().all(|b| b.is_ascii_digit()) {
        return Err("invalid");
    }
    // strtoll saturates; the range check then says which way.
    let v: i128 = digits
        .bytes()
        .try_fold(0i128, |acc, b| {
            let n = acc * 10 + i128::from(b - b'0');
            (n <= i128::from(i64::MAX) + 1).then_some(n)
        })
        .unwrap_or(i128::from(i64::MAX) + 1);
    let v = if neg { -v } else { v };
    if v < i128::from(min) {
        Err("too small")
    } else if v > i128::from(max) {
        Err("too large")
    } else {
        Ok(v as i64)
    }
}

/// `atoi_err()`.
fn atoi_err(s: Option<&[u8]>) -> Result<i64, &'static str> {
    match s {
        None | Some([]) => Err("missing"),
        Some(s) => strtonum(s, 0, i64::from(i32::MAX)),
    }
}

/// Well-known TCP service names, as every distribution's /etc/services has
/// them; `a2port()` falls back to getservbyname() since 7.9.
const SERVICES: &[(&str, i64)] = &[
    ("ssh", 22),
    ("telnet", 23),
    ("smtp", 25),
    ("http", 80),
    ("www", 80),
    ("pop3", 110),
    ("imap", 143),
    ("https", 443),
    ("submission", 587),
    ("imaps", 993),
    ("pop3s", 995),
    ("ftp", 21),
];

/// TCP service names and aliases with their ports.
type Services = Vec<(Vec<u8>, i64)>;

/// Parses /etc/services.
fn parse_services(data: &[u8]) -> Services {
    let mut out = Vec::new();
    for line in data.split(|&b| b == b'\n') {
        let line = line.split(|&b| b == b'#').next().unwrap_or(&[]);
        let mut words = line
            .split(|&b| b == b' ' || b == b'\t' || b == b'\r')
            .filter(|w| !w.is_empty());
        let (Some(name), Some(pp)) = (words.next(), words.next()) else {
            continue;
        };
        let Some(port) = pp.strip_suffix(b"/tcp") else {
            continue;
        };
        let Ok(port) = strtonum(port, 0, 65535) else {
            continue;
        };
        out.push((name.to_vec(), port));
        for alias in words {
            out.push((alias.to_vec(), port));
        }
    }
    out
}

/// C `strtol(s, &end, 10)` prefix parse: value and bytes consumed (0 when
/// no digits). Saturates like strtol.
fn strtol_prefix(s: &[u8], radix: u32) -> (i64, usize) {
    let mut i = 0;
    while i < s.len() && matches!(s[i], b' ' | b'\t' | b'\n' | b'\r' | 0x0b | 0x0c) {
        i += 1;
    }
    let mut neg = false;
    if i < s.len() && (s[i] == b'+' || s[i] == b'-') {
        neg = s[i] == b'-';
        i += 1;
    }
    let start = i;
    let mut v: i128 = 0;
    while i < s.len() && (s[i] as char).is_digit(radix) {
        v = (v * i128::from(radix) + i128::from((s[i] as char).to_digit(radix).unwrap_or(0)))
            .min(i128::from(i64::MAX) + 1);
        i += 1;
    }
    if i == start {
        return (0, 0);
    }
    let v = if neg { -v } else { v };
    let v = v.clamp(i128::from(i64::MIN), i128::from(i64::MAX)) as i64;
    (v, i)
}

/// `convtime()` of the target release: seconds, or `None` (-1).
pub(crate) fn convtime(t: &Target, s: &[u8]) -> Option<i64> {
    if s.is_empty() {
        return None;
    }
    let max = i64::from(i32::MAX);
    let mut total: i64 = 0;
    let mut p = 0usize;
    while p < s.len() {
        let (secs, used) = if t.at_least(9, 9) {
            // Digits only, then strtonum.
            let n = s[p..].iter().take_while(|b| b.is_ascii_digit()).count();
            match strtonum(&s[p..p + n], 0, max) {
                Ok(v) => (v, n),
                Err(_) => return None,
            }
        } else {
            let (v, n) = strtol_prefix(&s[p..], 10);
            if n == 0 || v < 0 || v >= max {
                return None;
            }
            (v, n)
        };
        let mut q = p + used;
        let mult = match s.get(q) {
            None => 1,
            Some(b's' | b'S') => 1,
            Some(b'm' | b'M') => 60,
            Some(b'h' | b'H') => 3600,
            Some(b'd' | b'D') => 86400,
            Some(b'w' | b'W') => 604800,
            Some(_) => return None,
        };
        if q < s.len() {
            q += 1;
        }
        if secs > max / mult {
            return None;
        }
        let secs = secs * mult;
        if total > max - secs {
            return None;
        }
        total += secs;
        p = q;
    }
    Some(total)
}

/// `scan_scaled()`: the value, or the strerror() text of its errno.
fn scan_scaled(s: &[u8]) -> Result<i128, &'static str> {
    const EINVAL: &str = "Invalid argument";
    const ERANGE: &str = "Numerical result out of range";
    let mut p = 0usize;
    while p < s.len() && matches!(s[p], b' ' | b'\t' | b'\n' | b'\r' | 0x0b | 0x0c) {
        p += 1;
    }
    let mut sign = 0i128;
    while p < s.len() && (s[p] == b'-' || s[p] == b'+') {
        if sign != 0 {
            return Err(EINVAL);
        }
        sign = if s[p] == b'-' { -1 } else { 1 };
        p += 1;
    }
    let lmax = i128::from(i64::MAX);
    let (mut whole, mut fpart) = (0i128, 0i128);
    let (mut ndigits, mut fract_digits) = (0u32, 0u32);
    while p < s.len() && (s[p].is_ascii_digit() || s[p] == b'.') {
        if s[p] == b'.' {
            if fract_digits > 0 {
                return Err(EINVAL);
            }
            fract_digits = 1;
            p += 1;
            continue;
        }
        let d = i128::from(s[p] - b'0');
        if fract_digits > 0 {
            if fract_digits < 20 {
                fract_digits += 1;
                fpart = fpart * 10 + d;
                if fpart > lmax {
                    return Err(ERANGE);
                }
            }
        } else {
            ndigits += 1;
            if ndigits >= 21 {
                return Err(ERANGE);
            }
            whole = whole * 10 + d;
            if whole > lmax {
                return Err(ERANGE);
            }
        }
        p += 1;
    }
    if sign != 0 {
        whole *= sign;
    }
    let Some(&c) = s.get(p) else {
        return Ok(whole);
    };
    let scales = b"BKMGTPE";
    let Some(i) = scales
        .iter()
        .position(|&u| u == c || u.to_ascii_lowercase() == c)
    else {
        return Err(EINVAL);
    };
    if s.get(p + 1).is_some_and(|b| b.is_ascii_alphanumeric()) {
        return Err(EINVAL);
    }
    let fact: i128 = 1i128 << (10 * i);
    if whole > lmax / fact || whole < -lmax / fact {
        return Err(ERANGE);
    }
    whole *= fact;
    while fpart >= lmax / fact {
        fpart /= 10;
        fract_digits = fract_digits.saturating_sub(1);
    }
    fpart *= fact;
    if fract_digits > 0 {
        for _ in 0..fract_digits - 1 {
            fpart /= 10;
        }
    }
    Ok(if sign == -1 {
        whole - fpart
    } else {
        whole + fpart
    })
}

/// `parse_ipqos()`.
fn ipqos_valid(s: Option<&[u8]>) -> bool {
    const NAMES: &[&str] = &[
        "none",
        "af11",
        "af12",
        "af13",
        "af21",
        "af22",
        "af23",
        "af31",
        "af32",
        "af33",
        "af41",
        "af42",
        "af43",
        "cs0",
        "cs1",
        "cs2",
        "cs3",
        "cs4",
        "cs5",
        "cs6",
        "cs7",
        "ef",
        "le",
        "lowdelay",
        "throughput",
        "reliability",
    ];
    let Some(s) = s else {
        return false;
    };
    if NAMES.iter().any(|n| strcasecmp_eq(s, n)) {
        return true;
    }
    if s.is_empty() {
        return false;
    }
    // strtol(cp, &ep, 0): base prefix detection, whole string consumed.
    let (body, neg) = match s.first() {
        Some(b'-') => (&s[1..], true),
        Some(b'+') => (&s[1..], false),
        _ => (s, false),
    };
    let (digits, radix) = if body.len() > 2 && (body.starts_with(b"0x") || body.starts_with(b"0X"))
    {
        (&body[2..], 16)
    } else if body.len() > 1 && body[0] == b'0' {
        (&body[1..], 8)
    } else {
        (body, 10)
    };
    let (v, used) = strtol_prefix(digits, radix);
    let lead_ws = s
        .first()
        .is_some_and(|&b| is_ws(b) || b == 0x0b || b == 0x0c);
    if lead_ws || used != digits.len() || digits.is_empty() && radix != 8 {
        return false;
    }
    let v = if neg { -v } else { v };
    (0..=255).contains(&v)
}

fn log_facility_valid(s: Option<&[u8]>) -> bool {
    const F: &[&str] = &[
        "DAEMON", "USER", "AUTH", "AUTHPRIV", "LOCAL0", "LOCAL1", "LOCAL2", "LOCAL3", "LOCAL4",
        "LOCAL5", "LOCAL6", "LOCAL7",
    ];
    s.is_some_and(|s| F.iter().any(|f| strcasecmp_eq(s, f)))
}

fn log_level_valid(s: Option<&[u8]>) -> bool {
    const L: &[&str] = &[
        "QUIET", "FATAL", "ERROR", "INFO", "VERBOSE", "DEBUG", "DEBUG1", "DEBUG2", "DEBUG3",
    ];
    s.is_some_and(|s| L.iter().any(|f| strcasecmp_eq(s, f)))
}

/// `sscanf(s, "%d:%d:%d")`-style: the integers converted before the first
/// mismatch.
fn scan_ints(s: &[u8], max: usize) -> Vec<i64> {
    let mut out = Vec::new();
    let mut p = 0usize;
    while out.len() < max {
        if !out.is_empty() {
            if s.get(p) != Some(&b':') {
                break;
            }
            p += 1;
        }
        let (v, used) = strtol_prefix(&s[p.min(s.len())..], 10);
        if used == 0 {
            break;
        }
        out.push(v.clamp(i64::from(i32::MIN), i64::from(i32::MAX)));
        p += used;
    }
    out
}

/// A host part and the rest after its delimiter (`None`: no more fields).
type HostRest = (Vec<u8>, Option<Vec<u8>>);

/// `hpdelim2()`: host part, the rest, and the delimiter found (0 at the
/// end); `Err` when malformed.
fn hpdelim2(s: &[u8]) -> Result<(HostRest, u8), ()> {
    let idx = if s.first() == Some(&b'[') {
        match s.iter().position(|&b| b == b']') {
            Some(i) => i + 1,
            None => return Err(()),
        }
    } else {
        s.iter()
            .position(|&b| b == b':' || b == b'/')
            .unwrap_or(s.len())
    };
    match s.get(idx) {
        None => Ok(((s.to_vec(), None), 0)),
        Some(&d) if d == b':' || d == b'/' => {
            Ok(((s[..idx].to_vec(), Some(s[idx + 1..].to_vec())), d))
        }
        Some(_) => Err(()),
    }
}

/// `hpdelim()` of the release (8.0+ rejects `/` as a delimiter).
fn hpdelim(t: &Target, s: &[u8]) -> Result<HostRest, ()> {
    let (hr, d) = hpdelim2(s)?;
    if d == b'/' && t.at_least(8, 0) {
        return Err(());
    }
    Ok(hr)
}

fn cleanhostname(h: &[u8]) -> Vec<u8> {
    if h.len() >= 2 && h[0] == b'[' && h[h.len() - 1] == b']' {
        h[1..h.len() - 1].to_vec()
    } else {
        h.to_vec()
    }
}

/// Per-line state while a file is processed.
struct LineCtx {
    file: String,
    file_idx: usize,
    number: usize,
    physical: usize,
    keyword: Vec<u8>,
    /// "%s line %d: "
    p: Vec<u8>,
    /// "%.200s line %d: "
    p200: Vec<u8>,
    unknown: Option<String>,
    entry_args: Option<Vec<Vec<u8>>>,
}

/// The configuration pass.
pub(crate) struct Engine<'a> {
    t: &'a Target,
    src: Option<&'a dyn IncludeSource>,
    limits: Limits,
    includes: Vec<IncludeItem>,
    fatal_seen: bool,
    bytes_read: usize,
    lines_done: usize,
    stack: Vec<String>,
    // Global state some handlers consult (first pass, active lines only).
    num_ports: usize,
    subsystems: Vec<Vec<u8>>,
    num_auth_methods: usize,
    num_authkeys_files: usize,
    akc_set: bool,
    apc_set: bool,
    version_addendum_set: bool,
    current_match: Vec<Option<usize>>,
    verdict_index: std::collections::HashMap<(String, usize), usize>,
    /// The guest's /etc/services (TCP), read on first need (`Some(None)`:
    /// not available).
    services: Option<Option<Services>>,
    out: Analysis,
}

impl<'a> Engine<'a> {
    pub(crate) fn new(t: &'a Target, src: Option<&'a dyn IncludeSource>, limits: Limits) -> Self {
        Engine {
            t,
            src,
            limits,
            includes: Vec::new(),
            fatal_seen: false,
            bytes_read: 0,
            lines_done: 0,
            stack: Vec::new(),
            num_ports: 0,
            subsystems: Vec::new(),
            num_auth_methods: 0,
            num_authkeys_files: 0,
            akc_set: false,
            apc_set: false,
            version_addendum_set: false,
            current_match: vec![None],
            verdict_index: std::collections::HashMap::new(),
            services: None,
            out: Analysis {
                target: t.clone(),
                messages: Vec::new(),
                verdicts: Vec::new(),
                entries: Vec::new(),
                match_blocks: Vec::new(),
                files: Vec::new(),
                diagnostics: Vec::new(),
                complete: true,
                events: Vec::new(),
            },
        }
    }

    pub(crate) fn finish(self) -> Analysis {
        self.out
    }

    /// `a2port()`: `Some(port)` (-1 when invalid); `None` when the name
    /// would be looked up in an /etc/services that is not available.
    fn a2port(&mut self, s: &[u8]) -> Option<i64> {
        let t = self.t;
        if let Ok(p) = strtonum(s, 0, 65535) {
            return Some(p);
        }
        // getservbyname() fallback since 7.9.
        if t.before(7, 9) {
            return Some(-1);
        }
        if self.services.is_none() {
            let loaded = self
                .src
                .and_then(|src| src.read("/etc/services").ok())
                .map(|d| {
                    let d = &d[..d.len().min(self.limits.max_file_bytes)];
                    parse_services(d)
                });
            self.services = Some(loaded);
        }
        match self.services.as_ref().and_then(|o| o.as_ref()) {
            Some(list) => Some(
                list.iter()
                    .find(|(n, _)| n.as_slice() == s)
                    .map_or(-1, |(_, p)| *p),
            ),
            None => {
                if let Some((_, p)) = SERVICES.iter().find(|(n, _)| n.as_bytes() == s) {
                    return Some(*p);
                }
                // Only a plausible service name could be in the guest's file.
                let plausible = !s.is_empty()
                    && s.len() <= 32
                    && s[0].is_ascii_alphabetic()
                    && s.iter()
                        .all(|b| b.is_ascii_alphanumeric() || *b == b'-' || *b == b'_');
                if plausible {
                    None
                } else {
                    Some(-1)
                }
            }
        }
    }

    fn push_msg(&mut self, level: Level, text: &[u8], file: &str, line: usize) {
        let reached = !self.fatal_seen;
        if level == Level::Fatal {
            self.fatal_seen = true;
        }
        self.out.messages.push(Message {
            level,
            text: render(text, Sink::Stderr),
            file: file.to_owned(),
            line,
            reached,
        });
    }

    fn diag(&mut self, file: &str, line: usize, message: impl Into<String>) {
        self.out.diagnostics.push(FileDiagnostic {
            file: file.to_owned(),
            line,
            message: message.into(),
        });
    }

    fn info(&mut self, c: &LineCtx, text: Vec<u8>) {
        self.push_msg(Level::Info, &text, &c.file, c.physical);
    }

    fn error(&mut self, c: &LineCtx, text: Vec<u8>) {
        self.push_msg(Level::Error, &text, &c.file, c.physical);
    }

    fn fatal(&mut self, c: &LineCtx, text: Vec<u8>) -> Stop {
        self.push_msg(Level::Fatal, &text, &c.file, c.physical);
        Stop
    }

    /// Runs the pass over the main file.
    pub(crate) fn run_main(&mut self, path: &str, data: &[u8]) {
        let mut active = true;
        self.out.files.push(path.to_owned());
        self.stack.push(path.to_owned());
        self.parse_file(path, 0, data, 0, 0, &mut active);
        self.stack.pop();
    }

    /// `parse_server_config_depth()`.
    fn parse_file(
        &mut self,
        path: &str,
        file_idx: usize,
        data: &[u8],
        mut flags: u8,
        depth: usize,
        active: &mut bool,
    ) {
        if depth > MAX_DEPTH {
            self.push_msg(
                Level::Fatal,
                b"Too many recursive configuration includes",
                path,
                0,
            );
            return;
        }
        let buffer = match lex::load(data, self.t) {
            Loaded::Lines(b) => b,
            Loaded::TooLong(n) => {
                let text = cat(&[path.as_bytes(), format!(" line {n} too long").as_bytes()]);
                self.push_msg(Level::Fatal, &text, path, n);
                return;
            }
        };
        let mut bad = 0usize;
        for ll in buffer.lines() {
            if self.lines_done >= self.limits.max_lines {
                self.out.complete = false;
                self.diag(
                    path,
                    ll.physical,
                    "analysis stopped: too many lines processed (include expansion too large)",
                );
                return;
            }
            self.lines_done += 1;
            if !self.process_line(path, file_idx, &ll, active, &mut flags, depth) {
                bad += 1;
            }
        }
        if bad > 0 {
            let text = format!("{path}: terminating, {bad} bad configuration options");
            self.push_msg(Level::Fatal, text.as_bytes(), path, 0);
        }
    }

    /// One line: returns false when sshd counts it as a bad option.
    fn process_line(
        &mut self,
        path: &str,
        file_idx: usize,
        ll: &LogicalLine,
        active: &mut bool,
        flags: &mut u8,
        depth: usize,
    ) -> bool {
        let t = self.t;
        let raw = ll.bytes;
        let len = if t.at_least(7, 5) {
            lex::trailing_stripped_len(raw)
        } else {
            lex::c_len(raw)
        };
        if len == 0 {
            return true;
        }
        let line = &raw[..len];
        let (mut kw_tok, mut pos) = strdelim(line, Some(0), true);
        if kw_tok.as_ref().is_some_and(|k| k.value.is_empty()) {
            (kw_tok, pos) = strdelim(line, pos, true);
        }
        let Some(kw_tok) = kw_tok else {
            return true;
        };
        if kw_tok.value.is_empty() || kw_tok.value[0] == b'#' {
            return true;
        }
        let keyword = kw_tok.value;
        let n = ll.number;
        let fname = path.as_bytes();
        let mut c = LineCtx {
            file: path.to_owned(),
            file_idx,
            number: n,
            physical: ll.physical,
            keyword: keyword.clone(),
            p: cat(&[fname, format!(" line {n}: ").as_bytes()]),
            p200: cat(&[prec(fname, 200), format!(" line {n}: ").as_bytes()]),
            unknown: None,
            entry_args: None,
        };
        let msgs_before = self.out.messages.len();
        let kw = keywords::lookup(&keyword, t);
        let result = self.dispatch(&mut c, kw, line, pos, active, flags, depth);
        let ok = !matches!(result, Ok(false));
        self.record(&c, kw, msgs_before, &result);
        ok
    }

    #[allow(clippy::too_many_arguments)]
    fn dispatch(
        &mut self,
        c: &mut LineCtx,
        kw: Option<&'static Kw>,
        line: &[u8],
        pos: Option<usize>,
        active: &mut bool,
        flags: &mut u8,
        depth: usize,
    ) -> Flow {
        let t = self.t;
        let argv_era = t.at_least(8, 7);
        let rest: Option<&[u8]> = pos.map(|p| line.get(p..).unwrap_or(&[]));
        let mut args = if argv_era {
            if rest.is_none_or(|r| r.is_empty()) {
                let m = cat(&[&c.p, b"no argument after keyword \"", &c.keyword, b"\""]);
                self.error(c, m);
                return Ok(false);
            }
            Args::Argv {
                toks: Vec::new(),
                i: 0,
            }
        } else {
            Args::Delim { s: line, pos }
        };
        if kw.is_none() {
            let m = cat(&[
                fname_colon(&c.file).as_bytes(),
                format!("line {}: Bad configuration option: ", c.number).as_bytes(),
                &c.keyword,
            ]);
            self.error(c, m);
        }
        if argv_era {
            match argv_split(line, pos.unwrap_or(line.len()), true) {
                Ok(sp) => {
                    args = Args::Argv {
                        toks: sp.args.into_iter().map(|t| t.value).collect(),
                        i: 0,
                    };
                }
                Err(()) => {
                    let m = cat(&[&c.p, b"invalid quotes"]);
                    self.error(c, m);
                    return Ok(false);
                }
            }
        }
        let in_match = kw.is_some_and(|k| k.in_match);
        if !*active && !in_match {
            let m = cat(&[
                &c.p,
                b"Directive '",
                &c.keyword,
                b"' is not allowed within a Match block",
            ]);
            return Err(self.fatal(c, m));
        }
        let Some(kw) = kw else {
            return Ok(false);
        };
        let ok = self.handle(c, kw, &mut args, rest, active, flags, depth)?;
        if !ok {
            return Ok(false);
        }
        // Check that there is no garbage at end of line.
        if argv_era {
            if args.remaining() > 0 {
                let m = cat(&[
                    &c.p200,
                    b"keyword ",
                    &c.keyword,
                    b" extra arguments at end of line",
                ]);
                self.error(c, m);
                return Ok(false);
            }
        } else if matches!(
            kw.op,
            Op::AuthorizedKeysFile
                | Op::ForceCommand
                | Op::VersionAddendum
                | Op::Command
                | Op::AuthenticationMethods
        ) {
            // These handlers `return 0` before the garbage check.
        } else {
            let g = args.next();
            if let Some(g) = g.filter(|g| !g.is_empty()) {
                let m = cat(&[&c.p, b"garbage at end of line; \"", prec(&g, 200), b"\"."]);
                return Err(self.fatal(c, m));
            }
        }
        Ok(true)
    }

    /// Records the verdict and, for accepted lines, the entry.
    fn record(&mut self, c: &LineCtx, kw: Option<&'static Kw>, msgs_before: usize, result: &Flow) {
        // Messages of included files belong to their own lines.
        let new_msgs: Vec<&Message> = self.out.messages[msgs_before..]
            .iter()
            .filter(|m| m.file == c.file && m.line == c.physical)
            .collect();
        let worst = new_msgs.iter().map(|m| m.level).max();
        let mut status = match (result, worst) {
            (Err(Stop), _) | (_, Some(Level::Fatal)) => Status::Fatal,
            (Ok(false), _) | (_, Some(Level::Error)) => Status::Error,
            _ => match kw.map(|k| k.op) {
                Some(Op::Deprecated) => Status::Deprecated,
                Some(Op::Unsupported) => Status::Unsupported,
                Some(Op::Ignore) => Status::Ignored,
                _ => Status::Ok,
            },
        };
        if status == Status::Ok && c.unknown.is_some() {
            status = Status::Unknown;
        }
        let messages: Vec<String> = new_msgs.iter().map(|m| m.text.clone()).collect();
        // A file parsed again (cached include) updates its earlier verdict
        // only when the outcome is worse.
        let key = (c.file.clone(), c.physical);
        let existing = self.verdict_index.get(&key).copied();
        if let Some(i) = existing {
            if self.out.verdicts.get(i).is_some_and(|v| status <= v.status) {
                self.push_entry(c, kw, status);
                return;
            }
        }
        let suggestion = if kw.is_none() {
            keywords::suggest_keyword(&c.keyword, self.t).map(str::to_owned)
        } else {
            None
        };
        let verdict = Verdict {
            file: c.file.clone(),
            line: c.number,
            physical_line: c.physical,
            keyword: lossy(&c.keyword),
            canonical: kw.map(|k| k.display.to_owned()),
            status,
            messages,
            suggestion,
            note: c.unknown.clone(),
        };
        match existing.and_then(|i| self.out.verdicts.get_mut(i)) {
            Some(v) => *v = verdict,
            None => {
                self.verdict_index.insert(key, self.out.verdicts.len());
                self.out.verdicts.push(verdict);
            }
        }
        self.push_entry(c, kw, status);
    }

    fn push_entry(&mut self, c: &LineCtx, kw: Option<&'static Kw>, status: Status) {
        if let (Some(kw), Some(args)) = (kw, &c.entry_args) {
            if matches!(
                status,
                Status::Ok
                    | Status::Unknown
                    | Status::Deprecated
                    | Status::Unsupported
                    | Status::Ignored
            ) && !matches!(kw.op, Op::Match | Op::Include)
            {
                let idx = self.out.entries.len();
                self.out.entries.push(Entry {
                    file: c.file.clone(),
                    line: c.physical,
                    keyword: kw.display.to_owned(),
                    setting: kw.setting.to_owned(),
                    args: args.iter().map(|a| lossy(a)).collect(),
                    match_block: self.current_match.last().copied().flatten(),
                });
                self.out.events.push(Event::Directive(idx));
            }
        }
        let _ = c.file_idx;
    }

    #[allow(clippy::too_many_arguments)]
    fn handle(
        &mut self,
        c: &mut LineCtx,
        kw: &'static Kw,
        args: &mut Args,
        rest: Option<&[u8]>,
        active: &mut bool,
        flags: &mut u8,
        depth: usize,
    ) -> Flow {
        let t = self.t;
        let a = t.at_least(8, 7);
        let kwd = c.keyword.clone();
        // "%s line %d: %s missing argument." (8.7+) or an older wording.
        let missing_arg = |c: &LineCtx, old: &[u8]| -> Vec<u8> {
            if a {
                cat(&[&c.p, &kwd, b" missing argument."])
            } else {
                cat(&[&c.p, old])
            }
        };
        match kw.op {
            Op::Flag => {
                let arg = args.next();
                if t.before(7, 7) {
                    if !nonempty(&arg) {
                        return Err(self.fatal(c, cat(&[&c.p, b"missing yes/no argument."])));
                    }
                    let v = arg.unwrap_or_default();
                    if v != b"yes" && v != b"no" {
                        return Err(self.fatal(c, cat(&[&c.p, b"Bad yes/no argument: ", &v])));
                    }
                    c.entry_args = Some(vec![v]);
                    return Ok(true);
                }
                self.multistate(c, arg, MS_FLAG)
            }
            Op::Multi(table) => {
                let arg = args.next();
                self.multistate(c, arg, table)
            }
            Op::Port => {
                if self.num_ports >= 256 {
                    return Err(self.fatal(c, cat(&[&c.p, b"too many ports."])));
                }
                let arg = args.next();
                if !nonempty(&arg) {
                    return Err(self.fatal(c, cat(&[&c.p, b"missing port number."])));
                }
                let v = arg.unwrap_or_default();
                self.num_ports += 1;
                match self.a2port(&v) {
                    Some(p) if p <= 0 => {
                        return Err(self.fatal(c, cat(&[&c.p, b"Badly formatted port number."])));
                    }
                    None => {
                        c.unknown = Some(format!(
                            "port {:?} is a service name looked up in the guest's /etc/services",
                            lossy(&v)
                        ));
                    }
                    Some(_) => {}
                }
                c.entry_args = Some(vec![v]);
                Ok(true)
            }
            Op::Time => {
                let arg = args.next();
                self.parse_time(c, arg)
            }
            Op::ListenAddress => self.listen_address(c, args),
            Op::HostKey | Op::HostCertificate | Op::Filename => {
                let arg = args.next();
                if !nonempty(&arg) {
                    return Err(self.fatal(c, cat(&[&c.p, b"missing file name."])));
                }
                c.entry_args = Some(vec![arg.unwrap_or_default()]);
                Ok(true)
            }
            Op::HostKeyAgent => {
                let arg = args.next();
                if !nonempty(&arg) {
                    return Err(self.fatal(c, cat(&[&c.p, b"missing socket name."])));
                }
                c.entry_args = Some(vec![arg.unwrap_or_default()]);
                Ok(true)
            }
            Op::KeyTypes | Op::CaKeyTypes => {
                let arg = args.next();
                if !nonempty(&arg) {
                    return Err(self.fatal(c, cat(&[&c.p, b"Missing argument."])));
                }
                let v = arg.unwrap_or_default();
                let list = self.strip_list_prefix(&v);
                if let Some(list) = list {
                    if !algos::key_names_valid(t, list, kw.op == Op::CaKeyTypes) {
                        return Err(self.fatal(c, cat(&[&c.p, b"Bad key types '", &v, b"'."])));
                    }
                }
                c.entry_args = Some(vec![v]);
                Ok(true)
            }
            Op::PubkeyAuthOptions => {
                let mut vals = Vec::new();
                loop {
                    let arg = args.next();
                    let Some(v) = arg else { break };
                    if !a && v.is_empty() {
                        break;
                    }
                    let ok = strcasecmp_eq(&v, "none")
                        || strcasecmp_eq(&v, "touch-required")
                        || (t.at_least(8, 4) && strcasecmp_eq(&v, "verify-required"));
                    if !ok {
                        if a {
                            self.error(c, cat(&[&c.p, b"unsupported ", &kwd, b" option ", &v]));
                            return Ok(false);
                        }
                        return Err(self.fatal(
                            c,
                            cat(&[&c.p, b"unsupported PubkeyAuthOptions option ", &v]),
                        ));
                    }
                    vals.push(v);
                }
                c.entry_args = Some(vals);
                Ok(true)
            }
            Op::Int => {
                let arg = args.next();
                if t.before(7, 7) {
                    if !nonempty(&arg) {
                        return Err(self.fatal(c, cat(&[&c.p, b"missing integer value."])));
                    }
                } else if let Err(e) = atoi_err(arg.as_deref()) {
                    let m = if a {
                        cat(&[&c.p, &kwd, b" integer value ", e.as_bytes(), b"."])
                    } else {
                        cat(&[&c.p, b"integer value ", e.as_bytes(), b"."])
                    };
                    return Err(self.fatal(c, m));
                }
                c.entry_args = Some(vec![arg.unwrap_or_default()]);
                Ok(true)
            }
            Op::PermitUserEnv => {
                let arg = args.next();
                if !nonempty(&arg) {
                    return Err(self.fatal(c, missing_arg(c, b"missing argument.")));
                }
                c.entry_args = Some(vec![arg.unwrap_or_default()]);
                Ok(true)
            }
            Op::RekeyLimit => self.rekey_limit(c, args),
            Op::LogFacility => {
                let arg = args.next();
                if !log_facility_valid(arg.as_deref()) {
                    let shown = arg.clone().unwrap_or_else(|| b"<NONE>".to_vec());
                    return Err(self.fatal(
                        c,
                        cat(&[&c.p200, b"unsupported log facility '", &shown, b"'"]),
                    ));
                }
                c.entry_args = Some(vec![arg.unwrap_or_default()]);
                Ok(true)
            }
            Op::LogLevel => {
                let arg = args.next();
                if !log_level_valid(arg.as_deref()) {
                    let shown = arg.clone().unwrap_or_else(|| b"<NONE>".to_vec());
                    return Err(
                        self.fatal(c, cat(&[&c.p200, b"unsupported log level '", &shown, b"'"]))
                    );
                }
                c.entry_args = Some(vec![arg.unwrap_or_default()]);
                Ok(true)
            }
            Op::LogVerbose | Op::ChannelTimeout => self.none_alone_list(c, kw, args),
            Op::AllowDenyUsers => {
                let mut vals = Vec::new();
                while let Some(v) = args.next() {
                    if !a && v.is_empty() {
                        break;
                    }
                    if (a && v.is_empty()) || !user_pattern_valid(&v) {
                        let m = if a {
                            cat(&[&c.p, b"invalid ", &kwd, b" pattern: \"", &v, b"\""])
                        } else {
                            let name: &[u8] = if kw.name == "allowusers" {
                                b"AllowUsers"
                            } else {
                                b"DenyUsers"
                            };
                            cat(&[
                                &c.p,
                                b"invalid ",
                                name,
                                b" pattern: \"",
                                prec(&v, 100),
                                b"\"",
                            ])
                        };
                        return Err(self.fatal(c, m));
                    }
                    vals.push(v);
                }
                if vals.is_empty() && t.at_least(9, 9) {
                    return Err(self.fatal(c, cat(&[&c.p, b"no ", &kwd, b" specified"])));
                }
                c.entry_args = Some(vals);
                Ok(true)
            }
            Op::AllowDenyGroups => {
                let mut vals = Vec::new();
                while let Some(v) = args.next() {
                    if !a && v.is_empty() {
                        break;
                    }
                    if a && v.is_empty() {
                        return Err(self.fatal(c, cat(&[&c.p, b"empty ", &kwd, b" pattern"])));
                    }
                    vals.push(v);
                }
                if vals.is_empty() && t.at_least(9, 9) {
                    return Err(self.fatal(c, cat(&[&c.p, b"no ", &kwd, b" specified"])));
                }
                c.entry_args = Some(vals);
                Ok(true)
            }
            Op::Ciphers | Op::Macs | Op::KexAlgorithms => {
                let arg = args.next();
                if !nonempty(&arg) {
                    return Err(self.fatal(c, missing_arg(c, b"Missing argument.")));
                }
                let v = arg.unwrap_or_default();
                if let Some(list) = self.strip_list_prefix(&v) {
                    let bad: Option<&[u8]> = match kw.op {
                        Op::Ciphers => {
                            (!algos::ciphers_valid(t, list)).then_some(b"Bad SSH2 cipher spec '")
                        }
                        Op::Macs => (!algos::mac_valid(t, list)).then_some(b"Bad SSH2 mac spec '"),
                        _ => match algos::kex_names_valid(t, list) {
                            Ok(()) => None,
                            Err(name) => {
                                if let Some(name) = name {
                                    self.error(
                                        c,
                                        cat(&[
                                            b"Unsupported KEX algorithm \"",
                                            prec(&name, 100),
                                            b"\"",
                                        ]),
                                    );
                                }
                                Some(b"Bad SSH2 KexAlgorithms '")
                            }
                        },
                    };
                    if let Some(bad) = bad {
                        return Err(self.fatal(c, cat(&[&c.p, bad, &v, b"'."])));
                    }
                }
                c.entry_args = Some(vec![v]);
                Ok(true)
            }
            Op::GssKexAlgorithms => {
                let arg = args.next();
                if !nonempty(&arg) {
                    return Err(self.fatal(c, cat(&[&c.p200, b"Missing argument."])));
                }
                let v = arg.unwrap_or_default();
                if let Err(name) = algos::gss_kex_names_valid(&v) {
                    if let Some(name) = name {
                        self.error(
                            c,
                            cat(&[b"Unsupported KEX algorithm \"", prec(&name, 100), b"\""]),
                        );
                    }
                    return Err(
                        self.fatal(c, cat(&[&c.p200, b"Bad GSSAPI KexAlgorithms '", &v, b"'."]))
                    );
                }
                c.entry_args = Some(vec![v]);
                Ok(true)
            }
            Op::Subsystem => self.subsystem(c, args, *active),
            Op::MaxStartups => {
                let arg = args.next();
                if !nonempty(&arg) {
                    return Err(self.fatal(c, missing_arg(c, b"Missing MaxStartups spec.")));
                }
                let v = arg.unwrap_or_default();
                let n = scan_ints(&v, 3);
                let invalid = match n.len() {
                    3 => n[0] > n[2] || n[1] > 100 || n[1] < 1,
                    1 => false,
                    _ => true,
                };
                let (begin, max) = match n.len() {
                    3 => (n[0], n[2]),
                    1 => (n[0], n[0]),
                    _ => (1, 1),
                };
                let invalid = invalid || (t.at_least(9, 2) && (max <= 0 || begin <= 0));
                if invalid {
                    let m = if a {
                        cat(&[&c.p, b"Invalid ", &kwd, b" spec."])
                    } else {
                        cat(&[&c.p, b"Illegal MaxStartups spec."])
                    };
                    return Err(self.fatal(c, m));
                }
                c.entry_args = Some(vec![v]);
                Ok(true)
            }
            Op::PerSourceNetBlockSize => {
                let arg = args.next();
                if !nonempty(&arg) {
                    return Err(self.fatal(c, missing_arg(c, b"missing argument.")));
                }
                let v = arg.unwrap_or_default();
                let n = scan_ints(&v, 2);
                let ok = match n.len() {
                    2 => (0..=128).contains(&n[1]) && (0..=32).contains(&n[0]),
                    1 => (0..=32).contains(&n[0]),
                    _ => false,
                };
                if !ok {
                    return Err(self.fatal(c, cat(&[&c.p, b"Invalid ", &kwd, b" spec."])));
                }
                c.entry_args = Some(vec![v]);
                Ok(true)
            }
            Op::PerSourceMaxStartups => {
                let arg = args.next();
                if !nonempty(&arg) {
                    return Err(self.fatal(c, missing_arg(c, b"missing argument.")));
                }
                let v = arg.unwrap_or_default();
                if v != b"none" {
                    if let Err(e) = atoi_err(Some(&v)) {
                        return Err(self.fatal(
                            c,
                            cat(&[&c.p, &kwd, b" integer value ", e.as_bytes(), b"."]),
                        ));
                    }
                }
                c.entry_args = Some(vec![v]);
                Ok(true)
            }
            Op::PerSourcePenalties => self.per_source_penalties(c, args),
            Op::PerSourcePenaltyExemptList => {
                let arg = args.next();
                if !nonempty(&arg) {
                    return Err(self.fatal(c, cat(&[&c.p, b"missing argument."])));
                }
                let v = arg.unwrap_or_default();
                if addr_match_list(None, &v) != 0 {
                    return Err(self.fatal(
                        c,
                        cat(&[&c.p, b"keyword ", &kwd, b" invalid address argument."]),
                    ));
                }
                c.entry_args = Some(vec![v]);
                Ok(true)
            }
            Op::AuthorizedKeysFile => {
                if !a {
                    let mut vals = Vec::new();
                    if *active && self.num_authkeys_files == 0 {
                        while let Some(v) = args.next() {
                            if v.is_empty() {
                                break;
                            }
                            vals.push(v);
                        }
                        self.num_authkeys_files += vals.len();
                    } else {
                        // Not processed at all; the values still count for
                        // the connection replay.
                        let mut probe = Args::Delim {
                            s: args_source(args),
                            pos: args_pos(args),
                        };
                        while let Some(v) = probe.next() {
                            if v.is_empty() {
                                break;
                            }
                            vals.push(v);
                        }
                    }
                    c.entry_args = Some(vals);
                    return Ok(true);
                }
                let mut vals = Vec::new();
                while let Some(v) = args.next() {
                    if v.is_empty() {
                        self.error(c, cat(&[&c.p, b"keyword ", &kwd, b" empty argument"]));
                        return Ok(false);
                    }
                    vals.push(v);
                }
                if vals.is_empty() && t.at_least(9, 9) {
                    return Err(self.fatal(c, cat(&[&c.p, b"no ", &kwd, b" specified"])));
                }
                if *active && self.num_authkeys_files == 0 {
                    self.num_authkeys_files += vals.len();
                }
                c.entry_args = Some(vals);
                Ok(true)
            }
            Op::AuthorizedPrincipalsFile | Op::ChrootDirectory | Op::SecurityKeyProvider => {
                let arg = args.next();
                if !nonempty(&arg) {
                    return Err(self.fatal(c, missing_arg(c, b"missing file name.")));
                }
                c.entry_args = Some(vec![arg.unwrap_or_default()]);
                Ok(true)
            }
            Op::AcceptEnv | Op::SetEnv => {
                let setenv = kw.op == Op::SetEnv;
                let mut vals = Vec::new();
                loop {
                    let v = if setenv && !a {
                        args.next_with(false)
                    } else {
                        args.next()
                    };
                    let Some(v) = v else { break };
                    if !a && v.is_empty() {
                        break;
                    }
                    let has_eq = v.contains(&b'=');
                    let bad = (a && v.is_empty()) || (setenv != has_eq);
                    if bad {
                        let m: &[u8] = if setenv {
                            b"Invalid environment."
                        } else {
                            b"Invalid environment name."
                        };
                        return Err(self.fatal(c, cat(&[&c.p, m])));
                    }
                    vals.push(v);
                }
                if vals.is_empty() && t.at_least(9, 9) {
                    return Err(self.fatal(c, cat(&[&c.p, b"no ", &kwd, b" specified"])));
                }
                c.entry_args = Some(vals);
                Ok(true)
            }
            Op::PermitTunnel => {
                let arg = args.next();
                if !nonempty(&arg) {
                    return Err(self.fatal(
                        c,
                        missing_arg(c, b"Missing yes/point-to-point/ethernet/no argument."),
                    ));
                }
                let v = arg.unwrap_or_default();
                if !TUN_MODES.iter().any(|m| m.as_bytes() == v.as_slice()) {
                    let m = if a {
                        cat(&[&c.p, b"bad ", &kwd, b" argument ", &v])
                    } else {
                        cat(&[&c.p, b"Bad yes/point-to-point/ethernet/no argument: ", &v])
                    };
                    return Err(self.fatal(c, m));
                }
                c.entry_args = Some(vec![v]);
                Ok(true)
            }
            Op::Include => self.include(c, args, active, flags, depth),
            Op::Match => self.match_line(c, args, rest, active, flags),
            Op::PermitOpen | Op::PermitListen => self.permit_open(c, kw, args),
            Op::ForceCommand => {
                let r = if a { rest } else { args.cp() };
                let Some(r) = r.filter(|r| !r.is_empty()) else {
                    let m = if a {
                        cat(&[&c.p, &kwd, b" missing argument."])
                    } else {
                        cat(&[&c.p200, b"Missing argument."])
                    };
                    return Err(self.fatal(c, m));
                };
                let skip = r.iter().take_while(|&&b| is_ws(b)).count();
                c.entry_args = Some(vec![r[skip..].to_vec()]);
                args.consume();
                Ok(true)
            }
            Op::IpQos => {
                let first = args.next();
                if a && !nonempty(&first) {
                    return Err(self.fatal(c, cat(&[&c.p, &kwd, b" missing argument."])));
                }
                let name: Vec<u8> = if a { kwd.clone() } else { b"IPQoS".to_vec() };
                if !ipqos_valid(first.as_deref()) {
                    let shown = first.clone().unwrap_or_else(|| b"(null)".to_vec());
                    return Err(self.fatal(c, cat(&[&c.p, b"Bad ", &name, b" value: ", &shown])));
                }
                let second = args.next();
                if let Some(s) = &second {
                    if !ipqos_valid(Some(s)) {
                        return Err(self.fatal(c, cat(&[&c.p, b"Bad ", &name, b" value: ", s])));
                    }
                }
                let mut v = vec![first.unwrap_or_default()];
                v.extend(second);
                c.entry_args = Some(v);
                Ok(true)
            }
            Op::VersionAddendum => {
                let r = if a { rest } else { args.cp() };
                let Some(r) = r.filter(|r| !r.is_empty()) else {
                    let m = if a {
                        cat(&[&c.p, &kwd, b" missing argument."])
                    } else {
                        cat(&[&c.p200, b"Missing argument."])
                    };
                    return Err(self.fatal(c, m));
                };
                let skip = r.iter().take_while(|&&b| is_ws(b)).count();
                let mut value = r[skip..].to_vec();
                if a {
                    if value.contains(&b'\r') {
                        return Err(self.fatal(c, cat(&[&c.p200, b"Invalid ", &kwd, b" argument"])));
                    }
                    if let Some(h) = value.iter().position(|&b| b == b'#') {
                        value.truncate(h);
                        while value.last().is_some_and(|&b| is_ws(b)) {
                            value.pop();
                        }
                    }
                } else if *active
                    && !self.version_addendum_set
                    && !strcasecmp_eq(&value, "none")
                    && value.contains(&b'\r')
                {
                    return Err(self.fatal(c, cat(&[&c.p200, b"Invalid argument"])));
                }
                if *active {
                    self.version_addendum_set = true;
                }
                c.entry_args = Some(vec![value]);
                args.consume();
                Ok(true)
            }
            Op::Command => {
                let principals = kw.name == "authorizedprincipalscommand";
                let r = if a { rest } else { args.cp() };
                let Some(r) = r else {
                    return Err(self.fatal(c, cat(&[&c.p200, b"Missing argument."])));
                };
                let skip = r.iter().take_while(|&&b| is_ws(b)).count();
                let value = r[skip..].to_vec();
                let absolute = value.first() == Some(&b'/') || strcasecmp_eq(&value, "none");
                let already = if principals {
                    self.apc_set
                } else {
                    self.akc_set
                };
                let check = a || (*active && !already);
                if check && !absolute {
                    let m = if a {
                        cat(&[&c.p200, &kwd, b" must be an absolute path"])
                    } else if principals {
                        cat(&[
                            &c.p200,
                            b"AuthorizedPrincipalsCommand must be an absolute path",
                        ])
                    } else {
                        cat(&[&c.p200, b"AuthorizedKeysCommand must be an absolute path"])
                    };
                    return Err(self.fatal(c, m));
                }
                if *active {
                    if principals {
                        self.apc_set = true;
                    } else {
                        self.akc_set = true;
                    }
                }
                c.entry_args = Some(vec![value]);
                args.consume();
                Ok(true)
            }
            Op::LocalUser => {
                let arg = args.next();
                if !nonempty(&arg) {
                    let m = if a {
                        cat(&[&c.p, b"missing ", &kwd, b" argument."])
                    } else if kw.name == "authorizedprincipalscommanduser" {
                        cat(&[&c.p, b"missing AuthorizedPrincipalsCommandUser argument."])
                    } else {
                        cat(&[&c.p, b"missing AuthorizedKeysCommandUser argument."])
                    };
                    return Err(self.fatal(c, m));
                }
                c.entry_args = Some(vec![arg.unwrap_or_default()]);
                Ok(true)
            }
            Op::AuthenticationMethods => self.auth_methods(c, args, *active),
            Op::StreamLocalBindMask => {
                let arg = args.next();
                if !nonempty(&arg) {
                    return Err(
                        self.fatal(c, missing_arg(c, b"missing StreamLocalBindMask argument."))
                    );
                }
                let v = arg.unwrap_or_default();
                let (val, used) = strtol_prefix(&v, 8);
                if used == 0 || !(0..=0o777).contains(&val) {
                    let m = if a {
                        cat(&[&c.p, b"Invalid ", &kwd, b"."])
                    } else {
                        cat(&[&c.p, b"Bad mask."])
                    };
                    return Err(self.fatal(c, m));
                }
                c.entry_args = Some(vec![v]);
                Ok(true)
            }
            Op::FingerprintHash => {
                let arg = args.next();
                if !nonempty(&arg) {
                    return Err(self.fatal(
                        c,
                        if a {
                            cat(&[&c.p, &kwd, b" missing argument."])
                        } else {
                            cat(&[&c.p200, b"Missing argument."])
                        },
                    ));
                }
                let v = arg.unwrap_or_default();
                if !["md5", "sha1", "sha256", "sha384", "sha512"]
                    .iter()
                    .any(|h| strcasecmp_eq(&v, h))
                {
                    let m = if a {
                        cat(&[&c.p200, b"Invalid ", &kwd, b" algorithm \"", &v, b"\"."])
                    } else {
                        cat(&[&c.p200, b"Invalid hash algorithm \"", &v, b"\"."])
                    };
                    return Err(self.fatal(c, m));
                }
                c.entry_args = Some(vec![v]);
                Ok(true)
            }
            Op::RDomain => {
                if t.at_least(8, 3) {
                    return Err(self.fatal(
                        c,
                        cat(&[&c.p, b"setting RDomain not supported on this platform."]),
                    ));
                }
                let arg = args.next();
                if !nonempty(&arg) {
                    return Err(self.fatal(c, cat(&[&c.p200, b"Missing argument."])));
                }
                let v = arg.unwrap_or_default();
                if !strcasecmp_eq(&v, "none") && v != b"%D" {
                    c.unknown = Some(rdomain_note(&v));
                }
                c.entry_args = Some(vec![v]);
                Ok(true)
            }
            Op::UnusedConnectionTimeout => {
                if args.peek().is_some_and(|p| strcasecmp_eq(p, "none")) {
                    args.next();
                    c.entry_args = Some(vec![b"none".to_vec()]);
                    return Ok(true);
                }
                let arg = args.next();
                self.parse_time(c, arg)
            }
            Op::PamServiceName => {
                let arg = args.next();
                if !nonempty(&arg) {
                    return Err(self.fatal(c, cat(&[&c.p, b"missing argument."])));
                }
                c.entry_args = Some(vec![arg.unwrap_or_default()]);
                Ok(true)
            }
            Op::Deprecated | Op::Unsupported | Op::Ignore => {
                if kw.op != Op::Ignore {
                    let what: &[u8] = if kw.op == Op::Unsupported {
                        b"Unsupported"
                    } else {
                        b"Deprecated"
                    };
                    self.info(c, cat(&[&c.p, what, b" option ", &kwd]));
                }
                let mut vals = Vec::new();
                while let Some(v) = args.next() {
                    vals.push(v);
                }
                c.entry_args = Some(vals);
                Ok(true)
            }
        }
    }

    /// `parse_multistate`.
    fn multistate(&mut self, c: &mut LineCtx, arg: Option<Vec<u8>>, table: &[&str]) -> Flow {
        if !nonempty(&arg) {
            return Err(self.fatal(c, cat(&[&c.p, b"missing argument."])));
        }
        let v = arg.unwrap_or_default();
        if !table.iter().any(|k| strcasecmp_eq(&v, k)) {
            return Err(self.fatal(c, cat(&[&c.p, b"unsupported option \"", &v, b"\"."])));
        }
        c.entry_args = Some(vec![v]);
        Ok(true)
    }

    /// `parse_time`.
    fn parse_time(&mut self, c: &mut LineCtx, arg: Option<Vec<u8>>) -> Flow {
        if !nonempty(&arg) {
            return Err(self.fatal(c, cat(&[&c.p, b"missing time value."])));
        }
        let v = arg.unwrap_or_default();
        if convtime(self.t, &v).is_none() {
            return Err(self.fatal(c, cat(&[&c.p, b"invalid time value."])));
        }
        let mut prev = c.entry_args.take().unwrap_or_default();
        prev.push(v);
        c.entry_args = Some(prev);
        Ok(true)
    }

    /// The list prefix rules for algorithm lists: `Some(list to validate)`,
    /// or `None` when sshd skips validation (a `-` removal list).
    fn strip_list_prefix<'v>(&self, v: &'v [u8]) -> Option<&'v [u8]> {
        let t = self.t;
        match v.first() {
            Some(b'-') if t.at_least(7, 5) => None,
            Some(b'+') => Some(&v[1..]),
            Some(b'^') if t.at_least(8, 1) => Some(&v[1..]),
            _ => Some(v),
        }
    }

    fn listen_address(&mut self, c: &mut LineCtx, args: &mut Args) -> Flow {
        let t = self.t;
        let arg = args.next();
        if !nonempty(&arg) {
            return Err(self.fatal(c, cat(&[&c.p, b"missing address"])));
        }
        let v = arg.unwrap_or_default();
        let colons = v.iter().filter(|&&b| b == b':').count();
        let host: Vec<u8>;
        if !v.contains(&b'[') && colons >= 2 {
            host = v.clone();
        } else {
            let Ok((h, port)) = hpdelim(t, &v) else {
                return Err(self.fatal(c, cat(&[&c.p, b"bad address:port usage"])));
            };
            host = cleanhostname(&h);
            if let Some(p) = port {
                match self.a2port(&p) {
                    Some(p) if p <= 0 => {
                        return Err(self.fatal(c, cat(&[&c.p, b"bad port number"])))
                    }
                    None => {
                        c.unknown = Some(format!(
                            "port {:?} is a service name looked up in the guest's /etc/services",
                            lossy(&p)
                        ))
                    }
                    Some(_) => {}
                }
            }
        }
        let mut vals = vec![v];
        if t.at_least(7, 7) {
            // The strdelim era returns an empty (non-NULL) token after a
            // quoted address, which sshd then rejects here too.
            if let Some(r) = args.next() {
                let rd = args.next();
                let Some(rd) = rd.filter(|_| r == b"rdomain") else {
                    return Err(self.fatal(c, cat(&[&c.p, b"bad ListenAddress syntax"])));
                };
                // Linux builds check the name with SO_BINDTODEVICE on the
                // running machine ("bad routing domain" when it fails).
                c.unknown = Some(rdomain_note(&rd));
            }
        }
        if parse_addr(&host).is_none() && c.unknown.is_none() {
            c.unknown = Some(format!(
                "listen address {:?} is resolved with getaddrinfo() when sshd starts; it cannot be checked offline",
                lossy(&host)
            ));
        }
        vals.truncate(1);
        c.entry_args = Some(vals);
        Ok(true)
    }

    fn rekey_limit(&mut self, c: &mut LineCtx, args: &mut Args) -> Flow {
        let t = self.t;
        let a = t.at_least(8, 7);
        let kwd = c.keyword.clone();
        let arg = args.next();
        if !nonempty(&arg) {
            let m = if a {
                cat(&[&c.p, &kwd, b" missing argument."])
            } else {
                cat(&[&c.p200, b"Missing argument."])
            };
            return Err(self.fatal(c, m));
        }
        let v = arg.unwrap_or_default();
        if v != b"default" {
            match scan_scaled(&v) {
                Err(e) => {
                    let m = if a {
                        cat(&[
                            &c.p200,
                            b"Bad ",
                            &kwd,
                            b" number '",
                            &v,
                            b"': ",
                            e.as_bytes(),
                        ])
                    } else {
                        cat(&[&c.p200, b"Bad number '", &v, b"': ", e.as_bytes()])
                    };
                    return Err(self.fatal(c, m));
                }
                Ok(val) if val != 0 && val < 16 => {
                    let m = if a {
                        cat(&[&c.p200, &kwd, b" too small"])
                    } else {
                        cat(&[&c.p200, b"RekeyLimit too small"])
                    };
                    return Err(self.fatal(c, m));
                }
                Ok(_) => {}
            }
        }
        c.entry_args = Some(vec![v]);
        if a {
            if args.remaining() != 0 {
                if args.peek() == Some(b"none") {
                    args.next();
                    if let Some(e) = c.entry_args.as_mut() {
                        e.push(b"none".to_vec());
                    }
                    return Ok(true);
                }
                let arg = args.next();
                return self.parse_time(c, arg);
            }
        } else if let Some(cp) = args.cp() {
            if cp == b"none" {
                args.next();
                return Ok(true);
            }
            let arg = args.next();
            return self.parse_time(c, arg);
        }
        Ok(true)
    }

    /// LogVerbose and ChannelTimeout: lists where "none" must stand alone.
    fn none_alone_list(&mut self, c: &mut LineCtx, kw: &Kw, args: &mut Args) -> Flow {
        let t = self.t;
        let a = t.at_least(8, 7);
        let kwd = c.keyword.clone();
        let mut vals: Vec<Vec<u8>> = Vec::new();
        while let Some(v) = args.next() {
            if !a && v.is_empty() {
                break;
            }
            if !a {
                vals.push(v);
                continue;
            }
            if kw.op == Op::LogVerbose && v.is_empty() {
                self.error(c, cat(&[&c.p, b"keyword ", &kwd, b" empty argument"]));
                return Ok(false);
            }
            if strcasecmp_eq(&v, "none") {
                if !vals.is_empty() || args.remaining() > 0 {
                    self.error(
                        c,
                        cat(&[
                            &c.p,
                            b"keyword ",
                            &kwd,
                            b" \"none\" argument must appear alone.",
                        ]),
                    );
                    return Ok(false);
                }
            } else if kw.op == Op::ChannelTimeout && !channel_timeout_valid(t, &v) {
                return Err(self.fatal(c, cat(&[&c.p, b"invalid channel timeout ", &v])));
            }
            vals.push(v);
        }
        if vals.is_empty() && t.at_least(9, 9) {
            return Err(self.fatal(c, cat(&[&c.p, b"no ", &kwd, b" specified"])));
        }
        c.entry_args = Some(vals);
        Ok(true)
    }

    fn subsystem(&mut self, c: &mut LineCtx, args: &mut Args, active: bool) -> Flow {
        let t = self.t;
        let a = t.at_least(8, 7);
        let kwd = c.keyword.clone();
        if t.before(9, 5) && self.subsystems.len() >= 256 {
            return Err(self.fatal(c, cat(&[&c.p, b"too many subsystems defined."])));
        }
        let arg = args.next();
        if !nonempty(&arg) {
            let m = if a {
                cat(&[&c.p, &kwd, b" missing argument."])
            } else {
                cat(&[&c.p, b"Missing subsystem name."])
            };
            return Err(self.fatal(c, m));
        }
        let name = arg.unwrap_or_default();
        // The whole line counts for the connection replay.
        let mut all = vec![name.clone()];
        let mut probe_rest: Vec<Vec<u8>> = Vec::new();
        if !active {
            if t.at_least(9, 5) {
                collect_rest(args, &mut probe_rest, a);
                all.extend(probe_rest);
            } else {
                if let Some(cmd) = args.next() {
                    all.push(cmd);
                }
            }
            c.entry_args = Some(all);
            return Ok(true);
        }
        if self.subsystems.contains(&name) {
            if t.at_least(9, 5) {
                args.consume();
                c.entry_args = Some(all);
                return Ok(true);
            }
            return Err(self.fatal(
                c,
                cat(&[&c.p, b"Subsystem '", &name, b"' already defined."]),
            ));
        }
        self.subsystems.push(name);
        let cmd = args.next();
        if !nonempty(&cmd) {
            return Err(self.fatal(c, cat(&[&c.p, b"Missing subsystem command."])));
        }
        all.push(cmd.unwrap_or_default());
        collect_rest(args, &mut probe_rest, a);
        all.extend(probe_rest);
        c.entry_args = Some(all);
        Ok(true)
    }

    fn per_source_penalties(&mut self, c: &mut LineCtx, args: &mut Args) -> Flow {
        let kwd = c.keyword.clone();
        let mut vals = Vec::new();
        while let Some(v) = args.next() {
            if strcasecmp_eq(&v, "no") || strcasecmp_eq(&v, "yes") {
                if args.remaining() > 0 {
                    return Err(self.fatal(
                        c,
                        cat(&[
                            &c.p,
                            b"keyword ",
                            &kwd,
                            b" \"",
                            &v,
                            b"\" argument must appear alone.",
                        ]),
                    ));
                }
                vals.push(v);
                continue;
            }
            let timed = [
                "crash:",
                "authfail:",
                "noauth:",
                "grace-exceeded:",
                "refuseconnection:",
                "max:",
                "min:",
            ];
            if let Some(prefix) = timed.iter().find(|p| v.starts_with(p.as_bytes())) {
                if !self.t.at_least(10, 0)
                    && *prefix == "refuseconnection:"
                    && !self.t.at_least(9, 9)
                {
                    return Err(
                        self.fatal(c, cat(&[&c.p, b"unsupported ", &kwd, b" keyword ", &v]))
                    );
                }
                if convtime(self.t, &v[prefix.len()..]).is_none() {
                    return Err(self.fatal(c, cat(&[&c.p, b"invalid ", &kwd, b" time value."])));
                }
            } else if v.starts_with(b"max-sources4:") || v.starts_with(b"max-sources6:") {
                if let Err(e) = atoi_err(Some(&v[13..])) {
                    return Err(self.fatal(c, cat(&[&c.p, &kwd, b" value ", e.as_bytes(), b"."])));
                }
            } else if !matches!(
                v.as_slice(),
                b"overflow:deny-all"
                    | b"overflow:permissive"
                    | b"overflow6:deny-all"
                    | b"overflow6:permissive"
            ) {
                return Err(self.fatal(c, cat(&[&c.p, b"unsupported ", &kwd, b" keyword ", &v])));
            }
            vals.push(v);
        }
        if vals.is_empty() {
            return Err(self.fatal(c, cat(&[&c.p, b"no ", &kwd, b" specified"])));
        }
        c.entry_args = Some(vals);
        Ok(true)
    }

    fn permit_open(&mut self, c: &mut LineCtx, kw: &Kw, args: &mut Args) -> Flow {
        let t = self.t;
        let a = t.at_least(8, 7);
        let kwd = c.keyword.clone();
        let listen = kw.op == Op::PermitListen;
        // lookup_opcode_name() gives the lowercase table name (8.0-8.6).
        let opname: &[u8] = if listen {
            b"permitlisten"
        } else {
            b"permitopen"
        };
        let missing = |c: &LineCtx| -> Vec<u8> {
            if a {
                cat(&[&c.p, &kwd, b" missing argument."])
            } else if t.at_least(8, 0) {
                cat(&[&c.p, b"missing ", opname, b" specification"])
            } else {
                cat(&[&c.p, b"missing PermitOpen specification"])
            }
        };
        let nohost = |c: &LineCtx| -> Vec<u8> {
            if a {
                cat(&[&c.p, &kwd, b" missing host"])
            } else if t.at_least(8, 0) {
                cat(&[&c.p, b"missing host in ", opname])
            } else {
                cat(&[&c.p, b"missing host in PermitOpen"])
            }
        };
        let badport = |c: &LineCtx| -> Vec<u8> {
            if a {
                cat(&[&c.p, &kwd, b" bad port number"])
            } else if t.at_least(8, 0) {
                cat(&[&c.p, b"bad port number in ", opname])
            } else {
                cat(&[&c.p, b"bad port number in PermitOpen"])
            }
        };
        let mut vals: Vec<Vec<u8>> = Vec::new();
        let new_style = t.at_least(9, 9);
        let mut first = true;
        loop {
            let arg = args.next();
            if first && !new_style && !nonempty(&arg) {
                return Err(self.fatal(c, missing(c)));
            }
            let Some(v) = arg else { break };
            if v.is_empty() && !new_style {
                break;
            }
            if v == b"any" || v == b"none" {
                if new_style {
                    if !vals.is_empty() {
                        return Err(self.fatal(
                            c,
                            cat(&[&c.p, &v, b" must appear alone on a ", &kwd, b" line."]),
                        ));
                    }
                    vals.push(v);
                    first = false;
                    continue;
                }
                if first {
                    vals.push(v);
                    break;
                }
            }
            first = false;
            let port: Option<Vec<u8>>;
            if listen && !v.contains(&b':') {
                port = Some(v.clone());
            } else {
                match hpdelim(t, &v) {
                    Ok((_, p)) => port = p,
                    Err(()) => return Err(self.fatal(c, nohost(c))),
                }
            }
            let ok = match &port {
                None => false,
                Some(p) if p.as_slice() == b"*" => true,
                Some(p) => match self.a2port(p) {
                    Some(n) => n > 0,
                    None => {
                        c.unknown = Some(format!(
                            "port {:?} is a service name looked up in the guest's /etc/services",
                            lossy(p)
                        ));
                        true
                    }
                },
            };
            if !ok {
                return Err(self.fatal(c, badport(c)));
            }
            vals.push(v);
        }
        if vals.is_empty() {
            return Err(self.fatal(c, missing(c)));
        }
        c.entry_args = Some(vals);
        Ok(true)
    }

    fn auth_methods(&mut self, c: &mut LineCtx, args: &mut Args, active: bool) -> Flow {
        let t = self.t;
        let a = t.at_least(8, 7);
        let kwd = c.keyword.clone();
        let name: Vec<u8> = if a {
            kwd.clone()
        } else {
            b"AuthenticationMethods".to_vec()
        };
        if !a && self.num_auth_methods != 0 {
            c.entry_args = Some(collect_all(args));
            return Ok(true);
        }
        let found = self.num_auth_methods == 0;
        let mut seen_any = false;
        let mut vals: Vec<Vec<u8>> = Vec::new();
        while let Some(v) = args.next() {
            if !a && v.is_empty() {
                break;
            }
            if v == b"any" {
                let earlier = if t.at_least(9, 9) {
                    !vals.is_empty()
                } else {
                    self.num_auth_methods > 0
                };
                if earlier {
                    return Err(
                        self.fatal(c, cat(&[&c.p, b"\"any\" must appear alone in ", &name]))
                    );
                }
                seen_any = true;
            } else if seen_any {
                return Err(self.fatal(c, cat(&[&c.p, b"\"any\" must appear alone in ", &name])));
            } else if let Err(e) = algos::auth_methods_valid(&v) {
                self.error(c, e);
                let m = if a {
                    cat(&[&c.p, b"invalid ", &kwd, b" method list."])
                } else {
                    cat(&[&c.p, b"invalid authentication method list."])
                };
                return Err(self.fatal(c, m));
            }
            if found && active && !t.at_least(9, 9) {
                self.num_auth_methods += 1;
            }
            vals.push(v);
        }
        if vals.is_empty() {
            return Err(self.fatal(c, cat(&[&c.p, b"no ", &name, b" specified"])));
        }
        if found && active && t.at_least(9, 9) {
            self.num_auth_methods += vals.len();
        }
        c.entry_args = Some(vals);
        Ok(true)
    }

    fn include(
        &mut self,
        c: &mut LineCtx,
        args: &mut Args,
        active: &mut bool,
        flags: &mut u8,
        depth: usize,
    ) -> Flow {
        let t = self.t;
        let a = t.at_least(8, 7);
        let kwd = c.keyword.clone();
        let mut count = 0usize;
        let mut patterns = Vec::new();
        while let Some(arg2) = args.next() {
            if !a && arg2.is_empty() {
                break;
            }
            if a && arg2.is_empty() {
                self.error(c, cat(&[&c.p, b"keyword ", &kwd, b" empty argument"]));
                return Ok(false);
            }
            count += 1;
            let arg_text = lossy(&arg2);
            let pattern = if t.at_least(8, 2)
                && t.before(8, 3)
                && !arg_text.starts_with('/')
                && !arg_text.starts_with('~')
            {
                // OpenSSH 8.2 formats the keyword instead of the argument.
                self.diag(
                    &c.file,
                    c.physical,
                    format!(
                        "openssh 8.2 resolves the relative include {arg_text:?} as {:?} (a bug fixed in 8.3)",
                        include_pattern(&lossy(&kwd))
                    ),
                );
                include_pattern(&lossy(&kwd))
            } else {
                include_pattern(&arg_text)
            };
            patterns.push(arg2.clone());
            let oactive = *active;
            let child_flags = if *flags & SSHCFG_MATCH_ONLY != 0 {
                SSHCFG_MATCH_ONLY
            } else if oactive {
                0
            } else {
                SSHCFG_NEVERMATCH
            };
            // Consult the cache of include files.
            let cached: Vec<Option<CachedFile>> = self
                .includes
                .iter()
                .filter(|i| i.selector == pattern)
                .map(|i| i.file.clone())
                .collect();
            if !cached.is_empty() {
                for item in cached.into_iter().flatten() {
                    self.parse_included(c, &item.0, &item.1, child_flags, depth, active);
                    *active = oactive;
                }
                continue;
            }
            let Some(src) = self.src else {
                self.diag(
                    &c.file,
                    c.physical,
                    format!("include {pattern:?} was not followed: no include source was given"),
                );
                self.out.complete = false;
                continue;
            };
            let mut paths = if pattern.starts_with('/') {
                src.glob(&pattern)
            } else {
                Vec::new()
            };
            paths.sort();
            paths.dedup();
            if paths.is_empty() {
                self.includes.push(IncludeItem {
                    selector: pattern.clone(),
                    file: None,
                });
            }
            for path in paths {
                let contents = if self.out.files.len() >= self.limits.max_files {
                    self.diag(
                        &c.file,
                        c.physical,
                        format!(
                            "include of {path:?} skipped: more than {} files",
                            self.limits.max_files
                        ),
                    );
                    self.out.complete = false;
                    continue;
                } else {
                    match src.read(&path) {
                        Ok(bytes) => bytes,
                        Err(e) => {
                            // load_server_config(): perror(filename); exit(1).
                            let text = format!("{path}: {e}");
                            self.push_msg(Level::Fatal, text.as_bytes(), &c.file, c.physical);
                            self.diag(
                                &c.file,
                                c.physical,
                                format!("include {path:?} cannot be read: {e}"),
                            );
                            self.out.complete = false;
                            continue;
                        }
                    }
                };
                if contents.len() > self.limits.max_file_bytes
                    || self.bytes_read.saturating_add(contents.len()) > self.limits.max_total_bytes
                {
                    self.diag(
                        &c.file,
                        c.physical,
                        format!(
                            "include {path:?} not analysed: {} bytes is over the size cap",
                            contents.len()
                        ),
                    );
                    self.out.complete = false;
                    continue;
                }
                self.bytes_read += contents.len();
                if !self.out.files.contains(&path) {
                    self.out.files.push(path.clone());
                }
                let rc = Rc::new(contents);
                self.parse_included(c, &path, &rc, child_flags, depth, active);
                *active = oactive;
                self.includes.push(IncludeItem {
                    selector: pattern.clone(),
                    file: Some((path, rc)),
                });
            }
        }
        if count == 0 {
            let m = if a {
                cat(&[&c.p, &kwd, b" missing filename argument"])
            } else {
                cat(&[&c.p, b"Include missing filename argument"])
            };
            return Err(self.fatal(c, m));
        }
        c.entry_args = Some(patterns);
        Ok(true)
    }

    fn parse_included(
        &mut self,
        c: &LineCtx,
        path: &str,
        data: &Rc<Vec<u8>>,
        child_flags: u8,
        depth: usize,
        active: &mut bool,
    ) {
        if self.stack.iter().any(|p| p == path)
            && !self.out.diagnostics.iter().any(|d| {
                d.message.contains("include loop") && d.file == c.file && d.line == c.physical
            })
        {
            self.diag(&c.file, c.physical, format!("include loop: {path:?} includes itself; sshd stops with \"Too many recursive configuration includes\""));
        }
        if self.fatal_seen && self.stack.iter().any(|p| p == path) {
            // sshd has already exited; nothing new can be learnt.
            return;
        }
        if depth + 1 > MAX_DEPTH {
            self.push_msg(
                Level::Fatal,
                b"Too many recursive configuration includes",
                &c.file,
                c.physical,
            );
            return;
        }
        self.out.events.push(Event::Enter);
        self.current_match
            .push(self.current_match.last().copied().flatten());
        self.stack.push(path.to_owned());
        let idx = self.out.files.iter().position(|f| f == path).unwrap_or(0);
        self.parse_file(path, idx, data, child_flags, depth + 1, active);
        self.stack.pop();
        self.current_match.pop();
        self.out.events.push(Event::Exit);
    }

    fn match_line(
        &mut self,
        c: &mut LineCtx,
        args: &mut Args,
        rest: Option<&[u8]>,
        active: &mut bool,
        flags: &mut u8,
    ) -> Flow {
        let t = self.t;
        let a = t.at_least(8, 7);
        let result = if t.at_least(9, 9) {
            self.match_cfg_argv(c, args)
        } else {
            let s: &[u8] = if a {
                rest.unwrap_or(&[])
            } else {
                args_source(args)
            };
            let start = if a { Some(0) } else { args_pos(args) };
            let (r, end) = self.match_cfg_strdelim(c, s, start);
            if a {
                if end.is_none_or(|p| p >= s.len()) {
                    args.consume();
                }
            } else if let Args::Delim { pos, .. } = args {
                *pos = end;
            }
            r
        };
        let (value, criteria) = match result {
            Ok(v) => v,
            Err(()) => {
                return Err(self.fatal(c, cat(&[&c.p, b"Bad Match condition"])));
            }
        };
        *active = if *flags & SSHCFG_NEVERMATCH != 0 {
            false
        } else {
            value
        };
        *flags &= !SSHCFG_MATCH_ONLY;
        let idx = self.out.match_blocks.len();
        self.out.match_blocks.push(MatchBlock {
            file: c.file.clone(),
            line: c.physical,
            criteria,
            always: value,
        });
        self.out.events.push(Event::Match(idx));
        if let Some(top) = self.current_match.last_mut() {
            *top = Some(idx);
        }
        c.entry_args = Some(Vec::new());
        Ok(true)
    }

    /// One criterion's syntax check with no connection (first pass):
    /// `Ok(Some(matches))`, `Ok(None)` to continue, `Err` on a bad line.
    fn criterion_check(&mut self, c: &LineCtx, attrib: &[u8], arg: &[u8]) -> Result<(), ()> {
        let t = self.t;
        let at = |s: &str| strcasecmp_eq(attrib, s);
        if at("user") || at("group") || at("host") || (at("rdomain") && t.at_least(7, 7)) {
            Ok(())
        } else if at("address") || at("localaddress") {
            if addr_match_list(None, arg) != 0 {
                let which: &[u8] = if at("address") {
                    b"address"
                } else {
                    b"localaddress"
                };
                let m = cat(&[
                    b"Invalid Match ",
                    which,
                    b" argument '",
                    arg,
                    format!("' at line {}", c.number).as_bytes(),
                ]);
                self.push_msg(Level::Fatal, &m, &c.file, c.physical);
                // sshd exits here; the line counts as fatal.
                return Err(());
            }
            Ok(())
        } else if at("localport") {
            if self.a2port(arg) == Some(-1) {
                self.error(c, cat(&[b"Invalid LocalPort '", arg, b"' on Match line"]));
                return Err(());
            }
            Ok(())
        } else if at("version") && t.at_least(10, 0) {
            Ok(())
        } else {
            self.error(c, cat(&[b"Unsupported Match attribute ", attrib]));
            Err(())
        }
    }

    /// `match_cfg_line()` up to 9.8 (strdelim over the raw string), with no
    /// connection: whether the block is active in the first pass.
    fn match_cfg_strdelim(
        &mut self,
        c: &LineCtx,
        s: &[u8],
        start: Option<usize>,
    ) -> (MatchResult, Option<usize>) {
        let t = self.t;
        let hash = t.at_least(8, 7);
        let mut cp = start;
        let mut attributes = 0;
        let mut crit = Vec::new();
        loop {
            let (tok, n) = strdelim(s, cp, true);
            cp = n;
            let Some(attrib) = tok.map(|t| t.value) else {
                break;
            };
            if attrib.is_empty() {
                break;
            }
            if hash && attrib[0] == b'#' {
                cp = None;
                break;
            }
            attributes += 1;
            if strcasecmp_eq(&attrib, "all") {
                let (arg, n2) = strdelim(s, cp, true);
                let argv = arg.map(|t| t.value);
                let extra = argv
                    .as_ref()
                    .is_some_and(|a| !(a.is_empty() || hash && a[0] == b'#'));
                if attributes > 1 || extra {
                    self.error(
                        c,
                        b"'all' cannot be combined with other Match attributes".to_vec(),
                    );
                    return (Err(()), None);
                }
                let mut end = n2;
                if argv
                    .as_ref()
                    .is_some_and(|a| hash && a.first() == Some(&b'#'))
                {
                    end = None;
                }
                crit.push(Criterion {
                    attribute: "all".into(),
                    patterns: String::new(),
                });
                return (Ok((true, crit)), end);
            }
            let (arg, n2) = strdelim(s, cp, true);
            cp = n2;
            let arg = arg.map(|t| t.value).unwrap_or_default();
            if arg.is_empty() || (hash && arg[0] == b'#') {
                self.error(c, cat(&[b"Missing Match criteria for ", &attrib]));
                return (Err(()), None);
            }
            if self.criterion_check(c, &attrib, &arg).is_err() {
                return (Err(()), None);
            }
            crit.push(Criterion {
                attribute: lossy(&attrib).to_ascii_lowercase(),
                patterns: lossy(&arg),
            });
        }
        if attributes == 0 {
            self.error(c, b"One or more attributes required for Match".to_vec());
            return (Err(()), None);
        }
        (Ok((false, crit)), cp)
    }

    /// `match_cfg_line()` from 9.9 on (argv), with no connection.
    fn match_cfg_argv(&mut self, c: &LineCtx, args: &mut Args) -> MatchResult {
        let t = self.t;
        let mut attributes = 0;
        let mut result = true;
        let mut crit = Vec::new();
        while let Some(oattrib) = args.next() {
            if oattrib.first() == Some(&b'#') {
                args.consume();
                break;
            }
            attributes += 1;
            if strcasecmp_eq(&oattrib, "all") {
                let arg = args.next();
                let extra = arg.as_ref().is_some_and(|a| !a.is_empty() && a[0] != b'#');
                if attributes > 1 || extra {
                    self.error(
                        c,
                        b"'all' cannot be combined with other Match attributes".to_vec(),
                    );
                    return Err(());
                }
                if arg.as_ref().is_some_and(|a| a.first() == Some(&b'#')) {
                    args.consume();
                }
                crit.push(Criterion {
                    attribute: "all".into(),
                    patterns: String::new(),
                });
                return Ok((true, crit));
            }
            if strcasecmp_eq(&oattrib, "invalid-user") {
                if t.at_least(10, 0) {
                    result = false;
                }
                crit.push(Criterion {
                    attribute: "invalid-user".into(),
                    patterns: String::new(),
                });
                continue;
            }
            let mut attrib = oattrib.clone();
            let mut arg: Option<Vec<u8>> = None;
            if t.at_least(10, 0) {
                let forms = [
                    "user=",
                    "group=",
                    "host=",
                    "address=",
                    "localaddress=",
                    "localport=",
                    "rdomain=",
                    "version=",
                ];
                if forms.iter().any(|f| {
                    oattrib.len() >= f.len()
                        && oattrib[..f.len()].eq_ignore_ascii_case(f.as_bytes())
                }) {
                    let eq = oattrib
                        .iter()
                        .position(|&b| b == b'=')
                        .unwrap_or(oattrib.len());
                    attrib = oattrib[..eq].to_vec();
                    arg = Some(oattrib.get(eq + 1..).unwrap_or(&[]).to_vec());
                }
            }
            let arg = match arg {
                Some(a) => Some(a),
                None => args.next(),
            };
            let arg = arg.unwrap_or_default();
            if arg.is_empty() || arg[0] == b'#' {
                self.error(c, cat(&[b"Missing Match criteria for ", &attrib]));
                return Err(());
            }
            if strcasecmp_eq(&attrib, "version") && t.at_least(10, 0) {
                let release = format!(
                    "OpenSSH_{}.{}p{}",
                    t.requested.major, t.requested.minor, t.requested.patch
                );
                if super::matching::match_pattern_list(release.as_bytes(), &arg, false) != 1 {
                    result = false;
                }
            } else {
                // Unsupported attributes are reported with the original text.
                let shown = if t.at_least(10, 0) {
                    oattrib.clone()
                } else {
                    attrib.clone()
                };
                let known = [
                    "user",
                    "group",
                    "host",
                    "address",
                    "localaddress",
                    "localport",
                    "rdomain",
                ];
                if !known.iter().any(|k| strcasecmp_eq(&attrib, k)) {
                    self.error(c, cat(&[b"Unsupported Match attribute ", &shown]));
                    return Err(());
                }
                self.criterion_check(c, &attrib, &arg)?;
                result = false;
            }
            crit.push(Criterion {
                attribute: lossy(&attrib).to_ascii_lowercase(),
                patterns: lossy(&arg),
            });
        }
        if attributes == 0 {
            self.error(c, b"One or more attributes required for Match".to_vec());
            return Err(());
        }
        Ok((result, crit))
    }
}

fn rdomain_note(name: &[u8]) -> String {
    format!(
        "routing domain {:?} must be a network interface (VRF) of the running machine; sshd checks it at startup (\"bad routing domain\")",
        lossy(name)
    )
}

fn fname_colon(file: &str) -> String {
    format!("{file}: ")
}

fn args_source<'b>(args: &Args<'b>) -> &'b [u8] {
    match args {
        Args::Delim { s, .. } => s,
        Args::Argv { .. } => &[],
    }
}

fn args_pos(args: &Args) -> Option<usize> {
    match args {
        Args::Delim { pos, .. } => *pos,
        Args::Argv { .. } => None,
    }
}

fn collect_rest(args: &mut Args, out: &mut Vec<Vec<u8>>, argv_era: bool) {
    while let Some(v) = args.next() {
        if !argv_era && v.is_empty() {
            break;
        }
        out.push(v);
    }
}

fn collect_all(args: &mut Args) -> Vec<Vec<u8>> {
    let mut v = Vec::new();
    while let Some(a) = args.next() {
        if a.is_empty() {
            break;
        }
        v.push(a);
    }
    v
}

/// `parse_timeout()` (9.2-9.5) / `parse_pattern_interval()` (9.6+):
/// `pattern=interval` with a non-empty pattern and a valid time.
fn channel_timeout_valid(t: &Target, s: &[u8]) -> bool {
    match s.iter().position(|&b| b == b'=') {
        Some(0) | None => false,
        Some(i) => convtime(t, &s[i + 1..]).is_some(),
    }
}

#[cfg(test)]
mod tests {
    use super::super::version::{Distro, OpensshVersion};
    use super::*;

    fn t(a: u32, b: u32) -> Target {
        Target::new(OpensshVersion::new(a, b), Distro::Debian)
    }

    #[test]
    fn numbers_like_libc() {
        assert_eq!(strtonum(b"22", 0, 65535), Ok(22));
        assert_eq!(strtonum(b"+22", 0, 65535), Ok(22));
        assert_eq!(strtonum(b"-1", 0, 65535), Err("too small"));
        assert_eq!(strtonum(b"65536", 0, 65535), Err("too large"));
        assert_eq!(
            strtonum(b"99999999999999999999999", 0, 65535),
            Err("too large")
        );
        assert_eq!(strtonum(b"2x", 0, 65535), Err("invalid"));
        assert_eq!(strtonum(b"", 0, 65535), Err("invalid"));
        assert_eq!(convtime(&t(9, 2), b"1h30m"), Some(5400));
        assert_eq!(convtime(&t(9, 2), b"+5"), Some(5));
        assert_eq!(convtime(&t(9, 9), b"+5"), None);
        assert_eq!(convtime(&t(9, 2), b"5x"), None);
        assert_eq!(convtime(&t(9, 2), b""), None);
        assert_eq!(convtime(&t(9, 2), b"99999999999"), None);
        assert_eq!(scan_scaled(b"1G"), Ok(1 << 30));
        assert_eq!(scan_scaled(b"0.5K"), Ok(512));
        assert_eq!(scan_scaled(b"1Gx"), Err("Invalid argument"));
        assert_eq!(scan_scaled(b"1X"), Err("Invalid argument"));
        assert_eq!(
            scan_scaled(b"9999999999999999999999"),
            Err("Numerical result out of range")
        );
        assert_eq!(scan_ints(b"10:30:60", 3), vec![10, 30, 60]);
        assert_eq!(scan_ints(b"10:x", 3), vec![10]);
        assert!(ipqos_valid(Some(b"af21")));
        assert!(ipqos_valid(Some(b"0x10")));
        assert!(!ipqos_valid(Some(b"256")));
        assert!(!ipqos_valid(None));
        let t92 = t(9, 2);
        let mut e = Engine::new(&t92, None, Limits::default());
        assert_eq!(e.a2port(b"ssh"), Some(22));
        assert_eq!(e.a2port(b"0"), Some(0));
        assert_eq!(e.a2port(b"sp ace"), Some(-1));
        assert_eq!(e.a2port(b"22x"), Some(-1));
        assert_eq!(e.a2port(b"gopher"), None);
        let t74 = t(7, 4);
        let mut e = Engine::new(&t74, None, Limits::default());
        assert_eq!(e.a2port(b"ssh"), Some(-1));
        let mut src = super::super::include::MemorySource::new();
        src.insert(
            "/etc/services",
            b"# x\nssh 22/tcp\ngopher\t70/tcp  # old\nfoo 1/udp\nwww 80/tcp http\n".to_vec(),
        );
        let mut e = Engine::new(&t92, Some(&src), Limits::default());
        assert_eq!(e.a2port(b"gopher"), Some(70));
        assert_eq!(e.a2port(b"http"), Some(80));
        assert_eq!(e.a2port(b"foo"), Some(-1));
    }
}
