"""One source of defaults per tracker, and configurations validated on load (mixdvae.config)."""

import numpy as np
import pytest
import yaml

from mixdvae.audio.separate import SeparateConfig
from mixdvae.config import Range, check_params, dataclass_overrides, parameter_specs, parse_override
from mixdvae.errors import ConfigError, InputError, UsageError
from mixdvae.trackers import TRACKERS, GMMTracker, KalmanTracker, MixDVAETracker, VKFTracker, make_tracker
from mixdvae.vem import VEMConfig
from mixdvae.vem.tracking import WindowConfig
from tests.conftest import make_sequence, walk
from tests.tools_loader import load_tool

CLASSES = {"mixdvae": MixDVAETracker, "vkf": VKFTracker, "gmm": GMMTracker, "kalman": KalmanTracker}


@pytest.fixture
def data_root(tmp_path):
    root = tmp_path / "data"
    tracks = {1: walk((100, 100), (3, 0), range(1, 41)), 2: walk((400, 200), (-2, 1), range(1, 41))}
    make_sequence(tracks, 40, name="TEST-01").save(root / "TEST-01")
    return root


def test_every_tracker_is_covered():
    assert set(CLASSES) == set(TRACKERS)


@pytest.mark.parametrize("name", sorted(CLASSES))
def test_api_and_command_line_use_the_same_defaults_and_give_the_same_tracks(name, data_root, tmp_path, capsys):
    """make_tracker(name), the class itself and tools/track.py --tracker name: one set of defaults, one result."""
    from mixdvae.mot import Sequence, read_mot_file

    by_registry, by_class = make_tracker(name), CLASSES[name]()
    assert by_registry.get_params() == by_class.get_params()
    track = load_tool("track")
    assert track.main(["--tracker", name, "--print-config"]) == 0
    printed = yaml.safe_load(capsys.readouterr().out)
    assert printed.pop("tracker") == name
    assert printed == yaml.safe_load(yaml.safe_dump(by_class.get_params()))
    seq = Sequence.load(data_root / "TEST-01")
    expected = by_class.track(seq)
    np.testing.assert_array_equal(by_registry.track(seq), expected)
    out = tmp_path / "out"
    assert track.main(["--tracker", name, "--data-root", str(data_root), "--seq", "TEST-01", "--out", str(out),
                       "--no-progress"]) == 0
    written = read_mot_file(out / "TEST-01.txt", "results")[:, :6]
    np.testing.assert_allclose(written, expected, rtol=0, atol=0.005 + 1e-9)  # the file rounds to 0.01 px


def test_tuned_values_are_the_class_defaults():
    """The whole-sequence tracker's settings (README) live in the engine's and the window's dataclasses."""
    params = MixDVAETracker().get_params()
    assert params["window_s"] == WindowConfig().window_s and params["max_gap_s"] == WindowConfig().max_gap_s
    assert params["temperature"] == VEMConfig().temperature and params["var_cap"] == VEMConfig().var_cap
    assert VKFTracker().get_params()["max_gap_s"] == params["max_gap_s"]  # no tracker keeps its own copy


@pytest.mark.parametrize(("text", "key"), [
    ("window_s: abc\n", "window_s"),
    ("max_age_s: -5\n", "max_age_s"),
    ("max_iter: 2.5\n", "max_iter"),
    ("exclusive: true\n", "exclusive"),
    ("clutter_model: boxes\n", "clutter_model"),
    ("r: [0.1, 0.2]\n", "r"),
    ("max_gap: 0.4\n", "max_gap"),  # the old name, without its unit: unknown
    ("num_sources: 0\n", "num_sources"),
    ("device: gpu7\n", "device"),
])
def test_bad_config_values_name_the_file_and_the_key(text, key, data_root, tmp_path, capsys):
    config = tmp_path / "bad.yaml"
    config.write_text("tracker: mixdvae\n" + text)
    with pytest.raises(ConfigError, match=f"{config}.*{key}"):
        make_tracker("mixdvae", config)
    code = load_tool("track").main(["--config", str(config), "--data-root", str(data_root), "--seq", "TEST-01",
                                    "--out", str(tmp_path / "out"), "--no-progress"])
    assert code == 4
    err = capsys.readouterr().err
    assert str(config) in err and key in err and "Traceback" not in err
    assert not (tmp_path / "out").exists()


def test_kalman_config_is_validated_too(tmp_path):
    config = tmp_path / "k.yaml"
    config.write_text("tracker: kalman\nmax_age_frames: -1\n")
    with pytest.raises(ConfigError, match="max_age_frames"):
        make_tracker("kalman", config)
    with pytest.raises(ConfigError, match="motion_model"):
        KalmanTracker(motion_model="constant")


def test_shipped_config_by_name():
    assert make_tracker("kalman", "sort").get_params()["max_age_frames"] == 1


def test_check_params_converts_lossless_yaml_values():
    specs = parameter_specs(VEMConfig)
    values = check_params({"r": [0.1, 0.05, 0.15, 0.08], "temperature": 1, "var_cap": None}, specs, VEMConfig.BOUNDS)
    assert values == {"r": (0.1, 0.05, 0.15, 0.08), "temperature": 1.0, "var_cap": None}
    assert isinstance(values["temperature"], float)
    with pytest.raises(ConfigError, match="temperature.*> 0"):
        check_params({"temperature": 0}, specs, {"temperature": Range(0, exclusive_low=True)})
    with pytest.raises(ConfigError, match="NaN"):
        check_params({"temperature": float("nan")}, specs, VEMConfig.BOUNDS)


@pytest.mark.parametrize("name", sorted(CLASSES))
@pytest.mark.parametrize(("detections", "problem"), [
    (np.array([[10.0, 10, 20, 40]]), "(M, 5)"),
    (np.array([[10.0, 10, -20, 40, 0.9]]), "non-positive width or height"),
    (np.array([[10.0, 10, 20, 0, 0.9]]), "non-positive width or height"),
    (np.array([[np.nan, 10, 20, 40, 0.9]]), "NaN"),
])
def test_update_rejects_malformed_detections(name, detections, problem):
    tracker = make_tracker(name)
    tracker.reset(frame_rate=25, image_size=(640, 480))
    with pytest.raises(InputError, match=f"frame 1: .*{problem}".replace("(", r"\(").replace(")", r"\)")):
        tracker.update(detections)
    assert len(tracker.update(np.zeros((0, 5)))) == 0  # an empty frame is fine


def test_vem_trackers_show_progress(data_root, capsys):
    from mixdvae.mot import Sequence

    MixDVAETracker().track(Sequence.load(data_root / "TEST-01"), progress=True)
    assert "mixdvae TEST-01" in capsys.readouterr().err


def test_set_overrides_of_a_settings_dataclass():
    """``--set KEY=VALUE`` of the audio benchmarks: later overrides win, YAML values are typed, and a key that is not
    a field (or a nested one) is a usage error naming it and the valid keys."""
    overrides = [parse_override("rho=0.05"), parse_override("output=posterior"), parse_override("rho=0.1"),
                 parse_override("mixture=per_bin")]
    assert dataclass_overrides(SeparateConfig, overrides) == {"rho": 0.1, "output": "posterior", "mixture": "per_bin"}
    assert SeparateConfig(**dataclass_overrides(SeparateConfig, overrides)).rho == 0.1
    for bad in ("rhoo=1", "rho.x=1"):
        with pytest.raises(UsageError, match=r"--set rho.*not a SeparateConfig setting.*average"):
            dataclass_overrides(SeparateConfig, [parse_override(bad)])
