"""Observation likelihoods of the DVAE decoders, chosen by name in the model config (``"likelihood"``).

Every likelihood scores data ``x`` (..., x_dim) against the decoder's output ``mean`` and ``var`` (same shape)
and returns the negative log-likelihood summed over the last axis (nats), shape (...).

``"gaussian"`` is the diagonal Gaussian used for trajectories. A likelihood that ignores ``mean`` (the
Itakura-Saito / complex-Gaussian model of power spectrograms, ``x ~ Exp(var)`` per bin up to a constant) can
be added with :func:`register_likelihood` without touching the models.
"""

from __future__ import annotations

import math
from typing import Callable

import torch

LOG_2PI = math.log(2.0 * math.pi)


class Likelihood:
    """Base class: ``nll(x, mean, var)`` summed over the last axis."""

    name = "base"
    uses_mean = True

    def nll(self, x: torch.Tensor, mean: torch.Tensor, var: torch.Tensor) -> torch.Tensor:
        raise NotImplementedError


class GaussianLikelihood(Likelihood):
    """Diagonal Gaussian ``N(x; mean, diag var)``."""

    name = "gaussian"

    def nll(self, x: torch.Tensor, mean: torch.Tensor, var: torch.Tensor) -> torch.Tensor:
        return 0.5 * (LOG_2PI + torch.log(var) + (x - mean) ** 2 / var).sum(-1)


LIKELIHOODS: dict[str, Callable[[], Likelihood]] = {"gaussian": GaussianLikelihood}


def register_likelihood(name: str, factory: Callable[[], Likelihood]) -> None:
    """Make ``factory`` available to model configs as ``likelihood: name``."""
    LIKELIHOODS[name] = factory


def make_likelihood(name: str) -> Likelihood:
    try:
        return LIKELIHOODS[name]()
    except KeyError:
        raise ValueError(f"unknown likelihood {name!r}; known: {sorted(LIKELIHOODS)}") from None
