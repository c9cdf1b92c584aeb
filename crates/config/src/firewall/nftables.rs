//! nftables rulesets (`/etc/nftables.conf`, `/etc/sysconfig/nftables.conf`,
//! `nft list ruleset` output), as far as needed to decide whether a new
//! inbound TCP connection to a port gets through.
//!
//! Modelled: `flush ruleset`, `define`/`$var`, `table FAMILY NAME { … }`
//! with `chain NAME { type filter hook input|prerouting priority P; policy
//! P; rules }` and named `set`s with literal elements, the command forms
//! `add|create table/chain`, `add|insert rule`, table `flags dormant`, and in
//! rules: `tcp|th dport` (values, ranges, anonymous and named sets,
//! `vmap`), `meta l4proto`/`ip protocol`/`ip6 nexthdr`, `ct state`
//! (also `vmap`), `iif`/`iifname`/`iiftype`, `ip|ip6 saddr|daddr`, `fib
//! daddr type`, `meta pkttype`, `tcp flags`, `limit`, and the verdicts
//! `accept`, `drop`, `reject`, `return`, `jump`, `goto`, `queue`. Every base
//! chain on the prerouting and input hooks of the packet's family (`inet`,
//! `ip`/`ip6`) is walked in priority order: an accept ends one chain only, a
//! drop in any of them drops. `include` and anything not modelled make the
//! answer `Unknown` with the reason, never a guess.
//!
//! Lossless: [`NftRuleset::render`] returns the input until an edit. Never
//! does I/O, never panics.

use std::collections::HashMap;

use serde::Serialize;

use super::{service_port, FirewallVerdict, RuleRef, Tri, STEP_BUDGET};
use crate::{Diagnostic, Span};

/// How deep `jump`/`goto` and `$var` expansion are followed.
const MAX_DEPTH: usize = 32;

/// A token with its position.
#[derive(Debug, Clone, PartialEq, Eq)]
struct Tok {
    text: String,
    span: Span,
    line: usize,
    /// True for `"…"` strings (quotes removed in `text`).
    quoted: bool,
}

fn is_punct(b: u8) -> bool {
    matches!(b, b'{' | b'}' | b';' | b',' | b'(' | b')' | b'\n')
}

fn tokenize(data: &[u8]) -> Vec<Tok> {
    let mut out = Vec::new();
    let mut i = 0;
    let mut line = 1;
    while i < data.len() {
        let b = data[i];
        match b {
            b'\n' => {
                out.push(Tok {
                    text: "\n".into(),
                    span: Span::new(i, i + 1),
                    line,
                    quoted: false,
                });
                line += 1;
                i += 1;
            }
            b' ' | b'\t' | b'\r' => i += 1,
            b'\\' if data.get(i + 1) == Some(&b'\n') => {
                line += 1;
                i += 2;
            }
            b'#' => {
                while i < data.len() && data[i] != b'\n' {
                    i += 1;
                }
            }
            b'"' => {
                let start = i;
                i += 1;
                while i < data.len() && data[i] != b'"' && data[i] != b'\n' {
                    i += 1;
                }
                let text = String::from_utf8_lossy(&data[start + 1..i]).into_owned();
                if i < data.len() && data[i] == b'"' {
                    i += 1;
                }
                out.push(Tok {
                    text,
                    span: Span::new(start, i),
                    line,
                    quoted: true,
                });
            }
            _ if is_punct(b) => {
                out.push(Tok {
                    text: (b as char).to_string(),
                    span: Span::new(i, i + 1),
                    line,
                    quoted: false,
                });
                i += 1;
            }
            _ => {
                let start = i;
                while i < data.len()
                    && !matches!(data[i], b' ' | b'\t' | b'\r' | b'"' | b'#')
                    && !is_punct(data[i])
                {
                    i += 1;
                }
                out.push(Tok {
                    text: String::from_utf8_lossy(&data[start..i]).into_owned(),
                    span: Span::new(start, i),
                    line,
                    quoted: false,
                });
            }
        }
    }
    out
}

/// A rule in a chain.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, schemars::JsonSchema)]
pub struct NftRule {
    /// Line of its first token.
    pub line: usize,
    /// Its bytes in the file.
    pub span: Span,
    /// Its tokens (strings unquoted).
    pub tokens: Vec<String>,
}

/// A chain.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, schemars::JsonSchema)]
pub struct NftChain {
    /// Family of its table (`inet`, `ip`, `ip6`, `netdev`, …).
    pub family: String,
    /// Table name.
    pub table: String,
    /// Chain name.
    pub name: String,
    /// Line where it is declared.
    pub line: usize,
    /// `type` of a base chain (`filter`, `nat`, `route`).
    pub kind: Option<String>,
    /// Hook of a base chain.
    pub hook: Option<String>,
    /// Priority of a base chain.
    pub priority: Option<i64>,
    /// Policy of a base chain (`accept` when not set).
    pub policy: Option<String>,
    /// The policy statement's line.
    pub policy_line: Option<usize>,
    /// Rules in order.
    pub rules: Vec<NftRule>,
    /// Where the chain body's closing brace is (for edits).
    pub body_end: Option<usize>,
}

/// A parsed nftables ruleset file.
#[derive(Debug, Clone, Serialize, schemars::JsonSchema)]
pub struct NftRuleset {
    #[serde(skip)]
    source: Vec<u8>,
    /// The guest path (for evidence).
    pub path: String,
    /// Chains in file order (after `flush ruleset` resets).
    pub chains: Vec<NftChain>,
    /// Named sets: (family, table, name) → elements.
    #[serde(skip)]
    sets: HashMap<(String, String, String), Vec<String>>,
    /// Tables marked `flags dormant`.
    pub dormant: Vec<(String, String)>,
    /// `include` statements (patterns as written), with their lines.
    pub includes: Vec<(usize, String)>,
    /// Problems found.
    pub diagnostics: Vec<Diagnostic>,
    /// Why nft would refuse to load the file, when it surely would.
    pub fatal: Option<String>,
    /// (family, table, chain) → index into `chains`.
    #[serde(skip)]
    index: HashMap<(String, String, String), usize>,
}

struct Parser<'a> {
    toks: &'a [Tok],
    pos: usize,
    defines: HashMap<String, Vec<Tok>>,
    doc: NftRuleset,
}

fn priority_value(toks: &[String]) -> Option<i64> {
    let base = |s: &str| -> Option<i64> {
        Some(match s {
            "raw" => -300,
            "mangle" => -150,
            "dstnat" => -100,
            "filter" => 0,
            "security" => 50,
            "srcnat" => 100,
            n => n.parse().ok()?,
        })
    };
    let mut it = toks.iter();
    let mut v = base(it.next()?)?;
    while let Some(op) = it.next() {
        let n: i64 = it.next()?.parse().ok()?;
        match op.as_str() {
            "+" => v = v.saturating_add(n),
            "-" => v = v.saturating_sub(n),
            _ => return None,
        }
    }
    Some(v)
}

impl<'a> Parser<'a> {
    fn peek(&self) -> Option<&Tok> {
        self.toks.get(self.pos)
    }

    fn skip_newlines(&mut self) {
        while self
            .peek()
            .is_some_and(|t| !t.quoted && (t.text == "\n" || t.text == ";"))
        {
            self.pos += 1;
        }
    }

