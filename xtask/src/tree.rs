//! Guest trees: the committed recipe under `fixtures/trees/<name>/`, its
//! metadata manifest `fixtures/trees/<name>.meta`, and the staged copy an
//! image is built from.
//!
//! Git stores neither owners, nor most modes, nor empty directories, nor
//! (portably) symbolic links, so the manifest carries them:
//!
//! ```text
//! # comment
//! etc/shadow 0640 0 42            metadata of a committed file or directory
//! dir run 0755 0 0                a directory git cannot store (created empty)
//! link bin usr/bin                a symbolic link (root-owned, mode 0777)
//! ```
//!
//! Everything the manifest does not mention is root:root, directories 0755,
//! files 0644 (0755 when committed executable). Text files may hold
//! `@TOKEN@` placeholders for values that depend on the layout (UUIDs, GRUB
//! device hints); staging substitutes them, and a line holding a token the
//! layout marks as absent (for example the ESP on a whole-disk layout) is
//! dropped.
//!
//! Must never: write outside the staging directory, follow a symlink of the
//! guest tree to the host (links are resolved inside the tree only).

use std::collections::BTreeMap;
use std::fs;
use std::os::unix::fs::{symlink, PermissionsExt};
use std::path::{Path, PathBuf};

use anyhow::{bail, ensure, Context, Result};

/// Owner and permission bits of one inode of the guest.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Meta {
    /// Permission bits including setuid/setgid/sticky (no file type bits).
    pub mode: u32,
    /// Numeric owner as the guest's passwd knows it.
    pub uid: u32,
    /// Numeric group as the guest's group file knows it.
    pub gid: u32,
}

impl Meta {
    /// root:root with the given permission bits.
    pub const fn root(mode: u32) -> Meta {
        Meta {
            mode,
            uid: 0,
            gid: 0,
        }
    }
}

/// One line of a manifest.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum ManifestEntry {
    /// Metadata for a committed path (file or directory).
    Meta {
        /// Path relative to the guest root.
        path: String,
        /// Owner and mode.
        meta: Meta,
    },
    /// A directory created at staging time (git cannot store empty ones).
    Dir {
        /// Path relative to the guest root.
        path: String,
        /// Owner and mode.
        meta: Meta,
    },
    /// A symbolic link created at staging time.
    Link {
        /// Path relative to the guest root.
        path: String,
        /// Link target, stored verbatim (may be absolute: it is a guest path).
        target: String,
    },
}

impl ManifestEntry {
    /// The guest path the entry describes.
    pub fn path(&self) -> &str {
        match self {
            ManifestEntry::Meta { path, .. }
            | ManifestEntry::Dir { path, .. }
            | ManifestEntry::Link { path, .. } => path,
        }
    }
}

/// Directory holding the committed trees.
pub fn trees_dir() -> PathBuf {
    crate::fixtures_source_dir().join("trees")
}

/// Names of the committed trees.
pub const TREES: [&str; 2] = ["debian12", "rhel9"];

/// Checks that `path` is a clean relative guest path usable in a debugfs
/// script: no leading slash, no `.`/`..` component, no whitespace or quotes.
pub fn check_rel_path(path: &str) -> Result<()> {
    ensure!(!path.is_empty(), "empty guest path");
    ensure!(
        !path.starts_with('/'),
        "guest path {path:?} must be relative"
    );
    ensure!(
        !path.chars().any(|c| c.is_whitespace()
            || c == '"'
            || c == '\''
            || c == '\\'
            || c.is_control()),
        "guest path {path:?} holds whitespace, a quote or a backslash"
    );
    for comp in path.split('/') {
        ensure!(
            !comp.is_empty() && comp != "." && comp != "..",
            "guest path {path:?} has an empty, `.` or `..` component"
        );
    }
    Ok(())
}

