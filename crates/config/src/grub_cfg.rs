//! A reader for `grub.cfg`, sufficient to tell what GRUB will boot.
//!
//! It tokenizes GRUB script (quotes `'` and `"`, backslash escapes, line
//! continuations, `$var`/`${var}`, `#` comments, `;`, braces) and walks the
//! block structure (`menuentry`/`submenu`/`function` braces,
//! `if`/`elif`/`else`/`fi`, loops) with an explicit stack, never recursion.
//! It records what inspection needs: the menu tree with titles and ids,
//! `set default=…` assignments with the `if` branch they sit in, the
//! `linux`/`initrd` lines of each entry, `search` and `configfile` lines,
//! `load_env` and `blscfg`.
//!
//! It is not a shell. Two things are evaluated, both bounded and without
//! side effects: `[ … ]` tests over variables (grubenv values and earlier
//! assignments), to tell which `set default=…` GRUB reaches; and top-level
//! variable expansion in `configfile` arguments, to follow EFI stubs. Tests
//! that need the running firmware (`-f file`, `$grub_platform`, commands)
//! are "unknown" and reported as such.
//!
//! Never fails, never loops without consuming input, never does I/O.

use std::collections::HashMap;

use serde::Serialize;

use crate::{Diagnostic, Span};

/// Frames deeper than this are treated as plain groups (and reported).
const MAX_DEPTH: usize = 128;
/// Longest `${…}` name we accept.
const MAX_VAR_NAME: usize = 256;
/// A `>` path in a default spec longer than this is cut (and reported).
const MAX_SPEC_PARTS: usize = 32;

/// A parsed grub.cfg.
#[derive(Debug, Clone, Serialize, schemars::JsonSchema)]
pub struct GrubCfg {
    #[serde(skip)]
    source: Vec<u8>,
    /// Top-level menu, in order; a `blscfg` item marks where BLS entries go.
    pub menu: Vec<MenuItem>,
    /// Every `set name=value` / `name=value`, in order.
    pub assignments: Vec<Assignment>,
    /// Every `search` / `search.fs_uuid` / `search.fs_label` / `search.file`.
    pub searches: Vec<Search>,
    /// Every `configfile` and `source` command.
    pub configfiles: Vec<Configfile>,
    /// Line of the first top-level `blscfg` command.
    pub blscfg_line: Option<usize>,
    /// Lines of `load_env` commands.
    pub load_env_lines: Vec<usize>,
    /// Problems found (unbalanced blocks, unterminated quotes, …).
    pub diagnostics: Vec<Diagnostic>,
}

/// What a menu item is.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, schemars::JsonSchema)]
#[serde(rename_all = "snake_case")]
pub enum MenuKind {
    /// `menuentry`.
    Entry,
    /// `submenu`.
    Submenu,
    /// The place where `blscfg` inserts the BLS entries.
    Blscfg,
}

/// A menu entry, submenu or `blscfg` marker.
#[derive(Debug, Clone, Serialize, schemars::JsonSchema)]
pub struct MenuItem {
    /// Entry, submenu or blscfg marker.
    pub kind: MenuKind,
    /// The title (first non-option argument).
    pub title: String,
    /// `--id` / `$menuentry_id_option` value.
    pub id: Option<String>,
    /// 1-based line of the `menuentry`/`submenu` keyword.
    pub line: usize,
    /// Inside an `if` (its presence depends on a condition we do not evaluate).
    pub conditional: bool,
    /// `linux`, `linuxefi`, `linux16` commands of this entry.
    pub linux: Vec<BootCommand>,
    /// `initrd`, `initrdefi`, `initrd16` commands of this entry.
    pub initrd: Vec<BootCommand>,
    /// Items of a submenu.
    pub children: Vec<MenuItem>,
}

/// A `linux`/`initrd` command.
#[derive(Debug, Clone, Serialize, schemars::JsonSchema)]
pub struct BootCommand {
    /// 1-based line.
    pub line: usize,
    /// The command name as written (`linux`, `linuxefi`, …).
    pub command: String,
    /// Arguments with variables rendered as `${name}`.
    pub args: Vec<String>,
}

impl BootCommand {
    /// The first argument (the kernel or first initrd path).
    pub fn path(&self) -> Option<&str> {
        self.args.first().map(|s| s.as_str())
    }
}

/// A variable assignment.
#[derive(Debug, Clone, Serialize, schemars::JsonSchema)]
pub struct Assignment {
    /// 1-based line.
    pub line: usize,
    /// Variable name.
    pub name: String,
    /// Value with variables rendered as `${name}`.
    pub value: String,
    /// When the whole value is one variable (`"${saved_entry}"`), its name.
    pub var_ref: Option<String>,
    /// The `if` branches around it, outermost first.
    pub conditions: Vec<Condition>,
    /// Inside a menu entry or submenu body.
    pub in_menu: bool,
    /// Inside a `function` body.
    pub in_function: bool,
}

/// An `if` branch.
#[derive(Debug, Clone, Serialize, schemars::JsonSchema)]
pub struct Condition {
    /// Which `if` of the file this is (0-based, in order of appearance).
    pub if_index: usize,
    /// 1-based line of the `if`.
    pub if_line: usize,
    /// The test as written (of the `if`, or of the `elif` for that branch).
    pub test: String,
    /// Which branch.
    pub branch: Branch,
    /// The words of the `if` test and of every `elif` test up to this
    /// branch, variables rendered as `${name}`.
    pub tests: Vec<Vec<String>>,
}

/// A branch of an `if`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, schemars::JsonSchema)]
#[serde(rename_all = "snake_case")]
pub enum Branch {
    /// Between `if` and `then` (the test itself).
    Test,
    /// After `then`.
    Then,
    /// After an `elif … then`.
    Elif,
    /// After `else`.
    Else,
}

/// What a `search` command looks for.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, schemars::JsonSchema)]
#[serde(rename_all = "snake_case")]
pub enum SearchKind {
    /// `--fs-uuid`, `-u`, `search.fs_uuid`.
    FsUuid,
    /// `--label`, `-l`, `search.fs_label`.
    Label,
    /// `--file`, `-f`, `search.file` (the default of `search`).
    File,
}

/// A `search` command.
#[derive(Debug, Clone, Serialize, schemars::JsonSchema)]
pub struct Search {
    /// 1-based line.
    pub line: usize,
    /// What is searched for.
    pub kind: SearchKind,
    /// The UUID, label or file name.
    pub value: String,
    /// The variable set to the device found (`root` for bare `--set`).
    pub set_var: Option<String>,
    /// Inside a menu entry body.
    pub in_menu: bool,
}

/// A `configfile` or `source` command.
#[derive(Debug, Clone, Serialize, schemars::JsonSchema)]
pub struct Configfile {
    /// 1-based line.
    pub line: usize,
    /// `configfile` or `source`.
    pub command: String,
    /// The argument with variables rendered as `${name}`.
    pub raw: String,
    /// The argument with top-level variables expanded, when it could be.
    pub target: Option<GrubPath>,
    /// Variables we could not expand.
    pub unresolved: Vec<String>,
    /// Inside a menu entry body.
    pub in_menu: bool,
}

/// A GRUB file name: a device and a path on it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, schemars::JsonSchema)]
pub struct GrubPath {
    /// The device.
    pub device: GrubDevice,
    /// The absolute path on that device's filesystem.
    pub path: String,
}

/// A GRUB device as far as the file tells us.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, schemars::JsonSchema)]
#[serde(tag = "type", rename_all = "snake_case")]
pub enum GrubDevice {
    /// No device given and `$root` never set: the device this file was read from.
    Current,
    /// Found by `search --fs-uuid`.
    FsUuid {
        /// The filesystem UUID.
        uuid: String,
    },
    /// Found by `search --label`.
    Label {
        /// The label.
        label: String,
    },
    /// Found by `search --file`.
    File {
        /// The file searched for.
        file: String,
    },
    /// A device name such as `hd0,gpt2` (BIOS/firmware numbering).
    Named {
        /// The name without parentheses.
        name: String,
    },
}

// ---------------------------------------------------------------------------
// Lexer

#[derive(Debug, Clone, PartialEq, Eq)]
enum Part {
    Lit(String),
    Var(String),
}

#[derive(Debug, Clone)]
struct Word {
    parts: Vec<Part>,
    /// True when the word is a single unquoted literal (a keyword candidate).
    bare: bool,
}

impl Word {
    fn literal(&self) -> Option<&str> {
        match self.parts.as_slice() {
            [Part::Lit(s)] => Some(s),
            [] => Some(""),
            _ => None,
        }
    }

    fn keyword(&self) -> Option<&str> {
        if self.bare {
            self.literal()
        } else {
            None
        }
    }

