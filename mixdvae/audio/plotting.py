"""Spectrogram figures (PNG): one panel per signal, e.g. noisy / enhanced / clean, on a common dB scale."""

from __future__ import annotations

import io
import os
from collections.abc import Mapping

import numpy as np

from mixdvae.mot import atomic_write

from .stft import DEFAULT_STFT, STFT, power_spectrogram


def plot_spectrograms(
    path: str | os.PathLike,
    signals: Mapping[str, np.ndarray],
    rate: int = 16000,
    setting: STFT = DEFAULT_STFT,
    title: str | None = None,
    dynamic_range_db: float = 80.0,
) -> None:
    """Write a PNG with the power spectrogram (dB) of each signal (N,) of ``signals`` (label -> samples), one
    panel per entry in order, sharing a colour scale that spans ``dynamic_range_db`` below the loudest bin.
    Time in seconds, frequency in kHz. Written atomically; matplotlib is imported here, with the Agg canvas."""
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure

    if not signals:
        raise ValueError("plot_spectrograms needs at least one signal")
    decibels = {label: 10 * np.log10(power_spectrogram(np.asarray(x, dtype=np.float32), setting) + 1e-12)
                for label, x in signals.items()}  # each (T, F)
    top = max(float(d.max()) for d in decibels.values())
    # constrained layout leaves room for the suptitle and the colour bars (tight_layout let the title overlap)
    figure = Figure(figsize=(10, 2.6 * len(decibels)), layout="constrained")
    FigureCanvasAgg(figure)
    axes = figure.subplots(len(decibels), 1, sharex=True, squeeze=False)[:, 0]
    kilohertz = setting.frequencies(rate) / 1000
    for ax, (label, db) in zip(axes, decibels.items(), strict=True):
        seconds = setting.times(db.shape[0], rate)
        image = ax.pcolormesh(seconds, kilohertz, db.T, shading="nearest", cmap="magma",
                              vmin=top - dynamic_range_db, vmax=top, rasterized=True)
        ax.set_ylabel("frequency (kHz)")
        ax.set_title(label)
        figure.colorbar(image, ax=ax, label="power (dB)")
    axes[-1].set_xlabel("time (s)")
    if title:
        figure.suptitle(title)
    buffer = io.BytesIO()
    figure.savefig(buffer, format="png", dpi=90)
    atomic_write(path, lambda handle: handle.write(buffer.getvalue()), binary=True)
