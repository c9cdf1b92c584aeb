//! Shell-style `KEY=value` files: os-release(5), `/etc/default/grub`,
//! `/etc/sysconfig/*`.
//!
//! Values follow POSIX shell quoting: single quotes are literal, double
//! quotes honour `\$ \` \" \\` and backslash-newline, unquoted backslash
//! escapes the next byte, and quoted and unquoted parts concatenate. With
//! expansion enabled, `$NAME` and `${NAME}` are replaced by earlier
//! assignments of the same file; command substitution and parameter
//! operators are left as written and flagged, never executed.
//!
//! Lossless: each item keeps its span; [`ShellDoc::render`] returns the input.
//! This module must never run anything and never fail.

use std::collections::HashMap;

use serde::Serialize;

use crate::text::{is_blank, lossy};
use crate::{Diagnostic, Span};

/// A parsed shell-style assignment file.
#[derive(Debug, Clone, Serialize, schemars::JsonSchema)]
pub struct ShellDoc {
    #[serde(skip)]
    source: Vec<u8>,
    /// Items in file order.
    pub items: Vec<ShellItem>,
    /// Problems found.
    pub diagnostics: Vec<Diagnostic>,
}

/// One logical line (an assignment may span several physical lines).
#[derive(Debug, Clone, Serialize, schemars::JsonSchema)]
pub struct ShellItem {
    /// 1-based number of the first physical line.
    pub line: usize,
    /// The item's bytes, without the final newline.
    pub span: Span,
    /// What the item is.
    pub kind: ShellItemKind,
}

/// Classification of an item.
#[derive(Debug, Clone, Serialize, schemars::JsonSchema)]
#[serde(tag = "type", rename_all = "snake_case")]
pub enum ShellItemKind {
    /// Only blanks.
    Blank,
    /// A `#` comment line.
    Comment,
    /// `[export] NAME=value`.
    Assignment(Assignment),
    /// Anything else (a command, a conditional): not evaluated.
    Other,
}

/// A `NAME=value` assignment.
#[derive(Debug, Clone, Serialize, schemars::JsonSchema)]
pub struct Assignment {
    /// Variable name.
    pub name: String,
    /// Span of the name.
    pub name_span: Span,
    /// Span of the value as written (with quotes).
    pub value_span: Span,
    /// The value after quote removal (and expansion, when enabled).
    pub value: String,
    /// Preceded by `export`.
    pub exported: bool,
    /// The value contains command substitution or a parameter expansion we
    /// do not evaluate; `value` keeps that part as written.
    pub unevaluated: bool,
}

/// Parsing options.
#[derive(Debug, Clone, Copy, Default)]
pub struct ShellOptions {
    /// Expand `$NAME`/`${NAME}` from earlier assignments in the same file
    /// (os-release forbids expansion; `/etc/default/grub` is sourced by sh).
    pub expand: bool,
    /// Report lines that are not assignments (os-release allows none).
    pub only_assignments: bool,
}

impl ShellDoc {
    /// Parses `data`. Never fails.
    pub fn parse(data: &[u8], options: ShellOptions) -> ShellDoc {
        let mut p = Parser {
            data,
            pos: 0,
            line: 1,
            diags: Vec::new(),
            vars: HashMap::new(),
            options,
        };
        let mut items = Vec::new();
        while p.pos < data.len() {
            let before = p.pos;
            items.push(p.item());
            if p.pos <= before {
                // Defensive: every item consumes at least one byte.
                p.pos = before + 1;
            }
        }
        ShellDoc {
            source: data.to_vec(),
            items,
            diagnostics: p.diags,
        }
    }

    /// The bytes of the document; identical to the input when unchanged.
    pub fn render(&self) -> Vec<u8> {
        self.source.clone()
    }

    /// All assignments in order.
    pub fn assignments(&self) -> impl Iterator<Item = &Assignment> {
        self.items.iter().filter_map(|i| match &i.kind {
            ShellItemKind::Assignment(a) => Some(a),
            _ => None,
        })
    }

    /// The value of the last assignment to `name`, as the shell would see it.
    pub fn get(&self, name: &str) -> Option<&str> {
        self.assignments()
            .filter(|a| a.name == name)
            .last()
            .map(|a| a.value.as_str())
    }

