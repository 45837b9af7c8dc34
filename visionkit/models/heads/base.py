"""The head contract, written down once.

A head is a plain ``nn.Module``; this ``Protocol`` only documents what the model, the system
and the evaluators rely on. No base class is required.
"""

from __future__ import annotations

from typing import Any, ClassVar, Literal, Protocol

from torch import Tensor


class Head(Protocol):
    """What every head provides.

    Class attributes:
        task: what it predicts (``"classification"``, ``"detection"``, ...): its entry in the task
            table, :data:`visionkit.evaluation.tasks.TASKS` (label family, targets, evaluator,
            metrics, flip merge, drawing).
        reads: ``"backbone"`` or ``"neck"``: which feature list ``forward`` receives.
        term_labels: optional ``{term: target}`` of loss terms learnt from a target that only
            some of the images with the head's labels carry (``{"mask": "masks"}``): their
            epoch means are over the images carrying it
            (:func:`visionkit.data.batch.labelled_images`).
    """

    task: ClassVar[str]
    reads: ClassVar[Literal["backbone", "neck"]]
    num_classes: int

    def forward(self, features: list[Tensor]) -> dict[str, Tensor]:
        """Raw outputs; identical in train and eval mode."""
        ...

    def loss(self, outputs: dict[str, Tensor], targets: dict[str, Any]) -> dict[str, Tensor]:
        """Named loss terms. Only images that carry this head's label count; the result is
        finite and connected to every parameter even when no image in the batch does."""
        ...

    def postprocess(
        self,
        outputs: dict[str, Tensor],
        image_sizes: list[tuple[int, int]],
        orig_sizes: list[tuple[int, int]] | None = None,
    ) -> list[dict[str, Any]]:
        """Decoded predictions, one dict per image. ``image_sizes`` are (H, W) of each image
        inside the batch tensor (before padding); when ``orig_sizes`` is given, boxes and masks
        are rescaled to those original sizes."""
        ...
