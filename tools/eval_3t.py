#!/usr/bin/env python
"""Run a tracker on every 3T window of a folder (batched where the tracker supports it) and score them together.

Windows are MOTChallenge sequence folders (as written by tools/make_3t.py, or anyone else). Trackers run with
N = --num-sources known sources initialised from the first frame. Scores (motmetrics, all windows pooled):
MOTA, MOTP, IDF1, IDSW, MT, ML, FP, FN; timing: seconds of tracking per window (loading and scoring excluded).

Examples:
    python tools/eval_3t.py --windows /tmp/3t60 --tracker mixdvae --batch 64 --json mixdvae.json
    python tools/eval_3t.py --windows /tmp/3t60 --tracker vkf --out /tmp/vkf_results
    python tools/eval_3t.py --windows /tmp/3t60 --tracker kalman
    python tools/eval_3t.py --windows /tmp/3t60 --tracker mixdvae --param max_iter=10 --param z_mode=mean
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path

import numpy as np
import torch
import yaml

from mixdvae.cli import guarded
from mixdvae.cli import parser as make_parser
from mixdvae.errors import InputError, UsageError
from mixdvae.mot import atomic_write_text, write_results
from mixdvae.threet import load_windows, score
from mixdvae.trackers import TRACKERS, make_tracker


def build_tracker(name: str, config=None, num_sources: int = 3, device: str = "cpu", params: dict | None = None):
    """The registered tracker ``name`` with N known sources (and ``device`` where it takes one)."""
    if name not in TRACKERS:
        raise UsageError(f"unknown tracker {name!r}; registered: {', '.join(sorted(TRACKERS))}")
    allowed = TRACKERS[name].parameter_names()
    overrides = dict(params or {})
    if "num_sources" in allowed:
        overrides.setdefault("num_sources", num_sources)
    else:
        print(f"warning: {name} does not take num_sources; it runs in its own mode", file=sys.stderr)
    if "device" in allowed:
        overrides.setdefault("device", device)
    elif device != "cpu":
        print(f"warning: {name} runs on the CPU only", file=sys.stderr)
    return make_tracker(name, config, **overrides)


def run_windows(tracker, windows, batch: int = 64) -> tuple[list[np.ndarray], float]:
    """Results of every window and the tracking time in seconds (batched through ``track_windows`` if any)."""
    results = []
    start = time.perf_counter()
    if hasattr(tracker, "track_windows"):
        for i in range(0, len(windows), max(batch, 1)):
            results.extend(tracker.track_windows(windows[i : i + batch]))
    else:
        for seq in windows:
            results.append(tracker.track(seq))
    seconds = time.perf_counter() - start
    for seq, res in zip(windows, results):
        if len(res) and not np.isfinite(res).all():
            raise FloatingPointError(f"{tracker.name} produced NaN or infinite boxes on {seq.name}")
    return results, seconds


def evaluate_windows(tracker, windows, batch: int = 64) -> dict:
    """Scores of ``tracker`` on ``windows`` plus ``seconds_per_window`` and ``windows_per_second``."""
    results, seconds = run_windows(tracker, windows, batch)
    scores = score([w.gt for w in windows], results, [w.length for w in windows])
    scores["seconds_per_window"] = seconds / max(len(windows), 1)
    scores["windows_per_second"] = len(windows) / max(seconds, 1e-12)
    scores["results"] = results
    return scores


def parse_params(items: list[str]) -> dict:
    params = {}
    for item in items:
        if "=" not in item:
            raise ValueError(f"--param expects KEY=VALUE, got {item!r}")
        key, value = item.split("=", 1)
        params[key.strip()] = yaml.safe_load(value)
    return params


def parse_args(argv=None) -> argparse.Namespace:
    parser = make_parser(__doc__)
    parser.add_argument("--windows", type=Path, required=True, help="folder of 3T window sequences")
    parser.add_argument("--tracker", required=True, help="registered tracker: " + ", ".join(sorted(TRACKERS)))
    parser.add_argument("--config", type=Path, help="YAML of tracker parameters")
    parser.add_argument("--param", action="append", default=[], metavar="KEY=VALUE",
                        help="override one tracker parameter (YAML value); repeatable")
    parser.add_argument("--num-sources", type=int, default=3, help="N known sources (default: %(default)s)")
    parser.add_argument("--device", default="cpu", help="cpu or cuda, for trackers that take it (default: cpu)")
    parser.add_argument("--batch", type=int, default=64, help="windows per batched call (default: %(default)s)")
    parser.add_argument("--threads", type=int, default=1,
                        help="torch CPU threads (default: %(default)s, i.e. timings on one core)")
    parser.add_argument("--out", type=Path, help="write one MOTChallenge result file per window here")
    parser.add_argument("--json", type=Path, metavar="FILE", help="write the scores as JSON")
    return parser.parse_args(argv)


@guarded
def main(argv=None) -> int:
    args = parse_args(argv)
    torch.set_num_threads(max(args.threads, 1))
    windows = load_windows(args.windows)
    missing = [w.name for w in windows if w.gt is None]
    if missing:
        raise InputError(f"windows without gt/gt.txt: {', '.join(missing[:5])}")
    tracker = build_tracker(args.tracker, args.config, args.num_sources, args.device, parse_params(args.param))
    scores = evaluate_windows(tracker, windows, args.batch)
    results = scores.pop("results")
    if args.out:
        for seq, res in zip(windows, results):
            write_results(args.out / f"{seq.name}.txt", res)
    print(f"{args.tracker} on {len(windows)} window(s) from {args.windows} (batch {args.batch}, {args.device})")
    print("  MOTA {MOTA:6.2f}  MOTP {MOTP:6.2f}  IDF1 {IDF1:6.2f}  IDSW {IDSW}  MT {MT}  ML {ML}  FP {FP}  FN {FN}"
          .format(**scores))
    print(f"  {scores['seconds_per_window']:.4f} s per window ({scores['windows_per_second']:.1f} windows/s)")
    if args.json:
        keys = ["windows", "MOTA", "MOTP", "IDF1", "IDSW", "MT", "ML", "FP", "FN", "seconds_per_window"]
        payload = {k: scores[k] for k in keys}
        payload.update(tracker=args.tracker, batch=args.batch, device=args.device)
        atomic_write_text(args.json, json.dumps(payload, indent=1) + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
