"""unicorn's exit checks after each storage access, switched off for free runs: a stop from another thread
then lands at a block's start, never between an instruction's access and its end.

unicorn 2.1.4 translates a call of ``helper_check_exit_request`` after every guest load and store (and after
each code hook), besides QEMU's own check at every block's start. A stop requested meanwhile
(``uc_emu_stop`` from another thread: the time-slice watchdog, an interruption's ``kick``, a ``hold`` of the
Ultravisor, Ctrl-C) is seen by the first of them to run, and an exit there restores the PSW address to the
instruction that made the access: that instruction, already performed, runs again when the CPU resumes. That
is harmless for most, but not for an instruction that reads what it writes (``lg %r1,0(%r1)`` loads through
the pointer it just loaded: a Linux boot oopsed so within a minute of kernel time) or that changes storage
and a register (an interlocked add). Measured on stock unicorn with a pointer chase stopped every 50 us: 970
stops left the chase 970 links ahead; with the checks off, exact.

unicorn emits those checks only while ``uc_struct.no_exit_request`` is clear (its ARM translator sets it
for IT blocks). It is read when code is translated, so a CPU sets it for free runs (their stops, all from
other threads or from exceptions, need only block starts) and clears it for counted runs, whose count hook
stops at an instruction's start through the check that follows the hook; translated code is dropped at
every switch between the two already (``Cpu._counting``; unicorn itself when the count hook goes). A counted
run is stopped from another thread through its count instead (``stop_counted``), which lands at the next
instruction's start.

The flag's offset is read from ``check_exit_request_s390x``'s first instructions (x86-64: load
``tcg_ctx->uc``, compare the byte) and confirmed by a run: a read hook that asks for a stop ends the run at
the block's end with the flag set and at the load without it. Anything else (another host architecture,
another build) leaves unicorn's checks on (``OFFSET`` is None) and is reported once in the log.
"""

from __future__ import annotations

import ctypes
import logging
import struct
from typing import Final

from unicorn import Uc
from unicorn import s390x_const as S
from unicorn.unicorn_const import UC_ARCH_S390X, UC_HOOK_MEM_READ, UC_MODE_BIG_ENDIAN
from unicorn.unicorn_py3.unicorn import uclib as _uclib

_log = logging.getLogger(__name__)

_PSW_64: Final = 0x0000000180000000


def _offset_from_code() -> int:
    """The byte offset of ``no_exit_request`` in ``uc_struct``, from the translator function's code."""
    fn = getattr(ctypes.CDLL(_uclib._name), "check_exit_request_s390x", None)  # noqa: SLF001 - the library
    if fn is None:
        raise LookupError("check_exit_request_s390x is not exported")
    code = ctypes.string_at(ctypes.cast(fn, ctypes.c_void_p).value, 14)
    # mov rsi, [rdi + disp32] (tcg_ctx->uc) ; cmp byte [rsi + disp32], 0 (uc->no_exit_request)
    if code[:3] != b"\x48\x8b\xb7" or code[7:9] != b"\x80\xbe" or code[13] != 0:
        raise LookupError(f"check_exit_request_s390x starts with {code.hex()}, not the expected test")
    return struct.unpack_from("<I", code, 9)[0]


def _stops_where(offset: int | None) -> tuple[int, int]:
    """(PSW address, %r3) after a run whose load's read hook asks for a stop, the flag set at ``offset``."""
    uc = Uc(UC_ARCH_S390X, UC_MODE_BIG_ENDIAN)
    uc.mem_map(0, 0x20000)
    if offset is not None:
        ctypes.c_uint8.from_address(uc._uch.value + offset).value = 1  # noqa: SLF001 - the engine handle
    # 0x10000: lg %r1,0(%r1) ; aghi %r3,1 ; j . (a new block: its start checks)
    uc.mem_write(0x10000, bytes.fromhex("e31010000004" "a73b0001" "a7f40000"))
    uc.reg_write(S.UC_S390X_REG_R1, 0x18000)
    uc.reg_write(S.UC_S390X_REG_PSWM, _PSW_64)
    uc.hook_add(UC_HOOK_MEM_READ, lambda u, *_: u.emu_stop(), begin=0x18000, end=0x18007)
    uc.emu_start(0x10000, 0xFFFFFFFFFFFFFFFF)
    return uc.reg_read(S.UC_S390X_REG_PC), uc.reg_read(S.UC_S390X_REG_R3)


def _find() -> int | None:
    try:
        offset = _offset_from_code()
        if offset >= 0x10000:
            raise LookupError(f"offset {offset:#x} is beyond uc_struct")
        checked = _stops_where(None), _stops_where(offset)
        if checked != ((0x10000, 0), (0x1000A, 1)):
            raise LookupError(f"the self-test gave {checked}")
    except (LookupError, OSError, ValueError, AttributeError) as e:
        _log.warning(
            "unicorn's exit checks stay on (%s): a stop from another thread may run an instruction twice", e
        )
        return None
    return offset


#: ``uc_struct.no_exit_request``'s byte offset, or None (unicorn's checks stay on)
OFFSET: Final = _find()


def set_free(handle: int, free: bool) -> None:
    """For code translated from now on in the engine at ``handle``: exit checks only at block starts
    (``free``: a free run's) or after every access too (a counted run's)."""
    if OFFSET is not None:
        ctypes.c_uint8.from_address(handle + OFFSET).value = 1 if free else 0
