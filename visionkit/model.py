"""``VisionModel``: one backbone, an optional neck, any number of named heads.

The backbone (and the neck) run once per batch; each head reads the feature list it declares
(``head.reads``). The model is a plain ``nn.Module`` and never imports Lightning.

>>> import torch
>>> from visionkit.backbones import create_backbone
>>> from visionkit.heads.classification import linear
>>> backbone = create_backbone("simple_cnn")
>>> model = VisionModel(backbone, {"cls": linear(backbone.out_channels, num_classes=3)})
>>> model(torch.rand(2, 3, 64, 64))["cls"]["logits"].shape
torch.Size([2, 3])
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from typing import Any

import numpy as np
import torch
from torch import Tensor, nn

Predictions = list[dict[str, Any]]


class VisionModel(nn.Module):
    """Backbone → [neck] → heads.

    Args:
        backbone: returns a list of feature maps, exposes ``out_channels`` and ``strides``.
        heads: name → head module (see :class:`visionkit.heads.Head`).
        neck: optional; maps the backbone's list to another list.
        loss_weights: name → weight of that head's loss in the total (default 1).
        preprocess: maps one ``H×W×3 uint8`` RGB array to a dict with a normalised ``image``
            tensor ``[3, h, w]`` and ``image_size`` — the evaluation pipeline; used by
            :meth:`predict`.
        meta: plain-type metadata kept with the model (config, class names, category ids).
    """

    def __init__(
        self,
        backbone: nn.Module,
        heads: Mapping[str, nn.Module],
        neck: nn.Module | None = None,
        loss_weights: Mapping[str, float] | None = None,
        preprocess: Callable[[np.ndarray], dict[str, Any]] | None = None,
        meta: dict[str, Any] | None = None,
    ) -> None:
        super().__init__()
        if not heads:
            raise ValueError("VisionModel needs at least one head")
        self.backbone = backbone
        self.neck = neck
        self.heads = nn.ModuleDict(dict(heads))
        self.loss_weights = {name: float((loss_weights or {}).get(name, 1.0)) for name in heads}
        self.preprocess = preprocess
        self.meta = meta or {}
        for name, head in self.heads.items():
            if getattr(head, "reads", "backbone") == "neck" and neck is None:
                raise ValueError(f"head {name!r} reads the neck's features, but there is no neck")

    def forward(self, images: Tensor) -> dict[str, dict[str, Tensor]]:
        """Raw outputs per head for a normalised batch ``[B, 3, H, W]``."""
        features = self.backbone(images)
        neck_features = self.neck(features) if self.neck is not None else None
        return {
            name: head(neck_features if head.reads == "neck" else features)
            for name, head in self.heads.items()
        }

    def loss(
        self, outputs: Mapping[str, dict[str, Tensor]], targets: Mapping[str, Any]
    ) -> dict[str, Tensor]:
        """Per-head loss terms (``"<head>/<term>"``), per-head sums (``"<head>/loss"``) and the
        weighted total (``"loss"``)."""
        losses: dict[str, Tensor] = {}
        total = None
        for name, head in self.heads.items():
            terms = head.loss(outputs[name], targets)
            head_loss = sum(terms.values())
            for term, value in terms.items():
                losses[f"{name}/{term}"] = value.detach()
            losses[f"{name}/loss"] = head_loss.detach()
            weighted = self.loss_weights[name] * head_loss
            total = weighted if total is None else total + weighted
        losses["loss"] = total
        return losses

    def postprocess(
        self,
        outputs: Mapping[str, dict[str, Tensor]],
        image_sizes: Sequence[tuple[int, int]],
        orig_sizes: Sequence[tuple[int, int]] | None = None,
    ) -> list[dict[str, Any]]:
        """Decoded predictions: one dict per image, keyed by head name.

        Args:
            outputs: raw outputs of :meth:`forward`.
            image_sizes: (H, W) of each image inside the batch tensor (before padding).
            orig_sizes: (H, W) of the original images; boxes and masks are mapped back to them
                (the evaluation pipeline must be a resize, optionally padded at the
                bottom/right). ``None`` keeps the batch tensor's frame.
        """
        per_head = {
            name: head.postprocess(outputs[name], image_sizes, orig_sizes)
            for name, head in self.heads.items()
        }
        return [
            {name: preds[i] for name, preds in per_head.items()} for i in range(len(image_sizes))
        ]

    @torch.inference_mode()
    def predict(self, images: Sequence[np.ndarray] | Tensor, batch_size: int = 16) -> Predictions:
        """Predict on RGB images of any size.

        Args:
            images: a list of ``H×W×3 uint8`` RGB arrays, a ``uint8`` tensor ``[B, 3, H, W]``
                (both go through the evaluation pipeline), or a float tensor ``[B, 3, H, W]``
                that is already normalised.
            batch_size: images per forward pass.

        Returns:
            One dict per image, keyed by head name; e.g. for a classifier
            ``{"cls": {"label": 2, "name": "noise", "scores": Tensor[C]}}``.
        """
        from visionkit.data.transforms import collate

        was_training = self.training
        self.eval()
        device = next(self.parameters()).device
        try:
            if isinstance(images, Tensor) and images.is_floating_point():
                sizes = [tuple(images.shape[-2:])] * len(images)
                return self.postprocess(self(images.to(device)), sizes, sizes)
            if isinstance(images, Tensor):
                images = [img.permute(1, 2, 0).cpu().numpy() for img in images]
            if self.preprocess is None:
                raise RuntimeError("this model has no preprocess pipeline; pass normalised tensors")
            results: Predictions = []
            for start in range(0, len(images), batch_size):
                chunk = [
                    self.preprocess(_as_rgb_uint8(img))
                    for img in images[start : start + batch_size]
                ]
                batch = collate(chunk)
                outputs = self(batch["images"].to(device))
                results += self.postprocess(
                    outputs,
                    [tuple(s) for s in batch["image_sizes"].tolist()],
                    [tuple(s) for s in batch["orig_sizes"].tolist()],
                )
            return results
        finally:
            self.train(was_training)


def _as_rgb_uint8(image: np.ndarray) -> np.ndarray:
    image = np.asarray(image)
    if image.dtype != np.uint8 or image.ndim != 3 or image.shape[2] != 3:
        raise ValueError(
            f"predict expects H×W×3 uint8 RGB arrays, got dtype {image.dtype} shape {image.shape}"
        )
    return image
