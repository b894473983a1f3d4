"""Coordinates of the DVAE motion prior.

A trajectory of boxes ``cx, cy, w, h`` (pixels) is expressed relative to a reference box, normally its first
box in the window: positions are offsets from the reference centre and all four coordinates are divided by
the reference height::

    x_model = ((cx - cx_ref) / h_ref, (cy - cy_ref) / h_ref, w / h_ref, h / h_ref)

so the prior is invariant to where the target stands in the image (translation) and to how far it is from
the camera (scale), and the same weights work at 640x480 and 1920x1080. The map is affine per trajectory, so
Gaussian means map affinely and variances scale by ``h_ref ** 2``.
"""

from __future__ import annotations

import numpy as np
import torch

Array = np.ndarray | torch.Tensor


def reference(boxes_cxcywh: Array) -> Array:
    """Reference ``(cx, cy, h)`` of boxes (..., 4): normally the first box of each trajectory."""
    return boxes_cxcywh[..., [0, 1, 3]]


def _parts(ref: Array):
    return ref[..., 0:1], ref[..., 1:2], ref[..., 2:3]


def to_model(boxes_cxcywh: Array, ref: Array) -> Array:
    """Pixels ``cx, cy, w, h`` (..., 4) to model coordinates, with ``ref`` (..., 3) broadcastable."""
    cx, cy, h = _parts(ref)
    offset = _cat([cx, cy, 0 * cx, 0 * cx], boxes_cxcywh)
    return (boxes_cxcywh - offset) / h


def mean_from_model(x: Array, ref: Array) -> Array:
    """Model coordinates (..., 4) back to pixels ``cx, cy, w, h``."""
    cx, cy, h = _parts(ref)
    return x * h + _cat([cx, cy, 0 * cx, 0 * cx], x)


def var_to_model(var: Array, ref: Array) -> Array:
    """Per-coordinate variances in pixels^2 (..., 4) to model units."""
    return var / ref[..., 2:3] ** 2


def var_from_model(var: Array, ref: Array) -> Array:
    """Per-coordinate variances in model units (..., 4) to pixels^2."""
    return var * ref[..., 2:3] ** 2


def _cat(parts: list[Array], like: Array) -> Array:
    if isinstance(like, torch.Tensor):
        return torch.cat(parts, dim=-1)
    return np.concatenate(parts, axis=-1)
