"""The channel subsystem without a guest: subchannel state, channel programs, interruptions, reports, and the
checked storage paths (storage keys, secure frames)."""

import struct

import pytest

from emulator.errors import ProgramException
from emulator.hw import chsc
from emulator.hw import css_blocks as cb
from emulator.hw.css import CcwDevice, ChannelSubsystem, CommandReject
from emulator.hw.memory import PhysicalMemory

SID = 0x00010000
CR6_ISC3 = 0x80000000 >> 3


class Echo(CcwDevice):
    """A device with a write command (0x01) that keeps the data and a read command (0x02) that returns it."""

    cu_type, cu_model, dev_type, dev_model = 0x1234, 0x56, 0x789A, 0xBC

    def __init__(self):
        super().__init__()
        self.kept = b""

    def command(self, cmd, data):
        if cmd == 0x01:
            self.kept = data.read(data.count)
        elif cmd == 0x02:
            data.write(self.kept)
        else:
            raise CommandReject(cmd)


@pytest.fixture
def env():
    mem = PhysicalMemory(4 << 20)
    css = ChannelSubsystem(mem.host_view(), mem.keys)
    dev = Echo()
    css.attach(dev)
    return mem, css, dev


def schib(css, sid=SID):
    cc, raw = css.stsch(sid)
    assert cc == 0
    return cb.parse(cb.Schib, raw)


def enable(css, isc=3, extra=0, chars=0, mba=0, mbi=0):
    s = schib(css)
    s.pmcw.flags = (s.pmcw.flags & ~cb.PMCW_ISC) | cb.PMCW_E | isc << cb.PMCW_ISC_SHIFT | extra
    s.pmcw.chars |= chars
    s.pmcw.mbi = mbi
    s.mba = mba
    assert css.msch(SID, bytes(s)) == 0


def orb(cpa, key=0, fmt1=True, intparm=0xCAFE, extra=0):
    o = cb.Orb()
    o.intparm = intparm
    o.ctrl = key << 28 | (cb.ORB_FMT if fmt1 else 0) | 0x8000 | extra
    o.cpa = cpa
    return bytes(o)


def ccw(cmd, flags, count, cda):
    return struct.pack(">BBHI", cmd, flags, count, cda)


def start(mem, css, program, at=0x1000, **kw):
    mem.write(at, b"".join(program))
    return css.ssch(SID, orb(at, **kw))


def irb(css):
    cc, raw = css.tsch(SID)
    return cc, cb.parse(cb.Irb, raw)


def test_installed_subchannel_and_not_operational_ones(env):
    _, css, _ = env
    s = schib(css)
    assert s.pmcw.flags & cb.PMCW_V and not s.pmcw.flags & cb.PMCW_E
    assert (s.pmcw.devno, s.pmcw.pim, s.pmcw.pam, s.pmcw.chpid[0]) == (0, 0x80, 0x80, 0)
    assert s.pmcw.chars & cb.PMCW_ST == 0  # an I/O subchannel
    assert css.stsch(0x00010001) == (3, None)
    assert css.tsch(0x0001FFFF) == (3, None)
    assert css.ssch(0x00010001, orb(0x1000)) == 3
    with pytest.raises(ProgramException) as e:
        css.check_sid(0x0000FFFF)
    assert e.value.code == 0x15


@pytest.mark.parametrize("bit", [0, 1, 6, 7])
def test_msch_refuses_reserved_pmcw_bits_and_changes_nothing(env, bit):
    _, css, _ = env
    s = schib(css)
    s.pmcw.flags |= 0x8000 >> bit | cb.PMCW_E
    with pytest.raises(ProgramException) as e:
        css.msch(SID, bytes(s))
    assert e.value.code == 0x15
    assert not schib(css).pmcw.flags & (0x8000 >> bit | cb.PMCW_E)


def test_msch_ignores_bit_5_and_takes_only_its_fields(env):
    _, css, _ = env
    s = schib(css)
    s.pmcw.flags |= cb.PMCW_RES5 | cb.PMCW_E | 5 << cb.PMCW_ISC_SHIFT
    s.pmcw.intparm = 0x11223344
    s.pmcw.devno = 0x9999  # not the program's to change
    s.pmcw.pim = 0xFF
    assert css.msch(SID, bytes(s)) == 0
    now = schib(css)
    assert now.pmcw.flags & (cb.PMCW_RES5 | cb.PMCW_E | cb.PMCW_ISC) == cb.PMCW_E | 5 << cb.PMCW_ISC_SHIFT
    assert (now.pmcw.intparm, now.pmcw.devno, now.pmcw.pim) == (0x11223344, 0, 0x80)


