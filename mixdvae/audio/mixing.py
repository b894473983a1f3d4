"""Noisy mixtures at a target signal-to-noise ratio, for tests, benchmarks and the demo.

``SNR = 10 log10(sum speech^2 / sum noise^2)`` over the speech's length. The noise excerpt starts at a seeded
random offset; a noise shorter than the speech is looped.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from mixdvae.errors import InputError


@dataclass
class Mixture:
    """``mixture = speech + noise`` (each (N,)), ``noise`` already scaled to ``snr_db``; ``offset``: the sample of
    the noise recording where the excerpt starts."""

    mixture: np.ndarray
    speech: np.ndarray
    noise: np.ndarray
    snr_db: float
    offset: int


def snr_db(speech: np.ndarray, noise: np.ndarray) -> float:
    """``10 log10(sum speech^2 / sum noise^2)`` in dB."""
    speech, noise = np.asarray(speech, dtype=np.float64), np.asarray(noise, dtype=np.float64)
    return float(10 * np.log10(np.sum(speech**2) / np.sum(noise**2)))


def noise_excerpt(noise: np.ndarray, length: int, rng: np.random.Generator) -> tuple[np.ndarray, int]:
    """``length`` samples of ``noise`` (M,) from a random offset, looping it when needed; returns the offset."""
    offset = int(rng.integers(len(noise)))
    index = (offset + np.arange(length)) % len(noise)
    return noise[index], offset


def mix_at_snr(speech: np.ndarray, noise: np.ndarray, snr: float, seed: int | np.random.Generator = 0) -> Mixture:
    """Add an excerpt of ``noise`` (M,) to ``speech`` (N,), scaled so that the mixture's SNR is ``snr`` dB.

    ``seed``: an integer or a numpy Generator choosing the excerpt's offset. Silent speech or noise is an
    :class:`InputError` (no SNR can be reached)."""
    rng = seed if isinstance(seed, np.random.Generator) else np.random.default_rng(seed)
    speech = np.asarray(speech, dtype=np.float64)
    noise = np.asarray(noise, dtype=np.float64)
    if speech.ndim != 1 or noise.ndim != 1:
        raise InputError(f"mix_at_snr takes 1-d signals, got shapes {speech.shape} and {noise.shape}")
    excerpt, offset = noise_excerpt(noise, len(speech), rng)
    speech_energy, noise_energy = np.sum(speech**2), np.sum(excerpt**2)
    if speech_energy <= 0 or noise_energy <= 0:
        raise InputError("cannot mix at an SNR: the speech or the noise excerpt is silent")
    gain = np.sqrt(speech_energy / (noise_energy * 10 ** (snr / 10)))
    scaled = gain * excerpt
    return Mixture((speech + scaled).astype(np.float32), speech.astype(np.float32), scaled.astype(np.float32),
                   float(snr), offset)
