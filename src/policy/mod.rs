//! Pure policy rules: which tools code in the sandbox may call. No I/O here; every input is
//! treated as hostile and every rule has negative tests next to it.

/// Tool names (`mcp__<server>__<tool>`) and the allowlist of patterns that gates tool calls.
pub mod allowlist;

pub use allowlist::{
    parse_tool_name, Allowlist, AllowlistError, Flaw, NameError, Origin, Part, ToolName, MAX_LEN,
    MAX_PATTERNS,
};
