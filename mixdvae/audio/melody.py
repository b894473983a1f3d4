"""Random melodies for training a source prior on more instrument timbres (``tools/render_melodies.py``).

The flute material of ``../shared/data/audio/flute`` was made this way (its README): random diatonic melodies
(tempo 70-130 bpm, notes of 0.2-1.2 s, velocities 60-120, some rests) written as MIDI and rendered with fluidsynth,
reverb and chorus off. This module writes such melodies as standard MIDI files (format 0, one channel) and renders
them with the ``fluidsynth`` command line on any SoundFont, so that a prior can hear timbres beyond the two
soundfonts of the shared data (the separation benchmark tests on the one a prior never heard).
"""

from __future__ import annotations

import os
import shutil
import subprocess
import tempfile
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import soundfile

from mixdvae.errors import DataNotFoundError, InputError

from .io import MODEL_RATE, write_audio

TICKS_PER_BEAT = 480
MAJOR_SCALE = (0, 2, 4, 5, 7, 9, 11)  # semitones above the tonic


@dataclass(frozen=True)
class Note:
    """One note: ``pitch`` (MIDI number; None for a rest), ``start`` and ``duration`` in seconds, ``velocity``."""

    pitch: int | None
    start: float
    duration: float
    velocity: int


def random_melody(rng: np.random.Generator, seconds: float = 20.0, low: int = 60, high: int = 93,
                  rest_probability: float = 0.1) -> tuple[list[Note], float]:
    """A random diatonic melody of about ``seconds`` seconds between MIDI pitches ``low`` and ``high``: a random
    major key, steps of at most a fifth along its scale, note lengths of 0.2-1.2 s on a beat grid of a tempo drawn in
    70-130 bpm, velocities 60-120, a rest with probability ``rest_probability``. Returns the notes and the tempo
    (beats per minute)."""
    tempo = float(rng.uniform(70, 130))
    beat = 60.0 / tempo
    tonic = int(rng.integers(0, 12))
    pitches = [p for p in range(low, high + 1) if (p - tonic) % 12 in MAJOR_SCALE]
    index = int(rng.integers(len(pitches) // 4, 3 * len(pitches) // 4))
    lengths = [b for b in (0.25, 0.5, 0.75, 1.0, 1.5, 2.0) if 0.2 <= b * beat <= 1.2] or [0.5]
    notes, time = [], 0.0
    while time < seconds:
        duration = float(rng.choice(lengths)) * beat
        if notes and rng.random() < rest_probability:
            notes.append(Note(None, time, duration, 0))
        else:
            index = int(np.clip(index + rng.integers(-4, 5), 0, len(pitches) - 1))
            notes.append(Note(pitches[index], time, duration, int(rng.integers(60, 121))))
        time += duration
    return notes, tempo


def _variable_length(value: int) -> bytes:
    """A MIDI variable-length quantity."""
    out = [value & 0x7F]
    value >>= 7
    while value:
        out.append(0x80 | (value & 0x7F))
        value >>= 7
    return bytes(reversed(out))


def midi_bytes(notes: list[Note], tempo: float, program: int) -> bytes:
    """A format-0 standard MIDI file playing ``notes`` on channel 0 with GM ``program`` (0-based: 73 is the flute)
    at ``tempo`` bpm (note times in seconds are converted to ticks at that tempo)."""
    if not 0 <= program <= 127:
        raise ValueError(f"MIDI program must be in 0..127, got {program}")
    ticks_per_second = TICKS_PER_BEAT * tempo / 60.0
    events = []  # (tick, order, bytes): note-offs before note-ons at the same tick
    for note in notes:
        if note.pitch is None:
            continue
        on, off = round(note.start * ticks_per_second), round((note.start + note.duration) * ticks_per_second)
        events.append((on, 1, bytes([0x90, note.pitch, note.velocity])))
        events.append((off, 0, bytes([0x80, note.pitch, 0])))
    events.sort(key=lambda e: (e[0], e[1]))
    microseconds = round(60_000_000 / tempo)
    track = bytearray(b"\x00\xff\x51\x03" + microseconds.to_bytes(3, "big") + bytes([0, 0xC0, program]))
    last = 0
    for tick, _, data in events:
        track += _variable_length(tick - last) + data
        last = tick
    track += b"\x00\xff\x2f\x00"
    header = b"MThd" + (6).to_bytes(4, "big") + (0).to_bytes(2, "big") + (1).to_bytes(2, "big") \
        + TICKS_PER_BEAT.to_bytes(2, "big")
    return header + b"MTrk" + len(track).to_bytes(4, "big") + bytes(track)


def render(midi: bytes, soundfont: str | os.PathLike, seconds: float, fluidsynth: str = "fluidsynth") -> np.ndarray:
    """Render ``midi`` with the ``fluidsynth`` command line on ``soundfont`` (reverb and chorus off) at the model's
    rate; returns a mono float32 waveform cut or zero-padded to ``seconds``. Raises :class:`DataNotFoundError`
    when fluidsynth or the soundfont is missing, :class:`InputError` when the render fails or is silent."""
    soundfont = Path(soundfont)
    if shutil.which(fluidsynth) is None:
        raise DataNotFoundError(f"{fluidsynth}: not found (apt-get install fluidsynth)")
    if not soundfont.is_file():
        raise DataNotFoundError(f"{soundfont}: no such soundfont")
    with tempfile.TemporaryDirectory() as tmp:
        mid, wav = Path(tmp) / "melody.mid", Path(tmp) / "melody.wav"
        mid.write_bytes(midi)
        command = [fluidsynth, "-n", "-i", "-q", "-R", "0", "-C", "0", "-r", str(MODEL_RATE), "-T", "wav",
                   "-F", str(wav), str(soundfont), str(mid)]
        done = subprocess.run(command, capture_output=True, text=True)
        if done.returncode != 0 or not wav.is_file():
            raise InputError(f"{soundfont}: fluidsynth failed ({done.returncode}): {done.stderr.strip()[-300:]}")
        samples, rate = soundfile.read(wav, dtype="float32", always_2d=True)
    if rate != MODEL_RATE:
        raise InputError(f"{soundfont}: fluidsynth rendered at {rate} Hz, not {MODEL_RATE}")
    samples = samples.mean(1)  # fluidsynth renders stereo; the program is centred
    n = round(seconds * MODEL_RATE)
    samples = np.pad(samples[:n], (0, max(0, n - len(samples))))
    if not np.any(samples):
        raise InputError(f"{soundfont}: the render is silent (does the soundfont hold the program?)")
    return samples.astype(np.float32)


def render_melodies(soundfont: str | os.PathLike, out: str | os.PathLike, prefix: str, count: int,
                    seconds: float = 20.0, program: int = 73, seed: int = 0, level_db: float = -26.0,
                    progress=None) -> list[Path]:
    """Render ``count`` random melodies (:func:`random_melody`, seeded by ``seed`` and the file index) of ``seconds``
    seconds on ``soundfont``, each scaled to an RMS level of ``level_db`` dB re full scale (the shared flute files
    sit at -25 to -27 dB; soundfonts differ by 10 dB at the same MIDI velocity), and write them as
    ``out/PREFIX_NN.flac`` (16-bit, the model's rate), each written atomically. Returns the paths."""
    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    paths = []
    for index in range(count):
        notes, tempo = random_melody(np.random.default_rng([seed, index]), seconds)
        samples = render(midi_bytes(notes, tempo, program), soundfont, seconds)
        samples = samples * (10 ** (level_db / 20) / np.sqrt(np.mean(samples.astype(np.float64) ** 2)))
        peak = float(np.abs(samples).max())
        if peak > 0.99:  # keep the render inside 16-bit range
            samples = samples * (0.99 / peak)
        path = out / f"{prefix}_{index:02d}.flac"
        write_audio(path, samples)
        paths.append(path)
        if progress is not None:
            progress(1)
    return paths
