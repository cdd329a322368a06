"""Machine identity: an emulated IBM Z machine's host key pairs, host-key document and name.

See spec 1, 8.8 and 13.10.

A machine directory holds PEM files::

    host-key.pem               EC P-521 private host key (EMULATION ONLY; the real one never leaves the UV)
    host-key-document.crt      X.509 host-key document (HKD) carrying the public half
    backup-host-key.pem        optional backup host key (usable for headers with PCF bit 62)

The machine name is the directory name. ``MachineIdentity.bundled()`` returns the demo machine
shipped in ``firmware/machines/zuv-demo`` (``bundled("zuv-other")`` a second one, for
wrong-machine tests).
"""

from __future__ import annotations

from dataclasses import dataclass
from importlib import resources
from pathlib import Path

from firmware.crypto import (
    CryptoError,
    EllipticCurvePrivateKey,
    EllipticCurvePublicKey,
    certificate_public_key,
    ec_pub_to_coords,
    phkh,
    private_key_from_pem,
    private_key_to_pem,
)

__all__ = [
    "MachineIdentityError",
    "MachineIdentity",
    "HOST_KEY_FILE",
    "HKD_FILE",
    "BACKUP_KEY_FILE",
    "BUNDLED",
]

HOST_KEY_FILE = "host-key.pem"
HKD_FILE = "host-key-document.crt"
BACKUP_KEY_FILE = "backup-host-key.pem"
#: Names of the machines shipped with the package.
BUNDLED = ("zuv-demo", "zuv-other")
_WARNING = (
    b"# EMULATION ONLY: host private key of an emulated IBM Z machine (zuv). Committed on purpose;\n"
    b"# it protects nothing real. A real host key never leaves the machine's Ultravisor.\n"
)


class MachineIdentityError(Exception):
    """A machine directory is missing a file, holds a malformed one, or its files do not belong together."""


@dataclass(frozen=True, repr=False)
class MachineIdentity:
    """One machine: name, installed host key, optional backup host key, and its host-key document (PEM)."""

    name: str
    host_key: EllipticCurvePrivateKey
    host_key_document: bytes
    backup_host_key: EllipticCurvePrivateKey | None = None

    def __post_init__(self) -> None:
        try:
            doc_key = certificate_public_key(self.host_key_document)
        except CryptoError as exc:
            raise MachineIdentityError(f"machine {self.name}: host-key document: {exc}") from None
        if ec_pub_to_coords(doc_key) != ec_pub_to_coords(self.host_key):
            raise MachineIdentityError(f"machine {self.name}: the host-key document is not for this host key")

    @property
    def public_key(self) -> EllipticCurvePublicKey:
        """Public half of the installed host key."""
        return self.host_key.public_key()

    @property
    def host_keys(self) -> tuple[EllipticCurvePrivateKey, ...]:
        """Installed key first, then the backup key: the argument ``open_header`` takes."""
        return (self.host_key,) + ((self.backup_host_key,) if self.backup_host_key is not None else ())

    @property
    def host_key_hash(self) -> bytes:
        """PHKH of the installed host key (Query Ultravisor Keys index 0)."""
        return phkh(self.host_key)

    @property
    def key_hashes(self) -> tuple[bytes, ...]:
        """PHKHs in Query Ultravisor Keys order: installed key, then backup key (if any)."""
        return tuple(phkh(k) for k in self.host_keys)

    def __repr__(self) -> str:
        backup = ", backup key" if self.backup_host_key is not None else ""
        return f"MachineIdentity({self.name!r}, phkh={self.host_key_hash.hex()[:16]}...{backup})"

    @classmethod
    def load(cls, directory: str | Path) -> MachineIdentity:
        """Load a machine from its directory of PEM files.

        Raises:
            MachineIdentityError: missing or malformed file, or an HKD for another key.
        """
        d = Path(directory)
        if not d.is_dir():
            raise MachineIdentityError(
                f"no machine {str(directory)!r}: not a machine directory "
                "(zuv hostkey new-machine DIR makes one) "
                f"nor a bundled machine ({', '.join(BUNDLED)})"
            )

        def read(name: str) -> bytes:
            try:
                return (d / name).read_bytes()
            except OSError as exc:
                raise MachineIdentityError(f"machine {d.name}: cannot read {name}: {exc.strerror}") from None

        try:
            host_key = private_key_from_pem(read(HOST_KEY_FILE))
            backup = private_key_from_pem(read(BACKUP_KEY_FILE)) if (d / BACKUP_KEY_FILE).exists() else None
        except CryptoError as exc:
            raise MachineIdentityError(f"machine {d.name}: {exc}") from None
        return cls(name=d.name, host_key=host_key, host_key_document=read(HKD_FILE), backup_host_key=backup)

    def save(self, directory: str | Path) -> Path:
        """Write the machine's files into directory (created if needed); returns the directory."""
        d = Path(directory)
        d.mkdir(parents=True, exist_ok=True)
        (d / HOST_KEY_FILE).write_bytes(_WARNING + private_key_to_pem(self.host_key))
        (d / HKD_FILE).write_bytes(self.host_key_document)
        if self.backup_host_key is not None:
            (d / BACKUP_KEY_FILE).write_bytes(_WARNING + private_key_to_pem(self.backup_host_key))
        return d

    @classmethod
    def bundled(cls, name: str = "zuv-demo") -> MachineIdentity:
        """A machine shipped with the package: ``zuv-demo`` (default) or ``zuv-other``."""
        if name not in BUNDLED:
            raise MachineIdentityError(f"no bundled machine {name!r} (have {', '.join(BUNDLED)})")
        with resources.as_file(resources.files("firmware") / "machines" / name) as path:
            return cls.load(path)

    @staticmethod
    def bundled_dir(name: str = "zuv-demo") -> Path:
        """Filesystem path of a bundled machine directory (the package is installed as files)."""
        return Path(str(resources.files("firmware") / "machines" / name))
