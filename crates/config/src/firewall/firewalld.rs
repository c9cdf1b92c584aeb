//! firewalld (RHEL, Fedora, SUSE): `/etc/firewalld/firewalld.conf`
//! (`DefaultZone=`), zone files (`/etc/firewalld/zones/<zone>.xml`, which
//! override `/usr/lib/firewalld/zones/<zone>.xml`), and service definitions.
//!
//! A zone admits a new connection to a port when a `<service>` whose
//! definition lists the port, a `<port>` (single or range) or a
//! `<protocol value="tcp"/>` covers it, unless a rich rule refuses it
//! first; otherwise its `target` decides (`default` and `%%REJECT%%`
//! reject, `DROP` drops, `ACCEPT` accepts). Rich rules are ordered like
//! firewalld's nftables backend: negative priorities, then (priority 0)
//! deny before allow, then services/ports, then positive priorities. Rules
//! restricted to a source address make the answer depend on the client.
//!
//! The zone XML is read with a small tolerant tokenizer (no DTD, entities
//! limited to the predefined ones and character references); the document
//! stays byte-identical until [`Zone::add_service`] inserts one element.
//! Never does I/O, never panics.

use serde::Serialize;

use super::{FirewallVerdict, RuleRef, Tri};
use crate::shell::{ShellDoc, ShellOptions};
use crate::{Diagnostic, Span};

/// One XML element (start or empty tag) of a zone or service file.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, schemars::JsonSchema)]
pub struct Element {
    /// Tag name.
    pub name: String,
    /// Attributes, entity-decoded, in order.
    pub attrs: Vec<(String, String)>,
    /// 1-based line of the tag.
    pub line: usize,
    /// The tag's bytes.
    pub span: Span,
    /// Nesting depth (the root element is 0).
    pub depth: usize,
    /// Index of the parent element.
    pub parent: Option<usize>,
    /// True for `<name/>`.
    pub empty: bool,
    /// Where the matching end tag starts, for non-empty elements.
    pub end: Option<usize>,
}

impl Element {
    /// An attribute's value.
    pub fn attr(&self, name: &str) -> Option<&str> {
        self.attrs
            .iter()
            .find(|(k, _)| k == name)
            .map(|(_, v)| v.as_str())
    }
}

fn decode_entities(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    let mut rest = s;
    while let Some(i) = rest.find('&') {
        out.push_str(&rest[..i]);
        let after = &rest[i..];
        let Some(semi) = after.find(';').filter(|&k| k <= 12) else {
            out.push('&');
            rest = &after[1..];
            continue;
        };
        let ent = &after[1..semi];
        let ch = match ent {
            "amp" => Some('&'),
            "lt" => Some('<'),
            "gt" => Some('>'),
            "quot" => Some('"'),
            "apos" => Some('\''),
            _ => ent
                .strip_prefix("#x")
                .and_then(|h| u32::from_str_radix(h, 16).ok())
                .or_else(|| ent.strip_prefix('#').and_then(|d| d.parse().ok()))
                .and_then(char::from_u32),
        };
        match ch {
            Some(c) => {
                out.push(c);
                rest = &after[semi + 1..];
            }
            None => {
                out.push('&');
                rest = &after[1..];
            }
        }
    }
    out.push_str(rest);
    out
}

fn parse_attrs(s: &str) -> Vec<(String, String)> {
    let b = s.as_bytes();
    let mut out = Vec::new();
    let mut i = 0;
    while i < b.len() {
        while i < b.len() && b[i].is_ascii_whitespace() {
            i += 1;
        }
        let ks = i;
        while i < b.len() && !b[i].is_ascii_whitespace() && b[i] != b'=' {
            i += 1;
        }
        let key = &s[ks..i];
        while i < b.len() && b[i].is_ascii_whitespace() {
            i += 1;
        }
        if i >= b.len() || b[i] != b'=' {
            if !key.is_empty() {
                out.push((key.to_owned(), String::new()));
            }
            continue;
        }
        i += 1;
        while i < b.len() && b[i].is_ascii_whitespace() {
            i += 1;
        }
        let (vs, ve) = if i < b.len() && (b[i] == b'"' || b[i] == b'\'') {
            let q = b[i];
            let vs = i + 1;
            let mut j = vs;
            while j < b.len() && b[j] != q {
                j += 1;
            }
            i = (j + 1).min(b.len());
            (vs, j.min(b.len()))
        } else {
            let vs = i;
            while i < b.len() && !b[i].is_ascii_whitespace() {
                i += 1;
            }
            (vs, i)
        };
        if !key.is_empty() {
            out.push((key.to_owned(), decode_entities(&s[vs..ve])));
        }
    }
    out
}

