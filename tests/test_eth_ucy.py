"""ETH/UCY walks turned into box trajectories (mixdvae/data/eth_ucy.py) and their place in the prior's data."""

from __future__ import annotations

import math

import numpy as np
import pytest

from mixdvae.data import WalkerParams, walker_trajectories
from mixdvae.data.eth_ucy import (
    DATASETS,
    load_walks,
    read_walks,
    resample,
    rotate,
    scenes_of,
    split_walks,
    walk_windows,
)
from mixdvae.dvae.training import DEFAULT_CONFIG, build_data, merge_config
from mixdvae.errors import DataNotFoundError, InputError
from tests.conftest import REPO

ETH_UCY = REPO.parent / "shared" / "data" / "trajectories" / "eth_ucy"


def write_scene(path, walks: dict[int, list[tuple[int, float, float]]]) -> None:
    """An ETH/UCY file: rows ``frame id x y`` from ``{id: [(frame, x, y), ...]}``, interleaved by frame."""
    rows = sorted((f, pid, x, y) for pid, points in walks.items() for f, x, y in points)
    path.write_text("".join(f"{f}\t{float(pid)}\t{x:.3f}\t{y:.3f}\n" for f, pid, x, y in rows))


def straight(pid_speed: float, frames, start=(0.0, 0.0), heading=0.0):
    """Points of a walk at ``pid_speed`` m/s along ``heading`` on frames of the 25 fps video."""
    f0 = frames[0]
    return [(f, start[0] + pid_speed * (f - f0) / 25 * math.cos(heading),
             start[1] + pid_speed * (f - f0) / 25 * math.sin(heading)) for f in frames]


def test_read_walks_units_gaps_and_order(tmp_path):
    path = tmp_path / "biwi_eth.txt"
    # pedestrian 2: frames 0..90 then a gap (100, 110 missing) and 120..160; pedestrian 5: two points only
    write_scene(path, {2: straight(1.3, [*range(0, 100, 10), *range(120, 170, 10)]), 5: straight(1.0, [0, 10])})
    walks = read_walks(path)
    assert [(w.pedestrian, len(w)) for w in walks] == [(2, 10), (2, 5)]  # split at the gap; too short dropped
    first = walks[0]
    assert first.scene == "biwi_eth"
    np.testing.assert_allclose(np.diff(first.times), 0.4)  # seconds: 10 frames of the 25 fps videos
    assert first.duration == pytest.approx(3.6)
    speed = np.hypot(*np.diff(first.xy, axis=0).T) / np.diff(first.times)
    np.testing.assert_allclose(speed, 1.3, atol=0.01)  # metres per second


def test_read_walks_rejects_bad_rows_naming_file_and_line(tmp_path):
    path = tmp_path / "crowds_zara01.txt"
    path.write_text("0 1 1.0 2.0\n10 1 1.5 nan\n")
    with pytest.raises(InputError, match=r"crowds_zara01.txt:2: expected"):
        read_walks(path)
    path.write_text("0 1 1.0\n")
    with pytest.raises(InputError, match=r":1: expected"):
        read_walks(path)
    with pytest.raises(DataNotFoundError, match="not found"):
        read_walks(tmp_path / "missing.txt")
    with pytest.raises(InputError, match="unknown ETH/UCY"):
        load_walks(tmp_path, ["nowhere"])


def test_datasets_and_scenes():
    assert scenes_of(["eth"]) == ["biwi_eth", "biwi_hotel"]
    assert scenes_of(["ucy", "biwi_hotel"]) == [*DATASETS["ucy"], "biwi_hotel"]
    with pytest.raises(InputError, match="unknown"):
        scenes_of(["mot15"])


