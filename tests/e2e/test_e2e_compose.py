"""The compose deployment: compose/docker-compose.yml with the image code-executor/server.

One stack per module, under a unique project name and a free published port, so it
cannot clash with `make up` or another run:

  - `docker-compose -p <project> -f compose/docker-compose.yml -f <override> up -d` with a
    temporary keys file, settings (compose/code-executor.toml with a 20 s grace period and
    a warm pool of 1), `.mcp.json` and socket directory (/tmp/ce-compose-<hex>, owned by
    the server's uid 10001, mounted at the same path);
  - the override adds a downstream MCP server: tests/e2e/support/downstream_server.py
    (Streamable HTTP) run by the rootfs image's python3 with the test venv's
    site-packages mounted read-only, in the server container's network namespace
    (`network_mode: service:server`), so the server reaches it at 127.0.0.1 and no
    traffic leaves that container's loopback. That needs the venv's Python to be the
    rootfs's (3.11, bookworm); otherwise the stack runs without it and the tool call is
    skipped with the reason;
  - the official MCP client connects over Streamable HTTP to 127.0.0.1:<port> with a key.

Checks: the container runs as compose says (read-only, no capabilities, uid 10001 plus the
socket's group, limits, port on 127.0.0.1 only) and its health check turns healthy; an
execution that calls a downstream tool works and /metrics counts it; /readyz is 200; a
wrong key is 401; SIGTERM (`docker-compose stop`) during a long execution lets it finish
within the grace period, then every sandbox container of that server is removed; and
`docker-compose down` of a running stack (warm pool filled) leaves no sandbox container
and no container of the project. Teardown (`down -v`) runs whatever happens.

Needs docker-compose (v1) or the `docker compose` plugin (else skipped), the images
(`make image-build`; a missing code-executor/server is a failure) and root, to give the
socket directory and the keys file to uid 10001 (`make test` runs as root here).
"""

from __future__ import annotations

import asyncio
import json
import os
import re
import secrets
import shutil
import socket
import subprocess
import sys
import sysconfig
import tempfile
import time
import urllib.error
import urllib.request
from pathlib import Path

import httpx2
import pytest
from mcp import ClientSession
from mcp.client.streamable_http import streamable_http_client

from .e2e_client import REPO, VERSION, managed_containers, wait_until
from .support.checks import initialize_status

SERVER_IMAGE = f"code-executor/server:{VERSION}"
ROOTFS_IMAGE = f"code-executor/rootfs:{VERSION}"
COMPOSE_FILE = REPO / "compose" / "docker-compose.yml"
SETTINGS_FILE = REPO / "compose" / "code-executor.toml"
SERVER_UID = 10001
GRACE_SECS = 20
DOWNSTREAM_PORT = 8765
KEY = secrets.token_hex(24)


def _compose_command() -> list[str] | None:
    if shutil.which("docker-compose"):
        return ["docker-compose"]
    if shutil.which("docker") and subprocess.run(["docker", "compose", "version"], capture_output=True).returncode == 0:
        return ["docker", "compose"]
    return None


COMPOSE = _compose_command()
if COMPOSE is None:
    pytest.skip("neither docker-compose nor the docker compose plugin is installed", allow_module_level=True)


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def docker(*args: str, timeout: float = 60) -> str:
    proc = subprocess.run(["docker", *args], capture_output=True, text=True, timeout=timeout)
    if proc.returncode != 0:
        raise RuntimeError(f"docker {' '.join(args)} failed: {proc.stderr.strip()}")
    return proc.stdout


def rootfs_python() -> tuple[int, int] | None:
    out = subprocess.run(
        ["docker", "run", "--rm", "--network", "none", "--entrypoint", "/usr/bin/python3", ROOTFS_IMAGE,
         "-c", "import sys; print(*sys.version_info[:2])"],
        capture_output=True, text=True, timeout=60,
    )
    if out.returncode != 0:
        return None
    major, minor = out.stdout.split()
    return int(major), int(minor)


