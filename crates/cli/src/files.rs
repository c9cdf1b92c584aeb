//! The guest file commands: `cat`, `ls`, `get` (read-only) and `put`,
//! `edit`, `chmod`, `chown`, `mkdir`, `ln`, `rm` (through a write session
//! and its undo journal).
//!
//! Guest paths are resolved through the guest's own mount table, so
//! `/boot/efi/EFI/debian/grub.cfg` lands on the ESP.

use std::io::{Read, Write};
use std::os::unix::ffi::OsStrExt;
use std::os::unix::fs::DirBuilderExt;
use std::path::Path;

use anyhow::{bail, Context, Result};
use rescue_disk::cli::{
    CatArgs, ChmodArgs, ChownArgs, EditArgs, GetArgs, ImageFormat, LnArgs, LsArgs, MkdirArgs,
    PutArgs, RmArgs, TargetArgs, UndoDirArgs,
};
use rescue_guest::{FileType, Guest, GuestPath, Metadata};
use rescue_io::Format;
use rescue_write::{NewFile, Op, Session, SessionOptions};

use crate::Outcome;

/// Largest guest file `cat`, `get` and `edit` read.
const MAX_FILE_BYTES: u64 = 1 << 30;
/// Largest directory `ls` lists.
const MAX_DIR_ENTRIES: usize = 1_000_000;

/// The guest of a target opened read-only (image, device or mounted tree).
fn read_guest(target: &TargetArgs) -> Result<Guest> {
    let path = target.target.display().to_string();
    if std::fs::metadata(&target.target).is_ok_and(|m| m.is_dir()) {
        let disk = rescue_volumes::Disk::default();
        let identified = rescue_guest::identify_tree(&target.target, &disk)
            .with_context(|| format!("opening the guest tree {path}"))?;
        return Ok(identified.assembly.guest);
    }
    let opened = crate::inspect::open_target(target)?;
    let disk = rescue_volumes::discover(opened.device.clone())
        .with_context(|| format!("discovering volumes on {path}"))?;
    let assembly =
        rescue_guest::assemble(&disk).with_context(|| format!("assembling the guest on {path}"))?;
    if assembly.root.is_none() {
        bail!("no root filesystem found on {path}: `rescue-disk inspect {path}` shows what is on the disk");
    }
    Ok(assembly.guest)
}

fn guest_path(s: &str) -> Result<GuestPath> {
    if !s.starts_with('/') {
        bail!("{s:?} is not an absolute guest path: guest paths start with / (e.g. /etc/fstab)");
    }
    if s.as_bytes().contains(&0) {
        bail!("guest path contains a NUL byte");
    }
    Ok(GuestPath::new(s))
}

/// Runs `cat`.
pub fn cat(args: &CatArgs) -> Result<Outcome> {
    let guest = read_guest(&args.target)?;
    let mut out = std::io::stdout().lock();
    for p in &args.paths {
        let data = guest.read_file(&guest_path(p)?, MAX_FILE_BYTES)?;
        out.write_all(&data)?;
    }
    out.flush()?;
    Ok(Outcome::Ok)
}

/// `ls -l`'s type letter and permission string.
fn mode_string(meta: &Metadata) -> String {
    let t = match meta.file_type {
        FileType::Regular => '-',
        FileType::Directory => 'd',
        FileType::Symlink => 'l',
        FileType::CharDevice => 'c',
        FileType::BlockDevice => 'b',
        FileType::Fifo => 'p',
        FileType::Socket => 's',
    };
    let m = meta.mode;
    let bit = |mask: u32, c: char| if m & mask != 0 { c } else { '-' };
    let exec = |x: u32, special: u32, set: char, unset: char| match (m & x != 0, m & special != 0) {
        (true, true) => set,
        (false, true) => unset,
        (true, false) => 'x',
        (false, false) => '-',
    };
    let mut s = String::with_capacity(10);
    s.push(t);
    s.push(bit(0o400, 'r'));
    s.push(bit(0o200, 'w'));
    s.push(exec(0o100, 0o4000, 's', 'S'));
    s.push(bit(0o040, 'r'));
    s.push(bit(0o020, 'w'));
    s.push(exec(0o010, 0o2000, 's', 'S'));
    s.push(bit(0o004, 'r'));
    s.push(bit(0o002, 'w'));
    s.push(exec(0o001, 0o1000, 't', 'T'));
    s
}

