"""``visionkit.Gallery``: an index of known identities' embeddings, searched by cosine
similarity.

Built from a folder of identities (``root/<name>/<image>``, the ``identities`` layout): each
image's embedding is kept with its identity's name. :meth:`Gallery.search` embeds the query
images and returns, per query, the ``k`` most similar gallery images' names and cosine
similarities. The search is a NumPy matrix product (exact); with ``faiss`` installed (optional,
``index="faiss"`` or ``"auto"``) an exact ``IndexFlatIP`` does the same for large galleries.

>>> gallery = Gallery.from_folder(model, "people/")  # doctest: +SKIP
>>> names, sims = gallery.search(images, k=5)  # doctest: +SKIP
>>> names[0][0], float(sims[0][0])  # doctest: +SKIP
('alice', 0.87)
"""

from __future__ import annotations

import importlib
import os
from collections.abc import Sequence
from pathlib import Path
from typing import Any, Literal

import numpy as np
import torch

from visionkit.choices import DEFAULT_PREDICT_BATCH_SIZE
from visionkit.data.batch import IMAGE_EXTENSIONS, list_files
from visionkit.data.io import read_image
from visionkit.data.readers.folder import class_folders
from visionkit.errors import DataError


class Gallery:
    """Embeddings ``[N, D]`` with the identity name of each row.

    Args:
        model: a model with an ``embedding`` head (:meth:`VisionModel.embed
            <visionkit.models.model.VisionModel.embed>`), used to embed queries; ``None`` for a
            gallery searched with embeddings only.
        embeddings: ``[N, D]`` vectors (normalised here).
        names: the identity of each row.
        paths: the image file of each row (optional).
        index: ``"numpy"``, ``"faiss"`` (an error when it is not installed) or ``"auto"``
            (faiss when installed).
    """

    def __init__(
        self,
        model: Any,
        embeddings: np.ndarray,
        names: Sequence[str],
        paths: Sequence[str] | None = None,
        index: Literal["auto", "numpy", "faiss"] = "auto",
    ) -> None:
        self.embeddings = unit_rows(np.reshape(embeddings, (len(names), -1)))
        self.names = list(names)
        self.paths = list(paths) if paths is not None else None
        self.model = model
        self._faiss = None
        if index in ("auto", "faiss"):
            try:
                faiss = importlib.import_module("faiss")  # optional: the faiss extra
            except ImportError:
                if index == "faiss":
                    raise ImportError(
                        "Gallery(index='faiss'): faiss is not installed (pip install faiss-cpu); "
                        "index='numpy' searches without it"
                    ) from None
            else:
                self._faiss = faiss.IndexFlatIP(self.embeddings.shape[1])
                self._faiss.add(self.embeddings)

    @classmethod
    def from_folder(
        cls,
        model: Any,
        root: str | os.PathLike,
        batch_size: int = DEFAULT_PREDICT_BATCH_SIZE,
        index: Literal["auto", "numpy", "faiss"] = "auto",
    ) -> Gallery:
        """Embed every image of ``root/<name>/`` with ``model``; its name is the folder's.
        The folders are those the ``identities`` reader reads: hidden ones (``.thumbnails``)
        and macOS's ``__MACOSX`` are not identities.

        Raises:
            DataError: ``root`` is not a folder or holds no images in sub-folders.
        """
        root = Path(root)
        if not root.is_dir():
            raise DataError(f"gallery: {root}: not a folder (expected root/<identity>/<image>)")
        names, paths = [], []
        for name in class_folders(root, IMAGE_EXTENSIONS):
            for path in list_files(root / name, IMAGE_EXTENSIONS):
                names.append(name)
                paths.append(str(path))
        if not paths:
            raise DataError(
                f"gallery: no images under {root} (expected root/<identity>/<image> with one of "
                f"{', '.join(IMAGE_EXTENSIONS)})"
            )
        parts = [
            model.embed([read_image(p) for p in paths[i : i + batch_size]], batch_size=batch_size)
            for i in range(0, len(paths), batch_size)
        ]
        return cls(model, np.concatenate(parts), names, paths, index=index)

    def __len__(self) -> int:
        return len(self.names)

    def _unit_vectors(self, items: Any, batch_size: int, caller: str) -> np.ndarray:
        """Unit float32 rows ``[N, D]``: ``items`` embedded by the model, or embeddings
        already (:func:`given_embeddings`) of the gallery's width.

        Raises:
            ValueError: images without a model, or embeddings of another width.
        """
        z = given_embeddings(items)
        if z is None:
            if self.model is None:
                raise ValueError(f"Gallery.{caller}: images need a model; give embeddings [N, D]")
            z = self.model.embed(items, batch_size=batch_size)
        width = self.embeddings.shape[1]
        if z.shape[1] != width:
            raise ValueError(
                f"Gallery.{caller}: embeddings of {z.shape[1]} values, but the gallery's have "
                f"{width} (made by another model or head?)"
            )
        return unit_rows(z)

    def add(
        self,
        images: Any,
        names: Sequence[str],
        paths: Sequence[str] | None = None,
        batch_size: int = DEFAULT_PREDICT_BATCH_SIZE,
    ) -> None:
        """Enrol new rows: ``images`` (anything :meth:`VisionModel.predict` takes; embeddings
        already, as :meth:`search` takes them) with the identity ``names`` of each,
        and their image ``paths`` when the gallery keeps paths (new identities or more images
        of known ones; searched at once, the faiss index too).

        Raises:
            ValueError: ``names`` (or ``paths``) does not give one entry per image, or images
                without a model.
        """
        z = self._unit_vectors(images, batch_size, "add")
        if len(names) != len(z) or (paths is not None and len(paths) != len(z)):
            raise ValueError(
                f"Gallery.add: {len(z)} images but {len(names)} names"
                + (f" and {len(paths)} paths" if paths is not None else "")
            )
        self.embeddings = np.concatenate([self.embeddings, z])
        self.names += list(names)
        if self.paths is not None:
            self.paths += list(paths) if paths is not None else [""] * len(z)
        if self._faiss is not None:
            self._faiss.add(z)

    def search(
        self, queries: Any, k: int = 5, batch_size: int = DEFAULT_PREDICT_BATCH_SIZE
    ) -> tuple[list[list[str]], np.ndarray]:
        """The ``k`` most similar gallery rows of each query.

        Args:
            queries: images (anything :meth:`VisionModel.predict` takes), or already computed
                embeddings of the gallery's width: a float array or tensor ``[Q, D]``, or one
                embedding ``[D]``.
            k: matches per query (at most the gallery's size).

        Returns:
            ``names`` (``Q`` lists of ``k`` identity names, best first) and ``similarities``
            (float32 ``[Q, k]`` cosine similarities); :meth:`nearest` gives the rows.
        """
        rows, sims = self.nearest(queries, k, batch_size)
        return [[self.names[int(r)] for r in row] for row in rows], sims

    def nearest(
        self, queries: Any, k: int = 5, batch_size: int = DEFAULT_PREDICT_BATCH_SIZE
    ) -> tuple[np.ndarray, np.ndarray]:
        """As :meth:`search`, the gallery rows (int ``[Q, k]``: indices into ``names`` and
        ``paths``, best first) and their similarities (float32 ``[Q, k]``)."""
        q = self._unit_vectors(queries, batch_size, "search")
        k = max(1, min(int(k), len(self.names)))
        if self._faiss is not None:
            sims, rows = self._faiss.search(q, k)
        else:
            all_sims = q @ self.embeddings.T
            rows = np.argsort(-all_sims, axis=1, kind="stable")[:, :k]
            sims = np.take_along_axis(all_sims, rows, axis=1)
        return np.asarray(rows, dtype=np.int64), sims.astype(np.float32)


