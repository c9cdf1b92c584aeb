//! sshd checks that need only its configuration: `sshd.config-syntax`.
//!
//! The configuration is analysed the way the guest's own sshd would parse
//! it — for the OpenSSH release installed in the guest (read from the dpkg
//! database or from the sshd binary's version string), with its
//! distribution's patches — through `rescue_config::sshd`, whose verdicts
//! are tested against the real `sshd -t`.
//!
//! Must never: use the host's sshd or its version; follow an Include outside
//! the guest view.

use rescue_config::os_release::Family;
use rescue_config::sshd::{
    self, Distro, IncludeSource, Limits, OpensshVersion, SshdConfig, Status, Target,
};
use rescue_guest::{GuestPath, MAX_CONFIG_FILE_BYTES, MAX_DIR_ENTRIES};
use rescue_io::ErrorKind;

use crate::edit::{Edit, Repair};
use crate::guest_db;
use crate::{Area, CheckFailure, CheckInfo, CheckResult, Context, Evidence, Finding, Severity};

pub(crate) const CONFIG_SYNTAX: CheckInfo = CheckInfo {
    id: "sshd.config-syntax",
    area: Area::Ssh,
    symptom: "\"Connection refused\": sshd does not start",
    looks_at: "sshd_config and its Includes, as the guest's OpenSSH release parses them",
};

/// Largest sshd binary searched for its version string.
const MAX_SSHD_BINARY_BYTES: u64 = 16 << 20;

/// The guest's OpenSSH release and where that came from.
pub(crate) fn guest_openssh(ctx: &Context<'_>) -> (Target, String) {
    let distro = match ctx.report.os.as_ref().map(|o| o.family) {
        Some(Family::Debian) => Distro::Debian,
        Some(Family::Rhel) => Distro::Rhel,
        _ => Distro::Upstream,
    };
    // dpkg: the openssh-server stanza's Version.
    if let Ok(Some(status)) = guest_db::dpkg_status(ctx) {
        let version = guest_db::package(&status, "openssh-server").and_then(|p| p.field("Version"));
        if let Some(v) = version {
            if let Some(version) = OpensshVersion::from_package_version(v) {
                return (
                    Target::new(version, distro),
                    format!("openssh-server {v} (dpkg)"),
                );
            }
        }
    }
    // The binary carries "OpenSSH_9.2p1" or similar.
    for path in ["/usr/sbin/sshd", "/usr/libexec/openssh/sshd"] {
        let Ok(bin) = ctx
            .guest
            .read_file(&GuestPath::new(path), MAX_SSHD_BINARY_BYTES)
        else {
            continue;
        };
        let needle = b"OpenSSH_";
        if let Some(i) = bin.windows(needle.len()).position(|w| w == needle) {
            let tail: String = bin[i..]
                .iter()
                .take(32)
                .take_while(|b| b.is_ascii_graphic())
                .map(|&b| b as char)
                .collect();
            if let Some(version) = OpensshVersion::parse(&tail) {
                return (
                    Target::new(version, distro),
                    format!("{tail} (from {path})"),
                );
            }
        }
    }
    (
        Target::new(sshd::NEWEST, distro),
        "unknown OpenSSH release: the newest known rules are used".to_owned(),
    )
}

/// sshd's Include resolution inside the guest.
pub(crate) struct GuestIncludes<'a, 'b>(pub(crate) &'a Context<'b>);

impl IncludeSource for GuestIncludes<'_, '_> {
    fn read(&self, path: &str) -> Result<Vec<u8>, String> {
        self.0
            .guest
            .read_file(&GuestPath::new(path), MAX_CONFIG_FILE_BYTES)
            .map_err(|e| match e.kind() {
                ErrorKind::NotFound => "No such file or directory".to_owned(),
                _ => e.to_string(),
            })
    }

    fn glob(&self, pattern: &str) -> Vec<String> {
        let list = |dir: &str| {
            self.0
                .guest
                .read_dir(&GuestPath::new(dir), MAX_DIR_ENTRIES)
                .ok()
                .map(|entries| entries.iter().map(|e| e.name_lossy()).collect())
        };
        let exists = |p: &str| self.0.guest.exists(&GuestPath::new(p)).unwrap_or(false);
        sshd::glob_with(pattern, &list, &exists)
    }
}

/// The text of line `number` before and after an edit that returned the
/// whole new document (an edit may turn one line into two).
fn line_change(old: &[u8], new: &[u8], number: usize) -> Option<(String, String)> {
    let old_text = String::from_utf8_lossy(old);
    let new_text = String::from_utf8_lossy(new);
    let old_lines: Vec<&str> = old_text.split('\n').collect();
    let new_lines: Vec<&str> = new_text.split('\n').collect();
    let extra = new_lines.len().checked_sub(old_lines.len())?;
    let i = number.checked_sub(1)?;
    let before = old_lines.get(i)?.to_string();
    let after = new_lines.get(i..=i + extra)?.join("\n");
    Some((before, after))
}

