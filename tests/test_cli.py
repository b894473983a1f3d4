"""What every tool shares (mixdvae.cli, mixdvae.errors): one-line errors with their exit codes, parallel runs."""

import json
import shutil

import numpy as np
import pytest

from mixdvae.mot import read_mot_file
from tests.conftest import make_sequence, walk
from tests.tools_loader import load_tool


@pytest.fixture
def data_root(tmp_path):
    root = tmp_path / "data"
    for index, (start, velocity) in enumerate([((100, 100), (3, 0)), ((400, 200), (-2, 1)), ((50, 300), (4, -1))]):
        tracks = {1: walk(start, velocity, range(1, 31)), 2: walk((300, 50), (0, 2), range(1, 31))}
        make_sequence(tracks, 30, name=f"TEST-0{index + 1}").save(root / f"TEST-0{index + 1}")
    return root


def results_folder(data_root, tmp_path, names=("TEST-01",)):
    results = tmp_path / "res"
    results.mkdir()
    for name in names:
        shutil.copy(data_root / name / "gt" / "gt.txt", results / f"{name}.txt")
    return results


def test_eval_skips_result_files_of_another_benchmark(data_root, tmp_path, capsys):
    results = results_folder(data_root, tmp_path)
    (results / "MOT17-02-FRCNN.txt").write_text("1,1,10,10,20,40,1,-1,-1,-1\n")
    js = tmp_path / "e.json"
    assert load_tool("eval").main(["--data-root", str(data_root), "--results", str(results), "--json", str(js)]) == 0
    assert "skipping 1 result file(s)" in capsys.readouterr().err
    assert set(json.loads(js.read_text())) == {"TEST-01", "COMBINED"}
    named = ["--data-root", str(data_root), "--results", str(results), "--seq", "MOT17-02-FRCNN"]
    assert load_tool("eval").main(named) == 3  # asked for by name: its sequence must exist


def test_eval_maps_trackeval_errors_to_a_message_and_exit_4(data_root, tmp_path, capsys):
    results = results_folder(data_root, tmp_path)
    rows = (results / "TEST-01.txt").read_text().splitlines()
    (results / "TEST-01.txt").write_text("\n".join(rows + [rows[0]]) + "\n")  # the same id twice in frame 1
    assert load_tool("eval").main(["--data-root", str(data_root), "--results", str(results)]) == 4
    err = capsys.readouterr().err
    assert "TrackEval" in err and "TEST-01" in err and "Traceback" not in err
    assert len(err.strip().splitlines()) == 1


@pytest.mark.parametrize("content", [b"", b"garbage, not a checkpoint" * 10, None])
def test_a_corrupt_prior_in_a_config_is_one_line_and_exit_4(content, data_root, tmp_path, capsys):
    from mixdvae.dvae import prior_path

    checkpoint = tmp_path / "prior.pt"
    shipped = prior_path("srnn_mot").read_bytes()
    checkpoint.write_bytes(shipped[: len(shipped) // 2] if content is None else content)  # None: truncated
    config = tmp_path / "c.yaml"
    config.write_text(f"tracker: mixdvae\nmodel: {checkpoint}\n")
    code = load_tool("track").main(["--config", str(config), "--data-root", str(data_root), "--seq", "TEST-01",
                                    "--out", str(tmp_path / "out"), "--no-progress"])
    assert code == 4
    err = capsys.readouterr().err
    assert str(checkpoint) in err and len(err.strip().splitlines()) == 1
    assert "weights_only=False" not in err
    assert not (tmp_path / "out").exists()


def test_a_sequence_folder_without_seqinfo_is_named_as_such(data_root, tmp_path, capsys):
    (data_root / "TEST-01" / "seqinfo.ini").unlink()
    code = load_tool("track").main(["--data-root", str(data_root), "--seq", "TEST-01", "--out", str(tmp_path / "o"),
                                    "--no-progress"])
    assert code == 4
    err = capsys.readouterr().err
    assert "seqinfo.ini" in err and "MOT17" not in err


@pytest.mark.parametrize("tracker", ["vkf", "kalman"])
def test_parallel_workers_give_the_same_results(tracker, data_root, tmp_path):
    common = ["--tracker", tracker, "--data-root", str(data_root), "--seq", "all", "--no-progress"]
    assert load_tool("track").main([*common, "--out", str(tmp_path / "one")]) == 0
    assert load_tool("track").main([*common, "--out", str(tmp_path / "two"), "--workers", "2"]) == 0
    for name in ("TEST-01", "TEST-02", "TEST-03"):
        one, two = (read_mot_file(tmp_path / d / f"{name}.txt", "results") for d in ("one", "two"))
        np.testing.assert_array_equal(one, two)


def test_tune_runs_trials_in_parallel_on_a_shared_storage(data_root, tmp_path, capsys):
    space = tmp_path / "space.yaml"
    space.write_text("r: [0.05, 0.2]\nmax_iter: {low: 1, high: 3}\n")
    storage = f"journal:{tmp_path / 'study.log'}"
    js = tmp_path / "tune.json"
    code = load_tool("tune").main(["--tracker", "gmm", "--trials", "3", "--workers", "2", "--space", str(space),
                                   "--data-roots", str(data_root), "--storage", storage, "--json", str(js)])
    assert code == 0
    payload = json.loads(js.read_text())
    assert len(payload["trials"]) >= 3 and (tmp_path / "study.log").is_file()
    assert set(payload["loso"]["chosen_trial"]) == {"TEST-01", "TEST-02", "TEST-03"}
    assert "tuning gmm" in capsys.readouterr().err  # the progress bar (with its ETA)
    code = load_tool("tune").main(["--tracker", "gmm", "--trials", "4", "--space", str(space), "--no-progress",
                                   "--data-roots", str(data_root), "--storage", storage, "--json", str(js)])
    assert code == 0  # the same study, continued: trials already there count
    assert len(json.loads(js.read_text())["trials"]) == 4


def test_tune_rejects_a_parameter_the_tracker_does_not_have(data_root, tmp_path, capsys):
    space = tmp_path / "space.yaml"
    space.write_text("max_age: [1, 2]\n")
    assert load_tool("tune").main(["--tracker", "vkf", "--space", str(space), "--data-roots", str(data_root)]) == 4
    assert "max_age" in capsys.readouterr().err
