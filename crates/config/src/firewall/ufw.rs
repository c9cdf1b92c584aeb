//! ufw (Debian/Ubuntu): `/etc/ufw/ufw.conf` (`ENABLED=`), `/etc/default/ufw`
//! (`DEFAULT_INPUT_POLICY=`, `IPV6=`), and the iptables-restore files it
//! loads, `/etc/ufw/user.rules` / `user6.rules` (rules added with `ufw allow`,
//! each under a `### tuple ###` comment), `before.rules` and `after.rules`.
//!
//! The chains are assembled the way ufw's `ufw-init` does at boot: INPUT
//! jumps to `ufw-before-logging-input`, `ufw-before-input` (before.rules,
//! then a jump to `ufw-user-input`), `ufw-after-input`,
//! `ufw-after-logging-input`, `ufw-reject-input` (REJECT when the default
//! policy is REJECT) and `ufw-track-input` (accepting new connections when it
//! is ACCEPT); the INPUT policy is the default policy (REJECT becomes DROP).
//! When the guest's before/after rules are not given, a minimal equivalent
//! of Debian's shipped ones is used (loopback, conntrack, the not-local
//! check, and after.rules' NetBIOS/DHCP/broadcast skips).
//!
//! Never does I/O, never panics.

use super::iptables::{ChainSet, IptablesSave};
use super::{FirewallVerdict, RuleRef};
use crate::shell::{ShellDoc, ShellOptions};
use crate::Span;

/// The ufw files of a guest, each as (guest path, bytes); `None` when the
/// file does not exist.
#[derive(Debug, Clone, Copy, Default)]
pub struct UfwFiles<'a> {
    /// `/etc/ufw/ufw.conf`.
    pub ufw_conf: Option<(&'a str, &'a [u8])>,
    /// `/etc/default/ufw`.
    pub default_ufw: Option<(&'a str, &'a [u8])>,
    /// `/etc/ufw/user.rules` (or `user6.rules` for IPv6: see
    /// [`UfwFiles::user6_rules`]).
    pub user_rules: Option<(&'a str, &'a [u8])>,
    /// `/etc/ufw/user6.rules`.
    pub user6_rules: Option<(&'a str, &'a [u8])>,
    /// `/etc/ufw/before.rules` (or `before6.rules`); the shipped default is
    /// assumed when `None`.
    pub before_rules: Option<(&'a str, &'a [u8])>,
}

/// A minimal equivalent of Debian's shipped before.rules for inbound TCP.
const BEFORE_DEFAULT: &str = "*filter\n\
:ufw-before-input - [0:0]\n\
:ufw-not-local - [0:0]\n\
-A ufw-before-input -i lo -j ACCEPT\n\
-A ufw-before-input -m conntrack --ctstate RELATED,ESTABLISHED -j ACCEPT\n\
-A ufw-before-input -m conntrack --ctstate INVALID -j DROP\n\
-A ufw-before-input -p icmp -j ACCEPT\n\
-A ufw-before-input -p udp --sport 67 --dport 68 -j ACCEPT\n\
-A ufw-before-input -j ufw-not-local\n\
-A ufw-not-local -m addrtype --dst-type LOCAL -j RETURN\n\
-A ufw-not-local -m addrtype --dst-type MULTICAST -j RETURN\n\
-A ufw-not-local -m addrtype --dst-type BROADCAST -j RETURN\n\
-A ufw-not-local -j DROP\n\
COMMIT\n";

/// A minimal equivalent of Debian's shipped after.rules for inbound TCP.
const AFTER_DEFAULT: &str = "*filter\n\
:ufw-after-input - [0:0]\n\
-A ufw-after-input -p tcp --dport 139 -j ufw-skip-to-policy-input\n\
-A ufw-after-input -p tcp --dport 445 -j ufw-skip-to-policy-input\n\
-A ufw-after-input -p udp --dport 137 -j ufw-skip-to-policy-input\n\
-A ufw-after-input -p udp --dport 138 -j ufw-skip-to-policy-input\n\
-A ufw-after-input -m addrtype --dst-type BROADCAST -j ufw-skip-to-policy-input\n\
COMMIT\n";

