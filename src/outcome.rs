//! The result of an execution as clients see it (`structuredContent` of a tool call and
//! the `run` command's report), built from what the sandbox observed.

use std::collections::BTreeMap;

use schemars::JsonSchema;
use serde::Serialize;

use crate::sandbox::lifecycle::RunOutcome;

/// Per-tool statistics of the calls the code made.
#[derive(Debug, Clone, Default, Serialize, JsonSchema, PartialEq)]
#[serde(rename_all = "camelCase")]
pub struct ToolCallStats {
    pub calls: u64,
    pub errors: u64,
    pub total_ms: u64,
}

/// The structured result of `executePython` / `executeTypescript`.
#[derive(Debug, Clone, Serialize, JsonSchema, PartialEq)]
#[serde(rename_all = "camelCase")]
pub struct ExecutionResult {
    /// True when the code ran to completion with exit code 0.
    pub success: bool,
    /// Standard output (capped; see `truncated`).
    pub output: String,
    /// Standard error (capped; see `truncated`).
    pub stderr: String,
    /// Exit code of the code; null when it was killed for a timeout or cancellation.
    pub exit_code: Option<i64>,
    /// What went wrong: the exception with the code's own traceback, a timeout, an OOM kill.
    pub error: Option<String>,
    /// Kind of error: the exception type (`ZeroDivisionError`, `TypeError`), or `Timeout`,
    /// `OutOfMemory`, `Cancelled`, `Killed`.
    pub error_type: Option<String>,
    /// The code ran past its timeout and was killed.
    pub timed_out: bool,
    /// The code exceeded its memory limit and was killed.
    pub oom_killed: bool,
    /// Output past the per-stream cap was dropped.
    pub truncated: bool,
    /// Time from handing the code to the runner to its outcome.
    pub execution_time_ms: u64,
    /// MCP tool calls the code made.
    pub tool_calls_made: u64,
    /// Per tool: calls, errors and total milliseconds.
    pub tool_call_summary: BTreeMap<String, ToolCallStats>,
    /// Id of the execution (also the container's label), for logs and audit.
    pub execution_id: String,
    /// `python` or `typescript`.
    pub language: String,
    /// The code ran in a container prepared ahead (warm pool) rather than one made for it.
    pub warm_start: bool,
    /// Container runtime that ran the code (`runc`, or `runsc` for gVisor).
    pub runtime: String,
    /// Suspicious patterns seen in the code (an audit aid, never a block).
    pub warnings: Vec<String>,
    /// Egress through the proxy, when `permissions.net` was granted.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub egress: Option<EgressUse>,
}

/// What one execution did through the egress proxy.
#[derive(Debug, Clone, Default, Serialize, JsonSchema, PartialEq)]
#[serde(rename_all = "camelCase")]
pub struct EgressUse {
    /// Connections the proxy opened for the code.
    pub connections: u64,
    /// Bytes sent by the code.
    pub bytes_up: u64,
    /// Bytes received by the code.
    pub bytes_down: u64,
    /// Requests refused, with the reason.
    pub refusals: Vec<String>,
}

impl ExecutionResult {
    /// Builds the client-facing result from a run.
    pub fn from_run(
        run: RunOutcome,
        execution_id: String,
        language: &str,
        timeout_ms: u64,
        memory_mb: u64,
    ) -> Self {
        let runner_error = run.runner.as_ref().and_then(|r| r.error.clone());
        let (error, error_type) = if run.timed_out {
            (
                Some(format!(
                    "execution timed out after {timeout_ms} ms; the container was killed"
                )),
                Some("Timeout".to_owned()),
            )
        } else if run.cancelled {
            (
                Some("execution was cancelled; the container was killed".to_owned()),
                Some("Cancelled".to_owned()),
            )
        } else if run.oom_killed {
            (
                Some(format!(
                    "out of memory: the code exceeded its {memory_mb} MiB limit and was killed"
                )),
                Some("OutOfMemory".to_owned()),
            )
        } else if let Some(e) = runner_error {
            let headline = format!("{}: {}", e.kind, e.message);
            let text = if e.traceback.trim().is_empty() {
                headline
            } else if e.traceback.contains(&headline) {
                e.traceback.trim_end().to_owned()
            } else {
                format!("{}\n{headline}", e.traceback.trim_end())
            };
            (Some(text), Some(e.kind))
        } else if let (None, Some(code)) = (&run.runner, run.exit_code) {
            if code > 128 {
                (
                    Some(format!("the process was killed by signal {}", code - 128)),
                    Some("Killed".to_owned()),
                )
            } else if code != 0 && run.stdout.is_empty() && run.stderr.is_empty() {
                // No result, no output: either the code left through os._exit / Deno.exit
                // without a word, or the sandbox itself went down (gVisor exits with 2 when
                // it cannot create its own threads). Say what is known, not a guess.
                (
                    Some(format!(
                        "exited with status {code} without output and without a result from the runner: the code ended the process itself (os._exit, Deno.exit) or the sandbox failed"
                    )),
                    Some("NoResult".to_owned()),
                )
            } else {
                (None, None)
            }
        } else {
            (None, None)
        };
        let success = !run.timed_out
            && !run.cancelled
            && !run.oom_killed
            && run.exit_code == Some(0)
            && run.runner.as_ref().is_none_or(|r| r.success);
        Self {
            success,
            output: run.stdout,
            stderr: run.stderr,
            exit_code: run.exit_code,
            error,
            error_type,
            timed_out: run.timed_out,
            oom_killed: run.oom_killed,
            truncated: run.truncated,
            execution_time_ms: run.duration.as_millis() as u64,
            tool_calls_made: 0,
            tool_call_summary: BTreeMap::new(),
            execution_id,
            language: language.to_owned(),
            warm_start: false,
            runtime: String::new(),
            warnings: Vec::new(),
            egress: None,
        }
    }

