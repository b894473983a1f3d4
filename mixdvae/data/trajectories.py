"""Single-target box trajectories cut into windows, from MOTChallenge ground truth or generated.

Coordinate normalisation (the choice for the motion prior, see :mod:`mixdvae.data.normalization`):

* Boxes are ``cx, cy, w, h`` in pixels while they are collected (:class:`BoxWindows`).
* The model sees each window relative to **its own first box**: centre offsets from that box's centre, and all
  four coordinates divided by that box's height. The image size plays no part: a prior trained on 640x480
  works unchanged at 1920x1080 and anywhere in the frame (translation and scale invariance), which the
  VEM needs since it runs the prior on windows of arbitrary sources. (The models go further and work on
  increments divided by the current box height; see :mod:`mixdvae.dvae.base`.)
* Frame rate is not normalised: real sequences run at 10-30 fps, and the training data mixes rates so that the
  prior works across them (sequences at >= 20 fps are also used temporally subsampled by 2).

Windows shorter than the window length (short tracks, the tail of a track) are padded by repeating the last box
and flagged in ``mask``. Tracks are split where frames are missing, so every window is frame-contiguous.
"""

from __future__ import annotations

import os
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from ..boxes import xywh_to_cxcywh
from ..mot import PERSON_CLASSES, list_sequences, pedestrian_rows, read_mot_file, read_seqinfo
from . import normalization

# MOT16/17/20 ground-truth classes that move like pedestrians: pedestrian, person on vehicle, static person.


@dataclass
class Track:
    """One frame-contiguous ground-truth trajectory: ``boxes`` (L, 4) ``cx, cy, w, h`` pixels."""

    boxes: np.ndarray
    first_frame: int
    track_id: int
    sequence: str
    fps: float

    def __len__(self) -> int:
        return len(self.boxes)


@dataclass
class BoxWindows:
    """Windows of box trajectories: ``boxes`` (N, T, 4) ``cx, cy, w, h`` pixels, ``mask`` (N, T) valid steps
    (a prefix of each row), ``fps`` (N,), ``source`` (N,) sequence names or generator names."""

    boxes: np.ndarray
    mask: np.ndarray
    fps: np.ndarray
    source: np.ndarray = field(default_factory=lambda: np.array([], dtype=object))

    def __post_init__(self):
        self.boxes = np.asarray(self.boxes, dtype=np.float64).reshape(-1, self.boxes.shape[-2], 4)
        self.mask = np.asarray(self.mask, dtype=bool).reshape(self.boxes.shape[:2])
        self.fps = np.asarray(self.fps, dtype=np.float64).reshape(-1)
        if len(self.source) != len(self.boxes):
            self.source = np.array([""] * len(self.boxes), dtype=object)
        else:
            self.source = np.asarray(self.source, dtype=object)

    def __len__(self) -> int:
        return len(self.boxes)

    @property
    def length(self) -> int:
        return self.boxes.shape[1]

    @property
    def lengths(self) -> np.ndarray:
        return self.mask.sum(1)

    def reference(self) -> np.ndarray:
        """Reference ``(cx, cy, h)`` of each window (its first box), shape (N, 1, 3)."""
        return normalization.reference(self.boxes[:, :1])

    def to_model(self) -> np.ndarray:
        """Model coordinates (N, T, 4), float32: relative to each window's first box, in its heights."""
        return normalization.to_model(self.boxes, self.reference()).astype(np.float32)

    def flipped(self) -> BoxWindows:
        """Mirror image (left-right) about each window's first centre: a motion prior must be symmetric."""
        boxes = self.boxes.copy()
        boxes[..., 0] = 2 * boxes[:, :1, 0] - boxes[..., 0]
        return BoxWindows(boxes, self.mask.copy(), self.fps.copy(), self.source.copy())

    def subset(self, index) -> BoxWindows:
        return BoxWindows(self.boxes[index], self.mask[index], self.fps[index], self.source[index])

    @staticmethod
    def concat(parts: list[BoxWindows]) -> BoxWindows:
        parts = [p for p in parts if len(p)]
        if not parts:
            return BoxWindows(np.zeros((0, 1, 4)), np.zeros((0, 1), bool), np.zeros(0))
        length = max(p.length for p in parts)
        return BoxWindows(
            np.concatenate([_pad_to(p.boxes, length) for p in parts]),
            np.concatenate([np.pad(p.mask, ((0, 0), (0, length - p.length))) for p in parts]),
            np.concatenate([p.fps for p in parts]),
            np.concatenate([p.source for p in parts]),
        )


def _pad_to(boxes: np.ndarray, length: int) -> np.ndarray:
    if boxes.shape[1] == length:
        return boxes
    return np.concatenate([boxes, np.repeat(boxes[:, -1:], length - boxes.shape[1], axis=1)], axis=1)


# --------------------------------------------------------------------------------------------------------------
# tracks from ground truth


