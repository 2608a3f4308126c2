"""code-executor-mcp: Python runner (the sandbox container's entrypoint, PID 1).

Expected command line (-I is required: it keeps the working directory and PYTHON* env
variables out of the interpreter; -B is harmless, the rootfs is read-only anyway):

    python3 -I /opt/code-executor/runner.py        (or: python3 -I -B ...)

It runs exactly one execution and exits; the framing on stdin/stdout/stderr is the
contract in docs/runner-protocol.md:

    stdin:  <decimal length>\\n<JSON request of exactly that length><user's stdin bytes...>EOF
    stdout: <user output>\\x1e\\x1eCE-RESULT:<nonce>:<compact JSON result>\\n
    stderr: <user output>\\x1e\\x1eCE-END:<nonce>\\n

Standard library only, Python 3.11+. Start-up is kept lean: before the user's code
runs, only `os` and `sys` (already loaded by the interpreter), `_json` (the C half of
`json`: importing `json` itself pulls in `re`, ~4.5 ms of a ~15 ms start) and `_sha256`
are imported; `asyncio` only when the code uses top-level `await`,
`traceback`/`linecache` only when an exception has to be reported.

Note: the user's code runs in this same interpreter; a determined program can inspect the
runner's frames (nonce, token). The result the runner reports is therefore a claim made
by the sandboxed process, never a trusted verdict.
"""

import os
import sys

_RUNNER_MODULE = sys.modules.get(__name__)  # stays alive after __main__ is replaced
# Captured before the user's code runs, so that code rebinding os._exit/os.write (or
# replacing sys.stdout) cannot keep the runner from reporting.
_os_write = os.write
_os_exit = os._exit
_getpid = os.getpid

try:  # the C accelerator that json.loads/json.dumps use; json itself only as a fallback
    from _json import encode_basestring_ascii as _json_str
    from _json import make_scanner as _c_make_scanner
except ImportError:  # pragma: no cover - CPython always has it
    _c_make_scanner = None

    def _json_str(s):
        import json

        return json.dumps(s, ensure_ascii=True)

_MAX_HEADER_DIGITS = 20
_READ_CHUNK = 1 << 20
_CO_COROUTINE = 0x0080  # inspect.CO_COROUTINE (not imported: start-up time)
_PyCF_ALLOW_TOP_LEVEL_AWAIT = 0x2000  # ast.PyCF_ALLOW_TOP_LEVEL_AWAIT (ditto)
_CODE_FILENAME = "<code>"
_EXIT_RUNNER_ERROR = 2  # request refused (protocol / integrity error): user code never ran
# The server accepts a result line of at most 256 KiB. With ensure_ascii a code point
# costs up to 12 bytes, so these caps (in code points) keep any line well under it.
_MAX_TYPE = 200
_MAX_MESSAGE = 4_000
_MAX_TRACEBACK = 16_000
_MARK_RESULT = b"\x1e\x1eCE-RESULT:"
_MARK_END = b"\x1e\x1eCE-END:"


class _RequestError(Exception):
    """The request cannot be honoured; the user's code does not run."""

    def __init__(self, kind, message, nonce=""):
        super().__init__(message)
        self.kind = kind  # "RunnerProtocolError" | "CodeIntegrityError"
        self.message = message
        self.nonce = nonce


# --------------------------------------------------------------------------- request


def _read_exact(n):
    """Read exactly n bytes from fd 0 with os.read, never more (the rest is the user's)."""
    chunks = []
    remaining = n
    while remaining:
        chunk = os.read(0, min(remaining, _READ_CHUNK))
        if not chunk:
            raise _RequestError(
                "RunnerProtocolError",
                f"unexpected end of input: request is {n} bytes, got {n - remaining}",
            )
        chunks.append(chunk)
        remaining -= len(chunk)
    return b"".join(chunks)


def _read_header():
    digits = bytearray()
    while True:
        b = os.read(0, 1)
        if not b:
            raise _RequestError(
                "RunnerProtocolError", "unexpected end of input in the length header"
            )
        if b == b"\n":
            break
        if not (b"0" <= b <= b"9"):
            raise _RequestError(
                "RunnerProtocolError",
                f"malformed length header: byte {b!r} is not an ASCII digit",
            )
        digits += b
        if len(digits) > _MAX_HEADER_DIGITS:
            raise _RequestError(
                "RunnerProtocolError",
                f"malformed length header: more than {_MAX_HEADER_DIGITS} digits",
            )
    if not digits:
        raise _RequestError("RunnerProtocolError", "malformed length header: no digits")
    return int(digits)


