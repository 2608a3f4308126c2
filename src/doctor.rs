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
    out.extend(check_engine_features(sandbox).await);
    out.push(match sandbox.isolation().await {
        Ok(iso) => check(
            "runtime",
            Status::Ok,
            if iso.runtime == "runc" {
                "runc (gVisor's runsc is not registered: `make gvisor-setup` adds it; sandbox.runtime = \"auto\" then picks it)".to_owned()
            } else {
                format!("{} (sandbox.runtime = {:?})", iso.runtime, sandbox.settings().sandbox.runtime)
            },
        ),
        Err(e) => check("runtime", Status::Fail, e.to_string()),
    });
    out.push(match sandbox.isolation().await {
        Ok(iso) => match (&iso.apparmor_profile, &iso.apparmor_note) {
            (Some(profile), _) => check("apparmor", Status::Ok, format!("profile {profile} applied to every sandbox")),
            (None, note) => check(
                "apparmor",
                Status::Warn,
                format!(
                    "{}; sandboxes rely on seccomp, no-new-privileges, dropped capabilities and namespaces",
                    note.as_deref().unwrap_or("not applied")
                ),
            ),
        },
        Err(e) => check("apparmor", Status::Fail, e.to_string()),
    });
    out.push(check_socket_base(&sandbox.settings().socket_base));
    out.push(check_grant_roots(&sandbox.settings().grants.allowed_roots));
    out.push(check_audit(sandbox.settings()));
    out.push(whoami());
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
                &sandbox.request_policy(),
                "doctor",
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

/// seccomp support and the cgroup controllers the limits need, from `docker info`.
async fn check_engine_features(sandbox: &Sandbox) -> Vec<Check> {
    let info = match sandbox.engine().docker().await {
        Ok(docker) => match docker.info().await {
            Ok(info) => info,
            Err(e) => {
                return vec![check(
                    "engine info",
                    Status::Fail,
                    format!("cannot read engine info: {e}"),
                )]
            }
        },
        Err(e) => return vec![check("engine info", Status::Fail, e.to_string())],
    };
    let mut out = Vec::new();
    let opts = info.security_options.clone().unwrap_or_default();
    let profile_ok = serde_json::from_str::<serde_json::Value>(crate::sandbox::seccomp::PROFILE)
        .ok()
        .and_then(|p| {
            p.get("defaultAction")
                .and_then(|a| a.as_str())
                .map(str::to_owned)
        });
    out.push(match (opts.iter().any(|o| o.contains("name=seccomp")), profile_ok) {
        (true, Some(action)) if action == "SCMP_ACT_ERRNO" => check(
            "seccomp",
            Status::Ok,
            "engine applies seccomp; every sandbox gets seccomp/sandbox.json (default: refuse with EPERM)",
        ),
        (true, other) => check("seccomp", Status::Fail, format!("seccomp/sandbox.json is not a deny-by-default profile (defaultAction {other:?})")),
        (false, _) => check("seccomp", Status::Fail, "the engine reports no seccomp support: sandboxes would run without a syscall filter"),
    });
    let missing: Vec<&str> = [
        ("memory", info.memory_limit),
        ("swap", info.swap_limit),
        ("pids", info.pids_limit),
        ("cpu quota", info.cpu_cfs_quota),
    ]
    .into_iter()
    .filter(|(_, present)| *present != Some(true))
    .map(|(name, _)| name)
    .collect();
    out.push(if missing.is_empty() {
        check(
            "cgroup limits",
            Status::Ok,
            format!(
                "memory, swap, pids and CPU limits enforceable (cgroup {})",
                info.cgroup_version
                    .map(|v| v.to_string())
                    .unwrap_or_else(|| "?".into())
            ),
        )
    } else {
        check(
            "cgroup limits",
            Status::Fail,
            format!(
                "the engine cannot enforce: {} (enable those cgroup controllers)",
                missing.join(", ")
            ),
        )
    });
    out
}

/// The directory of per-execution socket directories: ours, and not listable by others.
fn check_socket_base(base: &Path) -> Check {
    use std::os::unix::fs::MetadataExt;
    match std::fs::metadata(base) {
        Ok(meta) => {
            let mode = meta.mode() & 0o7777;
            let me = current_uid();
            if Some(meta.uid()) != me {
                check("socket base", Status::Fail, format!("{} is owned by uid {}, not by this user ({}): another user could replace the sockets", base.display(), meta.uid(), me.map_or("?".into(), |u| u.to_string())))
            } else if mode & 0o022 != 0 || mode & 0o004 != 0 {
                check("socket base", Status::Fail, format!("{} has mode {mode:o}: others may list or write it; it should be 0711 (the server sets it when it creates the directory)", base.display()))
            } else {
                check(
                    "socket base",
                    Status::Ok,
                    format!("{} owned by this user, mode {mode:o}", base.display()),
                )
            }
        }
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
            match base.parent().map(|p| p.exists()) {
                Some(true) => check(
                    "socket base",
                    Status::Ok,
                    format!(
                        "{} will be created (mode 0711) by the first execution",
                        base.display()
                    ),
                ),
                _ => check(
                    "socket base",
                    Status::Fail,
                    format!("{}: its parent directory does not exist", base.display()),
                ),
            }
        }
        Err(e) => check(
            "socket base",
            Status::Fail,
            format!("{}: {e}", base.display()),
        ),
    }
}

