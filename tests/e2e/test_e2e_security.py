"""The security layers end to end, through the official MCP client against the real server
and engine: filesystem grants (`permissions.read/write` under `ALLOWED_PROJECTS`), network
egress through the per-execution egress proxy (`permissions.net` under the operator's
`egress.allowed_hosts`; a loopback test origin reached through `egress.allow_cidrs`), the
SSRF guard on tool arguments, per-client execution and per-execution tool-call rate
limits, the audit log and `audit verify`, and the container runtime.

Loopback origins: `support/checks.CountingHttpServer` counts the TCP connections it
accepts, so a refusal is shown to happen before any connection. Nothing here sends a
packet to a non-loopback address: requests to 169.254.169.254, 10.0.0.1, ... are refused
by the egress proxy before it connects.

Known failure under gVisor (runsc): Deno often never sees the peer's FIN on a loopback TCP
connection inside the sandbox, so TypeScript code reading a proxied response to the end of
the stream hangs (test_the_end_of_a_proxied_response_reaches_the_code[typescript]);
`fetch` is unaffected (it stops at Content-Length / the last chunk).
"""

from __future__ import annotations

import hashlib
import json
import os
import shutil
import subprocess
import tempfile
from pathlib import Path
from typing import Any

import pytest

from .e2e_client import BINARY, RUNTIME, MCPError, Server, docker, our_containers, server_env, wait_until
from .support.checks import (
    CountingHttpServer,
    assert_still_serving,
    run_json,
    serving_time,
    wait_downstreams_ready,
)
from .support.downstreams import stdio_support_entry, write_mcp_config

INVALID_PARAMS = -32602
RATE_LIMITED = -32029
TIME_TOOL = "mcp__time__get_current_time"


def mcp_error(srv: Server, language: str, code: str, **arguments: Any) -> MCPError:
    """An execution call that must be refused with a JSON-RPC error."""
    tool = "executePython" if language == "python" else "executeTypescript"
    return srv.call_error(tool, {"code": code, **arguments})


def start(name: str, **env: str) -> Server:
    return Server(extra_env=env, name=name).start()


# ========================================================================= grants


@pytest.fixture(scope="module")
def grants_root():
    """/tmp/ce-grants-XXXX: data/ (a file; the directory is world-writable, so only the
    read-only mount can refuse a write), out/ (world-writable), other/ (never granted),
    etclink -> /etc."""
    root = Path(tempfile.mkdtemp(prefix="ce-grants-"))
    root.chmod(0o755)
    (root / "data").mkdir()
    (root / "data" / "f.txt").write_text("granted data\n")
    (root / "data" / "f.txt").chmod(0o644)
    (root / "data").chmod(0o777)
    for d in ("out", "other"):
        (root / d).mkdir()
        (root / d).chmod(0o777)
    (root / "etclink").symlink_to("/etc")
    yield root
    shutil.rmtree(root, ignore_errors=True)


@pytest.fixture(scope="module")
def grant_server(grants_root):
    srv = start("grants", ALLOWED_PROJECTS=str(grants_root))
    yield srv
    srv.stop()


READ_CODE = {
    "python": "import json, os\nd = {d!r}\nprint(json.dumps([open(d + '/f.txt').read(), sorted(os.listdir(d))]))\n",
    "typescript": (
        "const d = {d!r};\n"
        "const names = [...Deno.readDirSync(d)].map((e) => e.name).sort();\n"
        "console.log(JSON.stringify([Deno.readTextFileSync(d + '/f.txt'), names]));\n"
    ),
}


@pytest.mark.parametrize("language", ["python", "typescript"])
def test_read_grant_is_readable_at_the_same_path(grant_server, grants_root, language):
    data = str(grants_root / "data")
    code = READ_CODE[language].replace("{d!r}", json.dumps(data))
    _, (text, names) = run_json(grant_server, language, code, permissions={"read": [data]})
    assert text == "granted data\n", text
    assert names == ["f.txt"], names


