//! `rescue-disk check` end to end for what stands between a client and
//! sshd: host keys, the privilege separation directory and user, TCP
//! wrappers, the guest's own firewall and SELinux denials. Each broken
//! variant is built by the fixture factory with the real tools; verdicts on
//! host keys are compared with the real sshd (`sshd -t -h KEY`, Debian's
//! OpenSSH 9.2 like the Debian fixture), verdicts on hosts.allow/deny with
//! the real `tcpdmatch`, before and after the proposed repair.

mod support;

use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};
use std::process::Command;

use serde_json::Value;
use support::checking::*;
use support::*;

fn ran(report: &Value, id: &str) -> bool {
    report["ran"].as_array().unwrap().iter().any(|r| r == id)
}

fn skipped<'a>(report: &'a Value, id: &str) -> Option<&'a str> {
    report["skipped"]
        .as_array()
        .unwrap()
        .iter()
        .find(|s| s["check"] == id)
        .and_then(|s| s["message"].as_str())
}

/// True when `tool --flag` runs; otherwise skips loudly, or fails under
/// RESCUE_REQUIRE_TOOLS=1.
fn have_tool(tool: &str, flag: &str) -> bool {
    let ok = Command::new(tool).arg(flag).output().is_ok();
    if !ok {
        assert!(!xtask::require_tools(), "{tool} is missing");
        eprintln!("SKIPPED: {tool} is missing");
    }
    ok
}

const SSHD: &str = "/usr/sbin/sshd";

/// The host's sshd when it is the release of the Debian fixture (9.2): only
/// then are its verdicts an oracle for the guest's.
fn oracle_sshd() -> bool {
    let out = match Command::new(SSHD).arg("-V").output() {
        Ok(o) => o,
        Err(_) => {
            assert!(
                !xtask::require_tools(),
                "{SSHD} is missing (openssh-server)"
            );
            eprintln!("SKIPPED: {SSHD} is missing");
            return false;
        }
    };
    let version = String::from_utf8_lossy(&out.stderr).into_owned();
    if !version.starts_with("OpenSSH_9.2") {
        assert!(
            !xtask::require_tools(),
            "the oracle needs Debian 12's sshd (OpenSSH_9.2), found {version}"
        );
        eprintln!("SKIPPED: the host's sshd is {version}, not the fixture's 9.2");
        return false;
    }
    true
}

