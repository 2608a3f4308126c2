"""Tests of the in-container runners (images/python/runner.py, images/deno/runner.js).

They run the runners as plain host subprocesses and speak docs/runner-protocol.md to
them: a length header, the JSON request, then the user's stdin bytes, then EOF.

    python3 -m pytest tests/runners -q

Deno tests need $DENO_BIN or `deno` on PATH, else they are skipped (reason printed).
Overrides: CE_PYTHON (interpreter for runner.py, default: the one running pytest),
CE_PY_RUNNER / CE_DENO_RUNNER (runner files to test instead of the ones in images/).
"""

import ast
import hashlib
import json
import os
import re
import secrets
import shutil
import subprocess
import sys
import time
from dataclasses import dataclass
from pathlib import Path

import pytest


def find_deno():
    """The deno binary to test with: $DENO_BIN, else `deno` on PATH, else None."""
    path = os.environ.get("DENO_BIN")
    if path:
        return path if os.access(path, os.X_OK) else None
    return shutil.which("deno")


DENO_SKIP_REASON = "no deno: set DENO_BIN or put deno on PATH"

ROOT = Path(__file__).resolve().parents[2]
# Overridable to test another copy (e.g. one extracted from a built image).
PY_RUNNER = Path(os.environ.get("CE_PY_RUNNER", ROOT / "images" / "python" / "runner.py"))
DENO_RUNNER = Path(os.environ.get("CE_DENO_RUNNER", ROOT / "images" / "deno" / "runner.js"))
DENO = find_deno()
PYTHON = os.environ.get("CE_PYTHON", sys.executable)  # the interpreter that runs runner.py

# The deno command line the runner's header comment asks for (no --allow-* at all).
DENO_FLAGS = ["run", "--no-prompt", "--no-remote", "--no-npm", "--no-config", "--no-lock", "--no-code-cache"]

RESULT = b"\x1e\x1eCE-RESULT:"
END = b"\x1e\x1eCE-END:"
TOKEN = "f00d" * 16

needs_deno = pytest.mark.skipif(DENO is None, reason=DENO_SKIP_REASON)
LANGS = ["python", pytest.param("deno", marks=needs_deno)]


# --------------------------------------------------------------------------- helpers


def frame(code, stdin=b"", *, nonce=None, sha256=None, token=TOKEN, timeout_ms=30000, **extra):
    """Frame one request as the server does: header, JSON, then raw stdin bytes."""
    nonce = nonce if nonce is not None else secrets.token_hex(16)
    req = {
        "code": code,
        "sha256": sha256 if sha256 is not None else hashlib.sha256(code.encode()).hexdigest(),
        "token": token,
        "nonce": nonce,
        "timeoutMs": timeout_ms,
        **extra,
    }
    body = json.dumps(req).encode("utf-8")
    return str(len(body)).encode() + b"\n" + body + stdin, nonce


@dataclass
class Outcome:
    rc: int
    stdout: bytes  # the code's output: everything before the marker
    stderr: bytes
    result: object  # parsed result JSON, or None when no markers
    nonce: str  # the nonce found in the markers
    raw_stdout: bytes
    raw_stderr: bytes

    @property
    def out(self):
        return self.stdout.decode("utf-8", "replace")

    @property
    def err(self):
        return self.stderr.decode("utf-8", "replace")


def parse_markers(stdout, stderr):
    """Split the outputs at the markers; check that each marker appears once and last."""
    assert stdout.count(RESULT) <= 1 and stderr.count(END) <= 1, (stdout, stderr)
    i = stdout.find(RESULT)
    j = stderr.find(END)
    if i < 0 or j < 0:
        assert i < 0 and j < 0, f"only one marker present:\n{stdout!r}\n{stderr!r}"
        return stdout, stderr, None, None
    m = re.fullmatch(rb"([0-9a-f]*):([^\n]*)\n", stdout[i + len(RESULT):])
    assert m, f"bad result marker line: {stdout[i:]!r}"
    nonce = m.group(1).decode()
    result = json.loads(m.group(2))
    assert stderr[j:] == END + nonce.encode() + b"\n", stderr[j:]
    assert set(result) == {"success", "exitCode", "error"}, result
    if result["error"] is not None:
        assert set(result["error"]) == {"type", "message", "traceback"}, result
    return stdout[:i], stderr[:j], result, nonce


