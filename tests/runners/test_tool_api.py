"""Tests of the in-sandbox tool API of both runners against a fake tool proxy.

The runners run as host subprocesses (as in test_runners.py); the fake proxy
(fake_proxy.py) serves HTTP/1.1 on a temporary Unix socket in this process, and the
runners are pointed at it with CODE_EXECUTOR_PROXY_SOCKET (Deno: plus the permission
flags of the image's entrypoint, naming the temporary socket, and
--allow-env=CODE_EXECUTOR_PROXY_SOCKET).

    DENO_BIN=/path/to/deno python3 -m pytest tests/runners -q
"""

import json
import os
import re
import sys
import time
from pathlib import Path

import pytest

sys.path.insert(0, str(Path(__file__).resolve().parent))  # also under --import-mode=importlib

from fake_proxy import ERROR_MESSAGE, SLOW_SECONDS, TOOLS, FakeProxy  # noqa: E402
from test_runners import (  # noqa: E402
    DENO,
    DENO_FLAGS,
    DENO_RUNNER,
    LANGS,
    PY_RUNNER,
    ROOT,
    TOKEN,
    checked,
    deno_env,
    frame,
    needs_deno,
    run_cmd,
    runner_cmd,
    runner_env,
)

SOCKET_ENV = "CODE_EXECUTOR_PROXY_SOCKET"
IMAGE_SOCKET = "/run/mcp/proxy.sock"


def socket_flags(path):
    """The Deno permissions the image's entrypoint grants, for another socket path."""
    return [f"--allow-read={path}", f"--allow-write={path}", f"--allow-net=unix:{path}"]


@pytest.fixture
def proxy():
    p = FakeProxy(TOKEN)
    yield p
    p.close()


@pytest.fixture
def api(deno_dir):
    """api(lang, code, socket=None, deno_perms=True) -> Outcome, with the runner pointed
    at `socket` (a path; None: the image's default path, which does not exist here)."""

    def _run(lang, code, socket=None, *, deno_perms=True, stdin=b""):
        data, nonce = frame(code, stdin)
        if lang == "python":
            cmd = runner_cmd(lang)
            env = runner_env(lang, deno_dir)
        else:
            perms = []
            if deno_perms:
                perms = socket_flags(socket or IMAGE_SOCKET) + [f"--allow-env={SOCKET_ENV}"]
            cmd = [DENO, *DENO_FLAGS, *perms, str(DENO_RUNNER)]
            env = deno_env(deno_dir)
        if socket is not None:
            env[SOCKET_ENV] = socket
        # checked: includes that the token never appears in the output
        return checked(run_cmd(cmd, data, env), nonce)

    return _run


def lines_json(o):
    """The code's output: one JSON document per line."""
    assert o.result["success"] is True, (o.out, o.err)
    return [json.loads(line) for line in o.out.splitlines()]


# --------------------------------------------------------------------------- results

RESULTS = {
    "python": """
import json
for name, args in [
    ("mcp__fake__structured", {"a": 1, "nested": {"b": [1, 2]}}),
    ("mcp__fake__json_text", None),
    ("mcp__fake__plain_text", {}),
    ("mcp__fake__image", {}),
    ("mcp__fake__chunked", {}),
    ("mcp__time__get_current_time", {"timezone": "Europe/Paris"}),
]:
    print(json.dumps(await call_mcp_tool(name, args) if args is not None else await call_mcp_tool(name)))
""",
    "deno": """
for (const [name, args] of [
  ["mcp__fake__structured", { a: 1, nested: { b: [1, 2] } }],
  ["mcp__fake__json_text", undefined],
  ["mcp__fake__plain_text", {}],
  ["mcp__fake__image", {}],
  ["mcp__fake__chunked", {}],
  ["mcp__time__get_current_time", { timezone: "Europe/Paris" }],
] as [string, Record<string, unknown> | undefined][]) {
  console.log(JSON.stringify(args === undefined ? await callMCPTool(name) : await callMCPTool(name, args)));
}
""",
}


