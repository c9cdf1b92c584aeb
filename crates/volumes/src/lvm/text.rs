//! Parser for the LVM2 text metadata format (the "config" syntax LVM writes
//! into metadata areas and `/etc/lvm/backup`):
//!
//! ```text
//! vg0 {                      # a section
//!     id = "abc-..."         # key = string
//!     seqno = 4              # key = integer
//!     status = ["READ", "WRITE"]   # key = array
//!     physical_volumes { pv0 { pe_start = 2048 } }
//! }
//! ```
//!
//! The input is untrusted: its size, nesting depth and node count are capped,
//! and every failure is an error value carrying the byte offset and line,
//! never a panic.

use std::fmt;

/// Largest text we parse.
pub(crate) const MAX_TEXT_BYTES: usize = 1 << 20;
/// Deepest nesting of sections. LVM metadata nests five levels.
const MAX_DEPTH: usize = 32;
/// Most values (scalars, arrays and sections) in one document.
const MAX_NODES: usize = 200_000;

/// A value in the metadata.
#[derive(Debug, Clone, PartialEq)]
pub(crate) enum Value {
    /// An integer.
    Int(i64),
    /// A number with a fractional part.
    Float(f64),
    /// A quoted string, unescaped.
    Str(String),
    /// `[ a, b, ... ]` of scalars.
    Array(Vec<Value>),
    /// `name { ... }`.
    Section(Section),
}

/// An ordered list of `key = value` and `name { ... }` items.
#[derive(Debug, Clone, PartialEq, Default)]
pub(crate) struct Section {
    /// Items in file order (duplicates kept; lookups take the first).
    pub items: Vec<(String, Value)>,
}

impl Section {
    /// The first value named `key`.
    pub fn get(&self, key: &str) -> Option<&Value> {
        self.items.iter().find(|(k, _)| k == key).map(|(_, v)| v)
    }

    /// The sub-section named `key`.
    pub fn section(&self, key: &str) -> Option<&Section> {
        match self.get(key) {
            Some(Value::Section(s)) => Some(s),
            _ => None,
        }
    }

    /// The integer named `key`.
    pub fn int(&self, key: &str) -> Option<i64> {
        match self.get(key) {
            Some(Value::Int(i)) => Some(*i),
            _ => None,
        }
    }

    /// The string named `key`.
    pub fn str(&self, key: &str) -> Option<&str> {
        match self.get(key) {
            Some(Value::Str(s)) => Some(s),
            _ => None,
        }
    }

    /// The array named `key`.
    pub fn array(&self, key: &str) -> Option<&[Value]> {
        match self.get(key) {
            Some(Value::Array(a)) => Some(a),
            _ => None,
        }
    }

    /// The sub-sections, with their names, in order.
    pub fn sections(&self) -> impl Iterator<Item = (&str, &Section)> {
        self.items.iter().filter_map(|(k, v)| match v {
            Value::Section(s) => Some((k.as_str(), s)),
            _ => None,
        })
    }
}

/// A syntax error, with where it happened.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct ParseError {
    /// Byte offset in the text.
    pub offset: usize,
    /// 1-based line number.
    pub line: usize,
    /// What was wrong.
    pub message: String,
}

impl fmt::Display for ParseError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "line {} (byte {}): {}",
            self.line, self.offset, self.message
        )
    }
}

#[derive(Debug, Clone, PartialEq)]
enum Token {
    Open,
    Close,
    OpenArray,
    CloseArray,
    Comma,
    Equals,
    Str(String),
    Word(String),
    End,
}

struct Parser<'a> {
    text: &'a [u8],
    pos: usize,
    nodes: usize,
    peeked: Option<(usize, Token)>,
}

/// Parses a whole metadata document into its top-level section.
pub(crate) fn parse(text: &[u8]) -> Result<Section, ParseError> {
    if text.len() > MAX_TEXT_BYTES {
        return Err(ParseError {
            offset: 0,
            line: 1,
            message: format!(
                "metadata text of {} bytes exceeds the {MAX_TEXT_BYTES}-byte limit",
                text.len()
            ),
        });
    }
    let mut p = Parser {
        text,
        pos: 0,
        nodes: 0,
        peeked: None,
    };
    let root = p.items(0)?;
    match p.next()? {
        (_, Token::End) => Ok(root),
        (at, t) => Err(p.error(at, format!("unexpected {} at top level", describe(&t)))),
    }
}

