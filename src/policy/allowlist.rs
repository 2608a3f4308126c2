//! Tool names and the allowlist that decides which tools sandboxed code may call.
//!
//! # Names
//! `mcp__<server>__<tool>`, ASCII only, at most [`MAX_LEN`] bytes, case-sensitive.
//! - `server` is `[A-Za-z0-9_-]+` and ends at the first `__` after `mcp__`, so it never
//!   contains `__`.
//! - `tool` is `[A-Za-z0-9_.-]+`, everything after that `__`; it may contain `__`:
//!   `mcp__a__b__c` is server `a`, tool `b__c`.
//! - Neither part may start or end with `_`, so `mcp___a__b` and `mcp__a___b` are rejected
//!   rather than guessed at.
//!
//! Anything else is rejected: Unicode look-alikes, zero-width characters, NUL, newline,
//! whitespace, `/`, glob characters.
//!
//! # Patterns
//! `mcp__<server-glob>__<tool-glob>`, checked and split exactly like names. Each glob is
//! matched against its own part of the parsed name, so no pattern matches across `__`.
//! A glob may use its part's characters plus `*` (any run, possibly empty), `?` (one
//! character) and classes `[abc]`, `[a-z]`, `[!abc]`. Not supported, to keep patterns
//! obvious: `**`, `{a,b}`, `\` escapes. A pattern needs both parts: `mcp__git*` and
//! `mcp__*` are invalid; every tool of every server is `mcp__*__*`. At most
//! [`MAX_PATTERNS`] patterns per list, [`MAX_LEN`] bytes each.
//!
//! # Effective rule
//! A tool is allowed iff its name parses, it matches some requested pattern
//! (`allowedTools`), and there is no operator policy or it matches some operator pattern.
//!
//! Route calls with the [`ToolName`] returned by [`parse_tool_name`], so the proxy calls
//! exactly the server and tool that were checked.

use std::fmt;

use globset::{GlobBuilder, GlobMatcher};

use super::shown::{escaped_cut, show_char};

/// Longest tool name or pattern accepted, in bytes.
pub const MAX_LEN: usize = 256;
/// Most patterns accepted in one list (`allowedTools` or the operator policy).
pub const MAX_PATTERNS: usize = 256;

const PREFIX: &str = "mcp__";
const SEP: &str = "__";
/// How much of a rejected pattern an error message shows.
const SHOWN_CHARS: usize = 80;

/// A parsed tool name: `mcp__git__git_log` is `{ server: "git", tool: "git_log" }`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ToolName<'a> {
    /// The downstream server: `[A-Za-z0-9_-]+`, never containing `__`.
    pub server: &'a str,
    /// The tool on that server: `[A-Za-z0-9_.-]+`, may contain `__`.
    pub tool: &'a str,
}

/// Which part of a name or pattern a [`Flaw`] is in.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Part {
    /// Between `mcp__` and the first `__` after it.
    Server,
    /// After that `__`.
    Tool,
}

impl fmt::Display for Part {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Part::Server => "server",
            Part::Tool => "tool",
        })
    }
}

/// What is wrong with a tool name or a pattern. Byte offsets count from the start.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum Flaw {
    /// Longer than [`MAX_LEN`] bytes.
    #[error("{len} bytes long, the limit is {MAX_LEN}")]
    TooLong { len: usize },
    /// A character not allowed at that place (non-ASCII, control, whitespace, `/`, ...).
    #[error("character {} at byte {at} is not allowed there", show_char(*ch))]
    BadChar { ch: char, at: usize },
    /// Does not start with `mcp__` (lower case).
    #[error("does not start with `mcp__`")]
    NoPrefix,
    /// No `__` after the server part.
    #[error("has no `__` between server and tool")]
    NoSeparator,
    /// The server or tool part is empty.
    #[error("the {0} part is empty")]
    EmptyPart(Part),
    /// The server or tool part starts or ends with `_` (ambiguous next to `__`).
    #[error("the {0} part starts or ends with `_`")]
    EdgeUnderscore(Part),
    /// Patterns only: `**` (a `*` already matches any run within one part).
    #[error("`**` at byte {at} is not supported; `*` already matches any run within one part")]
    DoubleStar { at: usize },
    /// Patterns only: a `[...]` class that is empty, unclosed or holds a character its
    /// part does not allow.
    #[error("character class at byte {at} is empty, unclosed or holds a character not allowed in the part")]
    BadClass { at: usize },
    /// Patterns only: refused by the glob compiler (e.g. a reversed range `[z-a]`).
    #[error("invalid glob: {0}")]
    Glob(String),
}

