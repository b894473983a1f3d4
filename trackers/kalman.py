"""Online Kalman + Hungarian tracker of the SORT family.

Each track is a constant-velocity Kalman filter (filterpy). Every frame: predict all tracks, match detections
to predictions by the Hungarian algorithm on IoU (matches below ``iou_threshold`` rejected), update the matched
filters, start tracks from unmatched detections, delete tracks unmatched for more than ``max_age_frames`` frames, and
report tracks matched in this frame once they have ``min_hits`` consecutive matches.

With ``second_round=True`` detections are split by score (the ByteTrack idea): tracks are first matched to
detections scoring at least ``high_score``; tracks left over are then matched to the weaker detections
(``low_score <= score < high_score``) with ``second_iou_threshold``; only strong detections start tracks.

Two motion models:

* ``"sort"``: SORT's state ``cx, cy, s, r`` (centre, area, aspect ratio w/h) plus the velocities of the first
  three, with SORT's fixed noise matrices. ``configs/sort.yaml`` uses it to reproduce SORT.
* ``"xywh"``: state ``cx, cy, w, h`` plus their velocities, with process and measurement noise proportional to
  the box height, so the same settings hold for near (large) and far (small) people.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

import numpy as np

from mixdvae.boxes import cxcywh_to_xywh, match_iou, xywh_to_cxcywh
from mixdvae.config import Range
from mixdvae.trackers import register
from mixdvae.trackers.base import Tracker, check_detections

if TYPE_CHECKING:
    from filterpy.kalman import KalmanFilter

MOTION_MODELS = ("sort", "xywh")


def _constant_velocity(dim_pos: int, dim_vel: int) -> KalmanFilter:
    """A filterpy filter whose first ``dim_vel`` position coordinates move with constant velocity."""
    from filterpy.kalman import KalmanFilter  # here: filterpy loads scipy.stats, seconds only this tracker needs

    kf = KalmanFilter(dim_x=dim_pos + dim_vel, dim_z=dim_pos)
    kf.F = np.eye(dim_pos + dim_vel)
    kf.F[np.arange(dim_vel), dim_pos + np.arange(dim_vel)] = 1.0
    kf.H = np.eye(dim_pos, dim_pos + dim_vel)
    return kf


class SortMotion:
    """SORT's model: state ``cx, cy, s, r, vcx, vcy, vs`` (pixels, pixels^2, w/h; per frame)."""

    @staticmethod
    def measure(box_xywh: np.ndarray) -> np.ndarray:
        cx, cy, w, h = xywh_to_cxcywh(box_xywh)
        return np.array([cx, cy, w * h, w / h])

    @staticmethod
    def box(state: np.ndarray) -> np.ndarray:
        cx, cy, s, r = state[:4]
        w = np.sqrt(max(s * r, 0.0))
        h = s / w if w > 0 else 0.0
        return cxcywh_to_xywh(np.array([cx, cy, w, h]))

    def create(self, box_xywh: np.ndarray) -> KalmanFilter:
        kf = _constant_velocity(4, 3)
        kf.R[2:, 2:] *= 10.0
        kf.P[4:, 4:] *= 1000.0  # unknown initial velocity
        kf.P *= 10.0
        kf.Q[-1, -1] *= 0.01
        kf.Q[4:, 4:] *= 0.01
        kf.x[:4, 0] = self.measure(box_xywh)
        return kf

    def predict(self, kf: KalmanFilter) -> None:
        if kf.x[6, 0] + kf.x[2, 0] <= 0:  # the area must not become negative
            kf.x[6, 0] = 0.0
        kf.predict()

    def update(self, kf: KalmanFilter, box_xywh: np.ndarray) -> None:
        kf.update(self.measure(box_xywh))


