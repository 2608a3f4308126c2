"""Hostile code, end to end: one test per attack, through the official MCP client against
the real server and engine. Each test asserts that the attack fails in a specific,
observable way, then that the same server still runs a normal execution correctly
(`assert_still_serving`). Runs under the runtime the server picks (`auto`: runsc when the
engine has gVisor registered, else runc) or CE_E2E_RUNTIME; where runc and runsc answer
with different errnos, both are listed.

| Attack | Layer that stops it | Expected result (what the test asserts) |
|---|---|---|
| Read a file the test created in a host temp dir, at its host path | No host bind mount (only `/run/mcp` and approved grants); `/tmp` is the sandbox's own tmpfs | `ENOENT`; the host dir does not exist in the sandbox; `/tmp` holds no host entries |
| Read the host's / server's `/proc/1/environ` | PID namespace: `/proc/1` is the runner | `/proc/1/cmdline` is the runner; its environ is `PATH`, `HOME=/workspace`, `LANG=C.UTF-8` plus only Docker's `HOSTNAME` and the image's `PYTHONDONTWRITEBYTECODE` |
| Read the server's environment (a secret env var set on the server) | Container env is built from a fixed list; nothing inherited | The secret's name and value are in no `/proc/*/environ`, `/proc/*/cmdline` or `os.environ`; no server variable name (`MCP_CONFIG_PATH`, `CODE_EXECUTOR_*`) either |
| Reach the Docker socket | No mount of it; `network none` | `/var/run/docker.sock`, `/run/docker.sock` absent; connecting gives `ENOENT`; TCP to `172.17.0.1:2375` gives `ENETUNREACH` (runc) / `EHOSTUNREACH` (runsc); the only socket file on the filesystem is `/run/mcp/proxy.sock`; no `DOCKER_HOST` |
| Setuid binaries (`su`, `mount`) | Image has no setuid/setgid files; `no-new-privileges`; all capabilities dropped | `find -perm -4000/-2000` finds nothing; `su root -c id` and `mount -t tmpfs` exit non-zero; `id -u` stays 1001 |
| User namespace / setuid(0) | seccomp profile + no capabilities | `unshare(CLONE_NEWUSER)`, `unshare(CLONE_NEWNS)`, `setns`, `setuid(0)`, `setgid(0)` give `EPERM`; `unshare -U -r id` fails with "Operation not permitted" |
| Load a kernel module | seccomp profile (+ no `CAP_SYS_MODULE`) | `init_module`, `finit_module`, `delete_module` give `EPERM` |
| `ptrace` the runner (PID 1) from a child process | seccomp profile (+ no `CAP_SYS_PTRACE`) | `PTRACE_ATTACH` and `PTRACE_SEIZE` of PID 1 give `EPERM`; the execution completes |
| Fork bomb (`f(){ f & f & wait; }; f` in `sh`, 3 s) | pids cgroup (`pids.max` 64); under gVisor RLIMIT_NPROC 64 in gVisor's kernel | `sh` reports "Cannot fork" (`EAGAIN`); never more than 64 processes visible; the execution succeeds (not OOM, not timed out); the host still starts processes |
| Memory bomb (Python, TypeScript) | memory cgroup (`memoryMb`, swap = memory) | `oomKilled` true, `errorType` `OutOfMemory`, the limit named in `error` |
| Fill `/tmp`, `/workspace`, `/dev/shm` | tmpfs `size=` and `RLIMIT_FSIZE` (both = `tmpfs_mb`, 64 MiB) | Writing stops with `EFBIG` / `ENOSPC` after at most 64 MiB |
| Write to the root filesystem | read-only rootfs (+ file modes) | `mkdir /newdir` gives `EROFS`; writing `/etc/passwd`, `/usr/bin/python3`, the runner, `/x` gives `EROFS` or `EACCES` (gVisor checks modes first); `/` is mounted `ro` |
| Open sockets with the network off (Python) | `network none`: no interface but `lo`, no route | TCP (v4, v6) and UDP to `1.1.1.1:53` fail at once (< 1 s) with `ENETUNREACH` / `EHOSTUNREACH`; raw and packet sockets give `EPERM` |
| Open sockets with the network off (TypeScript) | Deno permissions (no `--allow-net` but the proxy socket) | `Deno.connect`, `Deno.connectTls`, `fetch` to `1.1.1.1`: `NotCapable` |
| DNS lookup of `example.com` | No network, empty `/etc/resolv.conf` (Python); Deno `--allow-net` for a named resolver | Python `getaddrinfo` raises `gaierror` within 5 s; Deno `resolveDns` with a resolver: `NotCapable`, without one: an error (no nameservers) |
| `mount(2)`, remount `/` rw, `umount2(/run/mcp)`, `pivot_root`, `chroot` | seccomp profile + no `CAP_SYS_ADMIN` / `CAP_SYS_CHROOT` | `EPERM` each |
| `keyctl`, `add_key`, `bpf`, `perf_event_open`, `io_uring_setup`, `userfaultfd`, `kexec_load`, `open_by_handle_at`, `reboot`, `swapon` | seccomp profile | `EPERM` or `ENOSYS` each |
| `kill(-1, SIGKILL)` | PID namespace | Kills the code's own child (exit -9), not the runner; a host process of the same uid 1001 survives; `kill(<host pid>)` gives `ESRCH`; the server is alive |
| Tool proxy without a token, with a forged token | Per-execution 256-bit bearer token, given to the runner on stdin only | HTTP 401 ("bearer token") for no token, a forged 64-hex token, an empty bearer, a Basic header; no 64-hex string in `/proc/1/environ` or cmdline; `toolCallsMade` 0 |
| Tool-name tricks (`/../`, upper case, Cyrillic look-alike, NUL, newline, zero-width space, trailing space, glob `*`) | Tool-name grammar + allowlist in the proxy | `ToolNotAllowed` (403) each; names that parse and match the glob but do not exist (`mcp__time__..`, `mcp__time__get_current_time__x`) `ToolNotFound` (404); the genuine tool still answers in the same execution |
| Deno: processes, environment, files, FFI | Deno permissions: no `--allow-run`, `--allow-env`, `--allow-read` (but the proxy socket), `--allow-ffi`; `--no-prompt` | `Deno.run`, `Deno.Command`: `NotCapable`; `Deno.env.get(<secret>)`, `Deno.env.toObject()`: `NotCapable`; `readTextFile(/etc/passwd)`: `NotCapable`; `Deno.dlopen`: `NotCapable`; `permissions.request({name: "run"})` is `denied`; run/env/ffi/sys/read/write/net query as not granted |

Under gVisor (runsc) the process cap is RLIMIT_NPROC (64) inside gVisor's kernel and the
host pids cgroup (4096) bounds gVisor's own threads: at 1024 or less the fork bomb killed
the whole sandbox instead of failing `fork` (found by this suite).

The tests needing tools share one server with `mcp-server-time` as downstream `time`.
"""

