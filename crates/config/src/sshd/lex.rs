//! Byte-exact emulation of how sshd cuts its configuration into lines and
//! tokens: `load_server_config()` (leading-blank stripping, the 4 KiB line
//! buffer of old releases, `#` stripping before 8.7, what a NUL byte does),
//! `strdelim()` (keyword and pre-8.7 arguments: blanks, one `=`, `"` quotes)
//! and `argv_split()` (8.7+ arguments: `'`/`"` quotes, `\` escapes, `#`
//! comments).
//!
//! Everything works on immutable byte slices and returns positions into
//! them, so callers can map tokens back to the file. Nothing here allocates
//! more than a small multiple of its input, loops without consuming input,
//! or panics on any bytes.

use super::version::Target;

/// sshd's `WHITESPACE`.
pub(crate) fn is_ws(b: u8) -> bool {
    matches!(b, b' ' | b'\t' | b'\r' | b'\n')
}

/// One token: its decoded bytes and the byte range it came from.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Tok {
    /// Decoded value (quotes removed, escapes applied).
    pub value: Vec<u8>,
    /// Offset of the first byte of the token (an opening quote included).
    pub start: usize,
    /// Offset one past the last byte (a closing quote included).
    pub end: usize,
}

/// Length of `s` as C's `strlen` sees it.
pub(crate) fn c_len(s: &[u8]) -> usize {
    s.iter().position(|&b| b == 0).unwrap_or(s.len())
}

fn strspn_ws(s: &[u8], from: usize) -> usize {
    let mut i = from;
    while i < s.len() && is_ws(s[i]) {
        i += 1;
    }
    i - from
}

/// `strdelim_internal()`: returns the next token from `pos` and the new
/// position (`None` is C's NULL). `s` must not contain NUL bytes (callers
/// cut at the first one).
pub(crate) fn strdelim(
    s: &[u8],
    pos: Option<usize>,
    split_equals: bool,
) -> (Option<Tok>, Option<usize>) {
    let Some(old) = pos else {
        return (None, None);
    };
    if old > s.len() {
        return (None, None);
    }
    let is_delim = |b: u8| is_ws(b) || b == b'"' || (split_equals && b == b'=');
    let Some(d) = s[old..].iter().position(|&b| is_delim(b)).map(|i| old + i) else {
        let tok = Tok {
            value: s[old..].to_vec(),
            start: old,
            end: s.len(),
        };
        return (Some(tok), None);
    };
    if s[d] == b'"' {
        // The opening quote is removed; the token runs to the next quote.
        let Some(q) = s[d + 1..]
            .iter()
            .position(|&b| b == b'"')
            .map(|i| d + 1 + i)
        else {
            return (None, None);
        };
        let mut value = s[old..d].to_vec();
        value.extend_from_slice(&s[d + 1..q]);
        let next = q + 1 + strspn_ws(s, q + 1);
        return (
            Some(Tok {
                value,
                start: old,
                end: q + 1,
            }),
            Some(next),
        );
    }
    let wspace = split_equals && s[d] == b'=';
    let mut next = d + 1 + strspn_ws(s, d + 1);
    if split_equals && !wspace && s.get(next) == Some(&b'=') {
        next = next + 1 + strspn_ws(s, next + 1);
    }
    (
        Some(Tok {
            value: s[old..d].to_vec(),
            start: old,
            end: d,
        }),
        Some(next),
    )
}

/// Result of `argv_split()`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Split {
    /// The arguments in order.
    pub args: Vec<Tok>,
    /// Offset of the `#` that ended the list, when a comment did.
    pub comment_at: Option<usize>,
}

/// `argv_split(s, …, terminate_on_comment)` as in OpenSSH 8.7 and later,
/// over `s[from..]`. `Err(())` is "invalid quotes" (an unterminated quote).
pub(crate) fn argv_split(s: &[u8], from: usize, terminate_on_comment: bool) -> Result<Split, ()> {
    let mut args = Vec::new();
    let mut i = from;
    let n = c_len(s);
    while i < n {
        let c = s[i];
        if c == b' ' || c == b'\t' {
            i += 1;
            continue;
        }
        if terminate_on_comment && c == b'#' {
            return Ok(Split {
                args,
                comment_at: Some(i),
            });
        }
        let start = i;
        let mut quote = 0u8;
        let mut arg = Vec::new();
        while i < n {
            let c = s[i];
            if c == b'\\' {
                let next = s.get(i + 1).copied().filter(|_| i + 1 < n);
                match next {
                    Some(b'\'' | b'"' | b'\\') => {
                        i += 1;
                        arg.push(s[i]);
                    }
                    Some(b' ') if quote == 0 => {
                        i += 1;
                        arg.push(s[i]);
                    }
                    _ => arg.push(c),
                }
            } else if quote == 0 && (c == b' ' || c == b'\t') {
                break;
            } else if quote == 0 && (c == b'"' || c == b'\'') {
                quote = c;
            } else if quote != 0 && c == quote {
                quote = 0;
            } else {
                arg.push(c);
            }
            i += 1;
        }
        if i >= n && quote != 0 {
            return Err(());
        }
        args.push(Tok {
            value: arg,
            start,
            end: i,
        });
    }
    Ok(Split {
        args,
        comment_at: None,
    })
}

