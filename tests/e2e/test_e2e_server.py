"""The server process itself: its environment does not leak into the sandbox, a flood of
output is capped without growing its memory, and every way an execution can end early
(client cancellation, server shutdown, server crash) leaves no container behind."""

from __future__ import annotations

import asyncio
import json
import os
import re
import signal
import tempfile
import subprocess
import threading
import time
import uuid

import anyio
import pytest

from .e2e_client import (
    BINARY,
    Server,
    docker,
    our_containers,
    process_gone,
    wait_no_containers,
    wait_until,
)

SECRET = f"ce-e2e-secret-{uuid.uuid4().hex}"
# Prints its hostname, which Docker sets to the first 12 hex digits of the container id:
# that is how a test finds the container of its execution among the warm pool's.
LONG_CODE = "import socket, time\nprint('started', socket.gethostname(), flush=True)\ntime.sleep(60)\n"
STARTED = re.compile(r"started ([0-9a-f]{12})\b")


@pytest.fixture(scope="module")
def server():
    """A server of this module's own, started with secrets in its environment."""
    srv = Server(extra_env={"CE_TEST_SECRET": SECRET, "API_TOKEN": SECRET}, name="server-module").start()
    yield srv
    srv.stop()


def container_exists(cid: str) -> bool:
    return bool(docker("ps", "-aq", "--no-trunc", "--filter", f"id={cid}").strip())


class ContainerSpy:
    """A progress callback that learns the container id prefix from LONG_CODE's first line."""

    def __init__(self) -> None:
        self.cid: str | None = None
        self.seen = threading.Event()

    async def __call__(self, progress, total, message):  # noqa: ARG002
        m = STARTED.search(message or "")
        if m and self.cid is None:
            self.cid = m[1]
            self.seen.set()

    def wait(self, timeout: float = 30) -> str:
        assert self.seen.wait(timeout), "the long execution never reported that it started"
        assert self.cid is not None
        return self.cid


def start_long_execution(srv: Server):
    """Starts LONG_CODE in the background; returns (concurrent future, container id prefix)."""
    spy = ContainerSpy()
    fut = asyncio.run_coroutine_threadsafe(
        srv.session.call_tool(  # type: ignore[union-attr]
            "executePython", {"code": LONG_CODE, "timeoutMs": 120000}, progress_callback=spy
        ),
        srv._loop,  # noqa: SLF001
    )
    cid = spy.wait()
    assert container_exists(cid), f"container {cid} of the running execution not found"
    return fut, cid


def pool_size(srv: Server) -> int:
    """Warm containers the server holds right now (health's poolSizes)."""
    return sum(srv.call("health", {}).sc["sandbox"]["poolSizes"].values())


# ------------------------------------------------------------------------- environment


def test_server_environment_is_not_visible_inside(server):
    assert SECRET in open(f"/proc/{server.pid}/environ").read(), "precondition: the server holds the secret"
    code = f"""
import json, os
secret = {SECRET!r}
found = {{}}
found['os.environ'] = any(secret in k or secret in v for k, v in os.environ.items())
for p in ('/proc/1/environ', '/proc/self/environ'):
    found[p] = secret.encode() in open(p, 'rb').read()
print(json.dumps({{'found': found, 'names': sorted(os.environ)}}))
"""
    r = server.execute("python", code)
    assert r["success"] is True, r
    assert SECRET not in r["output"] and SECRET not in r.text, r
    report = json.loads(r["output"])
    assert not any(report["found"].values()), report
    assert set(report["names"]) <= {"PATH", "HOME", "LANG", "HOSTNAME", "PYTHONDONTWRITEBYTECODE"}, report
    assert "CE_TEST_SECRET" not in report["names"] and "API_TOKEN" not in report["names"]


def test_container_config_holds_no_secret(server):
    # `docker inspect` is readable by anyone with engine access: env, labels and command
    # line of a sandbox must not carry the server's secrets.
    fut, cid = start_long_execution(server)
    try:
        inspected = docker("inspect", cid)
    finally:
        fut.cancel()
    assert SECRET not in inspected
    config = json.loads(inspected)[0]["Config"]
    assert not any(e.startswith(("CE_TEST_SECRET=", "API_TOKEN=")) for e in config["Env"] or []), config["Env"]


# ------------------------------------------------------------------------- output flood


FLOOD_CODE = """
import sys
block = ('y' * 1023 + '\\n') * 1024          # 1 MiB
for _ in range(100):
    sys.stdout.write(block)
err = ('e' * 1023 + '\\n') * 1024
for _ in range(4):
    sys.stderr.write(err)
"""
MIB = 1024 * 1024
MARKER = re.compile(r"\[output truncated: (\d+) more bytes were dropped after the first (\d+) bytes\]$")


