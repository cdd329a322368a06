"""A virtio-like mailbox behind DIAGNOSE 0x500 (device 3): a secure guest's channel to a host service.

It is the way a guest agent reaches its relying party over the network.

One request is a descriptor chain in the ``virtio.py`` queue layout: readable buffers (the message, in
pages the guest shared with Set Shared Access) followed by one device-writable buffer (the reply). The
device hands the message bytes to ``handler(message) -> reply`` on the host and writes the reply into
the writable buffer; the used-ring length is the number of reply bytes. A reply longer than the buffer,
or a handler failure, is answered with an error reply ``u32 status 0xFFFFFFFF, u32 length, text``.

The host is untrusted here like everywhere: what crosses the mailbox must be protected end to end.
"""

from __future__ import annotations

import logging
import struct
from collections.abc import Callable
from typing import TYPE_CHECKING, Final

from emulator.hypervisor.virtio import _QueueDevice

if TYPE_CHECKING:
    from emulator.hypervisor.kvm import Vm

__all__ = ["MailboxDevice", "DEVICE_MAILBOX", "MAILBOX_ERROR"]

log = logging.getLogger("emulator.hypervisor.mailbox")

DEVICE_MAILBOX: Final = 3
MAILBOX_ERROR: Final = 0xFFFFFFFF
MAX_MESSAGE: Final = 1 << 20


class MailboxDevice(_QueueDevice):
    """The mailbox.

    Args:
        handler: called with each message; returns the reply bytes.
    """

    device_id = DEVICE_MAILBOX

    def __init__(self, handler: Callable[[bytes], bytes]) -> None:
        super().__init__()
        self._handler = handler
        self.messages = 0

    @staticmethod
    def _error(text: str) -> bytes:
        raw = text.encode()[:1024]
        return struct.pack(">II", MAILBOX_ERROR, len(raw)) + raw

    def request(self, vm: Vm, chain: list[tuple[int, int, bool]]) -> int:
        """Gather the readable buffers, call the handler, scatter the reply into the writable one."""
        reads = [(a, n) for a, n, w in chain if not w]
        writes = [(a, n) for a, n, w in chain if w]
        if not reads or len(writes) != 1 or chain[-1][2] is False:
            self.errors.append("malformed mailbox chain (message buffers, then one reply buffer)")
            return 0
        if sum(n for _, n in reads) > MAX_MESSAGE:
            self.errors.append("mailbox message too large")
            return 0
        message = b"".join(vm.memory.read(a, n) for a, n in reads)
        self.messages += 1
        try:
            reply = self._handler(message)
        except Exception as e:  # noqa: BLE001 - a host service failure becomes an error reply
            log.info("mailbox handler failed: %s", e)
            reply = self._error(f"host service failed: {e}")
        addr, room = writes[0]
        if len(reply) > room:
            reply = self._error(f"reply of {len(reply)} bytes does not fit the {room}-byte buffer")
        vm.memory.write(addr, reply)
        return len(reply)
