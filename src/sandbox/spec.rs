//! The hardened container configuration: one pure function from limits to a Docker
//! create body. Every isolation property of a sandbox is decided here and nowhere else.

use std::collections::HashMap;

use std::path::Path;

use bollard::models::{
    ContainerCreateBody, HostConfig, HostConfigLogConfig, Mount, MountBindOptions,
    MountBindOptionsPropagationEnum, MountType, ResourcesUlimits,
};

use crate::config::Limits;
use crate::policy::net::HostRule;
use crate::sandbox::isolation::Isolation;

/// Label every container of ours carries; the orphan reaper looks for it.
pub const MANAGED_LABEL: &str = "code-executor.managed";
/// Label holding the execution id.
pub const EXECUTION_LABEL: &str = "code-executor.execution-id";
/// Label naming the server process that owns the container (`host:pid:start-time`).
pub const OWNER_LABEL: &str = "code-executor.owner";
/// Label holding the language.
pub const LANGUAGE_LABEL: &str = "code-executor.language";

/// Unprivileged user and group the code runs as.
pub const SANDBOX_USER: &str = "1001:1001";
/// The whole environment of the sandbox: nothing is inherited from the server.
pub const SANDBOX_ENV: [&str; 3] = [
    "PATH=/usr/local/bin:/usr/bin:/bin",
    "HOME=/workspace",
    "LANG=C.UTF-8",
];
/// Per-user process limit (RLIMIT_NPROC). It counts every process of uid 1001 on the
/// host, across containers, so it is a host-wide backstop; the per-container cap is `pids`.
pub const NPROC_LIMIT: i64 = 4096;
/// Host pids cgroup limit of a gVisor sandbox: gVisor's own threads (see `container_spec`).
pub const GVISOR_HOST_PIDS: i64 = 4096;
/// Open files per process.
pub const NOFILE_LIMIT: i64 = 1024;

/// What varies between sandboxes.
#[derive(Debug, Clone)]
pub struct SpecInput<'a> {
    pub image: &'a str,
    pub language: &'a str,
    pub execution_id: &'a str,
    pub owner: &'a str,
    /// Memory for this execution, already checked against `limits.memory_mb`.
    pub memory_mb: u64,
    pub limits: &'a Limits,
    /// Host directory holding this execution's proxy socket, mounted read-only at
    /// [`PROXY_MOUNT`].
    pub proxy_dir: Option<&'a Path>,
    /// Prepared ahead for the warm pool: the runner loads common modules while it waits.
    pub preload: bool,
    /// Container runtime and AppArmor profile (decided once per server).
    pub isolation: &'a Isolation,
    /// Bind mounts of the host paths this execution was granted (already approved).
    pub grant_mounts: &'a [Mount],
    /// Loopback port of the egress relay inside the container, when egress is granted.
    pub egress_port: Option<u16>,
    /// Replaces the image's entrypoint (Deno's permission flags for grants and egress).
    pub entrypoint: Option<Vec<String>>,
}

/// Argument telling the runner it was prepared ahead (see `runner.py`).
pub const PRELOAD_ARG: &str = "--preload";

/// Where the proxy socket directory appears inside the container.
pub const PROXY_MOUNT: &str = "/run/mcp";

