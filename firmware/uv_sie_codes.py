"""The codes a secure guest's SIE shows its host: validity reasons, the dummy SCCB address and the exit a
CPU's run becomes."""

from __future__ import annotations

from typing import Final

from emulator.hw.cpu import CpuExit
from emulator.hw.sie import ICPT_EXTREQ, ICPT_IOREQ, ICPT_STOP, ICPT_WAIT, SieExit

__all__ = [
    "DUMMY_SCCB",
    "VIR_ASCE",
    "VIR_CONCURRENT",
    "VIR_CONFIG_HANDLE",
    "VIR_CPU_HANDLE",
    "VIR_CPU_TIMER",
    "VIR_FORMAT",
    "VIR_INJECT_DISABLED",
    "VIR_INJECT_INVALID",
    "VIR_NAMES",
    "VIR_NOT_OPERATING",
    "VIR_SD_ORIGIN",
    "VIR_SIDA",
    "sie_exit_of",
]

#: The page of the SCCB address the host sees (and names in the service-signal parameter); the UV substitutes
#: the real address when it injects the service signal.
DUMMY_SCCB: Final = 0x43000

# Validity-interception reason codes (VIR = ipb >> 16). The public sources give only the 0x20xx range
# (7.4); the individual values are zuv's (docs/hypervisor.md).
VIR_FORMAT: Final = 0x2001
VIR_CONFIG_HANDLE: Final = 0x2002
VIR_CPU_HANDLE: Final = 0x2003
VIR_NOT_OPERATING: Final = 0x2004
VIR_INJECT_DISABLED: Final = 0x2005
VIR_INJECT_INVALID: Final = 0x2006
VIR_CONCURRENT: Final = 0x2007
VIR_ASCE: Final = 0x2008
VIR_CPU_TIMER: Final = 0x2009
VIR_SIDA: Final = 0x200A
VIR_SD_ORIGIN: Final = 0x200B

VIR_NAMES: Final = {
    VIR_FORMAT: "state description is not format 4 / secure CPU entered with a normal SD",
    VIR_CONFIG_HANDLE: "configuration handle does not name the CPU's configuration",
    VIR_CPU_HANDLE: "CPU handle is not a secure CPU",
    VIR_NOT_OPERATING: "secure CPU is not operating (stopped, check-stopped or reset protocol incomplete)",
    VIR_INJECT_DISABLED: "injected interruption class is disabled in the guest",
    VIR_INJECT_INVALID: "program-interruption injection without an intercepted instruction to complete",
    VIR_CONCURRENT: "secure CPU entered on two host CPUs at once",
    VIR_ASCE: "CR1 at SIE entry is not the ASCE given at Create Secure Configuration",
    VIR_CPU_TIMER: "CPU timer raised, or lowered by more than the time spent outside SIE",
    VIR_SD_ORIGIN: "SIE entered through another page than the state description given at Create Secure CPU",
    VIR_SIDA: "the SIDA is not host storage",
}


def sie_exit_of(ex: CpuExit) -> SieExit:
    """What a secure CPU's run that ended with ``ex`` shows its host (no instruction: those are classified
    by the engine)."""
    kind = ex.kind
    if kind in ("wait", "disabled_wait"):
        return SieExit(ICPT_WAIT, reason=kind)
    if kind in ("ext_request", "io_request"):
        return SieExit(ICPT_EXTREQ if kind == "ext_request" else ICPT_IOREQ)
    if kind == "intercept":
        return SieExit(0, host_pgm=ex.code, teid=ex.data.get("teid", 0), reason=ex.reason, data=dict(ex.data))
    if kind == "check_stop":
        return SieExit(0, reason="check_stop", detail=ex.reason)
    if kind == "stopped":
        return SieExit(ICPT_STOP)
    if kind == "breakpoint":  # a debugger's stop: where, for the host's debugger
        return SieExit(0, reason=kind, data={"pc": ex.code})
    if kind == "watch":
        return SieExit(0, reason=kind, data={"vaddr": ex.code, **ex.data})
    return SieExit(0, reason=kind)
