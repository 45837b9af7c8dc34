"""What :func:`visionkit.engine.runner.evaluate` checks of a checkpoint's evaluation before
any data is read: the overrides ``visionkit eval`` takes, and the scored split's label
settings against those of the checkpoint's own ``data.train`` (``build/label_settings.py``:
a split read otherwise than the labels the model learnt is scored wrongly)."""

from __future__ import annotations

import logging
from collections.abc import Mapping, Sequence
from typing import Any

from visionkit.build.label_settings import label_setting_problems
from visionkit.choices import EVAL_SPLITS, TTA_MODES
from visionkit.config import override_keys
from visionkit.errors import ConfigError
from visionkit.evaluation.keypoints import SIGMA_OVERRIDE
from visionkit.models.averaged_weights import check_weights

logger = logging.getLogger(__name__)

#: The sections whose keys ``visionkit eval`` overrides (and a keypoint head's OKS sigmas).
EVAL_OVERRIDE_SECTIONS = ("data.", "trainer.")


def check_eval_arguments(split: Any, tta: Any, weights: Any = None, model: Any = None) -> None:
    """Refuse a ``split`` or ``tta`` that ``evaluate`` does not know, before the checkpoint is
    loaded, naming the argument and its option (``split (--split)``): an unknown ``tta`` was a
    ``ValueError`` traceback once the data was read; and ``weights`` that name no set, or one
    that a ``model`` in memory does not hold (:func:`~visionkit.models.averaged_weights.
    check_weights`)."""
    check_weights(weights, source=model)
    problems = []
    if split not in EVAL_SPLITS:
        problems.append(f"split (--split): expected one of {', '.join(EVAL_SPLITS)}, got {split!r}")
    if tta is not None and tta not in TTA_MODES:
        problems.append(
            f"tta (--tta): unknown test-time augmentation {tta!r}; valid: {', '.join(TTA_MODES)}"
        )
    if problems:
        raise ConfigError(problems)


def check_eval_overrides(overrides: Sequence[str]) -> None:
    """Refuse overrides ``evaluate`` does not take: other sections than ``data.`` and
    ``trainer.`` (but a keypoint head's ``kpt_oks_sigmas``), and the data's image sizes."""
    bad = [
        f"{o!r}: eval accepts data.*, trainer.* and model.heads.<keypoint head>.kpt_oks_sigmas "
        "overrides only"
        for o, key in zip(overrides, override_keys(overrides), strict=True)
        if not (o.startswith(EVAL_OVERRIDE_SECTIONS) or SIGMA_OVERRIDE.match(key))
    ]
    bad += [
        f"{o!r}: the evaluation size is given by --imgsz N (or --imgsz H,W), which resizes "
        f"every sizing step of the evaluation pipeline; {key} does not reach the "
        "sizes a checkpoint's config has written into data.transforms.val"
        for o, key in zip(overrides, override_keys(overrides), strict=True)
        if key in ("data.image_size", "data.val_image_size")
    ]
    if bad:
        raise ConfigError(bad)


def check_eval_label_settings(data: Any, split: str, saved: Mapping[str, Any]) -> None:
    """Compare the label settings of ``data.<split>`` (``data``: the validated section, with
    the command line's overrides) with those of ``saved``, the checkpoint's own config:
    where both read the same label files another way, a :class:`ConfigError` naming the key
    and what to write; where they read other files, a warning (a checkpoint of an earlier
    version, evaluated on other data, still evaluates).

    Raises:
        ConfigError: the split reads the training split's label files otherwise.
    """
    trained = (saved.get("data") or {}).get("train")
    if trained is None:  # a model built in Python: no training split to compare with
        return
    errors, warnings = label_setting_problems(data, [split], train=trained)
    for warning in warnings:
        logger.warning("%s", warning)
    if errors:
        raise ConfigError([f"{e} (the checkpoint's data.train, as it was trained)" for e in errors])
