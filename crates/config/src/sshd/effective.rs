//! The settings sshd applies to one connection: the global pass (first
//! value wins, `Match All` included), then the `Match` blocks evaluated for
//! the connection the way sshd re-reads its configuration after the user
//! name is known, with matching blocks overriding what they may override.
//!
//! Criteria that cannot be decided offline (a client host name when
//! `UseDNS yes`, an unknown address) make the block *uncertain*: its values
//! are reported as possible overrides, never guessed. Typed getters cover
//! what the SSH checks need. Pure; no I/O.

use std::collections::BTreeMap;

use serde::Serialize;

use super::engine::{Analysis, Criterion, Event};
use super::keywords::{self, Op};
use super::matching::{
    addr_match_list, groups_match_any, groups_match_pattern_list, match_hostname,
    match_pattern_list, match_user, Tri,
};
use super::version::{Distro, Target};

/// What is known about the connection being explained.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, schemars::JsonSchema)]
pub struct Connection {
    /// The user name the client asks for.
    pub user: String,
    /// The user's groups (primary and supplementary) from the guest's
    /// passwd/group files; empty when the account does not exist.
    pub groups: Vec<String>,
    /// The client's host name as sshd would see it; `None` when unknown.
    /// With `UseDNS no` (the default) sshd uses the address instead, so this
    /// is only consulted with `UseDNS yes`.
    pub host: Option<String>,
    /// The client's address; `None` when unknown.
    pub address: Option<String>,
    /// The server address the client connected to; `None` when unknown.
    pub local_address: Option<String>,
    /// The server port the client connected to; `None` when unknown.
    pub local_port: Option<u16>,
    /// The routing domain; `None` when unknown or not used.
    pub rdomain: Option<String>,
    /// True when the user does not exist (`Match invalid-user`, 9.9+).
    pub invalid_user: bool,
}

/// One setting's value and where it came from.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, schemars::JsonSchema)]
pub struct Value {
    /// Arguments; for settings that accumulate (Port, HostKey, AllowUsers,
    /// …) the arguments of every contributing line, in order.
    pub args: Vec<String>,
    /// `(file, line)` of each contributing line.
    pub origin: Vec<(String, usize)>,
    /// The `Match` block (index into the analysis) that set it, if any.
    pub from_match: Option<usize>,
}

/// A `Match` block whose outcome for this connection is not known offline.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, schemars::JsonSchema)]
pub struct Uncertain {
    /// Index into [`Analysis::match_blocks`].
    pub block: usize,
    /// File and line of the `Match`.
    pub file: String,
    /// 1-based physical line.
    pub line: usize,
    /// Why it cannot be decided.
    pub reason: String,
    /// Settings it would change if it matched.
    pub settings: Vec<String>,
}

/// `PermitRootLogin` values.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, schemars::JsonSchema)]
#[serde(rename_all = "kebab-case")]
pub enum PermitRootLogin {
    /// `yes`.
    Yes,
    /// `no`.
    No,
    /// `prohibit-password` / `without-password` (the default).
    ProhibitPassword,
    /// `forced-commands-only`.
    ForcedCommandsOnly,
}

/// Why the AllowUsers/DenyUsers/AllowGroups/DenyGroups lists let a user in
/// or not, in the order sshd's `allowed_user()` checks them.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, schemars::JsonSchema)]
#[serde(tag = "outcome", rename_all = "snake_case")]
pub enum Access {
    /// No list excludes the user.
    Allowed,
    /// A list excludes the user; `reason` is sshd's log wording.
    Denied {
        /// e.g. "not listed in AllowUsers".
        reason: String,
    },
    /// The answer depends on the client's host name or address.
    Unknown {
        /// What is missing.
        reason: String,
    },
}

/// The effective settings for one connection.
#[derive(Debug, Clone, Serialize, schemars::JsonSchema)]
pub struct Settings {
    /// The sshd build emulated.
    pub target: Target,
    /// Explicitly configured settings by lowercase canonical name.
    pub values: BTreeMap<String, Value>,
    /// Indices of the `Match` blocks that applied.
    pub matched: Vec<usize>,
    /// Blocks that may or may not apply.
    pub uncertain: Vec<Uncertain>,
}

/// How lines of one setting combine.
#[derive(Clone, Copy, PartialEq, Eq)]
enum Merge {
    /// The first line wins.
    First,
    /// Every line adds its arguments (Port, HostKey, AllowUsers, …).
    Append,
    /// Not a setting (deprecated, Match, Include).
    None,
}

