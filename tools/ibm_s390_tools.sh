#!/usr/bin/env bash
# Build IBM's Secure Execution tools for this host from an s390-tools git checkout, for the interchange tests
# (tests/test_ibm_interchange.py with ZUV_IBM_TOOLS=PREFIX):
#   C:    genprotimg 2.35 (+ its s390x stage3a/b), pvattest and pvextract-hdr 2.32      -> PREFIX/bin/
#   Rust: pvattest and pvsecret 2.43 (--rust), from Debian sid's packaged Rust crates  -> PREFIX/bin/*-2.43
# Usage: tools/ibm_s390_tools.sh [--rust] S390_TOOLS_GIT_DIR [PREFIX]   (PREFIX: ~/.cache/zuv/ibm-s390-tools)
# Needs: libglib2.0-dev libcurl4-openssl-dev libjson-c-dev libssl-dev gcc-s390x-linux-gnu; --rust: cargo.
# Debian packages none of these binaries (its s390-tools leaves genprotimg, pvattest, pvsecret and pvimg out)
# and its source packages cannot be fetched here, so the sources come from a checkout given on the command
# line; crates.io is not reachable, so the Rust build takes the crates Debian packages (librust-*-dev).
set -euo pipefail
rust=0
if [ "${1:-}" = --rust ]; then rust=1; shift; fi
src=${1:?usage: $0 [--rust] S390_TOOLS_GIT_DIR [PREFIX]}
prefix=${2:-$HOME/.cache/zuv/ibm-s390-tools}
work=$(mktemp -d); trap 'rm -rf "$work"' EXIT
mkdir -p "$prefix/bin" "$prefix/share/genprotimg"
if ! [ -x "$prefix/bin/genprotimg" ] || ! [ -x "$prefix/bin/pvattest" ] || ! [ -x "$prefix/bin/pvextract-hdr" ]; then
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
fi
if [ "$rust" = 1 ] && ! { [ -x "$prefix/bin/pvattest-2.43" ] && [ -x "$prefix/bin/pvsecret-2.43" ]; }; then
    apt="$prefix/apt"
    mkdir -p "$apt/lists/partial" "$apt/cache/archives/partial" "$apt/debs" "$apt/root"
    echo "deb http://deb.debian.org/debian sid main" > "$apt/sources.list"
    : > "$apt/status"
    opts=(-o Dir::Etc::SourceList="$apt/sources.list" -o Dir::Etc::SourceParts=/dev/null
          -o Dir::State::Lists="$apt/lists" -o Dir::Cache="$apt/cache" -o Dir::State::status="$apt/status"
          -o APT::Sandbox::User=root)
    apt-get "${opts[@]}" update -qq
    crates="openssl openssl-sys clap clap+derive clap+wrap-help clap-complete curl zerocopy zerocopy+derive
            thiserror serde-yaml enum-dispatch foreign-types-0.3 anyhow base64 chrono regex sha2-0.10 serde
            serde+derive serde-json log libc byteorder"
    pkgs=$(for c in $crates; do echo "librust-$c-dev"; done)
    # the crates' closure (an empty dpkg status: what a fresh system would need), the librust ones only
    need=$(apt-get "${opts[@]}" install -s --no-install-recommends $pkgs | awk '/^Inst librust/ {print $2}')
    (cd "$apt/debs" && apt-get "${opts[@]}" download $need >/dev/null)
    for f in "$apt"/debs/*.deb; do dpkg-deb -x "$f" "$apt/root"; done
    git -C "$src" archive v2.43.0 rust | tar -x -C "$work"
    (
        cd "$work/rust"
        rm -f Cargo.lock
        sed -i 's/^members = \[.*/members = ["pv", "pv_core", "pvattest", "pvsecret", "utils"]/;/^\t"/d;/^]$/d' Cargo.toml
        for t in pv pv_core pvattest pvsecret utils; do   # dev-dependencies are not packaged; not built here
            python3 -c "import re,sys; p=sys.argv[1]; s=open(p).read(); open(p,'w').write(re.sub(r'\n\[dev-dependencies\]\n(?:(?!\n\[).)*', '\n', s, flags=re.S))" "$t/Cargo.toml"
        done
        mkdir -p .cargo
        printf '[source.crates-io]\nreplace-with = "debian"\n[source.debian]\ndirectory = "%s"\n[net]\noffline = true\n' \
            "$apt/root/usr/share/cargo/registry" > .cargo/config.toml
        S390_TOOLS_RELEASE=2.43.0 cargo build -q --release -p pvattest -p pvsecret
        cp target/release/pvattest "$prefix/bin/pvattest-2.43"
        cp target/release/pvsecret "$prefix/bin/pvsecret-2.43"
    )
    rm -rf "$apt"   # the crates were only needed for the build
fi
echo "$prefix"
