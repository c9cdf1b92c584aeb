//! Guest firewall configurations, as far as needed to answer one question:
//! would a new inbound TCP connection to a port (22) get through?
//!
//! Four formats, each in its own module: iptables-save/ip6tables-save files
//! ([`iptables`]), nftables rulesets ([`nftables`]), ufw's configuration and
//! rule files ([`ufw`]) and firewalld zones ([`firewalld`]). Each parser is
//! lossless (render returns the input until an edit) and never fails;
//! evaluation returns a [`FirewallVerdict`] with the rule that decides, or
//! `Unknown` with the reason when the answer depends on something the files
//! cannot tell (an interface name, a source address, a set filled at run
//! time) or on syntax we do not model.
//!
//! The packet we reason about: TCP, SYN (a new connection), arriving on a
//! non-loopback interface, from an arbitrary remote address and an
//! ephemeral source port, to one of the guest's own unicast addresses.
//!
//! This module never does I/O and never panics on any input.

pub mod firewalld;
pub mod iptables;
pub mod nftables;
pub mod ufw;

use serde::Serialize;

/// A rule (or policy, or setting) that evidence points at.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, schemars::JsonSchema)]
pub struct RuleRef {
    /// The guest path of the file, as given to the parser.
    pub file: String,
    /// 1-based line number (0 when the evidence is a built-in default).
    pub line: usize,
    /// The rule as written (trimmed), or a description of the default.
    pub rule: String,
}

/// Whether new inbound TCP connections to a port get through.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, schemars::JsonSchema)]
#[serde(tag = "type", rename_all = "snake_case")]
pub enum FirewallVerdict {
    /// They do.
    Allowed {
        /// The rules, policy or settings that let them in.
        evidence: Vec<RuleRef>,
        /// Caveats (rules that drop some of them under conditions we cannot
        /// evaluate), one line; empty when none.
        note: String,
    },
    /// They do not.
    Blocked {
        /// The deciding rule or policy.
        rule: RuleRef,
        /// Why, in one lowercase line.
        reason: String,
    },
    /// The files do not say.
    Unknown {
        /// Why not.
        why: String,
        /// The rules involved.
        evidence: Vec<RuleRef>,
    },
}

impl FirewallVerdict {
    /// True for `Blocked`.
    pub fn is_blocked(&self) -> bool {
        matches!(self, FirewallVerdict::Blocked { .. })
    }

    /// True for `Allowed`.
    pub fn is_allowed(&self) -> bool {
        matches!(self, FirewallVerdict::Allowed { .. })
    }
}

/// A three-valued match result: the condition for `Maybe` says what the
/// match depends on ("the input interface is eth0").
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum Tri {
    Yes,
    No,
    Maybe(String),
}

impl Tri {
    /// Logical AND, keeping the conditions of every `Maybe`.
    pub(crate) fn and(self, other: Tri) -> Tri {
        match (self, other) {
            (Tri::No, _) | (_, Tri::No) => Tri::No,
            (Tri::Yes, x) | (x, Tri::Yes) => x,
            // Conditions are for people: a hostile rule with thousands of
            // them must not make this quadratic.
            (Tri::Maybe(a), Tri::Maybe(_)) if a.len() > 300 => Tri::Maybe(a),
            (Tri::Maybe(a), Tri::Maybe(b)) => Tri::Maybe(format!("{a} and {b}")),
        }
    }

    /// Negation: `Maybe` stays `Maybe`.
    pub(crate) fn not(self) -> Tri {
        match self {
            Tri::Yes => Tri::No,
            Tri::No => Tri::Yes,
            Tri::Maybe(c) => Tri::Maybe(format!("not ({c})")),
        }
    }
}

/// How many rule evaluations one verdict may take: jumps between chains
/// can multiply the work, and the files are hostile.
pub(crate) const STEP_BUDGET: usize = 200_000;

/// Well-known service names that rules may use instead of port numbers
/// (resolved through /etc/services when the rules are loaded).
pub(crate) fn service_port(name: &str) -> Option<u16> {
    Some(match name.to_ascii_lowercase().as_str() {
        "ssh" => 22,
        "ftp" => 21,
        "telnet" => 23,
        "smtp" => 25,
        "domain" => 53,
        "http" | "www" => 80,
        "pop3" => 110,
        "imap" | "imap2" => 143,
        "https" => 443,
        "submission" => 587,
        "imaps" => 993,
        "pop3s" => 995,
        "mysql" => 3306,
        "postgresql" => 5432,
        "rdp" | "ms-wbt-server" => 3389,
        _ => return None,
    })
}

