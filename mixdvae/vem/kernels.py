"""Numba kernels of the VEM's inner loops on the CPU (float64 NumPy arrays in, NumPy arrays out).

They compute exactly what the torch reference computes (:mod:`mixdvae.vem.assign`,
:func:`mixdvae.vem.priors.velocity_filter_smooth`), as plain loops without per-operation overhead: a VEM
window has a few sources and frames, where torch spends its time dispatching small operations. The engine uses
them on the CPU (``run_vem(..., backend="numba")``); torch stays the path for CUDA and the reference, and
``tests/test_vem_kernels.py`` checks that both agree.

Shapes, as in the engine: ``obs``/``phi`` (B, T, K, 4), ``obs_mask`` (B, T, K), ``mean``/``var`` (B, N, T, 4),
``source_mask`` (B, N, T), ``eta`` (B, T, K, N + 1) with index 0 = clutter. The linear transition of the
position-velocity filter (see :class:`mixdvae.vem.priors.LinearTransition`) is five arrays ``f, k, q11, q12, q22``,
(B, N, T, 4), or (B, N, 1, 4) when it is the same for every frame.

E-W is gated (``VEMConfig.gate``): each detection computes only the sources it can see, found by a sorted
search on cx, and the normalisations loop over those lists, so a frame costs its (detection, neighbour) pairs
rather than all K x N of them.

Compiled on first use and cached on disk (``cache=True``), so later processes load them in well under a second.
"""

from __future__ import annotations

import math

import numpy as np
from numba import njit

LOG_2PI = math.log(2.0 * math.pi)

# Cached on disk. Compile time matters (CI compiles once per clean checkout): the kernels use scalar loops, not
# array expressions, which numba expands into much more code; NumPy's error model (a division by zero gives
# inf or nan, as in torch) drops the zero checks.
kernel = njit(cache=True, error_model="numpy")


# -- E-W -----------------------------------------------------------------------------------------------------


@kernel
def _frame_logits(out, cand, ncand, obs, phi, mean, var, alive, log_pi_clutter, log_density, temperature,
                  predictive, var_cap, gate):
    """Logits of one frame into ``out`` (K, N + 1): obs/phi (K, 4), mean/var (N, 4), alive (N,) bool.

    ``var_cap < 0`` means no cap, ``gate < 0`` no gating (see :func:`mixdvae.vem.assign.assignment_logits`).
    Only the sources a detection can see are computed: they are listed in ``cand[k, :ncand[k]]`` (K, N) and the
    other entries of the row are left at zero, their eta (a gated or dead source's logit is -inf). With a gate,
    the alive sources are sorted by cx and each detection only looks at those within the cx distance where the
    cx term alone would gate them (the log-determinant bounded by ``log |Phi|``, as ``Phi + V >= Phi``): in a
    crowd a detection costs its neighbours, not the whole frame."""
    K, N1 = out.shape
    order = np.empty(N1 - 1, dtype=np.int64)
    n_alive = 0
    var_max = 0.0
    for n in range(N1 - 1):
        if alive[n]:
            order[n_alive] = n
            n_alive += 1
            var_max = max(var_max, var[n, 0])
    log_pi_src = math.log1p(-math.exp(log_pi_clutter)) - math.log(max(n_alive, 1))
    order = order[:n_alive]
    order = order[np.argsort(mean[order, 0], kind="mergesort")]
    xs = mean[order, 0]
    for k in range(K):
        for n in range(N1):
            out[k, n] = 0.0
        out[k, 0] = log_pi_clutter + log_density
        ncand[k] = 0
        log_det = 0.0
        for d in range(4):
            log_det += math.log(phi[k, d])
        lo, hi = 0, n_alive
        floor = -np.inf
        if gate >= 0:
            floor = out[k, 0] - gate
            # gated when the cx term exceeds q_max: -temperature (q + log_det + 4 log 2 pi) / 2 + log_pi_src < floor
            q_max = 2.0 * (log_pi_src - floor) / temperature - log_det - 4 * LOG_2PI
            if q_max < 0:
                continue
            widest = phi[k, 0]  # the largest cx variance of the term, over the sources
            if predictive:
                widest = phi[k, 0] * (1.0 + var_cap) if var_cap >= 0 else phi[k, 0] + var_max
            radius = math.sqrt(q_max * widest)
            lo = np.searchsorted(xs, obs[k, 0] - radius, side="left")
            hi = np.searchsorted(xs, obs[k, 0] + radius, side="right")
        for i in range(lo, hi):
            n = order[i]
            v = var[n, 0] if not predictive or var_cap < 0 else min(var[n, 0], var_cap * phi[k, 0])
            bound = (obs[k, 0] - mean[n, 0]) ** 2 / (phi[k, 0] + v) if predictive else (
                ((obs[k, 0] - mean[n, 0]) ** 2 + v) / phi[k, 0])
            if -0.5 * temperature * (bound + log_det + 4 * LOG_2PI) + log_pi_src < floor:
                continue
            quad = 0.0
            if predictive:
                log_s = 0.0
                for d in range(4):
                    v = var[n, d] if var_cap < 0 else min(var[n, d], var_cap * phi[k, d])
                    s = phi[k, d] + v
                    quad += (obs[k, d] - mean[n, d]) ** 2 / s
                    log_s += math.log(s)
                ll = -0.5 * (quad + log_s + 4 * LOG_2PI)
            else:
                for d in range(4):
                    quad += ((obs[k, d] - mean[n, d]) ** 2 + var[n, d]) / phi[k, d]
                ll = -0.5 * (quad + log_det + 4 * LOG_2PI)
            logit = temperature * ll + log_pi_src
            if logit >= floor:
                out[k, n + 1] = logit
                cand[k, ncand[k]] = n
                ncand[k] += 1


