"""Dataset readers. Each module registers its format in ``DATASETS`` when imported; the import
list is explicit."""

from visionkit.data.readers import coco, folder, identities, labelme, mask_folder, voc

__all__ = ["coco", "folder", "identities", "labelme", "mask_folder", "voc"]
