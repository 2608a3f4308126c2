//! The per-execution HTTP egress proxy: a listener on `egress.sock` in the execution's
//! socket directory (bind-mounted into that one container at `/run/mcp`, where a relay in
//! the runner forwards a loopback port to it for `HTTP_PROXY`/`HTTPS_PROXY`). It owns the
//! enforcement of the execution's [`NetPolicy`] on the wire, the byte cap and the
//! connection cap, and counts what the code sent and received.
//!
//! # Protocol
//! - `CONNECT host:port HTTP/1.1`: a tunnel, answered `HTTP/1.1 200 Connection
//!   established`; bytes the client sent after the head go to the origin.
//! - An absolute-form request (`GET http://host[:port]/path HTTP/1.1`): that one request
//!   is sent to the origin in origin form with `Host` from the URL, without `Proxy-*` and
//!   hop-by-hop headers, with `Connection: close`; then bytes are piped both ways (the
//!   request body up, the response down) until the origin closes.
//! - Anything else: 400 with a one-line plain-text reason. Heads are capped at
//!   16 KiB (431 above) and must arrive within 10 s (408).
//!
//! # Checks, all before any outgoing connection
//! The target is read as an IP literal in any spelling or a name
//! ([`NetPolicy::check_target`]: refused ranges, refused names, the call's rules), then a
//! name is resolved and every address checked ([`NetPolicy::check_resolved`]: one refused
//! address refuses the name), then the proxy connects to exactly the addresses it checked,
//! in order, never resolving again. Refusals are answered 403 with the reason and kept
//! for the [`EgressSummary`]. Resolution failures are 502, timeouts 504, more than
//! `max_connections` at once 503.
//!
//! # Byte cap
//! `max_bytes` counts bytes forwarded in both directions over all connections of the
//! execution (request heads as rewritten, bodies, tunnel traffic). A chunk that would
//! pass the cap is not forwarded; its connection is closed, and later requests get 403.

mod request;

use std::net::{IpAddr, SocketAddr};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use serde::Serialize;
use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt};
use tokio::net::{TcpStream, UnixListener, UnixStream};
use tokio::sync::{OwnedSemaphorePermit, Semaphore};
use tokio::task::JoinSet;
use tokio_util::sync::CancellationToken;

use crate::policy::net::{Destination, NetPolicy, Refusal, Resolve};
use request::{BadRequest, Request, MAX_HEAD_BYTES};

/// Path of the socket inside the container.
pub const SOCKET_IN_CONTAINER: &str = "/run/mcp/egress.sock";
/// File name of the socket in the execution's socket directory.
pub const SOCKET_NAME: &str = "egress.sock";
/// Most refusal reasons kept for the summary.
pub const MAX_REFUSALS: usize = 100;

/// Time a client has to send its request head.
const HEAD_TIMEOUT: Duration = Duration::from_secs(10);
/// Time allowed to write a refusal to a client.
const REPLY_TIMEOUT: Duration = Duration::from_secs(5);
/// Longest wait for a refused client to finish sending.
const LINGER_TIME: Duration = Duration::from_millis(500);
/// Most bytes of a refused client read and discarded.
const LINGER_BYTES: usize = 256 * 1024;
/// Size of the copy buffers.
const CHUNK: usize = 16 * 1024;
/// Most addresses of one name tried.
const MAX_ADDRS: usize = 16;

/// Limits of one execution's egress.
#[derive(Debug, Clone)]
pub struct EgressLimits {
    /// Bytes forwarded in both directions together, over all connections.
    pub max_bytes: u64,
    /// Time to resolve a name, and separately to connect to its addresses.
    pub connect_timeout: Duration,
    /// Client connections handled at once.
    pub max_connections: usize,
}

impl Default for EgressLimits {
    fn default() -> Self {
        Self {
            max_bytes: 50 * 1024 * 1024,
            connect_timeout: Duration::from_secs(10),
            max_connections: 64,
        }
    }
}