    /// Renders with variables as `${name}`.
    fn render(&self) -> String {
        let mut s = String::new();
        for p in &self.parts {
            match p {
                Part::Lit(l) => s.push_str(l),
                Part::Var(v) => {
                    s.push_str("${");
                    s.push_str(v);
                    s.push('}');
                }
            }
        }
        s
    }
}

#[derive(Debug)]
enum Tok {
    Word(Word),
    Sep,
    LBrace,
    RBrace,
}

struct Lexer<'a> {
    data: &'a [u8],
    pos: usize,
    line: usize,
    diags: Vec<Diagnostic>,
}

impl Lexer<'_> {
    fn peek(&self) -> Option<u8> {
        self.data.get(self.pos).copied()
    }

    fn peek2(&self) -> Option<u8> {
        self.data.get(self.pos.checked_add(1)?).copied()
    }

    fn bump(&mut self) -> Option<u8> {
        let b = self.peek()?;
        self.pos += 1;
        if b == b'\n' {
            self.line += 1;
        }
        Some(b)
    }

    /// Next token and the line it starts on.
    fn next(&mut self) -> Option<(Tok, usize)> {
        loop {
            while self
                .peek()
                .is_some_and(|b| b == b' ' || b == b'\t' || b == b'\r')
            {
                self.pos += 1;
            }
            let line = self.line;
            match self.peek()? {
                b'\n' | b';' => {
                    self.bump();
                    return Some((Tok::Sep, line));
                }
                b'#' => {
                    while self.peek().is_some_and(|b| b != b'\n') {
                        self.pos += 1;
                    }
                }
                b'\\' if self.peek2() == Some(b'\n') => {
                    self.bump();
                    self.bump();
                }
                b'{' => {
                    self.bump();
                    return Some((Tok::LBrace, line));
                }
                b'}' => {
                    self.bump();
                    return Some((Tok::RBrace, line));
                }
                _ => return Some((Tok::Word(self.word()), line)),
            }
        }
    }

    fn word(&mut self) -> Word {
        let mut parts = Vec::new();
        let mut lit: Vec<u8> = Vec::new();
        let mut bare = true;
        let start_line = self.line;
        let flush = |lit: &mut Vec<u8>, parts: &mut Vec<Part>| {
            if !lit.is_empty() {
                parts.push(Part::Lit(String::from_utf8_lossy(lit).into_owned()));
                lit.clear();
            }
        };
        while let Some(b) = self.peek() {
            match b {
                b' ' | b'\t' | b'\r' | b'\n' | b';' => break,
                b'\'' => {
                    bare = false;
                    self.bump();
                    loop {
                        match self.bump() {
                            None => {
                                self.diags
                                    .push(Diagnostic::new(start_line, "unterminated single quote"));
                                break;
                            }
                            Some(b'\'') => break,
                            Some(c) => lit.push(c),
                        }
                    }
                }
                b'"' => {
                    bare = false;
                    self.bump();
                    loop {
                        match self.peek() {
                            None => {
                                self.diags
                                    .push(Diagnostic::new(start_line, "unterminated double quote"));
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
                                    Some(c @ (b'$' | b'"' | b'\\')) => {
                                        self.bump();
                                        lit.push(c);
                                    }
                                    _ => lit.push(b'\\'),
                                }
                            }
                            Some(b'$') => {
                                if let Some(v) = self.var() {
                                    flush(&mut lit, &mut parts);
                                    parts.push(Part::Var(v));
                                } else {
                                    lit.push(b'$');
                                }
                            }
                            Some(c) => {
                                self.bump();
                                lit.push(c);
                            }
                        }
                    }
                }
                b'\\' => {
                    bare = false;
                    self.bump();
                    match self.bump() {
                        Some(b'\n') | None => {}
                        Some(c) => lit.push(c),
                    }
                }
                b'$' => {
                    if let Some(v) = self.var() {
                        flush(&mut lit, &mut parts);
                        parts.push(Part::Var(v));
                    } else {
                        lit.push(b'$');
                    }
                }
                c => {
                    self.bump();
                    lit.push(c);
                }
            }
        }
        flush(&mut lit, &mut parts);
        let bare = bare && parts.iter().all(|p| matches!(p, Part::Lit(_)));
        Word { parts, bare }
    }

    /// At `$`: consumes a variable reference and returns its name, or
    /// consumes only the `$` and returns `None` when none follows.
    fn var(&mut self) -> Option<String> {
        self.bump(); // '$'
        match self.peek() {
            Some(b'{') => {
                let start = self.pos + 1;
                let mut end = start;
                while end < self.data.len() && end - start <= MAX_VAR_NAME {
                    match self.data[end] {
                        b'}' => {
                            let name = String::from_utf8_lossy(&self.data[start..end]).into_owned();
                            self.pos = end + 1;
                            return Some(name);
                        }
                        b'\n' => break,
                        _ => end += 1,
                    }
                }
                None
            }
            Some(c) if c.is_ascii_alphanumeric() || c == b'_' => {
                let start = self.pos;
                if c.is_ascii_digit() {
                    while self.peek().is_some_and(|b| b.is_ascii_digit()) {
                        self.pos += 1;
                    }
                } else {
                    while self
                        .peek()
                        .is_some_and(|b| b.is_ascii_alphanumeric() || b == b'_')
                    {
                        self.pos += 1;
                    }
                }
                Some(String::from_utf8_lossy(&self.data[start..self.pos]).into_owned())
            }
            Some(c @ (b'?' | b'#' | b'@' | b'*')) => {
                self.pos += 1;
                Some((c as char).to_string())
            }
            _ => None,
        }
    }
}

// ---------------------------------------------------------------------------
// Parser

#[derive(Debug)]
enum Frame {
    If {
        index: usize,
        line: usize,
        tests: Vec<Vec<String>>,
        branch: Branch,
    },
    Loop,
    Function,
    Group,
    /// A menu body; `path` is `None` for entries we do not record (inside
    /// functions or beyond the depth limit).
    Menu {
        path: Option<Vec<usize>>,
    },
}

impl Frame {
    fn is_brace(&self) -> bool {
        matches!(self, Frame::Function | Frame::Group | Frame::Menu { .. })
    }
}

/// Marker for a search result in the expansion environment: a character
/// from the Private Use Area that cannot appear in the rendered output
/// (only [`Configfile::target`] is expanded, and it decodes markers).
const MARKER: char = '\u{e000}';

struct Parser {
    cfg: GrubCfg,
    stack: Vec<Frame>,
    env: HashMap<String, String>,
    pending_function: bool,
    /// `if` statements seen so far.
    ifs: usize,
}

impl GrubCfg {
    /// Parses grub.cfg bytes. Never fails.
    pub fn parse(data: &[u8]) -> GrubCfg {
        let mut lexer = Lexer {
            data,
            pos: 0,
            line: 1,
            diags: Vec::new(),
        };
        let mut p = Parser {
            cfg: GrubCfg {
                source: data.to_vec(),
                menu: Vec::new(),
                assignments: Vec::new(),
                searches: Vec::new(),
                configfiles: Vec::new(),
                blscfg_line: None,
                load_env_lines: Vec::new(),
                diagnostics: Vec::new(),
            },
            stack: Vec::new(),
            env: HashMap::new(),
            pending_function: false,
            ifs: 0,
        };
        let mut words: Vec<Word> = Vec::new();
        let mut cmd_line = 1usize;
        while let Some((tok, line)) = lexer.next() {
            match tok {
                Tok::Word(w) => {
                    if words.is_empty() {
                        cmd_line = line;
                    }
                    words.push(w);
                }
                Tok::Sep => {
                    p.command(std::mem::take(&mut words), cmd_line, false);
                }
                Tok::LBrace => {
                    if words.is_empty() {
                        cmd_line = line;
                    }
                    p.command(std::mem::take(&mut words), cmd_line, true);
                }
                Tok::RBrace => {
                    p.command(std::mem::take(&mut words), cmd_line, false);
                    p.close_brace(line);
                }
            }
        }
        p.command(words, cmd_line, false);
        if let Some(outermost) = p.stack.first() {
            let what = match outermost {
                Frame::If { line, .. } => format!("the 'if' at line {line}"),
                Frame::Loop => "a loop".to_owned(),
                _ => "a '{' block".to_owned(),
            };
            let n = p.stack.len();
            p.cfg.diagnostics.push(Diagnostic::new(
                0,
                format!("{n} block(s) never closed, the outermost is {what}"),
            ));
        }
        let mut cfg = p.cfg;
        let mut diags = lexer.diags;
        diags.append(&mut cfg.diagnostics);
        cfg.diagnostics = diags;
        cfg
    }

    /// The bytes of the document.
    pub fn render(&self) -> Vec<u8> {
        self.source.clone()
    }

    /// The original bytes of `span`.
    pub fn slice(&self, span: Span) -> &[u8] {
        span.slice(&self.source)
    }

