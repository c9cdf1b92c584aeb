//! The knowledge of rescue-disk: why a VM does not boot or refuses SSH.
//!
//! Each check reads the guest through [`Context`] (the assembled guest view,
//! its volumes and what identification found) and returns [`Finding`]s: the
//! symptom the user saw, the cause on the disk, the evidence (guest file and
//! line, log line) and, where one is safe, a [`Repair`] as data — a plan of
//! edits that `fix` applies later. The ids are those of the catalogue
//! (`shared/CHECKS.md`), verbatim.
//!
//! Must never: write, do I/O of its own (everything is read through the
//! guest view, which bounds sizes), or consult the host (users, UUIDs and
//! versions come from the guest).

mod access;
mod boot;
pub mod edit;
mod files;
mod fs;
mod fstab;
mod guest_db;
mod hostkeys;
mod logs;
mod network;
mod sshd;

use rescue_config::fstab::Fstab;
use rescue_guest::{Guest, GuestReport};
use rescue_volumes::Disk;
use serde::Serialize;

pub use edit::{Edit, Repair};
#[doc(hidden)]
pub use hostkeys::fuzz_private_key;

/// How bad a finding is.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Serialize, schemars::JsonSchema)]
#[serde(rename_all = "snake_case")]
pub enum Severity {
    /// Worth knowing; explains nothing that fails.
    Info,
    /// Likely trouble.
    Warning,
    /// Explains a failed boot or a refused login.
    Error,
}

/// Which part of the catalogue a check belongs to.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, schemars::JsonSchema)]
#[serde(rename_all = "snake_case")]
pub enum Area {
    /// The VM does not come up.
    Boot,
    /// The VM boots but refuses SSH.
    Ssh,
}

/// A catalogue entry.
#[derive(Debug, Clone, Copy, Serialize, schemars::JsonSchema)]
pub struct CheckInfo {
    /// The id, verbatim from the catalogue.
    pub id: &'static str,
    /// Boot or SSH.
    pub area: Area,
    /// What the user sees when this goes wrong.
    pub symptom: &'static str,
    /// What the check looks at on the disk.
    pub looks_at: &'static str,
}

/// What a check found.
#[derive(Debug, Clone, Serialize, schemars::JsonSchema)]
pub struct Finding {
    /// Catalogue id of the check.
    pub check: String,
    /// How bad it is.
    pub severity: Severity,
    /// Boot or SSH.
    pub area: Area,
    /// What the finding is about (`/etc/fstab line 4`, `user alice`, …).
    pub subject: String,
    /// The symptom it explains, in the words the user saw.
    pub symptom: String,
    /// What is wrong on the disk, in one sentence.
    pub cause: String,
    /// Where it shows.
    pub evidence: Vec<Evidence>,
    /// What `fix` would do, when a safe repair exists.
    pub repair: Option<Repair>,
}

/// A piece of evidence.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, schemars::JsonSchema)]
#[serde(tag = "kind", rename_all = "snake_case")]
pub enum Evidence {
    /// A line (or the whole) of a guest file.
    File {
        /// Guest path.
        path: String,
        /// 1-based line, when it is about one line.
        line: Option<usize>,
        /// The text of that line (lossy UTF-8), or a short description.
        text: String,
    },
    /// A log line written by the guest.
    Log {
        /// Guest path of the log.
        path: String,
        /// 1-based line in the file.
        line: usize,
        /// The timestamp at the start of the line, as written.
        timestamp: Option<String>,
        /// The line.
        text: String,
    },
    /// A fact read from a structure that is not a text file (a superblock,
    /// an inode's mode).
    Fact {
        /// The fact in one line.
        text: String,
    },
}

/// A check that could not run to the end (the guest is damaged in a way the
/// check cannot see past). The command's exit status is then 2.
#[derive(Debug, Clone, Serialize, schemars::JsonSchema)]
pub struct CheckError {
    /// Catalogue id.
    pub check: String,
    /// Why, in one line.
    pub message: String,
}

