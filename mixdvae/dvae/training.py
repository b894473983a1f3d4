"""Training of DVAE motion priors (used by ``tools/train_prior.py`` and ``tools/eval_prior.py``).

One training config (YAML, see ``configs/prior_srnn.yaml``) holds the model config, the data recipe and the
optimisation schedule. The objective, per batch of windows x (model coordinates, padded steps masked)::

    loss = -ELBO(x; beta)  +  pred_weight * NLL_ss(x; p_own)

* ``-ELBO``: teacher-forced negative ELBO with one sample of q(z | x); ``beta`` is warmed up linearly from 0 to
  ``train.beta`` over ``train.kl_warmup_epochs`` epochs (KL warm-up).
* ``NLL_ss``: scheduled sampling on the prediction path the VEM and the evaluation use (``step`` with ``z =
  None``): at every step the model receives its own previous mean instead of the true box with probability
  ``p_own``, which ramps from 0 to ``train.ss_max`` between ``ss_start_epoch`` and ``ss_start_epoch +
  ss_ramp_epochs``. Gradients flow through the fed-back means, so multi-step errors are trained directly.
  ``train.ss_block = K`` feeds own means in runs of 1..K steps (K-step-ahead prediction is trained directly);
  with ``train.ss_mse_weight = w`` the own-fed steps are scored by ``w`` times a squared error in units of the
  typical increment instead of the NLL, so that the predictive variance is trained on true inputs only and
  stays calibrated for them (see :meth:`mixdvae.dvae.base.DVAE.rollout_nll`).

Early stopping watches ``val_score`` = the same NLL_ss on the validation windows with ``p_own = ss_max`` and a
fixed random stream (so it is comparable across epochs); the best weights are kept and saved. Everything is seeded
(``seed``); the data statistics the models use (``inc_std``, aspect ratio) are measured on the training windows
and written into the model config.
"""

from __future__ import annotations

import copy
import json
import math
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable

import numpy as np
import torch

from ..data import (
    BoxWindows,
    benchmark_trajectories,
    load_mot_tracks,
    piecewise_trajectories,
    real_windows,
    split_tracks,
    walker_trajectories,
    windows_from_tracks,
)
from mixdvae.resources import CHECKOUT_ROOT

from . import MODELS
from .cv import CVParams, fit_cv


# Version of the training recipe beyond the config (data generators, objective, model code): bump it whenever a
# change alters what a config trains, so that cached models (tools/eval_prior.py's fold models) are retrained.
RECIPE_VERSION = "2"

DEFAULT_CONFIG: dict[str, Any] = {
    "seed": 0,
    "model": {"model": "srnn", "x_dim": 4, "z_dim": 8, "h_dim": 64, "dense_dim": 64, "embed_dim": 32},
    "data": {
        "window": 60,
        "real": {
            "roots": ["../shared/data/MOT15/train"],
            "include": None,
            "exclude": [],
            "stride": 5,
            "min_length": 5,
            "flip": True,
            "subsample_min_fps": 20.0,
            "val_fraction": 0.15,
            "weight": 0.5,
        },
        "synthetic": {
            "piecewise": 3000,
            "walker": 3000,
            "benchmark_sequences": 0,
            "val_fraction": 0.1,
            "piecewise_args": {},
            "walker_args": {},
        },
    },
    "train": {
        "batch_size": 64,
        "lr": 2e-3,
        "weight_decay": 0.0,
        "epochs": 60,
        "batches_per_epoch": 50,
        "beta": 1.0,
        "kl_warmup_epochs": 10,
        "pred_weight": 1.0,
        "ss_start_epoch": 5,
        "ss_ramp_epochs": 20,
        "ss_max": 0.5,
        "ss_mse_weight": None,
        "ss_block": 1,
        "patience": 12,
        "grad_clip": 5.0,
        "threads": 1,
        "max_minutes": 14.0,
        "device": "cpu",
        "lr_decay": 0.5,
        "lr_patience": 5,
    },
    "output": {"dir": "runs/prior_srnn", "checkpoint": None, "plot": True},
}


