//! iptables-save / ip6tables-save files (`/etc/iptables/rules.v4`,
//! `/etc/sysconfig/iptables`, ufw's `*.rules`), read with
//! iptables-restore's semantics, and the walk of the `filter` table's INPUT
//! chain for a new inbound TCP connection.
//!
//! Restore semantics modelled: `*table` starts a table that replaces the
//! previous one when `COMMIT`ted; `:CHAIN POLICY [p:b]` declares chains and
//! sets built-in policies; `-A`/`-I`/`-N`/`-P`/`-F` commands; arguments are
//! split on blanks with `"`/`'` quoting. Rules are matched three-valued
//! (yes / no / depends on something the file cannot tell) over protocol,
//! ports (`--dport`, `-m multiport --dports`), interfaces (`-i lo` never
//! sees remote traffic), conntrack/state (`ESTABLISHED,RELATED` rules do not
//! admit new connections), TCP flags, addrtype, and the common modules;
//! jumps to user chains are followed up to a depth cap.
//!
//! Lossless: [`IptablesSave::render`] returns the input until an edit; the
//! edit inserts one ACCEPT rule as the first rule of INPUT. Never does I/O,
//! never panics.

use std::collections::BTreeMap;

use serde::Serialize;

use super::{service_port, FirewallVerdict, RuleRef, Tri, STEP_BUDGET};
use crate::text;
use crate::{Diagnostic, Span};

/// The built-in chains of the iptables tables.
const BUILTIN_CHAINS: &[&str] = &["INPUT", "OUTPUT", "FORWARD", "PREROUTING", "POSTROUTING"];

/// How deep jumps between user chains are followed.
const MAX_DEPTH: usize = 32;

/// What a line of the file is.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, schemars::JsonSchema)]
#[serde(tag = "type", rename_all = "snake_case")]
pub enum IptLineKind {
    /// Empty.
    Blank,
    /// `#` comment.
    Comment,
    /// `*table`.
    Table {
        /// Table name.
        name: String,
    },
    /// `:CHAIN POLICY [packets:bytes]`.
    Chain {
        /// Chain name.
        name: String,
        /// Policy (`-` for user chains).
        policy: String,
    },
    /// A command line (`-A`, `-I`, …).
    Command {
        /// The arguments, unquoted.
        args: Vec<String>,
    },
    /// `COMMIT`.
    Commit,
    /// Anything else (iptables-restore rejects it).
    Invalid,
}

/// One line.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, schemars::JsonSchema)]
pub struct IptLine {
    /// 1-based line number.
    pub number: usize,
    /// The line's bytes, without the newline.
    pub span: Span,
    /// What it is.
    pub kind: IptLineKind,
}

/// A parsed iptables-save file.
#[derive(Debug, Clone, Serialize, schemars::JsonSchema)]
pub struct IptablesSave {
    #[serde(skip)]
    source: Vec<u8>,
    /// The guest path (for evidence).
    pub path: String,
    /// Every line.
    pub lines: Vec<IptLine>,
    /// Problems found.
    pub diagnostics: Vec<Diagnostic>,
}

/// Splits a restore line into arguments: blanks separate, `"…"` and `'…'`
/// group (quotes removed), `\"` inside double quotes is a quote.
pub(crate) fn split_args(line: &str) -> Vec<String> {
    let mut out = Vec::new();
    let mut cur = String::new();
    let mut have = false;
    let mut quote: Option<char> = None;
    let mut chars = line.chars().peekable();
    while let Some(c) = chars.next() {
        match quote {
            Some(q) => {
                if c == '\\' && q == '"' && chars.peek() == Some(&'"') {
                    cur.push('"');
                    chars.next();
                } else if c == q {
                    quote = None;
                } else {
                    cur.push(c);
                }
            }
            None => match c {
                ' ' | '\t' | '\r' => {
                    if have {
                        out.push(std::mem::take(&mut cur));
                        have = false;
                    }
                }
                '"' | '\'' => {
                    quote = Some(c);
                    have = true;
                }
                _ => {
                    cur.push(c);
                    have = true;
                }
            },
        }
    }
    if have {
        out.push(cur);
    }
    out
}

