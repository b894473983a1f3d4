"""Spectrogram priors: the Itakura-Saito likelihood, the log-power parameterisation, the VAE and SRNN on power
spectra (shapes, batching, checkpoints), and a tiny training run on synthetic spectra."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch

from mixdvae.dvae import DKF, DVAE, MODELS, RVAE, SRNN, VAE, load_prior
from mixdvae.dvae.likelihood import make_likelihood
from mixdvae.dvae.training import (
    AUDIO_DEFAULT_CONFIG,
    SpectrogramBatches,
    SpectrogramData,
    merge_config,
    random_equaliser,
    spectrogram_statistics,
    train_prior,
    warp_frequencies,
)
from mixdvae.errors import ConfigError

BINS = 12
TINY_SPECTRAL = {"x_dim": BINS, "z_dim": 3, "h_dim": 10, "dense_dim": 16, "embed_dim": 8,
                 "likelihood": "itakura_saito", "param": "log_power", "logvar_range": [-20.0, 20.0]}


def spectral_model(name: str, **overrides) -> DVAE:
    torch.manual_seed(0)
    return MODELS[name]({**TINY_SPECTRAL, **overrides})


def synthetic_power(batch: int, length: int, seed: int = 0) -> torch.Tensor:
    """Power spectra (B, T, BINS): one of two spectral envelopes per run of 4 frames, times Exp(1) noise (the power
    of a complex Gaussian)."""
    gen = torch.Generator().manual_seed(seed)
    bins = torch.arange(BINS, dtype=torch.float32)
    envelopes = torch.stack([torch.exp(-bins / 3), torch.exp(-((bins - 8) ** 2) / 4)]) * 1e-2  # (2, F)
    which = torch.randint(0, 2, (batch, (length + 3) // 4), generator=gen).repeat_interleave(4, dim=1)[:, :length]
    noise = -torch.log(torch.rand(batch, length, BINS, generator=gen))
    return envelopes[which] * noise


def test_itakura_saito_equals_its_formula_and_the_complex_gaussian_density():
    gen = torch.Generator().manual_seed(0)
    s = torch.complex(torch.randn(3, 5, 7, generator=gen), torch.randn(3, 5, 7, generator=gen))
    x = s.abs() ** 2
    var = torch.rand(3, 5, 7, generator=gen) + 0.1
    nll = make_likelihood("itakura_saito").nll(x, torch.zeros_like(x), var)
    assert nll.shape == (3, 5)
    torch.testing.assert_close(nll, (torch.log(var) + x / var + math.log(math.pi)).sum(-1))
    # independent: real and imaginary parts of N_c(0, v) are independent N(0, v / 2)
    part = torch.distributions.Normal(0.0, (var / 2).sqrt())
    expected = -(part.log_prob(s.real) + part.log_prob(s.imag)).sum(-1)
    torch.testing.assert_close(nll, expected, rtol=1e-5, atol=1e-4)
    # up to terms in x alone, it is the Itakura-Saito divergence, minimal (= 0) at var = x
    divergence = (x / var - torch.log(x / var) - 1).sum(-1)
    constant = (torch.log(x) + 1 + math.log(math.pi)).sum(-1)
    torch.testing.assert_close(nll - constant, divergence, rtol=1e-5, atol=1e-4)


def test_log_power_io_standardises_the_input_and_outputs_one_variance():
    mean, std = [0.5] * BINS, [2.0] * BINS
    model = spectral_model("vae", x_mean=mean, x_std=std)
    x = torch.full((2, 3, BINS), math.exp(4.5))
    n = torch.ones(2, 3, 1)
    torch.testing.assert_close(model.io.features(x, None, n), torch.full((2, 3, BINS), 2.0))
    raw = torch.zeros(2, 3, BINS)
    power, var = model.io.output(raw, raw, x, n)
    torch.testing.assert_close(power, var)
    torch.testing.assert_close(var, torch.full_like(var, math.exp(0.5)))  # raw 0: mid of logvar_range = 0
    assert torch.isfinite(model.io.output(raw, torch.full_like(raw, 1e4), x, n)[1]).all()


def test_spectrogram_statistics_are_per_bin_log_power_moments():
    power = synthetic_power(4, 30).reshape(-1, BINS)
    stats = spectrogram_statistics(power, 1e-10)
    log_power = torch.log(power.double() + 1e-10)
    assert stats["x_dim"] == BINS
    np.testing.assert_allclose(stats["x_mean"], log_power.mean(0), rtol=1e-6)
    np.testing.assert_allclose(stats["x_std"], log_power.std(0, unbiased=False), rtol=1e-5)


def test_frequency_warp_moves_harmonics_and_keeps_identity():
    power = torch.full((2, 3, 513), 1e-3)
    power[..., 100] = 1.0  # one harmonic at bin 100
    warped = warp_frequencies(power, torch.tensor([1.1, 0.9]))
    assert int(warped[0, 0].argmax()) == 110 and int(warped[1, 0].argmax()) == 90
    torch.testing.assert_close(warp_frequencies(power, torch.ones(2)), power)
    assert torch.isfinite(warped).all() and (warped > 0).all()


def test_random_equaliser_is_smooth_bounded_and_seeded():
    gains = random_equaliser(np.random.default_rng(1), 16, 513, 6.0)
    db = 10 * torch.log10(gains)
    assert gains.shape == (16, 513) and float(db.abs().max()) <= 6.0 + 1e-4
    assert float(db.std(1).mean()) > 0.5  # not flat
    assert float(db.diff(dim=1).abs().max()) < 0.5  # smooth: under 0.5 dB between neighbouring bins
    torch.testing.assert_close(random_equaliser(np.random.default_rng(1), 16, 513, 6.0), gains)


def test_warp_augmentation_is_seeded_and_validated():
    frames = torch.rand(400, 33) + 0.01
    data = SpectrogramData(frames, frames[:100].reshape(2, 50, 33), "synthetic", ["a"])
    config = merge_config(AUDIO_DEFAULT_CONFIG, {"data": {"audio": {"warp": [0.9, 1.1]}}})
    batches = SpectrogramBatches(data, config, "cpu")
    first, second = (batches.batch(np.random.default_rng(4))[0] for _ in range(2))
    torch.testing.assert_close(first, second)
    plain = SpectrogramBatches(data, AUDIO_DEFAULT_CONFIG, "cpu").batch(np.random.default_rng(4))[0]
    assert first.shape == plain.shape and not torch.allclose(first, plain)
    for bad in ([1.2, 0.9], [0.1, 1.0], [1.0]):
        with pytest.raises(ValueError, match="warp"):
            SpectrogramBatches(data, merge_config(AUDIO_DEFAULT_CONFIG, {"data": {"audio": {"warp": bad}}}), "cpu")
    with pytest.raises(ValueError, match="eq_db"):
        SpectrogramBatches(data, merge_config(AUDIO_DEFAULT_CONFIG, {"data": {"audio": {"eq_db": -1}}}), "cpu")
    coloured = SpectrogramBatches(data, merge_config(AUDIO_DEFAULT_CONFIG, {"data": {"audio": {"eq_db": 6.0}}}), "cpu")
    ratio = coloured.batch(np.random.default_rng(4))[0] / plain
    torch.testing.assert_close(ratio, ratio[:, :1].expand_as(ratio))  # one envelope per crop, the same on every frame
    assert float(ratio.std()) > 0.01


@pytest.mark.parametrize("name", ["vae", "srnn"])
def test_spectral_priors_shapes_batching_and_steps(name):
    model = spectral_model(name)
    x = synthetic_power(3, 9)
    out = model.elbo(x, generator=torch.Generator().manual_seed(1))
    assert out["var"].shape == (3, 9, BINS) and out["z"].shape == (3, 9, 3)
    torch.testing.assert_close(out["mean"], out["var"])
    assert torch.isfinite(out["loss"]) and out["kl"] >= 0
    q_mean, q_var = model.encode(x)
    assert q_mean.shape == q_var.shape == (3, 9, 3) and (q_var > 0).all()
    batched = model.predict_sequence(x, q_mean)["var"]
    for b in range(3):
        single = model.predict_sequence(x[b : b + 1], q_mean[b : b + 1])["var"][0]
        torch.testing.assert_close(single, batched[b], rtol=1e-5, atol=1e-9)
    # step by step, teacher forced, equals the whole-sequence pass
    state, x_prev = model.init_state(3), model.x0(3)
    for t in range(9):
        _, var, state = model.step(state, x_prev, q_mean[:, t])
        torch.testing.assert_close(var, batched[:, t], rtol=1e-5, atol=1e-9)
        x_prev = x[:, t]


def test_vae_is_frame_independent():
    model = spectral_model("vae")
    x = synthetic_power(1, 6)
    y = x.clone()
    y[:, :3] *= 10  # other earlier frames
    torch.testing.assert_close(model.encode(x)[0][:, 3:], model.encode(y)[0][:, 3:])
    z = torch.randn(1, 6, 3)
    torch.testing.assert_close(model.predict_sequence(x, z)["var"], model.predict_sequence(y, z)["var"])


@pytest.mark.parametrize("name", ["vae", "srnn"])
def test_spectral_prior_checkpoint_round_trip(tmp_path, name):
    model = spectral_model(name, x_mean=[-3.0] * BINS, x_std=[1.5] * BINS)
    path = tmp_path / f"{name}_speech.pt"
    model.save(path)
    loaded = load_prior(path)
    assert type(loaded) is (VAE if name == "vae" else SRNN) and loaded.config == model.config
    x = synthetic_power(2, 5)
    z = torch.randn(2, 5, 3)
    torch.testing.assert_close(loaded.predict_sequence(x, z)["var"], model.predict_sequence(x, z)["var"])


@pytest.mark.parametrize("name", ["vae", "srnn"])
def test_tiny_training_on_synthetic_spectra_lowers_the_loss(tmp_path, name):
    data = SpectrogramData(train=synthetic_power(1, 4000, seed=1)[0], val=synthetic_power(16, 12, seed=2),
                           corpus="synthetic", speakers=["synthetic"])
    config = {
        "seed": 0,
        "model": {"model": name, **TINY_SPECTRAL},
        "data": {"audio": {"corpus": "unused", "segment": 12}},
        "train": {"batch_size": 16, "epochs": 12, "batches_per_epoch": 10, "kl_warmup_epochs": 2, "lr": 3e-3,
                  "threads": 1, "patience": 100},
        "output": {"dir": str(tmp_path / "run"), "plot": False},
    }
    result = train_prior(config, log=lambda message: None, progress=False, data=data)
    history = result.history
    assert history[-1]["val_is"] < 0.8 * history[0]["val_is"]
    assert history[-1]["recon"] < history[0]["recon"]
    assert result.model.meta["data"]["train_frames"] == 4000
    assert DVAE.load(result.checkpoint).config["x_mean"] == pytest.approx(
        spectrogram_statistics(data.train, 1e-10)["x_mean"])


def test_two_stage_training_copies_and_freezes_named_modules(tmp_path):
    """A DKF built on a trained VAE's decoder (``train.init_from``, ``init_modules``, ``freeze``): the frozen
    decoder keeps the VAE's weights, the rest trains; other data statistics or unknown modules are refused."""
    data = SpectrogramData(train=synthetic_power(1, 2000, seed=1)[0], val=synthetic_power(8, 12, seed=2),
                           corpus="synthetic", speakers=["synthetic"])

    def config(name, out, **train):
        return {"seed": 0, "model": {"model": name, **TINY_SPECTRAL}, "data": {"audio": {"corpus": "-", "segment": 12}},
                "train": {"batch_size": 8, "epochs": 3, "batches_per_epoch": 4, "kl_warmup_epochs": 1, "threads": 1,
                          **train},
                "output": {"dir": str(tmp_path / out), "plot": False}}

    vae = train_prior(config("vae", "vae"), log=lambda m: None, progress=False, data=data)
    two_stage = config("dkf", "dkf", init_from=str(vae.checkpoint), init_modules=["decoder", "embed_x"],
                       freeze=["decoder"])
    dkf = train_prior(two_stage, log=lambda m: None, progress=False, data=data).model
    for key, value in vae.model.decoder.state_dict().items():
        torch.testing.assert_close(dkf.decoder.state_dict()[key], value)
    assert not torch.allclose(dkf.embed_x[0].weight, vae.model.embed_x[0].weight)  # copied, then trained
    other = SpectrogramData(train=synthetic_power(1, 2000, seed=1)[0] * 10, val=data.val, corpus="x", speakers=["x"])
    with pytest.raises(ConfigError, match="x_mean differs"):
        train_prior(two_stage, log=lambda m: None, progress=False, data=other)
    for bad in ({"init_modules": ["decoder", "nope"]}, {"init_modules": []}, {"freeze": ["nope"]}):
        with pytest.raises(ConfigError, match="train\\."):
            train_prior({**two_stage, "train": {**two_stage["train"], **bad}}, log=lambda m: None, progress=False,
                        data=data)


