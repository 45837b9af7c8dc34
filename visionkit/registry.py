"""One flat registry per kind of component.

A component is registered under a name with a decorator, as in timm's ``register_model``: the
class itself (``@HEADS.register("fcos")`` on ``FCOSHead``), or a builder function (under its
own name when none is given). A config's arguments are the parameters of that class's
``__init__`` or that function, so there is one signature to read and ``grep`` finds the code
that runs. The same class with other defaults is a :class:`Variant` (``HEADS.variant("mlp",
ClassificationHead, ..., hidden_dims=(512,))``). A duplicate name raises, and an unknown name
raises with the closest valid names.

>>> from visionkit.registry import Registry
>>> toys = Registry("toy")
>>> @toys.register("box")
... class Box:
...     def __init__(self, width: int = 4) -> None:
...         self.width = width
>>> toys.build("box", width=8).width
8
>>> big = toys.variant("big_box", Box, "A box 16 wide.", width=16)
>>> toys.build("big_box").width, toys.component_class("big_box").__name__
(16, 'Box')
>>> @toys.register
... def tiny(width: int = 4) -> dict:
...     return {"width": width}
>>> toys.build("tiny", width=8)
{'width': 8}
>>> list(toys.signature("big_box").parameters)
['width']
"""

from __future__ import annotations

import difflib
import fnmatch
import importlib
import inspect
import logging
import typing
from collections.abc import Callable, Iterator
from typing import Any, TypeVar

F = TypeVar("F", bound=Callable[..., Any])
logger = logging.getLogger(__name__)


class UnknownNameError(KeyError):
    """An unknown component name; the message lists the closest registered names."""

    def __str__(self) -> str:  # KeyError quotes its message; show it plainly.
        return str(self.args[0]) if self.args else ""


def class_signature(cls: type) -> inspect.Signature:
    """The parameters of ``cls(...)`` (its ``__init__`` less ``self``), annotations resolved.

    A ``**kwargs`` that ``__init__`` passes on to its base class is replaced by the base's
    parameters it does not name itself (keyword-only), so that a subclass such as
    ``FCOSMaskHead(..., **fcos_args)`` has the whole schema without repeating it.
    """
    init = cls.__init__
    signature = _resolved(inspect.signature(cls), typing.get_type_hints(init))
    params = list(signature.parameters.values())
    if not params or params[-1].kind is not inspect.Parameter.VAR_KEYWORD:
        return signature
    base = next((b for b in cls.__mro__[1:] if "__init__" in vars(b)), object)
    if base is object:
        return signature
    named = {p.name for p in params}
    inherited = [
        p.replace(kind=inspect.Parameter.KEYWORD_ONLY)
        if p.kind is not inspect.Parameter.VAR_KEYWORD
        else p
        for p in class_signature(base).parameters.values()
        if p.name not in named and p.kind is not inspect.Parameter.VAR_POSITIONAL
    ]
    own = [p for p in params[:-1] if p.kind is not inspect.Parameter.VAR_POSITIONAL]
    return signature.replace(parameters=own + inherited)


def _resolved(signature: inspect.Signature, hints: dict[str, Any]) -> inspect.Signature:
    """``signature`` with its annotations replaced by ``hints`` and no return annotation."""
    return signature.replace(
        parameters=[
            p.replace(annotation=hints.get(p.name, p.annotation))
            for p in signature.parameters.values()
        ],
        return_annotation=inspect.Signature.empty,
    )