fn merge_of(op: Op) -> Merge {
    match op {
        Op::Port
        | Op::ListenAddress
        | Op::HostKey
        | Op::HostCertificate
        | Op::AllowDenyUsers
        | Op::AllowDenyGroups
        | Op::AcceptEnv
        | Op::Subsystem => Merge::Append,
        Op::Deprecated | Op::Unsupported | Op::Ignore | Op::Match | Op::Include => Merge::None,
        _ => Merge::First,
    }
}

struct Replay<'a> {
    analysis: &'a Analysis,
    conn: Option<&'a Connection>,
    values: BTreeMap<String, Value>,
    maybe: BTreeMap<usize, Vec<String>>,
    matched: Vec<usize>,
    uncertain_reason: BTreeMap<usize, String>,
    use_dns: bool,
}

impl Replay<'_> {
    fn run(&mut self) {
        let global = self.conn.is_none();
        const NEVERMATCH: u8 = 0x04;
        const MATCH_ONLY: u8 = 0x08;
        let mut active = if global { Tri::Yes } else { Tri::No };
        let mut flags: u8 = if global { 0 } else { MATCH_ONLY };
        let mut stack: Vec<(Tri, u8)> = Vec::new();
        for ev in &self.analysis.events {
            match *ev {
                Event::Enter => {
                    stack.push((active, flags));
                    flags = if flags & MATCH_ONLY != 0 {
                        MATCH_ONLY
                    } else if active != Tri::No {
                        0
                    } else {
                        NEVERMATCH
                    };
                }
                Event::Exit => {
                    if let Some((a, f)) = stack.pop() {
                        active = a;
                        flags = f;
                    }
                }
                Event::Match(i) => {
                    let Some(block) = self.analysis.match_blocks.get(i) else {
                        continue;
                    };
                    active = if flags & NEVERMATCH != 0 {
                        Tri::No
                    } else if global {
                        Tri::from_bool(block.always)
                    } else {
                        let (r, why) = self.evaluate(&block.criteria);
                        if r == Tri::Unknown {
                            self.uncertain_reason.insert(i, why);
                        }
                        if r == Tri::Yes {
                            self.matched.push(i);
                        }
                        r
                    };
                    flags &= !MATCH_ONLY;
                }
                Event::Directive(i) => {
                    let Some(e) = self.analysis.entries.get(i) else {
                        continue;
                    };
                    let Some(kw) = keywords::lookup(e.keyword.as_bytes(), &self.analysis.target)
                    else {
                        continue;
                    };
                    let merge = merge_of(kw.op);
                    if merge == Merge::None {
                        continue;
                    }
                    match active {
                        Tri::No => {}
                        Tri::Unknown => {
                            if let Some(b) = e.match_block {
                                let list = self.maybe.entry(b).or_default();
                                if !list.contains(&e.setting) {
                                    list.push(e.setting.clone());
                                }
                            }
                        }
                        Tri::Yes => self.apply(e, merge),
                    }
                }
            }
        }
    }

    fn apply(&mut self, e: &super::engine::Entry, merge: Merge) {
        let origin = (e.file.clone(), e.line);
        match self.values.get_mut(&e.setting) {
            None => {
                self.values.insert(
                    e.setting.clone(),
                    Value {
                        args: e.args.clone(),
                        origin: vec![origin],
                        from_match: e.match_block,
                    },
                );
            }
            Some(v) if merge == Merge::Append => {
                if e.setting == "subsystem" {
                    // One entry per subsystem name; later duplicates are ignored.
                    let name = e.args.first().cloned().unwrap_or_default();
                    if split_subsystems(&v.args).iter().any(|(n, _)| *n == name) {
                        return;
                    }
                    v.args.push(String::new());
                }
                v.args.extend(e.args.iter().cloned());
                v.origin.push(origin);
            }
            Some(_) => {}
        }
    }

    /// All criteria of one `Match` line for this connection.
    fn evaluate(&self, criteria: &[Criterion]) -> (Tri, String) {
        let Some(ci) = self.conn else {
            return (Tri::No, String::new());
        };
        let t = &self.analysis.target;
        let mut result = Tri::Yes;
        let mut why = Vec::new();
        for c in criteria {
            let pat = c.patterns.as_bytes();
            let r = match c.attribute.as_str() {
                "all" => return (result, why.join("; ")),
                "invalid-user" => Tri::from_bool(ci.invalid_user),
                "user" => Tri::from_bool(match_pattern_list(ci.user.as_bytes(), pat, false) == 1),
                "group" => Tri::from_bool(
                    !ci.groups.is_empty() && groups_match_pattern_list(&ci.groups, pat),
                ),
                "host" => match self.client_host() {
                    Some(h) => Tri::from_bool(match_hostname(h.as_bytes(), pat) == 1),
                    None => {
                        why.push("Match Host needs the client's DNS name (UseDNS yes)".to_owned());
                        Tri::Unknown
                    }
                },
                "address" | "localaddress" => {
                    let addr = if c.attribute == "address" {
                        &ci.address
                    } else {
                        &ci.local_address
                    };
                    match addr {
                        Some(a) => Tri::from_bool(addr_match_list(Some(a.as_bytes()), pat) == 1),
                        None => {
                            why.push(format!(
                                "Match {} needs the {} address",
                                c.attribute,
                                if c.attribute == "address" {
                                    "client"
                                } else {
                                    "server"
                                }
                            ));
                            Tri::Unknown
                        }
                    }
                }
                "localport" => match ci.local_port {
                    Some(p) => {
                        let want = if c.patterns == "ssh" {
                            Some(22)
                        } else {
                            c.patterns.parse::<u16>().ok()
                        };
                        Tri::from_bool(want == Some(p))
                    }
                    None => {
                        why.push(
                            "Match LocalPort needs the port the client connects to".to_owned(),
                        );
                        Tri::Unknown
                    }
                },
                "rdomain" => match &ci.rdomain {
                    Some(r) => Tri::from_bool(match_pattern_list(r.as_bytes(), pat, false) == 1),
                    None => {
                        why.push("Match RDomain needs the routing domain".to_owned());
                        Tri::Unknown
                    }
                },
                "version" => {
                    let release = format!(
                        "OpenSSH_{}.{}p{}",
                        t.requested.major, t.requested.minor, t.requested.patch
                    );
                    Tri::from_bool(match_pattern_list(release.as_bytes(), pat, false) == 1)
                }
                _ => Tri::No,
            };
            result = result.and(r);
        }
        (result, why.join("; "))
    }

    /// The host name sshd matches against: the address with `UseDNS no`.
    fn client_host(&self) -> Option<String> {
        let ci = self.conn?;
        if self.use_dns {
            ci.host.clone().map(|h| h.to_ascii_lowercase())
        } else {
            ci.address.clone()
        }
    }
}

