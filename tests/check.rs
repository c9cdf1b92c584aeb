//! `rescue-disk check` end to end: healthy guests of both families give no
//! findings; each broken variant (built by the fixture factory with the real
//! tools) gives the right check id, severity and evidence; the target is
//! never written.

mod support;

use serde_json::Value;
use support::checking::*;
use support::*;
use xtask::Format;

#[test]
fn healthy_guests_have_no_findings() {
    for (layout, format) in [
        ("gpt-debian", Format::Raw),
        ("gpt-debian", Format::Qcow2),
        ("mbr-rhel", Format::Raw),
        ("lvm-rhel", Format::Qcow2),
        ("whole-ext4", Format::Raw),
        ("overlay", Format::Qcow2),
    ] {
        if !layout_available(layout) {
            continue;
        }
        let image = xtask::fixture(layout, format).unwrap();
        let (code, report) = check_json(&image, &[]);
        assert_eq!(
            report["findings"],
            Value::Array(vec![]),
            "{layout} {format:?}: {report:#}"
        );
        assert_eq!(report["errors"], Value::Array(vec![]), "{layout}");
        assert_eq!(code, 0, "{layout}");
        assert_eq!(report["status"], "ok");
        assert!(report["ran"].as_array().unwrap().len() >= 10);
    }
}

#[test]
fn demo_image_explains_the_emergency_mode() {
    let demo = concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/../../fixtures/demo/demo.qcow2"
    );
    let (code, report) = check_json(std::path::Path::new(demo), &[]);
    assert_eq!(code, 1);
    let f = findings(&report, "fstab.unstable-device");
    assert_eq!(f.len(), 1, "{report:#}");
    assert_eq!(f[0]["severity"], "error");
    assert_eq!(f[0]["evidence"][0]["path"], "/etc/fstab");
    assert_eq!(f[0]["evidence"][0]["line"], 4);
    assert!(f[0]["symptom"].as_str().unwrap().contains("emergency mode"));
    let diff = report["diffs"]["/etc/fstab"].as_str().unwrap();
    assert!(
        diff.contains("+/dev/sdb1 /data ext4 defaults,nofail 0 2"),
        "{diff}"
    );
}

#[test]
fn check_never_writes_the_target() {
    if !layout_available("gpt-debian") {
        return;
    }
    let (dir, image) = xtask::scratch_copy("gpt-debian", Format::Qcow2).unwrap();
    let before = (
        std::fs::metadata(&image).unwrap().modified().unwrap(),
        xtask::sha256_file(&image).unwrap(),
    );
    // Make the file read-only too: a write attempt would fail loudly for non-root.
    use std::os::unix::fs::PermissionsExt;
    std::fs::set_permissions(&image, std::fs::Permissions::from_mode(0o444)).unwrap();
    let (code, _) = check_json(&image, &[]);
    assert_eq!(code, 0);
    let after = (
        std::fs::metadata(&image).unwrap().modified().unwrap(),
        xtask::sha256_file(&image).unwrap(),
    );
    assert_eq!(before, after);
    drop(dir);
}

#[test]
fn fstab_device_name_that_resolves_gets_a_uuid() {
    let Some((code, report, custom)) = variant("fstab-vda1", "gpt-debian", |c| {
        let t = c.tree();
        let fstab = t.read_to_string("etc/fstab")?;
        let first = fstab
            .lines()
            .find(|l| l.contains(" / "))
            .unwrap()
            .split_whitespace()
            .next()
            .unwrap()
            .to_owned();
        t.replace("etc/fstab", &first, "/dev/vda1")?;
        Ok(())
    }) else {
        return;
    };
    assert_eq!(code, 1, "{report:#}");
    let f = findings(&report, "fstab.unstable-device");
    assert_eq!(f.len(), 1, "{report:#}");
    assert_eq!(f[0]["severity"], "warning");
    let root_uuid = custom.expect["volumes"][0]["blkid"]["UUID"]
        .as_str()
        .unwrap();
    assert_eq!(
        f[0]["repair"]["edits"][0]["after"]
            .as_str()
            .unwrap()
            .split_whitespace()
            .next(),
        Some(format!("UUID={root_uuid}").as_str())
    );
}

#[test]
fn fstab_missing_sources() {
    let Some((code, report, custom)) = variant("fstab-missing", "gpt-debian", |c| {
        let t = c.tree();
        let fstab = t.read_to_string("etc/fstab")?;
        let first = fstab
            .lines()
            .find(|l| l.contains(" / "))
            .unwrap()
            .split_whitespace()
            .next()
            .unwrap()
            .to_owned();
        t.replace(
            "etc/fstab",
            &first,
            "UUID=11111111-2222-4333-8444-555555555555",
        )?;
        t.append("etc/fstab", "LABEL=gone /srv/data xfs defaults 0 2\nUUID=aaaaaaaa-bbbb-4ccc-8ddd-eeeeeeeeeeee /opt ext4 defaults,nofail 0 2\n")?;
        Ok(())
    }) else {
        return;
    };
    assert_eq!(code, 1);
    let f = findings(&report, "fstab.missing-source");
    assert_eq!(f.len(), 3, "{report:#}");
    // The root line is pointed at the real root filesystem.
    let root_uuid = custom.expect["volumes"][0]["blkid"]["UUID"]
        .as_str()
        .unwrap();
    let root = f
        .iter()
        .find(|x| x["evidence"][0]["text"].as_str().unwrap().contains(" / "))
        .unwrap();
    assert_eq!(root["severity"], "error");
    assert!(root["repair"]["edits"][0]["after"]
        .as_str()
        .unwrap()
        .starts_with(&format!("UUID={root_uuid} / ")));
    // A data filesystem gets nofail; one that has it already is information
    // without repair (boot goes on without it).
    let data = f
        .iter()
        .find(|x| x["subject"] == "/etc/fstab line 4")
        .unwrap();
    assert_eq!(
        data["repair"]["edits"][0]["after"],
        "LABEL=gone /srv/data xfs defaults,nofail 0 2"
    );
    let opt = f
        .iter()
        .find(|x| x["subject"] == "/etc/fstab line 5")
        .unwrap();
    assert_eq!(opt["severity"], "info");
    assert!(opt["repair"].is_null());
    // --fstab-mode comment keeps the old line as a comment.
    let (_, commented) = check_json(
        &custom.raw,
        &["--fstab-mode", "comment", "--only", "fstab.missing-source"],
    );
    let data = findings(&commented, "fstab.missing-source")
        .into_iter()
        .find(|x| x["subject"] == "/etc/fstab line 4")
        .unwrap();
    assert_eq!(
        data["repair"]["edits"][0]["after"],
        "# rescue-disk: its filesystem is not on this disk\n# LABEL=gone /srv/data xfs defaults 0 2"
    );
}

