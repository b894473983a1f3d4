"""Training of DVAE priors (used by ``tools/train_prior.py`` and ``tools/eval_prior.py``): motion priors on box
windows and speech priors on power spectrograms.

One training config (YAML, see ``configs/prior_srnn.yaml`` and ``configs/prior_speech_srnn.yaml``) holds the
model config, the data recipe and the optimisation schedule. A config with a ``data: audio:`` section trains on
power spectra of a speech corpus or of a folder of recordings (:func:`build_spectrogram_data`), any other on box windows
(:func:`build_data`). The objective, per batch of windows x (model coordinates, padded steps masked)::

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

Spectrograms (``data.audio``): batches are random crops of ``segment`` frames from the power spectrogram of
the training split (utterances computed one by one, then concatenated); ``pred_weight`` is 0 by default
(teacher-forced ELBO only); early stopping watches the negative ELBO at the final ``beta`` on fixed
``segment``-frame validation segments with a fixed random stream, and ``val_is`` reports the mean
Itakura-Saito divergence per bin of their reconstructions. The per-bin mean and std of the training log-power
(``x_mean``, ``x_std``) are written into the model config.
"""

from __future__ import annotations

import copy
import json
import math
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import torch

from mixdvae.errors import ConfigError, DataNotFoundError
from mixdvae.resources import CHECKOUT_ROOT

from ..audio.corpus import load_split
from ..audio.io import AUDIO_SUFFIXES, MODEL_RATE, read_audio
from ..audio.stft import STFT, power_spectrogram
from ..data import (
    BoxWindows,
    WalkerParams,
    benchmark_trajectories,
    load_mot_tracks,
    piecewise_trajectories,
    real_windows,
    split_tracks,
    walker_trajectories,
    windows_from_tracks,
)
from ..data.eth_ucy import load_walks, scenes_of, split_walks, walk_windows
from . import MODELS
from .base import LogPowerIO
from .cv import CVParams, fit_cv
from .evaluate import dvae_predictions, evaluate_dvae

# Version of the training recipe beyond the config (data generators, objective, model code): bump it whenever a
# change alters what a config trains, so that cached models (tools/eval_prior.py's fold models) are retrained.
RECIPE_VERSION = "6"

# candidate scales of the smooth-track gate (mixdvae/dvae/base.py), in inc_std units of centre jerk per frame
SMOOTH_GATES = (0.02, 0.05, 0.1, 0.2, 0.5, 1.0)

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
        "eth_ucy": {
            "root": "../shared/data/trajectories/eth_ucy",
            "datasets": [],
            "exclude": [],
            "stride_s": 2.0,
            "val_fraction": 0.1,
            "weight": 0.0,
            "camera_args": {},
        },
        "synthetic": {
            "piecewise": 3000,
            "walker": 3000,
            "benchmark_sequences": 0,
            "calibration_sequences": 0,
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
        "calibrate_blend": False,
        "smooth_tolerance": 0.001,
        "calibrate_variance": False,
        "init_from": None,
        "init_modules": [],
        "freeze": [],
    },
    "output": {"dir": "runs/prior_srnn", "checkpoint": None, "plot": True},
}


AUDIO_DEFAULT_CONFIG: dict[str, Any] = {
    "seed": 0,
    "model": {
        "model": "srnn", "x_dim": 513, "z_dim": 16, "h_dim": 128, "dense_dim": 256, "embed_dim": 256,
        "likelihood": "itakura_saito", "param": "log_power", "logvar_range": [-20.0, 20.0],
    },
    "data": {"audio": {"corpus": "data/speech", "segment": 50, "n_fft": 1024, "hop": 256, "window": "sine",
                       "warp": None, "eq_db": 0.0}},
    "train": {
        **DEFAULT_CONFIG["train"], "lr": 1e-3, "batch_size": 32, "epochs": 400, "batches_per_epoch": 50,
        "kl_warmup_epochs": 10, "pred_weight": 0.0, "ss_start_epoch": 0, "ss_ramp_epochs": 0, "ss_max": 0.0,
        "patience": 30, "lr_patience": 10, "max_minutes": 40.0,
    },
    "output": {"dir": "runs/prior_speech", "checkpoint": None, "plot": True},
}


