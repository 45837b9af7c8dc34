"""``trainer.max_time`` as Lightning's ``Timer`` reads it, in seconds (the schema checks it,
the resumed-run check compares a run's time with it)."""

from __future__ import annotations

import re
from datetime import timedelta


def max_time_seconds(value: str | dict[str, float]) -> float:
    """``trainer.max_time`` in seconds: ``"DD:HH:MM:SS"`` or ``{minutes: 10, ...}`` (what
    Lightning's ``Timer`` takes); a ``ValueError`` with an example for anything else.

    >>> max_time_seconds("00:00:10:00"), max_time_seconds({"hours": 1, "minutes": 30})
    (600, 5400.0)
    """
    if isinstance(value, str):
        if not re.fullmatch(r"\d+:\d\d:\d\d:\d\d", value.strip()):
            raise ValueError("expected DD:HH:MM:SS, e.g. '00:00:10:00' for ten minutes")
        parts = value.strip().split(":")
        return sum(int(p) * f for p, f in zip(parts, (86400, 3600, 60, 1), strict=True))
    unknown = sorted(set(value) - (units := {"days", "hours", "minutes", "seconds"}))
    if unknown:
        raise ValueError(f"unknown unit(s) {unknown}; expected some of {sorted(units)}, e.g. "
                         "{minutes: 10}")  # fmt: skip
    return timedelta(**value).total_seconds()
