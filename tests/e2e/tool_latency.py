"""Latency of one MCP tool call made from inside the sandbox vs made directly (not a test).

Starts one `code-executor-mcp serve` (the debug binary, or CE_E2E_BINARY) with
`mcp-server-time` as its only downstream (through MCP_CONFIG_PATH), then:

  sandbox  one executePython whose code makes N sequential
           `await call_mcp_tool("mcp__time__get_current_time", {"timezone": "Europe/Paris"})`
           and times each with time.perf_counter() inside the container
           (runner -> Unix socket -> proxy -> allowlist/schema check -> rmcp client ->
           mcp-server-time over stdio, and back)
  direct   the official Python MCP client (stdio_client + ClientSession) talking to its
           own mcp-server-time child, N sequential `call_tool` timed with perf_counter

Both warm up first (5 calls, not counted). Prints p50/p95 of each and the difference,
i.e. what the sandbox path adds to a tool call. `--typescript` also times the same calls
from executeTypescript (performance.now()).

    .venv/bin/python tests/e2e/tool_latency.py [--runs 100] [--typescript]
"""

from __future__ import annotations

import argparse
import asyncio
import json
import shutil
import statistics
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))

from mcp.client import ClientSession  # noqa: E402
from mcp.client.stdio import StdioServerParameters, stdio_client  # noqa: E402

from e2e_client import BINARY, Server, wait_until  # noqa: E402
from support.downstreams import time_entry, write_mcp_config  # noqa: E402

TOOL = "mcp__time__get_current_time"
ARGS = {"timezone": "Europe/Paris"}
WARMUP = 5

PYTHON_CODE = """
import json, time
for _ in range({warmup}):
    await call_mcp_tool({tool!r}, {args!r})
lat = []
for _ in range({runs}):
    t0 = time.perf_counter()
    r = await call_mcp_tool({tool!r}, {args!r})
    lat.append((time.perf_counter() - t0) * 1000)
    assert r["timezone"] == "Europe/Paris", r
print(json.dumps(lat))
"""

TYPESCRIPT_CODE = """
for (let i = 0; i < {warmup}; i++) await callMCPTool({tool}, {args});
const lat: number[] = [];
for (let i = 0; i < {runs}; i++) {{
  const t0 = performance.now();
  const r = await callMCPTool({tool}, {args});
  lat.push(performance.now() - t0);
  if (r.timezone !== "Europe/Paris") throw new Error(JSON.stringify(r));
}}
console.log(JSON.stringify(lat));
"""


def percentile(values: list[float], p: float) -> float:
    ordered = sorted(values)
    k = (len(ordered) - 1) * p / 100
    lo, hi = int(k), min(int(k) + 1, len(ordered) - 1)
    return ordered[lo] + (ordered[hi] - ordered[lo]) * (k - lo)


def describe(label: str, lat: list[float]) -> str:
    return (
        f"{label:<22} n={len(lat)}  p50 {percentile(lat, 50):7.2f} ms  p95 {percentile(lat, 95):7.2f} ms  "
        f"(min {min(lat):.2f}, max {max(lat):.2f}, mean {statistics.mean(lat):.2f})"
    )


def in_sandbox(srv: Server, language: str, runs: int) -> list[float]:
    if language == "python":
        code = PYTHON_CODE.format(warmup=WARMUP, runs=runs, tool=TOOL, args=ARGS)
    else:
        code = TYPESCRIPT_CODE.format(warmup=WARMUP, runs=runs, tool=json.dumps(TOOL), args=json.dumps(ARGS))
    r = srv.execute(language, code, allowedTools=[TOOL], timeout=300)
    if not r["success"]:
        raise SystemExit(f"the {language} execution failed: {r!r}")
    if r["toolCallsMade"] != runs + WARMUP:
        raise SystemExit(f"toolCallsMade {r['toolCallsMade']} != {runs + WARMUP}: {r!r}")
    return json.loads(r["output"].strip().splitlines()[-1])


async def direct(runs: int) -> list[float]:
    entry = time_entry()
    async with stdio_client(StdioServerParameters(command=entry["command"], args=entry["args"])) as (read, write):
        async with ClientSession(read, write) as session:
            await session.initialize()
            await session.list_tools()
            for _ in range(WARMUP):
                await session.call_tool("get_current_time", ARGS)
            lat = []
            for _ in range(runs):
                t0 = time.perf_counter()
                r = await session.call_tool("get_current_time", ARGS)
                lat.append((time.perf_counter() - t0) * 1000)
                assert not r.is_error and (r.structured_content or {}).get("timezone") == "Europe/Paris", r
            return lat


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--runs", type=int, default=100)
    ap.add_argument("--typescript", action="store_true", help="also time the calls from executeTypescript")
    args = ap.parse_args()
    print(f"binary: {BINARY}  {args.runs} sequential calls to {TOOL} {ARGS} (after {WARMUP} warm-up calls)")

    tmp = Path(tempfile.mkdtemp(prefix="ce-tool-latency-"))
    base = Path(tempfile.mkdtemp(prefix="ce-lat-sock-"))
    try:
        config = write_mcp_config(tmp / "mcp.json", {"time": time_entry()})
        env = {"MCP_CONFIG_PATH": str(config), "CODE_EXECUTOR_SOCKET_BASE": str(base)}
        with Server(extra_env=env, name="tool-latency") as srv:

            def ready() -> bool:
                states = srv.call("health", {}).sc.get("downstreamServers", [])
                return any(s["name"] == "time" and s["status"] == "ready" for s in states)

            if not wait_until(ready, 60):
                raise SystemExit(f"mcp-server-time never became ready\n{srv.stderr_tail()}")
            sandbox = {"python": in_sandbox(srv, "python", args.runs)}
            if args.typescript:
                sandbox["typescript"] = in_sandbox(srv, "typescript", args.runs)
        direct_lat = asyncio.run(direct(args.runs))
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
        shutil.rmtree(base, ignore_errors=True)

    print(describe("direct (Python client)", direct_lat))
    for language, lat in sandbox.items():
        print(describe(f"sandbox ({language})", lat))
        print(
            f"{'':<22} sandbox - direct: p50 {percentile(lat, 50) - percentile(direct_lat, 50):+.2f} ms, "
            f"p95 {percentile(lat, 95) - percentile(direct_lat, 95):+.2f} ms"
        )
    return 0


if __name__ == "__main__":
    sys.exit(main())