pub(crate) fn config_syntax(ctx: &Context<'_>) -> CheckResult {
    let main = sshd::DEFAULT_CONFIG_PATH;
    let data = match ctx
        .guest
        .read_file(&GuestPath::new(main), MAX_CONFIG_FILE_BYTES)
    {
        Ok(d) => d,
        Err(e) if e.kind() == ErrorKind::NotFound => {
            return Err(CheckFailure::NotApplicable(format!(
                "{main} does not exist (is openssh-server installed?)"
            )));
        }
        Err(e) => return Err(e.into()),
    };
    let (target, version_source) = guest_openssh(ctx);
    let includes = GuestIncludes(ctx);
    let analysis = sshd::analyze(main, &data, &target, Some(&includes), Limits::default());
    let mut out = Vec::new();
    if !analysis.fails() {
        return Ok(out);
    }
    let output = analysis.sshd_output();
    for v in analysis
        .problems()
        .filter(|v| matches!(v.status, Status::Error | Status::Fatal))
    {
        let file_data = if v.file == main {
            Some(data.clone())
        } else {
            ctx.guest
                .read_file(&GuestPath::new(&v.file), MAX_CONFIG_FILE_BYTES)
                .ok()
        };
        let mut f = Finding::new(
            &CONFIG_SYNTAX,
            Severity::Error,
            format!("{} line {}", v.file, v.physical_line),
            format!(
                "sshd ({version_source}) refuses this line: {}",
                v.messages
                    .last()
                    .cloned()
                    .unwrap_or_else(|| format!("{} is not accepted", v.keyword))
            ),
        )
        .symptom("\"Connection refused\": sshd exits at start-up")
        .evidence(Evidence::File {
            path: v.file.clone(),
            line: Some(v.physical_line),
            text: file_data
                .as_deref()
                .and_then(|d| {
                    String::from_utf8_lossy(d)
                        .lines()
                        .nth(v.physical_line.saturating_sub(1))
                        .map(str::to_owned)
                })
                .unwrap_or_default(),
        });
        for m in &v.messages {
            f = f.evidence(Evidence::fact(format!("sshd -t: {m}")));
        }
        let repair = file_data.and_then(|d| {
            let doc = SshdConfig::parse(&d);
            let (summary, new) = match &v.suggestion {
                Some(s) => (
                    format!("correct the keyword {} to {s}", v.keyword),
                    doc.replace_keyword(v.physical_line, s).ok()?,
                ),
                None => (
                    format!("comment out line {} of {}", v.physical_line, v.file),
                    doc.comment_out(
                        v.physical_line,
                        &format!(
                            "sshd refused it: {}",
                            v.messages.last().cloned().unwrap_or_default()
                        ),
                    )
                    .ok()?,
                ),
            };
            let (before, after) = line_change(&d, &new, v.physical_line)?;
            Some(Repair {
                summary,
                edits: vec![Edit::EditLine {
                    path: v.file.clone(),
                    line: v.physical_line,
                    before,
                    after,
                }],
                manual: None,
            })
        });
        out.push(f.repair(repair));
    }
    if out.is_empty() {
        // sshd fails for a reason not tied to one line (e.g. an include that
        // cannot be read): report what it would print.
        let mut f = Finding::new(
            &CONFIG_SYNTAX,
            Severity::Error,
            main.to_owned(),
            format!("sshd ({version_source}) would not start with this configuration"),
        );
        for m in output {
            f = f.evidence(Evidence::fact(format!("sshd -t: {m}")));
        }
        out.push(f);
    }
    Ok(out)
}

pub(crate) const SERVICE: CheckInfo = CheckInfo {
    id: "sshd.service",
    area: Area::Ssh,
    symptom: "\"Connection refused\": nothing listens on the SSH port",
    looks_at: "the ssh/sshd systemd unit: enabled, masked, socket activation, the sshd binary",
};

pub(crate) const LISTEN: CheckInfo = CheckInfo {
    id: "sshd.listen",
    area: Area::Ssh,
    symptom: "\"Connection timed out\" or \"Connection refused\" on port 22",
    looks_at: "Port and ListenAddress in the effective sshd configuration",
};

