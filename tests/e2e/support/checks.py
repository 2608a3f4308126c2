"""Helpers shared by the e2e suites (hostile, security, tools, isolation).

  last_json(r)                  the last non-empty stdout line of a result, parsed
  run_json(srv, lang, code)     one execution that must succeed; (result, last_json)
  assert_still_serving(srv)     the server is alive and runs a normal execution correctly
  downstream_states(srv)        `health`'s downstream servers by name
  wait_downstreams_ready(srv)   polls `health` until the named downstreams are ready
  new_socket_base()             a short temp CODE_EXECUTOR_SOCKET_BASE
  serving_time(name, dir)       a server with mcp-server-time ready, stopped and cleaned after
  PROXY_RAW_REQUEST             sandbox code: raw_response(), one HTTP request on the proxy socket
  MEMORY_BOMBS                  (language, code) pairs that allocate until killed
  CountingHttpServer            a loopback HTTP origin that counts accepted connections
  errno_name(e)                 "EPERM" for an OSError, else its repr
"""

from __future__ import annotations

import errno
import json
import shutil
import socket
import tempfile
import threading
from contextlib import contextmanager
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any, Iterator

from ..e2e_client import Result, Server, wait_until
from .downstreams import time_entry, write_mcp_config


def last_json(r: Result) -> Any:
    """The last non-empty line of stdout, parsed as JSON (the code prints its findings last)."""
    lines = [line for line in r["output"].splitlines() if line.strip()]
    assert lines, r
    try:
        return json.loads(lines[-1])
    except ValueError as e:
        raise AssertionError(f"last output line is not JSON: {lines[-1]!r}\n{r!r}") from e


def run_json(srv: Server, language: str, code: str, **arguments: Any) -> tuple[Result, Any]:
    """Runs code that prints one JSON line last and must succeed; returns (result, parsed)."""
    r = srv.execute(language, code, **arguments)
    assert r["success"] is True and r["exitCode"] == 0 and r.is_error is False, r
    return r, last_json(r)


def assert_still_serving(srv: Server) -> None:
    """After an attack: the server process is alive and a normal execution works."""
    assert srv.alive(), f"the server died\n{srv.stderr_tail()}"
    r = srv.execute("python", "import sys\nprint(sum(range(10)), sys.stdin.read())", stdin="ok", timeout=120)
    assert r["success"] is True and r.is_error is False, r
    assert r["output"] == "45 ok\n" and r["stderr"] == "", r
    assert r["timedOut"] is False and r["oomKilled"] is False, r


def downstream_states(srv: Server) -> dict[str, dict[str, Any]]:
    r = srv.call("health", {})
    assert r.is_error is False, r
    return {s["name"]: s for s in r.sc.get("downstreamServers", [])}


def wait_downstreams_ready(srv: Server, names: set[str], timeout: float = 60) -> dict[str, dict[str, Any]]:
    """Polls `health` until every server in `names` is ready; returns the last states."""
    states: dict[str, dict[str, Any]] = {}

    def ready() -> bool:
        nonlocal states
        states = downstream_states(srv)
        return names <= set(states) and all(states[n]["status"] == "ready" for n in names)

    if not wait_until(ready, timeout, interval=0.3):
        raise AssertionError(f"downstream servers not ready after {timeout} s: {states}\n{srv.stderr_tail()}")
    return states


def new_socket_base() -> Path:
    # Short (the server accepts at most 60 bytes) and outside the server's own temp dir.
    return Path(tempfile.mkdtemp(prefix="ce-e2e-sock-"))


@contextmanager
def serving_time(name: str, config_dir: Path, **env: str) -> Iterator[Server]:
    """A server whose one downstream is mcp-server-time (config in `config_dir`), with its own
    socket base; yielded once `time` is ready, then stopped and its socket base removed."""
    config = write_mcp_config(config_dir / "mcp.json", {"time": time_entry()})
    base = new_socket_base()
    srv = Server(
        extra_env={"MCP_CONFIG_PATH": str(config), "CODE_EXECUTOR_SOCKET_BASE": str(base), **env},
        name=name,
    ).start()
    try:
        wait_downstreams_ready(srv, {"time"})
        yield srv
    finally:
        srv.stop()
        shutil.rmtree(base, ignore_errors=True)


