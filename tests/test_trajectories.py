"""Trajectory data: tracks from ground truth, windows, normalisation, synthetic generators' statistics."""

from __future__ import annotations

import math
from pathlib import Path

import numpy as np
import pytest

from mixdvae.data import (
    PIECE_KINDS,
    BoxWindows,
    load_mot_tracks,
    piecewise_axis,
    piecewise_trajectories,
    real_windows,
    split_tracks,
    subsample,
    tracks_from_gt,
    walker_trajectories,
    windows_from_tracks,
)

MOT15 = Path(__file__).resolve().parents[1].parent / "shared" / "data" / "MOT15" / "train"


def gt_rows(rows):
    """(frame, id, x, y, w, h) -> 10-column MOT15-style rows."""
    rows = np.asarray(rows, dtype=float)
    return np.concatenate([rows, np.ones((len(rows), 1)), -np.ones((len(rows), 3))], axis=1)


def test_tracks_split_at_gaps_sorted_and_deduplicated():
    gt = gt_rows(
        [
            [3, 7, 0, 0, 10, 20],
            [1, 7, 0, 0, 10, 20],
            [2, 7, 1, 0, 10, 20],
            [2, 7, 9, 9, 10, 20],  # duplicate frame: the first row wins
            [6, 7, 5, 0, 10, 20],  # gap: new track piece
            [7, 7, 6, 0, 10, 20],
            [1, 9, 0, 0, 4, 8],  # too short
        ]
    )
    tracks = tracks_from_gt(gt, "S", fps=10, min_length=2)
    assert [(t.track_id, t.first_frame, len(t)) for t in tracks] == [(7, 1, 3), (7, 6, 2)]
    np.testing.assert_allclose(tracks[0].boxes[1], [6, 10, 10, 20])  # x + w/2, y + h/2
    assert tracks[0].fps == 10 and tracks[0].sequence == "S"


def test_class_filter_only_for_mot17_style_files():
    mot17 = gt_rows([[1, 1, 0, 0, 5, 10], [2, 1, 1, 0, 5, 10], [1, 2, 0, 0, 5, 10], [2, 2, 1, 0, 5, 10]])
    mot17[:, 7] = [1, 1, 3, 3]  # pedestrian, car
    mot17[:, 8] = 0.8  # visibility
    assert [t.track_id for t in tracks_from_gt(mot17)] == [1]
    mot15 = mot17.copy()
    mot15[:, 7:] = [[4.48, 5.5, 0]] * 4  # MOT15 world coordinates, not classes
    assert [t.track_id for t in tracks_from_gt(mot15)] == [1, 2]
    assert tracks_from_gt(np.zeros((0, 10))) == []


def test_windows_padding_and_normalisation():
    boxes = np.cumsum(np.ones((13, 4)), axis=0) + [100, 50, 20, 60]
    tracks = tracks_from_gt(
        gt_rows(np.column_stack([np.arange(1, 14), np.ones(13), boxes[:, 0], boxes[:, 1], boxes[:, 2], boxes[:, 3]])),
        fps=25
    )
    chunks = windows_from_tracks(tracks, length=5, min_length=3)  # 5 + 5 + 3 boxes
    assert len(chunks) == 3 and chunks.lengths.tolist() == [5, 5, 3]
    np.testing.assert_array_equal(chunks.boxes[2, 3], chunks.boxes[2, 2])  # padded with the last box
    sliding = windows_from_tracks(tracks, length=5, stride=4, min_length=3)
    assert sliding.lengths.tolist() == [5, 5, 5]  # starts 0, 4, 8 (= 13 - 5: already ends with the track)
    assert len(windows_from_tracks(tracks, length=5, stride=3)) == 4  # starts 0, 3, 6 and the end-aligned 8
    x = chunks.to_model()
    first = chunks.boxes[:, 0]
    expected = np.column_stack([np.zeros(3), np.zeros(3), first[:, 2] / first[:, 3], np.ones(3)])
    np.testing.assert_allclose(x[:, 0], expected, rtol=1e-6)
    # translation and scale invariance of the model coordinates
    moved = BoxWindows(chunks.boxes * [3, 3, 3, 3] + [500, -20, 0, 0], chunks.mask, chunks.fps)
    np.testing.assert_allclose(moved.to_model(), x, rtol=1e-5, atol=1e-6)
    flipped = chunks.flipped().to_model()
    np.testing.assert_allclose(flipped[..., 0], -x[..., 0], atol=1e-6)
    np.testing.assert_allclose(flipped[..., 1:], x[..., 1:], atol=1e-6)


def test_subsample_split_and_augmentations():
    track = tracks_from_gt(gt_rows([[f, 1, f, 0, 5, 10] for f in range(1, 21)]), fps=30)[0]
    half = subsample(track, 2, 1)
    assert len(half) == 10 and half.fps == 15 and half.first_frame == 2
    windows = real_windows([track], length=8, stride=4, flip=True, subsample_min_fps=20)
    plain = windows_from_tracks([track], 8, 4)
    halves = windows_from_tracks([subsample(track, 2, 0), subsample(track, 2, 1)], 8, 4)
    assert len(windows) == 2 * (len(plain) + len(halves))
    tracks = [tracks_from_gt(gt_rows([[f, i, 0, 0, 5, 10] for f in range(1, 11)]))[0] for i in range(10)]
    a, b = split_tracks(tracks, 0.3, seed=0)
    assert len(a) + len(b) == 10 and len(b) == 3