/// Builds the create body of a sandbox container.
pub fn container_spec(input: &SpecInput<'_>) -> ContainerCreateBody {
    let l = input.limits;
    let memory_bytes = (input.memory_mb as i64) * 1024 * 1024;
    let tmpfs_opts = format!("rw,nosuid,nodev,size={}m,mode=1777", l.tmpfs_mb);
    let workspace_opts = format!(
        "rw,nosuid,nodev,size={}m,uid=1001,gid=1001,mode=0700",
        l.tmpfs_mb
    );
    let file_size_limit = (l.tmpfs_mb as i64) * 1024 * 1024;
    // Under gVisor the code's processes live in gVisor's kernel, not the host's: its
    // RLIMIT_NPROC counts this sandbox's processes only, so it carries the `pids` cap,
    // while the host pids cgroup bounds the threads of gVisor itself (which needs far
    // more than 64: a shell fork bomb capped at 64 processes took ~1100 host threads, and at
    // 1024 or less gVisor died instead of failing fork).
    let gvisor = input.isolation.is_gvisor();

    let host_config = HostConfig {
        readonly_rootfs: Some(true),
        cap_drop: Some(vec!["ALL".to_owned()]),
        cap_add: None,
        privileged: Some(false),
        // Our own seccomp profile (seccomp/sandbox.json), narrower than Docker's default;
        // never unconfined.
        security_opt: Some(security_opts(input.isolation)),
        runtime: Some(input.isolation.runtime.clone()),
        network_mode: Some("none".to_owned()),
        pids_limit: Some(if gvisor { GVISOR_HOST_PIDS } else { l.pids }),
        memory: Some(memory_bytes),
        memory_swap: Some(memory_bytes),
        memory_swappiness: Some(0),
        nano_cpus: Some((l.cpus * 1e9) as i64),
        ulimits: Some(vec![
            ulimit("nofile", NOFILE_LIMIT),
            ulimit("nproc", if gvisor { l.pids } else { NPROC_LIMIT }),
            ulimit("fsize", file_size_limit),
            ulimit("core", 0),
        ]),
        tmpfs: Some(HashMap::from([
            ("/tmp".to_owned(), tmpfs_opts),
            ("/workspace".to_owned(), workspace_opts),
        ])),
        log_config: Some(HostConfigLogConfig {
            typ: Some("none".to_owned()),
            config: None,
        }),
        ipc_mode: Some("private".to_owned()),
        mounts: Some(
            input
                .proxy_dir
                .map(proxy_mount)
                .into_iter()
                .chain(input.grant_mounts.iter().cloned())
                .collect::<Vec<_>>(),
        )
        .filter(|mounts| !mounts.is_empty()),
        auto_remove: Some(false),
        init: Some(false),
        ..Default::default()
    };

    ContainerCreateBody {
        image: Some(input.image.to_owned()),
        user: Some(SANDBOX_USER.to_owned()),
        env: Some(sandbox_env(input.egress_port)),
        entrypoint: input.entrypoint.clone(),
        working_dir: Some("/workspace".to_owned()),
        labels: Some(HashMap::from([
            (MANAGED_LABEL.to_owned(), "true".to_owned()),
            (EXECUTION_LABEL.to_owned(), input.execution_id.to_owned()),
            (OWNER_LABEL.to_owned(), input.owner.to_owned()),
            (LANGUAGE_LABEL.to_owned(), input.language.to_owned()),
        ])),
        attach_stdin: Some(true),
        attach_stdout: Some(true),
        attach_stderr: Some(true),
        open_stdin: Some(true),
        stdin_once: Some(true),
        tty: Some(false),
        network_disabled: Some(true),
        cmd: input.preload.then(|| vec![PRELOAD_ARG.to_owned()]),
        host_config: Some(host_config),
        ..Default::default()
    }
}

/// `no-new-privileges`, our seccomp profile (never unconfined), and our AppArmor profile
/// when the host has it loaded.
fn security_opts(isolation: &Isolation) -> Vec<String> {
    let mut opts = vec![
        "no-new-privileges:true".to_owned(),
        super::seccomp::security_opt(),
    ];
    if let Some(profile) = &isolation.apparmor_profile {
        opts.push(format!("apparmor={profile}"));
    }
    opts
}

/// Port the egress relay listens on inside the container (its own loopback).
pub const EGRESS_RELAY_PORT: u16 = 18080;
/// The egress socket as the container sees it.
pub const EGRESS_SOCKET_IN_CONTAINER: &str = "/run/mcp/egress.sock";
const PROXY_SOCKET_IN_CONTAINER: &str = "/run/mcp/proxy.sock";

