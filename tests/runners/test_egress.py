"""Tests of the runners' network egress relay (docs/runner-protocol.md "Network egress").

When CODE_EXECUTOR_EGRESS_PORT is set, each runner listens on 127.0.0.1:<port> before
the user's code runs and relays every connection byte for byte to the egress proxy's
Unix socket (here: fake_egress.FakeEgress, pointed at with CODE_EXECUTOR_EGRESS_SOCKET).
The user's code reaches the network the ordinary way, through HTTP_PROXY/HTTPS_PROXY.

The origins are on 127.0.0.1 but addressed by names that do not resolve (origin.test,
echo.test, secure.test): only the fake egress proxy knows where they are, so a request
that arrives went through relay -> egress proxy, and each test also checks that the
proxy saw it. The host is not a container: a free port stands in for 18080.

Deno runs with the command line the server builds (deno_command below: the contract
written down in docs/runner-protocol.md), plus --allow-env for the two test-only socket
overrides.

    DENO_BIN=/path/to/deno python3 -m pytest tests/runners -q
"""

import hashlib
import json
import os
import socket
import subprocess
import sys
import time
from pathlib import Path

import pytest

sys.path.insert(0, str(Path(__file__).resolve().parent))  # also under --import-mode=importlib

from fake_egress import EchoServer, FakeEgress, OriginHttp, big_body, make_tls_cert  # noqa: E402
from fake_proxy import FakeProxy  # noqa: E402
from test_runners import (  # noqa: E402
    DENO,
    DENO_FLAGS,
    DENO_RUNNER,
    LANGS,
    PYTHON,
    TOKEN,
    checked,
    deno_env,
    frame,
    needs_deno,
    run_cmd,
    runner_cmd,
    runner_env,
)

PORT_ENV = "CODE_EXECUTOR_EGRESS_PORT"
EGRESS_SOCKET_ENV = "CODE_EXECUTOR_EGRESS_SOCKET"
PROXY_SOCKET_ENV = "CODE_EXECUTOR_PROXY_SOCKET"
IMAGE_PROXY_SOCKET = "/run/mcp/proxy.sock"
IMAGE_EGRESS_SOCKET = "/run/mcp/egress.sock"
BIG = 5 * 1024 * 1024


# --------------------------------------------------------------------------- the contract


def deno_net_hosts(policy_hosts):
    """Deno --allow-net entries for the policy's hosts (`name`, `*.name`, either with an
    optional `:port`; without one: ports 80 and 443), as the server maps them."""
    out = []
    for h in policy_hosts:
        has_port = "]:" in h if h.startswith("[") else ":" in h
        if has_port:
            out.append(h)
        else:
            out += [f"{h}:80", f"{h}:443"]
    return out


def deno_command(
    *,
    egress_port=None,
    net_hosts=(),
    read=(),
    write=(),
    proxy_socket=IMAGE_PROXY_SOCKET,
    egress_socket=IMAGE_EGRESS_SOCKET,
    runner="/opt/code-executor/runner.js",
    deno="/usr/local/bin/deno",
    test_env=False,
):
    """The Deno command line the server builds (docs/runner-protocol.md). `test_env`: also
    let the runner read the two socket overrides (tests only)."""
    reads = [proxy_socket]
    writes = [proxy_socket]
    nets = [f"unix:{proxy_socket}"]
    envs = []
    if egress_port is not None:
        reads.append(egress_socket)
        writes.append(egress_socket)
        nets += [f"unix:{egress_socket}", f"127.0.0.1:{egress_port}", *deno_net_hosts(net_hosts)]
        envs.append(PORT_ENV)
    reads += [*read, *write]
    writes += list(write)
    for p in reads:
        assert p.startswith("/") and "," not in p, p  # Deno cannot express a comma in a path
    argv = [
        deno, *DENO_FLAGS,
        "--allow-read=" + ",".join(reads),
        "--allow-write=" + ",".join(writes),
        "--allow-net=" + ",".join(nets),
    ]
    if test_env:
        envs += [EGRESS_SOCKET_ENV, PROXY_SOCKET_ENV]
    if envs:
        argv.append("--allow-env=" + ",".join(envs))
    return [*argv, runner]


