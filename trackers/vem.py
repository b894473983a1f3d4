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

import inspect

import numpy as np
import torch

from mixdvae.mot import Sequence
from mixdvae.vem import ConstantVelocityPrior, DVAEPrior, StaticPrior, TrajectoryPrior, VEMConfig, run_vem
from mixdvae.vem.tracking import WindowConfig, WindowedTracking
from mixdvae.vem.windows import pack_sequences, unpack_results
from trackers import register
from trackers.base import Tracker


class VEMTracker(Tracker):
    """Common part of the VEM trackers.

    Args:
        num_sources: N, the number of sources, initialised from the N highest-scoring detections of the first
            frame (None: every detection of the first frame).
        r: initial detection-noise scale, one number or one per coordinate of ``cx, cy, w, h`` (std of a
            detection's coordinate = r * its width for cx and w, r * its height for cy and h).
        r_min, r_max: bounds of the M-step for r; r_prior_weight: pseudo-detections pulling r towards ``r``.
        update_r, update_clutter: run the M-step for r and for the clutter weight.
        clutter_weight: initial clutter weight pi_0.
        clutter_model: ``"box"`` (uniform over the boxes of the image) or ``"area"`` (1 / image area), see
            :class:`mixdvae.vem.VEMConfig`.
        temperature: tempering exponent of the E-W Gaussian term.
        max_iter, min_iter: VEM iterations after the filtering pass (at most, at least).
        tol, tol_mean: convergence thresholds on the change of eta and of the means (in box heights).
        init_std: std of the initial boxes, in units of the detection noise.
        exclusive: Sinkhorn normalisations of E-W (a soft one-to-one assignment; 0 = off), see
            :class:`mixdvae.vem.VEMConfig`.
        one_detection: each source keeps its assignment mass on its most likely detection of each frame only,
            see :class:`mixdvae.vem.VEMConfig`.
        var_cap: bound on the sources' predictive variance in the first assignment, in units of the detection
            noise (None: unbounded), see :class:`mixdvae.vem.VEMConfig`.
        min_score: detections below this score are ignored.
        device: ``"cpu"`` or ``"cuda"``.
        max_buffer: frames kept by :meth:`update` in the fixed-source mode.
        window, hop, birth_score, birth_frames, birth_iou, observed_mass, max_gap, max_age, merge_iou:
            whole-sequence tracking (``num_sources=None``), see :class:`mixdvae.vem.tracking.WindowConfig`;
            durations in seconds.
        **prior_args: the arguments of :attr:`prior_class` (the trajectory prior), with its defaults.
    """

    name = "vem"
    prior_class: type[TrajectoryPrior]  # set by each tracker: its prior's arguments are the tracker's too

    def __init__(
        self,
        num_sources: int | None = None,
        r: float | list[float] = (0.1, 0.05, 0.15, 0.08),
        r_min: float = 0.02,
        r_max: float = 0.3,
        r_prior_weight: float = 10.0,
        update_r: bool = True,
        update_clutter: bool = True,
        clutter_weight: float = 0.01,
        clutter_model: str = "box",
        temperature: float = 1.0,
        max_iter: int = 20,
        min_iter: int = 1,
        tol: float = 1e-3,
        tol_mean: float = 1e-2,
        init_std: float = 1.0,
        exclusive: int = 0,
        one_detection: bool = False,
        var_cap: float | None = None,
        min_score: float = -np.inf,
        device: str = "cpu",
        max_buffer: int = 300,
        window: float = 0.6,
        hop: float = 0.5,
        birth_score: float = 0.8,
        birth_frames: int = 3,
        birth_iou: float = 0.3,
        observed_mass: float = 0.5,
        max_gap: float = 0.2,
        max_age: float = 1.0,
        merge_iou: float = 0.6,
        **prior_args,
    ):
        unknown = sorted(set(prior_args) - self.prior_parameter_names())
        if unknown:
            raise ValueError(f"unknown parameter(s) {unknown} for {self.name}")
        self.prior_args = prior_args
        if num_sources is not None and num_sources < 1:
            raise ValueError(f"num_sources must be a positive integer or None, got {num_sources}")
        self.num_sources = num_sources
        self.config = VEMConfig(
            r=r,
            r_bounds=(r_min, r_max),
            r_prior_weight=r_prior_weight,
            update_r=update_r,
            update_clutter=update_clutter,
            clutter_weight=clutter_weight,
            clutter_model=clutter_model,
            temperature=temperature,
            max_iter=max_iter,
            min_iter=min_iter,
            tol=tol,
            tol_mean=tol_mean,
            init_std=init_std,
            exclusive=exclusive,
            one_detection=one_detection,
            var_cap=var_cap,
        )
        self.min_score = min_score
        self.device = torch.device(device)
        self.max_buffer = max_buffer
        self.window_config = WindowConfig(
            window=window, hop=hop, min_score=min_score, birth_score=birth_score, birth_frames=birth_frames,
            birth_iou=birth_iou, observed_mass=observed_mass, max_gap=max_gap, max_age=max_age,
            merge_iou=merge_iou,
        )
        self.last_result = None
        self._prior: TrajectoryPrior | None = None
        self.reset()

    @classmethod
    def prior_parameter_names(cls) -> set[str]:
        """The arguments of :attr:`prior_class`, given to the tracker as keywords (the device is the tracker's)."""
        return _named_arguments(cls.prior_class.__init__) - {"device"}

    @classmethod
    def parameter_names(cls) -> set[str]:
        """Constructor arguments of the VEM trackers plus those of this tracker's prior."""
        return _named_arguments(VEMTracker.__init__) | cls.prior_parameter_names()

    # -- the prior -------------------------------------------------------------------------------------
    def make_prior(self) -> TrajectoryPrior:
        takes_device = "device" in _named_arguments(self.prior_class.__init__)
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
            return self._stream.run(sequence)
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
        detections = np.asarray(detections, dtype=float).reshape(-1, 5)
        if not np.isfinite(detections).all():
            raise ValueError("detections contain NaN or infinite values")
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


def _named_arguments(method) -> set[str]:
    """Names of a method's arguments, without ``self``, ``*args`` and ``**kwargs``."""
    params = inspect.signature(method).parameters.values()
    return {p.name for p in params if p.kind not in (p.VAR_KEYWORD, p.VAR_POSITIONAL)} - {"self"}


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
