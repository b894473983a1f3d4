"""A synthetic MOTChallenge benchmark: pedestrians on a ground plane seen by a pinhole camera.

Each sequence is simulated in world units and projected to pixels:

* **Walkers.** People walk on a flat ground (metres; ``X`` to the right, ``Z`` forward from the camera's
  foot) inside a trapezoid slightly larger than the camera's view. They enter through its borders (and,
  in scenes with a door, appear at a door inside the view) and head for another border (or the door);
  many share the scene's main path. A random-walk turn rate on top of the pull to the goal gives smooth
  turns; people change their preferred speed (0.8-1.8 m/s) and stop now and then for a few seconds.
  Births keep the crowd near a per-sequence target.
* **Camera.** A pinhole camera ``camera_height`` metres above the ground, pitched down so that the head of
  a person standing ``far_distance`` metres away touches the top image row; some sequences pan (a
  sinusoidal yaw). Each person is a box with the feet on the ground: height from the projection of the
  feet and the head (1.5-1.9 m), width from the body width (about 0.4 of the height) at the feet's depth.
  Ground-truth boxes are not clipped to the image.
* **Ground truth.** MOT17 rows ``frame, id, x, y, w, h, 1, 1, visibility`` for every person whose box
  overlaps the image; visibility is the fraction of the box not covered by people nearer the camera.
* **Detector.** Misses rise steeply with occlusion (nearly always below visibility 0.3), with truncation at
  the image border, for tiny boxes and during short "hard" spells (bad pose, low contrast); boxes are
  jittered in proportion to their size and clipped to the image like real detector output; scores are high
  for visible people and lower for occluded ones. False positives: a few transient boxes per frame, static
  background clutter that fires in many frames at the same ground spot, and occasional duplicate
  upper-body boxes. Rows ``frame, -1, x, y, w, h, score, -1, -1, -1``.

Everything is drawn from ``numpy`` generators seeded by ``(seed, index, stream)``, so each sequence is
reproducible on its own and the same seed writes byte-identical files.
"""

from __future__ import annotations

import json
import math
import re
import shutil
from dataclasses import dataclass, replace
from pathlib import Path

import numpy as np

from mixdvae.boxes import match_iou, xywh_to_xyxy
from mixdvae.mot import Sequence, atomic_write_text, split_by_frame

GENERATOR_VERSION = 1  # bump whenever a seed's output changes, so that ensure_benchmark regenerates
SEQUENCE_PREFIX = "SYNTH"
STAMP_FILE = "synthetic.json"
FRAME_RATES = (14, 20, 25, 30)
IMAGE_SIZES = ((640, 480), (1280, 720), (1920, 1080))

# Random streams of one sequence (the third entry of the generator seed).
_PARAMS_STREAM, _WALK_STREAM, _DETECTOR_STREAM = 0, 1, 2

# Walking behaviour (seconds, metres, radians).
SPEED_RANGE = (0.8, 1.8)  # preferred walking speed, m/s
PERSON_HEIGHT = (1.5, 1.9)  # m
WIDTH_RATIO = (0.36, 0.44)  # body width / height
SPEED_LAG = 0.6  # s, time constant of speed changes
SPEED_CHANGE_INTERVAL = 12.0  # s, mean time between changes of preferred speed
STOP_DURATION = (1.5, 5.0)  # s
TURN_RATE_SD = 0.25  # rad/s, stationary sd of the random-walk turn rate
TURN_RATE_TIME = 2.0  # s, correlation time of the turn rate
GOAL_PULL = 0.6  # 1/s, how fast the heading turns towards a distant goal
ARRIVAL_RADIUS = 0.5  # m, distance at which a walker enters the door
BIRTH_TIME = 2.0  # s, time constant of the births that refill the crowd
DOOR_SHARE = 0.25  # fraction of births at the door (scenes with a door)
DOOR_GOAL_SHARE = 0.15  # fraction of walkers heading for the door
HARD_RATE = 1 / 25.0  # 1/s, rate of entering a "hard to detect" spell
HARD_DURATION = 0.8  # s, mean length of a hard spell


