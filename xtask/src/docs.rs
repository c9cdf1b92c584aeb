//! Man pages and shell completions, generated from the binary's own clap
//! definition (`rescue_disk::command()`), so they can never disagree with
//! what the binary parses.

use std::fs;
use std::path::{Path, PathBuf};

use anyhow::{Context, Result};
use clap_complete::Shell;

/// Writes `rescue-disk.1` and one page per subcommand (`rescue-disk-inspect.1`)
/// into `dir/man1/`, and completions for bash, zsh, fish, elvish and
/// PowerShell into `dir/completions/`. Returns the files written.
pub fn generate(dir: &Path) -> Result<Vec<PathBuf>> {
    let man_dir = dir.join("man1");
    let comp_dir = dir.join("completions");
    fs::create_dir_all(&man_dir).with_context(|| format!("creating {}", man_dir.display()))?;
    fs::create_dir_all(&comp_dir).with_context(|| format!("creating {}", comp_dir.display()))?;
    let mut written = Vec::new();

    let cmd = rescue_disk::command();
    let mut pages = vec![(String::from("rescue-disk"), cmd.clone())];
    for sub in cmd.get_subcommands().filter(|s| !s.is_hide_set()) {
        let name = format!("rescue-disk-{}", sub.get_name());
        pages.push((name.clone(), sub.clone().name(name)));
    }
    for (name, page) in pages {
        let mut buf = Vec::new();
        clap_mangen::Man::new(page).render(&mut buf)?;
        let path = man_dir.join(format!("{name}.1"));
        fs::write(&path, buf).with_context(|| format!("writing {}", path.display()))?;
        written.push(path);
    }

    for shell in [
        Shell::Bash,
        Shell::Zsh,
        Shell::Fish,
        Shell::Elvish,
        Shell::PowerShell,
    ] {
        let mut cmd = rescue_disk::command();
        let path = clap_complete::generate_to(shell, &mut cmd, "rescue-disk", &comp_dir)
            .with_context(|| format!("generating {shell} completions"))?;
        written.push(path);
    }
    Ok(written)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn man_pages_and_completions_cover_every_subcommand() {
        let dir = tempfile::tempdir().unwrap();
        let files = generate(dir.path()).unwrap();
        let main = fs::read_to_string(dir.path().join("man1/rescue-disk.1")).unwrap();
        assert!(main.contains(".TH rescue-disk"), "{main}");
        let inspect = fs::read_to_string(dir.path().join("man1/rescue-disk-inspect.1")).unwrap();
        assert!(inspect.contains("\\-\\-json"), "{inspect}");
        let bash = fs::read_to_string(dir.path().join("completions/rescue-disk.bash")).unwrap();
        assert!(
            bash.contains("inspect") && bash.contains("--format"),
            "{bash}"
        );
        let pages = 1 + rescue_disk::command()
            .get_subcommands()
            .filter(|s| !s.is_hide_set())
            .count();
        assert!(pages >= 4, "inspect, check and checks at least");
        assert_eq!(files.len(), pages + 5);
        for sub in ["inspect", "check", "checks"] {
            assert!(
                dir.path()
                    .join(format!("man1/rescue-disk-{sub}.1"))
                    .exists(),
                "{sub}"
            );
        }
    }
}