/// Tokenizes XML into elements (start/empty tags with their structure).
fn elements(data: &[u8], diags: &mut Vec<Diagnostic>) -> Vec<Element> {
    let text = String::from_utf8_lossy(data);
    // Work on bytes of the lossy text only when it is the same length, so
    // spans stay valid; otherwise fall back to the raw bytes (ASCII tags).
    let src: &[u8] = if text.len() == data.len() {
        text.as_bytes()
    } else {
        data
    };
    // Line numbers are counted incrementally: positions only move forward.
    let mut counted_to = 0usize;
    let mut line = 1usize;
    let mut line_at = |pos: usize| -> usize {
        let pos = pos.min(src.len());
        if pos > counted_to {
            line += src[counted_to..pos].iter().filter(|&&b| b == b'\n').count();
            counted_to = pos;
        }
        line
    };
    let mut out: Vec<Element> = Vec::new();
    let mut stack: Vec<usize> = Vec::new();
    let mut i = 0;
    while i < src.len() {
        if src[i] != b'<' {
            i += 1;
            continue;
        }
        let rest = &src[i..];
        if rest.starts_with(b"<!--") {
            match find(src, i + 4, b"-->") {
                Some(e) => i = e + 3,
                None => {
                    diags.push(Diagnostic::new(line_at(i), "unterminated XML comment"));
                    break;
                }
            }
            continue;
        }
        if rest.starts_with(b"<?") || rest.starts_with(b"<!") {
            let close: &[u8] = if rest.starts_with(b"<?") { b"?>" } else { b">" };
            match find(src, i + 2, close) {
                Some(e) => i = e + close.len(),
                None => break,
            }
            continue;
        }
        // A tag: find its `>` outside quotes.
        let mut j = i + 1;
        let mut quote = 0u8;
        while j < src.len() {
            let c = src[j];
            if quote != 0 {
                if c == quote {
                    quote = 0;
                }
            } else if c == b'"' || c == b'\'' {
                quote = c;
            } else if c == b'>' {
                break;
            }
            j += 1;
        }
        if j >= src.len() {
            diags.push(Diagnostic::new(line_at(i), "unterminated XML tag"));
            break;
        }
        let inner = String::from_utf8_lossy(&src[i + 1..j]).into_owned();
        let span = Span::new(i, j + 1);
        let tag_line = line_at(i);
        if let Some(name) = inner.strip_prefix('/') {
            let name = name.trim();
            match stack.pop() {
                Some(open) if out[open].name == name => out[open].end = Some(i),
                Some(open) => {
                    diags.push(Diagnostic::new(
                        tag_line,
                        format!("end tag </{name}> does not close <{}>", out[open].name),
                    ));
                    out[open].end = Some(i);
                }
                None => diags.push(Diagnostic::new(
                    tag_line,
                    format!("stray end tag </{name}>"),
                )),
            }
        } else {
            let empty = inner.ends_with('/');
            let body = inner.trim_end_matches('/');
            let name_end = body
                .find(|c: char| c.is_ascii_whitespace())
                .unwrap_or(body.len());
            let name = body[..name_end].to_owned();
            let attrs = parse_attrs(&body[name_end..]);
            let idx = out.len();
            out.push(Element {
                name,
                attrs,
                line: tag_line,
                span,
                depth: stack.len(),
                parent: stack.last().copied(),
                empty,
                end: None,
            });
            if !empty {
                stack.push(idx);
            }
        }
        i = j + 1;
    }
    for open in stack {
        diags.push(Diagnostic::new(
            out[open].line,
            format!("<{}> is never closed", out[open].name),
        ));
    }
    out
}

