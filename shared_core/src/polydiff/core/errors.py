"""The project's error type for unusable input: a file or an option that a check refused.

Every check of user input raises :class:`InputError` with a message that names the file or the
option and the problem; the command line prints it as one line (exit code 2), while any other
exception (a bug) keeps its traceback. It is a ValueError, so callers that catch ValueError
keep working.
"""

from __future__ import annotations

from typing import Any


class InputError(ValueError):
    """A file or option that cannot be used; the message names it and says why."""


def check_number(name: str, value: Any, *, positive: bool = False, minimum: float | None = None):
    """``value`` as a real number (not a bool or a string), > 0 if ``positive``, >= ``minimum``
    if given; else an InputError naming ``name``."""
    if isinstance(value, bool) or not isinstance(value, int | float):
        raise InputError(f"{name} must be a number, got {value!r}")
    if positive and not value > 0:
        raise InputError(f"{name} must be positive, got {value!r}")
    if minimum is not None and not value >= minimum:
        raise InputError(f"{name} must be >= {minimum:g}, got {value!r}")
    return value


__all__ = ["InputError", "check_number"]
