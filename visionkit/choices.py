"""The names and defaults that the library and the ``visionkit`` command both offer, in a
module that imports nothing: the command builds its parser (``--help``, ``choices``) from them
without importing torch, and the library modules that use them import them from here."""

#: The dataset splits of a config (``data.train``, ``data.val``, the optional ``data.test``),
#: in the order ``visionkit split`` writes their files.
SPLITS = ("train", "val", "test")
#: The splits ``visionkit eval`` scores; both are built alike (every image kept).
EVAL_SPLITS = ("val", "test")

#: Test-time augmentations (:mod:`visionkit.inference.tta`).
TTA_MODES = ("flip",)

#: The formats ``export`` writes (:mod:`visionkit.export`).
EXPORT_FORMATS = ("onnx", "torchscript", "safetensors")
#: ``export(..., exporter=...)`` / ``--exporter``: ``auto`` tries the dynamo exporter first and
#: falls back to the TorchScript-based one; the others use that exporter only.
EXPORTERS = ("auto", "dynamo", "torchscript")
DEFAULT_OPSET = 18
#: How far an exported model's outputs may be from PyTorch's (float32).
DEFAULT_ATOL = 1e-4
