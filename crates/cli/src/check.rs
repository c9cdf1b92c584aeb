//! `rescue-disk check` and `rescue-disk checks`: run the catalogue on a
//! read-only target and render findings, evidence and proposed repairs.

use std::collections::BTreeMap;
use std::io::Write;
use std::path::PathBuf;

use anyhow::{bail, Context as _, Result};
use rescue_checks::edit::{diff_for_file, Edit};
use rescue_checks::{
    Area, CheckInfo, Finding, FstabMode, Options, Outcome as CheckOutcome, Selection, Severity,
};
use rescue_config::fstab::Fstab;
use rescue_disk::cli::{CheckArgs, ChecksArgs, FstabModeArg};
use rescue_guest::{GuestPath, MAX_CONFIG_FILE_BYTES};
use rescue_volumes::PartitionTable;
use serde::Serialize;

use crate::inspect::open_target;
use crate::style::Style;
use crate::Outcome;

/// Name of the JSON document type, see docs/schema/check.v1.json.
pub const SCHEMA: &str = "rescue-disk/check";
/// Bump on any incompatible change of the JSON shape.
pub const SCHEMA_VERSION: u32 = 1;

/// The `check --json` document.
#[derive(Debug, Serialize, schemars::JsonSchema)]
#[schemars(title = "rescue-disk check report, schema version 1")]
pub struct CheckReport {
    /// Always `rescue-disk/check`.
    schema: &'static str,
    /// Incremented on any incompatible change; this document describes 1.
    schema_version: u32,
    /// Version of rescue-disk that wrote the report.
    tool_version: &'static str,
    /// The path given on the command line.
    target: PathBuf,
    /// The root volume, when one was found.
    root_volume: Option<String>,
    /// `ID` from the guest's os-release.
    os_id: Option<String>,
    /// `PRETTY_NAME` from the guest's os-release.
    os_pretty_name: Option<String>,
    /// Checks that ran, findings, and checks that could not run.
    #[serde(flatten)]
    outcome: CheckOutcome,
    /// Catalogue entries not implemented yet (never run, never passing).
    not_yet_implemented: Vec<&'static str>,
    /// Unified diffs of the text files the proposed repairs change, by guest path.
    diffs: BTreeMap<String, String>,
    /// `ok` (nothing found), `findings` (warnings or errors remain) or `error`
    /// (a check could not run); mirrors the exit status 0, 1, 2.
    status: &'static str,
}

/// The `--only`/`--skip` selection, refusing unknown ids.
pub fn selection(only: &[String], skip: &[String]) -> Result<Selection> {
    let sel = Selection {
        only: only.to_vec(),
        skip: skip.to_vec(),
    };
    let unknown = sel.unknown_ids();
    if !unknown.is_empty() {
        bail!(
            "unknown check id(s): {}; `rescue-disk checks` lists them",
            unknown.join(", ")
        );
    }
    Ok(sel)
}

/// What a run of the catalogue found on a disk.
pub struct Evaluation {
    /// Findings, errors, skipped checks.
    pub outcome: CheckOutcome,
    /// Unified diffs of the proposed line edits, by guest path.
    pub diffs: BTreeMap<String, String>,
    /// The root volume.
    pub root_volume: Option<String>,
    /// `ID` and `PRETTY_NAME` of os-release.
    pub os: Option<(String, Option<String>)>,
}

/// Checks options from the command line.
pub fn options(user: &Option<String>, fstab_mode: FstabModeArg) -> Options {
    Options {
        user: user.clone(),
        fstab_mode: match fstab_mode {
            FstabModeArg::Nofail => FstabMode::Nofail,
            FstabModeArg::Comment => FstabMode::Comment,
        },
    }
}

