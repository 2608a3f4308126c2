//! The life of one sandbox container, split at the seam the warm pool needs:
//! [`prepare`] creates, attaches and starts a container whose runner waits on stdin;
//! [`PreparedContainer::run`] feeds it one execution and reads the outcome. Whatever
//! happens, dropping the container's [`RemovalGuard`] removes it.

use std::pin::Pin;
use std::time::{Duration, Instant};

use bollard::container::LogOutput;
use bollard::models::ContainerCreateBody;
use bollard::query_parameters::{
    AttachContainerOptionsBuilder, CreateContainerOptionsBuilder, RemoveContainerOptionsBuilder,
};
use bollard::Docker;
use futures_util::{Stream, StreamExt};
use tokio::io::{AsyncWrite, AsyncWriteExt};
use tokio::sync::mpsc::UnboundedSender;
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;

use crate::sandbox::engine::is_not_found;
use crate::sandbox::output::StreamCapture;
use crate::sandbox::protocol::{encode_request, parse_result, RunnerResult, Secrets};
use crate::sandbox::SandboxError;

/// How long to wait for an exited container's state before giving up on it.
const EXIT_STATE_WAIT: Duration = Duration::from_secs(10);

/// Which stream a chunk of output came from.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum StreamKind {
    Stdout,
    Stderr,
}

/// A chunk of the code's output, sent while it runs.
#[derive(Debug, Clone)]
pub struct OutputChunk {
    pub stream: StreamKind,
    pub bytes: Vec<u8>,
}

/// Removes containers in the background and lets shutdown wait for the removals.
#[derive(Debug, Clone, Default)]
pub struct Removals {
    tracker: TaskTracker,
}

impl Removals {
    pub fn new() -> Self {
        Self::default()
    }

    /// Force-removes a container (killing it if it runs) off the caller's path.
    pub fn remove(&self, docker: Docker, id: String) {
        let Ok(handle) = tokio::runtime::Handle::try_current() else {
            tracing::error!(container = %id, "no runtime to remove the container; the reaper will at next start");
            return;
        };
        self.tracker.spawn_on(
            async move {
                let opts = RemoveContainerOptionsBuilder::default()
                    .force(true)
                    .v(true)
                    .build();
                match docker.remove_container(&id, Some(opts)).await {
                    Ok(()) => tracing::debug!(container = %id, "removed"),
                    Err(e) if is_not_found(&e) => {}
                    Err(e) => {
                        tracing::warn!(container = %id, error = %e, "could not remove container")
                    }
                }
            },
            &handle,
        );
    }

    /// Runs container work (a preparation) as a tracked task: shutdown waits for it, and
    /// it finishes even when whoever awaited it went away.
    pub fn spawn<F>(&self, work: F) -> tokio::task::JoinHandle<F::Output>
    where
        F: std::future::Future + Send + 'static,
        F::Output: Send + 'static,
    {
        self.tracker.spawn(work)
    }

    /// Waits until every removal started so far has finished.
    pub async fn wait_idle(&self) {
        self.tracker.close();
        self.tracker.wait().await;
        self.tracker.reopen();
    }
}

/// Owns a container id; dropping it removes the container.
#[derive(Debug)]
pub struct RemovalGuard {
    docker: Docker,
    id: String,
    removals: Removals,
}

impl Drop for RemovalGuard {
    fn drop(&mut self) {
        self.removals
            .remove(self.docker.clone(), std::mem::take(&mut self.id));
    }
}

type OutputStream = Pin<Box<dyn Stream<Item = Result<LogOutput, bollard::errors::Error>> + Send>>;

/// A started container whose runner waits for its one execution.
pub struct PreparedContainer {
    docker: Docker,
    guard: RemovalGuard,
    output: OutputStream,
    input: Pin<Box<dyn AsyncWrite + Send>>,
    prepared_at: Instant,
}

impl std::fmt::Debug for PreparedContainer {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("PreparedContainer")
            .field("id", &self.guard.id)
            .finish()
    }
}

