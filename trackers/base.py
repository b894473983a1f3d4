"""The interface every tracker implements.

Boxes are ``x, y, w, h`` in pixels (top-left corner, width, height) at this interface; a tracker converts
them once to whatever its motion model uses.
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from pathlib import Path
from typing import Any

import numpy as np
from tqdm import tqdm

from mixdvae.config import check_params, load_yaml_mapping, parameter_specs
from mixdvae.errors import ConfigError, InputError
from mixdvae.mot import Sequence
from mixdvae.resources import config_file


def load_config(path_or_name: str | Path) -> dict[str, Any]:
    """A tracker configuration: a YAML file, or the name of a shipped one (``"sort"`` is ``configs/sort.yaml``).
    Malformed YAML or another top-level type than a mapping is a ConfigError naming the file."""
    path = Path(path_or_name)
    if not path.is_file() and path.suffix in ("", ".yaml") and path.parent == Path("."):
        path = config_file(path.name)
    return load_yaml_mapping(path)


def check_detections(detections: np.ndarray, frame: int) -> np.ndarray:
    """The (M, 5) float array ``x, y, w, h, score`` of one frame, or an InputError saying what is wrong."""
    array = np.asarray(detections, dtype=float)
    if array.size == 0:
        return np.zeros((0, 5))
    if array.ndim != 2 or array.shape[1] != 5:
        raise InputError(f"frame {frame}: detections must be an (M, 5) array x, y, w, h, score; got shape "
                         f"{array.shape}")
    if not np.isfinite(array).all():
        raise InputError(f"frame {frame}: detections contain NaN or infinite values")
    if (array[:, 2:4] <= 0).any():
        bad = int(np.flatnonzero((array[:, 2:4] <= 0).any(axis=1))[0])
        raise InputError(f"frame {frame}: detection {bad} has a non-positive width or height "
                         f"(w={array[bad, 2]:g}, h={array[bad, 3]:g})")
    return array


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
        return set(parameter_specs(cls))

    @classmethod
    def check_arguments(cls, values: dict[str, Any]) -> dict[str, Any]:
        """The constructor's arguments validated against their annotations and ``cls.BOUNDS``."""
        return check_params(values, parameter_specs(cls), getattr(cls, "BOUNDS", None), cls.name)

    def get_params(self) -> dict[str, Any]:
        """Every constructor argument's value in this tracker (defaults included)."""
        return {name: getattr(self, name) for name in sorted(self.parameter_names())}

    @classmethod
    def from_config(cls, config: dict[str, Any] | str | Path | None = None, **overrides: Any) -> Tracker:
        """Build from a dict, a YAML file or a shipped config's name, then ``overrides``. The file only overrides
        the class defaults. A ``tracker:`` key, if present, must name this class; unknown keys and bad values are
        a :class:`~mixdvae.errors.ConfigError` naming the file and the key.
        """
        source = "config"
        if isinstance(config, (str, Path)):
            source = str(config)
            config = load_config(config)
        params = dict(config or {})
        params.update(overrides)
        declared = params.pop("tracker", cls.name)
        if declared != cls.name:
            raise ConfigError(f"{source}: written for tracker {declared!r}, not {cls.name!r}")
        unknown = sorted(set(params) - cls.parameter_names())
        if unknown:
            raise ConfigError(f"{source}: unknown parameter(s) {unknown} for {cls.name}; "
                              f"allowed: {sorted(cls.parameter_names())}")
        try:
            return cls(**params)
        except ConfigError as err:
            raise ConfigError(f"{source}: {err}") from None