/// Runs the selected checks on `disk` (`device` is the whole disk), or on
/// the mounted tree `tree` when `device` is `None`.
pub fn evaluate(
    path: &str,
    device: Option<&rescue_io::Device>,
    disk: &rescue_volumes::Disk,
    tree: Option<&std::path::Path>,
    options: &Options,
    selection: &Selection,
) -> Result<Evaluation> {
    let identified = match (device, tree) {
        (Some(device), _) => rescue_guest::identify(device, disk),
        (None, Some(tree)) => rescue_guest::identify_tree(tree, disk),
        (None, None) => bail!("internal: nothing to check"),
    }
    .with_context(|| format!("identifying the guest on {path}"))?;
    let report = &identified.report;
    if report.root.is_none() {
        bail!(
            "no root filesystem found on {path}: `rescue-disk inspect {path}` shows what is on the disk and why each volume was not taken"
        );
    }
    let fstab: Option<&Fstab> = identified.assembly.fstab.as_ref();
    let ctx = rescue_checks::Context {
        disk,
        disk_known: device.is_some(),
        guest: &identified.assembly.guest,
        report,
        fstab,
        options,
    };
    let outcome = rescue_checks::run(&ctx, selection);
    let diffs = repair_diffs(&identified.assembly.guest, &outcome.findings);
    Ok(Evaluation {
        outcome,
        diffs,
        root_volume: report.root.as_ref().map(|r| r.volume_id.clone()),
        os: report
            .os
            .as_ref()
            .map(|o| (o.id.clone(), o.pretty_name.clone())),
    })
}

/// Opens `target` read-only and discovers its volumes; `None` for the
/// device of a mounted tree (a directory).
pub fn open_disk(
    target: &rescue_disk::cli::TargetArgs,
) -> Result<(rescue_volumes::Disk, Option<rescue_io::Device>)> {
    let path = target.target.display().to_string();
    // A directory is a guest tree the operator mounted; anything else is a disk.
    if std::fs::metadata(&target.target).is_ok_and(|m| m.is_dir()) {
        return Ok((rescue_volumes::Disk::default(), None));
    }
    let opened = open_target(target)?;
    let disk = rescue_volumes::discover(opened.device.clone())
        .with_context(|| format!("discovering volumes on {path}"))?;
    if disk.volumes.is_empty() && matches!(disk.table, PartitionTable::None) {
        bail!("no partition table or known filesystem found on {path}: check that this is the right disk");
    }
    Ok((disk, Some(opened.device)))
}

/// Runs `check`.
pub fn run(args: &CheckArgs, style: &Style) -> Result<Outcome> {
    let selection = selection(&args.only, &args.skip)?;
    let path = args.target.target.display().to_string();
    let (disk, device) = open_disk(&args.target)?;
    let options = options(&args.user, args.fstab_mode);
    let Evaluation {
        outcome,
        diffs,
        root_volume,
        os,
    } = evaluate(
        &path,
        device.as_ref(),
        &disk,
        Some(&args.target.target),
        &options,
        &selection,
    )?;
    let status = if !outcome.errors.is_empty() {
        "error"
    } else if outcome
        .findings
        .iter()
        .any(|f| f.severity >= Severity::Warning)
    {
        "findings"
    } else {
        "ok"
    };
    let doc = CheckReport {
        schema: SCHEMA,
        schema_version: SCHEMA_VERSION,
        tool_version: env!("CARGO_PKG_VERSION"),
        target: args.target.target.clone(),
        root_volume,
        os_id: os.as_ref().map(|o| o.0.clone()),
        os_pretty_name: os.and_then(|o| o.1),
        outcome,
        not_yet_implemented: rescue_checks::PLANNED.to_vec(),
        diffs,
        status,
    };
    crate::print_report(args.json, &doc, || render_human(&doc, style))?;
    match status {
        "error" => {
            let first = &doc.outcome.errors[0];
            bail!(
                "check {} could not run: {}{}",
                first.check,
                first.message,
                if doc.outcome.errors.len() > 1 {
                    format!(" (and {} more)", doc.outcome.errors.len() - 1)
                } else {
                    String::new()
                }
            )
        }
        "findings" => Ok(Outcome::Findings),
        _ => Ok(Outcome::Ok),
    }
}