def tracks_from_gt(
    gt: np.ndarray,
    sequence: str = "",
    fps: float = 25.0,
    min_length: int = 2,
    classes: tuple[int, ...] | None = PERSON_CLASSES,
) -> list[Track]:
    """Split MOTChallenge ground-truth rows (R, >=8) into frame-contiguous tracks, sorted by id then frame.

    Rows that are not pedestrians of ``classes`` are dropped (:func:`mixdvae.mot.pedestrian_rows`; None keeps
    all; MOT15 files, without classes, keep every row). Duplicate (id, frame) rows
    keep the first. Tracks shorter than ``min_length`` are dropped.
    """
    gt = np.asarray(gt, dtype=float)
    if gt.size == 0:
        return []
    if gt.shape[1] < 8:
        gt = np.pad(gt, ((0, 0), (0, 8 - gt.shape[1])), constant_values=-1.0)
    gt = pedestrian_rows(gt, classes, scored_only=False)
    tracks = []
    for track_id in np.unique(gt[:, 1]).astype(int):
        rows = gt[gt[:, 1] == track_id]
        rows = rows[np.argsort(rows[:, 0], kind="stable")]
        frames = rows[:, 0].astype(int)
        keep = np.concatenate([[True], np.diff(frames) > 0])
        rows, frames = rows[keep], frames[keep]
        boxes = xywh_to_cxcywh(rows[:, 2:6])
        cuts = np.flatnonzero(np.diff(frames) != 1) + 1
        for part_frames, part_boxes in zip(np.split(frames, cuts), np.split(boxes, cuts)):
            if len(part_frames) >= min_length:
                tracks.append(Track(part_boxes, int(part_frames[0]), int(track_id), sequence, float(fps)))
    return tracks


def load_sequence_tracks(folder: str | os.PathLike, **kwargs) -> list[Track]:
    """Tracks of one MOTChallenge sequence folder (``seqinfo.ini`` + ``gt/gt.txt``; detections not needed)."""
    folder = Path(folder)
    info = read_seqinfo(folder / "seqinfo.ini")
    gt_path = folder / "gt" / "gt.txt"
    if not gt_path.is_file():
        raise FileNotFoundError(f"{gt_path} not found: the sequence has no ground truth")
    gt = read_mot_file(gt_path, "gt", info.seq_length)
    return tracks_from_gt(gt, sequence=folder.name, fps=info.frame_rate, **kwargs)


def gt_sequences(data_root: str | os.PathLike) -> list[str]:
    """Names of the sequences in ``data_root`` that have ground truth."""
    return [name for name in list_sequences(data_root) if (Path(data_root) / name / "gt" / "gt.txt").is_file()]


def load_mot_tracks(
    data_root: str | os.PathLike,
    include: list[str] | None = None,
    exclude: list[str] | tuple[str, ...] = (),
    **kwargs,
) -> dict[str, list[Track]]:
    """Tracks of every sequence with ground truth in ``data_root`` (e.g. ``../shared/data/MOT15/train``),
    by sequence name; ``include``/``exclude`` filter by name. A missing folder gives an empty dict."""
    out = {}
    for name in gt_sequences(data_root):
        if (include is None or name in include) and name not in exclude:
            out[name] = load_sequence_tracks(Path(data_root) / name, **kwargs)
    return out


def subsample(track: Track, stride: int, offset: int = 0) -> Track:
    """Every ``stride``-th box of a track from ``offset``: the same motion at ``fps / stride``."""
    return Track(track.boxes[offset::stride], track.first_frame + offset, track.track_id, track.sequence,
                 track.fps / stride)


def split_tracks(tracks: list[Track], fraction: float, seed: int = 0) -> tuple[list[Track], list[Track]]:
    """Random split by whole tracks (no window of a validation track is seen in training), about ``fraction``
    of the boxes to the second part."""
    if fraction <= 0 or not tracks:
        return list(tracks), []
    rng = np.random.default_rng(seed)
    order = rng.permutation(len(tracks))
    total = sum(len(t) for t in tracks)
    second, count = [], 0
    for i in order:
        if count >= fraction * total:
            break
        second.append(i)
        count += len(tracks[i])
    chosen = set(second)
    return [t for i, t in enumerate(tracks) if i not in chosen], [tracks[i] for i in sorted(chosen)]


# --------------------------------------------------------------------------------------------------------------
# windows


def windows_from_tracks(
    tracks: list[Track],
    length: int,
    stride: int | None = None,
    min_length: int = 3,
) -> BoxWindows:
    """Cut tracks into windows of ``length`` boxes starting every ``stride`` boxes (default: ``length``, i.e.
    consecutive non-overlapping chunks). With overlapping windows (stride < length) a last window ending with
    the track is added when the track is longer than ``length``. Windows with fewer than ``min_length`` boxes
    are dropped; shorter ones are padded (see :class:`BoxWindows`)."""
    stride = length if stride is None else stride
    if stride < 1 or length < 1:
        raise ValueError("length and stride must be positive")
    boxes, masks, fps, source = [], [], [], []
    for track in tracks:
        n = len(track)
        starts = list(range(0, n, stride)) if stride >= length else list(range(0, max(n - length, 0) + 1, stride))
        if stride < length and n > length and starts[-1] != n - length:
            starts.append(n - length)
        for start in starts:
            piece = track.boxes[start : start + length]
            if len(piece) < min_length:
                continue
            pad = length - len(piece)
            boxes.append(np.concatenate([piece, np.repeat(piece[-1:], pad, axis=0)]))
            masks.append(np.arange(length) < len(piece))
            fps.append(track.fps)
            source.append(track.sequence)
    if not boxes:
        return BoxWindows(np.zeros((0, length, 4)), np.zeros((0, length), bool), np.zeros(0))
    return BoxWindows(np.stack(boxes), np.stack(masks), np.array(fps), np.array(source, dtype=object))


def real_windows(
    tracks: list[Track],
    length: int,
    stride: int,
    min_length: int = 3,
    flip: bool = True,
    subsample_min_fps: float | None = 20.0,
) -> BoxWindows:
    """Training windows from real tracks, with the two label-free augmentations: left-right mirror, and (for
    sequences at ``>= subsample_min_fps``) every other frame, both phases."""
    tracks = list(tracks)
    if subsample_min_fps is not None:
        tracks += [subsample(t, 2, o) for t in list(tracks) if t.fps >= subsample_min_fps for o in (0, 1)]
    windows = windows_from_tracks(tracks, length, stride, min_length)
    return BoxWindows.concat([windows, windows.flipped()]) if flip else windows