/// `YYYY-MM-DD HH:MM` in UTC.
pub fn utc_minutes(secs: i64) -> String {
    let t = rescue_io::time::utc(secs);
    format!(
        "{:04}-{:02}-{:02} {:02}:{:02}",
        t.year, t.month, t.day, t.hour, t.minute
    )
}

/// User and group names from the guest's own files.
struct Names {
    passwd: Option<rescue_config::accounts::Passwd>,
    group: Option<rescue_config::accounts::Group>,
}

impl Names {
    fn load(guest: &Guest) -> Names {
        let read = |p: &str| guest.read_file(&GuestPath::new(p), 64 << 20).ok();
        Names {
            passwd: read("/etc/passwd").map(|d| rescue_config::accounts::Passwd::parse(&d)),
            group: read("/etc/group").map(|d| rescue_config::accounts::Group::parse(&d)),
        }
    }

    fn user(&self, uid: u32) -> String {
        self.passwd
            .as_ref()
            .and_then(|p| p.get_by_uid(uid))
            .map_or_else(|| uid.to_string(), |e| e.name().to_owned())
    }

    fn group(&self, gid: u32) -> String {
        self.group
            .as_ref()
            .and_then(|g| g.get_by_gid(gid))
            .map_or_else(|| gid.to_string(), |e| e.name().to_owned())
    }

    fn uid_of(&self, s: &str) -> Result<u32> {
        if let Ok(n) = s.parse() {
            return Ok(n);
        }
        self.passwd
            .as_ref()
            .and_then(|p| p.get(s))
            .map(|e| e.uid)
            .with_context(|| format!("no user {s:?} in the guest's /etc/passwd; give a number"))
    }

    fn gid_of(&self, s: &str) -> Result<u32> {
        if let Ok(n) = s.parse() {
            return Ok(n);
        }
        self.group
            .as_ref()
            .and_then(|g| g.get(s))
            .map(|e| e.gid)
            .with_context(|| format!("no group {s:?} in the guest's /etc/group; give a number"))
    }

    /// `OWNER[:GROUP]`, `:GROUP` or `OWNER:` (group left alone).
    fn owner(&self, spec: &str) -> Result<(Option<u32>, Option<u32>)> {
        let (u, g) = match spec.split_once(':') {
            Some((u, g)) => (u, Some(g)),
            None => (spec, None),
        };
        let uid = if u.is_empty() {
            None
        } else {
            Some(self.uid_of(u)?)
        };
        let gid = match g {
            Some(g) if !g.is_empty() => Some(self.gid_of(g)?),
            _ => None,
        };
        if uid.is_none() && gid.is_none() {
            bail!("{spec:?} names neither an owner nor a group");
        }
        Ok((uid, gid))
    }
}

/// Runs `ls`.
pub fn ls(args: &LsArgs) -> Result<Outcome> {
    let guest = read_guest(&args.target)?;
    let path = guest_path(&args.path)?;
    let meta = guest.metadata(&path)?;
    let entries: Vec<(Vec<u8>, GuestPath)> = if meta.is_dir() {
        let mut v: Vec<_> = guest
            .read_dir(&path, MAX_DIR_ENTRIES)?
            .into_iter()
            .map(|e| {
                let full = path.join(&e.name);
                (e.name, full)
            })
            .collect();
        v.sort();
        v
    } else {
        vec![(path.as_bytes().to_vec(), path.clone())]
    };
    let names = (args.long && !args.numeric).then(|| Names::load(&guest));
    let mut out = std::io::stdout().lock();
    for (name, full) in entries {
        let shown = String::from_utf8_lossy(&name);
        if !args.long {
            writeln!(out, "{shown}")?;
            continue;
        }
        let m = guest.symlink_metadata(&full)?;
        let (user, group) = match &names {
            Some(n) => (n.user(m.uid), n.group(m.gid)),
            None => (m.uid.to_string(), m.gid.to_string()),
        };
        let time = m.modified_unix_seconds.map_or("-".into(), utc_minutes);
        let link = if m.is_symlink() {
            format!(
                " -> {}",
                String::from_utf8_lossy(&guest.read_link(&full).unwrap_or_default())
            )
        } else {
            String::new()
        };
        writeln!(
            out,
            "{} {user:<8} {group:<8} {:>10} {time} {shown}{link}",
            mode_string(&m),
            m.size_in_bytes
        )?;
    }
    out.flush()?;
    Ok(Outcome::Ok)
}

