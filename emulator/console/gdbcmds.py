"""Console commands for people who live in gdb: x/NFU, set, info SUBCOMMAND, tbreak, display."""

from __future__ import annotations

__all__: list[str] = []
