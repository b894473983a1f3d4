"""Semi-blind single-channel source separation (DESIGN §7): MixDVAE's variational EM with one pretrained DVAE per
source class, and the baselines it is measured against (supervised NMF, oracle ideal ratio / binary masks).

Model of a mixture STFT ``x`` (F bins x T frames) with N sources, each with its own frozen SRNN, DKF or RVAE prior (a
DKF's decoder reads z^n_t only, so it has no h^n; an RVAE's h^n runs over z^n_1..z^n_t only)::

    s^n ~ DVAE_n (complex Gaussian, variance v^n_ft = exp(dec_n(h^n_t, z^n_t)), h^n driven by |s^n_{t-1}|^2)
    per_bin  (the paper): w_ft ~ uniform over sources,  x_ft | w_ft = n ~ N_c(s^n_ft, v_x,ft)
    additive:             x_ft = sum_n s^n_ft + e_ft,   e_ft ~ N_c(0, v_x,ft)
    v_x,ft = rho * |x_ft|^2   (rho fixed, by default the one measured best for the mixture model, or re-estimated
                               by an M-step)
    source n's variance is e^n_f v^n_ft: a per-bin equaliser e^n (per segment, 1 at the start) for a timbre or
    channel its prior never heard (``equalise``: EM rounds after each roll; 0 keeps e = 1)

One VEM iteration (``iterations`` of them; the research code runs 70):

* **E-Z**: z^n ~ q_n(z | p^n), the prior's own encoder (frozen) on the current power estimate p^n of source n.
* **E-S**: roll each decoder over t; at every step the posterior of s^n_ft is Gaussian with mean
  ``mu = a x`` (a real gain) and variance ``v_phi``:

      per_bin:  v_phi = (eta / v_x + 1 / v)^-1,  a = v_phi eta / v_x = eta v / (eta v + v_x)
      additive: a = v^n / (sum_m v^m + v_x),      v_phi = v^n (1 - a)

  a draw s~_t (``sampling``: ``"gaussian"`` N_c(mu, v_phi); ``"mean"`` mu itself; ``"tempered"``
  N_c(mu, temperature * v_phi)) feeds |s~_t|^2 to the decoder's next step; p^n <- |s~|^2. The latent draws of
  E-Z follow the same choice (the posterior mean for ``"mean"``, the variance scaled by ``temperature``).
* **E-W** (per_bin), ``assignment``:

      "marginal" (default): eta_ftn = p(w_ft = n | x_ft, v_ft) ∝ N_c(x_ft; 0, v^n_ft + v_x,ft)
      "mean_field" (the paper): log eta_ftn = -log v_x - (|x - mu_n|^2 + v_phi,n) / v_x

  normalised over n. The marginal form integrates s out instead of scoring the previous iteration's posterior
  mean, and is computed at every step of the roll from that step's prior variances (so E-S at frame t uses the
  assignment of frame t's own predictions); the mean-field form feeds back the previous iteration's eta.
* **M-e** (``equalise``): ``e^n_f <- mean_t E[|s^n_ft|^2] / v^n_ft`` under the exact posterior of (w, s)
  (:func:`m_equaliser`); the next roll's decoders see the drawn powers divided by e^n (their own timbre).
* **M-rho** (``update_rho``): ``rho = mean_ft E[|x - (assigned or summed sources)|^2] / |x|^2``.

Initialisation (``init``): ``"nmf"`` (default) p^n = supervised NMF's estimate W_n H_n of source n (each source's
IS-NMF basis W_n fixed, learned on that source class's clean training data; the activations H fitted to the
segment by ``nmf_iterations`` multiplicative updates, the baseline's fit), so the VEM starts from sources already
apart and the priors refine them; ``"reconstruction"`` (the paper) p^n = each prior's reconstruction of the whole
mixture power (its encoder's mean, teacher-forced decoder), so every source starts as the mixture. eta = 1/N.
Output: a mask m^n times the mixture, averaged over the last ``average`` iterations (each
its own draw), inverse STFT. Per-bin masks (``output``): ``"power"`` (default): m^n = E[|s^n|^2]^k / sum_m E[|s^m|^2]^k,
the ratio of the sources' posterior expected powers (:func:`posterior_power`: an estimate of the ideal ratio mask),
raised to ``k = mask_exponent`` first (1, the plain ratio; 2 sharpened it before the refinement);
``"assignment"``: m^n = eta^n; both sum to 1 over the sources, so the mixture is split and nothing is lost;
``"posterior"``: m^n = a^n, the posterior-mean gain, which drops a bin from every source whose predicted variance
does not dominate v_x; or one of them per source (e.g. ``("posterior", "assignment")``). Additive: always a^n.
Convergence record: the negative log-likelihood of the mixture per bin under the iteration's source variances
(``cost``): ``-log sum_n N_c(x; 0, v^n + v_x) / N`` (per_bin) or ``-log N_c(x; 0, sum_n v^n + v_x)`` (additive),
up to ``log pi``.

Refinement (``refine`` passes, after the VEM): each prior reconstructs its source from the output estimate's
spectrogram (teacher-forced, its encoder's mean: :func:`reconstruction_masks`), equalised from e = 1 as the VEM
equalises (``equalise`` rounds per iteration), and the output mask is recomputed from these variances with the
marginal assignment. The roll drives each decoder with random draws; the reconstruction reads the finished
estimate (over the same segments). The same step fed the true sources instead of the estimates is the priors' own bound
(:func:`exact_inference_separate`): what the priors would give if inference were exact.

Segments: a signal is cut into ``segment``-frame pieces overlapping by ``overlap`` frames (the last one ends at
the last frame, so no padding), separated as one batch (priors and segments together: one stacked call per
time step for all sources that share an architecture), and the output masks are cross-faded back with a sine^2
window over frames. ``segment = 0`` runs the whole signal at once (one segment per signal).

Levels: prior n sees the mixture's power scaled by ``c_n`` and its variances are scaled back by ``1 / c_n``.
``level="rms"`` (default): one scale for all sources, bringing the mixture to ``level_db`` dB RMS (full scale 0
dB; the training material sits at about -17 dB for speech and -24 to -28 dB for the flute files; -30 dB measured
best on the validation mixtures). ``level="log_power"``: per prior, the mixture's mean log-power is matched to
the prior's training mean (``x_mean``); the mean log-power depends on the spectral shape (the flute's sparse
harmonics and digital silence put it 5 nats below speech at the same power), which misplaces sources of another
shape.

Defaults, measured on validation mixtures (speech val split + the flute prior's validation files,
``tools/benchmark_separate.py --split val``: 4 pairs x 3 ratios of 4 s; SI-SDR speech / flute; the previous flute
prior unless said). The NMF start (shipped flute prior): 11.74 / 11.76 against the paper's start 9.67 / 9.68 (the
MuseScore prior on its own validation files: 15.24 / 15.20 against 11.17 / 11.11), both with rho 0.03 and the last 3
iterations averaged. Re-tuned for the NMF start on two validation sets (the default set; ``--pairs 8 --seed 1``;
forward and reverse): rho 0.005 and all 5 iterations averaged, 11.97 / 11.98 and 15.82 / 15.77 (set two: 8.82 / 8.59
and 12.59 / 12.55, against 8.82 / 8.60 and 12.04 / 12.00), never more than 0.01 dB below the previous settings; rho
0.003 or 0.001 (averaged over 5) come within 0.1 dB of them on average over the four runs; each alone, rho 0.01 or
0.1, averaging over 1 or 5, 3, 8, 12 or 20 iterations, 100-frame segments, and the output blended with NMF's Wiener
mask score below them on the first set. Re-tuned again with the rank-128 speech and rank-64 flute NMF bases (chosen for
supervised NMF itself; mean of the four runs' eight speech and flute figures): rho 0.02 and 3 iterations, all averaged,
13.81 against 13.66 for the previous settings (2 iterations: 13.83, a tie; with rank-64 speech, rho 0.003 / 0.005 /
0.01 / 0.02 / 0.03 / 0.05 at 5 iterations: 13.70 / 13.77 / 13.87 / 13.92 / 13.93 / 13.90; rho 0.02 at 4 and 3
iterations: 14.06, 14.17; rho 0.005 at 8: 13.27). With the DKF speech prior (``CLASS_PRIORS``) the mean is 14.83; rho
0.01 / 0.03 give 14.81 / 14.82, 2 / 4 iterations (all averaged) 14.75 / 14.79, the rank-64 speech start 14.62; one
equaliser round per iteration 14.87 (two: 14.85), and 14.80 against 14.75 on the same runs with every flute coloured
by a random smooth envelope of up to 10 dB (a timbre no prior heard): ``equalise=1``. With it, the posterior-power
mask (``output="power"``) 14.96 against 14.87 for the assignment mask (no run lower; their half-and-half blend 14.96);
its exponent 0.75 / 1 / 1.5 / 2 / 3: 14.80 / 14.96 / 15.03 / 15.04 / 15.02. Equaliser rounds per source: the flute
only, 10 rounds (``equalise=(0, 10)``), 15.20 there and 9.25 against 6.20 on flutes of two soundfonts no prior heard
(TimGM6mb, csound GM bank: the speech equaliser absorbs the flute's unmodelled harmonics), but lower on the test
set's MuseScore flute (15.89 against 16.58; README): an option, not the default. The RVAE speech prior
(``CLASS_PRIORS``) with these settings: 15.43 against the DKF's 15.03 (every run higher).
One refinement pass (``refine=1``, below): 16.08 against 15.43 (every run higher; two passes 15.95). With it, the mask
exponent 0.75 / 1 / 1.5 / 2 / 3: 15.94 / 16.16 / 16.14 / 16.08 / 15.97, so k = 1; 2 / 4 iterations 16.04 / 16.06.
With the refinement the additive mixture (its output the Wiener gain a^n) overtook the per-bin model, which is
therefore no longer the default: 16.24 at rho 0.02 against per_bin's 16.16 (three runs of four higher), and better at
smaller rho, where per_bin loses (its first two runs at 0.005: 17.04 against 17.19 at 0.02): rho 0.005 / 0.002 16.38 /
16.40 (every run above per_bin's), 0.001 equal to 0.002 on the first two runs; 0.005, the largest value of that flat
stretch, is the default (``RHO``). With it (first two runs, mean 17.50): no refinement 16.75, two passes 17.53; 2 / 5
iterations 17.47 / 17.40; equaliser rounds 0 / 3 17.00 / 17.54: the other defaults stay.
Every figure below was measured with the paper's start (and rho 0.03). With
the posterior-mean mask: the mean-field E-W, last iteration (the first default) 9.01 / 5.19 dB; marginal E-W 9.62 /
6.05 (2 iterations: 9.06 / 5.28, 10: 9.61 / 5.74; rho 0.01: 8.82 / 6.67, 0.1: 8.58 / 2.10; tempered draws 8.83 /
2.23; posterior means 5.22 / -39.0, the flute collapses, below); marginal and the output averaged over the last 3
iterations 9.77 / 6.17 (over 5: 9.36 / 5.95). With the assignment mask eta as the output (then the default): 9.25 / 9.02
(rho 0.01: 8.99 / 8.72, 0.1: 8.07 / 8.03; 10 iterations averaged over 5: 8.83 / 8.58; with the mean-field E-W: 7.60
/ 7.02); with the shipped (augmented) flute prior 9.67 / 9.68 (averaged over 5 iterations: 9.69 / 9.59). An earlier
set (2 pairs x 3 ratios of 3 s, mean-field E-W): 5 iterations 9.9 / 6.0 dB; 15: 8.1 / 3.7; 30: 8.2 / 2.9; 70 (the
research code's count): 8.0 / 2.6 -- the first iterations improve on the initial reconstruction, later ones let the
sources drift. ``sampling="mean"`` collapses the flute (an estimate of 0 power feeds a prior that then predicts
silence: -12.8 dB), ``"tempered"`` 9.8 / 3.3; ``"additive"`` 8.3 / 5.5; ``update_rho`` 3.0 / -1.5 (rho grows to
explain the residual and the assignments blur); ``segment=0`` (whole signal) 9.6 / 5.6 at the same CPU time.

Random draws: every segment has its own generator per iteration, seeded by ``(seed, first frame, iteration)``,
so a segment's result does not depend on the batch it runs in.
"""