/// What one execution's code did through the egress proxy.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct EgressSummary {
    /// Connections opened to origins.
    pub connections: u64,
    /// Bytes forwarded from the code to origins.
    pub bytes_up: u64,
    /// Bytes forwarded from origins to the code.
    pub bytes_down: u64,
    /// Why requests were refused (at most [`MAX_REFUSALS`], the first ones).
    pub refusals: Vec<String>,
}

/// Errors starting an egress proxy.
#[derive(Debug, thiserror::Error)]
pub enum EgressError {
    #[error("cannot create the egress socket {path}: {source}")]
    Bind {
        path: String,
        #[source]
        source: std::io::Error,
    },
}

/// A running egress proxy. Stop it to get the summary; dropping it also stops it.
pub struct EgressHandle {
    shared: Arc<Shared>,
    stop: CancellationToken,
    task: Option<tokio::task::JoinHandle<()>>,
    socket: PathBuf,
}

impl EgressHandle {
    /// The socket the proxy listens on.
    pub fn socket_path(&self) -> &Path {
        &self.socket
    }

    /// What happened so far.
    pub fn summary(&self) -> EgressSummary {
        self.shared.summary()
    }

    /// Closes the listener, aborts open tunnels, removes the socket file, and returns what
    /// the execution did.
    pub async fn stop(mut self) -> EgressSummary {
        self.stop.cancel();
        if let Some(task) = self.task.take() {
            let _ = task.await;
        }
        remove_socket(&self.socket);
        self.shared.summary()
    }
}

impl Drop for EgressHandle {
    fn drop(&mut self) {
        if let Some(task) = self.task.take() {
            self.stop.cancel();
            // Dropping the accept loop drops its set of connections, which aborts them.
            task.abort();
            remove_socket(&self.socket);
        }
    }
}

fn remove_socket(path: &Path) {
    if let Err(e) = std::fs::remove_file(path) {
        if e.kind() != std::io::ErrorKind::NotFound {
            tracing::warn!(path = %path.display(), error = %e, "could not remove egress socket");
        }
    }
}

/// Starts the egress proxy for one execution on `socket_path` (created with mode 0666:
/// the sandbox user must connect, and the directory belongs to one container).
pub fn serve(
    socket_path: &Path,
    policy: Arc<NetPolicy>,
    resolver: Arc<dyn Resolve>,
    limits: EgressLimits,
) -> Result<EgressHandle, EgressError> {
    use std::os::unix::fs::PermissionsExt;
    let bind_err = |source| EgressError::Bind {
        path: socket_path.display().to_string(),
        source,
    };
    let _ = std::fs::remove_file(socket_path);
    let listener = UnixListener::bind(socket_path).map_err(bind_err)?;
    std::fs::set_permissions(socket_path, std::fs::Permissions::from_mode(0o666))
        .map_err(bind_err)?;
    let shared = Arc::new(Shared {
        slots: Arc::new(Semaphore::new(limits.max_connections.max(1))),
        policy,
        resolver,
        limits,
        connections: AtomicU64::new(0),
        bytes_up: AtomicU64::new(0),
        bytes_down: AtomicU64::new(0),
        charged: AtomicU64::new(0),
        cap_reached: AtomicBool::new(false),
        refusals: Mutex::new(Vec::new()),
    });
    let stop = CancellationToken::new();
    let task = tokio::spawn(accept_loop(listener, shared.clone(), stop.clone()));
    Ok(EgressHandle {
        shared,
        stop,
        task: Some(task),
        socket: socket_path.to_owned(),
    })
}

/// State shared by the connections of one execution.
struct Shared {
    policy: Arc<NetPolicy>,
    resolver: Arc<dyn Resolve>,
    limits: EgressLimits,
    slots: Arc<Semaphore>,
    connections: AtomicU64,
    bytes_up: AtomicU64,
    bytes_down: AtomicU64,
    /// Bytes counted against the cap (including a refused last chunk).
    charged: AtomicU64,
    cap_reached: AtomicBool,
    refusals: Mutex<Vec<String>>,
}

#[derive(Debug, Clone, Copy)]
enum Direction {
    Up,
    Down,
}

/// The cap was reached; the connection must close.
#[derive(Debug)]
struct CapReached;

