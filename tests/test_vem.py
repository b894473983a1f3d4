"""The VEM engine (mixdvae.vem): E-W against the formula, the linear-Gaussian E-S against filterpy, masks, the
batched DVAE prior, and the fixed-source trackers (MixDVAE, VKF, GMM)."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch

from mixdvae.threet import score, synthetic_window
from mixdvae.vem import ConstantVelocityPrior, DVAEPrior, PriorContext, StaticPrior, VEMConfig, VEMInput, run_vem
from mixdvae.vem.assign import assignment_logits, detection_noise, m_step, normalise

pytestmark = pytest.mark.usefixtures("one_torch_thread")


class StandInDVAE(torch.nn.Module):
    """A tiny module with the DVAE contract of mixdvae.dvae: constant velocity in model coordinates, nudged by
    the first coordinates of z (so that E-Z visibly matters), fixed variance; encoder = a smoothed difference."""

    def __init__(self, z_dim: int = 2, var: float = 1e-3):
        super().__init__()
        self.config = {"model": "standin", "x_dim": 4, "z_dim": z_dim, "h_dim": 1}
        self.var = var
        self.gain = torch.nn.Parameter(torch.tensor(0.01))

    def init_state(self, batch_size, device=None):
        x0 = self.x0(batch_size).to(device)
        return (x0, torch.zeros(batch_size, 1, device=device))

    def x0(self, batch_size):
        return torch.tensor([0.0, 0.0, 0.4, 1.0]).expand(batch_size, 4).clone()

    def step(self, state, x_prev, z=None):
        x_pp, n = state
        vel = torch.where(n >= 2, x_prev - x_pp, torch.zeros_like(x_prev))
        mean = x_prev + vel
        if z is not None:
            mean = mean + self.gain * torch.nn.functional.pad(z[:, :2], (0, 2))
        var = torch.full_like(mean, self.var)
        return mean, var, (x_prev, n + 1)

    def encode(self, x):
        B, T, _ = x.shape
        d = torch.diff(x[..., :2], dim=1, prepend=x[:, :1, :2])
        return d, torch.full((B, T, 2), 0.1)


def random_batch(B=3, N=3, T=12, K=4, seed=0, p_missing=0.3):
    """Random windows: sources moving linearly, detections of each in shuffled slots, some missing, plus
    an empty frame and a fully padded slot."""
    g = torch.Generator().manual_seed(seed)
    start = torch.rand(B, N, 2, generator=g, dtype=torch.float64) * 400 + 100
    vel = (torch.rand(B, N, 2, generator=g, dtype=torch.float64) - 0.5) * 8
    size = torch.rand(B, N, 2, generator=g, dtype=torch.float64) * 40 + torch.tensor([30.0, 80.0], dtype=torch.float64)
    t = torch.arange(T, dtype=torch.float64).view(1, 1, T, 1)
    centres = start.unsqueeze(2) + vel.unsqueeze(2) * t
    truth = torch.cat([centres, size.unsqueeze(2).expand(B, N, T, 2)], dim=-1)  # (B, N, T, 4)
    obs = torch.ones(B, T, K, 4, dtype=torch.float64)
    mask = torch.zeros(B, T, K, dtype=torch.bool)
    for b in range(B):
        for tt in range(T):
            perm = torch.randperm(N, generator=g)
            for slot, n in enumerate(perm.tolist()):
                if tt == 0 or torch.rand(1, generator=g).item() > p_missing:
                    obs[b, tt, slot] = truth[b, n, tt] + torch.randn(4, generator=g, dtype=torch.float64)
                    mask[b, tt, slot] = True
    mask[:, T // 2] = False  # an empty frame everywhere
    init = truth[:, :, 0].clone()
    smask = torch.ones(B, N, T, dtype=torch.bool)
    area = torch.full((B,), 640.0 * 480.0, dtype=torch.float64)
    return VEMInput(obs, mask, init, smask, area), truth


# -- E-W -------------------------------------------------------------------------------------------------------


def test_assignment_matches_direct_numpy_formula():
    inp, truth = random_batch(B=2, N=3, T=5, K=4)
    g = torch.Generator().manual_seed(1)
    mean = truth + torch.randn(truth.shape, generator=g, dtype=torch.float64) * 3
    var = torch.rand(truth.shape, generator=g, dtype=torch.float64) * 5 + 0.1
    smask = inp.source_mask.clone()
    smask[1, 2, 3] = False  # a dead source in one frame
    r = torch.tensor([[0.1, 0.05, 0.15, 0.08], [0.05, 0.05, 0.05, 0.05]], dtype=torch.float64)
    pi0 = torch.tensor([0.02, 0.2], dtype=torch.float64)
    logd = torch.tensor([-20.0, -25.0], dtype=torch.float64)
    phi = detection_noise(inp.obs, r)
    for temperature in (1.0, 0.5):
        eta, _ = normalise(
            assignment_logits(inp.obs, phi, mean, var, smask, torch.log(pi0), logd, temperature), inp.obs_mask
        )
        o, p, m, v = (x.numpy() for x in (inp.obs, phi, mean, var))
        B, T, K, _ = o.shape
        N = m.shape[1]
        for b in range(B):
            for t in range(T):
                alive = [n for n in range(N) if smask[b, n, t]]
                for k in range(K):
                    if not inp.obs_mask[b, t, k]:
                        assert np.all(eta[b, t, k].numpy() == 0)
                        continue
                    w = np.zeros(N + 1)
                    w[0] = pi0[b].item() * math.exp(logd[b].item())
                    for n in alive:
                        gauss = np.prod(np.exp(-0.5 * (o[b, t, k] - m[b, n, t]) ** 2 / p[b, t, k])
                                        / np.sqrt(2 * np.pi * p[b, t, k]))
                        trace = np.exp(-0.5 * np.sum(v[b, n, t] / p[b, t, k]))
                        w[n + 1] = (1 - pi0[b].item()) / len(alive) * (gauss * trace) ** temperature
                    np.testing.assert_allclose(eta[b, t, k].numpy(), w / w.sum(), rtol=1e-9, atol=1e-12)


def test_assignments_sum_to_one_with_clutter_and_vanish_on_padding():
    inp, truth = random_batch(B=2, N=3, T=8, K=5)
    phi = detection_noise(inp.obs, torch.full((2, 4), 0.05, dtype=torch.float64))
    far = truth + 1e4  # sources far away: everything becomes clutter, still no NaN
    for mean in (truth, far):
        eta, loglik = normalise(
            assignment_logits(inp.obs, phi, mean, torch.ones_like(mean), inp.source_mask,
                              torch.log(torch.tensor([0.01, 0.01], dtype=torch.float64)),
                              torch.tensor([-24.0, -24.0], dtype=torch.float64)),
            inp.obs_mask,
        )
        assert torch.isfinite(eta).all() and torch.isfinite(loglik).all()
        sums = eta.sum(-1)
        assert torch.allclose(sums[inp.obs_mask], torch.ones(()).double())
        assert (sums[~inp.obs_mask] == 0).all()
    assert eta[..., 0][inp.obs_mask].min() > 0.99  # far sources: clutter takes all


def test_m_step_recovers_noise_scale_and_clutter_weight():
    g = torch.Generator().manual_seed(3)
    B, N, T, K = 1, 1, 4000, 2
    true_r = torch.tensor([0.1, 0.05, 0.2, 0.08], dtype=torch.float64)
    box = torch.tensor([300.0, 200.0, 40.0, 100.0], dtype=torch.float64)
    obs = box + torch.randn(B, T, K, 4, generator=g, dtype=torch.float64) * true_r * box[[2, 3, 2, 3]]
    eta = torch.zeros(B, T, K, N + 1, dtype=torch.float64)
    eta[..., 1] = 1.0
    eta[:, :, 1, :] = torch.tensor([0.25, 0.75], dtype=torch.float64)  # second slot: a quarter clutter
    mean = box.expand(B, N, T, 4)
    r, pi0 = m_step(eta, obs, torch.ones(B, T, K, dtype=torch.bool), mean, torch.zeros_like(mean),
                    (0.001, 1.0), (1e-4, 0.5))
    size = obs[..., [2, 3, 2, 3]]
    w = eta[..., 1:2]
    direct = (((obs - box) ** 2 / size**2) * w).sum(dim=(0, 1, 2)) / w.sum()
    assert torch.allclose(r[0], direct.sqrt(), rtol=1e-10)
    assert torch.allclose(r[0], true_r, rtol=0.3)  # noisy sizes in the denominator bias it a little
    assert pi0.item() == pytest.approx(0.125)
    r_shrunk, _ = m_step(eta, obs, torch.ones(B, T, K, dtype=torch.bool), mean, torch.zeros_like(mean),
                         (0.001, 1.0), (1e-4, 0.5), r_prior=torch.full((1, 4), 0.5, dtype=torch.float64),
                         prior_weight=1e9)
    assert torch.allclose(r_shrunk, torch.full((1, 4), 0.5, dtype=torch.float64), rtol=1e-4)


# -- E-S: the linear-Gaussian prior is an exact Kalman filter + RTS smoother -------------------------------


def test_constant_velocity_es_matches_filterpy_kalman_and_rts():
    from filterpy.kalman import KalmanFilter, rts_smoother

    g = torch.Generator().manual_seed(5)
    B, N, T = 2, 2, 15
    init = torch.tensor([[[100.0, 200.0, 40.0, 100.0], [300.0, 150.0, 30.0, 80.0]]] * B, dtype=torch.float64)
    init_var = torch.rand(B, N, 4, generator=g, dtype=torch.float64) * 10 + 1
    lam = torch.rand(B, N, T, 4, generator=g, dtype=torch.float64) * 0.5
    lam[:, :, 4:7] = 0.0  # missed frames: no pseudo-observation
    lam[0, 1, 10, 2] = 0.0  # a single missing coordinate
    y = init.unsqueeze(2) + torch.randn(B, N, T, 4, generator=g, dtype=torch.float64) * 5
    y = y + torch.arange(T, dtype=torch.float64).view(1, 1, T, 1) * 2
    info = lam * y
    prior = ConstantVelocityPrior(accel_std=0.02, size_accel_std=0.005, velocity_std=0.05, size_velocity_std=0.01)
    ctx = PriorContext(init, init_var, torch.zeros(B, N, dtype=torch.long), T)
    mean, var = prior.estimate(ctx, lambda t, pm, pv: (lam[:, :, t], info[:, :, t]))

    for b in range(B):
        for n in range(N):
            h = init[b, n, 3].item()
            kf = KalmanFilter(dim_x=8, dim_z=4)
            kf.F = np.eye(8)
            kf.F[np.arange(4), 4 + np.arange(4)] = 1.0
            kf.H = np.eye(4, 8)
            accel = np.array([0.02, 0.02, 0.005, 0.005]) * h
            vel = np.array([0.05, 0.05, 0.01, 0.01]) * h
            Q = np.zeros((8, 8))
            for d in range(4):
                Q[d, d], Q[d, 4 + d], Q[4 + d, d], Q[4 + d, 4 + d] = (accel[d] ** 2 * c for c in (0.25, 0.5, 0.5, 1))
            kf.Q = Q
            kf.x = np.concatenate([init[b, n].numpy(), np.zeros(4)])
            kf.P = np.diag(np.concatenate([init_var[b, n].numpy(), vel**2]))
            xs, ps = [], []
            for t in range(T):
                if t > 0:
                    kf.predict()
                lt = lam[b, n, t].numpy()
                seen = lt > 0
                if seen.any():
                    kf.update(y[b, n, t].numpy()[seen], R=np.diag(1.0 / lt[seen]), H=np.eye(4, 8)[seen])
                xs.append(kf.x.copy())
                ps.append(kf.P.copy())
            xs_s, ps_s, _, _ = rts_smoother(np.array(xs), np.array(ps), [kf.F] * T, [Q] * T)
            np.testing.assert_allclose(mean[b, n].numpy(), xs_s[:, :4], rtol=1e-8, atol=1e-7)
            np.testing.assert_allclose(var[b, n].numpy(), np.diagonal(ps_s, axis1=1, axis2=2)[:, :4],
                                       rtol=1e-7, atol=1e-7)

    filtered, fvar = ConstantVelocityPrior(accel_std=0.02, size_accel_std=0.005, smooth=False).estimate(
        ctx, lambda t, pm, pv: (lam[:, :, t], info[:, :, t]))
    assert torch.allclose(filtered[:, :, -1], mean[:, :, -1])  # the smoother ends on the filter
    assert (var[:, :, 5] <= fvar[:, :, 5] + 1e-9).all()  # smoothing never increases the variance


def test_variance_grows_and_motion_is_extrapolated_during_missed_detections():
    inp, truth = random_batch(B=1, N=1, T=30, K=1, p_missing=0.0)
    inp.obs_mask[:, 10:20] = False
    res = run_vem(inp, ConstantVelocityPrior(), VEMConfig(max_iter=5))
    v = res.var[0, 0, :, 0]
    assert v[14] > v[9] and v[14] > v[21]  # uncertain in the middle of the gap
    err = (res.mean[0, 0, 10:20, :2] - truth[0, 0, 10:20, :2]).abs().max()
    assert err < 0.15 * truth[0, 0, 0, 3]  # follows the motion through the gap


def test_dvae_prior_extrapolates_through_gaps_and_survives_a_wild_model():
    inp, truth = random_batch(B=2, N=1, T=30, K=1, p_missing=0.0)
    inp.obs_mask[:, 10:20] = False
    res = run_vem(inp, DVAEPrior(StandInDVAE(var=1e-5)), VEMConfig(max_iter=5))
    v = res.var[:, 0, :, 0]
    assert (v[:, 14] > v[:, 9]).all() and (v[:, 14] > v[:, 21]).all()
    err = (res.mean[:, 0, 10:20, :2] - truth[:, 0, 10:20, :2]).abs().max()
    assert err < 0.15 * truth[:, 0, 0, 3].min()

    class Wild(StandInDVAE):  # amplifies every increment and adds a push: far outside any training data
        def step(self, state, x_prev, z=None):
            mean, var, new = super().step(state, x_prev, z)
            return mean + 3 * (mean - x_prev) + 0.2, var * 1e-3, new

    inp.obs_mask[:, 20:] = False  # nothing to hold the sources at the end
    for transition in ("velocity", "drift"):
        res = run_vem(inp, DVAEPrior(Wild(), transition=transition, max_speed=0.5), VEMConfig(max_iter=10))
        assert torch.isfinite(res.mean).all() and torch.isfinite(res.var).all()
        step = (res.mean[:, 0, 1:, :2] - res.mean[:, 0, :-1, :2]).abs().max()
        assert step <= 0.5 * inp.init[:, 0, 3].max() + 1e-6  # bounded by max_speed


# -- masks: never a NaN --------------------------------------------------------------------------------------


@pytest.mark.parametrize("prior_name", ["static", "cv", "dvae"])
def test_masks_never_produce_nan(prior_name):
    inp, _ = random_batch(B=4, N=3, T=10, K=4, seed=2, p_missing=0.5)
    inp.obs_mask[1] = False  # a window without any detection
    inp.obs_mask[2, 3:] = False  # detections only at the start
    inp.source_mask[3, 2] = False  # a padded source
    inp.source_mask[3, 1, :4] = False  # a source born at frame 5 ...
    inp.source_mask[3, 0, 7:] = False  # ... and one dying at frame 7
    inp.source_mask[0] = False  # a window without sources
    prior = {"static": StaticPrior(), "cv": ConstantVelocityPrior(),
             "dvae": DVAEPrior(StandInDVAE(), z_mode="mean")}[prior_name]
    res = run_vem(inp, prior, VEMConfig(max_iter=4, min_iter=4))
    for x in (res.mean, res.var, res.eta, res.r, res.clutter_weight):
        assert torch.isfinite(x).all()
    assert (res.var > 0).all()
    sums = res.eta.sum(-1)
    assert torch.allclose(sums[inp.obs_mask], torch.ones(()).double())
    assert (sums[~inp.obs_mask] == 0).all()
    assert (res.eta[0, ..., 1:] == 0).all()  # no source: all clutter
    assert (res.eta[3, :, :, 3] == 0).all()  # the padded source takes nothing
    assert (res.eta[3, :4, :, 2] == 0).all() and (res.eta[3, 7:, :, 1] == 0).all()


# -- the DVAE prior: batched equals per window --------------------------------------------------------------


def _dvae_models():
    models = [("standin", StandInDVAE())]
    try:
        from mixdvae.dvae import SRNN
    except ImportError:  # pragma: no cover - the DVAE package is optional here
        return models
    torch.manual_seed(0)
    models.append(("srnn-random", SRNN({"z_dim": 4, "h_dim": 16, "dense_dim": 16, "embed_dim": 8})))
    return models


@pytest.mark.parametrize("z_mode", ["prior", "mean"])
@pytest.mark.parametrize("name,model", _dvae_models(), ids=lambda v: v if isinstance(v, str) else "")
def test_batched_dvae_equals_per_window_calls(name, model, z_mode):
    inp, _ = random_batch(B=3, N=3, T=10, K=4, seed=4)
    cfg = VEMConfig(max_iter=3, min_iter=3)
    prior = DVAEPrior(model, z_mode=z_mode)
    batched = run_vem(inp, prior, cfg)
    for b in range(3):
        one = VEMInput(inp.obs[b:b + 1], inp.obs_mask[b:b + 1], inp.init[b:b + 1], inp.source_mask[b:b + 1],
                       inp.area[b:b + 1])
        single = run_vem(one, DVAEPrior(model, z_mode=z_mode), cfg)
        torch.testing.assert_close(batched.mean[b:b + 1], single.mean, rtol=1e-5, atol=1e-4)
        torch.testing.assert_close(batched.eta[b:b + 1], single.eta, rtol=1e-5, atol=1e-5)


@pytest.mark.parametrize("z_mode", ["prior", "mean"])
def test_sequence_call_equals_stepping(z_mode):
    models = dict(_dvae_models())
    if "srnn-random" not in models:
        pytest.skip("mixdvae.dvae.SRNN not available")
    inp, _ = random_batch(B=2, N=3, T=10, K=4, seed=6)
    cfg = VEMConfig(max_iter=3, min_iter=3)
    a = run_vem(inp, DVAEPrior(models["srnn-random"], z_mode=z_mode, sequence_call=True), cfg)
    b = run_vem(inp, DVAEPrior(models["srnn-random"], z_mode=z_mode, sequence_call=False), cfg)
    torch.testing.assert_close(a.mean, b.mean, rtol=1e-5, atol=1e-4)


def _history_model():
    torch.manual_seed(0)
    from mixdvae.dvae import SRNN

    return SRNN({"z_dim": 4, "h_dim": 16, "dense_dim": 16, "embed_dim": 8, "history": 4})


def _track_context(boxes, length, past):
    """A PriorContext of the windows starting at ``boxes[:, :, past]`` with the ``past`` boxes before as history."""
    init = boxes[:, :, past]
    zeros = torch.zeros(init.shape[:2], dtype=torch.long)
    return PriorContext(init, torch.ones_like(init), zeros, length, history=boxes[:, :, :past])


def _walks(B=2, N=3, T=20, seed=5):
    g = torch.Generator().manual_seed(seed)
    start = torch.tensor([300.0, 200.0, 40.0, 100.0]) + 50 * torch.randn(B, N, 1, 4, generator=g).abs()
    steps = torch.randn(B, N, T, 4, generator=g) * torch.tensor([2.0, 1.0, 0.2, 0.4])
    return start + steps.cumsum(2)  # (B, N, T, 4)


def test_dvae_history_equals_running_the_model_over_past_and_window():
    pytest.importorskip("mixdvae.dvae")
    model, past, T = _history_model(), 8, 12
    boxes = _walks(T=past + T)
    prior = DVAEPrior(model)
    ctx = _track_context(boxes, T, past)
    warm, _ = prior._predictions(ctx, boxes[:, :, past:])  # (B, N, T, 4): the window after its past
    whole_ctx = PriorContext(ctx.init, ctx.init_var, ctx.start, past + T)  # the same reference box, no history
    whole, _ = prior._predictions(whole_ctx, boxes)  # one teacher-forced call over past and window
    torch.testing.assert_close(warm[:, :, 1:], whole[:, :, past + 1:], rtol=1e-5, atol=1e-4)
    cold, _ = prior._predictions(PriorContext(ctx.init, ctx.init_var, ctx.start, T), boxes[:, :, past:])
    assert not torch.allclose(warm[:, :, 1:], cold[:, :, 1:])  # the past changes the predictions
    # the first (recursive) pass reads the same past: its motion at frame 1 is the teacher-forced one's
    d1, v1 = prior._recursive_motion(ctx, None)(1, boxes[:, :, past])
    d_tf, v_tf = prior._motion(ctx, boxes[:, :, past:])
    torch.testing.assert_close(d1, d_tf[:, :, 1], rtol=1e-5, atol=1e-4)
    torch.testing.assert_close(v1, v_tf[:, :, 1], rtol=1e-5, atol=1e-4)


def test_dvae_history_skips_unknown_frames():
    pytest.importorskip("mixdvae.dvae")
    model, past, T = _history_model(), 8, 10
    boxes = _walks(T=past + T, seed=9)
    prior = DVAEPrior(model)
    window = boxes[:, :, past:]
    ctx = _track_context(boxes, T, past)
    ctx.history[0, 1, :5] = float("nan")  # a source known for the last 3 frames only
    ctx.history[1, 2] = float("nan")  # a source born in the last window: no past at all
    partial, _ = prior._predictions(ctx, window)
    short = _track_context(boxes[0:1, 1:2, 5:], T, 3)  # the same source given only its 3 known frames
    torch.testing.assert_close(partial[0, 1], prior._predictions(short, window[0:1, 1:2])[0][0, 0])
    no_past = PriorContext(ctx.init, ctx.init_var, ctx.start, T)
    cold, _ = prior._predictions(no_past, window)
    torch.testing.assert_close(partial[1, 2, 1:], cold[1, 2, 1:], rtol=1e-5, atol=1e-4)


def test_dvae_warm_state_reuses_the_last_calls_sources_exactly():
    pytest.importorskip("mixdvae.dvae")
    model, past, T = _history_model(), 8, 6
    boxes = _walks(B=2, N=4, T=past + T, seed=11)
    carried = _track_context(boxes[:, :3], T, past)  # pass 1: the carried sources
    both = _track_context(boxes, T, past)  # pass 2: the same, and one more appended
    both.history[:, 3, :6] = float("nan")
    prior = DVAEPrior(model)
    prior.warm_state(carried)
    calls = []
    advance = model.advance  # the warm-up advances the state without predicting (DVAE.advance)
    model.advance = lambda *a, **k: calls.append(1) or advance(*a, **k)
    reused = prior.warm_state(both)
    model.advance = advance
    assert len(calls) == 1 + 2  # the start step, then only the appended source's two known frames
    fresh = DVAEPrior(model).warm_state(both)
    for a, b in zip(reused, fresh, strict=True):
        torch.testing.assert_close(a, b)
    other = _track_context(boxes + 1.0, T, past)  # another past: nothing reused, still exact
    for a, b in zip(prior.warm_state(other), DVAEPrior(model).warm_state(other), strict=True):
        torch.testing.assert_close(a, b)


def test_windowed_tracking_hands_each_source_its_past():
    from mixdvae.vem.tracking import WindowConfig, WindowedTracking

    prior = DVAEPrior(StandInDVAE())
    seen = []
    recursive_transition = prior.recursive_transition

    def spy(ctx):  # the engine asks once per window for the first pass's transition
        seen.append(None if ctx.history is None else ctx.history.clone())
        return recursive_transition(ctx)

    prior.recursive_transition = spy
    frames = 40
    tracking = WindowedTracking(10.0, (640, 480), prior, VEMConfig(max_iter=1), WindowConfig(history_s=1.5))
    for t in range(frames):  # one target walking right, detected every frame
        tracking.push(np.array([[100.0 + 3 * t, 200.0, 40.0, 100.0, 1.0]]))
    tracking.finish()
    assert tracking.history.shape == (len(tracking.ids), 15, 4)
    last = seen[-1][0, 0]  # the last window's past of the target: the 15 frames before it, moving right
    assert torch.isfinite(last).all()
    assert torch.allclose(torch.diff(last[:, 0]), torch.tensor(3.0, dtype=last.dtype), atol=0.5)
    assert seen[0] is not None and seen[0].shape[2] == 15 and not torch.isfinite(seen[0]).any()  # born: no past
    off = WindowedTracking(10.0, (640, 480), prior, VEMConfig(max_iter=1), WindowConfig(history_s=0))
    assert off.history.shape == (0, 0, 4)
    vkf = WindowedTracking(10.0, (640, 480), ConstantVelocityPrior(), VEMConfig(max_iter=1), WindowConfig())
    assert vkf.history_frames == 0  # constant velocity does not read the past: none is carried


def test_dvae_prior_leaves_the_smooth_track_gate_off_unless_asked():
    models = dict(_dvae_models())
    if "srnn-random" not in models:
        pytest.skip("mixdvae.dvae.SRNN not available")
    torch.manual_seed(0)
    model = type(models["srnn-random"])({"z_dim": 4, "h_dim": 16, "dense_dim": 16, "embed_dim": 8, "history": 4})
    model.io.set_velocity_blend(0.5, model.config)
    model.io.set_smooth_gate(1.0, model.config)
    off, on = DVAEPrior(model), DVAEPrior(model, smooth_gate=True)
    assert off.model.io.smooth_gate == 0.0 and off.model.config["smooth_gate"] is None
    assert on.model is model and model.io.smooth_gate == 1.0  # the caller's model keeps its gate
    inp, _ = random_batch(B=2, N=2, T=12, K=3, seed=3)
    cfg = VEMConfig(max_iter=2, min_iter=2)
    assert not torch.allclose(run_vem(inp, off, cfg).mean, run_vem(inp, on, cfg).mean)


def test_dvae_prior_calls_the_model_once_per_step_with_all_sources():
    calls = []

    class Counting(StandInDVAE):
        def step(self, state, x_prev, z=None):
            calls.append(x_prev.shape[0])
            return super().step(state, x_prev, z)

    inp, _ = random_batch(B=5, N=3, T=7, K=3)
    run_vem(inp, DVAEPrior(Counting(), motion_updates=None), VEMConfig(max_iter=2, min_iter=2, tol=0))
    assert set(calls) == {15} and len(calls) == 3 * 7  # 3 passes x 7 steps, 15 = windows x sources
    calls.clear()
    run_vem(inp, DVAEPrior(Counting(), motion_updates=0), VEMConfig(max_iter=2, min_iter=2, tol=0))
    assert len(calls) == 7  # the first pass only: later iterations keep its motion


def test_sampled_latents_are_seeded():
    inp, _ = random_batch(B=2, N=3, T=8, K=3)
    cfg = VEMConfig(max_iter=3, min_iter=3)
    a = run_vem(inp, DVAEPrior(StandInDVAE(), z_mode="sample", seed=7, motion_updates=None), cfg).mean
    b = run_vem(inp, DVAEPrior(StandInDVAE(), z_mode="sample", seed=7, motion_updates=None), cfg).mean
    c = run_vem(inp, DVAEPrior(StandInDVAE(), z_mode="sample", seed=8, motion_updates=None), cfg).mean
    assert torch.equal(a, b) and not torch.equal(a, c)


# -- trackers --------------------------------------------------------------------------------------------------


def crossing_windows(count=4, length=60):
    return [synthetic_window(seed, length=length, crossing=True, miss_rate=0.15) for seed in range(count)]


def test_mixdvae_tracks_a_synthetic_three_target_crossing_without_id_switch():
    from mixdvae.trackers.vem import MixDVAETracker

    windows = crossing_windows()
    tracker = MixDVAETracker(model=StandInDVAE(), num_sources=3)
    results = tracker.track_windows(windows)
    s = score([w.gt for w in windows], results)
    assert s["IDSW"] == 0 and s["MOTA"] > 95


def test_mixdvae_with_the_shipped_prior_tracks_without_id_switch():
    from mixdvae.dvae import available_priors
    from mixdvae.trackers.vem import MixDVAETracker

    if "srnn_mot" not in available_priors():
        pytest.skip("the shipped prior data/priors/srnn_mot.pt is not there yet")
    windows = crossing_windows()
    results = MixDVAETracker(num_sources=3).track_windows(windows)
    s = score([w.gt for w in windows], results)
    assert s["IDSW"] == 0 and s["MOTA"] > 95


@pytest.mark.parametrize("name", ["vkf", "gmm"])
def test_baseline_trackers_run_and_report_every_source_every_frame(name):
    import mixdvae.trackers.vem  # noqa: F401
    from mixdvae.trackers import make_tracker

    window = crossing_windows(1, length=30)[0]
    tracker = make_tracker(name, None, num_sources=3)
    rows = tracker.track(window)
    assert rows.shape == (90, 6) and np.isfinite(rows).all()
    assert set(rows[:, 1].astype(int)) == {1, 2, 3}
    assert tracker.last_result.iterations >= 1


def test_vkf_tracks_the_synthetic_crossing_and_is_deterministic():
    from mixdvae.trackers.vem import VKFTracker

    windows = crossing_windows()
    a = VKFTracker(num_sources=3).track_windows(windows)
    b = VKFTracker(num_sources=3).track_windows(windows[::-1])[::-1]
    for x, y in zip(a, b):
        np.testing.assert_allclose(x, y, atol=1e-6)
    assert score([w.gt for w in windows], a)["IDSW"] == 0


def test_update_buffers_frames_and_matches_track_on_the_last_frame():
    from mixdvae.trackers.vem import VKFTracker

    window = crossing_windows(1, length=20)[0]
    tracker = VKFTracker(num_sources=3)
    full = tracker.track(window)
    tracker.reset(window.frame_rate, window.image_size)
    for f in range(1, window.length + 1):
        out = tracker.update(window.frame_detections(f))
    assert out.shape == (3, 5)
    last = full[full[:, 0] == window.length]
    np.testing.assert_allclose(out[np.argsort(out[:, 4]), :4], last[np.argsort(last[:, 1]), 2:6], atol=1e-6)


def test_from_config_accepts_base_and_prior_parameters(tmp_path):
    import mixdvae.trackers.vem  # noqa: F401
    from mixdvae.trackers import make_tracker

    path = tmp_path / "vkf.yaml"
    path.write_text("tracker: vkf\nnum_sources: 3\naccel_std: 0.003\nmax_iter: 5\nr: [0.1, 0.05, 0.15, 0.08]\n")
    tracker = make_tracker("vkf", path)
    assert tracker.config.max_iter == 5 and tracker.prior_args["accel_std"] == 0.003
    with pytest.raises(ValueError, match="unknown parameter"):
        make_tracker("vkf", None, no_such_thing=1)
    from mixdvae.trackers import GMMTracker, MixDVAETracker, VKFTracker

    with pytest.raises(ValueError, match="position_std"):
        VKFTracker(position_std=0.1)  # a GMM prior's argument, not the VKF's
    assert {"model", "z_mode", "r", "window_s"} <= MixDVAETracker.parameter_names()
    assert "device" in MixDVAETracker.parameter_names() and "model" not in VKFTracker.parameter_names()
    assert GMMTracker(position_std=0.2).prior.position_std == 0.2


def _crowded_logits(seed=3):
    """Logits (1, 2, 4, 3): four detections, two sources and clutter, source 1 favoured by every detection."""
    g = torch.Generator().manual_seed(seed)
    logits = torch.randn(1, 2, 4, 3, generator=g, dtype=torch.float64)
    logits[..., 1] += 4.0
    mask = torch.ones(1, 2, 4, dtype=torch.bool)
    mask[0, 1, 3] = False  # a padded slot
    return logits, mask


def test_exclusive_assignment_gives_each_source_at_most_one_detection():
    logits, mask = _crowded_logits()
    free, ll_free = normalise(logits, mask)
    assert free[..., 1].sum(dim=2).max() > 2.0  # the model's assignment: source 1 takes several detections
    eta, ll = normalise(logits, mask, exclusive=30)
    assert torch.allclose(eta.sum(-1)[mask], torch.ones(()).double())
    assert (eta[~mask] == 0).all()
    assert eta[..., 1:].sum(dim=2).max() <= 1.0 + 1e-6  # per frame and source
    assert eta[..., 0].sum() > free[..., 0].sum()  # the excess went to clutter
    assert torch.equal(ll, ll_free)


def test_one_detection_keeps_each_sources_mass_on_its_best_detection():
    logits, mask = _crowded_logits(seed=5)
    free, ll_free = normalise(logits, mask)
    eta, ll = normalise(logits, mask, one_detection=True)
    assert torch.allclose(eta.sum(-1)[mask], torch.ones(()).double())
    assert (eta[~mask] == 0).all()
    src = eta[..., 1:]  # (1, T, K, N)
    assert ((src > 0).sum(dim=2) <= 1).all()  # one detection per source and frame
    best = free[..., 1:].masked_fill(~mask.unsqueeze(-1), -1.0).argmax(dim=2)  # (1, T, N)
    kept = torch.gather(src, 2, best.unsqueeze(2)).squeeze(2)
    assert (kept > 0).all()  # it is the detection that the model's posterior prefers
    assert eta[..., 0].sum() > free[..., 0].sum()
    assert torch.equal(ll, ll_free)


def test_var_cap_bounds_the_predictive_variance_in_units_of_the_detection_noise():
    inp, truth = random_batch(B=1, N=2, T=1, K=3)
    phi = detection_noise(inp.obs, torch.full((1, 4), 0.1, dtype=torch.float64))
    var = torch.full_like(truth, 1e6)  # sources unobserved for long: hugely uncertain
    args = (torch.log(torch.tensor([0.01], dtype=torch.float64)), torch.tensor([-24.0], dtype=torch.float64))
    capped = assignment_logits(inp.obs, phi, truth, var, inp.source_mask, *args, predictive=True, var_cap=4.0)
    # the same as a variance of exactly 4 Phi for every detection-source pair
    o, p, m = inp.obs[:, :, :, None], phi[:, :, :, None], truth.transpose(1, 2)[:, :, None]
    s = 5.0 * p
    expected = -0.5 * (((o - m) ** 2 / s).sum(-1) + torch.log(s).sum(-1) + 4 * math.log(2 * math.pi))
    expected = expected + math.log(0.99 / 2)
    mask = inp.obs_mask[0, 0]
    assert torch.allclose(capped[0, 0, mask, 1:], expected[0, 0, mask])
    free = assignment_logits(inp.obs, phi, truth, var, inp.source_mask, *args, predictive=True)
    assert (free[0, 0, mask, 1:] < capped[0, 0, mask, 1:]).all()  # unbounded: the sources claim nothing