impl IptablesSave {
    /// Parses iptables-save bytes; `path` names the file in evidence.
    /// Never fails.
    pub fn parse(path: &str, data: &[u8]) -> IptablesSave {
        let mut lines = Vec::new();
        let mut diagnostics = Vec::new();
        let mut in_table: Option<(String, usize)> = None;
        for raw in text::lines(data) {
            let (s, _) = text::lossy(raw.content.slice(data));
            if s.ends_with('\r') && !s.trim_start().starts_with('#') {
                // iptables-restore strips only the newline: "*filter\r" is
                // an unknown table, "ACCEPT\r" an unknown target.
                diagnostics.push(Diagnostic::new(
                    raw.number,
                    "line ends with a carriage return (CRLF file): iptables-restore fails on it",
                ));
            }
            let t = s.trim();
            let kind = if t.is_empty() {
                IptLineKind::Blank
            } else if t.starts_with('#') {
                IptLineKind::Comment
            } else if let Some(name) = t.strip_prefix('*') {
                if let Some((prev, at)) = &in_table {
                    diagnostics.push(Diagnostic::new(
                        raw.number,
                        format!("table {prev} (line {at}) has no COMMIT before this table: iptables-restore fails"),
                    ));
                }
                in_table = Some((name.to_owned(), raw.number));
                IptLineKind::Table {
                    name: name.to_owned(),
                }
            } else if let Some(rest) = t.strip_prefix(':') {
                let mut it = rest.split_whitespace();
                let name = it.next().unwrap_or("").to_owned();
                let policy = it.next().unwrap_or("").to_owned();
                if in_table.is_none() {
                    diagnostics.push(Diagnostic::new(
                        raw.number,
                        "chain declaration outside a table",
                    ));
                }
                if !matches!(policy.as_str(), "ACCEPT" | "DROP" | "-") {
                    diagnostics.push(Diagnostic::new(
                        raw.number,
                        format!("chain {name} has an invalid policy {policy:?}"),
                    ));
                }
                IptLineKind::Chain { name, policy }
            } else if t == "COMMIT" {
                if in_table.take().is_none() {
                    diagnostics.push(Diagnostic::new(raw.number, "COMMIT without a table"));
                }
                IptLineKind::Commit
            } else if t.starts_with('-') || t.starts_with('[') {
                if in_table.is_none() {
                    diagnostics.push(Diagnostic::new(
                        raw.number,
                        "command outside a table: iptables-restore fails",
                    ));
                }
                let mut args = split_args(t);
                // `iptables-save -c` prefixes rules with `[packets:bytes]`.
                if args.first().is_some_and(|a| a.starts_with('[')) {
                    args.remove(0);
                }
                IptLineKind::Command { args }
            } else {
                diagnostics.push(Diagnostic::new(
                    raw.number,
                    format!("not an iptables-restore line: {t:?}"),
                ));
                IptLineKind::Invalid
            };
            lines.push(IptLine {
                number: raw.number,
                span: raw.content,
                kind,
            });
        }
        if let Some((name, at)) = in_table {
            diagnostics.push(Diagnostic::new(
                at,
                format!(
                    "table {name} is never COMMITted: iptables-restore fails and loads none of it"
                ),
            ));
        }
        IptablesSave {
            source: data.to_vec(),
            path: path.to_owned(),
            lines,
            diagnostics,
        }
    }

    /// The bytes of the document; identical to the input until an edit.
    pub fn render(&self) -> Vec<u8> {
        self.source.clone()
    }

    fn rule_ref(&self, line: &IptLine) -> RuleRef {
        RuleRef {
            file: self.path.clone(),
            line: line.number,
            rule: text::lossy(line.span.slice(&self.source))
                .0
                .trim()
                .to_owned(),
        }
    }

    /// The chains of the last committed `table` block, applied over `base`
    /// (`noflush`: added to it, as `iptables-restore -n`; otherwise the
    /// table replaces it). `Err` when the file has no committed block of
    /// that table.
    pub(crate) fn apply_table(
        &self,
        table: &str,
        base: &mut ChainSet,
        noflush: bool,
    ) -> Result<(), String> {
        // Find the last committed block of the table.
        let mut blocks: Vec<(usize, usize)> = Vec::new();
        let mut start: Option<usize> = None;
        for (i, l) in self.lines.iter().enumerate() {
            match &l.kind {
                IptLineKind::Table { name } => start = (name == table).then_some(i),
                IptLineKind::Commit => {
                    if let Some(s) = start.take() {
                        blocks.push((s, i));
                    }
                }
                _ => {}
            }
        }
        if blocks.is_empty() {
            return Err(format!("no committed *{table} table"));
        }
        // Without --noflush every committed block replaces the table; with
        // it, each block adds to what is there.
        let apply: Vec<(usize, usize)> = if noflush {
            blocks
        } else {
            vec![*blocks.last().unwrap_or(&(0, 0))]
        };
        for (s, e) in apply {
            if !noflush {
                *base = ChainSet::default();
            }
            for l in &self.lines[s + 1..e] {
                match &l.kind {
                    IptLineKind::Chain { name, policy } => {
                        let c = base.chains.entry(name.clone()).or_default();
                        if policy != "-" {
                            c.policy = Some((policy.clone(), self.rule_ref(l)));
                        }
                        // iptables-restore flushes a declared user chain
                        // (with --noflush; without it the whole table was
                        // flushed already); built-in chains only get their
                        // policy set.
                        if !BUILTIN_CHAINS.contains(&name.as_str()) {
                            c.rules.clear();
                        }
                    }
                    IptLineKind::Command { args } => self.apply_command(base, l, args),
                    _ => {}
                }
            }
        }
        Ok(())
    }