def test_ssch_on_a_disabled_subchannel_or_without_a_path_is_not_operational(env):
    mem, css, _ = env
    assert start(mem, css, [ccw(cb.CMD_NOOP, cb.CCW_SLI, 1, 0)]) == 3
    enable(css)
    mem.write(0x1000, ccw(cb.CMD_NOOP, cb.CCW_SLI, 1, 0))
    o = cb.parse(cb.Orb, orb(0x1000))
    o.ctrl &= ~cb.ORB_LPM
    assert css.ssch(SID, bytes(o)) == 3  # no path in the ORB's logical-path mask
    o.ctrl |= 0xFF00
    assert css.ssch(SID, bytes(o)) == 0
    assert schib(css).pmcw.lpm == 0xFF  # the ORB's mask replaced the subchannel's


def test_sense_id_program_interrupts_and_tsch(env):
    mem, css, _ = env
    enable(css)
    assert start(mem, css, [ccw(cb.CMD_SENSE_ID, cb.CCW_SLI, 256, 0x2000)]) == 0
    assert mem.read(0x2000, 8) == bytes([0xFF, 0x12, 0x34, 0x56, 0x78, 0x9A, 0xBC, 0])
    assert css.pending and not css.io_deliverable(0x80000000)  # subclass 3 masked
    assert css.take_io(0x80000000) is None
    assert css.io_deliverable(CR6_ISC3)
    assert css.take_io(CR6_ISC3) == (SID, 0xCAFE, 3 << 27)
    assert not css.pending  # taken: the status stays pending until TSCH
    cc, i = irb(css)
    assert cc == 0
    stctl = cb.STCTL_PRIMARY | cb.STCTL_SECONDARY | cb.STCTL_PENDING
    assert i.scsw.ctrl & (cb.FCTL_MASK | cb.STCTL_MASK) == cb.FCTL_START | stctl
    assert (i.scsw.cpa, i.scsw.count, i.scsw.dstat, i.scsw.cstat) == (0x1008, 0, 0x0C, 0)
    cc, i = irb(css)
    assert cc == 1 and i.scsw.ctrl & cb.STCTL_MASK == 0  # no status any more


def test_sense_id_into_a_short_area_is_incorrect_length_unless_suppressed(env):
    mem, css, _ = env
    enable(css)
    assert start(mem, css, [ccw(cb.CMD_SENSE_ID, 0, 4, 0x2000)]) == 0
    i = irb(css)[1]
    assert (i.scsw.dstat, i.scsw.cstat, i.scsw.count) == (0x0C, cb.SCH_INCORRECT_LENGTH, 0)
    assert mem.read(0x2000, 5) == b"\xff\x12\x34\x56\0"  # nothing beyond the area


def test_status_pending_blocks_msch_and_ssch_and_tsch_withdraws_the_interruption(env):
    mem, css, _ = env
    enable(css)
    assert start(mem, css, [ccw(cb.CMD_NOOP, cb.CCW_SLI, 1, 0)]) == 0
    assert css.msch(SID, bytes(schib(css))) == 1
    assert start(mem, css, [ccw(cb.CMD_NOOP, cb.CCW_SLI, 1, 0)]) == 1
    assert css.xsch(SID) == 1
    assert irb(css)[0] == 0
    assert not css.pending and css.take_io(CR6_ISC3) is None
    assert css.xsch(SID) == 2  # nothing start pending to cancel


def test_command_chaining_data_chaining_and_idaws(env):
    mem, css, dev = env
    enable(css)
    mem.write(0x3000, b"hello ")
    mem.write(0x4000, b"world")
    mem.write(0x5000, struct.pack(">II", 0x6FFE, 0x7000))  # format-1 IDAWs: 2 bytes, then the next block
    program = [
        ccw(0x01, cb.CCW_CD, 6, 0x3000),
        ccw(0x01, cb.CCW_CC, 5, 0x4000),  # same command, data continued
        ccw(0x02, cb.CCW_IDA | cb.CCW_SLI, 11, 0x5000),
    ]
    assert start(mem, css, program) == 0
    assert dev.kept == b"hello world"
    assert mem.read(0x6FFE, 2) + mem.read(0x7000, 9) == b"hello world"
    _, i = irb(css)
    assert (i.scsw.cpa, i.scsw.dstat, i.scsw.cstat) == (0x1018, 0x0C, 0)


