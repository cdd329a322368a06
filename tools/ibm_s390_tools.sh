#!/usr/bin/env bash
# Build IBM's C Secure Execution tools (genprotimg 2.35, pvattest + pvextract-hdr 2.32) for this host from an
# s390-tools git checkout, for the interchange tests (tests/test_ibm_interchange.py, ZUV_IBM_TOOLS=PREFIX).
# Usage: tools/ibm_s390_tools.sh S390_TOOLS_GIT_DIR [PREFIX]   (default PREFIX: ~/.cache/zuv/ibm-s390-tools)
# Needs: libglib2.0-dev libcurl4-openssl-dev libjson-c-dev libssl-dev gcc-s390x-linux-gnu (stage3a/b).
# Debian packages no binary of these tools (its s390-tools leaves genprotimg, pvattest and pvimg out), and its
# source packages cannot be fetched here, so the sources come from a checkout given on the command line.
set -euo pipefail
src=${1:?usage: $0 S390_TOOLS_GIT_DIR [PREFIX]}
prefix=${2:-$HOME/.cache/zuv/ibm-s390-tools}
if [ -x "$prefix/bin/genprotimg" ] && [ -x "$prefix/bin/pvattest" ] && [ -x "$prefix/bin/pvextract-hdr" ]; then
    echo "$prefix"; exit 0   # built before
fi
work=$(mktemp -d); trap 'rm -rf "$work"' EXIT
mkdir -p "$prefix/bin" "$prefix/share/genprotimg"
git -C "$src" archive v2.35.0 | tar -x -C "$work" --one-top-level=v2.35
git -C "$src" archive v2.32.0 | tar -x -C "$work" --one-top-level=v2.32
(
    cd "$work/v2.35"
    make -s -C libutil >/dev/null && make -s -C libpv >/dev/null
    make -s -C genprotimg/boot HOST_ARCH=s390x CROSS_COMPILE=s390x-linux-gnu- >/dev/null
    cp genprotimg/boot/stage3a.bin genprotimg/boot/stage3b_reloc.bin "$prefix/share/genprotimg/"
    make -s -C genprotimg/src PKGDATADIR="$prefix/share/genprotimg" >/dev/null
    cp genprotimg/src/genprotimg "$prefix/bin/"
)
(
    cd "$work/v2.32"
    make -s -C libutil >/dev/null && make -s -C libpv >/dev/null && make -s -C pvattest >/dev/null
    cp pvattest/src/pvattest pvattest/tools/pvextract-hdr "$prefix/bin/"
)
echo "$prefix"
