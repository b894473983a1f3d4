"""MixDVAE source separation (mixdvae.audio.separate) and tools/separate.py: the E-W and posterior formulas, the
stacked priors against the priors' own code, batching, a synthetic two-source separation with tiny priors trained
here, the baselines and every bad input of the tool."""

from __future__ import annotations

import json
import math

import numpy as np
import pytest
import soundfile
import torch

from mixdvae.audio import STFT, write_audio
from mixdvae.audio.enhance import NMFBasis, learn_nmf_basis, load_speech_prior
from mixdvae.audio.metrics import si_sdr
from mixdvae.audio.separate import (
    STACKS,
    SeparateConfig,
    SourceBank,
    StackedDKF,
    StackedRVAE,
    _adapted_bases,
    _level_scales,
    _refined_masks,
    _stack_bases,
    additive_posterior,
    e_w,
    exact_inference_separate,
    load_sources,
    m_equaliser,
    marginal_w,
    mixture_cost,
    nmf_separate,
    oracle_separate,
    output_mask,
    per_bin_posterior,
    posterior_power,
    separate,
    source_label,
)
from mixdvae.audio.stft import segment_starts
from mixdvae.dvae import DKF, RVAE, SRNN, load_prior
from mixdvae.dvae.training import SpectrogramData, power_frames, train_prior
from mixdvae.errors import ConfigError, DataNotFoundError, UsageError
from tests.conftest import write_bad_audio
from tests.tools_loader import load_tool

RATE = 16000
SMALL = STFT(128, 64)  # 65 bins, 250 frames per second: the synthetic separation runs on a small front end


pytestmark = pytest.mark.usefixtures("one_torch_thread")


def tiny_srnn(bins: int, seed: int, **extra) -> SRNN:
    torch.manual_seed(seed)
    gen = torch.Generator().manual_seed(seed)
    return SRNN({"x_dim": bins, "z_dim": 3, "h_dim": 8, "dense_dim": 16, "embed_dim": 8,
                 "likelihood": "itakura_saito", "param": "log_power", "logvar_range": [-20.0, 20.0],
                 "x_mean": (torch.randn(bins, generator=gen) - 6).tolist(),
                 "x_std": (torch.rand(bins, generator=gen) + 1).tolist(), **extra}).eval()


# --------------------------------------------------------------------------------------------------------------
# formulas


def test_e_w_equals_its_formula():
    gen = np.random.default_rng(0)
    x = gen.normal(size=(4, 6)) + 1j * gen.normal(size=(4, 6))
    a = gen.uniform(0, 1, size=(3, 4, 6))
    v_phi = gen.uniform(0.01, 0.5, size=(3, 4, 6))
    vx = 0.03 * np.abs(x) ** 2
    mu = a * x
    log_eta = -np.log(vx) - (np.abs(x - mu) ** 2 + v_phi) / vx
    expected = np.exp(log_eta - log_eta.max(0)) / np.exp(log_eta - log_eta.max(0)).sum(0)
    eta = e_w(*(torch.tensor(t) for t in (a, v_phi, np.abs(x) ** 2, vx)))
    np.testing.assert_allclose(eta.numpy(), expected, rtol=1e-10)
    np.testing.assert_allclose(eta.sum(0).numpy(), 1.0)


def test_marginal_assignment_equals_bayes_rule_on_one_bin():
    """p(w = n | x) ∝ p(x | w = n) with s integrated out: x | w = n ~ N_c(0, v_n + v_x), checked against a
    numerical integral of N_c(x; s, v_x) N_c(s; 0, v_n) over a grid of the complex plane."""
    x, vx = 0.9 + 0.4j, 0.05
    v = np.array([0.8, 4.0, 0.01])
    grid = np.linspace(-6, 6, 1201)
    re, im = np.meshgrid(grid, grid, indexing="ij")
    s = re + 1j * im
    cell = (grid[1] - grid[0]) ** 2
    likelihood = np.array([(np.exp(-np.abs(x - s) ** 2 / vx) / (np.pi * vx)
                            * np.exp(-np.abs(s) ** 2 / vn) / (np.pi * vn)).sum() * cell for vn in v])
    eta = marginal_w(torch.tensor(v), torch.tensor(abs(x) ** 2, dtype=torch.float64),
                     torch.tensor(vx, dtype=torch.float64))
    np.testing.assert_allclose(eta.numpy(), likelihood / likelihood.sum(), rtol=1e-4)
    assert int(eta.argmax()) == 0  # |x|^2 ~ 1: the source of variance 0.8 explains it best, not 4.0 or 0.01


def test_per_bin_posterior_equals_the_closed_form_on_one_bin():
    """q(s) ∝ exp(-eta |x - s|^2 / v_x) N_c(s; 0, v), integrated numerically on a grid of the complex plane."""
    x, v, vx, eta = 0.8 - 0.5j, 0.6, 0.2, 0.7
    grid = np.linspace(-4, 4, 801)
    re, im = np.meshgrid(grid, grid, indexing="ij")
    s = re + 1j * im
    density = np.exp(-eta * np.abs(x - s) ** 2 / vx - np.abs(s) ** 2 / v)
    density /= density.sum()
    mean = (density * s).sum()
    variance = (density * np.abs(s - mean) ** 2).sum()
    vx_t = torch.tensor(vx, dtype=torch.float64)
    a, v_phi = per_bin_posterior(torch.tensor([v]), torch.tensor([eta]), vx_t)
    np.testing.assert_allclose(complex(a[0] * x), mean, rtol=1e-6)
    np.testing.assert_allclose(float(v_phi[0]), variance, rtol=1e-4)
    a1, _ = per_bin_posterior(torch.tensor([v]), torch.tensor([1.0]), vx_t)  # eta = 1: Wiener gain
    np.testing.assert_allclose(float(a1[0]), v / (v + vx), rtol=1e-12)


