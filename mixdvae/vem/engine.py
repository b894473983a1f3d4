"""The variational EM loop of MixDVAE (DESIGN.md section 2), batched over windows.

One call processes B windows at once: every tensor has the windows as its first axis, sources and frames
next. The numeric steps run in one of two backends (:mod:`mixdvae.vem.backends`): vectorised torch
expressions (any device; the reference), or on the CPU the Numba kernels of :mod:`mixdvae.vem.kernels`, which
compute the same numbers without torch's per-operation overhead on small windows. Priors describe their E-S
step as a position-velocity Kalman filter (:class:`~mixdvae.vem.priors.LinearTransition`) where they can; the
others (the GMM's random walk, a DVAE driven ``"filtered"`` or with ``"drift"``) run their own torch filter.
Boxes are ``cx, cy, w, h`` in pixels throughout.

Iteration scheme:

0. **Filtering pass** (initialisation): the prior runs forward from the initial boxes; at each frame the
   assignment of that frame's detections is computed from the one-step prediction (predictive likelihood),
   the source is updated, and the prior's backward pass smooths the result. This gives q(s) and eta for
   every frame without assuming the targets stay where they started.
1. Then, until convergence or ``max_iter``: **E-Z** (DVAE latents from the posterior means, and the DVAE's
   motion along them; a driven prior does it in its first ``motion_updates`` iterations and keeps the last
   motion after), **M** (detection-noise scale r and clutter weight pi_0 of each window), **E-S** (prior
   filter/smoother on the pseudo-observations of eta), **E-W** (eta from q(s)). E-Z does not depend on M.

Convergence, per window: the largest change of eta below ``tol`` and the largest change of the posterior
means below ``tol_mean`` box heights, between two iterations. A converged window is frozen and left out of
later iterations, so each window's result is the same whatever batch it runs in, and a batch costs what its
slowest windows need, on the windows still running.

Detection noise: ``Phi_tk = diag((r_1 w)^2, (r_2 h)^2, (r_3 w)^2, (r_4 h)^2)`` from the detection's own size,
with a scale per coordinate and per window (M-step). Clutter: uniform, see ``VEMConfig.clutter_model``.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import ClassVar

import torch

from mixdvae.config import Bound, Range, validate_fields
from mixdvae.vem import backends
from mixdvae.vem.assign import box_size, detection_noise
from mixdvae.vem.priors import PriorContext, TrajectoryPrior


@dataclass
class VEMInput:
    """A batch of windows.

    Attributes:
        obs: (B, T, K, 4) detections ``cx, cy, w, h`` (pixels), padded with anything finite.
        obs_mask: (B, T, K) bool, True for real detections.
        init: (B, N, 4) initial box of every source.
        source_mask: (B, N, T) bool, True where a source exists (padded sources: all False). A source's first
            True frame is where ``init`` applies.
        area: (B,) image area in pixels^2 (sets the clutter density, see ``VEMConfig.clutter_model``).
        init_velocity: (B, N, 4) velocity (pixels per frame) of every source at its first frame, or None for
            zero: sources carried over from a previous window keep their motion.
        history: (B, N, P, 4) every source's boxes over the P frames before the window (oldest first, NaN where
            unknown), or None: the past a prior may condition on (the DVAE's), see ``PriorContext``.
    """

    obs: torch.Tensor
    obs_mask: torch.Tensor
    init: torch.Tensor
    source_mask: torch.Tensor
    area: torch.Tensor
    init_velocity: torch.Tensor | None = None
    history: torch.Tensor | None = None

    @property
    def shape(self) -> tuple[int, int, int, int]:
        """``(B, N, T, K)``."""
        B, T, K, _ = self.obs.shape
        return B, self.init.shape[1], T, K

    def to(self, device=None, dtype=torch.float64) -> VEMInput:
        return VEMInput(
            self.obs.to(device=device, dtype=dtype),
            self.obs_mask.to(device=device),
            self.init.to(device=device, dtype=dtype),
            self.source_mask.to(device=device),
            self.area.to(device=device, dtype=dtype),
            None if self.init_velocity is None else self.init_velocity.to(device=device, dtype=dtype),
            None if self.history is None else self.history.to(device=device, dtype=dtype),
        )


@dataclass
class VEMResult:
    """Outputs of :func:`run_vem`.

    Attributes:
        mean, var: (B, N, T, 4) posterior means and variances of the sources (``cx, cy, w, h``, pixels).
        eta: (B, T, K, N + 1) assignment posteriors, index 0 = clutter; rows sum to 1 on real detections.
        r: (B, 4) final detection-noise scales; clutter_weight: (B,) final pi_0.
        history: per iteration (0 = filtering pass) a dict of (B,) tensors: ``loglik`` (log-likelihood of
            the detections under q(s), the E-W normaliser), ``delta_eta``, ``delta_mean``.
        iterations: VEM iterations run after the filtering pass (the most any window needed).
        converged: whether every window met the stopping criterion within ``max_iter``.
        window_iterations: (B,) iterations of each window; window_converged: (B,) bool.
    """

    mean: torch.Tensor
    var: torch.Tensor
    eta: torch.Tensor
    r: torch.Tensor
    clutter_weight: torch.Tensor
    history: list[dict] = field(default_factory=list)
    iterations: int = 0
    converged: bool = False
    window_iterations: torch.Tensor | None = None
    window_converged: torch.Tensor | None = None


@dataclass
class VEMConfig:
    """Parameters of the VEM loop. The defaults are the tuned whole-sequence tracker's (README, "How the
    defaults were chosen"); the fixed-source 3T protocol overrides them in ``configs/vem_*.yaml``.

    Attributes:
        r: initial detection-noise scales, one number or one per coordinate of ``cx, cy, w, h``
            (Phi_tk std = r_1 w, r_2 h, r_3 w, r_4 h). The 3T protocol (``configs/vem_*.yaml``) uses the spread
            of public detections around the ground truth measured on MOT15, rounded: (0.1, 0.05, 0.15, 0.08).
        r_bounds: clamp of the M-step for r.
        r_prior_weight: pseudo-detections pulling the M-step for r towards ``r`` (0 = plain M-step).
        update_r, update_clutter: run those M-step updates.
        clutter_weight: initial pi_0; clutter_bounds: clamp of its M-step.
        clutter_model: density of a clutter detection: ``"box"`` (default) uniform over the boxes of the image,
            i.e. centre anywhere in the image and width/height up to the image's, ``1 / area^2`` for the 4-D
            observation; ``"area"``: ``1 / area`` as written in DESIGN.md (a 2-D density against a 4-D
            Gaussian: it calls a detection clutter as soon as it is ~3 sigma away, which makes the clutter
            M-step run away on clean detections).
        temperature: tempering exponent on the Gaussian term of E-W (1 = the model).
        max_iter: VEM iterations after the filtering pass; min_iter: iterations always run.
        tol: convergence threshold on the largest change of eta between two iterations.
        tol_mean: convergence threshold on the largest change of the posterior means, in box heights.
        init_std: standard deviation of the initial boxes as a multiple of Phi's (r w, r h).
        exclusive: Sinkhorn normalisations making E-W a soft one-to-one assignment (each source explains at
            most one detection's worth of mass per frame, see :func:`mixdvae.vem.assign.normalise`); 0 = the
            model's independent assignment of each detection.
        one_detection: each source keeps, per frame, its assignment mass on its most likely detection only (the
            rest of those detections' mass goes to the other classes), see :func:`mixdvae.vem.assign.normalise`.
        var_cap: bound on a source's predictive variance in the filtering pass's assignment, as a multiple of
            the detection noise Phi (None: no bound), see :func:`mixdvae.vem.assign.assignment_logits`.
        gate: E-W gating, in nats: a source whose assignment logit for a detection falls more than ``gate``
            below the clutter class's gets exactly zero mass there (its eta would be below ``exp(-gate)`` anyway,
            the clutter class being in every row), so the kernels skip the far (detection, source) pairs of a
            crowd after a cheap bound; None: no gating. The default, 30 nats, changes eta by less than 1e-13.
        dtype: floating type of the engine (float64 by default; the DVAE runs in float32 anyway).
    """

    r: float | tuple[float, float, float, float] = 0.1
    r_bounds: tuple[float, float] = (0.02, 0.3)
    r_prior_weight: float = 10.0
    update_r: bool = False
    update_clutter: bool = True
    clutter_weight: float = 0.01
    clutter_bounds: tuple[float, float] = (1e-4, 0.5)
    clutter_model: str = "box"
    temperature: float = 1.25
    max_iter: int = 5
    min_iter: int = 1
    tol: float = 1e-3
    tol_mean: float = 1e-2
    init_std: float = 1.0
    exclusive: int = 3
    one_detection: bool = False
    var_cap: float | None = 2.0
    gate: float | None = 30.0
    dtype: torch.dtype = torch.float64

    BOUNDS: ClassVar[dict[str, Bound]] = {
        "r": Range(0, exclusive_low=True), "r_bounds": Range(0, exclusive_low=True), "r_prior_weight": Range(0),
        "clutter_weight": Range(0, 1, exclusive_low=True), "clutter_bounds": Range(0, 1, exclusive_low=True),
        "clutter_model": ("box", "area"), "temperature": Range(0, exclusive_low=True), "max_iter": Range(0),
        "min_iter": Range(0), "tol": Range(0), "tol_mean": Range(0), "init_std": Range(0, exclusive_low=True),
        "exclusive": Range(0), "var_cap": Range(0, exclusive_low=True), "gate": Range(0, exclusive_low=True),
    }

    def __post_init__(self):
        validate_fields(self, "VEM engine")


def _init_var(init: torch.Tensor, r: torch.Tensor, factor: float) -> torch.Tensor:
    return (factor * r.view(-1, 1, 4) * box_size(init)) ** 2


@torch.no_grad()
def run_vem(
    inp: VEMInput, prior: TrajectoryPrior, config: VEMConfig | None = None, device=None, backend: str | None = None
) -> VEMResult:
    """Run the VEM on a batch of windows with the given trajectory prior.

    ``backend``: ``"numba"`` (the kernels of :mod:`mixdvae.vem.kernels`; CPU, float64), ``"torch"`` (any
    device; the reference) or None: Numba on the CPU in float64, torch otherwise. Priors without a
    :meth:`~mixdvae.vem.priors.TrajectoryPrior.linear_transition` run their own (torch) E-S step either way.
    """
    cfg = config or VEMConfig()
    device = torch.device(device) if device is not None else inp.obs.device
    inp = inp.to(device=device, dtype=cfg.dtype)
    B, N, T, K = inp.shape
    obs, obs_mask = inp.obs, inp.obs_mask
    obs = torch.where(obs_mask.unsqueeze(-1), obs, torch.ones_like(obs))  # padded boxes: finite, positive size
    source_mask = inp.source_mask.clone()
    dt = cfg.dtype

    r_init = torch.as_tensor(cfg.r, dtype=dt, device=device).reshape(-1)
    if r_init.numel() not in (1, 4) or not bool((r_init > 0).all()):
        raise ValueError(f"r must be one positive number or four, got {cfg.r!r}")
    r0 = r_init.expand(4).expand(B, 4).clone()
    r = r0.clone()
    pi0 = torch.full((B,), cfg.clutter_weight, dtype=dt, device=device)
    if cfg.clutter_model not in ("box", "area"):
        raise ValueError(f"clutter_model must be 'box' or 'area', got {cfg.clutter_model!r}")
    log_density = -torch.log(inp.area.clamp_min(1.0)) * (2.0 if cfg.clutter_model == "box" else 1.0)

    alive_any = source_mask.any(dim=2)  # (B, N)
    frames = torch.arange(T, device=device).view(1, 1, T)
    start = torch.where(source_mask, frames, torch.full_like(frames, T)).min(dim=2).values  # (B, N)
    start = torch.where(alive_any, start, torch.zeros_like(start))
    ctx = PriorContext(inp.init, _init_var(inp.init, r0, cfg.init_std), start, T, inp.init_velocity, inp.history)
    prior.reset()
    recursive = prior.recursive_transition(ctx)
    trans = None if recursive is not None else prior.linear_transition(ctx)
    steps = backends.select(backend, device, dt, linear=recursive is not None or trans is not None)

    # 0. filtering pass: assignment computed online from the one-step predictions; a driven prior (the DVAE)
    # follows the filtered state, and its transitions are kept for the iterations
    data = (obs, obs_mask, detection_noise(obs, r), source_mask, torch.log(pi0), log_density)
    if recursive is not None:
        mean, var, eta, lls, trans = steps.online_recursive(ctx, *recursive, prior, data, cfg)
    else:
        mean, var, eta, lls = steps.online(ctx, trans, prior, data, cfg)
    ones = torch.ones_like(lls)
    history = [{"loglik": lls, "delta_eta": ones, "delta_mean": ones}]

    # 1. VEM iterations; a window that has converged is frozen (and left out of the computation), so its
    # result does not depend on the other windows of the batch
    active = torch.ones(B, dtype=torch.bool, device=device)
    iterations = torch.zeros(B, dtype=torch.long, device=device)
    last_ll = lls.clone()
    it = 0
    for it in range(1, cfg.max_iter + 1):
        idx = active.nonzero().squeeze(1)
        if len(idx) == B:
            def take(x):
                return x

            def put(x, part):
                return part
        else:
            def take(x, idx=idx):
                return x.index_select(0, idx)

            def put(x, part, idx=idx):
                return x.index_copy(0, idx, part)
        m = take(mean)
        sub = PriorContext(take(ctx.init), take(ctx.init_var), take(ctx.start), T, take(ctx.init_velocity),
                           None if ctx.history is None else take(ctx.history))
        if trans is None or (prior.driven and (prior.motion_updates is None or it <= prior.motion_updates)):
            prior.update_latents(sub, m)  # E-Z
            if trans is not None:
                trans = trans.put(idx, prior.linear_transition(sub, m))
        sub_trans = None if trans is None else trans.select(take)
        r_a, pi_a, new_m, new_v, new_e, ll, d_eta, d_mean = steps.iterate(  # M, E-S, E-W
            sub, sub_trans, prior, (take(obs), take(obs_mask), take(source_mask), take(log_density)),
            (m, take(var), take(eta), take(r), take(pi0)), take(r0), cfg,
        )
        # write back
        mean, var, eta = put(mean, new_m), put(var, new_v), put(eta, new_e)
        r, pi0, last_ll = put(r, r_a), put(pi0, pi_a), put(last_ll, ll)
        zeros = torch.zeros_like(last_ll)
        history.append({"loglik": last_ll.clone(), "delta_eta": put(zeros, d_eta), "delta_mean": put(zeros, d_mean)})
        iterations[idx] = it
        if it >= cfg.min_iter:
            done = (d_eta < cfg.tol) & (d_mean < cfg.tol_mean)
            active = active.index_copy(0, idx, ~done)
        if not bool(active.any()):
            break
    for name, value in (("mean", mean), ("var", var), ("eta", eta)):
        if not torch.isfinite(value).all():
            raise FloatingPointError(f"VEM produced non-finite {name}")
    return VEMResult(mean, var, eta, r, pi0, history, it, not bool(active.any()), iterations, ~active)


__all__ = ["VEMInput", "VEMResult", "VEMConfig", "run_vem"]
