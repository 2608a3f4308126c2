"""Tool calls from inside the sandbox, end to end: the real server, the real MCP client,
real downstream servers (issue 3, "Tests (real servers, real client)").

Downstreams, configured through `MCP_CONFIG_PATH` (a file of this module's own):
  time   `mcp-server-time` (stdio, PyPI reference server)
  git    `mcp-server-git --repository <a repo made here with four commits>` (stdio)
  web    support/downstream_server.py over Streamable HTTP (official Python SDK), with a
         per-server `timeoutMs` of 1000: `echo(text, count: int)`, `slow(seconds)`, `boom()`
The proxy sockets live under a temp `CODE_EXECUTOR_SOCKET_BASE`, so the tests can see
the host side of each execution's socket directory.

The test that kills a downstream has a server of its own (`make_server`): killing the
shared one's children would couple the other tests to the restart.
"""

from __future__ import annotations

import asyncio
import json
import re
import shutil
import tempfile
import time
import uuid
from datetime import datetime, timedelta, timezone
from pathlib import Path
from typing import Any, Callable

import pytest
from mcp.client import ClientSession
from mcp.client.stdio import StdioServerParameters, stdio_client

from .e2e_client import Result, Server, docker, execute, wait_until
from .support.checks import (
    PROXY_RAW_REQUEST,
    downstream_states,
    last_json,
    new_socket_base,
    wait_downstreams_ready,
)
from .support.downstreams import (
    HttpDownstream,
    find_descendant,
    git_entry,
    git_repo,
    http_entry,
    kill_and_reap_wait,
    stdio_support_entry,
    time_entry,
    write_mcp_config,
)

COMMITS = ["e2e: first commit", "e2e: second commit", "e2e: third commit", "e2e: fourth commit"]
WEB_TIMEOUT_MS = 1000
HEX64 = re.compile(r"[0-9a-fA-F]{64}")
TIME_TOOL = "mcp__time__get_current_time"


# ------------------------------------------------------------------------- fixtures


@pytest.fixture(scope="module")
def env_dir():
    tmp = Path(tempfile.mkdtemp(prefix="ce-e2e-tools-"))
    yield tmp
    shutil.rmtree(tmp, ignore_errors=True)


@pytest.fixture(scope="module")
def repo(env_dir) -> Path:
    return git_repo(env_dir / "repo", COMMITS)


@pytest.fixture(scope="module")
def web(env_dir):
    with HttpDownstream(env_dir / "web.log") as downstream:
        yield downstream


def start_server(name: str, config: Path, socket_base: Path, wait_for: set[str], **env: str) -> Server:
    srv = Server(
        extra_env={"MCP_CONFIG_PATH": str(config), "CODE_EXECUTOR_SOCKET_BASE": str(socket_base), **env},
        name=name,
    ).start()
    try:
        wait_downstreams_ready(srv, wait_for)
    except BaseException:
        srv.stop()
        raise
    return srv


def socket_dirs(base: Path) -> set[str]:
    try:
        return {p.name for p in base.iterdir()}
    except FileNotFoundError:
        return set()


@pytest.fixture(scope="module")
def tools_server(env_dir, repo, web):
    config = write_mcp_config(
        env_dir / "mcp.json",
        {
            "time": time_entry(),
            "git": git_entry(repo),
            "web": http_entry(web.url, timeoutMs=WEB_TIMEOUT_MS),
        },
    )
    base = new_socket_base()
    # 100 calls in a row in one execution (a test below) are faster than the default 50/s;
    # the rate limit has its own tests (test_e2e_security.py).
    srv = start_server("tools", config, base, {"time", "git", "web"}, CODE_EXECUTOR_TOOL_CALLS_PER_SECOND="1000")
    srv.socket_base = base  # type: ignore[attr-defined]
    yield srv
    srv.stop()
    # Every execution's socket directory (pooled containers' too) is gone with the server.
    emptied = wait_until(lambda: not socket_dirs(base), 10)
    left = socket_dirs(base)
    shutil.rmtree(base, ignore_errors=True)
    assert emptied, f"socket directories left under {base} after the server stopped: {left}"


@pytest.fixture(scope="module")
def direct_tools(repo) -> dict[str, dict[str, Any]]:
    """The tools of mcp-server-time and mcp-server-git as a direct MCP client lists them."""

    async def list_of(command: str, args: list[str]) -> dict[str, Any]:
        async with stdio_client(StdioServerParameters(command=command, args=args)) as (read, write):
            async with ClientSession(read, write) as session:
                await session.initialize()
                return {t.name: t.input_schema for t in (await session.list_tools()).tools}

    async def both() -> dict[str, dict[str, Any]]:
        return {
            "time": await list_of(time_entry()["command"], time_entry()["args"]),
            "git": await list_of(git_entry(repo)["command"], git_entry(repo)["args"]),
        }

    return asyncio.run(both())


# ------------------------------------------------------------------------- helpers


def assert_ok(r: Result) -> None:
    assert r["success"] is True and r["exitCode"] == 0 and r.is_error is False, r


