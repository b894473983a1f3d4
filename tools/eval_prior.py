#!/usr/bin/env python
"""Evaluate DVAE motion priors against a constant-velocity Kalman predictor on held-out trajectories.

Two kinds of folds; in both, for each held-out part and each model (srnn, vrnn, dkf) a fold model is trained by
the same trainer as the shipped prior (``configs/prior_<model>.yaml`` with its ``loso`` overrides: a reduced
budget) without that part, and cached in ``--fold-dir`` (``runs/loso``); the constant-velocity predictor is fitted
(maximum likelihood) on the fold's real-motion training windows (MOT tracks and ETH/UCY walks). Held-out data is
cut into consecutive 60-box windows; metrics pool all held-out boxes (see ``mixdvae/dvae/evaluate.py``).

* ``--hold-out sequence`` (default, LOSO): each MOTChallenge sequence of ``--data-root`` (default
  ``../shared/data/MOT15/train``) in turn (``data.real.exclude = [S]``). The synthetic validation windows (never
  trained on) are also reported, with every fold model and a CV predictor fitted on synthetic training windows.
* ``--hold-out dataset`` (leave-one-dataset-out): ``mot15`` (no real box track at all in training; tested on the
  sequences of ``--data-root``), ``eth`` and ``ucy`` (those ETH/UCY scenes excluded; tested on their walks filmed
  by random cameras of the training camera model, seed 777): motion from places and cameras never seen.

    python tools/eval_prior.py --json /tmp/prior_eval.json            # LOSO table (trains fold models once)
    python tools/eval_prior.py --hold-out dataset                     # leave-one-dataset-out table
    python tools/eval_prior.py --prior srnn_mot --data-root DIR       # a trained prior on any MOTChallenge GT

With ``--prior``, the prior is evaluated on every sequence of ``--data-root`` (not held out if the prior was
trained on them: use it for other data); its CV baseline uses the parameters fitted on the prior's own real
training data (stored in the checkpoint), or fitted on the evaluated data when the checkpoint has none.

``--json`` writes ``{MODEL: {"nll", "iou_1", "iou_10", "center_px_1", "center_px_10"}}`` (pooled).
"""

from __future__ import annotations

import hashlib
import json
import sys
import time
from pathlib import Path

import torch
import yaml

from mixdvae.cli import guarded
from mixdvae.cli import parser as make_parser
from mixdvae.config import parse_override
from mixdvae.data import BoxWindows, load_mot_tracks, real_windows, windows_from_tracks
from mixdvae.data.eth_ucy import load_walks, scenes_of, walk_windows
from mixdvae.dvae import DVAE, load_prior
from mixdvae.dvae.cv import CVParams, fit_cv
from mixdvae.dvae.evaluate import METRIC_KEYS, Metrics, evaluate_cv, evaluate_dvae
from mixdvae.dvae.training import (
    RECIPE_VERSION,
    build_data,
    merge_config,
    resolve_path,
    train_prior,
    walk_camera,
)
from mixdvae.errors import DataNotFoundError, UsageError
from mixdvae.mot import atomic_write_text
from mixdvae.resources import config_file

DEFAULT_ROOT = "../shared/data/MOT15/train"
DEFAULT_ETH_UCY = "../shared/data/trajectories/eth_ucy"
MODEL_NAMES = ("srnn", "vrnn", "dkf")
DATASET_NAMES = ("mot15", "eth", "ucy")  # the units of --hold-out dataset
TEST_SEED = 777  # cameras of the held-out ETH/UCY test windows (training uses seed + 505 / 606)


def load_config(model: str) -> dict:
    path = config_file(f"prior_{model}")
    if not path.is_file():
        raise FileNotFoundError(f"{path} not found: the training config of the {model} prior")
    return yaml.safe_load(path.read_text()) or {}


def base_fold_config(model: str, overrides: list[dict]) -> dict:
    """The training config of ``model`` with its ``loso`` budget and the ``--set`` overrides."""
    base = load_config(model)
    config = merge_config({k: v for k, v in base.items() if k != "loso"}, base.get("loso") or {})
    for override in overrides:
        config = merge_config(config, override)
    return config


def without(config: dict, data: dict, model: str, held_out: str, fold_dir: Path) -> dict:
    """``config`` with the ``data`` overrides that leave ``held_out`` out, writing to its fold folder."""
    output = {"dir": str(fold_dir / f"{model}_{held_out}"), "checkpoint": None, "plot": True}
    return merge_config(config, {"data": data, "output": output})


def fold_config(model: str, root: Path, held_out: str, fold_dir: Path, overrides: list[dict] = ()) -> dict:
    data = {"real": {"roots": [str(root)], "include": None, "exclude": [held_out]}}
    return without(base_fold_config(model, overrides), data, model, held_out, fold_dir)


