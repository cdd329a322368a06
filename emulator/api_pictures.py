"""The public API's pictures (``emulator.api`` re-exports them): the page map the host can know, and UV calls.

``Host.page_map``/``Guest.page_map`` list the frames that are not plain host storage as ``PageInfo``
(metadata only: state, owner tag, guest address, what a donation is for); ``Guest.draw_pages``,
``Host.draw_uv_log`` and ``draw_uv_calls`` draw them with ``emulator/console/pictures.py`` (matplotlib) as
SVG or PNG, chosen by ``format`` or the file's extension.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any

from emulator.console.providers import PageInfo

if TYPE_CHECKING:
    from emulator.api import UvLogEntry

__all__ = ["host_page_map", "slot_pages", "draw_page_map", "draw_uv_calls"]


def host_page_map(memory: Any, uv: Any, vms: Callable[[], list[Any]]) -> list[PageInfo]:
    """Every frame that is not plain host storage: ``secure`` and ``shared`` frames of a configuration (with
    the guest address), ``donated`` to the Ultravisor (and for what), ``exported`` (the host holds the
    ciphertext). Plain data; no page contents."""
    from emulator.console.hostviews import SecureHostPageMap

    return list(SecureHostPageMap(memory, uv, vms).pages())


def slot_pages(pages: Sequence[PageInfo], mso: int, size: int,
               donated: Sequence[tuple[str, int, int]]) -> list[PageInfo]:  # fmt: skip
    """The pages of one guest: its memory slot (host ``mso`` to ``mso + size``) and its donated storage."""
    lo, hi = mso >> 12, (mso + size) >> 12
    ranges = [(a >> 12, (a + n) >> 12) for _what, a, n in donated]
    return [p for p in pages if lo <= p.frame < hi or any(a <= p.frame < b for a, b in ranges)]


def draw_page_map(
    pages: Sequence[PageInfo], path: str | Path, title: str, format: str | None = None  # noqa: A002
) -> int:
    """Draw a page map (a strip of frames per region coloured by state, a legend with the counts, the runs
    with their guest addresses) into ``path``; returns the bytes written.

    Raises:
        EmulatorError: an unknown format, or the file cannot be written.
    """
    from emulator.console.pictures import page_map_figure, save

    return save(page_map_figure(pages, title), str(path), format)


def draw_uv_calls(
    entries: Sequence[UvLogEntry], path: str | Path, *, title: str = "Ultravisor calls",
    format: str | None = None,  # noqa: A002
) -> int:
    """Draw UV calls (``Host.uv_log``, ``AttestOutcome.uv_log``) as a sequence diagram host | Ultravisor |
    guest into ``path``: one arrow per call (runs of one call merged, ``xN``), the answer's cc/rc/rrc back in
    green or red; SVG or PNG by ``format`` (``"svg"``, ``"png"``) or the extension. Returns the bytes
    written.

    Raises:
        EmulatorError: an unknown format, or the file cannot be written.
    """
    from emulator.console.pictures import save, uv_sequence_figure
    from emulator.console.providers import UvCall

    calls = [UvCall(e.seq, e.caller, e.code, e.cc, e.rc, e.rrc, e.fields) for e in entries]
    return save(uv_sequence_figure(calls, title), str(path), format)