/// What the real sshd says about `key` with permission bits `mode`:
/// `sshd -t -h KEY` run as the key's owner (nobody when we are root, since
/// sshd checks permissions of keys owned by the user it runs as).
fn sshd_verdict(dir: &Path, name: &str, key: &[u8], mode: u32) -> (bool, String) {
    let path = dir.join(name);
    std::fs::write(&path, key).unwrap();
    std::fs::set_permissions(&path, std::fs::Permissions::from_mode(mode)).unwrap();
    let cfg = dir.join("sshd_config");
    std::fs::write(&cfg, "").unwrap();
    let mut cmd = if is_root() {
        let chown = Command::new("chown")
            .arg("65534:65534")
            .arg(&path)
            .status()
            .unwrap();
        assert!(chown.success());
        let mut c = Command::new("setpriv");
        c.args(["--reuid=65534", "--regid=65534", "--clear-groups", SSHD]);
        c
    } else {
        Command::new(SSHD)
    };
    let out = cmd
        .arg("-t")
        .arg("-f")
        .arg(&cfg)
        .arg("-h")
        .arg(&path)
        .output()
        .expect("running sshd -t");
    (
        out.status.success(),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}

/// A directory the unprivileged oracle can read.
fn oracle_dir() -> tempfile::TempDir {
    let dir = tempfile::tempdir().unwrap();
    std::fs::set_permissions(dir.path(), std::fs::Permissions::from_mode(0o755)).unwrap();
    dir
}

fn fixture_file(tree: &str, rel: &str) -> Vec<u8> {
    let p: PathBuf = [
        env!("CARGO_MANIFEST_DIR"),
        "../../fixtures/trees",
        tree,
        rel,
    ]
    .iter()
    .collect();
    std::fs::read(&p).unwrap_or_else(|e| panic!("{}: {e}", p.display()))
}

/// Applies the line edits of `finding`'s repair that touch `path`.
fn apply_repair(data: &[u8], finding: &Value, path: &str) -> Vec<u8> {
    let edits: Vec<(usize, String, String)> = finding["repair"]["edits"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|e| e["op"] == "edit_line" && e["path"] == path)
        .map(|e| {
            (
                e["line"].as_u64().unwrap() as usize,
                e["before"].as_str().unwrap().to_owned(),
                e["after"].as_str().unwrap().to_owned(),
            )
        })
        .collect();
    let refs: Vec<(usize, &str, &str)> = edits
        .iter()
        .map(|(l, b, a)| (*l, b.as_str(), a.as_str()))
        .collect();
    rescue_checks::edit::apply_line_edits(data, &refs).expect("the repair applies")
}

/// `tcpdmatch -d sshd ADDR` on these hosts.allow/deny: true when granted.
fn tcpdmatch_grants(allow: &[u8], deny: &[u8], addr: &str) -> bool {
    let dir = tempfile::tempdir().unwrap();
    std::fs::write(dir.path().join("hosts.allow"), allow).unwrap();
    std::fs::write(dir.path().join("hosts.deny"), deny).unwrap();
    let out = Command::new("tcpdmatch")
        .args(["-d", "sshd", addr])
        .current_dir(dir.path())
        .output()
        .expect("running tcpdmatch");
    let text = String::from_utf8_lossy(&out.stdout).into_owned();
    let access = text
        .lines()
        .find_map(|l| l.strip_prefix("access:"))
        .unwrap_or_else(|| panic!("tcpdmatch said: {text}"))
        .trim()
        .to_owned();
    match access.as_str() {
        "granted" => true,
        "denied" => false,
        other => panic!("tcpdmatch access: {other}"),
    }
}

const IDS: &[&str] = &[
    "sshd.host-keys",
    "sshd.privsep",
    "net.tcp-wrappers",
    "net.guest-firewall",
    "ssh.selinux-label",
];

#[test]
fn healthy_guests_pass_these_checks() {
    for layout in ["gpt-debian", "mbr-rhel"] {
        if !layout_available(layout) {
            continue;
        }
        let image = xtask::fixture(layout, xtask::Format::Raw).unwrap();
        let (code, report) = check_json(&image, &[]);
        for id in IDS {
            assert!(
                findings(&report, id).is_empty(),
                "{layout} {id}: {report:#}"
            );
        }
        assert_eq!(code, 0, "{layout}: {report:#}");
        for id in ["sshd.host-keys", "sshd.privsep", "net.guest-firewall"] {
            assert!(ran(&report, id), "{layout} {id}: {report:#}");
        }
        if layout == "gpt-debian" {
            // Debian 12's sshd honours TCP wrappers; the shipped files are comments.
            assert!(ran(&report, "net.tcp-wrappers"), "{report:#}");
            assert!(skipped(&report, "ssh.selinux-label")
                .unwrap()
                .contains("does not use SELinux"));
        } else {
            // RHEL's 0640 root:ssh_keys keys are accepted (the healthy tree has them).
            assert!(skipped(&report, "net.tcp-wrappers")
                .unwrap()
                .contains("not linked with libwrap"));
            let why = skipped(&report, "ssh.selinux-label").unwrap();
            assert!(
                why.contains("enforcing") && why.contains("cannot be read"),
                "{why}"
            );
        }
    }
}

#[test]
fn debian_host_key_modes_agree_with_sshd() {
    let modes = [
        ("etc/ssh/ssh_host_rsa_key", 0o600),
        ("etc/ssh/ssh_host_ecdsa_key", 0o644),
        ("etc/ssh/ssh_host_ed25519_key", 0o640),
    ];
    let Some((code, report, _c)) = variant("hostkey-modes", "gpt-debian", |c| {
        for (rel, mode) in modes {
            c.tree().set_meta(rel, xtask::Meta::root(mode))?;
        }
        Ok(())
    }) else {
        return;
    };
    assert_eq!(code, 1, "{report:#}");
    let f = findings(&report, "sshd.host-keys");
    assert_eq!(f.len(), 2, "{report:#}");
    for (rel, mode) in modes {
        let path = format!("/{rel}");
        let ours = f.iter().find(|x| x["subject"] == path.as_str());
        if mode == 0o600 {
            assert!(ours.is_none(), "{path}: {report:#}");
            continue;
        }
        let ours = ours.unwrap_or_else(|| panic!("{path}: {report:#}"));
        assert_eq!(ours["severity"], "warning");
        let edit = &ours["repair"]["edits"][0];
        assert_eq!(edit["op"], "set_mode");
        assert_eq!(edit["path"], path.as_str());
        assert_eq!(edit["from"], mode);
        assert_eq!(edit["to"], 0o600);
    }
    if !oracle_sshd() || !have_tool("setpriv", "--version") {
        return;
    }
    let dir = oracle_dir();
    for (i, (rel, mode)) in modes.iter().enumerate() {
        let key = fixture_file("debian12", rel);
        let (loads, said) = sshd_verdict(dir.path(), &format!("k{i}"), &key, *mode);
        let ours = f.iter().any(|x| x["subject"] == format!("/{rel}").as_str());
        assert_eq!(loads, !ours, "mode {mode:o} of {rel}: sshd said {said}");
        if !loads {
            assert!(said.contains("UNPROTECTED PRIVATE KEY FILE"), "{said}");
        }
    }
}

/// Key files made by the real tools, each with what it is.
fn generated_keys(dir: &Path) -> Vec<(String, Vec<u8>)> {
    let keygen = |name: &str, args: &[&str]| -> Vec<u8> {
        let p = dir.join(name);
        let out = Command::new("ssh-keygen")
            .args(["-q", "-C", "test", "-f"])
            .arg(&p)
            .args(args)
            .output()
            .expect("running ssh-keygen");
        assert!(
            out.status.success(),
            "{}",
            String::from_utf8_lossy(&out.stderr)
        );
        std::fs::read(&p).unwrap()
    };
    let ed = keygen("ed", &["-t", "ed25519", "-N", ""]);
    let rsa_pem = keygen(
        "rsapem",
        &["-t", "rsa", "-b", "2048", "-m", "PEM", "-N", ""],
    );
    let ec_p8 = keygen("ecp8", &["-t", "ecdsa", "-m", "PKCS8", "-N", ""]);
    let enc = keygen("enc", &["-t", "ed25519", "-N", "password"]);
    let enc_pem = keygen(
        "encpem",
        &["-t", "rsa", "-b", "2048", "-m", "PEM", "-N", "password"],
    );
    let public = std::fs::read(dir.join("ed.pub")).unwrap();
    let text = String::from_utf8(ed.clone()).unwrap();
    let mut keys = vec![
        ("good_ed25519".to_owned(), ed.clone()),
        ("good_rsa_pem".to_owned(), rsa_pem.clone()),
        ("good_ecdsa_pkcs8".to_owned(), ec_p8),
        (
            "pem_after_junk".to_owned(),
            [&b"junk\n"[..], &rsa_pem].concat(),
        ),
        (
            "pem_crlf".to_owned(),
            String::from_utf8(rsa_pem.clone())
                .unwrap()
                .replace('\n', "\r\n")
                .into_bytes(),
        ),
        (
            "no_final_newline".to_owned(),
            text.trim_end().as_bytes().to_vec(),
        ),
        ("crlf".to_owned(), text.replace('\n', "\r\n").into_bytes()),
        ("leading_blank".to_owned(), format!("\n{text}").into_bytes()),
        ("truncated".to_owned(), ed[..ed.len() / 2].to_vec()),
        ("encrypted".to_owned(), enc),
        ("encrypted_pem".to_owned(), enc_pem),
        ("empty".to_owned(), Vec::new()),
        ("garbage".to_owned(), b"not a key at all\n".to_vec()),
        ("public_key".to_owned(), public),
    ];
    // OpenSSL's Ed25519 in PKCS#8, when openssl is there.
    let p8 = dir.join("ed_p8");
    if Command::new("openssl")
        .args(["genpkey", "-algorithm", "ed25519", "-out"])
        .arg(&p8)
        .output()
        .is_ok_and(|o| o.status.success())
    {
        keys.push(("ed25519_pkcs8".to_owned(), std::fs::read(&p8).unwrap()));
    }
    keys
}

#[test]
fn host_key_contents_agree_with_sshd() {
    if !have_tool("ssh-keygen", "-?") || !oracle_sshd() || !have_tool("setpriv", "--version") {
        return;
    }
    let gen = tempfile::tempdir().unwrap();
    let keys = generated_keys(gen.path());
    let keys_for_image = keys.clone();
    let Some((_, report, _c)) = variant("hostkey-contents", "gpt-debian", move |c| {
        let t = c.tree();
        // The default keys stay; each test key is one more HostKey.
        let mut conf = String::from("HostKey /etc/ssh/ssh_host_ed25519_key\n");
        for (name, data) in &keys_for_image {
            let rel = format!("etc/ssh/test_{name}");
            t.write(&rel, data)?;
            t.set_meta(&rel, xtask::Meta::root(0o600))?;
            conf.push_str(&format!("HostKey /{rel}\n"));
        }
        t.write("etc/ssh/sshd_config.d/10-test-keys.conf", conf)?;
        Ok(())
    }) else {
        return;
    };
    let f = findings(&report, "sshd.host-keys");
    let dir = oracle_dir();
    for (name, data) in &keys {
        let path = format!("/etc/ssh/test_{name}");
        let ours = f.iter().find(|x| x["subject"] == path.as_str());
        let (loads, said) = sshd_verdict(dir.path(), name, data, 0o600);
        assert_eq!(
            loads,
            ours.is_none(),
            "{name}: sshd -t says {said:?}; we say {ours:#?}"
        );
        if let Some(o) = ours {
            assert_eq!(o["severity"], "warning");
            // The HostKey line that names it is the evidence.
            assert_eq!(
                o["evidence"][0]["path"],
                "/etc/ssh/sshd_config.d/10-test-keys.conf"
            );
        }
    }
    assert!(f.iter().all(|x| x["severity"] == "warning"), "{report:#}");
}

#[test]
fn debian_without_host_keys() {
    let Some((code, report, _c)) = variant("no-hostkeys", "gpt-debian", |c| {
        for ty in ["rsa", "ecdsa", "ed25519"] {
            c.tree().remove(&format!("etc/ssh/ssh_host_{ty}_key"))?;
        }
        Ok(())
    }) else {
        return;
    };
    assert_eq!(code, 1);
    let f = findings(&report, "sshd.host-keys");
    assert_eq!(f.len(), 1, "{report:#}");
    assert_eq!(f[0]["severity"], "error");
    assert_eq!(f[0]["evidence"].as_array().unwrap().len(), 3);
    assert!(f[0]["repair"]["edits"].as_array().unwrap().is_empty());
    assert!(f[0]["repair"]["manual"]
        .as_str()
        .unwrap()
        .contains("ssh-keygen -A"));
    // The words are sshd's own.
    if oracle_sshd() {
        let dir = oracle_dir();
        let out = Command::new(SSHD)
            .arg("-t")
            .arg("-f")
            .arg("/dev/null")
            .arg("-h")
            .arg(dir.path().join("missing"))
            .output()
            .unwrap();
        let said = String::from_utf8_lossy(&out.stderr);
        assert!(!out.status.success());
        assert!(
            said.contains("sshd: no hostkeys available -- exiting"),
            "{said}"
        );
        assert!(f[0]["cause"]
            .as_str()
            .unwrap()
            .contains("sshd: no hostkeys available -- exiting"));
    }
}

#[test]
fn rhel_ssh_keys_group_and_privsep_directory() {
    let Some((code, report, _c)) = variant("rhel-keys-privsep", "mbr-rhel", |c| {
        let t = c.tree();
        // 0660 root:ssh_keys: group write is more than RHEL's patch allows.
        t.set_meta(
            "etc/ssh/ssh_host_rsa_key",
            xtask::Meta {
                mode: 0o660,
                uid: 0,
                gid: 101,
            },
        )?;
        // RHEL 9's sshd uses /usr/share/empty.sshd (PRIVSEP_PATH).
        t.set_meta("usr/share/empty.sshd", xtask::Meta::root(0o777))?;
        // A missing default key that sshd-keygen@.service makes at boot.
        t.remove("etc/ssh/ssh_host_ed25519_key")?;
        t.write(
            "usr/lib/systemd/system/sshd-keygen@.service",
            "[Unit]\nDescription=OpenSSH %i Server Key Generation\nConditionFileNotEmpty=|!/etc/ssh/ssh_host_%i_key\n\n[Service]\nType=oneshot\nEnvironmentFile=-/etc/sysconfig/sshd\nExecStart=/usr/libexec/openssh/sshd-keygen %i\n\n[Install]\nWantedBy=sshd-keygen.target\n",
        )?;
        Ok(())
    }) else {
        return;
    };
    assert_eq!(code, 1, "{report:#}");
    let keys = findings(&report, "sshd.host-keys");
    // The 0660 key and the regenerated one: the 0640 root:ssh_keys ecdsa
    // key is fine on RHEL 9.
    assert_eq!(keys.len(), 2, "{report:#}");
    assert_eq!(keys[0]["subject"], "/etc/ssh/ssh_host_rsa_key");
    assert_eq!(keys[0]["severity"], "warning");
    assert_eq!(keys[1]["subject"], "/etc/ssh/ssh_host_ed25519_key");
    assert_eq!(keys[1]["severity"], "info");
    assert!(keys[1]["cause"].as_str().unwrap().contains("sshd-keygen@"));
    let edit = &keys[0]["repair"]["edits"][0];
    assert_eq!(
        (edit["op"].as_str(), edit["to"].as_u64()),
        (Some("set_mode"), Some(0o640))
    );
    let p = findings(&report, "sshd.privsep");
    assert_eq!(p.len(), 1, "{report:#}");
    assert_eq!(p[0]["severity"], "error");
    assert!(p[0]["cause"]
        .as_str()
        .unwrap()
        .contains("/usr/share/empty.sshd must be owned by root and not group or world-writable"));
    let edits = p[0]["repair"]["edits"].as_array().unwrap();
    assert_eq!(edits.len(), 1, "{edits:#?}");
    assert_eq!(edits[0]["op"], "set_mode");
    assert_eq!(edits[0]["path"], "/usr/share/empty.sshd");
    assert_eq!(edits[0]["from"], 0o777);
    assert_eq!(edits[0]["to"], 0o711);
}

#[test]
fn debian_without_the_sshd_user() {
    let Some((code, report, custom)) = variant("no-sshd-user", "gpt-debian", |c| {
        let t = c.tree();
        let passwd = t.read_to_string("etc/passwd")?;
        let kept: String = passwd
            .lines()
            .filter(|l| !l.starts_with("sshd:"))
            .map(|l| format!("{l}\n"))
            .collect();
        assert_ne!(kept, passwd);
        t.write("etc/passwd", kept)?;
        Ok(())
    }) else {
        return;
    };
    assert_eq!(code, 1);
    let f = findings(&report, "sshd.privsep");
    assert_eq!(f.len(), 1, "{report:#}");
    assert!(f[0]["cause"]
        .as_str()
        .unwrap()
        .contains("Privilege separation user sshd does not exist"));
    // The edit appends the user adduser --system would make: the first
    // free uid from 100, group nogroup, home /run/sshd.
    let passwd = fixture_file("debian12", "etc/passwd");
    let passwd = String::from_utf8(passwd).unwrap();
    let used: Vec<u32> = passwd
        .lines()
        .filter(|l| !l.starts_with("sshd:"))
        .filter_map(|l| l.split(':').nth(2)?.parse().ok())
        .collect();
    let uid = (100..1000).find(|u| !used.contains(u)).unwrap();
    let edits = f[0]["repair"]["edits"].as_array().unwrap();
    assert_eq!(edits.len(), 1, "{edits:#?}");
    assert_eq!(edits[0]["path"], "/etc/passwd");
    let after = edits[0]["after"].as_str().unwrap();
    assert!(
        after.ends_with(&format!(
            "\nsshd:x:{uid}:65534::/run/sshd:/usr/sbin/nologin"
        )),
        "{after}"
    );
    drop(custom);
}

#[test]
fn hosts_deny_for_everyone_agrees_with_tcpdmatch() {
    let deny_rule = "sshd: ALL";
    let Some((code, report, _c)) = variant("deny-all", "gpt-debian", |c| {
        c.tree()
            .append("etc/hosts.deny", &format!("{deny_rule}\n"))?;
        Ok(())
    }) else {
        return;
    };
    assert_eq!(code, 1);
    let f = findings(&report, "net.tcp-wrappers");
    assert_eq!(f.len(), 1, "{report:#}");
    assert_eq!(f[0]["severity"], "error");
    let deny = fixture_file("debian12", "etc/hosts.deny");
    let deny = [&deny[..], format!("{deny_rule}\n").as_bytes()].concat();
    let allow = fixture_file("debian12", "etc/hosts.allow");
    let line = String::from_utf8_lossy(&deny).lines().count();
    assert_eq!(f[0]["evidence"][0]["path"], "/etc/hosts.deny");
    assert_eq!(f[0]["evidence"][0]["line"], line);
    assert_eq!(f[0]["evidence"][0]["text"], deny_rule);
    let edit = &f[0]["repair"]["edits"][0];
    assert_eq!(edit["before"], deny_rule);
    assert!(
        edit["after"].as_str().unwrap().ends_with("\n#sshd: ALL"),
        "{edit:#}"
    );
    let repaired = apply_repair(&deny, f[0], "/etc/hosts.deny");
    if !have_tool("tcpdmatch", "-?") {
        return;
    }
    for addr in ["192.0.2.10", "10.1.2.3"] {
        assert!(!tcpdmatch_grants(&allow, &deny, addr), "{addr}");
        assert!(tcpdmatch_grants(&allow, &repaired, addr), "{addr}");
    }
}

/// Debian's ufw files as the package ships them (ufw 0.36.2).
const UFW_CONF: &str = "# /etc/ufw/ufw.conf\n#\n\n# Set to yes to start on boot. If setting this remotely, be sure to add a rule\n# to allow your remote connection before starting ufw. Eg: 'ufw allow 22/tcp'\nENABLED=yes\n\n# Please use the 'ufw' command to set the loglevel. Eg: 'ufw logging medium'.\n# See 'man ufw' for details.\nLOGLEVEL=low\n";
const DEFAULT_UFW: &str = "# /etc/default/ufw\n#\n\n# Set to yes to apply rules to support IPv6 (no means only IPv6 on loopback\n# accepted). You will need to 'disable' and then 'enable' the firewall for\n# the changes to take affect.\nIPV6=yes\n\n# Set the default input policy to ACCEPT, DROP, or REJECT. Please note that if\n# you change this you will most likely want to adjust your rules.\nDEFAULT_INPUT_POLICY=\"DROP\"\n\n# Set the default output policy to ACCEPT, DROP, or REJECT. Please note that if\n# you change this you will most likely want to adjust your rules.\nDEFAULT_OUTPUT_POLICY=\"ACCEPT\"\n\n# Set the default forward policy to ACCEPT, DROP or REJECT.  Please note that\n# if you change this you will most likely want to adjust your rules\nDEFAULT_FORWARD_POLICY=\"DROP\"\n\n# Set the default application policy to ACCEPT, DROP, REJECT or SKIP. Please\n# note that setting this to ACCEPT may be a security risk. See 'man ufw' for\n# details\nDEFAULT_APPLICATION_POLICY=\"SKIP\"\n\n# By default, ufw only touches its own chains. Set this to 'yes' to have ufw\n# manage the built-in chains too. Warning: setting this to 'yes' will break\n# non-ufw managed firewall rules\nMANAGE_BUILTINS=no\n\n#\n# IPT backend\n#\n# only enable if using iptables backend\nIPT_SYSCTL=/etc/ufw/sysctl.conf\n\n# Extra connection tracking modules to load. IPT_MODULES should typically be\n# empty for new installations and modules added only as needed. See\n# 'CONNECTION HELPERS' from 'man ufw-framework' for details. Note that\n# IPT_MODULES is only used with the iptables backend.\nIPT_MODULES=\"\"\n";
const UFW_SERVICE: &str = "[Unit]\nDescription=Uncomplicated firewall\nDocumentation=man:ufw(8)\nDefaultDependencies=no\nBefore=network-pre.target\nWants=network-pre.target local-fs.target\nAfter=local-fs.target\n\n[Service]\nType=oneshot\nRemainAfterExit=yes\nExecStart=/lib/ufw/ufw-init start quiet\nExecStop=/lib/ufw/ufw-init stop\n\n[Install]\nWantedBy=multi-user.target\n";

/// user.rules as `ufw enable` leaves it, with `rules` in the RULES section.
fn ufw_user_rules(rules: &str) -> String {
    format!(
        "*filter\n:ufw-user-input - [0:0]\n:ufw-user-output - [0:0]\n:ufw-user-forward - [0:0]\n:ufw-before-logging-input - [0:0]\n:ufw-before-logging-output - [0:0]\n:ufw-before-logging-forward - [0:0]\n:ufw-user-logging-input - [0:0]\n:ufw-user-logging-output - [0:0]\n:ufw-user-logging-forward - [0:0]\n:ufw-after-logging-input - [0:0]\n:ufw-after-logging-output - [0:0]\n:ufw-after-logging-forward - [0:0]\n:ufw-logging-deny - [0:0]\n:ufw-logging-allow - [0:0]\n:ufw-user-limit - [0:0]\n:ufw-user-limit-accept - [0:0]\n### RULES ###\n{rules}\n### END RULES ###\n\n### LOGGING ###\n-A ufw-after-logging-input -j LOG --log-prefix \"[UFW BLOCK] \" -m limit --limit 3/min --limit-burst 10\n-A ufw-after-logging-forward -j LOG --log-prefix \"[UFW BLOCK] \" -m limit --limit 3/min --limit-burst 10\n-I ufw-logging-deny -m conntrack --ctstate INVALID -j RETURN -m limit --limit 3/min --limit-burst 10\n-A ufw-logging-deny -j LOG --log-prefix \"[UFW BLOCK] \" -m limit --limit 3/min --limit-burst 10\n-A ufw-logging-allow -j LOG --log-prefix \"[UFW ALLOW] \" -m limit --limit 3/min --limit-burst 10\n### END LOGGING ###\n\n### RATE LIMITING ###\n-A ufw-user-limit -m limit --limit 3/minute -j LOG --log-prefix \"[UFW LIMIT BLOCK] \"\n-A ufw-user-limit -j REJECT\n-A ufw-user-limit-accept -j ACCEPT\n### END RATE LIMITING ###\nCOMMIT\n"
    )
}

fn install_ufw(t: &mut xtask::tree::StagedTree, rules: &str) -> anyhow::Result<()> {
    t.write("etc/ufw/ufw.conf", UFW_CONF)?;
    t.write("etc/default/ufw", DEFAULT_UFW)?;
    t.write("etc/ufw/user.rules", ufw_user_rules(rules))?;
    t.write("usr/lib/systemd/system/ufw.service", UFW_SERVICE)?;
    t.symlink(
        "etc/systemd/system/multi-user.target.wants/ufw.service",
        "/lib/systemd/system/ufw.service",
    )?;
    Ok(())
}

#[test]
fn narrow_wrapper_rule_and_ufw_allowing_ssh() {
    let Some((code, report, _c)) = variant("deny-some-ufw-open", "gpt-debian", |c| {
        let t = c.tree();
        t.append("etc/hosts.deny", "ALL: 10.0.0.0/8\n")?;
        install_ufw(
            t,
            "\n### tuple ### allow tcp 22 0.0.0.0/0 any 0.0.0.0/0 in\n-A ufw-user-input -p tcp --dport 22 -j ACCEPT\n",
        )?;
        Ok(())
    }) else {
        return;
    };
    assert_eq!(code, 1, "{report:#}");
    let f = findings(&report, "net.tcp-wrappers");
    assert_eq!(f.len(), 1, "{report:#}");
    assert_eq!(f[0]["severity"], "warning");
    assert!(f[0]["repair"]["edits"].as_array().unwrap().is_empty());
    assert_eq!(f[0]["evidence"][0]["text"], "ALL: 10.0.0.0/8");
    // ufw is enabled and lets 22/tcp in.
    assert!(ran(&report, "net.guest-firewall"));
    assert!(
        findings(&report, "net.guest-firewall").is_empty(),
        "{report:#}"
    );
    if !have_tool("tcpdmatch", "-?") {
        return;
    }
    let allow = fixture_file("debian12", "etc/hosts.allow");
    let deny = [
        &fixture_file("debian12", "etc/hosts.deny")[..],
        b"ALL: 10.0.0.0/8\n",
    ]
    .concat();
    assert!(!tcpdmatch_grants(&allow, &deny, "10.1.2.3"));
    assert!(tcpdmatch_grants(&allow, &deny, "192.0.2.10"));
}

#[test]
fn hosts_deny_without_final_newline_denies_everyone() {
    // libwrap stops with an error on a last line without a newline, and
    // in hosts.deny that denies every client not matched yet.
    let Some((code, report, _c)) = variant("deny-no-newline", "gpt-debian", |c| {
        c.tree().append("etc/hosts.deny", "sshd: 10.0.0.0/8")?;
        Ok(())
    }) else {
        return;
    };
    assert_eq!(code, 1);
    let f = findings(&report, "net.tcp-wrappers");
    assert_eq!(f.len(), 1, "{report:#}");
    assert_eq!(f[0]["severity"], "error");
    assert!(
        f[0]["cause"].as_str().unwrap().contains("newline"),
        "{:#}",
        f[0]
    );
    let deny = [
        &fixture_file("debian12", "etc/hosts.deny")[..],
        b"sshd: 10.0.0.0/8",
    ]
    .concat();
    let summary = f[0]["repair"]["summary"].as_str().unwrap();
    assert!(summary.starts_with("add the missing newline"), "{summary}");
    let repaired = apply_repair(&deny, f[0], "/etc/hosts.deny");
    assert_eq!(repaired, [&deny[..], b"\n"].concat());
    if !have_tool("tcpdmatch", "-?") {
        return;
    }
    let allow = fixture_file("debian12", "etc/hosts.allow");
    assert!(!tcpdmatch_grants(&allow, &deny, "192.0.2.10"));
    assert!(tcpdmatch_grants(&allow, &repaired, "192.0.2.10"));
    assert!(!tcpdmatch_grants(&allow, &repaired, "10.1.2.3"));
}

#[test]
fn ufw_enabled_without_ssh() {
    let Some((code, report, _c)) = variant("ufw-closed", "gpt-debian", |c| {
        install_ufw(c.tree(), "")?;
        Ok(())
    }) else {
        return;
    };
    assert_eq!(code, 1);
    let f = findings(&report, "net.guest-firewall");
    assert_eq!(f.len(), 1, "{report:#}");
    assert_eq!(f[0]["severity"], "error");
    // The deciding rule is the default input policy.
    assert_eq!(f[0]["evidence"][0]["path"], "/etc/default/ufw");
    assert_eq!(f[0]["evidence"][0]["text"], "DEFAULT_INPUT_POLICY=DROP");
    let summary = f[0]["repair"]["summary"].as_str().unwrap();
    assert!(summary.contains("opens the port"), "{summary}");
    let user = ufw_user_rules("");
    let repaired = apply_repair(user.as_bytes(), f[0], "/etc/ufw/user.rules");
    let repaired = String::from_utf8(repaired).unwrap();
    assert!(
        repaired.contains("### tuple ### allow tcp 22 0.0.0.0/0 any 0.0.0.0/0 in\n-A ufw-user-input -p tcp --dport 22 -j ACCEPT\n"),
        "{repaired}"
    );
}

const FIREWALLD_SERVICE: &str = "[Unit]\nDescription=firewalld - dynamic firewall daemon\nBefore=network-pre.target\nWants=network-pre.target\nAfter=dbus.service\nAfter=polkit.service\nConflicts=iptables.service ip6tables.service ebtables.service ipset.service nftables.service\nDocumentation=man:firewalld(1)\n\n[Service]\nEnvironmentFile=-/etc/sysconfig/firewalld\nExecStart=/usr/sbin/firewalld --nofork --nopid $FIREWALLD_ARGS\nExecReload=/bin/kill -HUP $MAINPID\nStandardOutput=null\nStandardError=null\nType=dbus\nBusName=org.fedoraproject.FirewallD1\nKillMode=mixed\n\n[Install]\nWantedBy=multi-user.target\nAlias=dbus-org.fedoraproject.FirewallD1.service\n";

fn install_firewalld(t: &mut xtask::tree::StagedTree) -> anyhow::Result<()> {
    t.write(
        "usr/lib/systemd/system/firewalld.service",
        FIREWALLD_SERVICE,
    )?;
    t.symlink(
        "etc/systemd/system/multi-user.target.wants/firewalld.service",
        "/usr/lib/systemd/system/firewalld.service",
    )?;
    t.write(
        "etc/firewalld/firewalld.conf",
        "# firewalld config file\n\n# default zone\n# The default zone used if an empty zone string is used.\n# Default: public\nDefaultZone=public\n\n# Clean up on exit\nCleanupOnExit=yes\n",
    )?;
    Ok(())
}

#[test]
fn firewalld_zone_without_ssh() {
    let zone = "<?xml version=\"1.0\" encoding=\"utf-8\"?>\n<zone>\n  <short>Public</short>\n  <description>For use in public areas.</description>\n  <service name=\"dhcpv6-client\"/>\n  <service name=\"cockpit\"/>\n  <forward/>\n</zone>\n";
    let Some((code, report, _c)) = variant("firewalld-no-ssh", "mbr-rhel", |c| {
        let t = c.tree();
        install_firewalld(t)?;
        t.write("etc/firewalld/zones/public.xml", zone)?;
        // And no privilege separation directory.
        t.remove("usr/share/empty.sshd")?;
        Ok(())
    }) else {
        return;
    };
    assert_eq!(code, 1, "{report:#}");
    let f = findings(&report, "net.guest-firewall");
    assert_eq!(f.len(), 1, "{report:#}");
    assert_eq!(f[0]["severity"], "error");
    assert!(f[0]["subject"]
        .as_str()
        .unwrap()
        .contains("firewalld zone public"));
    let repaired = apply_repair(zone.as_bytes(), f[0], "/etc/firewalld/zones/public.xml");
    let repaired = String::from_utf8(repaired).unwrap();
    assert!(repaired.contains("<service name=\"ssh\"/>"), "{repaired}");
    assert!(repaired.contains("<service name=\"cockpit\"/>"));
    let p = findings(&report, "sshd.privsep");
    assert_eq!(p.len(), 1, "{report:#}");
    assert!(p[0]["cause"]
        .as_str()
        .unwrap()
        .contains("Missing privilege separation directory: /usr/share/empty.sshd"));
    let edits = p[0]["repair"]["edits"].as_array().unwrap();
    assert_eq!(edits.len(), 1, "{edits:#?}");
    assert_eq!(edits[0]["op"], "create_dir");
    assert_eq!(edits[0]["path"], "/usr/share/empty.sshd");
    assert_eq!(edits[0]["mode"], 0o711);
    assert_eq!(
        (edits[0]["uid"].as_u64(), edits[0]["gid"].as_u64()),
        (Some(0), Some(0))
    );
}

#[test]
fn firewalld_default_zone_and_selinux_denial() {
    // An AVC denial as the kernel logs it when sshd reads an authorized_keys
    // without a proper label (default_t).
    let avc = "type=AVC msg=audit(1733050000.123:812): avc:  denied  { read } for  pid=1432 comm=\"sshd\" name=\"authorized_keys\" dev=\"vda4\" ino=393244 scontext=system_u:system_r:sshd_t:s0-s0:c0.c1023 tcontext=unconfined_u:object_r:default_t:s0 tclass=file permissive=0\n";
    let Some((code, report, _c)) = variant("firewalld-public-avc", "mbr-rhel", |c| {
        let t = c.tree();
        install_firewalld(t)?;
        t.write("var/log/audit/audit.log", avc)?;
        t.set_meta("var/log/audit/audit.log", xtask::Meta::root(0o600))?;
        Ok(())
    }) else {
        return;
    };
    assert_eq!(code, 1, "{report:#}");
    // firewalld's built-in public zone lists ssh.
    assert!(ran(&report, "net.guest-firewall"));
    assert!(
        findings(&report, "net.guest-firewall").is_empty(),
        "{report:#}"
    );
    let f = findings(&report, "ssh.selinux-label");
    assert_eq!(f.len(), 1, "{report:#}");
    assert_eq!(f[0]["severity"], "warning");
    let ev = f[0]["evidence"].as_array().unwrap();
    assert_eq!(ev[0]["path"], "/etc/selinux/config");
    assert_eq!(ev[0]["text"], "SELINUX=enforcing");
    assert_eq!(ev[1]["kind"], "log");
    assert_eq!(ev[1]["path"], "/var/log/audit/audit.log");
    assert_eq!(ev[1]["timestamp"], "1733050000.123");
    assert!(f[0]["repair"]["manual"]
        .as_str()
        .unwrap()
        .contains("/.autorelabel"));
}
