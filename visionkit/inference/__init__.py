"""Inference: the one predict loop (:mod:`~visionkit.inference.loop`) and what runs through it
— ``VisionModel.predict``, flip test-time augmentation (:mod:`~visionkit.inference.tta`), the
ONNX Runtime predictor (:mod:`~visionkit.inference.onnx_runtime`) —, prediction on files,
folders and videos (:mod:`~visionkit.inference.predict`) and drawing
(:mod:`~visionkit.inference.draw`)."""
