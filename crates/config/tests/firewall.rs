//! Firewall verdicts against the kernel.
//!
//! Each ruleset of the corpus is loaded with the real `iptables-restore` or
//! `nft -f` into a fresh network namespace joined to a second one by a veth
//! pair; a listener runs on the port, and a client in the other namespace
//! connects with a one-second timeout ("open", "dropped" or "rejected").
//! Wherever our verdict is definite (Allowed / Blocked) it must match.
//! Files that `iptables-restore --test` / `nft -c -f` reject must never get
//! a definite verdict from us.
//!
//! ufw: the chains ufw-init builds from the guest's files are loaded the
//! same way. firewalld: realistic RHEL zone files and the edit.
//!
//! Needs root, `ip`, `iptables-restore`, `nft` and `python3`: fails under
//! `RESCUE_REQUIRE_TOOLS=1` when missing, skips otherwise.

use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::atomic::{AtomicUsize, Ordering};

use rescue_config::firewall::firewalld::{
    builtin_service, builtin_zone, FirewalldConf, ServicePorts, Zone,
};
use rescue_config::firewall::iptables::IptablesSave;
use rescue_config::firewall::nftables::NftRuleset;
use rescue_config::firewall::ufw::{self, UfwFiles};
use rescue_config::firewall::FirewallVerdict;

fn require_tools() -> bool {
    std::env::var("RESCUE_REQUIRE_TOOLS").is_ok_and(|v| v == "1")
}

fn find_tool(name: &str) -> Option<PathBuf> {
    let path = std::env::var("PATH").unwrap_or_default();
    format!("{path}:/usr/sbin:/sbin")
        .split(':')
        .map(|d| Path::new(d).join(name))
        .find(|p| p.is_file())
}

fn have_tools(test: &str, tools: &[&str]) -> bool {
    let missing: Vec<_> = tools.iter().filter(|t| find_tool(t).is_none()).collect();
    if missing.is_empty() {
        return true;
    }
    if require_tools() {
        panic!("{test}: required tools missing: {missing:?} (RESCUE_REQUIRE_TOOLS=1)");
    }
    eprintln!("SKIP {test}: tools missing: {missing:?}");
    false
}

static COUNTER: AtomicUsize = AtomicUsize::new(0);

fn temp_file(tag: &str, data: &str) -> PathBuf {
    let n = COUNTER.fetch_add(1, Ordering::SeqCst);
    let p = std::env::temp_dir().join(format!("rescue-config-fw-{tag}-{}-{n}", std::process::id()));
    std::fs::write(&p, data).unwrap();
    p
}

/// Loads `rules` with `loader` into a server namespace and tries a TCP
/// connection to `port` from a client namespace. Returns "open",
/// "dropped", "rejected", or an error text.
fn kernel_probe(loader: &str, rules: &str, port: u16) -> String {
    let n = COUNTER.fetch_add(1, Ordering::SeqCst);
    let id = format!("{}x{n}", std::process::id() % 100_000);
    let file = temp_file("rules", rules);
    let script = format!(
        r#"
S=rds{id}; C=rdc{id}
ip netns add $S || exit 3
ip netns add $C || {{ ip netns del $S; exit 3; }}
cleanup() {{ ip netns del $S; ip netns del $C; }}
trap cleanup EXIT
ip link add vs{id} type veth peer name vc{id} || exit 3
ip link set vs{id} netns $S; ip link set vc{id} netns $C
ip -n $S addr add 192.0.2.1/24 dev vs{id}; ip -n $S link set vs{id} up; ip -n $S link set lo up
ip -n $C addr add 192.0.2.2/24 dev vc{id}; ip -n $C link set vc{id} up; ip -n $C link set lo up
ip netns exec $S {loader} {file} >/dev/null 2>&1 || {{ echo loadfail; exit 0; }}
R={file}.ready
ip netns exec $S python3 -c "
import socket,time
s=socket.socket(); s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1); s.bind(('0.0.0.0',{port})); s.listen(5)
open('$R','w').close(); time.sleep(5)" &
L=$!
# Wait until the listener is listening (python may start slowly).
i=0; while [ ! -e $R ] && [ $i -lt 100 ]; do sleep 0.05; i=$((i+1)); done
rm -f $R
ip netns exec $C python3 -c "
import socket
s=socket.socket(); s.settimeout(1.0)
try:
    s.connect(('192.0.2.1',{port})); print('open')
except socket.timeout: print('dropped')
except OSError as e:
    # ECONNREFUSED (tcp-reset, port-unreachable), EHOSTUNREACH and
    # ENETUNREACH (icmp host/net/admin prohibited), EACCES.
    print('rejected' if e.errno in (111, 113, 101, 13) else 'error %s' % e)
"
kill $L 2>/dev/null; wait $L 2>/dev/null
"#,
        file = file.display()
    );
    let out = Command::new("sh").arg("-c").arg(&script).output().unwrap();
    let _ = std::fs::remove_file(&file);
    let text = String::from_utf8_lossy(&out.stdout).trim().to_owned();
    if text.is_empty() {
        format!("error: {}", String::from_utf8_lossy(&out.stderr))
    } else {
        text
    }
}

fn check_kernel_access(test: &str) -> bool {
    if !have_tools(test, &["ip", "iptables-restore", "nft", "python3"]) {
        return false;
    }
    let r = kernel_probe(
        "iptables-restore",
        "*filter\n:INPUT ACCEPT [0:0]\nCOMMIT\n",
        22,
    );
    if r == "open" {
        return true;
    }
    if require_tools() {
        panic!("{test}: network namespaces unusable ({r}); needs root");
    }
    eprintln!("SKIP {test}: network namespaces unusable ({r})");
    false
}

