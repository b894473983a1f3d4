"""Scoring with TrackEval, the official MOTChallenge evaluator (HOTA, CLEAR MOT, IDF1).

TrackEval wants ``TRACKERS/<tracker>/data/<seq>.txt`` next to ``GT/<seq>/gt/gt.txt``; :func:`evaluate` builds
that layout from links in a temporary folder, so result files and ground truth stay where they are.
``benchmark`` selects TrackEval's preprocessing: ``MOT15`` scores every ground-truth box, ``MOT16/17/20``
remove distractor classes and the detections matched to them, and ignore zero-marked boxes.
"""

from __future__ import annotations

import contextlib
import io
import os
import tempfile
from pathlib import Path

import numpy as np

from mixdvae.errors import InputError
from mixdvae.mot import read_seqinfo

BENCHMARKS = ("MOT15", "MOT16", "MOT17", "MOT20")
METRICS = ("HOTA", "DetA", "AssA", "MOTA", "MOTP", "IDF1", "IDSW", "FP", "FN")
COMBINED = "COMBINED"


def evaluate(
    data_root: str | os.PathLike,
    results: dict[str, str | os.PathLike],
    benchmark: str = "MOT17",
) -> dict[str, dict[str, float]]:
    """Score result files against the ground truth of sequences in ``data_root``.

    Args:
        data_root: folder of sequence folders, each with ``seqinfo.ini`` and ``gt/gt.txt``.
        results: sequence name -> MOTChallenge result file.
        benchmark: ``MOT15``, ``MOT16``, ``MOT17`` or ``MOT20`` (TrackEval's preprocessing).

    Returns:
        ``{sequence: {metric: value}}`` for every sequence plus ``"COMBINED"``; HOTA, DetA, AssA, MOTA, MOTP
        and IDF1 in percent, IDSW, FP and FN as counts.
    """
    if benchmark not in BENCHMARKS:
        raise ValueError(f"benchmark must be one of {BENCHMARKS}, got {benchmark!r}")
    data_root = Path(data_root).resolve()
    seq_info = {}
    for seq, path in results.items():
        if not Path(path).is_file():
            raise FileNotFoundError(f"result file for {seq} not found: {path}")
        if not (data_root / seq / "gt" / "gt.txt").is_file():
            raise FileNotFoundError(f"{data_root / seq / 'gt' / 'gt.txt'} not found: {seq} has no ground truth")
        seq_info[seq] = read_seqinfo(data_root / seq / "seqinfo.ini").seq_length
    with tempfile.TemporaryDirectory(prefix="mixdvae_eval_") as tmp:
        data_dir = Path(tmp) / "tracker" / "data"
        data_dir.mkdir(parents=True)
        for seq, path in results.items():
            (data_dir / f"{seq}.txt").symlink_to(Path(path).resolve())
        raw = _run_trackeval(data_root, Path(tmp), seq_info, benchmark)
    return {(COMBINED if seq == "COMBINED_SEQ" else seq): _summarise(res["pedestrian"]) for seq, res in raw.items()}


def _run_trackeval(gt_root: Path, trackers_root: Path, seq_info: dict[str, int], benchmark: str) -> dict:
    import trackeval  # imported here: a second of start-up that only scoring needs

    eval_config = {
        "USE_PARALLEL": False,
        "PRINT_RESULTS": False,
        "PRINT_CONFIG": False,
        "TIME_PROGRESS": False,
        "OUTPUT_SUMMARY": False,
        "OUTPUT_DETAILED": False,
        "PLOT_CURVES": False,
        "LOG_ON_ERROR": None,
        "BREAK_ON_ERROR": False,  # TrackEval's errors come back as a message (below), not as its traceback
        "RETURN_ON_ERROR": True,
    }
    dataset_config = {
        "GT_FOLDER": str(gt_root),
        "TRACKERS_FOLDER": str(trackers_root),
        "OUTPUT_FOLDER": str(trackers_root / "out"),
        "TRACKERS_TO_EVAL": ["tracker"],
        "BENCHMARK": benchmark,
        "SPLIT_TO_EVAL": "train",
        "SKIP_SPLIT_FOL": True,
        "SEQ_INFO": seq_info,
        "PRINT_CONFIG": False,
    }
    evaluator = trackeval.Evaluator(eval_config)
    where = f"ground truth in {gt_root}, results of {', '.join(sorted(seq_info))}"
    log = io.StringIO()
    with contextlib.redirect_stdout(log), contextlib.redirect_stderr(log):  # TrackEval prints configs, progress
        quiet = {"PRINT_CONFIG": False}
        metrics = [trackeval.metrics.HOTA(), trackeval.metrics.CLEAR(quiet), trackeval.metrics.Identity(quiet)]
        try:
            dataset = trackeval.datasets.MotChallenge2DBox(dataset_config)
        except trackeval.utils.TrackEvalException as err:
            raise InputError(f"TrackEval cannot read the data ({where}): {err}") from None
        output, messages = evaluator.evaluate([dataset], metrics)
    message = messages["MotChallenge2DBox"]["tracker"]
    if message != "Success":
        raise InputError(f"TrackEval rejected the input ({where}): {message}")
    return output["MotChallenge2DBox"]["tracker"]


