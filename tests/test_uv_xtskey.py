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
