//! What stands between a client and a running sshd inside the guest:
//! `net.tcp-wrappers` (hosts.allow/hosts.deny, for sshd builds linked with
//! libwrap), `net.guest-firewall` (the firewall the guest loads at boot:
//! iptables-persistent, RHEL's iptables service, nftables, ufw, firewalld)
//! and `ssh.selinux-label` (SELinux refusing sshd files it cannot read).
//!
//! Verdicts come from `rescue_config`'s parsers (tested against `tcpdmatch`
//! and the kernel); this module decides which files the guest really uses
//! (a firewall counts only when its systemd unit is enabled) and turns the
//! parsers' own edits into line edits.
//!
//! Must never: consult the host's firewall, wrappers or SELinux state; read
//! a file without the guest view's size cap; propose an edit it has not
//! verified by applying it and evaluating the result again.

use rescue_config::firewall::{
    firewalld, iptables::IptablesSave, nftables::NftRuleset, ufw, FirewallVerdict, RuleRef,
};
use rescue_config::os_release::Family;
use rescue_config::sshd as sshd_config;
use rescue_config::tcp_wrappers::{sshd_access, Access, HostsAccess, Table};
use rescue_guest::{GuestPath, MAX_CONFIG_FILE_BYTES, MAX_DIR_ENTRIES};
use rescue_io::ErrorKind;

use crate::edit::{apply_line_edits, Edit, Repair};
use crate::guest_db;
use crate::{Area, CheckFailure, CheckInfo, CheckResult, Context, Evidence, Finding, Severity};

pub(crate) const TCP_WRAPPERS: CheckInfo = CheckInfo {
    id: "net.tcp-wrappers",
    area: Area::Ssh,
    symptom: "\"kex_exchange_identification: Connection closed by remote host\" right after connecting",
    looks_at: "/etc/hosts.allow and /etc/hosts.deny as libwrap reads them, when the guest's sshd uses libwrap",
};

pub(crate) const GUEST_FIREWALL: CheckInfo = CheckInfo {
    id: "net.guest-firewall",
    area: Area::Ssh,
    symptom: "\"Connection timed out\" although the cloud firewall allows the SSH port",
    looks_at: "the firewall rules the guest loads at boot (iptables-persistent, /etc/sysconfig/iptables, nftables, ufw, firewalld) for new IPv4 TCP connections to sshd's ports",
};

pub(crate) const SELINUX_LABEL: CheckInfo = CheckInfo {
    id: "ssh.selinux-label",
    area: Area::Ssh,
    symptom: "\"Permission denied (publickey)\" or sshd failing only on SELinux-enforcing guests",
    looks_at: "/etc/selinux/config, and SELinux denials of sshd in /var/log/audit/audit.log and /var/log/messages",
};

const SSHD_BINARIES: &[&str] = &["/usr/sbin/sshd", "/usr/libexec/openssh/sshd"];
const MAX_SSHD_BINARY_BYTES: u64 = 16 << 20;
const HOSTS_ALLOW: &str = "/etc/hosts.allow";
const HOSTS_DENY: &str = "/etc/hosts.deny";
/// Rounds of "comment out the blanket deny, evaluate again".
const MAX_REPAIR_ROUNDS: usize = 32;

fn read_optional(ctx: &Context<'_>, path: &str, cap: u64) -> Result<Option<Vec<u8>>, CheckFailure> {
    match ctx.guest.read_file(&GuestPath::new(path), cap) {
        Ok(b) => Ok(Some(b)),
        Err(e) if e.kind() == ErrorKind::NotFound => Ok(None),
        Err(e) => Err(e.into()),
    }
}

/// Line `number` (1-based) of `data`, lossy, without its line end.
fn line_text(data: &[u8], number: usize) -> String {
    number
        .checked_sub(1)
        .and_then(|i| data.split(|&b| b == b'\n').nth(i))
        .map(|l| String::from_utf8_lossy(l.strip_suffix(b"\r").unwrap_or(l)).into_owned())
        .unwrap_or_default()
}

/// The line edits that turn `old` into `new` when `new` changes one
/// contiguous region of lines (what every parser edit here does). Inserted
/// lines ride on the line before them (or after, at the top of the file).
/// `None` unless applying the edits gives exactly `new`.
pub(crate) fn line_edits(path: &str, old: &[u8], new: &[u8]) -> Option<Vec<Edit>> {
    let o: Vec<&[u8]> = old.split(|&b| b == b'\n').collect();
    let n: Vec<&[u8]> = new.split(|&b| b == b'\n').collect();
    let text = |l: &[u8]| String::from_utf8_lossy(l).into_owned();
    let prefix = o.iter().zip(&n).take_while(|(a, b)| a == b).count();
    let max_suffix = o.len().min(n.len()) - prefix;
    let suffix = o
        .iter()
        .rev()
        .zip(n.iter().rev())
        .take(max_suffix)
        .take_while(|(a, b)| a == b)
        .count();
    let om = &o[prefix..o.len() - suffix];
    let nm = &n[prefix..n.len() - suffix];
    if om.is_empty() && nm.is_empty() {
        return Some(Vec::new());
    }
    let join = |ls: &[&[u8]]| ls.iter().map(|l| text(l)).collect::<Vec<_>>().join("\n");
    let mut edits = Vec::new();
    if om.is_empty() {
        // Pure insertion.
        if prefix > 0 {
            let before = text(o[prefix - 1]);
            edits.push(Edit::EditLine {
                path: path.to_owned(),
                line: prefix,
                after: format!("{before}\n{}", join(nm)),
                before,
            });
        } else {
            let before = text(o.first()?);
            edits.push(Edit::EditLine {
                path: path.to_owned(),
                line: 1,
                after: format!("{}\n{before}", join(nm)),
                before,
            });
        }
    } else {
        // Old lines pair with the last new lines; the first old line takes
        // whatever was inserted.
        let extra = nm.len().checked_sub(om.len())?;
        for (i, old_line) in om.iter().enumerate() {
            let after = if i == 0 {
                join(&nm[..=extra])
            } else {
                text(nm[extra + i])
            };
            edits.push(Edit::EditLine {
                path: path.to_owned(),
                line: prefix + i + 1,
                before: text(old_line),
                after,
            });
        }
    }
    // Proof: the edits give exactly `new`.
    let triples: Vec<(usize, &str, &str)> = edits
        .iter()
        .filter_map(|e| match e {
            Edit::EditLine {
                line,
                before,
                after,
                ..
            } => Some((*line, before.as_str(), after.as_str())),
            _ => None,
        })
        .collect();
    (apply_line_edits(old, &triples).ok()? == new).then_some(edits)
}

