//! Prometheus metrics of the server: executions, tool calls, refusals, pool and
//! downstream state. Recording is cheap and lock-free; `/metrics` encodes the registry.

use prometheus_client::encoding::text::encode;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::metrics::histogram::Histogram;
use prometheus_client::registry::Registry;

type Labels = Vec<(&'static str, String)>;

/// Every metric the server exports.
#[derive(Debug)]
pub struct Metrics {
    registry: Registry,
    executions: Family<Labels, Counter>,
    execution_seconds: Family<Labels, Histogram>,
    tool_calls: Family<Labels, Counter>,
    refusals: Family<Labels, Counter>,
    pool_size: Family<Labels, Gauge>,
    containers_running: Gauge,
    downstream_up: Family<Labels, Gauge>,
}

impl Default for Metrics {
    fn default() -> Self {
        Self::new()
    }
}

fn duration_histogram() -> Histogram {
    Histogram::new([
        0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0, 60.0, 300.0,
    ])
}

impl Metrics {
    pub fn new() -> Self {
        let mut registry = Registry::with_prefix("code_executor");
        let executions = Family::<Labels, Counter>::default();
        let execution_seconds = Family::<Labels, Histogram>::new_with_constructor(
            duration_histogram as fn() -> Histogram,
        );
        let tool_calls = Family::<Labels, Counter>::default();
        let refusals = Family::<Labels, Counter>::default();
        let pool_size = Family::<Labels, Gauge>::default();
        let containers_running = Gauge::default();
        let downstream_up = Family::<Labels, Gauge>::default();
        registry.register(
            "executions",
            "Executions by language and outcome",
            executions.clone(),
        );
        registry.register(
            "execution_duration_seconds",
            "Time from handing the code to the runner to its outcome",
            execution_seconds.clone(),
        );
        registry.register(
            "tool_calls",
            "Tool calls from sandboxes by tool and outcome",
            tool_calls.clone(),
        );
        registry.register(
            "refusals",
            "Requests refused by policy (kind: tool_not_allowed, rate_limited, call_cap, egress)",
            refusals.clone(),
        );
        registry.register(
            "pool_size",
            "Warm containers ready, by language",
            pool_size.clone(),
        );
        registry.register(
            "containers_running",
            "Executions running now",
            containers_running.clone(),
        );
        registry.register(
            "downstream_up",
            "Downstream MCP server connected (1) or not (0)",
            downstream_up.clone(),
        );
        Self {
            registry,
            executions,
            execution_seconds,
            tool_calls,
            refusals,
            pool_size,
            containers_running,
            downstream_up,
        }
    }

    /// Counts one finished execution.
    pub fn execution(&self, language: &str, outcome: &str, seconds: f64) {
        let labels = vec![
            ("language", language.to_owned()),
            ("outcome", outcome.to_owned()),
        ];
        self.executions.get_or_create(&labels).inc();
        self.execution_seconds
            .get_or_create(&vec![("language", language.to_owned())])
            .observe(seconds);
    }

    /// Counts tool calls of one execution to one tool.
    pub fn tool_calls(&self, tool: &str, ok: u64, errors: u64) {
        for (outcome, n) in [("ok", ok), ("error", errors)] {
            if n > 0 {
                let labels = vec![("tool", tool.to_owned()), ("outcome", outcome.to_owned())];
                self.tool_calls.get_or_create(&labels).inc_by(n);
            }
        }
    }

    /// Counts refusals by policy.
    pub fn refusals(&self, kind: &str, count: u64) {
        self.refusals
            .get_or_create(&vec![("kind", kind.to_owned())])
            .inc_by(count);
    }

    /// Adjusts the number of running executions.
    pub fn running(&self, delta: i64) {
        self.containers_running.inc_by(delta);
    }

    /// Sets the state gauges, then encodes everything in the Prometheus text format.
    pub fn encode(&self, pool: &[(&str, usize)], downstream: &[(String, bool)]) -> String {
        for (language, size) in pool {
            self.pool_size
                .get_or_create(&vec![("language", (*language).to_owned())])
                .set(*size as i64);
        }
        for (server, up) in downstream {
            self.downstream_up
                .get_or_create(&vec![("server", server.clone())])
                .set(i64::from(*up));
        }
        let mut out = String::new();
        // Writing into a String cannot fail.
        let _ = encode(&mut out, &self.registry);
        out
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn encodes_what_was_recorded() {
        let m = Metrics::new();
        m.execution("python", "success", 0.02);
        m.execution("python", "success", 0.03);
        m.execution("typescript", "timeout", 2.0);
        m.tool_calls("mcp__time__get_current_time", 1, 0);
        m.refusals("tool_not_allowed", 1);
        m.running(1);
        let text = m.encode(
            &[("python", 2)],
            &[("time".into(), true), ("git".into(), false)],
        );
        assert!(
            text.contains(
                r#"code_executor_executions_total{language="python",outcome="success"} 2"#
            ),
            "{text}"
        );
        assert!(text.contains(
            r#"code_executor_executions_total{language="typescript",outcome="timeout"} 1"#
        ));
        assert!(
            text.contains(r#"code_executor_execution_duration_seconds_count{language="python"} 2"#)
        );
        assert!(text.contains(
            r#"code_executor_tool_calls_total{tool="mcp__time__get_current_time",outcome="ok"} 1"#
        ));
        assert!(text.contains(r#"code_executor_refusals_total{kind="tool_not_allowed"} 1"#));
        assert!(text.contains(r#"code_executor_pool_size{language="python"} 2"#));
        assert!(text.contains("code_executor_containers_running 1"));
        assert!(text.contains(r#"code_executor_downstream_up{server="git"} 0"#));
        assert!(text.ends_with("# EOF\n"));
    }
}