    /// Tokens up to the end of the statement (newline or `;` outside
    /// braces, or an unmatched `}`), braces included.
    fn statement(&mut self) -> Vec<Tok> {
        let mut out = Vec::new();
        let mut depth = 0usize;
        while let Some(t) = self.peek() {
            if !t.quoted {
                match t.text.as_str() {
                    "{" => depth += 1,
                    "}" if depth == 0 => break,
                    "}" => depth -= 1,
                    "\n" | ";" if depth == 0 => break,
                    _ => {}
                }
            }
            // Newlines inside braces stay: they separate nested statements.
            if t.text != "\n" || t.quoted || depth > 0 {
                out.push(t.clone());
            }
            self.pos += 1;
        }
        if depth > 0 && self.pos >= self.toks.len() {
            let line = out.first().map_or(0, |t| t.line);
            self.doc.fatal.get_or_insert(format!(
                "line {line}: '{{' is never closed: nft rejects the file"
            ));
            self.doc.diagnostics.push(Diagnostic::new(
                line,
                "'{' is never closed: nft rejects the file",
            ));
        }
        out
    }

    /// Expands `$name` tokens from defines (nested defines up to a depth
    /// cap, and never beyond a total size: definitions can double at each
    /// level).
    fn expand(&self, toks: Vec<Tok>, depth: usize) -> Vec<Tok> {
        const MAX_TOKENS: usize = 100_000;
        if depth > MAX_DEPTH {
            return toks;
        }
        let mut out = Vec::with_capacity(toks.len());
        for t in toks {
            if out.len() > MAX_TOKENS {
                break;
            }
            if let Some(name) = t.text.strip_prefix('$').filter(|_| !t.quoted) {
                if let Some(v) = self.defines.get(name) {
                    let v: Vec<Tok> = v
                        .iter()
                        .map(|x| Tok {
                            span: t.span,
                            line: t.line,
                            ..x.clone()
                        })
                        .collect();
                    out.extend(self.expand(v, depth + 1));
                    continue;
                }
            }
            out.push(t);
        }
        out
    }

    fn run(&mut self) {
        loop {
            self.skip_newlines();
            let Some(t) = self.peek().cloned() else { break };
            if t.text == "}" {
                self.doc
                    .diagnostics
                    .push(Diagnostic::new(t.line, "unmatched '}'"));
                self.pos += 1;
                continue;
            }
            let stmt = self.statement();
            let words: Vec<&str> = stmt.iter().map(|t| t.text.as_str()).collect();
            match words.as_slice() {
                ["flush", "ruleset", ..] => {
                    self.doc.chains.clear();
                    self.doc.index.clear();
                    self.doc.sets.clear();
                    self.doc.dormant.clear();
                }
                ["define", name, "=", ..] | ["redefine", name, "=", ..] => {
                    self.defines.insert((*name).to_owned(), stmt[3..].to_vec());
                }
                ["undefine", name, ..] => {
                    self.defines.remove(*name);
                }
                ["include", ..] => {
                    let pat = stmt.get(1).map(|t| t.text.clone()).unwrap_or_default();
                    self.doc.includes.push((t.line, pat));
                }
                ["table", ..] | ["add", "table", ..] | ["create", "table", ..] => {
                    let rest = if words[0] == "table" {
                        &stmt[1..]
                    } else {
                        &stmt[2..]
                    };
                    let (family, name) = family_and_name(rest);
                    let body = rest.iter().position(|t| t.text == "{" && !t.quoted);
                    if let Some(b) = body {
                        // The statement collected the whole `{ … }` body.
                        self.table_body(&family, &name, &rest[b + 1..]);
                    }
                }
                ["delete", "table", ..] | ["destroy", "table", ..] => {
                    let (family, name) = family_and_name(&stmt[2..]);
                    self.doc
                        .chains
                        .retain(|c| !(c.family == family && c.table == name));
                    self.doc.index = self
                        .doc
                        .chains
                        .iter()
                        .enumerate()
                        .map(|(i, c)| ((c.family.clone(), c.table.clone(), c.name.clone()), i))
                        .collect();
                }
                ["flush", "table", ..] => {
                    let (family, name) = family_and_name(&stmt[2..]);
                    for c in self
                        .doc
                        .chains
                        .iter_mut()
                        .filter(|c| c.family == family && c.table == name)
                    {
                        c.rules.clear();
                    }
                }
                ["add", "chain", ..] | ["create", "chain", ..] => {
                    let rest = &stmt[2..];
                    let (family, table, name, rest) = family_table_name(rest);
                    let mut chain = new_chain(&family, &table, &name, t.line);
                    if let Some(b) = rest.iter().position(|t| t.text == "{" && !t.quoted) {
                        self.chain_spec(&mut chain, &rest[b + 1..]);
                    }
                    self.upsert_chain(chain);
                }
                ["add", "rule", ..] | ["insert", "rule", ..] => {
                    let insert = words[0] == "insert";
                    let (family, table, name, rest) = family_table_name(&stmt[2..]);
                    let rule = self.make_rule(rest);
                    let found = self
                        .doc
                        .index
                        .get(&(family.clone(), table.clone(), name.clone()))
                        .copied();
                    match found.and_then(|i| self.doc.chains.get_mut(i)) {
                        Some(c) => {
                            if insert {
                                c.rules.insert(0, rule);
                            } else {
                                c.rules.push(rule);
                            }
                        }
                        None => self.doc.diagnostics.push(Diagnostic::new(
                            t.line,
                            format!("rule for chain {family} {table} {name}, which does not exist: nft rejects the file"),
                        )),
                    }
                }
                ["add", "set", ..]
                | ["add", "map", ..]
                | ["add", "element", ..]
                | ["flush", "chain", ..]
                | ["delete", ..] => {
                    self.doc.diagnostics.push(Diagnostic::new(
                        t.line,
                        format!(
                            "command {:?} is not modelled",
                            words.iter().take(2).copied().collect::<Vec<_>>().join(" ")
                        ),
                    ));
                }
                _ => self.doc.diagnostics.push(Diagnostic::new(
                    t.line,
                    format!("unexpected statement starting with {:?}", t.text),
                )),
            }
            // A stray `}` ends nothing at top level.
            if self.peek().is_some_and(|t| t.text == "}" && !t.quoted) {
                self.doc
                    .diagnostics
                    .push(Diagnostic::new(t.line, "unmatched '}'"));
                self.pos += 1;
            }
        }
    }

    fn upsert_chain(&mut self, chain: NftChain) {
        let key = (
            chain.family.clone(),
            chain.table.clone(),
            chain.name.clone(),
        );
        let found = self.doc.index.get(&key).copied();
        if let Some(c) = found.and_then(|i| self.doc.chains.get_mut(i)) {
            if chain.hook.is_some() {
                c.kind = chain.kind;
                c.hook = chain.hook;
                c.priority = chain.priority;
            }
            if chain.policy.is_some() {
                c.policy = chain.policy;
                c.policy_line = chain.policy_line;
            }
            c.rules.extend(chain.rules);
            if chain.body_end.is_some() {
                c.body_end = chain.body_end;
            }
        } else {
            self.doc.index.insert(key, self.doc.chains.len());
            self.doc.chains.push(chain);
        }
    }

