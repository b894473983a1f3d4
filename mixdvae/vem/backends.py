"""The numeric steps of the VEM loop, in torch (any device; the reference) or in Numba kernels (CPU, float64).

:func:`mixdvae.vem.engine.run_vem` runs its loop (passes, iterations, frozen windows) once and hands the numeric
steps to one of these; both take and return torch tensors with the engine's shapes:

* ``online(ctx, trans, prior, data, cfg)``: the filtering pass on ``data = (obs, obs_mask, phi, source_mask,
  log_pi_clutter, log_density)``, each frame's assignment computed from the one-step prediction of the
  prior's filter with the :class:`~mixdvae.vem.priors.LinearTransition` ``trans``, then the smoother; returns
  mean, var (B, N, T, 4), eta (B, T, K, N + 1) and the log-likelihood (B,).
* ``online_recursive(ctx, transition, velocity_var, prior, data, cfg)``: the same with a transition
  ``transition(t, p, u)`` of the filtered state of frame t - 1 (the DVAE driven by its own estimates), called
  frame by frame; returns also the transitions it gave, as a ``LinearTransition`` (B, N, T, 4).
* ``iterate(ctx, trans, prior, data, state, r_prior, cfg)``: one VEM iteration (M-step, E-S, E-W) on
  ``data = (obs, obs_mask, source_mask, log_density)`` from ``state = (mean, var, eta, r, clutter_weight)``;
  returns r, clutter_weight, mean, var, eta, the log-likelihood and the changes of eta and of the means (B,).

:class:`NumbaSteps` compiles the kernels of :mod:`mixdvae.vem.kernels` on first use (cached on disk); only the
CPU in float64 runs them.
"""

from __future__ import annotations

import functools

import numpy as np
import torch

from mixdvae.vem.assign import assignment_logits, detection_noise, m_step, normalise, pseudo_observations
from mixdvae.vem.priors import LinearTransition, PriorContext, TrajectoryPrior, velocity_filter_smooth

BACKENDS = ("torch", "numba")


def online_pass(estimate, obs, obs_mask, phi, source_mask, log_pi_clutter, log_density, cfg):
    """The filtering pass in torch: ``estimate(pseudo) -> (mean, var)`` runs a prior's filter (and smoother)
    with a ``pseudo`` that assigns each frame's detections from the one-step prediction (predictive
    likelihood, ``cfg.var_cap``). Returns mean, var, eta (B, T, K, N + 1) and the log-likelihood (B,)."""
    B, T = obs.shape[:2]
    inv_phi = 1.0 / phi
    etas = [None] * T
    lls = [torch.zeros(B, dtype=obs.dtype, device=obs.device)]

    def online(t, pred_m, pred_v):
        logits = assignment_logits(
            obs[:, t : t + 1], phi[:, t : t + 1], pred_m.unsqueeze(2), pred_v.unsqueeze(2),
            source_mask[:, :, t : t + 1], log_pi_clutter, log_density, cfg.temperature, predictive=True,
            var_cap=cfg.var_cap, gate=cfg.gate,
        )
        eta_t, ll = normalise(logits, obs_mask[:, t : t + 1], cfg.exclusive, cfg.one_detection)
        etas[t] = eta_t
        lls[0] = lls[0] + ll
        w = eta_t[:, 0, :, 1:]  # (B, K, N)
        lam = torch.einsum("bkn,bkd->bnd", w, inv_phi[:, t])
        info = torch.einsum("bkn,bkd->bnd", w, obs[:, t] * inv_phi[:, t])
        return lam, info

    mean, var = estimate(online)
    return mean, var, torch.cat(etas, dim=1), lls[0]


