//! The sshd_config analysis judged by the real `sshd -t`.
//!
//! Every `*.conf` in `tests/sshd_corpus/` is copied to a temporary
//! directory (with `@DIR@` replaced by that directory, so `Include` tests
//! can point at their own files), checked with
//! `sshd -t -f FILE -h HOSTKEY`, and analysed offline for the installed
//! sshd's release and distribution. The test requires that both agree on
//! valid versus failing and that every line sshd prints (line numbers and
//! message text, byte for byte) is what the analysis predicts, in order.
//!
//! Needs `sshd` and `ssh-keygen` (Debian: openssh-server). Without them the
//! test is skipped, or fails when `RESCUE_REQUIRE_TOOLS=1`. As root, sshd
//! insists on its privilege separation directory `/run/sshd`, which the
//! test creates when missing, as sshd's systemd unit would.

use std::fs;
use std::path::{Path, PathBuf};
use std::process::Command;

use rescue_config::sshd::{
    analyze, glob_with, Distro, IncludeSource, Limits, OpensshVersion, SshdConfig, Status, Target,
};

fn require_tools() -> bool {
    std::env::var("RESCUE_REQUIRE_TOOLS").is_ok_and(|v| v == "1")
}

fn find_tool(name: &str) -> Option<PathBuf> {
    for dir in [
        "/usr/sbin",
        "/usr/bin",
        "/sbin",
        "/bin",
        "/usr/local/sbin",
        "/usr/local/bin",
    ] {
        let p = Path::new(dir).join(name);
        if p.is_file() {
            return Some(p);
        }
    }
    None
}

fn corpus_dir() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/sshd_corpus")
}

/// Reads the host filesystem read-only, as sshd itself does in this test.
struct HostFs;

impl IncludeSource for HostFs {
    fn read(&self, path: &str) -> Result<Vec<u8>, String> {
        // sshd opens directories fine and reads nothing from them.
        if Path::new(path).is_dir() {
            return Ok(Vec::new());
        }
        fs::read(path).map_err(|e| match e.kind() {
            std::io::ErrorKind::NotFound => "No such file or directory".to_owned(),
            std::io::ErrorKind::PermissionDenied => "Permission denied".to_owned(),
            _ => e.to_string(),
        })
    }

    fn glob(&self, pattern: &str) -> Vec<String> {
        let list = |dir: &str| -> Option<Vec<String>> {
            let rd = fs::read_dir(dir).ok()?;
            Some(
                rd.filter_map(|e| e.ok()?.file_name().into_string().ok())
                    .collect(),
            )
        };
        let exists = |p: &str| fs::symlink_metadata(p).is_ok();
        glob_with(pattern, &list, &exists)
    }
}

fn replace_all(data: &[u8], from: &[u8], to: &[u8]) -> Vec<u8> {
    let mut out = Vec::with_capacity(data.len());
    let mut i = 0;
    while i < data.len() {
        if data[i..].starts_with(from) {
            out.extend_from_slice(to);
            i += from.len();
        } else {
            out.push(data[i]);
            i += 1;
        }
    }
    out
}

fn copy_corpus(from: &Path, to: &Path, dir_token: &[u8]) {
    fs::create_dir_all(to).expect("creating the corpus copy");
    for e in fs::read_dir(from).expect("listing the corpus") {
        let e = e.expect("reading the corpus directory");
        let dst = to.join(e.file_name());
        if e.file_type().expect("file type").is_dir() {
            copy_corpus(&e.path(), &dst, dir_token);
        } else {
            let data = fs::read(e.path()).expect("reading a corpus file");
            fs::write(&dst, replace_all(&data, b"@DIR@", dir_token))
                .expect("writing a corpus file");
        }
    }
}

/// The openssh-server package version from dpkg or rpm, if either knows it.
fn package_version() -> Option<String> {
    let tries: [(&str, &[&str]); 2] = [
        ("dpkg-query", &["-W", "-f=${Version}", "openssh-server"]),
        (
            "rpm",
            &["-q", "--qf", "%{VERSION}-%{RELEASE}", "openssh-server"],
        ),
    ];
    for (tool, args) in tries {
        let Some(path) = find_tool(tool) else {
            continue;
        };
        let Ok(out) = Command::new(path).args(args).output() else {
            continue;
        };
        let v = String::from_utf8_lossy(&out.stdout).trim().to_owned();
        if out.status.success() && !v.is_empty() {
            return Some(v);
        }
    }
    None
}

fn is_root() -> bool {
    fs::read_to_string("/proc/self/status")
        .ok()
        .and_then(|s| {
            s.lines()
                .find(|l| l.starts_with("Uid:"))
                .map(|l| l.split_whitespace().nth(2) == Some("0"))
        })
        .unwrap_or(false)
}