    fn make_rule(&self, toks: &[Tok]) -> NftRule {
        let line = toks.first().map_or(0, |t| t.line);
        let span = match (toks.first(), toks.last()) {
            (Some(a), Some(b)) => Span::new(a.span.start, b.span.end),
            _ => Span::default(),
        };
        let toks = self.expand(toks.to_vec(), 0);
        NftRule {
            line,
            span,
            tokens: toks
                .into_iter()
                .filter(|t| t.quoted || t.text != "\n")
                .map(|t| t.text)
                .collect(),
        }
    }

    /// Splits `toks` (a body without its opening brace, possibly ending in
    /// the closing one) into statements.
    fn sub_statements(toks: &[Tok]) -> (Vec<Vec<Tok>>, Option<usize>) {
        let mut p = Parser {
            toks,
            pos: 0,
            defines: HashMap::new(),
            doc: empty_doc(""),
        };
        let mut out = Vec::new();
        let mut end = None;
        loop {
            p.skip_newlines();
            match p.peek() {
                None => break,
                Some(t) if t.text == "}" && !t.quoted => {
                    end = Some(t.span.start);
                    break;
                }
                _ => {}
            }
            let before = p.pos;
            let s = p.statement();
            if !s.is_empty() {
                out.push(s);
            }
            if p.pos == before {
                p.pos += 1;
            }
        }
        (out, end)
    }

    fn table_body(&mut self, family: &str, table: &str, body: &[Tok]) {
        let (stmts, _) = Parser::sub_statements(body);
        for s in stmts {
            let words: Vec<&str> = s.iter().map(|t| t.text.as_str()).collect();
            match words.as_slice() {
                ["chain", name, ..] => {
                    let mut chain = new_chain(family, table, name, s[0].line);
                    if let Some(b) = s.iter().position(|t| t.text == "{" && !t.quoted) {
                        self.chain_spec(&mut chain, &s[b + 1..]);
                    }
                    self.upsert_chain(chain);
                }
                ["set", name, ..] | ["map", name, ..] => {
                    let elems = s
                        .iter()
                        .position(|t| t.text == "elements")
                        .map(|i| {
                            s[i..]
                                .iter()
                                .skip_while(|t| t.text != "{")
                                .skip(1)
                                .take_while(|t| t.text != "}")
                                .filter(|t| t.text != "," && t.text != "\n")
                                .map(|t| t.text.clone())
                                .collect::<Vec<_>>()
                        })
                        .unwrap_or_default();
                    self.doc.sets.insert(
                        (family.to_owned(), table.to_owned(), (*name).to_owned()),
                        elems,
                    );
                }
                ["flags", rest @ ..] => {
                    if rest.contains(&"dormant") {
                        self.doc.dormant.push((family.to_owned(), table.to_owned()));
                    }
                }
                ["comment", ..] => {}
                _ => self.doc.diagnostics.push(Diagnostic::new(
                    s[0].line,
                    format!("unexpected {:?} in table {family} {table}", s[0].text),
                )),
            }
        }
    }

    fn chain_spec(&mut self, chain: &mut NftChain, body: &[Tok]) {
        let (stmts, end) = Parser::sub_statements(body);
        chain.body_end = end;
        for s in stmts {
            let words: Vec<String> = s.iter().map(|t| t.text.clone()).collect();
            match words.first().map(String::as_str) {
                Some("type") => {
                    chain.kind = words.get(1).cloned();
                    if let Some(h) = words.iter().position(|w| w == "hook") {
                        chain.hook = words.get(h + 1).cloned();
                    }
                    if let Some(p) = words.iter().position(|w| w == "priority") {
                        let pr: Vec<String> = words[p + 1..]
                            .iter()
                            .take_while(|w| *w != "device" && *w != ";")
                            .cloned()
                            .collect();
                        chain.priority = priority_value(&pr);
                        if chain.priority.is_none() {
                            self.doc.diagnostics.push(Diagnostic::new(
                                s[0].line,
                                format!(
                                    "chain {}: priority {:?} not understood",
                                    chain.name,
                                    pr.join(" ")
                                ),
                            ));
                        }
                    }
                }
                Some("policy") => {
                    chain.policy = words.get(1).cloned();
                    chain.policy_line = Some(s[0].line);
                }
                Some("comment") | Some("devices") | Some("device") => {}
                _ => {
                    let r = self.make_rule(&s);
                    chain.rules.push(r);
                }
            }
        }
    }
}

fn new_chain(family: &str, table: &str, name: &str, line: usize) -> NftChain {
    NftChain {
        family: family.to_owned(),
        table: table.to_owned(),
        name: name.to_owned(),
        line,
        kind: None,
        hook: None,
        priority: None,
        policy: None,
        policy_line: None,
        rules: Vec::new(),
        body_end: None,
    }
}

const FAMILIES: &[&str] = &["ip", "ip6", "inet", "arp", "bridge", "netdev"];

fn family_and_name(toks: &[Tok]) -> (String, String) {
    let a = toks.first().map(|t| t.text.as_str()).unwrap_or("");
    if FAMILIES.contains(&a) {
        (
            a.to_owned(),
            toks.get(1).map(|t| t.text.clone()).unwrap_or_default(),
        )
    } else {
        ("ip".to_owned(), a.to_owned())
    }
}

fn family_table_name(toks: &[Tok]) -> (String, String, String, &[Tok]) {
    let a = toks.first().map(|t| t.text.as_str()).unwrap_or("");
    if FAMILIES.contains(&a) {
        let table = toks.get(1).map(|t| t.text.clone()).unwrap_or_default();
        let name = toks.get(2).map(|t| t.text.clone()).unwrap_or_default();
        (a.to_owned(), table, name, toks.get(3..).unwrap_or(&[]))
    } else {
        let table = a.to_owned();
        let name = toks.get(1).map(|t| t.text.clone()).unwrap_or_default();
        ("ip".to_owned(), table, name, toks.get(2..).unwrap_or(&[]))
    }
}

fn empty_doc(path: &str) -> NftRuleset {
    NftRuleset {
        source: Vec::new(),
        path: path.to_owned(),
        chains: Vec::new(),
        sets: HashMap::new(),
        dormant: Vec::new(),
        includes: Vec::new(),
        diagnostics: Vec::new(),
        fatal: None,
        index: HashMap::new(),
    }
}

// ---------------------------------------------------------------------------
// Rule evaluation

#[derive(Debug, Clone, PartialEq, Eq)]
enum Verdict {
    Accept,
    Drop,
    Reject,
    Return,
    Jump(String),
    Goto(String),
    Queue,
    Continue,
}

fn verdict_word(w: &str) -> Option<Verdict> {
    Some(match w {
        "accept" => Verdict::Accept,
        "drop" => Verdict::Drop,
        "reject" => Verdict::Reject,
        "return" => Verdict::Return,
        "queue" => Verdict::Queue,
        "continue" => Verdict::Continue,
        _ => return None,
    })
}