def config_hash(config: dict) -> str:
    """Identifies a fold model: its training config and the trainer's ``RECIPE_VERSION`` (bumped whenever the
    data generation or the training changes); a cached fold model is retrained when either differs."""
    payload = json.dumps({"config": config, "recipe": RECIPE_VERSION}, sort_keys=True)
    return hashlib.sha1(payload.encode()).hexdigest()[:12]


def fold_model(model: str, config: dict, fold_dir: Path, held_out: str, args, log) -> DVAE:
    """The fold model trained by ``config`` (cached in ``fold_dir/<model>_<held_out>.pt``; with
    ``--reuse-folds``, any cached one, whatever config and recipe trained it; ``--retrain``: never cached)."""
    digest = config_hash(config)
    path = fold_dir / f"{model}_{held_out}.pt"
    if path.is_file() and not args.retrain:
        try:
            cached = DVAE.load(path)
            if cached.meta.get("config_hash") == digest:
                return cached
            if args.reuse_folds:
                log(f"  {path.name}: trained with another config or recipe "
                    f"(recipe {cached.meta.get('recipe_version')}), reused as asked (--reuse-folds)")
                return cached
            log(f"  {path.name}: trained with another config, retraining")
        except Exception as err:  # noqa: BLE001 - a bad cache entry is retrained
            log(f"  {path.name}: unusable ({err}), retraining")
    log(f"  training {model} without {held_out} ...")
    start = time.time()
    result = train_prior(config, log=lambda msg: None, progress=False)
    result.model.meta["config_hash"] = digest
    result.model.save(path)
    log(f"  trained {model} without {held_out} in {time.time() - start:.0f} s (best epoch {result.best_epoch})")
    return result.model


def table(results: dict[str, dict], title: str, counts: dict | None = None) -> str:
    lines = [f"### {title}", "", "| model | NLL (nats/box, px) | IoU@1 | IoU@10 | centre px @1 | centre px @10 |",
             "|---|---|---|---|---|---|"]
    for name, m in results.items():
        lines.append(
            f"| {name} | {m['nll']:.2f} | {m['iou_1']:.3f} | {m['iou_10']:.3f} | {m['center_px_1']:.2f} | "
            f"{m['center_px_10']:.2f} |"
        )
    if counts:
        lines.append("")
        lines.append(f"Scored boxes: {counts['n_1']} next-box, {counts['n_h']} 10-step-ahead.")
    return "\n".join(lines)


def comparison(results: dict[str, dict], model: str = "srnn") -> str:
    if model not in results or "cv" not in results:
        return ""
    m, cv = results[model], results["cv"]
    return (
        f"{model} vs constant velocity: NLL {m['nll'] - cv['nll']:+.2f} nats/box, "
        f"IoU@1 {m['iou_1'] - cv['iou_1']:+.3f}, IoU@10 {m['iou_10'] - cv['iou_10']:+.3f}, "
        f"centre error @10 {m['center_px_10'] - cv['center_px_10']:+.2f} px "
        f"({100 * (m['center_px_10'] / cv['center_px_10'] - 1):+.1f} %)"
    )


def score_fold(models: dict[str, DVAE], cv: CVParams, tests: dict[str, BoxWindows], horizon: int,
               pooled: dict[str, Metrics], per_seq: dict[str, dict]) -> None:
    """Add every model's and CV's metrics on each test set (by sequence) to ``per_seq`` and ``pooled``."""
    for seq, windows in tests.items():
        per_seq[seq] = {}
        for name, model in [*models.items(), ("cv", cv)]:
            metrics = evaluate_cv(model, windows, horizon) if name == "cv" else evaluate_dvae(model, windows, horizon)
            pooled[name] += metrics
            per_seq[seq][name] = metrics.summary()


def report(title: str, pooled: dict[str, Metrics], per_seq: dict[str, dict], model: str = "srnn") -> dict:
    results = {name: m.summary() for name, m in pooled.items()}
    n = pooled["cv"]
    print()
    print(table(results, title, {"n_1": n.n_1, "n_h": n.n_h}))
    print()
    print(comparison(results, model))
    for seq, res in per_seq.items():
        print()
        print(table(res, f"held out: {seq}"))
        print(comparison(res, model))
    return results


def model_names(args) -> list[str]:
    return [m.strip() for m in args.models.split(",") if m.strip()]