WRITE_RO_CODE = {
    "python": (
        "import errno, json\n"
        "try:\n"
        "    open({p!r}, 'w').write('x')\n"
        "    print(json.dumps('written'))\n"
        "except OSError as e:\n"
        "    print(json.dumps(errno.errorcode.get(e.errno)))\n"
    ),
    "typescript": (
        "let out = 'written';\n"
        "try { Deno.writeTextFileSync({p!r}, 'x'); } catch (e) { out = (e as Error).name; }\n"
        "console.log(JSON.stringify(out));\n"
    ),
}


@pytest.mark.parametrize("language, expected", [("python", "EROFS"), ("typescript", "NotCapable")])
def test_writing_into_a_read_only_grant_fails(grant_server, grants_root, language, expected):
    # Python meets the read-only bind mount (the host directory is world-writable);
    # Deno refuses first: the path is in --allow-read only.
    target = grants_root / "data" / f"new-{language}.txt"
    code = WRITE_RO_CODE[language].replace("{p!r}", json.dumps(str(target)))
    _, outcome = run_json(grant_server, language, code, permissions={"read": [str(grants_root / "data")]})
    assert outcome == expected, outcome
    assert not target.exists()


WRITE_CODE = {
    "python": "open({p!r}, 'w').write({text!r})\nprint('\"done\"')\n",
    "typescript": "Deno.writeTextFileSync({p!r}, {text!r});\nconsole.log('\"done\"');\n",
}


@pytest.mark.parametrize("language", ["python", "typescript"])
def test_write_grant_creates_the_file_on_the_host(grant_server, grants_root, language):
    target = grants_root / "out" / f"from-{language}.txt"
    text = f"written by {language} in the sandbox\n"
    code = WRITE_CODE[language].replace("{p!r}", json.dumps(str(target))).replace("{text!r}", json.dumps(text))
    run_json(grant_server, language, code, permissions={"write": [str(grants_root / "out")]})
    assert target.read_text() == text
    assert target.stat().st_uid == 1001  # created by the sandbox user


def test_write_outside_the_grants_does_not_reach_the_host(grant_server, grants_root):
    root = str(grants_root)
    code = f"""
import errno, json, os
res = {{}}
for p in ({root!r} + '/other/x.txt', {root!r} + '/x.txt', {root!r} + '/data/y.txt'):
    try:
        with open(p, 'w') as f:
            f.write('escape')
        res[p] = 'written'
    except OSError as e:
        res[p] = errno.errorcode.get(e.errno)
res['root_listing'] = sorted(os.listdir({root!r}))
print(json.dumps(res))
"""
    _, res = run_json(grant_server, "python", code, permissions={"write": [str(grants_root / "out")]})
    # Only the granted directory is there (the parent is the sandbox's own /tmp tmpfs).
    listing = res.pop("root_listing")
    assert "out" in listing and not {"data", "other", "etclink"} & set(listing), listing
    for p, outcome in res.items():
        assert outcome in ("ENOENT", "EACCES", "EROFS", "written"), (p, res)
    for p in ("other/x.txt", "x.txt", "data/y.txt"):
        assert not (grants_root / p).exists(), p


@pytest.mark.parametrize(
    "path, words",
    [
        ("{root}/etclink", ["permissions.read[0]", "{root}/etclink", "resolves to /etc", "outside the allowed roots"]),
        ("{root}/../../etc", ["permissions.read[0]", "resolves to /etc", "outside the allowed roots"]),
        ("{root}/data/../../../etc/shadow", ["permissions.read[0]", "resolves to /etc/shadow"]),
        ("/var/tmp", ["permissions.read[0]", "/var/tmp", "outside the allowed roots {root}"]),
        ("data", ["permissions.read[0]", "not absolute"]),
    ],
    ids=["symlink-to-etc", "dotdot-etc", "dotdot-shadow", "outside-roots", "relative"],
)
def test_grant_escapes_are_refused_with_the_entry_named(grant_server, grants_root, path, words):
    root = str(grants_root)
    e = mcp_error(grant_server, "python", "print(1)", permissions={"read": [path.replace("{root}", root)]})
    assert e.error.code == INVALID_PARAMS, e.error
    for word in words:
        assert word.replace("{root}", root) in e.error.message, (word, e.error.message)