def test_additive_posterior_equals_gaussian_conditioning():
    v = np.array([0.5, 1.5, 0.2])
    vx = 0.1
    # s ~ N(0, diag v), x = sum s + e: E[s | x] = C_sx / C_xx x, Var[s_n | x] = v_n - v_n^2 / C_xx
    c_xx = v.sum() + vx
    a, v_phi = additive_posterior(torch.tensor(v), torch.tensor(vx, dtype=torch.float64))
    np.testing.assert_allclose(a.numpy(), v / c_xx, rtol=1e-12)
    np.testing.assert_allclose(v_phi.numpy(), v - v**2 / c_xx, rtol=1e-12)


def test_segments_cover_the_signal_without_padding():
    assert segment_starts(40, 50, 25) == [0]
    assert segment_starts(120, 50, 25) == [0, 25, 50, 70]
    assert segment_starts(120, 0, 0) == [0]


def test_config_is_validated():
    for bad in ({"iterations": 0}, {"rho": 0.0}, {"sampling": "uniform"}, {"mixture": "sum"},
                {"segment": 10, "overlap": 10}, {"temperature": 2.0}, {"unknown": 1}, {"average": 0},
                {"assignment": "hard"}, {"output": "mask"}, {"output": []}, {"output": ["posterior", "mask"]},
                {"mask_exponent": 0.0}, {"equalise": -1}, {"equalise": (0, -2)}, {"passes": 0}, {"adapt": -1},
                {"passes": 2}, {"passes": 2, "adapt": (0, 0)}, {"passes": 2, "adapt": 8, "init": "reconstruction"},
                {"output": "assignment"}, {"mask_exponent": 2.0}, {"assignment": "mean_field", "mixture": "additive"}):
        with pytest.raises((ConfigError, TypeError)):
            SeparateConfig(**bad)
    per_bin = SeparateConfig(mixture="per_bin", output=["posterior", "assignment"])
    assert per_bin.output == ("posterior", "assignment")


def test_rho_defaults_to_the_mixture_models_own_and_per_bin_settings_name_their_mixture():
    """Each mixture model gets the rho measured best for it unless one is given; the per_bin assignment and mask
    settings are refused with the additive mixture (they would be ignored), naming the keys."""
    assert SeparateConfig().mixture == "additive"
    assert SeparateConfig().rho == SeparateConfig.RHO["additive"] != SeparateConfig.RHO["per_bin"]
    assert SeparateConfig(mixture="per_bin").rho == SeparateConfig.RHO["per_bin"]
    assert SeparateConfig(mixture="per_bin", rho=0.1).rho == SeparateConfig(rho=0.1).rho == 0.1
    with pytest.raises(ConfigError, match="output, mask_exponent act on the per_bin mixture only"):
        SeparateConfig(output="posterior", mask_exponent=2.0)


def test_output_masks_one_for_all_or_one_per_source():
    gen = torch.Generator().manual_seed(0)
    a, eta = torch.rand(3, 4, 7, generator=gen), torch.softmax(torch.randn(3, 4, 7, generator=gen), 0)
    v, P, vx = torch.rand(3, 4, 7, generator=gen), torch.rand(4, 7, generator=gen), torch.rand(4, 7, generator=gen)
    power = posterior_power(v, eta, P, vx)
    masks = (a, eta, v, P, vx)
    def per_bin(**settings):
        return SeparateConfig(mixture="per_bin", **settings)

    torch.testing.assert_close(output_mask(*masks, per_bin(output="assignment")), eta)
    torch.testing.assert_close(output_mask(*masks, per_bin(output="posterior")), a)
    torch.testing.assert_close(output_mask(*masks, per_bin()), power / power.sum(0))  # k = 1, the plain ratio
    sharp = per_bin(mask_exponent=2.0)
    torch.testing.assert_close(output_mask(*masks, sharp), power**2 / (power**2).sum(0))
    mixed = output_mask(*masks, per_bin(output=("posterior", "assignment", "power"), mask_exponent=1.0))
    torch.testing.assert_close(mixed, torch.stack([a[0], eta[1], (power / power.sum(0))[2]]))
    torch.testing.assert_close(output_mask(*masks, SeparateConfig(mixture="additive")), a)  # the Wiener gain


def test_posterior_power_equals_the_moments_of_the_exact_posterior_on_one_bin():
    """E[|s^n|^2 | x] under the per-bin model, by sampling the model and keeping draws whose mixture lands near x:
    for the assigned source the Wiener posterior's second moment, for the other its prior variance, mixed by the
    assignment posterior."""
    v, vx, x_power = torch.tensor([2.0, 0.5], dtype=torch.float64), torch.tensor(0.1, dtype=torch.float64), 1.0
    eta = marginal_w(v, torch.tensor(x_power, dtype=torch.float64), vx)
    gen = torch.Generator().manual_seed(0)
    n = 4_000_000
    w = torch.randint(0, 2, (n,), generator=gen)
    s = torch.complex(torch.randn(2, n, generator=gen, dtype=torch.float64),
                      torch.randn(2, n, generator=gen, dtype=torch.float64)) * (v.reshape(2, 1) / 2).sqrt()
    e = torch.complex(torch.randn(n, generator=gen, dtype=torch.float64),
                      torch.randn(n, generator=gen, dtype=torch.float64)) * math.sqrt(float(vx) / 2)
    x = s[w, torch.arange(n)] + e
    near = (x - 1.0).abs() < 0.05  # x close to 1 + 0j: |x|^2 = 1
    expected = (s[:, near].abs() ** 2).mean(1)
    power = posterior_power(v, eta, torch.tensor(x_power, dtype=torch.float64), vx)
    np.testing.assert_allclose(power.numpy(), expected.numpy(), rtol=0.05)


