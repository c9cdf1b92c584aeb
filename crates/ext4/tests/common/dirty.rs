//! Filesystems made dirty by the real kernel: format, loop-mount, write,
//! `syncfs`, then make changes that only `fsync` commits (so they live
//! nowhere but in the journal: revoked directory blocks, data=journal file
//! data, a file starting with the jbd2 magic, a last change) and copy the
//! image while it is still mounted. Shared by the replay tests
//! (`kernel.rs`) and the recovery-into-the-device tests
//! (`recover_in_place.rs`).

use std::collections::BTreeMap;
use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};

use super::*;

/// How to make and mount one dirty filesystem.
pub struct Profile {
    pub name: &'static str,
    pub mkfs: &'static [&'static str],
    pub fstype: &'static str,
    pub mount: &'static str,
    /// Write a file whose first bytes are the jbd2 magic (journaled with
    /// data=journal, so the kernel must escape it).
    pub magic_file: bool,
}

pub const DEFAULT: Profile = Profile {
    name: "ext4-default",
    mkfs: &["-b", "4096"],
    fstype: "ext4",
    mount: "",
    magic_file: false,
};

/// The files the workload leaves, with their contents (directories end in
/// `/`, symlinks in `@` with the target as contents).
pub type Expected = BTreeMap<String, Vec<u8>>;

pub struct Dirty {
    /// Keeps the scratch directory alive.
    pub _dir: tempfile::TempDir,
    /// Scratch directory for the test's own copies.
    pub dir: PathBuf,
    /// The crash-consistent copy: `needs_recovery` set.
    pub dirty: PathBuf,
    /// What the workload left, as the kernel sees it after recovery.
    pub expected: Expected,
}

pub fn put(expected: &mut Expected, m: &Mounted, rel: &str, data: Vec<u8>) {
    write(&m.path(rel), &data);
    expected.insert(rel.to_string(), data);
}

/// `fsync` of each path (`sync FILE...`): commits the running transaction
/// without writing the metadata home.
pub fn fsync(m: &Mounted, rels: &[&str]) {
    let full: Vec<String> = rels
        .iter()
        .map(|r| m.path(r).to_str().unwrap().to_string())
        .collect();
    run("sync", &full.iter().map(String::as_str).collect::<Vec<_>>());
}

/// A 64 MiB image file formatted by `mkfs.ext4 -q -F EXTRA…`.
pub fn mkfs(image: &Path, extra: &[&str]) {
    std::fs::File::create(image)
        .unwrap()
        .set_len(64 << 20)
        .unwrap();
    let mut args = vec!["-q", "-F"];
    args.extend_from_slice(extra);
    args.push(image.to_str().unwrap());
    run("mkfs.ext4", &args);
}

/// Makes a dirty image for `p` and returns it with the expected tree.
pub fn make_dirty(p: &Profile) -> Dirty {
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path().to_path_buf();
    let image = dir.join("live.img");
    mkfs(&image, p.mkfs);
    let m = Mounted::new(&image, &dir.join("mnt"), p.fstype, p.mount);
    let mut rng = XorShift(p.name.bytes().fold(0x9e37_79b9_7f4a_7c15, |h, b| {
        h.rotate_left(5) ^ u64::from(b)
    }));
    let mut exp = Expected::new();

    // Phase 1: a small tree, synced.
    for d in ["etc", "home", "home/user"] {
        std::fs::create_dir(m.path(d)).unwrap();
        exp.insert(format!("{d}/"), Vec::new());
    }
    put(
        &mut exp,
        &m,
        "etc/fstab",
        b"UUID=1234 / ext4 defaults 0 1\n".to_vec(),
    );
    for i in 0..30 {
        let len = rng.below(40_000) as usize;
        put(&mut exp, &m, &format!("f{i:02}"), rng.bytes(len));
    }
    std::os::unix::fs::symlink("f01", m.path("link")).unwrap();
    exp.insert("link@".into(), b"f01".to_vec());
    put(&mut exp, &m, "last.txt", b"old contents\n".to_vec());
    syncfs(&m.dir);

    // Phase 2: changes, synced (`sync` also writes the metadata home).
    put(&mut exp, &m, "f02", rng.bytes(12_345));
    put(&mut exp, &m, "f03", b"short now\n".to_vec());
    let mut f04 = exp["f04"].clone();
    f04.extend(rng.bytes(5000));
    put(&mut exp, &m, "f04", f04);
    for f in ["f05", "f06", "f07"] {
        std::fs::remove_file(m.path(f)).unwrap();
        exp.remove(f);
    }
    std::fs::create_dir_all(m.path("newdir/sub")).unwrap();
    exp.insert("newdir/".into(), Vec::new());
    exp.insert("newdir/sub/".into(), Vec::new());
    std::fs::rename(m.path("f08"), m.path("newdir/sub/moved")).unwrap();
    let moved = exp.remove("f08").unwrap();
    exp.insert("newdir/sub/moved".into(), moved);
    std::fs::set_permissions(m.path("f09"), std::fs::Permissions::from_mode(0o600)).unwrap();
    syncfs(&m.dir);

    // Phase 3: changes committed to the journal by fsync only, so that on
    // the copy they exist nowhere but in the log.
    // A directory whose blocks are logged, then freed: revoke records.
    std::fs::create_dir(m.path("many")).unwrap();
    for i in 0..200 {
        write(
            &m.path(&format!("many/entry-with-a-long-name-{i:04}")),
            b"x",
        );
    }
    fsync(&m, &["many", "."]);
    // With data=journal, file data is logged too; freeing it revokes it.
    write(&m.path("doomed.bin"), &rng.bytes(20_000));
    fsync(&m, &["doomed.bin"]);
    std::fs::remove_dir_all(m.path("many")).unwrap();
    std::fs::remove_file(m.path("doomed.bin")).unwrap();
    fsync(&m, &["."]);
    for i in 0..10 {
        let len = rng.below(9000) as usize;
        put(&mut exp, &m, &format!("n{i:02}"), rng.bytes(len));
    }
    if p.magic_file {
        let mut data = 0xc03b_3998u32.to_be_bytes().to_vec();
        data.extend(rng.bytes(8000));
        put(&mut exp, &m, "magic.bin", data);
    }
    // The change made just before the snapshot.
    let last = format!("new contents {:016x}\n", rng.next()).into_bytes();
    put(&mut exp, &m, "last.txt", last);
    let mut synced: Vec<String> = (0..10).map(|i| format!("n{i:02}")).collect();
    synced.extend(["last.txt".to_string(), ".".to_string()]);
    if p.magic_file {
        synced.push("magic.bin".into());
    }
    fsync(&m, &synced.iter().map(String::as_str).collect::<Vec<_>>());

    let dirty = dir.join("dirty.img");
    copy_sparse(&image, &dirty);
    m.unmount();
    Dirty {
        _dir: tmp,
        dir,
        dirty,
        expected: exp,
    }
}
