"""Trackers of the VEM family: MixDVAE (DVAE prior), VKF (constant velocity) and GMM (static prior).

Two modes, chosen by ``num_sources``:

* **Whole sequences** (``num_sources=None``, the default, what ``tools/track.py`` runs): overlapping windows
  with births, deaths, occlusion bridging and identities kept across windows (:mod:`mixdvae.vem.tracking`,
  DESIGN.md section 3). :meth:`VEMTracker.update` works online with a lag: each call returns the final
  tracks of the frame ``W - 1`` frames back (``W`` the window length in frames), and :meth:`VEMTracker.finish`
  returns the frames still pending at the end of the stream.
* **Fixed sources** (``num_sources=N``): N sources initialised from the first frame's strongest detections
  and tracked over the whole window (the MixDVAE paper's setting and the 3T protocol, DESIGN.md section 4).
  :meth:`VEMTracker.track_windows` tracks many windows in one batched VEM call (all sources of all windows
  share each DVAE step), which is what ``tools/eval_3t.py`` uses; :meth:`VEMTracker.update` buffers frames
  and re-runs the VEM on the buffer (``max_buffer`` frames).

Boxes are converted once to ``cx, cy, w, h`` at the boundary.
"""

from __future__ import annotations

import dataclasses

import numpy as np

from mixdvae.config import Range, check_params, parameter_specs, parse_device
from mixdvae.errors import ConfigError
from mixdvae.mot import Sequence
from mixdvae.trackers import register
from mixdvae.trackers.base import Tracker, check_detections
from mixdvae.vem import ConstantVelocityPrior, DVAEPrior, StaticPrior, TrajectoryPrior, VEMConfig, run_vem
from mixdvae.vem.tracking import WindowConfig, WindowedTracking
from mixdvae.vem.windows import pack_sequences, unpack_results


