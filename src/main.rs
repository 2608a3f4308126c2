//! The `code-executor-mcp` binary: parses the command line, wires the parts, and maps
//! errors to exit codes. `anyhow` lives here and nowhere else.

use std::io::Write;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use anyhow::Context;
use clap::{Parser, Subcommand};
use rmcp::ServiceExt;
use tokio_util::sync::CancellationToken;

use code_executor_mcp::audit::{AuditLog, AuditOptions};
use code_executor_mcp::config::{Settings, VERSION};
use code_executor_mcp::doctor;
use code_executor_mcp::downstream::{config::load_servers_from_env, DownstreamPool};
use code_executor_mcp::request::{ExecuteArgs, Language, Permissions};
use code_executor_mcp::sandbox::lifecycle::{OutputChunk, StreamKind};
use code_executor_mcp::sandbox::Sandbox;
use code_executor_mcp::server::api_keys::ApiKeys;
use code_executor_mcp::server::{http, ExecutorServer};

/// After the drain, how long in-flight HTTP responses get before sessions are ended.
const RESPONSE_FLUSH: Duration = Duration::from_millis(750);

/// How long shutdown waits for running executions' containers to be removed.
const SHUTDOWN_GRACE: Duration = Duration::from_secs(15);

#[derive(Debug, Parser)]
#[command(
    name = "code-executor-mcp",
    version,
    about = "Run untrusted Python and TypeScript in a fresh hardened container per execution, over MCP"
)]
struct Cli {
    #[command(subcommand)]
    command: Option<Command>,
}

#[derive(Debug, Subcommand)]
enum Command {
    /// Serve MCP over stdio (the default).
    Serve {
        /// Serve Streamable HTTP on this address instead (not available yet).
        #[arg(long, value_name = "ADDR")]
        http: Option<String>,
    },
    /// Run one script (.py, or .ts/.js) in a sandbox and stream its output.
    Run {
        /// The script to run.
        file: PathBuf,
        /// Timeout in milliseconds.
        #[arg(long)]
        timeout_ms: Option<u64>,
        /// Memory limit in MiB (at most the operator's cap).
        #[arg(long)]
        memory_mb: Option<u64>,
        /// File whose contents become the code's standard input.
        #[arg(long, value_name = "FILE")]
        stdin_file: Option<PathBuf>,
        /// A tool the code may call (exact name or glob like `mcp__git__*`); repeatable.
        #[arg(long = "allow-tool", value_name = "PATTERN")]
        allowed_tools: Vec<String>,
        /// A host path to mount read-only (under ALLOWED_PROJECTS); repeatable.
        #[arg(long = "read", value_name = "PATH")]
        read: Vec<String>,
        /// A host path to mount read-write (under ALLOWED_PROJECTS); repeatable.
        #[arg(long = "write", value_name = "PATH")]
        write: Vec<String>,
        /// A host the code may reach through the egress proxy (allowed by the operator's
        /// egress.allowed_hosts); repeatable.
        #[arg(long = "net", value_name = "HOST[:PORT]")]
        net: Vec<String>,
    },
    /// Check the deployment: engine, images, seccomp, AppArmor, a trial execution.
    Doctor,
    /// The tamper-evident audit log.
    Audit {
        #[command(subcommand)]
        action: AuditAction,
    },
    /// Exit 0 when a `serve --http` server answers /healthz (for container health checks).
    Healthcheck {
        /// The server's address.
        #[arg(long, default_value = "127.0.0.1:3333")]
        addr: String,
    },
}

#[derive(Debug, Subcommand)]
enum AuditAction {
    /// Check the hash chain; report the first broken link. Exit 1 when broken.
    Verify {
        /// The audit directory or one of its files (default: the configured directory).
        path: Option<PathBuf>,
        /// The last record's `SEQ:HASH` as the server logged it, to detect truncation.
        #[arg(long, value_name = "SEQ:HASH")]
        head: Option<String>,
    },
}