def test_resample_keeps_the_annotations_and_the_speed(tmp_path):
    path = tmp_path / "biwi_hotel.txt"
    write_scene(path, {1: straight(1.2, range(0, 200, 10), heading=0.7)})
    walk = read_walks(path)[0]
    for fps in (7.0, 25.0):
        xy = resample(walk, fps)
        assert len(xy) == int(math.floor(walk.duration * fps)) + 1
        speed = np.hypot(*np.diff(xy, axis=0).T) * fps
        np.testing.assert_allclose(speed, 1.2, rtol=5e-3)  # straight and uniform (file rounded to mm)
    xy25 = resample(walk, 25.0)
    np.testing.assert_allclose(xy25[::10], walk.xy, atol=1e-9)  # passes through every annotated point
    rotated = rotate(xy25, 1.0)
    np.testing.assert_allclose(rotated[0], 0.0)
    np.testing.assert_allclose(np.hypot(*rotated.T), np.hypot(*(xy25 - xy25[0]).T))


def test_walk_windows_camera_projection_and_frame_rates(tmp_path):
    path = tmp_path / "students001.txt"
    walks = {pid: straight(1.3, range(0, 400, 10), start=(pid, 0.0), heading=0.3 * pid) for pid in range(1, 21)}
    write_scene(path, walks)
    walks = read_walks(path)
    params = WalkerParams(fps_range=(10.0, 30.0))
    windows = walk_windows(walks, 60, seed=3, params=params)
    again = walk_windows(walks, 60, seed=3, params=params)
    np.testing.assert_array_equal(windows.boxes, again.boxes)  # deterministic given the seed
    assert len(windows) > len(walks)  # several overlapping windows per 15.6 s walk
    assert np.isfinite(windows.boxes).all()
    # full windows, but for a tail kept when the stride (2 s) reaches the window length (60 frames at 30 fps)
    assert windows.lengths.min() >= 10
    np.testing.assert_array_equal(windows.mask, np.arange(60) < windows.lengths[:, None])  # valid prefixes
    assert ((windows.fps >= 10) & (windows.fps <= 30)).all()
    h, w = windows.boxes[..., 3], windows.boxes[..., 2]
    # a 1.5-2 m person 1.5-40 m from a 500-1400 px camera: tens to about two thousand pixels tall
    assert h.min() > 10 and h.max() < 2200
    assert 0.3 < np.median(w / h) < 0.55
    width, height = params.image_size
    cx = windows.boxes[:, 0, 0]
    assert np.all((cx > -0.5 * width) & (cx < 1.5 * width))  # every window starts near the image
    assert np.median(windows.boxes[:, 0, 1]) == pytest.approx(height / 2, rel=0.6)
    # the same walking speed per second at every frame rate: per-frame motion scales as 1 / fps
    step = np.abs(np.diff(windows.boxes[..., 0], axis=1)).mean(1) / h[:, 1:].mean(1)
    slow, fast = windows.fps < 15, windows.fps > 25
    assert slow.any() and fast.any()
    per_second = step * windows.fps
    assert np.median(per_second[slow]) == pytest.approx(np.median(per_second[fast]), rel=0.35)
    assert np.median(step[slow]) > 1.5 * np.median(step[fast])


def test_consecutive_windows_keep_the_tail(tmp_path):
    path = tmp_path / "uni_examples.txt"
    write_scene(path, {1: straight(1.0, range(0, 250, 10))})  # 9.6 s
    windows = walk_windows(read_walks(path), 20, seed=0, params=WalkerParams(fps_range=(10.0, 10.0)),
                           stride_s=None)
    # 97 frames at 10 fps: four full windows and a padded tail of 17
    assert windows.lengths.tolist() == [20, 20, 20, 20, 17]


def test_split_walks_is_by_whole_walks_and_seeded(tmp_path):
    path = tmp_path / "crowds_zara02.txt"
    write_scene(path, {pid: straight(1.0, range(0, 100, 10), start=(pid, 0)) for pid in range(10)})
    walks = read_walks(path)
    train, val = split_walks(walks, 0.3, seed=1)
    assert len(val) == 3 and len(train) == 7
    assert {w.pedestrian for w in train}.isdisjoint({w.pedestrian for w in val})
    assert [w.pedestrian for w in split_walks(walks, 0.3, seed=1)[1]] == [w.pedestrian for w in val]


