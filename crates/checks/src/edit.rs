//! Repairs as data: the edits `fix` would make, and the pure functions that
//! turn line edits into new file contents and unified diffs.
//!
//! Edits are expressed per line against the file as read, so that several
//! findings can each propose an edit of the same file and still compose:
//! [`apply_line_edits`] checks every edit's `before` text against the file,
//! refuses overlapping edits, and applies them together.
//!
//! Must never: do I/O.

use serde::Serialize;

/// What `fix` would do for one finding.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, schemars::JsonSchema)]
pub struct Repair {
    /// One line saying what the repair does.
    pub summary: String,
    /// The edits, in the order to apply them. Empty when the repair needs
    /// the operator (see `manual`).
    pub edits: Vec<Edit>,
    /// What the operator has to do when no automatic edit is safe.
    pub manual: Option<String>,
}

/// One change to the guest.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, schemars::JsonSchema)]
#[serde(tag = "op", rename_all = "snake_case")]
pub enum Edit {
    /// Replace one line of a text file (the line's text without its newline;
    /// `after` may hold several lines separated by `\n`).
    EditLine {
        /// Guest path.
        path: String,
        /// 1-based line number in the file as read.
        line: usize,
        /// The line as it is now (checked before applying).
        before: String,
        /// What replaces it.
        after: String,
    },
    /// Set one variable of a GRUB environment block, keeping it 1024 bytes.
    SetGrubenv {
        /// Guest path of the grubenv file.
        path: String,
        /// Variable name.
        key: String,
        /// New value.
        value: String,
    },
    /// Change permission bits.
    SetMode {
        /// Guest path.
        path: String,
        /// Current mode (permission bits, e.g. 0o777).
        from: u32,
        /// New mode.
        to: u32,
    },
    /// Change owner and group.
    SetOwner {
        /// Guest path.
        path: String,
        /// Current uid.
        from_uid: u32,
        /// Current gid.
        from_gid: u32,
        /// New uid.
        to_uid: u32,
        /// New gid.
        to_gid: u32,
    },
    /// Remove a file or symbolic link (never a directory).
    Unlink {
        /// Guest path.
        path: String,
    },
    /// Create a symbolic link.
    CreateSymlink {
        /// Guest path of the link.
        path: String,
        /// What it points to, as stored in the link.
        target: String,
    },
    /// Create a directory.
    CreateDir {
        /// Guest path.
        path: String,
        /// Permission bits.
        mode: u32,
        /// Owner.
        uid: u32,
        /// Group.
        gid: u32,
    },
}

impl Edit {
    /// The guest path the edit changes.
    pub fn path(&self) -> &str {
        match self {
            Edit::EditLine { path, .. }
            | Edit::SetGrubenv { path, .. }
            | Edit::SetMode { path, .. }
            | Edit::SetOwner { path, .. }
            | Edit::Unlink { path }
            | Edit::CreateSymlink { path, .. }
            | Edit::CreateDir { path, .. } => path,
        }
    }
}

/// Why line edits could not be applied.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum LineEditError {
    /// The file does not have that line.
    NoSuchLine(usize),
    /// The line's text is not what the edit expected (the file changed).
    Mismatch {
        /// 1-based line.
        line: usize,
    },
    /// Two edits change the same line.
    Overlap(usize),
}

impl std::fmt::Display for LineEditError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            LineEditError::NoSuchLine(l) => write!(f, "the file has no line {l}"),
            LineEditError::Mismatch { line } => {
                write!(f, "line {line} is not what the plan expected; the file changed since it was checked")
            }
            LineEditError::Overlap(l) => write!(f, "two edits change line {l}"),
        }
    }
}

