"""Converters from published annotation layouts (Pascal VOC, YOLO) to COCO json."""
