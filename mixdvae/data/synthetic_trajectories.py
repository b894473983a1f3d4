"""Synthetic single-target box trajectories for training motion priors (no labels needed).

Two generators, both deterministic given a seed, both returning :class:`~mixdvae.data.trajectories.BoxWindows`
(``cx, cy, w, h`` pixels, every step valid):

* :func:`piecewise_trajectories`, the MixDVAE paper's recipe: for each axis independently, 1-3 pieces in time,
  each static, linear (constant velocity), parabolic (constant acceleration) or sinusoidal, joined
  continuously in position; box width log-normal and height about ``height_ratio`` (5) times the width.
  Motion amplitudes are drawn in box heights per second and converted with a frame rate drawn in
  ``fps_range``, so the trajectories are scale-free. Beyond the paper's recipe, the box size follows its own
  piecewise curve in log scale (targets approach and recede) and per-box annotation jitter is added (real
  ground truth jitters by several percent of the box size).
* :func:`walker_trajectories`, pedestrians walking on a ground plane seen by a pinhole camera: walking speed
  around 1.3 m/s, smooth heading changes, turns and stops, perspective (boxes grow when walking towards the
  camera), optionally a moving/panning camera and a bobbing camera, gait oscillation of the box width and
  annotation jitter. It is the motion model of the synthetic benchmark written as a stand-alone generator;
  :func:`benchmark_trajectories` cuts the ground truth of the benchmark itself (``mixdvae.synthetic``) when
  that module is available. Its camera, :func:`camera_view`, also films the real ETH/UCY walks
  (:mod:`mixdvae.data.eth_ucy`).
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np

from .trajectories import BoxWindows, tracks_from_gt, windows_from_tracks

PIECE_KINDS = ("static", "linear", "parabolic", "sinusoidal")


def _rng(seed_or_rng) -> np.random.Generator:
    return seed_or_rng if isinstance(seed_or_rng, np.random.Generator) else np.random.default_rng(seed_or_rng)


# --------------------------------------------------------------------------------------------------------------
# piecewise (MixDVAE paper)


@dataclass
class PiecewiseInfo:
    """What was drawn, for inspection and tests: per trajectory and axis, the piece kinds; and the base sizes."""

    kinds: list[tuple[list[str], list[str]]]
    width: np.ndarray
    height: np.ndarray


def piecewise_axis(
    t: np.ndarray,
    rng: np.random.Generator,
    max_pieces: int = 3,
    speed: float = 1.0,
    accel: float = 0.5,
    amplitude: float = 0.5,
    period: tuple[float, float] = (1.0, 6.0),
    kinds: tuple[str, ...] = PIECE_KINDS,
) -> tuple[np.ndarray, list[str]]:
    """One axis, in box heights, at times ``t`` (seconds, starting at 0): 1..max_pieces pieces, position
    continuous. Returns the positions (len(t),) starting at 0 and the kinds of the pieces."""
    length = len(t)
    n_pieces = int(rng.integers(1, min(max_pieces, max(length - 1, 1)) + 1))
    cuts = np.sort(rng.choice(np.arange(1, length), size=n_pieces - 1, replace=False)) if n_pieces > 1 else []
    bounds = [0, *[int(c) for c in cuts], length]
    pos = np.zeros(length)
    start_value = 0.0
    piece_kinds = []
    for a, b in zip(bounds[:-1], bounds[1:]):
        kind = kinds[int(rng.integers(len(kinds)))]
        piece_kinds.append(kind)
        # each piece starts from the last position of the previous piece, one frame later
        t0 = t[a - 1] if a > 0 else t[0]
        tau = t[a:b] - t0
        if kind == "static":
            values = np.zeros_like(tau)
        elif kind == "linear":
            values = rng.uniform(-speed, speed) * tau
        elif kind == "parabolic":
            values = rng.uniform(-speed, speed) * tau + 0.5 * rng.uniform(-accel, accel) * tau**2
        elif kind == "sinusoidal":
            omega = 2 * math.pi / rng.uniform(*period)
            phase = rng.uniform(0, 2 * math.pi)
            values = rng.uniform(0.2, 1.0) * amplitude * (np.sin(omega * tau + phase) - math.sin(phase))
        else:
            raise ValueError(f"unknown piece kind {kind!r}; known: {PIECE_KINDS}")
        pos[a:b] = start_value + values
        start_value = pos[b - 1]
    return pos, piece_kinds


def piecewise_trajectories(
    n: int,
    length: int = 60,
    seed=0,
    width_log_mean: float = math.log(60.0),
    width_log_std: float = 0.5,
    height_ratio: float = 5.0,
    height_ratio_jitter: float = 0.1,
    max_pieces: int = 3,
    speed: tuple[float, float] = (1.0, 0.3),
    accel: tuple[float, float] = (0.6, 0.2),
    amplitude: tuple[float, float] = (0.5, 0.15),
    period: tuple[float, float] = (1.0, 6.0),
    size_rate: float = 0.3,
    size_accel: float = 0.3,
    size_amplitude: float = 0.1,
    noise: float = 0.015,
    size_noise: float = 0.04,
    fps_range: tuple[float, float] = (10.0, 30.0),
    image_size: tuple[int, int] = (1920, 1080),
    return_info: bool = False,
):
    """``n`` trajectories of ``length`` frames (see the module docstring).

    Args:
        width_log_mean, width_log_std: box width ``w ~ LogNormal`` in pixels.
        height_ratio, height_ratio_jitter: ``h = w * height_ratio * (1 + jitter * N(0, 1))``.
        speed, accel, amplitude: per axis (x, y) maxima, in box heights per second, per second squared, and box
            heights; each piece draws uniformly up to them.
        period: range of sinusoid periods (seconds).
        size_rate, size_accel, size_amplitude: the box size follows its own 1-3 pieces in log scale (the same
            four kinds): maximum rate |d log(size) / dt| (1/s, approach or recession), acceleration (1/s^2)
            and sinusoid amplitude.
        noise, size_noise: maximum per-trajectory annotation jitter of the centre and of the width and height,
            fractions of the box height (drawn uniformly up to them, per trajectory).
        fps_range: frame rate drawn uniformly in this range (the time axis of the motion).
        image_size: start positions are drawn inside this image (irrelevant to the model coordinates).
        return_info: also return a :class:`PiecewiseInfo`.
    """
    rng = _rng(seed)
    boxes = np.zeros((n, length, 4))
    fps = rng.uniform(*fps_range, size=n)
    info = PiecewiseInfo([], np.zeros(n), np.zeros(n))
    for i in range(n):
        t = np.arange(length) / fps[i]
        w0 = math.exp(rng.normal(width_log_mean, width_log_std))
        h0 = w0 * height_ratio * max(1 + height_ratio_jitter * rng.normal(), 0.2)
        px, kx = piecewise_axis(t, rng, max_pieces, speed[0], accel[0], amplitude[0], period)
        py, ky = piecewise_axis(t, rng, max_pieces, speed[1], accel[1], amplitude[1], period)
        log_scale, _ = piecewise_axis(t, rng, max_pieces, size_rate, size_accel, size_amplitude, period)
        scale = np.exp(log_scale)
        cx0, cy0 = rng.uniform(0, image_size[0]), rng.uniform(0, image_size[1])
        h = h0 * scale
        traj = np.stack([cx0 + h0 * px, cy0 + h0 * py, w0 * scale, h], axis=-1)
        sigma = np.repeat([rng.uniform(0, noise), rng.uniform(0, size_noise)], 2)
        traj += rng.normal(size=traj.shape) * sigma * h[:, None]
        traj[:, 2:] = np.maximum(traj[:, 2:], 1.0)
        boxes[i] = traj
        info.kinds.append((kx, ky))
        info.width[i], info.height[i] = w0, h0
    windows = BoxWindows(boxes, np.ones((n, length), bool), fps, np.array(["piecewise"] * n, dtype=object))
    return (windows, info) if return_info else windows


# --------------------------------------------------------------------------------------------------------------
# pedestrian walker


@dataclass
class WalkerParams:
    """Parameters of :func:`walker_trajectories` (SI units, seconds, pixels)."""

    speed_mean: float = 1.3  # walking speed (m/s)
    speed_std: float = 0.25
    standing_prob: float = 0.15  # the person stands (nearly) still for the whole trajectory
    heading_noise: float = 0.25  # heading random walk (rad / sqrt(s))
    turn_rate: float = 0.1  # turns per second, each up to +-90 degrees over about one second
    stop_rate: float = 0.04  # stops per second, each 1-4 s
    person_height: tuple[float, float] = (1.72, 0.08)  # metres, mean and std
    aspect: tuple[float, float] = (0.41, 0.05)  # box width / height
    gait_amplitude: float = 0.1  # relative oscillation of the box width with the steps
    depth: tuple[float, float] = (3.0, 25.0)  # initial distance to the camera (m)
    focal: tuple[float, float] = (500.0, 1400.0)  # pixels
    camera_height: tuple[float, float] = (1.0, 8.0)  # metres
    moving_camera_prob: float = 0.4  # camera translates (up to camera_speed m/s) and pans (yaw rate ~ 0.05 rad/s)
    camera_speed: float = 2.0
    bobbing_prob: float = 0.3  # hand-held / stroller camera: vertical oscillation up to 4 px at ~2 Hz
    noise: float = 0.015  # maximum annotation jitter of the centre, fraction of box height
    size_noise: float = 0.04  # maximum annotation jitter of width and height, fraction of box height
    fps_range: tuple[float, float] = (10.0, 30.0)
    image_size: tuple[int, int] = (1920, 1080)


def _walk(length: int, dt: float, rng: np.random.Generator, p: WalkerParams) -> np.ndarray:
    """Ground-plane positions (length, 2) of one walker, metres, starting at the origin."""
    standing = rng.random() < p.standing_prob
    cruise = 0.05 * rng.random() if standing else max(rng.normal(p.speed_mean, p.speed_std), 0.3)
    heading = rng.uniform(0, 2 * math.pi)
    speed = cruise
    pos = np.zeros((length, 2))
    turn_left = 0.0
    stop_left = 0.0
    turn_speed = 0.0
    for k in range(1, length):
        if rng.random() < p.turn_rate * dt:
            turn_left = rng.uniform(0.7, 1.3)
            turn_speed = rng.uniform(-math.pi / 2, math.pi / 2) / turn_left
        if turn_left > 0:
            heading += turn_speed * dt
            turn_left -= dt
        heading += p.heading_noise * math.sqrt(dt) * rng.normal()
        if not standing and stop_left <= 0 and rng.random() < p.stop_rate * dt:
            stop_left = rng.uniform(1.0, 4.0)
        target = 0.0 if stop_left > 0 else cruise
        stop_left -= dt
        speed += (target - speed) * min(1.0, 2.5 * dt)  # accelerates / brakes in about 0.4 s
        pos[k] = pos[k - 1] + speed * dt * np.array([math.cos(heading), math.sin(heading)])
    return pos


def walker_trajectories(n: int, length: int = 60, seed=0, params: WalkerParams | None = None) -> BoxWindows:
    """``n`` pedestrian trajectories of ``length`` frames seen through a pinhole camera (see the module
    docstring). A walker who would come closer than 1.5 m to the camera is redrawn."""
    p = params or WalkerParams()
    rng = _rng(seed)
    boxes = np.zeros((n, length, 4))
    fps = rng.uniform(*p.fps_range, size=n)
    for i in range(n):
        for _ in range(100):
            view = camera_view(_walk(length, 1.0 / fps[i], rng, p), 1.0 / fps[i], rng, p)
            if view is not None:
                break
        boxes[i] = view if view is not None else camera_view(np.zeros((length, 2)), 1.0 / fps[i], rng, p)
    return BoxWindows(boxes, np.ones((n, length), bool), fps, np.array(["walker"] * n, dtype=object))


def camera_view(walk: np.ndarray, dt: float, rng: np.random.Generator, p: WalkerParams) -> np.ndarray | None:
    """Boxes (L, 4) ``cx, cy, w, h`` pixels of a person walking ``walk`` (L, 2), ground-plane metres from the
    origin (lateral, away from the camera), ``dt`` seconds apart, filmed by a random pinhole camera of ``p``:
    focal length, camera height, horizon, start distance and lateral offset, optionally a translating and
    panning camera and a bobbing one; gait oscillation of the width and annotation jitter. None (draw another
    camera) when the person would come closer than 1.5 m to the camera, or when the box centre would leave the
    image by more than half its size (a panning camera turning away, at low frame rates over long windows)."""
    length = len(walk)
    width, height = p.image_size
    t = np.arange(length) * dt
    focal = rng.uniform(*p.focal)
    cam_h = rng.uniform(*p.camera_height)
    depth0 = rng.uniform(*p.depth)
    lateral0 = rng.uniform(-0.4, 0.4) * depth0 * width / focal
    lateral, depth = lateral0 + walk[:, 0], depth0 + walk[:, 1]
    yaw = np.zeros(length)
    if rng.random() < p.moving_camera_prob:
        cam_v = rng.uniform(0, p.camera_speed) * np.array([rng.normal(0, 0.3), 1.0])
        lateral = lateral - cam_v[0] * t
        depth = depth - cam_v[1] * t
        yaw = rng.normal(0, 0.05) * t
    if depth.min() < 1.5:
        return None
    person_h = max(rng.normal(*p.person_height), 1.2)
    aspect = max(rng.normal(*p.aspect), 0.2)
    horizon = rng.uniform(0.3, 0.6) * height
    h = focal * person_h / depth
    feet = horizon + focal * cam_h / depth
    cx = width / 2 + focal * (lateral / depth + np.tan(yaw))
    cy = feet - h / 2
    if rng.random() < p.bobbing_prob:
        cy = cy + rng.uniform(0, 4) * np.sin(2 * math.pi * rng.uniform(1.5, 2.5) * t + rng.uniform(0, 6.3))
    step_freq = 1.8 * np.clip(np.hypot(*np.diff(walk, axis=0, prepend=walk[:1]).T) / dt / 1.3, 0, 1.5)
    phase = 2 * math.pi * np.cumsum(step_freq) * dt + rng.uniform(0, 6.3)
    w = aspect * h * (1 + p.gait_amplitude * np.abs(np.sin(phase / 2)) * (step_freq > 0.3))
    if np.abs(cx / width - 0.5).max() > 1.0 or np.abs(cy / height - 0.5).max() > 1.0:
        return None
    boxes = np.stack([cx, cy, w, h], axis=-1)
    sigma = np.repeat([rng.uniform(0, p.noise), rng.uniform(0, p.size_noise)], 2)
    boxes += rng.normal(size=boxes.shape) * sigma * h[:, None]
    boxes[:, 2:] = np.maximum(boxes[:, 2:], 1.0)
    return boxes


# --------------------------------------------------------------------------------------------------------------
# the project's synthetic benchmark


def benchmark_trajectories(
    num_sequences: int, seed: int = 0, length: int = 60, stride: int = 20, min_length: int = 10
) -> BoxWindows | None:
    """Windows cut from the ground truth of the synthetic MOTChallenge benchmark (``mixdvae.synthetic``,
    sequences ``1..num_sequences`` generated with ``seed``: use another seed than the benchmark the trackers are
    scored on); None when that module is unavailable."""
    try:
        from ..synthetic import generate_sequence
    except ImportError:
        return None
    parts = []
    for index in range(1, num_sequences + 1):
        seq = generate_sequence(index, seed)
        if getattr(seq, "gt", None) is None:
            continue
        tracks = tracks_from_gt(seq.gt, sequence=f"synthetic-{index}", fps=seq.frame_rate, min_length=min_length)
        parts.append(windows_from_tracks(tracks, length, stride, min_length))
    windows = BoxWindows.concat(parts)
    if len(windows):
        windows.source = np.array(["benchmark"] * len(windows), dtype=object)
    return windows