from __future__ import annotations

import math
import os
import time
from collections.abc import Sequence
from dataclasses import dataclass, field, fields
from pathlib import Path
from typing import ClassVar, Literal

import numpy as np
import torch

from mixdvae.config import Range, validate_fields
from mixdvae.dvae.base import soft_clamp
from mixdvae.errors import ConfigError, DataNotFoundError, InputError, UsageError

from . import nmf
from .enhance import NMFBasis, log_level
from .io import MODEL_RATE, check_waveforms
from .stft import DEFAULT_STFT, STFT, crossfade_weights, segment_starts
from .timing import RealTimeFactors

PRIOR_LIKELIHOOD = "itakura_saito"


OutputMode = Literal["power", "assignment", "posterior"]


@dataclass
class SeparateConfig:
    """Every setting of :func:`separate` and of the NMF baseline, with its default (validated on creation)."""

    init: Literal["nmf", "reconstruction"] = "nmf"  # start: NMF's source powers (needs bases), or the paper's
    iterations: int = 3  # VEM iterations (E-Z, E-S, E-W, M); the research code runs 70 (measured worse here)
    rho: float | None = None  # v_x = rho |x|^2; None: RHO[mixture] (the research code: 0.03)
    update_rho: bool = False  # re-estimate rho (per segment) in an M-step
    sampling: Literal["gaussian", "mean", "tempered"] = "gaussian"  # draws of z and s~ (see the module docstring)
    temperature: float = 0.25  # variance factor of the "tempered" draws
    mixture: Literal["additive", "per_bin"] = "additive"  # sources that add (a Wiener split), or the paper's per-bin
    # assignment (the defaults' choice: module docstring, "Defaults")
    assignment: Literal["marginal", "mean_field"] = "marginal"  # per_bin E-W: p(w | x, v) at each step, or the paper's
    average: int = 3  # the output mask is the mean over the last `average` iterations (their draws; 3: all)
    output: OutputMode | tuple[OutputMode, ...] = "power"  # per_bin output mask (module docstring); or one per source
    mask_exponent: float = 1.0  # "power" mask: ratio of the posterior powers raised to this (1: plain ratio)
    segment: int = 50  # frames per segment (0: the whole signal)
    overlap: int = 25  # frames shared by consecutive segments
    batch_size: int = 256  # segments per batch
    seed: int = 0
    floor: float = 1e-8  # power floor, relative to the mean mixture power of a segment
    nmf_iterations: int = 100  # multiplicative updates of the activations (supervised NMF baseline)
    level: Literal["rms", "log_power"] = "rms"  # how the mixture is scaled to the priors' units (see below)
    level_db: float = -30.0  # "rms": the mixture's RMS level in the priors' units (dB re full scale)
    # EM rounds of a source's per-bin gain on its prior variances after each roll (0: none): one count for every
    # source, or one per source in the priors' order (as ``output``; e.g. (0, 10) for a timbre far from the
    # instrument prior's, module docstring)
    equalise: int | tuple[int, ...] = 1
    # VEM passes (init="nmf"): after each pass but the last, a source with ``adapt`` > 0 gets an NMF basis of that
    # rank learned on its own estimate beside its class basis, and the next pass starts from that wider basis: the
    # start follows a timbre its class basis and prior never heard (one rank for every source, or one per source)
    passes: int = 1
    adapt: int | tuple[int, ...] = 0
    # reconstruction passes after the VEM (0: none): each prior re-predicts its source from the finished estimate,
    # teacher-forced (module docstring, "Refinement")
    refine: int = 1

    BOUNDS: ClassVar[dict] = {
        "iterations": Range(1, 10000), "rho": Range(0, 1, exclusive_low=True), "temperature": Range(0, 1),
        "segment": Range(0, 100000), "overlap": Range(0, 100000), "batch_size": Range(1, 65536),
        "seed": Range(0), "floor": Range(0, 1e-2, exclusive_low=True), "nmf_iterations": Range(1, 10000),
        "level_db": Range(-80, 0), "average": Range(1, 10000),
        "equalise": Range(0, 1000), "mask_exponent": Range(0, 100, exclusive_low=True),
        "passes": Range(1, 100), "adapt": Range(0, 1024), "refine": Range(0, 100),
    }

    # rho measured best for each mixture model (module docstring), the default when ``rho`` is None
    RHO: ClassVar[dict] = {"additive": 0.005, "per_bin": 0.02}
    # settings of the per_bin mixture's assignment and mask: the additive mixture's mask is its Wiener gain
    PER_BIN_ONLY: ClassVar[tuple] = ("assignment", "output", "mask_exponent")

    def __post_init__(self):
        """Validate every field (:class:`~mixdvae.errors.ConfigError` naming the key) and resolve ``rho``."""
        validate_fields(self, "separate config")
        if self.rho is None:
            self.rho = self.RHO[self.mixture]
        if self.mixture == "additive":
            changed = [f.name for f in fields(self)
                       if f.name in self.PER_BIN_ONLY and getattr(self, f.name) != f.default]
            if changed:
                verb = "acts" if len(changed) == 1 else "act"
                raise ConfigError(f"separate config: {', '.join(changed)} {verb} on the per_bin mixture only (the "
                                  f"additive mixture's mask is its Wiener gain): set mixture to per_bin as well")
        if self.segment and self.overlap >= self.segment:
            raise ConfigError(f"separate config: overlap ({self.overlap}) must be smaller than segment "
                              f"({self.segment})")
        adapts = self.adapt if isinstance(self.adapt, tuple) else (self.adapt,)
        if self.passes > 1 and (self.init != "nmf" or not any(adapts)):
            raise ConfigError(f"separate config: passes ({self.passes}) > 1 needs init='nmf' and an adapt rank > 0 "
                              f"(each pass starts from NMF bases adapted to the previous estimate)")

    # one for all sources, or one each
    PER_SOURCE: ClassVar[dict] = {"output": "mask(s)", "equalise": "round count(s)", "adapt": "basis rank(s)"}

    def per_source(self, key: str, n_sources: int) -> tuple:
        """The setting ``key`` (one of :attr:`PER_SOURCE`) for each of ``n_sources`` sources (:class:`ConfigError`
        when it names another number of sources)."""
        value = getattr(self, key)
        if not isinstance(value, tuple):
            return (value,) * n_sources
        if len(value) != n_sources:
            raise ConfigError(f"separate config: {key} names {len(value)} {self.PER_SOURCE[key]} for {n_sources} "
                              f"sources: give one per source, or one for all")
        return value

    @property
    def draw_scale(self) -> float:
        """Variance factor of the random draws: 1 (gaussian), ``temperature`` (tempered), 0 (mean)."""
        return {"gaussian": 1.0, "tempered": self.temperature, "mean": 0.0}[self.sampling]


