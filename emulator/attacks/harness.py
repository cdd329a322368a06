"""What every attack of the playbook runs in: its outcome record, the demo guest booted secure, the ending."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from emulator.api import Guest, Host
from emulator.attacks import referee

__all__ = ["BROKEN", "INTACT", "Attack", "Outcome", "boot_demo", "finish", "read_as_host", "start"]

INTACT = b"secret intact: yes"
BROKEN = b"secret intact: NO"


@dataclass
class Outcome:
    """What one attack did and got."""

    name: str
    held: bool = True
    secure_bytes: int = 0
    lines: list[str] = field(default_factory=list)
    facts: dict[str, Any] = field(default_factory=dict)

    def tried(self, text: str) -> None:
        """Record what the attack tried."""
        self.lines.append(f"tried:   {text}")

    def machine(self, text: str) -> None:
        """Record what the machine answered."""
        self.lines.append(f"machine: {text}")

    def why(self, text: str) -> None:
        """Record why the secret stayed safe."""
        self.lines.append(f"safe:    {text}")

    def got(self, data: bytes) -> None:
        """The host obtained ``data``: count the secret's bytes in it."""
        n = referee.secret_bytes(data)
        self.secure_bytes += n
        if n:
            self.held = False
            self.lines.append(f"LEAK:    {n} bytes of the secret reached the host")

    def fail(self, text: str) -> None:
        """Record that the attack broke a guarantee (the secret did not hold)."""
        self.held = False
        self.lines.append(f"FAILED:  {text}")


@dataclass(frozen=True)
class Attack:
    """One playbook entry."""

    name: str
    title: str
    run: Callable[..., Outcome]  # run(seed=1): the Ultravisor's seed


def boot_demo(seed: int = 1) -> tuple[Host, Guest]:
    """The bundled demo guest booted secure on a fresh host (``seed``: the Ultravisor's)."""
    host = Host(seed=seed)
    g = host.boot()
    if not g.secure:
        host.close()
        raise RuntimeError(f"the demo guest did not boot secure: {g.secure_boot_failure}")
    return host, g


def start(name: str, seed: int) -> tuple[Outcome, Host, Guest]:
    """An attack's first beat: its outcome record, and the demo guest booted secure on a fresh host."""
    host, g = boot_demo(seed)
    return Outcome(name), host, g


def finish(o: Outcome, host: Host, g: Guest, expect: str = "intact") -> Outcome:
    """Let the guest go on, then tear it down; the outcome, for the attack to return. ``expect``: ``intact``
    (it prints secret intact: yes), ``stopped`` (the hypervisor must stop it: its page cannot be made secure
    again), ``zeroed`` (it sees its page lost)."""
    r = g.run(time_limit=20)
    o.got(g.console.split(b"digest", 1)[-1])  # what the devices printed after the announcement
    if not referee.digest_matches(g.console):
        o.fail("the referee's model of the secret does not match the guest's digest")
    if expect == "intact":
        if INTACT in g.console and r.clean:
            o.machine("the guest ran on and printed 'secret intact: yes'")
        else:
            o.fail(f"the guest did not confirm its secret ({r.detail or r.reason})")
    elif expect == "stopped":
        if BROKEN in g.console:
            o.fail("the guest ran on with a changed secret page")
        elif g.cpu_detail:
            o.machine(f"the hypervisor had to stop the guest: {g.cpu_detail}")
            o.facts["stopped"] = g.cpu_detail
        elif INTACT in g.console:
            o.machine("the guest ran on and printed 'secret intact: yes'")
        else:
            o.fail(f"unexpected end: {r.detail or r.reason}")
    elif expect == "zeroed":
        o.machine("the guest ran on: " + ("it found its secret page lost (cleared)" if BROKEN in g.console
                                          else r.reason))  # fmt: skip
    g.destroy()
    host.close()
    return o


def read_as_host(o: Outcome, g: Guest, gaddr: int, length: int = 4096) -> None:
    """Read guest storage as the host and record what it got, or the program interruption it took."""
    a = g.try_read(gaddr, length)
    if a.ok:
        o.machine(f"the host read {len(a.data)} bytes")
        o.got(a.data)
    else:
        o.machine(f"PGM {a.code:#04x} (secure-storage access), TEID {a.teid:#x}; nothing read")
        o.facts.setdefault("pgm", a.code)