@kernel
def _normalise_row(eta, k, cand, ncand):
    """Row k of eta (clutter and candidates) divided by its sum, in place; returns the sum."""
    total = eta[k, 0]
    for c in range(ncand[k]):
        total += eta[k, cand[k, c] + 1]
    eta[k, 0] /= total
    for c in range(ncand[k]):
        eta[k, cand[k, c] + 1] /= total
    return total


@kernel
def _renormalise_rows(eta, cand, ncand):
    for k in range(eta.shape[0]):
        _normalise_row(eta, k, cand, ncand)


@kernel
def _frame_normalise(eta, cand, ncand, real, exclusive, one_detection):
    """In place: the logits of :func:`_frame_logits` (K, N + 1) to eta; returns the frame's log-likelihood
    (real rows' sum of log normalisers).

    The steps of :func:`mixdvae.vem.assign.normalise` in linear space, one ``exp`` per candidate: after the first
    normalisation each row holds its largest entry (>= 1 / (N + 1)), so the rescalings that follow (a
    source's column divided by its mass where it exceeds one, rows renormalised) never divide by zero."""
    K, N1 = eta.shape
    loglik = 0.0
    for k in range(K):
        top = eta[k, 0]  # finite: the clutter class
        for c in range(ncand[k]):
            top = max(top, eta[k, cand[k, c] + 1])
        eta[k, 0] = math.exp(eta[k, 0] - top)
        for c in range(ncand[k]):
            n = cand[k, c] + 1
            eta[k, n] = math.exp(eta[k, n] - top)
        total = _normalise_row(eta, k, cand, ncand)
        if real[k]:
            loglik += top + math.log(total)
    if one_detection:  # each source keeps its largest real entry (the first one on ties, as argmax)
        best = np.full(N1, -1, dtype=np.int64)
        for k in range(K):
            if real[k]:
                for c in range(ncand[k]):
                    n = cand[k, c] + 1
                    if best[n] < 0 or eta[k, n] > eta[best[n], n]:
                        best[n] = k
        for k in range(K):
            for c in range(ncand[k]):
                n = cand[k, c] + 1
                if k != best[n]:
                    eta[k, n] = 0.0
        _renormalise_rows(eta, cand, ncand)
    mass = np.empty(N1)
    for _ in range(exclusive):
        mass[:] = 0.0
        for k in range(K):
            if real[k]:
                for c in range(ncand[k]):
                    n = cand[k, c] + 1
                    mass[n] += eta[k, n]
        for k in range(K):
            for c in range(ncand[k]):
                n = cand[k, c] + 1
                if mass[n] > 1.0:
                    eta[k, n] /= mass[n]
        _renormalise_rows(eta, cand, ncand)
    for k in range(K):
        if not real[k]:
            eta[k, 0] = 0.0
            for c in range(ncand[k]):
                eta[k, cand[k, c] + 1] = 0.0
    return loglik


