"""`make bench`: code-executor-mcp against its baselines, side by side in one run.

Measures on this machine, in this order, and prints a table that it also writes to
bench/results.md (machine, date, N and the issue's target beside each number):

  1. latency of a trivial program (`print(1+1)` / `console.log(1+1)`), p50/p95/max over N
     runs per language:
       - bare interpreter on the host (python3 -c; deno eval, the binary unzipped from
         the wheel in images/.cache/deno/ into bench/.cache/);
       - `docker run --rm` of the same image with the same hardening flags, the
         interpreter run directly with -c / eval (no runner);
       - the raw engine cycle (examples/engine_cycle.rs: the server's own spec through
         bollard, create -> attach -> start -> wait -> remove, no server);
       - end to end through the official MCP Python SDK client over stdio against
         target/release/code-executor-mcp serve: warm pool (pool_size 2, sequential calls
         with a pause so the pool refills; warm calls counted from structuredContent.warmStart),
         warm with one downstream tool call in the program, and cold (pool_size 0);
       - for the breakdown of a warm execution: the runner alone in a prepared container
         (engine_cycle --warm: write of the request -> output -> result and end markers ->
         exit), the same with another container being created alongside (what the pool
         refill does), and the MCP round trip of a call refused at validation (no container);
  2. throughput (executions/s) at concurrency 1, 4, 8: MCP (one session, asyncio.gather in
     batches, pool on) beside the raw engine cycle at the same concurrency;
  3. tool-call round trip: 200 `call_mcp_tool` calls from inside the sandbox to
     mcp-server-time (through the server's proxy) against 200 `call_tool` made directly by
     the MCP client to mcp-server-time; the p50 difference is the proxy's own cost;
  4. time to first streamed output (progress notification carrying 'a') of a program that
     prints, sleeps 1 s and prints, and the total call time;
  5. server RSS idle (pool filled) and peak under the concurrency-8 load (sampled every
     50 ms); image sizes.

Everything it starts is labelled code-executor.managed=true and removed: servers are
stopped by closing their stdin (the SDK's stdio_client, which escalates to SIGTERM), and
their containers (found by the code-executor.owner label's pid), the `docker run` and
engine-cycle containers (label code-executor.bench=<run id>) are waited for and, should any
remain, force-removed and reported.

    .venv/bin/python bench/run.py [--n 50] [--tput 24] [--tool-calls 200] [--pause 0.5]
    (or BENCH_N=10 make bench)
"""

from __future__ import annotations

import argparse
import asyncio
import datetime as dt
import json
import os
import platform
import shutil
import socket
import statistics
import subprocess
import sys
import tempfile
import threading
import time
import tomllib
import uuid
import zipfile
from contextlib import asynccontextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from mcp.client import ClientSession
from mcp.client.stdio import StdioServerParameters, stdio_client

REPO = Path(__file__).resolve().parents[1]
HERE = REPO / "bench"
CACHE = HERE / ".cache"
LOGS = CACHE / "logs"
RESULTS = HERE / "results.md"
BINARY = Path(os.environ.get("BENCH_BINARY", REPO / "target" / "release" / "code-executor-mcp"))
CYCLE = Path(os.environ.get("BENCH_ENGINE_CYCLE", REPO / "target" / "release" / "examples" / "engine_cycle"))
VENV_BIN = REPO / ".venv" / "bin"
VERSION = tomllib.loads((REPO / "Cargo.toml").read_text())["package"]["version"]
IMAGES = {
    "python": f"code-executor/python:{VERSION}",
    "typescript": f"code-executor/deno:{VERSION}",
    "rootfs": f"code-executor/rootfs:{VERSION}",
}
TOOL = {"python": "executePython", "typescript": "executeTypescript"}
TRIVIAL = {"python": "print(1+1)", "typescript": "console.log(1+1)"}
LANGS = ("python", "typescript")
LABEL = {"python": "Python", "typescript": "TypeScript"}

MANAGED_LABEL = "code-executor.managed"
OWNER_LABEL = "code-executor.owner"
BENCH_LABEL = "code-executor.bench"
RUN_ID = uuid.uuid4().hex[:12]
PASSTHROUGH_ENV = ("DOCKER_HOST", "DOCKER_CERT_PATH", "DOCKER_TLS_VERIFY", "XDG_RUNTIME_DIR")

TIME_TOOL = "mcp__time__get_current_time"
TOOL_LOOP = {
    "python": (
        "import time, json\n"
        "ms = []\n"
        "for _ in range({n}):\n"
        "    t = time.perf_counter()\n"
        "    await call_mcp_tool('" + TIME_TOOL + "', {{'timezone': 'UTC'}})\n"
        "    ms.append((time.perf_counter() - t) * 1000)\n"
        "print(json.dumps(ms))\n"
    ),
    "typescript": (
        "const ms: number[] = [];\n"
        "for (let i = 0; i < {n}; i++) {{\n"
        "  const t = performance.now();\n"
        "  await callMCPTool('" + TIME_TOOL + "', {{ timezone: 'UTC' }});\n"
        "  ms.push(performance.now() - t);\n"
        "}}\n"
        "console.log(JSON.stringify(ms));\n"
    ),
}
ONE_TOOL_CALL = {
    "python": "await call_mcp_tool('" + TIME_TOOL + "', {'timezone': 'UTC'})\nprint(1+1)",
    "typescript": "await callMCPTool('" + TIME_TOOL + "', { timezone: 'UTC' });\nconsole.log(1+1);",
}
FIRST_OUTPUT = {
    "python": "print('a', flush=True); import time; time.sleep(1); print('b')",
    "typescript": "console.log('a'); await new Promise((r) => setTimeout(r, 1000)); console.log('b');",
}