def _summarise(res: dict) -> dict[str, float]:
    hota, clear, identity = res["HOTA"], res["CLEAR"], res["Identity"]
    return {
        "HOTA": 100 * float(np.mean(hota["HOTA"])),
        "DetA": 100 * float(np.mean(hota["DetA"])),
        "AssA": 100 * float(np.mean(hota["AssA"])),
        "MOTA": 100 * float(clear["MOTA"]),
        "MOTP": 100 * float(clear["MOTP"]),
        "IDF1": 100 * float(identity["IDF1"]),
        "IDSW": int(clear["IDSW"]),
        "FP": int(clear["CLR_FP"]),
        "FN": int(clear["CLR_FN"]),
    }


def format_table(scores: dict[str, dict[str, float]], first_column: str = "sequence",
                 columns: tuple[str, ...] = METRICS, width: int = 24) -> str:
    """A fixed-width text table of :func:`evaluate`'s output (one row per sequence, COMBINED last)."""
    header = f"{first_column:<{width}}" + "".join(f"{m:>8}" for m in columns)
    lines = [header, "-" * len(header)]
    for name, row in scores.items():
        cells = "".join(f"{row[m]:>8d}" if isinstance(row[m], int) else f"{row[m]:>8.1f}" for m in columns)
        lines.append(f"{name:<{width}}{cells}")
    return "\n".join(lines)


def guess_benchmark(sequence_name: str) -> str:
    """TrackEval preprocessing for a sequence name: MOT16/17/20 by prefix, MOT17 for the synthetic benchmark
    (which writes MOT17-style classes and visibility), MOT15 otherwise."""
    for prefix in ("MOT16", "MOT17", "MOT20"):
        if sequence_name.startswith(prefix):
            return prefix
    return "MOT17" if sequence_name.startswith("SYNTH") else "MOT15"


def motmetrics_scores(sequences: dict[str, tuple[np.ndarray, np.ndarray]]) -> dict[str, float]:
    """CLEAR MOT and identity metrics with motmetrics, over all sequences together.

    Args:
        sequences: name -> ``(gt, results)``, each an (R, >=6) array ``frame, id, x, y, w, h, ...``; gt rows
            whose 7th column is 0 (zero-marked, as TrackEval drops them) are ignored.

    Returns:
        MOTA, MOTP (as 100 * mean IoU of matches), IDF1 in percent; IDSW, FP, FN, MT, ML as counts.
    """
    if not hasattr(np, "asfarray"):  # motmetrics 1.4.0 still calls np.asfarray, removed in numpy 2
        np.asfarray = lambda a, dtype=float: np.asarray(a, dtype=dtype)
    import motmetrics  # after the shim above

    accumulators = []
    for gt, results in sequences.values():
        gt = gt[gt[:, 6] != 0]
        acc = motmetrics.MOTAccumulator(auto_id=False)
        for frame in np.union1d(gt[:, 0], results[:, 0]).astype(int):
            g, r = gt[gt[:, 0] == frame], results[results[:, 0] == frame]
            distances = motmetrics.distances.iou_matrix(g[:, 2:6], r[:, 2:6], max_iou=0.5)
            acc.update(g[:, 1].astype(int), r[:, 1].astype(int), distances, frameid=frame)
        accumulators.append(acc)
    wanted = ["mota", "motp", "idf1", "num_switches", "num_false_positives", "num_misses",
              "mostly_tracked", "mostly_lost"]
    summary = motmetrics.metrics.create().compute_many(
        accumulators, metrics=wanted, names=list(sequences), generate_overall=True
    ).loc["OVERALL"]
    return {
        "MOTA": 100 * float(summary["mota"]),
        "MOTP": 100 * (1 - float(summary["motp"])),
        "IDF1": 100 * float(summary["idf1"]),
        "IDSW": int(summary["num_switches"]),
        "FP": int(summary["num_false_positives"]),
        "FN": int(summary["num_misses"]),
        "MT": int(summary["mostly_tracked"]),
        "ML": int(summary["mostly_lost"]),
    }
