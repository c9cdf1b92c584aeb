//! How the analysis differs between OpenSSH releases and distributions, on
//! fixed inputs. The expected texts were taken from each release's
//! servconf.c (only 9.2 is installed to check against, see sshd_oracle.rs).

use rescue_config::sshd::{
    analyze, effective, global_settings, keyword_info, Connection, Distro, KeywordClass, Limits,
    MemorySource, OpensshVersion, Status, Target,
};

fn t(major: u32, minor: u32, distro: Distro) -> Target {
    Target::new(OpensshVersion::new(major, minor), distro)
}

fn out(target: &Target, cfg: &str) -> Vec<String> {
    analyze("c", cfg.as_bytes(), target, None, Limits::default()).sshd_output()
}

#[test]
fn yes_no_wording_and_strictness() {
    let rhel7 = t(7, 4, Distro::Rhel);
    assert_eq!(
        out(&rhel7, "PasswordAuthentication maybe\n"),
        ["c line 1: Bad yes/no argument: maybe"]
    );
    // 7.4 compares yes/no case-sensitively; 7.7 and later do not.
    assert_eq!(
        out(&rhel7, "PasswordAuthentication YES\n"),
        ["c line 1: Bad yes/no argument: YES"]
    );
    assert!(out(&t(8, 0, Distro::Rhel), "PasswordAuthentication YES\n").is_empty());
    assert_eq!(
        out(&t(8, 0, Distro::Rhel), "PasswordAuthentication maybe\n"),
        ["c line 1: unsupported option \"maybe\"."]
    );
    assert_eq!(
        out(&rhel7, "PasswordAuthentication\n"),
        ["c line 1: missing yes/no argument."]
    );
    // From 8.7 a keyword alone is an error counted to the end of the file.
    assert_eq!(
        out(&t(8, 7, Distro::Rhel), "PasswordAuthentication\n"),
        [
            "c line 1: no argument after keyword \"PasswordAuthentication\"",
            "c: terminating, 1 bad configuration options"
        ]
    );
}

#[test]
fn garbage_at_end_of_line_changed_in_8_7() {
    for (maj, min) in [(7, 4), (8, 0), (8, 2), (8, 4)] {
        assert_eq!(
            out(&t(maj, min, Distro::Debian), "PermitRootLogin yes no\n"),
            ["c line 1: garbage at end of line; \"no\"."],
            "{maj}.{min}"
        );
    }
    for (maj, min) in [(8, 7), (8, 9), (9, 2), (9, 6), (9, 9), (10, 0)] {
        assert_eq!(
            out(&t(maj, min, Distro::Debian), "PermitRootLogin yes no\n"),
            [
                "c line 1: keyword PermitRootLogin extra arguments at end of line",
                "c: terminating, 1 bad configuration options"
            ],
            "{maj}.{min}"
        );
    }
}

#[test]
fn integers_comments_and_long_lines() {
    // 7.4 used atoi(): anything goes.
    assert!(out(&t(7, 4, Distro::Rhel), "MaxAuthTries x\n").is_empty());
    assert_eq!(
        out(&t(8, 4, Distro::Debian), "MaxAuthTries x\n"),
        ["c line 1: integer value invalid."]
    );
    assert_eq!(
        out(&t(9, 2, Distro::Debian), "MaxAuthTries x\n"),
        ["c line 1: MaxAuthTries integer value invalid."]
    );
    // Before 8.7 '#' anywhere starts a comment; later only at a word start.
    assert!(out(&t(8, 4, Distro::Debian), "Port 22#x\n").is_empty());
    assert_eq!(
        out(&t(8, 7, Distro::Rhel), "Port 22#x\n"),
        ["c line 1: Badly formatted port number."]
    );
    // Before 7.8 sshd read lines into a 4 KiB buffer.
    let long = format!("AcceptEnv {}\n", "A".repeat(5000));
    assert_eq!(out(&t(7, 4, Distro::Rhel), &long), ["c line 1 too long"]);
    assert!(out(&t(8, 0, Distro::Rhel), &long).is_empty());
}