@pytest.mark.parametrize("lang", LANGS)
def test_call_results_structured_json_text_plain_text(api, proxy, lang):
    structured, json_text, plain, image, chunked, time_ = lines_json(api(lang, RESULTS[lang], proxy.path))
    # structuredContent wins over the text blocks
    assert structured == {"answer": 42, "args": {"a": 1, "nested": {"b": [1, 2]}}}
    # text that is JSON comes back parsed; no arguments are sent as {}
    assert json_text == {"items": [1, 2, 3], "echo": {}}
    # plain text: the text blocks joined with "\n" (the image block in between is skipped)
    assert plain == "hello\nworld: not JSON"
    # only non-text blocks: the blocks themselves
    assert image == [{"type": "image", "data": "AAAA", "mimeType": "image/png"}]
    # a chunked response body is decoded
    assert chunked == "x" * 5000 + "END"
    assert time_ == {"timezone": "Europe/Paris", "datetime": "2026-01-01T00:00:00"}
    calls = proxy.calls()
    assert [c["json"] for c in calls] == [
        {"name": "mcp__fake__structured", "arguments": {"a": 1, "nested": {"b": [1, 2]}}},
        {"name": "mcp__fake__json_text", "arguments": {}},
        {"name": "mcp__fake__plain_text", "arguments": {}},
        {"name": "mcp__fake__image", "arguments": {}},
        {"name": "mcp__fake__chunked", "arguments": {}},
        {"name": "mcp__time__get_current_time", "arguments": {"timezone": "Europe/Paris"}},
    ]
    for c in calls:
        assert c["path"] == "/v1/tools/call"
        assert c["auth"] == f"Bearer {TOKEN}"  # the request's token, as a bearer token
        assert c["connection"] == "close"


# --------------------------------------------------------------------------- errors

STATUSES = [400, 403, 404, 413, 422, 429, 500, 502, 504]
EXPECTED_CLASS = {
    400: "InvalidArguments",
    403: "ToolNotAllowed",
    404: "ToolNotFound",
    413: "InvalidArguments",
    422: "InvalidArguments",
    429: "RateLimited",
    500: "ToolFailed",
    502: "ToolFailed",
    504: "ToolFailed",
}

ERRORS = {
    "python": """
import json
for name in NAMES:
    try:
        await call_mcp_tool(name, {"x": 1})
        print(json.dumps({"name": name, "raised": None}))
    except McpToolError as e:
        print(json.dumps({"name": name, "cls": type(e).__name__, "status": e.status,
                          "message": e.message, "str": str(e),
                          "result": getattr(e, "result", None)}))
""",
    "deno": """
for (const name of NAMES) {
  try {
    await callMCPTool(name, { x: 1 });
    console.log(JSON.stringify({ name, raised: null }));
  } catch (e) {
    if (!(e instanceof McpToolError)) throw e;
    console.log(JSON.stringify({ name, cls: e.name, ctor: e.constructor.name, status: e.status,
      message: e.message, isError: e instanceof Error, result: (e as any).result ?? null }));
  }
}
""",
}


@pytest.mark.parametrize("lang", LANGS)
def test_each_status_raises_its_error_class_with_the_message(api, proxy, lang):
    names = [f"mcp__err__{s}" for s in STATUSES] + ["mcp__fake__is_error", "mcp__nope__unknown", "mcp__other__read_file"]
    code = ERRORS[lang].replace("NAMES", json.dumps(names))
    got = {d["name"]: d for d in lines_json(api(lang, code, proxy.path))}
    for status in STATUSES:
        d = got[f"mcp__err__{status}"]
        assert d["cls"] == EXPECTED_CLASS[status], d
        assert d["status"] == status
        assert d["message"] == ERROR_MESSAGE.format(status=status)  # the proxy's text, verbatim
        if lang == "python":
            assert d["str"] == d["message"]
        else:
            assert d["ctor"] == d["cls"] and d["isError"] is True
    # isError: ToolFailed carrying the tool's text, status 200 and the raw result
    d = got["mcp__fake__is_error"]
    assert (d["cls"], d["status"], d["message"]) == ("ToolFailed", 200, "disk on fire")
    assert d["result"]["isError"] is True
    # the fake's real-looking 404 and 403 messages
    assert got["mcp__nope__unknown"]["cls"] == "ToolNotFound"
    assert "unknown tool" in got["mcp__nope__unknown"]["message"]
    assert got["mcp__other__read_file"]["cls"] == "ToolNotAllowed"
    assert "allowedTools is" in got["mcp__other__read_file"]["message"]


