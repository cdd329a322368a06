"""The labs' checkpoints: each grades what the student produced (files, a console transcript, an answers
file) against facts taken from the real machine (a reference boot of the demo, the images' headers).

``answers.txt`` holds ``key = value`` lines (``#`` starts a comment); numbers may be hex (``0x3d``) or
decimal. Reference facts come from one deterministic console session of the bundled demo, run once per
process (``reference``), and from ``pvimg info`` of the images.
"""

from __future__ import annotations

import contextlib
import functools
import io
import json
import re
import xml.etree.ElementTree as ET
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

__all__ = ["LABS", "Lab", "Result", "grade", "reference", "read_answers"]

ROOT = Path(__file__).resolve().parents[2]
DEMO = ROOT / "guests" / "images" / "secure_demo.se"
_SVG = "{http://www.w3.org/2000/svg}"


@dataclass(frozen=True)
class Result:
    """One graded checkpoint."""

    name: str
    what: str
    ok: bool
    detail: str = ""


@dataclass(frozen=True)
class Reference:
    """Facts of a deterministic boot of the demo, stopped at the host's trapped read (and its export)."""

    shared: tuple[int, ...]  # guest addresses of the shared pages
    secret: int  # guest address of the page the host exported after the trap
    bounce: int  # the bounce buffer the guest announces
    unpacks: int  # Unpack calls of the boot
    boot_cmds: tuple[int, ...]  # the host's UV commands up to Set CPU State, in order, without repeats


@functools.cache
def reference() -> Reference:
    """Boot the demo in a console session (deterministic) to the host's read of the secret page."""
    from emulator.console.cli import open_session
    from emulator.console.commands import execute

    s = open_session(str(DEMO), deterministic=True)
    execute(s, "break secure")
    execute(s, "continue")
    pages = list(s.providers.page_map.pages())  # type: ignore[attr-defined]
    calls = s.uv_calls() or []  # type: ignore[attr-defined]
    text = execute(s, "console").plain()
    m = re.search(r"bounce buffer at (0x[0-9a-f]+)", text)
    cmds: list[int] = []
    for c in calls:
        if c.caller == "host" and (not cmds or cmds[-1] != c.cmd):
            cmds.append(c.cmd)
        if c.cmd == 0x0330:
            break
    return Reference(
        shared=tuple(sorted(p.guest_abs for p in pages if p.state == "shared" and p.guest_abs is not None)),
        secret=next(p.guest_abs for p in pages if p.state == "exported"),
        bounce=int(m.group(1), 16) if m else -1,
        unpacks=sum(c.cmd == 0x0301 for c in calls),
        boot_cmds=tuple(cmds),
    )


def read_answers(directory: Path) -> dict[str, str]:
    """The ``key = value`` lines of ``directory/answers.txt`` (empty when there is none)."""
    path = directory / "answers.txt"
    if not path.is_file():
        return {}
    out = {}
    for line in path.read_text(encoding="utf-8", errors="replace").splitlines():
        line = line.split("#", 1)[0].strip()
        if "=" in line:
            k, v = line.split("=", 1)
            out[k.strip().lower()] = v.strip()
    return out


def _int(text: str) -> int | None:
    try:
        return int(text.replace("_", ""), 0)
    except ValueError:
        return None


def _ints(text: str) -> list[int] | None:
    vals = [_int(t) for t in re.split(r"[,\s]+", text.strip()) if t]
    return None if not vals or any(v is None for v in vals) else sorted(v for v in vals if v is not None)


def pvimg_info(path: Path) -> dict | None:
    """``zuv pvimg info PATH --format json`` as a dict, or None when the file is no SE image."""
    from emulator.image.pvimg_cli import pvimg_main

    out = io.StringIO()
    with contextlib.redirect_stdout(out), contextlib.redirect_stderr(io.StringIO()):
        try:
            rc = pvimg_main(["info", str(path), "--format", "json"])
        except Exception:  # noqa: BLE001 - any unreadable file is simply not an image for the grader
            return None
    if rc != 0:
        return None
    try:
        return json.loads(out.getvalue())["data"]
    except (ValueError, KeyError):
        return None


def _svg(path: Path) -> tuple[ET.Element | None, str]:
    """(root, all text) of an SVG file, or (None, why not)."""
    if not path.is_file():
        return None, f"{path.name} is missing"
    try:
        root = ET.parse(path).getroot()
    except ET.ParseError as e:
        return None, f"{path.name} is not well-formed XML: {e}"
    if root.tag != f"{_SVG}svg":
        return None, f"{path.name} is not an SVG document"
    return root, " ".join("".join(t.itertext()) for t in root.iter(f"{_SVG}text"))


# -- checkpoint builders -------------------------------------------------------------------------------------

Check = Callable[[Path], tuple[bool, str]]


