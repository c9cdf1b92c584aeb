//! Per-user SSH access: why a user cannot log in with a key, walking the
//! path sshd walks for that user.
//!
//! Three catalogue checks share one survey of the guest (its passwd, shadow
//! and group files, and its sshd configuration analysed for the guest's own
//! OpenSSH release with `Match` blocks evaluated for each user):
//!
//! - `ssh.user-access`: the account exists (`getpwnam`), its lock and expiry
//!   state against `UsePAM`, its shell exists and is executable (and is not
//!   a `nologin`), `DenyUsers`/`AllowUsers`/`DenyGroups`/`AllowGroups`,
//!   `PermitRootLogin` for uid 0, `PubkeyAuthentication`,
//!   `AuthenticationMethods`, `/etc/nologin`, and whether any
//!   `AuthorizedKeysFile` (`%h`/`%u`/`%U`/`%%` expanded) holds a key;
//! - `ssh.home-modes`: sshd's `StrictModes` walk (`safe_path()` in misc.c,
//!   with Debian's "harmless group-writability" patch on Debian builds) from
//!   the canonical key file up to the user's home directory (or `/` when the
//!   file is outside the home), and whether the user can open the file at
//!   all (sshd opens it with the user's uid and groups);
//! - `ssh.authorized-keys`: each key file line as sshd reads it: wrapped
//!   keys, a byte order mark, CRLF (harmless for sshd), unreadable keys,
//!   broken options, `from=` lists, expiry, certificates.
//!
//! The client is unknown offline: anything that depends on its address or
//! host name (`Match Address`, `from=`, `user@host` patterns) is reported
//! as a note or a warning, never as a refusal. "Now" is the clock of the
//! machine running the check (used for account and key expiry), and each
//! finding that depends on it says so.
//!
//! Users examined: `--user NAME` only; otherwise every account with a key
//! file of its own at its AuthorizedKeysFile path (or at
//! `~/.ssh/authorized_keys` when AuthorizedKeysFile points elsewhere), or
//! with a login shell and a home under /home (at most [`MAX_USERS`]).
//!
//! Not modelled: POSIX ACLs on the key path (only the mode bits are read),
//! PAM modules other than pam_unix's account stage and pam_nologin, the
//! glob expansion of AuthorizedKeysFile in OpenSSH 10 (paths are taken
//! literally), certificates and AuthorizedKeysCommand (only noted).
//!
//! Must never: read anything but the guest (users, groups and ids come from
//! the guest's own files), report a user refused when sshd would accept, or
//! examine an unbounded number of users, files or lines.

use std::collections::BTreeMap;
use std::net::{IpAddr, Ipv4Addr};

use rescue_config::accounts::{
    self, Group, PamAccount, Passwd, PasswdEntry, Shadow, ShadowEntry, SshdAccountRefusal,
    NOLOGIN_SHELLS,
};
use rescue_config::authorized_keys::{
    match_from, AuthorizedKeys, Client, FromVerdict, KeyAlgorithm, KeyEntry, KeyLineKind, NotAKey,
    OptionName, Refusal,
};
use rescue_config::sshd::{
    self, Access, Analysis, Connection, Distro, Limits, PermitRootLogin, Settings, SshdConfig,
    Target, Tri,
};
use rescue_guest::{GuestPath, Metadata, MAX_CONFIG_FILE_BYTES};
use rescue_io::ErrorKind;

use crate::edit::{Edit, Repair};
use crate::sshd::guest_openssh;
use crate::{Area, CheckFailure, CheckInfo, CheckResult, Context, Evidence, Finding, Severity};

pub(crate) const USER_ACCESS: CheckInfo = CheckInfo {
    id: "ssh.user-access",
    area: Area::Ssh,
    symptom: "\"Permission denied (publickey)\" for one user",
    looks_at: "the account, its lock state against UsePAM, its shell, Allow/Deny rules, PermitRootLogin, PubkeyAuthentication and AuthorizedKeysFile, with Match blocks evaluated for the user",
};

pub(crate) const HOME_MODES: CheckInfo = CheckInfo {
    id: "ssh.home-modes",
    area: Area::Ssh,
    symptom: "\"Authentication refused: bad ownership or modes for directory /home/u/.ssh\"; the key is ignored",
    looks_at: "owner and mode of the key file and every directory up to the home directory (StrictModes), and whether the user can open the key file",
};

pub(crate) const AUTHORIZED_KEYS: CheckInfo = CheckInfo {
    id: "ssh.authorized-keys",
    area: Area::Ssh,
    symptom: "a key in authorized_keys is silently ignored (\"Permission denied (publickey)\")",
    looks_at: "each line of the users' key files as sshd reads it: wrapped keys, BOM, CRLF, key types and data, options, from=, expiry-time",
};

/// Accounts examined per run (without `--user`).
const MAX_USERS: usize = 256;
/// passwd entries looked at to choose them.
const MAX_SCANNED: usize = 4096;
/// Largest key file analysed (sshd reads any size; a real one holds a few
/// keys, and parsing is proportional to the number of lines).
const MAX_KEY_FILE_BYTES: u64 = 1 << 20;
/// AuthorizedKeysFile paths looked at per user.
const MAX_KEY_FILES: usize = 8;
/// Line findings reported per key file.
const MAX_LINE_FINDINGS: usize = 32;
/// Line edits proposed per repair (CRLF stripping of a huge file).
const MAX_EDITS: usize = 10_000;
/// Longest text kept in a piece of evidence.
const MAX_EVIDENCE_CHARS: usize = 300;
/// Config lines quoted as evidence for one setting.
const MAX_ORIGINS: usize = 8;
/// Notes about Match blocks that cannot be evaluated offline, per run.
const MAX_NOTES: usize = 32;
/// A client address for evaluating everything but `from=`: TEST-NET-1
/// (RFC 5737), which no real client has.
const PROBE_CLIENT: Client<'static> = Client {
    ip: IpAddr::V4(Ipv4Addr::new(192, 0, 2, 1)),
    host: None,
};
/// Settings whose value decides whether a user may log in with a key; a
/// `Match` block that cannot be evaluated and sets one of them is a note.
const ACCESS_SETTINGS: &[&str] = &[
    "pubkeyauthentication",
    "allowusers",
    "denyusers",
    "allowgroups",
    "denygroups",
    "authorizedkeysfile",
    "authorizedkeyscommand",
    "authenticationmethods",
    "permitrootlogin",
    "chrootdirectory",
    "forcecommand",
];

// ---------------------------------------------------------------------------
// The survey: what all three checks read.

/// The guest's accounts and sshd configuration.
struct Survey {
    passwd: Passwd,
    passwd_data: Vec<u8>,
    /// `Err` when the shadow file exists but cannot be read.
    shadow: Result<Option<(Shadow, Vec<u8>)>, String>,
    group: Group,
    analysis: Analysis,
    target: Target,
    version_source: String,
    /// The port sshd listens on when it listens on exactly one.
    single_port: Option<u16>,
    now_unix: i64,
}

/// Reads a guest file; `Ok(None)` when it does not exist.
fn read_optional(ctx: &Context<'_>, path: &str) -> Result<Option<Vec<u8>>, rescue_io::Error> {
    match ctx
        .guest
        .read_file(&GuestPath::new(path), MAX_CONFIG_FILE_BYTES)
    {
        Ok(d) => Ok(Some(d)),
        Err(e) if e.kind() == ErrorKind::NotFound => Ok(None),
        Err(e) => Err(e),
    }
}

fn host_now_unix() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| i64::try_from(d.as_secs()).unwrap_or(i64::MAX))
        .unwrap_or(0)
}

impl Survey {
    fn load(ctx: &Context<'_>) -> Result<Survey, CheckFailure> {
        let main = sshd::DEFAULT_CONFIG_PATH;
        let Some(config) = read_optional(ctx, main)? else {
            return Err(CheckFailure::NotApplicable(format!(
                "{main} does not exist (is openssh-server installed?)"
            )));
        };
        let (target, version_source) = guest_openssh(ctx);
        let analysis = sshd::analyze(
            main,
            &config,
            &target,
            Some(&crate::sshd::GuestIncludes(ctx)),
            Limits::default(),
        );
        if analysis.fails() {
            return Err(CheckFailure::NotApplicable(
                "sshd would not start with this configuration (see sshd.config-syntax): no user can log in until it does".into(),
            ));
        }
        let Some(passwd_data) = read_optional(ctx, "/etc/passwd")? else {
            return Err(CheckFailure::NotApplicable(
                "the guest has no /etc/passwd: no account can log in".into(),
            ));
        };
        let passwd = Passwd::parse(&passwd_data);
        let shadow = match read_optional(ctx, "/etc/shadow") {
            Ok(Some(d)) => Ok(Some((Shadow::parse(&d), d))),
            Ok(None) => Ok(None),
            Err(e) => Err(e.to_string()),
        };
        let group = match read_optional(ctx, "/etc/group") {
            Ok(Some(d)) => Group::parse(&d),
            _ => Group::parse(b""),
        };
        let ports = sshd::global_settings(&analysis).ports();
        Ok(Survey {
            passwd,
            passwd_data,
            shadow,
            group,
            single_port: (ports.len() == 1).then(|| ports[0]),
            analysis,
            target,
            version_source,
            now_unix: host_now_unix(),
        })
    }

    fn today_days(&self) -> i64 {
        self.now_unix.div_euclid(86_400)
    }

    fn shadow_entry(&self, name: &str) -> Option<&ShadowEntry> {
        self.shadow
            .as_ref()
            .ok()
            .and_then(|s| s.as_ref())
            .and_then(|(s, _)| s.get(name))
    }

    fn debian_modes(&self) -> bool {
        self.target.distro == Distro::Debian
    }

    fn openssh(&self) -> (u32, u32) {
        (self.target.requested.major, self.target.requested.minor)
    }

    /// What sshd knows about a connection for `entry` before the client's
    /// address is known.
    fn connection(&self, entry: &PasswdEntry) -> Connection {
        Connection {
            user: entry.name().to_owned(),
            groups: self.group.group_names(entry.name(), entry.gid),
            local_port: self.single_port,
            ..Connection::default()
        }
    }
}

/// One AuthorizedKeysFile path of a user and what is there.
#[derive(Debug, Clone)]
struct KeyFile {
    /// The path as sshd expands it.
    path: String,
    state: KeyFileState,
}

#[derive(Debug, Clone)]
enum KeyFileState {
    Missing,
    /// `stat` failed for another reason (a symlink loop, a damaged inode).
    Broken(String),
    /// It exists (after following symlinks) at `canonical`.
    Present {
        canonical: GuestPath,
        meta: Metadata,
    },
}

/// A user being examined.
struct User<'s> {
    entry: &'s PasswdEntry,
    conn: Connection,
    settings: Settings,
    /// `Err` names an unknown `%` token in AuthorizedKeysFile.
    key_files: Result<Vec<KeyFile>, String>,
}

impl User<'_> {
    fn name(&self) -> &str {
        self.entry.name()
    }

    fn subject(&self) -> String {
        format!("user {}", self.name())
    }
}