@kernel
def assign(obs, obs_mask, phi, mean, var, source_mask, log_pi_clutter, log_density, temperature, exclusive,
           one_detection, gate):
    """E-W on every frame of a batch: eta (B, T, K, N + 1) and the log-likelihood (B,) of the detections.

    ``log_pi_clutter``/``log_density`` (B,). The non-predictive likelihood of
    :func:`mixdvae.vem.assign.assignment_logits` followed by :func:`mixdvae.vem.assign.normalise`."""
    B, T, K, _ = obs.shape
    N = mean.shape[1]
    eta = np.empty((B, T, K, N + 1))
    loglik = np.zeros(B)
    cand = np.empty((K, N), dtype=np.int64)
    ncand = np.empty(K, dtype=np.int64)
    for b in range(B):
        for t in range(T):
            _frame_logits(eta[b, t], cand, ncand, obs[b, t], phi[b, t], mean[b, :, t], var[b, :, t],
                          source_mask[b, :, t], log_pi_clutter[b], log_density[b], temperature, False, -1.0, gate)
            loglik[b] += _frame_normalise(eta[b, t], cand, ncand, obs_mask[b, t], exclusive, one_detection)
    return eta, loglik


@kernel
def pseudo_observations(eta, obs, phi):
    """``lam``, ``info`` (B, N, T, 4): ``sum_k eta_tkn / Phi_tk`` and ``sum_k eta_tkn o_tk / Phi_tk``."""
    B, T, K, N1 = eta.shape
    lam = np.zeros((B, N1 - 1, T, 4))
    info = np.zeros((B, N1 - 1, T, 4))
    for b in range(B):
        for t in range(T):
            for k in range(K):
                for n in range(N1 - 1):
                    w = eta[b, t, k, n + 1]
                    if w == 0.0:
                        continue
                    for d in range(4):
                        lam[b, n, t, d] += w / phi[b, t, k, d]
                        info[b, n, t, d] += w * (obs[b, t, k, d] / phi[b, t, k, d])
    return lam, info


@kernel
def m_step(eta, obs, obs_mask, mean, var, r_low, r_high, clutter_low, clutter_high, r_prior, prior_weight):
    """:func:`mixdvae.vem.assign.m_step`: the detection-noise scales r (B, 4) and the clutter weight (B,), with
    ``r_prior`` (B, 4) the prior's scales (and the fallback of windows without assigned detections)."""
    B, T, K, N1 = eta.shape
    r = np.empty((B, 4))
    clutter_weight = np.empty(B)
    num = np.empty(4)
    size = np.empty(4)
    for b in range(B):
        for d in range(4):
            num[d] = 0.0
        mass = clutter = 0.0
        for t in range(T):
            for k in range(K):
                clutter += eta[b, t, k, 0]
                size[0] = size[2] = max(obs[b, t, k, 2], 1.0)
                size[1] = size[3] = max(obs[b, t, k, 3], 1.0)
                for n in range(N1 - 1):
                    w = eta[b, t, k, n + 1]
                    mass += w
                    if w != 0.0:
                        for d in range(4):
                            resid = (obs[b, t, k, d] - mean[b, n, t, d]) ** 2 + var[b, n, t, d]
                            num[d] += w * (resid / size[d] ** 2)
        den = mass + prior_weight if prior_weight > 0 else mass
        for d in range(4):
            if prior_weight > 0:
                num[d] += prior_weight * r_prior[b, d] ** 2
            r2 = num[d] / max(den, 1e-12) if den > 0 else r_prior[b, d] ** 2
            r[b, d] = min(max(math.sqrt(r2), r_low), r_high)
        count = 0
        for t in range(T):
            for k in range(K):
                count += obs_mask[b, t, k]
        weight = clutter / max(count, 1) if count > 0 else clutter_low
        clutter_weight[b] = min(max(weight, clutter_low), clutter_high)
    return r, clutter_weight


# -- E-S: position-velocity Kalman filter and RTS smoother -----------------------------------------------------


@kernel
def _copy(source, target):
    """``target[:] = source`` for a filter state (5,)."""
    for i in range(5):
        target[i] = source[i]


@kernel
def _predict(state, init, init_vel, init_var, v0, fresh, f, k, q11, q12, q22):
    """One prediction step of the (p, u, a, b, c) state of one coordinate, in place; ``fresh``: the source
    starts here (its initial box)."""
    p, u, a, b, c = state[0], state[1], state[2], state[3], state[4]
    if fresh:
        state[0], state[1], state[2], state[3], state[4] = init, init_vel, init_var, 0.0, v0
    else:
        state[0] = p + f * u + k
        state[1] = f * u + k
        state[2] = a + 2 * f * b + f * f * c + q11
        state[3] = f * b + f * f * c + q12
        state[4] = f * f * c + q22