/// Our verdict against the kernel's answer; `None` when ours is not
/// definite.
fn agrees(ours: &FirewallVerdict, kernel: &str) -> Option<bool> {
    match ours {
        FirewallVerdict::Allowed { .. } => Some(kernel == "open"),
        FirewallVerdict::Blocked { .. } => Some(kernel == "dropped" || kernel == "rejected"),
        FirewallVerdict::Unknown { .. } => None,
    }
}

/// Runs cases on a few threads: each takes a second or two, mostly waiting.
fn par_map<T: Sync, R: Send>(items: &[T], f: impl Fn(&T) -> R + Sync) -> Vec<R> {
    let chunks: Vec<&[T]> = items.chunks(items.len().div_ceil(4).max(1)).collect();
    std::thread::scope(|s| {
        let handles: Vec<_> = chunks
            .iter()
            .map(|c| s.spawn(|| c.iter().map(&f).collect::<Vec<R>>()))
            .collect();
        handles
            .into_iter()
            .flat_map(|h| h.join().unwrap())
            .collect()
    })
}

fn ipt(head: &str, rules: &str) -> String {
    format!("*filter\n:INPUT {head} [0:0]\n:FORWARD ACCEPT [0:0]\n:OUTPUT ACCEPT [0:0]\n{rules}COMMIT\n")
}