def test_tic_and_its_program_checks(env):
    mem, css, _ = env
    enable(css)
    mem.write(0x1800, ccw(cb.CMD_NOOP, cb.CCW_SLI, 1, 0))
    assert start(mem, css, [ccw(cb.CMD_TIC, 0, 0, 0x1800)]) == 0
    _, i = irb(css)
    assert (i.scsw.cpa, i.scsw.cstat) == (0x1808, 0)
    mem.write(0x1800, ccw(cb.CMD_TIC, 0, 0, 0x1000))
    assert start(mem, css, [ccw(cb.CMD_TIC, 0, 0, 0x1800)]) == 0
    assert irb(css)[1].scsw.cstat == cb.SCH_PROGRAM_CHECK  # TIC to TIC
    assert start(mem, css, [ccw(cb.CMD_TIC, 0, 0, 0x1804)]) == 0
    i = irb(css)[1]
    assert i.scsw.cstat == cb.SCH_PROGRAM_CHECK and i.scsw.ctrl & cb.STCTL_ALERT  # CCW not on 8 bytes
    assert start(mem, css, [ccw(0x10, 0, 1, 0)]) == 0  # command code xxxx0000
    assert irb(css)[1].scsw.cstat == cb.SCH_PROGRAM_CHECK
    assert start(mem, css, [ccw(0x01, 0, 4, 0x7FFFFFF0)]) == 0  # beyond storage
    assert irb(css)[1].scsw.cstat == cb.SCH_PROGRAM_CHECK


def test_format0_ccws(env):
    mem, css, dev = env
    enable(css)
    dev.kept = b"abc"
    mem.write(0x1000, struct.pack(">BBHBBH", 0x02, 0x00, 0x3000, cb.CCW_SLI, 0, 3))
    assert css.ssch(SID, orb(0x1000, fmt1=False)) == 0
    assert mem.read(0x3000, 3) == b"abc"
    mem.write(0x1000, struct.pack(">BBHBBH", 0x02, 0x00, 0x3000, 0, 0, 0))
    assert irb(css)[0] == 0
    assert css.ssch(SID, orb(0x1000, fmt1=False)) == 0
    assert irb(css)[1].scsw.cstat == cb.SCH_PROGRAM_CHECK  # format-0 count of zero


def test_incorrect_length_ends_chaining_unless_suppressed(env):
    mem, css, dev = env
    enable(css)
    dev.kept = b"xy"
    assert start(mem, css, [ccw(0x02, cb.CCW_CC, 8, 0x3000), ccw(0x01, 0, 1, 0x3100)]) == 0
    _, i = irb(css)
    assert (i.scsw.cpa, i.scsw.count, i.scsw.cstat) == (0x1008, 6, cb.SCH_INCORRECT_LENGTH)


def test_command_reject_unit_check_then_basic_sense_and_concurrent_sense(env):
    mem, css, _ = env
    enable(css)
    assert start(mem, css, [ccw(0x77, 0, 1, 0x3000)]) == 0
    _, i = irb(css)
    assert i.scsw.dstat == 0x02 and i.scsw.ctrl & cb.STCTL_ALERT and i.erw == 0
    assert start(mem, css, [ccw(cb.CMD_SENSE, 0, 32, 0x3000)]) == 0
    assert mem.read(0x3000, 1) == b"\x80"
    irb(css)
    enable(css, chars=cb.PMCW_CSENSE)
    assert start(mem, css, [ccw(0x77, 0, 1, 0x3000)]) == 0
    _, i = irb(css)
    assert i.erw & cb.ERW_CONS and (i.erw >> cb.ERW_SCNT_SHIFT) & 0x3F == 32 and i.ecw[0] == 0x80


def test_storage_keys_protect_channel_accesses_and_record_reference_and_change(env):
    mem, css, dev = env
    enable(css)
    dev.kept = b"secret"
    mem.keys[3] = 0x50  # frame 3: key 5, not fetch-protected
    assert start(mem, css, [ccw(0x02, 0, 6, 0x3000)], key=6) == 0
    assert irb(css)[1].scsw.cstat == cb.SCH_PROTECTION_CHECK and mem.read(0x3000, 6) == bytes(6)
    assert start(mem, css, [ccw(0x02, 0, 6, 0x3000)], key=5) == 0
    assert irb(css)[1].scsw.cstat == 0 and mem.read(0x3000, 6) == b"secret"
    assert mem.keys[3] == 0x50 | 0x06  # referenced and changed
    mem.keys[3] = 0x58  # fetch-protected now
    assert start(mem, css, [ccw(0x01, 0, 6, 0x3000)], key=6) == 0
    assert irb(css)[1].scsw.cstat == cb.SCH_PROTECTION_CHECK
    assert start(mem, css, [ccw(0x01, 0, 6, 0x3000)], key=0) == 0  # key 0 matches every key
    assert irb(css)[1].scsw.cstat == 0


