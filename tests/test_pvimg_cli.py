"""pvimg's command line against s390-tools' pvimg: info-v1 JSON, options, lists, rules, test, exit codes."""

from __future__ import annotations

import base64
import json
import re
import sys
from pathlib import Path

import pytest

from emulator.image import pvimg as p
from emulator.image.pvimg_cli import pvimg_main
from firmware import se_header as s
from firmware.machine_identity import MachineIdentity

REPO = Path(__file__).resolve().parent.parent
HELLO = REPO / "guests" / "images" / "hello.elf"
MACHINES = REPO / "firmware" / "machines"
DEMO_HKD = MACHINES / "zuv-demo" / "host-key-document.crt"
OTHER_HKD = MACHINES / "zuv-other" / "host-key-document.crt"
DEMO = MachineIdentity.bundled("zuv-demo")

# info-v1.schema.json of s390-tools: the fields of ``data`` in each of its three states
COMMON = {"kind", "verified", "magic_hex", "version", "sehs", "iv_hex", "nks", "sea", "nep", "pcf_hex",
          "cust_pub_key", "pld_hex", "ald_hex", "tld_hex", "keyslots", "tag_hex"}  # fmt: skip
HEX = re.compile(r"^[0-9a-fA-F]+$")


def _cli(capsys, *argv):
    rc = pvimg_main([str(a) for a in argv])
    out, err = capsys.readouterr()
    assert "Traceback" not in err
    return rc, out, err


@pytest.fixture(scope="module")
def image(tmp_path_factory):
    """An image for both bundled machines, with a known header protection key and image key."""
    d = tmp_path_factory.mktemp("img")
    (d / "hdr.key").write_bytes(bytes(range(32)))
    (d / "image.key").write_bytes(bytes(range(1, 65)))
    rc = pvimg_main(["create", "--kernel", str(HELLO), "-k", f"{DEMO_HKD},{OTHER_HKD}", "-o", str(d / "img"),
                     "--no-verify", "-q", "--hdr-key", str(d / "hdr.key"),
                     "--image-key", str(d / "image.key"), "--seed", "7"])  # fmt: skip
    assert rc == 0
    return d


def _check_schema(doc: dict, kind: str, verified: bool) -> dict:
    assert set(doc) == {"meta", "data"}
    meta = doc["meta"]
    assert set(meta) == {"api_level", "version", "host", "time_epoch", "time"} and meta["api_level"] == 1
    assert isinstance(meta["time_epoch"], int)
    assert re.match(r"^\d{4}-\d\d-\d\d \d\d:\d\d:\d\d[+-]\d{4}$", meta["time"])
    d = doc["data"]
    extra = {"cipher_data_b64"} if kind == "se_hdr" else {"psw", "scf_hex", "cck_hex", "xts_hex"}
    assert set(d) == COMMON | extra and d["kind"] == kind and d["verified"] is verified
    for k, v in d.items():
        if k.endswith("_hex"):
            assert HEX.match(v), k
    assert all(set(slot) == {"phkh_hex", "wrpk_hex", "kst_hex"} for slot in d["keyslots"])
    assert set(d["cust_pub_key"]) == {"coord_hex"} and d["magic_hex"] == b"IBMSecEx".hex()
    assert d["version"] == "V1"
    return d


