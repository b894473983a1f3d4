"""Speech enhancement: IS-NMF updates, the VEM engine (DVAE-VEM / VAE-VEM / NMF-VEM) and tools/enhance.py.

Small random priors stand in for the shipped ones (fast, no corpus needed)."""

from __future__ import annotations

import json
import math
import os
import subprocess
import sys

import numpy as np
import pytest
import soundfile
import torch

from mixdvae.audio import istft, nmf, write_audio
from mixdvae.audio.enhance import (
    EnhanceConfig,
    NMFBasis,
    _m_step,
    _posterior_recursion,
    default_config,
    enhance,
    enhance_spectrograms,
    speech_model,
)
from mixdvae.audio.metrics import si_sdr
from mixdvae.audio.stft import DEFAULT_STFT
from mixdvae.dvae import DKF, RVAE, SRNN
from mixdvae.dvae.vae import VAE
from mixdvae.errors import ConfigError, UsageError
from tests.conftest import write_bad_audio
from tests.tools_loader import load_tool

RATE = 16000
F = 513


def tiny_config(**extra) -> dict:
    """A small speech prior config: log-power IO, IS likelihood, a low-pass mean spectrum."""
    x_mean = (-4.0 - 6.0 * np.linspace(0, 1, F)).tolist()
    return dict(x_dim=F, z_dim=4, h_dim=16, dense_dim=32, embed_dim=16, param="log_power",
                likelihood="itakura_saito", x_mean=x_mean, x_std=[2.0] * F, **extra)


@pytest.fixture(scope="module")
def srnn():
    torch.manual_seed(0)
    return SRNN(tiny_config()).eval()


@pytest.fixture(scope="module")
def dkf(srnn):
    """A tiny DKF of the SRNN's sizes (and level statistics)."""
    torch.manual_seed(1)
    return DKF({**srnn.config, "model": "dkf"}).eval()


@pytest.fixture(scope="module")
def rvae(srnn):
    """A tiny RVAE of the SRNN's sizes (and level statistics)."""
    torch.manual_seed(2)
    return RVAE({**srnn.config, "model": "rvae"}).eval()


