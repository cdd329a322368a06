"""How a run of CPUs ended: per-CPU outcomes and the run's reason, verdict and counts (machine and VMs)."""

from __future__ import annotations

from dataclasses import dataclass, field

__all__ = ["CpuResult", "RunResult"]


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
