"""Numba kernels of the audio engines on the CPU.

The enhancement M-step: the rounds of :mod:`mixdvae.audio.nmf` (update of the noise
basis ``W``, of its activations ``H``, column normalisation, then the per-frame gain ``g``) fused per utterance,
so that a round reads the spectrograms three times instead of the two dozen passes and six small batched matrix
products of the torch version (which stays the reference and the CUDA path; a test checks that both agree).

Arrays (one utterance at a time, float32, updated in place; every loop runs over contiguous frames, so that
LLVM vectorises it)::

    P (F, T) noisy power, Vs (S, F, T) speech variances (S samples), W (F, K), H (K, T), g (T,), valid (T,) bool,
    weights (S,) the weight of each sample in the sums (1 each but in a weighted joint VEM)

Two things let LLVM vectorise those loops, and it takes both (in a micro-benchmark either alone left the time
unchanged; together they halve it): every per-utterance slice is C-contiguous (the batch axis comes first, so ``Vs``
is passed as (B, S, F, T): a strided (S, F, T) view of an (S, B, F, T) array is typed "any layout" by Numba), and
the kernels use NumPy's error model (Python's, the default, checks every division for zero; the divisions here are
by floored variances or are guarded).

The round (:func:`_round`) is inlined by Numba into :func:`m_step_rounds`, which shares its fast-math flags: as a
separate function, the process that compiled the kernels computed other last bits than the processes that later
loaded them from the cache, so the first run of a command after an install wrote slightly different audio than
every later one (``tests/test_audio_enhance.py`` compares a cold and a warm cache); inlined into a caller without
fast math, the round's loops were no longer vectorised (12-30 % slower). Inlined into a fast-math caller it is both
reproducible and as fast as before.

The variance of bin (f, t) for sample s is ``Vx = max(g_t Vs_sft + (W H)_ft, floor)``; padded frames (``valid``
False) count nowhere and keep their H (up to the column normalisation) and g, and the loops stop at an utterance's
last valid frame (a batch of utterances of different lengths pays for the frames it has, not for the padding).

The E-step's posterior recursion (:func:`posterior_recursion`): one frame's products are far too small for torch's
per-call overhead (seven calls per frame), so the frame loop runs here.
"""

from __future__ import annotations

import numba as nb
import numpy as np

from .nmf import TINY  # smallest value of W, H, g and of an update ratio

ONE = np.float32(1.0)  # float32 literals keep the vectorised loops in single precision


@nb.njit(cache=True, inline="always", error_model="numpy")
def _ratio(num: float, den: float) -> float:
    """``sqrt(num / den)`` where ``den > 0`` (else 1), at least :data:`TINY`."""
    if den > 0.0:
        return max(np.sqrt(max(num, 0.0) / den), TINY)
    return 1.0


@nb.njit(cache=True, fastmath=True, error_model="numpy")
def _noise_row(W, H, f, T, wh) -> None:
    """Row f of the noise variance over the first T frames, ``wh = (W H)_f``, into the given buffer."""
    wh[:T] = 0.0
    for k in range(W.shape[1]):
        w = W[f, k]
        for t in range(T):
            wh[t] += w * H[k, t]


@nb.njit(cache=True, fastmath=True, error_model="numpy")
def _row(P, Vs, W, H, g, m, weights, f, floor, T, wh, a, b) -> None:
    """Row f of the noise variance ``wh = (W H)_f`` and of the masked moments ``a = sum_s w_s P / Vx^2``,
    ``b = sum_s w_s / Vx`` over the first T frames (written into the given buffers; ``m`` (T,) 1 for valid frames,
    0 else)."""
    _noise_row(W, H, f, T, wh)
    a[:T] = 0.0
    b[:T] = 0.0
    for s in range(Vs.shape[0]):
        ws = weights[s]
        for t in range(T):
            inv = ONE / max(g[t] * Vs[s, f, t] + wh[t], floor)
            b[t] += ws * inv
            a[t] += ws * P[f, t] * inv * inv
    for t in range(T):
        a[t] *= m[t]
        b[t] *= m[t]


@nb.njit(cache=True, fastmath=True, inline="always", error_model="numpy")
def _round(P, Vs, W, H, g, m, weights, floor, T, uses_gain, wh, a, b, num_kt, den_kt) -> None:
    """One round for one utterance over its first T frames (see :func:`m_step_rounds`); the others are work
    buffers."""
    S, F = Vs.shape[0], Vs.shape[1]
    K = W.shape[1]
    # W: row f of W H depends on row f of W only, so each row is updated as soon as its sums are complete
    for f in range(F):
        _row(P, Vs, W, H, g, m, weights, f, floor, T, wh, a, b)
        for k in range(K):
            num = 0.0
            den = 0.0
            for t in range(T):
                num += a[t] * H[k, t]
                den += b[t] * H[k, t]
            W[f, k] = max(W[f, k] * _ratio(num, den), TINY)
    # H, from the new W
    num_kt[:, :T] = 0.0
    den_kt[:, :T] = 0.0
    for f in range(F):
        _row(P, Vs, W, H, g, m, weights, f, floor, T, wh, a, b)
        for k in range(K):
            w = W[f, k]
            for t in range(T):
                num_kt[k, t] += w * a[t]
                den_kt[k, t] += w * b[t]
    for k in range(K):
        for t in range(T):
            H[k, t] = max(H[k, t] * _ratio(num_kt[k, t], den_kt[k, t]), TINY)
    # unit-sum columns of W (W H unchanged, padded frames included)
    for k in range(K):
        norm = 0.0
        for f in range(F):
            norm += W[f, k]
        norm = max(norm, TINY)
        for f in range(F):
            W[f, k] = W[f, k] / norm
        for t in range(H.shape[1]):
            H[k, t] = H[k, t] * norm
    if not uses_gain:
        return
    # g: sums over the bins and samples of w P Vs / Vx^2 and w Vs / Vx (num_kt[0], den_kt[0] reused as (T,)
    # accumulators)
    num_t, den_t = num_kt[0], den_kt[0]
    num_t[:T] = 0.0
    den_t[:T] = 0.0
    for f in range(F):
        _noise_row(W, H, f, T, wh)
        for s in range(S):
            ws = weights[s]
            for t in range(T):
                vs = Vs[s, f, t]
                inv = ONE / max(g[t] * vs + wh[t], floor)
                den_t[t] += ws * vs * inv * m[t]
                num_t[t] += ws * P[f, t] * vs * inv * inv * m[t]
    for t in range(T):
        g[t] = max(g[t] * _ratio(num_t[t], den_t[t]), TINY)