def given_embeddings(items: Any) -> np.ndarray | None:
    """``items`` as rows ``[N, D]`` when they are embeddings already, ``None`` when they are
    images: a float NumPy array or tensor ``[N, D]``, or one embedding ``[D]`` (a prediction's
    ``embedding``, a ``<image>_<head>.npy`` file of ``visionkit predict``)."""
    if isinstance(items, torch.Tensor) and items.is_floating_point():
        items = items.detach().float().cpu().numpy()
    if not isinstance(items, np.ndarray) or items.dtype.kind != "f" or items.ndim not in (1, 2):
        return None
    return items.reshape(1, -1) if items.ndim == 1 else items


def unit_rows(z: Any) -> np.ndarray:
    """``z`` ``[N, D]`` as float32 rows of length 1 (zero rows stay zero)."""
    z = np.asarray(z, dtype=np.float32)
    return z / np.maximum(np.linalg.norm(z, axis=1, keepdims=True), 1e-12)


def add_matches(gallery: Gallery, predictions: list[dict[str, Any]], k: int = 5) -> None:
    """Give every embedding of ``predictions`` (one dict per image, keyed by head) its ``k``
    best ``matches`` in ``gallery``: ``[{"name": ..., "similarity": ..., "path": ...}, ...]``,
    best first (``path``: the matched gallery image, when the gallery knows its files)."""
    for prediction in predictions:
        for result in prediction.values():
            if isinstance(result, dict) and "embedding" in result:
                vector = np.asarray(result["embedding"].float().cpu(), dtype=np.float32)
                rows, sims = gallery.nearest(vector[None], k=k)
                result["matches"] = [
                    {"name": gallery.names[r], "similarity": round(float(s), 5)}
                    | ({"path": gallery.paths[r]} if gallery.paths else {})
                    for r, s in zip(rows[0].tolist(), sims[0], strict=True)
                ]
