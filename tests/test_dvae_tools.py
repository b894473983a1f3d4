"""Command-line tools of the motion prior: tools/train_prior.py and tools/eval_prior.py (tiny runs)."""

from __future__ import annotations

import json

import numpy as np
import yaml

from mixdvae.dvae import DVAE, SRNN
from tests.conftest import make_sequence, walk
from tests.tools_loader import load_tool

TINY_CONFIG = {
    "seed": 0,
    "model": {"model": "srnn", "h_dim": 8, "z_dim": 2, "dense_dim": 8, "embed_dim": 4, "history": 2},
    "data": {"window": 10, "real": {"roots": []}, "synthetic": {"piecewise": 20, "walker": 20, "val_fraction": 0.25}},
    "train": {"batch_size": 8, "epochs": 2, "batches_per_epoch": 2, "kl_warmup_epochs": 1, "ss_start_epoch": 0,
              "ss_ramp_epochs": 1, "ss_block": 3, "ss_mse_weight": 1.0, "threads": 1},
}


def test_train_prior_cli(tmp_path):
    config = tmp_path / "tiny.yaml"
    config.write_text(yaml.safe_dump(TINY_CONFIG))
    out = tmp_path / "run"
    code = load_tool("train_prior").main(["--config", str(config), "--out", str(out), "--no-progress",
                                          "--set", "train.epochs=3"])
    assert code == 0
    history = json.loads((out / "history.json").read_text())
    assert len(history) == 3 and (out / "loss_curve.png").is_file()
    model = DVAE.load(out / "srnn.pt")
    assert isinstance(model, SRNN) and model.meta["train_config"]["train"]["epochs"] == 3


def test_eval_prior_cli_on_a_motchallenge_folder(tmp_path, capsys):
    # a tiny prior and a tiny MOTChallenge folder with ground truth
    model = SRNN(TINY_CONFIG["model"])
    model.meta = {"cv": {"q": [1e-4] * 4, "r": [1e-4] * 4, "p0": [1e-3] * 4}}
    prior = tmp_path / "tiny.pt"
    model.save(prior)
    root = tmp_path / "data"
    tracks = {1: walk((100, 50), (2.0, 0.5), range(1, 31)),
              2: walk((300, 80), (-1.5, 0.0), range(5, 31), size=(30, 80))}
    make_sequence(tracks, 30, name="TEST-01").save(root / "TEST-01")
    out = tmp_path / "eval.json"
    code = load_tool("eval_prior").main(["--prior", str(prior), "--data-root", str(root), "--json", str(out)])
    assert code == 0
    results = json.loads(out.read_text())
    assert set(results) == {"srnn", "cv"}
    for metrics in results.values():
        assert set(metrics) == {"nll", "iou_1", "iou_10", "center_px_1", "center_px_10"}
        assert all(np.isfinite(v) for v in metrics.values())
    # constant-velocity boxes: the CV predictor is nearly exact 10 steps ahead
    assert results["cv"]["iou_10"] > 0.9
    assert "TEST-01" in capsys.readouterr().out


def test_eval_prior_leave_one_dataset_out_on_tiny_data(tmp_path, capsys):
    from tests.test_eth_ucy import straight, write_scene

    mot = tmp_path / "mot"
    tracks = {1: walk((100, 50), (2.0, 0.5), range(1, 41)),
              2: walk((300, 80), (-1.5, 0.0), range(5, 41), size=(30, 80))}
    make_sequence(tracks, 40, name="TEST-01").save(mot / "TEST-01")
    eth_ucy = tmp_path / "eth_ucy"
    eth_ucy.mkdir()
    for scene in ("biwi_eth", "crowds_zara01"):
        write_scene(eth_ucy / f"{scene}.txt",
                    {pid: straight(1.3, range(0, 200, 10), start=(pid, 0), heading=0.5 * pid) for pid in range(8)})
    tiny = [f"model.{k}={v}" for k, v in TINY_CONFIG["model"].items()] + [
        "data.window=10", f"data.real.roots=[{mot}]", f"data.eth_ucy.root={eth_ucy}",
        "data.synthetic={piecewise: 20, walker: 20, benchmark_sequences: 0, val_fraction: 0.25}",
        "train.epochs=2", "train.batches_per_epoch=2", "train.batch_size=8", "train.kl_warmup_epochs=1",
        "train.ss_start_epoch=0", "train.ss_ramp_epochs=1"]
    out = tmp_path / "lodo.json"
    argv = ["--hold-out", "dataset", "--models", "srnn", "--data-root", str(mot), "--eth-ucy-root", str(eth_ucy),
            "--fold-dir", str(tmp_path / "folds"), "--window", "10", "--horizon", "3", "--json", str(out)]
    argv += [item for entry in tiny for item in ("--set", entry)]
    assert load_tool("eval_prior").main(argv) == 0
    printed = capsys.readouterr()
    results = json.loads(out.read_text())
    assert set(results) == {"srnn", "cv"} and all(np.isfinite(v) for m in results.values() for v in m.values())
    for heading in ("held out: mot15 (dataset)", "held out: mot15/TEST-01", "held out: eth/biwi_eth",
                    "held out: ucy/crowds_zara01"):
        assert heading in printed.out
    # each fold model saw everything but its held-out dataset
    mot_fold = DVAE.load(tmp_path / "folds" / "srnn_mot15.pt").meta["data"]
    assert mot_fold["real_sequences"] == [] and mot_fold["eth_ucy_scenes"] == ["biwi_eth", "crowds_zara01"]
    eth_fold = DVAE.load(tmp_path / "folds" / "srnn_eth.pt").meta["data"]
    assert eth_fold["real_sequences"] == ["TEST-01"] and eth_fold["eth_ucy_scenes"] == ["crowds_zara01"]
    assert "training srnn" in printed.err
    # a second run reuses the cached fold models and gives the same numbers
    assert load_tool("eval_prior").main(argv) == 0
    assert "training srnn" not in capsys.readouterr().err
    assert json.loads(out.read_text()) == results
    # another training config: the cached folds are retrained, unless asked to reuse them for re-scoring
    assert load_tool("eval_prior").main([*argv, "--set", "train.epochs=3", "--reuse-folds"]) == 0
    err = capsys.readouterr().err
    assert "training srnn" not in err and "reused as asked" in err
    assert load_tool("eval_prior").main([*argv, "--datasets", "kitti"]) == 2
