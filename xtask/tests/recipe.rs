//! Consistency of the committed recipes, without building any image:
//! stand-ins match their generator, manifests name real paths, templates
//! have no unknown tokens, the dpkg database matches the files, grubenv
//! stays 1024 bytes, and links resolve inside the tree.
//!
//! Must never: write into `fixtures/` (everything is staged in temp dirs).

use std::path::Path;

use xtask::tree::{self, ManifestEntry, StagedTree};

fn stage(layout: &str) -> (tempfile::TempDir, StagedTree) {
    let dir = tempfile::tempdir().unwrap();
    let staged = StagedTree::stage(
        xtask::layout::tree_of(layout).unwrap(),
        xtask::layout::tokens(layout).unwrap(),
        &dir.path().join("stage"),
    )
    .unwrap_or_else(|e| panic!("staging {layout}: {e:#}"));
    (dir, staged)
}

#[test]
fn standins_match_their_generator() {
    let mut stale = Vec::new();
    for s in xtask::standins::all() {
        let p = tree::trees_dir().join(s.tree).join(&s.path);
        if std::fs::read(&p).ok().as_deref() != Some(&s.bytes[..]) {
            stale.push(p.display().to_string());
        }
    }
    assert!(
        stale.is_empty(),
        "stale stand-ins (run `cargo xtask standins`): {stale:?}"
    );
}

#[test]
fn every_layout_stages_with_all_tokens_known() {
    // Staging fails on an unknown token or a manifest entry naming a
    // missing path; afterwards no placeholder may be left in any file.
    for layout in xtask::layouts() {
        let (_d, staged) = stage(layout);
        for (rel, kind, _) in staged.inodes_under("").unwrap() {
            if kind != tree::Kind::File {
                continue;
            }
            let bytes = std::fs::read(staged.root().join(&rel)).unwrap();
            if let Ok(text) = std::str::from_utf8(&bytes) {
                assert!(
                    tree::substitute(text, &Default::default()).is_ok(),
                    "{layout}: /{rel} still holds an @TOKEN@"
                );
            }
        }
    }
}

#[test]
fn manifests_parse_and_name_paths_of_the_tree() {
    for t in tree::TREES {
        let entries = tree::load_manifest(t).unwrap();
        assert!(!entries.is_empty());
        let root = tree::trees_dir().join(t);
        for e in &entries {
            if let ManifestEntry::Meta { path, .. } = e {
                assert!(
                    root.join(path).exists(),
                    "{t}.meta: {path} is not in the tree"
                );
            }
        }
    }
}

#[test]
fn dpkg_digests_match_the_debian_tree() {
    let (_d, staged) = stage("gpt-debian");
    let problems = xtask::dpkg::check(staged.root()).unwrap();
    assert!(
        problems.is_empty(),
        "run `cargo xtask md5sums`: {problems:#?}"
    );
    // The check is not vacuous: breaking a file is noticed.
    std::fs::write(staged.root().join("usr/bin/ls"), b"truncated").unwrap();
    let problems = xtask::dpkg::check(staged.root()).unwrap();
    assert!(
        problems.iter().any(|p| p.contains("/bin/ls has md5")),
        "{problems:?}"
    );
}

#[test]
fn grubenv_is_1024_bytes_after_substitution() {
    for (layout, path) in [
        ("gpt-debian", "boot/grub/grubenv"),
        ("mbr-rhel", "boot/grub2/grubenv"),
        ("lvm-rhel", "boot/grub2/grubenv"),
    ] {
        let (_d, staged) = stage(layout);
        let env = std::fs::read(staged.root().join(path)).unwrap();
        assert_eq!(env.len(), 1024, "{layout}: {path}");
        assert!(env.starts_with(b"# GRUB Environment Block\n"));
    }
}

#[test]
fn links_resolve_inside_the_tree_except_the_dangling_build_links() {
    for layout in ["gpt-debian", "mbr-rhel"] {
        let (_d, staged) = stage(layout);
        for (rel, kind, _) in staged.inodes_under("").unwrap() {
            if kind != tree::Kind::Symlink {
                continue;
            }
            let dangling_by_design = rel.starts_with("usr/lib/modules/") && rel.ends_with("/build");
            let resolved = staged.resolve(&rel).filter(|p| p.exists());
            assert_eq!(
                resolved.is_none(),
                dangling_by_design,
                "{layout}: link /{rel} -> {:?}",
                std::fs::read_link(staged.root().join(&rel))
            );
        }
    }
}

#[test]
fn secrets_and_homes_have_the_distribution_modes() {
    let (_d, deb) = stage("gpt-debian");
    let m = |s: &StagedTree, p: &str| s.meta(p).unwrap();
    assert_eq!(
        m(&deb, "etc/ssh/ssh_host_ed25519_key"),
        xtask::Meta {
            mode: 0o600,
            uid: 0,
            gid: 0
        }
    );
    assert_eq!(
        m(&deb, "etc/shadow"),
        xtask::Meta {
            mode: 0o640,
            uid: 0,
            gid: 42
        }
    );
    assert_eq!(m(&deb, "home/alice/.ssh/authorized_keys").uid, 1001);
    assert_eq!(m(&deb, "home/alice/.ssh").mode, 0o700);
    assert_eq!(m(&deb, "tmp").mode, 0o1777);
    let (_d2, rhel) = stage("mbr-rhel");
    assert_eq!(m(&rhel, "var/empty/sshd").mode, 0o711);
    assert_eq!(m(&rhel, "etc/shadow").mode, 0);
    // The committed public keys are what the guests authorize.
    let alice =
        std::fs::read_to_string(xtask::fixtures_source_dir().join("keys/alice_ed25519.pub"))
            .unwrap();
    assert_eq!(
        deb.read_to_string("home/alice/.ssh/authorized_keys")
            .unwrap(),
        alice
    );
}

#[test]
fn fixtures_readme_indexes_every_layout_and_tree() {
    let readme = std::fs::read_to_string(xtask::fixtures_source_dir().join("README.md")).unwrap();
    for name in xtask::layouts().iter().chain(tree::TREES.iter()) {
        assert!(
            readme.contains(&format!("`{name}`")),
            "fixtures/README.md does not mention `{name}`"
        );
    }
    assert!(Path::new(&xtask::fixtures_source_dir().join("demo/demo.qcow2")).exists());
}
