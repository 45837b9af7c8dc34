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

The library API never imports Lightning.
"""

import os

# albumentations asks PyPI for its latest release when imported (a 2 s timeout, and a warning on
# every command of a machine without internet). visionkit's data pipeline imports it, so
# visionkit turns that off unless NO_ALBUMENTATIONS_UPDATE is set already (0 turns it back on).
os.environ.setdefault("NO_ALBUMENTATIONS_UPDATE", "1")

from visionkit.build.model import create_model, load
from visionkit.config import Config, load_config
from visionkit.data import readers  # noqa: F401  (registers the dataset formats)
from visionkit.gallery import Gallery
from visionkit.models.backbones import create_backbone, list_backbones
from visionkit.models.heads import list_heads
from visionkit.models.model import VisionModel
from visionkit.models.necks import list_necks

__version__ = "0.1.0"

__all__ = [
    "Config",
    "Gallery",
    "VisionModel",
    "create_backbone",
    "create_model",
    "list_backbones",
    "list_heads",
    "list_necks",
    "load",
    "load_config",
]