/// Splits accumulated Subsystem arguments into `(name, command line)`.
fn split_subsystems(args: &[String]) -> Vec<(String, String)> {
    args.split(|a| a.is_empty())
        .filter(|g| !g.is_empty())
        .map(|g| (g[0].clone(), g[1..].join(" ")))
        .collect()
}

/// The global settings (what `sshd -T` shows without `-C`).
pub fn global_settings(analysis: &Analysis) -> Settings {
    let mut r = Replay {
        analysis,
        conn: None,
        values: BTreeMap::new(),
        maybe: BTreeMap::new(),
        matched: Vec::new(),
        uncertain_reason: BTreeMap::new(),
        use_dns: false,
    };
    r.run();
    Settings {
        target: analysis.target.clone(),
        values: r.values,
        matched: Vec::new(),
        uncertain: Vec::new(),
    }
}

/// The settings sshd applies to `conn`.
pub fn effective(analysis: &Analysis, conn: &Connection) -> Settings {
    let global = global_settings(analysis);
    let use_dns = global.flag("usedns").unwrap_or(false);
    let mut r = Replay {
        analysis,
        conn: Some(conn),
        values: BTreeMap::new(),
        maybe: BTreeMap::new(),
        matched: Vec::new(),
        uncertain_reason: BTreeMap::new(),
        use_dns,
    };
    r.run();
    let mut values = global.values;
    for (setting, v) in r.values {
        // Only what may appear in a Match block is copied over the global
        // value (copy_set_server_options()).
        let allowed = keywords::by_setting(&setting, &analysis.target).is_some_and(|k| k.in_match);
        if allowed {
            values.insert(setting, v);
        }
    }
    let uncertain = r
        .uncertain_reason
        .iter()
        .filter_map(|(&i, why)| {
            let b = analysis.match_blocks.get(i)?;
            Some(Uncertain {
                block: i,
                file: b.file.clone(),
                line: b.line,
                reason: why.clone(),
                settings: r.maybe.get(&i).cloned().unwrap_or_default(),
            })
        })
        .collect();
    Settings {
        target: analysis.target.clone(),
        values,
        matched: r.matched,
        uncertain,
    }
}