def assert_summary(r: Result, expected: dict[str, tuple[int, int]]) -> None:
    """toolCallsMade and toolCallSummary: per tool (calls, errors), and nothing else."""
    summary = r["toolCallSummary"]
    got = {name: (s["calls"], s["errors"]) for name, s in summary.items()}
    assert got == expected, r
    assert r["toolCallsMade"] == sum(c for c, _ in expected.values()), r
    for name, s in summary.items():
        assert isinstance(s["totalMs"], int) and s["totalMs"] >= 0, (name, s)


def assert_paris_time(value: Any) -> None:
    assert isinstance(value, dict), value
    assert value["timezone"] == "Europe/Paris", value
    dt = datetime.fromisoformat(value["datetime"])
    assert dt.utcoffset() in (timedelta(hours=1), timedelta(hours=2)), value
    assert abs(dt - datetime.now(timezone.utc)) < timedelta(minutes=5), value


def marker() -> str:
    return f"MARK-{uuid.uuid4().hex[:12]}"


def streamed_stdout(srv: Server) -> str:
    """The stdout text streamed so far (log notifications), across executions."""
    return "".join(
        str(log.data.get("text", ""))
        for log in list(srv.logs)
        if isinstance(log.data, dict) and log.data.get("stream") == "stdout"
    )


def saw_output(srv: Server, text: str) -> bool:
    return text in streamed_stdout(srv)


def stdout_json_with(srv: Server, key: str) -> dict[str, Any]:
    """The first streamed stdout line that is a JSON object with `key`."""
    for line in streamed_stdout(srv).splitlines():
        if line.startswith("{"):
            value = json.loads(line)
            if key in value:
                return value
    raise AssertionError(f"no streamed JSON line with {key!r}: {streamed_stdout(srv)!r}")


async def run_during(
    srv: Server,
    session: ClientSession,
    language: str,
    code: str,
    mark: str,
    action: Callable[[], Any],
    mark_timeout: float = 60,
    **arguments: Any,
) -> tuple[Result, Any, float]:
    """Starts an execution, waits until its output (streamed as log notifications) shows
    `mark`, runs the blocking `action()` in a thread while the code still runs, then
    waits for the result. Returns (result, action's value, seconds from mark to action end)."""
    task = asyncio.create_task(execute(session, language, code, **arguments))
    deadline = time.monotonic() + mark_timeout
    while not saw_output(srv, mark):
        if task.done():
            raise AssertionError(f"the execution ended before printing {mark}: {task.result()!r}")
        if time.monotonic() > deadline:
            task.cancel()
            raise AssertionError(f"no {mark} in the output after {mark_timeout} s")
        await asyncio.sleep(0.02)
    seen = time.monotonic()
    value = await asyncio.to_thread(action)
    took = time.monotonic() - seen
    return await task, value, took


# ------------------------------------------------------------------------- calls


def test_python_call_mcp_tool_returns_the_structured_time(tools_server):
    code = (
        "import json\n"
        f"now = await call_mcp_tool({TIME_TOOL!r}, {{'timezone': 'Europe/Paris'}})\n"
        "print(json.dumps(now))\n"
    )
    r = tools_server.execute("python", code, allowedTools=["mcp__time__*"])
    assert_ok(r)
    assert_paris_time(last_json(r))
    assert_summary(r, {TIME_TOOL: (1, 0)})


def test_python_call_mcp_tool_sync_in_a_plain_script(tools_server, repo):
    # No await anywhere: a plain script, run without an event loop.
    code = (
        "import json\n"
        f"now = call_mcp_tool_sync({TIME_TOOL!r}, {{'timezone': 'Europe/Paris'}})\n"
        f"log = call_mcp_tool_sync('mcp__git__git_log', {{'repo_path': {str(repo)!r}, 'max_count': 3}})\n"
        "print(json.dumps({'now': now, 'log': log}))\n"
    )
    r = tools_server.execute("python", code, allowedTools=[TIME_TOOL, "mcp__git__git_log"])
    assert_ok(r)
    out = last_json(r)
    assert_paris_time(out["now"])
    assert_git_log(out["log"], newest=3)
    assert_summary(r, {TIME_TOOL: (1, 0), "mcp__git__git_log": (1, 0)})


def assert_git_log(log: Any, newest: int) -> None:
    """mcp-server-git answers text ("Commit history: ... Message: <msg>"), newest first."""
    assert isinstance(log, str), log
    messages = re.findall(r"^Message: (.*)$", log, re.M)
    assert messages == list(reversed(COMMITS))[:newest], log


def test_typescript_callMCPTool_time_and_git_log(tools_server, repo):
    code = (
        f"const now = await callMCPTool({json.dumps(TIME_TOOL)}, {{ timezone: 'Europe/Paris' }});\n"
        f"const log = await callMCPTool('mcp__git__git_log', {{ repo_path: {json.dumps(str(repo))}, max_count: 3 }});\n"
        "console.log(JSON.stringify({ now, log }));\n"
    )
    r = tools_server.execute("typescript", code, allowedTools=["mcp__time__*", "mcp__git__git_log"])
    assert_ok(r)
    out = last_json(r)
    assert_paris_time(out["now"])
    assert_git_log(out["log"], newest=3)
    assert_summary(r, {TIME_TOOL: (1, 0), "mcp__git__git_log": (1, 0)})


