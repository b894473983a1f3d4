"""From MOTChallenge sequences (windows) to a padded :class:`VEMInput` batch and back to result rows."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import torch

from mixdvae.boxes import cxcywh_to_xywh, xywh_to_cxcywh
from mixdvae.mot import Sequence
from mixdvae.vem.engine import VEMInput


@dataclass
class PackedBatch:
    """A :class:`VEMInput` plus what is needed to write results: lengths and number of sources per window."""

    inp: VEMInput
    lengths: list[int]
    num_sources: list[int]


def first_frame_sources(dets: np.ndarray, num_sources: int) -> np.ndarray:
    """The ``num_sources`` highest-scoring detections of a frame ((M, 5) ``x, y, w, h, score``), as boxes."""
    order = np.argsort(-dets[:, 4], kind="stable")[:num_sources]
    return dets[order, :4]


def pack_sequences(
    sequences: list[Sequence], num_sources: int, min_score: float = -np.inf, init_frame: int = 1
) -> PackedBatch:
    """Pad the detections of several sequences into one batch.

    Every window gets ``num_sources`` sources initialised from the strongest detections of frame
    ``init_frame``; a window with fewer detections there gets fewer sources (the others are masked out).
    Detections scoring below ``min_score`` are dropped.
    """
    B = len(sequences)
    T = max(s.length for s in sequences)
    per_frame = []
    K = 1
    for seq in sequences:
        frames = []
        for f in range(1, seq.length + 1):
            d = seq.frame_detections(f)
            d = d[d[:, 4] >= min_score]
            frames.append(d)
            K = max(K, len(d))
        per_frame.append(frames)
    obs = np.ones((B, T, K, 4))
    mask = np.zeros((B, T, K), dtype=bool)
    init = np.ones((B, num_sources, 4))
    smask = np.zeros((B, num_sources, T), dtype=bool)
    area = np.zeros(B)
    counts = []
    for b, (seq, frames) in enumerate(zip(sequences, per_frame)):
        for t, d in enumerate(frames):
            if len(d):
                obs[b, t, : len(d)] = xywh_to_cxcywh(d[:, :4])
                mask[b, t, : len(d)] = True
        start = min(init_frame, seq.length) - 1
        boxes = first_frame_sources(frames[start], num_sources)
        n = len(boxes)
        if n:
            init[b, :n] = xywh_to_cxcywh(boxes)
            smask[b, :n, start : seq.length] = True
        counts.append(n)
        area[b] = float(seq.im_width) * float(seq.im_height)
    inp = VEMInput(
        torch.from_numpy(obs),
        torch.from_numpy(mask),
        torch.from_numpy(init),
        torch.from_numpy(smask),
        torch.from_numpy(area),
    )
    return PackedBatch(inp, [s.length for s in sequences], counts)


def unpack_results(mean: torch.Tensor, source_mask: torch.Tensor, first_id: int = 1) -> list[np.ndarray]:
    """Result rows (R, 6) ``frame, id, x, y, w, h`` per window from posterior means (B, N, T, 4) (cx, cy, w, h).

    A source is reported on every frame where it exists; source n gets identity ``first_id + n``.
    """
    mean = mean.detach().to("cpu", torch.float64).numpy()
    alive = source_mask.detach().cpu().numpy()
    out = []
    for b in range(mean.shape[0]):
        n_idx, t_idx = np.nonzero(alive[b])
        boxes = mean[b, n_idx, t_idx].copy()
        boxes[:, 2:] = np.maximum(boxes[:, 2:], 1e-3)
        xywh = cxcywh_to_xywh(boxes)
        rows = np.column_stack([t_idx + 1, n_idx + first_id, xywh]).astype(float)
        order = np.lexsort((rows[:, 1], rows[:, 0]))
        out.append(rows[order].reshape(-1, 6))
    return out