#[test]
fn keyword_history() {
    let class = |name: &str, maj, min, d| keyword_info(name, &t(maj, min, d)).map(|k| k.class);
    assert_eq!(
        class("UsePrivilegeSeparation", 7, 4, Distro::Rhel),
        Some(KeywordClass::Normal)
    );
    assert_eq!(
        class("UsePrivilegeSeparation", 8, 0, Distro::Rhel),
        Some(KeywordClass::Deprecated)
    );
    assert_eq!(
        out(&t(8, 0, Distro::Rhel), "UsePrivilegeSeparation sandbox\n"),
        ["c line 1: Deprecated option UsePrivilegeSeparation"]
    );
    assert_eq!(
        class("PubkeyAcceptedAlgorithms", 8, 4, Distro::Debian),
        None
    );
    assert_eq!(
        class("PubkeyAcceptedAlgorithms", 8, 7, Distro::Rhel),
        Some(KeywordClass::Normal)
    );
    assert_eq!(
        class("PubkeyAcceptedKeyTypes", 10, 0, Distro::Upstream),
        Some(KeywordClass::Normal)
    );
    assert_eq!(
        out(
            &t(8, 0, Distro::Rhel),
            "PubkeyAcceptedAlgorithms ssh-ed25519\n"
        ),
        [
            "c: line 1: Bad configuration option: PubkeyAcceptedAlgorithms",
            "c: terminating, 1 bad configuration options"
        ]
    );
    assert_eq!(class("Include", 8, 0, Distro::Rhel), None);
    assert_eq!(
        class("Protocol", 9, 2, Distro::Debian),
        Some(KeywordClass::Ignored)
    );
    // ChallengeResponseAuthentication: global-only before 8.7.
    assert_eq!(
        out(&t(8, 4, Distro::Debian), "Match User bob\nChallengeResponseAuthentication no\n"),
        ["c line 2: Directive 'ChallengeResponseAuthentication' is not allowed within a Match block"]
    );
    assert!(out(
        &t(8, 7, Distro::Rhel),
        "Match User bob\nChallengeResponseAuthentication no\n"
    )
    .is_empty());
    // LogLevel became Match-able in 7.6.
    assert_eq!(
        out(&t(7, 4, Distro::Rhel), "Match User bob\nLogLevel DEBUG\n"),
        ["c line 2: Directive 'LogLevel' is not allowed within a Match block"]
    );
    // Subsystem: duplicates fatal and global-only until 9.4.
    let dup = "Subsystem sftp a\nSubsystem sftp b\n";
    assert_eq!(
        out(&t(8, 9, Distro::Debian), dup),
        ["c line 2: Subsystem 'sftp' already defined."]
    );
    assert!(out(&t(9, 6, Distro::Debian), dup).is_empty());
    assert!(out(
        &t(9, 6, Distro::Debian),
        "Match User bob\nSubsystem sftp internal-sftp\n"
    )
    .is_empty());
    // Distribution patches.
    assert!(out(
        &t(7, 4, Distro::Rhel),
        "GSSAPIEnablek5users yes\nKerberosUseKuserok no\n"
    )
    .is_empty());
    assert_eq!(
        out(&t(7, 4, Distro::Debian), "GSSAPIEnablek5users yes\n")[0],
        "c: line 1: Bad configuration option: GSSAPIEnablek5users"
    );
    assert!(out(&t(8, 9, Distro::Debian), "DebianBanner no\n").is_empty());
    assert!(out(&t(8, 7, Distro::Rhel), "RequiredRSASize 2048\n").is_empty());
    assert_eq!(
        out(&t(8, 7, Distro::Upstream), "RequiredRSASize 2048\n")[0],
        "c: line 1: Bad configuration option: RequiredRSASize"
    );
    // DSA is gone in 10.0.
    assert!(out(
        &t(9, 9, Distro::Debian),
        "PubkeyAcceptedAlgorithms ssh-dss\n"
    )
    .is_empty());
    assert_eq!(
        out(
            &t(10, 0, Distro::Debian),
            "PubkeyAcceptedAlgorithms ssh-dss\n"
        ),
        ["c line 1: Bad key types 'ssh-dss'."]
    );
}

#[test]
fn lists_need_values_from_9_9() {
    assert!(out(&t(9, 6, Distro::Debian), "AllowUsers # nobody\n").is_empty());
    assert_eq!(
        out(&t(9, 9, Distro::Debian), "AllowUsers # nobody\n"),
        ["c line 1: no AllowUsers specified"]
    );
}