impl Shared {
    fn summary(&self) -> EgressSummary {
        EgressSummary {
            connections: self.connections.load(Ordering::Relaxed),
            bytes_up: self.bytes_up.load(Ordering::Relaxed),
            bytes_down: self.bytes_down.load(Ordering::Relaxed),
            refusals: self
                .refusals
                .lock()
                .unwrap_or_else(|p| p.into_inner())
                .clone(),
        }
    }

    fn record(&self, reason: &str) {
        tracing::info!(reason, "egress refused");
        let mut refusals = self.refusals.lock().unwrap_or_else(|p| p.into_inner());
        if refusals.len() < MAX_REFUSALS {
            refusals.push(reason.to_owned());
        }
    }

    fn cap_refusal(&self) -> Refusal {
        Refusal::ByteCap(self.limits.max_bytes)
    }

    /// Counts `n` bytes about to be forwarded, or says the cap is reached (recording that
    /// once).
    fn charge(&self, n: usize, direction: Direction) -> Result<(), CapReached> {
        let n = n as u64;
        let before = self.charged.fetch_add(n, Ordering::SeqCst);
        if before.saturating_add(n) > self.limits.max_bytes {
            if !self.cap_reached.swap(true, Ordering::SeqCst) {
                self.record(&self.cap_refusal().to_string());
            }
            return Err(CapReached);
        }
        let counter = match direction {
            Direction::Up => &self.bytes_up,
            Direction::Down => &self.bytes_down,
        };
        counter.fetch_add(n, Ordering::Relaxed);
        Ok(())
    }
}

async fn accept_loop(listener: UnixListener, shared: Arc<Shared>, stop: CancellationToken) {
    let mut connections = JoinSet::new();
    loop {
        tokio::select! {
            _ = stop.cancelled() => break,
            Some(_) = connections.join_next(), if !connections.is_empty() => {}
            accepted = listener.accept() => match accepted {
                Ok((stream, _)) => {
                    let shared = shared.clone();
                    match shared.slots.clone().try_acquire_owned() {
                        Ok(permit) => {
                            connections.spawn(handle(stream, shared, permit));
                        }
                        Err(_) => {
                            connections.spawn(too_busy(stream, shared));
                        }
                    }
                }
                Err(e) => {
                    tracing::warn!(error = %e, "egress proxy: accept failed");
                    tokio::time::sleep(Duration::from_millis(50)).await;
                }
            },
        }
    }
    connections.shutdown().await;
}

async fn too_busy(mut client: UnixStream, shared: Arc<Shared>) {
    let reason = format!(
        "egress refused: more than {} connections at once",
        shared.limits.max_connections
    );
    shared.record(&reason);
    reply(&mut client, 503, &reason).await;
}

/// Why a request ends without a tunnel: the status and the one-line reason.
struct Failure {
    status: u16,
    reason: String,
    /// A policy refusal, kept for the summary.
    refusal: bool,
}

impl Failure {
    fn refused(refusal: Refusal) -> Self {
        Self {
            status: 403,
            reason: refusal.to_string(),
            refusal: true,
        }
    }

    fn bad(status: u16, reason: String) -> Self {
        Self {
            status,
            reason,
            refusal: true,
        }
    }

    fn upstream(status: u16, reason: String) -> Self {
        Self {
            status,
            reason,
            refusal: false,
        }
    }
}

async fn handle(mut client: UnixStream, shared: Arc<Shared>, _permit: OwnedSemaphorePermit) {
    let (request, leftover) = match read_request(&mut client).await {
        Ok(Some(parsed)) => parsed,
        Ok(None) => return,
        Err(failure) => return fail(&mut client, &shared, failure).await,
    };
    let (host, port) = request.target();
    let upstream = match open(&shared, host, port).await {
        Ok(upstream) => upstream,
        Err(failure) => return fail(&mut client, &shared, failure).await,
    };
    shared.connections.fetch_add(1, Ordering::Relaxed);
    let first_up = match request {
        Request::Connect { .. } => {
            let established = b"HTTP/1.1 200 Connection established\r\n\r\n";
            if client.write_all(established).await.is_err() {
                return;
            }
            leftover
        }
        Request::Forward { mut head, .. } => {
            head.extend_from_slice(&leftover);
            head
        }
    };
    pipe(client, upstream, first_up, &shared).await;
}