class TorchSteps:
    """The steps as vectorised torch expressions over the batch (the prior's filter loops over frames). A prior
    without a linear transition (``trans`` None) runs its own :meth:`~TrajectoryPrior.estimate`."""

    name = "torch"

    def online(self, ctx: PriorContext, trans: LinearTransition | None, prior: TrajectoryPrior, data: tuple, cfg):
        def estimate(pseudo):
            if trans is None:
                return prior.estimate(ctx, pseudo, None)
            return velocity_filter_smooth(ctx, pseudo, trans.at, trans.velocity_var, prior.smooth)

        return online_pass(estimate, *data, cfg)

    def online_recursive(self, ctx: PriorContext, transition, velocity_var, prior: TrajectoryPrior, data: tuple,
                         cfg):
        record = Recorder(ctx, transition, velocity_var)

        def estimate(pseudo):
            return velocity_filter_smooth(ctx, pseudo, record, velocity_var, prior.smooth)

        return (*online_pass(estimate, *data, cfg), record.transition())

    def iterate(self, ctx: PriorContext, trans: LinearTransition | None, prior: TrajectoryPrior, data: tuple,
                state: tuple, r_prior, cfg):
        obs, obs_mask, source_mask, log_density = data
        mean, var, eta, r, clutter_weight = state
        if cfg.update_r or cfg.update_clutter:
            r_new, clutter_new = m_step(eta, obs, obs_mask, mean, var, cfg.r_bounds, cfg.clutter_bounds, r_prior,
                                        cfg.r_prior_weight)
            r = r_new if cfg.update_r else r
            clutter_weight = clutter_new if cfg.update_clutter else clutter_weight
        phi = detection_noise(obs, r)
        lam, info = pseudo_observations(eta, obs, phi)

        def fixed(t, pred_m, pred_v):
            return lam[:, :, t], info[:, :, t]

        if trans is None:
            new_mean, new_var = prior.estimate(ctx, fixed, (mean, var))
        else:
            new_mean, new_var = velocity_filter_smooth(ctx, fixed, trans.at, trans.velocity_var, prior.smooth)
        logits = assignment_logits(obs, phi, new_mean, new_var, source_mask, torch.log(clutter_weight), log_density,
                                   cfg.temperature, gate=cfg.gate)
        new_eta, loglik = normalise(logits, obs_mask, cfg.exclusive, cfg.one_detection)
        delta_eta = (new_eta - eta).abs().amax(dim=(1, 2, 3))
        height = ctx.ref_height.unsqueeze(2)  # (B, N, 1, 1)
        delta_mean = (((new_mean - mean) / height).abs() * source_mask.unsqueeze(-1)).amax(dim=(1, 2, 3))
        return r, clutter_weight, new_mean, new_var, new_eta, loglik, delta_eta, delta_mean


class Recorder:
    """A per-frame transition ``transition(t, p, u) -> (f, k, (q11, q12, q22))`` that keeps what it returns, so
    that :meth:`transition` gives it as a :class:`LinearTransition` (frame 0: identity, unused)."""

    def __init__(self, ctx: PriorContext, transition, velocity_var: torch.Tensor):
        self.fn = transition
        self.velocity_var = velocity_var
        self.shape = ctx.init.shape  # (B, N, 4)
        one = torch.ones(self.shape, dtype=ctx.init.dtype, device=ctx.init.device)
        self.frames = [(one, one * 0, one * 0, one * 0, one * 0)]

    def __call__(self, t: int, p: torch.Tensor, u: torch.Tensor):
        f, k, (q11, q12, q22) = self.fn(t, p, u)
        like = self.frames[0][0]
        self.frames.append(tuple(torch.as_tensor(x, dtype=like.dtype, device=like.device).expand(self.shape)
                                 for x in (f, k, q11, q12, q22)))
        return f, k, (q11, q12, q22)

    def transition(self) -> LinearTransition:
        """The transitions returned so far, (B, N, T, 4) each."""
        return LinearTransition(*(torch.stack(x, dim=2) for x in zip(*self.frames, strict=True)), self.velocity_var)


def _np(x: torch.Tensor) -> np.ndarray:
    """A C-contiguous NumPy view (or copy) of a CPU tensor."""
    x = x.detach()
    return x.numpy() if x.is_contiguous() else x.contiguous().numpy()


def _bound(value: float | None) -> float:
    """An optional positive bound (``cfg.var_cap``, ``cfg.gate``) for the kernels: negative for None (no bound)."""
    return -1.0 if value is None else float(value)


def _initial(ctx: PriorContext, trans: LinearTransition) -> list[np.ndarray]:
    """Initial box, velocity, box variance, velocity variance (B, N, 4), start (B, N) and the transition's
    ``f, k, q11, q12, q22`` (B, N, T or 1, 4), as NumPy arrays."""
    arrays = [ctx.init, ctx.init_velocity, ctx.init_var, trans.velocity_var, ctx.start]
    return [_np(x) for x in (*arrays, *torch.broadcast_tensors(*trans.terms))]


