"""How tracking cost grows with the crowd: synthetic scenes of 5 to 200 people, the same frames, timed per tracker.

:func:`scaling_scenes` simulates one synthetic scene (:func:`mixdvae.synthetic.generate_sequence`, static camera)
at several crowd sizes; :func:`measure` tracks each with every tracker (one warm-up run on the smallest scene,
then the median of ``repeats`` timed runs per scene) and returns rows of frames per second and seconds per
frame; :func:`growth` compares the cost of two crowd sizes with their number of people; :func:`plot` draws
seconds per frame against people per frame on log-log axes. ``tools/benchmark.py --scaling`` prints and plots
them.
"""

from __future__ import annotations

import math
import statistics
from pathlib import Path

from mixdvae.mot import Sequence
from mixdvae.runner import run_tracker
from mixdvae.synthetic import generate_sequence

CROWDS = (5, 20, 50, 100, 200)


def scaling_scenes(crowds=CROWDS, frames: int = 150, seed: int = 0) -> dict[int, Sequence]:
    """One synthetic scene (sequence 1 of ``seed``) per crowd size, all ``frames`` long. The camera is static and
    12 m high, so that most people stay detectable in a crowd (about 70 % at 200 people, against 25 % from a
    typical 3 m)."""
    return {n: generate_sequence(1, seed, crowd=n, length=frames, pan_amplitude=0.0, camera_height=12.0)
            for n in crowds}


def people_per_frame(sequence: Sequence) -> float:
    """Mean number of ground-truth people in view per frame."""
    return len(sequence.gt) / sequence.length


def measure(tracker_names, scenes: dict[int, Sequence], repeats: int = 3, make=None) -> list[dict]:
    """Time every tracker on every scene; one row per (tracker, crowd): ``tracker``, ``crowd``, ``people`` (per
    frame), ``detections`` (per frame), ``fps``, ``seconds_per_frame``. ``make(name)`` builds a fresh tracker
    (default: :func:`mixdvae.trackers.make_tracker` with its defaults)."""
    if make is None:
        from mixdvae.trackers import make_tracker

        make = make_tracker
    rows = []
    smallest = scenes[min(scenes)]
    for name in tracker_names:
        run_tracker(make(name), smallest)  # warm-up: kernels compiled or loaded, caches filled
        for crowd, sequence in scenes.items():
            seconds = statistics.median(run_tracker(make(name), sequence).seconds for _ in range(repeats))
            rows.append({
                "tracker": name,
                "crowd": crowd,
                "people": people_per_frame(sequence),
                "detections": len(sequence.detections) / sequence.length,
                "fps": sequence.length / seconds,
                "seconds_per_frame": seconds / sequence.length,
            })
    return rows


def growth(rows: list[dict], tracker: str, low: int = 20, high: int = 200) -> dict:
    """Cost growth of ``tracker`` between crowds ``low`` and ``high``: ``cost_ratio`` (seconds per frame),
    ``people_ratio``, ``relative`` = cost_ratio / people_ratio (at most 1: at most linear) and the log-log
    ``slope`` (1 = linear)."""
    by_crowd = {row["crowd"]: row for row in rows if row["tracker"] == tracker}
    a, b = by_crowd[low], by_crowd[high]
    cost = b["seconds_per_frame"] / a["seconds_per_frame"]
    people = b["people"] / a["people"]
    return {"cost_ratio": cost, "people_ratio": people, "relative": cost / people,
            "slope": math.log(cost) / math.log(people)}


def format_rows(rows: list[dict]) -> str:
    """A plain-text table of :func:`measure`'s rows."""
    lines = [f"{'tracker':<10} {'crowd':>6} {'people/fr':>10} {'dets/fr':>8} {'fps':>10} {'ms/frame':>10}"]
    for row in rows:
        lines.append(f"{row['tracker']:<10} {row['crowd']:>6} {row['people']:>10.1f} {row['detections']:>8.1f} "
                     f"{row['fps']:>10.1f} {1000 * row['seconds_per_frame']:>10.3f}")
    return "\n".join(lines)


def plot(rows: list[dict], path: str | Path, title: str = "") -> Path:
    """Seconds per frame against people per frame, log-log, one line per tracker and a linear guide."""
    from matplotlib.figure import Figure  # matplotlib is loaded only to draw

    fig = Figure(figsize=(6, 4.5))
    ax = fig.add_subplot()
    trackers = list(dict.fromkeys(row["tracker"] for row in rows))
    for name in trackers:
        mine = [row for row in rows if row["tracker"] == name]
        ax.plot([r["people"] for r in mine], [r["seconds_per_frame"] for r in mine], "o-", label=name)
    people = sorted({row["people"] for row in rows})
    top = max(row["seconds_per_frame"] for row in rows if row["people"] == people[0])
    ax.plot(people, [top * p / people[0] for p in people], "k--", lw=0.8, label="linear")
    ax.set_xscale("log")
    ax.set_yscale("log")
    ax.set_xlabel("people in view per frame")
    ax.set_ylabel("seconds per frame")
    ax.set_title(title or "tracking cost against crowd size")
    ax.grid(True, which="both", lw=0.3)
    ax.legend()
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, dpi=120, bbox_inches="tight")
    return path
