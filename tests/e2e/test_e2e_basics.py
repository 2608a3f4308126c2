"""Languages, streams, exit codes, exceptions, await, stdin, validation, health,
concurrency and progress notifications, through one shared server and MCP session."""

from __future__ import annotations

import asyncio
import json
import time

import pytest

from .e2e_client import IMAGES, execute

INVALID_PARAMS = -32602
RUNNER_TRACES = ("runner.py", "runner.js", "/opt/code-executor", "data:application", "base64")


def assert_ok(r, output=None):
    assert r["success"] is True, r
    assert r.is_error is False, r
    assert r["exitCode"] == 0, r
    assert r["error"] is None and r["errorType"] is None, r
    assert r["timedOut"] is False and r["oomKilled"] is False and r["truncated"] is False, r
    if output is not None:
        assert r["output"] == output, r


def assert_no_runner_frames(text: str) -> None:
    for needle in RUNNER_TRACES:
        assert needle not in text, f"runner detail {needle!r} leaked into the user's traceback:\n{text}"


# ------------------------------------------------------------------------- tools


def test_tools_are_listed_with_schemas(server):
    assert {"executePython", "executeTypescript", "health"} <= set(server.tools)
    for name in ("executePython", "executeTypescript"):
        tool = server.tools[name]
        assert "code" in tool.input_schema.get("required", []), tool.input_schema
        props = tool.input_schema["properties"]
        for arg in ("code", "timeoutMs", "memoryMb", "stdin", "allowedTools", "permissions"):
            assert arg in props, (name, arg, props.keys())
        out = tool.output_schema or {}
        for field in ("success", "output", "stderr", "exitCode", "error", "timedOut", "oomKilled",
                      "truncated", "executionTimeMs", "executionId"):
            assert field in out.get("properties", {}), (name, field, out)


# ------------------------------------------------------------------------- hello


def test_hello_python(server):
    r = server.execute("python", 'import sys\nprint("hello from python", sys.version_info[0])')
    assert_ok(r, "hello from python 3\n")
    assert r["stderr"] == ""
    assert r["executionId"] and isinstance(r["executionTimeMs"], int) and r["executionTimeMs"] >= 0
    assert "hello from python 3" in r.text  # the text summary carries the output too


def test_hello_typescript(server):
    # Real TypeScript syntax (annotations, interface): must be transpiled, not run as JS.
    code = (
        "interface Greeting { who: string; n: number }\n"
        "const g: Greeting = { who: 'typescript', n: 42 };\n"
        "console.log(`hello from ${g.who} ${g.n}`);\n"
    )
    r = server.execute("typescript", code)
    assert_ok(r, "hello from typescript 42\n")
    assert r["stderr"] == ""


def test_each_execution_gets_a_fresh_container(server):
    code = (
        "import os, socket\n"
        "p = '/tmp/marker'\n"
        "print(os.path.exists(p), socket.gethostname())\n"
        "open(p, 'w').write('x')\n"
    )
    a = server.execute("python", code)
    b = server.execute("python", code)
    assert_ok(a)
    assert_ok(b)
    assert a["output"].split()[0] == "False" and b["output"].split()[0] == "False", (a, b)
    assert a["output"] != b["output"], "two executions ran in the same container (same hostname)"
    assert a["executionId"] != b["executionId"]


# ------------------------------------------------------------------------- streams, exit codes


def test_stdout_and_stderr_are_kept_apart_python(server):
    code = 'import sys\nprint("to-out")\nprint("to-err", file=sys.stderr)\nprint("out-again")\n'
    r = server.execute("python", code)
    assert_ok(r, "to-out\nout-again\n")
    assert r["stderr"] == "to-err\n", r


def test_stdout_and_stderr_are_kept_apart_typescript(server):
    code = 'console.log("to-out");\nconsole.error("to-err");\nconsole.log("out-again");\n'
    r = server.execute("typescript", code)
    assert_ok(r, "to-out\nout-again\n")
    assert r["stderr"] == "to-err\n", r


@pytest.mark.parametrize(
    "language, code, expected",
    [
        ("python", 'import sys\nprint("before")\nsys.exit(3)\nprint("after")', 3),
        ("typescript", 'console.log("before");\nDeno.exit(4);\nconsole.log("after");', 4),
    ],
)
def test_exit_code_is_reported(server, language, code, expected):
    r = server.execute(language, code)
    assert r["exitCode"] == expected, r
    assert r["success"] is False and r.is_error is True, r
    assert r["output"] == "before\n", r
    assert r["timedOut"] is False and r["oomKilled"] is False, r


