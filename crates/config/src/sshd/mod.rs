//! `sshd_config`: a lossless document with span-exact edits, and the
//! knowledge sshd itself applies to it for the guest's OpenSSH release.
//!
//! * [`SshdConfig`] keeps every byte; [`SshdConfig::render`] of an unchanged
//!   document is byte-identical, and the edits [`SshdConfig::comment_out`],
//!   [`SshdConfig::replace_keyword`] and [`SshdConfig::set_value`] touch only
//!   the bytes they change.
//! * [`analyze`] runs sshd's configuration pass offline for a [`Target`]
//!   (release + distribution): the exact messages `sshd -t` prints, a
//!   [`Verdict`] per line (with a near-miss keyword suggestion for typos),
//!   `Include` resolution through [`IncludeSource`], and the ordered
//!   directives with their `Match` context.
//! * [`effective`] evaluates `Match` blocks for a [`Connection`] and gives
//!   typed [`Settings`].
//!
//! What sshd does with awkward bytes, as reproduced here: a leading BOM is
//! part of the first keyword ("Bad configuration option: \357\273\277Port");
//! `\r` before `\n` is whitespace and stripped (CRLF files work), elsewhere
//! it is part of a token; a NUL byte ends the line's text *and* swallows its
//! newline, so sshd joins the next line to it and its line numbers shift;
//! lines have no length limit since 7.8 (before: 4094 bytes, "line N too
//! long"); before 8.7 a `#` anywhere starts a comment, from 8.7 only at the
//! start of a word; messages pass through strnvis() and a 1024-byte buffer.
//!
//! Nothing here does I/O or panics on any input.

mod algos;
mod effective;
mod engine;
mod include;
mod keywords;
mod lex;
mod log;
mod matching;
mod version;

pub use effective::{
    effective, expand_tokens, global_settings, Access, Connection, PermitRootLogin, Settings,
    Uncertain, Value,
};
pub use engine::{
    Analysis, Criterion, Entry, FileDiagnostic, Level, MatchBlock, Message, Status, Verdict,
};
pub use include::{include_pattern, IncludeSource, Limits, MemorySource, MAX_DEPTH, SSHDIR};
pub use keywords::{
    keyword_info, keywords, suggest_keyword, ArgKind, KeywordClass, KeywordInfo, Origin,
};
pub use matching::{
    addr_match_list, glob_component_match, glob_with, match_hostname, match_pattern,
    match_pattern_list, match_user, parse_addr, MalformedList, Tri,
};
pub use version::{Distro, OpensshVersion, Target, NEWEST, OLDEST};

use serde::Serialize;

use crate::text;
use crate::{Diagnostic, Span};
use engine::{Engine, Level as MsgLevel};

/// Where sshd reads its configuration when started without `-f`.
pub const DEFAULT_CONFIG_PATH: &str = "/etc/ssh/sshd_config";

/// A parsed sshd_config file.
#[derive(Debug, Clone, Serialize, schemars::JsonSchema)]
pub struct SshdConfig {
    #[serde(skip)]
    source: Vec<u8>,
    /// Every physical line, in order.
    pub lines: Vec<Line>,
    /// Problems found while splitting (not sshd's verdicts: see [`analyze`]).
    pub diagnostics: Vec<Diagnostic>,
}

/// One physical line.
#[derive(Debug, Clone, Serialize, schemars::JsonSchema)]
pub struct Line {
    /// 1-based line number.
    pub number: usize,
    /// The line's bytes without its `\n` (a `\r` before it is included).
    pub span: Span,
    /// What the line holds.
    pub kind: LineKind,
}

/// Classification of a line, by the rules of OpenSSH 8.7 and later.
#[derive(Debug, Clone, Serialize, schemars::JsonSchema)]
#[serde(tag = "type", rename_all = "snake_case")]
pub enum LineKind {
    /// Empty or only whitespace.
    Blank,
    /// The first word starts with `#`.
    Comment,
    /// sshd ignores the line silently: the keyword has an unterminated `"`.
    Unparsed,
    /// `Keyword args…`.
    Directive(Box<Directive>),
}

/// A keyword and its arguments.
#[derive(Debug, Clone, Serialize, schemars::JsonSchema)]
pub struct Directive {
    /// The keyword (quotes removed in `value`, kept in `span`).
    pub keyword: Token,
    /// The arguments as `argv_split()` splits them.
    pub args: Vec<Token>,
    /// Where the arguments are: first argument start to last argument end,
    /// or an empty span just after the keyword when there are none.
    pub args_span: Span,
    /// A trailing `# comment`, if any.
    pub comment: Option<Span>,
    /// The arguments have an unterminated quote ("invalid quotes").
    pub bad_quotes: bool,
}

