//! `rescue-disk fix` and `rescue-disk undo`.
//!
//! `fix` runs the catalogue, turns the proposed repairs into operations
//! (refusing a stale plan before anything is written), applies them through
//! one write session (undo journal on the host), then opens the target
//! again read-only and re-runs the checks: a repair whose finding is still
//! there is reported as not fixed, never as success.

use std::collections::BTreeMap;
use std::path::PathBuf;

use anyhow::{bail, Context as _, Result};
use rescue_checks::edit::Edit;
use rescue_checks::{Finding, Severity};
use rescue_disk::cli::{FixArgs, UndoArgs};
use serde::Serialize;

use crate::check::{evaluate, open_disk, options, selection};
use crate::files::{session, undo_dir};
use crate::style::Style;
use crate::Outcome;

/// Name of the JSON document type, see docs/schema/fix.v1.json.
pub const SCHEMA: &str = "rescue-disk/fix";
/// Bump on any incompatible change of the JSON shape.
pub const SCHEMA_VERSION: u32 = 1;

/// What happened to one finding.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, schemars::JsonSchema)]
#[serde(rename_all = "snake_case")]
pub enum RepairStatus {
    /// Applied, and the check no longer finds it.
    Fixed,
    /// Applied, but the check still finds it.
    NotFixed,
    /// Would be applied (`--dry-run`).
    Planned,
    /// No automatic repair: the operator has to act (see `manual`).
    Manual,
}

/// One finding and what `fix` did about it.
#[derive(Debug, Clone, Serialize, schemars::JsonSchema)]
pub struct RepairResult {
    /// Catalogue id of the check.
    pub check: String,
    /// What the finding is about.
    pub subject: String,
    /// How bad it was.
    pub severity: Severity,
    /// What the repair does (or what the operator must do).
    pub summary: String,
    /// Outcome.
    pub status: RepairStatus,
    /// For `manual`: what to do.
    pub manual: Option<String>,
}

/// The `fix --json` document.
#[derive(Debug, Serialize, schemars::JsonSchema)]
#[schemars(title = "rescue-disk fix report, schema version 1")]
pub struct FixReport {
    /// Always `rescue-disk/fix`.
    schema: &'static str,
    /// Incremented on any incompatible change; this document describes 1.
    schema_version: u32,
    /// Version of rescue-disk that wrote the report.
    tool_version: &'static str,
    /// The path given on the command line.
    target: PathBuf,
    /// Nothing was written.
    dry_run: bool,
    /// Every finding at warning or error level, with what was done.
    repairs: Vec<RepairResult>,
    /// The operations applied, in order (`chmod 0700 /root/.ssh`, …).
    changes: Vec<String>,
    /// Volumes whose ext3/4 journal was replayed into the disk first.
    journals_replayed: Vec<String>,
    /// Unified diffs of the text files changed (or to be changed).
    diffs: BTreeMap<String, String>,
    /// The host-side undo file, when something was written.
    undo_file: Option<PathBuf>,
    /// The guest directory holding copies of the rewritten files and
    /// `manifest.json` (`/var/lib/rescue-disk/<run-id>`), when written.
    guest_record: Option<String>,
    /// Findings of the re-check after the repairs (or of the check, with
    /// `--dry-run`) at warning or error level.
    remaining: Vec<Finding>,
    /// `ok` (nothing remains), `findings` (something remains) or `error`.
    status: &'static str,
}

/// Rounds of check-and-repair in one `fix`.
const MAX_PASSES: usize = 3;

fn key(f: &Finding) -> (String, String) {
    (f.check.clone(), f.subject.clone())
}

fn serious(f: &Finding) -> bool {
    f.severity >= Severity::Warning
}