fn find(h: &[u8], from: usize, n: &[u8]) -> Option<usize> {
    h.get(from..)?
        .windows(n.len())
        .position(|w| w == n)
        .map(|p| p + from)
}

/// A port item: protocol and a single port or `lo-hi` range.
fn port_covers(spec: &str, port: u16) -> Option<bool> {
    match spec.split_once('-') {
        Some((a, b)) => {
            Some((a.trim().parse::<u16>().ok()?..=b.trim().parse::<u16>().ok()?).contains(&port))
        }
        None => Some(spec.trim().parse::<u16>().ok()? == port),
    }
}

/// Ports a service defines: (protocol, port or range).
pub type ServicePorts = Vec<(String, String)>;

/// The port definitions of the services firewalld ships that matter for
/// remote access; used when the guest has no service file of that name.
pub fn builtin_service(name: &str) -> Option<ServicePorts> {
    let tcp = |p: &str| vec![("tcp".to_owned(), p.to_owned())];
    Some(match name {
        "ssh" => tcp("22"),
        "http" => tcp("80"),
        "https" => tcp("443"),
        "cockpit" => tcp("9090"),
        "rdp" => vec![("tcp".into(), "3389".into()), ("udp".into(), "3389".into())],
        "vnc-server" => tcp("5900-5903"),
        "dhcpv6-client" => vec![("udp".to_owned(), "546".to_owned())],
        "mdns" => vec![("udp".to_owned(), "5353".to_owned())],
        "samba-client" => vec![("udp".into(), "137".into()), ("udp".into(), "138".into())],
        _ => return None,
    })
}

/// A service definition file (`/etc/firewalld/services/<name>.xml` or
/// `/usr/lib/firewalld/services/<name>.xml`).
pub fn parse_service(data: &[u8]) -> ServicePorts {
    let mut d = Vec::new();
    elements(data, &mut d)
        .iter()
        .filter(|e| e.name == "port" && e.depth == 1)
        .map(|e| {
            (
                e.attr("protocol").unwrap_or("").to_owned(),
                e.attr("port").unwrap_or("").to_owned(),
            )
        })
        .collect()
}

/// Minimal XML of firewalld's standard zones, for when the guest has no
/// file for its default zone. Services as shipped by RHEL 9 (Fedora and
/// RHEL 8+ also add `cockpit` to public; it does not change port 22).
pub fn builtin_zone(name: &str) -> Option<&'static str> {
    Some(match name {
        "public" => "<?xml version=\"1.0\" encoding=\"utf-8\"?>\n<zone>\n  <short>Public</short>\n  <service name=\"ssh\"/>\n  <service name=\"dhcpv6-client\"/>\n  <service name=\"cockpit\"/>\n</zone>\n",
        "external" => "<?xml version=\"1.0\" encoding=\"utf-8\"?>\n<zone>\n  <short>External</short>\n  <service name=\"ssh\"/>\n  <masquerade/>\n</zone>\n",
        "dmz" => "<?xml version=\"1.0\" encoding=\"utf-8\"?>\n<zone>\n  <short>DMZ</short>\n  <service name=\"ssh\"/>\n</zone>\n",
        "work" => "<?xml version=\"1.0\" encoding=\"utf-8\"?>\n<zone>\n  <short>Work</short>\n  <service name=\"ssh\"/>\n  <service name=\"dhcpv6-client\"/>\n  <service name=\"cockpit\"/>\n</zone>\n",
        "home" | "internal" => "<?xml version=\"1.0\" encoding=\"utf-8\"?>\n<zone>\n  <short>Home</short>\n  <service name=\"ssh\"/>\n  <service name=\"mdns\"/>\n  <service name=\"samba-client\"/>\n  <service name=\"dhcpv6-client\"/>\n  <service name=\"cockpit\"/>\n</zone>\n",
        "trusted" => "<?xml version=\"1.0\" encoding=\"utf-8\"?>\n<zone target=\"ACCEPT\">\n  <short>Trusted</short>\n</zone>\n",
        "drop" => "<?xml version=\"1.0\" encoding=\"utf-8\"?>\n<zone target=\"DROP\">\n  <short>Drop</short>\n</zone>\n",
        "block" => "<?xml version=\"1.0\" encoding=\"utf-8\"?>\n<zone target=\"%%REJECT%%\">\n  <short>Block</short>\n</zone>\n",
        _ => return None,
    })
}