def test_a_channel_program_never_touches_a_secure_frame(env):
    mem, css, dev = env
    enable(css)
    mem.write(0x3000, b"guest secret")
    mem.set_owner(3, 2)  # frame 3 belongs to a secure configuration
    assert start(mem, css, [ccw(0x01, 0, 12, 0x3000)]) == 0
    assert irb(css)[1].scsw.cstat == cb.SCH_PROTECTION_CHECK
    assert dev.kept == b""  # the device never got the bytes
    dev.kept = b"overwrite"
    assert start(mem, css, [ccw(0x02, 0, 9, 0x3000)]) == 0
    assert irb(css)[1].scsw.cstat == cb.SCH_PROTECTION_CHECK
    assert mem.read(0x3000, 12) == b"guest secret"
    # the channel program itself in a secure frame
    assert start(mem, css, [], at=0x3000) == 0
    assert irb(css)[1].scsw.cstat == cb.SCH_PROTECTION_CHECK


def test_invalid_orbs_are_operand_exceptions(env):
    _, css, _ = env
    enable(css)
    with pytest.raises(ProgramException) as e:
        css.ssch(SID, b"\xff" * 32)
    assert e.value.code == 0x15
    with pytest.raises(ProgramException):
        css.ssch(SID, orb(0x80001000))
    assert not css.pending


def test_suspend_and_resume(env):
    mem, css, dev = env
    enable(css)
    dev.kept = b"z"
    program = [ccw(cb.CMD_NOOP, cb.CCW_CC | cb.CCW_SLI, 1, 0), ccw(0x02, cb.CCW_S, 1, 0x3000)]
    assert start(mem, css, program) == 0
    assert irb(css)[1].scsw.cstat == cb.SCH_PROGRAM_CHECK  # suspend flag without the ORB's suspend control
    assert start(mem, css, program, extra=cb.ORB_SPND) == 0
    cc, i = irb(css)
    assert i.scsw.ctrl & (cb.ACTL_SUSPENDED | cb.STCTL_INTERMEDIATE) and mem.read(0x3000, 1) == b"\0"
    assert css.rsch(SID) == 0  # the CCW still has S: it suspends again
    irb(css)
    mem.write(0x1008, ccw(0x02, 0, 1, 0x3000))
    assert css.rsch(SID) == 0
    cc, i = irb(css)
    assert mem.read(0x3000, 1) == b"z" and i.scsw.ctrl & cb.STCTL_PRIMARY and not i.scsw.ctrl & cb.ACTL_MASK
    assert css.rsch(SID) == 2


def test_halt_and_clear(env):
    mem, css, _ = env
    enable(css)
    assert css.hsch(SID) == 0
    cc, i = irb(css)
    assert i.scsw.ctrl & (cb.FCTL_MASK | cb.STCTL_MASK) == cb.FCTL_HALT | cb.STCTL_PENDING
    assert start(mem, css, [ccw(cb.CMD_NOOP, cb.CCW_SLI, 1, 0)]) == 0
    assert css.hsch(SID) == 1
    assert css.csch(SID) == 0  # replaces the pending status
    assert css.take_io(CR6_ISC3) == (SID, 0xCAFE, 3 << 27)
    cc, i = irb(css)
    assert cc == 0 and i.scsw.ctrl & (cb.FCTL_MASK | cb.STCTL_MASK) == cb.FCTL_CLEAR | cb.STCTL_PENDING
    assert irb(css)[0] == 1


def test_interruptions_are_taken_by_subclass_priority():
    mem = PhysicalMemory(4 << 20)
    css = ChannelSubsystem(mem.host_view(), mem.keys)
    for _ in range(2):
        css.attach(Echo())
    for number, isc in ((0, 6), (1, 2)):
        s = schib(css, SID | number)
        s.pmcw.flags |= cb.PMCW_E | isc << cb.PMCW_ISC_SHIFT
        assert css.msch(SID | number, bytes(s)) == 0
        mem.write(0x1000, ccw(cb.CMD_NOOP, cb.CCW_SLI, 1, 0))
        assert css.ssch(SID | number, orb(0x1000, intparm=number)) == 0
    both = 0x80000000 >> 6 | 0x80000000 >> 2
    assert css.take_io(both) == (SID | 1, 1, 2 << 27)
    assert css.take_io(both) == (SID, 0, 6 << 27)


