#!/usr/bin/env bash
# Register gVisor (runsc) as a Docker runtime named "runsc", idempotently.
#
# Usage: scripts/gvisor-setup.sh [--check]
#
#   (no argument)  install Debian's runsc package if runsc is missing, merge the runtime
#                  entry below into the daemon configuration, and, only when that file
#                  changed (or the engine does not list runsc yet), send dockerd SIGHUP
#                  and wait until `docker info` lists the runtime
#   --check        change nothing: exit 0 when the engine lists a runsc runtime with
#                  exactly these arguments, 1 otherwise (says why)
#
# The entry merged into /etc/docker/daemon.json (every other key, and every other
# runtime, is kept as it is; the file is created when missing):
#
#   "runtimes": {"runsc": {"path": "<command -v runsc>",
#                          "runtimeArgs": ["--network=none", "--host-uds=open", "--oci-seccomp"]}}
#
#   --network=none   sandboxes run with Docker's network "none"; runsc's default network
#                    stack refuses to start in the root network namespace ("cannot run
#                    with network enabled in root network namespace"). Loopback inside
#                    the sandbox still works (gVisor's own netstack).
#   --host-uds=open  lets code connect() to a host Unix socket bind-mounted into the
#                    container (the tool proxy at /run/mcp); without it connect() fails
#                    with EPERM. "open" only: creating host sockets stays refused.
#   --oci-seccomp    makes gVisor apply the container's seccomp profile (ours,
#                    seccomp/sandbox.json) to the code inside its kernel; without it the
#                    profile is silently ignored (unshare(CLONE_NEWUSER) would succeed).
#
# Not used, tried on the build machine (Debian 12, Docker 20.10, cgroup v1, runsc
# 0.0~20221219): --ignore-cgroups (not needed; with it the memory limit is no longer
# enforced and threads fail to start), --platform=kvm (/dev/kvm exists but the sandbox
# hangs at start, spinning; the default ptrace platform works).
#
# Needs root (uses sudo when run as another user, non-interactively when there is no
# terminal). Exits non-zero with a message when it cannot finish: no root, apt failure,
# dockerd not running on this host, invalid daemon.json, the engine not picking up the
# runtime within 20 s.
#
# Environment:
#   CE_DOCKER_DAEMON_JSON   the daemon configuration file (default /etc/docker/daemon.json;
#                           must be the one the running dockerd reads)
#   CE_GVISOR_TIMEOUT       seconds to wait for the engine to list runsc (default 20)
set -euo pipefail

RUNTIME_NAME=runsc
RUNTIME_ARGS='["--network=none", "--host-uds=open", "--oci-seccomp"]'
daemon_json=${CE_DOCKER_DAEMON_JSON:-/etc/docker/daemon.json}
timeout=${CE_GVISOR_TIMEOUT:-20}

die() { echo "gvisor-setup: error: $*" >&2; exit 1; }
say() { echo "gvisor-setup: $*"; }

mode=setup
case ${1:-} in
-h | --help)
	sed -n '2,/^set -euo/p' "$0" | sed '$d; s/^# \{0,1\}//'
	exit 0 ;;