/// Creates, attaches and starts a container from `spec`.
pub async fn prepare(
    docker: &Docker,
    removals: &Removals,
    name: &str,
    spec: ContainerCreateBody,
) -> Result<PreparedContainer, SandboxError> {
    let image = spec.image.clone().unwrap_or_default();
    let opts = CreateContainerOptionsBuilder::default().name(name).build();
    let created = docker
        .create_container(Some(opts), spec)
        .await
        .map_err(|source| {
            if is_not_found(&source) {
                SandboxError::ImageMissing { image }
            } else {
                SandboxError::Docker {
                    action: "create container",
                    target: name.to_owned(),
                    source,
                }
            }
        })?;
    let guard = RemovalGuard {
        docker: docker.clone(),
        id: created.id,
        removals: removals.clone(),
    };
    let docker_err = |action: &'static str, source| SandboxError::Docker {
        action,
        target: name.to_owned(),
        source,
    };
    // Attach before start so not a byte of output is missed.
    let attach = AttachContainerOptionsBuilder::default()
        .stdin(true)
        .stdout(true)
        .stderr(true)
        .stream(true)
        .build();
    let attached = docker
        .attach_container(&guard.id, Some(attach))
        .await
        .map_err(|e| docker_err("attach to container", e))?;
    docker
        .start_container(&guard.id, None)
        .await
        .map_err(|e| docker_err("start container", e))?;
    Ok(PreparedContainer {
        docker: docker.clone(),
        guard,
        output: attached.output,
        input: attached.input,
        prepared_at: Instant::now(),
    })
}

/// What came out of one run.
#[derive(Debug, Clone, Default)]
pub struct RunOutcome {
    pub stdout: String,
    pub stderr: String,
    pub truncated: bool,
    /// The code's exit code; `None` when it was killed for a timeout or cancellation.
    pub exit_code: Option<i64>,
    /// What the runner reported, when it got to report.
    pub runner: Option<RunnerResult>,
    pub timed_out: bool,
    pub oom_killed: bool,
    pub cancelled: bool,
    pub duration: Duration,
}

/// One execution's inputs for [`PreparedContainer::run`].
#[derive(Debug)]
pub struct RunInput<'a> {
    pub code: &'a str,
    pub stdin: &'a [u8],
    pub timeout: Duration,
    pub secrets: &'a Secrets,
    pub output_cap: usize,
}

enum Stop {
    Reported,
    StreamEnded,
    TimedOut,
    Cancelled,
}

impl PreparedContainer {
    /// The container's id.
    pub fn id(&self) -> &str {
        &self.guard.id
    }