    /// Top-level `default` assignments (outside menus and functions), in order.
    pub fn default_assignments(&self) -> impl Iterator<Item = &Assignment> {
        self.assignments
            .iter()
            .filter(|a| a.name == "default" && !a.in_menu && !a.in_function)
    }
}

impl Parser {
    fn in_function(&self) -> bool {
        self.stack.iter().any(|f| matches!(f, Frame::Function))
    }

    fn in_menu(&self) -> bool {
        self.stack.iter().any(|f| matches!(f, Frame::Menu { .. }))
    }

    fn top_level(&self) -> bool {
        !self.in_function() && !self.in_menu()
    }

    fn conditions(&self) -> Vec<Condition> {
        self.stack
            .iter()
            .filter_map(|f| match f {
                Frame::If {
                    index,
                    line,
                    tests,
                    branch,
                } => {
                    let shown = match branch {
                        Branch::Elif => tests.last(),
                        _ => tests.first(),
                    };
                    Some(Condition {
                        if_index: *index,
                        if_line: *line,
                        test: shown.map(|t| t.join(" ")).unwrap_or_default(),
                        branch: *branch,
                        tests: tests.clone(),
                    })
                }
                _ => None,
            })
            .collect()
    }

    fn conditional(&self) -> bool {
        self.stack.iter().any(|f| matches!(f, Frame::If { .. }))
    }

    /// The innermost recorded menu path, if any.
    fn menu_path(&self) -> Option<&Vec<usize>> {
        self.stack.iter().rev().find_map(|f| match f {
            Frame::Menu { path } => Some(path.as_ref()),
            _ => None,
        })?
    }

    fn item_mut(&mut self, path: &[usize]) -> Option<&mut MenuItem> {
        let (last, parents) = path.split_last()?;
        let mut level = &mut self.cfg.menu;
        for &i in parents {
            level = &mut level.get_mut(i)?.children;
        }
        level.get_mut(*last)
    }

    fn push(&mut self, frame: Frame, line: usize) {
        if self.stack.len() >= MAX_DEPTH {
            if self.stack.len() == MAX_DEPTH {
                self.cfg.diagnostics.push(Diagnostic::new(
                    line,
                    "blocks nested too deeply; the rest is not interpreted",
                ));
            }
            // Keep counting braces so closing ones still match, but record nothing.
            let frame = if frame.is_brace() {
                Frame::Menu { path: None }
            } else {
                frame
            };
            self.stack.push(frame);
            return;
        }
        self.stack.push(frame);
    }

    fn close_brace(&mut self, line: usize) {
        // Pop unclosed non-brace frames (an `if` without `fi` inside a menu).
        while let Some(f) = self.stack.pop() {
            if f.is_brace() {
                return;
            }
            self.cfg.diagnostics.push(Diagnostic::new(
                line,
                "'}' closes a block with an unclosed 'if' or loop inside",
            ));
        }
        self.cfg
            .diagnostics
            .push(Diagnostic::new(line, "'}' without a matching '{'"));
    }

    fn set_branch(&mut self, branch: Branch, test: Option<Vec<String>>, line: usize, kw: &str) {
        match self.stack.last_mut() {
            Some(Frame::If {
                branch: b, tests, ..
            }) => {
                *b = branch;
                if let Some(test) = test {
                    // Bounded by the input: one test per `elif` written.
                    tests.push(test);
                }
            }
            _ => self
                .cfg
                .diagnostics
                .push(Diagnostic::new(line, format!("'{kw}' outside an 'if'"))),
        }
    }

    fn command(&mut self, words: Vec<Word>, line: usize, brace: bool) {
        let mut rest: &[Word] = &words;
        loop {
            let Some(first) = rest.first() else {
                if brace {
                    let frame = if std::mem::take(&mut self.pending_function) {
                        Frame::Function
                    } else {
                        Frame::Group
                    };
                    self.push(frame, line);
                }
                return;
            };
            let kw = first.keyword().unwrap_or("");
            let test = || rest.iter().skip(1).map(Word::render).collect::<Vec<_>>();
            match kw {
                "then" => {
                    match self.stack.last_mut() {
                        Some(Frame::If { branch, .. }) => {
                            // After `elif … ;` the branch is already Elif.
                            if *branch == Branch::Test {
                                *branch = Branch::Then;
                            }
                        }
                        _ => self
                            .cfg
                            .diagnostics
                            .push(Diagnostic::new(line, "'then' outside an 'if'")),
                    }
                    rest = &rest[1..];
                }
                "else" => {
                    self.set_branch(Branch::Else, None, line, kw);
                    rest = &rest[1..];
                }
                "elif" => {
                    let t = test();
                    self.set_branch(Branch::Elif, Some(t), line, kw);
                    return;
                }
                "fi" => {
                    if matches!(self.stack.last(), Some(Frame::If { .. })) {
                        self.stack.pop();
                    } else {
                        self.cfg
                            .diagnostics
                            .push(Diagnostic::new(line, "'fi' without a matching 'if'"));
                    }
                    rest = &rest[1..];
                }
                "do" => rest = &rest[1..],
                "done" => {
                    if matches!(self.stack.last(), Some(Frame::Loop)) {
                        self.stack.pop();
                    } else {
                        self.cfg
                            .diagnostics
                            .push(Diagnostic::new(line, "'done' without a matching loop"));
                    }
                    rest = &rest[1..];
                }
                "if" => {
                    let t = test();
                    self.ifs += 1;
                    self.push(
                        Frame::If {
                            index: self.ifs - 1,
                            line,
                            tests: vec![t],
                            branch: Branch::Test,
                        },
                        line,
                    );
                    return;
                }
                "while" | "until" | "for" => {
                    self.push(Frame::Loop, line);
                    return;
                }
                "function" => {
                    if brace {
                        self.push(Frame::Function, line);
                    } else {
                        self.pending_function = true;
                    }
                    return;
                }
                "menuentry" | "submenu" => {
                    self.menu_item(rest, line, kw == "submenu", brace);
                    return;
                }
                _ => {
                    self.simple(rest, line);
                    if brace {
                        self.push(Frame::Group, line);
                    }
                    return;
                }
            }
        }
    }

    fn menu_item(&mut self, words: &[Word], line: usize, submenu: bool, brace: bool) {
        let mut title = None;
        let mut id = None;
        let mut i = 1;
        while i < words.len() {
            let w = &words[i];
            let text = w.render();
            let is_id_opt =
                matches!(w.parts.as_slice(), [Part::Var(v)] if v == "menuentry_id_option");
            if is_id_opt || text == "--id" {
                id = words.get(i + 1).map(|w| self.expand_plain(w));
                i += 2;
                continue;
            }
            if let Some(v) = text.strip_prefix("--id=") {
                id = Some(v.to_owned());
            } else if w.bare
                && matches!(
                    text.as_str(),
                    "--class" | "--users" | "--hotkey" | "--source"
                )
            {
                i += 2;
                continue;
            } else if w.bare && text.starts_with("--") {
                // --unrestricted and unknown flags take no argument.
            } else if title.is_none() {
                title = Some(self.expand_plain(w));
            }
            i += 1;
        }
        if !brace {
            self.cfg.diagnostics.push(Diagnostic::new(
                line,
                "menu entry without a '{' body on the same line",
            ));
        }
        let item = MenuItem {
            kind: if submenu {
                MenuKind::Submenu
            } else {
                MenuKind::Entry
            },
            title: title.unwrap_or_default(),
            id,
            line,
            conditional: self.conditional(),
            linux: Vec::new(),
            initrd: Vec::new(),
            children: Vec::new(),
        };
        let path = self.add_item(item);
        if brace {
            self.push(Frame::Menu { path }, line);
        }
    }

    /// Adds an item at the current menu level; returns its path when recorded.
    fn add_item(&mut self, item: MenuItem) -> Option<Vec<usize>> {
        if self.in_function() || self.stack.len() >= MAX_DEPTH {
            return None;
        }
        let parent = if self.in_menu() {
            Some(self.menu_path()?.clone())
        } else {
            None
        };
        let level = match &parent {
            Some(p) => &mut self.item_mut(p)?.children,
            None => &mut self.cfg.menu,
        };
        level.push(item);
        let mut path = parent.unwrap_or_default();
        path.push(level.len() - 1);
        Some(path)
    }