/// One word of a directive.
#[derive(Debug, Clone, Serialize, schemars::JsonSchema)]
pub struct Token {
    /// Where the word is, quotes and escapes included.
    pub span: Span,
    /// The decoded word (lossy UTF-8).
    pub value: String,
}

/// Why an edit could not be made.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum EditError {
    /// There is no line with that number.
    NoSuchLine(usize),
    /// The line holds no directive.
    NotADirective(usize),
    /// The replacement text would change the line structure.
    BadText(String),
}

impl std::fmt::Display for EditError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            EditError::NoSuchLine(n) => write!(f, "editing sshd_config: there is no line {n}"),
            EditError::NotADirective(n) => {
                write!(f, "editing sshd_config: line {n} holds no directive")
            }
            EditError::BadText(why) => write!(f, "editing sshd_config: {why}"),
        }
    }
}

impl std::error::Error for EditError {}

impl SshdConfig {
    /// Parses sshd_config bytes. Never fails.
    pub fn parse(data: &[u8]) -> SshdConfig {
        let mut lines = Vec::new();
        let mut diagnostics = Vec::new();
        for raw in text::lines(data) {
            let bytes = raw.content.slice(data);
            let number = raw.number;
            if bytes.contains(&0) {
                diagnostics.push(Diagnostic::new(
                    number,
                    "line contains a nul byte: sshd ignores the rest of it and joins the next line to it",
                ));
            }
            if std::str::from_utf8(bytes).is_err() {
                diagnostics.push(Diagnostic::new(number, "line is not valid utf-8"));
            }
            if number == 1 && bytes.starts_with(b"\xef\xbb\xbf") {
                diagnostics.push(Diagnostic::new(
                    1,
                    "file starts with a utf-8 byte order mark, which sshd reads as part of the first keyword",
                ));
            }
            let kind = parse_line(bytes, raw.content.start);
            lines.push(Line {
                number,
                span: raw.content,
                kind,
            });
        }
        SshdConfig {
            source: data.to_vec(),
            lines,
            diagnostics,
        }
    }

    /// The document's bytes; identical to the input.
    pub fn render(&self) -> Vec<u8> {
        self.source.clone()
    }

    /// The bytes of `span`.
    pub fn slice(&self, span: Span) -> &[u8] {
        span.slice(&self.source)
    }

    /// Line `number` (1-based).
    pub fn line(&self, number: usize) -> Option<&Line> {
        number.checked_sub(1).and_then(|i| self.lines.get(i))
    }

    /// The directives in file order with their line numbers.
    pub fn directives(&self) -> impl Iterator<Item = (usize, &Directive)> {
        self.lines.iter().filter_map(|l| match &l.kind {
            LineKind::Directive(d) => Some((l.number, d.as_ref())),
            _ => None,
        })
    }

    fn directive(&self, number: usize) -> Result<(&Line, &Directive), EditError> {
        let line = self.line(number).ok_or(EditError::NoSuchLine(number))?;
        match &line.kind {
            LineKind::Directive(d) => Ok((line, d)),
            _ => Err(EditError::NotADirective(number)),
        }
    }

    fn splice(&self, at: Span, with: &[u8]) -> Vec<u8> {
        let mut out = Vec::with_capacity(self.source.len() + with.len());
        out.extend_from_slice(&self.source[..at.start.min(self.source.len())]);
        out.extend_from_slice(with);
        out.extend_from_slice(&self.source[at.end.min(self.source.len())..]);
        out
    }

    /// Comments line `number` out, with `reason` on a comment line above
    /// it: `# reason` and `#` + the original bytes. The line ending of the
    /// line (LF or CRLF) is reused. Works for every OpenSSH release.
    pub fn comment_out(&self, number: usize, reason: &str) -> Result<Vec<u8>, EditError> {
        let line = self.line(number).ok_or(EditError::NoSuchLine(number))?;
        let content = self.slice(line.span);
        let eol: &[u8] = if content.last() == Some(&b'\r') {
            b"\r\n"
        } else {
            b"\n"
        };
        let clean: String = reason
            .chars()
            .map(|c| if c.is_control() { ' ' } else { c })
            .collect();
        let mut insert = Vec::new();
        if !clean.trim().is_empty() {
            insert.extend_from_slice(b"# ");
            insert.extend_from_slice(clean.trim().as_bytes());
            insert.extend_from_slice(eol);
        }
        insert.push(b'#');
        Ok(self.splice(Span::new(line.span.start, line.span.start), &insert))
    }