/// The roots under which host paths may be granted.
fn check_grant_roots(roots: &[std::path::PathBuf]) -> Check {
    if roots.is_empty() {
        return check("grant roots", Status::Ok, "none configured: permissions.read/write are refused (set ALLOWED_PROJECTS to allow some)");
    }
    let missing: Vec<String> = roots
        .iter()
        .filter(|r| !r.is_dir())
        .map(|r| r.display().to_string())
        .collect();
    if missing.is_empty() {
        check(
            "grant roots",
            Status::Ok,
            roots
                .iter()
                .map(|r| r.display().to_string())
                .collect::<Vec<_>>()
                .join(", "),
        )
    } else {
        check(
            "grant roots",
            Status::Fail,
            format!("not directories: {}", missing.join(", ")),
        )
    }
}

/// The audit directory exists (or can be made) and takes a write.
fn check_audit(settings: &crate::config::Settings) -> Check {
    if !settings.audit.enabled {
        return check(
            "audit log",
            Status::Warn,
            "turned off (audit.enabled = false): executions leave no record",
        );
    }
    let dir = settings
        .audit
        .dir
        .clone()
        .unwrap_or_else(crate::audit::default_dir);
    let probe = dir.join(format!(".doctor-{}", std::process::id()));
    let result = std::fs::create_dir_all(&dir)
        .and_then(|()| std::fs::write(&probe, b"probe"))
        .and_then(|()| std::fs::remove_file(&probe));
    match result {
        Ok(()) => match crate::audit::verify(&dir) {
            Ok(report) if report.is_ok() => check(
                "audit log",
                Status::Ok,
                format!("{} writable; {report}", dir.display()),
            ),
            Ok(report) => check(
                "audit log",
                Status::Fail,
                format!("{}: {report}", dir.display()),
            ),
            Err(crate::audit::AuditError::NoLog { .. }) => check(
                "audit log",
                Status::Ok,
                format!("{} writable; no records yet", dir.display()),
            ),
            Err(e) => check("audit log", Status::Fail, format!("{}: {e}", dir.display())),
        },
        Err(e) => check(
            "audit log",
            Status::Fail,
            format!(
                "{} is not writable: {e} (set CODE_EXECUTOR_AUDIT_DIR)",
                dir.display()
            ),
        ),
    }
}

/// Which user the server runs as (the engine's socket is root-equivalent).
fn whoami() -> Check {
    let uid = current_uid();
    check(
        "user",
        Status::Ok,
        format!(
            "uid {}: can reach the engine; whoever runs this server controls the host's Docker engine, so keep it a dedicated user",
            uid.map_or("?".into(), |u| u.to_string())
        ),
    )
}

fn current_uid() -> Option<u32> {
    use std::os::unix::fs::MetadataExt;
    std::fs::metadata("/proc/self").ok().map(|m| m.uid())
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

#[cfg(test)]
mod tests {
    use super::*;
    use std::os::unix::fs::PermissionsExt;

    #[test]
    fn a_socket_base_others_can_list_or_write_fails() {
        let base =
            std::env::temp_dir().join(format!("ce-doctor-base-{}", uuid::Uuid::new_v4().simple()));
        std::fs::create_dir(&base).unwrap();
        for (mode, expected) in [
            (0o711, Status::Ok),
            (0o755, Status::Fail),
            (0o733, Status::Fail),
            (0o777, Status::Fail),
        ] {
            std::fs::set_permissions(&base, std::fs::Permissions::from_mode(mode)).unwrap();
            let c = check_socket_base(&base);
            assert_eq!(c.status, expected, "mode {mode:o}: {}", c.detail);
        }
        std::fs::remove_dir(&base).unwrap();
        assert_eq!(
            check_socket_base(&base).status,
            Status::Ok,
            "created on first use"
        );
        let orphan = base.join("missing-parent/base");
        assert_eq!(check_socket_base(&orphan).status, Status::Fail);
    }

    #[test]
    fn grant_roots_must_be_directories() {
        assert_eq!(check_grant_roots(&[]).status, Status::Ok);
        let missing = std::path::PathBuf::from("/nonexistent/ce-root");
        assert_eq!(check_grant_roots(&[missing]).status, Status::Fail);
        assert_eq!(
            check_grant_roots(&[std::env::temp_dir()]).status,
            Status::Ok
        );
    }
}