#[test]
fn fstab_syntax_and_network() {
    let Some((_, report, _custom)) = variant("fstab-syntax", "gpt-debian", |c| {
        let t = c.tree();
        t.append(
            "etc/fstab",
            "garbage-without-fields\n/dev/disk/by-label/x /srv ext4 defaults zero 2\nLABEL=scratch /mnt/weird foofs defaults,nofail 0 0\nnfs.example.com:/export /mnt/nfs nfs defaults 0 0\n",
        )?;
        t.mkdir("mnt/nfs", xtask::Meta::root(0o755))?;
        Ok(())
    }) else {
        return;
    };
    let syntax = findings(&report, "fstab.syntax");
    let subjects: Vec<&str> = syntax
        .iter()
        .map(|f| f["subject"].as_str().unwrap())
        .collect();
    assert!(
        subjects.contains(&"/etc/fstab line 4"),
        "one-field line: {report:#}"
    );
    assert!(
        subjects.contains(&"/etc/fstab line 5"),
        "non-numeric dump: {report:#}"
    );
    assert!(
        subjects.contains(&"/etc/fstab line 6"),
        "unknown type: {report:#}"
    );
    assert!(
        syntax.iter().any(|f| f["cause"]
            .as_str()
            .unwrap()
            .contains("/mnt/weird does not exist")),
        "{report:#}"
    );
    let net = findings(&report, "fstab.network");
    assert_eq!(net.len(), 1, "{report:#}");
    assert_eq!(
        net[0]["repair"]["edits"][0]["after"],
        "nfs.example.com:/export /mnt/nfs nfs defaults,nofail,_netdev 0 0"
    );
}

#[test]
fn findmnt_agrees_on_fstab_parse_errors() {
    // findmnt --verify parses with libmount, the library systemd uses.
    if std::process::Command::new("findmnt")
        .arg("--version")
        .output()
        .is_err()
    {
        assert!(!xtask::require_tools(), "findmnt missing");
        return;
    }
    let dir = tempfile::tempdir().unwrap();
    let cases = [
        ("UUID=x / ext4 defaults 0 1\n", false),
        ("justone\n", true),
        ("two fields\n", true),
        ("/dev/sda1 /mnt ext4 defaults 0 x\n", true),
        ("/dev/sda1 /mnt ext4 defaults x 0\n", true),
        ("/dev/sda1 /mnt ext4\n", false),
        (
            "# comment\n\n/dev/sda1\t/mnt\text4\tdefaults\t0\t0\n",
            false,
        ),
    ];
    for (text, want_error) in cases {
        let p = dir.path().join("fstab");
        std::fs::write(&p, text).unwrap();
        let out = std::process::Command::new("findmnt")
            .args(["--verify", "--tab-file"])
            .arg(&p)
            .output()
            .unwrap();
        let findmnt_says = String::from_utf8_lossy(&out.stdout).to_lowercase()
            + &String::from_utf8_lossy(&out.stderr).to_lowercase();
        let findmnt_parse_error = findmnt_says.contains("parse error at line");
        let ours = rescue_config::fstab::Fstab::parse(text.as_bytes());
        let invalid_line = ours
            .lines
            .iter()
            .any(|l| matches!(l.kind, rescue_config::fstab::LineKind::Invalid { .. }));
        let bad_number = ours.entries().any(|(_, e)| {
            [&e.freq, &e.passno]
                .iter()
                .any(|f| f.as_ref().is_some_and(|f| f.value.parse::<u32>().is_err()))
        });
        assert_eq!(
            findmnt_parse_error, want_error,
            "findmnt on {text:?}: {findmnt_says}"
        );
        assert_eq!(invalid_line || bad_number, want_error, "ours on {text:?}");
    }
}

