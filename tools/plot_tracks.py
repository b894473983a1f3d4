#!/usr/bin/env python
"""Plot the trajectories of a tracker's result file and/or a sequence's ground truth; optionally draw the boxes
over the sequence's frame images.

The PNG shows one panel per source (ground truth, results): each identity's path of box foot points (or
centres) in image coordinates, one colour per id, a dot where it starts and its id where it ends.

Examples:
    python tools/plot_tracks.py --seq SYNTH-01 --gt                           # synthetic data, gt only
    python tools/plot_tracks.py --seq SYNTH-01 --results runs/SYNTH-01.txt --gt --out /tmp/synth01.png
    python tools/plot_tracks.py --data-root data/MOT17/train --seq MOT17-02 --results r/MOT17-02.txt \\
        --frames-out /tmp/mot17-02-frames
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from mixdvae.cli import guarded
from mixdvae.errors import EXIT_CODES_HELP, EXIT_OK
from mixdvae.mot import MOT17_DETECTORS, Sequence, find_sequence, pedestrian_rows, read_mot_file, read_seqinfo
from mixdvae.plotting import POINTS, draw_frames, plot_trajectories
from mixdvae.runner import DEFAULT_DATA_ROOT, ensure_default_data


def parse_args(argv=None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter, epilog=EXIT_CODES_HELP
    )
    parser.add_argument("--data-root", type=Path, default=DEFAULT_DATA_ROOT,
                        help="folder of MOTChallenge sequence folders (default: the synthetic benchmark, "
                        "data/synthetic/train, generated on first use)")
    parser.add_argument("--seq", required=True, metavar="NAME",
                        help="sequence folder name, e.g. SYNTH-01, TUD-Campus, MOT17-02 or MOT17-02-FRCNN")
    parser.add_argument("--detector", choices=MOT17_DETECTORS, default="FRCNN",
                        help="detector suffix for a MOT17 name given without one (default: FRCNN)")
    parser.add_argument("--results", type=Path, metavar="FILE",
                        help="tracker result file (frame, id, x, y, w, h, ...) to plot")
    parser.add_argument("--gt", action="store_true",
                        help="also plot the sequence's ground truth (scored pedestrians only: flag 1, class 1 or -1)")
    parser.add_argument("--point", choices=POINTS, default="foot",
                        help="the point of each box that traces a trajectory: bottom centre (foot) or centre "
                        "(default: foot)")
    parser.add_argument("--out", type=Path, metavar="PNG",
                        help="trajectory plot to write (default: the result file with a .png suffix, or "
                        "runs/plots/NAME-gt.png when only --gt is given)")
    parser.add_argument("--frames-out", type=Path, metavar="DIR",
                        help="when the sequence has images (NAME/img1/), write each frame with the boxes and ids "
                        "drawn as DIR/000001.jpg ...; results are drawn thick with ids, ground truth thin")
    args = parser.parse_args(argv)
    if args.results is None and not args.gt:
        parser.error("nothing to plot: give --results FILE and/or --gt")
    if args.out is None:
        gt_only = Path("runs") / "plots" / f"{args.seq}-gt.png"
        args.out = args.results.with_suffix(".png") if args.results else gt_only
    return args


def load_panels(sequence: Sequence, results: Path | None, with_gt: bool) -> dict:
    """Track rows to plot, by panel label: ``ground truth`` and/or ``results`` (file name)."""
    panels = {}
    if with_gt:
        if sequence.gt is None:
            raise FileNotFoundError(f"{sequence.path}/gt/gt.txt not found: the sequence has no ground truth")
        panels["ground truth"] = pedestrian_rows(sequence.gt)
    if results is not None:
        panels[f"results {results.name}"] = read_mot_file(results, "results", sequence.length)
    return panels


@guarded
def main(argv=None) -> int:
    args = parse_args(argv)
    ensure_default_data(args.data_root)
    folder = find_sequence(args.data_root, args.seq, args.detector)
    sequence = Sequence.load(folder)
    panels = load_panels(sequence, args.results, args.gt)
    out = plot_trajectories(panels, args.out, sequence.name, sequence.image_size, args.point)
    print(f"wrote {out}")
    if args.frames_out is not None:
        info = read_seqinfo(folder / "seqinfo.ini")
        image_dir = folder / info.im_dir
        if not image_dir.is_dir():
            print(f"note: {image_dir} does not exist; no frames drawn", file=sys.stderr)
            return EXIT_OK
        tracks = panels.get(f"results {args.results.name}") if args.results else None
        gt = panels.get("ground truth")
        count = draw_frames(image_dir, sequence.length, args.frames_out, tracks, gt, info.im_ext)
        print(f"wrote {count} of {sequence.length} frames, annotated, to {args.frames_out}")
    return EXIT_OK


if __name__ == "__main__":
    sys.exit(main())