/// Deno's command line for an execution with path grants or egress (see "Deno command
/// line" in docs/runner-protocol.md). Deno's permissions are a second fence inside the
/// container; the bind mounts and the egress proxy are the boundary. Paths were approved
/// by `policy::mounts` (absolute, canonical, no commas: Deno splits values on commas).
pub fn deno_command(read: &[&str], write: &[&str], egress_hosts: Option<&[String]>) -> Vec<String> {
    let mut sockets = vec![PROXY_SOCKET_IN_CONTAINER];
    if egress_hosts.is_some() {
        sockets.push(EGRESS_SOCKET_IN_CONTAINER);
    }
    let read_list: Vec<&str> = sockets.iter().chain(read).chain(write).copied().collect();
    let write_list: Vec<&str> = sockets.iter().chain(write).copied().collect();
    let mut net: Vec<String> = sockets.iter().map(|s| format!("unix:{s}")).collect();
    if let Some(hosts) = egress_hosts {
        net.push(format!("127.0.0.1:{EGRESS_RELAY_PORT}"));
        net.extend(hosts.iter().cloned());
    }
    let mut cmd: Vec<String> = [
        "/usr/local/bin/deno",
        "run",
        "--no-prompt",
        "--no-remote",
        "--no-npm",
        "--no-config",
        "--no-lock",
        "--no-code-cache",
    ]
    .map(str::to_owned)
    .to_vec();
    cmd.push(format!("--allow-read={}", read_list.join(",")));
    cmd.push(format!("--allow-write={}", write_list.join(",")));
    cmd.push(format!("--allow-net={}", net.join(",")));
    if egress_hosts.is_some() {
        cmd.push("--allow-env=CODE_EXECUTOR_EGRESS_PORT".to_owned());
    }
    cmd.push("/opt/code-executor/runner.js".to_owned());
    cmd
}

/// Deno's `--allow-net` targets for egress rules: the rule as the proxy reads it, with
/// ports 80 and 443 where the rule names none (the proxy allows those two then).
pub fn deno_net_targets(rules: &[HostRule]) -> Vec<String> {
    rules
        .iter()
        .flat_map(|rule| match rule.port() {
            Some(_) => vec![rule.to_string()],
            None => vec![format!("{rule}:80"), format!("{rule}:443")],
        })
        .collect()
}

/// Loopback address of the egress relay inside the container.
pub fn egress_proxy_url(port: u16) -> String {
    format!("http://127.0.0.1:{port}")
}

/// The container's whole environment: [`SANDBOX_ENV`], plus the proxy variables that send
/// HTTP(S) clients through the egress relay when egress is granted.
fn sandbox_env(egress_port: Option<u16>) -> Vec<String> {
    let mut env: Vec<String> = SANDBOX_ENV.iter().map(|s| (*s).to_owned()).collect();
    if let Some(port) = egress_port {
        let url = egress_proxy_url(port);
        env.push(format!("CODE_EXECUTOR_EGRESS_PORT={port}"));
        for name in ["HTTP_PROXY", "HTTPS_PROXY", "http_proxy", "https_proxy"] {
            env.push(format!("{name}={url}"));
        }
        env.push("NO_PROXY=".to_owned());
        env.push("no_proxy=".to_owned());
    }
    env
}

/// The read-only bind mount of the proxy socket directory (private propagation).
fn proxy_mount(dir: &Path) -> Mount {
    Mount {
        target: Some(PROXY_MOUNT.to_owned()),
        source: Some(dir.display().to_string()),
        typ: Some(MountType::BIND),
        read_only: Some(true),
        bind_options: Some(MountBindOptions {
            propagation: Some(MountBindOptionsPropagationEnum::RPRIVATE),
            ..Default::default()
        }),
        ..Default::default()
    }
}