def is_audio_config(config: dict) -> bool:
    """Whether ``config`` trains on spectrograms (it has a ``data: audio:`` section)."""
    return bool((config.get("data") or {}).get("audio"))


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
    """Training and validation windows of the three sources: real box tracks (``real``: MOTChallenge ground
    truth), real walks filmed by random cameras (``walks``: ETH/UCY, :mod:`mixdvae.data.eth_ucy`) and synthetic
    trajectories (``synth``)."""

    train_real: BoxWindows
    train_synth: BoxWindows
    val_real: BoxWindows
    val_synth: BoxWindows
    real_sequences: list[str]
    real_train_tracks: list
    train_walks: BoxWindows = field(default_factory=lambda: BoxWindows.concat([]))
    val_walks: BoxWindows = field(default_factory=lambda: BoxWindows.concat([]))
    walk_scenes: list[str] = field(default_factory=list)
    val_smooth: BoxWindows = field(default_factory=lambda: BoxWindows.concat([]))

    def describe(self) -> dict:
        return {
            "real_sequences": self.real_sequences,
            "eth_ucy_scenes": self.walk_scenes,
            "train_real_windows": len(self.train_real),
            "train_eth_ucy_windows": len(self.train_walks),
            "train_synthetic_windows": len(self.train_synth),
            "val_real_windows": len(self.val_real),
            "val_eth_ucy_windows": len(self.val_walks),
            "val_synthetic_windows": len(self.val_synth),
            "calibration_smooth_windows": len(self.val_smooth),
        }

    def fit_cv(self, max_windows: int = 2000, seed: int = 0, max_step: float = 1.0) -> CVParams | None:
        """Constant velocity fitted (maximum likelihood) on the real-motion training windows (real tracks and
        ETH/UCY walks; a seeded sample of ``max_windows`` when there are more: the fit is a slow Nelder-Mead).
        Windows with a step of more than ``max_step`` current box heights in one frame are left out: no
        pedestrian moves that fast, and one such window would drive the Gaussian fit to a useless optimum."""
        real = BoxWindows.concat([self.train_real, self.train_walks])
        x = real.to_model()
        steps = np.abs(np.diff(x, axis=1)) / np.clip(x[:, :-1, 3:4], 0.05, None)
        keep = np.flatnonzero(~((steps > max_step).any(-1) & real.mask[:, 1:]).any(1))
        if not len(keep):
            return None
        if len(keep) > max_windows:
            keep = keep[np.sort(np.random.default_rng(seed).choice(len(keep), max_windows, replace=False))]
        return fit_cv(x[keep], real.mask[keep])

    def pools(self, config: dict) -> list[tuple[BoxWindows, BoxWindows, float]]:
        """``(train, val, weight)`` of each source: the share of every batch (and of the validation score) that
        each draws, ``data.real.weight`` and ``data.eth_ucy.weight``, the synthetic windows the rest; the share of
        a source without training windows goes to the others in proportion."""
        data = config["data"]
        real_w = float(data["real"]["weight"])
        walk_w = float((data.get("eth_ucy") or {}).get("weight", 0.0))
        pools = [(self.train_real, self.val_real, real_w), (self.train_walks, self.val_walks, walk_w),
                 (self.train_synth, self.val_synth, max(1.0 - real_w - walk_w, 0.0))]
        pools = [(t, v, w) for t, v, w in pools if len(t) and w > 0]
        total = sum(w for *_, w in pools)
        return [(t, v, w / total) for t, v, w in pools]


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
        train_tracks, length, int(real["stride"]), int(real["min_length"]), bool(real["flip"]),
        real.get("subsample_min_fps")
    )
    val_real = windows_from_tracks(val_tracks, length, None, int(real["min_length"]))
    train_walks, val_walks, scenes = build_walk_windows(data.get("eth_ucy") or {}, length, seed, log)
    parts = []
    if synth.get("piecewise"):
        piecewise_args = synth.get("piecewise_args") or {}
        parts.append(piecewise_trajectories(int(synth["piecewise"]), length, seed + 101, **piecewise_args))
    if synth.get("walker"):
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
    val_smooth = BoxWindows.concat([])
    if synth.get("calibration_sequences"):
        # jitter-free ground truth of other sequences (seed + 505), for the smooth-track gate only
        val_smooth = benchmark_trajectories(int(synth["calibration_sequences"]), seed + 505, length) or val_smooth
    return PriorData(train_real, train_synth, val_real, val_synth, names, train_tracks, train_walks, val_walks, scenes,
                     val_smooth)


def build_walk_windows(section: dict, length: int, seed: int, log) -> tuple[BoxWindows, BoxWindows, list[str]]:
    """Training and validation windows of the ETH/UCY walks of ``data.eth_ucy`` (split by whole walks; training
    windows every ``stride_s``, validation windows consecutive), and the scenes used. Empty when ``datasets`` is
    empty or the folder is missing."""
    empty = BoxWindows.concat([])
    if not section.get("datasets") or float(section.get("weight", 0.0)) <= 0:
        return empty, empty, []
    exclude = set(scenes_of(section.get("exclude") or []))
    scenes = [s for s in scenes_of(section["datasets"]) if s not in exclude]
    folder = resolve_path(section["root"])
    if not folder.is_dir():
        log(f"ETH/UCY walks: {folder} not found (skipped)")
        return empty, empty, []
    found = load_walks(folder, scenes)  # scenes without a file are skipped
    walks = [w for scene_walks in found.values() for w in scene_walks]
    train, val = split_walks(walks, float(section.get("val_fraction", 0.1)), seed)
    params = walk_camera(section)
    stride_s = float(section.get("stride_s", 2.0))
    return (walk_windows(train, length, seed + 505, params, stride_s),
            walk_windows(val, length, seed + 606, params, None), list(found))  # validation: consecutive windows