fn parse_flag(s: &str) -> Option<bool> {
    if s.eq_ignore_ascii_case("yes") {
        Some(true)
    } else if s.eq_ignore_ascii_case("no") {
        Some(false)
    } else {
        None
    }
}

impl Settings {
    /// The explicitly configured value of `setting` (lowercase name).
    pub fn get(&self, setting: &str) -> Option<&Value> {
        self.values.get(&setting.to_ascii_lowercase())
    }

    /// The first argument of `setting`, if configured.
    pub fn first(&self, setting: &str) -> Option<&str> {
        self.get(setting)
            .and_then(|v| v.args.first())
            .map(String::as_str)
    }

    /// A yes/no setting as configured (`None` when not configured).
    pub fn flag(&self, setting: &str) -> Option<bool> {
        self.first(setting).and_then(parse_flag)
    }

    /// Settings that an uncertain `Match` block could change.
    pub fn maybe_overridden(&self, setting: &str) -> Vec<&Uncertain> {
        let s = setting.to_ascii_lowercase();
        self.uncertain
            .iter()
            .filter(|u| u.settings.contains(&s))
            .collect()
    }

    /// `Port` (default 22). Service names the caller cannot resolve are left out.
    pub fn ports(&self) -> Vec<u16> {
        let p: Vec<u16> = self
            .get("port")
            .map(|v| {
                v.args
                    .iter()
                    .filter_map(|a| a.parse().ok().or_else(|| (a == "ssh").then_some(22)))
                    .collect()
            })
            .unwrap_or_default();
        if p.is_empty() {
            vec![22]
        } else {
            p
        }
    }

    /// `ListenAddress` arguments as written (empty: all addresses).
    pub fn listen_addresses(&self) -> Vec<String> {
        self.get("listenaddress")
            .map(|v| v.args.clone())
            .unwrap_or_default()
    }

    /// `PermitRootLogin` (default `prohibit-password`).
    pub fn permit_root_login(&self) -> PermitRootLogin {
        match self
            .first("permitrootlogin")
            .map(str::to_ascii_lowercase)
            .as_deref()
        {
            Some("yes") => PermitRootLogin::Yes,
            Some("no") => PermitRootLogin::No,
            Some("forced-commands-only") => PermitRootLogin::ForcedCommandsOnly,
            _ => PermitRootLogin::ProhibitPassword,
        }
    }

    /// `PubkeyAuthentication` (default yes).
    pub fn pubkey_authentication(&self) -> bool {
        self.flag("pubkeyauthentication").unwrap_or(true)
    }

    /// `PasswordAuthentication` (default yes).
    pub fn password_authentication(&self) -> bool {
        self.flag("passwordauthentication").unwrap_or(true)
    }

    /// Whether keyboard-interactive authentication is offered: from 8.7
    /// `KbdInteractiveAuthentication` (alias `ChallengeResponseAuthentication`,
    /// default yes); before, `KbdInteractiveAuthentication` (default no) or
    /// `ChallengeResponseAuthentication` (default yes).
    pub fn kbd_interactive_authentication(&self) -> bool {
        let kbd = self.flag("kbdinteractiveauthentication");
        if self.target.at_least(8, 7) {
            kbd.unwrap_or(true)
        } else {
            kbd.unwrap_or(false) || self.challenge_response_authentication()
        }
    }

    /// `ChallengeResponseAuthentication` (before 8.7 its own option, default
    /// yes; from 8.7 the same as keyboard-interactive).
    pub fn challenge_response_authentication(&self) -> bool {
        if self.target.at_least(8, 7) {
            self.kbd_interactive_authentication()
        } else {
            self.flag("challengeresponseauthentication").unwrap_or(true)
        }
    }

    /// `UsePAM` (compiled-in default no; distributions set yes in the file).
    pub fn use_pam(&self) -> bool {
        self.flag("usepam").unwrap_or(false)
    }

    /// `StrictModes` (default yes).
    pub fn strict_modes(&self) -> bool {
        self.flag("strictmodes").unwrap_or(true)
    }