class NumbaSteps:
    """The steps as the Numba kernels of :mod:`mixdvae.vem.kernels` (CPU tensors, float64, a linear transition)."""

    name = "numba"

    def __init__(self):
        from mixdvae.vem import kernels  # compiles (or loads the cached kernels) on first use

        self.kernels = kernels

    def online(self, ctx: PriorContext, trans: LinearTransition, prior: TrajectoryPrior, data: tuple, cfg):
        obs, obs_mask, phi, source_mask, log_pi_clutter, log_density = data
        out = self.kernels.online_filter_smooth(
            *_initial(ctx, trans), _np(obs), _np(obs_mask), _np(phi), _np(source_mask), _np(log_pi_clutter),
            _np(log_density), float(cfg.temperature), _bound(cfg.var_cap), _bound(cfg.gate), int(cfg.exclusive),
            bool(cfg.one_detection), bool(prior.smooth),
        )
        return tuple(torch.from_numpy(x) for x in out)

    def online_recursive(self, ctx: PriorContext, transition, velocity_var, prior: TrajectoryPrior, data: tuple,
                         cfg):
        obs, obs_mask, phi, source_mask, log_pi_clutter, log_density = (_np(x) for x in data)
        B, T, K, _ = obs.shape
        N = ctx.init.shape[1]
        first = [_np(x) for x in (ctx.init, ctx.init_velocity, ctx.init_var, velocity_var, ctx.start)]
        state = self.kernels.initial_state(*first[:4])
        pred, filt = np.empty((B, N, 4, T, 5)), np.empty((B, N, 4, T, 5))
        eta, loglik = np.empty((B, T, K, N + 1)), np.zeros(B)
        terms = np.zeros((5, B, N, T, 4))
        terms[0] = 1.0
        var_cap, gate = _bound(cfg.var_cap), _bound(cfg.gate)
        for t in range(T):
            if t > 0:  # the transition from the filtered state of frame t - 1
                f, k, (q11, q12, q22) = transition(t, torch.from_numpy(state[..., 0]), torch.from_numpy(state[..., 1]))
                for i, x in enumerate((f, k, q11, q12, q22)):
                    terms[i, :, :, t] = x.numpy() if isinstance(x, torch.Tensor) else x
            loglik += self.kernels.online_frame(
                t, state, pred, filt, eta, *first, *terms, obs, obs_mask, phi, source_mask, log_pi_clutter,
                log_density, float(cfg.temperature), var_cap, gate, int(cfg.exclusive),
                bool(cfg.one_detection),
            )
        mean, var = self.kernels.smooth_states(pred, filt, terms[0], first[4], bool(prior.smooth))
        trans = LinearTransition(*(torch.from_numpy(x) for x in terms), velocity_var)
        return torch.from_numpy(mean), torch.from_numpy(var), torch.from_numpy(eta), torch.from_numpy(loglik), trans

    def iterate(self, ctx: PriorContext, trans: LinearTransition, prior: TrajectoryPrior, data: tuple,
                state: tuple, r_prior, cfg):
        out = self.kernels.iterate(
            *(_np(x) for x in (*data, *state[3:], r_prior)), *_initial(ctx, trans), *(_np(x) for x in state[:3]),
            bool(cfg.update_r), bool(cfg.update_clutter), *(float(x) for x in (*cfg.r_bounds, *cfg.clutter_bounds)),
            float(cfg.r_prior_weight), float(cfg.temperature), _bound(cfg.gate), int(cfg.exclusive),
            bool(cfg.one_detection), bool(prior.smooth),
        )
        return tuple(torch.from_numpy(x) for x in out)


@functools.cache
def numba_steps() -> NumbaSteps:
    """The one :class:`NumbaSteps` of the process."""
    return NumbaSteps()


def select(backend: str | None, device: torch.device, dtype: torch.dtype, linear: bool) -> TorchSteps | NumbaSteps:
    """The steps for ``backend``: ``"torch"``, ``"numba"``, or None: Numba on the CPU in float64 for a prior with
    a linear transition (``linear``), torch otherwise."""
    if backend not in (*BACKENDS, None):
        raise ValueError(f"backend must be one of {BACKENDS} or None, got {backend!r}")
    numba_ok = device.type == "cpu" and dtype == torch.float64 and linear
    if backend == "numba" and not numba_ok:
        raise ValueError(f"the numba backend runs on the CPU in float64 with a prior that has a linear transition, "
                         f"not on {device} in {dtype} (linear transition: {linear})")
    return numba_steps() if backend == "numba" or (backend is None and numba_ok) else TorchSteps()