@dataclass(frozen=True)
class SceneParams:
    """Everything that defines one synthetic sequence; :func:`draw_params` draws it, any field can be overridden.

    Attributes:
        name: sequence folder name, ``SYNTH-NN``.
        length: number of frames.
        frame_rate: frames per second.
        im_width, im_height: image size in pixels.
        camera_height: camera height above the ground, metres.
        hfov: horizontal field of view, degrees.
        far_distance: ground distance (m) of the farthest fully visible person (head at the top image row);
            people walk up to 2 m beyond it, partly above the image.
        pan_amplitude: yaw swing of a panning camera, degrees (0: static camera).
        pan_period: period of the yaw swing, seconds.
        pan_phase: phase of the yaw swing at frame 1, radians.
        crowd: target number of people in the walking area (births refill it).
        flow_axis: direction of the scene's main pedestrian flow, ``"along"`` (towards and away from the
            camera) or ``"across"`` (left to right and back).
        flow_share: fraction of the walkers that follow the main flow.
        flow_band: width of the main flow's path, as a fraction of the edges it joins.
        flow_centre: where the main path lies: for ``"along"``, its place across the view (0 left, 1 right);
            for ``"across"``, the image row of its foot points (fraction of the image height, 0 top).
        door: whether people also appear and vanish at a door inside the view.
        stop_rate: stops per walking person per second.
        base_miss: miss probability of the detector for a large, fully visible person.
        jitter: detection box noise, standard deviation as a fraction of the box size.
        fp_rate: transient false positives per frame (Poisson mean).
        clutter: number of static background objects that fire the detector.
        duplicate_rate: probability that a detected person also gets an upper-body duplicate box.
    """

    name: str
    length: int
    frame_rate: int
    im_width: int
    im_height: int
    camera_height: float
    hfov: float
    far_distance: float
    pan_amplitude: float
    pan_period: float
    pan_phase: float
    crowd: int
    flow_axis: str
    flow_share: float
    flow_band: float
    flow_centre: float
    door: bool
    stop_rate: float
    base_miss: float
    jitter: float
    fp_rate: float
    clutter: int
    duplicate_rate: float

    def __post_init__(self) -> None:
        if self.length < 1 or self.frame_rate <= 0 or self.im_width < 1 or self.im_height < 1:
            raise ValueError(f"{self.name}: length, frame_rate and image size must be positive")
        if not (self.camera_height > PERSON_HEIGHT[1] and 0 < self.hfov < 180 and self.far_distance > 0):
            raise ValueError(f"{self.name}: the camera must be above head height and look at the ground")
        if self.flow_axis not in ("along", "across"):
            raise ValueError(f"{self.name}: flow_axis must be 'along' or 'across', got {self.flow_axis!r}")
        if self.crowd < 0 or self.clutter < 0:
            raise ValueError(f"{self.name}: crowd and clutter must be non-negative")


def _rng(seed: int, index: int, stream: int) -> np.random.Generator:
    """The generator of one random stream of sequence ``index``; independent of every other sequence."""
    return np.random.default_rng([seed, index, stream])


def sequence_name(index: int) -> str:
    """``SYNTH-01`` for index 1."""
    return f"{SEQUENCE_PREFIX}-{index:02d}"


def draw_params(index: int, seed: int = 0, **overrides) -> SceneParams:
    """Draw the scene of sequence ``index`` (1-based) from ``seed``, then apply ``overrides`` (field names).

    Even-numbered sequences have a panning camera. Unknown override names raise ``TypeError``.
    """
    rng = _rng(seed, index, _PARAMS_STREAM)
    im_width, im_height = IMAGE_SIZES[rng.integers(len(IMAGE_SIZES))]
    hfov = rng.uniform(50.0, 70.0)
    focal = im_width / 2 / math.tan(math.radians(hfov) / 2)
    smallest_person = max(24.0, 0.06 * im_height)  # px, a 1.7 m person at the far edge
    params = SceneParams(
        name=sequence_name(index),
        length=int(rng.integers(300, 601)),
        frame_rate=int(rng.choice(FRAME_RATES)),
        im_width=int(im_width),
        im_height=int(im_height),
        camera_height=rng.uniform(2.2, 4.5),
        hfov=hfov,
        far_distance=min(rng.uniform(20.0, 45.0), focal * 1.7 / smallest_person),
        pan_amplitude=rng.uniform(5.0, 12.0) if index % 2 == 0 else 0.0,
        pan_period=rng.uniform(15.0, 40.0),
        pan_phase=rng.uniform(0.0, 2 * math.pi),
        crowd=int(rng.integers(8, 25)),
        flow_axis=str(rng.choice(["along", "across"])),
        flow_share=rng.uniform(0.4, 0.8),
        flow_band=rng.uniform(0.15, 0.5),
        flow_centre=rng.uniform(0.3, 0.75),
        door=bool(rng.random() < 0.6),
        stop_rate=rng.uniform(1 / 40, 1 / 15),
        base_miss=rng.uniform(0.03, 0.08),
        jitter=rng.uniform(0.03, 0.06),
        fp_rate=rng.uniform(0.5, 2.5),
        clutter=int(rng.integers(0, 4)),
        duplicate_rate=rng.uniform(0.0, 0.03),
    )
    return replace(params, **overrides)


@dataclass(frozen=True)
class Camera:
    """Pinhole camera ``height`` m above the ground origin, pitched down by ``tilt`` rad, yawing per frame.

    ``focal`` and the principal point ``cx, cy`` are in pixels.
    """

    height: float
    tilt: float
    focal: float
    cx: float
    cy: float

    @classmethod
    def from_params(cls, params: SceneParams) -> Camera:
        """The camera whose top image row passes through the head of the tallest person at ``far_distance``."""
        focal = params.im_width / 2 / math.tan(math.radians(params.hfov) / 2)
        half_vfov = math.atan(params.im_height / 2 / focal)
        tilt = math.atan((params.camera_height - PERSON_HEIGHT[1]) / params.far_distance) + half_vfov
        return cls(params.camera_height, tilt, focal, params.im_width / 2, params.im_height / 2)

    @property
    def half_vfov(self) -> float:
        return math.atan(self.cy / self.focal)

    def project(self, x: np.ndarray, y: np.ndarray, z: np.ndarray, yaw: np.ndarray) -> tuple[np.ndarray, ...]:
        """Image points of world points (metres; ``y`` up) seen with camera yaw ``yaw`` (rad, > 0 turns right).

        All inputs broadcast to shape (n,). Returns ``u, v`` (pixels) and the depth along the optical axis (m).
        """
        x_rot = x * np.cos(yaw) - z * np.sin(yaw)
        z_rot = x * np.sin(yaw) + z * np.cos(yaw)
        rise = y - self.height
        depth = z_rot * math.cos(self.tilt) - rise * math.sin(self.tilt)
        down = -rise * math.cos(self.tilt) - z_rot * math.sin(self.tilt)
        return self.cx + self.focal * x_rot / depth, self.cy + self.focal * down / depth, depth

    def ground_distance(self, row: float) -> float:
        """Ground distance (m) of the point seen at image ``row`` (pixels) straight ahead, yaw 0."""
        return self.height / math.tan(self.tilt + math.atan((row - self.cy) / self.focal))

    def boxes(self, x, z, height_m, width_m, yaw) -> tuple[np.ndarray, np.ndarray]:
        """Boxes (n, 4) ``x, y, w, h`` in pixels of upright people standing at ground points ``x, z`` (m).

        The bottom centre is the projected foot point, the top the projected head, the width the body width
        at the feet's depth. Also returns the feet's depth (n,), metres, which orders occlusions.
        """
        u, v_feet, depth = self.project(x, 0.0, z, yaw)
        _, v_head, _ = self.project(x, height_m, z, yaw)
        width = width_m * self.focal / depth
        return np.column_stack([u - width / 2, v_head, width, v_feet - v_head]), depth