fn main() {
    let cli = Cli::parse();
    // `run` and `doctor` talk to a person: only warnings unless asked.
    let quiet = matches!(
        cli.command,
        Some(
            Command::Run { .. }
                | Command::Doctor
                | Command::Healthcheck { .. }
                | Command::Audit { .. }
        )
    );
    init_tracing(if quiet {
        "warn"
    } else {
        "info,rmcp=warn,bollard=warn"
    });
    let runtime = match tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
    {
        Ok(rt) => rt,
        Err(e) => {
            eprintln!("error: cannot start the async runtime: {e}");
            std::process::exit(1);
        }
    };
    let code = runtime.block_on(async {
        match cli.command.unwrap_or(Command::Serve { http: None }) {
            Command::Serve { http } => serve(http).await.map(|()| 0),
            Command::Run {
                file,
                timeout_ms,
                memory_mb,
                stdin_file,
                allowed_tools,
                read,
                write,
                net,
            } => {
                let permissions = Permissions { read, write, net };
                run_file(
                    file,
                    timeout_ms,
                    memory_mb,
                    stdin_file,
                    allowed_tools,
                    permissions,
                )
                .await
            }
            Command::Doctor => doctor_command().await,
            Command::Healthcheck { addr } => healthcheck(&addr).await,
            Command::Audit {
                action: AuditAction::Verify { path, head },
            } => audit_verify(path, head),
        }
    });
    match code {
        Ok(code) => std::process::exit(code),
        Err(e) => {
            eprintln!("error: {e:#}");
            std::process::exit(1);
        }
    }
}

fn init_tracing(default_filter: &str) {
    let filter = tracing_subscriber::EnvFilter::try_from_env("CODE_EXECUTOR_LOG")
        .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new(default_filter));
    tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr)
        .with_ansi(false)
        .init();
}

async fn serve(http: Option<String>) -> anyhow::Result<()> {
    let settings = Settings::load().context("loading settings")?;
    let grace = Duration::from_secs(settings.shutdown_grace_secs);
    // Checked before anything starts: a refused HTTP set-up leaves nothing behind.
    let http = match http {
        Some(addr) => Some(http_options(&addr, &settings)?),
        None => None,
    };
    let downstream = start_downstream()?;
    let audit = open_audit(&settings)?;
    let mut sandbox = Sandbox::new(settings, downstream.clone());
    if let Some(log) = audit.clone() {
        sandbox = sandbox.with_audit(log);
    }
    let sandbox = Arc::new(sandbox);
    if let Err(e) = sandbox.grant_roots() {
        anyhow::bail!("{e}");
    }
    // A runtime or AppArmor profile the operator asked for and the host lacks stops the
    // server here, before any client connects; an unreachable engine does not (it is
    // reported per call and retried).
    match sandbox.isolation().await {
        Ok(iso) => {
            if let Some(note) = &iso.apparmor_note {
                tracing::warn!("{note}; containers run with seccomp, no-new-privileges and no capabilities, without an AppArmor profile");
            }
        }
        Err(e @ code_executor_mcp::sandbox::SandboxError::Isolation(_)) => {
            return Err(anyhow::anyhow!(e)).context("checking the sandbox isolation settings");
        }
        Err(e) => {
            tracing::warn!(error = %e, "could not decide the sandbox runtime yet; will retry on the first execution")
        }
    }
    sandbox.start_pool();
    {
        let sandbox = sandbox.clone();
        tokio::spawn(async move {
            match sandbox.reap_orphans().await {
                Ok(0) => {}
                Ok(n) => tracing::info!(count = n, "removed orphaned sandbox containers"),
                Err(e) => tracing::warn!(error = %e, "could not check for orphaned containers"),
            }
            let health = sandbox.health().await;
            if let Some(e) = &health.engine_error {
                tracing::warn!("{e}");
            }
            for image in health.images.iter().filter(|i| !i.present) {
                tracing::warn!(image = %image.image, "{}", image.error.as_deref().unwrap_or("image missing"));
            }
        });
    }
    let served = match http {
        Some(options) => serve_http(options, &sandbox, &downstream, grace).await,
        None => serve_stdio(&sandbox, &downstream).await,
    };
    sandbox.shutdown(SHUTDOWN_GRACE).await;
    downstream.shutdown().await;
    if let Some(head) = audit.as_ref().and_then(|log| log.head()) {
        // Keep this elsewhere: `audit verify --head` then also detects a cut-off tail.
        tracing::info!(head = %head, "audit log head at shutdown");
    }
    served
}