def answer(key: str, expected: Callable[[], object], kind: str = "int") -> Check:
    """The answer ``key`` equals ``expected()`` (an int, a list of ints, or a word, compared case-blind)."""

    def check(d: Path) -> tuple[bool, str]:
        given = read_answers(d).get(key, "")
        if not given:
            return False, f"answers.txt has no value for {key}"
        want = expected()
        got: object = _int(given) if kind == "int" else _ints(given) if kind == "ints" else given.lower()
        if kind == "word":
            want = str(want).lower()
        return (got == want, "" if got == want else f"{key} = {given} is not right")

    return check


def transcript(pattern: str, hint: str, name: str = "transcript.txt") -> Check:
    """``name`` exists and a line matches the regular expression ``pattern``."""

    def check(d: Path) -> tuple[bool, str]:
        path = d / name
        if not path.is_file():
            return False, f"{name} is missing (save the console's output there)"
        ok = re.search(pattern, path.read_text(encoding="utf-8", errors="replace"), re.MULTILINE) is not None
        return ok, "" if ok else hint

    return check


def svg_shows(name: str, words: tuple[str, ...], classes: tuple[str, ...] = ()) -> Check:
    """``name`` is a well-formed SVG whose text contains ``words`` and that has shapes of ``classes``: the
    console's pictures name each page run ``page-STATE-N`` and each UV call ``uvc-LANE-N`` (SVG ids)."""

    def check(d: Path) -> tuple[bool, str]:
        root, text = _svg(d / name)
        if root is None:
            return False, text
        missing = [w for w in words if w not in text]
        present = {part for el in root.iter() for part in el.get("id", "").split("-") if not part.isdigit()}
        missing += [f"class {c}" for c in classes if c not in present]
        return not missing, "" if not missing else f"{name} does not show {', '.join(missing)}"

    return check


def se_image_for_demo_machine(name: str) -> Check:
    """``name`` is an SE image with a key slot for the zuv-demo machine's host key."""

    def check(d: Path) -> tuple[bool, str]:
        from firmware.machine_identity import MachineIdentity

        info = pvimg_info(d / name)
        if info is None:
            return False, f"{name} is missing or not a Secure Execution image (zuv pvimg create)"
        want = MachineIdentity.bundled("zuv-demo").host_key_hash.hex()
        slots = [k.get("phkh_hex") for k in info.get("keyslots", [])]
        return want in slots, "" if want in slots else f"{name} has no key slot for zuv-demo's host key"

    return check


def _image_field(name: str, field: str) -> Callable[[Path], object]:
    def get(d: Path) -> object:
        info = pvimg_info(d / name)
        return None if info is None else info.get(field)

    return get


def answer_from_file(key: str, name: str, field: str) -> Check:
    """The answer ``key`` equals the header field ``field`` of the student's own image ``name``."""

    def check(d: Path) -> tuple[bool, str]:
        want = _image_field(name, field)(d)
        if want is None:
            return False, f"{name} is missing or not an SE image"
        return answer(key, lambda: want, "int" if isinstance(want, int) else "word")(d)

    return check


def _text_in_image(path: Path) -> str:
    """"yes" when hello.elf's greeting appears in the bytes of ``path`` (it does not in a sealed image)."""
    try:
        data = path.read_bytes()
    except OSError:
        return "(no image)"
    return "yes" if b"Hello from a bare-metal" in data else "no"


def _demo_field(field: str) -> Callable[[], object]:
    return lambda: (pvimg_info(DEMO) or {}).get(field)


@dataclass(frozen=True)
class Lab:
    """One lab: its number, title, one-line summary and checkpoints (name, what it checks, the check)."""

    number: int
    title: str
    summary: str
    checks: tuple[tuple[str, Check], ...]


def grade(lab: Lab, directory: Path) -> list[Result]:
    """Run every checkpoint of ``lab`` on ``directory``."""
    out = []
    for i, (what, check) in enumerate(lab.checks, 1):
        ok, detail = check(directory)
        out.append(Result(f"{lab.number}.{i}", what, ok, detail))
    return out