/// Installed tools, the emulated build, and a private copy of the corpus.
struct Oracle {
    sshd: PathBuf,
    key: PathBuf,
    tmp: PathBuf,
    target: Target,
}

impl Drop for Oracle {
    fn drop(&mut self) {
        let _ = fs::remove_dir_all(&self.tmp);
    }
}

impl Oracle {
    /// `None` when the tools are missing (and that is allowed).
    fn new(tag: &str) -> Option<Oracle> {
        let (Some(sshd), Some(keygen)) = (find_tool("sshd"), find_tool("ssh-keygen")) else {
            assert!(
                !require_tools(),
                "sshd or ssh-keygen is missing (install openssh-server)"
            );
            eprintln!("skipping: sshd or ssh-keygen is not installed");
            return None;
        };
        // The package version says release and distribution
        // ("1:9.2p1-2+deb12u10"); `sshd -V` ("OpenSSH_9.2, OpenSSL …") only
        // the release.
        let package = package_version().unwrap_or_default();
        let v = Command::new(&sshd)
            .arg("-V")
            .output()
            .expect("running sshd -V");
        let banner = String::from_utf8_lossy(&v.stderr).into_owned();
        let version = OpensshVersion::parse(&package)
            .or_else(|| OpensshVersion::parse(banner.trim()))
            .unwrap_or_else(|| panic!("unreadable sshd version {package:?} {banner:?}"));
        let target = Target::new(version, Distro::guess(&format!("{package} {banner}")));
        eprintln!(
            "oracle: {} as {:?} (package {package:?}, {})",
            version,
            target.distro,
            banner.trim()
        );

        let tmp = std::env::temp_dir().join(format!("rescue-sshd-{tag}-{}", std::process::id()));
        let _ = fs::remove_dir_all(&tmp);
        let dir_token = tmp.to_str().expect("utf-8 temp dir").as_bytes().to_vec();
        copy_corpus(&corpus_dir(), &tmp, &dir_token);
        let key = tmp.join("hostkey");
        let st = Command::new(&keygen)
            .args(["-q", "-t", "ed25519", "-N", "", "-f"])
            .arg(&key)
            .status()
            .expect("running ssh-keygen");
        assert!(st.success(), "ssh-keygen failed");
        if is_root() && !Path::new("/run/sshd").exists() {
            fs::create_dir_all("/run/sshd").expect("creating /run/sshd");
        }
        Some(Oracle {
            sshd,
            key,
            tmp,
            target,
        })
    }

    /// The corpus configurations, sorted.
    fn names(&self) -> Vec<String> {
        let mut names: Vec<String> = fs::read_dir(&self.tmp)
            .expect("listing corpus copy")
            .filter_map(|e| e.ok()?.file_name().into_string().ok())
            .filter(|n| n.ends_with(".conf"))
            .collect();
        names.sort();
        names
    }

    /// `sshd -t`: success and the lines printed.
    fn check(&self, path: &Path) -> (bool, Option<i32>, Vec<String>) {
        let out = Command::new(&self.sshd)
            .arg("-t")
            .arg("-f")
            .arg(path)
            .arg("-h")
            .arg(&self.key)
            .output()
            .expect("running sshd -t");
        let stderr = String::from_utf8_lossy(&out.stderr);
        let lines = stderr
            .split('\n')
            .map(|l| l.strip_suffix('\r').unwrap_or(l).to_owned())
            .filter(|l| !l.is_empty())
            .collect();
        (out.status.success(), out.status.code(), lines)
    }
}

#[test]
fn sshd_t_agrees_with_the_analysis() {
    let Some(o) = Oracle::new("oracle") else {
        return;
    };
    let (tmp, target) = (o.tmp.clone(), o.target.clone());
    let names = o.names();
    assert!(
        names.len() >= 60,
        "the corpus must hold at least 60 configurations, has {}",
        names.len()
    );

    let mut failures = Vec::new();
    let (mut valid, mut invalid) = (0, 0);
    for name in &names {
        let path = tmp.join(name);
        let path_str = path.to_str().expect("utf-8 path");
        let (success, code, got) = o.check(&path);
        let data = fs::read(&path).expect("reading the copy");
        let a = analyze(path_str, &data, &target, Some(&HostFs), Limits::default());
        let want = a.sshd_output();
        if success {
            valid += 1;
        } else {
            invalid += 1;
        }
        let unknown = a.verdicts.iter().any(|v| v.status == Status::Unknown);
        assert!(
            !unknown,
            "{name}: the corpus must not depend on DNS or /etc/services"
        );
        if success == a.fails() || got != want {
            failures.push(format!(
                "{name}: sshd exit {code:?}, analysis fails={}\n  sshd:     {got:?}\n  analysis: {want:?}",
                a.fails()
            ));
        }
    }
    eprintln!(
        "{} configurations: {valid} valid, {invalid} refused by sshd",
        names.len()
    );
    assert!(
        valid >= 20 && invalid >= 20,
        "the corpus must exercise both outcomes"
    );
    assert!(
        failures.is_empty(),
        "{} disagreements with sshd -t:\n{}",
        failures.len(),
        failures.join("\n")
    );
}

