"""The machine's answers to the instructions a CPU hands back: SERVC, SIGP, STSI, DIAG, UVC, SIE, channel I/O.

``OwnerInsns`` is a base class of ``Machine``: its methods answer what a CPU's run gives up
(``Cpu.owner_insn`` inside the run, ``Machine._handle_insn`` after it) through the device models in
``emulator.hw``.
"""

from __future__ import annotations

from typing import Final

from emulator.errors import ProgramException
from emulator.hw import access
from emulator.hw import sigp as sigp_mod
from emulator.hw.cpu import CR0_SERVICE_SC, OPERATING, PSW_MASK_EXT, STOPPED, Cpu, Insn
from emulator.hw.diag import diag308_check, diag500_function, release_pages
from emulator.hw.sclp import CpuSccb, merge_service_parameter
from emulator.hw.sysinfo import stsi, stsi_operand_check
from emulator.hw.virtio_ccw import notify as virtio_notify
from emulator.machine import channel

__all__ = ["OwnerInsns", "CpuControlBlock"]

#: the owner's instructions the CPU hands to ``Machine._owner_insn`` inside its run
_INLINE_INSNS: Final = frozenset({"SERVC", "SIGP", "STSI", "DIAG"})
#: SIGP orders that make an interruption pending at another CPU: in a free run with other CPUs operating the
#: sender's run ends and the target takes its turn first (``Machine._handoff``)
_SIGP_SIGNALS: Final = frozenset({sigp_mod.EXTERNAL_CALL, sigp_mod.EMERGENCY, sigp_mod.COND_EMERGENCY})
#: SIGP orders that change no CPU's state (sense, signals): the run goes on without comparing states
_SIGP_KEEPS_STATES: Final = frozenset({
    sigp_mod.SENSE, sigp_mod.SENSE_RUNNING, sigp_mod.EXTERNAL_CALL, sigp_mod.EMERGENCY,
    sigp_mod.COND_EMERGENCY,
})


class CpuControlBlock:
    """A UVCB as the calling CPU addresses it: a logical address (virtual in the PSW's address space when DAT
    is on, real otherwise), as the CPU's own operands are. kvm-unit-tests' pv-ipl initialises the Ultravisor
    in primary-space mode before it loads CR13 at all, so the home space cannot be what the UVC uses there.

    Every byte goes through the CPU's translation with all its checks, so a block that is not
    accessible (also only its tail) raises the caller's access exception and nothing is stored.
    """

    def __init__(self, cpu: Cpu, addr: int) -> None:
        self.cpu = cpu
        self.addr = addr

    def translate(self, vaddr: int, write: bool) -> int:
        """Host absolute address of a logical address of the calling CPU."""
        return self.cpu.translate(vaddr, write=write)

    def _pages(self, offset: int, length: int, write: bool) -> list[tuple[int, int]]:
        out = []
        v = self.cpu.wrap(self.addr + offset)
        while length > 0:
            n = min(length, 0x1000 - (v & 0xFFF))
            out.append((self.translate(v, write), n))
            v, length = self.cpu.wrap(v + n), length - n
        return out

    def read(self, offset: int, length: int) -> bytes:
        """Read block bytes through the CPU's translation."""
        return b"".join(self.cpu.mem.read(h, n) for h, n in self._pages(offset, length, False))

    def write(self, offset: int, data: bytes) -> None:
        """Store block bytes; every page is checked before anything is stored."""
        pos = 0
        for h, n in self._pages(offset, len(data), True):
            self.cpu.mem.write(h, data[pos : pos + n])
            pos += n