/// Length after sshd's "strip trailing whitespace; allow \f at EOL only"
/// loop, which never strips the first byte.
pub(crate) fn trailing_stripped_len(line: &[u8]) -> usize {
    let len = c_len(line);
    if len == 0 {
        return 0;
    }
    let mut l = len - 1;
    while l > 0 {
        if !(is_ws(line[l]) || line[l] == 0x0c) {
            break;
        }
        l -= 1;
    }
    // `l` is the index of the last kept byte.
    l + 1
}

/// One line as sshd's parser sees it after `load_server_config()`.
#[derive(Debug, Clone, Copy)]
pub(crate) struct LogicalLine<'a> {
    /// The line number sshd reports (it counts the newlines it kept).
    pub number: usize,
    /// 1-based physical line of the file where this line starts.
    pub physical: usize,
    /// The bytes sshd parses (leading blanks removed, no newline, no NUL).
    pub bytes: &'a [u8],
}

/// The buffer `load_server_config()` builds: what sshd parses, with the
/// physical line every byte came from.
pub(crate) struct Buffer {
    buf: Vec<u8>,
    origin: Vec<u32>,
}

impl Buffer {
    /// The `strsep(&cbuf, "\n")` loop of `parse_server_config_depth()`: a
    /// trailing newline yields a final empty line, which sshd ignores.
    pub(crate) fn lines(&self) -> impl Iterator<Item = LogicalLine<'_>> {
        let mut start = Some(0usize);
        let mut number = 0usize;
        std::iter::from_fn(move || {
            let s = start?;
            let nl = self.buf[s..]
                .iter()
                .position(|&b| b == b'\n')
                .map(|i| s + i);
            let end = nl.unwrap_or(self.buf.len());
            number += 1;
            let physical = self
                .origin
                .get(s)
                .or_else(|| self.origin.last())
                .map_or(1, |&p| p as usize);
            start = nl.map(|i| i + 1);
            Some(LogicalLine {
                number,
                physical,
                bytes: &self.buf[s..end],
            })
        })
    }
}

/// What loading a file produced.
pub(crate) enum Loaded {
    /// The buffer to parse.
    Lines(Buffer),
    /// OpenSSH before 7.8 refuses a line of 4095 bytes or more:
    /// `"%s line %d too long"` with this line number.
    TooLong(usize),
}

/// Emulates `load_server_config()`.
pub(crate) fn load(data: &[u8], target: &Target) -> Loaded {
    // Each chunk is what one fgets()/getline() call returns.
    let fgets_limit = if target.before(7, 8) {
        Some(4095usize)
    } else {
        None
    };
    let strip_hash = target.before(8, 7);
    let mut buf: Vec<u8> = Vec::with_capacity(data.len().saturating_add(1));
    let mut origin: Vec<u32> = Vec::with_capacity(data.len().saturating_add(1));
    let mut pos = 0usize;
    let mut physical = 1usize;
    let mut fgets_calls = 0usize;
    while pos < data.len() {
        let nl = data[pos..]
            .iter()
            .position(|&b| b == b'\n')
            .map(|i| pos + i);
        let mut end = nl.map_or(data.len(), |i| i + 1);
        if let Some(limit) = fgets_limit {
            end = end.min(pos.saturating_add(limit));
        }
        let chunk = &data[pos..end];
        fgets_calls += 1;
        if let Some(limit) = fgets_limit {
            if c_len(chunk) == limit {
                return Loaded::TooLong(fgets_calls);
            }
        }
        // strlen(): a NUL ends the text and swallows the newline.
        let mut line: &[u8] = &chunk[..c_len(chunk)];
        let mut add_newline = false;
        if strip_hash {
            if let Some(h) = line.iter().position(|&b| b == b'#') {
                line = &line[..h];
                add_newline = true;
            }
        }
        let skip = line
            .iter()
            .take_while(|&&b| b == b' ' || b == b'\t' || b == b'\r')
            .count();
        let phys32 = u32::try_from(physical).unwrap_or(u32::MAX);
        buf.extend_from_slice(&line[skip..]);
        origin.resize(buf.len(), phys32);
        if add_newline {
            buf.push(b'\n');
            origin.push(phys32);
        }
        if chunk.last() == Some(&b'\n') {
            physical += 1;
        }
        pos = end;
    }
    Loaded::Lines(Buffer { buf, origin })
}

#[cfg(test)]
mod tests {
    use super::super::version::{Distro, OpensshVersion};
    use super::*;