def log(msg: str) -> None:
    print(f"[bench {time.strftime('%H:%M:%S')}] {msg}", file=sys.stderr, flush=True)


# --------------------------------------------------------------------------- numbers


def percentile(values: list[float], p: float) -> float:
    if not values:
        return float("nan")
    ordered = sorted(values)
    k = (len(ordered) - 1) * p / 100
    lo, hi = int(k), min(int(k) + 1, len(ordered) - 1)
    return ordered[lo] + (ordered[hi] - ordered[lo]) * (k - lo)


@dataclass
class Dist:
    """A latency distribution in ms."""

    values: list[float] = field(default_factory=list)
    note: str = ""
    error: str | None = None

    @property
    def n(self) -> int:
        return len(self.values)

    def p(self, q: float) -> float:
        return percentile(self.values, q)

    @property
    def max(self) -> float:
        return max(self.values) if self.values else float("nan")


def proc_start_time(pid: int) -> int:
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return -1
    return int(stat.rsplit(")", 1)[1].split()[19])


def bench_owner() -> str:
    """An owner label naming this live process, so no server's orphan reaper removes our
    baseline containers while they run."""
    host = Path("/proc/sys/kernel/hostname").read_text().strip()
    return f"{host}:{os.getpid()}:{proc_start_time(os.getpid())}"


# --------------------------------------------------------------------------- docker


def docker(*args: str, timeout: float = 60, check: bool = True) -> str:
    proc = subprocess.run(["docker", *args], capture_output=True, text=True, timeout=timeout)
    if check and proc.returncode != 0:
        raise RuntimeError(f"docker {' '.join(args)} failed ({proc.returncode}): {proc.stderr.strip()}")
    return proc.stdout


def containers_with(label_filter: str) -> list[str]:
    out = docker("ps", "-aq", "--no-trunc", "--filter", f"label={label_filter}", check=False)
    return [line for line in out.split() if line]


def containers_of_pid(pid: int) -> list[str]:
    """Managed containers whose owner label names `pid` (host:pid:start)."""
    fmt = '{{.ID}}\t{{.Label "' + OWNER_LABEL + '"}}'
    out = docker("ps", "-a", "--no-trunc", "--filter", f"label={MANAGED_LABEL}=true", "--format", fmt, check=False)
    ids = []
    for line in out.splitlines():
        cid, _, owner = line.partition("\t")
        parts = owner.rsplit(":", 2)
        if len(parts) == 3 and parts[1] == str(pid):
            ids.append(cid)
    return ids


def wait_gone(list_fn, timeout: float) -> list[str]:
    deadline = time.monotonic() + timeout
    while True:
        left = list_fn()
        if not left or time.monotonic() >= deadline:
            return left
        time.sleep(0.25)


LEFTOVERS: list[str] = []


def force_remove(ids: list[str], what: str) -> None:
    if ids:
        LEFTOVERS.append(f"{len(ids)} container(s) of {what} had to be force-removed")
        docker("rm", "-f", *ids, check=False)


def docker_run_args(language: str) -> list[str]:
    """`docker run --rm` with the server's hardening flags, interpreter run directly."""
    common = [
        "run", "--rm",
        "--read-only", "--cap-drop", "ALL", "--security-opt", "no-new-privileges",
        "--network", "none", "--pids-limit", "64",
        "--memory", "256m", "--memory-swap", "256m", "--cpus", "1",
        "--tmpfs", "/tmp:rw,nosuid,nodev,size=64m,mode=1777",
        "--tmpfs", "/workspace:rw,nosuid,nodev,size=64m,uid=1001,gid=1001,mode=0700",
        "--user", "1001:1001", "--log-driver", "none",
        "--label", f"{MANAGED_LABEL}=true", "--label", f"{OWNER_LABEL}={bench_owner()}",
        "--label", f"{BENCH_LABEL}={RUN_ID}",
    ]
    if language == "python":
        return common + ["--entrypoint", "/usr/bin/python3", IMAGES["python"], "-c", TRIVIAL["python"]]
    return common + ["--entrypoint", "/usr/local/bin/deno", IMAGES["typescript"], "eval", TRIVIAL["typescript"]]


# --------------------------------------------------------------------------- host


def host_deno() -> Path | None:
    """The Deno binary of the pinned wheel, unzipped once into bench/.cache/."""
    target = CACHE / "deno"
    if target.exists():
        return target
    wheels = sorted((REPO / "images" / ".cache" / "deno").glob("deno-*.whl"))
    if not wheels:
        return None
    with zipfile.ZipFile(wheels[-1]) as zf:
        member = next((n for n in zf.namelist() if n.endswith(".data/scripts/deno")), None)
        if member is None:
            return None
        CACHE.mkdir(parents=True, exist_ok=True)
        tmp = target.with_suffix(".tmp")
        with zf.open(member) as src, open(tmp, "wb") as dst:
            shutil.copyfileobj(src, dst)
        tmp.chmod(0o755)
        tmp.rename(target)
    return target


def time_command(argv: list[str], n: int, expect: str, env: dict[str, str] | None = None, warmup: int = 1) -> Dist:
    d = Dist()
    for i in range(warmup + n):
        t = time.perf_counter()
        proc = subprocess.run(argv, capture_output=True, text=True, env=env, timeout=120)
        ms = (time.perf_counter() - t) * 1000
        if proc.returncode != 0 or proc.stdout.strip() != expect:
            d.error = f"exit {proc.returncode}, stdout {proc.stdout.strip()!r}, stderr {proc.stderr.strip()[-300:]!r}"
            return d
        if i >= warmup:
            d.values.append(ms)
    return d


