"""Property tests of the channel subsystem: whatever a program puts in its SCHIB, ORB and channel program, the
outcome is architectural (a condition code, an operand exception, a status in the IRB), and a secure frame
is never read or written."""

import struct

from hypothesis import HealthCheck, example, given, settings
from hypothesis import strategies as st

from emulator.errors import ProgramException
from emulator.hw import css_blocks as cb
from emulator.hw import virtio_ccw as vc
from emulator.hw.css import ChannelSubsystem
from emulator.hw.memory import PhysicalMemory

SID = 0x00010000
SECURE_FRAME = 5
MEM = 1 << 20

ccws = st.lists(
    st.tuples(
        st.sampled_from([0x01, 0x02, 0x03, 0x04, 0x08, 0x10, 0x12, 0x13, 0x22, 0x31, 0x43, 0x83, 0xE4, 0x7B]),
        st.integers(0, 255),
        st.integers(0, 0x2000),
        st.one_of(st.integers(0, MEM + 0x1000), st.sampled_from([0x5000, 0x5FFC, 0x8000, 0x3000])),
    ),
    min_size=1,
    max_size=6,
)

#: ORB word 1: mostly valid (no reserved bits, path 0x80) with any key, format, IDAW and suspend controls
orb_ctrl = st.one_of(
    st.integers(0, 0xFFFFFFFF).map(lambda c: (c & ~cb.ORB_INVALID & ~cb.ORB_LPM) | 0x8000),
    st.integers(0, 0xFFFFFFFF),
)


def machine():
    mem = PhysicalMemory(MEM)
    css = ChannelSubsystem(mem.host_view(), mem.keys)
    css.attach(vc.VirtioNet(mem.host_view()))
    s = cb.parse(cb.Schib, css.stsch(SID)[1])
    s.pmcw.flags |= cb.PMCW_E | 3 << cb.PMCW_ISC_SHIFT
    assert css.msch(SID, bytes(s)) == 0
    mem.write(SECURE_FRAME << 12, b"\xa5" * 4096)
    mem.set_owner(SECURE_FRAME, 2)
    return mem, css


@settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(program=ccws, ctrl=orb_ctrl, idaws=st.binary(min_size=16, max_size=16))
@example(program=[(1, 2, 0, 0)], ctrl=0x0A988000, idaws=bytes(16))  # suspended, interruption suppressed
def test_any_channel_program_ends_architecturally_and_never_touches_a_secure_frame(program, ctrl, idaws):
    mem, css = machine()
    mem.write(0x3000, idaws)
    mem.write(0x1000, b"".join(struct.pack(">BBHI", c, f, n, a) for c, f, n, a in program))
    orb = struct.pack(">III", 0, ctrl, 0x1000) + bytes(20)
    try:
        cc = css.ssch(SID, orb)
    except ProgramException as e:
        assert e.code == 0x15  # an invalid ORB
        return
    assert cc in (0, 3)  # 3: no path in the ORB's logical-path mask
    if cc == 0:
        cc, raw = css.tsch(SID)
        if cc == 1:
            # suspended at a CCW's suspend flag with the suspended interruption suppressed (ORB S and U):
            # nothing is pending, and the subchannel says it is suspended
            assert ctrl & cb.ORB_SPND and ctrl & cb.ORB_SSIC
            assert cb.parse(cb.Schib, css.stsch(SID)[1]).scsw.ctrl & cb.ACTL_SUSPENDED
        else:
            i = cb.parse(cb.Irb, raw)
            assert cc == 0 and i.scsw.ctrl & cb.STCTL_PENDING
    assert mem.read(SECURE_FRAME << 12, 4096) == b"\xa5" * 4096
    assert mem.owner[SECURE_FRAME] == 2


@settings(max_examples=150, deadline=None)
@given(schib=st.binary(min_size=52, max_size=52), sid=st.integers(0, 0xFFFFFFFF))
def test_any_schib_is_taken_refused_or_not_operational(schib, sid):
    _, css = machine()
    try:
        css.check_sid(sid)
        cc = css.msch(sid, schib)
    except ProgramException as e:
        assert e.code == 0x15
        return
    assert cc in (0, 1, 2, 3)
    if cc == 0:
        stored = cb.parse(cb.Schib, css.stsch(sid)[1]).pmcw
        assert not stored.flags & (cb.PMCW_RES5 | cb.PMCW_RES67 | cb.PMCW_Q | cb.PMCW_W)
        assert stored.flags & cb.PMCW_V and stored.devno == sid & 0xFFFF  # not the program's to change
