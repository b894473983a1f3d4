"""Evaluation of motion priors as predictors of the next box and of the box ``horizon`` steps ahead.

Protocol (used by ``tools/eval_prior.py`` and the trainer's reports), on windows of ground-truth boxes:

* every window is expressed in model coordinates relative to its first box;
* **next box**: the Gaussian prediction of x_t given the true x_{1:t-1}, scored for every valid t with at least
  ``min_history`` (2) past boxes: negative log-likelihood of the true box in **pixels** (nats per box, summed over
  cx, cy, w, h), IoU with the true box and centre error in pixels;
* **horizon steps ahead**: from the true x_{1:t0} (t0 >= ``min_history``), the model runs ``horizon`` steps
  feeding back its own mean (DVAE: ``step`` with ``z=None``; Kalman: prediction without update), and the mean
  at t0 + horizon is compared with the truth (IoU, centre error).

Metrics are means over all scored boxes (pooled over windows and sequences).
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field

import numpy as np
import torch

from ..data import normalization
from .cv import CVParams, cv_filter, cv_predict_ahead

LOG_2PI = math.log(2 * math.pi)
METRIC_KEYS = ("nll", "iou_1", "iou_10", "center_px_1", "center_px_10")


def iou_cxcywh(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    """Element-wise IoU of boxes ``cx, cy, w, h`` (..., 4) with broadcasting; degenerate boxes give 0."""
    aw, ah = np.clip(a[..., 2], 0, None), np.clip(a[..., 3], 0, None)
    bw, bh = np.clip(b[..., 2], 0, None), np.clip(b[..., 3], 0, None)
    iw = np.clip(np.minimum(a[..., 0] + aw / 2, b[..., 0] + bw / 2)
                 - np.maximum(a[..., 0] - aw / 2, b[..., 0] - bw / 2), 0, None)
    ih = np.clip(np.minimum(a[..., 1] + ah / 2, b[..., 1] + bh / 2)
                 - np.maximum(a[..., 1] - ah / 2, b[..., 1] - bh / 2), 0, None)
    inter = iw * ih
    union = aw * ah + bw * bh - inter
    return np.divide(inter, union, out=np.zeros_like(inter), where=union > 0)


@torch.no_grad()
def dvae_predictions(model, x: np.ndarray, horizon: int = 10, chunk: int = 8192):
    """Teacher-forced next-step predictions and ``horizon``-step free-run means of a DVAE, model coordinates.

    Returns ``mean1, var1`` (N, T, 4): prediction of x_t from x_{<t}; ``mean_h`` (N, T, 4): at index t, the
    prediction of x_t made from x_{<=t-horizon} (NaN where t < horizon)."""
    model.eval()
    device = model.device
    xt = torch.as_tensor(np.asarray(x, dtype=np.float32), device=device)
    n, length, dims = xt.shape
    state = model.init_state(n, device)
    x_prev = model.x0(n, device)
    means, variances, states = [], [], []
    for t in range(length):
        mean, var, state = model.step(state, x_prev, None)
        means.append(mean)
        variances.append(var)
        x_prev = xt[:, t]
        states.append(state)  # state after predicting x_t; next input is x_t
    mean1 = torch.stack(means, 1).cpu().numpy().astype(np.float64)
    var1 = torch.stack(variances, 1).cpu().numpy().astype(np.float64)
    mean_h = np.full((n, length, dims), np.nan)
    starts = list(range(0, length - horizon)) if horizon > 0 else []  # t0 (0-based): last true input is x_{t0}
    if starts:
        flat_state = tuple(torch.cat([states[t][i] for t in starts], 0) for i in range(len(state)))
        flat_x = torch.cat([xt[:, t] for t in starts], 0)
        total = flat_x.shape[0]
        outs = []
        for lo in range(0, total, chunk):
            st = tuple(s[lo : lo + chunk] for s in flat_state)
            xp = flat_x[lo : lo + chunk]
            for _ in range(horizon):
                xp, _, st = model.step(st, xp, None)
            outs.append(xp)
        pred = torch.cat(outs, 0).cpu().numpy().astype(np.float64).reshape(len(starts), n, dims)
        mean_h[:, horizon:] = pred.transpose(1, 0, 2)
    return mean1, var1, mean_h


def cv_predictions(params: CVParams, x: np.ndarray, mask: np.ndarray | None, horizon: int = 10):
    """Same outputs as :func:`dvae_predictions` for the constant-velocity Kalman predictor."""
    x = np.asarray(x, dtype=np.float64)
    mean1, var1, filt = cv_filter(x, mask, params)
    ahead, _ = cv_predict_ahead(filt, horizon, params)
    mean_h = np.full_like(x, np.nan)
    if x.shape[1] > horizon:
        mean_h[:, horizon:] = ahead[:, :-horizon]
    return mean1, var1, mean_h


@dataclass
class Metrics:
    """Pooled sums of the prior metrics; add with ``+=``, read with :meth:`summary`."""

    sums: dict = field(default_factory=lambda: {k: 0.0 for k in METRIC_KEYS})
    n_1: int = 0
    n_h: int = 0

    def __iadd__(self, other: Metrics) -> Metrics:
        for key in METRIC_KEYS:
            self.sums[key] += other.sums[key]
        self.n_1 += other.n_1
        self.n_h += other.n_h
        return self

    def summary(self) -> dict:
        out = {}
        for key in METRIC_KEYS:
            count = self.n_h if key.endswith("_10") else self.n_1
            out[key] = self.sums[key] / count if count else float("nan")
        return out


def box_metrics(boxes: np.ndarray, mask: np.ndarray, mean1, var1, mean_h, min_history: int = 2) -> Metrics:
    """Metrics of predictions (model coordinates, from :func:`dvae_predictions` or :func:`cv_predictions`)
    against the true ``boxes`` (N, T, 4) pixels ``cx, cy, w, h`` of the same windows.

    ``iou_10``/``center_px_10`` hold the horizon-step metrics whatever the horizon."""
    boxes = np.asarray(boxes, dtype=np.float64)
    mask = np.asarray(mask, bool)
    ref = normalization.reference(boxes[:, :1])
    pm1 = normalization.mean_from_model(mean1, ref)
    pv1 = normalization.var_from_model(var1, ref)
    pmh = normalization.mean_from_model(mean_h, ref)
    t = np.arange(boxes.shape[1])
    valid1 = mask & (t >= min_history)[None]
    horizon_ok = ~np.isnan(mean_h[..., 0])
    # the free run starts after at least min_history true boxes: t0 = t - horizon >= min_history - 1
    first_h = np.argmax(horizon_ok, axis=1)[:, None] if horizon_ok.any() else np.zeros((len(boxes), 1), int)
    valid_h = mask & horizon_ok & (t[None] - first_h >= min_history - 1)
    nll = 0.5 * (LOG_2PI + np.log(pv1) + (boxes - pm1) ** 2 / pv1).sum(-1)
    out = Metrics()
    out.n_1, out.n_h = int(valid1.sum()), int(valid_h.sum())
    out.sums["nll"] = float(nll[valid1].sum())
    out.sums["iou_1"] = float(iou_cxcywh(pm1, boxes)[valid1].sum())
    out.sums["center_px_1"] = float(np.hypot(*(pm1 - boxes)[..., :2].transpose(2, 0, 1))[valid1].sum())
    out.sums["iou_10"] = float(iou_cxcywh(pmh, boxes)[valid_h].sum())
    out.sums["center_px_10"] = float(np.hypot(*(pmh - boxes)[..., :2].transpose(2, 0, 1))[valid_h].sum())
    return out


def evaluate_predictor(predict, windows, horizon: int = 10, min_history: int = 2) -> Metrics:
    """``predict(x, mask, horizon) -> (mean1, var1, mean_h)`` on :class:`~mixdvae.data.BoxWindows`."""
    x = windows.to_model()
    mean1, var1, mean_h = predict(x, windows.mask, horizon)
    return box_metrics(windows.boxes, windows.mask, mean1, var1, mean_h, min_history)


def evaluate_dvae(model, windows, horizon: int = 10, min_history: int = 2) -> Metrics:
    return evaluate_predictor(lambda x, m, h: dvae_predictions(model, x, h), windows, horizon, min_history)


def evaluate_cv(params: CVParams, windows, horizon: int = 10, min_history: int = 2) -> Metrics:
    return evaluate_predictor(lambda x, m, h: cv_predictions(params, x, m, h), windows, horizon, min_history)
