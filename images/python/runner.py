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
`traceback`/`linecache` only when an exception has to be reported. The tool API
(`call_mcp_tool` & co., see "tool API" below) costs nothing until the code's first call.

Environment: CODE_EXECUTOR_PROXY_SOCKET overrides the tool proxy's socket path
(default /run/mcp/proxy.sock; the tests point it at a fake proxy). CODE_EXECUTOR_EGRESS_PORT
(set only for executions granted network egress) makes the runner relay 127.0.0.1:<port>
to the egress proxy's socket, /run/mcp/egress.sock or CODE_EXECUTOR_EGRESS_SOCKET (see
"egress relay" below); socket, selectors and threading are imported only then.

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
_EXIT_RUNNER_ERROR = 2  # request refused (protocol / integrity / egress error): user code never ran
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
    return _json_loads(raw.decode("utf-8"))


def _json_loads(text):
    """json.loads for a str, without importing json (and re). Raises ValueError."""
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
        # asyncio's run machinery): drop it. Runner frames further down (the
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


# --------------------------------------------------------------------------- tool API
#
# The in-sandbox tool API (ARCHITECTURE.md "Inside the container", "Tool proxy protocol";
# docs/runner-protocol.md "In-sandbox tool API"). The user's code reaches the tools of
# the other MCP servers through the execution's tool proxy: HTTP/1.1 on a Unix socket,
# bearer token on every request, one connection per request.
#
# Start-up cost: this file is compiled from source at every start (a script gets no
# .pyc), so only the error classes and thin entry points below are ordinary code. The
# implementation is _TOOL_API_SOURCE, compiled into this module on the first call
# (compiling it with the rest would add ~2.5 ms to every start, tool calls or not).
# Nothing is imported or connected before the first call either: asyncio comes with the
# code's own top-level await, json and socket on first use.

_PROXY_SOCKET_ENV = "CODE_EXECUTOR_PROXY_SOCKET"
_DEFAULT_PROXY_SOCKET = "/run/mcp/proxy.sock"


class McpToolError(Exception):
    """A call through the tool proxy failed. `status`: the proxy's HTTP status (0: no
    answer from the proxy, or refused before sending); `message`: the proxy's message."""

    default_status = 0

    def __init__(self, message, status=None):
        super().__init__(message)
        self.message = message
        self.status = self.default_status if status is None else status


class ToolNotAllowed(McpToolError):
    """403: the tool is not in this execution's allowedTools (the message names them)."""

    default_status = 403


class ToolNotFound(McpToolError):
    """404: no connected MCP server offers a tool of that name."""

    default_status = 404


class InvalidArguments(McpToolError):
    """422: the arguments fail the tool's input schema (the message names the field).
    Also 400/413 (the request body was refused) and, with status 0, arguments that are
    not a dict or cannot be encoded as JSON."""

    default_status = 422


class RateLimited(McpToolError):
    """429: too many tool calls (rate limit or the per-execution cap)."""

    default_status = 429


class ToolFailed(McpToolError):
    """The tool failed: 502 downstream error, 504 downstream timeout, any other status,
    or status 200 with a result whose isError is true (then `result` holds it)."""

    default_status = 502

    def __init__(self, message, status=None, result=None):
        super().__init__(message, status)
        self.result = result


_TOOL_API_ERRORS = (McpToolError, ToolNotAllowed, ToolNotFound, InvalidArguments, RateLimited, ToolFailed)