# ------------------------------------------------------------------------- exceptions


def test_python_exception_type_message_and_user_traceback(server):
    code = (
        "def inner(x):\n"
        "    raise ValueError(f'bad value {x}')\n"
        "\n"
        "def outer():\n"
        "    inner(42)\n"
        "\n"
        "print('got here')\n"
        "outer()\n"
    )
    r = server.execute("python", code)
    assert r["success"] is False and r.is_error is True, r
    assert r["exitCode"] == 1, r
    assert r["errorType"] == "ValueError", r
    err = r["error"]
    assert "ValueError: bad value 42" in err, r
    assert "<code>" in err and "inner" in err and "outer" in err, r
    assert "line 2" in err and "line 5" in err and "line 8" in err, r
    assert_no_runner_frames(err)
    assert r["output"] == "got here\n", r
    # Python prints the traceback to stderr as it would outside a sandbox, also stripped.
    assert "ValueError: bad value 42" in r["stderr"], r
    assert_no_runner_frames(r["stderr"])


def test_typescript_exception_type_message_and_user_stack(server):
    code = (
        "function inner(x: number): never {\n"
        "  throw new TypeError(`bad ts ${x}`);\n"
        "}\n"
        "function outer() { inner(7); }\n"
        "console.log('got here');\n"
        "outer();\n"
    )
    r = server.execute("typescript", code)
    assert r["success"] is False and r.is_error is True, r
    assert r["exitCode"] == 1, r
    assert r["errorType"] == "TypeError", r
    err = r["error"]
    assert "bad ts 7" in err, r
    assert "inner" in err and "outer" in err and "<code>" in err, r
    assert_no_runner_frames(err)
    assert r["output"] == "got here\n", r
    assert_no_runner_frames(r["stderr"])


@pytest.mark.parametrize(
    "language, code",
    [("python", "def broken(:\n    pass\n"), ("typescript", "const = ;\n")],
)
def test_syntax_error_is_reported(server, language, code):
    r = server.execute(language, code)
    assert r["success"] is False, r
    assert r["errorType"] == "SyntaxError", r
    assert r["output"] == "", r
    assert_no_runner_frames(r["error"])


def test_python_async_exception_traceback_is_user_only(server):
    code = (
        "import asyncio\n"
        "async def boom():\n"
        "    await asyncio.sleep(0)\n"
        "    raise KeyError('missing')\n"
        "await boom()\n"
    )
    r = server.execute("python", code)
    assert r["errorType"] == "KeyError", r
    assert "boom" in r["error"] and "<code>" in r["error"], r
    assert_no_runner_frames(r["error"])
    # asyncio's own frames (the event loop that runs top-level await) are not the user's.
    assert "asyncio/" not in r["error"], r


# ------------------------------------------------------------------------- await, stdin


def test_top_level_await_python(server):
    code = (
        "import asyncio\n"
        "async def answer():\n"
        "    await asyncio.sleep(0.05)\n"
        "    return 6 * 7\n"
        "value = await answer()\n"
        "results = await asyncio.gather(*(answer() for _ in range(3)))\n"
        "print('awaited', value, results)\n"
    )
    assert_ok(server.execute("python", code), "awaited 42 [42, 42, 42]\n")


def test_top_level_await_typescript(server):
    code = (
        "const answer = async (): Promise<number> => {\n"
        "  await new Promise((r) => setTimeout(r, 50));\n"
        "  return 6 * 7;\n"
        "};\n"
        "const value = await answer();\n"
        "console.log('awaited', value);\n"
    )
    assert_ok(server.execute("typescript", code), "awaited 42\n")


STDIN_TEXT = "line one\nline two\nünïcode ✓\n"


def test_stdin_python(server):
    code = "import sys\ndata = sys.stdin.read()\nprint(len(data.splitlines()), data.upper(), end='')\n"
    r = server.execute("python", code, stdin=STDIN_TEXT)
    assert_ok(r, "3 " + STDIN_TEXT.upper())


def test_stdin_typescript(server):
    code = "const text = await new Response(Deno.stdin.readable).text();\nDeno.stdout.writeSync(new TextEncoder().encode(text.toUpperCase()));\n"
    r = server.execute("typescript", code, stdin=STDIN_TEXT)
    assert_ok(r, STDIN_TEXT.upper())