HIERARCHY = {
    "python": """
import json
names = ["McpToolError", "ToolNotAllowed", "ToolNotFound", "InvalidArguments", "RateLimited", "ToolFailed"]
print(json.dumps([[n, issubclass(globals()[n], McpToolError), issubclass(globals()[n], Exception),
                   globals()[n]("m").status] for n in names]))
""",
    "deno": """
const names = ["McpToolError", "ToolNotAllowed", "ToolNotFound", "InvalidArguments", "RateLimited", "ToolFailed"];
const g = globalThis as any;
console.log(JSON.stringify(names.map((n) => [n, new g[n]("m") instanceof McpToolError, new g[n]("m") instanceof Error, new g[n]("m").status])));
""",
}


@pytest.mark.parametrize("lang", LANGS)
def test_error_classes_are_globals_with_default_statuses(api, lang):
    (rows,) = lines_json(api(lang, HIERARCHY[lang]))
    assert rows == [
        ["McpToolError", True, True, 0],
        ["ToolNotAllowed", True, True, 403],
        ["ToolNotFound", True, True, 404],
        ["InvalidArguments", True, True, 422],
        ["RateLimited", True, True, 429],
        ["ToolFailed", True, True, 502],
    ]


UNCAUGHT = {
    "python": 'print("before")\nawait call_mcp_tool("mcp__other__read_file", {})\nprint("not reached")\n',
    "deno": 'console.log("before");\nawait callMCPTool("mcp__other__read_file", {});\nconsole.log("not reached");\n',
}


@pytest.mark.parametrize("lang", LANGS)
def test_uncaught_tool_error_is_reported_with_user_frames_only(api, proxy, lang):
    o = api(lang, UNCAUGHT[lang], proxy.path)
    assert o.rc == 1 and o.stdout == b"before\n"
    err = o.result["error"]
    assert err["type"] == "ToolNotAllowed"
    assert err["message"].startswith('tool "mcp__other__read_file" is not allowed')
    tb = err["traceback"]
    assert "runner" not in tb and "runner" not in o.err
    if lang == "python":
        assert re.findall(r'^  File "([^"]*)", line (\d+)', tb, re.M) == [("<code>", "2")]
        assert tb.rstrip().endswith("ToolNotAllowed: " + err["message"])
    else:
        assert "<code>:2:1" in tb


WRONG_TOKEN = {
    "python": """
import json
try:
    await call_mcp_tool("mcp__fake__structured", {})
except McpToolError as e:
    print(json.dumps([type(e).__name__, e.status, e.message]))
""",
    "deno": """
try {
  await callMCPTool("mcp__fake__structured", {});
} catch (e) {
  console.log(JSON.stringify([e.name, e.status, e.message]));
}
""",
}


@pytest.mark.parametrize("lang", LANGS)
def test_wrong_token_gives_401_as_the_base_error(api, lang):
    other = FakeProxy("0" * 64)  # expects another token than the runner was given
    try:
        (got,) = lines_json(api(lang, WRONG_TOKEN[lang], other.path))
        assert got == ["McpToolError", 401, "missing or wrong bearer token"]
        assert [r["auth"] for r in other.requests] == [f"Bearer {TOKEN}"]
    finally:
        other.close()