fn iptables_corpus() -> Vec<(String, u16)> {
    let rhel7 = "# sample configuration for iptables service\n*filter\n:INPUT ACCEPT [0:0]\n:FORWARD ACCEPT [0:0]\n:OUTPUT ACCEPT [0:0]\n-A INPUT -m state --state RELATED,ESTABLISHED -j ACCEPT\n-A INPUT -p icmp -j ACCEPT\n-A INPUT -i lo -j ACCEPT\n-A INPUT -p tcp -m state --state NEW -m tcp --dport 22 -j ACCEPT\n-A INPUT -j REJECT --reject-with icmp-host-prohibited\n-A FORWARD -j REJECT --reject-with icmp-host-prohibited\nCOMMIT\n".to_owned();
    let persistent = "# Generated by iptables-save v1.8.9 (nf_tables) on Mon Jan  1 00:00:00 2024\n*filter\n:INPUT DROP [0:0]\n:FORWARD DROP [0:0]\n:OUTPUT ACCEPT [120:9600]\n-A INPUT -i lo -j ACCEPT\n-A INPUT -m conntrack --ctstate RELATED,ESTABLISHED -j ACCEPT\n-A INPUT -p tcp -m tcp --dport 80 -j ACCEPT\n-A INPUT -p tcp -m tcp --dport 443 -j ACCEPT\nCOMMIT\n# Completed on Mon Jan  1 00:00:00 2024\n".to_owned();
    let mut c = vec![
        (rhel7.clone(), 22),
        (rhel7, 2222),
        (persistent.clone(), 22),
        (persistent, 443),
        (ipt("ACCEPT", ""), 22),
        (ipt("DROP", ""), 22),
        (ipt("DROP", "-A INPUT -p tcp --dport 22 -j ACCEPT\n"), 22),
        (ipt("DROP", "-A INPUT -p tcp --dport ssh -j ACCEPT\n"), 22),
        (ipt("DROP", "-A INPUT -p tcp -m multiport --dports 80,20:25 -j ACCEPT\n"), 22),
        (ipt("DROP", "-A INPUT -p tcp -m multiport --dports 80,443 -j ACCEPT\n"), 22),
        (ipt("DROP", "-A INPUT -p udp --dport 22 -j ACCEPT\n"), 22),
        (ipt("DROP", "-A INPUT -i lo -j ACCEPT\n-A INPUT -m state --state ESTABLISHED,RELATED -j ACCEPT\n"), 22),
        (ipt("DROP", "-A INPUT -m conntrack --ctstate NEW -p tcp --dport 22 -j ACCEPT\n"), 22),
        (ipt("DROP", "-A INPUT -p tcp --syn --dport 22 -j ACCEPT\n"), 22),
        (ipt("DROP", "-A INPUT -p tcp ! --syn --dport 22 -j ACCEPT\n"), 22),
        (ipt("DROP", "-A INPUT -p tcp --tcp-flags SYN,RST,ACK SYN --dport 22 -j ACCEPT\n"), 22),
        (ipt("DROP", "-A INPUT -p tcp --tcp-flags ALL NONE -j ACCEPT\n"), 22),
        (ipt("ACCEPT", "-A INPUT -p tcp --dport 22 -j DROP\n"), 22),
        (ipt("ACCEPT", "-A INPUT -p tcp --dport 22 -j REJECT --reject-with tcp-reset\n"), 22),
        (ipt("ACCEPT", "-A INPUT -p tcp ! --dport 22 -j DROP\n"), 22),
        (ipt("ACCEPT", "-A INPUT -p tcp ! --dport 22 -j DROP\n"), 80),
        (ipt("ACCEPT", "-A INPUT ! -i lo -p tcp --dport 22 -j DROP\n"), 22),
        (ipt("DROP", "-A INPUT -i eth0 -p tcp --dport 22 -j ACCEPT\n"), 22),
        (ipt("DROP", "-A INPUT -s 10.0.0.0/8 -p tcp --dport 22 -j ACCEPT\n"), 22),
        (ipt("ACCEPT", "-A INPUT -s 10.0.0.0/8 -p tcp --dport 22 -j DROP\n"), 22),
        (ipt("DROP", "-A INPUT -s 0.0.0.0/0 -p tcp --dport 22 -j ACCEPT\n"), 22),
        (ipt("DROP", "-A INPUT -p tcp --dport 22 -j LOG --log-prefix \"ssh: \"\n-A INPUT -p tcp --dport 22 -j ACCEPT\n"), 22),
        (ipt("DROP", "-A INPUT -p tcp --dport 22 -m comment --comment \"allow ssh\" -j ACCEPT\n"), 22),
        (ipt("DROP", "-A INPUT -m addrtype --dst-type LOCAL -p tcp --dport 22 -j ACCEPT\n"), 22),
        (ipt("DROP", "-A INPUT -m addrtype --dst-type BROADCAST -p tcp --dport 22 -j ACCEPT\n"), 22),
        (ipt("DROP", "-A INPUT -m pkttype --pkt-type unicast -p tcp --dport 22 -j ACCEPT\n"), 22),
        (ipt("DROP", "-A INPUT -f -j ACCEPT\n"), 22),
        (ipt("DROP", "-A INPUT -p tcp --dport 1:1024 -j ACCEPT\n"), 22),
        (ipt("DROP", "-A INPUT -p tcp --dport 1024: -j ACCEPT\n"), 22),
        (ipt("DROP", "-A INPUT -p tcp --sport 1024:65535 --dport 22 -j ACCEPT\n"), 22),
        (ipt("DROP", "-A INPUT -p tcp -m limit --limit 3/min --dport 22 -j ACCEPT\n"), 22),
        (ipt("DROP", "-A INPUT -j ACCEPT\n-A INPUT -p tcp --dport 22 -j DROP\n"), 22),
        (ipt("ACCEPT", "-A INPUT -p tcp --dport 22 -j RETURN\n-A INPUT -j DROP\n"), 22),
        ("*filter\n:INPUT DROP [0:0]\n:SSH - [0:0]\n-A INPUT -p tcp -j SSH\n-A SSH -p tcp --dport 22 -j ACCEPT\nCOMMIT\n".to_owned(), 22),
        ("*filter\n:INPUT DROP [0:0]\n:SSH - [0:0]\n-A INPUT -p tcp -j SSH\n-A INPUT -p tcp --dport 22 -j ACCEPT\n-A SSH -p tcp --dport 22 -j RETURN\nCOMMIT\n".to_owned(), 22),
        ("*filter\n:INPUT ACCEPT [0:0]\n:BLOCK - [0:0]\n-A INPUT -g BLOCK\n-A INPUT -j DROP\n-A BLOCK -p tcp --dport 80 -j DROP\nCOMMIT\n".to_owned(), 22),
        ("*filter\n:INPUT ACCEPT [0:0]\n:A - [0:0]\n:B - [0:0]\n-A INPUT -j A\n-A A -j B\n-A B -p tcp --dport 22 -j REJECT\nCOMMIT\n".to_owned(), 22),
        ("*filter\n:INPUT ACCEPT [0:0]\n-A INPUT -p tcp --dport 22 -j DROP\nCOMMIT\n*filter\n:INPUT ACCEPT [0:0]\nCOMMIT\n".to_owned(), 22),
        ("*filter\n:INPUT ACCEPT [0:0]\n-I INPUT -p tcp --dport 22 -j DROP\n-I INPUT 1 -p tcp --dport 22 -j ACCEPT\nCOMMIT\n".to_owned(), 22),
        ("*nat\n:PREROUTING ACCEPT [0:0]\nCOMMIT\n*filter\n:INPUT DROP [0:0]\n-A INPUT -p tcp --dport 22 -j ACCEPT\nCOMMIT\n".to_owned(), 22),
        ("[0:0] *filter\n".to_owned(), 22),
        ("*filter\n:INPUT DROP [0:0]\n-A INPUT -p tcp --dport 22 -j ACCEPT\n".to_owned(), 22),
        ("*filter\n:INPUT DROP [0:0]\n-A INPUT -p tcp --dport 22 -j NOSUCHCHAIN\nCOMMIT\n".to_owned(), 22),
        ("*filter\n:INPUT DROP [0:0]\n-A INPUT -p tcp --dport 22 -j ACCEPT\nCOMMIT\n".to_owned(), 22),
        ("*filter\r\n:INPUT DROP [0:0]\r\n-A INPUT -p tcp --dport 22 -j ACCEPT\r\nCOMMIT\r\n".to_owned(), 22),
    ];
    // iptables-save -c output carries counters before each rule.
    c.push(("*filter\n:INPUT DROP [10:600]\n[5:300] -A INPUT -p tcp -m tcp --dport 22 -j ACCEPT\nCOMMIT\n".to_owned(), 22));
    c
}