@pytest.mark.parametrize(
    "language, code",
    [
        ("python", "import sys\nprint(repr(sys.stdin.read()))"),
        ("typescript", "console.log(JSON.stringify(await new Response(Deno.stdin.readable).text()));"),
    ],
)
def test_stdin_is_empty_without_argument(server, language, code):
    # Reading stdin must see EOF at once (not hang, not see the runner's request).
    r = server.execute(language, code, timeoutMs=15000)
    assert_ok(r)
    assert r["output"].strip() in ("''", '""'), r


# ------------------------------------------------------------------------- validation


def _assert_invalid_params(server, tool, arguments, must_mention):
    err = server.call_error(tool, arguments)
    assert err.code == INVALID_PARAMS, (err.code, err.message)
    for needle in must_mention:
        assert needle in err.message, f"{needle!r} not in error message {err.message!r}"


@pytest.mark.parametrize("tool", ["executePython", "executeTypescript"])
@pytest.mark.parametrize(
    "arguments, must_mention",
    [
        ({"code": ""}, ["code"]),
        ({"code": "   \n\t"}, ["code"]),
        ({"code": "print(1)", "timeoutMs": 10}, ["timeoutMs"]),
        ({"code": "print(1)", "timeoutMs": 300001}, ["timeoutMs"]),
        ({"code": "print(1)", "memoryMb": 100000}, ["memoryMb"]),
        ({"code": "print(1)", "allowedTools": ["git_status"]}, ["allowedTools", "git_status"]),
        ({"code": "print(1)", "permissions": {"net": ["example.com"]}}, ["permissions.net", "egress.allowed_hosts"]),
        ({"code": "print(1)", "permissions": {"read": ["/etc"]}}, ["permissions.read", "ALLOWED_PROJECTS"]),
    ],
    ids=["empty", "blank", "timeout-low", "timeout-high", "memory-high", "allowedTools",
         "permissions-net", "permissions-read"],
)
def test_invalid_input_is_a_clear_error_naming_the_field(server, tool, arguments, must_mention):
    _assert_invalid_params(server, tool, arguments, must_mention)


@pytest.mark.parametrize("tool", ["executePython", "executeTypescript"])
@pytest.mark.parametrize(
    "arguments, must_mention",
    [({"code": "print(1)", "bogusField": 1}, ["bogusField"]), ({"timeoutMs": 5000}, ["code"])],
    ids=["unknown-field", "missing-code"],
)
def test_malformed_arguments_are_the_same_invalid_params_error(server, tool, arguments, must_mention):
    """Arguments that do not even deserialize (unknown field, missing `code`) must be
    refused the same way as out-of-range values: a JSON-RPC invalid_params error naming
    the field, not a tool result with isError and no structuredContent."""
    _assert_invalid_params(server, tool, arguments, must_mention)


def test_empty_permissions_and_tools_are_accepted(server):
    # Empty lists grant nothing and are fine (a non-empty one is checked above).
    r = server.execute("python", "print('ok')", allowedTools=[], permissions={"read": [], "write": [], "net": []})
    assert_ok(r, "ok\n")


# ------------------------------------------------------------------------- health


def test_health_reports_engine_and_images(server):
    r = server.call("health", {})
    assert r.is_error is False, r
    h = r.sc
    assert h["healthy"] is True, h
    sb = h["sandbox"]
    assert sb["engineReachable"] is True, sb
    assert sb["engineVersion"], sb
    images = {i["image"]: i for i in sb["images"]}
    for image in IMAGES:
        assert images.get(image, {}).get("present") is True, (image, sb["images"])
    assert {i["language"] for i in sb["images"]} == {"python", "typescript"}, sb
    assert isinstance(h["uptimeSecs"], int)


# ------------------------------------------------------------------------- concurrency


def max_overlap(intervals: list[tuple[float, float]]) -> int:
    events = sorted([(a, 1) for a, _ in intervals] + [(b, -1) for _, b in intervals], key=lambda e: (e[0], e[1]))
    best = cur = 0
    for _, step in events:
        cur += step
        best = max(best, cur)
    return best