TOKEN_HIDDEN = {
    "python": """
import json, sys
found = [k for k, v in globals().items() if isinstance(v, str) and len(v) == 64]
print(json.dumps([found, "token" in globals(), any("TOKEN" in k.upper() for k in globals()),
                  sorted(k for k in globals() if not k.startswith("__"))]))
""",
    "deno": """
const g = globalThis as any;
const found = Object.getOwnPropertyNames(g).filter((k) => { try { return typeof g[k] === "string" && g[k].length === 64; } catch { return false; } });
const api = ["callMCPTool", "discoverMCPTools", "getToolSchema", "searchTools", "McpToolError", "ToolNotAllowed", "ToolNotFound", "InvalidArguments", "RateLimited", "ToolFailed"];
console.log(JSON.stringify([found, Object.getOwnPropertyNames(g).some((k) => /token/i.test(k)), api.filter((k) => typeof g[k] !== "function"), Object.keys(g).filter((k) => api.includes(k))]));
""",
}


@pytest.mark.parametrize("lang", LANGS)
def test_token_is_in_no_global(api, lang):
    (got,) = lines_json(api(lang, TOKEN_HIDDEN[lang]))
    if lang == "python":
        found, has_token, token_named, names = got
        assert names == sorted(
            ["call_mcp_tool", "call_mcp_tool_sync", "discover_mcp_tools", "get_tool_schema", "search_tools",
             "McpToolError", "ToolNotAllowed", "ToolNotFound", "InvalidArguments", "RateLimited", "ToolFailed",
             "json", "sys", "found"]
        )
    else:
        found, token_named, missing, enumerable = got
        assert missing == []  # every API name is a global function / class
        assert enumerable == []  # and not enumerable (does not show in Object.keys)
    assert found == [] and not token_named


# --------------------------------------------------------------------------- discovery

DISCOVERY = {
    "python": """
import json
def names(tools):
    return [t["name"] for t in tools]
print(json.dumps(names(await discover_mcp_tools())))
print(json.dumps(names(await discover_mcp_tools("current time"))))
print(json.dumps(names(await discover_mcp_tools(["slow", "chunked"]))))
print(json.dumps(names(await discover_mcp_tools(search_terms=["slow"]))))
print(json.dumps(names(await search_tools("fake", 3))))
print(json.dumps(names(await search_tools("fake"))))
print(json.dumps(names(await search_tools("timezone image", 5))))
print(json.dumps(names(await search_tools("no-such-word"))))
print(json.dumps(await get_tool_schema("mcp__fake__slow")))
print(json.dumps(await get_tool_schema("mcp__nope__x y")))
""",
    "deno": """
const names = (tools: { name: string }[]) => tools.map((t) => t.name);
console.log(JSON.stringify(names(await discoverMCPTools())));
console.log(JSON.stringify(names(await discoverMCPTools({ search: "current time" }))));
console.log(JSON.stringify(names(await discoverMCPTools({ search: ["slow", "chunked"] }))));
console.log(JSON.stringify(names(await discoverMCPTools("slow"))));
console.log(JSON.stringify(names(await searchTools("fake", 3))));
console.log(JSON.stringify(names(await searchTools("fake"))));
console.log(JSON.stringify(names(await searchTools("timezone image", 5))));
console.log(JSON.stringify(names(await searchTools("no-such-word"))));
console.log(JSON.stringify(await getToolSchema("mcp__fake__slow")));
console.log(JSON.stringify(await getToolSchema("mcp__nope__x y")));
""",
}