/// The values of an operand at `i`: a single word, a `{ … }` set, or a
/// named `@set`; returns (values, next index).
fn operand(
    toks: &[String],
    mut i: usize,
    sets: &dyn Fn(&str) -> Option<Vec<String>>,
) -> (Option<Vec<String>>, usize) {
    match toks.get(i).map(String::as_str) {
        Some("{") => {
            i += 1;
            let mut vals = Vec::new();
            let mut depth = 0;
            while let Some(t) = toks.get(i) {
                match t.as_str() {
                    "{" => depth += 1,
                    "}" if depth == 0 => {
                        i += 1;
                        break;
                    }
                    "}" => depth -= 1,
                    "," => {}
                    v => vals.push(v.to_owned()),
                }
                i += 1;
            }
            (Some(vals), i)
        }
        Some(w) if w.starts_with('@') => (sets(&w[1..]), i + 1),
        Some(w) => {
            // `a,b,c` lists (ct state established,related) arrive as
            // separate tokens joined by commas.
            let mut vals = vec![w.to_owned()];
            i += 1;
            while toks.get(i).is_some_and(|t| t == ",") && toks.get(i + 1).is_some() {
                vals.push(toks[i + 1].clone());
                i += 2;
            }
            (Some(vals), i)
        }
        None => (None, i),
    }
}

fn port_value_matches(v: &str, port: u16) -> Option<bool> {
    let one = |s: &str| s.parse::<u16>().ok().or_else(|| service_port(s));
    if let Some((a, b)) = v.split_once('-') {
        return Some((one(a)?..=one(b)?).contains(&port));
    }
    Some(one(v)? == port)
}

/// Compares with `==`/`!=`/implicit equality; `vals` any-of.
fn compare(op: &str, hit: Tri) -> Tri {
    if op == "!=" {
        hit.not()
    } else {
        hit
    }
}

fn any_of(vals: &[String], f: &dyn Fn(&str) -> Option<bool>, what: &str) -> Tri {
    let mut unknown = None;
    for v in vals {
        match f(v) {
            Some(true) => return Tri::Yes,
            Some(false) => {}
            None => unknown = Some(v.clone()),
        }
    }
    match unknown {
        Some(v) => Tri::Maybe(format!("{what} value {v:?} is not understood")),
        None => Tri::No,
    }
}

/// Evaluates a rule: its match and its verdict.
/// Evaluates a rule against the probe: its match, its verdict, and the
/// words it could not read.
fn eval_rule(
    toks: &[String],
    port: u16,
    ipv6: bool,
    sets: &dyn Fn(&str) -> Option<Vec<String>>,
) -> (Tri, Option<Verdict>, Vec<String>) {
    let mut unknown = Vec::new();
    let mut m = Tri::Yes;
    let mut verdict = None;
    let mut i = 0;
    let take_op = |i: &mut usize| -> String {
        match toks.get(*i).map(String::as_str) {
            Some(op @ ("==" | "!=" | "eq" | "ne")) => {
                *i += 1;
                if op == "ne" {
                    "!=".to_owned()
                } else {
                    op.replace("eq", "==")
                }
            }
            _ => "==".to_owned(),
        }
    };
    while i < toks.len() {
        let w = toks[i].as_str();
        let next = toks.get(i + 1).map(String::as_str);
        let mut r: Option<Tri> = None;
        match (w, next) {
            ("tcp", Some("dport")) | ("th", Some("dport")) => {
                i += 2;
                if toks.get(i).is_some_and(|t| t == "vmap") {
                    i += 1;
                    let (v, n) = vmap(toks, i, sets, &|k| port_value_matches(k, port));
                    i = n;
                    match v {
                        Ok(Some(vd)) => {
                            verdict = Some(vd);
                            r = Some(Tri::Yes);
                        }
                        Ok(None) => r = Some(Tri::No),
                        Err(why) => r = Some(Tri::Maybe(why)),
                    }
                } else {
                    let op = take_op(&mut i);
                    let (vals, n) = operand(toks, i, sets);
                    i = n;
                    let hit = match vals {
                        Some(v) => any_of(&v, &|x| port_value_matches(x, port), "port"),
                        None => Tri::Maybe("a named set that is not defined here".into()),
                    };
                    r = Some(compare(&op, hit));
                }
                continue_with(&mut m, r);
                continue;
            }
            ("udp", Some("dport" | "sport"))
            | ("sctp", Some("dport" | "sport"))
            | ("icmp", Some(_))
            | ("icmpv6", Some(_))
            | ("igmp", _) => {
                i += 2;
                let _ = take_op(&mut i);
                let (_, n) = operand(toks, i, sets);
                i = n;
                r = Some(Tri::No);
            }
            ("tcp", Some("sport")) | ("th", Some("sport")) => {
                i += 2;
                let _ = take_op(&mut i);
                let (_, n) = operand(toks, i, sets);
                i = n;
                r = Some(Tri::Maybe("the client's source port".into()));
            }
            ("tcp", Some("flags")) => {
                i += 2;
                let mut expr = Vec::new();
                while let Some(t) = toks.get(i) {
                    if expr_start(t) {
                        break;
                    }
                    expr.push(t.clone());
                    i += 1;
                }
                r = Some(tcp_flags(&expr));
            }
            ("meta", Some("l4proto")) | ("ip", Some("protocol")) | ("ip6", Some("nexthdr")) => {
                let fam_no = (w == "ip" && ipv6) || (w == "ip6" && !ipv6);
                i += 2;
                let op = take_op(&mut i);
                let (vals, n) = operand(toks, i, sets);
                i = n;
                let hit = match vals {
                    Some(v) => any_of(&v, &|x| Some(x == "tcp" || x == "6"), "protocol"),
                    None => Tri::Maybe("a named set".into()),
                };
                r = Some(if fam_no { Tri::No } else { compare(&op, hit) });
            }
            ("meta", Some("nfproto")) => {
                i += 2;
                let op = take_op(&mut i);
                let (vals, n) = operand(toks, i, sets);
                i = n;
                let want = if ipv6 { "ipv6" } else { "ipv4" };
                let hit = vals.map_or(Tri::Maybe("nfproto".into()), |v| {
                    if v.iter().any(|x| x == want) {
                        Tri::Yes
                    } else {
                        Tri::No
                    }
                });
                r = Some(compare(&op, hit));
            }
            ("ct", Some("state")) => {
                i += 2;
                if toks.get(i).is_some_and(|t| t == "vmap") {
                    i += 1;
                    let (v, n) = vmap(toks, i, sets, &|k| Some(k == "new"));
                    i = n;
                    match v {
                        Ok(Some(vd)) => {
                            verdict = Some(vd);
                            r = Some(Tri::Yes);
                        }
                        Ok(None) => r = Some(Tri::No),
                        Err(why) => r = Some(Tri::Maybe(why)),
                    }
                } else {
                    let op = take_op(&mut i);
                    let (vals, n) = operand(toks, i, sets);
                    i = n;
                    let hit = vals.map_or(Tri::Maybe("ct state set".into()), |v| {
                        if v.iter().any(|x| x == "new") {
                            Tri::Yes
                        } else {
                            Tri::No
                        }
                    });
                    r = Some(compare(&op, hit));
                }
            }
            (
                "ct",
                Some(
                    "status" | "mark" | "direction" | "helper" | "zone" | "count" | "original"
                    | "reply" | "expiration",
                ),
            ) => {
                i += 2;
                if toks.get(i).is_some_and(|t| t == "set") {
                    i += 1;
                    let (_, n) = operand(toks, i, sets);
                    i = n;
                } else {
                    let _ = take_op(&mut i);
                    let (_, n) = operand(toks, i, sets);
                    i = n;
                    r = Some(Tri::Maybe(format!("ct {}", next.unwrap_or(""))));
                }
            }
            ("iif" | "iifname", _) | ("meta", Some("iif" | "iifname")) => {
                i += if w == "meta" { 2 } else { 1 };
                let op = take_op(&mut i);
                let (vals, n) = operand(toks, i, sets);
                i = n;
                // Remote traffic never arrives on lo; `*` matches any name.
                let hit = match vals {
                    Some(v) if v.iter().all(|x| x == "lo") => Tri::No,
                    Some(v) if v.iter().any(|x| x == "*" || x == "\\*") => Tri::Yes,
                    Some(v) => Tri::Maybe(format!("the input interface is {}", v.join(" or "))),
                    None => Tri::Maybe("the input interface is in a named set".into()),
                };
                r = Some(compare(&op, hit));
            }
            ("iiftype", _) | ("meta", Some("iiftype")) => {
                i += if w == "meta" { 2 } else { 1 };
                let op = take_op(&mut i);
                let (vals, n) = operand(toks, i, sets);
                i = n;
                let hit = vals.map_or(Tri::Maybe("iiftype".into()), |v| {
                    if v.iter().any(|x| x == "loopback") {
                        Tri::No
                    } else {
                        Tri::Maybe("interface type".into())
                    }
                });
                r = Some(compare(&op, hit));
            }
            ("ip" | "ip6", Some("saddr" | "daddr")) => {
                let fam_no = (w == "ip" && ipv6) || (w == "ip6" && !ipv6);
                let which = if next == Some("saddr") {
                    "client"
                } else {
                    "guest"
                };
                i += 2;
                let op = take_op(&mut i);
                let (vals, n) = operand(toks, i, sets);
                i = n;
                let any = vals
                    .as_ref()
                    .is_some_and(|v| v.iter().any(|x| x == "0.0.0.0/0" || x == "::/0"));
                r = Some(if fam_no {
                    Tri::No
                } else if any {
                    compare(&op, Tri::Yes)
                } else {
                    Tri::Maybe(format!(
                        "the {which} address is {}in {}",
                        if op == "!=" { "not " } else { "" },
                        vals.map(|v| v.join(","))
                            .unwrap_or_else(|| "a named set".into())
                    ))
                });
            }
            ("fib", _) => {
                i += 1;
                let mut expr = Vec::new();
                while let Some(t) = toks.get(i) {
                    if expr_start(t) {
                        break;
                    }
                    expr.push(t.as_str());
                    i += 1;
                }
                r = Some(match expr.as_slice() {
                    ["daddr", "type", "local"] | ["daddr", "type", "==", "local"] => Tri::Yes,
                    ["daddr", "type", "!=", "local"] => Tri::No,
                    ["daddr", "type", t] if matches!(*t, "broadcast" | "multicast" | "anycast") => {
                        Tri::No
                    }
                    _ => Tri::Maybe(format!("fib {}", expr.join(" "))),
                });
            }
            ("meta", Some("pkttype")) | ("pkttype", _) => {
                i += if w == "meta" { 2 } else { 1 };
                let op = take_op(&mut i);
                let (vals, n) = operand(toks, i, sets);
                i = n;
                let hit = vals.map_or(Tri::Maybe("pkttype".into()), |v| {
                    if v.iter().any(|x| x == "host") {
                        Tri::Yes
                    } else {
                        Tri::No
                    }
                });
                r = Some(compare(&op, hit));
            }
            ("limit", _) => {
                i += 1;
                while toks.get(i).is_some_and(|t| !expr_start(t)) {
                    i += 1;
                }
                r = Some(Tri::Maybe("a rate limit is not exceeded".into()));
            }
            ("counter", _) => {
                i += 1;
                // `counter packets N bytes M` from `nft list ruleset`.
                while toks.get(i).is_some_and(|t| t == "packets" || t == "bytes") {
                    i += 2;
                }
            }
            ("log", _) => {
                i += 1;
                while toks.get(i).is_some_and(|t| {
                    matches!(
                        t.as_str(),
                        "prefix" | "level" | "group" | "snaplen" | "queue-threshold" | "flags"
                    )
                }) {
                    i += 2;
                }
            }
            ("comment", _) => i += 2,
            ("meta", Some("mark" | "priority" | "nftrace"))
                if toks.get(i + 2).is_some_and(|t| t == "set") =>
            {
                i += 3;
                let (_, n) = operand(toks, i, sets);
                i = n;
            }
            ("jump" | "goto", Some(target)) => {
                verdict = Some(if w == "jump" {
                    Verdict::Jump(target.to_owned())
                } else {
                    Verdict::Goto(target.to_owned())
                });
                i += 2;
            }
            ("reject", _) => {
                verdict = Some(Verdict::Reject);
                i += 1;
                // `with tcp reset`, `with icmp[x|v6] [type] CODE`.
                if toks.get(i).is_some_and(|t| t == "with") {
                    let proto = toks.get(i + 1).map(String::as_str);
                    i += 2;
                    if proto == Some("tcp") {
                        if toks.get(i).is_some_and(|t| t == "reset") {
                            i += 1;
                        }
                    } else if toks.get(i).is_some_and(|t| t == "type") {
                        i += 2;
                    } else {
                        i += 1;
                    }
                }
            }
            ("queue", _) => {
                verdict = Some(Verdict::Queue);
                i = toks.len();
            }
            (v, _) if verdict_word(v).is_some() => {
                verdict = verdict_word(v);
                i += 1;
            }
            (other, _) => {
                r = Some(Tri::Maybe(format!("expression {other:?} is not modelled")));
                unknown.push(other.to_owned());
                i += 1;
                // Skip to the next word we know.
                while toks.get(i).is_some_and(|t| !expr_start(t)) {
                    i += 1;
                }
            }
        }
        continue_with(&mut m, r);
    }
    (m, verdict, unknown)
}