    /// Replaces the keyword of line `number` (e.g. a typo with the real
    /// keyword). `new` must be one plain word.
    pub fn replace_keyword(&self, number: usize, new: &str) -> Result<Vec<u8>, EditError> {
        let (_, d) = self.directive(number)?;
        let ok = !new.is_empty()
            && !new.starts_with('#')
            && new.bytes().all(|b| {
                !lex::is_ws(b)
                    && b != b'"'
                    && b != b'='
                    && b != 0
                    && b != 0x0c
                    && !b.is_ascii_control()
            });
        if !ok {
            return Err(EditError::BadText(format!(
                "{new:?} is not a single keyword"
            )));
        }
        Ok(self.splice(d.keyword.span, new.as_bytes()))
    }

    /// Replaces all arguments of line `number` with `new` (raw text, quoted
    /// by the caller as needed, see [`quote_arg`]); a trailing comment and
    /// the separator after the keyword are kept.
    pub fn set_value(&self, number: usize, new: &str) -> Result<Vec<u8>, EditError> {
        let (_, d) = self.directive(number)?;
        if new.trim().is_empty() || new.bytes().any(|b| b == b'\n' || b == b'\r' || b == 0) {
            return Err(EditError::BadText(format!(
                "{new:?} is not a one-line value"
            )));
        }
        if d.args.is_empty() && !d.bad_quotes {
            let mut with = b" ".to_vec();
            with.extend_from_slice(new.as_bytes());
            return Ok(self.splice(d.args_span, &with));
        }
        Ok(self.splice(d.args_span, new.as_bytes()))
    }
}

/// Quotes `value` so `argv_split()` (OpenSSH 8.7+) reads it back as one
/// argument. Plain words are returned as they are.
pub fn quote_arg(value: &str) -> String {
    let plain = !value.is_empty()
        && !value.starts_with('#')
        && value
            .bytes()
            .all(|b| b.is_ascii_graphic() && !matches!(b, b'"' | b'\'' | b'\\'));
    if plain {
        return value.to_owned();
    }
    let mut out = String::with_capacity(value.len() + 2);
    out.push('"');
    for c in value.chars() {
        if c == '"' || c == '\\' {
            out.push('\\');
        }
        out.push(c);
    }
    out.push('"');
    out
}

/// Classifies one physical line (`bytes` starts at file offset `base`).
fn parse_line(bytes: &[u8], base: usize) -> LineKind {
    let text = &bytes[..lex::c_len(bytes)];
    let lead = text
        .iter()
        .take_while(|&&b| b == b' ' || b == b'\t' || b == b'\r')
        .count();
    let body = &text[lead..];
    let len = lex::trailing_stripped_len(body);
    let body = &body[..len];
    if body.is_empty() || body.iter().all(|&b| lex::is_ws(b) || b == 0x0c) {
        return LineKind::Blank;
    }
    let (mut kw, mut pos) = lex::strdelim(body, Some(0), true);
    if kw.as_ref().is_some_and(|k| k.value.is_empty()) {
        (kw, pos) = lex::strdelim(body, pos, true);
    }
    let Some(kw) = kw else {
        return LineKind::Unparsed;
    };
    if kw.value.is_empty() {
        return LineKind::Blank;
    }
    if kw.value[0] == b'#' {
        return LineKind::Comment;
    }
    let off = base + lead;
    let keyword = Token {
        span: Span::new(off + kw.start, off + kw.end),
        value: String::from_utf8_lossy(&kw.value).into_owned(),
    };
    let start = pos.unwrap_or(body.len());
    let (args, comment, bad_quotes) = match lex::argv_split(body, start, true) {
        Ok(sp) => (sp.args, sp.comment_at, false),
        Err(()) => (Vec::new(), None, true),
    };
    let args_span = match (args.first(), args.last()) {
        (Some(f), Some(l)) => Span::new(off + f.start, off + l.end),
        // Unsplittable arguments: the whole rest of the line.
        _ if bad_quotes => Span::new(off + start, off + body.len()),
        _ => Span::new(off + kw.end, off + kw.end),
    };
    let args = args
        .into_iter()
        .map(|t| Token {
            span: Span::new(off + t.start, off + t.end),
            value: String::from_utf8_lossy(&t.value).into_owned(),
        })
        .collect();
    LineKind::Directive(Box::new(Directive {
        keyword,
        args,
        args_span,
        comment: comment.map(|c| Span::new(off + c, off + body.len())),
        bad_quotes,
    }))
}

