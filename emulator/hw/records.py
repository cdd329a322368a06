"""The base of every architected fixed-layout record (control blocks, channel-subsystem blocks): big-endian
ctypes structures with a readable repr, and the field types they use."""

from __future__ import annotations

import ctypes

__all__ = ["Record", "u8", "u16", "u32", "u64"]

u8 = ctypes.c_uint8
u16 = ctypes.c_uint16
u32 = ctypes.c_uint32
u64 = ctypes.c_uint64


class Record(ctypes.BigEndianStructure):
    """A fixed-layout big-endian record; its repr names every integer field but the reserved ones."""

    _pack_ = 1

    def __repr__(self) -> str:
        parts = []
        for name, *_ in self._fields_:
            if name.startswith(("res", "_res")):
                continue
            v = getattr(self, name)
            if isinstance(v, int):
                parts.append(f"{name}={v:#x}")
        return f"{type(self).__name__}({', '.join(parts)})"