fn setting(file: Option<(&str, &[u8])>, key: &str) -> Option<(String, RuleRef)> {
    let (path, data) = file?;
    let doc = ShellDoc::parse(data, ShellOptions::default());
    let (line, a) = doc.find(key)?;
    Some((
        a.value.clone(),
        RuleRef {
            file: path.to_owned(),
            line,
            rule: format!("{key}={}", a.value),
        },
    ))
}

/// The `ufw-init` framework chains, for a default input policy.
fn framework(policy: &str, six: &str) -> String {
    let p = six;
    let mut s = String::from("*filter\n");
    for c in [
        "before-logging-input",
        "before-input",
        "after-input",
        "after-logging-input",
        "reject-input",
        "track-input",
        "skip-to-policy-input",
        "user-input",
        "user-logging-input",
        "user-limit",
        "user-limit-accept",
        "logging-deny",
        "logging-allow",
        "not-local",
    ] {
        s.push_str(&format!(":ufw{p}-{c} - [0:0]\n"));
    }
    for c in [
        "before-logging-input",
        "before-input",
        "after-input",
        "after-logging-input",
        "reject-input",
        "track-input",
    ] {
        s.push_str(&format!("-A INPUT -j ufw{p}-{c}\n"));
    }
    if policy == "REJECT" {
        s.push_str(&format!("-A ufw{p}-reject-input -j REJECT\n"));
    }
    if policy == "ACCEPT" {
        s.push_str(&format!(
            "-A ufw{p}-track-input -p tcp -m conntrack --ctstate NEW -j ACCEPT\n"
        ));
    }
    s.push_str(&format!("-A ufw{p}-skip-to-policy-input -j {policy}\n"));
    s.push_str("COMMIT\n");
    s
}

/// The restore text of the whole assembled INPUT path (for tests that load
/// it into a kernel), and the chains.
#[doc(hidden)]
pub fn assembled(files: &UfwFiles<'_>, ipv6: bool) -> Result<(String, ChainSetHandle), String> {
    let policy = setting(files.default_ufw, "DEFAULT_INPUT_POLICY")
        .map(|(v, _)| v.to_ascii_uppercase())
        .unwrap_or_else(|| "DROP".to_owned());
    let six = if ipv6 { "6" } else { "" };
    let fw = framework(&policy, six);
    let before_default = BEFORE_DEFAULT.replace("ufw-", &format!("ufw{six}-"));
    let after_default = AFTER_DEFAULT.replace("ufw-", &format!("ufw{six}-"));
    let before = files.before_rules.map_or(
        ("(built-in before.rules)", before_default.as_bytes()),
        |(p, d)| (p, d),
    );
    let user = if ipv6 {
        files.user6_rules
    } else {
        files.user_rules
    };
    let hook = format!("*filter\n-A ufw{six}-before-input -j ufw{six}-user-input\nCOMMIT\n");
    let input_pol = if policy == "REJECT" {
        "DROP"
    } else {
        policy.as_str()
    };
    let pol = format!("*filter\n:INPUT {input_pol} [0:0]\nCOMMIT\n");

    let mut set = ChainSet::default();
    let mut text = String::new();
    let parts: Vec<(String, Vec<u8>)> = [
        Some(("(ufw-init framework)".to_owned(), fw.into_bytes())),
        Some((before.0.to_owned(), before.1.to_vec())),
        Some((
            "(built-in after.rules)".to_owned(),
            after_default.into_bytes(),
        )),
        user.map(|(p, d)| (p.to_owned(), d.to_vec())),
        Some(("(ufw-init hook)".to_owned(), hook.into_bytes())),
        Some(("(ufw-init policy)".to_owned(), pol.into_bytes())),
    ]
    .into_iter()
    .flatten()
    .collect();
    for (path, data) in &parts {
        let doc = IptablesSave::parse(path, data);
        // ufw-init loads each file with `iptables-restore -n`; a file whose
        // chains are not declared would fail, which we report as unknown.
        doc.apply_table("filter", &mut set, true)
            .map_err(|e| format!("{path}: {e}"))?;
        text.push_str(&String::from_utf8_lossy(data));
        text.push('\n');
    }
    Ok((text, ChainSetHandle(set)))
}