class Variant:
    """A registered class with other defaults, like :func:`functools.partial` (and timm's
    ``resnet18`` over ``ResNet``): calling it builds ``cls`` with ``defaults`` under the
    caller's arguments; its signature (hence its config schema) is ``cls.__init__``'s with
    those defaults."""

    def __init__(self, cls: type, doc: str, /, **defaults: Any) -> None:
        signature = class_signature(cls)
        unknown = sorted(set(defaults) - set(signature.parameters))
        if unknown:
            raise TypeError(f"{cls.__qualname__} takes no argument(s) {', '.join(unknown)}")
        self.cls = cls
        self.defaults = defaults
        self.__doc__ = doc
        self.__module__ = cls.__module__
        self.__qualname__ = self.__name__ = f"{cls.__qualname__} variant"
        self.__signature__ = signature.replace(
            parameters=[
                p.replace(default=defaults[p.name]) if p.name in defaults else p
                for p in signature.parameters.values()
            ]
        )

    def __call__(self, *args: Any, **kwargs: Any) -> Any:
        bound = self.__signature__.bind(*args, **kwargs)
        bound.apply_defaults()
        return self.cls(*bound.args, **bound.kwargs)

    def __repr__(self) -> str:
        args = ", ".join(f"{k}={v!r}" for k, v in self.defaults.items())
        return f"Variant({self.cls.__qualname__}, {args})"