/// The repair `fix` will make, checked end to end: for every configuration
/// sshd refuses, apply the analysis' own proposal line by line (the
/// near-miss keyword when there is one, else comment the line out with the
/// reason) until the analysis finds no problem in the main file, then ask
/// sshd. Problems only in included files are left to their own files.
#[test]
fn proposed_repairs_satisfy_sshd() {
    let Some(o) = Oracle::new("fix") else {
        return;
    };
    let mut repaired = 0;
    let mut failures = Vec::new();
    for name in o.names() {
        let path = o.tmp.join(&name);
        let path_str = path.to_str().expect("utf-8 path").to_owned();
        let (ok, _, _) = o.check(&path);
        if ok {
            continue;
        }
        let mut data = fs::read(&path).expect("reading the copy");
        let mut fixed_all = true;
        for _ in 0..64 {
            let a = analyze(
                &path_str,
                &data,
                &o.target,
                Some(&HostFs),
                Limits::default(),
            );
            if !a.fails() {
                break;
            }
            let Some(v) = a
                .verdicts
                .iter()
                .find(|v| v.file == path_str && matches!(v.status, Status::Error | Status::Fatal))
            else {
                fixed_all = false;
                break;
            };
            let doc = SshdConfig::parse(&data);
            let edited = match &v.suggestion {
                Some(k) => doc.replace_keyword(v.physical_line, k),
                None => doc.comment_out(
                    v.physical_line,
                    &format!("rescue-disk: {}", v.messages.join("; ")),
                ),
            };
            data = edited.unwrap_or_else(|e| panic!("{name}: {e}"));
        }
        if !fixed_all {
            continue;
        }
        let fixed = o.tmp.join(format!("fixed-{name}"));
        fs::write(&fixed, &data).expect("writing the repaired file");
        let (ok, code, got) = o.check(&fixed);
        let a = analyze(
            fixed.to_str().unwrap_or_default(),
            &data,
            &o.target,
            Some(&HostFs),
            Limits::default(),
        );
        if !ok || a.fails() {
            failures.push(format!(
                "{name}: after repair sshd exit {code:?} {got:?}, analysis fails={}",
                a.fails()
            ));
        } else {
            repaired += 1;
        }
    }
    eprintln!("{repaired} refused configurations repaired");
    assert!(
        repaired >= 40,
        "only {repaired} configurations were repaired"
    );
    assert!(failures.is_empty(), "{}", failures.join("\n"));
}

/// The groups of a host account (`id -Gn`), as sshd's `-C user=` sees them.
fn host_groups(user: &str) -> Vec<String> {
    let Some(id) = find_tool("id") else {
        return Vec::new();
    };
    Command::new(id)
        .args(["-Gn", user])
        .output()
        .ok()
        .filter(|o| o.status.success())
        .map(|o| {
            String::from_utf8_lossy(&o.stdout)
                .split_whitespace()
                .map(str::to_owned)
                .collect()
        })
        .unwrap_or_default()
}