def test_info_json_is_the_info_v1_schema_in_its_three_states(image, capsys):
    img = p.parse_image((image / "img").read_bytes())
    rc, out, err = _cli(capsys, "info", image / "img")  # not a terminal: JSON
    d = _check_schema(json.loads(out), "se_hdr", False)
    assert rc == 0 and "not verified" in err
    assert base64.b64decode(d["cipher_data_b64"]) == s.SeHeader.parse(img.header).encrypted
    assert d["nks"] == 2 and d["sehs"] == img.header_size and len(d["pcf_hex"]) == 16
    rc, out, err = _cli(capsys, "info", image / "img", "--hdr-key", image / "hdr.key",
                        "--format", "json:minify")
    assert rc == 0 and err == "" and "\n" not in out.strip()
    _check_schema(json.loads(out), "se_hdr", True)
    rc, out, _ = _cli(capsys, "info", image / "img", "--key", image / "hdr.key", "--show-secrets")
    d = _check_schema(json.loads(out), "decrypted_se_hdr", True)
    assert d["xts_hex"] == bytes(range(1, 65)).hex()  # the --image-key given at create
    assert int(d["psw"]["addr_hex"], 16) == img.ipib.components[-1].addr  # stage3b's entry
    (image / "wrong.key").write_bytes(bytes(32))
    rc, out, err = _cli(capsys, "info", image / "img", "--hdr-key", image / "wrong.key")
    assert rc == 1 and out == "" and len(err.strip().splitlines()) == 1


def test_info_text_only_on_a_terminal_or_when_asked(image, capsys, monkeypatch):
    monkeypatch.setattr(sys.stdout, "isatty", lambda: True)
    rc, out, _ = _cli(capsys, "info", image / "img", "-q")
    assert rc == 0 and out.startswith("Secure Execution header\n  version: 1\n  key slots:\n")
    assert out.count(" - target key hash: ") == 2
    rc, out, _ = _cli(capsys, "info", image / "img", "--format", "json")
    assert json.loads(out)["data"]["nks"] == 2
    rc, out, _ = _cli(capsys, "info", image / "img", "--format", "text:full", "--hdr-key", image / "hdr.key")
    assert out.startswith("integrity and authenticity verified Secure Execution header\n")
    assert "  number of key slots: 2\n" in out and "  GCM tag: " in out and "  encrypted data: " in out
    assert _cli(capsys, "info", image / "img", "--format", "yaml")[0] == 2
    assert _cli(capsys, "info", image / "img", "--format", "text:pretty")[0] == 2
    for spec, rc in (("json:", 2), ("text:", 2), ("Json:Pretty", 0), ("TEXT:Full", 0), ("json:default", 0)):
        assert _cli(capsys, "info", image / "img", "--format", spec, "-q")[0] == rc, spec  # as pvimg 2.43
    assert _cli(capsys, "info", image / "img", "--show-secrets")[0] == 2  # needs --hdr-key


def test_create_option_names_lists_and_rules(image, tmp_path, capsys):
    base = ["create", "-i", HELLO, "--no-verify", "-k", DEMO_HKD]
    rc, _, err = _cli(capsys, *base, "-o", tmp_path / "a", "--image", HELLO)
    assert rc == 2 and "multiple times" in err  # -i and --image are one option
    for extra in (["--enable-dump"], ["--enable-cck-extension-secret"],
                  ["--enable-image-encryption", "--disable-image-encryption"],
                  ["--disable-image-encryption", "--image-key", image / "image.key"],
                  ["--enable-pckmo", "--x-pcf", "0"], ["-v", "-q"], ["-C", DEMO_HKD]):  # fmt: skip
        rc, _, err = _cli(capsys, *base, "-o", tmp_path / "b", *extra)
        assert rc == 2 and len(err.strip().splitlines()) <= 2, extra
    # as pvimg: --crl, --offline and --root-ca are taken (and unused) with --no-verify; a bad experimental
    # value (hexadecimal, '0x' optional) is an error at run time, 1
    assert (
        _cli(capsys, *base, "-o", tmp_path / "b1", "-q", "--crl", DEMO_HKD, "--offline", "--root-ca", "x")[0]
        == 0
    )
    for bad in (["--x-pcf", "zz"], ["--x-scf", "0x" + "1" * 17], ["--x-psw", ""]):
        assert _cli(capsys, *base, "-o", tmp_path / "b2", "-q", *bad)[0] == 1, bad
    rc, _, _ = _cli(capsys, *base, "-o", tmp_path / "c", "-q", "--enable-dump", "--enable-cck-update",
                    "--disable-image-encryption", "--x-psw", "0x12345", "--no-component-check")
    hdr = s.SeHeader.parse(p.parse_image((tmp_path / "c").read_bytes()).header)
    assert rc == 0 and hdr.head.pcf & s.PCF_NO_COMP_ENCRYPTION and hdr.head.pcf & s.PCF_ALLOW_DUMPING
    assert s.open_header(hdr.pack(), DEMO.host_keys).psw_addr == 0x12345
    (tmp_path / "short.key").write_bytes(bytes(31))
    rc, _, err = _cli(capsys, *base, "-o", tmp_path / "d", "-q", "--hdr-key", tmp_path / "short.key")
    assert rc == 1 and "32 bytes" in err
    pki_dir = MACHINES / "zuv-demo" / "pki"
    rc, _, err = _cli(capsys, "create", "--kernel", HELLO, "-k", DEMO_HKD, "-o", tmp_path / "e",
                      "--time", "2030-01-01",
                      "--crt", f"{pki_dir / 'ibm-z-signing-key.crt'},{pki_dir / 'intermediate-ca.crt'}",
                      "--crl", f"{pki_dir / 'ibm-z-signing-key.crl'},{pki_dir / 'intermediate-ca.crl'}",
                      "--crl", str(pki_dir / "root-ca.crl"))  # fmt: skip
    assert rc == 0 and err == "Successfully generated the Secure Execution image.\n"  # as s390-tools


