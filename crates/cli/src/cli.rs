//! Command-line definition (clap derive). Shared with `xtask` for man pages
//! and shell completions, so it must stay free of side effects.

use std::path::PathBuf;

use clap::{Args, Parser, Subcommand, ValueEnum};

/// Rescue broken Linux VM boot disks offline.
///
/// Targets are raw or qcow2 image files and block devices. Read-only commands
/// open the target read-only. Exit status: 0 ok, 1 findings remain, 2 error.
#[derive(Debug, Parser)]
#[command(
    name = "rescue-disk",
    version,
    propagate_version = true,
    max_term_width = 100
)]
pub struct Cli {
    #[command(flatten)]
    pub global: GlobalArgs,

    #[command(subcommand)]
    pub command: Command,
}

/// Options that every subcommand accepts.
#[derive(Debug, Args)]
pub struct GlobalArgs {
    /// When to use colour in human output (NO_COLOR is honoured by `auto`).
    #[arg(long, value_enum, default_value_t = ColorChoice::Auto, global = true)]
    pub color: ColorChoice,

    /// Print diagnostics about what rescue-disk is doing on stderr
    /// (repeat for more detail; RUST_LOG overrides).
    #[arg(short, long, action = clap::ArgAction::Count, global = true)]
    pub verbose: u8,
}

/// `--color` values.
#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum ColorChoice {
    /// Colour when stdout is a terminal and NO_COLOR is not set.
    Auto,
    /// Always colour.
    Always,
    /// Never colour.
    Never,
}

/// The subcommands.
#[derive(Debug, Subcommand)]
pub enum Command {
    /// Show what is on a disk: partitions, LVM volumes, filesystems, and the
    /// guest OS with its kernels, bootloader and fstab.
    Inspect(InspectArgs),
    /// Diagnose why the guest does not boot or refuses SSH, from the disk
    /// alone. Read-only: prints findings with evidence and the repair `fix`
    /// would make. Exit status 1 when warnings or errors remain.
    Check(CheckArgs),
    /// List the checks `check` runs, with the symptom each explains.
    Checks(ChecksArgs),
}

/// Arguments of `check`.
#[derive(Debug, Args)]
pub struct CheckArgs {
    #[command(flatten)]
    pub target: TargetArgs,

    /// Print a JSON document (schema: docs/schema/check.v1.json) instead of text.
    #[arg(long)]
    pub json: bool,

    /// Explain SSH access for this guest user only.
    #[arg(long, value_name = "NAME")]
    pub user: Option<String>,

    /// Run only these checks (comma-separated ids, see `rescue-disk checks`).
    #[arg(long, value_delimiter = ',', value_name = "IDS")]
    pub only: Vec<String>,

    /// Do not run these checks (comma-separated ids).
    #[arg(long, value_delimiter = ',', value_name = "IDS")]
    pub skip: Vec<String>,

    /// How the proposed repair neutralises an fstab line whose device is not
    /// on the disk.
    #[arg(long, value_enum, default_value_t = FstabModeArg::Nofail, value_name = "MODE")]
    pub fstab_mode: FstabModeArg,
}

/// `--fstab-mode` values.
#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum FstabModeArg {
    /// Add `nofail`: boot goes on without the filesystem.
    Nofail,
    /// Comment the line out, keeping its text.
    Comment,
}

/// Arguments of `checks`.
#[derive(Debug, Args)]
pub struct ChecksArgs {
    /// Print the catalogue as JSON.
    #[arg(long)]
    pub json: bool,
}

/// `--format` values for image files.
#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum ImageFormat {
    /// The file or device holds the disk's bytes as they are.
    Raw,
    /// QEMU copy-on-write image (v2 or v3).
    Qcow2,
}

/// How a target is opened.
#[derive(Debug, Args)]
pub struct TargetArgs {
    /// Image file (raw or qcow2) or block device, e.g. disk.qcow2 or /dev/sdb.
    #[arg(value_name = "TARGET")]
    pub target: PathBuf,

    /// Container format of TARGET; sniffed from its first bytes when absent.
    #[arg(long, value_enum, value_name = "FORMAT")]
    pub format: Option<ImageFormat>,
}

/// Arguments of `inspect`.
#[derive(Debug, Args)]
pub struct InspectArgs {
    #[command(flatten)]
    pub target: TargetArgs,

    /// Print a JSON document (schema: docs/schema/inspect.v1.json) instead of text.
    #[arg(long)]
    pub json: bool,
}