def speech_like(model, seconds: float, seed: int) -> np.ndarray:
    """A waveform drawn from the prior's speech variance (complex Gaussian STFT, inverse STFT), switched on and
    off every 0.25 s like words and pauses."""
    frames = 1 + int(seconds * RATE) // 256
    generator = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        out = model.predict_sequence(torch.exp(model.io.x_mean).expand(1, frames, F).contiguous())
    envelope = (torch.arange(frames) // 16 % 2 == 0).float().view(1, frames, 1)
    var = out["var"] * envelope + 1e-12
    spec = torch.complex(torch.randn(var.shape, generator=generator), torch.randn(var.shape, generator=generator))
    spec = spec * (var / 2).sqrt()
    wave = istft(spec, int(seconds * RATE))[0].numpy()
    return (0.3 * wave / np.abs(wave).max()).astype(np.float32)


def white_noise(n: int, seed: int, level: float) -> np.ndarray:
    return (level * np.random.default_rng(seed).standard_normal(n)).astype(np.float32)


# --------------------------------------------------------------------------------------------------------------
# NMF


def test_nmf_updates_never_increase_the_is_cost():
    torch.manual_seed(0)
    B, T, K = 3, 24, 4
    P = torch.rand(B, 30, T) ** 3 * 4
    mask = torch.ones(B, T, dtype=torch.bool)
    mask[1, 15:] = False
    P[1, :, 15:] = 0
    Vs = torch.rand(2, B, 30, T) + 0.05  # fixed speech variance, two samples
    W, H = nmf.random_init(B, 30, K, T, torch.Generator().manual_seed(0))
    g = torch.ones(B, T)
    previous = nmf.is_cost(P, g.unsqueeze(1) * Vs + W @ H, mask)
    for _ in range(12):
        W = nmf.update_W(P, g.unsqueeze(1) * Vs, W, H, mask)
        after_w = nmf.is_cost(P, g.unsqueeze(1) * Vs + W @ H, mask)
        H = nmf.update_H(P, g.unsqueeze(1) * Vs, W, H, mask)
        after_h = nmf.is_cost(P, g.unsqueeze(1) * Vs + W @ H, mask)
        W2, H2 = nmf.normalise_columns(W, H)
        torch.testing.assert_close(W2 @ H2, W @ H)
        W, H = W2, H2
        g = nmf.update_gain(P, Vs, W @ H, g, mask)
        after_g = nmf.is_cost(P, g.unsqueeze(1) * Vs + W @ H, mask)
        for before, after in ((previous, after_w), (after_w, after_h), (after_h, after_g)):
            assert (after <= before + 1e-4 * before.abs()).all()
        previous = after_g
    assert torch.allclose(W.sum(1), torch.ones(B, K))
    assert torch.isfinite(H).all() and torch.isfinite(g).all()


@pytest.mark.parametrize("uses_gain, weights", [(True, None), (False, None), (True, (1.5, 0.5))])
def test_numba_m_step_equals_the_torch_updates(uses_gain, weights):
    """The fused Numba rounds (the CPU path) reproduce nmf_step + update_gain, padded frames included, with the
    draws weighted or not."""
    gen = torch.Generator().manual_seed(5)
    B, K, T = 3, 4, 40
    P = torch.rand(B, F, T, generator=gen) ** 3 * 5 + 1e-4
    mask = torch.ones(B, T, dtype=torch.bool)
    mask[1, 25:] = False
    P[1, :, 25:] = 0
    Vs = torch.rand(2, B, F, T, generator=gen) + 0.05
    W, H = nmf.random_init(B, F, K, T, gen)
    g = torch.rand(B, T, generator=gen) + 0.5
    floor = torch.full((B, 1, 1), 1e-3)
    weights = None if weights is None else torch.tensor(weights)
    expected = _m_step(P, Vs, W, H, g, mask, floor, 8, uses_gain, weights, backend="torch")
    got = _m_step(P, Vs, W, H, g, mask, floor, 8, uses_gain, weights, backend="numba")
    for e, o in zip(expected, got):
        torch.testing.assert_close(o, e, rtol=1e-4, atol=1e-9)
    assert not torch.equal(got[1], H)  # the rounds did move the activations
    torch.testing.assert_close(got[2][1, 25:], g[1, 25:])  # padded frames keep their gain
    if not uses_gain:
        torch.testing.assert_close(got[2], g)
    if weights is not None:  # the weights matter
        plain = _m_step(P, Vs, W, H, g, mask, floor, 8, uses_gain, backend="numba")
        assert not torch.allclose(plain[1], got[1], rtol=1e-3)


def test_numba_posterior_recursion_equals_torch():
    gen = torch.Generator().manual_seed(6)
    B, T, D, Z, S = 2, 30, 12, 3, 2
    args = (torch.randn(B, T, D, generator=gen), torch.randn(B, Z, D, generator=gen) * 0.3,
            torch.randn(B, D, 2 * Z, generator=gen) * 0.3, torch.randn(B, 1, 2 * Z, generator=gen),
            torch.randn(T, S, Z, generator=gen))
    cpu = _posterior_recursion(*args, -6.0, 2.0)  # the Numba kernel
    reference = _posterior_recursion(*(a.double() for a in args), -6.0, 2.0)  # float64: the torch loop
    assert cpu.shape == (B, S, T, Z)
    torch.testing.assert_close(cpu.double(), reference, rtol=1e-4, atol=1e-5)
    assert not torch.allclose(cpu[:, 0], cpu[:, 1])  # each sample follows its own noise


_KERNEL_DIGEST = """
import hashlib
import numpy as np
from mixdvae.audio.kernels import m_step_rounds, posterior_recursion
rng = np.random.default_rng(0)
f32 = np.float32
B, S, F, T, K = 2, 2, 257, 90, 8
P = rng.random((B, F, T)).astype(f32) + f32(0.01)
Vs = rng.random((B, S, F, T)).astype(f32) + f32(0.01)
W, H, g = rng.random((B, F, K)).astype(f32), rng.random((B, K, T)).astype(f32), np.ones((B, T), f32)
valid = np.ones((B, T), bool)
valid[1, 60:] = False
m_step_rounds(P, Vs, W, H, g, valid, np.full(B, 1e-6, f32), np.ones(S, f32), 6, True)
out = np.zeros((1, 2, 40, 3), f32)
posterior_recursion(rng.standard_normal((1, 40, 12)).astype(f32), rng.standard_normal((1, 3, 12)).astype(f32),
                    rng.standard_normal((1, 12, 6)).astype(f32), rng.standard_normal((1, 1, 6)).astype(f32),
                    rng.standard_normal((40, 2, 3)).astype(f32), -6.0, 2.0, out)
print(hashlib.sha256(W.tobytes() + H.tobytes() + g.tobytes() + out.tobytes()).hexdigest())
"""


def test_numba_kernels_give_the_same_bits_compiled_or_loaded_from_the_cache(tmp_path):
    """The first process compiles the kernels (cold cache), later ones load them: both compute the same bits, so
    the first run of a command writes the same audio as every later run. (With the M-step's round a separate
    function, the compiling process computed other last bits than the loading ones.)"""
    env = {**os.environ, "NUMBA_CACHE_DIR": str(tmp_path / "numba")}
    digests = [subprocess.run([sys.executable, "-c", _KERNEL_DIGEST], env=env, capture_output=True, text=True,
                              check=True).stdout for _ in range(2)]
    assert any((tmp_path / "numba").rglob("*.nbi"))  # the first process did write the cache the second read
    assert digests[0] == digests[1]


def test_learn_basis_decreases_cost():
    P = torch.rand(F, 200) ** 2
    fit = nmf.learn_basis(P, rank=4, iterations=15)
    assert fit.W.shape == (F, 4)
    assert all(b <= a + 1e-6 for a, b in zip(fit.cost, fit.cost[1:]))


# --------------------------------------------------------------------------------------------------------------
# the VEM engine


@pytest.mark.parametrize("model", ["srnn", "rvae"])
def test_vem_improves_si_sdr_on_a_prior_sample_in_stationary_noise(srnn, rvae, model):
    prior = srnn if model == "srnn" else rvae
    clean = speech_like(prior, 1.5, seed=1)
    noisy = clean + white_noise(len(clean), 2, float(np.sqrt(np.mean(clean**2))))  # 0 dB, white
    result = enhance(noisy, prior, EnhanceConfig(iterations=10))
    assert si_sdr(noisy, clean) < 1.0
    assert si_sdr(result.enhanced[0], clean) > si_sdr(noisy, clean) + 3.0
    assert result.cost.shape == (10, 1)
    assert result.cost[-1, 0] < result.cost[0, 0]  # the IS cost (monitored) went down


def test_dkf_encoder_runs_once_per_batch_and_the_srnns_every_iteration(srnn, dkf):
    """The DKF's encoder reads the noisy features only, so its LSTM runs once per batch; the SRNN's also reads
    the decoder's recurrence over the speech-power estimate, so it runs again after every iteration."""
    clean = speech_like(dkf, 1.5, seed=1)
    noisy = clean + white_noise(len(clean), 2, float(np.sqrt(np.mean(clean**2))))
    for prior, expected in ((dkf, 1), (srnn, 1 + 5)):
        calls = []
        hook = prior.enc_rnn.register_forward_hook(lambda *args, calls=calls: calls.append(1))
        try:
            enhance(noisy, prior, EnhanceConfig(iterations=5))
        finally:
            hook.remove()
        assert len(calls) == expected, prior.config["model"]


@pytest.mark.parametrize("model", ["srnn", "dkf", "rvae"])
def test_decoder_runs_on_the_valid_frames_of_a_batch_only(srnn, dkf, rvae, model):
    """Utterances of different lengths share a batch, padded; the decoder sees the frames they have, not the
    padding (and the batch still equals one by one: test_batched_equals_one_by_one)."""
    prior = {"srnn": srnn, "dkf": dkf, "rvae": rvae}[model]
    waves = [speech_like(prior, s, seed) + white_noise(int(s * RATE), seed + 3, 0.05)
             for s, seed in ((1.2, 1), (0.5, 2))]
    frames = sum(DEFAULT_STFT.n_frames(len(w)) for w in waves)
    rows = []
    hook = prior.decoder[0].register_forward_hook(lambda module, args, out: rows.append(args[0].shape[:-1].numel()))
    try:
        config = EnhanceConfig(iterations=3, samples=1, wiener_samples=2)
        enhance(waves, prior, config)
    finally:
        hook.remove()
    # the warm-up's draw, one per iteration, the output's two draws
    assert sum(rows) == (1 + config.iterations + config.wiener_samples) * frames


def test_noise_warmup_fits_the_noise_before_the_first_e_step(srnn):
    clean = speech_like(srnn, 1.0, seed=6)
    noisy = clean + white_noise(len(clean), 7, float(np.sqrt(np.mean(clean**2))))
    cold = enhance(noisy, srnn, EnhanceConfig(iterations=1, warmup_m_steps=0))
    warm = enhance(noisy, srnn, EnhanceConfig(iterations=1, warmup_m_steps=30))
    assert warm.cost[0, 0] < cold.cost[0, 0] - 0.05  # a fitted noise model explains the mixture better
    again = enhance(noisy, srnn, EnhanceConfig(iterations=1, warmup_m_steps=30))
    np.testing.assert_array_equal(again.enhanced[0], warm.enhanced[0])  # seeded
    with pytest.raises(ConfigError, match="warmup_m_steps"):
        EnhanceConfig(warmup_m_steps=-1)


@pytest.mark.parametrize("model, tune", [("srnn", "head"), ("rvae", "head"), ("rvae", "encoder")])
def test_batched_equals_one_by_one(srnn, rvae, model, tune):
    prior = srnn if model == "srnn" else rvae
    waves = [speech_like(srnn, s, seed) + white_noise(int(s * RATE), seed + 9, 0.05)
             for s, seed in ((0.8, 1), (1.2, 2), (0.5, 3))]
    config = EnhanceConfig(iterations=3, wiener_samples=2, tune=tune)
    batched = enhance(waves, prior, config)
    for i, wave in enumerate(waves):
        alone = enhance(wave, prior, config)
        np.testing.assert_allclose(alone.enhanced[0], batched.enhanced[i], atol=2e-4 * np.abs(wave).max())
        np.testing.assert_allclose(alone.cost[:, 0], batched.cost[:, i], rtol=1e-3, atol=1e-3)


def test_long_input_is_segmented_cross_faded_and_reported_in_seconds(srnn):
    """A 3 s input with 1 s segments: enhanced in overlapping pieces (one batch) and cross-faded back, the SI-SDR
    gain kept, progress summing to the input's duration; a segment as long as the input is the unsegmented run
    exactly."""
    clean = speech_like(srnn, 3.0, seed=11)
    noisy = clean + white_noise(len(clean), 12, float(np.sqrt(np.mean(clean**2))))
    frames = 1 + len(noisy) // 256
    whole = enhance(noisy, srnn, EnhanceConfig(iterations=6, segment=0))
    reported = []
    pieces = enhance(noisy, srnn, EnhanceConfig(iterations=6, segment=63, overlap=16), progress=reported.append)
    assert len(reported) == 1 and sum(reported) == pytest.approx(len(noisy) / RATE)  # 4 segments, one batch
    assert pieces.enhanced[0].shape == noisy.shape and np.isfinite(pieces.enhanced[0]).all()
    assert si_sdr(pieces.enhanced[0], clean) > si_sdr(noisy, clean) + 3.0
    assert abs(si_sdr(pieces.enhanced[0], clean) - si_sdr(whole.enhanced[0], clean)) < 2.0
    assert pieces.cost.shape == (6, 1) and np.isfinite(pieces.cost).all()
    exact = enhance(noisy, srnn, EnhanceConfig(iterations=6, segment=frames, overlap=16))
    np.testing.assert_array_equal(exact.enhanced[0], whole.enhanced[0])
    with pytest.raises(ConfigError, match="overlap"):
        EnhanceConfig(segment=50, overlap=50)


@pytest.mark.parametrize("kind", ["srnn", "rvae", "vae", "nmf"])
def test_never_nan_on_silence_padded_input(srnn, rvae, kind):
    prior = {"srnn": srnn, "rvae": rvae, "vae": VAE(tiny_config()).eval(),
             "nmf": NMFBasis(torch.rand(F, 6) + 0.01, -9.0)}[kind]
    speech = speech_like(srnn, 0.6, seed=4)
    padded = np.concatenate([np.zeros(8000, np.float32), speech, np.zeros(12000, np.float32)])
    result = enhance([padded, speech], prior, EnhanceConfig(iterations=3))
    assert all(np.isfinite(y).all() for y in result.enhanced)
    assert np.isfinite(result.cost).all()
    assert np.abs(result.enhanced[0][:4000]).max() < 1e-3  # digital silence stays silent


def test_prior_object_is_left_untouched(srnn):
    before = {k: v.clone() for k, v in srnn.state_dict().items()}
    enhance(speech_like(srnn, 0.5, seed=5), srnn, EnhanceConfig(iterations=2, tune="encoder"))
    for key, value in srnn.state_dict().items():
        assert torch.equal(value, before[key]), key


def test_default_config_by_kind_of_prior(srnn, dkf):
    nmf_config = default_config(NMFBasis(torch.rand(F, 4) + 0.01, -9.0))
    assert (nmf_config.m_steps, nmf_config.warmup_m_steps) == (3, 0)
    vae_config = default_config(VAE(tiny_config()))
    assert vae_config == EnhanceConfig()
    assert default_config(srnn).lr == 1e-2 and default_config(srnn, lr=1e-3, seed=4).lr == 1e-3
    with pytest.raises(ConfigError, match="m_steps"):
        default_config(srnn, m_steps=0)
    assert default_config([srnn, VAE(tiny_config())]).lr == EnhanceConfig.lr  # a joint: the settings shared only
    assert default_config([srnn, srnn]).lr == 1e-2
    assert default_config([dkf, VAE(tiny_config())]).member_weights == (2.0, 1.0)  # MEMBER_WEIGHTS by kind
    assert default_config([dkf, srnn], member_weights=(1, 1)).member_weights == (1.0, 1.0)
    assert default_config(dkf).member_weights is None


def test_joint_of_one_prior_twice_equals_the_prior_alone(srnn):
    """Equal-weight pooling over a shared noise model and gain: two identical members draw the same variances, so
    the M-step's sums, the cost and the Wiener average are those of one member."""
    clean = speech_like(srnn, 1.0, seed=21)
    noisy = clean + white_noise(len(clean), 22, float(np.sqrt(np.mean(clean**2))))
    config = EnhanceConfig(iterations=4)
    alone = enhance(noisy, srnn, config)
    joint = enhance(noisy, [srnn, srnn], config)
    np.testing.assert_allclose(joint.enhanced[0], alone.enhanced[0], atol=1e-4 * np.abs(noisy).max())
    np.testing.assert_allclose(joint.cost, alone.cost, rtol=1e-4)


def test_joint_member_weights_count_like_repeated_members(srnn):
    """member_weights (2, 1) pool the first prior's posterior twice: the same as that prior given twice with equal
    weights (identical members draw identical variances); a negligible weight leaves the other member alone."""
    vae = VAE(tiny_config()).eval()
    noisy = speech_like(srnn, 1.0, seed=25) + white_noise(RATE, 26, 0.05)
    config = EnhanceConfig(iterations=3)
    weighted = enhance(noisy, [srnn, vae], EnhanceConfig(iterations=3, member_weights=(2, 1)))
    repeated = enhance(noisy, [srnn, srnn, vae], config)
    scale = np.abs(noisy).max()
    np.testing.assert_allclose(weighted.enhanced[0], repeated.enhanced[0], atol=1e-4 * scale)
    np.testing.assert_allclose(weighted.cost, repeated.cost, rtol=1e-4)
    equal = enhance(noisy, [srnn, vae], config).enhanced[0]
    assert np.abs(weighted.enhanced[0] - equal).max() > 1e-3 * scale
    only_first = enhance(noisy, [srnn, vae], EnhanceConfig(iterations=3, member_weights=(1, 1e-6))).enhanced[0]
    np.testing.assert_allclose(only_first, enhance(noisy, srnn, config).enhanced[0], atol=1e-3 * scale)
    with pytest.raises(ConfigError, match="member_weights"):
        enhance(noisy, [srnn, vae], EnhanceConfig(member_weights=(1, 1, 1)))
    with pytest.raises(ConfigError, match="member_weights"):
        EnhanceConfig(member_weights=(1, 0))


def test_joint_pools_each_members_draws_in_order(srnn):
    """A joint model's variances are its members' own, stacked in the given order (an SRNN and a VAE)."""
    vae = VAE(tiny_config()).eval()
    P = torch.rand(2, F, 12) + 0.1
    mask = torch.ones(2, 12, dtype=torch.bool)
    config = EnhanceConfig()
    joint = speech_model([srnn, vae], config, "cpu")
    joint.start(P, mask)
    pooled = joint.variances(2, (0,))
    assert pooled.shape == (4, 2, F, 12)
    for index, prior in enumerate((srnn, vae)):
        alone = speech_model(prior, config, "cpu")
        alone.start(P, mask)
        torch.testing.assert_close(pooled[2 * index : 2 * index + 2], alone.variances(2, (0,)))
    assert not torch.allclose(pooled[0], pooled[2])
    noisy = speech_like(srnn, 1.0, seed=23) + white_noise(RATE, 24, 0.05)
    config = EnhanceConfig(iterations=3)
    joint = enhance(noisy, [srnn, vae], config).enhanced[0]
    assert np.isfinite(joint).all()
    for prior in (srnn, vae):  # both members shape the output
        assert np.abs(joint - enhance(noisy, prior, config).enhanced[0]).max() > 1e-3 * np.abs(noisy).max()


def test_joint_refuses_nmf_a_single_member_other_levels_and_weights_without_a_joint(srnn):
    with pytest.raises(UsageError, match="two or more"):
        enhance(np.ones(4000, np.float32), [srnn, NMFBasis(torch.rand(F, 4) + 0.01, -9.0)])
    with pytest.raises(UsageError, match="two or more"):
        speech_model([srnn], EnhanceConfig(), "cpu")
    louder = VAE({**tiny_config(), "x_mean": [-2.0] * F}).eval()
    with pytest.raises(UsageError, match="level statistics"):
        speech_model([srnn, louder], EnhanceConfig(), "cpu")
    for single in (srnn, NMFBasis(torch.rand(F, 4) + 0.01, -9.0)):  # weights need a joint: not silently ignored
        with pytest.raises(ConfigError, match="member_weights"):
            enhance(np.ones(4000, np.float32), single, EnhanceConfig(member_weights=(2.0,)))


def test_config_is_validated():
    with pytest.raises(ConfigError, match="iterations"):
        EnhanceConfig(iterations=0)
    with pytest.raises(ConfigError, match="tune"):
        EnhanceConfig(tune="decoder")


def test_spectral_engine_is_device_agnostic_and_finite(srnn):
    X = torch.randn(2, F, 20, dtype=torch.complex64)
    mask = torch.ones(2, 20, dtype=torch.bool)
    mask[1, 12:] = False
    S_hat, cost = enhance_spectrograms(X * mask.unsqueeze(1), mask, speech_model(srnn, EnhanceConfig(), "cpu"),
                                       EnhanceConfig(iterations=2))
    assert S_hat.shape == X.shape and torch.isfinite(cost).all()
    assert S_hat[1, :, 12:].abs().max() == 0


@pytest.mark.skipif(not torch.cuda.is_available(), reason="no CUDA device")
@pytest.mark.parametrize("kind", ["srnn", "dkf", "rvae", "joint", "vae", "nmf"])
def test_cuda_enhancement_matches_the_cpu(srnn, dkf, rvae, kind):
    """The CUDA run (torch updates) gives the CPU run's output (Numba M-step): same draws (made on the CPU), same
    VEM; float32 rounding differs, so the outputs agree to 40 dB SI-SDR, not bit for bit."""
    priors = {"srnn": srnn, "dkf": dkf, "rvae": rvae, "joint": [dkf, srnn],
              "vae": VAE({**srnn.config, "model": "vae"}).eval(),
              "nmf": NMFBasis(torch.rand(F, 6, generator=torch.Generator().manual_seed(2)) + 0.01, -9.0)}
    waves = [speech_like(srnn, s, seed) + white_noise(int(s * RATE), seed + 9, 0.05)
             for s, seed in ((0.8, 1), (0.5, 3))]
    config = EnhanceConfig(iterations=4, wiener_samples=2)
    cpu = enhance(waves, priors[kind], config)
    gpu = enhance(waves, priors[kind], config, device="cuda")
    for a, b in zip(cpu.enhanced, gpu.enhanced, strict=True):
        assert np.isfinite(b).all() and si_sdr(b, a) > 40
    np.testing.assert_allclose(gpu.cost, cpu.cost, rtol=1e-3, atol=1e-4)


# --------------------------------------------------------------------------------------------------------------
# tools/enhance.py


@pytest.fixture
def tool_files(tmp_path, srnn):
    clean = speech_like(srnn, 1.0, seed=6)
    noisy = clean + white_noise(len(clean), 7, 0.05)
    write_audio(tmp_path / "a.wav", noisy)
    write_audio(tmp_path / "a_clean.wav", clean)
    srnn.save(tmp_path / "prior.pt")
    return tmp_path


def run_tool(argv):
    return load_tool("enhance").main([*argv, "--no-progress", "--iterations", "2"])


def test_enhance_tool_writes_wav_png_json(tool_files, capsys):
    out = tool_files / "out"
    code = run_tool([str(tool_files / "a.wav"), "--clean", str(tool_files / "a_clean.wav"), "--out", str(out),
                     "--prior", str(tool_files / "prior.pt"), "--json", str(tool_files / "r.json")])
    assert code == 0
    data, rate = soundfile.read(out / "a_enhanced.wav")
    assert rate == RATE and data.ndim == 1 and len(data) == RATE
    assert (out / "a.png").stat().st_size > 1000
    summary = json.loads((tool_files / "r.json").read_text())
    assert math.isfinite(summary["files"][0]["si_sdr_out"])
    assert "SI-SDR" in capsys.readouterr().out


def test_enhance_tool_progress_ends_at_the_inputs_duration(tool_files, capsys):
    """The bar counts seconds of audio and ends exactly full (its total was once rounded: 101 %, a tqdm warning)."""
    noisy, _ = soundfile.read(tool_files / "a.wav", dtype="float32")
    write_audio(tool_files / "b.wav", np.concatenate([noisy, noisy[: int(0.23 * RATE)]]))  # 1.23 s
    code = load_tool("enhance").main([str(tool_files / "b.wav"), "--out", str(tool_files / "out_bar"), "--prior",
                                      str(tool_files / "prior.pt"), "--iterations", "2"])
    err = capsys.readouterr().err
    assert code == 0 and "100%" in err and "1.2/1.2" in err
    assert "101%" not in err and "clamping" not in err


def test_enhance_tool_runs_a_joint_of_priors(tool_files, capsys):
    out = tool_files / "out_joint"
    prior = str(tool_files / "prior.pt")
    assert run_tool([str(tool_files / "a.wav"), "--out", str(out), "--prior", prior, prior]) == 0
    assert (out / "a_enhanced.wav").is_file()
    joint = [str(tool_files / "a.wav"), "--prior", prior, prior, "--out"]
    weighted = tool_files / "out_joint_weighted"
    assert run_tool([*joint, str(weighted), "--weights", "3", "1"]) == 0
    assert (weighted / "a_enhanced.wav").is_file()
    capsys.readouterr()
    for weights in (["1"], ["1", "0"], ["1", "1", "1"]):
        bad = tool_files / "out_bad_weights"
        assert run_tool([*joint, str(bad), "--weights", *weights]) == 2
        assert "--weights" in capsys.readouterr().err and not bad.exists()
    out = tool_files / "out_nmf_joint"
    assert run_tool([str(tool_files / "a.wav"), "--out", str(out), "--prior", "nmf", prior]) == 2
    assert "joint VEM" in capsys.readouterr().err and not out.exists()
    for before in ([], [str(tool_files / "a.wav")]):  # inputs after --prior are taken as priors
        with pytest.raises(SystemExit) as exit_info:
            run_tool([*before, "--out", str(out), "--prior", prior, str(tool_files / "a.wav")])
        assert exit_info.value.code == 2 and "before --prior" in capsys.readouterr().err


def test_enhance_tool_bad_inputs_exit_codes_and_write_nothing(tool_files, capsys):
    for name, code in write_bad_audio(tool_files).items():
        out = tool_files / f"out_{name}"
        assert run_tool([str(tool_files / name), "--out", str(out), "--prior", str(tool_files / "prior.pt")]) == code
        assert name in capsys.readouterr().err
        assert not out.exists()
    out = tool_files / "out_prior"
    assert run_tool([str(tool_files / "a.wav"), "--out", str(out), "--prior", str(tool_files / "corrupt.pt")]) == 4
    assert "corrupt.pt" in capsys.readouterr().err and not out.exists()
    out = tool_files / "out_segment"
    assert run_tool([str(tool_files / "a.wav"), "--out", str(out), "--segment", "-1"]) == 2
    assert "--segment" in capsys.readouterr().err and not out.exists()
    if not torch.cuda.is_available():
        out = tool_files / "out_cuda"
        assert run_tool([str(tool_files / "a.wav"), "--out", str(out), "--device", "cuda"]) == 2
        assert "--device cuda" in capsys.readouterr().err and not out.exists()
    out = tool_files / "out_gpu"  # not a device: said so, not blamed on the prior's checkpoint
    assert run_tool([str(tool_files / "a.wav"), "--out", str(out), "--device", "gpu"]) == 4
    assert "--device: 'gpu' is not a device" in capsys.readouterr().err and not out.exists()


def test_enhance_tool_resamples_with_a_notice(tool_files, capsys):
    wave, _ = soundfile.read(tool_files / "a.wav", dtype="float32")
    soundfile.write(tool_files / "b8k.wav", wave[::2], 8000)
    out = tool_files / "out8k"
    assert run_tool([str(tool_files / "b8k.wav"), "--out", str(out), "--prior", str(tool_files / "prior.pt")]) == 0
    assert "resampled" in capsys.readouterr().err
    assert soundfile.info(out / "b8k_enhanced.wav").samplerate == RATE