    fn apply_command(&self, set: &mut ChainSet, l: &IptLine, args: &[String]) {
        let Some(cmd) = args.first() else { return };
        let chain = args.get(1).cloned().unwrap_or_default();
        match cmd.as_str() {
            "-A" | "--append" => {
                set.chains.entry(chain).or_default().rules.push(ChainRule {
                    rref: self.rule_ref(l),
                    args: args[2.min(args.len())..].to_vec(),
                });
            }
            "-I" | "--insert" => {
                // Inserting is linear in the chain length: refuse to model
                // absurd numbers of inserts rather than go quadratic.
                set.inserts += 1;
                if set.inserts > 10_000 {
                    set.unsupported.push(self.rule_ref(l));
                    return;
                }
                let (pos, rest) = match args.get(2).and_then(|a| a.parse::<usize>().ok()) {
                    Some(n) => (n.saturating_sub(1), &args[3.min(args.len())..]),
                    None => (0, &args[2.min(args.len())..]),
                };
                let c = set.chains.entry(chain).or_default();
                let at = pos.min(c.rules.len());
                c.rules.insert(
                    at,
                    ChainRule {
                        rref: self.rule_ref(l),
                        args: rest.to_vec(),
                    },
                );
            }
            "-N" | "--new-chain" => {
                set.chains.entry(chain).or_default();
            }
            "-P" | "--policy" => {
                let policy = args.get(2).cloned().unwrap_or_default();
                set.chains.entry(chain).or_default().policy = Some((policy, self.rule_ref(l)));
            }
            "-F" | "--flush" => {
                if chain.is_empty() {
                    for c in set.chains.values_mut() {
                        c.rules.clear();
                    }
                } else if let Some(c) = set.chains.get_mut(&chain) {
                    c.rules.clear();
                }
            }
            "-X" | "--delete-chain" => {
                set.chains.remove(&chain);
            }
            _ => set.unsupported.push(self.rule_ref(l)),
        }
    }

    /// Whether a new inbound TCP connection to `port` passes the filter
    /// table's INPUT chain.
    pub fn inbound_tcp(&self, port: u16) -> FirewallVerdict {
        let mut set = ChainSet::default();
        if let Some(d) = self
            .diagnostics
            .iter()
            .find(|d| d.message.contains("iptables-restore fails"))
        {
            return FirewallVerdict::Unknown {
                why: format!("{} line {}: {}", self.path, d.line, d.message),
                evidence: Vec::new(),
            };
        }
        if let Err(e) = self.apply_table("filter", &mut set, false) {
            return FirewallVerdict::Allowed {
                evidence: vec![RuleRef {
                    file: self.path.clone(),
                    line: 0,
                    rule: format!("{e}: nothing filters"),
                }],
                note: String::new(),
            };
        }
        let ipv6 = self.looks_ipv6();
        set.verdict("INPUT", port, ipv6, "ACCEPT")
    }

    fn looks_ipv6(&self) -> bool {
        let s = String::from_utf8_lossy(&self.source);
        s.contains("::/0")
            || s.contains("ipv6-icmp")
            || s.contains("icmpv6")
            || self.path.contains("v6")
            || self.path.contains("ip6")
    }

    /// Inserts `-A INPUT -p tcp -m tcp --dport <port> -j ACCEPT` (with a
    /// `# rescue-disk:` comment line above it) as the first INPUT rule of
    /// the last `*filter` block, so it precedes every rule that could drop
    /// the connection. Returns the span of the inserted text.
    pub fn allow_tcp_port(&mut self, port: u16) -> Result<Span, String> {
        let mut filter_start = None;
        let mut block: Option<(usize, usize)> = None;
        for (i, l) in self.lines.iter().enumerate() {
            match &l.kind {
                IptLineKind::Table { name } => filter_start = (name == "filter").then_some(i),
                IptLineKind::Commit => {
                    if let Some(s) = filter_start.take() {
                        block = Some((s, i));
                    }
                }
                _ => {}
            }
        }
        let (s, e) = block.ok_or("no committed *filter table to add the rule to")?;
        // Before the first INPUT rule, else before COMMIT.
        let at = self.lines[s + 1..e]
            .iter()
            .find(|l| {
                matches!(&l.kind, IptLineKind::Command { args }
                    if args.first().is_some_and(|a| a == "-A" || a == "-I") && args.get(1).is_some_and(|c| c == "INPUT"))
            })
            .unwrap_or(&self.lines[e]);
        let offset = at.span.start;
        let eol = if at.span.slice(&self.source).ends_with(b"\r") {
            "\r\n"
        } else {
            "\n"
        };
        let insert = format!("# rescue-disk: allow new SSH connections{eol}-A INPUT -p tcp -m tcp --dport {port} -j ACCEPT{eol}");
        let mut out = self.source.clone();
        out.splice(offset..offset, insert.bytes());
        *self = IptablesSave::parse(&self.path, &out);
        Ok(Span::new(offset, offset + insert.len()))
    }
}

