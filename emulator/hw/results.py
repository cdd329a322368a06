"""How a run of CPUs ended: per-CPU outcomes and the run's reason, verdict and counts (machine and VMs), and
what a run may be asked for (its limits)."""

from __future__ import annotations

from dataclasses import dataclass, field

__all__ = ["CpuResult", "RunResult", "run_limits_problem"]


def run_limits_problem(max_insns: int | None, time_limit: float | None) -> str | None:
    """What is wrong with a run's limits (one that is not positive), or None: the checks of every ``run``,
    of the machine and of a VM, each raising its layer's error."""
    if max_insns is not None and max_insns <= 0:
        return f"the instruction limit must be positive, not {max_insns}"
    if time_limit is not None and time_limit <= 0:
        return f"the time limit must be positive, not {time_limit}"
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
    """

    reason: str
    clean: bool
    cpus: list[CpuResult]
    instructions: int | None
    seconds: float
    exit_line: str | None = None
    detail: str = ""
    intercepts: dict[str, int] = field(default_factory=dict)

    def describe(self) -> str:
        """One line for the user."""
        return "; ".join(p for p in (self.reason, self.detail) if p)
