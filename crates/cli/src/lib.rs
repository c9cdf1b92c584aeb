//! The command-line interface definition of `rescue-disk`, as a library so
//! that `xtask` can generate man pages and shell completions from the very
//! same clap structures the binary parses.
//!
//! Must never: do I/O or hold logic; the binary (`src/main.rs`) runs commands.

pub mod cli;

/// The clap command of `rescue-disk`, for documentation generators.
pub fn command() -> clap::Command {
    <cli::Cli as clap::CommandFactory>::command()
}
