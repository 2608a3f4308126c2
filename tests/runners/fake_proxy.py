"""A fake of the per-execution tool proxy (src/proxy/routes.rs) for the runner tests.

HTTP/1.1 on a Unix socket, served by a thread of the test process. Same routes, bodies
and status codes as the real proxy:

    POST /v1/tools/call   {"name": str, "arguments": object} -> 200 CallToolResult
    GET  /v1/tools?q=&limit=                                 -> 200 {"tools": [...]}
    GET  /v1/tools/<name>                                    -> 200 tool | 404
    errors: {"error": message} with 400, 401, 403, 404, 413, 422, 429, 502, 504

Tools (see TOOLS): results of every shape, a slow one (for concurrency), one answered
with a chunked body, and `mcp__err__<status>`, which answers that status with the
message ERROR_MESSAGE.format(status=...). Every request is recorded in `requests`.
"""

import json
import os
import socketserver
import tempfile
import threading
import time
from http.server import BaseHTTPRequestHandler
from urllib.parse import parse_qs, unquote, urlsplit

SLOW_SECONDS = 0.3
ERROR_MESSAGE = "fake proxy says {status}: details for argument 'x'"


def _tool(name, description, schema=None):
    return {
        "name": name,
        "server": name.split("__")[1],
        "description": description,
        "allowed": not name.startswith("mcp__other__"),
        "inputSchema": schema or {"type": "object", "properties": {}},
    }


TOOLS = [
    _tool("mcp__fake__structured", "Returns structured content and some text"),
    _tool("mcp__fake__json_text", "Returns JSON as a text block"),
    _tool("mcp__fake__plain_text", "Returns plain text in two text blocks and an image"),
    _tool("mcp__fake__image", "Returns only an image block"),
    _tool("mcp__fake__is_error", "A tool that reports an error with isError"),
    _tool("mcp__fake__echo", "Echoes the request body it received"),
    _tool(
        "mcp__fake__slow",
        "Sleeps a while, then returns its argument",
        {"type": "object", "properties": {"i": {"type": "integer"}}, "required": ["i"]},
    ),
    _tool("mcp__fake__chunked", "Answered with a chunked response body"),
    _tool("mcp__time__get_current_time", "Get the current time in a timezone"),
    _tool("mcp__other__read_file", "Read a file from disk (not allowed)"),
]


def _text(*texts):
    return [{"type": "text", "text": t} for t in texts]


def _call(name, args):
    """(status, JSON object) for a tool call that passed the proxy's checks."""
    if name == "mcp__fake__structured":
        return 200, {"content": _text('{"ignored": true}'), "structuredContent": {"answer": 42, "args": args}}
    if name == "mcp__fake__json_text":
        return 200, {"content": _text(json.dumps({"items": [1, 2, 3], "echo": args}))}
    if name == "mcp__fake__plain_text":
        image = {"type": "image", "data": "AAAA", "mimeType": "image/png"}
        return 200, {"content": [*_text("hello"), image, *_text("world: not JSON")]}
    if name == "mcp__fake__image":
        return 200, {"content": [{"type": "image", "data": "AAAA", "mimeType": "image/png"}]}
    if name == "mcp__fake__is_error":
        return 200, {"content": _text("disk on fire"), "isError": True}
    if name == "mcp__fake__slow":
        time.sleep(SLOW_SECONDS)
        return 200, {"content": _text(str(args.get("i"))), "structuredContent": {"i": args.get("i")}}
    if name == "mcp__time__get_current_time":
        return 200, {"content": _text(json.dumps({"timezone": args.get("timezone"), "datetime": "2026-01-01T00:00:00"}))}
    if name == "mcp__fake__chunked":
        return 200, {"content": _text("x" * 5000 + "END")}
    raise AssertionError(name)


def _score(tool, query):
    name, desc = tool["name"].lower(), tool["description"].lower()
    score = 0
    for word in query.lower().split():
        if word not in name and word not in desc:
            return None
        score += 3 if word in name else 1
    return score