def walk_camera(section: dict) -> WalkerParams:
    """The cameras (and frame rates) that film the ETH/UCY walks: ``camera_args`` of a ``data.eth_ucy`` section."""
    return WalkerParams(**(section.get("camera_args") or {}))


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


@dataclass
class SpectrogramData:
    """Power spectra (model input) of a speech corpus or an audio folder: ``train`` (T, F), the training
    utterances' (files') frames concatenated, and ``val`` (S, segment, F), non-overlapping validation segments;
    ``speakers``: the corpus's training speakers, or the folder's training file names."""

    train: torch.Tensor
    val: torch.Tensor
    corpus: str
    speakers: list[str]

    def describe(self) -> dict:
        return {
            "corpus": self.corpus,
            "train_speakers": self.speakers,
            "train_frames": int(self.train.shape[0]),
            "val_segments": int(self.val.shape[0]),
            "segment": int(self.val.shape[1]) if len(self.val) else None,
            "bins": int(self.train.shape[1]),
        }


def build_spectrogram_data(config: dict, log: Callable[[str], None] = print) -> SpectrogramData:
    """Power spectrograms of the training and validation material in ``config["data"]["audio"]``: the train and
    val splits of a speech ``corpus``, or, when ``folder`` is set, the audio files of that folder matching the
    ``train`` and ``val`` glob patterns (any source class from a folder of clean recordings)."""
    audio = config["data"]["audio"]
    setting = STFT(int(audio["n_fft"]), int(audio["hop"]), str(audio["window"]))
    segment = int(audio["segment"])
    if audio.get("folder"):
        folders = audio_folders(audio)
        source = ", ".join(str(f) for f in folders)
        train_files = folder_files(folders, audio.get("train"))
        val_files = folder_files(folders, audio.get("val"))
        overlap = sorted({f.name for f in train_files} & {f.name for f in val_files})
        if overlap:
            raise ValueError(f"data.audio: files both in train and val: {overlap}")
        train = power_frames([read_audio(f, MODEL_RATE).samples for f in train_files], setting)
        val_frames = power_frames([read_audio(f, MODEL_RATE).samples for f in val_files], setting)
        names = [f.name for f in train_files]
    else:
        source = str(audio["corpus"])
        train_split = load_split(resolve_path(source), "train")
        train = split_power_frames(train_split, setting)
        val_frames = split_power_frames(load_split(resolve_path(source), "val"), setting)
        names = list(train_split.speaker_names)
    n_val = val_frames.shape[0] // segment
    val = val_frames[: n_val * segment].reshape(n_val, segment, -1)
    log(f"spectrograms: {train.shape[0]} training frames, {n_val} validation segments of {segment} frames ({source})")
    return SpectrogramData(train, val, source, names)


def audio_folders(audio: dict) -> list[Path]:
    """The folder(s) of a ``data: audio:`` section (``folder``: one path or a list of paths), resolved."""
    folder = audio["folder"]
    return [resolve_path(str(f)) for f in ([folder] if isinstance(folder, (str, Path)) else folder)]


def folder_files(folders: Path | list[Path], patterns) -> list[Path]:
    """Audio files of ``folders`` (one folder or a list) matching any of the glob ``patterns`` (a string or a list),
    sorted by name; every pattern is matched in every folder.

    Raises :class:`~mixdvae.errors.DataNotFoundError` for a missing folder or a pattern matching nothing."""
    folders = [folders] if isinstance(folders, Path) else list(folders)
    for folder in folders:
        if not folder.is_dir():
            raise DataNotFoundError(f"{folder}: audio folder not found")
    patterns = [patterns] if isinstance(patterns, str) else list(patterns or [])
    found: set[Path] = set()
    for pattern in patterns:
        matches = [p for folder in folders for p in folder.glob(pattern) if p.suffix.lower() in AUDIO_SUFFIXES]
        if not matches:
            where = folders[0] if len(folders) == 1 else "[" + ", ".join(str(f) for f in folders) + "]"
            raise DataNotFoundError(f"{where}: no audio file matches {pattern!r}")
        found.update(matches)
    return sorted(found, key=lambda p: (p.name, str(p)))