/// `/etc/firewalld/firewalld.conf`.
#[derive(Debug, Clone)]
pub struct FirewalldConf {
    path: String,
    doc: ShellDoc,
}

impl FirewalldConf {
    /// Parses firewalld.conf (`KEY=value` lines). Never fails.
    pub fn parse(path: &str, data: &[u8]) -> FirewalldConf {
        FirewalldConf {
            path: path.to_owned(),
            doc: ShellDoc::parse(data, ShellOptions::default()),
        }
    }

    /// The bytes of the document.
    pub fn render(&self) -> Vec<u8> {
        self.doc.render()
    }

    /// The default zone and where it is set (`public`, line 0, when unset).
    pub fn default_zone(&self) -> (String, RuleRef) {
        match self.doc.find("DefaultZone") {
            Some((line, a)) if !a.value.trim().is_empty() => (
                a.value.trim().to_owned(),
                RuleRef {
                    file: self.path.clone(),
                    line,
                    rule: format!("DefaultZone={}", a.value),
                },
            ),
            _ => (
                "public".to_owned(),
                RuleRef {
                    file: self.path.clone(),
                    line: 0,
                    rule: "DefaultZone unset: public".into(),
                },
            ),
        }
    }
}

/// A parsed zone file.
#[derive(Debug, Clone, Serialize, schemars::JsonSchema)]
pub struct Zone {
    #[serde(skip)]
    source: Vec<u8>,
    /// The guest path (for evidence).
    pub path: String,
    /// Every element.
    pub elements: Vec<Element>,
    /// Problems found.
    pub diagnostics: Vec<Diagnostic>,
    /// Children of each element, by index.
    #[serde(skip)]
    kids: Vec<Vec<usize>>,
}

/// What a zone item does to the probe.
enum Action {
    Accept,
    Reject,
    Drop,
    Other,
}

impl Zone {
    /// Parses a zone file; `path` names it in evidence. Never fails.
    pub fn parse(path: &str, data: &[u8]) -> Zone {
        let mut diagnostics = Vec::new();
        let elements = elements(data, &mut diagnostics);
        if !elements.iter().any(|e| e.depth == 0 && e.name == "zone") {
            diagnostics.push(Diagnostic::new(
                1,
                "no <zone> root element: firewalld refuses the zone file",
            ));
        }
        let mut kids = vec![Vec::new(); elements.len()];
        for (i, e) in elements.iter().enumerate() {
            if let Some(p) = e.parent {
                if let Some(k) = kids.get_mut(p) {
                    k.push(i);
                }
            }
        }
        Zone {
            source: data.to_vec(),
            path: path.to_owned(),
            elements,
            diagnostics,
            kids,
        }
    }

    /// The bytes of the document; identical to the input until an edit.
    pub fn render(&self) -> Vec<u8> {
        self.source.clone()
    }

    fn root(&self) -> Option<(usize, &Element)> {
        self.elements
            .iter()
            .enumerate()
            .find(|(_, e)| e.depth == 0 && e.name == "zone")
    }

    fn rref(&self, e: &Element) -> RuleRef {
        RuleRef {
            file: self.path.clone(),
            line: e.line,
            rule: String::from_utf8_lossy(e.span.slice(&self.source))
                .trim()
                .to_owned(),
        }
    }

    fn children(&self, parent: usize) -> impl Iterator<Item = &Element> {
        self.children_idx(parent).map(|(_, e)| e)
    }

    fn children_idx(&self, parent: usize) -> impl Iterator<Item = (usize, &Element)> {
        self.kids
            .get(parent)
            .into_iter()
            .flatten()
            .filter_map(move |&i| self.elements.get(i).map(|e| (i, e)))
    }

    /// The zone's target (`default` when unset).
    pub fn target(&self) -> String {
        self.root()
            .and_then(|(_, r)| r.attr("target"))
            .unwrap_or("default")
            .to_owned()
    }