    fn simple(&mut self, words: &[Word], line: usize) {
        let Some(first) = words.first() else { return };
        let name = first.render();
        let args: Vec<String> = words[1..].iter().map(Word::render).collect();
        let top = self.top_level();
        match name.as_str() {
            "set" => {
                for w in &words[1..] {
                    self.assignment(w, line);
                }
            }
            "linux" | "linuxefi" | "linux16" | "initrd" | "initrdefi" | "initrd16" => {
                let cmd = BootCommand {
                    line,
                    command: name.clone(),
                    args,
                };
                if let Some(path) = self.menu_path().cloned() {
                    if let Some(item) = self.item_mut(&path) {
                        if name.starts_with("linux") {
                            item.linux.push(cmd);
                        } else {
                            item.initrd.push(cmd);
                        }
                    }
                }
            }
            "search" | "search.fs_uuid" | "search.fs_label" | "search.file" => {
                self.search(&name, &words[1..], line)
            }
            "configfile" | "source" => {
                let Some(arg) = words.get(1) else {
                    self.cfg.diagnostics.push(Diagnostic::new(
                        line,
                        format!("'{name}' without a file name"),
                    ));
                    return;
                };
                let (expanded, unresolved) = self.expand(arg);
                let target = parse_grub_path(&expanded, &self.cfg.searches, self.env.get("root"));
                self.cfg.configfiles.push(Configfile {
                    line,
                    command: name,
                    raw: arg.render(),
                    target,
                    unresolved,
                    in_menu: self.in_menu(),
                });
            }
            "blscfg" => {
                if top && self.cfg.blscfg_line.is_none() {
                    self.cfg.blscfg_line = Some(line);
                }
                if !self.in_function() {
                    self.add_item(MenuItem {
                        kind: MenuKind::Blscfg,
                        title: String::new(),
                        id: None,
                        line,
                        conditional: self.conditional(),
                        linux: Vec::new(),
                        initrd: Vec::new(),
                        children: Vec::new(),
                    });
                }
            }
            "load_env" => self.cfg.load_env_lines.push(line),
            _ => {
                // `name=value` as a command is an assignment in GRUB script.
                if matches!(first.parts.first(), Some(Part::Lit(l)) if l.contains('=')) {
                    self.assignment(first, line);
                }
            }
        }
    }

    fn assignment(&mut self, w: &Word, line: usize) {
        let Some(Part::Lit(head)) = w.parts.first() else {
            return;
        };
        let Some((name, value_head)) = head.split_once('=') else {
            return;
        };
        if name.is_empty() || !name.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'_') {
            return;
        }
        let mut value_parts = Vec::new();
        if !value_head.is_empty() {
            value_parts.push(Part::Lit(value_head.to_owned()));
        }
        value_parts.extend(w.parts.iter().skip(1).cloned());
        let value_word = Word {
            parts: value_parts,
            bare: false,
        };
        let var_ref = match value_word.parts.as_slice() {
            [Part::Var(v)] => Some(v.clone()),
            _ => None,
        };
        if self.top_level() {
            let (expanded, _) = self.expand(&value_word);
            self.env.insert(name.to_owned(), expanded);
        }
        self.cfg.assignments.push(Assignment {
            line,
            name: name.to_owned(),
            value: value_word.render(),
            var_ref,
            conditions: self.conditions(),
            in_menu: self.in_menu(),
            in_function: self.in_function(),
        });
    }

    fn search(&mut self, name: &str, args: &[Word], line: usize) {
        let mut kind = match name {
            "search.fs_uuid" => SearchKind::FsUuid,
            "search.fs_label" => SearchKind::Label,
            _ => SearchKind::File,
        };
        let mut set_var = None;
        let mut positional = Vec::new();
        for w in args {
            let t = w.render();
            match t.as_str() {
                "--fs-uuid" | "-u" => kind = SearchKind::FsUuid,
                "--label" | "-l" => kind = SearchKind::Label,
                "--file" | "-f" => kind = SearchKind::File,
                "--set" | "-s" => set_var = Some("root".to_owned()),
                _ if t.starts_with("--set=") => set_var = Some(t["--set=".len()..].to_owned()),
                _ if t.starts_with('-') => {}
                _ => positional.push(self.expand_plain(w)),
            }
        }
        let Some(value) = positional.first().cloned() else {
            self.cfg.diagnostics.push(Diagnostic::new(
                line,
                format!("'{name}' without a value to search for"),
            ));
            return;
        };
        if set_var.is_none() {
            set_var = positional.get(1).cloned();
        }
        let in_menu = self.in_menu();
        let index = self.cfg.searches.len();
        self.cfg.searches.push(Search {
            line,
            kind,
            value,
            set_var: set_var.clone(),
            in_menu,
        });
        if self.top_level() {
            if let Some(var) = set_var {
                self.env.insert(var, format!("{MARKER}{index}{MARKER}"));
            }
        }
    }

    /// Expands a word with the top-level environment. Unknown variables stay
    /// as `${name}` and are listed.
    fn expand(&self, w: &Word) -> (String, Vec<String>) {
        let mut s = String::new();
        let mut unresolved = Vec::new();
        for p in &w.parts {
            match p {
                Part::Lit(l) => s.push_str(l),
                Part::Var(v) => match self.env.get(v) {
                    Some(val) => s.push_str(val),
                    None => {
                        s.push_str("${");
                        s.push_str(v);
                        s.push('}');
                        unresolved.push(v.clone());
                    }
                },
            }
        }
        (s, unresolved)
    }

    /// Expands for display: search markers and unknown variables stay as `${name}`.
    fn expand_plain(&self, w: &Word) -> String {
        let mut s = String::new();
        for p in &w.parts {
            match p {
                Part::Lit(l) => s.push_str(l),
                Part::Var(v) => match self.env.get(v) {
                    Some(val) if !val.contains(MARKER) => s.push_str(val),
                    _ => {
                        s.push_str("${");
                        s.push_str(v);
                        s.push('}');
                    }
                },
            }
        }
        s
    }
}

/// Splits an expanded GRUB file name into device and path.
fn parse_grub_path(expanded: &str, searches: &[Search], root: Option<&String>) -> Option<GrubPath> {
    let device_of = |dev: &str| -> GrubDevice {
        let marker = dev
            .strip_prefix(MARKER)
            .and_then(|d| d.strip_suffix(MARKER));
        if let Some(s) = marker
            .and_then(|m| m.parse::<usize>().ok())
            .and_then(|i| searches.get(i))
        {
            return match s.kind {
                SearchKind::FsUuid => GrubDevice::FsUuid {
                    uuid: s.value.clone(),
                },
                SearchKind::Label => GrubDevice::Label {
                    label: s.value.clone(),
                },
                SearchKind::File => GrubDevice::File {
                    file: s.value.clone(),
                },
            };
        }
        GrubDevice::Named {
            name: dev.trim_start_matches('(').trim_end_matches(')').to_owned(),
        }
    };
    if let Some(rest) = expanded.strip_prefix('(') {
        let close = rest.find(')')?;
        let dev = &rest[..close];
        let path = &rest[close + 1..];
        let path = if path.is_empty() {
            "/".to_owned()
        } else {
            path.to_owned()
        };
        if path.contains(MARKER) {
            return None;
        }
        return Some(GrubPath {
            device: device_of(dev),
            path,
        });
    }
    if !expanded.starts_with('/') || expanded.contains(MARKER) {
        return None;
    }
    let device = match root {
        Some(r) => device_of(r),
        None => GrubDevice::Current,
    };
    Some(GrubPath {
        device,
        path: expanded.to_owned(),
    })
}

// ---------------------------------------------------------------------------
// Default entry resolution

/// Where the effective default came from.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, schemars::JsonSchema)]
#[serde(rename_all = "snake_case")]
pub enum DefaultOrigin {
    /// A literal `set default=…` in grub.cfg.
    GrubCfg,
    /// `saved_entry` from grubenv (`GRUB_DEFAULT=saved`).
    SavedEntry,
    /// `next_entry` from grubenv (a one-time boot set by `grub-reboot`).
    NextEntry,
    /// Nothing set: GRUB boots the first entry.
    Implicit,
}

/// The value GRUB will use as `default`.
#[derive(Debug, Clone, Serialize, schemars::JsonSchema)]
pub struct DefaultSetting {
    /// The spec: an index, a title, an id or a `>` path.
    pub value: String,
    /// Where it came from.
    pub origin: DefaultOrigin,
    /// Line of the grub.cfg assignment used, if any.
    pub line: Option<usize>,
    /// Explanations (fallbacks taken).
    pub notes: Vec<String>,
}

