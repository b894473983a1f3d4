#!/usr/bin/env python
"""Tune tracker parameters with Optuna (TPE), with a leave-one-sequence-out check of the chosen settings.

Each trial overrides the tracker's defaults with values suggested from the search space (``--space``: YAML
``{parameter: [candidate values]}`` for a choice, or ``{parameter: {low: A, high: B, log: false}}`` for a range;
integers when both bounds are integers), tracks every sequence of every ``--data-roots`` folder and scores them
with TrackEval. A trial's objective is the mean over data sets of (HOTA + IDF1) / 2 on the combined sequences;
the first trial is always the tracker's defaults.

Trials run in ``--workers`` processes. ``--storage`` names an Optuna storage URL (``sqlite:///tune.db``,
``postgresql://...``) or a journal file (``journal:tune.log``) so that several machines can work on one study
(``--study`` names it; run the same command on each machine). With one worker and no storage the run is
reproducible from ``--seed``; parallel trials see each other's results in whatever order they finish.

The leave-one-sequence-out (LOSO) check answers "does the procedure hold up on a sequence nobody tuned on?":
for each sequence S of the first data set, the trial is chosen with S left out (mean (HOTA + IDF1) / 2 over
the other sequences of that data set, averaged with the other data sets' combined objective); S is then
tracked and scored with it, and the held-out results of all sequences are scored together as one row.

    python tools/tune.py --tracker mixdvae --trials 12 --workers 2 --json tune_mixdvae.json
    python tools/tune.py --tracker vkf --trials 40 --storage sqlite:///vkf.db --study vkf-1   # on each machine
"""

from __future__ import annotations

import sys
import tempfile
import time
from concurrent.futures import ProcessPoolExecutor
from multiprocessing import get_context
from pathlib import Path

import numpy as np
from tqdm import tqdm

from mixdvae.cli import guarded, parser
from mixdvae.config import load_yaml_mapping
from mixdvae.errors import EXIT_OK, ConfigError
from mixdvae.evaluation import COMBINED, format_table
from mixdvae.resources import config_file
from mixdvae.runner import DEFAULT_DATA_ROOT, MOT15_ROOT, load_sequences, score_results, track_one, write_json
from mixdvae.trackers import TRACKERS, make_tracker

COLUMNS = ("HOTA", "MOTA", "IDF1", "IDSW", "FP", "FN")


def parse_args(argv=None):
    p = parser(__doc__)
    p.add_argument("--tracker", default="mixdvae", choices=sorted(TRACKERS),
                   help="registered tracker to tune (default: %(default)s)")
    p.add_argument("--space", type=Path, default=config_file("tune_vem"),
                   help="YAML search space (default: configs/tune_vem.yaml)")
    p.add_argument("--trials", type=int, default=12,
                   help="trials in all, the defaults included (default: %(default)s); with --storage, trials "
                        "already in the study count")
    p.add_argument("--workers", type=int, default=1, help="trials run in parallel processes (default: %(default)s)")
    p.add_argument("--storage", help="Optuna storage URL (sqlite:///F.db, postgresql://...) or journal:FILE; "
                                     "default: a private journal file in a temporary folder")
    p.add_argument("--study", default=None, help="study name in --storage (default: tune-TRACKER)")
    p.add_argument("--seed", type=int, default=0, help="seed of the TPE sampler (default: %(default)s)")
    p.add_argument("--data-roots", nargs="+", type=Path, default=[MOT15_ROOT, DEFAULT_DATA_ROOT],
                   help="folders of sequence folders with ground truth; the first one gets the LOSO check "
                        "(default: ../shared/data/MOT15/train and the synthetic benchmark)")
    p.add_argument("--threads", type=int, default=1, help="torch CPU threads per worker (default: %(default)s)")
    p.add_argument("--json", type=Path, metavar="FILE",
                   help="write every trial ({overrides, objective, scores}) and the LOSO check as JSON")
    p.add_argument("--no-progress", action="store_true", help="hide the progress bar")
    args = p.parse_args(argv)
    if args.trials < 1 or args.workers < 1:
        p.error("--trials and --workers must be at least 1")
    args.study = args.study or f"tune-{args.tracker}"
    return args


