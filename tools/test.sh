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
# the Linux boot (tests/test_linux_boot.py) takes many minutes: only with ZUV_LINUX=1 set by the caller, then
# Debian's s390x kernel and busybox are fetched first (once, into ~/.cache/zuv/linux; needs root for dpkg)
if [ -n "${ZUV_LINUX:-}" ] && ! .venv/bin/python tools/linux_guest.py --setup >&2; then
    echo "test: no Linux guest, tests/test_linux_boot.py is skipped" >&2
    unset ZUV_LINUX
fi
exec .venv/bin/python -m pytest -q "$@"