def split_power_frames(split, setting: STFT) -> torch.Tensor:
    """Power spectrogram frames (T, F) float32 of every utterance of ``split`` (a corpus split), concatenated."""
    return power_frames([split.utterance(i) for i in range(len(split))], setting)


def power_frames(waveforms, setting: STFT) -> torch.Tensor:
    """Power spectrogram frames (T, F) float32 of every waveform (N,) at least one STFT frame long, concatenated."""
    frames = [power_spectrogram(torch.from_numpy(np.asarray(w)), setting) for w in waveforms if len(w) >= setting.n_fft]
    if not frames:
        return torch.zeros(0, setting.n_bins)
    return torch.cat(frames).float()


def spectrogram_statistics(power: torch.Tensor, power_floor: float) -> dict:
    """Per-bin mean and std of the log-power ``log(power + power_floor)`` of ``power`` (T, F), in chunks."""
    total = torch.zeros(power.shape[1], dtype=torch.float64)
    squares = torch.zeros_like(total)
    for chunk in power.split(65536):
        log_power = torch.log(chunk.double() + power_floor)
        total += log_power.sum(0)
        squares += (log_power**2).sum(0)
    mean = total / power.shape[0]
    std = (squares / power.shape[0] - mean**2).clamp(min=1e-4).sqrt()
    return {"x_dim": int(power.shape[1]), "x_mean": mean.tolist(), "x_std": std.tolist()}


def _tensor(windows: BoxWindows, device) -> tuple[torch.Tensor, torch.Tensor]:
    return (
        torch.as_tensor(windows.to_model(), device=device),
        torch.as_tensor(windows.mask, device=device),
    )


class MotionBatches:
    """Training batches of box windows, a fixed share from each source (:meth:`PriorData.pools`), and their
    validation."""

    def __init__(self, data: PriorData, config: dict, device):
        pools = data.pools(config)
        if not pools:
            raise ValueError("no training windows: check data.real.roots, data.eth_ucy and data.synthetic")
        self.data, self.config = data, config
        self.train = [_tensor(train, device) for train, _, _ in pools]
        self.val_tensors = [(*_tensor(val, device), weight) for _, val, weight in pools if len(val)]
        self.batch_size = int(config["train"]["batch_size"])
        counts = np.floor(np.cumsum([w for *_, w in pools]) * self.batch_size + 0.5).astype(int)
        self.counts = np.diff(counts, prepend=0)  # windows drawn from each source per batch

    def describe(self) -> dict:
        return self.data.describe()

    def statistics(self) -> dict:
        return data_statistics([self.data.train_real, self.data.train_walks, self.data.train_synth])

    def fit_cv(self) -> CVParams | None:
        return self.data.fit_cv(seed=int(self.config["seed"]))

    def batch(self, rng: np.random.Generator) -> tuple[torch.Tensor, torch.Tensor]:
        """Windows (B, T, 4) and their mask (B, T)."""
        picks = [rng.integers(len(x), size=count) for (x, _), count in zip(self.train, self.counts)]
        return (torch.cat([x[idx] for (x, _), idx in zip(self.train, picks)]),
                torch.cat([m[idx] for (_, m), idx in zip(self.train, picks)]))

    def validate(self, model) -> dict:
        train_cfg = self.config["train"]
        return validate(model, self.val_tensors, float(train_cfg["ss_max"]), int(self.config["seed"]),
                        int(train_cfg.get("ss_block", 1)), train_cfg.get("ss_mse_weight"))

    def calibrate_blend(self, model, log, horizon: int = 10) -> None:
        """The ``velocity_blend`` of ``model`` (weight of the network's increment against the recent mean
        increment, on a grid of step 0.05) that maximises the mean IoU ``horizon`` steps ahead on the real
        validation windows (real tracks and ETH/UCY walks, never trained on); ties keep the larger weight. Then,
        given jitter-free calibration windows (``data.synthetic.calibration_sequences``), the ``smooth_gate`` of
        :data:`SMOOTH_GATES` that maximises their IoU among those that cost the real windows at most
        ``train.smooth_tolerance`` IoU (off when none gains): the real motion decides, the smooth windows only
        choose among what it cannot tell apart."""
        val = BoxWindows.concat([self.data.val_real, self.data.val_walks])
        if not len(val) or not hasattr(model.io, "set_velocity_blend"):
            return
        scores = {}
        for weight in np.linspace(1.0, 0.0, 21):
            model.io.set_velocity_blend(weight, model.config)
            scores[round(float(weight), 2)] = evaluate_dvae(model, val, horizon).summary()["iou_10"]
        best = max(scores, key=scores.get)  # the first maximum: the largest weight among ties
        model.io.set_velocity_blend(best, model.config)
        log(f"velocity blend {best:.2f} on {len(val)} real validation windows: IoU@{horizon} {scores[best]:.4f} "
            f"(network alone {scores[1.0]:.4f}, constant velocity {scores[0.0]:.4f})")
        smooth = self.data.val_smooth
        if not len(smooth) or model.io.history < 2:
            return
        real_floor = scores[best] - float(self.config["train"]["smooth_tolerance"])
        gates = {}
        for tau in (0.0, *SMOOTH_GATES):
            model.io.set_smooth_gate(tau, model.config)
            real = evaluate_dvae(model, val, horizon).summary()["iou_10"] if tau else scores[best]
            gates[tau] = (evaluate_dvae(model, smooth, horizon).summary()["iou_10"], real)
        admissible = [0.0] + [t for t in SMOOTH_GATES if gates[t][1] >= real_floor]  # NaN scores: off
        tau = max(admissible, key=lambda t: gates[t][0])
        model.io.set_smooth_gate(tau, model.config)
        log(f"smooth-track gate {tau:g} on {len(smooth)} jitter-free windows: IoU@{horizon} {gates[tau][0]:.4f} "
            f"(off {gates[0.0][0]:.4f}), real validation {gates[tau][1]:.4f}; tried "
            + ", ".join(f"{t:g}: {g:.4f} / {r:.4f}" for t, (g, r) in gates.items()))

    def calibrate(self, model, log) -> None:
        """Per-coordinate factor on the predicted variance that makes the next-step predictions of the real
        validation windows (real tracks and ETH/UCY walks, never trained on) calibrated: the maximum-likelihood
        scale ``mean((x - mean)^2 / var)`` over their scored steps."""
        val = BoxWindows.concat([self.data.val_real, self.data.val_walks])
        if not len(val) or not hasattr(model.io, "set_var_scale"):
            return
        x = val.to_model()
        mean, var, _ = dvae_predictions(model, x, horizon=0)
        x = x.astype(np.float64)
        scored = val.mask & (np.arange(val.length) >= 2)[None]
        scale = (((x - mean) ** 2 / var)[scored]).mean(0) * model.io.var_scale.cpu().numpy()
        model.io.set_var_scale(scale, model.config)
        log(f"variance calibrated on {int(scored.sum())} real validation boxes: x {np.round(scale, 3).tolist()}")


