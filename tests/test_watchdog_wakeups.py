"""The time-slice watchdog wakes its thread only for a deadline earlier than the one it sleeps towards, and
still stops each CPU at its own deadline."""

import threading
import time

from emulator.hw.watchdog import _Watchdog


class _CountingCondition(threading.Condition):
    def __init__(self) -> None:
        super().__init__()
        self.notified = 0

    def notify(self, n: int = 1) -> None:
        self.notified += 1
        super().notify(n)


class _FakeCpu:
    def __init__(self) -> None:
        self.stopped = threading.Event()

    def stop_soon(self) -> None:
        self.stopped.set()


def test_later_deadlines_do_not_wake_the_thread_and_an_earlier_one_does():
    wd = _Watchdog()
    cv = wd._cv = _CountingCondition()
    far, near = _FakeCpu(), _FakeCpu()
    now = time.monotonic()
    wd.arm(far, now + 3600)
    assert cv.notified == 1
    for k in range(50):  # a CPU re-arming for later times, as every run does
        wd.arm(far, now + 3600 + k)
    assert cv.notified == 1
    wd.arm(near, time.monotonic() + 0.01)  # earlier than what the thread sleeps towards: it must wake
    assert cv.notified == 2
    assert near.stopped.wait(30)
    assert not far.stopped.is_set()
    wd.disarm(near)
    wd.disarm(far)
