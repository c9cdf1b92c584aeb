//! The `rescue-disk` binary: argument parsing, rendering and exit codes.
//!
//! All knowledge lives in the library crates; this crate only wires them
//! together, turns results into text or JSON, and decides the exit status:
//! 0 ok, 1 findings remain, 2 error (an error always wins).

mod check;
mod files;
mod fix;
mod inspect;
mod style;

use std::io::Write;
use std::process::ExitCode;

use clap::Parser;

use rescue_disk::cli::{Cli, Command};

/// Exit status of a command that ran to completion.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Outcome {
    /// Nothing to report, or everything fixed.
    Ok,
    /// Findings remain.
    Findings,
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    init_tracing(cli.global.verbose);
    let style = style::Style::for_stdout(cli.global.color);
    let result = match &cli.command {
        Command::Inspect(args) => inspect::run(args, &style),
        Command::Check(args) => check::run(args, &style),
        Command::Checks(args) => check::list(args, &style),
        Command::Fix(args) => fix::run(args, &style),
        Command::Undo(args) => fix::undo(args),
        Command::Cat(args) => files::cat(args),
        Command::Ls(args) => files::ls(args),
        Command::Get(args) => files::get(args),
        Command::Put(args) => files::put(args),
        Command::Edit(args) => files::edit(args),
        Command::Chmod(args) => files::chmod(args),
        Command::Chown(args) => files::chown(args),
        Command::Mkdir(args) => files::mkdir(args),
        Command::Ln(args) => files::ln(args),
        Command::Rm(args) => files::rm(args),
    };
    let stats = rescue_io::stats::read_stats();
    tracing::info!(
        "read {} bytes from the host in {} reads ({})",
        stats.bytes,
        stats.reads,
        inspect::human_size(stats.bytes)
    );
    match result {
        Ok(Outcome::Ok) => ExitCode::SUCCESS,
        Ok(Outcome::Findings) => ExitCode::from(1),
        Err(err) => {
            if is_broken_pipe(&err) {
                // The reader went away (e.g. `| head`): not our failure.
                return ExitCode::SUCCESS;
            }
            let mut stderr = std::io::stderr().lock();
            let _ = writeln!(stderr, "rescue-disk: error: {}", one_line(&err));
            ExitCode::from(2)
        }
    }
}

/// Prints a report on stdout: `doc` as pretty JSON with `--json`, else
/// the human text `human` renders.
fn print_report<T: serde::Serialize>(
    json: bool,
    doc: &T,
    human: impl FnOnce() -> String,
) -> anyhow::Result<()> {
    let mut out = std::io::stdout().lock();
    if json {
        serde_json::to_writer_pretty(&mut out, doc)?;
        writeln!(out)?;
    } else {
        out.write_all(human().as_bytes())?;
    }
    out.flush()?;
    Ok(())
}

/// Joins an error chain into one line, skipping causes that the message
/// above already contains (our own errors embed their source).
fn one_line(err: &anyhow::Error) -> String {
    let mut line = String::new();
    for cause in err.chain() {
        let text = cause.to_string();
        if line.contains(&text) {
            continue;
        }
        if !line.is_empty() {
            line.push_str(": ");
        }
        line.push_str(&text);
    }
    line.replace('\n', " ")
}

fn is_broken_pipe(err: &anyhow::Error) -> bool {
    err.chain().any(|c| {
        c.downcast_ref::<std::io::Error>()
            .is_some_and(|e| e.kind() == std::io::ErrorKind::BrokenPipe)
    })
}

fn init_tracing(verbose: u8) {
    use tracing_subscriber::EnvFilter;
    let default = match verbose {
        0 => "warn",
        1 => "info",
        2 => "debug",
        _ => "trace",
    };
    let filter = EnvFilter::try_from_default_env().unwrap_or_else(|_| EnvFilter::new(default));
    let ansi = std::env::var_os("NO_COLOR").is_none_or(|v| v.is_empty())
        && std::io::IsTerminal::is_terminal(&std::io::stderr());
    let _ = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr)
        .with_ansi(ansi)
        .with_target(false)
        .without_time()
        .try_init();
}

/// Fails when `docs/schema/<file>` differs from `schema`, the schema
/// generated from the report types (`RESCUE_BLESS=1` rewrites the file).
#[cfg(test)]
fn assert_schema_is_current(schema: &schemars::Schema, file: &str) {
    let text = serde_json::to_string_pretty(schema).unwrap() + "\n";
    let path = std::path::Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("../../docs/schema")
        .join(file);
    if std::env::var_os("RESCUE_BLESS").is_some() {
        std::fs::write(&path, &text).unwrap();
    }
    let committed = std::fs::read_to_string(&path).unwrap_or_default();
    assert!(
        committed == text,
        "docs/schema/{file} is stale: run `RESCUE_BLESS=1 cargo test -p rescue-disk json_schema`"
    );
}
