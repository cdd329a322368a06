"""Guest images: a fresh build reproduces the committed images and MANIFEST.json; guest.toml validation."""

import json
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT / "tools"))

import build_guests  # noqa: E402

IMAGES = ROOT / "guests" / "images"
toolchain = pytest.mark.toolchain

needs_gcc = pytest.mark.skipif(shutil.which(build_guests.CC) is None, reason="no s390x cross toolchain")


@pytest.fixture(scope="module")
def fresh(tmp_path_factory):
    """One fresh build of every guest, shared by the tests that compare against it."""
    out = tmp_path_factory.mktemp("fresh")
    build_guests.build_all(out)
    return out


@toolchain
@needs_gcc
def test_fresh_build_matches_committed_images_and_manifest(fresh):
    assert build_guests.compare(fresh, IMAGES) == []


@toolchain
@needs_gcc
def test_compare_reports_a_changed_image(fresh, tmp_path):
    committed = tmp_path / "images"
    shutil.copytree(IMAGES, committed)
    elf = committed / "hello.elf"
    data = bytearray(elf.read_bytes())
    data[-1] ^= 0xFF
    elf.write_bytes(bytes(data))
    problems = build_guests.compare(fresh, committed)
    assert any("hello.elf" in p and "differs" in p for p in problems), problems


@toolchain
@needs_gcc
def test_compare_reports_a_missing_manifest_entry(fresh, tmp_path):
    committed = tmp_path / "images"
    shutil.copytree(IMAGES, committed)
    manifest = json.loads((committed / "MANIFEST.json").read_text())
    del manifest["images"]["svc"]
    (committed / "MANIFEST.json").write_text(json.dumps(manifest))
    assert "svc: built but not in the committed manifest" in build_guests.compare(fresh, committed)


def test_manifest_lists_every_image_with_hashes_and_run_parameters():
    manifest = json.loads((IMAGES / "MANIFEST.json").read_text())
    images = {img.name: img for img in build_guests.load_images()}
    assert set(manifest["images"]) == set(images)
    for name, entry in manifest["images"].items():
        img = images[name]
        assert set(entry["files"]) == set(img.outputs)
        assert all(len(h) == 64 for h in entry["files"].values())
        assert (entry["smp"], entry["append"], entry["qemu"]) == (img.smp, img.append, img.qemu)
        assert entry["expected"] == (str(img.expected) if (ROOT / img.expected).is_file() else None)


def test_every_expected_file_belongs_to_an_image_and_ends_with_the_exit_line():
    names = {img.name for img in build_guests.load_images()}
    for path in sorted((ROOT / "guests" / "expected").glob("*.txt")):
        assert path.stem in names, f"{path.name}: no image of that name"
        lines = path.read_text().splitlines()
        assert lines and lines[-1].startswith("EXIT: STATUS="), path.name
        assert lines[-1] == "EXIT: STATUS=1", f"{path.name}: the guest reports failure"


def test_architecture_only_guests_are_marked_and_have_expected_files():
    images = {img.name: img for img in build_guests.load_images()}
    for name in ("keys", "pgm_arch"):
        assert images[name].qemu is False
        assert (ROOT / images[name].expected).is_file()


def _write_guest(root: Path, name: str, toml: str, files: dict[str, str]) -> None:
    ld = root / build_guests.DEFAULT_LDSCRIPT
    ld.parent.mkdir(parents=True, exist_ok=True)
    ld.write_text("")
    d = root / "guests" / name
    d.mkdir(parents=True)
    (d / "guest.toml").write_text(toml)
    for fname, text in files.items():
        (d / fname).write_text(text)


