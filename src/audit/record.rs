//! The two kinds of audit record the server writes: one per execution and one per tool
//! call. The writer adds the envelope (`seq`, `ts`, `prev`, `hash`) and the `kind` tag.

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};
use serde_json::Value;

use super::sha256_hex;

/// The paths and hosts the call asked for (`permissions` of the MCP call).
#[derive(Debug, Clone, Default, Serialize, Deserialize, PartialEq)]
#[serde(rename_all = "camelCase")]
pub struct AuditPermissions {
    pub read: Vec<String>,
    pub write: Vec<String>,
    pub net: Vec<String>,
}

/// The resource limits the container ran with.
#[derive(Debug, Clone, Default, Serialize, Deserialize, PartialEq)]
#[serde(rename_all = "camelCase")]
pub struct AuditLimits {
    pub memory_mb: u64,
    pub timeout_ms: u64,
    pub cpus: f64,
    pub pids: u64,
}

/// Calls and errors of one tool during an execution.
#[derive(Debug, Clone, Default, Serialize, Deserialize, PartialEq)]
#[serde(rename_all = "camelCase")]
pub struct ToolCallCount {
    pub calls: u64,
    pub errors: u64,
}

/// One execution: what ran, where, with which rights, and how it ended.
#[derive(Debug, Clone, Default, Serialize, Deserialize, PartialEq)]
#[serde(rename_all = "camelCase")]
pub struct ExecutionRecord {
    pub execution_id: String,
    /// The HTTP client name (API key owner), `stdio` over stdio, `cli` for `run`.
    pub client: Option<String>,
    /// `python` or `typescript`.
    pub language: String,
    /// Hex SHA-256 of the code as received.
    pub code_sha256: String,
    pub code_bytes: u64,
    /// The effective allowlist (call ∩ operator policy).
    pub allowed_tools: Vec<String>,
    pub permissions: AuditPermissions,
    pub limits: AuditLimits,
    /// OCI runtime, e.g. `runc` or `runsc`.
    pub runtime: String,
    /// AppArmor profile; null where AppArmor is absent.
    pub apparmor: Option<String>,
    pub image_id: String,
    pub container_id: String,
    /// Null when the code was killed (timeout, cancellation).
    pub exit_code: Option<i64>,
    pub duration_ms: u64,
    pub timed_out: bool,
    pub oom_killed: bool,
    pub truncated: bool,
    pub warm_start: bool,
    pub success: bool,
    pub tool_calls: u64,
    pub tool_call_summary: BTreeMap<String, ToolCallCount>,
    /// Policy refusals during the execution: tool not allowed, egress refused, ...
    pub refusals: Vec<String>,
    /// Warnings of the suspicious-pattern scan (`policy::patterns::scan`).
    pub warnings: Vec<String>,
    /// The code itself; written only when the operator opted in
    /// (`AuditOptions::include_plaintext`), dropped by the writer otherwise.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub code: Option<String>,
}

impl ExecutionRecord {
    /// Sets `codeSha256`, `codeBytes` and `code` from the code. The writer drops `code`
    /// unless the operator opted in to plaintext.
    pub fn with_code(mut self, code: &str) -> Self {
        self.code_sha256 = sha256_hex(code.as_bytes());
        self.code_bytes = code.len() as u64;
        self.code = Some(code.to_owned());
        self
    }
}

/// Whether the proxy let a tool call through.
#[derive(Debug, Clone, Copy, Default, Serialize, Deserialize, PartialEq, Eq)]
#[serde(rename_all = "camelCase")]
pub enum Decision {
    #[default]
    Allowed,
    Refused,
}

/// How a tool call ended, as the proxy answered it.
#[derive(Debug, Clone, Copy, Default, Serialize, Deserialize, PartialEq, Eq)]
#[serde(rename_all = "camelCase")]
pub enum ToolOutcome {
    /// The downstream tool answered (even with `isError: false`).
    #[default]
    Ok,
    /// The downstream tool failed or answered `isError: true` (502).
    Error,
    /// Not on the allowlist (403).
    Refused,
    /// No such tool (404).
    UnknownTool,
    /// The arguments failed the tool's input schema (422).
    InvalidArguments,
    /// Rate limited (429).
    RateLimited,
    /// The downstream tool did not answer in time (504).
    Timeout,
}

/// One tool call made by code in the sandbox through the tool proxy.
#[derive(Debug, Clone, Default, Serialize, Deserialize, PartialEq)]
#[serde(rename_all = "camelCase")]
pub struct ToolCallRecord {
    pub execution_id: String,
    pub client: Option<String>,
    /// `mcp__<server>__<tool>` as requested.
    pub tool: String,
    pub decision: Decision,
    /// Why it was refused (or another note); never the arguments.
    pub reason: Option<String>,
    /// Hex SHA-256 of the arguments serialised as JSON.
    pub arguments_sha256: String,
    pub arguments_bytes: u64,
    pub duration_ms: u64,
    pub outcome: ToolOutcome,
    /// The arguments themselves; written only with `AuditOptions::include_plaintext`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub arguments: Option<Value>,
}

impl ToolCallRecord {
    /// Sets `argumentsSha256`, `argumentsBytes` and `arguments` from the arguments. The
    /// writer drops `arguments` unless the operator opted in to plaintext.
    pub fn with_arguments(mut self, arguments: &Value) -> Self {
        // Serialising a `Value` cannot fail: its map keys are strings.
        let bytes = serde_json::to_vec(arguments).unwrap_or_default();
        self.arguments_sha256 = sha256_hex(&bytes);
        self.arguments_bytes = bytes.len() as u64;
        self.arguments = Some(arguments.clone());
        self
    }
}

/// A record as the writer serialises it: the `kind` tag plus the record's fields.
#[derive(Debug, Serialize)]
#[serde(tag = "kind", rename_all = "camelCase")]
pub(crate) enum RecordRef<'a> {
    Execution(&'a ExecutionRecord),
    ToolCall(&'a ToolCallRecord),
}

/// The record kinds `verify` accepts.
pub(crate) const KINDS: [&str; 2] = ["execution", "toolCall"];

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn execution_fields_are_camel_case_and_code_is_absent_when_none() {
        let mut rec = ExecutionRecord {
            execution_id: "e1".into(),
            ..Default::default()
        }
        .with_code("print(1)");
        rec.code = None;
        let v = serde_json::to_value(RecordRef::Execution(&rec)).unwrap();
        assert_eq!(v["kind"], "execution");
        assert_eq!(v["executionId"], "e1");
        assert_eq!(v["codeBytes"], 8);
        assert_eq!(v["codeSha256"], sha256_hex(b"print(1)"));
        assert!(v["limits"].get("memoryMb").is_some());
        assert!(v.get("toolCallSummary").is_some());
        assert!(v.get("code").is_none(), "{v}");
        assert!(v["client"].is_null());
    }

    #[test]
    fn tool_call_enums_serialise_as_documented() {
        let rec = ToolCallRecord {
            decision: Decision::Refused,
            outcome: ToolOutcome::InvalidArguments,
            ..Default::default()
        }
        .with_arguments(&serde_json::json!({"a": 1}));
        let v = serde_json::to_value(RecordRef::ToolCall(&rec)).unwrap();
        assert_eq!(v["kind"], "toolCall");
        assert_eq!(v["decision"], "refused");
        assert_eq!(v["outcome"], "invalidArguments");
        assert_eq!(v["argumentsBytes"], 7);
        assert_eq!(v["argumentsSha256"], sha256_hex(br#"{"a":1}"#));
        assert_eq!(v["arguments"]["a"], 1);
    }
}