@dataclass(frozen=True)
class WalkArea:
    """Ground trapezoid ``z_near <= Z <= z_far``, ``|X| <= half0 + slope * Z`` (metres) where people walk.

    It is the camera's view of the ground plus margins, so that people crossing its border are out of sight.
    """

    z_near: float
    z_far: float
    half0: float
    slope: float

    @classmethod
    def around(cls, camera: Camera, params: SceneParams) -> WalkArea:
        """The view of ``camera`` over its whole pan swing, widened by 1 m at the sides, ending 2 m beyond
        ``far_distance`` and starting where a 1.9 m person's head leaves the image bottom."""
        lowest_ray = camera.tilt + camera.half_vfov
        z_near = max((camera.height - PERSON_HEIGHT[1]) / math.tan(lowest_ray) - 0.5, 0.5)
        spread = camera.cx / camera.focal  # lateral metres per metre of depth at the image border
        half0 = camera.height * math.sin(camera.tilt) * spread + 1.0
        slope = math.cos(camera.tilt) * spread + math.tan(math.radians(params.pan_amplitude))
        return cls(z_near, params.far_distance + 2.0, half0, slope)

    def half_width(self, z: np.ndarray) -> np.ndarray:
        return self.half0 + self.slope * z

    def contains(self, points: np.ndarray, margin: float = 0.0) -> np.ndarray:
        """Whether each ground point of (n, 2) ``X, Z`` lies inside the area widened by ``margin`` metres."""
        x, z = points[:, 0], points[:, 1]
        inside_z = (z >= self.z_near - margin) & (z <= self.z_far + margin)
        return inside_z & (np.abs(x) <= self.half_width(z) + margin)

    def edge_lengths(self) -> np.ndarray:
        """Lengths (4,) of the near, far, left and right edges, metres."""
        near, far = 2 * self.half_width(self.z_near), 2 * self.half_width(self.z_far)
        side = math.hypot(self.z_far - self.z_near, (far - near) / 2)
        return np.array([near, far, side, side])

    def boundary_points(self, edges: np.ndarray, rng: np.random.Generator, band=1.0, centre=0.5) -> np.ndarray:
        """A point (n, 2) on each of the given edges (0 near, 1 far, 2 left, 3 right), uniform over a stretch of
        ``band`` times the edge's length centred at fraction ``centre`` of the edge (from its near or left end);
        ``band`` and ``centre`` are scalars or (n,) arrays."""
        t = np.clip(centre + (rng.random(len(edges)) - 0.5) * band, 0.0, 1.0)
        along_side = self.z_near + t * (self.z_far - self.z_near)
        z = np.where(edges == 0, self.z_near, np.where(edges == 1, self.z_far, along_side))
        across = np.where(edges <= 1, 2 * t - 1, np.where(edges == 2, -1.0, 1.0))
        return np.column_stack([across * self.half_width(z), z])

    def beyond(self, points: np.ndarray, edges: np.ndarray, distance: float) -> np.ndarray:
        """Points (n, 2) on ``edges`` (n,) moved ``distance`` metres out of the area, across their edge."""
        step = np.array([[0.0, -1.0], [0.0, 1.0], [-1.0, 0.0], [1.0, 0.0]])[edges]
        return points + distance * step

    def random_edges(self, n: int, rng: np.random.Generator, avoid: np.ndarray | None = None) -> np.ndarray:
        """``n`` edge indices drawn in proportion to edge length; entry ``i`` differs from ``avoid[i]`` (n,)."""
        weights = np.tile(self.edge_lengths(), (n, 1))
        if avoid is not None:
            weights[np.arange(n), avoid] = 0.0
        cumulative = np.cumsum(weights, axis=1)
        draws = rng.random(n) * cumulative[:, -1]
        return (draws[:, None] >= cumulative).sum(axis=1)

    def inside_points(self, n: int, rng: np.random.Generator, shrink: float = 1.0) -> np.ndarray:
        """``n`` uniform ground points (n, 2) inside the area with half-widths scaled by ``shrink``."""
        points = np.zeros((0, 2))
        width = self.half_width(self.z_far) * shrink
        while len(points) < n:
            batch = np.column_stack([rng.uniform(-width, width, 2 * n), rng.uniform(self.z_near, self.z_far, 2 * n)])
            keep = np.abs(batch[:, 0]) <= self.half_width(batch[:, 1]) * shrink
            points = np.concatenate([points, batch[keep]])
        return points[:n]