/// Opaque chains assembled by [`assembled`].
#[doc(hidden)]
#[derive(Debug, Clone)]
pub struct ChainSetHandle(ChainSet);

/// Whether ufw lets a new inbound TCP connection to `port` in.
pub fn inbound_tcp(files: &UfwFiles<'_>, port: u16, ipv6: bool) -> FirewallVerdict {
    let enabled = setting(files.ufw_conf, "ENABLED");
    match &enabled {
        Some((v, _)) if v == "yes" || v == "YES" => {}
        Some((_, r)) => {
            return FirewallVerdict::Allowed {
                evidence: vec![r.clone()],
                note: "ufw is not enabled".into(),
            }
        }
        None => {
            return FirewallVerdict::Allowed {
                evidence: vec![RuleRef {
                    file: files
                        .ufw_conf
                        .map_or("/etc/ufw/ufw.conf", |f| f.0)
                        .to_owned(),
                    line: 0,
                    rule: "no ENABLED=yes".into(),
                }],
                note: "ufw is not enabled".into(),
            }
        }
    }
    if ipv6 {
        if let Some((v, r)) = setting(files.default_ufw, "IPV6") {
            if !v.eq_ignore_ascii_case("yes") {
                return FirewallVerdict::Allowed {
                    evidence: vec![r],
                    note: "ufw does not manage IPv6".into(),
                };
            }
        }
    }
    let (_, ChainSetHandle(set)) = match assembled(files, ipv6) {
        Ok(x) => x,
        Err(why) => {
            return FirewallVerdict::Unknown {
                why: format!("ufw-init would fail to load its rules: {why}"),
                evidence: Vec::new(),
            }
        }
    };
    let mut v = set.verdict("INPUT", port, ipv6, "ACCEPT");
    // Point the policy evidence at /etc/default/ufw rather than the
    // assembled policy line.
    if let Some((_, r)) = setting(files.default_ufw, "DEFAULT_INPUT_POLICY") {
        match &mut v {
            FirewallVerdict::Blocked { rule, .. } if rule.file.starts_with('(') => *rule = r,
            FirewallVerdict::Allowed { evidence, .. } => {
                for e in evidence.iter_mut().filter(|e| e.file.starts_with('(')) {
                    *e = r.clone();
                }
            }
            _ => {}
        }
    }
    if let (Some((_, en)), FirewallVerdict::Blocked { reason, .. }) = (&enabled, &mut v) {
        reason.push_str(&format!(" (ufw enabled at {} line {})", en.file, en.line));
    }
    v
}

/// A `### tuple ###` comment of user.rules: one `ufw` rule as ufw records it.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize, schemars::JsonSchema)]
pub struct Tuple {
    /// 1-based line number.
    pub line: usize,
    /// `allow`, `deny`, `reject`, `limit` (with `_log`/`_log-all` suffixes).
    pub action: String,
    /// `tcp`, `udp` or `any`.
    pub protocol: String,
    /// Destination port(s) (`22`, `80,443`, `any`).
    pub dport: String,
    /// Destination address.
    pub dst: String,
    /// Source port(s).
    pub sport: String,
    /// Source address.
    pub src: String,
    /// `in`, `out`, or `fwd`, possibly with an interface (`in_eth0`).
    pub direction: String,
    /// The application profile names, if any (`OpenSSH`).
    pub apps: Vec<String>,
}