/// A rule in a chain, with where it came from.
#[derive(Debug, Clone)]
pub(crate) struct ChainRule {
    pub(crate) rref: RuleRef,
    pub(crate) args: Vec<String>,
}

/// A chain: its policy (built-in chains) and rules.
#[derive(Debug, Clone, Default)]
pub(crate) struct Chain {
    pub(crate) policy: Option<(String, RuleRef)>,
    pub(crate) rules: Vec<ChainRule>,
}

/// The chains of one table.
#[derive(Debug, Clone, Default)]
pub(crate) struct ChainSet {
    pub(crate) chains: BTreeMap<String, Chain>,
    pub(crate) unsupported: Vec<RuleRef>,
    inserts: usize,
}

/// Where a rule sends a packet.
#[derive(Debug, Clone, PartialEq, Eq)]
enum Target {
    Accept,
    Drop,
    Reject,
    Return,
    Queue,
    Jump(String),
    Goto(String),
    /// LOG, MARK and other targets that let the packet continue.
    Continue,
    /// No target: the rule only counts.
    None,
}

fn port_spec_matches(spec: &str, port: u16) -> Tri {
    let one = |s: &str| -> Option<u16> { s.parse::<u16>().ok().or_else(|| service_port(s)) };
    match spec.split_once(':') {
        Some((a, b)) => {
            let lo = if a.is_empty() { Some(0) } else { one(a) };
            let hi = if b.is_empty() { Some(65535) } else { one(b) };
            match (lo, hi) {
                (Some(lo), Some(hi)) => {
                    if (lo..=hi).contains(&port) {
                        Tri::Yes
                    } else {
                        Tri::No
                    }
                }
                _ => Tri::Maybe(format!("port range {spec:?} uses unknown service names")),
            }
        }
        None => match one(spec) {
            Some(p) if p == port => Tri::Yes,
            Some(_) => Tri::No,
            None => Tri::Maybe(format!(
                "port {spec:?} is a service name resolved at load time"
            )),
        },
    }
}

fn port_list_matches(list: &str, port: u16) -> Tri {
    let mut maybe = None;
    for item in list.split(',') {
        match port_spec_matches(item, port) {
            Tri::Yes => return Tri::Yes,
            Tri::Maybe(c) => maybe = Some(c),
            Tri::No => {}
        }
    }
    maybe.map_or(Tri::No, Tri::Maybe)
}

fn is_any_addr(v: &str) -> bool {
    matches!(
        v,
        "0.0.0.0/0" | "0/0" | "::/0" | "0.0.0.0/0.0.0.0" | "::0/0"
    )
}

/// The TCP flags of the first packet of a connection: SYN only.
fn tcp_flags_match(mask: &str, comp: &str) -> Tri {
    let bits = |s: &str| -> Option<u8> {
        let mut v = 0u8;
        for f in s.split(',') {
            v |= match f.to_ascii_uppercase().as_str() {
                "FIN" => 0x01,
                "SYN" => 0x02,
                "RST" => 0x04,
                "PSH" => 0x08,
                "ACK" => 0x10,
                "URG" => 0x20,
                "ECE" => 0x40,
                "CWR" => 0x80,
                "ALL" => 0xff,
                "NONE" => 0,
                _ => return None,
            };
        }
        Some(v)
    };
    match (bits(mask), bits(comp)) {
        (Some(m), Some(c)) => {
            if 0x02 & m == c {
                Tri::Yes
            } else {
                Tri::No
            }
        }
        _ => Tri::Maybe(format!("tcp flags {mask} {comp}")),
    }
}