fn describe(t: &Token) -> String {
    match t {
        Token::Open => "'{'".into(),
        Token::Close => "'}'".into(),
        Token::OpenArray => "'['".into(),
        Token::CloseArray => "']'".into(),
        Token::Comma => "','".into(),
        Token::Equals => "'='".into(),
        Token::Str(_) => "a string".into(),
        Token::Word(w) => format!("'{}'", w.chars().take(32).collect::<String>()),
        Token::End => "end of text".into(),
    }
}

fn is_word_byte(b: u8) -> bool {
    !b.is_ascii_whitespace()
        && !matches!(
            b,
            b'{' | b'}' | b'[' | b']' | b',' | b'=' | b'#' | b'"' | b'\''
        )
        && b != 0
}

impl Parser<'_> {
    fn error(&self, offset: usize, message: impl Into<String>) -> ParseError {
        let upto = self.text.get(..offset).unwrap_or(self.text);
        let line = upto.iter().filter(|&&b| b == b'\n').count() + 1;
        ParseError {
            offset,
            line,
            message: message.into(),
        }
    }

    fn count_node(&mut self, at: usize) -> Result<(), ParseError> {
        self.nodes += 1;
        if self.nodes > MAX_NODES {
            return Err(self.error(at, format!("more than {MAX_NODES} values")));
        }
        Ok(())
    }

    fn peek(&mut self) -> Result<&Token, ParseError> {
        if self.peeked.is_none() {
            let t = self.lex()?;
            self.peeked = Some(t);
        }
        static END: Token = Token::End;
        Ok(self.peeked.as_ref().map_or(&END, |(_, t)| t))
    }

    fn next(&mut self) -> Result<(usize, Token), ParseError> {
        match self.peeked.take() {
            Some(t) => Ok(t),
            None => self.lex(),
        }
    }

    fn skip_blanks(&mut self) {
        while let Some(&b) = self.text.get(self.pos) {
            if b.is_ascii_whitespace() || b == 0 {
                self.pos += 1;
            } else if b == b'#' {
                while let Some(&c) = self.text.get(self.pos) {
                    if c == b'\n' {
                        break;
                    }
                    self.pos += 1;
                }
            } else {
                break;
            }
        }
    }

    fn lex(&mut self) -> Result<(usize, Token), ParseError> {
        self.skip_blanks();
        let start = self.pos;
        let Some(&b) = self.text.get(self.pos) else {
            return Ok((start, Token::End));
        };
        self.pos += 1;
        let t = match b {
            b'{' => Token::Open,
            b'}' => Token::Close,
            b'[' => Token::OpenArray,
            b']' => Token::CloseArray,
            b',' => Token::Comma,
            b'=' => Token::Equals,
            b'"' | b'\'' => {
                let mut out = Vec::new();
                loop {
                    let Some(&c) = self.text.get(self.pos) else {
                        return Err(self.error(start, "unterminated string"));
                    };
                    self.pos += 1;
                    if c == b {
                        break;
                    }
                    if c == b'\\' {
                        let Some(&escaped) = self.text.get(self.pos) else {
                            return Err(self.error(start, "unterminated string"));
                        };
                        self.pos += 1;
                        out.push(escaped);
                    } else {
                        out.push(c);
                    }
                }
                Token::Str(String::from_utf8_lossy(&out).into_owned())
            }
            _ if is_word_byte(b) => {
                while self.text.get(self.pos).is_some_and(|&c| is_word_byte(c)) {
                    self.pos += 1;
                }
                let word = self.text.get(start..self.pos).unwrap_or_default();
                Token::Word(String::from_utf8_lossy(word).into_owned())
            }
            _ => return Err(self.error(start, format!("unexpected byte {b:#04x}"))),
        };
        Ok((start, t))
    }

    /// Items until `}` (not consumed) or the end of the text.
    fn items(&mut self, depth: usize) -> Result<Section, ParseError> {
        let mut section = Section::default();
        loop {
            match self.peek()? {
                Token::Close | Token::End => return Ok(section),
                _ => {}
            }
            let (at, name) = match self.next()? {
                (at, Token::Word(w)) => (at, w),
                (at, t) => {
                    return Err(self.error(at, format!("expected a name, found {}", describe(&t))))
                }
            };
            match self.next()? {
                (_, Token::Open) => {
                    if depth + 1 > MAX_DEPTH {
                        return Err(
                            self.error(at, format!("sections nest deeper than {MAX_DEPTH} levels"))
                        );
                    }
                    self.count_node(at)?;
                    let inner = self.items(depth + 1)?;
                    match self.next()? {
                        (_, Token::Close) => {}
                        (at, t) => {
                            return Err(self.error(
                                at,
                                format!(
                                    "expected '}}' to close section '{name}', found {}",
                                    describe(&t)
                                ),
                            ))
                        }
                    }
                    section.items.push((name, Value::Section(inner)));
                }
                (_, Token::Equals) => {
                    let value = self.value(true)?;
                    section.items.push((name, value));
                }
                (at, t) => {
                    return Err(self.error(
                        at,
                        format!(
                            "expected '=' or '{{' after '{name}', found {}",
                            describe(&t)
                        ),
                    ))
                }
            }
        }
    }

    fn value(&mut self, allow_array: bool) -> Result<Value, ParseError> {
        let (at, t) = self.next()?;
        self.count_node(at)?;
        match t {
            Token::Str(s) => Ok(Value::Str(s)),
            Token::Word(w) => {
                number(&w).ok_or_else(|| self.error(at, format!("expected a value, found '{w}'")))
            }
            Token::OpenArray if allow_array => {
                let mut items = Vec::new();
                loop {
                    if matches!(self.peek()?, Token::CloseArray) {
                        self.next()?;
                        return Ok(Value::Array(items));
                    }
                    items.push(self.value(false)?);
                    match self.next()? {
                        (_, Token::Comma) => {}
                        (_, Token::CloseArray) => return Ok(Value::Array(items)),
                        (at, t) => {
                            return Err(self.error(
                                at,
                                format!("expected ',' or ']' in array, found {}", describe(&t)),
                            ))
                        }
                    }
                }
            }
            t => Err(self.error(at, format!("expected a value, found {}", describe(&t)))),
        }
    }
}