@pytest.mark.parametrize("lang", LANGS)
def test_discover_search_and_get_tool_schema(api, proxy, lang):
    (all_, time_, either, slow, fake3, fake10, fallback, none, schema, missing) = lines_json(
        api(lang, DISCOVERY[lang], proxy.path)
    )
    assert all_ == [t["name"] for t in TOOLS]
    assert time_ == ["mcp__time__get_current_time"]
    assert either == ["mcp__fake__slow", "mcp__fake__chunked"]  # a list: any keyword
    assert slow == ["mcp__fake__slow"]
    assert fake3 == [t["name"] for t in TOOLS if "fake" in t["name"]][:3]
    assert len(fake10) == 8  # default limit 10, 8 tools match
    # no tool matches both words: the union, ranked by words matched
    assert sorted(fallback) == ["mcp__fake__image", "mcp__fake__plain_text", "mcp__time__get_current_time"]
    assert none == []
    assert schema == next(t for t in TOOLS if t["name"] == "mcp__fake__slow")
    assert schema["inputSchema"]["required"] == ["i"]
    assert missing is None  # unknown tool: None / null, as in the original
    paths = [r["path"] for r in proxy.requests]
    assert "/v1/tools" in paths
    assert "/v1/tools?q=current%20time" in paths  # percent-encoded, words kept together
    assert "/v1/tools?q=fake&limit=3" in paths and "/v1/tools?q=fake&limit=10" in paths
    assert "/v1/tools/mcp__nope__x%20y" in paths
    assert all(r["auth"] == f"Bearer {TOKEN}" and r["method"] == "GET" for r in proxy.requests)


# --------------------------------------------------------------------------- concurrency

GATHER = {
    "python": """
import asyncio, json, time
t0 = time.perf_counter()
results = await asyncio.gather(*(call_mcp_tool("mcp__fake__slow", {"i": i}) for i in range(5)))
print(json.dumps([results, time.perf_counter() - t0]))
""",
    "deno": """
const t0 = performance.now();
const results = await Promise.all([0, 1, 2, 3, 4].map((i) => callMCPTool("mcp__fake__slow", { i })));
console.log(JSON.stringify([results, (performance.now() - t0) / 1000]));
""",
}


@pytest.mark.parametrize("lang", LANGS)
def test_concurrent_calls_overlap(api, proxy, lang):
    ((results, elapsed),) = lines_json(api(lang, GATHER[lang], proxy.path))
    assert results == [{"i": i} for i in range(5)]
    assert SLOW_SECONDS <= elapsed < 1.0, elapsed  # sequential would be 5 x 0.3 s
    calls = proxy.calls()
    assert len(calls) == 5
    # every call started before any finished: all five were in flight together
    assert max(c["t0"] for c in calls) < min(c["t1"] for c in calls)


SEQUENTIAL = {
    "python": """
n = 0
for i in range(60):
    n += (await call_mcp_tool("mcp__fake__slow" if i == 0 else "mcp__fake__structured", {"i": i}))["args" if i else "i"] is not None
print(n)
""",
    "deno": """
let n = 0;
for (let i = 0; i < 60; i++) {
  const r = await callMCPTool(i === 0 ? "mcp__fake__slow" : "mcp__fake__structured", { i });
  if ((i ? r.args : r.i) !== undefined) n++;
}
console.log(n);
""",
}


@pytest.mark.parametrize("lang", LANGS)
def test_many_sequential_calls(api, proxy, lang):
    o = api(lang, SEQUENTIAL[lang], proxy.path)
    assert o.result["success"] is True, o.err
    assert o.stdout == b"60\n"
    assert len(proxy.calls()) == 60


# --------------------------------------------------------------------------- no proxy

NO_PROXY = {
    "python": 'await call_mcp_tool("mcp__fake__structured", {})\n',
    "deno": 'await callMCPTool("mcp__fake__structured", {});\n',
}


@pytest.mark.parametrize("lang", LANGS)
def test_no_socket_is_a_clear_error(api, lang, tmp_path):
    missing = f"/tmp/ce-no-proxy-{os.getpid()}.sock"
    o = api(lang, NO_PROXY[lang], missing)
    assert o.rc == 1
    err = o.result["error"]
    assert err["type"] == "McpToolError"
    assert err["message"] == (
        f"cannot reach the MCP tool proxy at {missing} (the socket does not exist: this execution has no tool proxy)"
    )