/// `effective()` judged by `sshd -T -C user=…,host=…,addr=…,laddr=…,lport=…`
/// on configurations with Match blocks of every decidable kind. The host is
/// given as the address, which is what sshd matches with `UseDNS no`.
#[test]
fn effective_settings_agree_with_sshd_t_c() {
    use rescue_config::sshd::{effective, Connection, PermitRootLogin};
    let Some(o) = Oracle::new("effective") else {
        return;
    };
    let configs: &[&str] = &[
        "PermitRootLogin no\nPasswordAuthentication no\nMatch User root Address 192.0.2.0/24\n  PermitRootLogin prohibit-password\n  PasswordAuthentication yes\n  Banner /etc/issue\n",
        "AllowUsers alice bob@10.0.0.0/8 root@192.0.2.*\nAllowGroups wheel users\nDenyUsers mallory\nMatch Group root,nogroup\n  X11Forwarding no\n  AllowUsers root\n  AuthorizedKeysFile /etc/ssh/keys/%u .ssh/authorized_keys\n",
        "Port 22\nPort 2222\nMatch LocalPort 2222\n  PermitRootLogin forced-commands-only\n  ForceCommand /bin/echo hi there\nMatch LocalAddress 198.51.100.0/24\n  PubkeyAuthentication no\n",
        "KbdInteractiveAuthentication no\nMatch Host 192.0.2.*,!192.0.2.99\n  KbdInteractiveAuthentication yes\n  ChrootDirectory /srv/%u\nMatch All\n  PasswordAuthentication no\n",
        "Match User nobody\n  PermitRootLogin yes\nMatch Address !10.0.0.0/8,*\n  PasswordAuthentication no\n  PasswordAuthentication yes\nMatch User root\n  PasswordAuthentication yes\n  DenyGroups root\n",
        "Include @DIR@/inc/*.conf\nMatch User root\n  Include @DIR@/inc_match/*.conf\nMatch All\nUseDNS no\nStrictModes no\n",
    ];
    let conns = [
        ("root", "192.0.2.10", "198.51.100.1", 22u16),
        ("root", "10.1.2.3", "203.0.113.5", 2222),
        ("nobody", "192.0.2.99", "198.51.100.7", 22),
        ("ghost", "10.0.0.1", "203.0.113.5", 22),
    ];
    let dir = o.tmp.to_str().expect("utf-8").to_owned();
    let mut checked = 0;
    let mut failures = Vec::new();
    for (i, cfg) in configs.iter().enumerate() {
        let cfg = cfg.replace("@DIR@", &dir);
        let path = o.tmp.join(format!("effective-{i}.cfg"));
        fs::write(&path, &cfg).expect("writing a config");
        let path_str = path.to_str().expect("utf-8").to_owned();
        let a = analyze(
            &path_str,
            cfg.as_bytes(),
            &o.target,
            Some(&HostFs),
            Limits::default(),
        );
        assert!(!a.fails(), "config {i}: {:?}", a.messages);
        for (user, addr, laddr, lport) in conns {
            let spec = format!("user={user},host={addr},addr={addr},laddr={laddr},lport={lport}");
            let out = Command::new(&o.sshd)
                .args(["-T", "-f"])
                .arg(&path)
                .arg("-h")
                .arg(&o.key)
                .args(["-C", &spec])
                .output()
                .expect("running sshd -T");
            assert!(
                out.status.success(),
                "sshd -T failed for config {i}: {}",
                String::from_utf8_lossy(&out.stderr)
            );
            let text = String::from_utf8_lossy(&out.stdout);
            let all = |k: &str| -> Vec<String> {
                text.lines()
                    .filter_map(|l| l.strip_prefix(k).and_then(|r| r.strip_prefix(' ')))
                    .map(str::to_owned)
                    .collect()
            };
            let one = |k: &str| all(k).join("\n");
            let conn = Connection {
                user: user.into(),
                groups: host_groups(user),
                host: Some(addr.into()),
                address: Some(addr.into()),
                local_address: Some(laddr.into()),
                local_port: Some(lport),
                rdomain: None,
                invalid_user: false,
            };
            let s = effective(&a, &conn);
            assert!(
                s.uncertain.is_empty(),
                "config {i} {spec}: {:?}",
                s.uncertain
            );
            let yn = |b: bool| if b { "yes" } else { "no" }.to_owned();
            let none_or = |v: Option<&str>| v.unwrap_or("none").to_owned();
            let ours: Vec<(&str, String)> = vec![
                (
                    "permitrootlogin",
                    match s.permit_root_login() {
                        PermitRootLogin::Yes => "yes",
                        PermitRootLogin::No => "no",
                        PermitRootLogin::ProhibitPassword => "without-password",
                        PermitRootLogin::ForcedCommandsOnly => "forced-commands-only",
                    }
                    .to_owned(),
                ),
                ("passwordauthentication", yn(s.password_authentication())),
                ("pubkeyauthentication", yn(s.pubkey_authentication())),
                (
                    "kbdinteractiveauthentication",
                    yn(s.kbd_interactive_authentication()),
                ),
                (
                    "x11forwarding",
                    yn(s.flag("x11forwarding").unwrap_or(false)),
                ),
                ("strictmodes", yn(s.strict_modes())),
                ("usepam", yn(s.use_pam())),
                ("banner", none_or(s.first("banner"))),
                ("forcecommand", none_or(s.force_command())),
                ("chrootdirectory", none_or(s.chroot_directory())),
                ("authorizedkeysfile", s.authorized_keys_files().join(" ")),
                ("allowusers", s.allow_users().join("\n")),
                ("denyusers", s.deny_users().join("\n")),
                ("allowgroups", s.allow_groups().join("\n")),
                ("denygroups", s.deny_groups().join("\n")),
                (
                    "port",
                    s.ports()
                        .iter()
                        .map(u16::to_string)
                        .collect::<Vec<_>>()
                        .join("\n"),
                ),
                ("pidfile", none_or(s.pid_file().as_deref())),
            ];
            for (key, value) in ours {
                checked += 1;
                let theirs = one(key);
                if theirs != value {
                    failures.push(format!(
                        "config {i} {spec}: {key}: sshd {theirs:?}, ours {value:?}"
                    ));
                }
            }
        }
    }
    eprintln!("{checked} effective values compared");
    assert!(failures.is_empty(), "{}", failures.join("\n"));
}
