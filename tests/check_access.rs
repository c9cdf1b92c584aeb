//! `rescue-disk check` on per-user SSH access (`ssh.user-access`,
//! `ssh.home-modes`, `ssh.authorized-keys`), end to end: each broken
//! variant of a fixture is built with the real tools and checked; the
//! healthy guests give no finding from these checks.
//!
//! Oracle: the fixture `gpt-debian` is Debian 12 with OpenSSH 9.2, the
//! release this test machine runs. Where the host has `sshd`, `ssh`,
//! `ssh-keygen`, `debugfs`, `unshare` and root, the guest's passwd, group,
//! shadow, `/etc/ssh` and `/home` are copied out of the variant image with
//! their owners and modes (`debugfs rdump`), bind-mounted over the host's
//! in a private mount namespace, and a real `sshd -D` on a loopback port is
//! asked to let the user in with a fresh key (the guest's public keys are
//! replaced by it, keeping each line's options and each file's owner and
//! mode). sshd's verdict and log line must be the ones our finding states,
//! and after our repair is applied to the copy, sshd must let the user in.
//! Without those tools the oracle part skips (fails under
//! `RESCUE_REQUIRE_TOOLS=1`).

mod support;

use std::path::PathBuf;
use std::process::{Command, Stdio};

use serde_json::Value;
use support::checking::*;
use support::*;
use xtask::Meta;

const IDS: [&str; 3] = ["ssh.user-access", "ssh.home-modes", "ssh.authorized-keys"];

/// The findings of the three access checks.
fn access_findings(report: &Value) -> Vec<&Value> {
    report["findings"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|f| IDS.contains(&f["check"].as_str().unwrap_or("")))
        .collect()
}

fn for_user<'a>(fs: &[&'a Value], user: &str) -> Vec<&'a Value> {
    fs.iter()
        .copied()
        .filter(|f| f["subject"] == format!("user {user}"))
        .collect()
}

fn text(v: &Value) -> &str {
    v.as_str().unwrap_or("")
}

/// Builds a variant of `layout` with `edit` (raw and qcow2, through the
/// shared helper) and checks that the access checks ran.
fn variant(
    name: &str,
    layout: &str,
    extra: &[&str],
    edit: impl FnOnce(&mut xtask::Customize) -> anyhow::Result<()>,
) -> Option<(i32, Value, xtask::Custom)> {
    let (code, report, custom) = variant_with(name, layout, extra, edit)?;
    assert!(
        IDS.iter()
            .all(|id| report["ran"].as_array().unwrap().iter().any(|r| r == id)),
        "the access checks did not run: {report:#}"
    );
    Some((code, report, custom))
}

fn ssh_dir(user: &str) -> String {
    format!("home/{user}/.ssh")
}

fn key_file(user: &str) -> String {
    format!("home/{user}/.ssh/authorized_keys")
}

// ---------------------------------------------------------------------------
// The oracle: a real sshd over a copy of the guest's files.

fn have(tool: &str) -> bool {
    Command::new("sh")
        .arg("-c")
        .arg(format!("command -v {tool} || test -x /usr/sbin/{tool}"))
        .stdout(Stdio::null())
        .status()
        .is_ok_and(|s| s.success())
}

/// True when the oracle can run here; otherwise says why (and fails under
/// RESCUE_REQUIRE_TOOLS=1).
fn oracle_available() -> bool {
    let mut missing: Vec<&str> = ["sshd", "ssh", "ssh-keygen", "debugfs", "unshare", "bash"]
        .into_iter()
        .filter(|t| !have(t))
        .collect();
    if !is_root() {
        missing.push("root (mount namespace, chown)");
    }
    if missing.is_empty() {
        return true;
    }
    assert!(
        !xtask::require_tools(),
        "real-sshd oracle needs {missing:?} (RESCUE_REQUIRE_TOOLS=1)"
    );
    eprintln!("SKIPPED real-sshd oracle: missing {missing:?}");
    false
}

/// What one login attempt gave.
#[derive(Debug)]
struct Login {
    /// sshd logged "Accepted publickey for USER".
    accepted: bool,
    /// `ssh ... true` exited 0.
    session_ok: bool,
    /// sshd's log for the attempt.
    log: String,
    /// What the client printed.
    client: String,
}