@dataclass
class SeparationResult(RealTimeFactors):
    """Outputs of a separation, in the order of the inputs.

    Attributes:
        sources: per mixture, the estimated sources (N, n_samples) float32, in the order of the priors.
        cost: per mixture, (iterations,) the mean negative log-likelihood of the mixture per bin after each
            iteration (MixDVAE; empty for the baselines): the convergence record.
        rho: per mixture, the mean final rho over its segments (MixDVAE; NaN for the baselines).
        seconds, cpu_seconds: wall-clock and process CPU time of the separation (without reading/writing).
        audio_seconds: total duration of the mixtures.
    """

    sources: list[np.ndarray]
    cost: list[np.ndarray]
    rho: list[float]
    seconds: float
    cpu_seconds: float
    audio_seconds: float
    config: SeparateConfig = field(default_factory=SeparateConfig)


class SeparationError(InputError):
    """The VEM produced non-finite values (never silently returned)."""


# --------------------------------------------------------------------------------------------------------------
# priors stacked on a source axis


def check_prior(prior, name: str = "prior") -> None:
    """UsageError unless ``prior`` is an SRNN, DKF or RVAE of power spectra (``log_power``, Itakura-Saito
    likelihood)."""
    config = getattr(prior, "config", {})
    if config.get("model") not in STACKS:
        raise UsageError(f"{name}: MixDVAE separation needs SRNN, DKF or RVAE priors, got {config.get('model')!r}")
    if config.get("likelihood") != PRIOR_LIKELIHOOD or config.get("param") != "log_power":
        raise UsageError(f"{name}: not a prior of power spectra (likelihood {config.get('likelihood')!r}, "
                         f"param {config.get('param')!r}; expected {PRIOR_LIKELIHOOD!r}, 'log_power')")


def _architecture(prior) -> tuple:
    return tuple(prior.config[k] for k in ("model", "x_dim", "z_dim", "h_dim", "dense_dim", "embed_dim"))


def _lin(x: torch.Tensor, w: torch.Tensor, b: torch.Tensor) -> torch.Tensor:
    """Per-source linear layer: ``x`` (N, ..., in), ``w`` (N, in, out), ``b`` (N, 1, out) -> (N, ..., out)."""
    shape = x.shape
    return torch.baddbmm(b, x.reshape(shape[0], -1, shape[-1]), w).reshape(*shape[:-1], w.shape[-1])