def loso(args, log) -> dict:
    root = resolve_path(args.data_root)
    tracks = load_mot_tracks(root)
    if len(tracks) < 2:
        raise DataNotFoundError(f"need at least two sequences with ground truth in {root} for leave-one-sequence-out "
                                f"(found {sorted(tracks)}); pass --data-root")
    fold_dir = resolve_path(args.fold_dir)
    fold_dir.mkdir(parents=True, exist_ok=True)
    names = model_names(args)
    pooled = {name: Metrics() for name in [*names, "cv"]}
    per_seq: dict[str, dict[str, dict]] = {}
    synth = {name: Metrics() for name in [*names, "cv"]}
    for held_out in sorted(tracks):
        log(f"fold: held out {held_out} ({sum(len(t) for t in tracks[held_out])} boxes)")
        configs = {name: fold_config(name, root, held_out, fold_dir, args.set) for name in names}
        models = {name: fold_model(name, configs[name], fold_dir, held_out, args, log) for name in names}
        data = build_data(configs[names[0]] if names else fold_config("srnn", root, held_out, fold_dir, args.set),
                          log=lambda msg: None)
        test = {held_out: windows_from_tracks(tracks[held_out], args.window, None, 3)}
        score_fold(models, data.fit_cv(), test, args.horizon, pooled, per_seq)
        for name, model in models.items():
            synth[name] += evaluate_dvae(model, data.val_synth, args.horizon)
        if not synth["cv"].n_1:
            sample = data.train_synth.subset(slice(0, 2000))
            synth["cv"] = evaluate_cv(fit_cv(sample.to_model(), sample.mask), data.val_synth, args.horizon)
    results = report(f"Leave-one-sequence-out on {root.name} ({', '.join(sorted(tracks))}), pooled", pooled, per_seq)
    print()
    print(table({k: v.summary() for k, v in synth.items()}, "Synthetic validation windows (fold models pooled)"))
    return results


def dataset_fold_config(model: str, held_out: str, fold_dir: Path, overrides: list[dict] = ()) -> dict:
    """The training config of ``model`` without the dataset ``held_out`` (``mot15``: no real tracks; ``eth`` or
    ``ucy``: those ETH/UCY scenes excluded), with the ``loso`` budget."""
    config = base_fold_config(model, overrides)
    if held_out == "mot15":
        data = {"real": {"roots": []}}
    else:
        data = {"eth_ucy": {"exclude": [*(config["data"].get("eth_ucy") or {}).get("exclude", []), held_out]}}
    return without(config, data, model, held_out, fold_dir)


def dataset_tests(held_out: str, args, config: dict) -> dict[str, BoxWindows]:
    """Test windows of a held-out dataset, by sequence: MOT15 ground-truth tracks, or ETH/UCY scenes filmed by
    random cameras of the training camera model (consecutive windows, a fixed seed)."""
    if held_out == "mot15":
        tracks = load_mot_tracks(resolve_path(args.data_root))
        if not tracks:
            raise DataNotFoundError(f"no MOTChallenge sequence with ground truth in {resolve_path(args.data_root)}")
        return {seq: windows_from_tracks(t, args.window, None, 3) for seq, t in tracks.items()}
    params = walk_camera(config["data"].get("eth_ucy") or {})
    walks = load_walks(resolve_path(args.eth_ucy_root), scenes_of([held_out]))
    if not walks:
        raise DataNotFoundError(f"no ETH/UCY scene of {held_out!r} in {resolve_path(args.eth_ucy_root)}")
    return {scene: walk_windows(w, args.window, TEST_SEED, params, None) for scene, w in walks.items()}


def lodo(args, log) -> dict:
    fold_dir = resolve_path(args.fold_dir)
    fold_dir.mkdir(parents=True, exist_ok=True)
    names = model_names(args)
    held_outs = [d.strip() for d in args.datasets.split(",") if d.strip()]
    unknown = sorted(set(held_outs) - set(DATASET_NAMES))
    if unknown:
        raise UsageError(f"--datasets: unknown {unknown}; known: {', '.join(DATASET_NAMES)}")
    pooled = {name: Metrics() for name in [*names, "cv"]}
    per_seq: dict[str, dict[str, dict]] = {}
    for held_out in held_outs:
        log(f"fold: held out dataset {held_out}")
        configs = {name: dataset_fold_config(name, held_out, fold_dir, args.set) for name in names}
        models = {name: fold_model(name, configs[name], fold_dir, held_out, args, log) for name in names}
        config = configs[names[0]] if names else dataset_fold_config("srnn", held_out, fold_dir, args.set)
        fold_pooled = {name: Metrics() for name in pooled}
        fold_seq: dict[str, dict] = {}
        score_fold(models, build_data(config, log=lambda msg: None).fit_cv(), dataset_tests(held_out, args, config),
                   args.horizon, fold_pooled, fold_seq)
        for name, metrics in fold_pooled.items():
            pooled[name] += metrics
        per_seq[f"{held_out} (dataset)"] = {name: m.summary() for name, m in fold_pooled.items()}
        per_seq.update({f"{held_out}/{seq}": res for seq, res in fold_seq.items()})
    return report(f"Leave-one-dataset-out ({', '.join(held_outs)}), pooled", pooled, per_seq)