def test_a_refused_write_grant_names_its_field(grant_server, grants_root):
    e = mcp_error(grant_server, "python", "print(1)",
                  permissions={"read": [str(grants_root / "data")], "write": [str(grants_root / "etclink")]})
    assert e.error.code == INVALID_PARAMS, e.error
    assert "permissions.write[0]" in e.error.message and "/etc" in e.error.message, e.error.message


def test_grants_are_refused_without_allowed_projects(make_server, grants_root):
    srv = make_server()
    e = mcp_error(srv, "python", "print(1)", permissions={"read": [str(grants_root / "data")]})
    assert e.error.code == INVALID_PARAMS, e.error
    assert "grants no host paths" in e.error.message and "ALLOWED_PROJECTS" in e.error.message, e.error.message
    assert_still_serving(srv)


# ========================================================================= egress


@pytest.fixture(scope="module")
def origin():
    with CountingHttpServer() as o:
        yield o


@pytest.fixture(scope="module")
def other_origin():
    """Allowed by the operator, never by a call's permissions.net."""
    with CountingHttpServer() as o:
        yield o


@pytest.fixture(scope="module")
def egress_server(origin, other_origin):
    """The operator allows both loopback origins (their exact host:port) and exempts
    127.0.0.1/32 from the special-range refusal."""
    srv = start(
        "egress",
        CODE_EXECUTOR_EGRESS_ALLOWED_HOSTS=f"127.0.0.1:{origin.port},127.0.0.1:{other_origin.port},example.com",
        CODE_EXECUTOR_EGRESS_ALLOW_CIDRS="127.0.0.1/32",
    )
    yield srv
    srv.stop()


@pytest.fixture(scope="module")
def strict_egress_server():
    """Egress on (example.com only), no allow_cidrs: loopback is refused like any special range."""
    srv = start("egress-strict", CODE_EXECUTOR_EGRESS_ALLOWED_HOSTS="example.com")
    yield srv
    srv.stop()


FETCH_CODE = {
    "python": (
        "import json, urllib.request\n"
        "print(json.dumps(urllib.request.urlopen({url!r}, timeout=20).read().decode()))\n"
    ),
    "typescript": "const r = await fetch({url!r});\nconsole.log(JSON.stringify(await r.text()));\n",
}


@pytest.mark.parametrize("language", ["python", "typescript"])
def test_granted_host_is_reached_through_the_egress_proxy(egress_server, origin, language):
    before = origin.connections
    url = f"http://127.0.0.1:{origin.port}/{language}"
    code = FETCH_CODE[language].replace("{url!r}", json.dumps(url))
    r, body = run_json(egress_server, language, code, permissions={"net": [f"127.0.0.1:{origin.port}"]})
    assert body == f"origin:/{language}", body
    egress = r["egress"]
    assert egress["connections"] >= 1 and egress["bytesDown"] > 0 and egress["bytesUp"] > 0, egress
    assert egress["refusals"] == [], egress
    assert origin.connections - before == egress["connections"], (origin.connections, before, egress)


# A raw request to the egress relay (127.0.0.1:$CODE_EXECUTOR_EGRESS_PORT inside the
# container), so that the host spelling reaches the proxy exactly as written.
RAW_EGRESS_PY = r"""
import json, os, socket

def raw(head):
    s = socket.create_connection(("127.0.0.1", int(os.environ["CODE_EXECUTOR_EGRESS_PORT"])), timeout=20)
    s.sendall(head.encode())
    data = b""
    while chunk := s.recv(65536):
        data += chunk
    s.close()
    status, _, rest = data.partition(b"\r\n")
    return [int(status.split()[1]), rest.partition(b"\r\n\r\n")[2].decode(errors="replace").strip()]

out = {}
for host in json.loads(HOSTS):
    out["GET " + host] = raw(f"GET http://{host}/ HTTP/1.1\r\nHost: {host}\r\n\r\n")
    out["CONNECT " + host] = raw(f"CONNECT {host if ':' in host.rsplit(']', 1)[-1] else host + ':443'} HTTP/1.1\r\nHost: {host}\r\n\r\n")
print(json.dumps(out))
"""