/// Runs sshd's configuration pass for the build `target` over the main
/// file `data` named `path` (as sshd names it in messages, normally
/// [`DEFAULT_CONFIG_PATH`]), following `Include`s through `includes` when
/// given. Also applies the checks sshd makes right after parsing
/// (`AuthorizedKeysCommand` without a user, unsatisfiable
/// `AuthenticationMethods`, a `ListenAddress` of the wrong family).
pub fn analyze(
    path: &str,
    data: &[u8],
    target: &Target,
    includes: Option<&dyn IncludeSource>,
    limits: Limits,
) -> Analysis {
    let mut engine = Engine::new(target, includes, limits);
    let too_big = data.len() > limits.max_file_bytes;
    if !too_big {
        engine.run_main(path, data);
    }
    let mut a = engine.finish();
    if too_big {
        a.complete = false;
        a.files.push(path.to_owned());
        a.diagnostics.push(FileDiagnostic {
            file: path.to_owned(),
            line: 0,
            message: format!(
                "{path} is {} bytes, more than the {} analysed; it was not checked (sshd reads it all)",
                data.len(),
                limits.max_file_bytes
            ),
        });
    }
    if let Some(note) = &target.note {
        a.diagnostics.push(FileDiagnostic {
            file: String::new(),
            line: 0,
            message: note.clone(),
        });
    }
    post_parse_checks(&mut a);
    a
}

/// [`analyze`] with default limits.
pub fn resolve(path: &str, data: &[u8], target: &Target, includes: &dyn IncludeSource) -> Analysis {
    analyze(path, data, target, Some(includes), Limits::default())
}

/// The verdicts for one file read as `/etc/ssh/sshd_config` by the given
/// release (includes are checked for syntax but not followed).
pub fn validate(doc: &SshdConfig, version: &OpensshVersion, distro: Distro) -> Vec<Verdict> {
    let t = Target::new(*version, distro);
    analyze(
        DEFAULT_CONFIG_PATH,
        &doc.source,
        &t,
        None,
        Limits::default(),
    )
    .verdicts
}

fn push_post(a: &mut Analysis, text: String, file: String, line: usize) {
    let reached = !a.messages.iter().any(|m| m.level == MsgLevel::Fatal);
    a.messages.push(Message {
        level: MsgLevel::Fatal,
        text,
        file: file.clone(),
        line,
        reached,
    });
    if let Some(v) = a
        .verdicts
        .iter_mut()
        .find(|v| v.file == file && v.physical_line == line)
    {
        if let Some(m) = a.messages.last() {
            v.messages.push(m.text.clone());
        }
        v.status = Status::Fatal;
    }
}

