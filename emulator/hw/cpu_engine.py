"""A CPU's unicorn engine: made over the machine's storage, its fill and interrupt hooks, its registers."""

from __future__ import annotations

import ctypes
import struct
from typing import TYPE_CHECKING, Any

from unicorn import Uc
from unicorn.unicorn_const import (
    UC_ARCH_S390X,
    UC_HOOK_INTR,
    UC_HOOK_TLB_FILL,
    UC_MODE_BIG_ENDIAN,
    UC_PROT_ALL,
    UC_TLB_VIRTUAL,
)

from emulator.errors import HwError
from emulator.hw.engine import switch_for
from emulator.hw.live_env import LIVE, cpu_state, env_view
from emulator.hw.memory import PhysicalMemory
from emulator.hw.tlb import _NS_ENTRY, _NS_EXIT
from emulator.hw.unicorn_abi import _LAYOUT, _PC_C, _TLB_FILL_CB, _tlb_flush_page, _uc_direct, _uc_reg_read

__all__ = ["EngineBinding"]


class EngineBinding:
    """The unicorn engine of one CPU and the hooks it calls back (a base class of ``cpu.Cpu``)."""

    if TYPE_CHECKING:  # provided by Cpu and its other bases
        _hooked: bool
        _attn: bool
        _intr_info: tuple[int, int, int] | None

        def _fill_hook(self, *args: Any) -> Any:
            """The TLB fill hook (``tlb.TlbFill``)."""

        def _hidden(self, offset: int, length: int) -> bytes:
            """Bytes of the engine's hidden CPU state (``Cpu``'s registers)."""

    def _init_engine(self, memory: PhysicalMemory) -> None:
        """Make the engine over ``memory``, hook it, and find its registers in place (``live_env``)."""
        self._buf = memory.buffer()
        self._mm = memory.mapping()
        uc = Uc(UC_ARCH_S390X, UC_MODE_BIG_ENDIAN)
        uc.ctl_set_tlb_mode(UC_TLB_VIRTUAL)
        uc.mem_map_ptr(0, memory.size, UC_PROT_ALL, memory.address)
        uc.ctl_exits_enabled(True)
        # the TLB fill hook is registered with the engine directly: the binding's wrappers (a decorator
        # layer, a struct copy of the entry) cost ~0.7 us of a fill; exceptions are still handed to
        # ``emu_start`` the binding's way (``_fill_hook``)
        self._fill_cb = _TLB_FILL_CB(self._fill_hook)
        uc._zuv_fill_cb = self._fill_cb  # type: ignore[attr-defined]  # lives as long as the engine
        hh = ctypes.c_size_t()
        if _uc_direct.uc_hook_add(
            uc._uch,  # noqa: SLF001 - the engine handle
            ctypes.byref(hh),
            ctypes.c_int(UC_HOOK_TLB_FILL),
            self._fill_cb,
            ctypes.c_void_p(0),
            ctypes.c_uint64(1),
            ctypes.c_uint64(0),
        ):
            raise HwError("unicorn refused the TLB fill hook")
        uc.hook_add(UC_HOOK_INTR, self._intr)
        self.uc = uc
        #: the engine's TB-invalidation slot, switched so that exits survive runs (None: unicorn's own way)
        self._switch = switch_for(uc)
        self._ns_entry = _NS_ENTRY[self._switch is not None]
        self._ns_exit = _NS_EXIT[self._switch is not None]
        self._h = uc._uch  # noqa: SLF001 - the engine handle, for direct register access
        #: unicorn's instruction budget of the run in progress (``emu_count``): a stop from another thread
        #: in a counted run cuts it to 0, so the count hook stops at the next instruction's start
        self._emu_count = ctypes.c_size_t.from_address(self._h.value + _LAYOUT.counter + 8)
        self._emu_counter = ctypes.c_size_t.from_address(self._h.value + _LAYOUT.counter)
        #: the run in unicorn counts instructions (its stops from other threads go through the count)
        self._run_counted = False
        #: code translated from now on has unicorn's exit checks only at block starts (free runs)
        self._free_checks = False
        self._rv = ctypes.c_uint64()
        self._rp = ctypes.byref(self._rv)
        _uc_reg_read(self._h, _PC_C, self._rp)  # (the engine makes its CPU state at the first access)
        #: the engine's registers in place (``live_env``): general registers from index 0, the PSW mask at
        #: ``_qm`` and its address after it, the control registers from ``_qc``; None: engine calls
        self._q: memoryview | None = None
        self._qb: memoryview | None = None  # the same bytes as bytes (the vector and access registers)
        self._qm = self._qc = 0
        self._cc_op: ctypes.c_uint32 | None = None
        if LIVE is not None:
            q = self._q = env_view(uc, LIVE)
            self._qb = q.cast("B")
            self._qm = LIVE.q_mask
            self._qc = LIVE.q_mask + 12
            here = ctypes.addressof(ctypes.c_char.from_buffer(q))
            self._cc_op = ctypes.c_uint32.from_address(here + LIVE.cc_op)
        #: the engine's CPUState, for one page's TLB flush (``TlbFill._flush_page``); None: whole flushes
        self._cpu_state = cpu_state(uc, LIVE) if LIVE is not None and _tlb_flush_page is not None else None
        #: index in ``_q`` of unicorn's pending EXECUTE target (``ex_value``), -1: through the context blob
        self._qx = -1
        rel = _LAYOUT.ex_value - _LAYOUT.regs
        if LIVE is not None and _LAYOUT.ex_value >= 0 and rel >= 0 and rel % 8 == 0 and rel + 8 <= LIVE.size:
            self._qx = rel // 8

    # -- program interrupts from unicorn ------------------------------------------------------------------

    def _intr(self, uc: Uc, intno: int, _ud: object) -> None:
        self._hooked = self._attn = True
        if intno == 3:
            code, ilen = struct.unpack("<II", self._hidden(_LAYOUT.int_pgm_code, 8))
        elif intno == 2:
            code, ilen = struct.unpack("<II", self._hidden(_LAYOUT.int_svc_code, 8))
        else:
            code, ilen = 0, 0
        self._intr_info = (intno, code, ilen)
        uc.emu_stop()