#[test]
fn iptables_verdicts_agree_with_the_kernel() {
    if !check_kernel_access("iptables_verdicts_agree_with_the_kernel") {
        return;
    }
    let corpus = iptables_corpus();
    let results = par_map(&corpus, |(rules, port)| {
        let file = temp_file("test", rules);
        let valid = Command::new(find_tool("iptables-restore").unwrap())
            .arg("--test")
            .arg(&file)
            .output()
            .map(|o| o.status.success())
            .unwrap_or(false);
        let _ = std::fs::remove_file(&file);
        let kernel = if valid {
            kernel_probe("iptables-restore", rules, *port)
        } else {
            "invalid".to_owned()
        };
        (valid, kernel)
    });
    let mut failures = Vec::new();
    let mut definite = 0;
    for ((rules, port), (valid, kernel)) in corpus.iter().zip(results) {
        let doc = IptablesSave::parse("/etc/iptables/rules.v4", rules.as_bytes());
        assert_eq!(doc.render(), rules.as_bytes());
        let ours = doc.inbound_tcp(*port);
        if !valid {
            if !matches!(ours, FirewallVerdict::Unknown { .. }) {
                failures.push(format!(
                    "iptables-restore rejects this file but we say {ours:?}:\n{rules}"
                ));
            }
            continue;
        }
        match agrees(&ours, &kernel) {
            Some(true) => definite += 1,
            Some(false) => failures.push(format!(
                "port {port}: kernel {kernel}, ours {ours:?}:\n{rules}"
            )),
            None => {}
        }
    }
    assert!(failures.is_empty(), "{}", failures.join("\n\n"));
    assert!(definite >= 35, "only {definite} definite verdicts");
}

#[test]
fn allow_edit_opens_the_port_in_the_kernel() {
    if !check_kernel_access("allow_edit_opens_the_port_in_the_kernel") {
        return;
    }
    let rules = "*filter\n:INPUT DROP [0:0]\n:FORWARD DROP [0:0]\n:OUTPUT ACCEPT [0:0]\n-A INPUT -i lo -j ACCEPT\n-A INPUT -m conntrack --ctstate RELATED,ESTABLISHED -j ACCEPT\n-A INPUT -p tcp -m tcp --dport 80 -j ACCEPT\n-A INPUT -j REJECT\nCOMMIT\n";
    let mut doc = IptablesSave::parse("/etc/iptables/rules.v4", rules.as_bytes());
    assert!(doc.inbound_tcp(22).is_blocked());
    assert_eq!(kernel_probe("iptables-restore", rules, 22), "rejected");
    doc.allow_tcp_port(22).unwrap();
    let edited = String::from_utf8(doc.render()).unwrap();
    assert!(doc.inbound_tcp(22).is_allowed());
    assert_eq!(kernel_probe("iptables-restore", &edited, 22), "open");

    let nft = "table inet filter {\n\tchain input {\n\t\ttype filter hook input priority 0; policy drop;\n\t\tiif lo accept\n\t\tct state established,related accept\n\t}\n}\n";
    let mut doc = NftRuleset::parse("/etc/nftables.conf", nft.as_bytes());
    assert!(doc.inbound_tcp(22, false).is_blocked());
    doc.allow_tcp_port(22).unwrap();
    let edited = String::from_utf8(doc.render()).unwrap();
    assert!(doc.inbound_tcp(22, false).is_allowed());
    assert_eq!(kernel_probe("nft -f", &edited, 22), "open");
}

