"""Quality metrics of an estimated signal against its clean reference (both (..., N) at the same rate).

* :func:`si_sdr` — scale-invariant signal-to-distortion ratio in dB (Le Roux et al., 2019), own code,
  batched over leading dimensions.
* :func:`pesq_wb` — wide-band PESQ (ITU-T P.862.2, the ``pesq`` package), MOS-LQO about 1.0 .. 4.64; 16 kHz.
* :func:`estoi` — extended short-time objective intelligibility (``pystoi``, ``extended=True``), about 0 .. 1.
* :func:`bss_eval` — SDR / SIR / SAR of separated sources (BSS Eval v4 through ``fast_bss_eval``).
* :func:`mean_interval` — the mean of per-mixture scores (or of paired differences) with a seeded bootstrap
  confidence interval, so a benchmark says which differences its test set can tell apart.

Signals of different lengths are a :class:`~mixdvae.errors.UsageError`: align them first.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from mixdvae.errors import UsageError

EPS = 1e-12


def si_sdr(estimate, reference, zero_mean: bool = True) -> np.ndarray | float:
    """SI-SDR in dB of ``estimate`` against ``reference``, each (..., N); a float for 1-d input, else (...,).

    The reference is scaled to best fit the estimate, ``target = <s, r> / <r, r> r``, and
    ``SI-SDR = 10 log10(|target|^2 / |s - target|^2)``; ``zero_mean`` removes the means first."""
    estimate, reference = _pair(estimate, reference)
    if zero_mean:
        estimate = estimate - estimate.mean(-1, keepdims=True)
        reference = reference - reference.mean(-1, keepdims=True)
    scale = (estimate * reference).sum(-1, keepdims=True) / ((reference**2).sum(-1, keepdims=True) + EPS)
    target = scale * reference
    residual = estimate - target
    value = 10 * np.log10(((target**2).sum(-1) + EPS) / ((residual**2).sum(-1) + EPS))
    return float(value) if value.ndim == 0 else value


def pesq_wb(estimate, reference, rate: int = 16000) -> float:
    """Wide-band PESQ of 1-d ``estimate`` against ``reference``; NaN where PESQ finds no speech in the reference."""
    from pesq import NoUtterancesError, pesq

    estimate, reference = _pair(estimate, reference, one_dim=True)
    if rate != 16000:
        raise UsageError(f"wide-band PESQ needs 16 kHz signals, got {rate} Hz")
    try:
        return float(pesq(rate, reference, estimate, "wb"))
    except NoUtterancesError:
        return float("nan")


def estoi(estimate, reference, rate: int = 16000) -> float:
    """Extended STOI of 1-d ``estimate`` against ``reference`` (``pystoi`` resamples to 10 kHz internally)."""
    from pystoi import stoi

    estimate, reference = _pair(estimate, reference, one_dim=True)
    return float(stoi(reference, estimate, rate, extended=True))


@dataclass
class SeparationScores:
    """Per-source scores in dB, each (n_sources,), and ``permutation[i]`` = the estimate matched to source i."""

    sdr: np.ndarray
    sir: np.ndarray
    sar: np.ndarray
    permutation: np.ndarray


def bss_eval(estimates, references, filter_length: int = 512, permute: bool = True) -> SeparationScores:
    """SDR / SIR / SAR of ``estimates`` (n_sources, N) against ``references`` (n_sources, N), best permutation
    (``permute=False``: estimate i is scored against reference i, for estimates whose order is known)."""
    import fast_bss_eval

    estimates, references = _pair(estimates, references)
    if estimates.ndim != 2:
        raise UsageError(f"bss_eval takes (n_sources, N) arrays, got shape {estimates.shape}")
    if not permute:  # fast_bss_eval's numpy backend fails without the permutation search; its torch one works
        import torch

        scores = fast_bss_eval.bss_eval_sources(torch.from_numpy(np.ascontiguousarray(references)),
                                                torch.from_numpy(np.ascontiguousarray(estimates)),
                                                filter_length=filter_length, compute_permutation=False)
        sdr, sir, sar = (s.numpy() for s in scores)
        return SeparationScores(sdr, sir, sar, np.arange(len(estimates)))
    sdr, sir, sar, perm = fast_bss_eval.bss_eval_sources(references, estimates, filter_length=filter_length)
    return SeparationScores(np.asarray(sdr), np.asarray(sir), np.asarray(sar), np.asarray(perm))


@dataclass
class Interval:
    """A mean over mixtures and its bootstrap confidence interval ``[low, high]`` (NaN scores left out)."""

    mean: float
    low: float
    high: float
    count: int

    def format(self, digits: int = 2) -> str:
        """``+7.10 [+5.61, +8.52]``: signed, ``digits`` decimals."""
        return f"{self.mean:+.{digits}f} [{self.low:+.{digits}f}, {self.high:+.{digits}f}]"

    def as_dict(self) -> dict:
        return {"mean": self.mean, "low": self.low, "high": self.high, "count": self.count}


def mean_interval(values, confidence: float = 0.95, resamples: int = 10000, seed: int = 0) -> Interval:
    """Mean of ``values`` (one score or one paired difference per mixture) with the percentile bootstrap
    interval of ``scipy.stats.bootstrap`` (seeded: the same values give the same interval). Mixtures are the
    resampled unit, so an interval of paired differences that excludes 0 says the set separates the two methods.
    NaN values (e.g. PESQ where it finds no speech) are left out; fewer than two values give ``low = high = mean``."""
    from scipy.stats import bootstrap

    values = np.asarray(values, dtype=np.float64).ravel()
    values = values[np.isfinite(values)]
    if len(values) == 0:
        return Interval(float("nan"), float("nan"), float("nan"), 0)
    mean = float(values.mean())
    if len(values) < 2 or np.ptp(values) == 0:
        return Interval(mean, mean, mean, len(values))
    result = bootstrap((values,), np.mean, confidence_level=confidence, n_resamples=resamples, method="percentile",
                       rng=np.random.default_rng(seed))
    low, high = result.confidence_interval
    return Interval(mean, float(low), float(high), len(values))


def _pair(estimate, reference, one_dim: bool = False) -> tuple[np.ndarray, np.ndarray]:
    estimate = np.asarray(estimate, dtype=np.float64)
    reference = np.asarray(reference, dtype=np.float64)
    if estimate.shape != reference.shape:
        raise UsageError(f"estimate {estimate.shape} and reference {reference.shape} differ in shape; align them first")
    if one_dim and estimate.ndim != 1:
        raise UsageError(f"this metric takes 1-d signals, got shape {estimate.shape}")
    return estimate, reference