class Registry:
    """Maps names to component classes, variants and builder functions for one kind of
    component (backbone, head, ...).

    ``home`` is the module whose import registers the built-in components (visionkit's own
    registries, which ``visionkit list <kind>s`` shows): it is imported at the first lookup,
    so that ``import visionkit`` and the ``visionkit`` command's parser need not import torch
    to fill the registries."""

    def __init__(self, kind: str, home: str | None = None) -> None:
        self.kind = kind
        self.home = home
        self._home_imported = home is None
        self._builders: dict[str, Callable[..., Any]] = {}
        self._classes: dict[str, type] = {}  # declared with register(..., cls=...)
        self._providers: list[
            tuple[Callable[[], list[str]], Callable[[str], Callable[..., Any] | None]]
        ] = []

    def register(
        self,
        target: F | str | None = None,
        /,
        *,
        name: str | None = None,
        cls: type | None = None,
    ) -> Any:
        """Register a class or builder function.

        ``@reg.register("fcos")`` registers the decorated class (or function) under
        ``"fcos"``; bare ``@reg.register`` uses the function's own name; ``name=`` is the
        older spelling of the name. A builder function may declare the class it builds with
        ``cls=`` (else its return annotation is read, see :meth:`component_class`).
        """
        if isinstance(target, str):
            name, target = target, None

        def decorator(obj: F) -> F:
            key = name or obj.__name__
            if not (getattr(obj, "__module__", None) or "").startswith("visionkit."):  # a user's
                self._import_home()
                self._refuse_provided(key)
            old = self._builders.get(key)
            where = f"{getattr(old, '__module__', '?')}.{getattr(old, '__qualname__', '?')}"
            again = where == f"{obj.__module__}.{obj.__qualname__}"  # the same definition
            if old is not None and (not again or where.startswith("visionkit.")):
                raise ValueError(f"{self.kind} {key!r} is already registered (by {where})")
            if old is not None:  # the same definition run again (a notebook cell, a reload)
                logger.warning(
                    "%s %r registered again by %s: the new one replaces it", self.kind, key, where
                )
            self._builders[key] = obj
            if cls is not None:
                self._classes[key] = cls
            else:
                self._classes.pop(key, None)
            return obj

        return decorator(target) if target is not None else decorator

    def variant(self, name: str, cls: type, doc: str, /, **defaults: Any) -> Variant:
        """Register ``cls`` with other ``defaults`` under ``name``; return the :class:`Variant`."""
        return self.register(name)(Variant(cls, doc, **defaults))

    def add_provider(
        self, names: Callable[[], list[str]], resolve: Callable[[str], Callable[..., Any] | None]
    ) -> None:
        """Add a family of names served by a library (e.g. every timm model).

        ``names()`` lists them; ``resolve(name)`` returns a builder or ``None`` when the
        name is not in the family. Explicitly registered names take precedence.
        """
        self._providers.append((names, resolve))

    def _refuse_provided(self, key: str) -> None:
        """A name a library serves (timm's ``resnet18``, ``torchvision/resnet18``) is not
        taken by a component of one's own: a checkpoint of it, loaded where the user's module
        is not imported, would build the library's model instead."""
        if any(resolve(key) is not None for _, resolve in self._providers):
            raise ValueError(
                f"{self.kind} {key!r} is a name served by a library (timm or torchvision); "
                f"register yours under another name, e.g. 'my_{key.replace('/', '_')}'"
            )

    def _import_home(self) -> None:
        """Import the ``home`` module (it registers the built-in components). Python's import
        lock makes another thread wait for an import in progress, and gives a lookup made
        by the home module itself, while it imports, what it has registered so far; an
        import that fails is tried again at the next lookup (never a registry left empty)."""
        if not self._home_imported:
            importlib.import_module(self.home)
            self._home_imported = True

    def get(self, name: str) -> Callable[..., Any]:
        """Return the class, variant or builder registered as ``name``; raise with suggestions
        if unknown."""
        self._import_home()
        if name in self._builders:
            return self._builders[name]
        for _, resolve in self._providers:
            builder = resolve(name)
            if builder is not None:
                return builder
        known = self.names()
        close = close_names(name, known)
        hint = f"; did you mean {', '.join(repr(c) for c in close)}?" if close else ""
        if close and self.home is not None:
            hint += f" (a {self.kind} of your own is registered when its module is imported)"
        elif self.home is not None:
            hint = (
                f"; `visionkit list {self.kind}s` shows the {len(known)} known names (a "
                f"{self.kind} of your own is registered when its module is imported: import "
                "it first)"
            )
        raise UnknownNameError(f"unknown {self.kind} {name!r}{hint}")

    def build(self, name: str, **kwargs: Any) -> Any:
        """Build the component registered as ``name`` with ``kwargs``."""
        return self.get(name)(**kwargs)

    def component_class(self, name: str) -> type:
        """The class ``name`` builds (where a head's ``task``, ``reads``... are read): the
        registered class itself, a variant's class, the ``cls=`` declared with a builder
        function, or else that function's return annotation."""
        obj = self.get(name)
        if isinstance(obj, type):
            return obj
        if isinstance(obj, Variant):
            return obj.cls
        if self._builders.get(name) is obj and name in self._classes:
            return self._classes[name]
        returned = typing.get_type_hints(obj).get("return")
        if not isinstance(returned, type):
            raise TypeError(
                f"{self.kind} {name!r}: its builder declares no class (register it with cls=...)"
            )
        return returned

    def signature(self, name: str) -> inspect.Signature:
        """The parameters ``name`` is built with (see :func:`class_signature`; a variant's
        with its defaults), their annotations resolved to types."""
        obj = self.get(name)
        if isinstance(obj, type):
            return class_signature(obj)
        if isinstance(obj, Variant):
            return obj.__signature__
        return _resolved(inspect.signature(obj), typing.get_type_hints(obj))

    def names(self, pattern: str | None = None) -> list[str]:
        """All names, sorted; ``pattern`` filters with ``fnmatch`` (e.g. ``"resnet*"``)."""
        self._import_home()
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


BACKBONES = Registry("backbone", home="visionkit.models.backbones")
NECKS = Registry("neck", home="visionkit.models.necks")
HEADS = Registry("head", home="visionkit.models.heads")
DATASETS = Registry("dataset", home="visionkit.data.readers")


def close_names(name: str, known: list[str], n: int = 5) -> list[str]:
    """The ``known`` names like ``name``, best first: those equal to it but for case and
    separators, then those it holds whole (``ImageFolder``: ``folder`` before
    ``mask_folder``, which only looks alike), then difflib's close matches.

    >>> close_names("image_folder", ["coco", "folder", "mask_folder"])
    ['folder', 'mask_folder']
    >>> close_names("Mask-Folder", ["coco", "folder", "mask_folder"])
    ['mask_folder', 'folder']
    """

    def plain(text: str) -> str:
        return "".join(c for c in text.lower() if c.isalnum())

    key = plain(name)
    same = [k for k in known if plain(k) == key]
    held = sorted(
        (k for k in known if len(plain(k)) >= 3 and plain(k) != key and plain(k) in key),
        key=lambda k: -len(plain(k)),
    )
    like = difflib.get_close_matches(name, known, n=n, cutoff=0.5)
    return list(dict.fromkeys([*same, *held, *like]))[:n]
