#!/usr/bin/env python3
"""Build the bare-metal s390x guest images described by guests/*/guest.toml into guests/images/."""

from __future__ import annotations

import argparse
import dataclasses
import hashlib
import json
import subprocess
import sys
import tempfile
import tomllib
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
GUESTS = Path("guests")
RUNTIME = GUESTS / "runtime"
IMAGES = GUESTS / "images"
EXPECTED = GUESTS / "expected"
MANIFEST = "MANIFEST.json"

CC = "s390x-linux-gnu-gcc"
OBJCOPY = "s390x-linux-gnu-objcopy"
RUNTIME_SOURCES = ("crt0.S", "irq.c", "sclp.c", "printf.c", "string.c")
# Runtime units an image links only when its guest.toml names them in runtime_extra (secure-guest helpers that
# the other guests must not carry: linking them everywhere would change every image).
RUNTIME_EXTRA = ("shared.c",)
DEFAULT_LDSCRIPT = RUNTIME / "guest.ld"

# One set of flags for every guest, so that images are reproducible: no debug info, no build id, no
# unwind tables, source paths as given (relative to the repository), and no floating-point or vector
# registers (the interrupt handlers do not save them, and CR0 AFP/vector are off after reset).
BASE_FLAGS = [
    "-march=z13",
    "-O2",
    "-ffreestanding",
    "-nostdlib",
    "-static",
    "-fno-pic",
    "-no-pie",
    "-msoft-float",
    "-mno-vx",
    "-fno-stack-protector",
    "-fno-asynchronous-unwind-tables",
    "-fno-unwind-tables",
    "-fno-ident",
    "--param=min-pagesize=0",
    "-Wall",
    "-Wextra",
    "-Werror",
    "-Wno-unused-parameter",
    f"-ffile-prefix-map={REPO}=.",
    "-I",
    str(RUNTIME),
]
LINK_FLAGS = ["-Wl,--build-id=none", "-Wl,--no-warn-rwx-segments", "-Wl,-z,norelro"]


class GuestError(Exception):
    """A guest.toml is malformed or a build step failed."""


@dataclasses.dataclass(frozen=True)
class Image:
    """One [[image]] table of a guest.toml."""

    name: str
    directory: Path  # relative to the repository
    sources: tuple[Path, ...]
    runtime: bool
    runtime_extra: tuple[Path, ...]  # guests/runtime units linked ahead of the image's own objects
    ldscript: Path
    cflags: tuple[str, ...]
    smp: int
    append: str
    qemu: bool
    flat: bool

    @property
    def outputs(self) -> tuple[str, ...]:
        return (f"{self.name}.elf", f"{self.name}.bin") if self.flat else (f"{self.name}.elf",)

    @property
    def expected(self) -> Path:
        return EXPECTED / f"{self.name}.txt"


_KEYS = {"name", "sources", "runtime", "runtime_extra", "ldscript", "cflags", "smp", "append", "qemu", "flat"}