class Stack:
    """One compose project: its temporary files, environment and docker-compose calls."""

    def __init__(self) -> None:
        self.project = f"cetest{os.getpid()}{secrets.token_hex(3)}"
        self.port = free_port()
        self.tmp = Path(tempfile.mkdtemp(prefix="ce-compose-test-"))
        # Short (Unix socket paths) and the same path on the host and in the container.
        self.socket_base = Path(f"/tmp/ce-compose-{secrets.token_hex(4)}")
        self.docker_gid = os.stat("/var/run/docker.sock").st_gid
        self.server_hostname = ""
        self.downstream_skip: str | None = None

    # -------------------------------------------------------------- set-up

    def write_files(self) -> None:
        keys = self.tmp / "keys.txt"
        keys.write_text(f"# test keys\nci:{KEY}\n")
        os.chown(keys, 0, SERVER_UID)
        keys.chmod(0o640)
        settings = SETTINGS_FILE.read_text()
        settings, n1 = re.subn(r"(?m)^shutdown_grace_secs = \d+$", f"shutdown_grace_secs = {GRACE_SECS}", settings)
        settings, n2 = re.subn(r"(?m)^pool_size = \d+$", "pool_size = 1", settings)
        assert n1 == 1 and n2 == 1, "compose/code-executor.toml no longer sets shutdown_grace_secs and pool_size"
        (self.tmp / "code-executor.toml").write_text(settings)
        self.socket_base.mkdir(mode=0o711)
        os.chown(self.socket_base, SERVER_UID, SERVER_UID)

        venv_site = Path(sysconfig.get_paths()["purelib"])
        rootfs = rootfs_python()
        if rootfs != tuple(sys.version_info[:2]):
            self.downstream_skip = (
                f"the test venv's Python {sys.version_info[0]}.{sys.version_info[1]} is not the rootfs's "
                f"{rootfs}: its site-packages cannot run the downstream server in the rootfs image"
            )
        servers = {}
        override = {"services": {"server": {}}}
        if self.downstream_skip is None:
            servers["e2e"] = {"type": "http", "url": f"http://127.0.0.1:{DOWNSTREAM_PORT}/mcp"}
            override["services"]["downstream"] = {
                "image": ROOTFS_IMAGE,
                "pull_policy": "never",
                "network_mode": "service:server",
                "user": "65534:65534",
                "read_only": True,
                "cap_drop": ["ALL"],
                "security_opt": ["no-new-privileges:true"],
                "tmpfs": ["/tmp:size=16m"],
                "environment": {"PYTHONPATH": "/venv-site", "PYTHONDONTWRITEBYTECODE": "1", "HOME": "/tmp"},
                "volumes": [
                    f"{venv_site}:/venv-site:ro",
                    f"{REPO / 'tests' / 'e2e' / 'support'}:/support:ro",
                ],
                "entrypoint": ["/usr/bin/python3", "/support/downstream_server.py", "http", str(DOWNSTREAM_PORT)],
            }
        (self.tmp / "mcp.json").write_text(json.dumps({"mcpServers": servers}))
        # JSON is YAML: no YAML library needed.
        (self.tmp / "override.yml").write_text(json.dumps(override, indent=1))

    @property
    def env(self) -> dict[str, str]:
        env = {k: v for k, v in os.environ.items() if not k.startswith(("CE_", "CODE_EXECUTOR_", "COMPOSE_"))}
        env.update({
            "DOCKER_GID": str(self.docker_gid),
            "CE_VERSION": VERSION,
            "CE_PORT": str(self.port),
            "CE_SOCKET_BASE": str(self.socket_base),
            "CE_KEYS_FILE": str(self.tmp / "keys.txt"),
            "CE_CONFIG": str(self.tmp / "code-executor.toml"),
            "CE_MCP_CONFIG": str(self.tmp / "mcp.json"),
            "CE_LOG": "info,rmcp=warn,bollard=warn",
        })
        return env

    def compose(self, *args: str, timeout: float = 120, check: bool = True) -> subprocess.CompletedProcess:
        cmd = [*COMPOSE, "-p", self.project, "-f", str(COMPOSE_FILE), "-f", str(self.tmp / "override.yml"), *args]
        proc = subprocess.run(cmd, capture_output=True, text=True, timeout=timeout, env=self.env)
        if check and proc.returncode != 0:
            raise RuntimeError(f"{' '.join(cmd)} failed ({proc.returncode}):\n{proc.stdout}\n{proc.stderr}")
        return proc

    def compose_popen(self, *args: str) -> subprocess.Popen:
        cmd = [*COMPOSE, "-p", self.project, "-f", str(COMPOSE_FILE), "-f", str(self.tmp / "override.yml"), *args]
        return subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True, env=self.env)

    def up(self) -> None:
        self.compose("up", "-d")
        assert wait_until(lambda: self.get("/healthz")[0] == 200, 60), self.logs()
        self.server_hostname = self.inspect()["Config"]["Hostname"]

    # -------------------------------------------------------------- queries

    def server_id(self) -> str:
        return self.compose("ps", "-q", "server").stdout.strip()

    def inspect(self) -> dict:
        return json.loads(docker("inspect", self.server_id()))[0]

    def logs(self) -> str:
        return self.compose("logs", "--no-color", "--tail", "60", check=False).stdout

    def sandboxes(self) -> list[dict[str, str]]:
        """Sandbox containers started by this stack's server (owner label host = its hostname)."""
        assert self.server_hostname
        return [c for c in managed_containers() if c["owner"].startswith(self.server_hostname + ":")]

    def project_containers(self) -> list[str]:
        return docker("ps", "-aq", "--filter", f"label=com.docker.compose.project={self.project}").split()

    @property
    def base(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def get(self, path: str, key: str | None = None) -> tuple[int, str]:
        req = urllib.request.Request(self.base + path)
        if key:
            req.add_header("Authorization", f"Bearer {key}")
        try:
            with urllib.request.urlopen(req, timeout=10) as resp:
                return resp.status, resp.read().decode()
        except urllib.error.HTTPError as e:
            return e.code, e.read().decode()
        except OSError as e:
            return 0, str(e)

    async def session(self, fn, key: str = KEY):
        headers = {"Authorization": f"Bearer {key}"}
        async with httpx2.AsyncClient(headers=headers, timeout=httpx2.Timeout(60.0)) as http:
            async with streamable_http_client(self.base + "/mcp", http_client=http) as streams:
                async with ClientSession(streams[0], streams[1]) as session:
                    await session.initialize()
                    return await fn(session)

    # -------------------------------------------------------------- teardown

    def teardown(self) -> None:
        try:
            if (self.tmp / "override.yml").exists():
                self.compose("down", "-v", "--remove-orphans", "-t", "60", timeout=180, check=False)
        finally:
            shutil.rmtree(self.tmp, ignore_errors=True)
            shutil.rmtree(self.socket_base, ignore_errors=True)


@pytest.fixture(scope="module")
def stack():
    proc = subprocess.run(["docker", "image", "inspect", SERVER_IMAGE, ROOTFS_IMAGE], capture_output=True, text=True)
    if proc.returncode != 0:
        pytest.fail(f"{SERVER_IMAGE} or {ROOTFS_IMAGE} is missing: run `make image-build` (images/build.sh all)")
    if os.geteuid() != 0:
        pytest.fail("the compose test runs as root: it gives its socket directory and keys file to uid 10001")
    s = Stack()
    try:
        s.write_files()
        s.up()
        yield s
    finally:
        s.teardown()
    # Whatever the tests did: nothing of the project or its server is left.
    assert not s.project_containers(), "containers of the compose project left behind"
    if s.server_hostname:
        assert not s.sandboxes(), "sandbox containers of the compose server left behind"


def test_server_container_is_hardened_and_healthy(stack):
    info = stack.inspect()
    host, config = info["HostConfig"], info["Config"]
    assert host["ReadonlyRootfs"] is True
    assert host["CapDrop"] == ["ALL"] and not host["CapAdd"]
    assert "no-new-privileges:true" in host["SecurityOpt"]
    assert host["Privileged"] is False
    assert config["User"] == f"{SERVER_UID}:{SERVER_UID}"
    assert host["GroupAdd"] == [str(stack.docker_gid)]
    assert host["Memory"] > 0 and host["MemorySwap"] == host["Memory"]
    assert host["PidsLimit"] and host["PidsLimit"] > 0
    assert host["Init"] is True
    assert "/tmp" in host["Tmpfs"]
    assert host["PortBindings"] == {"3333/tcp": [{"HostIp": "127.0.0.1", "HostPort": str(stack.port)}]}
    mounts = {m["Destination"]: m for m in info["Mounts"]}
    assert mounts[str(stack.socket_base)]["Source"] == str(stack.socket_base) and mounts[str(stack.socket_base)]["RW"]
    assert mounts["/var/run/docker.sock"]["Source"] == "/var/run/docker.sock"
    for ro in ("/etc/code-executor/code-executor.toml", "/etc/code-executor/mcp.json", "/etc/code-executor/keys.txt"):
        assert mounts[ro]["RW"] is False, ro
    assert mounts["/var/log/code-executor"]["Type"] == "volume"
    # The server process itself (a child of the init): uid 10001, no capabilities at
    # all, the socket's group among its groups.
    status = docker("exec", stack.server_id(), "/bin/sh", "-c",
                    'for d in /proc/[0-9]*; do tr "\\0" " " <$d/cmdline | grep -q "^/usr/local/bin/code-executor-mcp serve" && cat $d/status; done; true')
    assert "Name:\tcode-executor-m" in status, status
    assert re.search(r"Uid:\t10001\t10001\t10001\t10001", status), status
    assert "CapEff:\t0000000000000000" in status and "CapPrm:\t0000000000000000" in status, status
    assert "NoNewPrivs:\t1" in status, status
    assert str(stack.docker_gid) in re.search(r"Groups:\t(.*)", status).group(1).split(), status
    # The image's health check (through /healthz) turns healthy.
    assert wait_until(lambda: stack.inspect()["State"]["Health"]["Status"] == "healthy", 45), stack.inspect()["State"]


def test_readyz_and_the_warm_pool_are_siblings_of_the_server(stack):
    assert wait_until(lambda: stack.get("/readyz")[0] == 200, 90), (stack.get("/readyz"), stack.logs())
    body = json.loads(stack.get("/readyz")[1])
    assert body["ready"] is True and body["reasons"] == []
    if stack.downstream_skip is None:
        assert [s["name"] for s in body["downstreamServers"]] == ["e2e"], body
    # The warm pool (1 per language) was created by the compose server on the host's
    # engine: sibling containers carrying its hostname in their owner label.
    assert wait_until(lambda: len(stack.sandboxes()) >= 2, 30), stack.sandboxes()


def test_execution_over_http_with_a_downstream_tool_is_counted(stack):
    if stack.downstream_skip:
        code, allowed = "print(6 * 7)", []
    else:
        code = "r = await call_mcp_tool('mcp__e2e__echo', {'text': 'ab', 'count': 3})\nprint(r['text'], 6 * 7)"
        allowed = ["mcp__e2e__echo"]

    async def run(session):
        return await session.call_tool("executePython", {"code": code, "allowedTools": allowed})

    result = asyncio.run(stack.session(run))
    assert not result.is_error, result
    sc = result.structured_content
    status, metrics = stack.get("/metrics", KEY)
    assert status == 200, metrics
    assert re.search(r'code_executor_executions_total\{language="python",outcome="success"\} [1-9]', metrics), metrics
    assert "code_executor_execution_duration_seconds_bucket" in metrics
    if stack.downstream_skip:
        assert sc["output"] == "42\n", sc
        pytest.skip(f"execution ran, tool call skipped: {stack.downstream_skip}")
    assert sc["output"] == "ababab 42\n", sc
    assert sc["toolCallsMade"] == 1, sc
    assert 'code_executor_tool_calls_total{tool="mcp__e2e__echo",outcome="ok"} 1' in metrics, metrics
    assert 'code_executor_downstream_up{server="e2e"} 1' in metrics, metrics


def test_wrong_or_missing_key_is_401(stack):
    for key in (None, "wrong-key-0123456789abcdef", KEY[:-1]):
        status, body = stack.get("/metrics", key)
        assert status == 401, (key, status, body)
        assert "API key" in json.loads(body)["error"]
    assert initialize_status(stack.base, key="wrong-key-0123456789abcdef") == 401

    async def run(session):
        return await session.call_tool("executePython", {"code": "print(1)"})

    with pytest.raises(Exception):
        asyncio.run(stack.session(run, key="wrong-key-0123456789abcdef"))


def test_sigterm_lets_a_running_execution_finish_then_removes_everything(stack):
    stopper: list[subprocess.Popen] = []

    async def run(session):
        task = asyncio.create_task(session.call_tool(
            "executePython", {"code": "import time\ntime.sleep(4)\nprint('finished')", "timeoutMs": 60000}))
        await asyncio.sleep(1.5)
        # What `make down` and `docker stop` do: SIGTERM, then SIGKILL after
        # stop_grace_period (45 s) if the server were still running.
        stopper.append(stack.compose_popen("stop", "server"))
        return await task

    t0 = time.monotonic()
    try:
        result = asyncio.run(stack.session(run))
    except BaseException as e:
        if stopper:
            stopper[0].wait(60)
        raise AssertionError(f"the call failed after {time.monotonic() - t0:.1f} s: {e!r}\n{stack.logs()}") from e
    assert not result.is_error, result
    assert result.structured_content["output"] == "finished\n", result
    out, _ = stopper[0].communicate(timeout=60)
    elapsed = time.monotonic() - t0
    assert stopper[0].returncode == 0, out
    state = stack.inspect()["State"]
    assert state["Status"] == "exited" and state["ExitCode"] == 0, (state, stack.logs())
    assert elapsed < GRACE_SECS, f"stopping took {elapsed:.1f} s: the server did not exit once the execution ended"
    assert "SIGTERM received" in stack.logs()
    # The execution's container, the warm pool and the socket directories are gone.
    assert wait_until(lambda: not stack.sandboxes(), 10), stack.sandboxes()
    assert list(stack.socket_base.iterdir()) == []


def test_down_of_a_running_stack_leaves_nothing(stack):
    # Stopped or not by the test before: the downstream lives in the server's network
    # namespace, so stop everything and start it again in the right order.
    stack.compose("stop", timeout=120)
    # up() reads the server's hostname again: compose may have recreated the container.
    stack.up()
    assert wait_until(lambda: stack.get("/readyz")[0] == 200, 90), (stack.get("/readyz"), stack.logs())
    assert wait_until(lambda: len(stack.sandboxes()) >= 2, 30), (
        "the warm pool was not refilled",
        stack.server_hostname,
        managed_containers(),
    )
    stack.compose("down", timeout=120)
    assert stack.project_containers() == []
    assert wait_until(lambda: not stack.sandboxes(), 10), stack.sandboxes()
    assert list(stack.socket_base.iterdir()) == []
