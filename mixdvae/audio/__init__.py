"""Audio front end: files, STFT, metrics, mixing and figures for the speech priors and the audio VEMs.

Public API (16 kHz mono float32 waveforms (N,); spectrograms (..., T, F), frames first)::

    from mixdvae.audio import read_audio, write_audio, stft, istft, power, power_spectrogram, STFT
    audio = read_audio("noisy.wav")              # Audio(samples (N,), rate, path, source_rate, mixed_down);
                                                 # InputError / DataNotFoundError naming the file
    spec = stft(audio.samples)                   # complex (T, F) = (1 + N // 256, 513); torch or numpy in/out
    x = istft(spec, len(audio.samples))          # exact inverse
    P = power(spec)                              # |X|^2
    write_audio("out.wav", x)                    # atomic

    from mixdvae.audio.metrics import si_sdr, pesq_wb, estoi, bss_eval   # (estimate, reference) order
    from mixdvae.audio.mixing import mix_at_snr  # Mixture(mixture, speech, noise, snr_db, offset)
    from mixdvae.audio.plotting import plot_spectrograms   # PNG of {"noisy": x, "enhanced": y, "clean": s}
    from mixdvae.audio.corpus import load_split  # the speech corpus of tools/make_speech_corpus.py

Settings of the front end (DESIGN §7): :data:`MODEL_RATE` = 16 kHz, :data:`DEFAULT_STFT` = 1024-sample sine
window, hop 256, 513 bins.
"""

from __future__ import annotations

from .io import MODEL_RATE, Audio, check_waveform, read_audio, resample, write_audio
from .stft import DEFAULT_STFT, STFT, istft, power, power_spectrogram, stft

__all__ = [
    "MODEL_RATE",
    "Audio",
    "check_waveform",
    "read_audio",
    "resample",
    "write_audio",
    "DEFAULT_STFT",
    "STFT",
    "istft",
    "power",
    "power_spectrogram",
    "stft",
]
