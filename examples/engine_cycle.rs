//! The raw engine cycle, the yardstick of `make bench` (bench/run.py): N fresh containers
//! of the server's own hardened spec (`sandbox::spec::container_spec`, default limits, no
//! proxy directory) run one trivial program each, through bollard directly and nothing
//! of the server: create -> attach -> start -> (output to its end) -> wait -> remove,
//! C cycles at a time. The image's runner is bypassed (entrypoint overridden with
//! `python3 -c 'print(1)'` or `deno eval 'console.log(1)'`).
//!
//!     cargo run --release --example engine_cycle -- --cycles 24 --concurrency 4
//!         [--lang python|typescript] [--warmup 1] [--label key=value]
//!
//! Prints one JSON object on stdout: {language, concurrency, cycles, seconds, per_second,
//! p50_ms, p95_ms, max_ms, errors, phases_p50_ms: {create, attach, start, output, wait,
//! remove}}.
//!
//! `--warm` measures instead the floor of a warm execution, with no server: for each cycle
//! a container of the image's own entrypoint (the runner) is prepared, left `--settle-ms`
//! (default 500) so its runner waits on stdin, then the framed request of `print(1+1)` /
//! `console.log(1+1)` (sandbox::protocol::encode_request) is written and the attach
//! stream is timed from the write: to the output `2`, to the result marker (stdout), to
//! the end marker (stderr: from here the server can answer) and to the stream's end
//! (process exit and container stop). Prints {language, mode: "warm", cycles, errors,
//! p50_ms: {output, result, end, exit}, p95_ms: {...}}, one cycle at a time. With
//! `--concurrent-create`, another container of the same spec is created, attached and
//! started at the moment of the write, as the server's pool refill does when an execution
//! takes a warm container. Every container carries the spec's labels (code-executor.managed=true, the
//! owner label of this process, so a server's orphan reaper leaves it alone while this
//! runs) plus the optional `--label`, and is removed whatever happens.

use std::collections::HashMap;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use bollard::query_parameters::{
    AttachContainerOptionsBuilder, CreateContainerOptionsBuilder, RemoveContainerOptionsBuilder,
};
use bollard::Docker;
use code_executor_mcp::config::{Limits, Settings};
use code_executor_mcp::sandbox::reaper::Owner;
use code_executor_mcp::sandbox::spec::{container_spec, SpecInput};
use futures_util::StreamExt;
use tokio::io::AsyncWriteExt;

#[derive(Debug)]
struct Args {
    language: String,
    cycles: usize,
    concurrency: usize,
    warmup: usize,
    label: Option<(String, String)>,
    warm: bool,
    settle_ms: u64,
    concurrent_create: bool,
}

fn parse_args() -> Result<Args, String> {
    let mut args = Args {
        language: "python".into(),
        cycles: 24,
        concurrency: 1,
        warmup: 1,
        label: None,
        warm: false,
        settle_ms: 500,
        concurrent_create: false,
    };
    let mut it = std::env::args().skip(1);
    while let Some(flag) = it.next() {
        let mut value = || it.next().ok_or_else(|| format!("{flag} needs a value"));
        match flag.as_str() {
            "--lang" | "--language" => args.language = value()?,
            "--cycles" => args.cycles = value()?.parse().map_err(|e| format!("--cycles: {e}"))?,
            "--concurrency" => {
                args.concurrency = value()?
                    .parse()
                    .map_err(|e| format!("--concurrency: {e}"))?
            }
            "--warm" => args.warm = true,
            "--concurrent-create" => args.concurrent_create = true,
            "--settle-ms" => {
                args.settle_ms = value()?.parse().map_err(|e| format!("--settle-ms: {e}"))?
            }
            "--warmup" => args.warmup = value()?.parse().map_err(|e| format!("--warmup: {e}"))?,
            "--label" => {
                let v = value()?;
                let (k, val) = v
                    .split_once('=')
                    .ok_or_else(|| format!("--label {v}: expected key=value"))?;
                args.label = Some((k.to_owned(), val.to_owned()));
            }
            "-h" | "--help" => {
                return Err("usage: engine_cycle [--lang python|typescript] [--cycles N] [--concurrency C] [--warmup W] [--label k=v] [--warm [--settle-ms MS] [--concurrent-create]]".into())
            }
            other => return Err(format!("unknown argument {other}")),
        }
    }
    if args.cycles == 0 || args.concurrency == 0 {
        return Err("--cycles and --concurrency must be > 0".into());
    }
    if !matches!(args.language.as_str(), "python" | "typescript") {
        return Err(format!("--lang {}: python or typescript", args.language));
    }
    Ok(args)
}

