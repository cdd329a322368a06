"""pvimg: image layout, a UV-style unpack of every secure page, multi-machine images, tampering, the CLIs."""

from __future__ import annotations

import json
import struct
from pathlib import Path

import capstone
import pytest

from emulator.image import pvimg as p
from emulator.image import pvimg_cli
from firmware import crypto as c
from firmware import se_header as s
from firmware.machine_identity import MachineIdentity

REPO = Path(__file__).resolve().parent.parent
HELLO = REPO / "guests" / "images" / "hello.elf"
MACHINES = REPO / "firmware" / "machines"
PKI = MACHINES / "zuv-demo" / "pki"
DEMO = MachineIdentity.bundled("zuv-demo")
OTHER = MachineIdentity.bundled("zuv-other")
RAMDISK = bytes(range(256)) * 20 + b"tail"
PARM = b"hello world\nquiet=1\n"


def build(seed="img", keys=(DEMO.public_key, OTHER.public_key), **kw) -> p.SeImage:
    return p.build_image(kernel=HELLO.read_bytes(), ramdisk=RAMDISK, parmfile=PARM, host_keys=list(keys),
                         rng=c.DeterministicRng(seed), **kw)


IMG = build()


def unpack(img: p.SeImage, machine: MachineIdentity):
    """What hypervisor + UV do at DIAG 308 subcode 10: SSC, Unpack every IPIB page, Verify."""
    opened = s.open_header(img.header, machine.host_keys)
    mem = bytearray(img.data)
    measured = s.ImageDigests()
    for comp in img.ipib.components:
        for off in range(0, comp.len, 4096):
            gaddr = comp.addr + off
            tweak = s.page_tweak(comp.tweak_pref, off)
            stored = bytes(mem[gaddr:gaddr + 4096])
            measured.add_page(gaddr, tweak, stored)
            mem[gaddr:gaddr + 4096] = opened.decrypt_page(tweak, stored)
    return opened, bytes(mem), s.verify_digests(opened, measured)


def test_layout_short_psw_metadata_stage3a_parameters():
    d = IMG.data
    assert struct.unpack_from(">Q", d, 0)[0] == 0x0008000180011000
    meta = p.ImgMetadata.parse(d, 0xC000)
    assert (meta.magic, meta.version, meta.hdr_off, meta.ipib_off) == (
        b"SeImgLnx",
        1,
        IMG.header_addr,
        IMG.ipib_addr,
    )
    stage3a = (REPO / "guests" / "images" / "stage3a.bin").read_bytes()
    parms = 0x10000 + len(stage3a) - 24
    hdr_offs, hdr_size, ipib_offs = struct.unpack_from(">QQQ", d, parms)
    assert (
        parms + hdr_offs == IMG.header_addr
        and hdr_size == len(IMG.header)
        and parms + ipib_offs == IMG.ipib_addr
    )
    assert d[0x10000:parms] == stage3a[:-24]
    assert IMG.header_addr % 4096 == 0 and IMG.ipib_addr % 4096 == 0
    ipib = p.IplParameterBlockPv.parse(d, IMG.ipib_addr)
    assert ipib == IMG.ipib == p.parse_image(d).ipib and p.parse_image(d).header == IMG.header
    assert (ipib.pv_hdr_addr, ipib.pv_hdr_size) == (IMG.header_addr, len(IMG.header))
    assert [cp.tweak_pref >> 48 for cp in ipib.components] == [40, 50, 60, 70]
    prefs = [cp.tweak_pref for cp in ipib.components]
    assert prefs == sorted(set(prefs))  # strictly increasing, as QEMU requires
    addrs = [cp.addr for cp in ipib.components]
    assert all(a % 4096 == 0 for a in addrs) and addrs == sorted(addrs) and addrs[0] >= 0x11000 + 0x1000


def test_stage3a_asks_for_secure_mode_with_diag_308_subcodes_8_and_10():
    code = (REPO / "guests" / "images" / "stage3a.bin").read_bytes()
    md = capstone.Cs(capstone.CS_ARCH_SYSZ, capstone.CS_MODE_BIG_ENDIAN)
    insns = list(md.disasm(code[0x1000:-24], 0x11000))
    text = [f"{i.mnemonic} {i.op_str}" for i in insns]
    diags = [n for n, t in enumerate(text) if t.startswith("diag")]
    assert len(diags) == 2
    for n, subcode in zip(diags, (8, 10)):
        loads = [t.split(",") for t in text[n - 3:n] if t.startswith("lghi %r4,")]
        assert loads and int(loads[-1][1], 0) == subcode, text[n - 3:n]
    assert any(t.startswith("stfle") for t in text)
    first = next(md.disasm(code[:6], 0x10000))
    assert first.mnemonic == "jg" and int(first.op_str, 0) == 0x11000