impl GrubCfg {
    /// Works out the `default` GRUB will use, given the grubenv variables.
    ///
    /// Top-level assignments are replayed in file order; each one counts
    /// when the `if` branches around it are taken, as far as their tests
    /// can be evaluated offline. An assignment behind a test we cannot
    /// evaluate is assumed not taken (and noted), unless nothing else sets
    /// `default`.
    pub fn effective_default(&self, grubenv: &dyn Fn(&str) -> Option<String>) -> DefaultSetting {
        let mut env: HashMap<String, String> = HashMap::new();
        let mut chosen: Option<(&Assignment, String)> = None;
        let mut unsure: Vec<&Assignment> = Vec::new();
        // A test is evaluated once, when the first assignment inside its
        // `if` is replayed: later assignments in the branch (`set
        // next_entry=`) must not change which branch was taken.
        let mut tests_seen: HashMap<(usize, usize), Option<bool>> = HashMap::new();
        for a in self
            .assignments
            .iter()
            .filter(|a| !a.in_menu && !a.in_function)
        {
            let lookup = |name: &str| lookup_var(name, &env, grubenv);
            match eval_conditions(&a.conditions, &lookup, &mut tests_seen) {
                Some(false) => {}
                Some(true) => {
                    let value = expand_value(&a.value, &lookup);
                    if a.name == "default" {
                        chosen = Some((a, value.clone()));
                    }
                    env.insert(a.name.clone(), value);
                }
                None => {
                    if a.name == "default" {
                        unsure.push(a);
                    }
                }
            }
        }
        let mut notes: Vec<String> = unsure
            .iter()
            .map(|a| {
                let test = a.conditions.last().map(|c| c.test.clone()).unwrap_or_default();
                format!(
                    "line {} sets default={} only when `{test}`, which cannot be evaluated offline; assumed not taken",
                    a.line, a.value
                )
            })
            .collect();
        let (a, value) = match (chosen, unsure.last()) {
            (Some(c), _) => c,
            (None, Some(a)) => {
                notes.push(format!("no unconditional default; using line {}", a.line));
                let lookup = |name: &str| lookup_var(name, &env, grubenv);
                (*a, expand_value(&a.value, &lookup))
            }
            (None, None) => {
                notes.push("grub.cfg does not set default; GRUB boots the first entry".to_owned());
                return DefaultSetting {
                    value: "0".to_owned(),
                    origin: DefaultOrigin::Implicit,
                    line: None,
                    notes,
                };
            }
        };
        let origin = match a.var_ref.as_deref() {
            Some("saved_entry") => DefaultOrigin::SavedEntry,
            Some("next_entry") => {
                notes.push(
                    "next_entry is set in grubenv: GRUB boots it once, then returns to the default"
                        .to_owned(),
                );
                DefaultOrigin::NextEntry
            }
            _ => DefaultOrigin::GrubCfg,
        };
        let value = if value.is_empty() {
            let what = a
                .var_ref
                .as_deref()
                .map(|v| format!("{v} is empty"))
                .unwrap_or_else(|| "default is empty".to_owned());
            notes.push(format!("{what}; GRUB boots the first entry"));
            "0".to_owned()
        } else {
            value
        };
        DefaultSetting {
            value,
            origin,
            line: Some(a.line),
            notes,
        }
    }

    /// The menu as GRUB shows it: `blscfg` markers replaced by `bls`
    /// (already in blscfg order).
    pub fn menu_with_bls(&self, bls: &[MenuItem]) -> Vec<MenuItem> {
        let mut out = Vec::new();
        for item in &self.menu {
            if item.kind == MenuKind::Blscfg {
                out.extend(bls.iter().cloned());
            } else {
                out.push(item.clone());
            }
        }
        out
    }
}

/// Variables GRUB sets itself at boot: their values are unknown offline.
const RUNTIME_VARS: &[&str] = &[
    "prefix",
    "root",
    "cmdpath",
    "config_directory",
    "config_file",
    "chosen",
    "lang",
    "locale_dir",
    "net_default_server",
    "pxe_default_server",
];

/// A variable's value at some point of the file: set earlier in grub.cfg,
/// else from grubenv, else what GRUB provides. `None` when only the
/// running firmware knows (`$grub_platform`, `$prefix`, …).
fn lookup_var(
    name: &str,
    env: &HashMap<String, String>,
    grubenv: &dyn Fn(&str) -> Option<String>,
) -> Option<String> {
    if let Some(v) = env.get(name) {
        return Some(v.clone());
    }
    if let Some(v) = grubenv(name) {
        return Some(v);
    }
    if name.starts_with("feature_") {
        // Every GRUB 2 since 2.00 sets its feature_* variables to "y".
        return Some("y".to_owned());
    }
    if name.starts_with("grub_")
        || RUNTIME_VARS.contains(&name)
        || name.bytes().all(|b| b.is_ascii_digit())
        || name == "?"
    {
        return None;
    }
    // load_env has loaded every grubenv variable: anything else is unset.
    Some(String::new())
}

/// Expands `${name}` in a rendered word; `None` when a variable is unknown.
fn expand_strict(word: &str, lookup: &dyn Fn(&str) -> Option<String>) -> Option<String> {
    let mut out = String::new();
    let mut rest = word;
    while let Some(i) = rest.find("${") {
        out.push_str(&rest[..i]);
        let after = &rest[i + 2..];
        let Some(close) = after.find('}') else {
            out.push_str(&rest[i..]);
            return Some(out);
        };
        out.push_str(&lookup(&after[..close])?);
        rest = &after[close + 1..];
    }
    out.push_str(rest);
    Some(out)
}

/// Expands a value for the replay: unknown variables stay as written.
fn expand_value(value: &str, lookup: &dyn Fn(&str) -> Option<String>) -> String {
    let mut out = String::new();
    let mut rest = value;
    while let Some(i) = rest.find("${") {
        out.push_str(&rest[..i]);
        let after = &rest[i + 2..];
        let Some(close) = after.find('}') else {
            out.push_str(&rest[i..]);
            return out;
        };
        match lookup(&after[..close]) {
            Some(v) => out.push_str(&v),
            None => out.push_str(&rest[i..i + 3 + close]),
        }
        rest = &after[close + 1..];
    }
    out.push_str(rest);
    out
}

fn all3(values: impl IntoIterator<Item = Option<bool>>) -> Option<bool> {
    let mut unknown = false;
    for v in values {
        match v {
            Some(false) => return Some(false),
            None => unknown = true,
            Some(true) => {}
        }
    }
    if unknown {
        None
    } else {
        Some(true)
    }
}

fn any3(values: impl IntoIterator<Item = Option<bool>>) -> Option<bool> {
    let mut unknown = false;
    for v in values {
        match v {
            Some(true) => return Some(true),
            None => unknown = true,
            Some(false) => {}
        }
    }
    if unknown {
        None
    } else {
        Some(false)
    }
}

/// Whether the branches `conditions` describe are taken. `seen` caches each
/// test's result by (`if` index, test index).
fn eval_conditions(
    conditions: &[Condition],
    lookup: &dyn Fn(&str) -> Option<String>,
    seen: &mut HashMap<(usize, usize), Option<bool>>,
) -> Option<bool> {
    all3(conditions.iter().map(|c| {
        let results: Vec<Option<bool>> = c
            .tests
            .iter()
            .enumerate()
            .map(|(i, t)| {
                *seen
                    .entry((c.if_index, i))
                    .or_insert_with(|| eval_test(t, lookup))
            })
            .collect();
        match c.branch {
            Branch::Then => results.first().copied().flatten(),
            Branch::Elif => {
                let (last, earlier) = results.split_last()?;
                all3(
                    earlier
                        .iter()
                        .map(|r| r.map(|b| !b))
                        .chain(std::iter::once(*last)),
                )
            }
            Branch::Else => all3(results.iter().map(|r| r.map(|b| !b))),
            Branch::Test => None,
        }
    }))
}

/// Evaluates a `[ … ]` / `test …` command; `None` for anything else or
/// anything that depends on the running system.
pub fn eval_test(words: &[String], lookup: &dyn Fn(&str) -> Option<String>) -> Option<bool> {
    let args: Vec<String> = words
        .iter()
        .map(|w| expand_strict(w, lookup))
        .collect::<Option<_>>()?;
    let inner: &[String] = match args.first().map(String::as_str) {
        Some("[") if args.last().map(String::as_str) == Some("]") && args.len() >= 2 => {
            &args[1..args.len() - 1]
        }
        Some("test") => &args[1..],
        _ => return None,
    };
    any3(
        inner
            .split(|a| a == "-o")
            .map(|alt| all3(alt.split(|a| a == "-a").map(eval_primary))),
    )
}

fn eval_primary(a: &[String]) -> Option<bool> {
    if let Some((first, rest)) = a.split_first() {
        if first == "!" {
            return eval_primary(rest).map(|b| !b);
        }
    }
    let s = |i: usize| a.get(i).map(String::as_str).unwrap_or("");
    let num = |i: usize| s(i).trim().parse::<i64>().ok();
    match a.len() {
        0 => Some(false),
        1 => Some(!s(0).is_empty()),
        2 => match s(0) {
            "-n" => Some(!s(1).is_empty()),
            "-z" => Some(s(1).is_empty()),
            _ => None,
        },
        3 => match s(1) {
            "=" | "==" => Some(s(0) == s(2)),
            "!=" => Some(s(0) != s(2)),
            "-eq" => Some(num(0)? == num(2)?),
            "-ne" => Some(num(0)? != num(2)?),
            "-lt" => Some(num(0)? < num(2)?),
            "-le" => Some(num(0)? <= num(2)?),
            "-gt" => Some(num(0)? > num(2)?),
            "-ge" => Some(num(0)? >= num(2)?),
            _ => None,
        },
        _ => None,
    }
}

