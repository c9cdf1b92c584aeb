//! authorized_keys against OpenSSH itself.
//!
//! - `ssh-keygen -l -f` on one line at a time says which lines OpenSSH
//!   reads as a key; our line classification must agree on a corpus of real
//!   keys (made by ssh-keygen at test time) and their damaged variants.
//! - A real `sshd -D -e` on a loopback port, with `LogLevel DEBUG3` and the
//!   authorized_keys file rewritten before each connection, says which
//!   option lines admit a login from 127.0.0.1 and logs "bad key options:
//!   <reason>"; our verdicts and reasons must match it line by line.
//!
//! A test that needs a missing tool fails under `RESCUE_REQUIRE_TOOLS=1`
//! and skips with a message otherwise.

use std::io::Read;
use std::net::{IpAddr, Ipv4Addr};
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant, SystemTime};

use rescue_config::authorized_keys::{
    b64_decode, b64_encode, AuthorizedKeys, Client, KeyLineKind, NotAKey, Refusal,
};

fn require_tools() -> bool {
    std::env::var("RESCUE_REQUIRE_TOOLS").is_ok_and(|v| v == "1")
}

fn find_tool(name: &str) -> Option<PathBuf> {
    let path = std::env::var("PATH").unwrap_or_default();
    format!("{path}:/usr/sbin:/sbin")
        .split(':')
        .map(|d| Path::new(d).join(name))
        .find(|p| p.is_file())
}

fn have_tools(test: &str, tools: &[&str]) -> bool {
    let missing: Vec<_> = tools.iter().filter(|t| find_tool(t).is_none()).collect();
    if missing.is_empty() {
        return true;
    }
    if require_tools() {
        panic!("{test}: required tools missing: {missing:?} (RESCUE_REQUIRE_TOOLS=1)");
    }
    eprintln!("SKIP {test}: tools missing: {missing:?}");
    false
}

struct TempDir(PathBuf);

impl TempDir {
    fn new(tag: &str) -> TempDir {
        static COUNTER: std::sync::atomic::AtomicUsize = std::sync::atomic::AtomicUsize::new(0);
        let n = COUNTER.fetch_add(1, std::sync::atomic::Ordering::SeqCst);
        let p =
            std::env::temp_dir().join(format!("rescue-config-{tag}-{}-{n}", std::process::id()));
        let _ = std::fs::remove_dir_all(&p);
        std::fs::create_dir_all(&p).unwrap();
        TempDir(p)
    }
    fn path(&self, name: &str) -> PathBuf {
        self.0.join(name)
    }
}

impl Drop for TempDir {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}

/// Generates a key with ssh-keygen and returns its public line.
fn keygen(dir: &TempDir, name: &str, args: &[&str]) -> String {
    let path = dir.path(name);
    let out = Command::new(find_tool("ssh-keygen").unwrap())
        .args(["-q", "-N", "", "-C", name, "-f"])
        .arg(&path)
        .args(args)
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "ssh-keygen {args:?}: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    std::fs::read_to_string(path.with_extension("pub"))
        .unwrap()
        .trim_end()
        .to_owned()
}

fn blob_of(line: &str) -> Vec<u8> {
    b64_decode(line.split_whitespace().nth(1).unwrap().as_bytes()).unwrap()
}

fn ssh_string(out: &mut Vec<u8>, s: &[u8]) {
    out.extend_from_slice(&(s.len() as u32).to_be_bytes());
    out.extend_from_slice(s);
}