def egress_env(port):
    """What the server puts in the container's environment for an egress execution."""
    url = f"http://127.0.0.1:{port}"
    return {
        PORT_ENV: str(port),
        "HTTP_PROXY": url,
        "HTTPS_PROXY": url,
        "http_proxy": url,
        "https_proxy": url,
        "NO_PROXY": "",
        "no_proxy": "",
    }


def free_port():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def assert_refused(port):
    with pytest.raises(ConnectionRefusedError):
        socket.create_connection(("127.0.0.1", port), timeout=5).close()


# --------------------------------------------------------------------------- fixtures


@pytest.fixture(scope="module")
def tls(tmp_path_factory):
    return make_tls_cert(str(tmp_path_factory.mktemp("tls")), "secure.test")


@pytest.fixture
def origins(tls):
    http = OriginHttp()
    echo = EchoServer()
    secure = OriginHttp(tls=tls[1:]) if tls else None
    yield {"http": http, "echo": echo, "secure": secure}
    for o in (http, echo, secure):
        if o is not None:
            o.close()


@pytest.fixture
def egress(origins):
    routes = {
        "origin.test:80": ("127.0.0.1", origins["http"].port),
        "api.origin.test:80": ("127.0.0.1", origins["http"].port),
        "echo.test:7": ("127.0.0.1", origins["echo"].port),
    }
    if origins["secure"] is not None:
        routes["secure.test:443"] = ("127.0.0.1", origins["secure"].port)
    e = FakeEgress(routes)
    yield e
    e.close()


@pytest.fixture
def net(deno_dir, egress):
    """net(lang, code, ...) -> Outcome: the runner with egress on (port: a free one,
    socket: the fake egress proxy's), as the server would start it."""

    def _run(
        lang,
        code,
        *,
        socket_path=None,
        port=None,
        egress_on=True,
        net_hosts=("origin.test", "*.origin.test", "echo.test:7", "secure.test"),
        read=(),
        write=(),
        proxy_socket=IMAGE_PROXY_SOCKET,
        extra_env=None,
        deno_args=None,
        timeout=60,
    ):
        port = port or free_port()
        socket_path = socket_path or egress.path
        data, nonce = frame(code)
        if lang == "python":
            cmd = runner_cmd(lang)
            env = runner_env(lang, deno_dir)
        else:
            cmd = deno_args or deno_command(
                egress_port=port if egress_on else None,
                net_hosts=net_hosts,
                read=read,
                write=write,
                proxy_socket=proxy_socket,
                egress_socket=socket_path,
                runner=str(DENO_RUNNER),
                deno=DENO,
                test_env=True,
            )
            env = deno_env(deno_dir)
        if egress_on:
            env.update(egress_env(port))
            env[EGRESS_SOCKET_ENV] = socket_path
        env[PROXY_SOCKET_ENV] = proxy_socket
        env.update(extra_env or {})
        t0 = time.monotonic()
        o = run_cmd(cmd, data, env, timeout)
        o.elapsed = time.monotonic() - t0
        o.port = port
        return checked(o, nonce)

    return _run


def ok_lines(o):
    assert o.result["success"] is True, (o.out, o.err)
    return o.out.splitlines()


# --------------------------------------------------------------------------- HTTP


HTTP_GET = {
    "python": """
import urllib.request
with urllib.request.urlopen("http://origin.test/hello?x=1", timeout=30) as r:
    print(r.status, r.read().decode())
""",
    "deno": """
const r = await fetch("http://origin.test/hello?x=1");
console.log(r.status, await r.text());
""",
}


@pytest.mark.parametrize("lang", LANGS)
def test_http_get_goes_through_relay_and_egress_proxy(net, egress, origins, lang):
    o = net(lang, HTTP_GET[lang])
    assert ok_lines(o) == ["200 hello from origin origin.test"]
    (req,) = egress.seen()
    # HTTP_PROXY was honoured: the proxy got the absolute URI, not a direct connection
    assert req["method"] == "GET" and req["target"] == "http://origin.test/hello?x=1"
    assert req["headers"]["host"] == "origin.test"
    assert origins["http"].paths == ["/hello?x=1"]
    # the relay is gone with the runner
    assert_refused(o.port)