/// Matches a rule's arguments (after `-A CHAIN`) against the probe.
fn match_rule(args: &[String], port: u16) -> (Tri, Target) {
    let mut m = Tri::Yes;
    let mut target = Target::None;
    let mut i = 0;
    let mut neg = false;
    let take = |i: &mut usize| -> String {
        *i += 1;
        args.get(*i).cloned().unwrap_or_default()
    };
    while i < args.len() {
        let a = args[i].as_str();
        if a == "!" {
            neg = !neg;
            i += 1;
            continue;
        }
        let mut r: Option<Tri> = None;
        // A value may carry the old `! value` / `!value` negation.
        let value = |i: &mut usize, neg: &mut bool| -> String {
            let mut v = take(i);
            if v == "!" {
                *neg = !*neg;
                v = take(i);
            } else if let Some(x) = v.strip_prefix('!') {
                *neg = !*neg;
                v = x.to_owned();
            }
            v
        };
        match a {
            "-p" | "--protocol" | "--proto" => {
                let v = value(&mut i, &mut neg).to_ascii_lowercase();
                r = Some(match v.as_str() {
                    "tcp" | "6" | "all" | "0" => Tri::Yes,
                    _ => Tri::No,
                });
            }
            "-s" | "--source" | "--src" => {
                let v = value(&mut i, &mut neg);
                r = Some(if is_any_addr(&v) {
                    Tri::Yes
                } else {
                    Tri::Maybe(format!("the client address is in {v}"))
                });
            }
            "-d" | "--destination" | "--dst" => {
                let v = value(&mut i, &mut neg);
                r = Some(if is_any_addr(&v) {
                    Tri::Yes
                } else {
                    Tri::Maybe(format!("the guest address is in {v}"))
                });
            }
            "-i" | "--in-interface" => {
                let v = value(&mut i, &mut neg);
                r = Some(if v == "lo" || v == "lo+" {
                    Tri::No
                } else if v == "+" {
                    Tri::Yes
                } else {
                    Tri::Maybe(format!("the input interface is {v}"))
                });
            }
            "-o" | "--out-interface" => {
                value(&mut i, &mut neg);
                r = Some(Tri::Yes);
            }
            "-f" | "--fragment" => r = Some(Tri::No),
            "-m" | "--match" => {
                take(&mut i);
            }
            "-c" | "--set-counters" => {
                take(&mut i);
                take(&mut i);
            }
            "-j" | "--jump" => {
                let v = take(&mut i);
                target = match v.as_str() {
                    "ACCEPT" => Target::Accept,
                    "DROP" => Target::Drop,
                    "REJECT" => Target::Reject,
                    "RETURN" => Target::Return,
                    "QUEUE" | "NFQUEUE" => Target::Queue,
                    "LOG" | "NFLOG" | "ULOG" | "AUDIT" | "MARK" | "CONNMARK" | "CT" | "NOTRACK"
                    | "TRACE" | "TCPMSS" | "DSCP" | "TOS" | "SET" | "CLASSIFY" | "CHECKSUM"
                    | "TTL" | "HL" | "SECMARK" | "CONNSECMARK" | "IDLETIMER" | "LED" | "HMARK"
                    | "SYNPROXY" => Target::Continue,
                    other => Target::Jump(other.to_owned()),
                };
                // Target options follow; they do not match anything.
                break;
            }
            "-g" | "--goto" => {
                target = Target::Goto(take(&mut i));
                break;
            }
            "--dport" | "--destination-port" => {
                let v = value(&mut i, &mut neg);
                r = Some(port_spec_matches(&v, port));
            }
            "--dports" | "--destination-ports" => {
                let v = value(&mut i, &mut neg);
                r = Some(port_list_matches(&v, port));
            }
            "--ports" => {
                let v = value(&mut i, &mut neg);
                r = Some(match port_list_matches(&v, port) {
                    Tri::Yes => Tri::Yes,
                    _ => Tri::Maybe(format!("the client's source port is in {v}")),
                });
            }
            "--sport" | "--source-port" | "--sports" | "--source-ports" => {
                let v = value(&mut i, &mut neg);
                r = Some(if v == "0:65535" || v == ":" || v == "1:65535" {
                    Tri::Yes
                } else {
                    Tri::Maybe(format!("the client's source port is in {v}"))
                });
            }
            "--syn" => r = Some(Tri::Yes),
            "--tcp-flags" => {
                let mask = value(&mut i, &mut neg);
                let comp = take(&mut i);
                r = Some(tcp_flags_match(&mask, &comp));
            }
            "--tcp-option" => {
                let v = value(&mut i, &mut neg);
                r = Some(Tri::Maybe(format!("the SYN carries tcp option {v}")));
            }
            "--state" | "--ctstate" => {
                let v = value(&mut i, &mut neg);
                let has_new = v.split(',').any(|s| s.eq_ignore_ascii_case("NEW"));
                r = Some(if has_new { Tri::Yes } else { Tri::No });
            }
            "--comment"
            | "--log-prefix"
            | "--log-level"
            | "--name"
            | "--seconds"
            | "--hitcount"
            | "--mask"
            | "--limit-burst"
            | "--hashlimit-burst"
            | "--hashlimit-mode"
            | "--hashlimit-name"
            | "--hashlimit-htable-expire"
            | "--hashlimit-srcmask"
            | "--hashlimit-dstmask"
            | "--limit-iface-in"
            | "--limit-iface-out"
            | "--connlimit-mask"
            | "--algo"
            | "--icmp-type"
            | "--icmpv6-type" => {
                if matches!(a, "--icmp-type" | "--icmpv6-type") {
                    r = Some(Tri::No);
                }
                if !matches!(a, "--limit-iface-in" | "--limit-iface-out") {
                    take(&mut i);
                }
            }
            "--rsource" | "--rdest" | "--reap" | "--rttl" | "--connlimit-saddr"
            | "--connlimit-daddr" => {}
            "--set" => r = Some(Tri::Yes),
            "--rcheck" | "--update" | "--remove" => {
                r = Some(Tri::Maybe("the client is in a recent list".into()))
            }
            "--limit" => {
                take(&mut i);
                r = Some(Tri::Maybe("a rate limit is not exceeded".into()));
            }
            "--hashlimit" | "--hashlimit-upto" | "--hashlimit-above" | "--connlimit-above"
            | "--connlimit-upto" => {
                take(&mut i);
                r = Some(Tri::Maybe(format!("{a} is not exceeded")));
            }
            "--dst-type" => {
                let v = value(&mut i, &mut neg);
                let yes = v
                    .split(',')
                    .any(|t| matches!(t.to_ascii_uppercase().as_str(), "LOCAL" | "UNICAST"));
                r = Some(if yes { Tri::Yes } else { Tri::No });
            }
            "--src-type" => {
                let v = value(&mut i, &mut neg);
                let yes = v.split(',').any(|t| t.eq_ignore_ascii_case("UNICAST"));
                r = Some(if yes { Tri::Yes } else { Tri::No });
            }
            "--pkt-type" => {
                let v = value(&mut i, &mut neg);
                r = Some(if v.eq_ignore_ascii_case("unicast") {
                    Tri::Yes
                } else {
                    Tri::No
                });
            }
            _ if a.starts_with("--") => {
                // A match we do not model: its values run to the next option.
                while args
                    .get(i + 1)
                    .is_some_and(|n| !n.starts_with('-') && n != "!")
                {
                    i += 1;
                }
                r = Some(Tri::Maybe(format!("match {a} (not modelled)")));
            }
            _ => {}
        }
        if let Some(t) = r {
            let t = if neg { t.not() } else { t };
            m = m.and(t);
        }
        neg = false;
        i += 1;
    }
    (m, target)
}