#[test]
fn kernel_incomplete_and_initramfs_missing() {
    let Some((code, report, _c)) = variant("kernel-no-modules", "gpt-debian", |c| {
        c.tree().remove("usr/lib/modules/6.1.0-28-amd64")?;
        Ok(())
    }) else {
        return;
    };
    assert_eq!(code, 1);
    let f = findings(&report, "boot.kernel-incomplete");
    assert_eq!(f.len(), 1, "{report:#}");
    assert!(f[0]["cause"].as_str().unwrap().contains("6.1.0-28-amd64"));
    let edit = &f[0]["repair"]["edits"][0];
    assert_eq!(edit["path"], "/boot/grub/grub.cfg");
    assert!(
        edit["after"]
            .as_str()
            .unwrap()
            .contains("gnulinux-6.1.0-27-amd64-advanced-"),
        "{edit:#}"
    );
    assert!(findings(&report, "boot.initramfs-missing").is_empty());

    let Some((_, report, _c)) = variant("kernel-no-initrd", "gpt-debian", |c| {
        c.tree().remove("boot/initrd.img-6.1.0-28-amd64")?;
        Ok(())
    }) else {
        return;
    };
    assert!(
        findings(&report, "boot.kernel-incomplete").is_empty(),
        "{report:#}"
    );
    let f = findings(&report, "boot.initramfs-missing");
    assert_eq!(f.len(), 1, "{report:#}");
    assert!(f[0]["repair"]["manual"]
        .as_str()
        .unwrap()
        .contains("update-initramfs -c -k 6.1.0-28-amd64"));
}

#[test]
fn rhel_kernel_incomplete_sets_saved_entry() {
    let Some((_, report, _c)) = variant("rhel-kernel", "mbr-rhel", |c| {
        c.tree()
            .remove("boot/vmlinuz-5.14.0-427.13.1.el9_4.x86_64")?;
        Ok(())
    }) else {
        return;
    };
    let f = findings(&report, "boot.kernel-incomplete");
    assert_eq!(f.len(), 1, "{report:#}");
    let edit = &f[0]["repair"]["edits"][0];
    assert_eq!(edit["op"], "set_grubenv");
    assert_eq!(edit["key"], "saved_entry");
    assert!(
        edit["value"]
            .as_str()
            .unwrap()
            .ends_with("-5.14.0-362.24.1.el9_3.x86_64"),
        "{edit:#}"
    );
}

#[test]
fn cmdline_leftovers_and_wrong_root() {
    let Some((_, report, custom)) = variant("cmdline", "gpt-debian", |c| {
        let t = c.tree();
        let cfg = t.read_to_string("boot/grub/grub.cfg")?;
        let root = cfg.lines().find(|l| l.contains("root=UUID=")).unwrap();
        let uuid = root
            .split("root=UUID=")
            .nth(1)
            .unwrap()
            .split_whitespace()
            .next()
            .unwrap()
            .to_owned();
        t.replace(
            "boot/grub/grub.cfg",
            &format!("root=UUID={uuid} ro console=tty0"),
            "root=UUID=99999999-8888-4777-8666-555555555555 ro init=/bin/bash console=tty0",
        )?;
        Ok(())
    }) else {
        return;
    };
    let f = findings(&report, "boot.cmdline");
    assert_eq!(f.len(), 2, "{report:#}");
    let init = f
        .iter()
        .find(|x| x["cause"].as_str().unwrap().contains("init=/bin/bash"))
        .unwrap();
    let after = init["repair"]["edits"][0]["after"].as_str().unwrap();
    assert!(
        !after.contains("init=") && after.contains("console=ttyS0,115200"),
        "{after}"
    );
    let root = f
        .iter()
        .find(|x| x["cause"].as_str().unwrap().contains("root=UUID=9999"))
        .unwrap();
    let want = format!(
        "root=UUID={}",
        custom.expect["volumes"][0]["blkid"]["UUID"]
            .as_str()
            .unwrap()
    );
    assert!(root["repair"]["edits"][0]["after"]
        .as_str()
        .unwrap()
        .contains(&want));
}

#[test]
fn filesystem_errors_recorded_by_the_kernel() {
    let Some((code, report, custom)) = variant("fs-errors", "gpt-debian", |c| {
        for cmd in [
            "ssv state 3",
            "ssv error_count 2",
            "ssv first_error_time 20240301120000",
            "ssv first_error_func ext4_lookup",
            "ssv first_error_line 1855",
            "ssv first_error_ino 1234",
            "ssv last_error_time 20240302120000",
            "ssv last_error_func ext4_find_entry",
            "ssv last_error_line 1620",
        ] {
            c.root_fs_debugfs(cmd);
        }
        Ok(())
    }) else {
        return;
    };
    assert_eq!(code, 1);
    let f = findings(&report, "fs.errors");
    assert_eq!(f.len(), 1, "{report:#}");
    let evidence = f[0]["evidence"].to_string();
    // The oracle: what dumpe2fs reads from the same superblock.
    let root = &custom.expect["volumes"][0];
    let slice = custom.dir().join("root.img");
    xtask::extract_volume(&custom.raw, root, &slice).unwrap();
    let dump = std::process::Command::new("dumpe2fs")
        .arg("-h")
        .arg(&slice)
        .output()
        .unwrap();
    let dump = String::from_utf8_lossy(&dump.stdout);
    for (key, want) in [
        ("FS Error count:", "2"),
        ("First error function:", "ext4_lookup"),
        ("Last error function:", "ext4_find_entry"),
    ] {
        let line = dump
            .lines()
            .find(|l| l.starts_with(key))
            .unwrap_or_else(|| panic!("{key} in {dump}"));
        assert!(line.ends_with(want), "dumpe2fs {line}");
        assert!(evidence.contains(want), "{evidence}");
    }
}

#[test]
fn root_filesystem_full() {
    let Some((_, report, _c)) = variant("disk-full", "gpt-debian", |c| {
        // A 37 MiB incompressible file in the 44 MiB root filesystem (38.5 MiB free, 2.2 MiB reserved).
        let mut state: u32 = 1;
        let data: Vec<u8> = (0..(37u32 << 20))
            .map(|_| {
                state ^= state << 13;
                state ^= state >> 17;
                state ^= state << 5;
                state as u8
            })
            .collect();
        c.tree().write("var/log/huge.log", data)?;
        Ok(())
    }) else {
        return;
    };
    let f = findings(&report, "boot.disk-full");
    assert_eq!(f.len(), 1, "{report:#}");
    assert_eq!(f[0]["severity"], "error");
    assert_eq!(f[0]["subject"], "/ on p1");
}

