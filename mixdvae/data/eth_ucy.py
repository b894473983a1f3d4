"""Real pedestrian walks (the ETH and UCY datasets) turned into box trajectories through varied cameras.

The files (``../shared/data/trajectories/eth_ucy``, see its README) hold ``frame pedestrian_id x y`` rows: ground
positions in metres, annotated every 10th frame of 25 fps videos (2.5 Hz, 0.4 s apart). They have no boxes, so
each walk is

1. split where an annotation is missing (gaps longer than 0.4 s), keeping walks of at least 3 points;
2. resampled to a frame rate drawn in ``fps_range`` by a cubic spline through the annotated positions (the
   motion between two annotations is smooth; the gait sway and the annotation jitter of a box come from the
   camera model);
3. cut into windows of ``length`` frames, each rotated by a random heading about its first point (the scenes
   are filmed from above, so any direction is as likely) and filmed by its own random camera of
   :func:`~mixdvae.data.synthetic_trajectories.camera_view` (focal length, height, horizon, distance, moving
   and bobbing cameras, gait, annotation jitter): the same camera model as the synthetic walker.

Datasets (the unit of the leave-one-dataset-out evaluation): ``eth`` = the ETH files (``biwi_eth``,
``biwi_hotel``), ``ucy`` = the UCY files (``crowds_zara01..03``, ``students001``, ``students003``,
``uni_examples``).
"""

from __future__ import annotations

import math
import os
from dataclasses import dataclass
from pathlib import Path

import numpy as np
from scipy.interpolate import CubicSpline

from ..errors import DataNotFoundError, InputError
from .synthetic_trajectories import WalkerParams, _rng, camera_view
from .trajectories import BoxWindows

ANNOTATION_FPS = 2.5  # one annotation every 10 frames of the 25 fps videos
SOURCE_FPS = 25.0
DATASETS = {
    "eth": ("biwi_eth", "biwi_hotel"),
    "ucy": ("crowds_zara01", "crowds_zara02", "crowds_zara03", "students001", "students003", "uni_examples"),
}
SCENES = tuple(scene for scenes in DATASETS.values() for scene in scenes)


@dataclass
class Walk:
    """One gap-free annotated walk: ``times`` (L,) seconds from the scene start, ``xy`` (L, 2) metres."""

    times: np.ndarray
    xy: np.ndarray
    scene: str
    pedestrian: int

    def __len__(self) -> int:
        return len(self.times)

    @property
    def duration(self) -> float:
        return float(self.times[-1] - self.times[0])


def read_walks(path: str | os.PathLike, min_points: int = 3) -> list[Walk]:
    """Walks of one ETH/UCY file, sorted by pedestrian then time, split at missing annotations.

    Raises :class:`~mixdvae.errors.InputError` naming the file and line for a row that is not four finite
    numbers, and :class:`~mixdvae.errors.DataNotFoundError` for a missing file."""
    path = Path(path)
    if not path.is_file():
        raise DataNotFoundError(f"{path}: ETH/UCY trajectory file not found")
    rows = []
    for number, line in enumerate(path.read_text().splitlines(), 1):
        if not line.strip():
            continue
        fields = line.split()
        try:
            values = [float(v) for v in fields]
        except ValueError:
            values = []
        if len(values) != 4 or not all(math.isfinite(v) for v in values):
            raise InputError(f"{path}:{number}: expected 'frame pedestrian_id x y' (4 finite numbers), got {line!r}")
        rows.append(values)
    if not rows:
        raise InputError(f"{path}: no trajectory rows")
    table = np.array(rows)
    table = table[np.lexsort((table[:, 0], table[:, 1]))]
    step = SOURCE_FPS / ANNOTATION_FPS
    walks = []
    for pedestrian in np.unique(table[:, 1]):
        own = table[table[:, 1] == pedestrian]
        own = own[np.concatenate([[True], np.diff(own[:, 0]) > 0])]  # duplicate frames keep the first
        cuts = np.flatnonzero(np.diff(own[:, 0]) > step * 1.5) + 1
        for part in np.split(own, cuts):
            if len(part) >= min_points:
                walks.append(Walk(part[:, 0] / SOURCE_FPS, part[:, 2:4].copy(), path.stem, int(pedestrian)))
    return walks