def _wrap(angle: np.ndarray) -> np.ndarray:
    """Angles in radians wrapped to [-pi, pi)."""
    return (angle + math.pi) % (2 * math.pi) - math.pi


class _Crowd:
    """The people currently in the walking area, as parallel arrays (one entry per person)."""

    FIELDS = (
        "pid", "pos", "goal", "to_door", "heading", "speed", "v_pref", "turn", "stop_left", "height", "width", "hard"
    )

    def __init__(self) -> None:
        self.next_id = 1
        self.pid = np.zeros(0, int)
        self.pos = np.zeros((0, 2))
        self.goal = np.zeros((0, 2))
        self.to_door = np.zeros(0, bool)
        self.heading = np.zeros(0)
        self.speed = np.zeros(0)
        self.v_pref = np.zeros(0)
        self.turn = np.zeros(0)
        self.stop_left = np.zeros(0)
        self.height = np.zeros(0)
        self.width = np.zeros(0)
        self.hard = np.zeros(0, bool)

    def __len__(self) -> int:
        return len(self.pid)

    def add(self, pos: np.ndarray, goal: np.ndarray, to_door: np.ndarray, rng: np.random.Generator) -> None:
        """Add people at ground points ``pos`` (n, 2) heading for ``goal`` (n, 2), walking at their own pace."""
        n = len(pos)
        v_pref = rng.uniform(*SPEED_RANGE, n)
        height = rng.uniform(*PERSON_HEIGHT, n)
        offset = goal - pos
        new = {
            "pid": np.arange(self.next_id, self.next_id + n),
            "pos": pos,
            "goal": goal,
            "to_door": to_door,
            "heading": np.arctan2(offset[:, 1], offset[:, 0]) + rng.normal(0.0, 0.2, n),
            "speed": v_pref,
            "v_pref": v_pref,
            "turn": rng.normal(0.0, TURN_RATE_SD, n),
            "stop_left": np.zeros(n),
            "height": height,
            "width": height * rng.uniform(*WIDTH_RATIO, n),
            "hard": np.zeros(n, bool),
        }
        for name in self.FIELDS:
            setattr(self, name, np.concatenate([getattr(self, name), new[name]]))
        self.next_id += n

    def keep(self, mask: np.ndarray) -> None:
        for name in self.FIELDS:
            setattr(self, name, getattr(self, name)[mask])

    def step(self, dt: float, stop_rate: float, rng: np.random.Generator) -> None:
        """Advance everyone by ``dt`` seconds: turn-rate random walk plus goal pull, stops, speed changes."""
        n = len(self)
        decay = math.exp(-dt / TURN_RATE_TIME)
        self.turn = self.turn * decay + TURN_RATE_SD * math.sqrt(1 - decay**2) * rng.normal(size=n)
        offset = self.goal - self.pos
        to_goal = _wrap(np.arctan2(offset[:, 1], offset[:, 0]) - self.heading)
        pull = GOAL_PULL + 2 * self.speed / np.maximum(np.linalg.norm(offset, axis=1), 0.1)  # steer harder when close
        self.heading = _wrap(self.heading + np.minimum(pull * dt, 1.0) * to_goal + self.turn * dt)
        stopping = (self.stop_left <= 0) & (rng.random(n) < stop_rate * dt)
        self.stop_left = np.where(stopping, rng.uniform(*STOP_DURATION, n), self.stop_left - dt)
        changing = rng.random(n) < dt / SPEED_CHANGE_INTERVAL
        self.v_pref = np.where(changing, rng.uniform(*SPEED_RANGE, n), self.v_pref)
        target = np.where(self.stop_left > 0, 0.0, self.v_pref)
        self.speed += (target - self.speed) * (1 - math.exp(-dt / SPEED_LAG))
        self.pos = self.pos + (self.speed * dt)[:, None] * np.column_stack([np.cos(self.heading), np.sin(self.heading)])
        flip = rng.random(n) < np.where(self.hard, dt / HARD_DURATION, HARD_RATE * dt)
        self.hard = self.hard ^ flip

    def arrived(self, area: WalkArea) -> np.ndarray:
        """Who has reached the door they head for, or left the area (every other goal lies on its border)."""
        at_door = self.to_door & (np.linalg.norm(self.goal - self.pos, axis=1) < ARRIVAL_RADIUS)
        return at_door | ~area.contains(self.pos, margin=0.25)

    def snapshot(self, frame: int) -> np.ndarray:
        """Rows (n, 7) ``frame, pid, X, Z, height_m, width_m, hard`` of everyone now."""
        return np.column_stack(
            [np.full(len(self), frame), self.pid, self.pos, self.height, self.width, self.hard]
        ).astype(float)


def _flow_position(params: SceneParams, camera: Camera, area: WalkArea) -> float:
    """Where the main path meets its two edges, as a fraction of their length from the near or left end."""
    if params.flow_axis == "along":
        return params.flow_centre
    depth = camera.ground_distance(params.flow_centre * params.im_height)
    return float(np.clip((depth - area.z_near) / (area.z_far - area.z_near), 0.0, 1.0))


