#!/usr/bin/env bash
# Build the sandbox images, incrementally. No container registry is used anywhere.
#
# Usage: images/build.sh [rootfs|python|deno|server|all|clean]...   (default: all)
#
#   rootfs  code-executor/rootfs:<version>  Debian bookworm from images/rootfs.sh
#   python  code-executor/python:<version>  rootfs + images/python/runner.py
#   deno    code-executor/deno:<version>    rootfs + Deno (PyPI wheel, deno.pin) + runner
#   server  code-executor/server:<version>  rootfs + the release binary, for compose/
#           (runs `cargo build --release --bin code-executor-mcp` first: a no-op when
#           the binary is up to date, a few minutes on 2 cores when it is not)
#   all     rootfs, python, deno and server
#   clean   remove every code-executor rootfs/python/deno/server image (all versions)
#
# <version> is the `version = "..."` of the [package] section of Cargo.toml (0.1.0 if
# there is none). Each image carries the labels code-executor.image,
# org.opencontainers.image.version and code-executor.source-sha256, the SHA-256 of a
# manifest of everything the image is made from (see *_manifest below: scripts,
# Dockerfile, runner, Deno pin, base image id, version, architecture). An image whose
# tag exists with the same source hash is up to date and is not rebuilt, so a rebuild
# with nothing changed takes a few seconds. Python, Deno and server depend on rootfs:
# building them checks (and if needed rebuilds) rootfs first, and a new rootfs rebuilds
# them. The server image is rebuilt when the release binary changes.
#
# Environment:
#   CE_FORCE=1   rebuild the named images, and the rootfs under them, even when up to
#                date (e.g. to pick up Debian security updates, which the source hash
#                cannot see)
#   CE_DEBIAN_MIRROR, CE_DEBIAN_SECURITY_MIRROR   passed on to rootfs.sh
#   CE_SERVER_BINARY=PATH   package this binary into the server image instead of
#                running cargo (e.g. one built elsewhere; it must run on bookworm's glibc)
#   CARGO        the cargo command (default: cargo)
#
# Writes only under images/.cache/ (git-ignored): the Deno wheel, build logs; the server
# target also lets cargo update target/release/.
set -euo pipefail

# Bump when this script changes how an image is made: changes the source hash of all.
RECIPE=1

here=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
repo=$(dirname "$here")
cache=$here/.cache
logs=$cache/logs

