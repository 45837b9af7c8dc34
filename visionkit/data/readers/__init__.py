"""Dataset readers. Each module registers its format in ``DATASETS`` when imported; the import
list is explicit."""

from visionkit.data.readers import coco, csv_labels, folder, identities, labelme, mask_folder, voc

__all__ = ["coco", "csv_labels", "folder", "identities", "labelme", "mask_folder", "voc"]