/// A corpus of lines: real keys, and damaged or odd variants of them.
fn corpus(dir: &TempDir) -> Vec<String> {
    let ed = keygen(dir, "ed", &["-t", "ed25519"]);
    let rsa = keygen(dir, "rsa", &["-t", "rsa", "-b", "2048"]);
    let rsa1k = keygen(dir, "rsa1k", &["-t", "rsa", "-b", "1024"]);
    let e256 = keygen(dir, "e256", &["-t", "ecdsa", "-b", "256"]);
    let e384 = keygen(dir, "e384", &["-t", "ecdsa", "-b", "384"]);
    let e521 = keygen(dir, "e521", &["-t", "ecdsa", "-b", "521"]);
    let _ca = keygen(dir, "ca", &["-t", "ed25519"]);
    let out = Command::new(find_tool("ssh-keygen").unwrap())
        .args(["-q", "-s"])
        .arg(dir.path("ca"))
        .args(["-I", "test-id", "-n", "root,alice", "-V", "+52w"])
        .arg(dir.path("ed.pub"))
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let cert = std::fs::read_to_string(dir.path("ed-cert.pub"))
        .unwrap()
        .trim_end()
        .to_owned();

    let b64 = |l: &str| l.split_whitespace().nth(1).unwrap().to_owned();
    let ed_b64 = b64(&ed);
    let rsa_b64 = b64(&rsa);

    // Hand-made blobs: a FIDO key (no token needed to write its public
    // half), a 768-bit RSA key, a blob with trailing bytes, a negative
    // exponent.
    let mut sk = Vec::new();
    ssh_string(&mut sk, b"sk-ssh-ed25519@openssh.com");
    ssh_string(&mut sk, &blob_of(&ed)[19..51]);
    ssh_string(&mut sk, b"ssh:");
    let mut rsa768 = Vec::new();
    ssh_string(&mut rsa768, b"ssh-rsa");
    ssh_string(&mut rsa768, &[1, 0, 1]);
    let mut n = vec![0u8];
    n.extend((0..96).map(|i| {
        if i == 0 {
            0xc3
        } else {
            (i * 37 + 11) as u8 | 1
        }
    }));
    ssh_string(&mut rsa768, &n);
    let mut trailing = blob_of(&ed);
    trailing.extend_from_slice(&[0, 0, 0, 0]);
    let mut neg = Vec::new();
    ssh_string(&mut neg, b"ssh-rsa");
    ssh_string(&mut neg, &[0x81, 0, 1]);
    let rsa_blob = blob_of(&rsa);
    ssh_string(&mut neg, &rsa_blob[rsa_blob.len() - 257..]);

    let mut c = vec![
        ed.clone(),
        rsa.clone(),
        rsa1k.clone(),
        e256.clone(),
        e384.clone(),
        e521.clone(),
        cert.clone(),
        format!("sk-ssh-ed25519@openssh.com {} fido", b64_encode(&sk)),
        format!("ssh-rsa {} small", b64_encode(&rsa768)),
        format!("ssh-ed25519 {} trailing", b64_encode(&trailing)),
        format!("ssh-rsa {} negative", b64_encode(&neg)),
        format!("rsa-sha2-256 {rsa_b64} renamed"),
        format!("rsa-sha2-512 {rsa_b64}"),
        format!("ssh-ed25519 {rsa_b64} wrongtype"),
        format!("ssh-rsa {ed_b64} wrongtype"),
        format!("ecdsa-sha2-nistp384 {} wrongcurve", b64(&e256)),
        format!("ssh-ed25519-cert-v01@openssh.com {ed_b64} plain-as-cert"),
        format!("ssh-ed25519 {}", &ed_b64[..ed_b64.len() - 4]),
        format!("ssh-ed25519 {}=", &ed_b64),
        format!("ssh-ed25519 {}", ed_b64.replace('A', "*")),
        format!("ssh-ed25519\t{ed_b64}\tTAB"),
        format!("   ssh-ed25519 {ed_b64} leading"),
        format!("ssh-ed25519  {ed_b64}   spaced comment here"),
        format!("ssh-ed25519 {ed_b64}"),
        "ssh-ed25519".to_owned(),
        "ssh-ed25519 ".to_owned(),
        format!("ssh-ed448 {ed_b64}"),
        format!("SSH-ED25519 {ed_b64} upper"),
        format!("\u{feff}{ed}"),
        format!("restrict {ed}"),
        format!("bogus-option {ed}"),
        format!("command=\"echo \\\"x y\\\"\",no-pty {ed}"),
        format!("command=\"unterminated {ed}"),
        format!("from=\"10.0.0.1\" {rsa}"),
        format!("1024 65537 12345 old-rsa1"),
        format!("{} {}", &ed_b64[..20], &ed_b64[20..]),
        ed_b64.clone(),
        format!("# {ed}"),
        format!("ssh-ed25519 {ed_b64} a\u{0}b"),
        format!("ssh-ed25519 {ed_b64}\u{b}vt"),
        format!("ssh-dss {rsa_b64}"),
    ];
    // DSA only where this ssh-keygen still makes it.
    let dsa = Command::new(find_tool("ssh-keygen").unwrap())
        .args(["-q", "-N", "", "-t", "dsa", "-f"])
        .arg(dir.path("dsa"))
        .output()
        .unwrap();
    if dsa.status.success() {
        c.push(
            std::fs::read_to_string(dir.path("dsa.pub"))
                .unwrap()
                .trim_end()
                .to_owned(),
        );
    }
    c
}

