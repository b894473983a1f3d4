"""Audio front end: STFT round trip, SI-SDR, SNR mixing, reading/writing and every bad input."""

from __future__ import annotations

from types import SimpleNamespace

import numpy as np
import pytest
import soundfile
import torch

from mixdvae.audio import DEFAULT_STFT, STFT, istft, power, power_spectrogram, read_audio, stft, write_audio
from mixdvae.audio.metrics import bss_eval, estoi, mean_interval, pesq_wb, si_sdr
from mixdvae.audio.mixing import mix_at_snr, snr_db
from mixdvae.audio.plotting import plot_spectrograms
from mixdvae.errors import DataNotFoundError, InputError, UsageError
from tests.tools_loader import load_tool

RATE = 16000


def tone(seconds=1.0, rate=RATE, freq=440.0, seed=0):
    rng = np.random.default_rng(seed)
    t = np.arange(int(seconds * rate)) / rate
    return (0.3 * np.sin(2 * np.pi * freq * t) + 0.01 * rng.standard_normal(t.size)).astype(np.float32)


# ---------------------------------------------------------------------------------------------------------- STFT


def test_stft_shape_and_perfect_reconstruction_batched():
    x = torch.randn(2, 3, 8000, dtype=torch.float64)
    spec = stft(x)
    assert spec.shape == (2, 3, DEFAULT_STFT.n_frames(8000), 513)
    assert DEFAULT_STFT.n_frames(8000) == 1 + 8000 // 256
    y = istft(spec, 8000)
    assert y.shape == x.shape
    assert torch.allclose(y, x, atol=1e-10)


def test_stft_batched_equals_one_by_one_and_numpy_in_numpy_out():
    x = np.random.default_rng(1).standard_normal((3, 5000)).astype(np.float32)
    spec = stft(x)
    assert isinstance(spec, np.ndarray)
    for i in range(3):
        np.testing.assert_allclose(spec[i], stft(x[i]), rtol=1e-5, atol=1e-4)
    np.testing.assert_allclose(istft(spec, 5000), x, atol=1e-5)


def test_stft_matches_a_direct_dft_of_one_windowed_frame():
    x = np.random.default_rng(2).standard_normal(4096)
    setting = STFT(n_fft=512, hop=128)
    spec = stft(x, setting)
    t = 5  # frame t is centred on sample t * hop (zero padding of n_fft / 2 at the start)
    start = t * 128 - 256
    window = np.sin(np.pi * (np.arange(512) + 0.5) / 512)
    np.testing.assert_allclose(spec[t], np.fft.rfft(x[start:start + 512] * window), atol=1e-8)


