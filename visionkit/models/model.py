"""``VisionModel``: one backbone, an optional neck, any number of named heads.

The backbone (and the neck) run once per batch; each head reads the feature list it declares
(``head.reads``). The model is a plain ``nn.Module`` and never imports Lightning.

>>> import torch
>>> from visionkit.models.backbones import create_backbone
>>> from visionkit.models.heads import ClassificationHead
>>> backbone = create_backbone("simple_cnn")
>>> heads = {"cls": ClassificationHead(backbone.out_channels, num_classes=3)}
>>> model = VisionModel(backbone, heads)
>>> model(torch.rand(2, 3, 64, 64))["cls"]["logits"].shape
torch.Size([2, 3])
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Iterator, Mapping, Sequence
from typing import Any

import numpy as np
from torch import Tensor, nn

from visionkit.choices import DEFAULT_PREDICT_BATCH_SIZE
from visionkit.errors import ConfigError
from visionkit.inference.loop import Predictions
from visionkit.inference.options import predict_images, stream_predictions
from visionkit.models.balancing import make_loss_balancer

logger = logging.getLogger(__name__)


def loss_terms(name: str, head: nn.Module, terms: Any) -> Mapping[str, Tensor]:
    """``terms`` as a head's ``loss`` must return them: a non-empty dict of scalar tensors
    (a head of one's own returning a bare tensor is told so, naming it)."""
    scalars = isinstance(terms, Mapping) and terms
    if scalars and all(isinstance(v, Tensor) and v.ndim == 0 for v in terms.values()):
        return terms
    if isinstance(terms, Mapping):
        got = (
            "an empty dict"
            if not terms
            else "{" + ", ".join(f"{k!r}: {describe(v)}" for k, v in terms.items()) + "}"
        )
    else:
        got = describe(terms)
    raise ConfigError(
        f"model.heads.{name}: {type(head).__name__}.loss returned {got}; a head's loss "
        "returns a dict of scalar tensors, one per term, e.g. {'cls': tensor(0.69)} "
        "(the head contract: docs/extending.md#adding-a-head)"
    )


def describe(value: Any) -> str:
    """A value's kind for :func:`loss_terms`' message: a tensor's shape, else its type."""
    if isinstance(value, Tensor):
        return f"a tensor of shape {list(value.shape)}"
    return type(value).__name__


class VisionModel(nn.Module):
    """Backbone → [neck] → heads.

    Args:
        backbone: returns a list of feature maps, exposes ``out_channels`` and ``strides``.
        heads: name → head module (see :class:`visionkit.models.heads.Head`).
        neck: optional; maps the backbone's list to another list.
        loss_weights: name → weight of that head's loss in the total (default 1).
        loss_balancing: how the heads' losses make the total: ``"fixed"`` (``loss_weights``
            only), ``"uncertainty"`` or ``"magnitude"`` (see :mod:`visionkit.models.balancing`);
            the automatic factors multiply ``loss_weights``.
        balancing_momentum: momentum of the running loss means of ``"magnitude"``.
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
        loss_balancing: str = "fixed",
        balancing_momentum: float = 0.99,
    ) -> None:
        super().__init__()
        if not heads:
            raise ValueError("VisionModel needs at least one head")
        self.backbone = backbone
        self.neck = neck
        self.heads = nn.ModuleDict(dict(heads))
        self.loss_weights = {name: float((loss_weights or {}).get(name, 1.0)) for name in heads}
        self.loss_balancer = make_loss_balancer(
            loss_balancing, self.loss_weights, momentum=balancing_momentum
        )
        self.preprocess = preprocess
        self.meta = meta or {}
        self.frozen: list[str] = []  # module names set by freeze(); kept in eval mode
        self.transfer_report: Any = None  # what model.init_from loaded (visionkit.models.transfer)
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
        """Per-head loss terms (``"<head>/<term>"``), per-head sums (``"<head>/loss"``), the
        effective per-head weights (``"<head>/weight"``, detached) and the balanced total
        (``"loss"``, see ``loss_balancing``)."""
        losses: dict[str, Tensor] = {}
        head_losses: dict[str, Tensor] = {}
        for name, head in self.heads.items():
            terms = loss_terms(name, head, head.loss(outputs[name], targets))
            head_loss = sum(terms.values())
            for term, value in terms.items():
                losses[f"{name}/{term}"] = value.detach()
            losses[f"{name}/loss"] = head_loss.detach()
            head_losses[name] = head_loss
        total, weights = self.loss_balancer(head_losses)
        for name, weight in weights.items():
            losses[f"{name}/weight"] = weight
        losses["loss"] = total
        return losses

    def module_prefixes(self) -> list[str]:
        """The top-level names ``freeze`` and per-group learning rates take: ``backbone``,
        ``neck`` (when there is one), ``heads``, ``heads.<name>``, and ``loss_balancer``
        when it has parameters. Any deeper module name (``backbone.stages.0``) is valid too."""
        names = ["backbone"] + (["neck"] if self.neck is not None else []) + ["heads"]
        names += [f"heads.{name}" for name in self.heads]
        if any(True for _ in self.loss_balancer.parameters()):
            names.append("loss_balancer")
        return names

    def unknown_prefixes(self, prefixes: Sequence[str]) -> list[str]:
        """The entries of ``prefixes`` that name no submodule of this model."""
        modules = {name for name, _ in self.named_modules() if name}
        return [p for p in prefixes if p not in modules]

    def freeze(self, prefixes: Sequence[str]) -> None:
        """Stop training the submodules named by ``prefixes`` (``"backbone"``, ``"heads.det"``):
        their parameters get ``requires_grad=False`` and the modules stay in eval mode (BatchNorm
        statistics and dropout frozen too) whenever the model is put in training mode.

        Raises:
            ValueError: a prefix names no submodule.
        """
        unknown = self.unknown_prefixes(prefixes)
        if unknown:
            raise ValueError(
                f"no such module: {', '.join(map(repr, unknown))}; valid prefixes: "
                f"{', '.join(self.module_prefixes())} (or a module below them)"
            )
        spared = set()
        for prefix in prefixes:
            for name, param in self.named_parameters():
                if covers(prefix, name, self.new_layers):
                    param.requires_grad_(False)
                elif name.startswith(f"{prefix}."):  # a layer the pretrained backbone lacks
                    spared.add(name.rsplit(".", 1)[0])
        if spared:
            logger.info(
                "freeze: %s stay trainable (layers visionkit adds to the backbone, not "
                "pretrained; freeze them by name, e.g. backbone.pyramid)",
                ", ".join(sorted(spared)),
            )
        self.frozen = list(dict.fromkeys([*self.frozen, *prefixes]))
        self.train(self.training)

    @property
    def new_layers(self) -> tuple[str, ...]:
        """Parameter-name prefixes of the layers visionkit adds to a library backbone (a plain
        ViT's pyramid: ``backbone.pyramid.``): no pretrained file holds them, so ``freeze`` and
        ``optimizer.param_groups`` of ``backbone`` leave them out (:func:`covers`)."""
        return tuple(f"backbone.{n}" for n in getattr(self.backbone, "new_layers", ()))

    def train(self, mode: bool = True) -> VisionModel:
        """As ``nn.Module.train``, except that frozen modules (:meth:`freeze`) stay in eval mode."""
        super().train(mode)
        if mode:
            for prefix in self.frozen:
                self.get_submodule(prefix).eval()
        return self

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

        A semantic head's result carries ``colours`` (``[R, G, B]`` per class) when the
        training data published its class colours (a mask folder's palette file), which
        :func:`~visionkit.inference.draw.draw_predictions` draws it in.
        """
        per_head = {
            name: head.postprocess(outputs[name], image_sizes, orig_sizes)
            for name, head in self.heads.items()
        }
        colours = (self.meta.get("class_colours") or {}).get("semantic")
        for name, head in self.heads.items():
            if colours and getattr(head, "task", None) == "semantic":  # the dataset's palette
                per_head[name] = [{**pred, "colours": colours} for pred in per_head[name]]
        return [
            {name: preds[i] for name, preds in per_head.items()} for i in range(len(image_sizes))
        ]

    def predict(
        self,
        images: Any,
        batch_size: int = DEFAULT_PREDICT_BATCH_SIZE,
        conf: float | None = None,
        iou: float | None = None,
        max_det: int | None = None,
        classes: Sequence[int | str] | int | str | None = None,
        imgsz: int | str | Sequence[int] | None = None,
        stream: bool = False,
    ) -> Predictions | Iterator[dict[str, Any]]:
        """Predict on RGB images of any size, through the one predict loop
        (:func:`visionkit.inference.loop.predict_model`), with the options of
        :mod:`visionkit.inference.options` set for this call only.

        Args:
            images: an image or a list of images: paths of image files, PIL images,
                ``H×W×3 uint8`` RGB arrays (RGB, not OpenCV's BGR), or an ``N×H×W×3`` array;
                decoded one batch at a time. A path may also be a folder (its images and
                videos, recursively, sorted), a glob pattern (``"photos/*.jpg"``) or a video
                (one prediction per frame), expanded as ``visionkit predict --input`` does
                (:func:`visionkit.inference.sources.named_inputs`). Also a tensor image
                ``[3, H, W]`` or batch ``[B, 3, H, W]``, ``uint8`` or float in 0..1
                (:func:`visionkit.inference.loop.tensor_images`).
            batch_size: images per forward pass.
            conf: keep detections scoring above this (default: each box head's threshold of
                its best F1 at the last validation of training, else 0.25:
                :func:`visionkit.inference.options.prediction_conf`).
            iou: IoU threshold of the class-wise NMS (default: each head's ``nms_thresh``).
            max_det: detections kept per image (default: each head's ``detections_per_img``).
            classes: keep only the detections of these classes (indices or names; one alone).
            imgsz: inference size, ``640`` or ``(480, 640)``: the evaluation pipeline's sizing
                steps at this size (default: the model's own pipeline).
            stream: return a generator that yields one prediction per image or frame as
                the batches are predicted (Ultralytics' ``stream=True``), holding one batch
                at a time: for long videos and large folders. The options are checked at
                the call; the thresholds apply to each batch's forward pass only.

        Returns:
            One dict per image (or video frame), in input order, keyed by head name; e.g.
            for a classifier ``{"cls": {"label": 2, "name": "noise", "score": 0.91, "top5":
            [{"label": 2, "name": "noise", "score": 0.91}, ...], "scores": Tensor[C]}}``
            (``images.json`` of ``visionkit predict`` holds the same, rounded).
            A list, or with ``stream=True`` a generator of these dicts.

        Raises:
            DataError: a path that does not exist, a folder or glob without images, an
                unreadable image or video.
        """
        return (stream_predictions if stream else predict_images)(
            self,
            images,
            batch_size=batch_size,
            conf=conf,
            iou=iou,
            max_det=max_det,
            classes=classes,
            imgsz=imgsz,
        )

    def embed(
        self, images: Any, batch_size: int = DEFAULT_PREDICT_BATCH_SIZE, head: str | None = None
    ) -> np.ndarray:
        """The L2-normalised embeddings ``[N, D]`` (float32) of ``images`` (any input
        :meth:`predict` takes) from the ``embedding`` head (``head`` names one when the model
        has several).

        Raises:
            ValueError: the model has no embedding head, or several and ``head`` is unset.
        """
        names = [n for n, h in self.heads.items() if getattr(h, "task", None) == "embedding"]
        if not names:
            kinds = ", ".join(f"{n} ({type(h).__name__})" for n, h in self.heads.items())
            raise ValueError(f"embed: the model has no embedding head (its heads: {kinds})")
        if head is None and len(names) > 1:
            raise ValueError(
                f"embed: the model has {len(names)} embedding heads ({', '.join(names)}); "
                "name one with head=..."
            )
        name = head or names[0]
        if name not in names:
            raise ValueError(f"embed: {name!r} is not an embedding head; those are {names}")
        predictions = self.predict(images, batch_size=batch_size)
        if not predictions:
            return np.zeros((0, getattr(self.heads[name], "embedding_dim", 0)), np.float32)
        return np.stack(
            [np.asarray(p[name]["embedding"].float().cpu(), dtype=np.float32) for p in predictions]
        )


def covers(prefix: str, name: str, new_layers: Sequence[str] = ()) -> bool:
    """Whether the module prefix ``prefix`` (``"backbone"``) covers the parameter ``name``:
    below it, and not in one of ``new_layers`` (:attr:`VisionModel.new_layers`) unless the
    prefix itself reaches into that layer (``"backbone.pyramid"``).

    >>> covers("backbone", "backbone.body.conv.weight", ("backbone.pyramid.",))
    True
    >>> covers("backbone", "backbone.pyramid.0.weight", ("backbone.pyramid.",))
    False
    >>> covers("backbone.pyramid", "backbone.pyramid.0.weight", ("backbone.pyramid.",))
    True
    """
    if not name.startswith(f"{prefix}."):
        return False
    return not any(name.startswith(new) and not f"{prefix}.".startswith(new) for new in new_layers)