fn nft_corpus() -> Vec<(String, u16)> {
    let debian = "#!/usr/sbin/nft -f\n\nflush ruleset\n\ntable inet filter {\n\tchain input {\n\t\ttype filter hook input priority filter;\n\t}\n\tchain forward {\n\t\ttype filter hook forward priority filter;\n\t}\n\tchain output {\n\t\ttype filter hook output priority filter;\n\t}\n}\n";
    let workstation = "#!/usr/sbin/nft -f\n\nflush ruleset\n\ntable inet filter {\n\tchain input {\n\t\ttype filter hook input priority 0;\n\n\t\t# accept any localhost traffic\n\t\tiif lo accept\n\n\t\t# accept traffic originated from us\n\t\tct state established,related accept\n\n\t\t# activate the following line to accept common local services\n\t\t#tcp dport { 22, 80, 443 } ct state new accept\n\n\t\tmeta nfproto ipv6 icmpv6 type { destination-unreachable, packet-too-big, time-exceeded, parameter-problem, echo-reply, echo-request, nd-router-solicit, nd-router-advert, nd-neighbor-solicit, nd-neighbor-advert, 148, 149 } accept\n\t\tip6 saddr fe80::/10 icmpv6 type { 130, 131, 132, 143, 151, 152, 153 } accept\n\n\t\t# count and drop any other traffic\n\t\tcounter drop\n\t}\n}\n";
    let t = |body: &str| {
        format!("table inet filter {{\n\tchain input {{\n\t\ttype filter hook input priority 0; policy drop;\n{body}\t}}\n}}\n")
    };
    let a = |body: &str| {
        format!("table inet filter {{\n\tchain input {{\n\t\ttype filter hook input priority 0; policy accept;\n{body}\t}}\n}}\n")
    };
    vec![
        (debian.to_owned(), 22),
        (workstation.to_owned(), 22),
        (workstation.replace("#tcp dport { 22, 80, 443 }", "tcp dport { 22, 80, 443 }"), 22),
        (t(""), 22),
        (t("\t\ttcp dport 22 accept\n"), 22),
        (t("\t\ttcp dport ssh accept\n"), 22),
        (t("\t\ttcp dport { 22, 80 } accept\n"), 22),
        (t("\t\ttcp dport { 80,\n\t\t\t443 } accept\n"), 22),
        (t("\t\ttcp dport 20-25 accept\n"), 22),
        (t("\t\ttcp dport != 22 accept\n"), 22),
        (t("\t\tudp dport 22 accept\n"), 22),
        (t("\t\tth dport 22 accept\n"), 22),
        (t("\t\tmeta l4proto tcp accept\n"), 22),
        (t("\t\tip protocol tcp tcp dport 22 accept\n"), 22),
        (t("\t\tip6 nexthdr tcp tcp dport 22 accept\n"), 22),
        (t("\t\tct state new tcp dport 22 accept\n"), 22),
        (t("\t\tct state { established, related } accept\n"), 22),
        (t("\t\tct state vmap { established : accept, related : accept, invalid : drop, new : accept }\n"), 22),
        (t("\t\tct state vmap { established : accept, related : accept, invalid : drop }\n"), 22),
        (t("\t\ttcp dport vmap { 22 : accept, 80 : drop }\n"), 22),
        (t("\t\tiif lo accept\n"), 22),
        (t("\t\tiif != lo tcp dport 22 accept\n"), 22),
        (t("\t\tiifname \"lo\" accept\n"), 22),
        (t("\t\tiifname \"eth0\" tcp dport 22 accept\n"), 22),
        (t("\t\tip saddr 10.0.0.0/8 tcp dport 22 accept\n"), 22),
        (t("\t\tip saddr 0.0.0.0/0 tcp dport 22 accept\n"), 22),
        (t("\t\tip6 saddr ::/0 tcp dport 22 accept\n"), 22),
        (t("\t\tfib daddr type local tcp dport 22 accept\n"), 22),
        (t("\t\ttcp flags syn tcp dport 22 accept\n"), 22),
        (t("\t\ttcp flags & (fin|syn|rst|ack) == syn tcp dport 22 accept\n"), 22),
        (t("\t\ttcp flags & (fin|syn|rst|ack) != syn tcp dport 22 accept\n"), 22),
        (t("\t\tmeta pkttype host tcp dport 22 accept\n"), 22),
        (t("\t\tcounter tcp dport 22 counter accept\n"), 22),
        (t("\t\ttcp dport 22 log prefix \"ssh \" accept\n"), 22),
        (t("\t\ttcp dport 22 accept comment \"ssh\"\n"), 22),
        (t("\t\ttcp dport 22 jump ssh\n\t}\n\tchain ssh {\n\t\taccept\n"), 22),
        (t("\t\ttcp dport 22 jump ssh\n\t\ttcp dport 22 accept\n\t}\n\tchain ssh {\n\t\treturn\n"), 22),
        (a(""), 22),
        (a("\t\ttcp dport 22 drop\n"), 22),
        (a("\t\ttcp dport 22 reject\n"), 22),
        (a("\t\ttcp dport 22 reject with tcp reset\n"), 22),
        (a("\t\ttcp dport 22 counter reject with icmpx type admin-prohibited\n"), 22),
        (a("\t\ttcp dport != 22 drop\n"), 22),
        (a("\t\tct state invalid drop\n"), 22),
        (a("\t\tiif lo drop\n"), 22),
        (format!("define SSH = 22\n{}", t("\t\ttcp dport $SSH accept\n")), 22),
        (format!("define P = {{ 22, 443 }}\n{}", t("\t\ttcp dport $P accept\n")), 22),
        ("table inet t {\n\tset ok {\n\t\ttype inet_service\n\t\telements = { 22, 443 }\n\t}\n\tchain c {\n\t\ttype filter hook input priority 0; policy drop;\n\t\ttcp dport @ok accept\n\t}\n}\n".to_owned(), 22),
        ("table ip a {\n\tchain c {\n\t\ttype filter hook input priority 0;\n\t\ttcp dport 22 accept\n\t}\n}\ntable ip b {\n\tchain c {\n\t\ttype filter hook input priority 10; policy drop;\n\t}\n}\n".to_owned(), 22),
        ("table ip a {\n\tchain c {\n\t\ttype filter hook input priority 10;\n\t\ttcp dport 22 drop\n\t}\n}\ntable ip b {\n\tchain c {\n\t\ttype filter hook input priority -10;\n\t\ttcp dport 22 accept\n\t}\n}\n".to_owned(), 22),
        ("table ip6 a {\n\tchain c {\n\t\ttype filter hook input priority 0; policy drop;\n\t}\n}\n".to_owned(), 22),
        ("table ip a {\n\tchain c {\n\t\ttype filter hook prerouting priority -300;\n\t\ttcp dport 22 drop\n\t}\n}\n".to_owned(), 22),
        ("table inet t {\n\tflags dormant\n\tchain c {\n\t\ttype filter hook input priority 0; policy drop;\n\t}\n}\n".to_owned(), 22),
        ("add table inet t\nadd chain inet t c { type filter hook input priority 0 ; policy drop ; }\nadd rule inet t c tcp dport 22 accept\n".to_owned(), 22),
        ("add table inet t\nadd chain inet t c { type filter hook input priority 0 ; policy drop ; }\nadd rule inet t c tcp dport 80 accept\ninsert rule inet t c tcp dport 22 accept\n".to_owned(), 22),
        ("table inet filter {\n\tchain input { type filter hook input priority 0; policy drop; tcp dport 22 accept; }\n}\n".to_owned(), 22),
        ("table inet filter {\n\tchain input {\n\t\ttype filter hook input priority 0; policy drop;\n\t\ttcp dport 22 accept\n\t}\n".to_owned(), 22),
        ("table inet filter {\n\tchain input {\n\t\ttype filter hook input priority 0; policy drop;\n\t\ttcp dport 22 acept\n\t}\n}\n".to_owned(), 22),
    ]
}

