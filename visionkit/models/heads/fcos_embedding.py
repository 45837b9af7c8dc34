"""FCOS with embeddings: detection plus re-identification in one pass (JDE / FairMOT style).

Every FCOS point also predicts an L2-normalised embedding of ``embedding_dim`` values (a
small conv tower on the box tower's output, then a 3x3 conv): a detection's embedding is the
one of the point that produced it, so one forward pass finds the objects *and* says which
ones are the same person or object across images (tracking, re-identification, retrieval).

Training: the embeddings of FCOS's positive points (the same assignment as the boxes) whose
box carries an identity (the Sample's ``identities``, from the COCO annotations' ``identity``
field, :mod:`visionkit.data.readers.coco_identities`) learn by the losses of
:mod:`visionkit.models.heads.embedding` (reused, not copied): ``arcface`` / ``cosface``
against one learned vector per training identity (``num_identities``, by default the number
of the ``identity`` family of the training data), each point's term weighted by its
centerness target (the centre of an object speaks for it most); or ``supcon`` / ``triplet``
over the points of the batch. In eval mode ArcFace / CosFace report the batch-hard triplet
loss instead (validation identities have no vectors). Boxes without an identity (``-1``)
train the detection only.

>>> import torch
>>> head = FCOSEmbeddingHead(in_channels=[16, 16], strides=[8, 16], num_classes=2,
...                          num_identities=3, embedding_dim=8, num_convs=1)
>>> out = head([torch.rand(2, 16, 8, 8), torch.rand(2, 16, 4, 4)])
>>> tuple(out["embeddings"].shape)
(2, 80, 8)
>>> batch = {"boxes": [torch.tensor([[8.0, 8.0, 40.0, 48.0]])] * 2,
...          "labels": [torch.tensor([1])] * 2, "identities": [torch.tensor([2])] * 2}
>>> sorted(head.loss(out, batch))
['box', 'cls', 'ctr', 'emb']
>>> pred = head.eval().postprocess(out, [(64, 64)] * 2, orig_sizes=[(128, 128)] * 2)[0]
>>> pred["embeddings"].shape[1]
8
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any, ClassVar, Literal

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from visionkit.errors import DataError
from visionkit.models.heads._utils import (
    DetectionTargets,
    Sizes,
    flatten_levels,
    unpack_targets,
    zero_loss,
)
from visionkit.models.heads.embedding import (
    DEFAULT_MARGINS,
    arcface_logits,
    batch_hard_triplet_loss,
    cosface_logits,
    supcon_loss,
)
from visionkit.models.heads.fcos import FCOSHead, FCOSTargets, centerness_targets
from visionkit.registry import HEADS

#: At most this many identity points (evenly spaced) enter the pairwise losses (``supcon``,
#: ``triplet``, and ArcFace / CosFace in eval mode), whose cost grows with their square.
MAX_PAIR_POINTS = 1024


@HEADS.register("fcos_embedding")
class FCOSEmbeddingHead(FCOSHead):
    """FCOS detection plus an L2-normalised embedding per detection (see the module
    docstring for the loss).

    Args:
        in_channels: channels of each input level, all equal (e.g. an FPN neck's).
        strides: stride of each input level.
        num_classes: object classes C; ``None`` takes the number of ``class_names``.
        num_identities: training identities, the class vectors of ``arcface`` / ``cosface``;
            ``None``: the number of the training data's ``identity`` family (the distinct
            ``identity`` values of its annotations). Not used by ``supcon`` / ``triplet``.
        embedding_dim: size D of each embedding.
        emb_convs: 3x3 convs of the embedding tower, on the box tower's output.
        loss: ``"arcface"``, ``"cosface"``, ``"supcon"`` or ``"triplet"``.
        scale: ArcFace / CosFace logit scale ``s``.
        margin: the loss's margin; ``None``: :data:`~visionkit.models.heads.embedding.
            DEFAULT_MARGINS`.
        temperature: ``supcon`` temperature.
        emb_loss_weight: factor of the ``emb`` loss term.
        **fcos_args: the other arguments of :class:`~visionkit.models.heads.fcos.FCOSHead`.
    """

    task: ClassVar[str] = "detection_embedding"
    #: loss terms learnt from images that carry more than boxes (epoch means: engine/system.py)
    term_labels: ClassVar[dict[str, str]] = {"emb": "identities"}
    reads: ClassVar[str] = "neck"
    _name: ClassVar[str] = "fcos_embedding"

    def __init__(
        self,
        in_channels: list[int],
        strides: list[int],
        num_classes: int | None = None,
        num_identities: int | None = None,
        embedding_dim: int = 64,
        emb_convs: int = 2,
        loss: Literal["arcface", "cosface", "supcon", "triplet"] = "arcface",
        scale: float = 30.0,
        margin: float | None = None,
        temperature: float = 0.1,
        emb_loss_weight: float = 1.0,
        **fcos_args: Any,
    ) -> None:
        super().__init__(in_channels, strides, num_classes, **fcos_args)
        name = self._name
        if loss not in DEFAULT_MARGINS:
            raise ValueError(f"{name}: loss must be one of {list(DEFAULT_MARGINS)}, got {loss!r}")
        if embedding_dim < 1 or emb_convs < 0:
            raise ValueError(
                f"{name}: embedding_dim must be >= 1 and emb_convs >= 0, got {embedding_dim}, "
                f"{emb_convs}"
            )
        if loss in ("arcface", "cosface") and (num_identities or 0) < 2:
            raise ValueError(
                f"{name}: loss {loss!r} learns one vector per training identity, so it needs "
                f"num_identities >= 2 (got {num_identities}): set it, or train on COCO data "
                "whose annotations carry an 'identity' field"
            )
        self.num_identities = int(num_identities or 0)
        self.embedding_dim = int(embedding_dim)
        self.loss_name = loss
        self.scale, self.temperature = float(scale), float(temperature)
        self.margin = DEFAULT_MARGINS[loss] if margin is None else float(margin)
        self.emb_loss_weight = float(emb_loss_weight)
        self.emb_tower, self.emb_pred = self.point_branch(emb_convs, embedding_dim)
        self.identity_weight = None
        if loss in ("arcface", "cosface"):
            self.identity_weight = nn.Parameter(torch.empty(self.num_identities, embedding_dim))
            nn.init.normal_(self.identity_weight, std=0.01)

    def forward(self, features: list[Tensor]) -> dict[str, Tensor]:
        """FCOS's outputs plus ``embeddings`` fp32 ``[B, P, D]``, unit vectors."""
        outputs, box_feats = self.forward_with_box_features(features)
        levels = [self.emb_pred(self.emb_tower(feat)).float() for feat in box_feats]
        outputs["embeddings"] = F.normalize(flatten_levels(levels), dim=-1)
        return outputs

    def loss(self, outputs: Mapping[str, Tensor], targets: Mapping[str, Any]) -> dict[str, Tensor]:
        """FCOS's ``cls`` / ``box`` / ``ctr`` and the embedding term ``emb``, in fp32."""
        embeddings = outputs["embeddings"]
        with torch.autocast(device_type=embeddings.device.type, enabled=False):
            anchor = zero_loss(embeddings)
            if self.identity_weight is not None:
                anchor = anchor + 0.0 * self.identity_weight.sum()
            unpacked = unpack_targets(targets, embeddings.shape[0], embeddings.device)
            if unpacked is None:
                return {**self._zero_detection_losses(outputs), "emb": anchor}
            assigned = self.assign_batch(outputs, unpacked)
            losses = self._detection_losses(outputs, unpacked, assigned)
            if targets.get("identities") is None:
                return {**losses, "emb": anchor}
            value = self._embedding_loss(outputs, targets, unpacked, assigned)
            return {**losses, "emb": value * self.emb_loss_weight + anchor}

    def point_identities(
        self, targets: Mapping[str, Any], unpacked: DetectionTargets, assigned: FCOSTargets
    ) -> Tensor:
        """int64 ``[B, P]``: the identity of each point's matched box, ``-1`` for background,
        boxes without identity and images without boxes."""
        matched = assigned.matched
        out = torch.full_like(matched, -1)
        for i, ids in enumerate(targets["identities"]):
            ids = torch.as_tensor(ids, dtype=torch.long, device=matched.device).reshape(-1)
            if len(ids) != len(unpacked.boxes[i]):
                raise DataError(
                    f"{self._name}: image {i} of the batch has {len(ids)} identities for "
                    f"{len(unpacked.boxes[i])} boxes (one per box expected)"
                )
            if len(ids) and bool(unpacked.valid[i]):
                found = ids[matched[i].clamp(min=0)]
                out[i] = torch.where(matched[i] >= 0, found, out[i])
        return out

    def _embedding_loss(
        self,
        outputs: Mapping[str, Tensor],
        targets: Mapping[str, Any],
        unpacked: DetectionTargets,
        assigned: FCOSTargets,
    ) -> Tensor:
        identities = self.point_identities(targets, unpacked, assigned)
        chosen = identities >= 0
        z = outputs["embeddings"].float()[chosen]  # [M, D]
        labels = identities[chosen]
        if len(labels) == 0:
            return zero_loss(z)
        pairwise = self.loss_name in ("supcon", "triplet") or not self.training
        if not pairwise:
            if int(labels.max()) >= self.num_identities:
                raise DataError(
                    f"{self._name}: identity {int(labels.max())} in a training batch, but the "
                    f"head has num_identities={self.num_identities} identity vectors; leave "
                    "num_identities unset to take the number of training identities"
                )
            make = arcface_logits if self.loss_name == "arcface" else cosface_logits
            logits = make(z, self.identity_weight, labels, self.scale, self.margin)
            weight = centerness_targets(assigned.ltrb[chosen]).clamp(min=1e-3)
            per_point = F.cross_entropy(logits, labels, reduction="none")
            return (per_point * weight).sum() / weight.sum()
        if len(labels) > MAX_PAIR_POINTS:
            keep = torch.linspace(0, len(labels) - 1, MAX_PAIR_POINTS, device=z.device).long()
            z, labels = z[keep], labels[keep]
        if self.loss_name == "supcon":
            return supcon_loss(z, labels, self.temperature)
        margin = self.margin if self.loss_name == "triplet" else DEFAULT_MARGINS["triplet"]
        return batch_hard_triplet_loss(z, labels, margin)

    @torch.no_grad()
    def postprocess(
        self,
        outputs: Mapping[str, Tensor],
        image_sizes: Sizes,
        orig_sizes: Sizes | None = None,
    ) -> list[dict[str, Any]]:
        """FCOS's detections (``boxes`` in original coordinates with ``orig_sizes``,
        ``scores``, ``labels``), each with its ``embeddings`` float ``[N, D]`` (unit vectors:
        cosine similarity is their dot product)."""
        embeddings = outputs["embeddings"].float()
        results = []
        for i, (prediction, index) in enumerate(self.detect(outputs, image_sizes, orig_sizes)):
            prediction["embeddings"] = embeddings[i, index]
            results.append(prediction)
        return results