fn key_files(
    ctx: &Context<'_>,
    settings: &Settings,
    entry: &PasswdEntry,
) -> Result<Vec<KeyFile>, String> {
    let paths = settings.authorized_keys_paths(entry.name(), entry.home(), entry.uid)?;
    Ok(paths
        .into_iter()
        .take(MAX_KEY_FILES)
        .map(|path| {
            let state = match ctx.guest.resolve(&GuestPath::new(&path), true) {
                Ok(r) => KeyFileState::Present {
                    canonical: r.canonical,
                    meta: r.metadata,
                },
                Err(e) if e.kind() == ErrorKind::NotFound => KeyFileState::Missing,
                Err(e) => KeyFileState::Broken(e.to_string()),
            };
            KeyFile { path, state }
        })
        .collect())
}

/// A shell whose only job is to refuse a session.
fn refusing_shell(shell: &str) -> bool {
    NOLOGIN_SHELLS.contains(&shell)
        || matches!(shell.rsplit('/').next(), Some("nologin" | "false" | "true"))
}

/// Which users to examine: `--user NAME`, or every account with a key file
/// of its own (the file or the home belongs to it) or with a login shell
/// and a home under /home.
enum Selection<'s> {
    Users(Vec<User<'s>>, bool),
    NoSuchUser(String),
}

fn select<'s>(ctx: &Context<'_>, survey: &'s Survey) -> Selection<'s> {
    let make = |entry: &'s PasswdEntry| {
        let conn = survey.connection(entry);
        let settings = sshd::effective(&survey.analysis, &conn);
        let key_files = key_files(ctx, &settings, entry);
        User {
            entry,
            conn,
            settings,
            key_files,
        }
    };
    if let Some(name) = &ctx.options.user {
        return match survey.passwd.get(name) {
            Some(e) => Selection::Users(vec![make(e)], false),
            None => Selection::NoSuchUser(name.clone()),
        };
    }
    let mut out = Vec::new();
    let mut truncated = survey.passwd.entries.len() > MAX_SCANNED;
    for e in survey.passwd.entries.iter().take(MAX_SCANNED) {
        // getpwnam semantics: only the first valid entry of a name counts.
        if e.nis
            || !survey
                .passwd
                .get(e.name())
                .is_some_and(|f| std::ptr::eq(f, e))
        {
            continue;
        }
        let login_home = !refusing_shell(e.effective_shell()) && e.home().starts_with("/home/");
        let user = make(e);
        // A key file of the user's own: the file or the home belongs to
        // them (RHEL's `operator` shares root's home and its key file).
        let owns_home = || {
            ctx.guest
                .metadata(&GuestPath::new(e.home()))
                .is_ok_and(|m| m.uid == e.uid)
        };
        let has_file = user.key_files.as_ref().is_ok_and(|files| {
            files.iter().any(|f| match &f.state {
                KeyFileState::Present { meta, .. } => meta.uid == e.uid || owns_home(),
                KeyFileState::Broken(_) => owns_home(),
                KeyFileState::Missing => false,
            })
        });
        // Keys in the usual place while AuthorizedKeysFile points elsewhere
        // (root's keys, say, after AuthorizedKeysFile /etc/ssh/keys/%u).
        let has_stray_file = !has_file
            && user.settings.get("authorizedkeysfile").is_some()
            && ctx
                .guest
                .metadata(&GuestPath::new(default_key_file(e)))
                .is_ok_and(|m| m.is_file() && m.uid == e.uid);
        if login_home || has_file || has_stray_file {
            if out.len() == MAX_USERS {
                truncated = true;
                break;
            }
            out.push(user);
        }
    }
    Selection::Users(out, truncated)
}

// ---------------------------------------------------------------------------
// Evidence helpers.

/// Line `number` (1-based) of `data` without its newline (a `\r` kept),
/// as lossy UTF-8.
fn line_of(data: &[u8], number: usize) -> Option<String> {
    let i = number.checked_sub(1)?;
    data.split(|&b| b == b'\n')
        .nth(i)
        .map(|l| String::from_utf8_lossy(l).into_owned())
}

/// Text fit for evidence: no trailing `\r`, no control characters, bounded.
fn shown(s: &str) -> String {
    let t: String = s
        .trim_end_matches('\r')
        .chars()
        .filter(|c| !c.is_control() || *c == '\t')
        .take(MAX_EVIDENCE_CHARS + 1)
        .collect();
    if t.chars().count() > MAX_EVIDENCE_CHARS {
        let mut cut: String = t.chars().take(MAX_EVIDENCE_CHARS).collect();
        cut.push('…');
        cut
    } else {
        t
    }
}

fn file_line(ctx: &Context<'_>, path: &str, line: usize) -> Evidence {
    let text = read_optional(ctx, path)
        .ok()
        .flatten()
        .and_then(|d| line_of(&d, line))
        .map(|l| shown(&l))
        .unwrap_or_default();
    Evidence::line(path, line, text)
}

fn passwd_evidence(survey: &Survey, entry: &PasswdEntry) -> Evidence {
    Evidence::line(
        "/etc/passwd",
        entry.line,
        line_of(&survey.passwd_data, entry.line)
            .map(|l| shown(&l))
            .unwrap_or_default(),
    )
}

/// A shadow line with the password hash hidden (lock markers kept).
fn redact_shadow_line(line: &str) -> String {
    let mut parts = line.splitn(3, ':');
    let name = parts.next().unwrap_or("");
    let Some(password) = parts.next() else {
        return name.to_owned();
    };
    let rest = parts.next();
    let locks: String = password.chars().take_while(|&c| c == '!').collect();
    let tail = &password[locks.len()..];
    let shown_pw = if tail.len() <= 2 {
        password.to_owned()
    } else {
        format!("{locks}<hash>")
    };
    match rest {
        Some(r) => format!("{name}:{shown_pw}:{r}"),
        None => format!("{name}:{shown_pw}"),
    }
}

fn shadow_evidence(survey: &Survey, entry: &ShadowEntry) -> Option<Evidence> {
    let (_, data) = survey.shadow.as_ref().ok()?.as_ref()?;
    let line = line_of(data, entry.line)?;
    Some(Evidence::line(
        "/etc/shadow",
        entry.line,
        shown(&redact_shadow_line(&line)),
    ))
}

/// The config lines that set `setting` for this user, optionally only
/// those with an argument `keep` accepts.
fn setting_evidence(
    ctx: &Context<'_>,
    survey: &Survey,
    settings: &Settings,
    setting: &str,
    keep: &dyn Fn(&str) -> bool,
) -> Vec<Evidence> {
    let Some(v) = settings.get(setting) else {
        return Vec::new();
    };
    let mut out = Vec::new();
    for (file, line) in v.origin.iter().take(MAX_ORIGINS) {
        let args: Vec<&String> = survey
            .analysis
            .entries
            .iter()
            .filter(|e| &e.file == file && e.line == *line && e.setting == setting)
            .flat_map(|e| e.args.iter())
            .collect();
        if args.is_empty() || args.iter().any(|a| keep(a)) {
            out.push(file_line(ctx, file, *line));
        }
    }
    out
}

/// Which arguments of a setting line make it evidence.
type Keep<'a> = Box<dyn Fn(&str) -> bool + 'a>;

fn any(_: &str) -> bool {
    true
}

/// "(file line N)" of the first line that set `setting`, for causes.
fn origin_text(settings: &Settings, setting: &str) -> String {
    settings
        .get(setting)
        .and_then(|v| v.origin.first())
        .map(|(f, l)| format!(" ({f} line {l})"))
        .unwrap_or_default()
}

/// When a Match block that cannot be evaluated offline may change one of
/// `names`, the words to add to a cause (and the verdict becomes a warning).
fn hedge(settings: &Settings, names: &[&str]) -> Option<String> {
    let blocks: Vec<String> = names
        .iter()
        .flat_map(|n| settings.maybe_overridden(n))
        .map(|u| format!("{} line {} ({})", u.file, u.line, u.reason))
        .collect();
    (!blocks.is_empty()).then(|| {
        format!(
            "; unless the Match block at {} applies to the client, which cannot be known offline",
            blocks.join(", ")
        )
    })
}

fn refusal_severity(hedged: &Option<String>) -> Severity {
    if hedged.is_some() {
        Severity::Warning
    } else {
        Severity::Error
    }
}

fn manual(summary: impl Into<String>, what: impl Into<String>) -> Option<Repair> {
    Some(Repair {
        summary: summary.into(),
        edits: Vec::new(),
        manual: Some(what.into()),
    })
}

/// A repair that sets the value of one sshd_config line.
fn set_value_repair(
    ctx: &Context<'_>,
    file: &str,
    line: usize,
    value: &str,
    summary: String,
) -> Option<Repair> {
    let data = read_optional(ctx, file).ok().flatten()?;
    let new = SshdConfig::parse(&data).set_value(line, value).ok()?;
    let before = line_of(&data, line)?;
    let after = line_of(&new, line)?;
    Some(Repair {
        summary,
        edits: vec![Edit::EditLine {
            path: file.to_owned(),
            line,
            before,
            after,
        }],
        manual: None,
    })
}

// ---------------------------------------------------------------------------
// ssh.user-access

pub(crate) fn user_access(ctx: &Context<'_>) -> CheckResult {
    let survey = Survey::load(ctx)?;
    let (users, truncated) = match select(ctx, &survey) {
        Selection::NoSuchUser(name) => {
            return Ok(vec![Finding::new(
                &USER_ACCESS,
                Severity::Error,
                format!("user {name}"),
                format!("no such user: the guest's /etc/passwd has no account named {name:?}, so sshd refuses every login as {name}"),
            )
            .symptom(format!("\"Permission denied (publickey)\"; sshd logs \"Invalid user {name} from <address>\""))
            .evidence(Evidence::fact(format!(
                "/etc/passwd has {} valid accounts, none named {name:?}; those with a login shell: {}",
                survey.passwd.entries.iter().filter(|e| !e.nis).count(),
                {
                    let names: Vec<&str> = survey
                        .passwd
                        .entries
                        .iter()
                        .filter(|e| !e.nis && !refusing_shell(e.effective_shell()))
                        .map(|e| e.name())
                        .take(12)
                        .collect();
                    if names.is_empty() { "none".to_owned() } else { names.join(", ") }
                }
            )))
            .repair(manual(
                format!("log in with an existing account, or create {name}"),
                "check the user name (names are case-sensitive); the accounts with a login shell are listed in the evidence",
            ))]);
        }
        Selection::Users(u, t) => (u, t),
    };
    let mut out = Vec::new();
    let mut notes = 0usize;
    for user in &users {
        out.extend(examine_user(ctx, &survey, user, &mut notes));
    }
    if truncated {
        out.push(Finding::new(
            &USER_ACCESS,
            Severity::Info,
            "/etc/passwd",
            format!("only the first {MAX_USERS} accounts with a key file or a login shell (of the first {MAX_SCANNED} lines of /etc/passwd) were examined; use --user NAME for the others"),
        ));
    }
    Ok(out)
}

