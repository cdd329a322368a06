"""BackgroundSha512 (the Unpack PLD): the SHA-512 of exactly the bytes fed, in order, however they are cut."""

import hashlib
import os

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from firmware import crypto
from firmware.crypto import BackgroundSha512


@pytest.fixture
def small_chunks(monkeypatch):
    """Chunks of 64 bytes, two in flight: every path (ship, wait for the oldest, reuse, direct) runs.
    (The same settings for every example: the fixture need not be reset between them.)"""
    monkeypatch.setattr(crypto, "_BG_CHUNK", 64)
    monkeypatch.setattr(crypto, "_BG_IN_FLIGHT", 2)


@settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(pieces=st.lists(st.binary(max_size=200), max_size=40), peek=st.integers(0, 40))
def test_digest_of_the_stream_however_it_is_cut(small_chunks, pieces, peek):
    ref, h = hashlib.sha512(), BackgroundSha512()
    for i, p in enumerate(pieces):
        ref.update(p)
        h.update(memoryview(p))
        if i == peek:  # a digest in the middle does not end or change the stream
            assert h.digest() == ref.digest()
    assert h.digest() == ref.digest()
    assert h.digest() == ref.digest()


def test_the_callers_buffer_may_change_right_after_update(small_chunks):
    """Unpack decrypts the page in place just after measuring it: what was fed is what is hashed."""
    buf = bytearray(48)
    ref, h = hashlib.sha512(), BackgroundSha512()
    for i in range(500):
        buf[:] = os.urandom(48)
        ref.update(buf)
        h.update(memoryview(buf))
        buf[:] = bytes(48)
    assert h.digest() == ref.digest()


def test_real_chunk_size_with_pages():
    page = bytearray(4096)
    ref, h = hashlib.sha512(), BackgroundSha512()
    for i in range(1500):  # about six 1 MiB chunks: the in-flight limit and buffer reuse at real sizes
        page[:8] = i.to_bytes(8, "big")
        ref.update(page)
        h.update(page)
    assert h.digest() == ref.digest()


def test_hashes_on_the_callers_thread_when_no_worker_takes_it(small_chunks, monkeypatch):
    monkeypatch.setattr(crypto, "_bg_submit", lambda fn, data: None)
    data = os.urandom(1000)
    h = BackgroundSha512()
    for i in range(0, 1000, 30):
        h.update(data[i : i + 30])
    assert h.digest() == hashlib.sha512(data).digest()
