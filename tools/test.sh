#!/usr/bin/env bash
# Install everything the tests need (Debian cross toolchain, qemu, tmux, a venv) and run the test suite.
set -euo pipefail
cd "$(dirname "$0")/.."
bash tools/setup.sh
# the kvm-unit-tests suite (tests/test_conformance.py) runs too: a few minutes
# IBM's tools, if tools/ibm_s390_tools.sh built them (ZUV_S390_TOOLS_SRC): the live interchange tests run too
ibm="$HOME/.cache/zuv/ibm-s390-tools"
if [ -z "${ZUV_IBM_TOOLS:-}" ] && [ -x "$ibm/bin/genprotimg" ]; then export ZUV_IBM_TOOLS="$ibm"; fi
export ZUV_CONFORMANCE=1
# The Linux boots (tests/test_linux_boot.py: Debian's s390x kernel to a shell, minutes of CPU;
# tests/test_linux_rootfs_boot.py: the same kernel from an ext4 root on a virtio-blk disk) run beside the
# rest of the suite, in a process of its own on the other core, when the whole suite runs (no arguments).
# Debian's kernel and busybox are fetched first, once, into ~/.cache/zuv/linux (dpkg --add-architecture
# s390x needs root); if that fails the boot is left out with a message. ZUV_LINUX=0 leaves it out;
# ZUV_LINUX=1 with arguments (tests/test_linux_boot.py) runs it in the foreground.
if [ -n "${ZUV_LINUX:-}" ] && [ "$ZUV_LINUX" != 0 ] && [ $# -gt 0 ]; then
    if ! .venv/bin/python tools/linux_guest.py --setup >&2; then
        echo "test: no Linux guest, tests/test_linux_boot.py is skipped" >&2
        unset ZUV_LINUX
    fi
    exec .venv/bin/python -m pytest -q "$@"
fi
linux_pid=""
# an interrupted suite takes the boot with it (SIGINT: the test kills its zuv run on the way out)
trap 'if [ -n "$linux_pid" ]; then kill -INT "$linux_pid" 2>/dev/null || true; fi' INT TERM
if [ $# -eq 0 ] && [ "${ZUV_LINUX:-1}" != 0 ]; then
    if .venv/bin/python tools/linux_guest.py --setup > /dev/null; then
        linux_log=$(mktemp)
        ZUV_LINUX=1 .venv/bin/python -m pytest -q -p no:cacheprovider tests/test_linux_boot.py \
            tests/test_linux_rootfs_boot.py > "$linux_log" 2>&1 &
        linux_pid=$!
    else
        echo "test: no Linux guest (tools/linux_guest.py --setup failed): the Linux boot is left out" >&2
    fi
fi
rc=0
env -u ZUV_LINUX .venv/bin/python -m pytest -q "$@" || rc=$?
if [ -n "$linux_pid" ]; then
    linux_rc=0
    wait "$linux_pid" || linux_rc=$?
    echo "--- the Linux boots, run beside the suite (exit status $linux_rc) ---"
    cat "$linux_log"
    rm -f "$linux_log"
    if [ $rc -eq 0 ]; then rc=$linux_rc; fi
fi
exit $rc
