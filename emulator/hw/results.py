"""How a run of CPUs ended: per-CPU outcomes and the run's reason, verdict and counts (machine and VMs), and
what a run may be asked for (its limits)."""

from __future__ import annotations

import threading
from dataclasses import dataclass, field

__all__ = ["CpuResult", "RunResult", "run_limits_problem"]

#: The longest time limit a run takes: what a timer thread can wait for, capped at a year.
_MAX_SECONDS = min(threading.TIMEOUT_MAX, 365 * 24 * 3600.0)


def run_limits_problem(max_insns: int | None, time_limit: float | None) -> str | None:
    """What is wrong with a run's limits (one that is not positive), or None: the checks of every ``run``,
    of the machine and of a VM, each raising its layer's error."""
    if max_insns is not None and max_insns <= 0:
        return f"the instruction limit must be positive, not {max_insns}"
    if time_limit is not None:
        if time_limit != time_limit or time_limit in (float("inf"), float("-inf")):
            return f"the time limit must be a finite number of seconds, not {time_limit}"
        if time_limit <= 0:
            return f"the time limit must be positive, not {time_limit}"
        if time_limit > _MAX_SECONDS:
            return f"the time limit must be at most {_MAX_SECONDS:.0f} seconds (a year), not {time_limit}"
    return None


@dataclass
class CpuResult:
    """How one CPU ended."""

    address: int
    state: str  # "stopped", "disabled-wait", "check-stop", "running", "wait"
    psw: tuple[int, int]
    detail: str = ""


@dataclass
class RunResult:
    """How a run ended: the reason, per-CPU states, the verdict and the counts.

    ``intercepts`` counts the interceptions by kind when the CPUs ran as guests of the hypervisor.
    ``instructions``: those executed in a counted run (an instruction limit or a deterministic clock), None
    otherwise; a machine's run counts its own, a VM's its vCPUs' total.
    """

    reason: str
    clean: bool
    cpus: list[CpuResult]
    instructions: int | None
    seconds: float
    exit_line: str | None = None
    detail: str = ""
    intercepts: dict[str, int] = field(default_factory=dict)

    @property
    def guest_status(self) -> int | None:
        """The N of the guest's last ``EXIT: STATUS=N`` console line (kvm-unit-tests' convention: 1 is
        success, 77 a skip, any other value a failure), or None when it printed none."""
        if not self.exit_line:
            return None
        _, _, value = self.exit_line.partition("STATUS=")
        try:
            return int(value.split()[0], 0)
        except (ValueError, IndexError):
            return None

    def guest_exit_code(self) -> int:
        """The process exit code the guest asked for, as kvm-unit-tests' runner reads ``EXIT: STATUS=N``: 0
        for ``STATUS=1`` (success) or no status line, N itself otherwise (77 is a skip), 255 at most, 1 for
        0."""
        status = self.guest_status
        if status is None or status == 1:
            return 0
        return min(status, 255) if status > 0 else 1

    def describe(self) -> str:
        """One line for the user."""
        return "; ".join(p for p in (self.reason, self.detail) if p)