def deno_env(deno_dir):
    return {
        "PATH": os.environ.get("PATH", "/usr/bin:/bin"),
        "DENO_DIR": deno_dir,
        "DENO_NO_UPDATE_CHECK": "1",
        "NO_COLOR": "1",
    }


def runner_cmd(lang):
    if lang == "python":
        return [PYTHON, "-I", str(PY_RUNNER)]
    return [DENO, *DENO_FLAGS, str(DENO_RUNNER)]


def runner_env(lang, deno_dir):
    if lang == "python":
        # No LANG/LC_*: like the container (C locale); the runner must cope.
        return {"PATH": os.environ.get("PATH", "/usr/bin:/bin")}
    return deno_env(deno_dir)


def run_cmd(cmd, data, env, timeout=60):
    """A runner command line run on `data` in /tmp; its Outcome (not checked)."""
    p = subprocess.run(cmd, input=data, capture_output=True, env=env, cwd="/tmp", timeout=timeout)
    out, err, result, nonce = parse_markers(p.stdout, p.stderr)
    return Outcome(p.returncode, out, err, result, nonce, p.stdout, p.stderr)


def run_raw(lang, data, deno_dir, timeout=60):
    return run_cmd(runner_cmd(lang), data, runner_env(lang, deno_dir), timeout)


def checked(o, nonce):
    """`o` after the invariants of every result, and the answer carries the request's nonce."""
    check_consistent(o)
    assert o.nonce == nonce
    return o


def check_consistent(o):
    """Invariants of every marked result, and the token never leaks."""
    assert o.result is not None, f"no markers: rc={o.rc}\n{o.raw_stdout!r}\n{o.raw_stderr!r}"
    assert o.rc == o.result["exitCode"]
    assert o.result["success"] == (o.rc == 0 and o.result["error"] is None)
    assert TOKEN.encode() not in o.raw_stdout + o.raw_stderr


@pytest.fixture
def run(deno_dir):
    def _run(lang, code, stdin=b"", **kw):
        data, nonce = frame(code, stdin, **kw)
        return checked(run_raw(lang, data, deno_dir), nonce)

    return _run


# --------------------------------------------------------------------------- both runners

HELLO = {"python": 'print("hello world")', "deno": 'console.log("hello world")'}


@pytest.mark.parametrize("lang", LANGS)
def test_hello_world(run, lang):
    o = run(lang, HELLO[lang])
    assert o.rc == 0
    assert o.stdout == b"hello world\n"
    assert o.stderr == b""
    assert o.result == {"success": True, "exitCode": 0, "error": None}


STREAMS = {
    "python": 'import sys\nprint("to out")\nprint("to err", file=sys.stderr)\nprint("out again")',
    "deno": 'console.log("to out");\nconsole.error("to err");\nconsole.log("out again");',
}


@pytest.mark.parametrize("lang", LANGS)
def test_stdout_and_stderr_kept_apart(run, lang):
    o = run(lang, STREAMS[lang])
    assert o.stdout == b"to out\nout again\n"
    assert o.stderr == b"to err\n"
    assert o.result["success"] is True


NO_NEWLINE = {
    "python": 'import sys\nsys.stdout.write("out, no newline")\nsys.stderr.write("err, no newline")',
    "deno": 'const e = new TextEncoder();\nDeno.stdout.writeSync(e.encode("out, no newline"));\n'
    'Deno.stderr.writeSync(e.encode("err, no newline"));',
}


@pytest.mark.parametrize("lang", LANGS)
def test_output_without_trailing_newline_precedes_markers(run, lang):
    o = run(lang, NO_NEWLINE[lang])
    assert o.raw_stdout.startswith(b"out, no newline" + RESULT)
    assert o.raw_stderr.startswith(b"err, no newline" + END)
    assert o.stdout == b"out, no newline" and o.stderr == b"err, no newline"


UNICODE = {"python": 'print("h\u00e9llo \u2603 \U0001f600")', "deno": 'console.log("h\u00e9llo \u2603 \U0001f600")'}