class VEMTracker(Tracker):
    """Common part of the VEM trackers.

    Every parameter has one default, held where it acts; the tracker takes them all as keyword arguments:

    * the engine's, :class:`mixdvae.vem.VEMConfig` (detection noise ``r``, clutter, ``temperature``,
      ``exclusive``, ``var_cap``, ``max_iter``, ...), except ``dtype``;
    * whole-sequence tracking's, :class:`mixdvae.vem.tracking.WindowConfig` (``window_s``, ``hop``,
      ``birth_*``, ``max_gap_s``, ``max_age_s``, ``min_score``, ...; durations in seconds);
    * the trajectory prior's, the keyword arguments of :attr:`prior_class`.

    The defaults are the tuned values (the README's tables use them); a YAML file passed to
    :meth:`from_config` overrides some of them, and :meth:`get_params` lists them all.

    Args:
        num_sources: None (default): whole sequences with births and deaths; N: N fixed sources initialised
            from the N highest-scoring detections of the first frame (the 3T protocol).
        device: ``"cpu"`` or ``"cuda"``.
        max_buffer: frames kept by :meth:`update` in the fixed-source mode.
        **params: the engine's, the windowed tracking's and the prior's parameters (above).
    """

    name = "vem"
    prior_class: type[TrajectoryPrior]  # set by each tracker: its prior's arguments are the tracker's too
    BOUNDS = {"num_sources": Range(1), "max_buffer": Range(1)}

    def __init__(self, num_sources: int | None = None, device: str = "cpu", max_buffer: int = 300, **params):
        own = check_params({"num_sources": num_sources, "device": device, "max_buffer": max_buffer},
                           parameter_specs(VEMTracker.__init__), self.BOUNDS, self.name)
        self.num_sources, self.max_buffer = own["num_sources"], own["max_buffer"]
        self.device = parse_device(device, self.name)
        groups = self.parameter_groups()
        unknown = sorted(set(params) - set().union(*groups.values()))
        if unknown:
            allowed = sorted(self.parameter_names())
            raise ConfigError(f"{self.name}: unknown parameter(s) {unknown}; allowed: {allowed}")
        self.config = VEMConfig(**{k: v for k, v in params.items() if k in groups["engine"]})
        self.window_config = WindowConfig(**{k: v for k, v in params.items() if k in groups["window"]})
        prior_specs = parameter_specs(self.prior_class)
        self.prior_args = check_params({k: v for k, v in params.items() if k in groups["prior"]}, prior_specs,
                                       getattr(self.prior_class, "BOUNDS", None), f"{self.name} prior")
        self.min_score = self.window_config.min_score
        self.last_result = None
        self._prior: TrajectoryPrior | None = None
        self.reset()

    @classmethod
    def parameter_groups(cls) -> dict[str, set[str]]:
        """The keyword parameters by where they act: ``engine``, ``window`` and ``prior``."""
        return {
            "engine": set(parameter_specs(VEMConfig)) - {"dtype"},
            "window": set(parameter_specs(WindowConfig)),
            "prior": set(parameter_specs(cls.prior_class)) - {"device"},
        }

    @classmethod
    def parameter_names(cls) -> set[str]:
        """Every keyword argument of this tracker (its own, the engine's, the window's and the prior's)."""
        return set(parameter_specs(VEMTracker.__init__)).union(*cls.parameter_groups().values())

    def get_params(self) -> dict:
        """Every parameter's value in this tracker (defaults included), as plain YAML-friendly values."""
        engine = {k: getattr(self.config, k) for k in self.parameter_groups()["engine"]}
        window = dataclasses.asdict(self.window_config)
        prior = {name: default for name, (_, default) in parameter_specs(self.prior_class).items() if name != "device"}
        prior.update(self.prior_args)
        own = {"num_sources": self.num_sources, "device": str(self.device), "max_buffer": self.max_buffer}
        return _plain({**own, **engine, **window, **prior})

    # -- the prior -------------------------------------------------------------------------------------
    def make_prior(self) -> TrajectoryPrior:
        takes_device = "device" in parameter_specs(self.prior_class)
        return self.prior_class(**self.prior_args, **({"device": self.device} if takes_device else {}))

    @property
    def prior(self) -> TrajectoryPrior:
        if self._prior is None:
            self._prior = self.make_prior()
        return self._prior

    # -- batched whole-window tracking -------------------------------------------------------------------
    def _sources_for(self, sequences: list[Sequence]) -> int:
        if self.num_sources is not None:
            return self.num_sources
        counts = [int((s.frame_detections(1)[:, 4] >= self.min_score).sum()) for s in sequences]
        return max(1, max(counts, default=1))

    def track_windows(self, sequences: list[Sequence]) -> list[np.ndarray]:
        """Track several sequences (windows) in one batched VEM call.

        Returns one (R, 6) array ``frame, id, x, y, w, h`` per sequence. ``last_result`` keeps the
        :class:`mixdvae.vem.VEMResult` (iterations, convergence history, eta).
        """
        if not sequences:
            return []
        packed = pack_sequences(sequences, self._sources_for(sequences), self.min_score)
        result = run_vem(packed.inp, self.prior, self.config, device=self.device)
        self.last_result = result
        return unpack_results(result.mean, packed.inp.source_mask)

    def track(self, sequence: Sequence, progress: bool = False) -> np.ndarray:
        self.reset(sequence.frame_rate, sequence.image_size)
        if self.num_sources is None:
            return self._stream.run(sequence, progress=progress, label=self.name)
        return self.track_windows([sequence])[0]

    # -- per-frame interface -------------------------------------------------------------------------------
    def reset(self, frame_rate: float = 30.0, image_size: tuple[int, int] = (1920, 1080)) -> None:
        super().reset(frame_rate, image_size)
        self._buffer: list[np.ndarray] = []
        self._stream = WindowedTracking(frame_rate, image_size, self.prior, self.config, self.window_config,
                                        self.device)
        self._returned = 0  # whole-sequence mode: frames already returned by update()

    @property
    def lag(self) -> int:
        """Frames between a detection's arrival and its final track in :meth:`update` (whole-sequence mode)."""
        return self._stream.window - 1 if self.num_sources is None else 0

    def update(self, detections: np.ndarray) -> np.ndarray:
        """Consume a frame. Whole-sequence mode: returns the final (L, 5) ``x, y, w, h, id`` tracks of frame
        ``self.frame - self.lag`` (empty until then); fixed-source mode: the tracks of this frame."""
        detections = check_detections(detections, self.frame + 1)
        self.frame += 1
        if self.num_sources is None:
            self._stream.push(detections)
            return self._final_frames(self.frame - self.lag)
        self._buffer.append(detections)
        if len(self._buffer) > self.max_buffer:  # sources are re-initialised from the oldest buffered frame
            self._buffer.pop(0)
        rows = [np.column_stack([np.full(len(d), t + 1), -np.ones(len(d)), d[:, :5]])
                for t, d in enumerate(self._buffer)]
        dets = np.concatenate(rows) if rows else np.zeros((0, 7))
        dets = np.column_stack([dets, -np.ones((len(dets), 3))])
        width, height = self.image_size
        seq = Sequence("buffer", self.frame_rate, int(width), int(height), len(self._buffer), dets)
        results = self.track_windows([seq])[0]
        last = results[results[:, 0] == len(self._buffer)]
        return np.column_stack([last[:, 2:6], last[:, 1]]).reshape(-1, 5)

    def _final_frames(self, up_to: int) -> np.ndarray:
        """Tracks of frame ``up_to`` as (L, 5), marking frames up to it returned (whole-sequence mode)."""
        if up_to <= self._returned:
            return np.zeros((0, 5))
        self._returned = up_to
        rows = self._stream.results()
        rows = rows[rows[:, 0] == up_to]
        return np.column_stack([rows[:, 2:6], rows[:, 1]]).reshape(-1, 5)

    def finish(self) -> np.ndarray:
        """End of an online stream (whole-sequence mode): the (R, 6) ``frame, id, x, y, w, h`` rows of the
        frames :meth:`update` has not returned yet."""
        self._stream.finish()
        rows = self._stream.results()
        pending = rows[rows[:, 0] > self._returned]
        self._returned = self.frame
        return pending


