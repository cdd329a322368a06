#!/usr/bin/env bash
# Install the Debian packages and the Python venv zuv's tests use; safe to run again (installs only what is missing).
set -euo pipefail
cd "$(dirname "$0")/.."
need=()
command -v s390x-linux-gnu-gcc >/dev/null || need+=(gcc-s390x-linux-gnu)
command -v s390x-linux-gnu-as >/dev/null || need+=(binutils-s390x-linux-gnu)
command -v qemu-system-s390x >/dev/null || need+=(qemu-system-misc)
command -v tmux >/dev/null || need+=(tmux)
command -v gdb-multiarch >/dev/null || need+=(gdb-multiarch)
# IBM's own s390-tools for the interchange tests, when a checkout is given (GitHub is not reachable from CI and
# Debian packages neither these binaries nor, here, their sources): tools/ibm_s390_tools.sh builds them once
if [ -n "${ZUV_S390_TOOLS_SRC:-}" ]; then
    for p in libglib2.0-dev libcurl4-openssl-dev libjson-c-dev libssl-dev; do
        dpkg -s "$p" >/dev/null 2>&1 || need+=("$p")
    done
fi
if ((${#need[@]})); then
    sudo_cmd=""
    if [ "$(id -u)" != 0 ]; then sudo_cmd="sudo"; fi
    echo "setup: installing Debian packages: ${need[*]}" >&2
    $sudo_cmd apt-get update -qq >&2
    DEBIAN_FRONTEND=noninteractive $sudo_cmd apt-get install -y -qq --no-install-recommends "${need[@]}" >&2
fi
if [ ! -x .venv/bin/python ]; then
    python3 -m venv .venv
fi
.venv/bin/pip install -q --disable-pip-version-check -e '.[test]' >&2
if [ -n "${ZUV_S390_TOOLS_SRC:-}" ]; then
    bash tools/ibm_s390_tools.sh --rust "$ZUV_S390_TOOLS_SRC" >&2
fi
