"""The ``embedding`` head (recognition, re-identification, retrieval) and its metric-learning
losses.

Global pooling of one backbone level → optional projection MLP → linear → L2 normalisation:
an image becomes a unit vector, compared with others by cosine similarity (a dot product).
Training losses (``loss``):

* ``arcface`` (additive angular margin, Deng et al. 2019): logits ``s·cos(θ_y + m)`` for the
  true identity and ``s·cos θ_j`` for the others, against one learned unit vector per training
  identity (``num_classes`` of them; the ``identity`` label family fills it);
* ``cosface`` (additive cosine margin, Wang et al. 2018): ``s·(cos θ_y − m)``;
* ``supcon`` (supervised contrastive, Khosla et al. 2020): every other image of the same
  identity in the batch is a positive, at temperature ``temperature``;
* ``triplet`` with in-batch hard mining (Hermans et al. 2017): per anchor, its farthest
  positive and nearest negative in the batch, ``relu(d_ap − d_an + margin)``.

``supcon`` and ``triplet`` need several images per identity in a batch: use the identity
batch sampler (``data.sampler: {p: 8, k: 4}``). Images without a label (``-1``) are left out.

>>> import torch
>>> head = EmbeddingHead(in_channels=[16, 32], num_classes=5, embedding_dim=8)
>>> out = head([torch.rand(2, 16, 8, 8), torch.rand(2, 32, 4, 4)])["embedding"]
>>> out.shape, torch.allclose(out.norm(dim=1), torch.ones(2))
(torch.Size([2, 8]), True)
"""

from __future__ import annotations

import math
from typing import Any, ClassVar, Literal

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from visionkit.data.batch import IGNORE_CLASS
from visionkit.errors import DataError
from visionkit.registry import HEADS

#: The default margin of each loss (ArcFace's radians, CosFace's cosine, the triplet's
#: distance between unit vectors); ``supcon`` has none.
DEFAULT_MARGINS = {"arcface": 0.5, "cosface": 0.35, "triplet": 0.3, "supcon": 0.0}


def arcface_logits(
    embeddings: Tensor, weight: Tensor, labels: Tensor, scale: float, margin: float
) -> Tensor:
    """ArcFace logits ``[B, C]``: ``s·cos(θ_y + m)`` at each label, ``s·cos θ`` elsewhere.

    ``embeddings`` [B, D] and the rows of ``weight`` [C, D] are normalised here. Where
    ``θ_y + m`` would pass π (``cos θ_y < cos(π − m)``), the target logit is ``s·(cos θ_y −
    m·sin m)`` instead, as in the reference implementation, so that it keeps decreasing in θ.
    """
    cos = F.linear(F.normalize(embeddings, dim=1), F.normalize(weight, dim=1)).clamp(-1, 1)
    target = cos.gather(1, labels[:, None])
    sin = (1.0 - target * target).clamp(min=0).sqrt()
    shifted = target * math.cos(margin) - sin * math.sin(margin)
    shifted = torch.where(
        target > math.cos(math.pi - margin), shifted, target - margin * math.sin(margin)
    )
    return scale * cos.scatter(1, labels[:, None], shifted)


def cosface_logits(
    embeddings: Tensor, weight: Tensor, labels: Tensor, scale: float, margin: float
) -> Tensor:
    """CosFace logits ``[B, C]``: ``s·(cos θ − m)`` at each label, ``s·cos θ`` elsewhere."""
    cos = F.linear(F.normalize(embeddings, dim=1), F.normalize(weight, dim=1))
    return scale * (cos - margin * F.one_hot(labels, cos.shape[1]).to(cos.dtype))


