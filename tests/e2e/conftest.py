"""End-to-end tests: the real `code-executor-mcp serve` binary, the real Docker engine and
the official MCP Python SDK client (mcp 2.x, `stdio_client` + `ClientSession`).

Run:   cargo build && images/build.sh all          (or `make test`, which does both)
       .venv/bin/python -m pytest -q tests/e2e
Needs: target/debug/code-executor-mcp (override with CE_E2E_BINARY), the images
       code-executor/python:0.1.0 and code-executor/deno:0.1.0, a reachable engine
       (DOCKER_HOST is passed through to the server when set).

Layout (a package: `__init__.py` keeps this conftest from shadowing tests/runners' one):
  e2e_client.py            `Server` (one server child + session on a background event loop),
                           docker helpers. Tests stay synchronous; `server.run(async_fn)`
                           runs `await async_fn(session)` when a test needs concurrency,
                           progress callbacks or cancellation.
  test_e2e_basics.py       languages, streams, exit codes, exceptions, await, stdin, input
                           validation, health, concurrency, progress notifications.
  test_e2e_isolation.py    timeout, OOM, fork bomb, read-only root, uid/capabilities,
                           no network, Deno permissions.
  test_e2e_server.py       its own servers: secret env not leaked, 100 MB output capped with
                           the server's RSS bounded; cancellation (also mid-creation),
                           shutdown (stdin close, SIGTERM, SIGINT, also while the warm pool
                           fills) and a crash leave no container.
  test_e2e_tools.py        tool calls from the sandbox (both languages) through the
                           per-execution proxy to real downstreams: mcp-server-time,
                           mcp-server-git and support/downstream_server.py over Streamable
                           HTTP; discovery, typed errors, 401, token secrecy, socket
                           isolation, killed downstream (502), timeout (504), 100 calls.
  test_e2e_hostile.py      one test per attack (host files, server env, Docker socket,
                           privileges, syscalls, fork/memory bombs, tmpfs, rootfs, network,
                           DNS, kill(-1), proxy tokens, tool-name tricks, Deno permissions);
                           its docstring holds the attack | layer | result table.
  test_e2e_security.py     filesystem grants, egress proxy (loopback origins that count
                           connections), SSRF guard, rate limits, audit log + `audit verify`,
                           container runtime.
  support/                 downstream servers and MCP_CONFIG_PATH helpers for it;
                           checks.py: assert_still_serving, CountingHttpServer, ...

Every `Server` audits into a temp directory of its own (`server.audit_dir`, removed at
stop) and gets a rate limit no suite reaches (both unless the test's env sets them).
CE_E2E_RUNTIME=runsc (say) passes CODE_EXECUTOR_RUNTIME=runsc to every `Server`, so the
same suites run under gVisor.

A server keeps a warm pool of started containers (default 2 per language), so "the
container of an execution" is found by what the code prints (its hostname = the first
12 hex digits of the container id), never by counting the server's containers.
  latency.py               not a test: p50/p95 of a trivial execution per language.
  tool_latency.py          not a test: p50/p95 of a tool call from the sandbox vs direct.

One server per module (`server` fixture); tests needing their own process use
`make_server`. At the end of the session every server has been stopped and no sandbox
container owned by any of them (label code-executor.owner=<host>:<pid>:<start>) may be
left: removal runs in the background after each result, so that check polls for ~10 s.
Containers of other processes (a developer's own server, parallel cargo tests) are not
ours and are ignored.
"""

from __future__ import annotations

import shutil
import subprocess
from pathlib import Path

import pytest

from .e2e_client import BINARY, IMAGES, STARTED_PIDS, Server, our_containers, wait_no_containers


def _preflight() -> str | None:
    if shutil.which("docker") is None:
        return "the docker CLI is not installed"
    if not BINARY.exists():
        return f"{BINARY} is missing: run `cargo build`"
    proc = subprocess.run(["docker", "image", "inspect", *IMAGES], capture_output=True, text=True)
    if proc.returncode != 0:
        return f"sandbox images missing ({proc.stderr.strip()}): run `images/build.sh all` (make image-build)"
    return None


def pytest_collection_modifyitems(config, items):  # noqa: ARG001
    # Fail loudly (not skip): a missing binary or image is a setup error to fix.
    here = Path(__file__).parent
    if not any(here in Path(str(item.fspath)).parents for item in items):
        return
    problem = _preflight()
    if problem:
        raise pytest.UsageError(f"end-to-end suite cannot run: {problem}")


def _start(name: str, env: dict[str, str] | None = None) -> Server:
    return Server(extra_env=env or {}, name=name).start()


@pytest.fixture(scope="module")
def server(request):
    """One server and session shared by the tests of a module."""
    srv = _start(request.module.__name__.rsplit(".", 1)[-1])
    yield srv
    srv.stop()


@pytest.fixture
def make_server(request):
    """Factory for a fresh server (own process and environment), stopped after the test."""
    started: list[Server] = []

    def make(env: dict[str, str] | None = None) -> Server:
        srv = _start(request.node.name, env)
        started.append(srv)
        return srv

    yield make
    for srv in started:
        srv.stop()


@pytest.fixture(scope="session", autouse=True)
def no_container_left_behind():
    """After the whole session: no sandbox container of any server we started remains."""
    yield
    if not STARTED_PIDS:
        return
    left = wait_no_containers(lambda: our_containers(STARTED_PIDS), timeout=10)
    assert not left, f"sandbox containers left behind after the suite: {left}"