/// Runs `fix`.
pub fn run(args: &FixArgs, style: &Style) -> Result<Outcome> {
    let selection = selection(&args.only, &args.skip)?;
    let opts = options(&args.user, args.fstab_mode);
    let path = args.target.target.display().to_string();
    if std::fs::metadata(&args.target.target).is_ok_and(|m| m.is_dir()) && !args.dry_run {
        bail!(
            "{path} is a directory (a guest tree mounted on the host): `rescue-disk check {path}` shows the repairs; \
             apply them there by hand, or give `fix` the image file or block device"
        );
    }

    let mut changes = Vec::new();
    let mut journals = Vec::new();
    let mut undo_file = None;
    let mut failure = None;
    // Every serious finding seen, in the order first seen, and the keys of
    // those whose repair was applied.
    let mut seen: Vec<Finding> = Vec::new();
    let mut applied: Vec<rescue_write::plan::PlannedOp> = Vec::new();
    let mut record = None;
    let mut attempted: Vec<(String, String)> = Vec::new();
    let diffs;
    if args.dry_run {
        let (disk, device) = open_disk(&args.target)?;
        let before = evaluate(
            &path,
            device.as_ref(),
            &disk,
            Some(&args.target.target),
            &opts,
            &selection,
        )?;
        if let Some(first) = before.outcome.errors.first() {
            bail!("check {} could not run: {}", first.check, first.message);
        }
        seen = before
            .outcome
            .findings
            .into_iter()
            .filter(serious)
            .collect();
        diffs = before.diffs;
    } else {
        let mut s = session(&args.target, &args.undo)?;
        let device: rescue_io::Device = s.device();
        let mut first_diffs = None;
        // Repairs can uncover findings that were masked (a broken
        // sshd_config hides the per-user checks): check again and repair
        // what is new, a bounded number of times.
        for _pass in 0..MAX_PASSES {
            let eval = evaluate(&path, Some(&device), s.disk(), None, &opts, &selection)?;
            if let Some(first) = eval.outcome.errors.first() {
                failure = Some(anyhow::anyhow!(
                    "check {} could not run, so its findings were not repaired: {}",
                    first.check,
                    first.message
                ));
                first_diffs.get_or_insert(eval.diffs);
                break;
            }
            let fresh: Vec<Finding> = eval
                .outcome
                .findings
                .into_iter()
                .filter(|f| serious(f) && !attempted.contains(&key(f)))
                .collect();
            first_diffs.get_or_insert(eval.diffs);
            for f in &fresh {
                if !seen.iter().any(|x| key(x) == key(f)) {
                    seen.push(f.clone());
                }
            }
            let repairable: Vec<&Finding> = fresh
                .iter()
                .filter(|f| f.repair.as_ref().is_some_and(|r| !r.edits.is_empty()))
                .collect();
            if repairable.is_empty() {
                break;
            }
            let edits: Vec<&Edit> = repairable
                .iter()
                .flat_map(|f| f.repair.iter().flat_map(|r| &r.edits))
                .collect();
            let planned = match rescue_write::plan::plan(&s.guest()?, &edits) {
                Ok(p) => p,
                Err(e) => {
                    failure = Some(anyhow::Error::new(e).context("planning the repairs"));
                    break;
                }
            };
            attempted.extend(repairable.iter().map(|f| key(f)));
            for p in planned {
                match s.apply(&p.op) {
                    Ok(change) => {
                        changes.push(change.op);
                        applied.push(p);
                    }
                    Err(e) => {
                        failure = Some(anyhow::Error::new(e).context(p.op.describe()));
                        break;
                    }
                }
            }
            if failure.is_some() {
                break;
            }
        }
        diffs = first_diffs.unwrap_or_default();
        if !applied.is_empty() {
            record = write_record(&mut s, &applied);
        }
        let summary = s.commit().context("completing the undo file")?;
        journals = summary.journals_replayed;
        undo_file = summary.undo_file;
    }

    // Re-check from scratch, read-only, through the same path as `check`.
    let after = if args.dry_run {
        None
    } else {
        let (disk, device) = open_disk(&args.target)?;
        Some(evaluate(
            &path,
            device.as_ref(),
            &disk,
            None,
            &opts,
            &selection,
        )?)
    };
    let still: Vec<(String, String)> = after
        .as_ref()
        .map(|a| {
            a.outcome
                .findings
                .iter()
                .filter(|f| serious(f))
                .map(key)
                .collect()
        })
        .unwrap_or_default();
    let repairs: Vec<RepairResult> = seen
        .iter()
        .map(|f| {
            let auto = f.repair.as_ref().is_some_and(|r| !r.edits.is_empty());
            let status = if args.dry_run {
                if auto {
                    RepairStatus::Planned
                } else {
                    RepairStatus::Manual
                }
            } else if !still.contains(&key(f)) {
                RepairStatus::Fixed
            } else if attempted.contains(&key(f)) {
                RepairStatus::NotFixed
            } else {
                RepairStatus::Manual
            };
            RepairResult {
                check: f.check.clone(),
                subject: f.subject.clone(),
                severity: f.severity,
                summary: f
                    .repair
                    .as_ref()
                    .map_or_else(|| f.cause.clone(), |r| r.summary.clone()),
                status,
                manual: f.repair.as_ref().and_then(|r| r.manual.clone()),
            }
        })
        .collect();
    let remaining: Vec<Finding> = match &after {
        Some(a) => a
            .outcome
            .findings
            .iter()
            .filter(|f| serious(f))
            .cloned()
            .collect(),
        None => seen.clone(),
    };
    let status =
        if failure.is_some() || after.as_ref().is_some_and(|a| !a.outcome.errors.is_empty()) {
            "error"
        } else if remaining.is_empty() {
            "ok"
        } else {
            "findings"
        };
    let doc = FixReport {
        schema: SCHEMA,
        schema_version: SCHEMA_VERSION,
        tool_version: env!("CARGO_PKG_VERSION"),
        target: args.target.target.clone(),
        dry_run: args.dry_run,
        repairs,
        changes,
        journals_replayed: journals,
        diffs,
        undo_file,
        guest_record: record,
        remaining,
        status,
    };
    crate::print_report(args.json, &doc, || render(&doc, style))?;
    if let Some(err) = failure {
        return Err(err.context(match &doc.undo_file {
            Some(u) => format!(
                "a repair failed; what was written before it is listed above and `rescue-disk undo {path} --log {}` restores it",
                u.display()
            ),
            None => "a repair failed".to_owned(),
        }));
    }
    if let Some(a) = &after {
        if let Some(e) = a.outcome.errors.first() {
            bail!(
                "the re-check after fixing could not run {}: {}",
                e.check,
                e.message
            );
        }
    }
    Ok(if doc.status == "ok" {
        Outcome::Ok
    } else {
        Outcome::Findings
    })
}

