"""Speech corpus: recordings by speaker folder, silence trimming, speaker-disjoint seeded splits, the tool."""

from __future__ import annotations

import json

import numpy as np
import pytest
import soundfile

from mixdvae.audio import read_audio
from mixdvae.audio.corpus import CorpusSettings, build_corpus, find_recordings, load_split, trim_silence
from mixdvae.errors import EXIT_NOT_FOUND, EXIT_USAGE
from tests.tools_loader import load_tool

RATE = 16000


def utterance(seed: int, speech_s: float = 0.5, silence_s: float = 0.4) -> np.ndarray:
    """``silence_s`` of near-silence, ``speech_s`` of a noisy tone, ``silence_s`` of near-silence."""
    rng = np.random.default_rng(seed)
    quiet = 1e-5 * rng.standard_normal(int(silence_s * RATE))
    t = np.arange(int(speech_s * RATE)) / RATE
    loud = 0.3 * np.sin(2 * np.pi * (200 + 50 * seed) * t) + 0.01 * rng.standard_normal(t.size)
    return np.concatenate([quiet, loud, quiet]).astype(np.float32)


@pytest.fixture
def speech_root(tmp_path):
    """Speakers A, B, C with 4 utterances each (C's in a subfolder), a silence/ folder and an alias link."""
    root = tmp_path / "sounds"
    for k, speaker in enumerate("ABC"):
        folder = root / speaker / ("digits" if speaker == "C" else "")
        folder.mkdir(parents=True)
        for i in range(4):
            soundfile.write(folder / f"u{i}.wav", utterance(10 * k + i), RATE)
    (root / "A" / "silence").mkdir()
    soundfile.write(root / "A" / "silence" / "1.wav", np.zeros(RATE, np.float32), RATE)
    (root / "alias").symlink_to(root / "A", target_is_directory=True)
    return root


def test_trim_silence_keeps_the_speech_and_a_margin():
    x = utterance(0, speech_s=0.5, silence_s=0.4)
    trimmed = trim_silence(x, RATE, threshold_db=40, margin=0.1)
    assert 0.5 * RATE <= len(trimmed) <= 0.5 * RATE + 2 * (0.1 * RATE + 512)
    assert np.abs(trimmed).max() == np.abs(x).max()


def test_recordings_by_speaker_skip_silence_folders_and_links(speech_root):
    recordings = find_recordings(speech_root)
    assert sorted({r.speaker for r in recordings}) == ["A", "B", "C"]
    assert len(recordings) == 12
    assert not any("silence" in r.name or r.name.startswith("alias") for r in recordings)


def test_build_corpus_is_speaker_disjoint_seeded_and_trimmed(speech_root, tmp_path):
    settings = CorpusSettings(test_speakers=["C"], val_fraction=0.25, seed=3)
    summary = build_corpus(speech_root, tmp_path / "corpus", settings, progress=False)
    train, val, test = (load_split(tmp_path / "corpus", name) for name in ("train", "val", "test"))
    assert test.speaker_names == ["C"] and len(test) == 4
    assert train.speaker_names == val.speaker_names == ["A", "B"]
    assert len(train) == 6 and len(val) == 2  # one of each training speaker's 4 utterances
    assert not set(train.utterance_names) & set(val.utterance_names)
    for split in (train, val, test):
        lengths = np.diff(split.offsets)
        assert (lengths < 1.3 * RATE).all() and (lengths > 0.5 * RATE).all()  # 1.3 s files, trimmed
    source = read_audio(speech_root / "C" / "digits" / "u0.wav").samples
    np.testing.assert_array_equal(test.utterance(0), trim_silence(source))  # 16-bit sources are stored exactly
    assert summary["splits"]["test"]["speakers"] == {"C": pytest.approx(test.minutes()["C"], abs=0.01)}
    assert json.loads((tmp_path / "corpus" / "corpus.json").read_text())["settings"]["seed"] == 3
    again = build_corpus(speech_root, tmp_path / "again", settings, progress=False)
    assert again["splits"] == summary["splits"]
    assert load_split(tmp_path / "again", "val").utterance_names == val.utterance_names


def test_make_speech_corpus_tool(speech_root, tmp_path, capsys):
    tool = load_tool("make_speech_corpus")
    out = tmp_path / "corpus"
    assert tool.main([str(speech_root), "--out", str(out), "--test-speakers", "B", "--no-progress"]) == 0
    printed = capsys.readouterr().out
    assert "test" in printed and "B" in printed and "minutes" in printed
    assert {p.name for p in out.iterdir()} == {"train.npz", "val.npz", "test.npz", "corpus.json"}
    assert tool.main([str(speech_root), "--out", str(out), "--test-speakers", "Z", "--no-progress"]) == EXIT_USAGE
    assert "'Z'" in capsys.readouterr().err
    assert tool.main([str(tmp_path / "absent"), "--out", str(out), "--no-progress"]) == EXIT_NOT_FOUND


def test_speech_basis_is_learned_on_chosen_training_utterances_and_seeded(speech_root, tmp_path):
    from mixdvae.audio.enhance import learn_speech_basis

    build_corpus(speech_root, tmp_path / "corpus", CorpusSettings(test_speakers=["C"], val_fraction=0.25, seed=3),
                 progress=False)
    basis = learn_speech_basis(tmp_path / "corpus", rank=4, utterances=3)
    assert basis.W.shape == (513, 4) and basis.meta["utterances"] == 3 and basis.meta["rank"] == 4
    np.testing.assert_allclose(basis.W.sum(0).numpy(), 1.0, rtol=1e-5)  # unit-sum columns
    assert learn_speech_basis(tmp_path / "corpus", rank=4, utterances=3).W.equal(basis.W)
    every = learn_speech_basis(tmp_path / "corpus", rank=4, utterances=100)  # more than the split holds: all 6
    assert every.meta["utterances"] == len(load_split(tmp_path / "corpus", "train")) == 6
    assert 0 < basis.meta["frames"] < every.meta["frames"]


def test_separation_ships_the_speech_class_basis_from_the_corpus(speech_root, tmp_path, monkeypatch, capsys):
    """``benchmark_separate.py --ship-nmf speech`` learns nmf_speech on the corpus's training split (the procedure
    of learn_speech_basis, rank --nmf-rank), not on a flute prior's files, and writes it to the priors folder."""
    from mixdvae.audio.enhance import NMFBasis, learn_speech_basis

    corpus = tmp_path / "corpus"
    build_corpus(speech_root, corpus, CorpusSettings(test_speakers=["C"], val_fraction=0.25, seed=3), progress=False)
    tool = load_tool("benchmark_separate")
    monkeypatch.setattr(tool, "PRIORS_DIR", tmp_path / "priors")
    (tmp_path / "priors").mkdir()
    assert tool.main(["--ship-nmf", "speech", "--nmf-rank", "3", "--corpus", str(corpus)]) == 0
    shipped = NMFBasis.load(tmp_path / "priors" / "nmf_speech.pt")
    assert shipped.W.equal(learn_speech_basis(corpus, rank=3).W) and shipped.meta["utterances"] == 6
    assert "rank 3" in capsys.readouterr().out