# The TypeScript reader stops at Content-Length, not at the end of the stream: under gVisor
# Deno often misses the peer's FIN (see test_typescript_sees_the_end_of_a_proxied_response).
RAW_EGRESS_TS = r"""
const port = Number(Deno.env.get("CODE_EXECUTOR_EGRESS_PORT"));
async function raw(head: string): Promise<[number, string]> {
  const conn = await Deno.connect({ hostname: "127.0.0.1", port });
  await conn.write(new TextEncoder().encode(head));
  let text = "";
  const buf = new Uint8Array(65536);
  const decoder = new TextDecoder();
  for (;;) {
    const n = await conn.read(buf);
    if (n === null) break;
    text += decoder.decode(buf.subarray(0, n), { stream: true });
    const [top, body] = [text.split("\r\n\r\n")[0], text.split("\r\n\r\n").slice(1).join("\r\n\r\n")];
    const length = /content-length: *(\d+)/i.exec(top);
    if (length && new TextEncoder().encode(body).length >= Number(length[1])) break;
  }
  conn.close();
  return [Number(text.split(" ")[1]), text.split("\r\n\r\n")[1].trim()];
}
const out: Record<string, unknown> = {};
for (const host of JSON.parse(HOSTS)) out["GET " + host] = await raw(`GET http://${host}/ HTTP/1.1\r\nHost: ${host}\r\n\r\n`);
let fetched = "fetched";
try { await fetch(`http://${JSON.parse(HOSTS)[0]}/`); } catch (e) { fetched = (e as Error).name; }
out.fetch = fetched;
console.log(JSON.stringify(out));
"""


@pytest.mark.parametrize("language", ["python", "typescript"])
def test_host_not_in_permissions_net_is_refused_before_any_connection(egress_server, origin, other_origin, language):
    other = f"127.0.0.1:{other_origin.port}"
    before = other_origin.connections
    hosts = json.dumps([other])
    code = (f"HOSTS = {json.dumps(hosts)}\n" + RAW_EGRESS_PY) if language == "python" else (
        f"const HOSTS = {json.dumps(hosts)};\n" + RAW_EGRESS_TS)
    r, out = run_json(egress_server, language, code, permissions={"net": [f"127.0.0.1:{origin.port}"]})
    reason = f"egress to {other} refused: not allowed by this execution's permissions.net (allowed: 127.0.0.1:{origin.port})"
    assert out["GET " + other] == [403, reason], out
    if language == "python":
        assert out["CONNECT " + other] == [403, reason], out
    else:
        assert out["fetch"] == "NotCapable", out  # Deno's --allow-net is the second fence
    assert other_origin.connections == before, "the refused origin saw a connection"
    assert r["egress"]["connections"] == 0 and reason in r["egress"]["refusals"], r


def test_without_allow_cidrs_loopback_is_refused_before_any_connection(strict_egress_server, origin):
    before = origin.connections
    target = f"127.0.0.1:{origin.port}"
    # The call cannot even name it ...
    e = mcp_error(strict_egress_server, "python", "print(1)", permissions={"net": [target]})
    assert e.error.code == INVALID_PARAMS, e.error
    assert f'permissions.net[0] "{target}"' in e.error.message and "loopback" in e.error.message, e.error.message
    # ... and a request for it through the proxy of an execution granted example.com is refused.
    code = f"HOSTS = {json.dumps(json.dumps([target]))}\n" + RAW_EGRESS_PY
    r, out = run_json(strict_egress_server, "python", code, permissions={"net": ["example.com"]})
    assert out["GET " + target] == [403, f"egress to {target} refused: loopback"], out
    assert out["CONNECT " + target] == [403, f"egress to {target} refused: loopback"], out
    assert origin.connections == before
    assert r["egress"]["connections"] == 0, r


SPECIAL_TARGETS = {
    "169.254.169.254": "egress to 169.254.169.254:80 refused: cloud metadata service",
    "10.0.0.1": "egress to 10.0.0.1:80 refused: private (RFC 1918)",
    "[::1]:{port}": "egress to [::1]:{port} refused: loopback",
    "0x7f.1:{port}": "egress to 127.0.0.1:{port} refused: loopback",
    "2130706433:{port}": "egress to 127.0.0.1:{port} refused: loopback",
    "[::ffff:127.0.0.1]:{port}": "egress to [::ffff:127.0.0.1]:{port} refused: loopback",
    "metadata.google.internal": "egress to metadata.google.internal:80 refused: cloud metadata service",
    "localhost:{port}": "egress to localhost:{port} refused: localhost",
}