    /// The last assignment to `name`, with its spans and line.
    pub fn find(&self, name: &str) -> Option<(usize, &Assignment)> {
        self.items.iter().rev().find_map(|i| match &i.kind {
            ShellItemKind::Assignment(a) if a.name == name => Some((i.line, a)),
            _ => None,
        })
    }
}

struct Parser<'a> {
    data: &'a [u8],
    pos: usize,
    line: usize,
    diags: Vec<Diagnostic>,
    vars: HashMap<String, String>,
    options: ShellOptions,
}

impl Parser<'_> {
    fn peek(&self) -> Option<u8> {
        self.data.get(self.pos).copied()
    }

    fn peek_at(&self, off: usize) -> Option<u8> {
        self.data.get(self.pos.checked_add(off)?).copied()
    }

    /// Advances one byte, counting lines.
    fn bump(&mut self) -> Option<u8> {
        let b = self.peek()?;
        self.pos += 1;
        if b == b'\n' {
            self.line += 1;
        }
        Some(b)
    }

    /// Skips to the end of the physical line, leaving `pos` on the `\n`.
    fn skip_to_eol(&mut self) {
        while let Some(b) = self.peek() {
            if b == b'\n' {
                break;
            }
            self.pos += 1;
        }
    }

    /// Finishes an item: consumes the newline and returns the item span end.
    fn finish(&mut self) -> usize {
        let end = self.pos;
        if self.peek() == Some(b'\n') {
            self.bump();
        }
        end
    }

    fn item(&mut self) -> ShellItem {
        let start = self.pos;
        let line = self.line;
        while self.peek().is_some_and(|b| is_blank(b) || b == b'\r') {
            self.pos += 1;
        }
        match self.peek() {
            None | Some(b'\n') => {
                let end = self.finish();
                return ShellItem {
                    line,
                    span: Span::new(start, end),
                    kind: ShellItemKind::Blank,
                };
            }
            Some(b'#') => {
                self.skip_to_eol();
                let end = self.finish();
                return ShellItem {
                    line,
                    span: Span::new(start, end),
                    kind: ShellItemKind::Comment,
                };
            }
            _ => {}
        }
        let mut exported = false;
        if self
            .data
            .get(self.pos..)
            .is_some_and(|r| r.starts_with(b"export"))
            && self.peek_at(6).is_some_and(is_blank)
        {
            exported = true;
            self.pos += 6;
            while self.peek().is_some_and(is_blank) {
                self.pos += 1;
            }
        }
        let name_start = self.pos;
        while self
            .peek()
            .is_some_and(|b| b.is_ascii_alphanumeric() || b == b'_')
        {
            self.pos += 1;
        }
        let name_end = self.pos;
        let valid_name = name_end > name_start && !self.data[name_start].is_ascii_digit();
        if !valid_name || self.peek() != Some(b'=') {
            if self.options.only_assignments {
                self.diags
                    .push(Diagnostic::new(line, "not a KEY=value assignment; ignored"));
            }
            self.skip_to_eol();
            let end = self.finish();
            return ShellItem {
                line,
                span: Span::new(start, end),
                kind: ShellItemKind::Other,
            };
        }
        let name = String::from_utf8_lossy(&self.data[name_start..name_end]).into_owned();
        self.pos += 1; // '='
        let value_start = self.pos;
        let (bytes, unevaluated) = self.value(line);
        let value_end = self.pos;
        let (value, valid) = lossy(&bytes);
        if !valid {
            self.diags.push(Diagnostic::new(
                line,
                format!("value of {name} is not valid utf-8"),
            ));
        }
        // After the value: blanks, then end of line or a comment.
        while self.peek().is_some_and(|b| is_blank(b) || b == b'\r') {
            self.pos += 1;
        }
        match self.peek() {
            None | Some(b'\n') => {}
            Some(b'#') => self.skip_to_eol(),
            Some(b';') => {
                self.diags
                    .push(Diagnostic::new(line, "text after ';' is not evaluated"));
                self.skip_to_eol();
            }
            Some(_) => {
                self.diags.push(Diagnostic::new(
                    line,
                    format!("unexpected text after the value of {name}; values with spaces must be quoted"),
                ));
                self.skip_to_eol();
            }
        }
        let end = self.finish();
        if self.options.expand {
            self.vars.insert(name.clone(), value.clone());
        }
        ShellItem {
            line,
            span: Span::new(start, end),
            kind: ShellItemKind::Assignment(Assignment {
                name,
                name_span: Span::new(name_start, name_end),
                value_span: Span::new(value_start, value_end),
                value,
                exported,
                unevaluated,
            }),
        }
    }

    /// Reads one shell word starting at `pos`.
    fn value(&mut self, line: usize) -> (Vec<u8>, bool) {
        let mut out = Vec::new();
        let mut unevaluated = false;
        while let Some(b) = self.peek() {
            match b {
                b' ' | b'\t' | b'\n' | b';' | b'\r' => break,
                b'\'' => {
                    self.bump();
                    loop {
                        match self.bump() {
                            None => {
                                self.diags
                                    .push(Diagnostic::new(line, "unterminated single quote"));
                                break;
                            }
                            Some(b'\'') => break,
                            Some(c) => out.push(c),
                        }
                    }
                }
                b'"' => {
                    self.bump();
                    loop {
                        match self.peek() {
                            None => {
                                self.diags
                                    .push(Diagnostic::new(line, "unterminated double quote"));
                                break;
                            }
                            Some(b'"') => {
                                self.bump();
                                break;
                            }
                            Some(b'\\') => {
                                self.bump();
                                match self.peek() {
                                    Some(b'\n') => {
                                        self.bump();
                                    }
                                    Some(c @ (b'$' | b'`' | b'"' | b'\\')) => {
                                        self.bump();
                                        out.push(c);
                                    }
                                    _ => out.push(b'\\'),
                                }
                            }
                            Some(b'$') => unevaluated |= self.dollar(&mut out),
                            Some(b'`') => {
                                unevaluated = true;
                                self.backtick(&mut out, line);
                            }
                            Some(c) => {
                                self.bump();
                                out.push(c);
                            }
                        }
                    }
                }
                b'\\' => {
                    self.bump();
                    match self.bump() {
                        Some(b'\n') | None => {}
                        Some(c) => out.push(c),
                    }
                }
                b'$' => unevaluated |= self.dollar(&mut out),
                b'`' => {
                    unevaluated = true;
                    self.backtick(&mut out, line);
                }
                c => {
                    self.bump();
                    out.push(c);
                }
            }
        }
        (out, unevaluated)
    }

    /// Handles `$…` at `pos`. Returns true when left unevaluated.
    fn dollar(&mut self, out: &mut Vec<u8>) -> bool {
        let start = self.pos;
        self.bump(); // '$'
        match self.peek() {
            Some(b'{') => {
                let mut depth = 0usize;
                while let Some(c) = self.peek() {
                    if c == b'\n' {
                        break;
                    }
                    self.bump();
                    if c == b'{' {
                        depth += 1;
                    } else if c == b'}' {
                        depth = depth.saturating_sub(1);
                        if depth == 0 {
                            break;
                        }
                    }
                }
                let raw = &self.data[start..self.pos];
                let inner = raw.get(2..raw.len().saturating_sub(1)).unwrap_or(&[]);
                let simple = !inner.is_empty()
                    && raw.last() == Some(&b'}')
                    && inner
                        .iter()
                        .all(|b| b.is_ascii_alphanumeric() || *b == b'_');
                if simple && self.options.expand {
                    let name = String::from_utf8_lossy(inner);
                    out.extend_from_slice(
                        self.vars
                            .get(name.as_ref())
                            .map(|s| s.as_bytes())
                            .unwrap_or(&[]),
                    );
                    false
                } else {
                    out.extend_from_slice(raw);
                    !simple || self.options.expand
                }
            }
            Some(b'(') => {
                let mut depth = 0usize;
                while let Some(c) = self.bump() {
                    if c == b'(' {
                        depth += 1;
                    } else if c == b')' {
                        depth = depth.saturating_sub(1);
                        if depth == 0 {
                            break;
                        }
                    }
                }
                out.extend_from_slice(&self.data[start..self.pos]);
                true
            }
            Some(c) if c.is_ascii_alphabetic() || c == b'_' => {
                let name_start = self.pos;
                while self
                    .peek()
                    .is_some_and(|b| b.is_ascii_alphanumeric() || b == b'_')
                {
                    self.pos += 1;
                }
                if self.options.expand {
                    let name = String::from_utf8_lossy(&self.data[name_start..self.pos]);
                    out.extend_from_slice(
                        self.vars
                            .get(name.as_ref())
                            .map(|s| s.as_bytes())
                            .unwrap_or(&[]),
                    );
                    false
                } else {
                    out.extend_from_slice(&self.data[start..self.pos]);
                    false
                }
            }
            _ => {
                out.push(b'$');
                false
            }
        }
    }

    fn backtick(&mut self, out: &mut Vec<u8>, line: usize) {
        let start = self.pos;
        self.bump();
        loop {
            match self.bump() {
                None => {
                    self.diags
                        .push(Diagnostic::new(line, "unterminated backquote"));
                    break;
                }
                Some(b'`') => break,
                Some(b'\\') => {
                    self.bump();
                }
                Some(_) => {}
            }
        }
        out.extend_from_slice(&self.data[start..self.pos]);
    }
}

