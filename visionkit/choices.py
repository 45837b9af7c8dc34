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
    "data": "data.train and data.val: {format: yolo, root: FILE.yaml, split: train} (split: val)",
    "epochs": "trainer.max_epochs (a recipe's trainer.max_steps / max_time end it first: "
    "trainer.max_steps=-1 trainer.max_time=null)",
    "imgsz": "data.image_size",
    "batch": "data.batch_size",
    "workers": "data.num_workers",
    "device": "trainer.accelerator (cpu, gpu) and trainer.devices (a count or a list)",
    "lr0": "optimizer.lr",
    "patience": "early_stopping.patience",
    "project": "output_dir (runs go to output_dir/name; --output-dir names the run folder itself)",
    "name": "name (the run folder's name)",
    "weights": "model.init_from",
    "pretrained": "model.backbone.pretrained",
    "amp": "trainer.precision",
}