# Temporary files and directories, removed on every exit path.
tmp_paths=()
cleanup() { [[ ${#tmp_paths[@]} -eq 0 ]] || rm -rf "${tmp_paths[@]}"; }
trap cleanup EXIT

die() { echo "build.sh: error: $*" >&2; exit 1; }
note() { echo "build.sh: $*" >&2; }
sha256_of_stdin() { sha256sum | cut -d' ' -f1; }
sha256_of_file() { sha256sum "$1" | cut -d' ' -f1; }
now() { echo "${EPOCHREALTIME/,/.}"; }
elapsed() { awk -v a="$1" -v b="$(now)" 'BEGIN { printf "%.1fs", b - a }'; }

crate_version() {
	local cargo=$repo/Cargo.toml v=""
	if [[ -f $cargo ]]; then
		v=$(awk '
			/^\[/ { in_pkg = ($0 ~ /^\[package\][[:space:]]*$/) ; next }
			in_pkg && /^[[:space:]]*version[[:space:]]*=/ {
				if (match($0, /"[^"]*"/)) { print substr($0, RSTART + 1, RLENGTH - 2); exit }
			}' "$cargo")
	fi
	echo "${v:-0.1.0}"
}

image_id() { docker image inspect --format '{{.Id}}' "$1" 2>/dev/null || true; }
image_source_hash() {
	docker image inspect --format '{{ index .Config.Labels "code-executor.source-sha256" }}' "$1" 2>/dev/null || true
}

# One line per image on stdout.
report() { printf '%-7s %-30s %-11s %s\n' "$1" "$2" "$3" "$4"; }

# Show the end of a failed step's log and stop.
fail_with_log() {
	local what=$1 log=$2
	echo "build.sh: $what failed; last lines of $log:" >&2
	tail -n 40 "$log" >&2 || true
	exit 1
}

# Remove an image that lost its tag to a rebuild, unless something still uses it.
drop_old() {
	local old=$1 new=$2
	if [[ -n $old && $old != "$new" ]]; then
		docker image rm "$old" >/dev/null 2>&1 || true
	fi
}

# Hardened one-shot run, as the sandbox does it; the image's tag is removed when it
# fails, so that a broken image is never reported "up to date" later.
smoke() {
	local name=$1 tag=$2 log=$3
	shift 3
	if ! docker run --rm --label code-executor.managed=true --label code-executor.smoke-test=true \
		--log-driver none --read-only --user 1001:1001 --cap-drop ALL \
		--security-opt no-new-privileges --network none \
		--tmpfs /tmp:size=64m,nosuid,nodev --tmpfs /workspace:size=64m,nosuid,nodev \
		--pids-limit 64 --memory 256m "$@" >>"$log" 2>&1 </dev/null; then
		docker image rm "$tag" >/dev/null 2>&1 || true
		fail_with_log "smoke test of $name ($tag, removed again)" "$log"
	fi
}

# `docker build` with a context made of exactly the listed files (tar on stdin),
# all owned by root and world-readable; the files are "name=path" pairs.
build_from_files() {
	local tag=$1 log=$2
	shift 2
	local args=() files=()
	while [[ $# -gt 0 && $1 != -- ]]; do args+=("$1"); shift; done
	shift
	files=("$@")
	local ctx
	ctx=$(mktemp -d "$cache/ctx.XXXXXX")
	tmp_paths+=("$ctx")
	local f
	for f in "${files[@]}"; do
		# Hard links where possible: the Deno binary is ~100 MB.
		ln "${f#*=}" "$ctx/${f%%=*}" 2>/dev/null || cp "${f#*=}" "$ctx/${f%%=*}"
	done
	tar -C "$ctx" -cf - --owner=0 --group=0 --numeric-owner --mode='u+rwX,go+rX,go-w' . |
		docker build --network none --force-rm -t "$tag" "${args[@]}" - >>"$log" 2>&1
}

# --------------------------------------------------------------------------- rootfs

rootfs_manifest() {
	printf 'image rootfs\nrecipe %s\nversion %s\n' "$RECIPE" "$version"
	"$here/rootfs.sh" --print-inputs
}

rootfs_done=""
ensure_rootfs() {
	[[ -z $rootfs_done ]] || return 0
	rootfs_done=1
	local tag=code-executor/rootfs:$version start hash log old
	start=$(now)
	hash=$(rootfs_manifest | sha256_of_stdin)
	if [[ ${CE_FORCE:-0} != 1 && $(image_source_hash "$tag") == "$hash" ]]; then
		report rootfs "$tag" "up to date" "($(elapsed "$start"))"
		return 0
	fi
	local host_arch
	host_arch=$("$here/rootfs.sh" --print-inputs | sed -n 's/^arch //p')
	[[ $host_arch == "$(engine_arch)" ]] ||
		die "mmdebstrap would build for $host_arch but the Docker engine runs $(engine_arch)"
	log=$logs/rootfs.log
	: >"$log"
	old=$(image_id "$tag")
	"$here/rootfs.sh" "$tag" code-executor.image=rootfs \
		"org.opencontainers.image.version=$version" \
		"code-executor.source-sha256=$hash" >>"$log" 2>&1 || fail_with_log "rootfs build" "$log"
	drop_old "$old" "$(image_id "$tag")"
	smoke rootfs "$tag" "$log" --entrypoint /usr/bin/python3 "$tag" -I -c 'import ssl, zoneinfo, sqlite3'
	report rootfs "$tag" built "($(elapsed "$start"))"
}

# --------------------------------------------------------------------------- python

python_manifest() {
	printf 'image python\nrecipe %s\nversion %s\nbase %s\n' "$RECIPE" "$version" "$1"
	echo "Dockerfile $(sha256_of_file "$here/python/Dockerfile")"
	echo "runner.py $(sha256_of_file "$here/python/runner.py")"
}

ensure_python() {
	ensure_rootfs
	local tag=code-executor/python:$version base=code-executor/rootfs:$version
	local start hash log old base_id
	start=$(now)
	[[ -f $here/python/runner.py ]] || die "images/python/runner.py is missing"
	base_id=$(image_id "$base")
	hash=$(python_manifest "$base_id" | sha256_of_stdin)
	if [[ ${CE_FORCE:-0} != 1 && $(image_source_hash "$tag") == "$hash" ]]; then
		report python "$tag" "up to date" "($(elapsed "$start"))"
		return 0
	fi
	log=$logs/python.log
	: >"$log"
	old=$(image_id "$tag")
	build_from_files "$tag" "$log" \
		--build-arg "BASE_IMAGE=$base" --label "org.opencontainers.image.version=$version" \
		--label "code-executor.source-sha256=$hash" -- \
		"Dockerfile=$here/python/Dockerfile" "runner.py=$here/python/runner.py" ||
		fail_with_log "python image build" "$log"
	drop_old "$old" "$(image_id "$tag")"
	smoke python "$tag" "$log" --entrypoint /usr/bin/python3 "$tag" -I -c \
		'import os, pwd; assert os.getuid() == 1001 and pwd.getpwuid(1001).pw_dir == "/workspace"; open("/opt/code-executor/runner.py").close()'
	report python "$tag" built "($(elapsed "$start"))"
}

# --------------------------------------------------------------------------- deno

pin_file=$here/deno/deno.pin
pin() {
	local v
	v=$(sed -n "s/^$1=//p" "$pin_file" | tail -n 1)
	[[ -n $v ]] || die "$pin_file has no $1"
	echo "$v"
}

# Docker's name for the engine's architecture (amd64, arm64).
engine_arch() {
	local a
	a=$(docker version --format '{{.Server.Arch}}' 2>/dev/null) || die "Docker engine unreachable"
	echo "$a"
}

# The runner's file name, from the Dockerfile's `COPY runner.<ext> ...` line.
deno_runner_name() {
	local n
	n=$(sed -n 's/^COPY[[:space:]]\{1,\}\(runner\.[a-z]*\)[[:space:]].*/\1/p' "$here/deno/Dockerfile" | head -n 1)
	[[ -n $n ]] || die "images/deno/Dockerfile has no 'COPY runner.<ext> ...' line"
	echo "$n"
}

deno_manifest() {
	printf 'image deno\nrecipe %s\nversion %s\nbase %s\narch %s\n' "$RECIPE" "$version" "$1" "$2"
	echo "Dockerfile $(sha256_of_file "$here/deno/Dockerfile")"
	echo "deno.pin $(sha256_of_file "$pin_file")"
	echo "$3 $(sha256_of_file "$here/deno/$3")"
}

# Download the pinned wheel into images/.cache/deno/ unless it is there already.
fetch_deno_wheel() {
	local dest=$1 wheel=$2 sha=$3 ver=$4
	local dir tmp platform
	dir=$(dirname "$dest")
	mkdir -p "$dir"
	tmp=$(mktemp -d "$dir/download.XXXXXX")
	tmp_paths+=("$tmp")
	note "downloading $wheel from PyPI"
	if python3 -m pip --version >/dev/null 2>&1; then
		# deno-<ver>-py3-none-<platform>.whl
		platform=${wheel%.whl}
		platform=${platform##*-}
		printf 'deno==%s --hash=sha256:%s\n' "$ver" "$sha" >"$tmp/requirements.txt"
		python3 -m pip download --quiet --no-deps --only-binary=:all: --platform "$platform" \
			--require-hashes -r "$tmp/requirements.txt" -d "$tmp" >&2 ||
			die "pip download of deno==$ver failed"
	elif command -v curl >/dev/null; then
		local url
		url=$(curl -fsSL https://pypi.org/simple/deno/ |
			grep -o "href=\"[^\"]*/$wheel#sha256=$sha\"" | head -n 1 | sed 's/^href="//; s/#.*//') || true
		[[ -n $url ]] || die "$wheel (sha256 $sha) not listed on https://pypi.org/simple/deno/"
		curl -fsSL -o "$tmp/$wheel" "$url" || die "download of $url failed"
	else
		die "need python3 with pip, or curl, to download $wheel"
	fi
	[[ -f $tmp/$wheel ]] || { ls "$tmp" >&2; die "download did not produce $wheel"; }
	mv "$tmp/$wheel" "$dest"
}

# Check the wheel against the pin (every time it is used) and extract the binary.
prepare_deno_binary() {
	local out=$1 arch ver wheel sha whl actual
	arch=$(engine_arch)
	ver=$(pin DENO_VERSION)
	wheel=$(sed -n "s/^DENO_WHEEL_$arch=//p" "$pin_file")
	sha=$(sed -n "s/^DENO_SHA256_$arch=//p" "$pin_file")
	[[ -n $wheel && -n $sha ]] || die "$pin_file pins no wheel for engine architecture '$arch'"
	whl=$cache/deno/$wheel
	[[ -f $whl ]] || fetch_deno_wheel "$whl" "$wheel" "$sha" "$ver"
	actual=$(sha256_of_file "$whl")
	if [[ $actual != "$sha" ]]; then
		cat >&2 <<-EOF
		build.sh: error: SHA-256 MISMATCH for the Deno wheel
		  file:     $whl
		  expected: $sha  (images/deno/deno.pin)
		  actual:   $actual
		Not using it. If the pin is right, delete the file to download it again.
		EOF
		exit 1
	fi
	local member=deno-$ver.data/scripts/deno
	if command -v python3 >/dev/null; then
		python3 - "$whl" "$member" "$out" <<-'EOF' || die "cannot extract $member from $whl"
		import shutil, sys, zipfile
		whl, member, out = sys.argv[1:]
		with zipfile.ZipFile(whl) as z, z.open(member) as src, open(out, "wb") as dst:
		    shutil.copyfileobj(src, dst, 1 << 20)
		EOF
	elif command -v unzip >/dev/null; then
		unzip -p "$whl" "$member" >"$out" || die "cannot extract $member from $whl"
	else
		die "need python3 or unzip to extract $member"
	fi
	chmod 0755 "$out"
}

ensure_deno() {
	ensure_rootfs
	local tag=code-executor/deno:$version base=code-executor/rootfs:$version
	local start hash log old base_id runner arch bin deno_version
	start=$(now)
	runner=$(deno_runner_name)
	if [[ ! -f $here/deno/$runner ]]; then
		local other f
		other=""
		for f in "$here"/deno/runner.*; do [[ -e $f ]] && other+="${f##*/} "; done
		die "images/deno/$runner (named in images/deno/Dockerfile) is missing${other:+; found: $other(update the COPY and ENTRYPOINT lines)}"
	fi
	arch=$(engine_arch)
	base_id=$(image_id "$base")
	hash=$(deno_manifest "$base_id" "$arch" "$runner" | sha256_of_stdin)
	if [[ ${CE_FORCE:-0} != 1 && $(image_source_hash "$tag") == "$hash" ]]; then
		report deno "$tag" "up to date" "($(elapsed "$start"))"
		return 0
	fi
	log=$logs/deno.log
	: >"$log"
	deno_version=$(pin DENO_VERSION)
	bin=$(mktemp "$cache/deno-bin.XXXXXX")
	tmp_paths+=("$bin")
	prepare_deno_binary "$bin"
	old=$(image_id "$tag")
	build_from_files "$tag" "$log" \
		--build-arg "BASE_IMAGE=$base" --label "org.opencontainers.image.version=$version" \
		--label "code-executor.source-sha256=$hash" --label "code-executor.deno-version=$deno_version" -- \
		"Dockerfile=$here/deno/Dockerfile" "$runner=$here/deno/$runner" "deno=$bin" ||
		fail_with_log "deno image build" "$log"
	drop_old "$old" "$(image_id "$tag")"
	smoke deno "$tag" "$log" --entrypoint /usr/local/bin/deno "$tag" eval \
		"if (Deno.uid() !== 1001) throw new Error('uid ' + Deno.uid()); console.log(Deno.version.deno)"
	report deno "$tag" built "($(elapsed "$start"))"
}

# --------------------------------------------------------------------------- server

server_manifest() {
	printf 'image server\nrecipe %s\nversion %s\nbase %s\nstrip %s\n' "$RECIPE" "$version" "$1" "$3"
	echo "Dockerfile $(sha256_of_file "$here/server/Dockerfile")"
	echo "code-executor-mcp $(sha256_of_file "$2")"
}

# The release binary to package: CE_SERVER_BINARY, else target/release/ after cargo has
# brought it up to date (cargo decides what is stale; nothing to do takes about a second).
server_binary() {
	local log=$1 bin
	if [[ -n ${CE_SERVER_BINARY:-} ]]; then
		[[ -f $CE_SERVER_BINARY && -x $CE_SERVER_BINARY ]] ||
			die "CE_SERVER_BINARY=$CE_SERVER_BINARY is not an executable file"
		echo "$CE_SERVER_BINARY"
		return 0
	fi
	local cargo=${CARGO:-cargo}
	command -v "${cargo%% *}" >/dev/null ||
		die "the server image needs the release binary, and '$cargo' was not found: install Rust (https://rustup.rs) or set CE_SERVER_BINARY=/path/to/code-executor-mcp"
	note "cargo build --release --bin code-executor-mcp (a few minutes when sources changed; log: $log)"
	# $cargo may be a command with arguments (CARGO="cargo +stable").
	# shellcheck disable=SC2086
	(cd "$repo" && $cargo build --release --bin code-executor-mcp) >>"$log" 2>&1 ||
		fail_with_log "cargo build --release" "$log"
	bin=$repo/target/release/code-executor-mcp
	[[ -x $bin ]] || die "cargo finished but $bin is missing (CARGO_TARGET_DIR set elsewhere? then use CE_SERVER_BINARY)"
	echo "$bin"
}

ensure_server() {
	ensure_rootfs
	local tag=code-executor/server:$version base=code-executor/rootfs:$version
	local start hash log old base_id src bin strip got
	start=$(now)
	log=$logs/server.log
	: >"$log"
	src=$(server_binary "$log")
	strip=none
	if command -v objcopy >/dev/null; then strip=objcopy-strip-debug; fi
	base_id=$(image_id "$base")
	hash=$(server_manifest "$base_id" "$src" "$strip" | sha256_of_stdin)
	if [[ ${CE_FORCE:-0} != 1 && $(image_source_hash "$tag") == "$hash" ]]; then
		report server "$tag" "up to date" "($(elapsed "$start"))"
		return 0
	fi
	# Debug info (line tables, ~100 MB) out, symbols in: panics still name functions.
	bin=$(mktemp "$cache/server-bin.XXXXXX")
	tmp_paths+=("$bin")
	if [[ $strip == none ]]; then
		note "objcopy (binutils) not found: packaging the binary with its debug info"
		cp "$src" "$bin"
	else
		objcopy --strip-debug "$src" "$bin" || die "objcopy --strip-debug $src failed"
	fi
	chmod 0755 "$bin"
	old=$(image_id "$tag")
	build_from_files "$tag" "$log" \
		--build-arg "BASE_IMAGE=$base" --label "org.opencontainers.image.version=$version" \
		--label "code-executor.source-sha256=$hash" -- \
		"Dockerfile=$here/server/Dockerfile" "code-executor-mcp=$bin" ||
		fail_with_log "server image build" "$log"
	drop_old "$old" "$(image_id "$tag")"
	# As compose runs it (its own user, read-only, no capabilities, no network): the
	# user and the log directory are right, and the binary starts (its shared libraries
	# and glibc version resolve on bookworm) and is the version being tagged.
	if ! got=$(docker run --rm --label code-executor.managed=true --label code-executor.smoke-test=true --log-driver none \
		--read-only --cap-drop ALL --security-opt no-new-privileges --network none \
		--tmpfs /tmp:size=16m,nosuid,nodev --pids-limit 64 --memory 256m \
		--entrypoint /bin/sh "$tag" -c \
		'test "$(id -u):$(id -g)" = 10001:10001 || { echo "runs as $(id -u):$(id -g), not 10001:10001"; exit 1; }
		 test "$(stat -c %u:%a /var/log/code-executor)" = 10001:750 || { echo "/var/log/code-executor: $(stat -c %u:%a /var/log/code-executor)"; exit 1; }
		 exec code-executor-mcp --version' 2>&1 </dev/null) ||
		[[ $got != "code-executor-mcp $version" ]]; then
		echo "$got" >>"$log"
		docker image rm "$tag" >/dev/null 2>&1 || true
		fail_with_log "smoke test of server ($tag, removed again; expected 'code-executor-mcp $version'; a glibc error means the binary was built against a newer glibc than bookworm's 2.36)" "$log"
	fi
	report server "$tag" built "($(elapsed "$start"))"
}

# --------------------------------------------------------------------------- clean

clean() {
	local kind refs ref n failed=0
	# Children before their base. Tagged images by name, untagged ones by id; the
	# builder's intermediate layers go with them.
	for kind in server deno python rootfs; do
		refs=$(docker image ls --filter "label=code-executor.image=$kind" \
			--format '{{if eq .Tag "<none>"}}{{.ID}}{{else}}{{.Repository}}:{{.Tag}}{{end}}')
		n=0
		for ref in $refs; do
			if docker image rm "$ref" >/dev/null; then n=$((n + 1)); else failed=1; fi
		done
		[[ $n -eq 0 ]] || report "$kind" "code-executor/$kind:*" removed "($n image(s))"
	done
	rm -rf "$cache"/ctx.* "$cache"/deno-bin.* "$cache"/server-bin.* "$logs"
	[[ $failed -eq 0 ]] || die "some images are still in use (see: docker ps -a --filter label=code-executor.managed=true)"
}

# --------------------------------------------------------------------------- main

case ${1:-} in -h | --help)
	sed -n '2,/^set -euo/p' "$0" | sed '$d; s/^# \{0,1\}//'
	exit 0 ;;
esac

command -v docker >/dev/null || die "docker CLI not found"
docker version --format '{{.Server.Version}}' >/dev/null 2>&1 || die "Docker engine unreachable (is dockerd running? DOCKER_HOST?)"
version=$(crate_version)
mkdir -p "$logs"
# One build at a time per checkout (two would race on tags and on the cache).
exec 9>"$cache/build.lock"
if ! flock -n 9; then
	note "waiting for another images/build.sh in this checkout"
	flock 9
fi

[[ $# -gt 0 ]] || set -- all
for target in "$@"; do
	case $target in
	rootfs) ensure_rootfs ;;
	python) ensure_python ;;
	deno) ensure_deno ;;
	server) ensure_server ;;
	all) ensure_rootfs; ensure_python; ensure_deno; ensure_server ;;
	clean) clean ;;
	*) die "unknown target '$target' (rootfs, python, deno, server, all, clean)" ;;
	esac
done
