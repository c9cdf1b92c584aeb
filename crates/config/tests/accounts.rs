//! passwd/shadow/group/gshadow against real oracles.
//!
//! - glibc: the corpus files are bind-mounted over /etc/passwd, /etc/shadow
//!   and /etc/group in a private mount namespace (`unshare -m`) and read
//!   back with `getent -s files`; every lookup we make must print exactly
//!   what glibc prints (or both must find nothing).
//! - shadow-utils: `pwck -r -q` and `grpck -r` name the lines they call
//!   invalid or duplicate; ours must be the same lines.
//!
//! A test that needs a missing tool (or root for the mount namespace) fails
//! under `RESCUE_REQUIRE_TOOLS=1` and skips with a message otherwise.

use std::collections::BTreeSet;
use std::path::{Path, PathBuf};
use std::process::Command;

use rescue_config::accounts::{
    pam_unix_account, sshd_no_pam_refusal, CryptScheme, Group, Gshadow, NewUser, PamAccount,
    Passwd, PasswordKind, Shadow, ShadowEntry, SshdAccountRefusal,
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

/// A fresh directory under the system temp dir, removed on drop.
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
    fn write(&self, name: &str, data: &[u8]) -> PathBuf {
        let p = self.0.join(name);
        std::fs::write(&p, data).unwrap();
        p
    }
}

impl Drop for TempDir {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}

/// Runs `script` with the corpus files bind-mounted over the real ones in a
/// private mount namespace. `None` when namespaces are not available.
fn in_namespace(
    test: &str,
    dir: &TempDir,
    passwd: &[u8],
    shadow: &[u8],
    group: &[u8],
    script: &str,
) -> Option<String> {
    let p = dir.write("passwd", passwd);
    let s = dir.write("shadow", shadow);
    let g = dir.write("group", group);
    let full = format!(
        "set -e; mount --bind {} /etc/passwd; mount --bind {} /etc/shadow; mount --bind {} /etc/group; set +e; {script}",
        p.display(),
        s.display(),
        g.display()
    );
    let out = Command::new("unshare")
        .args(["-m", "sh", "-c", &full])
        .output();
    match out {
        Ok(o) if o.status.success() || !o.stdout.is_empty() => {
            Some(String::from_utf8_lossy(&o.stdout).into_owned())
        }
        Ok(o) => {
            let msg = format!(
                "{test}: unshare -m failed: {}",
                String::from_utf8_lossy(&o.stderr)
            );
            if require_tools() {
                panic!("{msg} (needs root; RESCUE_REQUIRE_TOOLS=1)");
            }
            eprintln!("SKIP {msg}");
            None
        }
        Err(e) => {
            if require_tools() {
                panic!("{test}: cannot run unshare: {e}");
            }
            eprintln!("SKIP {test}: cannot run unshare: {e}");
            None
        }
    }
}

const PASSWD_CORPUS: &[u8] = b"root:x:0:0:root:/root:/bin/bash\n\
daemon:x:1:1:daemon:/usr/sbin:/usr/sbin/nologin\n\
# comment in the middle\n\
alice:x:1000:1000:Alice,,,:/home/alice:/bin/bash\n\
   bob:x:1001:1001::/home/bob:/bin/zsh\n\
alice:x:2000:2000::/home/alice2:/bin/sh\n\
carol:x:1x:1::/:/bin/sh\n\
dave:x:-1:99999999999::/home/dave\n\
eve:x:1003:1003\n\
fay:x:1004\n\
+nisuser::::::\n\
+\n\
-baduser\n\
frank:x:1005:1005::/home/frank:/bin/bash:extra:colons\n\
crlf:x:1006:1006::/home/crlf:/bin/bash\r\n\
\n\
gina:x: 42:+43:g:/home/gina:\n\
hank::1007:1007::/home/hank:/bin/sh\n\
ivan:x:4294967296:0:::\n\
judy:x::1::/:/bin/sh\n\
kim:x:12 :1::/:/bin/sh\n\
\tleo:x:1008:1008::/home/leo:/bin/bash\n\
mo:x:1009:1009::/home/mo:/bin/bash";