/// Runs `get`.
pub fn get(args: &GetArgs) -> Result<Outcome> {
    let guest = read_guest(&args.target)?;
    let path = guest_path(&args.path)?;
    let data = guest.read_file(&path, MAX_FILE_BYTES)?;
    if args.dest == Path::new("-") {
        let mut out = std::io::stdout().lock();
        out.write_all(&data)?;
        out.flush()?;
        return Ok(Outcome::Ok);
    }
    let mut dest = args.dest.clone();
    if dest.is_dir() {
        let name = path.file_name().context("the guest path names no file")?;
        dest.push(std::ffi::OsStr::from_bytes(name));
    }
    let mut options = std::fs::OpenOptions::new();
    options.write(true);
    if args.force {
        options.create(true).truncate(true);
    } else {
        options.create_new(true);
    }
    let mut file = options.open(&dest).with_context(|| {
        if dest.exists() && !args.force {
            format!("{} exists; use --force to overwrite it", dest.display())
        } else {
            format!("creating {}", dest.display())
        }
    })?;
    file.write_all(&data)?;
    file.sync_all()?;
    eprintln!(
        "copied {} ({} bytes) to {}",
        path,
        data.len(),
        dest.display()
    );
    Ok(Outcome::Ok)
}

fn format_of(target: &TargetArgs) -> Option<Format> {
    target.format.map(|f| match f {
        ImageFormat::Raw => Format::Raw,
        ImageFormat::Qcow2 => Format::Qcow2,
    })
}

/// The undo directory: the option, else the default for this user.
pub fn undo_dir(args: &UndoDirArgs) -> std::path::PathBuf {
    args.undo_dir
        .clone()
        .unwrap_or_else(rescue_io::default_undo_dir)
}

/// Opens a write session on `target`.
pub fn session(target: &TargetArgs, undo: &UndoDirArgs) -> Result<Session> {
    let path = target.target.display().to_string();
    Session::open(
        &target.target,
        &SessionOptions {
            format: format_of(target),
            undo_dir: undo_dir(undo),
        },
    )
    .with_context(|| format!("opening {path} for writing"))
}

/// Applies `ops` in one session and commits it, printing what was done
/// on stderr. On a failure the session is still committed, so that `undo`
/// has a complete record of whatever was written before it.
fn apply_all(
    target: &TargetArgs,
    undo: &UndoDirArgs,
    build: impl FnOnce(&Session) -> Result<Vec<Op>>,
) -> Result<Outcome> {
    let mut s = session(target, undo)?;
    let ops = match build(&s) {
        Ok(ops) => ops,
        Err(e) => {
            // Nothing was written: this removes the empty undo file.
            s.commit().context("closing the write session")?;
            return Err(e);
        }
    };
    let mut failure = None;
    for op in &ops {
        match s.apply(op) {
            Ok(change) => eprintln!("{} (on {})", change.op, change.volume),
            Err(e) => {
                failure = Some(anyhow::Error::new(e).context(op.describe()));
                break;
            }
        }
    }
    let summary = s.commit().context("completing the undo file")?;
    if let Some(err) = failure {
        if let Some(u) = &summary.undo_file {
            eprintln!(
                "what was written before the failure can be undone with: rescue-disk undo {} --log {}",
                target.target.display(),
                u.display()
            );
        }
        return Err(err);
    }
    for v in &summary.journals_replayed {
        eprintln!("replayed the journal of {v} into the disk first (as e2fsck does)");
    }
    match &summary.undo_file {
        Some(u) => eprintln!(
            "undo file: {} ({} bytes saved); `rescue-disk undo {}` restores the original bytes",
            u.display(),
            summary.saved_bytes,
            target.target.display()
        ),
        None => eprintln!("nothing needed writing"),
    }
    Ok(Outcome::Ok)
}

