#!/usr/bin/env python
"""The 3T benchmark: MixDVAE, VKF, GMM and the Kalman (Hungarian) tracker with N known, on 3T windows built from
real MOT15 data and from the synthetic benchmark, at T = 60 and 120: accuracy (motmetrics over all windows)
and speed (seconds per window, windows per second) at batch sizes 1 and 64.

Timing: tracking only (windows are built and loaded beforehand), after a warm-up call, best of --repeats runs;
one torch thread by default (a CPU core). The Kalman tracker has no batched mode: it runs window by window
at every batch size. Accuracy comes from the largest batch size (each window's result does not depend on
the batch it runs in).

Examples:
    python tools/benchmark_3t.py                                   # the full table on CPU
    python tools/benchmark_3t.py --sets mot15:60:10 --trackers vkf kalman --batches 64
    python tools/benchmark_3t.py --device cuda --json bench_cuda.json --md bench_cuda.md
"""

from __future__ import annotations

import json
import sys
import time
from pathlib import Path

import torch
import yaml

from mixdvae.cli import guarded
from mixdvae.cli import parser as make_parser
from mixdvae.errors import MixDVAEError
from mixdvae.mot import Sequence, atomic_write_text, list_sequences
from mixdvae.resources import data_home, shipped_dir
from mixdvae.runner import MOT15_ROOT
from mixdvae.threet import build_windows, score

SYNTH_DIR = data_home() / "synthetic"
DEFAULT_SETS = ["mot15:60:10", "mot15:60:40", "mot15:120:40", "synthetic:60:40", "synthetic:120:40"]
DEFAULT_TRACKERS = ["mixdvae", "vkf", "gmm", "kalman"]