fn examine_user(
    ctx: &Context<'_>,
    survey: &Survey,
    user: &User<'_>,
    notes: &mut usize,
) -> Vec<Finding> {
    let mut out = Vec::new();
    let name = user.name();
    let s = &user.settings;
    let entry = user.entry;
    let finding =
        |sev: Severity, cause: String| Finding::new(&USER_ACCESS, sev, user.subject(), cause);

    // 1. The account state, as sshd (UsePAM no) or pam_unix (UsePAM yes)
    //    decides it. With PAM a locked password does not stop key logins.
    let today = survey.today_days();
    let use_pam = s.use_pam();
    let shadow = survey.shadow_entry(name);
    let pam_evidence = setting_evidence(ctx, survey, s, "usepam", &any);
    match &survey.shadow {
        Err(e) => out.push(
            finding(Severity::Info, format!("/etc/shadow could not be read ({e}): the lock and expiry state of {name} was not checked"))
        ),
        Ok(_) if !use_pam => match accounts::sshd_no_pam_refusal(entry, shadow, today) {
            Some(SshdAccountRefusal::Locked { .. }) => {
                let mut f = finding(
                    Severity::Error,
                    format!("the password of {name} is locked (it starts with \"!\") and UsePAM is no: sshd then refuses the account before any key is tried"),
                )
                .symptom(format!("\"Permission denied (publickey)\"; sshd logs \"User {name} not allowed because account is locked\""));
                f = f.evidence(match shadow.and_then(|sh| shadow_evidence(survey, sh)) {
                    Some(e) => e,
                    None => passwd_evidence(survey, entry),
                });
                for e in pam_evidence.clone() {
                    f = f.evidence(e);
                }
                out.push(f.repair(manual(
                    format!("unlock {name} for key logins"),
                    format!("either set UsePAM yes (then a locked password no longer stops key logins), or replace the leading \"!\" of {name}'s password with a value that is not a lock (`usermod -p '*' {name}` in `rescue-disk chroot` keeps password logins impossible)"),
                )));
            }
            Some(SshdAccountRefusal::Expired { expire_day }) => {
                let mut f = finding(
                    Severity::Error,
                    format!("the account {name} expired on day {expire_day} since 1970 (today is day {today} by the clock of the machine running this check) and UsePAM is no: sshd refuses it"),
                )
                .symptom(format!("\"Permission denied (publickey)\"; sshd logs \"Account {name} has expired\""));
                if let Some(e) = shadow.and_then(|sh| shadow_evidence(survey, sh)) {
                    f = f.evidence(e);
                }
                out.push(f.repair(manual(
                    format!("extend {name}'s account"),
                    format!("`chage -E -1 {name}` in `rescue-disk chroot` removes the expiry date"),
                )));
            }
            None => {}
        },
        Ok(_) => {
            let verdict = accounts::pam_unix_account(entry, shadow, today);
            let (sev, why) = match verdict {
                PamAccount::Success => (None, String::new()),
                PamAccount::AccountExpired => (
                    Some(Severity::Error),
                    format!("the account {name} has expired (shadow's expiry day is today or earlier, by the clock of the machine running this check): pam_unix's account stage refuses it, after the key was accepted"),
                ),
                PamAccount::PasswordExpiredInactive => (
                    Some(Severity::Error),
                    format!("{name}'s password expired and its inactivity period is over: pam_unix's account stage refuses the account, even for key logins"),
                ),
                PamAccount::ShadowEntryMissing => (
                    Some(Severity::Error),
                    format!("/etc/passwd says {name}'s password is in /etc/shadow (\"x\"), but /etc/shadow has no valid entry for {name}: pam_unix refuses the account, even for key logins"),
                ),
                PamAccount::NewPasswordRequired => (
                    Some(Severity::Warning),
                    format!("{name} must change the password (shadow's last-change day is 0 or the password is older than its maximum age): after the key is accepted sshd asks for a new password, so logins without a terminal fail and interactive ones need the old password"),
                ),
            };
            if let Some(sev) = sev {
                let mut f = finding(sev, why).symptom(format!(
                    "\"Connection closed by <address> port 22\" right after the key is accepted; sshd logs \"Access denied for user {name} by PAM account configuration\""
                ));
                if verdict == PamAccount::NewPasswordRequired {
                    f = f.symptom("\"You are required to change your password immediately\"; non-interactive logins fail");
                }
                if let Some(e) = shadow.and_then(|sh| shadow_evidence(survey, sh)) {
                    f = f.evidence(e);
                } else {
                    f = f.evidence(passwd_evidence(survey, entry));
                }
                for e in pam_evidence.clone() {
                    f = f.evidence(e);
                }
                out.push(f.repair(manual(
                    format!("renew {name}'s account"),
                    format!("`chage -E -1 -d $(date +%F) {name}` in `rescue-disk chroot` (or `fix --set-password {name}`) clears the expiry"),
                )));
            }
        }
    }

    // 2. The shell (unless sshd chroots the user).
    if s.chroot_directory().is_none() {
        let shell = entry.effective_shell();
        let shell_meta = ctx.guest.metadata(&GuestPath::new(shell));
        let bash = ["/bin/bash", "/usr/bin/bash", "/bin/sh"]
            .into_iter()
            .find(|p| {
                ctx.guest
                    .metadata(&GuestPath::new(p))
                    .is_ok_and(|m| m.is_file() && m.mode & 0o111 != 0)
            })
            .unwrap_or("/bin/sh");
        let shell_repair = || {
            manual(
                format!("give {name} a login shell"),
                format!("if {name} should log in: `usermod -s {bash} {name}` in `rescue-disk chroot`, or change the last field of /etc/passwd line {}", entry.line),
            )
        };
        match shell_meta {
            Err(e) => out.push(
                finding(
                    Severity::Error,
                    format!(
                        "{name}'s shell {shell:?} does not exist in the guest ({}): sshd refuses users whose shell it cannot stat",
                        if e.kind() == ErrorKind::NotFound { "no such file".to_owned() } else { e.to_string() }
                    ),
                )
                .symptom(format!("\"Permission denied (publickey)\"; sshd logs \"User {name} not allowed because shell {shell} does not exist\""))
                .evidence(passwd_evidence(survey, entry))
                .repair(shell_repair()),
            ),
            Ok(m) if !m.is_file() || m.mode & 0o111 == 0 => out.push(
                finding(
                    Severity::Error,
                    format!(
                        "{name}'s shell {shell} is not an executable file (mode {:04o}{}): sshd refuses the user",
                        m.mode,
                        if m.is_file() { "" } else { ", not a regular file" }
                    ),
                )
                .symptom(format!("\"Permission denied (publickey)\"; sshd logs \"User {name} not allowed because shell {shell} is not executable\""))
                .evidence(passwd_evidence(survey, entry))
                .repair(shell_repair()),
            ),
            Ok(_) if refusing_shell(shell) && s.force_command() != Some("internal-sftp") => {
                let nologin = shell.ends_with("nologin");
                out.push(
                    finding(
                        Severity::Error,
                        format!("{name}'s shell is {shell}, which exists to refuse logins: sshd accepts the key, then the shell ends the session at once"),
                    )
                    .symptom(if nologin {
                        "the key is accepted, then \"This account is currently not available.\" and the connection closes".to_owned()
                    } else {
                        "the key is accepted, then the connection closes at once".to_owned()
                    })
                    .evidence(passwd_evidence(survey, entry))
                    .repair(shell_repair()),
                );
            }
            Ok(_) => {}
        }
    }

    // 3. DenyUsers, AllowUsers, DenyGroups, AllowGroups (allowed_user()).
    let lists = ["denyusers", "allowusers", "denygroups", "allowgroups"];
    match s.access_lists(&user.conn) {
        Access::Allowed => {}
        Access::Denied { reason } => {
            let hedged = hedge(s, &lists);
            let user_b = name.as_bytes();
            let groups = user.conn.groups.clone();
            let (setting, keep): (&str, Keep<'_>) = if reason.contains("DenyUsers") {
                (
                    "denyusers",
                    Box::new(move |p: &str| {
                        !matches!(
                            sshd::match_user(user_b, None, None, p.as_bytes()),
                            Ok(Tri::No)
                        )
                    }),
                )
            } else if reason.contains("AllowUsers") {
                ("allowusers", Box::new(any))
            } else if reason.contains("DenyGroups") {
                (
                    "denygroups",
                    Box::new(move |p: &str| {
                        groups
                            .iter()
                            .any(|g| sshd::match_pattern(g.as_bytes(), p.as_bytes()))
                    }),
                )
            } else {
                ("allowgroups", Box::new(any))
            };
            let mut f = finding(
                refusal_severity(&hedged),
                format!(
                    "sshd's {} rule refuses {name}: {reason}{}",
                    match setting {
                        "denyusers" => "DenyUsers",
                        "allowusers" => "AllowUsers",
                        "denygroups" => "DenyGroups",
                        _ => "AllowGroups",
                    },
                    hedged.clone().unwrap_or_default()
                ),
            )
            .symptom(format!("\"Permission denied (publickey)\"; sshd logs \"User {name} from <address> not allowed because {reason}\""));
            let mut ev = setting_evidence(ctx, survey, s, setting, &*keep);
            if reason.contains("any group") {
                ev.extend(setting_evidence(ctx, survey, s, "denygroups", &any));
            }
            if reason.contains("any group") && ev.is_empty() {
                ev.extend(setting_evidence(ctx, survey, s, "allowgroups", &any));
            }
            for e in ev {
                f = f.evidence(e);
            }
            if setting.ends_with("groups") {
                f = f.evidence(Evidence::fact(format!(
                    "{name}'s groups in the guest's /etc/group: {}",
                    if user.conn.groups.is_empty() {
                        "none".to_owned()
                    } else {
                        user.conn.groups.join(", ")
                    }
                )));
            }
            let advice = match setting {
                "denyusers" => format!("remove the pattern matching {name} from DenyUsers{} if {name} should log in", origin_text(s, "denyusers")),
                "allowusers" => format!("add {name} to AllowUsers{} if {name} should log in", origin_text(s, "allowusers")),
                "denygroups" => format!("remove {name}'s group from DenyGroups{}, or {name} from that group", origin_text(s, "denygroups")),
                _ => format!("add {name} to a group listed in AllowGroups{} (`usermod -aG GROUP {name}`), or add one of {name}'s groups to it", origin_text(s, "allowgroups")),
            };
            out.push(f.repair(manual(
                format!("let {name} through sshd's {setting} rule"),
                advice,
            )));
        }
        Access::Unknown { reason } => {
            if *notes < MAX_NOTES {
                *notes += 1;
                out.push(finding(
                    Severity::Info,
                    format!("whether sshd's Allow/Deny rules admit {name} depends on the client: {reason}"),
                ));
            }
        }
    }

    // 4. PermitRootLogin, for uid 0 whatever its name.
    if entry.uid == 0 {
        let prl = s.permit_root_login();
        let refused = match prl {
            PermitRootLogin::No => Some("PermitRootLogin no refuses every root login".to_owned()),
            PermitRootLogin::ForcedCommandsOnly if !has_forced_command_key(ctx, user) => Some(
                "PermitRootLogin forced-commands-only admits only keys with a command= option, and none of root's keys has one".to_owned(),
            ),
            _ => None,
        };
        if let Some(why) = refused {
            let hedged = hedge(s, &["permitrootlogin"]);
            let mut f = finding(
                refusal_severity(&hedged),
                format!("{why}{}{}", origin_text(s, "permitrootlogin"), hedged.unwrap_or_default()),
            )
            .symptom("\"Permission denied (publickey)\"; sshd logs \"ROOT LOGIN REFUSED FROM <address>\"");
            for e in setting_evidence(ctx, survey, s, "permitrootlogin", &any) {
                f = f.evidence(e);
            }
            out.push(f.repair(manual(
                "log in as another user",
                "log in with an unprivileged account and use sudo, or set PermitRootLogin prohibit-password if key logins as root are wanted",
            )));
        }
    }

    // 5. PubkeyAuthentication and AuthenticationMethods.
    if !s.pubkey_authentication() {
        let hedged = hedge(s, &["pubkeyauthentication"]);
        let mut f = finding(
            refusal_severity(&hedged),
            format!(
                "PubkeyAuthentication is no for {name}{}: sshd does not even look at the keys{}",
                origin_text(s, "pubkeyauthentication"),
                hedged.unwrap_or_default()
            ),
        )
        .symptom(format!(
            "\"Permission denied\": sshd does not offer public-key authentication to {name}"
        ));
        for e in setting_evidence(ctx, survey, s, "pubkeyauthentication", &any) {
            f = f.evidence(e);
        }
        let repair = s
            .get("pubkeyauthentication")
            .and_then(|v| v.origin.first())
            .and_then(|(file, line)| {
                set_value_repair(
                    ctx,
                    file,
                    *line,
                    "yes",
                    format!("set PubkeyAuthentication yes at {file} line {line}"),
                )
            });
        out.push(f.repair(repair));
    }
    if let Some(v) = s.get("authenticationmethods") {
        let lists: Vec<&String> = v.args.iter().collect();
        let is_any = lists.len() == 1 && lists[0].eq_ignore_ascii_case("any");
        let has_pubkey = |l: &str| {
            l.split(',')
                .any(|m| m.split(':').next() == Some("publickey"))
        };
        if !is_any && !lists.is_empty() {
            let hedged = hedge(s, &["authenticationmethods"]);
            if !lists.iter().any(|l| has_pubkey(l)) {
                let mut f = finding(
                    refusal_severity(&hedged),
                    format!(
                        "AuthenticationMethods {}{} does not include publickey: sshd never accepts a key for {name}{}",
                        lists.iter().map(|s| s.as_str()).collect::<Vec<_>>().join(" "),
                        origin_text(s, "authenticationmethods"),
                        hedged.clone().unwrap_or_default()
                    ),
                );
                for e in setting_evidence(ctx, survey, s, "authenticationmethods", &any) {
                    f = f.evidence(e);
                }
                out.push(f.repair(manual(
                    "allow key logins",
                    "add publickey to AuthenticationMethods, or remove the line",
                )));
            } else if !lists
                .iter()
                .any(|l| l.split(',').count() == 1 && has_pubkey(l))
            {
                let mut f = finding(
                    Severity::Warning,
                    format!(
                        "AuthenticationMethods {}{} asks for more than a key: after the key sshd wants another method",
                        lists.iter().map(|s| s.as_str()).collect::<Vec<_>>().join(" "),
                        origin_text(s, "authenticationmethods")
                    ),
                )
                .symptom("\"Authenticated using \\\"publickey\\\" with partial success.\", then another prompt or \"Permission denied\"");
                for e in setting_evidence(ctx, survey, s, "authenticationmethods", &any) {
                    f = f.evidence(e);
                }
                out.push(f);
            }
        }
    }

    // 6. /etc/nologin refuses everyone but root (sshd itself without PAM,
    //    pam_nologin with it when the sshd PAM stack uses it).
    if entry.uid != 0
        && ctx
            .guest
            .exists(&GuestPath::new("/etc/nologin"))
            .unwrap_or(false)
    {
        let pam_nologin = read_optional(ctx, "/etc/pam.d/sshd")
            .ok()
            .flatten()
            .is_some_and(|d| {
                String::from_utf8_lossy(&d)
                    .lines()
                    .any(|l| !l.trim_start().starts_with('#') && l.contains("pam_nologin.so"))
            });
        if !use_pam || pam_nologin {
            out.push(
                finding(
                    Severity::Error,
                    format!(
                        "/etc/nologin exists: {} refuses every user but root",
                        if use_pam { "pam_nologin (in /etc/pam.d/sshd)" } else { "sshd" }
                    ),
                )
                .symptom(format!("the contents of /etc/nologin are shown and the connection closes; sshd logs \"User {name} not allowed because /etc/nologin exists\""))
                .evidence(Evidence::File { path: "/etc/nologin".into(), line: None, text: "exists".into() })
                .repair(Some(Repair {
                    summary: "remove /etc/nologin (left behind by a shutdown or maintenance)".into(),
                    edits: vec![Edit::Unlink { path: "/etc/nologin".into() }],
                    manual: None,
                })),
            );
        }
    }

    // 7. The key files: is there any key at all?
    match &user.key_files {
        Err(token) => {
            let mut f = finding(
                Severity::Error,
                format!("AuthorizedKeysFile{} uses the unknown token {token}: sshd fails every key login", origin_text(s, "authorizedkeysfile")),
            );
            for e in setting_evidence(ctx, survey, s, "authorizedkeysfile", &any) {
                f = f.evidence(e);
            }
            out.push(f.repair(manual(
                "fix AuthorizedKeysFile",
                "use only %h, %u, %U and %% in AuthorizedKeysFile",
            )));
        }
        Ok(files) => out.extend(key_presence(ctx, survey, user, files)),
    }

    // 8. Match blocks that cannot be evaluated and could change the verdict.
    for u in &s.uncertain {
        if *notes >= MAX_NOTES {
            break;
        }
        let relevant: Vec<&String> = u
            .settings
            .iter()
            .filter(|x| ACCESS_SETTINGS.contains(&x.as_str()))
            .filter(|x| x.as_str() != "permitrootlogin" || entry.uid == 0)
            .collect();
        if relevant.is_empty() {
            continue;
        }
        *notes += 1;
        out.push(
            finding(
                Severity::Info,
                format!(
                    "the Match block at {} line {} may change {} for {name} depending on the client ({}); the verdicts above assume it does not apply",
                    u.file,
                    u.line,
                    relevant.iter().map(|s| s.as_str()).collect::<Vec<_>>().join(", "),
                    u.reason
                ),
            )
            .evidence(file_line(ctx, &u.file, u.line)),
        );
    }
    out
}

