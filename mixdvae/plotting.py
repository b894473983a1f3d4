"""Pictures of tracks: trajectory plots (matplotlib, no display needed) and boxes drawn over frame images (OpenCV).

Track rows are MOTChallenge rows ``frame, id, x, y, w, h, ...`` (1-based frames, boxes in pixels). An identity
gets the same colour in every picture.
"""

from __future__ import annotations

import os
from pathlib import Path

import cv2
import numpy as np
from matplotlib import colormaps
from matplotlib.figure import Figure

from mixdvae.mot import atomic_write

POINTS = ("foot", "centre")
_PALETTE = colormaps["tab20"]


def id_colour(track_id: int) -> tuple[float, float, float]:
    """RGB colour (components in 0..1) of an identity."""
    return tuple(_PALETTE(int(track_id) % _PALETTE.N)[:3])


def track_point(rows: np.ndarray, point: str = "foot") -> np.ndarray:
    """The (R, 2) image point of each row's box, pixels: bottom centre (``"foot"``) or ``"centre"``."""
    if point not in POINTS:
        raise ValueError(f"point must be one of {POINTS}, got {point!r}")
    x = rows[:, 2] + rows[:, 4] / 2
    y = rows[:, 3] + (rows[:, 5] if point == "foot" else rows[:, 5] / 2)
    return np.column_stack([x, y])


def _draw_panel(ax, rows: np.ndarray, label: str, image_size: tuple[int, int], point: str) -> None:
    """One panel: a polyline per identity in frame order, a dot at its start and its id at its end."""
    points = track_point(rows, point)
    for track_id in np.unique(rows[:, 1]):
        mine = np.flatnonzero(rows[:, 1] == track_id)
        mine = mine[np.argsort(rows[mine, 0], kind="stable")]
        path, colour = points[mine], id_colour(track_id)
        ax.plot(path[:, 0], path[:, 1], "-", color=colour, linewidth=1.0)
        ax.plot(path[0, 0], path[0, 1], "o", color=colour, markersize=2.5)
        ax.annotate(str(int(track_id)), path[-1], fontsize=6, color=colour, xytext=(2, 2), textcoords="offset points")
    width, height = image_size
    ax.set_xlim(0, width)
    ax.set_ylim(height, 0)  # image rows grow downwards
    ax.set_aspect("equal")
    ax.set_title(f"{label}: {len(np.unique(rows[:, 1]))} ids, {len(rows)} boxes", fontsize=9)
    ax.set_xlabel("x (px)")
    ax.set_ylabel("y (px)")


def plot_trajectories(
    panels: dict[str, np.ndarray],
    out_png: str | os.PathLike,
    title: str,
    image_size: tuple[int, int],
    point: str = "foot",
) -> Path:
    """Draw the trajectories of each entry of ``panels`` (label -> (R, >=6) track rows) side by side to a PNG.

    Args:
        panels: e.g. ``{"ground truth": gt_rows, "results": result_rows}``; at least one.
        out_png: the PNG to write, atomically (a temporary file in the same folder, then a rename).
        title: figure title, e.g. the sequence name.
        image_size: ``(width, height)`` in pixels; the axes span the image.
        point: ``"foot"`` (box bottom centre) or ``"centre"``.
    """
    if not panels:
        raise ValueError("nothing to plot: give ground truth and/or results")
    width, height = image_size
    panel_width = 6.0
    fig = Figure(figsize=(panel_width * len(panels), panel_width * height / width + 1.0), layout="constrained")
    for ax, (label, rows) in zip(fig.subplots(1, len(panels), squeeze=False)[0], panels.items()):
        _draw_panel(ax, np.asarray(rows, dtype=float), label, image_size, point)
    fig.suptitle(f"{title} ({point} point)")
    out_png = Path(out_png)
    atomic_write(out_png, lambda handle: fig.savefig(handle, format="png", dpi=150), binary=True)
    return out_png


def _draw_boxes(image: np.ndarray, rows: np.ndarray, thickness: int, with_ids: bool) -> None:
    """Draw (M, >=6) rows' boxes on a BGR image in place, each in its identity's colour."""
    for row in rows:
        x, y, w, h = row[2:6]
        bgr = tuple(int(255 * c) for c in reversed(id_colour(row[1])))
        top_left, bottom_right = (int(round(x)), int(round(y))), (int(round(x + w)), int(round(y + h)))
        cv2.rectangle(image, top_left, bottom_right, bgr, thickness)
        if with_ids:
            cv2.putText(image, str(int(row[1])), (top_left[0], max(top_left[1] - 4, 12)),
                        cv2.FONT_HERSHEY_SIMPLEX, 0.5, bgr, 1, cv2.LINE_AA)


def draw_frames(
    image_dir: str | os.PathLike,
    length: int,
    out_dir: str | os.PathLike,
    tracks: np.ndarray | None = None,
    gt: np.ndarray | None = None,
    im_ext: str = ".jpg",
) -> int:
    """Write each frame image of ``image_dir`` (``000001.jpg`` ...) with boxes drawn, as ``out_dir/000001.jpg`` ...

    Args:
        image_dir: the sequence's image folder (MOTChallenge ``img1``).
        length: number of frames; missing or unreadable images are skipped.
        out_dir: output folder, created if needed; each JPEG is written atomically.
        tracks: (R, >=6) rows drawn thick with their ids (tracker results), or None.
        gt: (G, >=6) rows drawn thin (ground truth), labelled only when ``tracks`` is None; or None.
        im_ext: image file extension, with the dot.

    Returns the number of frames written.
    """
    image_dir, out_dir = Path(image_dir), Path(out_dir)
    layers = []  # (rows, line thickness, draw ids)
    if gt is not None:
        layers.append((gt, 1, tracks is None))
    if tracks is not None:
        layers.append((tracks, 2, True))
    written = 0
    for frame in range(1, length + 1):
        path = image_dir / f"{frame:06d}{im_ext}"
        image = cv2.imread(str(path), cv2.IMREAD_COLOR) if path.is_file() else None
        if image is None:
            continue
        for rows, thickness, labelled in layers:
            _draw_boxes(image, rows[rows[:, 0] == frame], thickness, labelled)
        ok, encoded = cv2.imencode(".jpg", image)
        if not ok:
            raise OSError(f"could not encode frame {frame} of {image_dir} as JPEG")
        jpeg = encoded.tobytes()
        atomic_write(out_dir / f"{frame:06d}.jpg", lambda handle, data=jpeg: handle.write(data), binary=True)
        written += 1
    return written
