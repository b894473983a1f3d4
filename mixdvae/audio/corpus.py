"""Speech corpora for the spectrogram priors: find, trim and split recordings; store and load the splits.

A source folder holds one folder per speaker (at ``speaker_depth`` levels below the root; deeper folders
belong to their speaker) with ``.wav``, ``.flac``, ``.ogg`` or ``.g722`` files. Folders named in ``skip``
(default ``silence``) and symbolic links to folders are not visited (the Debian asterisk-sounds packages add
alias links such as ``en_US -> en_US_f_Allison``).

Every file is read at 16 kHz mono (:func:`mixdvae.audio.read_audio`), its leading and trailing silence is
trimmed (frames more than ``threshold_db`` below the file's loudest frame, keeping ``margin`` seconds), and the
speakers are split speaker-disjointly: the test speakers (named, or drawn with the seed) hold out all their
utterances; a seeded ``val_fraction`` of every other speaker's utterances goes to validation, the rest to
training.

Each split is one ``SPLIT.npz`` in the corpus folder (:func:`save_split` / :func:`load_split`): the trimmed
utterances concatenated as int16 ``samples``, their ``offsets`` (U + 1), ``speaker`` index per utterance,
``speaker_names`` and ``utterance_names`` (paths relative to the source root); ``corpus.json`` holds the
summary and the settings.
"""

from __future__ import annotations

import json
import os
import sys
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from mixdvae.errors import DataNotFoundError, InputError, UsageError
from mixdvae.mot import atomic_write, atomic_write_text

from .io import AUDIO_SUFFIXES, MODEL_RATE, read_audio

SPLITS = ("train", "val", "test")
TRIM_FRAME = 512  # samples per frame of the silence detector (32 ms at 16 kHz)


@dataclass
class Recording:
    """One source file: ``path``, its ``speaker`` (folder name(s) at the speaker depth) and ``name`` (relative)."""

    path: Path
    speaker: str
    name: str


@dataclass
class SpeechSplit:
    """Utterances of one split, concatenated: ``samples`` (N,) float32 at ``rate`` Hz; utterance ``i`` is
    ``samples[offsets[i]:offsets[i + 1]]`` by speaker ``speaker_names[speaker[i]]``."""

    samples: np.ndarray
    offsets: np.ndarray
    speaker: np.ndarray
    speaker_names: list[str]
    utterance_names: list[str]
    rate: int = MODEL_RATE

    def __len__(self) -> int:
        return len(self.offsets) - 1

    def utterance(self, index: int) -> np.ndarray:
        """Samples (n,) of utterance ``index``."""
        return self.samples[self.offsets[index] : self.offsets[index + 1]]

    def speaker_samples(self, name: str) -> np.ndarray:
        """All utterances of speaker ``name`` concatenated, (n,)."""
        indices = [i for i in range(len(self)) if self.speaker_names[self.speaker[i]] == name]
        return np.concatenate([self.utterance(i) for i in indices]) if indices else np.zeros(0, np.float32)

    def minutes(self) -> dict[str, float]:
        """Minutes of audio per speaker."""
        lengths = np.diff(self.offsets)
        return {name: float(lengths[self.speaker == k].sum()) / self.rate / 60
                for k, name in enumerate(self.speaker_names)}


@dataclass
class CorpusSettings:
    """How a corpus is built (see the module docstring)."""

    speaker_depth: int = 1
    test_speakers: Sequence[str] | None = None
    n_test_speakers: int = 1
    val_fraction: float = 0.05
    seed: int = 0
    threshold_db: float = 40.0
    margin: float = 0.1
    skip: Sequence[str] = ("silence",)


def find_recordings(
    root: str | os.PathLike, speaker_depth: int = 1, skip: Sequence[str] = ("silence",)
) -> list[Recording]:
    """Audio files under ``root`` by speaker, sorted by name (see the module docstring)."""
    root = Path(root)
    if not root.is_dir():
        raise DataNotFoundError(f"{root}: speech folder not found")
    if speaker_depth < 1:
        raise UsageError(f"speaker depth must be >= 1, got {speaker_depth}")
    found = []
    for folder, subfolders, files in os.walk(root):  # does not follow symbolic links to folders
        subfolders[:] = sorted(d for d in subfolders if d not in skip)
        relative = Path(folder).relative_to(root)
        if len(relative.parts) < speaker_depth:
            continue
        speaker = "/".join(relative.parts[:speaker_depth])
        for name in sorted(files):
            if Path(name).suffix.lower() in AUDIO_SUFFIXES:
                found.append(Recording(Path(folder) / name, speaker, str(relative / name)))
    if not found:
        raise DataNotFoundError(
            f"{root}: no {'/'.join(AUDIO_SUFFIXES)} files in speaker folders {speaker_depth} level(s) down"
        )
    return found