@pytest.mark.parametrize("lang", LANGS)
def test_unicode_code_and_output(run, lang):
    o = run(lang, UNICODE[lang])
    assert o.out == "h\u00e9llo \u2603 \U0001f600\n"
    assert o.result["success"] is True


EXITS = {
    "python": [
        ("import sys\nprint('before')\nsys.exit(3)\nprint('after')", 3, b"before\n", b""),
        ("import sys\nsys.exit(0)", 0, b"", b""),
        ("import sys\nsys.exit()", 0, b"", b""),
        ("raise SystemExit(None)", 0, b"", b""),
        ("import sys\nsys.exit(True)", 1, b"", b""),
        ("import sys\nsys.exit(256 + 7)", 7, b"", b""),
        ("import sys\nsys.exit('fatal: gave up')", 1, b"", b"fatal: gave up\n"),
        ("def f():\n    try:\n        raise SystemExit(4)\n    finally:\n        print('cleanup')\nf()", 4, b"cleanup\n", b""),
        ("import asyncio\nawait asyncio.sleep(0)\nraise SystemExit(5)", 5, b"", b""),
    ],
    "deno": [
        ("console.log('before');\nDeno.exit(3);\nconsole.log('after');", 3, b"before\n", b""),
        ("Deno.exit(0);", 0, b"", b""),
        ("Deno.exitCode = 6;\nconsole.log('set');", 6, b"set\n", b""),
        ("async function f(): Promise<void> {\n  await new Promise((r) => setTimeout(r, 10));\n"
         "  Deno.exit(4);\n}\nawait f();\nconsole.log('after');", 4, b"", b""),
        ("import process from 'node:process';\nprocess.exit(5);", 5, b"", b""),
        ("setTimeout(() => Deno.exit(9), 10);\nconsole.log('scheduled');", 9, b"scheduled\n", b""),
    ],
}


@pytest.mark.parametrize(
    "lang,case",
    [("python", c) for c in EXITS["python"]]
    + [pytest.param("deno", c, marks=needs_deno) for c in EXITS["deno"]],
)
def test_exit_codes(run, lang, case):
    code, expected, out, err = case
    o = run(lang, code)
    assert o.rc == expected
    assert o.result["exitCode"] == expected
    assert o.result["error"] is None  # exit is not an error, only a status
    assert o.result["success"] is (expected == 0)
    assert o.stdout == out
    assert o.stderr == err


TLA = {
    "python": "import asyncio\nasync def twice(x):\n    await asyncio.sleep(0.01)\n    return 2 * x\n"
    "print('result', await twice(21))",
    "deno": "interface Box { v: number }\nconst twice = async (b: Box): Promise<number> => {\n"
    "  await new Promise((r) => setTimeout(r, 10));\n  return 2 * b.v;\n};\n"
    "console.log('result', await twice({ v: 21 } as Box));",
}


@pytest.mark.parametrize("lang", LANGS)
def test_top_level_await(run, lang):
    o = run(lang, TLA[lang])
    assert o.stdout == b"result 42\n"
    assert o.result == {"success": True, "exitCode": 0, "error": None}


STDIN_ECHO = {
    # prints the sha256 and length of all stdin bytes, then the bytes themselves in hex
    "python": "import sys, hashlib\ndata = sys.stdin.buffer.read()\n"
    "print(len(data), hashlib.sha256(data).hexdigest())",
    "deno": "const chunks: Uint8Array[] = [];\nfor await (const c of Deno.stdin.readable) chunks.push(c);\n"
    "const all = new Uint8Array(chunks.reduce((n, c) => n + c.length, 0));\nlet off = 0;\n"
    "for (const c of chunks) { all.set(c, off); off += c.length; }\n"
    "const d = new Uint8Array(await crypto.subtle.digest('SHA-256', all));\n"
    "console.log(all.length, Array.from(d, (b) => b.toString(16).padStart(2, '0')).join(''));",
}

STDIN_CASES = {
    "empty": b"",
    "binary": bytes(range(256)) * 3 + b"\x00\xff\r\n",
    "looks_like_a_header": b'12\n{"code":"x"}\n',
    "large": os.urandom(300_000),  # more than a pipe buffer
}