# Sandbox code: one raw HTTP/1.1 request on the tool proxy's socket, with or without a token.
PROXY_RAW_REQUEST = r"""
import socket

def raw_response(method, path, headers, body=b""):
    s = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    s.settimeout(10)
    s.connect("/run/mcp/proxy.sock")
    head = f"{method} {path} HTTP/1.1\r\nHost: localhost\r\nConnection: close\r\n"
    head += "".join(f"{k}: {v}\r\n" for k, v in headers.items())
    head += f"Content-Length: {len(body)}\r\n\r\n"
    s.sendall(head.encode() + body)
    data = b""
    while chunk := s.recv(65536):
        data += chunk
    s.close()
    status_line, _, rest = data.partition(b"\r\n")
    return int(status_line.split()[1]), rest.decode(errors="replace")
"""

# Code that allocates until the memory limit kills it. For TypeScript a plain array of
# numbers (not an ArrayBuffer, which could fail with a RangeError before the cgroup limit)
# so V8's heap grows until the kernel kills the process.
MEMORY_BOMBS = [
    ("python", "chunks = []\nwhile True:\n    chunks.append(b'x' * (8 << 20))\n"),
    ("typescript", "const keep: number[][] = [];\nwhile (true) { keep.push(new Array(1 << 20).fill(1.5)); }\n"),
]


def errno_name(e: BaseException) -> str:
    if isinstance(e, OSError) and e.errno:
        return errno.errorcode.get(e.errno, str(e.errno))
    return repr(e)


class CountingHttpServer:
    """An HTTP/1.1 origin on 127.0.0.1:<free port> answering `origin:<path>`; counts
    every TCP connection it accepts (`connections`) and keeps the request paths."""

    def __init__(self) -> None:
        self.connections = 0
        self.paths: list[str] = []
        self._lock = threading.Lock()
        owner = self

        class Handler(BaseHTTPRequestHandler):
            def do_GET(self) -> None:  # noqa: N802 - the stdlib's name
                with owner._lock:
                    owner.paths.append(self.path)
                body = f"origin:{self.path}".encode()
                self.send_response(200)
                self.send_header("Content-Type", "text/plain")
                self.send_header("Content-Length", str(len(body)))
                self.send_header("Connection", "close")
                self.end_headers()
                self.wfile.write(body)

            def log_message(self, *args: Any) -> None:
                pass

        class Counting(ThreadingHTTPServer):
            daemon_threads = True

            def process_request(self, request: socket.socket, client_address: Any) -> None:
                with owner._lock:
                    owner.connections += 1
                super().process_request(request, client_address)

        self._httpd = Counting(("127.0.0.1", 0), Handler)
        self.port: int = self._httpd.server_address[1]
        self._thread = threading.Thread(target=self._httpd.serve_forever, name=f"origin-{self.port}", daemon=True)

    def start(self) -> "CountingHttpServer":
        self._thread.start()
        return self

    def stop(self) -> None:
        self._httpd.shutdown()
        self._httpd.server_close()

    def __enter__(self) -> "CountingHttpServer":
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()


def initialize_status(base: str, key: str | None = None) -> int:
    """HTTP status of a bare MCP `initialize` POST to `<base>/mcp` (with `key` as bearer)."""
    import urllib.error
    import urllib.request

    headers = {"Content-Type": "application/json", "Accept": "application/json, text/event-stream"}
    if key is not None:
        headers["Authorization"] = f"Bearer {key}"
    req = urllib.request.Request(
        base + "/mcp",
        data=b'{"jsonrpc":"2.0","id":1,"method":"initialize","params":{}}',
        headers=headers,
        method="POST",
    )
    try:
        with urllib.request.urlopen(req, timeout=10) as resp:
            return resp.status
    except urllib.error.HTTPError as err:
        return err.code