def trim_silence(
    samples: np.ndarray, rate: int = MODEL_RATE, threshold_db: float = 40.0, margin: float = 0.1
) -> np.ndarray:
    """``samples`` (N,) without the leading and trailing frames quieter than ``threshold_db`` below the loudest
    frame (frames of :data:`TRIM_FRAME` samples), keeping ``margin`` seconds of context on each side."""
    n_frames = len(samples) // TRIM_FRAME
    if n_frames < 1:
        return samples
    frames = samples[: n_frames * TRIM_FRAME].astype(np.float64).reshape(n_frames, TRIM_FRAME)
    energy_db = 10 * np.log10((frames**2).mean(1) + 1e-20)
    loud = np.flatnonzero(energy_db > energy_db.max() - threshold_db)
    pad = int(round(margin * rate))
    start = max(0, loud[0] * TRIM_FRAME - pad)
    stop = min(len(samples), (loud[-1] + 1) * TRIM_FRAME + pad)
    return samples[start:stop]


def choose_test_speakers(speakers: Sequence[str], settings: CorpusSettings) -> list[str]:
    """The named test speakers (each must exist), else ``n_test_speakers`` drawn with the seed."""
    if settings.test_speakers:
        unknown = sorted(set(settings.test_speakers) - set(speakers))
        if unknown:
            raise UsageError(f"test speaker(s) {unknown} not in the corpus; speakers: {sorted(speakers)}")
        return sorted(settings.test_speakers)
    if not 0 <= settings.n_test_speakers < len(speakers):
        raise UsageError(f"cannot hold out {settings.n_test_speakers} of {len(speakers)} speakers")
    rng = np.random.default_rng(settings.seed)
    return sorted(rng.choice(sorted(speakers), settings.n_test_speakers, replace=False).tolist())


def assign_splits(recordings: Sequence[Recording], settings: CorpusSettings) -> dict[str, list[Recording]]:
    """Speaker-disjoint train / val / test lists (validation: a seeded fraction of each training speaker)."""
    speakers = sorted({r.speaker for r in recordings})
    test = set(choose_test_speakers(speakers, settings))
    rng = np.random.default_rng(settings.seed + 1)
    splits: dict[str, list[Recording]] = {name: [] for name in SPLITS}
    for speaker in speakers:
        own = [r for r in recordings if r.speaker == speaker]
        if speaker in test:
            splits["test"] += own
            continue
        n_val = int(round(settings.val_fraction * len(own)))
        chosen = set(rng.choice(len(own), n_val, replace=False).tolist())
        for i, recording in enumerate(own):
            splits["val" if i in chosen else "train"].append(recording)
    return splits


def build_split(
    recordings: Sequence[Recording], settings: CorpusSettings, progress: bool = True
) -> tuple[SpeechSplit, list[str]]:
    """Read and trim ``recordings`` into a :class:`SpeechSplit`; also returns the skipped files with reasons
    (unusable audio: silent, too short, unreadable)."""
    from tqdm import tqdm

    speaker_names = sorted({r.speaker for r in recordings})
    pieces, speakers, names, skipped = [], [], [], []
    for recording in tqdm(recordings, desc="reading", unit="file", disable=not progress, leave=False):
        try:
            audio = read_audio(recording.path, MODEL_RATE, min_samples=TRIM_FRAME, quiet=True)
        except InputError as err:
            skipped.append(str(err))
            continue
        trimmed = trim_silence(audio.samples, MODEL_RATE, settings.threshold_db, settings.margin)
        pieces.append(trimmed)
        speakers.append(speaker_names.index(recording.speaker))
        names.append(recording.name)
    lengths = [len(p) for p in pieces]
    samples = np.concatenate(pieces) if pieces else np.zeros(0, np.float32)
    split = SpeechSplit(samples.astype(np.float32), np.concatenate([[0], np.cumsum(lengths)]).astype(np.int64),
                        np.asarray(speakers, dtype=np.int64), speaker_names, names)
    return split, skipped


