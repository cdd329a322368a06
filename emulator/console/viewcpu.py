"""A secure CPU as the host view shows it: the SIE state description's PSW, none of its registers."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from emulator.console.errors import ConsoleError
from emulator.hw.cpu import wrap_address

if TYPE_CHECKING:
    from emulator.hw.cpu import Cpu

__all__ = ["HostViewCpu"]


class HostViewCpu:
    """A CPU that runs a secure guest, as the hypervisor sees it: its PSW is the state description's copy
    (not authoritative: the hypervisor's last one until the first interception after the secure IPL, then
    what the Ultravisor exposes at each exit), and its registers are the Ultravisor's, refused with how to
    see them. Everything else is the CPU's."""

    def __init__(self, cpu: Cpu, sd_psw: tuple[int, int] | None) -> None:
        self._cpu = cpu
        self._psw = sd_psw

    def __getattr__(self, name: str) -> Any:
        return getattr(self._cpu, name)

    def _refuse(self, what: str) -> ConsoleError:
        return ConsoleError(
            f"{what} of CPU {self._cpu.address} is held by the Ultravisor: the host sees only the SIE state "
            "description (view owner, with the machine's debug capability, shows the secure CPU)"
        )

    @property
    def psw(self) -> tuple[int, int]:
        """The state description's PSW."""
        if self._psw is None:
            raise self._refuse("the PSW")
        return self._psw

    @property
    def pc(self) -> int:
        """The state description's instruction address."""
        return self.psw[1]

    def wrap(self, addr: int) -> int:
        """Wrap an address to the addressing mode of the state description's PSW."""
        return wrap_address(self.psw[0], addr)

    def gpr(self, i: int) -> int:
        """Refused: the Ultravisor's."""
        raise self._refuse(f"r{i}")

    def gprs(self) -> list[int]:
        """Refused: the Ultravisor's."""
        raise self._refuse("the general registers")

    def cr(self, i: int) -> int:
        """Refused: the Ultravisor's."""
        raise self._refuse(f"cr{i}")

    def ar(self, i: int) -> int:
        """Refused: the Ultravisor's."""
        raise self._refuse(f"a{i}")

    def fpr(self, i: int) -> int:
        """Refused: the Ultravisor's."""
        raise self._refuse(f"f{i}")

    def fpc(self) -> int:
        """Refused: the Ultravisor's."""
        raise self._refuse("the FPC")