@pytest.mark.parametrize("case", sorted(STDIN_CASES))
@pytest.mark.parametrize("lang", LANGS)
def test_stdin_bytes_reach_the_code_intact(run, lang, case):
    data = STDIN_CASES[case]
    o = run(lang, STDIN_ECHO[lang], data)
    assert o.result["success"] is True, o.err
    assert o.out == f"{len(data)} {hashlib.sha256(data).hexdigest()}\n"


STDIN_TEXT = {
    "python": "import sys\nfirst = sys.stdin.readline()\nrest = sys.stdin.read()\n"
    "print(repr(first))\nprint(repr(rest))\nprint(repr(sys.stdin.read()))",
    # Deno.stdin.read with a small buffer, as well as the readable stream above
    "deno": "const buf = new Uint8Array(4);\nconst parts: string[] = [];\nconst dec = new TextDecoder();\n"
    "for (;;) { const n = await Deno.stdin.read(buf); if (n === null) break; "
    "parts.push(dec.decode(buf.subarray(0, n), { stream: true })); }\n"
    "parts.push(dec.decode());\nconsole.log(JSON.stringify(parts.join('')));",
}


@pytest.mark.parametrize("lang", LANGS)
def test_multiline_text_stdin(run, lang):
    text = "line one\nl\u00efne two \u2603\n\nlast line without newline"
    o = run(lang, STDIN_TEXT[lang], text.encode())
    assert o.result["success"] is True, o.err
    if lang == "python":
        assert o.out == f"{'line one' + chr(10)!r}\n{text.split(chr(10), 1)[1]!r}\n''\n"
    else:
        assert o.out == json.dumps(text, ensure_ascii=False) + "\n"


STREAMING = {
    # prints, then blocks on stdin: the print must reach us while the code still runs
    "python": "import sys\nprint('ready')\nline = sys.stdin.readline()\nprint('got', line.strip())",
    "deno": "console.log('ready');\nconst buf = new Uint8Array(64);\nconst n = await Deno.stdin.read(buf);\n"
    "console.log('got', new TextDecoder().decode(buf.subarray(0, n ?? 0)).trim());",
}


def read_line_within(pipe, seconds):
    """One line from a pipe via os.read, failing instead of hanging after `seconds`."""
    import select

    fd = pipe.fileno()
    deadline = time.monotonic() + seconds
    line = b""
    while not line.endswith(b"\n"):
        left = deadline - time.monotonic()
        if left <= 0 or not select.select([fd], [], [], left)[0]:
            pytest.fail(f"no complete line within {seconds}s (got {line!r}): output not streamed")
        b = os.read(fd, 1)
        if not b:
            break
        line += b
    return line


@pytest.mark.parametrize("lang", LANGS)
def test_output_streams_while_code_runs(lang, deno_dir):
    data, nonce = frame(STREAMING[lang])
    p = subprocess.Popen(
        runner_cmd(lang),
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        env=runner_env(lang, deno_dir),
    )
    try:
        p.stdin.write(data)  # request only; stdin stays open
        p.stdin.flush()
        # The code printed this and is now blocked on stdin: it must have reached us.
        assert read_line_within(p.stdout, 20) == b"ready\n"
        assert p.poll() is None  # the code is still waiting for its stdin
        p.stdin.write(b"ping\n")
        p.stdin.close()
        out = p.stdout.read()  # tiny outputs: no risk of a full stderr pipe
        err = p.stderr.read()
        p.wait(timeout=60)
    finally:
        if p.poll() is None:
            p.kill()
    o_out, o_err, result, got_nonce = parse_markers(b"ready\n" + out, err)
    assert got_nonce == nonce
    assert o_out == b"ready\ngot ping\n"
    assert result["success"] is True


SIDE_EFFECT = {
    "python": "open({path!r}, 'w').write('ran')\nprint('SIDE EFFECT')",
    "deno": "console.log('SIDE EFFECT');",
}


@pytest.mark.parametrize("lang", LANGS)
def test_sha256_mismatch_refuses_to_run(run, lang, tmp_path):
    marker_file = tmp_path / "ran"
    code = SIDE_EFFECT[lang].format(path=str(marker_file))
    bad = hashlib.sha256(code.encode() + b" ").hexdigest()
    o = run(lang, code, sha256=bad)
    assert o.rc == 2
    assert o.result["success"] is False
    assert o.result["error"]["type"] == "CodeIntegrityError"
    assert b"SIDE EFFECT" not in o.raw_stdout
    assert not marker_file.exists()
    assert "CodeIntegrityError" in o.err  # human-readable line for the fallback path
    # control: the same code with the right hash does run
    ok = run(lang, code)
    assert ok.stdout == b"SIDE EFFECT\n"


