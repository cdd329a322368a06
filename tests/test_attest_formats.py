"""Attestation and add-secret request formats: known answers from s390-tools, the measurement formula, round
trips, tampering."""

from __future__ import annotations

import hmac
import struct

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from firmware import attestation as A
from firmware import crypto as c

# --- Known-answer vectors: ibm-s390-linux/s390-tools rust/pv (MIT licence), public test data.
# keys/private_cust.bin (customer P-521 scalar) and the host key of keys/host.pem.crt (X||Y): the same
# vectors tests/test_se_header.py uses.
KAT_CUST = c.p521_key_from_scalar(int("01" + "88" * 64, 16))
KAT_HOST = c.ec_pub_from_coords(
    bytes.fromhex(
        "00000000000000000000000000000176881cd84b8b6de7123c7e900edf78e7f7b684999146b1263ba8b86c8447f08ab6"
        "d469c2b128ed9e1c35015805acd3d30233d39122f7e2f8aa1c2b147b7883b406000000000000000000000000000000c3"
        "4556c25cf92f29ce66bd44114d6b7b3c78e13a3f90bdb90040f6876e5262f778a61a937d1b34802eb257e34e0672dd5f"
        "2a347addaa282035092a70c35c2e7973"
    )
)
# tests/assets/exp/arcb.bin: flags nonce + image PHKH + attestation PHKH, ARPK 0x17*32, IV 0x55*12,
# measurement key 0x77*64, nonce 0xab*16 (rust/pv/src/uvattest/arcb.rs, test `arcb`).
KAT_ARCB = bytes.fromhex(
    "000000000000000000000100000001905555555555555555555555550000000000000000000000010000000000000050"
    "70000000000000000000000100000000000000000000000000000000000000c75d34f91652db457b0b209c46a491a44e"
    "e2b16e23c2d8daf116678a62f24ce332c5995f08456b66b16dd55a92c507f1e31af78c64a82e7a541b15135015f20286"
    "000000000000000000000000000001408058a7f1a5c35097533a02a93879e7de67ba280bce8365ec94b2b908f589c3a9"
    "98d8be1e6307d74ae01adc46825ff6bb6fa05c1147cfe2ccf4a24f3d833dda70415c25a5d19c381e619733e1c1b7fbd8"
    "8bdd1c31d882d5ade04b97043c5010f0c07743c154ac20653815af37b196ad1ef8e847690c5c1ef985291df18e6870d8"
    "a038978d7ccb85b5b32bd40c15c6353f2d8940a4e4730fa16daab4e939af041f697374554dbcdbd10bc43c798fd64682"
    "6b6e6c256bd982e7ef94467f7731ec45afb6da9075a0d616a85004fb330f1b76444c6672520a9121d7a64ae783f78b51"
    "92cff0ab3e9131bc2984efb24b699cb4"
)
ARPK = c.Secret(b"\x17" * 32)
# tests/assets/exp/asrcb/*: tags 1/2/3/4, CUID 0x42*16, same keys, ARPK and IV. Only the header and
# the part after the key slot are given; everything in between is rebuilt from the inputs below.
TAGS = A.BootHdrTags(b"\x01" * 64, b"\x02" * 64, b"\x03" * 64, b"\x04" * 16)
CUID = b"\x42" * 16
KAT_ASRCB = {
    "assoc_derived_default_cuid_one": (
        "61737263624d000000000100000005885555555555555555555555550000000000000000000000010000000000000040",
        "0000000200000020000000000000000070dc758d711fef605b1b1b1774a2a4ab701020ea4b2cb399ebbdd5a3971c76a9"
        "4bef26c2821569c70bccd28f5fc962790f1512332bdabdb76da25a1fe9b020e4abfb974ccd4225f33706da935480f368"
        "129db4d6613f8f41aee466829287087240b8cb4ecd5090c3e68b81e62cd5c5d0",
    ),
    "null_none_dump_cuid_one": (
        "61737263624d000000000100000005485555555555555555555555550000000000000000000000010000000000000020",
        "000000010000000000000000000000005afe37d3930478d61addc39e4ed873681e0403223acbaca67cb34b0ef8a131f5"
        "af18671392f569ca610176e2c1606889",
    ),
}
# rust/pv/src/uvattest/attest.rs tests: key 0x41*64, tags 1/2/3/4, CUID 5, user 7*256, nonce 8*16, add 9*128.
M_KEY = b"\x41" * 64
M_CUID = b"\x05" * 16
KAT_MEASUREMENTS = {
    (True, True, True): "88794c62cce7bcf26216deb3f48f13fea6374b6d7e35bcc5c2ce68121db6f45dfc8c17185646354940"
    "8bf8e7d1aca11efad0a878af97dc9e21a1fc2a32f3a675",
    (True, False, True): "fbd4f738a390edd947cd4f11af3a2f3bab2fdf8bf89bf81beb495117f4382cf42f0730c8c7d9e3ca27"
    "fb25adfceb21224f57fdb398dcf41a83c146e6a23db760",
    (False, False, True): "63671fbf295036eb1023ea71f7182e7d6343dc7b2da584e824d0a7d198ab9cded756c93b39050ffb"
    "764555b01f88cb82017a6a15c7e0bafc6005f1e4f78aa124",
    (False, False, False): "c5c34c93835d1ec23f5c2d778dfa20129b11b305601742cb2f38e0ed9894dcdb73fc8695ab6a8d"
    "bad0744073ddc81a5eaafa52e4a15af8deb8d761091922847f",
}
# tests/assets/exp/exchange.bin header: a response with ARCB 16 x 0x11, measurement 64 x 0x12,
# additional 32 x 0x13, user data 256 x 0x13, CUID 16 x 0x14.
KAT_EXCHANGE_HEAD = bytes.fromhex(
    "707661747465737400000100000001c0000000000000000000000010000000400000004000000050000000200000009000"
    "000100000000b000000010000001b0"
)