/// The analysed configuration, when there is one that sshd accepts.
pub(crate) fn analysis(ctx: &Context<'_>) -> Result<Option<sshd::Analysis>, CheckFailure> {
    let main = sshd::DEFAULT_CONFIG_PATH;
    let data = match ctx
        .guest
        .read_file(&GuestPath::new(main), MAX_CONFIG_FILE_BYTES)
    {
        Ok(d) => d,
        Err(e) if e.kind() == ErrorKind::NotFound => return Ok(None),
        Err(e) => return Err(e.into()),
    };
    let (target, _) = guest_openssh(ctx);
    let a = sshd::analyze(
        main,
        &data,
        &target,
        Some(&GuestIncludes(ctx)),
        Limits::default(),
    );
    Ok((!a.fails()).then_some(a))
}

fn lstat(ctx: &Context<'_>, path: &str) -> Option<rescue_guest::Metadata> {
    ctx.guest.symlink_metadata(&GuestPath::new(path)).ok()
}

/// `ListenStream=` ports of a socket unit and its drop-ins (the last
/// assignment list wins; an empty assignment resets it).
fn socket_ports(ctx: &Context<'_>, unit_path: &str, unit: &str) -> Vec<String> {
    let mut files = vec![unit_path.to_owned()];
    let dropins = format!("/etc/systemd/system/{unit}.d");
    if let Ok(entries) = ctx
        .guest
        .read_dir(&GuestPath::new(&dropins), MAX_DIR_ENTRIES)
    {
        let mut names: Vec<String> = entries
            .iter()
            .map(|e| e.name_lossy())
            .filter(|n| n.ends_with(".conf"))
            .collect();
        names.sort();
        files.extend(names.into_iter().map(|n| format!("{dropins}/{n}")));
    }
    let mut ports = Vec::new();
    for f in files {
        let Ok(data) = ctx
            .guest
            .read_file(&GuestPath::new(&f), MAX_CONFIG_FILE_BYTES)
        else {
            continue;
        };
        for line in String::from_utf8_lossy(&data).lines() {
            if let Some(v) = line.trim().strip_prefix("ListenStream=") {
                let v = v.trim();
                if v.is_empty() {
                    ports.clear();
                } else {
                    // "22", "0.0.0.0:22", "[::]:2222"
                    ports.push(v.rsplit(':').next().unwrap_or(v).to_owned());
                }
            }
        }
    }
    ports
}

pub(crate) fn service(ctx: &Context<'_>) -> CheckResult {
    if lstat(ctx, "/usr/lib/systemd/systemd").is_none()
        && lstat(ctx, "/lib/systemd/systemd").is_none()
    {
        return Err(CheckFailure::NotApplicable(
            "the guest does not boot with systemd".into(),
        ));
    }
    let mut out = Vec::new();
    let binary = ["/usr/sbin/sshd", "/usr/libexec/openssh/sshd"]
        .into_iter()
        .find(|p| {
            ctx.guest
                .metadata(&GuestPath::new(*p))
                .is_ok_and(|m| m.is_file())
        });
    let units: Vec<(&str, String)> = ["ssh.service", "sshd.service"]
        .iter()
        .flat_map(|u| {
            guest_db::UNIT_DIRS
                .iter()
                .map(move |d| (*u, format!("{d}/{u}")))
        })
        .filter(|(_, p)| lstat(ctx, p).is_some())
        .collect();
    if units.is_empty() {
        if binary.is_some() {
            out.push(Finding::new(
                &SERVICE,
                Severity::Error,
                "sshd unit",
                "sshd is installed but no ssh.service or sshd.service unit exists",
            ));
        }
        return Ok(out);
    }
    if binary.is_none() {
        out.push(
            Finding::new(&SERVICE, Severity::Error, "/usr/sbin/sshd", "the sshd program is missing: the unit cannot start it")
                .symptom("\"Connection refused\"; ssh.service fails with \"Failed to execute /usr/sbin/sshd: No such file or directory\"")
                .repair(Some(Repair {
                    summary: "restore sshd".into(),
                    edits: Vec::new(),
                    manual: Some("reinstall openssh-server (see system.missing-files)".into()),
                })),
        );
    }
    // Masked: /etc/systemd/system/<unit> -> /dev/null.
    for u in ["ssh.service", "sshd.service", "ssh.socket"] {
        let p = format!("/etc/systemd/system/{u}");
        if lstat(ctx, &p).is_some_and(|m| m.is_symlink())
            && ctx
                .guest
                .read_link(&GuestPath::new(&p))
                .is_ok_and(|t| t == b"/dev/null")
        {
            out.push(
                Finding::new(
                    &SERVICE,
                    Severity::Error,
                    u.to_owned(),
                    format!("{u} is masked (linked to /dev/null): systemd will never start it"),
                )
                .evidence(Evidence::File {
                    path: p.clone(),
                    line: None,
                    text: "-> /dev/null".into(),
                })
                .repair(Some(Repair {
                    summary: format!("unmask {u}"),
                    edits: vec![Edit::Unlink { path: p }],
                    manual: None,
                })),
            );
        }
    }
    // Enabled: a *.wants link to the service, or socket activation.
    let wants = |unit: &str| guest_db::wants_link(ctx, unit);
    let service_enabled = wants("ssh.service").or_else(|| wants("sshd.service"));
    let socket_enabled = wants("ssh.socket").or_else(|| wants("sshd.socket"));
    if service_enabled.is_none() && socket_enabled.is_none() {
        let (name, unit_path) = units
            .iter()
            .find(|(_, p)| !p.starts_with("/etc/"))
            .cloned()
            .unwrap_or_else(|| units[0].clone());
        let link = format!("/etc/systemd/system/multi-user.target.wants/{name}");
        out.push(
            Finding::new(
                &SERVICE,
                Severity::Error,
                name.to_owned(),
                format!("{name} is not enabled: sshd does not start at boot"),
            )
            .evidence(Evidence::fact(format!(
                "no /etc/systemd/system/*.wants/ link to {name} or ssh.socket"
            )))
            .repair(Some(Repair {
                summary: format!("enable {name} (what `systemctl enable` does)"),
                edits: vec![Edit::CreateSymlink {
                    path: link,
                    target: unit_path,
                }],
                manual: None,
            })),
        );
    }
    // Socket activation listens where the socket unit says, not sshd's Port.
    if let Some(link) = socket_enabled {
        let unit = link.rsplit('/').next().unwrap_or("ssh.socket").to_owned();
        let unit_file = guest_db::UNIT_DIRS
            .iter()
            .map(|d| format!("{d}/{unit}"))
            .find(|p| lstat(ctx, p).is_some());
        if let (Some(unit_file), Some(a)) = (unit_file, analysis(ctx)?) {
            let sock = socket_ports(ctx, &unit_file, &unit);
            let ports: Vec<String> = sshd::global_settings(&a)
                .ports()
                .iter()
                .map(|p| p.to_string())
                .collect();
            if !sock.is_empty() && sock != ports {
                out.push(
                    Finding::new(
                        &SERVICE,
                        Severity::Warning,
                        unit.clone(),
                        format!(
                            "{unit} listens on port {} while sshd_config says Port {}: with socket activation the socket's port is the one that counts",
                            sock.join(","),
                            ports.join(",")
                        ),
                    )
                    .evidence(Evidence::File { path: unit_file, line: None, text: format!("ListenStream={}", sock.join(",")) }),
                );
            }
        }
    }
    Ok(out)
}

