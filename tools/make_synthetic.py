#!/usr/bin/env python
"""Generate the synthetic MOTChallenge benchmark (pedestrians seen by a pinhole camera, with a simulated detector).

Writes OUT/train/SYNTH-01, SYNTH-02, ... each with seqinfo.ini, det/det.txt and gt/gt.txt (MOT17 conventions),
deterministically from --seed: the same seed writes byte-identical files. Prints one line of statistics per
sequence (detector quality measured by matching detections to ground truth at IoU 0.5).

Examples:
    python tools/make_synthetic.py                                  # data/synthetic, 6 sequences, seed 0
    python tools/make_synthetic.py --out /tmp/synth --num-sequences 2 --seed 3 --length 200
"""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

from mixdvae.cli import guarded
from mixdvae.errors import EXIT_CODES_HELP, EXIT_OK
from mixdvae.mot import Sequence
from mixdvae.resources import data_home
from mixdvae.synthetic import sequence_stats, write_benchmark

COLUMNS = (
    ("name", "{:<10}"), ("frames", "{:>7}"), ("fps", "{:>5g}"), ("size", "{:>11}"), ("ids", "{:>5}"),
    ("people_per_frame", "{:>8.1f}"), ("gt_rows", "{:>8}"), ("det_rows", "{:>9}"), ("fp_fraction", "{:>7.3f}"),
    ("miss_rate", "{:>7.3f}"), ("occluded", "{:>7.3f}"),
)
HEADER = (
    f"{'sequence':<10}{'frames':>7}{'fps':>5}{'size':>11}{'ids':>5}{'people':>8}{'gt_rows':>8}{'det_rows':>9}"
    f"{'FP':>7}{'miss':>7}{'occl':>7}"
)


def parse_args(argv=None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter,
        epilog="table columns: people = mean gt boxes per frame; FP = share of detections matching no gt box; "
        "miss = share of gt boxes without a detection; occl = share of gt boxes with visibility < 0.5. "
        + EXIT_CODES_HELP,
    )
    parser.add_argument("--out", type=Path, default=data_home() / "synthetic",
                        help="output folder; sequences go to OUT/train/SYNTH-NN (default: data/synthetic in the repo)")
    parser.add_argument("--num-sequences", type=int, default=6, metavar="N",
                        help="number of sequences, SYNTH-01 .. SYNTH-N (default: 6)")
    parser.add_argument("--seed", type=int, default=0,
                        help="base random seed; sequence i uses its own stream derived from (seed, i) (default: 0)")
    parser.add_argument("--length", type=int, metavar="FRAMES",
                        help="frames per sequence, the same for all (default: drawn per sequence, 300-600)")
    parser.add_argument("--quiet", action="store_true", help="print nothing but errors")
    args = parser.parse_args(argv)
    if args.num_sequences < 1:
        parser.error("--num-sequences must be at least 1")
    if args.length is not None and args.length < 1:
        parser.error("--length must be at least 1")
    return args


def format_row(stats: dict) -> str:
    return "".join(fmt.format(stats[key]) for key, fmt in COLUMNS)


@guarded
def main(argv=None) -> int:
    args = parse_args(argv)
    overrides = {} if args.length is None else {"length": args.length}
    start = time.perf_counter()
    folders = write_benchmark(args.out, args.num_sequences, args.seed, **overrides)
    seconds = time.perf_counter() - start
    if not args.quiet:
        print(f"wrote {len(folders)} sequences to {args.out / 'train'} in {seconds:.2f} s (seed {args.seed})")
        print(HEADER)
        for folder in folders:
            print(format_row(sequence_stats(Sequence.load(folder))))
    return EXIT_OK


if __name__ == "__main__":
    sys.exit(main())
