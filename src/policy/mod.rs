//! Pure policy rules: which tools code in the sandbox may call, which host paths it may
//! be granted, which network destinations it may reach, and how often a client may run it. No I/O here; every input is
//! treated as hostile and every rule has negative tests next to it.

/// Tool names (`mcp__<server>__<tool>`) and the allowlist of patterns that gates tool calls.
pub mod allowlist;
pub mod mounts;
pub mod net;
/// Suspicious-pattern scan of submitted code: an audit aid, not a security boundary.
pub mod patterns;
/// Untrusted text escaped and cut for messages.
mod shown;

/// Executions per client per minute.
pub mod rate;

pub use allowlist::{
    parse_tool_name, Allowlist, AllowlistError, Flaw, NameError, Origin, Part, ToolName, MAX_LEN,
    MAX_PATTERNS,
};