_TOOL_API_SOURCE = r"""
_MAX_RESPONSE_HEAD = 64 * 1024
_READ_SIZE = 64 * 1024
_URL_SAFE = frozenset("ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-._~")
_STATUS_ERRORS = {
    400: InvalidArguments,
    403: ToolNotAllowed,
    404: ToolNotFound,
    413: InvalidArguments,
    422: InvalidArguments,
    429: RateLimited,
}


def _status_error(status, body):
    # The typed error for a non-200 answer; the message is the proxy's `error`.
    message = None
    try:
        obj = _json_loads(body.decode("utf-8"))
        if isinstance(obj, dict) and isinstance(obj.get("error"), str):
            message = obj["error"]
    except (ValueError, RecursionError):
        pass
    if message is None:
        text = body.decode("utf-8", "replace").strip()
        message = f"tool proxy answered HTTP {status}" + (f": {text[:2000]}" if text else "")
    if status == 401:
        # A token problem is the runner's, not the code's: the base class.
        return McpToolError(message, 401)
    return _STATUS_ERRORS.get(status, ToolFailed)(message, status)


def _pct(text):
    # Percent-encoding for a path segment or a query value (RFC 3986 unreserved kept).
    return "".join(
        chr(b) if chr(b) in _URL_SAFE else "%%%02X" % b
        for b in str(text).encode("utf-8", "surrogatepass")
    )


def _dechunk(body):
    # A chunked body decoded, or None while incomplete. Raises ValueError.
    out = bytearray()
    pos = 0
    while True:
        eol = body.find(b"\r\n", pos)
        if eol < 0:
            return None
        size = int(body[pos:eol].split(b";", 1)[0].strip() or b"x", 16)
        pos = eol + 2
        if size == 0:  # then optional trailer lines and an empty line
            if body[pos:pos + 2] == b"\r\n" or body.find(b"\r\n\r\n", pos) >= 0:
                return bytes(out)
            return None
        if len(body) < pos + size + 2:
            return None
        out += body[pos:pos + size]
        pos += size + 2


def _parse_response(buf, eof):
    # (status, body) once `buf` holds one whole HTTP/1.1 response, else None (read
    # more). Raises ValueError for a malformed or truncated response.
    end = buf.find(b"\r\n\r\n")
    if end < 0:
        if eof:
            raise ValueError("connection closed before a complete response")
        if len(buf) > _MAX_RESPONSE_HEAD:
            raise ValueError("response head too long")
        return None
    lines = bytes(buf[:end]).decode("latin-1").split("\r\n")
    parts = lines[0].split(" ", 2)
    if len(parts) < 2 or not parts[0].startswith("HTTP/1.") or not parts[1].isdigit():
        raise ValueError(f"malformed status line {lines[0][:100]!r}")
    status = int(parts[1])
    headers = {}
    for line in lines[1:]:
        name, _, value = line.partition(":")
        headers[name.strip().lower()] = value.strip()
    body = bytes(buf[end + 4:])
    if "chunked" in headers.get("transfer-encoding", "").lower():
        decoded = _dechunk(body)
        if decoded is None:
            if eof:
                raise ValueError("connection closed inside a chunked body")
            return None
        return status, decoded
    length = headers.get("content-length")
    if length is not None:
        n = int(length)
        if len(body) < n:
            if eof:
                raise ValueError(f"connection closed after {len(body)} of {n} body bytes")
            return None
        return status, body[:n]
    if status in (204, 304):
        return status, b""
    return (status, body) if eof else None


def _tool_value(result):
    # What a tool call returns: structuredContent when present, else the text blocks
    # joined with "\n" (JSON-parsed when that is JSON); only non-text blocks: the
    # blocks. Raises ToolFailed on isError.
    if not isinstance(result, dict):
        return result
    content = result.get("content")
    blocks = content if isinstance(content, list) else []
    texts = [
        b["text"]
        for b in blocks
        if isinstance(b, dict) and b.get("type") == "text" and isinstance(b.get("text"), str)
    ]
    text = "\n".join(texts)
    if result.get("isError") is True:
        raise ToolFailed(text or "the tool reported an error (isError) without a message", 200, result)
    structured = result.get("structuredContent")
    if structured is not None:
        return structured
    if not texts and blocks:
        return blocks
    try:
        return _json_loads(text)
    except (ValueError, RecursionError):
        return text


def _merge_or(lists, limit):
    # Union of per-word search results: most words matched first, then first seen.
    seen = {}
    for tools in lists:
        for t in tools:
            key = t.get("name") if isinstance(t, dict) else repr(t)
            if key in seen:
                seen[key][0] += 1
            else:
                seen[key] = [1, len(seen), t]
    merged = [e[2] for e in sorted(seen.values(), key=lambda e: (-e[0], e[1]))]
    return merged if limit is None else merged[:limit]


def _search_words(search):
    # (query string or None, OR-terms or None) from a str, a list of str, or None.
    if search is None:
        return None, None
    if isinstance(search, str):
        return (search.strip() or None), None
    terms = [str(t).strip() for t in search if str(t).strip()]
    return None, (terms or None)


def _check_limit(limit):
    if limit is None:
        return None
    if isinstance(limit, bool) or not isinstance(limit, int) or limit < 0:
        raise ValueError(f"limit must be a non-negative int, got {limit!r}")
    return limit


class _ToolApi:
    # The implementation behind the entry points; holds the Authorization header.

    def __init__(self, auth, socket_path):
        self._auth = auth
        self._socket_path = socket_path

    def _request(self, method, target, body):
        head = (
            f"{method} {target} HTTP/1.1\r\nHost: localhost\r\nAuthorization: {self._auth}\r\n"
            "Accept: application/json\r\nConnection: close\r\n"
        )
        if body is not None:
            head += f"Content-Type: application/json\r\nContent-Length: {len(body)}\r\n"
        return (head + "\r\n").encode("ascii") + (body or b"")

    def _unreachable(self, exc):
        if isinstance(exc, FileNotFoundError):
            why = "the socket does not exist: this execution has no tool proxy"
        else:
            why = f"{type(exc).__name__}: {exc.strerror or exc}"
        return McpToolError(f"cannot reach the MCP tool proxy at {self._socket_path} ({why})")

    @staticmethod
    def _broken(exc):
        return McpToolError(f"tool proxy connection failed: {type(exc).__name__}: {exc}")

    async def send(self, method, target, body=None):
        import asyncio

        data = self._request(method, target, body)
        try:
            reader, writer = await asyncio.open_unix_connection(self._socket_path)
        except OSError as e:
            raise self._unreachable(e) from None
        try:
            writer.write(data)
            await writer.drain()
            buf = bytearray()
            while True:
                chunk = await reader.read(_READ_SIZE)
                buf += chunk
                parsed = _parse_response(buf, not chunk)
                if parsed is not None:
                    return parsed
        except (OSError, ValueError) as e:
            raise self._broken(e) from None
        finally:
            writer.close()

    def send_sync(self, method, target, body=None):
        import socket

        data = self._request(method, target, body)
        sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        try:
            try:
                sock.connect(self._socket_path)
            except OSError as e:
                raise self._unreachable(e) from None
            try:
                sock.sendall(data)
                buf = bytearray()
                while True:
                    chunk = sock.recv(_READ_SIZE)
                    buf += chunk
                    parsed = _parse_response(buf, not chunk)
                    if parsed is not None:
                        return parsed
            except (OSError, ValueError) as e:
                raise self._broken(e) from None
        finally:
            sock.close()

    @staticmethod
    def call_body(name, arguments):
        if not isinstance(name, str):
            raise TypeError(f"tool name must be a str, got {type(name).__name__}")
        if arguments is not None and not isinstance(arguments, dict):
            raise InvalidArguments(
                f"arguments must be a dict (a JSON object) or None, got {type(arguments).__name__}", 0
            )
        import json

        try:
            body = json.dumps(
                {"name": name, "arguments": arguments or {}}, allow_nan=False, separators=(",", ":")
            )
        except (TypeError, ValueError) as e:
            raise InvalidArguments(f"arguments are not JSON-serializable: {e}", 0) from None
        return body.encode("ascii")

    @staticmethod
    def call_value(status, body):
        if status != 200:
            raise _status_error(status, body)
        try:
            result = _json_loads(body.decode("utf-8"))
        except (ValueError, RecursionError):
            raise ToolFailed("tool proxy answered 200 with a body that is not JSON", 200) from None
        return _tool_value(result)

    @staticmethod
    def json_body(status, body):
        if status != 200:
            raise _status_error(status, body)
        try:
            return _json_loads(body.decode("utf-8"))
        except (ValueError, RecursionError):
            raise McpToolError("tool proxy answered 200 with a body that is not JSON", 200) from None

    async def call(self, name, arguments):
        body = self.call_body(name, arguments)
        return self.call_value(*await self.send("POST", "/v1/tools/call", body))

    def call_sync(self, name, arguments):
        body = self.call_body(name, arguments)
        return self.call_value(*self.send_sync("POST", "/v1/tools/call", body))

    async def list_tools(self, query, limit):
        params = []
        if query:
            params.append("q=" + _pct(query))
        if limit is not None:
            params.append(f"limit={limit}")
        target = "/v1/tools" + ("?" + "&".join(params) if params else "")
        obj = self.json_body(*await self.send("GET", target))
        tools = obj.get("tools") if isinstance(obj, dict) else None
        if not isinstance(tools, list):
            raise McpToolError("tool proxy answered without a `tools` list", 200)
        return tools

    async def find(self, search, limit):
        query, terms = _search_words(search)
        limit = _check_limit(limit)
        if terms is None:
            tools = await self.list_tools(query, limit)
            words = query.split() if query else []
            if tools or len(words) < 2:
                return tools
            terms = words  # no tool matches every word: rank by how many words match
        import asyncio

        lists = await asyncio.gather(*(self.list_tools(t, None) for t in terms))
        return _merge_or(lists, limit)

    async def schema(self, name):
        status, body = await self.send("GET", "/v1/tools/" + _pct(name))
        if status == 404:
            return None
        return self.json_body(status, body)
"""
_TOOL_API_SOURCE_LINE = sys._getframe().f_lineno - 1 - _TOOL_API_SOURCE.count("\n")  # its first line


