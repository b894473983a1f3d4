"""The command-line tools: exit codes, atomic outputs, JSON."""

import json
import shutil

import pytest
import torch

from tests.conftest import REPO, make_sequence, walk
from tests.tools_loader import load_tool


@pytest.fixture
def data_root(tmp_path):
    root = tmp_path / "data"
    make_sequence({1: walk((100, 100), (3, 0), range(1, 31)), 2: walk((400, 200), (-2, 1), range(1, 31))}, 30,
                  name="TEST-01").save(root / "TEST-01")
    return root


def test_track_writes_results_json_and_scores(data_root, tmp_path, capsys):
    track = load_tool("track")
    out, js = tmp_path / "out", tmp_path / "run.json"
    code = track.main(["--data-root", str(data_root), "--seq", "TEST-01", "--out", str(out), "--eval",
                       "--json", str(js), "--no-progress"])
    assert code == 0
    assert (out / "TEST-01.txt").is_file()
    payload = json.loads(js.read_text())
    assert {"sequence", "tracker", "frames", "seconds", "fps", "HOTA", "MOTA", "IDF1"} <= set(payload)
    assert payload["frames"] == 30 and payload["MOTA"] > 80
    assert "COMBINED" in capsys.readouterr().out


@pytest.mark.parametrize("bad_line", ["1,-1,10,20,30,0,0.9,-1,-1,-1", "1,-1,10,20,30", "99,-1,1,1,5,5,0.9,-1,-1,-1"])
def test_track_malformed_input_exits_nonzero_and_writes_nothing(data_root, tmp_path, capsys, bad_line):
    det = data_root / "TEST-01" / "det" / "det.txt"
    det.write_text(det.read_text() + bad_line + "\n")
    out = tmp_path / "out"
    code = load_tool("track").main(["--data-root", str(data_root), "--seq", "TEST-01", "--out", str(out),
                                    "--json", str(tmp_path / "r.json")])
    assert code == 4
    assert f"{det}:61" in capsys.readouterr().err
    assert not out.exists() and not (tmp_path / "r.json").exists()


def test_track_missing_sequence_explains_where_data_goes(data_root, tmp_path, capsys):
    code = load_tool("track").main(["--data-root", str(data_root), "--seq", "MOT17-02", "--out", str(tmp_path)])
    assert code == 3
    err = capsys.readouterr().err
    assert "MOT17-02" in err and "make_synthetic.py" in err


def test_eval_tool(data_root, tmp_path, capsys):
    results = tmp_path / "res"
    results.mkdir()
    shutil.copy(data_root / "TEST-01" / "gt" / "gt.txt", results / "TEST-01.txt")
    code = load_tool("eval").main(["--data-root", str(data_root), "--results", str(results), "--json",
                                   str(tmp_path / "e.json")])
    assert code == 0
    assert json.loads((tmp_path / "e.json").read_text())["TEST-01"]["MOTA"] == pytest.approx(100)
    assert load_tool("eval").main(["--data-root", str(data_root), "--results", str(tmp_path / "none")]) == 3


def test_sort_config_file_is_valid():
    from mixdvae.trackers import make_tracker

    tracker = make_tracker("kalman", REPO / "configs" / "sort.yaml")
    assert (tracker.max_age_frames, tracker.min_hits, tracker.iou_threshold, tracker.second_round) == (1, 3, 0.3, False)