/// The guest's account and SSH files, copied out with owners and modes.
struct GuestCopy {
    dir: tempfile::TempDir,
}

fn free_port() -> u16 {
    let l = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    l.local_addr().unwrap().port()
}

impl GuestCopy {
    fn extract(custom: &xtask::Custom) -> GuestCopy {
        let root = custom.expect["volumes"]
            .as_array()
            .unwrap()
            .iter()
            .find(|v| v["mount_point"] == "/")
            .unwrap();
        let slice = custom.dir().join("root-for-oracle.img");
        if !slice.exists() {
            xtask::extract_volume(&custom.raw, root, &slice).unwrap();
        }
        let dir = tempfile::tempdir().unwrap();
        let d = dir.path().display();
        let script = dir.path().join("debugfs.cmds");
        std::fs::write(
            &script,
            format!(
                "rdump /home /etc/ssh {d}\ndump -p /etc/passwd {d}/passwd\ndump -p /etc/group {d}/group\ndump -p /etc/shadow {d}/shadow\n"
            ),
        )
        .unwrap();
        let out = Command::new("debugfs")
            .arg("-f")
            .arg(&script)
            .arg(&slice)
            .output()
            .unwrap();
        assert!(
            dir.path().join("passwd").exists() && dir.path().join("ssh/sshd_config").exists(),
            "debugfs did not copy the guest files: {}",
            String::from_utf8_lossy(&out.stderr)
        );
        let copy = GuestCopy { dir };
        let key = copy.path("client");
        let kg = Command::new("ssh-keygen")
            .args(["-q", "-t", "ed25519", "-N", "", "-C", "oracle", "-f"])
            .arg(&key)
            .status()
            .unwrap();
        assert!(kg.success());
        let kg = Command::new("ssh-keygen")
            .args(["-q", "-t", "ed25519", "-N", "", "-f"])
            .arg(copy.path("hostkey"))
            .status()
            .unwrap();
        assert!(kg.success());
        // The guest's public keys become the oracle's key: same lines, same
        // options, same file owner and mode (the file is rewritten in place).
        let blob = std::fs::read_to_string(key.with_extension("pub"))
            .unwrap()
            .split_whitespace()
            .nth(1)
            .unwrap()
            .to_owned();
        if let Ok(homes) = std::fs::read_dir(copy.path("home")) {
            for h in homes.flatten() {
                let ak = h.path().join(".ssh/authorized_keys");
                let Ok(old) = std::fs::read_to_string(&ak) else {
                    continue;
                };
                let new: String = old
                    .split_inclusive('\n')
                    .map(|l| {
                        l.split(' ')
                            .map(|w| {
                                if w.starts_with("AAAA") {
                                    blob.as_str()
                                } else {
                                    w
                                }
                            })
                            .collect::<Vec<_>>()
                            .join(" ")
                    })
                    .collect();
                std::fs::OpenOptions::new()
                    .write(true)
                    .truncate(true)
                    .open(&ak)
                    .unwrap();
                std::fs::write(&ak, new).unwrap();
            }
        }
        copy
    }

    fn path(&self, rel: &str) -> PathBuf {
        self.dir.path().join(rel)
    }

    /// The copy of a guest path.
    fn host(&self, guest: &str) -> PathBuf {
        if let Some(rest) = guest.strip_prefix("/etc/ssh") {
            self.path(&format!("ssh{rest}"))
        } else if let Some(rest) = guest.strip_prefix("/etc/") {
            self.path(rest)
        } else {
            self.path(guest.trim_start_matches('/'))
        }
    }