/// Unified diffs per file of all proposed line edits; a file that cannot be
/// read or whose edits conflict gets a one-line note instead.
fn repair_diffs(guest: &rescue_guest::Guest, findings: &[Finding]) -> BTreeMap<String, String> {
    let mut by_file: BTreeMap<String, Vec<&Edit>> = BTreeMap::new();
    for f in findings {
        for e in f.repair.iter().flat_map(|r| &r.edits) {
            if matches!(e, Edit::EditLine { .. }) {
                by_file.entry(e.path().to_owned()).or_default().push(e);
            }
        }
    }
    by_file
        .into_iter()
        .map(|(path, edits)| {
            let text = match guest.read_file(&GuestPath::new(&path), MAX_CONFIG_FILE_BYTES) {
                Ok(data) => diff_for_file(&path, &data, &edits)
                    .unwrap_or_else(|e| format!("(edits of {path} conflict: {e})\n")),
                Err(e) => format!("({path} cannot be read: {e})\n"),
            };
            (path, text)
        })
        .collect()
}

fn severity_label(s: Severity, style: &Style) -> String {
    match s {
        Severity::Error => style.bad("error"),
        Severity::Warning => style.warn("warning"),
        Severity::Info => style.dim("info"),
    }
}

fn render_finding(s: &mut String, f: &Finding, style: &Style) {
    use std::fmt::Write as _;
    let _ = writeln!(
        s,
        "  {} [{}] {}",
        severity_label(f.severity, style),
        f.check,
        f.subject
    );
    let _ = writeln!(s, "    symptom:  {}", f.symptom);
    let _ = writeln!(s, "    cause:    {}", f.cause);
    for e in &f.evidence {
        let text = match e {
            rescue_checks::Evidence::File {
                path,
                line: Some(l),
                text,
            } => format!("{path}:{l}: {text}"),
            rescue_checks::Evidence::File {
                path,
                line: None,
                text,
            } => format!("{path}: {text}"),
            rescue_checks::Evidence::Log {
                path, line, text, ..
            } => format!("{path}:{line}: {text}"),
            rescue_checks::Evidence::Fact { text } => text.clone(),
        };
        let _ = writeln!(s, "    evidence: {}", style.dim(&text));
    }
    if let Some(r) = &f.repair {
        let _ = writeln!(s, "    repair:   {}", r.summary);
        for e in &r.edits {
            match e {
                Edit::EditLine { .. } => {}
                Edit::SetGrubenv { path, key, value } => {
                    let _ = writeln!(s, "              set {key}={value} in {path}");
                }
                Edit::SetMode { path, from, to } => {
                    let _ = writeln!(s, "              chmod {to:04o} {path} (now {from:04o})");
                }
                Edit::SetOwner {
                    path,
                    to_uid,
                    to_gid,
                    from_uid,
                    from_gid,
                } => {
                    let _ = writeln!(
                        s,
                        "              chown {to_uid}:{to_gid} {path} (now {from_uid}:{from_gid})"
                    );
                }
                Edit::Unlink { path } => {
                    let _ = writeln!(s, "              rm {path}");
                }
                Edit::CreateSymlink { path, target } => {
                    let _ = writeln!(s, "              ln -s {target} {path}");
                }
                Edit::CreateDir {
                    path,
                    mode,
                    uid,
                    gid,
                } => {
                    let _ = writeln!(
                        s,
                        "              mkdir -m {mode:04o} {path} (owner {uid}:{gid})"
                    );
                }
            }
        }
        if let Some(m) = &r.manual {
            let _ = writeln!(s, "              by hand: {m}");
        }
    }
}

