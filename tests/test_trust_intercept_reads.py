"""The SIE engine's reads of a secure guest's storage at an intercept (issue 18's third review, the open item
of ``docs/security.md``): the SCCB of a SERVC (and an IPL block, a channel-subsystem block) is read into the
SIDA after the CPU's run returned. Read outside the CPU's run lock, an Ultravisor command on another thread
(Export, then Import of another configuration's page into the same frame) could change the frame between
the read's check and its copy, so the SIDA could get bytes the guest never handed over; under the lock the
command's hold of the CPU waits until the copy is done."""

from __future__ import annotations

from typing import Any

from emulator.api import Host, _machine_of


def test_the_engine_reads_a_secure_guests_sccb_under_the_cpus_run_lock() -> None:
    with Host(seed=5) as host:
        g = host.boot(until=b"Hello from")  # the guest prints on through SERVC
        uv = _machine_of(host).uv
        seen: list[str] = []
        reads: list[tuple[int, bool]] = []
        patched = []
        for engine in uv.sie_engines:
            engine.insn_filter = lambda cpu, insn: seen.append(insn.name)  # (returns None: goes on)
            for cpu in engine._hw.values():  # noqa: SLF001 - the hardware CPUs, for the assertion
                read_real = cpu.read_real

                def recording(addr: int, length: int, *, _cpu: Any = cpu, _read: Any = read_real) -> bytes:
                    reads.append((addr, _cpu._run_lock._is_owned()))  # noqa: SLF001 - held by this thread?
                    return _read(addr, length)

                cpu.read_real = recording
                patched.append(cpu)
        try:
            for _ in range(200):  # SIE exits until the guest's first SERVC
                g.step(0, 100_000)
                if "SERVC" in seen:
                    break
        finally:
            for cpu in patched:
                del cpu.read_real
        assert "SERVC" in seen, "the guest issued no SERVC: the test is void"
        assert reads, "the engine read no SCCB: the test is void"
        assert all(owned for _a, owned in reads), [(hex(a), o) for a, o in reads]
