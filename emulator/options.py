"""Command-line values checked in one place for every ``zuv`` command: sizes, counts, seconds and ports.

Each checker is an ``argparse`` type: a bad value is one ``error:`` line from the command's own parser
(exit 2), never a traceback from deep inside a run (an ``inf`` time limit in a timer thread, a 1 TiB
``mmap``). ``parse_size`` is also the machine API's reading of memory sizes.
"""

from __future__ import annotations

import argparse
import math
import sys
import threading
from typing import Final

from emulator.errors import MachineError

__all__ = ["parse_size", "memory_size", "count", "seconds", "port", "cpus", "boot_device", "MIB", "MAX_CPUS",
           "MAX_MEMORY_SIZE", "MAX_SECONDS"]  # fmt: skip

MIB: Final = 1 << 20
#: The largest memory a machine may have (``emulator.hw.memory.MAX_MEMORY``: 1 TiB).
MAX_MEMORY_SIZE: Final = 1 << 40
#: The longest time limit: what a thread may wait for (about 292 years on Linux), capped at a year.
MAX_SECONDS: Final = min(threading.TIMEOUT_MAX, 365 * 24 * 3600.0)
_UNITS: Final = {"K": 1 << 10, "M": 1 << 20, "G": 1 << 30, "T": 1 << 40}


def _size_bytes(text: str) -> float:
    t = text.strip().upper().removesuffix("B").removesuffix("I")
    mult = _UNITS.get(t[-1:] or "")
    num = t[:-1] if mult is not None else t
    try:
        value = float(num) if "." in num or "E" in num else int(num, 10)
    except ValueError:
        raise MachineError(f"cannot read memory size {text!r} (examples: 256M, 2G, 4096K, 512)") from None
    if not math.isfinite(value) or value <= 0:
        raise MachineError(f"memory size {text!r} must be positive")
    size = value * (mult or MIB)
    if size < MIB:
        raise MachineError(f"memory size {text!r} is below the 1 MiB storage increment (the smallest size)")
    if size > MAX_MEMORY_SIZE:
        raise MachineError(f"memory size {text!r} must be a multiple of 1 MiB up to 1T")
    return size


def parse_size(text: str) -> int:
    """Parse a memory size like ``256M``, ``2G``, ``2.2G``, ``4096K``; a bare number is MiB, as for QEMU's -m.

    The result is rounded up to the 1 MiB storage increment; a size below it or above 1 TiB is refused.

    Raises:
        MachineError: the text is no size, or the size is out of range (one line for the user).
    """
    return (int(_size_bytes(text)) + MIB - 1) & ~(MIB - 1)


def memory_size(text: str) -> int:
    """``--memory``: a size (``parse_size``); one that is not a whole number of MiB is rounded up, and the
    user is told so on stderr."""
    try:
        exact = _size_bytes(text)
    except MachineError as e:
        raise argparse.ArgumentTypeError(str(e)) from None
    size = parse_size(text)
    if size != exact:
        print(f"zuv: memory size {text} rounded up to {size >> 20}M (the 1 MiB storage increment)",
              file=sys.stderr)  # fmt: skip
    return size


def count(what: str, high: int = 1 << 63) -> argparse._TypeFunc:  # type: ignore[name-defined]
    """A whole number from 1 to ``high`` (``--cpus``, ``--max-insns``); ``what`` names it in the error."""

    def check(text: str) -> int:
        try:
            t = text.strip()
            v = int(t, 16) if t.lower().startswith(("0x", "-0x")) else int(t, 10)
        except ValueError:
            raise argparse.ArgumentTypeError(f"{what} must be a whole number, not {text!r}") from None
        if v < 1:
            raise argparse.ArgumentTypeError(f"{what} must be positive, not {v}")
        if v > high:
            raise argparse.ArgumentTypeError(f"{what} must be at most {high}, not {v}")
        return v

    check.__name__ = what  # argparse names the type in some messages
    return check


#: The most CPUs a machine may have (``--cpus``).
MAX_CPUS: Final = 248
cpus = count("the number of CPUs", MAX_CPUS)


def cpu_device(text: str) -> int:
    """A CPU as QEMU's ``-device`` names it, ``s390x-cpu,core-id=N`` (also a model's ``qemu-s390x-cpu``,
    ``host-s390x-cpu``, ...): its CPU address N (``zuv boot --device``)."""
    kind, _, opts = text.partition(",")
    if kind != "s390x-cpu" and not kind.endswith("-s390x-cpu"):
        raise argparse.ArgumentTypeError(f"the device must be a CPU (s390x-cpu,core-id=N), not {kind!r}")
    props = dict(o.partition("=")[::2] for o in opts.split(",") if o)
    core = props.pop("core-id", "")
    if not core.isdigit():
        raise argparse.ArgumentTypeError(f"{kind} needs core-id=N (the CPU address), not {text!r}")
    if props:
        raise argparse.ArgumentTypeError(f"{kind}: options not offered: {', '.join(sorted(props))}")
    if int(core) >= MAX_CPUS:
        raise argparse.ArgumentTypeError(f"a CPU address must be between 0 and {MAX_CPUS - 1}, not {core}")
    return int(core)


#: the channel devices ``zuv boot --device`` takes besides CPUs (``emulator.hw.virtio_ccw.make_device``)
BOOT_CHANNEL_DEVICES: Final = ("virtio-net-ccw", "virtio-blk-ccw")


def boot_device(text: str) -> int | str:
    """``zuv boot --device``: a CPU (``s390x-cpu,core-id=N``: its address, ``cpu_device``) or a channel
    device as QEMU's ``-device`` names it (``virtio-net-ccw[,mac=M]``, ``virtio-blk-ccw,file=PATH``; the
    string, its options checked when the device is made)."""
    kind = text.partition(",")[0]
    if kind in BOOT_CHANNEL_DEVICES:
        return text
    if kind != "s390x-cpu" and not kind.endswith("-s390x-cpu"):
        raise argparse.ArgumentTypeError(
            f"the device must be a CPU (s390x-cpu,core-id=N) or one of {', '.join(BOOT_CHANNEL_DEVICES)}, "
            f"not {kind!r}"
        )
    return cpu_device(text)


def seconds(text: str) -> float:
    """A time limit: positive, finite seconds, at most ``MAX_SECONDS`` (``inf`` and ``nan`` are refused)."""
    try:
        v = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"the time limit must be seconds, not {text!r}") from None
    if not math.isfinite(v):
        raise argparse.ArgumentTypeError(f"the time limit must be a finite number of seconds, not {text}")
    if v <= 0:
        raise argparse.ArgumentTypeError(f"the time limit must be positive, not {text}")
    if v > MAX_SECONDS:
        raise argparse.ArgumentTypeError(f"the time limit must be at most {MAX_SECONDS:.0f} s, not {text}")
    return v


def port(text: str) -> int:
    """A TCP port: 0 (the system picks a free one) to 65535."""
    try:
        v = int(text.strip(), 10)
    except ValueError:
        raise argparse.ArgumentTypeError(f"the port must be a number from 0 to 65535, not {text!r}") from None
    if not 0 <= v <= 65535:
        raise argparse.ArgumentTypeError(f"the port must be from 0 (any free port) to 65535, not {v}")
    return v