/// Words that start a new expression or statement within a rule (where
/// the operands of the previous one end).
fn expr_start(w: &str) -> bool {
    verdict_word(w).is_some()
        || matches!(
            w,
            "tcp"
                | "th"
                | "udp"
                | "sctp"
                | "icmp"
                | "icmpv6"
                | "ip"
                | "ip6"
                | "meta"
                | "ct"
                | "iif"
                | "iifname"
                | "iiftype"
                | "oif"
                | "oifname"
                | "fib"
                | "limit"
                | "counter"
                | "log"
                | "comment"
                | "jump"
                | "goto"
                | "reject"
                | "queue"
                | "pkttype"
                | "mark"
                | "quota"
                | "notrack"
        )
}

fn continue_with(m: &mut Tri, r: Option<Tri>) {
    if let Some(r) = r {
        *m = std::mem::replace(m, Tri::Yes).and(r);
    }
}

/// `key vmap { k : verdict, … }`: the verdict for the probe's key.
fn vmap(
    toks: &[String],
    i: usize,
    sets: &dyn Fn(&str) -> Option<Vec<String>>,
    key: &dyn Fn(&str) -> Option<bool>,
) -> (Result<Option<Verdict>, String>, usize) {
    let (vals, n) = operand(toks, i, sets);
    let Some(vals) = vals else {
        return (Err("a named verdict map".into()), n);
    };
    // vals: k, :, verdict [target], k, :, …
    let mut j = 0;
    while j < vals.len() {
        let k = vals[j].trim_end_matches(':');
        let mut v = j + 1;
        if vals.get(v).is_some_and(|x| x == ":") {
            v += 1;
        }
        let word = vals.get(v).map(String::as_str).unwrap_or("");
        let (vd, used) = match word {
            "jump" | "goto" => {
                let t = vals.get(v + 1).cloned().unwrap_or_default();
                (
                    Some(if word == "jump" {
                        Verdict::Jump(t)
                    } else {
                        Verdict::Goto(t)
                    }),
                    2,
                )
            }
            w => (verdict_word(w), 1),
        };
        match key(k) {
            Some(true) => {
                return (
                    vd.ok_or_else(|| format!("verdict {word:?} in a map"))
                        .map(Some),
                    n,
                )
            }
            Some(false) => {}
            None => return (Err(format!("map key {k:?} not understood")), n),
        }
        j = v + used;
    }
    (Ok(None), n)
}

