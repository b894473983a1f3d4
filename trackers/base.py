"""The interface every tracker implements.

Boxes are ``x, y, w, h`` in pixels (top-left corner, width, height) at this interface; a tracker converts
them once to whatever its motion model uses.
"""

from __future__ import annotations

import inspect
from abc import ABC, abstractmethod
from pathlib import Path
from typing import Any

import numpy as np
import yaml
from tqdm import tqdm

from mixdvae.mot import Sequence


def load_config(path: str | Path) -> dict[str, Any]:
    """A tracker configuration from a YAML file: a mapping (empty file: ``{}``); malformed YAML or another
    top-level type is a ValueError naming the file."""
    try:
        with open(path, encoding="utf-8") as handle:
            config = yaml.safe_load(handle)
    except yaml.YAMLError as err:
        raise ValueError(f"{path}: malformed YAML: {err}") from None
    if config is None:
        return {}
    if not isinstance(config, dict):
        kind = type(config).__name__
        raise ValueError(f"{path}: a tracker configuration must be a mapping of parameters, got {kind}")
    return config


class Tracker(ABC):
    """Base class: per-frame :meth:`update` and whole-sequence :meth:`track`.

    Subclasses set ``name`` (the registry key used by ``tools/track.py --tracker``) and take their
    parameters as keyword arguments, so that a YAML file of the same keys configures them
    (:meth:`from_config`).
    """

    name: str = "base"

    def reset(self, frame_rate: float = 30.0, image_size: tuple[int, int] = (1920, 1080)) -> None:
        """Forget all tracks and restart identities at 1; ``image_size`` is ``(width, height)`` in pixels."""
        self.frame_rate = float(frame_rate)
        self.image_size = image_size
        self.frame = 0

    @abstractmethod
    def update(self, detections: np.ndarray) -> np.ndarray:
        """Consume the next frame's detections, an (M, 5) array ``x, y, w, h, score`` (M may be 0).

        Returns an (L, 5) array ``x, y, w, h, id`` of the tracks reported for this frame.
        """

    def track(self, sequence: Sequence, progress: bool = False) -> np.ndarray:
        """Track a whole sequence from its public detections.

        Returns an (R, 6) array ``frame, id, x, y, w, h`` ready for :func:`mixdvae.mot.write_results`.
        """
        self.reset(sequence.frame_rate, sequence.image_size)
        rows = []
        frames = range(1, sequence.length + 1)
        for frame in tqdm(frames, desc=f"{self.name} {sequence.name}", unit="frame", disable=not progress):
            tracks = self.update(sequence.frame_detections(frame))  # (L, 5)
            rows.append(np.column_stack([np.full(len(tracks), frame), tracks[:, 4], tracks[:, :4]]))
        return np.concatenate(rows) if rows else np.zeros((0, 6))

    @classmethod
    def parameter_names(cls) -> set[str]:
        """Names accepted by :meth:`from_config`: the constructor's keyword arguments."""
        return set(inspect.signature(cls.__init__).parameters) - {"self"}

    @classmethod
    def from_config(cls, config: dict[str, Any] | str | Path | None = None, **overrides: Any) -> "Tracker":
        """Build from a dict or a YAML file of constructor arguments, then ``overrides``.

        A ``tracker:`` key, if present, must name this class; unknown keys are an error naming the key.
        """
        source = "config"
        if isinstance(config, (str, Path)):
            source = str(config)
            config = load_config(config)
        params = dict(config or {})
        params.update(overrides)
        declared = params.pop("tracker", cls.name)
        if declared != cls.name:
            raise ValueError(f"{source}: written for tracker {declared!r}, not {cls.name!r}")
        allowed = cls.parameter_names()
        unknown = sorted(set(params) - allowed)
        if unknown:
            raise ValueError(f"{source}: unknown parameter(s) {unknown} for {cls.name}; allowed: {sorted(allowed)}")
        return cls(**params)