/// Per-phase durations of one cycle, in ms.
#[derive(Debug, Default, Clone, Copy)]
struct Cycle {
    create: f64,
    attach: f64,
    start: f64,
    output: f64,
    wait: f64,
    remove: f64,
    total: f64,
}

struct Ctx {
    docker: Docker,
    body: bollard::models::ContainerCreateBody,
}

fn ms(d: Duration) -> f64 {
    d.as_secs_f64() * 1000.0
}

async fn one_cycle(ctx: &Ctx, expected: &str) -> Result<Cycle, String> {
    let mut body = ctx.body.clone();
    let execution_id = uuid::Uuid::new_v4().simple().to_string();
    if let Some(labels) = body.labels.as_mut() {
        labels.insert(
            code_executor_mcp::sandbox::spec::EXECUTION_LABEL.to_owned(),
            execution_id,
        );
    }
    let d = &ctx.docker;
    let mut c = Cycle::default();
    let t0 = Instant::now();
    let created = d
        .create_container(Some(CreateContainerOptionsBuilder::default().build()), body)
        .await
        .map_err(|e| format!("create: {e}"))?;
    let id = created.id;
    c.create = ms(t0.elapsed());
    let result = async {
        let t = Instant::now();
        let attach = AttachContainerOptionsBuilder::default()
            .stdin(true)
            .stdout(true)
            .stderr(true)
            .stream(true)
            .build();
        let mut attached = d
            .attach_container(&id, Some(attach))
            .await
            .map_err(|e| format!("attach: {e}"))?;
        c.attach = ms(t.elapsed());
        let t = Instant::now();
        d.start_container(&id, None)
            .await
            .map_err(|e| format!("start: {e}"))?;
        c.start = ms(t.elapsed());
        // The program reads nothing: close its stdin at once.
        let _ = attached.input.shutdown().await;
        let t = Instant::now();
        let mut out = Vec::new();
        while let Some(item) = attached.output.next().await {
            match item {
                Ok(chunk) => out.extend_from_slice(&chunk.into_bytes()),
                Err(e) => return Err(format!("attach stream: {e}")),
            }
        }
        c.output = ms(t.elapsed());
        let t = Instant::now();
        let mut wait = d.wait_container(&id, None);
        // bollard reports a non-zero exit as an error item; either way it has exited.
        let waited = wait.next().await;
        c.wait = ms(t.elapsed());
        if let Some(Err(e)) = waited {
            return Err(format!(
                "wait: {e} (output {:?})",
                String::from_utf8_lossy(&out)
            ));
        }
        if String::from_utf8_lossy(&out).trim() != expected {
            return Err(format!(
                "unexpected output {:?}",
                String::from_utf8_lossy(&out)
            ));
        }
        Ok(())
    }
    .await;
    let t = Instant::now();
    let removed = d
        .remove_container(
            &id,
            Some(
                RemoveContainerOptionsBuilder::default()
                    .force(true)
                    .v(true)
                    .build(),
            ),
        )
        .await;
    c.remove = ms(t.elapsed());
    c.total = ms(t0.elapsed());
    result?;
    removed.map_err(|e| format!("remove: {e}"))?;
    Ok(c)
}

