#!/usr/bin/env python
"""Track MOTChallenge sequences from their public detections; optionally score them.

Examples:
    python tools/track.py --seq SYNTH-01 --eval                 # MixDVAE on bundled synthetic data (made on first use)
    python tools/track.py --data-root ../shared/data/MOT15/train --seq TUD-Campus --out /tmp/r --eval
    python tools/track.py --data-root data/MOT17/train --seq MOT17-02 --detector SDP --tracker kalman
    python tools/track.py --seq all --tracker kalman --config configs/sort.yaml --eval --json run.json
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from mixdvae.evaluation import BENCHMARKS, COMBINED, evaluate, format_table, guess_benchmark  # noqa: E402
from mixdvae.mot import MOT17_DETECTORS, write_results  # noqa: E402
from mixdvae.runner import DEFAULT_DATA_ROOT, EXIT_CODES_HELP, EXIT_OK, EXIT_USAGE, fail, guarded  # noqa: E402
from mixdvae.runner import default_config, load_sequences, run_tracker, write_json  # noqa: E402
from trackers import TRACKERS, make_tracker  # noqa: E402
from trackers.base import load_config  # noqa: E402

DEFAULT_TRACKER = "mixdvae"


def parse_args(argv=None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter, epilog=EXIT_CODES_HELP
    )
    parser.add_argument("--seq", nargs="+", required=True, metavar="NAME",
                        help="sequence folder name(s) in --data-root, or 'all'; a MOT17 name without detector "
                             "suffix (MOT17-02) uses --detector")
    parser.add_argument("--data-root", type=Path, default=DEFAULT_DATA_ROOT,
                        help="folder of MOTChallenge sequence folders (default: the synthetic benchmark, "
                             "generated on first use: %(default)s)")
    parser.add_argument("--detector", default="FRCNN", choices=MOT17_DETECTORS,
                        help="MOT17 public detector for names without suffix (default: %(default)s)")
    parser.add_argument("--tracker", choices=sorted(TRACKERS),
                        help=f"registered tracker: one of {', '.join(sorted(TRACKERS))} (kalman: the SORT/ByteTrack-"
                             f"style yardstick); default: the 'tracker:' key of --config, else {DEFAULT_TRACKER}")
    parser.add_argument("--config", type=Path,
                        help="YAML of tracker parameters (e.g. configs/sort.yaml); default: configs/TRACKER.yaml when "
                             "it exists, else the tracker's built-in defaults")
    parser.add_argument("--out", type=Path, default=Path("results"),
                        help="folder for the result files OUT/NAME.txt (default: %(default)s)")
    parser.add_argument("--eval", action="store_true", help="score with TrackEval when ground truth exists")
    parser.add_argument("--benchmark", choices=BENCHMARKS,
                        help="TrackEval preprocessing (default: from the sequence name; MOT15 for other data)")
    parser.add_argument("--json", type=Path, metavar="FILE",
                        help="write sequence, tracker, frames, seconds, fps (and metrics with --eval) as JSON")
    parser.add_argument("--no-progress", action="store_true", help="hide the progress bar")
    parser.add_argument("--device", help="cpu or cuda for the VEM trackers (mixdvae, vkf, gmm); default: the "
                                         "config's device, else cpu")
    parser.add_argument("--threads", type=int, default=1,
                        help="torch CPU threads for the VEM trackers (default: %(default)s: their many small "
                             "operations run fastest on one core)")
    return parser.parse_args(argv)


@guarded
def main(argv=None) -> int:
    args = parse_args(argv)
    if args.tracker is None:
        args.tracker = load_config(args.config).get("tracker", DEFAULT_TRACKER) if args.config else DEFAULT_TRACKER
    overrides = {"device": args.device} if args.device else {}
    if overrides and "device" not in TRACKERS[args.tracker].parameter_names():
        return fail(f"--device: the {args.tracker} tracker runs on the CPU only", EXIT_USAGE)
    if str(args.device).startswith("cuda") and not torch.cuda.is_available():
        return fail(f"--device {args.device}: this torch build or machine has no CUDA device", EXIT_USAGE)
    torch.set_num_threads(args.threads)
    sequences = load_sequences(args.data_root, args.seq, args.detector)  # every file validated before any output
    runs = []
    for sequence in sequences:
        tracker = make_tracker(args.tracker, args.config or default_config(args.tracker), **overrides)
        run = run_tracker(tracker, sequence, progress=not args.no_progress)
        write_results(args.out / f"{sequence.name}.txt", run.results)
        print(f"{sequence.name}: {len(run.results)} boxes, {run.sequence.length} frames in {run.seconds:.3f} s "
              f"({run.fps:.1f} fps) -> {args.out / (sequence.name + '.txt')}")
        runs.append(run)
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
