"""Numba kernels of the enhancement M-step on the CPU: the rounds of :mod:`mixdvae.audio.nmf` (update of the noise
basis ``W``, of its activations ``H``, column normalisation, then the per-frame gain ``g``) fused per utterance,
so that a round reads the spectrograms three times instead of the two dozen passes and six small batched matrix
products of the torch version (which stays the reference and the CUDA path; a test checks that both agree).

Arrays (one utterance at a time, float32, updated in place; every loop runs over contiguous frames, so that
LLVM vectorises it)::

    P (F, T) noisy power, Vs (S, F, T) speech variances (S samples), W (F, K), H (K, T), g (T,), valid (T,) bool

The variance of bin (f, t) for sample s is ``Vx = max(g_t Vs_sft + (W H)_ft, floor)``; padded frames (``valid``
False) count nowhere and keep their H and g.
"""

from __future__ import annotations

import numba as nb
import numpy as np

TINY = 1e-20  # as nmf.TINY: smallest value of W, H, g and of an update ratio
ONE = np.float32(1.0)  # float32 literals keep the vectorised loops in single precision


@nb.njit(cache=True, inline="always")
def _ratio(num: float, den: float) -> float:
    """``sqrt(num / den)`` where ``den > 0`` (else 1), at least :data:`TINY`."""
    if den > 0.0:
        return max(np.sqrt(max(num, 0.0) / den), TINY)
    return 1.0


@nb.njit(cache=True, fastmath=True)
def _row(P, Vs, W, H, g, m, f, floor, wh, a, b) -> None:
    """Row f of the noise variance ``wh = (W H)_f`` and of the masked moments ``a = sum_s P / Vx^2``,
    ``b = sum_s 1 / Vx`` (each (T,), written into the given buffers; ``m`` (T,) 1 for valid frames, 0 else)."""
    T = P.shape[1]
    wh[:] = 0.0
    for k in range(W.shape[1]):
        w = W[f, k]
        for t in range(T):
            wh[t] += w * H[k, t]
    a[:] = 0.0
    b[:] = 0.0
    for s in range(Vs.shape[0]):
        for t in range(T):
            inv = ONE / max(g[t] * Vs[s, f, t] + wh[t], floor)
            b[t] += inv
            a[t] += P[f, t] * inv * inv
    for t in range(T):
        a[t] *= m[t]
        b[t] *= m[t]


@nb.njit(cache=True, fastmath=True)
def _round(P, Vs, W, H, g, m, floor, uses_gain, wh, a, b, num_kt, den_kt) -> None:
    """One round for one utterance (see :func:`m_step_rounds`); the others are work buffers."""
    S, F, T = Vs.shape
    K = W.shape[1]
    # W: row f of W H depends on row f of W only, so each row is updated as soon as its sums are complete
    for f in range(F):
        _row(P, Vs, W, H, g, m, f, floor, wh, a, b)
        for k in range(K):
            num = 0.0
            den = 0.0
            for t in range(T):
                num += a[t] * H[k, t]
                den += b[t] * H[k, t]
            W[f, k] = max(W[f, k] * _ratio(num, den), TINY)
    # H, from the new W
    num_kt[:] = 0.0
    den_kt[:] = 0.0
    for f in range(F):
        _row(P, Vs, W, H, g, m, f, floor, wh, a, b)
        for k in range(K):
            w = W[f, k]
            for t in range(T):
                num_kt[k, t] += w * a[t]
                den_kt[k, t] += w * b[t]
    for k in range(K):
        for t in range(T):
            H[k, t] = max(H[k, t] * _ratio(num_kt[k, t], den_kt[k, t]), TINY)
    # unit-sum columns of W (W H unchanged)
    for k in range(K):
        norm = 0.0
        for f in range(F):
            norm += W[f, k]
        norm = max(norm, TINY)
        for f in range(F):
            W[f, k] = W[f, k] / norm
        for t in range(T):
            H[k, t] = H[k, t] * norm
    if not uses_gain:
        return
    # g: sums over the bins of P Vs / Vx^2 and Vs / Vx (num_kt[0], den_kt[0] reused as (T,) accumulators)
    num_t, den_t = num_kt[0], den_kt[0]
    num_t[:] = 0.0
    den_t[:] = 0.0
    for f in range(F):
        wh[:] = 0.0
        for k in range(K):
            w = W[f, k]
            for t in range(T):
                wh[t] += w * H[k, t]
        for s in range(S):
            for t in range(T):
                vs = Vs[s, f, t]
                inv = ONE / max(g[t] * vs + wh[t], floor)
                den_t[t] += vs * inv * m[t]
                num_t[t] += P[f, t] * vs * inv * inv * m[t]
    for t in range(T):
        g[t] = max(g[t] * _ratio(num_t[t], den_t[t]), TINY)


@nb.njit(cache=True)
def m_step_rounds(P, Vs, W, H, g, valid, floor, rounds: int, uses_gain: bool) -> None:
    """``rounds`` rounds of the enhancement M-step for a batch, in place: ``P`` (B, F, T), ``Vs`` (S, B, F, T),
    ``W`` (B, F, K), ``H`` (B, K, T), ``g`` (B, T), ``valid`` (B, T) bool, ``floor`` (B,) the variance floor of
    each utterance. Each round: W, H, the column normalisation, then g (when ``uses_gain``), as
    :func:`mixdvae.audio.nmf.nmf_step` and :func:`mixdvae.audio.nmf.update_gain`."""
    B, F, T = P.shape
    K = W.shape[2]
    dtype = P.dtype
    wh, a, b = np.empty(T, dtype), np.empty(T, dtype), np.empty(T, dtype)
    num_kt, den_kt = np.empty((K, T), dtype), np.empty((K, T), dtype)
    for u in range(B):
        m = valid[u].astype(dtype)
        fl = np.float32(floor[u])
        for _ in range(rounds):
            _round(P[u], Vs[:, u], W[u], H[u], g[u], m, fl, uses_gain, wh, a, b, num_kt, den_kt)
