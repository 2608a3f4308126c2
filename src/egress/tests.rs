//! The egress proxy against a real loopback origin that counts its connections. Names are
//! resolved by a fake; no test sends a packet to a non-loopback address (refusals happen
//! before any connection).

use std::collections::HashMap;
use std::io;
use std::net::{IpAddr, Ipv4Addr};
use std::os::unix::fs::PermissionsExt;
use std::path::PathBuf;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use futures_util::future::BoxFuture;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, UnixStream};

use super::*;
use crate::policy::net::{NetPolicy, Resolve};

const HELLO: &str = "HTTP/1.1 200 OK\r\nContent-Length: 5\r\nConnection: close\r\n\r\nhello";
const BIG: usize = 256 * 1024;

/// A loopback HTTP origin: counts accepted connections, records request heads, answers
/// `hello` (or [`BIG`] bytes for `/big`) and closes.
struct Origin {
    port: u16,
    accepted: Arc<AtomicUsize>,
    heads: Arc<Mutex<Vec<String>>>,
}

impl Origin {
    async fn start() -> Self {
        let listener = TcpListener::bind((Ipv4Addr::LOCALHOST, 0)).await.unwrap();
        let port = listener.local_addr().unwrap().port();
        let accepted = Arc::new(AtomicUsize::new(0));
        let heads = Arc::new(Mutex::new(Vec::new()));
        let (count, seen) = (accepted.clone(), heads.clone());
        tokio::spawn(async move {
            while let Ok((mut stream, _)) = listener.accept().await {
                count.fetch_add(1, Ordering::SeqCst);
                let seen = seen.clone();
                tokio::spawn(async move {
                    let mut buf = Vec::new();
                    let mut chunk = [0u8; 1024];
                    while !buf.windows(4).any(|w| w == b"\r\n\r\n") {
                        match stream.read(&mut chunk).await {
                            Ok(0) | Err(_) => return,
                            Ok(n) => buf.extend_from_slice(&chunk[..n]),
                        }
                    }
                    let head = String::from_utf8_lossy(&buf).into_owned();
                    let big = head.starts_with("GET /big ");
                    seen.lock().unwrap().push(head);
                    if big {
                        let body = vec![b'x'; BIG];
                        let start = format!("HTTP/1.1 200 OK\r\nContent-Length: {BIG}\r\n\r\n");
                        let _ = stream.write_all(start.as_bytes()).await;
                        let _ = stream.write_all(&body).await;
                    } else {
                        let _ = stream.write_all(HELLO.as_bytes()).await;
                    }
                    let _ = stream.shutdown().await;
                });
            }
        });
        Self {
            port,
            accepted,
            heads,
        }
    }

    fn accepted(&self) -> usize {
        self.accepted.load(Ordering::SeqCst)
    }
}

/// Answers from a fixed table and counts lookups; unknown names fail.
#[derive(Default)]
struct FakeResolver {
    table: HashMap<String, Vec<IpAddr>>,
    calls: AtomicUsize,
}

impl FakeResolver {
    fn with(entries: &[(&str, &[&str])]) -> Arc<Self> {
        let table = entries
            .iter()
            .map(|(name, ips)| {
                let ips = ips.iter().map(|ip| ip.parse().unwrap()).collect();
                (name.to_string(), ips)
            })
            .collect();
        Arc::new(Self {
            table,
            calls: AtomicUsize::new(0),
        })
    }

    fn calls(&self) -> usize {
        self.calls.load(Ordering::SeqCst)
    }
}

impl Resolve for FakeResolver {
    fn resolve<'a>(&'a self, host: &'a str, _port: u16) -> BoxFuture<'a, io::Result<Vec<IpAddr>>> {
        self.calls.fetch_add(1, Ordering::SeqCst);
        let answer = self
            .table
            .get(host)
            .cloned()
            .ok_or_else(|| io::Error::new(io::ErrorKind::NotFound, "no such host"));
        Box::pin(async move { answer })
    }
}

