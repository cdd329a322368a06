"""The Ultravisor of one emulated machine: its identity's host keys and any attestation keys.

A machine is named as the tools name it: a bundled machine (``zuv-demo``, ``zuv-other``) or a machine
directory (``firmware.machine_identity``). ``zuv boot``'s secure host and ``zuv run --ultravisor``'s LPAR
both install the Ultravisor this way, so an SE header made for a machine's host-key document opens on
either.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable
from pathlib import Path

from emulator.hw.memory import PhysicalMemory
from firmware.machine_identity import BUNDLED, MachineIdentity, MachineIdentityError
from firmware.uv import Ultravisor
from firmware.uv_attest import AttestationKeyError, AttestationKeys

__all__ = ["machine_directory", "machine_ultravisor"]


def machine_directory(machine: str) -> Path:
    """The directory of a bundled machine name or of a machine directory path."""
    if machine in BUNDLED and not Path(machine).is_dir():
        return MachineIdentity.bundled_dir(machine)
    return Path(machine)


def machine_ultravisor(
    memory: PhysicalMemory,
    machine: str = "zuv-demo",
    *,
    rng: Callable[[int], bytes] | None = None,
    cpu_prefixes: Callable[[], Iterable[int]] | None = None,
) -> tuple[MachineIdentity, Ultravisor]:
    """The identity of ``machine`` and an Ultravisor on ``memory`` holding its host keys.

    Args:
        memory: the machine's absolute storage.
        machine: a bundled machine name or a machine directory.
        rng: the Ultravisor's random numbers (handles, UIDs; never its keys); None: the OS's.
        cpu_prefixes: the host CPUs' prefixes (the lowcore checks of Create Configuration and CPU).

    Raises:
        MachineIdentityError: no such machine, or a missing or malformed key file (one line).
    """
    directory = machine_directory(machine)
    identity = MachineIdentity.load(directory)
    try:  # zuv's signed attestation evidence: only machines with attestation keys offer it
        att_keys = AttestationKeys.load(directory) if AttestationKeys.present(directory) else None
    except AttestationKeyError as e:
        raise MachineIdentityError(str(e)) from None
    kwargs = {"rng": rng} if rng is not None else {}
    uv = Ultravisor(
        memory, host_keys=identity.host_keys, attestation_keys=att_keys, cpu_prefixes=cpu_prefixes, **kwargs
    )
    return identity, uv