class SpectrogramBatches:
    """Training batches of random ``segment``-frame crops of the training power spectrogram, and validation."""

    def __init__(self, data: SpectrogramData, config: dict, device):
        self.segment = int(config["data"]["audio"]["segment"])
        if data.train.shape[0] < self.segment:
            raise ValueError(f"{data.corpus}: fewer than {self.segment} training frames")
        self.data, self.config, self.device = data, config, device
        self.batch_size = int(config["train"]["batch_size"])
        self.offsets = torch.arange(self.segment)
        warp = config["data"]["audio"].get("warp")
        if warp is not None and (len(warp) != 2 or not 0.5 <= float(warp[0]) <= float(warp[1]) <= 2.0):
            raise ValueError(f"data.audio.warp must be [low, high] with 0.5 <= low <= high <= 2, got {warp!r}")
        self.warp = None if warp is None else (float(warp[0]), float(warp[1]))
        self.eq_db = float(config["data"]["audio"].get("eq_db") or 0.0)
        if not 0.0 <= self.eq_db <= 40.0:
            raise ValueError(f"data.audio.eq_db must be in [0, 40] dB, got {self.eq_db}")

    def describe(self) -> dict:
        return self.data.describe()

    def statistics(self) -> dict:
        floor = float(self.config["model"].get("power_floor", LogPowerIO.default_power_floor))
        return spectrogram_statistics(self.data.train, floor)

    def fit_cv(self) -> None:
        return None

    def calibrate_blend(self, model, log) -> None:
        raise ValueError("train.calibrate_blend applies to motion priors (box windows) only")

    def calibrate(self, model, log) -> None:
        raise ValueError("train.calibrate_variance applies to motion priors (box windows) only")

    def batch(self, rng: np.random.Generator) -> tuple[torch.Tensor, torch.Tensor]:
        """Power segments (B, segment, F) and an all-true mask (B, segment)."""
        starts = torch.from_numpy(rng.integers(self.data.train.shape[0] - self.segment + 1, size=self.batch_size))
        x = self.data.train[starts[:, None] + self.offsets]
        if self.warp is not None:
            x = warp_frequencies(x, torch.from_numpy(rng.uniform(*self.warp, size=self.batch_size)).float())
        if self.eq_db > 0:
            x = x * random_equaliser(rng, self.batch_size, x.shape[-1], self.eq_db).unsqueeze(1)
        x = x.to(self.device)
        return x, torch.ones(x.shape[:2], dtype=torch.bool, device=self.device)

    @torch.no_grad()
    def validate(self, model, chunk: int = 64) -> dict:
        """``val_score`` (negative ELBO at the final beta, nats per frame), ``val_recon``, ``val_kl`` and
        ``val_is`` (mean Itakura-Saito divergence per bin of the reconstructions), fixed random stream."""
        if not len(self.data.val):
            return {}
        model.eval()
        beta = float(self.config["train"]["beta"])
        generator = torch.Generator(device="cpu").manual_seed(int(self.config["seed"]) + 999)
        sums = {"val_recon": 0.0, "val_kl": 0.0, "val_is": 0.0}
        for x in self.data.val.split(chunk):
            x = x.to(self.device)
            out = model.elbo(x, beta=beta, generator=generator)
            ratio = x / out["var"]
            sums["val_recon"] += float(out["recon"]) * len(x)
            sums["val_kl"] += float(out["kl"]) * len(x)
            sums["val_is"] += float((ratio - torch.log(ratio) - 1).mean()) * len(x)
        row = {k: v / len(self.data.val) for k, v in sums.items()}
        row["val_score"] = row["val_recon"] + beta * row["val_kl"]
        return row