def load_walks(root: str | os.PathLike, scenes: list[str] | tuple[str, ...] | None = None) -> dict[str, list[Walk]]:
    """Walks of each scene of ``root`` (default: all of :data:`SCENES` present), by scene name."""
    root = Path(root)
    names = SCENES if scenes is None else tuple(scenes)
    unknown = sorted(set(names) - set(SCENES))
    if unknown:
        raise InputError(f"unknown ETH/UCY scene(s) {unknown}; known: {list(SCENES)}")
    return {name: read_walks(root / f"{name}.txt") for name in names if (root / f"{name}.txt").is_file()}


def scenes_of(datasets: list[str] | tuple[str, ...]) -> list[str]:
    """Scene names of dataset names (``eth``, ``ucy``) or scene names, in order."""
    out = []
    for name in datasets:
        if name in DATASETS:
            out += DATASETS[name]
        elif name in SCENES:
            out.append(name)
        else:
            raise InputError(f"unknown ETH/UCY dataset or scene {name!r}; datasets {list(DATASETS)}, "
                             f"scenes {list(SCENES)}")
    return out


def resample(walk: Walk, fps: float) -> np.ndarray:
    """Positions (L', 2) metres of ``walk`` at ``fps`` frames per second from its first annotation (cubic spline
    with natural ends, no extrapolation past the last annotation)."""
    n_frames = int(math.floor(walk.duration * fps + 1e-9)) + 1
    times = walk.times[0] + np.arange(n_frames) / fps
    return CubicSpline(walk.times, walk.xy, bc_type="natural")(times)


def rotate(xy: np.ndarray, angle: float) -> np.ndarray:
    """``xy`` (L, 2) rotated by ``angle`` radians about its first point, which becomes the origin."""
    c, s = math.cos(angle), math.sin(angle)
    rel = xy - xy[:1]
    return np.stack([c * rel[:, 0] - s * rel[:, 1], s * rel[:, 0] + c * rel[:, 1]], axis=-1)


def walk_windows(
    walks: list[Walk],
    length: int = 60,
    seed=0,
    params: WalkerParams | None = None,
    stride_s: float | None = 2.0,
    min_length: int = 10,
) -> BoxWindows:
    """Box windows of real walks filmed by random cameras (see the module docstring).

    Each walk gets a frame rate drawn in ``params.fps_range``; windows of ``length`` frames start every
    ``stride_s`` seconds (None: consecutive, non-overlapping windows); windows shorter than ``length`` (a short
    walk, the tail of consecutive windows) are padded when they have at least ``min_length`` frames. Each window
    has its own heading and camera. Deterministic given ``seed``."""
    p = params or WalkerParams()
    rng = _rng(seed)
    boxes, masks, fps_out, sources = [], [], [], []
    for walk in walks:
        fps = float(rng.uniform(*p.fps_range))
        xy = resample(walk, fps)
        stride = length if stride_s is None else max(1, int(round(stride_s * fps)))
        last = len(xy) if stride >= length else max(len(xy) - length, 0) + 1  # consecutive windows keep the tail
        for start in range(0, last, stride):
            piece = xy[start : start + length]
            if len(piece) < min_length:
                continue
            view = None
            for _ in range(100):
                view = camera_view(rotate(piece, rng.uniform(0, 2 * math.pi)), 1.0 / fps, rng, p)
                if view is not None:
                    break
            if view is None:
                continue
            pad = length - len(view)
            boxes.append(np.concatenate([view, np.repeat(view[-1:], pad, axis=0)]))
            masks.append(np.arange(length) < len(view))
            fps_out.append(fps)
            sources.append(walk.scene)
    if not boxes:
        return BoxWindows(np.zeros((0, length, 4)), np.zeros((0, length), bool), np.zeros(0))
    return BoxWindows(np.stack(boxes), np.stack(masks), np.array(fps_out), np.array(sources, dtype=object))


def split_walks(walks: list[Walk], fraction: float, seed: int = 0) -> tuple[list[Walk], list[Walk]]:
    """Random split by whole walks, about ``fraction`` of the walks to the second part."""
    if fraction <= 0 or not walks:
        return list(walks), []
    order = np.random.default_rng(seed).permutation(len(walks))
    chosen = set(order[: int(round(fraction * len(walks)))].tolist())
    return [w for i, w in enumerate(walks) if i not in chosen], [w for i, w in enumerate(walks) if i in chosen]

