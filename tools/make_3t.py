#!/usr/bin/env python
"""Build 3-target ("3T") evaluation windows from MOTChallenge sequences (DESIGN.md section 4).

Each window is written as a tiny MOTChallenge sequence OUT/<seq>-f<start>-g<group>/{seqinfo.ini, det/det.txt,
gt/gt.txt}: the matched public detections of three ground-truth targets (shuffled within each frame, missing
where unmatched) and their three tracks. OUT/manifest.json lists every window and the settings.

Examples:
    python tools/make_3t.py --data-root ../shared/data/MOT15/train --length 60 --stride 10 --out /tmp/3t60
    python tools/make_3t.py --data-root data/MOT17/train --seq MOT17-02-SDP MOT17-04-SDP --length 120 --out 3t
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from mixdvae.cli import guarded
from mixdvae.cli import parser as make_parser
from mixdvae.errors import EXIT_OK, UsageError
from mixdvae.runner import load_sequences
from mixdvae.threet import build_windows, save_windows


def parse_args(argv=None) -> argparse.Namespace:
    parser = make_parser(__doc__)
    parser.add_argument("--data-root", type=Path, required=True, help="folder of MOTChallenge sequence folders")
    parser.add_argument("--seq", nargs="+", default=["all"], help="sequence names (default: all with gt)")
    parser.add_argument("--length", type=int, default=60, help="window length T in frames (default: %(default)s)")
    parser.add_argument("--stride", type=int, default=40, help="frames between window starts (default: %(default)s)")
    parser.add_argument("--targets", type=int, default=3, help="targets per window (default: %(default)s)")
    parser.add_argument("--iou", type=float, default=0.5,
                        help="IoU threshold of det-gt matching (default: %(default)s)")
    parser.add_argument("--coverage", type=float, default=0.65,
                        help="minimum fraction of frames where a target has a matched detection (default: %(default)s)")
    parser.add_argument("--max-groups", type=int, default=20, help="groups sampled per window (default: %(default)s)")
    parser.add_argument("--head", type=int, default=5,
                        help="first frames where all targets must be detected (default: %(default)s)")
    parser.add_argument("--seed", type=int, default=0,
                        help="seed of group sampling and shuffling (default: %(default)s)")
    parser.add_argument("--out", type=Path, required=True, help="output folder")
    return parser.parse_args(argv)


@guarded
def main(argv=None) -> int:
    args = parse_args(argv)
    if args.length < 1 or args.stride < 1:
        raise UsageError("--length and --stride must be positive")
    sequences = load_sequences(args.data_root, args.seq)
    windows = []
    for seq in sequences:
        if seq.gt is None:
            print(f"{seq.name}: no gt/gt.txt, skipped", file=sys.stderr)
            continue
        found = build_windows(seq, args.length, args.stride, args.targets, args.iou, args.coverage,
                              args.max_groups, args.head, args.seed)
        print(f"{seq.name}: {len(found)} window(s)")
        windows.extend(found)
    settings = {k: (str(v) if isinstance(v, Path) else v) for k, v in vars(args).items() if k != "out"}
    settings["sequences"] = [s.name for s in sequences]
    manifest = save_windows(windows, args.out, {"settings": settings})
    print(f"{len(windows)} window(s) of {args.length} frames -> {args.out} ({manifest.name})")
    return EXIT_OK


if __name__ == "__main__":
    sys.exit(main())
