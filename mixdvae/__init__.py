"""MixDVAE: multiple-object tracking with a learned DVAE motion prior inside variational EM.

Sub-modules:
    boxes       box conversions and IoU (boxes are ``x, y, w, h`` in pixels at every API boundary)
    mot         MOTChallenge files, ``Sequence`` and sequence lookup
    evaluation  TrackEval scoring (HOTA, MOTA, IDF1, ...)
    synthetic   the synthetic MOTChallenge benchmark
"""

__version__ = "0.1.0"
