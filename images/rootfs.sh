#!/usr/bin/env bash
# Build the sandbox root filesystem: Debian bookworm (minbase) with python3 (full
# standard library), ca-certificates and tzdata, made with mmdebstrap and turned into
# a Docker image with `docker import`. No container registry is involved.
#
# Usage:
#   images/rootfs.sh [TAG [LABEL=VALUE...]]   build and import (default TAG:
#                                             code-executor/rootfs:<crate version>)
#   images/rootfs.sh --print-inputs           print what determines the image's content
#                                             (images/build.sh hashes it)
#
# Normally run through images/build.sh, which passes the tag and the labels
# (code-executor.image, org.opencontainers.image.version, code-executor.source-sha256)
# and skips the build when an image built from the same inputs already exists.
#
# Environment:
#   CE_DEBIAN_MIRROR           default http://deb.debian.org/debian
#   CE_DEBIAN_SECURITY_MIRROR  default http://deb.debian.org/debian-security
#   TMPDIR                     where the temporary tarball goes (about 100 MB)
#
# What the image holds besides the packages:
#   - user and group `sandbox`, uid/gid 1001, home /workspace, shell nologin (so that
#     getpass.getuser(), pwd.getpwuid(), `id` and HOME work for the sandbox user);
#   - empty mount points /workspace (owned by 1001) and /run/mcp, because a read-only
#     root filesystem cannot grow mount points at run time;
#   - no setuid/setgid bits anywhere (no-new-privileges makes them inert already;
#     this removes them as a second fence);
#   - no docs, man pages, translations, apt lists or caches, no /dev entries (the
#     engine provides /dev), empty /etc/resolv.conf and /etc/hostname (the engine
#     bind-mounts its own; the build host's must not leak into the image).
set -euo pipefail

SUITE=bookworm
# Packages on top of minbase. python3 pulls libpython3.11-stdlib: the full standard
# library except the parts Debian splits out (tkinter, venv/ensurepip, distutils, idle).
PACKAGES=(python3 ca-certificates tzdata)
MIRROR=${CE_DEBIAN_MIRROR:-http://deb.debian.org/debian}
SECURITY_MIRROR=${CE_DEBIAN_SECURITY_MIRROR:-http://deb.debian.org/debian-security}
SANDBOX_UID=1001
SANDBOX_GID=1001

here=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
repo=$(dirname "$here")

die() { echo "rootfs.sh: $*" >&2; exit 1; }

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

# The architecture mmdebstrap builds for is the host's (dpkg's native one).
arch() {
	if command -v dpkg >/dev/null; then dpkg --print-architecture; else
		case $(uname -m) in x86_64) echo amd64 ;; aarch64) echo arm64 ;; *) uname -m ;; esac
	fi
}

print_inputs() {
	echo "rootfs.sh sha256 $(sha256sum "$here/rootfs.sh" | cut -d' ' -f1)"
	echo "suite $SUITE"
	echo "packages ${PACKAGES[*]}"
	echo "mirror $MIRROR"
	echo "security-mirror $SECURITY_MIRROR"
	echo "arch $(arch)"
}

if [[ ${1:-} == --print-inputs ]]; then
	print_inputs
	exit 0
fi
if [[ ${1:-} == -h || ${1:-} == --help ]]; then
	sed -n '2,/^set -euo/p' "$0" | sed '$d; s/^# \{0,1\}//'
	exit 0
fi