@pytest.mark.parametrize("lang", LANGS)
def test_sha256_uppercase_hex_is_accepted(run, lang):
    code = HELLO[lang]
    o = run(lang, code, sha256=hashlib.sha256(code.encode()).hexdigest().upper())
    assert o.result["success"] is True and o.stdout == b"hello world\n"


def _good_body(code):
    return json.dumps(
        {
            "code": code,
            "sha256": hashlib.sha256(code.encode()).hexdigest(),
            "token": TOKEN,
            "nonce": "0123456789abcdef0123456789abcdef",
            "timeoutMs": 1000,
        }
    ).encode()


MALFORMED = {
    "non_digit_header": lambda body: b"12x\n" + body,
    "empty_header": lambda body: b"\n" + body,
    "header_too_long": lambda body: b"1" * 25 + b"\n" + body,
    "eof_in_header": lambda body: b"12",
    "nothing_at_all": lambda body: b"",
    "json_shorter_than_header": lambda body: str(len(body) + 10).encode() + b"\n" + body,
    "not_json": lambda body: b"11\nhello world",
    "json_not_object": lambda body: b"2\n[]",
    "no_nonce": lambda body: (lambda b: str(len(b)).encode() + b"\n" + b)(
        json.dumps({k: v for k, v in json.loads(body).items() if k != "nonce"}).encode()
    ),
}


@pytest.mark.parametrize("case", sorted(MALFORMED))
@pytest.mark.parametrize("lang", LANGS)
def test_malformed_request_is_refused(lang, case, deno_dir, tmp_path):
    marker_file = tmp_path / "ran"
    code = SIDE_EFFECT[lang].format(path=str(marker_file))
    o = run_raw(lang, MALFORMED[case](_good_body(code)), deno_dir)
    check_consistent(o)
    assert o.rc == 2
    assert o.nonce == ""  # the nonce could not be taken from the request
    assert o.result["error"]["type"] == "RunnerProtocolError"
    assert b"SIDE EFFECT" not in o.raw_stdout and not marker_file.exists()
    assert "RunnerProtocolError" in o.err


BAD_FIELDS = {
    "code_not_string": {"code": 5},
    "timeout_not_int": {"timeoutMs": "30"},
    "token_missing": {"token": None},
    "sha_not_hex": {"sha256": "zz" * 32},
}


@pytest.mark.parametrize("case", sorted(BAD_FIELDS))
@pytest.mark.parametrize("lang", LANGS)
def test_bad_fields_are_refused_with_the_nonce(lang, case, deno_dir):
    req = json.loads(_good_body(HELLO[lang]))
    req.update(BAD_FIELDS[case])
    req = {k: v for k, v in req.items() if v is not None}
    body = json.dumps(req).encode()
    o = run_raw(lang, str(len(body)).encode() + b"\n" + body, deno_dir)
    check_consistent(o)
    assert o.rc == 2 and o.nonce == req["nonce"]
    assert o.result["error"]["type"] == "RunnerProtocolError"
    assert b"hello world" not in o.raw_stdout


HUGE_ERROR = {
    "python": "def f(n):\n    if n == 0:\n        raise ValueError('\\U0001f600' * 300_000)\n    f(n - 1)\nf(500)",
    "deno": "function f(n: number): void {\n  if (n === 0) throw new Error('\\u{1F600}'.repeat(300_000));\n  f(n - 1);\n}\nf(500);",
}


@pytest.mark.parametrize("lang", LANGS)
def test_huge_error_keeps_the_result_line_small(run, lang):
    # The server drops result lines over 256 KiB (src/sandbox/protocol.rs MAX_RESULT_BYTES).
    o = run(lang, HUGE_ERROR[lang])
    line = o.raw_stdout[o.raw_stdout.index(RESULT):]
    assert len(line) < 256 * 1024
    err = o.result["error"]
    assert "characters cut" in err["message"] and "characters cut" in err["traceback"]
    # the innermost frame survives: long lines are clipped before the whole text
    if lang == "python":
        assert err["traceback"].rstrip().endswith("characters cut]")
        assert 'File "<code>", line 3, in f' in err["traceback"]
        assert "Previous line repeated" in err["traceback"]
    else:
        assert "at f (<code>:2:" in err["traceback"]