/// A malformed tool name; the message says what is wrong and shows the expected form.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("invalid tool name: {flaw}; expected `mcp__<server>__<tool>` (server: ASCII letters, digits, `_`, `-`; tool: also `.`; neither starting or ending with `_`; at most {MAX_LEN} bytes)")]
pub struct NameError {
    /// What is wrong.
    pub flaw: Flaw,
}

/// Which list a pattern came from.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Origin {
    /// The call's `allowedTools`.
    AllowedTools,
    /// The operator's policy in the configuration.
    Operator,
}

impl fmt::Display for Origin {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Origin::AllowedTools => "allowedTools",
            Origin::Operator => "operator policy",
        })
    }
}

/// A list of patterns that cannot become an [`Allowlist`].
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum AllowlistError {
    /// More than [`MAX_PATTERNS`] patterns in one list.
    #[error("{origin} has {count} patterns, the limit is {MAX_PATTERNS}")]
    TooMany { origin: Origin, count: usize },
    /// One pattern is malformed. `pattern` is escaped (`\n`, `\u{430}`) and cut to 80
    /// characters, so it is safe to show.
    #[error("{origin}[{index}] \"{pattern}\" is not a valid pattern: {flaw}; expected `mcp__<server-glob>__<tool-glob>` with `*`, `?`, `[...]`, e.g. `mcp__git__*`, `mcp__*__read_file`, or `mcp__*__*` for every tool")]
    Invalid {
        origin: Origin,
        index: usize,
        pattern: String,
        flaw: Flaw,
    },
}

/// Parses `mcp__<server>__<tool>`; see the module documentation for the exact rules.
pub fn parse_tool_name(name: &str) -> Result<ToolName<'_>, NameError> {
    let (server, tool) = split(name, false).map_err(|flaw| NameError { flaw })?;
    Ok(ToolName { server, tool })
}

/// The tools one execution may call: its `allowedTools` intersected with the operator's
/// policy.
#[derive(Debug, Clone)]
pub struct Allowlist {
    requested: Vec<String>,
    requested_rules: Vec<Rule>,
    operator_rules: Option<Vec<Rule>>,
}

impl Allowlist {
    /// `requested`: the call's allowedTools (exact names or globs like `mcp__git__*`,
    /// `mcp__*__read_file`); `operator`: the operator's policy patterns (same syntax;
    /// `None` = operator allows everything, `Some(&[])` = nothing).
    /// Effective rule: a tool is allowed iff it matches some requested pattern AND
    /// (operator is None or it matches some operator pattern).
    pub fn new(requested: &[String], operator: Option<&[String]>) -> Result<Self, AllowlistError> {
        Ok(Self {
            requested_rules: compile_all(requested, Origin::AllowedTools)?,
            operator_rules: operator
                .map(|p| compile_all(p, Origin::Operator))
                .transpose()?,
            requested: requested.to_vec(),
        })
    }

    /// Whether `name` may be called; false for any name that fails [`parse_tool_name`].
    pub fn allows(&self, name: &str) -> bool {
        let Ok(name) = parse_tool_name(name) else {
            return false;
        };
        let any = |rules: &[Rule]| rules.iter().any(|rule| rule.matches(name));
        any(&self.requested_rules) && self.operator_rules.as_deref().is_none_or(any)
    }

    /// The requested patterns as given, for 403 messages.
    pub fn requested(&self) -> &[String] {
        &self.requested
    }

    /// True when no pattern was requested (then nothing is allowed).
    pub fn is_empty(&self) -> bool {
        self.requested.is_empty()
    }
}

/// One compiled pattern: a matcher per part.
#[derive(Debug, Clone)]
struct Rule {
    server: PartMatcher,
    tool: PartMatcher,
}

impl Rule {
    fn matches(&self, name: ToolName<'_>) -> bool {
        self.server.matches(name.server) && self.tool.matches(name.tool)
    }
}

/// A part without glob characters is compared as a plain string.
#[derive(Debug, Clone)]
enum PartMatcher {
    Exact(String),
    Glob(GlobMatcher),
}