def _routes(area: WalkArea, params: SceneParams, centre: float, door: np.ndarray | None, count: int, rng) -> tuple:
    """Entry points (n, 2), goals (n, 2) and door-goal flags (n,) of ``count`` new walkers.

    A share ``params.flow_share`` follows the scene's main flow: from one edge of ``params.flow_axis`` (near and
    far for ``"along"``, left and right for ``"across"``) to the other, within a stretch ``params.flow_band`` long
    around fraction ``centre`` of both edges (see :func:`_flow_position`), so that these people share a path.
    The others enter anywhere on the border, or at the door, and head for another edge, or the door. Border
    goals lie 1 m outside the area, so walkers leave it on the way.
    """
    in_flow = rng.random(count) < params.flow_share
    axis_edges = np.array([0, 1] if params.flow_axis == "along" else [2, 3])
    flow_entry = axis_edges[rng.integers(2, size=count)]
    entry = np.where(in_flow, flow_entry, area.random_edges(count, rng))
    exit_edge = np.where(in_flow, axis_edges.sum() - flow_entry, area.random_edges(count, rng, avoid=entry))
    band, centre = np.where(in_flow, params.flow_band, 1.0), np.where(in_flow, centre, 0.5)
    pos = area.boundary_points(entry, rng, band, centre)
    goal = area.beyond(area.boundary_points(exit_edge, rng, band, centre), exit_edge, 1.0)
    to_door = np.zeros(count, bool)
    if door is not None:
        at_door = ~in_flow & (rng.random(count) < DOOR_SHARE)
        to_door = ~in_flow & ~at_door & (rng.random(count) < DOOR_GOAL_SHARE)
        pos[at_door], goal[to_door] = door, door
    return pos, goal, to_door


def _door(area: WalkArea, params: SceneParams, rng: np.random.Generator) -> np.ndarray | None:
    """A ground point (2,) in the middle of the view, or None for scenes without a door."""
    z = area.z_near + rng.uniform(0.4, 0.8) * (params.far_distance - area.z_near)
    x = rng.uniform(-0.5, 0.5) * (area.half_width(z) - 1.0)
    return np.array([x, z]) if params.door else None


def simulate_walkers(params: SceneParams, camera: Camera, area: WalkArea, rng: np.random.Generator) -> np.ndarray:
    """Walk the crowd for ``params.length`` frames.

    Returns (R, 7) rows ``frame, pid, X, Z, height_m, width_m, hard`` sorted by frame then pid: ground
    position in metres, body size in metres, and whether the person is in a hard-to-detect spell.
    """
    dt = 1.0 / params.frame_rate
    door = _door(area, params, rng)
    crowd = _Crowd()
    centre = _flow_position(params, camera, area)
    _, goal, to_door = _routes(area, params, centre, door, params.crowd, rng)
    crowd.add(area.inside_points(params.crowd, rng), goal, to_door, rng)
    rows = []
    for frame in range(1, params.length + 1):
        rows.append(crowd.snapshot(frame))
        crowd.step(dt, params.stop_rate, rng)
        crowd.keep(~crowd.arrived(area))
        births = rng.poisson(max(params.crowd - len(crowd), 0) * dt / BIRTH_TIME)
        crowd.add(*_routes(area, params, centre, door, births, rng), rng)
    return np.concatenate(rows)


def pan_angles(params: SceneParams) -> np.ndarray:
    """Camera yaw (T,) in radians for frames ``1..T``: a sinusoidal swing, zero for a static camera."""
    seconds = np.arange(params.length) / params.frame_rate
    return math.radians(params.pan_amplitude) * np.sin(2 * math.pi * seconds / params.pan_period + params.pan_phase)


def _covered_area(box: np.ndarray, others: np.ndarray) -> float:
    """Area (px^2) of the part of ``box`` (4,) covered by the union of ``others`` (k, 4); corners ``x1, y1, x2, y2``.

    Exact: the box is cut into the cells of every edge inside it, and a cell counts when any other box covers it.
    """
    xs = np.unique(np.clip(np.concatenate([others[:, [0, 2]].ravel(), box[[0, 2]]]), box[0], box[2]))
    ys = np.unique(np.clip(np.concatenate([others[:, [1, 3]].ravel(), box[[1, 3]]]), box[1], box[3]))
    cx, cy = (xs[:-1] + xs[1:]) / 2, (ys[:-1] + ys[1:]) / 2
    in_x = (others[:, 0:1] <= cx) & (cx <= others[:, 2:3])  # (k, nx)
    in_y = (others[:, 1:2] <= cy) & (cy <= others[:, 3:4])  # (k, ny)
    covered = (in_x[:, :, None] & in_y[:, None, :]).any(axis=0)
    return float((np.diff(xs)[:, None] * np.diff(ys)[None, :] * covered).sum())


def occlusion_visibility(boxes: np.ndarray, depth: np.ndarray) -> np.ndarray:
    """Visible fraction (n,) of each box (n, 4) ``x, y, w, h`` not covered by boxes with a smaller ``depth`` (n,)."""
    corners = xywh_to_xyxy(boxes)
    a, b = corners[:, None, :], corners[None, :, :]  # (n, 1, 4), (1, n, 4)
    overlap_w = np.minimum(a[..., 2], b[..., 2]) - np.maximum(a[..., 0], b[..., 0])
    overlap_h = np.minimum(a[..., 3], b[..., 3]) - np.maximum(a[..., 1], b[..., 1])
    occluders = (overlap_w > 0) & (overlap_h > 0) & (depth[None, :] < depth[:, None])  # [i, j]: j hides part of i
    visibility = np.ones(len(boxes))
    for i in np.flatnonzero(occluders.any(axis=1)):
        area = boxes[i, 2] * boxes[i, 3]
        visibility[i] = max(0.0, 1.0 - _covered_area(corners[i], corners[occluders[i]]) / area)
    return visibility