/// Times from the request's write, in ms, of one warm execution.
#[derive(Debug, Default, Clone, Copy)]
struct WarmRun {
    output: f64,
    result: f64,
    end: f64,
    exit: f64,
}

fn contains(hay: &[u8], needle: &[u8]) -> bool {
    hay.windows(needle.len()).any(|w| w == needle)
}

/// Creates, attaches and starts a container of `body` (what a pool refill does); returns
/// its id, and the attach streams so the runner keeps its stdin open.
async fn refill(
    docker: Docker,
    body: bollard::models::ContainerCreateBody,
) -> (
    Option<String>,
    Option<bollard::container::AttachContainerResults>,
) {
    let Ok(created) = docker
        .create_container(Some(CreateContainerOptionsBuilder::default().build()), body)
        .await
    else {
        return (None, None);
    };
    let attach = AttachContainerOptionsBuilder::default()
        .stdin(true)
        .stdout(true)
        .stderr(true)
        .stream(true)
        .build();
    let attached = docker
        .attach_container(&created.id, Some(attach))
        .await
        .ok();
    let _ = docker.start_container(&created.id, None).await;
    (Some(created.id), attached)
}

async fn one_warm(
    ctx: &Ctx,
    code: &str,
    settle: Duration,
    concurrent_create: bool,
) -> Result<WarmRun, String> {
    use code_executor_mcp::sandbox::protocol::{encode_request, Secrets};
    let mut body = ctx.body.clone();
    if let Some(labels) = body.labels.as_mut() {
        labels.insert(
            code_executor_mcp::sandbox::spec::EXECUTION_LABEL.to_owned(),
            uuid::Uuid::new_v4().simple().to_string(),
        );
    }
    let d = &ctx.docker;
    let created = d
        .create_container(Some(CreateContainerOptionsBuilder::default().build()), body)
        .await
        .map_err(|e| format!("create: {e}"))?;
    let id = created.id;
    let result = async {
        let attach = AttachContainerOptionsBuilder::default()
            .stdin(true)
            .stdout(true)
            .stderr(true)
            .stream(true)
            .build();
        let mut attached = d
            .attach_container(&id, Some(attach))
            .await
            .map_err(|e| format!("attach: {e}"))?;
        d.start_container(&id, None)
            .await
            .map_err(|e| format!("start: {e}"))?;
        tokio::time::sleep(settle).await;
        let secrets = Secrets::generate();
        let payload = encode_request(code, &secrets, 30_000, b"");
        let (result_marker, end_marker) = (secrets.result_marker(), secrets.end_marker());
        let mut r = WarmRun::default();
        let other = concurrent_create.then(|| {
            let mut body = ctx.body.clone();
            if let Some(labels) = body.labels.as_mut() {
                labels.insert(
                    code_executor_mcp::sandbox::spec::EXECUTION_LABEL.to_owned(),
                    uuid::Uuid::new_v4().simple().to_string(),
                );
            }
            tokio::spawn(refill(d.clone(), body))
        });
        let t0 = Instant::now();
        attached
            .input
            .write_all(&payload)
            .await
            .map_err(|e| format!("write: {e}"))?;
        let _ = attached.input.shutdown().await;
        let (mut out, mut err) = (Vec::new(), Vec::new());
        let (mut seen_out, mut seen_result, mut seen_end) = (false, false, false);
        while let Some(item) = attached.output.next().await {
            use bollard::container::LogOutput;
            match item.map_err(|e| format!("attach stream: {e}"))? {
                LogOutput::StdOut { message } | LogOutput::Console { message } => {
                    out.extend_from_slice(&message)
                }
                LogOutput::StdErr { message } => err.extend_from_slice(&message),
                LogOutput::StdIn { .. } => {}
            }
            let now = ms(t0.elapsed());
            if !seen_out && out.starts_with(b"2") {
                seen_out = true;
                r.output = now;
            }
            if !seen_result && contains(&out, &result_marker) {
                seen_result = true;
                r.result = now;
            }
            if !seen_end && contains(&err, &end_marker) {
                seen_end = true;
                r.end = now;
            }
        }
        r.exit = ms(t0.elapsed());
        if let Some(task) = other {
            if let Ok((Some(other_id), _attached)) = task.await {
                let _ = d
                    .remove_container(
                        &other_id,
                        Some(
                            RemoveContainerOptionsBuilder::default()
                                .force(true)
                                .v(true)
                                .build(),
                        ),
                    )
                    .await;
            }
        }
        if !(seen_out && seen_result && seen_end) {
            return Err(format!(
                "runner did not report: stdout {:?} stderr {:?}",
                String::from_utf8_lossy(&out),
                String::from_utf8_lossy(&err)
            ));
        }
        Ok(r)
    }
    .await;
    let removed = d
        .remove_container(
            &id,
            Some(
                RemoveContainerOptionsBuilder::default()
                    .force(true)
                    .v(true)
                    .build(),
            ),
        )
        .await;
    let r = result?;
    removed.map_err(|e| format!("remove: {e}"))?;
    Ok(r)
}