_R = reference
LABS: tuple[Lab, ...] = (
    Lab(
        1,
        "Data at rest",
        "SE image encryption; host-key documents and their chain",
        (
            ("hello.se is an SE image sealed for zuv-demo's host key", se_image_for_demo_machine("hello.se")),
            (
                "phkh: the host-key hash in hello.se's key slot",
                answer(
                    "phkh",
                    lambda: (
                        __import__("firmware.machine_identity", fromlist=["x"])
                        .MachineIdentity.bundled("zuv-demo")
                        .host_key_hash.hex()
                    ),
                    "word",
                ),
            ),
            (
                "encrypted_pages: how many pages of hello.se are encrypted (nep)",
                answer_from_file("encrypted_pages", "hello.se", "nep"),
            ),
            (
                "other_machine_rc: the rc when hello.se boots on zuv-other",
                answer("other_machine_rc", lambda: 0x0108),
            ),
            (
                "hello_text_visible: can the guest's greeting be read in hello.se (yes/no)",
                lambda d: answer("hello_text_visible", lambda: _text_in_image(d / "hello.se"), "word")(d),
            ),
            (
                "transcript.txt: hello.se ran to its end as a secure guest",
                transcript(
                    r"^CPU 0 .*state stopped\s+secure guest", "run start.zuv on hello.se and save the output"
                ),
            ),
        ),
    ),
    Lab(
        2,
        "Data in transit",
        "shared pages and bounce buffers: what the host sees",
        (
            (
                "shared_pages: the guest addresses of the shared pages",
                answer("shared_pages", lambda: list(_R().shared), "ints"),
            ),
            (
                "bounce_buffer: the guest address of the bounce buffer",
                answer("bounce_buffer", lambda: _R().bounce),
            ),
            (
                "host_reads_shared: can the host read a shared page (yes/no)",
                answer("host_reads_shared", lambda: "yes", "word"),
            ),
            (
                "transcript.txt: a dual of the bounce buffer",
                transcript(r"^\(zuv\) dual abs:(0x)?0*18000\b", "dual abs:0x18000 is not in the transcript"),
            ),
            (
                "transcript.txt: the host wrote into a shared page",
                transcript(
                    r"^stored [0-9a-f]+ at host:0x101[6-9]", "no 'set' into a shared page's host frame"
                ),
            ),
        ),
    ),
    Lab(
        3,
        "Data in use",
        "the PGM 0x3D trap and export/import of secure pages",
        (
            ("secret_page: the guest address of the secret page", answer("secret_page", lambda: _R().secret)),
            ("pgm_code: the program-interruption code of the host's read", answer("pgm_code", lambda: 0x3D)),
            ("export_uvc: the UV call that exports a page", answer("export_uvc", lambda: 0x0201)),
            ("import_uvc: the UV call that imports it again", answer("import_uvc", lambda: 0x0200)),
            ("transcript.txt: the trap seen", transcript(r"PGM 0x3D", "no PGM 0x3D in the transcript")),
            (
                "pages.svg: the page map with secure, shared, donated and exported pages",
                svg_shows("pages.svg", ("exported: 1 page",), ("secure", "shared", "donated", "exported")),
            ),
        ),
    ),
    Lab(
        4,
        "Secure boot and measurements",
        "Unpack, Verify and the header's digests",
        (
            (
                "unpack_calls: how many Unpack calls the boot made",
                answer("unpack_calls", lambda: _R().unpacks),
            ),
            ("nep: the number of encrypted pages in the header", answer("nep", _demo_field("nep"))),
            ("verify_uvc: the UV call that checks the measurement", answer("verify_uvc", lambda: 0x0302)),
            (
                "first_uvc_after_create_cpu: the host's next call",
                answer(
                    "first_uvc_after_create_cpu", lambda: _R().boot_cmds[_R().boot_cmds.index(0x0120) + 1]
                ),
            ),
            (
                "pld: the header's PLD (first 16 hex digits)",
                answer("pld", lambda: str(_demo_field("pld_hex")())[:16], "word"),
            ),
            (
                "uvlog.svg: the boot's UV calls",
                svg_shows("uvlog.svg", ("Unpack x", "Verify", "Set CPU State"), ("uvc",)),
            ),
        ),
    ),
    Lab(
        5,
        "Remote attestation and secret release",
        "a relying party releases a key only to a genuine guest",
        (
            (
                "verifier.txt: the output of zuv verifier demo",
                transcript(
                    r"^summary", "save the output of 'zuv verifier demo' in verifier.txt", "verifier.txt"
                ),
            ),
            ("released_runs: the runs that got the disk key", answer("released_runs", lambda: [1], "ints")),
            (
                "tampered_reason: the claim the tampered image failed",
                answer("tampered_reason", lambda: "pld", "word"),
            ),
            (
                "replay_reason: the claim a replayed response failed",
                answer("replay_reason", lambda: "nonce", "word"),
            ),
            ("attest_uvc: the guest's UV call for evidence", answer("attest_uvc", lambda: 0x1F20)),
        ),
    ),
    Lab(
        6,
        "The malicious hypervisor",
        "tamper with an exported page and watch the Ultravisor refuse it",
        (
            (
                "transcript.txt: the host overwrote the exported secret page",
                transcript(
                    r"^stored [0-9a-f]+ at host:0x1015000", "no 'set' into the secret page's host frame"
                ),
            ),
            (
                "transcript.txt: the import was refused",
                transcript(r"rc 0x0107.*integrity check", "the transcript does not show the refused import"),
            ),
            (
                "import_rc: the rc of Convert to Secure Storage after tampering",
                answer("import_rc", lambda: 0x0107),
            ),
            (
                "guest_state: the state the guest's CPU ends in",
                answer("guest_state", lambda: "check-stop", "word"),
            ),
            (
                "secret_leaked: did any plaintext byte of the secret reach the host (yes/no)",
                answer("secret_leaked", lambda: "no", "word"),
            ),
        ),
    ),
)