version=$(crate_version)
tag=${1:-code-executor/rootfs:$version}
shift || true
labels=("$@")
if [[ ${#labels[@]} -eq 0 ]]; then
	labels=(code-executor.image=rootfs "org.opencontainers.image.version=$version")
fi

[[ $(id -u) -eq 0 ]] || die "must run as root (mmdebstrap root mode and docker)"
command -v docker >/dev/null || die "docker CLI not found"
if ! command -v mmdebstrap >/dev/null; then
	echo "rootfs.sh: installing mmdebstrap" >&2
	DEBIAN_FRONTEND=noninteractive apt-get install -y -q mmdebstrap >&2 ||
		{ apt-get update -q >&2 && DEBIAN_FRONTEND=noninteractive apt-get install -y -q mmdebstrap >&2; } ||
		die "could not install mmdebstrap"
fi
command -v mmtarfilter >/dev/null || die "mmtarfilter not found (it ships with mmdebstrap)"
# merged-/usr through the symlinks + usr-is-merged; without it apt satisfies
# init-system-helpers' "usrmerge | usr-is-merged" with usrmerge, which drags in perl
# (about 50 MB).
merged_usr_hooks=/usr/share/mmdebstrap/hooks/merged-usr
[[ -d $merged_usr_hooks ]] || die "$merged_usr_hooks not found (mmdebstrap too old?)"

work=$(mktemp -d "${TMPDIR:-/tmp}/code-executor-rootfs.XXXXXX")
trap 'rm -rf "$work"' EXIT

# Customize hook: runs with the finished chroot as $1, before mmdebstrap's own cleanup.
cat >"$work/customize.sh" <<EOF
#!/bin/sh
set -eu
root=\$1
# The sandbox user. Written directly (no useradd) so the result does not depend on
# the hook mode; the password is locked and the shell refuses logins.
echo 'sandbox:x:$SANDBOX_UID:$SANDBOX_GID:code-executor sandbox:/workspace:/usr/sbin/nologin' >>"\$root/etc/passwd"
echo 'sandbox:x:$SANDBOX_GID:' >>"\$root/etc/group"
# Only where the files exist already (they are root-only readable; never create them).
if [ -f "\$root/etc/shadow" ]; then echo 'sandbox:!:1::::::' >>"\$root/etc/shadow"; fi
if [ -f "\$root/etc/gshadow" ]; then echo 'sandbox:!::' >>"\$root/etc/gshadow"; fi
# Mount point for the tmpfs /workspace (/run/mcp is added after mmdebstrap's cleanup).
install -d -m 0755 -o $SANDBOX_UID -g $SANDBOX_GID "\$root/workspace"
# No setuid/setgid programs (su, mount, passwd, chfn, unix_chkpwd, ...).
find "\$root" -xdev -type f -perm /6000 -exec chmod ug-s {} +
# Leftovers that dpkg's path-exclude does not catch (files of the essential packages
# are unpacked before the dpkg configuration exists).
find "\$root/usr/share/doc" -mindepth 1 ! -type d ! -name copyright -delete
find "\$root/usr/share/doc" -mindepth 1 -type d -empty -delete
rm -rf "\$root/usr/share/man" "\$root/usr/share/info" "\$root/usr/share/lintian" \
	"\$root/usr/share/linda" "\$root/var/cache/man"
find "\$root/usr/share/locale" -mindepth 1 -maxdepth 1 ! -name locale.alias -exec rm -rf {} +
rm -f "\$root"/var/cache/debconf/*-old "\$root"/var/lib/dpkg/*-old \
	"\$root"/var/log/apt/* "\$root"/var/log/alternatives.log "\$root"/var/log/bootstrap.log
# The engine bind-mounts its own resolv.conf, hostname and hosts.
: >"\$root/etc/resolv.conf"
: >"\$root/etc/hostname"
EOF
chmod +x "$work/customize.sh"

echo "rootfs.sh: mmdebstrap $SUITE ($(arch)) +${PACKAGES[*]}" >&2
mmdebstrap \
	--variant=minbase \
	--mode=root \
	--format=tar \
	--include="$(IFS=,; echo "${PACKAGES[*]}")" \
	--aptopt='Acquire::Languages "none"' \
	--dpkgopt='path-exclude=/usr/share/man/*' \
	--dpkgopt='path-exclude=/usr/share/info/*' \
	--dpkgopt='path-exclude=/usr/share/locale/*' \
	--dpkgopt='path-include=/usr/share/locale/locale.alias' \
	--dpkgopt='path-exclude=/usr/share/doc/*' \
	--dpkgopt='path-include=/usr/share/doc/*/copyright' \
	--dpkgopt='path-exclude=/usr/share/lintian/*' \
	--hook-dir="$merged_usr_hooks" \
	--customize-hook="$work/customize.sh" \
	"$SUITE" "$work/rootfs.tar" \
	"deb $MIRROR $SUITE main" \
	"deb $MIRROR $SUITE-updates main" \
	"deb $SECURITY_MIRROR $SUITE-security main" >&2

# Device nodes would only be hidden under the engine's /dev; drop them from the layer.
mmtarfilter --path-exclude='/dev/*' <"$work/rootfs.tar" >"$work/rootfs-nodev.tar"
rm -f "$work/rootfs.tar"
# mmdebstrap's cleanup empties /run after the customize hooks, so the /run/mcp mount
# point is appended to the tarball here.
install -d -m 0755 "$work/extra/run/mcp"
tar --append -f "$work/rootfs-nodev.tar" --owner=0 --group=0 --numeric-owner \
	-C "$work/extra" ./run/mcp

changes=(
	--change 'ENV PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin'
	--change 'ENV LANG=C.UTF-8'
	--change 'CMD ["/bin/bash"]'
)
for l in "${labels[@]}"; do
	[[ $l == *=* && $l != *'"'* ]] || die "bad label: $l"
	changes+=(--change "LABEL ${l%%=*}=\"${l#*=}\"")
done

old_id=$(docker image inspect --format '{{.Id}}' "$tag" 2>/dev/null || true)
docker import "${changes[@]}" --message "code-executor rootfs ($SUITE, mmdebstrap)" \
	"$work/rootfs-nodev.tar" "$tag" >/dev/null
new_id=$(docker image inspect --format '{{.Id}}' "$tag")
# The previous image under this tag is now untagged: remove it unless something uses it.
if [[ -n $old_id && $old_id != "$new_id" ]]; then
	docker image rm "$old_id" >/dev/null 2>&1 || true
fi
echo "$new_id"
