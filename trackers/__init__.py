"""Tracker classes behind one interface (:class:`mixdvae.trackers.base.Tracker`) and their registry.

The folder is ``trackers/`` in the repository and installs as ``mixdvae.trackers`` (a top-level ``trackers``
would clash with other PyPI packages of that name). Code that did ``from trackers import ...`` now writes
``from mixdvae.trackers import ...``.
"""

from mixdvae.registry import Registry
from mixdvae.trackers.base import Tracker

TRACKERS = Registry("tracker")  # name -> Tracker subclass
register = TRACKERS.register


def make_tracker(name: str, config=None, **overrides) -> Tracker:
    """Instantiate the registered tracker ``name`` from a config dict, a YAML path or a shipped config's name,
    then ``overrides``; an unknown name is a ConfigError listing the registered ones."""
    return TRACKERS.get(name).from_config(config, **overrides)


from mixdvae.trackers.kalman import KalmanTracker  # noqa: E402  (registers itself)
from mixdvae.trackers.vem import GMMTracker, MixDVAETracker, VKFTracker  # noqa: E402  (register themselves)

__all__ = ["TRACKERS", "Tracker", "register", "make_tracker", "KalmanTracker", "GMMTracker", "MixDVAETracker",
           "VKFTracker"]