def test_python_git_log_returns_every_commit_message(tools_server, repo):
    code = (
        "import json\n"
        f"log = await call_mcp_tool('mcp__git__git_log', {{'repo_path': {str(repo)!r}}})\n"
        "print(json.dumps(log))\n"
    )
    r = tools_server.execute("python", code, allowedTools=["mcp__git__*"])
    assert_ok(r)
    assert_git_log(last_json(r), newest=len(COMMITS))
    assert_summary(r, {"mcp__git__git_log": (1, 0)})


def test_structured_result_of_an_http_downstream_tool(tools_server):
    code = "console.log(JSON.stringify(await callMCPTool('mcp__web__echo', { text: 'ab', count: 3 })));"
    r = tools_server.execute("typescript", code, allowedTools=["mcp__web__echo"])
    assert_ok(r)
    assert last_json(r) == {"text": "ababab", "count": 3}, r
    assert_summary(r, {"mcp__web__echo": (1, 0)})


# ------------------------------------------------------------------------- discovery


DISCOVERY_ALLOWED = ["mcp__time__*", "mcp__web__echo"]

DISCOVERY_CODE = {
    "python": (
        "import json\n"
        "tools = await discover_mcp_tools()\n"
        "hits = await search_tools('current time')\n"
        f"schema = await get_tool_schema({TIME_TOOL!r})\n"
        "echo = await get_tool_schema('mcp__web__echo')\n"
        "missing = await get_tool_schema('mcp__time__no_such_tool')\n"
        "print(json.dumps({'tools': tools, 'hits': hits, 'schema': schema, 'echo': echo, 'missing': missing}))\n"
    ),
    "typescript": (
        "const tools = await discoverMCPTools();\n"
        "const hits = await searchTools('current time');\n"
        f"const schema = await getToolSchema({json.dumps(TIME_TOOL)});\n"
        "const echo = await getToolSchema('mcp__web__echo');\n"
        "const missing = await getToolSchema('mcp__time__no_such_tool');\n"
        "console.log(JSON.stringify({ tools, hits, schema, echo, missing }));\n"
    ),
}


@pytest.mark.parametrize("language", ["python", "typescript"])
def test_discovery_lists_every_server_with_allowed_flags(tools_server, direct_tools, language):
    r = tools_server.execute(language, DISCOVERY_CODE[language], allowedTools=DISCOVERY_ALLOWED)
    assert_ok(r)
    out = last_json(r)
    tools = {t["name"]: t for t in out["tools"]}

    expected = {f"mcp__time__{n}" for n in direct_tools["time"]} | {f"mcp__git__{n}" for n in direct_tools["git"]}
    expected |= {"mcp__web__echo", "mcp__web__slow", "mcp__web__boom"}
    assert set(tools) == expected, sorted(tools)
    for name, t in tools.items():
        server = name.split("__")[1]
        assert t["server"] == server, t
        should = name.startswith("mcp__time__") or name == "mcp__web__echo"
        assert t["allowed"] is should, t
        assert isinstance(t["inputSchema"], dict) and t["inputSchema"].get("type") == "object", t
    # Same counts as health reports.
    states = downstream_states(tools_server)
    for server in ("time", "git", "web"):
        assert sum(t["server"] == server for t in tools.values()) == states[server]["toolCount"], (server, states)

    assert out["hits"], out
    assert out["hits"][0]["name"] == TIME_TOOL, out["hits"]
    assert out["schema"]["name"] == TIME_TOOL and out["schema"]["allowed"] is True, out["schema"]
    assert out["schema"]["inputSchema"] == direct_tools["time"]["get_current_time"], out["schema"]
    echo = out["echo"]["inputSchema"]
    assert echo["properties"]["count"]["type"] == "integer" and "count" in echo["required"], echo
    assert out["missing"] is None, out
    # Discovery is not a tool call.
    assert r["toolCallsMade"] == 0 and r["toolCallSummary"] == {}, r


# ------------------------------------------------------------------------- errors

# (case, tool, arguments, class, status, words the message must contain)
ERROR_CASES = [
    ("not_allowed", "mcp__git__git_log", {"repo_path": "/nonexistent"}, "ToolNotAllowed", 403,
     ["not allowed", "allowedTools", "mcp__time__*", "mcp__web__echo"]),
    ("unknown_tool", "mcp__time__no_such_tool", {}, "ToolNotFound", 404, ["mcp__time__no_such_tool"]),
    ("echo_count_string", "mcp__web__echo", {"text": "x", "count": "three"}, "InvalidArguments", 422,
     ["count", "integer"]),
    ("echo_count_missing", "mcp__web__echo", {"text": "x"}, "InvalidArguments", 422, ["count"]),
    ("time_tz_number", TIME_TOOL, {"timezone": 42}, "InvalidArguments", 422, ["timezone", "string"]),
]
ERRORS_ALLOWED = ["mcp__time__*", "mcp__web__echo"]


def python_error_code() -> str:
    lines = ["import json", "out = []"]
    for case, tool, args, cls, _, _ in ERROR_CASES:
        lines += [
            "try:",
            f"    value = await call_mcp_tool({tool!r}, {args!r})",
            f"    out.append({{'case': {case!r}, 'raised': None, 'value': value}})",
            f"except {cls} as e:",  # catchable by its own class
            f"    out.append({{'case': {case!r}, 'raised': type(e).__name__, 'status': e.status,"
            " 'message': e.message, 'base': isinstance(e, McpToolError), 'exc': isinstance(e, Exception)})",
        ]
    lines.append("print(json.dumps(out))")
    return "\n".join(lines) + "\n"