def test_100_mb_of_output_is_capped_and_server_memory_stays_small(server):
    baseline_kib = server.rss_kib()
    samples: list[int] = []
    done = threading.Event()

    def sample():
        while not done.is_set():
            try:
                samples.append(server.rss_kib())
            except (OSError, KeyError):
                return
            done.wait(0.1)

    sampler = threading.Thread(target=sample, daemon=True)
    sampler.start()
    try:
        r = server.execute("python", FLOOD_CODE, timeoutMs=120000, timeout=150)
    finally:
        done.set()
        sampler.join()
    peak_kib = server.rss_kib("VmHWM")

    assert r["success"] is True, r
    assert r["truncated"] is True, r
    out, err = r["output"], r["stderr"]
    assert out.startswith("y" * 1023 + "\n"), out[:100]
    assert MIB <= len(out) <= MIB + 200, len(out)
    m = MARKER.search(out)
    assert m, out[-300:]
    assert (int(m[1]), int(m[2])) == (100 * MIB - MIB, MIB), m[0]
    assert set(out[: MIB]) == {"y", "\n"}
    assert MIB <= len(err) <= MIB + 200 and MARKER.search(err), err[-300:]
    assert int(MARKER.search(err)[1]) == 3 * MIB, err[-300:]

    assert samples, "no RSS sample taken"
    limit_kib = 100 * 1024
    assert peak_kib < limit_kib, f"server peak RSS {peak_kib} KiB (baseline {baseline_kib} KiB, samples max {max(samples)})"
    assert server.alive()


# ------------------------------------------------------------------------- cancellation


def test_cancelled_call_leaves_no_container(server):
    async def start_and_cancel(session):
        spy = ContainerSpy()
        outcome: dict[str, object] = {}
        scope = anyio.CancelScope()

        async def call():
            with scope:
                try:
                    outcome["result"] = await session.call_tool(
                        "executePython", {"code": LONG_CODE, "timeoutMs": 120000}, progress_callback=spy
                    )
                except Exception as e:  # noqa: BLE001
                    outcome["error"] = e
            outcome["cancelled"] = scope.cancelled_caught

        task = asyncio.create_task(call())
        cid = await asyncio.to_thread(spy.wait)
        existed = await asyncio.to_thread(container_exists, cid)
        scope.cancel()  # the SDK sends notifications/cancelled for the request
        cancelled_at = time.monotonic()
        await asyncio.wait_for(task, 10)
        return cid, existed, outcome, cancelled_at

    cid, existed, outcome, cancelled_at = server.run(start_and_cancel, timeout=60)
    assert outcome.get("cancelled") is True, outcome
    assert existed, f"precondition: container {cid} of the running execution exists"
    assert wait_until(lambda: not container_exists(cid), 10), (
        f"container {cid} still exists {time.monotonic() - cancelled_at:.1f} s after the cancellation\n"
        + server.stderr_tail()
    )
    # The session and the server carry on.
    r = server.execute("python", "print('after cancel')")
    assert r["success"] is True and r["output"] == "after cancel\n", r


def test_client_timeout_cancels_too(server):
    # A client-side request timeout also sends notifications/cancelled.
    spy = ContainerSpy()

    async def go(session):
        try:
            await session.call_tool(
                "executePython", {"code": LONG_CODE, "timeoutMs": 120000}, read_timeout_seconds=4, progress_callback=spy
            )
        except Exception as e:  # noqa: BLE001
            return e
        return None

    err = server.run(go, timeout=30)
    assert err is not None, "the call should have timed out on the client side"
    cid = spy.wait(0)
    assert wait_until(lambda: not container_exists(cid), 10), f"container {cid} survived the client's timeout"


def test_cancel_while_the_container_is_being_created_leaves_no_container(make_server):
    """Cancels land at every moment of a container's preparation (create, attach, start):
    sweeping the delay between the call and its cancellation from 0 to 200 ms hits the
    window where the engine has created the container but the server has not yet taken
    ownership of it. memoryMb differs from the default so that no warm container is used."""
    srv = make_server()

    async def sweep(session):
        for i in range(41):
            with anyio.move_on_after(0.005 * i):
                await session.call_tool(
                    "executePython", {"code": "import time\ntime.sleep(30)", "timeoutMs": 60000, "memoryMb": 200}
                )
            await asyncio.sleep(0.02)

    srv.run(sweep, timeout=120)
    # Afterwards the server may hold its (running) warm pool, nothing else.
    left = wait_no_containers(lambda: [c for c in srv.containers() if c["state"] != "running"], 10)
    only_pool = wait_until(lambda: len(srv.containers()) <= pool_size(srv), 10)
    try:
        assert not left, (
            f"{len(left)} container(s) left after cancellations during preparation: "
            f"{[(c['state'], c['execution_id']) for c in left]}"
        )
        assert only_pool, f"running containers beyond the warm pool ({pool_size(srv)}): {srv.containers()}"
    finally:
        stray = [c for c in srv.containers() if c["state"] != "running"]
        if stray:  # keep the failure to this test, not the session-wide check
            docker("rm", "-f", *(c["id"] for c in stray))
    r = srv.execute("python", "print('fine')")
    assert r["success"] is True, r