def _image_from_table(table: dict, directory: Path, where: str, root: Path) -> Image:
    unknown = set(table) - _KEYS
    if unknown:
        raise GuestError(f"{where}: unknown key(s) {sorted(unknown)}")

    def want(key: str, typ: type, default=None):
        if key not in table:
            if default is None:
                raise GuestError(f"{where}: missing key {key!r}")
            return default
        value = table[key]
        if not isinstance(value, typ) or (typ is int and isinstance(value, bool)):
            raise GuestError(f"{where}: {key!r} must be {typ.__name__}, not {type(value).__name__}")
        return value

    name = want("name", str)
    if not name or not all(c.isalnum() or c in "_-" for c in name):
        raise GuestError(f"{where}: bad image name {name!r}")
    sources = want("sources", list)
    if not sources or not all(isinstance(s, str) for s in sources):
        raise GuestError(f"{where}: 'sources' must be a non-empty list of paths")
    cflags = want("cflags", list, [])
    if not all(isinstance(f, str) for f in cflags):
        raise GuestError(f"{where}: 'cflags' must be a list of strings")
    smp = want("smp", int, 1)
    if not 1 <= smp <= 248:
        raise GuestError(f"{where}: 'smp' out of range: {smp}")
    runtime = want("runtime", bool, True)
    extra = want("runtime_extra", list, [])
    if not all(isinstance(u, str) for u in extra) or len(set(extra)) != len(extra):
        raise GuestError(f"{where}: 'runtime_extra' must be a list of distinct file names")
    unknown_units = [u for u in extra if u not in RUNTIME_EXTRA]
    if unknown_units:
        raise GuestError(
            f"{where}: unknown runtime unit(s) {unknown_units} (there are {list(RUNTIME_EXTRA)})"
        )
    if extra and not runtime:
        raise GuestError(f"{where}: 'runtime_extra' needs runtime = true")
    append = want("append", str, "")
    qemu = want("qemu", bool, True)
    flat = want("flat", bool, False)
    ldscript = directory / want("ldscript", str) if "ldscript" in table else DEFAULT_LDSCRIPT
    srcs = tuple(directory / s for s in sources)
    units = tuple(RUNTIME / u for u in extra)
    for path in (*srcs, *units, ldscript):
        if not str(path).endswith((".c", ".S", ".s", ".ld")):
            raise GuestError(f"{where}: unsupported source type {path}")
        if not (root / path).is_file():
            raise GuestError(f"{where}: no such file {path}")
    return Image(
        name=name,
        directory=directory,
        sources=srcs,
        runtime=runtime,
        runtime_extra=units,
        ldscript=ldscript,
        cflags=tuple(cflags),
        smp=smp,
        append=append,
        qemu=qemu,
        flat=flat,
    )


def load_images(root: Path = REPO) -> list[Image]:
    """All images of all guests/*/guest.toml, sorted by name; names must be unique."""
    images: list[Image] = []
    for toml_path in sorted((root / GUESTS).glob("*/guest.toml")):
        rel_dir = toml_path.parent.relative_to(root)
        try:
            data = tomllib.loads(toml_path.read_text())
        except tomllib.TOMLDecodeError as exc:
            raise GuestError(f"{toml_path.relative_to(root)}: {exc}") from None
        tables = data.get("image")
        if not isinstance(tables, list) or not tables:
            raise GuestError(f"{toml_path.relative_to(root)}: needs at least one [[image]] table")
        extra = set(data) - {"image"}
        if extra:
            raise GuestError(f"{toml_path.relative_to(root)}: unknown top-level key(s) {sorted(extra)}")
        for i, table in enumerate(tables):
            if not isinstance(table, dict):
                raise GuestError(f"{toml_path.relative_to(root)}: [[image]] {i} is not a table")
            images.append(_image_from_table(table, rel_dir, f"{toml_path.relative_to(root)} image {i}", root))
    names = [img.name for img in images]
    dups = sorted({n for n in names if names.count(n) > 1})
    if dups:
        raise GuestError(f"duplicate image name(s): {dups}")
    return sorted(images, key=lambda img: img.name)


def _run(cmd: list[str], root: Path = REPO) -> None:
    try:
        proc = subprocess.run(cmd, cwd=root, capture_output=True, text=True)
    except OSError as exc:
        raise GuestError(f"cannot run {cmd[0]}: {exc}") from None
    if proc.returncode != 0:
        raise GuestError(f"command failed ({proc.returncode}): {' '.join(cmd)}\n{proc.stderr.strip()}")


def toolchain_version() -> str:
    """First line of the cross compiler's --version (recorded in the manifest)."""
    try:
        proc = subprocess.run([CC, "--version"], capture_output=True, text=True, check=True)
    except (OSError, subprocess.CalledProcessError) as exc:
        raise GuestError(f"cannot run {CC}: {exc}") from None
    return proc.stdout.splitlines()[0].strip()


def _compile(src: Path, obj: Path, extra: tuple[str, ...] = (), root: Path = REPO) -> None:
    _run([CC, *BASE_FLAGS, *extra, "-c", "-o", str(obj), str(src)], root)


