"""Synthetic identities for embedding heads: steps of ``data.transforms.train`` that turn an
ImageFolder of identities (``format: identities``) with few identities into one with many.

======================  ==========================================================
step                    what it makes
======================  ==========================================================
``SwapHalves``          half of the image joined with the other half of another
                        sample's: one identity per direction and ordered pair
``RotateIdentities``    the image turned by 0–3 quarter turns: one per turn
======================  ==========================================================

Both run with the multi-image steps (:mod:`visionkit.data.mixing`: after every per-sample
step, on the pipeline's output, from its seeded random stream), since they change the label.
An embedding head trained on 7 identities learns those 7; one trained on their composites and
turns must learn the parts and strokes that tell identities apart, which is what identities it
never saw need (on scikit-learn's digits, docs/embeddings.md). The head gets
:func:`identity_count` class vectors, filled in when its ``num_classes`` is left out.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

import numpy as np
import pydantic
import torch

from visionkit.data import mixing
from visionkit.data.mixing import Probability, merge_skipped, resized_like, targets_of
from visionkit.errors import DataError


class IdentityStep:
    """What both identity steps share: they run after every per-sample step (``stage``),
    take samples with an image-level identity only (:meth:`check`), and learn the number of
    identities they receive on first use (``num_identities``, :func:`bind_identities`)."""

    stage = "after"
    partners = 1  # other samples each application draws

    def __init__(self, p: float) -> None:
        self.p = p
        self.where = type(self).__name__  # the key path, once the pipeline is built
        self.num_identities: int | None = None

    def check(self, sample: dict[str, Any]) -> str | None:
        """Why ``sample`` cannot be taken: it has no image-level identity, or other labels."""
        return identity_problem(sample, type(self).__name__)

    @property
    def identities(self) -> int:
        """The number of identities this step receives."""
        if self.num_identities is None:
            raise DataError(f"{self.where}: the number of identities is not set")
        return int(self.num_identities)


class SwapHalves(IdentityStep):
    """The top (or left) half of the image joined with the bottom (or right) half of another
    sample's: the sample becomes synthetic identity ``N + (d * N + a) * N + b``, for
    identities ``a`` (this sample's) and ``b`` (the other's) of ``N`` and the direction ``d``
    (0 top / bottom, 1 left / right, drawn at random). Each composite of two identities (of
    the same one too) is an identity of its own. ``N`` is set on first use
    (:func:`bind_identities`).

    >>> a = {"image": torch.zeros(1, 4, 4), "identity": 1, "image_size": (4, 4)}
    >>> b = {**a, "image": torch.ones(1, 4, 4), "identity": 2}
    >>> step = SwapHalves(p=1.0)
    >>> step.num_identities = 3
    >>> out = step(a, b, np.random.default_rng(1))
    >>> out["identity"], out["image"][0, :, 0].tolist()  # 3 + (0 * 3 + 1) * 3 + 2
    (8, [0.0, 0.0, 1.0, 1.0])
    """

    @staticmethod
    def count(identities: int) -> int:
        """The identities after this step, for ``identities`` before it."""
        return identities + 2 * identities**2

    @pydantic.validate_call
    def __init__(self, p: Probability = 0.5) -> None:
        super().__init__(p)

    def __call__(
        self, sample: dict[str, Any], partner: dict[str, Any], rng: np.random.Generator
    ) -> dict[str, Any]:
        n = self.identities
        partner = resized_like(partner, sample["image"].shape[-2:])
        direction = int(rng.integers(2))
        image = sample["image"].clone()
        h, w = image.shape[-2:]
        if direction == 0:
            image[..., h // 2 :, :] = partner["image"][..., h // 2 :, :]
        else:
            image[..., :, w // 2 :] = partner["image"][..., :, w // 2 :]
        a, b = int(sample["identity"]), int(partner["identity"])
        out = {**sample, "image": image, "identity": n + (direction * n + a) * n + b}
        out["image_size"] = tuple(map(max, sample["image_size"], partner["image_size"]))
        return merge_skipped(out, partner)


class RotateIdentities(IdentityStep):
    """The image turned by ``k`` quarter turns (``k`` drawn from 0–3), and a turned image is
    an identity of its own: ``k * N + i`` for identity ``i`` of ``N`` (counted after a
    :class:`SwapHalves` before it, when there is one). A single-image step that runs with
    the multi-image ones, since it changes the label.

    >>> sample = {"image": torch.arange(4.0).reshape(1, 2, 2), "identity": 1,
    ...           "image_size": (2, 2)}
    >>> step = RotateIdentities(p=1.0)
    >>> step.num_identities = 3
    >>> out = step(sample, None, np.random.default_rng(0))
    >>> out["identity"], out["image"][0].tolist()  # k = 3: 3 * 3 + 1
    (10, [[2.0, 0.0], [3.0, 1.0]])
    """

    partners = 0

    @staticmethod
    def count(identities: int) -> int:
        """The identities after this step, for ``identities`` before it."""
        return 4 * identities

    @pydantic.validate_call
    def __init__(self, p: Probability = 1.0) -> None:
        super().__init__(p)

    def __call__(
        self, sample: dict[str, Any], partner: None, rng: np.random.Generator
    ) -> dict[str, Any]:
        n = self.identities
        k = int(rng.integers(4))
        out = {**sample, "image": torch.rot90(sample["image"], k, dims=(-2, -1))}
        out["identity"] = k * n + int(sample["identity"])
        if k % 2:
            out["image_size"] = tuple(reversed(sample["image_size"]))
        return out


#: The steps that make synthetic identities, by the ``name`` a config gives them.
IDENTITY_STEPS: dict[str, Any] = {"SwapHalves": SwapHalves, "RotateIdentities": RotateIdentities}
mixing.MULTI_IMAGE.update(IDENTITY_STEPS)  # placed, validated and applied like MixUp


def identity_problem(sample: dict[str, Any], name: str) -> str | None:
    """Why an identity step (``name``) cannot take ``sample``: no image-level identity, or
    labels that the step cannot carry."""
    if sample.get("identity") is None:
        return (
            f"has no image-level identity: {name} makes new identities out of those of an "
            "ImageFolder of identities (format: identities)"
        )
    others = [k for k in targets_of(sample) if k != "identity"]
    if others:
        return f"has labels that {name} cannot carry ({', '.join(others)})"
    return None


def bind_identities(steps: Sequence[Any], identities: int) -> None:
    """Tell each identity step of ``steps`` (a pipeline's ``mixing`` steps, in order) how many
    identities it receives: ``identities`` for the first, then what the steps before it made."""
    for step in steps:
        if isinstance(step, IdentityStep):
            step.num_identities = identities
            identities = step.count(identities)


def identity_count(identities: int, train_steps: Sequence[Any]) -> int:
    """The class vectors an embedding head needs for ``identities`` training identities
    with the training pipeline ``train_steps`` (configured steps): each top-level
    :data:`IDENTITY_STEPS` step multiplies them, in order.

    >>> identity_count(7, [{"name": "Resize"}, {"name": "SwapHalves"}])
    105
    >>> identity_count(7, [{"name": "SwapHalves"}, {"name": "RotateIdentities"}])
    420
    """
    for spec in train_steps:
        step = IDENTITY_STEPS.get(spec.get("name")) if isinstance(spec, Mapping) else None
        if step is not None:
            identities = step.count(identities)
    return identities