from __future__ import annotations

import json
import os
import platform
import shutil
import signal
import subprocess
import tempfile
import time
import uuid
from pathlib import Path

import pytest

from .e2e_client import Server
from .support.checks import (
    MEMORY_BOMBS,
    PROXY_RAW_REQUEST,
    assert_still_serving,
    last_json,
    run_json,
    serving_time,
)

SECRET_NAME = "CE_HOSTILE_SECRET"
SECRET = f"hostile-{uuid.uuid4().hex}"
TIME_TOOL = "mcp__time__get_current_time"
SANDBOX_ENV = {"PATH=/usr/local/bin:/usr/bin:/bin", "HOME=/workspace", "LANG=C.UTF-8"}
# Also in a sandbox's environment: Docker's HOSTNAME and the Python image's own ENV.
ENV_KEYS = {"PATH", "HOME", "LANG", "HOSTNAME", "PYTHONDONTWRITEBYTECODE"}


# ------------------------------------------------------------------------- fixtures


@pytest.fixture(scope="module")
def host_dir():
    """A host directory holding a file the sandbox must not see."""
    d = Path(tempfile.mkdtemp(prefix="ce-hostile-"))
    d.chmod(0o755)
    f = d / "host-only.txt"
    f.write_text(SECRET)
    f.chmod(0o644)
    yield d
    shutil.rmtree(d, ignore_errors=True)


@pytest.fixture(scope="module")
def hostile(host_dir):
    """One server for the module: a secret in its environment, mcp-server-time downstream."""
    with serving_time("hostile", host_dir, **{SECRET_NAME: SECRET}) as srv:
        yield srv


# ------------------------------------------------------------------------- syscalls

# Syscall numbers (x86_64, aarch64): the tests call them through ctypes.
NR = {
    "x86_64": dict(init_module=175, finit_module=313, delete_module=176, ptrace=101, unshare=272, setns=308,
                   mount=165, umount2=166, pivot_root=155, chroot=161, keyctl=250, add_key=248, bpf=321,
                   perf_event_open=298, io_uring_setup=425, userfaultfd=323, kexec_load=246,
                   open_by_handle_at=304, setuid=105, setgid=106, reboot=169, swapon=167),
    "aarch64": dict(init_module=105, finit_module=273, delete_module=106, ptrace=117, unshare=97, setns=268,
                    mount=40, umount2=39, pivot_root=41, chroot=51, keyctl=219, add_key=217, bpf=280,
                    perf_event_open=241, io_uring_setup=425, userfaultfd=282, kexec_load=104,
                    open_by_handle_at=265, setuid=146, setgid=144, reboot=142, swapon=224),
}