--check) mode=check ;;
"") ;;
*) die "unknown argument '$1' (--check, --help)" ;;
esac
[[ $# -le 1 ]] || die "at most one argument"

# Runs a command as root: directly, or through sudo (never prompting without a terminal).
as_root() {
	if [[ $(id -u) -eq 0 ]]; then
		"$@"
	elif command -v sudo >/dev/null; then
		if [[ -t 0 ]]; then sudo "$@"; else sudo -n "$@"; fi
	else
		return 126
	fi
}
need_root() {
	[[ $(id -u) -eq 0 ]] && return 0
	command -v sudo >/dev/null || die "not root and sudo is not installed: run as root to $1"
	if [[ ! -t 0 ]] && ! sudo -n true 2>/dev/null; then
		die "not root and sudo needs a password (no terminal to ask on): run as root, or from a terminal, to $1"
	fi
}

# The runtimes the engine knows, as JSON ({} when the engine does not answer).
engine_runtimes() { docker info --format '{{json .Runtimes}}' 2>/dev/null || echo '{}'; }

# Whether the engine lists runsc with path $1 and exactly our arguments.
engine_has_runtime() {
	engine_runtimes | python3 -c '
import json, sys
rt = json.load(sys.stdin).get(sys.argv[1]) or {}
want_args = json.loads(sys.argv[3])
sys.exit(0 if rt.get("path") == sys.argv[2] and (rt.get("runtimeArgs") or []) == want_args else 1)
' "$RUNTIME_NAME" "$1" "$RUNTIME_ARGS"
}

command -v python3 >/dev/null || die "python3 is needed to edit $daemon_json"
command -v docker >/dev/null || die "docker CLI not found"
docker version --format '{{.Server.Version}}' >/dev/null 2>&1 ||
	die "Docker engine unreachable (is dockerd running? DOCKER_HOST?)"

# ------------------------------------------------------------------ --check
if [[ $mode == check ]]; then
	path=$(command -v runsc || true)
	[[ -n $path ]] || { say "runsc is not installed (make gvisor-setup)"; exit 1; }
	path=$(readlink -f "$path")
	if engine_has_runtime "$path"; then
		say "the engine lists runtime $RUNTIME_NAME: $path $RUNTIME_ARGS"
		exit 0
	fi
	say "the engine does not list runtime $RUNTIME_NAME with $path $RUNTIME_ARGS (has: $(engine_runtimes)); run make gvisor-setup"
	exit 1
fi

# ------------------------------------------------------------------ 1. the package
if command -v runsc >/dev/null; then
	say "runsc is installed: $(command -v runsc) ($(runsc --version 2>/dev/null | head -n 1))"
else
	need_root "install Debian's runsc package"
	command -v apt-get >/dev/null || die "runsc is not installed and there is no apt-get: install gVisor's runsc by hand"
	say "installing Debian's runsc package"
	export DEBIAN_FRONTEND=noninteractive
	# The package lists may be missing or stale on a fresh machine: update once, then retry.
	if ! as_root apt-get install -y -qq runsc; then
		as_root apt-get update -qq || die "apt-get update failed"
		as_root apt-get install -y -qq runsc || die "apt-get install runsc failed"
	fi
	command -v runsc >/dev/null || die "the runsc package is installed but runsc is not on PATH"
	say "installed $(command -v runsc) ($(runsc --version 2>/dev/null | head -n 1))"
fi
runsc_path=$(command -v runsc)
runsc_path=$(readlink -f "$runsc_path")

# ------------------------------------------------------------------ 2. daemon.json
# The merge, in Python: reads a copy of the file (empty when there is none; it must be
# a JSON object), sets runtimes.runsc, and writes the result to stdout, or nothing when
# the content (not the formatting) is already right. A file that is not valid JSON is
# never overwritten.
merge_py='
import json, sys
src, path, name, runtime_path = sys.argv[1:5]
args = json.loads(sys.argv[5])
try:
    with open(src) as f:
        text = f.read()
except FileNotFoundError:
    text = ""
if text.strip():
    try:
        conf = json.loads(text)
    except ValueError as e:
        sys.exit(f"{path} is not valid JSON ({e}): not touching it")
    if not isinstance(conf, dict):
        sys.exit(f"{path} is not a JSON object: not touching it")
else:
    conf = {}
runtimes = conf.get("runtimes", {})
if not isinstance(runtimes, dict):
    sys.exit(f"{path}: \"runtimes\" is not an object: not touching it")
entry = {"path": runtime_path, "runtimeArgs": args}
if runtimes.get(name) == entry:
    sys.exit(0)
old = runtimes.get(name)
runtimes[name] = entry
conf["runtimes"] = runtimes
print(("replaced " + json.dumps(old)) if old is not None else ("added" if text.strip() else "created"), file=sys.stderr)
json.dump(conf, sys.stdout, indent=2)
sys.stdout.write("\n")
'
changed=0
if [[ -e $daemon_json && ! -r $daemon_json ]]; then
	need_root "read $daemon_json"
	current=$(as_root cat "$daemon_json") || die "cannot read $daemon_json"
else
	current=$(cat "$daemon_json" 2>/dev/null || true)
fi
tmp=$(mktemp)
trap 'rm -f "$tmp" "$tmp.src" "$tmp.msg"' EXIT
printf '%s' "$current" >"$tmp.src"
python3 -c "$merge_py" "$tmp.src" "$daemon_json" "$RUNTIME_NAME" "$runsc_path" "$RUNTIME_ARGS" \
	>"$tmp" 2>"$tmp.msg" || die "$(cat "$tmp.msg")"
if [[ -s $tmp ]]; then
	need_root "write $daemon_json"
	what=$(cat "$tmp.msg")
	# Written next to the file (the target, if it is a symlink), then renamed over it:
	# dockerd never reads a half-written file. The mode of an existing file is kept
	# (0644 for a new one).
	target=$(readlink -m "$daemon_json")
	as_root mkdir -p "$(dirname "$target")" || die "cannot create $(dirname "$target")"
	mode_bits=$(stat -c %a "$target" 2>/dev/null || echo 644)
	{ as_root install -m "$mode_bits" "$tmp" "$target.gvisor-setup.tmp" &&
		as_root mv -f "$target.gvisor-setup.tmp" "$target"; } ||
		die "cannot write $target"
	changed=1
	case $what in
	created) say "created $daemon_json with runtime $RUNTIME_NAME: $runsc_path $RUNTIME_ARGS" ;;
	added) say "$daemon_json: added runtime $RUNTIME_NAME: $runsc_path $RUNTIME_ARGS (other keys kept)" ;;
	*) say "$daemon_json: runtime $RUNTIME_NAME set to $runsc_path $RUNTIME_ARGS (was: ${what#replaced }; other keys kept)" ;;
	esac