def kat_arcb(**kw) -> A.BuiltRequest:
    args = dict(
        rng=c.DeterministicRng("unused"), paf=A.PAF_NONCE | A.PAF_IMAGE_PHKH | A.PAF_ATTEST_PHKH,
        measurement_key=c.Secret(b"\x77" * 64), nonce=b"\xab" * 16, protection_key=ARPK,
        customer_key=KAT_CUST, iv=b"\x55" * 12,
    )  # fmt: skip
    args.update(kw)
    return A.build_arcb([KAT_HOST], **args)


# ------------------------------------------------------------------------------------------------ KATs


@pytest.mark.parametrize("key", sorted(KAT_MEASUREMENTS))
def test_measurement_matches_s390_tools_vectors(key) -> None:
    user, nonce, add = key
    got = A.measurement(
        M_KEY, TAGS, M_CUID, b"\x07" * 256 if user else b"", b"\x08" * 16 if nonce else None,
        b"\x09" * 128 if add else b"",
    )  # fmt: skip
    assert got.hex() == KAT_MEASUREMENTS[key]


def test_measurement_items_follow_the_spec_formula_field_by_field() -> None:
    items = A.measurement_items(TAGS, M_CUID, b"ud", b"\x08" * 16, b"\x09" * 3)
    assert items[:64] == TAGS.pld and items[64:128] == TAGS.ald and items[128:192] == TAGS.tld
    assert items[192:208] == TAGS.tag and items[208:224] == M_CUID
    assert items[224:232] == struct.pack(">HHI", 2, 0, 3)
    assert items[232:] == b"ud" + b"\x08" * 16 + b"\x09" * 3
    # independent HMAC from the standard library agrees
    assert A.measurement(M_KEY, TAGS, M_CUID, b"ud", b"\x08" * 16, b"\x09" * 3) == hmac.digest(
        M_KEY, items, "sha512"
    )


def test_arcb_reproduces_s390_tools_exp_arcb_bin() -> None:
    assert kat_arcb().data == KAT_ARCB
    arcb = A.parse_arcb(KAT_ARCB)
    assert arcb.header.rql == 0x190 == A.arcb_size(1) and arcb.header.sea == 80 and arcb.header.nks == 1
    assert arcb.paf == 0x7000000000000000 and arcb.auth.mai == A.MAI_HMAC_SHA512
    opened = A.open_arcb(KAT_ARCB, ARPK)
    assert opened.measurement_key.expose() == b"\x77" * 64 and opened.nonce == b"\xab" * 16


