"""Short-time Fourier transform of the audio front end (DESIGN §7), batched over leading dimensions.

Defaults: 1024-sample sine window (64 ms at 16 kHz), hop 256, 513 frequency bins, frames centred (the signal
is zero-padded by half a window at both ends), so a signal of N samples has ``1 + N // hop`` frames and the
inverse transform reconstructs it exactly (the sine window satisfies the overlap-add condition at hop
n_fft / 4).

Layout: spectrograms are **(..., T, F)**, frames first, as the priors take them (``x_t`` = one frame of F
bins). Functions take and return torch tensors; numpy arrays are accepted and numpy is returned for them.

Long signals: :func:`segment_starts` cuts T frames into overlapping segments and :func:`crossfade_weights` gives
the overlap-add weights that join the segments' results (divided by their sum at each frame), for the audio VEMs.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np
import torch

from mixdvae.errors import InputError, UsageError

WINDOWS = ("sine", "hann")


@dataclass(frozen=True)
class STFT:
    """An STFT setting: ``n_fft`` samples per frame, ``hop`` samples between frames, ``window`` name."""

    n_fft: int = 1024
    hop: int = 256
    window: str = "sine"

    def __post_init__(self):
        if self.window not in WINDOWS:
            raise UsageError(f"unknown STFT window {self.window!r}; known: {list(WINDOWS)}")
        if not 0 < self.hop <= self.n_fft:
            raise UsageError(f"STFT hop must be in 1..n_fft={self.n_fft}, got {self.hop}")

    @property
    def n_bins(self) -> int:
        """Frequency bins per frame, ``n_fft // 2 + 1`` (513 by default)."""
        return self.n_fft // 2 + 1

    def n_frames(self, n_samples: int) -> int:
        """Frames of a signal of ``n_samples`` samples."""
        return 1 + n_samples // self.hop

    def window_tensor(self, device=None, dtype=torch.float32) -> torch.Tensor:
        """The analysis (and synthesis) window, (n_fft,)."""
        if self.window == "sine":
            n = torch.arange(self.n_fft, device=device, dtype=dtype)
            return torch.sin(torch.pi * (n + 0.5) / self.n_fft)
        return torch.hann_window(self.n_fft, periodic=True, device=device, dtype=dtype)

    def frequencies(self, rate: int) -> np.ndarray:
        """Centre frequency of each bin in Hz, (F,)."""
        return np.arange(self.n_bins) * rate / self.n_fft

    def times(self, n_frames: int, rate: int) -> np.ndarray:
        """Centre time of each frame in seconds, (T,)."""
        return np.arange(n_frames) * self.hop / rate

    def __call__(self, signal):
        """Complex spectrogram (..., T, F) of ``signal`` (..., N), N >= n_fft."""
        x, to_numpy = _as_tensor(signal)
        if x.is_complex():
            raise UsageError("stft takes real signals")
        if x.shape[-1] < self.n_fft:
            raise InputError(f"a signal of {x.shape[-1]} samples is shorter than one STFT frame ({self.n_fft})")
        if not x.is_floating_point():
            x = x.float()
        lead = x.shape[:-1]
        spec = torch.stft(
            x.reshape(-1, x.shape[-1]), self.n_fft, self.hop, window=self.window_tensor(x.device, x.dtype),
            center=True, pad_mode="constant", return_complex=True,
        )  # (B, F, T)
        spec = spec.transpose(-1, -2).reshape(*lead, spec.shape[-1], self.n_bins)
        return spec.numpy() if to_numpy else spec

    def inverse(self, spec, length: int):
        """Signal (..., length) of a complex spectrogram ``spec`` (..., T, F) (overlap-add, window-normalised)."""
        s, to_numpy = _as_tensor(spec)
        if not s.is_complex():
            raise UsageError("istft takes a complex spectrogram (..., T, F)")
        if s.shape[-1] != self.n_bins:
            raise UsageError(f"spectrogram has {s.shape[-1]} bins, this STFT has {self.n_bins} (layout (..., T, F))")
        lead = s.shape[:-2]
        real_dtype = torch.float64 if s.dtype == torch.complex128 else torch.float32
        flat = s.reshape(-1, s.shape[-2], self.n_bins).transpose(-1, -2)  # (B, F, T)
        signal = torch.istft(
            flat, self.n_fft, self.hop, window=self.window_tensor(s.device, real_dtype), center=True, length=length
        )
        signal = signal.reshape(*lead, length)
        return signal.numpy() if to_numpy else signal


DEFAULT_STFT = STFT()


def stft(signal, setting: STFT = DEFAULT_STFT):
    """Complex spectrogram (..., T, F) of ``signal`` (..., N) with ``setting`` (default: DESIGN §7)."""
    return setting(signal)


def istft(spec, length: int, setting: STFT = DEFAULT_STFT):
    """Signal (..., length) of the complex spectrogram ``spec`` (..., T, F)."""
    return setting.inverse(spec, length)


def power(spec):
    """Power ``|X|^2`` (..., T, F) of a complex spectrogram (torch or numpy)."""
    return spec.real**2 + spec.imag**2


def power_spectrogram(signal, setting: STFT = DEFAULT_STFT):
    """Power spectrogram ``|STFT(signal)|^2`` (..., T, F) of ``signal`` (..., N)."""
    return power(setting(signal))


def _as_tensor(value) -> tuple[torch.Tensor, bool]:
    if isinstance(value, torch.Tensor):
        return value, False
    return torch.from_numpy(np.ascontiguousarray(value)), True


def segment_starts(frames: int, segment: int, overlap: int) -> list[int]:
    """First frames of the segments covering ``frames`` frames: every ``segment - overlap`` frames, the last
    one ending at the last frame (one segment of the whole signal when it is not longer than ``segment`` or
    ``segment`` is 0)."""
    if segment == 0 or frames <= segment:
        return [0]
    hop = segment - overlap
    starts = list(range(0, frames - segment, hop))
    return starts + [frames - segment]


def crossfade_weights(length: int, device=None) -> torch.Tensor:
    """Overlap-add weights over the frames of a segment, (length,): sine^2, positive everywhere."""
    t = torch.arange(length, device=device, dtype=torch.float32)
    return torch.sin(math.pi * (t + 0.5) / length) ** 2
