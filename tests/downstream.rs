//! The downstream client pool against real MCP servers: `mcp-server-time` and `mcp-server-git`
//! from PyPI (stdio), and a Streamable HTTP server written with the official Python SDK.
//! All come from the test venv (`make venv`; `CODE_EXECUTOR_TEST_VENV` overrides its path).

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::{Duration, Instant};

use code_executor_mcp::downstream::{
    DownstreamError, DownstreamPool, ServerConfig, ServerEntry, ServerStatus,
};
use serde_json::{json, Map, Value};

fn init_log() {
    let _ = tracing_subscriber::fmt()
        .with_env_filter(
            tracing_subscriber::EnvFilter::try_from_env("CODE_EXECUTOR_LOG")
                .unwrap_or_else(|_| "downstream=debug,info,rmcp=warn".into()),
        )
        .with_test_writer()
        .try_init();
}

/// The test venv, which must hold the PyPI servers and the MCP SDK.
fn venv() -> PathBuf {
    let venv = std::env::var_os("CODE_EXECUTOR_TEST_VENV")
        .map(PathBuf::from)
        .unwrap_or_else(|| Path::new(env!("CARGO_MANIFEST_DIR")).join(".venv"));
    for bin in ["mcp-server-time", "mcp-server-git", "python"] {
        assert!(
            venv.join("bin").join(bin).exists(),
            "{} is missing: run `make venv` (it installs tests/requirements.txt), \
             or point CODE_EXECUTOR_TEST_VENV at a venv that has it",
            venv.join("bin").join(bin).display()
        );
    }
    venv
}

fn stdio(name: &str, command: impl Into<String>, args: &[&str]) -> ServerConfig {
    ServerConfig {
        name: name.into(),
        entry: ServerEntry::Stdio {
            command: command.into(),
            args: args.iter().map(|a| a.to_string()).collect(),
            env: BTreeMap::new(),
        },
        call_timeout: Duration::from_secs(30),
    }
}

fn args(value: Value) -> Option<Map<String, Value>> {
    value.as_object().cloned()
}

struct TempDir(PathBuf);

impl TempDir {
    fn new(tag: &str) -> Self {
        let nanos = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .unwrap()
            .as_nanos();
        let path =
            std::env::temp_dir().join(format!("downstream-{tag}-{}-{nanos}", std::process::id()));
        std::fs::create_dir_all(&path).unwrap();
        TempDir(path)
    }
}

impl Drop for TempDir {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}

/// A git repository with one commit, "first commit".
fn git_repo() -> TempDir {
    let dir = TempDir::new("repo");
    std::fs::write(dir.0.join("README.md"), "hello\n").unwrap();
    for argv in [
        &["init", "-q"][..],
        &["add", "README.md"],
        &[
            "-c",
            "user.name=Test",
            "-c",
            "user.email=test@example.com",
            "commit",
            "-q",
            "-m",
            "first commit",
        ],
    ] {
        let status = Command::new("git")
            .args(argv)
            .current_dir(&dir.0)
            .status()
            .expect("git is installed");
        assert!(status.success(), "git {argv:?} failed");
    }
    dir
}

/// Whether a process exists and is not a zombie.
fn alive(pid: u32) -> bool {
    match std::fs::read_to_string(format!("/proc/{pid}/stat")) {
        Ok(stat) => !matches!(
            stat.rsplit_once(')')
                .and_then(|(_, r)| r.trim_start().chars().next()),
            Some('Z' | 'X')
        ),
        Err(_) => false,
    }
}