@pytest.mark.parametrize("name", sorted(KAT_ASRCB))
def test_asrcb_reproduces_s390_tools_assets(name: str) -> None:
    head, tail = (bytes.fromhex(x) for x in KAT_ASRCB[name])
    if name.startswith("assoc"):
        ext = A.extension_secret_from_cck(bytes(32), TAGS.tag)  # "derived" from a zero CCK
        kw = dict(
            secret_type=0x02,
            value=b"\x11" * 32,
            secret_id=A.secret_id("add_secret_request"),
            extension_secret=ext,
        )
    else:
        kw = dict(flags=A.ASRCB_FLAG_DISABLE_DUMP)
    got = A.build_asrcb(
        [KAT_HOST], TAGS, rng=c.DeterministicRng("unused"), cuid=CUID, protection_key=ARPK,
        customer_key=KAT_CUST, iv=b"\x55" * 12, **kw,
    ).data  # fmt: skip
    flags = A.ASRCB_FLAG_DISABLE_DUMP if name.endswith("dump_cuid_one") else 0
    middle = struct.pack(">Q", flags) + TAGS.pack() + CUID + bytes(256) + bytes(512) + KAT_ARCB[0x40:0x130]
    assert got == head + middle + tail
    parsed = A.parse_asrcb(got)
    assert parsed.cuid == CUID and parsed.tags == TAGS and parsed.flags == flags
    assert parsed.tag == tail[-16:]


def test_exchange_file_matches_s390_tools_exchange_bin() -> None:
    blobs = (b"\x11" * 16, b"\x12" * 64, b"\x13" * 32, b"\x13" * 256, b"\x14" * 16)
    data = A.exchange_response(*blobs)
    assert data[:0x40] == KAT_EXCHANGE_HEAD and len(data) == 448
    ex = A.parse_exchange(data)
    assert (ex.arcb, ex.measurement, ex.additional, ex.user, ex.cuid) == blobs and ex.is_response


# ------------------------------------------------------------------------------------------------ behaviour


def test_request_exchange_file_carries_expected_sizes_only() -> None:
    data = A.exchange_request(KAT_ARCB, 64, 64)
    ex = A.parse_exchange(data)
    assert (
        ex.arcb == KAT_ARCB
        and ex.measurement is None
        and ex.exp_measurement == 64
        and ex.exp_additional == 64
    )
    assert not ex.is_response


@pytest.mark.parametrize(
    "mutate, msg",
    [
        (lambda d: b"PVATTEST" + d[8:], "magic"),
        (lambda d: d[:8] + struct.pack(">I", 0x200) + d[12:], "version"),
        (lambda d: d[:12] + struct.pack(">I", len(d) + 1) + d[16:], "shorter than its size"),
        (lambda d: d[:0x18] + struct.pack(">II", 16, 0x1000) + d[0x20:], "outside"),
        (lambda d: d[:0x30], "shorter than its 64-byte header"),
    ],
)
def test_malformed_exchange_files_are_refused_with_the_reason(mutate, msg) -> None:
    with pytest.raises(A.RequestFormatError, match=msg):
        A.parse_exchange(mutate(A.exchange_response(b"a" * 16, b"m" * 64, None, None, b"c" * 16)))


def test_arcb_tampering_breaks_authentication_everywhere() -> None:
    arcb = kat_arcb().data
    for off in (0x10, 0x30, 0x3C, 0x41, 0xE0 + 40, 0x130, len(arcb) - 1):
        bad = arcb[:off] + bytes([arcb[off] ^ 1]) + arcb[off + 1 :]
        with pytest.raises((c.CryptoError, A.RequestFormatError)):
            A.open_arcb(bad, ARPK)
    with pytest.raises(c.CryptoError):
        A.open_arcb(arcb, c.Secret(b"\x18" * 32))


def test_arcb_without_nonce_and_the_host_key_side() -> None:
    host = c.generate_p521_key(c.DeterministicRng("host"))
    other = c.generate_p521_key(c.DeterministicRng("other"))
    b = A.build_arcb(
        [other.public_key(), host.public_key()], rng=c.DeterministicRng("r"), paf=A.PAF_IMAGE_PHKH
    )
    arcb = A.parse_arcb(b.data)
    assert arcb.header.sea == 64 and arcb.header.nks == 2 and len(b.data) == A.arcb_size(2, nonce=False)
    got = A.open_arcb_with_host_key(arcb, [host])
    assert got is not None
    secrets, h = got
    assert h == c.phkh(host) and secrets.nonce is None
    assert secrets.measurement_key == A.open_arcb(b.data, b.protection_key).measurement_key
    assert A.open_arcb_with_host_key(arcb, [c.generate_p521_key(c.DeterministicRng("x"))]) is None