fn render(doc: &FixReport, style: &Style) -> String {
    use std::fmt::Write as _;
    let mut s = String::new();
    if doc.repairs.is_empty() {
        let _ = writeln!(s, "{}: nothing to fix", doc.target.display());
        return s;
    }
    for r in &doc.repairs {
        let label = match r.status {
            RepairStatus::Fixed => style.good("fixed"),
            RepairStatus::NotFixed => style.bad("NOT FIXED"),
            RepairStatus::Planned => style.warn("would fix"),
            RepairStatus::Manual => style.warn("manual"),
        };
        let _ = writeln!(s, "{label} [{}] {}: {}", r.check, r.subject, r.summary);
        if let Some(m) = &r.manual {
            let _ = writeln!(s, "    {m}");
        }
    }
    if doc.dry_run {
        for d in doc.diffs.values() {
            s.push('\n');
            s.push_str(d);
        }
        let ops: Vec<&RepairResult> = doc
            .repairs
            .iter()
            .filter(|r| r.status == RepairStatus::Planned)
            .collect();
        let _ = writeln!(
            s,
            "\n--dry-run: nothing was written; {} repair(s) would be applied \
             (fix checks again after repairing: findings hidden by these may appear then)",
            ops.len()
        );
        return s;
    }
    if !doc.changes.is_empty() {
        let _ = writeln!(s, "\nchanges:");
        for c in &doc.changes {
            let _ = writeln!(s, "  {c}");
        }
    }
    for j in &doc.journals_replayed {
        let _ = writeln!(
            s,
            "replayed the journal of {j} into the disk first (as e2fsck does)"
        );
    }
    if let Some(r) = &doc.guest_record {
        let _ = writeln!(
            s,
            "in the guest: {r}/manifest.json lists the changes, with copies of the old files"
        );
    }
    if let Some(u) = &doc.undo_file {
        let _ = writeln!(
            s,
            "undo: rescue-disk undo {}   (undo file {})",
            doc.target.display(),
            u.display()
        );
    }
    let open: Vec<&Finding> = doc.remaining.iter().collect();
    if !open.is_empty() {
        let _ = writeln!(s, "\nstill wrong after the re-check:");
        for f in open {
            let _ = writeln!(s, "  [{}] {}: {}", f.check, f.subject, f.cause);
        }
    }
    s
}