fn post_parse_checks(a: &mut Analysis) {
    let g = global_settings(a);
    // process_queued_listen_addrs(): a literal of the wrong family.
    let family = g.first("addressfamily").map(str::to_ascii_lowercase);
    if let (Some(fam), Some(v)) = (family.as_deref(), g.get("listenaddress")) {
        for (i, addr) in v.args.iter().enumerate() {
            let host = addr.trim_start_matches('[');
            let host = host.split(']').next().unwrap_or(host);
            let host = if host.matches(':').count() >= 2 {
                host
            } else {
                host.split(':').next().unwrap_or(host)
            };
            let wrong = match parse_addr(host.as_bytes()) {
                Some(std::net::IpAddr::V4(_)) => fam == "inet6",
                Some(std::net::IpAddr::V6(_)) => fam == "inet",
                None => false,
            };
            if wrong {
                let (file, line) = v.origin.get(i).cloned().unwrap_or_default();
                let text =
                    format!("bad addr or host: {host} (Address family for hostname not supported)");
                push_post(a, text, file, line);
                return;
            }
        }
    }
    // fill_default_server_options() -> assemble_algorithms() (7.8+): an
    // explicit list whose patterns match no algorithm, or a negated one.
    if a.target.at_least(7, 8) {
        let t = a.target.clone();
        let keys: Vec<&str> = algos::key_names(&t).into_iter().map(|(k, _)| k).collect();
        let sigs: Vec<&str> = algos::key_names(&t)
            .into_iter()
            .filter(|(_, c)| !c)
            .map(|(k, _)| k)
            .collect();
        let renamed = t.at_least(8, 5);
        let lists: Vec<(&str, &str, Vec<&str>)> = vec![
            ("ciphers", "ciphers", algos::cipher_names(&t)),
            ("macs", "macs", algos::mac_names(&t)),
            ("kexalgorithms", "kex_algorithms", algos::kex_names(&t)),
            ("hostkeyalgorithms", "hostkeyalgorithms", keys.clone()),
            (
                "hostbasedacceptedalgorithms",
                if renamed {
                    "hostbased_accepted_algos"
                } else {
                    "hostbased_key_types"
                },
                keys.clone(),
            ),
            (
                "pubkeyacceptedalgorithms",
                if renamed {
                    "pubkey_accepted_algos"
                } else {
                    "pubkey_key_types"
                },
                keys,
            ),
            ("casignaturealgorithms", "ca_sign_algorithms", sigs),
        ];
        for (setting, what, all) in lists {
            let Some(v) = g.get(setting) else { continue };
            let Some(list) = v.args.first() else { continue };
            let ok = match list.as_bytes().first() {
                Some(b'-') => true,
                Some(b'+' | b'^') => !list[1..]
                    .split(',')
                    .take_while(|e| !e.is_empty())
                    .any(|e| e.starts_with('!')),
                _ => {
                    let elems: Vec<&str> = list.split(',').collect();
                    !elems.iter().any(|e| e.starts_with('!'))
                        && elems.iter().any(|e| {
                            all.iter()
                                .any(|n| match_pattern_list(n.as_bytes(), e.as_bytes(), false) == 1)
                        })
                }
            };
            if !ok {
                let (file, line) = v.origin.first().cloned().unwrap_or_default();
                push_post(
                    a,
                    format!("assemble_algorithms: {what}: invalid argument"),
                    file,
                    line,
                );
                return;
            }
        }
    }
    for (cmd, user, name) in [
        (
            "authorizedkeyscommand",
            "authorizedkeyscommanduser",
            "AuthorizedKeysCommand set without AuthorizedKeysCommandUser",
        ),
        (
            "authorizedprincipalscommand",
            "authorizedprincipalscommanduser",
            "AuthorizedPrincipalsCommand set without AuthorizedPrincipalsCommandUser",
        ),
    ] {
        if let Some(v) = g.get(cmd) {
            let set = v
                .args
                .first()
                .is_some_and(|c| !c.eq_ignore_ascii_case("none"));
            if set && g.get(user).is_none() {
                let (file, line) = v.origin.first().cloned().unwrap_or_default();
                push_post(a, name.to_owned(), file, line);
                return;
            }
        }
    }
    if let Some(v) = g.get("authenticationmethods") {
        if v.args.len() == 1 && v.args[0] == "any" {
            return;
        }
        let enabled = |m: &str| -> bool {
            match m {
                "none" => true,
                "publickey" => g.pubkey_authentication(),
                "password" => g.password_authentication(),
                "keyboard-interactive" => g.kbd_interactive_authentication(),
                "hostbased" => g.flag("hostbasedauthentication").unwrap_or(false),
                "gssapi-with-mic" => g.flag("gssapiauthentication").unwrap_or(false),
                _ => false,
            }
        };
        let (file, line) = v.origin.first().cloned().unwrap_or_default();
        let mut satisfiable = false;
        let mut errors = Vec::new();
        for list in &v.args {
            let disabled = list
                .split(',')
                .map(|m| m.split(':').next().unwrap_or(m))
                .find(|m| !enabled(m));
            match disabled {
                None => {
                    satisfiable = true;
                    break;
                }
                Some(m) => errors.push(format!(
                    "Disabled method \"{m}\" in AuthenticationMethods list \"{list}\""
                )),
            }
        }
        if !satisfiable {
            let reached = !a.messages.iter().any(|m| m.level == MsgLevel::Fatal);
            for e in errors {
                a.messages.push(Message {
                    level: MsgLevel::Error,
                    text: log::render(e.as_bytes(), log::Sink::Stderr),
                    file: file.clone(),
                    line,
                    reached,
                });
            }
            push_post(
                a,
                "AuthenticationMethods cannot be satisfied by enabled authentication methods"
                    .into(),
                file,
                line,
            );
        }
    }
}

