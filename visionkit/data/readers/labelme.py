"""LabelMe folders, read as LabelMe saves them: one json file per image
(:mod:`visionkit.data.convert.labelme`), converted to COCO in memory and read through every
check of :class:`~visionkit.data.readers.coco.CocoDataset`, as VOC and YOLO folders are
(:mod:`visionkit.data.readers.voc`).

>>> ds = LabelmeDataset("photos")  # IMG_0001.jpg + IMG_0001.json, ...  # doctest: +SKIP
>>> ds = LabelmeDataset("photos", split="val")  # photos/splits/val.txt  # doctest: +SKIP
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path
from typing import Any, ClassVar, Literal

from visionkit.data.convert.labelme import labelme_to_coco
from visionkit.data.readers.voc import _ConvertedDataset
from visionkit.errors import ConfigError
from visionkit.registry import DATASETS


@DATASETS.register("labelme")
class LabelmeDataset(_ConvertedDataset):
    """A folder of LabelMe json files and their images, read directly (no conversion step).

    Args:
        root: the folder holding the json files (each beside its image, or anywhere below
            ``root`` with ``imagePath`` leading to its image under ``root``).
        split: read only the json files listed in ``root/splits/<split>.txt`` (``visionkit
            split ROOT --val 0.2`` writes them), or in the list file it names.
        class_names: the classes in order. Give them whenever the splits are read
            separately: by default each split takes the sorted labels it holds, and a split
            without some label would number the others differently (the training and
            validation lists are compared when datasets are built); ``visionkit split``
            prints the labels of every file under ``root``. LabelMe's own ``labels.txt``
            may be given as it is: ``__ignore__`` and ``_background_`` are left out.
        on_bad_label: ``"error"`` (default): an unreadable json file, a bad shape, an unknown
            label or a missing image stops construction, with every such problem listed;
            ``"skip"``: each such file is left out with its image, counted, logged and
            listed by ``check-data`` as a warning.
        **kwargs: the options of :class:`~visionkit.data.readers.coco.CocoDataset`
            (``on_bad_image``, ``keep_negatives``, ``masks``, ``semantic``, ...); its crowd
            regions are the ``__ignore__`` shapes, so ``crowds: objects`` is refused.
    """

    format_name: ClassVar[str] = "labelme"

    def __init__(
        self,
        root: str | None = None,
        split: str | None = None,
        class_names: Sequence[str] | None = None,
        on_bad_label: Literal["error", "skip"] = "error",
        **kwargs: Any,
    ) -> None:
        self._reader_options(
            on_bad_label, kwargs, "root, the folder of the LabelMe json files and their images"
        )
        if kwargs.get("crowds") == "objects":
            raise ConfigError(
                "format labelme takes no crowds: objects: its crowd regions are the shapes "
                "labelled __ignore__, regions to ignore (leave crowds out)"
            )
        self._source = (split, class_names)
        super().__init__(images=root, annotations=str(Path(str(root))), **kwargs)

    def read_annotations(self) -> dict[str, Any]:
        split, class_names = self._source
        return self._converted(self._convert(labelme_to_coco, self.root, split, class_names))