def syscall_prelude() -> str:
    """Python source defining `sc(name, *args)` -> "ok" or the errno name."""
    table = NR.get(platform.machine())
    if table is None:
        pytest.skip(f"no syscall table for {platform.machine()}")
    return (
        "import ctypes, errno, json, os\n"
        f"NR = {table!r}\n"
        "_libc = ctypes.CDLL(None, use_errno=True)\n"
        "_libc.syscall.restype = ctypes.c_long\n"
        "def sc(name, *args):\n"
        "    args = [ctypes.c_long(a) if isinstance(a, int) else a for a in args]\n"
        "    ctypes.set_errno(0)\n"
        "    r = _libc.syscall(ctypes.c_long(NR[name]), *args)\n"
        "    if r != -1:\n"
        "        return 'ok'\n"
        "    e = ctypes.get_errno()\n"
        "    return errno.errorcode.get(e, str(e))\n"
    )


def run_syscalls(srv: Server, calls: str) -> dict[str, str]:
    """Runs `res[...] = sc(...)` lines in the sandbox; returns res."""
    code = syscall_prelude() + "res = {}\n" + calls + "print(json.dumps(res))\n"
    _, res = run_json(srv, "python", code)
    return res


# ------------------------------------------------------------------------- host files and env


def test_host_file_outside_grants_is_not_visible(hostile, host_dir):
    host_file = host_dir / "host-only.txt"
    code = f"""
import errno, json, os
res = {{}}
try:
    open({str(host_file)!r}).read()
    res['file'] = 'read'
except OSError as e:
    res['file'] = errno.errorcode.get(e.errno)
res['dir'] = os.path.exists({str(host_dir)!r})
res['tmp'] = sorted(os.listdir('/tmp'))
res['pid1'] = open('/proc/1/cmdline', 'rb').read().split(b'\\0')[0].decode()
res['pid1_env'] = [v.decode() for v in open('/proc/1/environ', 'rb').read().split(b'\\0') if v]
print(json.dumps(res))
"""
    _, res = run_json(hostile, "python", code)
    assert res["file"] == "ENOENT", res
    assert res["dir"] is False, res
    assert not [n for n in res["tmp"] if n.startswith("ce-")], res  # the sandbox's own /tmp
    assert res["pid1"] == "/usr/bin/python3", res  # the runner, not the host's init
    assert SANDBOX_ENV <= set(res["pid1_env"]), res
    assert {v.split("=")[0] for v in res["pid1_env"]} <= ENV_KEYS, res
    assert_still_serving(hostile)


def test_server_environment_is_not_visible(hostile):
    # Names only: the value (a random hex) is searched for as bytes, never printed.
    code = f"""
import json, os
needles = [b{SECRET_NAME!r}, b{SECRET!r}, b'MCP_CONFIG_PATH', b'CODE_EXECUTOR_SOCKET_BASE', b'CODE_EXECUTOR_AUDIT_DIR']
hits, read, keys = [], 0, set()
for pid in [p for p in os.listdir('/proc') if p.isdigit()] + ['self', 'thread-self']:
    for part in ('environ', 'cmdline'):
        try:
            data = open(f'/proc/{{pid}}/{{part}}', 'rb').read()
        except OSError:
            continue
        read += 1
        hits += [f'/proc/{{pid}}/{{part}}:{{n.decode()}}' for n in needles if n in data]
        if part == 'environ':
            keys |= {{v.split(b'=')[0].decode() for v in data.split(b'\\0') if v}}
env = '\\0'.join(f'{{k}}={{v}}' for k, v in os.environ.items()).encode()
hits += [f'os.environ:{{n.decode()}}' for n in needles if n in env]
print(json.dumps({{'hits': hits, 'read': read, 'keys': sorted(keys), 'environ': sorted(os.environ)}}))
"""
    _, res = run_json(hostile, "python", code)
    assert res["hits"] == [], res
    assert res["read"] >= 4, res  # /proc/1, /proc/self: environ and cmdline at least
    assert set(res["keys"]) <= ENV_KEYS, res
    assert SECRET_NAME not in res["environ"], res
    assert_still_serving(hostile)


# ------------------------------------------------------------------------- docker socket