# --------------------------------------------------------------------------- engine cycle


async def engine_cycle(language: str, cycles: int, concurrency: int) -> dict[str, Any]:
    proc = await asyncio.create_subprocess_exec(
        str(CYCLE), "--lang", language, "--cycles", str(cycles), "--concurrency", str(concurrency),
        "--label", f"{BENCH_LABEL}={RUN_ID}",
        stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.PIPE,
    )
    out, err = await proc.communicate()
    try:
        data = json.loads(out.decode().strip().splitlines()[-1])
    except (ValueError, IndexError):
        data = {"error": f"engine_cycle exit {proc.returncode}: {err.decode().strip()[-300:]}"}
    if proc.returncode != 0:
        data.setdefault("error", f"engine_cycle exit {proc.returncode}: {err.decode().strip()[-300:]}")
    return data


# --------------------------------------------------------------------------- MCP server


class Server:
    def __init__(self, name: str) -> None:
        self.name = name
        self.session: ClientSession | None = None
        self.pid: int | None = None
        self.spawned_at = 0.0
        self.log_path = LOGS / f"{name}.log"

    def rss_kib(self) -> int:
        for line in Path(f"/proc/{self.pid}/status").read_text().splitlines():
            if line.startswith("VmRSS:"):
                return int(line.split()[1])
        return 0

    async def call(self, tool: str, arguments: dict[str, Any], **kw: Any):
        t = time.perf_counter()
        raw = await self.session.call_tool(tool, arguments, **kw)
        return raw, (time.perf_counter() - t) * 1000

    async def pool_sizes(self) -> dict[str, int]:
        raw, _ = await self.call("health", {})
        sc = raw.structured_content or {}
        return (sc.get("sandbox") or {}).get("poolSizes") or {}

    async def wait_pool(self, want: int, timeout: float = 30) -> float | None:
        """Waits until both languages have `want` warm containers; returns seconds since spawn."""
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            sizes = await self.pool_sizes()
            if sizes and all(sizes.get(lang, 0) >= want for lang in LANGS):
                return time.perf_counter() - self.spawned_at
            await asyncio.sleep(0.1)
        return None


@asynccontextmanager
async def mcp_server(name: str, env_extra: dict[str, str], toml: str | None = None):
    tmp = Path(tempfile.mkdtemp(prefix=f"ce-bench-{name}-"))
    if toml is not None:
        (tmp / "code-executor.toml").write_text(toml)
    pidfile = tmp / "server.pid"
    env = {k: os.environ[k] for k in PASSTHROUGH_ENV if k in os.environ}
    # runc unless BENCH_RUNTIME says otherwise: the engine-cycle and `docker run` baselines
    # use the engine's default runtime, and `auto` would pick gVisor where it is registered.
    env["CODE_EXECUTOR_RUNTIME"] = os.environ.get("BENCH_RUNTIME", "runc")
    env["CODE_EXECUTOR_AUDIT_DIR"] = str(tmp / "audit")
    env.update(env_extra)
    params = StdioServerParameters(
        command="/bin/sh",
        args=["-c", 'echo $$ > "$0" && exec "$1" serve', str(pidfile), str(BINARY)],
        env=env,
        cwd=str(tmp),  # no code-executor.toml or .mcp.json but ours
    )
    srv = Server(name)
    kids: list[tuple[int, int]] = []
    LOGS.mkdir(parents=True, exist_ok=True)
    try:
        with open(srv.log_path, "w") as errlog:
            srv.spawned_at = time.perf_counter()
            async with stdio_client(params, errlog=errlog) as (read, write):
                async with ClientSession(read, write) as session:
                    await session.initialize()
                    await session.list_tools()  # as a client does; arms outputSchema checks
                    srv.session = session
                    srv.pid = int(pidfile.read_text().strip())
                    yield srv
                    srv.session = None
                    kids = [(k, proc_start_time(k)) for k in descendants(srv.pid) if alive(k)]
    finally:
        if srv.pid is not None:
            # Closing stdin stopped it; its shutdown removes its containers.
            deadline = time.monotonic() + 20
            while time.monotonic() < deadline and alive(srv.pid):
                await asyncio.sleep(0.1)
            if alive(srv.pid):
                LEFTOVERS.append(f"server {name} (pid {srv.pid}) still running after stdin close: SIGKILL")
                try:
                    os.kill(srv.pid, 9)
                except ProcessLookupError:
                    pass
            for kid, started in kids:
                same = lambda: alive(kid) and proc_start_time(kid) == started  # noqa: E731 - not a reused pid
                deadline = time.monotonic() + 5
                while time.monotonic() < deadline and same():
                    await asyncio.sleep(0.1)
                if same():
                    LEFTOVERS.append(f"process {kid} started by server {name} outlived it: SIGTERM")
                    try:
                        os.kill(kid, 15)
                    except ProcessLookupError:
                        pass
            left = await asyncio.to_thread(wait_gone, lambda: containers_of_pid(srv.pid), 20)
            force_remove(left, f"server {name}")
        shutil.rmtree(tmp, ignore_errors=True)


def descendants(pid: int) -> list[int]:
    """Pids of the processes below `pid` (e.g. a server's downstream MCP servers)."""
    children: dict[int, list[int]] = {}
    for d in Path("/proc").iterdir():
        if not d.name.isdigit():
            continue
        try:
            ppid = int((d / "stat").read_text().rsplit(")", 1)[1].split()[1])
        except (OSError, IndexError, ValueError):
            continue
        children.setdefault(ppid, []).append(int(d.name))
    out, todo = [], [pid]
    while todo:
        for c in children.get(todo.pop(), []):
            out.append(c)
            todo.append(c)
    return out