@pytest.mark.parametrize("machine", [DEMO, OTHER], ids=["zuv-demo", "zuv-other"])
def test_every_target_machine_unpacks_and_verifies(machine):
    opened, mem, rrc = unpack(IMG, machine)
    assert rrc == 0
    assert opened.nep == sum(cp.len // 4096 for cp in IMG.ipib.components)
    kernel, entry = p.load_kernel(HELLO.read_bytes())
    k, r, parm, s3b = IMG.ipib.components
    assert mem[k.addr:k.addr + len(kernel)] == kernel
    assert mem[r.addr:r.addr + len(RAMDISK)] == RAMDISK
    assert mem[parm.addr:parm.addr + 22] == PARM + b"\0\0"  # the bytes as they are, a NUL (IBM pvimg)
    assert opened.psw == (s.PSW_MASK_DEFAULT, s3b.addr)
    stage3b = (REPO / "guests" / "images" / "stage3b.bin").read_bytes()
    args = struct.unpack_from(">8Q", mem, s3b.addr + len(stage3b) - 64)
    assert args == (
        k.addr,
        len(kernel),
        parm.addr,
        len(PARM) + 1,
        r.addr,
        len(RAMDISK),
        s.PSW_MASK_DEFAULT,
        entry,
    )
    assert mem[s3b.addr:s3b.addr + len(stage3b) - 64] == stage3b[:-64]


def test_plaintext_never_appears_in_the_image():
    assert RAMDISK[:512] not in IMG.data and b"hello world" not in IMG.data


def test_a_machine_not_targeted_is_refused():
    img = build(keys=[OTHER.public_key])
    with pytest.raises(s.SeHeaderError) as exc:
        unpack(img, DEMO)
    assert (exc.value.rc, exc.value.rrc) == (0x0108, 0x0005)


def test_tampered_component_pages_fail_verify():
    k = IMG.ipib.components[0]
    data = bytearray(IMG.data)
    data[k.addr + 100] ^= 1
    assert (
        unpack(p.SeImage(bytes(data), IMG.header_addr, IMG.header_size, IMG.ipib_addr, IMG.ipib), DEMO)[2]
        == 0x1B
    )
    # The host loads a component somewhere else: the addresses no longer match.
    moved = [p.IpibPvComponent(cp.tweak_pref, cp.addr, cp.len) for cp in IMG.ipib.components]
    moved[1] = p.IpibPvComponent(moved[1].tweak_pref, moved[2].addr, moved[1].len)
    ipib = p.IplParameterBlockPv(tuple(moved), IMG.header_addr, IMG.header_size)
    assert unpack(p.SeImage(IMG.data, IMG.header_addr, IMG.header_size, IMG.ipib_addr, ipib), DEMO)[2] == 0x1A
    # A different tweak for the same pages.
    tweaked = list(IMG.ipib.components)
    tweaked[0] = p.IpibPvComponent(tweaked[0].tweak_pref ^ 1, tweaked[0].addr, tweaked[0].len)
    ipib = p.IplParameterBlockPv(tuple(tweaked), IMG.header_addr, IMG.header_size)
    assert unpack(p.SeImage(IMG.data, IMG.header_addr, IMG.header_size, IMG.ipib_addr, ipib), DEMO)[2] == 0x1C


def test_no_component_encryption_stores_plaintext_but_still_measures():
    img = build(pcf=s.PCF_DEFAULT | s.PCF_NO_COMP_ENCRYPTION)
    assert RAMDISK[:512] in img.data
    assert unpack(img, DEMO)[2] == 0


def test_same_seed_same_image():
    assert build(seed="a").data == build(seed="a").data != build(seed="b").data


def test_bad_inputs_are_image_errors():
    with pytest.raises(p.ImageError):
        p.build_image(kernel=b"\x7fELF" + bytes(60), host_keys=[DEMO.public_key], rng=c.DeterministicRng(1))
    with pytest.raises(p.ImageError):
        p.build_image(kernel=b"short", host_keys=[DEMO.public_key], rng=c.DeterministicRng(1))
    with pytest.raises(p.ImageError, match="command line"):
        build(parmfile=None) if False else p.build_image(
            kernel=HELLO.read_bytes(),
            parmfile=b"x" * 2000,
            host_keys=[DEMO.public_key],
            rng=c.DeterministicRng(1),
        )
    with pytest.raises(p.ImageError):
        build(keys=[])
    with pytest.raises(p.ImageError):
        p.parse_image(bytes(0x20000))


# ------------------------------------------------------------------------------------------------ CLI


def _cli(capsys, main, *argv):
    rc = main(list(map(str, argv)))
    out, err = capsys.readouterr()
    assert "Traceback" not in err
    return rc, out, err


def _verify_args():
    return ["-C", PKI / "ibm-z-signing-key.crt", "-C", PKI / "intermediate-ca.crt",
            "--crl", PKI / "ibm-z-signing-key.crl", "--crl", PKI / "intermediate-ca.crl",
            "--crl", PKI / "root-ca.crl", "--time", "2030-01-01"]  # fmt: skip


def test_cli_create_verified_and_info(tmp_path, capsys):
    (tmp_path / "parm").write_bytes(PARM)
    out = tmp_path / "img"
    rc, _, err = _cli(capsys, pvimg_cli.pvimg_main, "create", "-i", HELLO, "-p", tmp_path / "parm",
                      "-k", MACHINES / "zuv-demo" / "host-key-document.crt",
                      "-k", MACHINES / "zuv-other" / "host-key-document.crt", "-o", out, *_verify_args(),
                      "--seed", 3)  # fmt: skip
    assert rc == 0 and err == "Successfully generated the Secure Execution image.\n"  # as s390-tools
    rc, text, err = _cli(capsys, pvimg_cli.pvimg_main, "info", out, "--format", "text")
    assert rc == 0 and text.count(" - target key hash: ") == 2 and "PSW" not in text and "not verified" in err
    rc, text, _ = _cli(
        capsys, pvimg_cli.pvimg_main, "info", out, "--machine", "zuv-other", "--format", "json"
    )
    d = json.loads(text)["data"]
    assert rc == 0 and d["nks"] == 2 and d["kind"] == "se_hdr" and d["verified"] is True and "psw" not in d
    opened = s.open_header(p.parse_image(out.read_bytes()).header, OTHER.host_keys)
    assert opened.xts_key.expose().hex() not in text and opened.cck.expose().hex() not in text
    rc, text, _ = _cli(capsys, pvimg_cli.pvimg_main, "info", out, "--machine", "zuv-other", "--show-secrets")
    d = json.loads(text)["data"]  # stdout is not a terminal: JSON, as the real tool
    assert d["kind"] == "decrypted_se_hdr" and int(d["psw"]["addr_hex"], 16) == opened.psw_addr
    assert d["xts_hex"] == opened.xts_key.expose().hex() and "cipher_data_b64" not in d


def test_cli_exit_codes_and_single_line_errors(tmp_path, capsys):
    """s390-tools' pvimg: 2 for a usage error, 1 for any error at run time."""
    hkd = MACHINES / "zuv-demo" / "host-key-document.crt"
    out = tmp_path / "img"
    rc, _, err = _cli(capsys, pvimg_cli.pvimg_main, "create", "-i", HELLO, "-k", hkd, "-o", out)
    assert rc == 2 and "--no-verify" in err and len(err.strip().splitlines()) == 1
    rc, _, err = _cli(
        capsys, pvimg_cli.pvimg_main, "create", "-i", HELLO, "-k", hkd, "-o", out, "--no-verify"
    )
    assert rc == 0 and "Host-key document verification is disabled" in err
    rc, _, err = _cli(
        capsys, pvimg_cli.pvimg_main, "create", "-i", HELLO, "-k", hkd, "-o", out, "--no-verify"
    )
    assert rc == 1 and "--overwrite" in err
    rc, _, err = _cli(capsys, pvimg_cli.pvimg_main, "create", "-i", tmp_path / "nope", "-k", hkd, "-o",
                      tmp_path / "x", "--no-verify")
    assert rc == 1 and len(err.strip().splitlines()) == 2  # warning + the one error line
    rc, _, err = _cli(capsys, pvimg_cli.pvimg_main, "create", "-i", HELLO)
    assert rc == 2 and len(err.strip().splitlines()) == 1
    rc, _, err = _cli(capsys, pvimg_cli.pvimg_main, "info", out, "--machine", "zuv-other")
    assert rc == 1 and "0x0108" in err
    rc, _, err = _cli(capsys, pvimg_cli.pvimg_main, "info", HELLO)
    assert rc == 1
    rc, _, err = _cli(capsys, pvimg_cli.pvimg_main, "create", "-i", HELLO, "-k", HELLO, "-o", tmp_path / "y",
                      "--no-verify")
    assert rc == 1
    rc, _, err = _cli(capsys, pvimg_cli.pvimg_main, "create", "-i", HELLO, "-k", hkd, "-o", tmp_path / "z",
                      "-C", PKI / "ibm-z-signing-key.crt", "-C", PKI / "intermediate-ca.crt",
                      "--time", "2030-01-01")  # fmt: skip
    assert rc == 1 and "CRL" in err