def typescript_error_code() -> str:
    lines = ["const out: any[] = [];"]
    for case, tool, args, cls, _, _ in ERROR_CASES:
        lines += [
            "try {",
            f"  const value = await callMCPTool({json.dumps(tool)}, {json.dumps(args)});",
            f"  out.push({{ case: {json.dumps(case)}, raised: null, value }});",
            "} catch (e) {",
            f"  if (!(e instanceof {cls})) throw e;",  # typed: anything else fails the execution
            f"  out.push({{ case: {json.dumps(case)}, raised: e.name, status: e.status, message: e.message,"
            " base: e instanceof McpToolError, exc: e instanceof Error });",
            "}",
        ]
    lines.append("console.log(JSON.stringify(out));")
    return "\n".join(lines) + "\n"


@pytest.mark.parametrize("language", ["python", "typescript"])
def test_refused_calls_raise_typed_catchable_errors(tools_server, language):
    code = python_error_code() if language == "python" else typescript_error_code()
    r = tools_server.execute(language, code, allowedTools=ERRORS_ALLOWED)
    assert_ok(r)
    got = {o["case"]: o for o in last_json(r)}
    for case, tool, _, cls, status, words in ERROR_CASES:
        o = got[case]
        assert o["raised"] == cls, (case, o)
        assert o["status"] == status, (case, o)
        assert o["base"] is True and o["exc"] is True, (case, o)
        for word in words:
            assert word in o["message"], (case, word, o["message"])
    expected: dict[str, tuple[int, int]] = {}
    for _, tool, _, _, _, _ in ERROR_CASES:
        calls, errors = expected.get(tool, (0, 0))
        expected[tool] = (calls + 1, errors + 1)
    assert_summary(r, expected)


@pytest.mark.parametrize(
    ("language", "code"),
    [
        ("python", "await call_mcp_tool('mcp__git__git_status', {'repo_path': '/x'})\n"),
        ("typescript", "await callMCPTool('mcp__git__git_status', { repo_path: '/x' });\n"),
    ],
)
def test_uncaught_tool_error_fails_the_execution_with_its_type(tools_server, language, code):
    r = tools_server.execute(language, code, allowedTools=["mcp__time__*"])
    assert r["success"] is False and r.is_error is True, r
    assert r["errorType"] == "ToolNotAllowed", r
    assert "mcp__time__*" in (r["error"] or "") + r["stderr"], r


@pytest.mark.parametrize(
    ("language", "code"),
    [
        ("python", (
            "import json\n"
            "try:\n"
            "    await call_mcp_tool('mcp__web__boom')\n"
            "    out = {'raised': None}\n"
            "except ToolFailed as e:\n"
            "    out = {'raised': type(e).__name__, 'status': e.status, 'message': e.message,\n"
            "           'isError': e.result.get('isError')}\n"
            "print(json.dumps(out))\n"
        )),
        ("typescript", (
            "let out: any;\n"
            "try {\n"
            "  await callMCPTool('mcp__web__boom');\n"
            "  out = { raised: null };\n"
            "} catch (e) {\n"
            "  if (!(e instanceof ToolFailed)) throw e;\n"
            "  out = { raised: e.name, status: e.status, message: e.message, isError: e.result?.isError };\n"
            "}\n"
            "console.log(JSON.stringify(out));\n"
        )),
    ],
)
def test_tool_error_result_raises_tool_failed_with_the_result(tools_server, language, code):
    r = tools_server.execute(language, code, allowedTools=["mcp__web__boom"])
    assert_ok(r)
    out = last_json(r)
    # The SDK answers an exception with isError and the text "Error executing tool boom".
    assert out == {"raised": "ToolFailed", "status": 200, "message": "Error executing tool boom", "isError": True}, out
    assert r["toolCallsMade"] == 1 and r["toolCallSummary"]["mcp__web__boom"]["calls"] == 1, r


# ------------------------------------------------------------------------- token and socket


RAW_401_CODE = PROXY_RAW_REQUEST + r"""
import json

def raw(method, path, headers, body=b""):
    status, text = raw_response(method, path, headers, body)
    return {"status": status, "body": text}

call = json.dumps({"name": "mcp__time__get_current_time", "arguments": {"timezone": "Etc/UTC"}}).encode()
js = {"Content-Type": "application/json"}
out = {
    "call_no_token": raw("POST", "/v1/tools/call", js, call),
    "call_wrong_token": raw("POST", "/v1/tools/call", {**js, "Authorization": "Bearer " + "0" * 64}, call),
    "call_empty_bearer": raw("POST", "/v1/tools/call", {**js, "Authorization": "Bearer "}, call),
    "list_no_token": raw("GET", "/v1/tools", {}),
    "list_wrong_token": raw("GET", "/v1/tools", {"Authorization": "Bearer " + "ab" * 32}),
    "schema_basic_auth": raw("GET", "/v1/tools/mcp__time__get_current_time", {"Authorization": "Basic " + "0" * 64}),
}
# The same socket answers the runner's own (authenticated) call.
out["api"] = (await call_mcp_tool("mcp__time__get_current_time", {"timezone": "Etc/UTC"}))["timezone"]
print(json.dumps(out))
"""