/// True when one of the user's key files holds a key with `command=`.
fn has_forced_command_key(ctx: &Context<'_>, user: &User<'_>) -> bool {
    let Ok(files) = &user.key_files else {
        return false;
    };
    files.iter().any(|f| {
        read_key_file(ctx, &f.path).ok().flatten().is_some_and(|d| {
            AuthorizedKeys::parse(&d).keys().any(|(_, k)| {
                k.options
                    .as_ref()
                    .is_some_and(|o| o.error.is_none() && o.get(OptionName::Command).is_some())
            })
        })
    })
}

/// Reads a key file within [`MAX_KEY_FILE_BYTES`]; `Ok(None)` when it
/// does not exist.
fn read_key_file(ctx: &Context<'_>, path: &str) -> Result<Option<Vec<u8>>, rescue_io::Error> {
    match ctx
        .guest
        .read_file(&GuestPath::new(path), MAX_KEY_FILE_BYTES)
    {
        Ok(d) => Ok(Some(d)),
        Err(e) if e.kind() == ErrorKind::NotFound => Ok(None),
        Err(e) => Err(e),
    }
}

/// True when `data` holds no line sshd could take for a key (only blank
/// lines and comments).
fn no_key_lines(data: &[u8]) -> bool {
    AuthorizedKeys::parse(data)
        .lines
        .iter()
        .all(|l| matches!(l.kind, KeyLineKind::Blank | KeyLineKind::Comment))
}

/// ssh.user-access's part of the key files: none exists, or all are empty.
fn key_presence(
    ctx: &Context<'_>,
    survey: &Survey,
    user: &User<'_>,
    files: &[KeyFile],
) -> Vec<Finding> {
    let name = user.name();
    let s = &user.settings;
    let mut out = Vec::new();
    let mut any_key_lines = false;
    let mut described = Vec::new();
    for f in files {
        match &f.state {
            KeyFileState::Missing => described.push(format!("{} does not exist", f.path)),
            KeyFileState::Broken(e) => {
                out.push(
                    Finding::new(
                        &USER_ACCESS,
                        Severity::Error,
                        user.subject(),
                        format!("{name}'s key file {} cannot be opened: {e}", f.path),
                    )
                    .evidence(Evidence::fact(e.clone())),
                );
                described.push(format!("{} cannot be opened", f.path));
            }
            KeyFileState::Present { meta, .. } if !meta.is_file() => {
                // ssh.home-modes explains it.
                described.push(format!("{} is not a regular file", f.path));
            }
            KeyFileState::Present { .. } => match read_key_file(ctx, &f.path) {
                Ok(Some(d)) if no_key_lines(&d) => described.push(format!(
                    "{} is {}",
                    f.path,
                    if d.is_empty() {
                        "empty"
                    } else {
                        "only comments and blank lines"
                    }
                )),
                Ok(Some(_)) => any_key_lines = true,
                Ok(None) => described.push(format!("{} does not exist", f.path)),
                // Too large or damaged: ssh.authorized-keys says so; it
                // may well hold keys, so no refusal is claimed here.
                Err(_) => any_key_lines = true,
            },
        }
    }
    if any_key_lines
        || files
            .iter()
            .any(|f| matches!(f.state, KeyFileState::Broken(_)))
    {
        return out;
    }
    if let Some(cmd) = s.authorized_keys_command() {
        out.push(
            Finding::new(
                &USER_ACCESS,
                Severity::Info,
                user.subject(),
                format!(
                    "{name} has no key in {}; keys may come from AuthorizedKeysCommand {cmd}{}, which cannot be run offline",
                    files.iter().map(|f| f.path.as_str()).collect::<Vec<_>>().join(", "),
                    origin_text(s, "authorizedkeyscommand")
                ),
            ),
        );
        return out;
    }
    // Asked about this user: a definite refusal. Found by the survey (a
    // login shell and a home under /home): perhaps a console-only account,
    // so likely trouble rather than a failure.
    let password_works = s.password_authentication() || s.kbd_interactive_authentication();
    // "AuthorizedKeysFile elsewhere": keys sit in the default place that
    // sshd was told not to read.
    let default = default_key_file(user.entry);
    let elsewhere = s.get("authorizedkeysfile").is_some()
        && !files.iter().any(|f| f.path == default)
        && ctx
            .guest
            .metadata(&GuestPath::new(&default))
            .is_ok_and(|m| m.is_file() && m.size_in_bytes > 0);
    let sev = if ctx.options.user.is_some() || elsewhere {
        Severity::Error
    } else {
        Severity::Warning
    };
    let hedged = hedge(s, &["authorizedkeysfile"]);
    let sev = if hedged.is_some() {
        Severity::Warning
    } else {
        sev
    };
    let mut cause = if files.is_empty() {
        format!(
            "AuthorizedKeysFile is none{}: sshd reads no key file for {name}",
            origin_text(s, "authorizedkeysfile")
        )
    } else {
        format!("{name} has no authorized key: {}", described.join("; "))
    };
    if !ctx
        .guest
        .exists(&GuestPath::new(user.entry.home()))
        .unwrap_or(true)
    {
        cause.push_str(&format!(
            "; the home directory {} does not exist",
            user.entry.home()
        ));
    }
    if elsewhere {
        cause.push_str(&format!(
            "; there are keys in {default}, but AuthorizedKeysFile{} tells sshd to read only {}",
            origin_text(s, "authorizedkeysfile"),
            files
                .iter()
                .map(|f| f.path.as_str())
                .collect::<Vec<_>>()
                .join(" ")
        ));
    }
    if password_works && hedged.is_none() {
        cause.push_str(" (password login may still work)");
    }
    cause.push_str(&hedged.unwrap_or_default());
    let mut f = Finding::new(&USER_ACCESS, sev, user.subject(), cause)
        .symptom(format!(
            "\"Permission denied (publickey)\": sshd finds no authorized key for {name}"
        ))
        .evidence(passwd_evidence(survey, user.entry));
    for e in setting_evidence(ctx, survey, s, "authorizedkeysfile", &any) {
        f = f.evidence(e);
    }
    out.push(f.repair(manual(
        format!("give {name} a key"),
        if elsewhere {
            format!("point AuthorizedKeysFile back at .ssh/authorized_keys, or move the keys to {}", files.first().map(|f| f.path.as_str()).unwrap_or("the configured file"))
        } else {
            format!("`rescue-disk fix --add-key {name}=KEY.pub` (planned) creates ~/.ssh 0700 and authorized_keys 0600 owned by {name}")
        },
    )));
    out
}

