//! The sandbox lifecycle against the real Docker Engine: every exit path removes its
//! container, the spec reaches the engine as built, and infrastructure errors are clear.

mod common;

use std::collections::HashMap;
use std::time::{Duration, Instant};

use bollard::query_parameters::ListContainersOptionsBuilder;
use code_executor_mcp::config::{Limits, Settings};
use code_executor_mcp::sandbox::lifecycle::StreamKind;
use code_executor_mcp::sandbox::reaper::Owner;
use code_executor_mcp::sandbox::spec::{container_spec, SpecInput, EXECUTION_LABEL};
use code_executor_mcp::sandbox::{Sandbox, SandboxError};
use common::{assert_all_removed, docker, my_containers, no_tools, python, sandbox};
use tokio_util::sync::CancellationToken;

const REMOVAL_LIMIT: Duration = Duration::from_secs(15);

#[tokio::test]
async fn success_returns_output_and_removes_the_container() {
    let Some(sb) = sandbox().await else { return };
    let d = docker().await;
    let (tx, mut rx) = tokio::sync::mpsc::unbounded_channel();
    let r = sb
        .execute(
            &python(
                "import sys\nprint('out')\nprint('err', file=sys.stderr)",
                10_000,
            ),
            Some(tx),
            CancellationToken::new(),
        )
        .await
        .unwrap();
    assert!(r.success, "{r:?}");
    assert_eq!(r.output, "out\n");
    assert_eq!(r.stderr, "err\n");
    assert_eq!(r.exit_code, Some(0));
    let mut streamed = Vec::new();
    while let Ok(chunk) = rx.try_recv() {
        streamed.push(chunk);
    }
    assert!(
        streamed
            .iter()
            .any(|c| c.stream == StreamKind::Stdout && c.bytes == b"out\n"),
        "{streamed:?}"
    );
    sb.shutdown(REMOVAL_LIMIT).await;
    assert_all_removed(&d, REMOVAL_LIMIT).await;
}