def test_raw_requests_without_or_with_a_wrong_token_get_401(tools_server):
    r = tools_server.execute("python", RAW_401_CODE, allowedTools=["mcp__time__*"])
    assert_ok(r)
    out = last_json(r)
    assert out.pop("api") == "Etc/UTC", out
    for case, answer in out.items():
        assert answer["status"] == 401, (case, answer)
        assert "bearer token" in answer["body"], (case, answer)
    # Only the runner's call reached the tool; the refused requests ran nothing.
    assert_summary(r, {TIME_TOOL: (1, 0)})


TOKEN_CODE = {
    "python": (
        "import json, os, re, time\n"
        f"r = await call_mcp_tool({TIME_TOOL!r}, {{'timezone': 'Etc/UTC'}})\n"
        "hexre = re.compile(rb'[0-9a-fA-F]{64}')\n"
        "hits = {}\n"
        "for p in ('/proc/1/environ', '/proc/1/cmdline', '/proc/self/environ', '/proc/self/cmdline'):\n"
        "    hits[p] = len(hexre.findall(open(p, 'rb').read()))\n"
        "hits['os.environ'] = sum(len(hexre.findall(f'{k}={v}'.encode())) for k, v in os.environ.items())\n"
        "pid1 = open('/proc/1/cmdline', 'rb').read().split(b'\\0')[0].decode()\n"
        # Counts only: nothing secret goes to the output.
        "print(json.dumps({'tz': r['timezone'], 'hits': hits, 'pid1': pid1, 'me': os.getpid()}))\n"
        "print('{mark}', flush=True)\n"
        "time.sleep(5)\n"
    ),
    "typescript": (
        f"const r = await callMCPTool({json.dumps(TIME_TOOL)}, {{ timezone: 'Etc/UTC' }});\n"
        "console.log(JSON.stringify({ tz: r.timezone }));\n"
        "console.log('{mark}');\n"
        "await new Promise((resolve) => setTimeout(resolve, 5000));\n"
    ),
}

# Where the engine itself puts 64-hex identifiers in `docker inspect`: the container and
# image ids, network/endpoint/sandbox ids, and paths derived from them (layers, logs).
ENGINE_ID_PATHS = re.compile(
    r"^(Id|Image|ResolvConfPath|HostnamePath|HostsPath|LogPath|GraphDriver\.Data\.\w+"
    r"|NetworkSettings\.(SandboxID|SandboxKey|EndpointID|Networks\.[^.]+\.(NetworkID|EndpointID)))$"
)


def hex_strings(value: Any, path: str = "") -> list[tuple[str, str]]:
    """(json path, 64-hex match) for every match in every key and value of `value`."""
    out: list[tuple[str, str]] = []
    if isinstance(value, dict):
        for k, v in value.items():
            sub = f"{path}.{k}" if path else str(k)
            out += [(sub + " (key)", m) for m in HEX64.findall(str(k))]
            out += hex_strings(v, sub)
    elif isinstance(value, list):
        for i, v in enumerate(value):
            out += hex_strings(v, f"{path}[{i}]")
    elif isinstance(value, str):
        out += [(path, m) for m in HEX64.findall(value)]
    return out


@pytest.mark.parametrize("language", ["python", "typescript"])
def test_token_is_in_neither_docker_inspect_nor_proc_1(tools_server, language):
    mark = marker()
    code = TOKEN_CODE[language].replace("{mark}", mark)

    def inspect_ours() -> list[dict[str, Any]]:
        # Every running container of this server (the warm pool's too): the one running
        # the code is among them. One at a time: an earlier execution's container may be
        # removed meanwhile.
        found = []
        for c in tools_server.containers(all_states=False):
            try:
                found += json.loads(docker("inspect", c["id"]))
            except RuntimeError as e:
                if "No such" not in str(e):
                    raise
        return found

    async def go(session):
        return await run_during(tools_server, session, language, code, mark, inspect_ours, allowedTools=["mcp__time__*"])

    r, inspected, _ = tools_server.run(go)
    assert_ok(r)
    assert last_json_line_with(r, "tz")["tz"] == "Etc/UTC", r
    assert_summary(r, {TIME_TOOL: (1, 0)})

    # The container that ran the code is among those inspected, and was running then.
    by_exec = {c["Config"]["Labels"].get("code-executor.execution-id"): c for c in inspected}
    mine = by_exec.get(r["executionId"])
    assert mine is not None, (r["executionId"], list(by_exec))
    assert mine["State"]["Running"] is True, mine["State"]

    images: dict[str, dict[str, Any]] = {}
    for c in inspected:
        if c["Image"] not in images:
            images[c["Image"]] = json.loads(docker("image", "inspect", c["Image"]))[0]
        image = images[c["Image"]]
        # What the image itself carries (its build's source-sha256 label) is not ours to judge.
        from_image = set(HEX64.findall(json.dumps(image)))
        strays = [(p, m) for p, m in hex_strings(c) if not ENGINE_ID_PATHS.match(p) and m not in from_image]
        assert not strays, f"64-hex strings in docker inspect outside the engine's own ids: {strays}"
        for p, m in hex_strings(c):  # the engine's ids are what they claim to be
            if p in ("Id", "Image"):
                assert m == c["Id"] or c["Image"].endswith(m), (p, m)
        # The places a careless implementation would use (labels: those the server added).
        image_labels = image["Config"].get("Labels") or {}
        added_labels = {k: v for k, v in (c["Config"].get("Labels") or {}).items() if image_labels.get(k) != v}
        assert "code-executor.execution-id" in added_labels, added_labels
        for part in (c["Config"].get("Env"), added_labels, c["Config"].get("Cmd"),
                     c["Config"].get("Entrypoint"), c.get("Args"), c.get("Path"), c.get("Mounts"),
                     c["HostConfig"].get("Binds")):
            assert not HEX64.search(json.dumps(part)), part

    if language == "python":
        facts = last_json_line_with(r, "hits")
        assert facts["me"] == 1 and facts["pid1"].endswith("python3"), facts  # the runner is pid 1
        assert facts["hits"] == {
            "/proc/1/environ": 0, "/proc/1/cmdline": 0, "/proc/self/environ": 0, "/proc/self/cmdline": 0,
            "os.environ": 0,
        }, facts


