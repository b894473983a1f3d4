"""Box conventions and IoU.

Files and public APIs use ``x, y, w, h``: top-left corner, width and height, in pixels.
Motion models use ``cx, cy, w, h`` (centre, width, height, pixels); IoU uses corners
``x1, y1, x2, y2``. Every function takes arrays whose last axis holds the 4 coordinates
and keeps any leading axes.
"""

from __future__ import annotations

import numpy as np
from scipy.optimize import linear_sum_assignment


def xywh_to_xyxy(boxes: np.ndarray) -> np.ndarray:
    boxes = np.asarray(boxes, dtype=float)
    return np.concatenate([boxes[..., :2], boxes[..., :2] + boxes[..., 2:4]], axis=-1)


def xywh_to_cxcywh(boxes: np.ndarray) -> np.ndarray:
    boxes = np.asarray(boxes, dtype=float)
    return np.concatenate([boxes[..., :2] + boxes[..., 2:4] / 2, boxes[..., 2:4]], axis=-1)


def cxcywh_to_xywh(boxes: np.ndarray) -> np.ndarray:
    boxes = np.asarray(boxes, dtype=float)
    return np.concatenate([boxes[..., :2] - boxes[..., 2:4] / 2, boxes[..., 2:4]], axis=-1)


def iou(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    """Element-wise IoU of boxes ``x, y, w, h`` (..., 4), broadcasting the leading axes; 0 for empty boxes."""
    a = xywh_to_xyxy(a)
    b = xywh_to_xyxy(b)
    inter_w = np.clip(np.minimum(a[..., 2], b[..., 2]) - np.maximum(a[..., 0], b[..., 0]), 0, None)
    inter_h = np.clip(np.minimum(a[..., 3], b[..., 3]) - np.maximum(a[..., 1], b[..., 1]), 0, None)
    inter = inter_w * inter_h
    area_a = (a[..., 2] - a[..., 0]) * (a[..., 3] - a[..., 1])
    area_b = (b[..., 2] - b[..., 0]) * (b[..., 3] - b[..., 1])
    union = area_a + area_b - inter
    return np.divide(inter, union, out=np.zeros_like(inter), where=union > 0)


def iou_matrix(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    """IoU between every box of ``a`` (N, 4) and every box of ``b`` (M, 4), both ``x, y, w, h``.

    Returns an (N, M) array; empty inputs give an empty matrix of the right shape.
    """
    a = np.asarray(a, dtype=float).reshape(-1, 4)
    b = np.asarray(b, dtype=float).reshape(-1, 4)
    return iou(a[:, None, :], b[None, :, :])


def match_iou(a: np.ndarray, b: np.ndarray, threshold: float) -> np.ndarray:
    """The Hungarian assignment on IoU between boxes ``a`` (N, 4) and ``b`` (M, 4), both ``x, y, w, h``: the
    project's one matcher (trackers, births, 3T windows, detector statistics).

    Returns a (P, 2) int array of index pairs ``(i, j)`` of the optimal assignment whose IoU is at least
    ``threshold``; pairs below it are left unmatched.
    """
    overlap = iou_matrix(a, b)  # (N, M)
    if overlap.size == 0:
        return np.zeros((0, 2), dtype=int)
    rows, cols = linear_sum_assignment(-overlap)
    keep = overlap[rows, cols] >= threshold
    return np.column_stack([rows[keep], cols[keep]]).astype(int)