def merge_config(base: dict, override: dict | None) -> dict:
    """Recursive dict merge (``override`` wins); unknown keys are kept."""
    out = copy.deepcopy(base)
    for key, value in (override or {}).items():
        if isinstance(value, dict) and isinstance(out.get(key), dict):
            out[key] = merge_config(out[key], value)
        else:
            out[key] = copy.deepcopy(value)
    return out


def resolve_path(path: str | Path) -> Path:
    """Relative paths in configs are relative to the repository root (the working folder outside a checkout)."""
    path = Path(path)
    return path if path.is_absolute() else (CHECKOUT_ROOT or Path.cwd()) / path


# --------------------------------------------------------------------------------------------------------------
# data


@dataclass
class PriorData:
    """Training and validation windows, each split into real and synthetic parts."""

    train_real: BoxWindows
    train_synth: BoxWindows
    val_real: BoxWindows
    val_synth: BoxWindows
    real_sequences: list[str]
    real_train_tracks: list

    def describe(self) -> dict:
        return {
            "real_sequences": self.real_sequences,
            "train_real_windows": len(self.train_real),
            "train_synthetic_windows": len(self.train_synth),
            "val_real_windows": len(self.val_real),
            "val_synthetic_windows": len(self.val_synth),
        }


def build_data(config: dict, log: Callable[[str], None] = print) -> PriorData:
    """Windows described by ``config["data"]`` (see the module docstring and ``configs/prior_srnn.yaml``)."""
    seed = int(config["seed"])
    data = config["data"]
    length = int(data["window"])
    real, synth = data["real"], data["synthetic"]
    tracks, names = [], []
    for root in real.get("roots") or []:
        folder = resolve_path(root)
        found = load_mot_tracks(folder, include=real.get("include"), exclude=real.get("exclude") or [])
        if not found:
            log(f"real trajectories: none found in {folder} (skipped)")
        for name, seq_tracks in found.items():
            tracks += seq_tracks
            names.append(name)
    train_tracks, val_tracks = split_tracks(tracks, float(real.get("val_fraction", 0.0)), seed)
    train_real = real_windows(
        train_tracks, length, int(real["stride"]), int(real["min_length"]), bool(real["flip"]), real.get("subsample_min_fps")
    )
    val_real = windows_from_tracks(val_tracks, length, None, int(real["min_length"]))
    parts = []
    if synth.get("piecewise"):
        parts.append(piecewise_trajectories(int(synth["piecewise"]), length, seed + 101, **(synth.get("piecewise_args") or {})))
    if synth.get("walker"):
        from ..data import WalkerParams

        params = WalkerParams(**(synth.get("walker_args") or {}))
        parts.append(walker_trajectories(int(synth["walker"]), length, seed + 202, params))
    all_synth = BoxWindows.concat(parts)
    rng = np.random.default_rng(seed + 404)
    order = rng.permutation(len(all_synth))
    n_val = int(round(float(synth.get("val_fraction", 0.1)) * len(all_synth)))
    val_synth, train_synth = all_synth.subset(order[:n_val]), all_synth.subset(order[n_val:])
    if synth.get("benchmark_sequences"):
        # overlapping windows of whole sequences: all for training (a random split would leak into validation)
        bench = benchmark_trajectories(int(synth["benchmark_sequences"]), seed + 303, length)
        if bench is None:
            log("synthetic benchmark (mixdvae.synthetic) unavailable: walker trajectories only")
        else:
            train_synth = BoxWindows.concat([train_synth, bench])
    return PriorData(train_real, train_synth, val_real, val_synth, names, train_tracks)