async fn fail(client: &mut UnixStream, shared: &Shared, failure: Failure) {
    if failure.refusal {
        shared.record(&failure.reason);
    } else {
        tracing::info!(reason = %failure.reason, "egress request failed");
    }
    reply(client, failure.status, &failure.reason).await;
}

/// Reads and parses one request head. `Ok(None)`: the client closed without a byte.
/// Returns the bytes read past the head too.
async fn read_request(client: &mut UnixStream) -> Result<Option<(Request, Vec<u8>)>, Failure> {
    let read = async {
        let mut buf = Vec::with_capacity(1024);
        let mut chunk = [0u8; 4096];
        loop {
            if let Some(len) = request::head_len(&buf) {
                return Ok(Some((buf, len)));
            }
            if buf.len() > MAX_HEAD_BYTES {
                return Err(Failure::bad(
                    431,
                    format!(
                        "egress refused: the request head is larger than {MAX_HEAD_BYTES} bytes"
                    ),
                ));
            }
            let n = client
                .read(&mut chunk)
                .await
                .map_err(|e| Failure::upstream(400, format!("cannot read the request: {e}")))?;
            if n == 0 {
                if buf.is_empty() {
                    return Ok(None);
                }
                return Err(Failure::bad(
                    400,
                    "egress refused: the connection closed before the request head ended".into(),
                ));
            }
            buf.extend_from_slice(&chunk[..n]);
        }
    };
    let (mut buf, len) = match tokio::time::timeout(HEAD_TIMEOUT, read).await {
        Ok(Ok(Some(found))) => found,
        Ok(Ok(None)) => return Ok(None),
        Ok(Err(failure)) => return Err(failure),
        Err(_) => {
            return Err(Failure::bad(
                408,
                format!(
                    "egress refused: no complete request head within {} s",
                    HEAD_TIMEOUT.as_secs()
                ),
            ))
        }
    };
    if len > MAX_HEAD_BYTES {
        return Err(Failure::bad(
            431,
            format!("egress refused: the request head is larger than {MAX_HEAD_BYTES} bytes"),
        ));
    }
    let leftover = buf.split_off(len);
    let request = request::parse(&buf)
        .map_err(|e: BadRequest| Failure::bad(400, format!("egress refused: bad request: {e}")))?;
    Ok(Some((request, leftover)))
}

/// Checks `host:port` against the policy, resolves a name and checks every address, and
/// connects to the first checked address that answers.
async fn open(shared: &Shared, host: &str, port: u16) -> Result<TcpStream, Failure> {
    if shared.cap_reached.load(Ordering::SeqCst) {
        return Err(Failure::refused(shared.cap_refusal()));
    }
    let policy = &shared.policy;
    let timeout = shared.limits.connect_timeout;
    let addrs: Vec<IpAddr> = match policy.check_target(host, port).map_err(Failure::refused)? {
        Destination::Addr(ip) => vec![ip],
        Destination::Name(name) => {
            let resolved = tokio::time::timeout(timeout, shared.resolver.resolve(&name, port))
                .await
                .map_err(|_| Failure::upstream(504, format!("resolving {name} timed out")))?
                .map_err(|e| Failure::upstream(502, format!("cannot resolve {name}: {e}")))?;
            if resolved.is_empty() {
                return Err(Failure::upstream(502, format!("{name} has no addresses")));
            }
            policy
                .check_resolved(&name, port, &resolved)
                .map_err(Failure::refused)?;
            resolved
        }
    };
    let mut checked: Vec<SocketAddr> = Vec::new();
    for ip in addrs {
        let addr = SocketAddr::new(ip.to_canonical(), port);
        if !checked.contains(&addr) && checked.len() < MAX_ADDRS {
            checked.push(addr);
        }
    }
    connect(&checked, timeout).await
}

