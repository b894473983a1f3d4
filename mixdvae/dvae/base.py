"""Common base of the dynamical VAEs (SRNN, VRNN, DKF, RVAE) and of the frame-independent VAE.

Conventions (all models):

* Data ``x`` is (B, T, x_dim), batched over sequences; ``mask`` (B, T) marks the valid steps (windows shorter
  than T are padded at the end). For trajectories, x is a box ``cx, cy, w, h`` in the model coordinates of
  :mod:`mixdvae.data.normalization` (relative to the window's first box, divided by its height).
* Generative recurrence, one call per time step ``t = 1..T``::

      state = model.init_state(B);  x_prev = model.x0(B)
      for t in 1..T:
          mean, var, state = model.step(state, x_prev, z_t or None)   # N(mean, diag var) of x_t
          x_prev = <x_t, or its current estimate>

  ``step`` is pure tensor code over the batch (sources x windows in the VEM). With ``z=None`` it uses the mean
  of the latent prior ``p(z_t | ...)`` (deterministic prediction); with a given ``z`` (e.g. the mean of
  ``q(z | x)`` from :meth:`DVAE.encode`) it decodes that latent. ``state = model.advance(state, x_prev, z)``
  is the same state without the prediction (running the model over a known past). Each model writes one
  ``_transition`` (the new state and the decoder's inputs); ``step`` and ``advance`` are built on it.
* The output parameterisation (``config["param"]``) is an internal choice of the model:

  ``"box_increment"`` (default for 4-d boxes): the networks see the last increment ``x_{t-1} - x_{t-2}``, the
  mean increment over the last ``config["history"]`` steps (a less noisy velocity), the aspect ratio and two
  flags (first step / no velocity yet), all divided by the current box height ``x_{t-1}[3]``, never the
  absolute position; they output the next increment in units of that height::

      mean_t = x_{t-1} + s * inc_std * d_t,   var_t = (s * inc_std)^2 * exp(l_t),   s = x_{t-1}[3]

  so the prior is invariant to translation and scale at every step, not only at the window's first box. The
  first box of a window is the normalisation reference, ``(0, 0, w/h, 1)`` by construction: the likelihood
  conditions on it (``elbo`` scores ``x_{2:T}``), and ``step`` at t = 1 returns the fixed guess ``x0`` with the
  fixed variance ``config["first_var"]``.

  With ``config["velocity_blend"] = w < 1`` (fitted after training on held-out real windows, see
  :mod:`.training`), ``d_t`` becomes ``w * d_t + (1 - w) * v_t`` once a velocity exists (t >= 3), ``v_t`` the
  mean increment over the last ``history`` steps in the same units: the network's prediction averaged with a
  constant-velocity extrapolation, whose errors differ from the network's (an ensemble of the two predictors).
  With ``config["smooth_gate"] = tau > 0`` (also fitted after training), a track that moves smoothly is
  extrapolated from its last increment instead: with ``J`` the mean absolute second difference of the box
  centre over the history (``inc_std`` x height units, cx and cy summed) and ``lam = exp(-J / tau)``, the
  velocity becomes ``lam * (last increment) + (1 - lam) * v_t`` and the network's weight ``w * (1 - lam)``.
  Jittery tracks (real annotations, detections: J >> tau) keep the blend above; jitter-free ones (interpolated
  or smoothed ground truth, the model's own free run) follow their instantaneous velocity, which the mean over
  ``history`` steps lags when the motion curves.

  ``"direct"``: the networks see and predict standardised ``x`` (``mean = x_mean + x_std * d``); every step
  is scored. Meant for other real-valued data.

  ``"log_power"``: power spectra (x = |STFT|^2 per bin, x_dim = F). The networks see the standardised
  log-power ``(log(x + power_floor) - x_mean) / x_std`` (``x_mean``, ``x_std``: per-bin statistics of the
  log-power) and output the log-variance of the complex-Gaussian source, ``log v = x_mean + l`` with ``l``
  soft-clamped to ``logvar_range``; ``mean = var = v`` (the expected power of a complex Gaussian of variance
  v). Use it with ``likelihood: itakura_saito``; every step is scored.
* The reconstruction likelihood is pluggable (``config["likelihood"]``, see :mod:`.likelihood`).
* Log-variances are soft-clamped (``config["logvar_range"]`` for x, ``config["z_logvar_range"]`` for z), so
  variances are never zero, infinite or NaN.
"""

from __future__ import annotations

import copy
import math
import os
import tempfile
from pathlib import Path
from typing import Any

import torch
from torch import nn

from mixdvae.errors import DataNotFoundError, InputError
from mixdvae.registry import Registry

from .likelihood import make_likelihood

CHECKPOINT_FORMAT = "mixdvae-dvae"
CHECKPOINT_VERSION = 1

MODELS = Registry("DVAE model", key="model_name")  # model_name -> DVAE subclass, filled by subclassing