fn tcp_flags(expr: &[String]) -> Tri {
    let bit = |f: &str| -> Option<u8> {
        Some(match f {
            "fin" => 0x01,
            "syn" => 0x02,
            "rst" => 0x04,
            "psh" => 0x08,
            "ack" => 0x10,
            "urg" => 0x20,
            "ecn" => 0x40,
            "cwr" => 0x80,
            _ => return None,
        })
    };
    let mask_of = |ws: &[String]| -> Option<u8> {
        let mut v = 0;
        for w in ws {
            if matches!(w.as_str(), "(" | ")" | "|" | "," | "{" | "}") {
                continue;
            }
            for part in w.split('|') {
                if part.is_empty() {
                    continue;
                }
                v |= bit(part)?;
            }
        }
        Some(v)
    };
    let e: Vec<String> = expr.to_vec();
    let syn = 0x02u8;
    // `tcp flags syn`, `tcp flags == syn`, `tcp flags != syn`,
    // `tcp flags & (a|b) == c`, `tcp flags syn / syn,ack`.
    if let Some(amp) = e.iter().position(|w| w == "&") {
        let op_pos = e.iter().position(|w| w == "==" || w == "!=");
        if let Some(op) = op_pos {
            if let (Some(mask), Some(val)) = (mask_of(&e[amp + 1..op]), mask_of(&e[op + 1..])) {
                let hit = syn & mask == val;
                let hit = if e[op] == "!=" { !hit } else { hit };
                return if hit { Tri::Yes } else { Tri::No };
            }
        }
        return Tri::Maybe(format!("tcp flags {}", e.join(" ")));
    }
    if let Some(slash) = e.iter().position(|w| w == "/") {
        if let (Some(val), Some(mask)) = (mask_of(&e[..slash]), mask_of(&e[slash + 1..])) {
            return if syn & mask == val { Tri::Yes } else { Tri::No };
        }
    }
    let (neg, rest) = match e.first().map(String::as_str) {
        Some("!=") => (true, &e[1..]),
        Some("==") => (false, &e[1..]),
        _ => (false, &e[..]),
    };
    match mask_of(rest) {
        // A bare flag list matches when any of the flags is set.
        Some(v) => {
            let hit = syn & v != 0;
            if hit != neg {
                Tri::Yes
            } else {
                Tri::No
            }
        }
        None => Tri::Maybe(format!("tcp flags {}", e.join(" "))),
    }
}

// ---------------------------------------------------------------------------
// Walk

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
    /// Rules on the path with words we could not read.
    unread: Vec<(RuleRef, Vec<String>)>,
    steps: usize,
}

impl NftRuleset {
    /// Parses a ruleset; `path` names the file in evidence. Never fails.
    pub fn parse(path: &str, data: &[u8]) -> NftRuleset {
        let toks = tokenize(data);
        let mut p = Parser {
            toks: &toks,
            pos: 0,
            defines: HashMap::new(),
            doc: empty_doc(path),
        };
        p.run();
        let mut doc = p.doc;
        doc.source = data.to_vec();
        // Words no rule grammar we model accepts: nft may reject the file.
        let mut extra = Vec::new();
        for c in &doc.chains {
            for r in &c.rules {
                let (_, _, unknown) = eval_rule(&r.tokens, 22, false, &|_| None);
                if !unknown.is_empty() {
                    extra.push(Diagnostic::new(
                        r.line,
                        format!("rule words not understood: {} (a typo makes nft reject the whole file)", unknown.join(", ")),
                    ));
                }
            }
        }
        doc.diagnostics.extend(extra);
        doc.diagnostics.sort_by_key(|d| d.line);
        doc
    }

    /// The bytes of the document; identical to the input until an edit.
    pub fn render(&self) -> Vec<u8> {
        self.source.clone()
    }

    fn rref(&self, line: usize, span: Span) -> RuleRef {
        RuleRef {
            file: self.path.clone(),
            line,
            rule: String::from_utf8_lossy(span.slice(&self.source))
                .trim()
                .to_owned(),
        }
    }