class _Handler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"
    server_version = "fake-proxy"

    def log_message(self, *args):
        pass

    def _send(self, status, obj, chunked=False):
        # Recorded before the answer leaves: the runner may exit right after reading it.
        self._record["t1"] = time.monotonic()
        self._record["status"] = status
        body = json.dumps(obj).encode()
        self.send_response(status)
        self.send_header("Content-Type", "application/json")
        if chunked:
            self.send_header("Transfer-Encoding", "chunked")
            self.end_headers()
            for i in range(0, len(body), 1000):
                part = body[i:i + 1000]
                self.wfile.write(b"%x\r\n%s\r\n" % (len(part), part))
            self.wfile.write(b"0\r\n\r\n")
        else:
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            self.wfile.write(body)

    def _fail(self, status, message):
        self._send(status, {"error": message})

    def _handle(self, method):
        proxy = self.server.fake
        t0 = time.monotonic()
        length = int(self.headers.get("Content-Length") or 0)
        body = self.rfile.read(length) if length else b""
        record = {
            "method": method,
            "path": self.path,
            "auth": self.headers.get("Authorization"),
            "connection": self.headers.get("Connection"),
            "body": body,
            "t0": t0,
        }
        self._record = record
        with proxy.lock:
            proxy.requests.append(record)
        self._route(proxy, method, body)

    def _route(self, proxy, method, body):
        if self.headers.get("Authorization") != f"Bearer {proxy.token}":
            return self._fail(401, "missing or wrong bearer token")
        url = urlsplit(self.path)
        if method == "POST" and url.path == "/v1/tools/call":
            try:
                req = json.loads(body)
                assert isinstance(req, dict) and set(req) <= {"name", "arguments"}
                assert isinstance(req["name"], str)
                assert req.get("arguments") is None or isinstance(req["arguments"], dict)
            except (ValueError, AssertionError, KeyError):
                return self._fail(400, 'request body must be {"name": string, "arguments": object}')
            name, args = req["name"], req.get("arguments") or {}
            if name.startswith("mcp__err__"):
                return self._fail(int(name.rsplit("_", 1)[1]), ERROR_MESSAGE.format(status=name.rsplit("_", 1)[1]))
            if name == "mcp__fake__echo":
                return self._send(200, {"content": _text("echo"), "structuredContent": {"body": req}})
            if name.startswith("mcp__other__"):
                return self._fail(403, f'tool "{name}" is not allowed: allowedTools is ["mcp__fake__*"]')
            if not any(t["name"] == name for t in TOOLS):
                return self._fail(404, f'unknown tool "{name}": list tools with discover_mcp_tools()')
            status, obj = _call(name, args)
            return self._send(status, obj, chunked=name == "mcp__fake__chunked")
        if method == "GET" and url.path == "/v1/tools":
            qs = parse_qs(url.query)
            q = qs.get("q", [""])[0]
            scored = [(t, 0 if not q.strip() else _score(t, q)) for t in TOOLS]
            scored = [(t, s) for t, s in scored if s is not None]
            scored.sort(key=lambda e: -e[1])
            tools = [t for t, _ in scored]
            if "limit" in qs:
                tools = tools[: int(qs["limit"][0])]
            return self._send(200, {"tools": tools})
        if method == "GET" and url.path.startswith("/v1/tools/"):
            name = unquote(url.path[len("/v1/tools/"):])
            for t in TOOLS:
                if t["name"] == name:
                    return self._send(200, t)
            return self._fail(404, f"unknown tool {name!r}")
        return self._fail(404, "no such route")

    def do_GET(self):
        self._handle("GET")

    def do_POST(self):
        self._handle("POST")


class _Server(socketserver.ThreadingUnixStreamServer):
    daemon_threads = True
    allow_reuse_address = True


class FakeProxy:
    """Serve the fake proxy on a fresh socket (short path: AF_UNIX allows ~108 bytes)."""

    def __init__(self, token):
        self.token = token
        self.dir = tempfile.mkdtemp(prefix="ce-proxy-", dir="/tmp")
        self.path = os.path.join(self.dir, "proxy.sock")
        self.requests = []
        self.lock = threading.Lock()
        self._server = _Server(self.path, _Handler)
        self._server.fake = self
        self._thread = threading.Thread(target=self._server.serve_forever, daemon=True)
        self._thread.start()

    def calls(self):
        """The recorded POST /v1/tools/call requests, parsed."""
        with self.lock:
            return [dict(r, json=json.loads(r["body"])) for r in self.requests if r["method"] == "POST"]

    def close(self):
        self._server.shutdown()
        self._server.server_close()
        for p in (self.path,):
            try:
                os.unlink(p)
            except FileNotFoundError:
                pass
        os.rmdir(self.dir)