def build_image(
    img: Image,
    out_dir: Path,
    work: Path,
    runtime_objs: list[Path],
    root: Path = REPO,
    extra_objs: dict[Path, Path] | None = None,
) -> dict[str, str]:
    """Compile and link one image into out_dir; returns {output file name: sha256}. extra_objs maps each of
    img.runtime_extra to its compiled object."""
    objs = [(extra_objs or {})[unit] for unit in img.runtime_extra]
    obj_dir = work / img.name
    obj_dir.mkdir(parents=True, exist_ok=True)
    for i, src in enumerate(img.sources):
        obj = obj_dir / f"{i:02d}_{src.stem}.o"
        _compile(src, obj, ("-I", str(img.directory), *img.cflags), root)
        objs.append(obj)
    elf = out_dir / f"{img.name}.elf"
    link = [CC, *BASE_FLAGS, *img.cflags, *LINK_FLAGS, f"-Wl,-T,{img.ldscript}", "-o", str(elf)]
    link += [str(o) for o in objs]
    if img.runtime:
        link += [str(o) for o in runtime_objs]
    link.append("-lgcc")
    _run(link, root)
    if img.flat:
        _run([OBJCOPY, "-O", "binary", str(elf), str(out_dir / f"{img.name}.bin")], root)
    return {name: hashlib.sha256((out_dir / name).read_bytes()).hexdigest() for name in img.outputs}


def build_all(out_dir: Path, only: set[str] | None = None, root: Path = REPO) -> dict:
    """Build every image of the tree at root (or those named in only) into out_dir and, when all were built,
    write its MANIFEST.json there."""
    images = load_images(root)
    out_dir = out_dir.resolve()
    if only:
        missing = only - {img.name for img in images}
        if missing:
            raise GuestError(f"no such image(s): {sorted(missing)}")
    out_dir.mkdir(parents=True, exist_ok=True)
    manifest: dict = {"toolchain": toolchain_version(), "images": {}}
    with tempfile.TemporaryDirectory(prefix="zuv-guests-") as tmp:
        work = Path(tmp)
        runtime_objs = []
        chosen = [img for img in images if not only or img.name in only]
        if any(img.runtime for img in chosen):
            for src in RUNTIME_SOURCES:
                obj = work / f"rt_{Path(src).stem}.o"
                _compile(RUNTIME / src, obj, (), root)
                runtime_objs.append(obj)
        extra_objs: dict[Path, Path] = {}
        for unit in sorted({u for img in chosen for u in img.runtime_extra}):
            extra_objs[unit] = work / f"rt_{unit.stem}.o"
            _compile(unit, extra_objs[unit], (), root)
        for img in chosen:
            files = build_image(img, out_dir, work, runtime_objs, root, extra_objs)
            manifest["images"][img.name] = {
                "files": files,
                "smp": img.smp,
                "append": img.append,
                "qemu": img.qemu,
                "expected": str(img.expected) if (root / img.expected).is_file() else None,
            }
    if not only:
        (out_dir / MANIFEST).write_text(json.dumps(manifest, indent=2, sort_keys=True) + "\n")
    return manifest


def compare(fresh: Path, images_dir: Path) -> list[str]:
    """Differences between a fresh build in fresh and the images and manifest in images_dir."""
    problems = []
    committed_manifest = images_dir / MANIFEST
    if not committed_manifest.is_file():
        return [f"{committed_manifest} is missing"]
    try:
        old = json.loads(committed_manifest.read_text())
    except json.JSONDecodeError as exc:
        return [f"{committed_manifest}: not JSON: {exc}"]
    new = json.loads((fresh / MANIFEST).read_text())
    if old.get("toolchain") != new["toolchain"]:
        problems.append(f"toolchain differs: committed {old.get('toolchain')!r}, here {new['toolchain']!r}")
    old_images, new_images = old.get("images", {}), new["images"]
    for name in sorted(set(old_images) | set(new_images)):
        if name not in new_images:
            problems.append(f"{name}: in the manifest but no longer built")
            continue
        if name not in old_images:
            problems.append(f"{name}: built but not in the committed manifest")
        elif old_images[name] != new_images[name]:
            problems.append(f"{name}: manifest entry differs: {old_images[name]} != {new_images[name]}")
        for fname in new_images[name]["files"]:
            committed = images_dir / fname
            if not committed.is_file():
                problems.append(f"{fname}: not committed")
            elif committed.read_bytes() != (fresh / fname).read_bytes():
                problems.append(f"{fname}: committed image differs from a fresh build")
    return problems