def test_test_subcommand(image, tmp_path, capsys):
    rc, out, err = _cli(capsys, "test", image / "img", "-k", f"{DEMO_HKD},{OTHER_HKD}")
    assert rc == 0 and out == "" and err.count("✓") == 2  # on stderr, as pvimg's log
    rc, out, _ = _cli(capsys, "create", "-i", HELLO, "-k", OTHER_HKD, "-o", tmp_path / "other",
                      "--no-verify", "-q")
    rc, out, err = _cli(capsys, "test", tmp_path / "other", "-k", DEMO_HKD)
    assert rc == 1 and "✘" in err and "not included" in err
    # /sys/firmware/uv/keys/all: 15 lines of hex; the match in the backup slot
    (tmp_path / "keys").write_text("\n".join(["00" * 32, DEMO.host_key_hash.hex()] + ["00" * 32] * 13) + "\n")
    rc, out, err = _cli(capsys, "test", image / "img", f"--key-hashes={tmp_path / 'keys'}")
    assert rc == 0 and out == ""
    assert f" ✓ Backup host key hash 0x{DEMO.host_key_hash.hex()} is included" in err
    rc, _, err = _cli(capsys, "test", tmp_path / "other", f"--key-hashes={tmp_path / 'keys'}")
    assert rc == 1 and " ✘ None of the key hashes is included" in err
    bad = {"binary": bytes(480), "14 lines": ("00" * 32 + "\n") * 14, "short": ("00" * 31 + "\n") * 15,
           "odd": (" " + "00" * 32 + "\n") * 15, "not hex": ("zz" * 32 + "\n") * 15}  # fmt: skip
    for name, content in bad.items():
        f = tmp_path / name
        f.write_bytes(content) if isinstance(content, bytes) else f.write_text(content)
        rc, _, err = _cli(capsys, "test", image / "img", f"--key-hashes={f}")
        assert rc == 1 and len(err.strip().splitlines()) == 1, name
    # the FILE only after '=': a word after a bare --key-hashes is another argument (IBM's: 2)
    assert _cli(capsys, "test", image / "img", "--key-hashes", tmp_path / "keys")[0] == 2
    assert _cli(capsys, "test", image / "img")[0] == 2  # one of -k / --key-hashes
    assert _cli(capsys, "test", image / "img", "-k", DEMO_HKD, "--key-hashes")[0] == 2