// ---------------------------------------------------------------------------
// net.tcp-wrappers

/// Whether the guest's sshd consults TCP wrappers, and why we think so.
fn sshd_uses_libwrap(ctx: &Context<'_>) -> Result<String, String> {
    let mut seen = None;
    for path in SSHD_BINARIES {
        let Ok(bin) = ctx
            .guest
            .read_file(&GuestPath::new(*path), MAX_SSHD_BINARY_BYTES)
        else {
            continue;
        };
        let needle = b"libwrap.so";
        if bin.windows(needle.len()).any(|w| w == needle) {
            return Ok(format!("{path} is linked with libwrap"));
        }
        seen = Some(*path);
    }
    // dpkg-shlibdeps derives the package's Depends from the binary's
    // DT_NEEDED entries: libwrap0 there means the binary links it.
    if let Ok(Some(status)) = guest_db::dpkg_status(ctx) {
        let depends_libwrap = guest_db::package(&status, "openssh-server")
            .filter(|p| p.is_installed())
            .and_then(|p| p.field("Depends"))
            .is_some_and(|d| {
                d.split(',')
                    .any(|dep| dep.split_whitespace().next() == Some("libwrap0"))
            });
        if depends_libwrap {
            return Ok(
                "the installed openssh-server package depends on libwrap0 (/var/lib/dpkg/status)"
                    .into(),
            );
        }
    }
    match seen {
        Some(p) => Err(format!(
            "the guest's sshd ({p}) is not linked with libwrap: hosts.allow and hosts.deny do not apply to it"
        )),
        None => Err("no sshd binary in the guest".into()),
    }
}

fn table_path(t: Table) -> &'static str {
    match t {
        Table::Allow => HOSTS_ALLOW,
        Table::Deny => HOSTS_DENY,
    }
}

fn apply(data: &[u8], edits: &[Edit]) -> Option<Vec<u8>> {
    let triples: Vec<(usize, &str, &str)> = edits
        .iter()
        .filter_map(|e| match e {
            Edit::EditLine {
                line,
                before,
                after,
                ..
            } => Some((*line, before.as_str(), after.as_str())),
            _ => None,
        })
        .collect();
    apply_line_edits(data, &triples).ok()
}

/// True when `access` refuses every client with nothing let back in.
fn blanket(access: &Access) -> bool {
    matches!(access, Access::DeniedForAll { allowed_by, .. } if allowed_by.is_empty())
}

/// The result of [`lift_blanket_denials`] once no blanket denial is left.
fn finish(
    fixes: &[WrapperFix; 2],
    allow: &[u8],
    deny: &[u8],
    access: Access,
) -> Option<(Vec<Edit>, Access, Lifted)> {
    let mut edits = fixes[0].edits(HOSTS_ALLOW, allow)?;
    edits.extend(fixes[1].edits(HOSTS_DENY, deny)?);
    let commented = fixes[0].commented.len() + fixes[1].commented.len();
    let newline = fixes[0].newline || fixes[1].newline;
    Some((edits, access, Lifted { commented, newline }))
}

/// What [`lift_blanket_denials`] did.
#[derive(Debug, PartialEq, Eq)]
struct Lifted {
    /// Rules commented out.
    commented: usize,
    /// The missing final newline of hosts.deny was added.
    newline: bool,
}

const COMMENT_REASON: &str = "refused every SSH client (rescue-disk net.tcp-wrappers)";

/// What the repair does to one of the two files.
#[derive(Default, Clone)]
struct WrapperFix {
    /// Add the missing final newline.
    newline: bool,
    /// First lines (in the original file) of the rules commented out.
    commented: Vec<usize>,
}

impl WrapperFix {
    /// The original with the final newline added, if the fix adds it.
    fn base(&self, orig: &[u8]) -> Vec<u8> {
        let mut doc = HostsAccess::parse(orig);
        if self.newline {
            doc.ensure_final_newline();
        }
        doc.render()
    }

    /// The file after the fix: rules are commented out from the last to
    /// the first so that line numbers stay those of the original.
    fn apply(&self, orig: &[u8]) -> Option<Vec<u8>> {
        let mut doc = HostsAccess::parse(&self.base(orig));
        let mut lines = self.commented.clone();
        lines.sort_unstable_by(|a, b| b.cmp(a));
        for l in lines {
            doc.comment_out(l, COMMENT_REASON).ok()?;
        }
        Some(doc.render())
    }