def test_twenty_concurrent_executions_all_succeed(server):
    # Each execution reports when its code started and ended (the host's clock: containers
    # share it), so the concurrency actually reached is measured, not guessed.
    async def many(session):
        calls = []
        for i in range(20):
            if i % 2:
                code = f"import time\nt0 = time.time()\ntime.sleep(0.8)\nprint('py', {i}, t0, time.time())"
                calls.append(execute(session, "python", code))
            else:
                code = (f"const t0 = Date.now() / 1000;\nawait new Promise((r) => setTimeout(r, 800));\n"
                        f"console.log('ts', {i}, t0, Date.now() / 1000);")
                calls.append(execute(session, "typescript", code))
        t0 = time.monotonic()
        results = await asyncio.gather(*calls, return_exceptions=True)
        return results, time.monotonic() - t0

    results, wall = server.run(many, timeout=180)
    errors = [r for r in results if isinstance(r, BaseException)]
    assert not errors, errors
    intervals = []
    for i, r in enumerate(results):
        assert_ok(r)
        lang, index, start, end = r["output"].split()
        assert (lang, int(index)) == ("py" if i % 2 else "ts", i), r
        intervals.append((float(start), float(end)))
    assert len({r["executionId"] for r in results}) == 20
    # They overlapped: one after the other they would take at least 20 x 0.8 s ...
    assert wall < 20 * 0.8, wall
    # ... but never more than the concurrency cap (8 by default) ran at once.
    assert 1 < max_overlap(intervals) <= 8, (max_overlap(intervals), intervals)


# ------------------------------------------------------------------------- progress


def _progress_recorder():
    events: list[tuple[float, float, str]] = []

    async def on_progress(progress, total, message):  # noqa: ARG001
        events.append((time.monotonic(), progress, message or ""))

    return events, on_progress


PROGRESS_CODE = {
    "python": "import time\nprint('first-chunk', flush=True)\ntime.sleep(1.5)\nprint('second-chunk')\n",
    "typescript": "console.log('first-chunk');\nawait new Promise((r) => setTimeout(r, 1500));\nconsole.log('second-chunk');\n",
}


def test_output_streams_as_progress_and_log_notifications(server):
    async def both(session):
        async def one(language):
            events, on_progress = _progress_recorder()
            raw = await session.call_tool(
                "executePython" if language == "python" else "executeTypescript",
                {"code": PROGRESS_CODE[language]},
                progress_callback=on_progress,
            )
            return raw, events, time.monotonic()

        return await asyncio.gather(one("python"), one("typescript"))

    server.logs.clear()
    for (raw, events, done_at), language in zip(server.run(both), ("python", "typescript")):
        sc = raw.structured_content
        assert sc["success"] is True and sc["output"] == "first-chunk\nsecond-chunk\n", (language, sc)
        firsts = [e for e in events if "first-chunk" in e[2]]
        assert firsts, f"{language}: no progress notification carried the first output: {events}"
        t_first, _, message = firsts[0]
        assert "second-chunk" not in message, (language, message)
        # It arrived while the code was still sleeping, not with the result.
        assert done_at - t_first > 0.8, (language, done_at - t_first, events)
        progress = [e[1] for e in events]
        assert progress == sorted(progress) and len(set(progress)) == len(progress), progress
    texts = [
        (log.level, log.data.get("stream"), log.data.get("text"))
        for log in server.logs
        if isinstance(log.data, dict)
    ]
    assert ("info", "stdout", "first-chunk\n") in texts, texts


def test_stderr_streams_as_warning_log(server):
    server.logs.clear()
    r = server.execute("python", "import sys\nprint('warn-line', file=sys.stderr)")
    assert_ok(r)
    texts = [(log.level, log.data) for log in server.logs]
    assert ("warning", {"stream": "stderr", "text": "warn-line\n"}) in texts, texts


def test_quiet_execution_sends_heartbeat_progress(server):
    async def quiet(session):
        events, on_progress = _progress_recorder()
        raw = await session.call_tool(
            "executePython", {"code": "import time\ntime.sleep(6.5)\nprint('done')"}, progress_callback=on_progress
        )
        return raw, events

    raw, events = server.run(quiet)
    assert raw.structured_content["success"] is True, raw
    assert any("still running" in e[2] for e in events), events


@pytest.mark.filterwarnings("ignore:The logging capability is deprecated")
def test_logging_set_level_filters_log_notifications(make_server):
    srv = make_server()

    async def go(session):
        await session.set_logging_level("error")
        return await execute(session, "python", "import sys\nprint('out-line')\nprint('err-line', file=sys.stderr)")

    r = srv.run(go)
    assert_ok(r, "out-line\n")
    assert not [log for log in srv.logs if json.dumps(log.data).find("-line") >= 0], srv.logs
