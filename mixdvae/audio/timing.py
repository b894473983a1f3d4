"""Real-time factors of an audio run: what the enhancement and separation results report alike."""

from __future__ import annotations


class RealTimeFactors:
    """Mixin for results holding ``seconds`` (wall clock), ``cpu_seconds`` and ``audio_seconds``."""

    seconds: float
    cpu_seconds: float
    audio_seconds: float

    @property
    def real_time_factor(self) -> float:
        """Processing seconds (wall clock) per second of audio."""
        return self.seconds / max(self.audio_seconds, 1e-9)

    @property
    def cpu_real_time_factor(self) -> float:
        """CPU seconds per second of audio (with one torch thread: the time on one core)."""
        return self.cpu_seconds / max(self.audio_seconds, 1e-9)
