"""Predict on image files, folders, globs, videos and webcams; draw the predictions
(:mod:`visionkit.inference.draw`); write ``predictions.json`` (COCO results), ``images.json``
(image-level results), and on request YOLO label files (``labels/<name>.txt``).

Output names mirror the inputs: each output is named after its input's path relative to the
common folder of all inputs, with the input's suffix kept
(:func:`visionkit.inference.sources.named_inputs`), so ``a/001.jpg``, ``b/001.jpg`` and
``001.png`` give ``a/001.jpg_pred.png``, ``b/001.jpg_pred.png`` and ``001.png_pred.png``:
distinct, and the same on every run. Nothing inside the output folder is ever read as input.

Inputs are streamed (:func:`visionkit.inference.sources.iter_images`): images are decoded,
predicted and written one batch at a time, so at most one batch of decoded images and of
results is held: each batch's entries are appended to temporary files
(:class:`visionkit.inference.outputs.JsonArrayStream`), renamed to ``predictions.json`` and
``images.json`` at the end (or at Ctrl-C), so a webcam can run for hours. Videos
(:data:`VIDEO_EXTENSIONS`) and webcams (``"0"``) are read frame by frame with OpenCV; every
frame, or every ``every``-th, up to ``max_frames``, is one image of the output, and the drawn
frames make ``<name>_pred.mp4``. The options of :mod:`visionkit.inference.options` (``conf``,
``iou``, ``max_det``, ``classes``, ``imgsz``) apply to the drawn images and every file alike.

>>> from visionkit.inference.predict import predict_files
>>> predict_files("runs/quickstart/checkpoints/best.ckpt", ["photos/"], "out/")  # doctest: +SKIP
"""

from __future__ import annotations

import itertools
import logging
import os
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import torch

from visionkit.build.model import load
from visionkit.choices import DEFAULT_PREDICT_BATCH_SIZE, TTA_MODES
from visionkit.errors import (
    ConfigError,
    DataError,
    ImageDecodeError,
    VisionkitError,
    arguments_of,
    counted,
)
from visionkit.gallery import Gallery, add_matches
from visionkit.inference.crops import save_crops
from visionkit.inference.device import autocast_dtype, resolve_device
from visionkit.inference.draw import draw_predictions
from visionkit.inference.options import (
    box_heads,
    check_thresholds,
    parse_imgsz,
    predict_images,
    prediction_conf_note,
    preprocess_at,
    resolve_classes,
)
from visionkit.inference.outputs import (
    JsonArrayStream,
    coco_results,
    image_record,
    label_stems,
    write_label_txt,
    write_png,
    yolo_lines,
)
from visionkit.inference.sources import (
    VIDEO_EXTENSIONS,
    VideoWriters,
    Webcam,
    expand_inputs,
    is_video,
    iter_images,
    named_inputs,
    read_video,
    video_fps,
    video_frames,
)
from visionkit.inference.tta import tta_steps
from visionkit.models.averaged_weights import check_weights, one_set
from visionkit.models.model import VisionModel

__all__ = [
    "VIDEO_EXTENSIONS",
    "PredictInterrupted",
    "Webcam",
    "coco_results",
    "draw_predictions",
    "expand_inputs",
    "image_record",
    "is_video",
    "iter_images",
    "named_inputs",
    "predict_files",
    "read_video",
    "video_fps",
    "video_frames",
]

logger = logging.getLogger(__name__)


class PredictInterrupted(VisionkitError):
    """Ctrl-C stopped ``predict``; what was predicted until then is written."""

    exit_code = 130  # 128 + SIGINT, as a shell reports

    def __init__(self, count: int, path: Path) -> None:
        self.count, self.path = count, path
        super().__init__(
            f"stopped by Ctrl-C after {count} image(s) or frame(s); the predictions made until "
            f"then are written in {path}"
        )