    /// Line `line` of the fixed file, as a line of the original (each
    /// commented rule has one comment line inserted above it).
    fn original_line(&self, line: usize) -> usize {
        let mut sorted = self.commented.clone();
        sorted.sort_unstable();
        let inserted = sorted
            .iter()
            .enumerate()
            .filter(|(rank, r)| **r + rank < line)
            .count();
        line.saturating_sub(inserted)
    }

    /// The fix as line edits of the original, proven to give `apply()`.
    fn edits(&self, path: &str, orig: &[u8]) -> Option<Vec<Edit>> {
        let base = self.base(orig);
        let last_line = orig.split(|&b| b == b'\n').count();
        let mut edits = Vec::new();
        for &l in &self.commented {
            let mut doc = HostsAccess::parse(&base);
            doc.comment_out(l, COMMENT_REASON).ok()?;
            edits.extend(line_edits(path, &base, &doc.render())?);
        }
        if self.newline {
            // The base's last line ends in a newline; the original's does not.
            let mut on_last = false;
            for e in &mut edits {
                if let Edit::EditLine { line, after, .. } = e {
                    if *line == last_line {
                        after.push('\n');
                        on_last = true;
                    }
                }
            }
            if !on_last {
                let before = line_text(orig, last_line);
                edits.push(Edit::EditLine {
                    path: path.to_owned(),
                    line: last_line,
                    after: format!("{before}\n"),
                    before,
                });
            }
        }
        edits.sort_by_key(|e| match e {
            Edit::EditLine { line, .. } => *line,
            _ => 0,
        });
        (apply(orig, &edits)? == self.apply(orig)?).then_some(edits)
    }
}

/// Line edits of hosts.allow and hosts.deny that lift every blanket denial
/// of sshd: the deciding rule is commented out with the reason (the
/// parser's `comment_out`), a missing final newline is added; repeated
/// until no rule refuses every client. Returns the edits, the verdict
/// after them and what they do (rules commented out, newline added);
/// `None` when that cannot be done.
fn lift_blanket_denials(allow: &[u8], deny: &[u8]) -> Option<(Vec<Edit>, Access, Lifted)> {
    let originals = [allow, deny];
    let mut fixes = [WrapperFix::default(), WrapperFix::default()];
    for _ in 0..MAX_REPAIR_ROUNDS {
        let cur_allow = fixes[0].apply(allow)?;
        let cur_deny = fixes[1].apply(deny)?;
        let access = sshd_access(
            &HostsAccess::parse(&cur_allow),
            &HostsAccess::parse(&cur_deny),
        );
        let Access::DeniedForAll {
            table, deny_line, ..
        } = &access
        else {
            return finish(&fixes, allow, deny, access);
        };
        if !blanket(&access) {
            return finish(&fixes, allow, deny, access);
        }
        let which = usize::from(*table == Table::Deny);
        let orig = originals[which];
        let fix = &mut fixes[which];
        let line = fix.original_line(*deny_line);
        let base = HostsAccess::parse(&fix.base(orig));
        if base.rules.iter().any(|r| r.first_line == line) && !fix.commented.contains(&line) {
            fix.commented.push(line);
        } else if !fix.newline && base.stop.as_ref().is_some_and(|s| s.line == line) {
            if orig.last() == Some(&b'\n') {
                // A line too long for libwrap: not ours to rewrite.
                return None;
            }
            fix.newline = true;
        } else {
            return None;
        }
    }
    None
}

