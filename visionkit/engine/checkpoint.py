"""Lightning's checkpoint I/O routed through :mod:`visionkit.checkpoint`: atomic writes,
``weights_only=True`` reads."""

from __future__ import annotations

from typing import Any

from lightning.pytorch.callbacks import ModelCheckpoint
from lightning.pytorch.plugins.io import TorchCheckpointIO

from visionkit.checkpoint import load_checkpoint, save_atomic


class SafeCheckpointIO(TorchCheckpointIO):
    """Lightning's checkpoint I/O with atomic writes and ``weights_only=True`` reads."""

    def save_checkpoint(
        self, checkpoint: dict[str, Any], path: Any, storage_options: Any = None
    ) -> None:
        save_atomic(checkpoint, path)

    def load_checkpoint(
        self, path: Any, map_location: Any = None, weights_only: bool | None = None
    ) -> dict[str, Any]:
        return load_checkpoint(path, map_location=map_location or "cpu")


class NamedCheckpoint(ModelCheckpoint):
    """A ``ModelCheckpoint`` whose state in a checkpoint is keyed by its file name too, so that
    ``best`` and ``last`` (both without a monitor when there is no validation set) can live
    side by side: Lightning keys callback state by monitor and schedule only."""

    @property
    def state_key(self) -> str:
        return self._generate_state_key(
            filename=self.filename,
            monitor=self.monitor,
            mode=self.mode,
            every_n_train_steps=self._every_n_train_steps,
            every_n_epochs=self._every_n_epochs,
            train_time_interval=self._train_time_interval,
        )
