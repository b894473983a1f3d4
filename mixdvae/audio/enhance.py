"""Unsupervised speech enhancement by variational EM (DESIGN §7): DVAE-VEM, VAE-VEM and NMF-VEM in one engine.

Model of a noisy STFT ``X`` (one utterance, F bins x T frames)::

    x_ft = sqrt(g_t) s_ft + b_ft,   s ~ speech model (frozen),   b_ft ~ N_c(0, (W H)_ft),   V_x = g V_s + W H

with a non-negative noise model of rank K (``W`` (F, K), ``H`` (K, T)) and a per-frame gain ``g_t``. The speech
model is swapped, the loop is the same:

* **DVAE-VEM** (``SRNN`` or ``DKF`` prior, :mod:`mixdvae.dvae`) and **VAE-VEM** (the frame-independent VAE):
  V_s = decoder(z). E-Z: ``encoder_steps`` Adam steps on the *encoder* weights only (a per-call copy, one per
  utterance: the prior object is never modified), maximising ``E_q[-sum P / V_x + log V_x] - KL(q(z) || p(z))``
  with a reparameterised sample; then ``samples`` draws of z (no gradient) give V_s.
* **Joint priors** (a list of DVAE/VAE priors, :class:`JointSpeech`): each member runs its own E-Z against the
  shared noise model and gain; the M-step and the output pool their draws (the speech posterior is the mixture of
  the members', weighted by ``member_weights``).
* **NMF-VEM**: V_s = W_s H_s with a fixed speech basis ``W_s`` learned on clean speech
  (:func:`mixdvae.audio.nmf.learn_basis`); the E-step is the multiplicative update of the activations H_s
  (the gain is then redundant and stays 1).

M-step: the multiplicative Itakura-Saito updates of W, H (columns of W normalised) and g
(:mod:`mixdvae.audio.nmf`). Output: the Wiener filter ``g V_s / (g V_s + W H) X`` averaged over
``wiener_samples`` draws of z, then the inverse STFT.

Speech-power input of the autoregressive decoders: an SRNN's (or DKF's) deterministic recurrence runs on the
current estimate of the clean speech power, ``E[|s_ft|^2 | x]`` of the previous iteration (the noisy power at
the first one), as one fused pass per iteration for the whole batch (``speech_input="estimate"``), or on the
noisy power throughout (``"noisy"``: computed once); the encoder reads the noisy power.

Long inputs are cut into overlapping segments of ``segment`` frames (10 s), enhanced independently and
cross-faded back: memory stays bounded by one batch of segments, and a long file's segments fill a batch.
Batching: utterances (and segments) of different lengths are padded and masked; every random draw and every
adapted weight belongs to one utterance, so an utterance's result does not depend on the batch it runs in (up to
floating point). Layout inside the engine: (B, F, T) for spectrograms as in the NMF literature; the priors take
(B, T, F).
Levels: each utterance's noisy power is scaled to the mean power the prior was trained on (``P`` in the
prior's units); the output is scaled back.
"""

from __future__ import annotations

import copy
import functools
import math
import os
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import ClassVar, Literal

import numpy as np
import torch

from mixdvae.config import Range, validate_fields
from mixdvae.dvae.base import CheckpointError, reverse_valid
from mixdvae.errors import ConfigError, InputError, UsageError

from . import nmf
from .corpus import load_split
from .io import MODEL_RATE, check_waveforms
from .stft import DEFAULT_STFT, STFT, crossfade_weights, segment_starts
from .timing import RealTimeFactors

NMF_FORMAT = "mixdvae-nmf-basis"
SPEECH_LIKELIHOOD = "itakura_saito"  # the likelihood of a prior of power spectra
LOG_FLOOR = 1e-10  # added to the power before the log of the level statistic (the priors' power_floor)
NOISE_CHUNK = 64  # frames per seeded block of latent noise (draws do not depend on the batch's length)


@dataclass
class EnhanceConfig:
    """Every setting of :func:`enhance`, with its default (validated by :meth:`checked`)."""

    iterations: int = 55  # VEM iterations (E-Z then M): more gain on validation, the count the 0.5 RTF budget allows
    noise_rank: int = 8  # K, rank of the NMF noise model
    encoder_steps: int = 1  # Adam steps on the encoder weights per E-Z
    lr: float = 5e-3  # Adam learning rate of the encoder fine-tuning (see PRIOR_SETTINGS)
    samples: int = 1  # draws of z per E-Z for the M-step
    wiener_samples: int = 4  # draws of z averaged in the output Wiener filter
    batch_size: int = 16  # utterances (or segments) processed together (sorted by length)
    segment: int = 625  # frames per segment of a long input (10 s; 0: always the whole input)
    overlap: int = 63  # frames shared by consecutive segments (1 s), cross-faded
    seed: int = 0
    floor: float = 1e-8  # variance floor, relative to the mean noisy power of each utterance
    m_steps: int = 6  # rounds of the multiplicative updates of W, H and g per iteration
    warmup_m_steps: int = 100  # rounds of the M-step before the first E-step, on the unadapted prior's V_s
    nmf_speech_updates: int = 1  # NMF-VEM: updates of the speech activations per E-step
    tune: Literal["head", "encoder"] = "head"  # SRNN/DKF: fine-tune the posterior head, or the whole encoder
    speech_input: Literal["estimate", "noisy"] = "estimate"  # SRNN/DKF decoder's past power: E[|s|^2|x] or |x|^2
    # a joint VEM: the weight of each prior's posterior in the pooled speech model, in the priors' order (None: equal;
    # default_config gives the MEMBER_WEIGHTS of their kinds)
    member_weights: tuple[float, ...] | None = None

    BOUNDS: ClassVar[dict] = {
        "iterations": Range(1, 10000), "noise_rank": Range(1, 512), "encoder_steps": Range(0, 100),
        "lr": Range(0, 1, exclusive_low=True), "samples": Range(1, 64), "wiener_samples": Range(1, 256),
        "batch_size": Range(1, 4096), "segment": Range(0, 10**7), "overlap": Range(0, 10**7),
        "seed": Range(0), "floor": Range(0, 1e-2, exclusive_low=True),
        "nmf_speech_updates": Range(1, 100), "m_steps": Range(1, 100), "warmup_m_steps": Range(0, 10000),
        "member_weights": Range(0, 1e6, exclusive_low=True),
    }

    def __post_init__(self):
        """Validate every field (:class:`~mixdvae.errors.ConfigError` naming the key)."""
        validate_fields(self, "enhance config")
        if self.segment and self.overlap >= self.segment:
            raise ConfigError(f"enhance config: overlap ({self.overlap}) must be smaller than segment ({self.segment})")


