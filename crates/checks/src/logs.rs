//! `evidence.logs`: the guest's own words. Scans the text logs the guest
//! wrote (`/var/log/auth.log`, `secure`, `messages`, `syslog`, `kern.log`,
//! `boot.log`) for the messages daemons and the kernel print when the
//! failures of the catalogue happen, attaches the newest matching lines to
//! the findings they support, and reports signatures no check explained.
//!
//! Must never: read a log without the size cap of the guest view; treat a
//! log line as anything but evidence (logs are hostile text).

use rescue_guest::{GuestPath, MAX_CONFIG_FILE_BYTES};
use rescue_io::ErrorKind;

use crate::{Area, CheckInfo, Context, Evidence, Finding, Severity};

pub(crate) const LOGS: CheckInfo = CheckInfo {
    id: "evidence.logs",
    area: Area::Ssh,
    symptom: "(explains the other findings)",
    looks_at: "/var/log/auth.log, secure, messages, syslog, kern.log, boot.log",
};

const LOG_FILES: &[&str] = &[
    "/var/log/auth.log",
    "/var/log/secure",
    "/var/log/messages",
    "/var/log/syslog",
    "/var/log/kern.log",
    "/var/log/boot.log",
];

/// Matching lines attached to one finding.
const MAX_PER_FINDING: usize = 3;

/// A message and the checks it supports.
struct Signature {
    text: &'static str,
    checks: &'static [&'static str],
    meaning: &'static str,
}

const SIGNATURES: &[Signature] = &[
    Signature {
        text: "Timed out waiting for device",
        checks: &["fstab.unstable-device", "fstab.missing-source"],
        meaning: "a device named in fstab never appeared",
    },
    Signature {
        text: "Dependency failed for",
        checks: &[
            "fstab.unstable-device",
            "fstab.missing-source",
            "fstab.syntax",
        ],
        meaning: "a mount failed and what needed it was not started",
    },
    Signature {
        text: "emergency mode",
        checks: &[
            "fstab.unstable-device",
            "fstab.missing-source",
            "fstab.syntax",
            "fs.errors",
        ],
        meaning: "the boot stopped in emergency mode",
    },
    Signature {
        text: "Failed to mount",
        checks: &["fstab.syntax", "fstab.missing-source", "fstab.network"],
        meaning: "a filesystem failed to mount",
    },
    Signature {
        text: "VFS: Unable to mount root fs",
        checks: &[
            "boot.initramfs-missing",
            "boot.kernel-incomplete",
            "boot.cmdline",
        ],
        meaning: "the kernel could not mount the root filesystem",
    },
    Signature {
        text: "Kernel panic",
        checks: &["boot.kernel-incomplete", "boot.initramfs-missing"],
        meaning: "the kernel panicked",
    },
    Signature {
        text: "Gave up waiting for root",
        checks: &["boot.cmdline"],
        meaning: "the initramfs did not find the root device",
    },
    Signature {
        text: "EXT4-fs error",
        checks: &["fs.errors"],
        meaning: "the kernel found filesystem corruption",
    },
    Signature {
        text: "UNEXPECTED INCONSISTENCY",
        checks: &["fs.errors"],
        meaning: "fsck stopped the boot",
    },
    Signature {
        text: "Remounting filesystem read-only",
        checks: &["fs.errors"],
        meaning: "the kernel made a filesystem read-only after an error",
    },
    Signature {
        text: "No space left on device",
        checks: &["boot.disk-full"],
        meaning: "a write failed for lack of space",
    },
    Signature {
        text: "Bad configuration option",
        checks: &["sshd.config-syntax"],
        meaning: "sshd refused its configuration",
    },
    Signature {
        text: "Bad yes/no argument",
        checks: &["sshd.config-syntax"],
        meaning: "sshd refused its configuration",
    },
    Signature {
        text: "terminating, 1 bad configuration options",
        checks: &["sshd.config-syntax"],
        meaning: "sshd refused its configuration",
    },
    Signature {
        text: "no hostkeys available",
        checks: &["sshd.host-keys"],
        meaning: "sshd has no usable host key",
    },
    Signature {
        text: "Could not load host key",
        checks: &["sshd.host-keys"],
        meaning: "a host key could not be loaded",
    },
    Signature {
        text: "Unable to load host key",
        checks: &["sshd.host-keys"],
        meaning: "a host key could not be loaded",
    },
    Signature {
        text: "avc:  denied",
        checks: &["ssh.selinux-label"],
        meaning: "SELinux denied an access",
    },
    Signature {
        text: "UNPROTECTED PRIVATE KEY FILE",
        checks: &["sshd.host-keys"],
        meaning: "a host key is readable by others",
    },
    Signature {
        text: "Missing privilege separation directory",
        checks: &["sshd.privsep"],
        meaning: "sshd's privilege separation directory is missing",
    },
    Signature {
        text: "must be owned by root and not group or world-writable",
        checks: &["sshd.privsep"],
        meaning: "sshd's privilege separation directory has wrong modes",
    },
    Signature {
        text: "Privilege separation user sshd does not exist",
        checks: &["sshd.privsep"],
        meaning: "the sshd user is missing",
    },
    Signature {
        text: "Authentication refused: bad ownership or modes",
        checks: &["ssh.home-modes"],
        meaning: "StrictModes rejected a home, .ssh or key file",
    },
    Signature {
        text: "Bad options in",
        checks: &["ssh.authorized-keys"],
        meaning: "an authorized_keys line has broken options",
    },
    Signature {
        text: "not allowed because",
        checks: &["ssh.user-access"],
        meaning: "sshd's Allow/Deny rules or the account state refused a user",
    },
    Signature {
        text: "User not known to the underlying authentication module",
        checks: &["ssh.user-access"],
        meaning: "a login for an account that does not exist",
    },
    Signature {
        text: "Failed publickey for",
        checks: &["ssh.user-access", "ssh.authorized-keys", "ssh.home-modes"],
        meaning: "a key was offered and refused",
    },
    Signature {
        text: "refused connect from",
        checks: &["net.tcp-wrappers"],
        meaning: "TCP wrappers (hosts.deny) refused a client",
    },
    Signature {
        text: "Bind to port",
        checks: &["sshd.listen"],
        meaning: "sshd could not listen",
    },
];