/// Stops taking executions and lets the running ones finish within `grace`; a second
/// signal cuts the wait short.
async fn drain(sandbox: &Sandbox, grace: Duration) {
    tokio::select! {
        _ = sandbox.drain(grace) => {}
        signal = shutdown_signal() => tracing::info!("{signal} received again: stopping now"),
    }
}

async fn serve_stdio(
    sandbox: &Arc<Sandbox>,
    downstream: &Arc<DownstreamPool>,
) -> anyhow::Result<()> {
    let exe = std::env::current_exe()
        .map(|p| p.display().to_string())
        .unwrap_or_else(|_| "code-executor-mcp".into());
    eprintln!(
        "code-executor-mcp {VERSION} ready: MCP over stdio (tools executePython, executeTypescript, health).\n\
         Point a client at it, e.g. in .mcp.json: {{\"mcpServers\": {{\"code-executor\": {{\"command\": \"{exe}\", \"args\": [\"serve\"]}}}}}}\n\
         Logs go to stderr; stop with Ctrl-C or by closing stdin."
    );
    let service = ExecutorServer::new(sandbox.clone(), downstream.clone())
        .serve(rmcp::transport::stdio())
        .await
        .context("starting the MCP session on stdio")?;
    // No grace period here: stdio clients (the official SDKs) close stdin, then send
    // SIGTERM after 2 s and SIGKILL after 4 s, and nobody is left to read a result. So
    // running executions are stopped and removed at once; `serve --http` drains instead.
    let cancel = service.cancellation_token();
    tokio::select! {
        ended = service.waiting() => {
            if let Err(e) = ended {
                tracing::warn!(error = %e, "MCP session ended with an error");
            }
        }
        signal = shutdown_signal() => {
            tracing::info!("{signal} received: shutting down");
            cancel.cancel();
        }
    }
    Ok(())
}

/// The HTTP listener's settings from `--http ADDR` and the settings; refuses an exposed
/// address without API keys.
fn http_options(addr: &str, settings: &Settings) -> anyhow::Result<http::HttpOptions> {
    let addr: std::net::SocketAddr = addr.parse().with_context(|| {
        format!("--http {addr:?}: expected IP:PORT, e.g. 127.0.0.1:3333 or 0.0.0.0:3333")
    })?;
    let keys_text = match (
        &settings.http.api_keys_file,
        std::env::var("CODE_EXECUTOR_API_KEYS"),
    ) {
        (_, Ok(inline)) if !inline.trim().is_empty() => inline.replace(',', "\n"),
        (Some(path), _) => std::fs::read_to_string(path)
            .with_context(|| format!("reading API keys from {}", path.display()))?,
        _ => String::new(),
    };
    let keys = ApiKeys::parse(&keys_text)?;
    http::check_exposure(addr, &keys)?;
    let mut allowed_hosts = settings.http.allowed_hosts.clone();
    if !addr.ip().is_unspecified() && !addr.ip().is_loopback() {
        allowed_hosts.push(addr.ip().to_string());
    }
    Ok(http::HttpOptions {
        addr,
        keys,
        allowed_hosts,
        allowed_origins: settings.http.allowed_origins.clone(),
        max_body_bytes: settings.http.max_body_bytes,
    })
}

async fn serve_http(
    options: http::HttpOptions,
    sandbox: &Arc<Sandbox>,
    downstream: &Arc<DownstreamPool>,
    grace: Duration,
) -> anyhow::Result<()> {
    let addr = options.addr;
    let clients = options.keys.len();
    let listener = CancellationToken::new();
    let sessions = CancellationToken::new();
    let mut server = tokio::spawn(http::serve(
        options,
        sandbox.clone(),
        downstream.clone(),
        listener.clone(),
        sessions.clone(),
    ));
    eprintln!(
        "code-executor-mcp {VERSION} ready: MCP over Streamable HTTP at http://{addr}/mcp ({clients} API key(s)); \
         /healthz, /readyz, /metrics on the same port. Stop with Ctrl-C or SIGTERM."
    );
    tokio::select! {
        ended = &mut server => {
            // The listener stopped by itself: a bind error, most likely.
            return match ended {
                Ok(result) => result.map_err(anyhow::Error::from),
                Err(e) => Err(anyhow::anyhow!("HTTP server task failed: {e}")),
            };
        }
        signal = shutdown_signal() => {
            tracing::info!("{signal} received: finishing running executions (up to {} s)", grace.as_secs());
        }
    }
    drain(sandbox, grace).await;
    // Results computed just now are still on their way to the clients (through Docker's
    // port proxy that can take a moment): only after a short flush do we stop listening
    // and end the sessions. New calls meanwhile are refused by the drained sandbox.
    tokio::time::sleep(RESPONSE_FLUSH).await;
    listener.cancel();
    sessions.cancel();
    match tokio::time::timeout(Duration::from_secs(10), server).await {
        Ok(Ok(result)) => result.map_err(anyhow::Error::from),
        Ok(Err(e)) => Err(anyhow::anyhow!("HTTP server task failed: {e}")),
        Err(_) => Ok(()),
    }
}