# Settings that differ by kind of speech model, over the EnhanceConfig defaults; chosen on the validation split
# (README, "Audio: speech enhancement"). NMF-VEM's fixed basis cannot hold the speech against a noise model that
# is fitted first and updated six times per iteration (it drops to +1.5 dB): it keeps three rounds, no warm-up.
# The SRNN's head gains from a faster fine-tuning (lr 1e-2: +6.4 dB against +5.8 at 5e-3); the VAE (+2.6 dB)
# and the DKF (the shipped two-stage dkf_speech: +3.3 dB at 1e-2, +7.1 at 2.5e-3, +7.7 at 5e-3) keep 5e-3.
PRIOR_SETTINGS: dict[str, dict] = {"nmf": {"m_steps": 3, "warmup_m_steps": 0}, "srnn": {"lr": 1e-2}}
# A joint VEM's weight of a member by its kind (others 1): chosen for the default pair on the validation split, where
# the DKF's posterior counted twice the VAE's gave +8.07 dB SI-SDR (equal: +7.81; DKF x3: +7.95; VAE x2: +7.78)
MEMBER_WEIGHTS: dict[str, float] = {"dkf": 2.0}


def default_config(prior, **overrides) -> EnhanceConfig:
    """The :class:`EnhanceConfig` for ``prior`` (an :class:`NMFBasis`, a DVAE/VAE, or a list of DVAE/VAEs for a
    joint VEM): the defaults, the prior kind's :data:`PRIOR_SETTINGS` (for a list, those its members' kinds
    share), then ``overrides``."""
    members = prior if isinstance(prior, (list, tuple)) else [prior]
    kinds = ["nmf" if isinstance(p, NMFBasis) else p.config.get("model") for p in members]
    settings = [PRIOR_SETTINGS.get(kind, {}) for kind in kinds]
    shared = {key: value for key, value in settings[0].items() if all(s.get(key) == value for s in settings[1:])}
    if isinstance(prior, (list, tuple)):
        shared["member_weights"] = tuple(MEMBER_WEIGHTS.get(kind, 1.0) for kind in kinds)
    return EnhanceConfig(**{**shared, **overrides})


@dataclass
class EnhanceResult(RealTimeFactors):
    """Outputs of :func:`enhance`, in the order of the inputs.

    Attributes:
        enhanced: enhanced waveforms, each (N_i,) float32 like its input.
        cost: (iterations, U) Itakura-Saito cost per valid time-frequency bin after each iteration, per
            utterance (``mean P / V_x + log V_x`` in the prior's power units; a segmented input's is the mean over
            its segments weighted by their frames): the convergence record.
        seconds: processing time (wall clock, all batches).
        cpu_seconds: CPU time of the process over the same span (all its threads; with
            ``torch.set_num_threads(1)`` the time on one core; other busy processes on the machine are not counted
            but still slow it through shared caches and memory: time alone).
        audio_seconds: total duration of the inputs.
    """

    enhanced: list[np.ndarray]
    cost: np.ndarray
    seconds: float
    cpu_seconds: float
    audio_seconds: float
    config: EnhanceConfig = field(default_factory=EnhanceConfig)


class EnhancementError(InputError):
    """The VEM produced non-finite values (reported with the utterance; never silently returned)."""


# --------------------------------------------------------------------------------------------------------------
# seeded noise, independent of the batch


def latent_noise(seed: int, key: tuple, samples: int, frames: int, dim: int, device) -> torch.Tensor:
    """Standard normal noise (samples, frames, dim) for the draw named ``key`` (a tuple of ints), the same for
    every utterance of a batch and a prefix of the draw for a longer one: blocks of :data:`NOISE_CHUNK` frames,
    each from its own seeded generator."""
    generator = torch.Generator()
    blocks = []
    for chunk in range(math.ceil(frames / NOISE_CHUNK)):
        generator.manual_seed(hash((seed, key, chunk)) & (2**62 - 1))
        blocks.append(torch.randn(samples, NOISE_CHUNK, dim, generator=generator))
    return torch.cat(blocks, 1)[:, :frames].to(device)


# --------------------------------------------------------------------------------------------------------------
# speech models


class NMFBasis:
    """A fixed NMF speech basis ``W`` (F, K) with unit-sum columns, learned on clean power spectrograms whose
    mean log-power (:func:`log_level`) was ``reference_log_power``."""

    def __init__(self, W: torch.Tensor, reference_log_power: float, meta: dict | None = None):
        if W.dim() != 2 or not torch.isfinite(W).all() or (W < 0).any():
            raise ValueError("an NMF basis is a finite non-negative (F, K) tensor")
        self.W = W.float()
        self.reference_log_power = float(reference_log_power)
        self.meta = dict(meta or {})

    def save(self, path: str | os.PathLike) -> None:
        """Write the basis atomically (torch file, loadable with ``weights_only``)."""
        path = Path(path)
        tmp = path.with_name(f".{path.name}.tmp")
        payload = {"format": NMF_FORMAT, "W": self.W.cpu(), "reference_log_power": self.reference_log_power,
                   "meta": self.meta}
        torch.save(payload, tmp)
        os.replace(tmp, path)

    @classmethod
    def load(cls, path: str | os.PathLike) -> NMFBasis:
        """Read a basis written by :meth:`save`; :class:`CheckpointError` naming the file when it is not one."""
        path = Path(path)
        try:
            payload = torch.load(path, map_location="cpu", weights_only=True)
            if not isinstance(payload, dict) or payload.get("format") != NMF_FORMAT:
                raise ValueError(f"missing format tag {NMF_FORMAT!r}")
            return cls(payload["W"], payload["reference_log_power"], payload.get("meta"))
        except FileNotFoundError:
            raise
        except Exception as err:  # noqa: BLE001 - any unpickling or content failure means a bad file
            raise CheckpointError(f"{path}: not a usable NMF speech basis ({type(err).__name__}: {err})") from None