def _is_hex(s, length):
    return (
        isinstance(s, str)
        and len(s) == length
        and all(c in "0123456789abcdefABCDEF" for c in s)
    )


def _sha256_hex(data):
    try:
        from _sha256 import sha256  # builtin, ~0.5 ms; hashlib loads OpenSSL (~6 ms)
    except ImportError:  # pragma: no cover - other builds
        from hashlib import sha256
    return sha256(data).hexdigest()


class _ScanContext:
    """What _json.make_scanner reads off a json.JSONDecoder (strict, no NaN/Infinity)."""

    strict = True
    object_hook = None
    object_pairs_hook = None
    parse_float = float
    parse_int = int

    @staticmethod
    def parse_constant(name):
        raise ValueError(f"{name} is not valid JSON")


def _json_parse(raw):
    """json.loads for a UTF-8 document, without importing json (and re)."""
    text = raw.decode("utf-8")
    if _c_make_scanner is None:  # pragma: no cover
        import json

        return json.loads(text)
    ws = " \t\n\r"
    start = len(text) - len(text.lstrip(ws))
    try:
        obj, end = _c_make_scanner(_ScanContext)(text, start)
    except StopIteration:
        raise ValueError("expecting a JSON value") from None
    if text[end:].strip(ws):
        raise ValueError("extra data after the JSON value")
    return obj


def _read_request():
    """Return the validated request dict. Raises _RequestError."""
    length = _read_header()
    raw = _read_exact(length)
    try:
        req = _json_parse(raw)
    except (ValueError, RecursionError) as e:
        # Never echo the request: it carries the token.
        raise _RequestError(
            "RunnerProtocolError", f"request is not valid JSON ({type(e).__name__})"
        ) from None
    if not isinstance(req, dict):
        raise _RequestError("RunnerProtocolError", "request is not a JSON object")
    nonce = req.get("nonce")
    if not _is_hex(nonce, 32):
        raise _RequestError("RunnerProtocolError", "request.nonce must be 32 hex chars")
    nonce = nonce.lower()
    code = req.get("code")
    if not isinstance(code, str):
        raise _RequestError("RunnerProtocolError", "request.code must be a string", nonce)
    if not isinstance(req.get("token"), str):
        raise _RequestError("RunnerProtocolError", "request.token must be a string", nonce)
    timeout = req.get("timeoutMs")
    if not isinstance(timeout, int) or isinstance(timeout, bool) or timeout < 0:
        raise _RequestError(
            "RunnerProtocolError", "request.timeoutMs must be a non-negative integer", nonce
        )
    expected = req.get("sha256")
    if not _is_hex(expected, 64):
        raise _RequestError("RunnerProtocolError", "request.sha256 must be 64 hex chars", nonce)
    try:
        actual = _sha256_hex(code.encode("utf-8"))
    except UnicodeEncodeError:
        raise _RequestError(
            "CodeIntegrityError", "code is not valid Unicode (lone surrogate)", nonce
        ) from None
    if actual != expected.lower():
        raise _RequestError(
            "CodeIntegrityError",
            "SHA-256 of the code does not match request.sha256; refusing to run it",
            nonce,
        )
    return req


# --------------------------------------------------------------------------- output


def _write_all(fd, data):
    while data:
        try:
            n = _os_write(fd, data)
        except InterruptedError:  # pragma: no cover - PEP 475 retries already
            continue
        except OSError:
            return  # fd closed/broken: the server falls back to the exit code
        data = data[n:]


def _flush_streams():
    seen = set()
    for s in (sys.stdout, sys.stderr, sys.__stdout__, sys.__stderr__):
        if s is None or id(s) in seen:
            continue
        seen.add(id(s))
        try:
            s.flush()
        except BaseException:
            pass