const SHADOW_CORPUS: &[u8] = b"root:*:19000:0:99999:7:::\n\
alice:$6$abcdefgh$AAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA:19000:0:99999:7:::\n\
bob:!$y$j9T$salt$hash:19000:0:99999:7:::\n\
rh:!!:19000::::::\n\
old:x:1:2:3\n\
short:pw\n\
short2:pw:\n\
exp:$1$salt$0123456789012345678901:19000:0:99999:7::19500:\n\
crlf:*:19000:0:99999:7:::\r\n\
neg:*:4294967295:0:99999:7:::\n\
big:*:2147483648:0:99999:7:::\n\
carol:x:4294967295:::::\n\
d:x:1:2:3:4:\n\
e:x:1:2:3:4:5:6:\n\
f:x:1:2:3:4:5:6:7\n\
g:x:1:2:3:4:5:6:7\r\n\
h:x:::\n\
i:x:1:2:3:   \n\
j:x:1:2:3:4:5:6:7:8\n\
k:x: 5 :1:2:3:4:5:\n\
alice:*:1:1:1:1:1:1:\n\
+nis:*:1:2:3:4:5:6:\n\
  lead:x:1:2:3:4:5:6:\n";

const GROUP_CORPUS: &[u8] = b"root:x:0:\n\
adm:x:4:syslog, alice\n\
sudo:x:27:alice,bob\n\
alice:x:1000:\n\
wheel:x:10:bob\r\n\
dup:x:27:alice\n\
bad:x\n\
spaces:x:50: alice , bob,,carol\n\
colon:x:51:alice:bob\n\
neg:x:-5:alice\n\
+nisgroup:x:52:alice\n\
adm:x:60:alice\n\
last:x:61:alice,bob";

const PROBE_USERS: &[&str] = &[
    "root", "daemon", "alice", "bob", "carol", "dave", "eve", "fay", "nisuser", "+nisuser", "+",
    "-baduser", "baduser", "frank", "crlf", "gina", "hank", "ivan", "judy", "kim", "leo", "mo",
    "rh", "old", "short", "short2", "exp", "neg", "big", "d", "e", "f", "g", "h", "i", "j", "k",
    "nis", "+nis", "lead", "syslog", "nobody",
];

const PROBE_GROUPS: &[&str] = &[
    "root",
    "adm",
    "sudo",
    "alice",
    "wheel",
    "dup",
    "bad",
    "spaces",
    "colon",
    "neg",
    "nisgroup",
    "+nisgroup",
    "last",
    "missing",
];

fn render_passwd(p: &Passwd, name: &str) -> String {
    match p.get(name) {
        Some(e)
            if [&e.gecos, &e.home, &e.shell, &e.password]
                .iter()
                .any(|f| f.value.contains(':')) =>
        {
            format!("{name}: unprintable\n")
        }
        Some(e) => format!(
            "{}:{}:{}:{}:{}:{}:{}\n",
            e.name.value,
            e.password.value,
            e.uid,
            e.gid,
            e.gecos.value,
            e.home.value,
            e.shell.value
        ),
        None => format!("{name}: none\n"),
    }
}

fn render_shadow(s: &Shadow, name: &str) -> String {
    let day = |v: Option<i64>| v.map(|d| d.to_string()).unwrap_or_default();
    match s.get(name) {
        Some(e) => format!(
            "{}:{}:{}:{}:{}:{}:{}:{}:{}\n",
            e.name.value,
            e.password.value,
            day(e.last_change),
            day(e.min_days),
            day(e.max_days),
            day(e.warn_days),
            day(e.inactive_days),
            day(e.expire_day),
            e.flag.map(|f| f.to_string()).unwrap_or_default()
        ),
        None => format!("{name}: none\n"),
    }
}

fn render_group(g: &Group, name: &str) -> String {
    match g.get(name) {
        Some(e) if e.members.iter().any(|m| m.contains(':')) => format!("{name}: unprintable\n"),
        Some(e) => format!(
            "{}:{}:{}:{}\n",
            e.name.value,
            e.password.value,
            e.gid,
            e.members.join(",")
        ),
        None => format!("{name}: none\n"),
    }
}