class SizeAdaptiveMotion:
    """State ``cx, cy, w, h, vcx, vcy, vw, vh`` (pixels, per frame); noise standard deviations are fractions
    of the box height: ``position_noise`` (measurement), ``velocity_noise`` (process, per frame)."""

    def __init__(self, position_noise: float, velocity_noise: float):
        self.position_noise = position_noise
        self.velocity_noise = velocity_noise

    @staticmethod
    def measure(box_xywh: np.ndarray) -> np.ndarray:
        return xywh_to_cxcywh(box_xywh)

    @staticmethod
    def box(state: np.ndarray) -> np.ndarray:
        cxcywh = state[:4].copy()
        cxcywh[2:] = np.maximum(cxcywh[2:], 1e-3)
        return cxcywh_to_xywh(cxcywh)

    def _set_noise(self, kf: KalmanFilter, height: float) -> None:
        pos = (self.position_noise * height) ** 2
        vel = (self.velocity_noise * height) ** 2
        kf.R = np.diag([pos, pos, pos, pos])
        kf.Q = np.diag([vel / 4, vel / 4, vel / 4, vel / 4, vel, vel, vel, vel])

    def create(self, box_xywh: np.ndarray) -> KalmanFilter:
        kf = _constant_velocity(4, 4)
        z = self.measure(box_xywh)
        kf.x[:4, 0] = z
        pos, vel = (2 * self.position_noise * z[3]) ** 2, (10 * self.velocity_noise * z[3]) ** 2
        kf.P = np.diag([pos, pos, pos, pos, vel, vel, vel, vel])
        self._set_noise(kf, z[3])
        return kf

    def predict(self, kf: KalmanFilter) -> None:
        self._set_noise(kf, max(kf.x[3, 0], 1.0))
        kf.predict()

    def update(self, kf: KalmanFilter, box_xywh: np.ndarray) -> None:
        kf.update(self.measure(box_xywh))


class Track:
    """One target: its filter, identity and counters (``hits`` in a row, frames since the last match)."""

    def __init__(self, kf: KalmanFilter, track_id: int):
        self.kf = kf
        self.id = track_id
        self.hit_streak = 0
        self.time_since_update = 0


def associate(tracks_xywh: np.ndarray, dets_xywh: np.ndarray, iou_threshold: float):
    """Hungarian matching on IoU.

    Returns ``(matches, unmatched_tracks, unmatched_dets)``: an (P, 2) int array of (track, detection) index
    pairs with IoU >= ``iou_threshold`` and the index arrays left over.
    """
    matches = match_iou(tracks_xywh, dets_xywh, iou_threshold)
    unmatched_tracks = np.setdiff1d(np.arange(len(tracks_xywh)), matches[:, 0])
    unmatched_dets = np.setdiff1d(np.arange(len(dets_xywh)), matches[:, 1])
    return matches, unmatched_tracks, unmatched_dets


