"""Export/import sealing of secure pages: the keys and checks behind the Ultravisor's page table.

Each secure configuration keeps its page table in plain maps (``SecureConfig``): which frame holds each
secure page (``frames`` and ``secure``) and, for each exported page, the counter and the integrity value of
the ciphertext the host was given (``exports``; ``secure-execution.md`` 6.5: "an integrity value plus page
index and a counter in a UV-internal table"). This module seals and opens those pages.

Sealing (zuv's choice where the sources are silent, 13.4): the exported page is AES-256-XTS ciphertext under
a per-configuration key, with the tweak ``component | nonce`` the dump format describes (11.2), where the
16-byte component is ``u64 gaddr || u64 counter`` and the per-configuration nonce only uses bits the component
never uses, so the OR is injective. The integrity value is a GMAC (AES-256-GCM with empty plaintext) over
the ciphertext, with the component as its 16-byte IV, under a key of the configuration's own that serves
nothing else: the key binds the configuration, the IV the guest address and the counter. It is kept by the
UV and never given to the host; the counter never repeats within a configuration, so no IV is used twice
under one key. Import recomputes it over what the host hands back: a modified page, a page from another
address or another configuration, and an older export of the same page (its counter is no longer the
recorded one) all fail the same single check.
"""

from __future__ import annotations

import ctypes
import struct
from collections.abc import Callable
from typing import Final

from cryptography.exceptions import InvalidTag
from cryptography.hazmat.primitives.ciphers import Cipher, algorithms, modes
from cryptography.hazmat.primitives.ciphers.aead import AESGCM

from firmware.crypto import EvpXts, evp_xts

try:  # the Rust binding behind ``Cipher.encryptor`` (XtsKey checks it against the public path)
    from cryptography.hazmat.bindings._rust import openssl as _rust_openssl
except ImportError:  # pragma: no cover - another cryptography layout: the public path only
    _rust_openssl = None

__all__ = ["PageSealer", "XtsKey", "component", "COUNTER_LIMIT"]

PAGE: Final = 4096
_COMPONENT: Final = struct.Struct(">QQ")
#: The counter and the guest address stay below 2**48 so that the nonce's top 16 bits of each half never
#: collide with them (and the first word of a component is never the 0xFFFFFFFF "special" marker).
COUNTER_LIMIT: Final = 1 << 48
_NONCE_MASK: Final = (0xFFFF << 48, 0xFFFF << 48)
_KAT_TWEAKS: Final = (bytes(range(16)), bytes(range(16, 32)))