fn parse_mode(s: &str, line: usize) -> Result<u32> {
    let m =
        u32::from_str_radix(s, 8).with_context(|| format!("line {line}: bad octal mode {s:?}"))?;
    ensure!(m <= 0o7777, "line {line}: mode {s} has bits beyond 07777");
    Ok(m)
}

fn parse_id(s: &str, line: usize) -> Result<u32> {
    s.parse()
        .with_context(|| format!("line {line}: bad numeric id {s:?}"))
}

/// Parses a manifest (see the module documentation for the syntax).
pub fn parse_manifest(text: &str) -> Result<Vec<ManifestEntry>> {
    let mut out = Vec::new();
    for (i, raw) in text.lines().enumerate() {
        let n = i + 1;
        let line = raw.split('#').next().unwrap_or("").trim();
        if line.is_empty() {
            continue;
        }
        let f: Vec<&str> = line.split_whitespace().collect();
        let entry = match f.as_slice() {
            ["dir", path, mode, uid, gid] => ManifestEntry::Dir {
                path: path.to_string(),
                meta: Meta {
                    mode: parse_mode(mode, n)?,
                    uid: parse_id(uid, n)?,
                    gid: parse_id(gid, n)?,
                },
            },
            ["link", path, target] => ManifestEntry::Link {
                path: path.to_string(),
                target: target.to_string(),
            },
            [path, mode, uid, gid] => ManifestEntry::Meta {
                path: path.to_string(),
                meta: Meta {
                    mode: parse_mode(mode, n)?,
                    uid: parse_id(uid, n)?,
                    gid: parse_id(gid, n)?,
                },
            },
            _ => bail!("line {n}: expected `PATH MODE UID GID`, `dir PATH MODE UID GID` or `link PATH TARGET`: {raw:?}"),
        };
        check_rel_path(entry.path()).with_context(|| format!("line {n}"))?;
        out.push(entry);
    }
    Ok(out)
}

/// Reads and parses `fixtures/trees/<tree>.meta`.
pub fn load_manifest(tree: &str) -> Result<Vec<ManifestEntry>> {
    let path = trees_dir().join(format!("{tree}.meta"));
    let text = fs::read_to_string(&path).with_context(|| format!("reading {}", path.display()))?;
    parse_manifest(&text).with_context(|| format!("parsing {}", path.display()))
}

/// What a committed tree holds: every file and directory, sorted, with
/// paths relative to the tree root.
#[derive(Debug)]
pub struct RecipeFile {
    /// Path relative to the tree root.
    pub path: String,
    /// True for directories.
    pub is_dir: bool,
    /// True when the committed file is executable (becomes mode 0755).
    pub executable: bool,
}

/// Walks a committed tree. Symbolic links in the checkout are refused:
/// they belong in the manifest, where they cannot point at the host.
pub fn walk_recipe(tree: &str) -> Result<Vec<RecipeFile>> {
    let root = trees_dir().join(tree);
    let mut out = Vec::new();
    walk(&root, &root, &mut out)?;
    out.sort_by(|a, b| a.path.cmp(&b.path));
    Ok(out)
}

fn walk(root: &Path, dir: &Path, out: &mut Vec<RecipeFile>) -> Result<()> {
    let mut entries: Vec<_> = fs::read_dir(dir)
        .with_context(|| format!("reading directory {}", dir.display()))?
        .collect::<std::io::Result<_>>()
        .with_context(|| format!("reading directory {}", dir.display()))?;
    entries.sort_by_key(|e| e.file_name());
    for e in entries {
        let p = e.path();
        let md = fs::symlink_metadata(&p).with_context(|| format!("stat {}", p.display()))?;
        let rel = p
            .strip_prefix(root)
            .context("walking outside the tree")?
            .to_str()
            .with_context(|| format!("non-UTF-8 path {}", p.display()))?
            .to_string();
        check_rel_path(&rel)?;
        if md.file_type().is_symlink() {
            bail!(
                "{} is a symbolic link in the checkout; declare it as `link {rel} TARGET` in the manifest instead",
                p.display()
            );
        } else if md.is_dir() {
            out.push(RecipeFile {
                path: rel,
                is_dir: true,
                executable: false,
            });
            walk(root, &p, out)?;
        } else if md.is_file() {
            out.push(RecipeFile {
                path: rel,
                is_dir: false,
                executable: md.permissions().mode() & 0o111 != 0,
            });
        } else {
            bail!("{} is neither a file nor a directory", p.display());
        }
    }
    Ok(())
}

