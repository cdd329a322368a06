"""The Ultravisor's Unpack measurement gives the digests of ``se_digests.ImageDigests`` however it is fed."""

import os
import struct
from types import SimpleNamespace

from hypothesis import given, settings
from hypothesis import strategies as st

from firmware.crypto import Secret, aes_xts_encrypt
from firmware.se_digests import ImageDigests
from firmware.uv_image import UnpackMeasurement


class _Header(SimpleNamespace):
    def decrypt_page(self, tweak: bytes, ciphertext: bytes) -> bytes:
        raise AssertionError("the measurement decrypts with its own key object")


def _header(encrypted: bool = True, key: bytes | None = None) -> _Header:
    return _Header(components_encrypted=encrypted, xts_key=Secret(key or os.urandom(64), "xts"))


def _digests(m):
    return m.ald, m.pld, m.tld, m.nep


@settings(max_examples=25, deadline=None)
@given(
    st.lists(
        st.tuples(st.integers(0, (1 << 52) - 1), st.binary(min_size=16, max_size=16), st.integers(0, 255)),
        max_size=40,
    )
)
def test_same_digests_as_image_digests(pages):
    ref, m = ImageDigests(), UnpackMeasurement(_header())
    for i, (gpage, tweak, fill) in enumerate(pages):
        page = bytes([fill]) * 4096
        ref.add_page(gpage << 12, tweak, page)
        m.add_page(gpage << 12, tweak, memoryview(page))
        if i % 7 == 3:  # reading a digest in the middle does not end or change the stream
            assert _digests(m) == _digests(ref)
    assert _digests(m) == _digests(ref)


def test_same_digests_across_the_list_flush():
    ref, m = ImageDigests(), UnpackMeasurement(_header())
    page = os.urandom(4096)
    for i in range(4100):  # 16-byte tweaks: the TLD list is hashed in pieces after 4096 entries
        tweak = struct.pack(">QQ", 40, i << 12)
        ref.add_page(i << 12, tweak, page)
        m.add_page(i << 12, tweak, page)
    assert _digests(m) == _digests(ref)


def test_decrypts_like_the_header_key_and_leaves_plain_components():
    key = os.urandom(64)
    page = os.urandom(4096)
    tweak = struct.pack(">QQ", 70, 0x3000)
    ct = aes_xts_encrypt(key, tweak, page)
    assert UnpackMeasurement(_header(key=key)).decrypt_page(tweak, memoryview(ct)) == page
    assert UnpackMeasurement(_header(encrypted=False)).decrypt_page(tweak, ct) is None
    assert "xts" not in repr(UnpackMeasurement(_header(key=key))).lower()
