"""Trajectory plots and annotated frames (mixdvae.plotting and tools/plot_tracks.py) on a tiny synthetic sequence."""

from __future__ import annotations

import cv2
import numpy as np
import pytest

from mixdvae.mot import pedestrian_rows, write_results
from mixdvae.plotting import plot_trajectories, track_point
from mixdvae.synthetic import generate_sequence
from tests.tools_loader import load_tool

PNG_MAGIC = b"\x89PNG\r\n\x1a\n"


@pytest.fixture(scope="module")
def sequence():
    return generate_sequence(1, seed=0, length=12)


def test_plot_trajectories_writes_a_png(tmp_path, sequence):
    out = plot_trajectories({"ground truth": sequence.gt}, tmp_path / "plots" / "gt.png", sequence.name,
                            sequence.image_size)
    data = out.read_bytes()
    assert data.startswith(PNG_MAGIC) and len(data) > 1000
    assert [p.name for p in out.parent.iterdir()] == ["gt.png"]  # no temporary file left behind


def test_track_points_and_pedestrian_filter():
    rows = np.array([[1, 1, 10, 20, 4, 8, 1, 1, 1], [1, 2, 0, 0, 2, 2, 0, 1, 1], [1, 3, 0, 0, 2, 2, 1, 7, 1]], float)
    np.testing.assert_allclose(track_point(rows[:1], "foot"), [[12, 28]])
    np.testing.assert_allclose(track_point(rows[:1], "centre"), [[12, 24]])
    assert pedestrian_rows(rows)[:, 1].tolist() == [1]  # flag 0 and class 7 (static person) dropped


def test_tool_plots_results_and_gt_and_draws_frames(tmp_path, sequence):
    folder = tmp_path / "train" / sequence.name
    sequence.save(folder)
    (folder / "img1").mkdir()
    for frame in (1, 2, 3):
        cv2.imwrite(str(folder / "img1" / f"{frame:06d}.jpg"), np.zeros((sequence.im_height, sequence.im_width, 3)))
    results = tmp_path / "res" / f"{sequence.name}.txt"
    write_results(results, sequence.gt[:, :6])
    frames_out = tmp_path / "frames"
    code = load_tool("plot_tracks").main(["--data-root", str(tmp_path / "train"), "--seq", sequence.name, "--results",
                             str(results), "--gt", "--frames-out", str(frames_out)])
    assert code == 0
    assert results.with_suffix(".png").read_bytes().startswith(PNG_MAGIC)
    assert sorted(p.name for p in frames_out.iterdir()) == ["000001.jpg", "000002.jpg", "000003.jpg"]
    drawn = cv2.imread(str(frames_out / "000001.jpg"))
    assert drawn is not None and drawn.max() > 0  # boxes were drawn on the black frame


def test_tool_needs_something_to_plot(tmp_path):
    with pytest.raises(SystemExit):
        load_tool("plot_tracks").main(["--data-root", str(tmp_path), "--seq", "SYNTH-01"])
