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
