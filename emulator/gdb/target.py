"""The s390x register file as GDB sees it: the target description (the features GDB's s390 support knows:
core, access, floating-point and vector registers, plus control registers and the virtualisation timers as
QEMU names them) and the reading and writing of each register of a zuv CPU in GDB's numbering."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Final

from emulator.hw.cpu import Cpu


@dataclass(frozen=True)
class Reg:
    """One register of the description: its GDB name, size in bits, type, and its zuv source."""

    name: str
    bits: int
    type: str
    kind: str  # "pswm", "pswa", "gpr", "acr", "fpc", "fpr", "vl" (low half of v0-v15), "v" (v16-v31), "cr",
    # "ckc", "cputm", "prefix"
    index: int = 0


def _feature(name: str, regs: list[Reg], regnum: int) -> tuple[str, int]:
    lines = [f'  <feature name="{name}">']
    for r in regs:
        lines.append(f'    <reg name="{r.name}" bitsize="{r.bits}" type="{r.type}" regnum="{regnum}"/>')
        regnum += 1
    lines.append("  </feature>")
    return "\n".join(lines), regnum


_FEATURES: Final = (
    ("org.gnu.gdb.s390.core",
     [Reg("pswm", 64, "uint64", "pswm"), Reg("pswa", 64, "code_ptr", "pswa")]
     + [Reg(f"r{i}", 64, "uint64", "gpr", i) for i in range(16)]),
    ("org.gnu.gdb.s390.acr", [Reg(f"acr{i}", 32, "uint32", "acr", i) for i in range(16)]),
    ("org.gnu.gdb.s390.fpr",
     [Reg("fpc", 32, "uint32", "fpc")] + [Reg(f"f{i}", 64, "ieee_double", "fpr", i) for i in range(16)]),
    ("org.gnu.gdb.s390.vx",
     [Reg(f"v{i}l", 64, "uint64", "vl", i) for i in range(16)]
     + [Reg(f"v{i}", 128, "vec128", "v", i) for i in range(16, 32)]),
    ("org.gnu.gdb.s390.cr", [Reg(f"cr{i}", 64, "uint64", "cr", i) for i in range(16)]),
    ("org.gnu.gdb.s390.virt",
     [Reg("ckc", 64, "uint64", "ckc"), Reg("cputm", 64, "uint64", "cputm"),
      Reg("prefix", 64, "uint64", "prefix")]),
)

VEC128: Final = """  <vector id="v4f" type="ieee_single" count="4"/>
  <vector id="v2d" type="ieee_double" count="2"/>
  <vector id="v16i8" type="int8" count="16"/>
  <vector id="v8i16" type="int16" count="8"/>
  <vector id="v4i32" type="int32" count="4"/>
  <vector id="v2i64" type="int64" count="2"/>
  <union id="vec128">
    <field name="v4_float" type="v4f"/>
    <field name="v2_double" type="v2d"/>
    <field name="v16_int8" type="v16i8"/>
    <field name="v8_int16" type="v8i16"/>
    <field name="v4_int32" type="v4i32"/>
    <field name="v2_int64" type="v2i64"/>
    <field name="uint128" type="uint128"/>
  </union>"""


def _build() -> tuple[str, tuple[Reg, ...]]:
    parts = ['<?xml version="1.0"?>', '<!DOCTYPE target SYSTEM "gdb-target.dtd">', "<target>",
             "  <architecture>s390:64-bit</architecture>"]
    regs: list[Reg] = []
    regnum = 0
    for name, feature_regs in _FEATURES:
        text, regnum = _feature(name, feature_regs, regnum)
        if name.endswith(".vx"):
            text = text.replace("  <feature name=\"org.gnu.gdb.s390.vx\">",
                                "  <feature name=\"org.gnu.gdb.s390.vx\">\n" + VEC128)
        parts.append(text)
        regs.extend(feature_regs)
    parts.append("</target>")
    return "\n".join(parts) + "\n", tuple(regs)


#: the target description served as ``target.xml``, and its registers in GDB's numbering
TARGET_XML, REGISTERS = _build()


def read_register(cpu: Cpu, reg: Reg) -> bytes:
    """The register's value, big-endian, as GDB's ``g``/``p`` packets carry it."""
    kind, i = reg.kind, reg.index
    if kind == "pswm":
        value = cpu.psw[0]
    elif kind == "pswa":
        value = cpu.psw[1]
    elif kind == "gpr":
        value = cpu.gpr(i)
    elif kind == "acr":
        value = cpu.ar(i)
    elif kind == "fpc":
        value = cpu.fpc()
    elif kind == "fpr":
        value = cpu.fpr(i)
    elif kind == "vl":
        return cpu.vr(i)[8:]
    elif kind == "v":
        return cpu.vr(i)
    elif kind == "cr":
        value = cpu.cr(i)
    elif kind == "ckc":
        value = cpu.ckc
    elif kind == "cputm":
        value = cpu.cpu_timer & 0xFFFFFFFFFFFFFFFF
    else:  # prefix
        value = cpu.prefix
    return value.to_bytes(reg.bits // 8, "big")


def write_register(cpu: Cpu, reg: Reg, data: bytes) -> bool:
    """Set the register from GDB's big-endian bytes; False for one zuv does not let a debugger write."""
    if len(data) != reg.bits // 8:
        return False
    value = int.from_bytes(data, "big")
    kind, i = reg.kind, reg.index
    if kind == "pswm":
        cpu.set_psw(value, cpu.psw[1])
    elif kind == "pswa":
        cpu.set_psw(cpu.psw[0], value)
    elif kind == "gpr":
        cpu.set_gpr(i, value)
    elif kind == "acr":
        cpu.set_ar(i, value)
    elif kind == "fpc":
        cpu.set_fpc(value)
    elif kind == "fpr":
        cpu.set_fpr(i, value)
    elif kind == "vl":
        cpu.set_vr(i, cpu.vr(i)[:8] + data)
    elif kind == "v":
        cpu.set_vr(i, data)
    elif kind == "cr":
        cpu.set_cr(i, value)
    elif kind == "ckc":
        cpu.ckc = value
    elif kind == "cputm":
        cpu.set_cpu_timer(value)
    else:
        cpu.set_prefix(value)
    return True