def alive(pid: int) -> bool:
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return False
    return stat.rsplit(")", 1)[1].split()[0] != "Z"


def check_ok(raw, expect: str | None = None) -> str | None:
    sc = raw.structured_content or {}
    if raw.is_error or not sc.get("success"):
        text = "".join(getattr(c, "text", "") for c in raw.content)
        return f"call failed: {sc.get('errorType')}: {(sc.get('error') or text)[:300]}"
    if expect is not None and sc.get("output") != expect:
        return f"unexpected output {sc.get('output')!r}"
    return None


async def latency_mcp(srv: Server, language: str, n: int, pause: float, code: str | None = None, args: dict | None = None) -> tuple[Dist, int, Dist]:
    """N sequential calls; returns wall (client) ms, warm count, server executionTimeMs."""
    wall, server_ms, warm = Dist(), Dist(), 0
    code = code or TRIVIAL[language]
    # One unmeasured call: the SDK builds its output-schema validator on a tool's first call.
    await srv.call(TOOL[language], {"code": code, **(args or {})})
    for _ in range(n):
        if pause:
            await asyncio.sleep(pause)
        raw, ms = await srv.call(TOOL[language], {"code": code, **(args or {})})
        problem = check_ok(raw, "2\n")
        if problem:
            wall.error = problem
            return wall, warm, server_ms
        sc = raw.structured_content
        warm += bool(sc.get("warmStart"))
        wall.values.append(ms)
        server_ms.values.append(float(sc.get("executionTimeMs", 0)))
    return wall, warm, server_ms


async def refused_calls(srv: Server, n: int) -> Dist:
    """MCP round trip of a call the server refuses at validation (timeoutMs out of range):
    JSON-RPC through the SDK and the server, no container."""
    d = Dist()
    for _ in range(3 + n):
        t = time.perf_counter()
        try:
            await srv.session.call_tool(TOOL["python"], {"code": "print(1)", "timeoutMs": 1})
            d.error = "the call was not refused"
            return d
        except Exception:  # noqa: BLE001 - the JSON-RPC error is the expected outcome
            ms = (time.perf_counter() - t) * 1000
        d.values.append(ms)
    d.values = d.values[3:]
    return d


async def warm_floor(language: str, n: int, concurrent_create: bool = False) -> dict[str, Any]:
    proc = await asyncio.create_subprocess_exec(
        str(CYCLE), "--warm", "--settle-ms", "300", "--lang", language, "--cycles", str(n),
        "--label", f"{BENCH_LABEL}={RUN_ID}", *(["--concurrent-create"] if concurrent_create else []),
        stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.PIPE,
    )
    out, err = await proc.communicate()
    try:
        data = json.loads(out.decode().strip().splitlines()[-1])
    except (ValueError, IndexError):
        data = {}
    if proc.returncode != 0 or not data:
        data["error"] = f"engine_cycle --warm exit {proc.returncode}: {err.decode().strip()[-300:]}"
    return data


async def throughput_mcp(srv: Server, total: int, concurrency: int) -> dict[str, Any]:
    done, warm, errors = 0, 0, []

    async def one():
        raw, ms = await srv.call(TOOL["python"], {"code": TRIVIAL["python"]})
        return raw, ms

    t = time.perf_counter()
    while done < total:
        k = min(concurrency, total - done)
        for raw, _ in await asyncio.gather(*[one() for _ in range(k)]):
            problem = check_ok(raw, "2\n")
            if problem:
                errors.append(problem)
            else:
                warm += bool(raw.structured_content.get("warmStart"))
        done += k
    seconds = time.perf_counter() - t
    return {"per_second": total / seconds, "seconds": seconds, "warm": warm, "total": total, "errors": errors}


async def first_output(srv: Server, language: str, runs: int, pause: float) -> tuple[Dist, Dist, str | None]:
    firsts, totals = Dist(), Dist()
    for _ in range(runs):
        await asyncio.sleep(pause)
        seen: list[float] = []

        async def on_progress(progress, total, message):  # noqa: ARG001
            if not seen and message and message.startswith("stdout:") and "a" in message[len("stdout:"):]:
                seen.append(time.perf_counter())

        t = time.perf_counter()
        raw = await srv.session.call_tool(TOOL[language], {"code": FIRST_OUTPUT[language]}, progress_callback=on_progress)
        end = time.perf_counter()
        problem = check_ok(raw, "a\nb\n")
        if problem:
            return firsts, totals, problem
        if not seen:
            return firsts, totals, "no progress notification carried 'a'"
        firsts.values.append((seen[0] - t) * 1000)
        totals.values.append((end - t) * 1000)
    return firsts, totals, None


class RssSampler(threading.Thread):
    def __init__(self, srv: Server, every: float = 0.05) -> None:
        super().__init__(daemon=True)
        self.srv, self.every, self.peak, self.samples = srv, every, 0, 0
        self.halt = threading.Event()

    def run(self) -> None:
        while not self.halt.is_set():
            try:
                self.peak = max(self.peak, self.srv.rss_kib())
                self.samples += 1
            except OSError:
                return
            self.halt.wait(self.every)


# --------------------------------------------------------------------------- tool calls


async def direct_tool_calls(n: int) -> Dist:
    d = Dist()
    exe = VENV_BIN / "mcp-server-time"
    if not exe.exists():
        d.error = f"{exe} missing (make venv)"
        return d
    params = StdioServerParameters(command=str(exe), args=[], env={})
    with open(LOGS / "mcp-server-time.log", "w") as errlog:
        async with stdio_client(params, errlog=errlog) as (read, write):
            async with ClientSession(read, write) as session:
                await session.initialize()
                for i in range(3 + n):
                    t = time.perf_counter()
                    raw = await session.call_tool("get_current_time", {"timezone": "UTC"})
                    ms = (time.perf_counter() - t) * 1000
                    if raw.is_error:
                        d.error = "".join(getattr(c, "text", "") for c in raw.content)[:300]
                        return d
                    if i >= 3:
                        d.values.append(ms)
    return d