def test_docker_socket_is_unreachable(hostile):
    code = r"""
import errno, json, os, socket, stat
res = {'exists': {}, 'connect': {}}
for p in ('/var/run/docker.sock', '/run/docker.sock'):
    res['exists'][p] = os.path.lexists(p)
    s = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    try:
        s.connect(p)
        res['connect'][p] = 'connected'
    except OSError as e:
        res['connect'][p] = errno.errorcode.get(e.errno)
    s.close()
s = socket.socket()
s.settimeout(3)
try:
    s.connect(('172.17.0.1', 2375))
    res['tcp'] = 'connected'
except OSError as e:
    res['tcp'] = errno.errorcode.get(e.errno, repr(e))
sockets = []
for root, dirs, files in os.walk('/'):
    if root in ('/proc', '/sys', '/dev'):
        dirs[:] = []
        continue
    for name in files + dirs:
        try:
            if stat.S_ISSOCK(os.lstat(os.path.join(root, name)).st_mode):
                sockets.append(os.path.join(root, name))
        except OSError:
            pass
res['sockets'] = sorted(sockets)
res['docker_host'] = 'DOCKER_HOST' in os.environ
print(json.dumps(res))
"""
    _, res = run_json(hostile, "python", code, timeoutMs=60000)
    assert res["exists"] == {"/var/run/docker.sock": False, "/run/docker.sock": False}, res
    assert set(res["connect"].values()) == {"ENOENT"}, res
    assert res["tcp"] in ("ENETUNREACH", "EHOSTUNREACH"), res
    assert res["sockets"] == ["/run/mcp/proxy.sock"], res
    assert res["docker_host"] is False, res
    assert_still_serving(hostile)


# ------------------------------------------------------------------------- privileges


def test_setuid_binaries_do_not_raise_privileges(hostile):
    code = r"""
import json, os, stat, subprocess
found = []
for root, dirs, files in os.walk('/'):
    if root in ('/proc', '/sys', '/dev', '/run/mcp'):
        dirs[:] = []
        continue
    for name in files:
        try:
            mode = os.lstat(os.path.join(root, name)).st_mode
        except OSError:
            continue
        if stat.S_ISREG(mode) and mode & (stat.S_ISUID | stat.S_ISGID):
            found.append(os.path.join(root, name))
def run(*cmd):
    p = subprocess.run(cmd, stdin=subprocess.DEVNULL, capture_output=True, text=True, timeout=10)
    return [p.returncode, (p.stdout + p.stderr).strip()[-200:]]
print(json.dumps({'setid': sorted(found), 'su': run('su', 'root', '-c', 'id -u'),
                  'mount': run('mount', '-t', 'tmpfs', 'none', '/tmp'), 'id': run('id', '-u'),
                  'nnp': [l.split()[1] for l in open('/proc/self/status') if l.startswith('NoNewPrivs')]}))
"""
    _, res = run_json(hostile, "python", code, timeoutMs=60000)
    assert res["setid"] == [], f"setuid/setgid files in the image: {res['setid']}"
    assert res["su"][0] != 0 and res["su"][1].splitlines()[-1:] != ["0"], res
    assert res["mount"][0] != 0, res
    assert res["id"] == [0, "1001"], res
    assert res["nnp"] in (["1"], []), res  # gVisor's /proc/self/status has no NoNewPrivs line
    assert_still_serving(hostile)


def test_user_namespaces_and_setuid_are_refused(hostile):
    res = run_syscalls(hostile, (
        "res['unshare_user'] = sc('unshare', 0x10000000)\n"  # CLONE_NEWUSER
        "res['unshare_mount'] = sc('unshare', 0x00020000)\n"  # CLONE_NEWNS
        "res['setns'] = sc('setns', os.open('/proc/self/ns/user', os.O_RDONLY), 0)\n"
        "res['setuid0'] = sc('setuid', 0)\n"
        "res['setgid0'] = sc('setgid', 0)\n"
        "import subprocess\n"
        "p = subprocess.run(['unshare', '-U', '-r', 'id', '-u'], capture_output=True, text=True, timeout=10)\n"
        "res['unshare_cmd'] = [p.returncode, p.stdout + p.stderr]\n"
    ))
    for name in ("unshare_user", "unshare_mount", "setns", "setuid0", "setgid0"):
        assert res[name] == "EPERM", (name, res)
    rc, text = res["unshare_cmd"]
    assert rc != 0 and "Operation not permitted" in text, res
    assert_still_serving(hostile)


def test_kernel_modules_cannot_be_loaded(hostile):
    res = run_syscalls(hostile, (
        "res['init_module'] = sc('init_module', b'\\0' * 64, 64, b'')\n"
        "fd = os.open('/usr/bin/python3', os.O_RDONLY)\n"
        "res['finit_module'] = sc('finit_module', fd, b'', 0)\n"
        "res['delete_module'] = sc('delete_module', b'ext4', 0)\n"
    ))
    assert res == {"init_module": "EPERM", "finit_module": "EPERM", "delete_module": "EPERM"}, res
    assert_still_serving(hostile)


def test_ptrace_of_pid_1_is_refused(hostile):
    # From a child: pid 1 is the runner (same uid), which a plain uid check would allow.
    res = run_syscalls(hostile, (
        "r, w = os.pipe()\n"
        "pid = os.fork()\n"
        "if pid == 0:\n"
        "    out = {'attach': sc('ptrace', 16, 1, 0, 0)}\n"  # PTRACE_ATTACH
        "    if out['attach'] == 'ok':\n"
        "        sc('ptrace', 17, 1, 0, 0)\n"  # PTRACE_DETACH
        "    out['seize'] = sc('ptrace', 0x4206, 1, 0, 0)\n"  # PTRACE_SEIZE
        "    if out['seize'] == 'ok':\n"
        "        sc('ptrace', 17, 1, 0, 0)\n"
        "    os.write(w, json.dumps(out).encode())\n"
        "    os._exit(0)\n"
        "os.close(w)\n"
        "res = json.loads(os.read(r, 4096))\n"
        "res['child_exit'] = os.waitpid(pid, 0)[1]\n"
    ))
    assert res == {"attach": "EPERM", "seize": "EPERM", "child_exit": 0}, res
    assert_still_serving(hostile)


