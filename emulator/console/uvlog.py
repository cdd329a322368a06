"""The UV-call log of a machine whose CPUs call the Ultravisor (level 2 with ``ultravisor=True``).

The Ultravisor tells its event sinks about every completed call (``firmware.uv.UvEvent``: command, caller,
cc, rc/rrc and the block as it stored it); the console's ``Machine.insn_filter`` notes which CPU issued the
UVC and where its UVCB is. Together they give an exact log: cc as the UV computed it, rc/rrc, and the
block's fields decoded with the UV's own layouts (``firmware.uv_blocks``) as the UV left them. Calls the
hypervisor makes from Python are logged too (caller host, no UVCB address).
"""

from __future__ import annotations

from typing import Any

from emulator.console.hostviews import UvEventLog

__all__ = ["MachineUvLog"]


class MachineUvLog(UvEventLog):
    """A ``UvCallLogProvider`` over the Ultravisor's event sink and the CPUs' UVC instructions.

    Args:
        uv: the machine's Ultravisor.
    """

    def __init__(self, uv: Any) -> None:
        super().__init__(uv)