async def sandbox_tool_calls(srv: Server, language: str, n: int) -> Dist:
    d = Dist()
    args = {"allowedTools": [TIME_TOOL], "timeoutMs": 120_000}
    # Warm-up: the downstream connects in the background; a first call also proves the API.
    # Until it works or 20 s passed (the downstream may still be connecting: ToolNotFound).
    problem, deadline = "not tried", time.monotonic() + 20
    while time.monotonic() < deadline:
        try:
            raw, _ = await srv.call(TOOL[language], {"code": TOOL_LOOP[language].format(n=1), **args})
            problem = check_ok(raw)
        except Exception as e:  # noqa: BLE001 - a refused call (JSON-RPC error) is a reason too
            problem = f"{type(e).__name__}: {e}"
        if problem is None:
            break
        await asyncio.sleep(0.5)
    if problem:
        problem = problem.strip().splitlines()[-1][:200]
    if problem:
        d.error = problem
        return d
    await asyncio.sleep(0.5)
    raw, _ = await srv.call(TOOL[language], {"code": TOOL_LOOP[language].format(n=n), **args})
    problem = check_ok(raw)
    if problem:
        d.error = problem
        return d
    try:
        d.values = [float(x) for x in json.loads(raw.structured_content["output"].strip().splitlines()[-1])]
    except (ValueError, IndexError, KeyError) as e:
        d.error = f"cannot parse the timings: {e}"
    sc = raw.structured_content
    d.note = f"toolCallsMade {sc.get('toolCallsMade')}"
    return d


# --------------------------------------------------------------------------- machine


def machine() -> dict[str, str]:
    mem_kib = 0
    for line in Path("/proc/meminfo").read_text().splitlines():
        if line.startswith("MemTotal:"):
            mem_kib = int(line.split()[1])
    cpu = ""
    for line in Path("/proc/cpuinfo").read_text().splitlines():
        if line.startswith("model name"):
            cpu = line.split(":", 1)[1].strip()
            break
    try:
        engine = docker("version", "--format", "{{.Server.Version}}").strip()
        storage = docker("info", "--format", "{{.Driver}}").strip()
    except Exception as e:  # noqa: BLE001
        engine, storage = f"? ({e})", "?"
    try:
        commit = subprocess.run(["git", "rev-parse", "--short", "HEAD"], cwd=REPO, capture_output=True, text=True).stdout.strip()
        dirty = subprocess.run(["git", "status", "--porcelain", "--", "src", "images", "Cargo.toml"], cwd=REPO, capture_output=True, text=True).stdout.strip()
        commit += " (+ uncommitted changes)" if dirty else ""
    except OSError:
        commit = "?"
    return {
        "host": socket.gethostname(),
        "nproc": str(os.cpu_count()),
        "cpu": cpu,
        "memory": f"{mem_kib / 1024 / 1024:.1f} GiB",
        "kernel": platform.release(),
        "docker": engine,
        "storage": storage,
        "commit": commit,
        "load": Path("/proc/loadavg").read_text().split(" ", 3)[:3],
    }


def image_size(image: str) -> str:
    try:
        return f"{int(docker('image', 'inspect', '--format', '{{.Size}}', image).strip()) / 1e6:.0f} MB"
    except Exception:  # noqa: BLE001
        return "missing"


# --------------------------------------------------------------------------- report


def fmt(x: float, digits: int = 1) -> str:
    if x != x:  # NaN
        return "n/a"
    return f"{x:.{digits}f}" if abs(x) < 100 else f"{x:.0f}"


class Table:
    def __init__(self) -> None:
        self.sections: list[tuple[str, list[str], list[list[str]]]] = []

    def section(self, title: str, header: list[str]) -> list[list[str]]:
        rows: list[list[str]] = []
        self.sections.append((title, header, rows))
        return rows

    def markdown(self) -> str:
        out = []
        for title, header, rows in self.sections:
            out.append(f"### {title}\n")
            out.append("| " + " | ".join(header) + " |")
            out.append("|" + "|".join(" --- " for _ in header) + "|")
            out += ["| " + " | ".join(r) + " |" for r in rows]
            out.append("")
        return "\n".join(out)

    def text(self) -> str:
        out = []
        for title, header, rows in self.sections:
            widths = [max(len(str(x)) for x in col) for col in zip(header, *rows)] if rows else [len(h) for h in header]
            out.append(f"\n== {title}")
            out.append("  ".join(h.ljust(w) for h, w in zip(header, widths)))
            out += ["  ".join(str(c).ljust(w) for c, w in zip(r, widths)) for r in rows]
        return "\n".join(out)


def verdict(ok: bool | None) -> str:
    return "n/a" if ok is None else ("pass" if ok else "**miss**")


def lat_row(name: str, d: Dist, target: str = "baseline", ok: bool | None = None, extra: str = "") -> list[str]:
    if d.error or not d.values:
        return [name, f"n/a ({d.error or 'not measured'})", "", "", "0", target, verdict(None) if target != "baseline" else "", extra]
    return [name, fmt(d.p(50)), fmt(d.p(95)), fmt(d.max), str(d.n), target, "" if target == "baseline" else verdict(ok), extra]


# --------------------------------------------------------------------------- main


