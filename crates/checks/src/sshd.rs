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
    if let Ok(status) = ctx.guest.read_file(
        &GuestPath::new("/var/lib/dpkg/status"),
        MAX_CONFIG_FILE_BYTES,
    ) {
        let status = String::from_utf8_lossy(&status);
        for stanza in status.split("\n\n") {
            if !stanza
                .lines()
                .any(|l| l.trim_end() == "Package: openssh-server")
            {
                continue;
            }
            if let Some(v) = stanza
                .lines()
                .find_map(|l| l.strip_prefix("Version:"))
                .map(str::trim)
            {
                if let Some(version) = OpensshVersion::from_package_version(v) {
                    return (
                        Target::new(version, distro),
                        format!("openssh-server {v} (dpkg)"),
                    );
                }
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
struct GuestIncludes<'a, 'b>(&'a Context<'b>);

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