def _compile_here(source, first_line):
    """Compile a source string of this file into this module's globals. Same file name
    and line numbers as the text itself: tracebacks point into this file, and frames of
    this file are hidden from the user's tracebacks."""
    source = "\n" * (first_line - 1) + source
    exec(compile(source, _format_user_traceback.__code__.co_filename, "exec", dont_inherit=True), globals())


def _tool_api_class():
    """Compile _TOOL_API_SOURCE into this module (once) and return its _ToolApi."""
    g = globals()
    if "_ToolApi" not in g:
        _compile_here(_TOOL_API_SOURCE, _TOOL_API_SOURCE_LINE)
    return g["_ToolApi"]


def _inject_sandbox_api(user_globals, token):
    """Add the tool API and its error classes to the user's globals. The token stays in
    the closures (not in any global); nothing is imported or connected until a call."""
    socket_path = os.environ.get(_PROXY_SOCKET_ENV) or _DEFAULT_PROXY_SOCKET
    # Only printable ASCII may go into a header line (the token is hex in practice).
    auth = "Bearer " + token if token and all(" " < c <= "~" for c in token) else None
    del token
    impl = []

    def api():
        if not impl:
            if auth is None:
                raise McpToolError("the runner has no usable tool proxy token")
            impl.append(_tool_api_class()(auth, socket_path))
        return impl[0]

    async def call_mcp_tool(name, arguments=None):
        """Call an MCP tool: `await call_mcp_tool("mcp__time__get_current_time",
        {"timezone": "UTC"})`. Returns the tool's structuredContent when present, else
        its text (JSON-parsed when it is JSON). Raises ToolNotAllowed, ToolNotFound,
        InvalidArguments, RateLimited, ToolFailed (all McpToolError)."""
        return await api().call(name, arguments)

    def call_mcp_tool_sync(name, arguments=None):
        """call_mcp_tool for plain scripts: no await, blocks until the answer."""
        return api().call_sync(name, arguments)

    async def discover_mcp_tools(search=None, *, search_terms=None):
        """The tools of the connected MCP servers, as dicts {name, server, description,
        allowed, inputSchema}. `search`: a query string (every word must match the name
        or description, best first), or a list of keywords (any may match)."""
        if search is None and search_terms is not None:
            search = list(search_terms)
        return await api().find(search, None)

    async def get_tool_schema(name):
        """One tool's dict (with inputSchema), or None when no tool has that name."""
        return await api().schema(name)

    async def search_tools(query, limit=10):
        """The best `limit` tools for a query (see discover_mcp_tools)."""
        return await api().find(query, limit)

    for f in (call_mcp_tool, call_mcp_tool_sync, discover_mcp_tools, get_tool_schema, search_tools):
        f.__qualname__ = f.__name__
        user_globals[f.__name__] = f
    for cls in _TOOL_API_ERRORS:
        user_globals[cls.__name__] = cls