/// Applies `(line, before, after)` edits to `data`. Line endings of other
/// lines, a missing final newline and all other bytes are kept.
pub fn apply_line_edits(
    data: &[u8],
    edits: &[(usize, &str, &str)],
) -> Result<Vec<u8>, LineEditError> {
    let mut sorted: Vec<&(usize, &str, &str)> = edits.iter().collect();
    sorted.sort_by_key(|e| e.0);
    for pair in sorted.windows(2) {
        if pair[0].0 == pair[1].0 {
            return Err(LineEditError::Overlap(pair[0].0));
        }
    }
    let mut out = Vec::with_capacity(data.len() + 256);
    let mut next = sorted.iter().peekable();
    for (idx, raw) in data.split_inclusive(|&b| b == b'\n').enumerate() {
        let number = idx + 1;
        let (content, ending) = match raw.strip_suffix(b"\n") {
            Some(c) => (c, &b"\n"[..]),
            None => (raw, &b""[..]),
        };
        match next.peek() {
            Some(e) if e.0 == number => {
                if String::from_utf8_lossy(content) != e.1 {
                    return Err(LineEditError::Mismatch { line: number });
                }
                out.extend_from_slice(e.2.as_bytes());
                out.extend_from_slice(if ending.is_empty() && !e.2.is_empty() {
                    b""
                } else {
                    ending
                });
                next.next();
            }
            _ => out.extend_from_slice(raw),
        }
    }
    if let Some(e) = next.next() {
        return Err(LineEditError::NoSuchLine(e.0));
    }
    Ok(out)
}

/// A unified diff (one hunk per changed region, three lines of context)
/// between two texts, labelled `a/<path>` and `b/<path>`.
pub fn unified_diff(path: &str, before: &str, after: &str) -> String {
    let a: Vec<&str> = before.lines().collect();
    let b: Vec<&str> = after.lines().collect();
    let ops = diff_ops(&a, &b);
    if ops.iter().all(|o| matches!(o, Op::Same(..))) {
        return String::new();
    }
    let mut out = format!("--- a{path}\n+++ b{path}\n");
    const CONTEXT: usize = 3;
    // Indices into `ops` of changes, grouped into hunks.
    let changed: Vec<usize> = ops
        .iter()
        .enumerate()
        .filter(|(_, o)| !matches!(o, Op::Same(..)))
        .map(|(i, _)| i)
        .collect();
    let mut groups: Vec<(usize, usize)> = Vec::new();
    for &i in &changed {
        match groups.last_mut() {
            Some(g) if i <= g.1 + 2 * CONTEXT + 1 => g.1 = i,
            _ => groups.push((i, i)),
        }
    }
    for (first, last) in groups {
        let start = first.saturating_sub(CONTEXT);
        let end = (last + CONTEXT + 1).min(ops.len());
        let (mut a_start, mut b_start) = (0usize, 0usize);
        for o in &ops[..start] {
            match o {
                Op::Same(..) => {
                    a_start += 1;
                    b_start += 1;
                }
                Op::Del(_) => a_start += 1,
                Op::Add(_) => b_start += 1,
            }
        }
        let a_len = ops[start..end]
            .iter()
            .filter(|o| !matches!(o, Op::Add(_)))
            .count();
        let b_len = ops[start..end]
            .iter()
            .filter(|o| !matches!(o, Op::Del(_)))
            .count();
        out.push_str(&format!(
            "@@ -{},{} +{},{} @@\n",
            a_start + 1,
            a_len,
            b_start + 1,
            b_len
        ));
        for o in &ops[start..end] {
            match o {
                Op::Same(l) => out.push_str(&format!(" {l}\n")),
                Op::Del(l) => out.push_str(&format!("-{l}\n")),
                Op::Add(l) => out.push_str(&format!("+{l}\n")),
            }
        }
    }
    out
}