    /// Service names the zone lists.
    pub fn services(&self) -> Vec<String> {
        match self.root() {
            Some((i, _)) => self
                .children(i)
                .filter(|e| e.name == "service")
                .filter_map(|e| e.attr("name").map(str::to_owned))
                .collect(),
            None => Vec::new(),
        }
    }

    /// Whether an item (service, port or protocol element) covers tcp/port.
    fn item_covers(
        &self,
        e: &Element,
        port: u16,
        services: &dyn Fn(&str) -> Option<ServicePorts>,
    ) -> Tri {
        match e.name.as_str() {
            "service" => {
                let name = e.attr("name").unwrap_or("");
                match services(name) {
                    Some(ports) => {
                        let hit = ports
                            .iter()
                            .any(|(proto, p)| proto == "tcp" && port_covers(p, port) == Some(true));
                        if hit {
                            Tri::Yes
                        } else {
                            Tri::No
                        }
                    }
                    None => Tri::Maybe(format!("service {name:?} has no definition here")),
                }
            }
            "port" => {
                let proto = e.attr("protocol").unwrap_or("");
                match port_covers(e.attr("port").unwrap_or(""), port) {
                    Some(true) if proto == "tcp" => Tri::Yes,
                    Some(_) => Tri::No,
                    None => Tri::Maybe(format!(
                        "port {:?} not understood",
                        e.attr("port").unwrap_or("")
                    )),
                }
            }
            "protocol" => {
                if e.attr("value") == Some("tcp") {
                    Tri::Yes
                } else {
                    Tri::No
                }
            }
            _ => Tri::No,
        }
    }

    /// A rich rule: (match, action, priority).
    fn rich_rule(
        &self,
        idx: usize,
        port: u16,
        ipv6: bool,
        services: &dyn Fn(&str) -> Option<ServicePorts>,
    ) -> (Tri, Action, i64) {
        let rule = &self.elements[idx];
        let priority: i64 = rule
            .attr("priority")
            .and_then(|p| p.parse().ok())
            .unwrap_or(0);
        let mut m = match rule.attr("family") {
            Some("ipv4") if ipv6 => Tri::No,
            Some("ipv6") if !ipv6 => Tri::No,
            _ => Tri::Yes,
        };
        let mut action = Action::Other;
        for (ci, c) in self.children_idx(idx) {
            match c.name.as_str() {
                "source" | "destination" => {
                    let what = if c.name == "source" {
                        "client"
                    } else {
                        "guest"
                    };
                    let addr = c
                        .attr("address")
                        .or(c.attr("ipset"))
                        .or(c.attr("mac"))
                        .unwrap_or("?");
                    let inv = c.attr("invert").is_some_and(|v| {
                        v.eq_ignore_ascii_case("true") || v.eq_ignore_ascii_case("yes")
                    });
                    m = m.and(Tri::Maybe(format!(
                        "the {what} address is {}{addr}",
                        if inv { "not " } else { "" }
                    )));
                }
                "service" | "port" | "protocol" => {
                    m = m.and(self.item_covers(c, port, services));
                }
                "icmp-block" | "icmp-type" | "forward-port" | "source-port" | "masquerade" => {
                    m = m.and(Tri::No);
                }
                "accept" => action = Action::Accept,
                "reject" => action = Action::Reject,
                "drop" => action = Action::Drop,
                "limit" => m = m.and(Tri::Maybe("a rate limit is not exceeded".into())),
                _ => {}
            }
            // Actions may carry a limit child.
            if matches!(c.name.as_str(), "accept" | "reject" | "drop")
                && !c.empty
                && self.children(ci).any(|x| x.name == "limit")
            {
                m = m.and(Tri::Maybe("a rate limit is not exceeded".into()));
            }
        }
        // A rule without a service/port/protocol applies to every packet
        // (from its source, if it has one).
        (m, action, priority)
    }

    /// Whether the zone admits a new inbound TCP connection to `port`.
    /// `services` resolves a service name to its ports (the guest's own
    /// definition first, then [`builtin_service`]).
    pub fn inbound_tcp(
        &self,
        port: u16,
        services: &dyn Fn(&str) -> Option<ServicePorts>,
    ) -> FirewallVerdict {
        self.inbound(port, false, services)
    }

