"""The secret store through the Ultravisor: Add, List, Lock and Retrieve Secret with their rcs, binding, the
store hash, reset."""

from __future__ import annotations

import dataclasses
import struct
from pathlib import Path

from hypothesis import given, settings
from hypothesis import strategies as st

from emulator.attest.local import LocalSecureGuest
from emulator.image.pvimg import build_image, parse_image
from firmware import attestation as A
from firmware import crypto as c
from firmware.machine_identity import MachineIdentity
from firmware.se_header import PCF_ALLOW_DUMPING, PCF_DEFAULT, SCF_CCK_EXTENSION_SECRET, SCF_CCK_UPDATE
from firmware.uv_codes import QUERY_VALUES

KERNEL = (Path(__file__).resolve().parents[1] / "guests" / "images" / "secure_demo.elf").read_bytes()
DEMO = MachineIdentity.bundled("zuv-demo")
OTHER = MachineIdentity.bundled("zuv-other")
CCK = c.Secret(b"\xcc" * 32, "cck")


def make_image(seed: str = "secrets image", **kw) -> bytes:
    return build_image(
        kernel=KERNEL, host_keys=[DEMO.public_key], rng=c.DeterministicRng(seed), cck=CCK, **kw
    ).data


IMAGE = make_image()
TAGS = A.BootHdrTags.from_header(parse_image(IMAGE).header)


def request(
    tags: A.BootHdrTags = TAGS, stype: int = 0x06, value: bytes = b"K" * 32, name: str = "disk-key", **kw
) -> bytes:
    args = dict(
        rng=c.DeterministicRng(f"{name}{stype}{kw}"), secret_type=stype, value=value,
        secret_id=None if stype in (0x01, 0x16) else A.secret_id(name),
    )  # fmt: skip
    args.update(kw)
    keys = args.pop("keys", [DEMO.public_key])
    return A.build_asrcb(keys, tags, **args).data


class Store:
    """A guest and its secret UVCs."""

    def __init__(self, image: bytes = IMAGE, **kw) -> None:
        self.g = LocalSecureGuest("zuv-demo", image, seed=11, **kw)
        self.page = self.g.alloc(4096, 4096)
        self.buf = self.g.alloc(8192)

    def add(self, data: bytes) -> tuple[int, int]:
        b = self.g.uvc("add_secret", addr=self.g.put(data))
        return b.header.rc, b.header.rrc

    def list(self, start: int = 0) -> tuple[int, int, int, int, list[tuple[int, int, int, bytes]]]:
        b = self.g.uvc("list_secrets", start_idx=start, list_addr=self.page)
        page = self.g.read(self.page, 4096)
        n, total, nxt = struct.unpack_from(">HHH", page, 0)
        entries = [struct.unpack_from(">HHIQ32s", page, 0x10 + 0x30 * i) for i in range(n)]
        return b.header.rc, n, total, nxt, [(i, t, ln, sid) for i, t, ln, _r, sid in entries]

    def retrieve(self, idx: int, size: int = 8192, addr: int | None = None) -> tuple[int, bytes]:
        b = self.g.uvc(
            "retr_secret", secret_idx=idx, buf_size=size, buf_addr=self.buf if addr is None else addr
        )
        return b.header.rc, self.g.read(self.buf, 8192)

    def lock(self) -> int:
        return int(self.g.uvc("lock_secrets").header.rc)

    @property
    def cfg(self):
        return self.g.uv.secure_config(self.g.setup.handle)


def test_add_list_retrieve_round_trip() -> None:
    s = Store()
    assert s.retrieve(0)[0] == 0x010F  # store empty
    assert s.add(request()) == (0x0001, 0)
    plain = A.plaintext_secret(b"the secret data")
    assert s.add(request(stype=0x03, value=plain, name="note")) == (0x0001, 0)
    assert s.add(request(stype=0x02, value=b"a" * 32, name="assoc")) == (0x0001, 0)
    assert s.add(request(stype=0x01, value=b"")) == (0x0001, 0)  # meta: counted, not listed
    rc, n, total, nxt, entries = s.list()
    assert (rc, n, total, nxt) == (0x0001, 3, 3, 0)
    assert entries == [
        (0, 0x06, 32, A.secret_id("disk-key")), (1, 0x03, len(plain), A.secret_id("note")),
        (2, 0x02, 32, A.secret_id("assoc")),
    ]  # fmt: skip
    rc, buf = s.retrieve(0)
    assert rc == 0x0001 and buf[:32] == b"K" * 32 and not any(buf[32:])
    rc, buf = s.retrieve(1)
    assert rc == 0x0001 and A.plaintext_from_secret(buf[: len(plain)]) == b"the secret data"
    assert s.retrieve(2)[0] == 0x0111  # association secrets are not retrievable
    assert s.retrieve(9)[0] == 0x0110
    assert s.retrieve(0, size=31)[0] == 0x0109
    assert s.retrieve(0, addr=s.g.setup.msl + 0x1000)[0] == 0x0102
    assert s.list(start=1)[1:4] == (2, 3, 0)


