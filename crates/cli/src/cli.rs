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
    /// Repair what `check` finds: apply the proposed edits through the undo
    /// journal, then check again. Exit status 0 when nothing remains.
    Fix(FixArgs),
    /// Restore the bytes a `fix` or file command changed, from its undo file
    /// (even after a crash half-way), and verify them.
    Undo(UndoArgs),
    /// Print guest files to stdout (like virt-cat). Read-only.
    Cat(CatArgs),
    /// List a guest directory (like virt-ls); `-l` shows mode, owner, size.
    Ls(LsArgs),
    /// Copy a guest file out to the host. Read-only on the target.
    Get(GetArgs),
    /// Copy a host file into the guest (like virt-copy-in), replacing the
    /// contents of an existing file in place.
    Put(PutArgs),
    /// Edit a guest file with $EDITOR (like virt-edit); written back only if
    /// changed.
    Edit(EditArgs),
    /// Change the mode of guest files.
    Chmod(ChmodArgs),
    /// Change the owner and group of guest files.
    Chown(ChownArgs),
    /// Create guest directories.
    Mkdir(MkdirArgs),
    /// Create a symbolic link in the guest (`ln -s TARGET LINK`).
    Ln(LnArgs),
    /// Remove guest files, symlinks or empty directories.
    Rm(RmArgs),
}

/// Where undo files go; shared by every command that writes.
#[derive(Debug, Args)]
pub struct UndoDirArgs {
    /// Directory of the host-side undo files [default: /var/lib/rescue-disk/undo
    /// as root, else $XDG_STATE_HOME/rescue-disk/undo].
    #[arg(long, env = "RESCUE_DISK_UNDO_DIR", value_name = "DIR")]
    pub undo_dir: Option<PathBuf>,
}

/// Arguments of `fix`.
#[derive(Debug, Args)]
pub struct FixArgs {
    #[command(flatten)]
    pub target: TargetArgs,

    #[command(flatten)]
    pub undo: UndoDirArgs,

    /// Show the repairs (unified diffs, mode and owner changes) and write
    /// nothing.
    #[arg(long)]
    pub dry_run: bool,

    /// Print a JSON document (schema: docs/schema/fix.v1.json) instead of text.
    #[arg(long)]
    pub json: bool,

    /// Explain and repair SSH access for this guest user only.
    #[arg(long, value_name = "NAME")]
    pub user: Option<String>,

    /// Repair only the findings of these checks (comma-separated ids).
    #[arg(long, value_delimiter = ',', value_name = "IDS")]
    pub only: Vec<String>,

    /// Do not run or repair these checks (comma-separated ids).
    #[arg(long, value_delimiter = ',', value_name = "IDS")]
    pub skip: Vec<String>,

    /// How an fstab line whose device is not on the disk is neutralised.
    #[arg(long, value_enum, default_value_t = FstabModeArg::Nofail, value_name = "MODE")]
    pub fstab_mode: FstabModeArg,
}

/// Arguments of `undo`.
#[derive(Debug, Args)]
pub struct UndoArgs {
    /// The image file or block device that was changed.
    #[arg(value_name = "TARGET")]
    pub target: PathBuf,

    #[command(flatten)]
    pub undo: UndoDirArgs,

    /// Use this undo file instead of the newest one for TARGET.
    #[arg(long, value_name = "FILE")]
    pub log: Option<PathBuf>,

    /// Restore even if TARGET changed after the fix (for example the VM
    /// booted from it): those later changes in the restored ranges are lost.
    #[arg(long)]
    pub force: bool,

    /// List what would be restored and change nothing.
    #[arg(long)]
    pub dry_run: bool,
}

/// Arguments of `cat`.
#[derive(Debug, Args)]
pub struct CatArgs {
    #[command(flatten)]
    pub target: TargetArgs,

    /// Guest paths, e.g. /etc/fstab.
    #[arg(value_name = "PATH", required = true)]
    pub paths: Vec<String>,
}

/// Arguments of `ls`.
#[derive(Debug, Args)]
pub struct LsArgs {
    #[command(flatten)]
    pub target: TargetArgs,

    /// Guest directory (or file).
    #[arg(value_name = "PATH", default_value = "/")]
    pub path: String,

    /// Long listing: type and mode, owner, group, size, modification time.
    #[arg(short = 'l', long = "long")]
    pub long: bool,

    /// Numeric owner and group instead of the guest's names.
    #[arg(short = 'n', long = "numeric")]
    pub numeric: bool,
}

/// Arguments of `get`.
#[derive(Debug, Args)]
pub struct GetArgs {
    #[command(flatten)]
    pub target: TargetArgs,

    /// Guest file to copy out.
    #[arg(value_name = "GUEST_PATH")]
    pub path: String,

    /// Host file (or existing directory) to write; `-` for stdout.
    #[arg(value_name = "HOST_PATH")]
    pub dest: PathBuf,