    /// Like [`Zone::inbound_tcp`] for an IPv6 client.
    pub fn inbound_tcp6(
        &self,
        port: u16,
        services: &dyn Fn(&str) -> Option<ServicePorts>,
    ) -> FirewallVerdict {
        self.inbound(port, true, services)
    }

    fn inbound(
        &self,
        port: u16,
        ipv6: bool,
        services: &dyn Fn(&str) -> Option<ServicePorts>,
    ) -> FirewallVerdict {
        let Some((root_idx, root)) = self.root() else {
            return FirewallVerdict::Unknown {
                why: format!("{} is not a zone file", self.path),
                evidence: Vec::new(),
            };
        };
        // Ordered steps: (rank, element index, match, action).
        let mut steps: Vec<(i64, usize, Tri, Action)> = Vec::new();
        for (i, e) in self.children_idx(root_idx) {
            match e.name.as_str() {
                "rule" => {
                    let (m, a, prio) = self.rich_rule(i, port, ipv6, services);
                    // Within priority 0: deny (reject/drop) before allow.
                    let rank = match (prio, &a) {
                        (p, _) if p < 0 => p * 10 - 1_000_000,
                        (0, Action::Reject | Action::Drop) => 1,
                        (0, _) => 2,
                        (p, _) => 10 + p,
                    };
                    steps.push((rank, i, m, a));
                }
                "service" | "port" | "protocol" => {
                    let m = self.item_covers(e, port, services);
                    steps.push((3, i, m, Action::Accept));
                }
                "forward-port" => {
                    let covers = e.attr("protocol") == Some("tcp")
                        && port_covers(e.attr("port").unwrap_or(""), port) == Some(true);
                    if covers {
                        steps.push((
                            0,
                            i,
                            Tri::Maybe("the port is forwarded elsewhere".into()),
                            Action::Other,
                        ));
                    }
                }
                _ => {}
            }
        }
        steps.sort_by_key(|s| s.0);
        let mut maybe_accepts: Vec<(RuleRef, String)> = Vec::new();
        let mut maybe_drops: Vec<(RuleRef, String)> = Vec::new();
        for (_, i, m, action) in steps {
            let e = &self.elements[i];
            match (m, action) {
                (Tri::No, _) | (_, Action::Other) => {}
                (Tri::Yes, Action::Accept) => {
                    let note = maybe_drops
                        .iter()
                        .map(|(r, c)| format!("line {} refuses when {c}", r.line))
                        .collect::<Vec<_>>()
                        .join("; ");
                    let mut evidence = vec![self.rref(e)];
                    evidence.extend(maybe_drops.into_iter().map(|(r, _)| r));
                    return FirewallVerdict::Allowed { evidence, note };
                }
                (Tri::Yes, a) => {
                    let how = if matches!(a, Action::Drop) {
                        "dropped"
                    } else {
                        "rejected"
                    };
                    return self.blocked_or_unknown(
                        self.rref(e),
                        format!("{how} by this rich rule"),
                        maybe_accepts,
                    );
                }
                (Tri::Maybe(c), Action::Accept) => maybe_accepts.push((self.rref(e), c)),
                (Tri::Maybe(c), _) => maybe_drops.push((self.rref(e), c)),
            }
        }
        let target = self.target();
        let tref = RuleRef {
            file: self.path.clone(),
            line: root.line,
            rule: format!("zone target {target}"),
        };
        match target.as_str() {
            "ACCEPT" => FirewallVerdict::Allowed {
                evidence: vec![tref],
                note: String::new(),
            },
            "DROP" => self.blocked_or_unknown(
                tref,
                "dropped by the zone target (no service or port admits it)".into(),
                maybe_accepts,
            ),
            _ => self.blocked_or_unknown(
                tref,
                "rejected: no service or port of the zone admits it (target default)".into(),
                maybe_accepts,
            ),
        }
    }