def data_statistics(windows: list[BoxWindows]) -> dict:
    """``inc_std`` (robust std of per-frame increments in current box heights), aspect mean and std."""
    incs, aspects = [], []
    for w in windows:
        if not len(w):
            continue
        x = w.to_model().astype(np.float64)
        valid = w.mask[:, 1:] & w.mask[:, :-1]
        inc = (np.diff(x, axis=1) / np.clip(x[:, :-1, 3:4], 0.05, None))[valid]
        incs.append(inc)
        aspects.append((x[..., 2] / np.clip(x[..., 3], 0.05, None))[w.mask])
    if not incs:
        return {}
    inc = np.concatenate(incs)
    # robust scale: 1.4826 * MAD would ignore static targets' zeros; use the RMS of the central 98 %
    lo, hi = np.percentile(inc, [1, 99], axis=0)
    clipped = np.clip(inc, lo, hi)
    inc_std = np.sqrt((clipped**2).mean(0))
    aspect = np.concatenate(aspects)
    return {
        "inc_std": [float(max(v, 1e-3)) for v in inc_std],
        "aspect_mean": float(np.median(aspect)),
        "aspect_std": float(max(aspect.std(), 0.02)),
    }


# --------------------------------------------------------------------------------------------------------------
# training


def _tensor(windows: BoxWindows, device) -> tuple[torch.Tensor, torch.Tensor]:
    return (
        torch.as_tensor(windows.to_model(), device=device),
        torch.as_tensor(windows.mask, device=device),
    )


def _schedule(epoch: int, start: float, ramp: float, maximum: float) -> float:
    if ramp <= 0:
        return maximum if epoch >= start else 0.0
    return float(np.clip((epoch - start + 1) / ramp, 0.0, 1.0)) * maximum


@dataclass
class TrainResult:
    model: Any
    history: list[dict]
    best_epoch: int
    seconds: float
    cv: CVParams | None
    checkpoint: Path | None


def train_prior(
    config: dict,
    log: Callable[[str], None] = print,
    progress: bool = True,
    data: PriorData | None = None,
) -> TrainResult:
    """Train the model described by ``config`` (merged over :data:`DEFAULT_CONFIG`); see the module docstring.

    Writes ``output.checkpoint`` (default ``output.dir/<model>.pt``), ``output.dir/history.json`` and, when
    ``output.plot``, ``output.dir/loss_curve.png``. Returns the best model (eval mode) and the history.
    """
    config = merge_config(DEFAULT_CONFIG, config)
    threads = torch.get_num_threads()
    if config["train"].get("threads"):
        torch.set_num_threads(int(config["train"]["threads"]))
    try:
        return _train(config, log, progress, data)
    finally:
        torch.set_num_threads(threads)


