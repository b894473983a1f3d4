"""Dynamical VAEs (DVAE) used as priors: SRNN (MixDVAE's prior), VRNN, DKF, RVAE, and the frame-independent VAE;
motion priors on boxes (``srnn_mot``) and speech priors on power spectra (``srnn_speech``, ``vae_speech``).

Public API::

    from mixdvae.dvae import load_prior, MODELS, DVAE
    prior = load_prior("srnn_mot")                       # data/priors/srnn_mot.pt
    state, x_prev = prior.init_state(B), prior.x0(B)
    mean, var, state = prior.step(state, x_prev, z=None)  # Gaussian prediction of x_t, model coordinates

    speech = load_prior("srnn_speech")                   # x = power spectrogram (B, T, 513), see base.LogPowerIO
    q_mean, q_var = speech.encode(power)                 # q(z_t | x), (B, T, z_dim)
    v = speech.predict_sequence(power, z)["var"]         # source variance v_t (B, T, 513) given z, x_{<t}

Model coordinates: :mod:`mixdvae.data.normalization`. Interface details: :mod:`mixdvae.dvae.base`.
"""

from __future__ import annotations

import os
from pathlib import Path

from mixdvae.errors import DataNotFoundError
from mixdvae.resources import shipped_dir

from .base import DVAE, MODELS, CheckpointError
from .dkf import DKF
from .likelihood import LIKELIHOODS, register_likelihood
from .rvae import RVAE
from .srnn import SRNN
from .vae import VAE
from .vrnn import VRNN

# MODELS (name -> class) is filled as the model modules above define their DVAE subclasses

PRIORS_DIR = shipped_dir("priors")  # data/priors of the checkout, installed as the package mixdvae.priors


def prior_path(name_or_path: str | os.PathLike) -> Path:
    """A prior's checkpoint: an existing path as given, else the shipped ``data/priors/NAME.pt``."""
    candidate = Path(name_or_path)
    if candidate.suffix == ".pt" or os.sep in str(name_or_path) or candidate.is_file():
        return candidate
    return PRIORS_DIR / f"{name_or_path}.pt"


def available_priors() -> list[str]:
    """Names of the priors shipped in ``data/priors``."""
    return sorted(p.stem for p in PRIORS_DIR.glob("*.pt")) if PRIORS_DIR.is_dir() else []


def load_prior(name_or_path: str | os.PathLike, device="cpu") -> DVAE:
    """Load a trained prior by name (``"srnn_mot"`` -> ``data/priors/srnn_mot.pt``) or by path, in eval mode.

    Raises :class:`mixdvae.errors.DataNotFoundError` (naming the shipped priors) or :class:`CheckpointError`.
    """
    path = prior_path(name_or_path)
    if not path.is_file():
        raise DataNotFoundError(
            f"prior {str(name_or_path)!r} not found at {path}; shipped priors: {available_priors() or 'none'}. "
            "Train one with: python tools/train_prior.py --config configs/prior_srnn.yaml"
        )
    return DVAE.load(path, map_location=device)


__all__ = [
    "DVAE",
    "SRNN",
    "VRNN",
    "DKF",
    "RVAE",
    "VAE",
    "MODELS",
    "CheckpointError",
    "LIKELIHOODS",
    "register_likelihood",
    "load_prior",
    "prior_path",
    "available_priors",
    "PRIORS_DIR",
]