/// `~/.ssh/authorized_keys`, where keys live when AuthorizedKeysFile is
/// left alone.
fn default_key_file(entry: &PasswdEntry) -> String {
    format!(
        "{}/.ssh/authorized_keys",
        entry.home().trim_end_matches('/')
    )
}

// ---------------------------------------------------------------------------
// ssh.home-modes

/// Why sshd's `secure_permissions` (Debian) or plain StrictModes rule
/// rejects an inode for the user `uid`; `None` when it passes.
fn strict_mode_problem(
    meta: &Metadata,
    uid: u32,
    debian: bool,
    passwd: &Passwd,
    group: &Group,
) -> Option<String> {
    if meta.uid != 0 && meta.uid != uid {
        let owner = passwd
            .get_by_uid(meta.uid)
            .map(|e| format!(" ({})", e.name()))
            .unwrap_or_default();
        return Some(format!(
            "owned by uid {}{owner}, neither root nor the user",
            meta.uid
        ));
    }
    if meta.mode & 0o002 != 0 {
        return Some(format!("mode {:04o} is writable by others", meta.mode));
    }
    if meta.mode & 0o020 == 0 {
        return None;
    }
    if !debian {
        return Some(format!("mode {:04o} is writable by its group", meta.mode));
    }
    // Debian's user-group-modes patch: group write is harmless when the
    // group's only member (primary or listed) is the user.
    let Some(gr) = group.get_by_gid(meta.gid) else {
        return Some(format!(
            "mode {:04o} is writable by its group, gid {}, which /etc/group does not know",
            meta.mode, meta.gid
        ));
    };
    let gname = gr.name();
    let mut members = 0usize;
    for pw in passwd.entries.iter().filter(|e| !e.nis) {
        if pw.gid == gr.gid {
            members += 1;
            if pw.uid != uid {
                return Some(format!(
                    "mode {:04o} is writable by its group {gname}, whose members include {}",
                    meta.mode,
                    pw.name()
                ));
            }
        }
    }
    let Some(owner) = passwd.get_by_uid(meta.uid) else {
        return Some(format!(
            "mode {:04o} is group-writable and the owner uid {} has no account",
            meta.mode, meta.uid
        ));
    };
    if let Some(first) = gr.members.first() {
        members += 1;
        if first != owner.name() || gr.members.len() > 1 {
            return Some(format!(
                "mode {:04o} is writable by its group {gname}, whose members are {}",
                meta.mode,
                gr.members.join(", ")
            ));
        }
    }
    if members == 0 {
        return Some(format!(
            "mode {:04o} is writable by its group {gname}, which has no members",
            meta.mode
        ));
    }
    None
}

/// Whether a process with `uid` and groups `gids` has `want` (4 read,
/// 1 search) on `meta` (classic permission bits; ACLs are not read).
fn may(meta: &Metadata, uid: u32, gids: &[u32], want: u32) -> bool {
    if uid == 0 {
        return true;
    }
    let bits = if meta.uid == uid {
        (meta.mode >> 6) & 7
    } else if gids.contains(&meta.gid) {
        (meta.mode >> 3) & 7
    } else {
        meta.mode & 7
    };
    bits & want == want
}

/// Where a path component sits relative to the user's home.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Place {
    /// The key file itself.
    KeyFile,
    /// A directory below the home (`~/.ssh`).
    BelowHome,
    /// The home directory.
    Home,
    /// A directory above the home, or on a key path outside the home.
    System,
}

/// Problems of one inode on a user's key path.
#[derive(Debug, Clone)]
struct Component {
    path: GuestPath,
    meta: Metadata,
    place: Place,
    /// The user cannot search (directory) or read (file) it.
    denied: bool,
    /// StrictModes rejects it (why).
    strict: Option<String>,
    users: Vec<String>,
}

/// The mode a repair sets, per the catalogue: key file 0600, ~/.ssh 0700,
/// home without group/other write (0700/0750/0755 kept), directories above
/// 0755. `None` when the mode is fine (the user can get through and
/// StrictModes has nothing against the mode bits).
fn target_mode(c: &Component) -> Option<u32> {
    let special = c.meta.mode & 0o7000;
    let perms = c.meta.mode & 0o777;
    let wanted = match c.place {
        Place::KeyFile => 0o600,
        Place::BelowHome => 0o700,
        Place::Home => (perms & !0o022) | 0o700,
        Place::System => (perms & !0o022) | 0o755,
    };
    // strict_mode_problem() words every mode problem "mode …".
    let mode_rejected = c.strict.as_deref().is_some_and(|w| w.starts_with("mode"));
    let mode_bad = c.denied || mode_rejected;
    (mode_bad && (special | wanted) != c.meta.mode).then_some(special | wanted)
}

pub(crate) fn home_modes(ctx: &Context<'_>) -> CheckResult {
    let survey = Survey::load(ctx)?;
    let Selection::Users(users, _) = select(ctx, &survey) else {
        return Ok(Vec::new());
    };
    let strict = sshd::global_settings(&survey.analysis).strict_modes();
    let mut components: BTreeMap<GuestPath, Component> = BTreeMap::new();
    let mut warnings: BTreeMap<GuestPath, (Metadata, String, Vec<String>)> = BTreeMap::new();
    let mut findings = Vec::new();
    for user in &users {
        let Ok(files) = &user.key_files else {
            continue;
        };
        let uid = user.entry.uid;
        let gids = survey.group.group_list(user.name(), user.entry.gid);
        let home = ctx
            .guest
            .resolve(&GuestPath::new(user.entry.home()), true)
            .ok()
            .filter(|r| r.metadata.is_dir())
            .map(|r| r.canonical);
        for f in files {
            let KeyFileState::Present { canonical, meta } = &f.state else {
                continue;
            };
            if !meta.is_file() {
                findings.push(
                    Finding::new(
                        &HOME_MODES,
                        Severity::Error,
                        user.subject(),
                        format!("{} is not a regular file ({:?}): sshd does not read keys from it", f.path, meta.file_type),
                    )
                    .symptom(format!("\"Permission denied (publickey)\"; sshd logs \"User '{}' authorized keys '{}' is not a regular file\"", user.name(), f.path))
                    .evidence(Evidence::fact(format!("{canonical}: {:?}, mode {:04o}, owner {}:{}", meta.file_type, meta.mode, meta.uid, meta.gid)))
                    .repair(manual("put the keys in a regular file", format!("replace {} with a regular file holding the keys, mode 0600, owned by {}", f.path, user.name()))),
                );
                continue;
            }
            let under_home = home
                .as_ref()
                .is_some_and(|h| canonical.starts_with(h) && canonical != h);
            let mut add = |path: GuestPath,
                           meta: Metadata,
                           place: Place,
                           denied: bool,
                           strict_why: Option<String>| {
                if !denied && strict_why.is_none() {
                    return;
                }
                let c = components.entry(path.clone()).or_insert_with(|| Component {
                    path,
                    meta,
                    place,
                    denied: false,
                    strict: None,
                    users: Vec::new(),
                });
                c.denied |= denied;
                if c.strict.is_none() {
                    c.strict = strict_why;
                }
                if !c.users.iter().any(|u| u == user.name()) {
                    c.users.push(user.name().to_owned());
                }
            };
            let place_of = |p: &GuestPath| match &home {
                Some(h) if under_home && p == h => Place::Home,
                Some(h) if under_home && p.starts_with(h) => Place::BelowHome,
                _ => Place::System,
            };
            // The user must be able to open the file: search permission on
            // every directory on the way (the canonical path and the
            // directories the original path went through), read on the file.
            let mut dirs: Vec<GuestPath> = ancestors(canonical);
            let original = GuestPath::new(&f.path);
            for prefix in ancestors(&original) {
                if let Ok(r) = ctx.guest.resolve(&prefix, true) {
                    for d in ancestors(&r.canonical)
                        .into_iter()
                        .chain(std::iter::once(r.canonical))
                    {
                        if !dirs.contains(&d) {
                            dirs.push(d);
                        }
                    }
                }
            }
            for d in &dirs {
                if let Ok(m) = ctx.guest.metadata(d) {
                    if m.is_dir() && !may(&m, uid, &gids, 1) {
                        add(d.clone(), m, place_of(d), true, None);
                    }
                }
            }
            let file_denied = !may(meta, uid, &gids, 4);
            // StrictModes: safe_path() from the canonical file upwards,
            // stopping after the home directory (or at /).
            let file_strict = if strict {
                strict_mode_problem(
                    meta,
                    uid,
                    survey.debian_modes(),
                    &survey.passwd,
                    &survey.group,
                )
            } else {
                None
            };
            add(
                canonical.clone(),
                meta.clone(),
                Place::KeyFile,
                file_denied,
                file_strict,
            );
            if strict {
                let mut dir = canonical.parent();
                while let Some(d) = dir {
                    match ctx.guest.metadata(&d) {
                        Ok(m) => {
                            let why = strict_mode_problem(
                                &m,
                                uid,
                                survey.debian_modes(),
                                &survey.passwd,
                                &survey.group,
                            );
                            add(d.clone(), m, place_of(&d), false, why);
                        }
                        Err(e) => add(
                            d.clone(),
                            Metadata {
                                file_type: rescue_guest::FileType::Directory,
                                mode: 0,
                                uid: 0,
                                gid: 0,
                                size_in_bytes: 0,
                                modified_unix_seconds: None,
                            },
                            place_of(&d),
                            false,
                            Some(format!("cannot be examined: {e}")),
                        ),
                    }
                    if home.as_ref() == Some(&d) || d.is_root() {
                        break;
                    }
                    dir = d.parent();
                }
                // Above the home sshd checks nothing, but a /home others
                // can write lets them replace the home directory.
                if under_home {
                    let mut above = home.as_ref().and_then(|h| h.parent());
                    while let Some(d) = above {
                        if let Ok(m) = ctx.guest.metadata(&d) {
                            let sticky = m.mode & 0o1000 != 0;
                            let why = if m.uid != 0 && m.uid != uid {
                                Some(format!("owned by uid {}", m.uid))
                            } else if !sticky && m.mode & 0o022 != 0 {
                                Some(format!("mode {:04o} lets others rename or replace the home directories in it", m.mode))
                            } else {
                                None
                            };
                            if let Some(why) = why {
                                let w = warnings.entry(d.clone()).or_insert((m, why, Vec::new()));
                                if !w.2.iter().any(|u| u == user.name()) {
                                    w.2.push(user.name().to_owned());
                                }
                            }
                        }
                        if d.is_root() {
                            break;
                        }
                        above = d.parent();
                    }
                }
            }
        }
    }
    for c in components.values() {
        findings.push(component_finding(&survey, &users, c));
    }
    for (path, (meta, why, users_hit)) in warnings {
        let first = users_hit.first().cloned().unwrap_or_default();
        let mut edits = Vec::new();
        if meta.uid != 0 {
            edits.push(Edit::SetOwner {
                path: path.to_string(),
                from_uid: meta.uid,
                from_gid: meta.gid,
                to_uid: 0,
                to_gid: 0,
            });
        }
        let to = (meta.mode & 0o7000) | (meta.mode & 0o777 & !0o022) | 0o755;
        if to != meta.mode {
            edits.push(Edit::SetMode {
                path: path.to_string(),
                from: meta.mode,
                to,
            });
        }
        findings.push(
            Finding::new(
                &HOME_MODES,
                Severity::Warning,
                format!("user {first}"),
                format!(
                    "{path} is {why}: sshd's StrictModes stops at the home directory, so this does not refuse logins by itself, but any user could replace the home of {}",
                    users_hit.join(", ")
                ),
            )
            .symptom("none yet: a local user could take over the accounts below it")
            .evidence(Evidence::fact(format!("{path}: mode {:04o}, owner {}:{}", meta.mode, meta.uid, meta.gid)))
            .repair(Some(Repair {
                summary: format!("restore {path} to mode {to:04o} owned by root"),
                edits,
                manual: None,
            })),
        );
    }
    Ok(findings)
}