pub(crate) fn tcp_wrappers(ctx: &Context<'_>) -> CheckResult {
    let why = sshd_uses_libwrap(ctx).map_err(CheckFailure::NotApplicable)?;
    let allow = read_optional(ctx, HOSTS_ALLOW, MAX_CONFIG_FILE_BYTES)?.unwrap_or_default();
    let deny = read_optional(ctx, HOSTS_DENY, MAX_CONFIG_FILE_BYTES)?.unwrap_or_default();
    let allow_doc = HostsAccess::parse(&allow);
    let deny_doc = HostsAccess::parse(&deny);
    let bytes_of = |t: Table| -> &[u8] {
        match t {
            Table::Allow => &allow,
            Table::Deny => &deny,
        }
    };
    let access = sshd_access(&allow_doc, &deny_doc);
    let mut out = Vec::new();
    match &access {
        Access::Allowed => {}
        Access::DeniedForAll {
            table,
            deny_line,
            reason,
            allowed_by,
        } if allowed_by.is_empty() => {
            let path = table_path(*table);
            let mut f = Finding::new(
                &TCP_WRAPPERS,
                Severity::Error,
                format!("{path} line {deny_line}"),
                format!("TCP wrappers refuse every SSH client: {reason} ({why})"),
            )
            .evidence(Evidence::line(
                path,
                *deny_line,
                line_text(bytes_of(*table), *deny_line),
            ));
            let repair = match lift_blanket_denials(&allow, &deny) {
                Some((edits, after, Lifted { commented, newline })) if !edits.is_empty() => {
                    let mut what = Vec::new();
                    if commented > 0 {
                        what.push(format!(
                            "comment out {commented} rule(s) refusing every client, with the reason"
                        ));
                    }
                    if newline {
                        what.push(format!(
                            "add the missing newline at the end of {HOSTS_DENY} (libwrap stops with an error on a last line without one)"
                        ));
                    }
                    if !matches!(after, Access::Allowed) {
                        what.push("narrower rules stay".into());
                    }
                    Repair {
                        summary: what.join("; "),
                        edits,
                        manual: None,
                    }
                }
                _ => Repair {
                    summary: format!("let SSH clients through {path}"),
                    edits: Vec::new(),
                    manual: Some(format!(
                        "edit {path} so that line {deny_line} no longer refuses sshd for every client"
                    )),
                },
            };
            f = f.repair(Some(repair));
            out.push(f);
        }
        Access::DeniedForAll {
            table,
            deny_line,
            reason,
            allowed_by,
        } => {
            let path = table_path(*table);
            let mut f = Finding::new(
                &TCP_WRAPPERS,
                Severity::Warning,
                format!("{path} line {deny_line}"),
                format!(
                    "TCP wrappers refuse every SSH client except those admitted by {}: {reason}; a client outside them sees the connection closed",
                    allowed_by
                        .iter()
                        .map(|(t, l)| format!("{} line {l}", table_path(*t)))
                        .collect::<Vec<_>>()
                        .join(", ")
                ),
            )
            .evidence(Evidence::line(
                path,
                *deny_line,
                line_text(bytes_of(*table), *deny_line),
            ));
            for (t, l) in allowed_by {
                f = f.evidence(Evidence::line(
                    table_path(*t),
                    *l,
                    line_text(bytes_of(*t), *l),
                ));
            }
            out.push(f.repair(Some(Repair {
                summary: "make sure the client's address is admitted".into(),
                edits: Vec::new(),
                manual: Some(format!(
                    "connect from an address admitted by {HOSTS_ALLOW}, or add one there"
                )),
            })));
        }
        Access::DeniedForSome { lines } => {
            let mut f = Finding::new(
                &TCP_WRAPPERS,
                Severity::Warning,
                "hosts.allow/hosts.deny",
                format!(
                    "TCP wrappers refuse SSH clients matching {} rule(s); other clients get in ({why})",
                    lines.len()
                ),
            )
            .symptom("\"kex_exchange_identification: Connection closed by remote host\" for the refused clients only");
            for (t, l) in lines {
                f = f.evidence(Evidence::line(
                    table_path(*t),
                    *l,
                    line_text(bytes_of(*t), *l),
                ));
            }
            out.push(f.repair(Some(Repair {
                summary: "narrower rules are reported only".into(),
                edits: Vec::new(),
                manual: Some(
                    "check that the client's address is not among the refused ones".into(),
                ),
            })));
        }
        Access::Unknown { why: unknown } => {
            out.push(Finding::new(
                &TCP_WRAPPERS,
                Severity::Info,
                "hosts.allow/hosts.deny",
                format!(
                    "whether TCP wrappers let SSH clients in cannot be told offline: {unknown}"
                ),
            ));
        }
    }
    Ok(out)
}

// ---------------------------------------------------------------------------
// net.guest-firewall

/// The `/etc/systemd/system/*.wants/<unit>` link that enables `unit`, unless
/// the unit is masked.
fn unit_enabled(ctx: &Context<'_>, unit: &str) -> Option<String> {
    let masked = format!("/etc/systemd/system/{unit}");
    if ctx
        .guest
        .read_link(&GuestPath::new(&masked))
        .is_ok_and(|t| t == b"/dev/null")
    {
        return None;
    }
    guest_db::wants_link(ctx, unit)
}

/// The file `nft -f` loads in the unit's ExecStart, if it says.
fn nft_file_from_unit(ctx: &Context<'_>) -> Option<String> {
    let unit = guest_db::UNIT_DIRS.iter().find_map(|d| {
        ctx.guest
            .read_file(
                &GuestPath::new(format!("{d}/nftables.service")),
                MAX_CONFIG_FILE_BYTES,
            )
            .ok()
    })?;
    let text = String::from_utf8_lossy(&unit);
    let exec = text
        .lines()
        .filter_map(|l| l.trim().strip_prefix("ExecStart="))
        .next_back()?;
    let words: Vec<&str> = exec.split_whitespace().collect();
    let i = words.iter().position(|w| *w == "-f" || *w == "--file")?;
    words
        .get(i + 1)
        .filter(|p| p.starts_with('/'))
        .map(|p| (*p).to_owned())
}

/// One firewall the guest loads at boot, evaluated for one port.
struct Evaluated {
    /// Which firewall, for people (`ufw`, `nftables (/etc/nftables.conf)`).
    name: String,
    /// The systemd link that enables it.
    enabled_by: String,
    port: u16,
    verdict: FirewallVerdict,
    /// The parser's allow-edit as verified line edits, if it has one.
    allow: Option<Vec<Edit>>,
    /// What to do by hand when there is no edit.
    manual: String,
}

fn rule_evidence(r: &RuleRef) -> Evidence {
    if r.line == 0 {
        Evidence::fact(format!("{}: {}", r.file, r.rule))
    } else {
        Evidence::line(&r.file, r.line, r.rule.clone())
    }
}

/// An allow-edit made by a parser (whole new bytes), as line edits, kept
/// only when re-evaluating the edited file admits the port.
fn verified_allow(
    path: &str,
    old: &[u8],
    new: Option<Vec<u8>>,
    admits: impl Fn(&[u8]) -> bool,
) -> Option<Vec<Edit>> {
    let new = new?;
    if !admits(&new) {
        return None;
    }
    line_edits(path, old, &new).filter(|e| !e.is_empty())
}

