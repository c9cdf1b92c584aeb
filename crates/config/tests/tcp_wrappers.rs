//! hosts.allow/hosts.deny against Debian's libwrap, through `tcpdmatch -d`
//! (which reads the two files from the current directory and runs the
//! library's own matching code).
//!
//! For every (hosts.allow, hosts.deny) pair of the corpus and every probe
//! client, our concrete decision must equal tcpdmatch's; and our verdict for
//! "any client" must agree with all of the concrete answers (Allowed: every
//! probe granted; DeniedForAll without exceptions: every probe denied).
//!
//! Needs `tcpdmatch` (Debian package tcpd): fails under
//! `RESCUE_REQUIRE_TOOLS=1` when missing, skips otherwise.

use std::net::IpAddr;
use std::path::{Path, PathBuf};
use std::process::Command;

use rescue_config::tcp_wrappers::{
    hosts_access, sshd_access, Access, HostsAccess, Table, TwClient,
};

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
    if std::env::var("RESCUE_REQUIRE_TOOLS").is_ok_and(|v| v == "1") {
        panic!("{test}: required tools missing: {missing:?} (RESCUE_REQUIRE_TOOLS=1)");
    }
    eprintln!("SKIP {test}: tools missing: {missing:?}");
    false
}

struct TempDir(PathBuf);

