//! `doctor`: checks a deployment end to end and says what to fix.

use std::path::Path;

use tokio_util::sync::CancellationToken;

use crate::downstream::{DownstreamPool, ServerStatus};
use crate::request::{ExecuteArgs, Language};
use crate::sandbox::Sandbox;

/// Outcome of one check.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Status {
    Ok,
    Warn,
    Fail,
}

impl Status {
    pub fn symbol(self) -> &'static str {
        match self {
            Status::Ok => "[ok]  ",
            Status::Warn => "[warn]",
            Status::Fail => "[FAIL]",
        }
    }
}

/// One line of the report.
#[derive(Debug, Clone)]
pub struct Check {
    pub name: &'static str,
    pub status: Status,
    pub detail: String,
}

fn check(name: &'static str, status: Status, detail: impl Into<String>) -> Check {
    Check {
        name,
        status,
        detail: detail.into(),
    }
}

/// Runs every check.
pub async fn check_all(sandbox: &Sandbox) -> Vec<Check> {
    let mut out = Vec::new();
    let health = sandbox.health().await;
    if health.engine_reachable {
        out.push(check(
            "docker engine",
            Status::Ok,
            format!(
                "reachable, version {}",
                health.engine_version.clone().unwrap_or_default()
            ),
        ));
    } else {
        out.push(check(
            "docker engine",
            Status::Fail,
            health.engine_error.clone().unwrap_or_default(),
        ));
        return out;
    }
    for image in &health.images {
        if image.present {
            out.push(check(
                "image",
                Status::Ok,
                format!("{} ({})", image.image, image.language),
            ));
        } else {
            out.push(check(
                "image",
                Status::Fail,
                image.error.clone().unwrap_or_default(),
            ));
        }
    }
    match sandbox.engine().docker().await {
        Ok(docker) => match docker.info().await {
            Ok(info) => {
                let opts = info.security_options.unwrap_or_default();
                if opts.iter().any(|o| o.contains("name=seccomp")) {
                    out.push(check(
                        "seccomp",
                        Status::Ok,
                        "engine applies seccomp; sandboxes use our profile (seccomp/sandbox.json)",
                    ));
                } else {
                    out.push(check("seccomp", Status::Fail, "the engine reports no seccomp support: sandboxes would run without a syscall filter"));
                }
            }
            Err(e) => out.push(check(
                "seccomp",
                Status::Fail,
                format!("cannot read engine info: {e}"),
            )),
        },
        Err(e) => out.push(check("seccomp", Status::Fail, e.to_string())),
    }
    if Path::new("/sys/module/apparmor").exists() {
        out.push(check(
            "apparmor",
            Status::Warn,
            "the kernel has AppArmor; the sandbox profile is not applied yet",
        ));
    } else {
        out.push(check(
            "apparmor",
            Status::Warn,
            "this kernel has no AppArmor: sandboxes rely on seccomp, capabilities and namespaces",
        ));
    }
    if health.images.iter().all(|i| i.present) {
        for (language, code) in [
            (Language::Python, "print(6 * 7)"),
            (Language::TypeScript, "console.log(6 * 7)"),
        ] {
            let name = match language {
                Language::Python => "trial python",
                Language::TypeScript => "trial typescript",
            };
            let request = match ExecuteArgs::with_code(code.to_owned()).validate(
                language,
                &sandbox.settings().limits,
                sandbox.settings().tools.allowed.as_deref(),
            ) {
                Ok(r) => r,
                Err(e) => {
                    out.push(check(name, Status::Fail, e.to_string()));
                    continue;
                }
            };
            match sandbox
                .execute(&request, None, CancellationToken::new())
                .await
            {
                Ok(r) if r.success && r.output.trim() == "42" => out.push(check(
                    name,
                    Status::Ok,
                    format!("ran in a fresh container in {} ms", r.execution_time_ms),
                )),
                Ok(r) => out.push(check(
                    name,
                    Status::Fail,
                    format!("unexpected result: {}", r.summary()),
                )),
                Err(e) => out.push(check(name, Status::Fail, e.to_string())),
            }
        }
    }
    out
}

/// One line per downstream MCP server.
pub async fn check_downstream(pool: &DownstreamPool) -> Vec<Check> {
    let states = pool.states().await;
    if states.is_empty() {
        return vec![check(
            "downstream",
            Status::Warn,
            "no MCP servers configured: code can run but call no tools",
        )];
    }
    states
        .into_iter()
        .map(|s| match s.status {
            ServerStatus::Ready => check(
                "downstream",
                Status::Ok,
                format!("{}: {} tools", s.name, s.tool_count),
            ),
            _ => check(
                "downstream",
                Status::Fail,
                format!(
                    "{}: {:?}: {}",
                    s.name,
                    s.status,
                    s.error.unwrap_or_default()
                ),
            ),
        })
        .collect()
}