# --------------------------------------------------------------------------- egress relay
#
# Network egress (docs/runner-protocol.md "Network egress"). The container has no network
# interface but loopback, also when the execution is granted egress. Then the server sets
# CODE_EXECUTOR_EGRESS_PORT (and HTTP_PROXY/HTTPS_PROXY=http://127.0.0.1:<port>) and
# mounts its egress proxy's Unix socket at /run/mcp/egress.sock (tests:
# CODE_EXECUTOR_EGRESS_SOCKET). Before the user's code runs, the runner listens on
# 127.0.0.1:<port> and relays every accepted connection, byte for byte in both directions,
# to a new connection to that socket: no parsing, the host proxy enforces all policy.
#
# One daemon thread runs a selectors loop for the listener and all connections (threads
# count against the container's pids limit), so the relay serves code that runs plain,
# with threads, with asyncio or in subprocesses alike. Start-up cost: none when egress is
# off (one environment look-up); the implementation is a source string compiled, and
# socket/selectors/threading imported, only when egress is on.

_EGRESS_PORT_ENV = "CODE_EXECUTOR_EGRESS_PORT"
_EGRESS_SOCKET_ENV = "CODE_EXECUTOR_EGRESS_SOCKET"
_DEFAULT_EGRESS_SOCKET = "/run/mcp/egress.sock"
_EGRESS_ERROR = "EgressRelayError"

