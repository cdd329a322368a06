"""The model-based random hypervisor of issue 18 (class 5): hypothesis stateful testing around the canary
guest.

A machine with an Ultravisor (an LPAR: ``Machine(level=2, ultravisor=True)``) runs zuv's hypervisor on it
(``Hypervisor.on_machine``) with the canary guest (``guests/canary``) as a secure VM: the canary in two secure
pages and in twelve registers. The state machine is the attacker. Its rules mix

* page UVCs of the hypervisor (export, import, destroy, pin, unpin) on the guest's pages;
* every UVC of the command table with blocks drawn from handles, secure frames, odd and huge addresses and
  wrong lengths (valid ones too: a random destroy of the configuration is the attacker's right);
* host CPU instructions run by the LPAR's CPU 0 on the guest's frames: operand fetches and stores, compare
  and test (the condition code is data too), DAT tables in a secure frame (LRAG), the real-address
  instructions, SPX, PFMF clear frame, TEST BLOCK, key instructions, LPSWE, LCTLG, clocks, STSI, STFLE,
  SERVC, SIGP store status, DIAG 0x308 IPL block, UVC with its block in a secure frame;
* the hypervisor's own helpers (its guest window, which exports a secure page first; the SIDA; the
  state description; the VM's and vCPU's results);
* SIE entries of the guest with instruction budgets, and resets (CPU resets, Prepare Reset, a reboot).

Everything the host obtains (results, stored blocks, exception messages, registers, lowcore, the SIE page,
the SIDA, the frames it may read) goes through ``Model.obtained``, which fails on any canary byte; after
every step the guest's frames the host may read are searched, and at the end of each example every host
frame of the guest and of the hypervisor's own area. ``run_model`` drives it for the benchmark.
"""

from __future__ import annotations

import ctypes
import functools
import struct
import tempfile
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from hypothesis import HealthCheck, settings
from hypothesis import strategies as st
from hypothesis.stateful import RuleBasedStateMachine, initialize, invariant, precondition, rule

from emulator.attacks.canary import canary_bytes, canary_image, canary_int
from emulator.errors import EmulatorError
from emulator.hw.cpu import OPERATING, PSW_MASK_64
from emulator.hypervisor.boot import load_image
from emulator.hypervisor.kvm import Hypervisor
from emulator.machine.machine import Machine
from firmware import uv_blocks as B
from firmware.uv_codes import COMMANDS

MIB = 1 << 20
GUEST = 16 * MIB
#: the host CPU program's pages (below the hypervisor's page pool at 0x10000): lowcore 0-0x1fff
CODE, WAIT, BUF, PREFIX_WORD = 0x8000, 0x8800, 0x9000, 0x9800
WAIT_PSW = struct.pack(">QQ", 0x0002000180000000, 0xFFF)  # the program's end: a disabled wait
PGM_PSW = struct.pack(">QQ", 0x0002000180000000, 0xEEE)  # any interruption: a disabled wait
_LINE = b"canary: hot "
_HALT = bytes.fromhex("b2b2d800")  # lpswe 0x800(%r13): r13 = CODE, the wait PSW at WAIT