def _frame_groups(frames: np.ndarray) -> list[np.ndarray]:
    """Row indices of each distinct frame, for rows sorted by frame."""
    bounds = np.flatnonzero(np.diff(frames)) + 1
    return np.split(np.arange(len(frames)), bounds)


def _in_image_fraction(boxes: np.ndarray, width: int, height: int) -> np.ndarray:
    """Fraction (n,) of each box's area inside the ``width`` x ``height`` image."""
    corners = xywh_to_xyxy(boxes)
    inside_w = np.clip(np.minimum(corners[:, 2], width) - np.maximum(corners[:, 0], 0), 0, None)
    inside_h = np.clip(np.minimum(corners[:, 3], height) - np.maximum(corners[:, 1], 0), 0, None)
    return inside_w * inside_h / (boxes[:, 2] * boxes[:, 3])


def _clip_to_image(boxes: np.ndarray, width: int, height: int) -> tuple[np.ndarray, np.ndarray]:
    """Boxes (n, 4) cut to the image, and a mask (n,) of those still at least 2 px wide and high."""
    corners = xywh_to_xyxy(boxes)
    corners[:, [0, 2]] = np.clip(corners[:, [0, 2]], 0, width)
    corners[:, [1, 3]] = np.clip(corners[:, [1, 3]], 0, height)
    clipped = np.column_stack([corners[:, :2], corners[:, 2:] - corners[:, :2]])
    return clipped, (clipped[:, 2] >= 2) & (clipped[:, 3] >= 2)


def _jitter(boxes: np.ndarray, scale: float, rng: np.random.Generator) -> np.ndarray:
    """Boxes (n, 4) with centre noise ``scale`` x size and log-normal size noise of sd ``1.5 * scale``."""
    w, h = boxes[:, 2], boxes[:, 3]
    cx = boxes[:, 0] + w / 2 + rng.normal(0.0, scale, len(boxes)) * w
    cy = boxes[:, 1] + h / 2 + rng.normal(0.0, scale, len(boxes)) * h
    w = w * np.exp(rng.normal(0.0, 1.5 * scale, len(boxes)))
    h = h * np.exp(rng.normal(0.0, 1.5 * scale, len(boxes)))
    return np.column_stack([cx - w / 2, cy - h / 2, w, h])


def _sigmoid(x: np.ndarray) -> np.ndarray:
    return 0.5 * (1 + np.tanh(x / 2))


def detection_probability(visibility, in_image, height_px, hard, base_miss: float) -> np.ndarray:
    """Probability (n,) that the detector fires on a person.

    Args:
        visibility: fraction not occluded, (n,). Below about 0.3 the person is almost never detected.
        in_image: fraction of the box inside the image, (n,).
        height_px: box height in pixels, (n,); boxes under ~20 px are mostly missed.
        hard: (n,) bool, a hard-to-detect spell (75% extra misses).
        base_miss: miss probability of a large, fully visible person.
    """
    occlusion = _sigmoid((visibility - 0.45) / 0.05)
    truncation = _sigmoid((in_image - 0.4) / 0.06)
    size = _sigmoid((height_px - 22.0) / 4.0)
    return (1 - base_miss) * occlusion * truncation * size * np.where(hard, 0.25, 1.0)


def _true_detections(frames, boxes, visibility, hard, params: SceneParams, rng) -> np.ndarray:
    """Detector output (M, 6) ``frame, x, y, w, h, score`` on the people of the ground truth."""
    in_image = _in_image_fraction(boxes, params.im_width, params.im_height)
    p_detect = detection_probability(visibility, in_image, boxes[:, 3], hard, params.base_miss)
    fired = (rng.random(len(boxes)) < p_detect) & (visibility > 0)
    noisy, valid = _clip_to_image(_jitter(boxes[fired], params.jitter, rng), params.im_width, params.im_height)
    quality = visibility[fired] * in_image[fired] - 0.3 * hard[fired]
    score = 0.45 + 0.5 * quality + rng.normal(0.0, 0.08, int(fired.sum()))
    rows = np.column_stack([frames[fired], noisy, score])
    return rows[valid]


def _duplicates(detections: np.ndarray, rate: float, rng: np.random.Generator) -> np.ndarray:
    """Upper-body boxes (M', 6) ``frame, x, y, w, h, score`` on a random ``rate`` share of true detections."""
    picked = detections[rng.random(len(detections)) < rate].copy()
    picked[:, 3] *= rng.uniform(0.8, 1.1, len(picked))
    picked[:, 4] *= rng.uniform(0.45, 0.65, len(picked))
    picked[:, 5] *= rng.uniform(0.4, 0.8, len(picked))
    return picked


def _ground_objects(frames, points, heights, widths, camera, yaw, params, rng) -> tuple[np.ndarray, np.ndarray]:
    """Detector boxes (n, 5) ``frame, x, y, w, h`` of objects at ground ``points`` (n, 2) in ``frames`` (n,),
    jittered and clipped, and the mask (n,) of those mostly inside the image."""
    boxes, _ = camera.boxes(points[:, 0], points[:, 1], heights, widths, yaw[frames.astype(int) - 1])
    mostly_in = _in_image_fraction(boxes, params.im_width, params.im_height) >= 0.5
    clipped, valid = _clip_to_image(_jitter(boxes, params.jitter, rng), params.im_width, params.im_height)
    return np.column_stack([frames, clipped]), mostly_in & valid


