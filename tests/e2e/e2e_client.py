"""Client-side helpers of the end-to-end suite (see conftest.py for the overview).

`Server` starts the real `code-executor-mcp serve` binary as a child process through the
official MCP Python SDK (`stdio_client` + `ClientSession`, mcp 2.x) and keeps the session
open on an asyncio event loop in a background thread, so that plain (synchronous) pytest
tests can drive it: `server.execute("python", code, ...)` for one call, or
`server.run(async_fn)` to run `await async_fn(session)` on the loop when a test needs
concurrency, progress callbacks or cancellation.

The server is launched through `/bin/sh -c 'echo $$ > pidfile; exec binary serve'`, so
that its pid (needed for the RSS check and to tell our containers from anybody else's by
their `code-executor.owner` label) is known without scanning /proc.
"""

from __future__ import annotations

import asyncio
import json
import os
import shutil
import subprocess
import tempfile
import threading
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Awaitable, Callable

import mcp_types as types
from mcp.client import ClientSession
from mcp.client.stdio import StdioServerParameters, stdio_client
from mcp.shared.exceptions import MCPError

REPO = Path(__file__).resolve().parents[2]
BINARY = Path(os.environ.get("CE_E2E_BINARY", REPO / "target" / "debug" / "code-executor-mcp"))
VERSION = os.environ.get("CE_E2E_IMAGE_VERSION", "0.1.0")
IMAGES = (f"code-executor/python:{VERSION}", f"code-executor/deno:{VERSION}")

MANAGED_LABEL = "code-executor.managed"
EXECUTION_LABEL = "code-executor.execution-id"
OWNER_LABEL = "code-executor.owner"

TOOL = {"python": "executePython", "typescript": "executeTypescript", "ts": "executeTypescript"}

# Passed through to the server when set in the test's own environment (stdio_client
# otherwise only passes HOME, LOGNAME, PATH, SHELL, TERM, USER).
PASSTHROUGH_ENV = ("DOCKER_HOST", "DOCKER_CERT_PATH", "DOCKER_TLS_VERIFY", "RUST_LOG", "XDG_RUNTIME_DIR")

# CE_E2E_RUNTIME=runsc (say) runs every suite under that container runtime: each server
# gets CODE_EXECUTOR_RUNTIME=<it> unless its test sets one. "auto" when unset.
RUNTIME = os.environ.get("CE_E2E_RUNTIME", "auto")

# The per-client execution rate limit (default 60/min, burst 10) would refuse a suite that
# runs executions back to back: servers get these unless their test sets its own.
RATE_LIMIT_ENV = {"CODE_EXECUTOR_EXECUTIONS_PER_MINUTE": "100000", "CODE_EXECUTOR_EXECUTION_BURST": "10000"}

# Pids of every server started in this process: the end-of-session check looks for
# containers owned by any of them.
STARTED_PIDS: set[int] = set()

__all__ = ["MCPError", "RUNTIME", "Server", "Result", "docker", "our_containers", "server_env", "wait_no_containers"]


@dataclass
class Result:
    """One tool call's result, with the wall time the client measured."""

    raw: types.CallToolResult
    wall: float

    @property
    def sc(self) -> dict[str, Any]:
        return self.raw.structured_content or {}

    @property
    def is_error(self) -> bool:
        return bool(self.raw.is_error)

    def __getitem__(self, key: str) -> Any:
        return self.sc[key]

    @property
    def text(self) -> str:
        return "".join(getattr(c, "text", "") for c in self.raw.content)

    def __repr__(self) -> str:  # shown by pytest on assertion failures
        sc = dict(self.sc)
        for k in ("output", "stderr", "error"):
            if isinstance(sc.get(k), str) and len(sc[k]) > 600:
                sc[k] = sc[k][:300] + f"...<{len(sc[k])} chars>..." + sc[k][-200:]
        return f"Result(is_error={self.is_error}, wall={self.wall:.2f}s, sc={json.dumps(sc, indent=1)})"


