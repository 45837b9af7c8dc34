"""The names and defaults that the library and the ``visionkit`` command both offer, in a
module that imports nothing: the command builds its parser (``--help``, ``choices``) from them
without importing torch, and the library modules that use them import them from here."""

#: The dataset splits of a config (``data.train``, ``data.val``, the optional ``data.test``),
#: in the order ``visionkit split`` writes their files.
SPLITS = ("train", "val", "test")
#: The splits ``visionkit eval`` scores; both are built alike (every image kept).
EVAL_SPLITS = ("val", "test")

#: Images per forward pass when predicting or embedding (``model.predict``, ``model.embed``,
#: ``predict_files``, ``Gallery``, ``OnnxPredictor``, ``visionkit predict --batch-size``): 8
#: decoded photos and their dense outputs at the photos' own size (a semantic head's scores
#: are resized to each image) fit a laptop's memory, and larger batches barely speed up a CPU.
DEFAULT_PREDICT_BATCH_SIZE = 8

#: The score threshold of a box head's predictions when its model keeps none of its own (a
#: model never validated, or one whose boxes found nothing): Ultralytics' ``conf``. A trained
#: model keeps the threshold of its best F1 on the validation set (``meta["predict_conf"]``,
#: :mod:`visionkit.evaluation.confidence`).
DEFAULT_PREDICT_CONF = 0.25

#: Test-time augmentations (:mod:`visionkit.inference.tta`).
TTA_MODES = ("flip",)

#: The formats ``export`` writes (:mod:`visionkit.export`).
EXPORT_FORMATS = ("onnx", "torchscript", "safetensors")
#: ``export(..., exporter=...)`` / ``--exporter``: ``auto`` tries the dynamo exporter first and
#: falls back to the TorchScript-based one; the others use that exporter only.
EXPORTERS = ("auto", "dynamo", "torchscript")
DEFAULT_OPSET = 18
#: The lowest opset that ``--opset`` takes (the TorchScript-based exporter's lowest), and the
#: lowest the dynamo exporter writes itself (torch's ``TORCHLIB_OPSET``; below it, torch tries
#: a conversion that fails on most models and then writes 18): ``--exporter auto`` writes a
#: lower opset with the TorchScript-based exporter.
MIN_OPSET = 7
DYNAMO_MIN_OPSET = 18
#: How far an exported model's outputs may be from PyTorch's (float32).
DEFAULT_ATOL = 1e-4

#: Ultralytics' training arguments (``yolo train epochs=3 imgsz=640``) and the config keys
#: that say the same here: told to whoever writes the first (an unknown key or option).
ULTRALYTICS_KEYS = {
    "data": "data.train and data.val: {format: yolo, root: FILE.yaml, split: train} (split: val); "
    "for a classify folder DIR of train/ and val/: data.train.root=DIR/train data.val.root=DIR/val",
    "epochs": "trainer.max_epochs (a recipe's trainer.max_steps / max_time end it first: "
    "trainer.max_steps=-1 trainer.max_time=null)",
    "imgsz": "data.image_size (and data.val_image_size where the config sets one: validation, "
    "eval and predict)",
    "batch": "data.batch_size",
    "workers": "data.num_workers",
    "cache": "data.cache (ram, or true; false)",
    "device": "trainer.accelerator (cpu, gpu) and trainer.devices (a count or a list)",
    "lr0": "optimizer.lr",
    "patience": "early_stopping.patience",
    "project": "output_dir (runs go to output_dir/name; --output-dir names the run folder itself)",
    "name": "name (the run folder's name)",
    "weights": "model.init_from",
    "pretrained": "model.backbone.pretrained",
    "amp": "trainer.precision",
    "time": "trainer.max_time with its unit: time=0.5 (hours) is trainer.max_time='{hours: 0.5}'",
    "cos_lr": "scheduler.name (cosine, the default here, for cos_lr=True; there is no linear "
    "decay, Ultralytics' cos_lr=False: the others are step, onecycle and constant)",
    "lrf": "scheduler.min_lr_factor",
    "momentum": "optimizer.momentum (sgd), or the first of optimizer.betas (adam, adamw)",
    "save_period": "trainer.checkpoint_every_n_steps (in optimiser steps)",
    "mosaic": "a first step {name: Mosaic, p: 1.0} of data.transforms.train",
    "mixup": "a last step {name: MixUp, p: 0.1} of data.transforms.train",
    "close_mosaic": "data.close_mixing, a fraction of the schedule's steps: close_mosaic=10 of "
    "100 epochs is data.close_mixing=0.1",
    "copy_paste": "a last step {name: CopyPaste, p: 0.3} of data.transforms.train",
    "fliplr": "a step {name: HorizontalFlip, p: 0.5} of data.transforms.train",
    "flipud": "a step {name: VerticalFlip, p: 0.5} of data.transforms.train",
    "degrees": "a step {name: Affine, rotate: [-10, 10]} of data.transforms.train",
}