@kernel
def _correct(state, lam, info, init, init_vel, init_var, v0, before):
    """The update with an information-form pseudo-observation, in place; ``before``: the source does not
    exist yet (pinned to its initial box)."""
    if before:
        state[0], state[1], state[2], state[3], state[4] = init, init_vel, init_var, 0.0, v0
        return
    p, u, a, b, c = state[0], state[1], state[2], state[3], state[4]
    denom = 1.0 + a * lam
    innov = (info - lam * p) / denom
    state[0] = p + a * innov
    state[1] = u + b * innov
    state[2] = a / denom
    state[3] = b / denom
    state[4] = c - b * b * lam / denom


@kernel
def _smooth(filt, pred, f, start, out_m, out_v):
    """RTS backward pass of one coordinate of one source: ``filt``/``pred`` (T, 5) states (p, u, a, b, c), ``f``
    (T,) or (1,) transition factors; writes the smoothed means and variances (T,)."""
    T = filt.shape[0]
    ps, us, as_, bs, cs = filt[T - 1, 0], filt[T - 1, 1], filt[T - 1, 2], filt[T - 1, 3], filt[T - 1, 4]
    out_m[T - 1], out_v[T - 1] = ps, max(as_, 1e-12)
    for t in range(T - 2, -1, -1):
        pf, uf, af, bf, cf = filt[t, 0], filt[t, 1], filt[t, 2], filt[t, 3], filt[t, 4]
        pp, up, ap, bp, cp = pred[t + 1, 0], pred[t + 1, 1], pred[t + 1, 2], pred[t + 1, 3], pred[t + 1, 4]
        ft = f[t + 1 if f.shape[0] > 1 else 0]
        if start < t + 1:
            det = max(ap * cp - bp * bp, 1e-300)
            m11, m12, m21, m22 = af + ft * bf, ft * bf, bf + ft * cf, ft * cf
            g11 = (m11 * cp - m12 * bp) / det
            g12 = (m12 * ap - m11 * bp) / det
            g21 = (m21 * cp - m22 * bp) / det
            g22 = (m22 * ap - m21 * bp) / det
        else:  # no link into a source's start
            g11 = g12 = g21 = g22 = 0.0
        dp, du = ps - pp, us - up
        da, db, dc = as_ - ap, bs - bp, cs - cp
        ps, us = pf + g11 * dp + g12 * du, uf + g21 * dp + g22 * du
        as_, bs, cs = (
            af + g11 * g11 * da + 2 * g11 * g12 * db + g12 * g12 * dc,
            bf + g11 * g21 * da + (g11 * g22 + g12 * g21) * db + g12 * g22 * dc,
            cf + g21 * g21 * da + 2 * g21 * g22 * db + g22 * g22 * dc,
        )
        out_m[t], out_v[t] = ps, max(as_, 1e-12)


@kernel
def _outputs(filt, pred, f, start, smooth, out_m, out_v):
    if smooth:
        _smooth(filt, pred, f, start, out_m, out_v)
    else:
        for t in range(filt.shape[0]):
            out_m[t], out_v[t] = filt[t, 0], filt[t, 2]


@kernel
def filter_smooth(init, init_vel, init_var, v0, start, f, k, q11, q12, q22, lam, info, smooth):
    """Kalman filter (and RTS smoother) of every coordinate of every source, with fixed pseudo-observations.

    ``init``, ``init_vel``, ``init_var``, ``v0`` (B, N, 4): initial box, velocity, box variance and velocity
    variance at the source's ``start`` (B, N); ``f, k, q11, q12, q22`` (B, N, T or 1, 4) the transition into
    each frame (frame 0's unused); ``lam``, ``info`` (B, N, T, 4) the pseudo-observations. Returns the posterior means
    and variances (B, N, T, 4), as :func:`mixdvae.vem.priors.velocity_filter_smooth`."""
    B, N, T, _ = lam.shape
    mean = np.empty((B, N, T, 4))
    var = np.empty((B, N, T, 4))
    filt = np.empty((T, 5))
    pred = np.empty((T, 5))
    state = np.empty(5)
    for b in range(B):
        for n in range(N):
            s = start[b, n]
            for d in range(4):
                state[0], state[1], state[2], state[3], state[4] = (
                    init[b, n, d], init_vel[b, n, d], init_var[b, n, d], 0.0, v0[b, n, d])
                for t in range(T):
                    if t > 0:
                        i = t if f.shape[2] > 1 else 0
                        _predict(state, init[b, n, d], init_vel[b, n, d], init_var[b, n, d], v0[b, n, d], s == t,
                                 f[b, n, i, d], k[b, n, i, d], q11[b, n, i, d], q12[b, n, i, d], q22[b, n, i, d])
                    _copy(state, pred[t])
                    _correct(state, lam[b, n, t, d], info[b, n, t, d], init[b, n, d], init_vel[b, n, d],
                             init_var[b, n, d], v0[b, n, d], s > t)
                    _copy(state, filt[t])
                _outputs(filt, pred, f[b, n, :, d], s, smooth, mean[b, n, :, d], var[b, n, :, d])
    return mean, var