/// Leaves copies of the rewritten files and a manifest in the guest (see
/// `rescue_write::record`). A failure here does not undo the repairs: it
/// is reported as a warning.
fn write_record(
    s: &mut rescue_write::Session,
    applied: &[rescue_write::plan::PlannedOp],
) -> Option<String> {
    let time = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_secs());
    let run_id = s.run_id().to_owned();
    let guest = match s.guest() {
        Ok(g) => g,
        Err(e) => {
            tracing::warn!("no record of the changes left in the guest: {e}");
            return None;
        }
    };
    let Some(ops) =
        rescue_write::record::ops(&guest, &run_id, env!("CARGO_PKG_VERSION"), time, applied)
    else {
        tracing::warn!("the guest has no /var/lib: no record of the changes left in it");
        return None;
    };
    drop(guest);
    for op in &ops {
        if let Err(e) = s.apply(op) {
            tracing::warn!(
                "the record of the changes in the guest is incomplete ({}): {e}",
                op.describe()
            );
            return None;
        }
    }
    Some(format!("{}/{run_id}", rescue_write::record::RECORD_DIR))
}

/// Runs `undo`.
pub fn undo(args: &UndoArgs) -> Result<Outcome> {
    let target = &args.target;
    let log = match &args.log {
        Some(l) => l.clone(),
        None => {
            let dir = undo_dir(&args.undo);
            let logs = rescue_io::find_undo_logs(&dir, target)
                .with_context(|| format!("looking for undo files in {}", dir.display()))?;
            // Sessions are undone newest first, one per call.
            match logs
                .into_iter()
                .find(|l| l.state != rescue_io::UndoLogState::Undone)
            {
                Some(l) => l.path,
                None => bail!(
                    "no undo file left to apply for {} in {} (none, or all already undone): give one with --log, or the directory with --undo-dir",
                    target.display(),
                    dir.display()
                ),
            }
        }
    };
    let report = rescue_io::undo(
        &log,
        target,
        rescue_io::UndoMode {
            force: args.force,
            dry_run: args.dry_run,
        },
    )
    .with_context(|| format!("undoing {} from {}", target.display(), log.display()))?;
    eprintln!("{report}");
    Ok(Outcome::Ok)
}

#[cfg(test)]
mod tests {
    use super::FixReport;

    /// docs/schema/fix.v1.json is generated from the report types; this
    /// fails when they drift apart. `RESCUE_BLESS=1` rewrites the file.
    #[test]
    fn json_schema_in_docs_is_up_to_date() {
        crate::assert_schema_is_current(&schemars::schema_for!(FixReport), "fix.v1.json");
    }
}