def test_one_output_mask_per_source_is_checked_against_the_priors():
    with pytest.raises(ConfigError, match="3 mask"):
        separate(_mixtures(1, 0.1, 1), [tiny_srnn(65, 1), tiny_srnn(65, 2)],
                 SeparateConfig(mixture="per_bin", output=("posterior",) * 3), setting=SMALL, bases=tiny_bases(65, 0))
    with pytest.raises(ConfigError, match="equalise names 3"):
        separate(_mixtures(1, 0.1, 1), [tiny_srnn(65, 1), tiny_srnn(65, 2)],
                 SeparateConfig(equalise=(0, 1, 1)), setting=SMALL, bases=tiny_bases(65, 0))


def test_equaliser_rounds_per_source_change_only_the_named_sources():
    """``equalise=(0, k)`` equalises the second source only: its result differs from no equaliser and from
    equalising both; ``(k, k)`` is ``k``."""
    priors, mixture = [tiny_srnn(65, 1), tiny_srnn(65, 2)], _mixtures(1, 0.1, 1)

    def run(equalise):
        return separate(mixture, priors, SeparateConfig(equalise=equalise, iterations=2), setting=SMALL,
                        bases=tiny_bases(65, 0)).sources[0]

    none, second, both = run(0), run((0, 3)), run(3)
    assert not np.allclose(second, none) and not np.allclose(second, both)
    np.testing.assert_array_equal(run((3, 3)), both)


def test_nmf_start_needs_one_basis_per_source_of_the_stft():
    priors, mixture = [tiny_srnn(65, 1), tiny_srnn(65, 2)], _mixtures(1, 0.1, 1)
    for bases, named in ((None, "got none"), (tiny_bases(65, 0, n=1), "got 1"), (tiny_bases(513, 0), "513")):
        with pytest.raises(UsageError, match=named):
            separate(mixture, priors, SeparateConfig(), setting=SMALL, bases=bases)
    result = separate(mixture, priors, SeparateConfig(init="reconstruction", iterations=1), setting=SMALL)
    assert np.isfinite(result.sources[0]).all()


# --------------------------------------------------------------------------------------------------------------
# stacked priors and batching


def tiny_dkf(bins: int, seed: int) -> DKF:
    torch.manual_seed(seed)
    return DKF({**tiny_srnn(bins, seed).config, "model": "dkf"}).eval()


def tiny_rvae(bins: int, seed: int) -> RVAE:
    torch.manual_seed(seed)
    return RVAE({**tiny_srnn(bins, seed).config, "model": "rvae"}).eval()


@pytest.mark.parametrize("kind", ["srnn", "dkf", "rvae"])
def test_stacked_priors_equal_each_prior_step_by_step(kind):
    make = {"srnn": tiny_srnn, "dkf": tiny_dkf, "rvae": tiny_rvae}[kind]
    priors = [make(20, 1), make(20, 2)]
    stack = STACKS[kind](priors, "cpu")
    gen = torch.Generator().manual_seed(3)
    power = torch.rand(2, 3, 9, 20, generator=gen) * torch.exp(stack.x_mean[:, None])
    z = torch.randn(2, 3, 9, 3, generator=gen)
    with torch.no_grad():
        state, e = stack.start(3), stack.first_input(3)
        variances = []
        for t in range(9):
            v, state = stack.step(state, e, z[:, :, t])
            variances.append(v)
            e = stack.embed(power[:, :, t])
        variances = torch.stack(variances, 2)
        recon = stack.reconstruct(power)
        for n, prior in enumerate(priors):
            s, x_prev, expected = prior.init_state(3), prior.x0(3), []
            for t in range(9):
                _, var, s = prior.step(s, x_prev, z[n, :, t])
                expected.append(var)
                x_prev = power[n, :, t]
            torch.testing.assert_close(variances[n], torch.stack(expected, 1), rtol=1e-5, atol=0)
            run = prior._run(power[n], use_posterior=True, sample=False)
            torch.testing.assert_close(recon[n], run["var"], rtol=1e-5, atol=0)


def test_stacked_rvae_draws_from_each_priors_posterior():
    """The RVAE's posterior has no recursion over z: a draw is its q(z | power)'s mean plus scaled noise."""
    priors = [tiny_rvae(20, 1), tiny_rvae(20, 2)]
    stack = StackedRVAE(priors, "cpu")
    gen = torch.Generator().manual_seed(4)
    power = torch.rand(2, 3, 9, 20, generator=gen) * torch.exp(stack.x_mean[:, None])
    noise = torch.randn(2, 3, 9, 3, generator=gen)
    with torch.no_grad():
        drawn = stack.encode(*stack.teacher(power), noise, 0.5)
        for n, prior in enumerate(priors):
            mean, var = prior.encode(power[n])
            torch.testing.assert_close(drawn[n], mean + torch.sqrt(0.5 * var) * noise[n], rtol=1e-5, atol=1e-6)


def test_priors_of_different_sizes_run_in_groups_in_prior_order():
    priors = [tiny_srnn(20, 1), tiny_srnn(20, 2, h_dim=5), tiny_srnn(20, 3), tiny_dkf(20, 4), tiny_rvae(20, 5)]
    bank = SourceBank(priors, "cpu")
    assert len(bank.groups) == 4 and isinstance(bank.groups[2][1], StackedDKF)
    assert isinstance(bank.groups[3][1], StackedRVAE)
    power = torch.rand(5, 2, 6, 20) * 1e-3
    with torch.no_grad():
        joined = bank.reconstruct(power)
        for n, prior in enumerate(priors):
            torch.testing.assert_close(joined[n], prior._run(power[n], use_posterior=True, sample=False)["var"])