class StackedSRNN:
    """N SRNN priors of one architecture, their weights stacked on a leading source axis, so that one call
    runs all sources and all segments: tensors are (N, B, T, ...) (sources, segments, frames)."""

    def __init__(self, priors: Sequence, device):
        self.priors = [p.to(device).eval() for p in priors]

        def stack(get):
            return torch.stack([get(p).detach().float() for p in self.priors]).to(device)

        F = self.priors[0].config["x_dim"]
        self.emb_w, self.emb_b = stack(lambda p: p.embed_x[0].weight.T), stack(lambda p: p.embed_x[0].bias[None])
        self._stack_recurrence(stack)
        self.dec1_w, self.dec1_b = stack(lambda p: p.decoder[0].weight.T), stack(lambda p: p.decoder[0].bias[None])
        # only the log-variance half of the decoder's output is used (mean = variance for power spectra)
        self.dec2_w = stack(lambda p: p.decoder[2].weight[F:].T)
        self.dec2_b = stack(lambda p: p.decoder[2].bias[F:][None])
        h_dim = self.priors[0].config["h_dim"]
        self._stack_posterior(stack, h_dim)
        self.q1_b = stack(lambda p: p.post_z.net[0].bias[None])
        self.q2_w, self.q2_b = stack(lambda p: p.post_z.net[2].weight.T), stack(lambda p: p.post_z.net[2].bias[None])
        self.x_mean = stack(lambda p: p.io.x_mean[None])  # (N, 1, F)
        self.x_std = stack(lambda p: p.io.x_std[None])
        self.power_floor = torch.tensor([p.io.power_floor for p in self.priors], device=device).reshape(-1, 1, 1)
        self.low = torch.tensor([p.io.low for p in self.priors], device=device).reshape(-1, 1, 1)
        self.high = torch.tensor([p.io.high for p in self.priors], device=device).reshape(-1, 1, 1)
        self.z_low = torch.tensor([p.post_z.low for p in self.priors], device=device).reshape(-1, 1, 1)
        self.z_high = torch.tensor([p.post_z.high for p in self.priors], device=device).reshape(-1, 1, 1)
        self.z_dim, self.h_dim = self.priors[0].config["z_dim"], h_dim

    def _stack_recurrence(self, stack) -> None:
        """The decoder LSTM's weights."""
        self.ih_w, self.hh_w = stack(lambda p: p.rnn.weight_ih_l0.T), stack(lambda p: p.rnn.weight_hh_l0.T)
        self.rnn_b = stack(lambda p: (p.rnn.bias_ih_l0 + p.rnn.bias_hh_l0)[None])

    def _stack_posterior(self, stack, h_dim: int) -> None:
        """The posterior head's first layer, split into its parts on g (the backward LSTM) and on z_{t-1}."""
        self.q1g_w = stack(lambda p: p.post_z.net[0].weight[:, :h_dim].T)
        self.q1z_w = stack(lambda p: p.post_z.net[0].weight[:, h_dim:].T)

    def __len__(self) -> int:
        return len(self.priors)

    def reference_log_power(self) -> torch.Tensor:
        """Mean log-power of each prior's training data, (N,)."""
        return self.x_mean.mean((1, 2))

    def _features(self, power: torch.Tensor) -> torch.Tensor:
        """Standardised log-power of ``power`` (N, B, [T,] F) in model units."""
        shape = power.shape
        flat = power.reshape(shape[0], -1, shape[-1])
        feat = ((torch.log(flat.clamp(min=0) + self.power_floor) - self.x_mean) / self.x_std).clamp(-10, 10)
        return feat.reshape(shape)

    def embed(self, power: torch.Tensor) -> torch.Tensor:
        """Embedded features e (N, ..., E) of ``power`` (N, ..., F) in model units (the LSTMs' input)."""
        return torch.tanh(_lin(self._features(power), self.emb_w, self.emb_b))

    def first_input(self, batch: int) -> torch.Tensor:
        """The decoder LSTM's input at t = 1 (features 0), (N, batch, E)."""
        return torch.tanh(self.emb_b).expand(-1, batch, -1)

    def _log_variance(self, h: torch.Tensor, z: torch.Tensor) -> torch.Tensor:
        """``log v`` (N, ..., F) of the decoder given h (N, ..., H) and z (N, ..., Z), model units."""
        hidden = torch.tanh(_lin(torch.cat([h, z], -1), self.dec1_w, self.dec1_b))
        raw = _lin(hidden, self.dec2_w, self.dec2_b)
        shape = raw.shape
        raw = raw.reshape(shape[0], -1, shape[-1])
        return (self.x_mean + self.low + (self.high - self.low) * torch.sigmoid(raw)).reshape(shape)

    def teacher(self, power: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """The context of q(z | power) for ``power`` (N, B, T, F) in model units: the decoder states h_t
        (N, B, T, H) driven by power_{t-1}, and the embedded power e_t (N, B, T, E). The VEM's roll produces
        the same pair for its drawn powers, so the encoder reuses it."""
        e = self.embed(power)
        e_prev = torch.cat([self.first_input(power.shape[1]).unsqueeze(2), e[:, :, :-1]], 2)
        return torch.stack([p.rnn(x)[0] for p, x in zip(self.priors, e_prev)]), e

    def encode(self, h: torch.Tensor, e: torch.Tensor, noise: torch.Tensor | None, scale: float) -> torch.Tensor:
        """Latents z (N, B, T, Z) of q(z | power) given its context ``h``, ``e`` (:meth:`teacher`): the backward
        LSTM, then the recursion ``q(z_t | z_{t-1}, g_t)`` with draws ``mean + sqrt(scale * var) * noise``
        (``noise`` (N, B, T, Z), or None for the mean)."""
        enc_in = torch.cat([h, e], -1).flip(2)
        g = torch.stack([p.enc_rnn(x)[0] for p, x in zip(self.priors, enc_in)]).flip(2)
        pre = _lin(g, self.q1g_w, self.q1_b)  # (N, B, T, D)
        N, B, T, _ = pre.shape
        z_prev = pre.new_zeros(N, B, self.z_dim)
        zs = []
        for t in range(T):
            hidden = torch.tanh(pre[:, :, t] + torch.bmm(z_prev, self.q1z_w))
            mean, raw = torch.baddbmm(self.q2_b, hidden, self.q2_w).chunk(2, dim=-1)
            if noise is not None and scale > 0:
                var = self._z_variance(raw)
                mean = mean + torch.sqrt(scale * var) * noise[:, :, t]
            z_prev = mean
            zs.append(mean)
        return torch.stack(zs, 2)

    def _z_variance(self, raw: torch.Tensor) -> torch.Tensor:
        """The posterior variance of z from the head's raw output (N, ..., Z): each prior's soft-clamped
        log-variance (``GaussianHead``)."""
        shape = (-1,) + (1,) * (raw.dim() - 1)
        return torch.exp(soft_clamp(raw, self.z_low.reshape(shape), self.z_high.reshape(shape)))

    def reconstruct(self, power: torch.Tensor) -> torch.Tensor:
        """Variances v (N, B, T, F), model units, of the teacher-forced decoder on ``power`` with the posterior
        mean of z (the initialisation of the VEM)."""
        h, e = self.teacher(power)
        return torch.exp(self._log_variance(h, self.encode(h, e, None, 0.0)))

    def start(self, batch: int) -> tuple[torch.Tensor, torch.Tensor]:
        """Zero LSTM state ``(h, c)``, each (N, batch, H)."""
        zeros = self.emb_b.new_zeros(len(self), batch, self.h_dim)
        return zeros, zeros.clone()

    def step(self, state, e_prev: torch.Tensor, z: torch.Tensor):
        """One decoder step for all sources and segments: ``e_prev`` (N, B, E) the embedded |s~_{t-1}|^2
        (:meth:`embed`; :meth:`first_input` at t = 1), ``z`` (N, B, Z). Returns the variance v_t (N, B, F), model
        units, and the new state ``(h, c)``."""
        h, c = self._cell(e_prev, state)
        return torch.exp(self._log_variance(h, z)), (h, c)

    def _cell(self, inputs: torch.Tensor, state) -> tuple[torch.Tensor, torch.Tensor]:
        """One step of the stacked decoder LSTMs: ``inputs`` (N, B, in), ``state`` ``(h, c)`` (N, B, H) each."""
        h, c = state
        gates = torch.baddbmm(torch.baddbmm(self.rnn_b, inputs, self.ih_w), h, self.hh_w)
        i, f, g, o = gates.chunk(4, dim=-1)
        c = torch.sigmoid(f) * c + torch.sigmoid(i) * torch.tanh(g)
        return torch.sigmoid(o) * torch.tanh(c), c


class StackedDKF(StackedSRNN):
    """N DKF priors of one architecture: a :class:`StackedSRNN` without the decoder recurrence. The decoder reads
    z_t only and the encoder the embedded power only, so the decoder state h has no features (H = 0) and the
    roll's steps carry no state; the posterior head has the SRNN's layout (g from the backward LSTM, then z)."""

    def _stack_recurrence(self, stack) -> None:
        """No decoder LSTM."""

    def teacher(self, power: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        e = self.embed(power)
        return e.new_zeros(*e.shape[:-1], 0), e

    def start(self, batch: int) -> tuple[torch.Tensor, torch.Tensor]:
        zeros = self.emb_b.new_zeros(len(self), batch, 0)
        return zeros, zeros

    def step(self, state, e_prev: torch.Tensor, z: torch.Tensor):
        h, _ = state
        return torch.exp(self._log_variance(h, z)), state


class StackedRVAE(StackedSRNN):
    """N RVAE priors of one architecture. The decoder LSTM runs over the latents (input z_t, not the drawn power,
    which reaches the decoder only through the next iteration's latents), and the posterior of every frame is one
    head on a forward and a backward LSTM over the embedded power (no recursion over z), so the encoder context is
    the embedded power alone (h has no features, as the DKF's)."""

    def _stack_recurrence(self, stack) -> None:
        """The decoder LSTM's weights (input: z)."""
        self.ih_w, self.hh_w = stack(lambda p: p.dec_rnn.weight_ih_l0.T), stack(lambda p: p.dec_rnn.weight_hh_l0.T)
        self.rnn_b = stack(lambda p: (p.dec_rnn.bias_ih_l0 + p.dec_rnn.bias_hh_l0)[None])

    def _stack_posterior(self, stack, h_dim: int) -> None:
        """The posterior head reads g = (forward, backward) only: its whole first layer acts on g."""
        self.q1g_w = stack(lambda p: p.post_z.net[0].weight.T)

    def teacher(self, power: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        e = self.embed(power)
        return e.new_zeros(*e.shape[:-1], 0), e

    def encode(self, h: torch.Tensor, e: torch.Tensor, noise: torch.Tensor | None, scale: float) -> torch.Tensor:
        g = torch.stack([torch.cat([p.enc_forward(x)[0], p.enc_backward(x.flip(1))[0].flip(1)], -1)
                         for p, x in zip(self.priors, e)])  # (N, B, T, 2 H): every segment has all its frames
        mean, raw = _lin(torch.tanh(_lin(g, self.q1g_w, self.q1_b)), self.q2_w, self.q2_b).chunk(2, dim=-1)
        if noise is None or scale <= 0:
            return mean
        return mean + torch.sqrt(scale * self._z_variance(raw)) * noise

    def reconstruct(self, power: torch.Tensor) -> torch.Tensor:
        h, e = self.teacher(power)
        z = self.encode(h, e, None, 0.0)
        h = torch.stack([p.dec_rnn(x)[0] for p, x in zip(self.priors, z)])
        return torch.exp(self._log_variance(h, z[..., :0]))  # the decoder MLP reads h_t alone

    def step(self, state, e_prev: torch.Tensor, z: torch.Tensor):
        h, c = self._cell(z, state)
        return torch.exp(self._log_variance(h, z[..., :0])), (h, c)


# the priors separation takes, by config["model"]
STACKS = {"srnn": StackedSRNN, "dkf": StackedDKF, "rvae": StackedRVAE}


class SourceBank:
    """The priors of a separation grouped by architecture (one :data:`STACKS` class per group); sources keep the
    order of the priors. Tensors are (N, B, T, F) over all sources."""

    def __init__(self, priors: Sequence, device):
        if not priors:
            raise UsageError("separation needs at least one prior")
        for index, prior in enumerate(priors):
            check_prior(prior, f"prior {index}")
        groups: dict[tuple, list[int]] = {}
        for index, prior in enumerate(priors):
            groups.setdefault(_architecture(prior), []).append(index)
        self.groups = [(indices, STACKS[key[0]]([priors[i] for i in indices], device))  # key[0]: the model
                       for key, indices in groups.items()]
        self.order = [i for indices, _ in self.groups for i in indices]  # stacked position -> prior index
        self.inverse = torch.tensor(np.argsort(self.order), device=device)
        self.n_sources = len(priors)
        self.z_dim = max(stack.z_dim for _, stack in self.groups)

    def _split(self, tensor: torch.Tensor) -> list[torch.Tensor]:
        """(N, ...) in prior order -> one tensor per group."""
        return [tensor[indices] for indices, _ in self.groups]

    def _join(self, parts: list[torch.Tensor]) -> torch.Tensor:
        """One tensor per group -> (N, ...) in prior order."""
        return torch.cat(parts)[self.inverse]

    def reference_log_power(self) -> torch.Tensor:
        return self._join([stack.reference_log_power() for _, stack in self.groups])

    def reconstruct(self, power: torch.Tensor) -> torch.Tensor:
        """Each prior's reconstruction (N, B, T, F) of ``power`` (N, B, T, F), model units."""
        return self._join([stack.reconstruct(p) for (_, stack), p in zip(self.groups, self._split(power))])

    def teacher(self, power: torch.Tensor) -> list[tuple[torch.Tensor, torch.Tensor]]:
        """The encoder context ``(h, e)`` of each group for ``power`` (N, B, T, F), model units."""
        return [stack.teacher(p) for (_, stack), p in zip(self.groups, self._split(power))]

    def encode(self, contexts: list, noise: torch.Tensor | None, scale: float) -> list[torch.Tensor]:
        """Latents (N_g, B, T, Z_g) per group (see :meth:`StackedSRNN.encode`); ``noise`` (N, B, T, Z_max)."""
        out = []
        for (indices, stack), (h, e) in zip(self.groups, contexts):
            eps = None if noise is None else noise[indices][..., : stack.z_dim]
            out.append(stack.encode(h, e, eps, scale))
        return out

    def start(self, batch: int) -> tuple[list, list]:
        """Zero decoder states and the first inputs of every group."""
        return [stack.start(batch) for _, stack in self.groups], [stack.first_input(batch) for _, stack in self.groups]

    def step(self, states: list, inputs: list, zs: list[torch.Tensor], t: int):
        """Variances v_t (N, B, F) of all sources (model units) and the new states: one call per group."""
        out, new_states = [], []
        for (_, stack), state, e, z in zip(self.groups, states, inputs, zs):
            v, state = stack.step(state, e, z[:, :, t])
            out.append(v)
            new_states.append(state)
        return self._join(out), new_states

    def embed(self, power: torch.Tensor) -> list[torch.Tensor]:
        """Embedded ``power`` (N, B, F), model units, per group."""
        return [stack.embed(p) for (_, stack), p in zip(self.groups, self._split(power))]


# --------------------------------------------------------------------------------------------------------------
# the VEM on a batch of segments


def per_bin_posterior(v: torch.Tensor, eta: torch.Tensor, vx: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """Posterior of s^n_ft under the per-bin model: gain ``a`` (mu = a x) and variance ``v_phi``.

    ``v`` (N, ...) prior variances, ``eta`` (N, ...) assignment probabilities, ``vx`` (...) observation noise:
    ``v_phi = (eta / v_x + 1 / v)^-1``, ``a = v_phi eta / v_x``."""
    v_phi = 1.0 / (eta / vx + 1.0 / v)
    return v_phi * eta / vx, v_phi


def additive_posterior(v: torch.Tensor, vx: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """Posterior of s^n_ft when the sources add (``x = sum_n s^n + e``): the Wiener split
    ``a = v^n / (sum_m v^m + v_x)`` and ``v_phi = v^n (1 - a)``; shapes as :func:`per_bin_posterior`."""
    a = v / (v.sum(0) + vx)
    return a, v * (1.0 - a)


def e_w(a: torch.Tensor, v_phi: torch.Tensor, P: torch.Tensor, vx: torch.Tensor) -> torch.Tensor:
    """E-W: ``eta_n ∝ exp(-log v_x - (|x - mu_n|^2 + v_phi,n) / v_x)`` normalised over n (uniform prior on w),
    with ``|x - mu_n|^2 = (1 - a_n)^2 |x|^2``. ``a``, ``v_phi`` (N, ...), ``P = |x|^2`` and ``vx`` (...)."""
    log_eta = -((1.0 - a) ** 2 * P + v_phi) / vx - torch.log(vx)
    return torch.softmax(log_eta, dim=0)


def marginal_w(v: torch.Tensor, P: torch.Tensor, vx: torch.Tensor) -> torch.Tensor:
    """The assignment posterior ``p(w_ft = n | x_ft) ∝ N_c(x_ft; 0, v^n_ft + v_x,ft)`` given the prior variances
    (s integrated out, uniform prior on w). ``v`` (N, ...), ``P = |x|^2`` and ``vx`` (...)."""
    V = v + vx
    return torch.softmax(-torch.log(V) - P / V, dim=0)


def mixture_cost(v: torch.Tensor, P: torch.Tensor, vx: torch.Tensor, mixture: str) -> torch.Tensor:
    """Negative log-likelihood per bin of the mixture power ``P`` (B, T, F) under the source variances ``v``
    (N, B, T, F), up to ``log pi``, averaged over bins: (B,)."""
    if mixture == "additive":
        V = v.sum(0) + vx
        return (torch.log(V) + P / V).mean((1, 2))
    V = v + vx
    log_p = torch.logsumexp(-torch.log(V) - P / V, dim=0) - math.log(v.shape[0])
    return (-log_p).mean((1, 2))


def _segment_draws(draw, shape: tuple, seed: int, starts: Sequence[int], *key: int) -> list[torch.Tensor]:
    """``draw(shape)`` (``torch.randn``, ``torch.rand``) once per segment, each from its own generator seeded by
    ``(seed, start, *key)`` (``start``: the segment's first frame), so a segment's draws do not depend on its batch."""
    generator = torch.Generator()
    parts = []
    for start in starts:
        generator.manual_seed(hash((seed, int(start), *key)) & (2**62 - 1))
        parts.append(draw(shape, generator=generator))
    return parts


def _draw_noise(seed: int, starts: Sequence[int], iteration: int, shape: tuple, device) -> torch.Tensor:
    """Standard normal noise (N, B, *shape) with one generator per segment, seeded by (seed, start, iteration)."""
    return torch.stack(_segment_draws(torch.randn, shape, seed, starts, iteration), 1).to(device)


def separate_segments(X: torch.Tensor, bank: SourceBank, config: SeparateConfig, starts: Sequence[int],
                      scale: torch.Tensor, start_power: torch.Tensor | None = None
                      ) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """Run the VEM on a batch of mixture segments ``X`` (B, T, F) complex (all the same length).

    ``starts`` (B,): first frame of each segment (seeds its random draws). ``scale`` (N, B): power scale
    ``c_n`` of each source's prior units. ``start_power`` (N, B, T, F), mixture units: each source's starting
    power (``init="nmf"``: :func:`nmf_source_powers`); None: each prior's reconstruction of the mixture.
    Returns the output masks (N, B, T, F) (source n = mask n times x:
    ``config.output``, averaged over the last ``config.average`` iterations), the cost per iteration (iterations,
    B) and the final rho (B,). Raises :class:`SeparationError` on non-finite values."""
    N = bank.n_sources
    P = X.real**2 + X.imag**2  # (B, T, F)
    B, T, F = P.shape
    floor = power_floor(P, config)
    P_floor = P.clamp(min=floor)
    rho = torch.full((B, 1, 1), config.rho, device=P.device)
    c = scale.reshape(N, B, 1, 1)
    with torch.no_grad():
        if start_power is None:  # model units
            start = bank.reconstruct(P.unsqueeze(0).expand(N, B, T, F) * c)
        else:
            start = start_power.clamp(min=floor) * c
        contexts = bank.teacher(start)  # of p^n
        eta = torch.full((N, B, T, F), 1.0 / N, device=P.device)
        draw_scale = config.draw_scale
        costs = []
        a_sum = 0.0
        gain = torch.ones(N, B, 1, F, device=P.device)  # per-source, per-bin gain on the prior variances (equalise)
        rounds = config.per_source("equalise", N)
        for iteration in range(config.iterations):
            vx = rho * P_floor
            noise = _draw_noise(config.seed, starts, iteration, (N, T, bank.z_dim + 2 * F), P.device) \
                if draw_scale > 0 else None
            zs = bank.encode(contexts, None if noise is None else noise[..., : bank.z_dim], draw_scale)
            # the equaliser as part of each prior's scale: variances e v, and drawn powers fed back divided by e
            a, v_phi, v, used, contexts = _roll(X, P, vx, eta, bank, zs, c / gain, config, noise)
            if any(rounds):
                gain = m_equaliser(v / gain, gain, P, vx, config.mixture, rounds)
            if config.mixture == "per_bin":  # marginal: the roll's own; mean-field: the next one, from a and v_phi
                eta = used if config.assignment == "marginal" else e_w(a, v_phi, P, vx)
            if config.update_rho:
                rho = _m_rho(a, v_phi, eta, P, P_floor, config.mixture)
            cost = mixture_cost(v, P, vx, config.mixture)
            if not bool(torch.isfinite(cost).all()):
                raise SeparationError(f"separation produced non-finite values at iteration {iteration}")
            costs.append(cost)
            if iteration >= config.iterations - config.average:
                a_sum = a_sum + output_mask(a, eta, v, P, vx, config)
    return a_sum / min(config.average, config.iterations), torch.stack(costs), rho.reshape(B)


def power_floor(P: torch.Tensor, config: SeparateConfig) -> torch.Tensor:
    """The power floor (B, 1, 1) of segments ``P = |x|^2`` (B, T, F): ``config.floor`` times each one's mean power
    (``v_x = rho |x|^2`` is computed from the floored power, so no bin's noise variance is 0)."""
    return config.floor * P.mean((1, 2), keepdim=True).clamp(min=1e-30)


def _power_ratio(power: torch.Tensor, exponent: float) -> torch.Tensor:
    """``power^k / sum_n power_n^k`` over the source axis, computed from logs (large exponents stay finite)."""
    return torch.softmax(exponent * torch.log(power.clamp(min=1e-30)), dim=0)


def output_mask(a: torch.Tensor, eta: torch.Tensor, v: torch.Tensor, P: torch.Tensor, vx: torch.Tensor,
                config: SeparateConfig) -> torch.Tensor:
    """The output mask of one iteration (N, ...) from the gains ``a``, the assignment ``eta`` and, for ``"power"``,
    the posterior powers of the prior variances ``v`` (:func:`posterior_power`; ``P = |x|^2`` and ``vx`` (...))
    (module docstring); ``config.output`` names one for every source or one per source. Each named mask is computed
    once."""
    if config.mixture == "additive":
        return a
    modes = config.per_source("output", len(a))
    masks = {}
    for mode in set(modes):
        if mode == "power":
            masks[mode] = _power_ratio(posterior_power(v, eta, P, vx), config.mask_exponent)
        else:
            masks[mode] = eta if mode == "assignment" else a
    if isinstance(config.output, str):
        return masks[config.output]
    return torch.stack([masks[mode][n] for n, mode in enumerate(modes)])


def _roll(X, P, vx, eta, bank: SourceBank, zs, c, config: SeparateConfig, noise):
    """E-S: roll the decoders over the frames, each step fed the drawn |s~_{t-1}|^2. Returns the gains ``a``,
    posterior variances ``v_phi`` and prior variances ``v``, each (N, B, T, F) (mixture units), the assignment
    the steps used (the marginal one computed at each step, else ``eta`` as given), and the encoder context
    ``(h, e)`` of the drawn powers per group (what :meth:`SourceBank.teacher` would compute from them). ``c``
    (N, B, 1, 1 or F): power scale from mixture units to each prior's units."""
    N, B, T, F = eta.shape
    states, inputs = bank.start(B)
    scale = c[..., 0, :]  # (N, B, 1), or (N, B, F) with the equaliser
    marginal = config.mixture == "per_bin" and config.assignment == "marginal"
    out_a, out_phi, out_v, out_eta, out_h, out_e = [], [], [], [], [], []
    z_dim = bank.z_dim
    for t in range(T):
        v, states = bank.step(states, inputs, zs, t)
        v = v / scale  # (N, B, F), mixture units
        if config.mixture == "per_bin":
            eta_t = marginal_w(v, P[:, t], vx[:, t]) if marginal else eta[:, :, t]
            a, v_phi = per_bin_posterior(v, eta_t, vx[:, t])
            if marginal:
                out_eta.append(eta_t)
        else:
            a, v_phi = additive_posterior(v, vx[:, t])
        if noise is None:
            fed = a * a * P[:, t]
        else:
            sigma = torch.sqrt(config.draw_scale * v_phi / 2)
            eps = noise[:, :, t, z_dim:]
            fed = (a * X.real[:, t] + sigma * eps[..., :F]) ** 2 + (a * X.imag[:, t] + sigma * eps[..., F:]) ** 2
        inputs = bank.embed(fed * scale)
        out_a.append(a)
        out_phi.append(v_phi)
        out_v.append(v)
        out_h.append([h for h, _ in states])
        out_e.append(inputs)
    contexts = [(torch.stack([step[g] for step in out_h], 2), torch.stack([step[g] for step in out_e], 2))
                for g in range(len(bank.groups))]
    used = torch.stack(out_eta, 2) if marginal else eta
    return torch.stack(out_a, 2), torch.stack(out_phi, 2), torch.stack(out_v, 2), used, contexts


def posterior_power(v: torch.Tensor, eta: torch.Tensor, P: torch.Tensor, vx: torch.Tensor) -> torch.Tensor:
    """Each source's posterior expected power ``E[|s^n_ft|^2 | x]`` (N, ...) under the per-bin model, given the
    prior variances ``v`` (N, ...) and the assignment ``eta`` (N, ...): ``eta_n (a^2 |x|^2 + a v_x) + (1 - eta_n) v``
    (assigned: the Wiener posterior, ``a = v / (v + v_x)`` and variance ``a v_x``; not assigned: the prior).
    ``P = |x|^2`` and ``vx`` (...)."""
    a = v / (v + vx)
    return eta * (a * a * P + a * vx) + (1.0 - eta) * v


def m_equaliser(v_raw: torch.Tensor, gain: torch.Tensor, P: torch.Tensor, vx: torch.Tensor, mixture: str,
                rounds: int | Sequence[int]) -> torch.Tensor:
    """M-step of each source's equaliser, a per-bin gain ``e`` (N, B, 1, F) on its prior variances ``v_raw``
    (N, B, T, F), so that source n has variance ``e_n v^n``: a timbre or channel the prior never heard.

    EM on (w, s) with their exact posterior under the current gains, ``rounds`` times (one count for every source,
    or one per source: a source's gain stays as given once its rounds are done):
    ``e <- mean_t E[|s^n_ft|^2] / v^n_ft`` (:func:`posterior_power` with the marginal assignment
    :func:`marginal_w`; additive: the Wiener split). Each round never increases :func:`mixture_cost`.
    ``P = |x|^2`` and ``vx`` (B, T, F)."""
    counts = torch.tensor([rounds] * len(v_raw) if isinstance(rounds, int) else list(rounds), device=gain.device)
    for round_ in range(int(counts.max())):
        v = gain * v_raw
        if mixture == "additive":
            a, v_phi = additive_posterior(v, vx)
            power = a * a * P + v_phi
        else:
            power = posterior_power(v, marginal_w(v, P, vx), P, vx)
        gain = torch.where((counts > round_).reshape(-1, 1, 1, 1), (power / v_raw).mean(2, keepdim=True), gain)
    return gain


def _m_rho(a, v_phi, eta, P, P_floor, mixture: str) -> torch.Tensor:
    """M-step of rho (B, 1, 1): the mean over bins of the expected residual power relative to |x|^2."""
    if mixture == "additive":
        residual = (1.0 - a.sum(0)) ** 2 * P + v_phi.sum(0)
    else:
        residual = (eta * ((1.0 - a) ** 2 * P + v_phi)).sum(0)
    return (residual / P_floor).mean((1, 2), keepdim=True).clamp(1e-4, 1.0)


# --------------------------------------------------------------------------------------------------------------
# signals: segmentation (mixdvae.audio.stft), levels, overlap-add


def separate(mixtures, priors: Sequence, config: SeparateConfig | None = None, device="cpu",
             setting: STFT = DEFAULT_STFT, progress=None, bases: Sequence[NMFBasis] | None = None) -> SeparationResult:
    """Separate 16 kHz mono mixtures (one (N,) array or a list) into one source per prior (SRNN, DKF or RVAE priors
    of power spectra, e.g. ``load_prior("srnn_speech")`` and ``load_prior("srnn_flute")``) with MixDVAE's VEM.

    ``bases``: one NMF basis per source, in the priors' order (e.g. ``load_sources(["speech", "flute"], "nmf")``),
    needed by ``config.init == "nmf"`` (the default). ``progress`` (optional) is called with the number of segments
    finished after each batch. Raises :class:`InputError` for a mixture that is empty, non-finite, silent or shorter
    than one STFT frame, :class:`UsageError` for missing or mismatched bases."""
    config = config or SeparateConfig()
    device = torch.device(device)
    waves = check_waveforms(mixtures, "mixture", setting.n_fft)
    bank = SourceBank(priors, device)
    for key in SeparateConfig.PER_SOURCE:  # checked before any work
        config.per_source(key, len(bank.order))
    stacked = _stack_bases(bases, len(bank.order), setting, device) if config.init == "nmf" else None
    reference = bank.reference_log_power().cpu()
    start, cpu_start = time.perf_counter(), time.process_time()
    specs = [setting(torch.from_numpy(w)) for w in waves]  # (T_i, F) each
    scales = torch.stack([_level_scales(w, spec, reference, config) for w, spec in zip(waves, specs)])  # (M, N)
    W, ranks = (None, None) if stacked is None else (stacked[0].expand(len(specs), -1, -1), stacked[1])  # (M, F, K)
    masks, costs, rhos = _vem_pass(specs, scales, bank, config, W, ranks, device, progress)
    for _ in range(config.passes - 1):
        W, ranks = _adapted_bases(stacked, config.per_source("adapt", len(bank.order)), specs, masks, config)
        masks, costs, rhos = _vem_pass(specs, scales, bank, config, W, ranks, device, progress)
    masks = _refined_masks(specs, masks, [len(w) for w in waves], scales, bank, config, device, setting)
    sources = []
    for spec, mask, wave in zip(specs, masks, waves):
        sources.append(setting.inverse(mask * spec, len(wave)).numpy().astype(np.float32))
    seconds, cpu_seconds = time.perf_counter() - start, time.process_time() - cpu_start
    return SeparationResult(sources, [torch.stack(c).mean(0).numpy() for c in costs], [float(np.mean(r)) for r in rhos],
                            seconds, cpu_seconds, sum(len(w) for w in waves) / MODEL_RATE, config)


def _segment_batches(specs, config: SeparateConfig):
    """Every segment of the mixtures' spectrograms ``specs`` (T_i, F) (``config.segment``, ``overlap``), in batches of
    one length (at most ``config.batch_size``): yields ``(length, [(mixture index, first frame), ...])``."""
    by_length: dict[int, list] = {}
    for i, spec in enumerate(specs):
        frames = spec.shape[0]
        for first in segment_starts(frames, config.segment, config.overlap):
            by_length.setdefault(min(config.segment or frames, frames), []).append((i, first))
    for length, group in sorted(by_length.items()):
        for first in range(0, len(group), config.batch_size):
            yield length, group[first : first + config.batch_size]


class _CrossFade:
    """Segments' masks (N, B, length, F) cross-faded back into each mixture's masks (N, T_i, F)."""

    def __init__(self, specs, n_sources: int):
        self.masks = [torch.zeros(n_sources, *spec.shape) for spec in specs]
        self.weights = [torch.zeros(spec.shape[0], 1) for spec in specs]

    def add(self, batch: list, length: int, mask: torch.Tensor) -> None:
        fade = crossfade_weights(length).reshape(length, 1)
        mask = mask.cpu()
        for row, (i, first) in enumerate(batch):
            self.masks[i][:, first : first + length] += mask[:, row] * fade
            self.weights[i][first : first + length] += fade

    def result(self) -> list[torch.Tensor]:
        return [mask / weight for mask, weight in zip(self.masks, self.weights)]


def _vem_pass(specs, scales, bank: SourceBank, config: SeparateConfig, W, ranks, device, progress):
    """One VEM over every segment of the mixtures' spectrograms ``specs`` (T_i, F), from the NMF start of the
    bases ``W`` (M, F, K) (one set per mixture; None: the priors' reconstruction): each mixture's cross-faded masks
    (N, T_i, F) and its segments' costs and rhos."""
    out = _CrossFade(specs, len(bank.order))
    costs: list[list] = [[] for _ in specs]
    rhos: list[list] = [[] for _ in specs]
    for length, batch in _segment_batches(specs, config):
        index = [i for i, _ in batch]
        starts = [first for _, first in batch]
        X = torch.stack([specs[i][first : first + length] for i, first in batch]).to(device)
        power = None if W is None else nmf_source_powers(X, W[index], ranks, config, starts)
        mask, cost, rho = separate_segments(X, bank, config, starts, scales[index].T.to(device), power)
        out.add(batch, length, mask)
        for row, i in enumerate(index):
            costs[i].append(cost[:, row].cpu())
            rhos[i].append(float(rho[row]))
        if progress is not None:
            progress(len(batch))
    return out.result(), costs, rhos


def reconstruction_mask(power: torch.Tensor, P: torch.Tensor, scale: torch.Tensor, bank: SourceBank,
                        config: SeparateConfig) -> torch.Tensor:
    """The output mask (N, B, T, F) when each source's prior variance is its prior's teacher-forced reconstruction
    of ``power`` (N, B, T, F), the source's power in mixture units: equalised as the VEM equalises
    (``config.equalise`` rounds per iteration, from e = 1), then the assignment and output mask of ``config``, with
    v_x = rho |x|^2. ``P = |x|^2`` (B, T, F); ``scale`` (N, B): mixture to prior units."""
    c = scale.reshape(*scale.shape, 1, 1)
    vx = config.rho * P.clamp(min=power_floor(P, config))
    v = bank.reconstruct(power * c) / c  # mixture units
    rounds = [r * config.iterations for r in config.per_source("equalise", len(v))]
    v = m_equaliser(v, torch.ones_like(v[:, :, :1]), P, vx, config.mixture, rounds) * v
    if config.mixture == "additive":
        return output_mask(additive_posterior(v, vx)[0], None, v, P, vx, config)
    eta = marginal_w(v, P, vx)
    return output_mask(per_bin_posterior(v, eta, vx)[0], eta, v, P, vx, config)


def _refined_masks(specs, masks, lengths, scales, bank: SourceBank, config: SeparateConfig, device,
                   setting: STFT) -> list[torch.Tensor]:
    """Refinement (``config.refine`` passes): each mixture's masks (N, T_i, F) replaced by the
    :func:`reconstruction_masks` of its current estimates' spectrograms: their own STFT after the inverse STFT to
    ``lengths[i]`` samples, not ``|m^n x|^2``, whose masked-out bins fall far below anything the priors were trained
    on (on validation mixtures the refinement then lost 2-3 dB)."""
    for _ in range(config.refine):
        estimates = [setting(setting.inverse(mask * spec, n)) for mask, spec, n in zip(masks, specs, lengths)]
        masks = reconstruction_masks(specs, [e.real**2 + e.imag**2 for e in estimates], scales, bank, config, device)
    return masks


def reconstruction_masks(specs, powers, scales, bank: SourceBank, config: SeparateConfig, device) -> list[torch.Tensor]:
    """Per mixture spectrogram ``specs[i]`` (T_i, F), the :func:`reconstruction_mask` (N, T_i, F) of the source powers
    ``powers[i]`` (N, T_i, F), mixture units, over the VEM's segments (the priors were trained on 50-frame sequences)
    cross-faded back; ``scales`` (M, N): mixture to prior units."""
    out = _CrossFade(specs, len(bank.order))
    with torch.no_grad():
        for length, batch in _segment_batches(specs, config):
            X = torch.stack([specs[i][first : first + length] for i, first in batch]).to(device)
            power = torch.stack([powers[i][:, first : first + length] for i, first in batch], 1).to(device)
            scale = scales[[i for i, _ in batch]].T.to(device)  # (N, B)
            out.add(batch, length, reconstruction_mask(power, X.real**2 + X.imag**2, scale, bank, config))
    return out.result()


def _adapted_bases(stacked, adapt: tuple, specs, masks, config: SeparateConfig):
    """Per mixture, each source's class basis with, beside it when ``adapt[n]`` > 0, an IS-NMF basis of that rank
    learned on the power of the source's estimate ``masks[i][n] * specs[i]`` (seeded): (M, F, K') and the ranks."""
    W, ranks = stacked
    per_mixture = []
    # one small NMF per mixture and adapted source, between passes: on one CPU thread a padded batch of all mixtures
    # was slower (12 mixtures of 4 s: 1.42 s against 1.17 s; the updates are memory-bound)
    for spec, mask in zip(specs, masks):
        columns = []
        for n, (a, b) in enumerate(_bounds(ranks)):
            columns.append(W[:, a:b])
            if adapt[n]:
                power = (mask[n] * spec).abs().square().T.contiguous().to(W)  # (F, T)
                columns.append(nmf.learn_basis(power, adapt[n], config.nmf_iterations, config.seed).W)
        per_mixture.append(torch.cat(columns, 1))
    return torch.stack(per_mixture), [r + a for r, a in zip(ranks, adapt)]


def _level_scales(wave: np.ndarray, spec: torch.Tensor, reference: torch.Tensor, config: SeparateConfig):
    """Power scale ``c_n`` (N,) from a mixture to each prior's units (see ``SeparateConfig.level``)."""
    if config.level == "rms":
        rms = float(np.sqrt(np.mean(wave.astype(np.float64) ** 2)))
        return torch.full_like(reference, (10 ** (config.level_db / 20) / rms) ** 2)
    return torch.exp(reference - log_level(spec.real**2 + spec.imag**2))


# --------------------------------------------------------------------------------------------------------------
# baselines


def _stack_bases(bases: Sequence[NMFBasis] | None, n_sources: int, setting: STFT, device):
    """The bases' columns side by side, W (F, K_total), and each basis' rank, checked against the sources and
    the STFT."""
    if bases is None or len(bases) != n_sources:
        given = "none" if bases is None else len(bases)
        raise UsageError(f"separate config init='nmf' needs one NMF basis per source ({n_sources}), got {given}: "
                         f"pass bases= (e.g. load_sources(names, 'nmf')) or set init='reconstruction'")
    for index, basis in enumerate(bases):
        if basis.W.shape[0] != setting.n_bins:
            raise UsageError(f"NMF basis {index} has {basis.W.shape[0]} frequency bins, the STFT {setting.n_bins}")
    return torch.cat([b.W for b in bases], 1).to(device), [b.W.shape[1] for b in bases]


def nmf_source_powers(X: torch.Tensor, W: torch.Tensor, ranks: Sequence[int], config: SeparateConfig,
                      starts: Sequence[int] | None = None) -> torch.Tensor:
    """Supervised NMF fit of mixtures ``X`` (B, T, F) complex: the power ``|x|^2`` fitted as ``sum_n W_n H_n`` with
    the bases ``W`` (F, K_total), or one set per mixture (B, F, K_total), fixed (source n: columns of ``ranks[n]``)
    by ``config.nmf_iterations`` multiplicative IS updates of the activations. Returns each source's variance
    ``W_n H_n`` (N, B, T, F).

    The activations start random, from one generator per segment seeded by ``(config.seed, starts[b])`` (its first
    frame), so a result does not depend on its batch; ``starts`` None (the baseline's one mixture at a time): one
    generator seeded by ``config.seed``."""
    P = (X.real**2 + X.imag**2).transpose(1, 2)  # (B, F, T)
    B, _, T = P.shape
    mean = P.mean((1, 2), keepdim=True).clamp(min=1e-30)  # (B, 1, 1)
    W = W if W.dim() == 3 else W.unsqueeze(0)  # (B or 1, F, K)
    K = W.shape[2]
    if starts is None:
        H = torch.rand(B, K, T, generator=torch.Generator().manual_seed(config.seed))
    else:
        H = torch.stack(_segment_draws(torch.rand, (K, T), config.seed, starts))
    H = (H + 0.1).to(P.device) * mean * W.shape[1] / K  # W H of the order of the mean power
    floor, zero = config.floor * mean, torch.zeros((), device=P.device)
    for _ in range(config.nmf_iterations):
        H = nmf.update_H(P, zero, W, H, None, floor)
    W = W.expand(B, -1, -1)
    return torch.stack([torch.einsum("bfk,bkt->btf", W[:, :, a:b], H[:, a:b]) for a, b in _bounds(ranks)])


def nmf_separate(mixtures, bases: Sequence[NMFBasis], config: SeparateConfig | None = None, device="cpu",
                 setting: STFT = DEFAULT_STFT) -> SeparationResult:
    """Supervised NMF separation: the mixture power is fitted as ``sum_n W_n H_n`` with each source's basis
    ``W_n`` fixed (learned on that source's clean training data, :func:`mixdvae.audio.enhance.learn_nmf_basis`)
    by ``config.nmf_iterations`` multiplicative IS updates of the activations (:func:`nmf_source_powers`); each
    source is its Wiener mask ``W_n H_n / sum_m W_m H_m`` times the mixture."""
    config = config or SeparateConfig()
    waves = check_waveforms(mixtures, "mixture", setting.n_fft)
    if not bases:
        raise UsageError("NMF separation needs at least one basis")
    W, ranks = _stack_bases(bases, len(bases), setting, device)
    start, cpu_start = time.perf_counter(), time.process_time()
    sources = []
    for wave in waves:
        X = setting(torch.from_numpy(wave)).to(device)  # (T, F)
        parts = nmf_source_powers(X.unsqueeze(0), W, ranks, config)[:, 0]  # (N, T, F)
        masks = parts / parts.sum(0).clamp(min=config.floor * float((X.real**2 + X.imag**2).mean()))
        sources.append(setting.inverse((masks * X).cpu(), len(wave)).numpy().astype(np.float32))
    return _baseline_result(sources, waves, start, cpu_start, config)


def oracle_separate(mixture: np.ndarray, references: np.ndarray, kind: Literal["irm", "ibm"] = "irm",
                    setting: STFT = DEFAULT_STFT) -> np.ndarray:
    """Oracle masks (upper bounds) from the true sources ``references`` (N, n_samples): the ideal ratio mask
    ``|S_n|^2 / sum_m |S_m|^2`` (``"irm"``) or the ideal binary mask (1 where source n is the loudest,
    ``"ibm"``), applied to the mixture's STFT. Returns the estimates (N, n_samples) float32."""
    if kind not in ("irm", "ibm"):
        raise UsageError(f"unknown oracle mask {kind!r}; known: irm, ibm")
    X = setting(torch.from_numpy(np.ascontiguousarray(mixture, dtype=np.float32)))  # (T, F)
    S = setting(torch.from_numpy(np.ascontiguousarray(references, dtype=np.float32)))  # (N, T, F)
    power = S.real**2 + S.imag**2
    if kind == "irm":
        mask = power / power.sum(0).clamp(min=1e-20)
    else:
        mask = torch.nn.functional.one_hot(power.argmax(0), S.shape[0]).permute(2, 0, 1).to(power.dtype)
    return setting.inverse(mask * X, len(mixture)).numpy().astype(np.float32)


def exact_inference_separate(mixture: np.ndarray, references: np.ndarray, priors: Sequence,
                             config: SeparateConfig | None = None, device="cpu", setting: STFT = DEFAULT_STFT
                             ) -> np.ndarray:
    """MixDVAE's output with exact inference: the bound that the priors themselves set, as the oracle masks bound
    any mask. The refinement step (:func:`reconstruction_masks`, over the VEM's segments) fed the true sources
    ``references`` (N, n_samples) instead of the estimates: each source's prior variance its prior's teacher-forced
    reconstruction of the true source, equalised as the VEM equalises, then the assignment and output mask of
    ``config``. What this loses to the oracle ratio mask is the priors' error (timbre, model), not the inference's.
    Returns the estimates (N, n_samples) float32."""
    config = config or SeparateConfig()
    bank = SourceBank(priors, torch.device(device))
    wave = np.ascontiguousarray(mixture, dtype=np.float32)
    X = setting(torch.from_numpy(wave))  # (T, F)
    S = setting(torch.from_numpy(np.ascontiguousarray(references, dtype=np.float32)))  # (N, T, F)
    scale = _level_scales(wave, X, bank.reference_log_power().cpu(), config).reshape(1, -1)  # (1, N)
    mask = reconstruction_masks([X], [S.real**2 + S.imag**2], scale, bank, config, device)[0]
    return setting.inverse(mask * X, len(wave)).numpy().astype(np.float32)


def _bounds(ranks: Sequence[int]) -> list[tuple[int, int]]:
    edges = np.concatenate([[0], np.cumsum(ranks)])
    return [(int(a), int(b)) for a, b in zip(edges[:-1], edges[1:])]


def _baseline_result(sources, waves, start, cpu_start, config) -> SeparationResult:
    return SeparationResult(sources, [np.zeros(0) for _ in waves], [float("nan")] * len(waves),
                            time.perf_counter() - start, time.process_time() - cpu_start,
                            sum(len(w) for w in waves) / MODEL_RATE, config)


# --------------------------------------------------------------------------------------------------------------
# source models by name


# A class name's shipped prior, where it is not ``srnn_<class>``: chosen on the separation validation mixtures (mean
# SI-SDR of four runs from the NMF start): the DKF beat srnn_speech (14.83 against 13.81), then the RVAE the DKF
# (15.43 against 15.03, every run higher, with the settings tuned for the DKF)
CLASS_PRIORS = {"speech": "rvae_speech"}


def source_label(source: str | os.PathLike) -> str:
    """The name of a source given as a class name (``"speech"``), a shipped prior name (``"srnn_speech"``,
    ``"rvae_speech"``: a model of :data:`STACKS` or ``nmf_`` before the class) or a checkpoint path (its stem): used
    in output file names and to find a shipped prior's NMF basis."""
    name = Path(source).stem if Path(str(source)).suffix == ".pt" or os.sep in str(source) else str(source)
    for prefix in (*(f"{model}_" for model in STACKS), "nmf_"):
        if name.startswith(prefix) and not Path(str(source)).is_file():
            return name[len(prefix):]
    return name


def source_path(source: str | os.PathLike, method: Literal["mixdvae", "nmf"]) -> Path:
    """The checkpoint file of a source for ``method`` (it may not exist): a shipped name or a path as given, else a
    class name's shipped model: DVAE priors ``srnn_<class>`` or the :data:`CLASS_PRIORS` entry (``"speech"`` ->
    ``rvae_speech``), NMF bases ``nmf_<class>`` (``"speech"`` -> ``nmf_speech``)."""
    from mixdvae.dvae import prior_path

    path = prior_path(source)
    if not path.is_file() and not Path(str(source)).suffix and os.sep not in str(source):
        label = source_label(source)
        path = prior_path(CLASS_PRIORS.get(label, f"srnn_{label}") if method == "mixdvae" else f"nmf_{label}")
    return path


def load_sources(sources: Sequence[str | os.PathLike], method: Literal["mixdvae", "nmf"], device="cpu") -> list:
    """The model of each source for ``method`` (DVAE priors or NMF bases), found by :func:`source_path`.

    Raises :class:`~mixdvae.errors.DataNotFoundError` (naming the shipped files) or a
    :class:`~mixdvae.dvae.base.CheckpointError` / :class:`UsageError` naming the file that is not usable."""
    from mixdvae.dvae import available_priors, load_prior

    models = []
    for source in sources:
        path = source_path(source, method)
        if not path.is_file():
            raise DataNotFoundError(f"source {str(source)!r}: no checkpoint at {path}; shipped: "
                                    f"{available_priors()}")
        if method == "nmf":
            models.append(NMFBasis.load(path))
        else:
            prior = load_prior(path, device=device)
            check_prior(prior, str(path))
            models.append(prior)
    return models


# --------------------------------------------------------------------------------------------------------------
# scores

SCORES = ("si_sdr", "sdr", "sir", "sar")


def separation_scores(estimates: np.ndarray, references: np.ndarray, mixture: np.ndarray) -> dict[str, list]:
    """Per source (in the given order, no permutation): SI-SDR, SDR, SIR, SAR of ``estimates`` (N, n) against
    ``references`` (N, n), and the same four of the mixture (n,) taken as the estimate of every source
    (``*_mix``: the reference point of the improvements), in dB."""
    from .metrics import bss_eval, si_sdr

    estimates, references = np.asarray(estimates, np.float64), np.asarray(references, np.float64)
    mixed = np.repeat(np.asarray(mixture, np.float64)[None], len(references), 0)
    out: dict[str, list] = {}
    for suffix, est in (("", estimates), ("_mix", mixed)):
        bss = bss_eval(est, references, permute=False)
        out[f"si_sdr{suffix}"] = np.atleast_1d(si_sdr(est, references)).tolist()
        out[f"sdr{suffix}"], out[f"sir{suffix}"], out[f"sar{suffix}"] = (bss.sdr.tolist(), bss.sir.tolist(),
                                                                         bss.sar.tolist())
    return out