    /// Applies the edits of `findings`' repairs to the copy.
    fn apply(&self, findings: &[&Value]) {
        use std::os::unix::fs::PermissionsExt;
        let edits: Vec<&Value> = findings
            .iter()
            .flat_map(|f| f["repair"]["edits"].as_array().into_iter().flatten())
            .collect();
        let mut line_edits: std::collections::BTreeMap<String, Vec<(usize, String, String)>> =
            Default::default();
        for e in edits {
            let p = self.host(text(&e["path"]));
            match text(&e["op"]) {
                "set_mode" => {
                    let m = std::fs::symlink_metadata(&p).unwrap();
                    assert_eq!(
                        m.permissions().mode() & 0o7777,
                        e["from"].as_u64().unwrap() as u32,
                        "{e}"
                    );
                    std::fs::set_permissions(
                        &p,
                        std::fs::Permissions::from_mode(e["to"].as_u64().unwrap() as u32),
                    )
                    .unwrap();
                }
                "set_owner" => std::os::unix::fs::chown(
                    &p,
                    Some(e["to_uid"].as_u64().unwrap() as u32),
                    Some(e["to_gid"].as_u64().unwrap() as u32),
                )
                .unwrap(),
                "edit_line" => line_edits
                    .entry(text(&e["path"]).to_owned())
                    .or_default()
                    .push((
                        e["line"].as_u64().unwrap() as usize,
                        text(&e["before"]).to_owned(),
                        text(&e["after"]).to_owned(),
                    )),
                other => panic!("unexpected edit {other}: {e}"),
            }
        }
        for (path, edits) in line_edits {
            let p = self.host(&path);
            let data = std::fs::read(&p).unwrap();
            let refs: Vec<(usize, &str, &str)> = edits
                .iter()
                .map(|(l, b, a)| (*l, b.as_str(), a.as_str()))
                .collect();
            let new = rescue_checks::edit::apply_line_edits(&data, &refs).unwrap();
            // Rewrite in place: owner and mode stay.
            std::fs::write(&p, new).unwrap();
        }
    }

    /// One login as `user` with the oracle key against a real sshd running
    /// on the guest's configuration, accounts and homes.
    fn login(&self, user: &str) -> Login {
        let port = free_port();
        let d = self.dir.path().display();
        for f in ["sshd.log", "ssh.out", "ssh.err", "ssh.rc"] {
            let _ = std::fs::remove_file(self.path(f));
        }
        let script = format!(
            r#"set -e
mount --make-rprivate /
mount --bind {d}/passwd /etc/passwd
mount --bind {d}/group /etc/group
mount --bind {d}/shadow /etc/shadow
mount --bind {d}/ssh /etc/ssh
mount --bind {d}/home /home
mkdir -p /run/sshd
set +e
/usr/sbin/sshd -D -e -h {d}/hostkey -p {port} -o ListenAddress=127.0.0.1 -o PidFile=none 2>{d}/sshd.log &
pid=$!
for i in $(seq 50); do (exec 3<>/dev/tcp/127.0.0.1/{port}) 2>/dev/null && break; sleep 0.1; done
ssh -F /dev/null -o BatchMode=yes -o StrictHostKeyChecking=no -o UserKnownHostsFile=/dev/null \
  -o IdentitiesOnly=yes -o IdentityAgent=none -o ConnectTimeout=5 -o LogLevel=ERROR \
  -p {port} -i {d}/client {user}@127.0.0.1 true </dev/null >{d}/ssh.out 2>{d}/ssh.err
echo $? >{d}/ssh.rc
sleep 0.3
kill $pid
wait $pid
exit 0
"#
        );
        std::fs::write(self.path("run.sh"), script).unwrap();
        let out = Command::new("unshare")
            .arg("-m")
            .arg("bash")
            .arg(self.path("run.sh"))
            .output()
            .unwrap();
        assert!(
            out.status.success(),
            "oracle script failed: {}",
            String::from_utf8_lossy(&out.stderr)
        );
        let read = |f: &str| std::fs::read_to_string(self.path(f)).unwrap_or_default();
        let log = read("sshd.log");
        Login {
            accepted: log.contains(&format!("Accepted publickey for {user} ")),
            session_ok: read("ssh.rc").trim() == "0",
            log,
            client: format!("{}{}", read("ssh.out"), read("ssh.err")),
        }
    }
}

/// The log text a finding's symptom quotes: what follows `sshd logs "`.
fn quoted_log(f: &Value) -> String {
    let s = text(&f["symptom"]);
    let start = s.find("logs \"").map(|i| i + 6).unwrap_or(0);
    let rest = &s[start..];
    rest[..rest.rfind('"').unwrap_or(rest.len())].to_owned()
}

