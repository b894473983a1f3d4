"""Reading and writing audio files at the model's sample rate.

Every reader returns mono float32 samples in [-1, 1] at :data:`MODEL_RATE` (16 kHz) and rejects input the
models cannot use with an error that names the file: a missing file is a
:class:`~mixdvae.errors.DataNotFoundError`; an unreadable, empty, stereo (unless ``mix_down``), NaN, silent or
too short (less than one STFT frame) file is an :class:`~mixdvae.errors.InputError`. Another sample rate is
resampled (:func:`scipy.signal.resample_poly`), flagged in :attr:`Audio.resampled` and said on stderr.

``.g722`` files (raw G.722 at 16 kHz, as in the Debian ``asterisk-core-sounds-*-g722`` packages) are decoded
with the ``G722`` package (``pip install "mixdvae[speech]"``).
"""

from __future__ import annotations

import math
import os
import sys
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import soundfile
from scipy.signal import resample_poly

from mixdvae.errors import DataNotFoundError, InputError, UsageError
from mixdvae.mot import atomic_write

MODEL_RATE = 16000  # Hz, the rate of the STFT front end and of the shipped priors
MIN_SAMPLES = 1024  # one frame of the default STFT (64 ms at 16 kHz)
SILENCE_PEAK = 1e-5  # a peak amplitude below this (-100 dBFS) is silence
G722_RATE = 16000
G722_BITRATE = 64000
AUDIO_SUFFIXES = (".wav", ".flac", ".ogg", ".g722")
WRITE_FORMATS = {".wav": "WAV", ".flac": "FLAC"}


@dataclass
class Audio:
    """Mono samples (N,) float32 at ``rate`` Hz, read from ``path`` whose own rate was ``source_rate``."""

    samples: np.ndarray  # (N,)
    rate: int
    path: Path
    source_rate: int
    mixed_down: bool = False

    @property
    def resampled(self) -> bool:
        return self.rate != self.source_rate

    @property
    def seconds(self) -> float:
        return len(self.samples) / self.rate


def read_audio(
    path: str | os.PathLike,
    rate: int = MODEL_RATE,
    *,
    mix_down: bool = False,
    min_samples: int = MIN_SAMPLES,
    quiet: bool = False,
) -> Audio:
    """Read ``path`` as mono float32 at ``rate`` Hz (see the module docstring for what is rejected).

    ``mix_down``: average the channels of a multi-channel file instead of rejecting it. ``min_samples``: the
    shortest accepted length after resampling (default one STFT frame). ``quiet``: do not report resampling
    on stderr (the returned :attr:`Audio.resampled` still says it).
    """
    path = Path(path)
    if not path.exists():
        raise DataNotFoundError(f"{path}: audio file not found")
    if not path.is_file():
        raise InputError(f"{path}: not a file")
    if path.suffix.lower() == ".g722":
        samples, source_rate = _decode_g722(path), G722_RATE
    else:
        samples, source_rate = _read_soundfile(path)
    mixed = False
    if samples.shape[1] > 1:
        if not mix_down:
            raise InputError(f"{path}: {samples.shape[1]} channels; a mono file is needed (or mix it down)")
        samples, mixed = samples.mean(axis=1, keepdims=True), True
    samples = samples[:, 0]
    if samples.size and source_rate != rate:
        samples = resample(samples, source_rate, rate)
        if not quiet:
            print(f"{path}: resampled from {source_rate} Hz to {rate} Hz", file=sys.stderr)
    check_waveform(samples, str(path), min_samples, rate)
    return Audio(samples.astype(np.float32), int(rate), path, int(source_rate), mixed)


