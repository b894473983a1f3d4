"""Training and evaluation data for the motion priors: box trajectories in windows.

* :mod:`.trajectories`: tracks from MOTChallenge ground truth, windows, the coordinate normalisation.
* :mod:`.synthetic_trajectories`: the MixDVAE paper's piecewise generator and a pedestrian walker.
"""

from .synthetic_trajectories import (
    PIECE_KINDS,
    WalkerParams,
    benchmark_trajectories,
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