/// The `### tuple ###` comments of a user.rules file, in order.
pub fn tuples(user_rules: &[u8]) -> Vec<Tuple> {
    let mut out = Vec::new();
    for l in crate::text::lines(user_rules) {
        let s = String::from_utf8_lossy(l.content.slice(user_rules));
        let Some(rest) = s.trim().strip_prefix("### tuple ###") else {
            continue;
        };
        let w: Vec<&str> = rest.split_whitespace().collect();
        if w.len() < 7 {
            continue;
        }
        let direction = w.last().map(|x| (*x).to_owned()).unwrap_or_default();
        // `… src [dapp sapp] direction`: application names sit between
        // the source and the direction, `-` when absent.
        let apps: Vec<String> = w
            .get(6..w.len() - 1)
            .unwrap_or(&[])
            .iter()
            .filter(|x| **x != "-")
            .map(|x| (*x).to_owned())
            .collect();
        out.push(Tuple {
            line: l.number,
            action: w[0].to_owned(),
            protocol: w[1].to_owned(),
            dport: w[2].to_owned(),
            dst: w[3].to_owned(),
            sport: w[4].to_owned(),
            src: w[5].to_owned(),
            direction,
            apps,
        });
    }
    out
}

/// Adds `ufw insert 1 allow <port>/tcp` to a user.rules (`ipv6`: a
/// user6.rules) file: a tuple comment and its rule go right after the
/// `### RULES ###` marker, so they precede every other user rule. Returns
/// the new bytes and the inserted span.
pub fn allow_tcp_port(user_rules: &[u8], port: u16, ipv6: bool) -> Result<(Vec<u8>, Span), String> {
    let (any, chain) = if ipv6 {
        ("::/0", "ufw6-user-input")
    } else {
        ("0.0.0.0/0", "ufw-user-input")
    };
    let lines = crate::text::lines(user_rules);
    let text = |l: &crate::text::RawLine| {
        String::from_utf8_lossy(l.content.slice(user_rules))
            .trim()
            .to_owned()
    };
    let crlf = lines
        .first()
        .is_some_and(|l| l.content.slice(user_rules).ends_with(b"\r"));
    let eol = if crlf { "\r\n" } else { "\n" };
    let insert = format!(
        "{eol}### tuple ### allow tcp {port} {any} any {any} in{eol}-A {chain} -p tcp --dport {port} -j ACCEPT{eol}"
    );
    let (offset, insert) = if let Some(m) = lines.iter().find(|l| text(l) == "### RULES ###") {
        // After the marker line and its newline.
        let after = (m.content.end + 1).min(user_rules.len());
        if m.content.end >= user_rules.len() {
            (user_rules.len(), format!("{eol}{}", &insert[eol.len()..]))
        } else {
            (after, insert[eol.len()..].to_owned())
        }
    } else if let Some(c) = lines.iter().find(|l| text(l) == "COMMIT") {
        (c.content.start, insert[eol.len()..].to_owned())
    } else {
        return Err("no ### RULES ### marker and no COMMIT: not a ufw user.rules file".into());
    };
    let mut out = user_rules.to_vec();
    out.splice(offset..offset, insert.bytes());
    Ok((out, Span::new(offset, offset + insert.len())))
}

#[cfg(test)]
mod tests {
    use super::*;