    /// Overwrite an existing host file.
    #[arg(long)]
    pub force: bool,
}

/// Arguments of `put`.
#[derive(Debug, Args)]
pub struct PutArgs {
    #[command(flatten)]
    pub target: TargetArgs,

    #[command(flatten)]
    pub undo: UndoDirArgs,

    /// Host file to copy in; `-` for stdin.
    #[arg(value_name = "HOST_FILE")]
    pub source: PathBuf,

    /// Guest path: a file (replaced in place, keeping its inode, owner,
    /// mode and labels) or an existing directory (the file goes inside).
    #[arg(value_name = "GUEST_PATH")]
    pub path: String,

    /// Mode of the guest file, octal [default for a new file: 0644].
    #[arg(long, value_name = "MODE", value_parser = parse_mode)]
    pub mode: Option<u32>,

    /// Owner of the guest file as UID:GID (numbers, or names from the
    /// guest's /etc/passwd and /etc/group) [default for a new file: 0:0].
    #[arg(long, value_name = "UID:GID")]
    pub owner: Option<String>,
}

/// Arguments of `edit`.
#[derive(Debug, Args)]
pub struct EditArgs {
    #[command(flatten)]
    pub target: TargetArgs,

    #[command(flatten)]
    pub undo: UndoDirArgs,

    /// Guest file to edit.
    #[arg(value_name = "GUEST_PATH")]
    pub path: String,

    /// Editor command [default: $VISUAL, $EDITOR, then vi].
    #[arg(long, value_name = "COMMAND")]
    pub editor: Option<String>,
}

/// Arguments of `chmod`.
#[derive(Debug, Args)]
pub struct ChmodArgs {
    #[command(flatten)]
    pub target: TargetArgs,

    #[command(flatten)]
    pub undo: UndoDirArgs,

    /// Octal mode, e.g. 0700.
    #[arg(value_name = "MODE", value_parser = parse_mode)]
    pub mode: u32,

    /// Guest paths.
    #[arg(value_name = "PATH", required = true)]
    pub paths: Vec<String>,
}

/// Arguments of `chown`.
#[derive(Debug, Args)]
pub struct ChownArgs {
    #[command(flatten)]
    pub target: TargetArgs,

    #[command(flatten)]
    pub undo: UndoDirArgs,

    /// OWNER[:GROUP] or :GROUP, as numbers or as names from the guest's
    /// /etc/passwd and /etc/group.
    #[arg(value_name = "OWNER[:GROUP]")]
    pub owner: String,

    /// Guest paths.
    #[arg(value_name = "PATH", required = true)]
    pub paths: Vec<String>,
}

/// Arguments of `mkdir`.
#[derive(Debug, Args)]
pub struct MkdirArgs {
    #[command(flatten)]
    pub target: TargetArgs,

    #[command(flatten)]
    pub undo: UndoDirArgs,

    /// Guest directories to create.
    #[arg(value_name = "PATH", required = true)]
    pub paths: Vec<String>,

    /// Create missing parents too; an existing directory is not an error.
    #[arg(short = 'p', long)]
    pub parents: bool,

    /// Mode of new directories, octal.
    #[arg(short = 'm', long, value_name = "MODE", value_parser = parse_mode, default_value = "0755")]
    pub mode: u32,

    /// Owner of new directories as UID:GID.
    #[arg(long, value_name = "UID:GID")]
    pub owner: Option<String>,
}

/// Arguments of `ln`.
#[derive(Debug, Args)]
pub struct LnArgs {
    #[command(flatten)]
    pub target: TargetArgs,

    #[command(flatten)]
    pub undo: UndoDirArgs,

    /// Make a symbolic link (the only kind supported; required, as with
    /// coreutils' `ln -s`).
    #[arg(short = 's', long = "symbolic", required = true)]
    pub symbolic: bool,

    /// What the link points to, stored as given.
    #[arg(value_name = "LINK_TARGET")]
    pub link_target: String,

    /// Guest path of the new link.
    #[arg(value_name = "LINK")]
    pub link: String,
}

/// Arguments of `rm`.
#[derive(Debug, Args)]
pub struct RmArgs {
    #[command(flatten)]
    pub target: TargetArgs,

    #[command(flatten)]
    pub undo: UndoDirArgs,

    /// Guest paths (files, symlinks, empty directories).
    #[arg(value_name = "PATH", required = true)]
    pub paths: Vec<String>,
}

/// Parses an octal mode such as `644`, `0644` or `0o644`.
pub fn parse_mode(s: &str) -> Result<u32, String> {
    let digits = s.strip_prefix("0o").unwrap_or(s);
    match u32::from_str_radix(digits, 8) {
        Ok(m) if m <= 0o7777 && !digits.is_empty() => Ok(m),
        _ => Err(format!("{s:?} is not an octal mode between 0 and 7777")),
    }
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