/// Token values for one layout. `None` marks a volume the layout does not
/// have: lines mentioning that token are removed.
pub type Tokens = BTreeMap<&'static str, Option<String>>;

/// Replaces `@TOKEN@` placeholders line by line. Unknown tokens are an
/// error (a typo in a recipe must not reach an image).
pub fn substitute(text: &str, tokens: &Tokens) -> Result<String> {
    let mut out = String::with_capacity(text.len());
    'lines: for (i, line) in text.split_inclusive('\n').enumerate() {
        let mut result = String::with_capacity(line.len());
        let mut rest = line;
        while let Some(start) = rest.find('@') {
            let after = &rest[start + 1..];
            let name_len = after
                .char_indices()
                .find(|&(j, c)| {
                    !(c.is_ascii_uppercase() || (j > 0 && (c.is_ascii_digit() || c == '_')))
                })
                .map_or(after.len(), |(j, _)| j);
            if name_len > 0 && after[name_len..].starts_with('@') {
                let name = &after[..name_len];
                match tokens.get(name) {
                    Some(Some(v)) => {
                        result.push_str(&rest[..start]);
                        result.push_str(v);
                        rest = &after[name_len + 1..];
                    }
                    Some(None) => continue 'lines,
                    None => bail!("line {}: unknown template token @{name}@", i + 1),
                }
            } else {
                result.push_str(&rest[..=start]);
                rest = after;
            }
        }
        result.push_str(rest);
        out.push_str(&result);
    }
    Ok(out)
}

/// First line of a GRUB environment block.
const GRUBENV_HEADER: &str = "# GRUB Environment Block\n";

/// A grubenv file is exactly 1024 bytes, variables padded with `#`, as
/// `grub-editenv` writes it; substitution changes the variables' length, so
/// the padding is recomputed.
fn repad_grubenv(text: &str) -> Result<Vec<u8>> {
    let body = text.trim_end_matches('#');
    ensure!(
        body.len() <= 1024,
        "grubenv variables take {} bytes, more than 1024",
        body.len()
    );
    let mut out = body.as_bytes().to_vec();
    out.resize(1024, b'#');
    Ok(out)
}

/// Kind of a staged inode.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Kind {
    /// Regular file.
    File,
    /// Directory.
    Dir,
    /// Symbolic link.
    Symlink,
}

/// A guest tree copied into a private directory, templates substituted,
/// manifest applied, ready to be edited (variants) and built into volumes.
pub struct StagedTree {
    root: PathBuf,
    meta: BTreeMap<String, Meta>,
    tokens: Tokens,
}

