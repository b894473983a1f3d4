"""Constant-velocity Kalman predictor: the baseline a learned motion prior has to beat.

Four independent 1-D constant-velocity filters (``cx, cy, w, h``), run in the prior's model coordinates (each
window relative to its first box and divided by its height, so in pixels the noise scales with the target's
size). Per coordinate, three parameters fitted by maximum likelihood of the next box on training windows:

* ``q``: white-noise acceleration intensity, ``Q = q [[1/3, 1/2], [1/2, 1]]`` per frame;
* ``r``: observation (annotation) noise variance;
* ``p0``: prior variance of the initial velocity (the initial position is the first box, variance ``r``).

Fully vectorised over windows (numpy); missing steps (mask False) skip the update.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass, field

import numpy as np
from scipy.optimize import minimize

LOG_2PI = float(np.log(2 * np.pi))


@dataclass
class CVParams:
    q: list[float] = field(default_factory=lambda: [1e-4, 1e-4, 1e-4, 1e-4])
    r: list[float] = field(default_factory=lambda: [1e-4, 1e-4, 1e-4, 1e-4])
    p0: list[float] = field(default_factory=lambda: [1e-3, 1e-3, 1e-4, 1e-4])

    def to_dict(self) -> dict:
        return asdict(self)

    @classmethod
    def from_dict(cls, data: dict) -> CVParams:
        return cls(**{k: [float(v) for v in data[k]] for k in ("q", "r", "p0")})


def cv_filter(x: np.ndarray, mask: np.ndarray | None, params: CVParams):
    """Run the filters over windows ``x`` (N, T, 4).

    Returns ``pred_mean, pred_var`` (N, T, 4): the one-step predictive distribution of each observation x_t
    given x_{<t} (t = 0: NaN), and ``filt`` = (position, velocity, P00, P01, P11), each (N, T, 4): the filtered
    state after x_t.
    """
    x = np.asarray(x, dtype=np.float64)
    n, length, dims = x.shape
    mask = np.ones((n, length), bool) if mask is None else np.asarray(mask, bool)
    q, r, p0 = (np.asarray(v, dtype=np.float64) for v in (params.q, params.r, params.p0))
    pos, vel = x[:, 0].copy(), np.zeros((n, dims))
    p00, p01, p11 = np.broadcast_to(r, (n, dims)).copy(), np.zeros((n, dims)), np.broadcast_to(p0, (n, dims)).copy()
    pred_mean = np.full_like(x, np.nan)
    pred_var = np.full_like(x, np.nan)
    filt = [np.zeros_like(x) for _ in range(5)]
    for arr, val in zip(filt, (pos, vel, p00, p01, p11)):
        arr[:, 0] = val
    for t in range(1, length):
        # predict
        pos = pos + vel
        p00, p01, p11 = p00 + 2 * p01 + p11 + q / 3, p01 + p11 + q / 2, p11 + q
        s = p00 + r
        pred_mean[:, t], pred_var[:, t] = pos, s
        # update where observed
        valid = mask[:, t][:, None]
        k0, k1 = p00 / s, p01 / s
        innov = x[:, t] - pos
        pos = np.where(valid, pos + k0 * innov, pos)
        vel = np.where(valid, vel + k1 * innov, vel)
        n00, n01, n11 = (1 - k0) * p00, (1 - k0) * p01, p11 - k1 * p01
        p00, p01, p11 = (np.where(valid, a, b) for a, b in ((n00, p00), (n01, p01), (n11, p11)))
        for arr, val in zip(filt, (pos, vel, p00, p01, p11)):
            arr[:, t] = val
    return pred_mean, pred_var, tuple(filt)


def cv_predict_ahead(filt, horizon: int, params: CVParams):
    """Mean and variance (N, T, 4) of the observation ``horizon`` steps after each filtered state."""
    pos, vel, p00, p01, p11 = filt
    k = float(horizon)
    q, r = np.asarray(params.q), np.asarray(params.r)
    # position variance of sum_j F^j Q F^j' over j = 0..k-1, with Q = q [[1/3, 1/2], [1/2, 1]]
    process = q * ((k - 1) * k * (2 * k - 1) / 6 + (k - 1) * k / 2 + k / 3)
    return pos + k * vel, p00 + 2 * k * p01 + k * k * p11 + process + r


def _nll_terms(x, mask, params, first_scored: int):
    pred_mean, pred_var, _ = cv_filter(x, mask, params)
    valid = np.asarray(mask, bool).copy()
    valid[:, :first_scored] = False
    nll = 0.5 * (LOG_2PI + np.log(pred_var) + (x - pred_mean) ** 2 / pred_var)
    return nll, valid


def cv_nll(x: np.ndarray, mask: np.ndarray, params: CVParams, first_scored: int = 2) -> float:
    """Mean next-box NLL (summed over the 4 coordinates) over valid steps ``t >= first_scored`` (0-based)."""
    nll, valid = _nll_terms(x, mask, params, first_scored)
    return float(nll.sum(-1)[valid].mean())


START_POINTS = ([-9.0, -9.0, -7.0], [-6.0, -7.0, -5.0], [-11.0, -12.0, -9.0])  # log q, log r, log p0


def fit_cv(
    x: np.ndarray, mask: np.ndarray | None = None, first_scored: int = 2, init: CVParams | None = None, starts: int = 3
) -> CVParams:
    """Maximum-likelihood ``q, r, p0`` per coordinate on windows ``x`` (N, T, 4) (model coordinates), by
    Nelder-Mead on the log-parameters from ``starts`` starting points."""
    x = np.asarray(x, dtype=np.float64)
    mask = np.ones(x.shape[:2], bool) if mask is None else np.asarray(mask, bool)
    init = init or CVParams()
    fitted = CVParams(list(init.q), list(init.r), list(init.p0))
    for d in range(x.shape[2]):
        xd = x[:, :, d : d + 1]

        def objective(theta, xd=xd):
            q, r, p0 = np.exp(np.clip(theta, -30, 5))
            nll, valid = _nll_terms(xd, mask, CVParams([q], [r], [p0]), first_scored)
            value = nll[..., 0][valid].mean()
            return float(value) if np.isfinite(value) else 1e9

        best = None
        for start in START_POINTS[: max(1, starts)]:
            options = {"xatol": 1e-3, "fatol": 1e-6, "maxiter": 600}
            res = minimize(objective, np.array(start), method="Nelder-Mead", options=options)
            if best is None or res.fun < best.fun:
                best = res
        q, r, p0 = np.exp(np.clip(best.x, -30, 5))
        fitted.q[d], fitted.r[d], fitted.p0[d] = float(q), float(r), float(p0)
    return fitted