def test_tune_searches_scores_and_checks_leave_one_sequence_out(data_root, tmp_path, capsys):
    from mixdvae.trackers import make_tracker

    make_sequence({1: walk((50, 300), (4, -1), range(1, 31))}, 30, name="TEST-02").save(data_root / "TEST-02")
    space = tmp_path / "space.yaml"
    space.write_text("r: [0.05, 0.1, 0.2]\nmax_iter: [1, 3]\n")
    js = tmp_path / "tune.json"
    code = load_tool("tune").main(["--tracker", "vkf", "--trials", "3", "--space", str(space), "--data-roots",
                                   str(data_root), "--json", str(js), "--no-progress"])
    assert code == 0
    payload = json.loads(js.read_text())
    trials = payload["trials"]
    defaults = make_tracker("vkf").get_params()
    assert len(trials) == 3 and trials[0]["overrides"] == {"r": defaults["r"], "max_iter": defaults["max_iter"]}
    for trial in trials:
        combined = trial["scores"][str(data_root)]["COMBINED"]
        assert trial["objective"] == pytest.approx((combined["HOTA"] + combined["IDF1"]) / 2)
    assert set(payload["loso"]["chosen_trial"]) == {"TEST-01", "TEST-02"}
    assert "leave-one-sequence-out" in capsys.readouterr().out
    space.write_text("r: 0.1\n")
    assert load_tool("tune").main(["--space", str(space), "--data-roots", str(data_root), "--no-progress"]) == 4


@pytest.mark.parametrize("space, tracker", [("tune_vem.yaml", "mixdvae"), ("tune_vem.yaml", "vkf"),
                                             ("tune_mixdvae_prior.yaml", "mixdvae")])
def test_shipped_search_spaces_name_parameters_and_hold_the_defaults(space, tracker):
    """A shipped search space loads for its tracker, and each of its choice lists already holds the tracker's
    default (the searches' first trial), so the README's searches around the defaults stay searches around them."""
    import yaml

    from mixdvae.trackers import make_tracker

    path = REPO / "configs" / space
    load_tool("tune").load_space(path, tracker)  # raises on a name that is not one of the tracker's parameters
    defaults = make_tracker(tracker).get_params()
    for name, values in yaml.safe_load(path.read_text()).items():
        default = defaults[name]
        if name == "size_var_scale" and default is None:  # None: the same as var_scale
            default = defaults["var_scale"]
        assert default in values, (space, name)


def test_track_picks_the_tracker_of_the_config_else_mixdvae(data_root, tmp_path):
    track = load_tool("track")
    for config, expected in ([["--config", str(REPO / "configs" / "sort.yaml")], "kalman"], [[], "mixdvae"]):
        js = tmp_path / f"{expected}.json"
        assert track.main(["--data-root", str(data_root), "--seq", "TEST-01", "--out", str(tmp_path / "out"),
                           "--json", str(js), "--no-progress", *config]) == 0
        assert json.loads(js.read_text())["tracker"] == expected
    mismatch = ["--tracker", "vkf", "--config", str(REPO / "configs" / "sort.yaml")]
    assert track.main(["--data-root", str(data_root), "--seq", "TEST-01", "--out", str(tmp_path / "o2"),
                       "--no-progress", *mismatch]) == 4


def test_track_device_option(data_root, tmp_path, capsys):
    track = load_tool("track")
    common = ["--data-root", str(data_root), "--seq", "TEST-01", "--out", str(tmp_path / "out"), "--no-progress"]
    assert track.main([*common, "--device", "cpu"]) == 0
    assert track.main([*common, "--tracker", "kalman", "--device", "cpu"]) == 2  # no device parameter
    assert "CPU only" in capsys.readouterr().err
    if not torch.cuda.is_available():
        assert track.main([*common, "--device", "cuda"]) == 2
        assert "no CUDA device" in capsys.readouterr().err


@pytest.mark.parametrize("text", ["tracker: [kalman\n", "- 1\n- 2\n"])
def test_track_rejects_a_malformed_config_naming_it(data_root, tmp_path, capsys, text):
    config = tmp_path / "bad.yaml"
    config.write_text(text)
    code = load_tool("track").main(["--data-root", str(data_root), "--seq", "TEST-01", "--out", str(tmp_path / "o"),
                                    "--config", str(config), "--no-progress"])
    assert code == 4
    assert str(config) in capsys.readouterr().err
    assert not (tmp_path / "o").exists()