def check_waveform(samples: np.ndarray, name: str, min_samples: int = MIN_SAMPLES, rate: int = MODEL_RATE) -> None:
    """Raise :class:`InputError` naming ``name`` if ``samples`` (N,) is empty, non-finite, silent or shorter than
    ``min_samples``."""
    if samples.size == 0:
        raise InputError(f"{name}: no audio samples (empty file)")
    if not np.isfinite(samples).all():
        raise InputError(f"{name}: holds NaN or infinite samples")
    if len(samples) < min_samples:
        raise InputError(
            f"{name}: {len(samples)} samples ({1000 * len(samples) / rate:.1f} ms at {rate} Hz) is shorter than one "
            f"STFT frame ({min_samples} samples)"
        )
    peak = float(np.abs(samples).max())
    if peak < SILENCE_PEAK:
        raise InputError(f"{name}: silent (peak amplitude {peak:.2g}, below {SILENCE_PEAK:g})")


def check_waveforms(waves, kind: str, min_samples: int = MIN_SAMPLES) -> list[np.ndarray]:
    """One waveform (N,) or a sequence of them, as a list of float32 arrays, each checked by
    :func:`check_waveform` under the name ``"{kind} {index}"``; none at all is a :class:`UsageError`."""
    single = isinstance(waves, np.ndarray) and waves.ndim == 1
    waves = [waves] if single else list(waves)
    if not waves:
        raise UsageError(f"no {kind} given")
    for index, wave in enumerate(waves):
        wave = np.asarray(wave)
        if wave.ndim != 1:
            raise InputError(f"{kind} {index}: a mono waveform (N,) is needed, got shape {wave.shape}")
        check_waveform(wave, f"{kind} {index}", min_samples)
    return [np.asarray(w, dtype=np.float32) for w in waves]


def resample(samples: np.ndarray, source_rate: int, rate: int) -> np.ndarray:
    """``samples`` (..., N) from ``source_rate`` to ``rate`` Hz along the last axis (polyphase filter)."""
    if source_rate == rate:
        return samples
    common = math.gcd(int(source_rate), int(rate))
    return resample_poly(samples, int(rate) // common, int(source_rate) // common, axis=-1)


def write_audio(path: str | os.PathLike, samples: np.ndarray, rate: int = MODEL_RATE, subtype: str = "PCM_16") -> None:
    """Write mono ``samples`` (N,) as ``.wav`` or ``.flac`` atomically (temporary file, then rename).

    Integer subtypes clip samples outside [-1, 1]. Raises :class:`UsageError` for another suffix, a
    multi-channel array or non-finite samples (nothing is written then)."""
    path = Path(path)
    file_format = WRITE_FORMATS.get(path.suffix.lower())
    if file_format is None:
        raise UsageError(f"{path}: cannot write audio with suffix {path.suffix!r}; use one of {sorted(WRITE_FORMATS)}")
    samples = np.asarray(samples)
    if samples.ndim != 1:
        raise UsageError(f"{path}: write_audio takes mono samples (N,), got shape {samples.shape}")
    if not np.isfinite(samples).all():
        raise UsageError(f"{path}: refusing to write NaN or infinite samples")
    atomic_write(path, lambda handle: soundfile.write(handle, samples, int(rate), format=file_format, subtype=subtype),
                 binary=True)


def _read_soundfile(path: Path) -> tuple[np.ndarray, int]:
    """Samples (N, channels) float32 and the file's rate."""
    try:
        samples, source_rate = soundfile.read(path, dtype="float32", always_2d=True)
    except (soundfile.LibsndfileError, RuntimeError, TypeError) as err:
        raise InputError(f"{path}: not a readable audio file ({err})") from None
    return samples, int(source_rate)


def _decode_g722(path: Path) -> np.ndarray:
    """Samples (N, 1) float32 of a raw G.722 file (16 kHz, 64 kbit/s)."""
    try:
        import G722
    except ImportError:
        raise UsageError(f"{path}: decoding .g722 needs the G722 package: pip install 'mixdvae[speech]'") from None
    data = path.read_bytes()
    decoded = np.asarray(G722.G722(G722_RATE, G722_BITRATE).decode(data), dtype=np.int16)
    return (decoded.astype(np.float32) / 32768.0)[:, None]