def _clip(text, limit, keep_tail):
    """At most `limit` code points; the cut part is named. Tracebacks keep their end."""
    if len(text) <= limit:
        return text
    cut = len(text) - limit
    if keep_tail:
        head = limit // 8
        return f"{text[:head]}\n[... {cut} characters cut ...]\n{text[len(text) - (limit - head):]}"
    return f"{text[:limit]}[... {cut} characters cut]"


def _finish(nonce, exit_code, error):
    """Flush, write both markers, exit. Never returns."""
    _flush_streams()
    if error is not None:
        error = {
            "type": _clip(str(error["type"]), _MAX_TYPE, False),
            "message": _clip(str(error["message"]), _MAX_MESSAGE, False),
            "traceback": _clip(
                "\n".join(_clip(l, _MAX_MESSAGE, False) for l in str(error["traceback"]).split("\n")),
                _MAX_TRACEBACK,
                True,
            ),
        }
    success = "true" if exit_code == 0 and error is None else "false"
    err = "null"
    if error is not None:
        err = '{"type":%s,"message":%s,"traceback":%s}' % (
            _json_str(error["type"]),
            _json_str(error["message"]),
            _json_str(error["traceback"]),
        )
    # Compact, ASCII-only, single line (json.dumps(..., separators=(",", ":")) would match).
    line = '{"success":%s,"exitCode":%d,"error":%s}' % (success, exit_code, err)
    n = nonce.encode("ascii")
    _write_all(1, _MARK_RESULT + n + b":" + line.encode("ascii") + b"\n")
    _write_all(2, _MARK_END + n + b"\n")
    _os_exit(exit_code)


def _print_stderr(text):
    for s in (sys.stderr, sys.__stderr__):
        if s is None:
            continue
        try:
            s.write(text)
            s.flush()
            return
        except BaseException:
            continue
    _write_all(2, text.encode("utf-8", "backslashreplace"))


# --------------------------------------------------------------------------- errors


def _type_name(exc_type):
    # Same rule as the last line of a Python traceback: builtins and __main__ unqualified.
    qualname = getattr(exc_type, "__qualname__", None) or getattr(exc_type, "__name__", "?")
    module = getattr(exc_type, "__module__", None)
    if module in (None, "builtins", "__main__"):
        return qualname
    return f"{module}.{qualname}"


def _safe_str(exc):
    try:
        return str(exc)
    except BaseException:
        return "<exception str() failed>"


def _format_user_traceback(exc, source):
    """A normal Python traceback text, restricted to the user's frames."""
    import linecache
    import traceback

    # Let the traceback show the user's source lines for "<code>" frames.
    linecache.cache[_CODE_FILENAME] = (
        len(source),
        None,
        source.splitlines(True),
        _CODE_FILENAME,
    )
    runner_file = _format_user_traceback.__code__.co_filename
    te = traceback.TracebackException(
        type(exc), exc, exc.__traceback__, compact=True, capture_locals=False
    )
    seen = set()
    todo = [te]
    while todo:
        t = todo.pop()
        if t is None or id(t) in seen:
            continue
        seen.add(id(t))
        frames = list(t.stack)
        # Everything above the first user frame is the runner (and, for top-level await,
        # asyncio's run machinery): drop it. Runner frames further down (the future
        # in-sandbox tool API) are dropped as well.
        for i, f in enumerate(frames):
            if f.filename == _CODE_FILENAME:
                frames = frames[i:]
                break
        frames = [f for f in frames if f.filename != runner_file]
        t.stack = traceback.StackSummary.from_list(frames)
        todo.append(t.__cause__)
        todo.append(t.__context__)
        todo.extend(getattr(t, "exceptions", None) or ())
    return "".join(te.format())


def _report_exception(exc, source):
    """Print the traceback like Python would; return the result's `error` object."""
    try:
        tb_text = _format_user_traceback(exc, source)
    except BaseException as e:  # never let reporting fail the report
        tb_text = f"{_type_name(type(exc))}: {_safe_str(exc)}\n(traceback unavailable: {e!r})\n"
    _print_stderr(tb_text)
    return {"type": _type_name(type(exc)), "message": _safe_str(exc), "traceback": tb_text}


def _system_exit_code(exc):
    """Python's own SystemExit rules: None -> 0, int -> that, else print it, 1."""
    code = exc.code
    if code is None:
        return 0
    if isinstance(code, int):
        try:
            return code & 0xFF  # what the OS keeps of the status
        except BaseException:
            return 1
    _print_stderr(_safe_str(code) + "\n")
    return 1