def test_measurement_blocks_count_starts(env):
    mem, css, _ = env
    css.schm(2, 0x8000)  # update mode, format-0 origin
    enable(css, extra=cb.PMCW_MBUE, mbi=1)
    for _ in range(3):
        assert start(mem, css, [ccw(cb.CMD_NOOP, cb.CCW_SLI, 1, 0)]) == 0
        irb(css)
    assert mem.read(0x8000, 2) == bytes(2) and mem.read(0x8020, 2) == b"\0\3"
    enable(css, extra=cb.PMCW_MBUE, chars=cb.PMCW_MBFC, mba=0x9040)
    assert schib(css).mba == 0x9040
    assert start(mem, css, [ccw(cb.CMD_NOOP, cb.CCW_SLI, 1, 0)]) == 0
    assert mem.read(0x9040, 4) == b"\0\0\0\1"
    s = schib(css)
    s.mba = 0x9041
    with pytest.raises(ProgramException):
        css.msch(SID, bytes(s))


@pytest.mark.parametrize("gr1, gr2", [(0xFFFFFFFC, 0), (2, 0x10), (0x100, 0)])
def test_schm_operand_checks(env, gr1, gr2):
    with pytest.raises(ProgramException) as e:
        env[1].schm(gr1, gr2)
    assert e.value.code == 0x15


def test_channel_reports_from_rchp(env):
    _, css, _ = env
    assert css.stcrw() is None
    assert css.rchp(0x01) == 3
    assert css.rchp(0x00) == 0
    word = css.stcrw()
    assert word is not None and (word >> 24) & 0xF == cb.CRW_RSC_CHP and word & 0x40000000  # solicited
    assert css.stcrw() is None
    with pytest.raises(ProgramException):
        css.rchp(0x100)


def test_chsc_store_channel_subsystem_characteristics(env):
    _, css, _ = env
    req = struct.pack(">HHHBB8x", 0x10, 0x10, 0, 0, 0)
    res = chsc.call(css, req)
    length, code = struct.unpack(">HH", res[:4])
    assert (length, code, len(res)) == (0xFF0, 1, 0xFF0)
    general = res[8 : 8 + 255 * 8]
    assert general[6] == 0x80  # bit 48: extended measurement block
    assert struct.unpack(">HH", chsc.call(css, struct.pack(">HH12x", 0x18, 0x10))[:4]) == (8, 3)  # bad length
    # not installed
    assert struct.unpack(">HH", chsc.call(css, struct.pack(">HH12x", 0x10, 0x4242))[:4]) == (8, 4)


def test_channel_reports_are_announced_by_one_machine_check_until_drained(env):
    _, css, _ = env
    assert css.rchp(0) == 0 and css.rchp(0) == 0
    assert css.crw_mcheck and css.take_crw_mcheck()
    assert not css.crw_mcheck and not css.take_crw_mcheck()  # one machine check for both reports
    assert css.rchp(0) == 0 and not css.crw_mcheck  # not announced again while reports wait
    assert [css.stcrw() is not None for _ in range(3)] == [True, True, True]
    assert css.stcrw() is None  # drained: the next report is announced again
    assert css.rchp(0) == 0 and css.crw_mcheck
    css.reset()
    assert not css.crw_mcheck and css.stcrw() is None


def test_chsc_store_channel_path_description(env):
    _, css, _ = env

    def scpd(word1, word2, length=0x10):
        res = chsc.call(css, struct.pack(">HHIII", length, 0x0002, word1, word2, 0))
        n, code, param = struct.unpack(">HHI", res[:8])
        assert n == len(res)
        return code, param, res[8:]

    assert scpd(0x00000000, 0x000000FF) == (1, 0, bytes([0x80, 0, 0x32, 0]) + bytes(4))  # valid, type 0x32
    code, param, desc = scpd(0x10000100, 0x00000000)  # C and RFMT 1: the 32-byte format-1 description
    assert (code, param, len(desc), desc[:4]) == (1, 1, 32, bytes([0x80, 0, 0x32, 0]))
    assert scpd(0x00000001, 0x000000FF) == (1, 0, b"")  # no path installed from CHPID 1 on
    assert scpd(0x00000005, 0x00000004)[0] == 3  # last before first
    assert scpd(0x00000000, 0x00000000, length=0x18)[0] == 3
    assert scpd(0x01000000, 0x00000000)[0] == 7  # FMT other than 0
    assert scpd(0x00010000, 0x00000000)[0] == 8  # CSSID 1