#: host CPU instructions: (name, bytes). Registers: r2 = the target (a guest frame), r4 = BUF, r5 = ASCE
#: target for LRAG's tables, r6 = PREFIX_WORD (SPX's operand, the prefix), r7 = PFMF's controls, r9 = CPU 1,
#: r11 = the target (SIGP's parameter), r12 = the SIGP order, r3 = 6 (DIAG 0x308's subcode: store the IPL
#: block), r0/r1 = STSI's function and selectors (1.1.1).
HOST_INSNS: tuple[tuple[str, bytes], ...] = (
    ("lg", bytes.fromhex("e33020000004")),
    ("stg", bytes.fromhex("e33020000024")),
    ("ic", bytes.fromhex("43302000")),
    ("mvc from", bytes.fromhex("d20740002000")),
    ("mvc to", bytes.fromhex("d20720004000")),
    ("xc", bytes.fromhex("d70720002000")),
    ("clc", bytes.fromhex("d50720004000")),
    ("tm", bytes.fromhex("91ff2000")),
    ("cs", bytes.fromhex("ba352000")),
    ("csg", bytes.fromhex("eb352000 0030".replace(" ", ""))),
    ("mvpg", bytes.fromhex("b2540042")),
    ("lrag (tables in the target)", bytes.fromhex("e33050000003")),
    ("lura", bytes.fromhex("b24b0032")),
    ("lurag", bytes.fromhex("b9050032")),
    ("stura", bytes.fromhex("b2460032")),
    ("sturg", bytes.fromhex("b9250032")),
    ("spx", bytes.fromhex("b2106000")),
    ("pfmf clear frame", bytes.fromhex("b9af0072")),
    ("tb", bytes.fromhex("b22c0002")),
    ("iske", bytes.fromhex("b2290032")),
    ("tprot", bytes.fromhex("e50120000000")),
    ("lpswe", bytes.fromhex("b2b22000")),
    ("lctlg", bytes.fromhex("eb112000002f")),
    ("stck", bytes.fromhex("b2052000")),
    ("stfle", bytes.fromhex("b2b02000")),
    ("stsi 1.1.1", bytes.fromhex("b27d2000")),
    ("servc", bytes.fromhex("b2200082")),
    ("sigp store status at address", bytes.fromhex("aea9c000")),
    ("diag 0x308 store IPL block", bytes.fromhex("83230308")),
    ("uvc (block in the target)", bytes.fromhex("b9a40002")),
)
#: values UVC fields are drawn from besides handles and frames
ODD_VALUES = (0, 1, 0xFFF, 0x1000, 1 << 31, (1 << 40) + 0x1000, (1 << 64) - 1, 0x8000_0000_0000_0000)


@dataclass
class Stats:
    """What a run of the model did: operations by kind, examples (machines), canary bytes found."""

    operations: int = 0
    runs: int = 0
    leaked: int = 0
    kinds: dict[str, int] = field(default_factory=dict)


STATS = Stats()


def _stored(r: Any) -> bytes:
    """The block a UVC left in host memory, as the host reads it back."""
    blk = r.block
    return bytes(blk) if blk is not None else b""


class CanaryLeak(AssertionError):
    """The host obtained a canary byte."""


def _ints(obj: Any, out: list[int], depth: int = 0) -> None:
    if depth > 4:
        return
    if isinstance(obj, bool):
        return
    if isinstance(obj, int):
        out.append(obj)
    elif isinstance(obj, (list, tuple, set, frozenset)):
        for v in obj:
            _ints(v, out, depth + 1)
    elif isinstance(obj, dict):
        for v in obj.values():
            _ints(v, out, depth + 1)


def guarded(fn: Any) -> Any:
    """A rule whose hypervisor call may fail because the host broke its own storage (its UV client's block, a
    SIE page or lowcore made secure by an import it mapped there): the exception is what the host obtains
    (searched like any result) and the step goes on."""

    @functools.wraps(fn)
    def rule_body(self: Model, *args: Any, **kwargs: Any) -> None:
        try:
            fn(self, *args, **kwargs)
        except EmulatorError as e:
            self.obtained(f"{fn.__name__}: the hypervisor's error", e)
            self._count(f"{fn.__name__} ended by a hypervisor error")

    return rule_body