enum Out {
    Accept(RuleRef),
    Drop(RuleRef, String),
    Unknown(String, RuleRef),
    Return,
    FellOff,
}

#[derive(Default)]
struct Ctx {
    maybe_accepts: Vec<(RuleRef, String)>,
    maybe_drops: Vec<(RuleRef, String)>,
    steps: usize,
}

impl ChainSet {
    fn walk(&self, chain: &str, port: u16, depth: usize, ctx: &mut Ctx, cond: &str) -> Out {
        let Some(c) = self.chains.get(chain) else {
            return Out::FellOff;
        };
        for rule in &c.rules {
            ctx.steps += 1;
            if ctx.steps > STEP_BUDGET {
                return Out::Unknown(
                    "the ruleset is too complex to evaluate".into(),
                    rule.rref.clone(),
                );
            }
            let (m, target) = match_rule(&rule.args, port);
            if m == Tri::No {
                continue;
            }
            let here = match &m {
                Tri::Maybe(c) if cond.is_empty() => c.clone(),
                Tri::Maybe(c) => format!("{cond} and {c}"),
                _ => cond.to_owned(),
            };
            let conditional = matches!(m, Tri::Maybe(_));
            match target {
                Target::None | Target::Continue => {}
                Target::Accept => {
                    if conditional {
                        ctx.maybe_accepts.push((rule.rref.clone(), here));
                    } else {
                        return Out::Accept(rule.rref.clone());
                    }
                }
                Target::Drop | Target::Reject => {
                    let how = if target == Target::Drop {
                        "dropped"
                    } else {
                        "rejected"
                    };
                    if conditional {
                        ctx.maybe_drops.push((rule.rref.clone(), here));
                    } else {
                        return Out::Drop(rule.rref.clone(), format!("{how} by this rule"));
                    }
                }
                Target::Queue => {
                    if conditional {
                        ctx.maybe_accepts
                            .push((rule.rref.clone(), format!("{here} (userspace queue)")));
                    } else {
                        return Out::Unknown(
                            "handed to a userspace queue (NFQUEUE)".into(),
                            rule.rref.clone(),
                        );
                    }
                }
                Target::Return => {
                    if conditional {
                        // The rest of this chain is skipped under a condition:
                        // anything can happen then.
                        ctx.maybe_accepts
                            .push((rule.rref.clone(), format!("{here} (returns early)")));
                    } else {
                        return Out::Return;
                    }
                }
                Target::Jump(ref name) | Target::Goto(ref name) => {
                    let is_goto = matches!(target, Target::Goto(_));
                    if !self.chains.contains_key(name) {
                        return Out::Unknown(
                            format!("jump to undefined chain {name} (iptables-restore rejects the file)"),
                            rule.rref.clone(),
                        );
                    }
                    if depth >= MAX_DEPTH {
                        return Out::Unknown("chain jumps nest too deep".into(), rule.rref.clone());
                    }
                    let out = self.walk(name, port, depth + 1, ctx, &here);
                    match out {
                        Out::Accept(r) if conditional => ctx.maybe_accepts.push((r, here)),
                        Out::Drop(r, _) if conditional => ctx.maybe_drops.push((r, here)),
                        Out::Unknown(why, r) if conditional => {
                            ctx.maybe_accepts.push((r, format!("{here} ({why})")))
                        }
                        Out::Accept(_) | Out::Drop(..) | Out::Unknown(..) => return out,
                        Out::Return | Out::FellOff => {
                            if is_goto && !conditional {
                                return Out::Return;
                            }
                        }
                    }
                }
            }
        }
        Out::FellOff
    }