impl StagedTree {
    /// Copies tree `tree` into `dest` (which must not exist yet).
    pub fn stage(tree: &str, tokens: Tokens, dest: &Path) -> Result<StagedTree> {
        let src = trees_dir().join(tree);
        fs::create_dir(dest).with_context(|| format!("creating {}", dest.display()))?;
        let mut meta = BTreeMap::new();
        for f in walk_recipe(tree)? {
            let to = dest.join(&f.path);
            if f.is_dir {
                fs::create_dir(&to).with_context(|| format!("creating {}", to.display()))?;
                continue;
            }
            let from = src.join(&f.path);
            let bytes = fs::read(&from).with_context(|| format!("reading {}", from.display()))?;
            let bytes = match std::str::from_utf8(&bytes) {
                Ok(text) if text.contains('@') => {
                    let out = substitute(text, &tokens)
                        .with_context(|| format!("substituting tokens in {}", from.display()))?;
                    if out.starts_with(GRUBENV_HEADER) {
                        repad_grubenv(&out)
                            .with_context(|| format!("re-padding {}", from.display()))?
                    } else {
                        out.into_bytes()
                    }
                }
                _ => bytes,
            };
            fs::write(&to, bytes).with_context(|| format!("writing {}", to.display()))?;
            if f.executable {
                meta.insert(f.path.clone(), Meta::root(0o755));
            }
        }
        let mut staged = StagedTree {
            root: dest.to_path_buf(),
            meta,
            tokens,
        };
        for e in load_manifest(tree)? {
            match e {
                ManifestEntry::Meta { path, meta } => {
                    ensure!(
                        staged.root.join(&path).exists(),
                        "{tree}.meta names {path}, which the tree does not have"
                    );
                    staged.meta.insert(path, meta);
                }
                ManifestEntry::Dir { path, meta } => staged.mkdir(&path, meta)?,
                ManifestEntry::Link { path, target } => staged.symlink(&path, &target)?,
            }
        }
        Ok(staged)
    }

    /// Host path of the staging directory (the guest's `/`).
    pub fn root(&self) -> &Path {
        &self.root
    }

    /// Value of a layout token (`ROOT_UUID`, `ESP_UUID`, ...), if the
    /// layout defines it.
    pub fn token(&self, name: &str) -> Option<&str> {
        self.tokens.get(name).and_then(|v| v.as_deref())
    }

    /// Host path of guest path `rel` inside the staging directory.
    pub fn path(&self, rel: &str) -> Result<PathBuf> {
        let rel = rel.trim_start_matches('/');
        check_rel_path(rel)?;
        Ok(self.root.join(rel))
    }

    /// Reads a guest file (through symlinks resolved inside the tree).
    pub fn read_to_string(&self, rel: &str) -> Result<String> {
        let p = self
            .resolve(rel)
            .with_context(|| format!("guest path /{rel} does not resolve inside the tree"))?;
        fs::read_to_string(&p).with_context(|| format!("reading guest file /{rel}"))
    }

    /// Creates or replaces a guest file (parents are created 0755 root).
    pub fn write(&mut self, rel: &str, contents: impl AsRef<[u8]>) -> Result<()> {
        let p = self.path(rel)?;
        if let Some(parent) = p.parent() {
            fs::create_dir_all(parent).with_context(|| format!("creating {}", parent.display()))?;
        }
        fs::write(&p, contents).with_context(|| format!("writing guest file /{rel}"))
    }

    /// Appends text to a guest file.
    pub fn append(&mut self, rel: &str, text: &str) -> Result<()> {
        let mut s = self.read_to_string(rel)?;
        s.push_str(text);
        self.write(rel, s)
    }

    /// Replaces the first occurrence of `from` in a guest file; fails when
    /// `from` is absent so that a stale variant cannot silently do nothing.
    pub fn replace(&mut self, rel: &str, from: &str, to: &str) -> Result<()> {
        let s = self.read_to_string(rel)?;
        ensure!(
            s.contains(from),
            "guest file /{rel} does not contain {from:?}"
        );
        self.write(rel, s.replacen(from, to, 1))
    }

    /// Removes a guest file, link or directory (recursively).
    pub fn remove(&mut self, rel: &str) -> Result<()> {
        let p = self.path(rel)?;
        let md =
            fs::symlink_metadata(&p).with_context(|| format!("guest path /{rel} is missing"))?;
        if md.is_dir() {
            fs::remove_dir_all(&p)
        } else {
            fs::remove_file(&p)
        }
        .with_context(|| format!("removing guest path /{rel}"))?;
        let prefix = format!("{}/", rel.trim_start_matches('/'));
        self.meta
            .retain(|k, _| k != rel.trim_start_matches('/') && !k.starts_with(&prefix));
        Ok(())
    }