/// Fuzz entry point: parses, renders, analyses for several releases with
/// the input also reachable as an include (loops included), evaluates
/// `Match` for a connection and tries every edit.
#[doc(hidden)]
pub fn fuzz_sshd_config(data: &[u8]) {
    let doc = SshdConfig::parse(data);
    assert_eq!(doc.render(), data);
    let mut src = MemorySource::new();
    src.insert("/etc/ssh/sshd_config", data.to_vec());
    // Half the inputs also include themselves (a loop down to sshd's depth
    // limit); the other half include a fixed file, which keeps this quick.
    let included: &[u8] = if data.len().is_multiple_of(2) {
        data
    } else {
        b"PermitRootLogin no\nInclude x\n"
    };
    src.insert("/etc/ssh/sshd_config.d/a.conf", included.to_vec());
    src.insert(
        "/etc/ssh/x",
        b"Port 2222\nMatch User root\nPermitRootLogin no\n".to_vec(),
    );
    let limits = Limits {
        max_lines: 20_000,
        ..Limits::default()
    };
    for (v, d, with_includes) in [
        (OpensshVersion::new(9, 2), Distro::Debian, true),
        (OpensshVersion::new(7, 4), Distro::Rhel, false),
        (OpensshVersion::new(8, 4), Distro::Debian, false),
        (OpensshVersion::new(10, 0), Distro::Upstream, false),
    ] {
        let t = Target::new(v, d);
        let source: Option<&dyn IncludeSource> = if with_includes { Some(&src) } else { None };
        let a = analyze(DEFAULT_CONFIG_PATH, data, &t, source, limits);
        for m in &a.messages {
            assert!(m.text.len() <= 1021);
        }
        let conn = Connection {
            user: "root".into(),
            groups: vec!["root".into()],
            host: None,
            address: Some("192.0.2.1".into()),
            local_address: None,
            local_port: Some(22),
            rdomain: None,
            invalid_user: false,
        };
        let s = effective(&a, &conn);
        let _ = (
            s.ports(),
            s.permit_root_login(),
            s.host_keys(),
            s.authorized_keys_paths("root", "/root", 0),
            s.access_lists(&conn),
            s.subsystems(),
            s.kbd_interactive_authentication(),
            s.pid_file(),
        );
    }
    for line in doc.lines.iter().take(4) {
        let n = line.number;
        for edited in [
            doc.comment_out(n, "reason"),
            doc.replace_keyword(n, "PermitRootLogin"),
            doc.set_value(n, "no"),
        ]
        .into_iter()
        .flatten()
        {
            let _ = SshdConfig::parse(&edited);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const SAMPLE: &[u8] = b"# Debian-like sshd_config\n\
Include /etc/ssh/sshd_config.d/*.conf\n\
\n\
Port 22\n\
#PermitRootLogin prohibit-password\n\
PasswordAuthentication = no\n\
KbdInteractiveAuthentication=no\r\n\
UsePAM yes\n\
AcceptEnv LANG LC_*   # locale\n\
Subsystem\tsftp\t/usr/lib/openssh/sftp-server\n\
AuthorizedKeysFile \".ssh/authorized keys\" .ssh/authorized_keys2\n\
\"Port 2\n\
Match User anoncvs\n\
\tX11Forwarding no\n\
\tForceCommand cvs server\n";

    fn t92() -> Target {
        Target::new(OpensshVersion::new(9, 2), Distro::Debian)
    }

    #[test]
    fn round_trip_and_classes() {
        let doc = SshdConfig::parse(SAMPLE);
        assert_eq!(doc.render(), SAMPLE);
        assert!(matches!(doc.lines[0].kind, LineKind::Comment));
        assert!(matches!(doc.lines[2].kind, LineKind::Blank));
        assert!(matches!(doc.lines[11].kind, LineKind::Unparsed));
        let (n, d) = doc.directives().nth(2).unwrap();
        assert_eq!(n, 6);
        assert_eq!(d.keyword.value, "PasswordAuthentication");
        assert_eq!(d.args[0].value, "no");
        let (_, d) = doc.directives().nth(3).unwrap();
        assert_eq!(d.args[0].value, "no");
        assert_eq!(doc.slice(d.args[0].span), b"no");
        let (_, d) = doc.directives().find(|(n, _)| *n == 9).unwrap();
        assert_eq!(d.args.len(), 2);
        assert!(d.comment.is_some());
        let (_, d) = doc.directives().find(|(n, _)| *n == 11).unwrap();
        assert_eq!(d.args[0].value, ".ssh/authorized keys");
        assert_eq!(doc.slice(d.args[0].span), b"\".ssh/authorized keys\"");
    }

    #[test]
    fn edits_touch_only_their_spans() {
        let doc = SshdConfig::parse(SAMPLE);
        let out = doc.set_value(6, "yes").unwrap();
        assert_eq!(
            out,
            SAMPLE.to_vec().replace_bytes(
                b"PasswordAuthentication = no",
                b"PasswordAuthentication = yes"
            )
        );
        let out = doc.replace_keyword(8, "UsePrivilegeSeparation").unwrap();
        assert!(String::from_utf8_lossy(&out).contains("\nUsePrivilegeSeparation yes\nAcceptEnv"));
        let out = doc.comment_out(7, "deprecated").unwrap();
        let s = String::from_utf8_lossy(&out);
        assert!(
            s.contains("# deprecated\r\n#KbdInteractiveAuthentication=no\r\n"),
            "{s}"
        );
        assert_eq!(out.len(), SAMPLE.len() + "# deprecated\r\n#".len());
        let out = doc.set_value(9, "LANG").unwrap();
        assert!(String::from_utf8_lossy(&out).contains("AcceptEnv LANG   # locale\n"));
        assert_eq!(doc.set_value(1, "x"), Err(EditError::NotADirective(1)));
        assert_eq!(doc.set_value(99, "x"), Err(EditError::NoSuchLine(99)));
        assert!(doc.replace_keyword(4, "a b").is_err());
        assert!(doc.set_value(4, "1\n2").is_err());
        let bare = SshdConfig::parse(b"PermitRootLogin\n");
        assert_eq!(bare.set_value(1, "no").unwrap(), b"PermitRootLogin no\n");
        assert_eq!(quote_arg("a b"), "\"a b\"");
        assert_eq!(quote_arg("plain"), "plain");
        assert_eq!(quote_arg("q\"\\"), "\"q\\\"\\\\\"");
    }

    trait ReplaceBytes {
        fn replace_bytes(self, from: &[u8], to: &[u8]) -> Vec<u8>;
    }
    impl ReplaceBytes for Vec<u8> {
        fn replace_bytes(self, from: &[u8], to: &[u8]) -> Vec<u8> {
            let i = self.windows(from.len()).position(|w| w == from).unwrap();
            let mut v = self[..i].to_vec();
            v.extend_from_slice(to);
            v.extend_from_slice(&self[i + from.len()..]);
            v
        }
    }

    #[test]
    fn validation_messages() {
        let cfg = b"Port 22\nasswordAuthentication yes\nPasswordAuthentication maybe\n";
        let a = analyze("/etc/ssh/sshd_config", cfg, &t92(), None, Limits::default());
        assert_eq!(
            a.sshd_output(),
            [
                "/etc/ssh/sshd_config: line 2: Bad configuration option: asswordAuthentication",
                "/etc/ssh/sshd_config line 3: unsupported option \"maybe\".",
            ]
        );
        let v = &a.verdicts[1];
        assert_eq!(v.status, Status::Error);
        assert_eq!(v.suggestion.as_deref(), Some("PasswordAuthentication"));
        assert_eq!(a.verdicts[2].status, Status::Fatal);
        // Release 7.4 words the same mistake differently.
        let t74 = Target::new(OpensshVersion::new(7, 4), Distro::Rhel);
        let a = analyze(
            "/etc/ssh/sshd_config",
            b"PasswordAuthentication maybe\nPort 22 x\n",
            &t74,
            None,
            Limits::default(),
        );
        assert_eq!(
            a.messages[0].text,
            "/etc/ssh/sshd_config line 1: Bad yes/no argument: maybe"
        );
        assert_eq!(
            a.messages[1].text,
            "/etc/ssh/sshd_config line 2: garbage at end of line; \"x\"."
        );
        assert!(!a.messages[1].reached);
    }

    #[test]
    fn deprecated_and_unsupported() {
        let a = analyze(
            "c",
            b"UsePrivilegeSeparation sandbox\nKerberosGetAFSToken no\nProtocol 2\n",
            &t92(),
            None,
            Limits::default(),
        );
        assert_eq!(
            a.sshd_output(),
            [
                "c line 1: Deprecated option UsePrivilegeSeparation",
                "c line 2: Unsupported option KerberosGetAFSToken"
            ]
        );
        assert_eq!(a.verdicts[2].status, Status::Ignored);
        assert!(!a.fails());
        let t74 = Target::new(OpensshVersion::new(7, 4), Distro::Rhel);
        let a = analyze(
            "c",
            b"UsePrivilegeSeparation sandbox\n",
            &t74,
            None,
            Limits::default(),
        );
        assert_eq!(a.verdicts[0].status, Status::Ok);
    }

    #[test]
    fn includes_and_loops() {
        let mut src = MemorySource::new();
        src.insert(
            "/etc/ssh/sshd_config.d/10-a.conf",
            b"PasswordAuthentication no\n".to_vec(),
        );
        src.insert(
            "/etc/ssh/sshd_config.d/20-b.conf",
            b"Port 2222\nBogus yes\n".to_vec(),
        );
        src.insert("/etc/ssh/loop.conf", b"Include loop.conf\n".to_vec());
        let a = resolve(
            "/etc/ssh/sshd_config",
            b"Include sshd_config.d/*.conf\nPasswordAuthentication yes\n",
            &t92(),
            &src,
        );
        assert_eq!(a.files.len(), 3);
        assert_eq!(
            a.sshd_output(),
            [
                "/etc/ssh/sshd_config.d/20-b.conf: line 2: Bad configuration option: Bogus",
                "/etc/ssh/sshd_config.d/20-b.conf: terminating, 1 bad configuration options",
            ]
        );
        let g = global_settings(&a);
        assert!(!g.password_authentication());
        assert_eq!(g.ports(), vec![2222]);
        let a = resolve("/etc/ssh/sshd_config", b"Include loop.conf\n", &t92(), &src);
        assert_eq!(
            a.sshd_output(),
            ["Too many recursive configuration includes"]
        );
        assert!(a
            .diagnostics
            .iter()
            .any(|d| d.message.contains("include loop")));
        assert_eq!(a.verdicts[0].status, Status::Fatal);
    }

    #[test]
    fn effective_settings_with_match() {
        let cfg = b"PermitRootLogin no\nPasswordAuthentication no\nAllowUsers alice bob@10.0.0.0/8 root\n\
Match User alice\n  PasswordAuthentication yes\n\
Match Address 192.168.0.0/16,!192.168.5.0/24\n  PermitRootLogin yes\n\
Match Host *.example.com\n  PubkeyAuthentication no\n";
        let a = analyze(DEFAULT_CONFIG_PATH, cfg, &t92(), None, Limits::default());
        assert!(!a.fails(), "{:?}", a.messages);
        let mut conn = Connection {
            user: "alice".into(),
            groups: vec!["alice".into()],
            address: Some("192.168.1.9".into()),
            ..Connection::default()
        };
        let s = effective(&a, &conn);
        assert!(s.password_authentication());
        assert_eq!(s.permit_root_login(), PermitRootLogin::Yes);
        // UseDNS no: Match Host compares the address, so it is decided.
        assert!(s.pubkey_authentication());
        assert!(s.uncertain.is_empty());
        assert_eq!(s.access_lists(&conn), Access::Allowed);
        conn.user = "bob".into();
        conn.address = Some("192.168.5.1".into());
        let s = effective(&a, &conn);
        assert!(!s.password_authentication());
        assert_eq!(s.permit_root_login(), PermitRootLogin::No);
        assert_eq!(
            s.access_lists(&conn),
            Access::Denied {
                reason: "not listed in AllowUsers".into()
            }
        );
        conn.address = None;
        let s = effective(&a, &conn);
        // Match Address, and Match Host which compares the address too.
        assert_eq!(s.uncertain.len(), 2);
        assert_eq!(s.maybe_overridden("permitrootlogin").len(), 1);
        assert!(matches!(s.access_lists(&conn), Access::Unknown { .. }));
    }

    #[test]
    fn defaults_per_release() {
        let a = analyze("c", b"", &t92(), None, Limits::default());
        let g = global_settings(&a);
        assert_eq!(
            g.host_keys(),
            [
                "/etc/ssh/ssh_host_rsa_key",
                "/etc/ssh/ssh_host_ecdsa_key",
                "/etc/ssh/ssh_host_ed25519_key"
            ]
        );
        assert_eq!(g.pid_file().as_deref(), Some("/run/sshd.pid"));
        assert_eq!(g.ports(), vec![22]);
        assert_eq!(
            g.authorized_keys_paths("bob", "/home/bob", 1000).unwrap(),
            [
                "/home/bob/.ssh/authorized_keys",
                "/home/bob/.ssh/authorized_keys2"
            ]
        );
        assert!(g.kbd_interactive_authentication());
        let t74 = Target::new(OpensshVersion::new(7, 4), Distro::Rhel);
        let a = analyze(
            "c",
            b"ChallengeResponseAuthentication no\n",
            &t74,
            None,
            Limits::default(),
        );
        let g = global_settings(&a);
        assert_eq!(g.host_keys().len(), 4);
        assert_eq!(g.pid_file().as_deref(), Some("/var/run/sshd.pid"));
        assert!(!g.kbd_interactive_authentication());
    }

    #[test]
    fn post_parse_checks_like_sshd() {
        let a = analyze(
            "c",
            b"AuthorizedKeysCommand /bin/true\n",
            &t92(),
            None,
            Limits::default(),
        );
        assert_eq!(
            a.sshd_output(),
            ["AuthorizedKeysCommand set without AuthorizedKeysCommandUser"]
        );
        let a = analyze(
            "c",
            b"PasswordAuthentication no\nAuthenticationMethods password\n",
            &t92(),
            None,
            Limits::default(),
        );
        assert_eq!(
            a.sshd_output(),
            [
                "Disabled method \"password\" in AuthenticationMethods list \"password\"",
                "AuthenticationMethods cannot be satisfied by enabled authentication methods"
            ]
        );
    }

    #[test]
    fn oversized_input_is_refused_not_parsed() {
        let limits = Limits {
            max_file_bytes: 1000,
            ..Limits::default()
        };
        let big = "Port 22\n".repeat(200);
        let a = analyze("c", big.as_bytes(), &t92(), None, limits);
        assert!(!a.complete);
        assert!(a.verdicts.is_empty());
        assert!(a.diagnostics[0].message.contains("not checked"));
        // The line cap bounds include bombs: every file includes itself twice.
        let mut src = MemorySource::new();
        src.insert(
            "/etc/ssh/a",
            b"Include /etc/ssh/a /etc/ssh/a\nPort 22\n".to_vec(),
        );
        let limits = Limits {
            max_lines: 5_000,
            ..Limits::default()
        };
        let a = analyze(
            "/etc/ssh/sshd_config",
            b"Include a\n",
            &t92(),
            Some(&src),
            limits,
        );
        assert!(a.fails());
        assert_eq!(
            a.sshd_output(),
            ["Too many recursive configuration includes"]
        );
    }

    #[test]
    fn mutations_never_panic() {
        crate::text::mutate_and_run(SAMPLE, 3000, 0x55d_c0f, fuzz_sshd_config);
    }
}
