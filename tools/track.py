#!/usr/bin/env python
"""Track MOTChallenge sequences from their public detections; optionally score them.

Examples:
    python tools/track.py --seq SYNTH-01 --eval                 # MixDVAE on bundled synthetic data (made on first use)
    python tools/track.py --data-root ../shared/data/MOT15/train --seq TUD-Campus --out /tmp/r --eval
    python tools/track.py --data-root data/MOT17/train --seq MOT17-02 --detector SDP --tracker kalman
    python tools/track.py --seq all --tracker kalman --config sort --eval --json run.json
    python tools/track.py --data-root ../shared/data/MOT15/train --seq all --workers 2 --eval
    python tools/track.py --tracker mixdvae --print-config > my.yaml   # edit, then --config my.yaml
"""

from __future__ import annotations

import sys
from pathlib import Path

import yaml

from mixdvae.cli import guarded, parser
from mixdvae.errors import EXIT_OK, UsageError
from mixdvae.evaluation import BENCHMARKS, COMBINED, evaluate, format_table, guess_benchmark
from mixdvae.mot import MOT17_DETECTORS, write_results
from mixdvae.runner import DEFAULT_DATA_ROOT, load_sequences, track_sequences, write_json
from mixdvae.trackers import TRACKERS, make_tracker
from mixdvae.trackers.base import load_config

DEFAULT_TRACKER = "mixdvae"


def parse_args(argv=None):
    p = parser(__doc__)
    p.add_argument("--seq", nargs="+", metavar="NAME",
                   help="sequence folder name(s) in --data-root, or 'all'; a MOT17 name without detector "
                        "suffix (MOT17-02) uses --detector")
    p.add_argument("--data-root", type=Path, default=DEFAULT_DATA_ROOT,
                   help="folder of MOTChallenge sequence folders (default: the synthetic benchmark, generated on "
                        "first use: %(default)s)")
    p.add_argument("--detector", default="FRCNN", choices=MOT17_DETECTORS,
                   help="MOT17 public detector for names without suffix (default: %(default)s)")
    p.add_argument("--tracker", choices=sorted(TRACKERS),
                   help=f"registered tracker: one of {', '.join(sorted(TRACKERS))} (kalman: the SORT/ByteTrack-style "
                        f"yardstick); default: the 'tracker:' key of --config, else {DEFAULT_TRACKER}")
    p.add_argument("--config", metavar="YAML",
                   help="YAML of tracker parameters overriding the tracker's defaults, or the name of a shipped one "
                        "(e.g. sort = configs/sort.yaml); default: the tracker's defaults (the tuned settings)")
    p.add_argument("--print-config", action="store_true",
                   help="print every parameter of the tracker (defaults and --config overrides) as YAML and exit")
    p.add_argument("--out", type=Path, default=Path("results"),
                   help="folder for the result files OUT/NAME.txt (default: %(default)s)")
    p.add_argument("--eval", action="store_true", help="score with TrackEval when ground truth exists")
    p.add_argument("--benchmark", choices=BENCHMARKS,
                   help="TrackEval preprocessing (default: from the sequence name; MOT15 for other data)")
    p.add_argument("--json", type=Path, metavar="FILE",
                   help="write sequence, tracker, frames, seconds, fps (and metrics with --eval) as JSON")
    p.add_argument("--workers", type=int, default=1,
                   help="sequences tracked in parallel processes (default: %(default)s); the results are the same "
                        "as with one process")
    p.add_argument("--no-progress", action="store_true", help="hide the progress bars")
    p.add_argument("--device", help="cpu or cuda for the VEM trackers (mixdvae, vkf, gmm); default: the "
                                    "config's device, else cpu")
    p.add_argument("--threads", type=int, default=1,
                   help="torch CPU threads per process for the VEM trackers (default: %(default)s: their many small "
                        "operations run fastest on one core)")
    args = p.parse_args(argv)
    if args.seq is None and not args.print_config:
        p.error("the following arguments are required: --seq")
    if args.workers < 1 or args.threads < 1:
        p.error("--workers and --threads must be at least 1")
    return args


@guarded
def main(argv=None) -> int:
    args = parse_args(argv)
    if args.tracker is None:
        args.tracker = load_config(args.config).get("tracker", DEFAULT_TRACKER) if args.config else DEFAULT_TRACKER
    overrides = {"device": args.device} if args.device else {}
    if overrides and "device" not in TRACKERS[args.tracker].parameter_names():
        raise UsageError(f"--device: the {args.tracker} tracker runs on the CPU only")
    tracker = make_tracker(args.tracker, args.config, **overrides)  # validates the config before any work
    if args.print_config:
        print(yaml.safe_dump({"tracker": args.tracker, **tracker.get_params()}, sort_keys=False), end="")
        return EXIT_OK
    sequences = load_sequences(args.data_root, args.seq, args.detector)  # every file validated before any output
    runs = track_sequences(args.tracker, args.config, overrides, sequences, workers=args.workers,
                           threads=args.threads, progress=not args.no_progress)
    for run in runs:
        path = args.out / f"{run.sequence.name}.txt"
        write_results(path, run.results)
        print(f"{run.sequence.name}: {len(run.results)} boxes, {run.sequence.length} frames in {run.seconds:.3f} s "
              f"({run.fps:.1f} fps) -> {path}")
    summaries = [run.summary() for run in runs]
    scored = [run for run in runs if run.sequence.gt is not None]
    if args.eval and scored:
        benchmark = args.benchmark or guess_benchmark(scored[0].sequence.name)
        results = {run.sequence.name: args.out / f"{run.sequence.name}.txt" for run in scored}
        scores = evaluate(args.data_root, results, benchmark)
        print(f"\n{args.tracker} on {len(scored)} sequence(s), TrackEval {benchmark} mode")
        print(format_table(scores))
        for summary in summaries:
            summary.update(scores.get(summary["sequence"], {}))
    elif args.eval:
        print("no ground truth (gt/gt.txt) for these sequences: nothing to score", file=sys.stderr)
    if args.json:
        payload = summaries[0] if len(summaries) == 1 else {"sequences": summaries}
        if len(summaries) > 1 and args.eval and scored:
            payload["combined"] = scores[COMBINED]
        write_json(args.json, payload)
    return EXIT_OK


if __name__ == "__main__":
    sys.exit(main())
