"""Downstream MCP servers for the tool-call tests, and the configuration that points
code-executor-mcp at them (`MCP_CONFIG_PATH`).

  git_repo(dir, messages)      a git repository with one commit per message
  HttpDownstream               downstream_server.py over Streamable HTTP on a free port
  write_mcp_config(path, ...)  an `{"mcpServers": {...}}` file
  time_entry / git_entry / stdio_support_entry / http_entry
                               the entries (absolute paths into the repository's .venv)
  descendants(pid)             a process tree, read from /proc, to find and kill a child
  find_descendant(pid, needle) the first descendant whose command line contains `needle`

Standalone (no import of e2e_client) so that scripts can use it too.
"""

from __future__ import annotations

import json
import os
import signal
import socket
import subprocess
import time
from pathlib import Path
from typing import Any

REPO = Path(__file__).resolve().parents[3]
VENV_BIN = Path(os.environ.get("CE_E2E_VENV_BIN", REPO / ".venv" / "bin"))
SUPPORT = Path(__file__).resolve().parent
SERVER_SCRIPT = SUPPORT / "downstream_server.py"


# ---------------------------------------------------------------------- git


def git_repo(path: Path, messages: list[str]) -> Path:
    """`git init` at `path` and one (empty) commit per message, oldest first."""
    path.mkdir(parents=True, exist_ok=True)
    env = {
        **os.environ,
        "GIT_AUTHOR_NAME": "e2e",
        "GIT_AUTHOR_EMAIL": "e2e@example.invalid",
        "GIT_COMMITTER_NAME": "e2e",
        "GIT_COMMITTER_EMAIL": "e2e@example.invalid",
        "GIT_CONFIG_NOSYSTEM": "1",
        "HOME": str(path),  # no user config of the machine
    }

    def git(*args: str) -> None:
        subprocess.run(["git", *args], cwd=path, env=env, check=True, capture_output=True, timeout=30)

    git("init", "-q", "-b", "main")
    for i, message in enumerate(messages):
        (path / f"file{i}.txt").write_text(f"{message}\n")
        git("add", f"file{i}.txt")
        git("commit", "-q", "-m", message)
    return path


# ---------------------------------------------------------------------- config


def time_entry(**extra: Any) -> dict[str, Any]:
    return {"command": str(VENV_BIN / "mcp-server-time"), "args": ["--local-timezone", "Etc/UTC"], **extra}


def git_entry(repo: Path, **extra: Any) -> dict[str, Any]:
    return {"command": str(VENV_BIN / "mcp-server-git"), "args": ["--repository", str(repo)], **extra}


def stdio_support_entry(**extra: Any) -> dict[str, Any]:
    """downstream_server.py over stdio (echo, slow, boom)."""
    return {"command": str(VENV_BIN / "python"), "args": [str(SERVER_SCRIPT), "stdio"], **extra}


def http_entry(url: str, **extra: Any) -> dict[str, Any]:
    return {"type": "http", "url": url, **extra}


def write_mcp_config(path: Path, servers: dict[str, dict[str, Any]]) -> Path:
    path.write_text(json.dumps({"mcpServers": servers}, indent=2))
    return path


# ---------------------------------------------------------------------- HTTP downstream


def free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def port_open(port: int) -> bool:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.settimeout(0.5)
        return s.connect_ex(("127.0.0.1", port)) == 0


class HttpDownstream:
    """downstream_server.py serving Streamable HTTP on 127.0.0.1:<free port>/mcp."""

    def __init__(self, log_path: Path) -> None:
        self.log_path = log_path
        self.proc: subprocess.Popen[bytes] | None = None
        self.port = 0

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}/mcp"

    def start(self, timeout: float = 30) -> "HttpDownstream":
        for _attempt in range(3):  # the free port may be taken between probe and bind
            self.port = free_port()
            with open(self.log_path, "ab") as log:
                self.proc = subprocess.Popen(
                    [str(VENV_BIN / "python"), str(SERVER_SCRIPT), "http", str(self.port)],
                    stdin=subprocess.DEVNULL,
                    stdout=log,
                    stderr=log,
                    start_new_session=True,
                )
            deadline = time.monotonic() + timeout
            while time.monotonic() < deadline and self.proc.poll() is None:
                if port_open(self.port):
                    return self
                time.sleep(0.1)
            self.stop()
        raise RuntimeError(f"the HTTP downstream did not come up:\n{self.log_tail()}")

    def stop(self) -> None:
        if self.proc is not None and self.proc.poll() is None:
            self.proc.terminate()
            try:
                self.proc.wait(10)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait(10)
        self.proc = None

    def log_tail(self, n: int = 3000) -> str:
        try:
            return self.log_path.read_text(errors="replace")[-n:]
        except OSError:
            return "<no log>"

    def __enter__(self) -> "HttpDownstream":
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()


# ---------------------------------------------------------------------- processes


def _ppid(pid: int) -> int | None:
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return None
    return int(stat.rsplit(")", 1)[1].split()[1])


def cmdline(pid: int) -> str:
    try:
        return Path(f"/proc/{pid}/cmdline").read_bytes().replace(b"\0", b" ").decode(errors="replace").strip()
    except OSError:
        return ""


def descendants(root: int) -> list[int]:
    """Every live descendant of `root` (children first), scanning /proc."""
    parents: dict[int, int] = {}
    for entry in os.listdir("/proc"):
        if entry.isdigit():
            ppid = _ppid(int(entry))
            if ppid is not None:
                parents[int(entry)] = ppid
    out: list[int] = []
    frontier = [root]
    while frontier:
        nxt = [pid for pid, ppid in parents.items() if ppid in frontier]
        out += nxt
        frontier = nxt
    return out


def find_descendant(root: int, needle: str) -> int | None:
    """The first descendant of `root` whose command line contains `needle`."""
    for pid in descendants(root):
        if needle in cmdline(pid):
            return pid
    return None


def kill_and_reap_wait(pid: int, timeout: float = 10) -> bool:
    """SIGKILL `pid` and wait until it is gone or a zombie; True when it is."""
    try:
        os.kill(pid, signal.SIGKILL)
    except ProcessLookupError:
        return True
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        try:
            state = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0]
        except OSError:
            return True
        if state == "Z":
            return True
        time.sleep(0.05)
    return False