/// Asserts that the real sshd refuses `user` on the variant with the log
/// line `f` quotes, and, when `repairs` are given, accepts after they are
/// applied.
fn oracle_refuses_then_accepts(custom: &xtask::Custom, user: &str, f: &Value, repairs: &[&Value]) {
    if !oracle_available() {
        return;
    }
    let copy = GuestCopy::extract(custom);
    let before = copy.login(user);
    assert!(
        !before.accepted && !before.session_ok,
        "sshd let {user} in, we said it would not: {before:#?}"
    );
    let said = quoted_log(f).replace("<address>", "127.0.0.1");
    assert!(
        before.log.contains(&said),
        "sshd's log lacks our quoted line {said:?}:\n{}",
        before.log
    );
    if !repairs.is_empty() {
        copy.apply(repairs);
        let after = copy.login(user);
        assert!(
            after.accepted && after.session_ok,
            "after our repair sshd still refuses {user}: {after:#?}"
        );
    }
}

// ---------------------------------------------------------------------------
// Healthy guests.

#[test]
fn healthy_guests_have_no_access_findings() {
    for (layout, users) in [
        ("gpt-debian", &["alice", "debian", "root"][..]),
        ("mbr-rhel", &["cloud-user", "root"][..]),
    ] {
        if !layout_available(layout) {
            continue;
        }
        let image = xtask::fixture(layout, xtask::Format::Raw).unwrap();
        let mut runs = vec![check_json(&image, &[])];
        for u in users {
            runs.push(check_json(&image, &["--user", u]));
        }
        for (code, report) in runs {
            assert_eq!(
                access_findings(&report),
                Vec::<&Value>::new(),
                "{layout}: {report:#}"
            );
            for id in IDS {
                assert!(
                    report["ran"].as_array().unwrap().iter().any(|r| r == id),
                    "{layout}: {id} did not run: {report:#}"
                );
            }
            assert_eq!(code, 0, "{layout}: {report:#}");
        }
    }
    // Oracle baseline: on the healthy Debian guest the real sshd lets
    // alice and debian in with their key (so a refusal below means
    // something).
    if layout_available("gpt-debian") && oracle_available() {
        let custom = xtask::build_custom("access-healthy", "gpt-debian", |_| Ok(())).unwrap();
        let copy = GuestCopy::extract(&custom);
        for u in ["alice", "debian"] {
            let l = copy.login(u);
            assert!(
                l.accepted && l.session_ok,
                "baseline login of {u} failed: {l:#?}"
            );
        }
    }
}

#[test]
fn unknown_user_is_a_finding() {
    if !layout_available("gpt-debian") {
        return;
    }
    let image = xtask::fixture("gpt-debian", xtask::Format::Raw).unwrap();
    let (code, report) = check_json(&image, &["--user", "nosuch"]);
    assert_eq!(code, 1, "{report:#}");
    let f = access_findings(&report);
    assert_eq!(f.len(), 1, "{report:#}");
    assert_eq!(f[0]["check"], "ssh.user-access");
    assert_eq!(f[0]["severity"], "error");
    assert_eq!(f[0]["subject"], "user nosuch");
    assert!(text(&f[0]["cause"]).contains("no such user"), "{:#}", f[0]);
    assert!(text(&f[0]["symptom"]).contains("Invalid user nosuch"));
}

// ---------------------------------------------------------------------------
// ssh.home-modes

#[test]
fn ssh_dir_0777_is_refused_and_chmod_700_repairs_it() {
    let Some((code, report, custom)) = variant("access-sshdir-777", "gpt-debian", &[], |c| {
        c.tree().set_meta(
            &ssh_dir("alice"),
            Meta {
                mode: 0o777,
                uid: 1001,
                gid: 1001,
            },
        )
    }) else {
        return;
    };
    assert_eq!(code, 1);
    let all = access_findings(&report);
    assert_eq!(all.len(), 1, "{report:#}");
    let f = all[0];
    assert_eq!(f["check"], "ssh.home-modes");
    assert_eq!(f["severity"], "error");
    assert_eq!(f["subject"], "user alice");
    assert!(
        text(&f["symptom"]).contains(
            "Authentication refused: bad ownership or modes for directory /home/alice/.ssh"
        ),
        "{f:#}"
    );
    assert_eq!(
        f["repair"]["edits"],
        serde_json::json!([{"op": "set_mode", "path": "/home/alice/.ssh", "from": 0o777, "to": 0o700}])
    );
    oracle_refuses_then_accepts(&custom, "alice", f, &[f]);
}

