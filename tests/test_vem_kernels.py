"""The Numba kernels of the VEM (mixdvae.vem.kernels) against the torch reference, on random inputs with masks,
sources that start mid-window, dead and padded sources, empty frames and windows without detections."""

from __future__ import annotations

import pytest
import torch

from mixdvae.vem import ConstantVelocityPrior, DVAEPrior, StaticPrior, VEMConfig, VEMInput, kernels, run_vem
from mixdvae.vem.assign import assignment_logits, detection_noise, m_step, normalise, pseudo_observations
from mixdvae.vem.backends import TorchSteps, numba_steps
from mixdvae.vem.priors import LinearTransition, PriorContext, velocity_filter_smooth

TIGHT = {"rtol": 1e-9, "atol": 1e-9}


def _np(x):
    return x.contiguous().numpy()


def random_input(B=3, N=4, T=9, K=5, seed=0) -> VEMInput:
    """Boxes near random sources (some detections clutter), a frame without detections, a window without any,
    sources starting mid-window (one at the last frame), a source that dies, a padded source."""
    g = torch.Generator().manual_seed(seed)

    def rand(*shape):
        return torch.rand(*shape, generator=g, dtype=torch.float64)

    centre = rand(B, N, 1, 2) * 300 + 50 + torch.arange(T).view(1, 1, T, 1) * (rand(B, N, 1, 2) - 0.5) * 6
    size = rand(B, N, 1, 2) * 30 + torch.tensor([20.0, 60.0], dtype=torch.float64)
    truth = torch.cat([centre, size.expand(B, N, T, 2)], dim=-1)  # (B, N, T, 4)
    pick = torch.randint(0, N, (B, T, K), generator=g)
    obs = truth.transpose(1, 2).gather(2, pick.unsqueeze(-1).expand(B, T, K, 4)) + torch.randn(
        B, T, K, 4, generator=g, dtype=torch.float64) * 3
    clutter = rand(B, T, K) < 0.2
    obs = torch.where(clutter.unsqueeze(-1), rand(B, T, K, 4) * torch.tensor([400.0, 400, 50, 100]) + 5, obs)
    obs_mask = rand(B, T, K) < 0.8
    obs_mask[:, T // 2] = False  # an empty frame
    obs_mask[1] = False  # a window without detections
    source_mask = torch.ones(B, N, T, dtype=torch.bool)
    source_mask[0, 1, :3] = False  # starts at frame 3
    source_mask[0, 2, : T - 1] = False  # starts at the last frame
    source_mask[2, 0, 5:] = False  # dies at frame 5
    source_mask[2, N - 1] = False  # a padded source
    init = truth[:, :, 0] + torch.randn(B, N, 4, generator=g, dtype=torch.float64)
    velocity = (rand(B, N, 4) - 0.5) * 2
    area = torch.full((B,), 640.0 * 480.0, dtype=torch.float64)
    return VEMInput(obs, obs_mask, init, source_mask, area, velocity)


def context(inp: VEMInput) -> PriorContext:
    T = inp.obs.shape[1]
    frames = torch.arange(T).view(1, 1, T)
    start = torch.where(inp.source_mask, frames, torch.full_like(frames, T)).min(dim=2).values
    start = torch.where(inp.source_mask.any(dim=2), start, torch.zeros_like(start))
    r = torch.tensor([0.1, 0.05, 0.15, 0.08], dtype=torch.float64)
    init_var = (r * torch.cat([inp.init[..., 2:], inp.init[..., 2:]], -1)) ** 2
    return PriorContext(inp.init, init_var, start, T, inp.init_velocity)


def random_transition(ctx: PriorContext, per_frame: bool, seed=1) -> LinearTransition:
    g = torch.Generator().manual_seed(seed)
    B, N, _ = ctx.init.shape
    shape = (B, N, ctx.length if per_frame else 1, 4)

    def rand():
        return torch.rand(*shape, generator=g, dtype=torch.float64)

    f = 0.2 + 0.8 * rand()
    k = (rand() - 0.5) * 4
    q22 = rand() + 0.1
    q11 = q22 * (0.3 + rand())
    q12 = torch.sqrt(q11 * q22) * (rand() - 0.5)
    return LinearTransition(f, k, q11, q12, q22, rand()[:, :, 0] + 0.5)


def _args(ctx, trans):
    terms = torch.broadcast_tensors(*trans.terms)
    return [_np(x) for x in (ctx.init, ctx.init_velocity, ctx.init_var, trans.velocity_var, ctx.start, *terms)]


@pytest.mark.parametrize("smooth", [True, False])
@pytest.mark.parametrize("per_frame", [True, False])
def test_filter_smoother_matches_torch(smooth, per_frame):
    inp = random_input()
    ctx = context(inp)
    trans = random_transition(ctx, per_frame)
    phi = detection_noise(inp.obs, torch.full((3, 4), 0.1, dtype=torch.float64))
    eta, _ = normalise(assignment_logits(inp.obs, phi, inp.init.unsqueeze(2).expand(-1, -1, 9, -1),
                                         torch.full((3, 4, 9, 4), 10.0, dtype=torch.float64), inp.source_mask,
                                         torch.log(torch.full((3,), 0.1, dtype=torch.float64)),
                                         torch.full((3,), -20.0, dtype=torch.float64)), inp.obs_mask)
    lam, info = pseudo_observations(eta, inp.obs, phi)
    assert (lam == 0).any() and (lam > 0).any()  # frames with and without an assigned detection

    def fixed(t, pred_m, pred_v):
        return lam[:, :, t], info[:, :, t]

    ref = velocity_filter_smooth(ctx, fixed, trans.at, trans.velocity_var, smooth)
    out = kernels.filter_smooth(*_args(ctx, trans), _np(lam), _np(info), smooth)
    for a, b in zip(out, ref, strict=True):
        torch.testing.assert_close(torch.from_numpy(a), b, **TIGHT)


@pytest.mark.parametrize("exclusive,one_detection,gate", [(0, False, None), (3, False, 30.0), (0, True, 2.0),
                                                           (2, True, None), (3, False, 2.0)])
def test_assignment_m_step_and_pseudo_observations_match_torch(exclusive, one_detection, gate):
    inp = random_input(seed=3)
    g = torch.Generator().manual_seed(4)
    mean = inp.init.unsqueeze(2) + torch.randn(3, 4, 9, 4, generator=g, dtype=torch.float64) * 5
    var = torch.rand(3, 4, 9, 4, generator=g, dtype=torch.float64) * 20 + 0.1
    r = torch.rand(3, 4, generator=g, dtype=torch.float64) * 0.2 + 0.02
    phi = detection_noise(inp.obs, r)
    log_pi = torch.log(torch.tensor([0.01, 0.2, 0.05], dtype=torch.float64))
    log_density = torch.full((3,), -2 * torch.log(torch.tensor(640.0 * 480.0)).item(), dtype=torch.float64)
    logits = assignment_logits(inp.obs, phi, mean, var, inp.source_mask, log_pi, log_density, 1.25, gate=gate)
    eta, loglik = normalise(logits, inp.obs_mask, exclusive, one_detection)
    out_eta, out_ll = kernels.assign(_np(inp.obs), _np(inp.obs_mask), _np(phi), _np(mean), _np(var),
                                     _np(inp.source_mask), _np(log_pi), _np(log_density), 1.25, exclusive,
                                     one_detection, -1.0 if gate is None else gate)
    torch.testing.assert_close(torch.from_numpy(out_eta), eta, **TIGHT)
    torch.testing.assert_close(torch.from_numpy(out_ll), loglik, **TIGHT)
    for a, b in zip(kernels.pseudo_observations(_np(eta), _np(inp.obs), _np(phi)),
                    pseudo_observations(eta, inp.obs, phi), strict=True):
        torch.testing.assert_close(torch.from_numpy(a), b, **TIGHT)
    r0 = torch.full((3, 4), 0.1, dtype=torch.float64)
    for weight in (0.0, 10.0):
        ref = m_step(eta, inp.obs, inp.obs_mask, mean, var, (0.02, 0.3), (1e-4, 0.5), r0, weight)
        out = kernels.m_step(_np(eta), _np(inp.obs), _np(inp.obs_mask), _np(mean), _np(var), 0.02, 0.3, 1e-4, 0.5,
                             _np(r0), weight)
        for a, b in zip(out, ref, strict=True):
            torch.testing.assert_close(torch.from_numpy(a), b, **TIGHT)


@pytest.mark.parametrize("var_cap,exclusive,one_detection,gate", [(None, 0, False, None), (2.0, 3, False, 30.0),
                                                                  (1.0, 0, True, 2.0), (None, 3, False, 2.0)])
def test_filtering_pass_matches_torch(var_cap, exclusive, one_detection, gate):
    inp = random_input(seed=5)
    ctx = context(inp)
    trans = random_transition(ctx, per_frame=True, seed=6)
    phi = detection_noise(inp.obs, torch.full((3, 4), 0.1, dtype=torch.float64))
    data = (inp.obs, inp.obs_mask, phi, inp.source_mask, torch.log(torch.full((3,), 0.02, dtype=torch.float64)),
            torch.full((3,), -25.0, dtype=torch.float64))
    cfg = VEMConfig(var_cap=var_cap, exclusive=exclusive, one_detection=one_detection, temperature=1.25, gate=gate)
    prior = ConstantVelocityPrior()
    ref = TorchSteps().online(ctx, trans, prior, data, cfg)
    out = numba_steps().online(ctx, trans, prior, data, cfg)
    for a, b in zip(out, ref, strict=True):
        torch.testing.assert_close(a, b, **TIGHT)


class LinearDVAE(torch.nn.Module):
    """A DVAE stand-in with the stepping contract and a teacher-forced sequence call: constant velocity in model
    coordinates, a fixed variance, z nudging the prediction (so that E-Z matters)."""

    config = {"model": "linear", "x_dim": 4, "z_dim": 4, "h_dim": 1}

    def x0(self, batch_size):
        return torch.tensor([0.0, 0.0, 0.4, 1.0]).expand(batch_size, 4).clone()

    def init_state(self, batch_size, device=None):
        return self.x0(batch_size), torch.zeros(batch_size, 1)

    def step(self, state, x_prev, z=None):
        x_pp, n = state
        mean = x_prev + torch.where(n >= 2, x_prev - x_pp, torch.zeros_like(x_prev)) + (0 if z is None else 0.01 * z)
        return mean, torch.full_like(mean, 1e-3), (x_prev, n + 1)

    def predict_sequence(self, x, z=None):
        prev = torch.cat([x[:, :1], x[:, :-1]], 1)
        prev2 = torch.cat([x[:, :1], x[:, :1], x[:, :-2]], 1)
        mean = 2 * prev - prev2 + (0 if z is None else 0.01 * z)
        return {"mean": mean, "var": torch.full_like(mean, 1e-3)}

    def encode(self, x):
        d = torch.diff(x, dim=1, prepend=x[:, :1])
        return d, torch.full_like(d, 0.1)


@pytest.mark.parametrize("prior", [ConstantVelocityPrior(), DVAEPrior(LinearDVAE()),
                                   DVAEPrior(LinearDVAE(), motion_updates=2)], ids=["cv", "dvae", "dvae-driven-twice"])
def test_run_vem_numba_matches_torch_with_windows_converging_apart(prior):
    inp = random_input(seed=7)
    cfg = VEMConfig(max_iter=6, update_r=True, r=(0.1, 0.05, 0.15, 0.08), tol=1e-2, tol_mean=5e-2)
    ref = run_vem(inp, prior, cfg, backend="torch")
    out = run_vem(inp, prior, cfg, backend="numba")
    assert len(set(ref.window_iterations.tolist())) > 1  # some windows froze before others
    torch.testing.assert_close(out.window_iterations, ref.window_iterations)
    for name in ("mean", "var", "eta", "r", "clutter_weight"):
        torch.testing.assert_close(getattr(out, name), getattr(ref, name), rtol=1e-8, atol=1e-8)


@pytest.mark.parametrize("backend", ["torch", "numba"])
def test_gating_zeroes_far_pairs_and_changes_nothing_else(backend):
    """In a wide scene most (detection, source) pairs are far apart: the default gate gives them exactly zero
    mass (more of them than float64 underflow would), and the whole VEM's results move by less than 1e-12
    against no gating; a tight gate changes them."""
    inp = random_input(B=3, N=12, T=8, K=12, seed=11)
    inp.obs[..., 0] *= 8  # spread the scene over 3,000 pixels so that most pairs are far apart
    inp.init[..., 0] *= 8
    inp.area[:] = 3200.0 * 480.0
    prior = ConstantVelocityPrior()
    gated = run_vem(inp, prior, VEMConfig(update_r=True), backend=backend)
    free = run_vem(inp, prior, VEMConfig(update_r=True, gate=None), backend=backend)
    real = inp.obs_mask.unsqueeze(-1).expand_as(gated.eta)[..., 1:]
    zeros, underflows = (gated.eta[..., 1:][real] == 0).sum(), (free.eta[..., 1:][real] == 0).sum()
    assert zeros > 0.5 * real.sum() and zeros > underflows + 50  # far pairs are gated, not only underflowing
    for name in ("mean", "var", "eta", "r", "clutter_weight"):
        torch.testing.assert_close(getattr(gated, name), getattr(free, name), rtol=1e-12, atol=1e-12)
    tight = run_vem(inp, prior, VEMConfig(update_r=True, gate=1.0), backend=backend)
    assert (tight.eta - free.eta).abs().max() > 1e-6


def test_auto_backend_and_priors_without_a_linear_transition():
    inp = random_input(seed=8)
    with pytest.raises(ValueError, match="linear transition"):
        run_vem(inp, StaticPrior(), backend="numba")
    with pytest.raises(ValueError, match="backend"):
        run_vem(inp, ConstantVelocityPrior(), backend="cuda")
    torch.testing.assert_close(run_vem(inp, StaticPrior()).mean, run_vem(inp, StaticPrior(), backend="torch").mean)


@pytest.mark.skipif(not torch.cuda.is_available(), reason="no CUDA device")
def test_cuda_runs_the_torch_path_and_matches_the_cpu():
    inp = random_input(seed=9)
    prior = ConstantVelocityPrior()
    gpu = run_vem(inp, prior, device="cuda")
    cpu = run_vem(inp, prior, backend="numba")
    torch.testing.assert_close(gpu.mean.cpu(), cpu.mean, rtol=1e-8, atol=1e-8)
    torch.testing.assert_close(gpu.eta.cpu(), cpu.eta, rtol=1e-8, atol=1e-8)