    /// The container's mounts as the engine reports them (`docker inspect`).
    pub fn mounts(
        &self,
    ) -> impl std::future::Future<Output = Result<Vec<bollard::models::MountPoint>, SandboxError>>
           + Send
           + 'static {
        let docker = self.docker.clone();
        let id = self.guard.id.clone();
        async move {
            let inspected = docker
                .inspect_container(
                    &id,
                    None::<bollard::query_parameters::InspectContainerOptions>,
                )
                .await
                .map_err(|source| SandboxError::Docker {
                    action: "inspect container",
                    target: id.clone(),
                    source,
                })?;
            Ok(inspected.mounts.unwrap_or_default())
        }
    }

    /// How long ago the container was started.
    pub fn age(&self) -> Duration {
        self.prepared_at.elapsed()
    }

    /// True while the container's runner still waits silently for its request: the
    /// attach stream is open and has carried nothing. Costs no engine round trip. A
    /// container that fails this check must be discarded, never handed to user code.
    pub fn is_waiting(&mut self) -> bool {
        use futures_util::FutureExt;
        // Pending: nothing happened. Anything else (output, error, end) means the runner
        // is not in its pristine waiting state.
        self.output.next().now_or_never().is_none()
    }

    /// Runs one execution: writes the request, streams output to `events`, and returns
    /// when the runner has reported (or the container exited, the timeout passed, or
    /// `cancel` fired). The container is removed in the background afterwards.
    pub async fn run(
        mut self,
        input: RunInput<'_>,
        events: Option<UnboundedSender<OutputChunk>>,
        cancel: CancellationToken,
    ) -> RunOutcome {
        let started = Instant::now();
        let deadline = tokio::time::Instant::now() + input.timeout;
        let payload = encode_request(
            input.code,
            input.secrets,
            input.timeout.as_millis() as u64,
            input.stdin,
        );
        let mut writer_input = self.input;
        // The code may never read its stdin; the write must not hold up the run.
        let writer = tokio::spawn(async move {
            let _ = writer_input.write_all(&payload).await;
            let _ = writer_input.shutdown().await;
        });

        let mut stdout =
            StreamCapture::ending_at_line(input.output_cap, input.secrets.result_marker());
        let mut stderr = StreamCapture::ending_at(input.output_cap, input.secrets.end_marker());
        let emit = |stream, bytes: Vec<u8>| {
            if let (Some(tx), false) = (&events, bytes.is_empty()) {
                let _ = tx.send(OutputChunk { stream, bytes });
            }
        };

        let stop = loop {
            if stdout.finished() && stderr.finished() {
                break Stop::Reported;
            }
            tokio::select! {
                biased;
                _ = cancel.cancelled() => break Stop::Cancelled,
                _ = tokio::time::sleep_until(deadline) => break Stop::TimedOut,
                item = self.output.next() => match item {
                    Some(Ok(LogOutput::StdErr { message })) => {
                        emit(StreamKind::Stderr, stderr.push(&message).visible);
                    }
                    Some(Ok(LogOutput::StdOut { message } | LogOutput::Console { message })) => {
                        emit(StreamKind::Stdout, stdout.push(&message).visible);
                    }
                    Some(Ok(LogOutput::StdIn { .. })) => {}
                    Some(Err(e)) => {
                        tracing::warn!(container = %self.guard.id, error = %e, "attach stream failed");
                        break Stop::StreamEnded;
                    }
                    None => break Stop::StreamEnded,
                },
            }
        };
        writer.abort();
        emit(StreamKind::Stdout, stdout.close());
        emit(StreamKind::Stderr, stderr.close());

        let runner = stdout.payload().and_then(parse_result);
        let mut outcome = RunOutcome {
            stdout: stdout.text(),
            stderr: stderr.text(),
            truncated: stdout.truncated() || stderr.truncated(),
            runner: runner.clone(),
            ..Default::default()
        };
        match stop {
            Stop::Reported if runner.is_some() => {
                outcome.exit_code = runner.map(|r| r.exit_code);
            }
            Stop::Reported | Stop::StreamEnded => {
                let (exit_code, oom) = exit_state(&self.docker, &self.guard.id).await;
                outcome.exit_code = exit_code;
                outcome.oom_killed = oom;
            }
            Stop::TimedOut => outcome.timed_out = true,
            Stop::Cancelled => outcome.cancelled = true,
        }
        outcome.duration = started.elapsed();
        // Dropping `self.guard` here starts the removal, off the caller's path.
        outcome
    }
}

/// Waits briefly for the container to exit, then reads its exit code and OOM flag.
async fn exit_state(docker: &Docker, id: &str) -> (Option<i64>, bool) {
    let wait = async {
        let mut stream = docker.wait_container(id, None);
        // bollard reports a non-zero exit as an error item; either way it has exited.
        let _ = stream.next().await;
    };
    if tokio::time::timeout(EXIT_STATE_WAIT, wait).await.is_err() {
        tracing::warn!(container = %id, "container did not exit after its output closed");
        return (None, false);
    }
    match docker.inspect_container(id, None).await {
        Ok(info) => {
            let state = info.state.unwrap_or_default();
            (state.exit_code, state.oom_killed.unwrap_or(false))
        }
        Err(e) => {
            tracing::warn!(container = %id, error = %e, "could not inspect exited container");
            (None, false)
        }
    }
}