class SpeechModel:
    """What the engine needs from a speech model, for one batch (see the subclasses)."""

    uses_gain = True

    def reference_log_power(self) -> float:
        """Mean log-power (:func:`log_level`) of clean speech in the model's units: inputs are scaled to it."""
        raise NotImplementedError

    def start(self, P: torch.Tensor, mask: torch.Tensor) -> None:
        """Prepare a batch: noisy power ``P`` (B, F, T) in model units, ``mask`` (B, T) bool."""
        raise NotImplementedError

    def e_step(self, P, g, Vb, mask, key: tuple) -> torch.Tensor:
        """Adapt to the current gain ``g`` (B, T) and noise variance ``Vb`` (B, F, T); return speech variances
        ``V_s`` (S, B, F, T) for the M-step (no gradient). ``key`` names the iteration (seeded draws)."""
        raise NotImplementedError

    def variances(self, samples: int, key: tuple) -> torch.Tensor:
        """``samples`` draws of the speech variances ``V_s`` (S, B, F, T) (no gradient)."""
        raise NotImplementedError

    def set_speech_power(self, power: torch.Tensor) -> None:
        """The current estimate of the clean speech power (B, F, T) (for autoregressive decoders)."""

    def draw_weights(self, draws: int) -> torch.Tensor | None:
        """Weights (S,) of the ``draws`` samples of ``V_s`` in every average over them (on the model's device),
        mean 1; None: all 1."""
        return None


class NMFSpeech(SpeechModel):
    """NMF-VEM: ``V_s = W_s H_s``, fixed basis, activations updated multiplicatively in the E-step."""

    uses_gain = False

    def __init__(self, basis: NMFBasis, config: EnhanceConfig, device):
        self.basis = basis.W.to(device)
        self.level = basis.reference_log_power
        self.config = config

    def reference_log_power(self) -> float:
        return self.level

    def start(self, P, mask):
        B, F, T = P.shape
        if F != self.basis.shape[0]:
            raise UsageError(f"NMF speech basis has {self.basis.shape[0]} bins, the spectrogram {F}")
        K = self.basis.shape[1]
        mean = _masked_mean(P, mask).reshape(B, 1, 1)
        self.W = self.basis.unsqueeze(0).expand(B, F, K)
        self.H = (mean * F / (2 * K)).expand(B, K, T).clone()

    def e_step(self, P, g, Vb, mask, key):
        floor = self.floor(P, mask)
        for _ in range(self.config.nmf_speech_updates):
            self.H = nmf.update_H(P, Vb, self.W, self.H, mask, floor)
        return self.variances(1, key)

    def floor(self, P, mask) -> torch.Tensor:
        return self.config.floor * _masked_mean(P, mask).reshape(-1, 1, 1)

    def variances(self, samples, key):
        return (self.W @ self.H).unsqueeze(0)