/// Unmounts and removes the mount point when dropped; never removes a
/// directory whose unmount failed (its contents would be the guest's).
struct Mounted(tempfile::TempDir);

impl Drop for Mounted {
    fn drop(&mut self) {
        let ok = std::process::Command::new("umount")
            .arg(self.0.path())
            .status()
            .is_ok_and(|s| s.success());
        if !ok {
            eprintln!(
                "umount {} failed; leaving the directory in place",
                self.0.path().display()
            );
            let _ = std::mem::replace(&mut self.0, tempfile::tempdir().unwrap()).keep();
        }
    }
}

/// Loop-mounts the root filesystem of a raw image read-only (root only).
fn mount_root(raw: &std::path::Path, expect: &Value) -> Option<Mounted> {
    if !is_root() {
        assert!(
            !xtask::require_tools(),
            "mounting needs root (RESCUE_REQUIRE_TOOLS=1)"
        );
        eprintln!("SKIPPED: mounting a fixture needs root");
        return None;
    }
    let root = expect["volumes"]
        .as_array()
        .unwrap()
        .iter()
        .find(|v| v["mount_point"] == "/")
        .unwrap();
    let dir = tempfile::tempdir().unwrap();
    let status = std::process::Command::new("mount")
        .arg("-o")
        .arg(format!(
            "ro,loop,offset={},sizelimit={}",
            root["start_byte"], root["size_bytes"]
        ))
        .arg(raw)
        .arg(dir.path())
        .status()
        .unwrap();
    assert!(status.success(), "mount failed");
    Some(Mounted(dir))
}

#[test]
fn mounted_tree_of_a_healthy_guest_has_no_findings() {
    if !layout_available("gpt-debian") {
        return;
    }
    let raw = xtask::fixture("gpt-debian", Format::Raw).unwrap();
    let Some(m) = mount_root(&raw, &xtask::expect("gpt-debian").unwrap()) else {
        return;
    };
    let (code, report) = check_json(m.0.path(), &[]);
    assert_eq!(report["findings"], Value::Array(vec![]), "{report:#}");
    assert_eq!(code, 0);
    assert_eq!(report["os_id"], "debian");
}

#[test]
fn mounted_tree_of_a_broken_guest_gives_the_same_findings() {
    let Some((_, from_image, custom)) = variant("tree-kernel", "gpt-debian", |c| {
        c.tree().remove("usr/lib/modules/6.1.0-28-amd64")?;
        c.tree()
            .append("etc/fstab", "server:/x /mnt/x nfs defaults 0 0\n")?;
        c.tree().mkdir("mnt/x", xtask::Meta::root(0o755))?;
        Ok(())
    }) else {
        return;
    };
    let Some(m) = mount_root(&custom.raw, &custom.expect) else {
        return;
    };
    let (_, from_tree) = check_json(m.0.path(), &[]);
    let ids = |r: &Value| -> Vec<(String, String)> {
        r["findings"]
            .as_array()
            .unwrap()
            .iter()
            .map(|f| {
                (
                    f["check"].as_str().unwrap().into(),
                    f["subject"].as_str().unwrap().into(),
                )
            })
            .collect()
    };
    assert_eq!(ids(&from_tree), ids(&from_image));
    // Kernel incomplete, its package's modules missing, and the nfs line.
    assert_eq!(ids(&from_tree).len(), 3, "{from_tree:#}");
}

/// A guest tree whose files are symlinks to host paths (absolute, and `..`
/// chains) must be read inside the tree: the host's files are never read.
#[test]
fn hostile_tree_symlinks_never_reach_the_host() {
    let dir = tempfile::tempdir().unwrap();
    let root = dir.path();
    std::fs::create_dir_all(root.join("etc")).unwrap();
    std::fs::create_dir_all(root.join("usr/lib")).unwrap();
    std::fs::write(
        root.join("usr/lib/os-release"),
        "ID=debian\nVERSION_ID=12\nPRETTY_NAME=\"hostile\"\n",
    )
    .unwrap();
    std::os::unix::fs::symlink("../usr/lib/os-release", root.join("etc/os-release")).unwrap();
    // The host surely has /etc/hostname and /etc/passwd; the guest has neither.
    std::os::unix::fs::symlink("/etc/passwd", root.join("etc/fstab")).unwrap();
    std::os::unix::fs::symlink(
        "../../../../../../../etc/hostname",
        root.join("etc/hostname"),
    )
    .unwrap();
    std::os::unix::fs::symlink("loop-b", root.join("etc/loop-a")).unwrap();
    std::os::unix::fs::symlink("loop-a", root.join("etc/loop-b")).unwrap();
    let run = run_limited(&["check", "--json", root.to_str().unwrap()]);
    assert!(!run.stderr.contains("panicked"), "{}", run.stderr);
    let host_hostname = std::fs::read_to_string("/etc/hostname").unwrap_or_default();
    let host_passwd_line = std::fs::read_to_string("/etc/passwd")
        .unwrap_or_default()
        .lines()
        .next()
        .unwrap_or("root:x:0:0")
        .to_owned();
    assert!(
        !run.stdout.contains(&host_passwd_line),
        "host /etc/passwd leaked: {}",
        run.stdout
    );
    if !host_hostname.trim().is_empty() {
        assert!(
            !run.stdout
                .contains(&format!("\"{}\"", host_hostname.trim())),
            "host hostname leaked"
        );
    }
    assert_eq!(run.code, 0, "{}\n{}", run.stdout, run.stderr);
    let report = run.json();
    assert_eq!(report["os_pretty_name"], "hostile");
}