def _plain(values: dict) -> dict:
    """Sorted, with tuples as lists: a configuration ready for ``yaml.safe_dump``."""
    return {k: list(v) if isinstance(v, tuple) else v for k, v in sorted(values.items())}


@register
class MixDVAETracker(VEMTracker):
    """MixDVAE: N DVAE priors (the shipped SRNN by default) mixed by the VEM assignment.

    Extra keyword arguments: those of :class:`mixdvae.vem.DVAEPrior` (``model``: a name or path for
    :func:`mixdvae.dvae.load_prior`, or a DVAE object; ``drive``, ``z_mode``, ``transition``, ``var_scale``, ...),
    with its defaults.
    """

    name = "mixdvae"
    prior_class = DVAEPrior


@register
class VKFTracker(VEMTracker):
    """Variational Kalman filter/smoother: the VEM with a constant-velocity linear-Gaussian prior.

    Extra keyword arguments: those of :class:`mixdvae.vem.ConstantVelocityPrior` (``accel_std``,
    ``size_accel_std``, ``velocity_std``, ``size_velocity_std``, ``smooth``), with its defaults.
    """

    name = "vkf"
    prior_class = ConstantVelocityPrior


@register
class GMMTracker(VEMTracker):
    """The GMM baseline: the VEM with a static prior (no dynamics; random walk from the previous frame).

    Extra keyword arguments: those of :class:`mixdvae.vem.StaticPrior` (``position_std``, ``size_std``,
    ``smooth``), with its defaults.
    """

    name = "gmm"
    prior_class = StaticPrior