# --------------------------------------------------------------------------- Python only


def test_python_exception_traceback_has_only_user_frames(run):
    code = "def inner(x):\n    return 1 / x\n\ndef outer():\n    return inner(0)\n\nprint('partial')\nouter()\n"
    o = run("python", code)
    assert o.rc == 1 and o.result["success"] is False
    assert o.stdout == b"partial\n"
    err = o.result["error"]
    assert err["type"] == "ZeroDivisionError"
    assert err["message"] == "division by zero"
    tb = err["traceback"]
    assert tb.startswith("Traceback (most recent call last):\n")
    assert tb.endswith("ZeroDivisionError: division by zero\n")
    frames = re.findall(r'^  File "([^"]*)", line (\d+), in (\S+)$', tb, re.M)
    assert frames == [("<code>", "8", "<module>"), ("<code>", "5", "outer"), ("<code>", "2", "inner")]
    assert "    return 1 / x\n" in tb  # user source lines are shown
    assert "runner" not in tb and "runner" not in o.err
    assert o.err == tb  # printed to stderr as Python would


def test_python_tla_exception_has_no_asyncio_or_runner_frames(run):
    code = "import asyncio\nawait asyncio.sleep(0)\nraise KeyError('k')\n"
    o = run("python", code)
    err = o.result["error"]
    assert err["type"] == "KeyError" and err["message"] == "'k'"
    assert re.findall(r'^  File "([^"]*)"', err["traceback"], re.M) == ["<code>"]
    assert "asyncio" not in err["traceback"].replace("import asyncio", "")


def test_python_non_builtin_exception_type_is_qualified(run):
    o = run("python", "import json\njson.loads('{')")
    err = o.result["error"]
    assert err["type"] == "json.decoder.JSONDecodeError"
    assert err["traceback"].splitlines()[-1].startswith("json.decoder.JSONDecodeError: ")
    files = re.findall(r'^  File "([^"]*)"', err["traceback"], re.M)
    assert files[0] == "<code>" and any(f.endswith("json/decoder.py") for f in files)
    assert not any("runner" in f for f in files)


def test_python_user_defined_exception_and_chaining(run):
    code = "class AppError(Exception):\n    pass\ntry:\n    {}['x']\nexcept KeyError as e:\n    raise AppError('wrapped') from e\n"
    o = run("python", code)
    err = o.result["error"]
    assert err["type"] == "AppError" and err["message"] == "wrapped"
    assert "KeyError: 'x'" in err["traceback"]
    assert "The above exception was the direct cause" in err["traceback"]
    assert "runner" not in err["traceback"]


def test_python_syntax_error(run):
    o = run("python", "x = 1\ny = = 2\n")
    assert o.rc == 1
    err = o.result["error"]
    assert err["type"] == "SyntaxError"
    assert 'File "<code>", line 2' in err["traceback"]
    assert "runner" not in err["traceback"] and "Traceback" not in err["traceback"]


def test_python_keyboard_interrupt_and_base_exception(run):
    o = run("python", "raise KeyboardInterrupt")
    assert o.rc == 130 and o.result["error"]["type"] == "KeyboardInterrupt"
    o = run("python", "class Boom(BaseException):\n    pass\nraise Boom('b')")
    assert o.rc == 1 and o.result["error"]["type"] == "Boom"
    assert o.result["error"]["message"] == "b"


def test_python_main_module_semantics(run):
    code = (
        "names = sorted(globals())\n"
        "import sys, __main__\n"
        "print(__name__, sys.argv, __main__.__dict__ is globals())\n"
        "print(names)\n"
        "print(sys.stdout.line_buffering, sys.stdout.encoding)\n"
    )
    o = run("python", code)
    lines = o.out.splitlines()
    assert lines[0] == "__main__ ['<code>'] True"
    # the module's own names plus the in-sandbox tool API (test_tool_api.py)
    assert lines[1] == str(
        sorted(
            ["__builtins__", "__doc__", "__loader__", "__name__", "__package__", "__spec__"]
            + ["call_mcp_tool", "call_mcp_tool_sync", "discover_mcp_tools", "get_tool_schema", "search_tools"]
            + ["McpToolError", "ToolNotAllowed", "ToolNotFound", "InvalidArguments", "RateLimited", "ToolFailed"]
        )
    )
    assert lines[2] == "True utf-8"