/// Reads the downstream MCP servers and starts connecting to them in the background.
fn start_downstream() -> anyhow::Result<Arc<DownstreamPool>> {
    let servers = load_servers_from_env().context("reading downstream MCP servers")?;
    if servers.is_empty() {
        tracing::info!(
            "no downstream MCP servers configured (MCP_CONFIG_PATH, ./.mcp.json, ~/.claude.json)"
        );
    } else {
        let names: Vec<&str> = servers.iter().map(|s| s.name.as_str()).collect();
        tracing::info!(servers = ?names, "connecting to downstream MCP servers");
    }
    Ok(DownstreamPool::start(servers))
}

async fn shutdown_signal() -> &'static str {
    let mut term = match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()) {
        Ok(s) => s,
        Err(_) => {
            let _ = tokio::signal::ctrl_c().await;
            return "SIGINT";
        }
    };
    tokio::select! {
        _ = tokio::signal::ctrl_c() => "SIGINT",
        _ = term.recv() => "SIGTERM",
    }
}

async fn run_file(
    file: PathBuf,
    timeout_ms: Option<u64>,
    memory_mb: Option<u64>,
    stdin_file: Option<PathBuf>,
    allowed_tools: Vec<String>,
    permissions: Permissions,
) -> anyhow::Result<i32> {
    let language = Language::from_path(&file)?;
    let code =
        std::fs::read_to_string(&file).with_context(|| format!("reading {}", file.display()))?;
    let mut args = ExecuteArgs::with_code(code);
    args.timeout_ms = timeout_ms;
    args.memory_mb = memory_mb;
    args.allowed_tools = allowed_tools;
    args.permissions = Some(permissions);
    if let Some(path) = stdin_file {
        args.stdin = Some(
            std::fs::read_to_string(&path)
                .with_context(|| format!("reading {}", path.display()))?,
        );
    }
    let settings = Settings::load().context("loading settings")?;
    let downstream = start_downstream()?;
    let audit = open_audit(&settings)?;
    let mut sandbox = Sandbox::new(settings, downstream.clone());
    if let Some(log) = audit {
        sandbox = sandbox.with_audit(log);
    }
    let request = args.validate(language, &sandbox.request_policy(), "cli")?;
    if !request.allowlist.is_empty() {
        downstream.wait_ready(Duration::from_secs(15)).await;
    }
    let (tx, mut rx) = tokio::sync::mpsc::unbounded_channel::<OutputChunk>();
    let printer = tokio::spawn(async move {
        while let Some(chunk) = rx.recv().await {
            let _ = match chunk.stream {
                StreamKind::Stdout => std::io::stdout()
                    .write_all(&chunk.bytes)
                    .and_then(|()| std::io::stdout().flush()),
                StreamKind::Stderr => std::io::stderr()
                    .write_all(&chunk.bytes)
                    .and_then(|()| std::io::stderr().flush()),
            };
        }
    });
    let cancel = CancellationToken::new();
    let on_signal = cancel.clone();
    tokio::spawn(async move {
        shutdown_signal().await;
        on_signal.cancel();
    });
    let result = sandbox.execute(&request, Some(tx), cancel).await;
    let _ = printer.await;
    sandbox.shutdown(SHUTDOWN_GRACE).await;
    downstream.shutdown().await;
    let result = result?;
    // An exception's traceback is already on stderr; say what the stream cannot.
    if let Some(error) = result
        .error
        .as_ref()
        .filter(|e| !result.stderr.contains(e.lines().last().unwrap_or(e)))
    {
        eprintln!("{error}");
    }
    if result.truncated {
        eprintln!(
            "[output was truncated at {} bytes per stream]",
            sandbox.settings().limits.output_cap_bytes
        );
    }
    Ok(if result.timed_out {
        124
    } else if result.error_type.as_deref() == Some("Cancelled") {
        130
    } else {
        result.exit_code.map(|c| c as i32).unwrap_or(1)
    })
}