class OwnerInsns:
    """The machine's handlers of the instructions its CPUs hand back (a base class of ``Machine``)."""

    # -- instructions handed back by the CPU -----------------------------------------------------------

    def _owner_insn(self, cpu: Cpu, insn: Insn) -> bool | None:
        """Handle SERVC, SIGP, STSI and DIAG (but a re-IPL's 0x308) inside the CPU's run (``Cpu.owner_insn``):
        True when nothing the run loop decides on changed (no CPU changed state, no halt, the watchdog's
        deadline is the same), so the run goes on; False: the loop looks (an SCLP call's round trip through
        the loop was most of its cost)."""
        name = insn.name
        if name not in _INLINE_INSNS or (name == "DIAG" and insn.address() & 0xFFFF == 0x308):
            return None
        if self.insn_filter is None and not self.insn_handlers and self.watchdog is None:
            # the common case in one call less: no filter, no handler of the user's, no watchdog to compare
            order = insn.address() & 0xFF if name == "SIGP" else -1
            if name == "SERVC" or order in _SIGP_KEEPS_STATES:
                try:
                    if order < 0:
                        self._insn_servc(cpu, insn)
                    else:
                        self._sigp(cpu, insn, order)
                except ProgramException as e:
                    ilc = e.ilc if e.ilc is not None else insn.ilen
                    cpu.program_interrupt(e.code, ilc, e.teid, pc=insn.pc)
                return self._halt_reason is None and self._handoff is not cpu
        # only SIGP's orders that start, stop or reset (or a handler or filter of the machine's user) change a
        # CPU's state
        states = None
        if (
            (name == "SIGP" and insn.address() & 0xFF not in _SIGP_KEEPS_STATES)
            or self.insn_filter is not None
            or name in self.insn_handlers
        ):
            states = [c.state for c in self.cpus.values()]
        wd = self.watchdog
        before = wd.deadline if wd is not None else None
        self._handle_insn(cpu, insn)
        return (
            self._halt_reason is None
            and self._handoff is not cpu
            and (wd is None or wd.deadline == before)
            and (states is None or [c.state for c in self.cpus.values()] == states)
        )

    def _handle_insn(self, cpu: Cpu, insn: Insn) -> None:
        if self.insn_filter is not None:
            why = self.insn_filter(cpu, insn)
            if why is not None:
                self._halt_reason = why
                self.stopped_at = (cpu.address, insn.pc)
                return
        custom = self.insn_handlers.get(insn.name)
        try:
            if custom is not None:
                custom(cpu, insn)
                return
            handler = self._insn_methods.get(insn.name)
            if handler is None:
                handler = self._insn_methods[insn.name] = getattr(self, "_insn_" + insn.name.lower(), None)
            if handler is None:
                raise ProgramException(0x01, why=f"{insn.name} is not available in this configuration")
            handler(cpu, insn)
        except ProgramException as e:
            cpu.program_interrupt(e.code, e.ilc if e.ilc is not None else insn.ilen, e.teid, pc=insn.pc)

    def _insn_servc(self, cpu: Cpu, insn: Insn) -> None:
        rr = insn.raw[3]  # RRE format: R1 and R2 in the fourth byte
        command = cpu.gpr(rr >> 4) & 0xFFFFFFFF
        sccb = cpu.gpr(rr & 0xF)
        res = self.sclp.service_call(CpuSccb(cpu, self.memory.size), command, sccb)
        self._service_signal(res.ext_param, cpu)
        cpu.complete(insn.next_pc, 0)  # insn.finish(0), a call less

    @staticmethod
    def _takes_service_signal(cpu: Cpu) -> bool:
        enabled = cpu._mask_bits() & PSW_MASK_EXT and cpu.cr(0) & CR0_SERVICE_SC  # noqa: SLF001 - (a call less)
        return cpu.state == OPERATING and bool(enabled)

    def _service_signal(self, param: int, issuer: Cpu) -> None:
        """Make a service-signal external interruption pending. It is a floating interruption: any CPU
        enabled for it may take it (the issuer first); while none is, the issuer holds it and the run loop
        moves it to the first CPU that becomes enabled (``_route_service_signal``)."""
        target = issuer
        if not self._takes_service_signal(issuer):
            target = next((c for _, c in sorted(self.cpus.items()) if self._takes_service_signal(c)), issuer)
        target.ext_pending["service"] = merge_service_parameter(target.ext_pending.get("service"), param)
        if target is not issuer:
            target.kick()

    def _route_service_signal(self) -> None:
        """A pending service signal held by a CPU not enabled for it moves to one that is."""
        holder = next((c for c in self.cpus.values() if "service" in c.ext_pending), None)
        if holder is None or self._takes_service_signal(holder):
            return
        for _, c in sorted(self.cpus.items()):
            if c is not holder and self._takes_service_signal(c):
                moved = holder.ext_pending.pop("service")
                c.ext_pending["service"] = merge_service_parameter(c.ext_pending.get("service"), moved)
                return

    def _insn_stsi(self, cpu: Cpu, insn: Insn) -> None:
        r0, r1 = cpu.gpr(0), cpu.gpr(1)
        addr = insn.address()
        stsi_operand_check(r0, addr)
        operating = sum(1 for c in self.cpus.values())
        cc, new_r0, block = stsi(self.info, self.level, r0, r1, operating)
        if block is not None:
            cpu.write_virtual(addr, block)
        if new_r0 is not None:
            cpu.set_gpr(0, new_r0)
        insn.finish(cc)

    def _sigp_may_store(self, addr: int, n: int) -> bool:
        """The access rules for the stores SIGP orders make on a CPU's behalf (``access.store_refused``)."""
        return not access.store_refused(self.memory, addr, n)

    def _insn_sigp(self, cpu: Cpu, insn: Insn) -> None:
        self._sigp(cpu, insn, insn.address() & 0xFF)

    def _sigp(self, cpu: Cpu, insn: Insn, order: int) -> None:
        rr = insn.raw[1]  # RS format: R1 and R3 in the second byte
        r1, r3 = rr >> 4, rr & 0xF
        param = cpu.gpr(r1 | 1)
        target = cpu.gpr(r3) & 0xFFFF
        mem = self.memory
        cc, status = sigp_mod.sigp(
            cpu, order, target, param, self.cpus, mem.size, mem.write, self._sigp_may_store
        )  # fmt: skip
        if status is not None:
            cpu.set_gpr(r1, (cpu.gpr(r1) & ~0xFFFFFFFF) | status)
        if cc == 0 and order in _SIGP_SIGNALS and target != cpu.address:
            self._hand_off(cpu)  # (the target's handler runs now, not after the sender's slice)
        if cc == 0 and order in sigp_mod.TAKES_OVER:
            # the program took the CPU over (stopped, restarted or reset it): a disabled wait it was left in
            # is no longer how it ended
            self._disabled_wait.pop(target, None)
        if cpu.state in (OPERATING, STOPPED):
            insn.finish(cc)

    def _insn_diag(self, cpu: Cpu, insn: Insn) -> None:
        code = insn.address() & 0xFFFF
        r1, r3 = insn.r1, insn.r3
        if code in (0x44, 0x9C):  # time-slice end (yield) and directed yield: the other CPUs take their turns
            self._hand_off(cpu)
            insn.finish()
            return
        if code == 0x10:
            release_pages(self.memory, cpu.gpr(r1), cpu.gpr(r3), cpu.prefix)
            insn.finish()
            return
        if code == 0x288:
            if self.watchdog is None:
                raise ProgramException(0x06, why="DIAG 0x288 without a watchdog (zuv run --watchdog diag288)")
            self.watchdog.call(r1, cpu.gpr(r1), cpu.gpr((r1 + 1) & 15), cpu.gpr(r3), self.tod.now())
            insn.finish()
            return
        if code == 0x500:
            rc = diag500_function(cpu.gpr(1), cpu.gpr(2), self.memory.size)
            if rc is None:  # virtio-ccw notification: GR2 subsystem id, GR3 queue index
                rc = virtio_notify(self.css, cpu.gpr(2) & 0xFFFFFFFF, cpu.gpr(3))
            cpu.set_gpr(2, rc & 0xFFFFFFFFFFFFFFFF)
            insn.finish()
            return
        if code == 0x308:
            self._diag308(cpu, insn, r1, cpu.gpr(r3))
            return
        raise ProgramException(0x06, why=f"DIAGNOSE code {code:#x} is not supported")

    def _diag308(self, cpu: Cpu, insn: Insn, r1: int, subcode: int) -> None:
        addr = cpu.gpr(r1)
        diag308_check(subcode, r1, addr, self.memory.size, unpack=self.uv is not None)
        if subcode in (5, 6):
            if subcode == 5:
                length = int.from_bytes(cpu.read_real(addr, 4), "big")
                if not 8 <= length <= 0x1000:
                    cpu.set_gpr(r1 + 1, 0x0402)  # invalid IPL parameter block
                else:
                    self.ipl_parameters = cpu.read_real(addr, length)
                    cpu.set_gpr(r1 + 1, 0x0001)
            elif self.ipl_parameters is None:
                cpu.set_gpr(r1 + 1, 0x0102)  # no IPL parameters stored
            else:
                cpu.write_real(addr, self.ipl_parameters)
                cpu.set_gpr(r1 + 1, 0x0001)
            insn.finish()
            return
        if subcode in (0, 1, 3):
            # QEMU s390_machine_reset: 0 = modified clear (clear reset of every CPU, then "load normal" on
            # the calling CPU), 1 = load normal (CPU reset of the others, initial reset of the caller, then
            # load normal), 3 = load clear (storage cleared and the program IPLed again)
            if self.uv is not None:  # a load-normal/clear reset returns the Ultravisor to uninitialised
                self.uv.reset()  # type: ignore[attr-defined]
            self.css.reset()  # the I/O-system reset of every load-normal/clear
            if subcode == 3:
                self.memory.fill(0, self.memory.size)
                if self.program is not None:
                    self.load(self.program.path, self._cmdline, self._initrd)
                    return
            for c in self.cpus.values():
                if subcode == 0:
                    c.reset_clear()
                elif c is cpu:
                    c.reset_initial()
                else:
                    c.reset_cpu()
                self._disabled_wait.pop(c.address, None)
            short = self.memory.read_u64(0)
            mask = (short & 0xFFFFFFFF00000000) ^ (1 << 51)  # the short-PSW bit inverted: 0 is valid, as QEMU
            cpu.set_psw(mask | (short & 0x80000000), short & 0x7FFFFFFF)
            cpu.state = OPERATING
            return
        # 8, 9, 10 with the unpack facility (diag308_check refused every other subcode)
        raise ProgramException(0x06, why="secure IPL is done by the hypervisor (run the image with zuv boot)")

    def _insn_uvc(self, cpu: Cpu, insn: Insn) -> None:
        """A UVC from a program running in the LPAR: the host calls the Ultravisor."""
        if self.uv is None or self.level != 2:
            raise ProgramException(0x01, why="no Ultravisor call facility in this configuration")
        if insn.raw[2]:
            raise ProgramException(0x06, why="UVC: bits 16-23 (M3, M4) must be zero")
        from firmware.uv import UvCaller  # noqa: PLC0415 - the Ultravisor is optional

        others = any(c.state == OPERATING for c in self.cpus.values() if c is not cpu)
        cb = CpuControlBlock(cpu, cpu.gpr(insn.r2))
        cc = self.uv.call(UvCaller("host", other_cpus_running=others), cb)  # type: ignore[attr-defined]
        insn.finish(cc)

    def _insn_sie(self, cpu: Cpu, insn: Insn) -> None:
        if self.sie is None:
            raise ProgramException(0x01, why="SIE is not available to a guest (no nested virtualisation)")
        self.sie.execute(cpu, insn)

    def _channel_subsystem(self, cpu: Cpu, insn: Insn) -> None:
        channel.HANDLERS[insn.name](self.css, cpu, insn)

    _insn_csch = _insn_hsch = _insn_msch = _insn_ssch = _insn_xsch = _channel_subsystem
    _insn_stsch = _insn_tsch = _insn_tpi = _insn_sal = _channel_subsystem
    _insn_rsch = _insn_stcrw = _insn_stcps = _insn_rchp = _insn_schm = _insn_chsc = _channel_subsystem

