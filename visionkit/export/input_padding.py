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
lowest opset with padding (:data:`PAD_MIN_OPSET`). An output at the input's pixels (the
end-to-end graph's semantic ``mask`` ``[B, H, W]``) is cut back to the input's ``H × W``
(``Slice`` by the shape taken before the padding), so that it is the size its declared dims
say.
"""

from __future__ import annotations

from collections.abc import Sequence
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


def pad_input(proto: Any, onnx: Any, divisor: int = SIZE_DIVISOR, crop: Sequence[str] = ()) -> None:
    """Make ``proto``'s graph (in place) take ``images`` ``[B, 3, H, W]`` of any ``H``, ``W``,
    padded with zeros at the bottom / right to multiples of ``divisor`` before the traced
    graph reads them; the input's height and width are named ``height`` and ``width``. The
    outputs named in ``crop`` (``[B, H', W']`` at the padded size) are cut to ``[B, H, W]``,
    their dims named ``height`` and ``width`` too."""
    helper, numpy_helper = onnx.helper, onnx.numpy_helper
    graph = proto.graph
    _rename_input(graph, INPUT_NAME, PADDED_NAME)
    constants = {
        "divisor": np.array([divisor, divisor], np.int64),
        "starts": np.array([2], np.int64),
        "ends": np.array([4], np.int64),
        "before": np.zeros(6, np.int64),  # B, C, H, W at the start; B, C at the end
        "origin": np.zeros(2, np.int64),  # where a cropped output starts (row, column)
        "axes": np.array([1, 2], np.int64),  # a cropped output's H, W
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
    for output in crop:  # the traced graph's output at the padded size, then cut to H x W
        whole = name(f"uncropped_{output}")
        for node in graph.node:
            node.output[:] = [whole if out == output else out for out in node.output]
        _rename_input(graph, output, whole)
        inputs = [whole, name("origin"), name("hw"), name("axes")]
        graph.node.append(helper.make_node("Slice", inputs, [output], name=name(f"crop_{output}")))
        _name_height_width(graph.output, output, first=1)
    _name_height_width(graph.input, INPUT_NAME, first=2)


def _name_height_width(values: Any, name: str, first: int) -> None:
    """Declare dims ``first`` and ``first + 1`` of the graph value ``name`` (among ``values``)
    as the input's ``height`` and ``width``."""
    for value in values:
        if value.name == name:
            dims = value.type.tensor_type.shape.dim
            for index, label in ((first, "height"), (first + 1, "width")):
                dims[index].Clear()
                dims[index].dim_param = label
