//! The warm pool against the real engine: containers are never reused, dead ones are
//! never handed out, the pool refills, and nothing is left after shutdown.

mod common;

use std::sync::Arc;
use std::time::{Duration, Instant};

use code_executor_mcp::config::Settings;
use code_executor_mcp::request::Language;
use code_executor_mcp::sandbox::Sandbox;
use common::{assert_all_removed, docker, my_containers, no_tools, python, sandbox};
use tokio_util::sync::CancellationToken;

const LIMIT: Duration = Duration::from_secs(20);

async fn pooled(size: usize) -> Option<Arc<Sandbox>> {
    sandbox().await?;
    let settings = Settings {
        pool_size: size,
        ..Settings::default()
    };
    let sb = Arc::new(Sandbox::new(settings, no_tools()));
    sb.start_pool();
    Some(sb)
}

async fn wait_for_pool(sb: &Sandbox, language: &str, want: usize) {
    let start = Instant::now();
    loop {
        let health = sb.health().await;
        if health.pool_sizes[language] >= want {
            return;
        }
        assert!(
            start.elapsed() < LIMIT,
            "pool never reached {want}: {:?}",
            health.pool_sizes
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

const PROBE: &str = "import os, socket\nprint(socket.gethostname())\nprint(sorted(os.listdir('/tmp')))\nopen('/tmp/mark', 'w').write('x')";

#[tokio::test]
async fn pooled_containers_are_never_reused_and_refill() {
    let Some(sb) = pooled(2).await else { return };
    let d = docker().await;
    wait_for_pool(&sb, "python", 2).await;
    let mut hosts = Vec::new();
    for _ in 0..3 {
        let r = sb
            .execute(&python(PROBE, 10_000), None, CancellationToken::new())
            .await
            .unwrap();
        assert!(r.success, "{r:?}");
        assert!(r.warm_start, "a filled pool serves warm");
        let mut lines = r.output.lines();
        hosts.push(lines.next().unwrap().to_owned());
        assert_eq!(
            lines.next(),
            Some("[]"),
            "a clean /tmp: the container never ran anything before"
        );
        wait_for_pool(&sb, "python", 2).await;
    }
    hosts.sort();
    hosts.dedup();
    assert_eq!(
        hosts.len(),
        3,
        "every execution had its own container: {hosts:?}"
    );
    sb.shutdown(LIMIT).await;
    assert_all_removed(&d, LIMIT).await;
}

#[tokio::test]
async fn a_pooled_container_killed_behind_our_back_is_not_handed_out() {
    let Some(sb) = pooled(1).await else { return };
    let d = docker().await;
    wait_for_pool(&sb, "python", 1).await;
    // Kill every container of ours: the pooled python one among them.
    for id in my_containers(&d).await {
        d.kill_container(&id, None).await.unwrap();
    }
    tokio::time::sleep(Duration::from_millis(500)).await;
    let r = sb
        .execute(
            &python("print('fine')", 10_000),
            None,
            CancellationToken::new(),
        )
        .await
        .unwrap();
    assert!(r.success, "{r:?}");
    assert_eq!(r.output, "fine\n");
    sb.shutdown(LIMIT).await;
    assert_all_removed(&d, LIMIT).await;
}

#[tokio::test]
async fn pool_off_runs_cold_and_other_specs_start_cold() {
    let Some(sb) = pooled(0).await else { return };
    let d = docker().await;
    let r = sb
        .execute(&python("print(1)", 10_000), None, CancellationToken::new())
        .await
        .unwrap();
    assert!(r.success && !r.warm_start, "{r:?}");
    assert_eq!(sb.health().await.pool_sizes["python"], 0);
    sb.shutdown(LIMIT).await;

    let Some(sb) = pooled(1).await else { return };
    wait_for_pool(&sb, "python", 1).await;
    let mut request = python("print(1)", 10_000);
    request.memory_mb = 64;
    let r = sb
        .execute(&request, None, CancellationToken::new())
        .await
        .unwrap();
    assert!(
        r.success && !r.warm_start,
        "a different memory limit needs its own spec: {r:?}"
    );
    sb.shutdown(LIMIT).await;
    assert_all_removed(&d, LIMIT).await;
}

#[tokio::test]
async fn typescript_is_pooled_too_and_shutdown_leaves_nothing() {
    let Some(sb) = pooled(1).await else { return };
    let d = docker().await;
    wait_for_pool(&sb, "typescript", 1).await;
    let mut args = code_executor_mcp::request::ExecuteArgs::with_code("console.log(40 + 2)".into());
    args.timeout_ms = Some(10_000);
    let request = args
        .validate(
            Language::TypeScript,
            &code_executor_mcp::request::RequestPolicy::basic(&Settings::default().limits, None),
            "test",
        )
        .unwrap();
    let r = sb
        .execute(&request, None, CancellationToken::new())
        .await
        .unwrap();
    assert!(r.success && r.warm_start, "{r:?}");
    assert_eq!(r.output, "42\n");
    sb.shutdown(LIMIT).await;
    assert_all_removed(&d, LIMIT).await;
}