def save_split(path: str | os.PathLike, split: SpeechSplit) -> None:
    """Write ``split`` as a compressed ``.npz`` (int16 samples) atomically."""
    pcm = np.clip(np.round(split.samples * 32768), -32768, 32767).astype(np.int16)  # lossless for 16-bit sources
    atomic_write(path, lambda handle: np.savez_compressed(
        handle, samples=pcm, offsets=split.offsets, speaker=split.speaker, rate=split.rate,
        speaker_names=np.asarray(split.speaker_names), utterance_names=np.asarray(split.utterance_names),
    ), binary=True)


def load_split(corpus: str | os.PathLike, split: str) -> SpeechSplit:
    """The ``split`` (``"train"``, ``"val"`` or ``"test"``) of the corpus folder ``corpus``."""
    if split not in SPLITS:
        raise UsageError(f"unknown split {split!r}; known: {list(SPLITS)}")
    path = Path(corpus) / f"{split}.npz"
    if not path.is_file():
        raise DataNotFoundError(f"{path} not found; build the corpus with tools/make_speech_corpus.py")
    try:
        with np.load(path, allow_pickle=False) as data:
            return SpeechSplit(
                data["samples"].astype(np.float32) / 32768, data["offsets"], data["speaker"],
                data["speaker_names"].tolist(), data["utterance_names"].tolist(), int(data["rate"]),
            )
    except (OSError, ValueError, KeyError) as err:
        raise InputError(f"{path}: not a speech corpus split ({err})") from None


def build_corpus(
    root: str | os.PathLike, out: str | os.PathLike, settings: CorpusSettings, progress: bool = True
) -> dict:
    """Build the three splits of ``root`` into the folder ``out``; returns (and writes as ``corpus.json``) the
    summary: minutes per split and speaker, counts, skipped files and the settings."""
    recordings = find_recordings(root, settings.speaker_depth, settings.skip)
    assigned = assign_splits(recordings, settings)
    out = Path(out)
    summary: dict = {"source": str(Path(root).resolve()), "rate": MODEL_RATE, "settings": _settings_dict(settings),
                     "splits": {}, "skipped": []}
    for name in SPLITS:
        split, skipped = build_split(assigned[name], settings, progress)
        if name == "train" and not len(split):
            raise DataNotFoundError(f"{root}: no usable training utterances")
        for reason in skipped:
            print(f"skipped {reason}", file=sys.stderr)
        save_split(out / f"{name}.npz", split)
        summary["splits"][name] = {
            "utterances": len(split),
            "minutes": round(len(split.samples) / MODEL_RATE / 60, 2),
            "speakers": {k: round(v, 2) for k, v in split.minutes().items()},
        }
        summary["skipped"] += skipped
    atomic_write_text(out / "corpus.json", json.dumps(summary, indent=1) + "\n")
    return summary


def format_summary(summary: dict) -> str:
    """Minutes per split and speaker as a text table."""
    lines = [f"{'split':<6} {'speaker':<28} {'utterances':>10} {'minutes':>8}"]
    for name, split in summary["splits"].items():
        lines.append(f"{name:<6} {'(all)':<28} {split['utterances']:>10} {split['minutes']:>8.2f}")
        for speaker, minutes in split["speakers"].items():
            lines.append(f"{'':<6} {speaker:<28} {'':>10} {minutes:>8.2f}")
    if summary["skipped"]:
        lines.append(f"skipped {len(summary['skipped'])} unusable file(s) (listed on stderr and in corpus.json)")
    return "\n".join(lines)


def _settings_dict(settings: CorpusSettings) -> dict:
    return {
        "speaker_depth": settings.speaker_depth,
        "test_speakers": list(settings.test_speakers or []),
        "n_test_speakers": settings.n_test_speakers,
        "val_fraction": settings.val_fraction,
        "seed": settings.seed,
        "threshold_db": settings.threshold_db,
        "margin": settings.margin,
        "skip": list(settings.skip),
    }
