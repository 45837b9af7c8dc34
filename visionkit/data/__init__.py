"""Data: the image decoder, dataset readers, pipelines and the data module.

Reader modules register their formats in ``DATASETS`` when imported; the list is explicit.
"""

from visionkit.data import coco, folder, mask_folder

__all__ = ["coco", "folder", "mask_folder"]
