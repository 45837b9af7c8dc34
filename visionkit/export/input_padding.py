"""The ONNX graph pads its own input: ``images`` of any height and width are padded with zeros
at the bottom and right to multiples of :data:`~visionkit.export.graph.SIZE_DIVISOR` inside
the graph, as visionkit's collate pads a batch and torchvision's detection models pad theirs
(``GeneralizedRCNNTransform``, ``size_divisible=32``).

Without it, a program running the file with onnxruntime alone at, say, 70 × 90 got outputs
of shifted feature maps and no error: the backbone's strides do not divide such a size. With
it, any size gives what ``visionkit predict`` gives for that image, whose outputs are those of
the padded input (a semantic head's logits cover the padding too, at the bottom / right).

The nodes are added to the exported graph (``Shape`` → ``Slice`` → ``Mod`` → ``Pad``), so
both exporters' files get the same; ``Pad`` takes its amounts as an input from opset 11, the
lowest opset with padding (:data:`PAD_MIN_OPSET`).
"""

from __future__ import annotations

from typing import Any

import numpy as np

from visionkit.export.graph import INPUT_NAME, SIZE_DIVISOR

PAD_MIN_OPSET = 11  # Pad with its amounts as an input
PADDED_NAME = f"{INPUT_NAME}_padded"  # the padded batch, what the traced graph reads
_PREFIX = "visionkit_input_padding_"


def _rename_input(graph: Any, old: str, new: str) -> None:
    """Every node of ``graph`` (and of its sub-graphs: ``If`` / ``Loop`` bodies read outer
    names) reading ``old`` reads ``new``."""
    for node in graph.node:
        node.input[:] = [new if name == old else name for name in node.input]
        for attribute in node.attribute:
            for sub in [attribute.g, *attribute.graphs]:
                if sub is not None and len(sub.node):
                    _rename_input(sub, old, new)


def pad_input(proto: Any, onnx: Any, divisor: int = SIZE_DIVISOR) -> None:
    """Make ``proto``'s graph (in place) take ``images`` ``[B, 3, H, W]`` of any ``H``, ``W``,
    padded with zeros at the bottom / right to multiples of ``divisor`` before the traced
    graph reads them; the input's height and width are named ``height`` and ``width``."""
    helper, numpy_helper = onnx.helper, onnx.numpy_helper
    graph = proto.graph
    _rename_input(graph, INPUT_NAME, PADDED_NAME)
    constants = {
        "divisor": np.array([divisor, divisor], np.int64),
        "starts": np.array([2], np.int64),
        "ends": np.array([4], np.int64),
        "before": np.zeros(6, np.int64),  # B, C, H, W at the start; B, C at the end
    }
    graph.initializer.extend(
        numpy_helper.from_array(value, _PREFIX + name) for name, value in constants.items()
    )

    def name(text: str) -> str:
        return _PREFIX + text

    nodes = [
        helper.make_node("Shape", [INPUT_NAME], [name("shape")], name=name("shape")),
        helper.make_node(
            "Slice", [name("shape"), name("starts"), name("ends")], [name("hw")], name=name("hw")
        ),
        helper.make_node("Mod", [name("hw"), name("divisor")], [name("rest")], name=name("rest")),
        helper.make_node("Sub", [name("divisor"), name("rest")], [name("up")], name=name("up")),
        helper.make_node("Mod", [name("up"), name("divisor")], [name("after")], name=name("after")),
        helper.make_node(
            "Concat", [name("before"), name("after")], [name("pads")], axis=0, name=name("pads")
        ),
        helper.make_node("Pad", [INPUT_NAME, name("pads")], [PADDED_NAME], name=name("pad")),
    ]
    for i, node in enumerate(nodes):
        graph.node.insert(i, node)
    for value in graph.input:
        if value.name == INPUT_NAME:
            dims = value.type.tensor_type.shape.dim
            for index, label in ((2, "height"), (3, "width")):
                dims[index].Clear()
                dims[index].dim_param = label