def check_file_inputs(inputs: Any) -> None:
    """Refuse images in memory (numpy arrays, tensors, PIL images), alone or in a list, with
    where they go instead; :func:`predict_files` reads files."""
    items = [inputs] if not isinstance(inputs, (list, tuple)) else list(inputs)
    found = next((x for x in items if not isinstance(x, (str, os.PathLike, int))), None)
    if found is not None:
        raise TypeError(
            f"predict_files reads image and video files, folders, glob patterns and webcam "
            f"indices, not a {type(found).__module__}.{type(found).__name__}: an image in "
            "memory goes to model.predict(image) (numpy HWC uint8, a tensor or a PIL image), "
            "and visionkit.inference.draw.draw_predictions(image, prediction) draws its result"
        )


def predict_files(
    model: VisionModel | str | os.PathLike,
    inputs: Sequence[str | os.PathLike | int] | str | os.PathLike | int,
    output_dir: str | os.PathLike,
    batch_size: int = DEFAULT_PREDICT_BATCH_SIZE,
    draw: bool = True,
    progress: bool = True,
    every: int = 1,
    tta: str | None = None,
    conf: float | None = None,
    iou: float | None = None,
    max_det: int | None = None,
    classes: Sequence[int | str] | None = None,
    imgsz: int | str | Sequence[int | str] | None = None,
    device: str | torch.device | None = None,
    half: bool = False,
    bf16: bool = False,
    save_json: bool = True,
    save_txt: bool = False,
    save_conf: bool = False,
    max_frames: int | None = None,
    gallery: Any = None,
    exclude: Sequence[str | os.PathLike] = (),
    save_crop: bool = False,
    weights: str | None = None,
) -> Path:
    """Predict on every image, video and webcam of ``inputs`` and write, in ``output_dir``:

    - ``predictions.json``, when the model has a head that predicts boxes (detection,
      instance, keypoint heads): the box and instance-mask predictions as a COCO results list
      (``image_id``, ``category_id``, ``bbox`` xywh, ``score``, RLE ``segmentation`` for
      masks, plus ``head``, ``name``, and ``frame`` for video frames), which
      ``COCO.loadRes`` reads as it is;
    - ``images.json``: one entry per image or video frame (``id`` — the ``image_id`` above —,
      ``file_name``, ``frame`` for video frames, ``height``, ``width``) with the image-level
      results: class label, name and score; the label PNG of a semantic head (its path
      relative to ``output_dir``), its class ``names`` and each present class's share of
      the ``pixels``;
    - ``<name>_<head>.png`` (``<name>_<frame>_<head>.png`` for a video frame): each semantic
      head's label map (pixel value = class index);
    - ``<name>_pred.png`` per image and ``<name>_pred.mp4`` per video: the predictions drawn
      (unless ``draw=False``);
    - with ``save_txt``, ``labels/<stem>.txt`` per image with detections (``<stem>_<n>.txt``
      per video frame, ``n = frame + 1``: counted from 1, as Ultralytics): YOLO lines
      ``class cx cy w h`` normalised to the image, plus ``conf`` with ``save_conf``
      (:func:`visionkit.inference.outputs.yolo_lines`);
    - with ``save_crop``, ``crops/<class>/<stem>_<k>.jpg``: the ``k``-th detection's box cut
      out of its image (:func:`visionkit.inference.crops.save_crops`).

    ``<name>`` is the input's path relative to the common folder of the inputs, suffix kept
    (:func:`named_inputs`). Files inside ``output_dir`` are never read as input. Every file
    is written atomically, replacing a file of the same name (``visionkit predict`` writes
    into a new folder instead: :func:`visionkit.cli.predict.output_folder`). The drawn images
    and every file hold the same detections.

    Args:
        model: a :class:`VisionModel`, the path of a checkpoint, or of an ONNX export
            (``.onnx``, run by :class:`~visionkit.inference.onnx_runtime.OnnxPredictor` on the
            CPU: no ``tta``, ``device``, ``half``, ``bf16`` or ``gallery``).
        inputs: image or video files, folders (searched recursively), glob patterns, webcam
            indices (``0`` or ``"0"``); a list, or one of them.
        output_dir: created when missing.
        batch_size: images (or frames) per forward pass.
        draw: write the drawn images and videos.
        progress: show a progress bar (frames of videos count one each).
        every: of a video, predict on frames ``0, every, 2 * every, ...`` only; the drawn
            video then plays at ``fps / every``.
        tta: ``None``, or ``"flip"`` for horizontal-flip test-time augmentation
            (:mod:`visionkit.inference.tta`).
        conf, iou, max_det, classes, imgsz: see :mod:`visionkit.inference.options`
            (``None``: the model's own; ``conf``: each box head's best-F1 threshold of its
            last validation, else 0.25: :func:`~visionkit.inference.options.prediction_conf`).
        device: ``"auto"``, ``"cpu"``, ``"cuda:0"``, ... (:mod:`visionkit.inference.device`);
            ``None``: where the model is (a checkpoint loads on the CPU). A model passed in
            is moved back to where it was afterwards.
        half, bf16: run the model under float16 / bfloat16 autocast (refused where the
            device lacks it).
        save_json: write ``predictions.json`` and ``images.json``.
        save_txt, save_conf: write the YOLO label files (with the score).
        save_crop: write each detection's box cut out of its image (Ultralytics' ``save_crop``).
        max_frames: predict on at most so many frames of each video or webcam.
        weights: ``"raw"``: a checkpoint's raw weights of an EMA run (``None`` / ``"ema"``:
            the averaged ones; :func:`visionkit.load`; an export or a model in memory holds
            one set: an error naming it).
        gallery: a folder of identities (``root/<name>/<image>``) or a
            :class:`visionkit.Gallery`: each embedding head's result in ``images.json`` gets
            its 5 best ``matches`` (name, cosine similarity). Embedding heads always write
            ``<name>_<head>.npy`` (float32 ``[D]``).
        exclude: folders whose files are never read from input folders and globs (the
            earlier output folders beside ``output_dir``).

    Image ids count the images and frames from 1, in input order (a file given twice is read
    once). Returns the path of ``predictions.json`` (of ``images.json`` for a model without
    box heads, of ``output_dir`` when ``save_json=False``).

    Raises:
        TypeError: an input is an image in memory (a numpy array, tensor or PIL image), which
            :meth:`VisionModel.predict` takes.
        ConfigError: a bad option (``every``, ``tta``, a threshold, ``classes``, ``imgsz``,
            ``device``, ``half`` / ``bf16`` where the device lacks them, ``save_crop``
            without a box head).
        DataError: inputs missing, inside ``output_dir``, or unreadable.
        DiskFullError: the disk filled while writing (the file then is not replaced).
        PredictInterrupted: Ctrl-C; the outputs of the images predicted so far are written.
    """
    check_file_inputs(inputs)
    with arguments_of("predict_files"):  # visionkit predict: its options
        if every < 1:
            raise ConfigError(f"every (--every): must be at least 1, got {every}")
        if max_frames is not None and max_frames < 1:
            raise ConfigError(f"max_frames (--max-frames): must be at least 1, got {max_frames}")
        if tta is not None and tta not in TTA_MODES:
            raise ConfigError(
                f"tta (--tta): unknown test-time augmentation {tta!r}; valid: "
                f"{', '.join(TTA_MODES)}"
            )
        target = None if device is None else resolve_device(device)
        if target is not None:  # before loading the model: a bad option fails fast
            autocast_dtype(target, half, bf16)
        check_thresholds(conf, iou, max_det, batch_size)
        parse_imgsz(imgsz)
        check_weights(weights, source=model)
    named = named_inputs(inputs, output_dir, exclude)
    if is_onnx_file(model):  # onnxruntime on the CPU; the heads' own decoding
        from visionkit.inference.onnx_runtime import OnnxPredictor

        with arguments_of("predict_files"):  # visionkit predict: its options
            onnx_options(tta, device, half, bf16, gallery)
        predictor = OnnxPredictor(model)
        one_set(weights, predictor.metadata["meta"], model)
        model, loop, before = predictor.model, predictor.loop_steps(imgsz), None
    else:
        model = model if isinstance(model, VisionModel) else load(model, weights=weights)
        before = next(model.parameters()).device
        with arguments_of("predict_files"):  # --half on the CPU the model is on
            dtype = autocast_dtype(target or before, half, bf16)
        loop = {
            **tta_steps(model, tta),
            "autocast": dtype,
            "preprocess": preprocess_at(model, imgsz),
        }
        model.to(target or before)
    with arguments_of("predict_files"):
        resolve_classes(model, classes)  # a bad class fails before any image is read
        if save_crop and not box_heads(model):
            heads = ", ".join(model.heads)
            raise ConfigError(
                f"save_crop (--save-crop): the model has no head that predicts boxes (its "
                f"heads: {heads}); crops are cut out of detections"
            )
    if conf is None and box_heads(model):
        logger.info("conf (--conf) not given: %s", prediction_conf_note(model))
    options = {"conf": conf, "iou": iou, "max_det": max_det, "classes": classes}
    if gallery is not None and not isinstance(gallery, Gallery):
        gallery = Gallery.from_folder(model, gallery)
    try:
        return _predict(
            model,
            named,
            Path(output_dir),
            batch_size,
            draw,
            progress,
            every,
            options,
            loop,
            save_json,
            save_txt,
            save_conf,
            max_frames,
            gallery,
            save_crop,
        )
    finally:
        if before is not None:  # an ONNX file's model has no weights to move
            model.to(before)