/// Fuzz entry point: parses with and without expansion and checks the
/// round trip.
#[doc(hidden)]
pub fn fuzz_shell(data: &[u8]) {
    for expand in [false, true] {
        let doc = ShellDoc::parse(
            data,
            ShellOptions {
                expand,
                only_assignments: !expand,
            },
        );
        assert_eq!(doc.render(), data);
        for item in &doc.items {
            assert!(item.span.end <= data.len());
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const SAMPLE: &[u8] = br#"# comment
A=plain
B="double $A \"q\" \$x \\ end"
C='single $A "q"'
D=con"cat"'enated'
export E="multi
line"
F=`lsb_release -i -s 2> /dev/null || echo Debian`
G="$(echo x) ${A}-${A:-y}"
H=esc\ aped # trailing comment
I=bad value
  J="indented"
if true; then
fi
K=
"#;

    #[test]
    fn quoting_rules() {
        let doc = ShellDoc::parse(
            SAMPLE,
            ShellOptions {
                expand: false,
                only_assignments: false,
            },
        );
        assert_eq!(doc.render(), SAMPLE);
        assert_eq!(doc.get("A"), Some("plain"));
        assert_eq!(doc.get("B"), Some("double $A \"q\" $x \\ end"));
        assert_eq!(doc.get("C"), Some("single $A \"q\""));
        assert_eq!(doc.get("D"), Some("concatenated"));
        assert_eq!(doc.get("E"), Some("multi\nline"));
        assert!(doc.find("E").unwrap().1.exported);
        assert!(doc.find("F").unwrap().1.unevaluated);
        assert_eq!(doc.get("H"), Some("esc aped"));
        assert_eq!(doc.get("I"), Some("bad"));
        assert_eq!(doc.get("J"), Some("indented"));
        assert_eq!(doc.get("K"), Some(""));
        assert_eq!(doc.find("K").unwrap().0, 15);
        assert!(
            doc.diagnostics
                .iter()
                .any(|d| d.line == 11 && d.message.contains("quoted")),
            "{:?}",
            doc.diagnostics
        );
        // The value span covers the quoted text as written.
        let (_, b) = doc.find("B").unwrap();
        assert!(b.value_span.slice(SAMPLE).starts_with(b"\"double"));
    }

    #[test]
    fn expansion() {
        let doc = ShellDoc::parse(
            SAMPLE,
            ShellOptions {
                expand: true,
                only_assignments: false,
            },
        );
        assert_eq!(doc.get("B"), Some("double plain \"q\" $x \\ end"));
        assert_eq!(doc.get("C"), Some("single $A \"q\""));
        let (_, g) = doc.find("G").unwrap();
        assert_eq!(g.value, "$(echo x) plain-${A:-y}");
        assert!(g.unevaluated);
    }

    #[test]
    fn mutations_never_panic() {
        crate::text::mutate_and_run(SAMPLE, 4000, 0x5e11, fuzz_shell);
    }
}
