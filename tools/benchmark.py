#!/usr/bin/env python
"""Benchmark every registered tracker on the synthetic benchmark and on real MOT15 sequences.

Prints, per data set, the combined TrackEval scores (HOTA, MOTA, IDF1, IDSW, FP, FN) and the tracking speed in
frames per second (median over --repeats timed runs after one warm-up run, single process, tracking only).
Every tracker runs with its defaults (the tuned settings); the Kalman tracker also with SORT's (configs/sort.yaml).

Example:
    python tools/benchmark.py                          # synthetic + ../shared/data/MOT15/train when present
    python tools/benchmark.py --trackers kalman --repeats 1 --json bench.json
"""

from __future__ import annotations

import argparse
import statistics
import sys
import tempfile
from pathlib import Path

import torch

from mixdvae.cli import guarded
from mixdvae.cli import parser as make_parser
from mixdvae.errors import EXIT_OK
from mixdvae.evaluation import COMBINED, format_table
from mixdvae.resources import config_file
from mixdvae.runner import DEFAULT_DATA_ROOT, MOT15_ROOT, load_sequences, run_tracker, score_results, write_json
from mixdvae.trackers import TRACKERS, make_tracker

COLUMNS = ("HOTA", "MOTA", "IDF1", "IDSW", "FP", "FN", "fps")


def parse_args(argv=None) -> argparse.Namespace:
    parser = make_parser(__doc__)
    parser.add_argument("--trackers", nargs="+", default=sorted(TRACKERS), choices=sorted(TRACKERS),
                        help="registered trackers to run (default: all)")
    parser.add_argument("--data-roots", nargs="+", type=Path, default=[DEFAULT_DATA_ROOT, MOT15_ROOT],
                        help="folders of sequence folders; missing ones are skipped with a note "
                             "(default: the synthetic benchmark and ../shared/data/MOT15/train)")
    parser.add_argument("--repeats", type=int, default=3, help="timed runs per sequence (default: %(default)s)")
    parser.add_argument("--threads", type=int, default=1,
                        help="torch CPU threads for the VEM trackers (default: %(default)s: their many small "
                             "operations run fastest on one core)")
    parser.add_argument("--json", type=Path, metavar="FILE", help="write {data_set: {entry: scores}} as JSON")
    parser.add_argument("--scaling", action="store_true",
                        help="instead: time the trackers on synthetic scenes of 5, 20, 50, 100 and 200 people "
                             "(the same frames), print fps and seconds per frame and plot them (mixdvae.scaling)")
    parser.add_argument("--scaling-frames", type=int, default=150,
                        help="frames of each scaling scene (default: %(default)s)")
    parser.add_argument("--plot", type=Path, default=Path("runs/scaling.png"),
                        help="the scaling plot, log-log PNG (default: %(default)s)")
    return parser.parse_args(argv)


def entries(tracker_names: list[str]) -> list[tuple[str, str, Path | None]]:
    """(label, tracker, config) rows: each tracker with its defaults, plus Kalman with SORT's settings."""
    rows = []
    for name in tracker_names:
        if name == "kalman":
            rows.append(("kalman (SORT settings)", name, config_file("sort")))
        rows.append((f"{name} (defaults)", name, None))
    return rows


def benchmark_entry(tracker_name: str, config, sequences, data_root: Path, repeats: int) -> dict:
    """Track every sequence (one warm-up run, then ``repeats`` timed runs) and score the last run."""
    seconds, frames, results = 0.0, 0, {}
    for sequence in sequences:
        run_tracker(make_tracker(tracker_name, config), sequence)  # warm-up (JIT, caches)
        runs = [run_tracker(make_tracker(tracker_name, config), sequence) for _ in range(repeats)]
        seconds += statistics.median(run.seconds for run in runs)
        frames += sequence.length
        results[sequence.name] = runs[-1].results
    with tempfile.TemporaryDirectory(prefix="mixdvae_bench_") as tmp:
        scores = score_results(data_root, results, tmp)[COMBINED]
    return {**scores, "fps": frames / seconds, "frames": frames, "seconds": seconds}


def scaling(args) -> int:
    """``--scaling``: seconds per frame against the number of people, a table, the growth from 20 to 200 people
    and a log-log plot."""
    from mixdvae import scaling as sc

    rows = sc.measure(args.trackers, sc.scaling_scenes(frames=args.scaling_frames), args.repeats)
    print(sc.format_rows(rows) + "\n")
    for name in args.trackers:
        g = sc.growth(rows, name)
        print(f"{name}: 20 -> 200 people: cost x{g['cost_ratio']:.2f} for x{g['people_ratio']:.2f} people "
              f"(relative {g['relative']:.2f}, log-log slope {g['slope']:.2f})")
    print(f"plot: {sc.plot(rows, args.plot)}")
    if args.json:
        write_json(args.json, rows)
    return EXIT_OK


@guarded
def main(argv=None) -> int:
    args = parse_args(argv)
    torch.set_num_threads(args.threads)
    if args.scaling:
        return scaling(args)
    report = {}
    for data_root in args.data_roots:
        if data_root.resolve() != DEFAULT_DATA_ROOT and not data_root.is_dir():
            print(f"skipping {data_root}: not found\n")
            continue
        sequences = load_sequences(data_root, ["all"])
        frames = sum(s.length for s in sequences)
        title = f"{data_root.parent.name}/{data_root.name} ({len(sequences)} seq, {frames} fr)"
        rows = {label: benchmark_entry(name, config, sequences, data_root, args.repeats)
                for label, name, config in entries(args.trackers)}
        print(format_table(rows, title, COLUMNS, width=32) + "\n", flush=True)
        report[str(data_root)] = rows
    if args.json:
        write_json(args.json, report)
    return EXIT_OK


if __name__ == "__main__":
    sys.exit(main())