    const UFW_CONF_ON: &[u8] = b"# /etc/ufw/ufw.conf\n#\n\nENABLED=yes\n\nLOGLEVEL=low\n";
    const UFW_CONF_OFF: &[u8] = b"# /etc/ufw/ufw.conf\n#\n\nENABLED=no\n\nLOGLEVEL=low\n";
    const DEFAULT_UFW: &[u8] = b"IPV6=yes\nDEFAULT_INPUT_POLICY=\"DROP\"\nDEFAULT_OUTPUT_POLICY=\"ACCEPT\"\nDEFAULT_FORWARD_POLICY=\"DROP\"\nDEFAULT_APPLICATION_POLICY=\"SKIP\"\nMANAGE_BUILTINS=no\n";
    const USER_EMPTY: &[u8] = b"*filter\n:ufw-user-input - [0:0]\n:ufw-user-output - [0:0]\n:ufw-user-forward - [0:0]\n:ufw-user-limit - [0:0]\n:ufw-user-limit-accept - [0:0]\n### RULES ###\n\n### END RULES ###\n-A ufw-user-limit -j REJECT\n-A ufw-user-limit-accept -j ACCEPT\nCOMMIT\n";

    fn files<'a>(conf: &'a [u8], user: &'a [u8]) -> UfwFiles<'a> {
        UfwFiles {
            ufw_conf: Some(("/etc/ufw/ufw.conf", conf)),
            default_ufw: Some(("/etc/default/ufw", DEFAULT_UFW)),
            user_rules: Some(("/etc/ufw/user.rules", user)),
            user6_rules: None,
            before_rules: None,
        }
    }

    #[test]
    fn disabled_enabled_and_allowed() {
        assert!(inbound_tcp(&files(UFW_CONF_OFF, USER_EMPTY), 22, false).is_allowed());
        match inbound_tcp(&files(UFW_CONF_ON, USER_EMPTY), 22, false) {
            FirewallVerdict::Blocked { rule, .. } => {
                assert_eq!((rule.file.as_str(), rule.line), ("/etc/default/ufw", 2))
            }
            v => panic!("{v:?}"),
        }
        let (allowed, span) = allow_tcp_port(USER_EMPTY, 22, false).unwrap();
        assert_eq!(
            span.slice(&allowed),
            b"### tuple ### allow tcp 22 0.0.0.0/0 any 0.0.0.0/0 in\n-A ufw-user-input -p tcp --dport 22 -j ACCEPT\n"
        );
        match inbound_tcp(&files(UFW_CONF_ON, &allowed), 22, false) {
            FirewallVerdict::Allowed { evidence, .. } => {
                assert_eq!(
                    (evidence[0].file.as_str(), evidence[0].line),
                    ("/etc/ufw/user.rules", 9)
                )
            }
            v => panic!("{v:?}"),
        }
        let t = tuples(&allowed);
        assert_eq!(t.len(), 1);
        assert_eq!((t[0].action.as_str(), t[0].dport.as_str()), ("allow", "22"));
    }

    #[test]
    fn limit_and_deny_tuples() {
        let user = b"*filter\n:ufw-user-input - [0:0]\n:ufw-user-limit - [0:0]\n:ufw-user-limit-accept - [0:0]\n### RULES ###\n\n### tuple ### deny tcp 22 0.0.0.0/0 any 0.0.0.0/0 in\n-A ufw-user-input -p tcp --dport 22 -j DROP\n\n### tuple ### limit tcp 2222 0.0.0.0/0 any 0.0.0.0/0 in\n-A ufw-user-input -p tcp --dport 2222 -m conntrack --ctstate NEW -m recent --set\n-A ufw-user-input -p tcp --dport 2222 -m conntrack --ctstate NEW -m recent --update --seconds 30 --hitcount 6 -j ufw-user-limit\n-A ufw-user-input -p tcp --dport 2222 -j ufw-user-limit-accept\n\n### END RULES ###\n-A ufw-user-limit -j REJECT\n-A ufw-user-limit-accept -j ACCEPT\nCOMMIT\n";
        match inbound_tcp(&files(UFW_CONF_ON, user), 22, false) {
            FirewallVerdict::Blocked { rule, .. } => assert_eq!(rule.line, 8),
            v => panic!("{v:?}"),
        }
        assert!(inbound_tcp(&files(UFW_CONF_ON, user), 2222, false).is_allowed());
        assert_eq!(tuples(user)[1].action, "limit");
    }
}