def test_lock_and_the_secret_store_hash() -> None:
    s = Store()
    r1, r2 = request(), request(stype=0x01, value=b"")
    assert s.add(r1)[0] == s.add(r2)[0] == 0x0001
    tags = [A.parse_asrcb(r).tag for r in (r1, r2)]
    from firmware import uv_secrets

    assert uv_secrets.store_hash(s.cfg) == A.secret_store_hash(tags, False)
    assert s.lock() == 0x0001
    assert s.lock() == 0x0102
    assert s.add(request(name="late"))[0] == 0x0102
    assert uv_secrets.store_hash(s.cfg) == A.secret_store_hash(tags, True)
    # the attestation additional data carries the same hash
    req = A.build_arcb([DEMO.public_key], rng=c.DeterministicRng("a"), paf=A.PAF_SECRET_STORE_HASH)
    meas, add = s.g.alloc(64), s.g.alloc(64)
    blk = s.g.uvc(
        "retr_attest",
        arcb_addr=s.g.put(req.data),
        meas_len=64,
        meas_addr=meas,
        add_data_len=64,
        add_data_addr=add,
    )
    assert blk.header.rc == 0x0001 and s.g.read(add, 64) == A.secret_store_hash(tags, True)


def test_binding_to_image_instance_and_extension_secret() -> None:
    s = Store()
    other_tags = dataclasses.replace(TAGS, tag=bytes(16))
    assert s.add(request(tags=other_tags)) == (0x0101, 0x0001)
    assert s.add(request(cuid=b"\x01" * 16)) == (0x0101, 0x0002)
    # fixes the extension secret
    assert s.add(request(cuid=s.g.cuid, extension_secret=b"E" * 32)) == (0x0001, 0)
    assert s.add(request(name="two")) == (0x0101, 0x0003)  # zero extension secret now differs
    assert s.add(request(name="two", extension_secret=b"E" * 32)) == (0x0001, 0)
    assert s.add(request(stype=0x16, value=b"n" * 32, extension_secret=b"E" * 32)) == (0x0101, 0x0004)


def test_cck_derived_extension_secret_and_cck_update() -> None:
    img = make_image("scf image", scf=SCF_CCK_EXTENSION_SECRET | SCF_CCK_UPDATE)
    tags = A.BootHdrTags.from_header(parse_image(img).header)
    s = Store(img)
    assert s.add(request(tags=tags)) == (0x0101, 0x0003)  # the UV derives it from the CCK itself
    derived = A.extension_secret_from_cck(CCK, tags.tag)
    assert s.add(request(tags=tags, extension_secret=derived)) == (0x0001, 0)
    new_cck = b"\x42" * 32
    assert s.add(request(tags=tags, stype=0x16, value=new_cck, extension_secret=derived)) == (0x0001, 0)
    assert s.add(request(tags=tags, name="b", extension_secret=derived)) == (0x0101, 0x0003)
    renewed = A.extension_secret_from_cck(new_cck, tags.tag)
    assert s.add(request(tags=tags, name="b", extension_secret=renewed)) == (0x0001, 0)
    assert s.list()[2] == 2  # update-CCK secrets are not listed