#[test]
fn home_0777_is_refused_and_loses_only_group_and_other_write() {
    let Some((code, report, custom)) = variant("access-home-777", "gpt-debian", &[], |c| {
        c.tree().set_meta(
            "home/alice",
            Meta {
                mode: 0o777,
                uid: 1001,
                gid: 1001,
            },
        )
    }) else {
        return;
    };
    assert_eq!(code, 1);
    let all = access_findings(&report);
    assert_eq!(all.len(), 1, "{report:#}");
    let f = all[0];
    assert_eq!(f["check"], "ssh.home-modes");
    assert!(
        text(&f["symptom"]).contains("bad ownership or modes for directory /home/alice\""),
        "{f:#}"
    );
    assert_eq!(
        f["repair"]["edits"],
        serde_json::json!([{"op": "set_mode", "path": "/home/alice", "from": 0o777, "to": 0o755}])
    );
    oracle_refuses_then_accepts(&custom, "alice", f, &[f]);
}

#[test]
fn key_file_of_another_user_is_refused_and_given_back() {
    let Some((code, report, custom)) = variant("access-ak-owner", "gpt-debian", &[], |c| {
        c.tree().set_meta(
            &key_file("alice"),
            Meta {
                mode: 0o600,
                uid: 1000,
                gid: 1000,
            },
        )
    }) else {
        return;
    };
    assert_eq!(code, 1);
    let all = access_findings(&report);
    assert_eq!(all.len(), 1, "{report:#}");
    let f = all[0];
    assert_eq!(f["check"], "ssh.home-modes");
    assert_eq!(f["severity"], "error");
    assert!(text(&f["cause"]).contains("uid 1000 (debian)"), "{f:#}");
    assert_eq!(
        f["repair"]["edits"],
        serde_json::json!([{"op": "set_owner", "path": "/home/alice/.ssh/authorized_keys",
            "from_uid": 1000, "from_gid": 1000, "to_uid": 1001, "to_gid": 1001}])
    );
    // sshd opens the file as alice: "Permission denied" comes first.
    assert!(
        text(&f["symptom"]).contains(
            "Could not open user 'alice' authorized keys '/home/alice/.ssh/authorized_keys': Permission denied"
        ),
        "{f:#}"
    );
    oracle_refuses_then_accepts(&custom, "alice", f, &[f]);
}

#[test]
fn group_writable_home_follows_the_distribution_rule() {
    // Debian's sshd accepts group write by a group whose one member is the
    // user (its user-group-modes patch); RHEL's refuses it.
    if let Some((code, report, custom)) = variant("access-home-775-deb", "gpt-debian", &[], |c| {
        c.tree().set_meta(
            "home/alice",
            Meta {
                mode: 0o775,
                uid: 1001,
                gid: 1001,
            },
        )
    }) {
        assert_eq!(access_findings(&report), Vec::<&Value>::new(), "{report:#}");
        assert_eq!(code, 0);
        if oracle_available() {
            let l = GuestCopy::extract(&custom).login("alice");
            assert!(
                l.accepted && l.session_ok,
                "Debian's sshd refused a 0775 private-group home: {l:#?}"
            );
        }
    }
    if let Some((code, report, _c)) = variant("access-home-775-rhel", "mbr-rhel", &[], |c| {
        c.tree().set_meta(
            "home/cloud-user",
            Meta {
                mode: 0o775,
                uid: 1000,
                gid: 1000,
            },
        )
    }) {
        assert_eq!(code, 1);
        let all = access_findings(&report);
        assert_eq!(all.len(), 1, "{report:#}");
        assert_eq!(all[0]["subject"], "user cloud-user");
        assert!(text(&all[0]["symptom"])
            .contains("bad ownership or modes for directory /home/cloud-user"));
        assert_eq!(all[0]["repair"]["edits"][0]["to"], 0o755);
    }
}