def test_special_addresses_are_refused_with_their_reason(strict_egress_server, origin):
    before = origin.connections
    hosts = [h.replace("{port}", str(origin.port)) for h in SPECIAL_TARGETS]
    code = f"HOSTS = {json.dumps(json.dumps(hosts))}\n" + RAW_EGRESS_PY
    r, out = run_json(strict_egress_server, "python", code, permissions={"net": ["example.com"]})
    for spelled, reason in SPECIAL_TARGETS.items():
        host = spelled.replace("{port}", str(origin.port))
        status, body = out["GET " + host]
        assert status == 403 and body == reason.replace("{port}", str(origin.port)), (host, status, body)
        assert out["CONNECT " + host][0] == 403, (host, out["CONNECT " + host])
    assert origin.connections == before, "a refused request reached the origin"
    assert r["egress"]["connections"] == 0 and len(r["egress"]["refusals"]) == 2 * len(hosts), r


def test_permissions_net_not_allowed_by_the_operator_is_invalid_params(egress_server):
    e = mcp_error(egress_server, "typescript", "console.log(1)", permissions={"net": ["example.com", "evil.example.org"]})
    assert e.error.code == INVALID_PARAMS, e.error
    assert 'permissions.net entry "evil.example.org" is not allowed by the operator' in e.error.message, e.error.message
    assert "egress.allowed_hosts" in e.error.message, e.error.message


def test_permissions_net_is_refused_when_the_operator_configured_no_egress(make_server):
    srv = make_server()
    e = mcp_error(srv, "python", "print(1)", permissions={"net": ["example.com"]})
    assert e.error.code == INVALID_PARAMS, e.error
    assert "permissions.net" in e.error.message and "allows no network egress" in e.error.message, e.error.message


def test_a_direct_socket_to_the_host_loopback_fails(egress_server, origin):
    before = origin.connections
    code = f"""
import errno, json, socket
s = socket.socket()
s.settimeout(5)
try:
    s.connect(('127.0.0.1', {origin.port}))
    out = 'connected'
except OSError as e:
    out = errno.errorcode.get(e.errno, repr(e))
print(json.dumps(out))
"""
    # Even with egress granted: the container's loopback is its own.
    _, out = run_json(egress_server, "python", code, permissions={"net": [f"127.0.0.1:{origin.port}"]})
    assert out == "ECONNREFUSED", out
    assert origin.connections == before


READ_TO_EOF = {
    "python": (
        "import json, os, socket\n"
        "out = []\n"
        "for i in range(5):\n"
        "    s = socket.create_connection(('127.0.0.1', int(os.environ['CODE_EXECUTOR_EGRESS_PORT'])), timeout=5)\n"
        "    s.sendall(b'GET http://{host}/eof HTTP/1.1\\r\\nHost: {host}\\r\\n\\r\\n')\n"
        "    data = b''\n"
        "    try:\n"
        "        while chunk := s.recv(65536):\n"
        "            data += chunk\n"
        "        out.append('eof')\n"
        "    except TimeoutError:\n"
        "        out.append('stuck')\n"
        "    s.close()\n"
        "print(json.dumps(out))\n"
    ),
    "typescript": (
        "const port = Number(Deno.env.get('CODE_EXECUTOR_EGRESS_PORT'));\n"
        "const out: string[] = [];\n"
        "for (let i = 0; i < 5; i++) {\n"
        "  const conn = await Deno.connect({ hostname: '127.0.0.1', port });\n"
        "  await conn.write(new TextEncoder().encode('GET http://{host}/eof HTTP/1.1\\r\\nHost: {host}\\r\\n\\r\\n'));\n"
        "  const buf = new Uint8Array(65536);\n"
        "  const end = (async () => { while ((await conn.read(buf)) !== null); return 'eof'; })();\n"
        "  out.push(await Promise.race([end, new Promise<string>((r) => setTimeout(() => r('stuck'), 5000))]));\n"
        "  conn.close();\n"
        "}\n"
        "console.log(JSON.stringify(out));\n"
    ),
}