def load_tool(name: str):
    import importlib.util

    spec = importlib.util.spec_from_file_location(f"tool_{name}", Path(__file__).resolve().parent / f"{name}.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def source_sequences(kind: str, args) -> list[Sequence]:
    if kind == "mot15":
        root = args.mot15_root
        names = list_sequences(root)
        if not names:
            print(f"note: no MOT15 sequences in {root}; skipping the MOT15 sets", file=sys.stderr)
        return [Sequence.load(root / n) for n in names]
    if kind == "synthetic":
        train = args.synthetic_dir / "train"
        if not list_sequences(train):
            from mixdvae.synthetic import ensure_benchmark

            print(f"generating the synthetic benchmark in {args.synthetic_dir}", file=sys.stderr)
            ensure_benchmark(args.synthetic_dir)
        return [Sequence.load(train / n) for n in list_sequences(train)]
    if Path(kind).is_dir():
        return [Sequence.load(Path(kind) / n) for n in list_sequences(kind)]
    raise ValueError(f"unknown data set {kind!r}: mot15, synthetic or a folder of sequences")


def windows_for(spec: str, args, cache: dict) -> tuple[str, list[Sequence], list[str]]:
    """Label, windows and the source sequence of each window."""
    kind, length, stride = spec.rsplit(":", 2)
    if kind not in cache:
        cache[kind] = source_sequences(kind, args)
    windows, sources = [], []
    for seq in cache[kind]:
        if seq.gt is not None:
            for w, info in build_windows(seq, int(length), int(stride), seed=args.seed):
                windows.append(w)
                sources.append(info.source)
    return f"{Path(kind).name} T={length} stride={stride}", windows, sources


class PerSourcePriors:
    """MixDVAE with a leave-one-sequence-out prior: windows of sequence S use ``DIR/srnn_S.pt``, so the prior
    never saw the trajectories it is scored on. Windows are batched within each source sequence."""

    name = "mixdvae"

    def __init__(self, build, folder: Path, sources: list[str], windows: list[Sequence]):
        self.folder = folder
        self.trackers = {}
        self.source_of = {id(w): s for w, s in zip(windows, sources)}
        for source in sorted(set(sources)):
            path = folder / f"srnn_{source}.pt"
            if not path.is_file():
                raise FileNotFoundError(f"leave-one-out prior {path} not found")
            self.trackers[source] = build(path)

    def track_windows(self, windows):
        groups: dict[str, list[int]] = {}
        for i, w in enumerate(windows):
            groups.setdefault(self.source_of[id(w)], []).append(i)
        out = [None] * len(windows)
        for source, idx in groups.items():
            for i, res in zip(idx, self.trackers[source].track_windows([windows[i] for i in idx])):
                out[i] = res
        return out


def run_once(tracker, windows, batch):
    start = time.perf_counter()
    if hasattr(tracker, "track_windows"):
        results = []
        for i in range(0, len(windows), batch):
            results.extend(tracker.track_windows(windows[i : i + batch]))
    else:
        results = [tracker.track(w) for w in windows]
    return results, time.perf_counter() - start


def benchmark(tracker, windows, batches, repeats, timing_windows):
    row = {}
    results_full = None
    for batch in sorted(batches, reverse=True):
        subset = windows if batch > 1 or timing_windows <= 0 else windows[:timing_windows]
        run_once(tracker, subset[: max(batch, 1)], batch)  # warm-up
        best = float("inf")
        for _ in range(max(repeats, 1)):
            results, seconds = run_once(tracker, subset, batch)
            best = min(best, seconds)
        if results_full is None and len(subset) == len(windows):
            results_full = results
        row[f"s_per_window_b{batch}"] = best / len(subset)
        row[f"windows_per_s_b{batch}"] = len(subset) / best
    if results_full is None:
        results_full, _ = run_once(tracker, windows, max(batches))
    row.update(score([w.gt for w in windows], results_full))
    return row


def format_table(rows: list[dict], batches: list[int]) -> str:
    head = "| data | tracker | windows | MOTA | MOTP | IDF1 | IDSW | MT | ML | FP | FN |"
    sep = "|---|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|"
    for b in batches:
        head += f" s/window b{b} | windows/s b{b} |"
        sep += "---:|---:|"
    lines = [head, sep]
    for r in rows:
        line = (f"| {r['data']} | {r['tracker']} | {r['windows']} | {r['MOTA']:.1f} | {r['MOTP']:.1f} | "
                f"{r['IDF1']:.1f} | {r['IDSW']} | {r['MT']} | {r['ML']} | {r['FP']} | {r['FN']} |")
        for b in batches:
            line += f" {r[f's_per_window_b{b}']:.4f} | {r[f'windows_per_s_b{b}']:.1f} |"
        lines.append(line)
    return "\n".join(lines)


def parse_args(argv=None):
    parser = make_parser(__doc__)
    parser.add_argument("--sets", nargs="+", default=DEFAULT_SETS, metavar="DATA:T:STRIDE",
                        help="window sets: mot15, synthetic or a folder, with length and stride "
                             "(default: %(default)s)")
    parser.add_argument("--trackers", nargs="+", default=DEFAULT_TRACKERS, help="default: %(default)s")
    parser.add_argument("--config", action="append", default=[], metavar="TRACKER=YAML",
                        help="YAML parameters for one tracker (repeatable); default configs/3t_<tracker>.yaml, "
                             "else configs/vem_<tracker>.yaml, when present")
    parser.add_argument("--set", action="append", default=[], metavar="TRACKER.KEY=VALUE",
                        help="override one tracker parameter (YAML value), e.g. mixdvae.model=runs/x/srnn.pt")
    parser.add_argument("--batches", nargs="+", type=int, default=[1, 64], help="default: %(default)s")
    parser.add_argument("--device", default="cpu")
    parser.add_argument("--repeats", type=int, default=3, help="timed runs, best kept (default: %(default)s)")
    parser.add_argument("--timing-windows", type=int, default=64,
                        help="windows timed at batch 1 (0: all; default: %(default)s)")
    parser.add_argument("--threads", type=int, default=1, help="torch CPU threads (default: %(default)s)")
    parser.add_argument("--mot15-root", type=Path, default=MOT15_ROOT)
    parser.add_argument("--synthetic-dir", type=Path, default=SYNTH_DIR,
                        help="synthetic benchmark folder (generated when missing; default: %(default)s)")
    parser.add_argument("--seed", type=int, default=0, help="3T sampling seed (default: %(default)s)")
    parser.add_argument("--loso", type=Path, metavar="DIR",
                        help="MixDVAE on MOT15 windows with leave-one-sequence-out priors DIR/srnn_<sequence>.pt "
                             "(the prior never saw the scored trajectories); other sets use the default prior")
    parser.add_argument("--json", type=Path, help="write all rows as JSON")
    parser.add_argument("--md", type=Path, help="write the table as Markdown")
    return parser.parse_args(argv)


@guarded
def main(argv=None) -> int:
    args = parse_args(argv)
    torch.set_num_threads(max(args.threads, 1))
    eval_3t = load_tool("eval_3t")
    configs, params = {}, {}
    for item in args.config:
        name, path = item.split("=", 1)
        configs[name] = Path(path)
    for item in args.set:
        key, value = item.split("=", 1)
        name, key = key.split(".", 1)
        params.setdefault(name, {})[key] = yaml.safe_load(value)
    rows, cache = [], {}
    for spec in args.sets:
        label, windows, sources = windows_for(spec, args, cache)
        if not windows:
            print(f"{label}: no windows, skipped", file=sys.stderr)
            continue
        for name in args.trackers:
            config = configs.get(name)
            for default in (shipped_dir("configs") / f"3t_{name}.yaml", shipped_dir("configs") / f"vem_{name}.yaml"):
                if config is None and default.is_file():
                    config = default
            try:
                if name == "mixdvae" and args.loso and spec.startswith("mot15"):
                    def build(path, config=config, name=name):
                        return eval_3t.build_tracker(name, config, 3, args.device, {**params.get(name, {}),
                                                                                     "model": str(path)})
                    tracker = PerSourcePriors(build, args.loso, sources, windows)
                    name_shown = "mixdvae (LOSO)"
                else:
                    tracker = eval_3t.build_tracker(name, config, 3, args.device, params.get(name))
                    name_shown = name
            except MixDVAEError as err:
                print(f"{name}: cannot be built ({err}); skipped", file=sys.stderr)
                continue
            row = {"data": label, "tracker": name_shown}
            row.update(benchmark(tracker, windows, args.batches, args.repeats, args.timing_windows))
            rows.append(row)
            print(f"{label:<28} {name_shown:<8} MOTA {row['MOTA']:5.1f} IDF1 {row['IDF1']:5.1f} IDSW {row['IDSW']:3d} "
                  + " ".join(f"b{b}: {row[f's_per_window_b{b}']:.4f} s/w" for b in args.batches), flush=True)
    table = format_table(rows, args.batches)
    device = args.device if args.device != "cpu" else f"cpu, {args.threads} thread(s)"
    print(f"\n3T benchmark ({device})\n")
    print(table)
    if args.md:
        atomic_write_text(args.md, f"3T benchmark ({device})\n\n{table}\n")
    if args.json:
        atomic_write_text(args.json, json.dumps({"device": device, "rows": rows}, indent=1) + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
