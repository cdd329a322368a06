"""The Ultravisor as the host reaches it: the UVC instruction on a control block at a host address, the
numbers Query reports, and the Ultravisor's half of the SIE instruction for secure CPUs, each a call gate
that holds the Ultravisor in its closures only."""

from __future__ import annotations

import copy
from collections.abc import Iterable
from typing import TYPE_CHECKING

from emulator.errors import HwError
from emulator.hw import seal
from emulator.hw.attention import PendingInterruptions
from emulator.hw.cpu_handle import CpuHandle, hardware_of, revoke
from emulator.hw.host_view import HostSpan
from firmware.uv_contract import AbsoluteControlBlock, UvCaller
from firmware.uv_sie import PvSieEngine

if TYPE_CHECKING:
    from emulator.hw.sie import SieExit, SiePage
    from firmware.uv import Ultravisor

__all__ = ["UvGate", "PvSie"]

_HOST = UvCaller("host")
_HOST_BUSY = UvCaller("host", other_cpus_running=True)


class UvGate:
    """The machine's Ultravisor as a hypervisor (or any host program) holds it.

    ``call(addr)`` is the UVC instruction of a host CPU with DAT off: the control block at host absolute
    ``addr``, read and stored through the host's checks (a block in secure or donated storage: PGM 0x3D);
    the caller is always the host. ``query`` are the numbers Query reports; ``initialized()`` tells whether
    Initialize Ultravisor has run; ``sie()`` gives the Ultravisor's half of SIE for secure CPUs
    (``PvSie``). Nothing else of the Ultravisor is reachable from a gate: no record, key or storage object
    (``ARCHITECTURE.md``, the host side's reach).
    """

    __slots__ = ("call", "query", "initialized", "sie")

    def __init__(self, uv: Ultravisor) -> None:
        view = uv.mem.host_view(notify=False)  # (the gate tells the listeners of the block's PGM 0x3D)
        window = uv.mem.checked_window
        uv_call = uv.call
        last: list[AbsoluteControlBlock] = [AbsoluteControlBlock(view, -1, window)]

        def call(addr: int, other_cpus_running: bool = False) -> int:
            """UVC on the control block at host absolute ``addr``: the condition code; rc/rrc and the
            outputs are stored into the block. Raises ``ProgramException`` for an access exception on the
            block (nothing changed)."""
            cb = last[0]
            if cb.addr != addr:
                cb = last[0] = AbsoluteControlBlock(view, addr, window)
            return uv_call(_HOST_BUSY if other_cpus_running else _HOST, cb)

        def initialized() -> bool:
            """True once Initialize Ultravisor completed."""
            return bool(uv.initialized)

        sida_view = uv.mem.host_view()

        def sida_of(page: SiePage) -> HostSpan:
            """The SIDA the state description designates, as host storage checked at every access (the
            engine's own: before, the host handed the engine a function for it, which the engine then
            called with its own frames, the secure guest's hardware CPU among them, above the host's code)."""
            sd = page.sie_block
            addr = sd.sida_origin
            if not addr:
                raise HwError("the state description has no SIDA")
            return HostSpan(sida_view, addr, sd.sida_size)

        def sie() -> PvSie:
            """The Ultravisor's half of SIE for this host's secure CPUs (a new engine, registered with the
            Ultravisor so that the machine's debug capability can find its hardware CPUs)."""
            engine = PvSieEngine(uv, sida_of)
            engine.insn_filter = uv.debug_insn_filter
            uv.sie_engines.add(engine)
            return PvSie(engine)

        # gates (``seal``): an exception leaves them without the Ultravisor's frames; a refused block's
        # listeners and the host's UV event callbacks are called when the call has returned
        told = seal.notify_refusal(uv.mem.secure_access_listeners)
        self.call = seal.gate(call, refused=told, settles=True)
        # the host's own copy of the Query numbers (the Ultravisor decides by its own: a frozen record can
        # still be changed with ``object.__setattr__``, and a host that did changed what the Ultravisor
        # accepted)
        self.query = copy.copy(uv.query)
        self.initialized, self.sie = seal.gate(initialized), seal.gate(sie)


class PvSie:
    """SIE for secure CPUs as the host issues it (format-4 state descriptions): the host names a secure CPU
    by the CPU handle in its state description and hands over or gets back the hardware CPU that runs it;
    the engine (``firmware.uv_sie.PvSieEngine``) is held by the closures only."""

    __slots__ = ("adopt", "release", "run", "insn_count", "halt", "purge_tlb", "pending_completion",
                 "_entries")

    def __init__(self, engine: PvSieEngine) -> None:
        def adopt(cpu_handle: int, cpu: CpuHandle) -> None:
            """The hardware CPU ``cpu`` runs the secure CPU ``cpu_handle`` from now on (the Ultravisor's): the
            handle opens nothing any more (``revoke``), the CPU's pending-interruption dict is a new one (the
            host may have kept the old), and a hardware CPU the secure CPU had goes back scrubbed."""
            hw = hardware_of(cpu)
            revoke(cpu)
            hw.ext_pending = PendingInterruptions(hw)
            engine.release(cpu_handle)  # (a CPU adopted before for the same secure CPU: scrubbed, dropped)
            engine.adopt(cpu_handle, hw)

        def release(cpu_handle: int) -> CpuHandle | None:
            """The hardware CPU of a destroyed secure CPU back, scrubbed (``PvSieEngine.release``), as the
            host holds a CPU (a handle)."""
            cpu = engine.release(cpu_handle)
            return None if cpu is None else CpuHandle(cpu)

        engine_run = engine.run

        def run(
            page: SiePage, count: int = 0, timeout_us: int = 0, ext_request: int = 0, io_request: int = 0
        ) -> SieExit:
            """SIE on the hardware CPU of the secure CPU the state description names
            (``PvSieEngine.run``)."""
            return engine_run(page, count, timeout_us, ext_request, io_request)

        def insn_count(cpu_handle: int) -> int:
            """Instructions the secure CPU's hardware CPU executed."""
            return engine.insn_count(cpu_handle)

        def halt(cpu_handles: Iterable[int]) -> None:
            """Ask the hardware CPUs of these secure CPUs to leave SIE soon (any thread)."""
            engine.halt(cpu_handles)

        def purge_tlb(config_handle: int) -> None:
            """Purge every translation of the configuration's guest (the host changed its gmap)."""
            engine.purge_tlb(config_handle)

        def pending_completion(cpu_handle: int) -> bool:
            """True while an instruction of the secure CPU waits for the host's results (0x68)."""
            return engine.pending_completion(cpu_handle)

        # gates (``seal``): an exception leaves them without the engine's frames (its hardware CPUs, the
        # Ultravisor); the host's callbacks deferred during a run (a guest's UV calls) are made after it
        g = seal.gate
        self.adopt, self.release, self.run = g(adopt), g(release), g(run, settles=True)
        self.insn_count, self.halt, self.purge_tlb = g(insn_count), g(halt), g(purge_tlb)
        self.pending_completion, self._entries = g(pending_completion), g(lambda: engine.entries)

    @property
    def entries(self) -> int:
        """SIE entries of secure CPUs so far (a count)."""
        return self._entries()  # type: ignore[no-any-return]