/// Choices that change what a repair does.
#[derive(Debug, Clone, Default)]
pub struct Options {
    /// Explain SSH access for this user only (`--user`).
    pub user: Option<String>,
    /// How to neutralise an fstab line whose device is gone.
    pub fstab_mode: FstabMode,
}

/// `--fstab-mode`.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub enum FstabMode {
    /// Add `nofail` so boot continues without the device (default).
    #[default]
    Nofail,
    /// Comment the line out, keeping the old text.
    Comment,
}

/// Everything a check may look at.
pub struct Context<'a> {
    /// The disk's volumes (empty for a mounted directory tree).
    pub disk: &'a Disk,
    /// False for a mounted directory tree: fstab sources cannot be matched
    /// against the disk's volumes, so checks must not claim they are missing.
    pub disk_known: bool,
    /// The guest view (reads are size-capped and stay inside the guest).
    pub guest: &'a Guest,
    /// What identification found.
    pub report: &'a GuestReport,
    /// The root's parsed fstab.
    pub fstab: Option<&'a Fstab>,
    /// User choices.
    pub options: &'a Options,
}

/// Why a check produced no verdict.
#[derive(Debug)]
pub enum CheckFailure {
    /// The check could not run to the end (a damaged guest it cannot see
    /// past): reported as an error, exit status 2.
    Error(rescue_io::Error),
    /// The check does not apply to this guest, or cannot judge it yet
    /// (e.g. no dpkg database): reported as skipped with the reason, never
    /// as passing.
    NotApplicable(String),
}

impl From<rescue_io::Error> for CheckFailure {
    fn from(e: rescue_io::Error) -> Self {
        CheckFailure::Error(e)
    }
}

/// Result of one check: findings, or why there is no verdict.
pub type CheckResult = Result<Vec<Finding>, CheckFailure>;

struct Check {
    info: CheckInfo,
    run: fn(&Context<'_>) -> CheckResult,
}

/// The checks that are implemented, in the order they run and report.
const CHECKS: &[Check] = &[
    Check {
        info: fstab::UNSTABLE_DEVICE,
        run: fstab::unstable_device,
    },
    Check {
        info: fstab::MISSING_SOURCE,
        run: fstab::missing_source,
    },
    Check {
        info: fstab::SYNTAX,
        run: fstab::syntax,
    },
    Check {
        info: fstab::NETWORK,
        run: fstab::network,
    },
    Check {
        info: boot::KERNEL_INCOMPLETE,
        run: boot::kernel_incomplete,
    },
    Check {
        info: boot::INITRAMFS_MISSING,
        run: boot::initramfs_missing,
    },
    Check {
        info: boot::CMDLINE,
        run: boot::cmdline,
    },
    Check {
        info: fs::ERRORS,
        run: fs::errors,
    },
    Check {
        info: fs::DISK_FULL,
        run: fs::disk_full,
    },
    Check {
        info: boot::SERIAL_CONSOLE,
        run: boot::serial_console,
    },
    Check {
        info: files::MISSING_FILES,
        run: files::missing_files,
    },
    Check {
        info: sshd::CONFIG_SYNTAX,
        run: sshd::config_syntax,
    },
    Check {
        info: sshd::SERVICE,
        run: sshd::service,
    },
    Check {
        info: sshd::LISTEN,
        run: sshd::listen,
    },
    Check {
        info: hostkeys::HOST_KEYS,
        run: hostkeys::host_keys,
    },
    Check {
        info: hostkeys::PRIVSEP,
        run: hostkeys::privsep,
    },
    Check {
        info: access::USER_ACCESS,
        run: access::user_access,
    },
    Check {
        info: access::HOME_MODES,
        run: access::home_modes,
    },
    Check {
        info: access::AUTHORIZED_KEYS,
        run: access::authorized_keys,
    },
    Check {
        info: network::SELINUX_LABEL,
        run: network::selinux_label,
    },
    Check {
        info: network::TCP_WRAPPERS,
        run: network::tcp_wrappers,
    },
    Check {
        info: network::GUEST_FIREWALL,
        run: network::guest_firewall,
    },
];

/// Catalogue entries not implemented yet: listed by `rescue-disk checks` as
/// such, never run, never reported as passing.
pub const PLANNED: &[&str] = &[];

/// The implemented checks.
pub fn catalogue() -> impl Iterator<Item = &'static CheckInfo> {
    CHECKS
        .iter()
        .map(|c| &c.info)
        .chain(std::iter::once(&logs::LOGS))
}