pub(crate) fn listen(ctx: &Context<'_>) -> CheckResult {
    let Some(a) = analysis(ctx)? else {
        return Ok(Vec::new());
    };
    let settings = sshd::global_settings(&a);
    let mut out = Vec::new();
    let ports = settings.ports();
    if !ports.is_empty() && !ports.contains(&22) {
        let list: Vec<String> = ports.iter().map(|p| p.to_string()).collect();
        out.push(
            Finding::new(
                &LISTEN,
                Severity::Warning,
                "Port",
                format!("sshd listens on port {} only: clients and the cloud firewall must use that port, not 22", list.join(", ")),
            )
            .symptom("\"Connection refused\" or \"Connection timed out\" on port 22")
            .repair(Some(Repair {
                summary: "allow the port in the cloud firewall and connect with ssh -p, or listen on 22 again".into(),
                edits: Vec::new(),
                manual: Some("fix --reset-listen (planned) restores Port 22".into()),
            })),
        );
    }
    let unusual: Vec<String> = settings
        .listen_addresses()
        .into_iter()
        .filter(|a| {
            let host = a
                .trim_start_matches('[')
                .split(&[']', ' '][..])
                .next()
                .unwrap_or(a);
            let host = if host.matches(':').count() == 1 {
                host.split(':').next().unwrap_or(host)
            } else {
                host
            };
            !matches!(
                host,
                "0.0.0.0" | "::" | "*" | "" | "localhost" | "127.0.0.1" | "::1"
            )
        })
        .collect();
    if !unusual.is_empty() {
        out.push(
            Finding::new(
                &LISTEN,
                Severity::Warning,
                "ListenAddress",
                format!(
                    "sshd listens only on {}: if the VM does not get exactly that address (a new private IP after a move or re-create), sshd cannot bind and refuses every connection",
                    unusual.join(", ")
                ),
            )
            .repair(Some(Repair {
                summary: "listen on all addresses".into(),
                edits: Vec::new(),
                manual: Some("fix --reset-listen (planned) comments out ListenAddress".into()),
            })),
        );
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::line_change;

    #[test]
    fn a_line_that_becomes_two() {
        let (b, a) = line_change(b"a\nPort x\nc\n", b"a\n# why\n#Port x\nc\n", 2).unwrap();
        assert_eq!(b, "Port x");
        assert_eq!(a, "# why\n#Port x");
    }
}
