//! The GRUB environment block (`grubenv`): exactly 1024 bytes starting with
//! `# GRUB Environment Block\n`, then `key=value\n` lines, padded with `#`.
//!
//! Values escape `\` and newline with a backslash, as `grub-editenv` writes
//! them. A wrong size or header is a diagnostic, not a failure: GRUB itself
//! refuses such a block, which is worth reporting. Lossless; never does I/O.

use serde::Serialize;

use crate::{Diagnostic, Span};

/// Size of a valid environment block.
pub const BLOCK_SIZE: usize = 1024;
/// The first line of a valid environment block.
pub const HEADER: &[u8] = b"# GRUB Environment Block\n";

/// A parsed environment block.
#[derive(Debug, Clone, Serialize, schemars::JsonSchema)]
pub struct GrubEnv {
    #[serde(skip)]
    source: Vec<u8>,
    /// Variables in block order.
    pub vars: Vec<EnvVar>,
    /// Size or header problems, malformed lines.
    pub diagnostics: Vec<Diagnostic>,
}

/// One `key=value` line.
#[derive(Debug, Clone, Serialize, schemars::JsonSchema)]
pub struct EnvVar {
    /// 1-based line number.
    pub line: usize,
    /// The whole line (without newline).
    pub span: Span,
    /// The variable name.
    pub key: String,
    /// The value, unescaped.
    pub value: String,
    /// The value as written.
    pub value_span: Span,
}

impl GrubEnv {
    /// Parses a block. Never fails.
    pub fn parse(data: &[u8]) -> GrubEnv {
        let mut diagnostics = Vec::new();
        if data.len() != BLOCK_SIZE {
            diagnostics.push(Diagnostic::new(
                0,
                format!("environment block is {} bytes, GRUB expects exactly {BLOCK_SIZE}; GRUB will ignore it", data.len()),
            ));
        }
        let mut pos = 0usize;
        let mut line = 1usize;
        if data.starts_with(HEADER) {
            pos = HEADER.len();
            line = 2;
        } else {
            diagnostics.push(Diagnostic::new(
                1,
                "missing '# GRUB Environment Block' header; GRUB will ignore this file",
            ));
        }
        let mut vars = Vec::new();
        let mut saw_garbage = false;
        while pos < data.len() {
            let start = pos;
            let start_line = line;
            if data[pos] == b'#' {
                // Comment or padding: up to the end of the line.
                while pos < data.len() && data[pos] != b'\n' {
                    pos += 1;
                }
                // Comments are allowed (RHEL ships a "# WARNING" line);
                // zero bytes in the padding mean the block was damaged.
                let line_bytes = &data[start..pos];
                if !saw_garbage && line_bytes.contains(&0) {
                    diagnostics.push(Diagnostic::new(
                        start_line,
                        "zero bytes in the padding of the environment block; the block may be damaged",
                    ));
                    saw_garbage = true;
                }
            } else if data[pos] == b'\n' {
                // Empty line.
            } else {
                let eq = (pos..data.len())
                    .take_while(|&i| data[i] != b'\n')
                    .find(|&i| data[i] == b'=');
                match eq {
                    None => {
                        while pos < data.len() && data[pos] != b'\n' {
                            pos += 1;
                        }
                        if !saw_garbage {
                            let what = if data[start..pos].iter().all(|&b| b == 0) {
                                "zero bytes"
                            } else {
                                "a line without '='"
                            };
                            diagnostics.push(Diagnostic::new(
                                start_line,
                                format!("{what} inside the environment block"),
                            ));
                            saw_garbage = true;
                        }
                    }
                    Some(eq) => {
                        let key = String::from_utf8_lossy(&data[pos..eq]).into_owned();
                        let vstart = eq + 1;
                        let mut value = Vec::new();
                        let mut i = vstart;
                        while i < data.len() && data[i] != b'\n' {
                            if data[i] == b'\\' {
                                if let Some(&next) = data.get(i + 1) {
                                    if next == b'\n' {
                                        line += 1;
                                    }
                                    value.push(next);
                                    i += 2;
                                    continue;
                                }
                            }
                            value.push(data[i]);
                            i += 1;
                        }
                        let i = i.min(data.len());
                        pos = i;
                        vars.push(EnvVar {
                            line: start_line,
                            span: Span::new(start, i),
                            key,
                            value: String::from_utf8_lossy(&value).into_owned(),
                            value_span: Span::new(vstart, i),
                        });
                    }
                }
            }
            if pos < data.len() {
                // On the newline.
                pos += 1;
                line += 1;
            }
        }
        GrubEnv {
            source: data.to_vec(),
            vars,
            diagnostics,
        }
    }

    /// The bytes of the block.
    pub fn render(&self) -> Vec<u8> {
        self.source.clone()
    }