async def bench(a: argparse.Namespace) -> int:
    t_start = time.perf_counter()
    info = machine()
    started = dt.datetime.now(dt.timezone.utc).replace(microsecond=0)
    N, pause = a.n, a.pause
    log(f"run {RUN_ID}: N={N}, throughput {a.tput}/level, {a.tool_calls} tool calls; {info['nproc']} cores, load {info['load']}")
    for p in (BINARY, CYCLE):
        if not p.exists():
            print(f"bench: {p} is missing: run `cargo build --release --examples` (make bench does)", file=sys.stderr)
            return 2

    table = Table()
    R: dict[str, Any] = {}

    # ---- baselines with no server running
    log("bare interpreter on the host")
    host_py = shutil.which("python3", path="/usr/bin:/bin") or shutil.which("python3")
    R["host", "python"] = time_command([host_py, "-c", TRIVIAL["python"]], N, "2")
    deno = host_deno()
    if deno:
        deno_dir = Path(tempfile.mkdtemp(prefix="ce-bench-deno-"))
        env = {"PATH": "/usr/bin:/bin", "DENO_DIR": str(deno_dir), "DENO_NO_UPDATE_CHECK": "1", "NO_COLOR": "1", "HOME": str(deno_dir)}
        R["host", "typescript"] = time_command([str(deno), "eval", TRIVIAL["typescript"]], N, "2", env=env)
        shutil.rmtree(deno_dir, ignore_errors=True)
    else:
        R["host", "typescript"] = Dist(error="no Deno wheel in images/.cache/deno (make image-build)")

    for lang in LANGS:
        log(f"docker run --rm, {lang}")
        R["docker", lang] = time_command(["docker", *docker_run_args(lang)], N, "2")
    force_remove(wait_gone(lambda: containers_with(f"{BENCH_LABEL}={RUN_ID}"), 10), "docker run --rm")

    for lang in LANGS:
        log(f"raw engine cycle, {lang}, c=1")
        R["engine", lang, 1] = await engine_cycle(lang, N, 1)
    for lang in LANGS:
        log(f"warm floor (runner in a prepared container, no server), {lang}")
        R["floor", lang] = await warm_floor(lang, a.n_floor)
        R["floor_refill", lang] = await warm_floor(lang, a.n_floor, concurrent_create=True)

    # ---- warm pool: latency, first output, throughput, RSS
    log("server with the warm pool (pool_size 2)")
    async with mcp_server("warm", {"CODE_EXECUTOR_POOL_SIZE": "2"}, toml="pool_size = 2\n") as srv:
        R["pool_fill_s"] = await srv.wait_pool(2)
        await asyncio.sleep(1.0)
        R["rss_idle_kib"] = srv.rss_kib()
        for lang in LANGS:
            log(f"warm latency, {lang}")
            R["warm", lang] = await latency_mcp(srv, lang, N, pause)
        log("MCP round trip of a refused call")
        R["refused"] = await refused_calls(srv, N)
        for lang in LANGS:
            log(f"first streamed output, {lang}")
            R["first", lang] = await first_output(srv, lang, a.first_runs, pause)
        for c in (1, 4, 8):
            await srv.wait_pool(2)
            log(f"throughput c={c}: MCP")
            sampler = RssSampler(srv) if c == 8 else None
            if sampler:
                sampler.start()
            R["tput", c] = await throughput_mcp(srv, a.tput, c)
            if sampler:
                sampler.halt.set()
                sampler.join()
                R["rss_peak_kib"] = sampler.peak
                R["rss_samples"] = sampler.samples
            await srv.wait_pool(2)
            if c != 1:
                log(f"throughput c={c}: raw engine cycle")
                R["engine", "python", c] = await engine_cycle("python", a.tput, c)
        R["rss_after_kib"] = srv.rss_kib()

    # ---- cold
    log("server with the pool off (pool_size 0)")
    async with mcp_server("cold", {"CODE_EXECUTOR_POOL_SIZE": "0"}, toml="pool_size = 0\n") as srv:
        for lang in LANGS:
            log(f"cold latency, {lang}")
            R["cold", lang] = await latency_mcp(srv, lang, N, 0.2)

    # ---- tool calls
    log("tool-call round trip: direct client -> mcp-server-time")
    try:
        R["direct"] = await direct_tool_calls(a.tool_calls)
    except Exception as e:  # noqa: BLE001
        R["direct"] = Dist(error=f"{type(e).__name__}: {e}")
    cfg_dir = Path(tempfile.mkdtemp(prefix="ce-bench-mcp-"))
    cfg = cfg_dir / "mcp.json"
    cfg.write_text(json.dumps({"mcpServers": {"time": {"command": str(VENV_BIN / "mcp-server-time")}}}))
    log("tool-call round trip: sandbox -> proxy -> mcp-server-time")
    try:
        async with mcp_server("tools", {"CODE_EXECUTOR_POOL_SIZE": "2", "MCP_CONFIG_PATH": str(cfg)}, toml="pool_size = 2\n") as srv:
            await srv.wait_pool(2)
            for lang in LANGS:
                R["sandbox_tools", lang] = await sandbox_tool_calls(srv, lang, a.tool_calls)
            for lang in LANGS:
                if R["sandbox_tools", lang].error:
                    R["warm_tool", lang] = (Dist(error="in-sandbox API unavailable"), 0, Dist())
                    continue
                log(f"warm latency with one tool call, {lang}")
                R["warm_tool", lang] = await latency_mcp(
                    srv, lang, a.n_tool, pause, code=ONE_TOOL_CALL[lang], args={"allowedTools": [TIME_TOOL]}
                )
    except Exception as e:  # noqa: BLE001
        for lang in LANGS:
            R.setdefault(("sandbox_tools", lang), Dist(error=f"{type(e).__name__}: {e}"))
            R.setdefault(("warm_tool", lang), (Dist(error=f"{type(e).__name__}: {e}"), 0, Dist()))
    shutil.rmtree(cfg_dir, ignore_errors=True)

    # ---- cleanup check
    force_remove(wait_gone(lambda: containers_with(f"{BENCH_LABEL}={RUN_ID}"), 10), "the baselines")
    images = {k: image_size(v) for k, v in IMAGES.items()}
    elapsed = time.perf_counter() - t_start
    info["load_end"] = Path("/proc/loadavg").read_text().split(" ", 3)[:3]

    # ---- table
    hdr = ["measure", "p50 ms", "p95 ms", "max ms", "n", "target", "result", "note"]
    for lang in LANGS:
        rows = table.section(f"Latency of a trivial program, {LABEL[lang]} (`{TRIVIAL[lang]}`), end to end", hdr)
        eng = R["engine", lang, 1]
        eng_p50 = eng.get("p50_ms", float("nan")) if not eng.get("error") else float("nan")
        warm, warm_n, warm_server = R["warm", lang]
        limit = 15 if lang == "python" else 30
        rows.append(lat_row(
            "MCP, warm pool", warm, f"p50 <= {limit} ms",
            warm.p(50) <= limit if warm.values else None,
            f"{warm_n}/{warm.n} warm; server executionTimeMs p50 {fmt(warm_server.p(50))}",
        ))
        wt, wt_n, _ = R["warm_tool", lang]
        tlimit = 20 if lang == "python" else 35
        rows.append(lat_row(
            "MCP, warm pool, + 1 tool call", wt, f"p50 <= {tlimit} ms",
            wt.p(50) <= tlimit if wt.values else None, f"{wt_n}/{wt.n} warm" if wt.values else "",
        ))
        cold, cold_n, _ = R["cold", lang]
        cold_limit = 1.1 * eng_p50
        rows.append(lat_row(
            "MCP, cold (pool off)", cold, f"p50 <= 1.1 x raw cycle = {fmt(cold_limit)} ms",
            cold.p(50) <= cold_limit if cold.values and eng_p50 == eng_p50 else None,
            f"{cold_n}/{cold.n} warm",
        ))
        if eng.get("error"):
            rows.append(["raw engine cycle (bollard, no server)", f"n/a ({eng['error']})", "", "", "0", "baseline", "", ""])
        else:
            ph = eng.get("phases_p50_ms", {})
            rows.append(["raw engine cycle (bollard, no server)", fmt(eng["p50_ms"]), fmt(eng["p95_ms"]), fmt(eng["max_ms"]),
                         str(eng["cycles"]), "baseline", "",
                         "phases p50: " + ", ".join(f"{k} {v}" for k, v in ph.items())])
        for key, what in (("floor", "runner alone in a prepared container (no server): write -> end marker"),
                          ("floor_refill", "same, with another container created alongside (as the pool refill does)")):
            fl = R[key, lang]
            if fl.get("error"):
                rows.append([what, f"n/a ({fl['error']})", "", "", "0", "baseline", "", ""])
            else:
                p50, p95 = fl["p50_ms"], fl["p95_ms"]
                rows.append([what, fmt(p50["end"]), fmt(p95["end"]), "", str(fl["cycles"]), "baseline", "",
                             f"p50: -> output {p50['output']}, -> result marker {p50['result']}, -> exit (stream end) {p50['exit']}"])
        if lang == "python":
            rows.append(lat_row("MCP round trip of a refused call (no container)", R["refused"],
                                extra="same for both languages: SDK client + JSON-RPC over stdio + validation"))
        rows.append(lat_row("docker run --rm, same flags, no runner", R["docker", lang]))
        rows.append(lat_row("bare interpreter on the host", R["host", lang]))

    rows = table.section("Where a warm execution's time goes (p50, ms)",
                         ["language", "client wall", "server run (executionTimeMs)", "runner alone (-> end marker)",
                          "runner alone + refill alongside", "refused MCP call", "wall - run", "run - runner alone"])
    for lang in LANGS:
        warm, _, warm_server = R["warm", lang]
        fl, flr = R["floor", lang], R["floor_refill", lang]
        ref = R["refused"]
        if warm.values and not fl.get("error"):
            w, e, f = warm.p(50), warm_server.p(50), fl["p50_ms"]["end"]
            fr = fmt(flr["p50_ms"]["end"]) if not flr.get("error") else "n/a"
            rows.append([LABEL[lang], fmt(w), fmt(e) + " (whole ms)", fmt(f), fr, fmt(ref.p(50)), fmt(w - e), fmt(e - f)])
        else:
            rows.append([LABEL[lang], "n/a", "", "", "", "", "", ""])

    rows = table.section("Throughput, Python trivial program (executions/s)",
                         ["concurrency", "MCP, pool on", "warm", "raw engine cycle", "target", "result"])
    for c in (1, 4, 8):
        t = R["tput", c]
        eng = R["engine", "python", c]
        eng_s = eng.get("per_second") if not eng.get("error") else None
        mcp_s = t["per_second"] if not t["errors"] else None
        target = "MCP >= raw engine" if c == 8 else ""
        ok = (mcp_s >= eng_s) if (c == 8 and mcp_s is not None and eng_s is not None) else None
        rows.append([
            str(c),
            fmt(mcp_s, 2) if mcp_s is not None else f"n/a ({t['errors'][0]})",
            f"{t['warm']}/{t['total']}",
            (fmt(eng_s, 2) + f" ({eng['cycles']} cycles)") if eng_s is not None else f"n/a ({eng.get('error')})",
            target,
            verdict(ok) if c == 8 else "",
        ])

    rows = table.section(f"Tool-call round trip, `{TIME_TOOL}` {{timezone: UTC}} (ms)", hdr)
    direct = R["direct"]
    rows.append(lat_row("direct: MCP client -> mcp-server-time", direct))
    for lang in LANGS:
        inside = R["sandbox_tools", lang]
        rows.append(lat_row(f"from the sandbox ({LABEL[lang]}) -> proxy -> mcp-server-time", inside, extra=inside.note))
        if inside.values and direct.values:
            over = inside.p(50) - direct.p(50)
            rows.append([f"proxy overhead ({LABEL[lang]}), p50 difference", fmt(over, 2), "", "", "", "<= 2 ms", verdict(over <= 2), ""])
        else:
            why = inside.error or direct.error or "not measured"
            rows.append([f"proxy overhead ({LABEL[lang]}), p50 difference", f"n/a ({why})", "", "", "", "<= 2 ms", "n/a", ""])

    rows = table.section("Time to first streamed output (print, sleep 1 s, print; warm pool)",
                         ["language", "first output p50 ms", "max ms", "total call p50 ms", "n", "target", "result"])
    for lang in LANGS:
        firsts, totals, problem = R["first", lang]
        if problem or not firsts.values:
            rows.append([LABEL[lang], f"n/a ({problem})", "", "", "0", "<= 100 ms", "n/a"])
        else:
            rows.append([LABEL[lang], fmt(firsts.p(50)), fmt(firsts.max), fmt(totals.p(50)), str(firsts.n),
                         "<= 100 ms", verdict(firsts.p(50) <= 100)])

    rows = table.section("Memory and images", ["measure", "value", "target", "result"])
    idle = R["rss_idle_kib"] / 1024
    rows.append(["server RSS idle (pool filled)", f"{idle:.1f} MiB", "<= 40 MiB", verdict(idle <= 40)])
    rows.append(["server RSS peak under the c=8 load", f"{R.get('rss_peak_kib', 0) / 1024:.1f} MiB ({R.get('rss_samples', 0)} samples, 50 ms)", "", ""])
    rows.append(["server RSS after the load", f"{R['rss_after_kib'] / 1024:.1f} MiB", "", ""])
    fill = R.get("pool_fill_s")
    rows.append(["pool filled (2 + 2) after server spawn", f"{fill:.2f} s" if fill else "not within 30 s", "", ""])
    for k, v in images.items():
        rows.append([f"image {IMAGES[k]}", v, "", ""])

    head = (
        f"# code-executor-mcp benchmark\n\n"
        f"- date: {started.isoformat()} (run {RUN_ID}, {elapsed:.0f} s)\n"
        f"- machine: {info['host']}, {info['nproc']} cores ({info['cpu']}), {info['memory']} memory, "
        f"kernel {info['kernel']}, Docker Engine {info['docker']} (storage driver {info['storage']})\n"
        f"- load average at start {' '.join(info['load'])}, at end {' '.join(info['load_end'])} "
        f"(the machine is shared: other work running at the same time skews the numbers)\n"
        f"- code: {info['commit']}; release build\n"
        f"- N = {N} sequential calls per latency row (pause {pause} s between warm calls so the pool refills, "
        f"0.2 s between cold calls); {a.tput} executions per throughput level (MCP in asyncio.gather batches of c, "
        f"raw engine with c workers); {a.tool_calls} tool calls per tool-call row; {a.n_tool} calls per "
        f"'+ 1 tool call' row; {a.first_runs} first-output runs per language\n"
        f"- MCP numbers are wall time in the official MCP Python SDK client (mcp 2.3.0) over stdio, from "
        f"`call_tool` to its result (output schema checked, as the client does)\n"
    )
    notes = ""
    if LEFTOVERS:
        notes = "\n**Clean-up problems:** " + "; ".join(LEFTOVERS) + "\n"
    md = head + notes + "\n" + table.markdown()
    RESULTS.write_text(md)
    print(head + notes + table.text())
    print(f"\nwritten to {RESULTS.relative_to(REPO)}")
    return 0


