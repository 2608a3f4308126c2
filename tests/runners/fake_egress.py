"""A fake of the server's per-execution egress proxy, and origin servers behind it, for
the runner tests (docs/runner-protocol.md "Network egress").

FakeEgress speaks HTTP proxy protocol on a Unix socket, served by threads of the test
process, like the real egress proxy does on /run/mcp/egress.sock:

    CONNECT host:port HTTP/1.1       -> 200, then a byte tunnel to the target
    GET http://host[:port]/path ...  -> the request, in origin form, forwarded to the
                                        target; the answer relayed back (any method)

Targets are looked up in `routes` ({"name:port": ("127.0.0.1", port)}), so the tests use
names that do not resolve (`origin.test`, `echo.test`): a client can only reach them
through this proxy, never directly. An unknown target gets 403, anything else 400. Every
request head is recorded in `requests` before it is answered.

Origin servers: OriginHttp (HTTP/1.1, optionally TLS) and EchoServer (TCP echo), both on
127.0.0.1 with a free port.
"""

import hashlib
import http.server
import os
import socket
import socketserver
import ssl
import subprocess
import tempfile
import threading
import time
from urllib.parse import parse_qs, urlsplit

MAX_HEAD = 64 * 1024


def _pipe(src, dst, counter, lock):
    """Copy src -> dst until EOF, then pass the EOF on (half-close)."""
    try:
        while True:
            data = src.recv(65536)
            if not data:
                break
            dst.sendall(data)
            with lock:
                counter[0] += len(data)
        dst.shutdown(socket.SHUT_WR)
    except OSError:
        for s in (src, dst):
            try:
                s.shutdown(socket.SHUT_RDWR)
            except OSError:
                pass


def tunnel(a, b):
    """Relay a <-> b until both directions are done; returns (bytes a->b, bytes b->a)."""
    lock = threading.Lock()
    ab, ba = [0], [0]
    t = threading.Thread(target=_pipe, args=(b, a, ba, lock), daemon=True)
    t.start()
    _pipe(a, b, ab, lock)
    t.join()
    return ab[0], ba[0]


def _read_head(sock):
    """(head bytes without the blank line, bytes already read after it) or (None, ...)."""
    buf = b""
    while b"\r\n\r\n" not in buf:
        if len(buf) > MAX_HEAD:
            return None, b""
        data = sock.recv(65536)
        if not data:
            return None, buf
        buf += data
    head, rest = buf.split(b"\r\n\r\n", 1)
    return head, rest


class _EgressHandler(socketserver.BaseRequestHandler):
    def handle(self):
        fake = self.server.fake
        client = self.request
        head, rest = _read_head(client)
        if head is None:
            with fake.lock:
                fake.empty_connections += 1
            return
        lines = head.decode("latin-1").split("\r\n")
        method, target, _version = (lines[0].split(" ") + ["", ""])[:3]
        headers = {}
        for line in lines[1:]:
            name, _, value = line.partition(":")
            headers[name.strip().lower()] = value.strip()
        record = {"method": method, "target": target, "headers": headers, "t": time.monotonic()}
        with fake.lock:
            fake.requests.append(record)
        if method == "CONNECT":
            host_port = target
            origin_head = None
        else:
            url = urlsplit(target)
            if url.scheme != "http" or not url.hostname:
                return self._answer(400, "not an absolute http:// URI")
            host_port = f"{url.hostname}:{url.port or 80}"
            path = (url.path or "/") + (f"?{url.query}" if url.query else "")
            kept = [l for l in lines[1:] if not l.lower().startswith(("proxy-", "connection:"))]
            origin_head = "\r\n".join([f"{method} {path} HTTP/1.1", *kept, "Connection: close", "", ""])
        address = fake.routes.get(host_port)
        if address is None:
            return self._answer(403, f"egress to {host_port} is not allowed")
        try:
            upstream = socket.create_connection(address, timeout=10)
        except OSError as e:
            return self._answer(502, f"cannot connect to {host_port}: {e}")
        upstream.settimeout(None)
        with upstream:
            if origin_head is None:
                client.sendall(b"HTTP/1.1 200 Connection established\r\n\r\n")
            else:
                upstream.sendall(origin_head.encode("latin-1"))
            if rest:
                upstream.sendall(rest)
            up, down = tunnel(client, upstream)
        record["bytes_up"] = up + len(rest)
        record["bytes_down"] = down

    def _answer(self, status, message):
        body = message.encode()
        self.request.sendall(
            f"HTTP/1.1 {status} Fake\r\nContent-Length: {len(body)}\r\nConnection: close\r\n\r\n".encode()
            + body
        )


class _UnixServer(socketserver.ThreadingUnixStreamServer):
    daemon_threads = True


class FakeEgress:
    """The fake egress proxy on a fresh Unix socket (short path: AF_UNIX allows ~108 bytes).
    `backlog`: the socket's listen backlog (socketserver's default: 5); `accept_after`:
    seconds during which the socket listens but nothing is accepted (a busy proxy)."""

    def __init__(self, routes, backlog=None, accept_after=0):
        self.routes = dict(routes)
        self.requests = []
        self.empty_connections = 0
        self.lock = threading.Lock()
        self.dir = tempfile.mkdtemp(prefix="ce-egress-", dir="/tmp")
        self.path = os.path.join(self.dir, "egress.sock")
        self._server = _UnixServer(self.path, _EgressHandler, bind_and_activate=False)
        if backlog is not None:
            self._server.request_queue_size = backlog
        self._server.server_bind()
        self._server.server_activate()
        self._server.fake = self

        def serve():
            time.sleep(accept_after)
            self._server.serve_forever(0.05)

        threading.Thread(target=serve, daemon=True).start()

    def seen(self):
        with self.lock:
            return list(self.requests)

    def close(self):
        self._server.shutdown()
        self._server.server_close()
        try:
            os.unlink(self.path)
        except FileNotFoundError:
            pass
        os.rmdir(self.dir)