    /// A new block with `key` set to `value`, as `grub-editenv set` writes
    /// it: the header, every variable in block order (the first `key`
    /// replaced, later duplicates dropped, `key` appended when absent),
    /// values escaped, padded with `#` to [`BLOCK_SIZE`]. Comment lines of
    /// the old block are not kept (grub-editenv drops them too). Fails when
    /// the variables no longer fit in the block or the key is not a name.
    pub fn with_var(&self, key: &str, value: &str) -> Result<Vec<u8>, String> {
        if key.is_empty()
            || key
                .bytes()
                .any(|b| b == b'=' || b == b'\n' || b == b'#' || b == 0)
        {
            return Err(format!("{key:?} is not a valid environment variable name"));
        }
        let escape = |v: &str| v.replace('\\', "\\\\").replace('\n', "\\\n");
        let mut out = HEADER.to_vec();
        let mut done = false;
        for var in &self.vars {
            if var.key == key {
                if !done {
                    out.extend_from_slice(format!("{key}={}\n", escape(value)).as_bytes());
                    done = true;
                }
                continue;
            }
            out.extend_from_slice(format!("{}={}\n", var.key, escape(&var.value)).as_bytes());
        }
        if !done {
            out.extend_from_slice(format!("{key}={}\n", escape(value)).as_bytes());
        }
        if out.len() > BLOCK_SIZE {
            return Err(format!(
                "the variables take {} bytes, more than the {BLOCK_SIZE}-byte environment block",
                out.len()
            ));
        }
        out.resize(BLOCK_SIZE, b'#');
        Ok(out)
    }

    /// The value of `key` (GRUB uses the first occurrence).
    pub fn get(&self, key: &str) -> Option<&str> {
        self.vars
            .iter()
            .find(|v| v.key == key)
            .map(|v| v.value.as_str())
    }
}

/// Fuzz entry point.
#[doc(hidden)]
pub fn fuzz_grubenv(data: &[u8]) {
    let e = GrubEnv::parse(data);
    assert_eq!(e.render(), data);
    if let Ok(block) = e.with_var("saved_entry", "x") {
        assert_eq!(block.len(), BLOCK_SIZE);
        assert_eq!(GrubEnv::parse(&block).get("saved_entry"), Some("x"));
    }
    for v in &e.vars {
        assert!(v.span.end <= data.len());
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn block(body: &[u8]) -> Vec<u8> {
        let mut b = HEADER.to_vec();
        b.extend_from_slice(body);
        b.resize(BLOCK_SIZE, b'#');
        b
    }

    #[test]
    fn with_var_replaces_appends_and_escapes() {
        let e = GrubEnv::parse(&block(b"saved_entry=old\nnext_entry=\nsaved_entry=dup\n"));
        let b = e.with_var("saved_entry", "new>x").unwrap();
        assert_eq!(b.len(), BLOCK_SIZE);
        assert!(b.starts_with(b"# GRUB Environment Block\nsaved_entry=new>x\nnext_entry=\n#"));
        let again = GrubEnv::parse(&b);
        assert!(again.diagnostics.is_empty(), "{:?}", again.diagnostics);
        assert_eq!(again.get("saved_entry"), Some("new>x"));
        let b = again.with_var("odd", "a\\b\nc").unwrap();
        assert_eq!(GrubEnv::parse(&b).get("odd"), Some("a\\b\nc"));
        assert!(e.with_var("x", &"y".repeat(2000)).is_err());
        assert!(e.with_var("a=b", "y").is_err());
    }

    #[test]
    fn valid_block() {
        let data = block(b"# WARNING: Do not edit this file by tools other than grub-editenv!!!\nsaved_entry=gnulinux-advanced-0b5a>gnulinux-6.1.0-9-amd64-advanced-0b5a\nnext_entry=\nkernelopts=root=/dev/x ro\\\\n\n");
        let e = GrubEnv::parse(&data);
        assert!(e.diagnostics.is_empty(), "{:?}", e.diagnostics);
        assert_eq!(
            e.get("saved_entry"),
            Some("gnulinux-advanced-0b5a>gnulinux-6.1.0-9-amd64-advanced-0b5a")
        );
        assert_eq!(e.get("next_entry"), Some(""));
        assert_eq!(e.get("kernelopts"), Some("root=/dev/x ro\\n"));
        assert_eq!(e.vars[0].line, 3);
        assert_eq!(e.render(), data);
    }

    #[test]
    fn malformed_blocks() {
        let short = &block(b"saved_entry=1\n")[..600];
        let e = GrubEnv::parse(short);
        assert_eq!(e.get("saved_entry"), Some("1"));
        assert!(e.diagnostics[0].message.contains("600 bytes"));
        let e = GrubEnv::parse(b"saved_entry=1\n");
        assert_eq!(e.diagnostics.len(), 2);
        let mut z = block(b"a=1\n");
        z[100..200].fill(0);
        let e = GrubEnv::parse(&z);
        assert!(
            e.diagnostics
                .iter()
                .any(|d| d.message.contains("zero bytes")),
            "{:?}",
            e.diagnostics
        );
    }

    #[test]
    fn mutations_never_panic() {
        let data = block(b"saved_entry=0\nboot_success=1\n");
        crate::text::mutate_and_run(&data, 3000, 0x6e7e, fuzz_grubenv);
    }
}