class DVAESpeech(SpeechModel):
    """DVAE-VEM / VAE-VEM: a frozen decoder, an encoder fine-tuned per utterance.

    Supported priors: SRNN and DKF, whose encoder is a backward LSTM ``enc_rnn`` giving g_t and a head
    ``post_z`` for q(z_t | z_{t-1}, g_t); ``config.tune`` says what is fine-tuned: ``"head"`` (post_z; the LSTM
    runs once per iteration without gradient) or ``"encoder"`` (both). The frame-independent VAE's encoder is
    its input embedding ``embed_x`` and the same head ``post_z``: ``"head"`` tunes post_z, ``"encoder"`` both.
    The RVAE's is a forward and a backward LSTM over the embedded noisy power and a frame-wise head ``post_z``
    for q(z_t | g_t): ``"head"`` tunes post_z (the LSTMs run once per batch), ``"encoder"`` also the LSTMs.
    Each utterance gets its own copy of the tuned weights (stacked on a leading batch axis), so Adam adapts them
    independently."""

    def __init__(self, prior, config: EnhanceConfig, device):
        name = prior.config.get("model")
        if name not in ("srnn", "dkf", "rvae", "vae"):
            raise UsageError(f"speech enhancement supports SRNN, DKF, RVAE and VAE priors, not {name!r}")
        if prior.config.get("likelihood") != SPEECH_LIKELIHOOD or prior.config.get("param") != "log_power":
            raise UsageError(f"the prior's likelihood is {prior.config.get('likelihood')!r}: a speech prior "
                             f"models power spectra (param 'log_power') with the {SPEECH_LIKELIHOOD!r} likelihood")
        self.name = name
        self.model = copy.deepcopy(prior).to(device).eval()
        for p in self.model.parameters():
            p.requires_grad_(False)
        self.config = config

    def reference_log_power(self) -> float:
        """The mean of the per-bin mean log-power statistics of a ``log_power`` prior."""
        return float(self.model.io.x_mean.mean())

    def _tuned_modules(self) -> dict[str, torch.nn.Module]:
        m = self.model
        tuned = {"head": m.post_z.net}
        if self.config.tune != "encoder":
            return tuned
        if self.name == "vae":
            return {**tuned, "embed": m.embed_x}
        if self.name == "rvae":
            return {**tuned, "rnn": m.enc_forward, "rnn_backward": m.enc_backward}
        return {**tuned, "rnn": m.enc_rnn}

    def start(self, P, mask):
        B = P.shape[0]
        self.lengths = mask.sum(1)
        # the decoder is frame-wise given its inputs: it runs on the valid frames only (None: all are valid)
        self.frames = None if bool(mask.all()) else mask.reshape(-1).nonzero().squeeze(1)  # (N,) flat (b, t)
        self.weights = {
            f"{prefix}.{name}": p.detach().unsqueeze(0).repeat(B, *([1] * p.dim())).requires_grad_()
            for prefix, module in self._tuned_modules().items() for name, p in module.named_parameters()
        }
        self.optimizer = torch.optim.Adam(list(self.weights.values()), lr=self.config.lr)
        with torch.no_grad():
            features = self.model._sequence_inputs(P.transpose(1, 2))[3]  # of the noisy power, (B, T, F)
            self.embedded = self.model.embed_x(features)  # the VAE's frozen embedding (tune="head")
            self.noisy = features if self.name == "vae" else self.embedded
            # the DKF's and the RVAE's encoders read the noisy features only: their input (and, for tune="head",
            # their LSTMs' output) is computed once here, not at every iteration as the SRNN's, which also reads h
            self.encoder = {}
            if self.name == "dkf":
                self.encoder = self._encoder_context(reverse_valid(self.noisy, self.lengths))
            elif self.name == "rvae" and self.config.tune == "head":
                self.encoder = {"g": self.model.encoder_context(self.noisy, self.lengths)}
        self.context = {}
        self.set_speech_power(P)

    def _encoder_context(self, enc_in) -> dict:
        """The encoder's (time-reversed) input and, for ``tune="head"``, its frozen LSTM's output g."""
        if self.config.tune != "head":
            return {"enc_in": enc_in}
        return {"enc_in": enc_in, "g": reverse_valid(self.model.enc_rnn(enc_in)[0], self.lengths)}

    def set_speech_power(self, power):
        """Recompute what does not depend on the tuned weights from the speech-power estimate (B, F, T): the
        decoder's deterministic recurrence and, for the SRNN (whose encoder reads h), the encoder's input."""
        m = self.model
        if self.name in ("vae", "rvae"):  # the decoder has no speech-power input
            return
        with torch.no_grad():
            x_prev, n, feat_prev, _, _ = m._sequence_inputs(power.transpose(1, 2))
            e_prev = m.embed_x(feat_prev)
            h = m.rnn(e_prev)[0] if self.name == "srnn" else None
            encoder = self.encoder or self._encoder_context(reverse_valid(torch.cat([h, self.noisy], -1), self.lengths))
            self.context = {"x_prev": x_prev, "n": n, "e_prev": e_prev, "h": h, **encoder}

    def _posterior(self, samples: int, key: tuple):
        """Samples of q(z) with the per-utterance weights: ``z``, ``q_mean``, ``q_var``, each (S, B, T, Z)
        (under ``torch.no_grad``, ``z`` only). For SRNN/DKF the recursion ``q(z_t | z_{t-1}, g_t)`` runs once
        without autograd; the reparameterised sample is then recomputed for all frames at once from the drawn
        z_{t-1} (same values; gradients reach the weights through every frame's own mean and variance)."""
        w, m, c = self.weights, self.model, self.context
        low, high = m.post_z.low, m.post_z.high
        if self.name in ("vae", "rvae"):  # frame-wise given the encoder's output: all frames at once
            mean, raw_var = _stacked_mlp(w, "head", m.post_z.net)(self._frame_inputs()).chunk(2, dim=-1)  # (B, T, Z)
            var = torch.exp(low + (high - low) * torch.sigmoid(raw_var))
            eps = latent_noise(self.config.seed, key, samples, mean.shape[1], mean.shape[2], mean.device)
            z = mean.unsqueeze(0) + var.sqrt().unsqueeze(0) * eps.unsqueeze(1)
            return z, mean.expand_as(z), var.expand_as(z)
        g = c["g"] if "g" in c else reverse_valid(_stacked_lstm(c["enc_in"], w, "rnn"), self.lengths)  # (B, T, H)
        B, T, G = g.shape
        Z = m.config["z_dim"]
        w1, b1 = w["head.0.weight"], w["head.0.bias"]  # (B, D, G + Z), (B, D)
        w2t, b2 = w["head.2.weight"].transpose(1, 2), w["head.2.bias"].unsqueeze(1)  # (B, D, 2Z), (B, 1, 2Z)
        pre = torch.baddbmm(b1.unsqueeze(1), g, w1[:, :, :G].transpose(1, 2))  # (B, T, D): the g part
        w1z = w1[:, :, G:].transpose(1, 2)  # (B, Z, D)
        eps = latent_noise(self.config.seed, key, samples, T, Z, g.device).transpose(0, 1)  # (T, S, Z)
        with torch.no_grad():  # the recursion over frames, without autograd
            z = _posterior_recursion(pre, w1z, w2t, b2, eps, low, high)  # (B, S, T, Z)
        if not torch.is_grad_enabled():
            return z.transpose(0, 1), None, None
        # all frames at once, with gradients, given the drawn z_{t-1} (the gradient is not carried through it)
        z_prev = torch.cat([torch.zeros_like(z[:, :, :1]), z[:, :, :-1]], 2).reshape(B, samples * T, Z)
        hidden = torch.tanh(pre.unsqueeze(1) + torch.bmm(z_prev, w1z).reshape(B, samples, T, -1))
        raw = torch.baddbmm(b2, hidden.reshape(B, samples * T, -1), w2t).reshape(B, samples, T, 2 * Z)
        q_mean, raw_var = raw.transpose(0, 1).chunk(2, dim=-1)  # (S, B, T, Z) each
        q_var = torch.exp(low + (high - low) * torch.sigmoid(raw_var))
        return q_mean + q_var.sqrt() * eps.permute(1, 0, 2).unsqueeze(1), q_mean, q_var

    def _frame_inputs(self) -> torch.Tensor:
        """The input of a frame-wise posterior head (B, T, D): the VAE's embedding, the RVAE's LSTMs' output g."""
        w = self.weights
        if self.name == "vae":
            return _stacked_mlp(w, "embed", self.model.embed_x)(self.noisy) if "embed.0.weight" in w else self.embedded
        if "g" in self.encoder:
            return self.encoder["g"]
        backward = _stacked_lstm(reverse_valid(self.noisy, self.lengths), w, "rnn_backward")
        return torch.cat([_stacked_lstm(self.noisy, w, "rnn"), reverse_valid(backward, self.lengths)], -1)

    def _decode(self, z):
        """``V_s`` (S, B, T, F) and the prior ``p(z_t | ...)`` mean and variance (S, B, T, Z) of latents z. The
        networks see the valid frames only (``self.frames``); padded frames get V_s = 1 and p = N(0, 1)."""
        m, c = self.model, self.context
        S, B, T, Z = z.shape

        def pack(t, samples=False):  # (S, B, T, ...) if samples else (B, T, ...) -> (S, N, ...), N valid frames
            t = t if samples else t.unsqueeze(0).expand(S, *t.shape)
            t = t.reshape(S, B * T, *t.shape[3:])
            return t if self.frames is None else t[:, self.frames]

        def unpack(t, fill: float):  # (S, N, D) -> (S, B, T, D)
            if self.frames is not None:
                t = t.new_full((S, B * T, t.shape[-1]), fill).index_copy(1, self.frames, t)
            return t.reshape(S, B, T, -1)

        zs = pack(z, samples=True)
        if self.name in ("vae", "rvae"):  # latents independent a priori, N(0, I)
            if self.name == "rvae":  # the decoder's LSTM over z_{1:t} (causal: padding at the end is never read)
                zs = pack(m.dec_rnn(z.reshape(S * B, T, Z))[0].reshape(S, B, T, -1), samples=True)
            _, var = m._decode(zs, None, None)
            return unpack(var, 1.0), torch.zeros_like(z), torch.ones_like(z)
        z_shift = pack(torch.cat([torch.zeros_like(z[:, :, :1]), z[:, :, :-1]], 2), samples=True)
        if self.name == "srnn":
            h = pack(c["h"])
            _, var = m._decode(h, zs, pack(c["x_prev"]), pack(c["n"]))
            p_mean, p_var = m.prior_z(torch.cat([h, z_shift], -1))
        else:
            _, var = m._decode(zs, pack(c["x_prev"]), pack(c["n"]))
            p_mean, p_var = m._prior(z_shift, pack(c["e_prev"]))
        return unpack(var, 1.0), unpack(p_mean, 0.0), unpack(p_var, 1.0)

    def e_step(self, P, g, Vb, mask, key):
        """Adam steps on the tuned weights; the variances of the last step's sample (drawn before its update)
        serve the M-step, or fresh draws when ``encoder_steps`` is 0."""
        if self.config.encoder_steps == 0:
            return self.variances(self.config.samples, key)
        floor = self.config.floor * _masked_mean(P, mask).reshape(-1, 1, 1)
        weight = mask.to(P.dtype)  # (B, T)
        for step in range(self.config.encoder_steps):
            z, q_mean, q_var = self._posterior(self.config.samples, (*key, step))
            Vs, p_mean, p_var = self._decode(z)
            Vx = (g.unsqueeze(1) * Vs.transpose(-1, -2) + Vb).clamp(min=floor)  # (S, B, F, T)
            recon = ((P / Vx + torch.log(Vx)).sum(-2) * weight).sum(-1)  # (S, B)
            kl = (_gaussian_kl(q_mean, q_var, p_mean, p_var) * weight).sum(-1)  # (S, B)
            loss = (recon + kl).mean(0).sum()
            self.optimizer.zero_grad(set_to_none=True)
            loss.backward()
            self.optimizer.step()
        return Vs.detach().transpose(-1, -2)

    def variances(self, samples, key):
        with torch.no_grad():
            z, _, _ = self._posterior(samples, (*key, -1))
            Vs, _, _ = self._decode(z)
        return Vs.transpose(-1, -2)