/// Runs `put`.
pub fn put(args: &PutArgs) -> Result<Outcome> {
    let data = if args.source == Path::new("-") {
        let mut buf = Vec::new();
        std::io::stdin()
            .take(MAX_FILE_BYTES + 1)
            .read_to_end(&mut buf)?;
        buf
    } else {
        let len = std::fs::metadata(&args.source)
            .with_context(|| format!("reading {}", args.source.display()))?
            .len();
        if len > MAX_FILE_BYTES {
            bail!(
                "{} is larger than the {MAX_FILE_BYTES}-byte limit for put",
                args.source.display()
            );
        }
        std::fs::read(&args.source).with_context(|| format!("reading {}", args.source.display()))?
    };
    if data.len() as u64 > MAX_FILE_BYTES {
        bail!("standard input is larger than the {MAX_FILE_BYTES}-byte limit for put");
    }
    let mut path = guest_path(&args.path)?;
    apply_all(&args.target, &args.undo, |s| {
        let guest = s.guest()?;
        if guest.metadata(&path).is_ok_and(|m| m.is_dir()) {
            let name = args
                .source
                .file_name()
                .context("use a guest file path: the host source has no file name")?;
            path = path.join(std::os::unix::ffi::OsStrExt::as_bytes(name));
        }
        let (uid, gid) = match &args.owner {
            Some(o) => Names::load(&guest).owner(o)?,
            None => (None, None),
        };
        let existing = guest.metadata(&path).ok();
        let base = existing.as_ref().map_or(NewFile::root(0o644), |m| NewFile {
            mode: m.mode,
            uid: m.uid,
            gid: m.gid,
        });
        let wanted = NewFile {
            mode: args.mode.unwrap_or(base.mode),
            uid: uid.unwrap_or(base.uid),
            gid: gid.unwrap_or(base.gid),
        };
        let set = (existing.is_some() && wanted != base).then_some(wanted);
        Ok(vec![Op::WriteFile {
            path: path.clone(),
            data,
            create: wanted,
            set,
        }])
    })
}

/// Runs `edit`.
pub fn edit(args: &EditArgs) -> Result<Outcome> {
    let path = guest_path(&args.path)?;
    // Read through a read-only open first: nothing is opened for writing
    // (and no undo file made) when the file is left unchanged.
    let before = read_guest(&args.target)?.read_file(&path, MAX_FILE_BYTES)?;
    let dir = tempfile_dir()?;
    let name = path.file_name().map_or("file".into(), |n| {
        String::from_utf8_lossy(n).replace('/', "_")
    });
    let tmp = dir.join(name);
    std::fs::write(&tmp, &before)?;
    let editor = args
        .editor
        .clone()
        .or_else(|| std::env::var("VISUAL").ok().filter(|s| !s.is_empty()))
        .or_else(|| std::env::var("EDITOR").ok().filter(|s| !s.is_empty()))
        .unwrap_or_else(|| "vi".into());
    // Through the shell, as git and virt-edit do, so "code --wait" works.
    let status = std::process::Command::new("sh")
        .arg("-c")
        .arg(format!("{editor} \"$1\""))
        .arg("sh")
        .arg(&tmp)
        .status()
        .with_context(|| format!("starting the editor {editor:?}"))?;
    let after = std::fs::read(&tmp)?;
    let _ = std::fs::remove_dir_all(&dir);
    if !status.success() {
        bail!("the editor {editor:?} exited with {status}; nothing was written");
    }
    if after == before {
        eprintln!("{path} unchanged; nothing written");
        return Ok(Outcome::Ok);
    }
    apply_all(&args.target, &args.undo, |s| {
        // The file must still be what the editor started from.
        let now = s.guest()?.read_file(&path, MAX_FILE_BYTES)?;
        if now != before {
            bail!("{path} changed on the disk while it was being edited; nothing was written");
        }
        Ok(vec![Op::WriteFile {
            path: path.clone(),
            data: after,
            create: NewFile::root(0o644),
            set: None,
        }])
    })
}

/// A private temporary directory for `edit`.
fn tempfile_dir() -> Result<std::path::PathBuf> {
    let base = std::env::temp_dir();
    for i in 0..100u32 {
        let dir = base.join(format!("rescue-disk-edit-{}-{i}", std::process::id()));
        match std::fs::DirBuilder::new().mode(0o700).create(&dir) {
            Ok(()) => return Ok(dir),
            Err(e) if e.kind() == std::io::ErrorKind::AlreadyExists => continue,
            Err(e) => return Err(e).context("creating a temporary directory"),
        }
    }
    bail!(
        "could not create a temporary directory in {}",
        base.display()
    )
}