#[test]
fn nft_verdicts_agree_with_the_kernel() {
    if !check_kernel_access("nft_verdicts_agree_with_the_kernel") {
        return;
    }
    let corpus = nft_corpus();
    let results = par_map(&corpus, |(rules, port)| {
        let file = temp_file("nftc", rules);
        let valid = Command::new(find_tool("nft").unwrap())
            .args(["-c", "-f"])
            .arg(&file)
            .output()
            .map(|o| o.status.success())
            .unwrap_or(false);
        let _ = std::fs::remove_file(&file);
        let kernel = if valid {
            kernel_probe("nft -f", rules, *port)
        } else {
            "invalid".to_owned()
        };
        (valid, kernel)
    });
    let mut failures = Vec::new();
    let mut definite = 0;
    for ((rules, port), (valid, kernel)) in corpus.iter().zip(results) {
        let doc = NftRuleset::parse("/etc/nftables.conf", rules.as_bytes());
        assert_eq!(doc.render(), rules.as_bytes());
        let ours = doc.inbound_tcp(*port, false);
        if !valid {
            if !matches!(ours, FirewallVerdict::Unknown { .. }) && doc.diagnostics.is_empty() {
                failures.push(format!(
                    "nft rejects this file but we say {ours:?} without a diagnostic:\n{rules}"
                ));
            }
            continue;
        }
        match agrees(&ours, &kernel) {
            Some(true) => definite += 1,
            Some(false) => failures.push(format!(
                "port {port}: kernel {kernel}, ours {ours:?}:\n{rules}"
            )),
            None => {}
        }
    }
    assert!(failures.is_empty(), "{}", failures.join("\n\n"));
    assert!(definite >= 40, "only {definite} definite verdicts");
}

const UFW_CONF_ON: &str = "# /etc/ufw/ufw.conf\n#\n\n# Set to yes to start on boot. If setting this remotely, be sure to add a rule\n# to allow your remote connection before starting ufw. Eg: 'ufw allow 22/tcp'\nENABLED=yes\n\n# Please use the 'ufw' command to set the loglevel. Eg: 'ufw logging medium'.\n# See 'man ufw' for details.\nLOGLEVEL=low\n";
const DEFAULT_UFW: &str = "# /etc/default/ufw\n#\n\n# Set to yes to apply rules to support IPv6 (no means only IPv6 on loopback\n# accepted). You will need to 'disable' and then 'enable' the firewall for\n# the changes to take affect.\nIPV6=yes\n\n# Set the default input policy to ACCEPT, DROP, or REJECT. Please note that if\n# you change this you will most likely want to adjust your rules.\nDEFAULT_INPUT_POLICY=\"DROP\"\n\nDEFAULT_OUTPUT_POLICY=\"ACCEPT\"\nDEFAULT_FORWARD_POLICY=\"DROP\"\nDEFAULT_APPLICATION_POLICY=\"SKIP\"\nMANAGE_BUILTINS=no\nIPT_SYSCTL=/etc/ufw/sysctl.conf\nIPT_MODULES=\"\"\n";

/// user.rules as `ufw` writes it, with `rules` between the markers.
fn user_rules(rules: &str) -> String {
    format!(
        "*filter\n:ufw-user-input - [0:0]\n:ufw-user-output - [0:0]\n:ufw-user-forward - [0:0]\n:ufw-before-logging-input - [0:0]\n:ufw-before-logging-output - [0:0]\n:ufw-before-logging-forward - [0:0]\n:ufw-user-logging-input - [0:0]\n:ufw-user-logging-output - [0:0]\n:ufw-user-logging-forward - [0:0]\n:ufw-after-logging-input - [0:0]\n:ufw-after-logging-output - [0:0]\n:ufw-after-logging-forward - [0:0]\n:ufw-logging-deny - [0:0]\n:ufw-logging-allow - [0:0]\n:ufw-user-limit - [0:0]\n:ufw-user-limit-accept - [0:0]\n### RULES ###\n{rules}\n### END RULES ###\n\n### LOGGING ###\n-A ufw-after-logging-input -j LOG --log-prefix \"[UFW BLOCK] \" -m limit --limit 3/min --limit-burst 10\n-A ufw-logging-deny -m conntrack --ctstate INVALID -m limit --limit 3/min --limit-burst 10 -j RETURN\n-A ufw-logging-deny -m limit --limit 3/min --limit-burst 10 -j LOG --log-prefix \"[UFW BLOCK] \"\n-A ufw-logging-allow -m limit --limit 3/min --limit-burst 10 -j LOG --log-prefix \"[UFW ALLOW] \"\n### END LOGGING ###\n\n### RATE LIMITING ###\n-A ufw-user-limit -m limit --limit 3/minute -j LOG --log-prefix \"[UFW LIMIT BLOCK] \"\n-A ufw-user-limit -j REJECT\n-A ufw-user-limit-accept -j ACCEPT\n### END RATE LIMITING ###\nCOMMIT\n"
    )
}