def is_onnx_file(model: Any) -> bool:
    """Whether ``model`` names an ONNX export (``.onnx``), run by onnxruntime."""
    return isinstance(model, (str, os.PathLike)) and str(model).lower().endswith(".onnx")


def onnx_options(
    tta: str | None, device: str | torch.device | None, half: bool, bf16: bool, gallery: Any
) -> None:
    """Refuse the options an ONNX file cannot take: onnxruntime runs it on the CPU in
    float32, and flip TTA and galleries need the PyTorch model. ``device`` as given: ``auto``
    (the command line's default) is the CPU for an ONNX file, even with a GPU.

    Raises:
        ConfigError: naming each argument given and its option (``tta and bf16 (--tta,
            --bf16): ...``), and what to use instead; headed by the call that was given them
            (:func:`~visionkit.errors.arguments_of`) or by the command line.
    """
    given = {
        "tta": tta is not None,
        "device": str(device) not in ("None", "auto", "cpu"),  # auto: the CPU here
        "half": half,
        "bf16": bf16,
        "gallery": gallery is not None,
    }
    refused = [name for name, on in given.items() if on]
    if refused:
        names = " and ".join([", ".join(refused[:-1]), refused[-1]] if refused[1:] else refused)
        raise ConfigError(
            f"{names} ({', '.join(f'--{name}' for name in refused)}): an ONNX file runs on the "
            "CPU in float32 through onnxruntime, without test-time augmentation or galleries; "
            "give the checkpoint (.ckpt) it was exported from for these"
        )


