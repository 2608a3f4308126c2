"""Helpers shared by test_e2e_hostile.py and test_e2e_security.py.

  last_json(r)                  the last non-empty stdout line of a result, parsed
  run_json(srv, lang, code)     one execution that must succeed; (result, last_json)
  assert_still_serving(srv)     the server is alive and runs a normal execution correctly
  wait_downstreams_ready(srv)   polls `health` until the named downstreams are ready
  new_socket_base()             a short temp CODE_EXECUTOR_SOCKET_BASE
  CountingHttpServer            a loopback HTTP origin that counts accepted connections
  errno_name(e)                 "EPERM" for an OSError, else its repr
"""

from __future__ import annotations

import errno
import json
import socket
import tempfile
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

from ..e2e_client import Result, Server, wait_until


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


def wait_downstreams_ready(srv: Server, names: set[str], timeout: float = 60) -> None:
    states: dict[str, dict[str, Any]] = {}

    def ready() -> bool:
        nonlocal states
        states = downstream_states(srv)
        return names <= set(states) and all(states[n]["status"] == "ready" for n in names)

    if not wait_until(ready, timeout, interval=0.3):
        raise AssertionError(f"downstream servers not ready after {timeout} s: {states}\n{srv.stderr_tail()}")


def new_socket_base() -> Path:
    # Short: the server accepts at most 60 bytes.
    return Path(tempfile.mkdtemp(prefix="ce-e2e-sock-"))


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