def last_json_line_with(r: Result, key: str) -> dict[str, Any]:
    for line in reversed(r["output"].splitlines()):
        if line.startswith("{"):
            value = json.loads(line)
            if key in value:
                return value
    raise AssertionError(f"no JSON line with {key!r} in the output: {r!r}")


ISOLATION_A = r"""
import json, os, socket, time
st = os.stat("/run/mcp/proxy.sock")
r = await call_mcp_tool("mcp__time__get_current_time", {"timezone": "Etc/UTC"})
print(json.dumps({"host": socket.gethostname(), "run_mcp": sorted(os.listdir("/run/mcp")),
                  "ino": [st.st_dev, st.st_ino], "tz": r["timezone"]}))
print("{mark}", flush=True)
time.sleep(8)
"""

ISOLATION_B = r"""
import errno, glob, json, os, socket, stat

A_ID = {a_id!r}
A_HOST_SOCKET = {a_host_socket!r}

def connect(path):
    s = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    s.settimeout(5)
    try:
        s.connect(path)
        return "connected"
    except OSError as e:
        return errno.errorcode.get(e.errno, str(e.errno))
    finally:
        s.close()

sockets = []
for root, dirs, files in os.walk("/"):
    if root in ("/proc", "/sys", "/dev"):
        dirs[:] = []
        continue
    for name in files + dirs:
        p = os.path.join(root, name)
        try:
            if stat.S_ISSOCK(os.lstat(p).st_mode):
                sockets.append(p)
        except OSError:
            pass

# Unix sockets bound in this network namespace (path column), as the kernel lists them.
bound = sorted({line.split()[-1] for line in open("/proc/net/unix").read().splitlines()[1:]
                if len(line.split()) >= 8 and line.split()[-1].startswith("/")})

candidates = [A_HOST_SOCKET, "/run/code-executor/" + A_ID + "/proxy.sock", "/run/mcp/../" + A_ID + "/proxy.sock",
              "/run/code-executor/proxy.sock"]
candidates += glob.glob("/run/code-executor/*/proxy.sock") + glob.glob("/run/*/*.sock") + glob.glob("/tmp/**/*.sock", recursive=True)
others = {p: connect(p) for p in candidates if os.path.realpath(p) != "/run/mcp/proxy.sock"}

st = os.stat("/run/mcp/proxy.sock")
r = await call_mcp_tool("mcp__time__get_current_time", {"timezone": "Etc/UTC"})
print(json.dumps({"sockets": sorted(sockets), "bound": bound, "others": others,
                  "run": sorted(os.listdir("/run")), "run_mcp": sorted(os.listdir("/run/mcp")),
                  "ino": [st.st_dev, st.st_ino], "own": connect("/run/mcp/proxy.sock"), "tz": r["timezone"]}))
"""