@kernel
def initial_state(init, init_vel, init_var, v0):
    """The filter state (B, N, 4, 5) ``p, u, a, b, c`` before frame 0: the initial box and velocity."""
    B, N, _ = init.shape
    state = np.zeros((B, N, 4, 5))
    for b in range(B):
        for n in range(N):
            for d in range(4):
                state[b, n, d, 0], state[b, n, d, 1] = init[b, n, d], init_vel[b, n, d]
                state[b, n, d, 2], state[b, n, d, 4] = init_var[b, n, d], v0[b, n, d]
    return state


@kernel
def online_frame(t, state, pred, filt, eta, init, init_vel, init_var, v0, start, f, k, q11, q12, q22, obs,
                 obs_mask, phi, source_mask, log_pi_clutter, log_density, temperature, var_cap, gate, exclusive,
                 one_detection):
    """Frame t of the filtering pass, in place: predict ``state`` (B, N, 4, 5) with the transition into frame t
    (``f, k, q11, q12, q22`` (B, N, T or 1, 4)), assign the frame's detections to the predictions (predictive
    likelihood, ``var_cap < 0`` for none) into ``eta`` (B, T, K, N + 1), correct; the predicted and filtered
    states go to ``pred``/``filt`` (B, N, 4, T, 5). Returns the frame's log-likelihood (B,)."""
    B, N = start.shape
    K = obs.shape[2]
    i = t if f.shape[2] > 1 else 0
    loglik = np.zeros(B)
    pred_m = np.empty((N, 4))
    pred_v = np.empty((N, 4))
    lam = np.empty((N, 4))
    info = np.empty((N, 4))
    cand = np.empty((K, N), dtype=np.int64)
    ncand = np.empty(K, dtype=np.int64)
    for b in range(B):
        for n in range(N):
            s = start[b, n]
            for d in range(4):
                if t > 0:
                    _predict(state[b, n, d], init[b, n, d], init_vel[b, n, d], init_var[b, n, d], v0[b, n, d],
                             s == t, f[b, n, i, d], k[b, n, i, d], q11[b, n, i, d], q12[b, n, i, d], q22[b, n, i, d])
                _copy(state[b, n, d], pred[b, n, d, t])
                pred_m[n, d], pred_v[n, d] = state[b, n, d, 0], state[b, n, d, 2]
        e = eta[b, t]
        _frame_logits(e, cand, ncand, obs[b, t], phi[b, t], pred_m, pred_v, source_mask[b, :, t],
                      log_pi_clutter[b], log_density[b], temperature, True, var_cap, gate)
        loglik[b] = _frame_normalise(e, cand, ncand, obs_mask[b, t], exclusive, one_detection)
        lam[:] = 0.0
        info[:] = 0.0
        for j in range(K):
            for c in range(ncand[j]):
                n = cand[j, c]
                w = e[j, n + 1]
                for d in range(4):
                    lam[n, d] += w / phi[b, t, j, d]
                    info[n, d] += w * (obs[b, t, j, d] / phi[b, t, j, d])
        for n in range(N):
            s = start[b, n]
            for d in range(4):
                _correct(state[b, n, d], lam[n, d], info[n, d], init[b, n, d], init_vel[b, n, d], init_var[b, n, d],
                         v0[b, n, d], s > t)
                _copy(state[b, n, d], filt[b, n, d, t])
    return loglik


@kernel
def smooth_states(pred, filt, f, start, smooth):
    """Posterior means and variances (B, N, T, 4) from the filtering pass's states ``pred``/``filt``
    (B, N, 4, T, 5) and transition factors ``f`` (B, N, T or 1, 4): the RTS smoother, or the filtered moments."""
    B, N, _, T, _ = pred.shape
    mean = np.empty((B, N, T, 4))
    var = np.empty((B, N, T, 4))
    for b in range(B):
        for n in range(N):
            for d in range(4):
                _outputs(filt[b, n, d], pred[b, n, d], f[b, n, :, d], start[b, n], smooth, mean[b, n, :, d],
                         var[b, n, :, d])
    return mean, var


