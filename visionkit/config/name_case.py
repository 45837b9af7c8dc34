"""The one rule for the names a config picks from a fixed list (an optimizer, a schedule, a
logger, a precision): taken in any case, as torch, timm and Lightning spell them (``SGD``,
``AdamW``, ``CSV``, ``BF16-mixed``), and saved in the canonical (lower-case) spelling.

>>> canonical("BF16-Mixed", ("bf16-mixed", "16-mixed")), canonical("fp8", ("bf16-mixed",))
('bf16-mixed', 'fp8')
"""

from __future__ import annotations

from collections.abc import Collection, Mapping
from typing import Annotated, Any, Literal

from pydantic import BeforeValidator
from pydantic_core import PydanticCustomError


def canonical(value: Any, names: Collection[str], aliases: Mapping[str, str] | None = None) -> Any:
    """``value`` as the name of ``names`` it spells in any case (or as the name an alias of
    ``aliases``, lower-case, stands for); anything else as it was written, to be refused so."""
    if not isinstance(value, str):
        return value
    name = (aliases or {}).get(value.lower(), value.lower())
    return name if name in names else value


def any_case(*names: str, **aliases: str) -> Any:
    """``Literal[names]`` (lower-case names) that takes a name written in any case, and
    ``aliases`` (spelt as their library spells them, ``OneCycleLR``) for those names
    (:func:`canonical`)."""
    return Annotated[Literal[names], BeforeValidator(lambda v: _named(v, names, aliases))]


def _named(value: Any, names: Collection[str], aliases: Mapping[str, str]) -> str:
    """:func:`canonical`, refusing another value with every name it takes, the aliases too,
    and "in any case", as ``trainer.precision`` is refused.

    >>> _named("StepLR", ("cosine", "step"), {"MultiStepLR": "step"})
    Traceback (most recent call last):
    pydantic_core._pydantic_core.PydanticCustomError: expected 'cosine' or 'step' (also written 'MultiStepLR'; in any case)
    """
    name = canonical(value, names, {alias.lower(): name for alias, name in aliases.items()})
    if name not in names:
        listed = [repr(n) for n in names]
        expected = ", ".join(listed[:-1]) + f" or {listed[-1]}" if len(listed) > 1 else listed[0]
        also = f"also written {', '.join(map(repr, aliases))}; " if aliases else ""
        raise PydanticCustomError("name_in_any_case", f"expected {expected} ({also}in any case)")
    return name