@register
class KalmanTracker(Tracker):
    """Constant-velocity Kalman filters with Hungarian IoU assignment (SORT, optionally ByteTrack's two rounds).

    The defaults were tuned on the four MOT15 sequences and the synthetic benchmark together (a grid over
    max_age_frames, min_hits, high_score, iou_threshold and motion_model; see the README's benchmark section).

    Args:
        max_age_frames: frames a track survives without a match before deletion.
        min_hits: consecutive matches, after the detection that started the track, before it is reported
            (all tracks are reported during the first ``min_hits`` frames of a sequence, as in SORT).
        iou_threshold: minimum IoU between a prediction and a detection for a match.
        second_round: match leftover tracks to low-score detections in a second round.
        high_score: detections scoring at least this are "strong": matched first and allowed to start tracks.
            Without ``second_round``, weaker detections are dropped.
        low_score: detections below this are ignored altogether.
        second_iou_threshold: IoU threshold of the second round.
        motion_model: ``"sort"`` or ``"xywh"`` (see the module docstring).
        position_noise, velocity_noise: noise of the ``"xywh"`` model, as fractions of the box height.
        num_sources: when set, the N-known setting of the 3T protocol: tracks start only from the first
            frame's strongest detections (at most N), are never deleted and are reported every frame.

    Attributes:
        tracks: the live :class:`Track` objects.
        frame: frames processed since :meth:`reset`.
    """

    name = "kalman"
    BOUNDS = {
        "max_age_frames": Range(0), "min_hits": Range(0), "iou_threshold": Range(0, 1), "high_score": Range(),
        "low_score": Range(), "second_iou_threshold": Range(0, 1), "motion_model": MOTION_MODELS,
        "position_noise": Range(0, exclusive_low=True), "velocity_noise": Range(0, exclusive_low=True),
        "num_sources": Range(1),
    }

    def __init__(
        self,
        max_age_frames: int = 30,
        min_hits: int = 1,
        iou_threshold: float = 0.3,
        second_round: bool = True,
        high_score: float = 0.8,
        low_score: float = 0.1,
        second_iou_threshold: float = 0.5,
        motion_model: str = "sort",
        position_noise: float = 0.05,
        velocity_noise: float = 0.00625,
        num_sources: int | None = None,
    ):
        args = self.check_arguments({k: v for k, v in locals().items() if k not in ("self", "__class__")})
        self.__dict__.update(args)
        self.motion = SortMotion() if motion_model == "sort" else SizeAdaptiveMotion(position_noise, velocity_noise)
        self.reset()

    def reset(self, frame_rate: float = 30.0, image_size: tuple[int, int] = (1920, 1080)) -> None:
        super().reset(frame_rate, image_size)
        self.tracks: list[Track] = []
        self._next_id = 1

    def _predicted_boxes(self) -> np.ndarray:
        for track in self.tracks:
            self.motion.predict(track.kf)
            if track.time_since_update > 0:
                track.hit_streak = 0
            track.time_since_update += 1
        self.tracks = [t for t in self.tracks if np.isfinite(t.kf.x).all()]
        return np.array([self.motion.box(t.kf.x[:, 0]) for t in self.tracks]).reshape(-1, 4)

    def _apply(self, matches: np.ndarray, track_idx: np.ndarray, dets: np.ndarray) -> None:
        for ti, di in matches:
            track = self.tracks[track_idx[ti]]
            self.motion.update(track.kf, dets[di, :4])
            track.time_since_update = 0
            track.hit_streak += 1

    def _start_tracks(self, dets: np.ndarray) -> None:
        if self.num_sources is not None:
            if self.frame > 1:
                return
            dets = dets[np.argsort(-dets[:, 4], kind="stable")[: self.num_sources]]
        for det in dets:
            self.tracks.append(Track(self.motion.create(det[:4]), self._next_id))
            self._next_id += 1

    def update(self, detections: np.ndarray) -> np.ndarray:
        detections = check_detections(detections, self.frame + 1)
        self.frame += 1
        predicted = self._predicted_boxes()  # (N, 4)
        strong = detections[detections[:, 4] >= self.high_score]
        matches, left_tracks, left_dets = associate(predicted, strong[:, :4], self.iou_threshold)
        all_tracks = np.arange(len(self.tracks))
        self._apply(matches, all_tracks, strong)
        if self.second_round:
            weak_mask = (detections[:, 4] >= self.low_score) & (detections[:, 4] < self.high_score)
            weak = detections[weak_mask]
            matches2, _, _ = associate(predicted[left_tracks], weak[:, :4], self.second_iou_threshold)
            self._apply(matches2, left_tracks, weak)
        self._start_tracks(strong[left_dets])
        return self._report()

    def _report(self) -> np.ndarray:
        if self.num_sources is None:
            self.tracks = [t for t in self.tracks if t.time_since_update <= self.max_age_frames]
            startup = self.frame <= self.min_hits
            shown = [t for t in self.tracks if t.time_since_update < 1 and (t.hit_streak >= self.min_hits or startup)]
        else:
            shown = self.tracks
        rows = [np.append(self.motion.box(t.kf.x[:, 0]), t.id) for t in shown]
        return np.array(rows).reshape(-1, 5)