def warp_frequencies(power: torch.Tensor, factors: torch.Tensor) -> torch.Tensor:
    """Vocal-tract-length perturbation: each power spectrogram of ``power`` (B, T, F) with its frequency axis
    stretched by ``factors`` (B,) (> 1 moves formants and harmonics up): bin f takes the linearly interpolated
    power at bin f / factor; above the last bin the last bin's power is repeated."""
    F = power.shape[-1]
    position = (torch.arange(F, dtype=torch.float32) / factors[:, None]).clamp(max=F - 1)  # (B, F)
    low = position.floor().long()
    high = (low + 1).clamp(max=F - 1)
    weight = (position - low).unsqueeze(1)  # (B, 1, F)
    expand = (-1, power.shape[1], -1)
    below = power.gather(2, low.unsqueeze(1).expand(*expand))
    above = power.gather(2, high.unsqueeze(1).expand(*expand))
    return torch.lerp(below, above, weight)


def random_equaliser(rng: np.random.Generator, batch: int, n_bins: int, max_db: float) -> torch.Tensor:
    """Random smooth spectral envelopes (timbre, microphone or channel colouring) as power gains (batch, n_bins):
    in dB, ``max_db / 3 * sum_{j=1..3} a_j cos(pi j u)`` with ``a_j`` uniform in [-1, 1] and ``u`` the bin's
    position on the mel scale in [0, 1], so at most ``max_db`` dB anywhere."""
    hz = np.linspace(0.0, MODEL_RATE / 2, n_bins)
    u = np.log1p(hz / 700.0) / np.log1p(hz[-1] / 700.0)  # (n_bins,) mel position
    a = rng.uniform(-1.0, 1.0, size=(batch, 3))
    db = max_db / 3 * (a @ np.cos(np.pi * np.arange(1, 4)[:, None] * u[None]))  # (batch, n_bins)
    return torch.from_numpy(10.0 ** (db / 10.0)).float()


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
    data: PriorData | SpectrogramData | None = None,
) -> TrainResult:
    """Train the model described by ``config`` (merged over :data:`DEFAULT_CONFIG`, or over
    :data:`AUDIO_DEFAULT_CONFIG` for a ``data: audio:`` config); see the module docstring.

    Writes ``output.checkpoint`` (default ``output.dir/<model>.pt``), ``output.dir/history.json`` and, when
    ``output.plot``, ``output.dir/loss_curve.png``. Returns the best model (eval mode) and the history.
    """
    config = merge_config(AUDIO_DEFAULT_CONFIG if is_audio_config(config) else DEFAULT_CONFIG, config)
    with _torch_threads(config):
        return _train(config, log, progress, data)


@contextmanager
def _torch_threads(config: dict) -> Iterator[None]:
    """torch's CPU threads set to ``train.threads`` (when given) inside the block, restored after."""
    threads = torch.get_num_threads()
    if config["train"].get("threads"):
        torch.set_num_threads(int(config["train"]["threads"]))
    try:
        yield
    finally:
        torch.set_num_threads(threads)


def _batches(config: dict, log, data, device) -> MotionBatches | SpectrogramBatches:
    if is_audio_config(config):
        return SpectrogramBatches(data or build_spectrogram_data(config, log), config, device)
    return MotionBatches(data or build_data(config, log), config, device)


