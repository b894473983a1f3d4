"""The assignment step (E-W), the pseudo-observations it induces and the M-step.

Shapes (all torch tensors on one device and dtype):

* ``obs``: (B, T, K, 4) detections ``cx, cy, w, h`` in pixels, padded; ``obs_mask`` (B, T, K) bool.
* ``phi``: (B, T, K, 4) diagonal detection-noise variances, ``Phi_tk = diag((r w)^2, (r h)^2, (r w)^2, (r h)^2)``.
* ``mean``/``var``: (B, N, T, 4) posterior moments of the sources; ``source_mask`` (B, N, T) bool ("alive").
* ``eta``: (B, T, K, N + 1) assignment posteriors, index 0 = clutter; exactly zero for padded detections.

Everything is one vectorised expression over (B, T, K, N) in log space; padded detections, dead sources and
empty frames cannot produce NaN because the clutter class is always finite.
"""

from __future__ import annotations

import math

import torch

LOG_2PI = math.log(2.0 * math.pi)


def box_size(boxes: torch.Tensor) -> torch.Tensor:
    """``(w, h, w, h)`` of boxes ``cx, cy, w, h`` (..., 4), at least one pixel: the scale of each coordinate."""
    return torch.cat([boxes[..., 2:4], boxes[..., 2:4]], dim=-1).clamp_min(1.0)


def detection_noise(obs: torch.Tensor, r: torch.Tensor) -> torch.Tensor:
    """Phi_tk (B, T, K, 4) from the detection sizes and the per-window scales ``r`` (B, 4), one per coordinate
    of ``cx, cy, w, h``: ``Phi_tk = diag((r_1 w)^2, (r_2 h)^2, (r_3 w)^2, (r_4 h)^2)``."""
    return (r.view(-1, 1, 1, 4) * box_size(obs)) ** 2


def assignment_logits(
    obs: torch.Tensor,
    phi: torch.Tensor,
    mean: torch.Tensor,
    var: torch.Tensor,
    source_mask: torch.Tensor,
    log_pi_clutter: torch.Tensor,
    log_clutter_density: torch.Tensor,
    temperature: float = 1.0,
    predictive: bool = False,
    var_cap: float | None = None,
    gate: float | None = None,
) -> torch.Tensor:
    """Unnormalised log eta (B, T, K, N + 1).

    For n >= 1: ``log pi_n + temperature * (log N(o_tk; m_tn, Phi_tk) - tr(Phi_tk^-1 V_tn) / 2)`` with
    ``pi_n = (1 - pi_0) / N_alive(t)``; for the clutter class: ``log pi_0 + log_clutter_density``.
    With ``predictive=True`` the source term is the predictive likelihood ``log N(o_tk; m_tn, Phi_tk + V_tn)``
    instead (used by the first, filtering pass where ``mean``/``var`` are one-step predictions); ``var_cap = c``
    bounds ``V_tn`` there by ``c Phi_tk``, so that a source unobserved for a while (large V) does not claim
    detections far from its prediction (in a crowd: a neighbour's). ``gate = g`` sets a source's logit to -inf
    where it falls more than g nats below the clutter class's (``VEMConfig.gate``).

    ``mean``/``var`` may cover a sub-range of frames: their T must equal that of ``obs``.
    """
    o = obs.unsqueeze(3)  # (B, T, K, 1, 4)
    p = phi.unsqueeze(3)
    m = mean.transpose(1, 2).unsqueeze(2)  # (B, T, 1, N, 4)
    v = var.transpose(1, 2).unsqueeze(2)
    if predictive:
        s = p + (v if var_cap is None else torch.minimum(v, var_cap * p))
        ll = -0.5 * (((o - m) ** 2 / s).sum(-1) + torch.log(s).sum(-1) + 4 * LOG_2PI)
    else:
        log_det = torch.log(phi).sum(-1, keepdim=True)  # (B, T, K, 1)
        ll = -0.5 * ((((o - m) ** 2 + v) / p).sum(-1) + log_det + 4 * LOG_2PI)
    alive = source_mask.transpose(1, 2)  # (B, T, N)
    n_alive = alive.sum(-1, keepdim=True).clamp_min(1)  # (B, T, 1)
    pi_c = log_pi_clutter.view(-1, 1, 1)
    log_pi_src = torch.log1p(-torch.exp(pi_c)) - torch.log(n_alive.to(ll.dtype))  # (B, T, 1)
    src = temperature * ll + log_pi_src.unsqueeze(2)
    clutter = (log_pi_clutter + log_clutter_density).view(-1, 1, 1, 1).expand(*src.shape[:3], 1)
    dead = ~alive.unsqueeze(2)
    if gate is not None:
        dead = dead | (src < clutter - gate)
    src = src.masked_fill(dead, float("-inf"))
    return torch.cat([clutter, src], dim=-1)