def _mixtures(n: int, seconds: float, seed: int) -> list[np.ndarray]:
    rng = np.random.default_rng(seed)
    return [(0.1 * rng.normal(size=int(seconds * RATE))).astype(np.float32) for _ in range(n)]


def tiny_bases(bins: int, seed: int, n: int = 2) -> list[NMFBasis]:
    gen = torch.Generator().manual_seed(seed)
    bases = []
    for _ in range(n):
        W = torch.rand(bins, 4, generator=gen) + 0.05
        bases.append(NMFBasis(W / W.sum(0), -6.0))
    return bases


@pytest.mark.parametrize("mixture,init,passes,second", [
    ("per_bin", "nmf", 1, tiny_srnn), ("per_bin", "reconstruction", 1, tiny_srnn), ("additive", "nmf", 1, tiny_srnn),
    ("per_bin", "nmf", 2, tiny_srnn), ("per_bin", "nmf", 1, tiny_rvae), ("per_bin", "reconstruction", 1, tiny_rvae)])
def test_batched_equals_one_by_one(mixture, init, passes, second):
    """Also with a second pass, whose NMF start differs from mixture to mixture (adapted to each one's estimate),
    and with an RVAE beside an SRNN (its own group)."""
    priors, bases = [tiny_srnn(65, 1), second(65, 2)], tiny_bases(65, 0)
    config = SeparateConfig(iterations=3, segment=20, overlap=5, mixture=mixture, update_rho=True, init=init,
                            passes=passes, adapt=(0, 3) if passes > 1 else 0)
    waves = _mixtures(2, 0.3, 4) + _mixtures(1, 0.1, 5)  # 151, 151 and 51 frames
    together = separate(waves, priors, config, setting=SMALL, bases=bases)
    for wave, batched in zip(waves, together.sources):
        alone = separate(wave, priors, config, setting=SMALL, bases=bases).sources[0]
        assert batched.shape == (2, len(wave))
        np.testing.assert_allclose(batched, alone, rtol=1e-4, atol=5e-6)  # float32 sums over batches of other sizes
    assert all(np.isfinite(c).all() and len(c) == 3 for c in together.cost)


@pytest.mark.skipif(not torch.cuda.is_available(), reason="no CUDA device")
@pytest.mark.parametrize("mixture", ["per_bin", "additive"])
def test_cuda_separation_matches_the_cpu(mixture):
    """Same draws (made on the CPU), same VEM on the GPU: the sources agree to float32 rounding."""
    priors = [tiny_srnn(65, 1), tiny_dkf(65, 2), tiny_rvae(65, 3)]
    config = SeparateConfig(iterations=3, segment=20, overlap=5, mixture=mixture, update_rho=True)
    waves = _mixtures(2, 0.3, 4)
    cpu = separate(waves, priors, config, setting=SMALL, bases=tiny_bases(65, 0, n=3))
    gpu = separate(waves, priors, config, device="cuda", setting=SMALL, bases=tiny_bases(65, 0, n=3))
    for a, b in zip(cpu.sources, gpu.sources, strict=True):
        np.testing.assert_allclose(b, a, rtol=1e-3, atol=1e-5)


@pytest.mark.parametrize("sampling", ["gaussian", "mean", "tempered"])
def test_never_nan_on_silence_padded_input(sampling):
    wave = np.zeros(int(0.2 * RATE), np.float32)
    wave[1000:2000] = 0.1 * np.sin(np.arange(1000) * 0.3)
    result = separate(wave, [tiny_srnn(65, 1), tiny_srnn(65, 2)], SeparateConfig(iterations=3, sampling=sampling),
                      setting=SMALL, bases=tiny_bases(65, 0))
    assert np.isfinite(result.sources[0]).all() and np.isfinite(result.cost[0]).all()


# --------------------------------------------------------------------------------------------------------------
# a synthetic two-source separation with tiny priors trained here


def harmonic_tones(seconds: float, seed: int) -> np.ndarray:
    """Notes of 0.15 s, each a random fundamental (250-600 Hz) with 4 decaying harmonics."""
    rng = np.random.default_rng(seed)
    note = int(0.15 * RATE)
    t = np.arange(note) / RATE
    notes = [sum(np.sin(2 * np.pi * k * f0 * t) / k for k in range(1, 5)) * np.hanning(note)
             for f0 in rng.uniform(250, 600, size=int(seconds / 0.15) + 1)]
    return (0.1 * np.concatenate(notes)[: int(seconds * RATE)]).astype(np.float32)


def noise_bands(seconds: float, seed: int) -> np.ndarray:
    """White noise band-passed to 4-7 kHz, with a slow random envelope."""
    rng = np.random.default_rng(seed)
    n = int(seconds * RATE)
    spectrum = np.fft.rfft(rng.normal(size=n))
    freqs = np.fft.rfftfreq(n, 1 / RATE)
    band = np.fft.irfft(spectrum * ((freqs > 4000) & (freqs < 7000)), n)
    envelope = np.interp(np.arange(n), np.linspace(0, n, 20), rng.uniform(0.3, 1.0, size=20))
    return (0.1 * band / band.std() * envelope).astype(np.float32)