fn iptables_source(
    ctx: &Context<'_>,
    unit: &str,
    path: &str,
    ports: &[u16],
    out: &mut Vec<Evaluated>,
) -> Result<(), CheckFailure> {
    let Some(link) = unit_enabled(ctx, unit) else {
        return Ok(());
    };
    let Some(data) = read_optional(ctx, path, MAX_CONFIG_FILE_BYTES)? else {
        return Ok(());
    };
    let doc = IptablesSave::parse(path, &data);
    for &port in ports {
        let verdict = doc.inbound_tcp(port);
        let allow = verdict.is_blocked().then(|| {
            let mut d = doc.clone();
            let new = d.allow_tcp_port(port).ok().map(|_| d.render());
            verified_allow(path, &data, new, |b| {
                IptablesSave::parse(path, b).inbound_tcp(port).is_allowed()
            })
        });
        out.push(Evaluated {
            name: format!("iptables rules ({path})"),
            enabled_by: link.clone(),
            port,
            verdict,
            allow: allow.flatten(),
            manual: format!("add `-A INPUT -p tcp --dport {port} -j ACCEPT` before the rule that blocks it in {path}"),
        });
    }
    Ok(())
}

fn nftables_source(
    ctx: &Context<'_>,
    ports: &[u16],
    out: &mut Vec<Evaluated>,
) -> Result<(), CheckFailure> {
    let Some(link) = unit_enabled(ctx, "nftables.service") else {
        return Ok(());
    };
    let default = match ctx.report.os.as_ref().map(|o| o.family) {
        Some(Family::Rhel) => "/etc/sysconfig/nftables.conf",
        _ => "/etc/nftables.conf",
    };
    let path = nft_file_from_unit(ctx).unwrap_or_else(|| default.to_owned());
    let Some(data) = read_optional(ctx, &path, MAX_CONFIG_FILE_BYTES)? else {
        return Ok(());
    };
    let doc = NftRuleset::parse(&path, &data);
    // `include` patterns: absolute, or relative to nft's include path /etc.
    let resolve = |pat: &str| -> Vec<NftRuleset> {
        let abs = if pat.starts_with('/') {
            pat.to_owned()
        } else {
            format!("/etc/{pat}")
        };
        let list = |dir: &str| {
            ctx.guest
                .read_dir(&GuestPath::new(dir), MAX_DIR_ENTRIES)
                .ok()
                .map(|entries| entries.iter().map(|e| e.name_lossy()).collect())
        };
        let exists = |p: &str| ctx.guest.exists(&GuestPath::new(p)).unwrap_or(false);
        sshd_config::glob_with(&abs, &list, &exists)
            .into_iter()
            .filter_map(|p| {
                ctx.guest
                    .read_file(&GuestPath::new(&p), MAX_CONFIG_FILE_BYTES)
                    .ok()
                    .map(|b| NftRuleset::parse(&p, &b))
            })
            .collect()
    };
    let eval = |d: &NftRuleset, port: u16| {
        if d.includes.is_empty() {
            d.inbound_tcp(port, false)
        } else {
            d.inbound_tcp_with(port, false, &resolve)
        }
    };
    for &port in ports {
        let verdict = eval(&doc, port);
        let allow = verdict.is_blocked().then(|| {
            let mut d = doc.clone();
            let new = d.allow_tcp_port(port).ok().map(|_| d.render());
            verified_allow(&path, &data, new, |b| {
                eval(&NftRuleset::parse(&path, b), port).is_allowed()
            })
        });
        out.push(Evaluated {
            name: format!("nftables ruleset ({path})"),
            enabled_by: link.clone(),
            port,
            verdict,
            allow: allow.flatten(),
            manual: format!(
                "add `tcp dport {port} accept` at the top of the input chain in {path}"
            ),
        });
    }
    Ok(())
}

fn ufw_source(
    ctx: &Context<'_>,
    ports: &[u16],
    out: &mut Vec<Evaluated>,
) -> Result<(), CheckFailure> {
    let Some(link) = unit_enabled(ctx, "ufw.service") else {
        return Ok(());
    };
    const CONF: &str = "/etc/ufw/ufw.conf";
    const DEFAULTS: &str = "/etc/default/ufw";
    const USER: &str = "/etc/ufw/user.rules";
    const BEFORE: &str = "/etc/ufw/before.rules";
    let Some(conf) = read_optional(ctx, CONF, MAX_CONFIG_FILE_BYTES)? else {
        return Ok(());
    };
    let defaults = read_optional(ctx, DEFAULTS, MAX_CONFIG_FILE_BYTES)?;
    let user = read_optional(ctx, USER, MAX_CONFIG_FILE_BYTES)?;
    let before = read_optional(ctx, BEFORE, MAX_CONFIG_FILE_BYTES)?;
    fn files<'a>(
        conf: &'a [u8],
        defaults: Option<&'a [u8]>,
        user: Option<&'a [u8]>,
        before: Option<&'a [u8]>,
    ) -> ufw::UfwFiles<'a> {
        ufw::UfwFiles {
            ufw_conf: Some((CONF, conf)),
            default_ufw: defaults.map(|d| (DEFAULTS, d)),
            user_rules: user.map(|u| (USER, u)),
            user6_rules: None,
            before_rules: before.map(|b| (BEFORE, b)),
        }
    }
    let verdict_for = |user: Option<&[u8]>, port: u16| {
        ufw::inbound_tcp(
            &files(&conf, defaults.as_deref(), user, before.as_deref()),
            port,
            false,
        )
    };

    for &port in ports {
        let verdict = verdict_for(user.as_deref(), port);
        if let FirewallVerdict::Allowed { note, .. } = &verdict {
            if note == "ufw is not enabled" {
                return Ok(());
            }
        }
        let allow = match (&user, verdict.is_blocked()) {
            (Some(u), true) => {
                let new = ufw::allow_tcp_port(u, port, false).ok().map(|(b, _)| b);
                verified_allow(USER, u, new, |b| verdict_for(Some(b), port).is_allowed())
            }
            _ => None,
        };
        out.push(Evaluated {
            name: "ufw".into(),
            enabled_by: link.clone(),
            port,
            verdict,
            allow,
            manual: format!(
                "run `ufw allow {port}/tcp` in a chroot of the guest, or set ENABLED=no in {CONF}"
            ),
        });
    }
    Ok(())
}

