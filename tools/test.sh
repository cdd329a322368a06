#!/usr/bin/env bash
# Install everything the tests need (Debian cross toolchain, qemu, tmux, a venv) and run the test suite.
set -euo pipefail
cd "$(dirname "$0")/.."
bash tools/setup.sh
# the kvm-unit-tests suite (tests/test_conformance.py) runs too: a few minutes
export ZUV_CONFORMANCE=1
exec .venv/bin/python -m pytest -q "$@"