class XtsKey:
    """An AES-256-XTS key for many 4 KiB data units (export pages, Unpack pages), each with its own tweak.

    ``cryptography``'s public path costs ~8 us per unit before any byte is encrypted: ``modes.XTS()``
    validates the tweak (~2 us), ``Cipher()`` validates algorithm and mode, and ``Cipher.encryptor()``
    makes an ABC ``isinstance`` check (~2.5 us) before the Rust binding builds the OpenSSL context. The
    tweak is the only per-unit input, so two shortcuts serve the units, the first that passes a known-answer
    check at construction (fresh public ``Cipher`` objects, two tweaks, both directions):

    * libcrypto's EVP interface with one context per direction keyed once (``crypto.EvpXts``, ~1.2 us per
      page): each unit only sets its tweak;
    * ``cryptography``'s Rust binding asked for a context per unit directly, with one validated
      ``modes.XTS`` object whose tweak is swapped in (~1.7 us: the binding's ABC checks and property reads
      run in Python).

    Both lean on internals (a library found at run time, or ``cryptography``'s binding); if neither gives
    the known answers, every unit takes the public path with a fresh ``Cipher``. Not for concurrent use
    (the Ultravisor runs one UVC at a time).

    Raises:
        ValueError: a key ``cryptography``/OpenSSL refuses (wrong length, equal halves).
    """

    __slots__ = ("_aes", "_mode", "_enc", "_dec", "_fast", "_evp")

    def __init__(self, key: bytes) -> None:
        self._aes = algorithms.AES(key)
        self._mode = modes.XTS(_KAT_TWEAKS[0])
        Cipher(self._aes, self._mode)  # validates the key for XTS (ValueError for refused keys)
        self._fast = False
        self._evp: EvpXts | None = None
        self._enc = self._dec = None
        block = bytes(range(64))
        ref = [Cipher(self._aes, modes.XTS(t)).encryptor().update(block) for t in _KAT_TWEAKS]
        self._evp = evp_xts(key)
        if self._evp is not None and not self._answers(ref, block):
            self._evp = None
        if self._evp is not None:
            return
        binding = getattr(getattr(_rust_openssl, "ciphers", None), "create_encryption_ctx", None)
        if binding is not None and "_tweak" in vars(self._mode):
            self._enc = binding
            self._dec = _rust_openssl.ciphers.create_decryption_ctx
            self._fast = True
            self._fast = self._answers(ref, block)

    def _answers(self, ref: list[bytes], block: bytes) -> bool:
        """True if the shortcut in place encrypts and decrypts ``block`` under the two known-answer tweaks
        as the public path did (``ref``)."""
        try:
            ok = ref[0] != ref[1] and [self.encrypt(t, block) for t in _KAT_TWEAKS] == ref
            ok = ok and [self.decrypt(t, c) for t, c in zip(_KAT_TWEAKS, ref)] == [block, block]
            if ok and self._evp is not None:  # and a page each way, one of them decrypted where it lies
                page, tweak = bytes(range(256)) * 16, _KAT_TWEAKS[1]
                ct = Cipher(self._aes, modes.XTS(tweak)).encryptor().update(page)
                buf = ctypes.create_string_buffer(ct, PAGE)
                ok = self.encrypt(tweak, page) == ct and self.decrypt(tweak, ct) == page
                ok = ok and self.decrypt_in_place(tweak, ctypes.addressof(buf)) and buf.raw == page
            return ok
        except Exception:  # noqa: BLE001 - any failure of the shortcut means: use the public path
            return False

    def __repr__(self) -> str:
        return "XtsKey(<redacted>)"

    def encrypt(self, tweak: bytes, data: bytes | memoryview) -> bytes:
        """One data unit encrypted with the 16-byte ``tweak`` (XTS: nothing is left for ``finalize``)."""
        evp = self._evp
        if evp is not None and len(tweak) == 16:
            return evp.encrypt(tweak, data)
        if self._fast and len(tweak) == 16:
            mode = self._mode
            mode._tweak = tweak  # noqa: SLF001 - checked at construction (known answers)
            return self._enc(self._aes, mode).update(data)  # type: ignore[misc]
        return bytes(Cipher(self._aes, modes.XTS(tweak)).encryptor().update(data))

    def decrypt_in_place(self, tweak: bytes, address: int) -> bool:
        """Decrypt the 4 KiB page at process ``address`` in place where the libcrypto shortcut serves (True);
        False: nothing was done, ``decrypt`` it."""
        evp = self._evp
        if evp is None:
            return False
        evp.decrypt_at(tweak, address)
        return True

    def encrypt_in_place(self, tweak: bytes, address: int) -> None:
        """Encrypt the 4 KiB page at process ``address`` in place (libcrypto's context where it serves,
        else through ``encrypt`` and a copy back)."""
        evp = self._evp
        if evp is not None:
            evp.encrypt_at(tweak, address)
        else:
            ctypes.memmove(address, self.encrypt(tweak, ctypes.string_at(address, PAGE)), PAGE)

    def decrypt_into(self, tweak: bytes, data: bytes, address: int) -> None:
        """Decrypt the 4 KiB unit ``data`` (bytes) to the page at process ``address``."""
        evp = self._evp
        if evp is not None:
            evp.decrypt_into(tweak, data, address)
        else:
            ctypes.memmove(address, self.decrypt(tweak, data), PAGE)

    def decrypt(self, tweak: bytes, data: bytes | memoryview) -> bytes:
        """One data unit decrypted with the 16-byte ``tweak``."""
        evp = self._evp
        if evp is not None and len(tweak) == 16:
            return evp.decrypt(tweak, data)
        if self._fast and len(tweak) == 16:
            mode = self._mode
            mode._tweak = tweak  # noqa: SLF001 - checked at construction (known answers)
            return self._dec(self._aes, mode).update(data)  # type: ignore[misc]
        return bytes(Cipher(self._aes, modes.XTS(tweak)).decryptor().update(data))


def component(gaddr: int, counter: int) -> bytes:
    """The 16-byte tweak component of an exported page (the value a storage-state dump reports)."""
    return _COMPONENT.pack(gaddr & ~0xFFF, counter)