def test_an_execution_cannot_reach_another_executions_socket(tools_server):
    base: Path = tools_server.socket_base
    mark = marker()
    code_a = ISOLATION_A.replace("{mark}", mark)

    async def go(session):
        task_a = asyncio.create_task(execute(session, "python", code_a, allowedTools=["mcp__time__*"]))
        deadline = time.monotonic() + 60
        while not saw_output(tools_server, mark):
            assert not task_a.done(), f"A ended before its mark: {task_a.result()!r}"
            assert time.monotonic() < deadline, "A printed no mark"
            await asyncio.sleep(0.02)
        a_facts = stdout_json_with(tools_server, "host")
        a_inspect = json.loads(await asyncio.to_thread(docker, "inspect", a_facts["host"]))[0]
        a_id = a_inspect["Config"]["Labels"]["code-executor.execution-id"]
        a_host_socket = base / a_id / "proxy.sock"
        a_socket_existed = a_host_socket.is_socket()
        code_b = ISOLATION_B.replace("{a_id!r}", repr(a_id)).replace("{a_host_socket!r}", repr(str(a_host_socket)))
        r_b = await execute(session, "python", code_b, allowedTools=["mcp__time__*"])
        b_done_while_a_ran = not task_a.done()
        r_a = await task_a
        return r_a, r_b, a_id, a_host_socket, a_socket_existed, b_done_while_a_ran

    tools_server.logs.clear()
    r_a, r_b, a_id, a_host_socket, a_socket_existed, overlapped = tools_server.run(go)
    assert_ok(r_a)
    assert_ok(r_b)
    assert r_a["executionId"] == a_id, (r_a, a_id)
    assert a_socket_existed, f"A's socket {a_host_socket} did not exist on the host while A ran"
    assert overlapped, "B finished after A: the executions did not overlap"
    a = last_json_line_with(r_a, "host")
    b = last_json(r_b)
    print(f"\nA: {a}\nB: {b}")
    assert a["run_mcp"] == ["proxy.sock"] and b["run_mcp"] == ["proxy.sock"], (a, b)
    assert a["ino"] != b["ino"], f"A and B see the same socket: {a['ino']}"
    assert b["own"] == "connected" and b["tz"] == "Etc/UTC", b
    assert b["sockets"] == ["/run/mcp/proxy.sock"], b["sockets"]
    assert set(b["bound"]) <= {"/run/mcp/proxy.sock"}, b["bound"]  # nothing else bound in B's namespace
    assert "code-executor" not in b["run"], b["run"]
    assert b["others"], b
    for path, outcome in b["others"].items():
        assert outcome in ("ENOENT", "ENOTDIR"), (path, outcome)
    # A's socket directory is removed once A has ended.
    gone = wait_until(lambda: not a_host_socket.parent.exists(), 10)
    assert gone, f"{a_host_socket.parent} still exists after A ended"


# ------------------------------------------------------------------------- failures


@pytest.mark.parametrize("language", ["python", "typescript"])
def test_slow_tool_times_out_with_504(tools_server, language):
    if language == "python":
        code = (
            "import json, time\n"
            "t0 = time.perf_counter()\n"
            "try:\n"
            "    await call_mcp_tool('mcp__web__slow', {'seconds': 3})\n"
            "    out = {'raised': None}\n"
            "except ToolFailed as e:\n"
            "    out = {'raised': type(e).__name__, 'status': e.status, 'message': e.message}\n"
            "out['elapsed'] = time.perf_counter() - t0\n"
            "out['after'] = await call_mcp_tool('mcp__web__echo', {'text': 'ok', 'count': 1})\n"
            "print(json.dumps(out))\n"
        )
    else:
        code = (
            "const t0 = performance.now();\n"
            "let out: any;\n"
            "try {\n"
            "  await callMCPTool('mcp__web__slow', { seconds: 3 });\n"
            "  out = { raised: null };\n"
            "} catch (e) {\n"
            "  if (!(e instanceof ToolFailed)) throw e;\n"
            "  out = { raised: e.name, status: e.status, message: e.message };\n"
            "}\n"
            "out.elapsed = (performance.now() - t0) / 1000;\n"
            "out.after = await callMCPTool('mcp__web__echo', { text: 'ok', count: 1 });\n"
            "console.log(JSON.stringify(out));\n"
        )
    r = tools_server.execute(language, code, allowedTools=["mcp__web__slow", "mcp__web__echo"])
    assert_ok(r)
    out = last_json(r)
    print(f"\n{language} slow tool: {out}")
    assert out["raised"] == "ToolFailed" and out["status"] == 504, out
    assert "timed out" in out["message"] and "mcp__web__slow" in out["message"], out
    assert WEB_TIMEOUT_MS / 1000 * 0.9 <= out["elapsed"] < 2.5, out  # the server's 1 s, not the tool's 3 s
    assert out["after"] == {"text": "ok", "count": 1}, out  # the downstream still answers
    assert_summary(r, {"mcp__web__slow": (1, 1), "mcp__web__echo": (1, 0)})


KILL_TIME_CODE = """
import json, time
first = await call_mcp_tool("mcp__time__get_current_time", {"timezone": "Europe/Paris"})
print(json.dumps({"first": first["timezone"]}))
print("{mark}", flush=True)
time.sleep(4)  # the test kills mcp-server-time now
try:
    second = await call_mcp_tool("mcp__time__get_current_time", {"timezone": "Europe/Paris"})
    out = {"raised": None, "tz": second["timezone"]}
except ToolFailed as e:
    out = {"raised": type(e).__name__, "status": e.status, "message": e.message}
print(json.dumps(out))
"""

KILL_SLEEPY_CODE = """
import json, time
print("{mark}", flush=True)
t0 = time.perf_counter()
try:
    await call_mcp_tool("mcp__sleepy__slow", {"seconds": 20})
    out = {"raised": None}
except ToolFailed as e:
    out = {"raised": type(e).__name__, "status": e.status, "message": e.message}
out["elapsed"] = time.perf_counter() - t0
try:
    out["after"] = await call_mcp_tool("mcp__sleepy__echo", {"text": "back", "count": 1})
except ToolFailed as e:
    out["after"] = {"raised": type(e).__name__, "status": e.status, "message": e.message}
print(json.dumps(out))
"""