def test_builder_refuses_what_the_format_cannot_express() -> None:
    rng = c.DeterministicRng("b")
    with pytest.raises(A.RequestFormatError, match="at least one host key"):
        A.build_arcb([], rng=rng)
    # a host key given twice: two slots, as s390-tools' pvattest and pvsecret 2.43 make them (not an error)
    twice = A.build_arcb([KAT_HOST, KAT_HOST], rng=rng)
    slots = A.parse_arcb(twice.data).key_slots
    assert len(slots) == 2 and slots[0].phkh == slots[1].phkh == c.phkh(KAT_HOST)
    with pytest.raises(A.RequestFormatError, match="bit 1"):
        A.build_arcb([KAT_HOST], rng=rng, paf=0, nonce=bytes(16))
    with pytest.raises(A.RequestFormatError, match="cannot be 31 bytes"):
        A.build_asrcb([KAT_HOST], TAGS, rng=rng, secret_type=0x06, value=bytes(31), secret_id=bytes(32))
    with pytest.raises(A.RequestFormatError, match="needs a 32-byte ID"):
        A.build_asrcb([KAT_HOST], TAGS, rng=rng, secret_type=0x06, value=bytes(32))


def test_additional_data_sizes_and_split() -> None:
    paf = A.PAF_NONCE | A.PAF_ATTEST_PHKH | A.PAF_FIRMWARE_STATE
    assert A.additional_data_size(paf) == 32 + 320
    assert A.additional_data_size(A.PAF_SUPPORTED) == 32 + 32 + 64 + 320
    data = b"a" * 32 + b"f" * 320 + b"zz"
    assert A.split_additional_data(paf, data) == {
        "attestation_phkh": b"a" * 32,
        "firmware_state": b"f" * 320,
        "unrecognized": b"zz",
    }
    with pytest.raises(A.RequestFormatError, match="firmware_state"):
        A.split_additional_data(paf, data[:100])


def test_secret_store_hash_and_plaintext_encoding() -> None:
    t1, t2 = b"\x01" * 16, b"\x02" * 16
    assert A.secret_store_hash([t1, t2], True) == c.sha512(t1 + t2 + b"\x01")
    assert A.secret_store_hash([], False) == c.sha512(b"\x00")
    v = A.plaintext_secret(b"hello")
    assert v == b"\x00\x05hello" + bytes(9) and A.plaintext_from_secret(v) == b"hello"
    assert A.secret_id("disk-key") == c.sha256(b"disk-key")
    assert A.secret_id("k", hashed=False) == b"k" + bytes(31)
    # --use-name as pvsecret 2.43: at most 31 bytes of the name, then NULs (a 32nd byte and more are cut)
    assert A.secret_id("b" * 32, hashed=False) == A.secret_id("b" * 40, hashed=False) == b"b" * 31 + b"\0"


@settings(max_examples=40, deadline=None)
@given(
    user=st.binary(max_size=256),
    nonce=st.one_of(st.none(), st.binary(min_size=16, max_size=16)),
    add=st.binary(max_size=600),
)
def test_measurement_items_length_formula(user: bytes, nonce, add: bytes) -> None:
    items = A.measurement_items(TAGS, M_CUID, user, nonce, add)
    assert len(items) == 208 + 16 + 8 + len(user) + (16 if nonce else 0) + len(add)
    assert struct.unpack_from(">HHI", items, 224) == (len(user), 0, len(add))


@settings(max_examples=10, deadline=None)
@given(secret=st.binary(min_size=0, max_size=300), seed=st.integers(0, 1 << 32))
def test_asrcb_round_trip_plaintext_secrets(secret: bytes, seed: int) -> None:
    host = c.generate_p521_key(c.DeterministicRng("asrcb host"))
    value = A.plaintext_secret(secret)
    b = A.build_asrcb(
        [host.public_key()], TAGS, rng=c.DeterministicRng(seed), secret_type=0x03, value=value,
        secret_id=A.secret_id("p"), cuid=CUID,
    )  # fmt: skip
    parsed = A.parse_asrcb(b.data)
    assert parsed.secret_header.type == 0x03 and parsed.secret_header.length == len(value)
    got = A.unwrap_request_key(parsed.key_slots, parsed.customer_pub, [host])
    assert got is not None and got[0] == b.protection_key
    opened = A.open_asrcb(parsed, got[0])
    assert A.plaintext_from_secret(opened.value.expose()) == secret