def _predict(
    model: VisionModel,
    named: list[tuple[Any, str]],
    out_dir: Path,
    batch_size: int,
    draw: bool,
    progress: bool,
    every: int,
    options: dict[str, Any],
    loop: dict[str, Any],
    save_json: bool,
    save_txt: bool,
    save_conf: bool,
    max_frames: int | None,
    gallery: Gallery | None = None,
    save_crop: bool = False,
) -> Path:
    """The streaming loop of :func:`predict_files`."""
    paths = [path for path, _ in named]
    names = dict(named)
    stems = label_stems(list(names.values()))
    made = not out_dir.exists()  # an error removes it again while it holds nothing
    try:
        out_dir.mkdir(parents=True, exist_ok=True)
    except OSError as err:
        raise VisionkitError(
            f"cannot make the output folder {out_dir}: {err.strerror or err}; choose another "
            "with --output-dir"
        ) from None
    category_ids = model.meta.get("category_ids") or []
    records: list[dict[str, Any]] = []  # of the current batch only: streamed to the files
    results: list[dict[str, Any]] = []
    counts = [video_frames(p, every, max_frames) if is_video(p) else 1 for p in paths]
    bar = _progress(None if None in counts else sum(counts), progress)
    videos = VideoWriters(out_dir, every)
    image_id = 0
    interrupted = False
    has_boxes = bool(box_heads(model))
    kpt_dims = {n: h.kpt_dims for n, h in model.heads.items() if hasattr(h, "kpt_dims")}
    if save_json and not has_boxes and (out_dir / "predictions.json").exists():
        logger.warning(
            "%s is an earlier run's: this model has no head that predicts boxes and writes "
            "none (its images.json is new)",
            out_dir / "predictions.json",
        )
    json_files = ["images.json"] + (["predictions.json"] if has_boxes else [])
    streams = [JsonArrayStream(out_dir / name) for name in json_files] if save_json else []
    unreadable: list[ImageDecodeError] = []  # skipped, as Ultralytics does; counted below
    try:
        items = iter_images(paths, every, max_frames, skipped=unreadable)
        while chunk := list(itertools.islice(items, batch_size)):
            images = [image for _, _, image in chunk]
            predictions = predict_images(model, images, len(images), **options, **loop)
            if gallery is not None:
                add_matches(gallery, predictions)
            for (path, frame, image), prediction in zip(chunk, predictions, strict=True):
                image_id += 1
                name = names[path]
                # the record writes the semantic label PNGs, kept without the json files too
                record = image_record(image_id, path, image, prediction, out_dir, frame, name)
                if save_json:
                    entries = coco_results(image_id, prediction, category_ids)
                    for entry in entries if frame is not None else ():
                        entry["frame"] = frame
                    results += entries
                    records.append(record)
                if save_txt:
                    lines = yolo_lines(prediction, image.shape[:2], save_conf, kpt_dims)
                    write_label_txt(out_dir / "labels", stems[name], lines, frame)
                if save_crop:
                    save_crops(image, prediction, out_dir / "crops", stems[name], frame)
                if draw:
                    drawn = draw_predictions(image, prediction, legend_all=frame is not None)
                    if frame is None:
                        write_png(out_dir / f"{name}_pred.png", drawn)
                    else:
                        videos.write(path, drawn, name)
            _flush(streams, records, results)
            bar.update(len(chunk))
        if unreadable and not image_id:
            raise DataError(
                f"no input could be read: {counted(len(unreadable), 'unreadable image')}, "
                f"e.g. {unreadable[0]}"
            )
    except KeyboardInterrupt:
        interrupted = True
    except BaseException:
        for stream in streams:  # an error writes no json file (a previous one is kept)
            stream.abort()
        videos.abort()  # nor the video it was drawing
        if made and not any(out_dir.iterdir()):
            out_dir.rmdir()
        raise
    finally:
        videos.close()
        bar.close()
    target = out_dir
    if save_json:
        try:
            _flush(streams, records, results)  # the images predicted before a Ctrl-C
            target = [stream.close() for stream in streams][-1]
        except BaseException:
            for stream in streams:
                stream.abort()
            raise
    if interrupted:
        raise PredictInterrupted(image_id, target)
    if unreadable:
        logger.warning(
            "predict: skipped %s of %d (warned above): %s",
            counted(len(unreadable), "unreadable image"),
            image_id + len(unreadable),
            ", ".join(err.path for err in unreadable[:5])
            + (", ..." if len(unreadable) > 5 else ""),
        )
    return target


def _flush(
    streams: list[JsonArrayStream], records: list[dict[str, Any]], results: list[dict[str, Any]]
) -> None:
    """Append the batch's ``images.json`` records and ``predictions.json`` entries to the
    streams, emptying each list once it is written (a Ctrl-C in between writes the rest
    once, not twice)."""
    for stream, items in zip(streams, (records, results), strict=False):
        stream.extend(items)
        items.clear()
    records.clear()
    results.clear()


def _progress(total: int | None, enabled: bool) -> Any:
    try:
        from tqdm import tqdm
    except ImportError:  # pragma: no cover - tqdm ships with lightning
        enabled = False
    if enabled:
        return tqdm(total=total, desc="predict", unit="img")

    class _Silent:
        def update(self, n: int) -> None: ...

        def close(self) -> None: ...

    return _Silent()
