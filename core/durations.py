"""Durations written as people write them: 90m, 12h, 7d, 2w."""

from __future__ import annotations

import re

from core.errors import InputError

_DURATION = re.compile(r"^\s*(\d+(?:\.\d+)?)\s*([mhdw])\s*$", re.IGNORECASE)
_UNIT_MS = {"m": 60_000, "h": 3_600_000, "d": 86_400_000, "w": 7 * 86_400_000}


def parse_duration_ms(text: str) -> int:
    """'7d' -> 604800000. Raises InputError with the accepted form on anything else."""
    m = _DURATION.match(text)
    if not m:
        raise InputError(
            f"invalid duration {text!r}; expected a number and a unit m/h/d/w, e.g. 7d or 12h"
        )
    value = int(float(m.group(1)) * _UNIT_MS[m.group(2).lower()])
    if value <= 0:
        raise InputError(f"duration {text!r} must be positive")
    return value
