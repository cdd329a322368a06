"""The hostkey tool (``zuv hostkey``): the emulated IBM Z PKI, machines and their host keys, revocation."""

from __future__ import annotations

import argparse
from pathlib import Path
from typing import Sequence

from emulator import options
from emulator.image import pki
from emulator.image.pvimg import ImageError, _bundled_pki_dir, _Parser, _read, _rng, _run, _time
from emulator.image.pvimg_cli import _List
from firmware.crypto import generate_p521_key, phkh
from firmware.machine_identity import BUNDLED, MachineIdentity

__all__ = ["hostkey_main"]


def _hostkey_parser() -> argparse.ArgumentParser:
    p = _Parser(prog="hostkey", description="Emulated IBM Z host keys, host-key documents and their PKI.")
    sub = p.add_subparsers(dest="command", required=True)
    s = sub.add_parser("init-pki", help="create root CA, intermediate CA, IBM Z signing key and CRLs")
    s.add_argument("directory")
    s.add_argument("--years", type=options.count("--years", 100), default=16,
                   help="validity of the PKI in years")  # fmt: skip
    m = sub.add_parser("new-machine", help="create a machine: host key pair and its host-key document")
    m.add_argument("directory", help="machine directory; its name is the machine name")
    m.add_argument("--pki", help="PKI directory (default: the bundled emulated PKI)")
    m.add_argument("--backup", action="store_true", help="also create a backup host key")
    r = sub.add_parser("revoke", help="revoke a host-key document in the PKI's CRL")
    r.add_argument("hkd")
    r.add_argument("--pki", required=True)
    v = sub.add_parser("verify", help="verify a host-key document: chain, CRL, validity, machine identity")
    v.add_argument("hkd")
    v.add_argument("--root-ca", help="trusted root CA (default: the PKI's or the bundled one)")
    # comma-separated lists too (-C A,B --crl X,Y,Z), as pvimg, pvattest and pvsecret take them
    v.add_argument("-C", "--cert", action=_List, default=[], help="certificate FILE[,FILE...] (repeat)")
    v.add_argument("--crl", action=_List, default=[], help="CRL FILE[,FILE...] (repeat)")
    v.add_argument("--pki", help="take root CA, certificates and CRLs from this PKI directory")
    v.add_argument("--machine", help="also check that the document carries this machine's host key")
    for q in (s, m, r, v):
        q.add_argument("--time", type=_time, help="the current time for issuing/verifying (ISO 8601)")
    for q in (s, m):
        q.add_argument("--seed", help="derive keys and serials from this seed (reproducible)")
    return p


def _hk_verify(a) -> int:
    hkd = pki.load_certificate(_read(a.hkd, "host-key document"), a.hkd)
    pki_dir = Path(a.pki) if a.pki else (_bundled_pki_dir() if not a.cert else None)
    certs = [c for path in a.cert for c in pki.load_certificates(_read(path, "certificate"), path)]
    crls = [pki.load_crl(_read(path, "CRL"), path) for path in a.crl]
    root_path = Path(a.root_ca) if a.root_ca else (pki_dir or _bundled_pki_dir()) / "root-ca.crt"
    if pki_dir is not None:
        loaded = pki.Pki.load(pki_dir)
        certs += [loaded.signing_cert, loaded.inter_cert]
        if not a.crl:
            crls += loaded.crls
    roots = pki.load_certificates(_read(root_path, "root CA"), str(root_path))
    info = pki.verify_host_key_document(hkd, certs=certs, roots=roots, crls=crls, now=a.time)
    if a.machine:
        m = (
            MachineIdentity.bundled(a.machine)
            if a.machine in BUNDLED and not Path(a.machine).is_dir()
            else None
        )
        m = m or MachineIdentity.load(a.machine)
        if phkh(info.public_key) != m.host_key_hash:
            raise pki.PkiError(f"the host-key document is not for machine {m.name}")
    print(f"{a.hkd}: OK: host key of {info.machine_name!r}, serial {info.serial:#x}, "
          f"phkh {phkh(info.public_key).hex()}, valid until {info.not_after:%Y-%m-%d}")
    return 0


def _hostkey(a) -> int:
    if a.command == "init-pki":
        if (Path(a.directory) / "root-ca.key").exists():  # a new root would orphan every machine it issued
            raise ImageError(
                f"{a.directory} already holds a PKI (its host-key documents would no longer verify)"
            )
        pki.create_pki(_rng(a.seed), a.time, a.years).save(Path(a.directory))
        print(f"created the emulated PKI in {a.directory}")
        return 0
    if a.command == "new-machine":
        d = Path(a.directory)
        if (d / "host-key.pem").exists():
            raise ImageError(f"{d} already holds a machine")
        issuer = pki.Pki.load(Path(a.pki) if a.pki else _bundled_pki_dir())
        rng = _rng(a.seed)
        key = generate_p521_key(rng)
        backup = generate_p521_key(rng) if a.backup else None
        doc = pki.issue_host_key_document(issuer, key.public_key(), d.resolve().name, rng, a.time)
        from cryptography.hazmat.primitives import serialization

        m = MachineIdentity(d.resolve().name, key, doc.public_bytes(serialization.Encoding.PEM), backup)
        m.save(d)
        print(f"created machine {m.name} in {d}: phkh {m.host_key_hash.hex()}")
        return 0
    if a.command == "revoke":
        hkd = pki.load_certificate(_read(a.hkd, "host-key document"), a.hkd)
        issuer = pki.Pki.load(Path(a.pki))
        issuer.revoke(hkd.serial_number, a.time)
        issuer.save(Path(a.pki))
        print(f"revoked serial {hkd.serial_number:#x}")
        return 0
    return _hk_verify(a)


def hostkey_main(argv: Sequence[str] | None = None) -> int:
    """``hostkey init-pki|new-machine|revoke|verify``: exit 0 ok, 1 not verified, 2 usage or bad input."""
    return _run("hostkey", argv, _hostkey_parser, _hostkey)