def supcon_loss(embeddings: Tensor, labels: Tensor, temperature: float) -> Tensor:
    """Supervised contrastive loss (Khosla et al., "L_out"): for each anchor with at least one
    positive, ``−mean_p log(exp(z_a·z_p/τ) / Σ_{j≠a} exp(z_a·z_j/τ))``; the mean over those
    anchors (zero, still connected to ``embeddings``, when none has a positive)."""
    z = F.normalize(embeddings, dim=1)
    n = z.shape[0]
    eye = torch.eye(n, dtype=torch.bool, device=z.device)
    logits = (z @ z.T / temperature).masked_fill(eye, float("-inf"))
    log_prob = logits - logits.logsumexp(dim=1, keepdim=True)
    positive = (labels[:, None] == labels[None, :]) & ~eye
    count = positive.sum(1)
    per_anchor = -(log_prob.masked_fill(~positive, 0.0)).sum(1) / count.clamp(min=1)
    has = count > 0
    return (per_anchor * has).sum() / has.sum().clamp(min=1) + 0.0 * z.sum()


def batch_hard_triplet_loss(embeddings: Tensor, labels: Tensor, margin: float) -> Tensor:
    """Batch-hard triplet loss: per anchor with a positive and a negative in the batch,
    ``relu(max_p d(a, p) − min_n d(a, n) + margin)``, ``d`` the Euclidean distance between the
    unit vectors; the mean over those anchors."""
    z = F.normalize(embeddings, dim=1)
    distance = (2.0 - 2.0 * (z @ z.T)).clamp(min=1e-12).sqrt()
    same = labels[:, None] == labels[None, :]
    eye = torch.eye(len(z), dtype=torch.bool, device=z.device)
    positive, negative = same & ~eye, ~same
    hardest_positive = distance.masked_fill(~positive, float("-inf")).amax(1)
    hardest_negative = distance.masked_fill(~negative, float("inf")).amin(1)
    valid = positive.any(1) & negative.any(1)
    per_anchor = F.relu(hardest_positive - hardest_negative + margin).masked_fill(~valid, 0.0)
    return per_anchor.sum() / valid.sum().clamp(min=1) + 0.0 * z.sum()


