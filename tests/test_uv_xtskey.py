"""``uv_storage.XtsKey``: one validated cipher for many pages gives exactly ``cryptography``'s XTS."""

import os

import pytest
from cryptography.hazmat.primitives.ciphers import Cipher, algorithms, modes

from firmware.uv_storage import XtsKey


def test_pages_match_a_fresh_cipher_per_page():
    key = os.urandom(64)
    x = XtsKey(key)
    for i in range(20):
        tweak, page = os.urandom(16), os.urandom(4096)
        ref = Cipher(algorithms.AES(key), modes.XTS(tweak)).encryptor().update(page)
        assert x.encrypt(tweak, page) == ref
        assert x.decrypt(tweak, memoryview(ref)) == page


def test_refused_keys_and_redacted_repr():
    with pytest.raises(ValueError):
        XtsKey(bytes(32) * 2)  # equal halves
    with pytest.raises(ValueError):
        XtsKey(os.urandom(20))
    key = os.urandom(64)
    assert key.hex() not in repr(XtsKey(key)) and "redacted" in repr(XtsKey(key))


def test_fast_path_is_checked_and_the_public_path_is_the_fallback(monkeypatch):
    import firmware.uv_storage as S

    key = os.urandom(64)
    tweak, page = os.urandom(16), os.urandom(4096)
    ref = Cipher(algorithms.AES(key), modes.XTS(tweak)).encryptor().update(page)
    fast = XtsKey(key)
    assert fast._fast  # this cryptography passes the known-answer check
    monkeypatch.setattr(S, "_rust_openssl", None)  # no binding: public Cipher per unit
    slow = XtsKey(key)
    assert not slow._fast
    assert slow.encrypt(tweak, page) == fast.encrypt(tweak, page) == ref
    assert slow.decrypt(tweak, ref) == fast.decrypt(tweak, ref) == page


def test_a_shortcut_that_gives_wrong_bytes_is_refused(monkeypatch):
    import types

    import firmware.uv_storage as S

    real = S._rust_openssl.ciphers

    class Wrong:
        def __init__(self, ctx):
            self.ctx = ctx

        def update(self, data):
            out = bytearray(self.ctx.update(data))
            out[0] ^= 1
            return bytes(out)

    fake = types.SimpleNamespace(
        ciphers=types.SimpleNamespace(
            create_encryption_ctx=lambda a, m: Wrong(real.create_encryption_ctx(a, m)),
            create_decryption_ctx=real.create_decryption_ctx,
        )
    )
    monkeypatch.setattr(S, "_rust_openssl", fake)
    key, tweak, page = os.urandom(64), os.urandom(16), os.urandom(4096)
    x = XtsKey(key)
    assert not x._fast
    assert x.encrypt(tweak, page) == Cipher(algorithms.AES(key), modes.XTS(tweak)).encryptor().update(page)