def _train(config: dict, log, progress: bool, data) -> TrainResult:
    seed = int(config["seed"])
    train_cfg = config["train"]
    torch.manual_seed(seed)
    device = torch.device(train_cfg.get("device", "cpu"))
    started = time.time()
    batches = _batches(config, log, data, device)
    log(f"data: {json.dumps(batches.describe())}")

    stats = batches.statistics()
    model_cfg = merge_config(config["model"], stats)
    name = model_cfg.get("model", "srnn")
    model = MODELS.get(name)(model_cfg).to(device)
    log(f"model: {name}, {sum(p.numel() for p in model.parameters())} parameters, inc_std={stats.get('inc_std')}")

    if train_cfg.get("init_from"):
        initialise_modules(model, train_cfg["init_from"], train_cfg.get("init_modules") or [], stats, log)
    freeze_modules(model, train_cfg.get("freeze") or [])

    cv = batches.fit_cv()
    trainable = [p for p in model.parameters() if p.requires_grad]
    optimiser = torch.optim.Adam(trainable, lr=float(train_cfg["lr"]),
                                 weight_decay=float(train_cfg["weight_decay"]))
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
        p_own = _schedule(epoch, float(train_cfg["ss_start_epoch"]), float(train_cfg["ss_ramp_epochs"]),
                          float(train_cfg["ss_max"]))
        model.train()
        sums = {"loss": 0.0, "recon": 0.0, "kl": 0.0, "pred": 0.0}
        for _ in range(int(train_cfg["batches_per_epoch"])):
            x, mask = batches.batch(batch_rng)
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
            torch.nn.utils.clip_grad_norm_(trainable, float(train_cfg["grad_clip"]))
            optimiser.step()
            for key, value in (("loss", loss), ("recon", out["recon"]), ("kl", out["kl"]), ("pred", pred)):
                sums[key] += float(value.detach())
        n_batches = int(train_cfg["batches_per_epoch"])
        row = {k: v / n_batches for k, v in sums.items()}
        row.update(epoch=epoch + 1, beta=beta, p_own=p_own, lr=optimiser.param_groups[0]["lr"],
                   seconds=time.time() - started)
        row.update(batches.validate(model))
        history.append(row)
        score = row.get("val_score", row["loss"])
        # best model only once the schedules have reached their final values (scores are comparable then)
        ss_done = float(train_cfg["ss_start_epoch"]) + float(train_cfg["ss_ramp_epochs"])
        settled = epoch + 1 >= max(float(train_cfg["kl_warmup_epochs"]), ss_done)
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
        score = history[-1].get("val_score", history[-1]["loss"])
        best = (score, history[-1]["epoch"], copy.deepcopy(model.state_dict()))
    model.load_state_dict(best[2])
    model.eval()
    _calibrate(model, batches, train_cfg, log)
    seconds = time.time() - started
    model.meta = {
        "trained_by": "tools/train_prior.py",
        "recipe_version": RECIPE_VERSION,
        "train_config": config,
        "data": batches.describe(),
        "best_epoch": best[1],
        "best_val_score": float(best[0]),
        "epochs_run": len(history),
        "train_seconds": round(seconds, 1),
        "cv": cv.to_dict() if cv is not None else None,
    }
    checkpoint = _save(model, config)
    model.to(device)
    out_dir = resolve_path(config["output"]["dir"])
    (out_dir / "history.json").write_text(json.dumps(history, indent=1))
    if config["output"].get("plot", True):
        plot_history(history, out_dir / "loss_curve.png", title=f"{name} prior (best epoch {best[1]})")
    log(f"best epoch {best[1]} (val score {best[0]:.4f}), {len(history)} epochs in {seconds:.0f} s -> {checkpoint}")
    return TrainResult(model, history, best[1], seconds, cv, checkpoint)


def _calibrate(model, batches, train_cfg: dict, log) -> None:
    if train_cfg.get("calibrate_blend"):  # before the variance: the variance is calibrated for the blended mean
        batches.calibrate_blend(model, log)
    if train_cfg.get("calibrate_variance"):
        batches.calibrate(model, log)


def _save(model, config: dict) -> Path:
    """Write ``model`` to ``output.checkpoint`` (default ``output.dir/<model>.pt``); returns the path."""
    out_dir = resolve_path(config["output"]["dir"])
    out_dir.mkdir(parents=True, exist_ok=True)
    checkpoint = resolve_path(config["output"].get("checkpoint") or out_dir / f"{model.model_name}.pt")
    model.cpu().save(checkpoint)
    return checkpoint