#[test]
fn packaged_files_missing_emptied_or_replaced() {
    let Some((code, report, _c)) = variant("missing-files", "gpt-debian", |c| {
        let t = c.tree();
        t.remove("usr/bin/ls")?;
        t.write("usr/bin/bash", b"#!/bin/sh\n# not bash any more\n")?;
        Ok(())
    }) else {
        return;
    };
    assert_eq!(code, 1);
    let f = findings(&report, "system.missing-files");
    let by_subject = |s: &str| {
        f.iter()
            .find(|x| x["subject"] == s)
            .unwrap_or_else(|| panic!("{s}: {report:#}"))
            .to_string()
    };
    // dpkg lists them as /bin/…: they are reached through the usrmerge link.
    assert!(by_subject("package coreutils").contains("/bin/ls is missing"));
    assert!(by_subject("package bash").contains("/bin/bash does not match its package"));
    assert_eq!(f.len(), 2, "{report:#}");

    let Some((_, report, _c)) = variant("usrmerge-link", "gpt-debian", |c| {
        c.tree().remove("bin")?;
        Ok(())
    }) else {
        return;
    };
    let f = findings(&report, "system.missing-files");
    let link = f
        .iter()
        .find(|x| x["subject"] == "/bin")
        .unwrap_or_else(|| panic!("{report:#}"));
    assert_eq!(link["repair"]["edits"][0]["op"], "create_symlink");
    assert_eq!(link["repair"]["edits"][0]["target"], "usr/bin");
}

#[test]
fn rpm_guests_say_the_package_check_was_skipped() {
    if !layout_available("mbr-rhel") {
        return;
    }
    let (_, report) = check_json(&xtask::fixture("mbr-rhel", Format::Raw).unwrap(), &[]);
    let skipped = report["skipped"].as_array().unwrap();
    assert!(
        skipped.iter().any(|s| s["check"] == "system.missing-files"),
        "{report:#}"
    );
    assert!(!report["ran"]
        .as_array()
        .unwrap()
        .iter()
        .any(|r| r == "system.missing-files"));
}

#[test]
fn log_lines_are_attached_to_the_findings_they_explain() {
    let Some((_, report, _c)) = variant("logs", "gpt-debian", |c| {
        let t = c.tree();
        t.append("etc/fstab", "/dev/sdc1 /srv ext4 defaults 0 2\n")?;
        t.write(
            "var/log/syslog",
            "2024-11-30T23:59:58.000000+00:00 debian systemd[1]: dev-sdc1.device: Job dev-sdc1.device/start timed out.\n\
             2024-11-30T23:59:59.000000+00:00 debian systemd[1]: Timed out waiting for device dev-sdc1.device - /dev/sdc1.\n\
             2024-11-30T23:59:59.500000+00:00 debian systemd[1]: Dependency failed for srv.mount - /srv.\n\
             Dec  1 00:00:01 debian sshd[612]: fatal: Missing privilege separation directory: /run/sshd\n",
        )?;
        Ok(())
    }) else {
        return;
    };
    let f = findings(&report, "fstab.unstable-device");
    assert_eq!(f.len(), 1, "{report:#}");
    let logs: Vec<&Value> = f[0]["evidence"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|e| e["kind"] == "log")
        .collect();
    assert_eq!(logs.len(), 2, "{:#}", f[0]);
    assert_eq!(logs[0]["path"], "/var/log/syslog");
    assert_eq!(
        logs[0]["timestamp"], "2024-11-30T23:59:59.500000+00:00",
        "newest first"
    );
    assert!(logs[0]["text"]
        .as_str()
        .unwrap()
        .contains("Dependency failed for srv.mount"));
    // No check explains the sshd line (sshd.privsep looks at the disk, and
    // /run/sshd is made at runtime): it is reported as unexplained evidence.
    let unexplained = findings(&report, "evidence.logs");
    assert_eq!(unexplained.len(), 1, "{report:#}");
    assert_eq!(unexplained[0]["severity"], "info");
    assert_eq!(
        unexplained[0]["evidence"][0]["timestamp"],
        "Dec  1 00:00:01"
    );
}

