"""Whole-sequence tracking with the VEM: overlapping windows, births, deaths and identities (DESIGN.md §3).

The sequence is cut into windows of ``W`` frames advancing by ``H`` frames (``H < W``). In each window:

1. **Carried sources.** Every live source starts at the window's first frame from its posterior mean there,
   as estimated by the previous window (which already saw the overlap).
2. **Pass 1** runs the VEM with those sources. Detections the clutter class explains (eta_0 >= 0.5) and that
   score at least ``birth_score`` are candidate births.
3. **Births.** Candidates linked frame to frame (Hungarian on IoU >= ``birth_iou``) into chains of at least
   ``birth_frames`` consecutive frames start a source at the chain's first frame, if that frame lies in the
   window's first ``H`` frames (later chains are born by a later window, with more evidence).
4. **Pass 2** runs the VEM with carried and new sources together, so they compete for the detections.
5. **Output** for the first ``H`` frames, which no later window revisits: a source is reported where it is
   *observed* (assignment mass >= ``observed_mass``) and in gaps of at most ``max_gap_s`` seconds between two
   observations inside the window (an occlusion bridged by the prior).
6. **Deaths.** A source not observed for more than ``max_age_s`` seconds, or whose box centre has left the
   image, dies; its identity is never reused.

Online use therefore lags by up to ``W`` frames. Boxes are ``cx, cy, w, h`` (pixels) inside, ``x, y, w, h``
at the boundary; frames are 1-based in the results.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import ClassVar

import numpy as np
import torch
from tqdm import tqdm

from mixdvae.boxes import cxcywh_to_xywh, iou, iou_matrix, match_iou, xywh_to_cxcywh
from mixdvae.config import Bound, Range, validate_fields
from mixdvae.mot import Sequence
from mixdvae.vem.engine import VEMConfig, VEMInput, run_vem
from mixdvae.vem.priors import TrajectoryPrior

VELOCITY_SECONDS = 0.3  # span of the mean increment that gives a source's velocity at the handover


@dataclass
class WindowConfig:
    """Parameters of windowed tracking. Durations (``*_s``) are in seconds, converted with the frame rate.
    The defaults are the tuned tracker's (README, "How the defaults were chosen").

    Attributes:
        window_s: window length W (seconds; at least ``min_window_frames`` frames).
        hop: advance H between windows, as a fraction of the window (0 < hop < 1).
        min_score: detections below this score are ignored.
        birth_score: minimum score of the detections that can start a source.
        birth_frames: consecutive frames of unexplained detections needed for a birth.
        birth_iou: IoU linking a candidate detection to the next frame's.
        observed_mass: assignment mass above which a source counts as observed in a frame.
        max_gap_s: longest unobserved stretch (seconds) bridged in the output (an occlusion).
        max_age_s: a source unobserved for longer than this (seconds) dies.
        merge_iou: two sources overlapping with this mean IoU over a window's final frames track the same
            target: the weaker one is removed (see :func:`duplicates`).
        min_window_frames: lower bound of W in frames (low frame rates).
        history_s: past of every carried source (seconds of its posterior means from earlier windows) handed
            to the prior with each window; the DVAE prior runs over it before the window, so its predictions
            there rest on the track's motion, not on a few frames (0: every window starts afresh).
    """

    window_s: float = 1.0
    hop: float = 0.5
    min_score: float = 0.1
    birth_score: float = 0.8
    birth_frames: int = 2
    birth_iou: float = 0.3
    observed_mass: float = 0.5
    max_gap_s: float = 0.6
    max_age_s: float = 1.0
    merge_iou: float = 0.6
    min_window_frames: int = 8
    history_s: float = 1.0

    BOUNDS: ClassVar[dict[str, Bound]] = {
        "window_s": Range(0, exclusive_low=True), "hop": Range(0, 0.99, exclusive_low=True),
        "birth_frames": Range(1), "birth_iou": Range(0, 1), "observed_mass": Range(0, 1), "max_gap_s": Range(0),
        "max_age_s": Range(0, exclusive_low=True), "merge_iou": Range(0, 1), "min_window_frames": Range(3),
        "history_s": Range(0, 60),
    }

    def __post_init__(self):
        validate_fields(self, "windowed tracking")

    def frames(self, frame_rate: float) -> tuple[int, int, int, int]:
        """``(W, H, max_gap, max_age)`` in frames for a frame rate."""
        window = max(self.min_window_frames, int(round(self.window_s * frame_rate)), self.birth_frames + 2)
        hop = min(window - self.birth_frames, max(1, int(round(self.hop * window))))
        return window, hop, int(round(self.max_gap_s * frame_rate)), max(1, int(round(self.max_age_s * frame_rate)))


class WindowedTracking:
    """Runs the VEM window by window over a stream of frames; one instance per sequence.

    Feed frames with :meth:`push` (each (M, 5) ``x, y, w, h, score``) and call :meth:`finish` after the last
    one; :meth:`run` does both for a whole :class:`~mixdvae.mot.Sequence`. A window is processed as soon as
    its last frame arrives, so results are final ``W`` frames after the frame they describe.

    Attributes:
        ids: (N,) identities of the live sources.
        init: (N, 4) their boxes ``cx, cy, w, h`` at the next window's first frame.
        velocity: (N, 4) their velocities there (pixels per frame).
        history: (N, P, 4) their posterior means over the P = ``history_s`` x frame rate frames before it, oldest
            first, NaN before a source's birth (P = 0 for a prior that does not read the past).
        last_seen: (N,) 0-based frame of their last observation (birth frame until observed).
        rows: finalised result rows, arrays of ``frame, id, x, y, w, h``.
        finalised: number of leading frames whose results are final.
    """

    def __init__(self, frame_rate: float, image_size: tuple[int, int], prior: TrajectoryPrior, vem: VEMConfig,
                 config: WindowConfig, device: torch.device | str = "cpu"):
        self.prior = prior
        self.vem = vem
        self.cfg = config
        self.device = torch.device(device)
        self.image_size = image_size
        self.window, self.hop, self.max_gap, self.max_age = config.frames(frame_rate)
        self.velocity_frames = max(1, int(round(VELOCITY_SECONDS * frame_rate)))
        self.area = float(image_size[0]) * float(image_size[1])
        self.frames: list[np.ndarray] = []
        self.finalised = 0
        self.ids = np.zeros(0, dtype=int)
        self.init = np.zeros((0, 4))
        self.velocity = np.zeros((0, 4))
        self.last_seen = np.zeros(0, dtype=int)
        self.history_frames = int(round(config.history_s * frame_rate)) if prior.uses_history else 0
        self.history = np.zeros((0, self.history_frames, 4))
        self.next_id = 1
        self.rows: list[np.ndarray] = []

    def run(self, sequence: Sequence, progress: bool = False, label: str = "vem") -> np.ndarray:
        """Track a whole sequence; returns (R, 6) ``frame, id, x, y, w, h`` sorted by frame then id.
        ``progress`` shows a tqdm bar over frames labelled ``label``."""
        frames = range(1, sequence.length + 1)
        for frame in tqdm(frames, desc=f"{label} {sequence.name}", unit="frame", disable=not progress):
            self.push(sequence.frame_detections(frame))
        self.finish()
        return self.results()

    def results(self) -> np.ndarray:
        rows = np.concatenate(self.rows) if self.rows else np.zeros((0, 6))
        return rows[np.lexsort((rows[:, 1], rows[:, 0]))]

    def push(self, detections: np.ndarray) -> None:
        """Add the next frame; process the window that it completes, if any."""
        self.frames.append(detections[detections[:, 4] >= self.cfg.min_score])
        if len(self.frames) - self.finalised >= self.window:
            self.step(self.finalised, self.finalised + self.window, self.hop)

    def finish(self) -> None:
        """End of the stream: finalise every remaining frame."""
        if self.finalised < len(self.frames):
            self.step(self.finalised, len(self.frames), len(self.frames) - self.finalised)

    # -- one window -----------------------------------------------------------------------------------
    def step(self, start: int, stop: int, final: int) -> None:
        """Process frames ``start..stop-1`` (0-based) and finalise the first ``final`` of them."""
        dets = self.frames[start:stop]  # per frame (M_t, 5) x, y, w, h, score
        obs, obs_mask = _pad(dets)
        carried = len(self.ids)
        eta0, mean0 = None, np.zeros((0, stop - start, 4))
        if carried:
            mean0, eta0 = self._vem(obs, obs_mask, self.init, np.zeros(carried, dtype=int), stop - start)
        births = find_births(dets, eta0, mean0, final, self.cfg)
        born_at = np.array([b[0] for b in births], dtype=int)
        if births:
            self.ids = np.concatenate([self.ids, self.next_id + np.arange(len(births))])
            self.init = np.concatenate([self.init, np.array([b[1] for b in births])])
            self.velocity = np.concatenate([self.velocity, np.zeros((len(births), 4))])
            self.history = np.concatenate([self.history, np.full((len(births), self.history_frames, 4), np.nan)])
            self.last_seen = np.concatenate([self.last_seen, start + born_at])
            self.next_id += len(births)
        if len(self.ids):
            starts = np.concatenate([np.zeros(carried, dtype=int), born_at])
            mean, eta = self._vem(obs, obs_mask, self.init, starts, stop - start)
            self._finalise(start, final, starts, mean, eta)
        self.finalised = start + final
        for frame in range(start, start + final):
            self.frames[frame] = None  # finalised frames are never read again

    def _vem(self, obs, obs_mask, init, starts, length):
        """One VEM call on this window; returns posterior means (N, T, 4) and eta (T, K, N + 1) as numpy."""
        frames = np.arange(length)
        source_mask = frames[None, :] >= starts[:, None]  # (N, T)
        inp = VEMInput(
            torch.from_numpy(obs[None]),
            torch.from_numpy(obs_mask[None]),
            torch.from_numpy(init[None]),
            torch.from_numpy(source_mask[None]),
            torch.tensor([self.area]),
            torch.from_numpy(self.velocity[None]),
            torch.from_numpy(self.history[None]) if self.history_frames else None,
        )
        result = run_vem(inp, self.prior, self.vem, device=self.device)
        return result.mean[0].cpu().double().numpy(), result.eta[0].cpu().double().numpy()

    def _finalise(self, start, final, starts, mean, eta) -> None:
        """Report the first ``final`` frames, carry survivors to the next window, bury the rest."""
        length = mean.shape[1]
        frames = np.arange(length)
        mass = eta[:, :, 1:].sum(axis=1).T  # (N, T) assignment mass per source and frame
        observed = (mass >= self.cfg.observed_mass) & (frames[None, :] >= starts[:, None])
        duplicate = duplicates(mean[:, :final], frames[None, :final] >= starts[:, None], self.cfg.merge_iou)
        observed[duplicate] = False
        report = bridged(observed, self.last_seen - start, self.max_gap)
        report = (report & (frames[None, :] >= starts[:, None]))[:, :final]
        n_idx, t_idx = np.nonzero(report)
        if len(n_idx):
            boxes = cxcywh_to_xywh(mean[n_idx, t_idx])
            self.rows.append(np.column_stack([t_idx + start + 1, self.ids[n_idx], boxes]))
        seen_final = np.where(observed[:, :final], frames[None, :final], -1).max(axis=1)  # (N,)
        self.last_seen = np.where(seen_final >= 0, start + seen_final, self.last_seen)
        handover = min(final, length - 1)
        self.init = mean[:, handover]
        self.velocity = handover_velocity(mean, starts, handover, self.velocity_frames)
        if self.history_frames:
            lived = (frames[None, :handover] >= starts[:, None])[..., None]  # (N, handover, 1)
            recent = np.where(lived, mean[:, :handover], np.nan)
            self.history = np.concatenate([self.history, recent], axis=1)[:, -self.history_frames:]
        width, height = self.image_size
        cx, cy = self.init[:, 0], self.init[:, 1]
        inside = (cx >= 0) & (cx <= width) & (cy >= 0) & (cy <= height)
        recent = start + final - self.last_seen <= self.max_age
        alive = inside & recent & ~duplicate & np.isfinite(self.init).all(axis=1)
        self.ids, self.init, self.last_seen = self.ids[alive], self.init[alive], self.last_seen[alive]
        self.velocity = self.velocity[alive]
        self.history = self.history[alive]


def handover_velocity(mean: np.ndarray, starts: np.ndarray, handover: int, frames: int) -> np.ndarray:
    """(N, 4) velocities (pixels per frame) at window frame ``handover``: the mean increment of the posterior
    means over the last ``frames`` frames (fewer for sources born since; zero for sources born there). A
    one-frame difference is too noisy at crossings, and a wrong velocity handed over cannot be undone by the
    next window, whose sources start from it."""
    span = np.clip(handover - starts, 0, frames)  # (N,)
    past = mean[np.arange(len(mean)), handover - span]  # (N, 4)
    return (mean[:, handover] - past) / np.maximum(span, 1)[:, None]


def duplicates(mean: np.ndarray, alive: np.ndarray, merge_iou: float) -> np.ndarray:
    """(N,) bool: sources that duplicate an older one over these frames and must go.

    Two sources whose boxes overlap with a mean IoU of at least ``merge_iou`` over the frames where both are
    alive follow the same target (a birth on a late or partial detection, or two sources that converged on one
    person); the younger one goes, so the target keeps its established identity.

    Args:
        mean: (N, T, 4) posterior boxes ``cx, cy, w, h``, sources ordered from oldest to youngest.
        alive: (N, T) bool.
    """
    boxes = cxcywh_to_xywh(mean)
    both = alive[:, None, :] & alive[None, :, :]  # (N, N, T)
    overlap = (iou(boxes[:, None], boxes[None, :]) * both).sum(-1) / np.maximum(both.sum(-1), 1)
    return np.triu(overlap >= merge_iou, k=1).any(axis=0)  # column j: overlaps an older source i < j


def bridged(observed: np.ndarray, last_seen: np.ndarray, max_gap: int) -> np.ndarray:
    """Frames to report: observed frames plus gaps of at most ``max_gap`` frames between two observations.

    Args:
        observed: (N, T) bool.
        last_seen: (N,) window-local index of each source's last observation; only negative ones (before
            the window) count as an anchor.
        max_gap: longest gap bridged, in frames.
    """
    n, t = observed.shape
    index = np.broadcast_to(np.arange(t), (n, t))
    big = 10**9
    prev = np.maximum.accumulate(np.where(observed, index, -big), axis=1)
    last_seen = np.asarray(last_seen)
    prev = np.maximum(prev, np.where(last_seen < 0, last_seen, -big)[:, None])
    nxt = np.minimum.accumulate(np.where(observed, index, big)[:, ::-1], axis=1)[:, ::-1]
    return observed | (nxt - prev <= max_gap + 1)


def find_births(dets, eta0, mean0, final, cfg: WindowConfig) -> list[tuple[int, np.ndarray]]:
    """Chains of unexplained strong detections; returns ``(start frame in window, cx cy w h)`` per birth.

    ``eta0`` is pass 1's (T, K, N + 1) assignment (None without sources: every detection is unexplained) and
    ``mean0`` its (N, T, 4) source means: a detection overlapping a source (IoU >= ``birth_iou``) is never a
    birth, so a source that lags behind its target does not spawn a duplicate.
    """
    candidates = []
    for t, d in enumerate(dets):
        keep = d[:, 4] >= cfg.birth_score
        if eta0 is not None:
            keep &= eta0[t, : len(d), 0] >= 0.5
            keep &= iou_matrix(d[:, :4], cxcywh_to_xywh(mean0[:, t])).max(axis=1, initial=0) < cfg.birth_iou
        candidates.append(d[keep, :4])
    births = []
    chains: list[list[tuple[int, np.ndarray]]] = []  # open chains: list of (frame, box xywh)
    finished = []
    for t, boxes in enumerate(candidates):
        tails = np.array([chain[-1][1] for chain in chains]).reshape(-1, 4)
        linked_chains, linked_boxes = set(), set()
        for i, j in match_iou(tails, boxes, cfg.birth_iou):
            chains[i].append((t, boxes[j]))
            linked_chains.add(i)
            linked_boxes.add(j)
        finished += [c for i, c in enumerate(chains) if i not in linked_chains]
        chains = [c for i, c in enumerate(chains) if i in linked_chains]
        chains += [[(t, boxes[j])] for j in range(len(boxes)) if j not in linked_boxes]
    for chain in finished + chains:
        if len(chain) >= cfg.birth_frames and chain[0][0] < final:
            births.append((chain[0][0], xywh_to_cxcywh(chain[0][1])))
    return births


def _pad(dets: list[np.ndarray]) -> tuple[np.ndarray, np.ndarray]:
    """Per-frame (M_t, 5) detections to (T, K, 4) ``cx, cy, w, h`` and a (T, K) mask; K >= 1."""
    k = max([len(d) for d in dets] + [1])
    obs = np.ones((len(dets), k, 4))
    mask = np.zeros((len(dets), k), dtype=bool)
    for t, d in enumerate(dets):
        obs[t, : len(d)] = xywh_to_cxcywh(d[:, :4])
        mask[t, : len(d)] = True
    return obs, mask