class Env:
    """One machine: the LPAR, its hypervisor and the canary guest booted as a secure VM."""

    def __init__(self, seed: int) -> None:
        self.m = Machine(3 << 30, 2, level=2, ultravisor=True, uv_seed=seed, deterministic=True)
        self.hv = Hypervisor.on_machine(self.m)
        self.host = self.hv.host
        self.cpu = self.m.cpus[0]
        self.vm = self.hv.create_vm(GUEST, 1, name="canary")
        with tempfile.TemporaryDirectory() as d:
            path = Path(d) / "canary.se"
            path.write_bytes(canary_image())
            load_image(self.vm, path)
        r = self.vm.run(time_limit=30, stop_when=lambda: _LINE in self.vm.console)
        if self.vm.pv is None or _LINE not in self.vm.console:
            raise RuntimeError(f"the canary guest did not start: {r.describe()} {self.vm.pv_failure}")
        line = bytes(self.vm.console).split(_LINE, 1)[1].split(b"\n", 1)[0].split()
        self.hot, self.cold = int(line[0], 16), int(line[2], 16)
        self.pv = self.vm.pv
        self.handle = self.pv.handle
        self.cpu_handle = self.pv.cpu_handles[0]
        #: guest pages ever secure (the image, the stack, the canary pages): the frames worth searching
        self.pages = sorted(self.pv.possibly_secure | {self.hot, self.cold})

    def frame(self, gaddr: int) -> int:
        return self.vm.mso + gaddr

    def close(self) -> None:
        try:
            if not self.vm.destroyed:
                self.vm.destroy()
        except EmulatorError:  # the host broke its own storage (an import onto its UV client's block)
            pass
        finally:
            self.m.close()


