"""One flat registry per kind of component.

A builder function is registered under its own name with a decorator, as in timm's
``register_model``; the name in a config is the function name, so ``grep`` finds the code
that runs. A duplicate name raises, and an unknown name raises with the closest valid names.

>>> from visionkit.registry import Registry
>>> toys = Registry("toy")
>>> @toys.register
... def tiny(width: int = 4) -> dict:
...     return {"width": width}
>>> toys.build("tiny", width=8)
{'width': 8}
"""

from __future__ import annotations

import difflib
import fnmatch
from collections.abc import Callable, Iterator
from typing import Any, TypeVar

F = TypeVar("F", bound=Callable[..., Any])


class UnknownNameError(KeyError):
    """An unknown component name; the message lists the closest registered names."""

    def __str__(self) -> str:  # KeyError quotes its message; show it plainly.
        return str(self.args[0]) if self.args else ""


class Registry:
    """Maps names to builder functions for one kind of component (backbone, head, ...)."""

    def __init__(self, kind: str) -> None:
        self.kind = kind
        self._builders: dict[str, Callable[..., Any]] = {}
        self._providers: list[
            tuple[Callable[[], list[str]], Callable[[str], Callable[..., Any] | None]]
        ] = []

    def register(self, fn: F | None = None, *, name: str | None = None) -> F | Callable[[F], F]:
        """Register ``fn`` under ``name`` (default: the function's own name).

        Usable bare (``@reg.register``) or with a name (``@reg.register(name="x/y")``).
        """

        def decorator(f: F) -> F:
            key = name or f.__name__
            if key in self._builders:
                raise ValueError(
                    f"{self.kind} {key!r} is already registered "
                    f"(by {self._builders[key].__module__}.{self._builders[key].__qualname__})"
                )
            self._builders[key] = f
            return f

        return decorator(fn) if fn is not None else decorator

    def add_provider(
        self, names: Callable[[], list[str]], resolve: Callable[[str], Callable[..., Any] | None]
    ) -> None:
        """Add a family of names served by a library (e.g. every timm model).

        ``names()`` lists them; ``resolve(name)`` returns a builder or ``None`` when the
        name is not in the family. Explicitly registered names take precedence.
        """
        self._providers.append((names, resolve))

    def get(self, name: str) -> Callable[..., Any]:
        """Return the builder registered as ``name``; raise with suggestions if unknown."""
        if name in self._builders:
            return self._builders[name]
        for _, resolve in self._providers:
            builder = resolve(name)
            if builder is not None:
                return builder
        close = difflib.get_close_matches(name, self.names(), n=5, cutoff=0.5)
        hint = f"; did you mean {', '.join(repr(c) for c in close)}?" if close else ""
        raise UnknownNameError(f"unknown {self.kind} {name!r}{hint}")

    def build(self, name: str, **kwargs: Any) -> Any:
        """Call the builder registered as ``name`` with ``kwargs``."""
        return self.get(name)(**kwargs)

    def names(self, pattern: str | None = None) -> list[str]:
        """All names, sorted; ``pattern`` filters with ``fnmatch`` (e.g. ``"resnet*"``)."""
        all_names = set(self._builders)
        for names, _ in self._providers:
            all_names.update(names())
        out = sorted(all_names)
        if pattern is not None:
            out = fnmatch.filter(out, pattern)
        return out

    def __contains__(self, name: str) -> bool:
        try:
            self.get(name)
        except UnknownNameError:
            return False
        return True

    def __iter__(self) -> Iterator[str]:
        return iter(self.names())

    def __len__(self) -> int:
        return len(self.names())


BACKBONES = Registry("backbone")
NECKS = Registry("neck")
HEADS = Registry("head")
DATASETS = Registry("dataset")