/// A firewalld zone or service name that is safe as a file name.
fn plain_name(name: &str) -> bool {
    !name.is_empty()
        && name
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'-' | b'_' | b'.' | b'+'))
        && !name.starts_with('.')
}

fn firewalld_source(
    ctx: &Context<'_>,
    ports: &[u16],
    out: &mut Vec<Evaluated>,
) -> Result<(), CheckFailure> {
    let Some(link) = unit_enabled(ctx, "firewalld.service") else {
        return Ok(());
    };
    const CONF: &str = "/etc/firewalld/firewalld.conf";
    let conf = read_optional(ctx, CONF, MAX_CONFIG_FILE_BYTES)?.unwrap_or_default();
    let (zone_name, zone_ref) = firewalld::FirewalldConf::parse(CONF, &conf).default_zone();
    let mut zone_file = None;
    if plain_name(&zone_name) {
        for dir in ["/etc/firewalld/zones", "/usr/lib/firewalld/zones"] {
            let p = format!("{dir}/{zone_name}.xml");
            if let Some(d) = read_optional(ctx, &p, MAX_CONFIG_FILE_BYTES)? {
                zone_file = Some((p, d));
                break;
            }
        }
    }
    let (zone_path, zone_bytes, builtin) = match zone_file {
        Some((p, d)) => (p, d, false),
        None => match firewalld::builtin_zone(&zone_name) {
            Some(z) => (
                format!("(firewalld's built-in {zone_name} zone)"),
                z.as_bytes().to_vec(),
                true,
            ),
            None => {
                for &port in ports {
                    out.push(Evaluated {
                        name: format!("firewalld zone {zone_name}"),
                        enabled_by: link.clone(),
                        port,
                        verdict: FirewallVerdict::Unknown {
                            why: format!(
                                "the default zone {zone_name:?} has no zone file in the guest"
                            ),
                            evidence: vec![zone_ref.clone()],
                        },
                        allow: None,
                        manual: String::new(),
                    });
                }
                return Ok(());
            }
        },
    };
    let zone = firewalld::Zone::parse(&zone_path, &zone_bytes);
    let services = |name: &str| -> Option<firewalld::ServicePorts> {
        if plain_name(name) {
            for dir in ["/etc/firewalld/services", "/usr/lib/firewalld/services"] {
                if let Ok(d) = ctx.guest.read_file(
                    &GuestPath::new(format!("{dir}/{name}.xml")),
                    MAX_CONFIG_FILE_BYTES,
                ) {
                    return Some(firewalld::parse_service(&d));
                }
            }
        }
        firewalld::builtin_service(name)
    };
    for &port in ports {
        let mut verdict = zone.inbound_tcp(port, &services);
        if let FirewallVerdict::Blocked { reason, .. } = &mut verdict {
            reason.push_str(&format!(
                " (default zone {zone_name}: {} line {})",
                zone_ref.file, zone_ref.line
            ));
        }
        // Only a zone file under /etc is the administrator's to edit.
        let editable = !builtin && zone_path.starts_with("/etc/");
        let allow = (verdict.is_blocked() && port == 22 && editable)
            .then(|| {
                let mut z = zone.clone();
                let new = z.add_service("ssh").ok().map(|_| z.render());
                verified_allow(&zone_path, &zone_bytes, new, |b| {
                    firewalld::Zone::parse(&zone_path, b)
                        .inbound_tcp(port, &services)
                        .is_allowed()
                })
            })
            .flatten();
        let what = if port == 22 {
            "--add-service=ssh".to_owned()
        } else {
            format!("--add-port={port}/tcp")
        };
        out.push(Evaluated {
            name: format!("firewalld zone {zone_name} ({zone_path})"),
            enabled_by: link.clone(),
            port,
            verdict,
            allow,
            manual: format!(
                "run `firewall-offline-cmd --zone={zone_name} {what}` in a chroot of the guest (it writes /etc/firewalld/zones/{zone_name}.xml)"
            ),
        });
    }
    Ok(())
}

