"""Variational EM for N sources with a pluggable trajectory prior (DESIGN.md section 2).

* :mod:`mixdvae.vem.assign`: E-W (assignment posteriors with a clutter class), pseudo-observations, M-step.
* :mod:`mixdvae.vem.priors`: :class:`StaticPrior` (GMM), :class:`ConstantVelocityPrior` (VKF),
  :class:`DVAEPrior` (MixDVAE).
* :mod:`mixdvae.vem.engine`: :func:`run_vem`, the batched loop.
* :mod:`mixdvae.vem.windows`: sequences to padded batches and back.
"""

from mixdvae.vem.engine import VEMConfig, VEMInput, VEMResult, run_vem
from mixdvae.vem.priors import ConstantVelocityPrior, DVAEPrior, PriorContext, StaticPrior, TrajectoryPrior
from mixdvae.vem.windows import PackedBatch, pack_sequences, unpack_results

__all__ = [
    "VEMConfig",
    "VEMInput",
    "VEMResult",
    "run_vem",
    "TrajectoryPrior",
    "PriorContext",
    "StaticPrior",
    "ConstantVelocityPrior",
    "DVAEPrior",
    "PackedBatch",
    "pack_sequences",
    "unpack_results",
]