/// A crash-consistent snapshot: the image copied while the guest's root was
/// mounted read-write by the real kernel, after fsync but without unmount.
/// Its journal needs recovery; check must see the files as the kernel would
/// after replay — including a change made just before the copy.
#[test]
fn dirty_journal_snapshot_is_seen_after_replay() {
    if !layout_available("gpt-debian") {
        return;
    }
    if !is_root() {
        assert!(
            !xtask::require_tools(),
            "this test needs root to loop-mount (RESCUE_REQUIRE_TOOLS=1)"
        );
        eprintln!("SKIPPED: dirty journal test needs root");
        return;
    }
    let (dir, raw) = xtask::scratch_copy("gpt-debian", Format::Raw).unwrap();
    let expect = xtask::expect("gpt-debian").unwrap();
    let root = expect["volumes"]
        .as_array()
        .unwrap()
        .iter()
        .find(|v| v["mount_point"] == "/")
        .unwrap()
        .clone();
    let mnt = tempfile::tempdir().unwrap();
    let status = std::process::Command::new("mount")
        .arg("-o")
        .arg(format!(
            "rw,loop,offset={},sizelimit={}",
            root["start_byte"], root["size_bytes"]
        ))
        .arg(&raw)
        .arg(mnt.path())
        .status()
        .unwrap();
    assert!(status.success());
    let mounted = Mounted(mnt);
    let fstab = mounted.0.path().join("etc/fstab");
    let mut text = std::fs::read_to_string(&fstab).unwrap();
    text.push_str("LABEL=snapshot-only /srv ext4 defaults 0 2\n");
    std::fs::write(&fstab, &text).unwrap();
    std::fs::File::open(&fstab).unwrap().sync_all().unwrap();
    std::fs::write(
        mounted.0.path().join("etc/hostname"),
        "changed-before-snapshot\n",
    )
    .unwrap();
    std::fs::File::open(mounted.0.path().join("etc/hostname"))
        .unwrap()
        .sync_all()
        .unwrap();
    // Copy while still mounted: this is the snapshot.
    let snapshot = dir.path().join("snapshot.raw");
    let cp = std::process::Command::new("cp")
        .arg("--sparse=always")
        .arg(&raw)
        .arg(&snapshot)
        .status()
        .unwrap();
    assert!(cp.success());
    drop(mounted);

    let report = inspect_json(&snapshot);
    let p1 = report["volumes"]
        .as_array()
        .unwrap()
        .iter()
        .find(|v| v["id"] == "p1")
        .unwrap();
    assert_eq!(
        p1["probe"]["ext"]["needs_recovery"], true,
        "the snapshot must have a dirty journal for this test to mean anything"
    );
    assert_eq!(report["guest"]["hostname"], "changed-before-snapshot");
    let (_, checked) = check_json(&snapshot, &[]);
    let missing = findings(&checked, "fstab.missing-source");
    assert_eq!(missing.len(), 1, "{checked:#}");
    assert!(missing[0]["evidence"][0]["text"]
        .as_str()
        .unwrap()
        .contains("LABEL=snapshot-only"));
}

/// Extracts `path` from the root filesystem of a variant with debugfs.
fn guest_file(custom: &xtask::Custom, path: &str) -> Vec<u8> {
    let root = custom.expect["volumes"]
        .as_array()
        .unwrap()
        .iter()
        .find(|v| v["mount_point"] == "/")
        .unwrap();
    let slice = custom.dir().join("root-for-debugfs.img");
    if !slice.exists() {
        xtask::extract_volume(&custom.raw, root, &slice).unwrap();
    }
    let out = std::process::Command::new("debugfs")
        .arg("-R")
        .arg(format!("cat {path}"))
        .arg(&slice)
        .output()
        .unwrap();
    out.stdout
}

#[test]
fn sshd_config_typos_are_found_and_the_repair_satisfies_sshd() {
    let Some((code, report, custom)) = variant("sshd-typo", "gpt-debian", |c| {
        let t = c.tree();
        t.replace(
            "etc/ssh/sshd_config",
            "#PasswordAuthentication yes",
            "asswordAuthentication no",
        )?;
        t.append(
            "etc/ssh/sshd_config.d/50-cloud-init.conf",
            "PermitRootLogin maybe\n",
        )?;
        Ok(())
    }) else {
        return;
    };
    assert_eq!(code, 1);
    let f = findings(&report, "sshd.config-syntax");
    assert_eq!(f.len(), 2, "{report:#}");
    let typo = f
        .iter()
        .find(|x| x["subject"] == "/etc/ssh/sshd_config line 57")
        .expect("typo finding");
    assert!(
        typo["cause"]
            .as_str()
            .unwrap()
            .contains("Bad configuration option: asswordAuthentication"),
        "{typo:#}"
    );
    assert!(
        typo["cause"].as_str().unwrap().contains("9.2p1"),
        "the guest's own release is used: {typo:#}"
    );
    assert_eq!(
        typo["repair"]["edits"][0]["after"],
        "PasswordAuthentication no"
    );
    let include = f
        .iter()
        .find(|x| {
            x["subject"]
                .as_str()
                .unwrap()
                .starts_with("/etc/ssh/sshd_config.d/50-cloud-init.conf")
        })
        .expect("include finding");
    assert!(include["repair"]["edits"][0]["after"]
        .as_str()
        .unwrap()
        .contains("#PermitRootLogin maybe"));

    // Oracle: the real sshd refuses the broken files and accepts the repaired ones.
    let have_sshd = std::process::Command::new("/usr/sbin/sshd")
        .arg("-V")
        .output()
        .is_ok();
    if !have_sshd {
        assert!(
            !xtask::require_tools(),
            "sshd missing (RESCUE_REQUIRE_TOOLS=1)"
        );
        return;
    }
    let dir = tempfile::tempdir().unwrap();
    let confd = dir.path().join("conf.d");
    std::fs::create_dir(&confd).unwrap();
    let key = dir.path().join("hostkey");
    assert!(std::process::Command::new("ssh-keygen")
        .args(["-q", "-t", "ed25519", "-N", "", "-f"])
        .arg(&key)
        .status()
        .unwrap()
        .success());
    let main = String::from_utf8(guest_file(&custom, "/etc/ssh/sshd_config"))
        .unwrap()
        .replace(
            "Include /etc/ssh/sshd_config.d/*.conf",
            &format!("Include {}/*.conf", confd.display()),
        );
    let inc = guest_file(&custom, "/etc/ssh/sshd_config.d/50-cloud-init.conf");
    let sshd_t = |main: &str, inc: &[u8]| {
        std::fs::write(dir.path().join("sshd_config"), main).unwrap();
        std::fs::write(confd.join("50-cloud-init.conf"), inc).unwrap();
        std::fs::create_dir_all("/run/sshd").ok();
        std::process::Command::new("/usr/sbin/sshd")
            .arg("-t")
            .arg("-f")
            .arg(dir.path().join("sshd_config"))
            .arg("-h")
            .arg(&key)
            .output()
            .unwrap()
    };
    let broken = sshd_t(&main, &inc);
    assert!(!broken.status.success());
    // sshd stops at the first fatal line, in the included file (line 12 of
    // the main file includes it): our message for it is the one sshd prints.
    let said = String::from_utf8_lossy(&broken.stderr)
        .replace(&confd.display().to_string(), "/etc/ssh/sshd_config.d");
    let ours = include["evidence"]
        .as_array()
        .unwrap()
        .iter()
        .filter_map(|e| e["text"].as_str())
        .filter_map(|t| t.strip_prefix("sshd -t: "))
        .next_back()
        .unwrap()
        .to_owned();
    assert!(said.contains(&ours), "sshd said {said:?}, we said {ours:?}");
    let edits_for = |path: &str| -> Vec<(usize, String, String)> {
        f.iter()
            .flat_map(|x| x["repair"]["edits"].as_array().unwrap().iter())
            .filter(|e| e["path"] == path)
            .map(|e| {
                (
                    e["line"].as_u64().unwrap() as usize,
                    e["before"].as_str().unwrap().to_owned(),
                    e["after"].as_str().unwrap().to_owned(),
                )
            })
            .collect()
    };
    let apply = |data: &[u8], path: &str| {
        let edits = edits_for(path);
        let refs: Vec<(usize, &str, &str)> = edits
            .iter()
            .map(|(l, b, a)| (*l, b.as_str(), a.as_str()))
            .collect();
        rescue_checks::edit::apply_line_edits(data, &refs).unwrap()
    };
    let fixed_main = String::from_utf8(apply(main.as_bytes(), "/etc/ssh/sshd_config")).unwrap();
    let fixed_inc = apply(&inc, "/etc/ssh/sshd_config.d/50-cloud-init.conf");
    let fixed = sshd_t(&fixed_main, &fixed_inc);
    assert!(
        fixed.status.success(),
        "sshd -t after the repair: {}",
        String::from_utf8_lossy(&fixed.stderr)
    );
}