def test_python_does_not_wait_for_non_daemon_threads(run):
    code = "import threading, time\nthreading.Thread(target=time.sleep, args=(60,)).start()\nprint('started')"
    t0 = time.monotonic()
    o = run("python", code)
    assert time.monotonic() - t0 < 20
    assert o.stdout == b"started\n" and o.rc == 0


def test_python_atexit_runs_before_markers(run):
    o = run("python", "import atexit\natexit.register(print, 'bye')\nprint('hi')")
    assert o.stdout == b"hi\nbye\n"


def test_python_compile_flag_constant_matches_ast():
    src = PY_RUNNER.read_text()
    m = re.search(r"_PyCF_ALLOW_TOP_LEVEL_AWAIT = (0x[0-9a-fA-F]+)", src)
    assert m and int(m.group(1), 16) == ast.PyCF_ALLOW_TOP_LEVEL_AWAIT
    m = re.search(r"_CO_COROUTINE = (0x[0-9a-fA-F]+)", src)
    import inspect

    assert m and int(m.group(1), 16) == inspect.CO_COROUTINE


def test_python_prelude_stays_small(run):
    # Start-up budget: no asyncio/hashlib/traceback/json (json pulls in re) before the
    # user's code needs them.
    mods = "('asyncio', 'hashlib', 'traceback', 'ast', 'inspect', 'json', 'json.decoder', 'socket')"
    o = run("python", f"import sys\nprint(sorted(m for m in {mods} if m in sys.modules))")
    assert o.stdout == b"[]\n"


# --------------------------------------------------------------------------- Deno only


@needs_deno
def test_deno_exception_stack_has_only_user_frames(run):
    code = (
        "function inner(x: number): number {\n  if (x === 0) throw new RangeError(`bad ${x}`);\n  return x;\n}\n"
        "const outer = () => inner(0);\nconsole.log('partial');\nouter();\n"
    )
    o = run("deno", code)
    assert o.rc == 1 and o.result["success"] is False
    assert o.stdout == b"partial\n"
    err = o.result["error"]
    assert err["type"] == "RangeError" and err["message"] == "bad 0"
    tb = err["traceback"]
    assert tb.startswith("RangeError: bad 0\n")
    assert re.findall(r"^    at (.*)$", tb, re.M) == ["inner (<code>:2:22)", "outer (<code>:5:21)", "<code>:7:1"]
    for text in (tb, o.err):
        assert "runner" not in text and "data:" not in text and "file://" not in text
    assert o.err.startswith("error: Uncaught")
    assert tb in o.err


@needs_deno
def test_deno_long_code_url_is_hidden_too(run):
    # Deno shortens long data: URLs ("abc......xyz") in stacks; both forms become <code>.
    code = "// " + "x" * 5000 + "\nthrow new Error('long')\n"
    o = run("deno", code)
    tb = o.result["error"]["traceback"]
    assert "at <code>:2:7" in tb and "data:" not in tb and "......" not in tb


@needs_deno
def test_deno_syntax_error(run):
    o = run("deno", "const x: number = ;\n")
    err = o.result["error"]
    assert o.rc == 1 and err["type"] == "SyntaxError"
    assert "<code>:1:19" in err["traceback"] and "data:" not in o.err


@needs_deno
def test_deno_unhandled_rejection_and_uncaught_callback_error(run):
    o = run("deno", "console.log('a');\nPromise.reject(new TypeError('nobody caught me'));\n")
    assert o.rc == 1 and o.stdout == b"a\n"
    assert o.result["error"]["type"] == "TypeError"
    assert o.result["error"]["message"] == "nobody caught me"
    assert "Uncaught (in promise) TypeError: nobody caught me" in o.err
    o = run("deno", "setTimeout(() => { throw new Error('from a timer') }, 5);\n")
    assert o.rc == 1 and o.result["error"]["message"] == "from a timer"
    assert "<code>:1:26" in o.result["error"]["traceback"]