@pytest.mark.parametrize("lang", LANGS)
def test_refusal_by_the_egress_proxy_reaches_the_code(net, egress, lang):
    code = {
        "python": """
import urllib.request, urllib.error
try:
    urllib.request.urlopen("http://not-allowed.test/", timeout=30)
except urllib.error.HTTPError as e:
    print(e.code, e.read().decode())
""",
        "deno": """
const r = await fetch("http://not-allowed.test/");
console.log(r.status, await r.text());
""",
    }[lang]
    o = net(lang, code, net_hosts=("not-allowed.test",))
    assert ok_lines(o) == ["403 egress to not-allowed.test:80 is not allowed"]
    assert [r["target"] for r in egress.seen()] == ["http://not-allowed.test/"]


HTTPS_GET = {
    "python": """
import ssl, urllib.request
ctx = ssl.create_default_context(cafile=CAFILE)
with urllib.request.urlopen("https://secure.test/hello", context=ctx, timeout=30) as r:
    print(r.status, r.read().decode())
""",
    "deno": """
const r = await fetch("https://secure.test/hello");
console.log(r.status, await r.text());
""",
}


@pytest.mark.parametrize("lang", LANGS)
def test_https_goes_through_connect_end_to_end(net, egress, tls, lang):
    if tls is None:
        pytest.skip("no openssl command to make a test certificate")
    ca = tls[0]
    # The test CA: Python gets it in the code, Deno through DENO_CERT (the sandbox itself
    # uses the image's CA store).
    code = HTTPS_GET[lang].replace("CAFILE", json.dumps(ca))
    o = net(lang, code, extra_env={"DENO_CERT": ca} if lang == "deno" else None)
    assert ok_lines(o) == ["200 hello from origin secure.test"]
    (req,) = egress.seen()
    assert req["method"] == "CONNECT" and req["target"] == "secure.test:443"


# --------------------------------------------------------------------------- raw tunnels


CONNECT_ECHO = {
    "python": """
import socket
s = socket.create_connection(("127.0.0.1", PORT), timeout=30)
s.sendall(b"CONNECT echo.test:7 HTTP/1.1\\r\\nHost: echo.test:7\\r\\n\\r\\n")
head = b""
while b"\\r\\n\\r\\n" not in head:
    head += s.recv(1)
print(head.split(b"\\r\\n")[0].decode())
payload = bytes(range(256)) * 4096  # 1 MiB, every byte value
s.sendall(payload)
s.shutdown(socket.SHUT_WR)  # half-close: the echo answers it with its own EOF
back = bytearray()
while chunk := s.recv(65536):
    back += chunk
print(len(back), back == payload)
""",
    "deno": """
const c = await Deno.connect({ hostname: "127.0.0.1", port: PORT });
await c.write(new TextEncoder().encode("CONNECT echo.test:7 HTTP/1.1\\r\\nHost: echo.test:7\\r\\n\\r\\n"));
let head = "";
const one = new Uint8Array(1);
while (!head.endsWith("\\r\\n\\r\\n")) { await c.read(one); head += String.fromCharCode(one[0]); }
console.log(head.split("\\r\\n")[0]);
const payload = new Uint8Array(256 * 4096).map((_, i) => i % 256);
const reading = (async () => {
  const chunks = []; let total = 0; const buf = new Uint8Array(65536);
  for (;;) { const n = await c.read(buf); if (n === null) break; chunks.push(buf.slice(0, n)); total += n; }
  const all = new Uint8Array(total); let off = 0; for (const ch of chunks) { all.set(ch, off); off += ch.length; }
  return all;
})();
for (let off = 0; off < payload.length;) off += await c.write(payload.subarray(off));
await c.closeWrite();
const back = await reading;
console.log(back.length, back.length === payload.length && back.every((b, i) => b === payload[i]) ? "True" : "False");
c.close();
""",
}


