"""Training and evaluation data for the motion priors: box trajectories in windows.

* :mod:`.trajectories`: tracks from MOTChallenge ground truth, windows, the coordinate normalisation.
* :mod:`.synthetic_trajectories`: the MixDVAE paper's piecewise generator, a pedestrian walker and the camera
  model both real and simulated walks are filmed with (:func:`camera_view`).
* :mod:`.eth_ucy`: real pedestrian walks (ETH and UCY, ground-plane metres) turned into box trajectories.
"""

from .synthetic_trajectories import (
    PIECE_KINDS,
    WalkerParams,
    benchmark_trajectories,
    camera_view,
    piecewise_axis,
    piecewise_trajectories,
    walker_trajectories,
)
from .trajectories import (
    BoxWindows,
    Track,
    gt_sequences,
    load_mot_tracks,
    load_sequence_tracks,
    real_windows,
    split_tracks,
    subsample,
    tracks_from_gt,
    windows_from_tracks,
)

__all__ = [
    "PIECE_KINDS",
    "BoxWindows",
    "Track",
    "WalkerParams",
    "benchmark_trajectories",
    "camera_view",
    "gt_sequences",
    "load_mot_tracks",
    "load_sequence_tracks",
    "piecewise_axis",
    "piecewise_trajectories",
    "real_windows",
    "split_tracks",
    "subsample",
    "tracks_from_gt",
    "walker_trajectories",
    "windows_from_tracks",
]
