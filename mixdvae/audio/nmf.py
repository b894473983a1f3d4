"""Itakura-Saito non-negative matrix factorisation (NMF), batched over utterances, with masks for padding.

Model of a power spectrogram ``P`` (B, F, T) as the variance of a zero-mean complex Gaussian::

    V_x = V_0 + W H,   W >= 0 (B, F, K),   H >= 0 (B, K, T)

where ``V_0`` (..., B, F, T) is a fixed part (e.g. the speech variance of the enhancement VEM, with optional
leading sample axes over which the cost is summed). The cost is the negative log-likelihood up to a constant,
``C = sum_{s,f,t valid} P / V_x + log V_x`` (equal to the Itakura-Saito divergence ``d_IS(P | V_x)`` plus
a term that does not depend on the model). The multiplicative updates below (exponent 1/2, Fevotte & Idier
2011) never increase it:

    W <- W * sqrt( ((P V_x^-2) H^T) / (V_x^-1 H^T) ),    H <- H * sqrt( (W^T (P V_x^-2)) / (W^T V_x^-1) )

and the same form updates a per-frame gain ``g`` of ``V_x = g V_s + V_b``:
``g <- g * sqrt( sum_f P V_s V_x^-2 / sum_f V_s V_x^-1 )``.

Padded frames (``mask`` (B, T) False) contribute nothing: their activations and gains are left unchanged.
The model variance is floored at ``floor`` (units of ``P``; a number or a (B, 1, 1) tensor) and W, H, g at
:data:`TINY`, so nothing becomes zero, infinite or NaN.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch

FLOOR = 1e-10  # default smallest variance V_x (units of P); a tensor floor must broadcast against (B, F, T)
TINY = 1e-20  # smallest value of W, H, g and of an update ratio (keeps them strictly positive)


def valid_mask(P: torch.Tensor, mask: torch.Tensor | None) -> torch.Tensor:
    """``mask`` (B, T) as a float (B, 1, T) multiplier, all ones when None."""
    if mask is None:
        return torch.ones(P.shape[0], 1, P.shape[-1], device=P.device, dtype=P.dtype)
    return mask.to(device=P.device, dtype=P.dtype).unsqueeze(1)


def is_cost(P: torch.Tensor, V: torch.Tensor, mask: torch.Tensor | None = None,
            weights: torch.Tensor | None = None) -> torch.Tensor:
    """Negative log-likelihood ``sum P / V + log V`` (nats, without the constant) of each utterance, (B,).

    ``P`` (B, F, T); ``V`` (S, B, F, T) or (B, F, T), samples summed (weighted by ``weights`` (S,) if given);
    padded frames left out."""
    m = valid_mask(P, mask)
    per_bin = (P / V + torch.log(V)) * m
    per_sample = per_bin.sum(dim=(-2, -1)).reshape(-1, P.shape[0])  # (S, B)
    return (per_sample if weights is None else per_sample * weights.reshape(-1, 1)).sum(0)


def _moments(P: torch.Tensor, Vx: torch.Tensor, m: torch.Tensor,
             weights: torch.Tensor | None = None) -> tuple[torch.Tensor, torch.Tensor]:
    """``sum_s w_s P V_x^-2`` and ``sum_s w_s V_x^-1`` over the leading sample axes, masked, each (B, F, T);
    ``weights`` (S,) weigh the samples of a single leading axis (default: all 1).

    ``Vx`` is the caller's temporary and is overwritten: the updates are memory-bound, so every pass over the
    (B, F, T) arrays saved counts (three here)."""
    inv = Vx.reciprocal_()
    lead = tuple(range(Vx.dim() - 3))
    if lead and weights is not None:
        weighted = inv * weights.reshape(-1, 1, 1, 1)  # w / Vx
        return (P * inv).mul_(weighted).sum(dim=lead).mul_(m), weighted.sum(dim=lead).mul_(m)
    if lead:
        a = (P * inv).mul_(inv).sum(dim=lead).mul_(m)
        return a, inv.sum(dim=lead).mul_(m)
    a = P * inv
    b = inv.mul_(m)
    return a.mul_(b), b  # P / Vx^2 * m = (P / Vx) * (m / Vx)


def _ratio(num: torch.Tensor, den: torch.Tensor) -> torch.Tensor:
    """``sqrt(num / den)`` where ``den > 0``, else 1 (no information: keep the value)."""
    ok = den > 0
    return torch.where(ok, torch.sqrt(num.clamp(min=0) / torch.where(ok, den, 1.0)).clamp(min=TINY), 1.0)


def update_W(P, V0, W, H, mask=None, floor: float = FLOOR, weights=None) -> torch.Tensor:
    """One multiplicative update of ``W`` (B, F, K) for ``V_x = V0 + W H`` (``V0`` (S, B, F, T) samples weighted
    by ``weights`` (S,), or (B, F, T)); returns the new W."""
    Vx = torch.add(V0, W @ H).clamp_(min=floor)
    a, b = _moments(P, Vx, valid_mask(P, mask), weights)
    Ht = H.transpose(-1, -2)
    return (W * _ratio(a @ Ht, b @ Ht)).clamp(min=TINY)


def update_H(P, V0, W, H, mask=None, floor: float = FLOOR, weights=None) -> torch.Tensor:
    """One multiplicative update of ``H`` (B, K, T) for ``V_x = V0 + W H`` (``V0`` and ``weights`` as in
    :func:`update_W`); padded frames keep their H."""
    Vx = torch.add(V0, W @ H).clamp_(min=floor)
    a, b = _moments(P, Vx, valid_mask(P, mask), weights)
    Wt = W.transpose(-1, -2)
    return (H * _ratio(Wt @ a, Wt @ b)).clamp(min=TINY)


def normalise_columns(W: torch.Tensor, H: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """Scale each column of ``W`` (..., F, K) to unit sum and the matching row of ``H`` (..., K, T) back, so
    ``W H`` is unchanged."""
    norm = W.sum(dim=-2, keepdim=True).clamp(min=TINY)  # (..., 1, K)
    return W / norm, H * norm.transpose(-1, -2)


def update_gain(P, Vs, Vb, g, mask=None, floor: float = FLOOR, weights=None) -> torch.Tensor:
    """One multiplicative update of the per-frame gain ``g`` (B, T) of ``V_x = g V_s + V_b``.

    ``Vs`` (..., B, F, T) speech variance (leading sample axes summed over; a single one weighted by
    ``weights`` (S,) if given), ``Vb`` (B, F, T) noise variance."""
    gs = g.unsqueeze(-2)  # (B, 1, T)
    inv = torch.addcmul(Vb, gs, Vs).clamp_(min=floor).reciprocal_()  # 1 / Vx
    den = Vs * inv
    if weights is not None:
        den.mul_(weights.reshape(-1, 1, 1, 1))  # w Vs / Vx
    num = (P * den).mul_(inv)  # (w) P Vs / Vx^2
    lead = tuple(range(Vs.dim() - 3))
    if lead:
        num, den = num.sum(dim=lead), den.sum(dim=lead)
    m = valid_mask(P, mask)
    ratio = _ratio((num * m).sum(-2), (den * m).sum(-2))  # (B, T)
    return (g * ratio).clamp(min=TINY)


def nmf_step(P, V0, W, H, mask=None, update_basis: bool = True, floor: float = FLOOR, weights=None):
    """One round of updates of ``V_x = V0 + W H``: W (when ``update_basis``), then H, then the column
    normalisation of W (``V0`` and ``weights`` as in :func:`update_W`). Returns ``(W, H)``."""
    if update_basis:
        W = update_W(P, V0, W, H, mask, floor, weights)
    H = update_H(P, V0, W, H, mask, floor, weights)
    if update_basis:
        W, H = normalise_columns(W, H)
    return W, H


def random_init(batch: int, freqs: int, rank: int, frames: int, generator: torch.Generator,
                device=None, dtype=torch.float32, scale: torch.Tensor | float = 1.0):
    """Seeded positive ``W`` (B, F, K) with unit-sum columns and ``H`` (B, K, T) such that ``W H`` is of the
    order of ``scale`` ((B,) or a number: the mean power to explain)."""
    W = torch.rand(batch, freqs, rank, generator=generator, dtype=dtype).to(device) + 0.1
    H = torch.rand(batch, rank, frames, generator=generator, dtype=dtype).to(device) + 0.1
    W = W / W.sum(dim=1, keepdim=True)
    scale = torch.as_tensor(scale, dtype=dtype, device=device).reshape(-1, 1, 1)
    return W, H * scale * freqs / rank


@dataclass
class BasisFit:
    """A speech NMF basis learned on clean power spectrograms: ``W`` (F, K), unit-sum columns; ``cost`` the
    IS cost per valid bin after each iteration (a list, for monitoring)."""

    W: torch.Tensor
    cost: list[float]


def learn_basis(P: torch.Tensor, rank: int, iterations: int = 200, seed: int = 0,
                floor: float = FLOOR) -> BasisFit:
    """Fit ``P ~ W H`` (plain IS-NMF, no fixed part) on the clean power spectrogram ``P`` (F, T) of many
    concatenated frames and return the basis ``W`` (F, K): the fixed speech model of NMF-VEM."""
    if P.dim() != 2:
        raise ValueError(f"learn_basis needs one (F, T) spectrogram, got shape {tuple(P.shape)}")
    generator = torch.Generator().manual_seed(seed)
    Pb = P.unsqueeze(0)
    W, H = random_init(1, P.shape[0], rank, P.shape[1], generator, P.device, P.dtype, P.mean())
    zero = torch.zeros((), device=P.device, dtype=P.dtype)
    cost = []
    for _ in range(iterations):
        W, H = nmf_step(Pb, zero, W, H, None, True, floor)
        cost.append(float(is_cost(Pb, (W @ H).clamp(min=floor))[0]) / P.numel())
    return BasisFit(W[0], cost)