@pytest.mark.parametrize(
    "toml, message",
    [
        ('[[image]]\nname = "a"\nsources = ["a.S"]\ncolour = "red"\n', "unknown key"),
        ('[[image]]\nsources = ["a.S"]\n', "missing key 'name'"),
        ('[[image]]\nname = "a"\nsources = "a.S"\n', "'sources' must be list"),
        ('[[image]]\nname = "a"\nsources = ["a.S"]\nsmp = 0\n', "'smp' out of range"),
        ('[[image]]\nname = "a"\nsources = ["a.S"]\nqemu = "yes"\n', "'qemu' must be bool"),
        ('[[image]]\nname = "a"\nsources = ["missing.S"]\n', "no such file"),
        ('[[image]]\nname = "a b"\nsources = ["a.S"]\n', "bad image name"),
        ("[[image]\n", "guest.toml"),
        ('name = "a"\n', "needs at least one [[image]]"),
        (
            '[[image]]\nname = "a"\nsources = ["a.S"]\nruntime_extra = "shared.c"\n',
            "'runtime_extra' must be list",
        ),
        ('[[image]]\nname = "a"\nsources = ["a.S"]\nruntime_extra = ["irq.c"]\n', "unknown runtime unit"),
        ('[[image]]\nname = "a"\nsources = ["a.S"]\nruntime_extra = ["shared.c", "shared.c"]\n', "distinct"),
        (
            '[[image]]\nname = "a"\nsources = ["a.S"]\nruntime = false\nruntime_extra = ["shared.c"]\n',
            "needs runtime",
        ),
    ],
)
def test_malformed_guest_toml_is_refused_with_a_clear_message(tmp_path, toml, message):
    _write_guest(tmp_path, "g", toml, {"a.S": ""})
    with pytest.raises(build_guests.GuestError, match=message.replace("[", r"\[").replace("]", r"\]")):
        build_guests.load_images(tmp_path)


def test_runtime_extra_units_are_linked_only_into_the_images_that_name_them():
    from elftools.elf.elffile import ELFFile

    def symbols(name: str) -> set[str]:
        with (IMAGES / f"{name}.elf").open("rb") as f:
            return {sym.name for sym in ELFFile(f).get_section_by_name(".symtab").iter_symbols()}

    images = {img.name: img for img in build_guests.load_images()}
    wanted = {"share", "zvq_notify", "zvq_init", "zvq_submit"}
    for name in ("secure_demo", "attest_demo"):
        assert images[name].runtime_extra == (build_guests.RUNTIME / "shared.c",)
        assert wanted <= symbols(name), name
    for name in ("hello", "bench_alu", "echo"):
        assert images[name].runtime_extra == ()
        assert not wanted & symbols(name), name


def test_duplicate_image_names_are_refused(tmp_path):
    for d in ("g1", "g2"):
        _write_guest(tmp_path, d, '[[image]]\nname = "same"\nsources = ["a.S"]\n', {"a.S": ""})
    with pytest.raises(build_guests.GuestError, match="duplicate image name"):
        build_guests.load_images(tmp_path)


FLAT_LD = """ENTRY(_start)
SECTIONS { . = 0; .text : { *(.text) } /DISCARD/ : { *(.note*) *(.comment) } }
"""
FLAT_S = """    .text
    .globl _start
_start:
    .long 0x00080000, 0x80010000   /* short PSW: 31-bit, address 0x10000 */
    .fill 8, 1, 0xab
"""


@toolchain
@needs_gcc
def test_flat_image_without_runtime_gets_a_raw_binary(tmp_path):
    _write_guest(
        tmp_path,
        "loader",
        '[[image]]\nname = "loader"\nsources = ["loader.S"]\nruntime = false\nflat = true\n'
        'ldscript = "loader.ld"\nqemu = false\n',
        {"loader.S": FLAT_S, "loader.ld": FLAT_LD},
    )
    out = tmp_path / "out"
    manifest = build_guests.build_all(out, root=tmp_path)
    entry = manifest["images"]["loader"]
    assert set(entry["files"]) == {"loader.elf", "loader.bin"}
    assert (out / "loader.bin").read_bytes() == bytes.fromhex("0008000080010000") + b"\xab" * 8
    assert json.loads((out / "MANIFEST.json").read_text())["images"]["loader"]["qemu"] is False


@toolchain
@needs_gcc
def test_command_line_check_succeeds_on_the_committed_tree():
    proc = subprocess.run(
        [sys.executable, str(ROOT / "tools" / "build_guests.py"), "--list"], capture_output=True, text=True
    )
    assert proc.returncode == 0, proc.stderr
    assert "hello" in proc.stdout and "sigp" in proc.stdout and "smp=2" in proc.stdout
