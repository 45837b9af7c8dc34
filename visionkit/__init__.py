"""visionkit: one shared backbone, interchangeable heads, trained jointly.

Public API::

    visionkit.create_backbone(name, pretrained=False, out_indices=None, **kwargs)
    visionkit.list_backbones(pattern=None)
    visionkit.list_heads(pattern=None)
    visionkit.list_necks(pattern=None)
    visionkit.create_model(config)          # untrained model from a config path or mapping
    visionkit.load(checkpoint_path)         # trained model from a checkpoint alone
    visionkit.load_config(path, overrides)  # validated config
    visionkit.Gallery.from_folder(model, dir)  # embeddings of known identities, searchable

The names are imported at their first use (PEP 562), so ``import visionkit`` and the
``visionkit`` command's ``--help`` do not import torch. The library API never imports
Lightning.
"""

from __future__ import annotations

import importlib
import os
from typing import TYPE_CHECKING, Any

# albumentations asks PyPI for its latest release when imported (a 2 s timeout, and a warning on
# every command of a machine without internet). visionkit's data pipeline imports it, so
# visionkit turns that off unless NO_ALBUMENTATIONS_UPDATE is set already (0 turns it back on).
os.environ.setdefault("NO_ALBUMENTATIONS_UPDATE", "1")

__version__ = "0.1.0"

#: Each public name and the module it comes from.
_HOMES = {
    "Config": "visionkit.config",
    "Gallery": "visionkit.gallery",
    "VisionModel": "visionkit.models.model",
    "create_backbone": "visionkit.models.backbones",
    "create_model": "visionkit.build.model",
    "list_backbones": "visionkit.models.backbones",
    "list_heads": "visionkit.models.heads",
    "list_necks": "visionkit.models.necks",
    "load": "visionkit.build.model",
    "load_config": "visionkit.config",
}

__all__ = sorted(_HOMES)


def __getattr__(name: str) -> Any:
    """A public name, imported at its first use; else a submodule (``visionkit.registry``
    after a bare ``import visionkit``, as when the package imported everything)."""
    if name in _HOMES:
        value = getattr(importlib.import_module(_HOMES[name]), name)
    else:
        try:
            value = importlib.import_module(f"{__name__}.{name}")
        except ModuleNotFoundError as err:
            if err.name != f"{__name__}.{name}":
                raise  # the submodule exists but an import inside it failed
            raise AttributeError(f"module 'visionkit' has no attribute {name!r}") from None
    globals()[name] = value  # looked up once
    return value


def __dir__() -> list[str]:
    return sorted([*globals(), *_HOMES])


if TYPE_CHECKING:  # the names as type checkers and IDEs see them
    from visionkit.build.model import create_model, load  # noqa: F401
    from visionkit.config import Config, load_config  # noqa: F401
    from visionkit.gallery import Gallery  # noqa: F401
    from visionkit.models.backbones import create_backbone, list_backbones  # noqa: F401
    from visionkit.models.heads import list_heads  # noqa: F401
    from visionkit.models.model import VisionModel  # noqa: F401
    from visionkit.models.necks import list_necks  # noqa: F401