/// Where a default spec leads in a menu.
#[derive(Debug, Clone, Serialize, schemars::JsonSchema)]
pub struct MenuChoice {
    /// Indices from the top-level menu down to the chosen entry.
    pub path: Vec<usize>,
    /// Titles along the path.
    pub titles: Vec<String>,
    /// Fallbacks GRUB takes (unknown entry → first entry, …).
    pub notes: Vec<String>,
}

/// Splits a default spec on single `>`; `>>` is a literal `>`.
pub fn split_spec(spec: &str) -> Vec<String> {
    let mut parts = vec![String::new()];
    let mut chars = spec.chars().peekable();
    while let Some(c) = chars.next() {
        if c == '>' {
            if chars.peek() == Some(&'>') {
                chars.next();
                if let Some(last) = parts.last_mut() {
                    last.push('>');
                }
            } else {
                parts.push(String::new());
            }
        } else if let Some(last) = parts.last_mut() {
            last.push(c);
        }
    }
    parts
}

/// Parses a number the way `grub_strtoul(s, 0, 0)` does: leading blanks,
/// `0x` hex, leading `0` octal, trailing garbage ignored. `None` when no
/// digits.
fn grub_number(s: &str) -> Option<u64> {
    let s = s.trim_start();
    let (digits, radix) = if let Some(h) = s.strip_prefix("0x").or_else(|| s.strip_prefix("0X")) {
        (h, 16)
    } else if s.starts_with('0') {
        (s, 8)
    } else {
        (s, 10)
    };
    let end = digits
        .find(|c: char| !c.is_digit(radix))
        .unwrap_or(digits.len());
    if end == 0 {
        return None;
    }
    // Saturate: GRUB reports overflow, which also ends in the first entry.
    Some(u64::from_str_radix(&digits[..end], radix).unwrap_or(u64::MAX))
}

/// How a GRUB build matches a default spec against the menu.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, schemars::JsonSchema)]
#[serde(rename_all = "snake_case")]
pub enum Flavor {
    /// Upstream GRUB (Debian, Ubuntu, SUSE): anything starting with digits
    /// is an index (`grub_strtoul`), otherwise an id or title.
    Upstream,
    /// Red Hat's GRUB: id first, then title, then a whole-number index, so
    /// BLS ids starting with a digit (machine ids) still match.
    RedHat,
}

/// Finds the entry a default spec selects, following upstream GRUB's rules:
/// a number is an index; otherwise the first item whose id or title
/// matches; `>` descends into submenus; anything not found falls back to the
/// first entry.
pub fn choose(menu: &[MenuItem], spec: &str) -> MenuChoice {
    choose_with(menu, spec, Flavor::Upstream)
}

fn find_index(level: &[MenuItem], wanted: &str, flavor: Flavor) -> Option<usize> {
    let by_name = || {
        level
            .iter()
            .position(|e| e.id.as_deref() == Some(wanted))
            .or_else(|| level.iter().position(|e| e.title == wanted))
    };
    let as_index = |n: u64| usize::try_from(n).ok().filter(|&i| i < level.len());
    match flavor {
        Flavor::Upstream => match grub_number(wanted) {
            Some(n) => as_index(n),
            None => level
                .iter()
                .position(|e| e.id.as_deref() == Some(wanted) || e.title == wanted),
        },
        Flavor::RedHat => by_name().or_else(|| {
            let t = wanted.trim();
            if !t.is_empty() && t.bytes().all(|b| b.is_ascii_digit()) {
                grub_number(t).and_then(as_index)
            } else {
                None
            }
        }),
    }
}

/// [`choose`] for a given GRUB flavour.
pub fn choose_with(menu: &[MenuItem], spec: &str, flavor: Flavor) -> MenuChoice {
    let mut parts = split_spec(spec);
    let mut notes = Vec::new();
    if parts.len() > MAX_SPEC_PARTS {
        parts.truncate(MAX_SPEC_PARTS);
        notes.push(format!(
            "default spec has more than {MAX_SPEC_PARTS} levels; the rest is ignored"
        ));
    }
    let mut path = Vec::new();
    let mut titles = Vec::new();
    let mut level = menu;
    let mut parts = parts.into_iter();
    let mut part = parts.next();
    loop {
        if level.is_empty() {
            notes.push("the menu is empty".to_owned());
            break;
        }
        let wanted = part.take().unwrap_or_default();
        let index = match find_index(level, &wanted, flavor) {
            Some(i) => i,
            None => {
                notes.push(format!(
                    "no menu entry matches {wanted:?}; GRUB boots the first entry of this menu"
                ));
                0
            }
        };
        // OK: index < level.len() (checked above, or 0 with level non-empty).
        let item = &level[index];
        path.push(index);
        titles.push(item.title.clone());
        if item.kind == MenuKind::Submenu {
            part = parts.next();
            if part.is_none() {
                notes.push(format!(
                    "default selects the submenu {:?}; GRUB opens it and boots its first entry",
                    item.title
                ));
            }
            level = &item.children;
            continue;
        }
        if parts.next().is_some() {
            notes.push(format!(
                "{:?} is not a submenu; the rest of the default spec is ignored",
                item.title
            ));
        }
        break;
    }
    MenuChoice {
        path,
        titles,
        notes,
    }
}

/// The item at `path`, if it exists.
pub fn item_at<'a>(menu: &'a [MenuItem], path: &[usize]) -> Option<&'a MenuItem> {
    let (first, rest) = path.split_first()?;
    let mut item = menu.get(*first)?;
    for &i in rest {
        item = item.children.get(i)?;
    }
    Some(item)
}

