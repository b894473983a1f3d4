"""The synthetic MOTChallenge benchmark: determinism, file layout and the statistics that make it realistic."""

from __future__ import annotations

import numpy as np
import pytest

from mixdvae.mot import Sequence, list_sequences
from mixdvae.synthetic import (
    FRAME_RATES,
    IMAGE_SIZES,
    STAMP_FILE,
    Camera,
    WalkArea,
    _rng,
    draw_params,
    ensure_benchmark,
    generate_sequence,
    match_detections,
    occlusion_visibility,
    pan_angles,
    simulate_walkers,
    write_benchmark,
)

SHORT = 150  # frames: enough for statistics, fast to generate


@pytest.fixture(scope="module")
def sequences() -> list[Sequence]:
    return [generate_sequence(index, seed=0, length=SHORT) for index in range(1, 5)]


def test_same_seed_same_arrays_and_different_seed_differs():
    first, again = generate_sequence(2, seed=7, length=60), generate_sequence(2, seed=7, length=60)
    np.testing.assert_array_equal(first.gt, again.gt)
    np.testing.assert_array_equal(first.detections, again.detections)
    other = generate_sequence(2, seed=8, length=60)
    assert other.gt.shape != first.gt.shape or not np.array_equal(other.gt, first.gt)


def test_files_round_trip_and_each_sequence_is_reproducible_alone(tmp_path):
    folders = write_benchmark(tmp_path / "a", num_sequences=3, seed=5, length=40)
    write_benchmark(tmp_path / "b", num_sequences=3, seed=5, length=40)
    assert [f.name for f in folders] == ["SYNTH-01", "SYNTH-02", "SYNTH-03"]
    assert list_sequences(tmp_path / "a" / "train") == ["SYNTH-01", "SYNTH-02", "SYNTH-03"]
    for folder in folders:
        for name in ("seqinfo.ini", "det/det.txt", "gt/gt.txt"):
            assert (folder / name).read_bytes() == (tmp_path / "b" / "train" / folder.name / name).read_bytes()
    loaded = Sequence.load(folders[2])
    alone = generate_sequence(3, seed=5, length=40)
    np.testing.assert_array_equal(loaded.gt, alone.gt)
    np.testing.assert_array_equal(loaded.detections, alone.detections)
    assert (loaded.name, loaded.length, loaded.frame_rate) == (alone.name, alone.length, alone.frame_rate)
    assert loaded.image_size == alone.image_size


def test_ensure_benchmark_generates_only_when_missing_or_stale(tmp_path):
    train = ensure_benchmark(tmp_path, num_sequences=1)
    det = train / "SYNTH-01" / "det" / "det.txt"
    assert train == tmp_path / "train" and det.is_file() and (tmp_path / STAMP_FILE).is_file()
    det.write_text("kept\n")
    ensure_benchmark(tmp_path, num_sequences=1)
    assert det.read_text() == "kept\n"  # complete and same seed: untouched
    ensure_benchmark(tmp_path, num_sequences=1, seed=1)
    assert det.read_text() != "kept\n"  # another seed: regenerated


def test_unknown_override_is_an_error():
    with pytest.raises(TypeError):
        generate_sequence(1, length=10, no_such_field=3)


def test_gt_and_det_columns_follow_mot17(sequences):
    for seq in sequences:
        gt, det = seq.gt, seq.detections
        assert np.all(gt[:, 6] == 1) and np.all(gt[:, 7] == 1)
        assert np.all((gt[:, 8] >= 0) & (gt[:, 8] <= 1))
        x1, y1, x2, y2 = gt[:, 2], gt[:, 3], gt[:, 2] + gt[:, 4], gt[:, 3] + gt[:, 5]
        assert np.all((x2 > 0) & (x1 < seq.im_width) & (y2 > 0) & (y1 < seq.im_height))  # partly inside
        assert np.all(det[:, 1] == -1) and np.all(det[:, 7:] == -1)
        assert np.all((det[:, 6] > 0) & (det[:, 6] <= 1))
        frames = np.concatenate([gt[:, 0], det[:, 0]])
        assert frames.min() >= 1 and frames.max() <= seq.length


def test_occlusions_exist_and_misses_rise_with_occlusion(sequences):
    visibility = np.concatenate([seq.gt[:, 8] for seq in sequences])
    matched = np.concatenate([match_detections(seq)[0] for seq in sequences])
    assert (visibility < 0.5).mean() > 0.03
    low, high = visibility < 0.3, visibility > 0.8
    assert 1 - matched[low].mean() > 0.8  # almost always missed
    assert 1 - matched[high].mean() < 0.25


def test_false_positives_present_with_lower_scores(sequences):
    for seq in sequences:
        det_matched = match_detections(seq)[1]
        assert 0.02 < 1 - det_matched.mean() < 0.6
        scores = seq.detections[:, 6]
        assert scores[~det_matched].mean() < scores[det_matched].mean()


def test_identities_enter_and_leave(sequences):
    entered = left = 0
    for seq in sequences:
        ids = seq.gt[:, 1]
        first = np.array([seq.gt[ids == i, 0].min() for i in np.unique(ids)])
        last = np.array([seq.gt[ids == i, 0].max() for i in np.unique(ids)])
        entered, left = entered + np.sum(first > 1), left + np.sum(last < seq.length)
    assert entered >= 4 and left >= 4  # 150 frames are 5-11 s: a few people cross the view's border


def test_scene_parameters_vary_and_some_cameras_pan():
    params = [draw_params(index) for index in range(1, 7)]
    assert all(p.frame_rate in FRAME_RATES and 14 <= p.frame_rate <= 30 for p in params)
    assert all((p.im_width, p.im_height) in IMAGE_SIZES for p in params)
    assert all(300 <= p.length <= 600 for p in params)
    panning = [p for p in params if p.pan_amplitude > 0]
    assert panning and len(panning) < len(params)
    assert np.ptp(np.degrees(pan_angles(panning[0]))) > 1.0


def test_box_height_grows_with_foot_y(sequences):
    for seq in sequences:
        gt = seq.gt
        inside = (gt[:, 3] >= 0) & (gt[:, 3] + gt[:, 5] <= seq.im_height)
        foot_y, height = gt[inside, 3] + gt[inside, 5], gt[inside, 5]
        assert np.corrcoef(foot_y, height)[0, 1] > 0.5


def test_walkers_keep_pedestrian_speeds_and_stop():
    params = draw_params(1, length=400, stop_rate=0.1)
    camera = Camera.from_params(params)
    rows = simulate_walkers(params, camera, WalkArea.around(camera, params), _rng(0, 1, 1))
    order = np.lexsort((rows[:, 0], rows[:, 1]))
    rows = rows[order]
    same = rows[1:, 1] == rows[:-1, 1]
    speed = np.linalg.norm(np.diff(rows[:, 2:4], axis=0), axis=1)[same] * params.frame_rate  # m/s
    assert 0.8 <= np.median(speed) <= 1.8
    assert speed.max() < 2.5
    assert (speed < 0.1).mean() > 0.02  # stops


def test_visibility_is_the_uncovered_fraction():
    boxes = np.array([[0, 0, 10, 10], [5, 0, 10, 10], [5, 5, 10, 10], [100, 100, 5, 5]], dtype=float)
    depth = np.array([3.0, 2.0, 1.0, 0.5])  # box 2 is the nearest of the overlapping ones
    visibility = occlusion_visibility(boxes, depth)
    # box 0: right half under box 1, and box 2's overlap lies inside that half (no double count)
    np.testing.assert_allclose(visibility, [0.5, 0.5, 1.0, 1.0])