@pytest.mark.parametrize("lang", LANGS)
def test_connect_tunnel_carries_bytes_both_ways_with_half_close(net, egress, lang):
    port = free_port()
    o = net(lang, CONNECT_ECHO[lang].replace("PORT", str(port)), port=port)
    assert ok_lines(o) == ["HTTP/1.1 200 Connection established", f"{256 * 4096} True"], o.err
    (req,) = egress.seen()
    assert req["method"] == "CONNECT" and req["target"] == "echo.test:7"
    # The fake proxy counts a tunnel's bytes when both of its ends have closed, which may
    # come a moment after the code has printed.
    deadline = time.monotonic() + 10
    while "bytes_down" not in req and time.monotonic() < deadline:
        time.sleep(0.02)
        (req,) = egress.seen()
    assert req["bytes_up"] == req["bytes_down"] == 256 * 4096


# --------------------------------------------------------------------------- volume, concurrency


LARGE = {
    "python": f"""
import hashlib, urllib.request
with urllib.request.urlopen("http://origin.test/big?n={BIG}", timeout=60) as r:
    body = r.read()
print(len(body), hashlib.sha256(body).hexdigest())
up = bytes(reversed(body))
req = urllib.request.Request("http://origin.test/sha256", data=up, method="POST")
with urllib.request.urlopen(req, timeout=60) as r:
    print(r.read().decode())
print(len(up), hashlib.sha256(up).hexdigest())
""",
    "deno": f"""
const hex = async (b: Uint8Array) => Array.from(new Uint8Array(await crypto.subtle.digest("SHA-256", b)), (x) => x.toString(16).padStart(2, "0")).join("");
const body = new Uint8Array(await (await fetch("http://origin.test/big?n={BIG}")).arrayBuffer());
console.log(body.length, await hex(body));
const up = body.slice().reverse();
console.log(await (await fetch("http://origin.test/sha256", {{ method: "POST", body: up }})).text());
console.log(up.length, await hex(up));
""",
}


@pytest.mark.parametrize("lang", LANGS)
def test_large_payloads_round_trip_intact(net, egress, lang):
    o = net(lang, LARGE[lang])
    down, up_seen, up_sent = ok_lines(o)
    body = big_body(BIG)
    assert down == f"{BIG} {hashlib.sha256(body).hexdigest()}"
    assert up_seen == up_sent == f"{BIG} {hashlib.sha256(bytes(reversed(body))).hexdigest()}"
    assert [r["method"] for r in egress.seen()] == ["GET", "POST"]


CONCURRENT = {
    "python": """
import time, urllib.request
from concurrent.futures import ThreadPoolExecutor
def get(i):
    with urllib.request.urlopen(f"http://origin.test/slow?s=0.5&i={i}", timeout=30) as r:
        return r.read().decode()
t0 = time.monotonic()
with ThreadPoolExecutor(8) as pool:
    results = list(pool.map(get, range(8)))
print(results == [f"slow s=0.5&i={i}" for i in range(8)], round(time.monotonic() - t0, 2))
""",
    "deno": """
const t0 = performance.now();
const results = await Promise.all([...Array(8).keys()].map(async (i) => (await fetch(`http://origin.test/slow?s=0.5&i=${i}`)).text()));
console.log(results.every((r, i) => r === `slow s=0.5&i=${i}`) ? "True" : "False", ((performance.now() - t0) / 1000).toFixed(2));
""",
}


@pytest.mark.parametrize("lang", LANGS)
def test_concurrent_connections_overlap(net, egress, lang):
    o = net(lang, CONCURRENT[lang])
    ((same, secs),) = [line.split() for line in ok_lines(o)]
    assert same == "True"
    # 8 requests of 0.5 s each: one after the other would take 4 s
    assert float(secs) < 2.5, secs
    assert sorted(r["target"] for r in egress.seen()) == sorted(
        f"http://origin.test/slow?s=0.5&i={i}" for i in range(8)
    )


