//! Lossless parsing and span-exact edits of sshd_config, over every file of
//! the oracle corpus (`tests/sshd_corpus/`, binary oddities included):
//! unchanged documents render byte-identically, every token's span slices
//! back to its text, each edit changes only the bytes of its span, and the
//! analysis of every file for every modelled release stays well-formed.

use std::fs;
use std::path::{Path, PathBuf};

use rescue_config::sshd::{
    analyze, Distro, Limits, LineKind, OpensshVersion, SshdConfig, Target, DEFAULT_CONFIG_PATH,
};

fn corpus_files() -> Vec<PathBuf> {
    fn walk(dir: &Path, out: &mut Vec<PathBuf>) {
        for e in fs::read_dir(dir).expect("listing the corpus").flatten() {
            let p = e.path();
            if p.is_dir() {
                walk(&p, out);
            } else {
                out.push(p);
            }
        }
    }
    let mut v = Vec::new();
    walk(
        &Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/sshd_corpus"),
        &mut v,
    );
    v.sort();
    assert!(v.len() >= 60, "corpus too small");
    v
}

/// `after` equals `before` outside `start..end`, where `with` was put.
fn only_span_changed(before: &[u8], after: &[u8], start: usize, end: usize, with: &[u8]) -> bool {
    after.len() + (end - start) == before.len() + with.len()
        && after[..start] == before[..start]
        && &after[start..start + with.len()] == with
        && after[start + with.len()..] == before[end..]
}

#[test]
fn corpus_round_trips_and_edits_touch_only_their_spans() {
    let mut edits = 0;
    for path in corpus_files() {
        let data = fs::read(&path).expect("reading a corpus file");
        let doc = SshdConfig::parse(&data);
        assert_eq!(doc.render(), data, "{} does not round-trip", path.display());
        for line in &doc.lines {
            assert!(line.span.end <= data.len());
            let LineKind::Directive(d) = &line.kind else {
                continue;
            };
            let n = line.number;
            // Tokens lie inside their line, in order.
            assert!(line.span.start <= d.keyword.span.start && d.keyword.span.end <= line.span.end);
            let mut prev = d.keyword.span.end;
            for a in &d.args {
                assert!(
                    prev <= a.span.start && a.span.end <= line.span.end,
                    "{}:{n}",
                    path.display()
                );
                if !doc
                    .slice(a.span)
                    .iter()
                    .any(|b| matches!(b, b'"' | b'\'' | b'\\'))
                {
                    assert_eq!(String::from_utf8_lossy(doc.slice(a.span)), a.value);
                }
                prev = a.span.end;
            }
            // replace_keyword changes the keyword's bytes only.
            let out = doc
                .replace_keyword(n, "PermitRootLogin")
                .expect("replacing a keyword");
            assert!(only_span_changed(
                &data,
                &out,
                d.keyword.span.start,
                d.keyword.span.end,
                b"PermitRootLogin"
            ));
            let re = SshdConfig::parse(&out);
            match &re.line(n).expect("same line count").kind {
                LineKind::Directive(d2) => assert_eq!(d2.keyword.value, "PermitRootLogin"),
                k => panic!("{}:{n} became {k:?}", path.display()),
            }
            // set_value changes the argument bytes only.
            let out = doc.set_value(n, "no").expect("setting a value");
            let with: &[u8] = if d.args.is_empty() && !d.bad_quotes {
                b" no"
            } else {
                b"no"
            };
            assert!(only_span_changed(
                &data,
                &out,
                d.args_span.start,
                d.args_span.end,
                with
            ));
            // comment_out inserts before the line and keeps its bytes.
            let out = doc.comment_out(n, "reason").expect("commenting out");
            let eol: &[u8] = if doc.slice(line.span).ends_with(b"\r") {
                b"# reason\r\n#"
            } else {
                b"# reason\n#"
            };
            assert!(only_span_changed(
                &data,
                &out,
                line.span.start,
                line.span.start,
                eol
            ));
            let re = SshdConfig::parse(&out);
            assert!(matches!(
                re.line(n + 1).expect("shifted line").kind,
                LineKind::Comment
            ));
            edits += 3;
        }
    }
    assert!(edits > 300, "too few edits exercised: {edits}");
}

#[test]
fn every_release_analyses_every_corpus_file() {
    let releases = [
        (7, 4),
        (7, 9),
        (8, 0),
        (8, 2),
        (8, 4),
        (8, 7),
        (8, 9),
        (9, 2),
        (9, 6),
        (9, 9),
        (10, 0),
    ];
    for path in corpus_files() {
        let data = fs::read(&path).expect("reading a corpus file");
        let physical_lines = data.split(|&b| b == b'\n').count();
        for (major, minor) in releases {
            for distro in [Distro::Debian, Distro::Rhel, Distro::Upstream] {
                let t = Target::new(OpensshVersion::new(major, minor), distro);
                let a = analyze(DEFAULT_CONFIG_PATH, &data, &t, None, Limits::default());
                for m in &a.messages {
                    assert!(m.text.len() <= 1021, "{}: overlong message", path.display());
                    assert!(!m.text.contains('\n'));
                }
                for v in &a.verdicts {
                    assert!(
                        v.physical_line >= 1 && v.physical_line <= physical_lines,
                        "{}: {v:?}",
                        path.display()
                    );
                }
                let reached_fatal = a
                    .messages
                    .iter()
                    .filter(|m| m.reached && m.level == rescue_config::sshd::Level::Fatal)
                    .count();
                assert!(reached_fatal <= 1, "sshd stops at its first fatal error");
                assert_eq!(a.fails(), a.first_fatal().is_some());
            }
        }
    }
}
