"""End-to-end latency of a trivial execution, measured through the MCP client (not a test).

Starts one `code-executor-mcp serve` (the debug binary, or CE_E2E_BINARY), warms each
language up once, then times N sequential calls per language from `tools/call` sent to
result received, and prints p50/p95 (wall, as the client sees it, and the server's own
executionTimeMs), and how many calls found a warm container (`warmStart`). `--gap`
pauses between calls (default 0.5 s, time for the warm pool to refill, as between an
agent's calls); `--gap 0` measures back-to-back calls, which outrun the pool.

`--cold` asks for memoryMb 255 (not the default), which the warm pool cannot serve:
every call then creates, starts and removes its own container.

    .venv/bin/python tests/e2e/latency.py [--runs 20] [--gap 0.5] [--cold]
"""

from __future__ import annotations

import argparse
import statistics
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))

from e2e_client import BINARY, Server  # noqa: E402

TRIVIAL = {"python": "print('ok')", "typescript": "console.log('ok');"}


def percentile(values: list[float], p: float) -> float:
    ordered = sorted(values)
    k = (len(ordered) - 1) * p / 100
    lo, hi = int(k), min(int(k) + 1, len(ordered) - 1)
    return ordered[lo] + (ordered[hi] - ordered[lo]) * (k - lo)


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--runs", type=int, default=20)
    ap.add_argument("--gap", type=float, default=0.5, help="seconds between calls")
    ap.add_argument("--cold", action="store_true", help="bypass the warm pool (memoryMb 255)")
    args = ap.parse_args()
    extra = {"memoryMb": 255} if args.cold else {}
    print(f"binary: {BINARY}  runs {args.runs}  gap {args.gap} s  {'cold (no warm pool)' if args.cold else 'warm pool'}")
    with Server(name="latency") as srv:
        for language, code in TRIVIAL.items():
            first = srv.execute(language, code, **extra)
            assert first["success"], first
            walls, server_ms, warm = [], [], 0
            for _ in range(args.runs):
                time.sleep(args.gap)
                r = srv.execute(language, code, **extra)
                assert r["success"] and r["output"] == "ok\n", r
                walls.append(r.wall * 1000)
                server_ms.append(r["executionTimeMs"])
                warm += bool(r.sc.get("warmStart"))
            print(
                f"{language:<10} n={args.runs}  wall p50 {percentile(walls, 50):6.0f} ms  "
                f"p95 {percentile(walls, 95):6.0f} ms  (min {min(walls):.0f}, max {max(walls):.0f}, "
                f"mean {statistics.mean(walls):.0f})  executionTimeMs p50 {percentile(server_ms, 50):.0f}  "
                f"warm {warm}/{args.runs}"
            )
    return 0


if __name__ == "__main__":
    sys.exit(main())
