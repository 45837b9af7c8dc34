"""Identity styles on the shapes of the detection scenes (``make_shapes(styles=N)``), for the
``fcos_embedding`` head: each shape is painted in one of N *styles* of
:mod:`visionkit.data.synthetic_identities` (surface pattern, its scale and angle, two colours;
the outline stays the shape's category), and its annotation's ``identity`` is the style's
number. The same style appears in many images, at other positions, sizes, rotations and
occlusions, on other backgrounds: recognising the identity of a detection means recognising
its style. Styles depend on their number alone, so a validation set of styles never seen in
training is the same generator with ``first_style`` after the training set's last one.

Painting draws from its own random stream (``[seed, image, 5]``), so the shapes, their
boxes and the image classes are those of the same dataset without styles.
"""

from __future__ import annotations

import numpy as np

from visionkit.data.synthetic_identities import _pattern, style


def paint_styles(
    rng: np.random.Generator,
    pixels: np.ndarray,
    shapes: list[tuple[int, np.ndarray, np.ndarray]],
    styles: int,
    first_style: int = 0,
) -> list[int]:
    """Paint every shape of one image (``(category_id, visible mask, points)``, points[0]
    its centre, as ``make_shapes`` renders them) in a style drawn from ``first_style ..
    first_style + styles - 1``, in place in ``pixels`` ``[H, W, 3]`` uint8; returns the style
    number of each shape. The shapes of one image get different styles (an identity is one
    object, seen once per image).

    Raises:
        ValueError: ``styles`` < 2, fewer styles than shapes, or ``first_style`` < 0.
    """
    if styles < max(2, len(shapes)) or first_style < 0:
        raise ValueError(
            f"make_shapes: styles must be >= 2 and >= max_shapes (each shape of an image its "
            f"own style) and first_style >= 0; got styles={styles} for {len(shapes)} shapes, "
            f"first_style={first_style}"
        )
    drawn = rng.choice(styles, size=len(shapes), replace=False)
    size_y, size_x = pixels.shape[:2]
    ys, xs = np.mgrid[0:size_y, 0:size_x].astype(np.float64) + 0.5
    numbers = []
    for (_, visible, points), offset in zip(shapes, drawn, strict=True):
        number = int(first_style + offset)
        s = style(number)
        cx, cy = float(points[0][0]), float(points[0][1])
        radius = max(float(np.hypot(*(np.asarray(points[1:]) - points[0]).T).max()), 1.0)
        second = _pattern(
            str(s["pattern"]), xs - cx, ys - cy, float(s["period"]) * radius, float(s["angle"])
        )
        first_colour, second_colour = (
            np.clip(c + rng.normal(0, 10, 3), 0, 255)
            for c in s["colours"]  # type: ignore[union-attr]
        )
        colour = np.where(second[:, :, None], second_colour, first_colour)
        pixels[visible] = np.rint(colour[visible]).astype(np.uint8)
        numbers.append(number)
    return numbers