def test_structural_rcs_in_order() -> None:
    s = Store()
    good = request()
    patched = lambda off, fmt, val: good[:off] + struct.pack(fmt, val) + good[off + struct.calcsize(fmt) :]  # noqa: E731
    assert s.add(patched(0, ">6s", b"xsrcbM")) == (0x0104, 0)
    assert s.add(patched(6, ">H", 5)) == (0x0104, 0)  # user-data type
    assert s.add(patched(8, ">I", 0x200)) == (0x0104, 0)
    assert s.add(patched(0x27, ">B", 0)) == (0x0106, 0)
    assert s.add(patched(0x0C, ">I", 0x100)) == (0x0105, 0)
    assert s.add(patched(0x30, ">Q", 1)) == (0x0107, 0)
    assert s.add(patched(0x508 + 2, ">H", 0x0B)) == (0x0109, 0)
    assert s.add(patched(0x508 + 4, ">I", 31)) == (0x010A, 0)
    assert s.add(patched(0x2C, ">I", 33)) == (0x0105, 0)
    assert s.add(good[:-1] + bytes([good[-1] ^ 1])) == (0x0108, 0)
    assert s.add(request(keys=[OTHER.public_key])) == (0x0108, 0)
    b = s.g.uvc("add_secret", addr=s.g.setup.msl + 0x1000)
    assert b.header.rc == 0x0103
    assert s.add(good) == (0x0001, 0)
    # the same ID again is added beside it, as the real UV does (s390-tools' pvsecret refuses it in the tool
    # only, unless --force): two entries, two indices
    assert s.add(good) == (0x0001, 0)
    rc, n, total, _nxt, entries = s.list()
    assert (rc, n, total) == (0x0001, 2, 2) and entries[0][0] == 0 and entries[1][0] == 1
    assert entries[0][3] == entries[1][3]


def test_store_full_and_list_continuation() -> None:
    q = dataclasses.replace(QUERY_VALUES, max_retr_secrets=90)
    s = Store(query=q)
    for i in range(86):
        assert s.add(request(name=f"k{i}"))[0] == 0x0001
    rc, n, total, nxt, entries = s.list()
    assert (rc, n, total, nxt) == (0x0100, 85, 86, 85)
    assert s.list(start=nxt)[:4] == (0x0001, 1, 86, 0)
    small = Store()
    for i in range(QUERY_VALUES.max_retr_secrets):
        assert small.add(request(name=f"s{i}"))[0] == 0x0001
    assert small.add(request(name="one too many")) == (0x010B, 0)
    assert small.add(request(stype=0x02, value=b"a" * 32, name="assoc")) == (0x0001, 0)  # separate limit


def test_prepare_reset_clears_the_store_and_the_lock() -> None:
    s = Store()
    assert s.add(request())[0] == 0x0001 and s.lock() == 0x0001
    assert s.g.client.call("prepare_reset", handle=s.g.setup.handle).ok
    assert s.list()[2] == 0 and s.retrieve(0)[0] == 0x010F
    assert s.add(request()) == (0x0001, 0)  # unlocked again; the same request may come back


def test_disable_dump_flag_and_dump_in_progress() -> None:
    img = make_image("dump image", pcf=PCF_DEFAULT | PCF_ALLOW_DUMPING)
    tags = A.BootHdrTags.from_header(parse_image(img).header)
    s = Store(img)
    h = s.g.setup.handle
    assert s.g.client.call("dump_init", handle=h).ok
    assert s.add(request(tags=tags)) == (0x010D, 0)
    t = Store(img)
    assert t.add(request(tags=tags, flags=A.ASRCB_FLAG_DISABLE_DUMP)) == (0x0001, 0)
    assert t.g.client.call("dump_init", handle=t.g.setup.handle).rc == 0x0101


_FUZZ = Store()
_GOOD = request(name="fuzz")


@settings(max_examples=60, deadline=None)
@given(edits=st.lists(st.tuples(st.integers(0, len(_GOOD) - 1), st.integers(0, 255)), min_size=1, max_size=4),
       cut=st.integers(0, 64))  # fmt: skip
def test_mutated_requests_always_get_an_architected_rc(edits, cut: int) -> None:
    data = bytearray(_GOOD)
    for off, val in edits:
        data[off] = val
    data = data[: len(data) - cut] if cut < 48 else data
    rc, rrc = _FUZZ.add(bytes(data))
    assert rc in (0x0001, 0x0101, 0x0103, 0x0104, 0x0105, 0x0106, 0x0107, 0x0108, 0x0109, 0x010A, 0x010C)
    if rc == 0x0001:  # only an unchanged secret can be authentic; the ID must then be new
        assert bytes(data) == _GOOD