def test_print_schema_describes_what_info_prints(image, capsys):
    import jsonschema

    rc, out, _ = _cli(capsys, "info", "--print-schema", "json")
    assert rc == 0
    schema = json.loads(out)
    jsonschema.Draft7Validator.check_schema(schema)
    for extra in ([], ["--hdr-key", image / "hdr.key"], ["--hdr-key", image / "hdr.key", "--show-secrets"]):
        doc = json.loads(_cli(capsys, "info", image / "img", "--format", "json", "-q", *extra)[1])
        jsonschema.validate(doc, schema)
        doc["data"]["surplus"] = 1
        with pytest.raises(jsonschema.ValidationError):
            jsonschema.validate(doc, schema)
    text = _cli(capsys, "info", "--print-schema", "text")[1]
    assert text == "No schema for human-readable format available!\n"
    for bad in (["--print-schema", "xml"], ["--print-schema"], ["--print-schema", "json", str(image / "img")],
                ["--print-schema", "json", "--format", "json"], []):  # fmt: skip
        assert _cli(capsys, "info", *bad)[0] == 2, bad


def test_version_and_bare_command(capsys):
    rc, out, _ = _cli(capsys, "--version")
    assert rc == 0 and out.startswith("pvimg version 2.")
    assert _cli(capsys, "version")[0] == 0
    assert _cli(capsys)[0] == 2
    assert _cli(capsys, "--version", "info", "x")[0] == 2


def test_genprotimg_is_pvimg_create_as_kvm_unit_tests_calls_it(tmp_path):
    """tools/genprotimg (a link to tools/pvimg.py) is ``pvimg create``, as s390-tools' genprotimg link is:
    the suite's Makefile asks its --help for --comm-key and --overwrite and then calls it so."""
    import subprocess

    tool = Path(__file__).resolve().parent.parent / "tools" / "genprotimg"
    helptext = subprocess.run([sys.executable, str(tool), "--help"], capture_output=True, text=True).stdout
    assert "--comm-key" in helptext and "--overwrite" in helptext and "--no-component-check" in helptext
    (tmp_path / "cck").write_bytes(bytes(range(32)))
    (tmp_path / "kernel").write_bytes(p.load_kernel(Path(HELLO).read_bytes())[0])
    args = ["--no-verify", "--overwrite", "--no-component-check", "--host-key-document", str(DEMO_HKD),
            "--comm-key", str(tmp_path / "cck"), "--x-pcf", "0x000000e0", "--image", str(tmp_path / "kernel"),
            "-o", str(tmp_path / "t.pv.bin")]  # fmt: skip
    r = subprocess.run([sys.executable, str(tool), *args], capture_output=True, text=True)
    assert r.returncode == 0, r.stderr
    opened = s.open_header(p.parse_image((tmp_path / "t.pv.bin").read_bytes()).header, DEMO.host_keys)
    assert opened.pcf == 0xE0 and opened.cck.expose() == bytes(range(32))


def test_a_host_key_document_given_twice_gets_two_key_slots_as_ibm_pvimg(tmp_path, capsys):
    """IBM's pvimg, pvattest and pvsecret 2.43 take ``-k A,A``: two identical key slots (zuv refused it)."""
    from emulator.attest.pvattest import pvattest_main
    from emulator.attest.pvsecret import pvsecret_main

    out = tmp_path / "img"
    rc, _, err = _cli(capsys, "create", "-i", HELLO, "-k", f"{DEMO_HKD},{OTHER_HKD}", "-k", DEMO_HKD,
                      "--no-verify", "-o", out, "-q")  # fmt: skip
    assert rc == 0, err
    rc, js, _ = _cli(capsys, "info", out, "--machine", "zuv-demo", "--format", "json")
    d = json.loads(js)["data"]
    assert rc == 0 and d["verified"] and d["nks"] == 3
    assert d["keyslots"][0]["phkh_hex"] == d["keyslots"][2]["phkh_hex"] != d["keyslots"][1]["phkh_hex"]
    both = ["-k", f"{DEMO_HKD},{DEMO_HKD}", "--no-verify", "-q"]
    assert pvattest_main(["create", *both, "-o", str(tmp_path / "r"), "-a", str(tmp_path / "a")]) == 0
    assert pvsecret_main(["create", *both, "--hdr", str(out), "-o", str(tmp_path / "s"), "meta"]) == 0