def test_piecewise_generator_statistics():
    windows, info = piecewise_trajectories(1500, length=50, seed=0, return_info=True)
    assert windows.boxes.shape == (1500, 50, 4) and windows.mask.all()
    assert np.isfinite(windows.boxes).all() and (windows.boxes[..., 2:] > 0).all()
    log_w = np.log(info.width)
    assert abs(log_w.mean() - math.log(60)) < 0.05 and abs(log_w.std() - 0.5) < 0.05  # log-normal width
    ratio = info.height / info.width
    assert abs(np.median(ratio) - 5.0) < 0.1  # height about 5 times the width
    counts = np.array([len(k[0]) for k in info.kinds] + [len(k[1]) for k in info.kinds])
    assert set(counts) == {1, 2, 3} and min(np.bincount(counts)[1:]) > 0.25 * len(counts)
    kinds = [kind for k in info.kinds for axis in k for kind in axis]
    freq = {kind: kinds.count(kind) / len(kinds) for kind in PIECE_KINDS}
    assert all(abs(f - 0.25) < 0.03 for f in freq.values())
    assert 10 <= windows.fps.min() and windows.fps.max() <= 30
    # deterministic given the seed
    once, again = piecewise_trajectories(5, 20, seed=3), piecewise_trajectories(5, 20, seed=3)
    np.testing.assert_array_equal(once.boxes, again.boxes)


def test_piecewise_axis_is_continuous_and_follows_its_kind():
    rng = np.random.default_rng(1)
    t = np.arange(40) / 20.0
    for _ in range(50):
        pos, kinds = piecewise_axis(t, rng, speed=1.0, accel=0.5, amplitude=0.5)
        assert pos[0] == 0 and 1 <= len(kinds) <= 3
        assert np.abs(np.diff(pos)).max() < 0.25  # no jumps: at most speed/fps plus curvature
    pos, kinds = piecewise_axis(t, np.random.default_rng(0), max_pieces=1, kinds=("linear",))
    assert kinds == ["linear"]
    np.testing.assert_allclose(np.diff(pos, 2), 0, atol=1e-12)
    pos, _ = piecewise_axis(t, np.random.default_rng(0), max_pieces=1, kinds=("parabolic",))
    np.testing.assert_allclose(np.diff(pos, 3), 0, atol=1e-12)
    pos, _ = piecewise_axis(t, np.random.default_rng(0), max_pieces=1, kinds=("static",))
    assert (pos == 0).all()


def test_walker_statistics():
    windows = walker_trajectories(400, length=40, seed=0)
    boxes = windows.boxes
    assert boxes.shape == (400, 40, 4) and np.isfinite(boxes).all() and (boxes[..., 2:] > 0).all()
    aspect = np.median(boxes[..., 2] / boxes[..., 3])
    assert 0.37 < aspect < 0.47  # pedestrian boxes
    x = windows.to_model()
    # median speed of the centre, in box heights per second: a walking adult is about 0.5-1 height/s
    speed = np.median(np.abs(np.diff(x[..., 0], axis=1)).mean(1) * windows.fps)
    assert 0.2 < speed < 1.5
    static = (np.abs(x[:, -1, 0] - x[:, 0, 0]) < 0.1).mean()
    assert 0.02 < static < 0.4  # some people stand or stop
    np.testing.assert_array_equal(walker_trajectories(3, 10, seed=5).boxes, walker_trajectories(3, 10, seed=5).boxes)


@pytest.mark.skipif(not MOT15.is_dir(), reason=f"MOT15 ground truth not available at {MOT15}")
def test_mot15_tracks():
    tracks = load_mot_tracks(MOT15)
    assert sorted(tracks) == ["ETH-Sunnyday", "KITTI-17", "TUD-Campus", "TUD-Stadtmitte"]
    assert {name: len(seq) for name, seq in tracks.items()} == {
        "ETH-Sunnyday": 30, "KITTI-17": 9, "TUD-Campus": 8, "TUD-Stadtmitte": 10,
    }
    assert sum(len(t) for seq in tracks.values() for t in seq) == 359 + 1156 + 1901 + 782
    assert tracks["KITTI-17"][0].fps == 10
    windows = windows_from_tracks(tracks["TUD-Campus"], 60)
    assert windows.mask.sum() == sum(len(t) for t in tracks["TUD-Campus"] if len(t) >= 3)
    assert load_mot_tracks(MOT15, exclude=["KITTI-17"]).keys() == {"ETH-Sunnyday", "TUD-Campus", "TUD-Stadtmitte"}


def test_missing_root_gives_no_tracks(tmp_path):
    assert load_mot_tracks(tmp_path / "absent") == {}