    /// `UseDNS` (default no).
    pub fn use_dns(&self) -> bool {
        self.flag("usedns").unwrap_or(false)
    }

    /// `AuthorizedKeysFile` patterns (default `.ssh/authorized_keys
    /// .ssh/authorized_keys2`; `none` means no file).
    pub fn authorized_keys_files(&self) -> Vec<String> {
        match self.get("authorizedkeysfile") {
            Some(v) if v.args.len() == 1 && v.args[0].eq_ignore_ascii_case("none") => Vec::new(),
            Some(v) => v.args.clone(),
            None => vec![
                ".ssh/authorized_keys".into(),
                ".ssh/authorized_keys2".into(),
            ],
        }
    }

    /// The key files sshd reads for a user: `%h`, `%u`, `%U`, `%%` expanded
    /// and relative paths taken from the home directory. `Err` names an
    /// unknown `%` token (sshd then fails the authentication attempt).
    pub fn authorized_keys_paths(
        &self,
        user: &str,
        home: &str,
        uid: u32,
    ) -> Result<Vec<String>, String> {
        self.authorized_keys_files()
            .iter()
            .map(|f| {
                let p = expand_tokens(f, &[('h', home), ('u', user), ('U', &uid.to_string())])?;
                Ok(if p.starts_with('/') {
                    p
                } else {
                    format!("{}/{}", home.trim_end_matches('/'), p)
                })
            })
            .collect()
    }

    /// `AuthorizedKeysCommand` (`None` when unset or `none`).
    pub fn authorized_keys_command(&self) -> Option<&str> {
        self.first("authorizedkeyscommand")
            .filter(|c| !c.eq_ignore_ascii_case("none"))
    }

    /// `AuthorizedKeysCommandUser`.
    pub fn authorized_keys_command_user(&self) -> Option<&str> {
        self.first("authorizedkeyscommanduser")
    }

    fn list(&self, setting: &str) -> Vec<String> {
        self.get(setting)
            .map(|v| v.args.clone())
            .unwrap_or_default()
    }

    /// `AllowUsers` patterns (`user` or `user@host`).
    pub fn allow_users(&self) -> Vec<String> {
        self.list("allowusers")
    }

    /// `DenyUsers` patterns.
    pub fn deny_users(&self) -> Vec<String> {
        self.list("denyusers")
    }

    /// `AllowGroups` patterns.
    pub fn allow_groups(&self) -> Vec<String> {
        self.list("allowgroups")
    }

    /// `DenyGroups` patterns.
    pub fn deny_groups(&self) -> Vec<String> {
        self.list("denygroups")
    }

    /// The host key files sshd loads: `HostKey` lines, or the release's
    /// defaults when there are none. Relative paths are made absolute
    /// against `/`, sshd's working directory under systemd.
    pub fn host_keys(&self) -> Vec<String> {
        let configured: Vec<String> = self
            .list("hostkey")
            .into_iter()
            .filter(|k| !k.eq_ignore_ascii_case("none"))
            .map(|k| {
                if k.starts_with('/') {
                    k
                } else {
                    format!("/{k}")
                }
            })
            .collect();
        if self.get("hostkey").is_some() {
            return configured;
        }
        let mut v = vec!["/etc/ssh/ssh_host_rsa_key".to_owned()];
        if self.target.before(7, 7) {
            v.push("/etc/ssh/ssh_host_dsa_key".into());
        }
        v.push("/etc/ssh/ssh_host_ecdsa_key".into());
        v.push("/etc/ssh/ssh_host_ed25519_key".into());
        v
    }

    /// `PidFile` (`None` for `none`); the default is `/run/sshd.pid` on
    /// Debian builds and `/var/run/sshd.pid` elsewhere.
    pub fn pid_file(&self) -> Option<String> {
        match self.first("pidfile") {
            Some(p) if p.eq_ignore_ascii_case("none") => None,
            Some(p) => Some(p.to_owned()),
            None => Some(
                if self.target.distro == Distro::Debian {
                    "/run/sshd.pid"
                } else {
                    "/var/run/sshd.pid"
                }
                .to_owned(),
            ),
        }
    }

    /// `Subsystem` lines as `(name, command line)`; none by default.
    pub fn subsystems(&self) -> Vec<(String, String)> {
        split_subsystems(&self.list("subsystem"))
    }

