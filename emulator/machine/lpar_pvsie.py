"""SIE with a format-4 state description, executed by a program in the LPAR: its secure guests run through the
Ultravisor's half of SIE (``firmware.uv_sie.PvSieEngine``), as zuv's own hypervisor runs its own.

A level-2 program that is a hypervisor (kvm-unit-tests' pv-host tests ``pv-diags``, ``pv-icptcode``,
``pv-ipl``) creates a secure configuration and CPU with host UVCs, turns the CPU's state description (SD) into
format 4 (``sdf = 2``, the CPU and configuration handles, a SIDA) and executes SIE on it. The machine then
acts as the hardware and firmware do (``secure-execution.md`` section 7):

- The SD's page is used in place (the SIE page: the SD, and ``pv_grregs`` at 0x380): the Ultravisor's engine
  reads the handles, ``iictl`` and the injection data, and stores the interception code, the normalised
  instruction text (IPA/IPB), the guest's PSW, prefix, CR0/6/14, clock comparator and CPU timer, and the
  registers the host needs in ``pv_grregs``; instruction data travel through the SIDA (``sidad``: host
  absolute, host storage). The secure CPU's state stays the Ultravisor's: the host's registers are left as
  they were (nothing of the guest reaches them), and the guest runs on the host CPU's guest CPU (one unicorn
  CPU per host CPU, shared with format-2 SIE).
- Entry checks, all validity interceptions (0x20, reason ``ipb >> 16`` in 0x20xx): format, handles (every
  bit; a CPU handle of another configuration), CR1 equal to the ASCE given at Create Secure Configuration,
  the CPU operating with its PSW loaded, the CPU timer (not raised, not lowered by more than the time since
  the last SIE ended), a secure CPU already in SIE on another host CPU, a SIDA that is not host storage.
- Exits: PV instruction (0x68), PV notification (0x6C: DIAG 0x44/0x9C/0x308, SET PREFIX with the new prefix
  in the SIDA), prefix not secure (0x70), waits (0x1C), stop (0x28); a guest access to a page that is not
  secure is a program interruption of the host (0x3E/0x3F, the old PSW at SIE, the TEID naming the guest
  page) for the host to import it.
- A time slice of the guest (10 ms) that ends with nothing for the host leaves the SIE instruction in
  progress: the host's PSW stays at SIE and its next turn continues the guest, so a secure CPU stays in SIE
  on its host CPU as long as it runs (another host CPU entering it gets a validity interception), and the SD
  keeps what the host put there. When the host CPU has an interruption to take, SIE ends with code 0 and the
  PSW after SIE, as for format 2.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Final

from emulator.hw.cpu import OPERATING, PSW_MASK_IO, Cpu, Insn
from emulator.hw.host_view import HostSpan
from emulator.hw.memory import PhysicalMemory
from emulator.hw.sie import ICPT_VALIDITY, SieBlock, SiePage
from firmware.uv_sie import VIR_CONCURRENT, VIR_FORMAT, VIR_SIDA, PvSieEngine

if TYPE_CHECKING:
    from firmware.uv import Ultravisor

__all__ = ["LparPvSie"]

SLICE_US: Final = 10_000
_PAGE: Final = 0x1000


class LparPvSie:
    """Format-4 SIE for the programs of one machine's LPAR, through the Ultravisor's engine.

    Args:
        uv: the machine's Ultravisor.
        memory: the machine's absolute storage.
    """

    def __init__(self, uv: Ultravisor, memory: PhysicalMemory) -> None:
        self._uv = uv
        self._memory = memory
        self._buf = memory.buffer()
        self._view = memory.host_view()
        self.engine = PvSieEngine(uv, self._sida)
        #: host CPU address -> (host CPU, SD absolute address, address of the SIE instruction, CPU handle):
        #: a SIE still in progress after a time slice of its guest
        self._inside: dict[int, tuple[Cpu, int, int, int]] = {}

    def _sida(self, page: SiePage) -> HostSpan:
        """The SIDA as the engine fills and reads it: host storage checked at every access (a span, as the
        hypervisor's engine gets it), never a raw window: a SIDA page made secure by another host CPU's UVC
        during a SIE in progress (the entry's check is not repeated for a resumed SIE) is refused, not
        written with the guest's instruction data or read into the guest."""
        sd = page.sie_block
        return HostSpan(self._view, sd.sida_origin, sd.sida_size)

    def _sida_usable(self, page: SiePage) -> bool:
        sd = page.sie_block
        addr, size = sd.sida_origin, sd.sida_size
        if not addr or addr + size > self._memory.size:
            return False
        return all(self._view.accessible(a) for a in range(addr, addr + size, _PAGE))

    @staticmethod
    def _validity(page: SiePage, vir: int) -> int:
        sd = page.sie_block
        sd.icptcode, sd.ipa, sd.ipb = ICPT_VALIDITY, 0, vir << 16
        return ICPT_VALIDITY

    def _held_elsewhere(self, host: Cpu, handle: int) -> bool:
        """True if the secure CPU is in SIE on another host CPU (a SIE in progress there)."""
        for addr, (other, _sd, pc, h) in list(self._inside.items()):
            if other.state != OPERATING or other.pc != pc:  # that SIE ended (the host CPU stopped, or reset)
                del self._inside[addr]
            elif h == handle and other is not host:
                return True
        return False

    @staticmethod
    def _host_interruption(host: Cpu) -> bool:
        """The host CPU has an interruption to take: SIE must end for it."""
        if host.restart_pending or host._ext_deliverable() is not None:  # noqa: SLF001 - the CPU's own test
            return True
        return bool(host.psw[0] & PSW_MASK_IO) and host.io_deliverable()

    def execute(self, host: Cpu, insn: Insn, guest: Cpu, sd_real: int) -> int:
        """SIE of ``host`` on the format-4 SD at real ``sd_real``, its guest run on ``guest``; returns the
        interception code stored (0: none). Raises ``ProgramException`` for the host (an SD page it may
        not access)."""
        if sd_real & (_PAGE - 1):  # a format-4 SD is the start of its SIE page (pv_grregs at 0x380)
            insn.finish()
            sd_abs = host.real_to_abs(sd_real)
            head = SieBlock.from_buffer(self._buf, sd_abs)
            head.icptcode, head.ipa, head.ipb = ICPT_VALIDITY, 0, VIR_FORMAT << 16
            return ICPT_VALIDITY
        host.read_real(sd_real, _PAGE)  # the whole SIE page: addressing and secure-storage checks of the host
        sd_abs = host.real_to_abs(sd_real)
        page = SiePage.from_buffer(self._buf, sd_abs)
        sd = page.sie_block
        held = self._inside.pop(host.address, None)
        resumed = held is not None and held[1] == sd_abs and held[2] == insn.pc
        if not resumed:
            if not self._sida_usable(page):
                insn.finish()
                return self._validity(page, VIR_SIDA)
            if self._held_elsewhere(host, sd.pv_handle_cpu) and self._uv.secure_cpu(sd.pv_handle_cpu):
                insn.finish()
                return self._validity(page, VIR_CONCURRENT)
        before = sd.icptcode
        ex = self.engine.enter(guest, page, timeout_us=SLICE_US, asce=host.cr(1))
        if ex.host_pgm:
            # a guest page that is not secure (0x3E) or belongs to another (0x3F): the host's exception at SIE
            host.program_interrupt(ex.host_pgm, insn.ilen, ex.teid, pc=insn.pc)
            return 0
        if ex.icptcode or ex.reason == "check_stop" or self._host_interruption(host):
            insn.finish()
            return ex.icptcode
        # the slice ended with nothing for the host: SIE goes on at the host CPU's next turn
        sd.icptcode = before
        self._inside[host.address] = (host, sd_abs, insn.pc, sd.pv_handle_cpu)
        return 0

    def forget(self, host: Cpu) -> None:
        """The host CPU was reset or stopped: no SIE is in progress on it."""
        self._inside.pop(host.address, None)
