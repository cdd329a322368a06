"""The UV-call log of a machine whose CPUs call the Ultravisor (level 2 with ``ultravisor=True``).

The Ultravisor reports each completed call on its logger (``firmware.uv``: command, caller, rc, rrc) right
after it stored the results into the control block; the console's ``Machine.insn_filter`` noted which CPU
issued the UVC and where its UVCB is. Together they give an exact log: cc as the UV computes it, rc/rrc,
and the block's fields decoded with the UV's own layouts (``firmware.uv_blocks``) as the UV left them.
Calls the hypervisor makes from Python are logged too (caller and codes, no UVCB address).

Until the Ultravisor offers a trace sink (a frozen event per call), this adapter reads its log records;
``tests/test_console.py`` runs a real UVC through it so a change of the record format fails a test.
"""

from __future__ import annotations

import logging
import threading
from collections.abc import Callable
from typing import TYPE_CHECKING, Final

from emulator.console.providers import UvCall

if TYPE_CHECKING:
    from emulator.hw.cpu import Cpu

__all__ = ["MachineUvLog"]

_DONE: Final = "UVC %s by %s: rc %#06x rrc %#06x"
_EARLY: Final = "UVC %#06x: rc %#06x"
_INJECTED: Final = "UVC %#06x: injected cc %d"


class MachineUvLog(logging.Handler):
    """A ``UvCallLogProvider`` over the Ultravisor's log records and the CPUs' UVC instructions.

    Args:
        read_block: ``read_block(cpu, vaddr, length) -> bytes | None``, the UVCB as the issuing CPU sees it.
    """

    def __init__(self, read_block: Callable[[Cpu, int, int], bytes | None]) -> None:
        super().__init__(logging.DEBUG)
        self._read_block = read_block
        self._calls: list[UvCall] = []
        self._subs: list[Callable[[UvCall], None]] = []
        self._pending = threading.local()
        self._logger = logging.getLogger("firmware.uv")
        self._saved_level = self._logger.level
        self._logger.addHandler(self)
        if self._logger.getEffectiveLevel() > logging.DEBUG:
            self._logger.setLevel(logging.DEBUG)

    def close(self) -> None:
        """Detach from the Ultravisor's logger."""
        self._logger.removeHandler(self)
        self._logger.setLevel(self._saved_level)
        super().close()

    # -- UvCallLogProvider ------------------------------------------------------------------------------

    def calls(self) -> list[UvCall]:
        """Every call so far, oldest first."""
        return list(self._calls)

    def subscribe(self, callback: Callable[[UvCall], None]) -> Callable[[], None]:
        """Call ``callback`` after each call completes."""
        self._subs.append(callback)
        return lambda: self._subs.remove(callback)

    # -- feeding --------------------------------------------------------------------------------------

    def before_uvc(self, cpu: Cpu, uvcb: int) -> None:
        """A CPU is about to execute UVC on the block at virtual ``uvcb`` (from ``Machine.insn_filter``)."""
        self._pending.value = (cpu, uvcb)

    def emit(self, record: logging.LogRecord) -> None:
        """One Ultravisor log record: a completed call becomes a ``UvCall``."""
        from firmware.uv_codes import BY_NAME

        args = record.args if isinstance(record.args, tuple) else ()
        if record.msg == _DONE and len(args) == 4:
            c = BY_NAME.get(str(args[0]))
            if c is None:
                return
            cmd, caller, rc, rrc = c.code, str(args[1]), int(args[2]), int(args[3])
            cc = 0 if rc == 0x0001 else 1
        elif record.msg == _EARLY and len(args) == 2:
            cmd, caller, rc, rrc = int(args[0]), "", int(args[1]), 0
            cc = 0 if rc == 0x0001 else 1
        elif record.msg == _INJECTED and len(args) == 2:
            cmd, caller, rc, rrc, cc = int(args[0]), "", 0, 0, int(args[1])
        else:
            return
        pending = getattr(self._pending, "value", None)
        self._pending.value = None
        cpu_addr = None
        fields: tuple[tuple[str, str], ...] = ()
        if pending is not None:
            cpu, uvcb = pending
            cpu_addr = cpu.address
            caller = caller or "host"
            fields = (("uvcb", f"{uvcb:#x} (CPU {cpu.address})"),) + self._fields(cpu, uvcb, cmd)
        call = UvCall(len(self._calls) + 1, caller or "host", cmd, cc, rc, rrc, fields, cpu_addr)
        self._calls.append(call)
        for cb in list(self._subs):
            cb(call)

    def _fields(self, cpu: Cpu, uvcb: int, cmd: int) -> tuple[tuple[str, str], ...]:
        import ctypes

        from firmware import uv_blocks as B
        from firmware.uv_codes import BY_CODE

        c = BY_CODE.get(cmd)
        if c is None or not c.struct:
            return ()
        layout = B.LAYOUTS[c.struct]
        raw = self._read_block(cpu, uvcb, ctypes.sizeof(layout))
        if raw is None:
            return (("fields", "(block not readable after the call)"),)
        blk = B.parse(layout, raw)
        out = []
        for name, _ in layout._fields_:
            if name == "header" or name.startswith(("res", "reserved")):
                continue
            value = getattr(blk, name)
            if isinstance(value, int):
                text = f"{value:#x}"
            elif isinstance(value, ctypes.Array):
                items = list(value)
                text = " ".join(f"{v:x}" for v in items[:8]) + (" ..." if len(items) > 8 else "")
            else:
                text = repr(value)
            out.append((name, text))
        return tuple(out)