_EGRESS_RELAY_SOURCE = r"""
from time import sleep as _relay_sleep

_RELAY_CHUNK = 256 * 1024
_RELAY_BACKLOG = 128
_EV_READ = 1  # selectors.EVENT_READ
_EV_WRITE = 2  # selectors.EVENT_WRITE


def _egress_relay_start(port_text, path):
    # Bind the listener now (before the user's code), serve it from a daemon thread.
    # Returns None, or why the relay cannot run.
    import selectors
    import socket
    import stat
    import threading

    what = "egress relay unavailable"
    if not (port_text.isascii() and port_text.isdigit() and 0 < int(port_text) < 65536):
        return f"{what}: {_EGRESS_PORT_ENV}={_json_str(port_text)} is not a TCP port number (1-65535)"
    port = int(port_text)
    try:
        mode = os.stat(path).st_mode
    except FileNotFoundError:
        return f"{what}: the egress proxy socket {path} does not exist (is it mounted?)"
    except OSError as e:
        return f"{what}: cannot stat the egress proxy socket {path}: {e.strerror or e}"
    if not stat.S_ISSOCK(mode):
        return f"{what}: {path} is not a Unix socket"
    listener = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    try:
        listener.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        listener.bind(("127.0.0.1", port))
        listener.listen(_RELAY_BACKLOG)
        listener.setblocking(False)
    except OSError as e:
        listener.close()
        return f"{what}: cannot listen on 127.0.0.1:{port}: {e.strerror or e}"
    relay = _EgressRelay(listener, path, socket, selectors.DefaultSelector())
    threading.Thread(target=relay.run, name="code-executor-egress-relay", daemon=True).start()
    return None


class _EgressRelay:
    # The relay's loop (its own thread). Never raises, never prints: stderr is the user's.

    def __init__(self, listener, path, socket, selector):
        self._listener = listener
        self._path = path
        # Captured now: the user's code may monkeypatch the socket module (SOCKS shims...).
        self._socket_cls = socket.socket
        self._unix = (socket.AF_UNIX, socket.SOCK_STREAM)
        self._nodelay = (socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        self._shut_wr = socket.SHUT_WR
        self._sel = selector
        selector.register(listener, _EV_READ, None)

    def run(self):
        while True:
            try:
                events = self._sel.select()
            except Exception:  # pragma: no cover - never expected
                _relay_sleep(0.05)
                continue
            for key, mask in events:
                try:
                    if key.data is None:
                        self._accept_all()
                    else:
                        link, side = key.data
                        if not link.closed:
                            link.on_event(side, mask)
                except Exception:
                    if key.data is not None:
                        key.data[0].close()

    def _accept_all(self):
        for _ in range(_RELAY_BACKLOG):
            try:
                fd, _addr = self._listener._accept()  # socket.accept() would use socket.socket
            except (BlockingIOError, InterruptedError):
                return
            except OSError:  # EMFILE, ENOBUFS...: let the backlog wait a little
                _relay_sleep(0.05)
                return
            client = self._socket_cls(fileno=fd)
            upstream = None
            try:
                upstream = self._socket_cls(*self._unix)
                upstream.connect(self._path)  # blocking: a local socket, accepted at once
                client.setsockopt(*self._nodelay)
                client.setblocking(False)
                upstream.setblocking(False)
            except OSError:
                # The host proxy is gone: the client sees its connection closed.
                client.close()
                if upstream is not None:
                    upstream.close()
                continue
            _RelayLink(self._sel, client, upstream, self._shut_wr)


class _RelayLink:
    # One relayed connection: socks[0] the client (TCP), socks[1] the egress proxy (Unix).
    # pending[i]: bytes read from socks[i] not yet written to the other. A side is read
    # only while nothing of it is pending (backpressure: at most one chunk per direction).
    # EOF read on one side is passed on as shutdown(SHUT_WR) on the other once its data
    # is written (half-close); both sockets close when both directions are done, or at
    # the first error on either (reset, broken pipe).

    def __init__(self, sel, client, upstream, shut_wr):
        self.sel = sel
        self.socks = (client, upstream)
        self.shut_wr = shut_wr
        self.pending = [b"", b""]
        self.eof = [False, False]
        self.done = [False, False]
        self.mask = [0, 0]
        self.closed = False
        self._update()

    def on_event(self, side, mask):
        try:
            if mask & _EV_WRITE:
                self._flush(1 - side)
            if mask & _EV_READ:
                self._read(side)
            self._update()
        except OSError:
            self.close()

    def _read(self, i):
        try:
            data = self.socks[i].recv(_RELAY_CHUNK)
        except (BlockingIOError, InterruptedError):
            return
        if data:
            self.pending[i] = memoryview(data)
            self._flush(i)
        else:
            self.eof[i] = True

    def _flush(self, i):
        data = self.pending[i]
        if data:
            try:
                n = self.socks[1 - i].send(data)
            except (BlockingIOError, InterruptedError):
                return
            self.pending[i] = data[n:]

    def _update(self):
        for i in (0, 1):
            if self.eof[i] and not self.pending[i] and not self.done[i]:
                self.done[i] = True
                self.socks[1 - i].shutdown(self.shut_wr)
        if self.done[0] and self.done[1]:
            self.close()
            return
        for i in (0, 1):
            want = 0
            if not self.eof[i] and not self.pending[i]:
                want |= _EV_READ
            if self.pending[1 - i]:
                want |= _EV_WRITE
            have = self.mask[i]
            if want != have:
                if not have:
                    self.sel.register(self.socks[i], want, (self, i))
                elif not want:
                    self.sel.unregister(self.socks[i])
                else:
                    self.sel.modify(self.socks[i], want, (self, i))
                self.mask[i] = want

    def close(self):
        if self.closed:
            return
        self.closed = True
        for i in (0, 1):
            if self.mask[i]:
                try:
                    self.sel.unregister(self.socks[i])
                except Exception:
                    pass
                self.mask[i] = 0
            try:
                self.socks[i].close()
            except OSError:
                pass
"""
_EGRESS_RELAY_SOURCE_LINE = sys._getframe().f_lineno - 1 - _EGRESS_RELAY_SOURCE.count("\n")