/// One matching log line.
struct Hit {
    path: &'static str,
    line: usize,
    timestamp: Option<String>,
    text: String,
    signature: usize,
}

/// The timestamp at the start of a syslog line: RFC 3339
/// (`2024-12-01T00:00:00.123+00:00`) or BSD (`Dec  1 00:00:00`).
fn timestamp(line: &str) -> Option<String> {
    let first = line.split_whitespace().next()?;
    if first.len() >= 19 && first.as_bytes().get(4) == Some(&b'-') && first.contains('T') {
        return Some(first.to_owned());
    }
    let b = line.as_bytes();
    let month_ok = b.len() >= 15 && b[..3].iter().all(u8::is_ascii_alphabetic) && b[3] == b' ';
    (month_ok && b[9] == b':' && b[12] == b':')
        .then(|| line.get(..15).map(str::to_owned))
        .flatten()
}

/// Longest log line kept as evidence.
const MAX_LINE_CHARS: usize = 400;

fn scan(ctx: &Context<'_>, skipped: &mut Vec<String>) -> Vec<Hit> {
    let mut hits = Vec::new();
    for path in LOG_FILES {
        let data = match ctx
            .guest
            .read_file(&GuestPath::new(*path), MAX_CONFIG_FILE_BYTES)
        {
            Ok(d) => d,
            Err(e) if e.kind() == ErrorKind::NotFound => continue,
            Err(e) => {
                skipped.push(format!("{path}: {e}"));
                continue;
            }
        };
        for (i, line) in String::from_utf8_lossy(&data).lines().enumerate() {
            if let Some(sig) = SIGNATURES.iter().position(|s| line.contains(s.text)) {
                let text: String = line
                    .chars()
                    .filter(|c| !c.is_control())
                    .take(MAX_LINE_CHARS)
                    .collect();
                hits.push(Hit {
                    path,
                    line: i + 1,
                    timestamp: timestamp(line),
                    text,
                    signature: sig,
                });
            }
        }
    }
    hits
}

fn evidence(h: &Hit) -> Evidence {
    Evidence::Log {
        path: h.path.to_owned(),
        line: h.line,
        timestamp: h.timestamp.clone(),
        text: h.text.clone(),
    }
}

/// Attaches log evidence to `findings` and returns findings for signatures
/// no other finding explains.
pub(crate) fn run(ctx: &Context<'_>, findings: &mut [Finding]) -> Vec<Finding> {
    let mut skipped = Vec::new();
    let hits = scan(ctx, &mut skipped);
    let mut used = vec![false; hits.len()];
    for f in findings.iter_mut() {
        // Newest first: the end of each file is the most recent.
        let mut attached = 0;
        for (i, h) in hits.iter().enumerate().rev() {
            if attached == MAX_PER_FINDING {
                break;
            }
            if SIGNATURES[h.signature].checks.contains(&f.check.as_str()) {
                f.evidence.push(evidence(h));
                used[i] = true;
                attached += 1;
            }
        }
    }
    let mut out = Vec::new();
    for (sig_index, sig) in SIGNATURES.iter().enumerate() {
        let unexplained: Vec<&Hit> = hits
            .iter()
            .zip(&used)
            .filter(|(h, u)| h.signature == sig_index && !**u)
            .map(|(h, _)| h)
            .collect();
        let Some(newest) = unexplained.last() else {
            continue;
        };
        let mut f = Finding::new(
            &LOGS,
            Severity::Info,
            format!("{} (line {})", newest.path, newest.line),
            format!(
                "the guest logged \"{}\" {} time(s): {}; no check on the disk explains it now (it may be fixed already, or come from outside the disk)",
                sig.text,
                unexplained.len(),
                sig.meaning
            ),
        );
        for h in unexplained.iter().rev().take(MAX_PER_FINDING) {
            f = f.evidence(evidence(h));
        }
        out.push(f);
    }
    for s in skipped {
        out.push(Finding::new(
            &LOGS,
            Severity::Info,
            "logs",
            format!("a log could not be read: {s}"),
        ));
    }
    out
}

#[cfg(test)]
mod tests {
    use super::timestamp;

    #[test]
    fn timestamps_of_both_syslog_formats() {
        assert_eq!(
            timestamp("2024-12-01T10:00:00.123456+00:00 host sshd[1]: x").as_deref(),
            Some("2024-12-01T10:00:00.123456+00:00")
        );
        assert_eq!(
            timestamp("Dec  1 10:00:00 host sshd[1]: x").as_deref(),
            Some("Dec  1 10:00:00")
        );
        assert_eq!(timestamp("garbage"), None);
        assert_eq!(timestamp("ééé"), None);
        assert_eq!(timestamp("Dec 1 10:00:0é host"), None);
    }
}