class JointSpeech(SpeechModel):
    """Several DVAE/VAE speech priors in one VEM (a list of priors given to :func:`enhance`).

    They share the noise model and the gain. Each member fine-tunes its own encoder against them, with its own
    ELBO as when alone; the M-step, the speech-power estimate and the Wiener filter pool the members' draws, each
    member's with its weight (``config.member_weights``, None: equal): the speech posterior is the weighted mixture
    of the members' posteriors. Priors that err on different recordings (a frame-independent VAE and a temporal DKF
    or SRNN) then correct each other (README, "Audio: speech enhancement"). ``V_s`` comes out as (members x S, B, F,
    T), members in the given order."""

    def __init__(self, priors, config: EnhanceConfig, device):
        if len(priors) < 2 or any(isinstance(p, NMFBasis) for p in priors):
            raise UsageError("a joint VEM takes two or more DVAE/VAE speech priors")
        self.members = [DVAESpeech(p, config, device) for p in priors]
        weights = config.member_weights or (1.0,) * len(priors)
        if len(weights) != len(priors):
            raise ConfigError(f"enhance config: member_weights names {len(weights)} weight(s) for {len(priors)} priors")
        self.member_weights = torch.tensor(weights, device=device) * len(weights) / sum(weights)  # (members,), mean 1
        levels = [m.reference_log_power() for m in self.members]
        if max(levels) - min(levels) > 1e-3:
            raise UsageError(f"the priors of a joint VEM must share their level statistics (mean log-power "
                             f"{', '.join(f'{v:.4f}' for v in levels)}): train them on the same corpus")

    def reference_log_power(self) -> float:
        return self.members[0].reference_log_power()

    def start(self, P, mask):
        for member in self.members:
            member.start(P, mask)

    def e_step(self, P, g, Vb, mask, key):
        return torch.cat([member.e_step(P, g, Vb, mask, key) for member in self.members])

    def variances(self, samples, key):
        return torch.cat([member.variances(samples, key) for member in self.members])

    def set_speech_power(self, power):
        for member in self.members:
            member.set_speech_power(power)

    def draw_weights(self, draws):
        """Each member's weight on each of its draws (members x S draws, in the members' order)."""
        if bool((self.member_weights == 1).all()):
            return None
        return self.member_weights.repeat_interleave(draws // len(self.members))


def _numba_applies(tensor: torch.Tensor) -> bool:
    """Whether the CPU kernels of :mod:`mixdvae.audio.kernels` take this tensor (float32, on the CPU)."""
    return tensor.device.type == "cpu" and tensor.dtype == torch.float32


def _posterior_recursion(pre, w1z, w2t, b2, eps, low: float, high: float) -> torch.Tensor:
    """Draws ``z`` (B, S, T, Z) of ``q(z_t | z_{t-1}, g_t)`` frame after frame (no gradient): ``pre`` (B, T, D) the
    g part of the head's first layer, ``w1z`` (B, Z, D) its z part, ``w2t`` (B, D, 2Z), ``b2`` (B, 1, 2Z) the second
    layer, ``eps`` (T, S, Z) standard normal noise. On the CPU a Numba kernel (a frame's products are too small
    for torch's per-call overhead); elsewhere torch."""
    if _numba_applies(pre):
        from .kernels import posterior_recursion

        out = torch.empty(pre.shape[0], eps.shape[1], pre.shape[1], eps.shape[2])
        posterior_recursion(pre.contiguous().numpy(), w1z.contiguous().numpy(), w2t.contiguous().numpy(),
                            b2.contiguous().numpy(), eps.contiguous().numpy(), float(low), float(high), out.numpy())
        return out
    z_prev = pre.new_zeros(pre.shape[0], eps.shape[1], eps.shape[2])
    zs = []
    for t in range(pre.shape[1]):
        hidden = torch.tanh(torch.baddbmm(pre[:, t : t + 1], z_prev, w1z))  # (B, S, D)
        mean, raw_var = torch.baddbmm(b2, hidden, w2t).chunk(2, dim=-1)  # (B, S, Z) each
        z_prev = torch.addcmul(mean, torch.exp(0.5 * (low + (high - low) * torch.sigmoid(raw_var))), eps[t])
        zs.append(z_prev)
    return torch.stack(zs, 2)


def _gaussian_kl(q_mean, q_var, p_mean, p_var) -> torch.Tensor:
    return 0.5 * (torch.log(p_var) - torch.log(q_var) + (q_var + (q_mean - p_mean) ** 2) / p_var - 1.0).sum(-1)


def _stacked_mlp(w: dict, prefix: str, module: torch.nn.Sequential):
    """A function applying ``module`` (a Sequential of Linear and activation layers) with per-utterance weights
    to x (B, T, in)."""

    def apply(x):
        for index, layer in enumerate(module):
            if isinstance(layer, torch.nn.Linear):
                x = torch.baddbmm(w[f"{prefix}.{index}.bias"].unsqueeze(1), x,
                                  w[f"{prefix}.{index}.weight"].transpose(1, 2))
            else:
                x = layer(x)
        return x

    return apply


def _stacked_lstm(inputs: torch.Tensor, w: dict, prefix: str) -> torch.Tensor:
    """A single-layer LSTM (``nn.LSTM`` gate order) over inputs (B, T, in) with per-utterance weights."""
    w_ih, w_hh = w[f"{prefix}.weight_ih_l0"], w[f"{prefix}.weight_hh_l0"]
    bias = (w[f"{prefix}.bias_ih_l0"] + w[f"{prefix}.bias_hh_l0"]).unsqueeze(1)
    gates_in = torch.baddbmm(bias, inputs, w_ih.transpose(1, 2))  # (B, T, 4H)
    B, T, _ = inputs.shape
    H = w_hh.shape[2]
    h = inputs.new_zeros(B, 1, H)
    c = inputs.new_zeros(B, 1, H)
    w_hh_t = w_hh.transpose(1, 2)
    outputs = []
    for t in range(T):
        gates = torch.baddbmm(gates_in[:, t : t + 1], h, w_hh_t)
        i, f, g, o = gates.chunk(4, dim=-1)
        c = torch.sigmoid(f) * c + torch.sigmoid(i) * torch.tanh(g)
        h = torch.sigmoid(o) * torch.tanh(c)
        outputs.append(h)
    return torch.cat(outputs, 1)


def _masked_mean(P: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
    """Mean of ``P`` (B, F, T) over the valid frames of each utterance, (B,)."""
    m = mask.to(P.dtype).unsqueeze(1)
    return (P * m).sum((1, 2)) / (m.sum((1, 2)) * P.shape[1]).clamp(min=1)


def learn_nmf_basis(waveforms: list[np.ndarray], rank: int = 32, iterations: int = 100, seed: int = 0,
                    setting: STFT = DEFAULT_STFT, meta: dict | None = None) -> NMFBasis:
    """Learn the fixed speech basis of NMF-VEM on clean 16 kHz waveforms (their frames pooled)."""
    P = torch.cat([_power(setting(torch.from_numpy(np.asarray(w, dtype=np.float32)))) for w in waveforms])  # (T, F)
    fit = nmf.learn_basis(P.T.contiguous(), rank, iterations, seed)
    return NMFBasis(fit.W, log_level(P), {"rank": rank, "iterations": iterations, "seed": seed,
                                           "frames": int(P.shape[0]), "final_cost": fit.cost[-1], **(meta or {})})


def learn_speech_basis(corpus: str | os.PathLike, rank: int = 32, utterances: int = 200) -> NMFBasis:
    """The NMF speech basis of ``rank`` learned on ``utterances`` training utterances of a speech corpus
    (:mod:`mixdvae.audio.corpus`), chosen with seed 0: the procedure that made the shipped ``nmf_speech_vem``
    (rank 32, NMF-VEM's basis) and ``nmf_speech`` (rank 128, the speech class's basis in separation)."""
    train = load_split(corpus, "train")
    count = len(train.offsets) - 1
    chosen = np.random.default_rng(0).choice(count, size=min(utterances, count), replace=False)
    waves = [train.samples[train.offsets[i] : train.offsets[i + 1]] for i in sorted(chosen)]
    return learn_nmf_basis(waves, rank=rank, meta={"corpus": str(corpus), "split": "train", "utterances": len(waves)})


def _power(spec: torch.Tensor) -> torch.Tensor:
    return spec.real**2 + spec.imag**2


# NMF-VEM's speech basis, data/priors/nmf_speech_vem.pt: rank 32 (validation +5.31 dB SI-SDR; rank 64: +4.46, the
# speech basis fights a noise model there). Separation's supervised NMF uses the class basis nmf_speech (rank 128).
NMF_PRIOR_NAME = "nmf_speech_vem"
# the default of tools/enhance.py and the benchmark's joint VEM (README, "Audio: speech enhancement"): on the
# validation split the pair beats each prior alone on all three metrics; adding srnn_speech scores higher still but
# runs at 0.64 times real time at 40 iterations, over the 0.5 budget
JOINT_PRIORS = ("dkf_speech", "vae_speech")
# DVAE-VEM with two DVAE priors and no frame-independent one (README, "Two DVAE priors"): the RVAE's posterior
# weighted twice, chosen among 2:1, 1:1 and 1:2 on two validation sets; with it DVAE-VEM beats VAE-VEM on all three
# metrics, where the DKF alone loses PESQ-WB
DVAE_PAIR = ("dkf_speech", "rvae_speech")
DVAE_PAIR_WEIGHTS = (1.0, 2.0)


def load_speech_prior(name_or_path: str | os.PathLike, device="cpu"):
    """A speech prior by name or path: ``"dkf_speech"``, ``"rvae_speech"``, ``"srnn_speech"``, ``"vae_speech"``
    (shipped DVAE/VAE checkpoints), ``"nmf"`` (the shipped NMF basis) or the path of either kind of file.

    Raises :class:`~mixdvae.errors.DataNotFoundError` or :class:`CheckpointError` naming the file."""
    from mixdvae.dvae import load_prior, prior_path

    path = prior_path(NMF_PRIOR_NAME if str(name_or_path) == "nmf" else name_or_path)
    if path.is_file() and _is_nmf_file(path):
        return NMFBasis.load(path)
    prior = load_prior(path if path.is_file() else name_or_path, device=device)
    if prior.config.get("likelihood") != SPEECH_LIKELIHOOD or prior.config.get("param") != "log_power":
        raise CheckpointError(f"{path}: not a speech prior (likelihood {prior.config.get('likelihood')!r}, "
                              f"param {prior.config.get('param')!r}; expected {SPEECH_LIKELIHOOD!r}, 'log_power')")
    return prior


def _is_nmf_file(path: Path) -> bool:
    try:
        payload = torch.load(path, map_location="cpu", weights_only=True)
    except Exception:  # noqa: BLE001 - not readable as an NMF basis: let the DVAE loader explain
        return False
    return isinstance(payload, dict) and payload.get("format") == NMF_FORMAT


def speech_model(prior, config: EnhanceConfig, device) -> SpeechModel:
    """The engine's speech model for ``prior``: an :class:`NMFBasis`, a DVAE/VAE module, or a list of
    DVAE/VAE modules (:class:`JointSpeech`). ``config.member_weights`` is for a joint VEM only (ConfigError
    otherwise: one prior has nothing to weigh against)."""
    if config.member_weights is not None and not isinstance(prior, (list, tuple)):
        raise ConfigError("enhance config: member_weights weighs the priors of a joint VEM; one prior was given")
    if isinstance(prior, NMFBasis):
        return NMFSpeech(prior, config, device)
    if isinstance(prior, (list, tuple)):
        return JointSpeech(prior, config, device)
    return DVAESpeech(prior, config, device)


# --------------------------------------------------------------------------------------------------------------
# the engine


def enhance_spectrograms(X: torch.Tensor, mask: torch.Tensor, model: SpeechModel, config: EnhanceConfig):
    """Run the VEM on a batch of complex STFTs ``X`` (B, F, T) in the model's units, ``mask`` (B, T) bool.

    Returns ``(S_hat, cost)``: the Wiener estimate of the speech STFT (B, F, T) and the IS cost per valid bin
    after each iteration (iterations, B). Raises :class:`EnhancementError` on non-finite values."""
    P = (X.real**2 + X.imag**2) * mask.unsqueeze(1)
    B, F, T = P.shape
    mean = _masked_mean(P, mask)
    floor = config.floor * mean.reshape(B, 1, 1)
    counts = mask.sum(1).to(P.dtype) * F
    W, H = _initial_noise(P, mask, config)
    g = torch.ones(B, T, device=P.device, dtype=P.dtype)
    model.start(P, mask)
    if config.warmup_m_steps:
        Vs = model.variances(config.samples, (-1,)).clamp(min=floor)
        weights = model.draw_weights(len(Vs))
        W, H, g = _m_step(P, Vs, W, H, g, mask, floor, config.warmup_m_steps, model.uses_gain, weights)
    costs = []
    Vb = W @ H
    for iteration in range(config.iterations):
        Vs = model.e_step(P, g, Vb, mask, (iteration,)).clamp(min=floor)  # (S, B, F, T)
        weights = model.draw_weights(len(Vs))  # (S,) or None
        W, H, g = _m_step(P, Vs, W, H, g, mask, floor, config.m_steps, model.uses_gain, weights)
        Vb = W @ H
        speech = g.unsqueeze(1) * Vs
        Vx = (speech + Vb).clamp(min=floor)
        cost = nmf.is_cost(P, Vx, mask, weights) / (counts * Vs.shape[0])
        _check_finite(cost, iteration)
        costs.append(cost)
        if config.speech_input == "estimate":
            model.set_speech_power(_speech_power(P, g, speech, Vb, Vx, weights))
    with torch.no_grad():
        Vs = model.variances(config.wiener_samples, (config.iterations,)).clamp(min=floor)
        gain = g.unsqueeze(1) * Vs
        wiener = _draw_mean(gain / (gain + W @ H), model.draw_weights(len(Vs)))
    S_hat = wiener * X
    _check_finite(S_hat.abs().sum((1, 2)), config.iterations)
    return S_hat, torch.stack(costs)


def _m_step(P, Vs, W, H, g, mask, floor, rounds: int, uses_gain: bool, weights=None, backend: str = "auto"):
    """``rounds`` multiplicative updates of the noise ``W``, ``H`` and of the gain ``g`` given the speech
    variances ``Vs`` (S, B, F, T), whose draws count with ``weights`` (S,) (None: 1 each); returns the new W, H, g.
    ``backend``: ``"numba"`` (the fused kernels of :mod:`mixdvae.audio.kernels`, float32 CPU tensors),
    ``"torch"`` (any device), ``"auto"`` (numba where it applies)."""
    if backend == "numba" or (backend == "auto" and _numba_applies(P)):
        from .kernels import m_step_rounds

        W, H, g = W.contiguous().clone(), H.contiguous().clone(), g.contiguous().clone()
        per_draw = torch.ones(Vs.shape[0]) if weights is None else weights.to(torch.float32).contiguous()
        m_step_rounds(P.contiguous().numpy(), Vs.transpose(0, 1).contiguous().numpy(), W.numpy(), H.numpy(), g.numpy(),
                      mask.numpy(), floor.reshape(-1).numpy(), per_draw.numpy(), rounds, uses_gain)
        return W, H, g
    for _ in range(rounds):
        W, H = nmf.nmf_step(P, g.unsqueeze(1) * Vs, W, H, mask, True, floor, weights)
        if uses_gain:
            g = nmf.update_gain(P, Vs, W @ H, g, mask, floor, weights)
    return W, H, g


def _draw_mean(values: torch.Tensor, weights: torch.Tensor | None) -> torch.Tensor:
    """Mean of ``values`` (S, ...) over the draws, weighted by ``weights`` (S,) of mean 1 (None: plain)."""
    if weights is None:
        return values.mean(0)
    return (values * weights.reshape(-1, *([1] * (values.dim() - 1)))).mean(0)


def _initial_noise(P: torch.Tensor, mask: torch.Tensor, config: EnhanceConfig):
    """Initial noise model: ``W`` (B, F, K) seeded random unit-sum columns (the same for every utterance) and a
    constant ``H`` (B, K, T) such that ``W H`` is half the mean noisy power of each utterance."""
    B, F, T = P.shape
    K = config.noise_rank
    generator = torch.Generator().manual_seed(config.seed)
    W0 = torch.rand(F, K, generator=generator, dtype=P.dtype) + 0.1
    W = (W0 / W0.sum(0, keepdim=True)).to(P.device).expand(B, F, K).clone()
    H = (_masked_mean(P, mask).reshape(B, 1, 1) * F / (2 * K)).expand(B, K, T).clone()
    return W, H


def _speech_power(P, g, speech, Vb, Vx, weights=None) -> torch.Tensor:
    """Posterior expectation of the clean speech power ``E[|s_ft|^2 | x]`` (B, F, T) in the prior's units (the
    unscaled s), averaged over the samples (weighted by ``weights`` (S,)): ``speech = g V_s`` and ``Vx``
    (S, B, F, T), ``Vb`` (B, F, T)."""
    wiener = speech / Vx
    return _draw_mean(wiener * (wiener * P + Vb), weights) / g.unsqueeze(1)


def _check_finite(values: torch.Tensor, iteration: int) -> None:
    bad = ~torch.isfinite(values)
    if bool(bad.any()):
        which = torch.nonzero(bad).flatten().tolist()
        raise EnhancementError(f"enhancement produced non-finite values at iteration {iteration} "
                               f"(batch positions {which})")


def enhance(noisy, prior, config: EnhanceConfig | None = None, device="cpu", setting: STFT = DEFAULT_STFT,
            progress=None) -> EnhanceResult:
    """Enhance 16 kHz mono waveforms (one (N,) array or a list of them) with ``prior`` (a speech DVAE/VAE with
    the Itakura-Saito likelihood, a list of them for a joint VEM (:class:`JointSpeech`), or an :class:`NMFBasis`).

    An input longer than ``config.segment`` frames is cut into segments overlapping by ``config.overlap`` frames
    (:func:`~mixdvae.audio.stft.segment_starts`), each with its own noise model and gain, and their Wiener
    estimates are cross-faded back (:func:`~mixdvae.audio.stft.crossfade_weights`): memory stays bounded and the
    segments of one long file are batched together. Utterances and segments are processed in batches of
    ``config.batch_size``, sorted by length; ``progress`` (optional) is called after each batch with the seconds
    of input it finished (segments count in proportion to their frames). Raises :class:`InputError` for a
    waveform that is empty, non-finite, silent or shorter than one STFT frame (naming its position)."""
    config = config or default_config(prior)
    device = torch.device(device)
    waves = check_waveforms(noisy, "input", setting.n_fft)
    model = speech_model(prior, config, device)
    reference = model.reference_log_power()
    _warm_up(device)
    start, cpu_start = time.perf_counter(), time.process_time()
    frames = [setting.n_frames(len(w)) for w in waves]
    # every segment: (input index, first frame, frames), sorted by length (then by the input's samples); all the
    # segments of an input have one length, so they are consecutive and an input is open for a few batches only
    jobs = sorted(((i, s, min(config.segment or T, T))
                   for i, T in enumerate(frames) for s in segment_starts(T, config.segment, config.overlap)),
                  key=lambda job: (job[2], len(waves[job[0]])))
    covered = np.bincount([i for i, _, _ in jobs], weights=[n for _, _, n in jobs], minlength=len(waves))
    remaining = np.bincount([i for i, _, _ in jobs], minlength=len(waves))
    opened: dict[int, _Input] = {}
    enhanced: list[np.ndarray | None] = [None] * len(waves)
    cost_sums = np.zeros((config.iterations, len(waves)))
    for first in range(0, len(jobs), config.batch_size):
        batch = jobs[first : first + config.batch_size]
        for i, _, _ in batch:
            if i not in opened:
                opened[i] = _Input(waves[i], setting, reference)
        X, mask = _pad_batch([opened[i].spec[:, s : s + n] for i, s, n in batch], device)
        S_hat, cost = enhance_spectrograms(X, mask, model, config)
        S_hat, cost = S_hat.cpu(), cost.cpu().numpy()
        for row, (i, s, n) in enumerate(batch):
            opened[i].add(S_hat[row, :, :n], s, crossfade_weights(n) if n < frames[i] else torch.ones(n))
            cost_sums[:, i] += cost[:, row] * n
            remaining[i] -= 1
            if remaining[i] == 0:
                enhanced[i] = opened.pop(i).finish(setting)
        if progress is not None:
            progress(sum(n / covered[i] * len(waves[i]) for i, _, n in batch) / MODEL_RATE)
    seconds, cpu_seconds = time.perf_counter() - start, time.process_time() - cpu_start
    audio_seconds = sum(len(w) for w in waves) / MODEL_RATE
    return EnhanceResult(enhanced, cost_sums / covered, seconds, cpu_seconds, audio_seconds, config)


class _Input:
    """One input while its segments are enhanced: its STFT ``spec`` (F, T) scaled to the prior's level, and the
    cross-faded sum of its segments' estimates with the sum of their weights."""

    def __init__(self, wave: np.ndarray, setting: STFT, reference_log_power: float):
        spec = setting(torch.from_numpy(np.asarray(wave, dtype=np.float32))).T
        self.length = len(wave)
        self.scale = math.exp(0.5 * (reference_log_power - log_level(_power(spec))))
        self.spec = spec * self.scale
        self.estimate = torch.zeros_like(spec)
        self.weight = torch.zeros(spec.shape[1])

    def add(self, estimate: torch.Tensor, first: int, fade: torch.Tensor) -> None:
        """Add a segment's estimate (F, n) from frame ``first`` with its cross-fade weights (n,)."""
        self.estimate[:, first : first + len(fade)] += estimate * fade
        self.weight[first : first + len(fade)] += fade

    def finish(self, setting: STFT) -> np.ndarray:
        """The enhanced waveform at the input's level, (N,) float32."""
        signal = setting.inverse((self.estimate / self.weight).T, self.length)  # its own frames: exact at the end
        return (signal / self.scale).numpy().astype(np.float32)


@functools.cache
def _warm_up(device: torch.device) -> None:
    """One-time library loading (once per process and device), done before the clock starts (start-up, like
    loading the prior): the Numba kernels on the CPU, and the first Adam step (torch imports its compiler stack,
    about 1.5 s, on the first ``Optimizer.step``)."""
    if device.type == "cpu":
        from .kernels import warm_up

        warm_up()
    weight = torch.zeros(1, device=device, requires_grad=True)
    optimizer = torch.optim.Adam([weight], lr=1e-3)
    (weight**2).sum().backward()
    optimizer.step()


def log_level(P: torch.Tensor) -> float:
    """Mean log-power ``mean log(P + LOG_FLOOR)`` of a power spectrogram (the level statistic of the inputs)."""
    return float(torch.log(P + LOG_FLOOR).mean())


def _pad_batch(specs: list[torch.Tensor], device):
    """Complex spectrograms (F, T_i) padded into one batch (B, F, T) and the mask of valid frames (B, T)."""
    T = max(spec.shape[1] for spec in specs)
    X = torch.zeros(len(specs), specs[0].shape[0], T, dtype=torch.complex64)
    mask = torch.zeros(len(specs), T, dtype=torch.bool)
    for row, spec in enumerate(specs):
        X[row, :, : spec.shape[1]] = spec
        mask[row, : spec.shape[1]] = True
    return X.to(device), mask.to(device)