impl PartMatcher {
    fn matches(&self, part: &str) -> bool {
        match self {
            PartMatcher::Exact(exact) => exact == part,
            PartMatcher::Glob(glob) => glob.is_match(part),
        }
    }
}

fn compile_all(patterns: &[String], origin: Origin) -> Result<Vec<Rule>, AllowlistError> {
    if patterns.len() > MAX_PATTERNS {
        return Err(AllowlistError::TooMany {
            origin,
            count: patterns.len(),
        });
    }
    let invalid = |index, pattern: &str, flaw| AllowlistError::Invalid {
        origin,
        index,
        pattern: shown(pattern),
        flaw,
    };
    patterns
        .iter()
        .enumerate()
        .map(|(index, pattern)| compile(pattern).map_err(|flaw| invalid(index, pattern, flaw)))
        .collect()
}

fn compile(pattern: &str) -> Result<Rule, Flaw> {
    let (server, tool) = split(pattern, true)?;
    let tool_at = pattern.len() - tool.len();
    Ok(Rule {
        server: part_matcher(server, PREFIX.len(), Part::Server)?,
        tool: part_matcher(tool, tool_at, Part::Tool)?,
    })
}

/// The checks shared by names and patterns: length, characters, the `mcp__` prefix, the
/// split at the first `__` after it, and non-empty parts without `_` at either end.
/// `glob` also admits the glob characters `*?[]!` (their syntax is checked later).
fn split(text: &str, glob: bool) -> Result<(&str, &str), Flaw> {
    if text.len() > MAX_LEN {
        return Err(Flaw::TooLong { len: text.len() });
    }
    // The tool's character set is the wider one; the server's is checked after the split.
    check_chars(text, 0, Part::Tool, glob)?;
    let rest = text.strip_prefix(PREFIX).ok_or(Flaw::NoPrefix)?;
    let (server, tool) = rest.split_once(SEP).ok_or(Flaw::NoSeparator)?;
    check_chars(server, PREFIX.len(), Part::Server, glob)?;
    for (part, text) in [(Part::Server, server), (Part::Tool, tool)] {
        if text.is_empty() {
            return Err(Flaw::EmptyPart(part));
        }
        if text.starts_with('_') || text.ends_with('_') {
            return Err(Flaw::EdgeUnderscore(part));
        }
    }
    Ok((server, tool))
}

fn check_chars(text: &str, offset: usize, part: Part, glob: bool) -> Result<(), Flaw> {
    match text
        .char_indices()
        .find(|&(_, ch)| !(ch.is_ascii() && allowed(ch as u8, part, glob)))
    {
        Some((i, ch)) => Err(Flaw::BadChar { ch, at: offset + i }),
        None => Ok(()),
    }
}

fn allowed(byte: u8, part: Part, glob: bool) -> bool {
    byte.is_ascii_alphanumeric()
        || matches!(byte, b'_' | b'-')
        || (part == Part::Tool && byte == b'.')
        || (glob && matches!(byte, b'*' | b'?' | b'[' | b']' | b'!'))
}

/// Checks one part's glob syntax (`*`, `?`, `[...]`, `[!...]` only) and compiles it.
fn part_matcher(text: &str, offset: usize, part: Part) -> Result<PartMatcher, Flaw> {
    if !text
        .bytes()
        .any(|b| matches!(b, b'*' | b'?' | b'[' | b']' | b'!'))
    {
        return Ok(PartMatcher::Exact(text.to_owned()));
    }
    let bytes = text.as_bytes();
    let mut i = 0;
    while i < bytes.len() {
        let at = offset + i;
        match bytes[i] {
            b'*' if bytes.get(i + 1) == Some(&b'*') => return Err(Flaw::DoubleStar { at }),
            b']' | b'!' => {
                return Err(Flaw::BadChar {
                    ch: char::from(bytes[i]),
                    at,
                })
            }
            b'[' => {
                i += 1;
                if bytes.get(i) == Some(&b'!') {
                    i += 1;
                }
                let body = i;
                while i < bytes.len() && allowed(bytes[i], part, false) {
                    i += 1;
                }
                if i == body || bytes.get(i) != Some(&b']') {
                    return Err(Flaw::BadClass { at });
                }
            }
            _ => {}
        }
        i += 1;
    }
    let glob = GlobBuilder::new(text)
        .case_insensitive(false)
        .literal_separator(true)
        .backslash_escape(false)
        .build()
        .map_err(|e| Flaw::Glob(e.kind().to_string()))?;
    Ok(PartMatcher::Glob(glob.compile_matcher()))
}