#[test]
fn sshd_service_disabled_masked_and_listen() {
    let Some((code, report, _c)) = variant("sshd-service", "gpt-debian", |c| {
        let t = c.tree();
        t.remove("etc/systemd/system/multi-user.target.wants/ssh.service")?;
        t.symlink("etc/systemd/system/ssh.socket", "/dev/null")?;
        t.append(
            "etc/ssh/sshd_config.d/50-cloud-init.conf",
            "Port 2222\nListenAddress 10.1.2.3\n",
        )?;
        Ok(())
    }) else {
        return;
    };
    assert_eq!(code, 1);
    let svc = findings(&report, "sshd.service");
    let disabled = svc
        .iter()
        .find(|f| f["subject"] == "ssh.service")
        .unwrap_or_else(|| panic!("{report:#}"));
    assert_eq!(disabled["repair"]["edits"][0]["op"], "create_symlink");
    assert_eq!(
        disabled["repair"]["edits"][0]["path"],
        "/etc/systemd/system/multi-user.target.wants/ssh.service"
    );
    let masked = svc
        .iter()
        .find(|f| f["subject"] == "ssh.socket")
        .unwrap_or_else(|| panic!("{report:#}"));
    assert_eq!(masked["repair"]["edits"][0]["op"], "unlink");
    let listen = findings(&report, "sshd.listen");
    assert_eq!(listen.len(), 2, "{report:#}");
    assert!(listen
        .iter()
        .any(|f| f["cause"].as_str().unwrap().contains("port 2222")));
    assert!(listen
        .iter()
        .any(|f| f["cause"].as_str().unwrap().contains("10.1.2.3")));
}

