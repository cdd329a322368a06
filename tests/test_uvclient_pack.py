"""The UV client's packed control blocks are byte for byte the ``uv_blocks`` records ``build`` makes."""

import ctypes

from hypothesis import given, settings
from hypothesis import strategies as st

from emulator.hypervisor.uvclient import HostArena, UvClient, _Template
from firmware import uv_blocks as B
from firmware.uv_codes import COMMANDS

CLIENT = UvClient(None, None, HostArena(0, 1 << 20))  # type: ignore[arg-type] - build/pack touch neither
SHAPES = [c for c in COMMANDS if c.struct in B.LAYOUTS]


def test_every_integer_field_of_every_block_has_a_packer():
    for c in SHAPES:
        t = _Template(c)
        layout = B.LAYOUTS[c.struct]
        assert t.size == ctypes.sizeof(layout)
        for name, ctype in layout._fields_:
            elem = ctype._type_ if issubclass(ctype, ctypes.Array) else ctype
            if issubclass(elem, ctypes._SimpleCData):  # not the header, not arrays of arrays (key hashes)
                assert name in t.fields, (c.name, name)


@settings(max_examples=200, deadline=None)
@given(st.data())
def test_pack_equals_build(data):
    c = data.draw(st.sampled_from(SHAPES))
    t = _Template(c)
    fields = {}
    for name, (_off, _st, count, mask) in t.fields.items():
        if not data.draw(st.booleans()):
            continue
        value = st.integers(-(1 << 70), 1 << 70)
        if count:
            fields[name] = data.draw(st.lists(value, max_size=count))
        else:
            fields[name] = data.draw(value)
    length = data.draw(st.one_of(st.none(), st.integers(0, 0xFFFF)))
    packed = t.pack(c.length if length is None else length, c.code, fields)
    assert packed is not None
    assert bytes(packed) == bytes(CLIENT.build(c.code, length=length, **fields))


def test_what_the_template_cannot_pack_goes_to_build():
    t = _Template(next(c for c in SHAPES if c.name == "unpack_img"))
    assert t.pack(0x50, 0x301, {"nonsense": 1}) is None
    assert t.pack(0x50, 0x301, {"tweak": 5}) is None
    assert t.pack(0x50, 0x301, {"gaddr": (1, 2)}) is None
    assert t.pack(0x50, 0x301, {"tweak": (1, 2, 3)}) is None


@settings(max_examples=200, deadline=None)
@given(st.data())
def test_one_struct_plans_equal_build_in_any_field_order(data):
    c = data.draw(st.sampled_from(SHAPES))
    t = _Template(c)
    scalars = [n for n, f in t.fields.items() if not f[2]]
    names = data.draw(st.permutations(scalars))[: data.draw(st.integers(0, len(scalars)))]
    fields = {n: data.draw(st.integers(-(1 << 70), 1 << 70) | st.booleans()) for n in names}
    for _ in range(2):  # the second pack uses the plan made by the first
        packed = t.pack(c.length, c.code, fields)
        assert packed is not None and bytes(packed) == bytes(CLIENT.build(c.code, **fields))
    assert t._plans[tuple(names)] is not None
    if names:  # a value that is not an integer: the plan steps aside and the field-by-field path refuses
        assert t.pack(c.length, c.code, {**fields, names[0]: "x"}) is None