@dataclass
class Server:
    """A `code-executor-mcp serve` child process with an initialized MCP client session."""

    extra_env: dict[str, str] = field(default_factory=dict)
    name: str = "server"

    def __post_init__(self) -> None:
        self.tmp = Path(tempfile.mkdtemp(prefix=f"ce-e2e-{self.name}-"))
        # Each server audits into a directory of its own (removed with `self.tmp` at stop),
        # unless the test names one.
        if "CODE_EXECUTOR_AUDIT_DIR" in self.extra_env:
            self.audit_dir = Path(self.extra_env["CODE_EXECUTOR_AUDIT_DIR"])
        else:
            self.audit_dir = self.tmp / "audit"
        self.pidfile = self.tmp / "server.pid"
        self.errlog_path = self.tmp / "server.stderr.log"
        self.logs: list[types.LoggingMessageNotificationParams] = []
        self.tools: dict[str, types.Tool] = {}
        self.session: ClientSession | None = None
        self._loop = asyncio.new_event_loop()
        self._thread = threading.Thread(target=self._loop.run_forever, name=f"mcp-{self.name}", daemon=True)
        self._main_future = None
        self._stop: asyncio.Event | None = None
        self._pid: int | None = None

    # ------------------------------------------------------------------ lifecycle

    def start(self, timeout: float = 60) -> "Server":
        if not BINARY.exists():
            raise RuntimeError(f"server binary {BINARY} is missing: run `cargo build` first")
        self._thread.start()
        ready = threading.Event()
        failure: list[BaseException] = []

        def set_ready(exc: BaseException | None = None) -> None:
            if exc is not None:
                failure.append(exc)
            ready.set()

        async def starter() -> None:
            try:
                await self._main(set_ready)
            except BaseException as e:  # noqa: BLE001 - surfaced through `ready`
                set_ready(e)
                raise

        self._main_future = asyncio.run_coroutine_threadsafe(starter(), self._loop)
        if not ready.wait(timeout) or failure:
            why = repr(failure[0]) if failure else f"no session after {timeout} s"
            tail = self.stderr_tail()  # before stop() removes the log with self.tmp
            self.stop(5)
            raise RuntimeError(f"{self.name}: MCP server did not come up: {why}\n{tail}")
        STARTED_PIDS.add(self.pid)
        return self

    async def _main(self, set_ready: Callable[..., None]) -> None:
        self._stop = asyncio.Event()
        env = server_env(self.extra_env, self.audit_dir)
        params = StdioServerParameters(
            command="/bin/sh",
            args=["-c", 'echo $$ > "$0" && exec "$1" serve', str(self.pidfile), str(BINARY)],
            env=env,
            # A directory of our own: no code-executor.toml or .mcp.json from elsewhere.
            cwd=str(self.tmp),
        )
        with open(self.errlog_path, "w") as errlog:
            async with stdio_client(params, errlog=errlog) as (read, write):
                async with ClientSession(read, write, logging_callback=self._on_log) as session:
                    await session.initialize()
                    listed = await session.list_tools()  # also arms outputSchema validation
                    self.tools = {t.name: t for t in listed.tools}
                    self.session = session
                    set_ready()
                    try:
                        await self._stop.wait()
                    finally:
                        self.session = None

    async def _on_log(self, params: types.LoggingMessageNotificationParams) -> None:
        self.logs.append(params)

    def stop(self, timeout: float = 30) -> None:
        if self._main_future is None:
            return
        if self._stop is not None:
            self._loop.call_soon_threadsafe(self._stop.set)
        try:
            self._main_future.result(timeout)
        except Exception:  # noqa: BLE001 - best effort; leftovers are caught by the session check
            pass
        self._loop.call_soon_threadsafe(self._loop.stop)
        self._thread.join(timeout)
        self._main_future = None
        shutil.rmtree(self.tmp, ignore_errors=True)

    def __enter__(self) -> "Server":
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()

    # ------------------------------------------------------------------ process facts

    @property
    def pid(self) -> int:
        if self._pid is None:
            self._pid = int(self.pidfile.read_text().strip())
        return self._pid

    def alive(self) -> bool:
        try:
            os.kill(self.pid, 0)
        except ProcessLookupError:
            return False
        return True

    def status(self) -> dict[str, str]:
        """The server's /proc/<pid>/status as a dict."""
        out = {}
        for line in Path(f"/proc/{self.pid}/status").read_text().splitlines():
            k, _, v = line.partition(":")
            out[k] = v.strip()
        return out

    def rss_kib(self, key: str = "VmRSS") -> int:
        return int(self.status()[key].split()[0])

    def stderr_tail(self, n: int = 4000) -> str:
        try:
            text = self.errlog_path.read_text(errors="replace")
        except OSError:
            return "<no server stderr>"
        return f"--- {self.name} stderr (last {n} chars) ---\n{text[-n:]}"

    # ------------------------------------------------------------------ calls

    def run(self, fn: Callable[[ClientSession], Awaitable[Any]], timeout: float = 120) -> Any:
        """Runs `await fn(session)` on the session's loop and returns its value."""
        session = self.session
        if session is None:
            raise RuntimeError(f"{self.name}: no live session\n{self.stderr_tail()}")
        fut = asyncio.run_coroutine_threadsafe(fn(session), self._loop)
        try:
            return fut.result(timeout)
        except TimeoutError:
            fut.cancel()
            raise

    def call(self, tool: str, arguments: dict[str, Any] | None = None, timeout: float = 120, **kw: Any) -> Result:
        async def go(session: ClientSession) -> Result:
            return await call(session, tool, arguments, **kw)

        return self.run(go, timeout)

    def execute(self, language: str, code: str, timeout: float = 120, **arguments: Any) -> Result:
        """One `executePython` / `executeTypescript` call; extra keyword args are tool arguments."""
        return self.call(TOOL[language], {"code": code, **arguments}, timeout=timeout)

    def call_error(self, tool: str, arguments: dict[str, Any], timeout: float = 60) -> MCPError:
        """Calls a tool that must fail with a JSON-RPC error; returns that error."""
        try:
            result = self.call(tool, arguments, timeout=timeout)
        except MCPError as e:
            return e
        raise AssertionError(f"{tool}({arguments!r}) should be refused with a JSON-RPC error, got {result!r}")

    def containers(self, all_states: bool = True) -> list[dict[str, str]]:
        """Sandbox containers this server owns (by the owner label's pid)."""
        return our_containers({self.pid}, all_states)