def test_configurable_stft_and_power():
    setting = STFT(n_fft=512, hop=128, window="hann")
    x = torch.randn(3000, dtype=torch.float64)
    spec = setting(x)
    assert spec.shape == (1 + 3000 // 128, 257)
    assert torch.allclose(setting.inverse(spec, 3000), x, atol=1e-10)
    assert torch.allclose(power(spec), spec.abs() ** 2)
    assert torch.allclose(power_spectrogram(x, setting), spec.abs() ** 2)


def test_stft_rejects_short_signals_and_bad_settings():
    with pytest.raises(InputError, match="shorter than one STFT frame"):
        stft(np.zeros(1000))
    with pytest.raises(UsageError):
        STFT(window="kaiser")
    with pytest.raises(UsageError):
        STFT(hop=2048)


# ------------------------------------------------------------------------------------------------------- metrics


def independent_si_sdr(estimate, reference):
    """SI-SDR by projection with numpy's least squares (Le Roux et al. 2019, eq. 4), a different formula."""
    estimate = estimate - estimate.mean()
    reference = reference - reference.mean()
    alpha, *_ = np.linalg.lstsq(reference[:, None], estimate, rcond=None)
    target = alpha[0] * reference
    return 10 * np.log10(np.dot(target, target) / np.dot(estimate - target, estimate - target))


def test_si_sdr_matches_independent_computation_and_known_value():
    rng = np.random.default_rng(3)
    reference = rng.standard_normal(16000)
    estimate = 0.5 * reference + 0.1 * rng.standard_normal(16000)
    assert si_sdr(estimate, reference) == pytest.approx(independent_si_sdr(estimate, reference), abs=1e-9)
    # orthogonal noise of a tenth of the target's energy: 10 dB
    noise = rng.standard_normal(16000)
    noise -= noise.mean()
    ref = reference - reference.mean()
    noise -= np.dot(noise, ref) / np.dot(ref, ref) * ref
    noise *= np.sqrt(0.1 * np.dot(ref, ref) / np.dot(noise, noise))
    assert si_sdr(3.0 * ref + 3.0 * noise, ref) == pytest.approx(10.0, abs=1e-6)


def test_si_sdr_is_batched_and_scale_invariant():
    rng = np.random.default_rng(4)
    reference = rng.standard_normal((2, 3, 4000))
    estimate = reference + 0.3 * rng.standard_normal((2, 3, 4000))
    values = si_sdr(estimate, reference)
    assert values.shape == (2, 3)
    assert values[1, 2] == pytest.approx(si_sdr(estimate[1, 2], reference[1, 2]))
    assert si_sdr(7 * estimate, reference) == pytest.approx(values)
    with pytest.raises(UsageError, match="align"):
        si_sdr(estimate[..., :100], reference)


def test_pesq_and_estoi_rank_a_cleaner_estimate_higher():
    clean = tone(3.0)
    rng = np.random.default_rng(5)
    slightly = clean + 0.01 * rng.standard_normal(clean.size).astype(np.float32)
    very = clean + 0.3 * rng.standard_normal(clean.size).astype(np.float32)
    assert pesq_wb(slightly, clean) > pesq_wb(very, clean)
    assert estoi(slightly, clean) > estoi(very, clean)
    assert 0.9 < estoi(clean, clean) <= 1.0 + 1e-9


def test_mean_interval_brackets_the_mean_narrows_with_data_and_is_seeded():
    rng = np.random.default_rng(7)
    few, many = rng.normal(2.0, 1.0, 12), rng.normal(2.0, 1.0, 400)
    small, large = mean_interval(few), mean_interval(many)
    assert small.low < small.mean < small.high and small.mean == pytest.approx(few.mean())
    assert large.high - large.low < 0.5 * (small.high - small.low)
    assert large.low < large.mean < large.high
    assert mean_interval(few) == small  # seeded
    assert mean_interval([1.0, np.nan, 3.0]).count == 2  # NaN (no PESQ) left out, not propagated
    constant = mean_interval([0.5] * 5)
    assert (constant.low, constant.mean, constant.high) == (0.5, 0.5, 0.5)
    assert small.format() == f"{small.mean:+.2f} [{small.low:+.2f}, {small.high:+.2f}]"


def test_benchmarks_pair_their_differences_by_mixture():
    """A method better than another on every mixture by 1 dB has a paired interval of exactly 1, however much
    the mixtures differ among themselves (an unpaired interval would straddle 0)."""
    enhance_bench, separate_bench = load_tool("benchmark_enhance"), load_tool("benchmark_separate")
    base = [{"si_sdr": v, "pesq": 1.0 + v / 20, "estoi": 0.5} for v in (-5.0, 0.0, 5.0, 10.0)]
    better = [{"si_sdr": r["si_sdr"] + 1.0, "pesq": r["pesq"], "estoi": 0.6} for r in base]
    diff = enhance_bench.paired_differences(better, base, seed=0)
    assert diff["si_sdr"]["low"] == pytest.approx(1.0) and diff["si_sdr"]["high"] == pytest.approx(1.0)
    assert diff["estoi"]["mean"] == pytest.approx(0.1) and diff["pesq"]["mean"] == 0.0
    per_method = {"noisy": base, "vae-vem": base, "dvae-vem": better, "dvae-pair": better, "joint-vem": better}
    assert list(enhance_bench.compare(per_method, seed=0)) == [
        "joint-vem minus vae-vem", "joint-vem minus dvae-vem", "joint-vem minus dvae-pair", "dvae-vem minus vae-vem",
        "dvae-pair minus vae-vem"]
    assert list(enhance_bench.compare({"noisy": base, "dvae-vem": better, "vae-vem": base}, seed=0)) == [
        "dvae-vem minus vae-vem"]

    def row(method, scores):
        return {"method": method, "per_mixture": [{"si_sdr": [s, -s]} for s in scores]}

    rows = [row("supervised NMF", [1.0, 8.0, 4.0]), row("MixDVAE default", [3.0, 10.0, 6.0]),
            row("oracle IRM", [20.0, 20.0, 20.0])]
    compared = separate_bench.compare(rows, seed=0)
    assert list(compared) == ["MixDVAE default minus supervised NMF", "MixDVAE default minus oracle IRM"]
    to_nmf = compared["MixDVAE default minus supervised NMF"]
    assert to_nmf["speech"]["low"] == to_nmf["speech"]["high"] == pytest.approx(2.0)
    assert to_nmf["flute"]["mean"] == pytest.approx(-2.0)
    assert compared["MixDVAE default minus oracle IRM"]["speech"]["mean"] == pytest.approx(19 / 3 - 20)


def test_enhancement_benchmark_exports_pairs_it_reads_back_bit_for_bit(tmp_path):
    bench = load_tool("benchmark_enhance")
    rng = np.random.default_rng(3)
    mixtures = [bench.Mixture(f"clip{i}", *(0.3 * rng.standard_normal((2, 4000 + 1000 * i))).astype(np.float32),
                              0.0, "rain") for i in range(2)]
    bench.export_pairs(mixtures, tmp_path / "pairs")
    back = bench.read_pairs(tmp_path / "pairs")
    assert [m.name for m in back] == ["clip0", "clip1"]
    for m, b in zip(mixtures, back, strict=True):
        np.testing.assert_array_equal(b.clean, m.clean)
        np.testing.assert_array_equal(b.noisy, m.noisy)
    assert sorted(p.name for p in (tmp_path / "pairs").rglob("*")) == [
        "clean", "clip0.wav", "clip0.wav", "clip1.wav", "clip1.wav", "noisy"]  # no temporary file left


def test_enhancement_benchmark_refuses_member_weights_for_single_prior_vems(capsys):
    bench = load_tool("benchmark_enhance")
    assert bench.main(["--set", "member_weights=[2,1]", "--methods", "noisy", "dvae-vem"]) == 2
    assert "joint-vem only" in capsys.readouterr().err


def test_enhancement_benchmark_weights_the_joint_vem_only(monkeypatch, capsys):
    bench = load_tool("benchmark_enhance")
    assert bench.main(["--joint-weights", "1", "--methods", "noisy", "joint-vem"]) == 2
    assert "--joint-weights: 1 weights for 2 joint priors" in capsys.readouterr().err
    weights = {}

    def fake_enhance(noisy, prior, config, device):
        weights[len(prior) if isinstance(prior, list) else 1] = config.member_weights
        return SimpleNamespace(enhanced=noisy, cpu_seconds=0.0, seconds=0.0)

    monkeypatch.setattr(bench, "enhance", fake_enhance)
    args = bench.parse_args(["--joint-weights", "1", "3", "--methods", "noisy", "vae-vem", "joint-vem"])
    mixtures = [bench.Mixture("clip", np.zeros(4000, np.float32), np.zeros(4000, np.float32), 0.0, "rain")]
    for method in ("vae-vem", "joint-vem"):
        bench.run_method(method, mixtures, args, None)
    assert weights == {1: None, 2: (1.0, 3.0)}
    bench.run_method("dvae-pair", mixtures, args, None)  # its own weights, whatever --joint-weights says
    assert weights[2] == bench.DVAE_PAIR_WEIGHTS == (1.0, 2.0)


@pytest.mark.parametrize("flag", ["--nmf-rank", "--speech-nmf-rank"])
def test_separation_benchmark_refuses_a_rank_below_one_before_any_work(flag, capsys):
    assert load_tool("benchmark_separate").main([flag, "0"]) == 2
    assert f"{flag} must be a positive rank, got 0" in capsys.readouterr().err


def test_bss_eval_finds_the_permutation():
    rng = np.random.default_rng(6)
    sources = rng.standard_normal((2, 8000))
    estimates = sources[::-1] + 0.01 * rng.standard_normal((2, 8000))
    scores = bss_eval(estimates, sources)
    assert list(scores.permutation) == [1, 0]
    assert (scores.sdr > 20).all()


# -------------------------------------------------------------------------------------------------------- mixing


@pytest.mark.parametrize("target", [-5.0, 0.0, 5.0])
def test_mix_at_snr_hits_the_target_and_is_seeded(target):
    speech = tone(1.0)
    noise = np.random.default_rng(7).standard_normal(5000).astype(np.float32)  # shorter: looped
    mix = mix_at_snr(speech, noise, target, seed=11)
    assert snr_db(mix.speech, mix.noise) == pytest.approx(target, abs=1e-3)
    np.testing.assert_allclose(mix.mixture, mix.speech + mix.noise, atol=1e-6)
    again = mix_at_snr(speech, noise, target, seed=11)
    assert again.offset == mix.offset
    np.testing.assert_array_equal(again.mixture, mix.mixture)
    assert mix_at_snr(speech, noise, target, seed=12).offset != mix.offset


def test_mix_at_snr_rejects_silent_noise():
    with pytest.raises(InputError, match="silent"):
        mix_at_snr(tone(0.5), np.zeros(100), 0.0)


# ------------------------------------------------------------------------------------------------------------ io


def test_write_and_read_round_trip(tmp_path):
    x = tone(0.5)
    path = tmp_path / "out" / "x.wav"
    write_audio(path, x)
    audio = read_audio(path)
    assert audio.rate == RATE and not audio.resampled and audio.samples.dtype == np.float32
    np.testing.assert_allclose(audio.samples, x, atol=1 / 32768 + 1e-7)
    assert [p.name for p in path.parent.iterdir()] == ["x.wav"]  # no temporary file left


def test_write_refuses_nan_and_leaves_no_file(tmp_path):
    x = tone(0.5)
    x[10] = np.nan
    with pytest.raises(UsageError, match="NaN"):
        write_audio(tmp_path / "x.wav", x)
    assert not list(tmp_path.iterdir())


def test_other_rate_is_resampled_and_reported(tmp_path, capsys):
    path = tmp_path / "x44.wav"
    soundfile.write(path, tone(1.0, rate=44100), 44100)
    audio = read_audio(path)
    assert audio.resampled and audio.source_rate == 44100 and audio.rate == RATE
    assert abs(len(audio.samples) - RATE) <= 1
    assert "resampled from 44100 Hz to 16000 Hz" in capsys.readouterr().err
    spectrum = np.abs(np.fft.rfft(audio.samples))
    assert np.argmax(spectrum) == pytest.approx(440, abs=2)  # the tone stays at 440 Hz (1 s: 1 Hz bins)


def test_stereo_is_rejected_unless_mixed_down(tmp_path):
    path = tmp_path / "stereo.wav"
    x = tone(0.5)
    soundfile.write(path, np.stack([x, 0.5 * x], axis=1), RATE)
    with pytest.raises(InputError, match=r"stereo\.wav: 2 channels"):
        read_audio(path)
    audio = read_audio(path, mix_down=True)
    assert audio.mixed_down
    np.testing.assert_allclose(audio.samples, 0.75 * x, atol=1e-4)


@pytest.mark.parametrize(
    ("samples", "message"),
    [
        (np.zeros(0, np.float32), "empty"),
        (np.zeros(RATE, np.float32), "silent"),
        (tone(0.02), "shorter than one STFT frame"),
        (np.where(np.arange(RATE) == 5, np.nan, tone(1.0)).astype(np.float32), "NaN"),
    ],
    ids=["empty", "silent", "too-short", "nan"],
)
def test_bad_audio_is_an_input_error_naming_the_file(tmp_path, samples, message):
    path = tmp_path / "bad.wav"
    soundfile.write(path, samples, RATE, subtype="FLOAT")
    with pytest.raises(InputError, match=message) as info:
        read_audio(path)
    assert "bad.wav" in str(info.value)


def test_unreadable_and_missing_files(tmp_path):
    garbage = tmp_path / "garbage.wav"
    garbage.write_bytes(b"RIFF not really a wave file")
    with pytest.raises(InputError, match="garbage.wav: not a readable audio file"):
        read_audio(garbage)
    with pytest.raises(DataNotFoundError, match="nothing.wav"):
        read_audio(tmp_path / "nothing.wav")
    with pytest.raises(InputError, match="not a file"):
        read_audio(tmp_path)


def test_g722_is_decoded(tmp_path):
    g722 = pytest.importorskip("G722")
    x = (tone(0.5) * 32767).astype(np.int16)
    path = tmp_path / "prompt.g722"
    path.write_bytes(bytes(g722.G722(16000, 64000).encode(x)))
    audio = read_audio(path)
    assert audio.rate == RATE and len(audio.samples) == len(x)
    delay = 22  # samples of the G.722 codec's filter banks
    assert np.corrcoef(audio.samples[200:7000], x[200 - delay:7000 - delay])[0, 1] > 0.99


# ------------------------------------------------------------------------------------------------------ plotting


def test_plot_spectrograms_writes_a_png(tmp_path):
    x = tone(1.0)
    path = tmp_path / "spec.png"
    plot_spectrograms(path, {"noisy": x + 0.1, "enhanced": x, "clean": x}, title="demo")
    assert path.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    assert [p.name for p in tmp_path.iterdir()] == ["spec.png"]