@needs_deno
def test_deno_user_error_listeners_can_prevent_the_default(run):
    code = (
        "addEventListener('unhandledrejection', (e) => { e.preventDefault(); console.log('handled', e.reason.message); });\n"
        "addEventListener('error', (e) => { e.preventDefault(); console.log('handled', e.error.message); });\n"
        "Promise.reject(new Error('r1'));\n"
        "setTimeout(() => { throw new Error('e1'); }, 5);\n"
        "setTimeout(() => console.log('still alive'), 30);\n"
    )
    o = run("deno", code)
    assert o.rc == 0 and o.result["error"] is None
    assert o.stdout == b"handled r1\nhandled e1\nstill alive\n"
    # a listener that does not prevent it leaves the error fatal
    o = run("deno", "addEventListener('error', () => console.log('seen'));\nsetTimeout(() => { throw new Error('e2'); }, 5);\nsetTimeout(() => console.log('not reached'), 200);\n")
    assert o.rc == 1 and o.stdout == b"seen\n" and o.result["error"]["message"] == "e2"


@needs_deno
def test_deno_pending_work_runs_before_markers(run):
    # An un-awaited main(), as LLM-written scripts often have, still runs to the end.
    code = "async function main() {\n  await new Promise((r) => setTimeout(r, 50));\n  console.log('main done');\n}\nmain();\nconsole.log('top done');\n"
    o = run("deno", code)
    assert o.stdout == b"top done\nmain done\n" and o.rc == 0


@needs_deno
def test_deno_non_error_throw(run):
    o = run("deno", "throw { code: 42 };")
    assert o.rc == 1
    assert o.result["error"]["type"] == "Object" and "42" in o.result["error"]["message"]


@needs_deno
def test_deno_user_code_has_no_permissions(run):
    code = (
        "const tries: [string, () => Promise<unknown>][] = [\n"
        "  ['read', () => Deno.readTextFile('/etc/hostname')],\n"
        "  ['write', () => Deno.writeTextFile('/tmp/ce-runner-test-should-not-exist', 'x')],\n"
        "  ['env', async () => Deno.env.get('PATH')],\n"
        "  ['net', () => fetch('http://127.0.0.1:9/')],\n"
        "  ['run', () => new Deno.Command('true').output()],\n"
        "  ['import_file', () => import('file:///etc/hostname')],\n"
        "  ['import_jsr', () => import('jsr:@std/assert')],\n"
        "  ['import_npm', () => import('npm:left-pad')],\n"
        "];\n"
        "for (const [name, f] of tries) {\n"
        "  try { await f(); console.log(name, 'ALLOWED'); }\n"
        "  catch (e) { console.log(name, 'denied', (e as Error).name); }\n"
        "}\n"
    )
    o = run("deno", code)
    assert o.result["success"] is True, o.err
    lines = o.out.splitlines()
    assert len(lines) == 8 and all(" denied " in l for l in lines), o.out
    assert not os.path.exists("/tmp/ce-runner-test-should-not-exist")


@needs_deno
def test_deno_module_load_error_has_no_runner_frames(run):
    # A refused static import fails while the runner awaits import(): Deno's stack then
    # carries an "at async <runner.js>" frame that must be stripped.
    o = run("deno", "import text from 'file:///etc/hostname';\nconsole.log(text);\n")
    assert o.rc == 1 and o.stdout == b""
    err = o.result["error"]
    assert err["type"] == "TypeError" and "read access" in err["message"]
    assert "<code>:1:18" in err["traceback"]
    for text in (err["traceback"], o.err):
        assert "runner" not in text and "data:" not in text


@needs_deno
def test_deno_stuck_top_level_await_is_the_documented_gap(deno_dir):
    # Documented in docs/runner-protocol.md: Deno itself ends the process (exit 1, no
    # "unload", so no markers) when a top-level await can never settle. If a Deno update
    # changes this, this test says so.
    data, _ = frame("await new Promise(() => {});\n")
    o = run_raw("deno", data, deno_dir)
    assert o.result is None and o.rc == 1
    assert "Top-level await promise never resolved" in o.err