    /// Creates a symbolic link (replacing whatever is there).
    pub fn symlink(&mut self, rel: &str, target: &str) -> Result<()> {
        let p = self.path(rel)?;
        if fs::symlink_metadata(&p).is_ok() {
            self.remove(rel)?;
        }
        if let Some(parent) = p.parent() {
            fs::create_dir_all(parent).with_context(|| format!("creating {}", parent.display()))?;
        }
        symlink(target, &p).with_context(|| format!("creating guest symlink /{rel}"))
    }

    /// Creates a directory (and parents) with the given metadata.
    pub fn mkdir(&mut self, rel: &str, meta: Meta) -> Result<()> {
        let p = self.path(rel)?;
        fs::create_dir_all(&p).with_context(|| format!("creating guest directory /{rel}"))?;
        self.meta
            .insert(rel.trim_start_matches('/').to_string(), meta);
        Ok(())
    }

    /// Sets owner and mode of an existing guest path.
    pub fn set_meta(&mut self, rel: &str, meta: Meta) -> Result<()> {
        let p = self.path(rel)?;
        ensure!(
            fs::symlink_metadata(&p).is_ok(),
            "guest path /{rel} is missing"
        );
        self.meta
            .insert(rel.trim_start_matches('/').to_string(), meta);
        Ok(())
    }

    /// Current metadata of a guest path (manifest, edits or defaults).
    pub fn meta(&self, rel: &str) -> Result<Meta> {
        let rel = rel.trim_start_matches('/');
        let p = self.path(rel)?;
        let md =
            fs::symlink_metadata(&p).with_context(|| format!("guest path /{rel} is missing"))?;
        Ok(self.meta_of(rel, kind_of(&md)))
    }

    fn meta_of(&self, rel: &str, kind: Kind) -> Meta {
        self.meta.get(rel).copied().unwrap_or(match kind {
            Kind::Symlink => Meta::root(0o777),
            Kind::Dir => Meta::root(0o755),
            Kind::File => Meta::root(0o644),
        })
    }

    /// Resolves a guest path to a host path, following symbolic links
    /// *inside* the staged tree (absolute targets are taken relative to the
    /// guest root). Returns `None` for a dangling path or a loop.
    pub fn resolve(&self, rel: &str) -> Option<PathBuf> {
        resolve_in_root(&self.root, rel)
    }

    /// Lists every inode below guest directory `dir_rel` ("" for the root),
    /// sorted, as (path relative to `dir_rel`, kind, metadata).
    pub fn inodes_under(&self, dir_rel: &str) -> Result<Vec<(String, Kind, Meta)>> {
        let base = if dir_rel.is_empty() {
            self.root.clone()
        } else {
            self.path(dir_rel)?
        };
        self.inodes_in(&base, dir_rel)
    }

    /// Like [`StagedTree::inodes_under`] for a host directory holding what
    /// was guest directory `guest_prefix` (after [`StagedTree::move_contents`]).
    pub(crate) fn inodes_in(
        &self,
        base: &Path,
        guest_prefix: &str,
    ) -> Result<Vec<(String, Kind, Meta)>> {
        let prefix = guest_prefix.trim_matches('/');
        let mut out = Vec::new();
        let mut stack = vec![base.to_path_buf()];
        while let Some(dir) = stack.pop() {
            for e in fs::read_dir(&dir).with_context(|| format!("reading {}", dir.display()))? {
                let p = e?.path();
                let md = fs::symlink_metadata(&p)?;
                let rel_in_vol = p
                    .strip_prefix(base)
                    .context("walking outside the staged tree")?
                    .to_str()
                    .context("non-UTF-8 staged path")?
                    .to_string();
                let guest_rel = if prefix.is_empty() {
                    rel_in_vol.clone()
                } else {
                    format!("{prefix}/{rel_in_vol}")
                };
                let kind = kind_of(&md);
                if kind == Kind::Dir {
                    stack.push(p.clone());
                }
                out.push((rel_in_vol, kind, self.meta_of(&guest_rel, kind)));
            }
        }
        out.sort_by(|a, b| a.0.cmp(&b.0));
        Ok(out)
    }