/// `text` escaped (`\n`, `\u{430}`, `\"`) and cut to [`SHOWN_CHARS`] characters.
fn shown(text: &str) -> String {
    escaped_cut(text, SHOWN_CHARS)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn strings(patterns: &[&str]) -> Vec<String> {
        patterns.iter().map(|p| p.to_string()).collect()
    }

    fn allowlist(requested: &[&str], operator: Option<&[&str]>) -> Allowlist {
        let operator = operator.map(strings);
        Allowlist::new(&strings(requested), operator.as_deref()).expect("valid patterns")
    }

    fn name_flaw(name: &str) -> Flaw {
        parse_tool_name(name)
            .expect_err(&format!("{name:?} must be rejected"))
            .flaw
    }

    fn pattern_error(pattern: &str) -> AllowlistError {
        Allowlist::new(&strings(&[pattern]), None)
            .expect_err(&format!("{pattern:?} must be rejected"))
    }

    fn pattern_flaw(pattern: &str) -> Flaw {
        match pattern_error(pattern) {
            AllowlistError::Invalid { flaw, .. } => flaw,
            other => panic!("unexpected {other:?}"),
        }
    }

    fn bad(ch: char, at: usize) -> Flaw {
        Flaw::BadChar { ch, at }
    }

    // ---- names ----

    #[test]
    fn parses_server_and_tool() {
        let name = parse_tool_name("mcp__git__git_log").unwrap();
        assert_eq!(
            name,
            ToolName {
                server: "git",
                tool: "git_log"
            }
        );
        let name = parse_tool_name("mcp__my-srv2__v1.get-time_now").unwrap();
        assert_eq!((name.server, name.tool), ("my-srv2", "v1.get-time_now"));
    }

    #[test]
    fn first_separator_ends_server_and_tool_keeps_the_rest() {
        let name = parse_tool_name("mcp__a__b__c").unwrap();
        assert_eq!((name.server, name.tool), ("a", "b__c"));
        let name = parse_tool_name("mcp__a_b__c__d__e").unwrap();
        assert_eq!((name.server, name.tool), ("a_b", "c__d__e"));
    }

    #[test]
    fn rejects_wrong_prefix_and_case() {
        for name in [
            "MCP__git__log",
            "Mcp__git__log",
            "mcP__git__log",
            "mcp_git__log",
            "xmcp__git__log",
            "git__log",
            "",
        ] {
            assert_eq!(name_flaw(name), Flaw::NoPrefix, "{name:?}");
        }
    }

    #[test]
    fn rejects_dot_in_server() {
        assert_eq!(name_flaw("mcp__a.b__c"), bad('.', 6));
        assert!(parse_tool_name("mcp__a__b.c").is_ok());
    }

    #[test]
    fn rejects_unicode_lookalikes() {
        let cases = [
            ("mcp__gi\u{442}__log", '\u{442}', 7),          // Cyrillic te
            ("mcp__\u{430}bc__log", '\u{430}', 5),          // Cyrillic a in server
            ("mcp__git__\u{430}dd", '\u{430}', 10),         // Cyrillic a in tool
            ("mcp__git\u{FF3F}\u{FF3F}log", '\u{FF3F}', 8), // fullwidth low line
            ("mcp__git\u{200B}__log", '\u{200B}', 8),       // zero-width space
            ("mcp__git__log\u{200D}", '\u{200D}', 13),      // zero-width joiner at the end
            ("\u{FEFF}mcp__git__log", '\u{FEFF}', 0),       // byte order mark
            ("\u{FF4D}cp__git__log", '\u{FF4D}', 0),        // fullwidth m
            ("mcp__git__l\u{00F6}g", '\u{00F6}', 11),       // Latin o with diaeresis
        ];
        for (name, ch, at) in cases {
            assert_eq!(name_flaw(name), bad(ch, at), "{name:?}");
        }
    }

    #[test]
    fn rejects_control_whitespace_and_punctuation() {
        let cases = [
            ("mcp__git\0__log", '\0', 8),
            ("mcp__git__log\0", '\0', 13),
            ("mcp__git\n__log", '\n', 8),
            ("mcp__git__log\n", '\n', 13),
            ("mcp__git__log\r", '\r', 13),
            ("mcp__git__l\tog", '\t', 11),
            (" mcp__git__log", ' ', 0),
            ("mcp__git__log ", ' ', 13),
            ("mcp__git__lo g", ' ', 12),
            ("mcp__git__../log", '/', 12),
            ("mcp__git/x__log", '/', 8),
            ("mcp__git__log:x", ':', 13),
            ("mcp__git__*", '*', 10),
            ("mcp__git__l?g", '?', 11),
            ("mcp__git__[l]og", '[', 10),
        ];
        for (name, ch, at) in cases {
            assert_eq!(name_flaw(name), bad(ch, at), "{name:?}");
        }
    }

    #[test]
    fn rejects_empty_parts() {
        assert_eq!(name_flaw("mcp____x"), Flaw::EmptyPart(Part::Server));
        assert_eq!(name_flaw("mcp__git__"), Flaw::EmptyPart(Part::Tool));
        assert_eq!(name_flaw("mcp______"), Flaw::EmptyPart(Part::Server));
        assert_eq!(name_flaw("mcp__"), Flaw::NoSeparator);
        assert_eq!(name_flaw("mcp__git"), Flaw::NoSeparator);
        assert_eq!(name_flaw("mcp__git_log"), Flaw::NoSeparator);
    }

    #[test]
    fn rejects_underscore_at_part_edges() {
        assert_eq!(
            name_flaw("mcp___git__log"),
            Flaw::EdgeUnderscore(Part::Server)
        );
        assert_eq!(
            name_flaw("mcp__git___log"),
            Flaw::EdgeUnderscore(Part::Tool)
        );
        assert_eq!(
            name_flaw("mcp__git__log_"),
            Flaw::EdgeUnderscore(Part::Tool)
        );
        assert_eq!(
            name_flaw("mcp__git__log__"),
            Flaw::EdgeUnderscore(Part::Tool)
        );
        assert_eq!(
            name_flaw("mcp__git____log"),
            Flaw::EdgeUnderscore(Part::Tool)
        );
        assert!(parse_tool_name("mcp__g_t__l_g").is_ok());
    }

    #[test]
    fn length_limit_is_256_bytes() {
        let longest = format!("mcp__s__{}", "t".repeat(MAX_LEN - 8));
        assert_eq!(longest.len(), 256);
        assert!(parse_tool_name(&longest).is_ok());
        let too_long = format!("{longest}t");
        assert_eq!(name_flaw(&too_long), Flaw::TooLong { len: 257 });
        assert_eq!(
            name_flaw(&"\u{430}".repeat(200)),
            Flaw::TooLong { len: 400 }
        );
    }

    #[test]
    fn name_error_shows_expected_form_and_no_raw_characters() {
        let msg = parse_tool_name("mcp__\u{430}__x\n")
            .unwrap_err()
            .to_string();
        assert!(msg.contains("mcp__<server>__<tool>"), "{msg}");
        assert!(msg.contains("U+0430 at byte 5"), "{msg}");
        assert!(!msg.contains('\u{430}'), "{msg}");
        let msg = parse_tool_name("mcp__git__x\0").unwrap_err().to_string();
        assert!(
            msg.contains("U+0000 at byte 11") && !msg.contains('\0'),
            "{msg}"
        );
        let msg = parse_tool_name("mcp__git__a/b").unwrap_err().to_string();
        assert!(msg.contains("'/' at byte 11"), "{msg}");
        let msg = parse_tool_name("mcp__git__").unwrap_err().to_string();
        assert!(msg.contains("tool part is empty"), "{msg}");
    }

    // ---- allowlist ----

    #[test]
    fn exact_name_allows_only_itself() {
        let list = allowlist(&["mcp__git__log"], None);
        assert!(list.allows("mcp__git__log"));
        for name in [
            "mcp__git__log_evil",
            "mcp__git__logx",
            "mcp__git__lo",
            "mcp__git__log__x",
            "mcp__gitx__log",
            "mcp__xgit__log",
            "mcp__gi__log",
            "mcp__git_x__log",
            "xmcp__git__log",
            "mcp__git__xlog",
            "mcp__git__log.",
            "mcp__git__log-",
        ] {
            assert!(!list.allows(name), "{name:?}");
        }
    }

    #[test]
    fn server_pattern_does_not_leak_to_similar_servers() {
        let list = allowlist(&["mcp__git__*"], None);
        for name in [
            "mcp__git__x",
            "mcp__git__log",
            "mcp__git__a__b",
            "mcp__git__a.b-c",
        ] {
            assert!(list.allows(name), "{name:?}");
        }
        for name in [
            "mcp__git_evil__x",
            "mcp__github__x",
            "mcp__gi__x",
            "mcp__git-x__y",
            "mcp__xgit__y",
            "mcp__Git__x",
        ] {
            assert!(!list.allows(name), "{name:?}");
        }
    }

    #[test]
    fn tool_pattern_across_servers_stays_in_tool_part() {
        let list = allowlist(&["mcp__*__read_file"], None);
        assert!(list.allows("mcp__fs__read_file"));
        assert!(list.allows("mcp__other-fs__read_file"));
        for name in [
            "mcp__fs__read_file2",
            "mcp__fs__read_files",
            "mcp__fs__xread_file",
            "mcp__fs__read_file__x",
            // The server glob `*` cannot take `a__b`: this is server `a`, tool `b__read_file`.
            "mcp__a__b__read_file",
        ] {
            assert!(!list.allows(name), "{name:?}");
        }
    }

    #[test]
    fn server_glob_never_spans_the_separator() {
        let list = allowlist(&["mcp__a*__log"], None);
        assert!(list.allows("mcp__abc__log"));
        assert!(list.allows("mcp__a_b__log"));
        // Read as server `a`, tool `x__log`; `*` never reaches past the first `__`.
        assert!(!list.allows("mcp__a__x__log"));
        let list = allowlist(&["mcp__a__b__*"], None);
        assert!(list.allows("mcp__a__b__c"));
        assert!(!list.allows("mcp__a__b"));
        assert!(!list.allows("mcp__a__bx__c"));
        assert!(!list.allows("mcp__a_b__c"));
    }

    #[test]
    fn matching_is_case_sensitive() {
        let list = allowlist(&["mcp__git__log", "mcp__time__*", "mcp__h?__l*"], None);
        assert!(list.allows("mcp__git__log"));
        assert!(list.allows("mcp__time__now"));
        assert!(list.allows("mcp__hg__log"));
        for name in [
            "MCP__git__log",
            "Mcp__git__log",
            "mcp__Git__log",
            "mcp__GIT__log",
            "mcp__git__Log",
            "mcp__TIME__now",
            "mcp__Time__now",
            "mcp__Hg__log",
            "mcp__hg__LOG",
            "mcp__hg__Log",
        ] {
            assert!(!list.allows(name), "{name:?}");
        }
    }

    #[test]
    fn hostile_names_are_denied_even_by_catch_all() {
        let list = allowlist(&["mcp__*__*"], None);
        assert!(list.allows("mcp__git__log"));
        assert!(list.allows("mcp__a__b__c"));
        let too_long = format!("mcp__s__{}", "t".repeat(MAX_LEN - 7));
        for name in [
            "mcp__gi\u{442}__log",
            "mcp__\u{430}__log",
            "mcp__git\u{FF3F}\u{FF3F}log",
            "mcp__git\u{FF3F}_log",
            "mcp__git\u{200B}__log",
            "mcp__git__log\u{200B}",
            "mcp__git\0__log",
            "mcp__git__log\0",
            "mcp__git\n__log",
            "mcp__git__log\n",
            "mcp__git__log\r\n",
            " mcp__git__log",
            "mcp__git__log ",
            "\tmcp__git__log",
            "mcp____x",
            "mcp__git__",
            "mcp__",
            "mcp______",
            "mcp___git__log",
            "mcp__git___log",
            "mcp__git__log_",
            "mcp__git__*",
            "mcp__git/../x__log",
            "MCP__git__log",
            "",
            too_long.as_str(),
        ] {
            assert!(!list.allows(name), "{name:?}");
        }
    }

    #[test]
    fn question_mark_matches_exactly_one_character() {
        let list = allowlist(&["mcp__gi?__log"], None);
        assert!(list.allows("mcp__git__log"));
        assert!(list.allows("mcp__gi-__log"));
        assert!(!list.allows("mcp__gi__log"));
        assert!(!list.allows("mcp__gitt__log"));
        assert!(!list.allows("mcp__gi\u{442}__log"));
    }

    #[test]
    fn character_classes() {
        let list = allowlist(&["mcp__[gh]it__log"], None);
        assert!(list.allows("mcp__git__log"));
        assert!(list.allows("mcp__hit__log"));
        assert!(!list.allows("mcp__xit__log"));
        assert!(!list.allows("mcp__Git__log"));
        let list = allowlist(&["mcp__[!g]it__log"], None);
        assert!(list.allows("mcp__hit__log"));
        assert!(!list.allows("mcp__git__log"));
        let list = allowlist(&["mcp__git__v[0-9]"], None);
        assert!(list.allows("mcp__git__v7"));
        assert!(!list.allows("mcp__git__va"));
        assert!(!list.allows("mcp__git__v10"));
    }

    #[test]
    fn operator_policy_intersects() {
        let list = allowlist(&["mcp__*__*"], Some(&["mcp__time__*"]));
        assert!(list.allows("mcp__time__get_current_time"));
        assert!(!list.allows("mcp__git__log"));
        assert!(!list.allows("mcp__timex__now"));

        let list = allowlist(&["mcp__git__log"], Some(&["mcp__*__*"]));
        assert!(list.allows("mcp__git__log"));
        assert!(!list.allows("mcp__git__push"));

        let list = allowlist(&["mcp__git__*"], Some(&["mcp__git__log", "mcp__time__*"]));
        assert!(list.allows("mcp__git__log"));
        assert!(!list.allows("mcp__git__push"));
        assert!(!list.allows("mcp__time__now"));
    }

    #[test]
    fn operator_none_defers_and_empty_operator_allows_nothing() {
        let list = allowlist(&["mcp__git__*"], None);
        assert!(list.allows("mcp__git__push"));
        let list = allowlist(&["mcp__git__*"], Some(&[]));
        assert!(!list.allows("mcp__git__push"));
    }

    #[test]
    fn empty_requested_allows_nothing() {
        for operator in [None, Some(&["mcp__*__*"][..])] {
            let list = allowlist(&[], operator);
            assert!(list.is_empty());
            assert!(list.requested().is_empty());
            assert!(!list.allows("mcp__git__log"));
            assert!(!list.allows("mcp__time__now"));
        }
        assert!(!allowlist(&["mcp__git__log"], None).is_empty());
    }

    #[test]
    fn requested_returns_patterns_as_given() {
        let list = allowlist(&["mcp__git__*", "mcp__time__now"], Some(&["mcp__*__*"]));
        assert_eq!(list.clone().requested(), ["mcp__git__*", "mcp__time__now"]);
    }

    #[test]
    fn invalid_patterns_are_rejected_with_their_reason() {
        let cases = [
            ("", Flaw::NoPrefix),
            ("*", Flaw::NoPrefix),
            ("mcp*", Flaw::NoPrefix),
            ("MCP__git__*", Flaw::NoPrefix),
            ("mcp__*", Flaw::NoSeparator),
            ("mcp__git*", Flaw::NoSeparator),
            ("mcp__git", Flaw::NoSeparator),
            ("mcp____x", Flaw::EmptyPart(Part::Server)),
            ("mcp__git__", Flaw::EmptyPart(Part::Tool)),
            ("mcp___git__x", Flaw::EdgeUnderscore(Part::Server)),
            ("mcp__git___x", Flaw::EdgeUnderscore(Part::Tool)),
            ("mcp__git__x_", Flaw::EdgeUnderscore(Part::Tool)),
            ("mcp__**__x", Flaw::DoubleStar { at: 5 }),
            ("mcp__git__a**", Flaw::DoubleStar { at: 11 }),
            ("mcp__{a,b}__x", bad('{', 5)),
            ("mcp__git__\\*", bad('\\', 10)),
            ("mcp__git__a/b", bad('/', 11)),
            ("mcp__a.b__*", bad('.', 6)),
            ("mcp__g\u{430}t__*", bad('\u{430}', 6)),
            (" mcp__git__x", bad(' ', 0)),
            ("mcp__git__x\n", bad('\n', 11)),
            ("mcp__git__x\0", bad('\0', 11)),
            ("mcp__git__x]", bad(']', 11)),
            ("mcp__git__!x", bad('!', 10)),
            ("mcp__git__[x", Flaw::BadClass { at: 10 }),
            ("mcp__git__[]x", Flaw::BadClass { at: 10 }),
            ("mcp__git__[!]", Flaw::BadClass { at: 10 }),
            ("mcp__git__[*]", Flaw::BadClass { at: 10 }),
            ("mcp__g[.]t__x", bad('.', 7)),
            ("mcp__g[?]t__x", Flaw::BadClass { at: 6 }),
            ("mcp__a[__]__x", Flaw::BadClass { at: 6 }),
        ];
        for (pattern, flaw) in cases {
            assert_eq!(pattern_flaw(pattern), flaw, "{pattern:?}");
        }
        assert!(matches!(pattern_flaw("mcp__git__[z-a]"), Flaw::Glob(_)));
    }

    #[test]
    fn invalid_pattern_message_names_list_index_and_pattern() {
        let requested = strings(&["mcp__git__*", "mcp__git*"]);
        let err = Allowlist::new(&requested, None).unwrap_err();
        assert_eq!(
            err,
            AllowlistError::Invalid {
                origin: Origin::AllowedTools,
                index: 1,
                pattern: "mcp__git*".into(),
                flaw: Flaw::NoSeparator,
            }
        );
        let msg = err.to_string();
        assert!(
            msg.starts_with("allowedTools[1] \"mcp__git*\" is not a valid pattern"),
            "{msg}"
        );
        assert!(msg.contains("`mcp__*__*` for every tool"), "{msg}");

        let operator = strings(&["mcp__time__*", "mcp__**__x"]);
        let msg = Allowlist::new(&strings(&["mcp__git__*"]), Some(&operator))
            .unwrap_err()
            .to_string();
        assert!(
            msg.starts_with("operator policy[1] \"mcp__**__x\""),
            "{msg}"
        );
        assert!(msg.contains("`**` at byte 5"), "{msg}");
    }

    #[test]
    fn hostile_pattern_is_escaped_and_cut_in_messages() {
        let hostile = format!("mcp__\u{430}\n\"{}", "x".repeat(1000));
        let msg = pattern_error(&hostile).to_string();
        assert!(!msg.contains('\n') && !msg.contains('\u{430}'), "{msg}");
        assert!(msg.contains(r#""mcp__\u{430}\n\"xxx"#), "{msg}");
        assert!(msg.contains("xxx...\""), "{msg}");
        assert!(msg.len() < 500, "{}", msg.len());
        match pattern_error(&hostile) {
            AllowlistError::Invalid { flaw, .. } => assert_eq!(flaw, Flaw::TooLong { len: 1009 }),
            other => panic!("unexpected {other:?}"),
        }
    }

    #[test]
    fn pattern_count_limit() {
        let many: Vec<String> = (0..MAX_PATTERNS).map(|i| format!("mcp__s{i}__*")).collect();
        let list = Allowlist::new(&many, Some(&many)).unwrap();
        assert!(list.allows("mcp__s255__x"));
        assert!(!list.allows("mcp__s256__x"));
        let too_many: Vec<String> = (0..=MAX_PATTERNS)
            .map(|i| format!("mcp__s{i}__*"))
            .collect();
        assert_eq!(
            Allowlist::new(&too_many, None).unwrap_err(),
            AllowlistError::TooMany {
                origin: Origin::AllowedTools,
                count: 257
            }
        );
        assert_eq!(
            Allowlist::new(&many, Some(&too_many)).unwrap_err(),
            AllowlistError::TooMany {
                origin: Origin::Operator,
                count: 257
            }
        );
    }

    #[test]
    fn pattern_length_limit() {
        let longest = format!("mcp__*__{}", "t".repeat(MAX_LEN - 8));
        assert_eq!(longest.len(), 256);
        let list = Allowlist::new(std::slice::from_ref(&longest), None).unwrap();
        assert!(list.allows(&longest.replace('*', "s")));
        assert_eq!(
            pattern_flaw(&format!("{longest}t")),
            Flaw::TooLong { len: 257 }
        );
    }
}