/// Runs `chmod`.
pub fn chmod(args: &ChmodArgs) -> Result<Outcome> {
    let paths = args
        .paths
        .iter()
        .map(|p| guest_path(p))
        .collect::<Result<Vec<_>>>()?;
    apply_all(&args.target, &args.undo, |_| {
        Ok(paths
            .into_iter()
            .map(|path| Op::Chmod {
                path,
                mode: args.mode,
            })
            .collect())
    })
}

/// Runs `chown`.
pub fn chown(args: &ChownArgs) -> Result<Outcome> {
    let paths = args
        .paths
        .iter()
        .map(|p| guest_path(p))
        .collect::<Result<Vec<_>>>()?;
    apply_all(&args.target, &args.undo, |s| {
        let (uid, gid) = Names::load(&s.guest()?).owner(&args.owner)?;
        Ok(paths
            .into_iter()
            .map(|path| Op::Chown { path, uid, gid })
            .collect())
    })
}

/// Runs `mkdir`.
pub fn mkdir(args: &MkdirArgs) -> Result<Outcome> {
    let paths = args
        .paths
        .iter()
        .map(|p| guest_path(p))
        .collect::<Result<Vec<_>>>()?;
    apply_all(&args.target, &args.undo, |s| {
        let guest = s.guest()?;
        let (uid, gid) = match &args.owner {
            Some(o) => Names::load(&guest).owner(o)?,
            None => (None, None),
        };
        let attrs = NewFile {
            mode: args.mode,
            uid: uid.unwrap_or(0),
            gid: gid.unwrap_or(0),
        };
        let mut ops = Vec::new();
        for path in paths {
            let mut wanted = Vec::new();
            if args.parents {
                // Every missing ancestor, outermost first.
                let mut p = Some(path.clone());
                while let Some(cur) = p {
                    if cur.is_root() || guest.metadata(&cur).is_ok() {
                        break;
                    }
                    p = cur.parent();
                    wanted.push(cur);
                }
                wanted.reverse();
            } else {
                wanted.push(path);
            }
            ops.extend(wanted.into_iter().map(|path| Op::Mkdir { path, attrs }));
        }
        Ok(ops)
    })
}

/// Runs `ln -s`.
pub fn ln(args: &LnArgs) -> Result<Outcome> {
    let path = guest_path(&args.link)?;
    if args.link_target.is_empty() {
        bail!("the link target is empty");
    }
    apply_all(&args.target, &args.undo, |_| {
        Ok(vec![Op::Symlink {
            path,
            target: args.link_target.as_bytes().to_vec(),
            uid: 0,
            gid: 0,
        }])
    })
}

/// Runs `rm`.
pub fn rm(args: &RmArgs) -> Result<Outcome> {
    let paths = args
        .paths
        .iter()
        .map(|p| guest_path(p))
        .collect::<Result<Vec<_>>>()?;
    apply_all(&args.target, &args.undo, |_| {
        Ok(paths.into_iter().map(|path| Op::Remove { path }).collect())
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn utc_minutes_matches_known_dates() {
        assert_eq!(utc_minutes(0), "1970-01-01 00:00");
        assert_eq!(utc_minutes(951_782_400), "2000-02-29 00:00");
        assert_eq!(utc_minutes(1_700_000_000), "2023-11-14 22:13");
        assert_eq!(utc_minutes(-86_400), "1969-12-31 00:00");
    }

    #[test]
    fn mode_strings_match_coreutils() {
        let m = |file_type, mode| Metadata {
            file_type,
            mode,
            uid: 0,
            gid: 0,
            size_in_bytes: 0,
            modified_unix_seconds: None,
        };
        assert_eq!(mode_string(&m(FileType::Regular, 0o644)), "-rw-r--r--");
        assert_eq!(mode_string(&m(FileType::Directory, 0o1777)), "drwxrwxrwt");
        assert_eq!(mode_string(&m(FileType::Regular, 0o4755)), "-rwsr-xr-x");
        assert_eq!(mode_string(&m(FileType::Regular, 0o2644)), "-rw-r-Sr--");
        assert_eq!(mode_string(&m(FileType::Symlink, 0o777)), "lrwxrwxrwx");
    }
}