#[derive(Debug)]
enum Op<'a> {
    Same(&'a str),
    Del(&'a str),
    Add(&'a str),
}

/// Line diff: common prefix and suffix, then an LCS on the middle when it is
/// small (config files are), else delete-all/add-all for the middle.
fn diff_ops<'a>(a: &[&'a str], b: &[&'a str]) -> Vec<Op<'a>> {
    let prefix = a.iter().zip(b).take_while(|(x, y)| x == y).count();
    let suffix = a[prefix..]
        .iter()
        .rev()
        .zip(b[prefix..].iter().rev())
        .take_while(|(x, y)| x == y)
        .count();
    let (am, bm) = (&a[prefix..a.len() - suffix], &b[prefix..b.len() - suffix]);
    let mut ops: Vec<Op<'a>> = a[..prefix].iter().map(|l| Op::Same(l)).collect();
    if am.len().saturating_mul(bm.len()) <= 4_000_000 {
        // Classic LCS table, bounded by the check above.
        let (n, m) = (am.len(), bm.len());
        let mut t = vec![0u32; (n + 1) * (m + 1)];
        for i in (0..n).rev() {
            for j in (0..m).rev() {
                t[i * (m + 1) + j] = if am[i] == bm[j] {
                    t[(i + 1) * (m + 1) + j + 1] + 1
                } else {
                    t[(i + 1) * (m + 1) + j].max(t[i * (m + 1) + j + 1])
                };
            }
        }
        let (mut i, mut j) = (0, 0);
        while i < n && j < m {
            if am[i] == bm[j] {
                ops.push(Op::Same(am[i]));
                i += 1;
                j += 1;
            } else if t[(i + 1) * (m + 1) + j] >= t[i * (m + 1) + j + 1] {
                ops.push(Op::Del(am[i]));
                i += 1;
            } else {
                ops.push(Op::Add(bm[j]));
                j += 1;
            }
        }
        ops.extend(am[i..].iter().map(|l| Op::Del(l)));
        ops.extend(bm[j..].iter().map(|l| Op::Add(l)));
    } else {
        ops.extend(am.iter().map(|l| Op::Del(l)));
        ops.extend(bm.iter().map(|l| Op::Add(l)));
    }
    ops.extend(a[a.len() - suffix..].iter().map(|l| Op::Same(l)));
    ops
}

/// Diffs of all line edits of `edits` that touch `path`, given its contents.
pub fn diff_for_file(path: &str, data: &[u8], edits: &[&Edit]) -> Result<String, LineEditError> {
    let lines: Vec<(usize, &str, &str)> = edits
        .iter()
        .filter_map(|e| match e {
            Edit::EditLine {
                path: p,
                line,
                before,
                after,
            } if p == path => Some((*line, before.as_str(), after.as_str())),
            _ => None,
        })
        .collect();
    let new = apply_line_edits(data, &lines)?;
    Ok(unified_diff(
        path,
        &String::from_utf8_lossy(data),
        &String::from_utf8_lossy(&new),
    ))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn line_edits_keep_every_other_byte() {
        let data = b"a\r\nb\n# c\nd";
        let out = apply_line_edits(data, &[(2, "b", "B"), (4, "d", "D1\nD2")]).unwrap();
        assert_eq!(out, b"a\r\nB\n# c\nD1\nD2");
        assert_eq!(apply_line_edits(data, &[]).unwrap(), data);
    }

    #[test]
    fn line_edits_refuse_stale_overlapping_or_missing_lines() {
        let data = b"x\ny\n";
        assert_eq!(
            apply_line_edits(data, &[(1, "nope", "z")]),
            Err(LineEditError::Mismatch { line: 1 })
        );
        assert_eq!(
            apply_line_edits(data, &[(1, "x", "a"), (1, "x", "b")]),
            Err(LineEditError::Overlap(1))
        );
        assert_eq!(
            apply_line_edits(data, &[(3, "", "z")]),
            Err(LineEditError::NoSuchLine(3))
        );
    }

    #[test]
    fn unified_diff_matches_diff_u() {
        let before = "1\n2\n3\n4\n5\n6\n7\n8\n9\n";
        let after = "1\n2\n3\n4\nFIVE\n6\n7\n8\n9\n";
        let d = unified_diff("/etc/x", before, after);
        assert_eq!(
            d,
            "--- a/etc/x\n+++ b/etc/x\n@@ -2,7 +2,7 @@\n 2\n 3\n 4\n-5\n+FIVE\n 6\n 7\n 8\n"
        );
        assert_eq!(unified_diff("/x", before, before), "");
    }
}
