//! Helpers for tests that talk to the real Docker Engine.

#![allow(dead_code)]

use std::collections::HashMap;
use std::time::{Duration, Instant};

use bollard::query_parameters::ListContainersOptionsBuilder;
use bollard::Docker;
use code_executor_mcp::config::Settings;
use code_executor_mcp::downstream::DownstreamPool;
use code_executor_mcp::proxy::ToolBackend;
use code_executor_mcp::request::{ExecuteArgs, ExecutionRequest, Language};
use code_executor_mcp::sandbox::reaper::Owner;
use code_executor_mcp::sandbox::spec::OWNER_LABEL;
use code_executor_mcp::sandbox::Sandbox;

/// A sandbox with default settings, or `None` (with a printed reason) when the operator
/// set CODE_EXECUTOR_SKIP_DOCKER_TESTS=1. Panics with a clear message when the engine or
/// images are missing otherwise.
pub async fn sandbox() -> Option<Sandbox> {
    if std::env::var("CODE_EXECUTOR_SKIP_DOCKER_TESTS").as_deref() == Ok("1") {
        eprintln!("SKIPPED: CODE_EXECUTOR_SKIP_DOCKER_TESTS=1");
        return None;
    }
    let sandbox = Sandbox::new(Settings::default(), no_tools());
    let health = sandbox.health().await;
    assert!(
        health.engine_reachable,
        "Docker engine unreachable: {:?}",
        health.engine_error
    );
    for image in &health.images {
        assert!(image.present, "{}: run `make image-build`", image.image);
    }
    Some(sandbox)
}

pub async fn docker() -> Docker {
    Docker::connect_with_defaults()
        .unwrap()
        .negotiate_version()
        .await
        .unwrap()
}

pub fn python(code: &str, timeout_ms: u64) -> ExecutionRequest {
    let mut args = ExecuteArgs::with_code(code.to_owned());
    args.timeout_ms = Some(timeout_ms);
    args.validate(
        Language::Python,
        &code_executor_mcp::request::RequestPolicy::basic(&Settings::default().limits, None),
        "test",
    )
    .unwrap()
}

/// Ids of containers owned by this test process.
pub async fn my_containers(docker: &Docker) -> Vec<String> {
    let label = format!("{OWNER_LABEL}={}", Owner::current().label());
    let filters = HashMap::from([("label", vec![label])]);
    let opts = ListContainersOptionsBuilder::default()
        .all(true)
        .filters(&filters)
        .build();
    docker
        .list_containers(Some(opts))
        .await
        .unwrap()
        .into_iter()
        .filter_map(|c| c.id)
        .collect()
}

/// Waits until this process owns no container, or panics after `limit`.
pub async fn assert_all_removed(docker: &Docker, limit: Duration) {
    let start = Instant::now();
    loop {
        let left = my_containers(docker).await;
        if left.is_empty() {
            return;
        }
        assert!(
            start.elapsed() < limit,
            "containers left after {limit:?}: {left:?}"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

/// A tool backend with no servers.
pub fn no_tools() -> std::sync::Arc<dyn ToolBackend> {
    DownstreamPool::start(Vec::new())
}