fn shell_quote(s: &str) -> String {
    format!("'{}'", s.replace('\'', "'\\''"))
}

#[test]
fn lookups_agree_with_glibc_getent() {
    if !have_tools(
        "lookups_agree_with_glibc_getent",
        &["getent", "unshare", "mount"],
    ) {
        return;
    }
    let dir = TempDir::new("getent");
    let mut script = String::new();
    // getent refuses to print an entry with a colon inside a field
    // ("error writing passwd entry: Invalid argument"); such entries were
    // found, and are compared as "unprintable".
    let probe = |db: &str, q: &str| {
        format!(
            "o=$(getent -s files {db} -- {q} 2>&1); case \"$o\" in '') echo {q}': none';; *'error writing'*) echo {q}': unprintable';; *) printf '%s\\n' \"$o\";; esac; "
        )
    };
    for u in PROBE_USERS {
        let q = shell_quote(u);
        script.push_str(&probe("passwd", &q));
        script.push_str(&probe("shadow", &q));
    }
    for g in PROBE_GROUPS {
        script.push_str(&probe("group", &shell_quote(g)));
    }
    for u in PROBE_USERS {
        let q = shell_quote(u);
        script.push_str(&format!("echo \"initgroups $(getent -s files initgroups -- {q} | tr -s ' ' | cut -d' ' -f2-)\"; "));
    }
    let Some(out) = in_namespace(
        "getent",
        &dir,
        PASSWD_CORPUS,
        SHADOW_CORPUS,
        GROUP_CORPUS,
        &script,
    ) else {
        return;
    };
    let p = Passwd::parse(PASSWD_CORPUS);
    let s = Shadow::parse(SHADOW_CORPUS);
    let g = Group::parse(GROUP_CORPUS);
    let mut ours = String::new();
    for u in PROBE_USERS {
        ours.push_str(&render_passwd(&p, u));
        ours.push_str(&render_shadow(&s, u));
    }
    for name in PROBE_GROUPS {
        ours.push_str(&render_group(&g, name));
    }
    for u in PROBE_USERS {
        // getent initgroups asks getgrouplist with base gid -1 and prints
        // everything after it.
        let gids: Vec<String> = g
            .group_list(u, u32::MAX)
            .iter()
            .skip(1)
            .map(|x| x.to_string())
            .collect();
        ours.push_str(&format!("initgroups {}\n", gids.join(" ")));
    }
    let theirs: Vec<&str> = out.lines().collect();
    let mine: Vec<&str> = ours.lines().collect();
    for (i, (a, b)) in mine.iter().zip(&theirs).enumerate() {
        assert_eq!(a.trim_end(), b.trim_end(), "probe {i} differs from glibc");
    }
    assert_eq!(mine.len(), theirs.len(), "ours:\n{ours}\nglibc:\n{out}");
}

/// Parses `pwck`/`grpck` output: every "delete line 'X'?" after an
/// invalid/duplicate message, as (kind, line text).
fn flagged(out: &str) -> BTreeSet<(String, String)> {
    let mut set = BTreeSet::new();
    let mut last = String::new();
    for l in out.split('\n') {
        if let Some(rest) = l.strip_prefix("delete line '") {
            let text = rest.strip_suffix("'? No").unwrap_or(rest).to_owned();
            let kind = if last.contains("duplicate") {
                "duplicate"
            } else if last.contains("invalid") {
                "invalid"
            } else {
                "other"
            };
            set.insert((kind.to_owned(), text));
        }
        last = l.to_owned();
    }
    set
}

fn ours_flagged(
    data: &[u8],
    lines: &[rescue_config::accounts::Line],
) -> BTreeSet<(String, String)> {
    let mut set = BTreeSet::new();
    for l in lines {
        let text = String::from_utf8_lossy(l.span.slice(data)).into_owned();
        if l.strict_invalid {
            set.insert(("invalid".to_owned(), text));
        } else if l.duplicate {
            set.insert(("duplicate".to_owned(), text));
        }
    }
    set
}