impl TempDir {
    fn new(tag: &str) -> TempDir {
        let p = std::env::temp_dir().join(format!("rescue-config-{tag}-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&p);
        std::fs::create_dir_all(&p).unwrap();
        TempDir(p)
    }
}

impl Drop for TempDir {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}

const DEBIAN_DENY: &str =
    "# /etc/hosts.deny: list of hosts that are _not_ allowed to access the system.\n\
#                  See the manual pages hosts_access(5) and hosts_options(5).\n\
#\n\
# Example:    ALL: some.host.name, .some.domain\n\
#             ALL EXCEPT in.fingerd: other.host.name, .other.domain\n\
#\n\
# If you're going to protect the portmapper use the name \"rpcbind\" for the\n\
# daemon name. See rpcbind(8) and rpc.mountd(8) for further information.\n\
#\n\
# The PARANOID wildcard matches any host whose name does not match its\n\
# address.\n\
#\n\
# You may wish to enable this to ensure any programs that don't\n\
# validate looked up hostnames still leave understandable logs. In past\n\
# versions of Debian this has been the default.\n\
# ALL: PARANOID\n";

const DEBIAN_ALLOW: &str =
    "# /etc/hosts.allow: list of hosts that are allowed to access the system.\n\
#                   See the manual pages hosts_access(5) and hosts_options(5).\n\
#\n\
# Example:    ALL: LOCAL @some_netgroup\n\
#             ALL: .foobar.edu EXCEPT terminalserver.foobar.edu\n\
#\n\
# If you're going to protect the portmapper use the name \"rpcbind\" for the\n\
# daemon name. See rpcbind(8) and rpc.mountd(8) for further information.\n\
#\n";

fn long(n: usize) -> String {
    format!("sshd: {}\n", "1.2.3.4 ".repeat(n))
}

fn corpus() -> Vec<(String, String)> {
    let pairs: Vec<(&str, String)> = vec![
        (DEBIAN_ALLOW, DEBIAN_DENY.to_owned()),
        (DEBIAN_ALLOW, format!("{DEBIAN_DENY}sshd: ALL\n")),
        ("", "ALL: ALL\n".into()),
        ("", "ALL:ALL".into()),
        ("", "# just a comment".into()),
        ("", "\n\n".into()),
        ("sshd: 10.0.0.0/8\n", "ALL: ALL\n".into()),
        ("sshd: 10.0.0.0/255.0.0.0\n", "sshd: ALL\n".into()),
        ("sshd: 10.0.0.1/8\n", "ALL: ALL\n".into()),
        ("sshd: 192.0.2.\n", "ALL: ALL\n".into()),
        ("sshd: 192.0.2.7 \\\n 10.1.1.1\n", "ALL: ALL\n".into()),
        ("# comment \\\nsshd: 192.0.2.7\n", "ALL: ALL\n".into()),
        (" # sshd: ALL\n", "ALL: ALL\n".into()),
        ("", " # sshd: ALL\n".into()),
        ("sshd: ALL EXCEPT 192.0.2.7\n", "ALL: ALL\n".into()),
        ("", "ALL EXCEPT sshd: ALL\n".into()),
        ("", "ALL EXCEPT in.telnetd: ALL\n".into()),
        ("", "sshd: ALL EXCEPT 10.0.0.0/8 192.0.2.0/24\n".into()),
        ("", "sshd, in.ftpd: 192.0.2.7 10.9.9.9\n".into()),
        ("", "SSHD: 192.0.2.7\n".into()),
        ("", "ss*: ALL\n".into()),
        ("", "sshd: 192.0.2.?\n".into()),
        ("", "sshd: UNKNOWN\n".into()),
        ("", "sshd: KNOWN\n".into()),
        ("", "sshd: LOCAL\n".into()),
        ("", "sshd: PARANOID\n".into()),
        ("", "sshd: .example.com\n".into()),
        ("", "sshd: localhost\n".into()),
        ("", "sshd@192.0.2.1: ALL\n".into()),
        ("", "sshd@ALL: ALL\n".into()),
        ("", "sshd: [::1]\n".into()),
        ("", "sshd: [::1]/128 127.0.0.0/8\n".into()),
        ("sshd: ALL: DENY\n", String::new()),
        ("sshd: ALL: spawn /bin/echo %a\n", "ALL: ALL\n".into()),
        ("", "sshd: ALL: allow\n".into()),
        ("", "sshd: ALL: severity auth.info : allow\n".into()),
        ("sshd: ALL: bogusopt\n", String::new()),
        ("sshd: ALL:\n", String::new()),
        ("sshd: ALL: \n", String::new()),
        ("sshd: ALL: allow x\n", String::new()),
        ("sshd: ALL: spawn\n", String::new()),
        ("sshd: ALL: twist /bin/echo no\n", String::new()),
        ("sshd: ALL: keepalive : allow\n", "ALL: ALL\n".into()),
        ("sshd: 192.0.2.7", "ALL: ALL\n".into()),
        ("sshd: 192.0.2.7\nfoo", "ALL: ALL\n".into()),
        ("sshd 192.0.2.7\nsshd: 192.0.2.7\n", "ALL: ALL\n".into()),
        ("", format!("{}ALL: ALL\n", "#".repeat(2100) + "\n")),
        ("", "z".repeat(2100) + "\n"),
        ("", "sshd: 192.0.2.7\0junk\nsshd: 10.9.9.9\n".into()),
        ("", long(300)),
        ("", format!("sshd: {}\nsshd: ALL\n", "x".repeat(2030))),
        ("", "sshd: unknown@192.0.2.7\n".into()),
        ("", "sshd: ALL EXCEPT ALL\n".into()),
        ("", "sshd: 0.0.0.0/0\n".into()),
        ("", "sshd: 0.0.0.0/0.0.0.0\n".into()),
        ("", "sshd: [::]/0\n".into()),
        ("", "sshd:\n".into()),
        ("", ": ALL\n".into()),
        ("", "sshd: 192.0.2.7 EXCEPT 192.0.2.7\n".into()),
        (
            "",
            "sshd: ALL EXCEPT 192.0.2.0/24 EXCEPT 192.0.2.7\n".into(),
        ),
    ];
    pairs.into_iter().map(|(a, d)| (a.to_owned(), d)).collect()
}

const PROBES: &[&str] = &["192.0.2.7", "10.1.2.3", "203.0.113.50", "127.0.0.1", "::1"];

/// Runs tcpdmatch and returns (granted, hostname it found).
fn tcpdmatch(dir: &Path, client: &str) -> (bool, Option<String>) {
    let out = Command::new(find_tool("tcpdmatch").unwrap())
        .current_dir(dir)
        .args(["-d", "sshd", client])
        .output()
        .unwrap();
    let text = String::from_utf8_lossy(&out.stdout).into_owned();
    let access = text
        .lines()
        .find_map(|l| l.strip_prefix("access:"))
        .map(|a| a.trim().to_owned())
        .unwrap_or_default();
    let hostname = text
        .lines()
        .find_map(|l| l.strip_prefix("client:   hostname"))
        .map(|h| h.trim().to_owned());
    (access == "granted", hostname)
}

#[test]
fn decisions_agree_with_tcpdmatch() {
    if !have_tools("decisions_agree_with_tcpdmatch", &["tcpdmatch"]) {
        return;
    }
    let dir = TempDir::new("tcpd");
    let mut failures = Vec::new();
    let (mut granted_n, mut denied_n) = (0, 0);
    for (i, (allow, deny)) in corpus().iter().enumerate() {
        std::fs::write(dir.0.join("hosts.allow"), allow).unwrap();
        std::fs::write(dir.0.join("hosts.deny"), deny).unwrap();
        let a = HostsAccess::parse(allow.as_bytes());
        let d = HostsAccess::parse(deny.as_bytes());
        assert_eq!(a.render(), allow.as_bytes());
        assert_eq!(d.render(), deny.as_bytes());
        let verdict = sshd_access(&a, &d);
        let mut answers = Vec::new();
        for probe in PROBES {
            let (theirs, hostname) = tcpdmatch(&dir.0, probe);
            let client = TwClient {
                addr: probe.parse::<IpAddr>().unwrap(),
                name: hostname.as_deref(),
            };
            let ours = hosts_access(&a, &d, "sshd", &client);
            if ours.granted != theirs {
                failures.push(format!(
                    "case {i} client {probe} ({hostname:?}): tcpdmatch granted={theirs}, ours={ours:?}\nallow={allow:?}\ndeny={deny:?}"
                ));
            }
            if theirs {
                granted_n += 1;
            } else {
                denied_n += 1;
            }
            answers.push((theirs, ours.by));
        }
        // The any-client verdict must not contradict the concrete answers.
        match &verdict {
            Access::Allowed if answers.iter().any(|(g, _)| !g) => {
                failures.push(format!(
                    "case {i}: verdict Allowed but a probe is denied: {answers:?}"
                ));
            }
            Access::DeniedForAll { allowed_by, .. }
                if allowed_by.is_empty() && answers.iter().any(|(g, _)| *g) =>
            {
                failures.push(format!(
                    "case {i}: verdict DeniedForAll but a probe is granted: {answers:?}"
                ));
            }
            Access::DeniedForSome { lines } => {
                for (g, by) in &answers {
                    if !g {
                        if let Some(by) = by {
                            let ok = lines.contains(by) || by.0 == Table::Deny && d.stop.is_some();
                            if !ok {
                                failures
                                    .push(format!("case {i}: denied by {by:?}, not in {lines:?}"));
                            }
                        }
                    }
                }
            }
            _ => {}
        }
    }
    assert!(failures.is_empty(), "{}", failures.join("\n\n"));
    assert!(
        granted_n > 40 && denied_n > 40,
        "{granted_n} granted, {denied_n} denied"
    );
}

#[test]
fn blanket_denies_are_explained() {
    let empty = HostsAccess::parse(b"");
    let allow = HostsAccess::parse(DEBIAN_ALLOW.as_bytes());
    let deny = HostsAccess::parse(DEBIAN_DENY.as_bytes());
    assert_eq!(sshd_access(&allow, &deny), Access::Allowed);
    assert!(allow.diagnostics.is_empty() && deny.diagnostics.is_empty());

    let deny = HostsAccess::parse(format!("{DEBIAN_DENY}sshd: ALL\n").as_bytes());
    match sshd_access(&allow, &deny) {
        Access::DeniedForAll {
            table,
            deny_line,
            allowed_by,
            ..
        } => {
            assert_eq!((table, deny_line), (Table::Deny, 17));
            assert!(allowed_by.is_empty());
        }
        other => panic!("{other:?}"),
    }
    // The repair: comment the blanket rule out with the reason; the rest of
    // the file is unchanged.
    let mut fixed = deny.clone();
    fixed
        .comment_out(
            17,
            "sshd denied for every client (rescue-disk net.tcp-wrappers)",
        )
        .unwrap();
    assert_eq!(
        fixed.render(),
        format!("{DEBIAN_DENY}# rescue-disk: sshd denied for every client (rescue-disk net.tcp-wrappers)\n#sshd: ALL\n").as_bytes()
    );
    assert_eq!(sshd_access(&allow, &fixed), Access::Allowed);

    // A hosts.deny without a final newline denies everyone on Debian.
    let deny = HostsAccess::parse(b"# edited by hand");
    assert!(matches!(
        sshd_access(&empty, &deny),
        Access::DeniedForAll { deny_line: 1, .. }
    ));
    assert!(deny.diagnostics[0].message.contains("missing newline"));
}

#[test]
fn hostile_sizes_stay_linear() {
    let mut s = String::new();
    for i in 0..100_000 {
        s.push_str(&format!(
            "sshd: 10.{}.{}.0/24 EXCEPT 10.{}.{}.1 \\\n EXCEPT ALL\n",
            i % 256,
            i / 256 % 256,
            i % 256,
            i / 256 % 256
        ));
    }
    s.push_str(&format!("sshd: {}\n", "EXCEPT ".repeat(290)));
    let start = std::time::Instant::now();
    let d = HostsAccess::parse(s.as_bytes());
    let empty = HostsAccess::parse(b"");
    let _ = sshd_access(&empty, &d);
    let c = TwClient {
        addr: "10.1.2.3".parse().unwrap(),
        name: None,
    };
    let _ = hosts_access(&empty, &d, "sshd", &c);
    assert!(start.elapsed().as_secs() < 30, "took {:?}", start.elapsed());
}
