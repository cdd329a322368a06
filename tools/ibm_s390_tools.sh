#!/usr/bin/env bash
# Build IBM's Secure Execution tools for this host from an s390-tools git checkout, for the interchange tests
# (tests/test_ibm_interchange.py with ZUV_IBM_TOOLS=PREFIX):
#   C:    genprotimg 2.35 (+ its s390x stage3a/b), pvattest and pvextract-hdr 2.32      -> PREFIX/bin/
#   Rust: pvattest and pvsecret 2.43 (--rust), from Debian sid's packaged Rust crates  -> PREFIX/bin/*-2.43
#         pvimg 2.43 (--rust --deku DEKU_GIT_DIR --darling DARLING_GIT_DIR)              -> PREFIX/bin/pvimg-2.43
#         (+ its s390x stage3a/b in PREFIX/share/pvimg)
# Usage: tools/ibm_s390_tools.sh [--rust [--deku DIR --darling DIR]] S390_TOOLS_GIT_DIR [PREFIX]
#        (PREFIX: ~/.cache/zuv/ibm-s390-tools; the git directories may be bare)
# Needs: libglib2.0-dev libcurl4-openssl-dev libjson-c-dev libssl-dev gcc-s390x-linux-gnu; --rust: cargo;
#        pvimg: libc6-dev-s390x-cross linux-libc-dev-s390x-cross (its boot loaders include <asm/types.h>).
# Debian packages none of these binaries (its s390-tools leaves genprotimg, pvattest, pvsecret and pvimg out)
# and its source packages cannot be fetched here, so the sources come from a checkout given on the command
# line; crates.io is not reachable, so the Rust build takes the crates Debian packages (librust-*-dev).
# pvimg needs deku 0.18 (with deku_derive, darling 0.20 and no_std_io2 0.8), which Debian does not package
# (sid has darling 0.24 and 0.14 only): deku 0.18.1 and darling 0.20.10 come from git checkouts given on the
# command line (tags deku-v0.18.1, v0.20.10), and no_std_io2, which with its std feature is std::io under
# another name (as deku's documentation says), is a two-line stand-in written here.
set -euo pipefail
rust=0 deku='' darling=''
if [ "${1:-}" = --rust ]; then rust=1; shift; fi
while [ "${1:-}" = --deku ] || [ "${1:-}" = --darling ]; do
    if [ "$1" = --deku ]; then deku=$2; else darling=$2; fi
    shift 2
done
if { [ -n "$deku" ] || [ -n "$darling" ]; } && ! { [ -n "$deku" ] && [ -n "$darling" ] && [ "$rust" = 1 ]; }; then
    echo "$0: --deku and --darling go together, after --rust" >&2; exit 2
fi
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
have_rust() { [ -x "$prefix/bin/pvattest-2.43" ] && [ -x "$prefix/bin/pvsecret-2.43" ] &&
              { [ -z "$deku" ] || [ -x "$prefix/bin/pvimg-2.43" ]; }; }
if [ "$rust" = 1 ] && ! have_rust; then
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
    # what deku 0.18 and darling 0.20 need besides each other
    [ -z "$deku" ] || crates="$crates bitvec proc-macro-crate rustversion ident-case fnv strsim syn+full
                               syn+extra-traits quote proc-macro2"
    pkgs=$(for c in $crates; do echo "librust-$c-dev"; done)
    # the crates' closure (an empty dpkg status: what a fresh system would need), the librust ones only
    need=$(apt-get "${opts[@]}" install -s --no-install-recommends $pkgs | awk '/^Inst librust/ {print $2}')
    (cd "$apt/debs" && apt-get "${opts[@]}" download $need >/dev/null)
    for f in "$apt"/debs/*.deb; do dpkg-deb -x "$f" "$apt/root"; done
    git -C "$src" archive v2.43.0 rust | tar -x -C "$work"
    members='"pv", "pv_core", "pvattest", "pvsecret", "utils"' tools="pvattest pvsecret"
    if [ -n "$deku" ]; then
        members="$members, \"pvimg\"" tools="$tools pvimg"
        mkdir -p "$work/ext/no_std_io2/src" "$prefix/share/pvimg"
        git -C "$deku" archive deku-v0.18.1 | tar -x -C "$work/ext" --one-top-level=deku
        git -C "$darling" archive v0.20.10 | tar -x -C "$work/ext" --one-top-level=darling
        printf '[package]\nname = "no_std_io2"\nversion = "0.8.1"\nedition = "2021"\n[features]\n%s\n' \
            'default = ["std"]
std = []
alloc = []' > "$work/ext/no_std_io2/Cargo.toml"
        printf '//! std::io under the name deku imports it by\npub mod io {\n    pub use std::io::*;\n}\n' \
            > "$work/ext/no_std_io2/src/lib.rs"
        # pvimg's own boot loaders (pvimg embeds them from PVIMG_PKGDATADIR), built as genprotimg's above
        git -C "$src" archive v2.43.0 | tar -x -C "$work" --one-top-level=v2.43
        make -s -C "$work/v2.43/libutil" >/dev/null
        make -s -C "$work/v2.43/rust/pvimg/boot" HOST_ARCH=s390x CROSS_COMPILE=s390x-linux-gnu- >/dev/null
        cp "$work"/v2.43/rust/pvimg/boot/{stage3a.bin,stage3b_reloc.bin} "$prefix/share/pvimg/"
    fi
    (
        cd "$work/rust"
        rm -f Cargo.lock
        sed -i "s/^members = \[.*/members = [$members]/;/^\t\"/d;/^]$/d" Cargo.toml
        for t in pv pv_core utils $tools; do   # dev-dependencies are not packaged; not built here
            python3 -c "import re,sys; p=sys.argv[1]; s=open(p).read(); open(p,'w').write(re.sub(r'\n\[dev-dependencies\]\n(?:(?!\n\[).)*', '\n', s, flags=re.S))" "$t/Cargo.toml"
        done
        if [ -n "$deku" ]; then
            printf '\n[patch.crates-io]\n' >> Cargo.toml
            for c in deku=deku deku_derive=deku/deku-derive darling=darling darling_core=darling/core \
                     darling_macro=darling/macro no_std_io2=no_std_io2; do
                printf '%s = { path = "%s" }\n' "${c%%=*}" "$work/ext/${c#*=}" >> Cargo.toml
            done
        fi
        mkdir -p .cargo
        printf '[source.crates-io]\nreplace-with = "debian"\n[source.debian]\ndirectory = "%s"\n[net]\noffline = true\n' \
            "$apt/root/usr/share/cargo/registry" > .cargo/config.toml
        PVIMG_PKGDATADIR="$prefix/share/pvimg" S390_TOOLS_RELEASE=2.43.0 \
            cargo build -q --release $(for t in $tools; do echo "-p $t"; done)
        for t in $tools; do cp "target/release/$t" "$prefix/bin/$t-2.43"; done
    )
    rm -rf "$apt"   # the crates were only needed for the build
fi
echo "$prefix"