    /// Walks built-in chain `start`; `default_policy` applies when the
    /// chain has no policy line.
    pub(crate) fn verdict(
        &self,
        start: &str,
        port: u16,
        _ipv6: bool,
        default_policy: &str,
    ) -> FirewallVerdict {
        if let Some(r) = self.unsupported.first() {
            return FirewallVerdict::Unknown {
                why: format!("{} line {}: command not modelled", r.file, r.line),
                evidence: vec![r.clone()],
            };
        }
        let mut ctx = Ctx::default();
        let out = self.walk(start, port, 0, &mut ctx, "");
        let policy = self.chains.get(start).and_then(|c| c.policy.clone());
        let out = match out {
            Out::Return | Out::FellOff => {
                let (p, rref) = policy.unwrap_or_else(|| {
                    (
                        default_policy.to_owned(),
                        RuleRef {
                            file: String::new(),
                            line: 0,
                            rule: format!("built-in {start} policy {default_policy}"),
                        },
                    )
                });
                if p == "ACCEPT" {
                    Out::Accept(rref)
                } else {
                    Out::Drop(rref, format!("the {start} policy is {p}"))
                }
            }
            o => o,
        };
        let caveats = |list: &[(RuleRef, String)]| -> String {
            list.iter()
                .map(|(r, c)| format!("line {} when {c}", r.line))
                .collect::<Vec<_>>()
                .join("; ")
        };
        match out {
            Out::Accept(r) => {
                let note = if ctx.maybe_drops.is_empty() {
                    String::new()
                } else {
                    format!("dropped instead by {}", caveats(&ctx.maybe_drops))
                };
                let mut evidence = vec![r];
                evidence.extend(ctx.maybe_drops.iter().map(|(r, _)| r.clone()));
                FirewallVerdict::Allowed { evidence, note }
            }
            Out::Drop(r, reason) => {
                if ctx.maybe_accepts.is_empty() {
                    FirewallVerdict::Blocked { rule: r, reason }
                } else {
                    let mut evidence: Vec<RuleRef> =
                        ctx.maybe_accepts.iter().map(|(r, _)| r.clone()).collect();
                    evidence.push(r.clone());
                    FirewallVerdict::Unknown {
                        why: format!(
                            "accepted only by {}; otherwise {} (line {})",
                            caveats(&ctx.maybe_accepts),
                            reason,
                            r.line
                        ),
                        evidence,
                    }
                }
            }
            Out::Unknown(why, r) => FirewallVerdict::Unknown {
                why,
                evidence: vec![r],
            },
            Out::Return | Out::FellOff => FirewallVerdict::Unknown {
                why: "internal: the walk did not end".into(),
                evidence: Vec::new(),
            },
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const RHEL7: &str = "# sample configuration for iptables service\n\
# you can edit this manually or use system-config-firewall\n\
# please do not ask us to add additional ports/services to this default configuration\n\
*filter\n\
:INPUT ACCEPT [0:0]\n\
:FORWARD ACCEPT [0:0]\n\
:OUTPUT ACCEPT [0:0]\n\
-A INPUT -m state --state RELATED,ESTABLISHED -j ACCEPT\n\
-A INPUT -p icmp -j ACCEPT\n\
-A INPUT -i lo -j ACCEPT\n\
-A INPUT -p tcp -m state --state NEW -m tcp --dport 22 -j ACCEPT\n\
-A INPUT -j REJECT --reject-with icmp-host-prohibited\n\
-A FORWARD -j REJECT --reject-with icmp-host-prohibited\n\
COMMIT\n";

    #[test]
    fn rhel7_default_allows_ssh_only() {
        let d = IptablesSave::parse("/etc/sysconfig/iptables", RHEL7.as_bytes());
        assert_eq!(d.render(), RHEL7.as_bytes());
        assert!(d.diagnostics.is_empty(), "{:?}", d.diagnostics);
        match d.inbound_tcp(22) {
            FirewallVerdict::Allowed { evidence, .. } => assert_eq!(evidence[0].line, 11),
            v => panic!("{v:?}"),
        }
        match d.inbound_tcp(2222) {
            FirewallVerdict::Blocked { rule, .. } => assert_eq!(rule.line, 12),
            v => panic!("{v:?}"),
        }
    }

    #[test]
    fn policies_jumps_and_conditions() {
        let f = "*filter\n:INPUT DROP [0:0]\n:SSH - [0:0]\n-A INPUT -i lo -j ACCEPT\n-A INPUT -m conntrack --ctstate ESTABLISHED,RELATED -j ACCEPT\n-A INPUT -p tcp -j SSH\n-A SSH -p tcp -m multiport --dports 80,443,20:25 -j ACCEPT\nCOMMIT\n";
        let d = IptablesSave::parse("r", f.as_bytes());
        assert!(d.inbound_tcp(22).is_allowed());
        match d.inbound_tcp(8080) {
            FirewallVerdict::Blocked { rule, .. } => assert_eq!(rule.line, 2),
            v => panic!("{v:?}"),
        }
        let f =
            "*filter\n:INPUT DROP [0:0]\n-A INPUT -i eth0 -p tcp --dport 22 -j ACCEPT\nCOMMIT\n";
        assert!(matches!(
            IptablesSave::parse("r", f.as_bytes()).inbound_tcp(22),
            FirewallVerdict::Unknown { .. }
        ));
        let f = "*filter\n:INPUT ACCEPT [0:0]\n-A INPUT -s 10.0.0.0/8 -p tcp --dport 22 -j DROP\nCOMMIT\n";
        match IptablesSave::parse("r", f.as_bytes()).inbound_tcp(22) {
            FirewallVerdict::Allowed { note, .. } => assert!(note.contains("10.0.0.0/8")),
            v => panic!("{v:?}"),
        }
        let f = "*filter\n:INPUT ACCEPT [0:0]\n-A INPUT -p tcp ! --dport 22 -j DROP\n-A INPUT -p tcp --dport ssh -j REJECT\nCOMMIT\n";
        assert!(IptablesSave::parse("r", f.as_bytes())
            .inbound_tcp(22)
            .is_blocked());
        let f = "*filter\n:INPUT DROP [0:0]\n-A INPUT -p tcp --dport 22 -j ACCEPT\n";
        assert!(matches!(
            IptablesSave::parse("r", f.as_bytes()).inbound_tcp(22),
            FirewallVerdict::Unknown { .. }
        ));
        assert!(
            IptablesSave::parse("r", b"*nat\n:PREROUTING ACCEPT [0:0]\nCOMMIT\n")
                .inbound_tcp(22)
                .is_allowed()
        );
    }

    #[test]
    fn insert_accept_rule_first() {
        let f = "*filter\n:INPUT DROP [0:0]\n-A INPUT -i lo -j ACCEPT\nCOMMIT\n";
        let mut d = IptablesSave::parse("r", f.as_bytes());
        assert!(d.inbound_tcp(22).is_blocked());
        d.allow_tcp_port(22).unwrap();
        assert_eq!(
            d.render(),
            b"*filter\n:INPUT DROP [0:0]\n# rescue-disk: allow new SSH connections\n-A INPUT -p tcp -m tcp --dport 22 -j ACCEPT\n-A INPUT -i lo -j ACCEPT\nCOMMIT\n"
        );
        assert!(d.inbound_tcp(22).is_allowed());
    }

    #[test]
    fn args_split_like_restore() {
        assert_eq!(
            split_args("-A INPUT -m comment --comment \"a b\" -j LOG --log-prefix '[UFW BLOCK] '"),
            vec![
                "-A",
                "INPUT",
                "-m",
                "comment",
                "--comment",
                "a b",
                "-j",
                "LOG",
                "--log-prefix",
                "[UFW BLOCK] "
            ]
        );
    }
}
