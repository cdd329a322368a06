"""The console's one error type: a mistake in what the user typed, reported as one line."""

from __future__ import annotations

__all__ = ["ConsoleError"]


class ConsoleError(Exception):
    """A command cannot be carried out; the message is the one line the user sees."""