def _false_positives(params, camera, area, yaw, rng) -> np.ndarray:
    """Transient and static-clutter false positives (M, 6) ``frame, x, y, w, h, score``.

    Transient boxes appear at random ground spots with mostly low scores (15% look confident). Each clutter
    object is a fixed ground spot that fires in a fixed share of the frames with a mid-range score.
    """
    counts = rng.poisson(params.fp_rate, params.length)
    frames = np.repeat(np.arange(1, params.length + 1), counts).astype(float)
    n = len(frames)
    spots, heights = area.inside_points(n, rng, shrink=0.9), rng.uniform(0.5, 2.0, n)
    widths = heights * rng.uniform(0.3, 0.9, n)
    boxes, keep = _ground_objects(frames, spots, heights, widths, camera, yaw, params, rng)
    confident = rng.random(n) < 0.15
    scores = np.where(confident, rng.beta(5.0, 2.5, n), rng.beta(1.5, 5.0, n))
    transient = np.column_stack([boxes, scores])[keep]

    spots = area.inside_points(params.clutter, rng, shrink=0.7)
    heights = rng.uniform(0.8, 2.0, params.clutter)
    widths = heights * rng.uniform(0.3, 0.7, params.clutter)
    on_share, mean_score = rng.uniform(0.3, 0.8, params.clutter), rng.uniform(0.25, 0.65, params.clutter)
    fires = rng.random((params.length, params.clutter)) < on_share  # (T, clutter)
    frame_idx, obj = np.nonzero(fires)
    boxes, keep = _ground_objects(frame_idx + 1.0, spots[obj], heights[obj], widths[obj], camera, yaw, params, rng)
    scores = mean_score[obj] + rng.normal(0.0, 0.08, len(obj))
    clutter = np.column_stack([boxes, scores])[keep]
    return np.concatenate([transient, clutter])


def _detection_rows(detections: np.ndarray, rng: np.random.Generator) -> np.ndarray:
    """MOTChallenge det rows (M, 10) from (M, 6) ``frame, x, y, w, h, score``, by frame in random order within;
    scores are clipped to [0.01, 1]."""
    order = np.lexsort((rng.random(len(detections)), detections[:, 0]))
    d = detections[order]
    minus = -np.ones(len(d))
    score = np.round(np.clip(d[:, 5], 0.01, 1.0), 4)
    return np.column_stack([d[:, 0], minus, np.round(d[:, 1:5], 2), score, minus, minus, minus])


def _ground_truth_rows(frames, pids, boxes, visibility) -> np.ndarray:
    """MOT17 gt rows (G, 10) from frames (G,), walker ids (G,), boxes (G, 4) and visibility (G,), with ids
    renumbered 1.. by first appearance, sorted by frame then id."""
    _, first = np.unique(pids, return_index=True)
    by_appearance = pids[np.sort(first)]
    lookup = dict(zip(by_appearance.tolist(), range(1, len(by_appearance) + 1)))
    ids = np.array([lookup[p] for p in pids.tolist()], dtype=float)
    ones = np.ones(len(ids))
    rows = np.column_stack([frames, ids, boxes, ones, ones, visibility, -ones])
    return rows[np.lexsort((ids, frames))]


def _people_in_view(walkers: np.ndarray, camera: Camera, params: SceneParams) -> tuple[np.ndarray, ...]:
    """Project :func:`simulate_walkers` rows and keep the people whose box overlaps the image.

    Returns ``frames (G,), pids (G,), boxes (G, 4), visibility (G,), hard (G,)``: boxes ``x, y, w, h`` in
    pixels rounded as written to gt.txt, visibility (rounded to 4 decimals) against every nearer person.
    """
    frames = walkers[:, 0]
    yaw = pan_angles(params)[frames.astype(int) - 1]
    boxes, depth = camera.boxes(walkers[:, 2], walkers[:, 3], walkers[:, 4], walkers[:, 5], yaw)
    boxes = np.round(boxes, 2)
    visibility = np.zeros(len(boxes))
    for rows in _frame_groups(frames):
        visibility[rows] = occlusion_visibility(boxes[rows], depth[rows])
    seen = _in_image_fraction(boxes, params.im_width, params.im_height) > 0
    return frames[seen], walkers[seen, 1], boxes[seen], np.round(visibility[seen], 4), walkers[seen, 6] > 0


def generate_sequence(index: int, seed: int = 0, **overrides) -> Sequence:
    """Simulate synthetic sequence ``index`` (1-based, named ``SYNTH-NN``) from ``seed``.

    ``overrides`` replace fields of :class:`SceneParams` (e.g. ``length=150``, ``pan_amplitude=0``) without
    changing the draws of the other fields; the walk and the detector use random streams of their own.
    Returns an in-memory :class:`~mixdvae.mot.Sequence` whose rows equal what :meth:`Sequence.save` writes.
    """
    params = draw_params(index, seed, **overrides)
    camera = Camera.from_params(params)
    area = WalkArea.around(camera, params)
    walkers = simulate_walkers(params, camera, area, _rng(seed, index, _WALK_STREAM))
    frames, pids, boxes, visibility, hard = _people_in_view(walkers, camera, params)
    rng = _rng(seed, index, _DETECTOR_STREAM)
    true = _true_detections(frames, boxes, visibility, hard, params, rng)
    duplicates = _duplicates(true, params.duplicate_rate, rng)
    clutter = _false_positives(params, camera, area, pan_angles(params), rng)
    return Sequence(
        name=params.name,
        frame_rate=params.frame_rate,
        im_width=params.im_width,
        im_height=params.im_height,
        length=params.length,
        detections=_detection_rows(np.concatenate([true, duplicates, clutter]), rng),
        gt=_ground_truth_rows(frames, pids, boxes, visibility),
    )