# ------------------------------------------------------------------------- resources


# A shell fork bomb (small processes: under gVisor a fast Python fork bomb reaches the
# memory limit before the pids limit), stopped by the code itself after 3 s.
FORK_BOMB = r"""
import json, os, signal, subprocess, time
with open('/tmp/bomb.err', 'wb') as err:
    bomb = subprocess.Popen(['sh', '-c', 'f(){ f & f & wait; }; f'], stdin=subprocess.DEVNULL, stderr=err)
    peak = 0
    end = time.monotonic() + 3
    while time.monotonic() < end:
        peak = max(peak, len([d for d in os.listdir('/proc') if d.isdigit()]))
        time.sleep(0.1)
    os.kill(-1, signal.SIGKILL)  # every process of the sandbox but the runner
    bomb.wait()
text = open('/tmp/bomb.err', 'rb').read()
print(json.dumps({'peak': peak, 'cannot_fork': text.count(b'Cannot fork')}))
"""


def test_fork_bomb_stays_inside_the_pids_limit(hostile):
    t0 = time.monotonic()
    r = hostile.execute("python", FORK_BOMB, timeoutMs=20000, timeout=60)
    assert time.monotonic() - t0 < 30
    # Contained: the host still forks and the server still serves ...
    assert subprocess.run(["true"], timeout=10).returncode == 0
    assert_still_serving(hostile)
    # ... and the execution says what happened.
    if r["runtime"] == "runsc" and r["exitCode"] == 2 and not r["output"]:
        pytest.fail(f"the gVisor sandbox died under the fork bomb (exit 2, no runner result) and the result "
                    f"gives no error: {r!r}")
    assert r["success"] is True and r["timedOut"] is False and r["oomKilled"] is False, r
    res = last_json(r)
    assert res["cannot_fork"] > 0, res  # fork failed (EAGAIN from the pids cgroup)
    assert res["peak"] <= 64, res  # pids.max is 64, the runner included


@pytest.mark.parametrize("language, code", MEMORY_BOMBS)
def test_memory_bomb_is_oom_killed(hostile, language, code):
    r = hostile.execute(language, code, memoryMb=64, timeoutMs=30000)
    assert r["oomKilled"] is True and r["errorType"] == "OutOfMemory", r
    assert r["success"] is False and r["timedOut"] is False, r
    assert "64 MiB" in r["error"], r
    assert_still_serving(hostile)


def test_filling_tmpfs_stops_at_its_size(hostile):
    code = r"""
import errno, json, os
res = {}
for d in ('/tmp', '/workspace', '/dev/shm'):
    n = 0
    try:
        with open(d + '/fill', 'wb') as f:
            for _ in range(200):
                f.write(b'\0' * (1 << 20))
                f.flush()
                n += 1
        res[d] = ['filled', n]
    except OSError as e:
        res[d] = [errno.errorcode.get(e.errno), n]
    try:
        os.unlink(d + '/fill')
    except OSError:
        pass
print(json.dumps(res))
"""
    _, res = run_json(hostile, "python", code, timeoutMs=60000)
    for d, (how, mib) in res.items():
        assert how in ("ENOSPC", "EFBIG"), (d, res)
        assert mib <= 64, (d, res)
    assert_still_serving(hostile)


def test_root_filesystem_is_read_only(hostile):
    code = r"""
import errno, json, os
res = {}
for p in ('/etc/passwd', '/usr/bin/python3', '/opt/code-executor/runner.py', '/x'):
    try:
        open(p, 'ab').close()
        res[p] = 'written'
    except OSError as e:
        res[p] = errno.errorcode.get(e.errno)
try:
    os.mkdir('/newdir')
    res['mkdir'] = 'made'
except OSError as e:
    res['mkdir'] = errno.errorcode.get(e.errno)
res['root_opts'] = [l.split()[3].split(',') for l in open('/proc/self/mounts') if l.split()[1] == '/']
print(json.dumps(res))
"""
    _, res = run_json(hostile, "python", code)
    assert res.pop("mkdir") == "EROFS", res
    assert res.pop("root_opts")[-1][0] == "ro", res
    for p, outcome in res.items():
        assert outcome in ("EROFS", "EACCES"), (p, res)
    assert_still_serving(hostile)


# ------------------------------------------------------------------------- network