pub(crate) fn guest_firewall(ctx: &Context<'_>) -> CheckResult {
    let ports = match crate::sshd::analysis(ctx)? {
        Some(a) => sshd_config::global_settings(&a).ports(),
        None => vec![22],
    };
    let mut evaluated = Vec::new();
    // Debian's iptables-persistent, RHEL's iptables-services.
    iptables_source(
        ctx,
        "netfilter-persistent.service",
        "/etc/iptables/rules.v4",
        &ports,
        &mut evaluated,
    )?;
    iptables_source(
        ctx,
        "iptables.service",
        "/etc/sysconfig/iptables",
        &ports,
        &mut evaluated,
    )?;
    nftables_source(ctx, &ports, &mut evaluated)?;
    ufw_source(ctx, &ports, &mut evaluated)?;
    firewalld_source(ctx, &ports, &mut evaluated)?;
    let mut out = Vec::new();
    for e in evaluated {
        match &e.verdict {
            FirewallVerdict::Allowed { .. } => {}
            FirewallVerdict::Blocked { rule, reason } => {
                let f = Finding::new(
                    &GUEST_FIREWALL,
                    Severity::Error,
                    format!("{}, TCP port {}", e.name, e.port),
                    format!(
                        "the guest's own firewall ({}, enabled by {}) drops new connections to sshd's port {}: {reason}",
                        e.name, e.enabled_by, e.port
                    ),
                )
                .evidence(rule_evidence(rule));
                let repair = match e.allow {
                    Some(edits) => Repair {
                        summary: format!(
                            "on request: allow TCP port {} in {} (this opens the port to every client)",
                            e.port, e.name
                        ),
                        edits,
                        manual: None,
                    },
                    None => Repair {
                        summary: format!(
                            "on request: allow TCP port {} in {} (this opens the port to every client)",
                            e.port, e.name
                        ),
                        edits: Vec::new(),
                        manual: Some(e.manual.clone()),
                    },
                };
                out.push(f.repair(Some(repair)));
            }
            FirewallVerdict::Unknown { why, evidence } => {
                let mut f = Finding::new(
                    &GUEST_FIREWALL,
                    Severity::Info,
                    format!("{}, TCP port {}", e.name, e.port),
                    format!(
                        "whether the guest's firewall ({}, enabled by {}) lets connections to port {} in cannot be told offline: {why}",
                        e.name, e.enabled_by, e.port
                    ),
                );
                for r in evidence {
                    f = f.evidence(rule_evidence(r));
                }
                out.push(f);
            }
        }
    }
    Ok(out)
}

// ---------------------------------------------------------------------------
// ssh.selinux-label

const SELINUX_CONFIG: &str = "/etc/selinux/config";
const AVC_LOGS: &[&str] = &["/var/log/audit/audit.log", "/var/log/messages"];
/// Denials quoted per finding.
const MAX_DENIALS: usize = 3;
/// Longest log line kept as evidence.
const MAX_LINE_CHARS: usize = 400;

/// `SELINUX=` of /etc/selinux/config as libselinux reads it (the first
/// such line), with its line number.
fn selinux_mode(data: &[u8]) -> Option<(usize, String)> {
    String::from_utf8_lossy(data)
        .lines()
        .enumerate()
        .find_map(|(i, l)| {
            l.trim_start()
                .strip_prefix("SELINUX=")
                .map(|v| (i + 1, v.trim().trim_matches('"').to_ascii_lowercase()))
        })
}

/// An SELinux denial of sshd that the kernel enforced.
fn is_sshd_denial(line: &str) -> bool {
    line.contains("avc:")
        && line.contains("denied")
        && (line.contains("comm=\"sshd\"")
            || line.contains("comm=\"sshd-session\"")
            || line.contains(":sshd_t:"))
        && !line.contains("permissive=1")
}

/// `audit(1700000000.123:456)` → `1700000000.123`, or a syslog time.
fn denial_timestamp(line: &str) -> Option<String> {
    if let Some(i) = line.find("audit(") {
        let rest = &line[i + 6..];
        let end = rest.find(':')?;
        return Some(rest[..end].to_owned());
    }
    let b = line.as_bytes();
    let syslog = b.len() >= 15
        && b[..3].iter().all(u8::is_ascii_alphabetic)
        && b[3] == b' '
        && b[9] == b':'
        && b[12] == b':';
    syslog.then(|| line.get(..15).map(str::to_owned)).flatten()
}

pub(crate) fn selinux_label(ctx: &Context<'_>) -> CheckResult {
    let Some(config) = read_optional(ctx, SELINUX_CONFIG, MAX_CONFIG_FILE_BYTES)? else {
        return Err(CheckFailure::NotApplicable(format!(
            "no {SELINUX_CONFIG}: the guest does not use SELinux"
        )));
    };
    let (mode_line, mode) = match selinux_mode(&config) {
        Some((line, m)) if m == "enforcing" => (line, m),
        other => {
            return Err(CheckFailure::NotApplicable(format!(
                "SELinux is not enforcing ({SELINUX_CONFIG}: {})",
                other.map_or("no SELINUX= line".to_owned(), |(_, m)| format!(
                    "SELINUX={m}"
                ))
            )))
        }
    };
    let mut denials = Vec::new();
    for path in AVC_LOGS {
        let Some(data) = read_optional(ctx, path, MAX_CONFIG_FILE_BYTES)
            .ok()
            .flatten()
        else {
            continue;
        };
        for (i, line) in String::from_utf8_lossy(&data).lines().enumerate() {
            if is_sshd_denial(line) {
                denials.push(Evidence::Log {
                    path: (*path).to_owned(),
                    line: i + 1,
                    timestamp: denial_timestamp(line),
                    text: line
                        .chars()
                        .filter(|c| !c.is_control())
                        .take(MAX_LINE_CHARS)
                        .collect(),
                });
            }
        }
    }
    if denials.is_empty() {
        // The labels themselves (security.selinux xattrs) cannot be read
        // through the guest view yet: no verdict rather than a pass.
        return Err(CheckFailure::NotApplicable(format!(
            "SELinux is enforcing ({SELINUX_CONFIG} line {mode_line}) and no SELinux denial of sshd is logged; file labels cannot be read offline yet"
        )));
    }
    let relabel_scheduled = ctx
        .guest
        .exists(&GuestPath::new("/.autorelabel"))
        .unwrap_or(false);
    let count = denials.len();
    let mut f = Finding::new(
        &SELINUX_LABEL,
        if relabel_scheduled {
            Severity::Info
        } else {
            Severity::Warning
        },
        "SELinux",
        format!(
            "SELinux is {mode} and denied sshd access {count} time(s): files it reads (authorized_keys, host keys, home directories) carry a wrong or no label, as files written offline or restored from elsewhere do{}",
            if relabel_scheduled {
                "; a full relabel is already scheduled (/.autorelabel exists)"
            } else {
                ""
            }
        ),
    )
    .evidence(Evidence::line(
        SELINUX_CONFIG,
        mode_line,
        line_text(&config, mode_line),
    ));
    // Newest last in the logs: quote the newest.
    for d in denials.into_iter().rev().take(MAX_DENIALS) {
        f = f.evidence(d);
    }
    if !relabel_scheduled {
        f = f.repair(Some(Repair {
            summary: "relabel the guest's files at next boot".into(),
            edits: Vec::new(),
            manual: Some(
                "create an empty /.autorelabel (fix --autorelabel, planned), or run `restorecon -Rv /home /root /etc/ssh` in a chroot of the guest"
                    .into(),
            ),
        }));
    }
    Ok(vec![f])
}

