"""The 3-target protocol ("3T", DESIGN.md section 4): building windows and scoring trackers on them.

A 3T window is a tiny MOTChallenge sequence: ``seqinfo.ini``, ``det/det.txt`` holding only the matched public
detections of three ground-truth targets (unlabelled, shuffled within each frame, missing where unmatched)
and ``gt/gt.txt`` holding the three tracks. Trackers run with N = 3 sources initialised from the first frame.

Scoring uses motmetrics over all windows together (one accumulator per window, pooled), through
:func:`mixdvae.evaluation.motmetrics_scores` (which also holds the project's one ``np.asfarray`` shim for
motmetrics 1.4 on NumPy 2): MOTA, MOTP, IDF1, ID switches, MT, ML, FP, FN. MOTP is the mean IoU of matches in
percent, as TrackEval and the MOTChallenge site report it.
"""

from __future__ import annotations

import itertools
import json
from dataclasses import asdict, dataclass
from pathlib import Path

import numpy as np

from mixdvae.boxes import match_iou
from mixdvae.mot import Sequence, atomic_write_text, list_sequences, pedestrian_rows, split_by_frame

MANIFEST = "manifest.json"


@dataclass
class WindowInfo:
    """Where a 3T window comes from: source sequence, first frame (1-based) in it, length, target ids."""

    name: str
    source: str
    start_frame: int
    length: int
    target_ids: list[int]
    coverage: list[float]


def match_frame(dets_xywh: np.ndarray, gt_xywh: np.ndarray, iou_threshold: float) -> np.ndarray:
    """Hungarian assignment on IoU between detections (M, 4) and ground truth (G, 4) of one frame.

    Returns an int array (G,) with the matched detection index of each ground-truth box, -1 when none
    (or when the best assignment has IoU below ``iou_threshold``).
    """
    out = np.full(len(gt_xywh), -1, dtype=int)
    pairs = match_iou(gt_xywh, dets_xywh, iou_threshold)
    out[pairs[:, 0]] = pairs[:, 1]
    return out


def build_windows(
    sequence: Sequence,
    length: int = 60,
    stride: int = 40,
    num_targets: int = 3,
    iou_threshold: float = 0.5,
    min_coverage: float = 0.65,
    max_groups: int = 20,
    head_frames: int = 5,
    seed: int = 0,
) -> list[tuple[Sequence, WindowInfo]]:
    """3T windows of one sequence with ground truth (DESIGN.md section 4).

    For each window of ``length`` frames starting every ``stride`` frames: candidate targets are the
    ground-truth tracks present in every frame; detections are matched to all ground-truth boxes of each
    frame (Hungarian on IoU, IoU >= ``iou_threshold``); a candidate is kept when matched in at least
    ``min_coverage`` of the frames. Up to ``max_groups`` distinct groups of ``num_targets`` kept targets are
    drawn (seeded, without replacement from all combinations); a group is kept only if all its targets have a
    matched detection in each of the first ``head_frames`` frames. Each kept group is one window.
    """
    if sequence.gt is None:
        raise ValueError(f"{sequence.name}: 3T windows need ground truth (gt/gt.txt)")
    rng = np.random.default_rng(seed)
    gt = pedestrian_rows(sequence.gt)
    gt_frames = split_by_frame(gt[:, :6], sequence.length)  # per frame: id, x, y, w, h
    det_frames = split_by_frame(sequence.detections, sequence.length)  # per frame: the 9 other columns
    matches = []  # per frame: {gt id: detection row index}
    for t in range(sequence.length):
        g, d = gt_frames[t], det_frames[t]
        m = match_frame(d[:, 1:5], g[:, 1:5], iou_threshold)
        matches.append({int(i): int(j) for i, j in zip(g[:, 0], m) if j >= 0})
    ids_per_frame = [set(g[:, 0].astype(int).tolist()) for g in gt_frames]
    windows = []
    for start in range(0, sequence.length - length + 1, stride):
        frames = range(start, start + length)
        present = set.intersection(*(ids_per_frame[t] for t in frames))
        coverage = {i: np.mean([i in matches[t] for t in frames]) for i in sorted(present)}
        kept = [i for i, c in coverage.items() if c >= min_coverage]
        groups = list(itertools.combinations(kept, num_targets))
        if not groups:
            continue
        order = rng.permutation(len(groups))[:max_groups]
        for group_no, gi in enumerate(order):
            group = groups[gi]
            head = range(start, start + min(head_frames, length))
            if not all(i in matches[t] for t in head for i in group):
                continue
            name = f"{sequence.name}-f{start + 1:04d}-g{group_no:02d}"
            windows.append((_window_sequence(sequence, name, start, length, group, matches, det_frames,
                                             gt_frames, rng),
                            WindowInfo(name, sequence.name, start + 1, length, [int(i) for i in group],
                                       [float(coverage[i]) for i in group])))
    return windows