    fn t(major: u32, minor: u32) -> Target {
        Target::new(OpensshVersion::new(major, minor), Distro::Upstream)
    }

    fn vals(toks: &[Tok]) -> Vec<String> {
        toks.iter()
            .map(|t| String::from_utf8_lossy(&t.value).into_owned())
            .collect()
    }

    #[test]
    fn strdelim_like_sshd() {
        let s = b"Port = 22";
        let (k, n) = strdelim(s, Some(0), true);
        assert_eq!(k.unwrap().value, b"Port");
        assert_eq!(n, Some(7));
        let (k, n) = strdelim(b"Port==22", Some(0), true);
        assert_eq!(k.unwrap().value, b"Port");
        assert_eq!(n, Some(5)); // only one '=' is skipped
        let (k, n) = strdelim(b"\"Port\" 22", Some(0), true);
        let k = k.unwrap();
        assert_eq!((k.value.as_slice(), k.start, k.end), (&b"Port"[..], 0, 6));
        assert_eq!(n, Some(7));
        assert_eq!(strdelim(b"\"Port 22", Some(0), true), (None, None));
        let (k, n) = strdelim(b"Port", Some(0), true);
        assert_eq!(k.unwrap().value, b"Port");
        assert_eq!(n, None);
        let (k, n) = strdelim(b"=x", Some(0), true);
        assert_eq!(k.unwrap().value, b"");
        assert_eq!(n, Some(1));
        let (k, _) = strdelim(b"ab\"cd\"ef", Some(0), true);
        assert_eq!(k.unwrap().value, b"abcd");
        let (k, _) = strdelim(b"a=b", Some(0), false);
        assert_eq!(k.unwrap().value, b"a=b");
    }

    #[test]
    fn argv_split_like_sshd() {
        let s = br#"a "b c" 'd e' f\ g h\\i \x "q\"r" # tail"#;
        let sp = argv_split(s, 0, true).unwrap();
        assert_eq!(
            vals(&sp.args),
            ["a", "b c", "d e", "f g", "h\\i", "\\x", "q\"r"]
        );
        assert_eq!(sp.comment_at, Some(s.len() - 6));
        assert!(argv_split(b"a \"b", 0, true).is_err());
        let sp = argv_split(b"a#b c", 0, true).unwrap();
        assert_eq!(vals(&sp.args), ["a#b", "c"]);
        let sp = argv_split(b"\"\"", 0, true).unwrap();
        assert_eq!(vals(&sp.args), [""]);
        assert_eq!(sp.args[0].end, 2);
        let sp = argv_split(b"a\\", 0, true).unwrap();
        assert_eq!(vals(&sp.args), ["a\\"]);
    }

    #[test]
    fn trailing_strip() {
        assert_eq!(trailing_stripped_len(b"Port 22 \t\r\x0c"), 7);
        assert_eq!(trailing_stripped_len(b" "), 1);
        assert_eq!(trailing_stripped_len(b""), 0);
    }

    #[test]
    fn load_joins_lines_after_nul() {
        let data = b"Port 22\0xx\nPermitRootLogin no\n  \tUseDNS no\r\n";
        let Loaded::Lines(b) = load(data, &t(9, 2)) else {
            panic!("too long")
        };
        let l: Vec<LogicalLine> = b.lines().collect();
        assert_eq!(l[0].bytes, b"Port 22PermitRootLogin no");
        assert_eq!((l[0].number, l[0].physical), (1, 1));
        assert_eq!(l[1].bytes, b"UseDNS no\r");
        assert_eq!((l[1].number, l[1].physical), (2, 3));
        assert_eq!(l[2].bytes, b"");
    }

    #[test]
    fn load_strips_hash_before_8_7() {
        let Loaded::Lines(b) = load(b"Port 22 # x\n", &t(8, 4)) else {
            panic!()
        };
        let l: Vec<LogicalLine> = b.lines().collect();
        assert_eq!(l[0].bytes, b"Port 22 ");
        let Loaded::Lines(b) = load(b"Port 22 # x\n", &t(8, 7)) else {
            panic!()
        };
        let l: Vec<LogicalLine> = b.lines().collect();
        assert_eq!(l[0].bytes, b"Port 22 # x");
    }

    #[test]
    fn load_line_limit_before_7_8() {
        let mut long = vec![b'a'; 5000];
        long.push(b'\n');
        assert!(matches!(load(&long, &t(7, 4)), Loaded::TooLong(1)));
        assert!(matches!(load(&long, &t(7, 8)), Loaded::Lines(_)));
        let mut edge = vec![b'a'; 4094];
        edge.push(b'\n');
        assert!(matches!(load(&edge, &t(7, 4)), Loaded::TooLong(1)));
        let mut ok = vec![b'a'; 4093];
        ok.push(b'\n');
        assert!(matches!(load(&ok, &t(7, 4)), Loaded::Lines(_)));
    }
}