def main() -> int:
    env = os.environ.get
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--n", type=int, default=int(env("BENCH_N", "50")), help="runs per latency row (BENCH_N)")
    ap.add_argument("--tput", type=int, default=int(env("BENCH_TPUT", "24")), help="executions per throughput level (BENCH_TPUT)")
    ap.add_argument("--tool-calls", type=int, default=int(env("BENCH_TOOL_CALLS", "200")), help="tool calls per row (BENCH_TOOL_CALLS)")
    ap.add_argument("--n-tool", type=int, default=int(env("BENCH_N_TOOL", "20")), help="runs of the '+ 1 tool call' rows (BENCH_N_TOOL)")
    ap.add_argument("--n-floor", type=int, default=int(env("BENCH_N_FLOOR", "20")), help="runs of the warm-floor rows (BENCH_N_FLOOR)")
    ap.add_argument("--first-runs", type=int, default=int(env("BENCH_FIRST_RUNS", "3")), help="first-output runs per language")
    ap.add_argument("--pause", type=float, default=float(env("BENCH_PAUSE", "0.5")), help="seconds between warm calls (BENCH_PAUSE)")
    a = ap.parse_args()
    try:
        return asyncio.run(bench(a))
    finally:
        # Whatever happened: nothing of this run may stay behind.
        left = containers_with(f"{BENCH_LABEL}={RUN_ID}")
        if left:
            docker("rm", "-f", *left, check=False)


if __name__ == "__main__":
    sys.exit(main())