# --------------------------------------------------------------------------- user code


def _make_user_globals():
    """A fresh `__main__` module for the user's code (as `python3 -c` would give)."""
    import builtins

    main = type(sys)("__main__")
    g = main.__dict__
    g.update(
        {
            "__name__": "__main__",
            "__doc__": None,
            "__package__": None,
            "__loader__": None,
            "__spec__": None,
            "__builtins__": builtins,
        }
    )
    sys.modules["__main__"] = main
    return g


def _inject_sandbox_api(user_globals, token):
    """>>> IN-SANDBOX TOOL API INJECTION POINT <<<

    The tool proxy client (`call_mcp_tool`, `call_mcp_tool_sync`, `discover_mcp_tools`,
    `get_tool_schema`, `search_tools`) will be defined here and added to `user_globals`
    once the proxy lands (ARCHITECTURE.md, "Inside the container"). Keep the token in
    closures only; never print it. Implementations living in this file are stripped
    from user tracebacks automatically (frames whose file is runner.py).
    """
    return None


def _run_user_code(source):
    """Run the code. Returns (exit_code, error_or_None). Never raises."""
    try:
        code = compile(
            source, _CODE_FILENAME, "exec", flags=_PyCF_ALLOW_TOP_LEVEL_AWAIT, dont_inherit=True
        )
    except BaseException as exc:  # SyntaxError, ValueError (NUL byte), RecursionError...
        return 1, _report_exception(exc, source)
    user_globals = _USER_GLOBALS
    try:
        if code.co_flags & _CO_COROUTINE:
            import asyncio

            # A new event loop, closed afterwards; leftover tasks are cancelled (asyncio.run).
            asyncio.run(eval(code, user_globals))
        else:
            exec(code, user_globals)
    except SystemExit as exc:
        return _system_exit_code(exc), None
    except KeyboardInterrupt as exc:
        return 130, _report_exception(exc, source)
    except BaseException as exc:
        return 1, _report_exception(exc, source)
    return 0, None


def _run_atexit():
    # Python runs atexit callbacks before exiting (e.g. logging.shutdown); os._exit does not.
    try:
        import atexit

        atexit._run_exitfuncs()
    except BaseException:
        pass


_USER_GLOBALS = None


def main():
    global _USER_GLOBALS
    pid = _getpid()
    try:
        req = _read_request()
    except _RequestError as e:
        _print_stderr(f"code-executor runner: {e.kind}: {e.message}\n")
        _finish(
            e.nonce,
            _EXIT_RUNNER_ERROR,
            {"type": e.kind, "message": e.message, "traceback": ""},
        )
    except BaseException as e:  # OSError on fd 0, MemoryError, ...
        msg = f"cannot read the request: {type(e).__name__}: {_safe_str(e)}"
        _print_stderr(f"code-executor runner: RunnerProtocolError: {msg}\n")
        _finish("", _EXIT_RUNNER_ERROR, {"type": "RunnerProtocolError", "message": msg, "traceback": ""})

    nonce = req["nonce"].lower()
    source = req["code"]
    token = req["token"]
    del req

    # Line-buffered UTF-8 text streams, so output streams while the code runs
    # (-I ignores PYTHONUNBUFFERED/PYTHONUTF8). The stdin wrapper has not read anything
    # yet: everything after the request is still on fd 0 for the user's code.
    for s in (sys.stdout, sys.stderr):
        try:
            s.reconfigure(encoding="utf-8", errors=s.errors, line_buffering=True)
        except BaseException:
            pass
    try:
        sys.stdin.reconfigure(encoding="utf-8", errors=sys.stdin.errors)
    except BaseException:
        pass
    sys.argv = [_CODE_FILENAME]

    _USER_GLOBALS = _make_user_globals()
    _inject_sandbox_api(_USER_GLOBALS, token)
    del token

    exit_code, error = _run_user_code(source)
    _run_atexit()
    if _getpid() != pid:
        # A child forked by the user's code got here: only the runner process reports.
        _flush_streams()
        _os_exit(exit_code)
    _finish(nonce, exit_code, error)


if __name__ == "__main__":
    main()