def load_space(path: Path, tracker: str) -> dict:
    """The search space ``{parameter: list of choices | {low, high, log}}``, checked against the tracker and
    widened to hold the tracker's defaults (the first trial)."""
    space = load_yaml_mapping(path)
    allowed = TRACKERS[tracker].parameter_names()
    defaults = make_tracker(tracker).get_params()
    for name, values in space.items():
        if name not in allowed:
            raise ConfigError(f"{path}: {name}: not a parameter of {tracker}; allowed: {sorted(allowed)}")
        is_range = isinstance(values, dict) and {"low", "high"} <= set(values) <= {"low", "high", "log"}
        if not (isinstance(values, list) and values) and not is_range:
            raise ConfigError(f"{path}: {name}: give a non-empty list of values or a mapping {{low, high, log}}, "
                              f"got {values!r}")
        if is_range:
            values["low"], values["high"] = min(values["low"], defaults[name]), max(values["high"], defaults[name])
        elif defaults[name] not in values:
            values.append(defaults[name])
    if not space:
        raise ConfigError(f"{path}: the search space is empty")
    return space


def suggest(trial, space: dict) -> dict:
    """One value per parameter of ``space`` from an Optuna trial."""
    values = {}
    for name, spec in space.items():
        if isinstance(spec, list):
            values[name] = trial.suggest_categorical(name, spec)
        elif isinstance(spec["low"], int) and isinstance(spec["high"], int) and not spec.get("log"):
            values[name] = trial.suggest_int(name, spec["low"], spec["high"])
        else:
            values[name] = trial.suggest_float(name, spec["low"], spec["high"], log=bool(spec.get("log")))
    return values


def objective(scores: dict) -> float:
    """(HOTA + IDF1) / 2 of one score row."""
    return (scores["HOTA"] + scores["IDF1"]) / 2


def evaluate_settings(tracker: str, overrides: dict, data_roots: list[Path], threads: int) -> dict:
    """``{data root: {sequence or COMBINED: scores}}`` of the tracker with ``overrides`` on every sequence."""
    scores = {}
    with tempfile.TemporaryDirectory(prefix="mixdvae_tune_") as tmp:
        for root in data_roots:
            results = {seq.name: track_one(tracker, None, overrides, seq, threads).results
                       for seq in load_sequences(root, ["all"])}
            scores[str(root)] = score_results(root, results, Path(tmp) / root.name)
    return scores


def storage_for(url: str | None, folder: Path):
    """An Optuna storage shared by processes: the URL given, else a journal file in ``folder``."""
    import optuna
    from optuna.storages.journal import JournalFileBackend

    if url is None:
        url = f"journal:{folder / 'study.log'}"
    if url.startswith("journal:"):
        return optuna.storages.JournalStorage(JournalFileBackend(url.removeprefix("journal:")))
    return url


def work(args, storage_url: str | None, folder: Path, space: dict, data_roots: list[Path], on_trial=None) -> None:
    """One worker: run trials until the study holds ``args.trials`` finished or running ones; ``on_trial()`` is
    called after each."""
    import optuna
    from optuna.trial import TrialState

    optuna.logging.set_verbosity(optuna.logging.WARNING)
    study = optuna.load_study(study_name=args.study, storage=storage_for(storage_url, folder),
                              sampler=optuna.samplers.TPESampler(seed=args.seed))

    def run(trial) -> float:
        overrides = suggest(trial, space)
        same = [t for t in study.get_trials(deepcopy=False, states=(TrialState.COMPLETE,)) if t.params == overrides]
        # the sampler may propose settings already scored: tracking is deterministic, so reuse their scores
        scores = same[0].user_attrs["scores"] if same else evaluate_settings(args.tracker, overrides, data_roots,
                                                                             args.threads)
        trial.set_user_attr("scores", scores)
        return float(np.mean([objective(s[COMBINED]) for s in scores.values()]))

    states = (TrialState.COMPLETE, TrialState.RUNNING, TrialState.WAITING, TrialState.FAIL)
    while len(study.get_trials(deepcopy=False, states=states)) < args.trials:
        study.optimize(run, n_trials=1)
        if on_trial is not None:
            on_trial()