#[test]
fn key_recognition_agrees_with_ssh_keygen() {
    if !have_tools("key_recognition_agrees_with_ssh_keygen", &["ssh-keygen"]) {
        return;
    }
    let dir = TempDir::new("akeys");
    let lines = corpus(&dir);
    let mut mismatches = Vec::new();
    let (mut yes, mut no) = (0, 0);
    for (i, line) in lines.iter().enumerate() {
        let path = dir.path(&format!("line{i}"));
        std::fs::write(&path, format!("{line}\n")).unwrap();
        let theirs = Command::new(find_tool("ssh-keygen").unwrap())
            .arg("-l")
            .arg("-f")
            .arg(&path)
            .output()
            .unwrap()
            .status
            .success();
        let doc = AuthorizedKeys::parse(format!("{line}\n").as_bytes());
        let ours = matches!(doc.lines[0].kind, KeyLineKind::Key(_));
        if theirs {
            yes += 1;
        } else {
            no += 1;
        }
        if ours != theirs {
            mismatches.push(format!(
                "line {i}: ssh-keygen={theirs} ours={ours}: {line:?} {:?}",
                doc.lines[0].kind
            ));
        }
    }
    assert!(mismatches.is_empty(), "{}", mismatches.join("\n"));
    assert!(yes >= 15 && no >= 15, "{yes} accepted, {no} rejected");
}

/// A real sshd on a loopback port; killed on drop.
struct Sshd {
    child: std::process::Child,
    port: u16,
    log: PathBuf,
}