BASE_DEFAULTS: dict[str, Any] = {
    "x_dim": 4,
    "z_dim": 8,
    "h_dim": 64,
    "dense_dim": 64,
    "embed_dim": 32,
    "likelihood": "gaussian",
    "param": "box_increment",
    "history": 1,  # past inputs kept in the state for the features (box_increment: mean increment over them)
    # statistics of the data the networks see (set from the training data by the trainer)
    "inc_std": [0.02, 0.015, 0.02, 0.015],  # per-frame increments of boxes, in box heights
    "aspect_mean": 0.4,
    "aspect_std": 0.1,
    "x_mean": None,  # "direct" parameterisation: per-dimension mean and std of x
    "x_std": None,
    "first_var": [0.0025, 0.0025, 0.01, 0.0025],  # variance of the t = 1 guess x0 (model units)
    "var_scale": None,  # box_increment: per-coordinate factor on the predicted variance (calibration; None = 1)
    "velocity_blend": None,  # box_increment: weight of the network's increment in the mean (calibration; None = 1)
    "smooth_gate": None,  # box_increment: tau of the smooth-track gate (calibration; None = off)
    "logvar_range": [-12.0, 6.0],  # soft clamp of the decoder log-variance (normalised units)
    "z_logvar_range": [-10.0, 4.0],
}


class CheckpointError(InputError):
    """A DVAE checkpoint that cannot be used: unreadable, corrupt, or not matching its config."""


def soft_clamp(raw: torch.Tensor, low: float, high: float) -> torch.Tensor:
    """Map any real ``raw`` smoothly into ``(low, high)``; ``raw = 0`` maps to the midpoint."""
    return low + (high - low) * torch.sigmoid(raw)


def mlp(in_dim: int, hidden: int, out_dim: int) -> nn.Sequential:
    return nn.Sequential(nn.Linear(in_dim, hidden), nn.Tanh(), nn.Linear(hidden, out_dim))


def randn_like(t: torch.Tensor, generator: torch.Generator | None = None) -> torch.Tensor:
    """Standard normal noise shaped like ``t``, from ``generator`` when given (reproducible sampling)."""
    if generator is None:
        return torch.randn(t.shape, device=t.device, dtype=t.dtype)
    return torch.randn(t.shape, device=generator.device, dtype=t.dtype, generator=generator).to(t.device)


def lstm_cell(lstm: nn.LSTM, inputs: torch.Tensor, h: torch.Tensor, c: torch.Tensor):
    """One step of the single-layer ``nn.LSTM`` ``lstm`` (same weights and gate order as the fused pass over a
    sequence), cheaper than calling the module on a length-1 sequence."""
    gates = (nn.functional.linear(inputs, lstm.weight_ih_l0, lstm.bias_ih_l0)
             + nn.functional.linear(h, lstm.weight_hh_l0, lstm.bias_hh_l0))
    i, f, g, o = gates.chunk(4, dim=-1)
    c = torch.sigmoid(f) * c + torch.sigmoid(i) * torch.tanh(g)
    return torch.sigmoid(o) * torch.tanh(c), c


def reverse_valid(seq: torch.Tensor, lengths: torch.Tensor | None) -> torch.Tensor:
    """Reverse each sequence of ``seq`` (B, T, ...) within its valid prefix of ``lengths`` (B,) steps, leaving the
    padding in place (an involution). With ``lengths=None``, a plain flip. A forward RNN over the result is a
    backward RNN over each valid prefix that never sees the padding."""
    if lengths is None:
        return seq.flip(1)
    length = seq.shape[1]
    t = torch.arange(length, device=seq.device).unsqueeze(0)
    lengths = lengths.to(seq.device).long().unsqueeze(1)
    index = torch.where(t < lengths, lengths - 1 - t, t)
    index = index.view(*index.shape, *([1] * (seq.dim() - 2))).expand_as(seq)
    return seq.gather(1, index)


def gaussian_kl(q_mean, q_var, p_mean, p_var) -> torch.Tensor:
    """KL(N(q) || N(p)) for diagonal Gaussians, summed over the last axis."""
    return 0.5 * (torch.log(p_var) - torch.log(q_var) + (q_var + (q_mean - p_mean) ** 2) / p_var - 1.0).sum(-1)