else
	say "$daemon_json already registers runtime $RUNTIME_NAME: $runsc_path $RUNTIME_ARGS"
fi

# ------------------------------------------------------------------ 3. reload dockerd
if [[ $changed -eq 0 ]] && engine_has_runtime "$runsc_path"; then
	say "the engine lists runtime $RUNTIME_NAME: nothing to do"
	exit 0
fi
[[ $changed -eq 1 ]] || say "the engine does not list runtime $RUNTIME_NAME yet: reloading its configuration"

pid=""
if [[ -r /var/run/docker.pid ]]; then pid=$(tr -dc 0-9 </var/run/docker.pid); fi
if [[ -z $pid || ! -d /proc/$pid ]]; then pid=$(pidof dockerd 2>/dev/null | awk '{print $1}' || true); fi
[[ -n $pid && -d /proc/$pid ]] ||
	die "dockerd is not running on this host (no /var/run/docker.pid, no pidof dockerd): $daemon_json is written; restart the engine to load it"
need_root "signal dockerd (pid $pid)"
as_root kill -HUP "$pid" || die "cannot send SIGHUP to dockerd (pid $pid)"
say "sent SIGHUP to dockerd (pid $pid) to reload $daemon_json"

deadline=$((SECONDS + timeout))
until engine_has_runtime "$runsc_path"; do
	if [[ $SECONDS -ge $deadline ]]; then
		die "after ${timeout}s the engine still does not list runtime $RUNTIME_NAME (runtimes: $(engine_runtimes)); the engine's log says why (journalctl -u docker, or dockerd's output), e.g. a daemon.json it rejects or a runtime also given as a dockerd flag"
	fi
	sleep 0.5
done
say "the engine lists runtime $RUNTIME_NAME (docker run --runtime $RUNTIME_NAME ...)"