#[test]
fn strict_checks_agree_with_pwck_and_grpck() {
    if !have_tools(
        "strict_checks_agree_with_pwck_and_grpck",
        &["pwck", "grpck"],
    ) {
        return;
    }
    let dir = TempDir::new("pwck");
    // The passwd corpus without a trailing newline at the end is fine for
    // pwck; the shadow corpus pairs with it.
    let p = dir.write("passwd", PASSWD_CORPUS);
    let s = dir.write("shadow", SHADOW_CORPUS);
    let out = Command::new(find_tool("pwck").unwrap())
        .args(["-r", "-q"])
        .arg(&p)
        .arg(&s)
        .output()
        .unwrap();
    let text =
        String::from_utf8_lossy(&out.stdout).into_owned() + &String::from_utf8_lossy(&out.stderr);
    // "other" lines are shadow entries without a passwd user: not a
    // question of syntax.
    let theirs: BTreeSet<_> = flagged(&text)
        .into_iter()
        .filter(|(k, _)| k != "other")
        .collect();
    let mut ours = ours_flagged(PASSWD_CORPUS, &Passwd::parse(PASSWD_CORPUS).lines);
    ours.extend(ours_flagged(
        SHADOW_CORPUS,
        &Shadow::parse(SHADOW_CORPUS).lines,
    ));
    // pwck reports a blank line once per file; the text is "" in both.
    assert_eq!(ours, theirs, "pwck output:\n{text}");

    let gshadow: &[u8] =
        b"root:*::\nadm:*::syslog,alice\nsudo:*::alice,bob\nbroken\nsudo:*::\n#c\n";
    let g = dir.write("group", GROUP_CORPUS);
    let gs = dir.write("gshadow", gshadow);
    let out = Command::new(find_tool("grpck").unwrap())
        .args(["-r"])
        .arg(&g)
        .arg(&gs)
        .output()
        .unwrap();
    let text =
        String::from_utf8_lossy(&out.stdout).into_owned() + &String::from_utf8_lossy(&out.stderr);
    let theirs: BTreeSet<_> = flagged(&text)
        .into_iter()
        .filter(|(k, _)| k != "other")
        .collect();
    let mut ours = ours_flagged(GROUP_CORPUS, &Group::parse(GROUP_CORPUS).lines);
    ours.extend(ours_flagged(gshadow, &Gshadow::parse(gshadow).lines));
    assert_eq!(ours, theirs, "grpck output:\n{text}");
}

/// Debian 12 cloud image defaults (passwd/shadow/group as shipped plus a
/// cloud user), and RHEL 9's.
const DEBIAN_PASSWD: &[u8] = b"root:x:0:0:root:/root:/bin/bash\n\
daemon:x:1:1:daemon:/usr/sbin:/usr/sbin/nologin\n\
bin:x:2:2:bin:/bin:/usr/sbin/nologin\n\
sys:x:3:3:sys:/dev:/usr/sbin/nologin\n\
sync:x:4:65534:sync:/bin:/bin/sync\n\
nobody:x:65534:65534:nobody:/nonexistent:/usr/sbin/nologin\n\
_apt:x:42:65534::/nonexistent:/usr/sbin/nologin\n\
systemd-network:x:998:998:systemd Network Management:/:/usr/sbin/nologin\n\
messagebus:x:100:102::/nonexistent:/usr/sbin/nologin\n\
sshd:x:102:65534::/run/sshd:/usr/sbin/nologin\n\
admin:x:1000:1000:Debian:/home/admin:/bin/bash\n";

const DEBIAN_SHADOW: &[u8] = b"root:*:19800:0:99999:7:::\n\
daemon:*:19800:0:99999:7:::\n\
bin:*:19800:0:99999:7:::\n\
sys:*:19800:0:99999:7:::\n\
sync:*:19800:0:99999:7:::\n\
nobody:*:19800:0:99999:7:::\n\
_apt:*:19800:0:99999:7:::\n\
systemd-network:!*:19800::::::\n\
messagebus:!:19800::::::\n\
sshd:!:19800::::::\n\
admin:!:19800:0:99999:7:::\n";