def _train(config: dict, log, progress: bool, data: PriorData | None) -> TrainResult:
    seed = int(config["seed"])
    train_cfg = config["train"]
    torch.manual_seed(seed)
    device = torch.device(train_cfg.get("device", "cpu"))
    started = time.time()
    data = data or build_data(config, log)
    if not len(data.train_real) and not len(data.train_synth):
        raise ValueError("no training windows: check data.real.roots and data.synthetic")
    log(f"data: {json.dumps(data.describe())}")

    stats = data_statistics([data.train_real, data.train_synth])
    model_cfg = merge_config(config["model"], stats)
    name = model_cfg.get("model", "srnn")
    if name not in MODELS:
        raise ValueError(f"unknown model {name!r}; known: {sorted(MODELS)}")
    model = MODELS[name](model_cfg).to(device)
    log(f"model: {name}, {sum(p.numel() for p in model.parameters())} parameters, inc_std={stats.get('inc_std')}")

    cv = None
    if len(data.train_real):
        cv = fit_cv(data.train_real.to_model(), data.train_real.mask)

    xr, mr = _tensor(data.train_real, device)
    xs, ms = _tensor(data.train_synth, device)
    val_sets = [(w, float(weight)) for w, weight in ((data.val_real, config["data"]["real"]["weight"]), (data.val_synth, 1 - float(config["data"]["real"]["weight"]))) if len(w)]
    val_tensors = [(*_tensor(w, device), weight) for w, weight in val_sets]
    real_weight = float(config["data"]["real"]["weight"]) if len(xr) else 0.0
    if not len(xs):
        real_weight = 1.0
    batch_size = int(train_cfg["batch_size"])
    n_real = int(round(real_weight * batch_size))

    optimiser = torch.optim.Adam(model.parameters(), lr=float(train_cfg["lr"]), weight_decay=float(train_cfg["weight_decay"]))
    generator = torch.Generator(device="cpu").manual_seed(seed)
    batch_rng = np.random.default_rng(seed + 1)
    history: list[dict] = []
    best = (math.inf, -1, None)
    epochs = int(train_cfg["epochs"])
    bar = _progress(epochs, progress)
    bad_epochs, lr_bad = 0, 0
    max_seconds = float(train_cfg.get("max_minutes") or 1e9) * 60
    for epoch in range(epochs):
        beta = _schedule(epoch, 0, float(train_cfg["kl_warmup_epochs"]), float(train_cfg["beta"]))
        p_own = _schedule(epoch, float(train_cfg["ss_start_epoch"]), float(train_cfg["ss_ramp_epochs"]), float(train_cfg["ss_max"]))
        model.train()
        sums = {"loss": 0.0, "recon": 0.0, "kl": 0.0, "pred": 0.0}
        for _ in range(int(train_cfg["batches_per_epoch"])):
            idx_r = batch_rng.integers(len(xr), size=n_real) if n_real else np.zeros(0, int)
            idx_s = batch_rng.integers(len(xs), size=batch_size - n_real) if batch_size > n_real else np.zeros(0, int)
            x = torch.cat([xr[idx_r], xs[idx_s]]) if len(idx_s) and len(idx_r) else (xr[idx_r] if len(idx_r) else xs[idx_s])
            mask = torch.cat([mr[idx_r], ms[idx_s]]) if len(idx_s) and len(idx_r) else (mr[idx_r] if len(idx_r) else ms[idx_s])
            out = model.elbo(x, beta=beta, mask=mask, generator=generator)
            loss = out["loss"]
            pred = torch.zeros((), device=device)
            if float(train_cfg["pred_weight"]) > 0:
                pred = model.rollout_nll(
                    x, p_own, mask, generator=generator, own_mse_weight=train_cfg.get("ss_mse_weight"),
                    block=int(train_cfg.get("ss_block", 1)),
                )["nll"]
                loss = loss + float(train_cfg["pred_weight"]) * pred
            optimiser.zero_grad()
            loss.backward()
            torch.nn.utils.clip_grad_norm_(model.parameters(), float(train_cfg["grad_clip"]))
            optimiser.step()
            for key, value in (("loss", loss), ("recon", out["recon"]), ("kl", out["kl"]), ("pred", pred)):
                sums[key] += float(value.detach())
        n_batches = int(train_cfg["batches_per_epoch"])
        row = {k: v / n_batches for k, v in sums.items()}
        row.update(epoch=epoch + 1, beta=beta, p_own=p_own, lr=optimiser.param_groups[0]["lr"], seconds=time.time() - started)
        row.update(validate(model, val_tensors, float(train_cfg["ss_max"]), seed, int(train_cfg.get("ss_block", 1)),
                            train_cfg.get("ss_mse_weight")))
        history.append(row)
        score = row.get("val_score", row["loss"])
        # best model only once the schedules have reached their final values (scores are comparable then)
        settled = epoch + 1 >= max(float(train_cfg["kl_warmup_epochs"]), float(train_cfg["ss_start_epoch"]) + float(train_cfg["ss_ramp_epochs"]))
        if settled and score < best[0]:
            best = (score, epoch + 1, copy.deepcopy(model.state_dict()))
            bad_epochs = lr_bad = 0
        elif settled:
            bad_epochs += 1
            lr_bad += 1
            if lr_bad >= int(train_cfg["lr_patience"]):
                for group in optimiser.param_groups:
                    group["lr"] *= float(train_cfg["lr_decay"])
                lr_bad = 0
        bar.set_postfix(loss=f"{row['loss']:.2f}", val=f"{score:.3f}", p=f"{p_own:.2f}", b=f"{beta:.2f}")
        bar.update(1)
        if settled and bad_epochs >= int(train_cfg["patience"]):
            log(f"early stop at epoch {epoch + 1}: no improvement for {bad_epochs} epochs")
            break
        if time.time() - started > max_seconds:
            log(f"time budget of {train_cfg['max_minutes']} min reached at epoch {epoch + 1}")
            break
    bar.close()
    if best[2] is None:  # never settled: keep the last weights
        best = (history[-1].get("val_score", history[-1]["loss"]), history[-1]["epoch"], copy.deepcopy(model.state_dict()))
    model.load_state_dict(best[2])
    model.eval()
    seconds = time.time() - started
    model.meta = {
        "trained_by": "tools/train_prior.py",
        "recipe_version": RECIPE_VERSION,
        "train_config": config,
        "data": data.describe(),
        "best_epoch": best[1],
        "best_val_score": float(best[0]),
        "epochs_run": len(history),
        "train_seconds": round(seconds, 1),
        "cv": cv.to_dict() if cv is not None else None,
    }
    out_dir = resolve_path(config["output"]["dir"])
    out_dir.mkdir(parents=True, exist_ok=True)
    checkpoint = resolve_path(config["output"].get("checkpoint") or out_dir / f"{name}.pt")
    model.cpu().save(checkpoint)
    model.to(device)
    (out_dir / "history.json").write_text(json.dumps(history, indent=1))
    if config["output"].get("plot", True):
        plot_history(history, out_dir / "loss_curve.png", title=f"{name} prior (best epoch {best[1]})")
    log(f"best epoch {best[1]} (val score {best[0]:.4f}), {len(history)} epochs in {seconds:.0f} s -> {checkpoint}")
    return TrainResult(model, history, best[1], seconds, cv, checkpoint)