class Model(RuleBasedStateMachine):
    """The attacker: see the module's docstring."""

    seed = 1

    def __init__(self) -> None:
        super().__init__()
        self.env: Env | None = None

    # -- what the host obtains ------------------------------------------------------------------------------

    def obtained(self, what: str, *values: Any) -> None:
        """Fail if any value the host got holds a canary byte (bytes, text, integers, results)."""
        for v in values:
            hits = 0
            if isinstance(v, (bytes, bytearray, memoryview, str)):
                hits = canary_bytes(v)
            elif isinstance(v, BaseException):
                hits = canary_bytes(str(v)) + canary_bytes(repr(v.args))
            else:
                ints: list[int] = []
                _ints(v, ints)
                hits = 8 * sum(1 for i in ints if canary_int(i))
                for attr in ("raw", "data", "detail", "reason", "message"):
                    x = getattr(v, attr, None)
                    if isinstance(x, (bytes, bytearray, str)):
                        hits += canary_bytes(x)
                if hasattr(v, "__dict__"):
                    for x in vars(v).values():
                        if isinstance(x, (bytes, bytearray, str)):
                            hits += canary_bytes(x)
                        elif isinstance(x, int) and canary_int(x):
                            hits += 8
            if hits:
                STATS.leaked += hits
                raise CanaryLeak(f"{what}: {hits} canary bytes reached the host: {v!r:.300}")

    def _count(self, kind: str) -> None:
        STATS.operations += 1
        STATS.kinds[kind] = STATS.kinds.get(kind, 0) + 1

    def _read_frame(self, addr: int, what: str) -> None:
        if self.env is not None and self.env.host.accessible(addr):
            self.obtained(what, self.env.host.read(addr & ~0xFFF, 4096))

    # -- set-up and tear-down -------------------------------------------------------------------------------

    @initialize()
    def boot(self) -> None:
        self.env = Env(self.seed)
        STATS.runs += 1

    def teardown(self) -> None:
        env = self.env
        if env is None:
            return
        try:
            # every frame the host may read: the guest's slot and the hypervisor's own area below it
            host = env.host
            for base, size in ((0, env.vm.mso), (env.vm.mso, GUEST)):
                for a in range(base, base + size, MIB):
                    if all(host.accessible(p) for p in range(a, a + MIB, 4096)):
                        self.obtained(f"host storage {a:#x}", host.read(a, MIB))
                    else:
                        for p in range(a, a + MIB, 4096):
                            self._read_frame(p, f"host frame {p:#x}")
        finally:
            env.close()
            self.env = None

    def targets(self) -> list[int]:
        env = self.env
        assert env is not None
        return [env.hot, env.cold, *env.pages]

    def pick_page(self, pick: int) -> int:
        """A guest page: one of the two canary pages half of the time, else any page ever secure."""
        pages = self.targets()
        return pages[(pick >> 1) % 2] if pick & 1 else pages[(pick >> 1) % len(pages)]

    # -- page UVCs of the hypervisor ------------------------------------------------------------------------

    @rule(op=st.sampled_from(["export", "import", "destroy", "pin", "unpin"]), pick=st.integers(0, 1 << 16))
    @guarded
    def page_uvc(self, op: str, pick: int) -> None:
        env = self.env
        assert env is not None
        gaddr = self.pick_page(pick)
        frame = env.frame(gaddr)
        c = env.pv.client
        if op == "export":
            r = c.call("conv_from_sec_stor", paddr=frame)
        elif op == "import":
            r = env.pv.import_page(gaddr)
        elif op == "destroy":
            r = c.call("destr_sec_stor", paddr=frame)
        elif op == "pin":
            r = c.call("pin_page_shared", paddr=frame)
        else:
            r = c.call("unpin_page_shared", guest_handle=env.handle, gaddr=gaddr)
        self.obtained(f"{op} {gaddr:#x}", r, _stored(r), str(r))
        self._read_frame(frame, f"frame of {gaddr:#x} after {op}")
        self._count(f"uvc {op}")

    # -- the guest's mapping: a page onto a frame the host uses itself, then imported -----------------------

    @rule(what=st.sampled_from(["sd", "uvcb", "sida", "lowcore", "buffer", "another page"]),
          pick=st.integers(0, 1 << 16))  # fmt: skip
    @guarded
    def remap_import(self, what: str, pick: int) -> None:
        """Point a guest page at a frame the host itself uses (the SIE page, the UV client's block, the SIDA,
        the host CPU's lowcore and buffer, another guest page) in the page tables the Ultravisor walks, and
        import it: what the Ultravisor allows must still give the host no plaintext."""
        env = self.env
        assert env is not None
        if env.vm.destroyed or env.pv.handle == 0:
            return
        v = env.vm.vcpus[0]
        another = env.frame(self.pick_page(pick >> 4))
        target = {"sd": v.page_addr, "uvcb": env.pv.client.uvcb_addr, "sida": v.sida_addr & ~0xFFF,
                  "lowcore": 0, "buffer": BUF, "another page": another}[what]  # fmt: skip
        gaddr = self.pick_page(pick)
        try:
            host = env.host
            st = env.pv.asce & ~0xFFF
            ste = struct.unpack(">Q", host.read(st + (gaddr >> 20) * 8, 8))[0]
            pte = (ste & ~0x7FF) + ((gaddr >> 12) & 0xFF) * 8
            host.write(pte, struct.pack(">Q", target))
            env.pv.purge_tlb()
            r = env.pv.import_page(gaddr)
            self.obtained(f"import of {gaddr:#x} onto the {what}", r, _stored(r), str(r))
        except EmulatorError as e:
            self.obtained(f"remap onto the {what}", e)
        self._read_frame(target, f"the {what} after the import")
        self._count(f"uvc remap+import onto {what}")

    # -- any UVC, valid or malformed -----------------------------------------------------------------------

    @rule(
        index=st.integers(0, len(COMMANDS) - 1),
        picks=st.lists(st.integers(0, 1 << 20), min_size=8, max_size=8),
        length=st.sampled_from([None, None, None, 0, 8, -8, 8, 0x1000]),
    )
    @guarded
    def any_uvc(self, index: int, picks: list[int], length: int | None) -> None:
        env = self.env
        assert env is not None
        cmd = COMMANDS[index]
        pool = [env.handle, env.cpu_handle, env.handle ^ 1, *ODD_VALUES]
        frames = [env.frame(p) for p in self.targets()]
        layout = B.LAYOUTS.get(cmd.struct) if cmd.struct else None
        names = [n for n, t, *_ in getattr(layout, "_fields_", ())
                 if n != "header" and not n.startswith("res")
                 and not issubclass(t, (ctypes.Array, ctypes.Structure))]  # fmt: skip
        fields: dict[str, int] = {}
        for i, name in enumerate(names[:8]):
            p = picks[i]
            if p % 3 == 0:
                fields[name] = frames[p % len(frames)] + (p & 0x7 if p % 9 == 0 else 0)
            elif p % 3 == 1:
                fields[name] = pool[p % len(pool)]
            else:
                fields[name] = self.targets()[p % len(frames)]  # a guest address
        ln = None if length is None else (cmd.length + length if length == -8 else length)
        try:
            r = env.pv.client.call(cmd.code, length=ln, **fields)
        except EmulatorError as e:  # a field the block cannot hold: the client's clear error
            self.obtained(f"{cmd.name} error", e)
            self._count("uvc refused by the client")
            return
        self.obtained(f"{cmd.name} {fields}", r, _stored(r), str(r))
        for name, v in fields.items():
            if 0 <= v < env.host.size:
                self._read_frame(v, f"{cmd.name}: frame named by {name}")
        self._count("uvc any" if r.ok else "uvc any refused")

    # -- host CPU instructions on the guest's frames -------------------------------------------------------

    @rule(
        index=st.integers(0, len(HOST_INSNS) - 1),
        pick=st.integers(0, 1 << 16),
        off=st.sampled_from([0, 8, 0xFF8]),
    )
    @guarded
    def host_insn(self, index: int, pick: int, off: int) -> None:
        env = self.env
        assert env is not None
        name, code = HOST_INSNS[index]
        target = env.frame(self.pick_page(pick)) + off
        m, cpu, host = env.m, env.cpu, env.host
        host.write(0, bytes(0x2000))  # the CPU's lowcore: new PSWs of every class end in a wait
        for new in (0x1A0, 0x1B0, 0x1C0, 0x1D0, 0x1E0, 0x1F0):
            host.write(new, PGM_PSW)
        host.write(CODE, code + _HALT)
        host.write(WAIT, WAIT_PSW)
        host.write(BUF, bytes(4096))
        host.write(PREFIX_WORD, struct.pack(">I", target & 0x7FFFE000))  # SPX's operand: the target's pair
        if cpu.state != OPERATING:
            cpu.reset_clear()
            cpu.state = OPERATING
        cpu.set_prefix(0)
        regs = {2: target, 3: 6, 4: BUF, 5: target, 6: PREFIX_WORD, 7: 0x10000, 9: 1, 11: target & ~0xFFF,
                12: 0x0E, 13: CODE, 0: 0x10000001, 1: 1}  # fmt: skip
        for i in range(16):
            cpu.set_gpr(i, regs.get(i, 0))
        cpu.set_cr(1, (target & ~0xFFF) | 0x3)  # a segment-table ASCE in the target (LRAG walks it)
        cpu.set_psw(PSW_MASK_64, CODE)
        try:
            ex = m.step(4)
        except EmulatorError as e:
            self.obtained(f"host {name}: error", e)
            ex = None
        fprs = [cpu.fpr(i) for i in range(16)]
        self.obtained(f"host {name}: registers", cpu.gprs(), fprs, cpu.crs(), cpu.psw)
        self.obtained(f"host {name}: exit", ex, str(ex), cpu.check_stop_reason, m.console)
        self.obtained(f"host {name}: lowcore and buffer", host.read(0, 0x2000), host.read(BUF, 4096))
        self._read_frame(target, f"host {name}: the target")
        self._count(f"host insn {name}")

    # -- the hypervisor's helpers --------------------------------------------------------------------------

    @rule(which=st.sampled_from(["window read", "sida", "sd", "results", "vcpu"]),
          pick=st.integers(0, 1 << 16))  # fmt: skip
    @guarded
    def helper(self, which: str, pick: int) -> None:
        env = self.env
        assert env is not None
        vm = env.vm
        if vm.destroyed:
            return
        gaddr = self.pick_page(pick)
        v = vm.vcpus[0]
        try:
            if which == "window read":  # the hypervisor's own guest window: a secure page is exported first
                self.obtained("window read", vm.memory.read(gaddr, 4096))
            elif which == "sida":
                sd = v.sd
                if sd.sida_origin and env.host.accessible(sd.sida_origin):
                    n = min(sd.sida_size or 4096, 4096)
                    self.obtained("SIDA", env.pv.host.sida(v.page).read(0, n))
            elif which == "sd":
                self.obtained("SIE page", env.host.read(v.page_addr, 4096), list(v.page.pv_grregs))
            elif which == "results":
                self.obtained("vm", vm.intercepts, v.detail, vm.console, vm.pv_failure)
            else:
                self.obtained("vcpu", vars(v), env.pv.pending_ext(v), env.pv.cpu_handles)
        except EmulatorError as e:
            self.obtained(f"helper {which}", e)
        self._count(f"helper {which}")

    # -- SIE entries and resets ----------------------------------------------------------------------------

    @precondition(lambda self: self.env is not None and not self.env.vm.destroyed
                  and self.env.vm.vcpus[0].operating)  # fmt: skip
    # the guest yields (DIAG 0x9C) every ~41,000 instructions: budgets past that make it leave SIE by its
    # yield
    @rule(budget=st.one_of(st.sampled_from([45_000, 90_000, 200_000]), st.integers(1, 200_000)))
    @guarded
    def sie(self, budget: int) -> None:
        env = self.env
        assert env is not None
        vm = env.vm
        v = vm.vcpus[0]
        if not v.operating:
            self._count("sie (vCPU not operating)")
            return
        try:
            ex, done = vm.step(0, budget)
            self.obtained("SIE exit", ex, ex.data, done)
        except EmulatorError as e:
            self.obtained("SIE", e)
        self.obtained("SIE page after exit", env.host.read(v.page_addr, 4096))
        sd = v.sd
        if sd.sida_origin and env.host.accessible(sd.sida_origin):
            self.obtained("SIDA after exit", env.host.read(sd.sida_origin & ~0xFFF, 4096))
        self._count("sie")

    @rule(kind=st.sampled_from(
        ["prepare_reset", "reboot", "cpu_reset", "cpu_reset_initial", "cpu_reset_clear"]))  # fmt: skip
    @guarded
    def reset(self, kind: str) -> None:
        env = self.env
        assert env is not None
        if kind == "reboot":  # the VM's reboot: KVM_PV_DISABLE and a new boot of the same image
            env.close()
            self.env = Env(self.seed + STATS.runs)
            STATS.runs += 1
        else:
            fields = {"handle": env.handle} if kind == "prepare_reset" else {"handle": env.cpu_handle}
            r = env.pv.client.call(kind, **fields)
            self.obtained(kind, r, _stored(r), str(r))
        self._count(f"reset {kind}")

    # -- after every step ----------------------------------------------------------------------------------

    @invariant()
    def no_canary_in_the_guests_host_frames(self) -> None:
        env = self.env
        if env is None:
            return
        for p in env.pages:
            self._read_frame(env.frame(p), f"guest page {p:#x}")


def model_settings(max_examples: int, steps: int, derandomize: bool = True) -> settings:
    return settings(
        max_examples=max_examples,
        stateful_step_count=steps,
        deadline=None,
        derandomize=derandomize,
        database=None,
        suppress_health_check=list(HealthCheck),
    )


def run_model(operations: int, seed: int = 1, steps: int = 500) -> Stats:
    """Run the model until ``operations`` operations were made (the benchmark); returns the statistics."""
    from hypothesis import seed as hseed
    from hypothesis.stateful import run_state_machine_as_test

    STATS.__init__()  # type: ignore[misc]
    Model.seed = seed
    rounds = 0
    while STATS.operations < operations:
        left = operations - STATS.operations
        n = max(1, min(20, left // steps + 1))
        rounds += 1
        factory = hseed(seed * 1000 + rounds)(lambda: Model())
        run_state_machine_as_test(factory, settings=model_settings(n, steps, derandomize=False))
    return STATS