const DEBIAN_GROUP: &[u8] = b"root:x:0:\n\
daemon:x:1:\n\
bin:x:2:\n\
sys:x:3:\n\
adm:x:4:admin\n\
sudo:x:27:admin\n\
users:x:100:\n\
nogroup:x:65534:\n\
systemd-network:x:998:\n\
messagebus:x:102:\n\
_ssh:x:101:\n\
admin:x:1000:\n";

const RHEL_PASSWD: &[u8] = b"root:x:0:0:root:/root:/bin/bash\n\
bin:x:1:1:bin:/bin:/sbin/nologin\n\
daemon:x:2:2:daemon:/sbin:/sbin/nologin\n\
adm:x:3:4:adm:/var/adm:/sbin/nologin\n\
nobody:x:65534:65534:Kernel Overflow User:/:/sbin/nologin\n\
sshd:x:74:74:Privilege-separated SSH:/usr/share/empty.sshd:/sbin/nologin\n\
ec2-user:x:1000:1000:Cloud User:/home/ec2-user:/bin/bash\n";

const RHEL_SHADOW: &[u8] = b"root:!!:19700:0:99999:7:::\n\
bin:*:19700:0:99999:7:::\n\
daemon:*:19700:0:99999:7:::\n\
adm:*:19700:0:99999:7:::\n\
nobody:*:19700:0:99999:7:::\n\
sshd:!!:19700::::::\n\
ec2-user:!!:19750:0:99999:7:::\n";

const RHEL_GROUP: &[u8] = b"root:x:0:\n\
bin:x:1:\n\
daemon:x:2:\n\
adm:x:4:ec2-user\n\
wheel:x:10:ec2-user\n\
nobody:x:65534:\n\
sshd:x:74:\n\
ec2-user:x:1000:\n";

#[test]
fn realistic_guests_parse_cleanly_and_explain_access() {
    for (pw, sh, gr) in [
        (DEBIAN_PASSWD, DEBIAN_SHADOW, DEBIAN_GROUP),
        (RHEL_PASSWD, RHEL_SHADOW, RHEL_GROUP),
    ] {
        let p = Passwd::parse(pw);
        let s = Shadow::parse(sh);
        let g = Group::parse(gr);
        assert_eq!(p.render(), pw);
        assert_eq!(s.render(), sh);
        assert_eq!(g.render(), gr);
        assert!(p.diagnostics.is_empty(), "{:?}", p.diagnostics);
        assert!(s.diagnostics.is_empty(), "{:?}", s.diagnostics);
        assert!(g.diagnostics.is_empty(), "{:?}", g.diagnostics);
        assert!(p.get("sshd").is_some());
        for e in &p.entries {
            assert!(s.get(e.name()).is_some(), "{} has a shadow entry", e.name());
        }
    }
    // Cloud users are created with a locked password ("!" / "!!"): with
    // UsePAM yes (both families' default) key logins work; with UsePAM no
    // sshd refuses them as locked.
    let today = 19_800;
    let p = Passwd::parse(DEBIAN_PASSWD);
    let s = Shadow::parse(DEBIAN_SHADOW);
    let admin = p.get("admin").unwrap();
    assert_eq!(
        pam_unix_account(admin, s.get("admin"), today),
        PamAccount::Success
    );
    assert_eq!(
        sshd_no_pam_refusal(admin, s.get("admin"), today),
        Some(SshdAccountRefusal::Locked { field: "!".into() })
    );
    let g = Group::parse(DEBIAN_GROUP);
    assert_eq!(
        g.group_names("admin", admin.gid),
        vec!["admin", "adm", "sudo"]
    );
    let root = p.get("root").unwrap();
    assert_eq!(
        sshd_no_pam_refusal(root, s.get("root"), today),
        None,
        "'*' is not a lock on Linux"
    );
    assert_eq!(
        s.get("root").unwrap().password_kind(),
        PasswordKind::NoPassword { raw: "*".into() }
    );

    let p = Passwd::parse(RHEL_PASSWD);
    let s = Shadow::parse(RHEL_SHADOW);
    let u = p.get("ec2-user").unwrap();
    assert!(s.get("ec2-user").unwrap().password_kind().is_locked());
    assert_eq!(
        pam_unix_account(u, s.get("ec2-user"), 19_800),
        PamAccount::Success
    );
    // A passwd "x" without a shadow entry is refused by pam_unix.
    assert_eq!(
        pam_unix_account(u, None, 19_800),
        PamAccount::ShadowEntryMissing
    );
}

