#!/usr/bin/env python
"""Score MOTChallenge result files with TrackEval: HOTA, DetA, AssA, MOTA, MOTP, IDF1, IDSW, FP, FN.

Example:
    python tools/eval.py --data-root ../shared/data/MOT15/train --results /tmp/r --benchmark MOT15
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from mixdvae.cli import guarded
from mixdvae.cli import parser as make_parser
from mixdvae.errors import EXIT_OK, DataNotFoundError
from mixdvae.evaluation import BENCHMARKS, evaluate, format_table, guess_benchmark
from mixdvae.mot import SequenceNotFoundError, find_sequence, list_sequences, read_mot_file, read_seqinfo
from mixdvae.runner import write_json


def parse_args(argv=None) -> argparse.Namespace:
    parser = make_parser(__doc__)
    parser.add_argument("--data-root", type=Path, required=True,
                        help="folder of sequence folders with seqinfo.ini and gt/gt.txt")
    parser.add_argument("--results", type=Path, required=True, help="folder of result files NAME.txt")
    parser.add_argument("--seq", nargs="+", metavar="NAME",
                        help="sequences to score (default: every NAME.txt in --results whose sequence is in "
                             "--data-root; other files, e.g. another benchmark's results, are skipped with a note)")
    parser.add_argument("--benchmark", choices=BENCHMARKS,
                        help="TrackEval preprocessing (default: from the first sequence name; MOT15 otherwise)")
    parser.add_argument("--json", type=Path, metavar="FILE", help="write {sequence: {metric: value}} as JSON")
    return parser.parse_args(argv)


def result_files(results_dir: Path, data_root: Path, names: list[str] | None) -> dict[str, Path]:
    """``{sequence: result file}``: the named sequences (each must have a file), else every ``NAME.txt`` of
    ``results_dir`` whose sequence folder is in ``data_root`` (the others are reported and skipped)."""
    if not results_dir.is_dir():
        raise DataNotFoundError(f"{results_dir}: results folder not found")
    if names:
        files = {name: results_dir / f"{name}.txt" for name in names}
        missing = [str(p) for p in files.values() if not p.is_file()]
        if missing:
            raise DataNotFoundError(f"result file(s) not found: {', '.join(missing)}")
        return files
    present = sorted(p.stem for p in results_dir.glob("*.txt"))
    if not present:
        raise DataNotFoundError(f"no result files (*.txt) in {results_dir}")
    known = set(list_sequences(data_root))
    skipped = [name for name in present if name not in known]
    if skipped:
        print(f"note: skipping {len(skipped)} result file(s) with no sequence in {data_root}: {', '.join(skipped)}",
              file=sys.stderr)
    files = {name: results_dir / f"{name}.txt" for name in present if name in known}
    if not files:
        raise DataNotFoundError(f"none of the result files in {results_dir} ({', '.join(present)}) matches a "
                                f"sequence folder of {data_root}")
    return files


@guarded
def main(argv=None) -> int:
    args = parse_args(argv)
    files = result_files(args.results, args.data_root, args.seq)
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