class GaussianHead(nn.Module):
    """MLP to a mean and a soft-clamped variance."""

    def __init__(self, in_dim: int, hidden: int, out_dim: int, logvar_range):
        super().__init__()
        self.net = mlp(in_dim, hidden, 2 * out_dim)
        self.low, self.high = float(logvar_range[0]), float(logvar_range[1])

    def forward(self, inputs: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        mean, raw = self.net(inputs).chunk(2, dim=-1)
        return mean, torch.exp(soft_clamp(raw, self.low, self.high))


# --------------------------------------------------------------------------------------------------------------
# input/output parameterisations


class _History:
    """The last ``history`` inputs before x_{t-1}, kept in the state: ``hist[:, j] = x_{t-2-j}``."""

    history = 1

    def init_history(self, batch_size: int, device=None) -> torch.Tensor:
        return self.x0(batch_size, device).unsqueeze(1).repeat(1, self.history, 1)

    @staticmethod
    def push(hist: torch.Tensor, x_prev: torch.Tensor) -> torch.Tensor:
        return torch.cat([x_prev.unsqueeze(1), hist[:, :-1]], dim=1)

    def sequence_history(self, x: torch.Tensor):
        """Teacher-forced ``x_prev`` (B, T, D) and the histories (B, T, K, D) of x_{t-1} and of x_t."""
        batch, length, _ = x.shape
        k = self.history
        xp = torch.cat([self.x0(batch, x.device).unsqueeze(1).expand(batch, k + 1, -1), x], dim=1)
        x_prev = xp[:, k : k + length]
        hist_prev = torch.stack([xp[:, k - 1 - j : k - 1 - j + length] for j in range(k)], dim=2)
        hist_cur = torch.stack([xp[:, k - j : k - j + length] for j in range(k)], dim=2)
        return x_prev, hist_prev, hist_cur


class BoxIncrementIO(_History, nn.Module):
    """Translation- and scale-invariant features and increment outputs for boxes ``cx, cy, w, h``.

    Features of x_{t-1}: its last increment, the mean increment over the last ``history`` steps (when
    ``history > 1``: a less noisy velocity), all in current box heights and divided by ``inc_std``; the aspect
    ratio (standardised); flags "first step" and "no increment yet"."""

    first_scored_step = 1  # 0-based index of the first step the likelihood scores (x_1 is the reference)

    def __init__(self, config: dict):
        super().__init__()
        if config["x_dim"] != 4:
            raise ValueError("param 'box_increment' needs x_dim = 4 (cx, cy, w, h)")
        self.history = int(config.get("history", 1))
        if self.history < 1:
            raise ValueError("history must be >= 1")
        self.feature_dim = 7 + (4 if self.history > 1 else 0)
        self.register_buffer("inc_std", torch.tensor(config["inc_std"], dtype=torch.float32))
        self.register_buffer("first_var", torch.tensor(config["first_var"], dtype=torch.float32))
        # kept in the config (not the state dict), so checkpoints from before the calibration still load
        self.register_buffer("var_scale", self._check_scale(config.get("var_scale")), persistent=False)
        self.velocity_blend = self._check_blend(config.get("velocity_blend"))
        self.smooth_gate = self._check_gate(config.get("smooth_gate"))
        self.aspect_mean = float(config["aspect_mean"])
        self.aspect_std = float(config["aspect_std"])
        self.low, self.high = (float(v) for v in config["logvar_range"])

    @staticmethod
    def _check_scale(scale) -> torch.Tensor:
        scale = torch.tensor([1.0] * 4 if scale is None else scale, dtype=torch.float32)
        if scale.shape != (4,) or not bool(torch.isfinite(scale).all() and (scale > 0).all()):
            raise ValueError(f"var_scale must be 4 positive finite numbers, got {scale.tolist()}")
        return scale

    @staticmethod
    def _check_blend(weight) -> float:
        weight = 1.0 if weight is None else weight
        if isinstance(weight, bool) or not isinstance(weight, (int, float)) or not 0.0 <= weight <= 1.0:
            raise ValueError(f"velocity_blend must be a number in [0, 1], got {weight!r}")
        return float(weight)

    @staticmethod
    def _check_gate(tau) -> float:
        tau = 0.0 if tau is None else tau
        if isinstance(tau, bool) or not isinstance(tau, (int, float)) or not 0.0 <= tau < math.inf:
            raise ValueError(f"smooth_gate must be a finite number >= 0 (0 or None: off), got {tau!r}")
        return float(tau)

    def set_smooth_gate(self, tau: float | None, config: dict) -> None:
        """Scale ``tau`` of the smooth-track gate from now on (None or 0: off), recorded in ``config``."""
        self.smooth_gate = self._check_gate(tau)
        config["smooth_gate"] = self.smooth_gate or None

    def set_velocity_blend(self, weight: float, config: dict) -> None:
        """Weight ``weight`` in [0, 1] of the network's increment in the predicted mean from now on (the rest:
        the recent mean increment), recorded in ``config`` so that a saved checkpoint keeps it."""
        self.velocity_blend = self._check_blend(weight)
        config["velocity_blend"] = self.velocity_blend

    def set_var_scale(self, scale, config: dict) -> None:
        """Multiply every predicted variance (after the first step) by ``scale`` (4,) per coordinate from now on,
        and record it in ``config`` so that a saved checkpoint keeps it."""
        self.var_scale = self._check_scale(scale).to(self.inc_std.device)
        config["var_scale"] = [float(v) for v in scale]

    def x0(self, batch_size: int, device=None) -> torch.Tensor:
        x0 = torch.tensor([0.0, 0.0, self.aspect_mean, 1.0], device=device)
        return x0.expand(batch_size, 4).clone()

    @staticmethod
    def _scale(x_prev: torch.Tensor) -> torch.Tensor:
        return x_prev[..., 3:4].clamp(min=0.05)

    def features(self, x_prev: torch.Tensor, hist: torch.Tensor, n: torch.Tensor) -> torch.Tensor:
        """Features of ``x_prev`` = x_{t-1} given ``hist`` (..., K, 4) = x_{t-2}, x_{t-3}, ...; ``n`` (..., 1) =
        t - 1, the number of steps already taken."""
        s = self._scale(x_prev)
        has_vel = (n >= 2).to(x_prev.dtype)
        first = (n < 1).to(x_prev.dtype)
        vel = (x_prev - hist[..., 0, :]) / s / self.inc_std * has_vel
        aspect = (x_prev[..., 2:3] / s - self.aspect_mean) / self.aspect_std * (1 - first)
        parts = [vel.clamp(-50, 50)]
        if self.history > 1:
            # mean increment over the k = min(history, t - 2) last steps (x_1 .. x_{t-1} are real)
            k = (n - 1).clamp(min=1, max=self.history)  # (..., 1)
            index = (k - 1).long().unsqueeze(-1).expand(*k.shape[:-1], 1, x_prev.shape[-1])
            past = hist.gather(-2, index).squeeze(-2)
            parts.append(((x_prev - past) / k / s / self.inc_std * has_vel).clamp(-50, 50))
        return torch.cat([*parts, aspect.clamp(-10, 10), first, 1 - has_vel], dim=-1)

    @staticmethod
    def last_increment(features: torch.Tensor) -> torch.Tensor:
        """The last increment ``x_{t-1} - x_{t-2}``, in units of ``inc_std`` times the box height, read from
        ``features`` (..., feature_dim) of :meth:`features`."""
        return features[..., :4]

    def recent_increment(self, features: torch.Tensor) -> torch.Tensor:
        """The mean increment over the last ``history`` steps (the last one when ``history`` is 1), in units of
        ``inc_std`` times the box height, read from ``features`` (..., feature_dim) of :meth:`features`."""
        return features[..., 4:8] if self.history > 1 else self.last_increment(features)

    def error_scale(self, x_prev: torch.Tensor) -> torch.Tensor:
        """Typical size of an increment after ``x_prev``: ``inc_std`` times the current box height."""
        return self._scale(x_prev) * self.inc_std

    def smoothness(self, x_prev: torch.Tensor, hist: torch.Tensor, n: torch.Tensor) -> torch.Tensor:
        """``lam`` (..., 1) in [0, 1] of the smooth-track gate: ``exp(-J / smooth_gate)``, ``J`` the mean absolute
        second difference of the centre (cx + cy, in ``inc_std`` times the current box height) over the real
        boxes among ``x_prev`` and ``hist`` (..., K, 4); 0 before three real boxes, with the gate off, or with
        ``history`` 1 (no second difference kept)."""
        if self.smooth_gate <= 0 or self.history < 2:
            return torch.zeros_like(x_prev[..., :1])
        positions = torch.cat([x_prev.unsqueeze(-2), hist], dim=-2)[..., :2]  # (..., K+1, 2) newest first
        scale = (self._scale(x_prev) * self.inc_std[:2]).unsqueeze(-2)  # (..., 1, 2)
        increments = (positions[..., :-1, :] - positions[..., 1:, :]) / scale  # (..., K, 2)
        second = (increments[..., :-1, :] - increments[..., 1:, :]).abs().sum(-1)  # (..., K-1)
        # second difference j needs x_{t-1-j}, x_{t-2-j}, x_{t-3-j} real: x_1 .. x_{t-1} are, n = t - 1
        real = (torch.arange(second.shape[-1], device=n.device) + 3 <= n).to(second.dtype)  # (..., K-1)
        count = real.sum(-1, keepdim=True)
        jerk = (second * real).sum(-1, keepdim=True) / count.clamp(min=1)
        return torch.exp(-jerk / self.smooth_gate) * (count > 0)

    def output(self, raw_mean, raw_logvar, x_prev, n, features=None, hist=None) -> tuple[torch.Tensor, torch.Tensor]:
        """Mean and variance of x_t from the decoder's raw outputs; ``features``: those of ``x_prev`` (from
        :meth:`features`), needed when ``velocity_blend < 1``; ``hist``: its history, needed with the smooth-track
        gate."""
        s = self._scale(x_prev) * self.inc_std
        increment = raw_mean
        if self.velocity_blend < 1.0 or self.smooth_gate > 0:
            if features is None or (self.smooth_gate > 0 and hist is None):
                raise ValueError("velocity_blend < 1 needs the features of x_prev (and smooth_gate its history)")
            weight, velocity = self.velocity_blend, self.recent_increment(features)
            if self.smooth_gate > 0:
                lam = self.smoothness(x_prev, hist, n)
                velocity = lam * self.last_increment(features) + (1.0 - lam) * velocity
                weight = weight * (1.0 - lam)
            increment = torch.where(n >= 2, weight * raw_mean + (1.0 - weight) * velocity, raw_mean)
        mean = x_prev + s * increment
        var = s**2 * torch.exp(soft_clamp(raw_logvar, self.low, self.high)) * self.var_scale
        first = n < 1
        if bool(first.any()):
            mean = torch.where(first, self.x0(1, x_prev.device).to(mean.dtype), mean)
            var = torch.where(first, self.first_var.to(var.dtype), var)
        return mean, var


class DirectIO(_History, nn.Module):
    """Standardised ``x`` in, standardised ``x`` out (no structural assumption on the data)."""

    first_scored_step = 0

    def __init__(self, config: dict):
        super().__init__()
        x_dim = config["x_dim"]
        mean = config["x_mean"] if config["x_mean"] is not None else [0.0] * x_dim
        std = config["x_std"] if config["x_std"] is not None else [1.0] * x_dim
        self.register_buffer("x_mean", torch.tensor(mean, dtype=torch.float32))
        self.register_buffer("x_std", torch.tensor(std, dtype=torch.float32))
        self.feature_dim = x_dim
        self.low, self.high = (float(v) for v in config["logvar_range"])

    def x0(self, batch_size: int, device=None) -> torch.Tensor:
        return self.x_mean.to(device).expand(batch_size, -1).clone()

    def features(self, x_prev, hist, n) -> torch.Tensor:
        first = (n < 1).to(x_prev.dtype)
        return (x_prev - self.x_mean) / self.x_std * (1 - first)

    def error_scale(self, x_prev: torch.Tensor) -> torch.Tensor:
        return self.x_std.expand_as(x_prev)

    def output(self, raw_mean, raw_logvar, x_prev, n, features=None, hist=None):
        mean = self.x_mean + self.x_std * raw_mean
        var = self.x_std**2 * torch.exp(soft_clamp(raw_logvar, self.low, self.high))
        return mean, var


class LogPowerIO(_History, nn.Module):
    """Power spectra: standardised log-power in, the variance ``v`` of each bin out (``mean = var = v``)."""

    uses_mean = False  # the decoder's mean half is never computed (see DVAE._decoder_heads)
    first_scored_step = 0
    default_power_floor = 1e-10  # added to the power before the log (a -100 dB floor for unit-scale signals)

    def __init__(self, config: dict):
        super().__init__()
        x_dim = config["x_dim"]
        mean = config["x_mean"] if config["x_mean"] is not None else [0.0] * x_dim
        std = config["x_std"] if config["x_std"] is not None else [1.0] * x_dim
        self.register_buffer("x_mean", torch.tensor(mean, dtype=torch.float32))  # (F,) mean log-power
        self.register_buffer("x_std", torch.tensor(std, dtype=torch.float32))  # (F,) std of the log-power
        self.power_floor = float(config.get("power_floor", self.default_power_floor))
        self.feature_dim = x_dim
        self.low, self.high = (float(v) for v in config["logvar_range"])

    def x0(self, batch_size: int, device=None) -> torch.Tensor:
        """The typical power spectrum ``exp(x_mean)``, (batch_size, F)."""
        return torch.exp(self.x_mean.to(device)).expand(batch_size, -1).clone()

    def features(self, x_prev, hist, n) -> torch.Tensor:
        first = (n < 1).to(x_prev.dtype)
        log_power = torch.log(x_prev.clamp(min=0) + self.power_floor)
        return ((log_power - self.x_mean) / self.x_std).clamp(-10, 10) * (1 - first)

    def error_scale(self, x_prev: torch.Tensor) -> torch.Tensor:
        """The typical power of each bin, ``exp(x_mean)`` (the scale of a power error)."""
        return torch.exp(self.x_mean).expand_as(x_prev)

    def output(self, raw_mean, raw_logvar, x_prev, n, features=None, hist=None):
        """``raw_mean`` is ignored (None from :meth:`DVAE._decoder_heads`): the mean of a power is its variance."""
        power = torch.exp(self.x_mean + soft_clamp(raw_logvar, self.low, self.high))
        return power, power


IO_TYPES = {"box_increment": BoxIncrementIO, "direct": DirectIO, "log_power": LogPowerIO}


# --------------------------------------------------------------------------------------------------------------


SIZE_KEYS = ("x_dim", "z_dim", "h_dim", "dense_dim", "embed_dim")  # every model's sizes: positive integers


class DVAE(nn.Module):
    """Base class. Subclasses set ``model_name``, ``DEFAULTS``, build their networks and implement
    ``init_state``, ``_transition`` and ``_decode`` (behind ``step`` and ``advance``) and ``_run`` (the
    teacher-forced pass over a whole sequence)."""

    model_name = "base"
    DEFAULTS: dict[str, Any] = {}

    def __init_subclass__(cls, **kwargs):
        super().__init_subclass__(**kwargs)
        if cls.model_name != "base":
            MODELS.register(cls)

    def __init__(self, config: dict | None = None):
        super().__init__()
        config = _plain({**BASE_DEFAULTS, **self.DEFAULTS, **(config or {})})
        if config.get("model", self.model_name) != self.model_name:
            raise ValueError(f"config is for model {config['model']!r}, not {self.model_name!r}")
        config["model"] = self.model_name
        for key in SIZE_KEYS:
            if not isinstance(config[key], int) or config[key] < 1:
                raise ValueError(f"config[{key!r}] must be a positive integer, got {config[key]!r}")
        if config["param"] not in IO_TYPES:
            raise ValueError(f"unknown param {config['param']!r}; known: {sorted(IO_TYPES)}")
        self.config = config
        self.meta: dict[str, Any] = {}
        self.likelihood = make_likelihood(config["likelihood"])
        self.io = IO_TYPES[config["param"]](config)

    # ---------------------------------------------------------------------------------------------------------
    # generation

    @property
    def device(self) -> torch.device:
        return next(self.parameters()).device

    def x0(self, batch_size: int, device=None) -> torch.Tensor:
        """The placeholder ``x_0`` passed as ``x_prev`` at t = 1, (batch_size, x_dim)."""
        return self.io.x0(batch_size, device if device is not None else self.device)

    def init_state(self, batch_size: int, device=None) -> tuple[torch.Tensor, ...]:
        raise NotImplementedError

    def _sizes(self) -> tuple[int, int, int, int, int]:
        """``x_dim, z_dim, h_dim, dense_dim, embed_dim`` of the config (:data:`SIZE_KEYS`)."""
        return tuple(self.config[key] for key in SIZE_KEYS)

    def _feature_embedding(self) -> nn.Sequential:
        """``phi``, the embedding every model applies to its input features: ``io.feature_dim`` to ``embed_dim``,
        a linear layer and tanh."""
        return nn.Sequential(nn.Linear(self.io.feature_dim, self.config["embed_dim"]), nn.Tanh())

    def step(self, state, x_prev: torch.Tensor, z: torch.Tensor | None = None):
        """One generative step: ``(mean, var, new_state)`` of x_t given ``x_prev`` = x_{t-1} and the state."""
        new_state, decode_inputs = self._transition(state, x_prev, z)
        mean, var = self._decode(*decode_inputs)
        return mean, var, new_state

    def advance(self, state, x_prev: torch.Tensor, z: torch.Tensor | None = None):
        """The state after ``x_prev``, as :meth:`step` returns it, without the prediction of x_t (the decoder):
        about half a step's cost where only the state matters, e.g. running the model over a known past."""
        return self._transition(state, x_prev, z)[0]

    def _transition(self, state, x_prev: torch.Tensor, z: torch.Tensor | None):
        """``(new_state, decode_inputs)``: the state after ``x_prev`` and the arguments of ``_decode`` that give
        the prediction of x_t (latent ``z``, or the prior's when None)."""
        raise NotImplementedError

    def _cast(self, *tensors):
        """Inputs of ``step`` on the model's device and dtype (callers may hold float64 estimates)."""
        like = next(self.parameters())
        return tuple(None if t is None else t.to(device=like.device, dtype=like.dtype) for t in tensors)

    def _counter(self, batch_size: int, device) -> torch.Tensor:
        return torch.zeros(batch_size, 1, device=device)

    # ---------------------------------------------------------------------------------------------------------
    # whole sequences

    def _decoder_heads(self, inputs: torch.Tensor):
        """``(raw_mean, raw_logvar)`` of ``self.decoder`` (an MLP whose last layer outputs both halves) on
        ``inputs``; for an output parameterisation without a mean of its own (power spectra) only the log-variance
        half of the last layer is computed and ``raw_mean`` is None (half of the decoder's largest product)."""
        if getattr(self.io, "uses_mean", True):
            return self.decoder(inputs).chunk(2, dim=-1)
        last = self.decoder[-1]
        half = last.out_features // 2
        return None, nn.functional.linear(self.decoder[:-1](inputs), last.weight[half:], last.bias[half:])

    def _sequence_inputs(self, x: torch.Tensor):
        """Teacher-forced inputs: ``x_{t-1}``, ``n = t - 1``, the features of x_{t-1} and of x_t, and the history
        (B, T, K, D) of x_{t-1}."""
        batch, length, _ = x.shape
        x_prev, hist_prev, hist_cur = self.io.sequence_history(x)
        n = torch.arange(length, device=x.device, dtype=x.dtype).view(1, length, 1).expand(batch, length, 1)
        feat_prev = self.io.features(x_prev, hist_prev, n)
        feat_cur = self.io.features(x, hist_cur, n + 1)
        return x_prev, n, feat_prev, feat_cur, hist_prev

    def _independent_latents(self, x, z, use_posterior: bool, sample: bool, generator, posterior_input) -> dict:
        """Latents independent a priori, N(0, I) (VAE, RVAE), for a pass over x (B, T, x_dim): ``z`` (the given
        latents, else draws or means of ``q = post_z(posterior_input())`` when ``use_posterior``, else the prior
        means 0), the prior's ``p_mean``/``p_var`` and, when q was used, ``q_mean``/``q_var``. ``posterior_input``
        (a function, the encoder's output (B, T, D)) is called only when q is used."""
        batch, length, _ = x.shape
        p_mean = torch.zeros(batch, length, self.config["z_dim"], device=x.device, dtype=x.dtype)
        out = {"p_mean": p_mean, "p_var": torch.ones_like(p_mean)}
        if z is None and use_posterior:
            q_mean, q_var = self.post_z(posterior_input())
            z = q_mean + q_var.sqrt() * randn_like(q_mean, generator) if sample else q_mean
            out.update(q_mean=q_mean, q_var=q_var)
        out["z"] = p_mean if z is None else z
        return out

    def _run(self, x: torch.Tensor, z: torch.Tensor | None, use_posterior: bool, sample: bool, generator=None,
             lengths=None):
        """Teacher-forced pass (``lengths`` (B,): valid prefix of each sequence, for backward encoders).

        Latents: ``z`` if given, else samples/means of q(z | x) when ``use_posterior``, else the prior means.
        Returns a dict with ``mean``, ``var`` (B, T, x_dim), ``z``, the prior ``p_mean``/``p_var`` of each z_t,
        and ``q_mean``/``q_var`` when the posterior was used."""
        raise NotImplementedError

    def predict_sequence(self, x: torch.Tensor, z: torch.Tensor | None = None) -> dict[str, torch.Tensor]:
        """Teacher-forced predictions ``N(mean_t, var_t)`` of every x_t given x_{<t}, with the given latents
        ``z`` (B, T, z_dim) or, when None, the prior means (what :meth:`step` with ``z=None`` returns)."""
        return self._run(x, z=z, use_posterior=False, sample=False)

    def encode(self, x: torch.Tensor, mask: torch.Tensor | None = None) -> tuple[torch.Tensor, torch.Tensor]:
        """Mean and variance of ``q(z_t | x)`` for every t, each (B, T, z_dim). Where q depends on z_{t-1}, the
        previous posterior mean is used (deterministic). ``mask`` (B, T): valid prefix of each sequence."""
        out = self._run(x, z=None, use_posterior=True, sample=False, lengths=_lengths(mask))
        return out["q_mean"], out["q_var"]

    def _weights(self, x: torch.Tensor, mask: torch.Tensor | None) -> torch.Tensor:
        batch, length, _ = x.shape
        weights = torch.ones(batch, length, device=x.device, dtype=x.dtype)
        if mask is not None:
            weights = weights * mask.to(x.dtype)
        weights[:, : self.io.first_scored_step] = 0
        return weights

    def elbo(self, x: torch.Tensor, beta: float = 1.0, mask: torch.Tensor | None = None, generator=None):
        """Negative ELBO with teacher forcing and one reparameterised sample of q(z | x).

        ``mask`` (B, T) flags the valid steps, a prefix of each sequence (padding at the end is never seen by the
        backward encoders). Returns a dict: ``loss`` = recon + beta * kl, ``recon`` and ``kl`` (scalars, nats per
        scored valid step, summed over dimensions), and the per-step ``recon_t``, ``kl_t`` (B, T), ``mean``,
        ``var``, ``z``.
        """
        out = self._run(x, z=None, use_posterior=True, sample=True, generator=generator, lengths=_lengths(mask))
        weights = self._weights(x, mask)
        count = weights.sum().clamp(min=1)
        recon_t = self.likelihood.nll(x, out["mean"], out["var"])
        kl_t = gaussian_kl(out["q_mean"], out["q_var"], out["p_mean"], out["p_var"])
        recon = (recon_t * weights).sum() / count
        kl = (kl_t * weights).sum() / count
        out.update(loss=recon + beta * kl, recon=recon, kl=kl, recon_t=recon_t, kl_t=kl_t)
        return out

    def rollout_nll(
        self,
        x: torch.Tensor,
        p_own: float = 0.0,
        mask: torch.Tensor | None = None,
        generator: torch.Generator | None = None,
        detach_own: bool = False,
        own_mse_weight: float | None = None,
        block: int = 1,
    ) -> dict[str, torch.Tensor]:
        """Scheduled sampling: step through x with ``z = None`` (the prior means, as for prediction), feeding
        back the model's own predicted mean instead of the true x_{t-1} on a fraction ``p_own`` of the steps
        (never the first box, the reference). ``block = 1``: each step independently; ``block = K > 1``: runs of
        1..K consecutive own-fed steps (uniform) between runs of true inputs (geometric lengths, at least one),
        so that the model learns to predict up to K steps ahead from its own outputs.

        Loss per scored step: the Gaussian NLL of x_t. With ``own_mse_weight = w``, steps whose input was an own
        mean are scored instead by ``w * 0.5 * sum(((x_t - mean_t) / scale)^2)``, ``scale`` the typical
        increment (``inc_std`` times the box height): the means learn to run on their own outputs while the
        variance is trained on true inputs only (calibrated for them, as in the next-box likelihood).
        ``detach_own`` stops gradients through the fed-back means.

        Returns ``nll`` (the loss, scalar, per scored valid step), ``nll1`` (mean NLL of the true-fed steps),
        ``own_err`` (mean scaled squared error of the own-fed steps) and per step ``nll_t``, ``mean``, ``var``,
        ``own`` (B, T: the input of step t was an own mean)."""
        batch, length, _ = x.shape
        state = self.init_state(batch, x.device)
        x_prev = self.x0(batch, x.device)
        means, variances, owns, scales = [], [], [], []
        where = generator.device if generator is not None else x.device
        pick = torch.zeros(batch, 1, dtype=torch.bool, device=x.device)
        own_left = torch.zeros(batch, 1, dtype=torch.long, device=where)
        mean_run = (block + 1) / 2
        start_prob = min(1.0, p_own / max(mean_run * (1 - p_own), 1e-9)) if p_own < 1 else 1.0
        for t in range(length):
            mean, var, state = self.step(state, x_prev, None)
            means.append(mean)
            variances.append(var)
            owns.append(pick)
            scales.append(self.io.error_scale(x_prev).detach())
            if p_own > 0 and t >= self.io.first_scored_step:
                own = mean.detach() if detach_own else mean
                if block <= 1:
                    chosen = torch.rand(batch, 1, device=where, generator=generator) < p_own
                else:
                    idle = (own_left == 0) & ~pick.to(where)  # a run starts after at least one true input
                    start = idle & (torch.rand(batch, 1, device=where, generator=generator) < start_prob)
                    runs = torch.randint(1, block + 1, (batch, 1), device=where, generator=generator)
                    own_left = torch.where(start, runs, own_left)
                    chosen = own_left > 0
                    own_left = (own_left - 1).clamp(min=0)
                pick = chosen.to(x.device)
                x_prev = torch.where(pick, own, x[:, t])
            else:
                pick = torch.zeros(batch, 1, dtype=torch.bool, device=x.device)
                x_prev = x[:, t]
        mean = torch.stack(means, 1)
        var = torch.stack(variances, 1)
        own = torch.cat(owns, 1)
        weights = self._weights(x, mask)
        nll_t = self.likelihood.nll(x, mean, var)
        err_t = 0.5 * (((x - mean) / torch.stack(scales, 1)) ** 2).sum(-1)
        true_w, own_w = weights * (~own), weights * own
        loss_t = nll_t if own_mse_weight is None else torch.where(own, own_mse_weight * err_t, nll_t)
        return {
            "nll": (loss_t * weights).sum() / weights.sum().clamp(min=1),
            "nll1": (nll_t * true_w).sum() / true_w.sum().clamp(min=1),
            "own_err": (err_t * own_w).sum() / own_w.sum().clamp(min=1),
            "nll_t": nll_t,
            "mean": mean,
            "var": var,
            "own": own,
        }

    # ---------------------------------------------------------------------------------------------------------
    # checkpoints

    def save(self, path: str | os.PathLike) -> None:
        """Write the config, the weights and ``meta`` (training notes) to ``path`` atomically."""
        path = Path(path)
        path.parent.mkdir(parents=True, exist_ok=True)
        payload = {
            "format": CHECKPOINT_FORMAT,
            "version": CHECKPOINT_VERSION,
            "config": _plain(self.config),
            "meta": _plain(self.meta),
            "state_dict": {k: v.detach().cpu().clone() for k, v in self.state_dict().items()},
        }
        fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
        os.close(fd)
        try:
            torch.save(payload, tmp)
            os.replace(tmp, path)
        except BaseException:
            Path(tmp).unlink(missing_ok=True)
            raise

    @classmethod
    def load(cls, path: str | os.PathLike, map_location="cpu") -> DVAE:
        """Load a checkpoint written by :meth:`save` (``weights_only=True``), dispatching on its config's model.

        Raises:
            DataNotFoundError: no such file.
            CheckpointError: unreadable or corrupt file, unknown model, a config the model rejects, missing or
                unexpected weights, a shape that does not match the config, or non-finite weights.
        """
        path = Path(path)
        if not path.is_file():
            raise DataNotFoundError(f"DVAE checkpoint {path} not found")
        try:
            payload = torch.load(path, map_location=map_location, weights_only=True)
        except Exception:  # noqa: BLE001 - any unpickling failure means a bad file
            # torch's own text would advise weights_only=False: never for a file that fails the safe load
            what = "an empty file" if path.stat().st_size == 0 else "truncated, or not a torch checkpoint"
            raise CheckpointError(f"{path}: not a readable DVAE checkpoint ({what})") from None
        if not isinstance(payload, dict) or payload.get("format") != CHECKPOINT_FORMAT:
            raise CheckpointError(f"{path}: not a MixDVAE DVAE checkpoint (missing format tag {CHECKPOINT_FORMAT!r})")
        if payload.get("version") != CHECKPOINT_VERSION:
            raise CheckpointError(f"{path}: checkpoint version {payload.get('version')!r} is not supported")
        config, state = payload.get("config"), payload.get("state_dict")
        if not isinstance(config, dict) or not isinstance(state, dict):
            raise CheckpointError(f"{path}: checkpoint lacks its config or its weights")
        name = config.get("model")
        if name not in MODELS:
            raise CheckpointError(f"{path}: unknown model {name!r}; known: {sorted(MODELS)}")
        if cls is not DVAE and cls.model_name != name:
            raise CheckpointError(f"{path}: holds a {name!r} model, not {cls.model_name!r}")
        try:
            model = MODELS[name](config)
        except (ValueError, TypeError, KeyError) as err:
            raise CheckpointError(f"{path}: invalid config: {err}") from None
        expected = model.state_dict()
        missing = sorted(set(expected) - set(state))
        unexpected = sorted(set(state) - set(expected))
        if missing or unexpected:
            raise CheckpointError(
                f"{path}: weights do not match the config (missing {missing}, unexpected {unexpected})")
        for key, value in state.items():
            if not isinstance(value, torch.Tensor) or value.shape != expected[key].shape:
                shape = tuple(value.shape) if isinstance(value, torch.Tensor) else type(value).__name__
                raise CheckpointError(f"{path}: {key} has shape {shape}, config expects {tuple(expected[key].shape)}")
            if value.is_floating_point() and not torch.isfinite(value).all():
                raise CheckpointError(f"{path}: {key} holds NaN or infinite values")
        model.load_state_dict(state)
        model.meta = dict(payload.get("meta") or {})
        model.eval()
        return model.to(map_location) if not callable(map_location) else model

    def extra_repr(self) -> str:
        cfg = self.config
        return f"x_dim={cfg['x_dim']}, z_dim={cfg['z_dim']}, h_dim={cfg['h_dim']}, param={cfg['param']}"


def _lengths(mask: torch.Tensor | None) -> torch.Tensor | None:
    return None if mask is None else mask.sum(1)


def _plain(value):
    """Deep copy of a config as plain Python (dict/list/str/int/float/bool/None), loadable with weights_only."""
    if isinstance(value, dict):
        return {str(k): _plain(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [_plain(v) for v in value]
    if isinstance(value, torch.Tensor):
        return value.tolist()
    if hasattr(value, "item") and not isinstance(value, (str, bytes)):
        return value.item()
    if isinstance(value, float) and not math.isfinite(value):
        raise ValueError("config values must be finite")
    return copy.deepcopy(value)