BURST = {
    "python": """
import urllib.request
from concurrent.futures import ThreadPoolExecutor
def get(i):
    with urllib.request.urlopen(f"http://origin.test/hello?i={i}", timeout=30) as r:
        return r.read().decode()
with ThreadPoolExecutor(6) as pool:
    print(all(r == "hello from origin origin.test" for r in pool.map(get, range(6))))
""",
    "deno": """
const rs = await Promise.all([...Array(6).keys()].map(async (i) => (await fetch(`http://origin.test/hello?i=${i}`)).text()));
console.log(rs.every((r) => r === "hello from origin origin.test") ? "True" : "False");
""",
}


@pytest.mark.parametrize("lang", LANGS)
def test_busy_egress_proxy_connections_wait_for_accept(net, origins, lang):
    # The proxy's accept backlog is full for a while: connections must wait for it, not
    # fail (Deno's Unix connect fails at once with WouldBlock then: the relay retries).
    busy = FakeEgress({"origin.test:80": ("127.0.0.1", origins["http"].port)}, backlog=1, accept_after=0.5)
    try:
        o = net(lang, BURST[lang], socket_path=busy.path)
        assert ok_lines(o) == ["True"]
        assert len(busy.seen()) == 6
    finally:
        busy.close()


def test_python_relay_serves_asyncio_code(net, egress):
    code = """
import asyncio
async def tunnel(i):
    r, w = await asyncio.open_connection("127.0.0.1", PORT)
    w.write(b"CONNECT echo.test:7 HTTP/1.1\\r\\n\\r\\n")
    await r.readuntil(b"\\r\\n\\r\\n")
    msg = f"message {i} ".encode() * 1000
    w.write(msg)
    await w.drain()
    w.write_eof()
    back = await r.read()
    w.close()
    return back == msg
print(await asyncio.gather(*(tunnel(i) for i in range(10))))
"""
    port = free_port()
    o = net("python", code.replace("PORT", str(port)), port=port)
    assert ok_lines(o) == [str([True] * 10)]
    assert len(egress.seen()) == 10


def test_python_relay_serves_child_processes(net, egress):
    # pip, curl, a second interpreter...: children inherit HTTP_PROXY and reach the relay
    code = """
import subprocess, sys
child = 'import urllib.request; print(urllib.request.urlopen("http://origin.test/hello", timeout=30).read().decode())'
print(subprocess.run([sys.executable, "-I", "-c", child], capture_output=True, text=True, timeout=60).stdout.strip())
"""
    o = net("python", code)
    assert ok_lines(o) == ["hello from origin origin.test"]
    assert [r["target"] for r in egress.seen()] == ["http://origin.test/hello"]


def test_python_relay_keeps_working_while_main_thread_is_busy(net, egress):
    # A thread fetches while the main thread spins in pure Python (holding the GIL).
    code = """
import threading, time, urllib.request
out = []
t = threading.Thread(target=lambda: out.append(urllib.request.urlopen("http://origin.test/hello", timeout=30).read()))
t.start()
deadline = time.monotonic() + 20
while t.is_alive() and time.monotonic() < deadline:
    sum(range(1000))
print(out)
"""
    o = net("python", code)
    assert ok_lines(o) == ["[b'hello from origin origin.test']"]


# --------------------------------------------------------------------------- egress off / broken


OFF = {
    "python": """
import sys
{baseline}
print(sorted(m for m in ("socket", "_socket", "selectors", "select", "threading") if m in sys.modules and m not in baseline))
import socket
try:
    socket.create_connection(("127.0.0.1", PORT), timeout=5)
    print("connected")
except ConnectionRefusedError:
    print("refused")
""",
    "deno": """
try { await Deno.connect({ hostname: "127.0.0.1", port: PORT }); console.log("connected"); }
catch (e) { console.log(e.name); }
""",
}