    /// Moves everything below guest directory `mount` into `dest`, leaving
    /// the (now empty) mount point behind: this is how one staged tree is
    /// split into the filesystems of a layout.
    pub(crate) fn move_contents(&self, mount: &str, dest: &Path) -> Result<()> {
        let src = self.path(mount)?;
        fs::create_dir_all(dest).with_context(|| format!("creating {}", dest.display()))?;
        if !src.is_dir() {
            fs::create_dir_all(&src)?;
            return Ok(());
        }
        for e in fs::read_dir(&src).with_context(|| format!("reading {}", src.display()))? {
            let e = e?;
            fs::rename(e.path(), dest.join(e.file_name()))
                .with_context(|| format!("moving {} to {}", e.path().display(), dest.display()))?;
        }
        Ok(())
    }
}

fn kind_of(md: &fs::Metadata) -> Kind {
    if md.file_type().is_symlink() {
        Kind::Symlink
    } else if md.is_dir() {
        Kind::Dir
    } else {
        Kind::File
    }
}

/// Resolves guest path `rel` under `root` (see [`StagedTree::resolve`]).
pub fn resolve_in_root(root: &Path, rel: &str) -> Option<PathBuf> {
    let mut pending: Vec<String> = rel
        .split('/')
        .filter(|c| !c.is_empty() && *c != ".")
        .rev()
        .map(str::to_string)
        .collect();
    let mut parts: Vec<String> = Vec::new();
    let mut hops = 0;
    while let Some(comp) = pending.pop() {
        if comp == ".." {
            parts.pop();
            continue;
        }
        let mut candidate = root.to_path_buf();
        candidate.extend(&parts);
        candidate.push(&comp);
        match fs::symlink_metadata(&candidate) {
            Ok(md) if md.file_type().is_symlink() => {
                hops += 1;
                if hops > 40 {
                    return None;
                }
                let target = fs::read_link(&candidate).ok()?;
                let target = target.to_str()?;
                if target.starts_with('/') {
                    parts.clear();
                }
                for c in target
                    .split('/')
                    .filter(|c| !c.is_empty() && *c != ".")
                    .rev()
                {
                    pending.push(c.to_string());
                }
            }
            Ok(_) => parts.push(comp),
            Err(_) => return None,
        }
    }
    let mut out = root.to_path_buf();
    out.extend(&parts);
    Some(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn tokens() -> Tokens {
        let mut t = Tokens::new();
        t.insert("ROOT_UUID", Some("1234".into()));
        t.insert("ESP_UUID", None);
        t
    }

    #[test]
    fn substitute_replaces_and_drops_lines() {
        let text = "UUID=@ROOT_UUID@ / ext4\nUUID=@ESP_UUID@ /boot/efi vfat\nmail a@b.c @x@\n";
        let out = substitute(text, &tokens()).unwrap();
        assert_eq!(out, "UUID=1234 / ext4\nmail a@b.c @x@\n");
    }

    #[test]
    fn substitute_refuses_unknown_tokens() {
        assert!(substitute("@ROOT_UUIDD@\n", &tokens()).is_err());
    }

    #[test]
    fn manifest_syntax() {
        let m =
            parse_manifest("# c\netc/shadow 0640 0 42\ndir run 0755 0 0 # x\nlink bin usr/bin\n")
                .unwrap();
        assert_eq!(m.len(), 3);
        assert!(parse_manifest("etc/shadow 0999 0 0").is_err());
        assert!(parse_manifest("../x 0644 0 0").is_err());
        assert!(parse_manifest("etc/x 0644 0").is_err());
    }
}
