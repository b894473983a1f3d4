"""What the tracking tools share: sequence resolution, timed tracking runs, scoring and JSON output."""

from __future__ import annotations

import json
import multiprocessing
import os
import sys
import time
from concurrent.futures import ProcessPoolExecutor, as_completed
from dataclasses import dataclass
from pathlib import Path

import numpy as np
from tqdm import tqdm

from mixdvae.mot import Sequence, SequenceNotFoundError, atomic_write_text, find_sequence, list_sequences, write_results
from mixdvae.resources import data_home, shared_data

DEFAULT_DATA_ROOT = data_home() / "synthetic" / "train"  # generated on first use
MOT15_ROOT = shared_data("MOT15", "train")  # real evaluation data, read in place

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


def track_one(tracker_name: str, config, overrides: dict, sequence: Sequence, threads: int = 1,
              progress: bool = False) -> Run:
    """Build the tracker ``tracker_name`` from ``config`` and ``overrides`` and run it on ``sequence``."""
    import torch

    from mixdvae.trackers import make_tracker

    torch.set_num_threads(threads)
    return run_tracker(make_tracker(tracker_name, config, **overrides), sequence, progress=progress)


def track_sequences(tracker_name: str, config, overrides: dict, sequences: list[Sequence], workers: int = 1,
                    threads: int = 1, progress: bool = True) -> list[Run]:
    """Track each sequence with a fresh tracker, in ``workers`` processes (1: in this process, with a per-frame
    bar); the results do not depend on ``workers`` (each sequence is tracked independently and deterministically).
    Runs come back in the order of ``sequences``."""
    if workers <= 1 or len(sequences) <= 1:
        return [track_one(tracker_name, config, overrides, seq, threads, progress) for seq in sequences]
    context = multiprocessing.get_context("spawn")  # no state inherited from this process (torch threads, CUDA)
    with ProcessPoolExecutor(max_workers=min(workers, len(sequences)), mp_context=context) as pool:
        futures = [pool.submit(track_one, tracker_name, config, overrides, seq, threads) for seq in sequences]
        done = tqdm(as_completed(futures), total=len(futures), desc=f"{tracker_name} ({workers} workers)",
                    unit="seq", disable=not progress)
        for _ in done:
            pass
        return [future.result() for future in futures]


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


def write_json(path: str | os.PathLike, payload) -> None:
    atomic_write_text(path, json.dumps(payload, indent=2) + "\n")