# ------------------------------------------------------------------------- shutdown, crash


@pytest.mark.parametrize("how", ["close-stdin", "SIGTERM", "SIGINT"])
def test_server_shutdown_removes_running_containers(make_server, how):
    srv = make_server()
    pid = srv.pid
    fut, cid = start_long_execution(srv)
    t0 = time.monotonic()
    if how == "close-stdin":
        # What the SDK does: close the server's stdin, SIGTERM after 2 s, SIGKILL after 4 s.
        srv.stop()
    else:
        os.kill(pid, getattr(signal, how))
        assert wait_until(lambda: process_gone(pid), 10), f"server ignored {how}"
        srv.stop()
    fut.cancel()
    assert wait_until(lambda: process_gone(pid), 10), "server did not exit"
    assert wait_until(lambda: not container_exists(cid), 10), (
        f"container {cid} survived the server's shutdown ({how}, {time.monotonic() - t0:.1f} s)\n{srv.stderr_tail()}"
    )
    left = wait_no_containers(lambda: our_containers({pid}), 10)  # the warm pool's too
    assert not left, [(c["state"], c["execution_id"]) for c in left]


def test_shutdown_while_the_warm_pool_fills_leaves_no_container():
    """Closing stdin right after the handshake, while the server is still preparing its
    warm containers, must not leave a half-prepared one behind. The race window is about
    100 ms wide, so the stop is swept across it, several times; a raw stdio exchange keeps
    the timing tight (the SDK adds its own start-up work before a stop could be sent)."""
    pids = []
    for i in range(16):
        proc = subprocess.Popen(
            [str(BINARY), "serve"], stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=subprocess.DEVNULL,
            cwd=tempfile.gettempdir(),
            env={k: v for k, v in os.environ.items() if k in ("PATH", "HOME", "DOCKER_HOST")},
        )
        pids.append(proc.pid)
        init = {"jsonrpc": "2.0", "id": 1, "method": "initialize", "params": {
            "protocolVersion": "2025-06-18", "capabilities": {}, "clientInfo": {"name": "e2e", "version": "0"}}}
        proc.stdin.write((json.dumps(init) + "\n").encode())
        proc.stdin.write(b'{"jsonrpc":"2.0","method":"notifications/initialized"}\n')
        proc.stdin.flush()
        assert b'"id":1' in proc.stdout.readline()
        time.sleep(0.05 + 0.02 * (i % 8))
        proc.stdin.close()
        try:
            proc.wait(timeout=15)
        finally:
            proc.kill()
            proc.stdout.close()
    left = wait_no_containers(lambda: our_containers(set(pids)), 5)
    try:
        assert not left, (
            f"{len(left)} of {len(pids)} servers stopped while filling the pool left a container: "
            f"{[(c['state'], c['owner']) for c in left]}"
        )
    finally:
        if left:
            docker("rm", "-f", *(c["id"] for c in left))


def test_server_crash_leftovers_are_removed_at_next_start(make_server):
    srv = make_server()
    fut, cid = start_long_execution(srv)
    os.kill(srv.pid, signal.SIGKILL)
    assert wait_until(lambda: process_gone(srv.pid), 5)
    srv.stop()
    fut.cancel()
    assert container_exists(cid), "precondition: a crashed server cannot have removed its container"
    make_server()  # a new server reaps orphans of dead servers at start
    assert wait_until(lambda: not container_exists(cid), 10), f"orphan {cid} was not removed at the next start"
    left = wait_no_containers(lambda: our_containers({srv.pid}), 10)  # its warm pool's too
    assert not left, [(c["state"], c["execution_id"]) for c in left]


def test_module_server_holds_only_its_warm_pool(server):
    # Removal happens off the request path; once it settled, every container the server
    # still owns is a running warm one (none exited, none stuck in "created").
    def settled():
        rows = server.containers()
        return all(c["state"] == "running" for c in rows) and len(rows) <= pool_size(server)

    assert wait_until(settled, 10), (server.containers(), pool_size(server))