    fn blocked_or_unknown(
        &self,
        rule: RuleRef,
        reason: String,
        maybe: Vec<(RuleRef, String)>,
    ) -> FirewallVerdict {
        if maybe.is_empty() {
            return FirewallVerdict::Blocked { rule, reason };
        }
        let list: Vec<String> = maybe
            .iter()
            .map(|(r, c)| format!("line {} when {c}", r.line))
            .collect();
        let mut evidence: Vec<RuleRef> = maybe.into_iter().map(|(r, _)| r).collect();
        evidence.push(rule);
        FirewallVerdict::Unknown {
            why: format!("accepted only by {}; otherwise {reason}", list.join("; ")),
            evidence,
        }
    }

    /// Adds `<service name="…"/>` to the zone, indented like its other
    /// children, before `</zone>`. A no-op (returning the existing tag's
    /// span) when the service is already listed.
    pub fn add_service(&mut self, name: &str) -> Result<Span, String> {
        if name.is_empty() || name.contains(['"', '<', '>', '&', '\n']) {
            return Err(format!("invalid service name {name:?}"));
        }
        let (root_idx, root) = self.root().ok_or("no <zone> element")?;
        if let Some(e) = self
            .children(root_idx)
            .find(|e| e.name == "service" && e.attr("name") == Some(name))
        {
            return Ok(e.span);
        }
        let tag = format!("<service name=\"{name}\"/>");
        let src = &self.source;
        let (offset, insert) = if root.empty {
            // `<zone/>` becomes `<zone>…</zone>`.
            let open = String::from_utf8_lossy(root.span.slice(src)).into_owned();
            let open = open
                .trim_end_matches('>')
                .trim_end_matches('/')
                .trim_end()
                .to_owned();
            let text = format!("{open}>\n  {tag}\n</zone>");
            let mut out = src.clone();
            out.splice(root.span.start..root.span.end, text.bytes());
            let span = Span::new(root.span.start, root.span.start + text.len());
            *self = Zone::parse(&self.path, &out);
            return Ok(span);
        } else {
            let end = root.end.ok_or("the <zone> element is never closed")?;
            let last_child = self.children(root_idx).last();
            let indent = match last_child {
                Some(c) => {
                    let ls = src[..c.span.start]
                        .iter()
                        .rposition(|&b| b == b'\n')
                        .map_or(0, |p| p + 1);
                    String::from_utf8_lossy(&src[ls..c.span.start])
                        .chars()
                        .take_while(|c| *c == ' ' || *c == '\t')
                        .collect()
                }
                None => "  ".to_owned(),
            };
            let ls = src[..end]
                .iter()
                .rposition(|&b| b == b'\n')
                .map_or(0, |p| p + 1);
            if src[ls..end].iter().all(|&b| b == b' ' || b == b'\t') {
                (ls, format!("{indent}{tag}\n"))
            } else {
                (end, format!("\n{indent}{tag}\n"))
            }
        };
        let mut out = src.clone();
        out.splice(offset..offset, insert.bytes());
        *self = Zone::parse(&self.path, &out);
        Ok(Span::new(offset, offset + insert.len()))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const RHEL9_PUBLIC: &str = "<?xml version=\"1.0\" encoding=\"utf-8\"?>\n<zone>\n  <short>Public</short>\n  <description>For use in public areas. You do not trust the other computers on networks to not harm your computer. Only selected incoming connections are accepted.</description>\n  <service name=\"ssh\"/>\n  <service name=\"dhcpv6-client\"/>\n  <service name=\"cockpit\"/>\n  <forward/>\n</zone>\n";

    fn svc(name: &str) -> Option<ServicePorts> {
        builtin_service(name)
    }

    #[test]
    fn public_zone_allows_ssh() {
        let z = Zone::parse(
            "/usr/lib/firewalld/zones/public.xml",
            RHEL9_PUBLIC.as_bytes(),
        );
        assert_eq!(z.render(), RHEL9_PUBLIC.as_bytes());
        assert!(z.diagnostics.is_empty(), "{:?}", z.diagnostics);
        match z.inbound_tcp(22, &svc) {
            FirewallVerdict::Allowed { evidence, .. } => assert_eq!(evidence[0].line, 5),
            v => panic!("{v:?}"),
        }
        match z.inbound_tcp(2222, &svc) {
            FirewallVerdict::Blocked { rule, .. } => assert_eq!(rule.line, 2),
            v => panic!("{v:?}"),
        }
    }

    #[test]
    fn ports_targets_and_rich_rules() {
        let z = |s: &str| Zone::parse("z.xml", s.as_bytes());
        assert!(z("<zone><port protocol=\"tcp\" port=\"20-30\"/></zone>")
            .inbound_tcp(22, &svc)
            .is_allowed());
        assert!(z("<zone><port protocol=\"udp\" port=\"22\"/></zone>")
            .inbound_tcp(22, &svc)
            .is_blocked());
        assert!(z("<zone target=\"ACCEPT\"/>")
            .inbound_tcp(22, &svc)
            .is_allowed());
        assert!(z("<zone target=\"DROP\"><service name=\"http\"/></zone>")
            .inbound_tcp(22, &svc)
            .is_blocked());
        let deny =
            "<zone><service name=\"ssh\"/><rule><service name=\"ssh\"/><reject/></rule></zone>";
        assert!(
            z(deny).inbound_tcp(22, &svc).is_blocked(),
            "deny rich rules come before services"
        );
        let src = "<zone><rule family=\"ipv4\"><source address=\"10.0.0.0/8\"/><service name=\"ssh\"/><accept/></rule></zone>";
        assert!(matches!(
            z(src).inbound_tcp(22, &svc),
            FirewallVerdict::Unknown { .. }
        ));
        assert!(z(src).inbound_tcp6(22, &svc).is_blocked());
        let custom = |n: &str| {
            if n == "ssh" {
                Some(vec![("tcp".to_owned(), "2222".to_owned())])
            } else {
                None
            }
        };
        assert!(z("<zone><service name=\"ssh\"/></zone>")
            .inbound_tcp(22, &custom)
            .is_blocked());
        assert!(matches!(
            z("<zone><service name=\"mystery\"/></zone>").inbound_tcp(22, &svc),
            FirewallVerdict::Unknown { .. }
        ));
    }

    #[test]
    fn add_service_keeps_layout() {
        let no_ssh = RHEL9_PUBLIC.replace("  <service name=\"ssh\"/>\n", "");
        let mut z = Zone::parse("/etc/firewalld/zones/public.xml", no_ssh.as_bytes());
        assert!(z.inbound_tcp(22, &svc).is_blocked());
        z.add_service("ssh").unwrap();
        assert_eq!(
            String::from_utf8(z.render()).unwrap(),
            no_ssh.replace(
                "  <forward/>\n",
                "  <forward/>\n  <service name=\"ssh\"/>\n"
            )
        );
        assert!(z.inbound_tcp(22, &svc).is_allowed());
        let mut e = Zone::parse(
            "z",
            b"<?xml version=\"1.0\"?>\n<zone target=\"default\"/>\n",
        );
        e.add_service("ssh").unwrap();
        assert_eq!(e.render(), b"<?xml version=\"1.0\"?>\n<zone target=\"default\">\n  <service name=\"ssh\"/>\n</zone>\n");
    }

    #[test]
    fn default_zone_and_services() {
        let c = FirewalldConf::parse(
            "/etc/firewalld/firewalld.conf",
            b"# firewalld config file\n\n# default zone\nDefaultZone=public\n",
        );
        assert_eq!(c.default_zone().0, "public");
        assert_eq!(c.default_zone().1.line, 4);
        let c = FirewalldConf::parse("f", b"DefaultZone=\n");
        assert_eq!(c.default_zone().0, "public");
        let ports = parse_service(b"<?xml version=\"1.0\"?>\n<service>\n  <short>SSH</short>\n  <port protocol=\"tcp\" port=\"2222\"/>\n</service>\n");
        assert_eq!(ports, vec![("tcp".to_owned(), "2222".to_owned())]);
        assert!(Zone::parse("z", builtin_zone("drop").unwrap().as_bytes())
            .inbound_tcp(22, &svc)
            .is_blocked());
        assert_eq!(
            decode_entities("a&amp;b&#x41;&#66;&bogus;"),
            "a&bA B&bogus;".replace(' ', "")
        );
    }
}
