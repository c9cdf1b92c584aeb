//! Line splitting shared by the line-oriented parsers.
//!
//! Pure helpers over byte slices; they must never panic on any input.

use crate::Span;

/// One physical line: its content span (without the `\n`) and 1-based number.
#[derive(Debug, Clone, Copy)]
pub(crate) struct RawLine {
    pub number: usize,
    pub content: Span,
}

/// Splits `data` into lines. A final line without `\n` is still a line; an
/// empty input has no lines. A `\r` before `\n` stays part of the content.
pub(crate) fn lines(data: &[u8]) -> Vec<RawLine> {
    let mut out = Vec::new();
    let mut start = 0usize;
    let mut number = 1usize;
    for (i, &b) in data.iter().enumerate() {
        if b == b'\n' {
            out.push(RawLine {
                number,
                content: Span::new(start, i),
            });
            start = i + 1;
            number += 1;
        }
    }
    if start < data.len() {
        out.push(RawLine {
            number,
            content: Span::new(start, data.len()),
        });
    }
    out
}

/// Lossy UTF-8 conversion that also reports whether the bytes were valid.
pub(crate) fn lossy(bytes: &[u8]) -> (String, bool) {
    match std::str::from_utf8(bytes) {
        Ok(s) => (s.to_owned(), true),
        Err(_) => (String::from_utf8_lossy(bytes).into_owned(), false),
    }
}

/// True for the blanks that separate fields: space and tab.
pub(crate) fn is_blank(b: u8) -> bool {
    b == b' ' || b == b'\t'
}

/// Byte offset just after leading blanks of `span` in `data`.
pub(crate) fn skip_blanks(data: &[u8], mut pos: usize, end: usize) -> usize {
    while pos < end && data.get(pos).is_some_and(|&b| is_blank(b)) {
        pos += 1;
    }
    pos
}

/// Deterministic xorshift PRNG for mutation tests.
#[cfg(test)]
pub(crate) struct XorShift(pub u64);

#[cfg(test)]
impl XorShift {
    pub fn next(&mut self) -> u64 {
        let mut x = self.0;
        x ^= x << 13;
        x ^= x >> 7;
        x ^= x << 17;
        self.0 = x;
        x
    }

    pub fn below(&mut self, n: usize) -> usize {
        if n == 0 {
            0
        } else {
            (self.next() % n as u64) as usize
        }
    }
}

/// Feeds `rounds` random mutations of `sample` to `f`: byte flips, inserted
/// interesting bytes, deletions, truncations and duplications.
#[cfg(test)]
pub(crate) fn mutate_and_run(sample: &[u8], rounds: usize, seed: u64, f: impl Fn(&[u8])) {
    const INTERESTING: &[u8] = b"\n\r\t \\'\"#=${}()[];:>-/\x00\xff\xc3 ";
    let mut rng = XorShift(seed | 1);
    f(sample);
    f(&[]);
    for _ in 0..rounds {
        let mut data = sample.to_vec();
        let edits = 1 + rng.below(8);
        for _ in 0..edits {
            match rng.below(6) {
                0 if !data.is_empty() => {
                    let i = rng.below(data.len());
                    data[i] = rng.next() as u8;
                }
                1 => {
                    let i = rng.below(data.len() + 1);
                    let b = INTERESTING[rng.below(INTERESTING.len())];
                    data.insert(i, b);
                }
                2 if !data.is_empty() => {
                    let i = rng.below(data.len());
                    data.remove(i);
                }
                3 => {
                    let n = rng.below(data.len() + 1);
                    data.truncate(n);
                }
                4 if !data.is_empty() => {
                    let a = rng.below(data.len());
                    let b = (a + rng.below(64)).min(data.len());
                    let chunk = data[a..b].to_vec();
                    let at = rng.below(data.len() + 1);
                    data.splice(at..at, chunk);
                }
                _ => {
                    let i = rng.below(data.len() + 1);
                    let b = INTERESTING[rng.below(INTERESTING.len())];
                    data.insert(i, b);
                }
            }
        }
        f(&data);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn lines_keep_every_byte() {
        let data = b"a\n\nb\r\nc";
        let l = lines(data);
        assert_eq!(l.len(), 4);
        assert_eq!(l[0].content.slice(data), b"a");
        assert_eq!(l[1].content.slice(data), b"");
        assert_eq!(l[2].content.slice(data), b"b\r");
        assert_eq!(l[3].content.slice(data), b"c");
        assert_eq!(l[3].number, 4);
        assert!(lines(b"").is_empty());
        assert_eq!(lines(b"x\n").len(), 1);
    }
}