// ---------------------------------------------------------------------------
// ssh.user-access

#[test]
fn nologin_shell_accepts_the_key_then_ends_the_session() {
    let Some((code, report, custom)) = variant("access-nologin", "gpt-debian", &[], |c| {
        c.tree().replace(
            "etc/passwd",
            "alice:x:1001:1001:Alice,,,:/home/alice:/bin/bash",
            "alice:x:1001:1001:Alice,,,:/home/alice:/usr/sbin/nologin",
        )
    }) else {
        return;
    };
    assert_eq!(code, 1);
    let all = access_findings(&report);
    assert_eq!(all.len(), 1, "{report:#}");
    let f = all[0];
    assert_eq!(f["check"], "ssh.user-access");
    assert_eq!(f["severity"], "error");
    assert_eq!(f["evidence"][0]["path"], "/etc/passwd");
    assert_eq!(f["evidence"][0]["line"], 25);
    assert!(text(&f["symptom"]).contains("This account is currently not available."));
    assert!(
        f["repair"]["edits"].as_array().unwrap().is_empty(),
        "a shell is only advised"
    );
    if oracle_available() {
        let l = GuestCopy::extract(&custom).login("alice");
        assert!(l.accepted && !l.session_ok, "{l:#?}");
        assert!(
            l.client
                .contains("This account is currently not available."),
            "{l:#?}"
        );
    }
}

#[test]
fn locked_password_refuses_keys_only_without_pam() {
    // The fixture's `debian` has a locked password ("!"), as cloud images
    // do; with UsePAM yes (the fixture) key logins work, with UsePAM no
    // sshd refuses the account.
    let Some((code, report, custom)) = variant("access-usepam-no", "gpt-debian", &[], |c| {
        c.tree()
            .append("etc/ssh/sshd_config.d/50-cloud-init.conf", "UsePAM no\n")
    }) else {
        return;
    };
    assert_eq!(code, 1);
    let all = access_findings(&report);
    assert_eq!(all.len(), 1, "only debian is locked: {report:#}");
    let f = all[0];
    assert_eq!(f["subject"], "user debian");
    assert_eq!(f["severity"], "error");
    assert!(text(&f["cause"]).contains("locked"), "{f:#}");
    assert_eq!(f["evidence"][0]["path"], "/etc/shadow");
    assert!(
        text(&f["evidence"][0]["text"]).starts_with("debian:!:"),
        "{f:#}"
    );
    oracle_refuses_then_accepts(&custom, "debian", f, &[]);
    if oracle_available() {
        let l = GuestCopy::extract(&custom).login("alice");
        assert!(l.accepted && l.session_ok, "alice is not locked: {l:#?}");
    }
}

#[test]
fn deny_users_in_an_include_refuses_only_that_user() {
    let Some((code, report, custom)) = variant("access-denyusers", "gpt-debian", &[], |c| {
        c.tree().append(
            "etc/ssh/sshd_config.d/50-cloud-init.conf",
            "DenyUsers alice\n",
        )
    }) else {
        return;
    };
    assert_eq!(code, 1);
    let all = access_findings(&report);
    assert_eq!(all.len(), 1, "{report:#}");
    let f = all[0];
    assert_eq!(f["subject"], "user alice");
    assert_eq!(f["severity"], "error");
    assert!(text(&f["cause"]).contains("listed in DenyUsers"));
    assert_eq!(
        f["evidence"][0]["path"],
        "/etc/ssh/sshd_config.d/50-cloud-init.conf"
    );
    assert_eq!(f["evidence"][0]["line"], 2);
    assert_eq!(f["evidence"][0]["text"], "DenyUsers alice");
    assert!(text(&f["repair"]["manual"]).contains("DenyUsers"));
    oracle_refuses_then_accepts(&custom, "alice", f, &[]);
    if oracle_available() {
        let l = GuestCopy::extract(&custom).login("debian");
        assert!(l.accepted && l.session_ok, "debian is not denied: {l:#?}");
    }
}

