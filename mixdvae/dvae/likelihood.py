"""Observation likelihoods of the DVAE decoders, chosen by name in the model config (``"likelihood"``).

Every likelihood scores data ``x`` (..., x_dim) against the decoder's output ``mean`` and ``var`` (same shape)
and returns the negative log-likelihood summed over the last axis (nats), shape (...).

``"gaussian"`` is the diagonal Gaussian used for trajectories. ``"itakura_saito"`` is the complex-Gaussian
model of power spectrograms: the STFT coefficient s of each bin is ``N_c(0, var)`` and x = |s|^2 its power,
so ``-log p(s) = log(pi) + log var + x / var`` (it ignores ``mean``); up to terms in x alone it is the
Itakura-Saito divergence ``x / var - log(x / var) - 1``. Others can be added with :func:`register_likelihood`
without touching the models.
"""

from __future__ import annotations

import math

import torch

from mixdvae.registry import Registry

LOG_2PI = math.log(2.0 * math.pi)
LOG_PI = math.log(math.pi)


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


class ItakuraSaitoLikelihood(Likelihood):
    """Complex Gaussian ``N_c(s; 0, var)`` scored on the power ``x = |s|^2``: ``sum(log(pi) + log var + x / var)``."""

    name = "itakura_saito"
    uses_mean = False

    def nll(self, x: torch.Tensor, mean: torch.Tensor, var: torch.Tensor) -> torch.Tensor:
        return (LOG_PI + torch.log(var) + x / var).sum(-1)


LIKELIHOODS = Registry("likelihood")  # name -> Likelihood subclass; add one with register_likelihood
register_likelihood = LIKELIHOODS.register
register_likelihood(GaussianLikelihood)
register_likelihood(ItakuraSaitoLikelihood)


def make_likelihood(name: str) -> Likelihood:
    """The likelihood registered as ``name``; an unknown name is a ConfigError listing the known ones."""
    return LIKELIHOODS.get(name)()