@pytest.mark.parametrize("lang", LANGS)
def test_default_socket_path_when_no_override(api, lang):
    # No CODE_EXECUTOR_PROXY_SOCKET: the image's path, which does not exist on the host.
    if os.path.exists(IMAGE_SOCKET):
        pytest.skip(f"{IMAGE_SOCKET} exists on this host")
    o = api(lang, NO_PROXY[lang])
    assert o.result["error"]["type"] == "McpToolError"
    assert f"cannot reach the MCP tool proxy at {IMAGE_SOCKET}" in o.result["error"]["message"]


@needs_deno
def test_deno_without_socket_permission_is_a_clear_error(api, proxy):
    o = api("deno", NO_PROXY["deno"], proxy.path, deno_perms=False)
    err = o.result["error"]
    # without --allow-env the override cannot be read either: the image's path is named
    assert err["type"] == "McpToolError"
    assert "no permission to connect" in err["message"]
    assert f"--allow-net=unix:{IMAGE_SOCKET}" in err["message"]
    assert proxy.requests == []


# --------------------------------------------------------------------------- Python only


def test_python_sync_variant_in_a_plain_script(api, proxy):
    code = (
        "import json\n"
        "print(json.dumps(call_mcp_tool_sync('mcp__fake__structured', {'s': 1})))\n"
        "print(json.dumps(call_mcp_tool_sync('mcp__fake__json_text')))\n"
        "try:\n"
        "    call_mcp_tool_sync('mcp__err__429', {})\n"
        "except RateLimited as e:\n"
        "    print(json.dumps([e.status, e.message]))\n"
        "import sys\n"
        "print(json.dumps('asyncio' in sys.modules))\n"
    )
    structured, text, limited, asyncio_loaded = lines_json(api("python", code, proxy.path))
    assert structured == {"answer": 42, "args": {"s": 1}}
    assert text == {"items": [1, 2, 3], "echo": {}}
    assert limited == [429, ERROR_MESSAGE.format(status=429)]
    assert asyncio_loaded is False  # a plain script's calls need no event loop
    assert [c["auth"] for c in proxy.calls()] == [f"Bearer {TOKEN}"] * 3


def test_python_sync_variant_inside_async_code(api, proxy):
    code = "import asyncio\nawait asyncio.sleep(0)\nprint(call_mcp_tool_sync('mcp__fake__structured')['answer'])\n"
    o = api("python", code, proxy.path)
    assert o.stdout == b"42\n"


def test_python_bad_arguments_fail_before_sending(api, proxy):
    code = (
        "import json, datetime\n"
        "for args in ([1, 2], {'when': datetime.date(2020, 1, 1)}, {'x': float('nan')}):\n"
        "    try:\n"
        "        call_mcp_tool_sync('mcp__fake__structured', args)\n"
        "    except InvalidArguments as e:\n"
        "        print(json.dumps([e.status, e.message]))\n"
        "try:\n"
        "    await call_mcp_tool(42)\n"
        "except TypeError as e:\n"
        "    print(json.dumps(str(e)))\n"
    )
    not_dict, not_json, nan, bad_name = lines_json(api("python", code, proxy.path))
    assert not_dict == [0, "arguments must be a dict (a JSON object) or None, got list"]
    assert not_json[0] == 0 and not_json[1].startswith("arguments are not JSON-serializable")
    assert nan[0] == 0
    assert bad_name == "tool name must be a str, got int"
    assert proxy.requests == []


def test_python_api_costs_nothing_before_the_first_call(api, proxy):
    code = (
        "import sys\n"
        "before = sorted(m for m in ('asyncio', 'socket', 'json', 'selectors') if m in sys.modules)\n"
        "print(before)\n"
        "call_mcp_tool_sync('mcp__fake__structured')\n"
        "print('socket' in sys.modules)\n"
    )
    o = api("python", code, proxy.path)
    assert o.stdout == b"[]\nTrue\n"