async fn doctor_command() -> anyhow::Result<i32> {
    let settings = Settings::load().context("loading settings")?;
    let downstream = start_downstream()?;
    let sandbox = Sandbox::new(settings, downstream.clone());
    downstream.wait_ready(Duration::from_secs(15)).await;
    let mut report = doctor::check_all(&sandbox).await;
    report.extend(doctor::check_downstream(&downstream).await);
    for check in &report {
        println!(
            "{} {:<22} {}",
            check.status.symbol(),
            check.name,
            check.detail
        );
    }
    sandbox.shutdown(SHUTDOWN_GRACE).await;
    downstream.shutdown().await;
    let failed = report.iter().any(|c| c.status == doctor::Status::Fail);
    if failed {
        println!("\nSome checks failed: fix them (the lines above say how) and run `code-executor-mcp doctor` again.");
    }
    Ok(i32::from(failed))
}

/// The audit directory the settings name (default under `$XDG_STATE_HOME`).
fn audit_dir(settings: &Settings) -> PathBuf {
    settings
        .audit
        .dir
        .clone()
        .unwrap_or_else(code_executor_mcp::audit::default_dir)
}

/// Opens the audit log when it is on; a log that cannot be opened stops the server.
fn open_audit(settings: &Settings) -> anyhow::Result<Option<Arc<AuditLog>>> {
    if !settings.audit.enabled {
        tracing::warn!("audit log turned off (audit.enabled = false)");
        return Ok(None);
    }
    let dir = audit_dir(settings);
    let a = &settings.audit;
    let log = AuditLog::open(
        &dir,
        AuditOptions {
            max_file_bytes: a.max_file_bytes,
            max_files: a.max_files,
            include_plaintext: a.include_plaintext,
            fsync: a.fsync,
        },
    )
    .with_context(|| {
        format!(
            "opening the audit log in {} (set CODE_EXECUTOR_AUDIT_DIR, or audit.enabled = false)",
            dir.display()
        )
    })?;
    tracing::info!(dir = %dir.display(), head = %log.head().map(|h| h.to_string()).unwrap_or_else(|| "empty".into()), "audit log open");
    Ok(Some(Arc::new(log)))
}

fn audit_verify(path: Option<PathBuf>, head: Option<String>) -> anyhow::Result<i32> {
    let path = match path {
        Some(p) => p,
        None => audit_dir(&Settings::load().context("loading settings")?),
    };
    let head = head
        .map(|h| h.parse::<code_executor_mcp::audit::Head>())
        .transpose()
        .map_err(|e| anyhow::anyhow!("--head must be SEQ:HASH as the server logged it: {e}"))?;
    let report = code_executor_mcp::audit::verify_with_head(&path, head.as_ref())
        .with_context(|| format!("verifying {}", path.display()))?;
    println!("{report}");
    Ok(i32::from(!report.is_ok()))
}

async fn healthcheck(addr: &str) -> anyhow::Result<i32> {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let check = async {
        let mut stream = tokio::net::TcpStream::connect(addr).await?;
        let request: &[u8] =
            b"GET /healthz HTTP/1.1\r\nHost: localhost\r\nConnection: close\r\n\r\n";
        stream.write_all(request).await?;
        let mut head = vec![0u8; 64];
        let n = stream.read(&mut head).await?;
        Ok::<bool, std::io::Error>(head[..n].starts_with(b"HTTP/1.1 200"))
    };
    match tokio::time::timeout(Duration::from_secs(5), check).await {
        Ok(Ok(true)) => Ok(0),
        Ok(Ok(false)) => {
            eprintln!("{addr}: /healthz did not answer 200");
            Ok(1)
        }
        Ok(Err(e)) => {
            eprintln!("{addr}: {e}");
            Ok(1)
        }
        Err(_) => {
            eprintln!("{addr}: no answer within 5 s");
            Ok(1)
        }
    }
}
