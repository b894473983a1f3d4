#!/usr/bin/env python
"""Score MOTChallenge result files with TrackEval: HOTA, DetA, AssA, MOTA, MOTP, IDF1, IDSW, FP, FN.

Example:
    python tools/eval.py --data-root ../shared/data/MOT15/train --results /tmp/r --benchmark MOT15
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from mixdvae.evaluation import BENCHMARKS, evaluate, format_table, guess_benchmark  # noqa: E402
from mixdvae.mot import SequenceNotFoundError, find_sequence, read_mot_file, read_seqinfo  # noqa: E402
from mixdvae.runner import EXIT_CODES_HELP, EXIT_OK, guarded, write_json  # noqa: E402


def parse_args(argv=None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter, epilog=EXIT_CODES_HELP
    )
    parser.add_argument("--data-root", type=Path, required=True,
                        help="folder of sequence folders with seqinfo.ini and gt/gt.txt")
    parser.add_argument("--results", type=Path, required=True, help="folder of result files NAME.txt")
    parser.add_argument("--seq", nargs="+", metavar="NAME",
                        help="sequences to score (default: every NAME.txt in --results)")
    parser.add_argument("--benchmark", choices=BENCHMARKS,
                        help="TrackEval preprocessing (default: from the first sequence name; MOT15 otherwise)")
    parser.add_argument("--json", type=Path, metavar="FILE", help="write {sequence: {metric: value}} as JSON")
    return parser.parse_args(argv)


def result_files(results_dir: Path, names: list[str] | None) -> dict[str, Path]:
    names = names or sorted(p.stem for p in results_dir.glob("*.txt"))
    if not names:
        raise FileNotFoundError(f"no result files (*.txt) in {results_dir}")
    files = {name: results_dir / f"{name}.txt" for name in names}
    missing = [str(p) for p in files.values() if not p.is_file()]
    if missing:
        raise FileNotFoundError(f"result file(s) not found: {', '.join(missing)}")
    return files


@guarded
def main(argv=None) -> int:
    args = parse_args(argv)
    files = result_files(args.results, args.seq)
    for name, path in files.items():
        folder = find_sequence(args.data_root, name)
        if not (folder / "gt" / "gt.txt").is_file():
            raise SequenceNotFoundError(f"{folder / 'gt' / 'gt.txt'} not found: {name} has no ground truth")
        read_mot_file(path, "results", read_seqinfo(folder / "seqinfo.ini").seq_length)  # validate first
    benchmark = args.benchmark or guess_benchmark(next(iter(files)))
    scores = evaluate(args.data_root, files, benchmark)
    print(f"TrackEval {benchmark} mode, {len(files)} sequence(s)")
    print(format_table(scores))
    if args.json:
        write_json(args.json, scores)
    return EXIT_OK


if __name__ == "__main__":
    sys.exit(main())