# --------------------------------------------------------------------------- origins


def big_body(n):
    """n deterministic, not trivially compressible bytes."""
    out = bytearray()
    block = hashlib.sha256(b"seed").digest()
    while len(out) < n:
        block = hashlib.sha256(block).digest()
        out += block
    return bytes(out[:n])


class _OriginHandler(http.server.BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"
    server_version = "fake-origin"

    def log_message(self, *args):
        pass

    def _reply(self, status, body, ctype="text/plain"):
        self.send_response(status)
        self.send_header("Content-Type", ctype)
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def do_GET(self):
        url = urlsplit(self.path)
        self.server.origin.paths.append(self.path)
        if url.path == "/hello":
            return self._reply(200, f"hello from origin {self.headers.get('Host')}".encode())
        if url.path == "/big":
            return self._reply(200, big_body(int(parse_qs(url.query)["n"][0])), "application/octet-stream")
        if url.path == "/slow":
            time.sleep(float(parse_qs(url.query).get("s", ["0.3"])[0]))
            return self._reply(200, b"slow " + url.query.encode())
        return self._reply(404, b"no such page")

    def do_POST(self):
        self.server.origin.paths.append(self.path)
        body = self.rfile.read(int(self.headers.get("Content-Length") or 0))
        if self.path == "/sha256":
            return self._reply(200, f"{len(body)} {hashlib.sha256(body).hexdigest()}".encode())
        if self.path == "/echo":
            return self._reply(200, body, "application/octet-stream")
        return self._reply(404, b"no such page")


class _TcpServer(socketserver.ThreadingTCPServer):
    daemon_threads = True
    allow_reuse_address = True


class OriginHttp:
    """An HTTP/1.1 origin on 127.0.0.1 (TLS when tls=(certfile, keyfile))."""

    def __init__(self, tls=None):
        self.paths = []
        self._server = _TcpServer(("127.0.0.1", 0), _OriginHandler)
        self._server.origin = self
        if tls is not None:
            ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
            ctx.load_cert_chain(*tls)
            self._server.socket = ctx.wrap_socket(self._server.socket, server_side=True)
        self.port = self._server.server_address[1]
        threading.Thread(target=self._server.serve_forever, args=(0.05,), daemon=True).start()

    def close(self):
        self._server.shutdown()
        self._server.server_close()


class _EchoHandler(socketserver.BaseRequestHandler):
    def handle(self):
        s = self.request
        while True:
            data = s.recv(65536)
            if not data:
                break
            s.sendall(data)
        s.shutdown(socket.SHUT_WR)  # echo the half-close too


class EchoServer:
    """A TCP echo server on 127.0.0.1: echoes everything, then EOF after the client's EOF."""

    def __init__(self):
        self._server = _TcpServer(("127.0.0.1", 0), _EchoHandler)
        self.port = self._server.server_address[1]
        threading.Thread(target=self._server.serve_forever, args=(0.05,), daemon=True).start()

    def close(self):
        self._server.shutdown()
        self._server.server_close()


def make_tls_cert(directory, hostname):
    """(ca.pem, cert.pem, key.pem) in `directory`: a throwaway CA and a certificate for
    `hostname` signed by it, made with the openssl command. None without openssl."""
    ca_key, ca, key, csr, cert = (
        os.path.join(directory, n) for n in ("ca.key", "ca.pem", "key.pem", "req.csr", "cert.pem")
    )
    ext = os.path.join(directory, "ext.cnf")
    with open(ext, "w") as f:
        f.write(
            f"subjectAltName=DNS:{hostname}\nbasicConstraints=CA:FALSE\n"
            "keyUsage=digitalSignature,keyEncipherment\nextendedKeyUsage=serverAuth\n"
        )
    steps = [
        ["openssl", "req", "-x509", "-newkey", "rsa:2048", "-nodes", "-keyout", ca_key, "-out", ca,
         "-days", "2", "-subj", "/CN=code-executor test CA",
         "-addext", "basicConstraints=critical,CA:TRUE", "-addext", "keyUsage=critical,keyCertSign,cRLSign"],
        ["openssl", "req", "-newkey", "rsa:2048", "-nodes", "-keyout", key, "-out", csr, "-subj", f"/CN={hostname}"],
        ["openssl", "x509", "-req", "-in", csr, "-CA", ca, "-CAkey", ca_key, "-CAcreateserial",
         "-out", cert, "-days", "2", "-extfile", ext],
    ]
    for cmd in steps:
        try:
            p = subprocess.run(cmd, capture_output=True, timeout=60)
        except FileNotFoundError:
            return None
        if p.returncode != 0:
            raise RuntimeError(f"{' '.join(cmd)} failed: {p.stderr.decode(errors='replace')}")
    return ca, cert, key