@pytest.mark.parametrize("language", ["python", "typescript"])
def test_the_end_of_a_proxied_response_reaches_the_code(egress_server, origin, language):
    # The origin closes after its response; the code reads to the end of the stream, as
    # HTTP/1.0-style clients and closed CONNECT tunnels do.
    host = f"127.0.0.1:{origin.port}"
    code = READ_TO_EOF[language].replace("{host}", host)
    r, out = run_json(egress_server, language, code, permissions={"net": [host]}, timeoutMs=60000)
    if out != ["eof"] * 5 and language == "typescript" and str(r["runtime"]).startswith("runsc"):
        # Known, outside this project: Deno under gVisor often misses the peer's close of
        # a loopback TCP connection (28 of 30 tries in a plain Deno.listen/Deno.connect
        # pair, no relay involved; 0 of 30 under runc). fetch is unaffected (it stops at
        # Content-Length or the last chunk). Counted as xfail, never as a pass.
        pytest.xfail(f"Deno under gVisor misses a loopback TCP close: {out}")
    assert out == ["eof"] * 5, f"{r['runtime']}: the end of the stream did not arrive: {out}"
    assert r["egress"]["connections"] == 5, r


# ========================================================================= SSRF guard


SSRF_URL = "http://169.254.169.254/latest/meta-data"
SSRF_CODE = f"""
import json
out = {{'plain': await call_mcp_tool('mcp__echo__echo', {{'text': 'hello', 'count': 1}})}}
try:
    out['ssrf'] = await call_mcp_tool('mcp__echo__echo', {{'text': {SSRF_URL!r}, 'count': 1}})
except McpToolError as e:
    out['ssrf'] = [type(e).__name__, e.status, e.message]
print(json.dumps(out))
"""


def ssrf_server(tmp: Path, **env: str) -> Server:
    config = write_mcp_config(tmp / "mcp.json", {"echo": stdio_support_entry()})
    srv = start("ssrf", MCP_CONFIG_PATH=str(config), **env)
    try:
        wait_downstreams_ready(srv, {"echo"})
    except BaseException:
        srv.stop()
        raise
    return srv


def test_ssrf_guard_refuses_a_metadata_url_in_tool_arguments(tmp_path):
    srv = ssrf_server(tmp_path)
    try:
        r, out = run_json(srv, "python", SSRF_CODE, allowedTools=["mcp__echo__*"])
        assert out["plain"] == {"text": "hello", "count": 1}, out
        cls, status, message = out["ssrf"]
        assert (cls, status) == ("ToolNotAllowed", 403), out
        assert "tool arguments refused" in message and "169.254.169.254" in message, message
        assert "cloud metadata service" in message and "ssrf_guard_exempt" in message, message
        assert r["toolCallSummary"]["mcp__echo__echo"]["errors"] == 1, r
    finally:
        srv.stop()


def test_ssrf_guard_exempt_server_gets_the_url(tmp_path):
    srv = ssrf_server(tmp_path, CODE_EXECUTOR_SSRF_GUARD_EXEMPT="echo")
    try:
        r, out = run_json(srv, "python", SSRF_CODE, allowedTools=["mcp__echo__*"])
        assert out["ssrf"] == {"text": SSRF_URL, "count": 1}, out
        assert r["toolCallSummary"]["mcp__echo__echo"] == {**r["toolCallSummary"]["mcp__echo__echo"],
                                                           "calls": 2, "errors": 0}, r
    finally:
        srv.stop()


# ========================================================================= rate limits


def test_third_execution_in_a_row_is_rate_limited(make_server):
    srv = make_server({"CODE_EXECUTOR_EXECUTIONS_PER_MINUTE": "2", "CODE_EXECUTOR_EXECUTION_BURST": "2"})
    for i in range(2):
        r = srv.execute("python", f"print({i})")
        assert r["success"] is True and r["output"] == f"{i}\n", r
    e = mcp_error(srv, "python", "print(2)")
    assert e.error.code == RATE_LIMITED, e.error
    assert "rate limited" in e.error.message and "retry after" in e.error.message, e.error.message
    assert 0 < e.error.data["retryAfterMs"] <= 60_000, e.error
    assert srv.alive()