def normalise(
    logits: torch.Tensor, obs_mask: torch.Tensor, exclusive: int = 0, one_detection: bool = False
) -> tuple[torch.Tensor, torch.Tensor]:
    """eta (B, T, K, N + 1) from the logits, zero on padded detections, and the per-window log marginal
    likelihood of the detections under the current q(s) (B,).

    ``exclusive = n > 0`` runs n alternating normalisations (Sinkhorn) that bring each source's total mass in a
    frame down to at most one detection, while every detection's row still sums to one (the clutter column
    absorbs the excess): a soft one-to-one assignment. The model's assignment lets one source explain several
    detections, so in a crowd a source whose target is hidden spreads over its neighbours and drifts to them.

    ``one_detection=True`` (applied first) keeps each source's mass, per frame, on its most likely detection
    only, and renormalises each detection over the classes left to it: a hard choice of detection per source.
    A soft one-to-one assignment still lets a source take half of each of two nearby detections and sit
    between two people (the coalescence of soft data association); the hard choice keeps it on one of them.
    """
    log_norm = torch.logsumexp(logits, dim=-1, keepdim=True)
    log_eta = logits - log_norm
    real = obs_mask.unsqueeze(-1)
    if one_detection:
        src = log_eta[..., 1:].masked_fill(~real, float("-inf"))
        best = src.argmax(dim=2, keepdim=True)  # (B, T, 1, N)
        mine = torch.arange(src.shape[2], device=src.device).view(1, 1, -1, 1) == best
        log_eta = torch.cat([log_eta[..., :1], log_eta[..., 1:].masked_fill(~mine, float("-inf"))], dim=-1)
        log_eta = log_eta - torch.logsumexp(log_eta, dim=-1, keepdim=True)
    for _ in range(exclusive):
        src = log_eta[..., 1:]
        excess = torch.logsumexp(src.masked_fill(~real, float("-inf")), dim=2, keepdim=True).clamp_min(0.0)
        log_eta = torch.cat([log_eta[..., :1], src - excess], dim=-1)
        log_eta = log_eta - torch.logsumexp(log_eta, dim=-1, keepdim=True)
    eta = torch.exp(log_eta) * real
    loglik = (log_norm.squeeze(-1) * obs_mask).sum(dim=(1, 2))
    return eta, loglik


def pseudo_observations(eta: torch.Tensor, obs: torch.Tensor, phi: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """Precision-weighted pseudo-observations of every source, in information form.

    Returns ``lam`` (B, N, T, 4) = sum_k eta_tkn / Phi_tk and ``info`` (B, N, T, 4) = sum_k eta_tkn o_tk / Phi_tk,
    so that ``y_tn = info / lam`` where ``lam > 0`` (never formed explicitly: no division by zero).
    """
    w = eta[..., 1:]  # (B, T, K, N)
    inv_phi = 1.0 / phi
    lam = torch.einsum("btkn,btkd->bntd", w, inv_phi)
    info = torch.einsum("btkn,btkd->bntd", w, obs * inv_phi)
    return lam, info


def m_step(
    eta: torch.Tensor,
    obs: torch.Tensor,
    obs_mask: torch.Tensor,
    mean: torch.Tensor,
    var: torch.Tensor,
    r_bounds: tuple[float, float],
    clutter_bounds: tuple[float, float],
    r_prior: torch.Tensor | None = None,
    prior_weight: float = 0.0,
) -> tuple[torch.Tensor, torch.Tensor]:
    """Closed-form updates of the detection-noise scales r (B, 4) and the clutter weight pi_0 (B,).

    Per coordinate d: ``r_d^2 = sum eta_tkn ((o_tkd - m_tnd)^2 + V_tnd) / size_tkd^2 / sum eta_tkn`` (size =
    w for cx and w, h for cy and h), optionally shrunk towards ``r_prior`` (B, 4) with ``prior_weight``
    pseudo-detections (a conjugate inverse-gamma prior), clamped to ``r_bounds``;
    ``pi_0 = sum eta_tk0 / #detections``, clamped to ``clutter_bounds``. Windows without detections keep
    ``r_prior`` (or the lower bound) and the lower clutter bound.
    """
    w = eta[..., 1:]  # (B, T, K, N)
    size = box_size(obs).unsqueeze(3)  # (B, T, K, 1, 4)
    m = mean.transpose(1, 2).unsqueeze(2)
    v = var.transpose(1, 2).unsqueeze(2)
    resid = ((obs.unsqueeze(3) - m) ** 2 + v) / size**2  # (B, T, K, N, 4)
    num = torch.einsum("btkn,btknd->bd", w, resid)
    den = w.sum(dim=(1, 2, 3)).unsqueeze(-1).expand_as(num)
    if r_prior is not None and prior_weight > 0:
        num = num + prior_weight * r_prior**2
        den = den + prior_weight
    fallback = r_prior if r_prior is not None else torch.full_like(num, r_bounds[0])
    r2 = torch.where(den > 0, num / den.clamp_min(1e-12), fallback**2)
    r = r2.sqrt().clamp(*r_bounds)
    count = obs_mask.sum(dim=(1, 2)).to(eta.dtype)
    clutter = eta[..., 0].sum(dim=(1, 2)) / count.clamp_min(1.0)
    clutter = torch.where(count > 0, clutter, torch.full_like(clutter, clutter_bounds[0]))
    return r, clutter.clamp(*clutter_bounds)