/// The proper ancestors of `p`, from `/` down.
fn ancestors(p: &GuestPath) -> Vec<GuestPath> {
    let mut out = Vec::new();
    let mut cur = p.parent();
    while let Some(d) = cur {
        cur = d.parent();
        out.push(d);
    }
    out.reverse();
    out
}

fn component_finding(survey: &Survey, users: &[User<'_>], c: &Component) -> Finding {
    let first = c.users.first().cloned().unwrap_or_default();
    let user = users.iter().find(|u| u.name() == first);
    let kind = if c.place == Place::KeyFile {
        "file"
    } else {
        "directory"
    };
    let path = &c.path;
    let mut problems = Vec::new();
    if c.denied {
        problems.push(if c.place == Place::KeyFile {
            format!(
                "{first} cannot read it (mode {:04o}, owner {}:{})",
                c.meta.mode, c.meta.uid, c.meta.gid
            )
        } else {
            format!(
                "{first} cannot enter it (mode {:04o}, owner {}:{})",
                c.meta.mode, c.meta.uid, c.meta.gid
            )
        });
    }
    if let Some(why) = &c.strict {
        problems.push(format!("StrictModes rejects it: {why}"));
    }
    let symptom = if c.denied {
        let key_path = if c.place == Place::KeyFile {
            path.to_string()
        } else {
            format!("{path}/…")
        };
        format!("\"Permission denied (publickey)\"; sshd logs \"Could not open user '{first}' authorized keys '{key_path}': Permission denied\"")
    } else {
        format!("\"Permission denied (publickey)\"; sshd logs \"Authentication refused: bad ownership or modes for {kind} {path}\"")
    };
    let others = if c.users.len() > 1 {
        format!(" (this also refuses {})", c.users[1..].join(", "))
    } else {
        String::new()
    };
    let cause = format!(
        "{} {path} on {first}'s key path: {}; sshd ignores the key file{others}",
        match c.place {
            Place::KeyFile => "the key file",
            Place::Home => "the home directory",
            Place::BelowHome => "the directory",
            Place::System => "the directory",
        },
        problems.join("; ")
    );
    // The repair: owner from the guest's passwd, modes per the catalogue.
    let mut edits = Vec::new();
    let mut manual_note = None;
    if c.place == Place::System && c.meta.mode & 0o1000 != 0 {
        manual_note = Some(format!("{path} is a sticky shared directory (like /tmp): move the key file out of it and point AuthorizedKeysFile elsewhere rather than changing its mode"));
    } else {
        let (to_uid, to_gid) = match (c.place, user) {
            (Place::System, _) => (0, 0),
            (_, Some(u)) => (u.entry.uid, u.entry.gid),
            (_, None) => (c.meta.uid, c.meta.gid),
        };
        let owner_bad = c.meta.uid != 0 && user.is_some_and(|u| c.meta.uid != u.entry.uid);
        let root_owned_denied = c.denied && c.meta.uid == 0 && c.place != Place::System;
        // A root-owned file or directory of the user's own that they cannot
        // open is fixed by giving it to them, not by opening it to all.
        let chown =
            (owner_bad || root_owned_denied) && (c.meta.uid, c.meta.gid) != (to_uid, to_gid);
        if chown {
            edits.push(Edit::SetOwner {
                path: path.to_string(),
                from_uid: c.meta.uid,
                from_gid: c.meta.gid,
                to_uid,
                to_gid,
            });
        }
        // After a chown to the user, "cannot read" is solved when the
        // owner bits allow it.
        let owner_can = if c.place == Place::KeyFile {
            0o400
        } else {
            0o100
        };
        let after = Component {
            denied: c.denied && !(chown && c.meta.mode & owner_can != 0),
            ..c.clone()
        };
        if let Some(to) = target_mode(&after) {
            edits.push(Edit::SetMode {
                path: path.to_string(),
                from: c.meta.mode,
                to,
            });
        }
        if edits.is_empty() {
            manual_note = Some(format!(
                "make {path} owned by root or {first} and not writable by group or others"
            ));
        }
    }
    let summary = edits
        .iter()
        .map(|e| match e {
            Edit::SetOwner { to_uid, to_gid, .. } => format!("chown {to_uid}:{to_gid} {path}"),
            Edit::SetMode { to, .. } => format!("chmod {to:04o} {path}"),
            _ => String::new(),
        })
        .collect::<Vec<_>>()
        .join(", ");
    let mut f = Finding::new(&HOME_MODES, Severity::Error, format!("user {first}"), cause)
        .symptom(symptom)
        .evidence(Evidence::fact(format!(
            "{path}: {:?}, mode {:04o}, owner {}:{}",
            c.meta.file_type, c.meta.mode, c.meta.uid, c.meta.gid
        )));
    if c.strict.is_some() {
        f = f.evidence(Evidence::fact(format!(
            "StrictModes rules of {}{}",
            survey.version_source,
            if survey.debian_modes() {
                " (Debian: group write is accepted only for a group whose one member is the user)"
            } else {
                ""
            }
        )));
    }
    f.repair(Some(Repair {
        summary: if summary.is_empty() {
            format!("fix the owner and mode of {path}")
        } else {
            summary
        },
        edits,
        manual: manual_note,
    }))
}

// ---------------------------------------------------------------------------
// ssh.authorized-keys

/// What one key line gives a login.
#[derive(Debug, Clone, PartialEq, Eq)]
enum Use {
    /// sshd accepts it (a cert-authority line admits certificates).
    Usable,
    /// It works from some clients only (`from=`).
    Restricted,
    /// It never works.
    Unusable,
}

/// A key file as read.
struct ReadKeys {
    path: String,
    data: Vec<u8>,
    doc: AuthorizedKeys,
}

fn dss_accepted(s: &Settings) -> bool {
    ["pubkeyacceptedalgorithms", "pubkeyacceptedkeytypes"]
        .iter()
        .filter_map(|k| s.get(k))
        .any(|v| v.args.iter().any(|a| a.contains("ssh-dss")))
}

/// The verdict for a key line, with the reasons it fails (if it does).
fn key_use(k: &KeyEntry, s: &Settings, survey: &Survey) -> (Use, Vec<(String, bool)>) {
    // (reason, whether commenting the line out is the repair)
    let mut why: Vec<(String, bool)> = Vec::new();
    let refusals = k.refusals(&PROBE_CLIENT, survey.now_unix, Some(survey.openssh()));
    let mut restricted = false;
    for r in &refusals {
        match r {
            Refusal::From { .. } | Refusal::CertAuthorityOnly => {}
            Refusal::Expired { expiry, .. } => why.push((
                format!("its expiry-time=\"{expiry}\" has passed (by the clock of the machine running this check; a time without Z is read as UTC)"),
                false,
            )),
            other => why.push((other.message(), true)),
        }
    }
    if let Some(patterns) = k
        .options
        .as_ref()
        .filter(|o| o.error.is_none())
        .and_then(|o| o.get(OptionName::From))
        .and_then(|f| f.value.as_deref())
    {
        match match_from(patterns, &PROBE_CLIENT) {
            FromVerdict::Invalid { pattern } => why.push((
                format!("from=\"{patterns}\" is invalid for sshd at {pattern:?}: every client is refused"),
                true,
            )),
            _ if patterns.split(',').all(|p| p.trim_start().starts_with('!')) => why.push((
                format!("from=\"{patterns}\" only excludes clients and admits none"),
                true,
            )),
            _ => restricted = true,
        }
    }
    if k.info.algorithm == KeyAlgorithm::Dss && !dss_accepted(s) {
        why.push((
            "it is an ssh-dss (DSA) key, refused by default since OpenSSH 7.0 and unsupported since 10.0".to_owned(),
            false,
        ));
    }
    let u = if !why.is_empty() {
        Use::Unusable
    } else if restricted {
        Use::Restricted
    } else {
        Use::Usable
    };
    (u, why)
}

fn comment_out_edit(path: &str, number: usize, line: &str, reason: &str) -> Edit {
    let cr = if line.ends_with('\r') { "\r" } else { "" };
    let reason: String = reason.chars().filter(|c| !c.is_control()).collect();
    Edit::EditLine {
        path: path.to_owned(),
        line: number,
        before: line.to_owned(),
        after: format!("# rescue-disk: {reason}{cr}\n#{line}"),
    }
}

pub(crate) fn authorized_keys(ctx: &Context<'_>) -> CheckResult {
    let survey = Survey::load(ctx)?;
    let Selection::Users(users, _) = select(ctx, &survey) else {
        return Ok(Vec::new());
    };
    let mut out = Vec::new();
    for user in &users {
        let Ok(files) = &user.key_files else {
            continue;
        };
        let mut read = Vec::new();
        for f in files {
            let KeyFileState::Present { meta, .. } = &f.state else {
                continue;
            };
            if !meta.is_file() {
                continue;
            }
            match ctx
                .guest
                .read_file(&GuestPath::new(&f.path), MAX_KEY_FILE_BYTES)
            {
                Ok(data) => {
                    let doc = AuthorizedKeys::parse(&data);
                    read.push(ReadKeys {
                        path: f.path.clone(),
                        data,
                        doc,
                    });
                }
                Err(e) => out.push(Finding::new(
                    &AUTHORIZED_KEYS,
                    Severity::Warning,
                    user.subject(),
                    format!("{} could not be read to check its keys: {e}", f.path),
                )),
            }
        }
        let any_usable = any_usable(&survey, user, &read);
        for r in &read {
            out.extend(file_findings(&survey, user, r, any_usable));
        }
    }
    Ok(out)
}

/// Does any key of the user work (from some client)? Decides severities.
fn any_usable(survey: &Survey, user: &User<'_>, read: &[ReadKeys]) -> bool {
    user.settings.authorized_keys_command().is_some()
        || read.iter().any(|r| {
            r.doc
                .keys()
                .any(|(_, k)| key_use(k, &user.settings, survey).0 != Use::Unusable)
        })
}

fn file_findings(survey: &Survey, user: &User<'_>, r: &ReadKeys, any_usable: bool) -> Vec<Finding> {
    let name = user.name();
    let path = r.path.as_str();
    let doc = &r.doc;
    let sev = if any_usable {
        Severity::Warning
    } else {
        Severity::Error
    };
    let lines: Vec<String> = r
        .data
        .split(|&b| b == b'\n')
        .map(|l| String::from_utf8_lossy(l).into_owned())
        .collect();
    let text = |n: usize| lines.get(n.wrapping_sub(1)).cloned().unwrap_or_default();
    let mut out = Vec::new();
    let mut explained = false;
    let finding =
        |sev: Severity, cause: String| Finding::new(&AUTHORIZED_KEYS, sev, user.subject(), cause);

    // A byte order mark: sshd does not see the first key.
    let bom_hides_key = doc.bom
        && matches!(
            AuthorizedKeys::parse(r.data.get(3..).unwrap_or(&[]))
                .lines
                .first()
                .map(|l| &l.kind),
            Some(KeyLineKind::Key(_))
        );
    if doc.bom {
        let line1 = text(1);
        let after = line1.strip_prefix('\u{feff}').unwrap_or(&line1).to_owned();
        let f = if bom_hides_key {
            explained = true;
            finding(
                sev,
                format!("{path} starts with a UTF-8 byte order mark: sshd reads it as part of line 1, so the key on line 1 is not a key for it and is skipped without a word"),
            )
        } else {
            finding(
                Severity::Info,
                format!("{path} starts with a UTF-8 byte order mark; line 1 is not a key, so nothing is lost, but editors and tools may trip on it"),
            )
        };
        out.push(
            f.evidence(Evidence::line(path, 1, shown(&line1)))
                .repair(Some(Repair {
                    summary: format!("strip the byte order mark from {path}"),
                    edits: vec![Edit::EditLine {
                        path: path.to_owned(),
                        line: 1,
                        before: line1.clone(),
                        after,
                    }],
                    manual: None,
                })),
        );
    }
    // Bare CR line ends: one long line for sshd.
    if doc.cr_only {
        let line1 = text(1);
        let after = line1.trim_end_matches('\r').replace('\r', "\n");
        let usable_now = !doc
            .usable_keys(&PROBE_CLIENT, survey.now_unix, Some(survey.openssh()))
            .is_empty();
        explained = true;
        out.push(
            finding(
                if usable_now { Severity::Warning } else { sev },
                format!("{path} separates lines with a bare carriage return (\\r): sshd reads the whole file as one line, so at most the first key works"),
            )
            .evidence(Evidence::line(path, 1, shown(&line1)))
            .repair(Some(Repair {
                summary: format!("turn the carriage returns of {path} into newlines"),
                edits: vec![Edit::EditLine { path: path.to_owned(), line: 1, before: line1, after }],
                manual: None,
            })),
        );
    }
    // CRLF: harmless for sshd (its base64 decoder skips the \r).
    let crlf: Vec<usize> = doc
        .lines
        .iter()
        .filter(|l| l.crlf)
        .map(|l| l.number)
        .collect();
    if !crlf.is_empty() && !doc.cr_only {
        let edits: Vec<Edit> = crlf
            .iter()
            .take(MAX_EDITS)
            .filter(|&&n| !(n == 1 && doc.bom))
            .map(|&n| {
                let before = text(n);
                Edit::EditLine {
                    path: path.to_owned(),
                    line: n,
                    after: before.trim_end_matches('\r').to_owned(),
                    before,
                }
            })
            .collect();
        out.push(
            finding(
                Severity::Info,
                format!("{} line(s) of {path} end with CRLF (Windows line ends): sshd still reads these keys (OpenSSH's base64 decoder skips the \\r), but other tools may not", crlf.len()),
            )
            .symptom("none for sshd; scripts that read the file may see a stray \\r")
            .evidence(Evidence::line(path, crlf[0], shown(&text(crlf[0]))))
            .repair(Some(Repair { summary: format!("strip the \\r line ends of {path}"), edits, manual: None })),
        );
    }
    // Wrapped keys.
    for w in doc.wrapped.iter().take(MAX_LINE_FINDINGS) {
        explained = true;
        let mut joined_doc = doc.clone();
        let joined = joined_doc
            .join_wrapped(w.first_line)
            .ok()
            .map(|span| String::from_utf8_lossy(span.slice(&joined_doc.render())).into_owned());
        let repair = joined.map(|joined| {
            let cr = if text(w.first_line).ends_with('\r') {
                "\r"
            } else {
                ""
            };
            let mut edits = vec![Edit::EditLine {
                path: path.to_owned(),
                line: w.first_line,
                before: text(w.first_line),
                after: format!("{joined}{cr}"),
            }];
            for n in w.first_line + 1..=w.last_line {
                let before = text(n);
                let cr = if before.ends_with('\r') { "\r" } else { "" };
                edits.push(Edit::EditLine {
                    path: path.to_owned(),
                    line: n,
                    before,
                    after: cr.to_owned(),
                });
            }
            Repair {
                summary: format!(
                    "join the key wrapped over lines {}-{} of {path} into one line",
                    w.first_line, w.last_line
                ),
                edits,
                manual: None,
            }
        });
        let mut f = finding(
            sev,
            format!("the key on lines {}-{} of {path} is wrapped over several lines (a paste that broke the line): sshd reads each line on its own and ignores the key", w.first_line, w.last_line),
        );
        for n in w.first_line..=w.last_line.min(w.first_line + 3) {
            f = f.evidence(Evidence::line(path, n, shown(&text(n))));
        }
        out.push(f.repair(repair));
    }
    // Line by line.
    let mut line_findings = 0usize;
    let mut omitted = 0usize;
    for l in &doc.lines {
        let wrapped_first = doc.wrapped.iter().any(|w| w.first_line == l.number);
        let reason: Option<(String, bool, Severity)> = match &l.kind {
            KeyLineKind::Blank | KeyLineKind::Comment => None,
            KeyLineKind::NotAKey(NotAKey::Continuation { .. }) => None,
            KeyLineKind::NotAKey(_) if wrapped_first => None,
            KeyLineKind::NotAKey(_) if l.number == 1 && bom_hides_key => None,
            KeyLineKind::NotAKey(NotAKey::UnterminatedQuote) => Some((
                "its options have an unterminated quote: sshd logs \"invalid key option string\" and skips the line".to_owned(),
                true,
                sev,
            )),
            KeyLineKind::NotAKey(NotAKey::Unreadable { error }) => Some((
                format!("sshd cannot read it as a key ({}) and skips it without a word in its log", error.message()),
                true,
                sev,
            )),
            KeyLineKind::Key(k) => {
                let (u, why) = key_use(k, &user.settings, survey);
                match u {
                    Use::Unusable => Some((
                        format!("sshd does not accept this key: {}", why.iter().map(|(w, _)| w.as_str()).collect::<Vec<_>>().join("; ")),
                        why.iter().all(|(_, c)| *c),
                        sev,
                    )),
                    Use::Restricted => {
                        let patterns = k
                            .options
                            .as_ref()
                            .and_then(|o| o.get(OptionName::From))
                            .and_then(|f| f.value.clone())
                            .unwrap_or_default();
                        Some((
                            format!("the key has from=\"{patterns}\": only clients whose address (or, with UseDNS yes, host name) matches {patterns} can use it; a login from anywhere else is refused with this key"),
                            false,
                            Severity::Warning,
                        ))
                    }
                    Use::Usable => None,
                }
            }
        };
        let Some((why, comment, sev_line)) = reason else {
            continue;
        };
        explained = true;
        if line_findings == MAX_LINE_FINDINGS {
            omitted += 1;
            continue;
        }
        line_findings += 1;
        let line_text = text(l.number);
        let symptom = if why.starts_with("the key has from=") {
            format!("\"Permission denied (publickey)\" from other clients; sshd logs \"Authentication tried for {name} with correct key but not from a permitted host\"")
        } else if why.contains("options") || why.contains("option") {
            format!("\"Permission denied (publickey)\"; with LogLevel DEBUG sshd logs \"{path}:{}: bad key options\"", l.number)
        } else {
            "the key is silently ignored (\"Permission denied (publickey)\")".to_owned()
        };
        let repair = if comment {
            let reason: String = why.chars().take(120).collect();
            Some(Repair {
                summary: format!("comment out line {} of {path}, keeping it with the reason", l.number),
                edits: vec![comment_out_edit(path, l.number, &line_text, &reason)],
                manual: Some("the key itself is lost: add the right public key again (`fix --add-key`, planned)".into()),
            })
        } else if why.contains("expiry-time") {
            manual(
                "renew the key",
                "remove or extend expiry-time= on the line if the key should still work",
            )
        } else if why.contains("ssh-dss") {
            manual(
                "use a newer key type",
                format!("give {name} an ed25519 or rsa key instead of the DSA key"),
            )
        } else {
            None
        };
        out.push(
            finding(sev_line, format!("line {} of {path}: {why}", l.number))
                .symptom(symptom)
                .evidence(Evidence::line(path, l.number, shown(&line_text)))
                .repair(repair),
        );
    }
    if omitted > 0 {
        out.push(finding(sev, format!("{omitted} more line(s) of {path} have problems; only the first {MAX_LINE_FINDINGS} are listed")));
    }
    // No usable key, and nothing above says why.
    let has_lines = doc
        .lines
        .iter()
        .any(|l| !matches!(l.kind, KeyLineKind::Blank | KeyLineKind::Comment));
    if !any_usable && has_lines && !explained {
        out.push(
            finding(
                Severity::Error,
                format!("{path} has no key sshd can use for {name}"),
            )
            .evidence(Evidence::fact(format!(
                "{} line(s), none a usable key",
                doc.lines.len()
            ))),
        );
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use rescue_guest::FileType;

    fn meta(file_type: FileType, mode: u32, uid: u32, gid: u32) -> Metadata {
        Metadata {
            file_type,
            mode,
            uid,
            gid,
            size_in_bytes: 0,
            modified_unix_seconds: None,
        }
    }

    const PASSWD: &[u8] = b"root:x:0:0:root:/root:/bin/bash\n\
alice:x:1001:1001::/home/alice:/bin/bash\n\
bob:x:1002:100::/home/bob:/bin/bash\n\
carol:x:1003:100::/home/carol:/bin/bash\n";
    const GROUP: &[u8] =
        b"root:x:0:\nusers:x:100:\nalice:x:1001:\nshared:x:2000:alice,bob\nsolo:x:2001:alice\n";

    #[test]
    fn strict_modes_follow_upstream_and_debian() {
        let p = Passwd::parse(PASSWD);
        let g = Group::parse(GROUP);
        let dir = |mode, uid, gid| meta(FileType::Directory, mode, uid, gid);
        // Owner must be root or the user.
        assert!(strict_mode_problem(&dir(0o755, 1001, 1001), 1001, false, &p, &g).is_none());
        assert!(strict_mode_problem(&dir(0o755, 0, 0), 1001, false, &p, &g).is_none());
        let other = strict_mode_problem(&dir(0o700, 1002, 100), 1001, false, &p, &g).unwrap();
        assert!(other.contains("uid 1002 (bob)"), "{other}");
        // World-writable never passes.
        assert!(strict_mode_problem(&dir(0o777, 1001, 1001), 1001, true, &p, &g).is_some());
        // Group-writable: upstream refuses; Debian accepts a private group.
        assert!(strict_mode_problem(&dir(0o775, 1001, 1001), 1001, false, &p, &g).is_some());
        assert!(strict_mode_problem(&dir(0o775, 1001, 1001), 1001, true, &p, &g).is_none());
        // ... but not a group that is someone else's primary group.
        assert!(strict_mode_problem(&dir(0o775, 1001, 100), 1001, true, &p, &g).is_some());
        // ... nor a supplementary group with other members.
        assert!(strict_mode_problem(&dir(0o775, 1001, 2000), 1001, true, &p, &g).is_some());
        // A group whose only listed member is the owner passes.
        assert!(strict_mode_problem(&dir(0o775, 1001, 2001), 1001, true, &p, &g).is_none());
        // An unknown gid does not.
        assert!(strict_mode_problem(&dir(0o775, 1001, 4242), 1001, true, &p, &g).is_some());
    }

    #[test]
    fn access_uses_owner_then_group_then_other_bits() {
        let f = meta(FileType::Regular, 0o604, 1001, 1001);
        assert!(may(&f, 1001, &[1001], 4));
        assert!(may(&f, 1002, &[100], 4));
        let g = meta(FileType::Regular, 0o640, 0, 100);
        assert!(may(&g, 1002, &[100], 4));
        assert!(!may(&g, 1001, &[1001], 4));
        // The owner class wins even when group or other would allow.
        let o = meta(FileType::Directory, 0o077, 1001, 1001);
        assert!(!may(&o, 1001, &[1001], 1));
        assert!(may(&o, 0, &[0], 1));
    }

    #[test]
    fn repair_modes_follow_the_catalogue() {
        let c = |place, mode, denied, strict: Option<&str>| Component {
            path: GuestPath::new("/x"),
            meta: meta(FileType::Directory, mode, 1001, 1001),
            place,
            denied,
            strict: strict.map(str::to_owned),
            users: vec!["alice".into()],
        };
        let m = Some("mode 0777 is writable by others");
        assert_eq!(
            target_mode(&c(Place::BelowHome, 0o777, false, m)),
            Some(0o700)
        );
        assert_eq!(target_mode(&c(Place::Home, 0o777, false, m)), Some(0o755));
        assert_eq!(target_mode(&c(Place::Home, 0o770, false, m)), Some(0o750));
        assert_eq!(target_mode(&c(Place::Home, 0o2775, false, m)), Some(0o2755));
        assert_eq!(
            target_mode(&c(Place::KeyFile, 0o666, false, m)),
            Some(0o600)
        );
        assert_eq!(target_mode(&c(Place::System, 0o777, false, m)), Some(0o755));
        assert_eq!(
            target_mode(&c(Place::System, 0o700, true, None)),
            Some(0o755)
        );
        // An owner problem alone changes no mode.
        assert_eq!(
            target_mode(&c(Place::KeyFile, 0o600, false, Some("owned by uid 7"))),
            None
        );
    }

    #[test]
    fn shadow_hashes_are_not_shown() {
        assert_eq!(
            redact_shadow_line("alice:$6$salt$hash:20058:0:99999:7:::"),
            "alice:<hash>:20058:0:99999:7:::"
        );
        assert_eq!(
            redact_shadow_line("bob:!$6$x$y:1::::::"),
            "bob:!<hash>:1::::::"
        );
        assert_eq!(
            redact_shadow_line("sshd:!!:19843::::::"),
            "sshd:!!:19843::::::"
        );
        assert_eq!(redact_shadow_line("root:*:1:"), "root:*:1:");
        assert_eq!(redact_shadow_line("weird"), "weird");
        assert_eq!(redact_shadow_line("é:!é"), "é:!é");
    }

    #[test]
    fn nologin_shells() {
        for s in [
            "/usr/sbin/nologin",
            "/sbin/nologin",
            "/bin/false",
            "/opt/x/bin/nologin",
        ] {
            assert!(refusing_shell(s), "{s}");
        }
        for s in ["/bin/bash", "/bin/sh", "/usr/bin/zsh", ""] {
            assert!(!refusing_shell(s), "{s}");
        }
    }

    #[test]
    fn lines_keep_their_carriage_returns() {
        let d = b"a\r\nb\n\xef\xbb\xbfc";
        assert_eq!(line_of(d, 1).as_deref(), Some("a\r"));
        assert_eq!(line_of(d, 3).as_deref(), Some("\u{feff}c"));
        assert_eq!(line_of(d, 4), None);
        assert_eq!(line_of(d, 0), None);
        assert_eq!(shown("a\r"), "a");
        assert_eq!(
            shown(&"x".repeat(1000)).chars().count(),
            MAX_EVIDENCE_CHARS + 1
        );
    }

    const KEY: &str =
        "ssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAAIPrT1jTT1o72gMf7ws8P9ifCw3WaatZaoPdZ5LCtvpZu alice@fixture";

    fn survey(config: &str) -> Survey {
        let target = Target::new(sshd::OpensshVersion::new(9, 2), Distro::Debian);
        let analysis = sshd::analyze(
            sshd::DEFAULT_CONFIG_PATH,
            config.as_bytes(),
            &target,
            None,
            Limits::default(),
        );
        Survey {
            passwd: Passwd::parse(PASSWD),
            passwd_data: PASSWD.to_vec(),
            shadow: Ok(None),
            group: Group::parse(GROUP),
            analysis,
            target,
            version_source: "OpenSSH 9.2 (test)".into(),
            single_port: Some(22),
            // 2025-06-15.
            now_unix: 1_750_000_000,
        }
    }

    /// ssh.authorized-keys' findings for alice's key file `data`.
    fn key_findings(data: &str) -> Vec<Finding> {
        let s = survey("UsePAM yes\n");
        let entry = s.passwd.get("alice").unwrap();
        let conn = s.connection(entry);
        let settings = sshd::effective(&s.analysis, &conn);
        let user = User {
            entry,
            conn,
            settings,
            key_files: Ok(Vec::new()),
        };
        let read = vec![ReadKeys {
            path: "/home/alice/.ssh/authorized_keys".into(),
            data: data.as_bytes().to_vec(),
            doc: AuthorizedKeys::parse(data.as_bytes()),
        }];
        let any = any_usable(&s, &user, &read);
        file_findings(&s, &user, &read[0], any)
    }

    fn severities(f: &[Finding]) -> Vec<Severity> {
        f.iter().map(|x| x.severity).collect()
    }

    #[test]
    fn key_lines_as_sshd_reads_them() {
        assert!(key_findings(&format!("{KEY}\n")).is_empty());
        assert!(key_findings("").is_empty());
        assert!(key_findings("# only a comment\n\n").is_empty());
        // A CA line admits certificates: not a problem, and it counts.
        assert!(key_findings(&format!("cert-authority {KEY}\n")).is_empty());
        // An expired key alone: a definite refusal; next to a good key, a warning.
        let f = key_findings(&format!("expiry-time=\"20200101\" {KEY}\n"));
        assert_eq!(severities(&f), vec![Severity::Error], "{f:#?}");
        assert!(
            f[0].cause.contains("expiry-time=\"20200101\""),
            "{}",
            f[0].cause
        );
        let f = key_findings(&format!("expiry-time=\"20200101\" {KEY}\n{KEY}\n"));
        assert_eq!(severities(&f), vec![Severity::Warning]);
        assert!(key_findings(&format!("expiry-time=\"20991231\" {KEY}\n")).is_empty());
        // Broken options: commented out with the reason.
        let f = key_findings(&format!("bogus {KEY}\n"));
        assert_eq!(severities(&f), vec![Severity::Error], "{f:#?}");
        assert!(f[0].cause.contains("unknown key option"), "{}", f[0].cause);
        let Some(Edit::EditLine { before, after, .. }) =
            f[0].repair.as_ref().unwrap().edits.first()
        else {
            panic!("{f:#?}")
        };
        assert_eq!(before, &format!("bogus {KEY}"));
        assert!(
            after.starts_with("# rescue-disk: ") && after.ends_with(&format!("\n#bogus {KEY}"))
        );
        // Unknown key type, garbage.
        let f = key_findings("ssh-ed2551 AAAAC3NzaC1lZDI1NTE5 x\n");
        assert_eq!(severities(&f), vec![Severity::Error]);
        assert!(f[0].cause.contains("unknown key type"), "{}", f[0].cause);
        assert_eq!(key_findings("hello world\n").len(), 1);
    }

    #[test]
    fn from_lists_are_warnings_unless_they_admit_nobody() {
        let f = key_findings(&format!("from=\"10.0.0.0/8\" {KEY}\n"));
        assert_eq!(severities(&f), vec![Severity::Warning]);
        assert!(f[0].cause.contains("10.0.0.0/8"));
        assert!(f[0].repair.is_none());
        let f = key_findings(&format!("from=\"!10.0.0.0/8\" {KEY}\n"));
        assert_eq!(severities(&f), vec![Severity::Error], "{f:#?}");
        assert!(f[0].cause.contains("admits none"));
        let f = key_findings(&format!("from=\"10.0.0.0/33\" {KEY}\n"));
        assert_eq!(severities(&f), vec![Severity::Error], "{f:#?}");
        assert!(f[0].cause.contains("invalid"), "{}", f[0].cause);
    }

    #[test]
    fn line_ends_crlf_is_harmless_bare_cr_is_not() {
        let f = key_findings(&format!("{KEY}\r\n# c\r\n"));
        assert_eq!(severities(&f), vec![Severity::Info], "{f:#?}");
        let edits = &f[0].repair.as_ref().unwrap().edits;
        let refs: Vec<(usize, &str, &str)> = edits
            .iter()
            .map(|e| match e {
                Edit::EditLine {
                    line,
                    before,
                    after,
                    ..
                } => (*line, before.as_str(), after.as_str()),
                _ => unreachable!(),
            })
            .collect();
        let fixed =
            crate::edit::apply_line_edits(format!("{KEY}\r\n# c\r\n").as_bytes(), &refs).unwrap();
        assert_eq!(fixed, format!("{KEY}\n# c\n").as_bytes());
        // Bare CR: one line for sshd; the first key still works.
        let f = key_findings(&format!("{KEY}\r{KEY}\r"));
        assert_eq!(severities(&f), vec![Severity::Warning], "{f:#?}");
    }

    #[test]
    fn line_edits_of_the_repairs_apply() {
        // The comment-out and CRLF edits must be accepted by the edit engine.
        let data = b"ssh-ed25519 AAAA bad\r\nx\n";
        let e = comment_out_edit("/k", 1, "ssh-ed25519 AAAA bad\r", "why");
        let Edit::EditLine {
            line,
            before,
            after,
            ..
        } = &e
        else {
            unreachable!()
        };
        let out = crate::edit::apply_line_edits(data, &[(*line, before, after)]).unwrap();
        assert_eq!(out, b"# rescue-disk: why\r\n#ssh-ed25519 AAAA bad\r\nx\n");
    }
}