/// Which checks to run (`--only`, `--skip`).
#[derive(Debug, Clone, Default)]
pub struct Selection {
    /// Run only these ids (empty: all).
    pub only: Vec<String>,
    /// Never run these ids.
    pub skip: Vec<String>,
}

impl Selection {
    fn wants(&self, id: &str) -> bool {
        (self.only.is_empty() || self.only.iter().any(|o| o == id))
            && !self.skip.iter().any(|s| s == id)
    }

    /// Ids named in `--only`/`--skip` that are not in the catalogue.
    pub fn unknown_ids(&self) -> Vec<String> {
        self.only
            .iter()
            .chain(&self.skip)
            .filter(|id| !catalogue().any(|c| c.id == *id) && !PLANNED.contains(&id.as_str()))
            .cloned()
            .collect()
    }
}

/// What a run of the checks produced.
#[derive(Debug, Clone, Default, Serialize, schemars::JsonSchema)]
pub struct Outcome {
    /// Ids of the checks that ran to the end.
    pub ran: Vec<String>,
    /// Findings, in catalogue order.
    pub findings: Vec<Finding>,
    /// Checks that could not run to the end.
    pub errors: Vec<CheckError>,
    /// Checks that do not apply to this guest or cannot judge it yet, with
    /// why (never counted as passing).
    pub skipped: Vec<CheckError>,
}

/// Runs the selected checks. A check that fails to run becomes a
/// [`CheckError`]; the others still run.
pub fn run(ctx: &Context<'_>, selection: &Selection) -> Outcome {
    let mut out = Outcome::default();
    for check in CHECKS.iter().filter(|c| selection.wants(c.info.id)) {
        match (check.run)(ctx) {
            Ok(findings) => {
                out.ran.push(check.info.id.to_owned());
                out.findings.extend(findings);
            }
            Err(CheckFailure::Error(e)) => out.errors.push(CheckError {
                check: check.info.id.to_owned(),
                message: e.to_string(),
            }),
            Err(CheckFailure::NotApplicable(why)) => out.skipped.push(CheckError {
                check: check.info.id.to_owned(),
                message: why,
            }),
        }
    }
    // Log evidence last: it attaches to the findings of the other checks.
    if selection.wants(logs::LOGS.id) {
        let extra = logs::run(ctx, &mut out.findings);
        out.findings.extend(extra);
        out.ran.push(logs::LOGS.id.to_owned());
    }
    out
}

impl Finding {
    /// A finding of `info` with the catalogue's symptom; callers fill in the rest.
    pub(crate) fn new(
        info: &CheckInfo,
        severity: Severity,
        subject: impl Into<String>,
        cause: impl Into<String>,
    ) -> Self {
        Finding {
            check: info.id.to_owned(),
            severity,
            area: info.area,
            subject: subject.into(),
            symptom: info.symptom.to_owned(),
            cause: cause.into(),
            evidence: Vec::new(),
            repair: None,
        }
    }

    pub(crate) fn symptom(mut self, symptom: impl Into<String>) -> Self {
        self.symptom = symptom.into();
        self
    }

    pub(crate) fn evidence(mut self, e: Evidence) -> Self {
        self.evidence.push(e);
        self
    }

    pub(crate) fn repair(mut self, r: Option<Repair>) -> Self {
        self.repair = r;
        self
    }
}

impl Evidence {
    pub(crate) fn line(path: &str, line: usize, text: impl Into<String>) -> Self {
        Evidence::File {
            path: path.to_owned(),
            line: Some(line),
            text: text.into(),
        }
    }

    pub(crate) fn fact(text: impl Into<String>) -> Self {
        Evidence::Fact { text: text.into() }
    }
}