def single(args, log) -> dict:
    prior = load_prior(args.prior)
    name = prior.config["model"]
    root = resolve_path(args.data_root)
    tracks = load_mot_tracks(root)
    if not tracks:
        raise DataNotFoundError(f"no MOTChallenge sequence with ground truth in {root}")
    all_tracks = [t for seq in tracks.values() for t in seq]
    test = windows_from_tracks(all_tracks, args.window, None, 3)
    trained_on = set((prior.meta.get("data") or {}).get("real_sequences") or [])
    overlap = sorted(trained_on & set(tracks))
    if overlap:
        log(f"note: {args.prior} was trained on {overlap}: these numbers are not held-out")
    if prior.meta.get("cv"):
        cv = CVParams.from_dict(prior.meta["cv"])
        log("cv: parameters fitted on the prior's real training data (from the checkpoint)")
    else:
        train = real_windows(all_tracks, args.window, 5)
        cv = fit_cv(train.to_model(), train.mask)
        log("cv: the checkpoint has no CV parameters; fitted on the evaluated data (favours CV)")
    pooled = {name: evaluate_dvae(prior, test, args.horizon), "cv": evaluate_cv(cv, test, args.horizon)}
    results = {k: v.summary() for k, v in pooled.items()}
    n = pooled["cv"]
    print()
    print(table(results, f"{args.prior} on {root} ({', '.join(sorted(tracks))})", {"n_1": n.n_1, "n_h": n.n_h}))
    print()
    print(comparison(results, name))
    for seq, seq_tracks in tracks.items():
        windows = windows_from_tracks(seq_tracks, args.window, None, 3)
        print()
        print(table({name: evaluate_dvae(prior, windows, args.horizon).summary(),
                     "cv": evaluate_cv(cv, windows, args.horizon).summary()}, seq))
    return results


@guarded
def main(argv: list[str] | None = None) -> int:
    parser = make_parser(__doc__)
    parser.add_argument("--prior", help="evaluate this trained prior (name in data/priors or path) instead of LOSO")
    parser.add_argument("--data-root", default=DEFAULT_ROOT,
                        help=f"folder of MOTChallenge sequences (default {DEFAULT_ROOT})")
    parser.add_argument("--json", help="write {MODEL: metrics} here")
    parser.add_argument("--hold-out", choices=("sequence", "dataset"), default="sequence",
                        help="fold unit: 'sequence' = leave-one-sequence-out over --data-root (default); 'dataset' = "
                             "leave-one-dataset-out over --datasets")
    parser.add_argument("--datasets", default=",".join(DATASET_NAMES),
                        help="held-out datasets of --hold-out dataset (default mot15,eth,ucy): mot15 = the sequences "
                             "of --data-root, eth / ucy = the ETH / UCY scenes of --eth-ucy-root")
    parser.add_argument("--eth-ucy-root", default=DEFAULT_ETH_UCY,
                        help=f"folder of the ETH/UCY trajectory files (default {DEFAULT_ETH_UCY})")
    parser.add_argument("--models", default=",".join(MODEL_NAMES), help="fold models (default srnn,vrnn,dkf)")
    parser.add_argument("--fold-dir", default="runs/loso", help="cache of the LOSO fold models (default runs/loso)")
    parser.add_argument("--set", action="append", default=[], type=parse_override, metavar="KEY=VALUE",
                        help="override an entry of every fold's training config, e.g. train.epochs=5 (repeatable)")
    parser.add_argument("--reuse-folds", action="store_true",
                        help="score the cached fold models even when their config or the training recipe has changed "
                             "since (re-scoring after an evaluation change, without retraining)")
    parser.add_argument("--retrain", action="store_true", help="retrain the fold models even when cached")
    parser.add_argument("--window", type=int, default=60, help="evaluation window length (default 60)")
    parser.add_argument("--horizon", type=int, default=10, help="steps ahead for IoU@10 / centre @10 (default 10)")
    parser.add_argument("--threads", type=int, default=1, help="torch CPU threads (default 1)")
    args = parser.parse_args(argv)
    torch.set_num_threads(args.threads)

    def log(msg: str) -> None:
        print(msg, file=sys.stderr, flush=True)

    if args.prior:
        results = single(args, log)
    else:
        results = lodo(args, log) if args.hold_out == "dataset" else loso(args, log)
    if args.json:
        out = {name: {k: float(v[k]) for k in METRIC_KEYS} for name, v in results.items()}
        Path(args.json).parent.mkdir(parents=True, exist_ok=True)
        atomic_write_text(args.json, json.dumps(out, indent=2) + "\n")
        log(f"wrote {args.json}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