impl Drop for Sshd {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

fn free_port() -> u16 {
    let l = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    l.local_addr().unwrap().port()
}

fn start_sshd(dir: &TempDir) -> Option<Sshd> {
    keygen(dir, "hostkey", &["-t", "ed25519"]);
    let port = free_port();
    let cfg = format!(
        "Port {port}\nListenAddress 127.0.0.1\nHostKey {}\nAuthorizedKeysFile {}\nStrictModes no\nUsePAM no\n\
PermitRootLogin prohibit-password\nPasswordAuthentication no\nKbdInteractiveAuthentication no\n\
LogLevel DEBUG3\nPidFile none\nUseDNS no\nPubkeyAcceptedAlgorithms +ssh-rsa\n",
        dir.path("hostkey").display(),
        dir.path("authorized_keys").display()
    );
    std::fs::write(dir.path("sshd_config"), cfg).unwrap();
    let log = dir.path("sshd.log");
    let child = Command::new(find_tool("sshd")?)
        .arg("-D")
        .arg("-e")
        .arg("-f")
        .arg(dir.path("sshd_config"))
        .stdout(Stdio::null())
        .stderr(std::fs::File::create(&log).unwrap())
        .spawn()
        .ok()?;
    let sshd = Sshd { child, port, log };
    let deadline = Instant::now() + Duration::from_secs(5);
    while Instant::now() < deadline {
        if std::net::TcpStream::connect(("127.0.0.1", port)).is_ok() {
            return Some(sshd);
        }
        std::thread::sleep(Duration::from_millis(50));
    }
    None
}

fn log_len(p: &Path) -> u64 {
    std::fs::metadata(p).map(|m| m.len()).unwrap_or(0)
}

fn read_from(p: &Path, offset: u64) -> String {
    let mut f = std::fs::File::open(p).unwrap();
    let mut all = Vec::new();
    f.read_to_end(&mut all).unwrap();
    String::from_utf8_lossy(all.get(offset as usize..).unwrap_or(&[])).into_owned()
}

/// Tries one login as root with `key` and returns whether it worked and
/// what sshd logged for it.
fn try_login(sshd: &Sshd, dir: &TempDir, key: &Path) -> (bool, String) {
    let before = log_len(&sshd.log);
    let status = Command::new(find_tool("ssh").unwrap())
        .args([
            "-F",
            "/dev/null",
            "-o",
            "BatchMode=yes",
            "-o",
            "StrictHostKeyChecking=no",
            "-o",
            "UserKnownHostsFile=/dev/null",
            "-o",
            "IdentitiesOnly=yes",
            "-o",
            "IdentityAgent=none",
            "-o",
            "ConnectTimeout=5",
            "-o",
            "LogLevel=ERROR",
            "-p",
            &sshd.port.to_string(),
            "-i",
        ])
        .arg(key)
        .args(["root@127.0.0.1", "true"])
        .stdin(Stdio::null())
        .output()
        .unwrap()
        .status
        .success();
    // Let the server finish logging this connection.
    let deadline = Instant::now() + Duration::from_secs(3);
    let mut text = read_from(&sshd.log, before);
    while Instant::now() < deadline
        && !text.contains("processed")
        && !text.contains("invalid key option")
    {
        std::thread::sleep(Duration::from_millis(30));
        text = read_from(&sshd.log, before);
    }
    std::thread::sleep(Duration::from_millis(30));
    let _ = dir;
    (status, read_from(&sshd.log, before))
}

#[test]
fn option_verdicts_agree_with_a_real_sshd() {
    if !have_tools(
        "option_verdicts_agree_with_a_real_sshd",
        &["sshd", "ssh", "ssh-keygen"],
    ) {
        return;
    }
    let dir = TempDir::new("sshd");
    let client_key = keygen(&dir, "client", &["-t", "ed25519"]);
    let Some(sshd) = start_sshd(&dir) else {
        if require_tools() {
            panic!("sshd did not start (needs root and /run/sshd)");
        }
        eprintln!("SKIP option_verdicts_agree_with_a_real_sshd: sshd did not start");
        return;
    };
    let ak = dir.path("authorized_keys");
    let key_path = dir.path("client");
    // Baseline: without a working plain login there is nothing to compare.
    std::fs::write(&ak, format!("{client_key}\n")).unwrap();
    let (ok, log) = try_login(&sshd, &dir, &key_path);
    if !ok {
        let msg = format!("baseline login failed (root locked on this host?):\n{log}");
        if require_tools() {
            panic!("{msg}");
        }
        eprintln!("SKIP option_verdicts_agree_with_a_real_sshd: {msg}");
        return;
    }
    let now = SystemTime::now()
        .duration_since(SystemTime::UNIX_EPOCH)
        .unwrap()
        .as_secs() as i64;
    let client = Client {
        ip: IpAddr::V4(Ipv4Addr::LOCALHOST),
        host: None,
    };
    let options = [
        "",
        "restrict ",
        "no-pty ",
        "NO-PTY,Restrict ",
        "pty,user-rc,x11-forwarding,agent-forwarding,port-forwarding ",
        "command=\"true\" ",
        "command=\"echo \\\"quoted\\\" , comma\" ",
        "command=\"a\",command=\"b\" ",
        "from=\"127.0.0.1\" ",
        "from=\"127.0.0.0/8\" ",
        "from=\"!127.0.0.1,*\" ",
        "from=\"10.0.0.0/8\" ",
        "from=\"127.0.0.1/8\" ",
        "from=\"127.0.0.1,\" ",
        "from=\"*\" ",
        "from=\"127.0.0.*\" ",
        "from=\"localhost\" ",
        "from=\"127.1\" ",
        "from=\"10.1.1.1, 127.0.0.1\" ",
        "from=\"127.0.0.0/33\" ",
        "from=\"a\",from=\"b\" ",
        "expiry-time=\"20200101\" ",
        "expiry-time=\"20991231Z\" ",
        "expiry-time=\"2099\" ",
        "principals=\"root\" ",
        "cert-authority ",
        "environment=\"A=b\" ",
        "environment=\"1=b\" ",
        "environment=\"A-B=c\" ",
        "environment=\"noequals\" ",
        "permitopen=\"host:22\" ",
        "permitopen=\"host\" ",
        "permitopen=\"[::1]:22\" ",
        "permitlisten=\"8080\" ",
        "permitlisten=\"host:0\" ",
        "tunnel=\"any\" ",
        "tunnel=\"x\" ",
        "bogus ",
        "restrict, ",
        ",restrict ",
        "restrictx ",
        "no-touch-required ",
        "verify-required ",
        "no-restrict ",
        "command=\"unterminated ",
        "from=\"127.0.0.1\"\t",
    ];
    let mut failures = Vec::new();
    let (mut accepted, mut refused, mut reasons) = (0, 0, 0);
    for opt in options {
        let line = format!("{opt}{client_key}\n");
        std::fs::write(&ak, &line).unwrap();
        let (theirs, log) = try_login(&sshd, &dir, &key_path);
        let doc = AuthorizedKeys::parse(line.as_bytes());
        let (ours, our_reason) = match &doc.lines[0].kind {
            KeyLineKind::Key(k) => {
                let r = k.refusals(&client, now, Some((9, 2)));
                (r.is_empty(), k.options_error().map(|e| e.reason.clone()))
            }
            KeyLineKind::NotAKey(NotAKey::UnterminatedQuote) => {
                (false, Some("invalid key option string".to_owned()))
            }
            _ => (false, None),
        };
        let their_reason = log
            .lines()
            .find_map(|l| {
                l.split("bad key options: ")
                    .nth(1)
                    .map(|r| r.trim().to_owned())
            })
            .or_else(|| {
                log.contains("invalid key option string")
                    .then(|| "invalid key option string".to_owned())
            });
        if theirs {
            accepted += 1;
        } else {
            refused += 1;
        }
        reasons += usize::from(their_reason.is_some());
        if ours != theirs || our_reason != their_reason {
            failures.push(format!(
                "{opt:?}: sshd login={theirs} reason={their_reason:?}; ours login={ours} reason={our_reason:?}"
            ));
        }
    }
    // Whole files: line endings, a BOM, a wrapped key.
    let (ktype, kb64) = {
        let mut it = client_key.split_whitespace();
        (it.next().unwrap().to_owned(), it.next().unwrap().to_owned())
    };
    let (a, b) = kb64.split_at(40);
    let files = [
        format!("{client_key}\r\n"),
        format!("{ktype} {kb64}\r\n"),
        format!("# first\r\n{ktype} {kb64}\r\n"),
        format!("\u{feff}{client_key}\n"),
        format!("\u{feff}# comment first\n{client_key}\n"),
        format!("{ktype} {a}\n{b} wrapped\n"),
        format!("other\r{client_key}\r"),
        format!("{client_key}\rother\r"),
        format!("  \t{client_key}"),
        format!("{ktype}\t{kb64}\tcomment\n"),
    ];
    for f in &files {
        std::fs::write(&ak, f).unwrap();
        let (theirs, _) = try_login(&sshd, &dir, &key_path);
        let doc = AuthorizedKeys::parse(f.as_bytes());
        let ours = !doc.usable_keys(&client, now, Some((9, 2))).is_empty();
        if ours != theirs {
            failures.push(format!("file {f:?}: sshd login={theirs}, ours={ours}"));
        }
    }
    assert!(failures.is_empty(), "{}", failures.join("\n"));
    // The oracle must have said both things, or the comparison proves
    // nothing.
    assert!(
        accepted >= 10 && refused >= 15 && reasons >= 12,
        "{accepted} {refused} {reasons}"
    );
}

#[test]
fn refusal_messages_name_the_cause() {
    let ed = "AAAAC3NzaC1lZDI1NTE5AAAAIAXc+Wo1NhJaj5FCW2pkz9jQhJjegW1P5zktr0L0j+eC";
    let text = format!("from=\"10.0.0.0/8\" ssh-ed25519 {ed} office\nrestrict ssh-ed25519 {ed}\n");
    let doc = AuthorizedKeys::parse(text.as_bytes());
    let client = Client {
        ip: "203.0.113.9".parse().unwrap(),
        host: None,
    };
    let (_, k) = doc.keys().next().unwrap();
    let r = k.refusals(&client, 0, None);
    assert!(matches!(&r[..], [Refusal::From { .. }]), "{r:?}");
    assert!(r[0].message().contains("10.0.0.0/8"));
    // `restrict` came with OpenSSH 7.2: 7.1 rejects the whole line.
    let (_, k) = doc.keys().nth(1).unwrap();
    let r = k.refusals(&client, 0, Some((7, 1)));
    assert_eq!(
        r,
        vec![Refusal::UnsupportedOption {
            option: "restrict".into(),
            since: (7, 2)
        }]
    );
    assert!(k.refusals(&client, 0, Some((7, 2))).is_empty());
}

#[test]
fn hostile_sizes_stay_linear() {
    // Many lines that look like the start of a wrapped key, each followed
    // by base64 pieces that never complete it.
    let mut s = String::new();
    for _ in 0..2_000 {
        s.push_str("ssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAAI\n");
        for _ in 0..70 {
            s.push_str(&"QUFB".repeat(30));
            s.push('\n');
        }
    }
    let start = std::time::Instant::now();
    let doc = AuthorizedKeys::parse(s.as_bytes());
    assert!(doc.wrapped.is_empty());
    assert_eq!(doc.render(), s.as_bytes());
    assert!(start.elapsed().as_secs() < 30, "took {:?}", start.elapsed());
}