    fn walk(
        &self,
        chain: &NftChain,
        port: u16,
        ipv6: bool,
        depth: usize,
        ctx: &mut Ctx,
        cond: &str,
    ) -> Out {
        let sets = |name: &str| {
            self.sets
                .get(&(chain.family.clone(), chain.table.clone(), name.to_owned()))
                .cloned()
        };
        for rule in &chain.rules {
            ctx.steps += 1;
            if ctx.steps > STEP_BUDGET {
                return Out::Unknown(
                    "the ruleset is too complex to evaluate".into(),
                    self.rref(rule.line, rule.span),
                );
            }
            let (m, verdict, unknown) = eval_rule(&rule.tokens, port, ipv6, &sets);
            if !unknown.is_empty() {
                ctx.unread.push((self.rref(rule.line, rule.span), unknown));
            }
            if m == Tri::No {
                continue;
            }
            let rref = self.rref(rule.line, rule.span);
            let conditional = matches!(m, Tri::Maybe(_));
            let here = match &m {
                Tri::Maybe(c) if cond.is_empty() => c.clone(),
                Tri::Maybe(c) => format!("{cond} and {c}"),
                _ => cond.to_owned(),
            };
            match verdict {
                None | Some(Verdict::Continue) => {}
                Some(Verdict::Accept) => {
                    if conditional {
                        ctx.maybe_accepts.push((rref, here));
                    } else {
                        return Out::Accept(rref);
                    }
                }
                Some(v @ (Verdict::Drop | Verdict::Reject)) => {
                    let how = if v == Verdict::Drop {
                        "dropped"
                    } else {
                        "rejected"
                    };
                    if conditional {
                        ctx.maybe_drops.push((rref, here));
                    } else {
                        return Out::Drop(rref, format!("{how} by this rule"));
                    }
                }
                Some(Verdict::Queue) => {
                    if conditional {
                        ctx.maybe_accepts.push((rref, format!("{here} (queue)")));
                    } else {
                        return Out::Unknown("handed to a userspace queue".into(), rref);
                    }
                }
                Some(Verdict::Return) => {
                    if conditional {
                        ctx.maybe_accepts
                            .push((rref, format!("{here} (returns early)")));
                    } else {
                        return Out::Return;
                    }
                }
                Some(Verdict::Jump(ref name) | Verdict::Goto(ref name)) => {
                    let is_goto = matches!(verdict, Some(Verdict::Goto(_)));
                    let Some(target) = self
                        .index
                        .get(&(chain.family.clone(), chain.table.clone(), name.clone()))
                        .and_then(|&i| self.chains.get(i))
                    else {
                        return Out::Unknown(
                            format!("jump to chain {name}, which is not defined"),
                            rref,
                        );
                    };
                    if depth >= MAX_DEPTH {
                        return Out::Unknown("jumps nest too deep".into(), rref);
                    }
                    let out = self.walk(target, port, ipv6, depth + 1, ctx, &here);
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

    /// The base chains a new inbound connection traverses, in order:
    /// prerouting then input, each by priority.
    fn base_chains(&self, ipv6: bool) -> Vec<&NftChain> {
        let fam_ok = |f: &str| f == "inet" || (f == "ip" && !ipv6) || (f == "ip6" && ipv6);
        let mut v: Vec<&NftChain> = self
            .chains
            .iter()
            .filter(|c| fam_ok(&c.family))
            .filter(|c| {
                !self
                    .dormant
                    .iter()
                    .any(|(f, t)| *f == c.family && *t == c.table)
            })
            .filter(|c| c.kind.as_deref() == Some("filter"))
            .filter(|c| matches!(c.hook.as_deref(), Some("input") | Some("prerouting")))
            .collect();
        v.sort_by_key(|c| {
            (
                c.hook.as_deref() != Some("prerouting"),
                c.priority.unwrap_or(0),
            )
        });
        v
    }

    /// Whether a new inbound TCP connection to `port` (over IPv6 when
    /// `ipv6`) passes every filter chain on its way in.
    pub fn inbound_tcp(&self, port: u16, ipv6: bool) -> FirewallVerdict {
        if let Some((line, pat)) = self.includes.first() {
            return FirewallVerdict::Unknown {
                why: format!(
                    "{} line {line} includes {pat:?}: evaluate it with inbound_tcp_with",
                    self.path
                ),
                evidence: Vec::new(),
            };
        }
        self.evaluate(port, ipv6)
    }

    /// Like [`NftRuleset::inbound_tcp`] for a ruleset split over files:
    /// `resolve` returns the parsed files an `include` pattern names (in
    /// the order nft reads them). Includes nest up to a depth cap.
    pub fn inbound_tcp_with(
        &self,
        port: u16,
        ipv6: bool,
        resolve: &dyn Fn(&str) -> Vec<NftRuleset>,
    ) -> FirewallVerdict {
        let mut text = Vec::new();
        let mut missing = Vec::new();
        self.inline(&mut text, resolve, 0, &mut missing);
        if let Some(m) = missing.first() {
            return FirewallVerdict::Unknown {
                why: m.clone(),
                evidence: Vec::new(),
            };
        }
        // Re-parsing the concatenation keeps one set of semantics; the
        // evidence then names the top file with combined line numbers, so
        // each file is evaluated in place instead when it has no includes.
        let merged = NftRuleset::parse(&self.path, &text);
        merged.evaluate(port, ipv6)
    }

    fn inline(
        &self,
        out: &mut Vec<u8>,
        resolve: &dyn Fn(&str) -> Vec<NftRuleset>,
        depth: usize,
        missing: &mut Vec<String>,
    ) {
        if depth > 16 {
            missing.push("includes nest too deep".into());
            return;
        }
        let data = &self.source;
        let mut last = 0;
        let lines = crate::text::lines(data);
        for (line, pat) in &self.includes {
            // Replace the include line with the included text.
            let Some(l) = lines
                .get(line.saturating_sub(1))
                .filter(|l| l.number == *line)
            else {
                continue;
            };
            if l.content.start < last {
                continue;
            }
            out.extend_from_slice(&data[last..l.content.start]);
            let docs = resolve(pat);
            if docs.is_empty() {
                missing.push(format!(
                    "{} line {line}: include {pat:?} matched no file",
                    self.path
                ));
            }
            for d in docs {
                d.inline(out, resolve, depth + 1, missing);
                out.push(b'\n');
            }
            last = l.content.end;
        }
        out.extend_from_slice(&data[last.min(data.len())..]);
    }

    fn evaluate(&self, port: u16, ipv6: bool) -> FirewallVerdict {
        if let Some(f) = &self.fatal {
            return FirewallVerdict::Unknown {
                why: format!("{}: {f}", self.path),
                evidence: Vec::new(),
            };
        }
        let chains = self.base_chains(ipv6);
        let mut evidence = Vec::new();
        let mut notes = Vec::new();
        if chains.is_empty() {
            return FirewallVerdict::Allowed {
                evidence: vec![RuleRef {
                    file: self.path.clone(),
                    line: 0,
                    rule: "no filter chain on the input or prerouting hook".into(),
                }],
                note: String::new(),
            };
        }
        let mut pending_accepts: Vec<(RuleRef, String)> = Vec::new();
        for chain in chains {
            let mut ctx = Ctx::default();
            let out = self.walk(chain, port, ipv6, 0, &mut ctx, "");
            let policy_ref = || RuleRef {
                file: self.path.clone(),
                line: chain.policy_line.unwrap_or(chain.line),
                rule: format!(
                    "chain {} {} {} policy {}",
                    chain.family,
                    chain.table,
                    chain.name,
                    chain.policy.as_deref().unwrap_or("accept")
                ),
            };
            let out = match out {
                Out::Return | Out::FellOff => {
                    if chain.policy.as_deref().unwrap_or("accept") == "accept" {
                        Out::Accept(policy_ref())
                    } else {
                        Out::Drop(
                            policy_ref(),
                            format!("the {} chain's policy is drop", chain.name),
                        )
                    }
                }
                o => o,
            };
            if let Some((r, words)) = ctx.unread.first() {
                return FirewallVerdict::Unknown {
                    why: format!(
                        "line {}: {} not understood (nft may reject the file, or the rule may matter)",
                        r.line,
                        words.join(", ")
                    ),
                    evidence: vec![r.clone()],
                };
            }
            for (r, c) in &ctx.maybe_drops {
                notes.push(format!("line {} drops when {c}", r.line));
            }
            match out {
                Out::Accept(r) => {
                    evidence.push(r);
                    pending_accepts.extend(ctx.maybe_accepts);
                }
                Out::Drop(r, reason) => {
                    pending_accepts.extend(ctx.maybe_accepts);
                    if pending_accepts.is_empty() {
                        return FirewallVerdict::Blocked { rule: r, reason };
                    }
                    let list: Vec<String> = pending_accepts
                        .iter()
                        .map(|(r, c)| format!("line {} when {c}", r.line))
                        .collect();
                    let mut ev: Vec<RuleRef> =
                        pending_accepts.into_iter().map(|(r, _)| r).collect();
                    ev.push(r.clone());
                    return FirewallVerdict::Unknown {
                        why: format!(
                            "accepted only by {}; otherwise {reason} (line {})",
                            list.join("; "),
                            r.line
                        ),
                        evidence: ev,
                    };
                }
                Out::Unknown(why, r) => {
                    return FirewallVerdict::Unknown {
                        why,
                        evidence: vec![r],
                    }
                }
                Out::Return | Out::FellOff => {}
            }
        }
        FirewallVerdict::Allowed {
            evidence,
            note: notes.join("; "),
        }
    }

    /// Makes the first input-hook filter chain accept new connections to
    /// `port`: `tcp dport <port> accept` goes before the chain's first rule
    /// (or before its closing brace), or, for chains made by `add chain`,
    /// an `insert rule` command is appended. Returns the inserted span.
    pub fn allow_tcp_port(&mut self, port: u16) -> Result<Span, String> {
        let chain = self
            .chains
            .iter()
            .filter(|c| c.kind.as_deref() == Some("filter") && c.hook.as_deref() == Some("input"))
            .filter(|c| matches!(c.family.as_str(), "inet" | "ip" | "ip6"))
            .min_by_key(|c| (c.family != "inet", c.priority.unwrap_or(0)))
            .cloned()
            .ok_or("no filter chain on the input hook")?;
        let rule = format!("tcp dport {port} accept");
        let src = self.source.clone();
        let (offset, insert) = if let Some(first) = chain.rules.first() {
            // Indent like the first rule, on its own line.
            let line_start = src[..first.span.start.min(src.len())]
                .iter()
                .rposition(|&b| b == b'\n')
                .map_or(0, |p| p + 1);
            let indent: String = src[line_start..first.span.start.min(src.len())]
                .iter()
                .take_while(|&&b| b == b' ' || b == b'\t')
                .map(|&b| b as char)
                .collect();
            let own_line = src[line_start..first.span.start.min(src.len())]
                .iter()
                .all(|&b| b == b' ' || b == b'\t');
            if own_line {
                (
                    first.span.start,
                    format!("{rule} # rescue-disk: allow SSH\n{indent}"),
                )
            } else {
                (first.span.start, format!("{rule}; "))
            }
        } else if let Some(end) = chain.body_end {
            let line_start = src[..end.min(src.len())]
                .iter()
                .rposition(|&b| b == b'\n')
                .map_or(0, |p| p + 1);
            let before = &src[line_start..end.min(src.len())];
            if before.iter().all(|&b| b == b' ' || b == b'\t') {
                let indent: String = before.iter().map(|&b| b as char).collect();
                (
                    line_start,
                    format!("{indent}\t{rule} # rescue-disk: allow SSH\n"),
                )
            } else {
                (end, format!("{rule}; "))
            }
        } else {
            let mut off = src.len();
            let mut text = String::new();
            if !src.is_empty() && src.last() != Some(&b'\n') {
                text.push('\n');
            }
            text.push_str(&format!(
                "insert rule {} {} {} {rule} # rescue-disk: allow SSH\n",
                chain.family, chain.table, chain.name
            ));
            if off > src.len() {
                off = src.len();
            }
            (off, text)
        };
        let mut out = src;
        let offset = offset.min(out.len());
        out.splice(offset..offset, insert.bytes());
        *self = NftRuleset::parse(&self.path, &out);
        Ok(Span::new(offset, offset + insert.len()))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn v(s: &str, port: u16) -> FirewallVerdict {
        NftRuleset::parse("/etc/nftables.conf", s.as_bytes()).inbound_tcp(port, false)
    }

    const DEBIAN_DEFAULT: &str = "#!/usr/sbin/nft -f\n\nflush ruleset\n\ntable inet filter {\n\tchain input {\n\t\ttype filter hook input priority filter;\n\t}\n\tchain forward {\n\t\ttype filter hook forward priority filter;\n\t}\n\tchain output {\n\t\ttype filter hook output priority filter;\n\t}\n}\n";

    #[test]
    fn debian_default_allows() {
        let d = NftRuleset::parse("/etc/nftables.conf", DEBIAN_DEFAULT.as_bytes());
        assert_eq!(d.render(), DEBIAN_DEFAULT.as_bytes());
        assert!(d.diagnostics.is_empty(), "{:?}", d.diagnostics);
        assert_eq!(d.chains.len(), 3);
        assert!(d.inbound_tcp(22, false).is_allowed());
    }

    #[test]
    fn typical_rulesets() {
        let drop_all = "table inet filter {\n chain input {\n  type filter hook input priority 0; policy drop;\n  iif lo accept\n  ct state established,related accept\n  tcp dport { 80, 443 } accept\n }\n}\n";
        match v(drop_all, 22) {
            FirewallVerdict::Blocked { rule, .. } => assert_eq!(rule.line, 3),
            x => panic!("{x:?}"),
        }
        assert!(v(drop_all, 443).is_allowed());
        let ssh = "define SSH = 22\ntable inet filter {\n chain input {\n  type filter hook input priority 0; policy drop;\n  ct state vmap { established : accept, related : accept, invalid : drop }\n  iifname \"lo\" accept\n  tcp dport $SSH ct state new accept\n }\n}\n";
        assert!(v(ssh, 22).is_allowed());
        assert!(v(ssh, 23).is_blocked());
        let vmap = "table ip f {\n chain c {\n  type filter hook input priority 0; policy accept;\n  tcp dport vmap { 22 : drop, 80 : accept }\n }\n}\n";
        assert!(v(vmap, 22).is_blocked());
        assert!(v(vmap, 80).is_allowed());
        let two = "table ip a {\n chain c { type filter hook input priority 0; tcp dport 22 accept; }\n}\ntable ip b {\n chain c { type filter hook input priority 10; policy drop; }\n}\n";
        assert!(
            v(two, 22).is_blocked(),
            "an accept ends one base chain only"
        );
        let named = "table inet t {\n set ok { type inet_service; elements = { 22, 443 } }\n chain c { type filter hook input priority 0; policy drop; tcp dport @ok accept }\n}\n";
        assert!(v(named, 22).is_allowed());
        let iface = "table inet t {\n chain c { type filter hook input priority 0; policy drop; iifname \"eth0\" tcp dport 22 accept }\n}\n";
        assert!(matches!(v(iface, 22), FirewallVerdict::Unknown { .. }));
        let cmds = "add table inet t\nadd chain inet t c { type filter hook input priority 0 ; policy drop ; }\nadd rule inet t c tcp dport 22 accept\n";
        assert!(v(cmds, 22).is_allowed());
        let dormant = "table inet t {\n flags dormant\n chain c { type filter hook input priority 0; policy drop; }\n}\n";
        assert!(v(dormant, 22).is_allowed());
        let inc = "include \"/etc/nftables.d/*.nft\"\n";
        assert!(matches!(v(inc, 22), FirewallVerdict::Unknown { .. }));
        let v6 = "table ip6 t {\n chain c { type filter hook input priority 0; policy drop; }\n}\n";
        assert!(v(v6, 22).is_allowed());
        assert!(NftRuleset::parse("x", v6.as_bytes())
            .inbound_tcp(22, true)
            .is_blocked());
    }

    #[test]
    fn insert_allow_rule() {
        let s = "table inet filter {\n\tchain input {\n\t\ttype filter hook input priority 0; policy drop;\n\t\tiif lo accept\n\t}\n}\n";
        let mut d = NftRuleset::parse("x", s.as_bytes());
        assert!(d.inbound_tcp(22, false).is_blocked());
        d.allow_tcp_port(22).unwrap();
        assert_eq!(
            String::from_utf8(d.render()).unwrap(),
            "table inet filter {\n\tchain input {\n\t\ttype filter hook input priority 0; policy drop;\n\t\ttcp dport 22 accept # rescue-disk: allow SSH\n\t\tiif lo accept\n\t}\n}\n"
        );
        assert!(d.inbound_tcp(22, false).is_allowed());
        let s = "table inet filter {\n\tchain input {\n\t\ttype filter hook input priority 0; policy drop;\n\t}\n}\n";
        let mut d = NftRuleset::parse("x", s.as_bytes());
        d.allow_tcp_port(22).unwrap();
        assert!(
            d.inbound_tcp(22, false).is_allowed(),
            "{}",
            String::from_utf8_lossy(&d.render())
        );
    }
}