@torch.no_grad()
def validate(model, val_tensors, p_own: float, seed: int, block: int = 1, mse_weight: float | None = None) -> dict:
    """Validation, weighted over the real and synthetic sets: ``val_nll1`` (teacher-forced next-step NLL,
    z = None), ``val_own_err`` (scaled squared error of own-fed steps) and ``val_score`` (the scheduled-sampling
    objective at ``p_own``, with a fixed random stream)."""
    if not val_tensors:
        return {}
    model.eval()
    total_w = sum(w for *_, w in val_tensors)
    out = {"val_nll1": 0.0, "val_own_err": 0.0, "val_score": 0.0}
    for x, mask, weight in val_tensors:
        gen = torch.Generator(device="cpu").manual_seed(seed + 999)
        teacher = model.rollout_nll(x, 0.0, mask)
        sched = model.rollout_nll(x, p_own, mask, generator=gen, block=block, own_mse_weight=mse_weight)
        out["val_nll1"] += weight / total_w * float(teacher["nll"])
        out["val_own_err"] += weight / total_w * float(sched["own_err"])
        out["val_score"] += weight / total_w * float(sched["nll"])
    return out


def plot_history(history: list[dict], path: Path, title: str = "") -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    epochs = [row["epoch"] for row in history]
    fig, axes = plt.subplots(1, 2, figsize=(11, 4))
    for key, label in (("loss", "train loss"), ("recon", "train -log p(x|z)"), ("pred", "train prediction loss (sched. sampling)")):
        axes[0].plot(epochs, [row[key] for row in history], label=label)
    if "val_score" in history[0]:
        axes[0].plot(epochs, [row["val_score"] for row in history], label="val prediction loss (early stopping)")
        axes[0].plot(epochs, [row["val_nll1"] for row in history], label="val NLL (next step)")
        if "val_own_err" in history[0]:
            axes[0].plot(epochs, [row["val_own_err"] for row in history], label="val own-fed scaled sq. error")
    axes[0].set_xlabel("epoch")
    axes[0].set_ylabel("nats per step (model units)")
    axes[0].legend()
    axes[1].plot(epochs, [row["kl"] for row in history], label="KL")
    axes[1].plot(epochs, [row["beta"] for row in history], label="beta")
    axes[1].plot(epochs, [row["p_own"] for row in history], label="p_own")
    axes[1].set_xlabel("epoch")
    axes[1].legend()
    fig.suptitle(title)
    fig.tight_layout()
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, dpi=90)
    plt.close(fig)


class _NoBar:
    def set_postfix(self, **_):
        pass

    def update(self, _):
        pass

    def close(self):
        pass


def _progress(total: int, enabled: bool):
    if not enabled:
        return _NoBar()
    from tqdm import tqdm

    return tqdm(total=total, desc="epochs", unit="ep")
