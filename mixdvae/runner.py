"""What the command-line tools share: sequence resolution, timed tracking runs, exit codes and JSON output."""

from __future__ import annotations

import json
import os
import sys
import time
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from mixdvae.mot import MOTFormatError, Sequence, SequenceNotFoundError, atomic_write_text, find_sequence
from mixdvae.mot import list_sequences, write_results

REPO_ROOT = Path(__file__).resolve().parent.parent
DEFAULT_DATA_ROOT = REPO_ROOT / "data" / "synthetic" / "train"
MOT15_ROOT = REPO_ROOT.parent / "shared" / "data" / "MOT15" / "train"  # real evaluation data, read in place

EXIT_OK = 0
EXIT_USAGE = 2  # argparse's own code for a bad command line
EXIT_NOT_FOUND = 3
EXIT_BAD_INPUT = 4
EXIT_CODES_HELP = (
    "exit codes: 0 success; 2 bad command line; 3 sequence, data or file not found; "
    "4 malformed input file (the message names file and line)"
)


@dataclass
class Run:
    """One tracker run on one sequence: results (R, 6) ``frame, id, x, y, w, h`` and tracking time."""

    sequence: Sequence
    tracker: str
    results: np.ndarray
    seconds: float

    @property
    def fps(self) -> float:
        return self.sequence.length / max(self.seconds, 1e-9)

    def summary(self) -> dict:
        return {
            "sequence": self.sequence.name,
            "tracker": self.tracker,
            "frames": self.sequence.length,
            "seconds": round(self.seconds, 6),
            "fps": round(self.fps, 3),
        }


def run_tracker(tracker, sequence: Sequence, progress: bool = False) -> Run:
    """Track ``sequence`` and time the tracking alone (no file reading, no imports)."""
    start = time.perf_counter()
    results = tracker.track(sequence, progress=progress)
    seconds = time.perf_counter() - start
    if len(results) and not np.isfinite(results).all():
        raise FloatingPointError(f"{tracker.name} produced NaN or infinite boxes on {sequence.name}")
    return Run(sequence, tracker.name, results, seconds)


def score_results(data_root: str | os.PathLike, results: dict[str, np.ndarray], folder: str | os.PathLike) -> dict:
    """TrackEval scores (:func:`mixdvae.evaluation.evaluate`) of in-memory results ``{sequence: (R, 6) rows}``,
    written as MOTChallenge files into ``folder`` first; the benchmark mode comes from the sequence names."""
    from mixdvae.evaluation import evaluate, guess_benchmark  # TrackEval is loaded only by the tools that score

    folder = Path(folder)
    folder.mkdir(parents=True, exist_ok=True)
    files = {}
    for name, rows in results.items():
        files[name] = folder / f"{name}.txt"
        write_results(files[name], rows)
    return evaluate(data_root, files, guess_benchmark(next(iter(results))))


def default_config(tracker_name: str) -> Path | None:
    """``configs/<tracker>.yaml`` when it exists: the settings the command-line tools use by default."""
    path = REPO_ROOT / "configs" / f"{tracker_name}.yaml"
    return path if path.is_file() else None


def ensure_default_data(data_root: Path) -> None:
    """Generate the synthetic benchmark when the default data root is asked for and missing."""
    if Path(data_root).resolve() == DEFAULT_DATA_ROOT and not list_sequences(DEFAULT_DATA_ROOT):
        from mixdvae.synthetic import ensure_benchmark

        print(f"generating the synthetic benchmark in {DEFAULT_DATA_ROOT.parent} (first use)", file=sys.stderr)
        ensure_benchmark(DEFAULT_DATA_ROOT.parent)


def load_sequences(data_root: str | os.PathLike, names: list[str], detector: str = "FRCNN") -> list[Sequence]:
    """Load the named sequences (``all`` = every sequence folder of ``data_root``), validating every file."""
    data_root = Path(data_root)
    ensure_default_data(data_root)
    if names == ["all"]:
        names = list_sequences(data_root)
        if not names:
            raise SequenceNotFoundError(f"no sequence folders (with seqinfo.ini) in {data_root}")
    return [Sequence.load(find_sequence(data_root, name, detector)) for name in names]


def fail(message: str, code: int) -> int:
    print(f"error: {message}", file=sys.stderr)
    return code


def guarded(main):
    """Run a tool's ``main`` turning expected failures into a message on stderr and a meaningful exit code."""

    def wrapper(argv=None) -> int:
        try:
            return main(argv)
        except MOTFormatError as err:
            return fail(str(err), EXIT_BAD_INPUT)
        except FileNotFoundError as err:
            return fail(str(err), EXIT_NOT_FOUND)
        except (ValueError, KeyError) as err:
            return fail(str(err), EXIT_BAD_INPUT)

    return wrapper


def write_json(path: str | os.PathLike, payload) -> None:
    atomic_write_text(path, json.dumps(payload, indent=2) + "\n")
