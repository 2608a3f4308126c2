"""Streamable HTTP transport: API keys, /healthz, /readyz, /metrics, graceful SIGTERM.

The real binary serves `--http 127.0.0.1:<port>`; the official SDK's Streamable HTTP
client connects with a key. Everything stays on loopback."""

from __future__ import annotations

import asyncio
import json
import os
import signal
import socket
import subprocess
import tempfile
import time
import urllib.error
import urllib.request

import httpx2
import pytest
from mcp import ClientSession
from mcp.client.streamable_http import streamable_http_client

from .support.checks import initialize_status
from .e2e_client import BINARY, STARTED_PIDS, our_containers, process_gone, wait_no_containers, wait_until

KEY = "ci-key-0123456789abcdef0123456789"


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


class HttpServer:
    def __init__(self, extra_env: dict[str, str] | None = None, addr: str | None = None):
        self.port = free_port()
        self.addr = addr or f"127.0.0.1:{self.port}"
        env = {k: v for k, v in os.environ.items() if not k.startswith("CODE_EXECUTOR_")}
        config = tempfile.NamedTemporaryFile("w", suffix=".json", delete=False)
        config.write('{"mcpServers": {}}')
        config.close()
        self.config = config.name
        env.update({"CODE_EXECUTOR_API_KEYS": f"ci:{KEY}", "CODE_EXECUTOR_POOL_SIZE": "1", "MCP_CONFIG_PATH": config.name})
        env.update(extra_env or {})
        self.proc = subprocess.Popen(
            [str(BINARY), "serve", "--http", self.addr],
            stdin=subprocess.DEVNULL,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            env=env,
        )
        STARTED_PIDS.add(self.proc.pid)

    @property
    def base(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def wait_up(self) -> None:
        def up() -> bool:
            try:
                return self.get("/healthz")[0] == 200
            except OSError:
                return False

        assert wait_until(up, 30), self.stderr()

    def get(self, path: str, key: str | None = None) -> tuple[int, str]:
        req = urllib.request.Request(self.base + path)
        if key:
            req.add_header("Authorization", f"Bearer {key}")
        try:
            with urllib.request.urlopen(req, timeout=10) as resp:
                return resp.status, resp.read().decode()
        except urllib.error.HTTPError as e:
            return e.code, e.read().decode()

    def stderr(self) -> str:
        if self.proc.poll() is None:
            return "(running)"
        return self.proc.stderr.read().decode(errors="replace")[-3000:]

    def stop(self) -> None:
        os.unlink(self.config)
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
            try:
                self.proc.wait(30)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()


async def with_session(server: HttpServer, fn, key: str = KEY):
    headers = {"Authorization": f"Bearer {key}"}
    async with httpx2.AsyncClient(headers=headers, timeout=httpx2.Timeout(60.0)) as http:
        async with streamable_http_client(server.base + "/mcp", http_client=http) as streams:
            read, write = streams[0], streams[1]
            async with ClientSession(read, write) as session:
                await session.initialize()
                return await fn(session)


@pytest.fixture(scope="module")
def http_server():
    srv = HttpServer()
    srv.wait_up()
    yield srv
    srv.stop()


def test_execution_over_http_is_counted_in_metrics(http_server):
    async def run(session):
        return await session.call_tool("executePython", {"code": "print(6 * 7)"})

    result = asyncio.run(with_session(http_server, run))
    assert not result.is_error, result
    assert result.structured_content["output"] == "42\n"
    status, text = http_server.get("/metrics", KEY)
    assert status == 200
    assert 'code_executor_executions_total{language="python",outcome="success"}' in text, text
    assert "code_executor_execution_duration_seconds_bucket" in text
    assert 'code_executor_pool_size{language="python"}' in text


def test_readyz_and_healthz(http_server):
    assert http_server.get("/healthz")[0] == 200
    assert wait_until(lambda: http_server.get("/readyz")[0] == 200, 30), http_server.get("/readyz")
    body = json.loads(http_server.get("/readyz")[1])
    assert body["ready"] is True and body["reasons"] == []


def test_wrong_or_missing_key_is_401_json(http_server):
    for key in (None, "wrong-key-0123456789abcdef", KEY[:-1]):
        status, body = http_server.get("/metrics", key)
        assert status == 401, (key, status)
        assert "API key" in json.loads(body)["error"]
    assert initialize_status(http_server.base) == 401

    async def run(session):
        return await session.call_tool("executePython", {"code": "print(1)"})

    with pytest.raises(Exception):
        asyncio.run(with_session(http_server, run, key="wrong-key-0123456789abcdef"))


def test_public_address_without_keys_is_refused():
    srv = HttpServer({"CODE_EXECUTOR_API_KEYS": ""}, addr=f"0.0.0.0:{free_port()}")
    assert srv.proc.wait(30) != 0
    err = srv.proc.stderr.read().decode()
    assert "without API keys" in err, err
    assert not our_containers({srv.proc.pid}), "a refused start leaves nothing"


def test_sigterm_lets_a_running_execution_finish_within_grace():
    srv = HttpServer({"CODE_EXECUTOR_SHUTDOWN_GRACE_SECS": "20"})
    srv.wait_up()

    async def run(session):
        task = asyncio.create_task(
            session.call_tool("executePython", {"code": "import time\ntime.sleep(3)\nprint('finished')"})
        )
        await asyncio.sleep(1.0)
        srv.proc.send_signal(signal.SIGTERM)
        return await task

    t0 = time.monotonic()
    result = asyncio.run(with_session(srv, run))
    assert not result.is_error, result
    assert result.structured_content["output"] == "finished\n"
    assert wait_until(lambda: process_gone(srv.proc.pid), 20), srv.stderr()
    assert time.monotonic() - t0 < 20
    assert not wait_no_containers(lambda: our_containers({srv.proc.pid}), 10)


def test_sigterm_kills_what_outlives_the_grace_period():
    srv = HttpServer({"CODE_EXECUTOR_SHUTDOWN_GRACE_SECS": "1"})
    srv.wait_up()

    async def run(session):
        task = asyncio.create_task(session.call_tool("executePython", {"code": "import time\ntime.sleep(60)"}))
        await asyncio.sleep(1.5)
        srv.proc.send_signal(signal.SIGTERM)
        try:
            return await asyncio.wait_for(task, 20)
        except Exception as e:  # the session may close under it
            return e

    t0 = time.monotonic()
    asyncio.run(with_session(srv, run))
    assert wait_until(lambda: process_gone(srv.proc.pid), 20), srv.stderr()
    assert time.monotonic() - t0 < 20, "the grace period bounds the wait"
    assert not wait_no_containers(lambda: our_containers({srv.proc.pid}), 10)
