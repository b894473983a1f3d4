"""The 3-target protocol: window building, files, scoring, and the make_3t / eval_3t tools."""

from __future__ import annotations

import json

import numpy as np
import pytest

from mixdvae.mot import Sequence, pedestrian_rows
from mixdvae.threet import build_windows, load_windows, save_windows, score, synthetic_window
from tests.conftest import make_sequence, walk
from tests.tools_loader import load_tool


def five_people(length=50):
    """Five walkers; person 5 is detected only in the first half (coverage 50%), person 4 is missed in
    frame 2 (fails the first-five-frames rule), the others always; plus one false positive per frame."""
    tracks = {
        1: walk((50, 100), (2, 0), range(1, length + 1)),
        2: walk((300, 120), (-1, 0.5), range(1, length + 1)),
        3: walk((500, 80), (0, 1), range(1, length + 1)),
        4: walk((150, 300), (1, -1), range(1, length + 1)),
        5: walk((400, 300), (0, 0), range(1, length + 1)),
    }
    dets = []
    for tid, rows in tracks.items():
        for f, x, y, w, h in rows:
            if (tid == 4 and f == 2) or (tid == 5 and f > length // 2):
                continue
            dets.append((f, x + 1, y - 1, w, h, 0.9))
    dets += [(f, 600, 400, 20, 40, 0.5) for f in range(1, length + 1)]
    return make_sequence(tracks, length, dets)


def test_windows_follow_the_protocol():
    seq = five_people()
    windows = build_windows(seq, length=20, stride=10, max_groups=20, seed=0)
    starts = sorted({info.start_frame for _, info in windows})
    assert starts == [1, 11, 21, 31]
    for win, info in windows:
        assert win.length == 20 and len(info.target_ids) == 3
        ids = set(info.target_ids)
        if info.start_frame == 1:
            assert 4 not in ids  # missed in frame 2 of this window
        assert 5 not in ids or info.start_frame <= 11  # coverage below 65% later on
        assert set(np.unique(win.gt[:, 1]).astype(int)) == ids
        assert len(win.gt) == 60
        # only the targets' matched detections: no false positive, three per frame here
        assert len(win.detections) <= 60 and not np.any(win.detections[:, 2] == 600)
        counts = np.bincount(win.detections[:, 0].astype(int), minlength=21)[1:]
        assert counts.max() <= 3 and counts[:5].min() == 3
    # the first window's groups are the three-subsets of {1, 2, 3, 5}
    first = sorted(tuple(sorted(i.target_ids)) for _, i in windows if i.start_frame == 1)
    assert first == [(1, 2, 3), (1, 2, 5), (1, 3, 5), (2, 3, 5)]


def test_windows_are_deterministic_and_shuffled():
    seq = five_people()
    a = build_windows(seq, length=20, stride=10, seed=3)
    b = build_windows(seq, length=20, stride=10, seed=3)
    assert [i.name for _, i in a] == [i.name for _, i in b]
    for (wa, _), (wb, _) in zip(a, b):
        np.testing.assert_array_equal(wa.detections, wb.detections)
    # detections in a frame are not in target order everywhere
    orders = []
    for win, _ in a:
        for f in range(1, 21):
            d = win.frame_detections(f)
            if len(d) == 3:
                orders.append(tuple(np.argsort(d[:, 0])))
    assert len(set(orders)) > 1


def test_pedestrian_rows_handles_mot15_and_mot17_columns():
    mot15 = np.array([[1, 1, 0, 0, 10, 10, 1, -5.0, 11.9, 0.7], [1, 2, 0, 0, 10, 10, 0, 2.0, 3.0, 0.5]])
    mot17 = np.array([[1, 1, 0, 0, 10, 10, 1, 1, 0.8, -1], [1, 2, 0, 0, 10, 10, 1, 7, 1.0, -1],
                      [1, 3, 0, 0, 10, 10, 0, 1, 1.0, -1]])
    assert pedestrian_rows(mot15)[:, 1].tolist() == [1]  # world coordinates are not classes
    assert pedestrian_rows(mot17)[:, 1].tolist() == [1]  # static person (7) and zero-marked rows dropped


def test_save_and_load_round_trip(tmp_path):
    windows = build_windows(five_people(), length=20, stride=20)
    save_windows(windows, tmp_path, {"settings": {"length": 20}})
    loaded = load_windows(tmp_path)
    assert [w.name for w in loaded] == sorted(i.name for _, i in windows)
    manifest = json.loads((tmp_path / "manifest.json").read_text())
    assert len(manifest["windows"]) == len(windows) and manifest["settings"]["length"] == 20
    with pytest.raises(FileNotFoundError):
        load_windows(tmp_path / "nothing")


def test_score_pools_windows():
    a, b = synthetic_window(0, length=20), synthetic_window(1, length=20)
    perfect = score([a.gt, b.gt], [a.gt[:, :6], b.gt[:, :6]])
    assert perfect["MOTA"] == 100 and perfect["IDSW"] == 0 and perfect["windows"] == 2
    swapped = a.gt[:, :6].copy()
    late = swapped[:, 0] > 10
    swapped[late & (swapped[:, 1] == 1), 1] = 2
    swapped[late & (a.gt[:, 1] == 2), 1] = 1
    s = score([a.gt, b.gt], [swapped, b.gt[:, :6]])
    assert s["IDSW"] == 2 and s["FP"] == 0 and s["IDF1"] < 100


def test_make_and_eval_tools(tmp_path):
    data = tmp_path / "data"
    for i in range(2):
        five_people().save(data / f"TEST-0{i + 1}")
    make = load_tool("make_3t")
    assert make.main(["--data-root", str(data), "--length", "20", "--stride", "20", "--out", str(tmp_path / "w")]) == 0
    evaluate = load_tool("eval_3t")
    out_json = tmp_path / "s.json"
    code = evaluate.main(["--windows", str(tmp_path / "w"), "--tracker", "vkf", "--batch", "3",
                          "--out", str(tmp_path / "res"), "--json", str(out_json)])
    assert code == 0
    payload = json.loads(out_json.read_text())
    assert set(payload) >= {"windows", "MOTA", "MOTP", "IDF1", "IDSW", "FP", "FN", "seconds_per_window"}
    assert payload["windows"] == len(load_windows(tmp_path / "w")) and payload["MOTA"] > 90
    assert len(list((tmp_path / "res").glob("*.txt"))) == payload["windows"]
    assert evaluate.main(["--windows", str(tmp_path / "none"), "--tracker", "vkf"]) == 3
    assert evaluate.main(["--windows", str(tmp_path / "w"), "--tracker", "nope"]) == 2


def test_mot15_windows(mot15_root):
    total = 0
    for name in ("TUD-Stadtmitte", "ETH-Sunnyday", "KITTI-17", "TUD-Campus"):
        total += len(build_windows(Sequence.load(mot15_root / name), length=60, stride=10))
    assert total == 20


def test_benchmark_tool_on_a_folder(tmp_path):
    data = tmp_path / "data"
    for i in range(2):
        five_people().save(data / f"TEST-0{i + 1}")
    bench = load_tool("benchmark_3t")
    out = tmp_path / "bench.json"
    code = bench.main(["--sets", f"{data}:20:20", "--trackers", "vkf", "gmm", "kalman", "--batches", "1", "4",
                       "--repeats", "1", "--json", str(out), "--md", str(tmp_path / "bench.md")])
    assert code == 0
    rows = json.loads(out.read_text())["rows"]
    assert [r["tracker"] for r in rows] == ["vkf", "gmm", "kalman"]
    for r in rows:
        assert r["windows"] > 0 and r["s_per_window_b1"] > 0 and r["windows_per_s_b4"] > 0
    assert "| vkf |" in (tmp_path / "bench.md").read_text()