/// Parses a bare word as an integer (decimal or 0x hex) or a float.
fn number(w: &str) -> Option<Value> {
    let (neg, digits) = match w.strip_prefix('-') {
        Some(rest) => (true, rest),
        None => (false, w.strip_prefix('+').unwrap_or(w)),
    };
    if let Some(hex) = digits
        .strip_prefix("0x")
        .or_else(|| digits.strip_prefix("0X"))
    {
        let v = i64::from_str_radix(hex, 16).ok()?;
        return Some(Value::Int(if neg { v.checked_neg()? } else { v }));
    }
    if !digits.is_empty() && digits.bytes().all(|b| b.is_ascii_digit()) {
        return w.parse::<i64>().ok().map(Value::Int);
    }
    let looks_float = digits.bytes().all(|b| b.is_ascii_digit() || b == b'.')
        && digits.bytes().any(|b| b.is_ascii_digit());
    if looks_float {
        return w
            .parse::<f64>()
            .ok()
            .filter(|f| f.is_finite())
            .map(Value::Float);
    }
    None
}

#[cfg(test)]
mod tests {
    use super::*;

    const SAMPLE: &str = r#"vg0 {
id = "LWxAIP-8XS2-Q0wY-T7mv-KJtp-gtc9-bWfdTn"
seqno = 4
status = ["RESIZEABLE", "READ", "WRITE"]
flags = []
extent_size = 8192	# 4 Megabytes
physical_volumes {
pv0 {
id = "0pA7zf-OJBH-Zntm-oI7Z-Y2wR-FlVx-aci7MT"
device = "/dev/loop0"	# Hint only
pe_start = 2048
}
}
}
# Generated by LVM2
contents = "Text Format Volume Group"
description = "quote \" and backslash \\ inside"
"#;

    #[test]
    fn parses_lvm_text() {
        let root = parse(SAMPLE.as_bytes()).unwrap();
        let vg = root.section("vg0").unwrap();
        assert_eq!(vg.int("seqno"), Some(4));
        assert_eq!(vg.array("flags").map(|a| a.len()), Some(0));
        assert_eq!(vg.array("status").map(|a| a.len()), Some(3));
        let pv0 = vg
            .section("physical_volumes")
            .and_then(|s| s.section("pv0"))
            .unwrap();
        assert_eq!(pv0.int("pe_start"), Some(2048));
        assert_eq!(
            root.str("description"),
            Some("quote \" and backslash \\ inside")
        );
    }

    #[test]
    fn reports_errors_with_lines() {
        let err = parse(b"a {\n b = \n}").unwrap_err();
        assert_eq!(err.line, 3);
        assert!(parse(b"a { b = \"x").is_err());
        assert!(parse(b"}").is_err());
        assert!(parse(b"a = [[1]]").is_err());
    }

    #[test]
    fn depth_is_capped() {
        let deep = "a {".repeat(100) + &"}".repeat(100);
        assert!(parse(deep.as_bytes())
            .unwrap_err()
            .message
            .contains("deeper"));
    }
}