def _python_baseline_modules():
    """The modules the interpreter itself loads at start with -I (site may load some)."""
    p = subprocess.run(
        [PYTHON, "-I", "-c", "import sys, json; print(json.dumps(sorted(sys.modules)))"],
        capture_output=True, env={"PATH": os.environ.get("PATH", "/usr/bin:/bin")}, timeout=60, check=True,
    )
    return set(json.loads(p.stdout)) - {"json", "json.decoder", "json.scanner", "json.encoder", "re"}


@pytest.mark.parametrize("lang", LANGS)
def test_egress_off_nothing_listens_and_nothing_is_imported(net, egress, lang):
    port = free_port()
    code = OFF[lang].replace("PORT", str(port))
    if lang == "python":
        code = code.replace("{baseline}", f"baseline = {sorted(_python_baseline_modules())!r}")
    # The proxy variables alone (without CODE_EXECUTOR_EGRESS_PORT) start nothing.
    url = f"http://127.0.0.1:{port}"
    deno_args = None
    if lang == "deno":
        # the image's command line, plus permission to try the port (repeated flags add up)
        *argv, runner = deno_command(runner=str(DENO_RUNNER), deno=DENO)
        deno_args = [*argv, f"--allow-net=127.0.0.1:{port}", runner]
    o = net(lang, code, egress_on=False, extra_env={"HTTP_PROXY": url, "HTTPS_PROXY": url}, deno_args=deno_args)
    expected = ["[]", "refused"] if lang == "python" else ["ConnectionRefused"]
    assert ok_lines(o) == expected
    assert egress.seen() == []


@pytest.mark.parametrize("lang", LANGS)
def test_missing_egress_socket_fails_the_execution(net, lang, tmp_path):
    missing = str(tmp_path / "egress.sock")
    o = net(lang, {"python": "print('RAN')", "deno": "console.log('RAN')"}[lang], socket_path=missing)
    assert o.rc == 2 and o.stdout == b""
    err = o.result["error"]
    assert err["type"] == "EgressRelayError"
    assert err["message"] == f"egress relay unavailable: the egress proxy socket {missing} does not exist (is it mounted?)"
    assert o.err == f"code-executor runner: EgressRelayError: {err['message']}\n"


@pytest.mark.parametrize("lang", LANGS)
def test_egress_socket_that_is_not_a_socket_fails(net, lang, tmp_path):
    plain = tmp_path / "egress.sock"
    plain.write_text("not a socket")
    o = net(lang, {"python": "print('RAN')", "deno": "console.log('RAN')"}[lang], socket_path=str(plain))
    assert o.rc == 2 and o.stdout == b""
    assert o.result["error"]["message"] == f"egress relay unavailable: {plain} is not a Unix socket"


@pytest.mark.parametrize("lang", LANGS)
def test_port_already_taken_fails_the_execution(net, lang):
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen(1)
        port = taken.getsockname()[1]
        o = net(lang, {"python": "print('RAN')", "deno": "console.log('RAN')"}[lang], port=port)
    assert o.rc == 2 and o.stdout == b""
    err = o.result["error"]
    assert err["type"] == "EgressRelayError"
    assert err["message"].startswith(f"egress relay unavailable: cannot listen on 127.0.0.1:{port}: ")
    assert "in use" in err["message"].lower(), err["message"]


@pytest.mark.parametrize("lang", LANGS)
def test_bad_port_value_fails_the_execution(net, lang):
    o = net(lang, "print('RAN')" if lang == "python" else "console.log('RAN')", extra_env={PORT_ENV: "80a"})
    assert o.rc == 2 and o.stdout == b""
    assert o.result["error"]["message"] == (
        f'egress relay unavailable: {PORT_ENV}="80a" is not a TCP port number (1-65535)'
    )


def test_python_egress_proxy_gone_mid_execution_closes_the_client(net, egress):
    # The socket exists at start, then the proxy disappears: connections are closed, the
    # code sees an ordinary connection error and goes on.
    code = f"""
import os, socket, urllib.request, urllib.error
os.unlink({egress.path!r})
try:
    urllib.request.urlopen("http://origin.test/hello", timeout=10)
except (urllib.error.URLError, ConnectionError, OSError) as e:
    print("failed", type(e).__name__)
"""
    o = net("python", code)
    lines = ok_lines(o)
    assert len(lines) == 1 and lines[0].startswith("failed"), lines