class PageSealer:
    """Per-configuration export keys and the seal/open operations (keys never leave this object).

    Args:
        rng: ``rng(n) -> n random bytes`` (injected for reproducible tests).

    The XTS key (``XtsKey``) and the GMAC key (an ``AESGCM`` object) are made once; each seal/open then
    costs one XTS context (its tweak differs per export) and one GMAC over the page (~1.7 us, against
    ~3.5 us for the HMAC-SHA-256 of the first version).
    """

    __slots__ = ("_xts", "_nonce", "_nonce_hi", "_nonce_lo", "_key", "_gmac")

    def __init__(self, rng: Callable[[int], bytes]) -> None:
        key = rng(64)
        while key[:32] == key[32:]:  # XTS refuses equal halves
            key = rng(64)
        self._xts = key
        hi, lo = struct.unpack(">QQ", rng(16))
        self._nonce_hi, self._nonce_lo = hi & _NONCE_MASK[0], lo & _NONCE_MASK[1]
        self._nonce = _COMPONENT.pack(self._nonce_hi, self._nonce_lo)
        self._key = XtsKey(self._xts)
        self._gmac = AESGCM(rng(32))  # this configuration's, for export integrity values only

    def __repr__(self) -> str:
        return "PageSealer(<keys redacted>)"

    def tweak(self, comp: bytes) -> bytes:
        """The XTS tweak for a component: component OR nonce (``secure-execution.md`` 11.2)."""
        hi, lo = _COMPONENT.unpack(comp)
        return _COMPONENT.pack(hi | self._nonce_hi, lo | self._nonce_lo)

    def _component(self, gaddr: int, counter: int) -> tuple[bytes, bytes]:
        page = gaddr & ~0xFFF
        tweak = _COMPONENT.pack(page | self._nonce_hi, counter | self._nonce_lo)
        return _COMPONENT.pack(page, counter), tweak

    def seal(self, plaintext: bytes | memoryview, gaddr: int, counter: int) -> tuple[bytes, bytes]:
        """Encrypt one page for export; returns ``(ciphertext, integrity value)``."""
        comp, tweak = self._component(gaddr, counter)
        ct = self._key.encrypt(tweak, plaintext)
        return ct, self._gmac.encrypt(comp, b"", ct)

    def open(self, ciphertext: bytes | memoryview, gaddr: int, counter: int, mac: bytes) -> bytes | None:
        """Check and decrypt an exported page; None if the integrity check fails (one result for all
        causes)."""
        comp, tweak = self._component(gaddr, counter)
        try:
            self._gmac.decrypt(comp, mac, ciphertext)
        except InvalidTag:
            return None
        return self._key.decrypt(tweak, ciphertext)

    def seal_at(self, address: int, page: memoryview, gaddr: int, counter: int) -> bytes:
        """``seal`` of the 4 KiB page at process ``address`` (``page``: a view of the same bytes) in place:
        the page holds the ciphertext afterwards; returns the integrity value, computed over it there."""
        comp, tweak = self._component(gaddr, counter)
        key = self._key
        evp = key._evp  # noqa: SLF001 - ``XtsKey.encrypt_in_place``'s libcrypto path, inline (every export)
        if evp is not None:
            evp.encrypt_at(tweak, address)
        else:
            key.encrypt_in_place(tweak, address)
        return self._gmac.encrypt(comp, b"", page)

    def check(self, ciphertext: bytes, gaddr: int, counter: int, mac: bytes) -> bool:
        """True if ``ciphertext`` is the one sealed for ``gaddr`` with ``counter`` under the integrity value
        ``mac`` (the check of ``open``)."""
        try:
            self._gmac.decrypt(_COMPONENT.pack(gaddr & ~0xFFF, counter), mac, ciphertext)
        except InvalidTag:
            return False
        return True

    def open_into(self, ciphertext: bytes, gaddr: int, counter: int, address: int) -> None:
        """Decrypt a ``check``-ed exported page (bytes: the copy that was checked) to the page at process
        ``address``."""
        key = self._key
        tweak = self._component(gaddr, counter)[1]
        evp = key._evp  # noqa: SLF001 - ``XtsKey.decrypt_into``'s libcrypto path, inline (every import)
        if evp is not None:
            evp.decrypt_into(tweak, ciphertext, address)
        else:
            key.decrypt_into(tweak, ciphertext, address)

    def dump_material(self) -> tuple[bytes, bytes]:
        """The tweak nonce and XTS key, for the sealed completion data of a dump (only ever sealed)."""
        return self._nonce, self._xts