SOCKETS = {
    "python": r"""
import errno, json, socket, time
res = {}
def attempt(name, family, kind, addr, proto=0):
    t0 = time.monotonic()
    try:
        s = socket.socket(family, kind, proto)
    except OSError as e:
        res[name] = [errno.errorcode.get(e.errno), 0]
        return
    s.settimeout(5)
    try:
        if kind == socket.SOCK_DGRAM:
            s.sendto(b'x', addr)
        else:
            s.connect(addr)
        res[name] = ['connected', 0]
    except OSError as e:
        res[name] = [errno.errorcode.get(e.errno, repr(e)), time.monotonic() - t0]
    finally:
        s.close()
attempt('tcp4', socket.AF_INET, socket.SOCK_STREAM, ('1.1.1.1', 53))
attempt('tcp6', socket.AF_INET6, socket.SOCK_STREAM, ('2606:4700:4700::1111', 53))
attempt('udp4', socket.AF_INET, socket.SOCK_DGRAM, ('1.1.1.1', 53))
attempt('raw', socket.AF_INET, socket.SOCK_RAW, ('1.1.1.1', 0), socket.IPPROTO_ICMP)
attempt('packet', socket.AF_PACKET, socket.SOCK_RAW, ('lo', 0))
print(json.dumps(res))
""",
    "typescript": r"""
const res: Record<string, string> = {};
async function attempt(name: string, fn: () => Promise<unknown>) {
  try { await fn(); res[name] = "connected"; } catch (e) { res[name] = (e as Error).name; }
}
await attempt("tcp4", () => Deno.connect({ hostname: "1.1.1.1", port: 53 }));
await attempt("fetch", () => fetch("http://1.1.1.1/"));
await attempt("tls", () => Deno.connectTls({ hostname: "1.1.1.1", port: 443 }));
console.log(JSON.stringify(res));
""",
}


@pytest.mark.parametrize("language", ["python", "typescript"])
def test_sockets_fail_with_network_off(hostile, language):
    _, res = run_json(hostile, language, SOCKETS[language], timeoutMs=20000)
    if language == "python":
        for name in ("tcp4", "tcp6", "udp4"):
            how, seconds = res[name]
            assert how in ("ENETUNREACH", "EHOSTUNREACH"), (name, res)
            assert seconds < 1, (name, res)  # no route: refused at once, nothing waits on a wire
        assert res["raw"][0] == "EPERM" and res["packet"][0] == "EPERM", res
    else:
        assert res == {"tcp4": "NotCapable", "fetch": "NotCapable", "tls": "NotCapable"}, res
    assert_still_serving(hostile)


@pytest.mark.parametrize("language", ["python", "typescript"])
def test_dns_lookups_fail(hostile, language):
    if language == "python":
        code = (
            "import json, socket, time\n"
            "t0 = time.monotonic()\n"
            "try:\n"
            "    socket.getaddrinfo('example.com', 443)\n"
            "    res = ['resolved']\n"
            "except OSError as e:\n"
            "    res = [type(e).__name__]\n"
            "print(json.dumps(res + [time.monotonic() - t0]))\n"
        )
        _, (how, seconds) = run_json(hostile, "python", code, timeoutMs=20000)
        assert how == "gaierror" and seconds < 5, (how, seconds)
    else:
        code = (
            "const res: Record<string, string> = {};\n"
            "try { await Deno.resolveDns('example.com', 'A', { nameServer: { ipAddr: '1.1.1.1', port: 53 } }); res.named = 'resolved'; }\n"
            "catch (e) { res.named = (e as Error).name; }\n"
            "try { await Deno.resolveDns('example.com', 'A'); res.system = 'resolved'; }\n"
            "catch (e) { res.system = (e as Error).name + ': ' + (e as Error).message; }\n"
            "console.log(JSON.stringify(res));\n"
        )
        _, res = run_json(hostile, "typescript", code, timeoutMs=20000)
        assert res["named"] == "NotCapable", res
        assert res["system"] != "resolved", res
    assert_still_serving(hostile)


# ------------------------------------------------------------------------- kernel interfaces


def test_mount_and_root_changes_are_refused(hostile):
    res = run_syscalls(hostile, (
        "res['mount_tmpfs'] = sc('mount', b'none', b'/tmp', b'tmpfs', 0, None)\n"
        "res['remount_root_rw'] = sc('mount', None, b'/', None, 0x20, None)\n"  # MS_REMOUNT
        "res['bind_proc'] = sc('mount', b'/proc', b'/tmp', None, 0x1000, None)\n"  # MS_BIND
        "res['umount_run_mcp'] = sc('umount2', b'/run/mcp', 2)\n"  # MNT_DETACH
        "res['pivot_root'] = sc('pivot_root', b'/tmp', b'/tmp')\n"
        "res['chroot'] = sc('chroot', b'/tmp')\n"
    ))
    assert set(res.values()) == {"EPERM"}, res
    assert_still_serving(hostile)


