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
    monkeypatch.setattr(S, "evp_xts", lambda key: None)  # no libcrypto: cryptography's binding
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
    monkeypatch.setattr(S, "evp_xts", lambda key: None)
    key, tweak, page = os.urandom(64), os.urandom(16), os.urandom(4096)
    x = XtsKey(key)
    assert not x._fast
    assert x.encrypt(tweak, page) == Cipher(algorithms.AES(key), modes.XTS(tweak)).encryptor().update(page)


def test_libcrypto_contexts_serve_many_units_in_both_directions():
    """The EVP shortcut (one keyed context per direction, only the tweak set per unit) is the one in place
    where libcrypto is found, and alternating directions and tweaks give the public path's bytes."""
    key = os.urandom(64)
    x = XtsKey(key)
    if x._evp is None:
        pytest.skip("no libcrypto on this host")
    assert not x._fast
    for _ in range(10):
        tweak, page = os.urandom(16), os.urandom(4096)
        ref = Cipher(algorithms.AES(key), modes.XTS(tweak)).encryptor().update(page)
        assert x.decrypt(tweak, ref) == page
        assert x.encrypt(tweak, memoryview(page)) == ref
    tweak, unit = os.urandom(16), os.urandom(8192)  # a longer unit than a page
    assert x.encrypt(tweak, unit) == Cipher(algorithms.AES(key), modes.XTS(tweak)).encryptor().update(unit)


def test_a_libcrypto_that_gives_wrong_bytes_is_refused(monkeypatch):
    import firmware.uv_storage as S
    from firmware.crypto import evp_xts

    class Wrong:
        def __init__(self, real):
            self.real = real

        def encrypt(self, tweak, data):
            out = bytearray(self.real.encrypt(tweak, data))
            out[-1] ^= 1
            return bytes(out)

        def decrypt(self, tweak, data):
            return self.real.decrypt(tweak, data)

    monkeypatch.setattr(S, "evp_xts", lambda key: (lambda r: r and Wrong(r))(evp_xts(key)))
    key, tweak, page = os.urandom(64), os.urandom(16), os.urandom(4096)
    x = XtsKey(key)
    assert x._evp is None  # refused at construction: cryptography's binding or the public path serve
    assert x.encrypt(tweak, page) == Cipher(algorithms.AES(key), modes.XTS(tweak)).encryptor().update(page)


def test_a_page_decrypted_in_place_where_libcrypto_serves():
    import ctypes

    key = os.urandom(64)
    x = XtsKey(key)
    tweak, page = os.urandom(16), os.urandom(4096)
    ct = Cipher(algorithms.AES(key), modes.XTS(tweak)).encryptor().update(page)
    buf = ctypes.create_string_buffer(ct, 4096)
    if x._evp is None:
        assert not x.decrypt_in_place(tweak, ctypes.addressof(buf)) and buf.raw == ct  # nothing done
        return
    assert x.decrypt_in_place(tweak, ctypes.addressof(buf)) and buf.raw == page


@pytest.mark.parametrize("libcrypto", [True, False])
def test_a_page_encrypted_in_place_and_decrypted_into_storage(monkeypatch, libcrypto):
    """``encrypt_in_place`` and ``decrypt_into`` (an export sealed where the page lies, an import decrypted
    from its checked copy into the frame) give the public path's bytes, through libcrypto's contexts or,
    without them, through ``encrypt``/``decrypt`` and a copy."""
    import ctypes

    import firmware.uv_storage as S

    if not libcrypto:
        monkeypatch.setattr(S, "evp_xts", lambda key: None)
    key = os.urandom(64)
    x = XtsKey(key)
    if libcrypto and x._evp is None:
        pytest.skip("no libcrypto on this host")
    assert (x._evp is None) == (not libcrypto)
    tweak, page = os.urandom(16), os.urandom(4096)
    ct = Cipher(algorithms.AES(key), modes.XTS(tweak)).encryptor().update(page)
    buf = ctypes.create_string_buffer(page, 4096)
    x.encrypt_in_place(tweak, ctypes.addressof(buf))
    assert buf.raw == ct
    out = ctypes.create_string_buffer(4096)
    x.decrypt_into(tweak, ct, ctypes.addressof(out))
    assert out.raw == page