async fn eventually(what: &str, timeout: Duration, mut check: impl AsyncFnMut() -> bool) {
    let deadline = Instant::now() + timeout;
    while !check().await {
        assert!(Instant::now() < deadline, "timed out waiting until {what}");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

fn text_of(result: &rmcp::model::CallToolResult) -> String {
    serde_json::to_string(result).unwrap()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn stdio_servers_from_pypi() {
    init_log();
    let bin = venv().join("bin");
    let repo = git_repo();
    let repo_path = repo.0.to_str().unwrap().to_owned();
    let pool = DownstreamPool::start(vec![
        stdio(
            "time",
            bin.join("mcp-server-time").to_str().unwrap(),
            &["--local-timezone", "UTC"],
        ),
        stdio("bogus", "/nonexistent/bogus-mcp-server", &[]),
        stdio(
            "crashy",
            "sh",
            &["-c", "echo 'crashy: cannot start, no config' >&2; exit 3"],
        ),
        stdio(
            "git",
            bin.join("mcp-server-git").to_str().unwrap(),
            &["--repository", &repo_path],
        ),
    ]);
    // start() never blocks: everything is still connecting.
    assert!(pool
        .states()
        .await
        .iter()
        .any(|s| s.status == ServerStatus::Connecting));
    pool.wait_ready(Duration::from_secs(60)).await;

    let states = pool.states().await;
    let state = |name: &str| states.iter().find(|s| s.name == name).unwrap().clone();
    assert_eq!(state("time").status, ServerStatus::Ready, "{states:?}");
    assert!(state("time").tool_count >= 2, "{states:?}");
    assert_eq!(state("git").status, ServerStatus::Ready, "{states:?}");
    assert_eq!(state("bogus").status, ServerStatus::Failed, "{states:?}");
    assert!(
        state("bogus")
            .error
            .unwrap()
            .contains("/nonexistent/bogus-mcp-server"),
        "{states:?}"
    );
    assert_eq!(state("crashy").status, ServerStatus::Failed, "{states:?}");
    // The child's stderr reached our log (and the error), not our stdout.
    assert!(
        state("crashy")
            .error
            .unwrap()
            .contains("crashy: cannot start, no config"),
        "{states:?}"
    );

    let tools = pool.tools().await;
    let names: Vec<&str> = tools.iter().map(|t| t.name.as_str()).collect();
    for expected in [
        "mcp__time__get_current_time",
        "mcp__time__convert_time",
        "mcp__git__git_log",
        "mcp__git__git_status",
    ] {
        assert!(names.contains(&expected), "{expected} not in {names:?}");
    }
    let get_time = pool.tool("mcp__time__get_current_time").await.unwrap();
    assert_eq!(
        (get_time.server.as_str(), get_time.tool.as_str()),
        ("time", "get_current_time")
    );
    assert!(get_time
        .input_schema
        .get("properties")
        .unwrap()
        .get("timezone")
        .is_some());
    assert!(pool.tool("mcp__time__nope").await.is_none());

    // A call.
    let result = pool
        .call(
            "mcp__time__get_current_time",
            args(json!({"timezone": "Europe/Paris"})),
        )
        .await
        .unwrap();
    assert_ne!(result.is_error, Some(true), "{result:?}");
    assert!(text_of(&result).contains("Europe/Paris"), "{result:?}");

    // A tool error is a result, not a DownstreamError.
    let result = pool
        .call(
            "mcp__time__get_current_time",
            args(json!({"timezone": "Not/AZone"})),
        )
        .await
        .unwrap();
    assert_eq!(result.is_error, Some(true), "{result:?}");

    // Unknown tools, on a known server and on an unknown one.
    for name in [
        "mcp__time__no_such_tool",
        "mcp__nobody__get_current_time",
        "get_current_time",
    ] {
        let err = pool.call(name, None).await.unwrap_err();
        assert!(
            matches!(err, DownstreamError::UnknownTool { .. }),
            "{name}: {err:?}"
        );
    }
    // A server that never started is unavailable, with its reason.
    let err = pool.call("mcp__bogus__anything", None).await.unwrap_err();
    match err {
        DownstreamError::ServerUnavailable { server, reason } => {
            assert_eq!(server, "bogus");
            assert!(reason.contains("bogus-mcp-server"), "{reason}");
        }
        other => panic!("{other:?}"),
    }

    // git.
    let result = pool
        .call(
            "mcp__git__git_log",
            args(json!({"repo_path": repo_path, "max_count": 3})),
        )
        .await
        .unwrap();
    assert_ne!(result.is_error, Some(true), "{result:?}");
    assert!(text_of(&result).contains("first commit"), "{result:?}");

    // Kill the time server: the next call restarts it and succeeds.
    let pid = pool.child_pid("time").await.expect("time runs as a child");
    assert!(alive(pid));
    let status = Command::new("kill")
        .args(["-9", &pid.to_string()])
        .status()
        .unwrap();
    assert!(status.success());
    eventually(
        "the killed child is gone",
        Duration::from_secs(10),
        async || !alive(pid),
    )
    .await;
    let result = pool
        .call(
            "mcp__time__convert_time",
            args(
                json!({"source_timezone": "UTC", "time": "12:00", "target_timezone": "Asia/Tokyo"}),
            ),
        )
        .await
        .unwrap();
    assert_ne!(result.is_error, Some(true), "{result:?}");
    assert!(text_of(&result).contains("Asia/Tokyo"), "{result:?}");
    let new_pid = pool.child_pid("time").await.expect("time was restarted");
    assert_ne!(new_pid, pid);
    assert_eq!(pool.states().await[0].status, ServerStatus::Ready);

    // Many calls in a row on the restarted server.
    for _ in 0..20 {
        pool.call(
            "mcp__time__get_current_time",
            args(json!({"timezone": "UTC"})),
        )
        .await
        .unwrap();
    }

    // Shutdown leaves no child behind.
    let git_pid = pool.child_pid("git").await.unwrap();
    pool.shutdown().await;
    for pid in [new_pid, git_pid] {
        assert!(!alive(pid), "child {pid} survived shutdown");
    }
    assert!(pool.tools().await.is_empty());
    let err = pool
        .call("mcp__time__get_current_time", None)
        .await
        .unwrap_err();
    assert!(
        matches!(err, DownstreamError::ServerUnavailable { .. }),
        "{err:?}"
    );
}

/// A Streamable HTTP server on the official Python SDK: echoes a header, sleeps (counting
/// cancellations), fails, and adds a tool on demand (announcing it with list_changed).
const HTTP_SERVER: &str = r#"
import sys
import anyio
from mcp.server.mcpserver import MCPServer, Context

server = MCPServer("http-fixture")
state = {"cancelled": 0}

@server.tool()
def whoami(ctx: Context) -> str:
    """Returns the X-Fixture-Token header."""
    return (ctx.headers or {}).get("x-fixture-token", "<none>")

@server.tool()
async def nap(seconds: float) -> str:
    """Sleeps."""
    try:
        await anyio.sleep(seconds)
    except anyio.get_cancelled_exc_class():
        state["cancelled"] += 1
        raise
    return "rested"

@server.tool()
def cancelled_naps() -> int:
    """How many naps were cancelled."""
    return state["cancelled"]

@server.tool()
def explode() -> str:
    """Always fails."""
    raise ValueError("kaboom")

@server.tool()
async def grow(ctx: Context) -> str:
    """Adds the tool `late` and announces it."""
    def late() -> str:
        return "better late than never"
    server.add_tool(late, name="late")
    await ctx.session.send_tool_list_changed()
    return "grown"

server.run("streamable-http", host="127.0.0.1", port=int(sys.argv[1]))
"#;

struct KillOnDrop(std::process::Child);

impl Drop for KillOnDrop {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn streamable_http_server() {
    init_log();
    let python = venv().join("bin/python");
    let dir = TempDir::new("http");
    let script = dir.0.join("server.py");
    std::fs::write(&script, HTTP_SERVER).unwrap();
    let port = std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port();

    let pool = DownstreamPool::start(vec![ServerConfig {
        name: "web".into(),
        entry: ServerEntry::Http {
            url: format!("http://127.0.0.1:{port}/mcp"),
            headers: BTreeMap::from([("X-Fixture-Token".into(), "tok-123".into())]),
        },
        call_timeout: Duration::from_millis(1500),
    }]);
    // Nothing listens yet: the server fails, and is retried with backoff.
    pool.wait_ready(Duration::from_secs(30)).await;
    assert_eq!(
        pool.states().await[0].status,
        ServerStatus::Failed,
        "{:?}",
        pool.states().await
    );

    let _server = KillOnDrop(
        Command::new(&python)
            .arg(&script)
            .arg(port.to_string())
            .stdout(std::process::Stdio::null())
            .stderr(std::process::Stdio::null())
            .spawn()
            .unwrap(),
    );
    eventually(
        "the HTTP server is Ready",
        Duration::from_secs(60),
        async || pool.states().await[0].status == ServerStatus::Ready,
    )
    .await;
    assert!(pool.tool("mcp__web__whoami").await.is_some());

    // Configured headers travel with every request.
    let result = pool.call("mcp__web__whoami", None).await.unwrap();
    assert!(text_of(&result).contains("tok-123"), "{result:?}");

    // A failing tool is a result with isError.
    let result = pool.call("mcp__web__explode", None).await.unwrap();
    assert_eq!(result.is_error, Some(true), "{result:?}");
    assert!(text_of(&result).contains("explode"), "{result:?}");

    // The per-server timeout, and the request is cancelled on the server.
    let started = Instant::now();
    let err = pool
        .call("mcp__web__nap", args(json!({"seconds": 20})))
        .await
        .unwrap_err();
    match &err {
        DownstreamError::Timeout {
            server,
            tool,
            timeout_ms,
        } => {
            assert_eq!(
                (server.as_str(), tool.as_str(), *timeout_ms),
                ("web", "nap", 1500)
            );
        }
        other => panic!("{other:?}"),
    }
    assert!(
        started.elapsed() < Duration::from_secs(5),
        "{:?}",
        started.elapsed()
    );
    eventually(
        "the server saw the cancellation",
        Duration::from_secs(10),
        async || {
            let r = pool.call("mcp__web__cancelled_naps", None).await.unwrap();
            text_of(&r).contains("\"1\"")
                || r.structured_content
                    .as_ref()
                    .is_some_and(|v| v.to_string().contains('1'))
        },
    )
    .await;
    // The connection is still good after a timeout.
    let result = pool
        .call("mcp__web__nap", args(json!({"seconds": 0.01})))
        .await
        .unwrap();
    assert!(text_of(&result).contains("rested"), "{result:?}");

    // notifications/tools/list_changed refreshes the cached list.
    assert!(pool.tool("mcp__web__late").await.is_none());
    pool.call("mcp__web__grow", None).await.unwrap();
    eventually(
        "the new tool is listed",
        Duration::from_secs(10),
        async || pool.tool("mcp__web__late").await.is_some(),
    )
    .await;
    let result = pool.call("mcp__web__late", None).await.unwrap();
    assert!(text_of(&result).contains("better late"), "{result:?}");

    pool.shutdown().await;
}