@pytest.fixture(scope="module")
def time_server():
    """mcp-server-time downstream, 5 tool calls per second per execution."""
    tmp = Path(tempfile.mkdtemp(prefix="ce-e2e-sec-"))
    try:
        with serving_time("security-tools", tmp, CODE_EXECUTOR_TOOL_CALLS_PER_SECOND="5") as srv:
            yield srv
    finally:
        shutil.rmtree(tmp, ignore_errors=True)


BURST_CODE = f"""
import asyncio, json
async def one():
    try:
        await call_mcp_tool({TIME_TOOL!r}, {{'timezone': 'Etc/UTC'}})
        return ['ok', 200, '']
    except McpToolError as e:
        return [type(e).__name__, e.status, e.message]
print(json.dumps(await asyncio.gather(*(one() for _ in range(20)))))
"""


def test_tool_call_burst_is_rate_limited(time_server):
    r, out = run_json(time_server, "python", BURST_CODE, allowedTools=["mcp__time__*"])
    ok = [o for o in out if o[0] == "ok"]
    limited = [o for o in out if o[0] == "RateLimited"]
    assert len(ok) + len(limited) == 20, out
    assert 5 <= len(ok) <= 8, out  # the burst of 5, plus what refills while the calls run
    assert limited, out
    for _, status, message in limited:
        assert status == 429 and "rate limited: at most 5 tool calls per second" in message, message
    assert r["toolCallSummary"][TIME_TOOL]["errors"] == len(limited), r


# ========================================================================= audit


def read_audit(srv: Server) -> list[dict[str, Any]]:
    path = srv.audit_dir / "audit.jsonl"
    return [json.loads(line) for line in path.read_text().splitlines() if line.strip()]


def audit_verify(path: Path) -> subprocess.CompletedProcess[str]:
    return subprocess.run([str(BINARY), "audit", "verify", str(path)], capture_output=True, text=True, timeout=60,
                          env={**os.environ, "CODE_EXECUTOR_AUDIT_DIR": str(path)})


def test_audit_log_records_the_execution_and_its_tool_call(time_server):
    marker = f"audit-marker-{os.getpid()}-{id(time_server)}"
    code = (
        f"# {marker}\n"
        f"r = await call_mcp_tool({TIME_TOOL!r}, {{'timezone': 'Etc/UTC'}})\n"
        "print(r['timezone'])\n"
    )
    r = time_server.execute("python", code, allowedTools=["mcp__time__*"])
    assert r["success"] is True and r["output"] == "Etc/UTC\n", r
    records = read_audit(time_server)
    text = (time_server.audit_dir / "audit.jsonl").read_text()
    assert marker not in text, "the audit log holds the plaintext code"
    mine = [rec for rec in records if rec.get("executionId") == r["executionId"]]
    execution = [rec for rec in mine if rec["kind"] == "execution"]
    calls = [rec for rec in mine if rec["kind"] == "toolCall"]
    assert len(execution) == 1 and len(calls) == 1, mine
    e = execution[0]
    assert e["codeSha256"] == hashlib.sha256(code.encode()).hexdigest(), e
    assert e["codeBytes"] == len(code.encode()) and "code" not in e, e
    assert e["client"] == "stdio" and e["language"] == "python", e
    assert e["runtime"] == r["runtime"] and e["runtime"], e
    assert e["containerId"] and len(e["containerId"]) >= 12, e
    assert e["exitCode"] == 0 and e["success"] is True and e["toolCalls"] == 1, e
    assert e["allowedTools"] == ["mcp__time__*"], e
    assert e["imageId"].startswith("sha256:"), e
    c = calls[0]
    assert c["tool"] == TIME_TOOL and c["decision"] == "allowed" and c["outcome"] == "ok", c
    assert c["client"] == "stdio" and len(c["argumentsSha256"]) == 64 and "arguments" not in c, c
    # Chained in order: seq increases by one, each prev is the hash before it.
    for before, after in zip(records, records[1:]):
        assert after["seq"] == before["seq"] + 1 and after["prev"] == before["hash"], (before, after)