/// Connects to the first of `addrs` that answers within `timeout` overall.
async fn connect(addrs: &[SocketAddr], timeout: Duration) -> Result<TcpStream, Failure> {
    let attempt = async {
        let mut last = None;
        for addr in addrs {
            match TcpStream::connect(addr).await {
                Ok(stream) => return Ok(stream),
                Err(e) => last = Some(format!("cannot connect to {addr}: {e}")),
            }
        }
        Err(last.unwrap_or_else(|| "no address to connect to".to_owned()))
    };
    match tokio::time::timeout(timeout, attempt).await {
        Ok(Ok(stream)) => {
            let _ = stream.set_nodelay(true);
            Ok(stream)
        }
        Ok(Err(reason)) => Err(Failure::upstream(502, reason)),
        Err(_) => Err(Failure::upstream(
            504,
            format!("connecting timed out after {} s", timeout.as_secs_f32()),
        )),
    }
}

/// Forwards `first_up` and then bytes both ways until the origin closes, either side
/// fails, or the cap is reached. The client closing its side only ends the upload.
async fn pipe(client: UnixStream, upstream: TcpStream, first_up: Vec<u8>, shared: &Shared) {
    let (mut client_read, mut client_write) = client.into_split();
    let (mut origin_read, mut origin_write) = upstream.into_split();
    let up = async {
        if !first_up.is_empty() {
            shared
                .charge(first_up.len(), Direction::Up)
                .map_err(|_| ())?;
            origin_write.write_all(&first_up).await.map_err(|_| ())?;
        }
        copy(&mut client_read, &mut origin_write, Direction::Up, shared).await?;
        let _ = origin_write.shutdown().await;
        Ok::<(), ()>(())
    };
    let down = async {
        let _ = copy(&mut origin_read, &mut client_write, Direction::Down, shared).await;
        let _ = client_write.shutdown().await;
    };
    tokio::pin!(up, down);
    let mut uploading = true;
    loop {
        tokio::select! {
            result = &mut up, if uploading => {
                uploading = false;
                if result.is_err() {
                    break;
                }
            }
            () = &mut down => break,
        }
    }
}

/// Copies until end of stream (`Ok`), an error or the cap (`Err`).
async fn copy<R, W>(
    reader: &mut R,
    writer: &mut W,
    direction: Direction,
    shared: &Shared,
) -> Result<(), ()>
where
    R: AsyncRead + Unpin,
    W: AsyncWrite + Unpin,
{
    let mut buf = vec![0u8; CHUNK];
    loop {
        let n = reader.read(&mut buf).await.map_err(|_| ())?;
        if n == 0 {
            return Ok(());
        }
        shared.charge(n, direction).map_err(|_| ())?;
        writer.write_all(&buf[..n]).await.map_err(|_| ())?;
    }
}

/// Writes a plain-text answer with a one-line reason and closes. Input the client sent
/// and we did not read is drained first (briefly): closing a socket with unread data
/// resets the connection, and the client could lose the answer.
async fn reply(client: &mut UnixStream, status: u16, reason: &str) {
    let text = match status {
        400 => "Bad Request",
        403 => "Forbidden",
        408 => "Request Timeout",
        431 => "Request Header Fields Too Large",
        502 => "Bad Gateway",
        503 => "Service Unavailable",
        504 => "Gateway Timeout",
        _ => "Error",
    };
    let body = format!("{}\n", request::one_line(reason));
    let response = format!(
        "HTTP/1.1 {status} {text}\r\nContent-Type: text/plain; charset=utf-8\r\nContent-Length: {}\r\nConnection: close\r\n\r\n{body}",
        body.len()
    );
    let write = async {
        client.write_all(response.as_bytes()).await?;
        client.shutdown().await
    };
    if let Ok(Ok(())) = tokio::time::timeout(REPLY_TIMEOUT, write).await {
        linger(client).await;
    }
}

/// Reads and discards what the client still sends, up to [`LINGER_BYTES`] or
/// [`LINGER_TIME`].
async fn linger(client: &mut UnixStream) {
    let drain = async {
        let mut buf = [0u8; 4096];
        let mut total = 0;
        while total < LINGER_BYTES {
            match client.read(&mut buf).await {
                Ok(0) | Err(_) => break,
                Ok(n) => total += n,
            }
        }
    };
    let _ = tokio::time::timeout(LINGER_TIME, drain).await;
}

#[cfg(test)]
mod tests;