# --------------------------------------------------------------------------- Deno permissions


@needs_deno
def test_deno_without_env_permission_egress_stays_off(net, egress):
    # The server must grant --allow-env=CODE_EXECUTOR_EGRESS_PORT; without it the runner
    # cannot see the variable and starts no relay (fetch then fails to reach the proxy).
    port = free_port()
    argv = deno_command(egress_port=port, net_hosts=("origin.test",), egress_socket=egress.path,
                        runner=str(DENO_RUNNER), deno=DENO)
    argv = [a for a in argv if not a.startswith("--allow-env")]
    code = 'try { await fetch("http://origin.test/hello"); console.log("ok"); } catch (e) { console.log(e.name); }'
    o = net("deno", code, port=port, deno_args=argv)
    assert ok_lines(o) == ["TypeError"]
    assert egress.seen() == []


@needs_deno
def test_deno_without_net_permission_for_the_relay_is_a_clear_error(net, egress):
    port = free_port()
    argv = [a.replace(f",127.0.0.1:{port}", "") for a in deno_command(
        egress_port=port, egress_socket=egress.path, runner=str(DENO_RUNNER), deno=DENO, test_env=True)]
    o = net("deno", "console.log('RAN')", port=port, deno_args=argv)
    assert o.rc == 2 and o.stdout == b""
    assert o.result["error"]["message"] == (
        f"egress relay unavailable: deno lacks permissions: it needs --allow-read={egress.path} "
        f"--allow-write={egress.path} --allow-net=unix:{egress.path} --allow-net=127.0.0.1:{port}"
    )


@needs_deno
def test_deno_fetch_needs_net_permission_for_the_target_not_the_proxy(net, egress):
    # Deno checks --allow-net against the URL's host:port even through a proxy; the
    # proxy's own address needs no grant for fetch (the relay's listen does). Wildcards
    # (*.origin.test) are Deno 2 syntax and also cover the apex.
    code = """
for (const u of ["http://origin.test/hello", "http://api.origin.test/hello", "http://elsewhere.test/", "http://origin.test:8080/"]) {
  try { const r = await fetch(u); console.log(u, r.status, await r.text()); }
  catch (e) { console.log(u, e.name); }
}
"""
    o = net("deno", code, net_hosts=("*.origin.test",))
    assert ok_lines(o) == [
        "http://origin.test/hello 200 hello from origin origin.test",
        "http://api.origin.test/hello 200 hello from origin api.origin.test",
        "http://elsewhere.test/ NotCapable",
        "http://origin.test:8080/ NotCapable",
    ]
    assert [r["target"] for r in egress.seen()] == ["http://origin.test/hello", "http://api.origin.test/hello"]


@needs_deno
def test_deno_relay_does_not_keep_the_process_alive(net, egress):
    # Everything of the relay is unref'd: code that leaves an idle keep-alive connection
    # (fetch's pool) and a raw open tunnel still ends at once.
    port = free_port()
    code = f"""
await (await fetch("http://origin.test/hello")).text();
const c = await Deno.connect({{ hostname: "127.0.0.1", port: {port} }});
await c.write(new TextEncoder().encode("CONNECT echo.test:7 HTTP/1.1\\r\\n\\r\\n"));
await c.read(new Uint8Array(100));
c.unref();
console.log("done");
"""
    o = net("deno", code, port=port)
    assert ok_lines(o) == ["done"]
    assert o.elapsed < 10