def test_keyctl_bpf_perf_io_uring_and_friends_are_refused(hostile):
    res = run_syscalls(hostile, (
        "res['keyctl'] = sc('keyctl', 0, -3, 0, 0, 0)\n"  # KEYCTL_GET_KEYRING_ID, session
        "res['add_key'] = sc('add_key', b'user', b'x', b'y', 1, -3)\n"
        "attr = ctypes.create_string_buffer(128)\n"
        "res['bpf'] = sc('bpf', 0, attr, 128)\n"  # BPF_MAP_CREATE
        "res['perf_event_open'] = sc('perf_event_open', attr, 0, -1, -1, 0)\n"
        "params = ctypes.create_string_buffer(120)\n"
        "res['io_uring_setup'] = sc('io_uring_setup', 8, params)\n"
        "res['userfaultfd'] = sc('userfaultfd', 0)\n"
        "res['kexec_load'] = sc('kexec_load', 0, 0, None, 0)\n"
        "res['open_by_handle_at'] = sc('open_by_handle_at', 3, attr, 0)\n"
        "res['reboot'] = sc('reboot', 0xfee1dead, 672274793, 0x1234567, None)\n"
        "res['swapon'] = sc('swapon', b'/tmp/swap', 0)\n"
    ))
    for name, outcome in res.items():
        assert outcome in ("EPERM", "ENOSYS"), (name, res)
    assert_still_serving(hostile)


def test_kill_minus_one_only_reaches_the_sandbox(hostile):
    if os.geteuid() != 0:
        pytest.skip("needs root to start a host process as uid 1001")
    host_proc = subprocess.Popen(["sleep", "300"], user=1001, group=1001, stdin=subprocess.DEVNULL)
    try:
        code = f"""
import errno, json, os, signal, subprocess
child = subprocess.Popen(['sleep', '60'])
res = {{'pids_before': sorted(int(p) for p in os.listdir('/proc') if p.isdigit())}}
os.kill(-1, signal.SIGKILL)
res['child'] = child.wait(timeout=10)
try:
    os.kill({host_proc.pid}, signal.SIGKILL)
    res['host_pid'] = 'signalled'
except OSError as e:
    res['host_pid'] = errno.errorcode.get(e.errno)
res['me'] = os.getpid()
print(json.dumps(res))
"""
        _, res = run_json(hostile, "python", code)
        assert res["child"] == -signal.SIGKILL, res  # kill(-1) acted inside the sandbox ...
        assert res["me"] == 1, res  # ... and spared the runner (pid 1)
        if host_proc.pid not in res["pids_before"]:
            assert res["host_pid"] == "ESRCH", res
        time.sleep(0.5)
        assert host_proc.poll() is None, "a host process of uid 1001 was killed from the sandbox"
        assert hostile.alive()
    finally:
        host_proc.kill()
        host_proc.wait(10)
    assert_still_serving(hostile)


# ------------------------------------------------------------------------- tool proxy


RAW_PROXY = PROXY_RAW_REQUEST + r"""
import json, os, re

def raw(method, path, headers, body=b""):
    status, text = raw_response(method, path, headers, body)
    return [status, text[-300:]]

hexre = re.compile(rb"[0-9a-fA-F]{64}")
leaks = sum(len(hexre.findall(open(p, "rb").read())) for p in
            ("/proc/1/environ", "/proc/1/cmdline", "/proc/self/environ"))
call = json.dumps({"name": "mcp__time__get_current_time", "arguments": {"timezone": "Etc/UTC"}}).encode()
js = {"Content-Type": "application/json"}
out = {
    "no_token": raw("POST", "/v1/tools/call", js, call),
    "forged_token": raw("POST", "/v1/tools/call", {**js, "Authorization": "Bearer " + os.urandom(32).hex()}, call),
    "empty_bearer": raw("POST", "/v1/tools/call", {**js, "Authorization": "Bearer "}, call),
    "basic": raw("POST", "/v1/tools/call", {**js, "Authorization": "Basic " + "0" * 64}, call),
    "list_forged": raw("GET", "/v1/tools", {"Authorization": "Bearer " + "ab" * 32}),
}
print(json.dumps({"answers": out, "leaks": leaks}))
"""


def test_proxy_refuses_missing_and_forged_tokens(hostile):
    r, res = run_json(hostile, "python", RAW_PROXY, allowedTools=["mcp__time__*"])
    for case, (status, body) in res["answers"].items():
        assert status == 401 and "bearer token" in body, (case, status, body)
    assert res["leaks"] == 0, res  # the token is not in the environment or command line
    assert r["toolCallsMade"] == 0 and r["toolCallSummary"] == {}, r  # nothing reached a tool
    assert_still_serving(hostile)