def server_env(extra: dict[str, str], audit_dir: Path) -> dict[str, str]:
    """The environment of a server: the passthrough variables, its own audit directory,
    CODE_EXECUTOR_RUNTIME from CE_E2E_RUNTIME when set, a rate limit no suite reaches,
    then the test's `extra`."""
    env = {k: os.environ[k] for k in PASSTHROUGH_ENV if k in os.environ}
    env.update(RATE_LIMIT_ENV)
    env["CODE_EXECUTOR_AUDIT_DIR"] = str(audit_dir)
    if "CE_E2E_RUNTIME" in os.environ:
        env["CODE_EXECUTOR_RUNTIME"] = os.environ["CE_E2E_RUNTIME"]
    env.update(extra)
    return env


async def call(session: ClientSession, tool: str, arguments: dict[str, Any] | None = None, **kw: Any) -> Result:
    t0 = time.monotonic()
    raw = await session.call_tool(tool, arguments, **kw)
    return Result(raw, time.monotonic() - t0)


async def execute(session: ClientSession, language: str, code: str, **arguments: Any) -> Result:
    """Async form of `Server.execute`, for use inside `Server.run`."""
    return await call(session, TOOL[language], {"code": code, **arguments})


# ---------------------------------------------------------------------- docker


def docker(*args: str, timeout: float = 30) -> str:
    proc = subprocess.run(["docker", *args], capture_output=True, text=True, timeout=timeout)
    if proc.returncode != 0:
        raise RuntimeError(f"docker {' '.join(args)} failed ({proc.returncode}): {proc.stderr.strip()}")
    return proc.stdout


def managed_containers(all_states: bool = True, extra_filters: tuple[str, ...] = ()) -> list[dict[str, str]]:
    """Every container carrying our label: id, state, execution id and owner."""
    fmt = (
        '{{.ID}}\t{{.State}}\t{{.Label "' + EXECUTION_LABEL + '"}}\t{{.Label "' + OWNER_LABEL + '"}}\t{{.Names}}'
    )
    args = ["ps", "--no-trunc", "--filter", f"label={MANAGED_LABEL}=true", "--format", fmt]
    if all_states:
        args.insert(1, "-a")
    for f in extra_filters:
        args += ["--filter", f]
    rows = []
    for line in docker(*args).splitlines():
        if not line.strip():
            continue
        cid, state, exec_id, owner, names = (line.split("\t") + [""] * 5)[:5]
        rows.append({"id": cid, "state": state, "execution_id": exec_id, "owner": owner, "name": names})
    return rows


def owner_pid(owner: str) -> int | None:
    """The pid part of an owner label `host:pid:start-time`."""
    parts = owner.rsplit(":", 2)
    try:
        return int(parts[1]) if len(parts) == 3 else None
    except ValueError:
        return None


def our_containers(pids: set[int], all_states: bool = True) -> list[dict[str, str]]:
    return [c for c in managed_containers(all_states) if owner_pid(c["owner"]) in pids]


def process_gone(pid: int) -> bool:
    """True when `pid` has exited (gone, or a zombie not yet reaped)."""
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return True
    return stat.rsplit(")", 1)[1].split()[0] == "Z"


def wait_until(predicate: Callable[[], Any], timeout: float, interval: float = 0.25) -> Any:
    """Polls until `predicate()` is truthy; returns its last value (falsy on timeout)."""
    deadline = time.monotonic() + timeout
    while True:
        value = predicate()
        if value or time.monotonic() >= deadline:
            return value
        time.sleep(interval)


def wait_no_containers(list_fn: Callable[[], list[dict[str, str]]], timeout: float = 10) -> list[dict[str, str]]:
    """Polls `list_fn` until it is empty; returns what is left (empty on success)."""
    left: list[dict[str, str]] = []

    def empty() -> bool:
        nonlocal left
        left = list_fn()
        return not left

    wait_until(empty, timeout)
    return left