#[test]
fn allow_groups_without_the_users_group_refuses_them() {
    let Some((code, report, custom)) = variant("access-allowgroups", "gpt-debian", &[], |c| {
        c.tree().append(
            "etc/ssh/sshd_config.d/50-cloud-init.conf",
            "AllowGroups admins\n",
        )
    }) else {
        return;
    };
    assert_eq!(code, 1);
    let all = access_findings(&report);
    for u in ["alice", "debian", "root"] {
        let f = for_user(&all, u);
        assert_eq!(f.len(), 1, "{u}: {report:#}");
        assert_eq!(f[0]["severity"], "error");
        assert!(
            text(&f[0]["cause"]).contains("none of user's groups are listed in AllowGroups"),
            "{:#}",
            f[0]
        );
        assert_eq!(f[0]["evidence"][0]["text"], "AllowGroups admins");
    }
    let alice = for_user(&all, "alice")[0];
    assert!(alice["evidence"]
        .as_array()
        .unwrap()
        .iter()
        .any(|e| text(&e["text"]).contains("alice's groups in the guest's /etc/group: alice")));
    oracle_refuses_then_accepts(&custom, "alice", alice, &[]);
}

#[test]
fn pubkey_authentication_no_in_a_match_block() {
    let Some((code, report, custom)) = variant("access-match-pubkey", "gpt-debian", &[], |c| {
        c.tree().append(
            "etc/ssh/sshd_config",
            "Match User alice\n    PubkeyAuthentication no\n",
        )
    }) else {
        return;
    };
    assert_eq!(code, 1);
    let all = access_findings(&report);
    assert_eq!(all.len(), 1, "only alice is refused: {report:#}");
    let f = all[0];
    assert_eq!(f["subject"], "user alice");
    assert_eq!(f["severity"], "error");
    let line = f["evidence"][0]["line"].as_u64().unwrap();
    assert_eq!(f["evidence"][0]["path"], "/etc/ssh/sshd_config");
    assert_eq!(f["evidence"][0]["text"], "    PubkeyAuthentication no");
    assert_eq!(
        f["repair"]["edits"],
        serde_json::json!([{"op": "edit_line", "path": "/etc/ssh/sshd_config", "line": line,
            "before": "    PubkeyAuthentication no", "after": "    PubkeyAuthentication yes"}])
    );
    if oracle_available() {
        let copy = GuestCopy::extract(&custom);
        let l = copy.login("alice");
        assert!(!l.accepted && !l.session_ok, "{l:#?}");
        let d = copy.login("debian");
        assert!(d.accepted && d.session_ok, "{d:#?}");
        copy.apply(&[f]);
        let l = copy.login("alice");
        assert!(l.accepted && l.session_ok, "after the repair: {l:#?}");
    }
}

#[test]
fn authorized_keys_file_elsewhere_leaves_every_user_without_keys() {
    let Some((code, report, custom)) = variant("access-akf-elsewhere", "gpt-debian", &[], |c| {
        c.tree().append(
            "etc/ssh/sshd_config.d/50-cloud-init.conf",
            "AuthorizedKeysFile /etc/ssh/authorized_keys/%u\n",
        )
    }) else {
        return;
    };
    assert_eq!(code, 1);
    let all = access_findings(&report);
    for (u, home) in [
        ("alice", "/home/alice"),
        ("debian", "/home/debian"),
        ("root", "/root"),
    ] {
        let f = for_user(&all, u);
        assert_eq!(f.len(), 1, "{u}: {report:#}");
        assert_eq!(f[0]["check"], "ssh.user-access");
        assert_eq!(f[0]["severity"], "error", "{:#}", f[0]);
        let cause = text(&f[0]["cause"]);
        assert!(
            cause.contains(&format!("/etc/ssh/authorized_keys/{u} does not exist")),
            "{cause}"
        );
        assert!(
            cause.contains(&format!("there are keys in {home}/.ssh/authorized_keys")),
            "{cause}"
        );
        assert!(f[0]["evidence"]
            .as_array()
            .unwrap()
            .iter()
            .any(|e| e["text"] == "AuthorizedKeysFile /etc/ssh/authorized_keys/%u"));
    }
    if oracle_available() {
        let copy = GuestCopy::extract(&custom);
        for u in ["alice", "debian"] {
            let l = copy.login(u);
            assert!(!l.accepted && !l.session_ok, "{u}: {l:#?}");
        }
    }
}