@nb.njit(cache=True, fastmath=True, error_model="numpy")
def m_step_rounds(P, Vs, W, H, g, valid, floor, weights, rounds: int, uses_gain: bool) -> None:
    """``rounds`` rounds of the enhancement M-step for a batch, in place: ``P`` (B, F, T), ``Vs`` (B, S, F, T),
    ``W`` (B, F, K), ``H`` (B, K, T), ``g`` (B, T), ``valid`` (B, T) bool, ``floor`` (B,) the variance floor of
    each utterance, ``weights`` (S,) of the samples. Each round: W, H, the column normalisation, then g (when
    ``uses_gain``), as :func:`mixdvae.audio.nmf.nmf_step` and :func:`mixdvae.audio.nmf.update_gain`."""
    B, F, T = P.shape
    K = W.shape[2]
    dtype = P.dtype
    wh, a, b = np.empty(T, dtype), np.empty(T, dtype), np.empty(T, dtype)
    num_kt, den_kt = np.empty((K, T), dtype), np.empty((K, T), dtype)
    for u in range(B):
        m = valid[u].astype(dtype)
        fl = np.float32(floor[u])
        end = T  # the frames after the last valid one count nowhere: the loops stop there
        while end > 0 and not valid[u, end - 1]:
            end -= 1
        for _ in range(rounds):
            _round(P[u], Vs[u], W[u], H[u], g[u], m, weights, fl, end, uses_gain, wh, a, b, num_kt, den_kt)


@nb.njit(cache=True, fastmath=True, error_model="numpy")
def posterior_recursion(pre, w1z, w2t, b2, eps, low: float, high: float, out) -> None:
    """Draws of the DKF/SRNN posterior head ``q(z_t | z_{t-1}, g_t)`` frame after frame, into ``out`` (B, S, T, Z):
    ``hidden = tanh(pre_t + z_{t-1} w1z)``, ``(mean, raw) = hidden w2t + b2``,
    ``z_t = mean + exp((low + (high - low) sigmoid(raw)) / 2) eps_t``; ``pre`` (B, T, D), ``w1z`` (B, Z, D),
    ``w2t`` (B, D, 2Z), ``b2`` (B, 1, 2Z), ``eps`` (T, S, Z), z_0 = 0."""
    B, T, D = pre.shape
    S, Z = eps.shape[1], eps.shape[2]
    hidden = np.empty(D, np.float32)
    z_prev = np.empty(Z, np.float32)
    half = np.float32(0.5)
    lo, span = np.float32(low), np.float32(high - low)
    for b in range(B):
        for s in range(S):
            z_prev[:] = 0.0
            for t in range(T):
                for d in range(D):
                    hidden[d] = pre[b, t, d]
                for k in range(Z):
                    zk = z_prev[k]
                    for d in range(D):
                        hidden[d] += zk * w1z[b, k, d]
                for d in range(D):
                    hidden[d] = np.tanh(hidden[d])
                for k in range(Z):
                    mean = b2[b, 0, k]
                    raw = b2[b, 0, Z + k]
                    for d in range(D):
                        mean += hidden[d] * w2t[b, d, k]
                        raw += hidden[d] * w2t[b, d, Z + k]
                    sigmoid = ONE / (ONE + np.exp(-raw))
                    z = mean + np.exp(half * (lo + span * sigmoid)) * eps[t, s, k]
                    out[b, s, t, k] = z
                for k in range(Z):
                    z_prev[k] = out[b, s, t, k]


def warm_up() -> None:
    """Load (or, on the very first run, compile) the kernels for the argument types the engine passes, so that
    the one-time cost is not charged to the first utterance's processing time (and its real-time factor)."""
    f32 = np.float32
    P = np.ones((1, 2, 3), f32)
    m_step_rounds(P, np.ones((1, 1, 2, 3), f32), np.ones((1, 2, 1), f32), np.ones((1, 1, 3), f32),
                  np.ones((1, 3), f32), np.ones((1, 3), np.bool_), np.ones(1, f32), np.ones(1, f32), 1, True)
    posterior_recursion(np.zeros((1, 3, 2), f32), np.zeros((1, 1, 2), f32), np.zeros((1, 2, 2), f32),
                        np.zeros((1, 1, 2), f32), np.zeros((3, 1, 1), f32), -1.0, 1.0, np.zeros((1, 1, 3, 1), f32))
