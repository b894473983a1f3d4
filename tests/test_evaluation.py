import numpy as np
import pytest

from mixdvae.evaluation import COMBINED, evaluate, guess_benchmark, motmetrics_scores
from mixdvae.mot import Sequence, read_mot_file, write_results
from mixdvae.trackers import KalmanTracker
from tests.conftest import MOT15_SEQUENCES, make_sequence, walk


def perturbed_results(seq: Sequence, seed: int = 0) -> np.ndarray:
    """Ground truth with jitter, dropped rows, an identity swap and false positives: a non-trivial tracker."""
    rng = np.random.default_rng(seed)
    rows = seq.gt[:, :6].copy()
    rows[:, 2:4] += rng.normal(0, 4, size=(len(rows), 2))
    rows = rows[rng.random(len(rows)) > 0.15]
    rows[(rows[:, 0] > 12) & (rows[:, 1] == 1), 1] = 99
    fp = np.array([[f, 50 + f, 300, 300, 30, 80] for f in range(1, seq.length + 1, 3)])
    return np.concatenate([rows, fp])


def test_trackeval_matches_hand_counts(tmp_path):
    seq = make_sequence({1: walk((100, 100), (3, 0), range(1, 21)), 2: walk((400, 200), (-2, 1), range(1, 21))}, 20)
    seq.save(tmp_path / "gt" / seq.name)
    results = seq.gt[:, :6].copy()
    results[results[:, 1] == 2, 1] = 5
    results = results[~((results[:, 1] == 1) & (results[:, 0] > 15))]  # 5 misses
    write_results(tmp_path / "res.txt", np.concatenate([results, [[3, 7, 500, 50, 30, 60]]]))  # one FP
    score = evaluate(tmp_path / "gt", {seq.name: tmp_path / "res.txt"}, "MOT15")[seq.name]
    assert (score["FN"], score["FP"], score["IDSW"]) == (5, 1, 0)
    assert score["MOTA"] == pytest.approx(100 * (1 - 6 / 40))


def test_trackeval_agrees_with_motmetrics_on_synthetic(tmp_path):
    seqs = {}
    for i, start in enumerate([(50, 100), (80, 60)]):
        seq = make_sequence({1: walk(start, (4, 1), range(1, 31)), 2: walk((500, 200), (-5, 0), range(4, 31)),
                             3: walk((200, 300), (0, -2), range(1, 25))}, 30, name=f"TEST-0{i + 1}")
        seq.save(tmp_path / "gt" / seq.name)
        write_results(tmp_path / "res" / f"{seq.name}.txt", perturbed_results(seq, seed=i))
        seqs[seq.name] = (seq.gt, read_mot_file(tmp_path / "res" / f"{seq.name}.txt", "results"))
    te = evaluate(tmp_path / "gt", {n: tmp_path / "res" / f"{n}.txt" for n in seqs}, "MOT15")[COMBINED]
    mm = motmetrics_scores(seqs)
    assert te["IDSW"] > 0 and te["FP"] > 0 and te["FN"] > 0
    for key in ("FP", "FN", "IDSW"):
        assert te[key] == mm[key], key
    assert te["MOTA"] == pytest.approx(mm["MOTA"], abs=1e-6)
    assert te["IDF1"] == pytest.approx(mm["IDF1"], abs=1e-6)


def test_trackeval_agrees_with_motmetrics_on_mot15(mot15_root, tmp_path):
    files, seqs = {}, {}
    for name in MOT15_SEQUENCES:
        seq = Sequence.load(mot15_root / name)
        files[name] = tmp_path / f"{name}.txt"
        write_results(files[name], KalmanTracker().track(seq))
        seqs[name] = (seq.gt, read_mot_file(files[name], "results"))
    te = evaluate(mot15_root, files, "MOT15")[COMBINED]
    mm = motmetrics_scores(seqs)
    assert abs(te["MOTA"] - mm["MOTA"]) < 0.5 and abs(te["IDF1"] - mm["IDF1"]) < 0.5
    assert abs(te["IDSW"] - mm["IDSW"]) <= 3


def test_guess_benchmark():
    assert [guess_benchmark(n) for n in ("MOT17-02-FRCNN", "MOT20-01", "SYNTH-03", "KITTI-17")] == [
        "MOT17", "MOT20", "MOT17", "MOT15"]