def trained_prior(make, tmp_path, name: str) -> SRNN:
    frames = power_frames([make(4.0, seed=10)], SMALL)
    val = power_frames([make(1.0, seed=11)], SMALL)
    data = SpectrogramData(train=frames, val=val[: (len(val) // 12) * 12].reshape(-1, 12, frames.shape[1]),
                           corpus=name, speakers=[name])
    config = {"seed": 0,
              "model": {"model": "srnn", "x_dim": SMALL.n_bins, "z_dim": 3, "h_dim": 12, "dense_dim": 24,
                        "embed_dim": 12, "likelihood": "itakura_saito", "param": "log_power"},
              "data": {"audio": {"corpus": "unused", "segment": 12}},
              "train": {"batch_size": 16, "epochs": 8, "batches_per_epoch": 8, "kl_warmup_epochs": 2, "lr": 1e-2,
                        "threads": 1, "patience": 100},
              "output": {"dir": str(tmp_path / name), "plot": False}}
    return train_prior(config, log=lambda message: None, progress=False, data=data).model


def test_synthetic_two_source_separation_improves_si_sdr(tmp_path):
    priors = [trained_prior(harmonic_tones, tmp_path, "tones"), trained_prior(noise_bands, tmp_path, "bands")]
    bases = [learn_nmf_basis([make(4.0, seed=10)], rank=8, setting=SMALL) for make in (harmonic_tones, noise_bands)]
    refs = np.stack([harmonic_tones(0.6, seed=20), noise_bands(0.6, seed=21)])
    mixture = refs.sum(0)
    for config in (SeparateConfig(iterations=5), SeparateConfig(iterations=5, init="reconstruction"),
                   SeparateConfig(iterations=5, mixture="additive", init="reconstruction")):
        estimates = separate(mixture, priors, config, setting=SMALL, bases=bases).sources[0]
        gains = [si_sdr(estimates[n], refs[n]) - si_sdr(mixture, refs[n]) for n in range(2)]
        assert min(gains) > 5.0, (config.init, config.mixture, gains)
    irm = oracle_separate(mixture, refs, "irm", setting=SMALL)
    assert min(si_sdr(irm[n], refs[n]) for n in range(2)) > 10.0


@pytest.mark.parametrize(("mixture_model", "least_gain"), [("additive", 2.0), ("per_bin", 4.0)])
def test_bound_and_refinement_follow_the_sources_they_are_given(tmp_path, mixture_model, least_gain):
    """Two sources of one class (one prior for both), one in each half: nothing in the mixture tells them apart, so
    only what the priors reconstruct from can. The bound, from the references, and the refinement, from an estimate
    (the ideal ratio mask blurred by noise), separate them (over the mixture, each source gains more than 2 dB with
    the additive mixture's Wiener gain, measured 2.6-4.0, and more than 4 dB with the per-bin power ratio, measured
    4.0-5.6); given them swapped, they swap the sources (from the mixture alone both masks would be 1/2: no gain)."""
    bands = trained_prior(noise_bands, tmp_path, "bands")
    first, second = noise_bands(0.6, seed=21), noise_bands(0.6, seed=22)
    half = len(first) // 2
    refs = np.stack([np.concatenate([first[:half], 0 * first[half:]]),
                     np.concatenate([0 * second[:half], second[half:]])]).astype(np.float32)
    mixture = refs.sum(0)
    X, S = SMALL(torch.from_numpy(mixture)), SMALL(torch.from_numpy(refs))
    irm = S.abs().square() / S.abs().square().sum(0).clamp(min=1e-20)
    estimate = 0.7 * irm + 0.3 * torch.rand(irm.shape, generator=torch.Generator().manual_seed(0))
    estimate = estimate / estimate.sum(0)
    bank, config = SourceBank([bands, bands], "cpu"), SeparateConfig(mixture=mixture_model)
    scale = _level_scales(mixture, X, bank.reference_log_power(), config).reshape(1, 2)  # (mixtures, sources)
    for order, sign in (([0, 1], 1), ([1, 0], -1)):
        bound = exact_inference_separate(mixture, refs[order], [bands, bands], config, setting=SMALL)
        mask = _refined_masks([X], [estimate[order]], [len(mixture)], scale, bank, config, "cpu", SMALL)[0]
        refined = SMALL.inverse(mask * X, len(mixture)).numpy()
        for output in (bound, refined):
            gains = [sign * (si_sdr(output[n], refs[n]) - si_sdr(mixture, refs[n])) for n in range(2)]
            assert min(gains) > least_gain, (sign, gains)


def test_refinement_pulls_a_noisy_estimate_back_to_the_priors_sources(tmp_path):
    """The refinement re-predicts each source from its estimate with its prior: masks of the ideal ratio mask
    blurred by noise (SI-SDR 4-16 dB) come back sharp, since each prior reconstructs only its own kind of source."""
    priors = [trained_prior(harmonic_tones, tmp_path, "tones"), trained_prior(noise_bands, tmp_path, "bands")]
    refs = np.stack([harmonic_tones(0.6, seed=20), noise_bands(0.6, seed=21)])
    mixture = refs.sum(0)
    X, S = SMALL(torch.from_numpy(mixture)), SMALL(torch.from_numpy(refs))
    irm = S.abs().square() / S.abs().square().sum(0)
    bank, config = SourceBank(priors, "cpu"), SeparateConfig()
    scale = _level_scales(mixture, X, bank.reference_log_power(), config).reshape(1, 2)  # (mixtures, sources)

    def scores(mask):
        return [si_sdr(SMALL.inverse(mask[n] * X, len(mixture)).numpy(), refs[n]) for n in range(2)]

    for noise in (0.3, 0.7):
        noisy = (1 - noise) * irm + noise * torch.rand(irm.shape, generator=torch.Generator().manual_seed(0))
        noisy = noisy / noisy.sum(0)
        refined = _refined_masks([X], [noisy], [len(mixture)], scale, bank, config, "cpu", SMALL)[0]
        assert min(np.subtract(scores(refined), scores(noisy))) > 10.0, noise
    assert _refined_masks([X], [noisy], [len(mixture)], scale, bank, SeparateConfig(refine=0), "cpu", SMALL)[0] is noisy


def test_adapted_bases_keep_the_class_basis_and_learn_the_estimates_timbre():
    """Between passes a source's NMF start is its class basis plus a basis learned on its own estimate: here the
    second source's estimate is one fixed spectrum under a varying envelope, which a rank-1 basis recovers."""
    gen = torch.Generator().manual_seed(3)
    template = torch.rand(65, generator=gen) + 0.1
    envelope = torch.rand(40, generator=gen) + 0.5
    spec = torch.complex((envelope.unsqueeze(1) * template).sqrt(), torch.zeros(40, 65))  # power: envelope x template
    masks = [torch.stack([torch.zeros(40, 65), torch.ones(40, 65)])]  # source 2's estimate: the whole mixture
    W, ranks = _stack_bases(tiny_bases(65, 0), 2, SMALL, "cpu")
    adapted, new_ranks = _adapted_bases((W, ranks), (0, 1), [spec], masks, SeparateConfig(nmf_iterations=200))
    assert adapted.shape == (1, 65, 9) and new_ranks == [4, 5]
    torch.testing.assert_close(adapted[0, :, :8], W)  # the class bases, in their place
    torch.testing.assert_close(adapted[0, :, 8], template / template.sum(), rtol=1e-3, atol=1e-5)


def test_supervised_nmf_separates_sources_of_disjoint_bases():
    W = torch.zeros(65, 2)
    W[:30, 0], W[30:, 1] = 1 / 30, 1 / 35
    refs = np.stack([harmonic_tones(0.5, seed=1), noise_bands(0.5, seed=2)])
    bases = [NMFBasis(W[:, :1], -6.0), NMFBasis(W[:, 1:], -6.0)]
    estimates = nmf_separate(refs.sum(0), bases, SeparateConfig(nmf_iterations=30), setting=SMALL).sources[0]
    assert min(si_sdr(estimates[n], refs[n]) for n in range(2)) > 8.0


# --------------------------------------------------------------------------------------------------------------
# tools/separate.py


@pytest.fixture
def tool_files(tmp_path):
    refs = np.stack([harmonic_tones(0.5, seed=1), noise_bands(0.5, seed=2)])
    write_audio(tmp_path / "mix.wav", refs.sum(0))
    write_audio(tmp_path / "mix_tones.wav", refs[0])
    write_audio(tmp_path / "mix_bands.wav", refs[1])
    tiny_srnn(513, 1).save(tmp_path / "tones.pt")
    tiny_srnn(513, 2).save(tmp_path / "bands.pt")
    for basis, name in zip(tiny_bases(513, 0), ("tones_nmf.pt", "bands_nmf.pt")):
        basis.save(tmp_path / name)
    return tmp_path


def run_tool(tmp, *argv, sources=("tones.pt", "bands.pt")):
    """The tool's exit code (argparse's own errors included) with the tiny priors and their NMF bases (MixDVAE's
    start) unless argv names sources."""
    default = [] if "--sources" in argv else ["--sources", *(str(tmp / s) for s in sources)]
    if default and not {"--method", "--bases", "--init"} & set(argv):
        default += ["--bases", str(tmp / "tones_nmf.pt"), str(tmp / "bands_nmf.pt")]
    try:
        return load_tool("separate").main([*argv, *default, "--no-progress", "--iterations", "2"])
    except SystemExit as exit_:
        return exit_.code


def test_separate_tool_writes_sources_png_scores_json(tool_files, capsys):
    out = tool_files / "out"
    code = run_tool(tool_files, str(tool_files / "mix.wav"), "--refs", str(tool_files), "--out", str(out),
                    "--json", str(tool_files / "r.json"))
    assert code == 0
    for label in ("tones", "bands"):
        data, rate = soundfile.read(out / f"mix_{label}.wav")
        assert rate == RATE and data.shape == (RATE // 2,)
    assert (out / "mix.png").stat().st_size > 1000
    summary = json.loads((tool_files / "r.json").read_text())
    scores = summary["files"][0]["scores"]
    assert set(scores) >= {"si_sdr", "sdr", "sir", "sar", "si_sdr_mix"} and all(map(math.isfinite, scores["sdr"]))
    text = capsys.readouterr().out
    assert "SI-SDR" in text and "tones" in text
    paper = tool_files / "out_reconstruction"  # the paper's start needs no NMF basis
    assert run_tool(tool_files, str(tool_files / "mix.wav"), "--init", "reconstruction", "--out", str(paper)) == 0
    assert not np.allclose(soundfile.read(paper / "mix_tones.wav")[0], soundfile.read(out / "mix_tones.wav")[0])


def test_separate_tool_one_mask_per_source(tool_files):
    """--output names one mask per source: each source comes out of the VEM as with its mask given to all sources
    (without the refinement, whose masks weigh each source's re-prediction against the others')."""
    runs = {}
    for name, masks in (("eta", ["assignment"]), ("a", ["posterior"]), ("mixed", ["posterior", "assignment"]),
                        ("power", ["power"]), ("power_eta", ["power", "assignment"])):
        out = tool_files / f"out_{name}"
        assert run_tool(tool_files, str(tool_files / "mix.wav"), "--mixture", "per_bin", "--output", *masks,
                        "--refine", "0", "--out", str(out)) == 0
        runs[name] = {label: soundfile.read(out / f"mix_{label}.wav")[0] for label in ("tones", "bands")}
    assert not np.allclose(runs["a"]["tones"], runs["eta"]["tones"], atol=1e-4)
    np.testing.assert_allclose(runs["mixed"]["tones"], runs["a"]["tones"], atol=1e-6)
    np.testing.assert_allclose(runs["mixed"]["bands"], runs["eta"]["bands"], atol=1e-6)
    assert not np.allclose(runs["power"]["tones"], runs["eta"]["tones"], atol=1e-4)
    np.testing.assert_allclose(runs["power_eta"]["tones"], runs["power"]["tones"], atol=1e-6)
    np.testing.assert_allclose(runs["power_eta"]["bands"], runs["eta"]["bands"], atol=1e-6)


@pytest.mark.parametrize("method", ["irm", "ibm"])
def test_separate_tool_oracle_masks(tool_files, method):
    refs = [str(tool_files / "mix_tones.wav"), str(tool_files / "mix_bands.wav")]
    out = tool_files / method
    assert run_tool(tool_files, str(tool_files / "mix.wav"), "--method", method, "--refs", *refs,
                    "--out", str(out)) == 0
    assert (out / "mix_tones.wav").is_file()


def test_separate_tool_nmf_with_basis_files(tool_files):
    W = torch.rand(513, 4) + 0.1
    for n, name in enumerate(("tones_nmf.pt", "bands_nmf.pt")):
        NMFBasis(W / W.sum(0), -6.0 + n).save(tool_files / name)
    out = tool_files / "nmf"
    assert run_tool(tool_files, str(tool_files / "mix.wav"), "--method", "nmf", "--out", str(out),
                    sources=("tones_nmf.pt", "bands_nmf.pt")) == 0
    assert (out / "mix_tones_nmf.wav").is_file()


def test_separate_tool_bad_inputs_exit_codes_and_write_nothing(tool_files, capsys):
    tmp = tool_files
    bad_files = write_bad_audio(tmp, RATE)
    soundfile.write(tmp / "mix_short_ref.wav", np.full(4000, 0.1, np.float32), RATE)
    mix, refs = str(tmp / "mix.wav"), [str(tmp / "mix_tones.wav"), str(tmp / "mix_bands.wav")]
    cases = {name: ([str(tmp / name)], code, name) for name, code in bad_files.items()}
    cases |= {
        "corrupt prior": ([mix, "--sources", str(tmp / "corrupt.pt"), str(tmp / "bands.pt")], 4, "corrupt.pt"),
        "unknown source": ([mix, "--sources", "nosuchsource", str(tmp / "bands.pt")], 3, "nosuchsource"),
        "ref count": ([mix, "--refs", refs[0]], 2, "reference"),
        "ref length": ([mix, "--refs", refs[0], str(tmp / "mix_short_ref.wav")], 4, "mix_short_ref.wav"),
        "ref missing": ([mix, "--refs", refs[0], str(tmp / "nope.wav")], 3, "nope.wav"),
        "oracle without refs": ([mix, "--method", "irm"], 2, "--refs"),
        "bad config": ([mix, "--rho", "0"], 4, "rho"),
        "bad equaliser": ([mix, "--equalise", "-1"], 4, "equalise"),
        "equaliser count": ([mix, "--equalise", "1", "2", "3"], 2, "--equalise"),
        "no basis": ([mix, "--sources", str(tmp / "tones.pt"), str(tmp / "bands.pt")], 2, "--bases"),
        "basis count": ([mix, "--bases", str(tmp / "tones_nmf.pt")], 2, "--bases"),
        "corrupt basis": ([mix, "--bases", str(tmp / "corrupt.pt"), str(tmp / "bands_nmf.pt")], 4, "corrupt.pt"),
        "masks per source": ([mix, "--output", "posterior", "assignment", "posterior"], 2, "--output"),
        "no input": ([], 2, "--demo"),
        "demo of one source": (["--demo", "--sources", "speech"], 2, "two --sources"),
    }
    if not torch.cuda.is_available():
        cases["no CUDA"] = ([mix, "--device", "cuda"], 2, "--device cuda")
    for case, (argv, code, named) in cases.items():
        out = tmp / f"out_{case.replace(' ', '_')}"
        assert run_tool(tmp, *argv, "--out", str(out)) == code, case
        assert named in capsys.readouterr().err, case
        assert not out.exists(), case


def test_shipped_flute_prior_and_demo_files():
    try:
        prior = load_prior("srnn_flute")
    except FileNotFoundError:
        pytest.skip("data/priors/srnn_flute.pt not trained yet")
    assert isinstance(prior, SRNN) and prior.config["x_dim"] == 513 and prior.config["param"] == "log_power"
    audio = prior.meta["train_config"]["data"]["audio"]
    assert audio["folder"].endswith("flute") and "fluidr3_17.flac" not in prior.meta["data"]["train_speakers"]
    from mixdvae.resources import shipped_dir

    demo = shipped_dir("audio_demo")
    for name in load_tool("separate").DEMO_FILES:
        assert soundfile.info(demo / name).samplerate == RATE


def test_shipped_nmf_bases_have_the_documented_ranks():
    """Separation's class bases, chosen on the validation mixtures (nmf_speech rank 128, nmf_flute rank 64); NMF-VEM's
    speech basis in enhancement (nmf_speech_vem) stays rank 32 (README, data/priors/README.md)."""
    speech, flute = load_sources(["speech", "flute"], "nmf")
    assert speech.W.shape == (513, 128) and flute.W.shape == (513, 64)
    assert speech.meta["split"] == "train" and speech.meta["utterances"] == 200
    assert "fluidr3_17.flac" not in flute.meta["files"]  # held out of the flute prior's training, as the basis
    vem = load_speech_prior("nmf")
    assert isinstance(vem, NMFBasis) and vem.W.shape == (513, 32)


def test_class_names_resolve_to_the_shipped_priors():
    """``speech`` separates with the RVAE prior (CLASS_PRIORS, chosen on validation), other classes with
    ``srnn_<class>``; a prior's name labels its class, so ``--sources dkf_speech flute`` finds ``nmf_speech``."""
    speech, flute = load_sources(["speech", "flute"], "mixdvae")
    assert isinstance(speech, RVAE) and isinstance(flute, SRNN)
    assert isinstance(load_sources(["dkf_speech"], "mixdvae")[0], DKF)
    assert isinstance(load_sources(["srnn_speech"], "mixdvae")[0], SRNN)
    assert source_label("dkf_speech") == source_label("srnn_speech") == source_label("speech") == "speech"
    assert source_label("rvae_speech") == "speech"


@pytest.mark.parametrize("mixture", ["per_bin", "additive"])
def test_equaliser_m_step_never_increases_the_cost_and_finds_a_colouring(mixture):
    """Sources drawn with variances e_true * v (a per-bin colouring the priors do not know): each EM round of the
    equaliser lowers the mixture's negative log-likelihood, and the fitted gains approach e_true."""
    generator = torch.Generator().manual_seed(0)
    N, B, T, F = 2, 1, 4000, 6
    v_raw = torch.rand(N, B, T, F, generator=generator, dtype=torch.float64) + 0.05
    v_raw[0, ..., :3] *= 30.0  # source 0 dominates the low bins, source 1 the high ones
    v_raw[1, ..., 3:] *= 30.0
    e_true = torch.tensor([[0.3, 2.0, 1.0, 0.5, 1.5, 4.0], [3.0, 1.0, 0.4, 2.5, 0.6, 1.0]], dtype=torch.float64)
    e_true = e_true.reshape(N, 1, 1, F)
    s = torch.complex(torch.randn(N, B, T, F, generator=generator, dtype=torch.float64),
                      torch.randn(N, B, T, F, generator=generator, dtype=torch.float64)) * (e_true * v_raw / 2).sqrt()
    if mixture == "per_bin":
        w = torch.randint(0, N, (B, T, F), generator=generator)
        x = torch.gather(s, 0, w.unsqueeze(0)).squeeze(0)
    else:
        x = s.sum(0)
    P = x.real**2 + x.imag**2
    vx = 0.01 * P.clamp(min=1e-3)
    gain = torch.ones(N, B, 1, F, dtype=torch.float64)
    costs = [float(mixture_cost(gain * v_raw, P, vx, mixture))]
    for _ in range(30):
        gain = m_equaliser(v_raw, gain, P, vx, mixture, 1)
        costs.append(float(mixture_cost(gain * v_raw, P, vx, mixture)))
    assert np.all(np.diff(costs) <= 1e-9), costs
    assert costs[-1] < costs[0] - 0.05
    dominant = torch.tensor([[1, 1, 1, 0, 0, 0], [0, 0, 0, 1, 1, 1]], dtype=torch.bool)  # where each source is heard
    ratio = (gain / e_true).reshape(N, F)[dominant]
    np.testing.assert_allclose(ratio.numpy(), 1.0, rtol=0.15)
    # rounds per source: source 0 keeps its gain, source 1 is fitted alone (still never raising the cost); a count
    # for every source is the same as that count once per source
    start = torch.ones(N, B, 1, F, dtype=torch.float64)
    alone = m_equaliser(v_raw, start, P, vx, mixture, (0, 30))
    torch.testing.assert_close(alone[0], start[0])
    assert not torch.allclose(alone[1], start[1])
    assert float(mixture_cost(alone * v_raw, P, vx, mixture)) < costs[0]
    torch.testing.assert_close(m_equaliser(v_raw, start, P, vx, mixture, (2, 2)),
                               m_equaliser(v_raw, start, P, vx, mixture, 2))


def test_benchmark_flute_basis_learns_from_the_named_training_files(tmp_path):
    """The benchmark's flute NMF basis: the prior's training files by default, its ``nmf_train`` when the config
    names them (a prior trained on several soundfonts), the command line's ``--flute-nmf-files`` above both."""
    from mixdvae.audio import write_audio

    bench = load_tool("benchmark_separate")
    rng = np.random.default_rng(0)
    for name in ("one_00", "one_01", "two_00"):
        write_audio(tmp_path / f"{name}.flac", (0.1 * rng.standard_normal(8192)).astype(np.float32))
    audio = {"folder": str(tmp_path), "train": ["one_*.flac", "two_*.flac"]}

    def files(section, patterns=None):
        return bench.learn_flute_basis(section, 2, 0, patterns).meta["files"]

    assert files(audio) == ["one_00.flac", "one_01.flac", "two_00.flac"]
    assert files({**audio, "nmf_train": ["one_*.flac"]}) == ["one_00.flac", "one_01.flac"]
    assert files({**audio, "nmf_train": ["one_*.flac"]}, ["two_*.flac"]) == ["two_00.flac"]


def test_benchmark_flute_files_by_split_pattern_and_extra_folder(tmp_path):
    """The benchmark's flute files: the unheard soundfont (test), the prior's validation files (val), or
    ``--flute-files`` looked up in the prior's folders and ``--flute-folder`` (rendered timbres)."""
    from mixdvae.audio import write_audio

    bench = load_tool("benchmark_separate")
    shared, extra = tmp_path / "shared", tmp_path / "extra"
    shared.mkdir()
    extra.mkdir()
    files = [(shared, "fluidr3_00"), (shared, "fluidr3_15"), (shared, "musescore_00"), (extra, "csound_00")]
    for folder, name in files:
        write_audio(folder / f"{name}.flac", np.zeros(1024, dtype=np.float32) + 0.01)
    audio = {"folder": str(shared), "train": ["fluidr3_0*.flac"], "val": ["fluidr3_15.flac"]}

    def names(*argv):
        return [p.name for p in bench.flute_files(bench.parse_args(list(argv)), audio)]

    assert names() == ["musescore_00.flac"]
    assert names("--split", "val") == ["fluidr3_15.flac"]
    assert names("--split", "val", "--flute-folder", str(extra), "--flute-files", "csound_*.flac") == ["csound_00.flac"]
    with pytest.raises(DataNotFoundError, match="csound"):
        names("--flute-files", "csound_*.flac")  # not in the prior's folders without --flute-folder