def test_killed_downstream_gives_502_and_the_next_execution_works(make_server, tmp_path):
    config = write_mcp_config(tmp_path / "mcp.json", {"time": time_entry(), "sleepy": stdio_support_entry()})
    base = new_socket_base()
    srv = make_server({"MCP_CONFIG_PATH": str(config), "CODE_EXECUTOR_SOCKET_BASE": str(base)})
    try:
        wait_downstreams_ready(srv, {"time", "sleepy"})
        allowed = ["mcp__time__*", "mcp__sleepy__*"]

        # 1. mcp-server-time killed between two calls of one execution.
        time_pid = find_descendant(srv.pid, "mcp-server-time")
        assert time_pid, f"no mcp-server-time child of {srv.pid}"
        mark = marker()
        killed: list[bool] = []

        def kill_time() -> None:
            killed.append(kill_and_reap_wait(time_pid))

        r, _, took = srv.run(lambda s: run_during(srv, s, "python", KILL_TIME_CODE.replace("{mark}", mark), mark,
                                                  kill_time, allowedTools=allowed))
        assert killed == [True] and took < 3, (killed, took)  # killed well inside the code's 4 s sleep
        assert_ok(r)
        out = last_json(r)
        print(f"\ncall after mcp-server-time was killed: {out}")
        if out["raised"] is not None:
            assert out["raised"] == "ToolFailed" and out["status"] == 502, out
            assert "time" in out["message"], out
        else:
            assert out["tz"] == "Europe/Paris", out  # restarted on use
        # 2. The next execution works, with a new mcp-server-time.
        code = f"print((await call_mcp_tool({TIME_TOOL!r}, {{'timezone': 'Europe/Paris'}}))['timezone'])"
        r2 = srv.execute("python", code, allowedTools=allowed)
        assert_ok(r2)
        assert r2["output"] == "Europe/Paris\n", r2
        new_pid = find_descendant(srv.pid, "mcp-server-time")
        assert new_pid and new_pid != time_pid, (time_pid, new_pid)

        # 3. A stdio server killed while a call is in flight: deterministically 502.
        sleepy_pid = find_descendant(srv.pid, "downstream_server.py")
        assert sleepy_pid, f"no downstream_server.py child of {srv.pid}"
        mark = marker()

        def kill_sleepy() -> bool:
            time.sleep(1.5)  # the call is in flight (the tool sleeps 20 s)
            return kill_and_reap_wait(sleepy_pid)

        r3, was_killed, _ = srv.run(
            lambda s: run_during(srv, s, "python", KILL_SLEEPY_CODE.replace("{mark}", mark), mark, kill_sleepy,
                                 allowedTools=allowed)
        )
        assert was_killed
        assert_ok(r3)
        out = last_json(r3)
        print(f"call in flight when its server was killed: {out}")
        assert out["raised"] == "ToolFailed" and out["status"] == 502, out
        assert "sleepy" in out["message"], out
        assert out["elapsed"] < 10, out  # answered when the server died, not after the tool's 20 s
        after = out["after"]
        assert after == {"text": "back", "count": 1} or (after.get("raised") == "ToolFailed" and after["status"] == 502), out
        # 4. And the next execution reaches the restarted server.
        code = "print((await call_mcp_tool('mcp__sleepy__echo', {'text': 'again', 'count': 2}))['text'])"
        r4 = srv.execute("python", code, allowedTools=allowed)
        assert_ok(r4)
        assert r4["output"] == "againagain\n", r4
        states = downstream_states(srv)
        assert states["time"]["status"] == "ready" and states["sleepy"]["status"] == "ready", states
    finally:
        srv.stop()
        shutil.rmtree(base, ignore_errors=True)


# ------------------------------------------------------------------------- volume and health


HUNDRED_CALLS = """
import json, time
lat = []
for i in range(100):
    t0 = time.perf_counter()
    r = await call_mcp_tool("mcp__time__get_current_time", {"timezone": "Europe/Paris"})
    lat.append((time.perf_counter() - t0) * 1000)
    assert r["timezone"] == "Europe/Paris", r
lat.sort()
print(json.dumps({"n": len(lat), "p50_ms": round(lat[49], 2), "p95_ms": round(lat[94], 2), "max_ms": round(lat[-1], 2)}))
"""


def test_hundred_sequential_calls_in_one_execution(tools_server):
    r = tools_server.execute("python", HUNDRED_CALLS, allowedTools=[TIME_TOOL])
    assert_ok(r)
    out = last_json(r)
    assert out["n"] == 100, out
    print(f"\n100 sequential in-sandbox calls to {TIME_TOOL}: p50 {out['p50_ms']} ms, p95 {out['p95_ms']} ms, "
          f"max {out['max_ms']} ms")
    assert_summary(r, {TIME_TOOL: (100, 0)})


def test_health_lists_each_downstream_ready_with_its_tool_count(tools_server, direct_tools):
    states = downstream_states(tools_server)
    assert set(states) == {"time", "git", "web"}, states
    expected = {"time": len(direct_tools["time"]), "git": len(direct_tools["git"]), "web": 3}
    for name, count in expected.items():
        s = states[name]
        assert s["status"] == "ready", s
        assert s["toolCount"] == count, (s, count)
        assert s.get("error") is None, s