# (name, expected status): names that do not parse, or do not match the allowlist, are
# refused 403 before any lookup; names that parse and match but name no tool are 404.
TRICK_NAMES = [
    (TIME_TOOL + "/../x", 403),
    ("mcp__time__get_current_time/../../git__git_log", 403),
    ("MCP__TIME__GET_CURRENT_TIME", 403),
    ("mcp__TIME__get_current_time", 403),
    ("mcp__time__get_current_t\u0456me", 403),  # Cyrillic i
    ("mcp__ti\u200bme__get_current_time", 403),  # zero-width space
    (TIME_TOOL + "\x00", 403),
    (TIME_TOOL + "\n", 403),
    (TIME_TOOL + " ", 403),
    ("mcp__time__*", 403),
    ("mcp__git__git_log", 403),
    ("mcp__time__..", 404),
    (TIME_TOOL + "__x", 404),
]

TRICK_CODE = {
    "python": (
        "import json\n"
        "out = []\n"
        "for name in json.loads(NAMES):\n"
        "    try:\n"
        "        await call_mcp_tool(name, {'timezone': 'Etc/UTC'})\n"
        "        out.append([name, 'called', 200])\n"
        "    except McpToolError as e:\n"
        "        out.append([name, type(e).__name__, e.status])\n"
        f"real = await call_mcp_tool({TIME_TOOL!r}, {{'timezone': 'Etc/UTC'}})\n"
        "print(json.dumps({'out': out, 'real': real['timezone']}))\n"
    ),
    "typescript": (
        "const out: unknown[] = [];\n"
        "for (const name of JSON.parse(NAMES)) {\n"
        "  try { await callMCPTool(name, { timezone: 'Etc/UTC' }); out.push([name, 'called', 200]); }\n"
        "  catch (e) { if (!(e instanceof McpToolError)) throw e; out.push([name, e.name, e.status]); }\n"
        "}\n"
        f"const real = await callMCPTool({json.dumps(TIME_TOOL)}, {{ timezone: 'Etc/UTC' }});\n"
        "console.log(JSON.stringify({ out, real: real.timezone }));\n"
    ),
}


@pytest.mark.parametrize("language", ["python", "typescript"])
def test_tool_name_tricks_are_refused(hostile, language):
    names = json.dumps([n for n, _ in TRICK_NAMES])
    decl = f"NAMES = {json.dumps(names)}\n" if language == "python" else f"const NAMES = {json.dumps(names)};\n"
    r, res = run_json(hostile, language, decl + TRICK_CODE[language], allowedTools=["mcp__time__*"])
    got = {name: (cls, status) for name, cls, status in res["out"]}
    for name, status in TRICK_NAMES:
        cls = "ToolNotAllowed" if status == 403 else "ToolNotFound"
        assert got[name] == (cls, status), (repr(name), got[name])
    assert res["real"] == "Etc/UTC", res  # the genuine name still works
    assert r["toolCallSummary"][TIME_TOOL] == {**r["toolCallSummary"][TIME_TOOL], "calls": 1, "errors": 0}, r
    assert r["toolCallsMade"] == len(TRICK_NAMES) + 1, r
    assert_still_serving(hostile)


# ------------------------------------------------------------------------- deno


DENO_CODE = f"""
const res: Record<string, unknown> = {{}};
async function attempt(name: string, fn: () => unknown) {{
  try {{ await fn(); res[name] = "allowed"; }} catch (e) {{ res[name] = (e as Error).name; }}
}}
await attempt("run", () => (Deno as any).run({{ cmd: ["id"] }}));
await attempt("command", () => new Deno.Command("id").outputSync());
await attempt("spawn", () => new Deno.Command("/bin/sh", {{ args: ["-c", "id"] }}).spawn());
await attempt("env_get", () => Deno.env.get({json.dumps(SECRET_NAME)}));
await attempt("env_all", () => Deno.env.toObject());
await attempt("passwd", () => Deno.readTextFile("/etc/passwd"));
await attempt("passwd_sync", () => Deno.readTextFileSync("/etc/passwd"));
await attempt("dlopen", () => Deno.dlopen("/lib/x86_64-linux-gnu/libc.so.6", {{}}));
res.request_run = Deno.permissions.requestSync({{ name: "run" }}).state;
res.query = Object.fromEntries(["run", "env", "ffi", "sys", "read", "write", "net"].map(
  (n) => [n, Deno.permissions.querySync({{ name: n }} as Deno.PermissionDescriptor).state]));
console.log(JSON.stringify(res));
"""


def test_deno_cannot_run_processes_read_env_or_files(hostile):
    _, res = run_json(hostile, "typescript", DENO_CODE)
    for name in ("run", "command", "spawn", "env_get", "env_all", "passwd", "passwd_sync", "dlopen"):
        assert res[name] == "NotCapable", (name, res)
    assert res["request_run"] == "denied", res  # --no-prompt: asking does not help
    assert all(state != "granted" for state in res["query"].values()), res
    assert_still_serving(hostile)