async fn warm_mode(ctx: &Ctx, args: &Args) {
    let code = if args.language == "python" {
        "print(1+1)"
    } else {
        "console.log(1+1)"
    };
    let settle = Duration::from_millis(args.settle_ms);
    let mut runs = Vec::new();
    let mut errors = Vec::new();
    for i in 0..args.warmup + args.cycles {
        match one_warm(ctx, code, settle, args.concurrent_create).await {
            Ok(r) if i >= args.warmup => runs.push(r),
            Ok(_) => {}
            Err(e) => errors.push(e),
        }
    }
    for e in errors.iter().take(3) {
        eprintln!("engine_cycle: warm run failed: {e}");
    }
    let round = |x: f64| (x * 10.0).round() / 10.0;
    let col = |f: fn(&WarmRun) -> f64| -> Vec<f64> { runs.iter().map(f).collect() };
    let summary = |p: f64| {
        serde_json::json!({
            "output": round(percentile(&col(|r| r.output), p)),
            "result": round(percentile(&col(|r| r.result), p)),
            "end": round(percentile(&col(|r| r.end), p)),
            "exit": round(percentile(&col(|r| r.exit), p)),
        })
    };
    let out = serde_json::json!({
        "language": args.language,
        "mode": "warm",
        "cycles": runs.len(),
        "errors": errors.len(),
        "settle_ms": args.settle_ms,
        "concurrent_create": args.concurrent_create,
        "p50_ms": summary(50.0),
        "p95_ms": summary(95.0),
    });
    println!("{out}");
    if !errors.is_empty() {
        std::process::exit(1);
    }
}

fn percentile(values: &[f64], p: f64) -> f64 {
    if values.is_empty() {
        return f64::NAN;
    }
    let mut v = values.to_vec();
    v.sort_by(|a, b| a.total_cmp(b));
    let k = (v.len() - 1) as f64 * p / 100.0;
    let (lo, hi) = (k.floor() as usize, (k.ceil() as usize).min(v.len() - 1));
    v[lo] + (v[hi] - v[lo]) * (k - lo as f64)
}