@kernel
def online_filter_smooth(init, init_vel, init_var, v0, start, f, k, q11, q12, q22, obs, obs_mask, phi,
                         source_mask, log_pi_clutter, log_density, temperature, var_cap, gate, exclusive,
                         one_detection, smooth):
    """The engine's filtering pass with a transition given in advance: :func:`online_frame` on every frame, then
    :func:`smooth_states`. Returns mean, var (B, N, T, 4), eta (B, T, K, N + 1) and the log-likelihood (B,)."""
    B, T, K, _ = obs.shape
    N = start.shape[1]
    state = initial_state(init, init_vel, init_var, v0)
    pred = np.empty((B, N, 4, T, 5))
    filt = np.empty((B, N, 4, T, 5))
    eta = np.empty((B, T, K, N + 1))
    loglik = np.zeros(B)
    for t in range(T):
        loglik += online_frame(t, state, pred, filt, eta, init, init_vel, init_var, v0, start, f, k, q11, q12, q22,
                               obs, obs_mask, phi, source_mask, log_pi_clutter, log_density, temperature, var_cap,
                               gate, exclusive, one_detection)
    mean, var = smooth_states(pred, filt, f, start, smooth)
    return mean, var, eta, loglik


@kernel
def _detection_noise(obs, r):
    """Phi (B, T, K, 4) from the detection sizes and the scales r (B, 4), as
    :func:`mixdvae.vem.assign.detection_noise`."""
    B, T, K, _ = obs.shape
    phi = np.empty((B, T, K, 4))
    for b in range(B):
        for t in range(T):
            for k in range(K):
                for d in range(4):
                    phi[b, t, k, d] = (r[b, d] * max(obs[b, t, k, 2 + d % 2], 1.0)) ** 2
    return phi


@kernel
def iterate(obs, obs_mask, source_mask, log_density, r, clutter_weight, r_prior, init, init_vel, init_var, v0,
            start, f, k, q11, q12, q22, mean, var, eta, update_r, update_clutter, r_low, r_high, clutter_low,
            clutter_high, prior_weight, temperature, gate, exclusive, one_detection, smooth):
    """One VEM iteration of the engine: M-step, E-S (Kalman filter and smoother on the pseudo-observations of
    ``eta``) and E-W, on windows whose latents are up to date (E-Z, done by the caller: the transition).

    Returns r (B, 4), the clutter weight (B,), mean, var (B, N, T, 4), eta (B, T, K, N + 1), the log-likelihood
    (B,) and the largest change of eta and of the means (in reference heights, alive frames) per window (B,)."""
    if update_r or update_clutter:
        r_new, clutter_new = m_step(eta, obs, obs_mask, mean, var, r_low, r_high, clutter_low, clutter_high,
                                    r_prior, prior_weight)
        if update_r:
            r = r_new
        if update_clutter:
            clutter_weight = clutter_new
    phi = _detection_noise(obs, r)
    lam, info = pseudo_observations(eta, obs, phi)
    new_mean, new_var = filter_smooth(init, init_vel, init_var, v0, start, f, k, q11, q12, q22, lam, info, smooth)
    log_clutter = np.empty(len(clutter_weight))
    for b in range(len(clutter_weight)):
        log_clutter[b] = math.log(clutter_weight[b])
    new_eta, loglik = assign(obs, obs_mask, phi, new_mean, new_var, source_mask, log_clutter,
                             log_density, temperature, exclusive, one_detection, gate)
    B, N, T, _ = mean.shape
    delta_eta = np.zeros(B)
    delta_mean = np.zeros(B)
    for b in range(B):
        for t in range(T):
            for k in range(eta.shape[2]):
                for j in range(N + 1):
                    delta_eta[b] = max(delta_eta[b], abs(new_eta[b, t, k, j] - eta[b, t, k, j]))
        for n in range(N):
            height = max(init[b, n, 3], 1.0)
            for t in range(T):
                if source_mask[b, n, t]:
                    for d in range(4):
                        delta_mean[b] = max(delta_mean[b], abs(new_mean[b, n, t, d] - mean[b, n, t, d]) / height)
    return r, clutter_weight, new_mean, new_var, new_eta, loglik, delta_eta, delta_mean