def check(images_dir: Path) -> list[str]:
    """Rebuild into a temporary directory; return the differences from images_dir (empty when equal)."""
    with tempfile.TemporaryDirectory(prefix="zuv-guests-check-") as tmp:
        build_all(Path(tmp))
        return compare(Path(tmp), images_dir)


def update_expected(names: set[str], images_dir: Path) -> list[str]:
    """Run images under qemu (tools/qemu_run.py) and write guests/expected/NAME.txt with their output: the
    named ones, or, when names is empty, every qemu-comparable image that already has an expected file.
    Architecture-only images (qemu = false) are refused: their expected files are written by hand."""
    sys.path.insert(0, str(REPO / "tools"))
    from qemu_run import run_qemu  # noqa: PLC0415 (tools/ is not a package)

    images = {img.name: img for img in load_images()}
    missing = names - set(images)
    if missing:
        raise GuestError(f"no such image(s): {sorted(missing)}")
    if names:
        chosen = sorted(names)
    else:
        chosen = [n for n, img in images.items() if img.qemu and (REPO / img.expected).is_file()]
    written = []
    for name in chosen:
        img = images[name]
        if not img.qemu:
            raise GuestError(
                f"{name}: qemu = false; its expected output is the architected one (edit by hand)"
            )
        out = run_qemu(images_dir / f"{name}.elf", smp=img.smp, append=img.append, timeout=60)
        (REPO / img.expected).parent.mkdir(parents=True, exist_ok=True)
        (REPO / img.expected).write_text(out)
        written.append(str(img.expected))
    return written


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--check", action="store_true", help="rebuild in a temporary directory and compare")
    parser.add_argument(
        "--update-expected",
        action="store_true",
        help="write guests/expected/NAME.txt from qemu for the named images (default: those that have one)",
    )
    parser.add_argument("--out", type=Path, default=None, help="output directory (default guests/images)")
    parser.add_argument("--list", action="store_true", help="list the images and exit")
    parser.add_argument("names", nargs="*", help="build only these images (no manifest is written)")
    args = parser.parse_args(argv)
    try:
        if args.list:
            for img in load_images():
                qemu, flat = str(img.qemu).lower(), str(img.flat).lower()
                print(f"{img.name:14} smp={img.smp} qemu={qemu:5} flat={flat:5} append={img.append!r}")
            return 0
        out = args.out if args.out is not None else REPO / IMAGES
        if args.update_expected:
            for path in update_expected(set(args.names), out):
                print(f"wrote {path}")
            return 0
        if args.check:
            problems = check(out)
            for p in problems:
                print(f"build_guests: {p}", file=sys.stderr)
            if not problems:
                print("build_guests: committed images match a fresh build")
            return 1 if problems else 0
        manifest = build_all(out, set(args.names) or None)
        for name, entry in sorted(manifest["images"].items()):
            for fname, digest in sorted(entry["files"].items()):
                print(f"{digest[:16]}  {fname}")
        return 0
    except GuestError as exc:
        print(f"build_guests: {exc}", file=sys.stderr)
        return 1
    except Exception as exc:  # qemu_run.QemuError (imported lazily)
        if type(exc).__name__ != "QemuError":
            raise
        print(f"build_guests: qemu: {exc}", file=sys.stderr)
        return 1


if __name__ == "__main__":
    sys.exit(main())