#[test]
fn match_syntax_per_release() {
    // `attr=value` forms and `Match version` arrived in 10.0.
    assert_eq!(
        out(
            &t(9, 9, Distro::Debian),
            "Match user=bob\nPasswordAuthentication no\n"
        ),
        [
            "Missing Match criteria for user=bob",
            "c line 1: Bad Match condition"
        ]
    );
    assert!(out(
        &t(10, 0, Distro::Debian),
        "Match user=bob\nPasswordAuthentication no\n"
    )
    .is_empty());
    // `Match version` is decided without a connection, so global keywords
    // are allowed in a matching block.
    let v10 = Target::new(OpensshVersion::parse("10.0p2").unwrap(), Distro::Upstream);
    assert!(out(&v10, "Match version OpenSSH_10.*\nPort 2222\n").is_empty());
    assert_eq!(
        out(&v10, "Match version OpenSSH_9.*\nPort 2222\n"),
        ["c line 2: Directive 'Port' is not allowed within a Match block"]
    );
    // invalid-user (9.9+).
    assert_eq!(
        out(
            &t(9, 6, Distro::Debian),
            "Match invalid-user\nBanner none\n"
        ),
        [
            "Missing Match criteria for invalid-user",
            "c line 1: Bad Match condition"
        ]
    );
    let a = analyze(
        "c",
        b"Match invalid-user\nBanner /etc/nope\n",
        &t(10, 0, Distro::Debian),
        None,
        Limits::default(),
    );
    assert!(!a.fails());
    let s = effective(
        &a,
        &Connection {
            user: "ghost".into(),
            invalid_user: true,
            ..Connection::default()
        },
    );
    assert_eq!(s.first("banner"), Some("/etc/nope"));
    let s = effective(
        &a,
        &Connection {
            user: "bob".into(),
            groups: vec!["bob".into()],
            ..Connection::default()
        },
    );
    assert_eq!(s.first("banner"), None);
}

#[test]
fn include_bug_of_8_2() {
    let mut src = MemorySource::new();
    src.insert("/etc/ssh/sshd_config.d/a.conf", b"Port 2200\n".to_vec());
    src.insert("/etc/ssh/Include", b"Port 2300\n".to_vec());
    let cfg = b"Include sshd_config.d/*.conf\n";
    let a = analyze(
        "/etc/ssh/sshd_config",
        cfg,
        &t(8, 2, Distro::Debian),
        Some(&src),
        Limits::default(),
    );
    assert_eq!(global_settings(&a).ports(), vec![2300]);
    assert!(a.diagnostics.iter().any(|d| d.message.contains("bug")));
    let a = analyze(
        "/etc/ssh/sshd_config",
        cfg,
        &t(8, 4, Distro::Debian),
        Some(&src),
        Limits::default(),
    );
    assert_eq!(global_settings(&a).ports(), vec![2200]);
}

#[test]
fn unknowable_values_are_not_guessed() {
    let a = analyze(
        "c",
        b"ListenAddress sshhost.example.com\nPort gopher\n",
        &t(9, 2, Distro::Debian),
        None,
        Limits::default(),
    );
    assert!(!a.fails());
    assert_eq!(a.verdicts[0].status, Status::Unknown);
    assert!(a.verdicts[0]
        .note
        .as_deref()
        .unwrap_or("")
        .contains("getaddrinfo"));
    assert_eq!(a.verdicts[1].status, Status::Unknown);
    // With the guest's /etc/services the port is decided.
    let mut src = MemorySource::new();
    src.insert("/etc/services", b"gopher 70/tcp\n".to_vec());
    let a = analyze(
        "c",
        b"Port gopher\n",
        &t(9, 2, Distro::Debian),
        Some(&src),
        Limits::default(),
    );
    assert_eq!(a.verdicts[0].status, Status::Ok);
    let a = analyze(
        "c",
        b"Port nosuch\n",
        &t(9, 2, Distro::Debian),
        Some(&src),
        Limits::default(),
    );
    assert_eq!(a.sshd_output(), ["c line 1: Badly formatted port number."]);
}

#[test]
fn versions_outside_the_model_are_clamped_and_said_so() {
    let old = Target::new(OpensshVersion::new(6, 6), Distro::Rhel);
    let a = analyze("c", b"Port 22\n", &old, None, Limits::default());
    assert!(a.diagnostics.iter().any(|d| d.message.contains("older")));
    let new = Target::new(OpensshVersion::new(11, 2), Distro::Debian);
    let a = analyze("c", b"Port 22\n", &new, None, Limits::default());
    assert!(a.diagnostics.iter().any(|d| d.message.contains("newer")));
}