def _window_sequence(sequence, name, start, length, group, matches, det_frames, gt_frames, rng) -> Sequence:
    det_rows, gt_rows = [], []
    for k, t in enumerate(range(start, start + length)):
        picked = [det_frames[t][matches[t][i]] for i in group if i in matches[t]]
        for j in rng.permutation(len(picked)):
            det_rows.append(np.concatenate([[k + 1], picked[j]]))
        g = gt_frames[t]
        for i in group:
            row = g[g[:, 0] == i][0]
            gt_rows.append([k + 1, i, *row[1:5], 1, 1, 1, -1])
    dets = np.array(det_rows, dtype=float).reshape(-1, 10)
    dets[:, 1] = -1
    gt = np.array(gt_rows, dtype=float).reshape(-1, 10)
    return Sequence(name, sequence.frame_rate, sequence.im_width, sequence.im_height, length, dets, gt)


def save_windows(windows: list[tuple[Sequence, WindowInfo]], out: str | Path, extra: dict | None = None) -> Path:
    """Write every window as a MOTChallenge sequence folder under ``out`` plus ``out/manifest.json``."""
    out = Path(out)
    for seq, _ in windows:
        seq.save(out / seq.name)
    manifest = dict(extra or {})
    manifest["windows"] = [asdict(info) for _, info in windows]
    atomic_write_text(out / MANIFEST, json.dumps(manifest, indent=1) + "\n")
    return out / MANIFEST


def load_windows(folder: str | Path) -> list[Sequence]:
    """Every window sequence (folders with seqinfo.ini) in ``folder``, sorted by name."""
    folder = Path(folder)
    names = list_sequences(folder)
    if not names:
        raise FileNotFoundError(f"no window sequences (folders with seqinfo.ini) in {folder}; build them with "
                                "tools/make_3t.py")
    return [Sequence.load(folder / name) for name in names]


# -- scoring -----------------------------------------------------------------------------------------------

def score(gts: list[np.ndarray], results: list[np.ndarray], lengths: list[int] | None = None) -> dict:
    """Scores of all windows together (motmetrics, IoU >= 0.5): MOTA, MOTP, IDF1 in percent; IDSW, MT, ML, FP,
    FN as counts; ``windows``. ``lengths`` is accepted for symmetry with the window list and unused."""
    from mixdvae.evaluation import motmetrics_scores  # holds the project's np.asfarray shim for motmetrics

    sequences = {f"w{i:05d}": (np.asarray(g, float), np.asarray(r, float).reshape(-1, 6))
                 for i, (g, r) in enumerate(zip(gts, results))}
    scores = motmetrics_scores(sequences)
    scores["windows"] = len(sequences)
    return scores


# -- synthetic windows ----------------------------------------------------------------------------------------

def synthetic_window(
    seed: int,
    length: int = 60,
    num_targets: int = 3,
    size: tuple[int, int] = (640, 480),
    miss_rate: float = 0.1,
    noise: float = 0.04,
    crossing: bool = True,
    name: str | None = None,
) -> Sequence:
    """A deterministic synthetic 3T-style window: walking pedestrians (smooth velocity, slowly varying size)
    observed with size-proportional noise and missed detections, never in the first 5 frames. With
    ``crossing`` the targets walk across each other. Ground truth holds the true boxes (ids 1..N)."""
    rng = np.random.default_rng(seed)
    W, H = size
    gt_rows, det_rows = [], []
    for n in range(num_targets):
        h = rng.uniform(0.25, 0.45) * H
        w = h * rng.uniform(0.35, 0.45)
        cy = H * rng.uniform(0.45, 0.6)
        if crossing:
            left = n % 2 == 0
            cx = W * (0.2 + 0.15 * rng.random()) if left else W * (0.8 - 0.15 * rng.random())
            vx = (1 if left else -1) * rng.uniform(0.008, 0.02) * h
        else:
            cx = W * (0.2 + 0.6 * n / max(num_targets - 1, 1))
            vx = rng.uniform(-0.01, 0.01) * h
        vy = rng.uniform(-0.002, 0.002) * h
        for t in range(length):
            vx += rng.normal(0, 0.0008) * h
            vy += rng.normal(0, 0.0004) * h
            cx, cy = cx + vx, cy + vy
            h *= 1 + rng.normal(0, 0.002)
            w = h * 0.4
            gt_rows.append([t + 1, n + 1, cx - w / 2, cy - h / 2, w, h, 1, 1, 1, -1])
            if t < 5 or rng.random() >= miss_rate:
                d = np.array([cx, cy, w, h]) + rng.normal(0, noise, 4) * np.array([w, h, w, h])
                d[2:] = np.maximum(d[2:], 2.0)
                det_rows.append([t + 1, -1, d[0] - d[2] / 2, d[1] - d[3] / 2, d[2], d[3], 1, -1, -1, -1])
    dets = np.array(det_rows, dtype=float)
    perm = rng.permutation(len(dets))
    dets = dets[perm][np.argsort(dets[perm, 0], kind="stable")]  # shuffled within each frame
    gt = np.array(gt_rows, dtype=float)
    return Sequence(name or f"SYN3T-{seed:04d}", 25.0, W, H, length, dets, gt)