#[tokio::main]
async fn main() {
    let args = match parse_args() {
        Ok(a) => a,
        Err(e) => {
            eprintln!("engine_cycle: {e}");
            std::process::exit(2);
        }
    };
    let settings = Settings::default();
    let limits = Limits::default();
    let (image, entrypoint, expected) = match args.language.as_str() {
        "python" => (
            settings.python_image.clone(),
            vec!["/usr/bin/python3", "-c", "print(1)"],
            "1",
        ),
        _ => (
            settings.deno_image.clone(),
            vec!["/usr/local/bin/deno", "eval", "console.log(1)"],
            "1",
        ),
    };
    let owner = Owner::current().label();
    let mut body = container_spec(&SpecInput {
        image: &image,
        language: &args.language,
        execution_id: "engine-cycle",
        owner: &owner,
        memory_mb: limits.memory_mb,
        limits: &limits,
        proxy_dir: None,
        preload: false,
        isolation: &code_executor_mcp::sandbox::isolation::Isolation {
            runtime: std::env::var("CE_RUNTIME").unwrap_or_else(|_| "runc".to_owned()),
            apparmor_profile: None,
            apparmor_note: None,
        },
        grant_mounts: &[],
        egress_port: None,
        entrypoint: None,
    });
    if !args.warm {
        body.entrypoint = Some(entrypoint.into_iter().map(str::to_owned).collect());
        body.cmd = Some(Vec::new());
    }
    if let Some((k, v)) = &args.label {
        body.labels
            .get_or_insert_with(HashMap::new)
            .insert(k.clone(), v.clone());
    }
    let docker = match Docker::connect_with_defaults() {
        Ok(d) => match d.negotiate_version().await {
            Ok(d) => d,
            Err(e) => {
                eprintln!("engine_cycle: cannot reach the Docker engine: {e}");
                std::process::exit(1);
            }
        },
        Err(e) => {
            eprintln!("engine_cycle: cannot reach the Docker engine: {e}");
            std::process::exit(1);
        }
    };
    let ctx = Arc::new(Ctx { docker, body });
    if args.warm {
        warm_mode(&ctx, &args).await;
        return;
    }

    for _ in 0..args.warmup {
        if let Err(e) = one_cycle(&ctx, expected).await {
            eprintln!("engine_cycle: warm-up cycle failed: {e}");
            std::process::exit(1);
        }
    }

    let next = Arc::new(AtomicUsize::new(0));
    let started = Instant::now();
    let mut workers = Vec::new();
    for _ in 0..args.concurrency.min(args.cycles) {
        let ctx = ctx.clone();
        let next = next.clone();
        let cycles = args.cycles;
        workers.push(tokio::spawn(async move {
            let mut done = Vec::new();
            let mut errors = Vec::new();
            while next.fetch_add(1, Ordering::SeqCst) < cycles {
                match one_cycle(&ctx, expected).await {
                    Ok(c) => done.push(c),
                    Err(e) => errors.push(e),
                }
            }
            (done, errors)
        }));
    }
    let mut cycles = Vec::new();
    let mut errors = Vec::new();
    for w in workers {
        match w.await {
            Ok((d, e)) => {
                cycles.extend(d);
                errors.extend(e);
            }
            Err(e) => errors.push(format!("worker: {e}")),
        }
    }
    let seconds = started.elapsed().as_secs_f64();
    for e in errors.iter().take(3) {
        eprintln!("engine_cycle: cycle failed: {e}");
    }
    let col = |f: fn(&Cycle) -> f64| -> Vec<f64> { cycles.iter().map(f).collect() };
    let totals = col(|c| c.total);
    let round = |x: f64| (x * 10.0).round() / 10.0;
    let out = serde_json::json!({
        "language": args.language,
        "concurrency": args.concurrency,
        "cycles": cycles.len(),
        "errors": errors.len(),
        "seconds": (seconds * 1000.0).round() / 1000.0,
        "per_second": ((cycles.len() as f64 / seconds) * 100.0).round() / 100.0,
        "p50_ms": round(percentile(&totals, 50.0)),
        "p95_ms": round(percentile(&totals, 95.0)),
        "max_ms": round(totals.iter().cloned().fold(f64::NAN, f64::max)),
        "phases_p50_ms": {
            "create": round(percentile(&col(|c| c.create), 50.0)),
            "attach": round(percentile(&col(|c| c.attach), 50.0)),
            "start": round(percentile(&col(|c| c.start), 50.0)),
            "output": round(percentile(&col(|c| c.output), 50.0)),
            "wait": round(percentile(&col(|c| c.wait), 50.0)),
            "remove": round(percentile(&col(|c| c.remove), 50.0)),
        },
    });
    println!("{out}");
    if !errors.is_empty() {
        std::process::exit(1);
    }
}