def test_audit_verify_passes_and_names_an_edited_line(time_server, tmp_path):
    for i in range(3):
        r = time_server.execute("python", f"print({i})")
        assert r["success"] is True, r
    ok = audit_verify(time_server.audit_dir)
    assert ok.returncode == 0 and ok.stdout.startswith("ok: "), (ok.returncode, ok.stdout, ok.stderr)
    copy = tmp_path / "audit-copy"
    shutil.copytree(time_server.audit_dir, copy)
    path = copy / "audit.jsonl"
    lines = path.read_bytes().split(b"\n")
    n = len([line for line in lines if line.strip()])
    assert n >= 3, n
    middle = n // 2  # 0-based: line middle + 1 in the file, neither first nor last
    at = lines[middle].index(b'"codeSha256":"') + len(b'"codeSha256":"') if b'"codeSha256"' in lines[middle] \
        else lines[middle].index(b'"executionId":"') + len(b'"executionId":"')
    lines[middle] = lines[middle][:at] + (b"0" if lines[middle][at:at + 1] != b"0" else b"1") + lines[middle][at + 1:]
    path.write_bytes(b"\n".join(lines))
    broken = audit_verify(copy)
    assert broken.returncode == 1, (broken.returncode, broken.stdout, broken.stderr)
    assert f"BROKEN at audit.jsonl line {middle + 1}" in broken.stdout, broken.stdout
    # The original is untouched and still verifies.
    assert audit_verify(time_server.audit_dir).returncode == 0


def test_subprocess_use_is_warned_about_but_runs(time_server):
    code = "import subprocess\nprint(subprocess.run(['echo', 'hi'], capture_output=True, text=True).stdout, end='')\n"
    r = time_server.execute("python", code)
    assert r["success"] is True and r["output"] == "hi\n", r
    assert any(w.startswith("subprocess") for w in r["warnings"]), r
    rec = [x for x in read_audit(time_server) if x.get("executionId") == r["executionId"] and x["kind"] == "execution"]
    assert rec and rec[0]["warnings"] == r["warnings"], rec


# ========================================================================= runtime


def engine_runtimes() -> set[str]:
    return set(json.loads(docker("info", "--format", "{{json .Runtimes}}")))


def test_result_runtime_is_the_one_health_reports(time_server):
    health = time_server.call("health", {})
    runtime = health.sc["sandbox"]["runtime"]
    if RUNTIME != "auto":
        assert runtime == RUNTIME, health.sc["sandbox"]
    else:
        # auto: runsc when the engine has it registered, else runc.
        assert runtime == ("runsc" if "runsc" in engine_runtimes() else "runc"), health.sc["sandbox"]
    for language in ("python", "typescript"):
        code = "print(1)" if language == "python" else "console.log(1)"
        r = time_server.execute(language, code)
        assert r["success"] is True and r["runtime"] == runtime, r
        rec = [x for x in read_audit(time_server) if x.get("executionId") == r["executionId"]]
        assert rec and rec[0]["runtime"] == runtime, rec


def test_an_unknown_runtime_stops_the_server_at_start(tmp_path):
    env = server_env({"CODE_EXECUTOR_RUNTIME": "no-such-runtime"}, tmp_path / "audit")
    env["PATH"] = os.environ.get("PATH", "/usr/bin:/bin")
    proc = subprocess.Popen([str(BINARY), "serve"], cwd=tmp_path, env=env, stdin=subprocess.PIPE,
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    try:
        # stdin stays open: the server must exit by itself.
        _, stderr = proc.communicate(timeout=30)
    except subprocess.TimeoutExpired:
        proc.kill()
        _, stderr = proc.communicate()
        pytest.fail(f"the server kept running with an unknown runtime:\n{stderr[-2000:]}")
    assert proc.returncode != 0, stderr
    assert 'sandbox.runtime = "no-such-runtime" is not registered with the Docker engine' in stderr, stderr
    assert not wait_until(lambda: our_containers({proc.pid}), 3), "the server left containers behind"