#[cfg(test)]
mod tests {
    use super::*;

    fn lines_of(edits: &[Edit]) -> Vec<(usize, String, String)> {
        edits
            .iter()
            .filter_map(|e| match e {
                Edit::EditLine {
                    line,
                    before,
                    after,
                    ..
                } => Some((*line, before.clone(), after.clone())),
                _ => None,
            })
            .collect()
    }

    #[test]
    fn line_edits_cover_insertions_and_changes() {
        // A changed line that becomes two.
        let e = line_edits("/f", b"a\nb\nc\n", b"a\n# why\n#b\nc\n").unwrap();
        assert_eq!(lines_of(&e), [(2, "b".into(), "# why\n#b".into())]);
        // An appended line.
        let e = line_edits("/f", b"a\nb\n", b"a\nb\nc\n").unwrap();
        assert_eq!(lines_of(&e), [(2, "b".into(), "b\nc".into())]);
        // A final newline added.
        let e = line_edits("/f", b"a\nb", b"a\nb\n").unwrap();
        assert_eq!(lines_of(&e), [(2, "b".into(), "b\n".into())]);
        // Insertion at the top.
        let e = line_edits("/f", b"a\n", b"x\na\n").unwrap();
        assert_eq!(lines_of(&e), [(1, "a".into(), "x\na".into())]);
        // Deleting lines is not expressible as line edits.
        assert!(line_edits("/f", b"a\nb\nc\n", b"a\nc\n").is_none());
        assert_eq!(line_edits("/f", b"same\n", b"same\n").unwrap(), []);
    }

    #[test]
    fn blanket_denials_are_lifted_one_after_another() {
        // Two blanket rules, the second without a final newline.
        let deny = b"# comment\nsshd: ALL\nALL: ALL";
        let (edits, after, what) = lift_blanket_denials(b"", deny).unwrap();
        assert_eq!(after, Access::Allowed);
        assert_eq!(
            what,
            Lifted {
                commented: 2,
                newline: true
            }
        );
        let new = apply(deny, &edits).unwrap();
        assert_eq!(
            String::from_utf8(new).unwrap(),
            "# comment\n# rescue-disk: refused every SSH client (rescue-disk net.tcp-wrappers)\n#sshd: ALL\n# rescue-disk: refused every SSH client (rescue-disk net.tcp-wrappers)\n#ALL: ALL\n"
        );
        // A narrower rule whose file lacks the final newline: only the
        // newline is added.
        let deny = b"sshd: 10.0.0.0/8";
        let (edits, after, what) = lift_blanket_denials(b"", deny).unwrap();
        assert!(matches!(after, Access::DeniedForSome { .. }), "{after:?}");
        assert_eq!(
            what,
            Lifted {
                commented: 0,
                newline: true
            }
        );
        assert_eq!(apply(deny, &edits).unwrap(), b"sshd: 10.0.0.0/8\n");
    }

    #[test]
    fn original_lines_map_back_through_comment_lines() {
        let fix = WrapperFix {
            newline: false,
            commented: vec![2, 5],
        };
        // Fixed file: 1, #why, 2, 3, 4, #why, 5, 6.
        assert_eq!(fix.original_line(1), 1);
        assert_eq!(fix.original_line(3), 2);
        assert_eq!(fix.original_line(5), 4);
        assert_eq!(fix.original_line(7), 5);
        assert_eq!(fix.original_line(8), 6);
    }

    #[test]
    fn selinux_mode_and_denials() {
        assert_eq!(
            selinux_mode(b"# x\nSELINUX=enforcing\nSELINUXTYPE=targeted\n"),
            Some((2, "enforcing".into()))
        );
        assert_eq!(selinux_mode(b"SELINUXTYPE=targeted\n"), None);
        let l = "type=AVC msg=audit(1700000000.123:456): avc:  denied  { read } for  pid=1 comm=\"sshd\" name=\"authorized_keys\" scontext=system_u:system_r:sshd_t:s0-s0:c0.c1023 tcontext=unconfined_u:object_r:default_t:s0 tclass=file permissive=0";
        assert!(is_sshd_denial(l));
        assert_eq!(denial_timestamp(l).as_deref(), Some("1700000000.123"));
        assert!(!is_sshd_denial(&l.replace("permissive=0", "permissive=1")));
        assert!(!is_sshd_denial(
            &l.replace("comm=\"sshd\"", "comm=\"httpd\"")
                .replace(":sshd_t:", ":httpd_t:")
        ));
    }
}