// ---------------------------------------------------------------------------
// ssh.authorized-keys

#[test]
fn wrapped_key_and_byte_order_mark_are_repaired_to_the_original_lines() {
    let mut originals = (String::new(), String::new());
    let Some((code, report, _custom)) = variant("access-wrapped-bom", "gpt-debian", &[], |c| {
        let t = c.tree();
        let alice = t.read_to_string(&key_file("alice"))?;
        let debian = t.read_to_string(&key_file("debian"))?;
        let line = alice.trim_end().to_owned();
        let (a, b) = line.split_at(60);
        t.write(&key_file("alice"), format!("{a}\n{b}\n"))?;
        t.write(&key_file("debian"), format!("\u{feff}{debian}"))?;
        originals = (alice, debian);
        Ok(())
    }) else {
        return;
    };
    assert_eq!(code, 1);
    let all = access_findings(&report);
    assert!(
        all.iter().all(|f| f["check"] == "ssh.authorized-keys"),
        "{report:#}"
    );
    let alice = for_user(&all, "alice");
    assert_eq!(alice.len(), 1, "{report:#}");
    assert_eq!(alice[0]["severity"], "error", "alice has no other key");
    assert!(text(&alice[0]["cause"]).contains("wrapped"));
    let debian = for_user(&all, "debian");
    assert_eq!(debian.len(), 1, "{report:#}");
    assert_eq!(debian[0]["severity"], "error");
    assert!(text(&debian[0]["cause"]).contains("byte order mark"));
    // The repairs give back exactly the lines before the damage.
    let apply = |f: &Value, damaged: &str| {
        let edits: Vec<(usize, String, String)> = f["repair"]["edits"]
            .as_array()
            .unwrap()
            .iter()
            .map(|e| {
                (
                    e["line"].as_u64().unwrap() as usize,
                    text(&e["before"]).to_owned(),
                    text(&e["after"]).to_owned(),
                )
            })
            .collect();
        let refs: Vec<(usize, &str, &str)> = edits
            .iter()
            .map(|(l, b, a)| (*l, b.as_str(), a.as_str()))
            .collect();
        String::from_utf8(rescue_checks::edit::apply_line_edits(damaged.as_bytes(), &refs).unwrap())
            .unwrap()
    };
    let (a_orig, d_orig) = &originals;
    let line = a_orig.trim_end();
    let wrapped = format!("{}\n{}\n", &line[..60], &line[60..]);
    let fixed = apply(alice[0], &wrapped);
    assert_eq!(
        fixed.lines().find(|l| !l.is_empty()),
        Some(line),
        "{fixed:?}"
    );
    assert_eq!(apply(debian[0], &format!("\u{feff}{d_orig}")), *d_orig);
}

#[test]
fn from_restricted_key_is_a_warning_naming_the_pattern() {
    let Some((code, report, custom)) = variant("access-from", "gpt-debian", &[], |c| {
        let t = c.tree();
        let k = t.read_to_string(&key_file("alice"))?;
        t.write(&key_file("alice"), format!("from=\"10.0.0.0/8\" {k}"))
    }) else {
        return;
    };
    assert_eq!(code, 1);
    let all = access_findings(&report);
    assert_eq!(all.len(), 1, "{report:#}");
    let f = all[0];
    assert_eq!(f["check"], "ssh.authorized-keys");
    assert_eq!(
        f["severity"], "warning",
        "clients inside 10/8 can still use it"
    );
    assert!(text(&f["cause"]).contains("10.0.0.0/8"), "{f:#}");
    assert_eq!(f["evidence"][0]["line"], 1);
    // The real sshd refuses the key from 127.0.0.1, outside 10/8.
    if oracle_available() {
        let l = GuestCopy::extract(&custom).login("alice");
        assert!(!l.accepted, "{l:#?}");
        assert!(l.log.contains("not from a permitted host"), "{}", l.log);
    }
}
