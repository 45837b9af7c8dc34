"""Inference: the one predict loop (:mod:`~visionkit.inference.loop`) and what runs through it
— ``VisionModel.predict``, flip test-time augmentation (:mod:`~visionkit.inference.tta`), the
ONNX Runtime predictor (:mod:`~visionkit.inference.onnx_runtime`) —, prediction on files,
folders, videos and webcams (:mod:`~visionkit.inference.predict`, reading through
:mod:`~visionkit.inference.sources`, writing through :mod:`~visionkit.inference.outputs`),
the per-call options ``conf`` / ``iou`` / ``max_det`` / ``classes`` / ``imgsz``
(:mod:`~visionkit.inference.options`), the device and precision choice
(:mod:`~visionkit.inference.device`) and drawing (:mod:`~visionkit.inference.draw`)."""