/// Fuzz entry point: parses, resolves the default and configfile targets.
#[doc(hidden)]
pub fn fuzz_grub_cfg(data: &[u8]) {
    let cfg = GrubCfg::parse(data);
    assert_eq!(cfg.render(), data);
    let d = cfg.effective_default(&|k| {
        if k == "saved_entry" {
            Some("1>0".to_owned())
        } else {
            None
        }
    });
    let menu = cfg.menu_with_bls(&[]);
    for flavor in [Flavor::Upstream, Flavor::RedHat] {
        let c = choose_with(&menu, &d.value, flavor);
        if !menu.is_empty() {
            assert!(item_at(&menu, &c.path).is_some());
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Shaped like `update-grub` output on Debian 12 with a separate /boot.
    pub(crate) const DEBIAN: &str = r#"#
# DO NOT EDIT THIS FILE
#
# It is automatically generated by grub-mkconfig using templates
# from /etc/grub.d and settings from /etc/default/grub
#

### BEGIN /etc/grub.d/00_header ###
if [ -s $prefix/grubenv ]; then
  set have_grubenv=true
  load_env
fi
if [ "${next_entry}" ] ; then
   set default="${next_entry}"
   set next_entry=
   save_env next_entry
   set boot_once=true
else
   set default="1>2"
fi

if [ x"${feature_menuentry_id}" = xy ]; then
  menuentry_id_option="--id"
else
  menuentry_id_option=""
fi

export menuentry_id_option

function load_video {
  if [ x$feature_all_video_module = xy ]; then
    insmod all_video
  else
    insmod efi_gop
  fi
}

terminal_output gfxterm
set timeout=5
### END /etc/grub.d/00_header ###

### BEGIN /etc/grub.d/10_linux ###
function gfxmode {
	set gfxpayload="${1}"
}
set linux_gfx_mode=
export linux_gfx_mode
menuentry 'Debian GNU/Linux' --class debian --class gnu-linux --class gnu --class os $menuentry_id_option 'gnulinux-simple-0b5a6a43-1c6e-4b55-9a8c-2c4f0a6d1e11' {
	load_video
	insmod gzio
	if [ x$grub_platform = xxen ]; then insmod xzio; insmod lzopio; fi
	insmod part_gpt
	insmod ext2
	search --no-floppy --fs-uuid --set=root --hint-bios=hd0,gpt2 --hint-efi=hd0,gpt2 d1d2d3d4-0000-4000-8000-000000000002
	echo	'Loading Linux 6.1.0-28-amd64 ...'
	linux	/vmlinuz-6.1.0-28-amd64 root=UUID=0b5a6a43-1c6e-4b55-9a8c-2c4f0a6d1e11 ro  quiet
	echo	'Loading initial ramdisk ...'
	initrd	/initrd.img-6.1.0-28-amd64
}
submenu 'Advanced options for Debian GNU/Linux' $menuentry_id_option 'gnulinux-advanced-0b5a6a43-1c6e-4b55-9a8c-2c4f0a6d1e11' {
	menuentry 'Debian GNU/Linux, with Linux 6.1.0-28-amd64' --class debian --class gnu-linux --class gnu --class os $menuentry_id_option 'gnulinux-6.1.0-28-amd64-advanced-0b5a6a43-1c6e-4b55-9a8c-2c4f0a6d1e11' {
		load_video
		search --no-floppy --fs-uuid --set=root d1d2d3d4-0000-4000-8000-000000000002
		linux	/vmlinuz-6.1.0-28-amd64 root=UUID=0b5a6a43-1c6e-4b55-9a8c-2c4f0a6d1e11 ro  quiet
		initrd	/initrd.img-6.1.0-28-amd64
	}
	menuentry 'Debian GNU/Linux, with Linux 6.1.0-28-amd64 (recovery mode)' --class debian --class gnu-linux --class gnu --class os $menuentry_id_option 'gnulinux-6.1.0-28-amd64-recovery-0b5a6a43-1c6e-4b55-9a8c-2c4f0a6d1e11' {
		linux	/vmlinuz-6.1.0-28-amd64 root=UUID=0b5a6a43-1c6e-4b55-9a8c-2c4f0a6d1e11 ro single
		initrd	/initrd.img-6.1.0-28-amd64
	}
	menuentry 'Debian GNU/Linux, with Linux 6.1.0-9-amd64' --class debian --class gnu-linux --class gnu --class os $menuentry_id_option 'gnulinux-6.1.0-9-amd64-advanced-0b5a6a43-1c6e-4b55-9a8c-2c4f0a6d1e11' {
		linux	/vmlinuz-6.1.0-9-amd64 root=UUID=0b5a6a43-1c6e-4b55-9a8c-2c4f0a6d1e11 ro  quiet
		initrd	/initrd.img-6.1.0-9-amd64
	}
}

### END /etc/grub.d/10_linux ###

### BEGIN /etc/grub.d/30_uefi-firmware ###
if [ "$grub_platform" = "efi" ]; then
	fwsetup --is-supported
	if [ "$?" = 0 ]; then
		menuentry 'UEFI Firmware Settings' $menuentry_id_option 'uefi-firmware' {
			fwsetup
		}
	fi
fi
### END /etc/grub.d/30_uefi-firmware ###
"#;

    /// RHEL 9 grub.cfg with BLS.
    pub(crate) const RHEL: &str = r#"set pager=1

if [ -f ${config_directory}/grubenv ]; then
  load_env -f ${config_directory}/grubenv
elif [ -s $prefix/grubenv ]; then
  load_env
fi
if [ "${next_entry}" ] ; then
   set default="${next_entry}"
   set next_entry=
   save_env next_entry
   set boot_once=true
else
   set default="${saved_entry}"
fi
### BEGIN /etc/grub.d/10_linux ###
insmod part_gpt
insmod xfs
set root='hd0,gpt2'
if [ x$feature_platform_search_hint = xy ]; then
  search --no-floppy --fs-uuid --set=root --hint-bios=hd0,gpt2 --hint-efi=hd0,gpt2 --hint-baremetal=ahci0,gpt2  1b2c3d4e-aaaa-4bbb-8ccc-ddddeeeeffff
else
  search --no-floppy --fs-uuid --set=root 1b2c3d4e-aaaa-4bbb-8ccc-ddddeeeeffff
fi
insmod blscfg
blscfg
### END /etc/grub.d/10_linux ###
"#;

    #[test]
    fn debian_tree_and_default() {
        let cfg = GrubCfg::parse(DEBIAN.as_bytes());
        assert_eq!(cfg.render(), DEBIAN.as_bytes());
        assert!(cfg.diagnostics.is_empty(), "{:?}", cfg.diagnostics);
        assert_eq!(cfg.menu.len(), 3);
        let simple = &cfg.menu[0];
        assert_eq!(simple.title, "Debian GNU/Linux");
        assert_eq!(
            simple.id.as_deref(),
            Some("gnulinux-simple-0b5a6a43-1c6e-4b55-9a8c-2c4f0a6d1e11")
        );
        assert_eq!(simple.linux[0].path(), Some("/vmlinuz-6.1.0-28-amd64"));
        assert_eq!(simple.initrd[0].path(), Some("/initrd.img-6.1.0-28-amd64"));
        assert!(!simple.conditional);
        let adv = &cfg.menu[1];
        assert_eq!(adv.kind, MenuKind::Submenu);
        assert_eq!(adv.children.len(), 3);
        assert_eq!(
            adv.children[2].title,
            "Debian GNU/Linux, with Linux 6.1.0-9-amd64"
        );
        assert!(cfg.menu[2].conditional);
        assert_eq!(cfg.load_env_lines, vec![11]);
        // Functions define no menu entries; `load_video` bodies are skipped.
        let defaults: Vec<_> = cfg.default_assignments().collect();
        assert_eq!(defaults.len(), 2);
        assert_eq!(defaults[0].var_ref.as_deref(), Some("next_entry"));
        assert_eq!(defaults[0].conditions[0].branch, Branch::Then);
        assert_eq!(defaults[1].value, "1>2");
        assert_eq!(defaults[1].conditions[0].branch, Branch::Else);
        assert_eq!(
            defaults[1].conditions[0].tests,
            vec![vec!["[", "${next_entry}", "]"]]
        );

        let d = cfg.effective_default(&|_| None);
        assert_eq!(d.value, "1>2");
        assert_eq!(d.origin, DefaultOrigin::GrubCfg);
        let c = choose(&cfg.menu, &d.value);
        assert_eq!(c.path, vec![1, 2]);
        assert!(c.notes.is_empty());
        let e = item_at(&cfg.menu, &c.path).unwrap();
        assert_eq!(e.linux[0].path(), Some("/vmlinuz-6.1.0-9-amd64"));

        // grub-reboot wins once.
        let d = cfg.effective_default(&|k| {
            (k == "next_entry")
                .then(|| "gnulinux-simple-0b5a6a43-1c6e-4b55-9a8c-2c4f0a6d1e11".into())
        });
        assert_eq!(d.origin, DefaultOrigin::NextEntry);
        assert_eq!(choose(&cfg.menu, &d.value).path, vec![0]);
    }

    #[test]
    fn choose_by_title_id_and_fallback() {
        let cfg = GrubCfg::parse(DEBIAN.as_bytes());
        let by_id = "gnulinux-advanced-0b5a6a43-1c6e-4b55-9a8c-2c4f0a6d1e11>gnulinux-6.1.0-28-amd64-recovery-0b5a6a43-1c6e-4b55-9a8c-2c4f0a6d1e11";
        assert_eq!(choose(&cfg.menu, by_id).path, vec![1, 1]);
        let by_title =
            "Advanced options for Debian GNU/Linux>Debian GNU/Linux, with Linux 6.1.0-9-amd64";
        assert_eq!(choose(&cfg.menu, by_title).path, vec![1, 2]);
        let missing = choose(&cfg.menu, "no-such-entry");
        assert_eq!(missing.path, vec![0]);
        assert_eq!(missing.notes.len(), 1);
        assert_eq!(choose(&cfg.menu, "7").path, vec![0]);
        assert_eq!(choose(&cfg.menu, "1").path, vec![1, 0]);
        assert_eq!(choose(&cfg.menu, "0x1>0x2").path, vec![1, 2]);
        assert_eq!(split_spec("a>>b>c"), vec!["a>b", "c"]);
    }

    #[test]
    fn rhel_bls_and_saved_entry() {
        let cfg = GrubCfg::parse(RHEL.as_bytes());
        assert!(cfg.diagnostics.is_empty(), "{:?}", cfg.diagnostics);
        assert_eq!(cfg.blscfg_line, Some(26));
        assert_eq!(cfg.menu.len(), 1);
        assert_eq!(cfg.menu[0].kind, MenuKind::Blscfg);
        assert_eq!(cfg.searches.len(), 2);
        assert_eq!(cfg.searches[0].kind, SearchKind::FsUuid);
        assert_eq!(
            cfg.searches[0].value,
            "1b2c3d4e-aaaa-4bbb-8ccc-ddddeeeeffff"
        );
        assert_eq!(cfg.searches[0].set_var.as_deref(), Some("root"));
        let d = cfg.effective_default(&|k| {
            (k == "saved_entry").then(|| "abc-5.14.0-70.el9.x86_64".into())
        });
        assert_eq!(d.origin, DefaultOrigin::SavedEntry);
        assert_eq!(d.value, "abc-5.14.0-70.el9.x86_64");
        let bls = |id: &str| MenuItem {
            kind: MenuKind::Entry,
            title: format!("t {id}"),
            id: Some(id.into()),
            line: 0,
            conditional: false,
            linux: vec![],
            initrd: vec![],
            children: vec![],
        };
        let menu = cfg.menu_with_bls(&[
            bls("abc-5.14.0-362.el9.x86_64"),
            bls("abc-5.14.0-70.el9.x86_64"),
        ]);
        // Upstream GRUB reads a leading digit as an index; Red Hat's matches the id first.
        assert_eq!(choose_with(&menu, &d.value, Flavor::RedHat).path, vec![1]);
        let digits = cfg.menu_with_bls(&[
            bls("0123-5.14.0-362.el9.x86_64"),
            bls("0123-5.14.0-70.el9.x86_64"),
        ]);
        assert_eq!(
            choose_with(&digits, "0123-5.14.0-70.el9.x86_64", Flavor::RedHat).path,
            vec![1]
        );
        assert_eq!(
            choose_with(&digits, "0123-5.14.0-70.el9.x86_64", Flavor::Upstream).path,
            vec![0]
        );
        assert_eq!(choose_with(&digits, "1", Flavor::RedHat).path, vec![1]);
        let unset = cfg.effective_default(&|_| None);
        assert_eq!(unset.value, "0");
        assert_eq!(unset.notes.len(), 1);
    }

    #[test]
    fn efi_stubs() {
        let debian = "search.fs_uuid 0b5a6a43-1c6e-4b55-9a8c-2c4f0a6d1e11 root hd0,gpt1 \nset prefix=($root)'/boot/grub'\nconfigfile $prefix/grub.cfg\n";
        let cfg = GrubCfg::parse(debian.as_bytes());
        assert_eq!(cfg.configfiles.len(), 1);
        assert_eq!(
            cfg.configfiles[0].target,
            Some(GrubPath {
                device: GrubDevice::FsUuid {
                    uuid: "0b5a6a43-1c6e-4b55-9a8c-2c4f0a6d1e11".into()
                },
                path: "/boot/grub/grub.cfg".into()
            })
        );
        assert_eq!(cfg.configfiles[0].raw, "${prefix}/grub.cfg");
        let rhel = "search --no-floppy --root-dev-only --fs-uuid --set=dev 1b2c3d4e-aaaa-4bbb-8ccc-ddddeeeeffff\nset prefix=($dev)/grub2\n\nexport $prefix\nconfigfile $prefix/grub.cfg\n";
        let cfg = GrubCfg::parse(rhel.as_bytes());
        assert_eq!(
            cfg.configfiles[0].target,
            Some(GrubPath {
                device: GrubDevice::FsUuid {
                    uuid: "1b2c3d4e-aaaa-4bbb-8ccc-ddddeeeeffff".into()
                },
                path: "/grub2/grub.cfg".into()
            })
        );
        let plain = GrubCfg::parse(b"configfile /boot/grub/grub.cfg");
        assert_eq!(
            plain.configfiles[0].target.as_ref().unwrap().device,
            GrubDevice::Current
        );
        let named = GrubCfg::parse(b"configfile (hd0,gpt2)/grub/grub.cfg");
        assert_eq!(
            named.configfiles[0].target.as_ref().unwrap().device,
            GrubDevice::Named {
                name: "hd0,gpt2".into()
            }
        );
        let unknown = GrubCfg::parse(b"configfile ${config_directory}/x.cfg");
        assert_eq!(unknown.configfiles[0].unresolved, vec!["config_directory"]);
        assert!(unknown.configfiles[0].target.is_none());
    }

    #[test]
    fn odd_syntax_never_fails() {
        let odd = "menuentry \"quoted \\\"title\\\"\" --id=x1 {\n linux /a \\\n  b\n}\n}\nfi\nif [ a ]\nthen\nmenuentry 'in if' {\n}\nelse\nfi\nmenuentry 'unterminated {\n";
        let cfg = GrubCfg::parse(odd.as_bytes());
        assert_eq!(cfg.menu[0].title, "quoted \"title\"");
        assert_eq!(cfg.menu[0].id.as_deref(), Some("x1"));
        assert_eq!(cfg.menu[0].linux[0].args, vec!["/a", "b"]);
        assert_eq!(cfg.menu[1].title, "in if");
        assert!(cfg.menu[1].conditional);
        assert!(cfg.diagnostics.len() >= 3, "{:?}", cfg.diagnostics);
        let deep = "{".repeat(10_000) + &"}".repeat(10_000);
        let cfg = GrubCfg::parse(deep.as_bytes());
        assert_eq!(cfg.diagnostics.len(), 1, "{:?}", cfg.diagnostics);
        let deep_menus = "submenu x {\n".repeat(5_000);
        let cfg = GrubCfg::parse(deep_menus.as_bytes());
        assert!(!cfg.menu.is_empty());
        let c = choose(&cfg.menu, &"0>".repeat(1000));
        assert!(item_at(&cfg.menu, &c.path).is_some());
    }

    #[test]
    fn test_evaluation() {
        let env = |k: &str| -> Option<String> {
            match k {
                "a" => Some("1".into()),
                "e" => Some(String::new()),
                "grub_platform" => None,
                _ => Some(String::new()),
            }
        };
        let t = |w: &[&str]| eval_test(&w.iter().map(|s| s.to_string()).collect::<Vec<_>>(), &env);
        assert_eq!(t(&["[", "${a}", "]"]), Some(true));
        assert_eq!(t(&["[", "${e}", "]"]), Some(false));
        assert_eq!(
            t(&["[", "-n", "${a}", "-a", "${a}", "=", "1", "]"]),
            Some(true)
        );
        assert_eq!(
            t(&["[", "-z", "${a}", "-o", "x${a}", "=", "x1", "]"]),
            Some(true)
        );
        assert_eq!(t(&["[", "!", "${a}", "!=", "1", "]"]), Some(true));
        assert_eq!(t(&["[", "${a}", "-gt", "0", "]"]), Some(true));
        assert_eq!(t(&["[", "${grub_platform}", "=", "efi", "]"]), None);
        assert_eq!(t(&["[", "-f", "/x", "]"]), None);
        assert_eq!(t(&["[", "-f", "/x", "-a", "${e}", "]"]), Some(false));
        assert_eq!(t(&["keystatus", "--shift"]), None);
        assert_eq!(t(&["[", "]"]), Some(false));
        assert_eq!(t(&["[", "x"]), None);
    }

    /// RHEL 9's fallback counting sets default=1 only when a boot counter
    /// ran out; with no counter in grubenv, saved_entry wins.
    #[test]
    fn conditional_defaults_are_evaluated() {
        let cfg = format!(
            "{RHEL}\nif [ -n \"${{boot_counter}}\" -a \"${{boot_success}}\" = \"0\" ]; then\n  if  [ \"${{boot_counter}}\" = \"0\" -o \"${{boot_counter}}\" = \"-1\" ]; then\n    set default=1\n  else\n    decrement boot_counter\n  fi\nfi\nif [ \"$grub_platform\" = efi ]; then set default=7; fi\n"
        );
        let cfg = GrubCfg::parse(cfg.as_bytes());
        let saved = |k: &str| (k == "saved_entry").then(|| "abc-1".to_owned());
        let d = cfg.effective_default(&saved);
        assert_eq!(d.value, "abc-1");
        assert_eq!(d.origin, DefaultOrigin::SavedEntry);
        assert_eq!(d.notes.len(), 1, "{:?}", d.notes);
        assert!(d.notes[0].contains("default=7"));
        let counted = |k: &str| match k {
            "saved_entry" => Some("abc-1".to_owned()),
            "boot_counter" => Some("0".to_owned()),
            "boot_success" => Some("0".to_owned()),
            _ => None,
        };
        let d = cfg.effective_default(&counted);
        assert_eq!(d.value, "1");
        assert_eq!(d.origin, DefaultOrigin::GrubCfg);
        // prev_saved_entry (grub-reboot on RHEL) overrides saved_entry first.
        let with_prev = GrubCfg::parse(
            format!("if [ \"${{prev_saved_entry}}\" ]; then\n  set saved_entry=\"${{prev_saved_entry}}\"\nfi\n{RHEL}").as_bytes(),
        );
        let prev = |k: &str| match k {
            "saved_entry" => Some("once".to_owned()),
            "prev_saved_entry" => Some("abc-1".to_owned()),
            _ => None,
        };
        assert_eq!(with_prev.effective_default(&prev).value, "abc-1");
    }

    #[test]
    fn mutations_never_panic() {
        crate::text::mutate_and_run(DEBIAN.as_bytes(), 2500, 0x96b, fuzz_grub_cfg);
        crate::text::mutate_and_run(RHEL.as_bytes(), 1500, 0x4e1, fuzz_grub_cfg);
    }
}