fn render_human(doc: &CheckReport, style: &Style) -> String {
    use std::fmt::Write as _;
    let mut s = String::new();
    let os = doc
        .os_pretty_name
        .clone()
        .or_else(|| doc.os_id.clone())
        .unwrap_or_else(|| "unknown OS".into());
    let _ = writeln!(
        s,
        "{}: {os}, root on {}",
        doc.target.display(),
        doc.root_volume.as_deref().unwrap_or("?")
    );
    for (area, title) in [
        (Area::Boot, "Boot: the VM does not come up"),
        (Area::Ssh, "SSH: the VM boots but refuses SSH"),
    ] {
        let findings: Vec<&Finding> = doc
            .outcome
            .findings
            .iter()
            .filter(|f| f.area == area)
            .collect();
        if findings.is_empty() {
            continue;
        }
        let _ = writeln!(s, "\n{}", style.heading(title));
        for f in findings {
            render_finding(&mut s, f, style);
        }
    }
    if !doc.diffs.is_empty() {
        let _ = writeln!(
            s,
            "\n{}",
            style.heading("Proposed changes (fix would apply these)")
        );
        for d in doc.diffs.values() {
            s.push_str(d);
        }
    }
    for e in &doc.outcome.skipped {
        let _ = writeln!(
            s,
            "{}",
            style.dim(&format!("skipped [{}]: {}", e.check, e.message))
        );
    }
    for e in &doc.outcome.errors {
        let _ = writeln!(
            s,
            "\n{} [{}] could not run: {}",
            style.bad("error"),
            e.check,
            e.message
        );
    }
    let counts = |sev| {
        doc.outcome
            .findings
            .iter()
            .filter(|f| f.severity == sev)
            .count()
    };
    let _ = writeln!(
        s,
        "\n{} checks ran: {} error(s), {} warning(s), {} note(s){}",
        doc.outcome.ran.len(),
        counts(Severity::Error),
        counts(Severity::Warning),
        counts(Severity::Info),
        if doc.outcome.findings.is_empty() {
            format!(" — {}", style.good("nothing wrong found"))
        } else {
            String::new()
        }
    );
    if !doc.not_yet_implemented.is_empty() {
        let _ = writeln!(
            s,
            "{}",
            style.dim(&format!(
                "not yet implemented: {}",
                doc.not_yet_implemented.join(", ")
            ))
        );
    }
    s
}

#[derive(Serialize)]
struct CatalogueEntry<'a> {
    #[serde(flatten)]
    info: &'a CheckInfo,
    implemented: bool,
}

/// Runs `checks`: the catalogue.
pub fn list(args: &ChecksArgs, style: &Style) -> Result<Outcome> {
    let mut out = std::io::stdout().lock();
    if args.json {
        let entries: Vec<CatalogueEntry<'_>> = rescue_checks::catalogue()
            .map(|info| CatalogueEntry {
                info,
                implemented: true,
            })
            .collect();
        let doc =
            serde_json::json!({ "checks": entries, "not_yet_implemented": rescue_checks::PLANNED });
        serde_json::to_writer_pretty(&mut out, &doc)?;
        writeln!(out)?;
    } else {
        for info in rescue_checks::catalogue() {
            writeln!(out, "{:<24} {}", style.heading(info.id), info.symptom)?;
            writeln!(
                out,
                "{:<24} {}",
                "",
                style.dim(&format!("looks at: {}", info.looks_at))
            )?;
        }
        if !rescue_checks::PLANNED.is_empty() {
            writeln!(
                out,
                "\nnot yet implemented: {}",
                rescue_checks::PLANNED.join(", ")
            )?;
        }
    }
    out.flush()?;
    Ok(Outcome::Ok)
}

#[cfg(test)]
mod tests {
    use super::CheckReport;

    /// docs/schema/check.v1.json is generated from the report types; this
    /// fails when they drift apart. `RESCUE_BLESS=1` rewrites the file.
    #[test]
    fn json_schema_in_docs_is_up_to_date() {
        crate::assert_schema_is_current(&schemars::schema_for!(CheckReport), "check.v1.json");
    }
}