def _start_egress_relay():
    """Start the egress relay when CODE_EXECUTOR_EGRESS_PORT is set (non-empty).
    Returns None (egress off, or the relay is listening), or why it cannot run."""
    port = os.environ.get(_EGRESS_PORT_ENV)
    if not port:
        return None
    path = os.environ.get(_EGRESS_SOCKET_ENV) or _DEFAULT_EGRESS_SOCKET
    g = globals()
    if "_egress_relay_start" not in g:
        _compile_here(_EGRESS_RELAY_SOURCE, _EGRESS_RELAY_SOURCE_LINE)
    try:
        return g["_egress_relay_start"](port, path)
    except Exception as e:  # pragma: no cover - a thread that cannot start (pids limit)...
        return f"egress relay unavailable: {type(e).__name__}: {_safe_str(e)}"


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

# Given by the server to containers it prepares ahead (the warm pool): nobody waits for
# them yet, so what user code and the tool API commonly need is loaded before the request
# instead of on its path. Cold containers skip it: there the request is already waiting.
_PRELOAD_FLAG = "--preload"


def _preload():
    import asyncio  # noqa: F401  (top-level await, call_mcp_tool)
    import json  # noqa: F401
    import socket  # noqa: F401  (the tool proxy's Unix socket)

    _tool_api_class()


def main():
    global _USER_GLOBALS
    pid = _getpid()
    if _PRELOAD_FLAG in sys.argv[1:]:
        _preload()
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

    # Network egress: listening before the user's code runs (no race with its first
    # connection). The caller asked for network: without the relay the code would only
    # meet confusing connection errors, so the execution fails here instead.
    why = _start_egress_relay()
    if why is not None:
        del token
        _print_stderr(f"code-executor runner: {_EGRESS_ERROR}: {why}\n")
        _finish(nonce, _EXIT_RUNNER_ERROR, {"type": _EGRESS_ERROR, "message": why, "traceback": ""})

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
