"""Predict with an ONNX export through onnxruntime: same input and output as
``VisionModel.predict``, without the model's weights in PyTorch.

The graph returns raw head outputs (see :mod:`visionkit.export`). :class:`OnnxPredictor` reads
the model's metadata, builds the model from its config on the ``meta`` device (no weights, no
memory: only the evaluation pipeline and the heads' ``postprocess`` are used), preprocesses
like ``VisionModel.predict`` (the evaluation transforms, normalised with the metadata's
mean/std, padded to a multiple of 32), runs onnxruntime and hands the outputs to the heads' own
``postprocess``, so decoding, NMS and mask upsampling are the PyTorch code itself: the same
predict loop (:mod:`visionkit.inference.loop`) with onnxruntime as its raw-output step.

>>> predictor = OnnxPredictor("model.onnx")  # doctest: +SKIP
>>> predictor.predict([image])[0]["det"]["boxes"]  # doctest: +SKIP
"""

from __future__ import annotations

import os
from collections.abc import Sequence
from typing import Any

import numpy as np
import torch

from visionkit.build.model import EvalPreprocess, model_from_meta
from visionkit.choices import DEFAULT_PREDICT_BATCH_SIZE
from visionkit.errors import ExportError
from visionkit.export.graph import INPUT_NAME, unflatten_outputs
from visionkit.export.metadata import read_metadata
from visionkit.export.onnx import onnx_session
from visionkit.inference.loop import Predictions, Sizes


class OnnxPredictor:
    """Predictions of an ONNX file written by ``visionkit export --format onnx``.

    Args:
        path: the ``.onnx`` file.

    Attributes:
        session: the onnxruntime session (CPU).
        metadata: the file's ``visionkit.*`` metadata (config, label names, category ids, mean,
            std, outputs, ...).
        output_names: the graph's outputs, ``<head>.<key>``.
        model: the model rebuilt from the metadata's config on the ``meta`` device — no
            weights; its heads' ``postprocess`` decodes the outputs, so their settings
            (``nms_thresh``, ``detections_per_img``, ``mask_thresh``; ``score_thresh``, the
            floor of :meth:`predict`'s default ``conf``) can be changed here.
        preprocess: the evaluation pipeline (transforms of the metadata, then normalisation
            with its mean/std).
    """

    def __init__(self, path: str | os.PathLike) -> None:
        self.path = str(path)
        self.session = onnx_session(path)
        self.metadata = read_metadata(self.session.get_modelmeta().custom_metadata_map)
        if "end_to_end" in self.metadata:
            raise ExportError(
                f"{path}: an end-to-end export (--nms: decoding and NMS in the graph), not raw "
                "outputs; run it with visionkit.export.standalone.Predictor (or python -m "
                "visionkit.export.standalone), or export again without --nms for OnnxPredictor"
            )
        outputs = self.metadata["outputs"]
        self.output_names = [o["name"] for o in outputs]
        self._paths = [tuple(o["path"]) for o in outputs]
        graph_outputs = [o.name for o in self.session.get_outputs()]
        if graph_outputs != self.output_names:
            raise ExportError(
                f"{path}: the graph's outputs {graph_outputs} differ from its metadata's "
                f"{self.output_names}"
            )
        with torch.device("meta"):  # structure only: preprocess and postprocess need no weights
            self.model = model_from_meta(self.metadata["meta"], source=path)
        self.preprocess = EvalPreprocess(
            self.metadata["preprocess"], self.metadata["mean"], self.metadata["std"]
        )
        self.class_names = self.metadata["label_names"]
        self.category_ids = self.metadata.get("category_ids") or []

    def run(self, images: np.ndarray) -> dict[str, dict[str, torch.Tensor]]:
        """Raw outputs per head (as ``VisionModel.forward``) for a normalised float32 batch
        ``[B, 3, H, W]`` (any H, W: the graph pads them to multiples of 32 as the collate does)."""
        values = self.session.run(
            self.output_names, {INPUT_NAME: np.ascontiguousarray(images, dtype=np.float32)}
        )
        return unflatten_outputs(self._paths, [torch.from_numpy(v) for v in values])

    def predict(
        self,
        images: Any,
        batch_size: int = DEFAULT_PREDICT_BATCH_SIZE,
        conf: float | None = None,
        iou: float | None = None,
        max_det: int | None = None,
        classes: Sequence[int | str] | int | str | None = None,
        imgsz: int | str | Sequence[int] | None = None,
    ) -> Predictions:
        """Predict on what ``VisionModel.predict`` takes (paths, folders, PIL images, RGB
        arrays of any size, tensors) with its options, ``imgsz`` included (the graph's height
        and width are dynamic), through the one predict loop
        (:func:`visionkit.inference.loop.predict_loop`) with onnxruntime as its raw-output step.

        Returns:
            One dict per image, keyed by head name, as ``VisionModel.predict`` (boxes in the
            original image's pixels, masks at its size, class names).
        """
        from visionkit.inference.options import stream_predictions

        stream = stream_predictions(
            self.model,
            images,
            batch_size,
            conf=conf,
            iou=iou,
            max_det=max_det,
            classes=classes,
            **self.loop_steps(imgsz),
        )
        return list(stream)

    def loop_steps(self, imgsz: int | str | Sequence[int] | None = None) -> dict[str, Any]:
        """The predict loop's steps for this file (``preprocess`` at ``imgsz``, onnxruntime as
        ``run``, the heads' ``postprocess`` as ``decode``), for
        :func:`visionkit.inference.options.predict_images` and ``visionkit predict``."""
        from visionkit.inference.options import preprocess_at

        resized = imgsz is not None
        return {
            "preprocess": preprocess_at(self.model, imgsz) if resized else self.preprocess,
            "run": self._run_batch,
            "decode": self.model.postprocess,
        }

    def _run_batch(self, images: torch.Tensor, image_sizes: Sizes) -> dict:
        return self.run(images.numpy())

    def __repr__(self) -> str:
        return f"OnnxPredictor({self.path!r}, heads={list(self.model.heads)})"