/// Fuzz entry point: feeds the bytes to every firewall parser and
/// evaluator, checks the round trips, and runs the edits.
#[doc(hidden)]
pub fn fuzz_firewall(data: &[u8]) {
    let ipt = iptables::IptablesSave::parse("/etc/iptables/rules.v4", data);
    assert_eq!(ipt.render(), data);
    let _ = ipt.inbound_tcp(22);
    let mut ipt2 = ipt.clone();
    let _ = ipt2.allow_tcp_port(22);
    let nft = nftables::NftRuleset::parse("/etc/nftables.conf", data);
    assert_eq!(nft.render(), data);
    let _ = nft.inbound_tcp(22, false);
    let _ = nft.inbound_tcp(22, true);
    let mut nft2 = nft.clone();
    let _ = nft2.allow_tcp_port(22);
    let fw = firewalld::Zone::parse("/etc/firewalld/zones/public.xml", data);
    assert_eq!(fw.render(), data);
    let _ = fw.inbound_tcp(22, &firewalld::builtin_service);
    let mut fw2 = fw.clone();
    let _ = fw2.add_service("ssh");
    let u = ufw::UfwFiles {
        ufw_conf: Some(("/etc/ufw/ufw.conf", data)),
        default_ufw: Some(("/etc/default/ufw", data)),
        user_rules: Some(("/etc/ufw/user.rules", data)),
        user6_rules: None,
        before_rules: None,
    };
    let _ = ufw::inbound_tcp(&u, 22, false);
    let _ = firewalld::FirewalldConf::parse("/etc/firewalld/firewalld.conf", data).default_zone();
}

#[cfg(test)]
mod tests {
    use super::*;

    const IPT: &[u8] = b"# Generated by iptables-save\n*filter\n:INPUT DROP [0:0]\n:FORWARD ACCEPT [0:0]\n:OUTPUT ACCEPT [0:0]\n:SSH - [0:0]\n-A INPUT -i lo -j ACCEPT\n-A INPUT -m state --state RELATED,ESTABLISHED -j ACCEPT\n-A INPUT -p tcp -m multiport --dports 80,443 -j ACCEPT\n-A INPUT -p tcp -m tcp --dport 22 -m conntrack --ctstate NEW -j SSH\n-A SSH -s 10.0.0.0/8 -j ACCEPT\n-A SSH -m recent --update --seconds 60 --hitcount 4 -j DROP\n-A SSH -j ACCEPT\n-A INPUT -j REJECT --reject-with icmp-port-unreachable\nCOMMIT\n";
    const NFT: &[u8] = b"#!/usr/sbin/nft -f\nflush ruleset\ndefine ports = { 22, 80 }\ntable inet filter {\n\tset admins { type ipv4_addr; elements = { 10.0.0.1, 10.0.0.2 } }\n\tchain input {\n\t\ttype filter hook input priority filter; policy drop;\n\t\tct state vmap { established : accept, related : accept, invalid : drop }\n\t\tiif lo accept\n\t\tip saddr @admins tcp dport $ports accept\n\t\ttcp flags & (fin|syn|rst|ack) == syn tcp dport 22 limit rate 10/minute accept\n\t\tcounter reject with icmpx type admin-prohibited\n\t}\n}\n";
    const ZONE: &[u8] = b"<?xml version=\"1.0\" encoding=\"utf-8\"?>\n<zone target=\"default\">\n  <short>Public</short>\n  <!-- comment -->\n  <service name=\"ssh\"/>\n  <port protocol=\"tcp\" port=\"8000-8100\"/>\n  <rule family=\"ipv4\" priority=\"-1\"><source address=\"192.0.2.0/24\" invert=\"True\"/><service name=\"ssh\"/><log prefix=\"x &amp; y\"/><reject/></rule>\n</zone>\n";
    const UFW: &[u8] = b"*filter\n:ufw-user-input - [0:0]\n### RULES ###\n\n### tuple ### allow tcp 22 0.0.0.0/0 any 0.0.0.0/0 OpenSSH - in\n-A ufw-user-input -p tcp --dport 22 -j ACCEPT -m comment --comment 'dapp_OpenSSH'\n### END RULES ###\nENABLED=yes\nDEFAULT_INPUT_POLICY=\"DROP\"\nCOMMIT\n";

    #[test]
    fn samples_round_trip_and_evaluate() {
        for s in [IPT, NFT, ZONE, UFW] {
            fuzz_firewall(s);
        }
        let ipt = iptables::IptablesSave::parse("/etc/iptables/rules.v4", IPT);
        // The SSH chain admits 10/8 always, others unless rate-limited.
        match ipt.inbound_tcp(22) {
            FirewallVerdict::Allowed { note, .. } => {
                assert!(note.contains("recent list"), "{note}")
            }
            v => panic!("{v:?}"),
        }
        let nft = nftables::NftRuleset::parse("/etc/nftables.conf", NFT);
        assert!(nft.diagnostics.is_empty(), "{:?}", nft.diagnostics);
        assert!(matches!(
            nft.inbound_tcp(22, false),
            FirewallVerdict::Unknown { .. }
        ));
        assert!(
            nft.inbound_tcp(443, false).is_blocked(),
            "{:?} {:?}",
            nft.inbound_tcp(443, false),
            nft.chains
        );
    }

    #[test]
    fn mutations_never_panic() {
        crate::text::mutate_and_run(IPT, 2000, 0xf1e0_0001, fuzz_firewall);
        crate::text::mutate_and_run(NFT, 2000, 0xf1e0_0002, fuzz_firewall);
        crate::text::mutate_and_run(ZONE, 2000, 0xf1e0_0003, fuzz_firewall);
        crate::text::mutate_and_run(UFW, 1000, 0xf1e0_0004, fuzz_firewall);
    }
}