#[tokio::test]
async fn engine_applies_the_hardened_spec() {
    let Some(sb) = sandbox().await else { return };
    let d = docker().await;
    let cancel = CancellationToken::new();
    let request = python("import time\ntime.sleep(30)", 60_000);
    let run = sb.execute(&request, None, cancel.clone());
    let inspect = async {
        let deadline = Instant::now() + Duration::from_secs(20);
        loop {
            if let Some(id) = my_containers(&d).await.first() {
                let info = d.inspect_container(id, None).await.unwrap();
                if info.state.as_ref().and_then(|s| s.running) == Some(true) {
                    cancel.cancel();
                    return info;
                }
            }
            assert!(Instant::now() < deadline, "container never ran");
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    };
    let (result, info) = tokio::join!(run, inspect);
    assert_eq!(result.unwrap().error_type.as_deref(), Some("Cancelled"));
    let h = info.host_config.unwrap();
    assert_eq!(h.readonly_rootfs, Some(true));
    assert_eq!(h.cap_drop, Some(vec!["ALL".to_owned()]));
    assert!(h
        .security_opt
        .unwrap()
        .iter()
        .any(|o| o.starts_with("no-new-privileges")));
    assert_eq!(h.network_mode.as_deref(), Some("none"));
    assert_eq!(h.memory, Some(256 << 20));
    assert_eq!(h.memory_swap, Some(256 << 20));
    // The runtime the engine ran it under is the one the sandbox decided.
    let runtime = sb.isolation().await.unwrap().runtime.clone();
    assert_eq!(h.runtime.as_deref(), Some(runtime.as_str()));
    let nproc = h
        .ulimits
        .clone()
        .unwrap()
        .into_iter()
        .find(|u| u.name.as_deref() == Some("nproc"))
        .unwrap();
    if runtime.starts_with("runsc") {
        // Under gVisor the 64-process cap is RLIMIT_NPROC inside gVisor's kernel.
        assert_eq!(nproc.hard, Some(64));
        assert_eq!(
            h.pids_limit,
            Some(code_executor_mcp::sandbox::spec::GVISOR_HOST_PIDS)
        );
    } else {
        assert_eq!(h.pids_limit, Some(64));
    }
    assert_eq!(h.log_config.unwrap().typ.as_deref(), Some("none"));
    let config = info.config.unwrap();
    assert_eq!(config.user.as_deref(), Some("1001:1001"));
    let env = config.env.unwrap();
    assert!(
        env.iter()
            .all(|e| !e.starts_with("CARGO") && !e.starts_with("RUST")),
        "server env leaked: {env:?}"
    );
    sb.shutdown(REMOVAL_LIMIT).await;
    assert_all_removed(&d, REMOVAL_LIMIT).await;
}

#[tokio::test]
async fn timeout_kills_near_the_limit_and_removes_the_container() {
    let Some(sb) = sandbox().await else { return };
    let d = docker().await;
    let start = Instant::now();
    let r = sb
        .execute(
            &python("while True:\n    pass", 1_500),
            None,
            CancellationToken::new(),
        )
        .await
        .unwrap();
    let elapsed = start.elapsed();
    assert!(r.timed_out && !r.success, "{r:?}");
    assert_eq!(r.exit_code, None);
    assert!(elapsed < Duration::from_secs(6), "took {elapsed:?}");
    sb.shutdown(REMOVAL_LIMIT).await;
    assert_all_removed(&d, REMOVAL_LIMIT).await;
}

#[tokio::test]
async fn cancellation_stops_and_removes_the_container() {
    let Some(sb) = sandbox().await else { return };
    let d = docker().await;
    let cancel = CancellationToken::new();
    let trigger = cancel.clone();
    tokio::spawn(async move {
        tokio::time::sleep(Duration::from_millis(1500)).await;
        trigger.cancel();
    });
    let start = Instant::now();
    let r = sb
        .execute(
            &python("import time\ntime.sleep(60)", 120_000),
            None,
            cancel,
        )
        .await
        .unwrap();
    assert_eq!(r.error_type.as_deref(), Some("Cancelled"), "{r:?}");
    assert!(start.elapsed() < Duration::from_secs(10));
    assert_all_removed(&d, REMOVAL_LIMIT).await;
}

#[tokio::test]
async fn shutdown_cancels_running_executions_and_refuses_new_ones() {
    let Some(sb) = sandbox().await else { return };
    let sb = std::sync::Arc::new(sb);
    let d = docker().await;
    let running = {
        let sb = sb.clone();
        tokio::spawn(async move {
            sb.execute(
                &python("import time\ntime.sleep(60)", 120_000),
                None,
                CancellationToken::new(),
            )
            .await
        })
    };
    tokio::time::sleep(Duration::from_millis(1500)).await;
    sb.shutdown(REMOVAL_LIMIT).await;
    let r = running.await.unwrap();
    assert!(
        matches!(&r, Ok(res) if res.error_type.as_deref() == Some("Cancelled"))
            || matches!(r, Err(SandboxError::Cancelled))
    );
    let again = sb
        .execute(&python("print(1)", 5_000), None, CancellationToken::new())
        .await;
    assert!(
        matches!(again, Err(SandboxError::ShuttingDown)),
        "{again:?}"
    );
    assert_all_removed(&d, REMOVAL_LIMIT).await;
}

#[tokio::test]
async fn missing_image_says_to_build_it() {
    let Some(_) = sandbox().await else { return };
    let settings = Settings {
        python_image: "code-executor/no-such-image:0".into(),
        ..Settings::default()
    };
    let sb = Sandbox::new(settings, no_tools());
    let err = sb
        .execute(&python("print(1)", 5_000), None, CancellationToken::new())
        .await
        .unwrap_err();
    assert!(matches!(err, SandboxError::ImageMissing { .. }), "{err:?}");
    assert!(err.to_string().contains("make image-build"), "{err}");
}

#[tokio::test]
async fn unreachable_engine_names_the_endpoint() {
    // nextest runs each test in its own process, so this variable stays here.
    std::env::set_var("DOCKER_HOST", "unix:///nonexistent/docker.sock");
    let sb = Sandbox::new(Settings::default(), no_tools());
    let err = sb
        .execute(&python("print(1)", 5_000), None, CancellationToken::new())
        .await
        .unwrap_err();
    let msg = err.to_string();
    assert!(
        matches!(err, SandboxError::EngineUnreachable { .. }),
        "{err:?}"
    );
    assert!(
        msg.contains("/nonexistent/docker.sock") && msg.contains("DOCKER_HOST"),
        "{msg}"
    );
    let health = sb.health().await;
    assert!(!health.engine_reachable);
}

#[tokio::test]
async fn orphans_of_a_dead_server_are_reaped_and_live_ones_kept() {
    let Some(sb) = sandbox().await else { return };
    let d = docker().await;
    let me = Owner::current();
    let dead_owner = Owner {
        host: me.host.clone(),
        pid: me.pid,
        start_time: me.start_time + 12345,
    }
    .label();
    let other_host_owner = Owner {
        host: "some-other-host".into(),
        pid: 1,
        start_time: 1,
    }
    .label();
    let limits = Limits::default();
    let mut ids = Vec::new();
    for (owner, exec) in [
        (dead_owner.as_str(), "orphan-test-dead"),
        (other_host_owner.as_str(), "orphan-test-other"),
    ] {
        let exec = format!("{exec}-{}", std::process::id());
        let spec = container_spec(&SpecInput {
            image: &sb.settings().python_image,
            language: "python",
            execution_id: &exec,
            owner,
            memory_mb: 64,
            limits: &limits,
            proxy_dir: None,
            preload: false,
            isolation: sb.isolation().await.unwrap(),
            grant_mounts: &[],
            egress_port: None,
            entrypoint: None,
        });
        let id = d.create_container(None, spec).await.unwrap().id;
        ids.push((id, exec));
    }
    let reaped = sb.reap_orphans().await.unwrap();
    assert!(reaped >= 1);
    sb.shutdown(REMOVAL_LIMIT).await;
    let exists = |exec: String| {
        let d = d.clone();
        async move {
            let filters = HashMap::from([("label", vec![format!("{EXECUTION_LABEL}={exec}")])]);
            let opts = ListContainersOptionsBuilder::default()
                .all(true)
                .filters(&filters)
                .build();
            !d.list_containers(Some(opts)).await.unwrap().is_empty()
        }
    };
    assert!(
        !exists(ids[0].1.clone()).await,
        "the dead server's container is reaped"
    );
    assert!(
        exists(ids[1].1.clone()).await,
        "another host's young container is left alone"
    );
    d.remove_container(
        &ids[1].0,
        Some(
            bollard::query_parameters::RemoveContainerOptionsBuilder::default()
                .force(true)
                .build(),
        ),
    )
    .await
    .unwrap();
}