    /// `ChrootDirectory` (`None` when unset or `none`).
    pub fn chroot_directory(&self) -> Option<&str> {
        self.first("chrootdirectory")
            .filter(|c| !c.eq_ignore_ascii_case("none"))
    }

    /// `ForceCommand` (`None` when unset or `none`).
    pub fn force_command(&self) -> Option<&str> {
        self.first("forcecommand")
            .filter(|c| !c.eq_ignore_ascii_case("none"))
    }

    /// What AllowUsers/DenyUsers/AllowGroups/DenyGroups say about `conn`,
    /// in `allowed_user()`'s order. `conn.host` is used only with `UseDNS yes`.
    pub fn access_lists(&self, conn: &Connection) -> Access {
        let host: Option<String> = if self.use_dns() {
            conn.host.clone()
        } else {
            conn.address.clone()
        };
        let user = conn.user.as_bytes();
        let ip = conn.address.as_deref().map(str::as_bytes);
        let host_b = host.as_deref().map(str::as_bytes);
        let mut unknown: Option<String> = None;
        for p in self.deny_users() {
            match match_user(user, host_b, ip, p.as_bytes()) {
                Err(_) => {
                    return Access::Denied {
                        reason: format!("invalid DenyUsers pattern \"{p}\" (sshd exits)"),
                    }
                }
                Ok(Tri::Yes) => {
                    return Access::Denied {
                        reason: "listed in DenyUsers".into(),
                    }
                }
                Ok(Tri::Unknown) => {
                    unknown = Some(format!(
                        "DenyUsers pattern {p:?} depends on the client's host or address"
                    ))
                }
                Ok(Tri::No) => {}
            }
        }
        let allow = self.allow_users();
        if !allow.is_empty() {
            let mut any = Tri::No;
            for p in &allow {
                match match_user(user, host_b, ip, p.as_bytes()) {
                    Err(_) => {
                        return Access::Denied {
                            reason: format!("invalid AllowUsers pattern \"{p}\" (sshd exits)"),
                        }
                    }
                    Ok(Tri::Yes) => {
                        any = Tri::Yes;
                        break;
                    }
                    Ok(Tri::Unknown) => any = Tri::Unknown,
                    Ok(Tri::No) => {}
                }
            }
            match any {
                Tri::No => {
                    return Access::Denied {
                        reason: "not listed in AllowUsers".into(),
                    }
                }
                Tri::Unknown => {
                    unknown.get_or_insert_with(|| {
                        "AllowUsers matches depend on the client's host or address".into()
                    });
                }
                Tri::Yes => {}
            }
        }
        let (dg, ag) = (self.deny_groups(), self.allow_groups());
        if !dg.is_empty() || !ag.is_empty() {
            if conn.groups.is_empty() {
                return Access::Denied {
                    reason: "not in any group".into(),
                };
            }
            if !dg.is_empty() && groups_match_any(&conn.groups, &dg) {
                return Access::Denied {
                    reason: "a group is listed in DenyGroups".into(),
                };
            }
            if !ag.is_empty() && !groups_match_any(&conn.groups, &ag) {
                return Access::Denied {
                    reason: "none of user's groups are listed in AllowGroups".into(),
                };
            }
        }
        match unknown {
            Some(reason) => Access::Unknown { reason },
            None => Access::Allowed,
        }
    }
}

/// `percent_expand()` for the given tokens; `Err` names an unknown one.
pub fn expand_tokens(s: &str, tokens: &[(char, &str)]) -> Result<String, String> {
    let mut out = String::with_capacity(s.len());
    let mut it = s.chars();
    while let Some(c) = it.next() {
        if c != '%' {
            out.push(c);
            continue;
        }
        match it.next() {
            Some('%') => out.push('%'),
            Some(k) => match tokens.iter().find(|(t, _)| *t == k) {
                Some((_, v)) => out.push_str(v),
                None => return Err(format!("%{k}")),
            },
            None => return Err("%".into()),
        }
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn tokens() {
        let t = [('h', "/home/bob"), ('u', "bob"), ('U', "1000")];
        assert_eq!(
            expand_tokens("%h/.ssh/k_%u_%U%%", &t),
            Ok("/home/bob/.ssh/k_bob_1000%".into())
        );
        assert_eq!(expand_tokens("%i", &t), Err("%i".into()));
        assert_eq!(expand_tokens("x%", &t), Err("%".into()));
    }
}