def _stamp(seed: int, overrides: dict) -> dict:
    """What a benchmark folder was generated with; :func:`ensure_benchmark` regenerates when it differs."""
    return {"generator_version": GENERATOR_VERSION, "seed": seed, "overrides": overrides}


def _read_stamp(out_dir: Path) -> dict | None:
    path = out_dir / STAMP_FILE
    try:
        return json.loads(path.read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return None


def _is_complete(folder: Path) -> bool:
    return all((folder / name).is_file() for name in ("seqinfo.ini", "det/det.txt", "gt/gt.txt"))


def _remove_extra_sequences(train: Path, num_sequences: int) -> None:
    """Delete generated ``SYNTH-NN`` folders numbered above ``num_sequences`` (left by a larger run)."""
    pattern = re.compile(rf"{SEQUENCE_PREFIX}-(\d+)")
    for folder in train.iterdir() if train.is_dir() else []:
        match = pattern.fullmatch(folder.name)
        if match and folder.is_dir() and int(match.group(1)) > num_sequences:
            shutil.rmtree(folder)


def write_benchmark(out_dir, num_sequences: int = 6, seed: int = 0, **overrides) -> list[Path]:
    """Generate ``SYNTH-01`` .. ``SYNTH-<num_sequences>`` into ``out_dir/train`` in MOTChallenge layout.

    ``overrides`` apply to every sequence (see :func:`generate_sequence`). ``SYNTH-NN`` folders numbered above
    ``num_sequences`` (left by an earlier, larger run) are deleted. Writes ``out_dir/synthetic.json`` (generator
    version, seed, overrides) last, so that :func:`ensure_benchmark` regenerates after an interrupted run.
    Returns the sequence folders.
    """
    out_dir = Path(out_dir)
    train = out_dir / "train"
    (out_dir / STAMP_FILE).unlink(missing_ok=True)
    _remove_extra_sequences(train, num_sequences)
    folders = []
    for index in range(1, num_sequences + 1):
        sequence = generate_sequence(index, seed, **overrides)
        folder = train / sequence.name
        sequence.save(folder)
        folders.append(folder)
    atomic_write_text(out_dir / STAMP_FILE, json.dumps(_stamp(seed, overrides), indent=2) + "\n")
    return folders


def ensure_benchmark(out_dir, num_sequences: int = 6, seed: int = 0) -> Path:
    """Return ``out_dir/train``, generating the default benchmark first when it is missing or stale.

    Sequences already present from the same generator version and seed are kept; missing ones are added.
    """
    out_dir = Path(out_dir)
    train = out_dir / "train"
    if _read_stamp(out_dir) != _stamp(seed, {}):
        write_benchmark(out_dir, num_sequences, seed)
        return train
    for index in range(1, num_sequences + 1):
        folder = train / sequence_name(index)
        if not _is_complete(folder):
            generate_sequence(index, seed).save(folder)
    return train


def match_detections(sequence: Sequence, iou_threshold: float = 0.5) -> tuple[np.ndarray, np.ndarray]:
    """Match detections to ground-truth boxes frame by frame (Hungarian on IoU, kept when IoU >= threshold).

    Returns boolean masks ``(gt_matched (G,), det_matched (D,))`` in the row order of ``sequence.gt`` and
    ``sequence.detections``.
    """
    gt, det = sequence.gt, sequence.detections
    gt_matched, det_matched = np.zeros(len(gt), bool), np.zeros(len(det), bool)
    gt_rows = split_by_frame(np.column_stack([gt[:, 0], np.arange(len(gt))]), sequence.length)
    det_rows = split_by_frame(np.column_stack([det[:, 0], np.arange(len(det))]), sequence.length)
    for g, d in zip(gt_rows, det_rows):
        g, d = g[:, 0].astype(int), d[:, 0].astype(int)
        if len(g) == 0 or len(d) == 0:
            continue
        pairs = match_iou(gt[g, 2:6], det[d, 2:6], iou_threshold)
        gt_matched[g[pairs[:, 0]]] = True
        det_matched[d[pairs[:, 1]]] = True
    return gt_matched, det_matched


def sequence_stats(sequence: Sequence) -> dict:
    """Summary of a sequence with ground truth: size, identities, rows, and detector quality at IoU 0.5.

    ``fp_fraction`` is the share of detections matching no gt box, ``miss_rate`` the share of gt rows with no
    detection, ``occluded`` the share of gt rows with visibility below 0.5.
    """
    gt_matched, det_matched = match_detections(sequence)
    gt = sequence.gt
    return {
        "name": sequence.name,
        "frames": sequence.length,
        "fps": sequence.frame_rate,
        "size": f"{sequence.im_width}x{sequence.im_height}",
        "ids": len(np.unique(gt[:, 1])),
        "people_per_frame": len(gt) / sequence.length,
        "gt_rows": len(gt),
        "det_rows": len(sequence.detections),
        "fp_fraction": float(1 - det_matched.mean()) if len(det_matched) else 0.0,
        "miss_rate": float(1 - gt_matched.mean()) if len(gt_matched) else 0.0,
        "occluded": float((gt[:, 8] < 0.5).mean()) if len(gt) else 0.0,
    }