fn ulimit(name: &str, value: i64) -> ResourcesUlimits {
    ResourcesUlimits {
        name: Some(name.to_owned()),
        soft: Some(value),
        hard: Some(value),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A python sandbox with no proxy, grants, egress or entrypoint: tests change a field.
    fn input<'a>(limits: &'a Limits, isolation: &'a Isolation) -> SpecInput<'a> {
        SpecInput {
            image: "i",
            language: "python",
            execution_id: "e",
            owner: "o",
            memory_mb: 64,
            limits,
            proxy_dir: None,
            preload: false,
            isolation,
            grant_mounts: &[],
            egress_port: None,
            entrypoint: None,
        }
    }

    fn spec_with(limits: &Limits, memory_mb: u64) -> ContainerCreateBody {
        container_spec(&SpecInput {
            image: "code-executor/python:0.1.0",
            execution_id: "exec-1",
            owner: "host:1:2",
            memory_mb,
            ..input(limits, &runc())
        })
    }

    /// The ulimit `name` of a spec's host config.
    fn ulimit_of(s: &ContainerCreateBody, name: &str) -> ResourcesUlimits {
        host(s)
            .ulimits
            .iter()
            .flatten()
            .find(|u| u.name.as_deref() == Some(name))
            .cloned()
            .expect("ulimit set")
    }

    #[test]
    fn deno_command_matches_the_documented_contract() {
        let rules: Vec<HostRule> = ["example.com", "*.github.com", "api.test:8443"]
            .into_iter()
            .map(|r| HostRule::parse(r).unwrap())
            .collect();
        let hosts = deno_net_targets(&rules);
        let egress = deno_command(&[], &[], Some(&hosts));
        assert_eq!(
            egress[8..].join(" "),
            "--allow-read=/run/mcp/proxy.sock,/run/mcp/egress.sock \
             --allow-write=/run/mcp/proxy.sock,/run/mcp/egress.sock \
             --allow-net=unix:/run/mcp/proxy.sock,unix:/run/mcp/egress.sock,127.0.0.1:18080,example.com:80,example.com:443,*.github.com:80,*.github.com:443,api.test:8443 \
             --allow-env=CODE_EXECUTOR_EGRESS_PORT /opt/code-executor/runner.js"
        );
        let grants = deno_command(&["/data/in"], &["/data/out", "/srv/x"], None);
        assert_eq!(
            grants[8..].join(" "),
            "--allow-read=/run/mcp/proxy.sock,/data/in,/data/out,/srv/x \
             --allow-write=/run/mcp/proxy.sock,/data/out,/srv/x \
             --allow-net=unix:/run/mcp/proxy.sock /opt/code-executor/runner.js"
        );
        let doc = include_str!("../../docs/runner-protocol.md");
        assert!(
            doc.contains(&grants[..8].join(" ")),
            "the fixed flags are the documented ones"
        );
        assert!(!grants
            .iter()
            .any(|a| a == "-A" || a.starts_with("--allow-run") || a.starts_with("--allow-ffi")));
    }

    fn runc() -> Isolation {
        Isolation {
            runtime: "runc".to_owned(),
            apparmor_profile: None,
            apparmor_note: None,
        }
    }

    #[test]
    fn the_runtime_and_apparmor_profile_come_from_the_isolation() {
        let limits = Limits::default();
        let gvisor = Isolation {
            runtime: "runsc".to_owned(),
            apparmor_profile: Some("code-executor-sandbox".to_owned()),
            apparmor_note: None,
        };
        let s = container_spec(&input(&limits, &gvisor));
        assert_eq!(host(&s).runtime.as_deref(), Some("runsc"));
        assert_eq!(host(&s).pids_limit, Some(GVISOR_HOST_PIDS));
        assert_eq!(
            ulimit_of(&s, "nproc").hard,
            Some(64),
            "gVisor's kernel enforces the pids cap per sandbox"
        );
        let opts = host(&s).security_opt.clone().unwrap();
        assert!(opts.contains(&"apparmor=code-executor-sandbox".to_owned()));
        assert!(opts.contains(&"no-new-privileges:true".to_owned()));
        let plain = spec();
        assert_eq!(host(&plain).runtime.as_deref(), Some("runc"));
        let opts = host(&plain).security_opt.clone().unwrap();
        assert!(!opts.iter().any(|o| o.starts_with("apparmor")), "{opts:?}");
    }

    #[test]
    fn egress_sets_proxy_variables_and_grants_add_their_mounts() {
        let limits = Limits::default();
        let grant = Mount {
            target: Some("/srv/proj".to_owned()),
            source: Some("/srv/proj".to_owned()),
            typ: Some(MountType::BIND),
            read_only: Some(true),
            ..Default::default()
        };
        let s = container_spec(&SpecInput {
            language: "typescript",
            proxy_dir: Some(Path::new("/run/code-executor/x")),
            grant_mounts: std::slice::from_ref(&grant),
            egress_port: Some(18080),
            entrypoint: Some(vec!["/usr/local/bin/deno".to_owned()]),
            ..input(&limits, &runc())
        });
        let env = s.env.clone().unwrap();
        for var in ["HTTP_PROXY", "HTTPS_PROXY", "http_proxy", "https_proxy"] {
            assert!(
                env.contains(&format!("{var}=http://127.0.0.1:18080")),
                "{env:?}"
            );
        }
        assert!(env.contains(&"CODE_EXECUTOR_EGRESS_PORT=18080".to_owned()));
        let mounts = host(&s).mounts.clone().unwrap();
        assert_eq!(mounts.len(), 2);
        assert_eq!(mounts[1], grant);
        assert_eq!(
            s.entrypoint.as_deref(),
            Some(&["/usr/local/bin/deno".to_owned()][..])
        );
        assert_eq!(
            host(&s).network_mode.as_deref(),
            Some("none"),
            "egress never adds a network"
        );
    }

    fn spec() -> ContainerCreateBody {
        spec_with(&Limits::default(), 256)
    }

    fn host(s: &ContainerCreateBody) -> &HostConfig {
        s.host_config.as_ref().expect("host config")
    }

    #[test]
    fn runs_as_unprivileged_user_in_workspace() {
        let s = spec();
        assert_eq!(s.user.as_deref(), Some("1001:1001"));
        assert_eq!(s.working_dir.as_deref(), Some("/workspace"));
        assert_eq!(host(&s).privileged, Some(false));
    }

    #[test]
    fn root_filesystem_is_read_only() {
        assert_eq!(host(&spec()).readonly_rootfs, Some(true));
    }

    #[test]
    fn every_capability_is_dropped_and_none_added() {
        let s = spec();
        assert_eq!(host(&s).cap_drop.as_deref(), Some(&["ALL".to_owned()][..]));
        assert!(host(&s).cap_add.is_none());
    }

    #[test]
    fn no_new_privileges_and_never_unconfined_seccomp() {
        let opts = host(&spec()).security_opt.clone().unwrap();
        assert!(opts.contains(&"no-new-privileges:true".to_owned()));
        assert!(opts.iter().all(|o| !o.contains("unconfined")), "{opts:?}");
        assert!(
            opts.contains(&super::super::seccomp::security_opt()),
            "our profile, not the default"
        );
    }

    #[test]
    fn no_network() {
        let s = spec();
        assert_eq!(host(&s).network_mode.as_deref(), Some("none"));
        assert_eq!(s.network_disabled, Some(true));
    }

    #[test]
    fn resource_limits() {
        let s = spec();
        let h = host(&s);
        assert_eq!(h.pids_limit, Some(64));
        assert_eq!(h.memory, Some(256 * 1024 * 1024));
        assert_eq!(h.memory_swap, h.memory, "swap equal to memory: no swap");
        assert_eq!(h.nano_cpus, Some(1_000_000_000));
    }

    #[test]
    fn per_call_memory_is_what_the_spec_uses() {
        let s = spec_with(&Limits::default(), 64);
        assert_eq!(host(&s).memory, Some(64 * 1024 * 1024));
        assert_eq!(host(&s).memory_swap, Some(64 * 1024 * 1024));
    }

    #[test]
    fn operator_limits_flow_through() {
        let l = Limits {
            pids: 32,
            cpus: 0.5,
            tmpfs_mb: 16,
            ..Limits::default()
        };
        let s = spec_with(&l, 128);
        let h = host(&s);
        assert_eq!(h.pids_limit, Some(32));
        assert_eq!(h.nano_cpus, Some(500_000_000));
        assert!(h.tmpfs.as_ref().unwrap()["/tmp"].contains("size=16m"));
    }

    #[test]
    fn ulimits_cover_files_processes_size_and_core() {
        let s = spec();
        let u = host(&s).ulimits.clone().unwrap();
        let get = |n: &str| ulimit_of(&s, n);
        assert_eq!(get("core").soft, Some(0));
        assert_eq!(get("core").hard, Some(0));
        assert_eq!(get("nofile").hard, Some(NOFILE_LIMIT));
        assert_eq!(get("nproc").hard, Some(NPROC_LIMIT));
        assert_eq!(get("fsize").hard, Some(64 * 1024 * 1024));
        assert!(
            u.iter().all(|x| x.soft == x.hard),
            "soft equals hard: code cannot raise it"
        );
    }

    #[test]
    fn tmpfs_mounts_are_sized_nosuid_nodev() {
        let s = spec();
        let t = host(&s).tmpfs.clone().unwrap();
        assert_eq!(t.len(), 2);
        for path in ["/tmp", "/workspace"] {
            let o = &t[path];
            assert!(
                o.contains("nosuid") && o.contains("nodev") && o.contains("size=64m"),
                "{path}: {o}"
            );
        }
        assert!(t["/workspace"].contains("uid=1001"));
    }

    #[test]
    fn output_never_reaches_a_log_driver() {
        let s = spec();
        assert_eq!(
            host(&s).log_config.as_ref().unwrap().typ.as_deref(),
            Some("none")
        );
    }

    #[test]
    fn environment_is_exactly_path_home_lang() {
        let env = spec().env.unwrap();
        let names: Vec<&str> = env.iter().map(|e| e.split('=').next().unwrap()).collect();
        assert_eq!(names, ["PATH", "HOME", "LANG"]);
    }

    #[test]
    fn labels_mark_it_ours_with_its_execution() {
        let labels = spec().labels.unwrap();
        assert_eq!(labels[MANAGED_LABEL], "true");
        assert_eq!(labels[EXECUTION_LABEL], "exec-1");
        assert_eq!(labels[OWNER_LABEL], "host:1:2");
        assert_eq!(labels[LANGUAGE_LABEL], "python");
    }

    #[test]
    fn stdin_is_attached_once_without_tty() {
        let s = spec();
        assert_eq!(s.open_stdin, Some(true));
        assert_eq!(s.stdin_once, Some(true));
        assert_eq!(s.tty, Some(false));
        assert_eq!(s.attach_stdout, Some(true));
        assert_eq!(s.attach_stderr, Some(true));
    }

    #[test]
    fn no_host_paths_are_mounted() {
        let s = spec();
        assert!(host(&s).binds.is_none());
        assert!(host(&s).mounts.is_none());
    }

    #[test]
    fn only_the_proxy_directory_is_mounted_read_only() {
        let limits = Limits::default();
        let dir = Path::new("/run/code-executor/abc");
        let s = container_spec(&SpecInput {
            proxy_dir: Some(dir),
            preload: true,
            ..input(&limits, &runc())
        });
        let mounts = host(&s).mounts.clone().unwrap();
        assert_eq!(mounts.len(), 1);
        let m = &mounts[0];
        assert_eq!(m.source.as_deref(), Some("/run/code-executor/abc"));
        assert_eq!(m.target.as_deref(), Some("/run/mcp"));
        assert_eq!(m.typ, Some(MountType::BIND));
        assert_eq!(m.read_only, Some(true));
        assert_eq!(
            m.bind_options.as_ref().unwrap().propagation,
            Some(MountBindOptionsPropagationEnum::RPRIVATE)
        );
        assert!(host(&s).binds.is_none());
        assert_eq!(
            s.cmd,
            Some(vec![PRELOAD_ARG.to_owned()]),
            "pooled containers preload"
        );
        assert_eq!(spec().cmd, None, "cold containers do not");
    }
}