def test_shipped_speech_priors_load_by_name():
    for name, cls in (("srnn_speech", SRNN), ("vae_speech", VAE), ("dkf_speech", DKF), ("rvae_speech", RVAE)):
        try:
            prior = load_prior(name)
        except FileNotFoundError:
            pytest.skip(f"data/priors/{name}.pt not trained yet")
        assert isinstance(prior, cls) and prior.config["x_dim"] == 513
        assert prior.config["likelihood"] == "itakura_saito" and prior.config["param"] == "log_power"
        x = torch.rand(1, 20, 513) * 1e-3
        q_mean, _ = prior.encode(x)
        var = prior.predict_sequence(x, q_mean)["var"]
        assert torch.isfinite(var).all() and (var > 0).all()


def test_audio_folder_data_reads_every_folder_of_a_list(tmp_path):
    """``data: audio: folder:`` takes one folder or a list: each pattern is matched in every folder, a pattern that
    matches nothing anywhere (or a missing folder) is refused naming it, and a file in both splits is refused."""
    from mixdvae.audio import write_audio
    from mixdvae.audio.stft import STFT
    from mixdvae.dvae.training import build_spectrogram_data, folder_files
    from mixdvae.errors import DataNotFoundError

    rng = np.random.default_rng(0)
    (tmp_path / "a").mkdir()
    (tmp_path / "b").mkdir()
    for folder, name in [("a", "one_00"), ("a", "one_01"), ("b", "two_00"), ("b", "two_01")]:
        write_audio(tmp_path / folder / f"{name}.flac", (0.1 * rng.standard_normal(4096)).astype(np.float32))
    audio = {"folder": [str(tmp_path / "a"), str(tmp_path / "b")], "train": ["one_00.flac", "two_00.flac"],
             "val": ["*_01.flac"], "segment": 4, "n_fft": 256, "hop": 64, "window": "sine"}
    data = build_spectrogram_data({"data": {"audio": audio}}, log=lambda m: None)
    assert data.speakers == ["one_00.flac", "two_00.flac"]
    frames = STFT(256, 64, "sine").n_frames(4096)
    assert data.train.shape == (2 * frames, 129)  # the two training files, one from each folder
    assert data.val.shape[0] == (2 * frames) // 4
    single = folder_files(tmp_path / "a", "one_*.flac")
    assert [p.name for p in single] == ["one_00.flac", "one_01.flac"]
    with pytest.raises(DataNotFoundError, match="no audio file matches 'three_"):
        folder_files([tmp_path / "a", tmp_path / "b"], ["one_00.flac", "three_*.flac"])
    with pytest.raises(DataNotFoundError, match="missing: audio folder not found"):
        folder_files([tmp_path / "a", tmp_path / "missing"], "*.flac")
    with pytest.raises(ValueError, match="both in train and val"):
        build_spectrogram_data({"data": {"audio": {**audio, "val": ["two_00.flac"]}}}, log=lambda m: None)