#[test]
fn ufw_verdicts_agree_with_the_kernel() {
    if !check_kernel_access("ufw_verdicts_agree_with_the_kernel") {
        return;
    }
    let accept = DEFAULT_UFW.replace("\"DROP\"", "\"ACCEPT\"");
    let reject = DEFAULT_UFW.replace("\"DROP\"", "\"REJECT\"");
    let cases: Vec<(&str, String, &str, u16)> = vec![
        (UFW_CONF_ON, user_rules(""), DEFAULT_UFW, 22),
        (UFW_CONF_ON, user_rules("\n### tuple ### allow tcp 22 0.0.0.0/0 any 0.0.0.0/0 in\n-A ufw-user-input -p tcp --dport 22 -j ACCEPT\n"), DEFAULT_UFW, 22),
        (UFW_CONF_ON, user_rules("\n### tuple ### allow any 22 0.0.0.0/0 any 0.0.0.0/0 in\n-A ufw-user-input -p tcp --dport 22 -j ACCEPT\n-A ufw-user-input -p udp --dport 22 -j ACCEPT\n"), DEFAULT_UFW, 22),
        (UFW_CONF_ON, user_rules("\n### tuple ### allow tcp 22 0.0.0.0/0 any 0.0.0.0/0 OpenSSH - in\n-A ufw-user-input -p tcp --dport 22 -j ACCEPT -m comment --comment 'dapp_OpenSSH'\n"), DEFAULT_UFW, 22),
        (UFW_CONF_ON, user_rules("\n### tuple ### allow tcp 80,443 0.0.0.0/0 any 0.0.0.0/0 in\n-A ufw-user-input -p tcp -m multiport --dports 80,443 -j ACCEPT\n"), DEFAULT_UFW, 22),
        (UFW_CONF_ON, user_rules("\n### tuple ### deny tcp 22 0.0.0.0/0 any 0.0.0.0/0 in\n-A ufw-user-input -p tcp --dport 22 -j DROP\n"), &accept, 22),
        (UFW_CONF_ON, user_rules("\n### tuple ### reject tcp 22 0.0.0.0/0 any 0.0.0.0/0 in\n-A ufw-user-input -p tcp --dport 22 -j REJECT --reject-with tcp-reset\n"), &accept, 22),
        (UFW_CONF_ON, user_rules(""), &accept, 22),
        (UFW_CONF_ON, user_rules(""), &reject, 22),
        (UFW_CONF_ON, user_rules("\n### tuple ### limit tcp 22 0.0.0.0/0 any 0.0.0.0/0 in\n-A ufw-user-input -p tcp --dport 22 -m conntrack --ctstate NEW -m recent --set\n-A ufw-user-input -p tcp --dport 22 -m conntrack --ctstate NEW -m recent --update --seconds 30 --hitcount 6 -j ufw-user-limit\n-A ufw-user-input -p tcp --dport 22 -j ufw-user-limit-accept\n"), DEFAULT_UFW, 22),
        (UFW_CONF_ON, user_rules("\n### tuple ### allow tcp 445 0.0.0.0/0 any 0.0.0.0/0 in\n-A ufw-user-input -p tcp --dport 445 -j ACCEPT\n"), DEFAULT_UFW, 445),
    ];
    let inputs: Vec<(String, FirewallVerdict, u16)> = cases
        .iter()
        .map(|(conf, user, def, port)| {
            let files = UfwFiles {
                ufw_conf: Some(("/etc/ufw/ufw.conf", conf.as_bytes())),
                default_ufw: Some(("/etc/default/ufw", def.as_bytes())),
                user_rules: Some(("/etc/ufw/user.rules", user.as_bytes())),
                user6_rules: None,
                before_rules: None,
            };
            let (text, _) = ufw::assembled(&files, false).unwrap();
            (text, ufw::inbound_tcp(&files, *port, false), *port)
        })
        .collect();
    let kernel = par_map(&inputs, |(text, _, port)| {
        kernel_probe("iptables-restore -n", text, *port)
    });
    let mut failures = Vec::new();
    let mut definite = 0;
    for ((_, ours, port), k) in inputs.iter().zip(kernel) {
        match agrees(ours, &k) {
            Some(true) => definite += 1,
            Some(false) => failures.push(format!("port {port}: kernel {k}, ours {ours:?}")),
            None => {}
        }
    }
    assert!(failures.is_empty(), "{}", failures.join("\n"));
    assert!(definite >= 10, "only {definite} definite");
}

#[test]
fn ufw_disabled_or_without_ipv6_does_not_filter() {
    let user = user_rules("");
    let off = UFW_CONF_ON.replace("ENABLED=yes", "ENABLED=no");
    let files = UfwFiles {
        ufw_conf: Some(("/etc/ufw/ufw.conf", off.as_bytes())),
        default_ufw: Some(("/etc/default/ufw", DEFAULT_UFW.as_bytes())),
        user_rules: Some(("/etc/ufw/user.rules", user.as_bytes())),
        ..Default::default()
    };
    match ufw::inbound_tcp(&files, 22, false) {
        FirewallVerdict::Allowed { evidence, .. } => assert_eq!(evidence[0].line, 6),
        v => panic!("{v:?}"),
    }
    let no6 = DEFAULT_UFW.replace("IPV6=yes", "IPV6=no");
    let files = UfwFiles {
        ufw_conf: Some(("/etc/ufw/ufw.conf", UFW_CONF_ON.as_bytes())),
        default_ufw: Some(("/etc/default/ufw", no6.as_bytes())),
        user_rules: Some(("/etc/ufw/user.rules", user.as_bytes())),
        ..Default::default()
    };
    assert!(ufw::inbound_tcp(&files, 22, true).is_allowed());
    assert!(ufw::inbound_tcp(&files, 22, false).is_blocked());
}