fn strings(items: &[&str]) -> Vec<String> {
    items.iter().map(|s| s.to_string()).collect()
}

fn socket_path(test: &str) -> PathBuf {
    let dir = std::env::temp_dir().join(format!("ce-egress-{}-{test}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir).unwrap();
    dir.join(SOCKET_NAME)
}

struct Setup<'a> {
    test: &'a str,
    hosts: Vec<String>,
    cidrs: Vec<String>,
    resolver: Arc<FakeResolver>,
    limits: EgressLimits,
}

impl<'a> Setup<'a> {
    /// `permissions.net` = `egress.allowed_hosts` = `hosts`; `test.example` resolves to
    /// 127.0.0.1.
    fn new(test: &'a str, hosts: &[&str]) -> Self {
        Self {
            test,
            hosts: strings(hosts),
            cidrs: Vec::new(),
            resolver: FakeResolver::with(&[("test.example", &["127.0.0.1"])]),
            limits: EgressLimits::default(),
        }
    }

    fn loopback_allowed(mut self) -> Self {
        self.cidrs = strings(&["127.0.0.1/32"]);
        self
    }

    fn start(&self) -> (EgressHandle, PathBuf) {
        let policy = NetPolicy::new(&self.hosts, &self.hosts, &self.cidrs).unwrap();
        let path = socket_path(self.test);
        let handle = serve(
            &path,
            Arc::new(policy),
            self.resolver.clone(),
            self.limits.clone(),
        )
        .unwrap();
        (handle, path)
    }
}

/// Sends `request`, closes the sending side, and reads the whole answer.
async fn exchange(path: &Path, request: &[u8]) -> String {
    let mut stream = UnixStream::connect(path).await.unwrap();
    stream.write_all(request).await.unwrap();
    let _ = stream.shutdown().await;
    let mut answer = Vec::new();
    tokio::time::timeout(Duration::from_secs(10), stream.read_to_end(&mut answer))
        .await
        .expect("the proxy answers in time")
        .unwrap();
    String::from_utf8_lossy(&answer).into_owned()
}

fn body(answer: &str) -> &str {
    answer.split_once("\r\n\r\n").map_or("", |(_, body)| body)
}

fn assert_refused(answer: &str, why: &str) {
    assert!(answer.starts_with("HTTP/1.1 403 Forbidden\r\n"), "{answer}");
    assert!(body(answer).contains(why), "{answer}");
}

#[tokio::test]
async fn connect_tunnel_reaches_an_allowed_host_and_counts_bytes() {
    let origin = Origin::start().await;
    let rule = format!("test.example:{}", origin.port);
    let (handle, path) = Setup::new("tunnel", &[&rule]).loopback_allowed().start();
    let inner = "GET /x HTTP/1.1\r\nHost: test.example\r\n\r\n";
    let request = format!(
        "CONNECT test.example:{} HTTP/1.1\r\nHost: x\r\n\r\n{inner}",
        origin.port
    );
    let answer = exchange(&path, request.as_bytes()).await;
    assert_eq!(
        answer,
        format!("HTTP/1.1 200 Connection established\r\n\r\n{HELLO}")
    );
    assert_eq!(origin.accepted(), 1);
    assert_eq!(origin.heads.lock().unwrap().as_slice(), [inner.to_owned()]);
    let summary = handle.stop().await;
    assert_eq!(
        summary,
        EgressSummary {
            connections: 1,
            bytes_up: inner.len() as u64,
            bytes_down: HELLO.len() as u64,
            refusals: vec![],
        }
    );
}

#[tokio::test]
async fn absolute_uri_request_is_forwarded_in_origin_form() {
    let origin = Origin::start().await;
    let rule = format!("test.example:{}", origin.port);
    let (handle, path) = Setup::new("forward", &[&rule]).loopback_allowed().start();
    let request = format!(
        "GET http://TEST.example.:{port}/a/b?c=1 HTTP/1.1\r\nHost: elsewhere\r\n\
         Proxy-Authorization: Basic eDp5\r\nProxy-Connection: keep-alive\r\n\
         Connection: keep-alive\r\nAccept: */*\r\n\r\n",
        port = origin.port
    );
    let answer = exchange(&path, request.as_bytes()).await;
    assert_eq!(answer, HELLO);
    let heads = origin.heads.lock().unwrap().clone();
    assert_eq!(
        heads,
        [format!(
            "GET /a/b?c=1 HTTP/1.1\r\nHost: TEST.example.:{}\r\nAccept: */*\r\nConnection: close\r\n\r\n",
            origin.port
        )]
    );
    let summary = handle.stop().await;
    assert_eq!(summary.connections, 1);
    assert_eq!(summary.bytes_up, heads[0].len() as u64);
    assert_eq!(summary.bytes_down, HELLO.len() as u64);
    assert!(summary.refusals.is_empty(), "{summary:?}");
}

#[tokio::test]
async fn loopback_is_refused_without_allow_cidrs_and_nothing_connects() {
    let origin = Origin::start().await;
    let rule = format!("test.example:{}", origin.port);
    let (handle, path) = Setup::new("no-cidrs", &[&rule]).start();
    let connect = format!("CONNECT test.example:{} HTTP/1.1\r\n\r\n", origin.port);
    let answer = exchange(&path, connect.as_bytes()).await;
    assert_refused(&answer, "test.example resolves to 127.0.0.1, loopback");
    let get = format!("GET http://test.example:{}/ HTTP/1.1\r\n\r\n", origin.port);
    assert_refused(&exchange(&path, get.as_bytes()).await, "loopback");
    assert_eq!(origin.accepted(), 0);
    let summary = handle.stop().await;
    assert_eq!(summary.connections, 0);
    assert_eq!((summary.bytes_up, summary.bytes_down), (0, 0));
    assert_eq!(summary.refusals.len(), 2);
    assert!(summary.refusals[0].contains("loopback"), "{summary:?}");
}

#[tokio::test]
async fn a_name_with_any_refused_address_is_refused_whole() {
    let mut setup = Setup::new("mixed", &["mixed.example"]);
    setup.resolver =
        FakeResolver::with(&[("mixed.example", &["93.184.216.34", "169.254.169.254"])]);
    let (handle, path) = setup.start();
    let answer = exchange(&path, b"CONNECT mixed.example:443 HTTP/1.1\r\n\r\n").await;
    assert_refused(
        &answer,
        "egress to mixed.example:443 refused: mixed.example resolves to 169.254.169.254, cloud metadata service",
    );
    assert_eq!(setup.resolver.calls(), 1);
    let summary = handle.stop().await;
    assert_eq!(summary.connections, 0);
}

#[tokio::test]
async fn every_spelling_of_loopback_is_refused() {
    let origin = Origin::start().await;
    let rule = format!("test.example:{}", origin.port);
    let port = origin.port;
    let spellings = [
        "127.0.0.1",
        "2130706433",
        "0177.0.0.1",
        "0x7f.0.0.1",
        "0x7f.1",
        "0x7f000001",
        "127.1",
        "127.0.0.1.",
        "0177.1",
        "017700000001",
        "%31%32%37.0.0.1",
        "[::1]",
        "[::ffff:127.0.0.1]",
        "[::ffff:7f00:1]",
        "[0:0:0:0:0:ffff:127.0.0.1]",
        "[64:ff9b::127.0.0.1]",
        "0.0.0.0",
        "0",
        "[::]",
        "LOCALHOST",
        "localhost.",
        "a.localhost",
    ];
    for (allow, test) in [(false, "spellings"), (true, "spellings-cidr")] {
        let mut setup = Setup::new(test, &[&rule]);
        if allow {
            setup = setup.loopback_allowed();
        }
        let (handle, path) = setup.start();
        for host in spellings {
            let connect = format!("CONNECT {host}:{port} HTTP/1.1\r\n\r\n");
            let answer = exchange(&path, connect.as_bytes()).await;
            assert!(answer.starts_with("HTTP/1.1 403 "), "{host}: {answer}");
            let get = format!("GET http://{host}:{port}/ HTTP/1.1\r\n\r\n");
            let answer = exchange(&path, get.as_bytes()).await;
            assert!(answer.starts_with("HTTP/1.1 403 "), "{host}: {answer}");
        }
        let summary = handle.stop().await;
        assert_eq!(summary.refusals.len(), spellings.len() * 2);
        assert_eq!(summary.connections, 0);
    }
    assert_eq!(origin.accepted(), 0);
}

#[tokio::test]
async fn metadata_address_refusal_names_the_reason() {
    let (handle, path) = Setup::new("metadata", &["example.com"]).start();
    let answer = exchange(&path, b"CONNECT 169.254.169.254:80 HTTP/1.1\r\n\r\n").await;
    assert_eq!(
        body(&answer),
        "egress to 169.254.169.254:80 refused: cloud metadata service\n"
    );
    let answer = exchange(
        &path,
        b"GET http://metadata.google.internal/computeMetadata/v1/ HTTP/1.1\r\n\r\n",
    )
    .await;
    assert_refused(&answer, "cloud metadata service");
    let summary = handle.stop().await;
    assert_eq!(
        summary.refusals[0],
        "egress to 169.254.169.254:80 refused: cloud metadata service"
    );
}

#[tokio::test]
async fn hosts_and_ports_outside_the_policy_are_refused_before_dns() {
    let origin = Origin::start().await;
    let rule = format!("test.example:{}", origin.port);
    let setup = Setup::new("not-allowed", &[&rule]).loopback_allowed();
    let (handle, path) = setup.start();
    let answer = exchange(&path, b"CONNECT other.example:443 HTTP/1.1\r\n\r\n").await;
    assert_refused(
        &answer,
        &format!("egress to other.example:443 refused: not allowed by this execution's permissions.net (allowed: test.example:{})", origin.port),
    );
    let answer = exchange(&path, b"GET http://test.example/ HTTP/1.1\r\n\r\n").await;
    assert_refused(&answer, "not allowed");
    let answer = exchange(
        &path,
        b"CONNECT test.example.evil.example:443 HTTP/1.1\r\n\r\n",
    )
    .await;
    assert_refused(&answer, "not allowed");
    // An address literal needs a rule for that address, even inside allow_cidrs.
    let literal = format!("CONNECT 127.0.0.1:{} HTTP/1.1\r\n\r\n", origin.port);
    assert_refused(&exchange(&path, literal.as_bytes()).await, "not allowed");
    assert_eq!(setup.resolver.calls(), 0);
    assert_eq!(origin.accepted(), 0);
    assert_eq!(handle.stop().await.refusals.len(), 4);
}

#[tokio::test]
async fn invalid_host_names_are_refused() {
    let (handle, path) = Setup::new("invalid-host", &["example.com"]).start();
    for host in ["exa_mple..com", "ex%41mple.com", "1.2.3.256", "a\u{7f}b"] {
        let connect = format!("CONNECT {host}:443 HTTP/1.1\r\n\r\n");
        let answer = exchange(&path, connect.as_bytes()).await;
        assert!(answer.starts_with("HTTP/1.1 4"), "{host}: {answer}");
    }
    let answer = exchange(
        &path,
        "CONNECT ｅxample.com:443 HTTP/1.1\r\n\r\n".as_bytes(),
    )
    .await;
    assert!(answer.starts_with("HTTP/1.1 400 "), "{answer}");
    handle.stop().await;
}

#[tokio::test]
async fn the_byte_cap_closes_the_tunnel_and_refuses_later_requests() {
    let origin = Origin::start().await;
    let rule = format!("test.example:{}", origin.port);
    let mut setup = Setup::new("cap", &[&rule]).loopback_allowed();
    setup.limits.max_bytes = 64 * 1024;
    let (handle, path) = setup.start();
    let request = format!(
        "CONNECT test.example:{} HTTP/1.1\r\n\r\nGET /big HTTP/1.1\r\n\r\n",
        origin.port
    );
    let answer = exchange(&path, request.as_bytes()).await;
    assert!(
        answer.starts_with("HTTP/1.1 200 Connection established"),
        "{}",
        &answer[..60.min(answer.len())]
    );
    assert!(
        answer.len() < 64 * 1024 + 100,
        "{} bytes got through",
        answer.len()
    );
    let again = format!("GET http://test.example:{}/ HTTP/1.1\r\n\r\n", origin.port);
    assert_refused(
        &exchange(&path, again.as_bytes()).await,
        "egress byte cap of 65536 bytes reached",
    );
    assert_eq!(origin.accepted(), 1);
    let summary = handle.stop().await;
    assert!(
        summary.bytes_up + summary.bytes_down <= 64 * 1024,
        "{summary:?}"
    );
    assert_eq!(
        summary.refusals,
        [
            "egress byte cap of 65536 bytes reached",
            "egress byte cap of 65536 bytes reached"
        ]
    );
}

#[tokio::test]
async fn garbage_gets_400_and_the_proxy_keeps_working() {
    let origin = Origin::start().await;
    let rule = format!("test.example:{}", origin.port);
    let (handle, path) = Setup::new("garbage", &[&rule]).loopback_allowed().start();
    let huge = format!(
        "GET http://test.example/ HTTP/1.1\r\n{}",
        "X: y\r\n".repeat(4000)
    );
    let cases: Vec<(Vec<u8>, &str)> = vec![
        (b"\r\n\r\n".to_vec(), "400"),
        (b"GARBAGE\r\n\r\n".to_vec(), "400"),
        (
            b"GET / HTTP/1.1\r\nHost: test.example\r\n\r\n".to_vec(),
            "400",
        ),
        (b"CONNECT test.example HTTP/1.1\r\n\r\n".to_vec(), "400"),
        (
            b"GET https://test.example/ HTTP/1.1\r\n\r\n".to_vec(),
            "400",
        ),
        (b"GET ftp://test.example/ HTTP/1.1\r\n\r\n".to_vec(), "400"),
        (
            b"GET http://a@test.example/ HTTP/1.1\r\n\r\n".to_vec(),
            "400",
        ),
        (b"GET http://test.example/ HTTP/9\r\n\r\n".to_vec(), "400"),
        (
            b"GET http://test.example/ HTTP/1.1\r\nX: a\r\n b\r\n\r\n".to_vec(),
            "400",
        ),
        (
            b"\x16\x03\x01\x02\x00\x01\x00\x01\xfc\x03\x03".to_vec(),
            "400",
        ),
        (b"\xff\xfe\xfd\n\n".to_vec(), "400"),
        (b"GET http://test.example/ HTTP/1.1\r\n".to_vec(), "400"),
        (huge.into_bytes(), "431"),
    ];
    for (request, status) in &cases {
        let answer = exchange(&path, request).await;
        assert!(
            answer.starts_with(&format!("HTTP/1.1 {status} ")),
            "{:?}: {answer}",
            String::from_utf8_lossy(&request[..request.len().min(60)])
        );
        assert_eq!(body(&answer).lines().count(), 1, "{answer}");
    }
    // A client that connects and leaves gets nothing and costs nothing.
    drop(UnixStream::connect(&path).await.unwrap());
    assert_eq!(origin.accepted(), 0);
    let get = format!("GET http://test.example:{}/ HTTP/1.1\r\n\r\n", origin.port);
    assert_eq!(exchange(&path, get.as_bytes()).await, HELLO);
    let summary = handle.stop().await;
    assert_eq!(summary.refusals.len(), cases.len());
    assert_eq!(summary.connections, 1);
}

#[tokio::test]
async fn connections_beyond_the_limit_get_503() {
    let origin = Origin::start().await;
    let rule = format!("test.example:{}", origin.port);
    let mut setup = Setup::new("busy", &[&rule]).loopback_allowed();
    setup.limits.max_connections = 1;
    let (handle, path) = setup.start();
    // Hold one tunnel open.
    let mut held = UnixStream::connect(&path).await.unwrap();
    let connect = format!("CONNECT test.example:{} HTTP/1.1\r\n\r\n", origin.port);
    held.write_all(connect.as_bytes()).await.unwrap();
    let mut established = [0u8; 39];
    held.read_exact(&mut established).await.unwrap();
    assert_eq!(&established, b"HTTP/1.1 200 Connection established\r\n\r\n");
    let answer = exchange(&path, connect.as_bytes()).await;
    assert!(answer.starts_with("HTTP/1.1 503 "), "{answer}");
    assert!(
        body(&answer).contains("more than 1 connections at once"),
        "{answer}"
    );
    drop(held);
    let summary = handle.stop().await;
    assert_eq!(summary.connections, 1);
    assert_eq!(summary.refusals.len(), 1);
}

#[tokio::test]
async fn refusals_kept_for_the_summary_are_capped() {
    let (handle, path) = Setup::new("many-refusals", &["example.com"]).start();
    for _ in 0..MAX_REFUSALS + 5 {
        exchange(&path, b"CONNECT 10.0.0.1:443 HTTP/1.1\r\n\r\n").await;
    }
    let summary = handle.stop().await;
    assert_eq!(summary.refusals.len(), MAX_REFUSALS);
}

#[tokio::test]
async fn socket_is_world_connectable_and_stop_removes_it() {
    let (handle, path) = Setup::new("socket", &["example.com"]).start();
    let mode = std::fs::metadata(&path).unwrap().permissions().mode() & 0o777;
    assert_eq!(mode, 0o666);
    assert_eq!(handle.socket_path(), path);
    let summary = handle.stop().await;
    assert!(!path.exists());
    assert!(UnixStream::connect(&path).await.is_err());
    let json = serde_json::to_value(&summary).unwrap();
    assert_eq!(
        json,
        serde_json::json!({"connections": 0, "bytesUp": 0, "bytesDown": 0, "refusals": []})
    );
}

#[tokio::test]
async fn stop_aborts_open_tunnels_and_drop_cleans_up() {
    let origin = Origin::start().await;
    let rule = format!("test.example:{}", origin.port);
    let (handle, path) = Setup::new("abort", &[&rule]).loopback_allowed().start();
    let mut held = UnixStream::connect(&path).await.unwrap();
    let connect = format!("CONNECT test.example:{} HTTP/1.1\r\n\r\n", origin.port);
    held.write_all(connect.as_bytes()).await.unwrap();
    let mut established = [0u8; 39];
    held.read_exact(&mut established).await.unwrap();
    let summary = tokio::time::timeout(Duration::from_secs(5), handle.stop())
        .await
        .expect("stop does not wait for open tunnels");
    assert_eq!(summary.connections, 1);
    let mut rest = Vec::new();
    let read = tokio::time::timeout(Duration::from_secs(5), held.read_to_end(&mut rest)).await;
    assert!(matches!(read, Ok(Ok(0)) | Ok(Err(_))), "{read:?}");

    let (handle, path) = Setup::new("drop", &["example.com"]).start();
    drop(handle);
    assert!(!path.exists());
}

#[test]
fn default_limits() {
    let limits = EgressLimits::default();
    assert_eq!(limits.max_bytes, 50 * 1024 * 1024);
    assert_eq!(limits.connect_timeout, Duration::from_secs(10));
    assert_eq!(limits.max_connections, 64);
}

#[test]
fn socket_paths() {
    assert_eq!(SOCKET_IN_CONTAINER, format!("/run/mcp/{SOCKET_NAME}"));
}
