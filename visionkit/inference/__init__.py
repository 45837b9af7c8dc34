"""Inference: the predict loop over images and folders, test-time augmentation and the ONNX
Runtime predictor."""