def test_build_data_mixes_walks_and_excludes_held_out_scenes(tmp_path):
    for scene in ("biwi_eth", "crowds_zara01"):
        write_scene(tmp_path / f"{scene}.txt",
                    {pid: straight(1.3, range(0, 300, 10), start=(pid, 0)) for pid in range(6)})
    config = merge_config(DEFAULT_CONFIG, {
        "data": {"window": 20, "real": {"roots": [], "weight": 0.3},
                 "eth_ucy": {"root": str(tmp_path), "datasets": ["eth", "ucy"], "weight": 0.4, "val_fraction": 0.2},
                 "synthetic": {"piecewise": 10, "walker": 10}},
    })
    data = build_data(config, log=lambda msg: None)
    assert data.walk_scenes == ["biwi_eth", "crowds_zara01"]  # missing scene files are skipped
    assert len(data.train_walks) and len(data.val_walks)
    pools = data.pools(config)
    # no real tracks: their share goes to the other sources in proportion (0.4 : 0.3)
    assert [round(w, 3) for *_, w in pools] == [round(0.4 / 0.7, 3), round(0.3 / 0.7, 3)]
    held_out = build_data(merge_config(config, {"data": {"eth_ucy": {"exclude": ["eth"]}}}), log=lambda msg: None)
    assert held_out.walk_scenes == ["crowds_zara01"]
    assert set(held_out.train_walks.source) == {"crowds_zara01"}


@pytest.mark.skipif(not ETH_UCY.is_dir(), reason="../shared/data/trajectories/eth_ucy not present")
def test_the_shared_files_read_and_project():
    walks = load_walks(ETH_UCY)
    assert set(walks) == set(scenes_of(["eth", "ucy"]))
    assert sum(len(w) for w in walks.values()) > 2000
    windows = walk_windows(walks["biwi_eth"][:50], 60, seed=0)
    assert len(windows) and np.isfinite(windows.boxes).all()


def test_panning_cameras_never_lose_the_person(tmp_path):
    # long windows at low frame rates (up to 12 s) with every camera translating and panning: the pan used to
    # turn some cameras past 90 degrees, throwing boxes several image widths off screen
    path = tmp_path / "students003.txt"
    write_scene(path, {pid: straight(1.4, range(0, 400, 10), start=(pid, 0), heading=0.5 * pid) for pid in range(30)})
    params = WalkerParams(fps_range=(5.0, 7.0), moving_camera_prob=1.0)
    windows = walk_windows(read_walks(path), 60, seed=5, params=params)
    walker = walker_trajectories(300, 60, seed=5, params=params)
    width, height = params.image_size
    for boxes in (windows.boxes, walker.boxes):
        assert np.all(np.abs(boxes[..., 0] / width - 0.5) <= 1.0 + 0.05)
        assert np.all(np.abs(boxes[..., 1] / height - 0.5) <= 1.0 + 0.05)


def test_cv_fit_ignores_impossible_windows(tmp_path):
    from mixdvae.data import BoxWindows
    from mixdvae.dvae.training import PriorData

    rng = np.random.default_rng(0)
    t = np.arange(30)
    boxes = np.zeros((50, 30, 4))
    boxes[..., 0] = 100 + 2.0 * t + rng.normal(0, 0.5, (50, 30))  # 2 px per frame, 100 px tall boxes
    boxes[..., 1], boxes[..., 2], boxes[..., 3] = 200, 40, 100
    good = BoxWindows(boxes, np.ones((50, 30), bool), np.full(50, 25.0))
    wild = good.subset(slice(0, 1))
    wild.boxes[0, 15:, 0] += 1e5  # a box thrown 1000 heights away in one frame
    empty = BoxWindows.concat([])
    clean = PriorData(good, empty, empty, empty, [], []).fit_cv()
    polluted = PriorData(BoxWindows.concat([good, wild]), empty, empty, empty, [], []).fit_cv()
    np.testing.assert_allclose(polluted.r, clean.r, rtol=1e-6)
    assert clean.r[0] < 1e-3  # the observation noise of the clean windows (0.5 px in 100 px boxes)