/// Hostile guests: garbage in every configuration file, an sshd_config that
/// Includes itself, a 2 GiB sshd_config and a directory loop. Each gives
/// findings or a clear one-line error, within the memory and time limits,
/// never a panic.
#[test]
fn hostile_guest_files() {
    if !layout_available("gpt-debian") {
        return;
    }
    let mut state: u64 = 0x2545_f491_4f6c_dd1d;
    let mut garbage = |n: usize| -> Vec<u8> {
        (0..n)
            .map(|_| {
                state ^= state << 13;
                state ^= state >> 7;
                state ^= state << 17;
                state as u8
            })
            .collect()
    };
    let files = [
        "etc/fstab",
        "etc/ssh/sshd_config",
        "etc/passwd",
        "etc/group",
        "etc/shadow",
        "etc/hosts.deny",
        "etc/default/grub",
        "boot/grub/grub.cfg",
        "boot/grub/grubenv",
        "var/lib/dpkg/status",
        "var/log/auth.log",
    ];
    let blobs: Vec<Vec<u8>> = files.iter().map(|_| garbage(8192)).collect();
    let custom = xtask::build_custom("garbage", "gpt-debian", |c| {
        for (f, b) in files.iter().zip(&blobs) {
            c.tree().write(f, b)?;
        }
        Ok(())
    })
    .unwrap();
    let run = run_limited(&["check", "--json", custom.raw.to_str().unwrap()]);
    assert!(!run.stderr.contains("panicked"), "{}", run.stderr);
    assert!(
        run.code == 1 || run.code == 2,
        "code {}: {}",
        run.code,
        run.stderr
    );
    if run.code == 2 {
        assert_eq!(run.stderr.lines().count(), 1, "{}", run.stderr);
    }

    let custom = xtask::build_custom("include-loop", "gpt-debian", |c| {
        c.tree().append(
            "etc/ssh/sshd_config.d/50-cloud-init.conf",
            "Include /etc/ssh/sshd_config\n",
        )?;
        Ok(())
    })
    .unwrap();
    let run = run_limited(&["check", "--json", custom.raw.to_str().unwrap()]);
    assert!(!run.stderr.contains("panicked"), "{}", run.stderr);
    let report = run.json();
    let f = findings(&report, "sshd.config-syntax");
    assert!(!f.is_empty(), "an Include loop stops sshd: {report:#}");
    assert!(
        f[0].to_string()
            .contains("Too many recursive configuration includes"),
        "{:#}",
        f[0]
    );

    let custom = xtask::build_custom("huge-sshd-config", "gpt-debian", |c| {
        // A sparse 2 GiB file: the inode claims it, the image stays small.
        let p = c.tree().path("etc/ssh/sshd_config")?;
        std::fs::OpenOptions::new()
            .write(true)
            .open(&p)?
            .set_len(2 << 30)?;
        Ok(())
    })
    .unwrap();
    let run = run_limited(&["check", custom.raw.to_str().unwrap()]);
    assert!(!run.stderr.contains("panicked"), "{}", run.stderr);
    assert_eq!(run.code, 2, "{}", run.stdout);
    assert!(
        run.stderr.contains("sshd_config") && run.stderr.contains("2147483648"),
        "{}",
        run.stderr
    );

    let custom = xtask::build_custom("dir-loop", "gpt-debian", |c| {
        // A second name for /etc inside /etc/ssh: a directory cycle.
        c.root_fs_debugfs("link /etc /etc/ssh/loop");
        Ok(())
    })
    .unwrap();
    let run = run_limited(&["check", "--json", custom.raw.to_str().unwrap()]);
    assert!(!run.stderr.contains("panicked"), "{}", run.stderr);
    assert!(run.code == 0 || run.code == 1, "{}", run.stderr);
}

/// The same crash-consistent snapshot without metadata_csum, where
/// ext4-view alone refuses a dirty journal: our replay makes it readable.
#[test]
fn dirty_journal_without_metadata_csum() {
    if !is_root() {
        assert!(
            !xtask::require_tools(),
            "this test needs root to loop-mount (RESCUE_REQUIRE_TOOLS=1)"
        );
        eprintln!("SKIPPED: dirty journal test needs root");
        return;
    }
    let dir = tempfile::tempdir().unwrap();
    let tree = dir.path().join("tree");
    std::fs::create_dir_all(tree.join("etc")).unwrap();
    std::fs::write(
        tree.join("etc/os-release"),
        "ID=debian\nVERSION_ID=12\nPRETTY_NAME=\"Debian GNU/Linux 12 (bookworm)\"\n",
    )
    .unwrap();
    std::fs::write(tree.join("etc/fstab"), "LABEL=root / ext4 defaults 0 1\n").unwrap();
    let image = dir.path().join("disk.raw");
    let mkfs = std::process::Command::new("mkfs.ext4")
        .args(["-q", "-F", "-O", "^metadata_csum", "-L", "root", "-d"])
        .arg(&tree)
        .arg(&image)
        .arg("32M")
        .status()
        .unwrap();
    assert!(mkfs.success());
    let mnt = tempfile::tempdir().unwrap();
    assert!(std::process::Command::new("mount")
        .args(["-o", "rw,loop"])
        .arg(&image)
        .arg(mnt.path())
        .status()
        .unwrap()
        .success());
    let mounted = Mounted(mnt);
    let fstab = mounted.0.path().join("etc/fstab");
    std::fs::write(&fstab, "LABEL=root / ext4 defaults 0 1\nUUID=0badc0de-0000-4000-8000-000000000000 /data ext4 defaults 0 2\n").unwrap();
    std::fs::File::open(&fstab).unwrap().sync_all().unwrap();
    let snapshot = dir.path().join("snapshot.raw");
    assert!(std::process::Command::new("cp")
        .arg("--sparse=always")
        .arg(&image)
        .arg(&snapshot)
        .status()
        .unwrap()
        .success());
    drop(mounted);

    let report = inspect_json(&snapshot);
    let disk = &report["volumes"][0];
    assert_eq!(
        disk["probe"]["ext"]["needs_recovery"], true,
        "the copy must be dirty"
    );
    assert!(!disk["probe"]["ext"]["features"]
        .as_array()
        .unwrap()
        .iter()
        .any(|f| f == "metadata_csum"));
    let (_, checked) = check_json(&snapshot, &[]);
    let missing = findings(&checked, "fstab.missing-source");
    assert_eq!(missing.len(), 1, "{checked:#}");
    assert!(missing[0]["evidence"][0]["text"]
        .as_str()
        .unwrap()
        .contains("/data"));
}

#[test]
fn no_serial_console_is_a_note() {
    let Some((code, report, _c)) = variant("no-serial", "gpt-debian", |c| {
        c.tree().replace(
            "boot/grub/grub.cfg",
            "ro console=tty0 console=ttyS0,115200 earlyprintk=ttyS0,115200 consoleblank=0",
            "ro quiet",
        )?;
        Ok(())
    }) else {
        return;
    };
    // A note does not change the exit status.
    assert_eq!(code, 0, "{report:#}");
    let f = findings(&report, "boot.serial-console");
    assert_eq!(f.len(), 1, "{report:#}");
    assert_eq!(f[0]["severity"], "info");
}
