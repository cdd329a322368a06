"""What s390-tools' pvimg, pvattest and pvsecret print on stderr besides errors: their log lines, at the
level ``-v``/``-q`` (and the old ``-V``) set, plain as their logger writes them."""

from __future__ import annotations

import argparse
import sys

#: s390-tools' levels: warnings show by default, notes with -v; -q hides warnings
WARN, INFO = 2, 3
#: what host-key document verification protects, in each tool's --no-verify warning
PROTECTEE = {"pvimg": "Secure Execution image", "pvattest": "attestation request", "pvsecret": "secret"}


def level(a: argparse.Namespace) -> int:
    """2 (warnings) plus each -v/-V, less each -q (s390-tools' VerbosityOptions)."""
    count = lambda name: getattr(a, name, 0) or 0  # noqa: E731 - a missing option counts 0
    return WARN + count("verbose") + count("verbose_old") - count("quiet")


def warn(a: argparse.Namespace, text: str) -> None:
    """A line s390-tools writes with warn! (shown unless -q)."""
    if level(a) >= WARN:
        sys.stderr.write(text + "\n")


def info(a: argparse.Namespace, text: str) -> None:
    """A line s390-tools writes with info! (shown with -v)."""
    if level(a) >= INFO:
        sys.stderr.write(text + "\n")


def no_verify_warning(a: argparse.Namespace, prog: str) -> None:
    """The warning of ``--no-verify``, as the tool ``prog`` words it."""
    warn(a, f"Host-key document verification is disabled. The {PROTECTEE[prog]} may not be protected.")


def deprecated_v_warning(count: int) -> None:
    """s390-tools' word on its old ``-V``, once, whatever the level (its tools write it before logging)."""
    if count:
        sys.stderr.write("WARNING: Use of deprecated flag '-V'. Use '-v' or '--verbose' instead.\n")