@HEADS.register("embedding")
class EmbeddingHead(nn.Module):
    """Pool → [MLP] → linear → L2-normalised embedding of ``embedding_dim`` values.

    Args:
        in_channels: channels of each feature map of the list it reads (the backbone's).
        num_classes: number of training identities: the class vectors of ``arcface`` /
            ``cosface``; ``None`` takes the number of ``class_names`` (the training set's
            identities). Not used by ``supcon`` / ``triplet``.
        embedding_dim: size D of the embedding.
        hidden_dims: widths of the projection MLP's hidden layers (linear → BatchNorm →
            ReLU each); ``()`` projects with one linear layer.
        pooling: ``"avg"`` or ``"max"`` global pooling.
        level: which feature map of the list to pool (default: the last).
        loss: ``"arcface"``, ``"cosface"``, ``"supcon"`` or ``"triplet"``.
        scale: ArcFace / CosFace logit scale ``s``.
        margin: ArcFace angular margin (radians), CosFace cosine margin, triplet distance
            margin; ``None``: :data:`DEFAULT_MARGINS`.
        temperature: ``supcon`` temperature τ.
        class_names: the training identities' names (kept for reference).
    """

    task: ClassVar[str] = "embedding"
    reads: ClassVar[str] = "backbone"

    def __init__(
        self,
        in_channels: list[int],
        num_classes: int | None = None,
        embedding_dim: int = 128,
        hidden_dims: tuple[int, ...] = (),
        pooling: Literal["avg", "max"] = "avg",
        level: int = -1,
        loss: Literal["arcface", "cosface", "supcon", "triplet"] = "arcface",
        scale: float = 30.0,
        margin: float | None = None,
        temperature: float = 0.1,
        class_names: list[str] | None = None,
    ) -> None:
        super().__init__()
        if loss not in DEFAULT_MARGINS:
            raise ValueError(f"embedding head: loss must be one of {list(DEFAULT_MARGINS)}")
        if num_classes is None:
            num_classes = len(class_names) if class_names else 0
        if loss in ("arcface", "cosface") and num_classes < 2:
            raise ValueError(
                f"embedding head: loss {loss!r} learns one vector per training identity: set "
                "num_classes (or train on a dataset with identity labels, format: identities), "
                f"got {num_classes}"
            )
        self.num_classes = num_classes
        self.class_names = list(class_names) if class_names else None
        self.embedding_dim = embedding_dim
        self.level = level
        self.loss_name = loss
        self.scale = scale
        self.margin = DEFAULT_MARGINS[loss] if margin is None else margin
        self.temperature = temperature
        pool = nn.AdaptiveAvgPool2d(1) if pooling == "avg" else nn.AdaptiveMaxPool2d(1)
        layers: list[nn.Module] = [pool, nn.Flatten(1)]
        width = in_channels[level]
        for hidden in hidden_dims:
            layers += [nn.Linear(width, hidden), nn.BatchNorm1d(hidden), nn.ReLU(inplace=True)]
            width = hidden
        layers.append(nn.Linear(width, embedding_dim))
        self.project = nn.Sequential(*layers)
        self.weight = None
        if loss in ("arcface", "cosface"):
            self.weight = nn.Parameter(torch.empty(num_classes, embedding_dim))
            nn.init.normal_(self.weight, std=0.01)

    def forward(self, features: list[Tensor]) -> dict[str, Tensor]:
        return {"embedding": F.normalize(self.project(features[self.level]).float(), dim=1)}

    def loss(self, outputs: dict[str, Tensor], targets: dict[str, Any]) -> dict[str, Tensor]:
        """The configured loss over the images whose identity (``targets["identity"]``) is not
        ``-1``; zero-weighted (every parameter kept in the graph) when there are none. In eval
        mode ArcFace / CosFace report the batch-hard triplet loss instead: validation
        identities (new people) have no class vector."""
        z = outputs["embedding"].float()
        labels = targets.get("identity")
        if labels is None:
            labels = torch.full(z.shape[:1], IGNORE_CLASS, dtype=torch.long, device=z.device)
        labels = torch.as_tensor(labels, device=z.device).reshape(-1)
        valid = labels != IGNORE_CLASS
        anchor = 0.0 * z.sum() + (0.0 * self.weight.sum() if self.weight is not None else 0.0)
        if not valid.any():
            return {self.loss_name: anchor}
        z, labels = z[valid], labels[valid]
        if self.loss_name in ("arcface", "cosface") and not self.training:
            # validation identities are other people than the class vectors': their loss is
            # the batch-hard triplet loss, which needs no vector per identity
            value = batch_hard_triplet_loss(z, labels, DEFAULT_MARGINS["triplet"])
        elif self.loss_name in ("arcface", "cosface"):
            if int(labels.max()) >= self.num_classes:
                raise DataError(
                    f"embedding head: identity label {int(labels.max())} in a training batch, "
                    f"but the head has num_classes={self.num_classes} identity vectors; leave "
                    "num_classes unset to take the number of training identities"
                )
            make = arcface_logits if self.loss_name == "arcface" else cosface_logits
            logits = make(z, self.weight, labels, self.scale, self.margin)
            value = F.cross_entropy(logits, labels)
        elif self.loss_name == "supcon":
            value = supcon_loss(z, labels, self.temperature)
        else:
            value = batch_hard_triplet_loss(z, labels, self.margin)
        return {self.loss_name: value + anchor}

    def postprocess(
        self,
        outputs: dict[str, Tensor],
        image_sizes: list[tuple[int, int]] | None = None,
        orig_sizes: list[tuple[int, int]] | None = None,
    ) -> list[dict[str, Any]]:
        """Per image: ``embedding`` (a unit vector, float tensor [D])."""
        return [{"embedding": e} for e in outputs["embedding"].float()]