@needs_deno
def test_deno_full_command_line_with_tools_grants_and_egress(net, egress, tmp_path):
    """The command line of an execution with everything: the tool proxy, a read grant, a
    write grant and egress; each permission does what it should and no more."""
    proxy = FakeProxy(TOKEN)
    try:
        ro = tmp_path / "ro"
        rw = tmp_path / "rw"
        other = tmp_path / "other"
        for d in (ro, rw, other):
            d.mkdir()
        (ro / "in.txt").write_text("read me")
        (other / "secret.txt").write_text("no")
        code = f"""
const tries: [string, () => Promise<unknown>][] = [
  ["read_ro", () => Deno.readTextFile({json.dumps(str(ro / "in.txt"))})],
  ["write_rw", () => Deno.writeTextFile({json.dumps(str(rw / "out.txt"))}, "written")],
  ["read_rw", () => Deno.readTextFile({json.dumps(str(rw / "out.txt"))})],
  ["write_ro", () => Deno.writeTextFile({json.dumps(str(ro / "x.txt"))}, "x")],
  ["read_other", () => Deno.readTextFile({json.dumps(str(other / "secret.txt"))})],
  ["env_path", async () => Deno.env.get("PATH")],
  ["tool", () => callMCPTool("mcp__fake__structured", {{}})],
  ["fetch", async () => (await fetch("http://origin.test/hello")).text()],
  ["fetch_other", () => fetch("http://elsewhere.test/")],
  ["run", () => new Deno.Command("true").output()],
];
for (const [name, f] of tries) {{
  try {{ console.log(name, "ok", JSON.stringify(await f())); }}
  catch (e) {{ console.log(name, "denied", (e as Error).name); }}
}}
"""
        o = net("deno", code, read=(str(ro),), write=(str(rw),), proxy_socket=proxy.path, net_hosts=("origin.test",))
        assert ok_lines(o) == [
            'read_ro ok "read me"',
            "write_rw ok undefined",
            'read_rw ok "written"',
            "write_ro denied NotCapable",
            "read_other denied NotCapable",
            "env_path denied NotCapable",
            'tool ok {"answer":42,"args":{}}',
            'fetch ok "hello from origin origin.test"',
            "fetch_other denied NotCapable",
            "run denied NotCapable",
        ]
        assert not (ro / "x.txt").exists()
        assert [r["target"] for r in egress.seen()] == ["http://origin.test/hello"]
    finally:
        proxy.close()


def test_deno_command_contract():
    """The documented command lines (docs/runner-protocol.md), byte for byte."""
    base = ["/usr/local/bin/deno", *DENO_FLAGS]
    runner = "/opt/code-executor/runner.js"
    assert deno_command() == [
        *base,
        "--allow-read=/run/mcp/proxy.sock",
        "--allow-write=/run/mcp/proxy.sock",
        "--allow-net=unix:/run/mcp/proxy.sock",
        runner,
    ]
    assert deno_command(egress_port=18080, net_hosts=["example.com", "*.github.com", "api.test:8443"]) == [
        *base,
        "--allow-read=/run/mcp/proxy.sock,/run/mcp/egress.sock",
        "--allow-write=/run/mcp/proxy.sock,/run/mcp/egress.sock",
        "--allow-net=unix:/run/mcp/proxy.sock,unix:/run/mcp/egress.sock,127.0.0.1:18080,"
        "example.com:80,example.com:443,*.github.com:80,*.github.com:443,api.test:8443",
        "--allow-env=CODE_EXECUTOR_EGRESS_PORT",
        runner,
    ]
    assert deno_command(read=["/data/in"], write=["/data/out", "/srv/x"]) == [
        *base,
        "--allow-read=/run/mcp/proxy.sock,/data/in,/data/out,/srv/x",
        "--allow-write=/run/mcp/proxy.sock,/data/out,/srv/x",
        "--allow-net=unix:/run/mcp/proxy.sock",
        runner,
    ]
    doc = (Path(__file__).resolve().parents[2] / "docs" / "runner-protocol.md").read_text()
    for argv in (
        deno_command(),
        deno_command(egress_port=18080, net_hosts=["example.com", "*.github.com", "api.test:8443"]),
        deno_command(read=["/data/in"], write=["/data/out", "/srv/x"]),
        deno_command(egress_port=18080, net_hosts=["example.com"], read=["/data/in"], write=["/data/out"]),
    ):
        assert " ".join(argv[len(base):]) in " ".join(doc.split()), argv