def run_study(args, space: dict, data_roots: list[Path], folder: Path):
    """Create (or join) the study, enqueue the defaults, run the workers with a progress bar; the study."""
    import optuna
    from optuna.trial import TrialState

    optuna.logging.set_verbosity(optuna.logging.WARNING)
    storage = storage_for(args.storage, folder)
    study = optuna.create_study(study_name=args.study, storage=storage, direction="maximize", load_if_exists=True)
    if not study.trials:
        defaults = make_tracker(args.tracker).get_params()
        study.enqueue_trial({name: defaults[name] for name in space}, skip_if_exists=True)
    with tqdm(total=args.trials, desc=f"tuning {args.tracker}", unit="trial", disable=args.no_progress) as bar:
        def finished() -> int:
            return len(study.get_trials(deepcopy=False, states=(TrialState.COMPLETE,)))

        if args.workers == 1:  # in this process: reproducible from the seed
            work(args, args.storage, folder, space, data_roots, on_trial=lambda: bar.update(finished() - bar.n))
            return study
        with ProcessPoolExecutor(args.workers, mp_context=get_context("spawn")) as pool:
            futures = [pool.submit(work, args, args.storage, folder, space, data_roots) for _ in range(args.workers)]
            while not all(f.done() for f in futures):
                bar.update(finished() - bar.n)
                time.sleep(0.5)
            bar.update(finished() - bar.n)
            for future in futures:
                future.result()  # a worker's exception surfaces here
    return study


def loso(trials: list[dict], tracker: str, root: Path, others: list[str], threads: int, tmp: Path) -> dict:
    """For each sequence of ``root``: the trial chosen without it, its results there, and the combined score of
    all those held-out results."""
    first = str(root)
    names = [name for name in trials[0]["scores"][first] if name != COMBINED]
    sequences = {seq.name: seq for seq in load_sequences(root, ["all"])}
    chosen, held_out = {}, {}
    for name in names:
        def fitness(trial, name=name):
            rest = np.mean([objective(trial["scores"][first][n]) for n in names if n != name])
            return np.mean([rest] + [objective(trial["scores"][key][COMBINED]) for key in others])

        best = max(range(len(trials)), key=lambda i: fitness(trials[i]))
        chosen[name] = trials[best]["number"]
        held_out[name] = track_one(tracker, None, trials[best]["overrides"], sequences[name], threads).results
    return {"chosen_trial": chosen, "scores": score_results(root, held_out, tmp / "loso")}


@guarded
def main(argv=None) -> int:
    args = parse_args(argv)
    space = load_space(args.space, args.tracker)
    for root in args.data_roots:  # every sequence file validated before the first trial
        load_sequences(root, ["all"])
    with tempfile.TemporaryDirectory(prefix="mixdvae_tune_") as tmp:
        study = run_study(args, space, args.data_roots, Path(tmp))
        trials = [{"number": t.number, "overrides": t.params, "objective": t.value, "scores": t.user_attrs["scores"]}
                  for t in study.trials if t.value is not None]
        first = str(args.data_roots[0])
        others = [str(root) for root in args.data_roots[1:]]
        check = None
        if len(trials[0]["scores"][first]) > 2:  # at least two sequences besides COMBINED
            check = loso(trials, args.tracker, args.data_roots[0], others, args.threads, Path(tmp))
    ranked = sorted(trials, key=lambda t: -t["objective"])
    rows = {f"trial {t['number']} ({t['objective']:.2f})": t["scores"][first][COMBINED] for t in ranked[:5]}
    print(f"best trials (objective), scores on {first}:")
    print(format_table(rows, "trial", COLUMNS, width=24))
    print(f"best trial {ranked[0]['number']}: {ranked[0]['overrides']}")
    if check:
        labels = {name: f"{name} (trial {i})" for name, i in check["chosen_trial"].items()}
        held = {labels.get(name, name): s for name, s in check["scores"].items()}
        print("\nleave-one-sequence-out: each sequence scored with the trial chosen without it")
        print(format_table(held, "sequence (chosen trial)", COLUMNS, width=32))
    if args.json:
        write_json(args.json, {"tracker": args.tracker, "study": args.study, "trials": trials, "loso": check})
    return EXIT_OK


if __name__ == "__main__":
    sys.exit(main())