    /// A short human-readable summary, the text content of the tool result.
    pub fn summary(&self) -> String {
        let mut s = String::new();
        let status = if self.success {
            "succeeded".to_owned()
        } else if self.timed_out {
            "timed out".to_owned()
        } else if self.oom_killed {
            "ran out of memory".to_owned()
        } else {
            match self.exit_code {
                Some(c) => format!("failed (exit code {c})"),
                None => "failed".to_owned(),
            }
        };
        s.push_str(&format!(
            "{} execution {status} in {} ms\n",
            self.language, self.execution_time_ms
        ));
        if !self.output.is_empty() {
            s.push_str("--- stdout ---\n");
            s.push_str(&self.output);
            if !self.output.ends_with('\n') {
                s.push('\n');
            }
        }
        if !self.stderr.is_empty() {
            s.push_str("--- stderr ---\n");
            s.push_str(&self.stderr);
            if !self.stderr.ends_with('\n') {
                s.push('\n');
            }
        }
        if let Some(e) = &self.error {
            s.push_str("--- error ---\n");
            s.push_str(e);
            s.push('\n');
        }
        s
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::sandbox::protocol::{RunnerError, RunnerResult};

    fn run(exit: Option<i64>) -> RunOutcome {
        RunOutcome {
            exit_code: exit,
            ..Default::default()
        }
    }

    fn result(r: RunOutcome) -> ExecutionResult {
        ExecutionResult::from_run(r, "id".into(), "python", 1000, 256)
    }

    #[test]
    fn clean_exit_is_success() {
        let mut r = run(Some(0));
        r.runner = Some(RunnerResult {
            success: true,
            exit_code: 0,
            error: None,
        });
        let res = result(r);
        assert!(res.success);
        assert_eq!(res.error, None);
    }

    #[test]
    fn nonzero_exit_fails_without_inventing_an_error() {
        let mut with_output = run(Some(3));
        with_output.stderr = "usage: ...\n".into();
        let res = result(with_output);
        assert!(!res.success);
        assert_eq!(res.exit_code, Some(3));
        assert_eq!(res.error, None, "the output says why");
        let silent = result(run(Some(2)));
        assert!(!silent.success);
        assert_eq!(silent.error_type.as_deref(), Some("NoResult"));
        assert!(silent.error.unwrap().contains("status 2 without output"));
    }

    #[test]
    fn exception_carries_type_message_and_traceback() {
        let mut r = run(Some(1));
        r.runner = Some(RunnerResult {
            success: false,
            exit_code: 1,
            error: Some(RunnerError {
                kind: "ZeroDivisionError".into(),
                message: "division by zero".into(),
                traceback: "Traceback (most recent call last):\n  File \"<code>\", line 1\n".into(),
            }),
        });
        let res = result(r);
        assert!(!res.success);
        assert_eq!(res.error_type.as_deref(), Some("ZeroDivisionError"));
        let e = res.error.unwrap();
        assert!(
            e.contains("<code>") && e.ends_with("ZeroDivisionError: division by zero"),
            "{e}"
        );
    }

    #[test]
    fn timeout_oom_and_cancel_are_failures_with_reasons() {
        let mut r = run(None);
        r.timed_out = true;
        let res = result(r);
        assert!(!res.success && res.timed_out);
        assert!(res.error.unwrap().contains("1000 ms"));

        let mut r = run(Some(137));
        r.oom_killed = true;
        let res = result(r);
        assert!(!res.success && res.oom_killed);
        assert_eq!(res.error_type.as_deref(), Some("OutOfMemory"));

        let mut r = run(None);
        r.cancelled = true;
        assert_eq!(result(r).error_type.as_deref(), Some("Cancelled"));
    }

    #[test]
    fn signal_death_without_report_is_named() {
        let res = result(run(Some(139)));
        assert_eq!(
            res.error.as_deref(),
            Some("the process was killed by signal 11")
        );
    }

    #[test]
    fn runner_reporting_failure_overrides_zero_exit() {
        let mut r = run(Some(0));
        r.runner = Some(RunnerResult {
            success: false,
            exit_code: 0,
            error: None,
        });
        assert!(!result(r).success);
    }

    #[test]
    fn summary_names_streams_and_status() {
        let mut r = run(Some(0));
        r.stdout = "hi".into();
        r.stderr = "warn\n".into();
        let s = result(r).summary();
        assert!(s.starts_with("python execution succeeded"));
        assert!(s.contains("--- stdout ---\nhi\n--- stderr ---\nwarn\n"));
    }
}
