//! How sshd turns a log message into the bytes it prints: the 1024-byte
//! message buffer, `strnvis(VIS_SAFE|VIS_OCTAL)` on stderr (what `sshd -t`
//! shows) and `VIS_CSTYLE|VIS_NL|VIS_TAB|VIS_OCTAL` for syslog, and the
//! final `%.*s` cut. Reproducing this makes our messages byte-identical to
//! sshd's for any configuration, including binary garbage and huge lines.
//!
//! Pure functions; never panics.

const MSGBUFSIZ: usize = 1024;

/// Which log sink sshd writes to.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Sink {
    /// stderr, as with `sshd -t` (and `ExecStartPre=sshd -t` in the journal).
    Stderr,
    /// syslog, as a running daemon logs.
    Syslog,
}

fn is_graph(c: u8) -> bool {
    (0x21..=0x7e).contains(&c)
}

fn visible(c: u8, sink: Sink) -> bool {
    match sink {
        // VIS_SAFE|VIS_OCTAL: graphic ASCII, space, tab, newline, and the
        // "safe" \b \a \r.
        Sink::Stderr => is_graph(c) || matches!(c, b' ' | b'\t' | b'\n' | 0x08 | 0x07 | b'\r'),
        // VIS_CSTYLE|VIS_NL|VIS_TAB|VIS_OCTAL: graphic ASCII and space.
        Sink::Syslog => is_graph(c) || c == b' ',
    }
}

fn encode(c: u8, next: Option<u8>, sink: Sink) -> Vec<u8> {
    if sink == Sink::Syslog {
        let cstyle: Option<&[u8]> = match c {
            b'\n' => Some(b"\\n"),
            b'\r' => Some(b"\\r"),
            0x08 => Some(b"\\b"),
            0x07 => Some(b"\\a"),
            0x0b => Some(b"\\v"),
            b'\t' => Some(b"\\t"),
            0x0c => Some(b"\\f"),
            _ => None,
        };
        if let Some(e) = cstyle {
            return e.to_vec();
        }
        if c == 0 {
            let octal_next = next.is_some_and(|n| (b'0'..=b'7').contains(&n));
            return if octal_next {
                b"\\000".to_vec()
            } else {
                b"\\0".to_vec()
            };
        }
    }
    vec![
        b'\\',
        b'0' + (c >> 6),
        b'0' + ((c >> 3) & 7),
        b'0' + (c & 7),
    ]
}

/// The line sshd prints for message `msg` (already formatted), without the
/// trailing `\r\n`.
pub(crate) fn render(msg: &[u8], sink: Sink) -> String {
    // vsnprintf into msgbuf[1024].
    let msg = &msg[..msg.len().min(MSGBUFSIZ - 1)];
    // strnvis(fmtbuf, msgbuf, 1024, flags).
    let end = MSGBUFSIZ - 1;
    let mut out: Vec<u8> = Vec::with_capacity(msg.len().min(end));
    let mut i = 0usize;
    while i < msg.len() && out.len() < end {
        let c = msg[i];
        if visible(c, sink) {
            if c == b'\\' {
                if out.len() + 1 >= end {
                    break;
                }
                out.push(b'\\');
            }
            out.push(c);
            i += 1;
        } else {
            let e = encode(c, msg.get(i + 1).copied(), sink);
            if out.len() + e.len() <= end {
                out.extend_from_slice(&e);
                i += 1;
            } else {
                break;
            }
        }
    }
    if sink == Sink::Stderr {
        // snprintf(msgbuf, 1024, "%.*s\r\n", 1024 - 3, fmtbuf).
        out.truncate(MSGBUFSIZ - 3);
    }
    // Every byte is ASCII at this point.
    String::from_utf8_lossy(&out).into_owned()
}

/// printf's `%.Ns`.
pub(crate) fn prec(s: &[u8], n: usize) -> &[u8] {
    &s[..s.len().min(n)]
}

/// Builds a message from byte pieces.
pub(crate) fn cat(parts: &[&[u8]]) -> Vec<u8> {
    let mut v = Vec::with_capacity(parts.iter().map(|p| p.len()).sum());
    for p in parts {
        v.extend_from_slice(p);
    }
    v
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn like_sshd_stderr() {
        assert_eq!(render(b"a b\\c", Sink::Stderr), "a b\\\\c");
        assert_eq!(
            render(b"\xef\xbb\xbfPort", Sink::Stderr),
            "\\357\\273\\277Port"
        );
        assert_eq!(render(b"x\x01\x7f", Sink::Stderr), "x\\001\\177");
        assert_eq!(render(b"t\tr\r", Sink::Stderr), "t\tr\r");
        let long = vec![b'a'; 5000];
        assert_eq!(render(&long, Sink::Stderr).len(), 1021);
        let mut high = vec![b'a'; 1020];
        high.push(0xff);
        // The escape does not fit: strnvis stops before it.
        assert_eq!(render(&high, Sink::Stderr).len(), 1020);
    }

    #[test]
    fn like_sshd_syslog() {
        assert_eq!(render(b"t\tr\r", Sink::Syslog), "t\\tr\\r");
        assert_eq!(render(b"\xff", Sink::Syslog), "\\377");
    }
}