const RHEL9_PUBLIC: &str = "<?xml version=\"1.0\" encoding=\"utf-8\"?>\n<zone>\n  <short>Public</short>\n  <description>For use in public areas. You do not trust the other computers on networks to not harm your computer. Only selected incoming connections are accepted.</description>\n  <service name=\"ssh\"/>\n  <service name=\"dhcpv6-client\"/>\n  <service name=\"cockpit\"/>\n  <forward/>\n</zone>\n";
const RHEL9_CONF: &str = "# firewalld config file\n\n# default zone\n# The default zone used if an empty zone string is used.\n# Default: public\nDefaultZone=public\n\n# Clean up on exit\n# If set to no or false the firewall configuration will not get cleaned up\n# on exit or stop of firewalld.\n# Default: yes\nCleanupOnExit=yes\n\n# FirewallBackend\n# Selects the firewall backend implementation.\n# Choices are:\n#\t- nftables (default)\n#\t- iptables (iptables, ip6tables, ebtables and ipset)\nFirewallBackend=nftables\n";

fn services(name: &str) -> Option<ServicePorts> {
    builtin_service(name)
}

#[test]
fn firewalld_rhel_defaults_and_breakage() {
    let conf = FirewalldConf::parse("/etc/firewalld/firewalld.conf", RHEL9_CONF.as_bytes());
    let (zone, at) = conf.default_zone();
    assert_eq!((zone.as_str(), at.line), ("public", 6));
    let z = Zone::parse(
        "/usr/lib/firewalld/zones/public.xml",
        RHEL9_PUBLIC.as_bytes(),
    );
    assert!(z.inbound_tcp(22, &services).is_allowed());
    assert!(z.inbound_tcp6(22, &services).is_allowed());

    // An administrator removed ssh from the zone: refused by the target.
    let broken = RHEL9_PUBLIC.replace("  <service name=\"ssh\"/>\n", "");
    let mut z = Zone::parse("/etc/firewalld/zones/public.xml", broken.as_bytes());
    match z.inbound_tcp(22, &services) {
        FirewallVerdict::Blocked { rule, reason } => {
            assert_eq!(rule.line, 2);
            assert!(reason.contains("rejected"), "{reason}");
        }
        v => panic!("{v:?}"),
    }
    // The repair adds the service element and nothing else.
    let span = z.add_service("ssh").unwrap();
    assert_eq!(span.slice(&z.render()), b"  <service name=\"ssh\"/>\n");
    assert!(z.inbound_tcp(22, &services).is_allowed());
    let before = broken.as_bytes();
    let after = z.render();
    assert_eq!(&after[..span.start], &before[..span.start]);
    assert_eq!(&after[span.end..], &before[span.start..]);

    // Default zone switched to drop; ssh moved to a port range; a custom
    // ssh service on 2222.
    let drop = Zone::parse(
        "/usr/lib/firewalld/zones/drop.xml",
        builtin_zone("drop").unwrap().as_bytes(),
    );
    assert!(drop.inbound_tcp(22, &services).is_blocked());
    let range = Zone::parse(
        "z",
        b"<?xml version=\"1.0\"?>\n<zone>\n  <port port=\"1-1024\" protocol=\"tcp\"/>\n</zone>\n",
    );
    assert!(range.inbound_tcp(22, &services).is_allowed());
    let custom = |n: &str| {
        if n == "ssh" {
            Some(vec![("tcp".to_owned(), "2222".to_owned())])
        } else {
            services(n)
        }
    };
    let z = Zone::parse(
        "/usr/lib/firewalld/zones/public.xml",
        RHEL9_PUBLIC.as_bytes(),
    );
    assert!(z.inbound_tcp(22, &custom).is_blocked());
    assert!(z.inbound_tcp(2222, &custom).is_allowed());
}

#[test]
fn hostile_rulesets_stay_bounded() {
    // Every chain jumps 50 times to the next: 50^10 paths without a budget.
    let mut s = String::from("*filter\n:INPUT DROP [0:0]\n");
    for c in 0..10 {
        s.push_str(&format!(":C{c} - [0:0]\n"));
    }
    s.push_str("-A INPUT -j C0\n");
    for c in 0..9 {
        for _ in 0..50 {
            s.push_str(&format!("-A C{c} -j C{}\n", c + 1));
        }
    }
    s.push_str("COMMIT\n");
    let start = std::time::Instant::now();
    let v = IptablesSave::parse("r", s.as_bytes()).inbound_tcp(22);
    assert!(matches!(v, FirewallVerdict::Unknown { .. }), "{v:?}");
    // nft: defines that double at each level, and many chains.
    let mut n = String::from("define d0 = 22\n");
    for i in 1..40 {
        n.push_str(&format!("define d{i} = {{ $d{}, $d{} }}\n", i - 1, i - 1));
    }
    n.push_str("table inet t {\n chain c { type filter hook input priority 0; policy drop; tcp dport $d39 accept }\n");
    for i in 0..50_000 {
        n.push_str(&format!(" chain x{i} {{ jump x{} }}\n", i + 1));
    }
    n.push_str("}\n");
    let d = NftRuleset::parse("n", n.as_bytes());
    let _ = d.inbound_tcp(22, false);
    // firewalld: many rich rules.
    let mut z = String::from("<zone>\n");
    for i in 0..50_000 {
        z.push_str(&format!("<rule><source address=\"10.0.{}.0/24\"/><port port=\"{}\" protocol=\"tcp\"/><accept/></rule>\n", i % 256, 1000 + i % 60000));
    }
    z.push_str("</zone>\n");
    let _ = Zone::parse("z", z.as_bytes()).inbound_tcp(22, &services);
    assert!(start.elapsed().as_secs() < 60, "took {:?}", start.elapsed());
}