def test_python_api_functions_look_like_plain_functions(api):
    code = (
        "import inspect\n"
        "for f in (call_mcp_tool, discover_mcp_tools, get_tool_schema, search_tools):\n"
        "    assert inspect.iscoroutinefunction(f), f\n"
        "assert not inspect.iscoroutinefunction(call_mcp_tool_sync)\n"
        "print(inspect.signature(call_mcp_tool), inspect.signature(search_tools), call_mcp_tool.__qualname__)\n"
        "print(call_mcp_tool.__doc__.splitlines()[0])\n"
    )
    o = api("python", code)
    assert o.out.splitlines() == [
        "(name, arguments=None) (query, limit=10) call_mcp_tool",
        'Call an MCP tool: `await call_mcp_tool("mcp__time__get_current_time",',
    ]


# --------------------------------------------------------------------------- Deno only


@needs_deno
def test_deno_socket_permission_grants_nothing_else(api, proxy, tmp_path):
    other = tmp_path / "other.sock"
    code = (
        "const tries: [string, () => Promise<unknown>][] = [\n"
        "  ['read_passwd', () => Deno.readTextFile('/etc/passwd')],\n"
        f"  ['read_socket_dir', async () => {{ for await (const e of Deno.readDir({json.dumps(os.path.dirname(proxy.path))})) {{}} }}],\n"
        f"  ['write_next_to_socket', () => Deno.writeTextFile({json.dumps(proxy.path + '.x')}, 'x')],\n"
        "  ['write_tmp', () => Deno.writeTextFile('/tmp/ce-tool-api-should-not-exist', 'x')],\n"
        "  ['env_path', async () => Deno.env.get('PATH')],\n"
        "  ['tcp', () => Deno.connect({ hostname: '127.0.0.1', port: 8080 })],\n"
        "  ['fetch', () => fetch('http://127.0.0.1:8080/')],\n"
        f"  ['other_unix', () => Deno.connect({{ transport: 'unix', path: {json.dumps(str(other))} }})],\n"
        "  ['run', () => new Deno.Command('true').output()],\n"
        "  ['import_file', () => import('file:///etc/hostname')],\n"
        "];\n"
        "for (const [name, f] of tries) {\n"
        "  try { await f(); console.log(name, 'ALLOWED'); }\n"
        "  catch (e) { console.log(name, 'denied', (e as Error).name); }\n"
        "}\n"
        "console.log('call', JSON.stringify(await callMCPTool('mcp__fake__structured', {})));\n"
    )
    o = api("deno", code, proxy.path)
    assert o.result["success"] is True, o.err
    lines = o.out.splitlines()
    assert len(lines) == 11, o.out
    for line in lines[:-2]:
        assert " denied NotCapable" in line, o.out
    assert lines[-2] == "import_file denied TypeError"  # a refused dynamic import
    assert lines[-1] == 'call {"answer":42,"args":{}}'
    assert not os.path.exists(proxy.path + ".x")
    assert not os.path.exists("/tmp/ce-tool-api-should-not-exist")


def test_deno_image_entrypoint_grants_exactly_the_socket():
    text = (ROOT / "images" / "deno" / "Dockerfile").read_text()
    (line,) = [l for l in text.splitlines() if l.startswith("ENTRYPOINT")]
    argv = json.loads(line[len("ENTRYPOINT"):])
    perms = [a for a in argv if a.startswith("--allow") or a.startswith("-A")]
    assert perms == socket_flags(IMAGE_SOCKET)
    assert argv[-1] == "/opt/code-executor/runner.js"
    # the runner's default socket path is the one granted
    assert f'DEFAULT_PROXY_SOCKET = "{IMAGE_SOCKET}"' in DENO_RUNNER.read_text()
    assert f'_DEFAULT_PROXY_SOCKET = "{IMAGE_SOCKET}"' in PY_RUNNER.read_text()


@needs_deno
def test_deno_api_not_touched_by_code_that_makes_no_call(api):
    # No call, no connection attempt: a program without tool calls needs no permission.
    o = api("deno", 'console.log(typeof callMCPTool, typeof ToolFailed);\n', deno_perms=False)
    assert o.stdout == b"function function\n" and o.result["success"] is True