#[test]
fn set_password_and_add_privsep_user_are_minimal_edits() {
    let mut s = Shadow::parse(RHEL_SHADOW);
    let hash = format!("$6$saltsalt${}", "b".repeat(86));
    let span = s.set_password("ec2-user", &hash).unwrap();
    let out = s.render();
    let expected =
        String::from_utf8_lossy(RHEL_SHADOW).replace("ec2-user:!!:", &format!("ec2-user:{hash}:"));
    assert_eq!(out, expected.as_bytes());
    assert_eq!(span.slice(&out), hash.as_bytes());
    assert_eq!(
        s.get("ec2-user").unwrap().password_kind(),
        PasswordKind::Hash {
            scheme: CryptScheme::Sha512
        }
    );

    // A guest without the privsep user gets one line per file, nothing else.
    let pw_without: Vec<u8> = DEBIAN_PASSWD
        .split_inclusive(|&b| b == b'\n')
        .filter(|l| !l.starts_with(b"sshd:"))
        .flatten()
        .copied()
        .collect();
    let mut p = Passwd::parse(&pw_without);
    assert!(p.get("sshd").is_none());
    let g = Group::parse(DEBIAN_GROUP);
    let nogroup = g.get("nogroup").unwrap().gid;
    let uid = rescue_config::accounts::free_system_id(&p, &g, 100, 999).unwrap();
    p.append_user(&NewUser {
        name: "sshd",
        uid,
        gid: nogroup,
        gecos: "",
        home: "/run/sshd",
        shell: "/usr/sbin/nologin",
    })
    .unwrap();
    let out = p.render();
    assert!(out.starts_with(&pw_without));
    assert_eq!(
        &out[pw_without.len()..],
        format!("sshd:x:{uid}:65534::/run/sshd:/usr/sbin/nologin\n").as_bytes()
    );
    let mut s = Shadow::parse(DEBIAN_SHADOW);
    assert!(
        s.append_entry("sshd", "!", Some(19800)).is_err(),
        "already there"
    );
}

#[test]
fn expiry_refusals_follow_sshd_and_pam() {
    let s = Shadow::parse(b"u:$1$salt$0123456789012345678901:19000:0:99999:7::19500:\n");
    let e: &ShadowEntry = s.get("u").unwrap();
    let p = Passwd::parse(b"u:x:1000:1000::/home/u:/bin/bash\n");
    let u = p.get("u").unwrap();
    // sshd without PAM: expired only the day after; PAM: on the day.
    assert_eq!(sshd_no_pam_refusal(u, Some(e), 19_500), None);
    assert_eq!(
        sshd_no_pam_refusal(u, Some(e), 19_501),
        Some(SshdAccountRefusal::Expired { expire_day: 19_500 })
    );
    assert_eq!(
        pam_unix_account(u, Some(e), 19_500),
        PamAccount::AccountExpired
    );
}

#[test]
fn hostile_sizes_stay_linear() {
    // 200k users, one of them in 100k groups: lookups and group lists must
    // not go quadratic.
    let mut pw = String::new();
    let mut gr = String::new();
    for i in 0..200_000u32 {
        pw.push_str(&format!("u{i}:x:{i}:{i}::/home/u{i}:/bin/sh\n"));
    }
    for i in 0..100_000u32 {
        gr.push_str(&format!("g{i}:x:{i}:victim,other\n"));
    }
    let start = std::time::Instant::now();
    let p = Passwd::parse(pw.as_bytes());
    let g = Group::parse(gr.as_bytes());
    assert_eq!(p.entries.len(), 200_000);
    assert_eq!(g.group_names("victim", 5).len(), 100_000);
    let _ = rescue_config::accounts::cross_check(&p, &g);
    assert!(start.elapsed().as_secs() < 30, "took {:?}", start.elapsed());
}