#: Ultralytics' export arguments (``yolo export format=onnx dynamic=True``) that ``visionkit
#: export`` has no option for, and why: told to whoever writes them.
ULTRALYTICS_EXPORT_ARGS = {
    "dynamic": "always so here: the batch size, height and width of the file are dynamic",
    "simplify": "no separate step here: the exporters fold constants, and the dynamo exporter "
    "optimises the graph (onnxscript)",
    "batch": "the batch size of the file is dynamic (any B): leave it out",
    "device": "the export runs on the CPU, and the file runs wherever onnxruntime does",
    "int8": "not offered: quantise the .onnx with onnxruntime.quantization (quantize_static)",
    "optimize": "not offered (a TorchScript-for-mobile setting)",
    "workspace": "a TensorRT setting: give it to trtexec when it converts the .onnx",
    "data": "int8 calibration data: int8 is not offered",
    "keras": "not offered: --format onnx, torchscript or safetensors",
}
_OUTPUT_FOLDER = (
    "--output-dir DIR names the output folder itself (default <run>/predict, then predict-2, ...)"
)
_CAPTIONS = (
    "not offered: boxes are drawn with their class name and score (--no-draw writes no "
    "drawing; predictions.json and --save-txt hold the boxes)"
)
#: Ultralytics' predict arguments (``yolo predict source=DIR vid_stride=2``) that ``visionkit
#: predict`` takes under another name, or has no option for and why: told to whoever writes
#: them (its options of the same name, --conf, --iou, --max-det, --save-txt, ..., are taken).
ULTRALYTICS_PREDICT_ARGS = {
    "source": "--input (files, folders, globs, .txt lists, videos, a webcam index)",
    "model": "--checkpoint (a .ckpt written by visionkit train, or its ONNX export)",
    "vid_stride": "--every N (predict on frames 0, N, 2N, ...)",
    "batch": "--batch-size",
    "augment": "--tta flip (the mirrored image too, merged)",
    "project": _OUTPUT_FOLDER,
    "name": _OUTPUT_FOLDER,
    "stream": "always so here: inputs are read, predicted and written a batch at a time (from "
    "Python: model.predict(source, stream=True))",
    "save": "always so here: the drawn images are written (--no-draw: none)",
    "show": "not offered: the drawn images are written, <name>_pred.png (a video's as "
    "<name>_pred.mp4)",
    "save_frames": "not offered: a video's drawn frames are written as <name>_pred.mp4",
    "line_width": "not offered: boxes are drawn with a width that follows the image's size "
    "(2 pixels on small images, 6 on a 2400 x 1800 photo); for another, draw the boxes of "
    "predictions.json with torchvision.utils.draw_bounding_boxes(image, boxes, width=N)",
    "show_labels": _CAPTIONS,
    "show_conf": _CAPTIONS,
    "show_boxes": _CAPTIONS,
    "agnostic_nms": "not offered: NMS runs per class (--iou sets its IoU threshold)",
    "retina_masks": "always so here: masks are given at the image's own resolution",
    "visualize": "not offered (feature maps)",
}

#: Ultralytics' arguments above that take a value (``--line-width 3``); the others are
#: switches (``--show``, ``--dynamic``), whose next argument is theirs only as True / False.
ULTRALYTICS_VALUE_FLAGS = frozenset(
    {"source", "model", "weights", "vid_stride", "batch", "project", "name", "line_width"}
    | {"device", "workspace", "data"}
)

#: Ultralytics' export formats that visionkit does not write, and how to get there from one it
#: writes.
ULTRALYTICS_EXPORT_FORMATS = {
    "engine": "TensorRT: export --format onnx, then trtexec --onnx=model.onnx "
    "--saveEngine=model.engine",
    "openvino": "OpenVINO: export --format onnx, then ovc model.onnx (or read the .onnx directly)",
    "coreml": "Core ML: export --format torchscript, then coremltools.convert on the traced module",
    "tflite": "TensorFlow Lite: export --format onnx, then onnx2tf -i model.onnx",
    "saved_model": "TensorFlow: export --format onnx, then onnx2tf -i model.onnx",
    "pb": "TensorFlow: export --format onnx, then onnx2tf -i model.onnx",
    "tfjs": "TensorFlow.js: export --format onnx, onnx2tf -i model.onnx (a SavedModel), "
    "then tensorflowjs_converter",
    "edgetpu": "Edge TPU: export --format onnx, onnx2tf -i model.onnx -oiqt (an int8 .tflite), "
    "then edgetpu_compiler",
    "ncnn": "ncnn: export --format torchscript or onnx, then pnnx",
    "paddle": "PaddlePaddle: export --format onnx, then x2paddle",
    "mnn": "MNN: export --format onnx, then MNNConvert -f ONNX",
}

#: Which weights of a checkpoint trained with ``ema.enabled: true`` are read (``--weights`` of
#: ``eval`` / ``predict`` / ``export``, ``visionkit.load(..., weights=)``): the averaged ones
#: (default) or the raw ones.
WEIGHTS = ("ema", "raw")