def calibrate_prior(config: dict, checkpoint: str | Path, log: Callable[[str], None] = print) -> TrainResult:
    """Run the post-training calibrations of ``config`` (``train.calibrate_blend``, ``train.calibrate_variance``)
    anew on the trained motion prior ``checkpoint`` (a shipped name or a path), without training: for a prior
    whose calibration data or rule changed since it was trained. The network weights are kept; the model config
    and the data statistics of ``config``'s training windows must be those the checkpoint was trained with
    (:class:`ConfigError` otherwise). Writes ``output.checkpoint`` (default ``output.dir/<model>.pt``)."""
    from . import load_prior

    config = merge_config(DEFAULT_CONFIG, config)
    if is_audio_config(config):
        raise ConfigError("calibration applies to motion priors (box windows) only")
    started = time.time()
    model = load_prior(checkpoint)
    if not hasattr(model.io, "set_velocity_blend"):
        raise ConfigError(f"{checkpoint}: calibration applies to box priors (param box_increment)")
    for key, value in config["model"].items():
        if model.config.get(key) != value:
            raise ConfigError(f"model.{key}: {checkpoint} has {model.config.get(key)!r}, the config {value!r}")
    with _torch_threads(config):
        batches = _batches(config, log, None, torch.device("cpu"))
        key = _differing_statistic(model.config, batches.statistics(), rtol=1e-5, atol=0.0)
        if key:
            raise ConfigError(f"{checkpoint} was trained on other windows than the config's (its {key} differs)")
        model.io.set_velocity_blend(1.0, model.config)
        model.io.set_smooth_gate(None, model.config)
        model.io.set_var_scale([1.0] * 4, model.config)
        _calibrate(model, batches, config["train"], log)
    model.meta = {**model.meta, "recipe_version": RECIPE_VERSION, "train_config": config, "data": batches.describe(),
                  "calibrated_from": str(checkpoint)}
    checkpoint_out = _save(model, config)
    seconds = time.time() - started
    log(f"calibrated {checkpoint} in {seconds:.0f} s (weights kept) -> {checkpoint_out}")
    cv = model.meta.get("cv")
    return TrainResult(model, [], int(model.meta.get("best_epoch", 0)), seconds,
                       CVParams.from_dict(cv) if cv else None, checkpoint_out)


STATS_ATOL = 1e-2  # log-power units (nats, 0.04 dB); two priors trained on one corpus in other sessions: 1.7e-4


def _differing_statistic(model_config: dict, stats: dict, rtol: float, atol: float) -> str | None:
    """The first key of the data statistics ``stats`` that ``model_config`` lacks or holds other values of (beyond
    the tolerances); None when all agree."""
    for key, value in stats.items():
        theirs = model_config.get(key)
        if theirs is None or not np.allclose(np.asarray(theirs, float), np.asarray(value, float), rtol=rtol,
                                             atol=atol):
            return key
    return None


def _named_module(model, name: str, key: str) -> torch.nn.Module:
    module = getattr(model, name, None)
    if not isinstance(module, torch.nn.Module):
        children = sorted(n for n, _ in model.named_children())
        raise ConfigError(f"{key}: a {model.model_name} has no module {name!r} (it has: {', '.join(children)})")
    return module


def initialise_modules(model, source: str, names: list[str], stats: dict, log) -> None:
    """Copy the weights of the modules ``names`` (e.g. ``["decoder", "embed_x"]``) from the trained prior
    ``source`` (a shipped name or a path) into ``model``: a two-stage training, e.g. a DKF built on a VAE's
    decoder. The source must have been trained on the same data statistics (``x_mean``, ``x_std``: the units of
    its inputs and outputs, to :data:`STATS_ATOL`) and its modules must have the same shapes;
    :class:`ConfigError` names the key."""
    from . import load_prior

    if not names:
        raise ConfigError("train.init_modules: name the modules to copy from train.init_from (e.g. [decoder])")
    prior = load_prior(source)
    key = _differing_statistic(prior.config, stats, rtol=0.0, atol=STATS_ATOL)
    if key:
        raise ConfigError(f"train.init_from: {source} was trained on other data (its {key} differs)")
    for name in names:
        target, origin = _named_module(model, name, "train.init_modules"), _named_module(prior, name, "train.init_from")
        mine, theirs = target.state_dict(), origin.state_dict()
        if {k: v.shape for k, v in mine.items()} != {k: v.shape for k, v in theirs.items()}:
            raise ConfigError(f"train.init_modules: module {name!r} of {source} has other shapes than this model's")
        target.load_state_dict(theirs)
    log(f"initialised {', '.join(names)} from {source}")


def freeze_modules(model, names: list[str]) -> None:
    """Exclude the modules ``names`` from training (their weights stay as initialised)."""
    for name in names:
        for parameter in _named_module(model, name, "train.freeze").parameters():
            parameter.requires_grad_(False)


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
    train_curves = (("loss", "train loss"), ("recon", "train -log p(x|z)"),
                    ("pred", "train prediction loss (sched. sampling)"))
    for key, label in train_curves:
        axes[0].plot(epochs, [row[key] for row in history], label=label)
    for key, label in (("val_score", "val score (early stopping)"), ("val_nll1", "val NLL (next step)"),
                       ("val_own_err", "val own-fed scaled sq. error"), ("val_recon", "val -log p(x|z)")):
        if key in history[0]:
            axes[0].plot(epochs, [row[key] for row in history], label=label)
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
